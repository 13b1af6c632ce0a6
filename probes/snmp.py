"""SNMP check of an access point: system group, interfaces, WiFi clients, CPU and memory."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from probes.base import CheckResult, CheckSettings, MetricDef, Target

METRICS: dict[str, MetricDef] = {
    "camnet_ap_up": MetricDef("gauge", "1 when the SNMP agent answered in the last check"),
}


class SnmpSettings(CheckSettings):
    """What to walk (module) and how (retries, bulk size); credentials live in auths."""

    module: str = Field(default="auto", description="device profile, or auto from sysObjectID")
    port: int = Field(default=161, ge=1, le=65535)
    retries: int = Field(default=1, ge=0, le=10)
    max_repetitions: int = Field(default=25, ge=1, le=200)
    bulk: bool = True
    mode: Literal["fast", "pysnmp"] = "fast"
    concurrency: int = Field(default=64, ge=1, le=1024)


async def probe_snmp(
    target: Target, settings: SnmpSettings, state: dict[str, Any], deadline: float
) -> CheckResult:
    """Poll the access point's SNMP agent once."""
    raise NotImplementedError  # filled by the access-point issue (#4)
