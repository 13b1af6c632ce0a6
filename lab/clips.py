"""Pre-encoded H.264 clips of the lab cameras, one per scene, resolution and picture fault.

Encoding live costs a core per few cameras; looping clips encoded once costs almost nothing
(FIELD-NOTES). Clips are built with ffmpeg from its own lavfi sources and cached by a hash of
everything that shapes them, so a second lab start reuses them.

Every clip: 7 s at 10 fps, keyframe every 10 frames (1 s, the bound on time to first frame),
no B-frames, an access-unit delimiter before every frame and SPS/PPS repeated before every
keyframe, raw Annex-B (`clip.h264`), plus a JPEG of one frame (`snapshot.jpg`).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
FPS = 10
# The moving element crosses the picture once per loop. 7 s is prime to the usual check intervals
# (10, 15, 20, 30, 60 s): grabs one interval apart never see the same phase of the loop, which
# a camera that really streams never repeats either (a 6 s loop with a 3 s crossing looked
# frozen to a 15 s check once the clock is masked).
DURATION_S = 7
KEYFRAME_INTERVAL = 10  # frames: one second at FPS
VARIANTS = ("ok", "black", "frozen", "blurred", "moved", "dark")
SCENES = ("fractal", "meadow", "market", "pattern")
RESOLUTIONS = ((640, 360), (1280, 720), (1920, 1080))
# Bump when a filter below changes, so cached clips are rebuilt.
GENERATOR_VERSION = "12"
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
)
ENCODE_TIMEOUT_S = 300


class ClipError(Exception):
    """A clip could not be generated (ffmpeg missing or failed)."""


@dataclass(frozen=True, slots=True)
class ClipSpec:
    """One clip: which scene, at which size, with which picture fault."""

    scene: str
    width: int
    height: int
    variant: str

    def key(self) -> str:
        """The cache key: changes when anything that shapes the clip changes."""
        text = "|".join(
            [GENERATOR_VERSION, self.scene, str(self.width), str(self.height), self.variant,
             str(FPS), str(DURATION_S), str(KEYFRAME_INTERVAL), _scene_source(self), _buildings(self),
             _variant_filter(self), _font()]
        )
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        return f"{self.scene}-{self.width}x{self.height}-{self.variant}-{digest}"


@dataclass(frozen=True, slots=True)
class Clip:
    """A generated clip on disk."""

    spec: ClipSpec
    h264: Path
    snapshot: Path


def default_cache_dir() -> Path:
    """Where clips are cached: $CAMNET_LAB_CACHE, else $XDG_CACHE_HOME/camnet-lab, else ~/.cache."""
    env = os.environ.get("CAMNET_LAB_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "camnet-lab"


def _font() -> str:
    for candidate in FONT_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    return ""


def _scene_source(spec: ClipSpec) -> str:
    """A lavfi graph for the still background of a scene (frame 60 of a generator)."""
    s = f"{spec.width}x{spec.height}"
    if spec.scene == "fractal":
        return f"mandelbrot=s={s}:maxiter=256"
    if spec.scene == "meadow":
        return (f"life=s={s}:mold=10:ratio=0.25:seed=7:death_color=#5d7f4a:"
                "life_color=#efe4c0:mold_color=#8a6a3a")
    if spec.scene == "market":
        # Cellular automaton texture tinted like roofs and walls in afternoon light.
        return (f"cellauto=s={s}:rule=110:seed=3,format=rgb24,"
                "lutrgb=r='val*0.55+70':g='val*0.45+55':b='val*0.35+40'")
    if spec.scene == "pattern":
        return f"testsrc2=s={s}"
    raise ValueError(f"unknown scene {spec.scene!r}")


def _buildings(spec: ClipSpec) -> str:
    """Large shapes (a village hall, a house, a door and windows) over the texture.

    Real scenes have structure at every scale; the generators alone are fine texture that a
    strong blur flattens completely, leaving edge-based blur measures nothing to measure.
    """
    w, h = spec.width, spec.height
    boxes = [  # x, y, width, height as fractions of the picture; colour
        (0.06, 0.34, 0.24, 0.42, "0xb0563a"), (0.62, 0.22, 0.30, 0.34, "0xe8e0d0"),
        (0.15, 0.55, 0.06, 0.21, "0x3a2a1a"), (0.66, 0.28, 0.07, 0.09, "0x30506a"),
        (0.80, 0.28, 0.07, 0.09, "0x30506a"), (0.40, 0.80, 0.45, 0.05, "0x707070"),
    ]
    return ",".join(
        f"drawbox=x={int(x * w)}:y={int(y * h)}:w={int(bw * w)}:h={int(bh * h)}:c={c}:t=fill"
        for x, y, bw, bh, c in boxes
    )


def _variant_filter(spec: ClipSpec) -> str:
    """Filters applied to the camera's view (before the on-screen clock is drawn)."""
    w, h = spec.width, spec.height
    if spec.variant in ("ok", "frozen"):
        return "null"
    if spec.variant == "moved":
        # The camera was turned: a different part of the scene, slightly rotated.
        return (f"crop=iw*0.7:ih*0.7:iw*0.3:ih*0.25,scale={w}:{h},"
                "rotate=0.14:fillcolor=0x505050")
    if spec.variant == "blurred":
        # Strong enough to wash out fine detail, weak enough that edges remain for the
        # edge-width measures (ffmpeg blurdetect finds no edges at all beyond ≈ w/50).
        return f"gblur=sigma={max(4, w // 80)}"
    if spec.variant == "dark":
        # Night: little light and a lot of sensor noise, but the scene is still there.
        # Mean luma lands near 26 of 255 (brightness ≈ 0.10): below the `dark` threshold,
        # above a covered lens, with structure and noise that a black picture lacks.
        return "colorlevels=romax=0.09:gomax=0.09:bomax=0.09,noise=alls=6:allf=t"
    if spec.variant == "black":
        # Covered lens: near-black with faint sensor noise.
        return "drawbox=c=black:t=fill,noise=alls=2:allf=t"
    raise ValueError(f"unknown variant {spec.variant!r}")


