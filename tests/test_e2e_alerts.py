"""End to end: the lab, the daemon, real Prometheus, real Alertmanager and a webhook sink.

A lab camera goes offline -> its commune's police get a firing alert naming camera and site in
Vietnamese; camnet restarted meanwhile -> nothing new (no "resolved", no second page); back ok
-> resolved. A whole site offline -> one SiteDown to the NOC and no camera
alert to the police. Access points losing 30 % of SNMP packets -> no alert. Every dashboard
panel's PromQL returns data from this Prometheus. And `camnet demo` (behind `make demo`), on
a two-hall config of its own, comes up healthy and leaves nothing running after Ctrl-C.

Timing: the daemon runs the default config with shorter check intervals (10 s instead of 15 s,
backoff capped at 10 s) and Alertmanager's group_interval is 10 s instead of 2 min, so a
resolved notification comes in seconds; rules, routes, inhibitions and group_wait are the
committed ones. The latency with the default intervals is measured by bench/alert_latency.py.
The "ten minutes of loss" is simulated time in config/prometheus/tests (promtool, 20 minutes
of a 30 % lossy line); here the real lab drops 30 % of SNMP requests to 35 of the 37 APs for
the whole module (about 4 minutes, 35 APs x ~24 checks) while the other scenarios run, and the
last test checks that none of them ever alerted. bench/alert_latency.py runs 10 real minutes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.services import AlertingStack, alerting_stack
from lab.webhook_sink import Notification
from tests.lab_fixture import Lab
from tests.test_dashboards import all_exprs, substitute

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.14.10"  # Prometheus, Alertmanager, sink and the daemon (helper range 127.0.14.0/24)
DAEMON = f"{HOST}:19830"
AP_COUNTS = {"daron": 11, "tutra": 14, "lacxuan": 12}
CAMERA_TEST = ("cam-lacxuan-04", "lacxuan-04", "lacxuan")
SITE_TEST = ("tutra-05", "cam-tutra-05", "ap-tutra-05")
# Every AP but the two whose sites the other scenarios fault drops 30 % of SNMP requests
# during the whole module.
LOSSY_APS = [
    f"ap-{c}-{i:02d}"
    for c, n in AP_COUNTS.items()
    for i in range(1, n + 1)
    if f"ap-{c}-{i:02d}" not in ("ap-lacxuan-04", SITE_TEST[2])
]
ALERT_TIMEOUT = 240.0  # s to wait for a notification (expected: about a minute)
STOP_TIMEOUT = 10.0
STARTED: dict[str, float] = {}  # when the module's loss fault began

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.lab,
    pytest.mark.skipif(
        not (
            shutil.which("prometheus")
            and (shutil.which("prometheus-alertmanager") or shutil.which("alertmanager"))
        ),
        reason="Prometheus / Alertmanager not installed",
    ),
]


def e2e_config(tmp: Path) -> Path:
    """The default config, daemon on our address, checks every 10 s, backoff capped at 10 s."""
    doc = yaml.safe_load((ROOT / "config" / "camnet.yaml").read_text(encoding="utf-8"))
    doc["server"]["listen"] = DAEMON
    doc["state_dir"] = str(tmp / "state")
    for profile in doc["profiles"].values():
        for check, settings in profile.items():
            if isinstance(settings, dict):
                settings["interval"] = "30s" if check == "onvif" else "10s"
                settings["timeout"] = "8s"
                settings["max_backoff"] = "10s"
    (tmp / "secrets").symlink_to(ROOT / "config" / "secrets")
    path = tmp / "camnet.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def wait(what: str, cond: Callable[[], Any], timeout: float = ALERT_TIMEOUT, every: float = 1.0) -> Any:
    """Poll cond() until truthy; fail with `what` after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


