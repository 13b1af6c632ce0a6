"""The lab's cameras, checked with tools we did not write: ffprobe/ffmpeg filters, onvif-zeep-async.

A private lab of six cameras on 127.0.22.1-6 (positions 0-5 of lab.cameras.camera_look:
720p Hikvision digest, 1080p Axis, 720p Hikvision digest, then 360p Axis/Hikvision/Axis).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import os
import re
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lab.cameras import FaultError, parse_camera_fault
from tests.lab_fixture import Lab

pytestmark = pytest.mark.lab

PASSWORD = "lab-test-camera-pw"
CONTROL = "127.0.22.250:9839"
CAMERAS = ["cam-a", "cam-b", "cam-c", "cam-d", "cam-e", "cam-f"]
FFMPEG_TIMEOUT_S = 40.0
# ffprobe/ffmpeg read 5 s of an RTSP stream before they answer by default (analyzeduration);
# the lab's SDP carries the parameter sets, so half a second gives the same codec, size and
# rate in a third of the time.
PROBE_FAST = ("-analyzeduration", "500000")


def _config(tmp: Path) -> Path:
    (tmp / "secrets").mkdir()
    (tmp / "secrets" / "cam.password").write_text(PASSWORD + "\n")
    cams = "\n".join(
        f"  - {{id: {cid}, site: s{i % 2 + 1}, address: 127.0.22.{i + 1}}}"
        for i, cid in enumerate(CAMERAS)
    )
    path = tmp / "camnet.yaml"
    path.write_text(f"""
defaults: {{camera_auth: cam, onvif_port: 8080}}
communes: [{{id: daron, name: "Đạ Ròn"}}]
sites:
  - {{id: s1, commune: daron, name: "Site 1"}}
  - {{id: s2, commune: daron, name: "Site 2"}}
auths:
  cam: {{type: onvif, username: admin, password_file: secrets/cam.password}}
cameras:
{cams}
""")
    return path


@pytest.fixture(scope="module")
def cams(lab_factory: Any, tmp_path_factory: pytest.TempPathFactory) -> Lab:
    """A private six-camera lab for this module."""
    return lab_factory(_config(tmp_path_factory.mktemp("labcams")), CONTROL)


@pytest.fixture
def clean(cams: Lab) -> Any:
    """Every camera ok before and after the test."""
    cams.reset()
    yield cams
    cams.reset()


def url(lab: Lab, cid: str, creds: bool = True) -> str:
    """The camera's RTSP URL, with credentials when it needs them."""
    cam = lab.camera(cid)
    u = cam["rtsp"]
    if creds and cam["rtsp_auth"]:
        u = u.replace("rtsp://", f"rtsp://admin:{PASSWORD}@", 1)
    return u


def ffmpeg_filters(stream: str, vf: str, seconds: float = 4.0) -> str:
    """Run ffmpeg on `seconds` of the stream through filters; return its log."""
    proc = subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-rtsp_transport", "tcp", *PROBE_FAST, "-timeout", "10000000",
         "-i", stream, "-t", str(seconds), "-vf", vf, "-f", "null", "-"],
        capture_output=True, text=True, timeout=FFMPEG_TIMEOUT_S, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stderr


def image_filter(jpeg: bytes, vf: str, tmp: Path) -> str:
    """Run an ffmpeg filter on one JPEG and return the printed metadata."""
    path = tmp / f"img-{time.monotonic_ns()}.jpg"
    path.write_bytes(jpeg)
    proc = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-vf",
         f"{vf},metadata=print:file=-", "-f", "null", "-"],
        capture_output=True, text=True, timeout=FFMPEG_TIMEOUT_S, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def metric(text: str, key: str) -> float:
    """The last value of `key=` in ffmpeg's metadata output."""
    values = re.findall(rf"{re.escape(key)}=([-\d.]+)", text)
    assert values, text[-1500:]
    return float(values[-1])


