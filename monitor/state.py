"""The latest results per device: what the scheduler writes and the exporter reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from monitor.checks import judge
from monitor.config import ApProfile, CameraProfile, LoadedConfig, SiteConfig
from probes import CHECKS_BY_KIND
from probes.base import CheckResult, Sample, Status, Target


@dataclass
class DeviceRecord:
    """One device: how to reach it, how to check it, and what its checks found last."""

    target: Target
    profile: CameraProfile | ApProfile
    results: dict[str, CheckResult] = field(default_factory=dict)
    # Per-device memory of the probers (stream URI, previous frame, counters...), kept on reload
    # while the device is reached the same way.
    probe_state: dict[str, Any] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    status: Status = Status.UNKNOWN
    reasons: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """`camera` or `ap`."""
        return self.target.kind

    def enabled_checks(self) -> list[str]:
        """The checks this device gets under its profile."""
        return [c for c in CHECKS_BY_KIND[self.kind] if getattr(self.profile, c).enabled]

    @property
    def complete(self) -> bool:
        """True once every enabled check has run: before that a verdict would be half-known."""
        return all(c in self.results for c in self.enabled_checks())

    def verdict(self) -> tuple[Status, list[str], list[Sample]]:
        """The device's verdict from its latest results (UNKNOWN when a prober failed inside
        camnet: checks.judge, as /probe and /metrics say it)."""
        return judge(self.kind, self.results)


# Target options that only name the device for people: changing them does not change what the
# probers learned about it.
DISPLAY_OPTIONS = frozenset({"name"})


# What the probers learn of the device itself, whichever credentials reach it: kept when only
# the credentials change (a password rotation), as a restart keeps the picture memory
# (monitor.memory.reach_key leaves them out). Everything else is dropped: the auth backoff,
# the stream, picture and snapshot URIs (another user may be given others), the SNMP agent's
# answers (another user may see other views).
CREDENTIAL_FREE_STATE = frozenset({
    "image",  # the picture memory: reference view, sharpness baseline, bad-check streaks
    "last_frame_jpeg", "last_frame_jpeg_time", "last_frame_time",
    "identity", "clock_drift",  # from ONVIF, of the device
})


def _reach(target: Target) -> tuple[Any, ...]:
    """How the probers reach a device, credentials aside: what their memory of it depends on."""
    options = {k: v for k, v in target.options.items() if k not in DISPLAY_OPTIONS}
    return target.kind, target.address, options


def carry_over(old: DeviceRecord, target: Target, profile: CameraProfile | ApProfile) -> DeviceRecord:
    """The record of a changed device, keeping what still holds of the old one."""
    rec = DeviceRecord(target, profile)
    if old.kind != target.kind or old.target.address != target.address:
        return rec  # another device behind the same id: nothing known about the old one applies
    # Its series, verdict and backoff stay until the checks run again under the new settings,
    # so a reload neither blanks the device's metrics nor announces it up or down again.
    enabled = set(rec.enabled_checks())
    rec.results = {c: r for c, r in old.results.items() if c in enabled}
    rec.failures = {c: n for c, n in old.failures.items() if c in enabled}
    rec.status, rec.reasons = old.status, list(old.reasons)
    if _reach(old.target) != _reach(target):
        return rec  # another port or stream URL: cached URIs may be wrong now
    if old.target.auth == target.auth:
        rec.probe_state = old.probe_state
    else:
        rec.probe_state = {k: v for k, v in old.probe_state.items() if k in CREDENTIAL_FREE_STATE}
    return rec


class State:
    """Every device's record, keyed by id; a changed device's record is rebuilt on reload."""

    def __init__(self) -> None:
        self.devices: dict[str, DeviceRecord] = {}
        self.sites: dict[str, SiteConfig] = {}

    def load(self, loaded: LoadedConfig) -> tuple[set[str], set[str], set[str]]:
        """Apply a config; return the ids added, changed (target or profile) and removed."""
        new: dict[str, DeviceRecord] = {}
        added: set[str] = set()
        changed: set[str] = set()
        for device in loaded.devices:
            target = loaded.target(device)
            profile = loaded.profile_for(device)
            old = self.devices.get(device.id)
            if old is None:
                new[device.id] = DeviceRecord(target, profile)
                added.add(device.id)
                continue
            if old.target != target or old.profile != profile or old.kind != target.kind:
                new[device.id] = carry_over(old, target, profile)
                changed.add(device.id)
            else:
                new[device.id] = old
        removed = set(self.devices) - set(new)
        self.devices = new
        self.sites = {s.id: s for s in loaded.config.sites}
        return added, changed, removed
