"""ONVIF check of a camera: clock, identity, services and stream/snapshot URIs.

onvif-zeep-async quirks this module works around (FIELD-NOTES):
- importing `onvif` calls `logging.basicConfig(INFO)`: the daemon imports the probers
  (probes.registry imports this module) before it configures logging;
- parsing a WSDL costs 60–180 ms and MBs the first time in a process: `warm_up()` parses
  devicemgmt, media and events once at start, so no check pays it;
- its own timeouts are 90 s: every call here runs under `asyncio.timeout_at(deadline)`;
- its errors are not wrapped (zeep Fault, TransportError, XMLSyntaxError, AttributeError on a
  plain-text HTTP 500, aiohttp errors): `classify()` maps them in one place;
- cameras lock a client out after a few failed logins (Hikvision: 7): after NotAuthorized the
  camera is left alone for `auth_backoff` and `auth_failed` is reported without trying;
- its transport reads a whole reply into memory and zeep parses it on the event loop, with no
  size limit: `_cap_reply_size()` makes a reply over MAX_REPLY_BYTES a `bad_reply`, read no
  further, so a camera that floods cannot stall the other checks or fill memory;
- a call through it builds two zeep clients, an aiohttp session and typed objects for every
  element of the reply: the two calls every check makes (GetSystemDateAndTime, then
  GetDeviceInformation as the login check) cost about twice the CPU that way, the largest
  share of a 640x360 camera's check (docs/performance-camera.md). They are sent here as the
  fixed envelopes zeep would send, over `DeviceHttp` (one kept-alive HTTP/1.1 connection,
  cheaper than an aiohttp session), and their replies read with lxml; discovery
  (GetServices, GetProfiles, GetStreamUri: once an hour) stays with the library.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import os
import re
import ssl
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit
from xml.sax.saxutils import escape

import aiohttp
import onvif
import onvif.zeep_aiohttp
import zeep.exceptions
from lxml import etree
from onvif.exceptions import ONVIFAuthError, ONVIFError, ONVIFTimeoutError
from onvif.util import is_auth_error
from pydantic import Field

from probes.base import CheckResult, CheckSettings, Duration, MetricDef, Target, redact_url

METRICS: dict[str, MetricDef] = {
    "camnet_camera_onvif_up": MetricDef(
        "gauge", "1 when the ONVIF service answered the check's authenticated requests"
    ),
    "camnet_camera_clock_offset_seconds": MetricDef(
        "gauge", "Camera clock minus camnet's clock (UTC), from GetSystemDateAndTime"
    ),
    "camnet_camera_info": MetricDef(
        "info", "Identity from GetDeviceInformation", ("vendor", "model", "firmware", "serial")
    ),
}

ONVIF_PROBLEMS = ("auth_failed", "clock_drift")
# When the camera last rejected our credentials (monotonic); shared with the RTSP check, since
# cameras count failed RTSP logins towards the same lockout.
AUTH_FAILED_KEY = "auth_failed_at"
CLOCK_DRIFT_KEY = "clock_drift"  # in the camera's state: the last clock reading's verdict
CLOSE_TIMEOUT = 1.0  # closing aiohttp sessions must not outlive a check by much
# Some cameras (the recorded Axis Q6045-E) answer GetServices with a fault: fall back.
GET_SERVICES_EXCEPTIONS = (zeep.exceptions.Fault, ONVIFError)
STREAM_SETUP = {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}}
# Codecs a picture profile may use: MJPEG profiles are the snapshot's, and cost more to carry.
PICTURE_CODECS = frozenset({"H264", "H265"})
# The largest reply in the recorded Axis and Hikvision traffic is 74 KB (GetCACertificates;
# GetProfiles 28 KB): 1 MiB leaves room for big cameras and parses in a few ms.
MAX_REPLY_BYTES = 1 << 20
DIGEST_ATTR = "camnet_digest"  # on a library transport: its aiohttp DigestAuthMiddleware


SOAP12_NS = "http://www.w3.org/2003/05/soap-envelope"
DEVICE_NS = "http://www.onvif.org/ver10/device/wsdl"
WSSE_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
PASSWORD_DIGEST = ("http://docs.oasis-open.org/wss/2004/01/"
                   "oasis-200401-wss-username-token-profile-1.0#PasswordDigest")
BASE64_BINARY = ("http://docs.oasis-open.org/wss/2004/01/"
                 "oasis-200401-wss-soap-message-security-1.0#Base64Binary")
# Replies are parsed as zeep parses them: no entities expanded, nothing fetched.
REPLY_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)


class ReplyTooLarge(aiohttp.ClientPayloadError):
    """A SOAP reply over MAX_REPLY_BYTES (classified as bad_reply)."""


async def _read_capped(response: aiohttp.ClientResponse) -> bytes:
    """A reply's body, at most MAX_REPLY_BYTES of it (else ReplyTooLarge, connection dropped)."""
    try:
        if (response.content_length or 0) > MAX_REPLY_BYTES:
            raise ReplyTooLarge(f"reply of {response.content_length} bytes announced")
        body = bytearray()
        async for chunk in response.content.iter_chunked(65536):
            body += chunk
            if len(body) > MAX_REPLY_BYTES:
                raise ReplyTooLarge(f"reply larger than {MAX_REPLY_BYTES} bytes")
    except BaseException:
        response.close()  # drop the connection: the rest of the flood is never read
        raise
    return bytes(body)


