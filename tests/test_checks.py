"""check_device, the shared "check this device now": ordering, deadlines, prober bugs, secrets.

The probers here are small stand-ins that record how they were called; the real probers are
exercised end to end by tests/test_probe_cli.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import SecretStr

from monitor import checks
from monitor.config import ApProfile, CameraProfile, OnvifAuth
from probes.base import CheckResult, Credentials, Status, Target

PASSWORD = "hunter2-XYZ"
COMMUNITY = "vnpt"


def camera() -> Target:
    auth = Credentials(OnvifAuth(type="onvif", username="admin"),
                       {"password": SecretStr(PASSWORD), "rtsp_password": None})
    return Target("cam-t-01", "camera", "127.0.15.1", {"camera": "cam-t-01"}, auth,
                  {"name": None, "onvif_port": 8080, "rtsp_url": None})


@pytest.fixture
def probers(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Replace the prober table; returns a dict the test fills with behaviours."""
    calls: dict[str, Any] = {"order": [], "deadlines": {}, "state_ids": set()}
    table: dict[str, Any] = {}

    def make(check: str) -> Any:
        async def prober(target: Target, settings: Any, state: dict[str, Any],
                         deadline: float) -> CheckResult:
            calls["order"].append(f"{check}:start")
            calls["deadlines"][check] = deadline - asyncio.get_running_loop().time()
            calls["state_ids"].add(id(state))
            behaviour = table.get(check, "ok")
            if behaviour == "hang":
                await asyncio.sleep(3600)
            if behaviour == "raise":
                raise RuntimeError(f"boom with {target.auth.secret('password')}")  # type: ignore[union-attr]
            if behaviour == "bad_label":
                r = CheckResult(check, True, message=f"ok with {PASSWORD}")
                r.add("camnet_camera_time_to_first_frame_seconds", 0.5, stream=b"\xff")  # type: ignore[arg-type]
                return r
            if behaviour == "none":
                return None  # type: ignore[return-value]
            if behaviour == "leak":
                r = CheckResult(check, False, reason="auth_failed",
                                message=f"login admin:{PASSWORD} refused at "
                                        f"rtsp://admin:{PASSWORD}@127.0.15.1/ch1",
                                problems={"auth_failed": True})
                r.debug(f"sent password {PASSWORD}")
                r.facts["stream_uri"] = f"rtsp://admin:{PASSWORD}@127.0.15.1/ch1"
                calls["order"].append(f"{check}:end")
                return r
            await asyncio.sleep(0.01)
            calls["order"].append(f"{check}:end")
            r = CheckResult(check, True)
            if check == "rtsp":
                r.add("camnet_camera_time_to_first_frame_seconds", 0.5)
            return r
        return prober

    for name in ("ping", "onvif", "rtsp", "snmp"):
        monkeypatch.setitem(checks.PROBERS, name, make(name))
    calls["table"] = table
    return calls


async def test_all_checks_run_rtsp_after_onvif_and_share_state(probers: dict[str, Any]) -> None:
    state: dict[str, Any] = {}
    report = await checks.check_device(camera(), CameraProfile(kind="camera"), state)
    assert report.status == Status.OK
    assert list(report.results) == ["ping", "onvif", "rtsp"]
    order = probers["order"]
    assert order.index("rtsp:start") > order.index("onvif:end")
    # ping runs beside the ONVIF -> RTSP chain, not after it
    assert order.index("ping:start") < order.index("onvif:end")
    assert probers["state_ids"] == {id(state)}
    names = [s.name for s in report.all_samples()]
    assert "camnet_camera_time_to_first_frame_seconds" in names and "camnet_camera_up" in names


async def test_deadline_comes_from_settings_and_budget(probers: dict[str, Any]) -> None:
    profile = CameraProfile.model_validate(
        {"kind": "camera", "ping": {"timeout": "2s", "interval": "10s"},
         "onvif": {"timeout": "7s"}, "rtsp": {"timeout": "9s"}})
    await checks.check_device(camera(), profile, {})
    d = probers["deadlines"]
    assert 1.5 < d["ping"] <= 2.0 and 6.5 < d["onvif"] <= 7.0 and 8.5 < d["rtsp"] <= 9.0
    probers["deadlines"].clear()
    await checks.check_device(camera(), profile, {}, budget=3.0)
    d = probers["deadlines"]
    # ONVIF, which RTSP waits for, gets at most half the budget; RTSP what is left after it
    # (almost all of it here: the stand-in ONVIF answers at once)
    assert 1.3 < d["onvif"] <= 1.5
    assert 2.5 < d["rtsp"] <= 3.0
    assert 1.5 < d["ping"] <= 2.0
    probers["deadlines"].clear()
    profile = profile.model_copy(update={"onvif": profile.onvif.model_copy(
        update={"enabled": False})})
    await checks.check_device(camera(), profile, {}, budget=3.0)
    assert 2.5 < probers["deadlines"]["rtsp"] <= 3.0  # nothing to wait for: the whole budget


async def test_a_hanging_prober_is_cut_off(probers: dict[str, Any],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checks, "OVERRUN_GRACE", 0.05)
    probers["table"]["onvif"] = "hang"
    report = await checks.check_device(camera(), CameraProfile(kind="camera"), {}, budget=0.2)
    assert report.results["onvif"].reason == "timeout"
    assert not report.results["onvif"].success
    assert report.results["rtsp"].success  # the chain goes on after a timed-out ONVIF
    assert report.status == Status.OK  # an ONVIF timeout alone raises no camera problem


