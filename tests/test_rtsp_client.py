"""probes.rtsp_client, the grab worker's own RTSP/TCP client, against real and hostile servers.

Real peer: a GStreamer RTSP server (tests/gst_codec_server.py) with what the lab cameras lack:
H.265 (RFC 7798), Motion JPEG (which the client leaves to FFmpeg's demuxer) and Basic
authentication. Hostile peers: small asyncio servers on 127.0.12.62-65 that speak just enough
RTSP to get to PLAY, then send what a broken or malicious camera might.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from probes import grab_worker, rtsp, rtsp_client
from tests import test_camera
from tests.test_camera import _ffprobe_size
from tests.test_rtsp import drain_until_eof, tcp_server

ROOT = Path(__file__).resolve().parent.parent
CODEC_HOST, CODEC_PORT = "127.0.12.60", 8554  # and CODEC_PORT + 1 for Basic authentication
USER, PASSWORD = "tech", "basic-pw-Zq7"
HOSTILE = "127.0.12.62"
SYSTEM_PYTHON = "/usr/bin/python3"
pool = test_camera.pool  # the grab workers of a test's event loop, stopped afterwards


@pytest.fixture(scope="module")
def codec_server() -> Iterator[str]:
    """The GStreamer server with H.265, MJPEG and Basic auth; its address:port."""
    if not Path(SYSTEM_PYTHON).exists() or shutil.which("gst-inspect-1.0") is None:
        pytest.fail("GStreamer's RTSP server is needed (make test installs it)")
    proc = subprocess.Popen(
        [SYSTEM_PYTHON, str(ROOT / "tests" / "gst_codec_server.py"), CODEC_HOST,
         str(CODEC_PORT), USER, PASSWORD],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == b"ready", proc.stderr.read() if proc.stderr else line
        yield f"{CODEC_HOST}:{CODEC_PORT}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


async def grab(url: str, decode: bool = True, budget: float = 8.0) -> rtsp.Grab:
    loop = asyncio.get_running_loop()
    return await rtsp.get_pool().grab(url, loop.time() + budget, decode=decode)


async def test_h265_is_read_by_the_lean_client_and_agrees_with_ffprobe(
        codec_server: str, pool: Any) -> None:
    url = f"rtsp://{codec_server}/h265"
    key = await asyncio.to_thread(rtsp_client.fetch_keyframe, url, time.monotonic() + 8, 600)
    skim = await asyncio.to_thread(rtsp_client.fetch_keyframe, url, time.monotonic() + 8, 600,
                                   False)
    assert key.codec == "hevc"
    assert_skimmed(skim, key)
    kinds = [(n >> 1) & 0x3F for n in _nal_headers(key.data)]
    assert kinds[:3] == [32, 33, 34] and any(16 <= k <= 21 for k in kinds), kinds
    probe = _ffprobe_size(url)
    decoded = await grab(url)
    waited = await grab(url, decode=False)
    for g in (decoded, waited):
        h = g.header
        assert (h["codec"], h["width"], h["height"]) == probe == ("hevc", 320, 240)
        assert h["profile"] == "Main" and h["fps"] == 10.0 and h["keyframe_bytes"] > 0
    # The small frame the picture checks read (320 wide); the sharpness is taken at 640 wide.
    assert decoded.grey.shape == (240, 320) and decoded.grey.std() > 10  # a picture, not grey
    assert decoded.header["measured_size"] == "320x240" and decoded.header["sharpness"] > 0


async def test_a_codec_it_does_not_handle_goes_to_ffmpeg(codec_server: str, pool: Any) -> None:
    url = f"rtsp://{codec_server}/mjpeg"
    with pytest.raises(rtsp_client.Unsupported):
        await asyncio.to_thread(rtsp_client.fetch_keyframe, url, time.monotonic() + 8, 600)
    probe = _ffprobe_size(url)
    g = await grab(url)
    assert (g.header["codec"], g.header["width"], g.header["height"]) == probe == (
        "mjpeg", 320, 240)
    assert g.grey.std() > 10


async def test_basic_authentication(codec_server: str, pool: Any) -> None:
    host, port = codec_server.split(":")
    good = await grab(f"rtsp://{USER}:{PASSWORD}@{host}:{int(port) + 1}/basic")
    assert good.header["codec"] == "h264" and good.header["width"] == 320
    for url in (f"rtsp://{USER}:wrong-{PASSWORD}@{host}:{int(port) + 1}/basic",
                f"rtsp://{host}:{int(port) + 1}/basic"):
        with pytest.raises(rtsp.GrabError) as err:
            await grab(url)
        assert err.value.reason == "auth_failed"
        assert PASSWORD not in str(err.value)


def _nal_headers(annex_b: bytes) -> list[int]:
    return [annex_b[m.end()] for m in re.finditer(b"\x00\x00\x00\x01", annex_b)]


# --- hostile servers: what the client must survive ---------------------------------------------

def h264_keyframe(slices: int = 1, size: str = "160x120") -> list[bytes]:
    """The NAL units (SPS, PPS, SEI, IDR slices) of one real H.264 keyframe (ffmpeg)."""
    out = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", f"testsrc=size={size}:rate=1",
         "-frames:v", "1", "-pix_fmt", "yuv420p", "-c:v", "libx264",
         "-bsf:v", "h264_metadata=aud=remove", "-x264-params", f"keyint=1:slices={slices}",
         "-f", "h264", "-"],
        capture_output=True, timeout=30, check=True).stdout
    nals = [n for n in re.split(b"\x00\x00\x00\x01|\x00\x00\x01", out) if n]
    return [n.rstrip(b"\x00") for n in nals]


def h264_units(frames: int, x264_params: str) -> list[list[bytes]]:
    """The access units (each a list of NAL units) of a 160x120 H.264 stream x264 made."""
    out = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10",
         "-frames:v", str(frames), "-pix_fmt", "yuv420p", "-c:v", "libx264", "-x264-params",
         f"{x264_params}:aud=1", "-f", "h264", "-"],
        capture_output=True, timeout=30, check=True).stdout
    return [[n.rstrip(b"\x00") for n in re.split(b"\x00\x00\x00\x01|\x00\x00\x01", au) if n]
            for au in re.split(b"\x00\x00\x00\x01\x09[\x00-\xff]", out)[1:]]


SDP = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=cam\r\nt=0 0\r\n"
       "m=audio 0 RTP/AVP 0\r\na=control:track0\r\n"
       "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
       "a=fmtp:96 packetization-mode=1;sprop-parameter-sets={sprop}\r\n"
       "a=control:track1\r\n")


def rtp(payload: bytes, ts: int, marker: bool, seq: int, *, pt: int = 96,
        extension: bool = False, padding: int = 0, csrc: int = 0) -> bytes:
    """One RTP packet, with the optional parts real cameras use."""
    first = 0x80 | (0x20 if padding else 0) | (0x10 if extension else 0) | csrc
    header = struct.pack(">BBHII", first, (0x80 if marker else 0) | pt, seq, ts, 0x1234)
    header += b"\x00\x00\x00\x01" * csrc
    if extension:
        header += struct.pack(">HH", 0xABAC, 1) + b"\x00\x00\x00\x00"
    tail = (b"\x00" * (padding - 1) + bytes([padding])) if padding else b""
    return header + payload + tail


def interleave(packet: bytes, channel: int = 2) -> bytes:
    return b"$" + bytes([channel]) + struct.pack(">H", len(packet)) + packet


def fu_a(nal: bytes, size: int = 500) -> list[bytes]:
    """An H.264 NAL unit cut into FU-A fragments."""
    head, body = nal[0], nal[1:]
    chunks = [body[i:i + size] for i in range(0, len(body), size)]
    out = []
    for i, chunk in enumerate(chunks):
        fu = (head & 0x1F) | (0x80 if i == 0 else 0) | (0x40 if i == len(chunks) - 1 else 0)
        out.append(bytes([(head & 0xE0) | 28, fu]) + chunk)
    return out


async def send_units(w: asyncio.StreamWriter, units: list[list[bytes]]) -> None:
    """Frames as RTP, one timestamp each, the marker on each frame's last packet."""
    seq = 0
    for ts, packets in enumerate(units, start=1):
        for i, payload in enumerate(packets):
            w.write(interleave(rtp(payload, ts, i == len(packets) - 1, seq)))
            seq += 1
    await w.drain()