async def _capped_post(self: onvif.zeep_aiohttp.AIOHTTPTransport, address: str,
                       message: str | bytes, headers: dict[str, str]
                       ) -> tuple[aiohttp.ClientResponse, bytes]:
    """The library's POST, reading at most MAX_REPLY_BYTES of the reply."""
    headers = headers or {}
    headers.setdefault("Content-Type", 'text/xml; charset="utf-8"')
    data = message.encode("utf-8") if isinstance(message, str) else message
    digest = getattr(self, DIGEST_ATTR, None)
    response = await self.session.post(address, data=data, headers=headers, proxy=self.proxy,
                                       timeout=self._client_timeout,
                                       middlewares=(digest,) if digest else None)
    return response, await _read_capped(response)


def _allow_http_digest(service: Any, user: str | None, password: str | None) -> None:
    """Let a library service answer an HTTP Digest challenge (it sends only the
    UsernameToken; cameras set to digest only refuse that: agsh/onvif#294)."""
    if user:
        setattr(service.transport, DIGEST_ATTR, aiohttp.DigestAuthMiddleware(user, password or ""))


def _cap_reply_size() -> None:
    """Route the library's SOAP POSTs through `_capped_post` (it offers no hook for this)."""
    transport = onvif.zeep_aiohttp.AIOHTTPTransport
    if not hasattr(transport, "_post_internal"):
        raise ImportError("onvif-zeep-async changed: AIOHTTPTransport._post_internal is gone; "
                          "probes/onvif.py caps reply sizes through it")
    transport._post_internal = _capped_post


_cap_reply_size()


class OnvifSettings(CheckSettings):
    """ONVIF polling; the port and credentials come from the camera and its auth."""

    interval: Duration = 60.0
    max_clock_offset: Duration = Field(default=30.0, description="clock_drift above this")
    auth_backoff: Duration = Field(default=600.0, description="pause after a rejected login")
    uri_refresh: Duration = Field(
        default=3600.0, description="how often the stream URI is asked again (it rarely changes)"
    )
    concurrency: int = Field(default=16, ge=1, le=1024)


class OnvifCheckError(Exception):
    """A classified ONVIF failure: `reason` is unreachable, timeout, auth_failed, fault or bad_reply."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ServerDisconnected(ConnectionResetError):
    """The camera closed the connection before the reply's first byte (often a kept-alive one)."""


# Status line and headers of a reply: the recorded cameras send under 400 bytes.
MAX_HEAD_BYTES = 16 * 1024
MAX_BLANK_LINES = 8  # empty lines tolerated before a status line
MAX_REDIRECTS = 3
REDIRECTS = frozenset({301, 302, 303, 307, 308})
CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,8}")
_NO_VERIFY: ssl.SSLContext | None = None


def _no_verify_tls() -> ssl.SSLContext:
    """TLS without certificate checks, as the library does: cameras that redirect their
    device service to HTTPS carry self-signed certificates."""
    global _NO_VERIFY
    if _NO_VERIFY is None:
        _NO_VERIFY = ssl.create_default_context()
        _NO_VERIFY.check_hostname = False
        _NO_VERIFY.verify_mode = ssl.CERT_NONE
    return _NO_VERIFY


