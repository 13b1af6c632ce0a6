"""A lab camera's ONVIF service: replays SOAP recorded from real Axis and Hikvision cameras.

No real ONVIF camera can run on loopback, so this is the one fake peer of the lab; it answers
only with recorded replies (/work/shared/onvif-captures, vendored in lab/assets/onvif-captures),
rewriting what must change per camera: addresses and ports, the clock, the serial number.
WS-Security UsernameToken is checked for real (digest, Created within 5 minutes of the camera's
own clock, no replayed nonce); GetSystemDateAndTime is answered without credentials, as real
cameras do.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp import web
from lxml import etree

log = logging.getLogger("camnet.lab.onvif")

CAPTURES_DIR = Path(__file__).parent / "assets" / "onvif-captures"
SOAP_CONTENT_TYPE = "application/soap+xml; charset=utf-8"
MAX_CREATED_SKEW_S = 300.0  # WS-Security: Created more than 5 minutes off the camera's clock
NONCE_MEMORY = 4096  # nonces remembered per camera to reject replays
NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "wsse": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd",
    "wsu": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd",
}
# The service folder of the captures that answers each operation namespace.
SERVICE_BY_NAMESPACE = {
    "http://www.onvif.org/ver10/device/wsdl": "core",
    "http://www.onvif.org/ver10/media/wsdl": "media",
    "http://www.onvif.org/ver10/events/wsdl": "events",
    "http://www.onvif.org/ver20/ptz/wsdl": "ptz",
    "http://www.onvif.org/ver20/analytics/wsdl": "analytics",
}
# Real cameras answer these without credentials (clients need the clock before they can sign).
UNAUTHENTICATED_OPERATIONS = frozenset({"GetSystemDateAndTime"})
# Hikvision numbers a channel's streams x01 (main), x02 (sub) and x03 (third).
SUB_CHANNELS = {"Profile_2": "102", "Profile_3": "103"}
# Private addresses of the cameras the captures were recorded from (SOURCE.md).
_CAPTURED_URL_RE = re.compile(
    r"(?P<scheme>https?|rtsp)://(?:10\.10\.1\.\d{1,3}|192\.168\.0\.\d{1,3})(?::\d+)?"
)
# Not captured from a Hikvision; the Axis NotAuthorized fault is used for both vendors.
NOT_AUTHORIZED_CAPTURE = ("axis", "core", "GetSystemUris.Error.xml")
ACTION_NOT_SUPPORTED = """<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://www.w3.org/2003/05/soap-envelope"
  xmlns:ter="http://www.onvif.org/ver10/error">
  <SOAP-ENV:Body>
    <SOAP-ENV:Fault>
      <SOAP-ENV:Code>
        <SOAP-ENV:Value>SOAP-ENV:Receiver</SOAP-ENV:Value>
        <SOAP-ENV:Subcode>
          <SOAP-ENV:Value>ter:ActionNotSupported</SOAP-ENV:Value>
        </SOAP-ENV:Subcode>
      </SOAP-ENV:Code>
      <SOAP-ENV:Reason>
        <SOAP-ENV:Text xml:lang="en">Optional Action Not Implemented</SOAP-ENV:Text>
      </SOAP-ENV:Reason>
    </SOAP-ENV:Fault>
  </SOAP-ENV:Body>
</SOAP-ENV:Envelope>
"""


class AuthRejected(Exception):
    """The request's WS-Security header does not authenticate it (reason for the log)."""


@dataclass
class OnvifCamera:
    """What the responder needs to know about one lab camera; the lab mutates the fault fields."""

    id: str
    vendor: str  # "axis" or "hikvision": which captures to replay
    address: str
    onvif_port: int
    rtsp_port: int
    username: str
    password: str
    serial: str
    snapshot: Callable[[], bytes]  # JPEG of the current picture
    width: int = 1280
    height: int = 720
    sub_size: tuple[int, int] | None = None  # the sub-stream (Profile_2, _3), when it has one
    clock_offset_s: float = 0.0
    reject_auth: bool = False
    _nonces: OrderedDict[str, float] = field(default_factory=OrderedDict)

    def now(self) -> datetime:
        """The camera's clock (UTC), including its configured offset."""
        return datetime.now(UTC) + timedelta(seconds=self.clock_offset_s)


