"""`camnet run` as a process: start, SIGHUP reload, SIGTERM within 5 s, log formats, no secrets out."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.logs import redact, register_secrets

SECRETS = {
    "password": "Pw-7f3e9-kiwi-ONVIF",
    "community": "Comm-5521-mango-SNMP",
    "auth": "Auth-8812-papaya-V3",
    "priv": "Priv-3377-durian-V3",
    "env": "Env-9090-lychee-PASS",
}


def write_config(tmp: Path, listen: str, *, broken: bool = False) -> Path:
    (tmp / "cam.pass").write_text(SECRETS["password"] + "\n")
    cfg = tmp / "camnet.yaml"
    cfg.write_text(f"""
server: {{listen: "{listen}"}}
communes: [{{id: c1, name: "Đạ Ròn"}}]
sites: [{{id: s1, commune: c1, name: "Nhà văn hóa thôn 1", operator: viettel}}]
auths:
  cam: {{type: onvif, username: admin, password_file: cam.pass}}
  cam2: {{type: onvif, username: admin, password_env: CAMNET_TEST_PW}}
  v2: {{type: snmp, version: 2c, community: "{SECRETS["community"]}"}}
  v3: {{type: snmp, version: 3, username: camnet, auth_password: "{SECRETS["auth"]}",
        priv_password: "{SECRETS["priv"]}"}}
profiles:
  cam: {{kind: camera, ping: {{enabled: false}}, onvif: {{interval: 1s, timeout: 500ms}},
         rtsp: {{interval: 1s, timeout: 500ms}}}}
  ap: {{kind: ap, ping: {{enabled: false}}, snmp: {{interval: 1s, timeout: 500ms}}}}
defaults: {{camera_profile: cam, ap_profile: ap, camera_auth: cam, ap_auth: v2}}
cameras:
  - {{id: cam-1, site: s1, address: 127.0.13.90, onvif_port: 8081,
     rtsp_url: "rtsp://127.0.13.90:8555/stream1"}}
  - {{id: cam-2, site: s1, address: 127.0.13.91, onvif_port: 8081, auth: cam2}}
aps:
  - {{id: ap-1, site: s1, address: 127.0.13.92, snmp_port: 1162}}
  - {{id: ap-2, site: s1, address: 127.0.13.93, snmp_port: 1162, auth: v3}}
{"  - {id: ap-3, site: nowhere, address: 127.0.13.94, bogus: 1}" if broken else ""}
""")
    return cfg


def children_of(pid: int) -> list[int]:
    """Direct children of a process (from /proc)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out += [int(x) for x in text]
    return out


