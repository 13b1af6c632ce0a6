"""A camera's verdict from its latest check results (ONVIF, RTSP+image, ping)."""

from __future__ import annotations

from probes.base import CheckResult, MetricDef, Sample, Status

PROBLEMS = (
    "unreachable",
    "auth_failed",
    "no_stream",
    "black",
    "frozen",
    "blurred",
    "moved",
    "dark",
    "clock_drift",
)

# Problems that make the picture useless for the police: the camera counts as down.
CRITICAL_PROBLEMS = frozenset({"unreachable", "auth_failed", "no_stream", "black", "frozen"})

METRICS: dict[str, MetricDef] = {
    "camnet_camera_up": MetricDef("gauge", "1 when a decodable frame was grabbed in the last check"),
    "camnet_camera_problem": MetricDef(
        "gauge", "1 when the camera has this problem, 0 when not; every problem is exported",
        ("problem",),
    ),
}


def verdict(results: dict[str, CheckResult]) -> tuple[Status, list[str], list[Sample]]:
    """Combine the latest check results into status, reasons and the verdict samples."""
    problems = dict.fromkeys(PROBLEMS, False)
    for result in results.values():
        for name, on in result.problems.items():
            if name in problems:
                problems[name] = problems[name] or on
    rtsp = results.get("rtsp")
    up = bool(rtsp and rtsp.success)
    samples = [Sample("camnet_camera_up", float(up))]
    samples += [Sample("camnet_camera_problem", float(on), {"problem": p}) for p, on in problems.items()]
    reasons = [p for p, on in problems.items() if on]
    if not results:
        return Status.UNKNOWN, ["not checked yet"], samples
    if not up or CRITICAL_PROBLEMS.intersection(reasons):
        status = Status.CRITICAL
    elif reasons:
        status = Status.WARNING
    else:
        status = Status.OK
    return status, reasons, samples
