"""SNMPv3 with the User-based Security Model on the lean codec (RFC 3414, 3826, 7860).

Engine discovery, time synchronisation, HMAC-MD5/SHA-1/SHA-2 authentication and DES-CBC /
AES-CFB privacy, built on `cryptography` and hashlib; PDUs are encoded and decoded by
`probes.snmp_ber`. The same `request()` as the community session, through the shared socket.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from probes.snmp_ber import (
    INTEGER,
    OCTET_STRING,
    REPORT,
    SEQUENCE,
    VERSION_2C,
    VERSION_3,
    BerError,
    Response,
    _header,
    _int_at,
    _int_body,
    _tlv,
    decode_message,
    encode_request,
    oid_str,
)
from probes.snmp_client import (
    SnmpAuthError,
    SnmpBadReply,
    SnmpTimeout,
    Stats,
    _manager,
    _Pending,
    exchange,
    resolve,
)

try:  # cryptography >= 43 keeps DES and CFB among the "decrepit" primitives
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # pragma: no cover - older cryptography
    TripleDES = algorithms.TripleDES  # type: ignore[misc]
try:
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
except ImportError:  # pragma: no cover - cryptography < 47
    CFB = modes.CFB  # type: ignore[misc]

# name -> (hash constructor, HMAC truncation in bytes)
AUTH: dict[str, tuple[Callable[..., Any], int]] = {
    "MD5": (hashlib.md5, 12),
    "SHA": (hashlib.sha1, 12),
    "SHA224": (hashlib.sha224, 16),
    "SHA256": (hashlib.sha256, 24),
    "SHA384": (hashlib.sha384, 32),
    "SHA512": (hashlib.sha512, 48),
}
PRIV_KEY_BYTES = {"DES": 16, "AES": 16, "AES192": 24, "AES256": 32}

USM_STATS = "1.3.6.1.6.3.15.1.1."
NOT_IN_TIME_WINDOW = USM_STATS + "2.0"
UNKNOWN_ENGINE_ID = USM_STATS + "4.0"
AUTH_REPORTS = {
    USM_STATS + "1.0": "unsupported security level",
    USM_STATS + "3.0": "unknown user name",
    USM_STATS + "5.0": "wrong digest (authentication key)",
    USM_STATS + "6.0": "decryption error (privacy key)",
}
MAX_MESSAGE = 65507
MAX_BOOTS_OR_TIME = 2**31 - 1  # RFC 3414: snmpEngineBoots and snmpEngineTime are 0..2^31-1
FLAG_AUTH, FLAG_PRIV, FLAG_REPORTABLE = 0x01, 0x02, 0x04
# Discovery/request pairs before a silent agent's privacy key is blamed (_check_privacy).
# Computed for independent losses: on a line losing 30 % of packets each way (one try in two
# answered), a right key is blamed after 0.4 % of the requests that time out (0.49⁴ × 0.51⁴),
# against 6 % when one discovery answered (retries allowed) and one request unanswered
# (retries too) sufficed; at 50 %, 0.1 % against 22 %.
PRIVACY_PROBES = 4

_KU_CACHE: dict[tuple[str, bytes], bytes] = {}
_msg_ids = itertools.count(int.from_bytes(os.urandom(3), "big") + 1)
_salts = itertools.count(int.from_bytes(os.urandom(4), "big"))


def password_to_key(password: bytes, auth: str) -> bytes:
    """RFC 3414 A.2: hash one megabyte of the repeated password (cached, it costs ~3 ms)."""
    key = _KU_CACHE.get((auth, password))
    if key is None:
        if not password:
            raise SnmpAuthError("empty SNMPv3 passphrase")
        repeated = password * (1048576 // len(password) + 1)
        key = AUTH[auth][0](repeated[:1048576]).digest()
        _KU_CACHE[(auth, password)] = key
    return key


def localize(ku: bytes, engine_id: bytes, auth: str) -> bytes:
    """RFC 3414 A.2: the key for one authoritative engine."""
    return bytes(AUTH[auth][0](ku + engine_id + ku).digest())


def extend_key(kul: bytes, auth: str, size: int) -> bytes:
    """Blumenthal key extension (AES-192/256 with a short hash), as net-snmp does."""
    key = kul
    while len(key) < size:
        key += AUTH[auth][0](key).digest()
    return key[:size]


@dataclass
class _Engine:
    engine_id: bytes = b""
    boots: int = 0
    time: int = 0
    synced_at: float = 0.0
    keys: dict[str, bytes] = field(default_factory=dict)

    def now(self) -> tuple[int, int]:
        return self.boots, self.time + int(time.monotonic() - self.synced_at)


class UsmSession:
    """An SNMPv3 agent through the shared socket; at most one request in flight."""

    version = VERSION_3

    def __init__(self, host: str, port: int, user: str, level: str, auth: str, auth_key: str,
                 priv: str, priv_key: str, context: str = "", timeout: float = 2.0,
                 retries: int = 1) -> None:
        self.host, self.port = host, port
        self.user = user.encode()
        self.level = level
        self.auth, self.priv = auth, priv
        self._auth_pass = auth_key.encode()
        self._priv_pass = priv_key.encode()
        self.context = context.encode()
        self.timeout, self.retries = timeout, retries
        self.stats = Stats()
        self.engine = _Engine()
        self._addr: tuple[str, int] | None = None
        self._family = 0
        # (msgID, engine ID, boots, time, authenticated) of the last message decoded: adopted
        # only once the message proved to answer our request (see _adopt).
        self._last_engine: tuple[int, bytes, int, int, bool] = (0, b"", 0, 0, False)
        # Set when an answer came back encrypted and authenticated (late ones included, while
        # another request waits): the agent decrypts our requests, so our keys work.
        self.keys_work = False

    # ------------------------------------------------------------ keys

    def _keys(self) -> tuple[bytes, bytes]:
        keys = self.engine.keys
        if "auth" not in keys and self.level != "noAuthNoPriv":
            keys["auth"] = localize(password_to_key(self._auth_pass, self.auth),
                                    self.engine.engine_id, self.auth)
        if "priv" not in keys and self.level == "authPriv":
            kul = localize(password_to_key(self._priv_pass, self.auth), self.engine.engine_id,
                           self.auth)
            keys["priv"] = extend_key(kul, self.auth, PRIV_KEY_BYTES[self.priv])
        return keys.get("auth", b""), keys.get("priv", b"")

    # ------------------------------------------------------------ messages

    def _encode(self, msg_id: int, pdu: bytes, discovery: bool = False) -> bytes:
        flags = FLAG_REPORTABLE
        auth_key = priv_key = b""
        mac_len = 0
        salt = b""
        scoped = _tlv(SEQUENCE, _tlv(OCTET_STRING, self.engine.engine_id)
                      + _tlv(OCTET_STRING, self.context) + pdu)
        boots, etime = self.engine.now()
        if not discovery and self.level != "noAuthNoPriv":
            flags |= FLAG_AUTH
            auth_key, priv_key = self._keys()
            mac_len = AUTH[self.auth][1]
        if not discovery and self.level == "authPriv":
            flags |= FLAG_PRIV
            scoped, salt = self._encrypt(scoped, priv_key, boots, etime)
            data = _tlv(OCTET_STRING, scoped)
        else:
            data = scoped
        user = b"" if discovery else self.user
        head = (_tlv(OCTET_STRING, self.engine.engine_id) + _tlv(INTEGER, _int_body(boots))
                + _tlv(INTEGER, _int_body(etime)) + _tlv(OCTET_STRING, user))
        mac_tlv = _tlv(OCTET_STRING, b"\x00" * mac_len)
        sec_inner = _tlv(SEQUENCE, head + mac_tlv + _tlv(OCTET_STRING, salt))
        global_data = _tlv(SEQUENCE, _tlv(INTEGER, _int_body(msg_id))
                           + _tlv(INTEGER, _int_body(MAX_MESSAGE))
                           + _tlv(OCTET_STRING, bytes((flags,)))
                           + _tlv(INTEGER, b"\x03"))
        sec = _tlv(OCTET_STRING, sec_inner)
        body = _tlv(INTEGER, b"\x03") + global_data + sec + data
        message = _tlv(SEQUENCE, body)
        if mac_len:
            # The MAC sits at a known place: the end of `head` inside the security parameters.
            start = len(message) - len(body) + len(_tlv(INTEGER, b"\x03")) + len(global_data)
            start += len(sec) - len(sec_inner)  # the OCTET STRING header
            start += len(sec_inner) - len(head + mac_tlv + _tlv(OCTET_STRING, salt))  # SEQ hdr
            start += len(head) + (len(mac_tlv) - mac_len)
            digest = hmac.new(auth_key, message, AUTH[self.auth][0]).digest()[:mac_len]
            message = message[:start] + digest + message[start + mac_len:]
        return message

    def _encrypt(self, scoped: bytes, key: bytes, boots: int, etime: int) -> tuple[bytes, bytes]:
        salt_n = next(_salts) & 0xFFFFFFFF
        if self.priv == "DES":
            salt = boots.to_bytes(4, "big") + salt_n.to_bytes(4, "big")
            iv = bytes(a ^ b for a, b in zip(key[8:16], salt, strict=True))
            padded = scoped + b"\x00" * (-len(scoped) % 8)
            enc = Cipher(TripleDES(key[:8] * 3), modes.CBC(iv)).encryptor()
            return enc.update(padded) + enc.finalize(), salt
        salt = (salt_n << 32 | next(_salts) & 0xFFFFFFFF).to_bytes(8, "big")
        iv = boots.to_bytes(4, "big") + etime.to_bytes(4, "big") + salt
        enc = Cipher(algorithms.AES(key), CFB(iv)).encryptor()
        return enc.update(scoped) + enc.finalize(), salt

    def _decrypt(self, data: bytes, salt: bytes, boots: int, etime: int) -> bytes:
        _, key = self._keys()
        if len(salt) != 8:
            raise BerError("bad privacy parameters")
        if self.priv == "DES":
            if len(data) % 8:
                raise BerError("DES ciphertext is not a multiple of 8 bytes")
            iv = bytes(a ^ b for a, b in zip(key[8:16], salt, strict=True))
            dec = Cipher(TripleDES(key[:8] * 3), modes.CBC(iv)).decryptor()
        else:
            iv = boots.to_bytes(4, "big") + etime.to_bytes(4, "big") + salt
            dec = Cipher(algorithms.AES(key), CFB(iv)).decryptor()
        return dec.update(data) + dec.finalize()

    def decode(self, data: bytes) -> Response:
        """Decode, authenticate and decrypt one answer (BerError / SnmpAuthError if bad)."""
        try:
            return self._decode(data)
        except IndexError as exc:
            raise BerError("truncated message") from exc

    def _decode(self, data: bytes) -> Response:
        i, end = _header(data, 0, SEQUENCE)
        if end != len(data):
            raise BerError("trailing bytes after the message")
        version, i = _int_at(data, i, end)
        if version != VERSION_3:
            raise BerError("not an SNMPv3 message")
        j, g_end = _header(data, i, SEQUENCE)
        msg_id, j = _int_at(data, j, g_end)
        _, j = _int_at(data, j, g_end)
        f_start, j = _header(data, j, OCTET_STRING)
        flags = data[f_start] if j > f_start else 0
        i = g_end
        s_start, s_end = _header(data, i, OCTET_STRING)
        k, _ = _header(data, s_start, SEQUENCE)
        e_start, k = _header(data, k, OCTET_STRING)
        engine_id = data[e_start:k]
        boots, k = _int_at(data, k, s_end)
        etime, k = _int_at(data, k, s_end)
        if not (0 <= boots <= MAX_BOOTS_OR_TIME and 0 <= etime <= MAX_BOOTS_OR_TIME):
            raise BerError("engine boots or time out of range")
        _, k = _header(data, k, OCTET_STRING)  # user name
        mac_start, k = _header(data, k, OCTET_STRING)
        mac = data[mac_start:k]
        p_start, k = _header(data, k, OCTET_STRING)
        salt = data[p_start:k]
        i = s_end
        if flags & FLAG_PRIV and not flags & FLAG_AUTH:
            raise BerError("privacy without authentication")  # RFC 3412 msgFlags: ..10 is invalid
        if flags & FLAG_AUTH:
            if self.level == "noAuthNoPriv" or not mac:
                raise BerError("unexpected authenticated answer")
            auth_key, _ = self._keys()
            zeroed = data[:mac_start] + b"\x00" * len(mac) + data[mac_start + len(mac):]
            digest = hmac.new(auth_key, zeroed, AUTH[self.auth][0]).digest()[:len(mac)]
            if not hmac.compare_digest(digest, mac):
                raise BerError("answer fails authentication")
        if flags & FLAG_PRIV:
            c_start, c_end = _header(data, i, OCTET_STRING)
            scoped = self._decrypt(data[c_start:c_end], salt, boots, etime)
            _, sc_end = _header(scoped, 0, SEQUENCE)
            scoped = scoped[:sc_end]
        else:
            scoped = data[i:end]
        k, sc_end = _header(scoped, 0, SEQUENCE)
        _, k = _header(scoped, k, OCTET_STRING)  # contextEngineID
        _, k = _header(scoped, k, OCTET_STRING)  # contextName
        pdu = scoped[k:sc_end]
        # Reuse the community decoder for the PDU: wrap it as a v2c message.
        inner = decode_message(_tlv(SEQUENCE, b"\x02\x01\x01\x04\x00" + pdu))
        if flags & FLAG_PRIV:
            self.keys_work = True
        if inner.pdu_type != REPORT:
            # An answer must come at the level we asked for (only error reports come lower).
            if self.level != "noAuthNoPriv" and not flags & FLAG_AUTH:
                raise BerError("unauthenticated answer to an authenticated request")
            if self.level == "authPriv" and not flags & FLAG_PRIV:
                raise BerError("unencrypted answer to an encrypted request")
        inner.version = VERSION_3
        inner.community = b""
        # Not adopted here: this may be a spoofed or late message (msgID not checked yet).
        self._last_engine = (msg_id, engine_id, boots, etime, bool(flags & FLAG_AUTH))
        inner.request_id = msg_id  # matched on msgID (clear text) by the shared socket
        return inner

    def _adopt(self, msg_id: int) -> bool:
        """Take the engine's boots/time from our answer if authenticated (RFC 3414 3.2 7b)."""
        answered, engine_id, boots, etime, authenticated = self._last_engine
        if answered != msg_id or not authenticated or engine_id != self.engine.engine_id:
            return False
        self.engine.boots, self.engine.time = boots, etime
        self.engine.synced_at = time.monotonic()
        return True

    # ------------------------------------------------------------ exchange

    async def _exchange(self, message: bytes, msg_id: int,
                        retries: int | None = None) -> Response:
        if self._addr is None:
            self._family, self._addr = await resolve(self.host, self.port)
        proto = await _manager(self._family)
        return await exchange(proto, self._addr, message,
                              lambda future: _Pending(msg_id, b"", future, self.decode),
                              self.timeout, self.retries if retries is None else retries,
                              self.stats)

    async def _discover(self, retries: int | None = None, probe: bool = False) -> None:
        msg_id = next(_msg_ids) & 0x7FFFFFFF
        pdu = _pdu(0xA0, msg_id, [])
        resp = await self._exchange(self._encode(msg_id, pdu, discovery=True), msg_id, retries)
        # The one unauthenticated boots/time we trust: the report answering our discovery.
        answered, engine_id, boots, etime, _ = self._last_engine
        if resp.pdu_type != REPORT or not engine_id or answered != msg_id:
            raise SnmpBadReply("the agent did not reveal its engine ID")
        if probe and engine_id == self.engine.engine_id:
            return  # a sign of life only: the time we hold came authenticated (some agents
            # report boots and time 0 to a discovery)
        self.engine = _Engine(engine_id, boots, etime, time.monotonic())

    async def _check_privacy(self, pdu: tuple[int, Sequence[bytes], int, int]
                             ) -> tuple[int, Response] | None:
        """After silence: is the agent up and ignoring us? (a wrong privacy key looks so)

        An agent cannot decrypt a message made with the wrong privacy key and drops it without
        a report; a lossy line drops some of everything. So PRIVACY_PROBES pairs of single
        tries, a plain discovery probe then the encrypted request: only an agent that answers
        every probe and none of the requests is refusing our key (SnmpAuthError). A lost
        probe ends the check (None: the caller's timeout stands), and so does a late answer
        that came back encrypted (a slow agent, not a wrong key); an answered request is
        returned, (msgID, answer), as the answer to the caller's.
        """
        pdu_type, oids, non_repeaters, max_repetitions = pdu
        self.keys_work = False
        for _ in range(PRIVACY_PROBES):
            try:
                await self._discover(retries=0, probe=True)
            except SnmpTimeout:
                return None
            if self.keys_work:
                return None
            msg_id = next(_msg_ids) & 0x7FFFFFFF
            message = self._encode(msg_id, _pdu(pdu_type, msg_id, list(oids), non_repeaters,
                                                max_repetitions))
            try:
                return msg_id, await self._exchange(message, msg_id, retries=0)
            except SnmpTimeout:
                continue
        if self.keys_work:
            return None
        raise SnmpAuthError(
            "the agent answers discovery but ignores our encrypted requests: "
            "wrong privacy passphrase or protocol?"
        )

    async def request(self, pdu_type: int, oids: Sequence[bytes], non_repeaters: int = 0,
                      max_repetitions: int = 0) -> Response:
        """Send one PDU with USM protection and return the agent's answer."""
        if not self.engine.engine_id:
            await self._discover()
        lost: SnmpTimeout | None = None
        for _ in range(3):  # at most: rediscover, resync, then the answer
            msg_id = next(_msg_ids) & 0x7FFFFFFF
            pdu = _pdu(pdu_type, msg_id, list(oids), non_repeaters, max_repetitions)
            try:
                resp = await self._exchange(self._encode(msg_id, pdu), msg_id)
            except SnmpTimeout as exc:
                if self.level != "authPriv":
                    raise
                late = await self._check_privacy((pdu_type, oids, non_repeaters,
                                                  max_repetitions))
                if late is None:
                    raise
                lost = exc
                msg_id, resp = late
            synced = self._adopt(msg_id)
            if resp.pdu_type != REPORT:
                return resp
            report = oid_str(resp.oids[0]) if resp.oids else ""
            if report in AUTH_REPORTS:
                raise SnmpAuthError(f"agent rejected the credentials: {AUTH_REPORTS[report]}")
            if report == UNKNOWN_ENGINE_ID or (report == NOT_IN_TIME_WINDOW and not synced):
                await self._discover()  # an unauthenticated report's clock is not trusted
            elif report != NOT_IN_TIME_WINDOW:  # authenticated, time adopted: try again
                raise SnmpBadReply(f"unexpected report {report or '(empty)'}")
        if lost is not None:  # rounds spent on a lossy line, not a refusal
            raise lost
        raise SnmpAuthError("the agent keeps refusing our time window")


def _pdu(pdu_type: int, request_id: int, oids: list[bytes], non_repeaters: int = 0,
         max_repetitions: int = 0) -> bytes:
    """Only the PDU part of a request (cut out of a v2c message)."""
    message = encode_request(VERSION_2C, b"", pdu_type, request_id, oids, non_repeaters,
                             max_repetitions)
    start, _ = _header(message, 0, SEQUENCE)
    return message[start + 5:]  # skip INTEGER version (3 bytes) and the empty community (2)
