"""The scheduler: every check of every device on its own timer, under a deadline, isolated."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import zlib
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType

from prometheus_client import CollectorRegistry, Counter, Histogram

from monitor.checks import run_check
from monitor.logs import event
from monitor.state import DeviceRecord, State
from probes import CHECKS_BY_KIND, PROBERS
from probes.base import CheckResult, CheckSettings, Prober, Status

log = logging.getLogger("camnet.scheduler")

# A check must end before its next run is due: the deadline is at most this share of the interval.
DEADLINE_SHARE_OF_INTERVAL = 0.9
# Devices that failed their last check wait in a separate, smaller pool, so a batch of hanging
# devices can only delay each other, never the healthy ones.
FAILING_POOL_SHARE = 0.25
# Backoff doubles at most this many times: 2 ** 1024 no longer fits a float, and a device can
# fail that often (17 h at 60 s); any cap in use is reached long before.
MAX_BACKOFF_DOUBLINGS = 30

LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# Reasons carry measurements ("ping: 33% packet loss"): a problem that persists while its
# numbers move is no state change to log.
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")


class SchedulerMetrics:
    """The scheduler's own long-lived metrics (ordinary metric objects)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.duration = Histogram(
            "camnet_check_duration_seconds", "Duration of one check run",
            ["kind", "check"], buckets=DURATION_BUCKETS, registry=registry,
        )
        self.errors = Counter(
            "camnet_check_errors_total", "Check runs that failed, by classified reason",
            ["kind", "check", "reason"], registry=registry,
        )
        self.lag = Histogram(
            "camnet_scheduler_lag_seconds", "How late a check started after it was due",
            buckets=LAG_BUCKETS, registry=registry,
        )
        self.runs = Counter(
            "camnet_check_runs_total", "Check runs, successful or not",
            ["kind", "check"], registry=registry,
        )


