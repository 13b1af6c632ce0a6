"""camnet's USM: RFC 3414 key vectors, message round trips, tampering and fuzzing.

(Interoperability with a real agent, every protocol pair, is in test_snmp_v3.py against snmpd.)
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probes.snmp_ber import (
    GET_RESPONSE,
    INTEGER,
    OCTET_STRING,
    BerError,
    Response,
    encode_oid,
    encode_response,
)
from probes.snmp_usm import (
    AUTH,
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


def _answer(session: UsmSession, msg_id: int = 4242) -> bytes:
    """An agent's answer, made with the session's own keys (a response PDU in a v3 message)."""
    varbinds = [(encode_oid("1.3.6.1.2.1.1.5.0"), OCTET_STRING, b"hall-ap"),
                (encode_oid("1.3.6.1.2.1.2.2.1.8.1"), INTEGER, 1)]
    v2c = encode_response(1, b"", msg_id, varbinds)
    start, _ = _header(v2c, 0, 0x30)
    pdu = v2c[start + 5:]
    assert pdu[0] == GET_RESPONSE
    return session._encode(msg_id, pdu)


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
