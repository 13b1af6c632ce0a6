"""A lean RTSP/TCP client that fetches one H.264/H.265 keyframe access unit, for the grab worker.

FFmpeg's RTSP demuxer costs ≈ 3 ms of CPU per grab before the first byte of video is decoded
(avformat_find_stream_info's parser set-up, its 1 MiB buffers) and, on a 1080p main stream
that is only waited for, ≈ 15 ms to demux the keyframe (bench/camera.py). A camera check needs
none of that: DESCRIBE, SETUP one video track interleaved on the TCP connection, PLAY, unpack
RTP (RFC 6184 for H.264, RFC 7798 for H.265) until a keyframe's access unit is complete, hang
up. The worker decodes that unit with a bare codec context.

Blocking sockets on purpose: this runs in the grab worker, whose parent enforces the deadline
by killing it; here every socket call also has the time that is left as its own timeout.
Anything this client does not handle (other codecs, a server that refuses TCP interleaving,
redirects) raises `Unsupported`, and the worker falls back to FFmpeg's demuxer.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit, urlunsplit

DEFAULT_PORT = 554
MAX_HEADER_BYTES = 64 * 1024  # an RTSP reply's header block
MAX_BODY_BYTES = 1024 * 1024  # an SDP
MAX_UNIT_BYTES = 16 * 1024 * 1024  # one access unit (a 4K keyframe is 1-3 MB)
RECV_BYTES = 256 * 1024  # large reads: fewer wake-ups, which this kind of VM bills as CPU
USER_AGENT = "camnet"
# Codec names as FFmpeg spells them, from the SDP's rtpmap encoding name.
CODECS = {"H264": "h264", "H265": "hevc", "HEVC": "hevc"}
# A request from the server on our connection (GET_PARAMETER, OPTIONS keep-alives, ANNOUNCE).
REQUEST_START = re.compile(rb"[A-Z_]{3,20} ")
# What may still become "RTSP/" or a request line once the next read arrives.
MESSAGE_PREFIX = re.compile(rb"(R(T(S(P)?)?)?|[A-Z_]{1,20})\Z")
MAX_NALS_PER_UNIT = 10_000  # a frame of many tiny NAL units costs memory beyond its bytes
NAL_OVERHEAD = 64  # bytes a NAL unit costs in memory besides its payload (object, list slot)
MAX_PARAMS_PER_KIND = 8  # distinct in-band SPS/PPS (several ids) remembered per NAL type


class RtspError(Exception):
    """A failed fetch; `reason` is in the RTSP check's vocabulary (probes.rtsp.REASON_PROBLEM)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Unsupported(Exception):
    """Something this client does not do; FFmpeg's demuxer may."""


@dataclass(slots=True)
class Keyframe:
    """The first complete keyframe access unit of the stream, Annex B, parameter sets first."""

    codec: str  # FFmpeg's name: h264 or hevc
    data: bytes
    keyframe_bytes: int  # the unit as the camera sent it (without parameter sets added from SDP)
    units: int  # access units received, the keyframe's included
    fps: float | None  # the SDP's a=framerate, when it has one
    params: bytes = b""  # every parameter set `data` gives the decoder, Annex B
    recovery: bool = False  # a recovery point SEI made it a keyframe: no IDR/IRAP picture in it


@dataclass(slots=True)
class _Track:
    codec: str
    control: str
    payload_type: int
    play: str  # the URL PLAY goes to: the session's control, else the base
    params: list[bytes] = field(default_factory=list)
    fps: float | None = None


def _header_end(buf: bytearray) -> tuple[int, int]:
    """(end of an RTSP message's header block, length of the blank line); (-1, 0) if incomplete.
    Some cameras end lines with a bare LF."""
    crlf, lf = buf.find(b"\r\n\r\n"), buf.find(b"\n\n")
    if lf >= 0 and (crlf < 0 or lf < crlf):
        return lf, 2
    return crlf, 4 if crlf >= 0 else 0


def _status_reason(code: int) -> str:
    if code in (401, 403):
        return "auth_failed"
    return "no_stream"


