"""Scheduler against real loopback servers that hang, flood, answer slowly and refuse."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from monitor.config import load_config
from monitor.scheduler import Scheduler, SchedulerMetrics, next_delay, spread_offset
from monitor.state import State
from probes.base import CheckResult, CheckSettings, Target
from tests.netpeers import Peer, ap_config, line_probe

PORT = 7000


def lag_over(registry: CollectorRegistry, bound: float) -> float:
    """How many lag observations were above `bound` seconds (bound must be a bucket edge)."""
    count = registry.get_sample_value("camnet_scheduler_lag_seconds_count") or 0.0
    under = registry.get_sample_value("camnet_scheduler_lag_seconds_bucket", {"le": str(bound)}) or 0.0
    return count - under


def runs(registry: CollectorRegistry) -> float:
    return registry.get_sample_value("camnet_check_runs_total", {"kind": "ap", "check": "snmp"}) or 0.0


async def start_scheduler(tmp_path: Path, devices: list[tuple[str, str, int]], **kw: str):
    cfg = tmp_path / "camnet.yaml"
    ap_config(cfg, devices, **kw)
    loaded = load_config(cfg)
    state = State()
    state.load(loaded)
    registry = CollectorRegistry()
    sched = Scheduler(state, SchedulerMetrics(registry), probers={"snmp": line_probe})
    sched.start()
    return sched, state, registry, cfg


def test_first_runs_spread_over_the_interval() -> None:
    offsets = [spread_offset(f"ap-{i:02d}", "snmp", 30.0) for i in range(37)]
    assert all(0 <= o < 30 for o in offsets)
    # No thundering herd: the 37 first runs fall into at least 20 distinct seconds of the interval.
    assert len({int(o) for o in offsets}) >= 20
    assert spread_offset("ap-01", "snmp", 30.0) == spread_offset("ap-01", "snmp", 30.0)


def test_backoff_grows_and_is_capped() -> None:
    s = CheckSettings(interval=10, timeout=5, max_backoff=60)
    assert [next_delay(s, n) for n in range(6)] == [10, 10, 20, 40, 60, 60]
    # Days of failures: 2 ** 1024 would overflow a float and end the device's job.
    assert next_delay(s, 1025) == 60
    assert next_delay(s, 10**6) == 60
    # A cap below the interval never makes a failing device polled faster than a healthy one.
    assert next_delay(CheckSettings(interval=30, timeout=5, max_backoff=5), 4) == 30


async def test_hanging_and_flooding_devices_do_not_delay_others(tmp_path: Path) -> None:
    healthy = [Peer(f"127.0.13.{i}", PORT) for i in range(1, 21)]
    bad = [Peer(f"127.0.13.{i}", PORT, "hang") for i in range(21, 27)]
    bad += [Peer(f"127.0.13.{i}", PORT, "flood") for i in range(27, 29)]
    bad += [Peer(f"127.0.13.{i}", PORT, "slow", delay=5.0) for i in range(29, 31)]
    peers = healthy + bad
    for p in peers:
        await p.start()
    devices = [(f"ap-{i:02d}", p.host, PORT) for i, p in enumerate(peers, 1)]
    sched, state, registry, _ = await start_scheduler(tmp_path, devices)
    try:
        await asyncio.sleep(5.5)
    finally:
        await sched.stop()
        for p in peers:
            await p.stop()
    for i, p in enumerate(peers, 1):
        result = state.devices[f"ap-{i:02d}"].results["snmp"]
        if p in healthy:
            assert result.success, (p.host, result.reason)
        else:
            assert not result.success
            assert result.reason in {"timeout", "bad_reply"}, (p.host, result.reason, p.mode)
    # Every healthy device ran on schedule (interval 1 s over 5.5 s: at least 4 runs each) ...
    assert runs(registry) >= 20 * 4
    # ... and no check of any device started more than 1 s late.
    assert lag_over(registry, 1.0) == 0
    # Deadlines held: the hanging ones were cut at their timeout, not at the server's whim.
    durations = [state.devices[f"ap-{i:02d}"].results["snmp"].duration for i in range(21, 27)]
    assert all(d < 0.8 + 0.6 for d in durations), durations


async def test_prober_that_ignores_its_deadline_is_cut_from_outside(tmp_path: Path) -> None:
    async def stubborn(target, settings, state, deadline):  # type: ignore[no-untyped-def]
        await asyncio.sleep(3600)

    cfg = tmp_path / "camnet.yaml"
    ap_config(cfg, [("ap-01", "127.0.13.40", PORT)])
    state = State()
    state.load(load_config(cfg))
    registry = CollectorRegistry()
    sched = Scheduler(state, SchedulerMetrics(registry), probers={"snmp": stubborn})
    rec = state.devices["ap-01"]
    result = await sched.run_check(rec, "snmp", rec.profile.snmp)  # type: ignore[union-attr]
    assert not result.success and result.reason == "timeout"
    assert result.duration < 0.8 + 1.5


async def test_failing_device_backs_off_and_transitions_are_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="camnet.scheduler")
    peer = Peer("127.0.13.50", PORT, "refuse")
    sched, state, _registry, _ = await start_scheduler(tmp_path, [("ap-50", peer.host, PORT)])
    try:
        await asyncio.sleep(4.2)
        failures = state.devices["ap-50"].failures["snmp"]
        # interval 1 s, backoff 1, 2, 4 s (cap 4 s): in ~4 s far fewer runs than the 4-5 of a healthy one.
        assert 2 <= failures <= 3, failures
        peer.mode = "ok"
        await peer.start()
        await asyncio.sleep(4.5)
    finally:
        await sched.stop()
        await peer.stop()
    assert state.devices["ap-50"].results["snmp"].success
    messages = [r.getMessage() for r in caplog.records if r.name == "camnet.scheduler"]
    assert messages.count("device down") == 1, messages
    assert messages.count("device recovered") == 1, messages
    down = next(r for r in caplog.records if r.getMessage() == "device down")
    assert "snmp:refused" in down.fields["checks"]  # type: ignore[attr-defined]


async def test_reload_removes_stale_jobs_and_adds_new(tmp_path: Path) -> None:
    a, b = Peer("127.0.13.60", PORT), Peer("127.0.13.61", PORT)
    await a.start()
    await b.start()
    sched, state, _registry, cfg = await start_scheduler(tmp_path, [("ap-60", a.host, PORT)])
    try:
        await asyncio.sleep(1.5)
        ap_config(cfg, [("ap-61", b.host, PORT)])
        added, changed, removed = state.load(load_config(cfg))
        assert (added, changed, removed) == ({"ap-61"}, set(), {"ap-60"})
        await sched.apply(added, changed, removed)
        before = a.connections
        await asyncio.sleep(1.8)
        assert a.connections == before  # the removed device is no longer polled
        assert b.connections >= 1
        assert set(state.devices) == {"ap-61"}
    finally:
        await sched.stop()
        await a.stop()
        await b.stop()


async def test_reload_resizes_the_concurrency_pools(tmp_path: Path) -> None:
    cfg = tmp_path / "camnet.yaml"
    ap_config(cfg, [("ap-01", "127.0.13.70", PORT)])
    state = State()
    state.load(load_config(cfg))
    sched = Scheduler(state, SchedulerMetrics(CollectorRegistry()), probers={"snmp": line_probe})
    sched._size_pools()
    assert sched._pools["snmp"].size == 64  # SnmpSettings default
    cfg.write_text(cfg.read_text().replace("max_backoff: 4s}", "max_backoff: 4s, concurrency: 5}"))
    await sched.apply(*state.load(load_config(cfg)))
    assert sched._pools["snmp"].size == 5
    await sched.stop()


async def test_lossy_line_logs_degraded_once_not_at_every_ping(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="camnet.scheduler")
    cfg = tmp_path / "camnet.yaml"
    ap_config(cfg, [("ap-01", "127.0.13.71", PORT)])
    cfg.write_text(cfg.read_text().replace("enabled: false", "enabled: true"))  # ping
    state = State()
    state.load(load_config(cfg))
    sched = Scheduler(state, SchedulerMetrics(CollectorRegistry()),
                      probers={"snmp": line_probe, "ping": line_probe})
    rec = state.devices["ap-01"]
    snmp = CheckResult("snmp", True)
    snmp.add("camnet_ap_up", 1)
    sched.record(rec, "snmp", snmp)
    for loss in (0.0, 0.33, 0.5, 0.4, 0.0):
        sched.record(rec, "ping", CheckResult("ping", True, facts={"loss": loss}))
        if loss == 0.4:
            assert rec.reasons == ["ping: 40% packet loss"]  # shown as measured now
    messages = [r.getMessage() for r in caplog.records if r.name == "camnet.scheduler"]
    assert messages == ["device up", "device degraded", "device recovered"], messages


async def _start_unwinding_job(tmp_path: Path) -> tuple[Scheduler, asyncio.Task[None]]:
    """A scheduler whose one job is inside a prober that takes 0.3 s to unwind when cancelled."""
    entered = asyncio.Event()

    async def slow_to_unwind(target: Target, settings: object, state: dict[str, object],
                             deadline: float) -> CheckResult:
        entered.set()
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.3)  # e.g. a session closed politely
        return CheckResult("snmp", True)

    # ap-47's first run comes 0.1 s into its 10 s interval (spread_offset), then holds 5 s.
    assert spread_offset("ap-47", "snmp", 10.0) < 0.2
    cfg = tmp_path / "camnet.yaml"
    ap_config(cfg, [("ap-47", "127.0.13.72", PORT)], interval="10s", timeout="5s")
    state = State()
    state.load(load_config(cfg))
    sched = Scheduler(state, SchedulerMetrics(CollectorRegistry()), probers={"snmp": slow_to_unwind})
    sched.start()
    await asyncio.wait_for(entered.wait(), 2)
    return sched, sched._tasks[("ap-47", "snmp")]


async def test_a_reload_cancelled_at_shutdown_stops_and_starts_no_job(tmp_path: Path) -> None:
    sched, job = await _start_unwinding_job(tmp_path)
    try:
        reload = asyncio.create_task(sched.apply(set(), {"ap-47"}, set()))
        await asyncio.sleep(0.05)  # the reload now waits for the old job to unwind
        reload.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reload
        assert ("ap-47", "snmp") not in sched._tasks  # no job started after the cancellation
    finally:
        await sched.stop()
        await asyncio.gather(job, return_exceptions=True)


async def test_stop_gives_up_at_the_callers_deadline(tmp_path: Path) -> None:
    sched, job = await _start_unwinding_job(tmp_path)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):  # the daemon's SHUTDOWN_BUDGET, shortened
                await sched.stop()
        assert loop.time() - started < 0.2
    finally:
        await asyncio.gather(job, return_exceptions=True)
        await sched.stop()


async def test_a_resized_pool_counts_the_runs_under_way(tmp_path: Path) -> None:
    cfg = tmp_path / "camnet.yaml"
    ap_config(cfg, [("ap-01", "127.0.13.73", PORT)])
    conf = cfg.read_text()
    cfg.write_text(conf.replace("max_backoff: 4s}", "max_backoff: 4s, concurrency: 2}"))
    state = State()
    state.load(load_config(cfg))
    sched = Scheduler(state, SchedulerMetrics(CollectorRegistry()), probers={})  # no jobs
    sched._size_pools()
    old = sched._pools["snmp"].healthy
    await old.acquire()  # two runs under way when the reload comes
    await old.acquire()
    taken = 0

    async def take() -> None:
        nonlocal taken
        await sched._pools["snmp"].healthy.acquire()
        taken += 1

    async def reload_to(concurrency: int, runs: int) -> list[asyncio.Task[None]]:
        text = conf.replace("max_backoff: 4s}", f"max_backoff: 4s, concurrency: {concurrency}}}")
        cfg.write_text(text)
        await sched.apply(*state.load(load_config(cfg)))
        assert sched._pools["snmp"].size == concurrency
        tasks = [asyncio.create_task(take()) for _ in range(runs)]
        await asyncio.sleep(0.05)
        return tasks

    tasks = await reload_to(3, 3)
    assert taken == 1  # 3 slots, 2 still held by the runs started before the reload
    tasks += await reload_to(1, 1)
    assert taken == 1  # shrunk to 1 while 3 are held: nothing more starts
    for _ in range(2):
        old.release()
    await asyncio.sleep(0)
    assert taken == 1  # one run (of the new ones) still holds the only slot
    sched._pools["snmp"].healthy.release()
    await asyncio.sleep(0.01)
    assert taken == 2
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await sched.stop()


async def test_a_job_outlives_an_unexpected_error_and_stop_does_not_raise(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="camnet.scheduler")
    calls = 0

    async def answers(target, settings, state, deadline):  # type: ignore[no-untyped-def]
        return CheckResult("snmp", True)

    def broken_bookkeeping(*args: Any) -> None:  # a bug outside run_check's net
        nonlocal calls
        calls += 1
        raise RuntimeError("a bug in the bookkeeping")

    cfg = tmp_path / "camnet.yaml"
    ap_config(cfg, [("ap-01", "127.0.13.74", PORT)], interval="100ms", timeout="50ms")
    state = State()
    state.load(load_config(cfg))
    sched = Scheduler(state, SchedulerMetrics(CollectorRegistry()), probers={"snmp": answers})
    sched.record = broken_bookkeeping  # type: ignore[method-assign]
    sched.start()
    try:
        await asyncio.sleep(0.65)
        assert calls >= 3, calls  # still scheduled after the first error
        assert not sched._tasks[("ap-01", "snmp")].done()
    finally:
        await sched.stop()
    messages = [r.getMessage() for r in caplog.records if r.name == "camnet.scheduler"]
    assert messages == ["check run failed unexpectedly"], messages  # once, not at every run


async def test_stop_and_reload_go_on_past_a_job_that_had_died(tmp_path: Path) -> None:
    async def died() -> None:
        raise RuntimeError("a bug")

    cfg = tmp_path / "camnet.yaml"
    ap_config(cfg, [("ap-01", "127.0.13.75", PORT)])
    state = State()
    state.load(load_config(cfg))
    sched = Scheduler(state, SchedulerMetrics(CollectorRegistry()), probers={"snmp": line_probe})
    sched._tasks[("ap-01", "snmp")] = asyncio.create_task(died())
    await asyncio.sleep(0)
    await sched.apply(set(), {"ap-01"}, set())  # a reload replaces the dead job
    assert not sched._tasks[("ap-01", "snmp")].done()
    sched._tasks[("ap-02", "snmp")] = asyncio.create_task(died())
    await asyncio.sleep(0)
    await sched.stop()  # no exception: the daemon's shutdown goes on to save the picture memory
    assert not sched._tasks


async def test_a_prober_bug_is_unknown_and_logged_once_not_a_device_down(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="camnet.scheduler")
    broken = True

    async def buggy(target, settings, state, deadline):  # type: ignore[no-untyped-def]
        if broken:
            raise KeyError("ifDescr")
        return CheckResult("snmp", True)

    cfg = tmp_path / "camnet.yaml"
    ap_config(cfg, [("ap-01", "127.0.13.76", PORT)])
    state = State()
    state.load(load_config(cfg))
    sched = Scheduler(state, SchedulerMetrics(CollectorRegistry()), probers={"snmp": buggy})
    rec = state.devices["ap-01"]
    for _ in range(2):
        sched.record(rec, "snmp", await sched.run_check(rec, "snmp", rec.profile.snmp))  # type: ignore[union-attr]
    # The status page shows what /metrics and /probe say: camnet cannot tell, not "down".
    assert rec.status.name == "UNKNOWN"
    assert any("KeyError" in r for r in rec.reasons), rec.reasons
    broken = False
    sched.record(rec, "snmp", await sched.run_check(rec, "snmp", rec.profile.snmp))  # type: ignore[union-attr]
    records = [r for r in caplog.records if r.name == "camnet.scheduler"]
    assert [r.getMessage() for r in records] == ["check failed inside camnet", "device recovered"]
    assert records[0].levelno == logging.ERROR
    assert "KeyError" in records[0].fields["message"]  # type: ignore[attr-defined]
