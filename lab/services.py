"""Real Prometheus and Alertmanager processes (and the webhook sink) for the demo, tests and bench.

Each runs on loopback with its data in a directory the caller owns, from a copy of the
committed config (config/prometheus/, config/alertmanager/) in which only addresses change:
the scrape target, the Alertmanager address, and every receiver pointed at the webhook sink.
Rules, routes, grouping, inhibitions and templates are the committed ones. Alertmanager runs
with `--cluster.listen-address=` (no gossip port on 0.0.0.0).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lab.webhook_sink import Notification, WebhookSink

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = ROOT / "config" / "prometheus"
ALERTMANAGER_DIR = ROOT / "config" / "alertmanager"

READY_TIMEOUT = 30.0  # seconds for a server to answer /-/ready
STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL
HTTP_TIMEOUT = 10.0  # seconds for one API call
# Alertmanager formats times in its local zone: the communes are in Vietnam.
ALERTMANAGER_TZ = "Asia/Ho_Chi_Minh"


class ServiceError(RuntimeError):
    """A server could not be started, or its API answered with an error."""


def find_binary(*names: str) -> str:
    """The first of these executables on PATH (Debian calls Alertmanager prometheus-alertmanager)."""
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise ServiceError(f"none of {', '.join(names)} is installed (see deps/apt-packages.txt)")


def http_json(url: str, data: Any = None, timeout: float = HTTP_TIMEOUT) -> Any:
    """GET (or POST JSON when data is given) and decode the JSON answer."""
    body = None if data is None else json.dumps(data).encode()
    req = urllib.request.Request(url, data=body, method="GET" if data is None else "POST")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as e:
        raise ServiceError(f"{url}: HTTP {e.code}: {e.read()[:500]!r}") from e
    except (urllib.error.URLError, OSError) as e:
        raise ServiceError(f"{url}: {e}") from e
    return json.loads(raw) if raw.strip() else None


@dataclass
class Server:
    """A running server process: its name, base URL, log file and process."""

    name: str
    url: str
    log_path: Path
    process: subprocess.Popen[bytes]

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server's log, for error messages."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Poll /-/ready until 200; raise with the log tail if the process dies or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise ServiceError(f"{self.name} not ready on {self.url} after {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT; always reaps the process."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT)


class Prometheus(Server):
    """Prometheus with a few API helpers."""

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query; the result vector (or [scalar] / [string])."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        doc = http_json(f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}")
        if doc.get("status") != "success":
            raise ServiceError(f"query {expr!r}: {doc}")
        data = doc["data"]
        return list(data["result"]) if data["resultType"] in ("vector", "matrix") else [data["result"]]

    def alerts(self) -> list[dict[str, Any]]:
        """Pending and firing alerts, as Prometheus sees them."""
        return list(http_json(f"{self.url}/api/v1/alerts")["data"]["alerts"])

    def targets_up(self) -> bool:
        """True when every active scrape target's last scrape succeeded."""
        active = http_json(f"{self.url}/api/v1/targets?state=active")["data"]["activeTargets"]
        return bool(active) and all(t.get("health") == "up" for t in active)


