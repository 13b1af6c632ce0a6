"""RTSP check of a camera: grab one decoded frame and judge the picture."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from probes.base import CheckResult, CheckSettings, MetricDef, Target
from probes.image import ImageSettings

METRICS: dict[str, MetricDef] = {
    "camnet_camera_time_to_first_frame_seconds": MetricDef(
        "gauge", "Seconds from connecting to the first decoded frame"
    ),
}


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
