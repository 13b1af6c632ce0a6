"""The lab's cameras: RTSP (GStreamer child) and ONVIF (replayed captures) behind fault doors.

Every camera address gets a small asyncio TCP front door on its public ONVIF and RTSP ports
that forwards to the real servers on private ports of the same address. The door implements
the network faults uniformly for both protocols: `offline` (connection refused), `hang`
(accepts, never answers), `slow=N` (every answer N s late), `stall` (an RTSP session freezes
once its media flows); `reboot` drops every connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from lab import clips as clipmod
from lab.onvif_responder import Captures, OnvifCamera, OnvifResponder

log = logging.getLogger("camnet.lab.cameras")

RTSP_SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")
SYSTEM_PYTHON = "/usr/bin/python3"  # GStreamer's gi bindings are Debian packages
INTERNAL_PORT_OFFSET = 10000  # private servers listen on public port + this, same address
CHILD_START_TIMEOUT_S = 60.0
CHILD_ACK_TIMEOUT_S = 10.0
UPSTREAM_CONNECT_TIMEOUT_S = 5.0
# A stalled session gets its RTSP answers and the first bytes of media (less than any
# keyframe, so no frame decodes), then nothing: the case where a grab waits forever.
STALL_MEDIA_BYTES = 2048
CHUNK = 65536

PICTURE_STATES = ("black", "frozen", "blurred", "moved", "dark")
CAMERA_STATES = ("ok", "offline", "hang", "slow=N", "stall", "auth", "clock=+N", "reboot",
                 *PICTURE_STATES)
VENDOR_PATHS = {
    # RTSP mount paths: the captured stream URI's path first (what ONVIF announces), then
    # the ones technicians type by hand for that vendor.
    "hikvision": ["/Streaming/Channels/3", "/Streaming/Channels/1", "/Streaming/Channels/101",
                  "/Streaming/Channels/102"],
    "axis": ["/onvif-media/media.amp", "/axis-media/media.amp"],
}
# A camera larger than this also streams the same view at this size: Hikvision as its
# sub-stream (ONVIF Profile_2 and _3, recorded at 704x480) on the channels it numbers x02 and
# x03; Axis on its usual paths when the URL asks for it (VAPIX `resolution=WxH`; the
# recorded Axis announces no smaller ONVIF profile, so this one is configured: picture_url).
SUB_SIZE = (640, 360)
SUB_PATHS = {"hikvision": ["/Streaming/Channels/102", "/Streaming/Channels/103"], "axis": []}
SUB_QUERY = {"axis": f"resolution={SUB_SIZE[0]}x{SUB_SIZE[1]}"}


class FaultError(ValueError):
    """An unknown device state (the message says which ones exist)."""


@dataclass(frozen=True, slots=True)
class CameraFault:
    """A parsed camera state."""

    name: str  # ok, offline, hang, slow, stall, auth, clock, reboot, black, ...
    value: float = 0.0

    def __str__(self) -> str:
        if self.name == "slow":
            return f"slow={self.value:g}"
        if self.name == "clock":
            return f"clock={self.value:+g}"
        return self.name


def parse_camera_fault(state: str) -> CameraFault:
    """Parse `ok`, `offline`, `slow=5`, `clock=-120`, `black`, ... (FaultError if unknown)."""
    name, sep, arg = state.strip().partition("=")
    if name in ("slow", "clock") and sep:
        try:
            value = float(arg)
        except ValueError as e:
            raise FaultError(f"{state!r}: {name}= needs a number of seconds") from e
        if not math.isfinite(value) or (name == "slow" and not 0 < value <= 3600):
            raise FaultError(f"{state!r}: slow=N needs 0 < N <= 3600 seconds")
        if name == "clock" and abs(value) > 10 * 365 * 86400:
            raise FaultError(f"{state!r}: clock offset beyond ten years")
        return CameraFault(name, value)
    if not sep and name in ("ok", "offline", "hang", "stall", "auth", "reboot", *PICTURE_STATES):
        return CameraFault(name)
    raise FaultError(f"unknown camera state {state!r}; one of: {', '.join(CAMERA_STATES)}")


@dataclass
class CameraSpec:
    """One lab camera: where it listens, what it looks like, how it authenticates."""

    id: str
    index: int
    address: str
    onvif_port: int
    rtsp_port: int
    vendor: str
    width: int
    height: int
    scene: str
    rtsp_auth: bool
    username: str
    password: str = field(repr=False)

    @property
    def serial(self) -> str:
        """A stable per-camera serial number in the vendor's format."""
        h = hashlib.sha256(self.id.encode()).hexdigest()
        if self.vendor == "axis":
            return "00408C" + h[:6].upper()
        # The captured Hikvision serial is model + date + batch + 9 digits; vary the digits.
        return f"DS-2DF7276-AEL20140613CCWR{int(h[:8], 16) % 10**9:09d}"

    @property
    def sub_size(self) -> tuple[int, int] | None:
        """The size of the camera's sub-stream, or None when it has none smaller than main."""
        if self.vendor in SUB_PATHS and self.width * self.height > SUB_SIZE[0] * SUB_SIZE[1]:
            return SUB_SIZE
        return None

    @property
    def rtsp_paths(self) -> list[str]:
        """The RTSP mount paths of this camera's main stream."""
        sub = SUB_PATHS.get(self.vendor, []) if self.sub_size else []
        return [p for p in VENDOR_PATHS[self.vendor] if p not in sub]

    @property
    def rtsp_sub_paths(self) -> list[str]:
        """The RTSP mount paths of this camera's sub-stream (none without one)."""
        return SUB_PATHS.get(self.vendor, []) if self.sub_size else []

    def rtsp_url(self) -> str:
        """The stream URI without credentials (as GetStreamUri announces it)."""
        path = Captures(self.vendor).stream_path().replace("&amp;", "&")
        return f"rtsp://{self.address}:{self.rtsp_port}{path}"

    def internal(self, port: int) -> int:
        """The private port behind a public one."""
        return port + INTERNAL_PORT_OFFSET if port + INTERNAL_PORT_OFFSET < 65536 else (
            port - INTERNAL_PORT_OFFSET)