Media = Callable[[asyncio.StreamWriter], Awaitable[None]]


def rtsp_camera(media: Media, *, sprop: str = "", digest: bool = False,
                seen: list[str] | None = None, eol: str = "\r\n",
                transport: str = "RTP/AVP/TCP;unicast;interleaved=2-3",
                split_describe: bool = False) -> Callable[..., Awaitable[None]]:
    """A camera that answers DESCRIBE/SETUP/PLAY (Digest with qop=auth when asked), then
    hands the connection to `media`. `eol` ends its header lines (some cameras send bare LF);
    `split_describe` sends the DESCRIBE answer in two TCP segments cut inside "RTSP/"."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        real_write = writer.write
        loop = asyncio.get_running_loop()

        def write(data: bytes) -> None:
            head, sep, body = data.partition(b"\r\n\r\n")
            data = (head.replace(b"\r\n", eol.encode()) + (eol * 2).encode() + body
                    if sep else data)
            if split_describe and b"application/sdp" in data:
                real_write(data[:3])
                loop.call_later(0.1, real_write, data[3:])
            else:
                real_write(data)

        writer.write = write  # type: ignore[method-assign]
        while True:
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            if seen is not None:
                seen.append(head)
            method, uri = head.split(" ", 2)[:2]
            cseq = re.search(r"CSeq: (\d+)", head)
            n = cseq.group(1) if cseq else "0"
            if digest and not _digest_ok(head, method, uri):
                writer.write(f"RTSP/1.0 401 Unauthorized\r\nCSeq: {n}\r\nWWW-Authenticate: "
                             'Basic realm="cam"\r\nWWW-Authenticate: Digest realm="cam", '
                             'nonce="abc123", qop="auth", opaque="op9"\r\n\r\n'.encode())
                continue
            if method == "DESCRIBE":
                body = SDP.format(sprop=sprop).encode()
                writer.write(f"RTSP/1.0 200 OK\r\nCSeq: {n}\r\nContent-Base: {uri}/\r\n"
                             f"Content-Type: application/sdp\r\nContent-Length: {len(body)}"
                             "\r\n\r\n".encode() + body)
            elif method == "SETUP":
                assert uri.endswith("/track1"), uri
                writer.write(f"RTSP/1.0 200 OK\r\nCSeq: {n}\r\nSession: 42;timeout=60\r\n"
                             f"Transport: {transport}\r\n\r\n".encode())
            elif method == "PLAY":
                writer.write(f"RTSP/1.0 200 OK\r\nCSeq: {n}\r\nSession: 42\r\n\r\n".encode())
                await writer.drain()
                writer.write = real_write  # type: ignore[method-assign]
                await media(writer)
                while data := await reader.read(65536):  # TEARDOWN, then EOF
                    if seen is not None:
                        seen.append(data.decode("latin-1"))
                return
            else:
                writer.write(f"RTSP/1.0 200 OK\r\nCSeq: {n}\r\n\r\n".encode())
            await writer.drain()

    return handler


def _digest_ok(head: str, method: str, uri: str) -> bool:
    auth = re.search(r"Authorization: Digest (.*)", head)
    if not auth:
        return False
    f = dict(re.findall(r'(\w+)="?([^",]*)"?', auth.group(1)))

    def md5(s: str) -> str:
        return hashlib.md5(s.encode()).hexdigest()

    ha1, ha2 = md5(f"admin:cam:{PASSWORD}"), md5(f"{method}:{uri}")
    want = md5(f"{ha1}:abc123:{f.get('nc')}:{f.get('cnonce')}:auth:{ha2}")
    return f.get("response") == want and f.get("opaque") == "op9" and f.get("uri") == uri


async def fetch(url: str, budget: float = 3.0, whole: bool = True) -> rtsp_client.Keyframe:
    return await asyncio.to_thread(rtsp_client.fetch_keyframe, url,
                                   time.monotonic() + budget, 50, whole)


def assert_skimmed(skim: rtsp_client.Keyframe, key: rtsp_client.Keyframe) -> None:
    """A unit fetched with whole=False is the whole one's start, cut inside its first slice,
    and says the whole unit's size."""
    assert (skim.codec, skim.units, skim.params, skim.recovery, skim.keyframe_bytes) == (
        key.codec, key.units, key.params, key.recovery, key.keyframe_bytes)
    assert key.data.startswith(skim.data)
    vcl = [h for h in _nal_headers(skim.data)
           if (1 <= h & 0x1F <= 5 if key.codec == "h264" else (h >> 1) & 0x3F < 32)]
    assert len(vcl) == 1, _nal_headers(skim.data)  # up to the first slice, not past it


