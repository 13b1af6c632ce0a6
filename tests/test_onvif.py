"""ONVIF check against the lab's replayed Hikvision and Axis cameras and against broken peers.

The broken peers replay recorded SOAP faults from /work/shared/onvif-captures (via the lab's
vendored copy) or misbehave at the TCP level; addresses 127.0.12.37-49.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from lxml import etree
from pydantic import SecretStr

from monitor.config import LoadedConfig, OnvifAuth
from probes import onvif, rtsp
from probes.base import Credentials, Target
from tests import test_camera
from tests.lab_fixture import Lab
from tests.test_camera import PASSWORD

# The camera modules share one private lab (session fixtures defined in test_camera).
camlab, camcfg, clean, pool = (test_camera.camlab, test_camera.camcfg, test_camera.clean,
                               test_camera.pool)

CAPTURES = Path(__file__).resolve().parent.parent / "lab" / "assets" / "onvif-captures"
SETTINGS = onvif.OnvifSettings(auth_backoff=600.0)
DEADLINE_S = 3.0


def target(address: str, port: int = 8080, password: str = PASSWORD,
           rtsp_url: str | None = None, username: str = "admin") -> Target:
    auth = Credentials(OnvifAuth(type="onvif", username=username),
                       {"password": SecretStr(password), "rtsp_password": None})
    return Target("cam-x", "camera", address, {"camera": "cam-x"}, auth,
                  {"onvif_port": port, "rtsp_url": rtsp_url, "snapshot_url": None})


async def run(t: Target, state: dict[str, Any] | None = None,
              settings: onvif.OnvifSettings = SETTINGS) -> Any:
    loop = asyncio.get_running_loop()
    return await onvif.probe_onvif(t, settings, {} if state is None else state,
                                   loop.time() + DEADLINE_S)


def sample(result: Any, name: str) -> Any:
    found = [s for s in result.samples if s.name == name]
    return found[0] if found else None


# ---------------------------------------------------------------- the lab's cameras


@pytest.mark.lab
@pytest.mark.parametrize(("cid", "vendor", "model"), [
    ("cam-a", "HIKVISION", "DS-2DF7276-AEL"), ("cam-b", "AXIS", "AXIS Q6045-E"),
])
async def test_identity_clock_and_stream_uri(
        clean: Lab, camcfg: LoadedConfig, cid: str, vendor: str, model: str) -> None:
    dev = camcfg.device(cid)
    assert dev is not None
    state: dict[str, Any] = {}
    result = await run(camcfg.target(dev), state)
    assert result.success, result.message
    assert result.facts["vendor"] == vendor and result.facts["model"] == model
    info = sample(result, "camnet_camera_info")
    assert info.labels["serial"] == result.facts["serial"] and info.labels["firmware"]
    assert abs(result.facts["clock_offset"]) < 3
    assert result.problems == {"auth_failed": False, "clock_drift": False}
    assert sample(result, "camnet_camera_onvif_up").value == 1
    # The URI ONVIF announces is the one the lab serves (Axis: via the GetCapabilities fallback,
    # its GetServices answers a fault).
    lab_uri = clean.camera(cid)["rtsp"]
    assert state["stream_uri"].split("?")[0] == lab_uri.split("?")[0]
    assert state["snapshot_uri"].startswith(f"http://{dev.address}:8080/")


@pytest.mark.lab
async def test_clock_offset_follows_the_camera(clean: Lab, camcfg: LoadedConfig) -> None:
    dev = camcfg.device("cam-b")
    assert dev is not None
    clean.fault("cam-b", "clock=-3600")
    result = await run(camcfg.target(dev))
    # Signed with the camera's clock: still authenticated although an hour off.
    assert result.success and result.facts["vendor"] == "AXIS"
    assert result.facts["clock_offset"] == pytest.approx(-3600, abs=3)
    assert result.problems["clock_drift"]
    # A check that cannot read the clock leaves the last reading's verdict; the next reading
    # decides.
    state: dict[str, Any] = {}
    assert (await run(camcfg.target(dev), state)).problems["clock_drift"]
    clean.fault("cam-b", "offline")
    lost = await run(camcfg.target(dev), state)
    assert not lost.success and lost.problems["clock_drift"], lost.message
    clean.fault("cam-b", "ok")
    fixed = await run(camcfg.target(dev), state)
    assert fixed.success and not fixed.problems["clock_drift"], fixed.message


class CountingProxy:
    """A TCP forwarder that counts the connections a client opens to the camera."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_r, up_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            w.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))


