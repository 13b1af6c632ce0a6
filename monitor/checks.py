"""Run every check of one device now: the shared core of `camnet probe` and the daemon's /probe."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from monitor import logs
from probes import CHECKS_BY_KIND, PROBERS, VERDICTS
from probes.base import CheckResult, Prober, Sample, Status, Target

# rtsp needs the stream URI that ONVIF finds (GetStreamUri) when the config gives none, so on a
# one-shot check it starts once ONVIF is done; every other check starts at once.
RUN_AFTER: dict[str, str] = {"rtsp": "onvif"}

# A prober must honour its deadline itself; this margin only catches one that does not, so a
# buggy prober cannot hold up the answer.
OVERRUN_GRACE = 1.0
LABEL_SECRET_MIN = 8  # shorter secrets are not masked in labels (scrub)



@dataclass
class DeviceReport:
    """The outcome of one full check of a device: verdict, per-check results, verdict samples."""

    target: Target
    status: Status
    reasons: list[str]
    results: dict[str, CheckResult]
    samples: list[Sample]
    settings: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    duration: float = 0.0

    def all_samples(self) -> list[Sample]:
        """Every metric value of this check: each check's samples, then the verdict's."""
        out: list[Sample] = []
        for result in self.results.values():
            out.extend(result.samples)
        out.extend(self.samples)
        return out

    def failures(self) -> list[CheckResult]:
        """The checks that did not succeed, in check order."""
        return [r for r in self.results.values() if not r.success]


def secret_values(target: Target) -> list[str]:
    """The plain secrets of a target (to scrub them from any text shown to a person)."""
    if target.auth is None:
        return []
    values = []
    for name in target.auth.secrets:
        value = target.auth.secret(name)
        if value:
            values.append(value)
    # longest first, so a secret containing another is masked whole
    return sorted(values, key=len, reverse=True)


def redact(text: str, secrets: list[str], min_length: int = 1) -> str:
    """Mask secrets (at least `min_length` long) and URL credentials (`rtsp://user:pw@host`)."""
    return logs.redact(text, secrets, min_length)


def _redact_value(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {k: _redact_value(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(v, secrets) for v in value]
    return value


def scrub(result: CheckResult, secrets: list[str]) -> None:
    """Mask secrets in everything of a result that is shown or exported as text."""
    result.reason = redact(result.reason, secrets)
    result.message = redact(result.message, secrets)
    result.log = [redact(line, secrets) for line in result.log]
    result.facts = {k: _redact_value(v, secrets) for k, v in result.facts.items()}
    # Labels are the device's own words: interface, radio, model names. A short secret (an SNMP
    # community like "vnpt", a password like "admin") is also a word devices use in names, and
    # masking it there renamed the series and pointed at the secret ("<secret>-uplink"). A
    # longer one found in a label is the device echoing it: masked.
    for sample in result.samples:
        sample.labels = {k: redact(v, secrets, LABEL_SECRET_MIN) for k, v in sample.labels.items()}


async def run_check(
    prober: Prober, check: str, target: Target, settings: Any, state: dict[str, Any], deadline: float
) -> CheckResult:
    """One prober under its deadline (enforced from outside too); never raises but cancellation.

    A prober bug becomes a failed result with reason `internal_error`, not an exception, and
    secrets are masked in everything the result carries. The daemon and `camnet probe` both
    run checks through here.
    """
    started = time.time()
    try:
        async with asyncio.timeout_at(deadline + OVERRUN_GRACE):
            result = await prober(target, settings, state, deadline)
    except TimeoutError:
        result = CheckResult(check, False, reason="timeout",
                             message=f"{check} did not finish before its deadline", started=started)
        result.debug("prober overran its deadline and was cancelled")
    except Exception as e:
        result = CheckResult(check, False, reason="internal_error",
                             message=f"{check} prober failed: {type(e).__name__}: {e}".rstrip(": "),
                             started=started)
        result.debug(f"internal error: {type(e).__name__}: {e}")
    if not isinstance(result, CheckResult):  # a prober bug: say so, as for one that raised
        result = CheckResult(check, False, reason="internal_error", started=started,
                             message=f"{check} prober returned {type(result).__name__}, "
                                     "not a result")
    if not result.duration:
        result.duration = time.time() - started
    try:
        scrub(result, secret_values(target))
    except Exception as e:  # a prober bug in what it returned: replaced whole, secrets and all
        result = CheckResult(check, False, reason="internal_error",
                             message=f"{check} prober returned a malformed result: "
                                     f"{type(e).__name__}", started=started)
    return result


async def check_device(
    target: Target,
    profile: Any,
    state: dict[str, Any],
    *,
    budget: float | None = None,
) -> DeviceReport:
    """Run every enabled check of the device's kind now and combine them into a verdict.

    `profile` is a CameraProfile/ApProfile (one settings attribute per check). Each check gets
    its own settings' timeout, capped by `budget` (seconds for the whole device) if given.
    `state` is the per-device state handed to every prober (one-shot callers pass `{}`).
    Never raises for device faults or prober bugs; secrets are masked in every text.
    """
    loop = asyncio.get_running_loop()
    started_wall = time.time()
    start = loop.time()
    overall = start + budget if budget is not None else None
    checks = CHECKS_BY_KIND[target.kind]
    settings_used: dict[str, Any] = {}
    skipped: list[str] = []
    for check in checks:
        settings = getattr(profile, check)
        if getattr(settings, "enabled", True):
            settings_used[check] = settings
        else:
            skipped.append(check)
    done: dict[str, asyncio.Event] = {c: asyncio.Event() for c in settings_used}
    results: dict[str, CheckResult] = {}

    async def run(check: str) -> None:
        try:
            before = RUN_AFTER.get(check)
            if before in done:
                await done[before].wait()
            now = loop.time()
            deadline = now + float(settings_used[check].timeout)
            if overall is not None:
                left = max(overall - now, 0.0)
                if any(RUN_AFTER.get(c) == check for c in settings_used):
                    # a check others wait for gets half of what is left, so a camera whose
                    # ONVIF hangs still has its RTSP tried within the budget
                    left /= 2
                deadline = min(deadline, now + left)
            results[check] = await run_check(
                PROBERS[check], check, target, settings_used[check], state, deadline
            )
        finally:
            done[check].set()

    async with asyncio.TaskGroup() as group:
        for check in settings_used:
            group.create_task(run(check))
    ordered = {c: results[c] for c in checks if c in results}
    report = build_report(target, ordered, profile, started=started_wall)
    report.duration = loop.time() - start
    return report


def judge(kind: str, results: dict[str, CheckResult]) -> tuple[Status, list[str], list[Sample]]:
    """The verdict of a device's latest results (status, reasons, verdict samples), as /probe,
    `camnet probe` and /metrics all export it."""
    status, reasons, samples = VERDICTS[kind](results)
    broken = [r for r in results.values() if r.reason == "internal_error"]
    if broken:
        # A prober bug says nothing about the device: the plugin convention calls that UNKNOWN.
        status = Status.UNKNOWN
        reasons = [r for r in reasons if "internal_error" not in r]
        reasons += [r.message for r in broken]
    return status, reasons, samples


def build_report(
    target: Target, results: dict[str, CheckResult], profile: Any, started: float | None = None
) -> DeviceReport:
    """A DeviceReport from results obtained elsewhere (e.g. the daemon's scheduler), so every
    renderer of monitor.report works on them; secrets are masked here too."""
    checks = CHECKS_BY_KIND[target.kind]
    settings = {c: getattr(profile, c) for c in checks if getattr(profile, c).enabled}
    skipped = [c for c in checks if c not in settings]
    ordered = {c: results[c] for c in checks if c in results}
    secrets = secret_values(target)
    for result in ordered.values():
        scrub(result, secrets)
    status, reasons, samples = judge(target.kind, ordered)
    return DeviceReport(
        target=target,
        status=status,
        reasons=[redact(r, secrets) for r in reasons],
        results=ordered,
        samples=samples,
        settings=settings,
        skipped=skipped,
        started=started if started is not None else time.time(),
        duration=sum(r.duration for r in ordered.values()),
    )
