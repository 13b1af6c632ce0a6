"""A lean BER codec for SNMP v1/v2c messages: the hot path of the access-point poller.

Only what a manager needs: encode GET/GETNEXT/GETBULK requests, decode responses. OIDs stay as
their encoded bytes (what the next request needs, and a cheap dictionary key); `oid_tuple()`
decodes them, cached, where order or index values matter.
"""

from __future__ import annotations

import re
from typing import Any

# Universal and SNMP application tags.
INTEGER = 0x02
OCTET_STRING = 0x04
NULL = 0x05
OBJECT_IDENTIFIER = 0x06
SEQUENCE = 0x30
IP_ADDRESS = 0x40
COUNTER32 = 0x41
GAUGE32 = 0x42
TIMETICKS = 0x43
OPAQUE = 0x44
COUNTER64 = 0x46
NO_SUCH_OBJECT = 0x80
NO_SUCH_INSTANCE = 0x81
END_OF_MIB_VIEW = 0x82
EXCEPTIONS = frozenset((NO_SUCH_OBJECT, NO_SUCH_INSTANCE, END_OF_MIB_VIEW))
TAG_NAMES = {
    INTEGER: "INTEGER", OCTET_STRING: "OCTET STRING", NULL: "NULL",
    OBJECT_IDENTIFIER: "OBJECT IDENTIFIER", IP_ADDRESS: "IpAddress", COUNTER32: "Counter32",
    GAUGE32: "Gauge32", TIMETICKS: "TimeTicks", OPAQUE: "Opaque", COUNTER64: "Counter64",
    NO_SUCH_OBJECT: "noSuchObject", NO_SUCH_INSTANCE: "noSuchInstance",
    END_OF_MIB_VIEW: "endOfMibView",
}

# PDU tags.
GET_REQUEST = 0xA0
GET_NEXT_REQUEST = 0xA1
GET_RESPONSE = 0xA2
GET_BULK_REQUEST = 0xA5
REPORT = 0xA8

_REQUESTS = frozenset((GET_REQUEST, GET_NEXT_REQUEST, GET_BULK_REQUEST))

VERSION_1 = 0
VERSION_2C = 1
VERSION_3 = 3

_UNSIGNED = frozenset((COUNTER32, GAUGE32, TIMETICKS, COUNTER64))
_BYTES = frozenset((OCTET_STRING, IP_ADDRESS, OPAQUE))

# A varbind: (encoded OID, tag, value). Value: int, bytes, encoded OID bytes, or None.
VarBind = tuple[bytes, int, Any]


class BerError(ValueError):
    """The bytes are not a well-formed SNMP message."""


class Response:
    """A decoded SNMP message (the manager side only looks at responses and reports).

    Varbinds are kept as three parallel lists rather than one tuple per varbind: a walk
    decodes hundreds of thousands of them, and fewer objects means less garbage collection.
    """

    __slots__ = ("community", "error_index", "error_status", "oids", "pdu_type", "request_id",
                 "tags", "values", "version")

    def __init__(self, version: int, community: bytes, pdu_type: int, request_id: int,
                 error_status: int, error_index: int, oids: list[bytes], tags: list[int],
                 values: list[Any]) -> None:
        self.version = version
        self.community = community
        self.pdu_type = pdu_type
        self.request_id = request_id
        self.error_status = error_status
        self.error_index = error_index
        self.oids = oids
        self.tags = tags
        self.values = values

    @classmethod
    def from_varbinds(cls, version: int, community: bytes, pdu_type: int, request_id: int,
                      error_status: int, error_index: int, varbinds: list[VarBind]) -> Response:
        """A response from (oid, tag, value) tuples."""
        return cls(version, community, pdu_type, request_id, error_status, error_index,
                   [vb[0] for vb in varbinds], [vb[1] for vb in varbinds],
                   [vb[2] for vb in varbinds])

    @property
    def varbinds(self) -> list[VarBind]:
        """The varbinds as (oid, tag, value) tuples."""
        return list(zip(self.oids, self.tags, self.values, strict=True))


# ---------------------------------------------------------------- OIDs