@pytest.mark.lab
async def test_wrong_password_backs_off_without_touching_the_camera(
        clean: Lab, camcfg: LoadedConfig, pool: Any) -> None:
    cam = clean.camera("cam-a")
    proxy = CountingProxy((cam["address"], 8080))
    server = await asyncio.start_server(proxy.handle, "127.0.12.40", 8080)
    try:
        t = target("127.0.12.40", password="not-the-password")
        state: dict[str, Any] = {}
        first = await run(t, state)
        assert (first.success, first.reason) == (False, "auth_failed")
        assert first.problems["auth_failed"]
        assert "not-the-password" not in repr(first)
        seen = proxy.connections
        assert seen >= 1
        second = await run(t, state)
        third = await run(t, state)
        for r in (second, third):
            assert (r.reason, r.problems["auth_failed"]) == ("auth_failed", True)
        # The RTSP check honours the same backoff (cameras count RTSP logins too).
        loop = asyncio.get_running_loop()
        grab = await rtsp.probe_rtsp(t, rtsp.RtspSettings(), state, loop.time() + DEADLINE_S)
        assert grab.problems["auth_failed"] and grab.reason == "auth_failed"
        assert proxy.connections == seen  # nobody knocked again
        # After the backoff, it tries again (once).
        settings = SETTINGS.model_copy(update={"auth_backoff": 0.05})
        await asyncio.sleep(0.1)
        again = await run(t, state, settings)
        assert again.reason == "auth_failed" and proxy.connections > seen, again.message
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.lab
async def test_auth_fault_then_recovery(clean: Lab, camcfg: LoadedConfig) -> None:
    dev = camcfg.device("cam-b")
    assert dev is not None
    state: dict[str, Any] = {}
    clean.fault("cam-b", "auth")
    assert (await run(camcfg.target(dev), state)).reason == "auth_failed"
    clean.fault("cam-b", "ok")
    settings = SETTINGS.model_copy(update={"auth_backoff": 0.05})
    await asyncio.sleep(0.1)
    result = await run(camcfg.target(dev), state, settings)
    assert result.success and not result.problems["auth_failed"]


@pytest.mark.lab
@pytest.mark.parametrize("fault", ["hang", "slow=20"])
async def test_hang_and_slow_hold_the_deadline(clean: Lab, camcfg: LoadedConfig,
                                               fault: str) -> None:
    dev = camcfg.device("cam-c")
    assert dev is not None
    clean.fault("cam-c", fault)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        result = await run(camcfg.target(dev))
    finally:
        task.cancel()
    assert (result.success, result.reason) == (False, "timeout")
    assert sample(result, "camnet_camera_onvif_up").value == 0
    assert ticks > 0  # the loop kept running while the camera hung


@pytest.mark.lab
async def test_offline_is_unreachable(clean: Lab, camcfg: LoadedConfig) -> None:
    dev = camcfg.device("cam-c")
    assert dev is not None
    clean.fault("cam-c", "offline")
    result = await run(camcfg.target(dev))
    assert (result.success, result.reason) == (False, "unreachable")


# ---------------------------------------------------------------- broken peers (no lab)


def captured(vendor: str, service: str, name: str) -> str:
    return (CAPTURES / vendor / service / name).read_text(encoding="utf-8")


@contextlib.asynccontextmanager
async def soap_server(host: str, answer: Callable[[str], web.Response],
                      seen: list[tuple[str, str]] | None = None) -> AsyncIterator[None]:
    """An HTTP server answering each SOAP POST with answer(operation); (Content-Type, body)
    of each request go to `seen`."""

    async def handle(request: web.Request) -> web.Response:
        body = await request.text()
        if seen is not None:
            seen.append((request.headers.get("Content-Type", ""), body))
        op = etree.QName(etree.fromstring(body.encode()).find("{*}Body")[0]).localname
        return answer(op)

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, 8080)
    await site.start()
    try:
        yield
    finally:
        await runner.cleanup()


