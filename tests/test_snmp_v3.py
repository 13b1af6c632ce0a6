"""SNMPv3 against Debian's snmpd: every auth/priv protocol, every level, and rejected credentials.

Both implementations run every test: camnet's own USM (`mode: fast`, probes/snmp_usm.py) and
pysnmp's (`mode: pysnmp`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from monitor.config import SnmpAuth
from probes.base import CheckResult, Credentials, Target
from probes.snmp import SnmpSettings, probe_snmp
from probes.snmp_client import close_managers
from probes.snmp_v3 import close_engines

HOST = "127.0.11.20"
LOSSY = "127.0.11.21"  # LossyLine in front of snmpd
OTHER = "127.0.11.22"  # a second snmpd: same v3 user name, other keys
OTHER_AUTH, OTHER_PRIV = "other-auth-pass", "other-priv-pass"
PORT = 1161
PORT6 = 16161  # on ::1 (IPv6 loopback)
AUTH_PASS = "camnet-auth-pass"
PRIV_PASS = "camnet-priv-pass"

# (camnet auth protocol, camnet priv protocol) -> net-snmp names
COMBOS = {
    ("MD5", "DES"): ("MD5", "DES"),
    ("SHA", "AES"): ("SHA", "AES"),
    ("SHA224", "AES"): ("SHA-224", "AES"),
    ("SHA256", "AES192"): ("SHA-256", "AES-192"),
    ("SHA384", "AES256"): ("SHA-384", "AES-256"),
    ("SHA512", "AES256"): ("SHA-512", "AES-256"),
}


def _user(auth: str, priv: str) -> str:
    return f"u{auth.lower()}{priv.lower()}"


@contextlib.contextmanager
def _snmpd(work: Path, host: str, lines: list[str]) -> Iterator[Path]:
    """Debian snmpd on `host`:PORT with these config lines, until the block ends."""
    conf = work / "snmpd.conf"
    conf.write_text("\n".join(lines) + "\n")
    env = dict(os.environ, SNMP_PERSISTENT_DIR=str(work / "persist"))
    proc = subprocess.Popen(
        ["/usr/sbin/snmpd", "-f", "-Lf", str(work / "snmpd.log"), "-C", "-c", str(conf),
         "-I", "-smux", "-p", str(work / "snmpd.pid")], env=env)
    try:
        end = time.monotonic() + 20
        while subprocess.run(["snmpget", "-v2c", "-c", "public", "-t", "0.5", "-r", "0",
                              f"{host}:{PORT}", "1.3.6.1.2.1.1.3.0"], env=env,
                             capture_output=True, check=False).returncode != 0:
            if time.monotonic() > end or proc.poll() is not None:
                raise RuntimeError("snmpd did not start")
            time.sleep(0.2)
        yield work
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def snmpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Debian snmpd with one v3 user per protocol pair, plus noAuth and authNoPriv users."""
    lines = [f"agentaddress udp:{HOST}:{PORT},udp6:[::1]:{PORT6}", "rocommunity public 127.0.0.0/8",
             "rocommunity6 public ::1/128"]
    for (auth, priv), (n_auth, n_priv) in COMBOS.items():
        user = _user(auth, priv)
        lines += [f'createUser {user} {n_auth} "{AUTH_PASS}" {n_priv} "{PRIV_PASS}"',
                  f"rouser {user} priv"]
    lines += ["createUser unoauth", "rouser unoauth noauth",
              f'createUser uauthonly SHA-256 "{AUTH_PASS}"', "rouser uauthonly auth"]
    with _snmpd(tmp_path_factory.mktemp("snmpd-v3"), HOST, lines) as work:
        yield work


@pytest.fixture(scope="module")
def other_snmpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A second AP whose v3 user has the first one's name, not its keys."""
    lines = [f"agentaddress udp:{OTHER}:{PORT}", "rocommunity public 127.0.0.0/8",
             f'createUser {_user("SHA", "AES")} SHA "{OTHER_AUTH}" AES "{OTHER_PRIV}"',
             f'rouser {_user("SHA", "AES")} priv']
    with _snmpd(tmp_path_factory.mktemp("snmpd-v3-other"), OTHER, lines) as work:
        yield work


def _target(host: str = HOST, **auth: Any) -> Target:
    secrets = {k: SecretStr(v) for k, v in auth.items() if k.endswith("password") or k == "community"}
    config = SnmpAuth(type="snmp", **{k: v for k, v in auth.items() if k not in secrets})
    return Target("ap-v3", "ap", host, {}, Credentials(config, secrets), {"snmp_port": PORT})


MODES = ("fast", "pysnmp")


async def _probe(target: Target, **settings: Any) -> CheckResult:
    loop = asyncio.get_running_loop()
    try:
        return await probe_snmp(target, SnmpSettings(request_timeout=1.0, retries=1, **settings),
                                {}, loop.time() + 20)
    finally:
        close_managers()
        close_engines()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("auth", "priv"), list(COMBOS))
