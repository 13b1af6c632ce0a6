"""An access point's verdict from its latest check results (SNMP, ping)."""

from __future__ import annotations

from probes.base import CheckResult, MetricDef, Sample, Status

METRICS: dict[str, MetricDef] = {}


def verdict(results: dict[str, CheckResult]) -> tuple[Status, list[str], list[Sample]]:
    """Combine the latest check results into status, reasons and verdict samples."""
    if not results:
        return Status.UNKNOWN, ["not checked yet"], []
    snmp = results.get("snmp")
    ping = results.get("ping")
    reasons: list[str] = []
    if snmp is not None and not snmp.success:
        reasons.append(f"snmp: {snmp.reason or 'failed'}")
    if ping is not None and not ping.success:
        reasons.append(f"ping: {ping.reason or 'failed'}")
    if snmp is not None and not snmp.success:
        return Status.CRITICAL, reasons, []
    if reasons:
        return Status.WARNING, reasons, []
    return Status.OK, reasons, []