def soap(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="application/soap+xml")


def clock_then(other: Callable[[str], web.Response]) -> Callable[[str], web.Response]:
    def answer(op: str) -> web.Response:
        if op == "GetSystemDateAndTime":
            return soap(captured("hikvision", "core", "GetSystemDateAndTime.Response.xml"))
        return other(op)
    return answer


async def test_soap_fault_is_a_fault_not_an_auth_failure() -> None:
    fault = captured("axis", "core", "GetDot11Status.Error.xml")
    async with soap_server("127.0.12.41", clock_then(lambda op: soap(fault, 500))):
        result = await run(target("127.0.12.41"))
    assert (result.success, result.reason) == (False, "fault")
    assert not result.problems["auth_failed"]
    # The captured clock is from 2018: the offset is measured (about -8.7 years), not assumed.
    assert any(re.search(r"GetSystemDateAndTime: offset -2\d{8}\.\ds$", line)
               for line in result.log), result.log


FAULT_12 = ('<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body><s:Fault>'
            "<s:Code><s:Value>s:Sender</s:Value><s:Subcode><s:Value>{sub}</s:Value></s:Subcode>"
            '</s:Code><s:Reason><s:Text xml:lang="en">{reason}</s:Text></s:Reason>'
            "<s:Detail><s:Text>{detail}</s:Text></s:Detail></s:Fault></s:Body></s:Envelope>")
FAULT_11 = ('<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body><e:Fault>'
            "<e:faultcode>{code}</e:faultcode><e:faultstring>{reason}</e:faultstring>"
            "</e:Fault></e:Body></e:Envelope>")


@pytest.mark.parametrize(("status", "reply", "reason"), [
    # SOAP 1.1, prefixed element names, the subcode in faultcode.
    (400, FAULT_11.format(code="ter:NotAuthorized", reason="Sender not Authorized"),
     "auth_failed"),
    (500, FAULT_11.format(code="e:Server", reason="Internal error"), "fault"),
    # "auth" in the Detail is no login failure; a fault sent with HTTP 200 is still a fault.
    (200, FAULT_12.format(sub="ter:ActionNotSupported", reason="Optional Action Not Implemented",
                          detail="contact the authority"), "fault"),
    # No NotAuthorized subcode, but the codes say so (as the library's is_auth_error reads).
    (500, FAULT_12.format(sub="wsse:FailedAuthentication", reason="Sender not allowed",
                          detail=""), "auth_failed"),
])
async def test_faults_in_both_soap_versions(status: int, reply: str, reason: str) -> None:
    async with soap_server("127.0.12.43", clock_then(lambda op: soap(reply, status))):
        result = await run(target("127.0.12.43"))
    assert (result.success, result.reason) == (False, reason), result.message
    assert result.problems["auth_failed"] == (reason == "auth_failed")


async def test_recorded_not_authorized_fault_is_auth_failed() -> None:
    fault = captured("axis", "core", "GetSystemUris.Error.xml")
    async with soap_server("127.0.12.42", clock_then(lambda op: soap(fault, 400))):
        result = await run(target("127.0.12.42"))
    assert result.reason == "auth_failed" and result.problems["auth_failed"]


