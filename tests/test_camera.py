"""The camera verdict, and full camera checks (ONVIF + RTSP + picture) on a private lab.

The lab (tests/lab_fixture.py) runs six cameras on 127.0.12.11-16: positions 0-5 of
lab.cameras.camera_look (720p Hikvision with RTSP digest, 1080p Axis, 720p Hikvision, then
360p Axis, Hikvision, Axis). Oracles we did not write: ffprobe for stream facts, ffmpeg's
blackdetect/freezedetect/blurdetect for the picture.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import pytest

from monitor.config import LoadedConfig, load_config
from probes import camera, image, onvif, rtsp
from probes.base import CheckResult, Status
from tests.lab_fixture import Lab

PASSWORD = "camera-tests-pw-12"
CONTROL = "127.0.12.251:9839"
CAMERAS = {f"cam-{n}": f"127.0.12.{11 + i}" for i, n in enumerate("abcdef")}
FFMPEG_TIMEOUT_S = 60.0
# ffprobe/ffmpeg read 5 s of an RTSP stream before they answer by default (analyzeduration);
# the lab's SDP carries the parameter sets, so half a second gives the same codec, size and
# rate in a third of the time.
PROBE_FAST = ("-analyzeduration", "500000")
CHECK_TIMEOUT_S = 6.0
KEYFRAME_GAP_S = 1.1  # lab clips have a keyframe every second: successive grabs see new ones


# ---------------------------------------------------------------- verdict (no lab)


def result(check: str, success: bool, reason: str = "", **problems: bool) -> CheckResult:
    return CheckResult(check, success, reason=reason, problems=dict(problems))


def exported(samples: list[Any]) -> dict[str, float]:
    return {s.labels["problem"]: s.value for s in samples if s.name == "camnet_camera_problem"}


def test_every_problem_is_always_exported() -> None:
    status, reasons, samples = camera.verdict({"rtsp": result("rtsp", True)})
    assert status is Status.OK and reasons == []
    assert exported(samples) == dict.fromkeys(camera.PROBLEMS, 0.0)
    assert [s.value for s in samples if s.name == "camnet_camera_up"] == [1.0]


def test_without_an_rtsp_check_the_other_checks_decide() -> None:
    """RTSP disabled in the profile, or `camnet probe --skip rtsp`: no frame was to be
    grabbed, so no camnet_camera_up, and a camera whose ONVIF answers is not CRITICAL."""
    status, reasons, samples = camera.verdict({"onvif": result("onvif", True),
                                               "ping": result("ping", True)})
    assert (status, reasons) == (Status.OK, [])
    assert "camnet_camera_up" not in [s.name for s in samples]
    status, reasons, _ = camera.verdict({"onvif": result("onvif", False, "unreachable"),
                                         "ping": result("ping", True)})
    assert (status, reasons) == (Status.WARNING, ["onvif: unreachable"])
    status, reasons, _ = camera.verdict({"onvif": result("onvif", False, "timeout"),
                                         "ping": result("ping", False, "unreachable")})
    assert (status, reasons) == (Status.CRITICAL, ["onvif: timeout", "ping: unreachable"])


def test_unreachable_masks_stream_and_picture_problems() -> None:
    status, reasons, samples = camera.verdict({
        "onvif": result("onvif", False, "unreachable"),
        "rtsp": result("rtsp", False, "unreachable", unreachable=True, no_stream=True, black=True),
    })
    assert status is Status.CRITICAL
    assert reasons == ["unreachable"]
    assert exported(samples)["no_stream"] == 0.0


def test_a_grabbed_frame_overrides_a_failing_onvif() -> None:
    status, reasons, _ = camera.verdict({
        "onvif": result("onvif", False, "timeout"),
        "rtsp": result("rtsp", True, dark=True),
    })
    assert status is Status.WARNING and reasons == ["dark"]


def _profile(token: str, encoding: str | None, width: int = 0, height: int = 0) -> Any:
    """A media profile shaped as zeep returns it (only what the choice reads)."""
    enc = None if encoding is None else SimpleNamespace(
        Encoding=encoding, Resolution=SimpleNamespace(Width=width, Height=height))
    return SimpleNamespace(token=token, VideoEncoderConfiguration=enc)


def test_picture_profile_is_the_smallest_video_profile_below_the_main_one() -> None:
    main = _profile("main", "H264", 1920, 1080)
    sub = _profile("sub", "H264", 640, 360)
    third = _profile("third", "H265", 704, 576)
    jpeg = _profile("jpeg", "JPEG", 320, 180)
    audio = _profile("audio", None)
    assert onvif.picture_profile([main, third, sub, jpeg, audio], main) is sub
    assert onvif.picture_profile([main, third, jpeg], main) is third
    # No smaller H.264/H.265 profile (the Axis recording: H.264 and JPEG at one size).
    same = _profile("same", "H264", 1920, 1080)
    assert onvif.picture_profile([main, same, jpeg, audio], main) is None
    assert onvif.picture_profile([main], main) is None
    # A sub-stream announced larger than the main stream is not a sub-stream.
    assert onvif.picture_profile([sub, main], sub) is None


def test_critical_and_warning_problems() -> None:
    assert camera.verdict({"rtsp": result("rtsp", True, frozen=True)})[0] is Status.CRITICAL
    assert camera.verdict({"rtsp": result("rtsp", True, black=True)})[0] is Status.CRITICAL
    for p in ("blurred", "moved", "dark"):
        assert camera.verdict({"rtsp": result("rtsp", True, **{p: True})})[0] is Status.WARNING
    onv = result("onvif", True, clock_drift=True)
    assert camera.verdict({"onvif": onv, "rtsp": result("rtsp", True)})[:2] == (
        Status.WARNING, ["clock_drift"])
    assert camera.verdict({})[0] is Status.UNKNOWN


def test_no_frame_without_a_named_problem_is_still_critical() -> None:
    status, reasons, _ = camera.verdict({"rtsp": result("rtsp", False, "timeout")})
    assert status is Status.CRITICAL and reasons == ["timeout"]


# ---------------------------------------------------------------- the private lab


def write_config(tmp: Path) -> Path:
    (tmp / "secrets").mkdir()
    (tmp / "secrets" / "cam.password").write_text(PASSWORD + "\n")
    cams = "\n".join(f"  - {{id: {cid}, site: s1, address: {addr}}}"
                     for cid, addr in CAMERAS.items())
    path = tmp / "camnet.yaml"
    path.write_text(f"""
