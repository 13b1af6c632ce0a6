"""Render a DeviceReport: human text (English or Vietnamese), JSON, Prometheus text, debug view."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Iterable
from typing import Any

import yaml
from pydantic import BaseModel

from monitor.checks import DeviceReport, redact, secret_values
from monitor.logs import SECRET_MASK
from probes.base import CheckResult, Sample, Status

LANGS = ("en", "vi")

STATUS_WORDS: dict[str, dict[Status, str]] = {
    "en": {Status.OK: "OK", Status.WARNING: "WARNING", Status.CRITICAL: "CRITICAL",
           Status.UNKNOWN: "UNKNOWN"},
    "vi": {Status.OK: "BÌNH THƯỜNG", Status.WARNING: "CẢNH BÁO", Status.CRITICAL: "NGHIÊM TRỌNG",
           Status.UNKNOWN: "KHÔNG XÁC ĐỊNH"},
}

# Problem names (CONTRACT) and the short reasons probers give, in Vietnamese.
WORDS_VI: dict[str, str] = {
    "unreachable": "không kết nối được",
    "auth_failed": "sai tài khoản/mật khẩu",
    "no_stream": "không có luồng hình",
    "black": "hình đen",
    "frozen": "hình bị đứng",
    "blurred": "hình bị mờ",
    "moved": "camera bị xoay lệch hướng",
    "dark": "hình quá tối",
    "clock_drift": "lệch đồng hồ",
    "timeout": "hết thời gian chờ",
    "refused": "bị từ chối kết nối",
    "internal_error": "lỗi nội bộ của camnet",
    "failed": "thất bại",
    "fault": "thiết bị báo lỗi",
    "bad_reply": "trả lời không hợp lệ",
    "not checked yet": "chưa kiểm tra",
    "no reply": "không trả lời",
    "no frame": "không có khung hình",
    "agent_error": "tác tử SNMP báo lỗi",
    "error": "lỗi",
    "no_such_object": "thiết bị không có mục này",
    "oid_not_increasing": "tác tử SNMP trả OID không tăng dần",
    "not_permitted": "không được phép",
    "decoder_crashed": "bộ giải mã của camnet bị lỗi",
}

CHECK_NAMES: dict[str, dict[str, str]] = {
    "en": {"ping": "ping", "onvif": "ONVIF", "rtsp": "RTSP", "snmp": "SNMP"},
    "vi": {"ping": "ping", "onvif": "ONVIF", "rtsp": "RTSP", "snmp": "SNMP"},
}

UI: dict[str, dict[str, str]] = {
    "en": {
        "address": "address", "commune": "commune", "site": "site", "check": "check",
        "result": "result", "time": "time", "detail": "detail", "ok": "ok", "failed": "FAILED",
        "skipped": "skipped", "yes": "yes", "no": "no", "took": "checked in",
        "frame_saved": "frame saved to", "no_frame": "no frame was grabbed, nothing saved",
    },
    "vi": {
        "address": "địa chỉ", "commune": "xã", "site": "điểm", "check": "kiểm tra",
        "result": "kết quả", "time": "thời gian", "detail": "chi tiết", "ok": "tốt",
        "failed": "LỖI", "skipped": "bỏ qua", "yes": "có", "no": "không",
        "took": "kiểm tra trong", "frame_saved": "đã lưu ảnh vào",
        "no_frame": "không lấy được khung hình, không lưu gì",
    },
}

# Facts worth a row, in table order, with their labels. Keys not listed are shown as they come.
FACT_LABELS: dict[str, tuple[str, str]] = {
    "vendor": ("vendor", "hãng"),
    "manufacturer": ("vendor", "hãng"),
    "model": ("model", "kiểu máy"),
    "firmware": ("firmware", "phần mềm (firmware)"),
    "firmware_version": ("firmware", "phần mềm (firmware)"),
    "serial": ("serial number", "số sê-ri"),
    "serial_number": ("serial number", "số sê-ri"),
    "hardware_id": ("hardware id", "mã phần cứng"),
    "clock_offset_seconds": ("clock offset", "lệch đồng hồ"),
    "clock_offset": ("clock offset", "lệch đồng hồ"),
    "stream_uri": ("stream", "luồng hình"),
    "rtsp_url": ("stream", "luồng hình"),
    "snapshot_uri": ("snapshot", "ảnh chụp"),
    "codec": ("codec", "chuẩn nén"),
    "width": ("width", "chiều rộng"),
    "height": ("height", "chiều cao"),
    "resolution": ("resolution", "độ phân giải"),
    "fps": ("frame rate", "số khung hình/giây"),
    "frame_rate": ("frame rate", "số khung hình/giây"),
    "time_to_first_frame_seconds": ("time to first frame", "thời gian tới khung hình đầu"),
    "keyframe_bytes": ("keyframe size", "cỡ khung hình chính (keyframe)"),
    "picture_stream": ("picture checked on", "kiểm tra hình trên luồng"),
    "picture_width": ("picture width", "chiều rộng hình kiểm tra"),
    "picture_height": ("picture height", "chiều cao hình kiểm tra"),
    "picture_keyframe_bytes": ("picture keyframe size", "cỡ keyframe hình kiểm tra"),
    "picture_stream_error": ("picture stream failed", "luồng hình kiểm tra lỗi"),
    "picture_not_checked": ("picture not checked this time", "lần này chưa kiểm tra hình"),
    "brightness_ratio": ("brightness", "độ sáng"),
    "brightness": ("brightness", "độ sáng"),
    "contrast_ratio": ("contrast", "độ tương phản"),
    "contrast": ("contrast", "độ tương phản"),
    "sharpness": ("sharpness", "độ nét"),
    "profile": ("codec profile", "cấu hình nén"),
    "structure": ("structure", "độ chi tiết"),
    "frame_changed": ("changed since last grab", "thay đổi so với lần trước"),
    "scene_similarity": ("similarity to reference", "giống hình mẫu"),
    "baseline_sharpness": ("usual sharpness", "độ nét thường ngày"),
    "picture_suspect": ("picture suspect", "nghi vấn hình ảnh"),
    "sys_name": ("system name", "tên thiết bị"),
    "sys_descr": ("description", "mô tả"),
    "uptime_seconds": ("uptime", "thời gian chạy"),
    "uptime": ("uptime", "thời gian chạy"),
    "boot_time": ("last boot", "khởi động lần cuối"),
    "interfaces": ("interfaces", "cổng mạng"),
    "clients": ("WiFi clients", "thiết bị WiFi đang kết nối"),
    "wifi_clients": ("WiFi clients", "thiết bị WiFi đang kết nối"),
    "radios": ("radios", "sóng WiFi"),
    "cpu_usage_ratio": ("CPU", "CPU"),
    "memory_usage_ratio": ("memory", "bộ nhớ"),
    "rtt_seconds": ("round-trip time", "thời gian phản hồi"),
    "loss_ratio": ("packet loss", "mất gói"),
    "rtt_ms": ("round-trip time", "thời gian phản hồi"),
    "loss": ("packet loss", "mất gói"),
    "sent": ("echo requests", "gói ping đã gửi"),
    "received": ("echo replies", "gói ping trả lời"),
    "privileged": ("raw ICMP socket", "socket ICMP thô"),
    "module": ("SNMP profile", "cấu hình SNMP"),
    "sys_object_id": ("sysObjectID", "sysObjectID"),
    "values": ("values read", "số giá trị đọc được"),
    "requests": ("SNMP requests", "số yêu cầu SNMP"),
    "retries": ("retries", "số lần gửi lại"),
    "varbinds": ("varbinds", "số varbind"),
    "rebooted": ("rebooted", "đã khởi động lại"),
    "last_frame_age": ("last frame age (s)", "tuổi khung hình cuối (giây)"),
}
# What the radio figures of the SNMP prober are measured in.
_RADIO_UNITS = {"noise": " dBm", "frequency": " MHz", "utilisation": " %", "channel": ""}
_RADIO_WORDS_VI = {"noise": "nhiễu", "frequency": "tần số", "utilisation": "mức sử dụng",
                   "channel": "kênh"}

_ANSI = {Status.OK: "32", Status.WARNING: "33", Status.CRITICAL: "31", Status.UNKNOWN: "35"}


# Text devices wrote (sysDescr, SOAP faults, RTSP replies) goes to a technician's terminal: a
# line break splits the table (Cisco's sysDescr holds CRLFs), an escape sequence can clear or
# recolour the screen.
_LINE_BREAKS = re.compile(r"[ \t]*[\r\n\x85\u2028\u2029]+[ \t]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` on one line, its control characters shown escaped (`\\x1b`)."""
    text = _LINE_BREAKS.sub(" ", text).replace("\t", " ")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group(0)):02x}", text)