async def test_requests_carry_what_the_camera_checks() -> None:
    """The clock is asked without credentials; the identity with a WS-Security UsernameToken
    (PasswordDigest over nonce, Created and password) signed on the camera's clock, in the
    SOAP 1.2 form the library sends; a user name with XML's special characters arrives intact."""
    seen: list[tuple[str, str]] = []
    info = captured("hikvision", "core", "GetDeviceInformation.Response.xml")
    async with soap_server("127.0.12.48", clock_then(lambda op: soap(info)), seen):
        # A configured stream URL: no discovery, the check is these two calls.
        result = await run(target("127.0.12.48", username="ad&m<in>",
                                  rtsp_url="rtsp://127.0.12.48/stream"))
    assert result.success, result.message
    assert (result.facts["vendor"], result.facts["model"]) == ("HIKVISION", "DS-2DF7276-AEL")
    assert sample(result, "camnet_camera_info").labels["serial"] == result.facts["serial"] != ""
    clock, ident = (etree.fromstring(body.encode()) for _, body in seen)
    assert [kind.split("action=")[1] for kind, _ in seen] == [
        f'"{onvif.DEVICE_NS}/GetSystemDateAndTime"', f'"{onvif.DEVICE_NS}/GetDeviceInformation"']
    assert clock.find(f"{{{onvif.SOAP12_NS}}}Header") is None
    assert clock.find(f"{{{onvif.SOAP12_NS}}}Body/{{{onvif.DEVICE_NS}}}GetSystemDateAndTime") \
        is not None
    token = ident.find(f"{{{onvif.SOAP12_NS}}}Header/{{{onvif.WSSE_NS}}}Security/"
                       f"{{{onvif.WSSE_NS}}}UsernameToken")
    assert token is not None
    assert token.findtext(f"{{{onvif.WSSE_NS}}}Username") == "ad&m<in>"
    nonce = base64.b64decode(token.findtext(f"{{{onvif.WSSE_NS}}}Nonce") or "")
    created = token.findtext(f"{{{onvif.WSU_NS}}}Created") or ""
    digest = base64.b64encode(hashlib.sha1(nonce + created.encode() + PASSWORD.encode())
                              .digest()).decode()
    assert len(nonce) == 16 and token.findtext(f"{{{onvif.WSSE_NS}}}Password") == digest
    # The recorded camera's clock says 2018-02-27 18:28:01 UTC: Created follows it, in Zulu form.
    assert created.startswith("2018-02-27T18:28:0") and created.endswith("Z"), created


async def test_http_401_and_entity_tricks() -> None:
    """A camera that wants HTTP authentication is auth_failed; a reply's entities are not
    expanded (no billion laughs, no local file read into a label)."""
    async with soap_server("127.0.12.49", clock_then(
            lambda op: web.Response(status=401, text="Unauthorized"))):
        result = await run(target("127.0.12.49"))
    assert (result.reason, result.problems["auth_failed"]) == ("auth_failed", True)
    info = captured("axis", "core", "GetDeviceInformation.Response.xml")
    tricks = ('<!DOCTYPE x [<!ENTITY a SYSTEM "file:///etc/hostname">'
              '<!ENTITY b "bbbbbbbbbbbbbbbb"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>')
    info = info.replace("<?xml version=\"1.0\" encoding=\"UTF-8\"?>", "", 1)
    info = tricks + info.replace("AXIS Q6045-E", "&a;&c;", 1)
    assert "&a;&c;" in info
    async with soap_server("127.0.12.49", clock_then(lambda op: soap(info))):
        result = await run(target("127.0.12.49", rtsp_url="rtsp://127.0.12.49/stream"))
    assert result.success and result.facts["vendor"] == "AXIS", result.message
    assert result.facts["model"] == "", result.facts["model"]


async def test_a_dropped_kept_alive_connection_is_retried_once() -> None:
    """Cameras close a kept-alive connection without a word: the identity request goes again
    on a new connection, with a fresh nonce (a camera rejects a replayed one), and only once."""
    clock = captured("hikvision", "core", "GetSystemDateAndTime.Response.xml").encode()
    info = captured("hikvision", "core", "GetDeviceInformation.Response.xml").encode()
    nonces: list[bytes] = []
    connections = 0
    drop_all = False

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            for served in range(2):
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?i)content-length: *(\d+)", head)
                body = await reader.readexactly(int(length.group(1)) if length else 0)
                nonces.extend(re.findall(rb"<wsse:Nonce[^>]*>([^<]+)<", body))
                if served or (drop_all and b"GetDeviceInformation" in body):
                    break  # the second request on a connection: hang up, say nothing
                reply = clock if b"GetSystemDateAndTime" in body else info
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml\r\n"
                             b"Content-Length: %d\r\n\r\n" % len(reply) + reply)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.12.39", 8080)
    try:
        t = target("127.0.12.39", rtsp_url="rtsp://127.0.12.39/stream")
        result = await run(t)
        assert result.success and result.facts["vendor"] == "HIKVISION", result.message
        assert connections == 2 and len(nonces) == 2 and nonces[0] != nonces[1]
        drop_all, connections = True, 0  # a camera that always hangs up: tried twice, no more
        result = await run(t)
        assert (result.reason, connections) == ("bad_reply", 2), result.message
        assert "dropped the connection" in result.message
    finally:
        server.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def http_camera(host: str, reply: Callable[[bytes], bytes], port: int = 8080,
                      close: bool = False) -> AsyncIterator[list[bytes]]:
    """A device service written by hand (framings aiohttp's server never sends): each request
    (head and body, as received) is yielded in the list; `reply(request)` is written back
    raw, and the connection closed after it when `close` or when the reply is HTTP/1.0."""
    requests: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?i)content-length: *(\d+)", head)
                request = head + await reader.readexactly(int(length.group(1)) if length else 0)
                requests.append(request)
                answer = reply(request)
                writer.write(answer)
                await writer.drain()
                if close or answer.startswith(b"HTTP/1.0"):
                    break
        writer.close()

    server = await asyncio.start_server(handle, host, port)
    try:
        yield requests
    finally:
        server.close()
        await server.wait_closed()


