"""A frame-grab worker process: reads one keyframe of an RTSP stream and returns it decoded.

H.264/H.265 over RTSP/TCP are read by probes.rtsp_client and decoded by a bare PyAV codec
context; other codecs and transports are opened with FFmpeg's demuxer (PyAV).

Decoders hang on a camera that stalls mid-stream and their own timeouts are unreliable
(FIELD-NOTES), so decoding happens here, in a separate long-lived process that the parent
(probes/rtsp.py) kills and replaces when its deadline passes. The event loop never waits on
a decoder, and a crashing decoder takes only this process down.

Protocol on stdin/stdout (binary): the worker writes `ready\\n` once imported; then for each
request line (JSON: url, timeout, width, jpeg, decode, structure_std, and optionally picture:
{url, timeout}, see grab_pair) it answers one JSON header line followed by
`grey_bytes` bytes of grey frame and `jpeg_bytes` bytes of JPEG. The grey frame is
probes.image's small one (`grey_shape`, uint8; image.SMALL_WIDTH wide), and the header carries
what image.measure takes of the frame at `width` (MEASURED).
EOF on stdin ends the worker. Nothing secret is ever written: URLs carry credentials, so
messages use FFmpeg's error text or the client's own fixed texts, never the URL.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import threading
import time
from collections import OrderedDict
from typing import Any, BinaryIO, cast

import av
import av.error
import cv2
import numpy as np
from av.video.codeccontext import VideoCodecContext

from probes import image, rtsp_client

# Bytes of video to read while waiting for the first keyframe before giving up (a camera that
# sends only P-frames, or garbage that parses as video, must not keep the worker forever).
MAX_PACKETS = 600
JPEG_QUALITY = 80
# Enough of a keyframe unit for the parser to read its parameter sets and first slice header.
PARSE_BYTES = 4096
# Streams probes.rtsp_client does not handle (MJPEG, UDP-only servers), remembered per worker.
MAX_DEMUX_ONLY = 1024
_demux_only: set[str] = set()
# Streams whose random-access points do not decode on their own, remembered the same way:
# intra refresh puts the recovery point SEI on a P-picture, whole only after the frames that
# follow (1-3 refresh cycles with x264). FFmpeg's demuxer reads them, every frame decoded
# until the decoder gives a whole picture (it gives none before).
_every_frame: set[str] = set()
PR_SET_PDEATHSIG = 1
# Beyond its own time limit, how long a picture stream may take to give up before it counts
# as stalled (grab_pair): FFmpeg's interrupt callback answers within a few hundred ms.
PICTURE_GRACE = 0.5
# The header's facts of the frame sent (image.measure's, besides the frame itself).
MEASURED = ("grey_shape", "sharpness", "measured_size", "brightness", "contrast", "structure")
# Codec contexts kept between grabs, keyed by codec, the exact parameter sets the unit gives
# and use (decode, or parse only): a new one costs 0.3 ms back to back and 1.3 ms after
# idling (its tables allocated and touched afresh), and one that has only ever been given
# byte-identical parameter sets, flushed, answers as a new one would. Never shared beyond
# that key: a parser given another stream's parameter sets kept reporting the first stream's
# size, and a unit without parameter sets would be decoded with another camera's (it gets a
# new context). Bounded: a decoder holds its frame pool (≈ 3 MB per 1080p frame).
MAX_DECODERS = 6
_decoders: OrderedDict[tuple[str, bytes, bool], VideoCodecContext] = OrderedDict()
_decoders_lock = threading.Lock()  # grab_pair decodes in a second thread


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when the parent dies, so no worker is ever orphaned."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    # The parent may have died before prctl: then we were re-parented. Compare with the pid it
    # gave us, not with 1: in a container the daemon itself is PID 1.
    expected = os.environ.get("CAMNET_GRAB_PARENT", "")
    if expected.isdigit() and os.getppid() != int(expected):
        os._exit(0)


def classify(exc: BaseException) -> str:
    """The reason for a failed grab, in the RTSP check's vocabulary."""
    if isinstance(exc, av.error.HTTPUnauthorizedError | av.error.HTTPForbiddenError):
        return "auth_failed"
    if isinstance(exc, av.error.HTTPNotFoundError):
        return "no_stream"
    if isinstance(exc, ConnectionRefusedError | av.error.ConnectionRefusedError):
        return "unreachable"
    if isinstance(exc, OSError) and exc.errno in (101, 113, 110):  # net/host unreachable, timeout
        return "unreachable" if exc.errno != 110 else "timeout"
    if isinstance(exc, av.error.ExitError | TimeoutError):
        return "timeout"
    if isinstance(exc, av.error.HTTPClientError | av.error.HTTPOtherClientError):
        # Cameras answer 400/403/405/454 to a path they do not serve.
        return "no_stream"
    if isinstance(exc, av.error.InvalidDataError | av.error.PatchWelcomeError):
        return "bad_reply"
    if isinstance(exc, EOFError):
        return "no_stream"
    return "bad_reply"


