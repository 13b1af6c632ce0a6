"""The HTTP side: /metrics from a collector over the latest results, /healthz, /-/reload, /probe."""

from __future__ import annotations

import html
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from email.utils import formatdate

from aiohttp import web
from prometheus_client import CollectorRegistry, disable_created_metrics
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from monitor.state import DeviceRecord, State
from probes import METRICS
from probes.base import CheckResult, MetricDef, Sample, Status

log = logging.getLogger("camnet.exporter")

# In the text format each counter and histogram of the daemon's own would bring a gauge family
# of its creation times (camnet_check_errors_created{kind,check,reason}, ...): undocumented
# series, as many again as the counters', that nothing reads.
disable_created_metrics()

_FALLBACK = MetricDef("gauge", "camnet metric (undocumented)")

# Per-device series camnet adds itself, next to what the probers emit.
OWN_METRICS: dict[str, MetricDef] = {
    "camnet_check_success": MetricDef("gauge", "1 when the device's last run of this check succeeded"),
    "camnet_check_last_run_timestamp_seconds": MetricDef(
        "gauge", "Unix time when this check of the device last ran"
    ),
    "camnet_device_status": MetricDef(
        "gauge", "Verdict of the device: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (a prober failed)"
    ),
    "camnet_site_info": MetricDef("gauge", "A site (village hall) with its Vietnamese name and telco"),
}


SampleGroup = tuple[Mapping[str, str], Iterable[Sample]]


def _escape(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


def _number(value: float) -> str:
    if value != value:
        return "NaN"
    if value in (math.inf, -math.inf):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _labels(labels: Mapping[str, str]) -> str:
    return ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())


@dataclass(slots=True)
class _Family:
    name: str  # as exposed: counters end in _total
    kind: str
    help: str
    lines: list[str]


def _family_for(name: str) -> _Family:
    definition = METRICS.get(name) or OWN_METRICS.get(name) or _FALLBACK
    kind = "counter" if definition.kind == "counter" else "gauge"
    if kind == "counter" and not name.endswith("_total"):
        name += "_total"
    return _Family(name, kind, definition.help, [])


def render_groups(groups: Iterable[SampleGroup]) -> str:
    """Prometheus text (format 0.0.4) for (device labels, samples) groups.

    Written by hand rather than through prometheus_client's generate_latest: with 100 access
    points its per-sample label escaping was most of the daemon's CPU (bench/snmp.py). Each
    device's label string is built once per scrape here.
    """
    families: dict[str, _Family] = {}
    for base, samples in groups:
        base_text = _labels(base)
        for sample in samples:
            family = families.get(sample.name)
            if family is None:
                family = families[sample.name] = _family_for(sample.name)
            extra = sample.labels
            if not extra:
                text = base_text
            elif any(k in base for k in extra):  # a sample label overrides a device label
                text = _labels({**base, **extra})
            else:
                text = f"{base_text},{_labels(extra)}" if base_text else _labels(extra)
            series = f"{family.name}{{{text}}}" if text else family.name
            family.lines.append(f"{series} {_number(sample.value)}\n")
    out: list[str] = []
    for family in families.values():
        help_text = family.help.replace("\\", "\\\\").replace("\n", "\\n")
        out.append(f"# HELP {family.name} {help_text}\n# TYPE {family.name} {family.kind}\n")
        out.extend(family.lines)
    return "".join(out)


def check_samples(
    results: Mapping[str, CheckResult], verdict: tuple[Status, list[str], list[Sample]] | None
) -> Iterator[Sample]:
    """Samples of a set of check results: verdict (if known), check bookkeeping, prober values."""
    if verdict is not None:
        status, _, verdict_samples = verdict
        yield Sample("camnet_device_status", float(status))
        yield from verdict_samples
    for check, result in results.items():
        yield Sample("camnet_check_success", float(result.success), {"check": check})
        yield Sample("camnet_check_last_run_timestamp_seconds", result.started, {"check": check})
        yield from result.samples


def device_samples(rec: DeviceRecord) -> Iterator[Sample]:
    """Every sample of one device from the scheduler's latest results."""
    if not rec.results:
        return
    # Until every check has run once, up/problem series would claim what nobody measured.
    yield from check_samples(rec.results, rec.verdict() if rec.complete else None)


def _site_samples(state: State) -> Iterator[SampleGroup]:
    for site in state.sites.values():
        labels = {"commune": site.commune, "site": site.id, "site_name": site.name}
        if site.operator:
            labels["operator"] = site.operator
        yield labels, [Sample("camnet_site_info", 1.0)]


class DeviceCollector:
    """Builds the per-device series fresh at every scrape from the latest results, so a device
    removed from the config leaves no stale series."""

    def __init__(self, state: State) -> None:
        self.state = state

    def render(self) -> str:
        """The device and site series as Prometheus text."""
        groups = [(rec.target.labels, device_samples(rec)) for rec in list(self.state.devices.values())]
        return render_groups([*groups, *_site_samples(self.state)])


def metrics_text(collector: DeviceCollector, registry: CollectorRegistry) -> bytes:
    """The whole /metrics answer: device series, then the daemon's own metrics."""
    return collector.render().encode() + generate_latest(registry)


def render_text(groups: Iterable[SampleGroup]) -> bytes:
    """Prometheus text for a few devices' samples (the /probe answer, the CLI's metric views)."""
    return render_groups(groups).encode()