def camera_look(index: int) -> tuple[str, int, int, str, bool]:
    """Vendor, size, scene and RTSP auth of the camera at this position in the config.

    Positions 0 and 2 are 1280x720, position 1 is 1920x1080, the rest 640x360 (CPU stays
    low); even positions are Hikvision and need RTSP digest auth like real Hikvision cameras,
    odd positions are Axis with anonymous RTSP.
    """
    width, height = {0: (1280, 720), 1: (1920, 1080), 2: (1280, 720)}.get(index, (640, 360))
    vendor = "hikvision" if index % 2 == 0 else "axis"
    scene = clipmod.SCENES[index % len(clipmod.SCENES)]
    return vendor, width, height, scene, vendor == "hikvision"


# ---------------------------------------------------------------- front door


class FrontDoor:
    """A TCP forwarder on a public address:port that can refuse, hang, delay or stall."""

    def __init__(self, name: str, host: str, port: int, upstream_port: int) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.upstream_port = upstream_port
        self.fault = CameraFault("ok")
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        """Listen (again)."""
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, self.host, self.port,
                                                      reuse_address=True)

    async def stop(self) -> None:
        """Stop listening and drop every connection."""
        if self._server is not None:
            self._server.close()
            self._server = None
        self.drop_connections()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def drop_connections(self) -> None:
        """Reset every open connection (a reboot or going offline)."""
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

    async def set_fault(self, fault: CameraFault) -> None:
        """Apply a camera state to this door."""
        previous = self.fault
        self.fault = fault
        if fault.name == "offline":
            await self.stop()
        elif previous.name == "offline" or self._server is None:
            await self.start()
        if fault.name == "reboot" or (previous.name in ("hang", "slow", "stall")
                                      and fault.name != previous.name):
            self.drop_connections()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            if self.fault.name == "hang":
                # Accept and never answer; read and discard until the client gives up.
                while await reader.read(CHUNK):
                    pass
                return
            try:
                async with asyncio.timeout(UPSTREAM_CONNECT_TIMEOUT_S):
                    up_reader, up_writer = await asyncio.open_connection(self.host,
                                                                         self.upstream_port)
            except (OSError, TimeoutError):
                log.warning("%s: upstream %s:%d unreachable", self.name, self.host,
                            self.upstream_port)
                return
            self._writers.add(up_writer)
            try:
                await asyncio.gather(self._pump(reader, up_writer, downstream=False),
                                     self._pump(up_reader, writer, downstream=True))
            finally:
                self._writers.discard(up_writer)
                up_writer.transport.abort()
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    @staticmethod
    def _stall_cut(data: bytes, media_bytes: int | None, stalled: bool) -> tuple[bytes, int | None]:
        """Count interleaved media in a downstream chunk and cut it where a stall begins."""
        start = 0
        if media_bytes is None:
            # RTSP text never contains "$" + channel 0: that is the first interleaved packet.
            index = data.find(b"$\x00")
            if index < 0:
                return data, None
            start, media_bytes = index, 0
        if stalled:
            allowance = max(0, STALL_MEDIA_BYTES - media_bytes)
            data = data[:start + allowance]
        return data, media_bytes + len(data) - start

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                    downstream: bool) -> None:
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        media_bytes: int | None = None  # interleaved RTP bytes sent; None before the first

        async def deliver() -> None:
            while (item := await queue.get()) is not None:
                due, data = item
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                dst.write(data)
                await dst.drain()

        sender = asyncio.ensure_future(deliver())
        try:
            while data := await src.read(CHUNK):
                if sender.done():
                    break
                now = time.monotonic()
                fault = self.fault
                if downstream and fault.name == "hang":
                    continue  # a hung device answers nothing, on old connections too
                if downstream:
                    data, media_bytes = self._stall_cut(data, media_bytes, fault.name == "stall")
                    if not data:
                        continue  # the stream froze; the TCP connection stays open
                delay = fault.value if downstream and fault.name == "slow" else 0.0
                queue.put_nowait((now + delay, data))
            queue.put_nowait(None)
            await sender
            if dst.can_write_eof():
                dst.write_eof()
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                await sender