async def test_auth_priv_protocols(snmpd: Path, auth: str, priv: str, mode: str) -> None:
    v2c = await _probe(_target(version="2c", community="public"))
    v3 = await _probe(_target(version="3", username=_user(auth, priv),
                              security_level="authPriv", auth_protocol=auth,
                              auth_password=AUTH_PASS, priv_protocol=priv,
                              priv_password=PRIV_PASS), mode=mode)
    assert v3.success, v3.message
    assert v3.facts["sys_name"] == v2c.facts["sys_name"]
    assert v3.facts["sys_descr"] == v2c.facts["sys_descr"]
    assert [i["name"] for i in v3.facts["interfaces"]] == [i["name"] for i in v2c.facts["interfaces"]]
    assert v3.facts["interfaces"], "snmpd serves this host's interfaces"


@pytest.mark.parametrize("mode", MODES)
async def test_one_user_name_with_two_sets_of_keys_polled_at_once(
        snmpd: Path, other_snmpd: Path, mode: str) -> None:
    """Two APs whose v3 users share a name but not their keys, polled at the same time."""
    def ap(host: str, auth_password: str, priv_password: str) -> Target:
        return _target(host, version="3", username=_user("SHA", "AES"),
                       security_level="authPriv", auth_protocol="SHA",
                       auth_password=auth_password, priv_protocol="AES",
                       priv_password=priv_password)

    settings = SnmpSettings(request_timeout=1.0, retries=1, mode=mode)
    loop = asyncio.get_running_loop()
    try:
        for _ in range(3):
            results = await asyncio.gather(
                probe_snmp(ap(HOST, AUTH_PASS, PRIV_PASS), settings, {}, loop.time() + 20),
                probe_snmp(ap(OTHER, OTHER_AUTH, OTHER_PRIV), settings, {}, loop.time() + 20))
            assert [(r.success, r.reason) for r in results] == [(True, "")] * 2, [
                r.message for r in results]
    finally:
        close_managers()
        close_engines()


@pytest.mark.parametrize("mode", MODES)
async def test_no_auth_and_auth_no_priv(snmpd: Path, mode: str) -> None:
    noauth = await _probe(_target(version="3", username="unoauth", security_level="noAuthNoPriv"),
                          mode=mode)
    assert noauth.success, noauth.message
    authonly = await _probe(_target(version="3", username="uauthonly", security_level="authNoPriv",
                                    auth_protocol="SHA256", auth_password=AUTH_PASS), mode=mode)
    assert authonly.success, authonly.message


@pytest.mark.parametrize("mode", MODES)
async def test_wrong_auth_key_is_auth_failed(snmpd: Path, mode: str) -> None:
    result = await _probe(_target(version="3", username=_user("SHA", "AES"),
                                  security_level="authPriv", auth_protocol="SHA",
                                  auth_password="not-the-password", priv_protocol="AES",
                                  priv_password=PRIV_PASS), mode=mode)
    assert result.reason == "auth_failed"
    assert not result.success
    assert "not-the-password" not in result.message


@pytest.mark.parametrize("mode", MODES)
async def test_unknown_user_is_auth_failed(snmpd: Path, mode: str) -> None:
    result = await _probe(_target(version="3", username="nobody", security_level="authPriv",
                                  auth_protocol="SHA", auth_password=AUTH_PASS,
                                  priv_protocol="AES", priv_password=PRIV_PASS), mode=mode)
    assert result.reason == "auth_failed"


async def test_wrong_priv_key_is_auth_failed(snmpd: Path) -> None:
    result = await _probe(_target(version="3", username=_user("SHA", "AES"),
                                  security_level="authPriv", auth_protocol="SHA",
                                  auth_password=AUTH_PASS, priv_protocol="AES",
                                  priv_password="not-the-priv-key"))
    assert result.reason == "auth_failed"
    assert "not-the-priv-key" not in result.message


class LossyLine(asyncio.DatagramProtocol):
    """A UDP proxy to snmpd that drops the requests `drop` names: (kind, n), the n-th (from 1)
    request of its kind, "discovery" (a plain probe) or "encrypted" (authPriv)."""

    def __init__(self, drop: set[tuple[str, int]], slow: float = 0.0) -> None:
        self.drop = drop
        self.slow = slow  # seconds added to every encrypted answer
        self.seen = {"discovery": 0, "encrypted": 0}
        self.client: tuple[str, int] | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.upstream: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        flags = re.search(rb"\x04\x01(.)\x02\x01\x03", data, re.S)
        assert flags, data
        kind = "encrypted" if flags.group(1)[0] & 0x02 else "discovery"
        self.seen[kind] += 1
        self.client = addr
        if (kind, self.seen[kind]) not in self.drop and self.upstream is not None:
            self.upstream.sendto(data)

    def answer(self, data: bytes) -> None:
        if self.transport is None or self.client is None:
            return
        flags = re.search(rb"\x04\x01(.)\x02\x01\x03", data, re.S)
        if self.slow and flags and flags.group(1)[0] & 0x02:
            asyncio.get_running_loop().call_later(self.slow, self.transport.sendto, data,
                                                  self.client)
        else:
            self.transport.sendto(data, self.client)


