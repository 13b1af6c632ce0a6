"""ICMP echo with icmplib: real pings over loopback, and in network namespaces the test creates."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from probes.base import CheckResult, Target
from probes.ping import PingSettings, probe_ping, unprivileged_allowed

ROOT = Path(__file__).resolve().parent.parent

# Runs one probe inside a namespace and prints its result as JSON.
IN_NAMESPACE = """
import asyncio, json, sys
sys.path.insert(0, sys.argv[1])
from probes.base import Target
from probes.ping import PingSettings, probe_ping
async def main():
    loop = asyncio.get_running_loop()
    r = await probe_ping(Target("ap-ns", "ap", "127.0.0.1", {}), PingSettings(mode=sys.argv[2]),
                         {}, loop.time() + 5)
    print(json.dumps({"success": r.success, "reason": r.reason, "message": r.message,
                      "samples": {s.name: s.value for s in r.samples}}))
asyncio.run(main())
"""


async def _ping(address: str = "127.0.11.40", **settings: Any) -> CheckResult:
    loop = asyncio.get_running_loop()
    return await probe_ping(Target("ap-ping", "ap", address, {}), PingSettings(**settings), {},
                            loop.time() + 5)


def _values(result: CheckResult) -> dict[str, float]:
    return {s.name: s.value for s in result.samples}


async def test_loopback_answers() -> None:
    if os.geteuid() != 0 and not unprivileged_allowed():
        pytest.skip("no ICMP here: neither root nor net.ipv4.ping_group_range")
    result = await _ping(count=3)
    assert result.success, result.message
    values = _values(result)
    assert values["camnet_ping_up"] == 1
    assert values["camnet_ping_loss_ratio"] == 0
    assert values["camnet_ping_rtt_seconds"] > 0
    assert result.facts["sent"] == 3 and result.facts["received"] == 3


async def test_unprivileged_mode_says_why_it_cannot_run() -> None:
    result = await _ping(mode="unprivileged")
    if unprivileged_allowed():
        assert result.success, result.message
    else:
        assert result.reason == "not_permitted"
        assert "ping_group_range" in result.message
        assert "camnet_ping_up" not in _values(result)  # not a verdict about the device


def test_ping_group_range_parsing(tmp_path: Path) -> None:
    f = tmp_path / "range"
    f.write_text("0\t2147483647\n")
    assert unprivileged_allowed(f)
    f.write_text("1\t0\n")  # the kernel default: nobody
    assert not unprivileged_allowed(f)
    f.write_text("garbage")
    assert not unprivileged_allowed(f)
    assert not unprivileged_allowed(tmp_path / "missing")


def _in_namespace(setup: str, mode: str) -> dict[str, Any]:
    if not shutil.which("unshare") or os.geteuid() != 0:
        pytest.skip("needs root and unshare to create a network namespace")
    script = f"{setup} exec {sys.executable} -c '{IN_NAMESPACE}' {ROOT} {mode}"
    out = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, text=True,
                         timeout=30, check=False)
    if out.returncode != 0 and "unshare" in out.stderr:
        pytest.skip(f"cannot create a network namespace: {out.stderr.strip()}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_dead_line_in_a_namespace_without_network() -> None:
    # A new namespace's loopback is down: nothing can be sent, nothing answers.
    result = _in_namespace("", "privileged")
    assert result["reason"] == "unreachable"
    assert result["samples"]["camnet_ping_up"] == 0
    assert result["samples"]["camnet_ping_loss_ratio"] == 1


def test_unprivileged_icmp_where_the_namespace_allows_it() -> None:
    if not (shutil.which("ip") and shutil.which("sysctl")):
        pytest.skip("needs ip (iproute2) and sysctl (procps)")
    setup = "ip link set lo up && sysctl -q -w net.ipv4.ping_group_range='0 2147483647' &&"
    result = _in_namespace(setup, "unprivileged")
    assert result["success"], result["message"]
    assert result["samples"]["camnet_ping_up"] == 1