class DeviceHttp:
    """HTTP/1.1 POSTs to a camera's device service over one kept-alive connection.

    The two calls of every ONVIF check go through this rather than aiohttp: with a new
    aiohttp session for them a check cost about 1.5 times the CPU (docs/performance-camera.md),
    and a camera check's budget is a tenth of an ffmpeg grab. It reads what device services
    send: Content-Length, chunked, or a body up to the close; interim 1xx replies skipped;
    redirects followed (the POST kept, as SOAP needs; to HTTPS without a certificate check,
    as the library). The caller's deadline rules: no timeout here.
    """

    def __init__(self) -> None:
        self._key: tuple[str, str, int] | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    def close(self) -> None:
        """Drop the connection at once (no TLS goodbye to wait for)."""
        if self._writer is not None:
            self._writer.transport.abort()
        self._key = self._reader = self._writer = None

    async def post(self, url: str, body: bytes, content_type: str,
                   login: tuple[str, str] | None = None) -> tuple[int, bytes]:
        """(status, body) of a POST to `url`, redirects followed, an HTTP Digest challenge
        answered once with `login` (user, password)."""
        authorization = ""
        answered = False
        for _ in range(MAX_REDIRECTS + 1):
            status, headers, reply = await self._exchange(url, body, content_type, authorization)
            if status == 401 and login and not answered:
                # Cameras set to HTTP digest only (Hikvision's "digest" mode: agsh/onvif#294)
                # refuse the UsernameToken with a Digest challenge. Answered once: a wrong
                # password costs the lockout count no more than that.
                answered = True
                authorization = digest_authorization(headers.get("www-authenticate", ""),
                                                     *login, "POST", _request_target(url))
                if authorization:
                    continue
            location = headers.get("location", "")
            if status not in REDIRECTS or not location:
                return status, reply
            url = urljoin(url, location)
            authorization = ""
        raise OnvifCheckError("bad_reply", f"more than {MAX_REDIRECTS} redirects")

    async def _exchange(self, url: str, body: bytes, content_type: str, authorization: str = ""
                        ) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(url)
        host, scheme = parts.hostname, parts.scheme.lower()
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            host = None
        if scheme not in ("http", "https") or not host:
            raise OnvifCheckError("bad_reply", "redirected to an address that is not HTTP")
        if self._key != (scheme, host, port):
            self.close()
            self._reader, self._writer = await asyncio.open_connection(
                host, port, ssl=_no_verify_tls() if scheme == "https" else None,
                limit=MAX_HEAD_BYTES)
            self._key = (scheme, host, port)
        reader, writer = self._reader, self._writer
        assert reader is not None and writer is not None
        authority = f"[{host}]" if ":" in host else host
        if parts.port:
            authority += f":{port}"
        auth = f"Authorization: {authorization}\r\n".encode() if authorization else b""
        writer.write(f"POST {_request_target(url)} HTTP/1.1\r\nHost: {authority}\r\n"
                     f"User-Agent: camnet\r\nAccept: */*\r\nContent-Type: {content_type}\r\n"
                     .encode("latin-1") + auth
                     + f"Content-Length: {len(body)}\r\n\r\n".encode("latin-1") + body)
        try:
            await writer.drain()
            version, status, headers = await self._head(reader)
            reply, framed = await self._body(reader, status, headers)
        except BaseException:
            self.close()
            raise
        if not framed or version != "HTTP/1.1" or "close" in headers.get("connection", "").lower():
            self.close()
        return status, headers, reply

    @staticmethod
    async def _line(reader: asyncio.StreamReader, first: bool = False) -> bytes:
        try:
            return (await reader.readuntil(b"\n")).rstrip(b"\r\n")
        except asyncio.IncompleteReadError as e:
            if first and not e.partial:
                raise ServerDisconnected("closed before answering") from None
            raise OnvifCheckError("bad_reply", "the camera dropped the connection "
                                               "mid-reply") from None
        except asyncio.LimitOverrunError:
            raise OnvifCheckError("bad_reply", "reply header line over "
                                               f"{MAX_HEAD_BYTES} bytes") from None

    async def _head(self, reader: asyncio.StreamReader) -> tuple[str, int, dict[str, str]]:
        """The status line and headers (names lower-cased), interim 1xx replies skipped."""
        first = True
        blank = 0
        while True:
            line = await self._line(reader, first)
            if not line and first:
                # Some embedded servers send a CRLF past a kept-alive reply's body: skipped
                # before the status line, as HTTP/1.1 parsers do (RFC 9112 2.2).
                blank += 1
                if blank > MAX_BLANK_LINES:
                    raise OnvifCheckError("bad_reply", "not an HTTP reply")
                continue
            first = False
            version, _, rest = line.partition(b" ")
            code = rest[:3]
            if not version.startswith(b"HTTP/1.") or not code.isdigit() or rest[3:4] not in (
                    b"", b" "):
                raise OnvifCheckError("bad_reply", "not an HTTP reply")
            headers: dict[str, str] = {}
            size = len(line)
            while line := await self._line(reader):
                size += len(line)
                if size > MAX_HEAD_BYTES:
                    raise OnvifCheckError("bad_reply", f"reply headers over {MAX_HEAD_BYTES} "
                                                       "bytes")
                name, sep, value = line.decode("latin-1").partition(":")
                name = name.strip().lower()
                if sep and name == "www-authenticate" and name in headers:
                    headers[name] += "\n" + value.strip()  # one challenge a line (Basic, Digest)
                elif sep:
                    headers[name] = value.strip()
            if not 100 <= int(code) < 200:
                return version.decode("latin-1"), int(code), headers

    async def _body(self, reader: asyncio.StreamReader, status: int, headers: dict[str, str]
                    ) -> tuple[bytes, bool]:
        """The reply's body, at most MAX_REPLY_BYTES (else ReplyTooLarge), and whether it was
        framed (Content-Length or chunked) so the connection can carry another request."""
        try:
            if status in (204, 304):
                return b"", True
            if "chunked" in headers.get("transfer-encoding", "").lower():
                body = bytearray()
                while True:
                    size = (await self._line(reader)).split(b";", 1)[0].strip()
                    if not CHUNK_SIZE.fullmatch(size):
                        raise OnvifCheckError("bad_reply", "malformed chunked reply")
                    n = int(size, 16)
                    if not n:
                        while await self._line(reader):  # trailers
                            pass
                        return bytes(body), True
                    if len(body) + n > MAX_REPLY_BYTES:
                        raise ReplyTooLarge(f"reply larger than {MAX_REPLY_BYTES} bytes")
                    body += await reader.readexactly(n)
                    await self._line(reader)
            length = headers.get("content-length")
            if length is not None:
                if not length.isdigit():
                    raise OnvifCheckError("bad_reply", "malformed Content-Length")
                if int(length) > MAX_REPLY_BYTES:
                    raise ReplyTooLarge(f"reply of {length} bytes announced")
                return await reader.readexactly(int(length)), True
            body = bytearray()
            while chunk := await reader.read(65536):  # the body ends with the connection
                body += chunk
                if len(body) > MAX_REPLY_BYTES:
                    raise ReplyTooLarge(f"reply larger than {MAX_REPLY_BYTES} bytes")
            return bytes(body), False
        except asyncio.IncompleteReadError:
            raise OnvifCheckError("bad_reply", "the camera dropped the connection "
                                               "mid-reply") from None


