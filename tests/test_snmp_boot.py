"""Boot time and reboots from the agent's uptime clocks: drift, host clock steps, sysUpTime wrap.

`_emit` is fed a system group directly, with camnet's wall clock under test control.
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
    """Polls one agent's uptime clocks at chosen wall-clock times, with one state dict."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = T0
        self.state: dict[str, Any] = {}
        monkeypatch.setattr(snmp, "time", types.SimpleNamespace(time=lambda: self.now))

    def poll(self, now: float, sys_uptime_ticks: int, engine_time: int | None = None) -> CheckResult:
        self.now = now
        found = {encode_oid(m.SYS_UPTIME): (encode_oid(m.SYS_UPTIME), TIMETICKS, sys_uptime_ticks)}
        if engine_time is not None:
            found[encode_oid(m.SNMP_ENGINE_TIME)] = (encode_oid(m.SNMP_ENGINE_TIME), 0x02,
                                                     engine_time)
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
    stepped = p.poll(T0 + 15 + 20, 101_500)  # NTP stepped camnet's clock by +20 s
    assert not stepped.facts.get("rebooted")
    assert not p.poll(T0 + 50 - 20, 103_000).facts.get("rebooted")  # and back


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
    assert after.facts["uptime"] == pytest.approx(snmp.SYS_UPTIME_WRAP + 5)
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