def _paint(text: str, code: str, color: bool) -> str:
    return f"\x1b[1;{code}m{text}\x1b[0m" if color else text


# Reasons of the AP verdict (probes/ap.py) that are sentences rather than single words.
_REASONS_VI: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^down: no ping reply and snmp (\S+)$"),
     "mất kết nối: không trả lời ping, SNMP {0}"),
    (re.compile(r"^(\w+): (\S+) \(the AP answers ping\)$"), "{0}: {1} (AP vẫn trả lời ping)"),
    (re.compile(r"^(\w+): (\S+) \(the agent answers\)$"), "{0}: {1} (tác tử SNMP có trả lời)"),
    (re.compile(r"^ping: (\d+)% packet loss$"), "ping: mất {0}% gói"),
    (re.compile(r"^rebooted since the last check$"), "đã khởi động lại từ lần kiểm tra trước"),
    (re.compile(r"^ping: not permitted on this host \(see ping_group_range\)$"),
     "ping: máy này không được phép ping (xem ping_group_range)"),
]


def _word(word: str, lang: str) -> str:
    """Translate a problem name or short reason; `check: reason` pairs are translated by part."""
    if lang != "vi":
        return word
    for pattern, template in _REASONS_VI:
        m = pattern.match(word)
        if m:
            parts = [CHECK_NAMES["vi"].get(g, WORDS_VI.get(g, g)) for g in m.groups()]
            return template.format(*parts)
    if ": " in word:
        head, tail = word.split(": ", 1)
        return f"{CHECK_NAMES['vi'].get(head, head)}: {WORDS_VI.get(tail, tail)}"
    return WORDS_VI.get(word, word)