defaults: {{camera_auth: cam, onvif_port: 8080}}
communes: [{{id: daron, name: "Đạ Ròn"}}]
sites: [{{id: s1, commune: daron, name: "Site 1"}}]
auths:
  cam: {{type: onvif, username: admin, password_file: secrets/cam.password}}
cameras:
{cams}
""")
    return path


_SHARED: dict[str, Lab] = {}


@pytest.fixture(scope="session")
def camlab(lab_factory: Any, tmp_path_factory: pytest.TempPathFactory) -> Lab:
    """A private six-camera lab shared by the camera test modules.

    test_onvif and test_rtsp reuse this function as their own fixture; pytest then sees one
    fixture per module, so the lab itself is kept here to start it only once per session
    (lab_factory stops it at the end of the session).
    """
    if "lab" not in _SHARED:
        _SHARED["lab"] = lab_factory(write_config(tmp_path_factory.mktemp("camlab")), CONTROL)
    return _SHARED["lab"]


@pytest.fixture(scope="session")
def camcfg(camlab: Lab) -> LoadedConfig:
    """The lab's config, loaded as the daemon would."""
    return load_config(camlab.config_path)


@pytest.fixture
def clean(camlab: Lab) -> Iterator[Lab]:
    """Every camera ok before and after the test."""
    camlab.reset()
    yield camlab
    camlab.reset()


@pytest.fixture
async def pool() -> Any:
    """The grab workers of this test's event loop, stopped afterwards (no orphans)."""
    yield rtsp.get_pool()
    await rtsp.shutdown()


