"""RTSP check of a camera: grab one decoded keyframe in a killable worker and judge the picture.

Decoders hang on a camera that stalls mid-stream, and their own timeouts are unreliable
(FIELD-NOTES), so decoding runs in long-lived worker processes (probes/grab_worker.py). The
event loop only waits on a pipe under `asyncio.timeout_at(deadline)`; when the deadline passes
the worker is killed, reaped in the background and replaced on the next grab.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import numpy as np
from pydantic import Field

from probes import image, onvif
from probes.base import (
    CheckResult,
    CheckSettings,
    Duration,
    MetricDef,
    Target,
    redact_url,
    strip_userinfo,
)
from probes.image import ImageSettings

__all__ = ["GrabError", "GrabPool", "ImageSettings", "RtspSettings", "probe_rtsp", "warm_up"]

METRICS: dict[str, MetricDef] = {
    "camnet_camera_time_to_first_frame_seconds": MetricDef(
        "gauge", "Seconds from opening the stream to the first decoded keyframe"
    ),
    "camnet_camera_frame_width_pixels": MetricDef("gauge", "Width of the decoded frame"),
    "camnet_camera_frame_height_pixels": MetricDef("gauge", "Height of the decoded frame"),
    "camnet_camera_frames_per_second": MetricDef(
        "gauge", "Frame rate the stream announces (SDP/SPS)"
    ),
    "camnet_camera_brightness_ratio": MetricDef("gauge", "Mean luma of the frame, 0 (black) to 1"),
    "camnet_camera_contrast_ratio": MetricDef("gauge", "Standard deviation of luma, 0 to 1"),
    "camnet_camera_sharpness": MetricDef(
        "gauge", "Variance of the Laplacian of the grey frame resized to 640 px wide"
    ),
    "camnet_camera_structure_ratio": MetricDef(
        "gauge", "Share of 10x10 px blocks (at 320 px wide) with texture; ~0 for a covered lens"
    ),
    "camnet_camera_frame_changed_ratio": MetricDef(
        "gauge", "Share of blocks that changed since the previous grab; ~0 when frozen"
    ),
    "camnet_camera_scene_similarity": MetricDef(
        "gauge", "Similarity of the view to the reference learned while healthy, -1 to 1"
    ),
    "camnet_camera_last_frame_timestamp_seconds": MetricDef(
        "gauge", "Unix time of the last decodable frame"
    ),
    "camnet_camera_stream_info": MetricDef(
        "info", "Codec and profile of the camera's stream", ("codec", "profile")
    ),
}

# Problems the RTSP check has an opinion on (the verdict ORs them with the other checks').
RTSP_PROBLEMS = ("unreachable", "auth_failed", "no_stream", *image.IMAGE_PROBLEMS)
# How a failed grab shows up as a CONTRACT problem.
REASON_PROBLEM = {
    "unreachable": "unreachable",
    "auth_failed": "auth_failed",
    "timeout": "no_stream",
    "no_stream": "no_stream",
    "bad_reply": "no_stream",
    "decoder_crashed": "no_stream",
}

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WORKER_START_TIMEOUT = 30.0  # importing av, numpy and cv2 from a cold disk
WORKER_MARGIN = 0.25  # s the worker's own timeout leaves before the deadline, so it can answer
MAX_GRABS_PER_WORKER = 1000  # recycle a worker now and then: a slow leak in FFmpeg cannot grow
# A grab cannot finish in less (open ≈ 0.1 s plus the worker's margin): with less time left,
# starting one would only get a healthy worker killed at the deadline (≈ 1 s of CPU to replace).
MIN_GRAB_TIME = WORKER_MARGIN + 0.2
# Idle workers beyond the warm-up count (≈ 85–90 MB each) are stopped after this long unused:
# a burst of hanging cameras does not leave a dozen decoders resident for good.
IDLE_TTL = 120.0
FRAME_WIDTH = image.SHARPNESS_WIDTH
# bench/camera.py: with the main stream 4x the sub-stream's pixels (720p and 360p) the two
# sessions in one worker request cost 0.7-0.8 of decoding the 720p keyframe (session 7;
# 4-9 % less with two workers); at 9x (1080p) about 0.3. Below 4x a second session is not
# known to pay.
AUTO_MIN_RATIO = 4.0


class RtspSettings(CheckSettings):
    """Frame grabbing; the stream URI comes from the config or from ONVIF."""

    transport: str = Field(default="tcp", pattern="^(tcp|udp|http)$")
    concurrency: int = Field(default=8, ge=1, le=1024)
    save_frame: bool = Field(default=True, description="keep the last good frame as JPEG")
    # Encoding the JPEG costs about as much as the picture checks, and a kept frame a minute
    # old shows the view as well as a fresh one: renew it on this period, and at every check
    # while the camera or its picture is in trouble (the frame an alert shows must show that).
    frame_refresh: Duration = Field(
        default=60.0, description="how often the kept frame is renewed while all is well"
    )
    auth_backoff: Duration = Field(
        default=600.0, description="pause after a rejected login (shared with ONVIF)"
    )
    # Decoding a 1080p keyframe costs up to 40x a 360p one: judge the picture on the camera's
    # smallest profile (the sub-stream NVRs use for motion detection) and only wait for the
    # main stream's keyframe. That is a second RTSP session, which pays only when the main
    # stream is much larger (AUTO_MIN_RATIO).
    picture_stream: Literal["auto", "sub", "main"] = Field(
        default="auto",
        description="where the picture checks look: auto (the camera's picture_url, or ONVIF's "
        "smallest video profile when the main stream has AUTO_MIN_RATIO times its pixels), "
        "sub (that profile whenever it is smaller), main (always the main stream)",
    )
    picture_retry: Duration = Field(
        default=600.0, description="after the picture stream fails, use the main stream this long"
    )
    image: ImageSettings = ImageSettings()


class GrabError(Exception):
    """A grab that produced no frame; `reason` is one of REASON_PROBLEM's keys."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(slots=True)