def answer_of(request: bytes) -> bytes:
    """The recorded Hikvision answer to the operation in `request`."""
    op = "GetSystemDateAndTime" if b"GetSystemDateAndTime" in request else "GetDeviceInformation"
    return captured("hikvision", "core", f"{op}.Response.xml").encode()


def chunked(body: bytes, size: int = 100) -> bytes:
    parts = [b"%x;ext=1\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size])
             for i in range(0, len(body), size)]
    return b"".join(parts) + b"0\r\nX-Trailer: yes\r\n\r\n"


async def test_replies_in_every_http_framing() -> None:
    """Chunked (with extensions and trailers, after an interim 100), bare-LF headers,
    HTTP/1.0 up to the close: all read whole; a kept-alive connection carries both calls,
    one that the camera closes is opened again."""
    def framed(request: bytes) -> bytes:
        body = answer_of(request)
        if b"GetSystemDateAndTime" in request:
            return (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n" + chunked(body))
        return b"HTTP/1.1 200 OK\nContent-Length: %d\n\n%s" % (len(body), body)

    t = target("127.0.12.38", rtsp_url="rtsp://127.0.12.38/stream")
    async with http_camera("127.0.12.38", framed) as requests:
        result = await run(t)
    assert result.success and result.facts["model"] == "DS-2DF7276-AEL", result.message
    assert len(requests) == 2
    assert requests[0].startswith(b"POST /onvif/device_service HTTP/1.1\r\n")
    assert b"\r\nHost: 127.0.12.38:8080\r\n" in requests[0]

    def http10(request: bytes) -> bytes:
        return b"HTTP/1.0 200 OK\r\nContent-Type: application/soap+xml\r\n\r\n" + answer_of(
            request)

    async with http_camera("127.0.12.38", http10) as requests:
        result = await run(t)
    assert result.success and result.facts["model"] == "DS-2DF7276-AEL", result.message
    assert len(requests) == 2

    def stray_crlf(request: bytes) -> bytes:
        # Embedded servers that send a CRLF past the body of a kept-alive reply.
        body = answer_of(request)
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s\r\n" % (len(body), body)

    async with http_camera("127.0.12.38", stray_crlf) as requests:
        result = await run(t)
    assert result.success and result.facts["model"] == "DS-2DF7276-AEL", result.message
    assert len(requests) == 2


async def test_redirects_are_followed_with_the_post_kept() -> None:
    """A device service that moved (307 to another address and path) is followed with the
    SOAP request unchanged; a redirect loop ends as a bad reply, not a hang."""
    def moved(request: bytes) -> bytes:
        return (b"HTTP/1.1 307 Temporary Redirect\r\nLocation: "
                b"http://127.0.12.37:8081/onvif/device?x=1\r\nContent-Length: 0\r\n\r\n")

    def served(request: bytes) -> bytes:
        body = answer_of(request)
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

    t = target("127.0.12.38", rtsp_url="rtsp://127.0.12.38/stream")
    async with http_camera("127.0.12.38", moved) as first, \
            http_camera("127.0.12.37", served, port=8081) as second:
        result = await run(t)
    assert result.success and result.facts["vendor"] == "HIKVISION", result.message
    assert len(first) == len(second) == 2
    assert second[1].startswith(b"POST /onvif/device?x=1 HTTP/1.1\r\n")
    assert b"<wsse:UsernameToken>" in second[1] and b"<wsse:UsernameToken>" not in second[0]

    def loop(request: bytes) -> bytes:
        return b"HTTP/1.1 302 Found\r\nLocation: /onvif/device_service\r\nContent-Length: 0\r\n\r\n"

    async with http_camera("127.0.12.38", loop) as requests:
        result = await run(t)
    assert (result.reason, len(requests)) == ("bad_reply", onvif.MAX_REDIRECTS + 1), \
        result.message
    assert "redirects" in result.message


@pytest.mark.parametrize(("reply", "says"), [
    (b"HTTP/1.1 200 OK\r\nX-Pad: " + b"x" * 70_000 + b"\r\n\r\n", "header line over"),
    (b"HTTP/1.1 200 OK\r\n" + b"X-Pad: xxxxxxxx\r\n" * 2_000 + b"\r\n", "headers over"),
    (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "not an HTTP reply"),
    (b"\r\n" * 20 + b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "not an HTTP reply"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "malformed chunked"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n<a>", "dropped the connection mid"),
])
async def test_broken_http_is_a_bad_reply(reply: bytes, says: str) -> None:
    """Endless headers, not HTTP at all, a broken chunk, a body cut short: a bad reply that
    says what was wrong, read no further than the limits."""
    async with http_camera("127.0.12.38", lambda request: reply, close=True):
        result = await run(target("127.0.12.38"))
    assert (result.success, result.reason) == (False, "bad_reply"), result.message
    assert says in result.message, result.message


async def test_plain_text_500_and_garbage_are_bad_replies() -> None:
    async with soap_server("127.0.12.43", clock_then(
            lambda op: web.Response(text="Internal Server Error", status=500))):
        assert (await run(target("127.0.12.43"))).reason == "bad_reply"
    async with soap_server("127.0.12.44", lambda op: soap("<<<not xml at all")):
        assert (await run(target("127.0.12.44"))).reason == "bad_reply"


async def test_silent_server_holds_the_deadline() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):  # accept, read, never answer, until the client leaves
            pass

    server = await asyncio.start_server(silent, "127.0.12.45", 8080)
    try:
        result = await run(target("127.0.12.45"))
    finally:
        server.close()
    assert (result.success, result.reason) == (False, "timeout")


async def test_closed_port_is_unreachable() -> None:
    result = await run(target("127.0.12.46", port=9))
    assert (result.success, result.reason) == (False, "unreachable")


async def test_warm_up_parses_the_wsdls_once() -> None:
    from onvif import client

    await onvif.warm_up()
    names = {Path(url).name for url in client._DOCUMENT_CACHE}
    assert {"devicemgmt.wsdl", "media.wsdl", "events.wsdl"} <= names


@pytest.mark.parametrize("announce", [False, True])
async def test_a_flooding_camera_is_cut_off(announce: bool) -> None:
    """A reply of 64 MB (streamed, or announced by Content-Length) is a bad_reply after
    MAX_REPLY_BYTES: not read on, not parsed on the event loop, other checks keep running."""
    sent = 0
    head = captured("hikvision", "core", "GetSystemDateAndTime.Response.xml").split("<SOAP-ENV:Body>")[0]
    total = 64 << 20

    async def flood(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "application/soap+xml"})
        if announce:
            response.content_length = total
        await response.prepare(request)
        await response.write(head.encode() + b"<SOAP-ENV:Body>")
        pad = b"<Pad>" + b"x" * 65_000 + b"</Pad>"
        with contextlib.suppress(ConnectionError):
            while sent < total:
                await response.write(pad)
                sent += len(pad)
        return response

    app = web.Application()
    app.router.add_post("/{tail:.*}", flood)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.12.47", 8080).start()
    stalls: list[float] = []

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.01)
            stalls.append(loop.time() - before - 0.01)

    tick = asyncio.create_task(ticker())
    try:
        result = await run(target("127.0.12.47"))
    finally:
        tick.cancel()
        await runner.cleanup()
    assert (result.success, result.reason) == (False, "bad_reply"), result.message
    assert result.message.startswith("the camera flooded"), result.message
    assert sent < total / 4  # the client hung up long before the end
    assert max(stalls, default=0.0) < 0.25, stalls  # the loop kept serving the other checks