def _seconds(value: float, lang: str) -> str:
    if abs(value) < 1:
        return f"{value * 1000:.1f} ms".replace("-0.0 ms", "0.0 ms")
    if abs(value) < 120:
        return f"{value:.2f} s"
    return _duration(value, lang)


def _duration(value: float, lang: str) -> str:
    if value < 0:  # a camera clock behind ours: -10m, not divmod's -1d23h50m
        return "-" + _duration(-value, lang)
    total = int(value)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    units = ("d", "h", "m", "s") if lang == "en" else (" ngày ", "g", "p", "s")
    parts = [f"{n}{u}" for n, u in zip((days, hours, minutes, seconds), units, strict=True) if n]
    return "".join(parts).strip() or "0s"


def format_value(key: str, value: Any, lang: str = "en") -> str:
    """A fact value as a person reads it (units from the key's suffix)."""
    ui = UI[lang]
    if isinstance(value, bool):
        return ui["yes"] if value else ui["no"]
    if isinstance(value, int | float) and not (isinstance(value, float) and math.isnan(value)):
        if key.startswith("uptime"):
            return _duration(float(value), lang)
        if key.endswith("_seconds") or key in ("clock_offset", "rtt"):
            return _seconds(float(value), lang)
        if key.endswith("_ratio"):
            return f"{float(value) * 100:.1f} %"
        if key.endswith("_bytes") and value >= 1000:
            return f"{float(value) / 1000:.0f} kB"
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)
    if key == "interfaces" and isinstance(value, list):
        # the SNMP prober lists interfaces as {name, up, rx_bytes, ...}; the table shows state
        parts = []
        for item in value:
            if isinstance(item, dict) and "name" in item:
                words = ("up", "down") if lang == "en" else ("bật", "tắt")
                state = "" if "up" not in item else f" {words[0] if item['up'] else words[1]}"
                parts.append(f"{item['name']}{state}")
            else:
                parts.append(format_value("", item, lang))
        return ", ".join(parts)
    radio = "radio" if lang == "en" else "sóng"
    if key in ("clients", "wifi_clients") and isinstance(value, dict):
        per = ", ".join(f"{radio} {k}: {format_value('', v, lang)}" for k, v in value.items())
        total = sum(v for v in value.values() if isinstance(v, int | float))
        return f"{format_value('', total, lang)} ({per})"
    if key == "radios" and isinstance(value, dict):
        parts = []
        for name, figures in value.items():
            if isinstance(figures, dict):
                shown = ", ".join(
                    f"{_RADIO_WORDS_VI.get(k, k) if lang == 'vi' else k} "
                    f"{format_value('', v, lang)}{_RADIO_UNITS.get(k, '')}"
                    for k, v in figures.items())
            else:
                shown = format_value("", figures, lang)
            parts.append(f"{radio} {name}: {shown}")
        return "; ".join(parts)
    if isinstance(value, dict):
        return ", ".join(f"{k} {format_value(str(k), v, lang)}" for k, v in value.items())
    if key == "picture_suspect" and isinstance(value, list | tuple):
        return ", ".join(_word(str(v), lang) for v in value)
    if isinstance(value, list | tuple):
        return ", ".join(format_value(key, v, lang) for v in value)
    return str(value)


