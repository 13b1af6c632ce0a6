"""Asyncio SNMP manager: one shared UDP socket, one request in flight per device, bulk walks.

v1/v2c go through the hand-written BER codec (`probes.snmp_ber`), v3 through camnet's USM on the
same codec (`probes.snmp_usm`), or everything through pysnmp (`probes.snmp_v3`, `mode: pysnmp`):
all behind the same `request()` call, so gets and walks are shared code.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import random
import socket
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from probes.snmp_ber import (
    END_OF_MIB_VIEW,
    GET_BULK_REQUEST,
    GET_NEXT_REQUEST,
    GET_REQUEST,
    OID_CACHE,
    REPORT,
    VERSION_1,
    BerError,
    Response,
    VarBind,
    decode_message,
    encode_request,
    oid_str,
    oid_tuple,
    peek_request_id,
)

RECEIVE_BUFFER = 4 * 1024 * 1024  # 100 devices answering at once overflowed the default buffer
MAX_REQUESTS_PER_WALK = 5000  # a lying agent must not keep a walk going until the deadline
MAX_ROWS_PER_WALK = 100_000  # nor grow the poll's memory without bound

ERROR_STATUS = {
    1: "tooBig", 2: "noSuchName", 3: "badValue", 4: "readOnly", 5: "genErr", 6: "noAccess",
    7: "wrongType", 8: "wrongLength", 9: "wrongEncoding", 10: "wrongValue", 11: "noCreation",
    12: "inconsistentValue", 13: "resourceUnavailable", 14: "commitFailed", 15: "undoFailed",
    16: "authorizationError", 17: "notWritable", 18: "inconsistentName",
}


# ---------------------------------------------------------------- errors (classified here only)


class SnmpError(Exception):
    """Base of every SNMP failure; `reason` is the classified reason a CheckResult carries."""

    reason = "error"


class SnmpTimeout(SnmpError):
    """No (valid) answer within the timeout after all retries; also a wrong community."""

    reason = "timeout"


class SnmpAuthError(SnmpError):
    """The agent rejected our v3 credentials (unknown user, wrong key, unsupported level)."""

    reason = "auth_failed"


class SnmpUnreachable(SnmpError):
    """The address cannot be reached or resolved."""

    reason = "unreachable"


class SnmpBadReply(SnmpError):
    """The agent sent something that is not a valid answer to our request."""

    reason = "bad_reply"


class SnmpAgentError(SnmpError):
    """The agent answered with an error-status."""

    reason = "agent_error"

    def __init__(self, status: int, index: int) -> None:
        super().__init__(f"agent error-status {ERROR_STATUS.get(status, status)} at varbind {index}")
        self.status = status
        self.index = index


def status_error(status: int, index: int) -> SnmpError:
    """The exception for an error-status: authorizationError means rejected credentials."""
    if status == 16:
        return SnmpAuthError("agent error-status authorizationError: access denied")
    return SnmpAgentError(status, index)


class SnmpNoSuchObject(SnmpError):
    """A required object does not exist on the agent."""

    reason = "no_such_object"


class SnmpWalkError(SnmpError):
    """The agent returned OIDs that do not increase: the walk would never end."""

    reason = "oid_not_increasing"


# ---------------------------------------------------------------- the shared socket


@dataclass(slots=True)
class _Pending:
    request_id: int
    community: bytes
    future: asyncio.Future[Response]
    decode: Callable[[bytes], Response] | None = None  # SNMPv3 sessions bring their own
    malformed: int = 0  # undecodable datagrams from the device while this request waited
    error: str = ""  # why the last of them was rejected


class _ManagerProtocol(asyncio.DatagramProtocol):
    """Matches answers to the one pending request of their source address."""

    def __init__(self) -> None:
        self.pending: dict[tuple[str, int], _Pending] = {}
        self.locks: dict[tuple[str, int], asyncio.Lock] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self.stray = 0  # answers from addresses we did not ask, or to requests we gave up on
        self.malformed = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        pending = self.pending.get((str(addr[0]), int(addr[1])))
        if pending is None or pending.future.done():
            self.stray += 1
            return
        if pending.decode is None:
            # Whose answer it is, before its varbinds are decoded: a device flooding wrong or
            # late answers (a 62 KB one costs ≈ 3 ms to decode) must not slow the others.
            peeked = peek_request_id(data)
            if peeked is not None and peeked != (pending.community, pending.request_id):
                self.stray += 1
                return
        try:
            resp = (pending.decode or decode_message)(data)
        except SnmpError as exc:
            pending.future.set_exception(exc)
            return
        except Exception as exc:
            # Ignored like a wrong request-id: one spoofed or garbled datagram must not fail
            # the poll, and nothing a device sends may reach asyncio's exception handler
            # (BerError, but also e.g. ValueError from a cipher, OverflowError from a header).
            self.malformed += 1
            pending.malformed += 1
            pending.error = str(exc) if isinstance(exc, BerError) else f"{type(exc).__name__}: {exc}"
            return
        if resp.request_id != pending.request_id or resp.community != pending.community:
            self.stray += 1  # a late answer to an earlier request, or not for us
            return
        pending.future.set_result(resp)

    def error_received(self, exc: Exception) -> None:
        # An unconnected socket cannot tell which device an ICMP error belongs to; the
        # request then times out and is classified as such.
        pass


_MANAGERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, _ManagerProtocol]] = (
    weakref.WeakKeyDictionary()
)


async def _manager(family: int) -> _ManagerProtocol:
    """The shared socket of this event loop for an address family (created once)."""
    loop = asyncio.get_running_loop()
    per_loop = _MANAGERS.setdefault(loop, {})
    proto = per_loop.get(family)
    if proto is not None and proto.transport is not None and not proto.transport.is_closing():
        return proto
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.bind(("::", 0) if family == socket.AF_INET6 else ("0.0.0.0", 0))
        sock.setblocking(False)
        _, created = await loop.create_datagram_endpoint(_ManagerProtocol, sock=sock)
    except BaseException:
        sock.close()
        raise
    per_loop[family] = created
    return created


def close_managers() -> None:
    """Close the shared sockets of the running loop (tests and clean shutdown)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    for proto in _MANAGERS.pop(loop, {}).values():
        if proto.transport is not None:
            proto.transport.close()


