"""Differential tests: what camnet exports equals what net-snmp and prometheus-snmp-exporter read.

Same run, same agents: snmpsim replays seven snmpsim-data recordings on 127.0.11.1:1161 (the
community selects the recording); camnet, `snmpget`/`snmpbulkwalk` and Debian's
prometheus-snmp-exporter read the same OIDs from it.
"""

from __future__ import annotations

import asyncio
import bz2
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from monitor.config import SnmpAuth
from probes import snmp_modules as m
from probes.base import CheckResult, Credentials, Target
from probes.snmp import SnmpSettings, probe_snmp
from probes.snmp_client import close_managers

DATA = Path(__import__("snmpsim_data").__file__).parent / "data"
HOST = "127.0.11.1"
PORT = 1161
EXPORTER = "127.0.11.2:9117"
# snmpsim comes with the Python packages: in the virtualenv beside the interpreter, which
# `make test` runs without putting its bin/ on PATH.
SNMPSIM = shutil.which("snmpsim-command-responder",
                       path=os.pathsep.join([str(Path(sys.executable).parent),
                                             os.environ.get("PATH", "")])) or "snmpsim-command-responder"

# Seven recordings: the only real AP (airMAX), firewalls, Linux hosts and a Cisco switch whose
# ifXTable lacks HC counters for some interfaces (32-bit fallback).
RECORDINGS = {
    "ubiquiti-m5": "network/wifi/ubiquiti-m5",
    "venus-vsos": "network/firewall/venus-vsos-v0600r0705b20180507",
    "clavister": "network/firewall/clavister-amaranten",
    "linux-005": "os/linux/unknown-005",
    "netmanage": "os/linux/netmanage",
    "paloalto": "network/firewall/paloalto-pa-5000",
    "cisco-c3750": "network/switch/cisco-c3750",
}
# Static copies of the lab's curated controller recordings (lab/snmp_data/recordings).
LAB_RECORDINGS = Path(__file__).resolve().parent.parent / "lab" / "snmp_data" / "recordings"
LAB = ("aruba-7210", "ruckus-scg", "ruijie-m18000")
AIRMAX_STA_COUNT = "1.3.6.1.4.1.41112.1.4.5.1.15"
# Where each recording keeps its WiFi client count: (OID, scalar?, module camnet picks).
CLIENTS = {
    "ubiquiti-m5": (AIRMAX_STA_COUNT, False, "ubiquiti_airmax"),
    "aruba-7210": ("1.3.6.1.4.1.14823.2.2.1.1.3.2", True, "aruba"),
    "ruckus-scg": ("1.3.6.1.4.1.25053.1.3.1.1.1.15.2", True, "ruckus"),
    "ruijie-m18000": ("1.3.6.1.4.1.4881.1.1.10.2.56.2.1.1.1.34", False, "ruijie"),
}


