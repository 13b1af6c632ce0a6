"""Benchmark: CPU and wall time of one full camera check (ONVIF + RTSP grab + picture checks)
against `ffmpeg -rtsp_transport tcp -i URL -frames:v 1 -f null -` (the grab alone), on the same
lab streams in the same run, at 640x360, 1280x720 and 1920x1080; and memory over many grabs.

    python bench/camera.py                  # both scenarios, 12 rounds per size
    python bench/camera.py --rounds 20 --scenario nvr
    python bench/camera.py --memory 2000    # RSS of camnet and its grab workers over 2,000 grabs
    python bench/camera.py --memory 2000 --no-kill   # the same, one worker throughout

Two scenarios per size: `first` (camnet is the stream's only client: the camera starts the
session at a keyframe) and `nvr` (a recorder already pulls the stream, as in the programme's
sites: camnet and ffmpeg join it mid-GOP and wait for the next keyframe). A third measurement
per size is the floor the issue's target was derived from: the same keyframe-only PyAV grab,
in this process, with nothing else (no worker, no picture checks, no ONVIF).

camnet runs with its defaults (`rtsp.picture_stream: auto`), then, on a camera with a smaller
stream, with the other choice in the same run: the 1920x1080 Axis has `picture_url` set to
its 640x360 stream (VAPIX `resolution=`), so by default its picture is judged there and its
main stream only waited for (second row: `main`, the main stream decoded); the 1280x720
Hikvision announces a 640x360 sub-stream, which `auto` leaves alone at 4x fewer pixels
(second row: `sub`). ffmpeg and the floor always read the main stream.

It starts a private lab on 127.0.12.21-24 (control 127.0.12.252:9839). CPU: camnet's side and
the floor from this process's process_time, the grab workers' from their CPU-time clocks
(clock_getcpuclockid, ns, exited threads included), ffmpeg's from rusage. Targets (issue #5):
CPU ≤ 0.1 × ffmpeg's; wall ≤ one keyframe interval + 0.3 s.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lab import clips  # noqa: E402
from monitor.config import CameraProfile, LoadedConfig, load_config  # noqa: E402
from probes import onvif, rtsp  # noqa: E402
from probes.base import parse_duration  # noqa: E402
from tests.lab_fixture import Lab, start_lab, stop_lab  # noqa: E402

CONTROL = "127.0.12.252:9839"
ADDRESSES = [f"127.0.12.{21 + i}" for i in range(4)]  # positions 0-3: 720p, 1080p, 720p, 360p
SIZES = {"640x360": "bench-3", "1280x720": "bench-0", "1920x1080": "bench-1"}
PASSWORD = "bench-camera-pw-1"
PAGE = os.sysconf("SC_PAGE_SIZE")


def write_config(tmp: Path) -> Path:
    (tmp / "secrets").mkdir(exist_ok=True)
    (tmp / "secrets" / "cam.password").write_text(PASSWORD + "\n")
    cams = "\n".join(f"  - {{id: bench-{i}, site: s1, address: {a}}}"
                     for i, a in enumerate(ADDRESSES))
    # The 1080p camera is an Axis: no smaller ONVIF profile, a scaled stream on request.
    cams = cams.replace("address: 127.0.12.22}", "address: 127.0.12.22, picture_url: "
                        "'rtsp://127.0.12.22:8554/axis-media/media.amp?resolution=640x360'}")
    path = tmp / "camnet.yaml"
    path.write_text(f"""
defaults: {{camera_auth: cam, onvif_port: 8080}}
communes: [{{id: daron, name: "Đạ Ròn"}}]
sites: [{{id: s1, commune: daron, name: "Bench"}}]
auths:
  cam: {{type: onvif, username: admin, password_file: secrets/cam.password}}
