"""The daemon's HTTP side in-process: /metrics (checked by promtool), /healthz, /probe, /frame,
/-/reload."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from monitor import exporter
from monitor.config import load_config
from monitor.daemon import Daemon
from monitor.exporter import DeviceCollector, WebHooks, build_app
from monitor.state import DeviceRecord, State
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


def _camera_app(tmp_path: Path, frames: bool) -> tuple[web.Application, State]:
    (tmp_path / "cam.password").write_text("frame-test-pw\n")
    cfg = tmp_path / "camnet.yaml"
    cfg.write_text(f"""
server: {{listen: "127.0.13.201:9832", frames: {str(frames).lower()}}}
defaults: {{camera_auth: cam}}
communes: [{{id: testc, name: "Xã thử"}}]
sites: [{{id: s1, commune: testc, name: "Nhà văn hóa thử"}}]
auths:
  cam: {{type: onvif, username: admin, password_file: cam.password}}
  ap: {{type: snmp, version: "2c", community_file: cam.password}}
cameras:
  - {{id: cam-01, site: s1, address: 127.0.13.202}}
  - {{id: cam-02, site: s1, address: 127.0.13.203}}
aps:
  - {{id: ap-01, site: s1, address: 127.0.13.204, auth: ap}}
""")
    loaded = load_config(cfg)
    state = State()
    state.load(loaded)
    hooks = WebHooks(registry=CollectorRegistry(), collector=DeviceCollector(state), state=state,
                     alive=lambda: True, reload=_never_reload, probe=_never_probe,
                     frames=lambda: loaded.config.server.frames)
    return build_app(hooks), state


async def _never_reload() -> tuple[bool, list[str]]:
    raise AssertionError("not called")


async def _never_probe(_rec: DeviceRecord, _debug: bool) -> str:
    raise AssertionError("not called")


async def test_frame_serves_the_kept_jpeg_only_when_enabled(tmp_path: Path) -> None:
    jpeg = b"\xff\xd8\xff\xe0 a kept frame \xff\xd9"
    for enabled in (True, False):
        app, state = _camera_app(tmp_path, enabled)
        state.devices["cam-01"].probe_state.update(last_frame_jpeg=jpeg,
                                                   last_frame_jpeg_time=time.time() - 30)
        async with TestClient(TestServer(app, host="127.0.13.201", port=9832)) as client:
            r = await client.get("/frame?camera=cam-01")
            if not enabled:
                assert r.status == 404 and "server.frames" in await r.text()
                continue
            assert r.status == 200 and r.content_type == "image/jpeg"
            assert await r.read() == jpeg
            assert r.headers["Cache-Control"] == "no-store"
            assert 29 <= int(r.headers["X-Frame-Age-Seconds"]) <= 40
            assert "GMT" in r.headers["Last-Modified"]
            for query, why in (("cam-02", "no frame from cam-02 yet"),
                               ("ap-01", "no camera 'ap-01'"), ("127.0.13.202", "no camera"),
                               ("", "no camera")):
                r = await client.get(f"/frame?camera={query}")
                assert r.status == 404 and why in await r.text(), query
            index = await (await client.get("/")).text()
            assert "/frame?camera=cam-01" in index and "/frame?camera=ap-01" not in index


async def test_probe_runs_a_few_at_a_time_and_one_per_device(tmp_path: Path) -> None:
    """/probe runs outside the scheduler's pools: a second probe of a device, or one more than
    PROBE_CONCURRENCY, is refused with 429 at once instead of piling up checks."""
    _, state = _camera_app(tmp_path, frames=False)
    release = asyncio.Event()
    running: list[str] = []

    async def slow_probe(rec: DeviceRecord, _debug: bool) -> str:
        running.append(rec.target.id)
        await release.wait()
        return "# probed\n"

    hooks = WebHooks(registry=CollectorRegistry(), collector=DeviceCollector(state), state=state,
                     alive=lambda: True, reload=_never_reload, probe=slow_probe)
    assert exporter.PROBE_CONCURRENCY == 2
    async with TestClient(TestServer(build_app(hooks), host="127.0.13.201", port=9832)) as client:
        first = asyncio.create_task(client.get("/probe?target=cam-01"))
        await asyncio.sleep(0.2)
        again = await client.get("/probe?target=cam-01")
        assert again.status == 429 and "a probe of cam-01 is already running" in await again.text()
        assert again.headers["Retry-After"] == "10"
        second = asyncio.create_task(client.get("/probe?target=cam-02"))
        await asyncio.sleep(0.2)
        third = await client.get("/probe?target=ap-01")
        assert third.status == 429 and "2 probes are already running" in await third.text()
        assert running == ["cam-01", "cam-02"]
        release.set()
        for task in (first, second):
            r = await task
            assert r.status == 200 and await r.text() == "# probed\n"
        r = await client.get("/probe?target=ap-01")  # free again
        assert r.status == 200 and running[-1] == "ap-01"


def test_a_prober_bug_is_device_status_3_on_metrics_as_on_probe(tmp_path: Path) -> None:
    """An internal error (camnet's bug) says nothing about the device: /metrics exports
    camnet_device_status 3 as /probe does, not the CRITICAL an AP without answers would get."""
    from monitor.checks import build_report
    from monitor.report import render_metrics
    from probes.base import CheckResult

    _, state = _camera_app(tmp_path, frames=False)
    rec = state.devices["ap-01"]
    rec.results["ping"] = CheckResult("ping", False, reason="unreachable")
    rec.results["snmp"] = CheckResult("snmp", False, reason="internal_error",
                                      message="snmp prober failed: KeyError: 'x'")
    on_metrics = series(DeviceCollector(state).render(), "camnet_device_status")
    on_probe = series(render_metrics(build_report(rec.target, dict(rec.results), rec.profile)),
                      "camnet_device_status")
    assert list(on_metrics.values()) == list(on_probe.values()) == [3.0]


def test_the_daemons_own_metrics_bring_no_undocumented_created_series(tmp_path: Path) -> None:
    """/metrics shows only documented families: prometheus_client's `_created` gauges (one per
    counter and histogram series) are not exported."""
    daemon = Daemon(tmp_path / "unused.yaml")
    daemon.scheduler.metrics.errors.labels("camera", "rtsp", "timeout").inc()
    daemon.scheduler.metrics.runs.labels("camera", "rtsp").inc()
    daemon.scheduler.metrics.duration.labels("camera", "rtsp").observe(0.3)
    text = exporter.metrics_text(daemon.collector, daemon.registry).decode()
    assert "camnet_check_errors_total{" in text
    families = {f.name for f in text_string_to_metric_families(text)}
    doc = (Path(__file__).resolve().parent.parent / "docs" / "metrics.md").read_text()
    undocumented = sorted(f for f in families if f"`{f}`" not in doc and f"`{f}_total`" not in doc)
    assert not undocumented, undocumented