class Camera:
    """One lab camera as the daemon sees it: target, profile, per-device state."""

    def __init__(self, cfg: LoadedConfig, cid: str, timeout: float = CHECK_TIMEOUT_S,
                 **image: Any) -> None:
        self.timeout = timeout
        dev = cfg.device(cid)
        assert dev is not None
        self.target = cfg.target(dev)
        profile = cfg.profile_for(dev)
        self.onvif_settings = profile.onvif.model_copy(update={"auth_backoff": 2.0})
        img = profile.rtsp.image.model_copy(update=image)
        self.rtsp_settings = profile.rtsp.model_copy(update={"image": img, "auth_backoff": 2.0})
        self.state: dict[str, Any] = {}

    async def check(self) -> tuple[Status, set[str], dict[str, CheckResult]]:
        loop = asyncio.get_running_loop()
        o = await onvif.probe_onvif(self.target, self.onvif_settings, self.state,
                                    loop.time() + self.timeout)
        r = await rtsp.probe_rtsp(self.target, self.rtsp_settings, self.state,
                                  loop.time() + self.timeout)
        status, reasons, _ = camera.verdict({"onvif": o, "rtsp": r})
        return status, set(reasons), {"onvif": o, "rtsp": r}

    async def checks(self, n: int) -> tuple[Status, set[str], dict[str, CheckResult]]:
        out = None
        for _ in range(n):
            out = await self.check()
            await asyncio.sleep(KEYFRAME_GAP_S)
        assert out is not None
        return out


def url(lab: Lab, cid: str) -> str:
    cam = lab.camera(cid)
    u = str(cam["rtsp"])
    if cam["rtsp_auth"]:
        u = u.replace("rtsp://", f"rtsp://admin:{PASSWORD}@", 1)
    return u


def ffmpeg_filters(stream: str, vf: str, seconds: float = 4.0) -> str:
    proc = subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-rtsp_transport", "tcp", *PROBE_FAST, "-timeout", "10000000",
         "-i", stream, "-t", str(seconds), "-vf", vf, "-an", "-f", "null", "-"],
        capture_output=True, text=True, timeout=FFMPEG_TIMEOUT_S, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stderr


def _ffprobe_size(stream: str) -> tuple[str, int, int]:
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-rtsp_transport", "tcp", *PROBE_FAST, "-select_streams", "v:0",
         "-show_entries", "stream=codec_name,width,height", "-of", "json", stream],
        capture_output=True, text=True, timeout=FFMPEG_TIMEOUT_S, check=False,
    )
    assert probe.returncode == 0, probe.stderr
    s = json.loads(probe.stdout)["streams"][0]
    return s["codec_name"], int(s["width"]), int(s["height"])


@pytest.mark.lab
@pytest.mark.parametrize("cid", ["cam-a", "cam-b", "cam-d"])
async def test_healthy_camera_is_ok_and_facts_match_ffprobe(
        clean: Lab, camcfg: LoadedConfig, pool: Any, cid: str) -> None:
    cam = Camera(camcfg, cid)
    status, problems, results = await cam.checks(2)
    assert (status, problems) == (Status.OK, set())
    facts = results["rtsp"].facts
    assert (facts["codec"], facts["width"], facts["height"]) == _ffprobe_size(url(clean, cid))
    # The keyframe camnet decoded is the size of the stream's keyframes as ffprobe reads them
    # (the lab loops a few different ones; a P-frame or the decoded picture would be far off).
    packets = subprocess.run(
        ["ffprobe", "-v", "error", "-rtsp_transport", "tcp", *PROBE_FAST, "-select_streams", "v:0",
         "-show_entries", "packet=size,flags", "-read_intervals", "%+#40", "-of", "json",
         url(clean, cid)],
        capture_output=True, text=True, timeout=FFMPEG_TIMEOUT_S, check=False,
    )
    assert packets.returncode == 0, packets.stderr
    keys = [int(p["size"]) for p in json.loads(packets.stdout)["packets"] if "K" in p["flags"]]
    assert keys and 0.7 * min(keys) <= facts["keyframe_bytes"] <= 1.3 * max(keys), (
        facts["keyframe_bytes"], keys)
    # The second check of a healthy camera keeps the first check's JPEG (frame_refresh).
    assert "frame_jpeg" not in results["rtsp"].artifacts
    assert results["rtsp"].artifacts["last_frame_jpeg"][:2] == b"\xff\xd8"
    # No secret anywhere in what a check reports.
    assert PASSWORD not in repr(results)
    assert results["onvif"].facts["vendor"] == clean.camera(cid)["vendor"].upper()


PICTURE_FAULTS = ["black", "frozen", "blurred", "moved", "dark"]