class _Connection:
    """One RTSP session on one TCP connection, all of it under one deadline."""

    def __init__(self, url: str, deadline: float) -> None:
        parts = urlsplit(url)
        if parts.scheme.lower() != "rtsp" or not parts.hostname:
            raise Unsupported(f"scheme {parts.scheme!r}")
        self.deadline = deadline
        self.username = unquote(parts.username or "")
        self.password = unquote(parts.password or "")
        host = parts.hostname
        port = parts.port or DEFAULT_PORT
        netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.url = urlunsplit(("rtsp", netloc, parts.path or "/", parts.query, ""))
        self.buf = bytearray()
        self.cseq = 0
        self.session = ""
        self.play_url = self.url
        self.challenge: dict[str, str] | None = None
        self.basic = False
        try:
            self.sock = socket.create_connection((host, port), timeout=self._left())
        except TimeoutError:
            raise RtspError("timeout", "no answer to the TCP connection") from None
        except ConnectionRefusedError:
            raise RtspError("unreachable", "connection refused") from None
        except OSError as exc:
            raise RtspError("unreachable", f"{type(exc).__name__}: {exc.strerror}") from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise RtspError("timeout", "the time limit passed")
        return left

    def _fill(self) -> None:
        self.sock.settimeout(self._left())
        try:
            data = self.sock.recv(RECV_BYTES)
        except TimeoutError:
            raise RtspError("timeout", "the camera stopped sending") from None
        except OSError as exc:
            raise RtspError("no_stream", f"{type(exc).__name__}: {exc.strerror}") from None
        if not data:
            raise RtspError("no_stream", "the camera closed the connection")
        self.buf += data

    def close(self) -> None:
        """Hang up, saying TEARDOWN first when a session exists (cameras have few sessions)."""
        try:
            if self.session:
                self.cseq += 1
                self.sock.settimeout(0.05)
                self.sock.sendall(self._request("TEARDOWN", self.play_url, ()))
        except OSError:
            pass
        finally:
            self.sock.close()

    def _authorization(self, method: str, uri: str) -> str | None:
        if self.basic:
            token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            return f"Basic {token}"
        c = self.challenge
        if c is None:
            return None
        algorithm = c.get("algorithm", "MD5")
        if algorithm.upper() not in ("MD5", "MD5-SESS"):
            raise Unsupported(f"digest algorithm {algorithm}")

        def md5(text: str) -> str:
            return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()

        realm, nonce = c.get("realm", ""), c.get("nonce", "")
        ha1 = md5(f"{self.username}:{realm}:{self.password}")
        cnonce = os.urandom(8).hex()
        if algorithm.upper() == "MD5-SESS":
            ha1 = md5(f"{ha1}:{nonce}:{cnonce}")
        ha2 = md5(f"{method}:{uri}")
        fields = [f'username="{self.username}"', f'realm="{realm}"', f'nonce="{nonce}"',
                  f'uri="{uri}"']
        if "auth" in [q.strip() for q in c.get("qop", "").split(",")]:
            nc = f"{self.cseq:08x}"
            response = md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
            fields += [f'response="{response}"', "qop=auth", f"nc={nc}", f'cnonce="{cnonce}"']
        else:
            fields.append(f'response="{md5(f"{ha1}:{nonce}:{ha2}")}"')
        if "opaque" in c:
            fields.append(f'opaque="{c["opaque"]}"')
        if "algorithm" in c:
            fields.append(f"algorithm={algorithm}")
        return "Digest " + ", ".join(fields)

    def _request(self, method: str, uri: str, headers: tuple[str, ...]) -> bytes:
        lines = [f"{method} {uri} RTSP/1.0", f"CSeq: {self.cseq}", f"User-Agent: {USER_AGENT}"]
        auth = self._authorization(method, uri)
        if auth:
            lines.append(f"Authorization: {auth}")
        if self.session:
            lines.append(f"Session: {self.session}")
        lines.extend(headers)
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def _read_reply(self) -> tuple[int, dict[str, list[str]], bytes]:
        while True:
            if not self.buf:
                self._fill()
            elif self.buf[:1] == b"$":
                self._pop_frame()  # media before the reply (a server that starts at PLAY)
            else:
                start, headers, body = self._read_message()
                match = re.match(r"RTSP/\d\.\d (\d{3})", start)
                if match:
                    return int(match.group(1)), headers, body
                if not REQUEST_START.match(start.encode("latin-1")):
                    raise RtspError("bad_reply", "the camera's answer is not RTSP")
                # The server's own request (GET_PARAMETER keep-alive): not our answer.

    def _read_message(self) -> tuple[str, dict[str, list[str]], bytes]:
        """The RTSP message at the head of the buffer (a reply, or the server's own request):
        start line, headers by lower-case name, body. Anything else is a bad reply."""
        while True:
            if self.buf and not (self.buf.startswith(b"RTSP/") or REQUEST_START.match(self.buf)
                                 or MESSAGE_PREFIX.match(self.buf)):  # a prefix: cut by a read
                raise RtspError("bad_reply", "the camera sent something that is not RTSP")
            end, blank = _header_end(self.buf)
            if end >= 0:
                break
            if len(self.buf) > MAX_HEADER_BYTES:
                raise RtspError("bad_reply", "an RTSP message without an end")
            self._fill()
        start, *lines = bytes(self.buf[:end]).decode("latin-1").replace("\r\n", "\n").split("\n")
        headers: dict[str, list[str]] = {}
        for line in lines:
            name, sep, value = line.partition(":")
            if sep:
                headers.setdefault(name.strip().lower(), []).append(value.strip())
        try:
            length = int(headers.get("content-length", ["0"])[0])
        except ValueError:
            raise RtspError("bad_reply", "a Content-Length that is not a number") from None
        if not 0 <= length <= MAX_BODY_BYTES:
            raise RtspError("bad_reply", f"a {length}-byte message")
        begin = end + blank
        while len(self.buf) < begin + length:
            self._fill()
        body = bytes(self.buf[begin:begin + length])
        del self.buf[:begin + length]
        return start, headers, body

    def _pop_frame(self) -> tuple[int, memoryview]:
        """The interleaved frame (`$`, channel, length, payload) at the head of the buffer."""
        while len(self.buf) < 4:
            self._fill()
        size = struct.unpack_from(">H", self.buf, 2)[0]
        while len(self.buf) < 4 + size:
            self._fill()
        channel, payload = self.buf[1], memoryview(self.buf[4:4 + size])  # a copy
        del self.buf[:4 + size]
        return channel, payload

    def call(self, method: str, uri: str,
             *headers: str) -> tuple[dict[str, list[str]], bytes]:
        """Send one request, answer the authentication challenge, return the 200's reply."""
        answered = False
        for _ in range(3):
            self.cseq += 1
            self.sock.settimeout(self._left())
            try:
                self.sock.sendall(self._request(method, uri, headers))
            except TimeoutError:
                raise RtspError("timeout", "the camera does not take our request") from None
            except OSError as exc:
                raise RtspError("no_stream", f"{type(exc).__name__}: {exc.strerror}") from None
            code, reply, body = self._read_reply()
            if code == 401 and self.username:
                offers = reply.get("www-authenticate", [])
                # Answered already: only a digest nonce that went stale earns another try.
                if answered and not any(re.search(r"(?i)stale\s*=\s*\"?true", o) for o in offers):
                    break
                if not self._take_challenge(offers):
                    break
                answered = True
                continue
            if code in (301, 302, 303, 305, 307):
                raise Unsupported(f"redirect {code}")
            if code == 461:
                raise Unsupported("the camera refuses RTP over the RTSP connection")
            if code != 200:
                raise RtspError(_status_reason(code), f"{method}: the camera answered {code}")
            return reply, body
        raise RtspError("auth_failed", f"{method}: the camera answered 401")

    def _take_challenge(self, offers: list[str]) -> bool:
        digest = [o for o in offers if o.lower().startswith("digest")]
        if digest:
            self.challenge = {k.lower(): v1 or v2 for k, v1, v2 in
                              re.findall(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]+))', digest[0][6:])}
            return True
        if any(o.lower().startswith("basic") for o in offers):
            self.basic = True
            return True
        return False

    def read_interleaved(self) -> tuple[int, memoryview]:
        """The next interleaved packet: (channel, payload); RTSP messages in between skipped."""
        while True:
            if not self.buf:
                self._fill()
            elif self.buf[:1] == b"$":
                return self._pop_frame()
            else:
                self._read_message()  # a late reply, or the server's GET_PARAMETER keep-alive


