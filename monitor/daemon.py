"""`camnet run`: wires config, state, scheduler and the HTTP server; reload and clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import gc
import logging
import signal
import sys
import threading
import time
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge
from pydantic import ValidationError

from monitor import __version__, memory
from monitor.checks import check_device
from monitor.config import ConfigError, LoadedConfig, ServerConfig, load_config
from monitor.exporter import PROBE_CONCURRENCY, DeviceCollector, WebHooks, build_app, start_server
from monitor.logs import event, register_secrets, setup_logging
from monitor.report import render_debug, render_metrics
from monitor.scheduler import FAILING_POOL_SHARE, Scheduler, SchedulerMetrics
from monitor.state import DeviceRecord, State
from probes import rtsp

log = logging.getLogger("camnet.daemon")

# SIGTERM must end the process well within 5 s (systemd and Docker wait 10 s, tests 5 s).
SHUTDOWN_BUDGET = 3.0
SAVE_BUDGET = 1.0  # for the picture memory, after the checks have stopped


def config_secrets(loaded: LoadedConfig) -> list[str]:
    """Every secret value of a config, for the log redactor."""
    return [s.get_secret_value() for s in loaded.secrets.values()]


class Daemon:
    """One camnet process: state, scheduler, metrics registry and web server."""

    def __init__(self, config_path: Path, listen: str | None = None,
                 state_dir: Path | None = None) -> None:
        self.config_path = config_path
        self.listen = listen
        self.state_dir = state_dir  # overrides the config's state_dir
        self._saver: asyncio.Task[None] | None = None
        self._saving: asyncio.Future[BaseException | None] | None = None
        self._save_lock = asyncio.Lock()
        self._save_failed = False
        # A memory file that could not be read at start: set aside before the first save.
        self._unread: Path | None = None
        self.registry = CollectorRegistry()
        self.state = State()
        self.scheduler = Scheduler(self.state, SchedulerMetrics(self.registry))
        self.collector = DeviceCollector(self.state)
        self.reload_ok = Gauge(
            "camnet_config_last_reload_successful",
            "1 when the last config load or reload succeeded", registry=self.registry,
        )
        self.reload_time = Gauge(
            "camnet_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load", registry=self.registry,
        )
        Gauge("camnet_build_info", "camnet's version", ["version"], registry=self.registry).labels(
            __version__
        ).set(1)
        self.loaded: LoadedConfig | None = None
        self.runner: web.AppRunner | None = None
        self.stopping = asyncio.Event()
        self._reload_lock = asyncio.Lock()

    def memory_path(self) -> Path | None:
        """The picture memory's file, or None when nothing is to be kept."""
        base = self.state_dir or (self.loaded.state_dir if self.loaded else None)
        return base / memory.FILE_NAME if base is not None else None

    async def start(self, loaded: LoadedConfig) -> None:
        """Apply the first config, start the jobs and the HTTP server."""
        self._apply_loaded(loaded)
        path = self.memory_path()
        if path is not None:
            await self.read_memory(path)
            self._saver = asyncio.get_running_loop().create_task(self._save_every())
        await warm_up_probers(loaded)
        self.scheduler.start()
        hooks = WebHooks(
            registry=self.registry, collector=self.collector, state=self.state, alive=self.scheduler.alive,
            reload=self.reload, probe=self.probe_now,
            frames=lambda: bool(self.loaded and self.loaded.config.server.frames),
        )
        server = loaded.config.server
        if self.listen:
            server = ServerConfig(listen=self.listen)
        host, port = server.host_port
        self.runner = await start_server(build_app(hooks), host, port)
        # Everything allocated so far (modules, WSDLs, config) lives as long as the process: keep
        # the cyclic collector from walking it again and again (≈10% CPU at 100 APs, bench/snmp.py).
        gc.freeze()
        c = loaded.config
        event(log, logging.INFO, "camnet started", version=__version__, listen=server.listen,
              config=str(self.config_path), cameras=len(c.cameras), aps=len(c.aps), sites=len(c.sites))

    def _apply_loaded(self, loaded: LoadedConfig) -> tuple[set[str], set[str], set[str]]:
        register_secrets(config_secrets(loaded))
        self.loaded = loaded
        result = self.state.load(loaded)
        self.reload_ok.set(1)
        self.reload_time.set(time.time())
        return result

    async def reload(self) -> tuple[bool, list[str]]:
        """Reload the config file; a bad file keeps the old config running and says why."""
        async with self._reload_lock:
            try:
                loaded = await asyncio.to_thread(load_config, self.config_path)
            except ConfigError as e:
                self.reload_ok.set(0)
                event(log, logging.ERROR, "config reload failed; keeping the previous config",
                      config=str(self.config_path), problems=len(e.problems), first=e.problems[0])
                return False, e.problems
            except Exception as e:  # a loader bug must not kill the reload or keep the metric at 1
                self.reload_ok.set(0)
                problem = f"{self.config_path}:0: (file): cannot load: {type(e).__name__}"
                event(log, logging.ERROR, "config reload failed; keeping the previous config",
                      config=str(self.config_path), problems=1, first=problem)
                return False, [problem]
            old_listen = self.loaded.config.server.listen if self.loaded and not self.listen else None
            added, changed, removed = self._apply_loaded(loaded)
            await self.scheduler.apply(added, changed, removed)
            await warm_up_probers(loaded)  # more cameras or concurrency: more grab slots
            if old_listen and old_listen != loaded.config.server.listen:
                event(log, logging.WARNING, "server.listen changed; restart camnet to move the listener",
                      listen=old_listen, wanted=loaded.config.server.listen)
            event(log, logging.INFO, "config reloaded", config=str(self.config_path),
                  added=len(added), changed=len(changed), removed=len(removed))
            return True, []

    async def read_memory(self, path: Path) -> None:
        """Restore the cameras' picture memory from `path` (in a thread: a slow disk)."""
        if await asyncio.to_thread(memory.read_into, self.state, path):
            self._unread = path

    async def save_memory(self) -> None:
        """Write the cameras' picture memory now, one save at a time, in a thread of its own
        (a daemon thread: an exit never waits for a slow disk; a save cut short leaves the
        previous file whole). A failure is logged once, until a save succeeds again."""
        path = self.memory_path()
        if path is None:
            return
        async with self._save_lock:
            if self._saving is not None:  # a save whose waiter was cancelled: it runs on
                await asyncio.shield(self._saving)
            await self._save(path)

    async def _save(self, path: Path) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[BaseException | None] = loop.create_future()
        snap = memory.snapshot(self.state)
        unread = self._unread == path

        def finish(outcome: BaseException | None, set_aside: bool) -> None:
            if set_aside:  # even when its waiter was cancelled: never set aside our own file
                self._unread = None
            if not done.done():
                done.set_result(outcome)
            if self._saving is done:
                self._saving = None

        def run() -> None:
            outcome: BaseException | None = None
            set_aside = False
            try:
                if unread:
                    memory.set_aside_unread(path)
                    set_aside = True
                memory.save(path, snap)
            except BaseException as e:  # handed to the event loop, which logs it
                outcome = e
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: exiting
                loop.call_soon_threadsafe(finish, outcome, set_aside)

        self._saving = done
        threading.Thread(target=run, name="camnet-save-memory", daemon=True).start()
        error = await asyncio.shield(done)
        if error is not None:
            if not self._save_failed:
                event(log, logging.WARNING, "cannot save the picture memory; a restart will "
                      "relearn the cameras' pictures", file=str(path),
                      error=f"{type(error).__name__}: {error}")
            self._save_failed = True
            return
        if self._save_failed:
            event(log, logging.INFO, "picture memory saved again", file=str(path))
        self._save_failed = False

    async def _save_every(self) -> None:
        while True:
            await asyncio.sleep(memory.SAVE_INTERVAL)
            await self.save_memory()

    async def probe_now(self, rec: DeviceRecord, debug: bool = False) -> str:
        """Run every check of one device now (for /probe), without touching its stored state."""
        # A deep copy: the probers keep nested memory (the picture history, counters) that a
        # probe must not advance, or it would shift the daemon's own debounce and baselines.
        report = await check_device(rec.target, rec.profile, copy.deepcopy(rec.probe_state))
        return render_debug(report) if debug else render_metrics(report)

    async def stop(self) -> None:
        """Stop the HTTP server and every job, within the shutdown budget."""
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        if self._saver is not None:
            self._saver.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._saver
            self._saver = None
        try:
            async with asyncio.timeout(SHUTDOWN_BUDGET):
                await self.scheduler.stop()
                await rtsp.shutdown()
        except TimeoutError:
            event(log, logging.WARNING, "some checks did not stop in time; exiting anyway")
        # The checks have stopped: what they learned last goes to disk (≈ 0.14 s for 24
        # cameras with two views each, compressed, measured in a scratch run).
        try:
            async with asyncio.timeout(SAVE_BUDGET):
                await self.save_memory()
        except TimeoutError:
            event(log, logging.WARNING, "the picture memory was not saved in time")


