"""Grafana dashboards: valid JSON, unique ids, the template variables, PromQL that parses and
returns data from a real Prometheus (here scraping a synthetic camnet; the e2e test does the
same against the real daemon and lab)."""

from __future__ import annotations

import http.server
import json
import re
import runpy
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.services import Prometheus, start_prometheus
from probes.camera import PROBLEMS

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = ROOT / "dashboards"
PROVISIONING = DASHBOARDS / "provisioning"
HOST = "127.0.14.3"  # this test file's loopback address (helper range 127.0.14.0/24)


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(DASHBOARDS.glob("*.json"))}


def panel_exprs(dash: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) for every target of every panel."""
    return [(p["title"], t["expr"]) for p in dash["panels"] for t in p.get("targets", [])]


def all_values() -> dict[str, str]:
    """Each template variable's value for 'All' (its allValue), as the dashboards define it."""
    values: dict[str, str] = {}
    for name, dash in dashboards().items():
        for v in dash["templating"]["list"]:
            assert values.get(v["name"], v["allValue"]) == v["allValue"], f"{name}: ${v['name']}"
            values[v["name"]] = v["allValue"]
    return values


def substitute(expr: str, rate_interval: str = "1m") -> str:
    """Grafana's variables replaced as Grafana does for 'All' (the variable's allValue)."""
    expr = (
        expr.replace("$__rate_interval", rate_interval)
        .replace("$__range", "1h")
        .replace("$__interval", "15s")
    )
    values = all_values()
    return re.sub(r"\$(commune|operator|site|camera|ap)\b", lambda m: values[m[1]], expr)


def all_exprs() -> list[tuple[str, str, str]]:
    return [(name, title, expr) for name, d in dashboards().items() for title, expr in panel_exprs(d)]


def test_the_four_dashboards_exist_and_json_is_generated() -> None:
    rendered = runpy.run_path(str(DASHBOARDS / "generate.py"))["render"]()
    assert set(rendered) == {
        "camnet-noc.json",
        "camnet-cameras.json",
        "camnet-aps.json",
        "camnet-health.json",
    }
    for name, text in rendered.items():
        assert (DASHBOARDS / name).read_text(encoding="utf-8") == text, "run dashboards/generate.py"