def _resolve(control: str, base: str) -> str:
    """An SDP control attribute as a URL, joined to the base as FFmpeg and cameras do it."""
    if control == "*":
        return base
    if re.match(r"(?i)rtsp://", control):
        return control
    return base + control if base.endswith("/") else f"{base}/{control}"


def parse_sdp(sdp: str, base: str) -> _Track:
    """The first video track of an SDP: codec, control URL, payload type, parameter sets."""
    session, *media = re.split(r"\nm=", "\n" + sdp.replace("\r\n", "\n"))
    aggregate = re.search(r"^a=control:\s*(\S+)", session, re.M)
    play = _resolve(aggregate.group(1), base) if aggregate else base
    for block in media:
        if not block.startswith("video"):
            continue
        fields = block.split("\n", 1)[0].split()
        if len(fields) < 4 or not fields[3].isdigit():
            raise RtspError("bad_reply", "an SDP video line without a payload type")
        pt = int(fields[3])
        rtpmap = re.search(rf"^a=rtpmap:{pt}\s+([\w.-]+)/", block, re.M)
        name = rtpmap.group(1).upper() if rtpmap else ""
        if name not in CODECS:
            raise Unsupported(f"codec {name or 'payload type ' + str(pt)}")
        control = re.search(r"^a=control:\s*(\S+)", block, re.M)
        url = _resolve(control.group(1) if control else "*", base)
        track = _Track(CODECS[name], url, pt, play)
        fmtp = re.search(rf"^a=fmtp:{pt}\s+(.*)$", block, re.M)
        if fmtp:
            opts = {k.strip().lower(): v for k, _, v in
                    (kv.strip().partition("=") for kv in fmtp.group(1).split(";"))}
            names = (("sprop-parameter-sets",) if track.codec == "h264"
                     else ("sprop-vps", "sprop-sps", "sprop-pps"))
            if track.codec == "hevc" and opts.get("sprop-max-don-diff", "0").strip() != "0":
                raise Unsupported("H.265 with decoding order numbers")
            if track.codec == "h264" and opts.get("packetization-mode", "").strip() == "2":
                raise Unsupported("H.264 interleaved packetization (STAP-B, MTAP, FU-B)")
            for key in names:
                for item in opts.get(key, "").split(","):
                    if item.strip():
                        try:
                            param = base64.b64decode(item.strip() + "==")
                        except ValueError:
                            continue
                        if param:
                            track.params.append(param)
        rate = re.search(r"^a=framerate:\s*(\d+(?:\.\d+)?)\s*$", block, re.M)
        if rate:
            track.fps = float(rate.group(1)) or None
        return track
    raise RtspError("no_stream", "no video track in the camera's SDP")