async def test_prober_bug_is_unknown_and_masks_secret(probers: dict[str, Any]) -> None:
    probers["table"]["rtsp"] = "raise"
    report = await checks.check_device(camera(), CameraProfile(kind="camera"), {})
    assert report.status == Status.UNKNOWN
    r = report.results["rtsp"]
    assert r.reason == "internal_error"
    assert r.message == "rtsp prober failed: RuntimeError: boom with <secret>"
    assert report.reasons == ["rtsp prober failed: RuntimeError: boom with <secret>"]
    assert PASSWORD not in "".join(r.log)


async def test_a_malformed_result_is_an_internal_error_not_a_dead_job(
        probers: dict[str, Any]) -> None:
    """A prober bug in what it returns (a label that is not text) cannot escape run_check,
    where it would end the device's scheduler job silently; the result is replaced whole."""
    probers["table"]["rtsp"] = "bad_label"
    report = await checks.check_device(camera(), CameraProfile(kind="camera"), {})
    r = report.results["rtsp"]
    assert (report.status, r.reason, r.samples) == (Status.UNKNOWN, "internal_error", [])
    assert r.message == "rtsp prober returned a malformed result: TypeError"
    assert PASSWORD not in repr(r)


async def test_a_prober_that_returns_no_result_is_an_internal_error(
        probers: dict[str, Any]) -> None:
    probers["table"]["rtsp"] = "none"
    report = await checks.check_device(camera(), CameraProfile(kind="camera"), {})
    r = report.results["rtsp"]
    assert (report.status, r.reason, r.success) == (Status.UNKNOWN, "internal_error", False)
    assert r.message == "rtsp prober returned NoneType, not a result"


async def test_secrets_masked_in_message_log_and_facts(probers: dict[str, Any]) -> None:
    probers["table"]["onvif"] = "leak"
    report = await checks.check_device(camera(), CameraProfile(kind="camera"), {})
    r = report.results["onvif"]
    assert PASSWORD not in r.message + "".join(r.log) + str(r.facts)
    assert r.facts["stream_uri"] == "rtsp://<secret>@127.0.15.1/ch1"
    assert report.status == Status.CRITICAL and report.reasons == ["auth_failed"]


def test_labels_keep_the_devices_words() -> None:
    """A short secret that is also a word of a device's names (the telco's name as community)
    is not masked in labels: masking renamed the series and showed which word is the secret.
    A long one there is the device echoing it, and URL credentials never leave."""
    r = CheckResult("snmp", True, message=f"polled with community {COMMUNITY}")
    for name in (f"{COMMUNITY}-uplink", f"echo {PASSWORD}", f"http://u:{COMMUNITY}@x/"):
        r.add("camnet_ap_interface_up", 1, interface=name)
    checks.scrub(r, [COMMUNITY, PASSWORD])
    assert [s.labels["interface"] for s in r.samples] == [
        "vnpt-uplink", "echo <secret>", "http://<secret>@x/"]
    assert r.message == "polled with community <secret>"


async def test_disabled_check_is_skipped(probers: dict[str, Any]) -> None:
    profile = CameraProfile.model_validate({"kind": "camera", "onvif": {"enabled": False}})
    report = await checks.check_device(camera(), profile, {})
    assert list(report.results) == ["ping", "rtsp"]
    assert report.skipped == ["onvif"]
    assert "onvif:start" not in probers["order"]


async def test_ap_checks(probers: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checks, "OVERRUN_GRACE", 0.05)
    target = Target("ap-t-01", "ap", "127.0.15.2", {"ap": "ap-t-01"}, None, {"snmp_port": 1161})
    probers["table"]["snmp"] = "hang"
    report = await checks.check_device(target, ApProfile(kind="ap"), {}, budget=0.1)
    # the AP verdict (probes/ap.py): SNMP silent but ping answering is degraded, not down
    assert report.status == Status.WARNING
    assert report.reasons == ["snmp: timeout (the AP answers ping)"]
    probers["table"]["ping"] = "hang"
    report = await checks.check_device(target, ApProfile(kind="ap"), {}, budget=0.1)
    assert report.status == Status.CRITICAL
    assert report.results["ping"].reason == "timeout"


def test_redact_url_userinfo_without_known_secret() -> None:
    assert checks.redact("rtsp://u:p@h/x and http://a@b", []) == \
        "rtsp://<secret>@h/x and http://<secret>@b"


def test_build_report_from_scheduler_results() -> None:
    """The daemon's stored results can be rendered with the same debug view."""
    from monitor.report import render_debug

    target = camera()
    rtsp = CheckResult("rtsp", False, reason="auth_failed", message=f"401 for {PASSWORD}",
                       problems={"no_stream": True})
    profile = CameraProfile.model_validate({"kind": "camera", "ping": {"enabled": False}})
    report = checks.build_report(target, {"rtsp": rtsp, "onvif": CheckResult("onvif", True)},
                                 profile)
    assert list(report.results) == ["onvif", "rtsp"]
    assert report.skipped == ["ping"]
    assert report.status == Status.CRITICAL and report.reasons == ["no_stream"]
    text = render_debug(report)
    assert "check=rtsp failed reason=auth_failed" in text and PASSWORD not in text
