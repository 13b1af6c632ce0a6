"""Write camnet.test.yml: promtool unit tests for every camnet alert rule.

The scenarios are built in Python because they are long sample series (ten minutes of a lossy
line, an hour of AP boot times); the expected Vietnamese and English annotations are written out
here by hand, independently of the rule templates, so a template change must be made twice.
Run `python3 config/prometheus/tests/generate.py` after changing a scenario; tests/test_rules.py
fails when the committed YAML is stale. Series are sampled every 5 s, like the scrape interval.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
OUT = HERE / "camnet.test.yml"
STEP = 5  # seconds between samples and between rule evaluations

SITES = {
    "daron-01": ("daron", "vnpt", "Nhà văn hóa thôn 01, Đạ Ròn (tên tạm)"),
    "daron-02": ("daron", "viettel", "Nhà văn hóa thôn 02, Đạ Ròn (tên tạm)"),
    "daron-09": ("daron", "mobifone", "Nhà văn hóa thôn 09, Đạ Ròn (tên tạm)"),
    "tutra-03": ("tutra", "viettel", "Nhà văn hóa thôn 03, Tu Tra (tên tạm)"),
    # A site without a telco (`operator` is optional in the config): no operator label.
    "daron-12": ("daron", "", "Nhà văn hóa thôn 12, Đạ Ròn (tên tạm)"),
}
PICTURE = {
    "black": "hình đen",
    "frozen": "hình đứng yên",
    "blurred": "hình mờ",
    "moved": "bị xoay hướng",
    "dark": "hình quá tối",
}
PROBLEMS = ("unreachable", "auth_failed", "no_stream", *PICTURE, "clock_drift")


def labels(site: str, **extra: str) -> dict[str, str]:
    """The labels camnet puts on a device of this site."""
    commune, operator, _ = SITES[site]
    return {"commune": commune, "site": site, **({"operator": operator} if operator else {}), **extra}


def sel(name: str, lab: dict[str, str]) -> str:
    """A series selector in promtool's input syntax."""
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(lab.items()))
    return f"{name}{{{inner}}}"


