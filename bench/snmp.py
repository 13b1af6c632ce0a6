"""CPU per 1,000 varbinds polled and rendered to /metrics: camnet vs prometheus-snmp-exporter.

Same agents (one Debian snmpd listening on N loopback addresses, serving a snmpsim-data
recording through generated `override` lines), same OIDs (camnet's generic walk), same run.

    python3 bench/snmp.py [--recording network/switch/dcs-3726c] [--devices 1,10,100]
                          [--polls 400] [--pysnmp]

camnet's CPU is this process's CPU time over the poll+render loop; the exporter's is its
process's utime+stime from /proc/<pid>/stat while this script scrapes /snmp?target=... for
every device (the scraping client's own CPU is not counted for either side).
"""

from __future__ import annotations

import argparse
import asyncio
import bz2
import concurrent.futures
import gc
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.samples import Sample as PromSample
from pydantic import SecretStr

from monitor.config import SnmpAuth
from probes import snmp_modules as m
from probes.base import CheckResult, Credentials, Target
from probes.snmp import METRICS, SnmpSettings, probe_snmp
from probes.snmp_client import close_managers

DATA = Path(str(__import__("snmpsim_data").__file__)).parent / "data"
BASE = "127.0.11."
FIRST_HOST = 100  # agents at 127.0.11.100 and up; tests use the low addresses
EXPORTER = "127.0.11.250:9116"
PORT = 1161
CLK_TCK = os.sysconf("SC_CLK_TCK")

# snmprec type -> snmpd `override` type. snmpd's override has no Counter64: HC counters are
# served as Counter32 (mod 2^32) - the same bytes for both pollers, noted in the results.
OVERRIDE_TYPES = {"2": "integer", "4": "octet_str", "4x": "octet_str", "6": "object_id",
                  "64": "ipaddress", "65": "counter", "66": "uinteger", "67": "timeticks",
                  "70": "counter"}
SCALARS = [o for o in m.GENERIC_SCALARS if not o.startswith("1.3.6.1.6.3.10")]  # engine: live


def override_lines(recording: str) -> list[str]:
    """`override` lines for the OIDs camnet's generic module reads, from a recording."""
    wanted = [c + "." for c in m.GENERIC_COLUMNS] + SCALARS
    raw = bz2.decompress((DATA / f"{recording}.snmprec.bz2").read_bytes()).decode("utf-8", "replace")
    lines = []
    for line in raw.splitlines():
        oid, _, rest = line.partition("|")
        kind, _, value = rest.partition("|")
        if kind not in OVERRIDE_TYPES or not any(oid == w or oid.startswith(w) for w in wanted):
            continue
        if kind == "4x":
            value = bytes.fromhex(value).decode("latin-1")
        if kind in ("4", "4x"):
            value = '"' + "".join(c if c.isprintable() and c not in '"\\' else "_" for c in value) + '"'
        if kind in ("65", "70"):
            value = str(int(value) % 2**32)
        lines.append(f"override {oid} {OVERRIDE_TYPES[kind]} {value}")
    return lines


V3_USER, V3_AUTH, V3_PRIV = "bench", "bench-auth-pass", "bench-priv-pass"


