"""The access point's verdict: a dead line and a dead AP are told apart."""

from __future__ import annotations

import pytest

from probes.ap import verdict
from probes.base import CheckResult, Status


def _snmp(success: bool, reason: str = "", answered: bool | None = None, **facts: object) -> CheckResult:
    r = CheckResult("snmp", success=success, reason=reason)
    r.add("camnet_ap_up", 1 if (success if answered is None else answered) else 0)
    r.facts.update(facts)
    return r


def _ping(success: bool, reason: str = "", loss: float = 0.0) -> CheckResult:
    r = CheckResult("ping", success=success, reason=reason)
    r.facts["loss"] = loss
    return r


@pytest.mark.parametrize(
    ("results", "status", "reason"),
    [
        ({}, Status.UNKNOWN, "not checked yet"),
        ({"snmp": _snmp(True), "ping": _ping(True)}, Status.OK, None),
        # No echo, no SNMP: the line or the power is down.
        ({"snmp": _snmp(False, "timeout"), "ping": _ping(False, "unreachable", 1.0)},
         Status.CRITICAL, "down: no ping reply and snmp timeout"),
        # Echo but no SNMP: the AP is there, its agent or our credentials are not.
        ({"snmp": _snmp(False, "auth_failed"), "ping": _ping(True)},
         Status.WARNING, "snmp: auth_failed (the AP answers ping)"),
        ({"snmp": _snmp(False, "no_such_object", answered=True), "ping": _ping(True)},
         Status.WARNING, "snmp: no_such_object (the agent answers)"),
        ({"snmp": _snmp(True, "oid_not_increasing"), "ping": _ping(True)},
         Status.WARNING, "snmp: oid_not_increasing"),
        # SNMP fine but ICMP filtered somewhere on the way.
        ({"snmp": _snmp(True), "ping": _ping(False, "unreachable", 1.0)},
         Status.WARNING, "ping: unreachable"),
        ({"snmp": _snmp(True), "ping": _ping(True, loss=1 / 3)},
         Status.WARNING, "ping: 33% packet loss"),
        ({"snmp": _snmp(True, rebooted=True), "ping": _ping(True)},
         Status.WARNING, "rebooted since the last check"),
        # Ping not permitted on this host says nothing about the AP.
        ({"snmp": _snmp(True), "ping": _ping(False, "not_permitted")}, Status.OK,
         "ping: not permitted on this host (see ping_group_range)"),
        ({"snmp": _snmp(False, "timeout"), "ping": _ping(False, "not_permitted")},
         Status.CRITICAL, "snmp: timeout"),
        ({"ping": _ping(False, "unreachable", 1.0)}, Status.CRITICAL, "ping: unreachable"),
    ],
)
def test_verdict(results: dict[str, CheckResult], status: Status, reason: str | None) -> None:
    got, reasons, samples = verdict(results)
    assert got == status
    if reason is None:
        assert reasons == []
    else:
        assert reason in reasons
    assert samples == []
