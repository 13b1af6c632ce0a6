"""Renderers of a device check, on constructed results: text (en/vi), JSON, Prometheus, debug."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from monitor.checks import DeviceReport
from monitor.config import OnvifAuth, SnmpAuth
from monitor.report import (
    fact_label,
    format_value,
    render_debug,
    render_json,
    render_metrics,
    render_text,
    to_json,
    verdict_line,
)
from probes import VERDICTS
from probes.base import CheckResult, Credentials, Sample, Status, Target
from probes.onvif import OnvifSettings
from probes.ping import PingSettings
from probes.rtsp import RtspSettings
from probes.snmp import SnmpSettings

PASSWORD = "s3cr3t-Pa55"
COMMUNITY = "c0mmunity-X"


def camera_target() -> Target:
    auth = Credentials(OnvifAuth(type="onvif", username="admin"),
                       {"password": SecretStr(PASSWORD), "rtsp_password": None})
    return Target("cam-daron-01", "camera", "127.0.2.1",
                  {"commune": "daron", "site": "daron-01", "camera": "cam-daron-01"}, auth,
                  {"name": "Nhà văn hóa thôn 01, Đạ Ròn", "onvif_port": 8080})


def camera_report(rtsp_ok: bool = True, problems: dict[str, bool] | None = None) -> DeviceReport:
    ping = CheckResult("ping", True, duration=0.004)
    ping.add("camnet_ping_up", 1)
    ping.add("camnet_ping_rtt_seconds", 0.0004)
    ping.add("camnet_ping_loss_ratio", 0.0)
    onvif = CheckResult("onvif", True, duration=0.12,
                        facts={"vendor": "HIKVISION", "model": "DS-2DF7276-AEL",
                               "firmware": "V5.1.6", "serial": "DS-2DF7276-AEL0120160513",
                               "clock_offset_seconds": 0.8})
    onvif.add("camnet_camera_onvif_up", 1)
    onvif.add("camnet_camera_clock_offset_seconds", 0.8)
    onvif.add("camnet_camera_info", 1, vendor="HIKVISION", model="DS-2DF7276-AEL",
              firmware="V5.1.6", serial="DS-2DF7276-AEL0120160513")
    onvif.debug("GetSystemDateAndTime: offset +0.800 s")
    if rtsp_ok:
        rtsp = CheckResult("rtsp", True, duration=1.3,
                           facts={"codec": "h264", "width": 1280, "height": 720, "fps": 15.0},
                           problems=problems or {})
        rtsp.add("camnet_camera_time_to_first_frame_seconds", 1.3)
        rtsp.add("camnet_camera_brightness_ratio", 0.47)
        rtsp.add("camnet_camera_sharpness", 812.5)
    else:
        rtsp = CheckResult("rtsp", False, reason="auth_failed",
                           message="RTSP 401 Unauthorized", duration=0.05,
                           problems={"no_stream": True})
        rtsp.debug("DESCRIBE rtsp://127.0.2.1:8554/Streaming/Channels/101 -> 401")
    results = {"ping": ping, "onvif": onvif, "rtsp": rtsp}
    status, reasons, samples = VERDICTS["camera"](results)
    return DeviceReport(camera_target(), status, reasons, results, samples,
                        settings={"ping": PingSettings(), "onvif": OnvifSettings(),
                                  "rtsp": RtspSettings()}, duration=1.42)


def ap_report() -> DeviceReport:
    auth = Credentials(SnmpAuth(type="snmp", version="2c"),
                       {"community": SecretStr(COMMUNITY), "auth_password": None,
                        "priv_password": None})
    target = Target("ap-tutra-03", "ap", "127.0.1.15",
                    {"commune": "tutra", "site": "tutra-03", "ap": "ap-tutra-03"}, auth,
                    {"name": "Nhà văn hóa thôn 03, Tu Tra", "snmp_port": 1161})
    ping = CheckResult("ping", False, reason="timeout", message="3 of 3 echo requests lost")
    ping.add("camnet_ping_up", 0)
    ping.add("camnet_ping_loss_ratio", 1.0)
    snmp = CheckResult("snmp", True, duration=0.09,
                       facts={"sys_name": "NVH-TuTra-03", "sys_descr": "Linux 2.6.32.68 #1"})
    snmp.add("camnet_ap_up", 1)
    snmp.add("camnet_ap_boot_time_seconds", 1_700_000_000)
    snmp.add("camnet_ap_interface_up", 1, interface="eth0")
    snmp.add("camnet_ap_interface_up", 0, interface="ath0")
    snmp.add("camnet_ap_wifi_clients", 7, radio="ath0")
    snmp.add("camnet_ap_interface_receive_bytes_total", 123456789, interface="eth0")
    results = {"ping": ping, "snmp": snmp}
    status, reasons, samples = VERDICTS["ap"](results)
    return DeviceReport(target, status, reasons, results, samples,
                        settings={"ping": PingSettings(), "snmp": SnmpSettings()})


def test_verdict_line_critical_names_problem_and_cause() -> None:
    report = camera_report(rtsp_ok=False)
    assert report.status == Status.CRITICAL
    assert verdict_line(report) == (
        "CRITICAL cam-daron-01 (Nhà văn hóa thôn 01, Đạ Ròn): no_stream — "
        "RTSP: RTSP 401 Unauthorized")


def test_verdict_line_ok_and_warning() -> None:
    assert verdict_line(camera_report()) == "OK cam-daron-01 (Nhà văn hóa thôn 01, Đạ Ròn)"
    warn = camera_report(problems={"dark": True})
    assert warn.status == Status.WARNING
    assert verdict_line(warn) == "WARNING cam-daron-01 (Nhà văn hóa thôn 01, Đạ Ròn): dark"


def test_text_is_verdict_first_then_facts_table() -> None:
    text = render_text(camera_report())
    lines = text.splitlines()
    assert lines[0].startswith("OK cam-daron-01")
    for label, value in [("vendor", "HIKVISION"), ("firmware", "V5.1.6"),
                         ("clock offset", "800.0 ms"), ("codec", "h264"), ("width", "1280"),
                         ("brightness", "47.0 %"), ("sharpness", "812.5"),
                         ("round-trip time", "0.4 ms"), ("time to first frame", "1.30 s")]:
        row = next((ln for ln in lines if ln.strip().startswith(label + " ")), None)
        assert row is not None, f"no {label!r} row in:\n{text}"
        assert value in row, row
    assert "\x1b[" not in text


def test_ap_text_shows_uptime_interfaces_clients_and_failed_ping() -> None:
    text = render_text(ap_report())
    assert text.startswith("WARNING ap-tutra-03 (Nhà văn hóa thôn 03, Tu Tra): ping: timeout — "
                           "ping: 3 of 3 echo requests lost\n")
    assert "eth0 up, ath0 down" in text
    assert "WiFi clients" in text and " 7" in text
    assert "packet loss" in text and "100.0 %" in text
    assert "uptime" in text


def test_vietnamese_translates_verdict_problems_and_labels() -> None:
    text = render_text(camera_report(rtsp_ok=False), lang="vi")
    first = text.splitlines()[0]
    assert first.startswith("NGHIÊM TRỌNG cam-daron-01")
    assert "không có luồng hình" in first
    assert "no_stream" not in first
    for vi in ("địa chỉ", "kiểm tra", "kết quả", "hãng", "lệch đồng hồ", "LỖI"):
        assert vi in text, vi
    assert render_text(camera_report(), lang="vi").startswith("BÌNH THƯỜNG ")
    assert render_text(camera_report(problems={"frozen": True}), lang="vi").splitlines()[0] \
        .endswith("hình bị đứng")
    assert "CẢNH BÁO ap-tutra-03" in render_text(ap_report(), lang="vi")


def test_colour_only_when_asked() -> None:
    plain = render_text(camera_report(rtsp_ok=False), color=False)
    painted = render_text(camera_report(rtsp_ok=False), color=True)
    assert "\x1b[" not in plain
    assert painted.startswith("\x1b[1;31mCRITICAL\x1b[0m cam-daron-01")


def test_json_has_verdict_facts_and_metric_values() -> None:
    data = json.loads(render_json(camera_report(rtsp_ok=False)))
    assert data["status"] == "CRITICAL" and data["exit_code"] == 2
    assert data["reasons"] == ["no_stream"]
    assert data["target"] == "cam-daron-01" and data["kind"] == "camera"
    assert data["checks"]["rtsp"] == {
        "success": False, "reason": "auth_failed", "message": "RTSP 401 Unauthorized",
        "duration_seconds": 0.05, "problems": {"no_stream": True}, "facts": {}}
    assert data["checks"]["onvif"]["facts"]["firmware"] == "V5.1.6"
    metrics = {(m["name"], tuple(sorted(m["labels"].items()))): m["value"] for m in data["metrics"]}
    base = (("camera", "cam-daron-01"), ("commune", "daron"), ("site", "daron-01"))
    assert metrics[("camnet_camera_up", base)] == 0
    assert metrics[("camnet_camera_problem", tuple(sorted((*base, ("problem", "no_stream")))))] == 1
    assert metrics[("camnet_camera_problem", tuple(sorted((*base, ("problem", "black")))))] == 0
    assert metrics[("camnet_camera_clock_offset_seconds", base)] == 0.8
    assert "log" not in data["checks"]["rtsp"] and "settings" not in data


def test_json_debug_adds_log_and_masked_settings() -> None:
    data = to_json(camera_report(rtsp_ok=False), debug=True)
    assert data["checks"]["rtsp"]["log"][0].endswith(
        "DESCRIBE rtsp://127.0.2.1:8554/Streaming/Channels/101 -> 401")
    assert data["settings"]["auth"] == {"type": "onvif", "username": "admin",
                                        "password": "<secret>"}
    assert data["settings"]["checks"]["onvif"]["max_clock_offset"] == 30.0


def test_metrics_text_parses_and_passes_promtool() -> None:
    text = render_metrics(ap_report()) + render_metrics(camera_report())
    families = {f.name: f for f in text_string_to_metric_families(render_metrics(ap_report()))}
    up = families["camnet_ap_interface_up"].samples
    assert {(s.labels["interface"], s.value) for s in up} == {("eth0", 1.0), ("ath0", 0.0)}
    assert all(s.labels["ap"] == "ap-tutra-03" and s.labels["commune"] == "tutra" for s in up)
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed")
    for report in (ap_report(), camera_report(), camera_report(rtsp_ok=False)):
        out = subprocess.run([promtool, "check", "metrics"], input=render_metrics(report),
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stdout + out.stderr
    assert text


def test_debug_view_has_log_metrics_settings_and_no_secret() -> None:
    for report, secret in ((camera_report(rtsp_ok=False), PASSWORD), (ap_report(), COMMUNITY)):
        text = render_debug(report)
        assert "Logs for the probe:" in text
        assert "Metrics that would have been returned:" in text
        assert "Settings used:" in text
        assert secret not in text
        assert "<secret>" in text
    cam = render_debug(camera_report(rtsp_ok=False))
    assert "check=rtsp failed reason=auth_failed" in cam
    assert "DESCRIBE rtsp://127.0.2.1:8554/Streaming/Channels/101 -> 401" in cam
    assert 'camnet_camera_problem{commune="daron",site="daron-01",camera="cam-daron-01",' \
           'problem="no_stream"} 1.0' in cam
    assert "max_clock_offset: 30.0" in cam


def test_reports_never_contain_secrets() -> None:
    report = camera_report(rtsp_ok=False)
    outputs = [render_text(report), render_text(report, "vi"), render_json(report, debug=True),
               render_debug(report), render_metrics(report)]
    for out in outputs:
        assert PASSWORD not in out


def test_unknown_facts_are_shown_by_key_and_odd_values_survive_json() -> None:
    report = camera_report()
    report.results["rtsp"].facts.update({"gop_length": 30, "nan_value": float("nan"),
                                         "raw": b"\x00\x01", "hdr": True})
    text = render_text(report)
    assert "gop length" in text and "30" in text
    data = json.loads(render_json(report))
    assert data["checks"]["rtsp"]["facts"]["nan_value"] is None
    assert data["checks"]["rtsp"]["facts"]["raw"] == "<2 bytes>"


def test_unknown_status_samples() -> None:
    report = DeviceReport(camera_target(), Status.UNKNOWN, ["rtsp prober failed: boom"], {},
                          [Sample("camnet_camera_up", 0.0)])
    assert verdict_line(report) == \
        "UNKNOWN cam-daron-01 (Nhà văn hóa thôn 01, Đạ Ròn): rtsp prober failed: boom"


def test_snmp_prober_fact_shapes() -> None:
    """The SNMP prober's facts: interfaces as a list, clients and radios per radio."""
    report = ap_report()
    report.results["snmp"].facts.update({
        "interfaces": [{"name": "eth0", "up": 1, "rx_bytes": 5}, {"name": "ath0", "up": 0}],
        "clients": {"1": 9, "2": 3},
        "radios": {"1": {"noise": -101, "frequency": 5860}},
    })
    text = render_text(report)
    assert "eth0 up, ath0 down" in text
    assert "12 (radio 1: 9, radio 2: 3)" in text
    assert "radio 1: noise -101 dBm, frequency 5860 MHz" in text
    vi = render_text(report, lang="vi")
    assert "eth0 bật, ath0 tắt" in vi and "sóng 1: nhiễu -101 dBm, tần số 5860 MHz" in vi


