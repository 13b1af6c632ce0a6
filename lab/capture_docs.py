"""Re-capture the console examples of docs/probe.md from real runs on a private lab.

    python3 -m lab.capture_docs            # every example
    python3 -m lab.capture_docs ap camera  # some groups: ap, errors, discover, camera, http

Each example in docs/probe.md is a block after a marker `<!-- out:NAME [head=N tail=M] -->`;
this starts a lab of one camera and two APs on 127.0.15.70-75 (control 127.0.15.73:9839),
runs the very command the block shows, and writes its output (and exit code) into the block,
cut to its first N and last M lines when the marker says so. Paths are shown as a user
would type them (`config/camnet.yaml`, `secrets/…`). The secrets are the lab's own.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "probe.md"
CONTROL = "127.0.15.73:9839"
LISTEN = "127.0.15.75:9830"
GROUPS = ("ap", "errors", "discover", "camera", "http")
SECRETS = {"cam": "lab-Pass-15x", "c": "ap-Comm-15x", "a": "auth-Pass-15x", "p": "priv-Pass-15x"}
CONFIG = """\
defaults: {ap_auth: v2, camera_auth: cam, snmp_port: 1161, onvif_port: 8080}
communes: [{id: daron, name: "Đạ Ròn"}, {id: tutra, name: "Tu Tra"}]
sites:
  - {id: daron-01, commune: daron, name: "Nhà văn hóa thôn 01, Đạ Ròn", operator: vnpt}
  - {id: tutra-03, commune: tutra, name: "Nhà văn hóa thôn 03, Tu Tra", operator: viettel}
auths:
  cam: {type: onvif, username: admin, password_file: secrets/cam}
  v2: {type: snmp, version: 2c, community_file: secrets/c}
  v3: {type: snmp, version: 3, username: camnet, security_level: authPriv, auth_protocol: SHA,
       auth_password_file: secrets/a, priv_protocol: AES, priv_password_file: secrets/p}
cameras:
  - {id: cam-daron-01, site: daron-01, address: 127.0.15.70}
aps:
  - {id: ap-daron-01, site: daron-01, address: 127.0.15.71}
  - {id: ap-tutra-03, site: tutra-03, address: 127.0.15.72, auth: v3}
"""
MARKER = re.compile(r"<!-- out:(\w+)(?: head=(\d+))?(?: tail=(\d+))? -->\n```console\n.*?```",
                    re.S)


class Capture:
    """Runs commands in a scratch directory and keeps their output by example name."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.config = tmp / "camnet.yaml"
        self.outputs: dict[str, str] = {}
        self.env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}

    def shown(self, text: str) -> str:
        """Paths as a user types them."""
        return (text.replace(str(self.config), "config/camnet.yaml")
                .replace(f"{self.tmp}/secrets/", "secrets/").replace(f"{self.tmp}/", ""))

    def camnet(self, name: str, *args: str) -> None:
        """Run `camnet ARGS` and keep `$ camnet …`, its output and `echo $?`."""
        proc = subprocess.run([sys.executable, "-m", "monitor", *args], capture_output=True,
                              text=True, env=self.env, cwd=ROOT, timeout=120, check=False)
        text = f"$ camnet {' '.join(args)}\n{proc.stdout}{proc.stderr}$ echo $?\n{proc.returncode}\n"
        self.outputs[name] = self.shown(text)
        print(f"{name}: exit {proc.returncode}", flush=True)

    def shell(self, name: str, command: str, shown: str) -> None:
        """Run a shell pipeline (curl, jq) and keep `$ SHOWN` and its output."""
        proc = subprocess.run(command, shell=True, capture_output=True, text=True, env=self.env,
                              cwd=ROOT, timeout=120, check=False)
        self.outputs[name] = self.shown(f"$ {shown}\n{proc.stdout}{proc.stderr}")
        print(f"{name}: exit {proc.returncode}", flush=True)

    def fault(self, device: str, state: str) -> None:
        """Put a lab device in a fault state (`ok` to clear)."""
        subprocess.run([sys.executable, "-m", "monitor", "lab", "fault", device, state,
                        "--control", CONTROL], capture_output=True, env=self.env, cwd=ROOT,
                       timeout=60, check=True)