def _request_target(url: str) -> str:
    """The path and query of `url`, as a request line (and a digest `uri`) carry them."""
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


_DIGEST_HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}
_AUTH_PARAM = re.compile(r'([A-Za-z][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def digest_authorization(challenges: str, user: str, password: str, method: str,
                         uri: str) -> str:
    """An HTTP Digest Authorization answering the Digest one of `challenges` (one a line;
    RFC 7616: MD5 or SHA-256, -sess or not, qop auth or none), or '' when there is none."""
    params: dict[str, str] = {}
    for challenge in challenges.split("\n"):
        scheme, _, rest = challenge.strip().partition(" ")
        if scheme.lower() == "digest":
            params = {m[0].lower(): re.sub(r"\\(.)", r"\1", m[1]) if m[1] else m[2]
                      for m in _AUTH_PARAM.findall(rest)}
            break
    algorithm = params.get("algorithm", "MD5")
    hash_fn = _DIGEST_HASHES.get(algorithm.upper().removesuffix("-SESS"))
    qops = {q.strip().lower() for q in params.get("qop", "").split(",") if q.strip()}
    if hash_fn is None or "nonce" not in params or (qops and "auth" not in qops):
        return ""

    def h(text: str) -> str:
        return hash_fn(text.encode()).hexdigest()

    realm, nonce, cnonce = params.get("realm", ""), params["nonce"], os.urandom(8).hex()
    ha1 = h(f"{user}:{realm}:{password}")
    if algorithm.upper().endswith("-SESS"):
        ha1 = h(f"{ha1}:{nonce}:{cnonce}")
    ha2 = h(f"{method}:{uri}")
    response = h(f"{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}" if qops else f"{ha1}:{nonce}:{ha2}")
    fields = [f'username="{_quoted(user)}"', f'realm="{_quoted(realm)}"',
              f'nonce="{_quoted(nonce)}"', f'uri="{_quoted(uri)}"', f"algorithm={algorithm}",
              f'response="{response}"']
    if qops:
        fields += ["qop=auth", "nc=00000001", f'cnonce="{cnonce}"']
    if "opaque" in params:
        fields.append(f'opaque="{_quoted(params["opaque"])}"')
    return "Digest " + ", ".join(fields)