async def test_a_keyframe_through_everything_rtp_allows(pool: Any) -> None:
    """Joining mid-GOP (a fragment's tail first), RTCP and a server's own GET_PARAMETER on the
    connection, CSRCs, header extensions and padding, STAP-A and FU-A, parameter sets only in
    the SDP, Digest with qop=auth: the keyframe decodes to the picture ffmpeg made."""
    sps, pps, *slices = h264_keyframe()
    sprop = ",".join(base64.b64encode(x).decode() for x in (sps, pps))
    idr = [s for s in slices if s[0] & 0x1F == 5]
    assert idr

    async def media(w: asyncio.StreamWriter) -> None:
        p_frame = bytes([0x41]) + b"\x9a" * 1200  # a non-IDR slice (type 1), three fragments
        w.write(interleave(rtp(fu_a(p_frame)[-1], 1000, True, 1)))  # a tail without its head
        w.write(interleave(b"\x80\xc8\x00\x06" + b"\x00" * 24, channel=3))  # RTCP SR
        w.write(b"GET_PARAMETER rtsp://127.0.12.62:8554/live RTSP/1.0\r\nCSeq: 9\r\n"
                b"Content-Length: 4\r\n\r\nping")
        w.write(interleave(rtp(p_frame, 2000, True, 2, csrc=2, extension=True, padding=4)))
        sei = bytes([0x06, 0x05, 0x01, 0x00, 0x80])
        stap = bytes([0x18]) + struct.pack(">H", len(sei)) + sei
        w.write(interleave(rtp(stap, 3000, False, 3)))
        seq = 4
        for nal in idr:
            frags = fu_a(nal)
            for i, frag in enumerate(frags):
                last = nal is idr[-1] and i == len(frags) - 1
                w.write(interleave(rtp(frag, 3000, last, seq, extension=seq % 2 == 0)))
                seq += 1
        await w.drain()

    seen: list[str] = []
    async with tcp_server(HOSTILE, 8554, rtsp_camera(media, sprop=sprop, digest=True, seen=seen)):
        key = await fetch(f"rtsp://admin:{PASSWORD}@{HOSTILE}:8554/live")
        skim = await fetch(f"rtsp://admin:{PASSWORD}@{HOSTILE}:8554/live", whole=False)
        got = await grab(f"rtsp://admin:{PASSWORD}@{HOSTILE}:8554/live")
    assert key.codec == "h264" and key.units == 3  # the partial frame, the P-frame, the key
    assert [n & 0x1F for n in _nal_headers(key.data)] == [7, 8, 6] + [5] * len(idr)
    assert key.keyframe_bytes == len(key.data) - 8 - len(sps) - len(pps)
    assert key.params == b"\x00\x00\x00\x01" + sps + b"\x00\x00\x00\x01" + pps  # from the SDP
    assert_skimmed(skim, key)  # padding, CSRCs and extensions are not counted
    assert len(skim.data) < 1000 < len(key.data)  # the first of the slice's fragments
    assert (got.header["width"], got.header["height"]) == (160, 120)
    assert got.grey.std() > 10
    assert all(PASSWORD not in h for h in seen)  # Digest: the password never on the wire
    assert any("TEARDOWN" in h for h in seen)  # the session is given back