class Alertmanager(Server):
    """Alertmanager with API helpers."""

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        """Send alerts as Prometheus does (API v2)."""
        http_json(f"{self.url}/api/v2/alerts", alerts)

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts Alertmanager holds, with their status (active / suppressed)."""
        return list(http_json(f"{self.url}/api/v2/alerts"))


def ensure_free(listen: str) -> None:
    """Raise ServiceError when something already listens on HOST:PORT (a leftover server would
    otherwise answer our readiness checks in place of the one we start)."""
    host, _, port = listen.rpartition(":")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.settimeout(1.0)
        if sock.connect_ex((host.strip("[]"), int(port))) == 0:
            raise ServiceError(f"{listen} is already in use")


PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a child before exec: have Linux send it SIGTERM when its parent dies.

    Children run in their own sessions (so a terminal's Ctrl-C reaches only the parent, which
    stops them in order); this covers the parent being killed outright, which would otherwise
    leave servers holding their ports. SIGTERM, not SIGKILL: the lab and the daemon then stop
    their own children.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _spawn(argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    log = log_path.open("ab")
    try:
        # Own process group: Ctrl-C in the demo's terminal reaches the demo, which stops us.
        return subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
            preexec_fn=die_with_parent,
        )
    finally:
        log.close()


def prometheus_config(
    scrape_target: str,
    alertmanager: str | None,
    scrape_interval: str | None = None,
    evaluation_interval: str | None = None,
) -> dict[str, Any]:
    """The committed prometheus.yml with these addresses (and optionally other intervals)."""
    doc = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    doc["rule_files"] = [str(PROMETHEUS_DIR / f) for f in doc.get("rule_files", [])]
    if scrape_interval:
        doc["global"]["scrape_interval"] = scrape_interval
        doc["global"]["scrape_timeout"] = scrape_interval  # may not exceed the interval
    if evaluation_interval:
        doc["global"]["evaluation_interval"] = evaluation_interval
    if alertmanager:
        doc["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    else:
        doc.pop("alerting", None)
    for job in doc["scrape_configs"]:
        if job["job_name"] == "camnet":
            job["static_configs"] = [{"targets": [scrape_target]}]
    return doc


def alertmanager_config(sink_url: str, route_overrides: dict[str, str] | None = None) -> dict[str, Any]:
    """The committed alertmanager.yml with every receiver posting to sink_url/<receiver>.

    route_overrides changes timing on the top route (group_wait, group_interval,
    repeat_interval), for tests that cannot wait minutes for a resolved notification.
    """
    doc = yaml.safe_load((ALERTMANAGER_DIR / "alertmanager.yml").read_text(encoding="utf-8"))
    doc["templates"] = [str(ALERTMANAGER_DIR / t) for t in doc.get("templates", [])]
    doc["receivers"] = [
        {"name": r["name"], "webhook_configs": [{"url": f"{sink_url}/{r['name']}", "send_resolved": True}]}
        for r in doc["receivers"]
    ]
    # No mail relay in the lab: the global SMTP settings are unused once receivers are webhooks.
    for key in [k for k in doc.get("global", {}) if k.startswith("smtp_")]:
        del doc["global"][key]
    doc["route"].update(route_overrides or {})
    return doc


def start_prometheus(
    workdir: Path,
    listen: str,
    scrape_target: str,
    alertmanager: str | None,
    scrape_interval: str | None = None,
    evaluation_interval: str | None = None,
) -> Prometheus:
    """Start Prometheus on `listen` (host:port, loopback) with data under workdir; wait until ready."""
    ensure_free(listen)
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "prometheus.yml"
    doc = prometheus_config(scrape_target, alertmanager, scrape_interval, evaluation_interval)
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    argv = [
        find_binary("prometheus"),
        f"--config.file={cfg}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address={listen}",
        "--storage.tsdb.retention.time=1d",
        "--log.level=warn",
    ]
    server = Prometheus(
        "prometheus", f"http://{listen}", workdir / "prometheus.log", _spawn(argv, workdir / "prometheus.log")
    )
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


def start_alertmanager(
    workdir: Path, listen: str, sink_url: str, route_overrides: dict[str, str] | None = None
) -> Alertmanager:
    """Start Alertmanager on `listen` with receivers posting to the sink; wait until ready."""
    ensure_free(listen)
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "alertmanager.yml"
    cfg.write_text(
        yaml.safe_dump(alertmanager_config(sink_url, route_overrides), sort_keys=False, allow_unicode=True),
        encoding="utf-8",
    )
    argv = [
        find_binary("prometheus-alertmanager", "alertmanager"),
        f"--config.file={cfg}",
        f"--storage.path={workdir / 'data'}",
        f"--web.listen-address={listen}",
        f"--web.external-url=http://{listen}",
        "--cluster.listen-address=",  # no gossip: a single Alertmanager, nothing on 0.0.0.0
        "--log.level=warn",
    ]
    env = {**os.environ, "TZ": ALERTMANAGER_TZ}
    server = Alertmanager(
        "alertmanager",
        f"http://{listen}",
        workdir / "alertmanager.log",
        _spawn(argv, workdir / "alertmanager.log", env),
    )
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


@dataclass
class AlertingStack:
    """The webhook sink, Alertmanager and Prometheus, started together."""

    sink: WebhookSink
    alertmanager: Alertmanager
    prometheus: Prometheus

    def notifications(self, receiver: str | None = None) -> list[Notification]:
        """What the sink received (for one receiver, or all)."""
        return [n for n in self.sink.snapshot() if receiver is None or n.receiver == receiver]


@contextlib.contextmanager
def alerting_stack(
    workdir: Path,
    scrape_target: str,
    host: str = "127.0.0.1",
    prometheus_port: int = 9090,
    alertmanager_port: int = 9093,
    sink_port: int = 9099,
    scrape_interval: str | None = None,
    evaluation_interval: str | None = None,
    route_overrides: dict[str, str] | None = None,
    sink: WebhookSink | None = None,
) -> Iterator[AlertingStack]:
    """Sink, Alertmanager, Prometheus on host; everything stopped on exit, whatever happens."""
    sink = sink or WebhookSink(host, sink_port)
    sink.host, sink.port = host, sink_port
    with contextlib.ExitStack() as stack:
        sink.start()
        stack.callback(sink.stop)
        am = start_alertmanager(
            workdir / "alertmanager", f"{host}:{alertmanager_port}", sink.url, route_overrides
        )
        stack.callback(am.stop)
        prom = start_prometheus(
            workdir / "prometheus",
            f"{host}:{prometheus_port}",
            scrape_target,
            f"{host}:{alertmanager_port}",
            scrape_interval,
            evaluation_interval,
        )
        stack.callback(prom.stop)
        yield AlertingStack(sink, am, prom)
