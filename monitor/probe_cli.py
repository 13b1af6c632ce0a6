"""`camnet probe camera|ap TARGET`: one full check now, for a technician on site."""

from __future__ import annotations

import argparse
import asyncio
import difflib
import ipaddress
import os
import re
import sys
from pathlib import Path
from typing import Any, Literal, NoReturn
from urllib.parse import urlsplit

from pydantic import SecretStr

from monitor.checks import DeviceReport, build_report, check_device, redact, secret_values
from monitor.config import (
    DEFAULT_CONFIG,
    SNMP_AUTH_PROTOCOLS,
    SNMP_PRIV_PROTOCOLS,
    ApConfig,
    ApProfile,
    CameraConfig,
    CameraProfile,
    ConfigError,
    OnvifAuth,
    SnmpAuth,
    load_config,
)
from monitor.report import LANGS, UI, json_error, render_debug, render_json, render_text
from probes import CHECKS_BY_KIND, rtsp
from probes.base import Credentials, Status, Target, parse_duration, redact_url

PROG = "camnet probe"
UNKNOWN = int(Status.UNKNOWN)
CRITICAL = int(Status.CRITICAL)

# Environment variables that carry secrets, so they stay out of the command line (and `ps`).
ENV_PASSWORD = "CAMNET_PASSWORD"
ENV_COMMUNITY = "CAMNET_COMMUNITY"
ENV_AUTH_PASSWORD = "CAMNET_AUTH_PASSWORD"
ENV_PRIV_PASSWORD = "CAMNET_PRIV_PASSWORD"

DEFAULT_ONVIF_PORT = 80
DEFAULT_SNMP_PORT = 161


class ProbeError(Exception):
    """A problem with the arguments or the config: one line for the technician, exit 3."""


def duration(text: str) -> float:
    """Argparse type for `--timeout` (`5`, `5s`, `500ms`)."""
    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def port(text: str) -> int:
    """Argparse type for a TCP/UDP port."""
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1-65535)")
    return int(text)


class OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line, and stray arguments named but never echoed with values.

    argparse would print a usage block and repeat unknown arguments verbatim, which would show
    a password typed by mistake (`--password hunter2`) on screen and in shell logs.
    """

    def parse_known_args(  # type: ignore[override]
        self, args: Any = None, namespace: Any = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """Parse, and refuse anything left over instead of passing it up."""
        ns, extras = argparse.ArgumentParser.parse_known_args(self, args, namespace)
        if extras:
            self.error(unrecognized(extras))
        return ns, extras

    def error(self, message: str) -> NoReturn:
        """Print `camnet probe camera: error: MESSAGE (see --help)` and exit 2 (mapped to 3)."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def unrecognized(extras: list[str]) -> str:
    """Name unknown options without their values (a value may be a secret)."""
    options = sorted({e.split("=", 1)[0] for e in extras if e.startswith("-")})
    if options:
        return "unrecognized option(s): " + " ".join(options)
    return f"{len(extras)} unexpected extra argument(s)"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="TARGET",
                   help="inventory id from the config, or an address (see below)")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                   help=f"config file for inventory ids (default {DEFAULT_CONFIG})")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--debug", action="store_true",
                   help="add the probe's log, the metrics it would export and the settings used")
    p.add_argument("--lang", choices=LANGS, default="en", help="language of the text output")
    p.add_argument("--timeout", type=duration, default=None,
                   help="give up on the whole check after this long (e.g. 8s)")
    p.add_argument("--no-color", action="store_true", help="never colour the output")
    p.add_argument("--skip", action="append", default=[], metavar="CHECK",
                   help="leave out one check (e.g. ping where ICMP is filtered); repeatable")