def exporter_config(max_repetitions: int, v3: bool = False) -> str:
    """The same OIDs for prometheus-snmp-exporter 0.21 (old format, numeric OIDs)."""
    auth = (f"  version: 3\n  auth: {{security_level: authPriv, username: {V3_USER}, "
            f"password: {V3_AUTH}, auth_protocol: SHA, priv_protocol: AES, "
            f"priv_password: {V3_PRIV}}}\n" if v3 else
            "  version: 2\n  auth: {community: public}\n")
    if_index = "      indexes: [{labelname: ifIndex, type: gauge}]\n"
    lookup = ("      lookups: [{labels: [ifIndex], labelname: ifName,"
              f" oid: {m.IF_NAME}, type: DisplayString}}]\n")
    out = ["camnet:\n", auth, f"  max_repetitions: {max_repetitions}\n",
           "  retries: 1\n", "  timeout: 5s\n",
           "  get:\n"] + [f"    - {o}\n" for o in m.GENERIC_SCALARS] + ["  walk:\n"]
    out += [f"    - {c}\n" for c in m.GENERIC_COLUMNS]
    out.append("  metrics:\n")
    for name, oid in (("sysUpTime", m.SYS_UPTIME), ("hrSystemUptime", m.HR_SYSTEM_UPTIME)):
        out.append(f"    - name: {name}\n      oid: {oid[:-2]}\n      type: gauge\n")
    for name, oid, kind in (
        ("ifOperStatus", m.IF_OPER_STATUS, "gauge"), ("ifInOctets", m.IF_IN_OCTETS, "counter"),
        ("ifOutOctets", m.IF_OUT_OCTETS, "counter"), ("ifInErrors", m.IF_IN_ERRORS, "counter"),
        ("ifOutErrors", m.IF_OUT_ERRORS, "counter"), ("ifHCInOctets", m.IF_HC_IN_OCTETS, "counter"),
        ("ifHCOutOctets", m.IF_HC_OUT_OCTETS, "counter"),
    ):
        out.append(f"    - name: {name}\n      oid: {oid}\n      type: {kind}\n" + if_index + lookup)
    out.append(f"    - name: hrProcessorLoad\n      oid: {m.HR_PROCESSOR_LOAD}\n      type: gauge\n"
               "      indexes: [{labelname: hrDeviceIndex, type: gauge}]\n")
    for name, oid in (("hrStorageType", m.HR_STORAGE_TYPE), ("hrStorageSize", m.HR_STORAGE_SIZE),
                      ("hrStorageUsed", m.HR_STORAGE_USED)):
        kind = "OctetString" if name == "hrStorageType" else "gauge"
        out.append(f"    - name: {name}\n      oid: {oid}\n      type: {kind}\n"
                   "      indexes: [{labelname: hrStorageIndex, type: gauge}]\n")
    return "".join(out)


class ResultsCollector:
    """Families built from the latest CheckResults, as the daemon's exporter does."""

    def __init__(self, results: dict[str, CheckResult], labels: dict[str, dict[str, str]]) -> None:
        self.results = results
        self.labels = labels

    def collect(self) -> Any:
        """Yield one family per metric name (device labels added to every sample)."""
        families: dict[str, Any] = {}
        names: dict[str, str] = {}
        for ap, result in self.results.items():
            device = self.labels[ap]
            for s in result.samples:
                family = families.get(s.name)
                if family is None:
                    definition = METRICS[s.name]
                    cls = CounterMetricFamily if definition.kind == "counter" else GaugeMetricFamily
                    family = families[s.name] = cls(s.name, definition.help,
                                                    labels=(*device, *definition.labels))
                    # add_metric() in bulk: the same sample tuple it would build.
                    names[s.name] = family.name + ("_total" if definition.kind == "counter" else "")
                family.samples.append(PromSample(names[s.name], device | dict(s.labels), s.value))
        yield from families.values()


def target(i: int, v3: bool = False) -> Target:
    """The bench target for device i."""
    if v3:
        creds = Credentials(
            SnmpAuth(type="snmp", version="3", username=V3_USER, security_level="authPriv",
                     auth_protocol="SHA", priv_protocol="AES"),
            {"auth_password": SecretStr(V3_AUTH), "priv_password": SecretStr(V3_PRIV)})
    else:
        creds = Credentials(SnmpAuth(type="snmp", version="2c"),
                            {"community": SecretStr("public")})
    labels = {"commune": "daron", "site": f"daron-{i:02d}", "ap": f"ap-daron-{i:02d}",
              "operator": "VNPT"}  # what LoadedConfig.target() gives a real AP
    return Target(f"ap-daron-{i:02d}", "ap", f"{BASE}{FIRST_HOST + i}", labels, creds,
                  {"snmp_port": PORT})


