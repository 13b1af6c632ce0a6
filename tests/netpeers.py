"""Loopback TCP peers that misbehave on purpose (hang, answer slowly, flood, refuse) and a tiny
line-protocol prober to drive the scheduler with them."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from probes.base import CheckResult, Target


class Peer:
    """A TCP server on a loopback address whose behaviour can change while it runs."""

    def __init__(self, host: str, port: int, mode: str = "ok", delay: float = 0.0) -> None:
        self.host, self.port, self.mode, self.delay = host, port, mode, delay
        self.server: asyncio.Server | None = None
        self.connections = 0
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> Peer:
        if self.mode == "refuse":
            return self
        self.server = await asyncio.start_server(self._handle, self.host, self.port)
        return self

    async def stop(self) -> None:
        for w in list(self._writers):
            w.close()
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)
            self.server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            if self.mode == "hang":
                await asyncio.sleep(3600)
            elif self.mode == "flood":
                chunk = b"x" * 65536
                while True:
                    writer.write(chunk)
                    await writer.drain()
            else:
                await reader.readline()
                if self.mode == "slow":
                    await asyncio.sleep(self.delay)
                writer.write(b"OK\n")
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


async def line_probe(target: Target, settings: Any, state: dict[str, Any], deadline: float) -> CheckResult:
    """Connect, send a line, expect `OK`: a minimal prober with the real signature."""
    result = CheckResult("snmp", False)
    port = int(target.options.get("snmp_port") or 7000)
    writer = None
    try:
        async with asyncio.timeout_at(deadline):
            reader, writer = await asyncio.open_connection(target.address, port)
            writer.write(b"PING\n")
            await writer.drain()
            line = await reader.readline()
        if line.strip() == b"OK":
            result.success = True
            result.add("camnet_ap_up", 1)
        else:
            result.reason, result.message = "bad_reply", "unexpected answer"
            result.add("camnet_ap_up", 0)
    except TimeoutError:
        result.reason, result.message = "timeout", "no answer before the deadline"
        result.add("camnet_ap_up", 0)
    except ConnectionRefusedError:
        result.reason, result.message = "refused", "connection refused"
        result.add("camnet_ap_up", 0)
    except (ValueError, asyncio.LimitOverrunError):
        result.reason, result.message = "bad_reply", "answer too long"
        result.add("camnet_ap_up", 0)
    except OSError as e:
        result.reason, result.message = "unreachable", str(e)
        result.add("camnet_ap_up", 0)
    finally:
        if writer is not None:
            writer.close()
    return result


def ap_config(path: Any, devices: list[tuple[str, str, int]], *, interval: str = "1s",
              timeout: str = "800ms", listen: str = "127.0.13.250:9830", extra: str = "") -> None:
    """Write a small camnet config with APs (id, address, port) on one site."""
    lines = [
        "server:", f"  listen: {listen}",
        "communes:", "  - {id: testc, name: \"Xã Thử\"}",
        "sites:", "  - {id: s1, commune: testc, name: \"Nhà văn hóa thử\", operator: vnpt}",
        "auths:", "  v2:", "    type: snmp", "    version: 2c", "    community: public-test-secret",
        "profiles:", "  fast:", "    kind: ap",
        f"    snmp: {{interval: {interval}, timeout: {timeout}, max_backoff: 4s}}",
        f"    ping: {{interval: {interval}, timeout: {timeout}, enabled: false}}",
        "defaults: {ap_profile: fast, ap_auth: v2}",
        "aps:",
    ]
    for did, addr, port in devices:
        lines.append(f"  - {{id: {did}, site: s1, address: {addr}, snmp_port: {port}}}")
    path.write_text("\n".join(lines) + "\n" + extra)