def test_ids_variables_and_datasource() -> None:
    ds = yaml.safe_load((PROVISIONING / "datasources" / "camnet.yml").read_text(encoding="utf-8"))
    uid = ds["datasources"][0]["uid"]
    uids = set()
    for name, dash in dashboards().items():
        assert dash["uid"] not in uids
        uids.add(dash["uid"])
        ids = [p["id"] for p in dash["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        variables = {v["name"] for v in dash["templating"]["list"]}
        assert {"commune", "site", "operator"} <= variables, name
        for p in dash["panels"]:
            assert p["datasource"]["uid"] == uid
            assert p["targets"], f"{name}: panel {p['title']!r} has no query"
            for t in p["targets"]:
                assert t["expr"].strip() and t["datasource"]["uid"] == uid
            pos = p["gridPos"]
            assert pos["x"] + pos["w"] <= 24
        for v in dash["templating"]["list"]:
            assert v["datasource"]["uid"] == uid


def test_panels_do_not_overlap() -> None:
    for name, dash in dashboards().items():
        cells: set[tuple[int, int]] = set()
        for p in dash["panels"]:
            g = p["gridPos"]
            mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            assert not cells & mine, f"{name}: {p['title']!r} overlaps"
            cells |= mine


def test_per_device_panels_filter_by_the_variables() -> None:
    for name, title, expr in all_exprs():
        if re.search(r"camnet_(camera|ap|ping|site|device)", expr) and "camnet_device:up)" not in expr:
            assert "$commune" in expr and "$site" in expr and "$operator" in expr, f"{name}: {title}: {expr}"


def test_provisioning_files() -> None:
    prov = yaml.safe_load((PROVISIONING / "dashboards" / "camnet.yml").read_text(encoding="utf-8"))
    provider = prov["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"]
    ds = yaml.safe_load((PROVISIONING / "datasources" / "camnet.yml").read_text(encoding="utf-8"))
    assert ds["datasources"][0]["type"] == "prometheus"
    assert ds["datasources"][0]["url"].startswith("http://127.0.0.1:")


def promtool_parse(exprs: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Check PromQL syntax with promtool: each expression as a recording rule."""
    rules = {
        "groups": [
            {
                "name": "dashboards",
                "rules": [{"record": f"dashboard:panel_{i}", "expr": e} for i, e in enumerate(exprs)],
            }
        ]
    }
    path = tmp_path / "panels.rules.yml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    return subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_every_expression_parses(tmp_path: Path) -> None:
    exprs = [substitute(e) for _, _, e in all_exprs()]
    res = promtool_parse(exprs, tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in res.stdout
    bad = promtool_parse(["sum by (site (camnet_camera_up)"], tmp_path)
    assert bad.returncode != 0


# ---- every panel returns data from a real Prometheus scraping a synthetic camnet -------------

SITES = [("daron", "daron-01", "vnpt"), ("tutra", "tutra-03", "viettel")]


def synthetic_metrics(t: float) -> str:
    """camnet's exposition (names and labels as in CONTRACT.md) for two sites, counters moving with t."""
    out: list[str] = []

    def add(name: str, labels: dict[str, str], value: float) -> None:
        inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
        out.append(f"{name}{{{inner}}} {value}")

    for commune, site, operator in SITES:
        base = {"commune": commune, "site": site, "operator": operator}
        add("camnet_site_info", {**base, "site_name": f"Nhà văn hóa {site}"}, 1)
        cam = {**base, "camera": f"cam-{site}"}
        ap = {**base, "ap": f"ap-{site}"}
        add("camnet_camera_up", cam, 1)
        for p in PROBLEMS:
            add(
                "camnet_camera_problem",
                {**cam, "problem": p},
                1 if p == "frozen" and commune == "tutra" else 0,
            )
        for name, value in (
            ("camnet_camera_onvif_up", 1),
            ("camnet_camera_clock_offset_seconds", 0.4),
            ("camnet_camera_time_to_first_frame_seconds", 0.8),
            ("camnet_camera_brightness_ratio", 0.45),
            ("camnet_camera_sharpness", 310.0),
        ):
            add(name, cam, value)
        add("camnet_ap_up", ap, 1)
        add("camnet_ap_boot_time_seconds", ap, 1_700_000_000)
        add("camnet_ap_wifi_clients", {**ap, "radio": "2.4GHz"}, 7)
        add("camnet_ap_interface_receive_bytes_total", {**ap, "interface": "eth0"}, 1000 * t)
        add("camnet_ap_interface_transmit_bytes_total", {**ap, "interface": "eth0"}, 500 * t)
        add("camnet_ap_interface_errors_total", {**ap, "interface": "eth0", "direction": "in"}, int(t) // 10)
        add("camnet_ap_cpu_usage_ratio", ap, 0.2)
        add("camnet_ap_memory_usage_ratio", ap, 0.5)
        for dev in (cam, ap):
            add("camnet_ping_up", dev, 1)
            add("camnet_ping_rtt_seconds", dev, 0.012)
            add("camnet_ping_loss_ratio", dev, 0)
    n = int(t)
    for kind, check in (("camera", "rtsp"), ("ap", "snmp")):
        lab = {"kind": kind, "check": check}
        add("camnet_check_duration_seconds_bucket", {**lab, "le": "1.0"}, n)
        add("camnet_check_duration_seconds_bucket", {**lab, "le": "+Inf"}, n)
        add("camnet_check_duration_seconds_count", lab, n)
        add("camnet_check_duration_seconds_sum", lab, n * 0.3)
        add("camnet_check_errors_total", {**lab, "reason": "timeout"}, n // 5)
    add("camnet_scheduler_lag_seconds_bucket", {"le": "0.1"}, n)
    add("camnet_scheduler_lag_seconds_bucket", {"le": "+Inf"}, n)
    add("camnet_scheduler_lag_seconds_count", {}, n)
    add("camnet_scheduler_lag_seconds_sum", {}, n * 0.01)
    add("camnet_config_last_reload_successful", {}, 1)
    add("camnet_build_info", {"version": "0.1.0"}, 1)
    return "\n".join(out) + "\n"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = synthetic_metrics(time.time()).replace("{}", "").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def prometheus_on_synthetic(tmp_path: Path) -> Iterator[Prometheus]:
    server = http.server.ThreadingHTTPServer((HOST, 19830), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        prom = start_prometheus(tmp_path, f"{HOST}:19090", f"{HOST}:19830", None, "1s", "1s")
        try:
            yield prom
        finally:
            prom.stop()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus not installed")
def test_every_panel_returns_data_from_prometheus(prometheus_on_synthetic: Prometheus) -> None:
    prom = prometheus_on_synthetic
    exprs = all_exprs()
    missing: list[str] = []
    deadline = time.monotonic() + 60  # rates need a few scrapes, recording rules a few evaluations
    while time.monotonic() < deadline:
        missing = [f"{n}: {t}: {e}" for n, t, e in exprs if not prom.query(substitute(e, "10s"))]
        if not missing:
            break
        time.sleep(1)
    assert not missing, "panels without data:\n" + "\n".join(missing)
    # A panel whose legend names a device label shows only series that carry it: the ping
    # metrics exist for cameras and APs alike, and with camera=~".*" the camera wall's ping
    # panels also drew every AP, as unnamed lines (and the AP dashboard every camera).
    for name, dash in dashboards().items():
        for p in dash["panels"]:
            for t in p["targets"]:
                m = re.match(r"\{\{(camera|ap)\}\}", t["legendFormat"])
                if m:
                    got = prom.query(substitute(t["expr"], "10s"))
                    stray = [r["metric"] for r in got if not r["metric"].get(m[1])]
                    assert not stray, f"{name}: {p['title']}: series without {m[1]}: {stray}"
    # The variables' queries work too (Grafana's label_values over the same series).
    for label in ("commune", "site", "operator"):
        values = {r["metric"][label] for r in prom.query("camnet_site_info")}
        assert values == {s[{"commune": 0, "site": 1, "operator": 2}[label]] for s in SITES}
