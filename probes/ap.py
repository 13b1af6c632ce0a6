"""An access point's verdict from its latest check results (SNMP, ping)."""

from __future__ import annotations

from probes.base import CheckResult, MetricDef, Sample, Status

METRICS: dict[str, MetricDef] = {}

# Packet loss above this share makes a reachable AP "degraded" (the village's line is lossy).
LOSS_WARNING = 0.2


def _snmp_answered(snmp: CheckResult) -> bool:
    return any(s.name == "camnet_ap_up" and s.value == 1 for s in snmp.samples)


def verdict(results: dict[str, CheckResult]) -> tuple[Status, list[str], list[Sample]]:
    """Combine the latest check results into status, reasons and verdict samples.

    Ping and SNMP together tell a dead line from a dead AP: no echo and no SNMP answer is
    CRITICAL (line or power down); an AP that answers ping but not SNMP is reachable but its
    agent or credentials are broken (WARNING); loss or a reboot is WARNING too.
    """
    if not results:
        return Status.UNKNOWN, ["not checked yet"], []
    snmp = results.get("snmp")
    ping = results.get("ping")
    ping_ran = ping is not None and ping.reason != "not_permitted"
    ping_ok = ping is not None and ping.success
    status = Status.OK
    reasons: list[str] = []

    def worse(new: Status, reason: str) -> None:
        nonlocal status
        status = max(status, new)
        reasons.append(reason)

    if snmp is not None and not snmp.success:
        if _snmp_answered(snmp):
            worse(Status.WARNING, f"snmp: {snmp.reason or 'failed'} (the agent answers)")
        elif ping_ok:
            worse(Status.WARNING, f"snmp: {snmp.reason or 'failed'} (the AP answers ping)")
        elif ping_ran:
            worse(Status.CRITICAL, f"down: no ping reply and snmp {snmp.reason or 'failed'}")
        else:
            worse(Status.CRITICAL, f"snmp: {snmp.reason or 'failed'}")
    elif snmp is not None and snmp.reason:
        worse(Status.WARNING, f"snmp: {snmp.reason}")
    if snmp is not None and snmp.facts.get("rebooted"):
        worse(Status.WARNING, "rebooted since the last check")

    if ping is not None and ping.reason == "not_permitted":
        reasons.append("ping: not permitted on this host (see ping_group_range)")
    elif ping is not None and not ping.success and (snmp is None or snmp.success):
        worse(Status.WARNING if snmp is not None else Status.CRITICAL,
              f"ping: {ping.reason or 'no reply'}")
    elif ping is not None and ping.success:
        loss = float(ping.facts.get("loss") or 0.0)
        if loss >= LOSS_WARNING:
            worse(Status.WARNING, f"ping: {loss:.0%} packet loss")
    return status, reasons, []
