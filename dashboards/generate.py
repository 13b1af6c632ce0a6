"""Write camnet's Grafana dashboards (dashboards/*.json) from one description in Python.

Four dashboards, all with the template variables commune, operator and site (read from
camnet_site_info), on the provisioned Prometheus datasource (uid camnet-prometheus):
NOC overview, camera wall, access-point detail, and camnet's own health.
Run `python3 dashboards/generate.py` after a change and commit the JSON too;
tests/test_dashboards.py fails when the JSON is stale.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATASOURCE = {"type": "prometheus", "uid": "camnet-prometheus"}
RI = "$__rate_interval"  # Grafana picks the range: at least 4 scrape intervals
# The APs' counters change only when camnet polls them (every 15 s, every 60 s while backing
# off): a rate over a scrape-sized window is mostly 0 with spikes. Five minutes always holds
# several polls.
RS = "5m"
SEL = 'commune=~"$commune", operator=~"$operator", site=~"$site"'  # every per-device panel filters by these


@dataclass
class Panel:
    """One Grafana panel: type, title, PromQL targets (expr, legend) and display options."""

    type: str
    title: str
    targets: list[tuple[str, str]]
    w: int = 8
    h: int = 8
    unit: str | None = None
    description: str = ""
    instant: bool = False
    mappings: list[dict[str, Any]] = field(default_factory=list)
    thresholds: list[tuple[float | None, str]] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    min: float | None = None
    max: float | None = None


def up_mapping(ok: str = "OK", bad: str = "MẤT / DOWN") -> list[dict[str, Any]]:
    """Value mapping for 0/1 health series."""
    return [
        {
            "type": "value",
            "options": {
                "0": {"text": bad, "color": "red", "index": 0},
                "1": {"text": ok, "color": "green", "index": 1},
            },
        }
    ]


def panel_json(p: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    """A panel as Grafana JSON."""
    steps = [{"color": c, "value": v} for v, c in (p.thresholds or [(None, "green")])]
    defaults: dict[str, Any] = {
        "mappings": p.mappings,
        "thresholds": {"mode": "absolute", "steps": steps},
        "color": {"mode": "thresholds" if p.thresholds or p.mappings else "palette-classic"},
    }
    if p.unit:
        defaults["unit"] = p.unit
    if p.min is not None:
        defaults["min"] = p.min
    if p.max is not None:
        defaults["max"] = p.max
    return {
        "id": pid,
        "type": p.type,
        "title": p.title,
        "description": p.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": p.h, "w": p.w, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": p.options,
        "targets": [
            {
                "datasource": DATASOURCE,
                "refId": chr(ord("A") + i),
                "expr": expr,
                "legendFormat": legend,
                "instant": p.instant,
                "range": not p.instant,
                **({"format": "table"} if p.type == "table" else {}),
            }
            for i, (expr, legend) in enumerate(p.targets)
        ],
    }


def variable(name: str, label: str, query: str, all_value: str = ".*") -> dict[str, Any]:
    """A multi-value query variable with All (= .*, or `all_value`).

    The device variables (camera, ap) take All = .+: the ping metrics are exported for both
    kinds, and camera=~".*" also matches a series without a camera label (an AP's)."""
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"{name}-var"},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "allValue": all_value,
        "multi": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


VARIABLES = [
    variable("commune", "Xã / Commune", "label_values(camnet_site_info, commune)"),
    variable(
        "operator", "Nhà mạng / Operator", 'label_values(camnet_site_info{commune=~"$commune"}, operator)'
    ),
    variable(
        "site",
        "Điểm / Site",
        'label_values(camnet_site_info{commune=~"$commune", operator=~"$operator"}, site)',
    ),
]


def dashboard(
    uid: str, title: str, description: str, rows: list[list[Panel]], extra_vars: list[Any]
) -> dict[str, Any]:
    """A dashboard: rows of panels laid out left to right, 24 units wide."""
    panels = []
    pid = 1
    y = 0
    for row in rows:
        x = 0
        height = 0
        for p in row:
            panels.append(panel_json(p, pid, x, y))
            pid += 1
            x += p.w
            height = max(height, p.h)
        assert x <= 24, f"{title}: row wider than 24"
        y += height
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["camnet"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": VARIABLES + extra_vars},
        "annotations": {"list": []},
        "links": [{"type": "dashboards", "tags": ["camnet"], "asDropdown": True, "title": "camnet"}],
        "panels": panels,
    }


