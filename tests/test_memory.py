"""monitor.memory: the cameras' picture memory across restarts, on disk and through a real
`camnet run` restart against the lab's cameras."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from monitor import memory
from monitor.config import load_config
from monitor.state import State
from probes import image
from tests import test_camera
from tests.lab_fixture import Lab
from tests.test_daemon import Daemon, daemon_factory  # noqa: F401  (a fixture)

camlab = test_camera.camlab  # the shared private camera lab (127.0.12.11-16)
clean = test_camera.clean
LISTEN = "127.0.13.110:9830"


def small_config(tmp: Path, address: str = "127.0.13.111") -> Path:
    path = tmp / "camnet.yaml"
    path.write_text(f"""
communes: [{{id: c1, name: "Đạ Ròn"}}]
sites: [{{id: s1, commune: c1, name: "Site 1"}}]
auths:
  cam: {{type: onvif, username: admin, password: "not-used-1"}}
  snmp: {{type: snmp, version: 2c, community: public}}
defaults: {{camera_auth: cam, ap_auth: snmp}}
cameras:
  - {{id: cam-1, site: s1, address: {address}, rtsp_url: "rtsp://{address}/s1"}}
  - {{id: cam-2, site: s1, address: 127.0.13.112, rtsp_url: "rtsp://127.0.13.112/s1"}}
aps:
  - {{id: ap-1, site: s1, address: 127.0.13.113}}
""")
    return path


def scene(seed: int, size: tuple[int, int] = (360, 640)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 255, size, dtype=np.uint8), (0, 0), 3)


def learned(frames: list[np.ndarray]) -> dict[str, Any]:
    """A camera's picture memory after probes.image judged these frames."""
    state: dict[str, Any] = {}
    for i, frame in enumerate(frames):
        image.assess(frame, image.ImageSettings(), state, now=1000.0 + i)
    return state


def state_of(path: Path) -> State:
    state = State()
    state.load(load_config(path))
    return state


def test_what_image_learned_comes_back_whole(tmp_path: Path) -> None:
    """Streaks, per-size previous frame, reference, its time and the sharpness baseline are
    written and read back as they were, for the cameras reached the same way only."""
    state = state_of(small_config(tmp_path))
    # The main stream (the same view, larger), then another view on the sub-stream.
    first = learned([scene(1), scene(1), cv2.resize(scene(1), (1280, 720)), scene(3)])
    state.devices["cam-1"].probe_state["image"] = first
    state.devices["cam-2"].probe_state["image"] = learned([scene(4)])
    state.devices["ap-1"].probe_state["image"] = {"streaks": {"x": 1}}  # not a camera
    path = tmp_path / "state" / memory.FILE_NAME
    memory.save(path, memory.snapshot(state))
    assert not list(path.parent.glob("*.tmp"))
    assert path.stat().st_mode & 0o777 == 0o600  # grey pictures of public places

    (tmp_path / "other").mkdir()
    moved = state_of(small_config(tmp_path / "other", address="127.0.13.119"))
    got, dropped = memory.load(path)
    assert set(got) == {"cam-1", "cam-2"} and dropped == 0
    assert memory.restore(moved, got) == 1  # cam-1 is reached elsewhere now: not its memory
    assert "image" not in moved.devices["cam-1"].probe_state
    again = state_of(small_config(tmp_path))
    assert memory.restore(again, got) == 2
    back = again.devices["cam-1"].probe_state["image"]
    assert back["streaks"] == first["streaks"]
    assert set(back["views"]) == set(first["views"]) == {"640x360", "1280x720"}
    for size, view in first["views"].items():
        for name in ("previous", "reference"):
            assert np.array_equal(back["views"][size][name], view[name]), (size, name)
        assert back["views"][size]["sharpness_history"] == view["sharpness_history"]
        assert back["views"][size]["reference_time"] == view["reference_time"]
    # The restored memory goes on as the old one would: the same frame is frozen.
    for memo in (first, back):
        report = image.assess(scene(3), image.ImageSettings(), memo, now=2000.0)
        assert report.bad["frozen"] is True and report.streaks["frozen"] == 1


