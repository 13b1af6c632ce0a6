"""Boot time and reboots from the agent's uptime clocks: drift, host clock steps, clock wraps.

`_emit` is fed a system group directly, with camnet's wall and monotonic clocks under test
control.
"""

from __future__ import annotations

import itertools
import types
from collections import defaultdict
from typing import Any

import pytest

from probes import snmp
from probes import snmp_modules as m
from probes.base import CheckResult
from probes.snmp_ber import TIMETICKS, encode_oid

T0 = 1_800_000_000.0
WRAP_TICKS = 2**32


class Poller:
    """Polls one agent's uptime clocks at chosen times, with one state dict.

    `now` is camnet's wall clock; its monotonic clock runs with it unless a test steps the wall
    clock alone (`step`).
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = T0
        self.step = 0.0
        self.state: dict[str, Any] = {}
        monkeypatch.setattr(snmp, "time", types.SimpleNamespace(
            time=lambda: self.now, monotonic=lambda: self.now - self.step))

    def poll(self, now: float, sys_uptime_ticks: int | None, engine_time: int | None = None,
             hr_uptime_ticks: int | None = None) -> CheckResult:
        self.now = now
        found = {}
        for oid, tag, value in ((m.SYS_UPTIME, TIMETICKS, sys_uptime_ticks),
                                (m.SNMP_ENGINE_TIME, 0x02, engine_time),
                                (m.HR_SYSTEM_UPTIME, TIMETICKS, hr_uptime_ticks)):
            if value is not None:
                found[encode_oid(oid)] = (encode_oid(oid), tag, value)
        result = CheckResult("snmp", success=False)
        snmp._emit(result, m.MODULES["generic"], found, defaultdict(dict), self.state)
        return result


def _boot(result: CheckResult) -> float:
    return next(s.value for s in result.samples if s.name == "camnet_ap_boot_time_seconds")


def test_slow_clock_drift_never_adds_up_to_a_reboot(monkeypatch: pytest.MonkeyPatch) -> None:
    # camnet's host clock gains 0.5 s per 15 s poll on the agent's (an NTP slew, a bad crystal).
    p = Poller(monkeypatch)
    results = [p.poll(T0 + 15 * k + 0.5 * k, (1000 + 15 * k) * 100) for k in range(40)]
    assert not any(r.facts.get("rebooted") for r in results)
    boots = [_boot(r) for r in results]
    assert all(0.4 < b - a < 0.6 for a, b in itertools.pairwise(boots))  # follows


def test_host_clock_step_is_not_a_reboot(monkeypatch: pytest.MonkeyPatch) -> None:
    p = Poller(monkeypatch)
    p.poll(T0, 100_000)
    p.step = 20
    stepped = p.poll(T0 + 15 + 20, 101_500)  # NTP stepped camnet's clock by +20 s
    assert not stepped.facts.get("rebooted")
    p.step = 0
    assert not p.poll(T0 + 30, 103_000).facts.get("rebooted")  # and back


def test_reboot_is_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    p = Poller(monkeypatch)
    p.poll(T0, 360_000_00)
    assert p.poll(T0 + 15, 40_00).facts.get("rebooted")  # up 40 s: boot moved 10 h forward


def test_quick_second_reboot_is_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    # Booted at T0, rebooted at once 25 s later: boot time moved less than 30 s, but uptime
    # went back.
    p = Poller(monkeypatch)
    p.poll(T0 + 20, 20_00)
    assert p.poll(T0 + 35, 10_00).facts.get("rebooted")
    assert not p.poll(T0 + 50, 25_00).facts.get("rebooted")


def test_sys_uptime_wrap_is_not_a_reboot(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only sysUpTime (TimeTicks, 32 bits of 1/100 s): it wraps to 0 after 497 days.
    p = Poller(monkeypatch)
    before = p.poll(T0, WRAP_TICKS - 10_00)  # 10 s before the wrap
    after = p.poll(T0 + 15, 5_00)  # 5 s after it
    assert not after.facts.get("rebooted")
    assert abs(_boot(after) - _boot(before)) < 1
    assert after.facts["uptime"] == pytest.approx(WRAP_TICKS / 100 + 5)
    later = p.poll(T0 + 30, 20_00)
    assert not later.facts.get("rebooted")
    assert abs(_boot(later) - _boot(before)) < 1
    # A real reboot after the wrap is still one.
    assert p.poll(T0 + 45, 3_00).facts.get("rebooted")


def test_engine_time_keeps_the_boot_time_across_the_wrap(monkeypatch: pytest.MonkeyPatch) -> None:
    p = Poller(monkeypatch)
    uptime = WRAP_TICKS // 100 - 10
    before = p.poll(T0, WRAP_TICKS - 10_00, engine_time=uptime)
    after = p.poll(T0 + 15, 5_00, engine_time=uptime + 15)
    assert not after.facts.get("rebooted")
    assert abs(_boot(after) - _boot(before)) < 1


def test_both_timeticks_clocks_wrap(monkeypatch: pytest.MonkeyPatch) -> None:
    # sysUpTime and hrSystemUptime wrap within one poll of each other (snmpd started at boot).
    p = Poller(monkeypatch)
    before = p.poll(T0, WRAP_TICKS - 10_00, hr_uptime_ticks=WRAP_TICKS - 12_00)
    after = p.poll(T0 + 15, 5_00, hr_uptime_ticks=3_00)
    assert not after.facts.get("rebooted")
    assert abs(_boot(after) - _boot(before)) < 1
    assert after.facts["uptime"] == pytest.approx(WRAP_TICKS / 100 + 5)
    later = p.poll(T0 + 30, 20_00, hr_uptime_ticks=18_00)
    assert not later.facts.get("rebooted")
    assert abs(_boot(later) - _boot(before)) < 1


def test_reboot_just_before_the_wrap_is_a_reboot(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only sysUpTime; up 494 days (3 days short of the wrap), reboots, answers 30 s later up 20 s.
    p = Poller(monkeypatch)
    p.poll(T0, 494 * 86400 * 100)
    after = p.poll(T0 + 30, 20_00)
    assert after.facts.get("rebooted")
    assert _boot(after) == pytest.approx(T0 + 10, abs=1)
    assert after.facts["uptime"] == pytest.approx(20)
    later = p.poll(T0 + 60, 50_00)
    assert not later.facts.get("rebooted")
    assert _boot(later) == pytest.approx(T0 + 10, abs=1)


def test_host_uptime_wrap_with_a_younger_agent_is_not_a_reboot(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The host has been up 497 days, its snmpd only 100 (restarted since): hrSystemUptime wraps,
    # sysUpTime does not. The boot time stays the host's.
    p = Poller(monkeypatch)
    agent = 100 * 86400 * 100
    before = p.poll(T0, agent, hr_uptime_ticks=WRAP_TICKS - 20_00)
    assert _boot(before) == pytest.approx(T0 - WRAP_TICKS / 100 + 20, abs=1)
    after = p.poll(T0 + 30, agent + 30_00, hr_uptime_ticks=10_00)
    assert not after.facts.get("rebooted")
    assert abs(_boot(after) - _boot(before)) < 1
    # The host rebooting later is still a reboot, though hrSystemUptime passed its last reading.
    rebooted = p.poll(T0 + 150, 55_00, hr_uptime_ticks=60_00)
    assert rebooted.facts.get("rebooted")
    assert _boot(rebooted) == pytest.approx(T0 + 90, abs=1)


def test_sys_uptime_wrap_within_the_tolerance_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # The agent's clock runs 5 s fast over a 15 s poll: still its wrap. A clock that went back
    # to far from where the wrap would put it restarted.
    p = Poller(monkeypatch)
    before = p.poll(T0, WRAP_TICKS - 10_00)
    after = p.poll(T0 + 15, 10_00)
    assert not after.facts.get("rebooted")
    assert abs(_boot(after) - _boot(before)) < 6
    p = Poller(monkeypatch)
    p.poll(T0, WRAP_TICKS - 10_00)
    assert p.poll(T0 + 120, 5_00).facts.get("rebooted")  # 110 s after the wrap it should read