async def test_a_camera_that_ends_lines_with_bare_lf(pool: Any) -> None:
    sps, pps, *slices = h264_keyframe()

    async def media(w: asyncio.StreamWriter) -> None:
        await send_units(w, [[sps, pps, *slices]])

    async with tcp_server(HOSTILE, 8554, rtsp_camera(media, eol="\n")):
        key = await fetch(f"rtsp://{HOSTILE}:8554/live")
    assert [n & 0x1F for n in _nal_headers(key.data)][:2] == [7, 8] and key.units == 1
    assert key.params == b"\x00\x00\x00\x01" + sps + b"\x00\x00\x00\x01" + pps  # in-band


@pytest.mark.parametrize("attack, reason", [
    ("endless_frame", "bad_reply"),   # one frame that never ends: bounded memory
    ("no_keyframe", "timeout"),       # P-frames forever
    ("not_rtp", "bad_reply"),         # garbage after PLAY
    ("hangs_after_play", "timeout"),  # silence after PLAY
    ("huge_sdp", "bad_reply"),        # a DESCRIBE answer of 2 GB announced
    ("tiny_nals", "bad_reply"),       # one frame of 1-byte NAL units: memory beyond its bytes
])
async def test_hostile_cameras_end_in_a_clear_reason(attack: str, reason: str, pool: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rtsp_client, "MAX_UNIT_BYTES", 200_000)

    async def media(w: asyncio.StreamWriter) -> None:
        if attack == "endless_frame":
            head = bytes([0x7C, 0x85])  # FU-A start of an IDR slice, never ended
            w.write(interleave(rtp(head + b"\x00" * 1000, 1, False, 0)))
            for i in range(400):
                w.write(interleave(rtp(bytes([0x7C, 0x05]) + b"\x00" * 1000, 1, False, i)))
                await w.drain()
        elif attack == "no_keyframe":
            for i in range(100):
                w.write(interleave(rtp(bytes([0x41]) + b"\x11" * 50, i * 3600, True, i)))
            await w.drain()
        elif attack == "tiny_nals":
            stap = bytes([0x18]) + b"\x00\x01\x41" * 400
            for i in range(40):
                w.write(interleave(rtp(stap, 1, False, i)))
            await w.drain()
        elif attack == "not_rtp":
            w.write(b"\xff" * 4096)
            await w.drain()

    async def huge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Length: 2000000000\r\n\r\nv=0")
        await writer.drain()
        await drain_until_eof(reader)

    handler = huge if attack == "huge_sdp" else rtsp_camera(media)
    async with tcp_server(HOSTILE, 8554, handler):
        started = time.monotonic()
        with pytest.raises(rtsp_client.RtspError) as err:
            await fetch(f"rtsp://{HOSTILE}:8554/live", budget=2.0)
        assert time.monotonic() - started < 3.0
        assert err.value.reason == reason, err.value
        # The same through a grab worker (its own MAX_UNIT_BYTES: the timeout ends that one).
        if attack != "endless_frame":
            with pytest.raises(rtsp.GrabError) as grab_err:
                await grab(f"rtsp://{HOSTILE}:8554/live", budget=2.0)
            assert grab_err.value.reason == reason