def ap(c: Capture) -> None:
    """The AP examples: OK in both languages, JSON, --debug, SNMPv3 by address, offline."""
    cfg = str(c.config)
    c.camnet("ap_ok", "probe", "ap", "ap-tutra-03", "--config", cfg)
    c.camnet("ap_ok_vi", "probe", "ap", "ap-tutra-03", "--config", cfg, "--lang", "vi")
    c.camnet("ap_json", "probe", "ap", "ap-daron-01", "--config", cfg, "--json")
    c.camnet("ap_debug", "probe", "ap", "ap-daron-01", "--config", cfg, "--debug")
    c.camnet("ap_v3_addr", "probe", "ap", "snmp://127.0.15.72:1161", "--v3-user", "camnet",
             "--auth-password-file", f"{c.tmp}/secrets/a", "--priv-password-file",
             f"{c.tmp}/secrets/p")
    c.fault("ap-daron-01", "offline")
    try:
        c.camnet("ap_offline", "probe", "ap", "ap-daron-01", "--config", cfg, "--timeout", "5s")
        c.camnet("ap_offline_vi", "probe", "ap", "ap-daron-01", "--config", cfg, "--timeout",
                 "5s", "--lang", "vi")
    finally:
        c.fault("ap-daron-01", "ok")


def errors(c: Capture) -> None:
    """Mistakes a technician makes, and what camnet says."""
    cfg = str(c.config)
    c.camnet("err_unknown", "probe", "camera", "cam-daron-1", "--config", cfg)
    broken = c.tmp / "broken.yaml"
    broken.write_text(CONFIG.replace("site: daron-01, address: 127.0.15.70",
                                     "site: daron-99, address: 127.0.15.70"))
    c.camnet("err_config", "probe", "camera", "cam-daron-01", "--config", str(broken))
    c.camnet("err_option", "probe", "camera", "cam-daron-01", "--password", "hunter2")
    c.camnet("err_kind", "probe", "camera", "ap-daron-01", "--config", cfg)
    c.camnet("err_url", "probe", "camera", "rtsp://admin:hunter2@127.0.15.70:8554/ch1")
    c.camnet("err_unreach_ap", "probe", "ap", "snmp://127.0.15.79:1161", "--skip", "ping",
             "--timeout", "3s")


def discover(c: Capture) -> None:
    """WS-Discovery against two recorded cameras (one in the inventory, one not)."""
    from tests.wsd_responder import Camera, Responder

    responders = [
        Responder([Camera("127.0.15.70", 8080, "urn:uuid:54575a2e-3b2d-11b2-8a7b-4419b63ebaa1",
                          "hikvision")], bind="127.0.15.70").start(),
        Responder([Camera("127.0.15.74", 80, "urn:uuid:a9f3c2d0-0d2e-4f0b-9e43-00408cfab754",
                          "axis")], bind="127.0.15.74").start(),
    ]
    cfg = str(c.config)
    try:
        targets = ("--target", "127.0.15.70", "--target", "127.0.15.74")
        c.camnet("discover", "discover", "--config", cfg, *targets)
        c.camnet("discover_vi", "discover", "--config", cfg, *targets, "--lang", "vi")
        c.camnet("discover_json", "discover", "--config", cfg, "--target", "127.0.15.74",
                 "--json")
    finally:
        for r in responders:
            r.stop()


def camera(c: Capture) -> None:
    """The camera examples: OK, JSON through jq, --debug, a wrong password, black, hang."""
    cfg = str(c.config)
    c.camnet("cam_ok", "probe", "camera", "cam-daron-01", "--config", cfg, "--save-frame",
             f"{c.tmp}/frame.jpg")
    c.camnet("cam_ok_vi", "probe", "camera", "cam-daron-01", "--config", cfg, "--lang", "vi")
    c.camnet("cam_json", "probe", "camera", "cam-daron-01", "--config", cfg, "--json")
    c.camnet("cam_debug", "probe", "camera", "cam-daron-01", "--config", cfg, "--debug")
    if shutil.which("jq"):
        jq = ("jq -c '.status, (.metrics[] | select(.name == \"camnet_camera_up\" or .name == "
              "\"camnet_camera_problem\") | [.name, .labels.problem, .value])'")
        c.shell("cam_jq", f"{sys.executable} -m monitor probe camera cam-daron-01 --config "
                f"{cfg} --json | {jq}", f"camnet probe camera cam-daron-01 --json | {jq}")
    wrong = c.tmp / "wrong"
    wrong.write_text("not-the-password\n")
    for suffix, lang in (("", ()), ("_vi", ("--lang", "vi"))):
        c.camnet(f"cam_wrongpw{suffix}", "probe", "camera", "onvif://127.0.15.70:8080", "--user",
                 "admin", "--password-file", str(wrong), *lang)
    for fault in ("black", "hang"):
        c.fault("cam-daron-01", fault)
        try:
            for suffix, lang in (("", ()), ("_vi", ("--lang", "vi"))):
                c.camnet(f"cam_{fault}{suffix}", "probe", "camera", "cam-daron-01", "--config",
                         cfg, "--timeout", "6s", *lang)
        finally:
            c.fault("cam-daron-01", "ok")