# ---------------------------------------------------------------- RTSP child


class RtspChild:
    """The GStreamer RTSP server process (one for every camera) and its command pipe."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self._seq = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader_task: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[bool] | None = None

    async def start(self, cameras: list[dict[str, Any]]) -> None:
        """Start the child and wait until every camera's server listens."""
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self.proc = await asyncio.create_subprocess_exec(
            SYSTEM_PYTHON, str(RTSP_SERVER_SCRIPT),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cameras": cameras}).encode() + b"\n")
        await self.proc.stdin.drain()
        self._reader_task = asyncio.create_task(self._read())
        try:
            async with asyncio.timeout(CHILD_START_TIMEOUT_S):
                await asyncio.shield(self._ready)
        except TimeoutError as e:
            raise RuntimeError("the GStreamer RTSP server did not start") from e

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if msg.get("ready") and self._ready and not self._ready.done():
                self._ready.set_result(True)
            fut = self._pending.pop(msg.get("ack", -1), None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
        if self._ready and not self._ready.done():
            self._ready.set_exception(RuntimeError("the GStreamer RTSP server exited at start"))
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(RuntimeError("the GStreamer RTSP server exited"))

    async def command(self, **msg: Any) -> None:
        """Send one command and wait for its acknowledgement."""
        if self.proc is None or self.proc.stdin is None or self.proc.returncode is not None:
            raise RuntimeError("the GStreamer RTSP server is not running")
        self._seq += 1
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[self._seq] = fut
        self.proc.stdin.write(json.dumps({"seq": self._seq, **msg}).encode() + b"\n")
        async with asyncio.timeout(CHILD_ACK_TIMEOUT_S):
            await self.proc.stdin.drain()
            reply = await fut
        if "error" in reply:
            raise RuntimeError(f"RTSP server: {reply['error']}")

    async def stop(self) -> None:
        """Close its stdin (it exits on EOF), then terminate, then kill."""
        proc = self.proc
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        for action in (None, proc.terminate, proc.kill):
            if proc.returncode is not None:
                break
            if action is not None:
                with contextlib.suppress(ProcessLookupError):
                    action()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(3.0):
                    await proc.wait()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task


# ---------------------------------------------------------------- the cameras


class CameraLab:
    """Every lab camera: clips, the RTSP child, ONVIF responders and the fault doors."""

    def __init__(self, specs: list[CameraSpec], cache_dir: Path | None = None) -> None:
        self.specs = {s.id: s for s in specs}
        self.cache_dir = cache_dir
        self.faults: dict[str, CameraFault] = {s.id: CameraFault("ok") for s in specs}
        self.snapshots: dict[tuple[str, str], bytes] = {}
        self.onvif: dict[str, OnvifCamera] = {}
        self.doors: dict[str, tuple[FrontDoor, FrontDoor]] = {}
        self.rtsp = RtspChild()
        self._runners: list[web.AppRunner] = []

    async def start(self) -> None:
        """Build missing clips, then start the RTSP child, responders and doors."""
        wanted = [s for spec in self.specs.values()
                  for s in clipmod.all_specs(spec.scene, spec.width, spec.height)]
        wanted += [s for spec in self.specs.values() if spec.sub_size
                   for s in clipmod.all_specs(spec.scene, *spec.sub_size)]
        cancel = threading.Event()
        try:
            built = await asyncio.to_thread(clipmod.ensure_clips, wanted, self.cache_dir, cancel)
        except asyncio.CancelledError:
            cancel.set()  # Ctrl-C during a cold start: start no more encodes
            raise
        children: list[dict[str, Any]] = []
        for spec in self.specs.values():
            clips = {v: built[clipmod.ClipSpec(spec.scene, spec.width, spec.height, v)]
                     for v in clipmod.VARIANTS}
            for variant, clip in clips.items():
                self.snapshots[(spec.id, variant)] = clip.snapshot.read_bytes()
            sub = None
            if spec.sub_size:
                sw, sh = spec.sub_size
                sub = {"paths": spec.rtsp_sub_paths, "query": SUB_QUERY.get(spec.vendor),
                       "width": sw, "height": sh,
                       "clips": {v: str(built[clipmod.ClipSpec(spec.scene, sw, sh, v)].h264)
                                 for v in clipmod.VARIANTS}}
            children.append({
                "id": spec.id, "address": spec.address, "port": spec.internal(spec.rtsp_port),
                "paths": spec.rtsp_paths, "fps": clipmod.FPS, "width": spec.width,
                "height": spec.height, "clips": {v: str(c.h264) for v, c in clips.items()},
                "username": spec.username if spec.rtsp_auth else None,
                "password": spec.password if spec.rtsp_auth else None,
                "sub": sub,
            })
        await self.rtsp.start(children)
        for spec in self.specs.values():
            await self._start_onvif(spec)
            doors = (FrontDoor(f"{spec.id} onvif", spec.address, spec.onvif_port,
                               spec.internal(spec.onvif_port)),
                     FrontDoor(f"{spec.id} rtsp", spec.address, spec.rtsp_port,
                               spec.internal(spec.rtsp_port)))
            self.doors[spec.id] = doors
            for door in doors:
                await door.start()

    async def _start_onvif(self, spec: CameraSpec) -> None:
        def snapshot(camera_id: str = spec.id) -> bytes:
            fault = self.faults[camera_id].name
            return self.snapshots[(camera_id, fault if fault in PICTURE_STATES else "ok")]

        camera = OnvifCamera(
            id=spec.id, vendor=spec.vendor, address=spec.address, onvif_port=spec.onvif_port,
            rtsp_port=spec.rtsp_port, username=spec.username, password=spec.password,
            serial=spec.serial, snapshot=snapshot, width=spec.width, height=spec.height,
            sub_size=spec.sub_size,
        )
        self.onvif[spec.id] = camera
        runner = web.AppRunner(OnvifResponder(camera, Captures(spec.vendor)).app(),
                               access_log=None, handle_signals=False)
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, spec.address, spec.internal(spec.onvif_port),
                           reuse_address=True)
        await site.start()

    async def set_fault(self, camera_id: str, state: str) -> str:
        """Put one camera in a state (KeyError: unknown camera; FaultError: bad state)."""
        spec = self.specs[camera_id]
        fault = parse_camera_fault(state)
        previous = self.faults[camera_id]
        self.faults[camera_id] = fault
        camera = self.onvif[camera_id]
        camera.clock_offset_s = fault.value if fault.name == "clock" else 0.0
        camera.reject_auth = fault.name == "auth"
        variant = fault.name if fault.name in PICTURE_STATES else "ok"
        await self.rtsp.command(cmd="variant", camera=spec.id, variant=variant)
        if (fault.name == "auth") != (previous.name == "auth"):
            await self.rtsp.command(cmd="auth", camera=spec.id, reject=fault.name == "auth")
        onvif_door, rtsp_door = self.doors[camera_id]
        await onvif_door.set_fault(fault if fault.name != "stall" else CameraFault("ok"))
        await rtsp_door.set_fault(fault)
        if fault.name == "reboot":
            # Connections dropped above; the camera is back at once (no outage simulated).
            fault = CameraFault("ok")
            self.faults[camera_id] = fault
            for door in (onvif_door, rtsp_door):
                door.fault = fault
            log.info("camera %s: rebooted", camera_id)
        elif previous != fault:
            log.info("camera %s: %s -> %s", camera_id, previous, fault)
        return str(fault)

    def status(self) -> dict[str, str]:
        """Every camera's current state."""
        return {cid: str(f) for cid, f in self.faults.items()}

    async def stop(self) -> None:
        """Stop doors, responders and the RTSP child."""
        for doors in self.doors.values():
            for door in doors:
                await door.stop()
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        await self.rtsp.stop()