def up_share_by(label: str, vi: str, en: str, dev: str) -> Panel:
    """A bar per commune/operator: the share of its devices that are up."""
    return Panel(
        "bargauge",
        f"Tỉ lệ thiết bị hoạt động theo {vi} / Devices up by {en}",
        [(f"sum by ({label}) ({dev}) / count by ({label}) ({dev})", f"{{{{{label}}}}}")],
        w=8,
        h=7,
        unit="percentunit",
        min=0,
        max=1,
        instant=True,
        thresholds=[(None, "red"), (0.8, "orange"), (0.95, "green")],
        options={
            "orientation": "horizontal",
            "displayMode": "gradient",
            "reduceOptions": {"calcs": ["lastNotNull"]},
        },
    )


def noc() -> dict[str, Any]:
    """NOC overview: per commune and operator, devices up, open problems, worst sites."""
    dev = f"camnet_device:up{{{SEL}}}"
    stat = {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "background", "graphMode": "none"}
    return dashboard(
        "camnet-noc",
        "camnet — Tổng quan NOC / NOC overview",
        "Cameras and access points of the three communes: what is up, what is wrong, where.",
        [
            [
                Panel(
                    "stat",
                    "Camera hoạt động / Cameras up",
                    [
                        (f"sum(camnet_camera_up{{{SEL}}})", "up"),
                        (f"count(camnet_camera_up{{{SEL}}})", "total"),
                    ],
                    w=5,
                    h=5,
                    instant=True,
                    options=stat,
                ),
                Panel(
                    "stat",
                    "WiFi hoạt động / APs up",
                    [
                        (f"sum(camnet_ap_up{{{SEL}}})", "up"),
                        (f"count(camnet_ap_up{{{SEL}}})", "total"),
                    ],
                    w=5,
                    h=5,
                    instant=True,
                    options=stat,
                ),
                Panel(
                    "stat",
                    "Điểm mất kết nối / Sites down",
                    [
                        (f"sum(camnet_site:down{{{SEL}}})", "sites"),
                    ],
                    w=4,
                    h=5,
                    instant=True,
                    options=stat,
                    thresholds=[(None, "green"), (1, "red")],
                ),
                Panel(
                    "stat",
                    "Sự cố hình ảnh đang mở / Open camera problems",
                    [
                        (f"sum(camnet_camera_problem{{{SEL}}})", "problems"),
                    ],
                    w=5,
                    h=5,
                    instant=True,
                    options=stat,
                    thresholds=[(None, "green"), (1, "orange")],
                ),
                Panel(
                    "stat",
                    "Cảnh báo đang phát / Alerts firing",
                    [
                        (f'count(ALERTS{{alertstate="firing", {SEL}}}) or vector(0)', "firing"),
                    ],
                    w=5,
                    h=5,
                    instant=True,
                    options=stat,
                    thresholds=[(None, "green"), (1, "red")],
                ),
            ],
            [
                up_share_by("commune", "xã", "commune", dev),
                up_share_by("operator", "nhà mạng", "operator", dev),
                Panel(
                    "piechart",
                    "Sự cố theo loại / Open problems by type",
                    [
                        (f"sum by (problem) (camnet_camera_problem{{{SEL}}})", "{{problem}}"),
                    ],
                    w=8,
                    h=7,
                    instant=True,
                    options={
                        "reduceOptions": {"calcs": ["lastNotNull"]},
                        "legend": {"displayMode": "table", "placement": "right", "values": ["value"]},
                    },
                ),
            ],
            [
                Panel(
                    "table",
                    "Điểm kém nhất (24 giờ) / Worst sites (availability over 24 h)",
                    [
                        (
                            f"bottomk(10, avg_over_time(camnet_site:devices_up:count{{{SEL}}}[24h])"
                            f" / camnet_site:devices:count{{{SEL}}})",
                            "",
                        ),
                    ],
                    w=12,
                    h=9,
                    unit="percentunit",
                    instant=True,
                    thresholds=[(None, "red"), (0.9, "orange"), (0.99, "green")],
                    description="Share of the site's devices that answered, averaged over the last 24 hours.",
                ),
                Panel(
                    "timeseries",
                    "Thiết bị hoạt động theo xã / Devices up by commune",
                    [
                        (f"sum by (commune) ({dev})", "{{commune}}"),
                    ],
                    w=12,
                    h=9,
                ),
            ],
            [
                Panel(
                    "table",
                    "Cảnh báo đang phát / Firing alerts",
                    [
                        (
                            "sum by (alertname, commune, site, severity) "
                            f'(ALERTS{{alertstate="firing", {SEL}}}) '
                            "or on () vector(0)",
                            "",
                        ),
                    ],
                    w=24,
                    h=8,
                    instant=True,
                    description="One row per firing alert (a single 0 row when none fires).",
                ),
            ],
        ],
        [],
    )


