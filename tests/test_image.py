"""Picture checks on synthetic frames: each fault raises its own problem and no other."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from probes import image
from probes.image import IMAGE_PROBLEMS, ImageReport, ImageSettings, assess, sharpness

W, H = 1280, 720


def scene(seed: int = 1, w: int = W, h: int = H) -> np.ndarray:
    """A textured street-like view: gradient, boxes and discs."""
    rng = np.random.default_rng(seed)
    img = np.empty((h, w), np.uint8)
    img[:] = np.linspace(90, 160, h, dtype=np.uint8)[:, None]
    for _ in range(60):
        x, y = int(rng.integers(0, w)), int(rng.integers(h // 4, h))
        bw, bh = int(rng.integers(w // 60, w // 6)), int(rng.integers(h // 40, h // 5))
        cv2.rectangle(img, (x, y), (x + bw, y + bh), int(rng.integers(20, 240)), -1)
    for _ in range(30):
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.circle(img, centre, int(rng.integers(5, 40)), int(rng.integers(0, 255)), -1)
    return img


def live(base: np.ndarray, t: int, noise: float = 3.0) -> np.ndarray:
    """Frame `t` of a live camera: a car crossing, sensor noise and the on-screen clock."""
    img = base.copy()
    x = (t * 97) % (base.shape[1] - 200)
    cv2.rectangle(img, (x, base.shape[0] // 2), (x + 160, base.shape[0] // 2 + 90), 230, -1)
    rng = np.random.default_rng(1000 + t)
    img = np.clip(img + rng.normal(0, noise, img.shape), 0, 255).astype(np.uint8)
    return clock(img, t)


def clock(img: np.ndarray, t: int) -> np.ndarray:
    """Draw a Hikvision-like date/time OSD in the top-left corner."""
    out = img.copy()
    text = f"29-11-2026 04:{t * 15 // 60 % 60:02d}:{t * 15 % 60:02d}"
    scale = 1.2 * img.shape[1] / 1280
    cv2.putText(out, text, (20, int(50 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, 2)
    return out


def run(frames: Iterable[np.ndarray], settings: ImageSettings | None = None,
        state: dict | None = None) -> list[ImageReport]:
    settings = settings or ImageSettings()
    state = {} if state is None else state
    return [assess(f, settings, state, now=float(i)) for i, f in enumerate(frames)]


def raised(report: ImageReport) -> set[str]:
    return {p for p, on in report.problems.items() if on}


BASE = scene()
HEALTHY = [live(BASE, t) for t in range(3)]


def test_healthy_live_scene_raises_nothing() -> None:
    reports = run(live(BASE, t) for t in range(6))
    assert all(raised(r) == set() for r in reports)
    r = reports[-1]
    assert 0.3 < r.brightness < 0.7
    assert r.contrast > 0.1
    assert r.sharpness > 100
    assert r.changed_fraction is not None and r.changed_fraction > 0.02
    assert set(r.problems) == set(IMAGE_PROBLEMS)


def after_healthy(make: Callable[[int], np.ndarray], n: int = 3) -> list[ImageReport]:
    return run([*HEALTHY, *(make(t) for t in range(10, 10 + n))])


def test_covered_lens_with_clock_is_black_not_dark() -> None:
    covered = np.full((H, W), 16, np.uint8)
    reports = after_healthy(lambda t: clock(covered, t))
    assert raised(reports[-1]) == {"black"}
    assert reports[-1].brightness < 0.12


def test_night_scene_is_dark_not_black() -> None:
    # Same mean brightness as the covered lens, but the scene's structure is still there.
    night = (BASE.astype(np.float32) * 0.1 + 4).astype(np.uint8)
    reports = after_healthy(lambda t: live(night, t, noise=1.5))
    assert reports[-1].brightness < 0.12
    assert raised(reports[-1]) == {"dark"}


def test_frozen_picture_with_ticking_clock_is_frozen() -> None:
    still = live(BASE, 5)
    frozen_frames = [clock(still, t) for t in range(10, 13)]
    reports = run([*HEALTHY, still, *frozen_frames])
    assert raised(reports[-1]) == {"frozen"}
    assert reports[-1].changed_fraction is not None and reports[-1].changed_fraction <= 0.02


def test_blur_is_relative_to_the_camera_baseline() -> None:
    blurred = cv2.GaussianBlur(BASE, (0, 0), 4)
    reports = after_healthy(lambda t: live(blurred, t, noise=0.5))
    assert raised(reports[-1]) == {"blurred"}
    assert reports[-1].baseline_sharpness is not None
    assert reports[-1].sharpness < 0.35 * reports[-1].baseline_sharpness


def test_plain_scene_is_not_blurred_without_a_baseline_drop() -> None:
    # A plain view has low sharpness in absolute terms; it is its own baseline.
    plain = cv2.GaussianBlur(BASE, (0, 0), 4)
    reports = run(live(plain, t, noise=0.5) for t in range(5))
    assert all(raised(r) == set() for r in reports)


def shifted(img: np.ndarray, share: float) -> np.ndarray:
    m = np.float32([[1, 0, share * img.shape[1]], [0, 1, 0]])
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), borderMode=cv2.BORDER_REFLECT)


def test_turned_camera_is_moved() -> None:
    turned = shifted(BASE, 0.1)
    reports = after_healthy(lambda t: live(turned, t))
    assert raised(reports[-1]) == {"moved"}
    assert reports[-1].scene_shift is not None and reports[-1].scene_shift > 0.05


def test_lighting_change_is_not_movement() -> None:
    brighter = np.clip(BASE.astype(np.int16) + 40, 0, 255).astype(np.uint8)
    reports = after_healthy(lambda t: live(brighter, t))
    assert all(raised(r) == set() for r in reports)


def test_featureless_view_uses_scene_similarity() -> None:
    # A plain wall with a dark doorway and a window: too few corners for ORB.
    plain = np.full((H, W), 150, np.uint8)
    cv2.rectangle(plain, (W // 5, H // 4), (W // 5 + W // 8, H), 40, -1)
    cv2.rectangle(plain, (W // 2, H // 4), (W // 2 + W // 4, H // 2), 220, -1)
    plain = cv2.GaussianBlur(plain, (0, 0), 6)
    other = shifted(plain, 0.25)
    state: dict = {}
    reports = run([*(live(plain, t) for t in range(3)), *(live(other, t) for t in range(3))],
                  state=state)
    assert len(state["views"]["1280x720"]["reference_features"][0]) < 40  # too plain: similarity decided
    assert raised(reports[-1]) == {"moved"}


def test_one_odd_frame_does_not_raise() -> None:
    covered = np.full((H, W), 16, np.uint8)
    reports = run([*HEALTHY, clock(covered, 9), live(BASE, 10), live(BASE, 11)])
    assert reports[3].bad["black"] and not reports[3].problems["black"]
    assert all(raised(r) == set() for r in reports)


@pytest.mark.parametrize("consecutive", [1, 3])
def test_consecutive_is_configurable(consecutive: int) -> None:
    covered = np.full((H, W), 16, np.uint8)
    settings = ImageSettings(consecutive=consecutive)
    reports = run([*HEALTHY, *(clock(covered, t) for t in range(4))], settings)
    first = next(i for i, r in enumerate(reports) if r.problems["black"])
    assert first == len(HEALTHY) + consecutive - 1


def test_problem_clears_when_picture_recovers() -> None:
    covered = np.full((H, W), 16, np.uint8)
    reports = run([*HEALTHY, *(clock(covered, t) for t in range(3)), live(BASE, 20)])
    assert reports[-2].problems["black"] and not reports[-1].problems["black"]


def test_mask_hides_a_changing_region_from_frozen() -> None:
    still = live(BASE, 5)
    # A big banner in the top quarter keeps changing: without a mask it looks alive.
    def banner(t: int) -> np.ndarray:
        img = still.copy()
        img[: H // 4] = (t * 40) % 255
        return img
    frames = [*HEALTHY, still, *(banner(t) for t in range(3))]
    assert not run(frames)[-1].bad["frozen"]
    masked = ImageSettings(mask=[(0.0, 0.0, 1.0, 0.3)])
    assert run(frames, masked)[-1].bad["frozen"]


def test_moved_view_becomes_reference_after_relearn_time() -> None:
    turned = shifted(BASE, 0.1)
    settings = ImageSettings(moved_relearn=5.0)
    reports = run([*HEALTHY, *(live(turned, t) for t in range(10, 20))], settings)
    assert reports[5].problems["moved"]
    assert not reports[-1].problems["moved"]


def test_sharpness_is_resolution_independent_enough() -> None:
    # The metric is measured at 640 wide, so the same view at 720p and 1080p agrees.
    big = cv2.resize(BASE, (1920, 1080), interpolation=cv2.INTER_CUBIC)
    small = cv2.resize(BASE, (640, 360), interpolation=cv2.INTER_AREA)
    a = run([big])[0].sharpness
    b = sharpness(small)
    assert abs(a - b) / b < 0.25


def sub_stream(img: np.ndarray, w: int = 640, h: int = 360) -> np.ndarray:
    """The camera's low-bitrate sub-stream: the same view, smaller and softer (≈ 0.2 of the
    main stream's sharpness at 640 wide)."""
    return cv2.GaussianBlur(cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA), (0, 0), 0.7)


