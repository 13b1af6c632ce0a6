"""`camnet lab` (run the simulated site) and `camnet lab fault DEVICE STATE` (change a device)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from lab.site import DEFAULT_CONTROL, DEFAULT_RTSP_PORT

CONTROL_TIMEOUT_S = 15.0  # a fault on `all` switches every camera in turn
EXIT_OK, EXIT_UNKNOWN = 0, 3


def add_parser(subparsers: Any) -> None:
    """Register `lab` and its `fault` and `status` subcommands."""
    lab = subparsers.add_parser(
        "lab", help="run the simulated site (cameras and access points) until Ctrl-C",
        description="Serve every camera and access point of the config on loopback, with "
                    "faults switchable while it runs (`camnet lab fault`).",
    )
    lab.add_argument("--config", type=Path, default=Path("config/camnet.yaml"))
    lab.add_argument("--control", default=DEFAULT_CONTROL, help="HOST:PORT of the control API")
    lab.add_argument("--state-dir", type=Path, default=None,
                     help="working files of the agents (default: a temporary directory)")
    lab.add_argument("--rtsp-port", type=int, default=DEFAULT_RTSP_PORT)
    lab.add_argument("--cache-dir", type=Path, default=None,
                     help="clip cache (default $CAMNET_LAB_CACHE or ~/.cache/camnet-lab)")
    lab.add_argument("--log-level", default="info",
                     choices=("debug", "info", "warning", "error"))
    lab.set_defaults(func=run, lab_command=None)
    sub = lab.add_subparsers(dest="lab_command", metavar="COMMAND")
    fault = sub.add_parser("fault", help="change one device (or a site, or all) while the lab runs")
    fault.add_argument("device", help="device id, site id or `all`")
    fault.add_argument("state", help="ok, offline, hang, slow=N, stall, auth, clock=+N, reboot, "
                                     "black, frozen, blurred, moved, dark, loss=R (APs)")
    fault.add_argument("--control", default=DEFAULT_CONTROL, dest="fault_control",
                       metavar="HOST:PORT")
    fault.set_defaults(func=run)
    status = sub.add_parser("status", help="print every device's state in the running lab")
    status.add_argument("--control", default=DEFAULT_CONTROL, dest="fault_control",
                       metavar="HOST:PORT")
    status.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Dispatch `camnet lab ...`."""
    if args.lab_command == "fault":
        return _fault(args.fault_control, args.device, args.state)
    if args.lab_command == "status":
        return _status(args.fault_control)
    return _serve(args)


def control_request(control: str, path: str, body: dict[str, Any] | None = None,
                    timeout: float = CONTROL_TIMEOUT_S) -> tuple[int, Any]:
    """(HTTP status, JSON reply) of one call to a running lab's control API (POST with a body)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://{control}{path}", data=data,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read())
        except ValueError:
            return e.code, {"error": f"HTTP {e.code}"}


def _fault(control: str, device: str, state: str) -> int:
    try:
        status, reply = control_request(control, "/fault", {"device": device, "state": state})
    except (OSError, ValueError) as e:
        print(f"camnet lab fault: the lab is not running at {control} ({e}); "
              "start it with `camnet lab`", file=sys.stderr)
        return EXIT_UNKNOWN
    if status != 200:
        print(f"camnet lab fault: {reply.get('error', status)}", file=sys.stderr)
        return EXIT_UNKNOWN
    for dev, new in sorted(reply["changed"].items()):
        print(f"{dev}: {new}")
    return EXIT_OK


def _status(control: str) -> int:
    try:
        _, reply = control_request(control, "/status")
    except (OSError, ValueError) as e:
        print(f"camnet lab status: the lab is not running at {control} ({e})", file=sys.stderr)
        return EXIT_UNKNOWN
    for dev, state in sorted(reply["devices"].items()):
        print(f"{dev}: {state}")
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    from monitor.config import ConfigError, load_config

    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        loaded = load_config(args.config)
    except ConfigError as e:
        for line in e.problems:
            print(line, file=sys.stderr)
        return EXIT_UNKNOWN
    except OSError as e:
        print(f"camnet lab: cannot read {args.config}: {e}", file=sys.stderr)
        return EXIT_UNKNOWN
    with contextlib.ExitStack() as stack:
        state_dir = args.state_dir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="camnet-lab-")))
        return asyncio.run(_serve_async(loaded, state_dir, args))


async def _serve_async(loaded: Any, state_dir: Path, args: argparse.Namespace) -> int:
    from lab.site import LabSite

    site = LabSite(loaded, state_dir, rtsp_port=args.rtsp_port, control=args.control,
                   cache_dir=args.cache_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Ctrl-C during a (cold, slow) start stops the start too.
    starting = asyncio.ensure_future(site.start())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await starting
        print("camnet lab: interrupted while starting", file=sys.stderr)
        return 130
    stopping.cancel()
    if starting.exception() is not None:
        print(f"camnet lab: could not start: {starting.exception()}", file=sys.stderr)
        return EXIT_UNKNOWN
    try:
        print(site.table())
        print(f"camnet lab: ready in {site.startup_seconds:.1f}s; control API http://{args.control}"
              " (camnet lab fault DEVICE STATE); Ctrl-C stops", flush=True)
        await stop.wait()
    finally:
        await site.stop()
    print("camnet lab: stopped", flush=True)
    return EXIT_OK
