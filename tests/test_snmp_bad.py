"""Bad input: a raw UDP responder sends crafted answers; camnet classifies, never crashes or stalls.

The responder is a real UDP peer on 127.0.11.10:1161 with a tiny table (GET/GETNEXT/GETBULK
semantics) whose answers each test corrupts in one way.
"""

from __future__ import annotations

import asyncio
import bisect
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import SecretStr

from monitor.config import SnmpAuth
from probes import snmp, snmp_client
from probes.base import CheckResult, Credentials, Target
from probes.snmp import SnmpSettings, probe_snmp
from probes.snmp_ber import (
    COUNTER32,
    END_OF_MIB_VIEW,
    GAUGE32,
    GET_BULK_REQUEST,
    GET_NEXT_REQUEST,
    GET_REQUEST,
    GET_RESPONSE,
    INTEGER,
    NO_SUCH_INSTANCE,
    NO_SUCH_OBJECT,
    OBJECT_IDENTIFIER,
    OCTET_STRING,
    TIMETICKS,
    Response,
    VarBind,
    decode_message,
    encode_oid,
    encode_response,
    oid_tuple,
)
from probes.snmp_client import SnmpBadReply, close_managers, walk

HOST = "127.0.11.10"
OTHER = "127.0.11.11"
PORT = 1161


def _table() -> list[tuple[tuple[int, ...], bytes, int, Any]]:
    rows: list[tuple[str, int, Any]] = [
        ("1.3.6.1.2.1.1.1.0", OCTET_STRING, b"test agent"),
        ("1.3.6.1.2.1.1.2.0", OBJECT_IDENTIFIER, encode_oid("1.3.6.1.4.1.8072.3.2.10")),
        ("1.3.6.1.2.1.1.3.0", TIMETICKS, 123456),
        ("1.3.6.1.2.1.1.5.0", OCTET_STRING, b"bad-ap"),
    ]
    for i in (1, 2):
        rows += [
            (f"1.3.6.1.2.1.2.2.1.2.{i}", OCTET_STRING, f"eth{i}".encode()),
            (f"1.3.6.1.2.1.2.2.1.8.{i}", INTEGER, 1),
            (f"1.3.6.1.2.1.2.2.1.10.{i}", COUNTER32, 1000 * i),
            (f"1.3.6.1.2.1.2.2.1.16.{i}", COUNTER32, 2000 * i),
        ]
    table = [(oid_tuple(encode_oid(o)), encode_oid(o), t, v) for o, t, v in rows]
    return sorted(table)


@dataclass
class Responder(asyncio.DatagramProtocol):
    """A minimal agent; `mangle` rewrites (or drops, returning None) each answer."""

    version: int = 1
    community: bytes = b"public"
    mangle: Callable[[bytes, Any], bytes | list[bytes] | None] = lambda raw, req: raw
    via_other: bool = False
    table: list[tuple[tuple[int, ...], bytes, int, Any]] = field(default_factory=_table)
    transport: Any = None
    other: Any = None
    requests: int = 0
    delay: float = 0.0
    outstanding: dict[Any, int] = field(default_factory=dict)
    max_outstanding: int = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def _next(self, oid: bytes) -> VarBind:
        keys = [row[0] for row in self.table]
        i = bisect.bisect_right(keys, oid_tuple(oid))
        if i >= len(self.table):
            return oid, END_OF_MIB_VIEW, None
        _, raw, tag, value = self.table[i]
        return raw, tag, value

    def answer(self, req: Any) -> bytes:
        varbinds: list[VarBind] = []
        names = [vb[0] for vb in req.varbinds]
        if req.pdu_type == GET_REQUEST:
            index = {row[1]: row for row in self.table}
            for name in names:
                row = index.get(name)
                varbinds.append((name, row[2], row[3]) if row else (name, NO_SUCH_OBJECT, None))
        elif req.pdu_type == GET_NEXT_REQUEST:
            varbinds = [self._next(n) for n in names]
        elif req.pdu_type == GET_BULK_REQUEST:
            current = list(names)
            for _ in range(max(1, req.error_index)):  # max-repetitions rides in error-index
                row = [self._next(n) for n in current]
                varbinds += row
                current = [vb[0] for vb in row]
        return encode_response(req.version, req.community, req.request_id, varbinds)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.requests += 1
        req = decode_message(data, requests=True)
        if req.community != self.community:
            return  # a real agent drops a wrong community silently
        out = self.mangle(self.answer(req), req)
        if out is None:
            return
        if self.delay:
            # Answer later, and count what each client has in flight meanwhile.
            self.outstanding[addr] = self.outstanding.get(addr, 0) + 1
            self.max_outstanding = max(self.max_outstanding, self.outstanding[addr])
            asyncio.get_running_loop().call_later(self.delay, self._send, out, addr)
            return
        self._send(out, addr)

    def _send(self, out: bytes | list[bytes], addr: Any) -> None:
        if addr in self.outstanding:
            self.outstanding[addr] -= 1
        for packet in out if isinstance(out, list) else [out]:
            (self.other if self.via_other else self.transport).sendto(packet, addr)