def night(img: np.ndarray) -> np.ndarray:
    return (img.astype(np.float32) * 0.1 + 4).astype(np.uint8)


def test_moved_is_judged_on_the_main_stream_after_a_4_3_sub_stream() -> None:
    # The picture was judged on a 640x480 sub-stream, which then fails for good: the main
    # stream learns its own reference and still sees the camera turned.
    turned = shifted(BASE, 0.1)
    frames = [*(sub_stream(live(BASE, t), 640, 480) for t in range(3)),
              *(live(BASE, t) for t in range(3, 6)), *(live(turned, t) for t in range(6, 9))]
    reports = run(frames)
    assert all(raised(r) == set() for r in reports[:6])
    assert raised(reports[-1]) == {"moved"}


@pytest.mark.parametrize("sub_size", [(640, 360), (640, 480)])
def test_a_turned_camera_stays_moved_when_its_picture_falls_back_to_the_main_stream(
        sub_size: tuple[int, int]) -> None:
    # Turned while judged on the sub-stream, which then fails: the main stream, which has no
    # reference of its own, is decoded for the next checks (picture_retry). It learned the
    # turned view as its reference and cleared `moved` at its second check: the police were
    # told "resolved" for a camera still turned.
    turned = shifted(BASE, 0.1)
    frames = [*(sub_stream(live(BASE, t), *sub_size) for t in range(3)),
              *(sub_stream(live(turned, t), *sub_size) for t in range(3, 6)),
              *(live(turned, t) for t in range(6, 14))]
    reports = run(frames)
    assert [raised(r) for r in reports[5:]] == [{"moved"}] * 9