def test_a_view_not_measured_as_now_is_relearned(tmp_path: Path) -> None:
    """A stored frame of another shape than probes.image makes of its size (another
    SMALL_WIDTH, an edited file) would break every check of the camera: that view is left out,
    the others come back."""
    state = state_of(small_config(tmp_path))
    memo = learned([scene(1), scene(2, (720, 1280))])
    memo["views"]["1280x720"]["previous"] = np.zeros((100, 100), np.uint8)
    state.devices["cam-1"].probe_state["image"] = memo
    path = tmp_path / memory.FILE_NAME
    memory.save(path, memory.snapshot(state))
    got, dropped = memory.load(path)
    assert dropped == 1 and set(got["cam-1"][1]["views"]) == {"640x360"}


async def test_saves_never_overlap(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Saves run one at a time in their own thread, whoever asks (the periodic one, stop),
    even when a waiter is cancelled mid-save; the file left is whole and readable."""
    from monitor.daemon import Daemon as InProcess

    cfg = small_config(tmp_path)
    daemon = InProcess(cfg, state_dir=tmp_path / "state")
    daemon._apply_loaded(load_config(cfg))
    daemon.state.devices["cam-1"].probe_state["image"] = learned([scene(1)])
    running: list[int] = []
    overlaps: list[int] = []
    real_save = memory.save

    def slow_save(path: Path, memories: Any) -> None:
        running.append(1)
        overlaps.append(len(running))
        time.sleep(0.2)
        real_save(path, memories)
        running.pop()

    monkeypatch.setattr(memory, "save", slow_save)
    first = asyncio.create_task(daemon.save_memory())
    await asyncio.sleep(0.05)
    first.cancel()  # the periodic saver, cancelled by stop() while its thread writes
    await asyncio.gather(*(daemon.save_memory() for _ in range(3)))
    assert overlaps == [1, 1, 1, 1]
    got, _ = memory.load(tmp_path / "state" / memory.FILE_NAME)
    assert set(got) == {"cam-1"}
    assert not list((tmp_path / "state").glob("*.tmp"))


def test_an_unreadable_directory_is_a_warning_not_a_failed_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A state directory camnet may not read (systemd's DynamicUser locks /var/lib/private for
    other users; the tests run as root, who reads anything, so the kernel's answer is played
    here): the file is left alone, camnet starts without its memory and says why."""
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / memory.FILE_NAME).write_bytes(b"kept as it is")
    real_stat, real_scandir = os.stat, os.scandir

    def denied(path: Any, *args: Any, **kwargs: Any) -> Any:
        if str(path).startswith(str(locked)):
            raise PermissionError(13, "Permission denied", str(path))
        return (real_scandir if kwargs.pop("_scandir", False) else real_stat)(path, *args,
                                                                              **kwargs)

    monkeypatch.setattr(os, "stat", denied)
    monkeypatch.setattr(os, "scandir", lambda path=".": denied(path, _scandir=True))
    with caplog.at_level(logging.WARNING, logger="camnet.memory"):
        memory.read_into(State(), locked / memory.FILE_NAME)
    monkeypatch.undo()
    assert "cannot read the picture memory" in caplog.text
    assert (locked / memory.FILE_NAME).read_bytes() == b"kept as it is"


def test_a_fifo_in_its_place_does_not_stall_the_start(tmp_path: Path) -> None:
    """Something that is not a regular file where the memory should be: set aside at once,
    never opened (a FIFO would block the read until a writer came)."""
    path = tmp_path / memory.FILE_NAME
    os.mkfifo(path)
    memory.read_into(state_of(small_config(tmp_path)), path)
    assert path.with_name(path.name + ".bad").exists() and not path.exists()