async def camnet_run(devices: int, rounds: int, settings: SnmpSettings, freeze: bool = False,
                     render: str = "daemon", v3: bool = False) -> tuple[float, int, int]:
    """CPU seconds of `rounds` polls of every device + one render per round; bytes, varbinds."""
    targets = [target(i, v3) for i in range(devices)]
    states: list[dict[str, Any]] = [{} for _ in targets]
    results: dict[str, CheckResult] = {}
    registry = CollectorRegistry()
    records: dict[str, Any] = {}
    if render == "daemon":
        # The daemon's own /metrics path: State + DeviceCollector (verdict and bookkeeping
        # included) + the scheduler's metrics, rendered by monitor.exporter.metrics_text.
        from monitor.config import ApProfile
        from monitor.exporter import DeviceCollector, metrics_text
        from monitor.scheduler import SchedulerMetrics
        from monitor.state import DeviceRecord, State

        state = State()
        for t in targets:
            records[t.id] = state.devices[t.id] = DeviceRecord(t, ApProfile(kind="ap"))
        SchedulerMetrics(registry)
        collector = DeviceCollector(state)
        freeze = True  # the daemon freezes its start-up heap (monitor/daemon.py)
    else:
        registry.register(ResultsCollector(results, {t.id: t.labels for t in targets}))
    loop = asyncio.get_running_loop()
    # One warm-up round (module detection, caches), not measured: the daemon runs for months.
    for t, st in zip(targets, states, strict=True):
        await probe_snmp(t, settings, st, loop.time() + 30)
    varbinds = 0
    size = 0
    if freeze:
        gc.freeze()  # what the daemon should do once started: the startup heap is never garbage
    cpu0 = time.process_time()
    for _ in range(rounds):
        out = await asyncio.gather(*(probe_snmp(t, settings, st, loop.time() + 30)
                                     for t, st in zip(targets, states, strict=True)))
        for t, r in zip(targets, out, strict=True):
            if not r.success:
                raise SystemExit(f"camnet poll of {t.address} failed: {r.reason} {r.message}")
            results[t.id] = r
            if records:
                records[t.id].results["snmp"] = r
            varbinds += int(r.facts["values"])
        size += len(metrics_text(collector, registry) if records else generate_latest(registry))
    cpu = time.process_time() - cpu0
    close_managers()
    if v3 or settings.mode == "pysnmp":
        from probes.snmp_v3 import close_engines

        close_engines()
    return cpu, size // rounds, varbinds


