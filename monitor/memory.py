"""The cameras' picture memory, kept across restarts in `state_dir`.

What probes.image learns of a camera lives in memory: the count of bad checks in a row per
problem, and per frame size the previous frame, the reference view and the sharpness baseline.
Lost at a restart, a frozen or covered camera reads fine for its first checks (its alert
resolves, then pages again), and a turned or blurred one is learned afresh from the faulty
picture (its alert resolves for good). So the daemon writes that memory to
`STATE_DIR/picture-memory.npz` every SAVE_INTERVAL and when it stops, and reads it back at
start for the cameras still reached the same way.

The file is a NumPy archive without pickles: the frames as uint8 arrays, the rest as one JSON
document. A file that cannot be read is set aside (renamed `.bad`) with a warning and camnet
starts afresh: the memory is an optimisation of accuracy, never a reason not to run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from monitor.logs import event
from monitor.state import DISPLAY_OPTIONS, State

log = logging.getLogger("camnet.memory")

FILE_NAME = "picture-memory.npz"
FORMAT = 1
SAVE_INTERVAL = 300.0  # s: a crash loses at most this much of what was learned
# What a view keeps besides its frames; reference_features are derived (recomputed lazily).
VIEW_ARRAYS = ("previous", "reference")
VIEW_NUMBERS = ("reference_time", "moved_since")
MAX_FRAME_PIXELS = 4096 * 4096  # a stored frame larger than this is not ours


def reach_key(target: Any) -> str:
    """A digest of how a camera is reached: memory of another camera at the same id is void."""
    options = {k: v for k, v in sorted(target.options.items()) if k not in DISPLAY_OPTIONS}
    text = json.dumps([target.kind, target.address, options], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def snapshot(state: State) -> dict[str, tuple[str, dict[str, Any]]]:
    """Each camera's picture memory now: {id: (reach key, memory)}, frames shared, not copied
    (probes.image replaces a frame, never writes into one)."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for device_id, rec in state.devices.items():
        memory = rec.probe_state.get("image")
        if rec.kind == "camera" and memory:
            views = {size: dict(view) for size, view in memory.get("views", {}).items()}
            out[device_id] = (reach_key(rec.target), {"streaks": dict(memory.get("streaks", {})),
                                                      "views": views})
    return out


def save(path: Path, memories: dict[str, tuple[str, dict[str, Any]]]) -> None:
    """Write the memories to `path` atomically (a temporary file renamed over it)."""
    arrays: dict[str, np.ndarray] = {}
    doc: dict[str, Any] = {"format": FORMAT, "saved_at": time.time(), "cameras": {}}
    for n, (device_id, (key, memory)) in enumerate(sorted(memories.items())):
        views: dict[str, Any] = {}
        for m, (size, view) in enumerate(memory["views"].items()):
            entry: dict[str, Any] = {
                "sharpness_history": [float(x) for x in view.get("sharpness_history", [])]}
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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    # Pictures of public places: readable by camnet's own user only, whatever the umask.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a leftover .tmp keeps its old mode otherwise
    with os.fdopen(fd, "wb") as f:
        arrays["memory"] = np.frombuffer(json.dumps(doc).encode(), np.uint8)
        savez: Any = np.savez  # numpy's stub reads **arrays as its allow_pickle flag
        savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(path: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    """The memories in `path` ({} when there is none); ValueError saying what is wrong."""
    if not path.exists():
        return {}
    try:
        with np.load(path, allow_pickle=False) as archive:
            doc = json.loads(archive["memory"].tobytes())
            if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                raise ValueError(f"unknown format {doc.get('format') if isinstance(doc, dict) else '?'}")
            out: dict[str, tuple[str, dict[str, Any]]] = {}
            for device_id, cam in doc["cameras"].items():
                views: dict[str, dict[str, Any]] = {}
                for size, entry in cam["views"].items():
                    view: dict[str, Any] = {"sharpness_history": [
                        float(x) for x in entry["sharpness_history"]]}
                    for name in VIEW_NUMBERS:
                        if name in entry:
                            view[name] = float(entry[name])
                    for name in VIEW_ARRAYS:
                        if name in entry:
                            view[name] = _frame(archive[entry[name]], f"{device_id} {size} {name}")
                    views[str(size)] = view
                streaks = {str(k): int(v) for k, v in cam["streaks"].items()}
                out[str(device_id)] = (str(cam["reach"]), {"streaks": streaks, "views": views})
            return out
    except ValueError:
        raise
    except Exception as e:  # not a zip, a missing part, a wrong type: whatever it is, unreadable
        raise ValueError(f"{type(e).__name__}: {e}") from None


def _frame(array: np.ndarray, where: str) -> np.ndarray:
    if array.dtype != np.uint8 or array.ndim != 2 or not 0 < array.size <= MAX_FRAME_PIXELS:
        raise ValueError(f"{where}: not a grey frame ({array.dtype}, shape {array.shape})")
    return array


def restore(state: State, memories: dict[str, tuple[str, dict[str, Any]]]) -> int:
    """Give each camera still reached the same way its memory back; how many got it."""
    restored = 0
    for device_id, (key, memory) in memories.items():
        rec = state.devices.get(device_id)
        if rec is None or rec.kind != "camera" or reach_key(rec.target) != key:
            continue
        rec.probe_state["image"] = memory
        restored += 1
    return restored


def read_into(state: State, path: Path) -> None:
    """Restore what `path` holds into `state`; a bad file is set aside, with a warning."""
    try:
        memories = load(path)
    except ValueError as e:
        bad = path.with_name(path.name + ".bad")
        try:
            os.replace(path, bad)
        except OSError:
            bad = path
        event(log, logging.WARNING, "picture memory unreadable; starting afresh",
              file=str(path), error=str(e), kept_as=str(bad))
        return
    if memories:
        restored = restore(state, memories)
        event(log, logging.INFO, "picture memory restored", file=str(path), cameras=restored,
              stored=len(memories))