def slices_of(nals: list[bytes]) -> list[bytes]:
    return [n for n in nals if n[0] & 0x1F == 5]


async def test_a_keyframe_joined_mid_frame_is_not_taken(pool: Any) -> None:
    """An IDR picture in two slices: joined inside the first slice's fragments, or at the
    second slice, the unit is partial; the next whole keyframe is the one returned."""
    sps, pps, *rest = h264_keyframe(slices=2)
    first, second = slices_of(rest)

    async def media(w: asyncio.StreamWriter) -> None:
        await send_units(w, [[*fu_a(first, 200)[1:], second], [second],
                             [sps, pps, *fu_a(first, 200), second]])

    async with tcp_server(HOSTILE, 8554, rtsp_camera(media)):
        key = await fetch(f"rtsp://{HOSTILE}:8554/live")
        skim = await fetch(f"rtsp://{HOSTILE}:8554/live", whole=False)
    assert key.units == 3
    assert [n & 0x1F for n in _nal_headers(key.data)] == [7, 8, 5, 5]
    assert_skimmed(skim, key)


async def test_a_stream_without_idr_frames(pool: Any) -> None:
    """Open-GOP encoders mark random access points with a recovery point SEI, not IDR."""
    units = h264_units(9, "keyint=4:min-keyint=4:open-gop=1:bframes=2:scenecut=0")
    assert any(n[0] & 0x1F == 5 for n in units[0])  # the first is an IDR: skip it
    later = units[1:]
    assert not any(n[0] & 0x1F == 5 for u in later for n in u)

    async def media(w: asyncio.StreamWriter) -> None:
        await send_units(w, later)

    async with tcp_server(HOSTILE, 8554, rtsp_camera(media)):
        key = await fetch(f"rtsp://{HOSTILE}:8554/live")
        skim = await fetch(f"rtsp://{HOSTILE}:8554/live", whole=False)
        got = await grab(f"rtsp://{HOSTILE}:8554/live", budget=4.0)
    assert 6 in [n & 0x1F for n in _nal_headers(key.data)] and key.units == 3
    assert_skimmed(skim, key)
    assert (got.header["width"], got.header["height"]) == (160, 120) and got.grey.std() > 10