class Daemon:
    """`camnet run` on the e2e config, restartable; its output appended to one log."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "monitor", "run", "--config", str(self.config)],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(STOP_TIMEOUT)


@pytest.fixture(scope="module")
def daemon(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("e2e-alerts")
    lab.reset()
    d = Daemon(e2e_config(tmp), tmp / "camnet.log")
    d.start()
    try:
        yield d
    finally:
        lab.reset()
        d.stop()


@pytest.fixture(scope="module")
def stack(lab: Lab, daemon: Daemon) -> Iterator[AlertingStack]:
    tmp = daemon.config.parent
    try:
        with alerting_stack(
            tmp,
            DAEMON,
            host=HOST,
            prometheus_port=19090,
            alertmanager_port=19093,
            sink_port=19099,
            route_overrides={"group_interval": "10s"},
        ) as s:
            wait("Prometheus to scrape camnet", s.prometheus.targets_up, timeout=60)
            wait("every AP up", lambda: value(s, "count(camnet_ap_up == 1)") == 37.0, timeout=120)
            STARTED["loss"] = time.time()
            for ap in LOSSY_APS:
                assert lab.fault(ap, "loss=0.3") == {ap: "loss=0.3"}
            yield s
    finally:
        lab.reset()


def value(stack: AlertingStack, expr: str) -> float | None:
    res = stack.prometheus.query(expr)
    return float(res[0]["value"][1]) if res else None


def require_camera_checks(stack: AlertingStack) -> None:
    """Skip (with the reason) while the camera probers are still stubs; otherwise cameras must come up."""
    wait("the first camera checks", lambda: value(stack, "count(camnet_camera_up)"), timeout=120)
    stubs = stack.prometheus.query('camnet_check_errors_total{kind="camera", reason="not_implemented"} > 0')
    if stubs:
        pytest.skip(
            "camera probers not built yet: " + ", ".join(sorted({r["metric"]["check"] for r in stubs}))
        )


def device_up(stack: AlertingStack, metric: str, label: str, device: str) -> Callable[[], bool]:
    return lambda: value(stack, f'{metric}{{{label}="{device}"}}') == 1.0


def no_firing(stack: AlertingStack, **labels: str) -> Callable[[], bool]:
    sel = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return lambda: not stack.prometheus.query(f"ALERTS{{{sel}}}")


def alerts_in(notes: list[Notification]) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(receiver, status, alertname, alert) for every alert of every notification."""
    return [(n.receiver, a["status"], a["labels"]["alertname"], a) for n in notes for a in n.alerts]


def test_camera_offline_pages_its_commune_police_in_vietnamese_then_resolves(
    lab: Lab, stack: AlertingStack, daemon: Daemon
) -> None:
    require_camera_checks(stack)
    cam, site, commune = CAMERA_TEST
    wait(f"{cam} up", device_up(stack, "camnet_camera_up", "camera", cam))
    wait(f"no alert on {cam}", no_firing(stack, camera=cam))
    since = time.time()
    lab.fault(cam, "offline")
    try:
        note = wait(
            f"CameraDown for {cam} at police-{commune}",
            lambda: stack.sink.wait_for(
                lambda n: (
                    n.receiver == f"police-{commune}"
                    and n.status == "firing"
                    and any(a["labels"].get("camera") == cam for a in n.alerts)
                ),
                timeout=1,
                since=since,
            ),
        )
        # camnet restarted while the camera is still down: its series go stale, then come back
        # with the new daemon's first check. The police hear nothing new: no "resolved", no
        # second page (the rules hold device states through such gaps).
        restarted = time.time()
        daemon.stop()
        daemon.start()
        wait(f"the restarted daemon's first check of {cam}", lambda: (value(
            stack, f'camnet_check_last_run_timestamp_seconds{{camera="{cam}",check="rtsp"}}')
            or 0) > restarted and value(stack, f'camnet_camera_up{{camera="{cam}"}}') == 0.0)
        time.sleep(15)  # a resolve at the gap would have been sent by now (group_interval 10 s)
        after = [(r, status) for r, status, _, a in alerts_in(
            [n for n in stack.sink.snapshot() if n.received >= restarted])
            if a["labels"].get("camera") == cam]
        assert not after, f"the restart made Alertmanager send {after}"
        assert stack.prometheus.query(f'ALERTS{{camera="{cam}",alertstate="firing"}}')
    finally:
        lab.fault(cam, "ok")
    alert = next(a for a in note.alerts if a["labels"].get("camera") == cam)
    assert alert["labels"]["alertname"] == "CameraDown"
    assert alert["labels"]["site"] == site and alert["labels"]["commune"] == commune
    summary = alert["annotations"]["summary"]
    assert summary == f"Camera {cam} mất hình tại Nhà văn hóa thôn 04, Lạc Xuân (tên tạm) ({site})"
    assert "Không lấy được hình từ camera" in alert["annotations"]["description"]
    assert alert["annotations"]["summary_en"] == f"Camera {cam} is down at site {site}"
    # Back ok: the same receiver is told it is resolved.
    wait(
        f"resolved CameraDown for {cam}",
        lambda: stack.sink.wait_for(
            lambda n: (
                n.receiver == f"police-{commune}"
                and any(a["labels"].get("camera") == cam and a["status"] == "resolved" for a in n.alerts)
            ),
            timeout=1,
            since=since,
        ),
    )
    sent = alerts_in([n for n in stack.sink.snapshot() if n.received >= since])
    others = {r for r, _, name, a in sent if a["labels"].get("camera") == cam and r != f"police-{commune}"}
    assert not others, f"{cam}'s alert also went to {others}"


