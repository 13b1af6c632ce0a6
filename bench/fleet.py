"""Benchmark: CPU of the daemon watching the lab's 24 cameras, per camera check, against the
ffmpeg CLI grabbing one frame from each of the same cameras, in the same run.

bench/camera.py measures one camera's check in isolation; this is what the daemon really pays
on the shipped schedule (profile camera-default: ping and RTSP every 15 s, ONVIF every 60 s),
with its grab workers warm and 24 cameras of three sizes (lab positions: two 1280x720
Hikvision, one 1920x1080 Axis, 21 at 640x360), as `config/camnet.yaml` configures them.

    python3 bench/fleet.py [--seconds 120]

It starts a private lab with the default config's cameras on 127.0.12.101-124 (no access
points; control 127.0.12.253:9839) and `camnet run` on it (127.0.12.253:9830). CPU: the daemon
and its grab workers from /proc (utime+stime, plus what reaped workers left in cutime+cstime);
checks: `camnet_check_runs_total` from /metrics; ffmpeg: the children's rusage.

A last line measures the machine's floor: on some virtual machines a process that only sleeps
and wakes is charged CPU time for it (host scheduling latency counted as the guest task's run
time). A Python process that wakes 10 times a second and does nothing else is measured for
the same time, so the daemon's figure can be read against it.
"""

from __future__ import annotations

import argparse
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.camera import ffmpeg_grab  # noqa: E402
from bench.lab_cpu import TICKS, proc_stats, reader_urls  # noqa: E402
from tests.lab_fixture import Lab, start_lab, stop_lab  # noqa: E402

CONTROL = "127.0.12.253:9839"
LISTEN = "127.0.12.253:9830"
WARM_UP_TIMEOUT_S = 120.0


def private_config(tmp: Path) -> Path:
    """The default config's cameras (and everything they need) on 127.0.12.101-124, no APs."""
    text = (ROOT / "config" / "camnet.yaml").read_text()
    text = re.sub(r"127\.0\.2\.(\d+)", lambda m: f"127.0.12.{100 + int(m.group(1))}", text)
    text = text.replace("listen: 127.0.0.1:9830", f"listen: {LISTEN}")
    config = yaml.safe_load(text)
    config["aps"] = []
    (tmp / "secrets").symlink_to(ROOT / "config" / "secrets")
    path = tmp / "camnet.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False))
    return path


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process, its reaped children and its live children."""
    total = 0
    for child, f in proc_stats():
        if child == pid:
            total += sum(int(x) for x in f[11:15])
        elif int(f[1]) == pid:
            total += int(f[11]) + int(f[12])
    return total / TICKS


def check_runs() -> dict[str, float]:
    """camnet_check_runs_total of the camera checks, by check."""
    with urllib.request.urlopen(f"http://{LISTEN}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    runs: dict[str, float] = {}
    for m in re.finditer(r'^camnet_check_runs_total\{([^}]*)\} ([0-9.e+]+)$', text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if labels.get("kind") == "camera":
            runs[labels["check"]] = runs.get(labels["check"], 0.0) + float(m.group(2))
    return runs


def children_cpu() -> float:
    """User+system CPU seconds of this process's reaped children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def camera_urls(lab: Lab) -> dict[str, tuple[str, str]]:
    """Camera id -> (size, RTSP URL with the lab's credentials)."""
    cams = lab.info["cameras"]
    return {cid: (f"{cams[cid]['width']}x{cams[cid]['height']}", url)
            for cid, url in reader_urls(lab).items()}


SLEEPER = """
import asyncio, time
async def main():
    end = time.monotonic() + {seconds}
    while time.monotonic() < end:
        await asyncio.sleep(0.1)
asyncio.run(main())
"""


def idle_floor(seconds: float) -> float:
    """CPU seconds per second of a Python process that only wakes 10 times a second."""
    before, t0 = children_cpu(), time.monotonic()
    subprocess.run([sys.executable, "-c", SLEEPER.format(seconds=seconds)], check=True,
                   timeout=seconds + 60)
    cpu, t1 = children_cpu() - before, time.monotonic()
    # Less the start-up (imports) of an interpreter, measured the same way.
    before = children_cpu()
    subprocess.run([sys.executable, "-c", SLEEPER.format(seconds=0)], check=True, timeout=60)
    start = children_cpu() - before
    return max(0.0, cpu - start) / (t1 - t0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="camnet-fleet-bench-") as tmp:
        config = private_config(Path(tmp))
        lab = start_lab(config, CONTROL, Path(tmp) / "lab")
        daemon = None
        try:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "monitor", "run", "--config", str(config)], cwd=ROOT,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            deadline = time.monotonic() + WARM_UP_TIMEOUT_S
            while True:  # every camera checked once: workers started, baselines learned
                time.sleep(2)
                try:
                    if check_runs().get("rtsp", 0) >= 2 * len(lab.info["cameras"]):
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline or daemon.poll() is not None:
                    print("the daemon did not check every camera in time", file=sys.stderr)
                    return 1
            runs0, cpu0, t0 = check_runs(), tree_cpu(daemon.pid), time.monotonic()
            time.sleep(args.seconds)
            runs1, cpu1, t1 = check_runs(), tree_cpu(daemon.pid), time.monotonic()
            checks = {k: runs1.get(k, 0) - runs0.get(k, 0) for k in runs1}
            cpu = cpu1 - cpu0
            by_size: dict[str, list[float]] = {}
            for size, url in camera_urls(lab).values():
                cpu_s, _, ok = ffmpeg_grab(url)
                assert ok, f"ffmpeg could not grab a frame from a {size} camera"
                by_size.setdefault(size, []).append(cpu_s)
        finally:
            if daemon is not None and daemon.poll() is None:
                daemon.terminate()
                try:
                    daemon.wait(20)
                except subprocess.TimeoutExpired:
                    daemon.kill()
                    daemon.wait()
            stop_lab(lab)
    grabs = [c for cs in by_size.values() for c in cs]
    ff = statistics.mean(grabs)  # every camera is checked equally often
    per_check = cpu / checks["rtsp"]
    print(f"daemon and grab workers over {t1 - t0:.0f} s: {cpu:.2f} CPU s "
          f"({100 * cpu / (t1 - t0):.2f}% of one core)")
    print("camera checks: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(checks.items())))
    print(f"CPU per camera check (RTSP + picture, with ping and ONVIF at their schedule): "
          f"{1000 * per_check:.1f} ms")
    for size, cs in sorted(by_size.items()):
        print(f"ffmpeg CLI grab, {size}: {1000 * statistics.mean(cs):.1f} ms mean of {len(cs)}")
    print(f"ffmpeg CLI grab, mean over the 24 cameras: {1000 * ff:.1f} ms")
    print(f"ratio (camnet per check / ffmpeg per grab): {per_check / ff:.3f}")
    floor = idle_floor(min(args.seconds, 30.0))
    print(f"this machine's floor: a process that only wakes 10 times a second is charged "
          f"{1000 * floor:.1f} ms CPU per second ({100 * floor:.2f}% of one core)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