@pytest.mark.lab
@pytest.mark.parametrize("cid", ["cam-e"])  # cam-d: test_ffmpeg_filters_agree_with_the_verdict
@pytest.mark.parametrize("fault", PICTURE_FAULTS)
async def test_picture_fault_is_its_own_problem(
        clean: Lab, camcfg: LoadedConfig, pool: Any, cid: str, fault: str) -> None:
    cam = Camera(camcfg, cid)
    _, problems, _ = await cam.checks(2)
    assert problems == set()
    clean.fault(cid, fault)
    # The first picture after the switch is compared with a healthy one; two more raise it.
    _, problems, results = await cam.checks(3)
    assert problems == {fault}, results["rtsp"].facts
    # While the picture is in trouble every check renews the kept frame (an alert shows it).
    assert results["rtsp"].artifacts["frame_jpeg"][:2] == b"\xff\xd8"
    clean.fault(cid, "ok")
    _, problems, _ = await cam.checks(1)  # one healthy picture clears it
    assert problems == set()


@pytest.mark.lab
@pytest.mark.parametrize(("fault", "expected"), [
    ("offline", "unreachable"), ("hang", "no_stream"), ("slow=30", "no_stream"),
    ("stall", "no_stream"),
    ("auth", "auth_failed"), ("clock=+600", "clock_drift"),
])
async def test_device_fault_is_its_own_problem(
        clean: Lab, camcfg: LoadedConfig, pool: Any, fault: str, expected: str) -> None:
    cam = Camera(camcfg, "cam-f", timeout=3.0)
    assert (await cam.check())[1] == set()
    clean.fault("cam-f", fault)
    status, problems, results = await cam.check()
    assert problems == {expected}
    if expected == "clock_drift":
        assert status is Status.WARNING
        assert results["onvif"].facts["clock_offset"] == pytest.approx(600, abs=3)
        assert results["rtsp"].success
    else:
        assert status is Status.CRITICAL
        # The last decoded frame stays available for the alert.
        assert results["rtsp"].artifacts["last_frame_jpeg"][:2] == b"\xff\xd8"


@pytest.mark.lab
async def test_ffmpeg_filters_agree_with_the_verdict(
        clean: Lab, camcfg: LoadedConfig, pool: Any) -> None:
    """Each picture state is its own problem, and blackdetect, freezedetect and blurdetect on
    the same stream say what camnet says."""
    cid = "cam-d"
    stream = url(clean, cid)
    verdicts: dict[str, set[str]] = {}
    ffmpeg: dict[str, tuple[bool, bool, float]] = {}
    for state in ["ok", "black", "frozen", "blurred", "dark"]:
        clean.fault(cid, "ok")
        cam = Camera(camcfg, cid)
        await cam.checks(2)
        clean.fault(cid, state)
        # ffmpeg reads the same stream while camnet checks it (one after the other took 47 s).
        # pix_th: a pixel is black below 16 + 3% of the range; a night picture (mean ≈ 26)
        # is not black, a covered lens (16) is.
        filters = asyncio.create_task(asyncio.to_thread(
            ffmpeg_filters, stream, "blackdetect=d=1:pix_th=0.03:pic_th=0.9,"
            "freezedetect=n=-60dB:d=2,blurdetect", seconds=3))
        verdicts[state] = (await cam.checks(3))[1]
        log = await filters
        assert verdicts[state] == ({state} if state != "ok" else set())
        blur = float(re.findall(r"blur mean: ([\d.]+)", log)[-1])
        ffmpeg[state] = ("black_start" in log, "freeze_start" in log, blur)
    for state, (black, frozen, _) in ffmpeg.items():
        assert black == ("black" in verdicts[state]), (state, ffmpeg, verdicts)
        if state != "black":  # a black picture is also still; camnet reports it as black only
            assert frozen == ("frozen" in verdicts[state]), (state, ffmpeg, verdicts)
    blurred_by_ffmpeg = {s for s, (_, _, b) in ffmpeg.items()
                         if s != "black" and b > 2 * ffmpeg["ok"][2]}
    assert blurred_by_ffmpeg == {s for s, v in verdicts.items() if "blurred" in v}