class Captures:
    """The recorded replies of one vendor, read once."""

    def __init__(self, vendor: str, root: Path = CAPTURES_DIR) -> None:
        self.vendor = vendor
        self.root = root / vendor
        if not self.root.is_dir():
            raise FileNotFoundError(f"no ONVIF captures for {vendor} in {self.root}")
        self._cache: dict[tuple[str, str, str], str | None] = {}

    def get(self, service: str, operation: str, kind: str) -> str | None:
        """The text of `<service>/<operation>.<kind>.xml`, or None when not captured."""
        key = (service, operation, kind)
        if key not in self._cache:
            path = self.root / service / f"{operation}.{kind}.xml"
            self._cache[key] = path.read_text(encoding="utf-8") if path.exists() else None
        return self._cache[key]

    def snapshot_path(self) -> str:
        """The URL path (with query) of the captured snapshot URI."""
        text = self.get("media", "GetSnapshotUri", "Response") or ""
        m = re.search(r"<tt:Uri>https?://[^/<]+(/[^<]*)</tt:Uri>", text)
        return m.group(1).replace("&amp;", "&") if m else "/onvif/snapshot"

    def stream_path(self) -> str:
        """The URL path (with query, XML-escaped as captured) of the captured stream URI."""
        text = self.get("media", "GetStreamUri", "Response") or ""
        m = re.search(r"<tt:Uri>rtsp://[^/<]+(/[^<]*)</tt:Uri>", text)
        return m.group(1) if m else "/stream"


def _digest(nonce: bytes, created: str, password: str) -> str:
    return base64.b64encode(hashlib.sha1(nonce + created.encode() + password.encode()).digest()).decode()


def check_wsse(envelope: etree._Element, camera: OnvifCamera) -> None:
    """Raise AuthRejected unless the envelope carries a valid UsernameToken for the camera."""
    token = envelope.find("s:Header/wsse:Security/wsse:UsernameToken", NS)
    if token is None:
        raise AuthRejected("no UsernameToken")
    username = token.findtext("wsse:Username", default="", namespaces=NS)
    password_el = token.find("wsse:Password", NS)
    nonce_text = token.findtext("wsse:Nonce", default="", namespaces=NS).strip()
    created = token.findtext("wsu:Created", default="", namespaces=NS).strip()
    if password_el is None or not password_el.text:
        raise AuthRejected("no password")
    if camera.reject_auth:
        raise AuthRejected("lab fault `auth`")
    if not hmac.compare_digest(username, camera.username):
        raise AuthRejected("unknown user")
    supplied = password_el.text.strip()
    if password_el.get("Type", "").endswith("#PasswordText"):
        if not hmac.compare_digest(supplied, camera.password):
            raise AuthRejected("wrong password")
        return
    try:
        nonce = base64.b64decode(nonce_text, validate=True)
        created_at = datetime.fromisoformat(created)
    except ValueError as e:
        raise AuthRejected("malformed Nonce or Created") from e
    if created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=UTC)
    if not hmac.compare_digest(supplied, _digest(nonce, created, camera.password)):
        raise AuthRejected("wrong password")
    if abs((camera.now() - created_at).total_seconds()) > MAX_CREATED_SKEW_S:
        raise AuthRejected("Created too far from the camera's clock")
    if nonce_text in camera._nonces:
        raise AuthRejected("replayed nonce")
    camera._nonces[nonce_text] = time.monotonic()
    while len(camera._nonces) > NONCE_MEMORY:
        camera._nonces.popitem(last=False)


def _set_datetime(text: str, block: str, when: datetime) -> str:
    """Rewrite the Hour..Day elements inside <tt:{block}> of a GetSystemDateAndTime reply."""
    start = text.find(f"<tt:{block}>")
    end = text.find(f"</tt:{block}>", start)
    if start < 0 or end < 0:
        return text
    part = text[start:end]
    for name, value in (("Hour", when.hour), ("Minute", when.minute), ("Second", when.second),
                        ("Year", when.year), ("Month", when.month), ("Day", when.day)):
        part = re.sub(rf"<tt:{name}>\d+</tt:{name}>", f"<tt:{name}>{value}</tt:{name}>", part)
    return text[:start] + part + text[end:]