def cameras() -> dict[str, Any]:
    """Camera wall: each camera's state and problem, time to first frame, clock, picture metrics."""
    cam = f'{SEL}, camera=~"$camera"'
    stat = {
        "reduceOptions": {"calcs": ["lastNotNull"]},
        "colorMode": "background",
        "graphMode": "none",
        "textMode": "value_and_name",
        "orientation": "auto",
    }
    return dashboard(
        "camnet-cameras",
        "camnet — Tường camera / Camera wall",
        "Every camera: does it give a picture, is the picture usable, how fast, is its clock right.",
        [
            [
                Panel(
                    "stat",
                    "Camera",
                    [(f"camnet_camera_up{{{cam}}}", "{{camera}}")],
                    w=24,
                    h=7,
                    instant=True,
                    mappings=up_mapping("CÓ HÌNH", "MẤT HÌNH"),
                    options=stat,
                    thresholds=[(None, "red"), (1, "green")],
                ),
            ],
            [
                Panel(
                    "state-timeline",
                    "Trạng thái / State over time",
                    [
                        (f"camnet_camera_up{{{cam}}}", "{{camera}}"),
                    ],
                    w=12,
                    h=10,
                    mappings=up_mapping("OK", "DOWN"),
                    thresholds=[(None, "red"), (1, "green")],
                    options={"showValue": "never", "mergeValues": True},
                ),
                Panel(
                    "table",
                    "Sự cố đang mở / Open problems per camera",
                    [
                        (f"sum by (camera, site, problem) (camnet_camera_problem{{{cam}}})", ""),
                    ],
                    w=12,
                    h=10,
                    instant=True,
                    thresholds=[(None, "green"), (1, "red")],
                    description="1 = the problem is present now (unreachable, auth_failed, no_stream, "
                    "black, frozen, blurred, moved, dark, clock_drift).",
                ),
            ],
            [
                Panel(
                    "timeseries",
                    "Thời gian ra hình đầu tiên / Time to first frame",
                    [
                        (f"camnet_camera_time_to_first_frame_seconds{{{cam}}}", "{{camera}}"),
                    ],
                    w=12,
                    h=8,
                    unit="s",
                ),
                Panel(
                    "timeseries",
                    "Lệch đồng hồ / Clock offset",
                    [
                        (f"camnet_camera_clock_offset_seconds{{{cam}}}", "{{camera}}"),
                    ],
                    w=12,
                    h=8,
                    unit="s",
                ),
            ],
            [
                Panel(
                    "timeseries",
                    "Độ sáng / Brightness (mean luma)",
                    [
                        (f"camnet_camera_brightness_ratio{{{cam}}}", "{{camera}}"),
                    ],
                    w=8,
                    h=8,
                    unit="percentunit",
                    min=0,
                    max=1,
                ),
                Panel(
                    "timeseries",
                    "Độ nét / Sharpness (Laplacian variance)",
                    [
                        (f"camnet_camera_sharpness{{{cam}}}", "{{camera}}"),
                    ],
                    w=8,
                    h=8,
                ),
                Panel(
                    "state-timeline",
                    "ONVIF",
                    [(f"camnet_camera_onvif_up{{{cam}}}", "{{camera}}")],
                    w=8,
                    h=8,
                    mappings=up_mapping("OK", "DOWN"),
                    thresholds=[(None, "red"), (1, "green")],
                    options={"showValue": "never", "mergeValues": True},
                ),
            ],
            [
                Panel(
                    "timeseries",
                    "Mạng tới camera / Ping RTT",
                    [
                        (f"camnet_ping_rtt_seconds{{{cam}}}", "{{camera}}"),
                    ],
                    w=12,
                    h=8,
                    unit="s",
                ),
                Panel(
                    "timeseries",
                    "Mất gói / Ping loss",
                    [
                        (f"camnet_ping_loss_ratio{{{cam}}}", "{{camera}}"),
                    ],
                    w=12,
                    h=8,
                    unit="percentunit",
                    min=0,
                    max=1,
                ),
            ],
        ],
        [variable("camera", "Camera", f"label_values(camnet_camera_up{{{SEL}}}, camera)", ".+")],
    )


