"""The lab's simulated access points: snmpsim agents replaying real recordings, faults on demand.

Design (docs/lab-snmp.md has the long version):
- One snmpsim process serves every access point, one SNMP engine (own engine ID, own data
  directory, the v3 user) per access point, on a private backend port (contract port + 10000).
- Values move: each access point gets its own copy of its recording in which sysUpTime,
  hrSystemUptime, snmpEngineTime/Boots, interface counters and WiFi client counts are tagged for
  the `camnet` variation module (`snmpsim_variate` below, run inside snmpsim). It computes them
  from the wall clock and the access point's control file, so a simulated `reboot` resets uptime
  and counters for SNMPv1, v2c and v3 alike (a proxy cannot rewrite encrypted v3 answers).
- A UDP proxy process (lab/snmpproxy.py) owns the contract addresses and applies `offline`,
  `hang`, `slow=N` and `loss=R` from the same control file.
"""

from __future__ import annotations

import asyncio
import bz2
import contextlib
import hashlib
import json
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from lab.snmpproxy import Control, ControlReader, write_control

SNMP_STATES: tuple[str, ...] = ("ok", "offline", "hang", "slow=N", "reboot", "loss=R")
CAMERA_ONLY_STATES = ("black", "frozen", "blurred", "moved", "dark", "clock", "auth")

REPO_ROOT = Path(__file__).resolve().parent.parent
RECORDINGS_DIR = Path(__file__).resolve().parent / "snmp_data" / "recordings"

# snmpsim listens on the access point's own address, on this offset from the contract port.
BACKEND_PORT_OFFSET = 10000
# Generous: snmpsim imports pysnmp and indexes 37 data files on a loaded 2-core CI machine.
STARTUP_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 5.0
PROBE_INTERVAL_SECONDS = 0.25
MAX_SLOW_SECONDS = 600.0
SNMPSIM_TIMER_RESOLUTION = 1.0
SNMPSIM_OPEN_FILES = 512

SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
HR_SYSTEM_UPTIME = "1.3.6.1.2.1.25.1.1.0"
SNMP_ENGINE_BOOTS = "1.3.6.1.6.3.10.2.1.2.0"
SNMP_ENGINE_TIME = "1.3.6.1.6.3.10.2.1.3.0"
IF_NUMBER = "1.3.6.1.2.1.2.1.0"
IF_TABLE = "1.3.6.1.2.1.2.2.1."
IF_X_TABLE = "1.3.6.1.2.1.31.1.1.1."

# Interface counter columns -> (direction, bytes per unit): octets move at the interface's
# byte rate, packets at that rate divided by a typical packet size, errors and discards not at all.
_IF_TABLE_COUNTERS: dict[int, tuple[str, float]] = {
    10: ("in", 1.0), 11: ("in", 650.0), 12: ("in", 40000.0), 13: ("in", 0.0), 14: ("in", 0.0),
    15: ("in", 0.0), 16: ("out", 1.0), 17: ("out", 650.0), 18: ("out", 40000.0),
    19: ("out", 0.0), 20: ("out", 0.0),
}
_IF_X_COUNTERS: dict[int, tuple[str, float]] = {
    2: ("in", 40000.0), 3: ("in", 60000.0), 4: ("out", 40000.0), 5: ("out", 60000.0),
    6: ("in", 1.0), 7: ("in", 650.0), 8: ("in", 40000.0), 9: ("in", 60000.0),
    10: ("out", 1.0), 11: ("out", 650.0), 12: ("out", 40000.0), 13: ("out", 60000.0),
}