def add_parser(subparsers: Any) -> None:
    """Register `camnet probe camera|ap` on the top-level subparsers."""
    probe = subparsers.add_parser(
        "probe", help="check one camera or access point now (exit 0 OK, 1 WARNING, "
        "2 CRITICAL, 3 UNKNOWN)",
        description="Run one full check now with the same probers as the daemon.")
    # `probe` itself is built by the top-level parser's class; give it the one-line errors too.
    probe.error = OneLineParser.error.__get__(probe)
    probe.parse_known_args = OneLineParser.parse_known_args.__get__(probe)
    kinds = probe.add_subparsers(dest="probe_kind", metavar="KIND", required=True,
                                 parser_class=OneLineParser)

    # no abbreviations: `--password x` must not silently mean `--password-file x`
    cam = kinds.add_parser(
        "camera", allow_abbrev=False, help="ONVIF + RTSP frame grab + picture checks",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="TARGET: an id (cam-daron-01), rtsp://host[:port]/path, onvif://host[:port] or a "
        f"host.\nThe password comes from --password-file or ${ENV_PASSWORD}; never from the "
        "command line.")
    _common(cam)
    cam.add_argument("--save-frame", type=Path, metavar="FILE",
                     help="write the grabbed picture (JPEG) to FILE")
    cam.add_argument("--user", help="ONVIF/RTSP user name (addresses only)")
    cam.add_argument("--password-file", type=Path, metavar="FILE",
                     help=f"file holding the password (or set ${ENV_PASSWORD})")
    cam.add_argument("--onvif-port", type=port, default=None,
                     help=f"ONVIF port of an address (default {DEFAULT_ONVIF_PORT}; with an "
                     "rtsp:// target ONVIF is skipped unless this is given)")
    cam.set_defaults(func=run)

    ap = kinds.add_parser(
        "ap", allow_abbrev=False, help="ping + SNMP",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="TARGET: an id (ap-daron-01), snmp://host[:port] or a host.\n"
        f"Secrets: --community-file or ${ENV_COMMUNITY} (v1/v2c, default 'public'); "
        f"--auth-password-file/${ENV_AUTH_PASSWORD} and --priv-password-file/"
        f"${ENV_PRIV_PASSWORD} (v3).")
    _common(ap)
    ap.add_argument("--snmp-version", choices=("1", "2c", "3"), default=None,
                    help="SNMP version (default 2c, or 3 when --v3-user is given)")
    ap.add_argument("--port", type=port, default=None,
                    help=f"SNMP port of an address (default {DEFAULT_SNMP_PORT})")
    ap.add_argument("--community", help="v1/v2c community (prefer --community-file: "
                    "the command line is visible to other users)")
    ap.add_argument("--community-file", type=Path, metavar="FILE")
    ap.add_argument("--v3-user", help="SNMPv3 user name")
    ap.add_argument("--security-level", choices=("noAuthNoPriv", "authNoPriv", "authPriv"),
                    default=None, help="v3 level (default: from the passwords given)")
    ap.add_argument("--auth-protocol", choices=SNMP_AUTH_PROTOCOLS, default="SHA")
    ap.add_argument("--auth-password-file", type=Path, metavar="FILE")
    ap.add_argument("--priv-protocol", choices=SNMP_PRIV_PROTOCOLS, default="AES")
    ap.add_argument("--priv-password-file", type=Path, metavar="FILE")
    ap.set_defaults(func=run)


# ---------------------------------------------------------------- targets


def _read_secret_file(path: Path, what: str) -> SecretStr:
    try:
        # utf-8-sig: Notepad starts what it saves with a byte-order mark, no part of the secret.
        text = path.read_text(encoding="utf-8-sig").rstrip("\r\n")
    except UnicodeDecodeError:
        # Not chained: the decoder's message quotes a byte of the secret and its position.
        raise ProbeError(f"{what} file {path} is not UTF-8 text") from None
    except OSError as e:
        raise ProbeError(f"cannot read {what} file {path}: {e.strerror or e}") from e
    if not text:
        raise ProbeError(f"{what} file {path} is empty")
    return SecretStr(text)


