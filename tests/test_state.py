"""State.load on reload: what a changed device keeps of its old record."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from monitor import memory
from monitor.config import load_config
from monitor.exporter import device_samples
from monitor.scheduler import Scheduler, SchedulerMetrics
from monitor.state import DeviceRecord, State
from probes import onvif
from probes.base import CheckResult, Status
from tests.netpeers import ap_config, line_probe

ADDRESS = "127.0.13.80"


def snmp_ok() -> CheckResult:
    result = CheckResult("snmp", True)
    result.add("camnet_ap_up", 1)
    return result


def loaded_state(cfg: Path, ping: bool = False) -> tuple[State, DeviceRecord]:
    """A state with one AP that has run its checks: results, verdict, backoff, prober memory."""
    ap_config(cfg, [("ap-80", ADDRESS, 7000)])
    if ping:
        cfg.write_text(cfg.read_text().replace("enabled: false", "enabled: true"))
    state = State()
    state.load(load_config(cfg))
    rec = state.devices["ap-80"]
    rec.results["snmp"] = snmp_ok()
    if ping:
        rec.results["ping"] = CheckResult("ping", True)
        rec.failures["ping"] = 0
    rec.failures["snmp"] = 2
    rec.probe_state["boot_time"] = 1234.0
    rec.status, rec.reasons = Status.OK, []
    return state, rec


def reload(state: State, cfg: Path, old: str, new: str) -> DeviceRecord:
    cfg.write_text(cfg.read_text().replace(old, new))
    added, changed, removed = state.load(load_config(cfg))
    assert (added, changed, removed) == (set(), {"ap-80"}, set())
    return state.devices["ap-80"]


@pytest.mark.parametrize(("old", "new"), [
    ("snmp: {interval: 1s", "snmp: {interval: 2s"),  # a shared profile
    ("Nhà văn hóa thử", "Nhà văn hóa mới"),  # the site's name
    ("operator: vnpt", "operator: viettel"),  # the site's operator (a label)
])
def test_a_changed_device_keeps_its_series_verdict_and_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, old: str, new: str
) -> None:
    cfg = tmp_path / "camnet.yaml"
    state, before = loaded_state(cfg)
    rec = reload(state, cfg, old, new)
    assert rec is not before and rec.target.address == ADDRESS
    assert rec.results == before.results
    assert (rec.status, rec.reasons, rec.failures) == (Status.OK, [], {"snmp": 2})
    assert rec.probe_state is before.probe_state
    # No gap in the series: camnet_ap_up is still there between the reload and the next run.
    assert any(s.name == "camnet_ap_up" and s.value == 1 for s in device_samples(rec))
    # ... and the next run, with the same outcome, announces nothing.
    caplog.set_level(logging.INFO, logger="camnet.scheduler")
    sched = Scheduler(state, SchedulerMetrics(CollectorRegistry()), probers={"snmp": line_probe})
    sched.record(rec, "snmp", snmp_ok())
    assert [r.getMessage() for r in caplog.records if r.name == "camnet.scheduler"] == []


def test_new_credentials_keep_the_results_but_not_the_prober_memory(tmp_path: Path) -> None:
    cfg = tmp_path / "camnet.yaml"
    state, before = loaded_state(cfg)
    rec = reload(state, cfg, "community: public-test-secret", "community: rotated-test-secret")
    assert rec.results == before.results and rec.failures == {"snmp": 2}
    assert rec.probe_state == {}  # learned with the old credentials (e.g. an auth backoff)


def test_a_password_rotation_keeps_the_picture_memory_but_not_the_auth_caches(tmp_path: Path) -> None:
    cfg = tmp_path / "camnet.yaml"
    cfg.write_text(
        "communes: [{id: testc, name: Thử}]\n"
        "sites: [{id: s1, commune: testc, name: Thử, operator: vnpt}]\n"
        "auths: {cam: {type: onvif, username: admin, password: Old-Passw0rd}}\n"
        "defaults: {camera_auth: cam}\n"
        "cameras: [{id: cam-82, site: s1, address: 127.0.13.82}]\n"
    )
    state = State()
    state.load(load_config(cfg))
    before = state.devices["cam-82"]
    picture = {"streaks": {"moved": 2}, "views": {"640x360": {"reference": "the view learned"}}}
    before.probe_state.update({
        "image": picture, "last_frame_jpeg": b"jpeg", "last_frame_jpeg_time": 5.0,
        onvif.AUTH_FAILED_KEY: 1.0, "stream_uri": "rtsp://127.0.13.82/main",
        "stream_uri_time": 2.0, "picture_uri": "rtsp://127.0.13.82/sub", "picture_ratio": 9.0,
        "snapshot_uri": "http://127.0.13.82/snap.jpg", "picture_failed_at": 3.0,
    })
    cfg.write_text(cfg.read_text().replace("Old-Passw0rd", "New-Passw0rd"))
    added, changed, removed = state.load(load_config(cfg))
    assert (added, changed, removed) == (set(), {"cam-82"}, set())
    rec = state.devices["cam-82"]
    # As a restart would keep it: the camera's view is not relearned from what it shows now.
    assert memory.reach_key(rec.target) == memory.reach_key(before.target)
    assert rec.probe_state == {"image": picture, "last_frame_jpeg": b"jpeg", "last_frame_jpeg_time": 5.0}
    assert rec.probe_state["image"] is picture


def test_another_address_starts_afresh(tmp_path: Path) -> None:
    cfg = tmp_path / "camnet.yaml"
    state, _ = loaded_state(cfg)
    rec = reload(state, cfg, ADDRESS, "127.0.13.81")
    assert (rec.results, rec.failures, rec.probe_state) == ({}, {}, {})
    assert rec.status == Status.UNKNOWN


def test_results_of_a_check_no_longer_enabled_are_dropped(tmp_path: Path) -> None:
    cfg = tmp_path / "camnet.yaml"
    state, _ = loaded_state(cfg, ping=True)
    rec = reload(state, cfg, "enabled: true", "enabled: false")
    assert set(rec.results) == {"snmp"}
    assert rec.failures == {"snmp": 2}
    assert not any(s.labels.get("check") == "ping" for s in device_samples(rec))
