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


# Problems that hide others: an unreachable camera shows no stream and no picture, and a
# rejected login says nothing about the stream behind it.
MASKS: dict[str, frozenset[str]] = {
    "unreachable": frozenset({"no_stream", "black", "frozen", "blurred", "moved", "dark"}),
    "auth_failed": frozenset({"no_stream", "black", "frozen", "blurred", "moved", "dark"}),
    "no_stream": frozenset({"black", "frozen", "blurred", "moved", "dark"}),
}


def verdict(results: dict[str, CheckResult]) -> tuple[Status, list[str], list[Sample]]:
    """Combine the latest check results into status, reasons and the verdict samples.

    Every problem of the CONTRACT is exported (1/0); a check that has no opinion on a problem
    leaves it 0. The most basic problem wins: `unreachable` masks `no_stream` and the picture
    problems, so each fault pages as one problem.
    """
    problems = dict.fromkeys(PROBLEMS, False)
    for result in results.values():
        for name, on in result.problems.items():
            if name in problems:
                problems[name] = problems[name] or on
    rtsp = results.get("rtsp")
    up = bool(rtsp and rtsp.success)
    if up:
        # A frame arrived: whatever ONVIF or ping said, the camera is reachable and streaming.
        problems["unreachable"] = problems["no_stream"] = False
    for cause, hidden in MASKS.items():
        if problems[cause]:
            for name in hidden:
                problems[name] = False
    # No RTSP check (disabled in the profile, `camnet probe --skip rtsp`): no frame was to be
    # grabbed, so no camnet_camera_up at all, and the other checks' problems decide.
    samples = [Sample("camnet_camera_up", float(up))] if rtsp is not None else []
    samples += [Sample("camnet_camera_problem", float(on), {"problem": p}) for p, on in problems.items()]
    reasons = [p for p, on in problems.items() if on]
    if not results:
        return Status.UNKNOWN, ["not checked yet"], samples
    failed = [f"{c}: {r.reason or 'failed'}" for c, r in results.items() if not r.success]
    if (rtsp is not None and not up) or CRITICAL_PROBLEMS.intersection(reasons):
        status = Status.CRITICAL
        if not reasons and rtsp is not None:
            reasons = [rtsp.reason or "no frame"]
    elif rtsp is None and failed:
        # Without a frame to judge, the checks that ran say it: none answering is down.
        status = Status.CRITICAL if len(failed) == len(results) else Status.WARNING
        reasons = reasons + failed
    elif reasons:
        status = Status.WARNING
    else:
        status = Status.OK
    return status, reasons, samples