_request_ids = itertools.count(random.randrange(1, 1 << 30))


def _next_request_id() -> int:
    return next(_request_ids) & 0x7FFFFFFF or 1


async def resolve(host: str, port: int) -> tuple[int, tuple[str, int]]:
    """Address family and numeric address of a host (hostnames are resolved once per call)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:  # a literal address (the inventory's usual case): no resolver thread per poll
        return (socket.AF_INET6, (str(ip), port)) if ip.version == 6 else (socket.AF_INET,
                                                                           (str(ip), port))
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError as exc:
        raise SnmpUnreachable(f"cannot resolve {host!r}: {exc}") from exc
    family, _, _, _, sockaddr = infos[0]
    return family, (str(sockaddr[0]), int(sockaddr[1]))


# ---------------------------------------------------------------- sessions


class Session(Protocol):
    """What gets and walks need from a transport: one request, one answer."""

    version: int

    async def request(self, pdu_type: int, oids: Sequence[bytes], non_repeaters: int = 0,
                      max_repetitions: int = 0) -> Response:
        """Send one PDU and return the agent's answer (raises SnmpError)."""
        ...


@dataclass(slots=True)
class Stats:
    """What one poll cost on the wire."""

    requests: int = 0
    retries: int = 0
    varbinds: int = 0


@dataclass
class CommunitySession:
    """A v1/v2c agent reached through the shared socket; at most one request in flight."""

    host: str
    port: int
    version: int
    community: bytes
    timeout: float = 2.0
    retries: int = 1
    stats: Stats = field(default_factory=Stats)
    _addr: tuple[str, int] | None = None
    _proto: _ManagerProtocol | None = None

    async def _connect(self) -> tuple[_ManagerProtocol, tuple[str, int]]:
        if self._proto is None or self._addr is None:
            family, self._addr = await resolve(self.host, self.port)
            self._proto = await _manager(family)
        return self._proto, self._addr

    async def request(self, pdu_type: int, oids: Sequence[bytes], non_repeaters: int = 0,
                      max_repetitions: int = 0) -> Response:
        """Send one PDU (retrying on silence) and return the matching answer."""
        proto, addr = await self._connect()
        request_id = _next_request_id()
        message = encode_request(self.version, self.community, pdu_type, request_id, list(oids),
                                 non_repeaters, max_repetitions)
        resp = await exchange(proto, addr, message,
                              lambda future: _Pending(request_id, self.community, future),
                              self.timeout, self.retries, self.stats)
        if resp.pdu_type == REPORT:
            raise SnmpBadReply("unexpected Report PDU to a community request")
        return resp