def grab_slots(concurrency: int) -> int:
    """Grab workers the daemon can ever need at once for this RTSP concurrency: each check
    holds at most two (main and picture stream), from the scheduler's healthy and failing
    pools and from /probe, so no check waits for a worker (idle ones beyond the warm-up
    count are stopped)."""
    checks = concurrency + max(1, int(concurrency * FAILING_POOL_SHARE)) + PROBE_CONCURRENCY
    return 2 * checks


async def warm_up_probers(loaded: LoadedConfig) -> None:
    """Let probers pay their one-time costs before the first checks: ONVIF parses its WSDLs,
    RTSP starts grab workers sized to the cameras' RTSP concurrency."""
    from probes import onvif, rtsp

    cameras = loaded.config.cameras
    if not cameras:
        return
    conc = max(loaded.profile_for(c).rtsp.concurrency for c in cameras)  # type: ignore[union-attr]
    steps = {"onvif": onvif.warm_up(),
             "rtsp": rtsp.warm_up(workers=min(2, conc), size=grab_slots(conc))}
    outcomes = await asyncio.gather(*steps.values(), return_exceptions=True)
    for name, outcome in zip(steps, outcomes, strict=True):
        if isinstance(outcome, Exception):  # an optimisation only: the checks still run without it
            error = f"{type(outcome).__name__}: {outcome}"
            event(log, logging.WARNING, f"{name} warm-up failed", error=error)