def test_a_camera_turned_back_on_the_main_stream_recovers() -> None:
    # The same, then turned back while still on the main stream: a main stream of the
    # sub-stream's shape is compared with the sub-stream's reference, so it recovers at once.
    turned = shifted(BASE, 0.1)
    frames = [*(sub_stream(live(BASE, t)) for t in range(3)),
              *(sub_stream(live(turned, t)) for t in range(3, 6)),
              *(live(turned, t) for t in range(6, 9)), *(live(BASE, t) for t in range(9, 12))]
    reports = run(frames)
    assert raised(reports[8]) == {"moved"} and raised(reports[9]) == set()
    assert reports[9].bad["moved"] is False


def test_a_turned_camera_is_cleared_only_by_a_view_that_clearly_matches() -> None:
    # Held moved, then frames shifted by 3 %: feature matching alone calls them unmoved (as a
    # never-moved camera's shake), but they do not clear the held problem; the view itself
    # does, at once.
    turned, nudged = shifted(BASE, 0.1), shifted(BASE, 0.03)
    reports = run([*HEALTHY, *(live(turned, t) for t in range(3, 6)),
                   *(live(nudged, t) for t in range(6, 9)), live(BASE, 9)])
    assert [raised(r) for r in reports[5:9]] == [{"moved"}] * 4
    assert reports[6].bad["moved"] is None and reports[6].scene_similarity < 0.8
    assert raised(reports[9]) == set() and reports[9].bad["moved"] is False
    never_moved = run([*HEALTHY, *(live(nudged, t) for t in range(3, 6))])
    assert all(raised(r) == set() and r.bad["moved"] is False for r in never_moved[3:])