class OnvifResponder:
    """The aiohttp application of one lab camera (SOAP on POST, snapshot on GET)."""

    def __init__(self, camera: OnvifCamera, captures: Captures) -> None:
        self.camera = camera
        self.captures = captures
        self.snapshot_path = captures.snapshot_path().split("?", 1)[0]

    def app(self) -> web.Application:
        """The aiohttp application serving this camera."""
        app = web.Application(client_max_size=256 * 1024)
        app.router.add_get(self.snapshot_path, self.handle_snapshot)
        app.router.add_post("/{tail:.*}", self.handle_soap)
        return app

    def rewrite(self, text: str) -> str:
        """Point every captured address at this lab camera."""
        cam = self.camera

        def repl(m: re.Match[str]) -> str:
            port = cam.rtsp_port if m.group("scheme") == "rtsp" else cam.onvif_port
            return f"{m.group('scheme')}://{cam.address}:{port}"

        return _CAPTURED_URL_RE.sub(repl, text)

    def _reply(self, text: str, status: int = 200) -> web.Response:
        return web.Response(body=text.encode("utf-8"), status=status,
                            headers={"Content-Type": SOAP_CONTENT_TYPE})

    def _fault(self, text: str) -> web.Response:
        # SOAP 1.2 over HTTP: a Sender fault is a 400, a Receiver fault a 500.
        status = 400 if ":Sender<" in text else 500
        return self._reply(text, status)

    def not_authorized(self) -> web.Response:
        """The NotAuthorized fault a real camera returns (HTTP 400)."""
        vendor, service, name = NOT_AUTHORIZED_CAPTURE
        text = (CAPTURES_DIR / vendor / service / name).read_text(encoding="utf-8")
        return self._reply(text, 400)

    async def handle_soap(self, request: web.Request) -> web.Response:
        """Answer one SOAP request from the captures."""
        body = await request.read()
        parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
        try:
            envelope = etree.fromstring(body, parser)
        except etree.XMLSyntaxError:
            return self._reply(ACTION_NOT_SUPPORTED.replace("ActionNotSupported", "WellFormed"),
                               400)
        operation_el = envelope.find("s:Body/*", NS)
        if operation_el is None:
            return self._fault(ACTION_NOT_SUPPORTED)
        qname = etree.QName(operation_el)
        operation = qname.localname
        service = SERVICE_BY_NAMESPACE.get(qname.namespace or "")
        if operation not in UNAUTHENTICATED_OPERATIONS:
            try:
                check_wsse(envelope, self.camera)
            except AuthRejected as e:
                log.debug("%s: %s rejected: %s", self.camera.id, operation, e)
                return self.not_authorized()
        if service is None:
            return self._fault(ACTION_NOT_SUPPORTED)
        reply = self.captures.get(service, operation, "Response")
        if reply is None:
            error = self.captures.get(service, operation, "Error")
            return self._fault(self.rewrite(error) if error else ACTION_NOT_SUPPORTED)
        return self._reply(self.customise(operation, operation_el, self.rewrite(reply)))

    def customise(self, operation: str, request: etree._Element, text: str) -> str:
        """Per-camera changes to a captured reply: clock, serial number, stream profile."""
        cam = self.camera
        if operation == "GetSystemDateAndTime":
            now = cam.now()
            text = _set_datetime(text, "UTCDateTime", now)
            # The lab site is in Vietnam (UTC+7, no daylight saving).
            text = _set_datetime(text, "LocalDateTime", now + timedelta(hours=7))
            text = re.sub(r"<tt:TZ>[^<]*</tt:TZ>", "<tt:TZ>ICT-7</tt:TZ>", text)
            text = text.replace("<tt:DaylightSavings>true</tt:DaylightSavings>",
                                "<tt:DaylightSavings>false</tt:DaylightSavings>")
        elif operation == "GetDeviceInformation":
            text = re.sub(r"<tds:SerialNumber>[^<]*</tds:SerialNumber>",
                          f"<tds:SerialNumber>{cam.serial}</tds:SerialNumber>", text)
        elif operation in ("GetProfiles", "GetProfile", "GetVideoEncoderConfigurations"):
            # The recorded main stream is 1280x720; announce the size this lab camera streams.
            text = re.sub(
                r"<tt:Resolution>(\s*)<tt:Width>1280</tt:Width>(\s*)<tt:Height>720</tt:Height>",
                rf"<tt:Resolution>\1<tt:Width>{cam.width}</tt:Width>\2"
                rf"<tt:Height>{cam.height}</tt:Height>", text)
            # The recorded sub-stream profiles are 704x480: the lab's sub-stream size, or
            # the main size when the camera streams no smaller one (they then share it).
            sw, sh = cam.sub_size or (cam.width, cam.height)
            text = re.sub(
                r"<tt:Resolution>(\s*)<tt:Width>704</tt:Width>(\s*)<tt:Height>480</tt:Height>",
                rf"<tt:Resolution>\1<tt:Width>{sw}</tt:Width>\2<tt:Height>{sh}</tt:Height>", text)
        elif operation == "GetStreamUri":
            # Announce the profile the client asked for: a sub-stream profile on its own
            # channel when the camera has one, else every profile serves the same stream.
            token = request.findtext("{http://www.onvif.org/ver10/media/wsdl}ProfileToken")
            if token and re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", token):
                text = re.sub(r"([?&]|&amp;)profile=[A-Za-z0-9_.-]*", rf"\1profile={token}", text)
                if cam.sub_size and token in SUB_CHANNELS:
                    text = re.sub(r"(rtsp://[^/<]+/Streaming/Channels/)\d+",
                                  rf"\g<1>{SUB_CHANNELS[token]}", text)
        return text

    async def handle_snapshot(self, request: web.Request) -> web.Response:
        """The current picture as a JPEG."""
        if self.camera.reject_auth:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="camera"'})
        return web.Response(body=self.camera.snapshot(), content_type="image/jpeg")