@pytest.mark.parametrize("damage", ["garbage", "pickle", "float-frame", "no-memory"])
def test_a_bad_file_is_set_aside_with_a_warning(tmp_path: Path, damage: str,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """Garbage, a pickled object, a frame that is not a grey uint8 image, a missing part:
    the file is renamed .bad, camnet starts afresh and says why."""
    state = state_of(small_config(tmp_path))
    path = tmp_path / memory.FILE_NAME
    if damage == "garbage":
        path.write_bytes(b"PK\x03\x04 not really a zip")
    elif damage == "pickle":
        np.savez(path, memory=np.array([{"evil": 1}], dtype=object))
    else:
        state.devices["cam-1"].probe_state["image"] = learned([scene(1)])
        memory.save(path, memory.snapshot(state))
        with np.load(path) as archive:
            arrays = dict(archive)
        if damage == "float-frame":
            name = next(k for k in arrays if k.endswith("previous"))
            arrays[name] = arrays[name].astype(np.float64)
        else:
            del arrays["memory"]
        np.savez(path.with_suffix(".tmp.npz"), **arrays)  # type: ignore[arg-type]
        path.with_suffix(".tmp.npz").replace(path)
    fresh = state_of(small_config(tmp_path))
    with caplog.at_level(logging.WARNING, logger="camnet.memory"):
        memory.read_into(fresh, path)
    assert not path.exists() and path.with_name(path.name + ".bad").exists()
    assert all("image" not in rec.probe_state for rec in fresh.devices.values())
    warning = [r for r in caplog.records if "picture memory unreadable" in r.getMessage()]
    assert warning, caplog.text
    fields = warning[0].__dict__["fields"]
    if damage == "float-frame":
        assert "cam-1 640x360 previous" in fields["error"]


def _problem(text: str, cam: str, problem: str) -> float | None:
    """camnet_camera_problem{camera=cam, problem=problem} in a /metrics text, or None."""
    for line in text.splitlines():
        if (line.startswith("camnet_camera_problem{") and f'camera="{cam}"' in line
                and f'problem="{problem}"' in line):
            return float(line.rsplit(" ", 1)[1])
    return None


def _wait_metrics(d: Daemon, what: str, cond: Any, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status, text = d.get("/metrics")
        if status == 200 and cond(text):
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{text[-3000:]}")
        time.sleep(0.2)


@pytest.mark.lab
def test_a_restart_keeps_frozen_and_moved_cameras_as_they_were(
        clean: Lab, tmp_path: Path, daemon_factory: list[Daemon]) -> None:  # noqa: F811
    """`camnet run` on the lab: a frozen camera and a turned one, each reported after two bad
    checks; camnet stopped (SIGTERM) and started again: the first export after the restart
    still says frozen and moved, and so do the next ones. Without the memory both read 0
    (no previous frame to compare; the turned view learned as the reference)."""
    cfg = tmp_path / "camnet.yaml"
    lab_cfg = clean.config_path.read_text()
    (tmp_path / "secrets").symlink_to(clean.config_path.parent / "secrets")
    cfg.write_text(lab_cfg.replace("defaults: {", "defaults: {camera_profile: fast, ") + f"""
server: {{listen: "{LISTEN}"}}
state_dir: state
profiles:
  fast: {{kind: camera, ping: {{enabled: false}}, onvif: {{interval: 5s, timeout: 3s}},
          rtsp: {{interval: 2s, timeout: 1500ms}}}}
""")
    assert "camera_profile: fast" in cfg.read_text()

    def start() -> Daemon:
        d = Daemon(cfg, LISTEN)
        daemon_factory.append(d)
        d.wait_healthy()
        return d

    d = start()
    _wait_metrics(d, "cam-a and cam-b healthy, references learned", lambda t: all(
        _problem(t, c, p) == 0 for c in ("cam-a", "cam-b") for p in ("frozen", "moved")))
    time.sleep(4)  # a few more healthy checks: the reference and baseline are learned
    clean.fault("cam-a", "frozen")
    clean.fault("cam-b", "moved")
    _wait_metrics(d, "frozen and moved reported", lambda t: _problem(t, "cam-a", "frozen") == 1
                  and _problem(t, "cam-b", "moved") == 1)
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(10) == 0
    assert (tmp_path / "state" / memory.FILE_NAME).exists()

    d = start()
    # From the first export of each camera on, over 4 s (about 3 checks).
    seen: list[tuple[float | None, float | None]] = []
    deadline = time.monotonic() + 30
    while len(seen) < 20 and time.monotonic() < deadline:
        status, text = d.get("/metrics")
        pair = (_problem(text, "cam-a", "frozen"), _problem(text, "cam-b", "moved"))
        if status == 200 and None not in pair:
            seen.append(pair)
        time.sleep(0.2)
    assert len(seen) == 20 and all(pair == (1.0, 1.0) for pair in seen), seen
    assert "picture memory restored" in d.log.read_text()


def test_a_down_camera_keeps_its_last_frame_time_across_a_restart(tmp_path: Path) -> None:
    """camnet_camera_last_frame_timestamp_seconds is exported while a camera fails (alerts
    watch its age): a restart must not drop it, nor its picture memory; a file of an older
    camnet without it still loads."""
    from probes import rtsp
    from probes.base import CheckResult

    before = state_of(small_config(tmp_path))
    before.devices["cam-1"].probe_state.update(image=learned([scene(1)]),
                                               last_frame_time=1_700_000_000.5)
    before.devices["cam-2"].probe_state["last_frame_time"] = 1_700_000_100.0  # stream only
    path = tmp_path / memory.FILE_NAME
    memory.save(path, memory.snapshot(before))
    after = state_of(small_config(tmp_path))
    memory.read_into(after, path)
    for cam, when in (("cam-1", 1_700_000_000.5), ("cam-2", 1_700_000_100.0)):
        state = after.devices[cam].probe_state
        result = rtsp._no_frame(CheckResult("rtsp", False, reason="unreachable"), state)
        assert [(s.name, s.value) for s in result.samples] == [
            ("camnet_camera_last_frame_timestamp_seconds", when)], cam
    assert "640x360" in after.devices["cam-1"].probe_state["image"]["views"]

    older = {k: (key, {"streaks": m["streaks"], "views": m["views"]})
             for k, (key, m) in memory.snapshot(before).items()}
    memory.save(path, older)
    got, _ = memory.load(path)
    assert "last_frame_time" not in got["cam-1"][1] and "640x360" in got["cam-1"][1]["views"]


async def test_a_memory_that_could_not_be_read_is_not_saved_over(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file camnet may not read now (left by a run as root) is left alone at start, and the
    saves that follow keep it as `.unread` instead of replacing it with what was learned
    since; the second save does not set aside camnet's own file."""
    from monitor.daemon import Daemon as InProcess

    cfg = small_config(tmp_path)
    kept = state_of(cfg)
    kept.devices["cam-1"].probe_state["image"] = learned([scene(1)])
    path = tmp_path / "state" / memory.FILE_NAME
    memory.save(path, memory.snapshot(kept))
    original = path.read_bytes()

    def denied(file: Any, *args: Any, **kwargs: Any) -> Any:
        if Path(file) == path:  # the tests run as root, who reads anything: the kernel's answer
            raise PermissionError(13, "Permission denied", str(file))
        return open(file, *args, **kwargs)

    daemon = InProcess(cfg, state_dir=tmp_path / "state")
    daemon._apply_loaded(load_config(cfg))
    monkeypatch.setattr(memory, "open", denied, raising=False)
    await daemon.read_memory(path)
    monkeypatch.undo()
    assert "image" not in daemon.state.devices["cam-1"].probe_state
    daemon.state.devices["cam-2"].probe_state["image"] = learned([scene(4)])
    await daemon.save_memory()
    await daemon.save_memory()
    unread = path.with_name(path.name + memory.UNREAD_SUFFIX)
    assert unread.read_bytes() == original
    assert set(memory.load(path)[0]) == {"cam-2"}
