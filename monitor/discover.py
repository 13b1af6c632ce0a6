"""`camnet discover`: find ONVIF cameras with WS-Discovery and compare them with the inventory."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import re
import socket
import struct
import sys
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from xml.etree import ElementTree as ET

from monitor.config import DEFAULT_CONFIG, CameraConfig, ConfigError, LoadedConfig, load_config
from monitor.probe_cli import OneLineParser, duration, fail
from probes.base import Status

PROG = "camnet discover"
WSD_GROUP = "239.255.255.250"
WSD_PORT = 3702
# WS-Discovery asks for UDP messages to be repeated (datagrams get lost); responders answer
# within APP_MAX_DELAY (500 ms), so a 3 s window is ample on a LAN.
PROBE_REPEATS = 2
REPEAT_DELAY = 0.25
DEFAULT_WAIT = 3.0
MAX_DATAGRAM = 65535

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "d": "http://schemas.xmlsoap.org/ws/2005/04/discovery",
    "dn": "http://www.onvif.org/ver10/network/wsdl",
}
ACTION_PROBE = "http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe"
ACTION_MATCHES = "http://schemas.xmlsoap.org/ws/2005/04/discovery/ProbeMatches"

STATES = ("ok", "address_changed", "unknown", "missing")
STATE_WORDS = {
    "en": {"ok": "ok", "address_changed": "address changed", "unknown": "unknown",
           "missing": "missing"},
    "vi": {"ok": "khớp", "address_changed": "đổi địa chỉ", "unknown": "lạ",
           "missing": "không trả lời"},
}
STATUS_WORDS = {
    "en": {Status.OK: "OK", Status.WARNING: "WARNING", Status.CRITICAL: "CRITICAL"},
    "vi": {Status.OK: "BÌNH THƯỜNG", Status.WARNING: "CẢNH BÁO", Status.CRITICAL: "NGHIÊM TRỌNG"},
}
HEADERS = {
    "en": ("state", "id", "address", "inventory", "hardware", "name", "endpoint"),
    "vi": ("trạng thái", "mã", "địa chỉ", "theo cấu hình", "phần cứng", "tên", "endpoint"),
}

_MAC_RE = re.compile(r"[^0-9a-f]")


class DiscoverError(Exception):
    """Bad arguments, config or interface: one line, exit 3."""


@dataclass
class Discovered:
    """One ProbeMatch: a device that answered."""

    endpoint: str
    xaddrs: list[str]
    scopes: list[str]
    types: list[str]
    source: str = ""
    host: str = ""
    port: int = 80

    @property
    def hardware(self) -> str:
        """The `onvif://www.onvif.org/hardware/...` scope (the model)."""
        return scope_value(self.scopes, "hardware")

    @property
    def name(self) -> str:
        """The `onvif://www.onvif.org/name/...` scope (often the vendor)."""
        return scope_value(self.scopes, "name")

    @property
    def mac(self) -> str:
        """A MAC address from a `.../MAC/...` scope, normalised to 12 hex digits, or ''."""
        return normal_mac(scope_value(self.scopes, "mac"))

    @property
    def serial(self) -> str:
        """A serial number from a `.../serial/...` scope, or ''."""
        return scope_value(self.scopes, "serial")


@dataclass
class Row:
    """One line of the comparison."""

    state: str
    id: str = ""
    address: str = ""
    inventory_address: str = ""
    hardware: str = ""
    name: str = ""
    endpoint: str = ""
    matched_by: str = ""
    xaddrs: list[str] = field(default_factory=list)
    scopes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- WS-Discovery messages


def build_probe(message_id: str) -> bytes:
    """A WS-Discovery Probe for ONVIF NetworkVideoTransmitters (ONVIF Core, section 7.3)."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<s:Envelope xmlns:s="{NS["s"]}" xmlns:a="{NS["a"]}" xmlns:d="{NS["d"]}" '
        f'xmlns:dn="{NS["dn"]}">'
        "<s:Header>"
        f'<a:Action s:mustUnderstand="1">{ACTION_PROBE}</a:Action>'
        f"<a:MessageID>{message_id}</a:MessageID>"
        "<a:ReplyTo><a:Address>"
        "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
        "</a:Address></a:ReplyTo>"
        '<a:To s:mustUnderstand="1">urn:schemas-xmlsoap-org:ws:2005:04:discovery</a:To>'
        "</s:Header>"
        "<s:Body><d:Probe><d:Types>dn:NetworkVideoTransmitter</d:Types></d:Probe></s:Body>"
        "</s:Envelope>"
    ).encode()