def classify(exc: BaseException) -> tuple[str, str]:
    """(reason, message) for any exception out of onvif-zeep-async, aiohttp or zeep."""
    # onvif-zeep-async wraps some errors in ONVIFError: judge the original.
    while isinstance(exc, ONVIFError) and exc.__cause__ is not None:
        if isinstance(exc, ONVIFAuthError):
            break
        exc = exc.__cause__
    name = type(exc).__name__
    if isinstance(exc, OnvifCheckError):
        return exc.reason, str(exc)
    if isinstance(exc, ReplyTooLarge):
        return "bad_reply", f"the camera flooded: {exc}"
    if isinstance(exc, TimeoutError | ONVIFTimeoutError | aiohttp.ServerTimeoutError):
        return "timeout", "no answer before the deadline"
    if isinstance(exc, ONVIFAuthError):
        return "auth_failed", "the camera rejected the credentials"
    if isinstance(exc, zeep.exceptions.Fault):
        if is_auth_error(exc):
            return "auth_failed", "the camera rejected the credentials (NotAuthorized)"
        return "fault", f"SOAP fault: {(exc.message or '').strip()[:200]}"
    if isinstance(exc, zeep.exceptions.TransportError):
        if exc.status_code in (401, 403):
            return "auth_failed", f"HTTP {exc.status_code}"
        return "bad_reply", f"HTTP {exc.status_code} without a SOAP answer"
    if isinstance(exc, aiohttp.ClientConnectorError | ConnectionRefusedError):
        return "unreachable", f"cannot connect: {getattr(exc, 'strerror', None) or name}"
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError
                  | ConnectionResetError):
        return "bad_reply", f"the camera dropped the connection ({name})"
    if isinstance(exc, OSError):
        return "unreachable", f"{name}: {exc.strerror or exc}"
    if isinstance(exc, aiohttp.ClientError):
        return "bad_reply", name
    if isinstance(exc, etree.XMLSyntaxError | zeep.exceptions.XMLParseError
                  | zeep.exceptions.Error | AttributeError | KeyError | TypeError | ValueError
                  | IndexError | ONVIFError):
        # AttributeError: zeep on an HTTP 500 with a plain-text body; the rest: replies
        # that parse but lack what ONVIF promises.
        return "bad_reply", f"unexpected reply ({name})"
    return "bad_reply", name


@dataclass(slots=True)
class OnvifFacts:
    """What one ONVIF session learned."""

    clock_offset: float | None = None
    identity: dict[str, str] | None = None
    stream_uri: str | None = None
    snapshot_uri: str | None = None
    profile: str | None = None
    picture_uri: str | None = None
    picture_profile: str | None = None
    picture_ratio: float | None = None  # the main stream's pixels per picture-stream pixel


def _credentials(target: Target) -> tuple[str | None, str | None]:
    if target.auth is None:
        return None, None
    return getattr(target.auth.config, "username", None), target.auth.secret("password")


def _port(target: Target) -> int:
    return int(target.options.get("onvif_port") or 80)


def _camera(target: Target) -> onvif.ONVIFCamera:
    """A client for the target; built inside the running loop (the library needs one)."""
    user, password = _credentials(target)
    return onvif.ONVIFCamera(target.address, _port(target), user, password, no_cache=True,
                             adjust_time=False)


def _device_url(target: Target) -> str:
    """The device service's address, as the library builds it."""
    host = f"[{target.address}]" if ":" in target.address else target.address
    return f"http://{host}:{_port(target)}/onvif/device_service"


def username_token(username: str, password: str, offset: float) -> str:
    """A WS-Security UsernameToken with a PasswordDigest, Created on the camera's clock (UTC
    plus `offset` s): what the library sends, Zulu time (Hikvision rejects +00:00)."""
    nonce = os.urandom(16)
    created = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    digest = base64.b64encode(
        hashlib.sha1(nonce + created.encode() + password.encode()).digest()).decode()
    return (f'<wsse:Security xmlns:wsse="{WSSE_NS}" xmlns:wsu="{WSU_NS}"><wsse:UsernameToken>'
            f"<wsse:Username>{escape(username)}</wsse:Username>"
            f'<wsse:Password Type="{PASSWORD_DIGEST}">{digest}</wsse:Password>'
            f'<wsse:Nonce EncodingType="{BASE64_BINARY}">{base64.b64encode(nonce).decode()}'
            f"</wsse:Nonce><wsu:Created>{created}</wsu:Created></wsse:UsernameToken>"
            "</wsse:Security>")


def _fault(body: Any) -> OnvifCheckError | None:
    """The SOAP fault in a reply's Body, classified as the library's `is_auth_error` does: a
    NotAuthorized subcode, or "auth" in the codes or the reason (not in the Detail)."""
    fault = body.find("{*}Fault")
    if fault is None:
        return None
    code = fault.find("{*}Code")  # SOAP 1.2: Code/Value, Subcode/Value, ...; 1.1: faultcode
    codes = [str(v.text or "").strip() for v in (code.iter("{*}Value") if code is not None
                                                  else fault.iterfind("{*}faultcode"))]
    reason = " ".join(str(t.text or "").strip() for t in
                      [*fault.iterfind("{*}Reason/{*}Text"), *fault.iterfind("{*}faultstring")])
    if any("NotAuthorized" in c for c in codes):
        return OnvifCheckError("auth_failed", "the camera rejected the credentials "
                                              "(NotAuthorized)")
    if "auth" in " ".join([reason, *codes]).lower():  # cameras without the proper subcode
        return OnvifCheckError("auth_failed", f"the camera rejected the credentials: "
                                              f"{reason[:200]}")
    return OnvifCheckError("fault", f"SOAP fault: {reason[:200]}")