def _nal_kind(codec: str, nal: bytes | memoryview) -> str:
    """'key' for a keyframe slice, 'param' for a parameter set, '' otherwise."""
    if codec == "h264":
        kind = nal[0] & 0x1F
        return "key" if kind == 5 else "param" if kind in (7, 8) else ""
    kind = (nal[0] >> 1) & 0x3F
    return "key" if 16 <= kind <= 21 else "param" if kind in (32, 33, 34) else ""


class _Depacketizer:
    """RTP payloads → NAL units (single, STAP-A/AP aggregates, FU-A/FU fragments)."""

    def __init__(self, codec: str) -> None:
        self.codec = codec
        self.fragment: bytearray | None = None
        self.lost = False  # a fragment of this unit came without its start: the unit is partial

    def push(self, payload: memoryview, out: list[bytes]) -> None:
        if len(payload) < 2:
            return
        if self.codec == "h264":
            kind = payload[0] & 0x1F
            if kind == 28:  # FU-A
                fu = payload[1]
                self._fragment(fu, bytes([(payload[0] & 0xE0) | (fu & 0x1F)]), payload[2:], out)
            elif kind == 24:  # STAP-A
                self._aggregate(payload, 1, out)
            elif 1 <= kind <= 23:
                out.append(bytes(payload))
            return
        kind = (payload[0] >> 1) & 0x3F
        if kind == 49:  # FU
            if len(payload) < 3:
                return
            fu = payload[2]
            head = bytes([(payload[0] & 0x81) | ((fu & 0x3F) << 1), payload[1]])
            self._fragment(fu, head, payload[3:], out)
        elif kind == 48:  # AP
            self._aggregate(payload, 2, out)
        elif kind < 48:
            out.append(bytes(payload))

    def _fragment(self, fu: int, head: bytes, body: memoryview, out: list[bytes]) -> None:
        """One FU-A / FU fragment; `head` is the NAL header it rebuilds if it starts the NAL."""
        if fu & 0x80:
            self.fragment = bytearray(head)
        elif self.fragment is None:
            self.lost = True  # its start was missed (joined mid-frame): the unit is partial
            return
        self.fragment += body
        if fu & 0x40:
            out.append(bytes(self.fragment))
            self.fragment = None

    @staticmethod
    def _aggregate(payload: memoryview, offset: int, out: list[bytes]) -> None:
        out.extend(bytes(payload[start:end]) for start, end in _aggregated(payload, offset))