async def test_split_messages_and_a_refused_interleave(pool: Any) -> None:
    """A reply cut inside "RTSP/" is read on; a camera that answers SETUP with UDP is left to
    FFmpeg, and its session is given back (TEARDOWN)."""
    seen: list[str] = []
    async with tcp_server(HOSTILE, 8554, rtsp_camera(
            media_none, seen=seen, split_describe=True,
            transport="RTP/AVP;unicast;client_port=5000-5001;server_port=6000-6001")):
        with pytest.raises(rtsp_client.Unsupported):
            await fetch(f"rtsp://{HOSTILE}:8554/live")
        await asyncio.sleep(0.2)
    assert any(h.startswith("TEARDOWN") and "Session: 42" in h for h in seen), seen


async def media_none(w: asyncio.StreamWriter) -> None:
    """No media at all."""


async def test_a_frame_the_worker_cannot_finish_is_a_bad_reply(
        pool: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from probes import grab_worker

    def refuse(*_: Any, **__: Any) -> Any:
        raise MemoryError

    sps, pps, *rest = h264_keyframe()

    async def media(w: asyncio.StreamWriter) -> None:
        await send_units(w, [[sps, pps, *rest]])

    monkeypatch.setattr(grab_worker, "_answer", refuse)
    async with tcp_server(HOSTILE, 8554, rtsp_camera(media)):
        header, grey, _ = await asyncio.to_thread(
            grab_worker.grab, {"url": f"rtsp://{HOSTILE}:8554/live", "timeout": 3})
    assert (header["ok"], header["reason"], grey) == (False, "bad_reply", b"")


def test_skimmed_sizes_are_what_the_depacketizer_makes() -> None:
    """_annex_b_size, payload by payload, adds what _Depacketizer.push adds to the unit (a
    fragment being reassembled counted as far as it goes): single NAL units, aggregates (one
    entry running past the end), fragments, reserved and short payloads, for both codecs."""
    idr = bytes([0x65]) + bytes(range(256)) * 4
    h264 = [*fu_a(idr, 300), bytes([0x41, 1, 2, 3]),
            bytes([0x18]) + struct.pack(">H", 3) + b"\x06\x05\x80" + struct.pack(">H", 2)
            + b"\x68\x01" + struct.pack(">H", 9) + b"\x01",
            b"\x1f\x00", b"\x5c", b"\x7c\x85", b"\x7c\x45"]
    irap = bytes([0x26, 0x01]) + bytes(range(200)) * 3  # IDR_W_RADL
    hevc = [bytes([0x62, 0x01, 0x80 | 19]) + irap[2:300], bytes([0x62, 0x01, 19]) + irap[300:500],
            bytes([0x62, 0x01, 0x40 | 19]) + irap[500:],
            bytes([0x60, 0x01]) + struct.pack(">H", 3) + b"\x40\x01\x0c" + struct.pack(">H", 2)
            + b"\x42\x01", bytes([0x02, 0x01, 0xAA]), bytes([0x62, 0x01]), b"\x62",
            bytes([0x7E, 0x01, 9])]
    for codec, payloads in (("h264", h264), ("hevc", hevc)):
        depack, counted = rtsp_client._Depacketizer(codec), 0
        out: list[bytes] = []
        for i, payload in enumerate(payloads):
            depack.push(memoryview(payload), out)
            counted += rtsp_client._annex_b_size(codec, memoryview(payload))
            pending = 4 + len(depack.fragment) if depack.fragment is not None else 0
            assert counted == sum(4 + len(n) for n in out) + pending, (codec, i)
        assert len(out) == (5 if codec == "h264" else 4) and not depack.lost


def test_sdp_controls_and_parameter_sets() -> None:
    base = "rtsp://10.0.0.1:554/ch1/"
    sdp = ("v=0\r\ns=x\r\na=control:*\r\nm=video 0 RTP/AVP 97\r\na=rtpmap:97 H265/90000\r\n"
           "a=fmtp:97 sprop-vps=QAE=; sprop-sps=QgE=;sprop-pps=RAE=\r\n"
           "a=framerate:25\r\na=control:rtsp://10.0.0.1:554/ch1/trackID=1\r\n")
    t = rtsp_client.parse_sdp(sdp, base)
    assert (t.codec, t.payload_type, t.control, t.fps) == (
        "hevc", 97, "rtsp://10.0.0.1:554/ch1/trackID=1", 25.0)
    assert [(p[0] >> 1) & 0x3F for p in t.params] == [32, 33, 34]
    assert rtsp_client.parse_sdp(sdp.replace("rtsp://10.0.0.1:554/ch1/trackID=1", "trackID=1"),
                                 "rtsp://10.0.0.1:554/ch1").control == (
        "rtsp://10.0.0.1:554/ch1/trackID=1")
    assert rtsp_client.parse_sdp(sdp.replace("a=control:rtsp://10.0.0.1:554/ch1/trackID=1",
                                             "a=control:*"), base).control == base
    with pytest.raises(rtsp_client.Unsupported):
        rtsp_client.parse_sdp(sdp.replace("H265", "JPEG"), base)
    with pytest.raises(rtsp_client.Unsupported):
        rtsp_client.parse_sdp(sdp.replace("sprop-pps=RAE=", "sprop-pps=RAE=;sprop-max-don-diff=2"),
                              base)
    h264 = sdp.replace("H265", "H264").replace("sprop-vps=QAE=; ", "packetization-mode=2;")
    with pytest.raises(rtsp_client.Unsupported):
        rtsp_client.parse_sdp(h264, base)
    assert rtsp_client.parse_sdp(h264.replace("mode=2", "mode=1"), base).codec == "h264"
    # fmtp parameter names are case-insensitive (RFC 4566); some cameras capitalise them.
    shouting = rtsp_client.parse_sdp(
        sdp.replace("sprop-vps", "Sprop-VPS").replace("sprop-sps", "SPROP-SPS"), base)
    assert [(p[0] >> 1) & 0x3F for p in shouting.params] == [32, 33, 34]
    with pytest.raises(rtsp_client.RtspError) as err:
        rtsp_client.parse_sdp("v=0\r\nm=audio 0 RTP/AVP 0\r\n", base)
    assert err.value.reason == "no_stream"


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))