def _graph(spec: ClipSpec) -> str:
    """The filter graph on the still background (input 0): moving element, fault, clock."""
    w, h = spec.width, spec.height
    font = _font()
    fontfile = f"fontfile={font}:" if font else ""
    ow, oh = max(32, w // 10), max(24, h // 8)
    clock_size = max(12, h // 24)
    # A moving object (a person or cart) crossing the yard once per loop.
    moving = (f"testsrc=s={ow}x{oh}:r={FPS},format=rgb24[obj];"
              f"[bg][obj]overlay=x='mod(t*{w}/{DURATION_S},{w})':y={int(h * 0.62)}:shortest=1")
    clock = (f"drawtext={fontfile}text='%{{pts\\:hms}}':x={clock_size // 2}:y={clock_size // 2}:"
             f"fontsize={clock_size}:fontcolor=white:box=1:boxcolor=black@0.5")
    # The still is decoded once and looped inside the graph (`-loop 1` on the input would
    # decode the PNG again for every frame: most of the encoding time).
    # A turned camera sees another part of the scene, but people still walk through it: turn
    # the background before the moving element is drawn, or the crop can cut it out and leave
    # a picture that only the clock changes (which rightly looks frozen).
    turned = _variant_filter(spec) if spec.variant == "moved" else "null"
    after = "null" if spec.variant == "moved" else _variant_filter(spec)
    return (f"[0:v]format=rgb24,{_buildings(spec)},{turned},loop=loop=-1:size=1,"
            f"setpts=N/{FPS}/TB,format=rgb24[bg];"
            f"{moving},{after},{clock},format=yuv420p")


def background(spec: ClipSpec, root: Path) -> Path:
    """The still background of a scene at a size (frame 60 of its generator), cached as PNG.

    Rendering a generator (mandelbrot above all) costs more than encoding a clip, so it is done
    once per scene and size instead of once per variant.
    """
    source = _scene_source(spec)
    digest = hashlib.sha256(f"{GENERATOR_VERSION}|{source}".encode()).hexdigest()[:16]
    path = root / "backgrounds" / f"{spec.scene}-{spec.width}x{spec.height}-{digest}.png"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        _run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
              f"{source},trim=start_frame=60", "-frames:v", "1", tmp_name])
        os.replace(tmp_name, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
    return path


def _inputs(spec: ClipSpec, root: Path) -> list[str]:
    return ["-i", str(background(spec, root))]


def _encoder_args() -> list[str]:
    return [
        "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "main", "-bf", "0",
        "-g", str(KEYFRAME_INTERVAL), "-keyint_min", str(KEYFRAME_INTERVAL), "-sc_threshold", "0",
        "-crf", "26", "-x264-params", "aud=1:repeat-headers=1", "-pix_fmt", "yuv420p",
        "-f", "h264",
    ]


def _run(cmd: list[str]) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=ENCODE_TIMEOUT_S,
                              check=False)
    except FileNotFoundError as e:
        raise ClipError("ffmpeg is not installed (Debian package ffmpeg)") from e
    except subprocess.TimeoutExpired as e:
        raise ClipError(f"ffmpeg took more than {ENCODE_TIMEOUT_S}s") from e
    if proc.returncode != 0:
        raise ClipError(f"ffmpeg failed: {proc.stderr.strip()[-800:]}")


