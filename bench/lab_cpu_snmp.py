"""CPU of the lab's SNMP half (snmpsim + fault proxy): idle, and while polled like camnet would.

    python3 bench/lab_cpu_snmp.py [--idle 10] [--rounds 4] [--interval 15] [--net 127.0.21]

Starts 37 simulated access points on NET.1-37 (default: this bench's range, not the real lab),
measures the CPU seconds of the snmpsim and proxy processes (from /proc, client excluded)
over an idle period, then over ROUNDS rounds of `snmpbulkwalk` of ifTable on all 37 agents,
one round every INTERVAL seconds (v2c, except the Tu Tra positions 12-25 which use v3 as in
config/camnet.yaml).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab.snmp import LabAp, SnmpLab

AUTH, PRIV = "bench-auth-key", "bench-priv-key"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


async def walk(ap: LabAp, v3: bool, env: dict[str, str]) -> int:
    cmd = ["snmpbulkwalk", "-M", "/dev/null", "-On", "-Oq", "-t", "5", "-r", "1"]
    if v3:
        cmd += ["-v3", "-l", "authPriv", "-u", "camnet", "-a", "SHA", "-A", AUTH,
                "-x", "AES", "-X", PRIV]
    else:
        cmd += ["-v2c", "-c", "public"]
    cmd += [f"{ap.address}:{ap.port}", "1.3.6.1.2.1.2.2"]
    proc = await asyncio.create_subprocess_exec(
        *cmd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    out, _ = await proc.communicate()
    return len(out.splitlines())


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--interval", type=float, default=15.0)
    parser.add_argument("--net", default="127.0.21")
    args = parser.parse_args()
    aps = [LabAp(f"ap-{i:02d}", f"{args.net}.{i}", 1161) for i in range(1, 38)]
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, SNMP_PERSISTENT_DIR=tmp)
        lab = SnmpLab(aps, Path(tmp), v3_auth_key=AUTH, v3_priv_key=PRIV)
        t0 = time.monotonic()
        await lab.start()
        print(f"start-up: {time.monotonic() - t0:.2f} s for {len(aps)} agents")
        try:
            pids = [p.pid for p in (lab._snmpsim, lab._proxy) if p is not None]
            await asyncio.sleep(2)  # let start-up work settle
            c0, w0 = cpu_seconds(pids), time.monotonic()
            await asyncio.sleep(args.idle)
            c1, w1 = cpu_seconds(pids), time.monotonic()
            print(f"idle: {c1 - c0:.3f} CPU s over {w1 - w0:.1f} s = "
                  f"{100 * (c1 - c0) / (w1 - w0):.2f}% of a core")
            varbinds = 0
            c0, w0 = cpu_seconds(pids), time.monotonic()
            for n in range(args.rounds):
                start = time.monotonic()
                counts = await asyncio.gather(
                    *(walk(ap, 12 <= i <= 25, env) for i, ap in enumerate(aps, 1))
                )
                varbinds += sum(counts)
                if n < args.rounds - 1:
                    await asyncio.sleep(max(0.0, args.interval - (time.monotonic() - start)))
            # the last round's interval still counts as polled time
            await asyncio.sleep(max(0.0, args.interval - (time.monotonic() - start)))
            c1, w1 = cpu_seconds(pids), time.monotonic()
            print(f"polled: ifTable walk of {len(aps)} agents every {args.interval:g} s, "
                  f"{args.rounds} rounds, {varbinds} varbinds: {c1 - c0:.2f} CPU s over "
                  f"{w1 - w0:.1f} s = {100 * (c1 - c0) / (w1 - w0):.1f}% of a core, "
                  f"{1000 * (c1 - c0) / max(varbinds, 1):.2f} CPU s per 1,000 varbinds")
        finally:
            await lab.stop()


if __name__ == "__main__":
    asyncio.run(main())
