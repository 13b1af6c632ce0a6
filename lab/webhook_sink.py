"""A webhook receiver that records what Alertmanager sends: the police and NOC phones of the lab.

Every POST to /<receiver> is kept (receiver name from the path, the JSON body) and can be
printed as it arrives. It runs its own event loop in a thread, so synchronous tests, the demo
and the latency bench can all use it; `python -m lab.webhook_sink` runs it alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

START_TIMEOUT = 10.0  # seconds to bind the socket


@dataclass
class Notification:
    """One webhook POST: which receiver, when it arrived (time.time()), and the payload."""

    receiver: str
    received: float
    payload: dict[str, Any]

    @property
    def status(self) -> str:
        """`firing` or `resolved`, as Alertmanager says for the whole group."""
        return str(self.payload.get("status", ""))

    @property
    def alerts(self) -> list[dict[str, Any]]:
        """The alerts of the notification, each with status, labels and annotations."""
        return list(self.payload.get("alerts", []))

    def alertnames(self) -> set[str]:
        """The distinct alert names in this notification."""
        return {a.get("labels", {}).get("alertname", "") for a in self.alerts}


@dataclass
class WebhookSink:
    """An aiohttp server on host:port recording every POST; start() and stop() from any thread."""

    host: str = "127.0.0.1"
    port: int = 9099
    on_notification: Callable[[Notification], None] | None = None
    notifications: list[Notification] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _cond: threading.Condition = field(init=False)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _stop: asyncio.Event | None = None

    def __post_init__(self) -> None:
        self._cond = threading.Condition(self._lock)

    @property
    def url(self) -> str:
        """Base URL; Alertmanager receivers post to url + '/' + receiver name."""
        return f"http://{self.host}:{self.port}"

    async def _handle(self, request: web.Request) -> web.Response:
        try:
            payload = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return web.Response(status=400, text="not JSON\n")
        note = Notification(request.match_info["receiver"], time.time(), payload)
        with self._cond:
            self.notifications.append(note)
            self._cond.notify_all()
        if self.on_notification is not None:
            self.on_notification(note)
        return web.Response(text="ok\n")

    async def _serve(self, ready: threading.Event, errors: list[BaseException]) -> None:
        app = web.Application()
        app.router.add_post("/{receiver}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._stop = asyncio.Event()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except OSError as e:
            errors.append(e)
            ready.set()
            await runner.cleanup()
            return
        ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def start(self) -> WebhookSink:
        """Serve in a background thread; returns once the port is bound (raises if it can't)."""
        ready = threading.Event()
        errors: list[BaseException] = []
        self._loop = asyncio.new_event_loop()
        loop = self._loop

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self._serve(ready, errors))
            loop.close()

        self._thread = threading.Thread(target=run, name="webhook-sink", daemon=True)
        self._thread.start()
        if not ready.wait(START_TIMEOUT):
            raise RuntimeError(f"webhook sink did not start on {self.url}")
        if errors:
            self._thread.join(START_TIMEOUT)
            raise errors[0]
        return self

    def stop(self) -> None:
        """Stop serving and join the thread."""
        if self._loop is not None and self._stop is not None and self._thread is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(START_TIMEOUT)
        self._thread = None

    def __enter__(self) -> WebhookSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def snapshot(self) -> list[Notification]:
        """A copy of everything received so far."""
        with self._lock:
            return list(self.notifications)

    def clear(self) -> None:
        """Forget what was received."""
        with self._lock:
            self.notifications.clear()

    def wait_for(
        self, match: Callable[[Notification], bool], timeout: float, since: float = 0.0
    ) -> Notification | None:
        """The first notification (received at or after `since`) that matches, waiting up to timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for note in self.notifications:
                    if note.received >= since and match(note):
                        return note
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)


def format_notification(note: Notification) -> str:
    """One notification as a few human lines (the demo prints these)."""
    stamp = time.strftime("%H:%M:%S", time.localtime(note.received))
    lines = [f"[{stamp}] → {note.receiver}: {note.status.upper()}"]
    for alert in note.alerts:
        ann = alert.get("annotations", {})
        mark = "🔴" if alert.get("status") == "firing" else "🟢"
        lines.append(f"    {mark} {ann.get('summary', alert.get('labels', {}).get('alertname', '?'))}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the sink alone, printing each notification."""
    parser = argparse.ArgumentParser(description="Record and print Alertmanager webhooks")
    parser.add_argument("--listen", default="127.0.0.1:9099", help="host:port (loopback)")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    sink = WebhookSink(host, int(port), on_notification=lambda n: print(format_notification(n), flush=True))
    sink.start()
    print(f"webhook sink listening on {sink.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        sink.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
