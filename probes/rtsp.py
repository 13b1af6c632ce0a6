"""RTSP check of a camera: grab one decoded frame and judge the picture."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from probes.base import CheckResult, CheckSettings, MetricDef, StrictModel, Target

METRICS: dict[str, MetricDef] = {
    "camnet_camera_time_to_first_frame_seconds": MetricDef(
        "gauge", "Seconds from connecting to the first decoded frame"
    ),
}


class ImageSettings(StrictModel):
    """Thresholds of the picture checks; a problem needs `consecutive` bad checks in a row."""

    consecutive: int = Field(default=2, ge=1, le=100)
    dark_brightness: float = Field(default=0.12, ge=0, le=1)
    black_brightness: float = Field(default=0.08, ge=0, le=1)


class RtspSettings(CheckSettings):
    """Frame grabbing; the stream URI comes from the config or from ONVIF."""

    transport: str = "tcp"
    concurrency: int = Field(default=8, ge=1, le=1024)
    image: ImageSettings = ImageSettings()


async def probe_rtsp(
    target: Target, settings: RtspSettings, state: dict[str, Any], deadline: float
) -> CheckResult:
    """Grab one frame and measure it."""
    raise NotImplementedError  # filled by the camera issue (#5)