def signed_by(body: str, password: str) -> bool:
    """Whether a request carries a UsernameToken whose digest matches `password`."""
    token = etree.fromstring(body.encode()).find(
        f"{{{onvif.SOAP12_NS}}}Header/{{{onvif.WSSE_NS}}}Security/{{{onvif.WSSE_NS}}}UsernameToken")
    if token is None:
        return False
    nonce = base64.b64decode(token.findtext(f"{{{onvif.WSSE_NS}}}Nonce") or "")
    created = token.findtext(f"{{{onvif.WSU_NS}}}Created") or ""
    digest = base64.b64encode(hashlib.sha1(nonce + created.encode() + password.encode())
                              .digest()).decode()
    return token.findtext(f"{{{onvif.WSSE_NS}}}Password") == digest


async def test_a_camera_that_wants_credentials_for_its_clock() -> None:
    """Cameras that answer an unsigned GetSystemDateAndTime with NotAuthorized (Vivotek,
    Panasonic: agsh/onvif#301) are asked again signed: checked, not reported auth_failed and
    backed off; with a wrong password that signed request is the check's only login."""
    not_authorized = FAULT_12.format(sub="ter:NotAuthorized", reason="Sender not Authorized",
                                     detail="")
    info = captured("hikvision", "core", "GetDeviceInformation.Response.xml")
    seen: list[tuple[str, str]] = []

    def answer(op: str) -> web.Response:
        if not signed_by(seen[-1][1], PASSWORD):
            return soap(not_authorized, 400)
        return clock_then(lambda op: soap(info))(op)

    async with soap_server("127.0.34.10", answer, seen):
        state: dict[str, Any] = {}
        result = await run(target("127.0.34.10", rtsp_url="rtsp://127.0.34.10/s"), state)
        assert result.success and result.facts["vendor"] == "HIKVISION", result.message
        assert result.facts["clock_offset"] is not None and onvif.AUTH_FAILED_KEY not in state
        assert len(seen) == 3  # unsigned clock, signed clock, identity
        assert any("needs credentials" in line for line in result.log), result.log
        seen.clear()
        wrong = await run(target("127.0.34.10", password="not-the-password"), state)
        assert (wrong.reason, wrong.problems["auth_failed"]) == ("auth_failed", True)
        assert [signed_by(body, "not-the-password") for _, body in seen] == [False, True]