async def snapshot(lab: Lab, cid: str) -> bytes:
    """The camera's snapshot, from the URI its ONVIF service announces."""
    cam = lab.camera(cid)
    path = ("/onvif/snapshot" if cam["vendor"] == "hikvision"
            else "/onvif-cgi/jpg/image.cgi?resolution=1280x720&compression=20")
    async with asyncio.timeout(10), aiohttp.ClientSession() as s, \
            s.get(f"http://{cam['address']}:8080{path}") as r:
        assert r.status == 200
        assert r.content_type == "image/jpeg"
        return await r.read()


# ---------------------------------------------------------------- unit: states


def test_camera_states_parse() -> None:
    assert str(parse_camera_fault("clock=+600")) == "clock=+600"
    assert str(parse_camera_fault("clock=-30")) == "clock=-30"
    assert str(parse_camera_fault("slow=2.5")) == "slow=2.5"
    for bad in ("loss=0.3", "slow=0", "slow=x", "clock", "purple", "ok=1"):
        with pytest.raises(FaultError):
            parse_camera_fault(bad)


def test_stall_cut_passes_rtsp_text_and_the_first_media_bytes() -> None:
    from lab.cameras import STALL_MEDIA_BYTES, FrontDoor

    reply = b"RTSP/1.0 200 OK\r\nCSeq: 5\r\n\r\n"
    media = b"$\x00\x05\xdc" + bytes(5000)
    # Not stalled: everything passes and media is counted from the first "$\x00".
    assert FrontDoor._stall_cut(reply, None, False) == (reply, None)
    assert FrontDoor._stall_cut(reply + media, None, False) == (reply + media, len(media))
    # Stalled: the RTSP answer and the first STALL_MEDIA_BYTES of media, then nothing.
    data, count = FrontDoor._stall_cut(reply + media, None, True)
    assert data == reply + media[:STALL_MEDIA_BYTES]
    assert count == STALL_MEDIA_BYTES
    assert FrontDoor._stall_cut(media, count, True) == (b"", STALL_MEDIA_BYTES)


def test_wsse_check_without_a_lab() -> None:
    from lxml import etree

    from lab.onvif_responder import AuthRejected, OnvifCamera, check_wsse

    camera = OnvifCamera(id="c", vendor="axis", address="127.0.0.1", onvif_port=1, rtsp_port=2,
                         username="admin", password="pw", serial="s", snapshot=lambda: b"")
    created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    good = etree.fromstring(_soap(created, b"0123456789abcdef", "pw"))
    check_wsse(good, camera)
    with pytest.raises(AuthRejected, match="replayed"):
        check_wsse(good, camera)
    with pytest.raises(AuthRejected, match="wrong password"):
        check_wsse(etree.fromstring(_soap(created, b"fedcba9876543210", "nope")), camera)
    camera.clock_offset_s = 600  # the camera's clock runs 10 minutes ahead
    with pytest.raises(AuthRejected, match="clock"):
        check_wsse(etree.fromstring(_soap(created, b"x" * 16, "pw")), camera)
    no_token = etree.fromstring(b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope">'
                                b"<s:Body/></s:Envelope>")
    with pytest.raises(AuthRejected, match="no UsernameToken"):
        check_wsse(no_token, camera)


# ---------------------------------------------------------------- RTSP


@pytest.mark.parametrize("cid,size", [("cam-a", (1280, 720)), ("cam-b", (1920, 1080)),
                                      ("cam-d", (640, 360))])