def _build(spec: ClipSpec, out_dir: Path, root: Path) -> None:
    """Encode one clip and its snapshot into out_dir."""
    h264 = out_dir / "clip.h264"
    base = ["ffmpeg", "-nostdin", "-v", "error", "-y"]
    if spec.variant == "frozen":
        # A stalled encoder repeats one frame: render the ok picture once, then encode it
        # unchanged for the whole clip (the clock stops too). The frame is one between two
        # keyframes of the ok clip: were it a keyframe's picture (frame 0 was), the first
        # grab after the camera recovers could be that very picture and still look frozen.
        ok = ClipSpec(spec.scene, spec.width, spec.height, "ok")
        still = out_dir / "still.png"
        between = KEYFRAME_INTERVAL // 2
        _run([*base, *_inputs(ok, root), "-filter_complex",
              f"{_graph(ok)},select=eq(n\\,{between})", "-frames:v", "1", str(still)])
        # One GOP at a constant quantiser, looped: every keyframe is the same bytes, so each
        # decoded frame is bit-identical (x264's rate control would vary keyframe quality).
        args = _encoder_args()
        args[args.index("-crf"):args.index("-crf") + 2] = ["-qp", "20"]
        _run([*base, "-loop", "1", "-framerate", str(FPS), "-i", str(still),
              "-frames:v", str(KEYFRAME_INTERVAL), "-vf", "format=yuv420p", *args, str(h264)])
        still.unlink()
    else:
        # -r: the looped still comes in at image2's 25 fps, and without it the output would be
        # 25 fps with every picture repeated (173 frames, a 17.3 s loop when served at FPS).
        _run([*base, *_inputs(spec, root), "-filter_complex", _graph(spec),
              "-t", str(DURATION_S), "-r", str(FPS), *_encoder_args(), str(h264)])
    # The snapshot shows the picture two seconds in (the moving element mid-frame).
    frame = 0 if spec.variant == "frozen" else 2 * FPS
    _run([*base, "-i", str(h264), "-vf", f"select=eq(n\\,{frame})", "-frames:v", "1",
          "-q:v", "4", str(out_dir / "snapshot.jpg")])
    if not (out_dir / "snapshot.jpg").exists():
        raise ClipError(f"ffmpeg wrote no snapshot for {spec.key()}")


def ensure_clip(spec: ClipSpec, cache_dir: Path | None = None) -> Clip:
    """The clip for spec, encoding it first unless it is already cached."""
    root = cache_dir or default_cache_dir()
    final = root / "clips" / spec.key()
    clip = Clip(spec, final / "clip.h264", final / "snapshot.jpg")
    if clip.h264.exists() and clip.snapshot.exists():
        return clip
    (root / "clips").mkdir(parents=True, exist_ok=True)
    if final.exists():  # an incomplete entry (an older bug or a crash): rebuild it
        shutil.rmtree(final, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.key()}.", dir=root / "clips"))
    try:
        _build(spec, tmp, root)
        try:
            tmp.rename(final)
        except OSError:
            if not final.exists():  # another process won the race: use its copy
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return clip


def ensure_clips(specs: list[ClipSpec], cache_dir: Path | None = None,
                 cancel: threading.Event | None = None) -> dict[ClipSpec, Clip]:
    """Every clip in specs, encoding the missing ones in parallel (one ffmpeg per core).

    Setting `cancel` stops starting new encodes (the running ones finish) and raises ClipError.
    """
    unique = list(dict.fromkeys(specs))
    workers = max(1, min(len(unique), os.cpu_count() or 1))
    root = cache_dir or default_cache_dir()

    def unless_cancelled(fn: Callable[[ClipSpec], T]) -> Callable[[ClipSpec], T]:
        def run(spec: ClipSpec) -> T:
            if cancel is not None and cancel.is_set():
                raise ClipError("clip generation cancelled")
            return fn(spec)
        return run

    with ThreadPoolExecutor(max_workers=workers) as pool:
        missing = [s for s in unique if not (root / "clips" / s.key() / "snapshot.jpg").exists()]
        scenes = {ClipSpec(s.scene, s.width, s.height, "ok"): None for s in missing}
        list(pool.map(unless_cancelled(lambda s: background(s, root)), scenes))
        clips = list(pool.map(unless_cancelled(lambda s: ensure_clip(s, cache_dir)), unique))
    _prune(root, unique)
    return {c.spec: c for c in clips}


def _prune(root: Path, specs: list[ClipSpec]) -> None:
    """Remove older builds of these clips (same scene, size and variant, another hash)."""
    current = {s.key() for s in specs}
    for spec in specs:
        prefix = f"{spec.scene}-{spec.width}x{spec.height}-{spec.variant}-"
        for old in (root / "clips").glob(prefix + "*"):
            if old.name not in current and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)


def all_specs(scene: str, width: int, height: int) -> list[ClipSpec]:
    """The clips of one camera: every picture variant of its scene and size."""
    return [ClipSpec(scene, width, height, v) for v in VARIANTS]


def main(argv: list[str] | None = None) -> int:
    """`python -m lab.clips`: build (or list) the clips of every scene at one size."""
    parser = argparse.ArgumentParser(description="Build the lab cameras' clips into the cache.")
    parser.add_argument("--size", default="640x360", help="WIDTHxHEIGHT")
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    w, _, h = args.size.partition("x")
    specs = [s for scene in SCENES for s in all_specs(scene, int(w), int(h))]
    try:
        clips = ensure_clips(specs, args.cache_dir)
    except ClipError as e:
        print(f"camnet lab: {e}", file=sys.stderr)
        return 1
    for clip in clips.values():
        print(clip.h264)
    return 0


if __name__ == "__main__":
    sys.exit(main())