async def test_clock_offset_is_centred_on_the_cameras_second(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A camera reports whole seconds: one in step with camnet reads within ±0.5 s (the
    middle of its second), not -1..0 s."""
    now = 1_700_000_000.9  # 2023-11-14 22:13:20.9 UTC; the camera says 22:13:20
    monkeypatch.setattr(onvif, "time", SimpleNamespace(time=lambda: now,
                                                       monotonic=time.monotonic))
    clock = captured("hikvision", "core", "GetSystemDateAndTime.Response.xml")
    for part, value in (("Hour", 22), ("Minute", 13), ("Second", 20), ("Year", 2023),
                        ("Month", 11), ("Day", 14)):
        clock = re.sub(rf"(<tt:UTCDateTime>.*?<tt:{part}>)\d+<", rf"\g<1>{value}<", clock,
                       count=1, flags=re.S)
    info = captured("hikvision", "core", "GetDeviceInformation.Response.xml")

    def answer(op: str) -> web.Response:
        return soap(clock if op == "GetSystemDateAndTime" else info)

    async with soap_server("127.0.34.11", answer):
        result = await run(target("127.0.34.11", rtsp_url="rtsp://127.0.34.11/s"))
    assert result.success, result.message
    assert result.facts["clock_offset"] == -0.4


DIGEST_REALM, DIGEST_NONCE = "IP Camera(C1234)", "4e6a4d334e7a4935"


def digest_ok(header: str, password: str, method: str = "POST") -> bool:
    """Whether an Authorization header is a valid RFC 7616 MD5 digest for the test camera."""
    if not header.startswith("Digest "):
        return False
    p = {m[0]: m[1] or m[2] for m in re.findall(r'(\w+)=(?:"([^"]*)"|([^,\s]*))', header[7:])}
    ha1 = hashlib.md5(f"{p['username']}:{DIGEST_REALM}:{password}".encode()).hexdigest()
    ha2 = hashlib.md5(f"{method}:{p['uri']}".encode()).hexdigest()
    want = hashlib.md5(f"{ha1}:{DIGEST_NONCE}:{p['nc']}:{p['cnonce']}:{p['qop']}:{ha2}"
                       .encode()).hexdigest()
    return p["nonce"] == DIGEST_NONCE and p["realm"] == DIGEST_REALM and p["response"] == want


async def test_a_camera_set_to_http_digest_only() -> None:
    """Cameras set to HTTP digest only (Hikvision's "digest" mode: agsh/onvif#294) refuse the
    UsernameToken with a 401 Digest challenge: the identity request and the library's
    discovery answer it (not auth_failed); a wrong password is tried once per request."""
    host = "127.0.34.12"
    captured_url = re.compile(r"(?:https?|rtsp)://10\.10\.1\.\d+(?::\d+)?")
    seen: list[tuple[str, str]] = []  # (operation, Authorization)

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        op = etree.QName(etree.fromstring(body).find("{*}Body")[0]).localname
        seen.append((op, request.headers.get("Authorization", "")))
        if op != "GetSystemDateAndTime" and not digest_ok(seen[-1][1], PASSWORD):
            return web.Response(status=401, text="Unauthorized", headers={
                "WWW-Authenticate": f'Digest qop="auth", realm="{DIGEST_REALM}", '
                                    f'nonce="{DIGEST_NONCE}", stale="FALSE"'})
        service = "core" if request.path.endswith("device_service") else "media"
        text = captured("hikvision", service, f"{op}.Response.xml")
        return soap(captured_url.sub(lambda m: (f"rtsp://{host}:554" if m[0].startswith("rtsp")
                                                else f"http://{host}:8080"), text))

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, host, 8080).start()
    try:
        state: dict[str, Any] = {}
        result = await run(target(host), state)
        assert result.success and result.facts["vendor"] == "HIKVISION", result.message
        assert state["stream_uri"].startswith(f"rtsp://{host}:554/Streaming/Channels/"), state
        assert {op for op, auth in seen if auth} >= {"GetDeviceInformation", "GetServices",
                                                     "GetProfiles", "GetStreamUri"}
        seen.clear()
        wrong = await run(target(host, password="not-the-password"), {})
        assert (wrong.reason, wrong.problems["auth_failed"]) == ("auth_failed", True)
        assert [op for op, auth in seen if auth] == ["GetDeviceInformation"]
        assert "not-the-password" not in repr(wrong)
    finally:
        await runner.cleanup()


async def test_a_camera_without_a_clock_is_still_checked() -> None:
    """A camera that answers GetSystemDateAndTime with a fault (HiKam A7 has none:
    agsh/onvif#65) has an unknown clock; its identity and stream URI are still asked."""
    unsupported = FAULT_12.format(sub="ter:ActionNotSupported",
                                  reason="Optional Action Not Implemented", detail="")
    info = captured("hikvision", "core", "GetDeviceInformation.Response.xml")

    def answer(op: str) -> web.Response:
        return soap(unsupported, 500) if op == "GetSystemDateAndTime" else soap(info)

    async with soap_server("127.0.34.15", answer):
        result = await run(target("127.0.34.15", rtsp_url="rtsp://127.0.34.15/s"),
                           {onvif.CLOCK_DRIFT_KEY: True})
    assert result.success and result.facts["model"] == "DS-2DF7276-AEL", result.message
    offset = sample(result, "camnet_camera_clock_offset_seconds")
    assert result.facts["clock_offset"] is None and (offset is None or offset.value is None)
    assert result.problems["clock_drift"]  # unknown: the last reading's verdict stands