async def exchange(proto: _ManagerProtocol, addr: tuple[str, int], message: bytes,
                   pending: Callable[[asyncio.Future[Response]], _Pending],
                   request_timeout: float, retries: int, stats: Stats) -> Response:
    """Send one message and wait for its answer, re-sending on silence; one request in flight
    per device, whoever asks (v1/v2c and SNMPv3 sessions alike)."""
    lock = proto.locks.get(addr)
    if lock is None:
        lock = proto.locks[addr] = asyncio.Lock()
    loop = asyncio.get_running_loop()
    malformed = 0
    error = ""
    async with lock:
        transport = proto.transport
        assert transport is not None
        for attempt in range(retries + 1):
            future: asyncio.Future[Response] = loop.create_future()
            waiting = proto.pending[addr] = pending(future)
            stats.requests += 1
            stats.retries += attempt > 0
            try:
                transport.sendto(message, addr)
                async with asyncio.timeout(request_timeout):
                    resp = await future
            except TimeoutError:
                continue
            except OSError as exc:
                raise SnmpUnreachable(f"cannot send to {addr[0]}: {exc}") from exc
            finally:
                proto.pending.pop(addr, None)
                malformed += waiting.malformed
                error = waiting.error or error
            stats.varbinds += len(resp.oids)
            return resp
    if malformed:
        # The device (or someone in its name) answered, but never validly.
        raise SnmpBadReply(f"no valid answer from {addr[0]}:{addr[1]} after {retries + 1} tries: "
                           f"{malformed} malformed answers ignored (last: {error})")
    raise SnmpTimeout(
        f"no answer from {addr[0]}:{addr[1]} after {retries + 1} tries of {request_timeout:g}s"
    )


# ---------------------------------------------------------------- get and walk


async def get(session: Session, oids: Sequence[bytes]) -> dict[bytes, VarBind]:
    """GET the given OIDs; objects the agent lacks are left out (noSuchName is retried)."""
    wanted = list(oids)
    found: dict[bytes, VarBind] = {}
    while wanted:
        resp = await session.request(GET_REQUEST, wanted)
        if resp.error_status:
            if resp.error_status == 2 and 1 <= resp.error_index <= len(wanted):
                # v1 has no per-varbind exceptions, and some embedded v2c agents answer the
                # v1 way too: drop the missing object and ask again.
                del wanted[resp.error_index - 1]
                continue
            raise status_error(resp.error_status, resp.error_index)
        if len(resp.varbinds) != len(wanted):
            raise SnmpBadReply(f"asked {len(wanted)} objects, got {len(resp.varbinds)}")
        for asked, vb in zip(wanted, resp.varbinds, strict=True):
            if vb[0] != asked:
                raise SnmpBadReply(f"asked {oid_str(asked)}, got {oid_str(vb[0])}")
            if vb[2] is not None or vb[1] == 0x05:
                found[asked] = vb
        break
    return found