def test_a_stalled_picture_stream_does_not_hold_the_main_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A picture stream whose decoder stalls past its own time limit (FFmpeg's demuxer can) is
    a timeout once its grace is over; the main stream's answer comes back, and the worker asks
    to be retired (the stalled thread cannot be stopped)."""
    from probes import grab_worker

    def stall_the_picture(req: dict[str, Any]) -> Any:
        if req["url"] == "rtsp://picture":
            time.sleep(req["timeout"] + grab_worker.PICTURE_GRACE + 2.0)  # deaf to its limit
            return {"ok": True}, b"x", b""
        return {"ok": True, "codec": "h264", "width": 1280, "grey_shape": [0, 0]}, b"", b""

    monkeypatch.setattr(grab_worker, "grab", stall_the_picture)
    started = time.monotonic()
    header, grey, jpeg = grab_worker.grab_pair(
        {"url": "rtsp://main", "timeout": 8.0, "picture": {"url": "rtsp://picture", "timeout": 0.2}})
    took = time.monotonic() - started
    assert (header["ok"], header["width"], grey, jpeg) == (True, 1280, b"", b"")
    assert header["picture"]["reason"] == "timeout" and header["retire"] is True
    assert took < 0.2 + grab_worker.PICTURE_GRACE + 1.0, took  # not the stall's 2.7 s
    # With little time left the grace ends at the main stream's own limit (the parent kills
    # the worker soon after it): the main stream's answer is still given, in time.
    started = time.monotonic()
    header, _, _ = grab_worker.grab_pair(
        {"url": "rtsp://main", "timeout": 1.0, "picture": {"url": "rtsp://picture", "timeout": 1.0}})
    took = time.monotonic() - started
    assert header["ok"] and header["picture"]["reason"] == "timeout" and header["retire"]
    assert 1.0 <= took < 1.0 + grab_worker.PICTURE_GRACE - 0.2, took


def _unit(nals: list[bytes], params: bool = True) -> rtsp_client.Keyframe:
    data = b"".join(b"\x00\x00\x00\x01" + n for n in nals)
    sets = b"".join(b"\x00\x00\x00\x01" + n for n in nals if n[0] & 0x1F in (7, 8))
    return rtsp_client.Keyframe("h264", data, len(data), 1, None, sets if params else b"")


def test_kept_codec_contexts_answer_as_new_ones() -> None:
    """The worker keeps its decoders and parsers between grabs, for byte-identical parameter
    sets only: every answer is the one a new context gives."""
    keys = {size: _unit(h264_keyframe(size=size)) for size in ("160x120", "640x360")}
    assert len(keys["640x360"].data) > grab_worker.PARSE_BYTES  # the parser sees part of it
    facts = ("codec", "profile", "fps", "width", "height", "sharpness", "brightness",
             "contrast", "structure")

    def answer(key: rtsp_client.Keyframe, decode: bool) -> tuple[list[Any], bytes]:
        header, grey, _ = grab_worker._grab_unit(
            {"decode": decode, "jpeg": False}, key, time.monotonic())
        assert header["ok"], header
        return [header.get(k) for k in facts], grey

    new = {}
    for size, key in keys.items():
        for decode in (True, False):
            grab_worker._decoders.clear()
            new[size, decode] = answer(key, decode)
            assert new[size, decode][0][3:5] == [int(x) for x in size.split("x")]
    grab_worker._decoders.clear()
    for _ in range(3):
        for size, key in keys.items():
            for decode in (True, False):
                assert answer(key, decode) == new[size, decode], (size, decode)
    assert sorted((k[1], k[2]) for k in grab_worker._decoders) == sorted(
        (key.params, decode) for key in keys.values() for decode in (True, False))

    # Drained by its last grab (as a stream that reorders frames leaves it): flushed first.
    small = keys["160x120"]
    grab_worker._decoders[("h264", small.params, True)].decode(None)
    header, _, _ = grab_worker._grab_unit({"jpeg": False}, small, time.monotonic())
    assert header["ok"], header

    # A unit that lacks its parameter sets gets a new decoder, which cannot decode it: a kept
    # one would, with parameter sets another stream gave it.
    nals = h264_keyframe()
    bare = _unit([n for n in nals if n[0] & 0x1F not in (7, 8)], params=False)
    header, _, _ = grab_worker._grab_unit({"jpeg": False}, bare, time.monotonic())
    assert header["reason"] == "bad_reply", header

    # A decoder that fails is not kept.
    broken = _unit([n[:1] + bytes(len(n) - 1) if n[0] & 0x1F == 5 else n for n in nals])
    assert broken.params == small.params
    header, _, _ = grab_worker._grab_unit({"jpeg": False}, broken, time.monotonic())
    assert not header["ok"] and ("h264", small.params, True) not in grab_worker._decoders
    grab_worker._decoders.clear()


async def test_an_intra_refresh_stream_is_decoded_from_its_recovery_point(pool: Any) -> None:
    """Intra refresh: no IDR after the first frame, the recovery point SEI rides on P-pictures
    and the picture is whole only a cycle later. Such a unit does not decode on its own, so the
    worker reads the stream through FFmpeg, every frame decoded, and remembers to."""
    units = h264_units(40, "keyint=10:intra-refresh=1")
    later = units[1:]  # joined after the stream's only IDR
    assert not any(n[0] & 0x1F == 5 for u in later for n in u)
    sps, pps = (n for n in units[0] if n[0] & 0x1F in (7, 8))
    sprop = ",".join(base64.b64encode(x).decode() for x in (sps, pps))

    async def media(w: asyncio.StreamWriter) -> None:
        await send_units(w, later)

    seen: list[str] = []
    async with tcp_server(HOSTILE, 8554, rtsp_camera(media, sprop=sprop, seen=seen)):
        key = await fetch(f"rtsp://{HOSTILE}:8554/live")
        got = [await grab(f"rtsp://{HOSTILE}:8554/live", budget=6.0) for _ in range(2)]
    assert key.recovery
    for g in got:
        assert (g.header["width"], g.header["height"]) == (160, 120) and g.grey.std() > 10
        assert g.header["every_frame"]
    lean = [h for h in seen if h.startswith("DESCRIBE") and "User-Agent: camnet" in h]
    assert len(lean) == 2, seen  # fetch's, the first grab's; the second went straight to FFmpeg