async def _device_call(http: DeviceHttp, url: str, operation: str,
                       login: tuple[str, str, float] | None = None) -> Any:
    """One device-service request without arguments, signed with `login` (user, password,
    clock offset) when given: the reply's `<operation>Response` element."""
    content_type = f'application/soap+xml; charset=utf-8; action="{DEVICE_NS}/{operation}"'
    for attempt in (1, 2):
        header = f"<s:Header>{username_token(*login)}</s:Header>" if login else ""
        envelope = (f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{SOAP12_NS}">'
                    f'{header}<s:Body><tds:{operation} xmlns:tds="{DEVICE_NS}"/></s:Body>'
                    "</s:Envelope>")
        try:
            status, reply = await http.post(url, envelope.encode(), content_type,
                                            login[:2] if login else None)
            break
        except (ConnectionResetError, BrokenPipeError):  # ServerDisconnected too
            # Cameras close kept-alive connections without saying so, seen at the request's
            # start or mid-send (the library retries both): once more on a new connection,
            # with a fresh nonce.
            if attempt == 2:
                raise
    try:
        root = etree.fromstring(reply, REPLY_PARSER)
    except etree.XMLSyntaxError:
        if status in (401, 403):
            raise OnvifCheckError("auth_failed", f"HTTP {status}") from None
        if status != 200:
            raise OnvifCheckError("bad_reply", f"HTTP {status} without a SOAP answer") from None
        raise
    body = root.find("{*}Body")
    fault = _fault(body) if body is not None else None
    if fault is not None:
        raise fault
    if status in (401, 403):
        raise OnvifCheckError("auth_failed", f"HTTP {status}")
    answer = body.find(f"{{{DEVICE_NS}}}{operation}Response") if body is not None else None
    if status != 200 or answer is None:
        raise OnvifCheckError("bad_reply", f"HTTP {status} without a {operation} answer")
    return answer


def _text(parent: Any, path: str) -> str:
    return str(parent.findtext(path, default="") or "").strip()


def _utc(value: Any) -> dt.datetime:
    """A tt:DateTime element (Date: Year, Month, Day; Time: Hour, Minute, Second) as UTC."""
    year, month, day, hour, minute, second = (
        int(_text(value, path)) for path in ("{*}Date/{*}Year", "{*}Date/{*}Month",
                                             "{*}Date/{*}Day", "{*}Time/{*}Hour",
                                             "{*}Time/{*}Minute", "{*}Time/{*}Second"))
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)


def _sign_with_offset(service: Any, offset: float) -> None:
    """Make WS-Security timestamps follow the camera's clock, so a drifting camera still
    accepts us (it rejects a Created more than a few minutes off its own clock)."""
    diff = dt.timedelta(seconds=offset)
    service.dt_diff = diff
    wsse = getattr(getattr(service, "zeep_client", None), "wsse", None)
    if wsse is not None and hasattr(wsse, "dt_diff"):
        wsse.dt_diff = diff


async def _read_clock(http: DeviceHttp, url: str, user: str | None, password: str | None,
                      result: CheckResult | None) -> float | None:
    """The camera's clock minus ours (s) from GetSystemDateAndTime; None when it has none."""
    before = time.time()
    try:
        try:
            sdt = await _device_call(http, url, "GetSystemDateAndTime")
        except OnvifCheckError as exc:
            if exc.reason != "auth_failed" or not user:
                raise
            # Some cameras (Vivotek, Panasonic: agsh/onvif#301) want credentials for the clock
            # too, against ONVIF Core: ask again signed on our own clock. One login, so a wrong
            # password still costs the camera's lockout count one attempt per check.
            if result:
                result.debug("GetSystemDateAndTime needs credentials: asking again signed")
            before = time.time()
            sdt = await _device_call(http, url, "GetSystemDateAndTime", (user, password or "", 0.0))
    except OnvifCheckError as exc:
        if exc.reason != "fault":
            raise
        # Cameras without GetSystemDateAndTime (HiKam A7: agsh/onvif#65) answer a fault: the
        # clock is unknown, the identity and the stream URI still asked.
        if result:
            result.debug(f"GetSystemDateAndTime: {exc}; clock unknown")
        return None
    after = time.time()
    utc = sdt.find("{*}SystemDateAndTime/{*}UTCDateTime")
    if utc is None:
        return None
    local = dt.datetime.fromtimestamp((before + after) / 2, dt.UTC)
    # The camera says whole seconds, its clock being anywhere in that second: its middle
    # is the estimate (else a synced camera reads -1..0 s, not the documented ±0.5 s).
    return round((_utc(utc) - local).total_seconds() + 0.5, 1)