cameras:
{cams}
""")
    return path


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


_LIBC = ctypes.CDLL(None, use_errno=True)


def proc_cpu(pid: int) -> float:
    """CPU seconds of a live process, all its threads, exited ones included (its CPU-time
    clock, ns; 0 when it is gone). Summing /proc/PID/task/*/schedstat missed the threads that
    had exited: a worker's picture-stream thread lives for one grab."""
    clock = ctypes.c_int()
    spec = _Timespec()
    if (_LIBC.clock_getcpuclockid(pid, ctypes.byref(clock)) != 0
            or _LIBC.clock_gettime(clock, ctypes.byref(spec)) != 0):
        return 0.0
    return spec.tv_sec + spec.tv_nsec / 1e9


def proc_rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except OSError:
        return 0


def camnet_cpu() -> tuple[float, float]:
    """CPU seconds of (this process, every live grab worker)."""
    return time.process_time(), sum(proc_cpu(p) for p in rtsp.get_pool().worker_pids())


def ffmpeg_grab(url: str) -> tuple[float, float, bool]:
    """(cpu s, wall s, ok) of one ffmpeg CLI grab."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-rtsp_transport", "tcp", "-timeout", "10000000",
         "-i", url, "-frames:v", "1", "-f", "null", "-"],
        capture_output=True, timeout=60, check=False)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall, proc.returncode == 0


def rtsp_url(lab: Lab, cid: str) -> str:
    cam = lab.camera(cid)
    url = str(cam["rtsp"])
    if cam["rtsp_auth"]:
        url = url.replace("rtsp://", f"rtsp://admin:{PASSWORD}@", 1)
    return url


class Check(NamedTuple):
    """One full check as the benchmark saw it."""

    cpu: float  # s, camnet's process + its grab workers
    wall: float
    ok: bool
    ttff: float
    worker: float  # s of cpu in the grab workers
    onvif: float  # s of cpu in the ONVIF calls
    keyframe_bytes: float  # the main stream's keyframe
    picture: str  # where the picture was judged: "main" or the picture stream's size


async def full_check(cfg: LoadedConfig, cid: str, state: dict[str, Any],
                     picture: str = "auto") -> Check:
    """One full check, with `rtsp.picture_stream` = `picture` (`auto` is the default)."""
    dev = cfg.device(cid)
    assert dev is not None
    target, profile = cfg.target(dev), cfg.profile_for(dev)
    assert isinstance(profile, CameraProfile)
    settings = profile.rtsp.model_copy(update={"picture_stream": picture})
    loop = asyncio.get_running_loop()
    cpu0, t0 = camnet_cpu(), time.monotonic()
    o = await onvif.probe_onvif(target, profile.onvif, state, loop.time() + 10)
    onvif_cpu = time.process_time() - cpu0[0]
    r = await rtsp.probe_rtsp(target, settings, state, loop.time() + 10)
    wall = time.monotonic() - t0
    cpu1 = camnet_cpu()
    worker = cpu1[1] - cpu0[1]
    f = r.facts
    where = f"{f['picture_width']}x{f['picture_height']}" if "picture_stream" in f else "main"
    return Check(cpu1[0] - cpu0[0] + worker, wall, o.success and r.success,
                 float(f.get("time_to_first_frame") or 0), worker, onvif_cpu,
                 float(f.get("keyframe_bytes") or 0), where)


def floor_grab(url: str) -> float:
    """CPU seconds of the bare keyframe-only PyAV grab, in this process (the issue's reference:
    FIELD-NOTES' "PyAV keyframe-only"), opened exactly as the grab worker opens streams."""
    import av  # only here: camnet's own process never imports the decoder

    from probes.grab_worker import open_stream

    av.logging.set_level(None)  # as the grab worker
    t0 = time.process_time()
    container = open_stream(url, "tcp", 10.0)
    try:
        for packet in container.demux(container.streams.video[0]):
            if packet.decode():
                break
    finally:
        container.close()
    return time.process_time() - t0


def start_recorder(url: str) -> subprocess.Popen[bytes]:
    """A recorder (an NVR) pulling the stream for as long as the scenario lasts."""
    return subprocess.Popen(
        ["ffmpeg", "-nostdin", "-v", "quiet", "-rtsp_transport", "tcp", "-i", url, "-c", "copy",
         "-f", "null", "-"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)


Row = dict[str, Any]


def onvif_share() -> float:
    """ONVIF checks per RTSP check in the shipped config (camera-default: 15 s / 60 s)."""
    shipped = yaml.safe_load((ROOT / "config" / "camnet.yaml").read_text())
    checks = shipped["profiles"]["camera-default"]
    return parse_duration(checks["rtsp"]["interval"]) / parse_duration(checks["onvif"]["interval"])


async def measure(cfg: LoadedConfig, lab: Lab, size: str, cid: str, scenario: str,
                  rounds: int, state: dict[str, Any], onvif_share: float,
                  picture: str = "auto") -> Row:
    """Interleaved rounds of camnet, the ffmpeg CLI and the floor on one stream."""
    # The very URI camnet reads (ONVIF's answer): the lab shares one media per URI, so a
    # recorder, camnet and ffmpeg on it see the same stream at the same time.
    dev = cfg.device(cid)
    assert dev is not None and state.get("stream_uri")
    url = rtsp.with_credentials(str(state["stream_uri"]), cfg.target(dev))
    recorder = start_recorder(url) if scenario == "nvr" else None
    try:
        if recorder is not None:
            await asyncio.sleep(2.0)  # the recorder is streaming before anyone else joins
            assert recorder.poll() is None, "the recorder could not open the stream"
        cam, ff, floor = [], [], []
        for _ in range(rounds):  # interleaved: all three see the same stream at the same time
            cam.append(await full_check(cfg, cid, state, picture))
            ff.append(await asyncio.to_thread(ffmpeg_grab, url))
            floor.append(floor_grab(url))
    finally:
        if recorder is not None:
            recorder.terminate()
            recorder.wait(10)
    c_cpu = statistics.mean(x.cpu for x in cam)
    onvif_cpu = statistics.mean(x.onvif for x in cam)
    f_cpu = statistics.mean(x[0] for x in ff)
    fl_cpu = statistics.mean(floor)
    # The daemon runs ONVIF every 60 s and RTSP every 15 s (default profile): per RTSP check,
    # a quarter of an ONVIF check.
    c_daemon = c_cpu - onvif_cpu + onvif_share * onvif_cpu
    return {
        "size": size, "scenario": scenario, "camnet": c_cpu,
        "picture": "/".join(sorted({x.picture for x in cam})),
        "decoder": statistics.mean(x.worker for x in cam), "onvif": onvif_cpu, "ffmpeg": f_cpu,
        "floor": fl_cpu, "ratio": c_cpu / f_cpu, "ratio_daemon": c_daemon / f_cpu,
        "floor_ratio": fl_cpu / f_cpu, "over_floor": (c_cpu - onvif_cpu) / fl_cpu,
        "wall": statistics.mean(x.wall for x in cam), "wall_max": max(x.wall for x in cam),
        "ffmpeg_wall": statistics.mean(x[1] for x in ff),
        "ttff": statistics.mean(x.ttff for x in cam),
        "keyframe_kb": statistics.mean(x.keyframe_bytes for x in cam) / 1000,
        "fails": sum(not x.ok for x in cam) + sum(not x[2] for x in ff),
    }


async def bench(lab: Lab, cfg: LoadedConfig, rounds: int, scenarios: list[str]) -> None:
    # Worker CPU is read from the live workers: one stopped for idling (rtsp.IDLE_TTL) would
    # take its CPU out of the sum mid-row, and its replacement's start-up would land in a check.
    rtsp.IDLE_TTL = float("inf")
    await onvif.warm_up()
    await rtsp.warm_up(workers=1, size=2)
    states: dict[str, dict[str, Any]] = {cid: {} for cid in SIZES.values()}
    for cid in SIZES.values():  # first contact: stream URIs via ONVIF, baselines
        await full_check(cfg, cid, states[cid])
    share = onvif_share()
    rows = []
    for scenario in scenarios:
        for size, cid in SIZES.items():
            rows.append(await measure(cfg, lab, size, cid, scenario, rounds, states[cid], share))
            # The same camera with the other choice, where it has one.
            other = ("main" if rows[-1]["picture"] != "main"
                     else "sub" if states[cid].get("picture_uri") else None)
            if other:
                rows.append(await measure(cfg, lab, size, cid, scenario, rounds, states[cid],
                                          share, picture=other))
    keyframe_s = clips.KEYFRAME_INTERVAL / clips.FPS
    print(f"rounds per size: {rounds}; keyframe interval of the lab clips: {keyframe_s:g} s; "
          f"wall target ≤ {keyframe_s + 0.3:g} s; CPU target ratio ≤ 0.10; ONVIF share in the "
          f"daemon {share:g}")
    print("CPU seconds per check (means):")
    print(f"{'size':>10} | {'picture':>7} | {'scenario':>8} | {'camnet':>7} | {'decoder':>7} | "
          f"{'onvif':>6} | "
          f"{'floor':>6} | {'ffmpeg':>6} | {'ratio':>5} | {'daemon ratio':>12} | "
          f"{'floor ratio':>11} | {'camnet w/o onvif ÷ floor':>24}")
    for r in rows:
        print(f"{r['size']:>10} | {r['picture']:>7} | {r['scenario']:>8} | {r['camnet']:7.4f} | "
              f"{r['decoder']:7.4f} | "
              f"{r['onvif']:6.4f} | {r['floor']:6.4f} | {r['ffmpeg']:6.4f} | {r['ratio']:5.3f} | "
              f"{r['ratio_daemon']:12.3f} | {r['floor_ratio']:11.3f} | {r['over_floor']:24.2f}")
    print("Wall seconds per check:")
    print(f"{'size':>10} | {'picture':>7} | {'scenario':>8} | {'camnet mean':>11} | {'max':>5} | "
          f"{'time to first frame':>19} | {'ffmpeg':>6} | {'keyframe KB':>11} | fails")
    for r in rows:
        print(f"{r['size']:>10} | {r['picture']:>7} | {r['scenario']:>8} | {r['wall']:11.3f} | "
              f"{r['wall_max']:5.3f} | "
              f"{r['ttff']:19.3f} | {r['ffmpeg_wall']:6.3f} | {r['keyframe_kb']:11.0f} | "
              f"{r['fails']}")
    await rtsp.shutdown()


async def memory(lab: Lab, grabs: int, kill: bool = True) -> None:
    """Sequential grabs through one worker (no recycling), with error paths mixed in: every
    20th grab is refused, every 50th hits a silent server and its worker is killed at the
    deadline (then replaced) or, with `kill=False`, gives up by itself (one worker throughout,
    so its own memory is seen)."""
    rtsp.MAX_GRABS_PER_WORKER = 10**9  # show the worker itself stays flat
    await rtsp.warm_up(workers=1, size=1)

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass
        writer.close()

    server = await asyncio.start_server(silent, "127.0.12.29", 8554)
    url = rtsp_url(lab, SIZES["640x360"])
    loop = asyncio.get_running_loop()
    me = os.getpid()
    outcomes: dict[str, int] = {}
    print(f"{'grabs':>6} | {'camnet rss MB':>13} | {'worker rss MB':>13} | {'fds':>4} | "
          f"{'children':>8} | {'killed':>6} | outcomes")
    for i in range(1, grabs + 1):
        worker_limit = None
        if i % 50 == 0:
            # A decoder that would wait 30 s: the pool kills it at the deadline and replaces it.
            target, budget = "rtsp://127.0.12.29:8554/x", 0.6
            worker_limit = 30.0 if kill else None
        elif i % 20 == 0:
            target, budget = "rtsp://127.0.12.29:9/x", 2.0
        else:
            target, budget = url, 5.0
        try:
            await rtsp.get_pool().grab(target, loop.time() + budget, worker_timeout=worker_limit)
            key = "ok"
        except rtsp.GrabError as e:
            key = e.reason
        outcomes[key] = outcomes.get(key, 0) + 1
        if i % 200 == 0 or i == 1:
            await asyncio.sleep(0.1)  # let the reaper finish
            workers = rtsp.get_pool().worker_pids()
            children = len([p for p in os.listdir("/proc") if p.isdigit()
                            and _ppid(int(p)) == me])
            print(f"{i:6d} | {proc_rss(me) / 2**20:13.1f} | "
                  f"{sum(proc_rss(p) for p in workers) / 2**20:13.1f} | "
                  f"{len(os.listdir('/proc/self/fd')):4d} | {children:8d} | "
                  f"{rtsp.get_pool().killed:6d} | {outcomes}",
                  flush=True)
    server.close()
    await rtsp.shutdown()


def _ppid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--scenario", choices=("first", "nvr", "both"), default="both")
    parser.add_argument("--memory", type=int, default=0, help="run N grabs and print RSS")
    parser.add_argument("--no-kill", action="store_true",
                        help="with --memory: hung grabs end by the worker's own time limit")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="camnet-bench-") as tmp:
        lab = start_lab(write_config(Path(tmp)), CONTROL, Path(tmp) / "lab")
        try:
            cfg = load_config(lab.config_path)
            if args.memory:
                asyncio.run(memory(lab, args.memory, kill=not args.no_kill))
            else:
                scenarios = ["first", "nvr"] if args.scenario == "both" else [args.scenario]
                asyncio.run(bench(lab, cfg, args.rounds, scenarios))
        finally:
            stop_lab(lab)
    return 0


if __name__ == "__main__":
    sys.exit(main())