def fact_label(key: str, lang: str = "en") -> str:
    """The row label of a fact key."""
    labels = FACT_LABELS.get(key)
    if labels is None:
        return key.replace("_", " ")
    return labels[0] if lang == "en" else labels[1]


def _derived_facts(samples: Iterable[Sample]) -> dict[str, Any]:
    """Facts read back from metric samples, for probers that put a value only in a metric."""
    out: dict[str, Any] = {}
    interfaces: dict[str, bool] = {}
    clients: dict[str, float] = {}
    simple = {
        "camnet_ping_rtt_seconds": "rtt_seconds",
        "camnet_ping_loss_ratio": "loss_ratio",
        "camnet_camera_clock_offset_seconds": "clock_offset_seconds",
        "camnet_camera_time_to_first_frame_seconds": "time_to_first_frame_seconds",
        "camnet_camera_frame_width_pixels": "width",
        "camnet_camera_frame_height_pixels": "height",
        "camnet_camera_brightness_ratio": "brightness_ratio",
        "camnet_camera_sharpness": "sharpness",
        "camnet_camera_contrast_ratio": "contrast_ratio",
        "camnet_ap_cpu_usage_ratio": "cpu_usage_ratio",
        "camnet_ap_memory_usage_ratio": "memory_usage_ratio",
    }
    for s in samples:
        if s.name in simple:
            value: Any = s.value
            if s.name.endswith("_pixels"):
                value = int(s.value)
            out[simple[s.name]] = value
        elif s.name in ("camnet_camera_info", "camnet_ap_info"):
            out.update({k: v for k, v in s.labels.items() if v})
        elif s.name == "camnet_ap_boot_time_seconds" and s.value > 0:
            out["uptime_seconds"] = max(0.0, dt.datetime.now(dt.UTC).timestamp() - s.value)
        elif s.name == "camnet_ap_interface_up":
            interfaces[s.labels.get("interface", "?")] = bool(s.value)
        elif s.name == "camnet_ap_wifi_clients":
            clients[s.labels.get("radio", "?")] = s.value
    if interfaces:
        out["interfaces"] = [{"name": k, "up": v} for k, v in interfaces.items()]
    if clients:
        total = sum(clients.values())
        out["clients"] = int(total) if len(clients) == 1 else {
            "total": int(total), **{k: int(v) for k, v in clients.items()}}
    return out


def facts_of(result: CheckResult) -> dict[str, Any]:
    """A check's facts: what the prober reported, completed from its metric samples."""
    facts = _derived_facts(result.samples)
    facts.update(result.facts)
    return facts


_ORDER = {key: i for i, key in enumerate(FACT_LABELS)}