async def _session(target: Target, state: dict[str, Any], want_identity: bool,
                   want_uri: bool, result: CheckResult | None) -> OnvifFacts:
    """Talk to the camera: clock (unsigned unless refused), identity, stream and snapshot URIs."""
    facts = OnvifFacts()
    url = _device_url(target)
    user, password = _credentials(target)
    # One connection for both calls; the deadline is the caller's (asyncio.timeout_at).
    http = DeviceHttp()
    try:
        facts.clock_offset = await _read_clock(http, url, user, password, result)
        if result:
            result.debug(f"GetSystemDateAndTime: offset {facts.clock_offset}s")
        offset = facts.clock_offset or 0.0
        if abs(offset) < 1.0:
            offset = 0.0
        if want_identity or want_uri:
            # Authenticated from here on: the first call doubles as the login check.
            login = (user, password or "", offset) if user else None
            info = await _device_call(http, url, "GetDeviceInformation", login)
            facts.identity = {
                "vendor": _text(info, "{*}Manufacturer"),
                "model": _text(info, "{*}Model"),
                "firmware": _text(info, "{*}FirmwareVersion"),
                "serial": _text(info, "{*}SerialNumber"),
                "hardware_id": _text(info, "{*}HardwareId"),
            }
            if result:
                result.debug(f"GetDeviceInformation: {facts.identity['vendor']} "
                             f"{facts.identity['model']}")
    finally:
        http.close()
    if want_uri:
        cam = _camera(target)
        try:
            devicemgmt = await cam.create_devicemgmt_service()
            _allow_http_digest(devicemgmt, user, password)
            if offset:
                cam.dt_diff = dt.timedelta(seconds=offset)
                _sign_with_offset(devicemgmt, offset)
            await _find_uris(cam, facts, result)
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await cam.close()
    return facts


async def _find_uris(cam: onvif.ONVIFCamera, facts: OnvifFacts,
                     result: CheckResult | None) -> None:
    """GetServices (GetCapabilities fallback), GetProfiles, GetStreamUri, GetSnapshotUri."""
    diff = cam.dt_diff
    await cam.update_xaddrs()  # GetServices, falling back to GetCapabilities by itself
    cam.dt_diff = diff  # update_xaddrs() forgets the clock offset the media service must sign with
    media = await cam.create_media_service()
    _allow_http_digest(media, cam.user, cam.passwd)
    profiles = await media.GetProfiles()
    if not profiles:
        raise OnvifCheckError("bad_reply", "the camera announces no media profile")
    # The first profile is the main stream on every camera we know; prefer one with video.
    chosen = next((p for p in profiles if getattr(p, "VideoEncoderConfiguration", None)),
                  profiles[0])
    facts.profile = str(chosen.token)
    reply = await media.GetStreamUri({"StreamSetup": STREAM_SETUP, "ProfileToken": chosen.token})
    facts.stream_uri = str(reply.Uri) if reply is not None and reply.Uri else None
    with contextlib.suppress(zeep.exceptions.Fault):  # optional: many cameras have none
        snap = await media.GetSnapshotUri({"ProfileToken": chosen.token})
        facts.snapshot_uri = str(snap.Uri) if snap is not None and snap.Uri else None
    small = picture_profile(profiles, chosen)
    if small is not None:
        # The sub-stream NVRs use for motion detection: the picture checks may read it, at a
        # fraction of the main stream's decoding cost (docs/performance-camera.md).
        with contextlib.suppress(zeep.exceptions.Fault):
            sub = await media.GetStreamUri({"StreamSetup": STREAM_SETUP,
                                            "ProfileToken": small.token})
            uri = str(sub.Uri) if sub is not None and sub.Uri else None
            if uri and uri != facts.stream_uri:
                facts.picture_uri, facts.picture_profile = uri, str(small.token)
                facts.picture_ratio = round(_video_area(chosen) / _video_area(small), 2)
    if result:
        result.debug(f"profile {facts.profile}: {len(profiles)} profiles, stream URI found: "
                     f"{facts.stream_uri is not None}, picture profile: {facts.picture_profile}")


def _video_area(profile: Any) -> int:
    """Width × height of a profile's H.264/H.265 encoder (0: none, or MJPEG)."""
    enc = getattr(profile, "VideoEncoderConfiguration", None)
    res = getattr(enc, "Resolution", None)
    if enc is None or res is None or str(getattr(enc, "Encoding", "")).upper() not in PICTURE_CODECS:
        return 0
    try:
        return int(res.Width) * int(res.Height)
    except (TypeError, ValueError):
        return 0


def picture_profile(profiles: list[Any], main: Any) -> Any | None:
    """The smallest H.264/H.265 profile when it is smaller than the main one, else None."""
    main_area = _video_area(main)
    candidates = [p for p in profiles if 0 < _video_area(p) < main_area]
    return min(candidates, key=_video_area) if candidates else None


def in_auth_backoff(settings_backoff: float, state: dict[str, Any]) -> float:
    """Seconds left in the auth backoff (0 when none)."""
    failed = state.get(AUTH_FAILED_KEY)
    if failed is None:
        return 0.0
    return max(0.0, failed + settings_backoff - time.monotonic())