@pytest.fixture
async def responder() -> AsyncIterator[Responder]:
    loop = asyncio.get_running_loop()
    proto = Responder()
    transport, _ = await loop.create_datagram_endpoint(lambda: proto, local_addr=(HOST, PORT))
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind((OTHER, 0))
    proto.other = other
    try:
        yield proto
    finally:
        transport.close()
        other.close()
        close_managers()


def _target(community: str = "public", version: str = "2c") -> Target:
    creds = Credentials(SnmpAuth(type="snmp", version=version),
                        {"community": SecretStr(community)})
    return Target("ap-bad", "ap", HOST, {}, creds, {"snmp_port": PORT})


async def _probe(target: Target | None = None, timeout: float = 0.3, retries: int = 1,
                 deadline: float = 10.0, **kw: Any) -> CheckResult:
    loop = asyncio.get_running_loop()
    settings = SnmpSettings(request_timeout=timeout, retries=retries, **kw)
    return await probe_snmp(target or _target(), settings, {}, loop.time() + deadline)


def _value(result: CheckResult, name: str) -> float | None:
    return next((s.value for s in result.samples if s.name == name), None)


async def test_the_responder_itself_works(responder: Responder) -> None:
    result = await _probe()
    assert result.success, result.message
    assert _value(result, "camnet_ap_up") == 1
    assert [i["name"] for i in result.facts["interfaces"]] == ["eth1", "eth2"]


async def test_wrong_community_is_a_timeout(responder: Responder) -> None:
    result = await _probe(_target("wrong"))
    assert not result.success
    assert result.reason == "timeout"
    assert _value(result, "camnet_ap_up") == 0
    assert "wrong" not in result.message  # the community is a secret
    assert responder.requests == 2  # one try + one retry


@pytest.mark.parametrize("cut", [1, 5, 17, -1, -7])
async def test_truncated_answer_is_bad_reply(responder: Responder, cut: int) -> None:
    responder.mangle = lambda raw, req: raw[:cut]
    result = await _probe()
    assert result.reason == "bad_reply"
    assert not result.success
    assert _value(result, "camnet_ap_up") == 0
    # Each malformed answer is ignored (it may be spoofed): every try is made, then classified.
    assert responder.requests == 2
    assert "2 malformed answers ignored" in result.message


async def test_garbage_answer_is_bad_reply(responder: Responder) -> None:
    responder.mangle = lambda raw, req: b"\x30\x82\xff\xff" + bytes(range(256))
    result = await _probe()
    assert result.reason == "bad_reply"


async def test_one_malformed_datagram_does_not_fail_the_poll(responder: Responder) -> None:
    # A spoofed or corrupted datagram from the AP's address arrives just before the real answer.
    responder.mangle = lambda raw, req: [raw[:-4], b"\x30\x03\x02\x01\x01", raw]
    result = await _probe()
    assert result.success, result.message
    assert [i["name"] for i in result.facts["interfaces"]] == ["eth1", "eth2"]
    assert result.facts["retries"] == 0  # the real answers were taken, nothing timed out


async def test_answer_from_the_wrong_address_is_ignored(responder: Responder) -> None:
    responder.via_other = True
    result = await _probe()
    assert result.reason == "timeout"
    assert _value(result, "camnet_ap_up") == 0


async def test_answer_with_the_wrong_request_id_is_ignored(responder: Responder) -> None:
    def wrong_id(raw: bytes, req: Any) -> bytes:
        resp = decode_message(raw)
        return encode_response(resp.version, resp.community, resp.request_id + 1, resp.varbinds)

    responder.mangle = wrong_id
    result = await _probe()
    assert result.reason == "timeout"


