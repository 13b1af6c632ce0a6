"""SNMP check of an access point: system group, interfaces, WiFi clients, CPU and memory."""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any, Literal

from pydantic import Field, field_validator

from probes import snmp_modules as m
from probes.base import CheckResult, CheckSettings, Duration, MetricDef, Sample, Target
from probes.snmp_ber import (
    GET_NEXT_REQUEST,
    OBJECT_IDENTIFIER,
    VERSION_1,
    VERSION_2C,
    VarBind,
    decode_subids,
    encode_oid,
    oid_str,
)
from probes.snmp_client import (
    CommunitySession,
    Session,
    SnmpAgentError,
    SnmpBadReply,
    SnmpError,
    SnmpNoSuchObject,
    SnmpWalkError,
    Stats,
    get,
    walk,
)
from probes.snmp_usm import UsmSession

METRICS: dict[str, MetricDef] = {
    "camnet_ap_up": MetricDef("gauge", "1 when the SNMP agent answered in the last check"),
    "camnet_ap_boot_time_seconds": MetricDef(
        "gauge", "Unix time of the last boot (largest of sysUpTime, snmpEngineTime, hrSystemUptime,"
        " each unwrapped)"
    ),
    "camnet_ap_wifi_clients": MetricDef(
        "gauge", "WiFi clients associated, per radio", ("radio",)
    ),
    "camnet_ap_wifi_channel": MetricDef("gauge", "WiFi channel in use, per radio", ("radio",)),
    "camnet_ap_wifi_frequency_hertz": MetricDef(
        "gauge", "WiFi centre frequency, per radio", ("radio",)
    ),
    "camnet_ap_wifi_noise_dbm": MetricDef("gauge", "WiFi noise floor in dBm, per radio", ("radio",)),
    "camnet_ap_wifi_utilization_ratio": MetricDef(
        "gauge", "Share of airtime the channel is busy (0-1), per radio", ("radio",)
    ),
    "camnet_ap_interface_up": MetricDef(
        "gauge", "1 when the interface's ifOperStatus is up", ("interface",)
    ),
    "camnet_ap_interface_receive_bytes_total": MetricDef(
        "counter", "Bytes received (ifHCInOctets, ifInOctets where 64-bit is missing)",
        ("interface",),
    ),
    "camnet_ap_interface_transmit_bytes_total": MetricDef(
        "counter", "Bytes sent (ifHCOutOctets, ifOutOctets where 64-bit is missing)",
        ("interface",),
    ),
    "camnet_ap_interface_errors_total": MetricDef(
        "counter", "Packets with errors (ifInErrors, ifOutErrors)", ("interface", "direction")
    ),
    "camnet_ap_cpu_usage_ratio": MetricDef("gauge", "CPU busy share (0-1), averaged over CPUs"),
    "camnet_ap_memory_usage_ratio": MetricDef("gauge", "Memory in use (0-1), without caches"),
    "camnet_ap_info": MetricDef(
        "info", "Identity of the access point", ("vendor", "model", "sys_name", "sys_descr")
    ),
    "camnet_ap_snmp_varbinds": MetricDef("gauge", "Varbinds received in the last SNMP check"),
    "camnet_ap_snmp_requests": MetricDef(
        "gauge", "SNMP requests sent in the last check, retries included"
    ),
}

# A boot time that moves forward by more than this is a reboot: far above the jitter of
# now - uptime (a second or so) and small host clock steps; the same 30 s as camnet_ap:rebooted
# in config/prometheus/rules/camnet.rules.yml.
REBOOT_THRESHOLD = 30.0
# Some agents answer every GETBULK with an error-status; they are walked with GETNEXT for this
# long, then GETBULK is tried again: two errors in a row can still be passing trouble, and on a
# slow line a GETNEXT walk of a large AP does not fit the check's deadline.
BULK_RETRY_AFTER = 3600.0
# The uptime clocks: name, OID, seconds per unit, and the modulus they wrap at (TimeTicks after
# 497 days; snmpEngineTime is 0..2**31-1 seconds).
UPTIME_CLOCKS = (
    ("sysUpTime", m.SYS_UPTIME, 0.01, 2**32),
    ("snmpEngineTime", m.SNMP_ENGINE_TIME, 1.0, 2**31),
    ("hrSystemUptime", m.HR_SYSTEM_UPTIME, 0.01, 2**32),
)
# A clock that went back wrapped (rather than restarted) only if it reads, within this, what it
# should read after the wrap: the clocks are read at the start of a poll and timed after its
# walk (up to the check's 10 s deadline, retries included), and the agent's clock drifts from
# camnet's, by up to WRAP_TOLERANCE_SHARE of the time between the readings. A reboot closer
# than this to the wrap point is taken for a wrap.
WRAP_TOLERANCE = 30.0
WRAP_TOLERANCE_SHARE = 0.01