def _secret(args: argparse.Namespace, file_opt: str, env: str, what: str,
            inline_opt: str | None = None) -> SecretStr | None:
    """A secret from its file option, an inline option, or the environment, in that order."""
    file = getattr(args, file_opt, None)
    inline = getattr(args, inline_opt, None) if inline_opt else None
    if file is not None and inline is not None:
        raise ProbeError(f"give only one of --{inline_opt.replace('_', '-')} and "  # type: ignore[union-attr]
                         f"--{file_opt.replace('_', '-')}")
    if file is not None:
        return _read_secret_file(file, what)
    if inline:
        return SecretStr(inline)
    value = os.environ.get(env)
    return SecretStr(value) if value else None


def _host(text: str) -> str:
    host = text.strip().strip("[]")
    if "@" in host:  # user:password@host: never echo it
        raise ProbeError("credentials in TARGET are not accepted; use --user with "
                         f"--password-file or ${ENV_PASSWORD} (or --community-file for an AP)")
    if not host or any(c in host for c in "/ \t?#"):
        raise ProbeError(f"{text!r} is not a host name or IP address")
    return host


_HOST_PORT = re.compile(r"^\[(?P<v6>[^\]]+)\]:(?P<p6>\d+)$|^(?P<host>[^:\[\]]+):(?P<port>\d+)$")


def _host_port(text: str) -> tuple[str, int | None]:
    """`host`, `host:port`, `[v6]` or `[v6]:port` as (host, port or None)."""
    m = _HOST_PORT.match(text.strip())
    if m is None:
        return _host(text), None
    port = int(m.group("p6") or m.group("port"))
    if not 0 < port < 65536:
        raise ProbeError(f"{port} is not a port (1-65535)")
    return _host(m.group("v6") or m.group("host")), port


def looks_like_address(text: str) -> bool:
    """True for URLs and IP addresses (with or without a port): never inventory ids."""
    if "://" in text:
        return True
    try:
        host = _host_port(text)[0]
    except ProbeError:
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _camera_address(args: argparse.Namespace) -> tuple[Target, CameraProfile]:
    text: str = args.target
    profile = CameraProfile(kind="camera")
    rtsp_url: str | None = None
    onvif_port: int = args.onvif_port or DEFAULT_ONVIF_PORT
    skip_onvif = False
    if "://" in text:
        scheme = urlsplit(text).scheme.lower()
        host, url_port = _split_url(text, " (other users can read the command line); use --user "
                                          f"with --password-file or ${ENV_PASSWORD}")
        if scheme in ("rtsp", "rtsps"):
            # FFmpeg knows rtsp:// only in lower case (RTSP:// would be reported as a broken
            # camera); the rest of the URL is the camera's and is kept as typed.
            rtsp_url = scheme + text[text.index(":"):]
            skip_onvif = args.onvif_port is None
        elif scheme in ("onvif", "http"):
            onvif_port = args.onvif_port or url_port or DEFAULT_ONVIF_PORT
        else:
            raise ProbeError(f"unsupported scheme {scheme}:// for a camera "
                             "(use rtsp://, onvif:// or a host)")
    else:
        host, port = _host_port(text)
        onvif_port = args.onvif_port or port or DEFAULT_ONVIF_PORT
    if skip_onvif:
        profile = profile.model_copy(
            update={"onvif": profile.onvif.model_copy(update={"enabled": False})})
    password = _secret(args, "password_file", ENV_PASSWORD, "password")
    auth: Credentials | None = None
    if args.user or password is not None:
        if not args.user:
            raise ProbeError("a password was given without --user")
        config = OnvifAuth(type="onvif", username=args.user)
        auth = Credentials(config, {"password": password, "rtsp_password": None})
    options: dict[str, Any] = {"name": None, "onvif_port": onvif_port, "rtsp_url": rtsp_url,
                               "snapshot_url": None}
    return Target(host, "camera", host, {"camera": host}, auth, options), profile


