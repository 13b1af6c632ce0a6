"""The whole default lab (config/camnet.yaml) through the `lab` fixture and the `camnet lab` CLI."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from tests.lab_fixture import ROOT, Lab, start_lab, stop_lab

pytestmark = pytest.mark.lab

SECRETS = ROOT / "config" / "secrets"
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
GET_TIME = b"""<?xml version="1.0"?>
<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>
<GetSystemDateAndTime xmlns="http://www.onvif.org/ver10/device/wsdl"/></s:Body></s:Envelope>"""


def secret(name: str) -> str:
    """A lab secret from config/secrets."""
    return (SECRETS / name).read_text().strip()


def camnet(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m monitor ...` (the camnet CLI)."""
    return subprocess.run([sys.executable, "-m", "monitor", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)


def snmpget(lab: Lab, ap_id: str) -> subprocess.CompletedProcess[str]:
    """net-snmp's snmpget of sysUpTime, v3 for Tu Tra (as the config says), v2c elsewhere."""
    ap = lab.info["aps"][ap_id]
    if ap_id.startswith("ap-tutra-"):
        auth = ["-v3", "-l", "authPriv", "-u", "camnet", "-a", "SHA", "-A",
                secret("lab-snmpv3.auth"), "-x", "AES", "-X", secret("lab-snmpv3.priv")]
    else:
        auth = ["-v2c", "-c", secret("lab-snmp.community")]
    return subprocess.run(
        ["snmpget", *auth, "-t", "2", "-r", "0", "-On", f"{ap['address']}:{ap['port']}",
         SYS_UPTIME], capture_output=True, text=True, timeout=30, check=False,
        env={**os.environ, "SNMP_PERSISTENT_DIR": "/tmp/camnet-test-snmp"},
    )


async def onvif_time(address: str) -> int:
    """HTTP status of an unauthenticated GetSystemDateAndTime (raises if unreachable)."""
    async with asyncio.timeout(10), aiohttp.ClientSession() as s, s.post(
        f"http://{address}:8080/onvif/device_service", data=GET_TIME,
        headers={"Content-Type": "application/soap+xml"},
    ) as r:
        await r.read()
        return r.status


async def rtsp_options(address: str) -> str:
    """The status line of an RTSP OPTIONS request."""
    async with asyncio.timeout(10):
        reader, writer = await asyncio.open_connection(address, 8554)
        try:
            writer.write(f"OPTIONS rtsp://{address}:8554/ RTSP/1.0\r\nCSeq: 1\r\n\r\n".encode())
            await writer.drain()
            return (await reader.readline()).decode().strip()
        finally:
            writer.close()


def test_inventory_matches_the_contract(lab: Lab) -> None:
    info = lab.status()
    cams, aps = info["cameras"], info["aps"]
    assert len(cams) == 24 and len(aps) == 37
    assert [c["address"] for c in cams.values()] == [f"127.0.2.{i}" for i in range(1, 25)]
    assert sorted(a["address"] for a in aps.values()) == sorted(
        f"127.0.1.{i}" for i in range(1, 38))
    sizes = [(c["width"], c["height"]) for c in cams.values()]
    assert sizes.count((1280, 720)) >= 2 and sizes.count((1920, 1080)) >= 1
    assert any(c["rtsp_auth"] for c in cams.values())
    assert {c["vendor"] for c in cams.values()} == {"axis", "hikvision"}
    assert all(a["simulated"] for a in aps.values())
    assert set(info["devices"].values()) == {"ok"}


async def test_every_camera_answers_onvif_and_rtsp(lab: Lab) -> None:
    for cam in lab.info["cameras"].values():
        assert await onvif_time(cam["address"]) == 200
        assert await rtsp_options(cam["address"]) == "RTSP/1.0 200 OK"


def test_every_access_point_answers_snmp(lab: Lab) -> None:
    for ap_id in lab.info["aps"]:
        proc = snmpget(lab, ap_id)
        assert proc.returncode == 0, f"{ap_id}: {proc.stderr}"
        assert "Timeticks" in proc.stdout


async def test_cli_takes_a_whole_site_offline(lab: Lab) -> None:
    try:
        proc = camnet("lab", "fault", "daron-03", "offline")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == ["ap-daron-03:", "offline", "cam-daron-03:", "offline"]
        for port in (8080, 8554):
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection("127.0.2.3", port)
        assert snmpget(lab, "ap-daron-03").returncode != 0
        assert await onvif_time("127.0.2.4") == 200  # the next site is untouched
        status = camnet("lab", "status")
        assert "cam-daron-03: offline" in status.stdout
    finally:
        proc = camnet("lab", "fault", "daron-03", "ok")
    assert proc.returncode == 0, proc.stderr
    assert await onvif_time("127.0.2.3") == 200
    assert snmpget(lab, "ap-daron-03").returncode == 0


def test_site_fault_goes_to_the_devices_that_have_it(lab: Lab) -> None:
    try:
        assert lab.fault("daron-02", "black") == {"cam-daron-02": "black"}
        assert lab.fault("daron-02", "loss=0.5") == {"ap-daron-02": "loss=0.5"}
    finally:
        lab.fault("daron-02", "ok")
    assert lab.status()["devices"]["cam-daron-02"] == "ok"


def test_cli_errors_exit_unknown(lab: Lab) -> None:
    proc = camnet("lab", "fault", "cam-nowhere", "ok")
    assert proc.returncode == 3
    assert "unknown device 'cam-nowhere'" in proc.stderr
    proc = camnet("lab", "fault", "cam-daron-01", "loss=0.3")
    assert proc.returncode == 3
    assert "unknown camera state" in proc.stderr
    proc = camnet("lab", "fault", "ap-daron-01", "black")
    assert proc.returncode == 3
    assert "cameras only" in proc.stderr
    assert set(lab.status()["devices"].values()) == {"ok"}


def test_cli_fault_without_a_running_lab_exits_unknown() -> None:
    proc = camnet("lab", "fault", "cam-daron-01", "ok", "--control", "127.0.22.251:9")
    assert proc.returncode == 3
    assert "not running" in proc.stderr


def _session_pids(sid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                pids.append(int(entry))
    return pids


def test_sigterm_stops_every_child(tmp_path: Path) -> None:
    """`camnet lab` itself stops its children (the fixture's killpg is only a safety net)."""
    (tmp_path / "secrets").mkdir()
    for name in ("lab-camera.password", "lab-snmp.community", "lab-snmpv3.auth",
                 "lab-snmpv3.priv"):
        (tmp_path / "secrets" / name).write_text(secret(name) + "\n")
    config = tmp_path / "camnet.yaml"
    config.write_text("""
defaults: {camera_auth: cam, ap_auth: v2, onvif_port: 8080, snmp_port: 1161}
communes: [{id: daron, name: "Đạ Ròn"}]
sites: [{id: s1, commune: daron, name: "Site 1"}]
auths:
  cam: {type: onvif, username: admin, password_file: secrets/lab-camera.password}
  v2: {type: snmp, version: 2c, community_file: secrets/lab-snmp.community}
  v3: {type: snmp, version: 3, username: camnet, auth_password_file: secrets/lab-snmpv3.auth,
       priv_password_file: secrets/lab-snmpv3.priv}
cameras: [{id: cam-x, site: s1, address: 127.0.22.60}]
aps: [{id: ap-x, site: s1, address: 127.0.22.61}]
""")
    lab = start_lab(config, "127.0.22.252:9839", tmp_path / "run")
    try:
        assert lab.proc is not None
        children = [p for p in _session_pids(lab.proc.pid) if p != lab.proc.pid]
        assert children, "the lab should run child processes (RTSP server, snmpsim)"
        lab.proc.send_signal(signal.SIGTERM)
        assert lab.proc.wait(timeout=30) == 0
        deadline = time.monotonic() + 10
        while _session_pids(lab.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)  # ordering only: children exit right after their parent
        assert _session_pids(lab.proc.pid) == []
        assert "camnet lab: stopped" in lab.log()
    finally:
        stop_lab(lab)