class SnmpSettings(CheckSettings):
    """What to walk (module) and how (retries, bulk size); credentials live in auths."""

    module: str = Field(default="auto", description="device profile, or auto from sysObjectID")
    port: int = Field(default=161, ge=1, le=65535)
    # Village lines lose packets: at 30 % loss on the lab, 3 retries of 1 s made 39 of 40 polls
    # succeed against 32 of 40 with 1 retry of 2 s, at the same median time (net-snmp: 1 s x 5).
    retries: int = Field(default=3, ge=0, le=10)
    request_timeout: Duration = Field(default=1.0, description="wait for one answer")
    max_repetitions: int = Field(default=25, ge=1, le=200)
    bulk: bool = True
    mode: Literal["fast", "pysnmp"] = Field(
        default="fast", description="fast: camnet's own BER codec and USM; pysnmp: pysnmp 7")
    concurrency: int = Field(default=64, ge=1, le=1024)

    @field_validator("module")
    @classmethod
    def _known_module(cls, v: str) -> str:
        if v != "auto" and v not in m.MODULES:
            raise ValueError(f"unknown module {v!r}; one of: auto, {', '.join(m.MODULES)}")
        return v


@functools.lru_cache(maxsize=4096)
def _enc(oid: str) -> bytes:
    return encode_oid(oid)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").rstrip("\x00").strip()
    return "" if value is None else str(value)


def make_session(target: Target, settings: SnmpSettings) -> Session:
    """The transport for a target: camnet's codec (v1/v2c) and USM (v3), or pysnmp on request."""
    auth = target.auth.config if target.auth is not None else None
    version = getattr(auth, "version", "2c")
    port = int(target.options.get("snmp_port") or settings.port)
    if settings.mode == "pysnmp":
        from probes.snmp_v3 import PysnmpSession  # pysnmp is slow to import: only on request

        return PysnmpSession(target.address, port, target.auth, settings.request_timeout,
                             settings.retries)
    if version == "3" and target.auth is not None and auth is not None:
        return UsmSession(target.address, port, auth.username or "", auth.security_level,
                          auth.auth_protocol, target.auth.secret("auth_password") or "",
                          auth.priv_protocol, target.auth.secret("priv_password") or "",
                          auth.context_name, settings.request_timeout, settings.retries)
    community = (target.auth.secret("community") if target.auth is not None else None) or "public"
    return CommunitySession(target.address, port, VERSION_1 if version == "1" else VERSION_2C,
                            community.encode(), settings.request_timeout, settings.retries)


async def _detect(session: Session, sys_object_id: str, state: dict[str, Any]) -> m.Module:
    """The module for `auto`: by sysObjectID, else by probing vendor subtrees (cached)."""
    module = m.module_for_sys_object_id(sys_object_id)
    if module is not None:
        return module
    cached = state.get("detected")
    if cached and cached[0] == sys_object_id:
        return m.MODULES[cached[1]]
    candidates = [m.MODULES[name] for name in m.DETECT_ORDER]
    probes = [_enc(c.detect[0]) for c in candidates]
    resp = await session.request(GET_NEXT_REQUEST, probes)
    chosen = m.MODULES["generic"]
    if not resp.error_status and len(resp.varbinds) == len(probes):
        for module, probe, vb in zip(candidates, probes, resp.varbinds, strict=True):
            if vb[0].startswith(probe) and vb[2] is not None:
                chosen = module
                break
    state["detected"] = (sys_object_id, chosen.name)
    return chosen


