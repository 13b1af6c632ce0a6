"""The cameras' picture memory, kept across restarts in `state_dir`.

What probes.image learns of a camera lives in memory: the count of bad checks in a row per
problem, and per frame size the previous frame, the reference view and the sharpness baseline.
Lost at a restart, a frozen or covered camera reads fine for its first checks (its alert
resolves, then pages again), and a turned or blurred one is learned afresh from the faulty
picture (its alert resolves for good). The time of the camera's last decoded frame is kept
too: without it a camera that is down loses camnet_camera_last_frame_timestamp_seconds at a
restart, and an alert on its age resolves. So the daemon writes that memory to
`STATE_DIR/picture-memory.npz` every SAVE_INTERVAL and when it stops, and reads it back at
start for the cameras still reached the same way.

The file is a compressed NumPy archive without pickles: the frames as uint8 arrays, the rest as
one JSON document. A file that is not such an archive is set aside (renamed `.bad`), one that
cannot be read now (permissions, I/O) is left alone, each with a warning, and camnet starts
afresh: the memory is an optimisation of accuracy, never a reason not to run. The first save
after such a start renames the unread file `.unread` before writing its own, so what it held
is still there once its permissions are fixed.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import os
import re
import stat
import time
from pathlib import Path
from typing import Any

import numpy as np

from monitor.logs import event
from monitor.state import DISPLAY_OPTIONS, State
from probes import image

log = logging.getLogger("camnet.memory")

FILE_NAME = "picture-memory.npz"
FORMAT = 1
SAVE_INTERVAL = 600.0  # s: a crash loses at most this much of what was learned
TMP_SUFFIX = ".tmp"
UNREAD_SUFFIX = ".unread"
MAX_FILE_BYTES = 512 * 2**20  # 100 cameras take ≈ 40 MB before compression
_saves = itertools.count(1)
# What a view keeps besides its frames; reference_features and reference_thumbnail are derived
# (recomputed lazily).
VIEW_ARRAYS = ("previous", "reference")
VIEW_NUMBERS = ("reference_time", "moved_since")
LAST_FRAME = "last_frame_time"  # probes.rtsp's key in the device state; optional in the file
MAX_FRAME_PIXELS = 4096 * 4096  # a stored frame larger than this is not ours


def reach_key(target: Any) -> str:
    """A digest of how a camera is reached: memory of another camera at the same id is void."""
    options = {k: v for k, v in sorted(target.options.items()) if k not in DISPLAY_OPTIONS}
    text = json.dumps([target.kind, target.address, options], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def snapshot(state: State) -> dict[str, tuple[str, dict[str, Any]]]:
    """Each camera's picture memory now: {id: (reach key, memory)}, frames shared, not copied
    (probes.image replaces a frame, never writes into one); `last_frame_time` beside the
    image memory's `streaks` and `views` when the camera ever gave a frame."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for device_id, rec in state.devices.items():
        memory = rec.probe_state.get("image") or {}
        last_frame = rec.probe_state.get(LAST_FRAME)
        if rec.kind == "camera" and (memory or last_frame is not None):
            views = {size: {**view, "sharpness_history": list(view.get("sharpness_history", []))}
                     for size, view in memory.get("views", {}).items()}
            kept: dict[str, Any] = {"streaks": dict(memory.get("streaks", {})), "views": views}
            if last_frame is not None:
                kept[LAST_FRAME] = float(last_frame)
            out[device_id] = (reach_key(rec.target), kept)
    return out