class Daemon:
    """A `camnet run` child process with its log captured to a file."""

    def __init__(self, cfg: Path, listen: str, *extra: str) -> None:
        self.listen = listen
        self.log = cfg.parent / "camnet.log"
        env = {**os.environ, "CAMNET_TEST_PW": SECRETS["env"]}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "--config", str(cfg), *extra],
            stdout=subprocess.DEVNULL, stderr=self.log.open("wb"), env=env,
        )

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://{self.listen}{path}", timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited: {self.log.read_text()}")
            try:
                if self.get("/healthz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("daemon did not become healthy")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def daemon_factory() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for d in started:
        d.stop()


def _catches(pid: int, signum: int) -> bool:
    """Whether the process has a handler for `signum` (SigCgt in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signum - 1)))
    return False


def test_sighup_while_starting_reloads_once_started(tmp_path: Path,
                                                    daemon_factory: list[Daemon]) -> None:
    """`systemctl reload` right after start: the SIGHUP lands while camnet imports, parses its
    WSDLs and starts grab workers. It used to kill the daemon (SIGHUP's default action); now
    it is held and the config reloaded once the daemon is up."""
    listen = "127.0.13.201:9832"
    d = Daemon(write_config(tmp_path, listen), listen)
    daemon_factory.append(d)
    deadline = time.monotonic() + 20
    while not _catches(d.proc.pid, signal.SIGHUP):
        assert d.proc.poll() is None and time.monotonic() < deadline, d.log.read_text()
        time.sleep(0.005)
    d.proc.send_signal(signal.SIGHUP)
    d.wait_healthy()
    time.sleep(1.0)
    log = d.log.read_text()
    assert "SIGHUP arrived while starting: reloading now" in log, log
    assert 'msg="config reloaded"' in log and d.proc.poll() is None, log
    assert "camnet_config_last_reload_successful 1.0" in d.get("/metrics")[1]


def test_sighup_reload_sigterm_and_logfmt(tmp_path: Path, daemon_factory: list[Daemon]) -> None:
    listen = "127.0.13.201:9832"
    cfg = write_config(tmp_path, listen)
    d = Daemon(cfg, listen)
    daemon_factory.append(d)
    d.wait_healthy()
    time.sleep(1.5)
    status, text = d.get("/metrics")
    assert status == 200 and "camnet_config_last_reload_successful 1.0" in text

    good = cfg.read_text()
    cfg.write_text(good.replace("interval: 1s, timeout: 500ms}}\n", "interval: 1s, timeout: 5s}}\n"))
    d.proc.send_signal(signal.SIGHUP)
    time.sleep(1.0)
    assert "camnet_config_last_reload_successful 0.0" in d.get("/metrics")[1]
    assert d.get("/healthz")[0] == 200  # the old config keeps running

    cfg.write_text(good)
    d.proc.send_signal(signal.SIGHUP)
    time.sleep(1.0)
    assert "camnet_config_last_reload_successful 1.0" in d.get("/metrics")[1]

    children = children_of(d.proc.pid)
    assert children, "the daemon starts RTSP grab workers at start"
    t0 = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(timeout=5) == 0
    assert time.monotonic() - t0 < 5
    time.sleep(0.5)
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()], "grab workers outlived camnet"
    lines = d.log.read_text().splitlines()
    assert any(line.startswith("ts=") and 'msg="camnet started"' in line for line in lines), lines
    assert any('msg="config reload failed; keeping the previous config"' in line for line in lines)
    assert any('msg="device down"' in line and "device=ap-1" in line for line in lines)
    assert any(' msg=stopped' in line for line in lines)


def test_json_logs_and_listen_override(tmp_path: Path, daemon_factory: list[Daemon]) -> None:
    override = "127.0.13.205:9833"
    cfg = write_config(tmp_path, "127.0.13.202:9832")
    d = Daemon(cfg, override, "--log-format", "json", "--listen", override)
    daemon_factory.append(d)
    d.wait_healthy()
    time.sleep(1.5)
    d.proc.send_signal(signal.SIGTERM)
    d.proc.wait(timeout=5)
    records = [json.loads(line) for line in d.log.read_text().splitlines() if line.startswith("{")]
    assert any(r["msg"] == "camnet started" and r["listen"] == override for r in records)
    assert any(r["msg"] == "device down" and r["device"] == "cam-1" for r in records)


def test_bad_config_does_not_start(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "127.0.13.203:9832", broken=True)
    proc = subprocess.run([sys.executable, "-m", "monitor", "run", "--config", str(cfg)],
                          capture_output=True, timeout=30)
    assert proc.returncode == 1
    assert f"{cfg}:" in proc.stderr.decode() and "aps[2].site: unknown site 'nowhere'" in proc.stderr.decode()


def test_no_secret_leaves_the_process(tmp_path: Path, daemon_factory: list[Daemon]) -> None:
    listen = "127.0.13.204:9832"
    cfg = write_config(tmp_path, listen)
    d = Daemon(cfg, listen, "--log-level", "debug")
    daemon_factory.append(d)
    d.wait_healthy()
    time.sleep(2.5)
    outputs = {"metrics": d.get("/metrics")[1]}
    for dev in ("cam-1", "cam-2", "ap-1", "ap-2"):
        outputs[f"probe {dev}"] = d.get(f"/probe?target={dev}&debug=true")[1]
    d.proc.send_signal(signal.SIGTERM)
    d.proc.wait(timeout=5)
    outputs["log"] = d.log.read_text()
    bad = write_config(tmp_path, listen, broken=True)
    env = {**os.environ, "CAMNET_TEST_PW": SECRETS["env"]}
    check = subprocess.run([sys.executable, "-m", "monitor", "check-config", str(bad)],
                           capture_output=True, env=env, timeout=30)
    assert check.returncode == 1
    outputs["check-config"] = check.stdout.decode() + check.stderr.decode()
    assert "Settings used:" in outputs["probe cam-1"]
    for where, text in outputs.items():
        for name, secret in SECRETS.items():
            assert secret not in text, f"{name} secret leaked in {where}"


def test_redact_scrubs_url_credentials_and_known_values() -> None:
    register_secrets(["hunter2-long"])
    try:
        text = "rtsp://admin:hunter2-long@127.0.0.1:554/x and http://u:p@h/ and plain hunter2-long"
        out = redact(text)
        assert "hunter2-long" not in out and "u:p@" not in out
        assert "rtsp://<secret>@127.0.0.1:554/x" in out
    finally:
        register_secrets([])


async def test_probe_now_leaves_the_device_state_alone(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """/probe runs the checks on a copy: nested prober memory (picture history) stays as it was."""
    from monitor import daemon as daemon_mod
    from monitor.checks import build_report
    from monitor.config import load_config
    from tests.netpeers import ap_config

    cfg = tmp_path / "camnet.yaml"
    ap_config(cfg, [("ap-01", "127.0.13.101", 7000)])
    daemon = daemon_mod.Daemon(cfg)
    daemon._apply_loaded(load_config(cfg))
    rec = daemon.state.devices["ap-01"]
    rec.probe_state.update(image={"previous": [1], "streaks": {"frozen": 1}}, answered=3)

    async def mutating_check(target: Any, profile: Any, state: dict[str, Any],
                             budget: float | None = None) -> Any:
        state["image"]["previous"].append(2)
        state["image"]["streaks"]["frozen"] += 1
        state["answered"] = 4
        return build_report(target, {}, profile)

    monkeypatch.setattr(daemon_mod, "check_device", mutating_check)
    await daemon.probe_now(rec)
    assert rec.probe_state == {"image": {"previous": [1], "streaks": {"frozen": 1}}, "answered": 3}


async def test_stop_after_a_job_had_died_still_saves_the_picture_memory(tmp_path: Path) -> None:
    """A job that ended on an error used to make Scheduler.stop raise: the daemon exited with
    a traceback before the final save."""
    from monitor import daemon as daemon_mod
    from monitor import memory
    from monitor.config import load_config
    from tests.netpeers import ap_config

    async def died() -> None:
        raise RuntimeError("a bug")

    cfg = tmp_path / "camnet.yaml"
    ap_config(cfg, [("ap-01", "127.0.13.103", 7000)], extra=f"state_dir: {tmp_path / 'state'}\n")
    (tmp_path / "state").mkdir()
    daemon = daemon_mod.Daemon(cfg)
    daemon._apply_loaded(load_config(cfg))
    daemon.scheduler._tasks[("ap-01", "snmp")] = asyncio.create_task(died())
    await asyncio.sleep(0)
    await daemon.stop()
    assert (tmp_path / "state" / memory.FILE_NAME).is_file()