async def probe_snmp(
    target: Target, settings: SnmpSettings, state: dict[str, Any], deadline: float
) -> CheckResult:
    """Poll the access point's SNMP agent once."""
    result = CheckResult("snmp", success=False)
    session = make_session(target, settings)
    answered = False
    try:
        async with asyncio.timeout_at(deadline):
            answered = await _poll(session, target, settings, state, result)
    except SnmpError as exc:
        result.reason = exc.reason
        result.message = str(exc)
    except TimeoutError:
        result.reason = "timeout"
        result.message = "check deadline reached"
    except (ValueError, ArithmeticError) as exc:  # BerError is a ValueError
        # Whatever an answer still makes the code trip over is the device's fault, not ours.
        result.reason = SnmpBadReply.reason
        result.message = f"malformed answer: {type(exc).__name__}: {exc}"
    finally:
        close = getattr(session, "close", None)
        if close is not None:
            close()
    stats: Stats = getattr(session, "stats", Stats())
    answered = answered or "sys_object_id" in result.facts
    # A walk that stopped on bad OIDs still leaves a working agent: up, with a reason.
    result.success = answered and result.reason in ("", "oid_not_increasing")
    if answered and result.reason:
        result.problems["snmp_partial"] = True
    result.add("camnet_ap_up", 1 if answered else 0)
    result.add("camnet_ap_snmp_varbinds", stats.varbinds)
    result.add("camnet_ap_snmp_requests", stats.requests)
    result.facts["requests"] = stats.requests
    result.facts["retries"] = stats.retries
    result.facts["varbinds"] = stats.varbinds
    prev = state.get("answered")
    if prev is not None and prev != answered:
        result.debug("agent answers again" if answered else f"agent stopped answering: {result.reason}")
    state["answered"] = answered
    return result


async def _poll(session: Session, target: Target, settings: SnmpSettings, state: dict[str, Any],
                result: CheckResult) -> bool:
    """The poll itself; fills `result`, returns True once the agent answered."""
    preset = None if settings.module == "auto" else m.MODULES[settings.module]
    known: m.Module | None = preset or (m.MODULES.get(state["module"]) if "module" in state else None)
    scalar_oids = list(m.GENERIC_SCALARS)
    if known is not None:
        scalar_oids += known.scalars()
    found = await get(session, [_enc(o) for o in scalar_oids])
    sys_object_id_vb = found.get(_enc(m.SYS_OBJECT_ID))
    sys_object_id = (oid_str(sys_object_id_vb[2]) if sys_object_id_vb is not None
                     and sys_object_id_vb[1] == OBJECT_IDENTIFIER and sys_object_id_vb[2] else "")
    result.facts["sys_object_id"] = sys_object_id  # also marks "the agent answered"
    if _enc(m.SYS_UPTIME) not in found and _enc(m.SYS_OBJECT_ID) not in found:
        raise SnmpNoSuchObject("the agent has neither sysUpTime nor sysObjectID")
    result.debug(f"system group read, sysObjectID {sys_object_id or '-'}")

    module = preset or await _detect(session, sys_object_id, state)
    if state.get("module") != module.name:
        result.debug(f"module {module.name}")
        state["module"] = module.name
    missing = [o for o in module.scalars() if o not in scalar_oids]
    if missing:
        found.update(await get(session, [_enc(o) for o in missing]))

    columns = m.GENERIC_COLUMNS + [c for c in module.walk_columns() if c not in m.GENERIC_COLUMNS]
    prefixes = [_enc(c) for c in columns]
    reason = ""
    getnext_until = state.get("getnext_until")
    if getnext_until is not None and time.monotonic() >= getnext_until:
        del state["getnext_until"]
        getnext_until = None
    bulk = settings.bulk and module.bulk and getnext_until is None
    previous = state.get("table_rows")
    expected = previous[1] if previous is not None and previous[0] == (module.name, bulk) else None
    repetitions = module.max_repetitions or settings.max_repetitions
    try:
        walked, bulk = await _walk_tables(session, prefixes, repetitions, bulk, expected, state,
                                          result)
        state["table_rows"] = ((module.name, bulk), [len(rows) for rows in walked])
    except SnmpWalkError as exc:
        # Keep what the system group gave; the walk result is incomplete.
        walked = [{} for _ in columns]
        reason = exc.reason
        result.message = str(exc)
        state.pop("table_rows", None)
    cols = dict(zip(columns, walked, strict=True))
    result.facts["values"] = len(found) + sum(len(rows) for rows in walked)
    _emit(result, module, found, cols, state)
    result.reason = reason
    return True