def scope_value(scopes: Iterable[str], kind: str) -> str:
    """The value of `onvif://www.onvif.org/<kind>/<value>` (case-insensitive kind), decoded."""
    prefix = f"onvif://www.onvif.org/{kind.lower()}/"
    for scope in scopes:
        if scope.lower().startswith(prefix):
            return unquote(scope[len(prefix):])
    return ""


def normal_mac(text: str) -> str:
    """`44:19:B6:3E:BA:A1` -> `4419b63ebaa1`; '' when it is not a MAC."""
    digits = _MAC_RE.sub("", text.lower())
    return digits if len(digits) == 12 else ""


def _text(el: ET.Element | None) -> str:
    return (el.text or "").strip() if el is not None else ""


def parse_probe_matches(data: bytes, relates_to: str | None = None) -> list[Discovered]:
    """The ProbeMatch entries of one datagram; [] for anything else (or for another probe)."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError:
        return []
    header = root.find("s:Header", NS)
    if relates_to is not None:
        related = _text(header.find("a:RelatesTo", NS) if header is not None else None)
        if related != relates_to:
            return []
    body = root.find("s:Body", NS)
    if body is None:
        return []
    out = []
    for match in body.iterfind("d:ProbeMatches/d:ProbeMatch", NS):
        endpoint = _text(match.find("a:EndpointReference/a:Address", NS))
        xaddrs = _text(match.find("d:XAddrs", NS)).split()
        if not endpoint and not xaddrs:
            continue
        device = Discovered(
            endpoint=endpoint,
            xaddrs=xaddrs,
            scopes=_text(match.find("d:Scopes", NS)).split(),
            types=_text(match.find("d:Types", NS)).split(),
        )
        device.host, device.port = xaddr_endpoint(xaddrs)
        if xaddrs and not device.host:
            continue  # only malformed XAddrs: no address to show or compare
        out.append(device)
    return out


def xaddr_endpoint(xaddrs: list[str]) -> tuple[str, int]:
    """Host and port of the first IPv4 XAddr (else the first one): where ONVIF answers."""
    parsed = []
    for x in xaddrs:
        # Any device on the LAN may answer: a malformed XAddr ("http://[fe80::1/", a bad port)
        # is skipped like any other junk.
        try:
            parts = urlsplit(x)
            if not parts.hostname:
                continue
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            continue
        parsed.append((parts.hostname, port))
    for host, port in parsed:
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(host).version == 4:
                return host, port
    return parsed[0] if parsed else ("", 80)


# ---------------------------------------------------------------- network


def _multicast_socket(interface: str | None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.setblocking(False)
        sock.bind(("0.0.0.0", 0))
        if interface is not None:
            try:
                index = socket.if_nametoindex(interface)
            except OSError as e:
                raise DiscoverError(f"no network interface named {interface!r}") from e
            # struct ip_mreqn {multiaddr, address, ifindex}: choose the interface by index
            mreqn = struct.pack("4s4si", b"\0" * 4, b"\0" * 4, index)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreqn)
            # one hop: cameras of a village hall share its LAN; never route the probe further
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
    except BaseException:
        sock.close()
        raise
    return sock


async def probe_network(
    interface: str | None, targets: list[tuple[str, int]], wait: float
) -> tuple[list[Discovered], int]:
    """Send the Probe (multicast on `interface`, unicast to `targets`) and collect answers for
    `wait` seconds. Returns the devices (one per endpoint) and the number of ignored datagrams."""
    loop = asyncio.get_running_loop()
    message_id = f"uuid:{uuid.uuid4()}"
    probe = build_probe(message_id)
    destinations = ([(WSD_GROUP, WSD_PORT)] if interface is not None else []) + targets
    sock = _multicast_socket(interface)
    found: dict[str, Discovered] = {}
    ignored = 0

    async def send_all() -> None:
        for attempt in range(PROBE_REPEATS):
            if attempt:
                await asyncio.sleep(REPEAT_DELAY)
            for dest in destinations:
                try:
                    await loop.sock_sendto(sock, probe, dest)
                except OSError as e:
                    raise DiscoverError(f"cannot send the probe to {dest[0]}:{dest[1]}: "
                                        f"{e.strerror or e}") from e

    try:
        sender = asyncio.create_task(send_all())
        try:
            async with asyncio.timeout(wait):
                while True:
                    data, source = await loop.sock_recvfrom(sock, MAX_DATAGRAM)
                    matches = parse_probe_matches(data, message_id)
                    if not matches:
                        ignored += 1
                    for device in matches:
                        device.source = source[0]
                        found.setdefault(device.endpoint or " ".join(device.xaddrs), device)
        except TimeoutError:
            pass  # the listening window is over
        finally:
            if not sender.done():
                sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        if sender.done() and not sender.cancelled() and sender.exception() is not None:
            raise sender.exception()  # type: ignore[misc]
    finally:
        sock.close()
    return sorted(found.values(), key=lambda d: (d.host, d.port, d.endpoint)), ignored


# ---------------------------------------------------------------- comparison


def _identity(camera: CameraConfig) -> dict[str, str]:
    """Stable identity of an inventory camera from its labels (endpoint, mac, serial)."""
    labels = {k.lower(): v for k, v in camera.labels.items()}
    out = {}
    endpoint = labels.get("endpoint") or labels.get("endpoint_reference") or labels.get("uuid")
    if endpoint:
        out["endpoint"] = endpoint.lower().removeprefix("urn:").removeprefix("uuid:")
    if labels.get("mac") and normal_mac(labels["mac"]):
        out["mac"] = normal_mac(labels["mac"])
    if labels.get("serial"):
        out["serial"] = labels["serial"]
    return out


def _matches_identity(device: Discovered, ident: dict[str, str]) -> str:
    """Which identity key links an answer to an inventory camera, or ''."""
    endpoint = device.endpoint.lower().removeprefix("urn:").removeprefix("uuid:")
    if ident.get("endpoint") and ident["endpoint"] == endpoint:
        return "endpoint"
    if ident.get("mac"):
        if device.mac == ident["mac"]:
            return "mac"
        # many cameras (Hikvision, Dahua, Axis) end their endpoint UUID with their MAC
        if endpoint.replace("-", "").endswith(ident["mac"]):
            return "mac"
    if ident.get("serial") and device.serial == ident["serial"]:
        return "serial"
    return ""


def compare(
    devices: list[Discovered], cameras: list[CameraConfig], default_port: int
) -> list[Row]:
    """Match answers to inventory cameras: by endpoint/MAC/serial labels if the camera has
    them, else by the ONVIF address (host and port)."""
    rows: list[Row] = []
    unmatched = list(devices)
    for cam in cameras:
        port = cam.onvif_port or default_port
        where = f"{cam.address}:{port}"
        ident = _identity(cam)
        device, how = None, ""
        for d in unmatched:
            how = _matches_identity(d, ident) if ident else ""
            if how:
                device = d
                break
        if device is None:
            for d in unmatched:
                if d.host == cam.address and d.port == port:
                    device, how = d, "address"
                    break
        if device is None:
            rows.append(Row("missing", id=cam.id, inventory_address=where))
            continue
        unmatched.remove(device)
        address = f"{device.host}:{device.port}"
        state = "ok" if (device.host, device.port) == (cam.address, port) else "address_changed"
        rows.append(Row(state, cam.id, address, where, device.hardware, device.name,
                        device.endpoint, how, device.xaddrs, device.scopes))
    for d in unmatched:
        rows.append(Row("unknown", "", f"{d.host}:{d.port}", "", d.hardware, d.name, d.endpoint,
                        "", d.xaddrs, d.scopes))
    order = {s: i for i, s in enumerate(("missing", "address_changed", "unknown", "ok"))}
    rows.sort(key=lambda r: (order[r.state], r.id, r.address))
    return rows


def verdict(rows: list[Row]) -> Status:
    """CRITICAL when an expected camera is missing, WARNING for unknown or moved ones."""
    states = {r.state for r in rows}
    if "missing" in states:
        return Status.CRITICAL
    if states & {"unknown", "address_changed"}:
        return Status.WARNING
    return Status.OK


# ---------------------------------------------------------------- output


def render_text(rows: list[Row], status: Status, where: str, lang: str = "en",
                compared: bool = True) -> str:
    """Verdict line, then one row per camera."""
    words = STATE_WORDS[lang]
    counts = {s: sum(1 for r in rows if r.state == s) for s in STATES}
    answered = sum(1 for r in rows if r.state != "missing")
    if lang == "vi":
        summary = f"{answered} camera trả lời qua {where}"
    else:
        summary = f"{answered} camera(s) answered on {where}"
    if compared:
        detail = ", ".join(f"{counts[s]} {words[s]}" for s in STATES if counts[s])
        summary += f": {detail}" if detail else ""
    lines = [f"{STATUS_WORDS[lang][status]} discover: {summary}"]
    if rows:
        table: list[tuple[str, ...]] = [HEADERS[lang]]
        for r in rows:
            state = words[r.state] if compared else "-"
            table.append((state, r.id or "-", r.address or "-", r.inventory_address or "-",
                          r.hardware or "-", r.name or "-", r.endpoint or "-"))
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        lines.append("")
        for row in table:
            lines.append(("  " + "  ".join(c.ljust(widths[i]) for i, c in enumerate(row)))
                         .rstrip())
    return "\n".join(lines) + "\n"


def render_json(rows: list[Row], status: Status, interface: str | None,
                targets: list[tuple[str, int]], ignored: int, compared: bool) -> str:
    """One JSON object: verdict, counts and every row with its XAddrs and Scopes."""
    data = {
        "status": status.name,
        "exit_code": int(status),
        "interface": interface,
        "targets": [f"{h}:{p}" for h, p in targets],
        "compared_with_inventory": compared,
        "counts": {s: sum(1 for r in rows if r.state == s) for s in STATES},
        "ignored_datagrams": ignored,
        "devices": [asdict(r) for r in rows],
    }
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


# ---------------------------------------------------------------- command line


def _target(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, str(WSD_PORT)
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST or HOST:PORT")
    return host.strip("[]"), int(port)


def add_parser(subparsers: Any) -> None:
    """Register `camnet discover`."""
    p = subparsers.add_parser(
        "discover", help="find ONVIF cameras (WS-Discovery) and compare with the inventory",
        description="Send a WS-Discovery Probe (multicast on --interface and/or unicast to "
        "--target), list the cameras that answer and compare them with the config. Exit 0 all "
        "match, 1 unknown or moved cameras, 2 inventory cameras missing, 3 error.")
    # one-line errors (see probe_cli.OneLineParser): an unknown argument is named, not echoed
    p.error = OneLineParser.error.__get__(p)
    p.parse_known_args = OneLineParser.parse_known_args.__get__(p)
    p.add_argument("--interface", "-i", help="network interface for the multicast probe "
                   "(e.g. eth0)")
    p.add_argument("--target", "-t", action="append", type=_target, default=[],
                   metavar="HOST[:PORT]", help="also probe this address by unicast "
                   f"(port {WSD_PORT} by default); repeatable")
    p.add_argument("--wait", type=duration, default=DEFAULT_WAIT,
                   help=f"how long to listen for answers (default {DEFAULT_WAIT:g}s)")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    p.add_argument("--site", action="append", default=[],
                   help="expect only this site's cameras (repeatable)")
    p.add_argument("--commune", action="append", default=[],
                   help="expect only this commune's cameras (repeatable)")
    p.add_argument("--no-inventory", action="store_true",
                   help="only list what answers; do not read the config")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--lang", choices=("en", "vi"), default="en")
    p.set_defaults(func=run)


def expected_cameras(loaded: LoadedConfig, args: argparse.Namespace) -> list[CameraConfig]:
    """The inventory cameras this run should see (all, or those of --site/--commune)."""
    cams = list(loaded.config.cameras)
    if args.site:
        unknown = set(args.site) - {s.id for s in loaded.config.sites}
        if unknown:
            raise DiscoverError(f"unknown site(s) {', '.join(sorted(unknown))} in {args.config}")
        cams = [c for c in cams if c.site in args.site]
    if args.commune:
        communes = {s.id: s.commune for s in loaded.config.sites}
        known = {*communes.values(), *(c.id for c in loaded.config.communes)}
        unknown = set(args.commune) - known
        if unknown:  # a typo would filter out every camera and report "all match"
            raise DiscoverError(f"unknown commune(s) {', '.join(sorted(unknown))} in {args.config}")
        cams = [c for c in cams if communes.get(c.site) in args.commune]
    return cams


def run(args: argparse.Namespace) -> int:
    """Run `camnet discover`; returns the exit code."""
    try:
        if args.interface is None and not args.target:
            raise DiscoverError("give --interface (multicast) and/or --target HOST (unicast)")
        cameras: list[CameraConfig] = []
        default_port = 80
        if not args.no_inventory:
            try:
                loaded = load_config(args.config)
            except ConfigError as e:
                first = e.problems[0] if e.problems else str(e)
                raise DiscoverError(f"config error: {first}; run 'camnet check-config "
                                    f"{args.config}' (or use --no-inventory)") from e
            cameras = expected_cameras(loaded, args)
            default_port = loaded.config.defaults.onvif_port
        devices, ignored = asyncio.run(probe_network(args.interface, args.target, args.wait))
        rows = compare(devices, cameras, default_port)
        if args.interface is None:
            # unicast only: a camera we did not ask cannot be called missing
            asked = {h for h, _ in args.target}
            rows = [r for r in rows
                    if r.state != "missing" or r.inventory_address.rpartition(":")[0] in asked]
        compared = not args.no_inventory
        status = verdict(rows) if compared else Status.OK
        where = args.interface or ", ".join(f"{h}:{p}" for h, p in args.target)
        if args.json:
            sys.stdout.write(render_json(rows, status, args.interface, args.target, ignored,
                                         compared))
        else:
            sys.stdout.write(render_text(rows, status, where, args.lang, compared))
        return int(status)
    except DiscoverError as e:
        return fail(args, str(e), PROG)
    except OSError as e:
        return fail(args, f"network error: {e.strerror or e}", PROG)