# Subtrees kept when curating a recording: what an access-point poller reads, nothing huge.
STANDARD_SUBTREES: tuple[str, ...] = (
    "1.2.840.10036.",  # IEEE802dot11-MIB
    "1.3.6.1.2.1.1.",  # system
    "1.3.6.1.2.1.2.",  # interfaces
    "1.3.6.1.2.1.11.",  # snmp
    "1.3.6.1.2.1.25.1.",  # hrSystem
    "1.3.6.1.2.1.25.2.",  # hrStorage
    "1.3.6.1.2.1.25.3.3.",  # hrProcessorTable
    "1.3.6.1.2.1.31.1.1.",  # ifXTable
    "1.3.6.1.4.1.2021.4.",  # UCD memory
    "1.3.6.1.4.1.2021.10.",  # UCD load
    "1.3.6.1.4.1.2021.11.",  # UCD cpu
    "1.3.6.1.6.3.10.2.1.",  # snmpEngine
)
MAX_INTERFACES = 24  # interfaces kept from a controller's recording (ruijie has 3,271)


@dataclass(frozen=True)
class Recording:
    """A snmpsim-data recording used by the lab, and how to curate and animate it."""

    name: str
    source: str  # path under snmpsim_data/data
    description: str
    keep_all: bool = False
    vendor_subtrees: tuple[tuple[str, int | None], ...] = ()  # (prefix, max lines kept)
    client_columns: tuple[str, ...] = ()  # Gauge32 WiFi client counts (scalar or column prefix)


RECORDINGS: dict[str, Recording] = {
    r.name: r
    for r in (
        Recording(
            "ubiquiti-m5", "network/wifi/ubiquiti-m5.snmprec.bz2",
            "Ubiquiti NanoStation M5 (airOS), the village-hall access point",
            keep_all=True,
            client_columns=("1.3.6.1.4.1.41112.1.4.5.1.15.",),  # ubntWlStatStaCount
        ),
        Recording(
            "aruba-7210", "network/wifi/aruba-7210.snmprec.bz2",
            "Aruba 7210 WLAN controller (ArubaOS 6.5)",
            vendor_subtrees=(
                ("1.3.6.1.4.1.14823.2.2.1.1.1.", None),  # wlsxSwitchInfo (cpu, memory, storage)
                ("1.3.6.1.4.1.14823.2.2.1.1.3.1.", None),  # wlsxSwitchTotalNumAccessPoints
                ("1.3.6.1.4.1.14823.2.2.1.1.3.2.", None),  # wlsxSwitchTotalNumStationsAssociated
                ("1.3.6.1.2.1.47.1.1.1.", None),  # entPhysicalTable
            ),
            client_columns=("1.3.6.1.4.1.14823.2.2.1.1.3.2.0",),
        ),
        Recording(
            "ruckus-scg", "network/wifi/ruckus-smartcell-gateway.snmprec.bz2",
            "Ruckus SmartCell Gateway (WLAN controller)",
            vendor_subtrees=(("1.3.6.1.4.1.25053.1.3.1.", None),),  # ruckusSCGSystemStats
            client_columns=("1.3.6.1.4.1.25053.1.3.1.1.1.15.2.0",),  # ...StatsNumSta
        ),
        Recording(
            "ruijie-m18000", "network/wifi/ruijie-m18000.snmprec.bz2",
            "Ruijie M18000-WS-ED wireless switch module (WLAN controller)",
            vendor_subtrees=(
                ("1.3.6.1.4.1.4881.1.1.10.2.35.1.1.", None),  # ruijie memory pool
                ("1.3.6.1.4.1.4881.1.1.10.2.36.1.1.", None),  # ruijie CPU
                ("1.3.6.1.4.1.4881.1.1.10.2.56.2.1.1.1.34.", 8),  # StaNum of 8 managed APs
            ),
            client_columns=("1.3.6.1.4.1.4881.1.1.10.2.56.2.1.1.1.34.",),
        ),
        Recording(
            "sangfor-wac", "network/wifi/sangfor-wac-2.snmprec.bz2",
            "Sangfor wireless access controller (Linux Wac)",
            vendor_subtrees=(("1.3.6.1.4.1.35047.1.", None),),
        ),
        Recording(
            "vyatta-router", "network/router/vyatta-unknown.snmprec.bz2",
            "Vyatta router (the EdgeOS lineage of small routers)",
        ),
        Recording(
            "sangfor-ac", "os/linux/sangfor.snmprec.bz2",
            "Sangfor access controller (Linux 2.4 appliance)",
            vendor_subtrees=(("1.3.6.1.4.1.35047.1.", None),),
        ),
    )
}
DEFAULT_RECORDING = "ubiquiti-m5"
# Every third access point (positions 2, 5, 8, ...) replays other gear, in this order.
OTHER_RECORDINGS: tuple[str, ...] = (
    "aruba-7210", "ruckus-scg", "ruijie-m18000", "sangfor-wac", "vyatta-router", "sangfor-ac",
)


