"""UDP proxy in front of the lab's snmpsim agents: applies offline/hang/slow/loss faults.

Runs as its own process (`python3 -m lab.snmpproxy CONFIG.json`), so a test or a CLI that blocks
its own event loop never stalls the simulated access points. Each access point has a front
socket on its contract address (127.0.1.x:1161); requests are forwarded to the snmpsim endpoint
behind it from one upstream socket per client address, and answers go back through the front
socket. SNMP payloads, v3 included, pass through untouched: uptime, counters and reboots are
simulated inside snmpsim (see lab/snmp.py), so SNMPv3 encryption is never in the way.

The fault of every access point lives in a small JSON control file written by SnmpLab.set_fault;
the proxy re-reads it only when its inode or mtime changed, checked on each packet, so an idle
proxy never wakes up and a new fault applies to the very next packet.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Upstream sockets idle this long are closed; long enough for a slow=N answer to come back.
UPSTREAM_IDLE_SECONDS = 120.0
SWEEP_INTERVAL_SECONDS = 30.0
MAX_DATAGRAM = 65535


@dataclass
class Control:
    """One access point's simulated condition, as stored in its control file."""

    state: str = "ok"
    lab_start: float = 0.0
    boot_time: float | None = None  # set by a simulated reboot; None = up since before the lab
    boots: int = 0

    def to_json(self) -> str:
        """Serialise for the control file."""
        return json.dumps(
            {
                "state": self.state,
                "lab_start": self.lab_start,
                "boot_time": self.boot_time,
                "boots": self.boots,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Control:
        """Parse a control file's content."""
        raw = json.loads(text)
        boot = raw.get("boot_time")
        return cls(
            state=str(raw.get("state", "ok")),
            lab_start=float(raw.get("lab_start", 0.0)),
            boot_time=None if boot is None else float(boot),
            boots=int(raw.get("boots", 0)),
        )


def write_control(path: Path, control: Control) -> None:
    """Replace a control file atomically (readers never see half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(control.to_json(), encoding="utf-8")
    os.replace(tmp, path)


class ControlReader:
    """Cached view of one control file, re-read only when the file changed."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._key: tuple[int, int, int] | None = None
        self._control = Control()

    def current(self) -> Control:
        """The control as of now (one stat call when nothing changed)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return self._control
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if key != self._key:
            try:
                with open(self.path, encoding="utf-8") as fh:
                    self._control = Control.from_json(fh.read())
                self._key = key
            except (OSError, ValueError):
                pass  # keep the last good state; the writer replaces the file atomically
        return self._control


def parse_fault(state: str) -> tuple[str, float]:
    """Split a stored state into (kind, parameter): ('slow', 2.0), ('ok', 0.0)..."""
    kind, _, arg = state.partition("=")
    return kind, float(arg) if arg else 0.0


def _read_length(data: bytes, pos: int) -> tuple[int, int]:
    """BER length at pos -> (length, position after it)."""
    first = data[pos]
    pos += 1
    if first < 0x80:
        return first, pos
    count = first & 0x7F
    if count == 0 or count > 4:
        raise ValueError("unsupported BER length")
    return int.from_bytes(data[pos : pos + count], "big"), pos + count


def community_of(data: bytes) -> bytes | None:
    """Community of an SNMPv1/v2c message; None for SNMPv3 or anything unparsable."""
    try:
        if data[0] != 0x30:
            return None
        _, pos = _read_length(data, 1)
        if data[pos] != 0x02:
            return None
        vlen, pos = _read_length(data, pos + 1)
        version = int.from_bytes(data[pos : pos + vlen], "big")
        pos += vlen
        if version not in (0, 1) or data[pos] != 0x04:
            return None
        clen, pos = _read_length(data, pos + 1)
        return data[pos : pos + clen]
    except (IndexError, ValueError):
        return None


@dataclass
class _Upstream:
    sock: socket.socket
    last_used: float


@dataclass
class ProxiedAgent:
    """One access point: a front socket, its snmpsim backend and its fault state."""

    ap_id: str
    front: tuple[str, int]
    back: tuple[str, int]
    control: ControlReader
    loop: asyncio.AbstractEventLoop
    transport: asyncio.DatagramTransport | None = None
    upstreams: dict[tuple[str, int], _Upstream] = field(default_factory=dict)
    _sweep: asyncio.TimerHandle | None = None

    def _dropping(self) -> bool:
        kind, _ = parse_fault(self.control.current().state)
        return kind in ("offline", "hang")

    def request(self, data: bytes, client: tuple[str, int]) -> None:
        """A datagram from a client: drop, delay or forward it per the current fault."""
        kind, arg = parse_fault(self.control.current().state)
        if kind in ("offline", "hang"):
            return
        if kind == "loss" and random.random() < arg:
            return
        # snmpsim serves its default context (SNMPv3 without a context name) from a data file
        # whose v1/v2c community is the empty string; a real agent would not answer that.
        if community_of(data) == b"":
            return
        if kind == "slow" and arg > 0:
            self.loop.call_later(arg, self._forward, data, client)
        else:
            self._forward(data, client)

    def _forward(self, data: bytes, client: tuple[str, int]) -> None:
        up = self.upstreams.get(client)
        if up is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.connect(self.back)
            up = _Upstream(sock, self.loop.time())
            self.upstreams[client] = up
            self.loop.add_reader(sock.fileno(), self._answer, client)
            if self._sweep is None:
                self._sweep = self.loop.call_later(SWEEP_INTERVAL_SECONDS, self._expire)
        up.last_used = self.loop.time()
        with contextlib.suppress(OSError):  # backend gone: the client just times out
            up.sock.send(data)

    def _answer(self, client: tuple[str, int]) -> None:
        up = self.upstreams.get(client)
        if up is None:
            return
        while True:
            try:
                data = up.sock.recv(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._close(client)
                return
            up.last_used = self.loop.time()
            # a fault set while the request was in flight also swallows its answer
            if self.transport is not None and not self._dropping():
                self.transport.sendto(data, client)

    def _close(self, client: tuple[str, int]) -> None:
        up = self.upstreams.pop(client, None)
        if up is not None:
            self.loop.remove_reader(up.sock.fileno())
            up.sock.close()

    def _expire(self) -> None:
        self._sweep = None
        now = self.loop.time()
        for client in [c for c, u in self.upstreams.items() if now - u.last_used > UPSTREAM_IDLE_SECONDS]:
            self._close(client)
        if self.upstreams:
            self._sweep = self.loop.call_later(SWEEP_INTERVAL_SECONDS, self._expire)

    def close(self) -> None:
        """Close every socket of this agent."""
        for client in list(self.upstreams):
            self._close(client)
        if self._sweep is not None:
            self._sweep.cancel()
        if self.transport is not None:
            self.transport.close()


class _FrontProtocol(asyncio.DatagramProtocol):
    def __init__(self, agent: ProxiedAgent) -> None:
        self.agent = agent

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.agent.request(data, addr)


async def serve(config: dict[str, Any]) -> None:
    """Bind every front socket, then proxy until SIGTERM/SIGINT or stdin closes."""
    loop = asyncio.get_running_loop()
    agents: list[ProxiedAgent] = []
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        for entry in config["agents"]:
            agent = ProxiedAgent(
                ap_id=entry["id"],
                front=(entry["front"][0], int(entry["front"][1])),
                back=(entry["back"][0], int(entry["back"][1])),
                control=ControlReader(entry["control"]),
                loop=loop,
            )
            transport, _ = await loop.create_datagram_endpoint(
                lambda a=agent: _FrontProtocol(a), local_addr=agent.front  # type: ignore[misc]
            )
            agent.transport = transport
            agents.append(agent)
        print("ready", flush=True)
        if config.get("watch_stdin"):
            # the lab holds our stdin open; EOF means it died without stopping us
            reader = asyncio.StreamReader()
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
            eof = asyncio.ensure_future(reader.read())
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({eof, stopped}, return_when=asyncio.FIRST_COMPLETED)
            for task in (eof, stopped):
                task.cancel()
            if eof.done() and not stopped.done():
                _kill_group(config.get("kill_pgid_on_eof"))
        else:
            await stop.wait()
    finally:
        for agent in agents:
            agent.close()


def _kill_group(pgid: int | None) -> None:
    """The lab died without stopping snmpsim: take it down with us (no orphans)."""
    if pgid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    """Entry point: `python3 -m lab.snmpproxy CONFIG.json`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("config", type=Path)
    args = parser.parse_args(argv)
    config = json.loads(args.config.read_text(encoding="utf-8"))
    try:
        asyncio.run(serve(config))
    except OSError as exc:
        print(f"snmpproxy: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
