"""The hand-written BER codec: corpus, round trips, and fuzzing (hypothesis).

tests/data/snmp/ holds the corpus: `valid-*.bin` are real snmpd answers (captured from Debian
snmpd serving the ubiquiti-m5 recording) and crafted edge cases; `bad-*.bin` must be rejected.
Whatever the bytes, the decoder returns a Response or raises BerError - nothing else - and the
shared socket counts and ignores a bad answer without raising.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probes import snmp_ber
from probes.snmp_ber import (
    COUNTER32,
    COUNTER64,
    END_OF_MIB_VIEW,
    GAUGE32,
    GET_REQUEST,
    INTEGER,
    IP_ADDRESS,
    NO_SUCH_INSTANCE,
    NO_SUCH_OBJECT,
    NULL,
    OBJECT_IDENTIFIER,
    OCTET_STRING,
    TIMETICKS,
    BerError,
    Response,
    decode_message,
    decode_subids,
    encode_oid,
    encode_request,
    encode_response,
    oid_tuple,
)
from probes.snmp_client import _ManagerProtocol, _Pending

CORPUS = Path(__file__).parent / "data" / "snmp"
VALID = sorted(CORPUS.glob("valid-*.bin"))
BAD = sorted(CORPUS.glob("bad-*.bin"))
FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def _decode_or_reject(data: bytes) -> Response | None:
    try:
        return decode_message(data)
    except BerError:
        return None


def test_corpus_is_there() -> None:
    assert len(VALID) >= 8
    assert len(BAD) >= 6


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_corpus_decodes(path: Path) -> None:
    resp = decode_message(path.read_bytes())
    assert resp.varbinds
    for oid, _, _ in resp.varbinds:
        assert oid_tuple(oid)[:2] in ((1, 3), (2, 999))


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.name)
def test_bad_corpus_is_rejected(path: Path) -> None:
    with pytest.raises(BerError):
        decode_message(path.read_bytes())


def test_real_answer_values() -> None:
    resp = decode_message((CORPUS / "valid-snmpd-get-scalars-v2c.bin").read_bytes())
    values = {".".join(map(str, oid_tuple(o))): (t, v) for o, t, v in resp.varbinds}
    assert values["1.3.6.1.2.1.1.3.0"] == (TIMETICKS, 843153800)  # the recording's sysUpTime
    assert values["1.3.6.1.2.1.1.5.0"] == (OCTET_STRING, b"Kotelinaya-to-Pat")
    missing = decode_message((CORPUS / "valid-snmpd-get-missing-v1.bin").read_bytes())
    assert missing.error_status == 2 and missing.error_index == 2  # v1 noSuchName


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes_never_crash(data: bytes) -> None:
    _decode_or_reject(data)


@FUZZ
@given(st.sampled_from(VALID), st.data())
def test_mutated_corpus_never_crashes(path: Path, data: st.DataObject) -> None:
    raw = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        pos = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if kind == "flip" and raw:
            raw[pos] = data.draw(st.integers(0, 255))
        elif kind == "cut":
            del raw[pos:]
        elif kind == "insert":
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
        elif raw:
            del raw[pos]
    _decode_or_reject(bytes(raw))


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_every_truncation_is_rejected(path: Path) -> None:
    raw = path.read_bytes()
    for cut in range(len(raw)):
        with pytest.raises(BerError):
            decode_message(raw[:cut])


oids = st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=20).flatmap(
    lambda tail: st.tuples(st.integers(0, 1), st.integers(0, 39)).map(lambda h: h + tuple(tail)))

values = st.one_of(
    st.tuples(st.just(INTEGER), st.integers(-(2**31), 2**31 - 1)),
    st.tuples(st.sampled_from([COUNTER32, GAUGE32, TIMETICKS]), st.integers(0, 2**32 - 1)),
    st.tuples(st.just(COUNTER64), st.integers(0, 2**64 - 1)),
    st.tuples(st.just(OCTET_STRING), st.binary(max_size=300)),
    st.tuples(st.just(IP_ADDRESS), st.binary(min_size=4, max_size=4)),
    st.tuples(st.just(OBJECT_IDENTIFIER), oids.map(encode_oid)),
    st.tuples(st.sampled_from([NULL, NO_SUCH_OBJECT, NO_SUCH_INSTANCE, END_OF_MIB_VIEW]),
              st.none()),
)


@FUZZ
@given(oids)
def test_oid_round_trip(oid: tuple[int, ...]) -> None:
    raw = encode_oid(oid)
    assert oid_tuple(raw) == oid
    assert encode_oid(".".join(map(str, oid))) == raw
    assert decode_subids(encode_oid((1, 3, *oid))[1:]) == oid


@FUZZ
@given(st.integers(0, 2**31 - 1), st.binary(max_size=40),
       st.lists(st.tuples(oids, values), max_size=40))
def test_response_round_trip(request_id: int, community: bytes,
                             varbinds: list[tuple[tuple[int, ...], tuple[int, object]]]) -> None:
    encoded = [(encode_oid(o), t, v) for o, (t, v) in varbinds]
    resp = decode_message(encode_response(1, community, request_id, encoded))  # type: ignore[arg-type]
    assert resp.request_id == request_id
    assert resp.community == community
    assert resp.varbinds == encoded


@FUZZ
@given(st.lists(oids, min_size=1, max_size=30), st.integers(0, 10), st.integers(0, 200))
def test_request_encoding_is_well_formed(names: list[tuple[int, ...]], nr: int, mr: int) -> None:
    raw = encode_request(1, b"public", GET_REQUEST, 12345, [encode_oid(o) for o in names], nr, mr)
    req = decode_message(raw, requests=True)
    assert [oid_tuple(vb[0]) for vb in req.varbinds] == names


@FUZZ
@given(st.sampled_from(VALID), st.integers(0, 2000), st.integers(0, 255))
async def test_socket_classifies_any_answer(path: Path, pos: int, byte: int) -> None:
    """The shared socket never raises on an answer: a result, or the answer is ignored."""
    raw = bytearray(path.read_bytes())
    raw[pos % len(raw)] = byte
    resp = _decode_or_reject(path.read_bytes())
    assert resp is not None
    loop = asyncio.get_running_loop()
    proto = _ManagerProtocol()
    future: asyncio.Future[Response] = loop.create_future()
    proto.pending[("127.0.11.9", 1161)] = _Pending(resp.request_id, resp.community, future)
    proto.datagram_received(bytes(raw), ("127.0.11.9", 1161))
    proto.datagram_received(bytes(raw), ("127.0.11.8", 1161))  # another address: ignored
    if future.done():
        assert future.exception() is None
    else:
        # Malformed, or e.g. the flipped byte changed the request id: ignored.
        assert proto.malformed + proto.stray >= 2
    assert proto.stray >= 1


def _boom(data: bytes) -> Response:
    raise OverflowError("int too big to convert")


async def test_undecodable_answers_are_ignored_not_fatal() -> None:
    """A malformed datagram neither fails the pending request nor reaches asyncio's handler."""
    valid = (CORPUS / "valid-snmpd-get-scalars-v2c.bin").read_bytes()
    resp = decode_message(valid)
    loop = asyncio.get_running_loop()
    proto = _ManagerProtocol()
    addr = ("127.0.11.9", 1161)
    future: asyncio.Future[Response] = loop.create_future()
    pending = _Pending(resp.request_id, resp.community, future)
    proto.pending[addr] = pending
    proto.datagram_received(valid[:-3], addr)  # BerError
    proto.datagram_received(b"\x30\x03\x02\x01", addr)
    assert not future.done()
    assert proto.malformed == pending.malformed == 2
    proto.datagram_received(valid, addr)  # the real answer still counts
    assert future.result().request_id == resp.request_id

    # Whatever else a decoder raises (a v3 header overflowing a cipher's IV) is caught too.
    other: asyncio.Future[Response] = loop.create_future()
    proto.pending[addr] = _Pending(1, b"", other, _boom)
    proto.datagram_received(valid, addr)
    assert not other.done()
    assert proto.malformed == 3
    assert "OverflowError" in proto.pending[addr].error