@dataclass
class LabAp:
    """One simulated access point: inventory id and the contract address it answers on."""

    id: str
    address: str
    port: int = 1161
    recording: str | None = None  # a RECORDINGS name; None = assigned by position


def assign_recordings(aps: Iterable[LabAp]) -> dict[str, str]:
    """Recording per access point: ubiquiti-m5 mostly, every third one other gear (stable)."""
    out: dict[str, str] = {}
    for index, ap in enumerate(aps):
        if ap.recording is not None:
            out[ap.id] = ap.recording
        elif index % 3 == 2:
            out[ap.id] = OTHER_RECORDINGS[(index // 3) % len(OTHER_RECORDINGS)]
        else:
            out[ap.id] = DEFAULT_RECORDING
    return out


def normalize_state(state: str) -> str:
    """Validate an access-point state and return its canonical spelling ('slow=2', 'loss=0.5')."""
    text = state.strip().lower()
    kind, sep, arg = text.partition("=")
    if not sep and kind in ("ok", "offline", "hang", "reboot"):
        return kind
    if kind in ("slow", "loss") and sep:
        try:
            value = float(arg)
        except ValueError:
            value = math.nan
        if kind == "slow" and 0 < value <= MAX_SLOW_SECONDS:
            return f"slow={value:g}"
        if kind == "loss" and 0 <= value <= 1:
            return f"loss={value:g}"
        limits = f"0 < N <= {MAX_SLOW_SECONDS:g} seconds" if kind == "slow" else "0 <= R <= 1"
        raise ValueError(f"bad access-point state {state!r}: {kind}= needs a number, {limits}")
    if kind in CAMERA_ONLY_STATES:
        raise ValueError(
            f"state {state!r} applies to cameras only; access points accept: "
            + ", ".join(SNMP_STATES)
        )
    raise ValueError(f"unknown access-point state {state!r}; accepted: " + ", ".join(SNMP_STATES))


# ---------------------------------------------------------------------------------------------
# Recordings: curation (trim snmpsim-data to what a poller reads) and per-device animation.


def snmpsim_data_dir() -> Path:
    """Where the snmpsim-data package keeps its recordings."""
    import snmpsim_data  # the package only ships data; imported only when curating

    return Path(snmpsim_data.__file__).resolve().parent / "data"


def _records(lines: Iterable[str]) -> Iterator[tuple[str, str, str]]:
    for line in lines:
        line = line.rstrip("\r\n")
        if not line or line.startswith("#") or line.count("|") < 2:
            continue
        oid, tag, value = line.split("|", 2)
        yield oid, tag, value


def _oid_key(oid: str) -> tuple[int, ...]:
    return tuple(int(x) for x in oid.split(".") if x)


def curate(recording: Recording, lines: Iterable[str]) -> list[str]:
    """Keep the subtrees an access-point poller reads; cap interfaces and big vendor tables."""
    records = list(_records(lines))
    if recording.keep_all:
        return [f"{o}|{t}|{v}" for o, t, v in records]
    if_indexes = sorted(
        int(v) for o, t, v in records if o.startswith(IF_TABLE + "1.") and t.split(":")[0] == "2"
    )
    kept_ifs = set(if_indexes[:MAX_INTERFACES])
    counts: dict[str, int] = {}
    out: list[str] = []
    for oid, tag, value in records:
        if oid.startswith((IF_TABLE, IF_X_TABLE)):
            if int(oid.rsplit(".", 1)[1]) not in kept_ifs:
                continue
        elif oid == IF_NUMBER:
            value = str(len(kept_ifs))
        elif not oid.startswith(STANDARD_SUBTREES):
            match = next((s for s in recording.vendor_subtrees if oid.startswith(s[0])), None)
            if match is None:
                continue
            prefix, limit = match
            counts[prefix] = counts.get(prefix, 0) + 1
            if limit is not None and counts[prefix] > limit:
                continue
        out.append(f"{oid}|{tag}|{value}")
    out.sort(key=lambda line: _oid_key(line.split("|", 1)[0]))
    return out


def curate_all(target: Path = RECORDINGS_DIR) -> list[Path]:
    """Regenerate lab/snmp_data/recordings/ from the installed snmpsim-data."""
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for rec in RECORDINGS.values():
        source = snmpsim_data_dir() / rec.source
        with bz2.open(source, "rt", encoding="utf-8", errors="surrogateescape") as fh:
            lines = curate(rec, fh)
        path = target / f"{rec.name}.snmprec"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogateescape")
        written.append(path)
    return written


def _unit(*parts: object) -> float:
    """A stable pseudo-random number in [0, 1) for this device and key."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _plain_value(tag: str, value: str) -> tuple[str, str, bool]:
    """Strip a variation the recording already had (numeric) -> (tag, initial value, varied)."""
    if ":" not in tag:
        return tag, value, False
    base = tag.split(":", 1)[0]
    opts = dict(p.split("=", 1) for p in value.split(",") if "=" in p)
    return base, opts.get("initial", ""), True


def animate(recording: Recording, lines: Iterable[str], ap_id: str) -> list[str]:
    """Tag the moving values of one device's copy of a recording for the camnet module."""
    records = [(o, *_plain_value(t, v)) for o, t, v in _records(lines)]
    oper_up = {
        int(r[0].rsplit(".", 1)[1]) for r in records if r[0].startswith(IF_TABLE + "8.") and r[2] == "1"
    }
    loopback = {
        int(r[0].rsplit(".", 1)[1]) for r in records if r[0].startswith(IF_TABLE + "3.") and r[2] == "24"
    }
    out = []
    for oid, tag, value, varied in records:
        spec = _animation(recording, ap_id, oid, tag, value, varied, oper_up, loopback)
        if spec is None:
            if value == "" and tag in ("2", "65", "66", "67", "70"):
                value = "0"  # a variation line without an initial value
            out.append(f"{oid}|{tag}|{value}")
        else:
            out.append(f"{oid}|{tag}:camnet|{spec}")
    return out


def _animation(
    recording: Recording, ap_id: str, oid: str, tag: str, value: str, varied: bool,
    oper_up: set[int], loopback: set[int],
) -> str | None:
    base = value if value.lstrip("-").isdigit() else ""
    if oid in (SYS_UPTIME, HR_SYSTEM_UPTIME) and tag == "67":
        # a recording without a value gets 1-90 days of uptime
        start = base or str(int((1 + 89 * _unit(ap_id, "uptime")) * 86400 * 100))
        return f"k=uptime,base={start}"
    if oid == SNMP_ENGINE_TIME and tag == "2":
        return f"k=etime,base={base or 0}"
    if oid == SNMP_ENGINE_BOOTS and tag == "2":
        return f"k=eboots,base={base or 1}"
    for table, columns, bits in ((IF_TABLE, _IF_TABLE_COUNTERS, 32), (IF_X_TABLE, _IF_X_COUNTERS, 64)):
        if oid.startswith(table) and tag in ("65", "70"):
            column, _, index = oid[len(table):].partition(".")
            if int(column) not in columns or not index.isdigit():
                return None
            direction, unit = columns[int(column)]
            rate = _interface_rate(ap_id, int(index), direction, oper_up, loopback)
            per_second = rate / unit if unit else 0.0
            width = 64 if tag == "70" else bits
            return f"k=counter,base={base or 0},rate={per_second:.3f},bits={width}"
    for column in recording.client_columns:
        if (oid == column or oid.startswith(column)) and tag in ("2", "65", "66"):
            recorded = int(base or 0)
            # an access point has a handful of clients, a controller its recorded crowd
            center = recorded if recorded > 20 else 3 + 12 * _unit(ap_id, oid, "clients")
            period = 600 + 1800 * _unit(ap_id, oid, "period")
            phase = 2 * math.pi * _unit(ap_id, oid, "phase")
            return f"k=clients,center={center:.1f},period={period:.0f},phase={phase:.3f}"
    if varied and tag in ("65", "70", "67", "66", "2"):
        # a value the recording itself varied (snmpsim's numeric module): keep it alive
        return f"k=gauge,center={10 + 20 * _unit(ap_id, oid)},period=900,phase=0"
    return None


def _interface_rate(
    ap_id: str, index: int, direction: str, oper_up: set[int], loopback: set[int]
) -> float:
    """Bytes per second of one interface direction: steady, plausible for a village hall."""
    if index not in oper_up:
        return 0.0
    if index in loopback:
        return 40.0
    down = 2_000 + 150_000 * _unit(ap_id, index, "rate") ** 2
    return down if direction == "in" else down * (0.15 + 0.5 * _unit(ap_id, index, "up"))


# ---------------------------------------------------------------------------------------------
# Runs inside snmpsim (through the generated variation module): compute a tagged value now.

_SPECS: dict[str, dict[str, str]] = {}
_CONTROLS: dict[str, ControlReader] = {}


def _spec(text: str) -> dict[str, str]:
    spec = _SPECS.get(text)
    if spec is None:
        spec = dict(p.split("=", 1) for p in text.split(","))
        _SPECS[text] = spec
    return spec


def _control_for(data_file: str) -> Control:
    directory = os.path.dirname(data_file)
    reader = _CONTROLS.get(directory)
    if reader is None:
        reader = ControlReader(os.path.join(directory, "control.json"))
        _CONTROLS[directory] = reader
    return reader.current()


def live_value(spec: dict[str, str], control: Control, now: float) -> int:
    """The value of one animated record at `now` for a device in this control state."""
    rebooted = control.boot_time is not None
    since = now - (control.boot_time if control.boot_time is not None else control.lab_start)
    since = max(since, 0.0)
    kind = spec["k"]
    if kind == "uptime":
        ticks = since * 100 + (0 if rebooted else int(spec["base"]))
        return int(ticks) % 2**32
    if kind == "etime":
        return min(int(since + (0 if rebooted else int(spec["base"]))), 2**31 - 1)
    if kind == "eboots":
        return int(spec["base"]) + control.boots
    if kind == "counter":
        start = 0 if rebooted else int(spec["base"])
        return int(start + float(spec["rate"]) * since) % 2 ** int(spec["bits"])
    center = float(spec["center"])
    wave = center * (1 + 0.35 * math.sin(2 * math.pi * now / float(spec["period"]) + float(spec["phase"])))
    # a little jitter that changes every 10 s, the same for every reader in that window
    jitter = (_unit(spec.get("phase"), int(now // 10)) - 0.5) * max(2.0, 0.1 * center)
    value = max(0.0, wave + jitter)
    if kind == "clients" and rebooted:
        value *= min(1.0, since / 300)  # clients come back over five minutes after a reboot
    return round(value)


def snmpsim_variate(oid: Any, tag: str, value: str, context: dict[str, Any]) -> tuple[Any, str, Any]:
    """snmpsim variation hook: a `tag:camnet|spec` record evaluated for this request."""
    if context.get("setFlag") or (not context.get("nextFlag") and not context.get("exactMatch")):
        return context["origOid"], tag, context["errorStatus"]
    control = _control_for(context["dataFile"])
    return oid, tag, live_value(_spec(value), control, time.time())


VARIATION_MODULE = '''\
"""snmpsim variation module `camnet`, generated by lab/snmp.py: values move with the clock."""
import sys
sys.path.insert(0, {root!r})
from lab.snmp import snmpsim_variate as _variate


def init(**context):
    pass


def variate(oid, tag, value, **context):
    return _variate(oid, tag, value, context)


def shutdown(**context):
    pass
'''


# ---------------------------------------------------------------------------------------------
# The lab.


def _tlv(tag: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 0x80:
        return bytes([tag, n]) + payload
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + payload


def v2c_get_sysuptime(community: str, request_id: int = 1) -> bytes:
    """A minimal SNMPv2c GET of sysUpTime.0 (readiness probe)."""
    oid = bytes([0x2B, 6, 1, 2, 1, 1, 3, 0])
    varbind = _tlv(0x30, _tlv(0x06, oid) + b"\x05\x00")
    pdu = _tlv(0xA0, _tlv(0x02, request_id.to_bytes(4, "big")) + b"\x02\x01\x00\x02\x01\x00"
               + _tlv(0x30, varbind))
    return _tlv(0x30, b"\x02\x01\x01" + _tlv(0x04, community.encode()) + pdu)


class _ProbeProtocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answered: set[tuple[str, int]] = set()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.answered.add((addr[0], addr[1]))


class SnmpLab:
    """The simulated access points: snmpsim + fault proxy, started and stopped together."""

    SNMP_STATES: ClassVar[tuple[str, ...]] = SNMP_STATES

    def __init__(
        self,
        aps: list[LabAp],
        state_dir: Path,
        *,
        community: str = "public",
        v3_user: str = "camnet",
        v3_auth_key: str = "",
        v3_priv_key: str = "",
        backend_port_offset: int = BACKEND_PORT_OFFSET,
    ) -> None:
        ids = [ap.id for ap in aps]
        if len(set(ids)) != len(ids):
            raise ValueError("access point ids must be unique")
        endpoints = [(ap.address, ap.port) for ap in aps]
        if len(set(endpoints)) != len(endpoints):
            raise ValueError("two access points share an address and port")
        if not community or "/" in community or community.startswith(".") or community == "self":
            raise ValueError("the community must be a plain non-empty name (it names a data file)")
        if len(v3_auth_key) < 8 or len(v3_priv_key) < 8:
            raise ValueError("SNMPv3 auth and priv keys must be at least 8 characters (snmpsim)")
        if any(c.isspace() for c in v3_user + v3_auth_key + v3_priv_key):
            raise ValueError("SNMPv3 user and keys must not contain whitespace (snmpsim args file)")
        self.aps = list(aps)
        self.state_dir = Path(state_dir)
        self.root = self.state_dir / "snmp"
        self.recordings = assign_recordings(self.aps)
        for ap_id, name in self.recordings.items():
            if name not in RECORDINGS:
                raise ValueError(f"{ap_id}: unknown recording {name!r}; known: {', '.join(RECORDINGS)}")
        self._by_id = {ap.id: ap for ap in self.aps}
        self._community = community
        self._v3 = (v3_user, v3_auth_key, v3_priv_key)
        self._offset = backend_port_offset
        self._states = dict.fromkeys(ids, "ok")
        self._controls: dict[str, Control] = {}
        self._snmpsim: subprocess.Popen[bytes] | None = None
        self._proxy: subprocess.Popen[bytes] | None = None

    # -- paths
    def _agent_dir(self, ap_id: str) -> Path:
        return self.root / "agents" / ap_id

    def backend(self, ap: LabAp) -> tuple[str, int]:
        """Where snmpsim itself answers for this access point (no faults there)."""
        port = ap.port + self._offset
        if not 0 < port < 65536:
            raise ValueError(f"{ap.id}: backend port {port} out of range")
        return ap.address, port

    # -- lifecycle
    async def start(self) -> None:
        """Write the data, start snmpsim and the proxy; return when every agent answers."""
        if self._snmpsim is not None:
            raise RuntimeError("the SNMP lab is already running")
        await asyncio.to_thread(self._prepare)
        try:
            self._spawn()
            await self._wait_ready()
        except BaseException:
            await self.stop()
            raise

    def _prepare(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)
        for sub in ("agents", "cache", "variation"):
            (self.root / sub).mkdir(parents=True)
        now = time.time()
        sources: dict[str, list[str]] = {}
        for ap in self.aps:
            name = self.recordings[ap.id]
            if name not in sources:
                path = RECORDINGS_DIR / f"{name}.snmprec"
                sources[name] = path.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
            directory = self._agent_dir(ap.id)
            directory.mkdir()
            data = directory / f"{self._community}.snmprec"
            lines = animate(RECORDINGS[name], sources[name], ap.id)
            data.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogateescape")
            # snmpsim registers `self.snmprec` as the default (empty) context: SNMPv3 requests
            # without a context name land there. A hard link, since a symlink would change the
            # community snmpsim derives from the path.
            try:
                os.link(data, directory / "self.snmprec")
            except OSError:  # a filesystem without hard links
                shutil.copyfile(data, directory / "self.snmprec")
            control = Control(state="ok", lab_start=now)
            state = self._states[ap.id]
            control.state = state
            self._controls[ap.id] = control
            write_control(directory / "control.json", control)
        (self.root / "variation" / "camnet.py").write_text(
            VARIATION_MODULE.format(root=str(REPO_ROOT)), encoding="utf-8"
        )
        user, auth, priv = self._v3
        lines = []
        for ap in self.aps:
            host, port = self.backend(ap)
            lines.append(
                f"--v3-engine-id=auto --data-dir={self._agent_dir(ap.id)} "
                f"--v3-user={user} --v3-auth-key={auth} --v3-auth-proto=SHA "
                f"--v3-priv-key={priv} --v3-priv-proto=AES --agent-udpv4-endpoint={host}:{port}"
            )
        args = self.root / "snmpsim.args"  # holds the v3 keys: not on the command line, 0600
        fd = os.open(args, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        proxy = {
            "agents": [
                {
                    "id": ap.id,
                    "front": [ap.address, ap.port],
                    "back": list(self.backend(ap)),
                    "control": str(self._agent_dir(ap.id) / "control.json"),
                }
                for ap in self.aps
            ],
            "watch_stdin": True,
        }
        (self.root / "proxy.json").write_text(json.dumps(proxy, indent=1), encoding="utf-8")

    def _spawn(self) -> None:
        path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
        env = dict(os.environ, SNMPSIM_ALLOW_ROOT="true", PYTHONPATH=path)
        with open(self.root / "snmpsim.log", "wb") as log:
            self._snmpsim = subprocess.Popen(
                [
                    sys.executable, "-m", "lab.snmp", "snmpsim",
                    f"--args-from-file={self.root / 'snmpsim.args'}",
                    f"--cache-dir={self.root / 'cache'}",
                    f"--variation-modules-dir={self.root / 'variation'}",
                    # info would log every request and the v3 keys
                    "--log-level=error",
                    f"--pid-file={self.root / 'snmpsim.pid'}",
                ],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env, cwd=REPO_ROOT, start_new_session=True,
            )
        config = self.root / "proxy.json"
        data = json.loads(config.read_text(encoding="utf-8"))
        data["kill_pgid_on_eof"] = self._snmpsim.pid
        config.write_text(json.dumps(data, indent=1), encoding="utf-8")
        with open(self.root / "proxy.log", "wb") as log:
            self._proxy = subprocess.Popen(
                [sys.executable, "-m", "lab.snmpproxy", str(config)],
                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                env=env, cwd=REPO_ROOT, start_new_session=True,
            )

    async def _wait_ready(self) -> None:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            _ProbeProtocol, local_addr=("127.0.0.1", 0)
        )
        wanted = {(ap.address, ap.port) for ap in self.aps}
        packet = v2c_get_sysuptime(self._community, secrets.randbelow(2**31))
        try:
            async with asyncio.timeout(STARTUP_TIMEOUT_SECONDS):
                while not wanted <= protocol.answered:
                    for name, proc in (("snmpsim", self._snmpsim), ("snmp proxy", self._proxy)):
                        if proc is not None and proc.poll() is not None:
                            raise RuntimeError(
                                f"{name} exited with status {proc.returncode} during start-up: "
                                f"{self._log_tail(name)}"
                            )
                    for address in wanted - protocol.answered:
                        transport.sendto(packet, address)
                    await asyncio.sleep(PROBE_INTERVAL_SECONDS)
        except TimeoutError:
            missing = sorted(f"{a}:{p}" for a, p in wanted - protocol.answered)
            raise RuntimeError(
                f"SNMP lab: {len(missing)} agents not answering after {STARTUP_TIMEOUT_SECONDS:g} s "
                f"({', '.join(missing[:5])}...); see {self.root}/snmpsim.log"
            ) from None
        finally:
            transport.close()

    def _log_tail(self, name: str) -> str:
        path = self.root / ("snmpsim.log" if name == "snmpsim" else "proxy.log")
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(lines[-3:]) or "(empty log)"

    async def stop(self) -> None:
        """Stop the proxy and snmpsim (their whole process groups); safe to call twice."""
        procs = [p for p in (self._proxy, self._snmpsim) if p is not None]
        self._proxy = self._snmpsim = None
        for proc in procs:
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for proc in procs:
            try:
                await asyncio.to_thread(proc.wait, max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                await asyncio.to_thread(proc.wait)
            # members of the group that outlived their leader
            _signal_group(proc, signal.SIGKILL)

    # -- faults
    def set_fault(self, ap_id: str, state: str) -> None:
        """Change one access point now: ok, offline, hang, slow=N, reboot, loss=R."""
        if ap_id not in self._by_id:
            known = ", ".join(list(self._by_id)[:3])
            raise ValueError(
                f"unknown access point {ap_id!r} (the lab has {len(self._by_id)}: {known}, ...)"
            )
        canonical = normalize_state(state)
        control = self._controls.get(ap_id)
        if canonical == "reboot":
            canonical = "ok"  # the device restarts at once and then runs normally
            if control is not None:
                control.boot_time = time.time()
                control.boots += 1
        self._states[ap_id] = canonical
        if control is not None:
            control.state = canonical
            write_control(self._agent_dir(ap_id) / "control.json", control)

    def status(self) -> dict[str, str]:
        """Current state of every access point."""
        return dict(self._states)

    def recording_of(self, ap_id: str) -> str:
        """Name of the recording this access point replays."""
        return self.recordings[ap_id]


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def run_snmpsim(args: list[str]) -> int:
    """snmpsim's command responder with a coarser housekeeping timer (idle CPU)."""
    from pysnmp.carrier.asyncio.dispatch import AsyncioDispatcher
    from snmpsim import datafile
    from snmpsim.commands import responder

    # snmpsim keeps at most 31 data files open and reopens (text + dbm index) on a miss; the
    # lab has two per access point, so polling 37 of them round-robin would reopen every time.
    datafile.DataFile.max_queue_entries = SNMPSIM_OPEN_FILES

    original_init = AsyncioDispatcher.__init__

    def init(self: AsyncioDispatcher, *a: Any, **kw: Any) -> None:
        original_init(self, *a, **kw)
        # pysnmp ticks every engine's cache-expiry timers 10 times a second: with 37 engines
        # that alone was 0.7% of a core while idle. Once a second is plenty for a responder.
        self.set_timer_resolution(SNMPSIM_TIMER_RESOLUTION)

    AsyncioDispatcher.__init__ = init
    sys.argv = ["snmpsim-command-responder", *args]
    return int(responder.main() or 0)


def main(argv: list[str] | None = None) -> int:
    """`python3 -m lab.snmp curate`: regenerate lab/snmp_data/recordings from snmpsim-data."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["snmpsim"]:
        return run_snmpsim(args[1:])
    if args != ["curate"]:
        print("usage: python3 -m lab.snmp curate", file=sys.stderr)
        return 2
    for path in curate_all():
        lines = path.read_text(encoding="utf-8", errors="surrogateescape").count("\n")
        print(f"{path.relative_to(REPO_ROOT)}: {lines} records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