def _split_url(text: str, where_credentials_go: str) -> tuple[str, int | None]:
    """Host and port of a TARGET URL; credentials in it, a bad port or no host are errors."""
    parts = urlsplit(text)
    if parts.username is not None or parts.password is not None or redact_url(text) != text:
        # user:password@, or user=/password= in the path or query (XMEye, some Dahua)
        raise ProbeError(f"credentials in the URL are not accepted{where_credentials_go}")
    try:
        port = parts.port
    except ValueError as e:
        raise ProbeError("the port in the URL is not a number from 1 to 65535") from e
    if not parts.hostname:
        raise ProbeError(f"{parts.scheme.lower()}:// address without a host")
    return _host(parts.hostname), port


def _ap_address(args: argparse.Namespace) -> tuple[Target, ApProfile]:
    text: str = args.target
    snmp_port: int = args.port or DEFAULT_SNMP_PORT
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme.lower() != "snmp":
            raise ProbeError(f"unsupported scheme {parts.scheme}:// for an access point "
                             "(use snmp://host[:port] or a host)")
        host, url_port = _split_url(text, f"; use --community-file or ${ENV_COMMUNITY}")
        snmp_port = args.port or url_port or DEFAULT_SNMP_PORT
    else:
        host, port = _host_port(text)
        snmp_port = args.port or port or DEFAULT_SNMP_PORT
    version: Literal["1", "2c", "3"] = args.snmp_version or ("3" if args.v3_user else "2c")
    if version == "3":
        if not args.v3_user:
            raise ProbeError("SNMPv3 needs --v3-user")
        if args.community or args.community_file:
            raise ProbeError("a community is for SNMP v1/v2c, not v3")
        auth_pw = _secret(args, "auth_password_file", ENV_AUTH_PASSWORD, "auth password")
        priv_pw = _secret(args, "priv_password_file", ENV_PRIV_PASSWORD, "privacy password")
        level: Literal["noAuthNoPriv", "authNoPriv", "authPriv"] = args.security_level or (
            "authPriv" if priv_pw else "authNoPriv" if auth_pw else "noAuthNoPriv")
        if level != "noAuthNoPriv" and auth_pw is None:
            raise ProbeError(f"security level {level} needs --auth-password-file or "
                             f"${ENV_AUTH_PASSWORD}")
        if level == "authPriv" and priv_pw is None:
            raise ProbeError(f"security level authPriv needs --priv-password-file or "
                             f"${ENV_PRIV_PASSWORD}")
        for pw, what in ((auth_pw, "auth"), (priv_pw, "privacy")):
            if pw is not None and len(pw.get_secret_value()) < 8:
                raise ProbeError(f"the SNMPv3 {what} password must have at least 8 characters")
        config = SnmpAuth(type="snmp", version="3", username=args.v3_user, security_level=level,
                          auth_protocol=args.auth_protocol, priv_protocol=args.priv_protocol)
        secrets: dict[str, SecretStr | None] = {
            "community": None, "auth_password": auth_pw, "priv_password": priv_pw}
    else:
        if args.v3_user or args.auth_password_file or args.priv_password_file:
            raise ProbeError("v3 options given with --snmp-version " + version)
        community = _secret(args, "community_file", ENV_COMMUNITY, "community", "community")
        config = SnmpAuth(type="snmp", version=version)
        secrets = {"community": community or SecretStr("public"), "auth_password": None,
                   "priv_password": None}
    options: dict[str, Any] = {"name": None, "snmp_port": snmp_port}
    target = Target(host, "ap", host, {"ap": host}, Credentials(config, secrets), options)
    return target, ApProfile(kind="ap")


_CREDENTIAL_OPTIONS = ("user", "password_file", "onvif_port", "community", "community_file",
                       "v3_user", "auth_password_file", "priv_password_file", "snmp_version",
                       "security_level", "port")