def _remember(facts: OnvifFacts, state: dict[str, Any]) -> None:
    if facts.stream_uri:
        state["stream_uri"] = facts.stream_uri
        state["stream_uri_time"] = time.monotonic()
        if facts.picture_uri:
            state["picture_uri"] = facts.picture_uri
            state["picture_ratio"] = facts.picture_ratio
        else:
            state.pop("picture_uri", None)
            state.pop("picture_ratio", None)
    if facts.snapshot_uri:
        state["snapshot_uri"] = facts.snapshot_uri
    if facts.identity:
        state["identity"] = facts.identity


async def discover_stream_uri(target: Target, state: dict[str, Any], deadline: float,
                              auth_backoff: float = OnvifSettings().auth_backoff
                              ) -> tuple[str | None, str]:
    """Ask ONVIF for the stream URI (for the RTSP check): (uri or None, failure reason)."""
    if in_auth_backoff(auth_backoff, state):
        return None, "auth_failed"
    try:
        async with asyncio.timeout_at(deadline):
            facts = await _session(target, state, want_identity=False, want_uri=True, result=None)
    except Exception as exc:  # classified below; CancelledError is no Exception
        reason, _ = classify(exc)
        if reason == "auth_failed":
            state[AUTH_FAILED_KEY] = time.monotonic()
        return None, reason
    _remember(facts, state)
    return facts.stream_uri, "" if facts.stream_uri else "no_stream"


async def probe_onvif(
    target: Target, settings: OnvifSettings, state: dict[str, Any], deadline: float
) -> CheckResult:
    """Ask the camera's ONVIF service for its clock, identity and media URIs."""
    result = CheckResult("onvif", success=False)
    result.problems = dict.fromkeys(ONVIF_PROBLEMS, False)
    # A check that cannot read the clock says nothing of it: the last reading stands (a lost
    # check would otherwise end a clock-drift alert, to page it again 3 minutes later).
    result.problems["clock_drift"] = bool(state.get(CLOCK_DRIFT_KEY, False))
    left = in_auth_backoff(settings.auth_backoff, state)
    if left:
        # Do not knock again: a camera that locks clients out would lock us out for good.
        result.reason = "auth_failed"
        result.message = f"credentials rejected earlier; not retried for another {left:.0f}s"
        result.problems["auth_failed"] = True
        result.add("camnet_camera_onvif_up", 0)
        return result
    refreshed = state.get("stream_uri_time")
    want_uri = not target.options.get("rtsp_url") and (
        "stream_uri" not in state or refreshed is None
        or time.monotonic() - refreshed >= settings.uri_refresh
    )
    try:
        async with asyncio.timeout_at(deadline):
            facts = await _session(target, state, want_identity=True, want_uri=want_uri,
                                   result=result)
    except Exception as exc:  # classified in one place; CancelledError passes
        reason, message = classify(exc)
        result.reason, result.message = reason, message
        result.debug(f"{reason}: {message}")
        if reason == "auth_failed":
            state[AUTH_FAILED_KEY] = time.monotonic()
            result.problems["auth_failed"] = True
        result.add("camnet_camera_onvif_up", 0)
        return result
    state.pop(AUTH_FAILED_KEY, None)
    _remember(facts, state)
    result.success = True
    result.add("camnet_camera_onvif_up", 1)
    result.add("camnet_camera_clock_offset_seconds", facts.clock_offset)
    if facts.clock_offset is not None:
        result.problems["clock_drift"] = abs(facts.clock_offset) > settings.max_clock_offset
        state[CLOCK_DRIFT_KEY] = result.problems["clock_drift"]
    ident = facts.identity or state.get("identity") or {}
    if ident:
        result.add("camnet_camera_info", 1, vendor=ident["vendor"], model=ident["model"],
                   firmware=ident["firmware"], serial=ident["serial"])
    result.facts.update(ident)
    result.facts["clock_offset"] = facts.clock_offset
    if state.get("stream_uri"):
        result.facts["stream_uri"] = redact_url(str(state["stream_uri"]))
    if state.get("snapshot_uri"):
        result.facts["snapshot_uri"] = redact_url(str(state["snapshot_uri"]))
    result.message = (f"{ident.get('vendor', '?')} {ident.get('model', '?')}, clock offset "
                      f"{facts.clock_offset if facts.clock_offset is not None else '?'} s")
    return result


async def warm_up() -> None:
    """Parse the devicemgmt, media and events WSDLs once (the daemon calls this at start).

    The first parse costs 60–180 ms and several MB per WSDL and is cached per process; done
    here, 24 cameras checked at once do not each pay it on the event loop.
    """
    cam = onvif.ONVIFCamera("127.0.0.1", 9, None, None, no_cache=True)
    try:
        for name in ("media", "events"):
            ns = onvif.SERVICES[name]["ns"]
            cam.xaddrs[ns] = f"http://127.0.0.1:9/onvif/{name}"
        await cam.create_devicemgmt_service()
        await cam.create_media_service()
        await cam.create_events_service()
    finally:
        await cam.close()