class Limiter:
    """A semaphore whose size a reload can change while runs hold it."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.busy = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    def resize(self, size: int) -> None:
        """Set the limit; runs under way keep their slot and count against the new size."""
        self.size = size
        self._wake()

    async def acquire(self) -> None:
        """Wait for a slot."""
        if self.busy < self.size and all(w.cancelled() for w in self._waiters):
            self.busy += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # granted just as we were cancelled: hand the slot on
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def release(self) -> None:
        """Give a slot back."""
        self.busy -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.busy < self.size:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.busy += 1
                waiter.set_result(None)

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


@dataclass
class _Pools:
    size: int
    healthy: Limiter
    failing: Limiter


def spread_offset(device_id: str, check: str, interval: float) -> float:
    """Where in its interval a job first runs: stable per job, spread evenly (no herd)."""
    return (zlib.crc32(f"{device_id}/{check}".encode()) % 10_000) / 10_000 * interval


def next_delay(settings: CheckSettings, failures: int) -> float:
    """The wait before the next run: the interval, or a capped exponential backoff while failing."""
    if failures <= 1:
        return settings.interval
    cap = max(settings.interval, settings.max_backoff)
    return min(settings.interval * 2 ** min(failures - 1, MAX_BACKOFF_DOUBLINGS), cap)


def reason_key(reason: str) -> str:
    """A verdict reason without its numbers: the same while the same problem persists."""
    return _NUMBER.sub("#", reason)


async def _reap(tasks: list[asyncio.Task[None]]) -> None:
    """Wait for cancelled tasks to end; a cancellation of the caller itself still propagates."""
    for task in tasks:
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
        except Exception as e:
            # The task had already ended on this error: stopping it must still stop the others
            # (and let a reload or the shutdown go on).
            event(log, logging.ERROR, "task had ended on an error", task=task.get_name(),
                  error=f"{type(e).__name__}: {e}")


class Scheduler:
    """Runs one asyncio task per (device, check); results go into State."""

    def __init__(
        self,
        state: State,
        metrics: SchedulerMetrics,
        probers: Mapping[str, Prober] | None = None,
    ) -> None:
        self.state = state
        self.metrics = metrics
        self.probers = probers if probers is not None else PROBERS
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._pools: dict[str, _Pools] = {}
        self.last_beat = time.monotonic()
        self._heart: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start a job for every device and check in the state."""
        self._size_pools()
        for device_id in self.state.devices:
            self._start_device(device_id)
        if self._heart is None:
            self._heart = asyncio.create_task(self._heartbeat(), name="camnet-heartbeat")

    async def apply(self, added: set[str], changed: set[str], removed: set[str]) -> None:
        """After State.load: stop jobs of removed/changed devices, start jobs of new/changed ones."""
        self._size_pools()
        stale = [k for k in self._tasks if k[0] in removed or k[0] in changed]
        await self._cancel(stale)
        for device_id in added | changed:
            self._start_device(device_id)
        # Devices whose settings did not change keep their jobs (and their timers).

    async def stop(self) -> None:
        """Cancel every job and wait for them to end."""
        await self._cancel(list(self._tasks))
        if self._heart is not None:
            heart, self._heart = self._heart, None
            heart.cancel()
            await _reap([heart])

    def alive(self, max_silence: float = 10.0) -> bool:
        """True while the scheduler's loop keeps ticking."""
        return self._heart is not None and time.monotonic() - self.last_beat < max_silence

    # ---------------------------------------------------------------- internals

    async def _heartbeat(self) -> None:
        while True:
            self.last_beat = time.monotonic()
            await asyncio.sleep(1.0)

    def _size_pools(self) -> None:
        wanted: dict[str, int] = {}
        for rec in self.state.devices.values():
            for check in CHECKS_BY_KIND[rec.kind]:
                settings: CheckSettings = getattr(rec.profile, check)
                wanted[check] = max(wanted.get(check, 1), settings.concurrency)
        for check, size in wanted.items():
            failing = max(1, int(size * FAILING_POOL_SHARE))
            pools = self._pools.get(check)
            if pools is None:
                self._pools[check] = _Pools(size, Limiter(size), Limiter(failing))
            elif pools.size != size:
                # Resized in place: runs under way count against the new limit, so a reload
                # never lets the old and the new pool run at once.
                pools.size = size
                pools.healthy.resize(size)
                pools.failing.resize(failing)

    def _start_device(self, device_id: str) -> None:
        rec = self.state.devices[device_id]
        for check in CHECKS_BY_KIND[rec.kind]:
            settings: CheckSettings = getattr(rec.profile, check)
            if not settings.enabled or check not in self.probers:
                continue
            key = (device_id, check)
            self._tasks[key] = asyncio.create_task(
                self._job(device_id, check), name=f"camnet-{device_id}-{check}"
            )

    async def _cancel(self, keys: list[tuple[str, str]]) -> None:
        tasks = [self._tasks.pop(k) for k in keys if k in self._tasks]
        for task in tasks:
            task.cancel()
        await _reap(tasks)

    async def _job(self, device_id: str, check: str) -> None:
        loop = asyncio.get_running_loop()
        rec = self.state.devices[device_id]
        settings: CheckSettings = getattr(rec.profile, check)
        due = loop.time() + spread_offset(device_id, check, settings.interval)
        error = ""  # the last unexpected error of this job, logged once while it repeats
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            try:
                await self._run_due(rec, check, settings, due)
                error = ""
            except Exception as e:
                # A bug (a prober's malformed result, the bookkeeping) must not end the device's
                # checks for good: the job logs it and runs again when next due.
                text = f"{type(e).__name__}: {e}"
                if text != error:
                    event(log, logging.ERROR, "check run failed unexpectedly",
                          device=device_id, check=check, error=text)
                error = text
            delay = next_delay(settings, rec.failures.get(check, 0))
            due += delay
            if due < loop.time():
                # Late (the loop was busy or the check overran): skip the missed slots rather
                # than firing a burst to catch up.
                due = loop.time() + delay

    async def _run_due(self, rec: DeviceRecord, check: str, settings: CheckSettings, due: float) -> None:
        loop = asyncio.get_running_loop()
        pools = self._pools[check]
        pool = pools.failing if rec.failures.get(check, 0) > 0 else pools.healthy
        async with pool:
            self.metrics.lag.observe(max(0.0, loop.time() - due))
            result = await self.run_check(rec, check, settings)
        self.record(rec, check, result)

    async def run_check(self, rec: DeviceRecord, check: str, settings: CheckSettings) -> CheckResult:
        """Run one check now under its deadline; always returns a result."""
        loop = asyncio.get_running_loop()
        budget = min(settings.timeout, settings.interval * DEADLINE_SHARE_OF_INTERVAL)
        started = loop.time()
        result = await run_check(
            self.probers[check], check, rec.target, settings, rec.probe_state, started + budget
        )
        result.duration = loop.time() - started
        return result

    def record(self, rec: DeviceRecord, check: str, result: CheckResult) -> None:
        """Store a result, update failure counts and metrics, log the device's state changes."""
        kind = rec.kind
        self.metrics.runs.labels(kind, check).inc()
        self.metrics.duration.labels(kind, check).observe(result.duration)
        if result.success:
            rec.failures[check] = 0
        else:
            rec.failures[check] = rec.failures.get(check, 0) + 1
            self.metrics.errors.labels(kind, check, result.reason or "failed").inc()
        rec.results[check] = result
        self._log_transition(rec, check, result)

    def _log_transition(self, rec: DeviceRecord, check: str, result: CheckResult) -> None:
        if not all(c in rec.results for c in self._enabled_checks(rec)):
            return  # not every check has run yet: a verdict now would announce a half-known state
        status, reasons, _ = rec.verdict()
        previous, previous_keys = rec.status, [reason_key(r) for r in rec.reasons]
        rec.status, rec.reasons = status, reasons  # shown as measured now, logged only on change
        if status == previous and [reason_key(r) for r in reasons] == previous_keys:
            return
        fields = {"device": rec.target.id, "kind": rec.kind, "site": rec.target.labels.get("site", "")}
        detail = {c: r.reason for c, r in rec.results.items() if not r.success}
        if status == Status.OK:
            if previous != Status.UNKNOWN or previous_keys:  # UNKNOWN with reasons: a bug's
                event(log, logging.INFO, "device recovered", **fields, was=previous.name.lower())
            else:
                event(log, logging.INFO, "device up", **fields)
        elif status == Status.CRITICAL:
            event(log, logging.WARNING, "device down", **fields,
                  reasons=",".join(reasons), checks=",".join(f"{c}:{r}" for c, r in detail.items()),
                  message=result.message if not result.success else "")
        elif status == Status.WARNING:
            event(log, logging.WARNING, "device degraded", **fields, reasons=",".join(reasons))
        elif status == Status.UNKNOWN:
            # A prober failed inside camnet: camnet's bug, not the device's state; said once.
            broken = [r for r in rec.results.values() if r.reason == "internal_error"]
            event(log, logging.ERROR, "check failed inside camnet", **fields,
                  checks=",".join(r.check for r in broken),
                  message="; ".join(r.message for r in broken))

    def _enabled_checks(self, rec: DeviceRecord) -> list[str]:
        return [c for c in rec.enabled_checks() if c in self.probers]