@contextlib.asynccontextmanager
async def lossy_line(drop: set[tuple[str, int]], slow: float = 0.0) -> AsyncIterator[LossyLine]:
    """LossyLine on LOSSY:PORT in front of snmpd."""
    loop = asyncio.get_running_loop()
    line = LossyLine(drop, slow)
    front, _ = await loop.create_datagram_endpoint(lambda: line, local_addr=(LOSSY, PORT))

    class Back(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            line.answer(data)

    back, _ = await loop.create_datagram_endpoint(Back, remote_addr=(HOST, PORT))
    line.upstream = back
    try:
        yield line
    finally:
        front.close()
        back.close()


async def _probe_lossy(drop: set[tuple[str, int]],
                       slow: float = 0.0) -> tuple[CheckResult, dict[str, int]]:
    target = _target(version="3", username=_user("SHA", "AES"), security_level="authPriv",
                     auth_protocol="SHA", auth_password=AUTH_PASS, priv_protocol="AES",
                     priv_password=PRIV_PASS)
    target = Target(target.id, target.kind, LOSSY, {}, target.auth, {"snmp_port": PORT})
    loop = asyncio.get_running_loop()
    async with lossy_line(drop, slow) as line:
        try:
            result = await probe_snmp(target, SnmpSettings(request_timeout=0.3, retries=1), {},
                                      loop.time() + 20)
        finally:
            close_managers()
            close_engines()
    return result, line.seen


@pytest.mark.parametrize("lost", [
    {("encrypted", 1), ("encrypted", 2), ("discovery", 2), ("encrypted", 3), ("encrypted", 4)},
    {("encrypted", 1), ("encrypted", 2), ("encrypted", 3), ("discovery", 3)},
], ids=["first-probe", "second-probe"])
async def test_a_lossy_line_is_not_a_wrong_privacy_key(snmpd: Path,
                                                       lost: set[tuple[str, int]]) -> None:
    """A request lost with its retry, then one of the agent's discovery answers lost too:
    that is the line (a timeout), not a wrong privacy key. A right key was blamed for the
    first when a single answered discovery and one more unanswered request (with its retry)
    sufficed, and would be for the second if one pair of probes did."""
    result, seen = await _probe_lossy(lost)
    assert result.reason == "timeout", (result.reason, result.message, seen)
    assert ("discovery", seen["discovery"]) in lost, seen  # the lost probe ended the check


async def test_a_slow_agent_is_not_a_wrong_privacy_key(snmpd: Path) -> None:
    """Encrypted answers that come 0.7 s late, after a request's two tries of 0.3 s: the
    discovery probes are answered at once, the late answers come back encrypted while another
    request waits: the keys work, the agent is slow (a timeout, not auth_failed)."""
    result, seen = await _probe_lossy(set(), slow=0.7)
    assert result.reason == "timeout", (result.reason, result.message, seen)
    # The check ended at the first probe after a late answer, not after all four pairs.
    assert seen["discovery"] <= 3, seen


async def test_a_request_answered_during_the_privacy_check_is_used(snmpd: Path) -> None:
    """A request lost with its retry, then answered when sent again in the privacy check:
    that answer is the request's, and the check goes on to succeed (it failed, "answers were
    lost, then came back")."""
    result, seen = await _probe_lossy({("encrypted", 1), ("encrypted", 2)})
    assert result.success, (result.reason, result.message, seen)
    assert result.facts["sys_name"] and seen["discovery"] == 2, seen


async def test_wrong_level_is_auth_failed(snmpd: Path) -> None:
    # The user exists with authPriv; asking noAuthNoPriv is refused by the agent.
    result = await _probe(_target(version="3", username=_user("SHA", "AES"),
                                  security_level="noAuthNoPriv"))
    assert result.reason == "auth_failed"  # VACM: authorizationError


async def test_wrong_community_is_timeout(snmpd: Path) -> None:
    result = await _probe(_target(version="2c", community="not-public"))
    assert result.reason == "timeout"
    assert "not-public" not in result.message


async def test_ipv6_agent(snmpd: Path) -> None:
    target = _target(version="2c", community="public")
    target.address = "::1"
    target.options["snmp_port"] = PORT6
    result = await _probe(target)
    assert result.success, result.message
    assert result.facts["interfaces"]