def aps() -> dict[str, Any]:
    """Access-point detail: traffic, clients, reboots, RTT and loss."""
    ap = f'{SEL}, ap=~"$ap"'
    return dashboard(
        "camnet-aps",
        "camnet — Điểm phát WiFi / Access points",
        "The village halls' WiFi access points: answering, traffic, clients, reboots, line quality.",
        [
            [
                Panel(
                    "state-timeline",
                    "Trạng thái / SNMP up",
                    [(f"camnet_ap_up{{{ap}}}", "{{ap}}")],
                    w=12,
                    h=10,
                    mappings=up_mapping("OK", "DOWN"),
                    thresholds=[(None, "red"), (1, "green")],
                    options={"showValue": "never", "mergeValues": True},
                ),
                # Two tables: one panel-wide unit, and two instant queries are two frames.
                Panel(
                    "table",
                    "Thời gian chạy / Uptime",
                    [(f"time() - camnet_ap_boot_time_seconds{{{ap}}}", "uptime")],
                    w=6,
                    h=10,
                    instant=True,
                    unit="s",
                ),
                Panel(
                    "table",
                    "Số lần khởi động lại / Reboots (24 h)",
                    # 0, not an empty cell, for an AP without a reboot series yet (a new AP,
                    # or the first minutes after Prometheus started)
                    [(f"ceil(changes(camnet_ap:rebooted{{{ap}}}[24h]) / 2)"
                      f" or on (ap) (0 * camnet_ap_up{{{ap}}})", "reboots")],
                    w=6,
                    h=10,
                    instant=True,
                ),
            ],
            [
                Panel(
                    "timeseries",
                    "Lưu lượng nhận / Receive traffic",
                    [
                        (
                            f"sum by (ap) (rate(camnet_ap_interface_receive_bytes_total{{{ap}}}[{RS}])) * 8",
                            "{{ap}}",
                        ),
                    ],
                    w=12,
                    h=8,
                    unit="bps",
                ),
                Panel(
                    "timeseries",
                    "Lưu lượng gửi / Transmit traffic",
                    [
                        (
                            f"sum by (ap) (rate(camnet_ap_interface_transmit_bytes_total{{{ap}}}[{RS}])) * 8",
                            "{{ap}}",
                        ),
                    ],
                    w=12,
                    h=8,
                    unit="bps",
                ),
            ],
            [
                Panel(
                    "timeseries",
                    "Người dùng WiFi / WiFi clients",
                    [
                        (f"sum by (ap, radio) (camnet_ap_wifi_clients{{{ap}}})", "{{ap}} {{radio}}"),
                    ],
                    w=12,
                    h=8,
                ),
                Panel(
                    "timeseries",
                    "Lỗi giao diện / Interface errors",
                    [
                        (
                            f"sum by (ap) (rate(camnet_ap_interface_errors_total{{{ap}}}[{RS}]))",
                            "{{ap}}",
                        ),
                    ],
                    w=12,
                    h=8,
                    unit="pps",
                ),
            ],
            [
                Panel(
                    "timeseries",
                    "Độ trễ / Ping RTT",
                    [(f"camnet_ping_rtt_seconds{{{ap}}}", "{{ap}}")],
                    w=12,
                    h=8,
                    unit="s",
                ),
                Panel(
                    "timeseries",
                    "Mất gói (trung bình 10 phút) / Ping loss, 10 min average",
                    [
                        (f"avg_over_time(camnet_ping_loss_ratio{{{ap}}}[10m])", "{{ap}}"),
                    ],
                    w=12,
                    h=8,
                    unit="percentunit",
                    min=0,
                    max=1,
                    thresholds=[(None, "green"), (0.5, "red")],
                    options={"thresholdsStyle": {"mode": "line"}},
                    description="APHighLoss pages above 50 % for 5 minutes; 30 % is a lossy, working line.",
                ),
            ],
            [
                Panel(
                    "timeseries",
                    "CPU",
                    [(f"camnet_ap_cpu_usage_ratio{{{ap}}}", "{{ap}}")],
                    w=12,
                    h=8,
                    unit="percentunit",
                    min=0,
                    max=1,
                ),
                Panel(
                    "timeseries",
                    "Bộ nhớ / Memory",
                    [(f"camnet_ap_memory_usage_ratio{{{ap}}}", "{{ap}}")],
                    w=12,
                    h=8,
                    unit="percentunit",
                    min=0,
                    max=1,
                ),
            ],
        ],
        [variable("ap", "WiFi AP", f"label_values(camnet_ap_up{{{SEL}}}, ap)", ".+")],
    )