def save(path: Path, memories: dict[str, tuple[str, dict[str, Any]]]) -> None:
    """Write the memories to `path` atomically (a temporary file of its own renamed over it,
    so an interrupted save leaves the previous file whole)."""
    arrays: dict[str, np.ndarray] = {}
    doc: dict[str, Any] = {"format": FORMAT, "saved_at": time.time(), "cameras": {}}
    for n, (device_id, (key, memory)) in enumerate(sorted(memories.items())):
        views: dict[str, Any] = {}
        for m, (size, view) in enumerate(memory["views"].items()):
            entry: dict[str, Any] = {
                "sharpness_history": [float(x) for x in list(view.get("sharpness_history", []))]}
            for name in VIEW_NUMBERS:
                if view.get(name) is not None:
                    entry[name] = float(view[name])
            for name in VIEW_ARRAYS:
                frame = view.get(name)
                if isinstance(frame, np.ndarray):
                    entry[name] = f"a{n}_{m}_{name}"
                    arrays[entry[name]] = frame
            views[size] = entry
        doc["cameras"][device_id] = {"reach": key, "streaks": memory["streaks"], "views": views}
        if memory.get(LAST_FRAME) is not None:
            doc["cameras"][device_id][LAST_FRAME] = float(memory[LAST_FRAME])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{next(_saves)}{TMP_SUFFIX}")
    # Pictures of public places: readable by camnet's own user only, whatever the umask.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            arrays["memory"] = np.frombuffer(json.dumps(doc).encode(), np.uint8)
            savez: Any = np.savez_compressed  # numpy's stub reads **arrays as allow_pickle
            savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def load(path: Path) -> tuple[dict[str, tuple[str, dict[str, Any]]], int]:
    """The memories in `path` ({} when there is none) and how many views were left out (not
    of the size this camnet measures). ValueError saying what is wrong with the file; OSError
    when it cannot be read now (permissions, I/O)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return {}, 0
    if not stat.S_ISREG(st.st_mode):
        raise ValueError("not a regular file")
    if st.st_size > MAX_FILE_BYTES:
        raise ValueError(f"{st.st_size} bytes, over {MAX_FILE_BYTES}")
    with open(path, "rb") as f:
        try:
            return _read(f)
        except (ValueError, MemoryError):
            raise
        except OSError as e:
            if e.errno is not None:  # the disk, not the file
                raise
            raise ValueError(f"{type(e).__name__}: {e}") from None
        except Exception as e:  # not a zip, a missing part, a wrong type: unreadable
            raise ValueError(f"{type(e).__name__}: {e}") from None


def _read(f: Any) -> tuple[dict[str, tuple[str, dict[str, Any]]], int]:
    with np.load(f, allow_pickle=False) as archive:
        if sum(info.file_size for info in archive.zip.infolist()) > MAX_FILE_BYTES:
            raise ValueError(f"inflates to over {MAX_FILE_BYTES} bytes")
        doc = json.loads(archive["memory"].tobytes())
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError(f"unknown format {doc.get('format') if isinstance(doc, dict) else '?'}")
        out: dict[str, tuple[str, dict[str, Any]]] = {}
        dropped = 0
        for device_id, cam in doc["cameras"].items():
            views: dict[str, dict[str, Any]] = {}
            for size, entry in cam["views"].items():
                view: dict[str, Any] = {"sharpness_history": [
                    float(x) for x in entry["sharpness_history"]][-image.BASELINE_SAMPLES:]}
                for name in VIEW_NUMBERS:
                    if name in entry:
                        view[name] = float(entry[name])
                frames = {name: _frame(archive[entry[name]], f"{device_id} {size} {name}")
                          for name in VIEW_ARRAYS if name in entry}
                if not all(_fits(frame, str(size)) for frame in frames.values()):
                    dropped += 1  # measured otherwise than this camnet does: relearned
                    continue
                views[str(size)] = {**view, **frames}
            streaks = {str(k): int(v) for k, v in cam["streaks"].items()}
            kept: dict[str, Any] = {"streaks": streaks, "views": views}
            if cam.get(LAST_FRAME) is not None:  # absent from files of older camnets
                kept[LAST_FRAME] = float(cam[LAST_FRAME])
            out[str(device_id)] = (str(cam["reach"]), kept)
        return out, dropped


def _frame(array: np.ndarray, where: str) -> np.ndarray:
    if array.dtype != np.uint8 or array.ndim != 2 or not 0 < array.size <= MAX_FRAME_PIXELS:
        raise ValueError(f"{where}: not a grey frame ({array.dtype}, shape {array.shape})")
    return array


def _fits(frame: np.ndarray, size: str) -> bool:
    """Whether a stored frame is what probes.image makes of a frame of `size` ("WxH")."""
    match = re.fullmatch(r"(\d{1,5})x(\d{1,5})", size)
    if match is None or not int(match[1]) or not int(match[2]):
        return False
    height = int(match[2]) * image.SMALL_WIDTH / int(match[1])
    return frame.shape[1] == image.SMALL_WIDTH and abs(frame.shape[0] - height) <= 1


def restore(state: State, memories: dict[str, tuple[str, dict[str, Any]]]) -> int:
    """Give each camera still reached the same way its memory back; how many got it."""
    restored = 0
    for device_id, (key, memory) in memories.items():
        rec = state.devices.get(device_id)
        if rec is None or rec.kind != "camera" or reach_key(rec.target) != key:
            continue
        rec.probe_state["image"] = {k: v for k, v in memory.items() if k != LAST_FRAME}
        if memory.get(LAST_FRAME) is not None:
            rec.probe_state[LAST_FRAME] = memory[LAST_FRAME]
        restored += 1
    return restored


def read_into(state: State, path: Path) -> bool:
    """Restore what `path` holds into `state`, with a log line either way: a bad file is set
    aside (renamed .bad), one that cannot be read now is left as it is and True is returned
    (the first save must set it aside: set_aside_unread)."""
    with contextlib.suppress(OSError):  # a directory camnet may not even read
        for leftover in path.parent.glob(f"{path.name}.*{TMP_SUFFIX}"):
            leftover.unlink()  # a save cut short by a crash or a kill
    try:
        memories, dropped = load(path)
    except ValueError as e:
        bad = path.with_name(path.name + ".bad")
        try:
            os.replace(path, bad)
        except OSError:
            bad = path
        event(log, logging.WARNING, "picture memory unreadable; starting afresh",
              file=str(path), error=str(e), kept_as=str(bad))
        return False
    except (OSError, MemoryError) as e:
        event(log, logging.WARNING, "cannot read the picture memory; starting afresh",
              file=str(path), error=f"{type(e).__name__}: {e}")
        return True
    if memories:
        restored = restore(state, memories)
        event(log, logging.INFO, "picture memory restored", file=str(path), cameras=restored,
              stored=len(memories), views_dropped=dropped)
    return False


def set_aside_unread(path: Path) -> None:
    """Rename a memory file that could not be read at start to `.unread`, so that a save does
    not replace it (OSError when that cannot be done: then nothing may be saved over it)."""
    unread = path.with_name(path.name + UNREAD_SUFFIX)
    try:
        os.replace(path, unread)
    except FileNotFoundError:
        return  # gone meanwhile (the operator moved it): nothing to keep
    event(log, logging.WARNING, "the picture memory camnet could not read is kept aside",
          file=str(path), kept_as=str(unread))
