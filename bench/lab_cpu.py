"""CPU of the whole lab (24 cameras + 37 access points): idle, and with 24 RTSP readers at once.

Runs a private copy of the default site on 127.0.22.x (so it never collides with a running
`camnet lab`), sums user+system CPU of every process of the lab's session from /proc, and
prints the share of one core. Readers are `ffmpeg -c copy` (they demux, not decode; their own
CPU is not counted).

    python3 bench/lab_cpu.py [--seconds 30]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.lab_fixture import Lab, start_lab, stop_lab  # noqa: E402

CONTROL = "127.0.22.250:9840"
TICKS = os.sysconf("SC_CLK_TCK")


def private_config(tmp: Path) -> Path:
    """The default config with cameras on 127.0.22.1-24 and APs on 127.0.22.101-137."""
    text = (ROOT / "config" / "camnet.yaml").read_text()
    text = re.sub(r"address: 127\.0\.2\.(\d+)", r"address: 127.0.22.\1", text)
    text = re.sub(r"address: 127\.0\.1\.(\d+)",
                  lambda m: f"address: 127.0.22.{100 + int(m.group(1))}", text)
    text = text.replace("listen: 127.0.0.1:9830", "listen: 127.0.22.250:9830")
    shutil.copytree(ROOT / "config" / "secrets", tmp / "secrets")
    path = tmp / "camnet.yaml"
    path.write_text(text)
    return path


def proc_stats() -> Iterator[tuple[int, list[str]]]:
    """(pid, fields of /proc/PID/stat from field 3 on) of every live process.

    fields[0] is stat field 3 (state): ppid is fields[1], session fields[3], utime
    fields[11], stime fields[12], cutime and cstime fields[13:15] (clock ticks).
    """
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        yield int(entry), stat.rsplit(")", 1)[1].split()


def session_cpu_seconds(sid: int) -> float:
    """User+system CPU seconds of every live process in session `sid`."""
    return sum(int(f[11]) + int(f[12]) for _, f in proc_stats() if int(f[3]) == sid) / TICKS


def reader_urls(lab: Lab) -> dict[str, str]:
    """Every lab camera's RTSP URL, with the default config's credentials where it needs them."""
    password = (ROOT / "config" / "secrets" / "lab-camera.password").read_text().strip()
    urls = {}
    for cid, cam in lab.info["cameras"].items():
        url = str(cam["rtsp"])
        if cam["rtsp_auth"]:
            url = url.replace("rtsp://", f"rtsp://admin:{password}@", 1)
        urls[cid] = url
    return urls


def measure(sid: int, seconds: float) -> float:
    """Percent of one core used by the session over `seconds`."""
    before, t0 = session_cpu_seconds(sid), time.monotonic()
    time.sleep(seconds)
    after, t1 = session_cpu_seconds(sid), time.monotonic()
    return 100.0 * (after - before) / (t1 - t0)


def stop_readers(readers: list[subprocess.Popen[bytes]]) -> None:
    """Terminate every reader (kill after 10 s)."""
    for r in readers:
        if r.poll() is None:
            r.terminate()
    for r in readers:
        try:
            r.wait(timeout=10)
        except subprocess.TimeoutExpired:
            r.kill()
            r.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="camnet-lab-bench-") as tmp:
        config = private_config(Path(tmp))
        started = time.monotonic()
        lab = start_lab(config, CONTROL, Path(tmp) / "run")
        readers: list[subprocess.Popen[bytes]] = []
        try:
            print(f"lab startup: {time.monotonic() - started:.1f} s wall "
                  f"(lab's own count {lab.info.get('startup_seconds')} s; clip cache warm "
                  "unless this is the first run)")
            assert lab.proc is not None
            sid = lab.proc.pid
            time.sleep(5)
            idle = measure(sid, args.seconds)
            print(f"idle: {idle:.2f}% of one core over {args.seconds:.0f} s")
            for url in reader_urls(lab).values():
                readers.append(subprocess.Popen(
                    ["ffmpeg", "-nostdin", "-v", "error", "-rtsp_transport", "tcp", "-i", url,
                     "-c", "copy", "-f", "null", "-"],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL))
            time.sleep(5)
            busy = measure(sid, args.seconds)
            alive = sum(1 for r in readers if r.poll() is None)
            print(f"24 readers: {busy:.2f}% of one core over {args.seconds:.0f} s "
                  f"({alive} readers still streaming at the end)")
            stop_readers(readers)
            time.sleep(5)
            after = measure(sid, args.seconds)
            print(f"idle after the readers left: {after:.2f}% of one core over "
                  f"{args.seconds:.0f} s")
        finally:
            stop_readers(readers)
            stop_lab(lab)
    return 0


if __name__ == "__main__":
    sys.exit(main())
