"""The lab's simulated access points, checked with net-snmp's own tools (snmpget, snmpbulkwalk).

Runs its own SnmpLab on 127.0.21.x (this file's address range), so it works while a real lab
is up on 127.0.1.x.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.snmp import (
    OTHER_RECORDINGS,
    RECORDINGS,
    RECORDINGS_DIR,
    Control,
    LabAp,
    SnmpLab,
    assign_recordings,
    curate,
    live_value,
    normalize_state,
)
from lab.snmpproxy import community_of

pytestmark = pytest.mark.skipif(shutil.which("snmpget") is None, reason="net-snmp tools missing")

AUTH_KEY = "lab-test-auth-1"
PRIV_KEY = "lab-test-priv-1"
SYS_DESCR = "1.3.6.1.2.1.1.1.0"
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
IF_IN_OCTETS = "1.3.6.1.2.1.2.2.1.10"
IF_HC_IN_OCTETS = "1.3.6.1.2.1.31.1.1.1.6"
UBNT_STA_COUNT = "1.3.6.1.4.1.41112.1.4.5.1.15.1"

# One access point per recording, then one ubiquiti per fault test so tests do not interfere.
APS = [
    LabAp("ap-ubnt", "127.0.21.1", 1161, "ubiquiti-m5"),
    LabAp("ap-aruba", "127.0.21.2", 1161, "aruba-7210"),
    LabAp("ap-ruckus", "127.0.21.3", 1161, "ruckus-scg"),
    LabAp("ap-ruijie", "127.0.21.4", 1161, "ruijie-m18000"),
    LabAp("ap-wac", "127.0.21.5", 1161, "sangfor-wac"),
    LabAp("ap-vyatta", "127.0.21.6", 1161, "vyatta-router"),
    LabAp("ap-ac", "127.0.21.7", 1161, "sangfor-ac"),
    LabAp("ap-reboot", "127.0.21.8", 1161, "ubiquiti-m5"),
    LabAp("ap-loss", "127.0.21.9", 1161, "ubiquiti-m5"),
    LabAp("ap-down", "127.0.21.10", 1161, "ubiquiti-m5"),
    LabAp("ap-slow", "127.0.21.11", 1161, "ubiquiti-m5"),
]
BY_ID = {ap.id: ap for ap in APS}


@pytest.fixture(scope="module")
def snmp_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """net-snmp tools write under SNMP_PERSISTENT_DIR; keep that in a temp dir."""
    env = dict(os.environ)
    env["SNMP_PERSISTENT_DIR"] = str(tmp_path_factory.mktemp("net-snmp"))
    return env


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnmpLab]:
    """One SnmpLab for the module (its processes outlive any test's event loop)."""
    the_lab = SnmpLab(
        APS, tmp_path_factory.mktemp("snmplab"), v3_auth_key=AUTH_KEY, v3_priv_key=PRIV_KEY
    )
    asyncio.run(the_lab.start())
    try:
        yield the_lab
    finally:
        asyncio.run(the_lab.stop())


def snmp(
    env: dict[str, str], tool: str, ap: LabAp, *oids: str, version: str = "2c",
    community: str = "public", auth: str = AUTH_KEY, priv: str = PRIV_KEY,
    timeout: float = 2.0,
) -> subprocess.CompletedProcess[str]:
    """Run snmpget/snmpbulkwalk once (no retries), numeric OIDs and values only."""
    cmd = [tool, "-M", "/dev/null", "-On", "-Oq", "-Ot", "-t", str(timeout), "-r", "0"]
    if version == "3":
        cmd += ["-v3", "-l", "authPriv", "-u", "camnet", "-a", "SHA", "-A", auth,
                "-x", "AES", "-X", priv]
    else:
        cmd += [f"-v{version}", "-c", community]
    cmd += [f"{ap.address}:{ap.port}", *oids]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)