def http(c: Capture) -> None:
    """The daemon's /probe endpoint: an inventory id, and an address it refuses."""
    log = open(c.tmp / "daemon.log", "wb")  # noqa: SIM115 - closed after the daemon stops
    daemon = subprocess.Popen([sys.executable, "-m", "monitor", "run", "--config", str(c.config),
                               "--listen", LISTEN], stdout=log, stderr=subprocess.STDOUT,
                              env=c.env, cwd=ROOT, start_new_session=True)
    try:
        for _ in range(150):
            ok = subprocess.run(["curl", "-sf", f"http://{LISTEN}/healthz"], capture_output=True,
                                check=False).returncode == 0
            if ok:
                break
            time.sleep(0.2)
        url = f"http://{LISTEN}/probe?target="
        c.shell("http_probe", f"curl -s '{url}ap-daron-01'", f"curl -s '{url}ap-daron-01'")
        c.shell("http_refused", f"curl -si '{url}127.0.15.71'", f"curl -si '{url}127.0.15.71'")
    finally:
        daemon.terminate()
        daemon.wait(30)
        log.close()


RUNS: dict[str, Callable[[Capture], None]] = {
    "ap": ap, "errors": errors, "discover": discover, "camera": camera, "http": http,
}


def fill(doc: str, outputs: dict[str, str]) -> tuple[str, list[str]]:
    """The page with every captured block replaced; and the markers left as they were."""
    missing: list[str] = []

    def one(m: re.Match[str]) -> str:
        name, head, tail = m.group(1), m.group(2), m.group(3)
        if name not in outputs:
            missing.append(name)
            return m.group(0)
        lines = outputs[name].rstrip("\n").splitlines()
        if head:
            n, t = int(head), int(tail or 2)
            if len(lines) > n + t:
                lines = [*lines[:n], "…", *lines[-t:]]
        marker = m.group(0).split("\n", 1)[0]
        return marker + "\n```console\n" + "\n".join(lines) + "\n```"

    return MARKER.sub(one, doc), missing


def main() -> int:
    """Start the lab, run the chosen groups, rewrite docs/probe.md."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("groups", nargs="*", metavar="GROUP",
                        help=f"some of {', '.join(GROUPS)} (default: all)")
    args = parser.parse_args()
    unknown = [g for g in args.groups if g not in GROUPS]
    if unknown:
        parser.error(f"unknown group {unknown[0]!r}: choose from {', '.join(GROUPS)}")
    from tests.lab_fixture import start_lab, stop_lab

    with tempfile.TemporaryDirectory(prefix="camnet-docs-") as name:
        tmp = Path(name)
        (tmp / "secrets").mkdir()
        for file, value in SECRETS.items():
            (tmp / "secrets" / file).write_text(value + "\n")
        capture = Capture(tmp)
        capture.config.write_text(CONFIG)
        lab = start_lab(capture.config, CONTROL, tmp / "lab")
        try:
            for group in args.groups or GROUPS:
                RUNS[group](capture)
        finally:
            stop_lab(lab)
    page, missing = fill(DOC.read_text(encoding="utf-8"), capture.outputs)
    DOC.write_text(page, encoding="utf-8")
    print(f"docs/probe.md: {len(capture.outputs)} examples captured; not in this run: "
          f"{', '.join(sorted(set(missing))) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