def test_site_offline_is_one_site_down_to_the_noc_and_nothing_to_the_police(
    lab: Lab, stack: AlertingStack
) -> None:
    require_camera_checks(stack)
    site, cam, ap = SITE_TEST
    wait(f"{cam} up", device_up(stack, "camnet_camera_up", "camera", cam))
    wait(f"{ap} up", device_up(stack, "camnet_ap_up", "ap", ap))
    wait(f"no alert at {site}", no_firing(stack, site=site))
    since = time.time()
    changed = lab.fault(site, "offline")
    assert set(changed) == {cam, ap}
    try:
        wait(
            f"SiteDown for {site} at the NOC",
            lambda: stack.sink.wait_for(
                lambda n: (
                    n.receiver == "noc"
                    and "SiteDown" in n.alertnames()
                    and any(a["labels"].get("site") == site for a in n.alerts)
                ),
                timeout=1,
                since=since,
            ),
        )
        # The camera's and the AP's own alerts must not get out: wait past APDown's `for: 1m`
        # plus group_wait, then look at everything Prometheus fired and the sink received.
        time.sleep(40)
        assert value(stack, f'camnet_camera_up{{camera="{cam}"}}') == 0.0
        assert value(stack, f'camnet_ap_up{{ap="{ap}"}}') == 0.0
    finally:
        lab.fault(site, "ok")
    fired = stack.prometheus.query(
        f'max_over_time(ALERTS{{site="{site}", alertstate="firing", alertname!="SiteDown"}}[5m])'
    )
    assert not fired, [r["metric"] for r in fired]
    sent = alerts_in([n for n in stack.sink.snapshot() if n.received >= since])
    at_site = [(r, s, name) for r, s, name, a in sent if a["labels"].get("site") == site]
    assert [x for x in at_site if x[2] != "SiteDown"] == [], at_site
    firing = [r for r, s, name in at_site if s == "firing"]
    assert sorted(firing) == ["noc", "operator-vnpt"], at_site  # one to the NOC, one to the telco
    assert not [x for x in sent if x[0].startswith("police-")], "the police were paged for a dark hall"
    wait(
        f"resolved SiteDown for {site}",
        lambda: stack.sink.wait_for(
            lambda n: n.receiver == "noc" and n.status == "resolved" and "SiteDown" in n.alertnames(),
            timeout=1,
            since=since,
        ),
    )