# ---------------------------------------------------------------- OID limits


def _with_name(oid: bytes) -> bytes:
    return encode_response(1, b"public", 7, [(oid, NULL, None)])


def _with_value(oid: bytes) -> bytes:
    return encode_response(1, b"public", 7, [(encode_oid("1.3.6.1.2.1.1.2.0"), OBJECT_IDENTIFIER,
                                               oid)])


@pytest.mark.parametrize("raw", [
    pytest.param(b"\x2b" + b"\x01" * 127, id="129-subids"),  # RFC 2578: at most 128
    pytest.param(b"\x2b\x81\x80\x80\x80\x80\x01", id="6-byte-subid"),
    pytest.param(b"\x2b\x90\x80\x80\x80\x00", id="subid-2^32"),
    pytest.param(b"\x2b\x80\x01", id="non-minimal-subid"),
    pytest.param(b"\x2b\x06\x81", id="truncated-subid"),
])
def test_invalid_oids_are_rejected_by_the_decoder(raw: bytes) -> None:
    for message in (_with_name(raw), _with_value(raw)):
        with pytest.raises(BerError):
            decode_message(message)
    with pytest.raises(BerError):
        oid_tuple(raw)


def test_oids_at_the_limits_are_accepted() -> None:
    longest = b"\x2b" + b"\x8f\xff\xff\xff\x7f" * 126  # 128 sub-identifiers of 2^32-1
    assert decode_message(_with_name(longest)).oids == [longest]
    assert decode_message(_with_value(longest)).values == [longest]
    assert oid_tuple(longest) == (1, 3) + (2**32 - 1,) * 126
    assert encode_oid(oid_tuple(longest)) == longest
    with pytest.raises(ValueError):
        encode_oid((1, 3, 2**32))


def test_a_hostile_long_oid_is_rejected_at_once_and_not_cached() -> None:
    # 60 KB of continuation bytes: decoding it took 0.3 s (quadratic), blocking the loop.
    huge = b"\x2b" + b"\x81" * 60_000 + b"\x01"
    before = len(snmp_ber.OID_CACHE)
    start = time.perf_counter()
    with pytest.raises(BerError):
        decode_message(_with_name(huge))
    with pytest.raises(BerError):
        oid_tuple(huge)
    assert time.perf_counter() - start < 0.05
    assert huge not in snmp_ber.OID_CACHE and len(snmp_ber.OID_CACHE) <= before


def test_oid_caches_are_capped_by_size() -> None:
    # The longest valid OIDs, 10,000 of them (6.4 MB encoded): the caches must not keep them all.
    longest = [encode_oid((1, 3, n, *(2**32 - 1,) * 125)) for n in range(10_000)]
    try:
        for raw in longest:
            oid_tuple(raw)
        encode_request(1, b"public", GET_REQUEST, 1, longest)
        assert sum(map(len, snmp_ber.OID_CACHE)) <= 4_100_000
        assert sum(map(len, snmp_ber._VB_CACHE.values())) <= 4_100_000
    finally:
        snmp_ber.OID_CACHE.clear()
        snmp_ber._VB_CACHE.clear()
