"""ICMP echo check (icmplib, unprivileged where the kernel allows)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, Literal

from icmplib import async_ping
from icmplib.exceptions import ICMPLibError, NameLookupError, SocketPermissionError
from pydantic import Field

from probes.base import CheckResult, CheckSettings, Duration, MetricDef, Target

METRICS: dict[str, MetricDef] = {
    "camnet_ping_up": MetricDef("gauge", "1 when the device answered ICMP echo in the last check"),
    "camnet_ping_rtt_seconds": MetricDef("gauge", "Mean round-trip time of the echo replies"),
    "camnet_ping_loss_ratio": MetricDef("gauge", "Share of echo requests that got no reply (0-1)"),
}

PING_GROUP_RANGE = Path("/proc/sys/net/ipv4/ping_group_range")


class PingSettings(CheckSettings):
    """How many echo requests to send and how fast."""

    count: int = Field(default=3, ge=1, le=100)
    packet_interval: Duration = 0.2
    reply_timeout: Duration = Field(default=1.0, description="wait for the last reply")
    mode: Literal["auto", "unprivileged", "privileged"] = Field(
        default="auto",
        description="auto: unprivileged ICMP sockets where ping_group_range allows, else raw (root)",
    )
    concurrency: int = Field(default=64, ge=1, le=1024)


def unprivileged_allowed(path: Path = PING_GROUP_RANGE) -> bool:
    """True when net.ipv4.ping_group_range covers one of this process's groups."""
    try:
        low, high = (int(x) for x in path.read_text().split())
    except (OSError, ValueError):
        return False
    return any(low <= gid <= high for gid in {os.getegid(), *os.getgroups()})


def _privileged(settings: PingSettings) -> bool:
    if settings.mode != "auto":
        return settings.mode == "privileged"
    return not unprivileged_allowed()


def _permission_message(privileged: bool) -> str:
    if privileged:
        return ("raw ICMP sockets need root or CAP_NET_RAW; or allow unprivileged ICMP for this "
                f"group: sysctl -w net.ipv4.ping_group_range='0 {os.getegid()}'")
    return (f"unprivileged ICMP is not allowed for group {os.getegid()} "
            f"(net.ipv4.ping_group_range is '{_range_text()}'); widen it with "
            f"sysctl -w net.ipv4.ping_group_range='0 {os.getegid()}' or run with CAP_NET_RAW")


def _range_text() -> str:
    try:
        return " ".join(PING_GROUP_RANGE.read_text().split())
    except OSError:
        return "unknown"


async def probe_ping(
    target: Target, settings: PingSettings, state: dict[str, Any], deadline: float
) -> CheckResult:
    """Send echo requests to the device and report reachability, RTT and loss."""
    result = CheckResult("ping", success=False)
    privileged = _privileged(settings)
    loop = asyncio.get_running_loop()
    # Leave the replies time to arrive before the check's own deadline.
    wait = max(0.05, min(settings.reply_timeout, deadline - loop.time() - 0.05))
    try:
        async with asyncio.timeout_at(deadline):
            host = await async_ping(target.address, count=settings.count,
                                    interval=settings.packet_interval, timeout=wait,
                                    privileged=privileged)
    except SocketPermissionError:
        result.reason = "not_permitted"
        result.message = _permission_message(privileged)
        return result
    except NameLookupError:
        result.reason = "unreachable"
        result.message = f"cannot resolve {target.address!r}"
        result.add("camnet_ping_up", 0)
        return result
    except TimeoutError:
        result.reason = "timeout"
        result.message = "check deadline reached before the replies"
        result.add("camnet_ping_up", 0)
        return result
    except (ICMPLibError, OSError) as exc:
        # e.g. "network unreachable" from the kernel: no route to the device.
        result.reason = "unreachable"
        result.message = f"cannot send echo requests: {exc}"
        result.add("camnet_ping_up", 0)
        result.add("camnet_ping_loss_ratio", 1.0)
        return result
    alive = host.packets_received > 0
    # icmplib reports loss 0 when nothing could be sent (e.g. no route): that is total loss.
    loss = host.packet_loss if host.packets_sent else 1.0
    result.success = alive
    result.add("camnet_ping_up", 1 if alive else 0)
    result.add("camnet_ping_loss_ratio", loss)
    if alive:
        result.add("camnet_ping_rtt_seconds", host.avg_rtt / 1000)
    else:
        result.reason = "unreachable"
        result.message = (f"no echo reply to {host.packets_sent} requests" if host.packets_sent
                          else "echo requests could not be sent (no route to the device?)")
    result.facts.update(
        sent=host.packets_sent, received=host.packets_received, loss=loss,
        rtt_ms=host.avg_rtt if alive else None, privileged=privileged,
    )
    if state.get("alive") is not None and state["alive"] != alive:
        result.debug("echo replies are back" if alive else "echo replies stopped")
    state["alive"] = alive
    return result