async def _walk_tables(session: Session, prefixes: list[bytes], repetitions: int, bulk: bool,
                       expected: list[int] | None, state: dict[str, Any], result: CheckResult,
                       ) -> tuple[list[dict[bytes, Any]], bool]:
    """Walk the tables: (rows per column, whether GETBULK was used); see BULK_RETRY_AFTER."""
    if not bulk or session.version == VERSION_1:
        return await walk(session, prefixes, repetitions, bulk, expected), bulk
    for _ in range(2):
        try:
            return await walk(session, prefixes, repetitions, True, expected), True
        except SnmpAgentError as exc:
            # One error-status may be passing (an AgentX subagent that timed out once): the
            # first is asked again, in the same poll.
            result.debug(f"GETBULK failed ({exc})")
    result.debug(f"GETBULK failed twice; using GETNEXT for this device for "
                 f"{BULK_RETRY_AFTER:g} s")
    state["getnext_until"] = time.monotonic() + BULK_RETRY_AFTER
    return await walk(session, prefixes, repetitions, False, None), False


def _scalar(found: dict[bytes, VarBind], oid: str) -> Any:
    vb = found.get(_enc(oid))
    return None if vb is None else vb[2]


def _emit(result: CheckResult, module: m.Module, found: dict[bytes, VarBind],
          cols: dict[str, dict[bytes, Any]], state: dict[str, Any]) -> None:
    """Turn the raw values into samples and facts."""
    add = result.add
    # Uptimes: each clock unwrapped on its own; the largest wins (the agent's may have restarted
    # since the host booted).
    now = time.monotonic()
    clocks = state.setdefault("clocks", {})
    uptimes = []
    for name, oid, scale, modulus in UPTIME_CLOCKS:
        value = _scalar(found, oid)
        if isinstance(value, int) and 0 <= value < modulus:
            uptimes.append(_unwrap(result, clocks, name, value, scale, modulus, now))
    if uptimes:
        _boot_time(result, max(uptimes), state)

    sys_descr = _text(_scalar(found, m.SYS_DESCR))
    sys_name = _text(_scalar(found, m.SYS_NAME))
    result.facts["sys_descr"] = sys_descr
    result.facts["sys_name"] = sys_name
    result.facts["module"] = module.name

    # Interfaces, named by ifName (ifDescr where ifName is missing or empty).
    names = cols[m.IF_NAME]
    descrs = cols[m.IF_DESCR]
    oper = cols[m.IF_OPER_STATUS]
    hc_in, hc_out = cols[m.IF_HC_IN_OCTETS], cols[m.IF_HC_OUT_OCTETS]
    in32, out32 = cols[m.IF_IN_OCTETS], cols[m.IF_OUT_OCTETS]
    in_err, out_err = cols[m.IF_IN_ERRORS], cols[m.IF_OUT_ERRORS]
    # Naming is cached per device: names rarely change, and this runs for every interface.
    signature = (tuple(names.items()), tuple(descrs.items()), tuple(oper))
    cached = state.get("if_naming")
    if cached is None or cached[0] != signature:
        cached = (signature, _name_interfaces(names, descrs, oper))
        state["if_naming"] = cached
    naming: list[tuple[bytes, str, str, dict[str, str], dict[str, str], dict[str, str]]] = cached[1]
    if_names = {entry[0]: entry[1] for entry in naming}
    interfaces = []
    samples = result.samples
    # A value of the wrong type (an OCTET STRING counter) is skipped, not fatal to the poll.
    oper, hc_in, hc_out, in32, out32, in_err, out_err = (
        _numbers(result, what, rows) for what, rows in (
            ("ifOperStatus", oper), ("ifHCInOctets", hc_in), ("ifHCOutOctets", hc_out),
            ("ifInOctets", in32), ("ifOutOctets", out32), ("ifInErrors", in_err),
            ("ifOutErrors", out_err)))
    for index, name, ifindex, labels, labels_in, labels_out in naming:
        status = oper.get(index)
        rx = hc_in.get(index)
        if rx is None:
            rx = in32.get(index)
        tx = hc_out.get(index)
        if tx is None:
            tx = out32.get(index)
        up = None if status is None else int(status == 1)
        # Built directly (not via result.add), sharing the label dicts: this is the hot path.
        if up is not None:
            samples.append(Sample("camnet_ap_interface_up", float(up), labels))
        if rx is not None:
            samples.append(Sample("camnet_ap_interface_receive_bytes_total", float(rx), labels))
        if tx is not None:
            samples.append(Sample("camnet_ap_interface_transmit_bytes_total", float(tx), labels))
        errors = in_err.get(index)
        if errors is not None:
            samples.append(Sample("camnet_ap_interface_errors_total", float(errors), labels_in))
        errors = out_err.get(index)
        if errors is not None:
            samples.append(Sample("camnet_ap_interface_errors_total", float(errors), labels_out))
        interfaces.append({"name": name, "index": ifindex, "up": up, "rx_bytes": rx,
                           "tx_bytes": tx})
    result.facts["interfaces"] = interfaces

    # CPU: HOST-RESOURCES hrProcessorLoad averaged, else the vendor's figure.
    loads = [v for v in cols[m.HR_PROCESSOR_LOAD].values() if isinstance(v, int)]
    cpu: float | None = sum(loads) / len(loads) / 100 if loads else None
    if cpu is None and module.cpu_pct_column:
        vendor = [v for v in cols[module.cpu_pct_column].values() if isinstance(v, int)]
        cpu = sum(vendor) / len(vendor) / 100 if vendor else None
    if cpu is None and module.cpu_pct_scalar:
        value = _scalar(found, module.cpu_pct_scalar)
        cpu = value / 100 if isinstance(value, int) else None
    add("camnet_ap_cpu_usage_ratio", cpu)

    # Memory: UCD (total - free - buffers - cached), the vendor's kB figures, or hrStorageRam.
    memory: float | None = None
    for quad in ((m.UCD_MEM_TOTAL_REAL, m.UCD_MEM_AVAIL_REAL, m.UCD_MEM_BUFFER, m.UCD_MEM_CACHED),
                 module.memory_kb):
        if quad is None:
            continue
        total, free, buffers, cached = (_scalar(found, o) for o in quad)
        if isinstance(total, int) and total > 0 and isinstance(free, int):
            used = total - free - (buffers if isinstance(buffers, int) else 0) \
                - (cached if isinstance(cached, int) else 0)
            memory = min(1.0, max(0.0, used / total))
            break
    if memory is None:
        ram = _enc(m.HR_STORAGE_RAM)
        for index, kind in cols[m.HR_STORAGE_TYPE].items():
            size = cols[m.HR_STORAGE_SIZE].get(index)
            used_units = cols[m.HR_STORAGE_USED].get(index)
            if kind == ram and isinstance(size, int) and size > 0 and isinstance(used_units, int):
                memory = min(1.0, used_units / size)
                break
    add("camnet_ap_memory_usage_ratio", memory)

    # WiFi: per radio, clients summed (gauges even where the MIB says Counter32).
    clients: dict[str, float] = {}
    for oid in module.clients_scalars:
        value = _scalar(found, oid)
        if isinstance(value, int):
            clients["all"] = value
            break
    per_radio: dict[str, dict[str, float]] = {}
    for table in module.radios:
        label_texts = cols.get(table.label)
        wanted = (("clients", table.clients), ("channel", table.channel),
                  ("frequency", table.frequency_mhz), ("noise", table.noise_dbm),
                  ("utilisation", table.utilisation_pct))
        for what, column in wanted:
            if column is None:
                continue
            for index, value in cols[column].items():
                if not isinstance(value, int):
                    continue
                radio = _radio_label(table.label, index, label_texts, if_names)
                if what == "clients":
                    clients[radio] = clients.get(radio, 0) + value
                else:
                    per_radio.setdefault(radio, {}).setdefault(what, value)
    for radio, count in clients.items():
        add("camnet_ap_wifi_clients", count, radio=radio)
    for radio, figures in per_radio.items():
        channel: float | None = figures.get("channel")
        freq = figures.get("frequency")
        if channel is None and freq:
            channel = _channel_from_mhz(freq)
        add("camnet_ap_wifi_channel", channel, radio=radio)
        add("camnet_ap_wifi_frequency_hertz", freq * 1e6 if freq else None, radio=radio)
        add("camnet_ap_wifi_noise_dbm", figures.get("noise"), radio=radio)
        util = figures.get("utilisation")
        add("camnet_ap_wifi_utilization_ratio", None if util is None else util / 100, radio=radio)
    result.facts["clients"] = clients
    result.facts["radios"] = per_radio

    model = _text(_scalar(found, module.model_scalar)) if module.model_scalar else ""
    if not model and module.model_column:
        model = next((t for t in map(_text, cols[module.model_column].values()) if t), "")
    result.facts["vendor"] = module.vendor
    result.facts["model"] = model
    add("camnet_ap_info", 1, vendor=module.vendor, model=model, sys_name=sys_name,
        sys_descr=sys_descr)


