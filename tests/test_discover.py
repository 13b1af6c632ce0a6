"""`camnet discover`: WS-Discovery messages, inventory comparison, unicast on loopback and
multicast across a veth pair between two network namespaces this test creates.

The responders (tests/wsd_responder.py) answer with the ProbeMatches structure of ONVIF Core /
WS-Discovery 2005/04 and the Scopes the real captured cameras report (see that file).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from monitor.cli import main
from monitor.config import CameraConfig
from monitor.discover import (
    NS,
    Discovered,
    build_probe,
    compare,
    parse_probe_matches,
    verdict,
    xaddr_endpoint,
)
from probes.base import Status
from tests.wsd_responder import Camera, Responder, probe_match

REPO = Path(__file__).resolve().parent.parent
HIK_EPR = "urn:uuid:54575a2e-3b2d-11b2-8a7b-4419b63ebaa1"  # Hikvision style: ends with the MAC
AXIS_EPR = "urn:uuid:a9f3c2d0-0d2e-4f0b-9e43-00408cfab754"


def write_config(path: Path, cameras: list[dict[str, object]]) -> Path:
    lines = [
        "defaults: {camera_auth: cam, ap_auth: snmp, onvif_port: 80}",
        "communes: [{id: daron, name: Đạ Ròn}]",
        "sites:",
        "  - {id: daron-01, commune: daron, name: Nhà văn hóa thôn 01}",
        "  - {id: daron-02, commune: daron, name: Nhà văn hóa thôn 02}",
        "auths:",
        "  cam: {type: onvif, username: admin, password: not-used-here}",
        "  snmp: {type: snmp, community: not-used-here}",
        "cameras:",
    ]
    for cam in cameras:
        lines.append("  - " + json.dumps(cam, ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------- messages


def test_probe_is_a_ws_discovery_probe_for_video_transmitters() -> None:
    root = ET.fromstring(build_probe("uuid:1234"))
    assert root.findtext("s:Header/a:Action", namespaces=NS) == \
        "http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe"
    assert root.findtext("s:Header/a:MessageID", namespaces=NS) == "uuid:1234"
    assert root.findtext("s:Body/d:Probe/d:Types", namespaces=NS) == "dn:NetworkVideoTransmitter"


def test_parse_probe_match_of_the_hikvision_shape() -> None:
    data = probe_match(Camera("127.0.15.31", 8080, HIK_EPR, "hikvision"), "uuid:p1", 1)
    [d] = parse_probe_matches(data, "uuid:p1")
    assert d.endpoint == HIK_EPR
    assert (d.host, d.port) == ("127.0.15.31", 8080)
    assert d.hardware == "DS-2DF7276-AEL"
    assert "dn:NetworkVideoTransmitter" in d.types
    [a] = parse_probe_matches(probe_match(Camera("127.0.15.32", 80, AXIS_EPR, "axis"), "x", 1))
    assert a.name == "AXIS Q6045-E"  # %20 decoded
    assert parse_probe_matches(data, "uuid:other-probe") == []
    assert parse_probe_matches(b"<not xml", None) == []
    assert parse_probe_matches(build_probe("uuid:p1"), None) == []


def test_xaddr_prefers_ipv4_and_default_port() -> None:
    assert xaddr_endpoint(["http://[fe80::1]/onvif/device_service",
                           "http://127.0.15.40/onvif/device_service"]) == ("127.0.15.40", 80)
    assert xaddr_endpoint(["https://cam.local/onvif"]) == ("cam.local", 443)
    assert xaddr_endpoint(["junk", "http://h:notaport/x"]) == ("", 80)
    # urlsplit raises on these ("Invalid IPv6 URL"); any device on the LAN may send one.
    assert xaddr_endpoint(["http://[fe80::1/onvif", "http://127.0.15.40/x"]) == ("127.0.15.40", 80)
    assert xaddr_endpoint(["http://[::1:80/onvif", "http://]/"]) == ("", 80)


def test_an_answer_with_only_malformed_xaddrs_is_ignored(capsys: pytest.CaptureFixture[str]) -> None:
    bad = Responder([Camera("[fe80::1", 8080, "urn:uuid:bad-xaddr", "axis")],
                    bind="127.0.15.36").start()
    try:
        code = main(["discover", "--no-inventory", "--wait", "0.5s", "--target", "127.0.15.36",
                     "--json"])
    finally:
        bad.stop()
    data = json.loads(capsys.readouterr().out)
    assert bad.probes >= 1
    assert code == 0 and data["devices"] == []
    assert data["ignored_datagrams"] >= 1


# ---------------------------------------------------------------- comparison


def cam(id_: str, address: str, port: int | None = None, **labels: str) -> CameraConfig:
    return CameraConfig(id=id_, site="daron-01", address=address, onvif_port=port, labels=labels)


def found(host: str, port: int, endpoint: str, scopes: list[str] | None = None) -> Discovered:
    return Discovered(endpoint, [f"http://{host}:{port}/onvif/device_service"], scopes or [],
                      ["dn:NetworkVideoTransmitter"], host=host, port=port)


def test_compare_all_four_states() -> None:
    cameras = [
        cam("cam-ok", "127.0.15.31", 8080),
        cam("cam-moved", "127.0.15.99", endpoint=AXIS_EPR),
        cam("cam-mac", "127.0.15.98", mac="44:19:B6:3E:BA:A1"),
        cam("cam-gone", "127.0.15.34"),
    ]
    devices = [
        found("127.0.15.31", 8080, "urn:uuid:ok"),
        found("127.0.15.32", 80, AXIS_EPR),
        found("127.0.15.33", 80, HIK_EPR),
        found("127.0.15.35", 80, "urn:uuid:stranger"),
    ]
    rows = {r.id or r.address: r for r in compare(devices, cameras, 80)}
    assert rows["cam-ok"].state == "ok" and rows["cam-ok"].matched_by == "address"
    assert rows["cam-moved"].state == "address_changed"
    assert rows["cam-moved"].matched_by == "endpoint"
    assert (rows["cam-moved"].address, rows["cam-moved"].inventory_address) == \
        ("127.0.15.32:80", "127.0.15.99:80")
    assert rows["cam-mac"].state == "address_changed" and rows["cam-mac"].matched_by == "mac"
    assert rows["cam-gone"].state == "missing"
    assert rows["127.0.15.35:80"].state == "unknown"
    assert verdict(list(rows.values())) == Status.CRITICAL


def test_verdicts() -> None:
    assert verdict(compare([found("127.0.15.31", 80, "e")], [cam("c", "127.0.15.31")], 80)) \
        == Status.OK
    assert verdict(compare([found("127.0.15.31", 80, "e")], [], 80)) == Status.WARNING
    assert verdict(compare([], [cam("c", "127.0.15.31")], 80)) == Status.CRITICAL
    # the same address on another port is another service, not the inventory camera
    rows = compare([found("127.0.15.31", 8080, "e")], [cam("c", "127.0.15.31")], 80)
    assert sorted(r.state for r in rows) == ["missing", "unknown"]


# ---------------------------------------------------------------- unicast on loopback


@pytest.fixture
def responders() -> Iterator[list[Responder]]:
    started = [
        Responder([Camera("127.0.15.31", 8080, HIK_EPR, "hikvision")], bind="127.0.15.31",
                  noise=True).start(),
        # cam-moved's camera now answers at .33 (its endpoint reference gives it away)
        Responder([Camera("127.0.15.33", 80, AXIS_EPR, "axis")], bind="127.0.15.33").start(),
        Responder([Camera("127.0.15.35", 80, "urn:uuid:stranger", "axis")],
                  bind="127.0.15.35").start(),
    ]
    try:
        yield started
    finally:
        for r in started:
            r.stop()


def test_unicast_discover_compares_with_inventory(
    responders: list[Responder], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path / "camnet.yaml", [
        {"id": "cam-ok", "site": "daron-01", "address": "127.0.15.31", "onvif_port": 8080},
        {"id": "cam-silent", "site": "daron-01", "address": "127.0.15.32"},
        {"id": "cam-moved", "site": "daron-02", "address": "127.0.15.90",
         "labels": {"endpoint": AXIS_EPR}},
        {"id": "cam-elsewhere", "site": "daron-02", "address": "127.0.15.91"},
    ])
    targets = ["127.0.15.31", "127.0.15.32", "127.0.15.33", "127.0.15.35"]
    argv = ["discover", "--config", str(cfg), "--wait", "1s", "--json"]
    for t in targets:
        argv += ["--target", t]
    code = main(argv)
    data = json.loads(capsys.readouterr().out)
    assert code == 2 and data["status"] == "CRITICAL"
    states = {(d["state"], d["id"] or d["address"]) for d in data["devices"]}
    # cam-elsewhere was not asked (unicast only), so it is not called missing
    assert states == {("ok", "cam-ok"), ("missing", "cam-silent"),
                      ("address_changed", "cam-moved"), ("unknown", "127.0.15.35:80")}
    ok = next(d for d in data["devices"] if d["id"] == "cam-ok")
    assert ok["hardware"] == "DS-2DF7276-AEL" and ok["endpoint"] == HIK_EPR
    assert ok["xaddrs"] == ["http://127.0.15.31:8080/onvif/device_service"]
    assert data["ignored_datagrams"] >= 2  # the junk and the answer to another probe
    assert all(r.probes >= 1 for r in responders)

    code = main(["discover", "--config", str(cfg), "--wait", "1s", "--target", "127.0.15.31",
                 "--target", "127.0.15.33"])
    text = capsys.readouterr().out
    assert code == 1
    lines = text.splitlines()
    assert lines[0] == ("WARNING discover: 2 camera(s) answered on 127.0.15.31:3702, "
                        "127.0.15.33:3702: 1 ok, 1 address changed")
    moved = next(ln for ln in lines if "cam-moved" in ln)
    assert "127.0.15.33:80" in moved and "127.0.15.90:80" in moved

    code = main(["discover", "--config", str(cfg), "--wait", "1s", "--target", "127.0.15.31",
                 "--lang", "vi"])
    assert code == 0
    assert capsys.readouterr().out.startswith("BÌNH THƯỜNG discover: 1 camera trả lời qua ")


def test_site_filter_and_no_inventory(responders: list[Responder], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path / "camnet.yaml", [
        {"id": "cam-ok", "site": "daron-01", "address": "127.0.15.31", "onvif_port": 8080},
        {"id": "cam-other-site", "site": "daron-02", "address": "127.0.15.33"},
    ])
    code = main(["discover", "--config", str(cfg), "--wait", "0.5s", "--site", "daron-01",
                 "--target", "127.0.15.31", "--target", "127.0.15.33", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 1
    assert data["counts"] == {"ok": 1, "address_changed": 0, "unknown": 1, "missing": 0}
    code = main(["discover", "--no-inventory", "--config", str(tmp_path / "absent.yaml"),
                 "--wait", "0.5s", "--target", "127.0.15.35"])
    assert code == 0
    assert "Q6045-E" in capsys.readouterr().out


@pytest.mark.parametrize("argv, expected", [
    (["discover"], "give --interface (multicast) and/or --target HOST (unicast)"),
    (["discover", "--target", "127.0.15.31:99999"], "is not HOST or HOST:PORT"),
    (["discover", "--interface", "nosuch0", "--no-inventory"],
     "no network interface named 'nosuch0'"),
    (["discover", "--target", "127.0.15.31", "--config", "/nonexistent/camnet.yaml"],
     "config error: /nonexistent/camnet.yaml:0: (file): cannot read"),
    (["discover", "--target", "127.0.15.31", "--site", "nowhere",
      "--config", str(REPO / "config/camnet.yaml")], "unknown site(s) nowhere"),
    (["discover", "--target", "127.0.15.31", "--commune", "daronn",
      "--config", str(REPO / "config/camnet.yaml")], "unknown commune(s) daronn"),
    (["discover", "--bogus", "secret-value"], "unrecognized option(s): --bogus"),
])
def test_errors_one_line_exit_3(argv: list[str], expected: str,
                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 3
    out = capsys.readouterr()
    assert out.out == ""
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], out.err
    assert "secret-value" not in out.err


def test_json_errors_are_a_json_document_too(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["discover", "--target", "127.0.15.31", "--site", "nowhere", "--json",
                 "--config", str(REPO / "config/camnet.yaml")])
    out = capsys.readouterr()
    assert code == 3 and "unknown site(s) nowhere" in out.err
    doc = json.loads(out.out)
    assert (doc["status"], doc["exit_code"]) == ("UNKNOWN", 3) and "nowhere" in doc["error"]


# ---------------------------------------------------------------- multicast in namespaces


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def netns_pair() -> Iterator[tuple[str, str]]:
    """Two namespaces joined by a veth pair: `tech` (10.215.0.1) and `cams` (10.215.0.2 plus
    one address per camera). Addresses exist only inside these namespaces; both are deleted."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2")
    tag = uuid.uuid4().hex[:6]
    tech, cams = f"camnet-tech-{tag}", f"camnet-cams-{tag}"
    created: list[str] = []
    try:
        for ns in (tech, cams):
            _ip("netns", "add", ns)
            created.append(ns)
        _ip("-n", tech, "link", "add", "veth-t", "type", "veth", "peer", "name", "veth-c",
            "netns", cams)
        _ip("-n", tech, "addr", "add", "10.215.0.1/24", "dev", "veth-t")
        _ip("-n", cams, "addr", "add", "10.215.0.2/24", "dev", "veth-c")
        for host in ("10.215.0.11", "10.215.0.13", "10.215.0.14"):
            _ip("-n", cams, "addr", "add", f"{host}/24", "dev", "veth-c")
        for ns, dev in ((tech, "veth-t"), (cams, "veth-c")):
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", dev, "up")
    except subprocess.CalledProcessError as e:
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        pytest.skip(f"cannot create network namespaces here: {e.stderr.decode().strip()}")
    try:
        yield tech, cams
    finally:
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def test_multicast_discover_across_veth(netns_pair: tuple[str, str], tmp_path: Path) -> None:
    tech, cams = netns_pair
    responder = subprocess.Popen(
        ["ip", "netns", "exec", cams, sys.executable, str(REPO / "tests/wsd_responder.py"),
         "--join", "10.215.0.2",
         "--camera", f"10.215.0.11:80,{HIK_EPR},hikvision",
         "--camera", f"10.215.0.13:80,{AXIS_EPR},axis",
         "--camera", "10.215.0.14:8000,urn:uuid:0d1e2f30-unknown,axis"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert responder.stdout is not None
        assert responder.stdout.readline().strip() == "ready", responder.stderr
        cfg = write_config(tmp_path / "camnet.yaml", [
            {"id": "cam-hik", "site": "daron-01", "address": "10.215.0.11"},
            {"id": "cam-axis", "site": "daron-01", "address": "10.215.0.12",
             "labels": {"mac": "00:40:8C:FA:B7:54"}},
            {"id": "cam-dead", "site": "daron-01", "address": "10.215.0.20"},
        ])
        out = subprocess.run(
            ["ip", "netns", "exec", tech, sys.executable, "-m", "monitor", "discover",
             "--interface", "veth-t", "--config", str(cfg), "--wait", "1.5s", "--json"],
            capture_output=True, text=True, cwd=REPO, timeout=60)
        assert out.returncode == 2, out.stderr
        data = json.loads(out.stdout)
        assert data["interface"] == "veth-t"
        states = {(d["state"], d["id"] or d["address"], d["matched_by"]) for d in data["devices"]}
        assert states == {
            ("ok", "cam-hik", "address"),
            ("address_changed", "cam-axis", "mac"),  # its endpoint UUID ends with the MAC
            ("missing", "cam-dead", ""),
            ("unknown", "10.215.0.14:8000", ""),
        }
    finally:
        responder.kill()
        responder.wait(timeout=10)
