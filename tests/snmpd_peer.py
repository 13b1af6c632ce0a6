"""Debian snmpd as a real SNMP agent on a loopback address, for probe tests (killed after use)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def free_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextmanager
def run_snmpd(host: str, community: str, workdir: Path,
              sys_name: str = "NVH-Test-01") -> Iterator[int]:
    """Start snmpd on host:<free port> answering `community`; yields the port."""
    binary = shutil.which("snmpd") or "/usr/sbin/snmpd"
    if not os.path.exists(binary):
        pytest.skip("snmpd is not installed")
    port = free_udp_port(host)
    conf = workdir / "snmpd.conf"
    conf.write_text(f"rocommunity {community} default\nsysName {sys_name}\n"
                    "sysLocation Nha van hoa thon test\n")
    # no MIB loading: Debian ships no IETF MIBs and the agent would log hundreds of warnings
    env = {**os.environ, "SNMP_PERSISTENT_DIR": str(workdir), "MIBS": "",
           "MIBDIRS": str(workdir / "no-mibs")}
    proc = subprocess.Popen([binary, "-f", "-Lo", "-C", "-c", str(conf), "-I", "-smux",
                             f"udp:{host}:{port}"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            check = subprocess.run(
                ["snmpget", "-v2c", "-c", community, "-t", "0.3", "-r", "0", f"{host}:{port}",
                 "1.3.6.1.2.1.1.5.0"], capture_output=True, text=True, env=env, timeout=10)
            if check.returncode == 0:
                break
            if proc.poll() is not None:
                pytest.fail("snmpd exited at start")
            if time.monotonic() > deadline:
                pytest.fail("snmpd did not answer within 10 s")
        yield port
    finally:
        proc.kill()
        proc.wait(timeout=10)
