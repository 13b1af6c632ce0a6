"""camnet against the lab's live-moving SNMP agents (lab.snmp.SnmpLab), checked with net-snmp.

The lab's counters, uptimes and client counts move with the clock, so equality is checked by
bracketing: net-snmp reads before and after camnet's poll, and camnet's value must lie between
(a client count may wiggle at the lab's 10 s jitter boundary: the bracket is retried).
Runs its own SnmpLab on 127.0.11.5x (this helper's range) next to any other lab.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from lab.snmp import LabAp, SnmpLab
from monitor.config import SnmpAuth
from probes import snmp_modules as m
from probes.base import CheckResult, Credentials, Target
from probes.snmp import SnmpSettings, probe_snmp
from probes.snmp_client import close_managers
from probes.snmp_v3 import close_engines

AUTH_KEY = "camnet-lab-auth"
PRIV_KEY = "camnet-lab-priv"
APS = [
    LabAp("ap-ubnt", "127.0.11.50", 1161, "ubiquiti-m5"),
    LabAp("ap-aruba", "127.0.11.51", 1161, "aruba-7210"),
    LabAp("ap-ruckus", "127.0.11.52", 1161, "ruckus-scg"),
    LabAp("ap-ruijie", "127.0.11.53", 1161, "ruijie-m18000"),
    LabAp("ap-wac", "127.0.11.54", 1161, "sangfor-wac"),
    LabAp("ap-vyatta", "127.0.11.55", 1161, "vyatta-router"),
    LabAp("ap-reboot", "127.0.11.56", 1161, "ubiquiti-m5"),
]
CLIENT_OIDS = {
    "ubiquiti-m5": "1.3.6.1.4.1.41112.1.4.5.1.15",
    "aruba-7210": "1.3.6.1.4.1.14823.2.2.1.1.3.2",
    "ruckus-scg": "1.3.6.1.4.1.25053.1.3.1.1.1.15.2",
    "ruijie-m18000": "1.3.6.1.4.1.4881.1.1.10.2.56.2.1.1.1.34",
}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return dict(os.environ, SNMP_PERSISTENT_DIR=str(tmp_path_factory.mktemp("net-snmp")))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnmpLab]:
    the_lab = SnmpLab(APS, tmp_path_factory.mktemp("snmplab"), v3_auth_key=AUTH_KEY,
                      v3_priv_key=PRIV_KEY)
    asyncio.run(the_lab.start())
    try:
        yield the_lab
    finally:
        asyncio.run(the_lab.stop())


def _read(env: dict[str, str], tool: str, ap: LabAp, *oids: str) -> dict[str, str]:
    out = subprocess.run(
        [tool, "-M", "/dev/null", "-On", "-Oq", "-Ot", "-Oe", "-t", "3", "-r", "1", "-v2c", "-c",
         "public", f"{ap.address}:{ap.port}", *oids],
        env=env, capture_output=True, text=True, timeout=60, check=True)
    values = {}
    for line in out.stdout.splitlines():
        oid, _, value = line.partition(" ")
        if "No Such" not in value and "No more" not in value:
            values[oid.lstrip(".")] = value.strip().strip('"')
    return values


def _snapshot(env: dict[str, str], ap: LabAp) -> dict[str, Any]:
    """What net-snmp reads now: clocks, per-interface counters, client total."""
    clocks = _read(env, "snmpget", ap, m.SYS_UPTIME, m.SNMP_ENGINE_TIME, m.HR_SYSTEM_UPTIME)
    walked: dict[str, str] = {}
    for column in (m.IF_IN_OCTETS, m.IF_OUT_OCTETS, m.IF_HC_IN_OCTETS, m.IF_HC_OUT_OCTETS):
        walked.update(_read(env, "snmpbulkwalk", ap, column))

    def col(c: str) -> dict[str, int]:
        return {o[len(c) + 1:]: int(v) for o, v in walked.items() if o.startswith(c + ".")}

    rx = {**col(m.IF_IN_OCTETS), **col(m.IF_HC_IN_OCTETS)}
    tx = {**col(m.IF_OUT_OCTETS), **col(m.IF_HC_OUT_OCTETS)}
    uptime = [int(clocks[m.SYS_UPTIME]) / 100]
    if m.SNMP_ENGINE_TIME in clocks:
        uptime.append(float(clocks[m.SNMP_ENGINE_TIME]))
    if m.HR_SYSTEM_UPTIME in clocks:
        uptime.append(int(clocks[m.HR_SYSTEM_UPTIME]) / 100)
    oid = CLIENT_OIDS.get(ap.recording or "")
    clients = None
    if oid is not None:
        rows = _read(env, "snmpbulkwalk", ap, oid)
        clients = sum(int(v) for v in rows.values())
    return {"uptime": max(uptime), "rx": rx, "tx": tx, "clients": clients}


def _target(ap: LabAp, v3: bool = False) -> Target:
    if v3:
        auth = SnmpAuth(type="snmp", version="3", username="camnet", security_level="authPriv",
                        auth_protocol="SHA", priv_protocol="AES")
        secrets = {"auth_password": SecretStr(AUTH_KEY), "priv_password": SecretStr(PRIV_KEY)}
    else:
        auth = SnmpAuth(type="snmp", version="2c")
        secrets = {"community": SecretStr("public")}
    return Target(ap.id, "ap", ap.address, {}, Credentials(auth, secrets), {"snmp_port": ap.port})


async def _probe(target: Target, state: dict[str, Any] | None = None) -> CheckResult:
    loop = asyncio.get_running_loop()
    try:
        return await probe_snmp(target, SnmpSettings(request_timeout=3.0, retries=1),
                                {} if state is None else state, loop.time() + 30)
    finally:
        close_managers()
        close_engines()


@pytest.mark.parametrize("ap", APS[:6], ids=lambda ap: ap.recording)
async def test_live_values_bracketed_by_net_snmp(lab: SnmpLab, env: dict[str, str],
                                                 ap: LabAp) -> None:
    for attempt in range(3):
        before = await asyncio.to_thread(_snapshot, env, ap)
        result = await _probe(_target(ap))
        after = await asyncio.to_thread(_snapshot, env, ap)
        assert result.success, result.message
        assert before["uptime"] <= result.facts["uptime"] <= after["uptime"]
        interfaces = {i["index"]: i for i in result.facts["interfaces"]}
        assert set(before["rx"]) <= set(interfaces)
        for index, iface in interfaces.items():
            if index in before["rx"]:
                assert before["rx"][index] <= iface["rx_bytes"] <= after["rx"][index]
            if index in before["tx"]:
                assert before["tx"][index] <= iface["tx_bytes"] <= after["tx"][index]
        if before["clients"] is None:
            assert result.facts["clients"] == {}
            return
        total = sum(result.facts["clients"].values())
        low, high = sorted((before["clients"], after["clients"]))
        if low <= total <= high:
            return
        # The lab's jitter steps every 10 s; a step inside the bracket: measure again.
        assert attempt < 2, (before["clients"], total, after["clients"])


async def test_v3_on_the_lab(lab: SnmpLab) -> None:
    ap = APS[0]
    v2c = await _probe(_target(ap))
    v3 = await _probe(_target(ap, v3=True))
    assert v3.success, v3.message
    assert [i["name"] for i in v3.facts["interfaces"]] == [i["name"] for i in v2c.facts["interfaces"]]
    assert v3.facts["module"] == v2c.facts["module"] == "ubiquiti_airmax"


async def test_reboot_moves_boot_time(lab: SnmpLab) -> None:
    ap = APS[6]
    state: dict[str, Any] = {}
    first = await _probe(_target(ap), state)
    boot = next(s.value for s in first.samples if s.name == "camnet_ap_boot_time_seconds")
    lab.set_fault(ap.id, "reboot")
    try:
        second = await _probe(_target(ap), state)
    finally:
        lab.set_fault(ap.id, "ok")
    assert second.success, second.message
    reboot = next(s.value for s in second.samples if s.name == "camnet_ap_boot_time_seconds")
    assert reboot > boot + 60  # the recording's uptime was days
    assert second.facts.get("rebooted") is True
    assert not first.facts.get("rebooted")


def test_lab_data_is_there() -> None:
    assert Path(__file__).resolve().parent.parent.joinpath("lab", "snmp_data").is_dir()