def _wait_udp_agent(community: str, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        out = subprocess.run(
            ["snmpget", "-v2c", "-c", community, "-On", "-t", "1", "-r", "0", f"{HOST}:{PORT}",
             m.SYS_UPTIME], capture_output=True, text=True, env=_net_snmp_env(), check=False)
        if out.returncode == 0:
            return
        time.sleep(0.5)
    raise RuntimeError("snmpsim did not answer")


_PERSIST: dict[str, str] = {}


def _net_snmp_env() -> dict[str, str]:
    return dict(os.environ, SNMP_PERSISTENT_DIR=_PERSIST.get("dir", "/tmp/camnet-test-snmp"),
                MIBS="", MIBDIRS="/nonexistent")


@pytest.fixture(scope="module")
def snmpsim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """snmpsim serving the recordings (decompressed copies; community = file name)."""
    work = tmp_path_factory.mktemp("snmpsim")
    _PERSIST["dir"] = str(work / "persist")
    data = work / "data"
    data.mkdir()
    for community, rec in RECORDINGS.items():
        (data / f"{community}.snmprec").write_bytes(
            bz2.decompress((DATA / f"{rec}.snmprec.bz2").read_bytes()))
    for community in LAB:
        shutil.copyfile(LAB_RECORDINGS / f"{community}.snmprec", data / f"{community}.snmprec")
    env = dict(os.environ, SNMPSIM_ALLOW_ROOT="true")
    proc = subprocess.Popen(
        [SNMPSIM, f"--data-dir={data}", f"--cache-dir={work / 'cache'}",
         f"--agent-udpv4-endpoint={HOST}:{PORT}"],
        stdout=subprocess.DEVNULL, stderr=open(work / "snmpsim.log", "wb"), env=env)  # noqa: SIM115
    try:
        for community in ALL:
            _wait_udp_agent(community)
        yield work
    finally:
        proc.kill()
        proc.wait()


def _exporter_config() -> str:
    """Old-format (0.21) config: one module per recording, numeric OIDs."""
    lookup = (f"      lookups: [{{labels: [ifIndex], labelname: ifName, oid: {m.IF_NAME},"
              " type: DisplayString}]\n")
    out = []
    for community in ALL:
        client_oid, scalar, _ = CLIENTS.get(community, (AIRMAX_STA_COUNT, False, ""))
        out += [f"{community}:\n", "  version: 2\n", "  max_repetitions: 25\n",
                "  retries: 1\n", "  timeout: 10s\n", f"  auth: {{community: {community}}}\n",
                f"  get: [{m.SYS_UPTIME}" + (f", {client_oid}.0" if scalar else "") + "]\n",
                "  walk: [" + ", ".join([m.IF_DESCR, m.IF_OPER_STATUS, m.IF_IN_OCTETS,
                                         m.IF_OUT_OCTETS, m.IF_IN_ERRORS, m.IF_OUT_ERRORS,
                                         m.IF_NAME, m.IF_HC_IN_OCTETS, m.IF_HC_OUT_OCTETS,
                                         *([] if scalar else [client_oid])]) + "]\n",
                "  metrics:\n",
                f"    - name: sysUpTime\n      oid: {m.SYS_UPTIME[:-2]}\n      type: gauge\n",
                f"    - name: staCount\n      oid: {client_oid}\n      type: gauge\n"
                + ("" if scalar else "      indexes: [{labelname: radio, type: OctetString,"
                   " fixed_size: 6}]\n" if community == "ruijie-m18000" else
                   "      indexes: [{labelname: radio, type: gauge}]\n")]
        for name, oid in (("ifOperStatus", m.IF_OPER_STATUS), ("ifInOctets", m.IF_IN_OCTETS),
                          ("ifOutOctets", m.IF_OUT_OCTETS), ("ifInErrors", m.IF_IN_ERRORS),
                          ("ifOutErrors", m.IF_OUT_ERRORS), ("ifHCInOctets", m.IF_HC_IN_OCTETS),
                          ("ifHCOutOctets", m.IF_HC_OUT_OCTETS)):
            out.append(f"    - name: {name}\n      oid: {oid}\n      type: gauge\n"
                       "      indexes: [{labelname: ifIndex, type: gauge}]\n" + lookup)
    return "".join(out)


@pytest.fixture(scope="module")
def exporter(snmpsim: Path) -> Iterator[str]:
    """Debian's prometheus-snmp-exporter with a module per recording."""
    config = snmpsim / "exporter.yml"
    config.write_text(_exporter_config())
    proc = subprocess.Popen(
        ["prometheus-snmp-exporter", f"--config.file={config}",
         f"--web.listen-address={EXPORTER}"],
        stdout=subprocess.DEVNULL, stderr=open(snmpsim / "exporter.log", "wb"))  # noqa: SIM115
    try:
        host, port = EXPORTER.split(":")
        end = time.monotonic() + 20
        while True:
            try:
                socket.create_connection((host, int(port)), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > end or proc.poll() is not None:
                    raise RuntimeError("snmp exporter did not start") from None
                time.sleep(0.1)
        yield EXPORTER
    finally:
        proc.kill()
        proc.wait()


def _net_snmp(tool: str, community: str, *oids: str) -> dict[str, str]:
    """OID -> value text from snmpget/snmpbulkwalk (numeric OIDs, raw timeticks)."""
    out = subprocess.run(
        [tool, "-v2c", "-c", community, "-On", "-Oq", "-Ot", "-Oe", "-OU", "-t", "5",
         f"{HOST}:{PORT}", *oids], capture_output=True, text=True, env=_net_snmp_env(), check=True)
    values = {}
    for line in out.stdout.splitlines():
        oid, _, value = line.partition(" ")
        if "No Such" in value or "No more variables" in value:
            continue
        values[oid.lstrip(".")] = value.strip().strip('"')
    return values


def _clocks(community: str, sys_uptime_only: bool = False) -> float:
    """The largest of sysUpTime, snmpEngineTime and hrSystemUptime as net-snmp reads them."""
    scalars = _net_snmp("snmpget", community, m.SYS_UPTIME, m.SNMP_ENGINE_TIME,
                        m.HR_SYSTEM_UPTIME)
    if sys_uptime_only:
        return int(scalars[m.SYS_UPTIME])
    clocks = [int(scalars[m.SYS_UPTIME]) / 100]
    if m.SNMP_ENGINE_TIME in scalars:
        clocks.append(float(scalars[m.SNMP_ENGINE_TIME]))
    if m.HR_SYSTEM_UPTIME in scalars:
        clocks.append(int(scalars[m.HR_SYSTEM_UPTIME]) / 100)
    return max(clocks)


def _column(walked: dict[str, str], column: str) -> dict[str, str]:
    return {oid[len(column) + 1:]: v for oid, v in walked.items() if oid.startswith(column + ".")}


def _target(community: str) -> Target:
    creds = Credentials(SnmpAuth(type="snmp", version="2c"), {"community": SecretStr(community)})
    return Target(f"ap-{community}", "ap", HOST, {"commune": "test"}, creds, {"snmp_port": PORT})


async def _probe(community: str, **settings: Any) -> CheckResult:
    loop = asyncio.get_running_loop()
    try:
        return await probe_snmp(_target(community), SnmpSettings(**settings), {}, loop.time() + 30)
    finally:
        close_managers()


def _samples(result: CheckResult, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for s in result.samples if s.name == name}


ALL = [*RECORDINGS, *LAB]


@pytest.mark.parametrize("community", ALL)
async def test_values_equal_net_snmp_and_exporter(snmpsim: Path, exporter: str,
                                                  community: str) -> None:
    clocks_before = _clocks(community)
    result = await _probe(community)
    clocks_after = _clocks(community)
    assert result.success, result.message
    assert _samples(result, "camnet_ap_up") == {(): 1.0}

    walked = _net_snmp("snmpbulkwalk", community, "1.3.6.1.2.1.2.2.1")  # takes one subtree
    walked.update(_net_snmp("snmpbulkwalk", community, "1.3.6.1.2.1.31.1.1.1"))
    walked.update(_net_snmp("snmpbulkwalk", community, AIRMAX_STA_COUNT))
    scalars = _net_snmp("snmpget", community, m.SYS_UPTIME, m.SNMP_ENGINE_TIME,
                        m.HR_SYSTEM_UPTIME)
    names = _column(walked, m.IF_NAME)
    descrs = _column(walked, m.IF_DESCR)
    oper = _column(walked, m.IF_OPER_STATUS)
    rx = {**_column(walked, m.IF_IN_OCTETS), **_column(walked, m.IF_HC_IN_OCTETS)}
    tx = {**_column(walked, m.IF_OUT_OCTETS), **_column(walked, m.IF_HC_OUT_OCTETS)}
    in_err = _column(walked, m.IF_IN_ERRORS)
    assert descrs, "the recording must have interfaces"

    # Interfaces: the same set, named by ifName (ifDescr fallback), same counters.
    interfaces = {i["index"]: i for i in result.facts["interfaces"]}
    assert set(interfaces) == set(descrs) | set(names) | set(oper)
    received = _samples(result, "camnet_ap_interface_receive_bytes_total")
    errors = _samples(result, "camnet_ap_interface_errors_total")
    for index, iface in interfaces.items():
        expected_name = names.get(index) or descrs.get(index)
        if expected_name and list(interfaces.values()).count(expected_name) <= 1:
            assert iface["name"].split("#")[0] == expected_name
        if index in rx:
            assert iface["rx_bytes"] == int(rx[index])
            assert received[(("interface", iface["name"]),)] == float(rx[index])
        if index in tx:
            assert iface["tx_bytes"] == int(tx[index])
        if index in oper:
            assert iface["up"] == int(oper[index] == "1")
        if index in in_err:
            assert errors[(("direction", "in"), ("interface", iface["name"]))] == float(in_err[index])

    # Uptime: the largest of the three clocks (some recordings move it: read before and after).
    assert clocks_before <= result.facts["uptime"] <= clocks_after

    # The exporter reads the same numbers.
    url = f"http://{exporter}/snmp?module={community}&target={HOST}:{PORT}"
    with urllib.request.urlopen(url, timeout=60) as resp:
        text = resp.read().decode()
    exported: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            exported[(s.name, s.labels.get("ifIndex", s.labels.get("radio", "")))] = s.value
    assert int(scalars[m.SYS_UPTIME]) <= exported[("sysUpTime", "")] <= _clocks(community, True)
    for index, iface in interfaces.items():
        hc = exported.get(("ifHCInOctets", index))
        if iface["rx_bytes"] is not None:
            assert (hc if hc is not None else exported[("ifInOctets", index)]) == iface["rx_bytes"]
        hc = exported.get(("ifHCOutOctets", index))
        if iface["tx_bytes"] is not None:
            assert (hc if hc is not None else exported[("ifOutOctets", index)]) == iface["tx_bytes"]
        if iface["up"] is not None:
            assert (exported[("ifOperStatus", index)] == 1.0) == bool(iface["up"])

    # Client counts: the vendor module reads what net-snmp and the exporter read.
    clients = _samples(result, "camnet_ap_wifi_clients")
    exported_clients = {k[1]: v for k, v in exported.items() if k[0] == "staCount"}
    if community not in CLIENTS:
        assert not clients
        assert not exported_clients
        return
    oid, scalar, module = CLIENTS[community]
    assert result.facts["module"] == module
    if scalar:
        count = _net_snmp("snmpget", community, oid + ".0")[oid + ".0"]
        assert clients == {(("radio", "all"),): float(count)}
        assert exported_clients == {"": float(count)}
    elif module == "ruijie":
        # One row per managed AP (index = AP MAC): camnet sums them.
        rows = _column(_net_snmp("snmpbulkwalk", community, oid), oid)
        assert len(rows) >= 2
        assert clients == {(("radio", "all"),): float(sum(int(v) for v in rows.values()))}
        assert sum(exported_clients.values()) == sum(int(v) for v in rows.values())
    else:
        stations = _column(walked, oid)
        assert stations
        assert clients == {(("radio", radio),): float(n) for radio, n in stations.items()}
        assert exported_clients == {radio: float(n) for radio, n in stations.items()}


async def test_getnext_and_v1_read_the_same_as_getbulk(snmpsim: Path) -> None:
    bulk = await _probe("cisco-c3750")
    nxt = await _probe("cisco-c3750", bulk=False)
    assert bulk.success and nxt.success
    assert nxt.facts["interfaces"] == bulk.facts["interfaces"]
    assert nxt.facts["requests"] > bulk.facts["requests"]


async def test_max_repetitions_changes_requests_not_values(snmpsim: Path) -> None:
    small = await _probe("paloalto", max_repetitions=3)
    big = await _probe("paloalto", max_repetitions=50)
    assert small.facts["interfaces"] == big.facts["interfaces"]
    assert small.facts["requests"] > big.facts["requests"]


async def test_pysnmp_mode_reads_the_same(snmpsim: Path) -> None:
    fast = await _probe("ubiquiti-m5")
    slow = await _probe("ubiquiti-m5", mode="pysnmp")
    assert slow.success, slow.message
    assert slow.facts["interfaces"] == fast.facts["interfaces"]
    assert slow.facts["clients"] == fast.facts["clients"]


async def test_info_and_module_detection(snmpsim: Path) -> None:
    result = await _probe("ubiquiti-m5")
    info = [s for s in result.samples if s.name == "camnet_ap_info"]
    assert len(info) == 1
    assert info[0].labels["vendor"] == "Ubiquiti"
    assert info[0].labels["model"] == "NanoStation M5"
    assert info[0].labels["sys_name"] == "Kotelinaya-to-Pat"
    cisco = await _probe("cisco-c3750")
    assert cisco.facts["module"] == "cisco"
    generic = await _probe("linux-005", module="generic")
    assert generic.facts["module"] == "generic"


def test_tools_exist() -> None:
    for tool in ("snmpget", "snmpbulkwalk", "prometheus-snmp-exporter"):
        assert shutil.which(tool), tool
    assert Path(SNMPSIM).is_file(), SNMPSIM


async def test_v1_reads_the_same_as_v2c(snmpsim: Path) -> None:
    v2c = await _probe("netmanage")
    target = _target("netmanage")
    assert target.auth is not None
    target.auth.config = SnmpAuth(type="snmp", version="1")
    loop = asyncio.get_running_loop()
    try:
        v1 = await probe_snmp(target, SnmpSettings(), {}, loop.time() + 30)
    finally:
        close_managers()
    assert v1.success, v1.message
    assert [i["name"] for i in v1.facts["interfaces"]] == [i["name"] for i in v2c.facts["interfaces"]]
    # v1 has no Counter64: the 32-bit counters stand in, which the v2c read has too.
    assert all(i["rx_bytes"] is not None for i in v1.facts["interfaces"])
    assert v1.facts["requests"] > v2c.facts["requests"]  # GETNEXT: one row per request


async def test_rendered_metrics_pass_promtool(snmpsim: Path, tmp_path: Path) -> None:
    from monitor.config import ApProfile
    from monitor.exporter import device_samples, render_text
    from monitor.state import DeviceRecord

    records = []
    for community in ("ubiquiti-m5", "cisco-c3750", "aruba-7210"):
        result = await _probe(community)
        target = _target(community)
        target.labels.update({"ap": target.id, "site": community})
        rec = DeviceRecord(target, ApProfile(kind="ap"))
        rec.results["snmp"] = result
        records.append(rec)
    # One device per answer, as /probe does.
    texts = [render_text([(dict(rec.target.labels), list(device_samples(rec)))])
             for rec in records]
    assert all(b"camnet_ap_interface_receive_bytes_total{" in text for text in texts)
    assert all(b"camnet_ap_wifi_clients{" in text for text in texts[::2])
    if shutil.which("promtool") is None:
        pytest.skip("promtool missing")
    for text in texts:
        out = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                             check=False)
        assert out.returncode == 0, out.stdout + out.stderr
