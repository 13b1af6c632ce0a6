"""ONVIF check of a camera: clock, identity, services and stream/snapshot URIs."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from probes.base import CheckResult, CheckSettings, Duration, MetricDef, Target

METRICS: dict[str, MetricDef] = {
    "camnet_camera_onvif_up": MetricDef("gauge", "1 when the ONVIF service answered"),
}


class OnvifSettings(CheckSettings):
    """ONVIF polling; the port and credentials come from the camera and its auth."""

    interval: Duration = 60.0
    max_clock_offset: Duration = Field(default=30.0, description="clock_drift above this")
    auth_backoff: Duration = Field(default=600.0, description="pause after a rejected login")
    concurrency: int = Field(default=16, ge=1, le=1024)


async def probe_onvif(
    target: Target, settings: OnvifSettings, state: dict[str, Any], deadline: float
) -> CheckResult:
    """Ask the camera's ONVIF service for its clock, identity and media URIs."""
    raise NotImplementedError  # filled by the camera issue (#5)
