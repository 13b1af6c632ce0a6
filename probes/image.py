"""Is the picture usable: brightness, contrast, sharpness, black, dark, frozen, blurred, moved.

Everything works on a small grey frame (the decoder's Y plane, resized): sharpness at 640 px wide,
frame differences and structure at 320 px wide, scene similarity at 80. Per-camera memory lives in
the device's state dict, so thresholds follow each camera's own healthy picture instead of one
global number: the consecutive-bad counters per camera, the rest (previous frame, reference view,
sharpness baseline) per frame size, since a sub-stream and the main stream do not compare.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from pydantic import Field, field_validator

from probes.base import Duration, StrictModel

IMAGE_PROBLEMS = ("black", "dark", "blurred", "frozen", "moved")

SHARPNESS_WIDTH = 640  # sharpness is only comparable between frames of the same size
SMALL_WIDTH = 320  # differences and structure: ≈ 1 ms a frame at this size
SIMILARITY_WIDTH = 80  # scene layout for "moved": noise averages out, ≈ 0.05 ms
GRID_COLUMNS = 32  # blocks across the small frame (10 px each at 320 wide)
BASELINE_SAMPLES = 15  # healthy sharpness values kept for the blur baseline (median)
NORMAL_CONTRAST = 0.1  # luma std (0–1) of a daylight view; lower contrast scales frozen_block_delta
# ... down to half of it: re-encoding a still night picture changes block means by up to 2 of 255
# (lab keyframes, JPEG at two qualities), and a lower threshold counts that noise as life.
MIN_DELTA_SCALE = 0.5
BLUR_SIGMAS = (2.0, 4.0)  # px at 320 wide: how soft a reference is tried against a soft picture
MIN_REFERENCE_FEATURES = 40  # below this a scene is too plain for ORB: use SSIM alone
MAX_VIEWS = 3  # frame sizes remembered per camera: sub-stream, main-stream fallback, one spare
MIN_UNMASKED = 0.25  # share of the frame the masks must leave to the frozen and moved checks
DEFAULT_STRUCTURE_STD = 0.5  # see ImageSettings.structure_std


class ImageSettings(StrictModel):
    """Thresholds of the picture checks; a problem needs `consecutive` bad checks in a row."""

    consecutive: int = Field(default=2, ge=1, le=100, description="bad checks in a row to raise")
    dark_brightness: float = Field(
        default=0.12, ge=0, le=1, description="mean luma (0–1) below which a picture is dark"
    )
    black_structure: float = Field(
        default=0.15, ge=0, le=1,
        description="a dark or flat picture with less than this share of textured blocks is black",
    )
    structure_std: float = Field(
        default=DEFAULT_STRUCTURE_STD, ge=0,
        description="luma std (0–255) for a block to count as textured (a covered lens gives 0)",
    )
    frozen_block_delta: float = Field(
        default=4.0, ge=0,
        description="mean luma change (0–255) for a block to count as changed; above the "
        "encoder noise between keyframes of a still picture (≤ 3 in the lab)",
    )
    frozen_changed_fraction: float = Field(
        default=0.02, ge=0, le=1,
        description="frozen when at most this share of blocks changed since the previous grab "
        "(an on-screen clock changes fewer)",
    )
    blur_ratio: float = Field(
        default=0.35, gt=0, le=1,
        description="blurred when sharpness falls below this share of the camera's healthy baseline",
    )
    blur_min_sharpness: float = Field(
        default=0.0, ge=0, description="blurred below this sharpness before a baseline exists (0: off)"
    )
    moved_similarity_ok: float = Field(
        default=0.8, ge=-1, le=1,
        description="scene similarity to the reference above which the view is unchanged",
    )
    moved_similarity: float = Field(
        default=0.3, ge=-1, le=1,
        description="scene similarity below which a soft or featureless view counts as moved",
    )
    moved_match_ratio: float = Field(
        default=0.2, ge=0, le=1, description="moved when fewer reference features than this match"
    )
    moved_shift: float = Field(
        default=0.04, ge=0, le=1,
        description="moved when the view shifted by more than this share of its width",
    )
    reference_refresh: Duration = Field(
        default=3600.0,
        description="seconds between refreshes of the reference view from a healthy, matching frame",
    )
    moved_relearn: Duration = Field(
        default=86400.0, description="seconds a moved view is kept before it becomes the new reference"
    )
    mask: list[tuple[float, float, float, float]] = Field(
        default_factory=list,
        description="regions (x, y, w, h as shares of the frame) ignored by frozen/moved, e.g. the OSD clock",
    )

    @field_validator("mask")
    @classmethod
    def _mask_inside_frame(
        cls, v: list[tuple[float, float, float, float]]
    ) -> list[tuple[float, float, float, float]]:
        for x, y, w, h in v:
            if not (0 <= x < 1 and 0 <= y < 1 and 0 < w <= 1 and 0 < h <= 1
                    and x + w <= 1 and y + h <= 1):
                raise ValueError(
                    f"mask {[x, y, w, h]} is not inside the frame: x and y must be in [0, 1), "
                    "w and h in (0, 1], x + w and y + h at most 1")
        covered = 1.0 - float(_mask_grid(v, 100, 100).mean())
        if covered > 1 - MIN_UNMASKED:
            raise ValueError(
                f"the masks cover {covered:.0%} of the frame; leave at least {MIN_UNMASKED:.0%} "
                "for the frozen and moved checks")
        return v


@dataclass(slots=True)
class ImageReport:
    """Measurements of one frame and the problems they raise."""

    brightness: float
    contrast: float
    sharpness: float
    structure: float
    changed_fraction: float | None = None
    scene_similarity: float | None = None
    scene_shift: float | None = None
    match_ratio: float | None = None
    baseline_sharpness: float | None = None
    bad: dict[str, bool | None] = field(default_factory=dict)  # None: not judged on this frame
    problems: dict[str, bool] = field(default_factory=dict)
    streaks: dict[str, int] = field(default_factory=dict)


def resize_width(grey: np.ndarray, width: int) -> np.ndarray:
    """Resize a grey frame to `width` pixels wide (area averaging), keeping its aspect ratio."""
    h, w = grey.shape[:2]
    if w == width:
        return grey
    height = max(1, round(h * width / w))
    return cv2.resize(grey, (width, height), interpolation=cv2.INTER_AREA)


def sharpness(grey640: np.ndarray) -> float:
    """Variance of the Laplacian of a grey frame (expected at 640 px wide)."""
    lap = cv2.Laplacian(grey640, cv2.CV_16S, ksize=1)
    _, std = cv2.meanStdDev(lap)
    return float(std[0, 0]) ** 2


def _grid_shape(small: np.ndarray) -> tuple[int, int]:
    h, w = small.shape[:2]
    return GRID_COLUMNS, max(1, round(GRID_COLUMNS * h / w))


def _mask_grid(mask: list[tuple[float, float, float, float]], cols: int, rows: int) -> np.ndarray:
    """Boolean grid of blocks to use (False inside the masks)."""
    keep = np.ones((rows, cols), dtype=bool)
    for x, y, w, h in mask:
        c0, c1 = int(x * cols), int(np.ceil((x + w) * cols))
        r0, r1 = int(y * rows), int(np.ceil((y + h) * rows))
        keep[max(0, r0):min(rows, r1), max(0, c0):min(cols, c1)] = False
    return keep


def structure(small: np.ndarray, structure_std: float) -> float:
    """Share of blocks whose own luma std reaches `structure_std` (texture, edges, noise)."""
    cols, rows = _grid_shape(small)
    f = small.astype(np.float32)
    mean = cv2.resize(f, (cols, rows), interpolation=cv2.INTER_AREA)
    sq = cv2.resize(f * f, (cols, rows), interpolation=cv2.INTER_AREA)
    std = np.sqrt(np.maximum(sq - mean * mean, 0.0))
    return float(np.mean(std >= structure_std))


def changed_fraction(prev: np.ndarray, cur: np.ndarray, settings: ImageSettings,
                     contrast: float | None = None) -> float:
    """Share of (unmasked) blocks whose mean luma changed by more than `frozen_block_delta`.

    Block-wise rather than a global mean: an on-screen clock changes a few blocks a lot while a
    frozen picture changes none, and a live scene changes many. `contrast` is `cur`'s (0–1),
    when known already.
    """
    cols, rows = _grid_shape(cur)
    diff = cv2.absdiff(prev, cur)
    blocks = cv2.resize(diff, (cols, rows), interpolation=cv2.INTER_AREA).astype(np.float32)
    keep = _mask_grid(settings.mask, cols, rows)
    # A low-contrast (night) picture changes by less in absolute terms: scale the threshold
    # with the picture's contrast, so its motion and sensor noise still count as life.
    if contrast is None:
        contrast = float(cv2.meanStdDev(cur)[1][0, 0]) / 255.0
    delta = settings.frozen_block_delta * min(1.0, max(MIN_DELTA_SCALE, contrast / NORMAL_CONTRAST))
    changed = (blocks > delta) & keep
    return float(changed.sum() / max(1, keep.sum()))


def thumbnail(small: np.ndarray) -> np.ndarray:
    """The view's layout: the frame SIMILARITY_WIDTH wide, as float32."""
    return resize_width(small, SIMILARITY_WIDTH).astype(np.float32)