def table_facts(report: DeviceReport) -> list[tuple[str, Any]]:
    """The facts of every check for the table: known ones in table order, empty ones dropped,
    one row per label (probers may give the same fact under two names)."""
    found: list[tuple[int, int, str, Any]] = []
    seen: set[str] = set()
    for result in report.results.values():
        for key, value in facts_of(result).items():
            if value is None or value == "" or value == {} or value == []:
                continue
            label = fact_label(key)
            if label in seen:
                continue
            seen.add(label)
            found.append((_ORDER.get(key, len(_ORDER)), len(found), key, value))
    return [(key, value) for _, _, key, value in sorted(found)]


def device_name(report: DeviceReport) -> str:
    """`id (name)` for inventory devices, the address for ad-hoc targets."""
    t = report.target
    name = t.options.get("name")
    if name and name != t.id:
        return f"{t.id} ({name})"
    return t.id


def _failure_text(result: CheckResult, lang: str) -> str:
    what = result.message or _word(result.reason or "failed", lang)
    return f"{CHECK_NAMES[lang].get(result.check, result.check)}: {what}"


def verdict_line(report: DeviceReport, lang: str = "en", color: bool = False) -> str:
    """`CRITICAL cam-daron-01 (site name): no_stream — rtsp: RTSP 401 Unauthorized`."""
    word = _paint(STATUS_WORDS[lang][report.status], _ANSI[report.status], color)
    line = f"{word} {printable(device_name(report))}"
    if report.reasons:
        line += ": " + printable(", ".join(_word(r, lang) for r in report.reasons))
    if report.status != Status.OK:
        # internal errors are already in the reasons; a bare reason would repeat one
        failures = [
            _failure_text(r, lang) for r in report.failures()
            if r.reason != "internal_error"
            and (r.message or not any(r.reason and r.reason in x for x in report.reasons))
        ]
        if failures:
            line += " — " + printable("; ".join(failures))
    return line


