"""The daemon's `GET /probe?target=ID`: inventory ids are checked now (real SNMP agent), anything
else is refused with 400 and a clear message and never probed — traps listening on every port an
address in the query names (UDP and TCP, 127.0.15.41) must receive nothing."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.config import load_config
from monitor.daemon import Daemon
from tests.snmpd_peer import run_snmpd

AGENT = "127.0.15.40"
TRAP = "127.0.15.41"
LISTEN_HOST = "127.0.15.42"
COMMUNITY = "endpoint-Secret-99"


def free_tcp_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, hits: list[str]) -> None:
        self.hits = hits

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.hits.append(f"udp from {addr}")


class Traps:
    """UDP and TCP listeners on TRAP that record anything that arrives."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.udp_ports: list[int] = []
        self.tcp_ports: list[int] = []
        self._closers: list[Any] = []

    async def start(self, udp: list[int], tcp: list[int]) -> Traps:
        loop = asyncio.get_running_loop()
        for port in udp:
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _Udp(self.hits), local_addr=(TRAP, port))
            except OSError:
                continue  # a privileged port without root: the other traps still watch
            self.udp_ports.append(port)
            self._closers.append(transport.close)

        async def on_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.hits.append("tcp connection")
            writer.close()

        for port in tcp:
            try:
                server = await asyncio.start_server(on_tcp, TRAP, port)
            except OSError:
                continue
            self.tcp_ports.append(port)
            self._closers.append(server.close)
        return self

    def close(self) -> None:
        for close in self._closers:
            close()


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[tuple[str, int]]:
    """A daemon (in-process) with two APs, one of them a real snmpd; yields (base URL, port)."""
    with run_snmpd(AGENT, COMMUNITY, tmp_path) as agent_port:
        listen = f"{LISTEN_HOST}:{free_tcp_port(LISTEN_HOST)}"
        cfg = tmp_path / "camnet.yaml"
        cfg.write_text(
            f"server: {{listen: '{listen}'}}\n"
            "communes: [{id: daron, name: Đạ Ròn}]\n"
            "sites: [{id: daron-01, commune: daron, name: Nhà văn hóa thôn 01}]\n"
            f"auths: {{v2: {{type: snmp, version: 2c, community: {COMMUNITY}}}}}\n"
            "profiles:\n"
            "  ap:\n"
            "    kind: ap\n"
            "    ping: {enabled: false}\n"
            "    snmp: {interval: 30s, timeout: 3s}\n"
            "defaults: {ap_profile: ap, ap_auth: v2}\n"
            "aps:\n"
            f"  - {{id: ap-01, site: daron-01, address: {AGENT}, snmp_port: {agent_port}}}\n"
            f"  - {{id: ap-02, site: daron-01, address: 127.0.15.43, snmp_port: {agent_port}}}\n")
        d = Daemon(cfg)
        await d.start(load_config(cfg))
        try:
            yield f"http://{listen}", agent_port
        finally:
            await d.stop()


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return r.status, await r.text()


async def test_inventory_id_is_checked_now(daemon: tuple[str, int]) -> None:
    base, _ = daemon
    status, text = await get(f"{base}/probe?target=ap-01")
    assert status == 200, text
    up = {s.labels["ap"]: s.value for f in text_string_to_metric_families(text)
          for s in f.samples if s.name == "camnet_ap_up"}
    assert up == {"ap-01": 1.0}
    assert COMMUNITY not in text
    status, text = await get(f"{base}/probe?target=ap-01&debug=true")
    assert status == 200
    assert "ap-01" in text and COMMUNITY not in text


async def test_non_inventory_targets_refused_and_never_probed(daemon: tuple[str, int]) -> None:
    base, agent_port = daemon
    udp_port, tcp_port = 16161, free_tcp_port(TRAP)
    traps = await Traps().start(udp=[161, 1161, 3702, udp_port],
                                tcp=[80, 554, 8080, 8554, tcp_port])
    try:
        assert traps.udp_ports and traps.tcp_ports
        # the traps do catch traffic (so an empty list below means something)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"x", (TRAP, traps.udp_ports[0]))
        _, writer = await asyncio.open_connection(TRAP, traps.tcp_ports[0])
        writer.close()
        for _ in range(50):
            if len(traps.hits) == 2:
                break
            await asyncio.sleep(0.02)
        assert sorted(traps.hits)[0] == "tcp connection" and len(traps.hits) == 2
        traps.hits.clear()
        queries = [
            TRAP, f"{TRAP}:{udp_port}", f"snmp://{TRAP}", f"snmp://{TRAP}:{udp_port}",
            f"snmp://{COMMUNITY}@{TRAP}:{udp_port}", f"rtsp://{TRAP}:{tcp_port}/ch1",
            f"rtsp://admin:pw@{TRAP}:8554/Streaming/Channels/101", f"onvif://{TRAP}:{tcp_port}",
            f"http://{TRAP}:8080/onvif/device_service", f"{TRAP}:1161", "localhost",
            "AP-01", "ap-01 ", " ap-01", "ap-01/../127.0.15.41", "ap-99", "ap-01%00",
            "<script>alert(1)</script>",
        ]
        for q in queries:
            status, text = await get(f"{base}/probe?target={quote(q, safe='')}")
            assert status == 400, (q, text)
            assert "inventory id" in text, (q, text)
            assert "<script>" not in text
            assert len(text.splitlines()) == 1, text
        status, text = await get(f"{base}/probe")
        assert status == 400 and "inventory id" in text
        status, text = await get(f"{base}/probe?target={TRAP}&debug=true")
        assert status == 400
        # a second target parameter cannot smuggle an address in beside a valid id
        status, text = await get(f"{base}/probe?target=ap-01&target={TRAP}")
        assert status == 200
        await asyncio.sleep(0.5)  # let any stray datagram or connection arrive
        assert traps.hits == []
    finally:
        traps.close()
    assert agent_port  # the real agent stayed up for the valid probe
