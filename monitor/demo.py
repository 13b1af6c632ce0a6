"""`camnet demo` (behind `make demo`): the lab, the daemon, Prometheus and Alertmanager on loopback.

Starts, in order: the simulated site (`camnet lab`, a child process), the daemon (`camnet run`
on the same config, a child process), the webhook sink that plays the police's and NOC's
phones (it prints every notification), Alertmanager and Prometheus with the committed rules,
routes and templates. Waits until each is healthy, prints where to look and a few faults to
try, and runs until Ctrl-C (or SIGTERM), then stops everything it started.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from monitor.config import DEFAULT_CONFIG, ConfigError, load_config

EXIT_OK, EXIT_FAILED = 0, 1
DEFAULT_LAB_CONTROL = "127.0.0.1:9839"  # camnet lab's own default
LAB_START_TIMEOUT = 600.0  # the first start encodes the lab's video clips (a minute or two on 2 cores)
DAEMON_START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
POLL = 0.5


class DemoError(RuntimeError):
    """Something the demo needs did not start."""


def add_parser(subparsers: Any) -> None:
    """Register `camnet demo`."""
    p = subparsers.add_parser(
        "demo",
        help="run the lab, camnet, Prometheus and Alertmanager on loopback until Ctrl-C",
        description="Everything on this machine's loopback: the simulated Đơn Dương site, the "
        "camnet daemon, Prometheus (rules), Alertmanager (routes to the commune police and the "
        "NOC) and a webhook sink that prints the notifications.",
    )
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="camnet config (default %(default)s)")
    # Not 9090/9093: installing Debian's prometheus packages starts their own services there.
    p.add_argument("--prometheus", default="127.0.0.1:19090", help="Prometheus listen HOST:PORT")
    p.add_argument("--alertmanager", default="127.0.0.1:19093",
                   help="Alertmanager listen HOST:PORT")
    p.add_argument("--sink", default="127.0.0.1:9099", help="webhook sink listen HOST:PORT")
    p.add_argument("--lab-control", default=DEFAULT_LAB_CONTROL,
                   help="the lab's control API HOST:PORT")
    p.add_argument(
        "--workdir", type=Path, default=None, help="data and logs (default: a temporary directory)"
    )
    p.set_defaults(func=run)


def _get(url: str, timeout: float = 3.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, b""


def _split(hostport: str) -> tuple[str, int]:
    host, _, port = hostport.rpartition(":")
    return host, int(port)


@contextlib.contextmanager
def child(name: str, argv: list[str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A child process in its own session, logging to a file; SIGTERM then SIGKILL on exit."""
    from lab.services import die_with_parent

    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=die_with_parent,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)
        print(f"camnet demo: {name} stopped", flush=True)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_until(name: str, proc: subprocess.Popen[bytes], log: Path, ready: Any, timeout: float) -> None:
    """Poll ready() until true; fail early if the process exits."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise DemoError(f"{name} exited with {proc.returncode}; its log ({log}):\n{_tail(log)}")
        if time.monotonic() > deadline:
            raise DemoError(f"{name} not ready after {timeout:.0f} s; its log ({log}):\n{_tail(log)}")
        time.sleep(POLL)


def _lab_ready(control: str) -> bool:
    try:
        status, body = _get(f"http://{control}/status")
        return status == 200 and bool(json.loads(body).get("ready"))
    except (OSError, ValueError):
        return False


def _daemon_ready(listen: str) -> bool:
    try:
        return _get(f"http://{listen}/healthz")[0] == 200
    except OSError:
        return False


def camnet_command() -> str:
    """How to run camnet from another terminal: `camnet` when that is this install on PATH,
    else its path (`make demo` installs into .venv, which is on nobody's PATH)."""
    mine = Path(sys.executable).parent / "camnet"
    if not mine.exists():
        return f"{sys.executable} -m monitor"
    found = shutil.which("camnet")
    if found and Path(found).resolve() == mine.resolve():
        return "camnet"
    with contextlib.suppress(ValueError):
        return f"./{mine.absolute().relative_to(Path.cwd())}"
    return str(mine)


def banner(listen: str, args: argparse.Namespace) -> str:
    """What to open and what to try (commands that work as printed)."""
    prom = f"http://{args.prometheus}"
    q = urllib.parse.quote
    lab = f"{camnet_command()} lab"
    control = "" if args.lab_control == DEFAULT_LAB_CONTROL else f" --control {args.lab_control}"
    tries = [
        (f"fault cam-daron-01 offline{control}", "the police of Đạ Ròn are told"),
        (f"fault cam-daron-01 ok{control}", "... and told it is resolved"),
        (f"fault cam-tutra-03 black{control}", "a covered lens: Tu Tra police"),
        (f"fault lacxuan-02 offline{control}", "a whole hall dark: one SiteDown to the NOC and its telco"),
        (f"fault ap-daron-05 loss=0.3{control}", "a lossy but working line: nobody is paged"),
        (f"status{control}", "every device's state"),
    ]
    width = max(len(f"{lab} {t}") for t, _ in tries) + 2
    lines = "\n".join(f"  {f'{lab} {t}':<{width}} # {why}" for t, why in tries)
    return f"""
camnet demo: everything is running on loopback.

  camnet metrics   http://{listen}/metrics   (health: /healthz)
  camnet status    http://{listen}/   (every device; each camera's last frame: /frame?camera=ID)
  Prometheus       {prom}/alerts   (rules and their state)
                   {prom}/graph?g0.expr={q("camnet_device:up == 0")}&g0.tab=1
  Alertmanager     http://{args.alertmanager}/#/alerts
  Notifications    printed below as they arrive (the police of each commune, the NOC, the telcos)
  Dashboards       dashboards/*.json for Grafana (see docs/dashboards.md)

Try, in another terminal (then watch the notifications, about a minute later):
{lines}

Ctrl-C stops everything.
"""


def run(args: argparse.Namespace) -> int:
    """Start everything, print where to look, wait for Ctrl-C, stop everything."""
    from lab.services import ServiceError, alerting_stack, ensure_free
    from lab.webhook_sink import WebhookSink, format_notification

    try:
        loaded = load_config(args.config)
    except ConfigError as e:
        for line in e.problems:
            print(line, file=sys.stderr)
        return EXIT_FAILED
    listen = loaded.config.server.listen

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # SIGINT too: a shell starts background jobs with SIGINT ignored, and Python keeps an
    # inherited SIG_IGN, so Ctrl-C would do nothing to a demo started from a script.
    previous = signal.signal(signal.SIGTERM, on_term)
    previous_int = signal.signal(signal.SIGINT, on_term)
    with contextlib.ExitStack() as stack:
        workdir = args.workdir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="camnet-demo-"))
        )
        workdir.mkdir(parents=True, exist_ok=True)
        py = [sys.executable, "-m", "monitor"]
        try:
            for hostport in (args.lab_control, listen, args.prometheus, args.alertmanager, args.sink):
                ensure_free(hostport)  # a leftover would answer our readiness checks
            print(
                "camnet demo: starting the lab (the first start encodes video clips: a minute or two)...",
                flush=True,
            )
            lab_log = workdir / "lab.log"
            lab = stack.enter_context(
                child(
                    "lab",
                    [
                        *py,
                        "lab",
                        "--config",
                        str(args.config),
                        "--control",
                        args.lab_control,
                        "--state-dir",
                        str(workdir / "lab"),
                    ],
                    lab_log,
                )
            )
            wait_until("the lab", lab, lab_log, lambda: _lab_ready(args.lab_control), LAB_START_TIMEOUT)
            print("camnet demo: lab ready; starting camnet...", flush=True)
            daemon_log = workdir / "camnet.log"
            daemon = stack.enter_context(
                child("camnet", [*py, "run", "--config", str(args.config), "--state-dir",
                                 str(workdir / "camnet")], daemon_log)
            )
            wait_until("camnet", daemon, daemon_log, lambda: _daemon_ready(listen), DAEMON_START_TIMEOUT)
            print("camnet demo: camnet ready; starting Alertmanager and Prometheus...", flush=True)
            sink_host, sink_port = _split(args.sink)
            prom_host, prom_port = _split(args.prometheus)
            am_host, am_port = _split(args.alertmanager)
            if len({sink_host, prom_host, am_host}) != 1:
                raise DemoError("--prometheus, --alertmanager and --sink must share one host")
            sink = WebhookSink(on_notification=lambda n: print(format_notification(n), flush=True))
            stack.enter_context(
                alerting_stack(
                    workdir / "alerting",
                    listen,
                    host=prom_host,
                    prometheus_port=prom_port,
                    alertmanager_port=am_port,
                    sink_port=sink_port,
                    sink=sink,
                )
            )
            print(banner(listen, args), flush=True)
            print(f"camnet demo: logs and data in {workdir}", flush=True)
            while True:
                for name, proc, log in (("the lab", lab, lab_log), ("camnet", daemon, daemon_log)):
                    if proc.poll() is not None:
                        raise DemoError(f"{name} exited with {proc.returncode}; its log:\n{_tail(log)}")
                time.sleep(1.0)
        except KeyboardInterrupt:
            print("\ncamnet demo: stopping...", flush=True)
            return EXIT_OK
        except (DemoError, ServiceError, OSError) as e:
            print(f"camnet demo: {e}", file=sys.stderr, flush=True)
            return EXIT_FAILED
        finally:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, previous_int)
    return EXIT_OK
