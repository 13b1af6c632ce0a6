"""The pysnmp transport (`mode: pysnmp`): any version, behind the same `request()` as the codec.

The default path is camnet's own codec and USM (`probes.snmp_usm`); this one is the reference
implementation and a fallback for agents with quirks the lean path does not handle. pysnmp
does the USM work (key localisation, HMAC-MD5/SHA-1/SHA-2, DES/AES privacy, engine
discovery and time sync); its answers are converted to the codec's varbind form so gets and
walks stay shared code.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import weakref
from collections.abc import Sequence
from typing import Any

from pysnmp.hlapi.v3arch import asyncio as hl

from probes.base import Credentials
from probes.snmp_ber import (
    COUNTER32,
    COUNTER64,
    END_OF_MIB_VIEW,
    GAUGE32,
    GET_BULK_REQUEST,
    GET_NEXT_REQUEST,
    GET_REQUEST,
    GET_RESPONSE,
    INTEGER,
    IP_ADDRESS,
    NO_SUCH_INSTANCE,
    NO_SUCH_OBJECT,
    NULL,
    OBJECT_IDENTIFIER,
    OCTET_STRING,
    OPAQUE,
    TIMETICKS,
    VERSION_3,
    Response,
    VarBind,
    encode_oid,
    oid_tuple,
)
from probes.snmp_client import (
    RECEIVE_BUFFER,
    SnmpAuthError,
    SnmpBadReply,
    SnmpTimeout,
    SnmpUnreachable,
    Stats,
)

AUTH_PROTOCOLS = {
    "MD5": hl.usmHMACMD5AuthProtocol,
    "SHA": hl.usmHMACSHAAuthProtocol,
    "SHA224": hl.usmHMAC128SHA224AuthProtocol,
    "SHA256": hl.usmHMAC192SHA256AuthProtocol,
    "SHA384": hl.usmHMAC256SHA384AuthProtocol,
    "SHA512": hl.usmHMAC384SHA512AuthProtocol,
}
PRIV_PROTOCOLS = {
    "DES": hl.usmDESPrivProtocol,
    "AES": hl.usmAesCfb128Protocol,
    "AES192": hl.usmAesCfb192Protocol,
    "AES256": hl.usmAesCfb256Protocol,
}
# pysnmp error indications that mean "the agent does not accept these credentials".
AUTH_INDICATIONS = frozenset((
    "UnknownUserName", "WrongDigest", "UnsupportedSecLevel", "DecryptionError",
    "UnknownSecurityName", "AuthenticationFailure", "AuthenticationError",
))
TIMEOUT_INDICATIONS = frozenset(("RequestTimedOut",))

_TAGS = {
    "Integer": INTEGER, "Integer32": INTEGER, "OctetString": OCTET_STRING, "Null": NULL,
    "ObjectIdentifier": OBJECT_IDENTIFIER, "IpAddress": IP_ADDRESS, "Counter32": COUNTER32,
    "Gauge32": GAUGE32, "Unsigned32": GAUGE32, "TimeTicks": TIMETICKS, "Opaque": OPAQUE,
    "Counter64": COUNTER64, "NoSuchObject": NO_SUCH_OBJECT, "NoSuchInstance": NO_SUCH_INSTANCE,
    "EndOfMibView": END_OF_MIB_VIEW,
}

# Per event loop, the engines by _engine_key: "" (v1/v2c, and the first keys of each v3 user
# name) and one per other set of keys of a name.
_ENGINES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Any]] = (
    weakref.WeakKeyDictionary()
)
# UdpTransportTarget.create() resolves the name: once per device and engine, not once per poll.
_TARGETS: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, str, int, float, int], Any]] = (
    weakref.WeakKeyDictionary()
)
_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, int], asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def _engine(key: str) -> Any:
    """The event loop's SnmpEngine for `key` (creating one costs ~190 ms of CPU)."""
    engines = _ENGINES.setdefault(asyncio.get_running_loop(), {})
    engine = engines.get(key)
    if engine is None:
        engine = engines[key] = hl.SnmpEngine()
    return engine


# An engine keeps one set of keys per v3 user name: two APs with the same user name but other
# keys, polled at once, had one of them rejected ("Wrong SNMP PDU digest"). The first set of
# keys seen for a name uses the common engine; any other set gets an engine of its own.
_FIRST_KEYS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, str]] = (
    weakref.WeakKeyDictionary()
)


def _engine_key(user: str, keys: tuple[Any, ...]) -> str:
    """Which engine polls this v3 user with these keys ("" is the common engine)."""
    digest = hashlib.sha256(repr((user, keys)).encode()).hexdigest()
    first = _FIRST_KEYS.setdefault(asyncio.get_running_loop(), {}).setdefault(user, digest)
    return "" if digest == first else digest


_GROWN: weakref.WeakSet[Any] = weakref.WeakSet()


def _grow_receive_buffer(engine: Any) -> None:
    """pysnmp's one socket overflowed its default buffer at 100 devices: grow it like ours."""
    dispatcher = engine.transport_dispatcher
    for domain in ((1, 3, 6, 1, 6, 1, 1), (1, 3, 6, 1, 2, 1, 100, 1, 2)):  # UDP/IPv4, UDP/IPv6
        try:
            carrier = dispatcher.get_transport(domain)
        except Exception:  # pysnmp raises its own error for "no such transport"
            continue
        transport = getattr(carrier, "transport", None)
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            _GROWN.add(engine)


