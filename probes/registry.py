"""The probers registry: one async prober per protocol, each a `probes.base.Prober`."""

from __future__ import annotations

from collections.abc import Callable

from probes import ap, camera, onvif, ping, rtsp, snmp
from probes.base import CheckResult, MetricDef, Prober, Sample, Status

PROBERS: dict[str, Prober] = {
    "ping": ping.probe_ping,
    "snmp": snmp.probe_snmp,
    "onvif": onvif.probe_onvif,
    "rtsp": rtsp.probe_rtsp,
}

# Which checks a device of each kind gets, in the order a full check reports them.
CHECKS_BY_KIND: dict[str, tuple[str, ...]] = {
    "camera": ("ping", "onvif", "rtsp"),
    "ap": ("ping", "snmp"),
}

Verdict = Callable[[dict[str, CheckResult]], tuple[Status, list[str], list[Sample]]]
VERDICTS: dict[str, Verdict] = {"camera": camera.verdict, "ap": ap.verdict}

METRICS: dict[str, MetricDef] = {}
for _module in (ping, snmp, onvif, rtsp, camera, ap):
    METRICS.update(_module.METRICS)

__all__ = ["CHECKS_BY_KIND", "METRICS", "PROBERS", "VERDICTS", "CheckResult", "Sample", "Status",
           "Verdict"]