def test_frozen_counts_on_across_a_change_of_frame_size() -> None:
    # Frozen on the sub-stream once, then the main stream: its first frame has nothing of its
    # size to compare with, so the count waits instead of starting again.
    still = live(BASE, 5)
    frames = [*(sub_stream(live(BASE, t), 640, 480) for t in range(3)),
              *(sub_stream(clock(still, t), 640, 480) for t in range(10, 12)),
              *(clock(still, t) for t in range(12, 14))]
    reports = run(frames)
    assert raised(reports[6]) == {"frozen"}
    assert reports[4].bad["frozen"] and reports[4].streaks["frozen"] == 1
    assert reports[5].bad["frozen"] is None and reports[5].streaks["frozen"] == 1


@pytest.mark.parametrize("sub_size", [(640, 360), (640, 480)])
def test_switching_between_streams_raises_nothing(sub_size: tuple[int, int]) -> None:
    # The main-stream fallback (sharper, maybe another shape) and back, twice: each stream is
    # compared with its own past only.
    spans = [False, True, False, True, False, True]  # main stream first, as after a restart
    frames = [sub_stream(live(BASE, t), *sub_size) if sub else live(BASE, t)
              for i, sub in enumerate(spans) for t in range(4 * i, 4 * i + 4)]
    reports = run(frames)
    assert all(raised(r) == set() and not any(r.bad.values()) for r in reports), [
        (i, r.bad) for i, r in enumerate(reports) if any(r.bad.values())]


def test_at_most_a_few_frame_sizes_are_remembered() -> None:
    state: dict = {}
    sizes = [(640, 360), (1280, 720), (640, 480), (704, 576), (1280, 720)]
    run([cv2.resize(BASE, size, interpolation=cv2.INTER_AREA) for size in sizes], state=state)
    assert list(state["views"]) == ["640x480", "704x576", "1280x720"]  # 640x360: least recently used


def test_night_does_not_clear_a_turned_camera() -> None:
    turned = shifted(BASE, 0.1)
    reports = run([*HEALTHY, *(live(turned, t) for t in range(10, 13)),
                   *(live(night(turned), t, noise=1.5) for t in range(13, 16)),
                   live(turned, 16)])
    assert raised(reports[5]) == {"moved"}
    assert raised(reports[8]) == {"moved", "dark"}
    assert raised(reports[-1]) == {"moved"}
    assert all(r.bad["moved"] is None for r in reports[6:9])  # not judged at night


def test_moved_relearn_counts_through_the_nights() -> None:
    turned = shifted(BASE, 0.1)
    settings = ImageSettings(moved_relearn=5.0)
    reports = run([*HEALTHY, *(live(turned, t) for t in range(3, 5)),
                   *(live(night(turned), t, noise=1.5) for t in range(5, 9)),
                   *(live(turned, t) for t in range(9, 11))], settings)
    assert reports[4].problems["moved"]
    assert not reports[-1].problems["moved"]


def test_night_does_not_clear_a_blurred_camera() -> None:
    blurred = cv2.GaussianBlur(BASE, (0, 0), 4)
    reports = run([*HEALTHY, *(live(blurred, t, noise=0.5) for t in range(10, 13)),
                   *(live(night(blurred), t, noise=0.5) for t in range(13, 15))])
    assert raised(reports[5]) == {"blurred"}
    assert raised(reports[-1]) == {"blurred", "dark"}
    assert reports[-1].bad["blurred"] is None  # not judged at night


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)