def proc_cpu(pid: int) -> float:
    """utime+stime of a process in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def exporter_run(pid: int, devices: int, rounds: int) -> tuple[float, int]:
    """Exporter CPU seconds for `rounds` scrapes of every device; bytes per round."""
    urls = [f"http://{EXPORTER}/snmp?module=camnet&target={BASE}{FIRST_HOST + i}:{PORT}"
            for i in range(devices)]

    def fetch(url: str) -> int:
        with urllib.request.urlopen(url, timeout=30) as resp:
            body = resp.read()
        if b"ifOperStatus" not in body:
            raise SystemExit(f"exporter scrape of {url} returned no interface metrics")
        return len(body)

    with concurrent.futures.ThreadPoolExecutor(max_workers=min(devices, 100)) as pool:
        list(pool.map(fetch, urls))  # warm-up
        cpu0 = proc_cpu(pid)
        size = 0
        for _ in range(rounds):
            size += sum(pool.map(fetch, urls))
        cpu = proc_cpu(pid) - cpu0
    return cpu, size // rounds


def wait_port(host: str, port: int, proto: str = "tcp", timeout: float = 10.0) -> None:
    """Wait until a TCP port accepts connections."""
    import socket

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{host}:{port} did not come up")


def main() -> None:
    """Run the comparison and print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--recording", default="network/switch/dcs-3726c")
    ap.add_argument("--devices", default="1,10,100")
    ap.add_argument("--polls", type=int, default=400, help="polls per measurement (all devices)")
    ap.add_argument("--max-repetitions", type=int, default=25)
    ap.add_argument("--pysnmp", action="store_true", help="also measure camnet's pysnmp mode")
    ap.add_argument("--render", choices=("daemon", "bench"), default="daemon",
                    help="daemon: monitor.exporter's DeviceCollector; bench: the lean collector here")
    ap.add_argument("--v3", action="store_true",
                    help="SNMPv3 authPriv (SHA/AES) for both: camnet goes through pysnmp")
    ap.add_argument("--gc-freeze", action="store_true",
                    help="gc.freeze() after the warm-up poll (a daemon start-up setting)")
    args = ap.parse_args()
    counts = [int(x) for x in args.devices.split(",")]
    top = max(counts)
    work = Path(tempfile.mkdtemp(prefix="camnet-bench-snmp-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        addresses = ",".join(f"udp:{BASE}{FIRST_HOST + i}:{PORT}" for i in range(top))
        conf = work / "snmpd.conf"
        lines = override_lines(args.recording)
        conf.write_text(f"agentaddress {addresses}\nrocommunity public 127.0.0.0/8\n"
                        f'createUser {V3_USER} SHA "{V3_AUTH}" AES "{V3_PRIV}"\n'
                        f"rouser {V3_USER} priv\n"
                        + "\n".join(lines) + "\n")
        env = dict(os.environ, SNMP_PERSISTENT_DIR=str(work / "persist"))
        # Without these modules snmpd serves only the recording's interfaces and system group.
        procs.append(subprocess.Popen(
            ["/usr/sbin/snmpd", "-f", "-Lf", str(work / "snmpd.log"), "-C", "-c", str(conf),
             "-I", "-smux,ifTable,ifXTable,interface,hr_system,hrh_storage,hr_proc,hr_device,"
             "memory,system_mib", "-p", str(work / "snmpd.pid")], env=env))
        (work / "exporter.yml").write_text(exporter_config(args.max_repetitions, args.v3))
        procs.append(subprocess.Popen(
            ["prometheus-snmp-exporter", f"--config.file={work / 'exporter.yml'}",
             f"--web.listen-address={EXPORTER}", "--log.level=error"],
            stdout=subprocess.DEVNULL, stderr=open(work / "exporter.log", "wb")))  # noqa: SIM115
        host, port = EXPORTER.split(":")
        wait_port(host, int(port))
        time.sleep(0.5)
        settings = SnmpSettings(module="generic", max_repetitions=args.max_repetitions,
                                request_timeout=5.0, retries=3)
        print(f"recording {args.recording}: {len(lines)} override lines; snmpd on {top} addresses")
        print(f"{'devices':>7} {'varbinds/poll':>13} {'camnet s/1k':>11} {'exporter s/1k':>13} "
              f"{'ratio':>6} {'pysnmp s/1k':>11}")
        for n in counts:
            rounds = max(5, args.polls // n)
            cpu_c, _, varbinds = asyncio.run(camnet_run(n, rounds, settings, args.gc_freeze,
                                                         args.render, args.v3))
            per_poll = varbinds / (rounds * n)
            cpu_e, _ = exporter_run(procs[1].pid, n, rounds)
            c1k = cpu_c / varbinds * 1000
            e1k = cpu_e / varbinds * 1000
            py = ""
            if args.pysnmp:
                py_rounds = max(2, rounds // 10)
                cpu_p, _, vb_p = asyncio.run(camnet_run(
                    n, py_rounds, settings.model_copy(update={"mode": "pysnmp"}), args.gc_freeze,
                    args.render))
                py = f"{cpu_p / vb_p * 1000:11.4f}"
            print(f"{n:>7} {per_poll:>13.0f} {c1k:>11.4f} {e1k:>13.4f} {c1k / e1k:>6.2f} {py}",
                  flush=True)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