def test_vietnamese_ap_verdict_sentences() -> None:
    from monitor.report import _word

    assert _word("snmp: timeout (the AP answers ping)", "vi") == \
        "SNMP: hết thời gian chờ (AP vẫn trả lời ping)"
    assert _word("down: no ping reply and snmp timeout", "vi") == \
        "mất kết nối: không trả lời ping, SNMP hết thời gian chờ"
    assert _word("ping: 30% packet loss", "vi") == "ping: mất 30% gói"
    assert _word("rebooted since the last check", "vi") == "đã khởi động lại từ lần kiểm tra trước"
    assert _word("snmp: timeout (the AP answers ping)", "en") == "snmp: timeout (the AP answers ping)"


def test_sizes_in_bytes_read_as_kilobytes() -> None:
    assert format_value("clock_offset", -600.0) == "-10m"  # a camera behind ours
    assert format_value("clock_offset", -600.0, "vi") == "-10p"
    assert format_value("clock_offset", 3725.0) == "1h2m5s"
    assert format_value("keyframe_bytes", 487393) == "487 kB"
    assert format_value("keyframe_bytes", 812) == "812"
    assert fact_label("keyframe_bytes", "vi") == "cỡ khung hình chính (keyframe)"


def test_the_reasons_probers_give_are_translated() -> None:
    """--lang vi: the verdict's short reasons from the AP and camera verdicts are Vietnamese."""
    from monitor.report import _word
    for reason, vi in (("ping: no reply", "ping: không trả lời"), ("no frame", "không có khung hình"),
                       ("snmp: agent_error", "SNMP: tác tử SNMP báo lỗi"),
                       ("snmp: no_such_object", "SNMP: thiết bị không có mục này"),
                       ("rtsp: decoder_crashed", "RTSP: bộ giải mã của camnet bị lỗi")):
        assert _word(reason, "vi") == vi


def test_device_text_cannot_break_the_table_or_drive_the_terminal() -> None:
    """What a device wrote (Cisco's sysDescr with CRLFs, a sysName or SOAP fault with escape
    sequences) is shown on one line with its control characters escaped, in the table, the
    verdict line and the debug view."""
    report = ap_report()
    snmp = report.results["snmp"]
    snmp.facts["sys_descr"] = "Cisco IOS Software\r\nTechnical Support: http://x\r\n"
    snmp.facts["sys_name"] = "ap\x1b[2J\x1b[32mOK"
    snmp.success, snmp.reason, snmp.message = False, "fault", "agent said\r\x1b[1Aall fine"
    snmp.log.append("reply\x1b[2K\rforged")
    status, reasons, samples = VERDICTS["ap"](report.results)
    report = DeviceReport(report.target, status, reasons, report.results, samples,
                          settings=report.settings)
    for text in (render_text(report), render_debug(report)):
        assert "\x1b" not in text and "\r" not in text, repr(text)
    text = render_text(report)
    assert "agent said \\x1b[1Aall fine" in text.splitlines()[0]
    assert "description   Cisco IOS Software Technical Support: http://x\n" in text
    assert "ap\\x1b[2J\\x1b[32mOK" in text