def _unwrap(result: CheckResult, clocks: dict[str, tuple[int, int, float]], name: str, raw: int,
            scale: float, modulus: int, now: float) -> float:
    """Seconds a clock has run, counting the wraps camnet saw (a clock that went back otherwise
    restarted)."""
    wraps = 0
    previous = clocks.get(name)
    if previous is not None:
        previous_raw, wraps, then = previous
        elapsed = max(0.0, now - then)
        expected = previous_raw + elapsed / scale
        crossed = round((expected - raw) / modulus)  # wraps that bring raw closest to expected
        tolerance = (WRAP_TOLERANCE + WRAP_TOLERANCE_SHARE * elapsed) / scale
        if crossed >= 1 and abs(raw + crossed * modulus - expected) <= tolerance:
            result.debug(f"{name} wrapped since the last check")
            wraps += crossed
        elif raw < previous_raw or expected - raw > tolerance:
            # Went back, or fell behind: restarted. The second matters once wrapped, where a
            # restarted clock that passed its last reading would otherwise keep the wraps.
            wraps = 0
    clocks[name] = (raw, wraps, now)
    return (raw + wraps * modulus) * scale


def _boot_time(result: CheckResult, uptime: float, state: dict[str, Any]) -> None:
    """Export the boot time (now - uptime) and flag a reboot."""
    boot = time.time() - uptime
    previous = state.get("boot_time")
    if previous is not None and (boot - previous > REBOOT_THRESHOLD
                                 or uptime < state.get("uptime", 0.0)):
        result.debug("boot time changed: the device rebooted")
        result.facts["rebooted"] = True
    # Stored every poll (not only on a change), so slow drift never adds up to a "reboot".
    state["boot_time"] = boot
    state["uptime"] = uptime
    result.add("camnet_ap_boot_time_seconds", round(boot, 2))
    result.facts["uptime"] = uptime