@pytest.mark.lab
async def test_save_frame_keeps_the_last_frame(
        clean: Lab, camcfg: LoadedConfig, pool: Any, tmp_path: Path) -> None:
    cam = Camera(camcfg, "cam-e")
    _, _, results = await cam.check()
    jpeg = results["rtsp"].artifacts["frame_jpeg"]
    path = tmp_path / "frame.jpg"
    path.write_bytes(jpeg)
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,width", "-of", "json",
         str(path)], capture_output=True, text=True, timeout=FFMPEG_TIMEOUT_S, check=False)
    stream = json.loads(probe.stdout)["streams"][0]
    assert stream["codec_name"] == "mjpeg" and stream["width"] == rtsp.FRAME_WIDTH
    assert cam.state["last_frame_jpeg"] == jpeg
    # All is well: the next check does not encode a new JPEG...
    _, _, results = await cam.check()
    assert "frame_jpeg" not in results["rtsp"].artifacts
    assert results["rtsp"].artifacts["last_frame_jpeg"] == jpeg
    # ...until frame_refresh has passed.
    cam.rtsp_settings = cam.rtsp_settings.model_copy(update={"frame_refresh": 0.0})
    taken = cam.state["last_frame_jpeg_time"]
    _, _, results = await cam.check()
    assert results["rtsp"].artifacts["frame_jpeg"][:2] == b"\xff\xd8"
    assert cam.state["last_frame_jpeg_time"] > taken


@pytest.mark.lab
async def test_picture_checks_read_the_sub_stream(
        clean: Lab, camcfg: LoadedConfig, pool: Any) -> None:
    """A 720p Hikvision camera: ONVIF announces its 640x360 sub-stream (Profile_2), the
    picture is judged there, and the camera's facts stay the main stream's (ffprobe)."""
    cam = Camera(camcfg, "cam-a")
    # auto: 4x the pixels is worth a second session (AUTO_MIN_RATIO), 3x is not.
    _, problems, results = await cam.checks(1)
    assert cam.state["picture_ratio"] == 4.0
    cam.state["picture_ratio"] = 3.0
    _, problems, results = await cam.checks(1)
    assert problems == set() and "picture_stream" not in results["rtsp"].facts
    cam.state["picture_ratio"] = 4.0
    status, problems, results = await cam.checks(2)
    assert (status, problems) == (Status.OK, set())
    picture = str(cam.state["picture_uri"])
    assert "/Streaming/Channels/102?" in picture and "profile=Profile_2" in picture
    facts = results["rtsp"].facts
    assert facts["picture_stream"] == picture
    main = url(clean, "cam-a")
    assert (facts["codec"], facts["width"], facts["height"]) == _ffprobe_size(main)
    sub = rtsp.with_credentials(picture, cam.target)
    assert (facts["codec"], facts["picture_width"], facts["picture_height"]) == (
        _ffprobe_size(sub)) == ("h264", 640, 360)
    assert facts["picture_keyframe_bytes"] < facts["keyframe_bytes"] / 2
    assert PASSWORD not in repr(results)
    # The sub-stream shows what the main stream shows: a covered lens is seen there.
    clean.fault("cam-a", "black")
    _, problems, results = await cam.checks(3)
    assert problems == {"black"}, results["rtsp"].facts
    assert results["rtsp"].facts["picture_stream"] == picture
    # `picture_stream: main` decodes the main stream, as before.
    clean.fault("cam-a", "ok")
    cam.rtsp_settings = cam.rtsp_settings.model_copy(update={"picture_stream": "main"})
    _, problems, results = await cam.checks(1)
    assert problems == set()
    assert "picture_stream" not in results["rtsp"].facts
    assert results["rtsp"].facts["width"] == 1280
    # The two streams' pictures are remembered apart (previous frame, reference view,
    # sharpness baseline), though both are measured at 640 px wide: they do not compare.
    assert list(cam.state["image"]["views"]) == ["640x360", "1280x720"]