def test_lossy_but_working_lines_page_nobody(lab: Lab, stack: AlertingStack) -> None:
    since = STARTED["loss"]
    states = lab.status()["devices"]
    assert all(states[ap] == "loss=0.3" for ap in LOSSY_APS), "the loss fault was reset under us"
    wait("three minutes of loss", lambda: time.time() - since >= 180, timeout=200, every=5)
    lossy = "|".join(LOSSY_APS)
    window = f"{int(time.time() - since) + 5}s"
    fired = stack.prometheus.query(f'max_over_time(ALERTS{{alertstate="firing", ap=~"{lossy}"}}[{window}])')
    others = f'alertname="SiteDown", site!="{SITE_TEST[0]}"'
    fired += stack.prometheus.query(f'max_over_time(ALERTS{{alertstate="firing", {others}}}[{window}])')
    assert not fired, [r["metric"] for r in fired]
    snmp = 'kind="ap", check="snmp"'
    runs = value(stack, f"sum(increase(camnet_check_runs_total{{{snmp}}}[{window}]))") or 0
    assert runs >= 35 * 12, f"only {runs:.0f} SNMP checks ran under loss"
    sent = alerts_in([n for n in stack.sink.snapshot() if n.received >= since])
    assert not [x for x in sent if x[3]["labels"].get("ap") in LOSSY_APS], sent
    # The lab really dropped requests: camnet had to retry (requests per check vary).
    requests = f'camnet_ap_snmp_requests{{ap=~"{lossy}"}}[{window}]'
    retried = stack.prometheus.query(f"max_over_time({requests}) > min_over_time({requests})")
    assert retried, "no AP needed a retry: was any packet dropped?"
    failed = value(stack, f"sum(increase(camnet_check_errors_total{{{snmp}}}[{window}])) or vector(0)")
    print(f"SNMP checks under 30 % loss: {runs:.0f}, failed: {failed:.0f}, APs that retried: {len(retried)}")


def test_every_dashboard_panel_returns_data(stack: AlertingStack) -> None:
    stubs = {
        r["metric"]["check"]
        for r in stack.prometheus.query('camnet_check_errors_total{reason="not_implemented"} > 0')
    }
    # Rates need two samples in the window, recording rules a few evaluations.
    missing: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        missing = [f"{n}: {t}: {e}" for n, t, e in all_exprs() if not stack.prometheus.query(substitute(e))]
        if not missing:
            return
        time.sleep(2)
    prober_of = {"camnet_ping_": "ping", "camnet_camera_": "rtsp"}
    unexplained = [m for m in missing if not any(p in m and c in stubs for p, c in prober_of.items())]
    assert not unexplained, "panels without data:\n" + "\n".join(unexplained)
    pytest.skip(
        f"probers not built yet ({', '.join(sorted(stubs))}); panels without data:\n" + "\n".join(missing)
    )


DEMO_HOST = "127.0.14.30"


