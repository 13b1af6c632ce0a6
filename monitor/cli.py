"""The `camnet` command line: run, check-config, probe, lab, discover, demo."""

from __future__ import annotations

import argparse
import importlib
import io
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from monitor import __version__
from monitor.config import DEFAULT_CONFIG, ConfigError, load_config

# Subcommands implemented in their own modules: name -> module with add_parser(sub) and run(args).
SUBCOMMAND_MODULES = {
    "probe": "monitor.probe_cli",
    "lab": "lab.cli",
    "discover": "monitor.discover",
    "demo": "monitor.demo",
}


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate a config file; print every problem as FILE:LINE: key.path: message."""
    try:
        loaded = load_config(args.path)
    except ConfigError as e:
        for line in e.problems:
            print(line)
        print(f"{args.path}: INVALID ({len(e.problems)} problem(s))", file=sys.stderr)
        return 1
    c = loaded.config
    print(
        f"{args.path}: OK ({len(c.sites)} sites, {len(c.cameras)} cameras, {len(c.aps)} access "
        f"points, {len(c.auths)} auths, {len(c.profiles)} profiles)"
    )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run the daemon until SIGTERM/SIGINT."""
    # From here until the daemon is up (imports, WSDLs, grab workers, the port: seconds),
    # SIGHUP's default action would kill it: a `systemctl reload` right after start must
    # reload once it is up instead (monitor.daemon.serve takes this over).
    early: list[int] = []
    previous = signal.signal(signal.SIGHUP, lambda signum, _frame: early.append(signum))
    try:
        from monitor.daemon import run_daemon

        return run_daemon(args.config, log_format=args.log_format, log_level=args.log_level,
                          listen=args.listen, early_signals=early, state_dir=args.state_dir)
    finally:
        signal.signal(signal.SIGHUP, previous)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="camnet",
        description="Monitor village security cameras (ONVIF, RTSP) and WiFi access points (SNMP).",
    )
    parser.add_argument("--version", action="version", version=f"camnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run the monitoring daemon")
    run.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="config file (YAML)")
    run.add_argument(
        "--listen", metavar="HOST:PORT", help="override server.listen (e.g. 0.0.0.0:9830 in a container)"
    )
    run.add_argument("--state-dir", type=Path, metavar="DIR",
                     help="override state_dir (where the cameras' picture memory is kept)")
    run.add_argument("--log-format", choices=("logfmt", "json"), default="logfmt")
    run.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check-config", help="validate a config file")
    check.add_argument("path", nargs="?", type=Path, default=DEFAULT_CONFIG)
    check.set_defaults(func=cmd_check_config)

    for module_name in SUBCOMMAND_MODULES.values():
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            if e.name and module_name.startswith(e.name):
                continue  # that subcommand is not built yet
            raise
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `camnet` console script."""
    # Vietnamese names on a terminal or pipe that cannot show them (a Windows console, a C
    # locale) come out as "?", not as an error that turns a CRITICAL camera into UNKNOWN.
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="replace")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        # argparse exits 2 on bad arguments; the monitoring-plugin convention says 3 (UNKNOWN).
        return 3 if e.code not in (0, None) else 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 3
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