def _reason(exc: BaseException, started: float, timeout: float) -> str:
    # FFmpeg's interrupt callback surfaces as whatever the interrupted call returns (often
    # InvalidDataError): an error at the time limit is the time limit.
    if time.monotonic() - started >= timeout * 0.95:
        return "timeout"
    return classify(exc)


def describe(exc: BaseException) -> str:
    """A message without the URL (FFmpeg's exceptions embed the file name, credentials included)."""
    if isinstance(exc, av.error.FFmpegError):
        return f"{type(exc).__name__}: {exc.strerror}"
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}: {exc.strerror or 'error'}"
    return type(exc).__name__


def _luma(frame: av.VideoFrame) -> np.ndarray:
    """The Y plane as a 2-D array (no colour conversion: ≈ 0.1 ms against 3–4 ms at 1080p)."""
    if frame.format.name in ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "nv12"):
        plane = frame.planes[0]
        data = np.frombuffer(memoryview(plane), np.uint8).reshape(plane.height, plane.line_size)
        return data[:, : plane.width]
    return frame.to_ndarray(format="gray")


def open_stream(url: str, transport: str, timeout: float) -> Any:
    """Open an RTSP stream the fast way, its first video stream set to decode keyframes only."""
    options = {
        "rtsp_transport": transport,
        "allowed_media_types": "video",  # no SETUP of a camera's audio track: never read
        # Stream probing adds ≈ 2–2.5 s to every open; the SDP's sprop-parameter-sets already
        # give codec and size, so probe nothing.
        "analyzeduration": "0",
        "probesize": "32",
        "timeout": str(int(timeout * 1_000_000)),  # socket I/O, µs (not reliable on a stall)
    }
    # PyAV's own timeout drives FFmpeg's interrupt callback: enough for a refused or silent
    # open; a stall that defeats it is the parent's business (it kills this process).
    # skip_frame=all while probing: avformat_find_stream_info would otherwise decode the
    # first keyframe just to learn its pixel format, and we decode it again (halves the
    # CPU of a 1080p grab); the SDP's SPS already gives codec and size.
    container = av.open(url, options=options, timeout=(timeout, timeout),
                        stream_options=[{"skip_frame": "all", "threads": "1"}])  # type: ignore[list-item]
    try:
        for stream in container.streams.video[:1]:
            stream.codec_context.skip_frame = "NONKEY"  # keyframes only: ≈ 3× less CPU than the GOP
            stream.codec_context.thread_count = 1  # one frame: threads only cost start-up time
    except BaseException:
        container.close()
        raise
    return container


def grab(request: dict[str, Any]) -> tuple[dict[str, Any], bytes, bytes]:
    """Open the stream, decode the first keyframe, return (header, grey bytes, jpeg bytes).

    With `decode: false` the keyframe is only waited for, not decoded: the check of a main
    stream whose picture is judged on a smaller profile (its codec, size and rate come from
    its parameter sets, its keyframe's arrival shows the encoder runs).
    H.264/H.265 over RTSP/TCP go through probes.rtsp_client; anything else it does not handle
    through FFmpeg's demuxer.
    """
    started = time.monotonic()
    timeout = float(request.get("timeout", 10.0))
    url = request["url"]
    decode = bool(request.get("decode", True))
    if decode and url in _every_frame:
        return _grab_demuxed(request, started, timeout, every_frame=True)
    if request.get("transport", "tcp") == "tcp" and url not in _demux_only:
        try:
            key = rtsp_client.fetch_keyframe(url, started + timeout, MAX_PACKETS, whole=decode)
        except rtsp_client.Unsupported:
            # Asked once: the next grabs of this stream go straight to FFmpeg (one DESCRIBE).
            _remember(_demux_only, url)
        except rtsp_client.RtspError as exc:
            return {"ok": False, "reason": exc.reason, "message": str(exc)}, b"", b""
        except Exception as exc:  # a reply this client chokes on is a bad reply, said so
            return {"ok": False, "reason": "bad_reply", "message": describe(exc)}, b"", b""
        else:
            try:
                answer = _grab_unit(request, key, started)
            except Exception as exc:  # a frame the resize or JPEG encoder refuses, say
                return {"ok": False, "reason": "bad_reply", "message": describe(exc)}, b"", b""
            if answer[0].get("ok") or not (decode and key.recovery):
                return answer
            _remember(_every_frame, url)  # intra refresh: its recovery point is a P-picture
            return _grab_demuxed(request, started, timeout, every_frame=True)
    return _grab_demuxed(request, started, timeout)