def demo_config(tmp: Path) -> Path:
    """Two halls of Đạ Ròn (a camera and an AP each) on this file's own loopback addresses."""
    doc = yaml.safe_load((ROOT / "config" / "camnet.yaml").read_text(encoding="utf-8"))
    doc["server"]["listen"] = f"{DEMO_HOST}:19830"
    doc["sites"] = [s for s in doc["sites"] if s["id"] in ("daron-01", "daron-02")]
    doc["cameras"] = [{**c, "address": f"127.0.14.{40 + i}"} for i, c in enumerate(doc["cameras"][:2])]
    doc["aps"] = [{**a, "address": f"127.0.14.{50 + i}"} for i, a in enumerate(doc["aps"][:2])]
    (tmp / "secrets").symlink_to(ROOT / "config" / "secrets")
    path = tmp / "camnet.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def test_demo_starts_everything_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    """`camnet demo` (behind `make demo`) on a two-hall config: healthy, then Ctrl-C, nothing left."""
    config = demo_config(tmp_path)
    addr = {
        "prometheus": f"{DEMO_HOST}:19090",
        "alertmanager": f"{DEMO_HOST}:19093",
        "sink": f"{DEMO_HOST}:19099",
    }
    out = (tmp_path / "demo.out").open("w+b")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "monitor",
            "demo",
            "--config",
            str(config),
            "--lab-control",
            f"{DEMO_HOST}:19839",
            "--workdir",
            str(tmp_path / "work"),
            *[f"--{k}={v}" for k, v in addr.items()],
        ],
        cwd=ROOT,
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        # As a shell starts a background job: SIGINT ignored. Ctrl-C must still stop the demo.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:

        def output() -> str:
            return (tmp_path / "demo.out").read_text(encoding="utf-8", errors="replace")

        wait(
            "the demo's banner",
            lambda: "everything is running" in output() or proc.poll() is not None,
            timeout=400,
        )
        assert proc.poll() is None, output()
        text = output()
        assert f"http://{addr['prometheus']}/alerts" in text and "lab fault cam-daron-01 offline" in text
        # The commands to try work as printed, from another terminal (camnet may not be on PATH).
        [status] = [line.split("#")[0].strip() for line in text.splitlines() if " lab status" in line]
        tried = subprocess.run(status, shell=True, cwd=ROOT, capture_output=True, text=True,
                               timeout=60, check=False)
        assert tried.returncode == 0 and "cam-daron-01" in tried.stdout, (status, tried.stderr)

        def targets() -> list[dict[str, Any]]:
            with urllib.request.urlopen(f"http://{addr['prometheus']}/api/v1/targets", timeout=10) as resp:
                return list(json.loads(resp.read())["data"]["activeTargets"])

        scraped = wait(
            "Prometheus to scrape the demo's camnet",
            lambda: [t for t in targets() if t["health"] == "up"],
            timeout=60,
        )
        assert [t["scrapeUrl"] for t in scraped] == [f"http://{DEMO_HOST}:19830/metrics"]
        for url in (
            f"http://{addr['alertmanager']}/-/ready",
            f"http://{DEMO_HOST}:19830/healthz",
            f"http://{DEMO_HOST}:19839/status",
        ):
            with urllib.request.urlopen(url, timeout=10) as resp:
                assert resp.status == 200, url

        def frame() -> bytes:
            cid = yaml.safe_load(config.read_text(encoding="utf-8"))["cameras"][0]["id"]
            try:
                with urllib.request.urlopen(f"http://{DEMO_HOST}:19830/frame?camera={cid}",
                                            timeout=10) as resp:
                    return bytes(resp.read())
            except urllib.error.HTTPError:
                return b""  # 404 until the camera's first RTSP check has run

        # The shipped config serves frames (on loopback): the daemon keeps the lab camera's.
        assert wait("the first camera's kept frame", frame, timeout=60)[:2] == b"\xff\xd8"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, output()
        assert "camnet demo: stopping" in output()
        for hostport in (*addr.values(), f"{DEMO_HOST}:19830", f"{DEMO_HOST}:19839", "127.0.14.40:8080"):
            host, port = hostport.rsplit(":", 1)
            with socket.socket() as s:
                s.settimeout(1)
                assert s.connect_ex((host, int(port))) != 0, f"{hostport} still open after the demo stopped"
    finally:
        if proc.poll() is None:  # a failed assertion: let the demo stop its children first
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        out.close()


def test_demo_killed_outright_leaves_no_server_behind(tmp_path: Path) -> None:
    """The demo's children run in their own sessions; if the demo is SIGKILLed they still stop."""
    config = demo_config(tmp_path)
    addr = {"prometheus": f"{DEMO_HOST}:19090", "alertmanager": f"{DEMO_HOST}:19093",
            "sink": f"{DEMO_HOST}:19099"}
    log = tmp_path / "demo.out"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "demo", "--config", str(config),
             "--lab-control", f"{DEMO_HOST}:19839", "--workdir", str(tmp_path / "work"),
             *[f"--{k}={v}" for k, v in addr.items()]],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    ports = [*addr.values(), f"{DEMO_HOST}:19830", f"{DEMO_HOST}:19839", "127.0.14.40:8080"]

    def open_ports() -> list[str]:
        found = []
        for hostport in ports:
            host, port = hostport.rsplit(":", 1)
            with socket.socket() as s:
                s.settimeout(1)
                if s.connect_ex((host, int(port))) == 0:
                    found.append(hostport)
        return found

    try:
        wait("the demo's banner",
             lambda: "everything is running" in log.read_text(errors="replace") or proc.poll() is not None,
             timeout=240)
        assert proc.poll() is None, log.read_text(errors="replace")
        assert len(open_ports()) == len(ports)
        proc.kill()
        proc.wait(10)
        wait("every server of the demo to stop", lambda: not open_ports(), timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