MAX_SUBIDS = 128  # RFC 2578 section 3.5
MAX_SUBID = 2**32 - 1
# One encoded sub-identifier: minimal (no leading 0x80), at most 5 bytes, at most 2^32-1 (a
# 5-byte one carries 4 bits in its first byte). The first one encodes two sub-identifiers.
_SUBID = rb"(?:[\x81-\x8f][\x80-\xff]{3}|[\x81-\xff][\x80-\xff]{0,2})?[\x00-\x7f]"
_valid_oid = re.compile(rb"(?:%s){1,%d}" % (_SUBID, MAX_SUBIDS - 1)).fullmatch

# Agents send the same OIDs every poll. Capped by count and by encoded bytes: the decoded
# tuple of a long OID costs up to ~40 bytes per encoded byte, so a hostile agent's long OIDs
# must fill the cache sooner than ordinary ones.
OID_CACHE: dict[bytes, tuple[int, ...]] = {}
OID_CACHE_MAX = 200_000
OID_CACHE_MAX_BYTES = 4_000_000
_cache_bytes = {"oid": 0, "vb": 0}


def encode_oid(oid: str | tuple[int, ...]) -> bytes:
    """The BER content bytes (no tag, no length) of a dotted or tuple OID."""
    parts = tuple(int(p) for p in oid.strip(".").split(".")) if isinstance(oid, str) else oid
    if len(parts) < 2 or parts[0] > 2 or (parts[0] < 2 and parts[1] > 39) \
            or len(parts) > MAX_SUBIDS or max(parts) > MAX_SUBID:
        raise ValueError(f"invalid OID {oid!r}")
    out = bytearray()
    for sub in (parts[0] * 40 + parts[1], *parts[2:]):
        if sub < 0:
            raise ValueError(f"invalid OID {oid!r}")
        if sub < 0x80:
            out.append(sub)
            continue
        chunk = [sub & 0x7F]
        sub >>= 7
        while sub:
            chunk.append(0x80 | (sub & 0x7F))
            sub >>= 7
        out.extend(reversed(chunk))
    return bytes(out)


