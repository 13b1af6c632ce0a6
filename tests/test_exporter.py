"""The daemon's HTTP side in-process: /metrics (checked by promtool), /healthz, /probe, /-/reload."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.config import load_config
from monitor.daemon import Daemon
from tests.netpeers import Peer, ap_config, line_probe

PORT = 7000
LISTEN = "127.0.13.200:9831"
BASE = f"http://{LISTEN}"


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[Daemon, Path, list[Peer]]]:
    peers = [await Peer("127.0.13.101", PORT).start(), Peer("127.0.13.102", PORT, "refuse")]
    cfg = tmp_path / "camnet.yaml"
    ap_config(cfg, [("ap-01", "127.0.13.101", PORT), ("ap-02", "127.0.13.102", PORT)],
              interval="500ms", timeout="400ms", listen=LISTEN)
    daemon = Daemon(cfg)
    daemon.scheduler.probers = {"snmp": line_probe}
    await daemon.start(load_config(cfg))
    try:
        await asyncio.sleep(1.2)
        yield daemon, cfg, peers
    finally:
        await daemon.stop()
        for p in peers:
            await p.stop()


async def get(path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.get(BASE + path) as r:
        return r.status, await r.text()


def series(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


async def test_metrics_carry_device_labels_and_pass_promtool(running) -> None:  # type: ignore[no-untyped-def]
    status, text = await get("/metrics")
    assert status == 200
    up = series(text, "camnet_ap_up")
    labels = {"commune": "testc", "site": "s1", "operator": "vnpt"}
    assert up[tuple(sorted({**labels, "ap": "ap-01"}.items()))] == 1.0
    assert up[tuple(sorted({**labels, "ap": "ap-02"}.items()))] == 0.0
    assert series(text, "camnet_check_errors_total")[
        (("check", "snmp"), ("kind", "ap"), ("reason", "refused"))] >= 1
    assert series(text, "camnet_build_info")
    assert series(text, "camnet_config_last_reload_successful")[()] == 1.0
    assert series(text, "camnet_site_info")[
        (("commune", "testc"), ("operator", "vnpt"), ("site", "s1"), ("site_name", "Nhà văn hóa thử"))] == 1
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is required"
    check = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()


async def test_healthz(running) -> None:  # type: ignore[no-untyped-def]
    assert await get("/healthz") == (200, "ok\n")


async def test_probe_accepts_only_inventory_ids(running) -> None:  # type: ignore[no-untyped-def]
    status, text = await get("/probe?target=ap-01")
    assert status == 200
    assert series(text, "camnet_ap_up")
    for bad in ("127.0.13.101", "snmp://127.0.13.101:7000", "ap-99", ""):
        status, text = await get(f"/probe?target={bad}")
        assert status == 400, bad
        assert "inventory id" in text


async def test_probe_sends_nothing_to_an_address_in_the_query(running) -> None:  # type: ignore[no-untyped-def]
    trap = await Peer("127.0.13.150", PORT).start()
    try:
        for q in ("127.0.13.150", "127.0.13.150:7000", "tcp://127.0.13.150:7000"):
            status, _ = await get(f"/probe?target={q}")
            assert status == 400
        await asyncio.sleep(0.2)
        assert trap.connections == 0
    finally:
        await trap.stop()


async def test_reload_removes_series_and_bad_config_keeps_old(running) -> None:  # type: ignore[no-untyped-def]
    _daemon, cfg, _ = running
    ap_config(cfg, [("ap-01", "127.0.13.101", PORT)], interval="500ms", timeout="400ms", listen=LISTEN)
    async with aiohttp.ClientSession() as s, s.post(BASE + "/-/reload") as r:
        assert r.status == 200
    _, text = await get("/metrics")
    assert {dict(k)["ap"] for k in series(text, "camnet_ap_up")} == {"ap-01"}

    cfg.write_text(cfg.read_text().replace("interval: 500ms", "interval: soon"))
    async with aiohttp.ClientSession() as s, s.post(BASE + "/-/reload") as r:
        assert r.status == 400
        body = await r.text()
    assert "previous config keeps running" in body
    assert f"{cfg}:" in body and "profiles.fast.snmp.interval" in body
    _, text = await get("/metrics")
    assert series(text, "camnet_config_last_reload_successful")[()] == 0.0
    assert {dict(k)["ap"] for k in series(text, "camnet_ap_up")} == {"ap-01"}


def test_renderer_escapes_and_formats_like_prometheus_expects() -> None:
    from monitor.exporter import render_text
    from probes.base import Sample

    base = {"commune": "daron", "site": 'thôn "1"\\x', "ap": "ap-1"}
    samples = [
        Sample("camnet_ap_up", 1),
        Sample("camnet_ap_interface_receive_bytes_total", 12345678901234.0, {"interface": "eth0\nx"}),
        Sample("camnet_ping_rtt_seconds", float("nan")),
        Sample("camnet_ap_wifi_clients", float("inf"), {"radio": "5GHz"}),
        Sample("camnet_ap_info", 1, {"site": "overridden", "sys_descr": "Nhà văn hóa"}),
    ]
    text = render_text([(base, samples), ({}, [Sample("camnet_site_info", 1.0)])]).decode()
    check = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), capture_output=True)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
    parsed = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for fam in text_string_to_metric_families(text) for s in fam.samples}
    key = tuple(sorted({**base, "interface": "eth0\nx"}.items()))
    assert parsed[("camnet_ap_interface_receive_bytes_total", key)] == 12345678901234.0
    assert "# TYPE camnet_ap_interface_receive_bytes_total counter" in text
    info = tuple(sorted({**base, "site": "overridden", "sys_descr": "Nhà văn hóa"}.items()))
    assert parsed[("camnet_ap_info", info)] == 1.0
    radio = tuple(sorted({**base, "radio": "5GHz"}.items()))
    assert parsed[("camnet_ap_wifi_clients", radio)] == float("inf")
    assert "camnet_site_info 1.0\n" in text
