"""Pytest plugin: the `lab` fixture (the default simulated site) and `lab_factory` (any config).

Each lab runs as a subprocess `python -m monitor lab ...` in its own session, so a test that
blocks its event loop cannot stall the lab, and teardown kills the whole process group even if
the lab misbehaves. Use:

    def test_x(lab):                      # the default config/camnet.yaml, session-scoped
        lab.fault("cam-daron-01", "black")
        ...
        lab.fault("cam-daron-01", "ok")   # or lab.reset()

    def test_y(lab_factory, tmp_path):    # a private lab on your own address range
        handle = lab_factory(tmp_path / "camnet.yaml", control="127.0.22.250:9839")
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lab.cli import control_request

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "config" / "camnet.yaml"
DEFAULT_CONTROL = "127.0.0.1:9839"
# A cold clip cache encodes every clip first (≈ 30-60 s on 2 cores); later starts take ≈ 1 s.
START_TIMEOUT_S = float(os.environ.get("CAMNET_LAB_START_TIMEOUT", "300"))
STOP_TIMEOUT_S = 20.0
HTTP_TIMEOUT_S = 30.0
LOCK_TIMEOUT_S = float(os.environ.get("CAMNET_LAB_LOCK_TIMEOUT", "900"))


class LabError(RuntimeError):
    """The lab did not start, or the control API refused a request."""


def _http(control: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    return control_request(control, path, body, timeout=HTTP_TIMEOUT_S)


@dataclass
class Lab:
    """A running lab: its config, control API and fault switch."""

    config_path: Path
    control: str  # HOST:PORT
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)
    lock_fd: int | None = None

    @property
    def control_url(self) -> str:
        """http://HOST:PORT of the control API."""
        return f"http://{self.control}"

    def fault(self, device: str, state: str) -> dict[str, str]:
        """Set a state on a device, a site's devices or `all`; returns {device: state}."""
        status, reply = _http(self.control, "/fault", {"device": device, "state": state})
        if status != 200:
            raise LabError(f"lab fault {device} {state}: {reply.get('error', status)}")
        return dict(reply["changed"])

    def reset(self) -> None:
        """Every device back to ok."""
        self.fault("all", "ok")

    def status(self) -> dict[str, Any]:
        """GET /status: states, and what runs where."""
        _, reply = _http(self.control, "/status")
        return dict(reply)

    def camera(self, camera_id: str) -> dict[str, Any]:
        """What the lab says about one camera (address, vendor, size, rtsp URL, rtsp_auth)."""
        return dict(self.info["cameras"][camera_id])

    def log(self) -> str:
        """The lab's output so far (for assertion messages)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-4000:]


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _lock(control: str) -> int:
    """Take the per-control-address lock, waiting while another test session holds it.

    Two pytest sessions (two developers, or CI jobs on one host) would otherwise start two labs
    on the same addresses; the second waits for the first instead of failing.
    """
    path = Path(tempfile.gettempdir()) / f"camnet-lab-{control.replace(':', '_')}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + LOCK_TIMEOUT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise LabError(f"another test session holds the lab at {control}") from None
            time.sleep(1.0)


def start_lab(config_path: Path, control: str, state_dir: Path, *,
              extra_args: tuple[str, ...] = ()) -> Lab:
    """Start `python -m monitor lab` and wait until every camera port answers."""
    state_dir.mkdir(parents=True, exist_ok=True)
    lock_fd = _lock(control)
    # A lab started by hand (or by a script that does not take the lock) may hold the
    # addresses: wait for it to go away rather than talk to it by mistake.
    control_host, _, control_port = control.rpartition(":")
    deadline = time.monotonic() + LOCK_TIMEOUT_S
    while _port_open(control_host, int(control_port)):
        if time.monotonic() > deadline:
            os.close(lock_fd)
            raise LabError(f"another lab keeps running at {control}")
        time.sleep(2.0)
    log_path = state_dir / "lab.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "lab", "--config", str(config_path),
             "--control", control, "--state-dir", str(state_dir / "state"), *extra_args],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    lab = Lab(config_path=config_path, control=control, proc=proc, log_path=log_path,
              lock_fd=lock_fd)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise LabError(f"the lab exited with {proc.returncode}:\n{lab.log()}")
            try:
                status, info = _http(control, "/status")
                if status == 200 and info.get("ready") and info.get("pid") == proc.pid:
                    lab.info = info
                    break
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise LabError(f"the lab did not start in {START_TIMEOUT_S:.0f}s:\n{lab.log()}")
            time.sleep(0.3)
        for cam in lab.info["cameras"].values():
            host = cam["address"]
            onvif_port = int(cam["onvif"].rsplit(":", 1)[1].split("/", 1)[0])
            rtsp_port = int(cam["rtsp"].split("/")[2].rsplit(":", 1)[1])
            for port in (onvif_port, rtsp_port):
                if not _port_open(host, port):
                    raise LabError(f"camera {host}:{port} does not answer:\n{lab.log()}")
    except BaseException:
        stop_lab(lab)
        raise
    return lab


def stop_lab(lab: Lab) -> None:
    """SIGTERM the lab (it stops its children), then SIGKILL its process group."""
    proc = lab.proc
    if proc is None:
        return
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=STOP_TIMEOUT_S)
    # The lab runs in its own session: its group id is its pid. Kill leftovers of that group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.wait(timeout=STOP_TIMEOUT_S)
    if lab.lock_fd is not None:
        os.close(lab.lock_fd)  # releases the flock
        lab.lock_fd = None


@pytest.fixture(scope="session")
def lab_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Lab]]:
    """Start a lab on any config: `lab_factory(config_path, control="HOST:PORT")`."""
    started: list[Lab] = []

    def factory(config_path: Path, control: str = DEFAULT_CONTROL) -> Lab:
        lab = start_lab(Path(config_path), control, tmp_path_factory.mktemp("lab"))
        started.append(lab)
        return lab

    try:
        yield factory
    finally:
        for lab in started:
            stop_lab(lab)


@pytest.fixture(scope="session")
def lab(lab_factory: Callable[..., Lab]) -> Lab:
    """The default simulated site (config/camnet.yaml), all devices ok at the start."""
    return lab_factory(DEFAULT_CONFIG, DEFAULT_CONTROL)