def _table(rows: list[tuple[str, ...]], indent: str = "  ") -> list[str]:
    rows = [tuple(printable(cell) for cell in row) for row in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for row in rows:
        cells = [c.ljust(widths[i]) for i, c in enumerate(row)]
        out.append((indent + "  ".join(cells)).rstrip())
    return out


def render_text(report: DeviceReport, lang: str = "en", color: bool = False) -> str:
    """The human view: verdict line, where the device is, the checks, then the facts table."""
    ui = UI[lang]
    t = report.target
    lines = [verdict_line(report, lang, color)]
    where = f"  {ui['address']}: {t.address}"
    if t.labels.get("commune"):
        where += f" · {ui['commune']} {t.labels['commune']}"
    if t.labels.get("site"):
        where += f" · {ui['site']} {t.labels['site']}"
    lines += [where, ""]
    rows: list[tuple[str, ...]] = [(ui["check"], ui["result"], ui["time"], ui["detail"])]
    for check, result in report.results.items():
        state = ui["ok"] if result.success else ui["failed"]
        detail = "" if result.success else (result.message or _word(result.reason, lang))
        if result.success and result.reason:
            detail = _word(result.reason, lang)
        rows.append((CHECK_NAMES[lang].get(check, check), state,
                     _seconds(result.duration, lang), detail))
    for check in report.skipped:
        rows.append((CHECK_NAMES[lang].get(check, check), ui["skipped"], "", ""))
    table = _table(rows)
    if color:
        table = [line.replace(f"  {ui['failed']} ", f"  {_paint(ui['failed'], '31', True)} ", 1)
                 for line in table]
    lines += table
    fact_rows: list[tuple[str, ...]] = [
        (fact_label(key, lang), format_value(key, value, lang)) for key, value in table_facts(report)
    ]
    if fact_rows:
        lines += ["", *_table(fact_rows)]
    lines += ["", f"  {ui['took']} {_seconds(report.duration, lang)}"]
    return "\n".join(lines) + "\n"


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return str(value)


def metric_rows(report: DeviceReport) -> list[dict[str, Any]]:
    """Every metric value of the check with the device's labels: name, labels, value."""
    out = []
    for s in report.all_samples():
        labels = {**report.target.labels, **dict(s.labels)}
        out.append({"name": s.name, "labels": labels, "value": _jsonable(s.value)})
    return out


def settings_view(report: DeviceReport) -> dict[str, Any]:
    """The target and settings the check used, secrets masked (for --debug and JSON)."""
    t = report.target
    auth: dict[str, Any] | None = None
    if t.auth is not None:
        config = t.auth.config
        auth = config.model_dump(mode="json") if isinstance(config, BaseModel) else {}
        for name, value in t.auth.secrets.items():
            if value is not None:
                auth[name] = SECRET_MASK
        if auth.get("type") == "snmp" and auth.get("version") != "3":
            for key in ("username", "security_level", "auth_protocol", "priv_protocol",
                        "context_name"):
                auth.pop(key, None)
        auth = {k: v for k, v in auth.items() if v is not None}
    secrets = secret_values(t)
    checks = {
        name: s.model_dump(mode="json") if isinstance(s, BaseModel) else repr(s)
        for name, s in report.settings.items()
    }
    view = {
        "target": {"id": t.id, "kind": t.kind, "address": t.address, "labels": dict(t.labels),
                   "options": {k: v for k, v in t.options.items() if v is not None}},
        "auth": auth,
        "checks": checks,
    }
    return _redact_tree(_jsonable(view), secrets)


def _redact_tree(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {k: _redact_tree(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_tree(v, secrets) for v in value]
    return value


def to_json(report: DeviceReport, debug: bool = False) -> dict[str, Any]:
    """One JSON object: verdict, per-check results with facts, and every metric value."""
    t = report.target
    checks: dict[str, Any] = {}
    for name, r in report.results.items():
        entry: dict[str, Any] = {
            "success": r.success,
            "reason": r.reason,
            "message": r.message,
            "duration_seconds": round(r.duration, 6),
            "problems": dict(r.problems),
            "facts": _jsonable(facts_of(r)),
        }
        if debug:
            entry["log"] = list(r.log)
        checks[name] = entry
    for name in report.skipped:
        checks[name] = {"skipped": True}
    out: dict[str, Any] = {
        "target": t.id,
        "kind": t.kind,
        "name": t.options.get("name"),
        "address": t.address,
        "labels": dict(t.labels),
        "status": report.status.name,
        "exit_code": int(report.status),
        "reasons": list(report.reasons),
        "checks": checks,
        "metrics": metric_rows(report),
        "duration_seconds": round(report.duration, 6),
        "checked_at": dt.datetime.fromtimestamp(report.started, dt.UTC).isoformat(),
    }
    if debug:
        out["settings"] = settings_view(report)
    return out


def render_json(report: DeviceReport, debug: bool = False, **extra: Any) -> str:
    """`to_json` as indented text, with extra top-level keys (e.g. frame_saved)."""
    data = to_json(report, debug)
    data.update(_jsonable(extra))
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


def render_metrics(report: DeviceReport) -> str:
    """The check's metrics in the Prometheus text format, device labels included (the daemon's
    own renderer, so /probe, --debug and /metrics can never disagree)."""
    from monitor.exporter import check_samples, render_text

    verdict = (report.status, report.reasons, report.samples)
    return render_text([(report.target.labels, check_samples(report.results, verdict))]).decode()


def render_debug(report: DeviceReport) -> str:
    """blackbox_exporter-style debug view: probe logs, metrics it would export, settings used."""
    lines = ["Logs for the probe:"]
    for name, r in report.results.items():
        state = "success" if r.success else f"failed reason={r.reason or '-'}"
        lines.append(f"check={name} {state} duration_seconds={r.duration:.3f}"
                     + (f' message="{printable(r.message)}"' if r.message else ""))
        lines.extend(f"  {printable(line)}" for line in r.log)
    for name in report.skipped:
        lines.append(f"check={name} skipped (disabled in the profile)")
    lines.append(f"verdict={report.status.name} reasons={','.join(report.reasons) or '-'}")
    lines += ["", "Metrics that would have been returned:", render_metrics(report).rstrip("\n")]
    settings = yaml.safe_dump(settings_view(report), allow_unicode=True, sort_keys=False)
    lines += ["", "Settings used:", settings.rstrip("\n")]
    return "\n".join(lines) + "\n"


def json_error(message: str) -> str:
    """The --json document of a run that checked nothing (bad arguments, config, internal)."""
    return json.dumps({"status": "UNKNOWN", "exit_code": int(Status.UNKNOWN), "error": message},
                      ensure_ascii=False) + "\n"