def _aggregated(payload: memoryview, offset: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each NAL unit in a STAP-A / AP payload whose entries begin at `offset`;
    an empty or overlong entry ends it."""
    while offset + 2 <= len(payload):
        size = struct.unpack_from(">H", payload, offset)[0]
        offset += 2
        if size == 0 or offset + size > len(payload):
            return
        yield offset, offset + size
        offset += size


def _rtp_payload(packet: memoryview) -> tuple[int, int, bool, memoryview] | None:
    """(payload type, timestamp, marker, payload) of an RTP packet, None if it is not one."""
    if len(packet) < 12 or packet[0] >> 6 != 2:
        return None
    offset = 12 + 4 * (packet[0] & 0x0F)
    if packet[0] & 0x10:  # header extension
        if len(packet) < offset + 4:
            return None
        offset += 4 + 4 * struct.unpack_from(">H", packet, offset + 2)[0]
    end = len(packet)
    if packet[0] & 0x20:  # padding
        end -= packet[-1]
    if offset > end:
        return None
    return packet[1] & 0x7F, struct.unpack_from(">I", packet, 4)[0], bool(packet[1] & 0x80), \
        packet[offset:end]


def _annex_b(nals: list[bytes]) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + n for n in nals)


def fetch_keyframe(url: str, deadline: float, max_units: int, whole: bool = True) -> Keyframe:
    """Open `url` (credentials in it are used, never shown), return its first keyframe unit.

    With `whole=False` (a stream only parsed, not decoded) `data` ends inside the unit's first
    slice: each unit is depacketized only until its first slice begins and the rest is counted
    from the RTP headers, not copied (`keyframe_bytes` is still the whole unit's). A fragment the
    camera drops after the first slice goes unnoticed there; the unit is not decoded.
    """
    conn = _Connection(url, deadline)
    try:
        reply, body = conn.call("DESCRIBE", conn.url, "Accept: application/sdp")
        base = (reply.get("content-base") or reply.get("content-location") or [conn.url])[0]
        track = parse_sdp(body.decode("utf-8", "replace"), base)
        reply, _ = conn.call("SETUP", track.control,
                             "Transport: RTP/AVP/TCP;unicast;interleaved=0-1")
        # The session first: a camera that will not interleave still gets its TEARDOWN.
        conn.session = (reply.get("session") or [""])[0].split(";")[0].strip()
        conn.play_url = track.play
        transport = (reply.get("transport") or [""])[0]
        match = re.search(r"(?i)interleaved=(\d+)", transport)
        if not match:
            raise Unsupported("the camera did not agree to RTP over the RTSP connection")
        channel = int(match.group(1))
        conn.call("PLAY", track.play, "Range: npt=0.000-")
        return _receive(conn, track, channel, max_units, whole)
    finally:
        conn.close()


def _receive(conn: _Connection, track: _Track, channel: int, max_units: int,
             whole: bool) -> Keyframe:
    depack = _Depacketizer(track.codec)
    params: dict[int, list[bytes]] = {}  # in-band parameter sets seen, per NAL type
    unit: list[bytes] = []
    unit_bytes = 0
    skimmed: int | None = None  # `whole=False`: the unit's Annex B bytes, from its first slice
    stamp: int | None = None
    units = 0

    def end_unit() -> Keyframe | None:
        """The unit is complete (marker, or the next timestamp): the keyframe, or start anew."""
        nonlocal unit, unit_bytes, skimmed, units
        units += 1
        done = _finish(track, unit, params, units, depack.lost, skimmed)
        unit, unit_bytes, skimmed = [], 0, None
        depack.fragment, depack.lost = None, False
        return done

    while True:
        ch, packet = conn.read_interleaved()
        if ch != channel:
            continue  # RTCP
        rtp = _rtp_payload(packet)
        if rtp is None or rtp[0] != track.payload_type:
            continue
        _, ts, marker, payload = rtp
        if (stamp is not None and ts != stamp and (unit or depack.lost or skimmed is not None)
                and (done := end_unit())):
            return done
        stamp = ts
        if skimmed is not None:
            skimmed += _annex_b_size(track.codec, payload)
            if skimmed > MAX_UNIT_BYTES:
                raise RtspError("bad_reply", "a video frame of over 16 MB")
        else:
            before = len(unit)
            depack.push(payload, unit)
            unit_bytes += sum(len(n) + NAL_OVERHEAD for n in unit[before:])
            pending = len(depack.fragment) if depack.fragment is not None else 0
            if unit_bytes + pending > MAX_UNIT_BYTES or len(unit) > MAX_NALS_PER_UNIT:
                # A frame, or a fragment, that never ends; or a flood of tiny NAL units.
                raise RtspError("bad_reply", "a video frame of over 16 MB")
            if not whole and _slice_begun(track.codec, unit[before:], depack.fragment):
                # The parameter sets and SEIs come before the first slice: all the parser and
                # _finish look at. The rest of the unit is counted, not kept.
                if depack.fragment is not None:
                    unit.append(bytes(depack.fragment))
                    depack.fragment = None
                skimmed = sum(4 + len(n) for n in unit)
        if marker and (unit or depack.lost or skimmed is not None):
            if done := end_unit():
                return done
            stamp = None
        if units >= max_units:
            raise RtspError("timeout", f"no keyframe after {units} frames")


def _slice_begun(codec: str, nals: list[bytes], fragment: bytearray | None) -> bool:
    """Whether a slice NAL is among `nals` or is the fragment being reassembled."""
    for nal in (*nals, fragment) if fragment is not None else nals:
        kind = nal[0] & 0x1F if codec == "h264" else (nal[0] >> 1) & 0x3F
        if (1 <= kind <= 5) if codec == "h264" else kind < 32:
            return True
    return False


def _annex_b_size(codec: str, payload: memoryview) -> int:
    """The bytes _Depacketizer.push adds to the unit for this payload, in Annex B (start codes
    included), counted without copying it."""
    if len(payload) < 2:
        return 0
    if codec == "h264":
        kind = payload[0] & 0x1F
        if kind == 28:  # FU-A: its start fragment brings the start code and the NAL header
            return len(payload) - 2 + (5 if payload[1] & 0x80 else 0)
        if kind == 24:
            return sum(4 + end - start for start, end in _aggregated(payload, 1))
        return 4 + len(payload) if 1 <= kind <= 23 else 0
    kind = (payload[0] >> 1) & 0x3F
    if kind == 49:
        return len(payload) - 3 + (6 if payload[2] & 0x80 else 0) if len(payload) >= 3 else 0
    if kind == 48:
        return sum(4 + end - start for start, end in _aggregated(payload, 2))
    return 4 + len(payload) if kind < 48 else 0


def _starts_picture(codec: str, unit: list[bytes]) -> bool:
    """Whether the unit's first slice is its picture's first (a stream joined mid-frame is not)."""
    for nal in unit:
        if codec == "h264" and 1 <= nal[0] & 0x1F <= 5:
            return len(nal) > 1 and bool(nal[1] & 0x80)  # first_mb_in_slice == 0
        if codec == "hevc" and (nal[0] >> 1) & 0x3F < 32:
            return len(nal) > 2 and bool(nal[2] & 0x80)  # first_slice_segment_in_pic_flag
    return False


def _recovery_point(nal: bytes) -> bool:
    """An H.264 SEI carrying a recovery point: open-GOP and intra-refresh encoders mark their
    random access points with it instead of IDR frames (FFmpeg counts them as keyframes)."""
    rbsp = nal[1:].replace(b"\x00\x00\x03", b"\x00\x00")
    i = 0
    while i < len(rbsp) and rbsp[i] != 0x80:  # 0x80: rbsp trailing bits
        kind = size = 0
        while i < len(rbsp) and rbsp[i] == 0xFF:
            kind, i = kind + 255, i + 1
        if i >= len(rbsp):
            return False
        kind, i = kind + rbsp[i], i + 1
        while i < len(rbsp) and rbsp[i] == 0xFF:
            size, i = size + 255, i + 1
        if i >= len(rbsp):
            return False
        size, i = size + rbsp[i], i + 1
        if kind == 6:
            return True
        i += size
    return False


def _is_key(codec: str, unit: list[bytes], kinds: list[str]) -> bool:
    if "key" in kinds:
        return True
    # H.264 without IDR: a recovery point SEI before an intra-coded picture.
    return codec == "h264" and any(n[0] & 0x1F == 6 and _recovery_point(n) for n in unit)


def _finish(track: _Track, unit: list[bytes], params: dict[int, list[bytes]],
            units: int, lost: bool, skimmed: int | None = None) -> Keyframe | None:
    """The keyframe if `unit` is a whole one; otherwise remember its parameter sets.
    `skimmed`: `unit` ends inside its first slice, and this is the whole unit's size."""
    codec = track.codec
    kinds = [_nal_kind(codec, n) for n in unit]
    if lost or not _is_key(codec, unit, kinds) or not _starts_picture(codec, unit):
        for nal, kind in zip(unit, kinds, strict=True):
            if kind == "param":
                seen = params.setdefault(_param_id(codec, nal), [])
                if nal not in seen:
                    seen.append(nal)
                    del seen[:-MAX_PARAMS_PER_KIND]
        return None
    sent = _annex_b(unit)
    have = {_param_id(codec, n) for n, k in zip(unit, kinds, strict=True) if k == "param"}
    # Parameter sets the unit lacks: those sent in-band, else the SDP's.
    missing: list[bytes] = []
    for pid in sorted({_param_id(codec, p) for p in track.params} | set(params)):
        if pid in have:
            continue
        if pid in params:
            missing.extend(params[pid])
        else:
            missing.extend(p for p in track.params if _param_id(codec, p) == pid)
    given = missing + [n for n, k in zip(unit, kinds, strict=True) if k == "param"]
    return Keyframe(codec, _annex_b(missing) + sent, len(sent) if skimmed is None else skimmed,
                    units, track.fps, _annex_b(given), "key" not in kinds)


def _param_id(codec: str, nal: bytes) -> int:
    return nal[0] & 0x1F if codec == "h264" else (nal[0] >> 1) & 0x3F