def oid_tuple(raw: bytes) -> tuple[int, ...]:
    """Decode the content bytes of an OID (cached: agents send the same OIDs every poll)."""
    cached = OID_CACHE.get(raw)
    if cached is not None:
        return cached
    if not _valid_oid(raw):
        raise BerError("invalid object identifier")
    if max(raw) < 0x80:
        first = raw[0]
        head = (first // 40, first % 40) if first < 80 else (2, first - 80)
        result = head + tuple(raw[1:])
    else:
        subs: list[int] = []
        value = 0
        for b in raw:
            value = (value << 7) | (b & 0x7F)
            if not b & 0x80:
                subs.append(value)
                value = 0
        first = subs[0]
        head = (first // 40, first % 40) if first < 80 else (2, first - 80)
        result = head + tuple(subs[1:])
    if len(OID_CACHE) >= OID_CACHE_MAX or _cache_bytes["oid"] >= OID_CACHE_MAX_BYTES:
        OID_CACHE.clear()
        _cache_bytes["oid"] = 0
    OID_CACHE[raw] = result
    _cache_bytes["oid"] += len(raw)
    return result


def oid_str(raw: bytes) -> str:
    """Dotted text of an encoded OID."""
    return ".".join(map(str, oid_tuple(raw)))


# ---------------------------------------------------------------- encoding


def _len_bytes(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes((tag,)) + _len_bytes(len(body)) + body


def _int_body(n: int) -> bytes:
    return n.to_bytes(max(1, (n + (n < 0)).bit_length() // 8 + 1), "big", signed=True)


_VB_CACHE: dict[bytes, bytes] = {}


def _null_varbind(oid: bytes) -> bytes:
    """The encoded `SEQUENCE { oid, NULL }` of a request (cached: requests repeat)."""
    vb = _tlv(SEQUENCE, _tlv(OBJECT_IDENTIFIER, oid) + b"\x05\x00")
    if len(_VB_CACHE) >= OID_CACHE_MAX or _cache_bytes["vb"] >= OID_CACHE_MAX_BYTES:
        _VB_CACHE.clear()
        _cache_bytes["vb"] = 0
    _VB_CACHE[oid] = vb
    _cache_bytes["vb"] += len(oid) + len(vb)
    return vb


def encode_request(version: int, community: bytes, pdu_type: int, request_id: int,
                   oids: list[bytes], non_repeaters: int = 0, max_repetitions: int = 0) -> bytes:
    """A v1/v2c request message; `oids` are encoded OIDs (see `encode_oid`)."""
    vbl = b"".join([_VB_CACHE.get(o) or _null_varbind(o) for o in oids])
    pdu = (_tlv(INTEGER, _int_body(request_id)) + _tlv(INTEGER, _int_body(non_repeaters))
           + _tlv(INTEGER, _int_body(max_repetitions)) + _tlv(SEQUENCE, vbl))
    msg = _tlv(INTEGER, _int_body(version)) + _tlv(OCTET_STRING, community) + _tlv(pdu_type, pdu)
    return _tlv(SEQUENCE, msg)


def encode_response(version: int, community: bytes, request_id: int, varbinds: list[VarBind],
                    error_status: int = 0, error_index: int = 0,
                    pdu_type: int = GET_RESPONSE) -> bytes:
    """A response message (for test responders and the fuzz corpus)."""
    parts = []
    for oid, tag, value in varbinds:
        if value is None:
            body = b""
        elif isinstance(value, int):
            body = (_int_body(value) if tag == INTEGER
                    else value.to_bytes(max(1, value.bit_length() // 8 + 1), "big"))
        else:
            body = bytes(value)
        parts.append(_tlv(SEQUENCE, _tlv(OBJECT_IDENTIFIER, oid) + _tlv(tag, body)))
    pdu = (_tlv(INTEGER, _int_body(request_id)) + _tlv(INTEGER, _int_body(error_status))
           + _tlv(INTEGER, _int_body(error_index)) + _tlv(SEQUENCE, b"".join(parts)))
    msg = _tlv(INTEGER, _int_body(version)) + _tlv(OCTET_STRING, community) + _tlv(pdu_type, pdu)
    return _tlv(SEQUENCE, msg)


# ---------------------------------------------------------------- decoding


def _header(data: bytes, i: int, tag: int) -> tuple[int, int]:
    """Check the tag at i; return (content start, content end)."""
    if data[i] != tag:
        raise BerError(f"expected tag 0x{tag:02x}, got 0x{data[i]:02x} at offset {i}")
    n = data[i + 1]
    i += 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0 or k > 4:
            raise BerError(f"unsupported length form at offset {i - 1}")
        n = int.from_bytes(data[i:i + k], "big")
        i += k
    end = i + n
    if end > len(data):
        raise BerError("truncated message")
    return i, end


def _int_at(data: bytes, i: int, end_limit: int) -> tuple[int, int]:
    start, end = _header(data, i, INTEGER)
    if end > end_limit or end == start or end - start > 8:
        raise BerError("bad INTEGER")
    return int.from_bytes(data[start:end], "big", signed=True), end


def peek_request_id(data: bytes) -> tuple[bytes, int] | None:
    """(community, request-id) of a v1/v2c message, its varbinds not decoded; None when even
    its start is malformed."""
    try:
        i, msg_end = _header(data, 0, SEQUENCE)
        _, i = _int_at(data, i, msg_end)
        start, i = _header(data, i, OCTET_STRING)
        community = data[start:i]
        i, pdu_end = _header(data, i, data[i])
        return community, _int_at(data, i, pdu_end)[0]
    except (BerError, IndexError):
        return None


def decode_message(data: bytes, requests: bool = False) -> Response:
    """Decode a v1/v2c response (or, with `requests`, any PDU); BerError when malformed."""
    try:
        return _decode(data, requests)
    except IndexError as exc:
        raise BerError("truncated message") from exc


def _decode(data: bytes, requests: bool) -> Response:
    i, msg_end = _header(data, 0, SEQUENCE)
    if msg_end != len(data):
        raise BerError("trailing bytes after the message")
    version, i = _int_at(data, i, msg_end)
    if version == VERSION_3:
        raise BerError("SNMPv3 message on the community transport")
    start, i = _header(data, i, OCTET_STRING)
    community = data[start:i]
    pdu_type = data[i]
    if pdu_type not in (GET_RESPONSE, REPORT) and not (requests and pdu_type in _REQUESTS):
        raise BerError(f"unexpected PDU type 0x{pdu_type:02x}")
    i, pdu_end = _header(data, i, pdu_type)
    if pdu_end != msg_end:
        raise BerError("PDU length disagrees with message length")
    request_id, i = _int_at(data, i, pdu_end)
    error_status, i = _int_at(data, i, pdu_end)
    error_index, i = _int_at(data, i, pdu_end)
    i, vbl_end = _header(data, i, SEQUENCE)
    if vbl_end != pdu_end:
        raise BerError("varbind list length disagrees with PDU length")
    oids: list[bytes] = []
    tags: list[int] = []
    values: list[Any] = []
    add_oid, add_tag, add_value = oids.append, tags.append, values.append
    from_bytes = int.from_bytes
    known = OID_CACHE  # OIDs decoded before are valid: the check costs a lookup, not a regex
    valid = _valid_oid
    while i < vbl_end:
        # Inlined TLV parsing: this loop runs once per varbind, the hot path of the poller.
        if data[i] != SEQUENCE:
            raise BerError(f"varbind is not a SEQUENCE at offset {i}")
        n = data[i + 1]
        i += 2
        if n & 0x80:
            k = n & 0x7F
            if k == 0 or k > 4:
                raise BerError("unsupported length form")
            n = from_bytes(data[i:i + k], "big")
            i += k
        vb_end = i + n
        if vb_end > vbl_end:
            raise BerError("varbind overruns the varbind list")
        if data[i] != OBJECT_IDENTIFIER:
            raise BerError(f"varbind name is not an OID at offset {i}")
        n = data[i + 1]
        i += 2
        if n & 0x80:
            k = n & 0x7F
            if k == 0 or k > 2:
                raise BerError("unsupported OID length form")
            n = from_bytes(data[i:i + k], "big")
            i += k
        if n == 0 or i + n > vb_end:
            raise BerError("bad OID length")
        oid = data[i:i + n]
        if oid not in known and not valid(oid):
            raise BerError(f"invalid OID at offset {i}")
        i += n
        tag = data[i]
        n = data[i + 1]
        i += 2
        if n & 0x80:
            k = n & 0x7F
            if k == 0 or k > 4:
                raise BerError("unsupported length form")
            n = from_bytes(data[i:i + k], "big")
            i += k
        if i + n != vb_end:
            raise BerError("varbind value length disagrees with varbind length")
        if tag in _UNSIGNED:
            if n == 0 or n > 9:
                raise BerError(f"bad {TAG_NAMES[tag]} length {n}")
            value: Any = from_bytes(data[i:vb_end], "big")
        elif tag in _BYTES:
            value = data[i:vb_end]
        elif tag == INTEGER:
            if n == 0 or n > 8:
                raise BerError(f"bad INTEGER length {n}")
            value = from_bytes(data[i:vb_end], "big", signed=True)
        elif tag == OBJECT_IDENTIFIER:
            value = data[i:vb_end]
            if value and not valid(value):  # an empty value stays accepted: read as no OID
                raise BerError(f"invalid OID value at offset {i}")
        elif tag == NULL or tag in EXCEPTIONS:
            if n:
                raise BerError("NULL with content")
            value = None
        else:
            raise BerError(f"unknown value tag 0x{tag:02x}")
        i = vb_end
        add_oid(oid)
        add_tag(tag)
        add_value(value)
    return Response(version, community, pdu_type, request_id, error_status, error_index, oids, tags,
                    values)


def decode_subids(raw: bytes) -> tuple[int, ...]:
    """Sub-identifiers of an OID fragment (e.g. a table index after the column prefix)."""
    if max(raw, default=0) < 0x80:
        return tuple(raw)
    subs: list[int] = []
    value = 0
    for b in raw:
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            subs.append(value)
            value = 0
    return tuple(subs)
