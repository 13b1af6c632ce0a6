"""camnet's USM: RFC 3414 key vectors, message round trips, tampering and fuzzing.

(Interoperability with a real agent, every protocol pair, is in test_snmp_v3.py against snmpd.)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probes.snmp_ber import (
    COUNTER32,
    GET_REQUEST,
    GET_RESPONSE,
    INTEGER,
    OCTET_STRING,
    REPORT,
    BerError,
    Response,
    VarBind,
    _int_at,
    encode_oid,
    encode_response,
)
from probes.snmp_client import _ManagerProtocol, _Pending, close_managers
from probes.snmp_usm import (
    AUTH,
    FLAG_AUTH,
    NOT_IN_TIME_WINDOW,
    UNKNOWN_ENGINE_ID,
    UsmSession,
    _Engine,
    _header,
    localize,
    password_to_key,
)

ENGINE = bytes.fromhex("000000000000000000000002")
COMBOS = [("MD5", "DES"), ("SHA", "AES"), ("SHA224", "AES"), ("SHA256", "AES192"),
          ("SHA384", "AES256"), ("SHA512", "AES256"), ("SHA", "AES256"), ("MD5", "AES192")]


def test_rfc3414_key_localisation_vectors() -> None:
    # RFC 3414 appendix A.3.1 (MD5) and A.3.2 (SHA): password "maplesyrup", engine ...02.
    md5 = localize(password_to_key(b"maplesyrup", "MD5"), ENGINE, "MD5")
    assert md5.hex() == "526f5eed9fcce26f8964c2930787d82b"
    sha = localize(password_to_key(b"maplesyrup", "SHA"), ENGINE, "SHA")
    assert sha.hex() == "6695febc9288e36282235fc7151f128497b38f3f"


def _session(auth: str = "SHA", priv: str = "AES", level: str = "authPriv") -> UsmSession:
    s = UsmSession("127.0.11.9", 1161, "camnet", level, auth, "auth-passphrase", priv,
                   "priv-passphrase")
    s.engine = _Engine(ENGINE, 7, 123456, 0.0)
    return s


def _pdu(msg_id: int, varbinds: list[VarBind], pdu_type: int = GET_RESPONSE) -> bytes:
    v2c = encode_response(1, b"", msg_id, varbinds, pdu_type=pdu_type)
    start, _ = _header(v2c, 0, 0x30)
    pdu = v2c[start + 5:]
    assert pdu[0] == pdu_type
    return pdu


def _answer(session: UsmSession, msg_id: int = 4242) -> bytes:
    """An agent's answer, made with the session's own keys (a response PDU in a v3 message)."""
    varbinds = [(encode_oid("1.3.6.1.2.1.1.5.0"), OCTET_STRING, b"hall-ap"),
                (encode_oid("1.3.6.1.2.1.2.2.1.8.1"), INTEGER, 1)]
    return session._encode(msg_id, _pdu(msg_id, varbinds))


def _report(session: UsmSession, msg_id: int, oid: str) -> bytes:
    """A Report PDU at the session's level, with the boots/time of the session's engine."""
    return session._encode(msg_id, _pdu(msg_id, [(encode_oid(oid), COUNTER32, 1)], REPORT))


def _spoofer(boots: int, etime: int) -> UsmSession:
    """Makes unauthenticated messages claiming any engine clock."""
    s = _session(level="noAuthNoPriv")
    s.engine = _Engine(ENGINE, boots, etime, time.monotonic())
    return s


def _header_fields(raw: bytes) -> tuple[int, int, bytes, int]:
    """(msgID, offset of msgFlags, engine ID, boots) of a v3 message."""
    i, end = _header(raw, 0, 0x30)
    _, i = _int_at(raw, i, end)
    j, g_end = _header(raw, i, 0x30)
    msg_id, j = _int_at(raw, j, g_end)
    _, j = _int_at(raw, j, g_end)
    flags, _ = _header(raw, j, OCTET_STRING)
    s_start, s_end = _header(raw, g_end, OCTET_STRING)
    k, _ = _header(raw, s_start, 0x30)
    e_start, k = _header(raw, k, OCTET_STRING)
    boots, _ = _int_at(raw, k, s_end)
    return msg_id, flags, raw[e_start:k], boots


@pytest.mark.parametrize(("auth", "priv"), COMBOS)
def test_round_trip(auth: str, priv: str) -> None:
    s = _session(auth, priv)
    resp = s.decode(_answer(s))
    assert resp.request_id == 4242
    assert resp.values == [b"hall-ap", 1]


@pytest.mark.parametrize("level", ["noAuthNoPriv", "authNoPriv"])
def test_round_trip_lower_levels(level: str) -> None:
    s = _session(level=level)
    assert s.decode(_answer(s)).values == [b"hall-ap", 1]


def test_mac_length_per_protocol() -> None:
    assert {name: n for name, (_, n) in AUTH.items()} == {
        "MD5": 12, "SHA": 12, "SHA224": 16, "SHA256": 24, "SHA384": 32, "SHA512": 48}


def test_another_key_fails_authentication() -> None:
    raw = _answer(_session())
    other = UsmSession("127.0.11.9", 1161, "camnet", "authPriv", "SHA", "not-the-passphrase",
                       "AES", "priv-passphrase")
    other.engine = _Engine(ENGINE, 7, 123456, 0.0)
    with pytest.raises(BerError, match="authentication"):
        other.decode(raw)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(COMBOS), st.integers(0, 10_000), st.integers(1, 255))
def test_any_flipped_byte_is_rejected(combo: tuple[str, str], pos: int, xor: int) -> None:
    s = _session(*combo)
    raw = bytearray(_answer(s))
    raw[pos % len(raw)] ^= xor
    try:
        resp = s.decode(bytes(raw))
    except BerError:
        return
    # The only bytes outside the MAC's cover are none: a decodable tampered message is a bug,
    # except a flipped msgMaxSize/msgID that still parses - it must then fail the MAC too.
    raise AssertionError(f"tampered message accepted: {resp.values}")


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(COMBOS), st.data())
def test_mutated_messages_never_crash(combo: tuple[str, str], data: st.DataObject) -> None:
    s = _session(*combo)
    raw = bytearray(_answer(s))
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(raw) - 1)) if raw else 0
        if data.draw(st.booleans()):
            del raw[pos:]
        else:
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=6))
    try:
        result = s.decode(bytes(raw))
    except BerError:
        return
    assert isinstance(result, Response)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_never_crash(blob: bytes) -> None:
    with contextlib.suppress(BerError):
        _session().decode(blob)


def test_answer_below_the_requested_level_is_rejected() -> None:
    # Someone strips the authentication flag (or answers in clear): not accepted.
    plain = _answer(_session(level="noAuthNoPriv"))
    with pytest.raises(BerError, match="unauthenticated"):
        _session(level="authNoPriv").decode(plain)
    signed = _answer(_session(level="authNoPriv"))
    with pytest.raises(BerError, match="unencrypted"):
        _session(level="authPriv").decode(signed)


def test_privacy_without_authentication_is_rejected() -> None:
    # RFC 3412: privFlag without authFlag is invalid; it must not even be decrypted.
    s = _session()
    raw = bytearray(_report(s, 4242, NOT_IN_TIME_WINDOW))
    raw[_header_fields(bytes(raw))[1]] &= ~FLAG_AUTH
    with pytest.raises(BerError, match="privacy without authentication"):
        s.decode(bytes(raw))


@pytest.mark.parametrize(("boots", "etime"), [(-1, 5), (5000, 2**31 - 1), (2**31, 0), (3, -7)])
async def test_unauthenticated_reports_do_not_set_the_engine_clock(boots: int, etime: int) -> None:
    # A spoofed, unauthenticated report (not answering our msgID) reaches the shared socket.
    s = _session()
    loop = asyncio.get_running_loop()
    proto = _ManagerProtocol()
    addr = ("127.0.11.9", 1161)
    future: asyncio.Future[Response] = loop.create_future()
    proto.pending[addr] = _Pending(1111, b"", future, s.decode)
    proto.datagram_received(_report(_spoofer(boots, etime), 2222, NOT_IN_TIME_WINDOW), addr)
    assert not future.done()
    assert (s.engine.boots, s.engine.time) == (7, 123456)
    s._encode(3333, _pdu(3333, []))  # boots=-1 made this raise OverflowError


AGENT = ("127.0.11.12", 1161)


class _LyingClockAgent(asyncio.DatagramProtocol):
    """An authPriv agent (engine boots 7) whose notInTimeWindow reports are unauthenticated
    and claim a far-future clock, as an attacker on the path could send them."""

    def __init__(self) -> None:
        self.agent = _session()
        self.transport: Any = None
        self.seen: list[str] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        msg_id, flags, _, boots = _header_fields(data)
        if not data[flags] & FLAG_AUTH:  # discovery
            self.seen.append("discovery")
            reply = _report(_spoofer(7, 123456), msg_id, UNKNOWN_ENGINE_ID)
        elif boots != 7 or self.seen == ["discovery"]:  # the first request is lied to
            self.seen.append(f"get, boots {boots}: lie")
            reply = _report(_spoofer(2**31 - 1, 2**31 - 1), msg_id, NOT_IN_TIME_WINDOW)
        else:
            self.seen.append(f"get, boots {boots}: answer")
            self.agent.engine.synced_at = time.monotonic()
            reply = _answer(self.agent, msg_id)
        self.transport.sendto(reply, addr)


@pytest.fixture
async def lying_agent() -> AsyncIterator[_LyingClockAgent]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(_LyingClockAgent, local_addr=AGENT)
    try:
        yield proto
    finally:
        transport.close()
        close_managers()


async def test_unauthenticated_time_report_leads_to_rediscovery(
        lying_agent: _LyingClockAgent) -> None:
    s = UsmSession(*AGENT, "camnet", "authPriv", "SHA", "auth-passphrase", "AES",
                   "priv-passphrase", timeout=1.0, retries=0)
    async with asyncio.timeout(10):
        resp = await s.request(GET_REQUEST, [encode_oid("1.3.6.1.2.1.1.5.0")])
    assert resp.values == [b"hall-ap", 1]
    assert s.engine.boots == 7
    # The lie is not believed: camnet rediscovers and asks again with the agent's real clock.
    assert lying_agent.seen == ["discovery", "get, boots 7: lie", "discovery",
                                "get, boots 7: answer"]
