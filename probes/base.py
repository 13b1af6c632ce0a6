"""Types shared by every prober: settings, targets, results and the prober signature."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """Turn `30s`, `1.5m`, `500ms`, `2h` or a number of seconds into seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or a string like '30s'")
    try:
        if isinstance(value, int | float):
            seconds = float(value)
        elif isinstance(value, str):
            m = _DURATION_RE.match(value)
            if not m:
                raise ValueError(f"{value!r} is not a duration (use e.g. 500ms, 30s, 5m, 1h)")
            seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        else:
            raise ValueError("a duration must be a number of seconds or a string like '30s'")
    except OverflowError:
        seconds = math.inf  # an integer of hundreds of digits
    # NaN passes every comparison below, and a deadline of NaN or infinity corrupts the
    # event loop's timers.
    if not math.isfinite(seconds):
        raise ValueError("a duration must be a finite number of seconds")
    if seconds <= 0:
        raise ValueError("a duration must be greater than zero")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]

SECRET_MASK = "<secret>"
# `<` and `>` belong to it: a secret already masked inside the userinfo reads `<secret>`.
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s\"']+")
_URL_USERINFO = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#\s]*@")
# Credentials some cameras carry in the path or query instead of user:password@: XMEye-style
# `/user=admin_password=…_channel=1_stream=0.sdp`, `?user=…&password=…`, `?loginuse=…&loginpas=…`.
_URL_SECRET_PARAM = re.compile(
    r"(?i)(?<=[/?&;_])(user|username|usr|password|passwd|pass|pwd|loginuse|loginpas|token|auth)"
    r"=[^&;_/#\s\"'<>]*")


def strip_userinfo(url: str) -> str:
    """`url` without its `user:password@` part; never raises, whatever the camera sent."""
    m = _URL_USERINFO.match(url)
    return m.group("scheme") + url[m.end():] if m else url


def _mask_params(url: str) -> str:
    return _URL_SECRET_PARAM.sub(lambda m: f"{m.group(1)}={SECRET_MASK}", url)


def redact_url(url: str) -> str:
    """`url` for people: no `user:password@`, credential-like parameters masked; never raises."""
    return _mask_params(strip_userinfo(url))


def redact_urls(text: str) -> str:
    """Every URL in `text` as `redact_url` shows it, credentials masked (`<secret>@`)."""
    def one(m: re.Match[str]) -> str:
        url = m.group(0)
        userinfo = _URL_USERINFO.match(url)
        if userinfo:
            url = f"{userinfo.group('scheme')}{SECRET_MASK}@{url[userinfo.end():]}"
        return _mask_params(url)
    return _URL.sub(one, text)


class StrictModel(BaseModel):
    """Base for config models: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class CheckSettings(StrictModel):
    """Settings every check has: schedule, deadline and backoff."""

    enabled: bool = True
    interval: Duration = 30.0
    timeout: Duration = 10.0
    # Capped low: a camera back after hours must not wait minutes for its recovery to be seen.
    max_backoff: Duration = Field(default=60.0, description="cap of the retry interval while down")
    concurrency: int = Field(default=32, ge=1, le=1024, description="checks of this kind at once")


class Status(IntEnum):
    """Monitoring-plugin exit codes, also the verdict of a full device check."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


@dataclass(slots=True)
class Sample:
    """One metric value; the exporter adds the device labels (commune, site, id, extra)."""

    name: str
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class MetricDef:
    """Type and help text of a metric family that a prober emits."""

    kind: Literal["gauge", "counter", "info"]
    help: str
    labels: tuple[str, ...] = ()


@dataclass(slots=True)
class CheckResult:
    """What one run of one check found; probers return this and never raise for device faults."""

    check: str
    success: bool
    reason: str = ""
    message: str = ""
    samples: list[Sample] = field(default_factory=list)
    problems: dict[str, bool] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    duration: float = 0.0
    artifacts: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, value: float | int | bool | None, **labels: str) -> None:
        """Append a sample unless the value is unknown (None)."""
        if value is None:
            return
        self.samples.append(Sample(name, float(value), labels))

    def debug(self, line: str) -> None:
        """Record one line of the probe's log (shown by --debug and /probe?debug=true)."""
        self.log.append(f"{time.time() - self.started:7.3f}s {line}")


@dataclass(slots=True)
class Credentials:
    """An auth entry of the config with its secrets resolved (they print as `**********`)."""

    config: Any
    secrets: dict[str, SecretStr | None] = field(default_factory=dict)

    def secret(self, name: str) -> str | None:
        """The plain value of one secret (e.g. `password`, `community`), or None."""
        value = self.secrets.get(name)
        return value.get_secret_value() if value is not None else None


@dataclass(slots=True)
class Target:
    """A device as a prober sees it: identity, address, resolved credentials, options."""

    id: str
    kind: Literal["camera", "ap"]
    address: str
    labels: dict[str, str]
    auth: Credentials | None = None
    options: dict[str, Any] = field(default_factory=dict)


# A prober: (target, its check settings, per-device state, absolute deadline in loop time).
# It must finish before the deadline (asyncio.timeout_at) and must not raise for device faults.
Prober = Callable[[Target, Any, dict[str, Any], float], Awaitable[CheckResult]]
