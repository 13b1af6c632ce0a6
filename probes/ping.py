"""ICMP echo check (icmplib, unprivileged where the kernel allows)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from probes.base import CheckResult, CheckSettings, Duration, MetricDef, Target

METRICS: dict[str, MetricDef] = {
    "camnet_ping_up": MetricDef("gauge", "1 when the device answered ICMP echo in the last check"),
    "camnet_ping_rtt_seconds": MetricDef("gauge", "Mean round-trip time of the echo replies"),
    "camnet_ping_loss_ratio": MetricDef("gauge", "Share of echo requests that got no reply (0-1)"),
}


class PingSettings(CheckSettings):
    """How many echo requests to send and how fast."""

    count: int = Field(default=3, ge=1, le=100)
    packet_interval: Duration = 0.2
    concurrency: int = Field(default=64, ge=1, le=1024)


async def probe_ping(
    target: Target, settings: PingSettings, state: dict[str, Any], deadline: float
) -> CheckResult:
    """Send echo requests to the device and report reachability, RTT and loss."""
    raise NotImplementedError  # filled by the access-point issue (#4)