def close_engines() -> None:
    """Close the running loop's pysnmp engines and their sockets."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    _TARGETS.pop(loop, None)
    _FIRST_KEYS.pop(loop, None)
    for engine in _ENGINES.pop(loop, {}).values():
        engine.close_dispatcher()


def _varbind(obj: Any) -> VarBind:
    name, value = obj[0], obj[1]
    oid = encode_oid(tuple(name))
    tag = _TAGS.get(type(value).__name__)
    if tag is None:
        for base in type(value).__mro__:
            tag = _TAGS.get(base.__name__)
            if tag is not None:
                break
        else:
            raise SnmpBadReply(f"unknown value type {type(value).__name__}")
    if tag in (NULL, NO_SUCH_OBJECT, NO_SUCH_INSTANCE, END_OF_MIB_VIEW):
        return oid, tag, None
    if tag in (OCTET_STRING, IP_ADDRESS, OPAQUE):
        return oid, tag, bytes(value.asOctets())
    if tag == OBJECT_IDENTIFIER:
        return oid, tag, encode_oid(tuple(value))
    return oid, tag, int(value)


class PysnmpSession:
    """An agent reached through pysnmp (v3 USM, or any version in `mode: pysnmp`)."""

    def __init__(self, host: str, port: int, creds: Credentials | None, timeout: float,
                 retries: int) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.retries = retries
        self.stats = Stats()
        auth = creds.config if creds is not None else None
        version = getattr(auth, "version", "2c")
        self.version = VERSION_3 if version == "3" else (0 if version == "1" else 1)
        self.context = hl.ContextData(contextName=getattr(auth, "context_name", "") or "")
        if version == "3":
            assert creds is not None and auth is not None
            level = auth.security_level
            kwargs: dict[str, Any] = {}
            if level in ("authNoPriv", "authPriv"):
                kwargs["authKey"] = creds.secret("auth_password")
                kwargs["authProtocol"] = AUTH_PROTOCOLS[auth.auth_protocol]
            if level == "authPriv":
                kwargs["privKey"] = creds.secret("priv_password")
                kwargs["privProtocol"] = PRIV_PROTOCOLS[auth.priv_protocol]
            self.auth_data: Any = hl.UsmUserData(auth.username or "", **kwargs)
            self._user: tuple[str, tuple[Any, ...]] | None = (
                auth.username or "", (level, *sorted(kwargs.items())))
        else:
            community = (creds.secret("community") if creds is not None else None) or "public"
            self.auth_data = hl.CommunityData(community, mpModel=self.version)
            self._user = None
        self._engine_key: str | None = None
        self._target: Any = None

    async def request(self, pdu_type: int, oids: Sequence[bytes], non_repeaters: int = 0,
                      max_repetitions: int = 0) -> Response:
        """Send one PDU through pysnmp; classify its error indications."""
        loop = asyncio.get_running_loop()
        locks = _LOCKS.setdefault(loop, {})
        lock = locks.setdefault((self.host, self.port), asyncio.Lock())
        if self._engine_key is None:
            self._engine_key = _engine_key(*self._user) if self._user is not None else ""
        engine = _engine(self._engine_key)
        if self._target is None:
            key = (self._engine_key, self.host, self.port, self.timeout, self.retries)
            targets = _TARGETS.setdefault(loop, {})
            self._target = targets.get(key)
            if self._target is None:
                try:
                    self._target = targets[key] = await hl.UdpTransportTarget.create(
                        (self.host, self.port), timeout=self.timeout, retries=self.retries
                    )
                except Exception as exc:  # pysnmp raises PySnmpError for unresolvable names
                    raise SnmpUnreachable(f"cannot reach {self.host}: {exc}") from exc
        objs = [hl.ObjectType(hl.ObjectIdentity(oid_tuple(o))) for o in oids]
        async with lock:
            self.stats.requests += 1
            if pdu_type == GET_REQUEST:
                ret = await hl.get_cmd(engine, self.auth_data, self._target, self.context, *objs,
                                       lookupMib=False)
            elif pdu_type == GET_NEXT_REQUEST:
                ret = await hl.next_cmd(engine, self.auth_data, self._target, self.context, *objs,
                                        lookupMib=False)
            elif pdu_type == GET_BULK_REQUEST:
                ret = await hl.bulk_cmd(engine, self.auth_data, self._target, self.context,
                                        non_repeaters, max_repetitions, *objs, lookupMib=False)
            else:
                raise ValueError(f"unsupported PDU type 0x{pdu_type:02x}")
        indication, status, index, var_binds = ret
        if engine not in _GROWN:
            _grow_receive_buffer(engine)
        if indication:
            kind = type(indication).__name__
            if kind in AUTH_INDICATIONS:
                raise SnmpAuthError(f"agent rejected the credentials: {indication}")
            if kind in TIMEOUT_INDICATIONS:
                raise SnmpTimeout(f"no answer from {self.host}:{self.port}")
            raise SnmpBadReply(f"{indication}")
        flat: list[Any] = []
        for item in var_binds:
            if item and isinstance(item[0], list | tuple) and not hasattr(item[0], "asTuple"):
                flat.extend(item)  # older pysnmp returned bulk answers as rows
            else:
                flat.append(item)
        varbinds = [_varbind(vb) for vb in flat]
        self.stats.varbinds += len(varbinds)
        return Response.from_varbinds(self.version, b"", GET_RESPONSE, 0, int(status), int(index),
                                      varbinds)