def _remember(streams: set[str], url: str) -> None:
    """Add a stream to a per-worker set, which never grows past MAX_DEMUX_ONLY."""
    if len(streams) >= MAX_DEMUX_ONLY:
        streams.clear()
    streams.add(url)


def _grab_unit(request: dict[str, Any], key: rtsp_client.Keyframe,
               started: float) -> tuple[dict[str, Any], bytes, bytes]:
    """Decode (or, with `decode: false`, only parse) a keyframe unit from the lean client."""
    header: dict[str, Any] = {"ok": False}
    decode = bool(request.get("decode", True))
    kept = (key.codec, key.params, decode) if key.params else None
    ctx = _take_decoder(kept) if kept else None
    if ctx is None:
        ctx = cast(VideoCodecContext, av.CodecContext.create(key.codec, "r"))
        ctx.thread_count = 1  # one frame: threads only cost start-up time
    try:
        if not decode:
            # The parser reads the parameter sets and the first slice header: size, rate,
            # profile, without decoding a pixel.
            ctx.parse(key.data[:PARSE_BYTES])
            ctx.parse(None)
            frame = None
        else:
            frames = ctx.decode(av.Packet(key.data)) or ctx.decode(None)
            if not frames:
                header.update(reason="bad_reply", message="the keyframe did not decode")
                return header, b"", b""
            frame = frames[0]
    except Exception as exc:
        header.update(reason="bad_reply", message=describe(exc))
        return header, b"", b""
    header["ttff_seconds"] = time.monotonic() - started
    rate = key.fps or ctx.framerate  # as FFmpeg's demuxer: the SDP's a=framerate first
    answer = _answer(request, header, frame, ctx, float(rate) if rate else None,
                     key.units, key.keyframe_bytes)
    if kept:
        _keep_decoder(kept, ctx)  # one that answered; an erring one is dropped
    return answer


def _take_decoder(key: tuple[str, bytes, bool]) -> VideoCodecContext | None:
    """A kept context for this key, or None. A decoder is flushed (the last grab may have
    drained it); a parser-only context was never opened and ended with parse(None)."""
    with _decoders_lock:
        ctx = _decoders.pop(key, None)  # taken out: a second thread cannot share it
    if ctx is not None:
        ctx.flush_buffers()
    return ctx


def _keep_decoder(key: tuple[str, bytes, bool], ctx: VideoCodecContext) -> None:
    """Keep a context for the next grab with the same key (least recently used out)."""
    with _decoders_lock:
        _decoders[key] = ctx
        while len(_decoders) > MAX_DECODERS:
            _decoders.popitem(last=False)


def _grab_demuxed(request: dict[str, Any], started: float, timeout: float,
                  every_frame: bool = False) -> tuple[dict[str, Any], bytes, bytes]:
    """The same through FFmpeg's demuxer: other codecs and transports, and (`every_frame`)
    streams whose picture is whole only after decoding the frames that follow a recovery
    point (the decoder gives none before)."""
    decode = bool(request.get("decode", True))
    header: dict[str, Any] = {"ok": False}
    try:
        # What the lean client spent first (DESCRIBE, SETUP) is gone: FFmpeg gets the rest.
        left = max(0.05, started + timeout - time.monotonic())
        container = open_stream(request["url"], request.get("transport", "tcp"), left)
    except Exception as exc:
        header.update(reason=_reason(exc, started, timeout), message=describe(exc), stage="open")
        return header, b"", b""
    try:
        header["open_seconds"] = time.monotonic() - started
        if not container.streams.video:
            header.update(reason="no_stream", message="no video stream in the answer")
            return header, b"", b""
        stream = container.streams.video[0]
        ctx = stream.codec_context
        if not decode:
            ctx.skip_frame = "ALL"
        elif every_frame:
            ctx.skip_frame = "DEFAULT"
            header["every_frame"] = True
        frame = None
        packets = 0
        keyframe_bytes = 0
        for packet in container.demux(stream):
            packets += 1
            if time.monotonic() - started > timeout or packets > MAX_PACKETS:
                header.update(reason="timeout", message=f"no keyframe after {packets} packets")
                return header, b"", b""
            if not decode:
                if packet.is_keyframe and packet.size:
                    keyframe_bytes = packet.size
                    break
                continue
            for decoded in packet.decode():
                frame = decoded
                keyframe_bytes = packet.size
                break
            if frame is not None:
                break
        if frame is None and not keyframe_bytes:
            header.update(reason="no_stream", message="the stream ended before a keyframe")
            return header, b"", b""
        header["ttff_seconds"] = time.monotonic() - started
        rate = stream.average_rate or stream.guessed_rate or ctx.framerate
        return _answer(request, header, frame, ctx, float(rate) if rate else None, packets,
                       keyframe_bytes)
    except Exception as exc:
        header.update(reason=_reason(exc, started, timeout), message=describe(exc), stage="read")
        return header, b"", b""
    finally:
        container.close()


