"""Vendor modules: picked from sysObjectID (or probed subtrees), and their tables read right.

No public recording exists of a UniFi, TP-Link, MikroTik, Cisco Aironet or Huawei access point,
so these use the raw UDP responder of test_snmp_bad.py serving the vendor OIDs (from the vendor
MIBs); airMAX, Aruba, Ruckus and Ruijie are also checked on real recordings in test_snmp.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from probes.base import CheckResult
from probes.snmp import SnmpSettings, probe_snmp
from probes.snmp_ber import (
    COUNTER32,
    GAUGE32,
    INTEGER,
    OBJECT_IDENTIFIER,
    OCTET_STRING,
    TIMETICKS,
    encode_oid,
    oid_tuple,
)
from probes.snmp_modules import MODULES, module_for_sys_object_id
from tests.test_snmp_bad import Responder, _probe, _target
from tests.test_snmp_bad import responder as _responder_fixture

responder = _responder_fixture  # the fixture, under its own name here


def _serve(responder: Responder, sys_object_id: str, rows: list[tuple[str, int, Any]]) -> None:
    base = [(o, t, v) for o, t, v in [
        ("1.3.6.1.2.1.1.1.0", OCTET_STRING, b"vendor agent"),
        ("1.3.6.1.2.1.1.2.0", OBJECT_IDENTIFIER, encode_oid(sys_object_id)),
        ("1.3.6.1.2.1.1.3.0", TIMETICKS, 5000),
        ("1.3.6.1.2.1.1.5.0", OCTET_STRING, b"hall-ap"),
        ("1.3.6.1.2.1.2.2.1.2.5", OCTET_STRING, b"wlan0"),
        ("1.3.6.1.2.1.2.2.1.2.6", OCTET_STRING, b"wlan1"),
        ("1.3.6.1.2.1.2.2.1.8.5", INTEGER, 1),
        ("1.3.6.1.2.1.2.2.1.8.6", INTEGER, 1),
    ]]
    responder.table = sorted((oid_tuple(encode_oid(o)), encode_oid(o), t, v)
                             for o, t, v in base + rows)


def _by_radio(result: CheckResult, name: str) -> dict[str, float]:
    return {s.labels["radio"]: s.value for s in result.samples if s.name == name}


def _one(result: CheckResult, name: str) -> float | None:
    return next((s.value for s in result.samples if s.name == name), None)


def test_sys_object_id_picks_vendor_modules() -> None:
    assert module_for_sys_object_id("1.3.6.1.4.1.14988.1") is MODULES["mikrotik"]
    assert module_for_sys_object_id("1.3.6.1.4.1.41112.1.4") is MODULES["ubiquiti_airmax"]
    assert module_for_sys_object_id("1.3.6.1.4.1.9.1.1247") is MODULES["cisco"]
    assert module_for_sys_object_id("1.3.6.1.4.1.14823.1.1.32") is MODULES["aruba"]
    assert module_for_sys_object_id("1.3.6.1.4.1.4881.1.3.1.1.73") is MODULES["ruijie"]
    assert module_for_sys_object_id("1.3.6.1.4.1.25053.3.1.10") is MODULES["ruckus"]
    assert module_for_sys_object_id("1.3.6.1.4.1.2011.2.240.6") is MODULES["huawei"]
    assert module_for_sys_object_id("1.3.6.1.4.1.11863.10.1.3") is MODULES["tplink_eap"]
    # A prefix only matches whole sub-identifiers: 1.3.6.1.4.1.90 is not Cisco (9).
    assert module_for_sys_object_id("1.3.6.1.4.1.90.1") is None
    assert module_for_sys_object_id("1.3.6.1.4.1.8072.3.2.10") is None


async def test_unifi_detected_under_net_snmp_sys_object_id(responder: Responder) -> None:
    vap, radio = "1.3.6.1.4.1.41112.1.6.1.2.1", "1.3.6.1.4.1.41112.1.6.1.1.1"
    _serve(responder, "1.3.6.1.4.1.8072.3.2.10", [
        # two SSIDs on the 2.4 GHz radio, one on 5 GHz
        (f"{vap}.4.1", INTEGER, 6), (f"{vap}.4.2", INTEGER, 6), (f"{vap}.4.3", INTEGER, 36),
        (f"{vap}.8.1", INTEGER, 4), (f"{vap}.8.2", INTEGER, 3), (f"{vap}.8.3", INTEGER, 9),
        (f"{vap}.9.1", OCTET_STRING, b"ng"), (f"{vap}.9.2", OCTET_STRING, b"ng"),
        (f"{vap}.9.3", OCTET_STRING, b"na"),
        (f"{radio}.3.1", OCTET_STRING, b"ng"), (f"{radio}.3.2", OCTET_STRING, b"na"),
        (f"{radio}.6.1", INTEGER, 42), (f"{radio}.6.2", INTEGER, 7),
        ("1.3.6.1.4.1.41112.1.6.3.3.0", OCTET_STRING, b"U6-Lite"),
    ])
    result = await _probe()
    assert result.success, result.message
    assert result.facts["module"] == "ubiquiti_unifi"
    assert _by_radio(result, "camnet_ap_wifi_clients") == {"ng": 7, "na": 9}
    assert _by_radio(result, "camnet_ap_wifi_channel") == {"ng": 6, "na": 36}
    assert _by_radio(result, "camnet_ap_wifi_utilization_ratio") == {"ng": 0.42, "na": 0.07}
    info = next(s for s in result.samples if s.name == "camnet_ap_info")
    assert info.labels["vendor"] == "Ubiquiti" and info.labels["model"] == "U6-Lite"


async def test_tplink_total_clients(responder: Responder) -> None:
    _serve(responder, "1.3.6.1.4.1.11863.10.1.3", [
        ("1.3.6.1.4.1.11863.10.1.1.1.0", INTEGER, 12),
    ])
    result = await _probe()
    assert result.facts["module"] == "tplink_eap"
    assert _by_radio(result, "camnet_ap_wifi_clients") == {"all": 12}


async def test_cisco_clients_per_radio_interface(responder: Responder) -> None:
    _serve(responder, "1.3.6.1.4.1.9.1.1247", [
        ("1.3.6.1.4.1.9.9.273.1.1.2.1.1.5", GAUGE32, 2),
        ("1.3.6.1.4.1.9.9.273.1.1.2.1.1.6", GAUGE32, 11),
        ("1.2.840.10036.4.5.1.1.5", INTEGER, 11),
        ("1.2.840.10036.4.5.1.1.6", INTEGER, 149),
        ("1.3.6.1.4.1.9.9.109.1.1.1.1.8.1", GAUGE32, 23),
    ])
    result = await _probe()
    assert result.facts["module"] == "cisco"
    assert _by_radio(result, "camnet_ap_wifi_clients") == {"wlan0": 2, "wlan1": 11}
    assert _by_radio(result, "camnet_ap_wifi_channel") == {"wlan0": 11, "wlan1": 149}
    assert _one(result, "camnet_ap_cpu_usage_ratio") == 0.23


async def test_mikrotik_frequency_and_noise(responder: Responder) -> None:
    _serve(responder, "1.3.6.1.4.1.14988.1", [
        ("1.3.6.1.4.1.14988.1.1.1.3.1.6.5", COUNTER32, 3),
        ("1.3.6.1.4.1.14988.1.1.1.3.1.7.5", INTEGER, 5180),
        ("1.3.6.1.4.1.14988.1.1.1.3.1.9.5", INTEGER, -104),
    ])
    result = await _probe()
    assert result.facts["module"] == "mikrotik"
    assert _by_radio(result, "camnet_ap_wifi_clients") == {"wlan0": 3}
    assert _by_radio(result, "camnet_ap_wifi_channel") == {"wlan0": 36}
    assert _by_radio(result, "camnet_ap_wifi_frequency_hertz") == {"wlan0": 5.18e9}
    assert _by_radio(result, "camnet_ap_wifi_noise_dbm") == {"wlan0": -104}


async def test_huawei_and_generic_memory(responder: Responder) -> None:
    _serve(responder, "1.3.6.1.4.1.2011.2.240.6", [
        ("1.3.6.1.4.1.2011.6.139.16.1.2.1.41.1", INTEGER, 5),
        ("1.3.6.1.4.1.2011.6.139.16.1.2.1.41.2", INTEGER, 8),
        ("1.3.6.1.4.1.2021.4.5.0", INTEGER, 1000),
        ("1.3.6.1.4.1.2021.4.6.0", INTEGER, 400),
        ("1.3.6.1.4.1.2021.4.14.0", INTEGER, 100),
        ("1.3.6.1.4.1.2021.4.15.0", INTEGER, 200),
    ])
    result = await _probe()
    assert result.facts["module"] == "huawei"
    assert _by_radio(result, "camnet_ap_wifi_clients") == {"1": 5, "2": 8}
    assert _one(result, "camnet_ap_memory_usage_ratio") == pytest.approx(0.3)


async def test_boot_time_uses_the_largest_clock(responder: Responder) -> None:
    # sysUpTime wrapped after 497 days; hrSystemUptime (also TimeTicks) did not yet... and
    # snmpEngineTime (seconds) knows the truth: 600 days.
    _serve(responder, "1.3.6.1.4.1.8072.3.2.10", [
        ("1.3.6.1.2.1.25.1.1.0", TIMETICKS, 100 * 86400 * 100),
        ("1.3.6.1.6.3.10.2.1.3.0", INTEGER, 600 * 86400),
    ])
    result = await _probe(module="generic")
    assert result.facts["uptime"] == 600 * 86400


async def test_reboot_is_noticed(responder: Responder) -> None:
    state: dict[str, Any] = {}
    _serve(responder, "1.3.6.1.4.1.8072.3.2.10", [])
    await _probe_with(state)
    for i, row in enumerate(responder.table):
        if row[1] == encode_oid("1.3.6.1.2.1.1.3.0"):
            responder.table[i] = (row[0], row[1], row[2], 10)  # uptime went back: rebooted
    again = await _probe_with(state)
    assert again.facts.get("rebooted") is True


async def _probe_with(state: dict[str, Any]) -> CheckResult:
    loop = asyncio.get_running_loop()
    return await probe_snmp(_target(), SnmpSettings(request_timeout=0.5), state,
                            loop.time() + 10)