async def walk(session: Session, columns: Sequence[bytes], max_repetitions: int = 25,
               bulk: bool = True, expected: Sequence[int] | None = None) -> list[dict[bytes, Any]]:
    """Walk several subtrees side by side (GETBULK, or GETNEXT for v1 and broken agents).

    Returns, per subtree, row index (the encoded OID suffix) -> value. `expected` (rows each
    subtree had last time) sizes the requests: the last one asks only for what is left plus
    one, and subtrees expected empty go as non-repeaters, so a walk does not drag dozens of
    varbinds past the end of each table. Raises SnmpWalkError when an agent returns a
    non-increasing OID (it would loop forever).
    """
    results: list[dict[bytes, Any]] = [{} for _ in columns]
    position = list(columns)
    last = [oid_tuple(c) for c in columns]
    if session.version == VERSION_1:
        bulk = False
    if bulk and expected is not None:
        single = [c for c in range(len(columns)) if expected[c] == 0]
        active = [c for c in range(len(columns)) if expected[c] != 0]
    else:
        single, active = [], list(range(len(columns)))
    repetitions = max_repetitions
    # GETNEXT: columns per request. An old v1 agent with a small buffer answers tooBig to a
    # request for a dozen columns: it is asked for fewer at a time.
    per_request = len(columns)
    for _ in range(MAX_REQUESTS_PER_WALK):
        if not active and not single:
            return results
        batch = active if bulk else active[:per_request]
        if bulk:
            reps = repetitions
            if expected is not None and active:
                left = max(expected[c] - len(results[c]) for c in active)
                if left > 0:
                    reps = min(repetitions, left + 1)
            asked = [position[c] for c in single] + [position[c] for c in active]
            resp = await session.request(GET_BULK_REQUEST, asked, len(single), reps)
        else:
            asked = [position[c] for c in batch]
            resp = await session.request(GET_NEXT_REQUEST, asked)
        if resp.error_status:
            if resp.error_status == 1 and bulk and repetitions > 1:
                repetitions = max(1, repetitions // 2)  # tooBig: ask for fewer rows
                continue
            if resp.error_status == 1 and not bulk and len(batch) > 1:
                per_request = len(batch) // 2  # tooBig: ask for fewer columns
                continue
            if resp.error_status == 2 and not bulk and 1 <= resp.error_index <= len(batch):
                # v1 GETNEXT past the end of the MIB: that column is finished.
                del active[resp.error_index - 1]
                continue
            raise status_error(resp.error_status, resp.error_index)
        oids, tags, values = resp.oids, resp.tags, resp.values
        width = len(batch)
        n_single = len(single) if bulk else 0
        if len(oids) < n_single + (1 if width else 0) or (not bulk and len(oids) != width):
            raise SnmpBadReply(f"walk answer with {len(oids)} varbinds for {width} columns")
        progressed = False
        joined = []
        for k, c in enumerate(single[:len(oids)]):
            if _take(columns[c], oids[k:k + 1], tags[k:k + 1], values[k:k + 1], last, position,
                     results, c)[0]:
                joined.append(c)  # not empty after all: walk it with the others
                progressed = True
        single = []
        still = []
        for slot, c in enumerate(batch):
            k = n_single + slot
            taken, ended = _take(columns[c], oids[k::width], tags[k::width], values[k::width],
                                 last, position, results, c)
            progressed = progressed or taken > 0 or ended
            if not ended:
                still.append(c)
        active = active[len(batch):] + still + joined  # columns not asked this time first
        if active and not progressed:
            raise SnmpBadReply("walk made no progress")
        rows = sum(map(len, results))
        if rows > MAX_ROWS_PER_WALK:
            raise SnmpBadReply(f"the agent keeps sending: {rows} rows")
    raise SnmpBadReply(f"walk did not finish after {MAX_REQUESTS_PER_WALK} requests")


def _take(prefix: bytes, oids: list[bytes], tags: list[int], values: list[Any],
          last: list[tuple[int, ...]], position: list[bytes], results: list[dict[bytes, Any]],
          c: int) -> tuple[int, bool]:
    """Record one column's share of an answer: (rows taken, subtree ended)."""
    n = len(prefix)
    rows = results[c]
    prev = last[c]
    cached = OID_CACHE.get
    taken = 0
    ended = False
    oid = position[c]
    for name, tag, value in zip(oids, tags, values, strict=True):  # the hot loop of a walk
        if tag == END_OF_MIB_VIEW or len(name) <= n or not name.startswith(prefix):
            ended = True
            break
        t = cached(name) or oid_tuple(name)
        if t <= prev:
            raise SnmpWalkError(
                f"agent returned {oid_str(name)} after {'.'.join(map(str, prev))}"
            )
        prev = t
        oid = name
        rows[name[n:]] = value
        taken += 1
    last[c] = prev
    position[c] = oid
    return taken, ended