class Grab:
    """One decoded keyframe: the worker's facts, its small grey frame (image.SMALL_WIDTH wide;
    image.measure's other results are in the header: grab_worker.MEASURED) and a JPEG of it."""

    header: dict[str, Any]
    grey: np.ndarray
    jpeg: bytes


class _Worker:
    """One grab worker process and its pipes."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.grabs = 0
        self.idle_since = 0.0

    async def request(self, req: dict[str, Any]) -> tuple[dict[str, Any], bytes, bytes]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(req).encode() + b"\n")
        await self.proc.stdin.drain()
        line = await self.proc.stdout.readline()
        if not line:
            raise EOFError("grab worker exited")
        header: dict[str, Any] = json.loads(line)
        grey = await self.proc.stdout.readexactly(int(header.get("grey_bytes", 0)))
        jpeg = await self.proc.stdout.readexactly(int(header.get("jpeg_bytes", 0)))
        self.grabs += 1
        return header, grey, jpeg


class GrabPool:
    """Up to `size` grab workers shared by every camera; bound to the event loop that made it."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self.loop = asyncio.get_running_loop()
        self._sem = asyncio.Semaphore(size)
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._reaping: set[asyncio.Task[None]] = set()
        self.keep = 0  # idle workers kept however long unused (the warm-up count)
        self._holding = 0  # grabs holding a slot
        self.spawned = 0
        self.killed = 0

    async def _spawn(self) -> _Worker:
        """A new worker, ready for requests, or GrabError (never a bare OSError/TimeoutError)."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
        )
        env.setdefault("MALLOC_ARENA_MAX", "2")  # FIELD-NOTES: keeps a long-lived decoder flat
        # The worker dies with us; it needs our pid to tell "orphaned" from "child of PID 1"
        # (in a container the daemon is PID 1).
        env["CAMNET_GRAB_PARENT"] = str(os.getpid())
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "probes.grab_worker",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL, env=env, start_new_session=True,
            )
        except OSError as e:  # EMFILE, EAGAIN, ENOMEM: camnet's trouble, said as such
            raise GrabError("decoder_crashed",
                            f"cannot start a grab worker: {e.strerror or type(e).__name__}") from None
        worker = _Worker(proc)
        self.spawned += 1
        try:
            assert proc.stdout is not None
            async with asyncio.timeout(WORKER_START_TIMEOUT):
                ready = await proc.stdout.readline()
            if ready != b"ready\n":
                raise GrabError("decoder_crashed", "grab worker failed to start")
        except TimeoutError:
            self._discard(worker)
            raise GrabError("decoder_crashed", "grab worker did not start within "
                            f"{WORKER_START_TIMEOUT:g} s") from None
        except BaseException:
            self._discard(worker)
            raise
        return worker

    def _take_idle(self) -> _Worker | None:
        """The most recently used live idle worker (a dead one, e.g. OOM-killed, is reaped)."""
        while self._idle:
            worker = self._idle.pop()
            if worker.proc.returncode is None:
                return worker
            self._discard(worker)
        return None

    def _put_idle(self, worker: _Worker) -> None:
        """Back to the idle list; stop workers beyond `keep` that went unused for IDLE_TTL."""
        now = self.loop.time()
        worker.idle_since = now
        self._idle.append(worker)
        while len(self._idle) > self.keep and now - self._idle[0].idle_since > IDLE_TTL:
            self._discard(self._idle.pop(0))

    def _discard(self, worker: _Worker) -> None:
        """Kill a worker (hung, crashed or worn out) and reap it without waiting here."""
        self._busy.discard(worker)
        if worker.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                worker.proc.kill()
            self.killed += 1
        task = self.loop.create_task(self._reap(worker))
        self._reaping.add(task)
        task.add_done_callback(self._reaping.discard)

    @staticmethod
    async def _reap(worker: _Worker) -> None:
        with contextlib.suppress(ProcessLookupError):
            await worker.proc.wait()
        if worker.proc.stdin is not None:
            worker.proc.stdin.close()

    async def start(self, workers: int) -> None:
        """Start `workers` workers now (the daemon's warm-up), so no check pays for it."""
        self.keep = max(self.keep, min(workers, self.size))
        want = max(0, min(workers, self.size) - len(self._idle))
        new = await asyncio.gather(*(self._spawn() for _ in range(want)), return_exceptions=True)
        for worker in new:  # the ones that started serve, whatever happened to the others
            if isinstance(worker, _Worker):
                self._put_idle(worker)
        for failure in new:
            if isinstance(failure, BaseException):
                raise failure

    async def grab(self, url: str, deadline: float, transport: str = "tcp",
                   jpeg: bool = True, worker_timeout: float | None = None,
                   decode: bool = True, picture: tuple[str, float] | None = None,
                   structure_std: float = image.DEFAULT_STRUCTURE_STD) -> Grab:
        """One keyframe from `url` before `deadline` (loop time), or GrabError; never hangs.

        `decode=False` only waits for the keyframe (no frame comes back). With `picture`
        (url, deadline) the same worker waits for `url`'s keyframe while it decodes the
        picture stream's: the frame is the picture stream's, the facts `url`'s, and the
        picture stream's own outcome is `header["picture"]` (no frame when it failed; a
        GrabError only when `url` fails). `worker_timeout` overrides the worker's own time
        limit (benchmarks use a long one to exercise the kill path: the deadline is enforced
        here whatever the worker does). `structure_std` is the camera's (image.measure).
        """
        sem = self._sem  # released to the very semaphore acquired, whatever resize() does
        try:
            async with asyncio.timeout_at(deadline):
                await sem.acquire()
        except TimeoutError:
            raise GrabError("timeout", f"all {self.size} grab workers busy until the deadline "
                            "(camnet is short of workers, see rtsp.concurrency)") from None
        self._holding += 1
        try:
            return await self._grab_with_slot(url, deadline, transport, jpeg, worker_timeout,
                                              decode, picture, structure_std)
        finally:
            self._holding -= 1
            sem.release()

    async def _grab_with_slot(self, url: str, deadline: float, transport: str, jpeg: bool,
                              worker_timeout: float | None, decode: bool,
                              picture: tuple[str, float] | None, structure_std: float) -> Grab:
        if deadline - self.loop.time() < MIN_GRAB_TIME:
            raise GrabError("timeout", "too little time left before the deadline for a grab")
        worker = self._take_idle()
        if worker is None:
            try:
                async with asyncio.timeout_at(deadline):
                    worker = await self._spawn()
            except TimeoutError:
                raise GrabError("timeout", "no grab worker could start before the deadline "
                                "(camnet's machine is overloaded)") from None
        self._busy.add(worker)
        remaining = deadline - self.loop.time() - WORKER_MARGIN
        limit = worker_timeout if worker_timeout is not None else max(0.2, remaining)
        req: dict[str, Any] = {"url": url, "timeout": limit, "transport": transport,
                               "width": FRAME_WIDTH, "jpeg": jpeg and decode, "decode": decode,
                               "structure_std": structure_std}
        if picture is not None:
            pic_url, pic_deadline = picture
            req["picture"] = {"url": pic_url, "timeout": max(
                0.2, min(limit, pic_deadline - self.loop.time() - WORKER_MARGIN))}
        try:
            async with asyncio.timeout_at(deadline):
                header, grey, jpeg_bytes = await worker.request(req)
        except TimeoutError:
            self._discard(worker)
            raise GrabError("timeout", "no frame before the deadline (decoder killed)") from None
        except (EOFError, asyncio.IncompleteReadError, ConnectionError, ValueError) as e:
            self._discard(worker)
            raise GrabError("decoder_crashed", f"grab worker died: {type(e).__name__}") from None
        except BaseException:  # cancelled: the worker may be mid-grab, so it cannot be reused
            self._discard(worker)
            raise
        self._busy.discard(worker)
        if worker.grabs >= MAX_GRABS_PER_WORKER or header.get("retire"):
            self._discard(worker)  # retire: a picture stream's decoder is stuck in it
        else:
            self._put_idle(worker)
        if not header.get("ok"):
            raise GrabError(str(header.get("reason", "bad_reply")), str(header.get("message", "")))
        h, w = header["grey_shape"]
        return Grab(header, np.frombuffer(grey, np.uint8).reshape(h, w), jpeg_bytes)

    def resize(self, size: int) -> None:
        """Set the cap on concurrent grabs; while grabs run (a config reload) it only grows."""
        if not self._holding:
            self._sem = asyncio.Semaphore(size)
            self.size = size
            return
        for _ in range(size - self.size):
            self._sem.release()
        self.size = max(self.size, size)

    def worker_pids(self) -> list[int]:
        """Process ids of the live workers (for benchmarks: their CPU time and memory)."""
        return [w.proc.pid for w in (*self._idle, *self._busy) if w.proc.returncode is None]

    async def close(self) -> None:
        """Stop every worker and wait until they are reaped."""
        for worker in [*self._idle, *self._busy]:
            self._discard(worker)
        self._idle.clear()
        if self._reaping:
            await asyncio.gather(*self._reaping, return_exceptions=True)


_POOL: GrabPool | None = None
_POOL_SIZE = 8


def get_pool() -> GrabPool:
    """The process-wide pool for the running loop (a new loop, e.g. in tests, gets a new one)."""
    global _POOL
    loop = asyncio.get_running_loop()
    if _POOL is None or _POOL.loop is not loop or loop.is_closed():
        if _POOL is not None:
            for worker in [*_POOL._idle, *_POOL._busy]:
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.kill()
        _POOL = GrabPool(_POOL_SIZE)
    return _POOL


async def warm_up(workers: int = 2, size: int = 8) -> None:
    """Start grab workers now and raise the cap on concurrent grabs (the daemon: at start and
    on every reload, with monitor.daemon.grab_slots)."""
    global _POOL_SIZE
    # The cap only grows: after a reload that lowers the concurrency, checks of the old config
    # may still be running and need their slots (unused workers stop after IDLE_TTL anyway).
    _POOL_SIZE = max(_POOL_SIZE, size)
    pool = get_pool()
    pool.resize(max(pool.size, size))
    await pool.start(workers)


async def shutdown() -> None:
    """Stop the grab workers (daemon stop, end of a CLI probe, test teardown)."""
    global _POOL
    if _POOL is not None and _POOL.loop is asyncio.get_running_loop():
        await _POOL.close()
    _POOL = None


def redact(url: str) -> str:
    """The URL without credentials (for facts, logs and messages); never raises."""
    return redact_url(url)


def with_credentials(url: str, target: Target) -> str:
    """The stream URL with the camera's RTSP credentials (or its ONVIF ones) inserted."""
    if target.auth is None:
        return url
    cfg = target.auth.config
    user = getattr(cfg, "rtsp_username", None) or getattr(cfg, "username", None)
    password = target.auth.secret("rtsp_password") or target.auth.secret("password")
    if not user:
        return url
    scheme, sep, rest = strip_userinfo(url).partition("://")
    if not sep:
        return url
    cred = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
    return f"{scheme}://{cred}@{rest}"


async def _stream_uri(target: Target, state: dict[str, Any], deadline: float,
                      result: CheckResult, auth_backoff: float) -> tuple[str | None, str]:
    """The configured URI, the one ONVIF found earlier, or ask ONVIF now: (uri, failure reason)."""
    fixed = target.options.get("rtsp_url")
    if fixed:
        return str(fixed), ""
    if state.get("stream_uri"):
        return str(state["stream_uri"]), ""
    result.debug("no stream URI yet: asking ONVIF")
    return await onvif.discover_stream_uri(target, state, deadline, auth_backoff)


def picture_uri(target: Target, settings: RtspSettings, state: dict[str, Any]) -> str | None:
    """The smaller stream the picture checks read, or None to decode the main stream."""
    if settings.picture_stream == "main":
        return None
    failed = state.get("picture_failed_at")
    if failed is not None and time.monotonic() - failed < settings.picture_retry:
        return None
    fixed = target.options.get("picture_url")
    if fixed:
        return str(fixed)
    if target.options.get("rtsp_url") or not state.get("picture_uri"):
        return None
    if settings.picture_stream == "auto" and (state.get("picture_ratio") or 0) < AUTO_MIN_RATIO:
        return None
    return str(state["picture_uri"])


async def _grab(target: Target, settings: RtspSettings, state: dict[str, Any], uri: str,
                picture: str | None, deadline: float, result: CheckResult) -> Grab:
    """The main stream's keyframe, decoded, or waited for while the picture stream's is.

    With a picture stream one worker reads both at once (the wall time stays one keyframe
    interval); the main stream's facts (codec, size, rate, time to first frame) are the
    camera's, the frame is the picture stream's. A picture stream that fails is set aside for
    `picture_retry` and the main stream is decoded with the time left (the picture stream
    gets half the time, so a hanging one leaves time for that). If that decode misses the
    deadline too, the main stream's keyframe still shows the camera streams: a Grab without a
    frame, the picture not judged this time.
    """
    pool = get_pool()
    jpeg = frame_due(settings, state, time.time())
    std = settings.image.structure_std
    main = with_credentials(uri, target)
    if picture is None:
        return await pool.grab(main, deadline, settings.transport, jpeg=jpeg, structure_std=std)
    now = asyncio.get_running_loop().time()
    both = await pool.grab(main, deadline, settings.transport, jpeg=jpeg, structure_std=std,
                           picture=(with_credentials(picture, target), now + (deadline - now) / 2))
    pic = both.header.get("picture") or {}
    if not pic.get("ok"):
        reason = str(pic.get("reason") or "bad_reply")
        state["picture_failed_at"] = time.monotonic()
        result.facts["picture_stream_error"] = f"{reason}: {pic.get('message', '')}"
        result.debug(f"picture stream failed ({reason}): decoding the main stream")
        try:
            return await pool.grab(main, deadline, settings.transport, jpeg=jpeg,
                                   structure_std=std)
        except GrabError as fallback:
            result.debug(f"main stream not decoded either ({fallback.reason}): picture not "
                         "judged")
            result.facts["picture_not_checked"] = f"{fallback.reason}: {fallback}"
            return both  # the main stream's keyframe arrived: no frame, its facts
    state.pop("picture_failed_at", None)
    header = dict(both.header)
    header["picture"] = {k: pic.get(k) for k in ("width", "height", "keyframe_bytes")}
    result.facts["picture_stream"] = redact(picture)
    return Grab(header, both.grey, both.jpeg)


def frame_due(settings: RtspSettings, state: dict[str, Any], now: float) -> bool:
    """Whether this grab should also bring back a JPEG of the frame to keep."""
    if not settings.save_frame:
        return False
    taken = state.get("last_frame_jpeg_time")
    return taken is None or state.get("frame_stale", True) or now - taken >= settings.frame_refresh


def _no_frame(result: CheckResult, state: dict[str, Any]) -> CheckResult:
    """Finish a check that got no frame: the last decoded one stays available (for alerts)."""
    state["frame_stale"] = True  # the first frame after this one is kept, whatever its age
    last = state.get("last_frame_time")
    result.add("camnet_camera_last_frame_timestamp_seconds", last)
    if state.get("last_frame_jpeg"):
        result.artifacts["last_frame_jpeg"] = state["last_frame_jpeg"]
        result.facts["last_frame_age"] = round(time.time() - float(last or 0), 1)
    return result


def _stream_only(result: CheckResult, settings: RtspSettings,
                 state: dict[str, Any]) -> CheckResult:
    """Finish a check whose stream is alive but whose picture was not decoded this time: the
    picture problems stay as the last checks left them (no flapping alert either way)."""
    result.add("camnet_camera_last_frame_timestamp_seconds", state.get("last_frame_time"))
    if state.get("last_frame_jpeg"):
        result.artifacts["last_frame_jpeg"] = state["last_frame_jpeg"]
    held = image.held_problems(state.get("image", {}), settings.image)
    result.problems.update(held)
    bad = [p for p, on in held.items() if on]
    result.message = "stream ok; picture not checked this time" + (
        f" (still {', '.join(bad)})" if bad else "")
    return result


async def probe_rtsp(
    target: Target, settings: RtspSettings, state: dict[str, Any], deadline: float
) -> CheckResult:
    """Grab one keyframe, measure it and judge the picture against the camera's own history."""
    result = CheckResult("rtsp", success=False)
    problems = dict.fromkeys(RTSP_PROBLEMS, False)
    result.problems = problems
    uri, why = await _stream_uri(target, state, deadline, result, settings.auth_backoff)
    if uri is None:
        result.reason = why or "no_stream"
        result.message = f"no stream URI ({result.reason})"
        problems[REASON_PROBLEM.get(result.reason, "no_stream")] = True
        return _no_frame(result, state)
    result.facts["stream_uri"] = redact(uri)
    if onvif.in_auth_backoff(settings.auth_backoff, state):
        # Cameras count failed RTSP logins towards the same lockout as ONVIF ones.
        result.reason = "auth_failed"
        result.message = "credentials rejected earlier; not retried yet"
        problems["auth_failed"] = True
        return _no_frame(result, state)
    picture = picture_uri(target, settings, state)
    result.debug(f"grabbing {redact(uri)} over {settings.transport}"
                 + (f", picture from {redact(picture)}" if picture else ""))
    try:
        grab = await _grab(target, settings, state, uri, picture, deadline, result)
    except GrabError as e:
        result.reason = e.reason
        result.message = str(e)
        problems[REASON_PROBLEM.get(e.reason, "no_stream")] = True
        if e.reason == "auth_failed":
            state[onvif.AUTH_FAILED_KEY] = time.monotonic()
        elif e.reason == "no_stream" and not target.options.get("rtsp_url"):
            state.pop("stream_uri", None)  # ONVIF may announce another URI next time
        result.debug(f"grab failed: {e.reason}: {e}")
        return _no_frame(result, state)
    h = grab.header
    now = time.time()
    result.success = True
    result.add("camnet_camera_time_to_first_frame_seconds", h.get("ttff_seconds"))
    result.add("camnet_camera_frame_width_pixels", h.get("width"))
    result.add("camnet_camera_frame_height_pixels", h.get("height"))
    result.add("camnet_camera_frames_per_second", h.get("fps"))
    result.add("camnet_camera_stream_info", 1, codec=str(h.get("codec") or ""),
               profile=str(h.get("profile") or ""))
    result.facts.update(
        codec=h.get("codec"), profile=h.get("profile"), width=h.get("width"),
        height=h.get("height"), fps=h.get("fps"), time_to_first_frame=h.get("ttff_seconds"),
        keyframe_bytes=h.get("keyframe_bytes"),
    )
    if not grab.grey.size:
        return _stream_only(result, settings, state)
    state["last_frame_time"] = now
    result.add("camnet_camera_last_frame_timestamp_seconds", now)
    if h.get("picture"):
        pic = h["picture"]
        result.facts.update(picture_width=pic.get("width"), picture_height=pic.get("height"),
                            picture_keyframe_bytes=pic.get("keyframe_bytes"))
    if grab.jpeg:
        result.artifacts["frame_jpeg"] = grab.jpeg
        state["last_frame_jpeg"] = grab.jpeg
        state["last_frame_jpeg_time"] = now
    elif state.get("last_frame_jpeg"):
        result.artifacts["last_frame_jpeg"] = state["last_frame_jpeg"]
    measured = image.Measured(grab.grey, float(h["sharpness"]), str(h["measured_size"]),
                              float(h["brightness"]), float(h["contrast"]), float(h["structure"]))
    report = image.assess_measured(measured, settings.image, state.setdefault("image", {}), now)
    # A suspect picture (even before it is reported) keeps the kept frame current.
    state["frame_stale"] = any(report.bad.values())
    result.add("camnet_camera_brightness_ratio", report.brightness)
    result.add("camnet_camera_contrast_ratio", report.contrast)
    result.add("camnet_camera_sharpness", report.sharpness)
    result.add("camnet_camera_structure_ratio", report.structure)
    result.add("camnet_camera_frame_changed_ratio", report.changed_fraction)
    result.add("camnet_camera_scene_similarity", report.scene_similarity)
    result.facts.update(
        brightness=round(report.brightness, 4), contrast=round(report.contrast, 4),
        sharpness=round(report.sharpness, 1), structure=round(report.structure, 3),
        frame_changed=report.changed_fraction, scene_similarity=report.scene_similarity,
        baseline_sharpness=report.baseline_sharpness,
        picture_suspect=[p for p, on in report.bad.items() if on],
    )
    problems.update(report.problems)
    bad = [p for p, on in report.problems.items() if on]
    result.message = "picture: " + (", ".join(bad) if bad else "ok")
    result.debug(f"frame {h.get('width')}x{h.get('height')} {h.get('codec')} "
                 f"ttff={h.get('ttff_seconds', 0):.3f}s {result.message}")
    return result