def _tile_sums(a: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    return np.add.reduceat(np.add.reduceat(a, rows, axis=0), cols, axis=1)


def thumbnail_similarity(x: np.ndarray, y: np.ndarray) -> float:
    """scene_similarity of two thumbnails (see there); 0 when their shapes differ."""
    if x.shape != y.shape:
        return 0.0
    h, w = x.shape
    rows = np.arange(3) * h // 3
    cols = np.arange(4) * w // 4
    x64, y64 = x.astype(np.float64), y.astype(np.float64)  # sums of 8-bit values: exact
    n = np.outer(np.diff(np.append(rows, h)), np.diff(np.append(cols, w)))
    sx, sy = _tile_sums(x64, rows, cols), _tile_sums(y64, rows, cols)
    vx = _tile_sums(x64 * x64, rows, cols) - sx * sx / n
    vy = _tile_sums(y64 * y64, rows, cols) - sy * sy / n
    cov = _tile_sums(x64 * y64, rows, cols) - sx * sy / n
    den = np.sqrt(np.maximum(vx, 0.0) * np.maximum(vy, 0.0))
    # A flat tile in either view has no layout to disagree with: it scores as the same.
    scores = np.divide(cov, den, out=np.ones_like(cov), where=den > 0)
    return float(np.median(scores))


def scene_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """How much the layout of two views agrees: median over 4×3 tiles of the zero-mean
    normalised cross-correlation at 80 px wide (−1..1).

    Thumbnails ignore sensor noise; normalisation ignores a change of light level; the median
    over tiles ignores a passer-by or the on-screen clock in one or two tiles. The same view
    scores ≈ 0.9–1, a turned camera ≈ 0–0.3.
    """
    return thumbnail_similarity(thumbnail(a), thumbnail(b))


_ORB: Any = None


def _orb() -> Any:
    global _ORB  # one detector per process; creating one costs more than using it
    if _ORB is None:
        _ORB = cv2.ORB_create(nfeatures=400, fastThreshold=12)  # type: ignore[attr-defined]
    return _ORB


def _features(small: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """ORB keypoint coordinates and descriptors outside the masked blocks."""
    mask = None
    if not keep.all():
        mask = cv2.resize(keep.astype(np.uint8) * 255, (small.shape[1], small.shape[0]),
                          interpolation=cv2.INTER_NEAREST)
    kps, desc = _orb().detectAndCompute(small, mask)
    pts = np.array([k.pt for k in kps], dtype=np.float32).reshape(-1, 2)
    return pts, desc


def match_view(
    ref_pts: np.ndarray, ref_desc: np.ndarray, small: np.ndarray, keep: np.ndarray
) -> tuple[float, float]:
    """(share of reference features that match consistently, shift as a share of the width).

    A similarity transform fitted with RANSAC: lighting changes keep the features in place,
    a turned camera moves them together.
    """
    pts, desc = _features(small, keep)
    if desc is None or len(pts) < 4:
        return 0.0, 0.0
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True)
    matches = matcher.match(ref_desc, desc)
    if len(matches) < 4:
        return len(matches) / max(1, len(ref_pts)), 0.0
    src = ref_pts[np.array([m.queryIdx for m in matches])]
    dst = pts[np.array([m.trainIdx for m in matches])]
    transform, inliers = cv2.estimateAffinePartial2D(
        src, dst, method=cv2.RANSAC, ransacReprojThreshold=3.0
    )
    if transform is None or inliers is None:
        return 0.0, 0.0
    ratio = float(inliers.sum()) / max(1, len(ref_pts))
    shift = float(np.hypot(transform[0, 2], transform[1, 2])) / small.shape[1]
    return ratio, shift


def _view(state: dict[str, Any], key: str) -> dict[str, Any]:
    """The memory of this frame size in the camera's image state (least recently used dropped)."""
    views: dict[str, dict[str, Any]] = state.setdefault("views", {})
    view = views.pop(key, {})
    views[key] = view  # insertion order is the order of use
    while len(views) > MAX_VIEWS:
        del views[next(iter(views))]
    return view


def assess(grey: np.ndarray, settings: ImageSettings, state: dict[str, Any],
           now: float | None = None) -> ImageReport:
    """Measure a grey frame, compare it with this camera's memory in `state`, debounce problems.

    `state` is the camera's image memory (a dict kept across checks): the count of consecutive
    bad checks per problem and, per frame size, the previous frame, reference view and
    sharpness baseline. A check that cannot be judged on this frame leaves its count as it was.
    """
    size = f"{grey.shape[1]}x{grey.shape[0]}"
    frame = measure(resize_width(grey, SHARPNESS_WIDTH), size, settings.structure_std)
    return assess_measured(frame, settings, state, now)


@dataclass(slots=True)
class Measured:
    """What the picture checks need of a frame: `small` (SMALL_WIDTH wide), the decoded frame's
    size ("WxH", which keys the camera's memory) and what is measured on the frame alone."""

    small: np.ndarray
    sharpness: float  # at SHARPNESS_WIDTH
    size: str
    brightness: float  # mean luma, 0-1
    contrast: float  # luma std, 0-1
    structure: float  # share of textured blocks (see `structure`)


def measure(grey640: np.ndarray, size: str, structure_std: float) -> Measured:
    """The frame-only measurements of a grey frame SHARPNESS_WIDTH wide, decoded at `size`.

    The grab worker takes them right after decoding, while the frame is in its cache, and only
    the small frame crosses the pipe; the event loop then does only what needs the camera's
    memory (assess_measured: 0.49 → 0.24 ms back to back, docs/performance-camera.md).
    """
    small = resize_width(grey640, SMALL_WIDTH)
    mean, std = cv2.meanStdDev(small)
    return Measured(small, sharpness(grey640), size, float(mean[0, 0]) / 255.0,
                    float(std[0, 0]) / 255.0, structure(small, structure_std))


def assess_measured(frame: Measured, settings: ImageSettings, state: dict[str, Any],
                    now: float | None = None) -> ImageReport:
    """`assess` on a frame the grab worker has measured already."""
    now = time.time() if now is None else now
    small = frame.small
    view = _view(state, frame.size)
    report = ImageReport(
        brightness=frame.brightness,
        contrast=frame.contrast,
        sharpness=frame.sharpness,
        structure=frame.structure,
    )
    cols, rows = _grid_shape(small)
    keep = _mask_grid(settings.mask, cols, rows)
    bad: dict[str, bool | None] = dict.fromkeys(IMAGE_PROBLEMS)
    held = held_problems(state, settings)  # as the last checks left them

    flat = report.structure < settings.black_structure
    dim = report.brightness < settings.dark_brightness
    bad["black"] = flat and dim
    bad["dark"] = dim and not flat

    prev = view.get("previous")
    if prev is not None and not bad["black"]:
        report.changed_fraction = changed_fraction(prev, small, settings, frame.contrast)
        bad["frozen"] = report.changed_fraction <= settings.frozen_changed_fraction
    view["previous"] = small

    # Blur and view checks need a picture comparable with the healthy one: not black, not dark.
    if not dim:
        history: list[float] = view.setdefault("sharpness_history", [])
        softer: bool | None = None
        if history:
            report.baseline_sharpness = float(np.median(history))
            softer = report.sharpness < settings.blur_ratio * report.baseline_sharpness
        elif settings.blur_min_sharpness > 0:
            softer = report.sharpness < settings.blur_min_sharpness
        bad["moved"] = _moved(report, small, keep, settings, _reference_view(state, view, small),
                              bool(softer))
        if (bad["moved"] is False and held["moved"]
                and (report.scene_similarity or 0.0) < settings.moved_similarity_ok):
            # While the camera is held moved only a view that clearly matches the reference
            # clears it: feature matching alone accepts some frames of a turned view (a small
            # shift, a car crossing), and one such frame paged "resolved", then "moved" again.
            bad["moved"] = None
        # A turned or zoomed view is also less sharp: that is `moved`, not `blurred`.
        bad["blurred"] = False if bad["moved"] else softer

    # Nothing is learned while the camera is held moved: a frame size without a reference yet
    # (the picture fell back to the main stream) would take the turned view for the right one.
    if not any(bad.values()) and not held["moved"]:
        _learn(report, small, view, now, settings)
    elif bad["moved"]:
        since = view.setdefault("moved_since", now)
        if now - since >= settings.moved_relearn:
            # The camera was re-aimed on purpose long ago: the new view becomes the reference.
            _learn(report, small, view, now, settings, force_reference=True)
            view.pop("moved_since", None)
    if bad["moved"] is False:
        view.pop("moved_since", None)

    streaks: dict[str, int] = state.setdefault("streaks", {})
    for name, on in bad.items():
        if on is not None:
            streaks[name] = streaks.get(name, 0) + 1 if on else 0
    report.problems = held_problems(state, settings)
    report.bad = bad
    report.streaks = dict(streaks)
    return report


def held_problems(state: dict[str, Any], settings: ImageSettings) -> dict[str, bool]:
    """The picture problems as the camera's last checks left them (enough bad ones in a row)."""
    streaks = state.get("streaks", {})
    return {name: streaks.get(name, 0) >= settings.consecutive for name in IMAGE_PROBLEMS}


def _reference_view(state: dict[str, Any], view: dict[str, Any],
                    small: np.ndarray) -> dict[str, Any]:
    """The view whose reference `small` is compared with: its own, or before it has one, the
    last used view of the same shape that has one (a picture that fell back from the
    sub-stream to a main stream of the same shape is still compared with the view it had)."""
    if "reference" in view:
        return view
    for other in reversed(state.get("views", {}).values()):
        ref = other.get("reference")
        if ref is not None and ref.shape == small.shape:
            return other
    return view


def _moved(report: ImageReport, small: np.ndarray, keep: np.ndarray,
           settings: ImageSettings, view: dict[str, Any], softer: bool) -> bool | None:
    """Compare with the reference view (None before there is one): cheap similarity first, ORB
    only when it is in doubt.

    `softer` (sharpness fell) matters when features fail to match: blur wipes out ORB features
    while the layout of the view stays, so a soft picture whose thumbnail still resembles the
    reference is blurred, not moved.
    """
    ref = view.get("reference")
    if ref is None:
        return None
    if "reference_thumbnail" not in view:
        view["reference_thumbnail"] = thumbnail(ref)
    here = thumbnail(small)
    score = thumbnail_similarity(view["reference_thumbnail"], here)
    report.scene_similarity = score
    if score >= settings.moved_similarity_ok:
        return False
    if softer:
        # Compare with the reference blurred as much as the picture: a blurred view keeps its
        # layout, a turned one does not.
        soft = max(thumbnail_similarity(thumbnail(cv2.GaussianBlur(ref, (0, 0), sigma)), here)
                   for sigma in BLUR_SIGMAS)
        report.scene_similarity = max(score, soft)
        return report.scene_similarity < settings.moved_similarity
    if "reference_features" not in view:
        view["reference_features"] = _features(ref, keep)
    ref_pts, ref_desc = view["reference_features"]
    if ref_desc is None or len(ref_pts) < MIN_REFERENCE_FEATURES:
        return score < settings.moved_similarity
    ratio, shift = match_view(ref_pts, ref_desc, small, keep)
    report.match_ratio, report.scene_shift = ratio, shift
    return ratio < settings.moved_match_ratio or shift > settings.moved_shift


def _learn(report: ImageReport, small: np.ndarray, view: dict[str, Any], now: float,
           settings: ImageSettings, force_reference: bool = False) -> None:
    """Remember a healthy frame: sharpness baseline and, when new or due, the reference view."""
    history: list[float] = view.setdefault("sharpness_history", [])
    if force_reference:
        history.clear()
    history.append(report.sharpness)
    del history[:-BASELINE_SAMPLES]
    # The reference is refreshed rarely and only from a frame that clearly matches it (slow
    # changes of light and season); following every healthy frame would let a camera that is
    # turned a little at a time drag its reference along.
    due = now - view.get("reference_time", -np.inf) >= settings.reference_refresh
    similar = (report.scene_similarity is not None
               and report.scene_similarity >= settings.moved_similarity_ok)
    if not (force_reference or "reference" not in view or (due and similar)):
        return
    view["reference"] = small
    view.pop("reference_features", None)  # computed only when similarity is in doubt (≈ 3 ms)
    view.pop("reference_thumbnail", None)
    view["reference_time"] = now