@dataclass
class WebHooks:
    """What the web app needs from the daemon."""

    registry: CollectorRegistry
    collector: DeviceCollector
    state: State
    alive: Callable[[], bool]
    reload: Callable[[], Awaitable[tuple[bool, list[str]]]]
    # Runs every check of a device now; returns the answer body (metrics, or the debug view).
    probe: Callable[[DeviceRecord, bool], Awaitable[str]]
    # Whether /frame serves camera pictures (server.frames; read at each request: reloadable).
    frames: Callable[[], bool] = lambda: False


# /probe runs checks outside the scheduler's pools: a few at a time, one per device, so a
# script hammering it cannot take the workers, sockets and deadlines scheduled checks need
# (monitor.daemon.grab_slots counts these in).
PROBE_CONCURRENCY = 2


def build_app(hooks: WebHooks) -> web.Application:
    """The aiohttp application with every endpoint of the daemon."""
    app = web.Application()
    probing: set[str] = set()

    async def metrics(_: web.Request) -> web.Response:
        body = metrics_text(hooks.collector, hooks.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        if hooks.alive():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="scheduler is not running\n")

    async def reload(_: web.Request) -> web.Response:
        ok, problems = await hooks.reload()
        if ok:
            return web.Response(text="config reloaded\n")
        text = "config NOT reloaded; the previous config keeps running:\n" + "\n".join(problems)
        return web.Response(status=400, text=text + "\n")

    async def probe(request: web.Request) -> web.Response:
        target = request.query.get("target", "")
        if not target:
            return web.Response(status=400, text="missing ?target=ID (an inventory id)\n")
        rec = hooks.state.devices.get(target)
        if rec is None:
            # Only inventory ids: anything else (an address, a URL) is refused, never probed,
            # so the daemon cannot be used to send traffic to arbitrary hosts.
            shown = html.escape(target[:80])
            return web.Response(
                status=400,
                text=f"unknown target {shown!r}: /probe accepts only inventory ids from the config\n",
            )
        debug = request.query.get("debug", "").lower() in ("1", "true", "yes")
        if target in probing or len(probing) >= PROBE_CONCURRENCY:
            why = (f"a probe of {target} is already running" if target in probing
                   else f"{PROBE_CONCURRENCY} probes are already running")
            return web.Response(status=429, headers={"Retry-After": "10"},
                                text=f"busy: {why}; try again in a few seconds\n")
        probing.add(target)
        try:
            body = await hooks.probe(rec, debug)
        finally:
            probing.discard(target)
        if debug:
            return web.Response(text=body)
        return web.Response(body=body.encode(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def frame(request: web.Request) -> web.Response:
        if not hooks.frames():
            return web.Response(status=404, text="frames are not served: set server.frames: true\n")
        cid = request.query.get("camera", "")
        rec = hooks.state.devices.get(cid)
        if rec is None or rec.kind != "camera":
            shown = html.escape(cid[:80])
            return web.Response(status=404, text=f"no camera {shown!r} in the config\n")
        jpeg = rec.probe_state.get("last_frame_jpeg")
        taken = rec.probe_state.get("last_frame_jpeg_time")
        if not jpeg or taken is None:
            return web.Response(status=404, text=f"no frame from {cid} yet\n")
        headers = {"Last-Modified": formatdate(float(taken), usegmt=True), "Cache-Control": "no-store",
                   "X-Frame-Age-Seconds": f"{max(0.0, time.time() - float(taken)):.0f}"}
        return web.Response(body=bytes(jpeg), content_type="image/jpeg", headers=headers)

    async def index(_: web.Request) -> web.Response:
        return web.Response(text=_index_html(hooks.state, hooks.frames()), content_type="text/html")

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/-/reload", reload)
    app.router.add_get("/probe", probe)
    app.router.add_get("/frame", frame)
    app.router.add_get("/", index)
    return app


_STATUS_COLOUR = {
    Status.OK: "#2e7d32", Status.WARNING: "#f9a825", Status.CRITICAL: "#c62828", Status.UNKNOWN: "#757575",
}


def _index_html(state: State, frames: bool = False) -> str:
    rows = []
    for rec in sorted(state.devices.values(), key=lambda r: (r.status != Status.CRITICAL, r.target.id)):
        site = state.sites.get(rec.target.labels.get("site", ""))
        colour = _STATUS_COLOUR[rec.status]
        extra = ""
        if frames and rec.kind == "camera":
            extra = f" · <a href='/frame?camera={html.escape(rec.target.id)}'>frame</a>"
        rows.append(
            f"<tr><td>{html.escape(rec.target.id)}</td><td>{html.escape(site.name if site else '')}</td>"
            f"<td style='color:{colour}'>{rec.status.name}</td>"
            f"<td>{html.escape(', '.join(rec.reasons))}</td>"
            f"<td><a href='/probe?target={html.escape(rec.target.id)}'>probe</a>{extra}</td></tr>"
        )
    return (
        "<!doctype html><meta charset='utf-8'><title>camnet</title>"
        "<h1>camnet</h1><p><a href='/metrics'>/metrics</a> · <a href='/healthz'>/healthz</a></p>"
        "<table border=1 cellpadding=4><tr><th>device</th><th>site</th><th>status</th>"
        "<th>problems</th><th></th></tr>" + "".join(rows) + "</table>"
    )


async def start_server(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Bind the app; raises OSError with the address when the port is taken."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, shutdown_timeout=1.0)
    try:
        await site.start()
    except OSError as e:
        await runner.cleanup()
        raise OSError(e.errno, f"cannot listen on {host}:{port}: {e.strerror}") from e
    return runner