def _inventory(args: argparse.Namespace) -> tuple[Target, CameraProfile | ApProfile] | None:
    """The inventory device named by TARGET, None when TARGET should be taken as a host."""
    kind: str = args.probe_kind
    host_name = "." in args.target or args.target == "localhost"
    if host_name and args.config == DEFAULT_CONFIG and not args.config.exists():
        return None  # a technician's laptop has no config: cam1.local is a host
    try:
        loaded = load_config(args.config)
    except ConfigError as e:
        first = e.problems[0] if e.problems else str(e)
        more = f" (+{len(e.problems) - 1} more)" if len(e.problems) > 1 else ""
        raise ProbeError(f"config error: {first}{more}; run 'camnet check-config "
                         f"{args.config}'") from e
    device = loaded.device(args.target)
    if device is None:
        if host_name:
            return None
        wanted = loaded.config.cameras if kind == "camera" else loaded.config.aps
        close = difflib.get_close_matches(args.target, [d.id for d in wanted], n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ProbeError(f"unknown {kind} id {args.target!r} in {args.config}{hint}")
    if kind == "camera" and not isinstance(device, CameraConfig):
        raise ProbeError(f"{device.id} is an access point: use 'camnet probe ap {device.id}'")
    if kind == "ap" and not isinstance(device, ApConfig):
        raise ProbeError(f"{device.id} is a camera: use 'camnet probe camera {device.id}'")
    given = [o for o in _CREDENTIAL_OPTIONS if getattr(args, o, None) not in (None, False)]
    if given:
        opts = ", ".join("--" + o.replace("_", "-") for o in given)
        raise ProbeError(f"{opts}: only for addresses; {device.id} uses the config's "
                         "auth and ports")
    return loaded.target(device), loaded.profile_for(device)


def resolve_target(args: argparse.Namespace) -> tuple[Target, CameraProfile | ApProfile]:
    """TARGET as an inventory device or an ad-hoc address, with its profile."""
    if not looks_like_address(args.target):
        found = _inventory(args)
        if found is not None:
            return found
    if args.probe_kind == "camera":
        return _camera_address(args)
    return _ap_address(args)


def one_shot_profile(profile: CameraProfile | ApProfile,
                     skip: list[str] | None = None) -> CameraProfile | ApProfile:
    """A profile for a single check: picture problems count at the first bad frame, every
    grab brings its JPEG (for --save-frame), and the checks in `skip` are disabled."""
    kind = "camera" if isinstance(profile, CameraProfile) else "ap"
    for check in skip or []:
        if check not in CHECKS_BY_KIND[kind]:
            what = "a camera" if kind == "camera" else "an access point"
            raise ProbeError(f"--skip {check}: the checks of {what} are "
                             f"{', '.join(CHECKS_BY_KIND[kind])}")
        settings = getattr(profile, check).model_copy(update={"enabled": False})
        profile = profile.model_copy(update={check: settings})
    if isinstance(profile, CameraProfile):
        image = profile.rtsp.image.model_copy(update={"consecutive": 1})
        rtsp = profile.rtsp.model_copy(update={"image": image, "frame_refresh": 0.0})
        return profile.model_copy(update={"rtsp": rtsp})
    return profile


# ---------------------------------------------------------------- run


def _save_frame(report: DeviceReport, path: Path) -> str | None:
    """Write the grabbed JPEG; returns an error line or None."""
    rtsp = report.results.get("rtsp")
    frame = rtsp.artifacts.get("frame_jpeg") if rtsp is not None else None
    if not isinstance(frame, bytes | bytearray) or not frame:
        return UI["en"]["no_frame"]
    try:
        path.write_bytes(bytes(frame))
    except OSError as e:
        return f"cannot write {path}: {e.strerror or e}"
    return None


def use_color(args: argparse.Namespace) -> bool:
    """Colour only on a terminal, and never with NO_COLOR set (https://no-color.org)."""
    return (not args.no_color and not os.environ.get("NO_COLOR") and not args.json
            and sys.stdout.isatty())


# `frozen` compares two pictures; the daemon has its previous check, a one-shot probe grabs a
# second keyframe in a new session this much later (a live camera sends a new session its
# next keyframe, so the two are never the same frame of a working stream).
SECOND_GRAB_AFTER = 1.0


async def _check_once(target: Target, profile: Any, budget: float | None) -> DeviceReport:
    """One full check (cameras: plus a second grab for `frozen`), then stop the grab workers."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    state: dict[str, Any] = {}
    try:
        report = await check_device(target, profile, state, budget=budget)
        first = report.results.get("rtsp")
        if target.kind != "camera" or first is None or not first.success:
            return report
        left = None if budget is None else budget - (loop.time() - started) - SECOND_GRAB_AFTER
        if left is not None and left < first.duration + 0.5:
            return report  # no time for a second picture: report the first one
        await asyncio.sleep(SECOND_GRAB_AFTER)
        others = [c for c in CHECKS_BY_KIND["camera"] if c != "rtsp"]
        again = await check_device(target, one_shot_profile(profile, others), state, budget=left)
        second = again.results.get("rtsp")
        if second is None:
            return report
        second.debug(f"second grab {SECOND_GRAB_AFTER:g}s after the first, for the frozen check")
        return build_report(target, {**report.results, "rtsp": second}, profile, started=report.started)
    finally:
        await rtsp.shutdown()


def run(args: argparse.Namespace) -> int:
    """Run `camnet probe camera|ap`; returns the plugin exit code."""
    secrets: list[str] = []
    try:
        target, profile = resolve_target(args)
        secrets = secret_values(target)
        profile = one_shot_profile(profile, args.skip)
        report = asyncio.run(_check_once(target, profile, args.timeout))
        code = int(report.status)
        frame_error: str | None = None
        frame_saved: str | None = None
        if getattr(args, "save_frame", None) is not None:
            frame_error = _save_frame(report, args.save_frame)
            if frame_error is None:
                frame_saved = str(args.save_frame)
            elif code != CRITICAL:
                # A camera that is down has no frame: that stays CRITICAL. A frame missing or
                # unwritable while the camera answers is what the caller asked for and did
                # not get: UNKNOWN.
                code = UNKNOWN
        if args.json:
            extra: dict[str, Any] = {}
            if getattr(args, "save_frame", None) is not None:
                extra = {"frame_saved": frame_saved, "frame_error": frame_error}
                if frame_error is not None:
                    extra["exit_code"] = code
            sys.stdout.write(render_json(report, debug=args.debug, **extra))
        else:
            sys.stdout.write(render_text(report, args.lang, use_color(args)))
            if frame_saved:
                print(f"  {UI[args.lang]['frame_saved']} {frame_saved}")
            if args.debug:
                sys.stdout.write("\n" + render_debug(report))
        if frame_error is not None:
            shown = UI[args.lang]["no_frame"] if frame_error == UI["en"]["no_frame"] else frame_error
            print(f"{PROG}: {shown}", file=sys.stderr)
        return code
    except ProbeError as e:
        return fail(args, redact(str(e), secrets))
    except Exception as e:  # the plugin convention: an internal error is UNKNOWN
        return fail(args, f"internal error: {type(e).__name__}: {redact(str(e), secrets)}")


def fail(args: argparse.Namespace, message: str, prog: str = PROG) -> int:
    """Say why nothing was checked: one line on stderr, and with --json one object on stdout
    (a `| jq` script gets a document whatever happened). Used by `camnet discover` too."""
    print(f"{prog}: {message}", file=sys.stderr)
    if getattr(args, "json", False):
        sys.stdout.write(json_error(message))
    return UNKNOWN