def values(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """Parse `-On -Oq` output: '.1.3.6... value' lines."""
    assert result.returncode == 0, result.stderr
    out = {}
    for line in result.stdout.splitlines():
        oid, _, value = line.partition(" ")
        out[oid.lstrip(".")] = value.strip().strip('"')
    return out


def recorded_sys_descr(recording: str) -> str:
    """sysDescr as the recording file has it (the oracle for what snmpget must print)."""
    for line in (RECORDINGS_DIR / f"{recording}.snmprec").read_text().splitlines():
        oid, tag, value = line.split("|", 2)
        if oid == SYS_DESCR:
            return bytes.fromhex(value).decode() if tag.endswith("x") else value
    raise AssertionError(f"{recording} has no sysDescr")


# --- every access point answers, with its recording ------------------------------------------


@pytest.mark.parametrize("ap", APS[:7], ids=lambda ap: ap.recording or ap.id)
def test_answers_v1_v2c_and_v3_with_the_recordings_sysdescr(
    lab: SnmpLab, snmp_env: dict[str, str], ap: LabAp
) -> None:
    expected = recorded_sys_descr(lab.recording_of(ap.id))
    for version in ("1", "2c", "3"):
        got = values(snmp(snmp_env, "snmpget", ap, SYS_DESCR, SYS_UPTIME, version=version))
        assert got[SYS_DESCR] == expected, version
        assert int(got[SYS_UPTIME]) > 0


def test_uptime_grows_between_two_reads(lab: SnmpLab, snmp_env: dict[str, str]) -> None:
    ap = BY_ID["ap-ubnt"]
    first = int(values(snmp(snmp_env, "snmpget", ap, SYS_UPTIME))[SYS_UPTIME])
    time.sleep(1.1)
    second = int(values(snmp(snmp_env, "snmpget", ap, SYS_UPTIME, version="3"))[SYS_UPTIME])
    assert second > first
    # the recording's uptime (97 days) carries on, it does not restart at lab start
    assert first >= 843153800


@pytest.mark.parametrize(("ap_id", "column"), [("ap-ubnt", IF_IN_OCTETS),
                                               ("ap-vyatta", IF_HC_IN_OCTETS)])
def test_octet_counters_increase(
    lab: SnmpLab, snmp_env: dict[str, str], ap_id: str, column: str
) -> None:
    ap = BY_ID[ap_id]
    before = values(snmp(snmp_env, "snmpbulkwalk", ap, column))
    time.sleep(1.1)
    after = values(snmp(snmp_env, "snmpbulkwalk", ap, column))
    assert before.keys() == after.keys() and len(before) >= 2
    grown = [oid for oid in before if int(after[oid]) > int(before[oid])]
    assert grown, "no interface counter moved"
    assert all(int(after[oid]) >= int(before[oid]) for oid in before)


def test_walk_of_iftable_is_complete(lab: SnmpLab, snmp_env: dict[str, str]) -> None:
    got = values(snmp(snmp_env, "snmpbulkwalk", BY_ID["ap-ubnt"], "1.3.6.1.2.1.2.2"))
    assert len(got) == 9 * 22  # 9 interfaces x 22 columns, as recorded


@pytest.mark.parametrize("ap", APS[:7], ids=lambda ap: ap.recording or ap.id)
def test_full_walk_returns_every_recorded_oid(
    lab: SnmpLab, snmp_env: dict[str, str], ap: LabAp
) -> None:
    recorded = {
        line.split("|", 1)[0]
        for line in (RECORDINGS_DIR / f"{lab.recording_of(ap.id)}.snmprec").read_text().splitlines()
    }
    result = snmp(snmp_env, "snmpbulkwalk", ap, "-Cc", ".1", timeout=5)
    assert result.returncode == 0, result.stderr
    walked = {line.split(" ", 1)[0].lstrip(".") for line in result.stdout.splitlines()
              if line.startswith(".1.")}
    assert walked == recorded  # animated values evaluate, nothing hides the rest of the tree


def test_wrong_community_and_wrong_v3_keys_get_no_answer(
    lab: SnmpLab, snmp_env: dict[str, str]
) -> None:
    ap = BY_ID["ap-ubnt"]
    for community in ("private", ""):
        result = snmp(snmp_env, "snmpget", ap, SYS_DESCR, community=community, timeout=0.5)
        assert result.returncode != 0 and "Timeout" in result.stderr
    wrong_auth = snmp(snmp_env, "snmpget", ap, SYS_DESCR, version="3", auth="wrong-auth-key")
    assert wrong_auth.returncode != 0
    assert "Authentication failure" in wrong_auth.stderr
    wrong_priv = snmp(snmp_env, "snmpget", ap, SYS_DESCR, version="3", priv="wrong-priv-key",
                      timeout=0.5)
    assert wrong_priv.returncode != 0 and not wrong_priv.stdout.strip()


# --- faults -------------------------------------------------------------------------------------


def test_reboot_restarts_uptime_and_counters_for_v2c_and_v3(
    lab: SnmpLab, snmp_env: dict[str, str]
) -> None:
    ap = BY_ID["ap-reboot"]
    before = values(snmp(snmp_env, "snmpget", ap, SYS_UPTIME, IF_IN_OCTETS + ".2"))
    assert int(before[SYS_UPTIME]) > 100 * 86400  # days of recorded uptime
    lab.set_fault("ap-reboot", "reboot")
    assert lab.status()["ap-reboot"] == "ok"
    for version in ("2c", "3"):
        after = values(snmp(snmp_env, "snmpget", ap, SYS_UPTIME, IF_IN_OCTETS + ".2",
                            version=version))
        assert int(after[SYS_UPTIME]) < 100 * 60  # under a minute since the reboot
        octets = int(after[IF_IN_OCTETS + ".2"])
        # restarted from zero: at most a minute of traffic, far below the recorded 1.69e9
        assert octets < int(before[IF_IN_OCTETS + ".2"]) and octets < 20_000_000
    # and then it runs normally: uptime grows again from there
    first = int(values(snmp(snmp_env, "snmpget", ap, SYS_UPTIME))[SYS_UPTIME])
    time.sleep(1.1)
    assert int(values(snmp(snmp_env, "snmpget", ap, SYS_UPTIME))[SYS_UPTIME]) > first


def test_loss_drops_a_share_of_requests(lab: SnmpLab, snmp_env: dict[str, str]) -> None:
    ap = BY_ID["ap-loss"]
    lab.set_fault("ap-loss", "loss=0.5")
    try:
        results = [snmp(snmp_env, "snmpget", ap, SYS_UPTIME, timeout=0.5) for _ in range(20)]
    finally:
        lab.set_fault("ap-loss", "ok")
    answered = sum(r.returncode == 0 for r in results)
    timed_out = sum("Timeout" in r.stderr for r in results)
    assert answered + timed_out == 20
    assert 0 < answered < 20  # P(all or none) = 2 * 0.5**20
    values(snmp(snmp_env, "snmpget", ap, SYS_UPTIME))  # back to ok: answers


@pytest.mark.parametrize("state", ["offline", "hang"])
def test_offline_and_hang_answer_nothing(
    lab: SnmpLab, snmp_env: dict[str, str], state: str
) -> None:
    ap = BY_ID["ap-down"]
    lab.set_fault("ap-down", state)
    try:
        assert lab.status()["ap-down"] == state
        for version in ("2c", "3"):
            result = snmp(snmp_env, "snmpget", ap, SYS_UPTIME, version=version, timeout=0.5)
            assert result.returncode != 0 and "Timeout" in result.stderr
    finally:
        lab.set_fault("ap-down", "ok")
    values(snmp(snmp_env, "snmpget", ap, SYS_UPTIME, version="3"))


def test_slow_answers_only_after_the_delay(lab: SnmpLab, snmp_env: dict[str, str]) -> None:
    ap = BY_ID["ap-slow"]
    lab.set_fault("ap-slow", "slow=2")
    try:
        assert lab.status()["ap-slow"] == "slow=2"
        impatient = snmp(snmp_env, "snmpget", ap, SYS_UPTIME, timeout=1)
        assert impatient.returncode != 0 and "Timeout" in impatient.stderr
        patient = snmp(snmp_env, "snmpget", ap, SYS_UPTIME, timeout=4)
        assert int(values(patient)[SYS_UPTIME]) > 0
    finally:
        lab.set_fault("ap-slow", "ok")


@pytest.mark.parametrize(
    ("state", "message"),
    [("black", "cameras only"), ("frozen", "cameras only"), ("clock=+600", "cameras only"),
     ("auth", "cameras only"), ("slow=abc", "needs a number"), ("slow=0", "needs a number"),
     ("loss=1.5", "0 <= R <= 1"), ("reboot=3", "unknown"), ("melted", "unknown")],
)
def test_bad_states_are_refused_clearly(lab: SnmpLab, state: str, message: str) -> None:
    before = lab.status()
    with pytest.raises(ValueError, match=message):
        lab.set_fault("ap-ubnt", state)
    assert lab.status() == before


def test_unknown_access_point_is_refused(lab: SnmpLab) -> None:
    with pytest.raises(ValueError, match="unknown access point 'cam-daron-01'"):
        lab.set_fault("cam-daron-01", "ok")


def test_status_lists_every_access_point(lab: SnmpLab) -> None:
    assert set(lab.status()) == set(BY_ID)
    assert set(lab.SNMP_STATES) == {"ok", "offline", "hang", "slow=N", "reboot", "loss=R"}


def test_v3_keys_stay_out_of_logs_and_command_lines(lab: SnmpLab) -> None:
    procs = [p for p in (lab._snmpsim, lab._proxy) if p is not None]
    texts = [Path(f"/proc/{p.pid}/cmdline").read_bytes().decode() for p in procs]
    texts += [(lab.root / name).read_text() for name in ("snmpsim.log", "proxy.log", "proxy.json")]
    assert texts and not any(AUTH_KEY in t or PRIV_KEY in t for t in texts)
    assert (lab.root / "snmpsim.args").stat().st_mode & 0o077 == 0


# --- the full site and process hygiene ----------------------------------------------------------


def test_full_site_of_37_answers_then_stops_without_orphans(
    tmp_path: Path, snmp_env: dict[str, str]
) -> None:
    aps = [LabAp(f"ap-site-{i:02d}", f"127.0.21.{100 + i}", 1161) for i in range(1, 38)]
    site = SnmpLab(aps, tmp_path, v3_auth_key=AUTH_KEY, v3_priv_key=PRIV_KEY)
    asyncio.run(site.start())
    try:
        pids = [p.pid for p in (site._snmpsim, site._proxy) if p is not None]
        assert len(pids) == 2
        for ap in aps:
            expected = recorded_sys_descr(site.recording_of(ap.id))
            version = "3" if ap.id.endswith(("3", "7")) else "2c"
            got = values(snmp(snmp_env, "snmpget", ap, SYS_DESCR, version=version))
            assert got[SYS_DESCR] == expected, ap.id
    finally:
        asyncio.run(site.stop())
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    asyncio.run(site.stop())  # idempotent
    gone = snmp(snmp_env, "snmpget", aps[0], SYS_DESCR, timeout=0.3)
    assert gone.returncode != 0


def test_start_fails_clearly_when_the_address_is_taken(tmp_path: Path) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.21.200", 1161))
        blocked = SnmpLab([LabAp("ap-x", "127.0.21.200", 1161)], tmp_path,
                          v3_auth_key=AUTH_KEY, v3_priv_key=PRIV_KEY)
        with pytest.raises(RuntimeError, match="snmp proxy exited"):
            asyncio.run(blocked.start())
    assert blocked._snmpsim is None and blocked._proxy is None


# --- pieces, without processes -----------------------------------------------------------------


def test_default_assignment_is_mostly_ubiquiti_and_stable() -> None:
    aps = [LabAp(f"ap-{i}", f"127.0.1.{i}", 1161) for i in range(1, 38)]
    first = assign_recordings(aps)
    assert first == assign_recordings(aps)
    counts = {name: list(first.values()).count(name) for name in set(first.values())}
    assert counts["ubiquiti-m5"] == 25
    assert all(counts[name] == 2 for name in OTHER_RECORDINGS)
    assert set(first.values()) <= set(RECORDINGS)


def test_states_are_normalised() -> None:
    assert normalize_state(" OK ") == "ok"
    assert normalize_state("slow=2.0") == "slow=2"
    assert normalize_state("loss=0.30") == "loss=0.3"
    assert normalize_state("loss=0") == "loss=0"


def test_live_values_follow_the_clock_and_reboots() -> None:
    start = 1_000_000.0
    running = Control(lab_start=start)
    uptime = {"k": "uptime", "base": "500"}
    counter = {"k": "counter", "base": "4294967000", "rate": "100", "bits": "32"}
    assert live_value(uptime, running, start + 10) == 500 + 1000
    assert live_value(counter, running, start + 10) == (4294967000 + 1000) % 2**32  # wraps
    rebooted = Control(lab_start=start, boot_time=start + 5, boots=1)
    assert live_value(uptime, rebooted, start + 10) == 500
    assert live_value(counter, rebooted, start + 10) == 500
    assert live_value({"k": "eboots", "base": "3"}, rebooted, start) == 4
    clients = {"k": "clients", "center": "8", "period": "600", "phase": "0"}
    seen = {live_value(clients, running, start + 60 * i) for i in range(20)}
    assert len(seen) > 3 and min(seen) >= 0
    assert live_value(clients, rebooted, start + 5) == 0  # nobody associated yet


def test_community_parser_reads_v1_v2c_and_ignores_v3() -> None:
    from lab.snmp import v2c_get_sysuptime

    assert community_of(v2c_get_sysuptime("public")) == b"public"
    assert community_of(v2c_get_sysuptime("")) == b""
    v3_header = bytes.fromhex("3081a0020103")  # SEQUENCE, version 3
    assert community_of(v3_header + b"\x00" * 10) is None
    assert community_of(b"\x30") is None


def test_curation_caps_interfaces_and_vendor_tables() -> None:
    rec = RECORDINGS["ruijie-m18000"]
    lines = ["1.3.6.1.2.1.1.1.0|4|box", "1.3.6.1.2.1.2.1.0|2|40"]
    lines += [f"1.3.6.1.2.1.2.2.1.1.{i}|2|{i}" for i in range(1, 41)]
    lines += [f"1.3.6.1.4.1.4881.1.1.10.2.56.2.1.1.1.34.{i}|2|1" for i in range(1, 20)]
    lines += ["1.3.6.1.2.1.6.13.1.1.1|2|5", "# comment"]
    out = curate(rec, lines)
    assert "1.3.6.1.2.1.2.1.0|2|24" in out
    assert sum(line.startswith("1.3.6.1.2.1.2.2.1.1.") for line in out) == 24
    assert sum(".34." in line for line in out) == 8
    assert not any(line.startswith("1.3.6.1.2.1.6.") for line in out)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_children_exit_when_the_lab_process_is_killed(tmp_path: Path) -> None:
    script = (
        "import asyncio, sys, time\n"
        "from pathlib import Path\n"
        "from lab.snmp import LabAp, SnmpLab\n"
        f"lab = SnmpLab([LabAp('ap-k', '127.0.21.201', 1161)], Path({str(tmp_path)!r}),\n"
        f"             v3_auth_key={AUTH_KEY!r}, v3_priv_key={PRIV_KEY!r})\n"
        "asyncio.run(lab.start())\n"
        "print(lab._snmpsim.pid, lab._proxy.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              text=True, cwd=Path(__file__).resolve().parent.parent)
    try:
        assert parent.stdout is not None
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(p) for p in pids)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 15  # a bound for the wait, not a speed requirement
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    leftovers = [p for p in pids if _alive(p)]
    for pid in leftovers:
        os.killpg(pid, 9)
    assert not leftovers, "snmpsim or the proxy outlived the lab process"