@pytest.mark.lab
async def test_both_streams_go_to_one_worker_request(
        clean: Lab, camcfg: LoadedConfig, pool: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The main stream waited for and the picture stream decoded are one worker request: one
    pipe round trip and one process woken per check (docs/performance-camera.md)."""
    cam = Camera(camcfg, "cam-a")
    await cam.checks(1)  # ONVIF announces the sub-stream
    requests: list[dict[str, Any]] = []
    real = rtsp._Worker.request

    async def request(self: Any, req: dict[str, Any]) -> Any:
        requests.append(req)
        return await real(self, req)

    monkeypatch.setattr(rtsp._Worker, "request", request)
    status, _, results = await cam.checks(1)
    assert status == Status.OK and "picture_stream" in results["rtsp"].facts
    assert len(requests) == 1, requests
    assert "/Streaming/Channels/102?" in requests[0]["picture"]["url"]
    assert "/Streaming/Channels/102?" not in requests[0]["url"]


@pytest.mark.lab
@pytest.mark.parametrize(("structure_std", "picture"), [
    (image.DEFAULT_STRUCTURE_STD, "auto"), (255.0, "main")])
async def test_the_worker_measures_the_frame_with_the_cameras_settings(
        clean: Lab, camcfg: LoadedConfig, pool: Any, monkeypatch: pytest.MonkeyPatch,
        structure_std: float, picture: str) -> None:
    """What the grab worker measures of the frame it sends (brightness, contrast, structure)
    is what image.measure gives on that frame, with the camera's own structure_std, whether
    the frame is the sub-stream's (one request for both streams) or the main stream's."""
    cam = Camera(camcfg, "cam-a", structure_std=structure_std)
    cam.rtsp_settings = cam.rtsp_settings.model_copy(update={"picture_stream": picture})
    grabs: list[rtsp.Grab] = []
    real = rtsp.GrabPool.grab

    async def grab(self: Any, *args: Any, **kwargs: Any) -> rtsp.Grab:
        grabs.append(await real(self, *args, **kwargs))
        return grabs[-1]

    monkeypatch.setattr(rtsp.GrabPool, "grab", grab)
    await cam.checks(2)
    assert [g.header.get("picture") is not None for g in grabs] == [picture == "auto"] * 2
    for g in grabs:
        mean, std = cv2.meanStdDev(g.grey)
        assert g.header["brightness"] == pytest.approx(mean[0, 0] / 255.0)
        assert g.header["contrast"] == pytest.approx(std[0, 0] / 255.0)
        assert g.header["structure"] == image.structure(g.grey, structure_std)
        assert (g.header["structure"] > 0.5) == (structure_std < 100)  # 255: nothing textured


@pytest.mark.lab
async def test_a_failing_picture_stream_falls_back_to_the_main_stream(
        clean: Lab, camcfg: LoadedConfig, pool: Any) -> None:
    """A picture stream that fails (here: a channel the camera does not serve) costs no check:
    the main stream is decoded at once, and the picture stream is left alone for a while."""
    cam = Camera(camcfg, "cam-a")
    main = str(url(clean, "cam-a")).replace(f"admin:{PASSWORD}@", "")
    cam.target.options["picture_url"] = re.sub(r"Channels/\d+", "Channels/999", main)
    status, problems, results = await cam.check()
    assert (status, problems) == (Status.OK, set()), results["rtsp"].facts
    facts = results["rtsp"].facts
    assert facts["picture_stream_error"].startswith("no_stream"), facts
    assert "picture_stream" not in facts and facts["width"] == 1280
    assert any(x.name == "camnet_camera_sharpness" for x in results["rtsp"].samples)
    assert "picture_failed_at" in cam.state
    # Within picture_retry the broken stream is not asked again.
    await asyncio.sleep(KEYFRAME_GAP_S)
    _, problems, results = await cam.check()
    assert problems == set() and "picture_stream_error" not in results["rtsp"].facts
    # After it, the picture stream is tried again (and fails again, the same way).
    cam.rtsp_settings = cam.rtsp_settings.model_copy(update={"picture_retry": 0.0})
    _, problems, results = await cam.check()
    assert problems == set() and "picture_stream_error" in results["rtsp"].facts


@pytest.mark.lab
async def test_a_hanging_picture_stream_leaves_time_for_the_main_stream(
        clean: Lab, camcfg: LoadedConfig, pool: Any) -> None:
    """The picture stream gets half the check's time: one that never answers (another lab
    camera in `hang`) still leaves the main stream time to be decoded in the same check."""
    cam = Camera(camcfg, "cam-a")
    clean.fault("cam-c", "hang")
    hanging = str(clean.camera("cam-c")["rtsp"])
    cam.target.options["picture_url"] = hanging
    loop = asyncio.get_running_loop()
    # Per worker request: (the picture stream read beside the main one, seconds given to the
    # main stream, seconds given to the picture stream).
    given: list[tuple[bool, float, float | None]] = []
    real_grab = pool.grab

    async def grab(u: str, deadline: float, *args: Any, **kwargs: Any) -> Any:
        picture = kwargs.get("picture")
        assert not u.endswith(hanging.split("://", 1)[1])  # the hanging one is never the main
        given.append((picture is not None and picture[0].endswith(hanging.split("://", 1)[1]),
                      deadline - loop.time(), picture[1] - loop.time() if picture else None))
        return await real_grab(u, deadline, *args, **kwargs)

    pool.grab = grab
    status, problems, results = await cam.check()
    assert (status, problems) == (Status.OK, set()), results["rtsp"].facts
    assert results["rtsp"].facts["picture_stream_error"].startswith("timeout"), results["rtsp"].facts
    assert results["rtsp"].facts["width"] == 1280 and "picture_stream" not in results["rtsp"].facts
    # One request: the main stream waited for with the whole time, the picture stream given
    # half of it; then the main stream decoded with what the picture stream left.
    (pair, t1, p1), (alone, t2, p2) = given
    assert pair and p1 is not None and p1 <= 0.55 * t1, given
    assert not alone and p2 is None and t2 >= 0.4 * t1, given


@pytest.mark.lab
async def test_main_stream_alive_without_a_decoded_picture_holds_the_picture_verdict(
        clean: Lab, camcfg: LoadedConfig, pool: Any) -> None:
    """The picture stream fails and the main stream's decode misses the deadline too, while
    its keyframe did arrive: the camera streams (up, no `no_stream`), the picture is not
    judged this time, and a picture problem already raised stays raised (no flapping page)."""
    cam = Camera(camcfg, "cam-a")
    clean.fault("cam-a", "dark")
    _, problems, _ = await cam.checks(4)
    assert problems == {"dark"}
    streaks = dict(cam.state["image"]["streaks"])
    main = str(url(clean, "cam-a")).replace(f"admin:{PASSWORD}@", "")
    cam.target.options["picture_url"] = re.sub(r"Channels/\d+", "Channels/999", main)
    real_grab = pool.grab
    decodes: list[str] = []

    async def grab(u: str, deadline: float, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("picture") is None and kwargs.get("decode", True):  # the fallback
            decodes.append(u)
            raise rtsp.GrabError("timeout", "no frame before the deadline (decoder killed)")
        return await real_grab(u, deadline, *args, **kwargs)

    pool.grab = grab
    status, problems, results = await cam.check()
    facts = results["rtsp"].facts
    assert len(decodes) == 1  # the fallback was tried
    assert results["rtsp"].success and (status, problems) == (Status.WARNING, {"dark"}), facts
    assert facts["picture_stream_error"].startswith("no_stream"), facts
    assert facts["picture_not_checked"].startswith("timeout"), facts
    assert (facts["width"], facts["height"]) == (1280, 720) and facts["keyframe_bytes"] > 0
    assert not any(x.name == "camnet_camera_sharpness" for x in results["rtsp"].samples)
    assert results["rtsp"].message.startswith("stream ok; picture not checked")
    assert cam.state["image"]["streaks"] == streaks  # not one more, not reset


@pytest.mark.lab
async def test_a_configured_picture_url_on_a_1080p_axis(
        clean: Lab, camcfg: LoadedConfig, pool: Any) -> None:
    """Axis cameras announce no smaller ONVIF profile but scale a stream on request (VAPIX
    `resolution=`): with picture_url set, the 1080p camera's picture is judged at 640x360."""
    cam = Camera(camcfg, "cam-b")
    main = url(clean, "cam-b")
    picture = re.sub(r"/onvif-media/media\.amp\?.*", "/axis-media/media.amp?resolution=640x360",
                     main)
    assert picture != main
    assert _ffprobe_size(picture) == ("h264", 640, 360)
    assert _ffprobe_size(main) == ("h264", 1920, 1080)
    cam.target.options["picture_url"] = picture
    status, problems, results = await cam.checks(2)
    assert (status, problems) == (Status.OK, set())
    facts = results["rtsp"].facts
    assert (facts["width"], facts["height"], facts["picture_width"], facts["picture_height"]) == (
        1920, 1080, 640, 360)
    clean.fault("cam-b", "dark")
    _, problems, results = await cam.checks(3)
    assert problems == {"dark"}, results["rtsp"].facts
