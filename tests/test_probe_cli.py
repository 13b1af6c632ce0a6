"""`camnet probe`: argument and config errors, addresses, real peers on 127.0.15.x (loopback).

Each failure mode must give ONE line on stderr and the plugin exit code (3 for our side's
problems, 2 when the device is down); no secret may ever appear in any output.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from monitor import probe_cli
from monitor.cli import main
from probes import PROBERS
from tests.snmpd_peer import run_snmpd

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.15.9"  # nothing listens here in these tests
SECRET = "Wr0ng-S3cret-42"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["probe", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line(err: str) -> str:
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    return lines[0]


def ready(*checks: str) -> None:
    """Skip while a prober is still the skeleton's stub (they are written in parallel)."""
    for check in checks:
        if "raise NotImplementedError" in inspect.getsource(PROBERS[check]):
            pytest.skip(f"the {check} prober is not implemented yet")


def free_port(kind: int, host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- arguments


@pytest.mark.parametrize("argv, expected", [
    (["camera"], "the following arguments are required: TARGET"),
    ([], "the following arguments are required: KIND"),
    (["printer", "x"], "invalid choice: 'printer'"),
    (["camera", "cam-daron-01", "--bogus"], "unrecognized option(s): --bogus"),
    (["ap", "ap-daron-01", "--timeout", "0"], "a duration must be greater than zero"),
    (["ap", "ap-daron-01", "--timeout", "soon"], "is not a duration"),
    (["ap", "snmp://127.0.15.9", "--port", "70000"], "'70000' is not a port"),
    (["camera", "cam-daron-01", "--lang", "fr"], "invalid choice: 'fr'"),
    (["ap", "127.0.15.9", "--skip", "rtsp"], "--skip rtsp: the checks of an access point are ping, snmp"),
])
def test_bad_arguments_one_line_exit_3(capsys: pytest.CaptureFixture[str], argv: list[str],
                                        expected: str) -> None:
    code, out, err = run_cli(capsys, *argv)
    assert code == 3
    assert out == ""
    line = one_line(err)
    assert expected in line and line.startswith("camnet probe")


def test_secret_typed_on_command_line_is_not_echoed(capsys: pytest.CaptureFixture[str]) -> None:
    # --password does not exist (and must not be taken as an abbreviation of --password-file)
    code, _, err = run_cli(capsys, "camera", HOST, "--user", "admin", "--password", SECRET)
    assert code == 3
    assert SECRET not in err
    assert "unrecognized option(s): --password" in one_line(err)
    code, _, err = run_cli(capsys, "ap", HOST, f"--community-typo={SECRET}")
    assert code == 3 and SECRET not in err


def test_credentials_in_url_refused_and_not_echoed(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "camera", f"rtsp://admin:{SECRET}@{HOST}:554/ch1")
    assert code == 3 and out == ""
    line = one_line(err)
    assert "credentials in the URL are not accepted" in line
    assert SECRET not in line and "admin" not in line


@pytest.mark.parametrize("target", [
    f"admin:{SECRET}@{HOST}",  # no scheme: still credentials
    f"rtsp://{HOST}/user=admin_password={SECRET}_channel=1_stream=0.sdp",  # XMEye style
    f"rtsp://{HOST}/cam/realmonitor?channel=1&user=admin&password={SECRET}",
])
def test_credentials_anywhere_in_the_target_are_refused_and_not_echoed(
        capsys: pytest.CaptureFixture[str], target: str) -> None:
    code, out, err = run_cli(capsys, "camera", target)
    assert code == 3 and out == ""
    line = one_line(err)
    assert "credentials in" in line and "not accepted" in line
    assert SECRET not in line


def _resolve(*argv: str) -> Any:
    parser = argparse.ArgumentParser()
    probe_cli.add_parser(parser.add_subparsers())
    return probe_cli.resolve_target(parser.parse_args(["probe", *argv]))[0]


def test_an_uppercase_scheme_reaches_the_decoder_in_lower_case() -> None:
    """FFmpeg knows only rtsp://: RTSP://cam/ch1 must not be reported as a broken camera."""
    target = _resolve("camera", f"RTSP://{HOST}:554/Ch1")
    assert target.options["rtsp_url"] == f"rtsp://{HOST}:554/Ch1"


def test_a_bare_host_may_carry_its_port() -> None:
    """host:port and [v6]:port as technicians type them (the port used to stick to the host)."""
    ap = _resolve("ap", "127.0.11.9:1161")
    assert (ap.address, ap.options["snmp_port"]) == ("127.0.11.9", 1161)
    cam = _resolve("camera", "[::1]:8081")
    assert (cam.address, cam.options["onvif_port"]) == ("::1", 8081)
    assert _resolve("camera", "[::1]").options["onvif_port"] == probe_cli.DEFAULT_ONVIF_PORT
    assert _resolve("ap", "127.0.11.9:1161", "--port", "1162").options["snmp_port"] == 1162


def test_a_host_name_needs_no_config(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """From a laptop without config/camnet.yaml, a host name is probed as a host (it used to
    be a "config error"); nothing answers on localhost's ONVIF port here: down, exit 2."""
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "camera", "localhost", "--onvif-port", "9", "--skip",
                             "ping", "--timeout", "3s")
    assert code == 2, out + err
    assert "config error" not in out + err and out.startswith("CRITICAL localhost")


def test_json_errors_are_a_json_document_too(capsys: pytest.CaptureFixture[str]) -> None:
    """A `| jq` script gets one object whatever happened; stderr keeps its one line."""
    code, out, err = run_cli(capsys, "camera", "cam-daron-01", "--json", "--config",
                             "/nonexistent/camnet.yaml")
    assert code == 3 and "config error" in one_line(err)
    doc = json.loads(out)
    assert doc["status"] == "UNKNOWN" and doc["exit_code"] == 3
    assert doc["error"].startswith("config error: /nonexistent/camnet.yaml")


def test_missing_password_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    code, _, err = run_cli(capsys, "camera", HOST, "--user", "admin", "--password-file",
                           str(missing))
    assert code == 3
    assert one_line(err) == f"camnet probe: cannot read password file {missing}: " \
                            "No such file or directory"


def test_password_file_not_utf8_names_no_byte(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    latin1 = tmp_path / "cam.password"
    latin1.write_bytes("Mát-khẩu".encode("latin-1", errors="replace") + b"\n")  # b"M\xe1t-kh?u"
    code, _, err = run_cli(capsys, "camera", HOST, "--user", "admin", "--password-file", str(latin1))
    assert code == 3  # bad arguments, not an internal error
    # The decoder's own message ("can't decode byte 0xe1 in position 1") gave away the secret.
    assert one_line(err) == f"camnet probe: password file {latin1} is not UTF-8 text"


def test_password_file_saved_by_notepad_loses_its_bom(tmp_path: Path) -> None:
    bom = tmp_path / "cam.password"
    bom.write_bytes(b"\xef\xbb\xbf" + SECRET.encode() + b"\r\n")
    target = _resolve("camera", HOST, "--user", "admin", "--password-file", str(bom))
    assert target.auth.secret("password") == SECRET


def test_snmpv3_options_checked(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    short = tmp_path / "short"
    short.write_text("abc\n")
    monkeypatch.delenv("CAMNET_AUTH_PASSWORD", raising=False)
    monkeypatch.delenv("CAMNET_PRIV_PASSWORD", raising=False)
    cases = [
        (["--snmp-version", "3"], "SNMPv3 needs --v3-user"),
        (["--v3-user", "camnet", "--security-level", "authPriv"],
         "security level authPriv needs --auth-password-file or $CAMNET_AUTH_PASSWORD"),
        (["--v3-user", "camnet", "--auth-password-file", str(short)],
         "the SNMPv3 auth password must have at least 8 characters"),
        (["--snmp-version", "2c", "--v3-user", "camnet"], "v3 options given with --snmp-version 2c"),
        (["--community", "x", "--community-file", str(short)],
         "give only one of --community and --community-file"),
    ]
    for extra, expected in cases:
        code, _, err = run_cli(capsys, "ap", HOST, *extra)
        assert code == 3, extra
        assert one_line(err) == f"camnet probe: {expected}", extra


# ---------------------------------------------------------------- inventory and config


def test_unknown_id_suggests_close_ones(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "camera", "cam-daron-1", "--config",
                             str(REPO / "config/camnet.yaml"))
    assert code == 3 and out == ""
    line = one_line(err)
    assert line.startswith("camnet probe: unknown camera id 'cam-daron-1' in ")
    assert "did you mean cam-daron-01" in line


def test_id_of_the_other_kind(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "camera", "ap-daron-01", "--config",
                           str(REPO / "config/camnet.yaml"))
    assert code == 3
    assert one_line(err) == \
        "camnet probe: ap-daron-01 is an access point: use 'camnet probe ap ap-daron-01'"


def test_address_options_refused_with_an_id(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "ap", "ap-daron-01", "--config",
                           str(REPO / "config/camnet.yaml"), "--community", SECRET)
    assert code == 3
    line = one_line(err)
    assert "--community: only for addresses" in line and SECRET not in line


def test_config_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "camnet.yaml"
    bad.write_text("cameras:\n  - {id: cam-1, site: nowhere, address: 127.0.15.1}\n"
                   "defaults: {camera_auth: missing}\n")
    code, out, err = run_cli(capsys, "camera", "cam-1", "--config", str(bad))
    assert code == 3 and out == ""
    line = one_line(err)
    assert line.startswith(f"camnet probe: config error: {bad}:2: cameras[0].site: unknown site")
    assert f"run 'camnet check-config {bad}'" in line


def test_missing_config_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "ap", "ap-x", "--config", str(tmp_path / "none.yaml"))
    assert code == 3
    assert "cannot read: No such file or directory" in one_line(err)


def test_address_needs_no_config(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """An IP address or URL is never looked up, so a broken default config does not matter."""
    ready("ping", "snmp")
    monkeypatch.chdir(tmp_path)  # no config/camnet.yaml here
    port = free_port(socket.SOCK_DGRAM)
    code, out, err = run_cli(capsys, "ap", f"snmp://{HOST}:{port}", "--timeout", "2s",
                             "--skip", "ping")
    assert code == 2, out + err
    assert out.startswith(f"CRITICAL {HOST}")


# ---------------------------------------------------------------- real peers on loopback


def test_unreachable_camera_closed_ports(capsys: pytest.CaptureFixture[str]) -> None:
    ready("ping", "onvif", "rtsp")
    onvif_port, rtsp_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)
    code, out, err = run_cli(capsys, "camera", f"rtsp://{HOST}:{rtsp_port}/ch1",
                             "--onvif-port", str(onvif_port), "--timeout", "5s")
    assert code == 2, out + err
    first = out.splitlines()[0]
    assert first.startswith(f"CRITICAL {HOST}: ")
    assert "unreachable" in first or "no_stream" in first


def test_unreachable_ap_closed_port_json(capsys: pytest.CaptureFixture[str]) -> None:
    ready("ping", "snmp")
    port = free_port(socket.SOCK_DGRAM)
    # nothing answers SNMP and ping is not asked: down
    code, out, _ = run_cli(capsys, "ap", f"snmp://{HOST}:{port}", "--timeout", "2s", "--json",
                           "--skip", "ping")
    assert code == 2
    data = json.loads(out)
    assert data["status"] == "CRITICAL" and data["exit_code"] == 2
    assert data["checks"]["snmp"]["success"] is False
    up = [m for m in data["metrics"] if m["name"] == "camnet_ap_up"]
    assert up == [{"name": "camnet_ap_up", "labels": {"ap": HOST}, "value": 0.0}]
    # loopback answers ping, so the same AP is "reachable but degraded" for the AP verdict
    code, out, _ = run_cli(capsys, "ap", f"snmp://{HOST}:{port}", "--timeout", "2s", "--json")
    data = json.loads(out)
    assert code == 1 and data["status"] == "WARNING"
    assert data["checks"]["ping"]["success"] is True


SNMPD_HOST = "127.0.15.20"
COMMUNITY = "right-Community-7"


@pytest.fixture
def snmpd(tmp_path: Path) -> Iterator[int]:
    """Debian snmpd on 127.0.15.20 with one community."""
    with run_snmpd(SNMPD_HOST, COMMUNITY, tmp_path) as port:
        yield port


@pytest.mark.parametrize("with_ping", [False, True])
def test_ap_right_and_wrong_community(capsys: pytest.CaptureFixture[str], snmpd: int,
                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      with_ping: bool) -> None:
    if with_ping:
        ready("ping", "snmp")
    else:
        ready("snmp")
    skip = [] if with_ping else ["--skip", "ping"]
    right = tmp_path / "right"
    right.write_text(COMMUNITY + "\n")
    code, out, err = run_cli(capsys, "ap", f"snmp://{SNMPD_HOST}:{snmpd}", "--community-file",
                             str(right), "--timeout", "5s", "--debug", *skip)
    assert code == 0, out + err
    assert out.startswith(f"OK {SNMPD_HOST}\n")
    assert "NVH-Test-01" in out
    assert "camnet_ap_up{ap=\"127.0.15.20\"} 1.0" in out  # the --debug metrics
    assert COMMUNITY not in out + err
    monkeypatch.setenv("CAMNET_COMMUNITY", SECRET)
    code, out, err = run_cli(capsys, "ap", f"snmp://{SNMPD_HOST}:{snmpd}", "--timeout", "2s",
                             "--debug", "--json", *skip)
    data = json.loads(out)
    # agents stay silent on a wrong community; with ping answering that is degraded, not down
    expected = "WARNING" if with_ping else "CRITICAL"
    assert data["status"] == expected and code == data["exit_code"] == (1 if with_ping else 2)
    assert data["settings"]["auth"]["community"] == "<secret>"
    assert SECRET not in out + err


def test_installed_entry_point_exit_code(tmp_path: Path) -> None:
    """The real process: `python -m monitor probe` exits 3 with one line on stderr."""
    out = subprocess.run([sys.executable, "-m", "monitor", "probe", "ap", "no-such-ap",
                          "--config", str(REPO / "config/camnet.yaml")],
                         capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 3
    assert out.stdout == ""
    assert one_line(out.stderr).startswith("camnet probe: unknown ap id 'no-such-ap'")


def test_an_output_that_cannot_show_vietnamese_keeps_the_verdict() -> None:
    """A console without UTF-8 (Windows, a C locale) shows "?" for what it cannot show; the
    exit code stays the camera's (it was 3, an encoding error, for a camera that is down)."""
    out = subprocess.run([sys.executable, "-m", "monitor", "probe", "camera",
                          "onvif://127.0.15.250:1", "--lang", "vi", "--skip", "ping"],
                         capture_output=True, cwd=REPO, timeout=60,
                         env={**os.environ, "PYTHONIOENCODING": "ascii"})
    assert out.returncode == 2, out.stderr
    assert out.stdout.startswith(b"NGHI?M TR?NG 127.0.15.250")


# ---------------------------------------------------------------- cameras of a private lab

LAB_CAMERA = "127.0.15.50"
LAB_CONTROL = "127.0.15.51:9839"
LAB_PASSWORD = "lab-Pass-15x"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """`camnet lab` serving one camera on 127.0.15.50 (ONVIF :8080, RTSP :18554); yields the
    config. One lab for this module's camera tests; each test sets the fault it needs."""
    ready("onvif", "rtsp")
    tmp_path = tmp_path_factory.mktemp("lab")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets/cam.password").write_text(LAB_PASSWORD + "\n")
    cfg = tmp_path / "camnet.yaml"
    cfg.write_text(
        "defaults: {camera_auth: cam, onvif_port: 8080}\n"
        "communes: [{id: daron, name: Đạ Ròn}]\n"
        "sites: [{id: daron-01, commune: daron, name: \"Nhà văn hóa thôn 01, Đạ Ròn\"}]\n"
        "auths: {cam: {type: onvif, username: admin, password_file: secrets/cam.password}}\n"
        f"cameras: [{{id: cam-daron-01, site: daron-01, address: {LAB_CAMERA}}}]\n")
    with run_lab(cfg, LAB_CONTROL, tmp_path / "state", "--rtsp-port", "18554"):
        yield cfg


@contextmanager
def run_lab(cfg: Path, control: str, state_dir: Path, *extra: str) -> Iterator[None]:
    """`camnet lab` as a process until the block ends (SIGTERM, then kill)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "lab", "--config", str(cfg), "--control", control,
         "--state-dir", str(state_dir), *extra],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:  # the lab prints "ready" once every server listens
            seen.append(line)
            if "camnet lab: ready" in line:
                break
        else:
            pytest.fail("the lab did not start:\n" + "".join(seen))
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def lab_fault(state: str, device: str = "cam-daron-01", control: str = LAB_CONTROL) -> None:
    out = subprocess.run([sys.executable, "-m", "monitor", "lab", "fault", device, state,
                          "--control", control], cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_lab_camera_ok_saves_frame(lab: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    lab_fault("ok")
    frame = tmp_path / "frame.jpg"
    code, out, err = run_cli(capsys, "camera", "cam-daron-01", "--config", str(lab),
                             "--skip", "ping", "--save-frame", str(frame), "--timeout", "15s")
    assert code == 0, out + err
    assert out.startswith("OK cam-daron-01 (Nhà văn hóa thôn 01, Đạ Ròn)\n")
    assert frame.read_bytes()[:2] == b"\xff\xd8"  # a JPEG
    assert LAB_PASSWORD not in out + err


def test_save_frame_of_a_down_camera_stays_critical(lab: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """No frame from a camera that is down: nothing written, and the exit code says down (2),
    not UNKNOWN (3), so a technician's script sees the camera's state."""
    lab_fault("offline")
    try:
        frame = tmp_path / "frame.jpg"
        code, out, err = run_cli(capsys, "camera", "cam-daron-01", "--config", str(lab),
                                 "--skip", "ping", "--save-frame", str(frame), "--timeout", "5s")
        assert code == 2, out + err
        assert not frame.exists() and "no frame was grabbed, nothing saved" in out + err
    finally:
        lab_fault("ok")


def test_lab_camera_wrong_password(lab: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    lab_fault("ok")
    wrong = tmp_path / "wrong"
    wrong.write_text(SECRET + "\n")
    for lang, word in (("en", "auth_failed"), ("vi", "sai tài khoản/mật khẩu")):
        code, out, err = run_cli(capsys, "camera", f"onvif://{LAB_CAMERA}:8080", "--user", "admin",
                                 "--password-file", str(wrong), "--skip", "ping", "--timeout",
                                 "15s", "--lang", lang, "--debug")
        assert code == 2, out + err
        assert word in out.splitlines()[0]
        assert SECRET not in out + err


def test_lab_camera_faults(lab: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lab_fault("black")
    code, out, _ = run_cli(capsys, "camera", "cam-daron-01", "--config", str(lab), "--skip",
                           "ping", "--timeout", "15s", "--json")
    data = json.loads(out)
    assert code == 2 and "black" in data["reasons"], out
    # A one-shot probe sees a frozen picture too: it grabs a second keyframe to compare.
    lab_fault("frozen")
    code, out, _ = run_cli(capsys, "camera", "cam-daron-01", "--config", str(lab), "--skip",
                           "ping", "--timeout", "15s", "--json")
    data = json.loads(out)
    assert code == 2 and data["reasons"] == ["frozen"], out
    lab_fault("ok")
    code, out, _ = run_cli(capsys, "camera", "cam-daron-01", "--config", str(lab), "--skip",
                           "ping", "--timeout", "15s", "--json")
    assert code == 0, out
    lab_fault("hang")
    code, out, _ = run_cli(capsys, "camera", "cam-daron-01", "--config", str(lab), "--skip",
                           "ping", "--timeout", "4s")
    assert code == 2, out
    assert out.startswith("CRITICAL cam-daron-01")


# ---------------------------------------------------------------- access points of a private lab

AP_CONTROL = "127.0.15.62:9839"
AP_COMMUNITY = "ap-Comm-15x"
AP_AUTH = "auth-Pass-15x"
AP_PRIV = "priv-Pass-15x"


@pytest.fixture
def lab_aps(tmp_path: Path) -> Iterator[Path]:
    """`camnet lab` with two simulated Ubiquiti APs: v2c on .60, SNMPv3 authPriv on .61."""
    ready("snmp")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name, value in (("c", AP_COMMUNITY), ("a", AP_AUTH), ("p", AP_PRIV)):
        (secrets / name).write_text(value + "\n")
    cfg = tmp_path / "camnet.yaml"
    cfg.write_text(
        "defaults: {ap_auth: v2, snmp_port: 1161}\n"
        "communes: [{id: tutra, name: Tu Tra}]\n"
        "sites: [{id: tutra-01, commune: tutra, name: \"Nhà văn hóa thôn 01, Tu Tra\"}]\n"
        "auths:\n"
        "  v2: {type: snmp, version: 2c, community_file: secrets/c}\n"
        "  v3: {type: snmp, version: 3, username: camnet, security_level: authPriv,\n"
        "       auth_protocol: SHA, auth_password_file: secrets/a, priv_protocol: AES,\n"
        "       priv_password_file: secrets/p}\n"
        "aps:\n"
        "  - {id: ap-tutra-01, site: tutra-01, address: 127.0.15.60}\n"
        "  - {id: ap-tutra-02, site: tutra-01, address: 127.0.15.61, auth: v3}\n")
    with run_lab(cfg, AP_CONTROL, tmp_path / "state"):
        yield cfg


def test_lab_aps_by_id_and_by_address(lab_aps: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    for ap in ("ap-tutra-01", "ap-tutra-02"):
        code, out, err = run_cli(capsys, "ap", ap, "--config", str(lab_aps), "--skip", "ping",
                                 "--timeout", "8s", "--json")
        assert code == 0, out + err
        data = json.loads(out)
        names = {m["name"] for m in data["metrics"]}
        assert {"camnet_ap_up", "camnet_ap_interface_up", "camnet_ap_wifi_clients"} <= names
        assert data["checks"]["snmp"]["facts"]["model"] == "NanoStation M5"
    # the same v3 agent by address, secrets from files and from the environment
    auth, priv = tmp_path / "auth", tmp_path / "priv"
    auth.write_text(AP_AUTH + "\n")
    priv.write_text(AP_PRIV + "\n")
    code, out, err = run_cli(capsys, "ap", "snmp://127.0.15.61:1161", "--v3-user", "camnet",
                             "--auth-password-file", str(auth), "--priv-password-file", str(priv),
                             "--skip", "ping", "--timeout", "8s", "--debug")
    assert code == 0, out + err
    assert out.startswith("OK 127.0.15.61\n") and "NanoStation M5" in out
    assert AP_AUTH not in out and AP_PRIV not in out
    monkeypatch.setenv("CAMNET_AUTH_PASSWORD", AP_AUTH)
    monkeypatch.setenv("CAMNET_PRIV_PASSWORD", SECRET)  # wrong privacy password
    code, out, err = run_cli(capsys, "ap", "127.0.15.61", "--port", "1161", "--v3-user", "camnet",
                             "--skip", "ping", "--timeout", "3s", "--debug")
    assert code == 2, out + err
    assert out.startswith("CRITICAL 127.0.15.61: snmp: ")
    assert SECRET not in out + err and AP_AUTH not in out + err


def test_lab_ap_offline(lab_aps: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lab_fault("offline", "ap-tutra-01", AP_CONTROL)
    code, out, _ = run_cli(capsys, "ap", "ap-tutra-01", "--config", str(lab_aps), "--skip",
                           "ping", "--timeout", "3s", "--lang", "vi")
    assert code == 2
    assert out.startswith("NGHIÊM TRỌNG ap-tutra-01 (Nhà văn hóa thôn 01, Tu Tra): SNMP: ")


def _run_on_tty(argv: list[str], env: dict[str, str]) -> str:
    """Run `python -m monitor ARGV` with stdout on a pseudo-terminal; return what it printed."""
    import pty

    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "monitor", *argv], cwd=REPO, env=env,
                                stdout=slave, stderr=subprocess.DEVNULL)
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        proc.wait(timeout=60)
    finally:
        os.close(master)
    return b"".join(chunks).decode()


def test_colour_only_on_a_terminal_and_never_with_no_color(snmpd: int, tmp_path: Path) -> None:
    ready("snmp")
    right = tmp_path / "right"
    right.write_text(COMMUNITY + "\n")
    argv = ["probe", "ap", f"snmp://{SNMPD_HOST}:{snmpd}", "--community-file", str(right),
            "--skip", "ping", "--timeout", "5s"]
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    assert _run_on_tty(argv, env).startswith("\x1b[1;32mOK\x1b[0m 127.0.15.20")
    assert _run_on_tty(argv, {**env, "NO_COLOR": "1"}).startswith("OK 127.0.15.20")
    assert _run_on_tty([*argv, "--no-color"], env).startswith("OK 127.0.15.20")
    piped = subprocess.run([sys.executable, "-m", "monitor", *argv], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=60)
    assert piped.stdout.startswith("OK 127.0.15.20") and "\x1b[" not in piped.stdout