def dim(img: np.ndarray) -> np.ndarray:
    """A night view without lights: little contrast (≈ 0.01), below the dark threshold."""
    return (img.astype(np.float32) * 0.05 + 6).astype(np.uint8)


def test_dark_picture_encoded_again_is_frozen() -> None:
    # The encoder noise of a still night picture is not life, however low its contrast.
    still = dim(live(BASE, 5, noise=0))
    reports = run([*HEALTHY, *(jpeg(still, q) for q in (90, 50, 90, 60))])
    assert reports[-1].contrast < 0.02
    assert raised(reports[-1]) == {"dark", "frozen"}


def test_two_dark_scenes_are_not_frozen() -> None:
    views = [dim(scene(1)), dim(scene(7))]
    reports = run([*HEALTHY, *(jpeg(views[t % 2], 90) for t in range(4))])
    assert raised(reports[-1]) == {"dark"}


@pytest.mark.parametrize(("mask", "error"), [
    ([(-0.1, 0.0, 0.3, 0.1)], "is not inside the frame"),
    ([(0.0, 1.0, 0.3, 0.1)], "is not inside the frame"),
    ([(0.0, 0.0, 0.0, 0.1)], "is not inside the frame"),
    ([(0.0, 0.0, 0.3, -0.1)], "is not inside the frame"),
    ([(0.8, 0.0, 0.3, 0.1)], "is not inside the frame"),
    ([(0.0, 0.5, 0.3, 0.6)], "is not inside the frame"),
    ([(0.0, 0.0, 1.0, 1.0)], "the masks cover 100% of the frame; leave at least 25%"),
    ([(0.0, 0.0, 1.0, 0.5), (0.0, 0.5, 0.6, 0.5)], "the masks cover 80% of the frame"),
])
def test_mask_must_lie_inside_the_frame_and_leave_most_of_it(
        mask: list[tuple[float, float, float, float]], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        ImageSettings(mask=mask)


def test_valid_masks_are_kept() -> None:
    masks = [(0.0, 0.0, 0.4, 0.08), (0.6, 0.0, 0.4, 1.0), (0.6, 0.0, 0.4, 1.0)]
    assert ImageSettings(mask=masks).mask == masks


def _tile_ncc_reference(a: np.ndarray, b: np.ndarray) -> float:
    """scene_similarity by its definition: median over 4×3 tiles of the zero-mean NCC."""
    x, y = (image.resize_width(f, image.SIMILARITY_WIDTH).astype(np.float64) for f in (a, b))
    h, w = x.shape
    scores = []
    for r in range(3):
        for c in range(4):
            tx = x[r * h // 3:(r + 1) * h // 3, c * w // 4:(c + 1) * w // 4]
            ty = y[r * h // 3:(r + 1) * h // 3, c * w // 4:(c + 1) * w // 4]
            tx, ty = tx - tx.mean(), ty - ty.mean()
            den = np.sqrt((tx * tx).sum() * (ty * ty).sum())
            scores.append((tx * ty).sum() / den if den > 0 else 1.0)
    return float(np.median(scores))


@pytest.mark.parametrize("size", [(320, 180), (320, 240), (320, 200), (321, 181)])
def test_scene_similarity_is_the_median_tile_correlation(size: tuple[int, int]) -> None:
    """Tile sums in one pass equal the definition, for tiles of unequal size and flat tiles."""
    w, h = size
    rng = np.random.default_rng(w + h)
    a = cv2.resize(scene(3), (w, h), interpolation=cv2.INTER_AREA)
    turned = np.roll(a, w // 3, axis=1)
    flat_top = a.copy()
    flat_top[: h // 2] = 40  # flat tiles: as the same view
    noisy = np.clip(a + rng.normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    for b in (a, turned, flat_top, noisy, np.full_like(a, 7)):
        assert image.scene_similarity(a, b) == pytest.approx(_tile_ncc_reference(a, b), abs=1e-6)