def values(*runs: tuple[float | str, int]) -> str:
    """Explicit sample values: runs of (value, seconds), one sample per STEP."""
    out: list[str] = []
    for value, seconds in runs:
        out += [str(value)] * (seconds // STEP)
    return " ".join(out)


def site_info() -> list[dict[str, str]]:
    """camnet_site_info for every test site, constant."""
    return [
        {
            "series": sel("camnet_site_info", {**labels(s), "site_name": n}),
            "values": "1+0x1000",
        }
        for s, (c, o, n) in SITES.items()
    ]


def camera(site: str, cam: str, up: str, problems: dict[str, str] | None = None) -> list[dict[str, str]]:
    """A camera's up series and all its problem series (0 unless given)."""
    problems = problems or {}
    lab = labels(site, camera=cam)
    series = [{"series": sel("camnet_camera_up", lab), "values": up}]
    for p in PROBLEMS:
        series.append(
            {
                "series": sel("camnet_camera_problem", {**lab, "problem": p}),
                "values": problems.get(p, "0+0x1000"),
            }
        )
    return series


def ap(site: str, ap_id: str, up: str) -> list[dict[str, str]]:
    """An AP's up series."""
    return [{"series": sel("camnet_ap_up", labels(site, ap=ap_id)), "values": up}]


def site_name(site: str) -> str:
    """The site's Vietnamese display name."""
    return SITES[site][2]


# ---- expected alerts, written out by hand ------------------------------------------------


def camera_down(site: str, cam: str, reasons: str) -> dict[str, Any]:
    """Expected CameraDown alert."""
    commune = SITES[site][0]
    return {
        "exp_labels": {**labels(site, camera=cam), "severity": "critical", "team": "police"},
        "exp_annotations": {
            "summary": f"Camera {cam} mất hình tại {site_name(site)} ({site})",
            "description": (
                f"Không lấy được hình từ camera {cam} (điểm {site}, xã {commune}) trong hơn 25 giây; "
                f"đường truyền của điểm vẫn hoạt động. Lý do: {reasons}. Cần kiểm tra camera tại chỗ "
                "(nguồn điện, dây mạng, bị che hoặc phá hoại)."
            ),
            "summary_en": f"Camera {cam} is down at site {site}",
            "description_en": (
                f"No frame from camera {cam} (site {site}, commune {commune}) for more than 25 s while "
                "the site's line still works. Check the camera on site (power, cable, covered or vandalised)."
            ),
        },
    }


def picture_problem(site: str, cam: str, problem: str) -> dict[str, Any]:
    """Expected CameraPictureProblem alert."""
    commune = SITES[site][0]
    return {
        "exp_labels": {
            **labels(site, camera=cam),
            "problem": problem,
            "severity": "warning",
            "team": "police",
        },
        "exp_annotations": {
            "summary": f"Camera {cam} có hình bất thường ({PICTURE[problem]}) tại {site_name(site)} ({site})",
            "description": (
                f"Camera {cam} (điểm {site}, xã {commune}) vẫn truyền hình nhưng hình không dùng được: "
                f"{PICTURE[problem]}. Có thể ống kính bị che, camera bị xoay hoặc bẩn; cần kiểm tra tại chỗ."
            ),
            "summary_en": f"Camera {cam} picture is {problem} at site {site}",
            "description_en": (
                f"Camera {cam} (site {site}, commune {commune}) streams, but its picture is {problem} "
                "over several consecutive checks: lens covered, camera turned, or dirty."
            ),
        },
    }


def clock_drift(site: str, cam: str, offset: str) -> dict[str, Any]:
    """Expected CameraClockDrift alert."""
    commune = SITES[site][0]
    return {
        "exp_labels": {
            **labels(site, camera=cam),
            "problem": "clock_drift",
            "severity": "warning",
            "team": "police",
        },
        "exp_annotations": {
            "summary": f"Đồng hồ camera {cam} bị lệch {offset} giây tại {site}",
            "description": (
                f"Giờ trên camera {cam} (điểm {site}, xã {commune}) sai lệch so với giờ chuẩn; thời gian "
                "ghi trên hình sẽ không dùng được làm chứng cứ. Cần đặt lại giờ (NTP) cho camera."
            ),
            "summary_en": f"Camera {cam} clock is off at site {site}",
            "description_en": (
                f"The clock of camera {cam} (site {site}) drifts from true time; timestamps on its "
                "footage are not usable as evidence. Set its time (NTP)."
            ),
        },
    }


def auth_failed(site: str, cam: str) -> dict[str, Any]:
    """Expected CameraAuthFailed alert."""
    commune = SITES[site][0]
    return {
        "exp_labels": {
            **labels(site, camera=cam),
            "problem": "auth_failed",
            "severity": "critical",
            "team": "police",
        },
        "exp_annotations": {
            "summary": f"Camera {cam} từ chối mật khẩu tại {site}",
            "description": (
                f"Camera {cam} (điểm {site}, xã {commune}) không chấp nhận tài khoản giám sát: camera "
                "có thể đã bị cài đặt lại hoặc bị đổi mật khẩu trái phép. "
                "Không xem được hình cho đến khi sửa."
            ),
            "summary_en": f"Camera {cam} rejects camnet's credentials at site {site}",
            "description_en": (
                f"Camera {cam} (site {site}) refuses the monitoring account: it was reset or its "
                "password was changed. No picture until fixed."
            ),
        },
    }


def ap_down(site: str, ap_id: str, alone: bool = False) -> dict[str, Any]:
    """Expected APDown alert (`alone`: the AP is its site's only device)."""
    commune, operator, _ = SITES[site]
    others_vi = ("đây là thiết bị duy nhất của điểm: có thể đường truyền hoặc nguồn điện bị mất, "
                 "cần báo nhà mạng" if alone else "các thiết bị khác của điểm vẫn hoạt động")
    others_en = ("it is the site's only device: the line or power may be out, tell the operator"
                 if alone else "other devices at the site still answer")
    op_vi = f", nhà mạng {operator}" if operator else ""
    op_en = f", operator {operator}" if operator else ""
    return {
        "exp_labels": {**labels(site, ap=ap_id), "severity": "critical", "team": "noc"},
        "exp_annotations": {
            "summary": f"Điểm phát WiFi {ap_id} không phản hồi tại {site_name(site)} ({site})",
            "description": (
                f"Thiết bị {ap_id} (điểm {site}, xã {commune}{op_vi}) không trả lời SNMP "
                f"trong hơn 1 phút; {others_vi}."
            ),
            "summary_en": f"Access point {ap_id} is down at site {site}",
            "description_en": (
                f"Access point {ap_id} (site {site}{op_en}) has not answered SNMP for more "
                f"than 1 minute; {others_en}."
            ),
        },
    }


def ap_rebooted(site: str, ap_id: str) -> dict[str, Any]:
    """Expected APRebooted alert."""
    commune = SITES[site][0]
    return {
        "exp_labels": {**labels(site, ap=ap_id), "severity": "warning", "team": "noc"},
        "exp_annotations": {
            "summary": f"Điểm phát WiFi {ap_id} khởi động lại nhiều lần trong 1 giờ tại {site}",
            "description": (
                f"Thiết bị {ap_id} (điểm {site}, xã {commune}) đã khởi động lại nhiều lần: nguồn điện "
                "không ổn định hoặc thiết bị hỏng."
            ),
            "summary_en": f"Access point {ap_id} rebooted several times within 1 h at site {site}",
            "description_en": (
                f"Access point {ap_id} (site {site}) keeps rebooting: unstable power or failing hardware."
            ),
        },
    }


def ap_high_loss(site: str, ap_id: str, pct: str) -> dict[str, Any]:
    """Expected APHighLoss alert."""
    commune, operator, _ = SITES[site]
    return {
        "exp_labels": {**labels(site, ap=ap_id), "severity": "warning", "team": "noc"},
        "exp_annotations": {
            "summary": f"Đường truyền tới {ap_id} mất {pct} gói tin tại {site}",
            "description": (
                f"Đường truyền của điểm {site} (xã {commune}"
                + (f", nhà mạng {operator}" if operator else "")
                + f") mất trung bình {pct} "
                "gói tin trong 10 phút qua. Cần báo nhà mạng kiểm tra."
            ),
            "summary_en": f"Line to {ap_id} loses {pct} of packets at site {site}",
            "description_en": (
                f"The line of site {site}"
                + (f" (operator {operator})" if operator else "")
                + f" lost {pct} of ping packets on average "
                "over 10 minutes. Report it to the operator."
            ),
        },
    }


def site_down(site: str) -> dict[str, Any]:
    """Expected SiteDown alert."""
    commune, operator, _ = SITES[site]
    op_vi = f", nhà mạng {operator}" if operator else ""
    op_en = f", operator {operator}" if operator else ""
    call_vi = f"Báo nhà mạng {operator}" if operator else "Báo đơn vị cung cấp đường truyền"
    call_en = f"Call {operator}" if operator else "Call the line's provider"
    return {
        "exp_labels": {**labels(site), "severity": "critical", "team": "noc"},
        "exp_annotations": {
            "summary": f"Mất kết nối toàn bộ điểm {site_name(site)} ({site})",
            "description": (
                f"Không thiết bị nào tại điểm {site} (xã {commune}{op_vi}) trả lời: đường "
                f"truyền hoặc nguồn điện của nhà văn hóa bị mất. {call_vi}; cảnh báo "
                "camera của điểm này được tạm ẩn."
            ),
            "summary_en": f"Site {site} is unreachable (line or power)",
            "description_en": (
                f"No device at site {site} (commune {commune}{op_en}) answers: the hall's "
                f"line or power is out. {call_en}; the site's camera alerts are inhibited meanwhile."
            ),
        },
    }


def not_scraped(instance: str | None) -> dict[str, Any]:
    """Expected CamnetNotScraped alert."""
    lab = {
        "alertname": "CamnetNotScraped",
        "severity": "critical",
        "team": "noc",
        "commune": "all",
        "site": "all",
    }
    inst_vi = inst_en = ""
    if instance:
        lab.update({"instance": instance, "job": "camnet"})
        inst_vi = inst_en = f"({instance}) "
    else:
        lab["job"] = "camnet"  # absent() keeps the equality matchers of its argument
    lab.pop("alertname")
    return {
        "exp_labels": lab,
        "exp_annotations": {
            "summary": "Hệ thống giám sát camnet không hoạt động: không có cảnh báo nào được gửi",
            "description": (
                f"Prometheus không đọc được số liệu từ camnet {inst_vi}trong hơn 1 phút. Trong thời gian "
                "này camera và WiFi hỏng sẽ KHÔNG được báo. Kiểm tra dịch vụ camnet trên máy chủ."
            ),
            "summary_en": "camnet is not being scraped: no alerts can fire",
            "description_en": (
                f"Prometheus has failed to scrape camnet {inst_en}for over a minute; camera and AP "
                "failures are NOT being detected. Check the camnet service."
            ),
        },
    }


def checks_stalled(site: str, check_name: str, **device: str) -> dict[str, Any]:
    """Expected CamnetChecksStalled alert."""
    commune = SITES[site][0]
    kind, name = next(iter(device.items()))
    what = f"camera {name}" if kind == "camera" else f"điểm phát WiFi {name}"
    return {
        "exp_labels": {**labels(site, **device), "check": check_name, "severity": "warning",
                       "team": "noc"},
        "exp_annotations": {
            "summary": f"camnet đã ngừng kiểm tra {check_name} của {what} tại {site}",
            "description": (
                f"Lần kiểm tra {check_name} gần nhất của thiết bị tại điểm {site} (xã {commune}) đã "
                "quá 10 phút: số liệu của thiết bị này không còn được cập nhật và cảnh báo của nó "
                "có thể sai. Kiểm tra nhật ký dịch vụ camnet."
            ),
            "summary_en": f"camnet stopped running {check_name} for a device at site {site}",
            "description_en": (
                f"The last {check_name} check of this device (site {site}) is over 10 minutes old: "
                "its metrics are stale and its alerts cannot be trusted. Check camnet's log."
            ),
        },
    }


def reload_failed(instance: str) -> dict[str, Any]:
    """Expected CamnetConfigReloadFailed alert."""
    return {
        "exp_labels": {"instance": instance, "job": "camnet", "severity": "warning", "team": "noc",
                       "commune": "all", "site": "all"},
        "exp_annotations": {
            "summary": "Cấu hình mới của camnet bị từ chối; camnet vẫn chạy cấu hình cũ",
            "description": (
                f"Lần nạp lại cấu hình gần nhất của camnet ({instance}) bị lỗi hơn 10 phút nay: thay "
                "đổi mới (camera, mật khẩu) chưa có hiệu lực. Chạy `camnet check-config` để xem lỗi."
            ),
            "summary_en": "camnet rejected its new config and keeps running the previous one",
            "description_en": (
                f"camnet ({instance}) has refused its config reload for over 10 minutes: the latest "
                "change (a camera, a password) is not in effect. Run `camnet check-config` to see why."
            ),
        },
    }


def unnamed(alert: dict[str, Any]) -> dict[str, Any]:
    """The alert as rendered while camnet_site_info is missing too: the site id for its name."""
    site = alert["exp_labels"]["site"]
    notes = dict(alert["exp_annotations"])
    notes["summary"] = notes["summary"].replace(f"{site_name(site)} ({site})", f"{site} ({site})")
    return {**alert, "exp_annotations": notes}


def check(t: int, alertname: str, *alerts: dict[str, Any]) -> dict[str, Any]:
    """An alert_rule_test at t seconds; no alerts given = the rule must NOT fire."""
    return {"eval_time": f"{t}s", "alertname": alertname, "exp_alerts": list(alerts)}


def none(t: int, *alertnames: str) -> list[dict[str, Any]]:
    """At t seconds, none of these alerts fires."""
    return [check(t, a) for a in alertnames]


# ---- scenarios ---------------------------------------------------------------------------

OK = "1+0x1000"
ALL_DEVICE_ALERTS = ("CameraDown", "CameraAuthFailed", "CameraPictureProblem", "APDown", "SiteDown")


def lossy_line(seed: int, minutes: int, packet_loss: float,
               tries: int = 4) -> tuple[str, str, str, int]:
    """Ping loss and SNMP up as camnet exports them for a line dropping packets.

    Model: a ping check sends 3 echoes; an SNMP check makes 4 requests, each tried `tries`
    times (camnet's default: 3 retries); the check fails when a request is lost on every try.
    Checks run every 15 s, and while failing with camnet's backoff (15 s x 2^(failures-1),
    capped at 60 s, probes/base.py). Each result is held until the next check, as the daemon
    exports its latest result. Returns the three value strings (ping loss, SNMP up, ping up)
    and the longest run of failed SNMP checks.
    """
    rnd = random.Random(seed)
    steps = minutes * 60 // STEP
    loss: list[str] = []
    up: list[str] = []
    ping: list[str] = []
    failures = longest = 0
    while len(up) < steps:
        lost = sum(rnd.random() < packet_loss for _ in range(3))
        answered = all(any(rnd.random() >= packet_loss for _ in range(tries)) for _ in range(4))
        failures = 0 if answered else failures + 1
        longest = max(longest, failures)
        delay = 15 if failures <= 1 else min(15 * 2 ** (failures - 1), 60)
        loss += [f"{lost / 3:.4f}"] * (delay // STEP)
        up += ["1" if answered else "0"] * (delay // STEP)
        ping += ["0" if lost == 3 else "1"] * (delay // STEP)
    return " ".join(loss[:steps]), " ".join(up[:steps]), " ".join(ping[:steps]), longest


def avg_window(vals: str, t: int, window: int) -> float:
    """avg_over_time(x[window]) at t, Prometheus 2.x style (both ends of the range included)."""
    samples = [float(v) for v in vals.split()]
    picked = [v for i, v in enumerate(samples) if t - window <= i * STEP <= t]
    return sum(picked) / len(picked)


def scenarios() -> list[dict[str, Any]]:
    """Every test group."""
    tests: list[dict[str, Any]] = []

    # CameraDown: two missed polls page the commune's police, naming camera and site; the site's
    # AP still answers. Zero from t=60 s, back at t=150 s.
    tests.append(
        {
            "name": "CameraDown fires after two missed polls, names the site in Vietnamese, resolves",
            "input_series": site_info()
            + camera(
                "daron-01",
                "cam-daron-01",
                values((1, 60), (0, 90), (1, 300)),
                {"unreachable": values((0, 60), (1, 90), (0, 300))},
            )
            + ap("daron-01", "ap-daron-01", OK),
            "alert_rule_test": [
                check(80, "CameraDown"),  # pending for 20 s: not yet
                check(90, "CameraDown", camera_down("daron-01", "cam-daron-01", "mất kết nối")),
                check(145, "CameraDown", camera_down("daron-01", "cam-daron-01", "mất kết nối")),
                check(160, "CameraDown"),  # recovered: resolved
                *none(120, "SiteDown", "APDown", "CameraAuthFailed", "CameraPictureProblem"),
            ],
        }
    )
    # One missed poll (plus a slow next check): zero for 25 s of samples. Nobody is paged.
    tests.append(
        {
            "name": "CameraDown and APDown do not fire on one missed poll",
            "input_series": site_info()
            + camera(
                "daron-01",
                "cam-daron-01",
                values((1, 60), (0, 25), (1, 300)),
                {"unreachable": values((0, 60), (1, 25), (0, 300))},
            )
            + ap("daron-01", "ap-daron-01", values((1, 120), (0, 25), (1, 300)))
            + ap("daron-09", "ap-daron-09", values((1, 30), (0, 25), (1, 300))),
            "alert_rule_test": [
                t for s in (70, 85, 90, 100, 140, 150, 170, 250) for t in none(s, *ALL_DEVICE_ALERTS)
            ],
        }
    )
    # A whole site goes dark: the camera fails first, the AP 20 s later (its SNMP timeout).
    # One SiteDown; the camera's and AP's own alerts are replaced by it.
    tests.append(
        {
            "name": "SiteDown replaces CameraDown and APDown when everything at the site is down",
            "input_series": site_info()
            + camera(
                "daron-01",
                "cam-daron-01",
                values((1, 60), (0, 300)),
                {"unreachable": values((0, 60), (1, 300))},
            )
            + ap("daron-01", "ap-daron-01", values((1, 80), (0, 280)))
            + camera("daron-02", "cam-daron-02", OK)
            + ap("daron-02", "ap-daron-02", OK),
            "alert_rule_test": [
                check(105, "SiteDown"),
                check(110, "SiteDown", site_down("daron-01")),
                check(300, "SiteDown", site_down("daron-01")),
                *[
                    t
                    for s in (80, 85, 90, 105, 110, 120, 150, 200, 300)
                    for t in none(s, "CameraDown", "APDown")
                ],
            ],
        }
    )
    # The line of three halls comes back at t=400. At daron-01 the AP answers first and the
    # camera, in backoff, only at its next check 60 s later; at tutra-03 the camera answers
    # first and the AP 90 s later: nobody is paged for them. At daron-02 the camera did not
    # survive the outage: it is paged 2 min + 25 s after the line came back (the rules
    # without the hold paged daron-01's camera at t=425).
    tests.append(
        {
            "name": "After a site outage, devices get their backoff interval to report before paging",
            "input_series": site_info()
            + camera("daron-01", "cam-daron-01", values((1, 60), (0, 400), (1, 300)),
                     {"unreachable": values((0, 60), (1, 400), (0, 300))})
            + ap("daron-01", "ap-daron-01", values((1, 80), (0, 320), (1, 400)))
            + camera("daron-02", "cam-daron-02", values((1, 60), (0, 700)),
                     {"unreachable": values((0, 60), (1, 700))})
            + ap("daron-02", "ap-daron-02", values((1, 80), (0, 320), (1, 400)))
            + camera("tutra-03", "cam-tutra-03", values((1, 60), (0, 340), (1, 400)),
                     {"unreachable": values((0, 60), (1, 340), (0, 400))})
            + ap("tutra-03", "ap-tutra-03", values((1, 80), (0, 410), (1, 300))),
            "alert_rule_test": [
                check(200, "SiteDown", site_down("daron-01"), site_down("daron-02"),
                      site_down("tutra-03")),
                *[t for s in (405, 425, 430, 460, 490, 500, 535)
                  for t in none(s, "CameraDown", "SiteDown")],
                *[check(s, "CameraDown", camera_down("daron-02", "cam-daron-02", "mất kết nối"))
                  for s in (545, 600)],
                *[t for s in range(400, 700, 20) for t in none(s, "APDown")],
            ],
        }
    )
    # The site's line drops one poll: both devices miss a check together. No page.
    tests.append(
        {
            "name": "SiteDown does not fire when the line drops one poll",
            "input_series": site_info()
            + camera("daron-01", "cam-daron-01", values((1, 60), (0, 20), (1, 300)))
            + ap("daron-01", "ap-daron-01", values((1, 65), (0, 20), (1, 300))),
            "alert_rule_test": [t for s in (80, 85, 90, 100, 120) for t in none(s, *ALL_DEVICE_ALERTS)],
        }
    )
    # A dead camera stays paged when its AP misses a poll; a dead AP stays paged when its
    # camera misses one: neither is a dead line, and nothing flaps.
    tests.append(
        {
            "name": "A dead device stays paged, and no SiteDown, when the other device misses one poll",
            "input_series": site_info()
            + camera(
                "daron-01",
                "cam-daron-01",
                values((1, 60), (0, 400)),
                {"unreachable": values((0, 60), (1, 400))},
            )
            + ap("daron-01", "ap-daron-01", values((1, 150), (0, 20), (1, 300)))
            + camera("daron-02", "cam-daron-02", values((1, 200), (0, 20), (1, 300)))
            + ap("daron-02", "ap-daron-02", values((1, 60), (0, 400))),
            "alert_rule_test": [
                *[
                    check(s, "CameraDown", camera_down("daron-01", "cam-daron-01", "mất kết nối"))
                    for s in (90, 150, 155, 160, 165, 170, 180, 200)
                ],
                *[
                    check(s, "APDown", ap_down("daron-02", "ap-daron-02"))
                    for s in (125, 200, 205, 210, 215, 225)
                ],
                *[t for s in range(60, 300, 5) for t in none(s, "SiteDown")],
            ],
        }
    )
    # A device already paged before its site goes dark stays paged through the outage (muted by
    # Alertmanager's SiteDown inhibition) and after it, until it reports up: the rules of before
    # ended its alert when the site went down, so once the mute lifted the police (or the NOC)
    # were told "resolved" for a camera still dead, and paged again 2 min + 25 s later.
    # daron-01: the camera dies at t=60, its AP from t=300 to t=600; the camera comes back at
    # t=800. daron-02: the AP dies at t=60 (no ping), the camera from t=300 to t=600.
    tests.append(
        {
            "name": "A device paged before its site goes dark stays paged through the outage",
            "input_series": site_info()
            + camera("daron-01", "cam-daron-01", values((1, 60), (0, 740), (1, 300)),
                     {"unreachable": values((0, 60), (1, 740), (0, 300))})
            + ap("daron-01", "ap-daron-01", values((1, 300), (0, 300), (1, 500)))
            + camera("daron-02", "cam-daron-02", values((1, 300), (0, 300), (1, 500)),
                     {"unreachable": values((0, 300), (1, 300), (0, 500))})
            + ap("daron-02", "ap-daron-02", values((1, 60), (0, 1040))),
            "alert_rule_test": [
                *[check(s, "SiteDown", site_down("daron-01"), site_down("daron-02"))
                  for s in (400, 595)],
                *[check(s, "CameraDown", camera_down("daron-01", "cam-daron-01", "mất kết nối"))
                  for s in (200, 300, 330, 400, 595, 605, 650, 700, 795)],
                check(805, "CameraDown"),
                *[check(s, "APDown", ap_down("daron-02", "ap-daron-02"))
                  for s in (200, 300, 330, 400, 595, 605, 650, 700, 900)],
            ],
        }
    )
    # A camera whose picture is bad (lens covered) and which then stops giving a frame: camnet
    # masks the picture problems of an unreachable camera (0), and the rules of before ended
    # CameraPictureProblem at once, 25 s before CameraDown fires (or 30 s before SiteDown) and
    # mutes it: the police could be told "resolved" for a lens still covered. It is held while
    # the camera gives no frame, muted by CameraDown, and judged again on the next frame.
    # The lens is covered from t=60; the camera is unreachable from t=300 to t=600.

    def gap(during: float, after: float, before: str = values((1, 400))) -> str:
        """`before` until t=400, stale, nothing until t=460, `during` to t=600, then `after`."""
        return " ".join([before, values(("stale", 5), ("_", 55), (during, 140), (after, 600))])

    tests.append(
        {
            "name": "CameraPictureProblem is held, not resolved, while the camera gives no frame",
            "input_series": site_info()
            + camera("daron-01", "cam-daron-01", values((1, 300), (0, 300), (1, 600)),
                     {"black": values((0, 60), (1, 240), (0, 300), (1, 300), (0, 300)),
                      "unreachable": values((0, 300), (1, 300), (0, 600))})
            + ap("daron-01", "ap-daron-01", OK)
            # The same at daron-02, with a camnet restart while the camera is unreachable (every
            # series stale at t=400, back at t=460): the hold's last value is a masked 0.
            + [{**info, "values": gap(1, 1)} for info in site_info() if "daron-02" in info["series"]]
            + camera("daron-02", "cam-daron-02", gap(0, 1, before=values((1, 300), (0, 100))),
                     {"black": gap(0, 1, before=values((0, 60), (1, 240), (0, 100))),
                      "unreachable": gap(1, 0, before=values((0, 300), (1, 100)))})
            + ap("daron-02", "ap-daron-02", gap(1, 1)),
            "alert_rule_test": [
                *[check(s, "CameraPictureProblem", picture_problem("daron-01", "cam-daron-01", "black"),
                        picture_problem("daron-02", "cam-daron-02", "black"))
                  for s in (120, 295, 300, 305, 320, 330, 395, 470, 595, 605, 700, 895)],
                *[check(s, "CameraPictureProblem", picture_problem("daron-01", "cam-daron-01", "black"),
                        unnamed(picture_problem("daron-02", "cam-daron-02", "black")))
                  for s in (400, 430, 455)],
                check(905, "CameraPictureProblem", picture_problem("daron-02", "cam-daron-02", "black")),
                *[check(s, "CameraDown", camera_down("daron-01", "cam-daron-01", "mất kết nối"),
                        camera_down("daron-02", "cam-daron-02", "mất kết nối"))
                  for s in (330, 595)],
                check(605, "CameraDown"),
            ],
        }
    )
    # A site without a telco (no operator label): the NOC's texts leave the operator out
    # instead of "nhà mạng )" and "Báo nhà mạng ;" (the rules of before).
    tests.append(
        {
            "name": "SiteDown, APDown and APHighLoss read well for a site without an operator",
            "input_series": site_info()
            + camera("daron-12", "cam-daron-12", values((1, 60), (0, 300)),
                     {"unreachable": values((0, 60), (1, 300))})
            + ap("daron-12", "ap-daron-12", values((1, 60), (0, 300)))
            + ap("daron-12", "ap-daron-12b", values((1, 60), (0, 100), (1, 1200)))
            + [{"series": sel("camnet_ping_loss_ratio", labels("daron-12", ap="ap-daron-12b")),
                "values": values((0.8, 1200))}],
            "alert_rule_test": [
                check(130, "SiteDown", site_down("daron-12")),
                check(400, "APDown", ap_down("daron-12", "ap-daron-12")),
                check(1100, "APHighLoss", ap_high_loss("daron-12", "ap-daron-12b", "80%")),
            ],
        }
    )
    # An SNMP agent that hangs while the AP still answers ping: camnet is blind on it, but the
    # line works. It pages after its SNMP has been silent 5 minutes (+ the minute of `for:`).
    tests.append(
        {
            "name": "APDown waits 6 minutes when the AP still answers ping",
            "input_series": site_info()
            + ap("daron-01", "ap-daron-01", values((1, 60), (0, 900)))
            + [{"series": sel("camnet_ping_up", labels("daron-01", ap="ap-daron-01")), "values": OK}]
            + camera("daron-01", "cam-daron-01", OK),
            "alert_rule_test": [
                *[check(s, "APDown") for s in (120, 200, 300, 400, 415)],
                check(430, "APDown", ap_down("daron-01", "ap-daron-01")),
                check(800, "APDown", ap_down("daron-01", "ap-daron-01")),
            ],
        }
    )
    # A site with one device cannot tell line from device: the device's own alert pages.
    tests.append(
        {
            "name": "APDown after a minute for a dead AP (no ping) or one whose ping is not checked",
            "input_series": site_info()
            + ap("daron-09", "ap-daron-09", values((1, 60), (0, 300)))
            + [
                {
                    "series": sel("camnet_ping_up", labels("daron-09", ap="ap-daron-09")),
                    "values": values((1, 60), (0, 300)),
                }
            ]
            + camera("daron-01", "cam-daron-01", OK)
            + ap("daron-01", "ap-daron-01", values((1, 60), (0, 300))),
            "alert_rule_test": [
                check(115, "APDown"),
                check(125, "APDown", ap_down("daron-01", "ap-daron-01"),
                      ap_down("daron-09", "ap-daron-09", alone=True)),
                *none(120, "SiteDown", "CameraDown"),
            ],
        }
    )
    # Picture problems: a problem the daemon reports for 25 s pages; a single odd frame (one
    # check, 15 s) does not.
    tests.append(
        {
            "name": "CameraPictureProblem fires for a lasting problem, not for one odd frame",
            "input_series": site_info()
            + camera("daron-01", "cam-daron-01", OK, {"black": values((0, 60), (1, 300))})
            + camera("tutra-03", "cam-tutra-03", OK, {"frozen": values((0, 60), (1, 15), (0, 300))})
            + camera("daron-02", "cam-daron-02", OK, {"moved": values((0, 100), (1, 15), (0, 300))}),
            "alert_rule_test": [
                check(80, "CameraPictureProblem"),
                check(90, "CameraPictureProblem", picture_problem("daron-01", "cam-daron-01", "black")),
                check(130, "CameraPictureProblem", picture_problem("daron-01", "cam-daron-01", "black")),
                *none(120, "CameraDown", "SiteDown"),
            ],
        }
    )
    for problem in ("frozen", "blurred", "moved", "dark"):
        tests.append(
            {
                "name": f"CameraPictureProblem names {problem} in Vietnamese",
                "input_series": site_info()
                + camera("tutra-03", "cam-tutra-03", OK, {problem: values((1, 300))}),
                "alert_rule_test": [
                    check(20, "CameraPictureProblem"),
                    check(60, "CameraPictureProblem", picture_problem("tutra-03", "cam-tutra-03", problem)),
                ],
            }
        )
    # Clock drift: read once a minute, pages after 3 minutes; one bad reading does not.
    tests.append(
        {
            "name": "CameraClockDrift fires after three minutes of drift, not for one reading",
            "input_series": site_info()
            + camera("daron-01", "cam-daron-01", OK, {"clock_drift": values((0, 60), (1, 600))})
            + camera("daron-02", "cam-daron-02", OK, {"clock_drift": values((0, 60), (1, 60), (0, 600))})
            + [
                {
                    "series": sel(
                        "camnet_camera_clock_offset_seconds", labels("daron-01", camera="cam-daron-01")
                    ),
                    # 25 minutes: printed as 1500, not humanize's "1.5k"
                    "values": values((0.2, 60), (1500, 600)),
                },
                {
                    "series": sel(
                        "camnet_camera_clock_offset_seconds", labels("daron-02", camera="cam-daron-02")
                    ),
                    "values": values((0.2, 60), (-400, 60), (0.1, 600)),
                },
            ],
            "alert_rule_test": [
                check(200, "CameraClockDrift"),
                check(250, "CameraClockDrift", clock_drift("daron-01", "cam-daron-01", "1500")),
                *none(250, "CameraDown", "CameraPictureProblem"),
            ],
        }
    )
    # A rejected password pages as CameraAuthFailed, not CameraDown (no frame either way).
    tests.append(
        {
            "name": "CameraAuthFailed fires instead of CameraDown; one rejected login does not page",
            "input_series": site_info()
            + camera(
                "daron-01",
                "cam-daron-01",
                values((1, 60), (0, 300)),
                {"auth_failed": values((0, 60), (1, 300))},
            )
            + camera(
                "daron-02",
                "cam-daron-02",
                values((1, 60), (0, 15), (1, 300)),
                {"auth_failed": values((0, 60), (1, 15), (0, 300))},
            )
            + ap("daron-01", "ap-daron-01", OK)
            + ap("daron-02", "ap-daron-02", OK),
            "alert_rule_test": [
                check(80, "CameraAuthFailed"),
                check(90, "CameraAuthFailed", auth_failed("daron-01", "cam-daron-01")),
                *none(90, "CameraDown", "SiteDown"),
                *none(150, "CameraDown", "SiteDown"),
            ],
        }
    )

    # Reboots: jittery boot time alone, or one planned reboot, never page; two in an hour do.
    def jitter(base: int, seconds: int) -> list[str]:
        # Boot time computed as now - sysUpTime moves by a second or so between polls.
        rnd = random.Random(base)
        return [f"{base + rnd.uniform(-1.5, 1.5):.2f}" for _ in range(seconds // STEP)]

    def silent(seconds: int) -> list[str]:
        # A rebooting AP answers no SNMP: camnet exports no boot time meanwhile.
        return ["_"] * (seconds // STEP)

    tests.append(
        {
            "name": "APRebooted fires on the second reboot within an hour, not on one planned "
            "reboot; also when the AP is silent for 90 s while it reboots",
            "input_series": [
                *site_info(),
                {  # rebooted at 10 min and again at 20 min
                    "series": sel("camnet_ap_boot_time_seconds", labels("daron-01", ap="ap-daron-01")),
                    "values": " ".join(
                        jitter(1_000_000, 600) + jitter(1_100_600, 600) + jitter(1_101_200, 1200)
                    ),
                },
                {  # rebooted at 10 min and at 20 min, silent for 90 s each time
                    "series": sel("camnet_ap_boot_time_seconds", labels("daron-09", ap="ap-daron-09")),
                    "values": " ".join(
                        jitter(1_000_000, 600) + silent(90) + jitter(1_100_690, 510) + silent(90)
                        + jitter(1_101_290, 1110)
                    ),
                },
                {  # one planned reboot at 10 min
                    "series": sel("camnet_ap_boot_time_seconds", labels("daron-02", ap="ap-daron-02")),
                    "values": " ".join(jitter(1_000_000, 600) + jitter(1_100_600, 1800)),
                },
                {  # never rebooted: jitter only
                    "series": sel("camnet_ap_boot_time_seconds", labels("tutra-03", ap="ap-tutra-03")),
                    "values": " ".join(jitter(1_000_000, 2400)),
                },
            ],
            "alert_rule_test": [
                check(900, "APRebooted"),
                check(1330, "APRebooted", ap_rebooted("daron-01", "ap-daron-01"),
                      ap_rebooted("daron-09", "ap-daron-09")),
                check(2300, "APRebooted", ap_rebooted("daron-01", "ap-daron-01"),
                      ap_rebooted("daron-09", "ap-daron-09")),
            ],
        }
    )
    # The lossy-but-working line: 30 % packet loss for 20 minutes (ten minutes of it is the
    # issue's test; twice that here), modelled with one retry per request (retries: 1, as an
    # operator may set; camnet's default of 3 makes failed checks rare), so that runs of failed
    # checks do happen. Neither loss nor down pages. A line losing 60 % (after a clean first 5
    # minutes), modelled with camnet's defaults, pages APHighLoss once its 10-minute average is
    # past half and has stayed so for 5 minutes, although almost half of its SNMP checks fail;
    # a dead AP is APDown, not loss.
    loss30, up30, ping30, longest30 = lossy_line(seed=30, minutes=21, packet_loss=0.3, tries=2)
    loss60, up60, ping60, _ = lossy_line(seed=60, minutes=16, packet_loss=0.6)
    clean = values((0, 300))
    loss60, up60, ping60 = (f"{clean} {loss60}", f"{values((1, 300))} {up60}",
                            f"{values((1, 300))} {ping60}")
    assert longest30 >= 3, "the 30 % scenario should contain three failed SNMP checks in a row"
    assert up60.split().count("0") > len(up60.split()) // 4, "the 60 % line should fail checks"
    pct60 = f"{avg_window(loss60, 1200, 600) * 100:.4g}%"
    tests.append(
        {
            "name": f"APHighLoss and APDown do not fire at 30% loss (up to {longest30} failed "
            "checks in a row); APHighLoss fires at 60% loss although SNMP checks fail too",
            "input_series": site_info()
            + ap("daron-01", "ap-daron-01", up30)
            + [{"series": sel("camnet_ping_up", labels("daron-01", ap="ap-daron-01")), "values": ping30}]
            + [
                {
                    "series": sel("camnet_ping_loss_ratio", labels("daron-01", ap="ap-daron-01")),
                    "values": loss30,
                }
            ]
            + ap("daron-02", "ap-daron-02", up60)
            + [{"series": sel("camnet_ping_up", labels("daron-02", ap="ap-daron-02")), "values": ping60}]
            + [
                {
                    "series": sel("camnet_ping_loss_ratio", labels("daron-02", ap="ap-daron-02")),
                    "values": loss60,
                }
            ]
            + ap("daron-09", "ap-daron-09", values((1, 60), (0, 1300)))
            + [
                {
                    "series": sel("camnet_ping_loss_ratio", labels("daron-09", ap="ap-daron-09")),
                    "values": values((0, 60), (1, 1300)),
                }
            ],
            "alert_rule_test": [
                *[t for s in range(60, 1261, 30) for t in none(s, "SiteDown", "CameraDown")],
                *[check(s, "APDown", ap_down("daron-09", "ap-daron-09", alone=True))
                  for s in range(150, 1261, 30)],
                check(900, "APHighLoss"),
                check(1200, "APHighLoss", ap_high_loss("daron-02", "ap-daron-02", pct60)),
            ],
        }
    )
    # camnet itself: a check that stopped running (its last result would be exported for
    # ever), and a rejected config reload (the previous config keeps running).
    def last_run(start: int, until: int) -> str:
        # The Unix time of the last run, every 15 s while checks run; then frozen.
        runs = [start + (i * STEP) // 15 * 15 for i in range(until // STEP)]
        frozen = [runs[-1]] * ((1800 - until) // STEP)
        return " ".join(str(v) for v in runs + frozen)

    tests.append(
        {
            "name": "CamnetChecksStalled fires when a check has not run for 10 minutes, "
            "not while it runs; CamnetConfigReloadFailed after 10 minutes of a refused reload",
            "input_series": [
                {
                    "series": sel("camnet_check_last_run_timestamp_seconds",
                                  {**labels("daron-01", camera="cam-daron-01"), "check": "rtsp"}),
                    "values": last_run(0, 300),  # stops at 5 min
                },
                {
                    "series": sel("camnet_check_last_run_timestamp_seconds",
                                  {**labels("daron-02", ap="ap-daron-02"), "check": "snmp"}),
                    "values": last_run(0, 1800),  # runs throughout
                },
                {
                    "series": 'camnet_config_last_reload_successful{job="camnet",instance="127.0.0.1:9830"}',
                    "values": values((1, 60), (0, 30), (1, 60), (0, 1200)),
                },
            ],
            "alert_rule_test": [
                check(600, "CamnetChecksStalled"),
                check(1100, "CamnetChecksStalled",
                      checks_stalled("daron-01", "rtsp", camera="cam-daron-01")),
                check(500, "CamnetConfigReloadFailed"),  # the short refusal at 1 min does not page
                check(900, "CamnetConfigReloadFailed", reload_failed("127.0.0.1:9830")),
            ],
        }
    )
    # camnet itself: scrape fails for over a minute, or the job is gone.
    tests.append(
        {
            "name": "CamnetNotScraped fires when scrapes fail for a minute, not for one failed scrape",
            "input_series": [
                {
                    "series": 'up{job="camnet",instance="127.0.0.1:9830"}',
                    "values": values((1, 60), (0, 5), (1, 60), (0, 300), (1, 300)),
                },
            ],
            "alert_rule_test": [
                check(100, "CamnetNotScraped"),
                check(175, "CamnetNotScraped"),
                check(200, "CamnetNotScraped", not_scraped("127.0.0.1:9830")),
                # Scraped again from t=425: it fires on for 3 minutes (Alertmanager keeps the
                # device alerts muted while camnet's first checks run), then ends.
                check(590, "CamnetNotScraped", not_scraped("127.0.0.1:9830")),
                check(610, "CamnetNotScraped"),
            ],
        }
    )
    # A camnet restart (or failed scrapes): every camnet series goes stale at t=200; cameras
    # report again from t=260, APs from t=275 (each after its first check). Every FIRING alert
    # stays firing through the gap, with the same labels (Alertmanager sees one alert, nobody
    # is told "resolved" then paged again); its texts fall back to ids while the site's name,
    # the camera's reasons and the clock offset are missing.
    def restarted(before: float | str, after: float | str, back: int = 260,
                  change: int = 60) -> str:
        return values((before, change), (after, 200 - change), ("stale", 5), ("_", back - 205),
                      (after, 300))

    cams = {"daron-01": "cam-daron-01", "daron-02": "cam-daron-02", "tutra-03": "cam-tutra-03",
            "daron-09": "cam-daron-09"}
    down = camera_down("daron-01", "cam-daron-01", "mất kết nối")
    frozen = picture_problem("daron-09", "cam-daron-09", "frozen")
    drift = clock_drift("daron-09", "cam-daron-09", "120")
    drift_gap = {**drift, "exp_annotations": {
        **drift["exp_annotations"],
        "summary": drift["exp_annotations"]["summary"].replace("120 giây ", " ")}}
    ap_dead = ap_down("daron-09", "ap-daron-09")
    during = {
        "CameraDown": [unnamed(camera_down("daron-01", "cam-daron-01", "không rõ"))],
        "SiteDown": [unnamed(site_down("daron-02"))],
        "CameraAuthFailed": [auth_failed("tutra-03", "cam-tutra-03")],
        "CameraPictureProblem": [unnamed(frozen)],
        "CameraClockDrift": [drift_gap],
        "APDown": [unnamed(ap_dead)],
    }
    outside = {
        "CameraDown": [down],
        "SiteDown": [site_down("daron-02")],
        "CameraAuthFailed": [auth_failed("tutra-03", "cam-tutra-03")],
        "CameraPictureProblem": [frozen],
        "CameraClockDrift": [drift],
        "APDown": [ap_dead],
    }
    tests.append(
        {
            "name": "A camnet restart or failed scrapes leave firing alerts firing, without a second page",
            "input_series": [
                {**info, "values": restarted(1, 1)} for info in site_info()
            ]
            + camera("daron-01", cams["daron-01"], restarted(1, 0),
                     {"unreachable": restarted(0, 1)})
            + ap("daron-01", "ap-daron-01", restarted(1, 1, back=275))
            + camera("daron-02", cams["daron-02"], restarted(1, 0),
                     {"unreachable": restarted(0, 1)})
            + ap("daron-02", "ap-daron-02", restarted(1, 0, back=275))
            + camera("tutra-03", cams["tutra-03"], restarted(1, 0),
                     {"auth_failed": restarted(0, 1)})
            + camera("daron-09", cams["daron-09"], restarted(1, 1),
                     {"frozen": restarted(0, 1), "clock_drift": restarted(1, 1)})
            + [{"series": sel("camnet_camera_clock_offset_seconds",
                              labels("daron-09", camera="cam-daron-09")),
                "values": restarted(120, 120)}]
            + ap("daron-09", "ap-daron-09", restarted(1, 0, back=275, change=30)),
            "alert_rule_test": [
                *[check(t, name, *alerts) for t in (195, 280, 400)
                  for name, alerts in outside.items()],
                *[check(t, name, *alerts) for t in (205, 230, 255)
                  for name, alerts in during.items()],
                # (APs are exported 15 s after cameras: APDown is still held, with a text
                # that counts the site's devices, at 265.)
                *[check(265, name, *alerts) for name, alerts in outside.items()
                  if name != "APDown"],
            ],
        }
    )
    # camnet is not scraped for 40 minutes (t=200-2600, say a crashed host), far longer than
    # the 5-minute hold and than the 15 minutes Prometheus re-sends an ended alert as
    # resolved, after which Alertmanager forgets it. Every firing device alert stays firing
    # while CamnetNotScraped does (Alertmanager mutes them meanwhile): none ends for want of
    # data, so when camnet is back (devices exported from t=2660, APs from 2675) what really
    # recovered meanwhile resolves at once, and is sent as resolved once the mute lifts,
    # while what is still down is the same alert, never a second page.
    def outage(before: float | str, after: float | str, back: int = 2660) -> str:
        return values((before, 200), ("stale", 5), ("_", back - 205), (after, 400))

    long_down = camera_down("daron-01", "cam-daron-01b", "mất kết nối")
    blind = ap_down("daron-02", "ap-daron-02")
    wrong_pw = auth_failed("tutra-03", "cam-tutra-03b")
    drift = clock_drift("tutra-03", "cam-tutra-03", "120")
    drift_gap = {**drift, "exp_annotations": {
        **drift["exp_annotations"],
        "summary": drift["exp_annotations"]["summary"].replace("120 giây ", " ")}}
    before = {
        "CameraDown": [camera_down("daron-01", "cam-daron-01", "mất kết nối"), long_down],
        "SiteDown": [site_down("daron-09")],
        "CameraAuthFailed": [wrong_pw],
        "CameraPictureProblem": [picture_problem("tutra-03", "cam-tutra-03", "frozen")],
        "CameraClockDrift": [drift],
        "APDown": [blind],
    }
    during_outage = {
        "CameraDown": [unnamed(camera_down("daron-01", "cam-daron-01", "không rõ")),
                       unnamed(camera_down("daron-01", "cam-daron-01b", "không rõ"))],
        "SiteDown": [unnamed(site_down("daron-09"))],
        "CameraAuthFailed": [wrong_pw],
        "CameraPictureProblem": [unnamed(picture_problem("tutra-03", "cam-tutra-03", "frozen"))],
        "CameraClockDrift": [drift_gap],
        "APDown": [unnamed(blind)],
    }
    after_outage = {
        "CameraDown": [long_down],
        "SiteDown": [],
        "CameraAuthFailed": [wrong_pw],
        "CameraPictureProblem": [],
        "CameraClockDrift": [drift],
        "APDown": [blind],
    }
    tests.append(
        {
            "name": "A long camnet outage ends no alert: recoveries meanwhile resolve when camnet is back",
            "input_series": [
                {"series": 'up{job="camnet",instance="127.0.0.1:9830"}',
                 "values": values((1, 200), (0, 2400), (1, 600))},
            ]
            + [{**info, "values": outage(1, 1)} for info in site_info()]
            + camera("daron-01", "cam-daron-01", outage(0, 1),
                     {"unreachable": outage(1, 0)})
            + camera("daron-01", "cam-daron-01b", outage(0, 0),
                     {"unreachable": outage(1, 1)})
            + ap("daron-01", "ap-daron-01", outage(1, 1, back=2675))
            + camera("daron-02", "cam-daron-02", outage(1, 1))
            + ap("daron-02", "ap-daron-02", outage(0, 0, back=2675))
            + camera("daron-09", "cam-daron-09", outage(0, 1),
                     {"unreachable": outage(1, 0)})
            + ap("daron-09", "ap-daron-09", outage(0, 1, back=2675))
            + camera("tutra-03", "cam-tutra-03", outage(1, 1),
                     {"frozen": outage(1, 0), "clock_drift": outage(1, 1)})
            + [{"series": sel("camnet_camera_clock_offset_seconds",
                              labels("tutra-03", camera="cam-tutra-03")),
                "values": outage(120, 120)}]
            + camera("tutra-03", "cam-tutra-03b", outage(0, 0),
                     {"auth_failed": outage(1, 1)}),
            "alert_rule_test": [
                *[check(195, name, *alerts) for name, alerts in before.items()],
                *[check(t, name, *alerts) for t in (600, 1500, 2590, 2655)
                  for name, alerts in during_outage.items()],
                check(1500, "CamnetNotScraped", not_scraped("127.0.0.1:9830")),
                # Fresh data decides at once (still muted: CamnetNotScraped fires until 2780).
                *[check(t, name, *alerts) for t in (2690, 2800)
                  for name, alerts in after_outage.items()],
                check(2775, "CamnetNotScraped", not_scraped("127.0.0.1:9830")),
                check(2790, "CamnetNotScraped"),
            ],
        }
    )
    # A gap never turns a pending alert into a page: a camera and a whole site miss one poll
    # (t=190) just before camnet restarts (t=200-260). Nobody is paged.
    tests.append(
        {
            "name": "A gap right after one missed poll pages nobody",
            "input_series": site_info()
            + camera("daron-01", "cam-daron-01",
                     values((1, 190), (0, 10), ("stale", 5), ("_", 55), (1, 300)),
                     {"unreachable": values((0, 190), (1, 10), ("stale", 5), ("_", 55),
                                            (0, 300))})
            + ap("daron-01", "ap-daron-01", values((1, 200), ("stale", 5), ("_", 70), (1, 300)))
            + camera("daron-02", "cam-daron-02",
                     values((1, 190), (0, 10), ("stale", 5), ("_", 55), (1, 300)))
            + ap("daron-02", "ap-daron-02",
                 values((1, 190), (0, 10), ("stale", 5), ("_", 70), (1, 300))),
            "alert_rule_test": [
                t for s in range(190, 320, 10) for t in none(s, *ALL_DEVICE_ALERTS)
            ],
        }
    )
    # The line of a hall is cut while camnet restarts: its camera reports down at t=260, its
    # AP at t=275. That is SiteDown, to the NOC, not a CameraDown to the police.
    tests.append(
        {
            "name": "A site that goes dark during a gap is a SiteDown, not a CameraDown",
            "input_series": site_info()
            + camera("daron-01", "cam-daron-01",
                     values((1, 200), ("stale", 5), ("_", 55), (0, 300)),
                     {"unreachable": values((0, 200), ("stale", 5), ("_", 55), (1, 300))})
            + ap("daron-01", "ap-daron-01", values((1, 200), ("stale", 5), ("_", 70), (0, 300))),
            "alert_rule_test": [
                *[t for s in range(200, 420, 10) for t in none(s, "CameraDown", "APDown")],
                check(310, "SiteDown", site_down("daron-01")),
            ],
        }
    )
    # A camera that stops reporting for good (taken out of the config while down) is no
    # longer paged 5 minutes after its last report.
    tests.append(
        {
            "name": "A device that stops reporting for good resolves 5 minutes after its last report",
            "input_series": site_info()
            + camera("daron-01", "cam-daron-01", values((1, 60), (0, 140), ("stale", 5)),
                     {"unreachable": values((0, 60), (1, 140), ("stale", 5))})
            + ap("daron-01", "ap-daron-01", OK),
            "alert_rule_test": [
                check(195, "CameraDown", down),
                check(490, "CameraDown",
                      camera_down("daron-01", "cam-daron-01", "không rõ")),
                check(500, "CameraDown"),
            ],
        }
    )
    tests.append(
        {
            "name": "CamnetNotScraped fires when camnet is not scraped at all",
            "input_series": [{"series": 'up{job="node",instance="x:9100"}', "values": OK}],
            "alert_rule_test": [
                check(30, "CamnetNotScraped"),
                check(90, "CamnetNotScraped", not_scraped(None)),
            ],
        }
    )
    return tests


def build() -> dict[str, Any]:
    """The whole promtool test file."""
    tests = scenarios()
    for t in tests:
        t.setdefault("interval", f"{STEP}s")
        if not any(x["series"].startswith("up{") for x in t["input_series"]):
            # camnet is scraped throughout unless the scenario says otherwise (without `up`,
            # CamnetNotScraped fires and the device alerts' long hold with it).
            t["input_series"].insert(0, {"series": 'up{job="camnet",instance="127.0.0.1:9830"}',
                                         "values": OK})
    return {
        "rule_files": ["../rules/camnet.rules.yml"],
        "evaluation_interval": f"{STEP}s",
        "tests": tests,
    }


def render() -> str:
    """The YAML text, with a header saying where it comes from."""
    header = "# GENERATED by config/prometheus/tests/generate.py: edit that, then run it.\n"
    return header + yaml.safe_dump(build(), allow_unicode=True, sort_keys=False, width=10_000)


if __name__ == "__main__":
    OUT.write_text(render(), encoding="utf-8")
    sys.stdout.write(f"wrote {OUT}\n")