def _numbers(result: CheckResult, what: str, rows: dict[bytes, Any]) -> dict[bytes, Any]:
    """The column without values that are neither integers nor empty (with a debug line)."""
    bad = {index for index, value in rows.items() if value is not None and not isinstance(value, int)}
    if not bad:
        return rows
    kinds = sorted({type(rows[index]).__name__ for index in bad})
    result.debug(f"{what}: {len(bad)} value(s) of the wrong type ({', '.join(kinds)}), skipped")
    return {index: value for index, value in rows.items() if index not in bad}


def _name_interfaces(names: dict[bytes, Any], descrs: dict[bytes, Any], oper: dict[bytes, Any],
                     ) -> list[tuple[bytes, str, str, dict[str, str], dict[str, str], dict[str, str]]]:
    """(index, name, ifIndex text, labels, labels in, labels out) per interface, agent order."""
    seen: set[str] = set()
    out = []
    for index in dict.fromkeys([*descrs, *names, *oper]):
        name = _text(names.get(index)) or _text(descrs.get(index))
        ifindex = ".".join(map(str, decode_subids(index)))
        if not name or name in seen:
            name = f"{name or 'if'}#{ifindex}"  # unnamed or duplicate names stay distinct
        seen.add(name)
        out.append((index, name, ifindex, {"interface": name},
                    {"interface": name, "direction": "in"},
                    {"interface": name, "direction": "out"}))
    return out


def _radio_label(label: str, index: bytes, labels: dict[bytes, Any] | None,
                 if_names: dict[bytes, str]) -> str:
    if label.startswith("="):
        return label[1:]
    if label == "ifindex":
        return if_names.get(index) or ".".join(map(str, decode_subids(index)))
    if labels is not None and index in labels:
        text = _text(labels[index])
        if text:
            return text
    return ".".join(map(str, decode_subids(index)))


def _channel_from_mhz(mhz: float) -> int | None:
    """IEEE channel number of a 2.4 or 5 GHz centre frequency."""
    if 2412 <= mhz <= 2472:
        return int((mhz - 2407) // 5)
    if mhz == 2484:
        return 14
    if 5000 <= mhz <= 5900:
        return int((mhz - 5000) // 5)
    return None