def _answer(request: dict[str, Any], header: dict[str, Any], frame: av.VideoFrame | None,
            ctx: Any, fps: float | None, packets: int,
            keyframe_bytes: int) -> tuple[dict[str, Any], bytes, bytes]:
    """The reply for a keyframe: its facts, and, when decoded, the grey frame and a JPEG."""
    header.update(ok=True, codec=ctx.name, profile=ctx.profile, fps=fps, packets=packets,
                  keyframe_bytes=keyframe_bytes)
    if frame is None:  # decode: false, a keyframe arrived
        header.update(width=ctx.width, height=ctx.height, grey_shape=[0, 0])
        return header, b"", b""
    luma = _luma(frame)
    width = int(request.get("width", 640))
    out_h = max(1, round(frame.height * width / frame.width))
    grey = cv2.resize(luma, (width, out_h), interpolation=cv2.INTER_AREA)
    measured = image.measure(grey, f"{frame.width}x{frame.height}", float(
        request.get("structure_std", image.DEFAULT_STRUCTURE_STD)))
    jpeg = b""
    if request.get("jpeg", True):
        small = frame.reformat(width=width, height=out_h, format="bgr24").to_ndarray()
        ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        jpeg = buf.tobytes() if ok else b""
    header.update(width=frame.width, height=frame.height, pixel_format=frame.format.name,
                  grey_shape=list(measured.small.shape), sharpness=measured.sharpness,
                  measured_size=measured.size, brightness=measured.brightness,
                  contrast=measured.contrast, structure=measured.structure)
    return header, np.ascontiguousarray(measured.small).tobytes(), jpeg


def grab_pair(request: dict[str, Any]) -> tuple[dict[str, Any], bytes, bytes]:
    """The main stream's keyframe waited for while the picture stream's is decoded in a thread
    (`picture`: url, timeout): one request, one process woken, for a camera whose picture is
    judged on a smaller stream (probes.rtsp._grab). The header is the main stream's, with the
    picture stream's under `picture` and, when it decoded, its frame's shape and measurements
    at the top level beside the frame itself.

    A picture stream whose decoder stalls past its own time limit (FFmpeg's demuxer can) does
    not hold the main stream's answer: it is reported as a timeout and the header says
    `retire`, so the parent replaces this worker (the stalled thread cannot be stopped).
    """
    started = time.monotonic()
    picture = request["picture"]
    box: dict[str, tuple[dict[str, Any], bytes, bytes]] = {}

    def read_picture() -> None:
        box["picture"] = grab({**request, "url": picture["url"], "timeout": picture["timeout"]})

    reader = threading.Thread(target=read_picture, name="picture-stream", daemon=True)
    reader.start()
    header = grab({**request, "decode": False, "jpeg": False})[0]
    # Never past the main stream's own limit: the parent kills the worker soon after it, and
    # the main stream's keyframe would be lost with the stalled picture.
    wait = min(float(picture["timeout"]) + PICTURE_GRACE, float(request.get("timeout", 10.0)))
    reader.join(max(0.0, started + wait - time.monotonic()))
    if "picture" not in box:
        header["picture"] = {"ok": False, "reason": "timeout",
                             "message": "the picture stream's decoder stalled"}
        header["retire"] = True
        return header, b"", b""
    pic, grey, jpeg = box["picture"]
    header["picture"] = pic
    if not pic.get("ok"):
        return header, b"", b""
    header.update({k: pic[k] for k in MEASURED})
    return header, grey, jpeg


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def serve(stdin: BinaryIO, stdout: BinaryIO) -> None:
    """Answer grab requests until stdin closes."""
    stdout.write(b"ready\n")
    stdout.flush()
    for line in stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        header, grey, jpeg = grab_pair(request) if request.get("picture") else grab(request)
        header["grey_bytes"] = len(grey)
        header["jpeg_bytes"] = len(jpeg)
        header["rss_bytes"] = _rss_bytes()
        header["cpu_seconds"] = time.process_time()
        stdout.write(json.dumps(header).encode() + b"\n" + grey + jpeg)
        stdout.flush()


def main() -> int:
    """Entry point: `python -m probes.grab_worker` (started by probes.rtsp, not by hand)."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the daemon, which stops us
    # No log callback at all (PyAV's default): FFmpeg's log lines may quote the URL, and a
    # Python callback, even at PANIC, takes the GIL for every line FFmpeg considers logging
    # (≈ 0.5–1 ms of a 360p grab's 7 ms).
    av.logging.set_level(None)
    cv2.setNumThreads(1)
    serve(sys.stdin.buffer, sys.stdout.buffer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