def health() -> dict[str, Any]:
    """camnet's own health: scraped, checks on time, check durations and errors, config."""
    return dashboard(
        "camnet-health",
        "camnet — Tình trạng hệ thống giám sát / camnet health",
        "Is the monitor itself working: scraped, checking on time, errors by reason, config reloads.",
        [
            [
                Panel(
                    "stat",
                    "camnet được đọc / camnet scraped",
                    [('up{job="camnet"}', "{{instance}}")],
                    w=6,
                    h=5,
                    instant=True,
                    mappings=up_mapping("OK", "KHÔNG / NO"),
                    thresholds=[(None, "red"), (1, "green")],
                    options={"colorMode": "background"},
                ),
                Panel(
                    "stat",
                    "Cấu hình nạp lại / Last reload OK",
                    [
                        ("camnet_config_last_reload_successful", "{{instance}}"),
                    ],
                    w=6,
                    h=5,
                    instant=True,
                    mappings=up_mapping("OK", "LỖI / FAILED"),
                    thresholds=[(None, "red"), (1, "green")],
                    options={"colorMode": "background"},
                ),
                Panel(
                    "stat",
                    "Phiên bản / Version",
                    [("camnet_build_info", "{{version}}")],
                    w=6,
                    h=5,
                    instant=True,
                    options={"textMode": "name", "colorMode": "none"},
                ),
                Panel(
                    "stat",
                    "Thiết bị được giám sát / Devices monitored",
                    [("count(camnet_device:up)", "devices")],
                    w=6,
                    h=5,
                    instant=True,
                    options={"colorMode": "none"},
                ),
            ],
            [
                Panel(
                    "timeseries",
                    "Thời gian kiểm tra p95 / Check duration p95",
                    [
                        (
                            "histogram_quantile(0.95, sum by (le, kind, check) "
                            f"(rate(camnet_check_duration_seconds_bucket[{RI}])))",
                            "{{kind}} {{check}}",
                        ),
                    ],
                    w=12,
                    h=8,
                    unit="s",
                ),
                Panel(
                    "timeseries",
                    "Độ trễ lịch kiểm tra / Scheduler lag p99",
                    [
                        (
                            "histogram_quantile(0.99, sum by (le) "
                            f"(rate(camnet_scheduler_lag_seconds_bucket[{RI}])))",
                            "p99",
                        ),
                    ],
                    w=12,
                    h=8,
                    unit="s",
                    description="How late checks start; above 1 s something blocks the loop.",
                ),
            ],
            [
                Panel(
                    "timeseries",
                    "Lỗi kiểm tra theo lý do / Check errors by reason",
                    [
                        (
                            f"sum by (kind, check, reason) (rate(camnet_check_errors_total[{RI}]))",
                            "{{kind}} {{check}} {{reason}}",
                        ),
                    ],
                    w=12,
                    h=8,
                    unit="ops",
                ),
                Panel(
                    "timeseries",
                    "Số lần kiểm tra / Checks per second",
                    [
                        (
                            f"sum by (kind, check) (rate(camnet_check_duration_seconds_count[{RI}]))",
                            "{{kind}} {{check}}",
                        ),
                    ],
                    w=12,
                    h=8,
                    unit="ops",
                ),
            ],
            [
                Panel(
                    "timeseries",
                    "Thời gian đọc số liệu / Scrape duration",
                    [
                        ('scrape_duration_seconds{job="camnet"}', "{{instance}}"),
                    ],
                    w=12,
                    h=8,
                    unit="s",
                ),
                Panel(
                    "timeseries",
                    "Số chuỗi số liệu / Series per scrape",
                    [
                        ('scrape_samples_scraped{job="camnet"}', "{{instance}}"),
                    ],
                    w=12,
                    h=8,
                ),
            ],
        ],
        [],
    )


DASHBOARDS = {
    "camnet-noc.json": noc,
    "camnet-cameras.json": cameras,
    "camnet-aps.json": aps,
    "camnet-health.json": health,
}


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {
        name: json.dumps(build(), indent=2, ensure_ascii=False) + "\n" for name, build in DASHBOARDS.items()
    }


if __name__ == "__main__":
    for name, text in render().items():
        (HERE / name).write_text(text, encoding="utf-8")
        sys.stdout.write(f"wrote {HERE / name}\n")