async def test_a_flood_of_other_answers_is_not_decoded(responder: Responder,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Answers with another request-id are set aside before their varbinds are decoded: a
    device flooding big ones costs little more than receiving them."""
    def flood(raw: bytes, req: Any) -> list[bytes]:
        resp = decode_message(raw)
        other = encode_response(resp.version, resp.community, resp.request_id + 1,
                                resp.varbinds * 20)
        return [other] * 10 + [raw]

    decoded: list[int] = []

    def counting(data: bytes, requests: bool = False) -> Any:
        decoded.append(len(data))
        return decode_message(data, requests)

    monkeypatch.setattr(snmp_client, "decode_message", counting)
    responder.mangle = flood
    result = await _probe()
    assert result.success, result.message
    assert len(decoded) == result.facts["requests"]  # the real answers only


async def test_duplicated_answers_flood_is_harmless(responder: Responder) -> None:
    responder.mangle = lambda raw, req: [raw] * 20
    result = await _probe()
    assert result.success, result.message
    assert len(result.facts["interfaces"]) == 2


async def test_non_increasing_oids_stop_the_walk(responder: Responder) -> None:
    def backwards(raw: bytes, req: Any) -> bytes:
        if req.pdu_type != GET_BULK_REQUEST:
            return raw
        resp = decode_message(raw)
        # Answer every walk step with the column's first row again: a loop.
        vbs = [(encode_oid("1.3.6.1.2.1.2.2.1.2.1"), OCTET_STRING, b"eth1")] * len(resp.varbinds)
        return encode_response(resp.version, resp.community, resp.request_id, vbs)

    responder.mangle = backwards
    result = await _probe()
    assert result.reason == "oid_not_increasing"
    assert _value(result, "camnet_ap_up") == 1  # the agent answers; its walk is broken
    assert "1.3.6.1.2.1.2.2.1.2.1" in result.message


async def test_no_such_object_everywhere(responder: Responder) -> None:
    def nothing(raw: bytes, req: Any) -> bytes:
        resp = decode_message(raw)
        tag = NO_SUCH_INSTANCE if req.pdu_type == GET_REQUEST else END_OF_MIB_VIEW
        vbs = [(vb[0], tag, None) for vb in req.varbinds]
        return encode_response(resp.version, resp.community, resp.request_id, vbs)

    responder.mangle = nothing
    result = await _probe()
    assert result.reason == "no_such_object"
    assert not result.success
    assert _value(result, "camnet_ap_up") == 1


async def test_end_of_mib_view_ends_walks(responder: Responder) -> None:
    responder.table = [row for row in responder.table if row[0] < (1, 3, 6, 1, 2, 1, 2, 2, 1, 16)]
    result = await _probe()
    assert result.success, result.message
    assert [i["tx_bytes"] for i in result.facts["interfaces"]] == [None, None]


async def test_v1_too_big_getnext_asks_for_fewer_columns(responder: Responder) -> None:
    """An old v1 agent with a small buffer answers tooBig to a GETNEXT of many columns."""
    def small_buffer(raw: bytes, req: Any) -> bytes:
        if req.pdu_type == GET_NEXT_REQUEST and len(req.varbinds) > 3:
            return encode_response(req.version, req.community, req.request_id,
                                   list(req.varbinds), error_status=1)
        return raw

    responder.mangle = small_buffer
    result = await _probe(_target(version="1"))
    assert result.success, result.message
    assert [(i["name"], i["rx_bytes"], i["tx_bytes"]) for i in result.facts["interfaces"]] == [
        ("eth1", 1000, 2000), ("eth2", 2000, 4000)]


async def test_agent_error_status(responder: Responder) -> None:
    def gen_err(raw: bytes, req: Any) -> bytes:
        resp = decode_message(raw)
        return encode_response(resp.version, resp.community, resp.request_id, resp.varbinds,
                               error_status=5, error_index=1)

    responder.mangle = gen_err
    result = await _probe()
    assert result.reason == "agent_error"
    assert "genErr" in result.message


async def test_v1_no_such_name_is_retried_without_the_object(responder: Responder) -> None:
    responder.version = 0

    def v1(raw: bytes, req: Any) -> bytes:
        resp = decode_message(raw)
        for k, vb in enumerate(resp.varbinds, 1):
            if vb[1] in (NO_SUCH_OBJECT, NO_SUCH_INSTANCE, END_OF_MIB_VIEW):
                return encode_response(0, resp.community, resp.request_id, list(req.varbinds),
                                       error_status=2, error_index=k)
        return raw

    responder.mangle = v1
    result = await _probe(_target(version="1"))
    assert result.success, result.message
    assert [i["name"] for i in result.facts["interfaces"]] == ["eth1", "eth2"]
    assert result.facts["requests"] > 4  # GETNEXT, one object per column per request


async def test_v2c_no_such_name_is_retried_without_the_object(responder: Responder) -> None:
    # Some embedded v2c agents answer a GET for a missing object the v1 way, with error-status
    # noSuchName instead of a noSuchObject varbind: the agent answered, the poll must succeed.
    def v1_style(raw: bytes, req: Any) -> bytes:
        if req.pdu_type != GET_REQUEST:
            return raw
        resp = decode_message(raw)
        for k, vb in enumerate(resp.varbinds, 1):
            if vb[1] in (NO_SUCH_OBJECT, NO_SUCH_INSTANCE):
                return encode_response(resp.version, resp.community, resp.request_id,
                                       list(req.varbinds), error_status=2, error_index=k)
        return raw

    responder.mangle = v1_style
    result = await _probe()
    assert result.success, result.message
    assert _value(result, "camnet_ap_up") == 1
    assert result.facts["sys_name"] == "bad-ap"
    assert [i["name"] for i in result.facts["interfaces"]] == ["eth1", "eth2"]


async def test_silent_agent_stops_at_the_deadline(responder: Responder) -> None:
    responder.mangle = lambda raw, req: None
    loop = asyncio.get_running_loop()
    start = loop.time()
    result = await _probe(timeout=5.0, retries=5, deadline=0.5)
    assert result.reason == "timeout"
    assert loop.time() - start < 5.0  # the deadline, not 6 x 5 s of retries


def _row(oid: str, tag: int, value: Any) -> tuple[tuple[int, ...], bytes, int, Any]:
    return oid_tuple(encode_oid(oid)), encode_oid(oid), tag, value


async def test_counter_of_the_wrong_type_is_skipped(responder: Responder) -> None:
    # eth1's ifInOctets comes as an OCTET STRING: that value is skipped, the poll goes on.
    responder.table = sorted([*(r for r in responder.table if r[0] != (1, 3, 6, 1, 2, 1, 2, 2, 1, 10, 1)),
                              _row("1.3.6.1.2.1.2.2.1.10.1", OCTET_STRING, b"lots")])
    result = await _probe()
    assert result.success, result.message
    assert [(i["name"], i["rx_bytes"], i["tx_bytes"]) for i in result.facts["interfaces"]] == [
        ("eth1", None, 2000), ("eth2", 2000, 4000)]
    rx = [(s.labels["interface"], s.value) for s in result.samples
          if s.name == "camnet_ap_interface_receive_bytes_total"]
    assert rx == [("eth2", 2000.0)]
    assert any("ifInOctets: 1 value(s) of the wrong type (bytes)" in line for line in result.log)


async def test_non_minimal_oid_is_bad_reply(responder: Responder) -> None:
    # sysObjectID 1.3.6.1.4.1.(0x80 0x01): a non-minimal sub-identifier, malformed BER.
    responder.table = sorted([*(r for r in responder.table if r[0] != (1, 3, 6, 1, 2, 1, 1, 2, 0)),
                              _row("1.3.6.1.2.1.1.2.0", OBJECT_IDENTIFIER,
                                   b"\x2b\x06\x01\x04\x01\x80\x01")])
    result = await _probe()
    assert result.reason == "bad_reply"
    assert "invalid OID value" in result.message


@pytest.mark.parametrize("exc", [ValueError("bad value"), OverflowError("too big"),
                                 ZeroDivisionError("division by zero")])
async def test_errors_left_from_an_answer_are_bad_reply(responder: Responder,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        exc: Exception) -> None:
    # Whatever a reply still makes the prober trip over is classified, not internal_error.
    def trip(*args: Any) -> None:
        raise exc

    monkeypatch.setattr(snmp, "_emit", trip)
    result = await _probe()
    assert result.reason == "bad_reply"
    assert not result.success
    assert type(exc).__name__ in result.message


class _EndlessTable:
    """A session whose agent has an endless, increasing table (1,000 rows per answer)."""

    version = 1

    def __init__(self) -> None:
        self.requests = 0
        self.next_row = 1

    async def request(self, pdu_type: int, oids: Sequence[bytes], non_repeaters: int = 0,
                      max_repetitions: int = 0) -> Response:
        self.requests += 1
        assert self.requests < 200, "the walk did not stop"
        rows = range(self.next_row, self.next_row + 1000)
        self.next_row += 1000
        varbinds: list[VarBind] = [(encode_oid(f"1.3.6.1.2.1.2.2.1.2.{n}"), OCTET_STRING, b"x")
                                   for n in rows]
        return Response.from_varbinds(1, b"", GET_RESPONSE, 0, 0, 0, varbinds)


async def test_walk_stops_an_agent_that_keeps_sending() -> None:
    session = _EndlessTable()
    with pytest.raises(SnmpBadReply, match="the agent keeps sending: 101000 rows"):
        await walk(session, [encode_oid("1.3.6.1.2.1.2.2.1.2")], max_repetitions=1000)
    assert session.requests == 101  # 100,000 rows per walk at most


async def test_counter32_client_count_is_a_gauge(responder: Responder) -> None:
    # MikroTik types mtxrWlApClientCount as Counter32: it must still be a gauge sample.
    responder.table = sorted([*responder.table,
        (oid_tuple(encode_oid("1.3.6.1.4.1.14988.1.1.1.3.1.6.2")),
         encode_oid("1.3.6.1.4.1.14988.1.1.1.3.1.6.2"), COUNTER32, 7),
        (oid_tuple(encode_oid("1.3.6.1.4.1.14988.1.1.1.3.1.7.2")),
         encode_oid("1.3.6.1.4.1.14988.1.1.1.3.1.7.2"), GAUGE32, 2437)])
    result = await _probe(module="mikrotik")
    assert result.success, result.message
    clients = [s for s in result.samples if s.name == "camnet_ap_wifi_clients"]
    assert [(dict(s.labels), s.value) for s in clients] == [({"radio": "eth2"}, 7.0)]
    channel = [s.value for s in result.samples if s.name == "camnet_ap_wifi_channel"]
    assert channel == [6.0]


async def test_one_request_in_flight_per_device(responder: Responder) -> None:
    responder.delay = 0.02
    results = await asyncio.gather(*(_probe(timeout=2.0) for _ in range(4)))
    assert all(r.success for r in results), [r.message for r in results]
    assert responder.max_outstanding == 1  # four checks at once, still one request at a time
    assert responder.requests >= 4 * 3


def bulk_gen_err(kinds: list[int], first_only: bool = False) -> Callable[[bytes, Any], bytes]:
    """An agent that notes each request's PDU type and answers GETBULK with genErr (every
    time, or the first time only)."""
    def mangle(raw: bytes, req: Any) -> bytes:
        kinds.append(req.pdu_type)
        if req.pdu_type != GET_BULK_REQUEST or (first_only and kinds.count(GET_BULK_REQUEST) > 1):
            return raw
        return encode_response(req.version, req.community, req.request_id, list(req.varbinds),
                               error_status=5, error_index=1)
    return mangle


async def _generic_poll(state: dict[str, Any]) -> CheckResult:
    loop = asyncio.get_running_loop()
    settings = SnmpSettings(module="generic", request_timeout=0.5)
    return await probe_snmp(_target(), settings, state, loop.time() + 10)


async def test_broken_getbulk_falls_back_to_getnext_for_a_while(responder: Responder) -> None:
    kinds: list[int] = []
    responder.mangle = bulk_gen_err(kinds)
    state: dict[str, Any] = {}
    first = await _generic_poll(state)
    assert first.success, first.message
    assert [i["name"] for i in first.facts["interfaces"]] == ["eth1", "eth2"]
    assert kinds.count(GET_BULK_REQUEST) == 2  # asked once more before giving up on it
    assert kinds.count(GET_NEXT_REQUEST) > 0
    until = state["getnext_until"]
    assert until == pytest.approx(time.monotonic() + snmp.BULK_RETRY_AFTER, abs=5)
    kinds.clear()
    second = await _generic_poll(state)
    assert second.success
    assert GET_BULK_REQUEST not in kinds  # GETNEXT until the hour is over
    assert state["getnext_until"] == until
    state["getnext_until"] = time.monotonic() - 1  # the hour is over
    kinds.clear()
    third = await _generic_poll(state)
    assert third.success
    assert kinds.count(GET_BULK_REQUEST) == 2  # GETBULK tried again, still broken
    assert state["getnext_until"] > until


async def test_one_getbulk_error_is_asked_again(responder: Responder) -> None:
    # An AgentX subagent that times out once makes the master agent answer genErr once.
    kinds: list[int] = []
    responder.mangle = bulk_gen_err(kinds, first_only=True)
    state: dict[str, Any] = {}
    first = await _generic_poll(state)
    assert first.success, first.message
    assert [i["name"] for i in first.facts["interfaces"]] == ["eth1", "eth2"]
    assert kinds.count(GET_BULK_REQUEST) == 2
    assert GET_NEXT_REQUEST not in kinds
    assert "getnext_until" not in state
    kinds.clear()
    second = await _generic_poll(state)
    assert second.success, second.message
    assert GET_BULK_REQUEST in kinds
    assert GET_NEXT_REQUEST not in kinds