def test_ffprobe_sees_h264_at_each_size(cams: Lab, cid: str, size: tuple[int, int]) -> None:
    proc = subprocess.run(
        ["ffprobe", "-v", "error", "-rtsp_transport", "tcp", *PROBE_FAST, "-timeout", "10000000",
         "-select_streams", "v", "-show_entries", "stream=codec_name,width,height",
         "-of", "csv=p=0", url(cams, cid)],
        capture_output=True, text=True, timeout=FFMPEG_TIMEOUT_S, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"h264,{size[0]},{size[1]}"
    assert (cams.camera(cid)["width"], cams.camera(cid)["height"]) == size


def test_rtsp_digest_auth(cams: Lab) -> None:
    assert cams.camera("cam-a")["rtsp_auth"]
    cmd = ["ffprobe", "-v", "error", "-rtsp_transport", "tcp", *PROBE_FAST, "-timeout", "10000000",
           "-show_entries", "stream=codec_name", "-of", "csv=p=0"]
    without = subprocess.run([*cmd, url(cams, "cam-a", creds=False)], capture_output=True,
                             text=True, timeout=FFMPEG_TIMEOUT_S, check=False)
    assert without.returncode != 0
    assert "401" in without.stderr
    wrong = url(cams, "cam-a").replace(PASSWORD, "not-the-password")
    bad = subprocess.run([*cmd, wrong], capture_output=True, text=True,
                         timeout=FFMPEG_TIMEOUT_S, check=False)
    assert "401" in bad.stderr
    ok = subprocess.run([*cmd, url(cams, "cam-a")], capture_output=True, text=True,
                        timeout=FFMPEG_TIMEOUT_S, check=False)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "h264"


def test_black_detected_by_blackdetect(clean: Lab) -> None:
    ok_log = ffmpeg_filters(url(clean, "cam-d"), "blackdetect=d=1")
    assert "black_start" not in ok_log
    clean.fault("cam-d", "black")
    log = ffmpeg_filters(url(clean, "cam-d"), "blackdetect=d=1")
    assert "black_start" in log


def test_frozen_detected_by_freezedetect_and_ok_is_not(clean: Lab) -> None:
    ok_log = ffmpeg_filters(url(clean, "cam-e"), "freezedetect=d=2", seconds=5)
    assert "freeze_start" not in ok_log
    clean.fault("cam-e", "frozen")
    log = ffmpeg_filters(url(clean, "cam-e"), "freezedetect=d=2", seconds=5)
    assert "freeze_start" in log


def test_blurred_is_blurrier_by_blurdetect(clean: Lab) -> None:
    def blur() -> float:
        log = ffmpeg_filters(url(clean, "cam-f"), "blurdetect", seconds=3)
        return float(re.findall(r"blur mean: ([\d.]+)", log)[-1])

    sharp = blur()
    clean.fault("cam-f", "blurred")
    blurred = blur()
    assert blurred > 2 * sharp, (blurred, sharp)


def test_live_session_switches_to_black(clean: Lab) -> None:
    """A session opened while ok turns black when the fault is set (no reconnect)."""
    proc = subprocess.Popen(
        ["ffmpeg", "-nostdin", "-hide_banner", "-rtsp_transport", "tcp", *PROBE_FAST, "-timeout", "10000000",
         "-i", url(clean, "cam-d"), "-t", "8", "-vf", "blackdetect=d=1", "-f", "null", "-"],
        stderr=subprocess.PIPE, text=True,
    )
    try:
        time.sleep(3)  # ordering only: the session runs before the fault is set
        clean.fault("cam-d", "black")
        _, err = proc.communicate(timeout=FFMPEG_TIMEOUT_S)
    finally:
        proc.kill()
        proc.wait()
    starts = [float(x) for x in re.findall(r"black_start:([\d.]+)", err)]
    assert starts and starts[0] > 0, err[-1500:]


async def test_dark_is_dim_but_not_black(clean: Lab, tmp_path: Path) -> None:
    clean.fault("cam-d", "dark")
    dark = await snapshot(clean, "cam-d")
    clean.fault("cam-d", "black")
    black = await snapshot(clean, "cam-d")
    clean.fault("cam-d", "ok")
    ok = await snapshot(clean, "cam-d")
    stats = "signalstats,entropy"
    luma = {n: metric(image_filter(j, stats, tmp_path), "lavfi.signalstats.YAVG")
            for n, j in (("dark", dark), ("black", black), ("ok", ok))}
    entropy = {n: metric(image_filter(j, stats, tmp_path),
                         "lavfi.entropy.normalized_entropy.normal.Y")
               for n, j in (("dark", dark), ("black", black))}
    assert luma["black"] < luma["dark"] < 0.4 * luma["ok"]
    # A night picture keeps structure and noise; a covered lens is flat.
    assert entropy["dark"] > 5 * entropy["black"]


async def test_moved_view_differs_by_ssim(clean: Lab, tmp_path: Path) -> None:
    ok1 = await snapshot(clean, "cam-d")
    clean.fault("cam-d", "moved")
    moved = await snapshot(clean, "cam-d")
    (tmp_path / "a.jpg").write_bytes(ok1)
    (tmp_path / "b.jpg").write_bytes(moved)

    def ssim(a: str, b: str) -> float:
        proc = subprocess.run(
            ["ffmpeg", "-nostdin", "-hide_banner", "-i", str(tmp_path / a), "-i",
             str(tmp_path / b), "-lavfi", "ssim", "-f", "null", "-"],
            capture_output=True, text=True, timeout=FFMPEG_TIMEOUT_S, check=False)
        return float(re.findall(r"All:([\d.]+)", proc.stderr)[-1])

    assert ssim("a.jpg", "a.jpg") > 0.99
    assert ssim("a.jpg", "b.jpg") < 0.6


def test_stall_freezes_a_started_session(clean: Lab) -> None:
    clean.fault("cam-d", "stall")
    # Three seconds of media never arrive (a healthy camera delivers them in ≈ 3.5 s with
    # PROBE_FAST): the session starts, gets 2 KB of media, then the TCP connection stays open
    # and silent.
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run(
            ["ffmpeg", "-nostdin", "-v", "error", "-rtsp_transport", "tcp", *PROBE_FAST, "-i",
             url(clean, "cam-d"), "-t", "3", "-f", "null", "-"],
            capture_output=True, timeout=8, check=False,
        )
    clean.fault("cam-d", "ok")
    ffmpeg_filters(url(clean, "cam-d"), "null", seconds=2)


def test_stall_freezes_a_live_session(clean: Lab) -> None:
    proc = subprocess.Popen(
        ["ffmpeg", "-nostdin", "-v", "error", "-rtsp_transport", "tcp", *PROBE_FAST, "-i",
         url(clean, "cam-f"), "-t", "6", "-f", "null", "-"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(2)  # ordering only: the session streams before the stall
        clean.fault("cam-f", "stall")
        # Unstalled, the remaining 4 s of media arrive well within this wait.
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=9)
    finally:
        proc.kill()
        proc.wait()


def test_offline_refuses_rtsp(clean: Lab) -> None:
    clean.fault("cam-d", "offline")
    proc = subprocess.run(
        ["ffprobe", "-v", "error", "-rtsp_transport", "tcp", *PROBE_FAST, url(clean, "cam-d")],
        capture_output=True, text=True, timeout=FFMPEG_TIMEOUT_S, check=False)
    assert proc.returncode != 0
    assert "Connection refused" in proc.stderr


def test_hang_rtsp_accepts_and_never_answers(clean: Lab) -> None:
    clean.fault("cam-d", "hang")
    address = clean.camera("cam-d")["address"]
    with socket.create_connection((address, 8554), timeout=5) as sock:  # TCP is accepted
        sock.sendall(f"OPTIONS rtsp://{address}:8554/ RTSP/1.0\r\nCSeq: 1\r\n\r\n".encode())
        sock.settimeout(3)
        with pytest.raises(TimeoutError):
            sock.recv(1024)
    proc = subprocess.run(
        ["ffprobe", "-v", "error", "-rtsp_transport", "tcp", *PROBE_FAST, "-timeout", "2000000",
         url(clean, "cam-d")], capture_output=True, text=True, timeout=FFMPEG_TIMEOUT_S,
        check=False)
    assert proc.returncode != 0


def test_auth_fault_makes_rtsp_answer_401(clean: Lab) -> None:
    clean.fault("cam-d", "auth")  # an anonymous camera starts asking for credentials
    proc = subprocess.run(
        ["ffprobe", "-v", "error", "-rtsp_transport", "tcp", *PROBE_FAST, "-timeout", "10000000",
         url(clean, "cam-d")], capture_output=True, text=True, timeout=FFMPEG_TIMEOUT_S,
        check=False)
    assert "401" in proc.stderr


# ---------------------------------------------------------------- ONVIF


async def onvif_camera(lab: Lab, cid: str, password: str = PASSWORD,
                       adjust_time: bool = False) -> Any:
    """An onvif-zeep-async camera, built inside the loop (FIELD-NOTES)."""
    from onvif import ONVIFCamera

    cam = ONVIFCamera(lab.camera(cid)["address"], 8080, "admin", password, no_cache=True,
                      adjust_time=adjust_time)
    return cam


async def test_onvif_device_info_and_stream_uri(clean: Lab) -> None:
    serials = set()
    for cid in ("cam-a", "cam-b", "cam-c"):
        cam = await onvif_camera(clean, cid)
        try:
            async with asyncio.timeout(30):
                await cam.update_xaddrs()
                dm = await cam.create_devicemgmt_service()
                info = await dm.GetDeviceInformation()
                media = await cam.create_media_service()
                profiles = await media.GetProfiles()
                uri = await media.GetStreamUri({
                    "StreamSetup": {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}},
                    "ProfileToken": profiles[0].token})
                snap = await media.GetSnapshotUri({"ProfileToken": profiles[0].token})
        finally:
            await cam.close()
        vendor = clean.camera(cid)["vendor"]
        assert info.Manufacturer == {"axis": "AXIS", "hikvision": "HIKVISION"}[vendor]
        serials.add(info.SerialNumber)
        address = clean.camera(cid)["address"]
        assert uri.Uri.startswith(f"rtsp://{address}:8554/")
        assert f"profile={profiles[0].token}" in uri.Uri
        resolution = profiles[0].VideoEncoderConfiguration.Resolution
        assert (resolution.Width, resolution.Height) == (
            clean.camera(cid)["width"], clean.camera(cid)["height"])
        assert snap.Uri.startswith(f"http://{address}:8080/")
        # The announced URI is the one that streams.
        probe = subprocess.run(
            ["ffprobe", "-v", "error", "-rtsp_transport", "tcp", *PROBE_FAST, "-timeout", "10000000",
             "-show_entries", "stream=codec_name", "-of", "csv=p=0",
             uri.Uri.replace("rtsp://", f"rtsp://admin:{PASSWORD}@", 1)],
            capture_output=True, text=True, timeout=FFMPEG_TIMEOUT_S, check=False)
        assert probe.stdout.strip() == "h264", probe.stderr
    assert len(serials) == 3


async def _camera_offset(lab: Lab, cid: str) -> float:
    cam = await onvif_camera(lab, cid)
    try:
        async with asyncio.timeout(20):
            dm = await cam.create_devicemgmt_service()
            t = (await dm.GetSystemDateAndTime()).UTCDateTime
    finally:
        await cam.close()
    when = dt.datetime(t.Date.Year, t.Date.Month, t.Date.Day, t.Time.Hour, t.Time.Minute,
                       t.Time.Second, tzinfo=dt.UTC)
    return (when - dt.datetime.now(dt.UTC)).total_seconds()


async def test_onvif_clock_offset(clean: Lab) -> None:
    assert abs(await _camera_offset(clean, "cam-b")) < 5
    clean.fault("cam-b", "clock=+600")
    assert 595 < await _camera_offset(clean, "cam-b") < 605
    clean.fault("cam-b", "clock=-3600")
    assert -3605 < await _camera_offset(clean, "cam-b") < -3595
    # A client that signs with the camera's clock (adjust_time) still gets in.
    cam = await onvif_camera(clean, "cam-b", adjust_time=True)
    try:
        async with asyncio.timeout(30):
            await cam.update_xaddrs()
            dm = await cam.create_devicemgmt_service()
            info = await dm.GetDeviceInformation()
    finally:
        await cam.close()
    assert info.Manufacturer == "AXIS"


async def _expect_not_authorized(lab: Lab, cid: str, password: str) -> None:
    from zeep.exceptions import Fault

    cam = await onvif_camera(lab, cid, password=password)
    try:
        with pytest.raises(Fault) as err:
            async with asyncio.timeout(20):
                dm = await cam.create_devicemgmt_service()
                await dm.GetDeviceInformation()
    finally:
        await cam.close()
    assert [q.localname for q in err.value.subcodes] == ["NotAuthorized"]


async def test_onvif_wrong_password_is_not_authorized(clean: Lab) -> None:
    await _expect_not_authorized(clean, "cam-a", "wrong-password")


async def test_onvif_auth_fault_rejects_the_right_password(clean: Lab) -> None:
    clean.fault("cam-a", "auth")
    await _expect_not_authorized(clean, "cam-a", PASSWORD)


def _soap(created: str, nonce: bytes, password: str) -> bytes:
    digest = base64.b64encode(hashlib.sha1(nonce + created.encode() + password.encode())
                              .digest()).decode()
    return f"""<?xml version="1.0"?>
<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"
 xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
 xmlns:wsu="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd">
<s:Header><wsse:Security><wsse:UsernameToken><wsse:Username>admin</wsse:Username>
<wsse:Password Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest">{digest}</wsse:Password>
<wsse:Nonce>{base64.b64encode(nonce).decode()}</wsse:Nonce><wsu:Created>{created}</wsu:Created>
</wsse:UsernameToken></wsse:Security></s:Header>
<s:Body><GetDeviceInformation xmlns="http://www.onvif.org/ver10/device/wsdl"/></s:Body>
</s:Envelope>""".encode()


async def test_onvif_stale_created_and_replayed_nonce_rejected(clean: Lab) -> None:
    address = clean.camera("cam-c")["address"]
    endpoint = f"http://{address}:8080/onvif/device_service"
    now = dt.datetime.now(dt.UTC)
    fresh = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    stale = (now - dt.timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    headers = {"Content-Type": "application/soap+xml"}
    async with asyncio.timeout(20), aiohttp.ClientSession() as s:
        nonce = os.urandom(16)
        async with s.post(endpoint, data=_soap(fresh, nonce, PASSWORD), headers=headers) as r:
            assert r.status == 200
            assert "SerialNumber" in await r.text()
        async with s.post(endpoint, data=_soap(fresh, nonce, PASSWORD), headers=headers) as r:
            assert r.status == 400  # the same nonce again: a replay
            assert "ter:NotAuthorized" in await r.text()
        async with s.post(endpoint, data=_soap(stale, os.urandom(16), PASSWORD),
                          headers=headers) as r:
            assert r.status == 400
            assert "ter:NotAuthorized" in await r.text()
        # An operation with no capture is a proper SOAP fault.
        body = _soap(fresh, os.urandom(16), PASSWORD).replace(
            b"GetDeviceInformation", b"GetStorageConfigurations")
        async with s.post(endpoint, data=body, headers=headers) as r:
            assert r.status == 500
            assert "ActionNotSupported" in await r.text()


async def test_onvif_hang_times_out_and_offline_refuses(clean: Lab) -> None:
    address = clean.camera("cam-d")["address"]
    snapshot_url = f"http://{address}:8080/onvif-cgi/jpg/image.cgi"
    async with aiohttp.ClientSession() as session:
        async with asyncio.timeout(10), session.get(snapshot_url) as r:
            assert r.status == 200
            await r.read()
        clean.fault("cam-d", "hang")
        # The kept-alive connection goes silent too, not only new ones.
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(3), session.get(snapshot_url) as r:
                await r.read()
    cam = await onvif_camera(clean, "cam-d")
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(3):
                dm = await cam.create_devicemgmt_service()
                await dm.GetSystemDateAndTime()
    finally:
        await cam.close()
    clean.fault("cam-d", "offline")
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(clean.camera("cam-d")["address"], 8080)


async def test_slow_answers_late_on_both_ports(clean: Lab) -> None:
    clean.fault("cam-d", "slow=2")
    address = clean.camera("cam-d")["address"]
    started = time.monotonic()
    async with asyncio.timeout(20), aiohttp.ClientSession() as s, \
            s.get(f"http://{address}:8080/onvif-cgi/jpg/image.cgi") as r:
        assert r.status == 200
        await r.read()
    assert time.monotonic() - started >= 2.0  # a lower bound: it cannot be early
    started = time.monotonic()
    async with asyncio.timeout(20):
        reader, writer = await asyncio.open_connection(address, 8554)
        try:
            writer.write(f"OPTIONS rtsp://{address}:8554/ RTSP/1.0\r\nCSeq: 1\r\n\r\n"
                         .encode())
            await writer.drain()
            assert (await reader.readline()).startswith(b"RTSP/1.0 200")
        finally:
            writer.close()
    assert time.monotonic() - started >= 2.0


def test_control_api_rejects_unknown_device_and_state(cams: Lab) -> None:
    from tests.lab_fixture import LabError

    with pytest.raises(LabError, match="unknown device"):
        cams.fault("cam-zz", "ok")
    with pytest.raises(LabError, match="unknown camera state"):
        cams.fault("cam-a", "loss=0.3")
    assert cams.status()["devices"]["cam-a"] == "ok"
    assert cams.fault("s2", "ok") == {"cam-b": "ok", "cam-d": "ok", "cam-f": "ok"}


async def test_reboot_drops_open_connections(clean: Lab) -> None:
    address = clean.camera("cam-d")["address"]
    async with asyncio.timeout(20):
        reader, writer = await asyncio.open_connection(address, 8554)
        try:
            writer.write(f"OPTIONS rtsp://{address}:8554/ RTSP/1.0\r\nCSeq: 1\r\n\r\n".encode())
            await writer.drain()
            assert (await reader.readline()).startswith(b"RTSP/1.0 200")
            assert await asyncio.to_thread(clean.fault, "cam-d", "reboot") == {"cam-d": "ok"}
            # Reads to EOF (or a reset); a connection that survived would block until timeout.
            reset = False
            try:
                await reader.read()
            except ConnectionResetError:
                reset = True
            assert reset or reader.at_eof()
        finally:
            writer.close()


@pytest.mark.lab
@pytest.mark.parametrize("scene", ["fractal", "meadow", "market", "pattern"])
def test_no_healthy_keyframe_looks_like_the_frozen_picture(scene: str) -> None:
    """A camera that recovers from `frozen` must look alive at the first grab: no keyframe of
    the ok clip (what a grab decodes) may be the frozen clip's picture, as camnet compares
    them (this was 1 grab in 7: the frozen still was the ok clip's first frame)."""
    import av

    from lab import clips
    from probes import image

    def keyframes(spec: clips.ClipSpec) -> list[Any]:
        with av.open(str(clips.ensure_clip(spec).h264)) as container:
            frames = [f.to_ndarray(format="gray") for f in container.decode(video=0)
                      if f.key_frame]
        return [image.resize_width(f, image.SMALL_WIDTH) for f in frames]

    settings = image.ImageSettings()
    frozen = keyframes(clips.ClipSpec(scene, 640, 360, "frozen"))[0]
    healthy = keyframes(clips.ClipSpec(scene, 640, 360, "ok"))
    assert len(healthy) == clips.DURATION_S
    changed = [image.changed_fraction(frozen, k, settings) for k in healthy]
    assert all(c is not None and c > settings.frozen_changed_fraction for c in changed), changed