async def serve(config_path: Path, listen: str | None = None,
                early_signals: list[int] | None = None, state_dir: Path | None = None) -> int:
    """Run until SIGTERM/SIGINT; SIGHUP reloads (`early_signals`: SIGHUPs before this ran)."""
    try:
        loaded = await asyncio.to_thread(load_config, config_path)
    except ConfigError as e:
        for line in e.problems:
            print(line, file=sys.stderr)
        event(log, logging.ERROR, "config is invalid; not starting", config=str(config_path),
              problems=len(e.problems))
        return 1
    if listen is not None:
        try:
            ServerConfig(listen=listen)
        except ValidationError as e:
            print(f"--listen: {e.errors()[0]['msg'].removeprefix('Value error, ')}", file=sys.stderr)
            return 1
    daemon = Daemon(config_path, listen, state_dir)
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[tuple[bool, list[str]]]] = set()
    started = False
    hup_during_start = False

    def on_hup() -> None:
        nonlocal hup_during_start
        if not started:  # reloading while start() applies the first config would race it
            hup_during_start = True
            return
        task = loop.create_task(daemon.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    # Before start(): a SIGTERM while starting stops cleanly, a SIGHUP reloads once started.
    loop.add_signal_handler(signal.SIGTERM, daemon.stopping.set)
    loop.add_signal_handler(signal.SIGINT, daemon.stopping.set)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    try:
        try:
            await daemon.start(loaded)
        except OSError as e:
            event(log, logging.ERROR, "cannot start", error=str(e))
            await daemon.stop()
            return 1
        started = True
        if (hup_during_start or early_signals) and not daemon.stopping.is_set():
            event(log, logging.INFO, "SIGHUP arrived while starting: reloading now")
            on_hup()
        await daemon.stopping.wait()
        event(log, logging.INFO, "stopping")
        for task in reloads:
            task.cancel()
        await daemon.stop()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
    event(log, logging.INFO, "stopped")
    return 0


def run_daemon(
    config_path: Path, log_format: str = "logfmt", log_level: str = "info",
    listen: str | None = None, early_signals: list[int] | None = None,
    state_dir: Path | None = None,
) -> int:
    """Entry point of `camnet run`."""
    import probes.onvif  # noqa: F401  (onvif's import sets up logging; ours must come after)

    setup_logging(log_format, log_level)
    return asyncio.run(serve(Path(config_path), listen, early_signals, state_dir))
