"""RTSP grabs: the deadline holds whatever the camera does, workers never leak or block the loop.

Misbehaving peers on 127.0.12.50-59: a server that accepts and never answers, one that answers
late, one that sends garbage, and a proxy in front of a real lab camera (GStreamer) that drops
or stalls the session right after PLAY, i.e. mid-stream from the decoder's point of view.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from pydantic import SecretStr

from monitor import logs
from monitor.config import LoadedConfig, OnvifAuth
from probes import rtsp
from probes.base import Credentials, Target
from tests import test_camera
from tests.lab_fixture import Lab
from tests.test_camera import PASSWORD

camlab, camcfg, clean, pool = (test_camera.camlab, test_camera.camcfg, test_camera.clean,
                               test_camera.pool)
DEADLINE_S = 2.5
# The deadline is a correctness property: a grab returns by it (plus the time to kill and
# report), never minutes later. The margin is generous on purpose; speed is measured in bench/.
DEADLINE_SLACK_S = 1.5

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def tcp_server(host: str, port: int, handler: Handler) -> AsyncIterator[None]:
    writers: set[asyncio.StreamWriter] = set()

    async def wrapped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.add(writer)
        try:
            await handler(reader, writer)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(wrapped, host, port)
    try:
        yield
    finally:
        server.close()
        for w in writers:
            w.close()
        await server.wait_closed()


async def drain_until_eof(reader: asyncio.StreamReader) -> None:
    while await reader.read(65536):
        pass


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept, read, never answer, until the client leaves."""
    await drain_until_eof(reader)


async def grab_with_deadline(url: str) -> tuple[rtsp.GrabError | rtsp.Grab, float]:
    """One grab; returns the outcome and how far past the deadline it came back."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    try:
        outcome: rtsp.GrabError | rtsp.Grab = await rtsp.get_pool().grab(url, deadline)
    except rtsp.GrabError as e:
        outcome = e
    return outcome, loop.time() - deadline


async def test_silent_server_holds_the_deadline(pool: Any) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    async with tcp_server("127.0.12.50", 8554, silent):
        task = asyncio.create_task(ticker())
        try:
            outcome, late = await grab_with_deadline("rtsp://127.0.12.50:8554/live")
        finally:
            task.cancel()
    assert isinstance(outcome, rtsp.GrabError) and outcome.reason == "timeout"
    assert late < DEADLINE_SLACK_S
    assert ticks > 10  # the event loop never waited on the decoder


async def test_slow_server_holds_the_deadline(pool: Any) -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        await asyncio.sleep(30)
        writer.write(b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n")

    async with tcp_server("127.0.12.51", 8554, slow):
        outcome, late = await grab_with_deadline("rtsp://127.0.12.51:8554/live")
    assert isinstance(outcome, rtsp.GrabError) and outcome.reason == "timeout"
    assert late < DEADLINE_SLACK_S


async def test_garbage_is_a_bad_reply(pool: Any) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        writer.write(os.urandom(4096) + b"\r\n\r\n")
        await writer.drain()
        await drain_until_eof(reader)

    async with tcp_server("127.0.12.52", 8554, garbage):
        outcome, late = await grab_with_deadline("rtsp://127.0.12.52:8554/live")
    assert isinstance(outcome, rtsp.GrabError)
    assert rtsp.REASON_PROBLEM[outcome.reason] == "no_stream"
    assert late < DEADLINE_SLACK_S


def cut_after_play(mode: str, upstream: tuple[str, int]) -> Handler:
    """A proxy that forwards the RTSP handshake, then drops or stalls at the first media byte."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection(*upstream)

        async def client_to_server() -> None:
            with contextlib.suppress(OSError):
                while data := await reader.read(65536):
                    up_w.write(data)
                    await up_w.drain()

        forward = asyncio.create_task(client_to_server())
        seen = b""
        try:
            while data := await up_r.read(65536):
                seen += data
                # The PLAY answer carries RTP-Info; interleaved media ($...) follows it.
                end = seen.find(b"\r\n\r\n", seen.find(b"RTP-Info")) if b"RTP-Info" in seen else -1
                if end < 0:
                    writer.write(data)
                    await writer.drain()
                    continue
                keep = len(data) - (len(seen) - (end + 4))
                writer.write(data[:keep])
                await writer.drain()
                if mode == "drop":
                    return
                await forward  # stall: keep the connection, send nothing, until the client goes
                return
        finally:
            forward.cancel()
            up_w.close()

    return handler


@pytest.mark.lab
@pytest.mark.parametrize("mode", ["drop", "stall"])
async def test_mid_stream_drop_and_stall_hold_the_deadline(
        clean: Lab, pool: Any, mode: str) -> None:
    cam = clean.camera("cam-d")  # anonymous RTSP
    upstream = (cam["address"], int(cam["rtsp"].split("/")[2].rsplit(":", 1)[1]))
    path = cam["rtsp"].split("/", 3)[3]
    async with tcp_server("127.0.12.53", 8554, cut_after_play(mode, upstream)):
        outcome, late = await grab_with_deadline(f"rtsp://127.0.12.53:8554/{path}")
        assert isinstance(outcome, rtsp.GrabError), "a frame arrived through a cut session"
        assert late < DEADLINE_SLACK_S
        if mode == "stall":
            assert outcome.reason == "timeout"
    # The pool still works after the fault.
    direct, _ = await grab_with_deadline(cam["rtsp"])
    assert isinstance(direct, rtsp.Grab)


@pytest.mark.lab
@pytest.mark.parametrize("sig", [signal.SIGSTOP, signal.SIGKILL])
async def test_hung_or_crashed_decoder_is_replaced(clean: Lab, pool: Any, sig: int) -> None:
    """A decoder stuck in C (SIGSTOP) or crashing (SIGKILL) costs one grab, nothing more."""
    p = rtsp.get_pool()
    await p.start(1)
    [pid] = p.worker_pids()
    async with tcp_server("127.0.12.54", 8554, silent):
        task = asyncio.create_task(grab_with_deadline("rtsp://127.0.12.54:8554/live"))
        await asyncio.sleep(0.3)
        os.kill(pid, sig)
        outcome, late = await task
    assert isinstance(outcome, rtsp.GrabError)
    assert outcome.reason == ("timeout" if sig == signal.SIGSTOP else "decoder_crashed")
    assert late < DEADLINE_SLACK_S
    await asyncio.sleep(0.2)  # the background reaper
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped: no zombie, no orphan
    ok, _ = await grab_with_deadline(clean.camera("cam-d")["rtsp"])
    assert isinstance(ok, rtsp.Grab)
    assert pid not in p.worker_pids()


@pytest.mark.lab
async def test_concurrent_grabs_share_the_pool(clean: Lab, camcfg: LoadedConfig,
                                               pool: Any) -> None:
    urls = [test_camera.url(clean, cid) for cid in test_camera.CAMERAS]
    outcomes = await asyncio.gather(*(grab_with_deadline(u) for u in urls))
    sizes = {(o.header["width"], o.header["height"]) for o, _ in outcomes
             if isinstance(o, rtsp.Grab)}
    assert sizes == {(1280, 720), (1920, 1080), (640, 360)}
    assert len(rtsp.get_pool().worker_pids()) <= rtsp.get_pool().size
    pids = rtsp.get_pool().worker_pids()
    await rtsp.shutdown()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def lab_target(lab: Lab, cid: str, password: str) -> Target:
    cam = lab.camera(cid)
    auth = Credentials(OnvifAuth(type="onvif", username="admin"),
                       {"password": SecretStr(password), "rtsp_password": None})
    return Target(cid, "camera", cam["address"], {"camera": cid}, auth,
                  {"onvif_port": 8080, "rtsp_url": cam["rtsp"], "snapshot_url": None})


@pytest.mark.lab
async def test_rtsp_digest_and_no_secret_in_results(clean: Lab, pool: Any) -> None:
    loop = asyncio.get_running_loop()
    settings = rtsp.RtspSettings()
    good = await rtsp.probe_rtsp(lab_target(clean, "cam-a", PASSWORD), settings, {},
                                 loop.time() + 5)
    assert good.success and good.facts["codec"] == "h264"
    assert "@" not in good.facts["stream_uri"]
    bad = await rtsp.probe_rtsp(lab_target(clean, "cam-a", "wrong-pw-xyz"), settings, {},
                                loop.time() + 5)
    assert (bad.success, bad.reason, bad.problems["auth_failed"]) == (False, "auth_failed", True)
    for r in (good, bad):
        assert PASSWORD not in repr(r) and "wrong-pw-xyz" not in repr(r)


def test_redact_and_credentials() -> None:
    assert rtsp.redact("rtsp://u:p%40ss@10.0.0.1:554/a?b=c") == "rtsp://10.0.0.1:554/a?b=c"
    assert rtsp.redact("rtsp://[::1]:554/x") == "rtsp://[::1]:554/x"
    # Cameras that carry credentials in the path or query (XMEye, some Dahua and P2P models).
    xmeye = "rtsp://10.0.0.2:554/user=admin_password=tlJwpbo6_channel=1_stream=0.sdp"
    assert rtsp.redact(xmeye) == ("rtsp://10.0.0.2:554/user=<secret>_password=<secret>"
                                  "_channel=1_stream=0.sdp")
    query = "rtsp://10.0.0.3/cam/realmonitor?channel=1&user=admin&password=Zx9&subtype=1"
    assert rtsp.redact(query) == ("rtsp://10.0.0.3/cam/realmonitor?channel=1&user=<secret>"
                                  "&password=<secret>&subtype=1")
    assert logs.redact(f"grab failed url={query}") == f"grab failed url={rtsp.redact(query)}"
    # Whatever a camera announces, redacting it never raises (a bad URI is the camera's fault,
    # not a prober crash), and an unencoded "@" in a password does not leave half of it.
    for bad in ("rtsp://[zz]/x", "rtsp://[broken/x", "rtsp://u:pw@h:99999/x",
                "rtsp://u:pw@h:abc/x", "rtsp://u:p@ss@10.0.0.1/x", "not a url"):
        shown = rtsp.redact(bad)
        assert "pw" not in shown and "ss@" not in shown and "p@" not in shown, shown
    # The camera needs its own path parameters: credentials go in, nothing else changes.
    t = Target("c", "camera", "10.0.0.2", {}, Credentials(
        OnvifAuth(type="onvif", username="admin"),
        {"password": SecretStr("pw"), "rtsp_password": None}), {})
    assert rtsp.with_credentials(xmeye, t) == xmeye.replace("://", "://admin:pw@")
    assert rtsp.with_credentials("rtsp://old:x@[::1]/x", t) == "rtsp://admin:pw@[::1]/x"
    auth = Credentials(OnvifAuth(type="onvif", username="ad min", rtsp_username="viewer"),
                       {"password": SecretStr("p@ss:/"), "rtsp_password": None})
    t = Target("c", "camera", "127.0.0.1", {}, auth, {})
    assert rtsp.with_credentials("rtsp://127.0.0.1/x", t) == "rtsp://viewer:p%40ss%3A%2F@127.0.0.1/x"


def test_frame_due_renews_the_kept_frame_when_it_matters() -> None:
    settings = rtsp.RtspSettings(frame_refresh=60.0)
    state: dict[str, Any] = {}
    assert rtsp.frame_due(settings, state, 1000.0)  # nothing kept yet
    state.update(last_frame_jpeg_time=1000.0, frame_stale=False)
    assert not rtsp.frame_due(settings, state, 1059.0)  # healthy and fresh: no JPEG
    assert rtsp.frame_due(settings, state, 1060.0)  # a minute old
    state["frame_stale"] = True  # a suspect picture or a failed grab last time
    assert rtsp.frame_due(settings, state, 1001.0)
    assert not rtsp.frame_due(settings.model_copy(update={"save_frame": False}), state, 2000.0)


@pytest.mark.lab
async def test_workers_start_when_camnet_is_pid_1(clean: Lab) -> None:
    """In a container the daemon is PID 1: its grab workers must not take that for being
    orphaned (they did, and exited at once: every camera showed no_stream)."""
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is needed to run camnet as PID 1 here")
    script = (
        "import asyncio, json, os, sys\n"
        "from probes import rtsp\n"
        "async def main():\n"
        "    loop = asyncio.get_running_loop()\n"
        "    try:\n"
        "        g = await rtsp.get_pool().grab(sys.argv[1], loop.time() + 10)\n"
        "        out = {'pid': os.getpid(), 'width': g.header['width']}\n"
        "    except rtsp.GrabError as e:\n"
        "        out = {'pid': os.getpid(), 'error': e.reason}\n"
        "    await rtsp.shutdown()\n"
        "    print(json.dumps(out))\n"
        "asyncio.run(main())\n")
    proc = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", script,
         str(clean.camera("cam-d")["rtsp"])],
        capture_output=True, text=True, timeout=60, check=False, cwd=rtsp.PROJECT_ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout) == {"pid": 1, "width": 640}


def test_a_worker_loads_only_the_decoder_side() -> None:
    """A grab worker imports the `probes` package but none of the probers' libraries (zeep,
    aiohttp, lxml, icmplib: ≈ 40 MB more in each worker, and twice the start-up CPU)."""
    env = {**os.environ, "PYTHONPATH": str(rtsp.PROJECT_ROOT)}
    script = ("import sys, probes.grab_worker\n"
              "print(' '.join(m for m in ('zeep', 'aiohttp', 'lxml', 'onvif', 'icmplib', "
              "'probes.onvif', 'probes.snmp') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False, cwd=rtsp.PROJECT_ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "", proc.stdout


async def test_a_worker_that_asks_to_be_retired_is_replaced(
        pool: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker whose picture-stream thread stalled says `retire`: the pool stops it after
    that answer instead of handing it the next grab."""
    await pool.start(1)
    worker_pid = pool.worker_pids()[0]

    async def stalled_answer(self: Any, req: dict[str, Any]) -> Any:
        return {"ok": True, "retire": True, "grey_shape": [0, 0]}, b"", b""

    monkeypatch.setattr(rtsp._Worker, "request", stalled_answer)
    loop = asyncio.get_running_loop()
    await pool.grab("rtsp://127.0.12.29:8554/x", loop.time() + 5)
    assert worker_pid not in pool.worker_pids()
    assert pool.killed == 1


def test_an_orphaned_worker_exits_at_once() -> None:
    """A worker whose parent died before it could ask to die with it (re-parented) exits."""
    env = {**os.environ, "PYTHONPATH": str(rtsp.PROJECT_ROOT)}
    args = [sys.executable, "-m", "probes.grab_worker"]
    mine = subprocess.run(args, input=b"", capture_output=True, timeout=60, check=False,
                          env={**env, "CAMNET_GRAB_PARENT": str(os.getpid())})
    assert mine.stdout == b"ready\n"
    other = subprocess.run(args, input=b"", capture_output=True, timeout=60, check=False,
                           env={**env, "CAMNET_GRAB_PARENT": str(os.getpid() + 1)})
    assert (other.returncode, other.stdout) == (0, b"")


async def test_waiting_for_a_free_worker_holds_the_deadline(pool: Any) -> None:
    """Every worker busy (here the only one, with a camera that never answers): the next
    grab gives up at its own deadline, and the busy worker is left alone."""
    pool.resize(1)
    async with tcp_server("127.0.12.55", 8554, silent):
        loop = asyncio.get_running_loop()
        first = asyncio.create_task(pool.grab("rtsp://127.0.12.55:8554/a", loop.time() + 4.0))
        await asyncio.sleep(0.5)
        killed = pool.killed
        outcome, late = await grab_with_deadline("rtsp://127.0.12.55:8554/b")
        assert isinstance(outcome, rtsp.GrabError) and outcome.reason == "timeout"
        assert "busy" in str(outcome) and late < DEADLINE_SLACK_S
        assert pool.killed == killed and not first.done()
        with pytest.raises(rtsp.GrabError):
            await first


async def test_too_little_time_left_costs_no_worker(pool: Any) -> None:
    """A check whose ONVIF discovery ate the deadline does not start a grab that could only be
    killed (a healthy worker costs ≈ 1 s of CPU to replace)."""
    await pool.start(1)
    [pid] = pool.worker_pids()
    loop = asyncio.get_running_loop()
    with pytest.raises(rtsp.GrabError) as err:
        await pool.grab("rtsp://127.0.12.56:8554/x", loop.time() + rtsp.MIN_GRAB_TIME / 2)
    assert err.value.reason == "timeout"
    assert (pool.killed, pool.spawned, pool.worker_pids()) == (0, 1, [pid])


@pytest.mark.lab
async def test_a_worker_that_died_idle_is_not_handed_out(clean: Lab, pool: Any) -> None:
    """A worker killed while idle (the OOM killer, an operator) costs no camera a check."""
    await pool.start(1)
    [pid] = pool.worker_pids()
    os.kill(pid, signal.SIGKILL)
    await asyncio.sleep(0.3)
    outcome, _ = await grab_with_deadline(clean.camera("cam-d")["rtsp"])
    assert isinstance(outcome, rtsp.Grab), outcome
    assert pid not in pool.worker_pids()


async def test_worker_start_failures_are_grab_errors(pool: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Out of file descriptors or processes: a classified failure, not a prober crash; and a
    warm-up where one worker fails keeps the ones that started."""
    real_exec = asyncio.create_subprocess_exec
    calls = 0

    async def second_fails(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError(errno.EMFILE, "Too many open files")
        return await real_exec(*args, **kwargs)

    monkeypatch.setattr(asyncio, "create_subprocess_exec", second_fails)
    with pytest.raises(rtsp.GrabError) as err:
        await pool.start(2)
    assert err.value.reason == "decoder_crashed"
    assert str(err.value) == "cannot start a grab worker: Too many open files"
    assert len(pool.worker_pids()) == 1  # the one that started serves
    [pid] = pool.worker_pids()
    monkeypatch.setattr(asyncio, "create_subprocess_exec", real_exec)
    await pool.close()
    await asyncio.sleep(0.1)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.lab
async def test_idle_workers_beyond_the_warm_up_count_are_stopped(
        clean: Lab, pool: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A burst of concurrent grabs starts extra workers (≈ 85–90 MB each); once unused for
    IDLE_TTL they are stopped, down to the warm-up count."""
    await pool.start(1)
    cam = clean.camera("cam-d")["rtsp"]
    burst = await asyncio.gather(*(grab_with_deadline(cam) for _ in range(3)))
    assert all(isinstance(o, rtsp.Grab) for o, _ in burst), burst
    extra = pool.worker_pids()
    assert len(extra) == 3  # all kept while they were used recently
    monkeypatch.setattr(rtsp, "IDLE_TTL", 0.3)
    await asyncio.sleep(0.5)
    outcome, _ = await grab_with_deadline(cam)
    assert isinstance(outcome, rtsp.Grab)
    await asyncio.sleep(0.2)  # the background reaper
    assert len(pool.worker_pids()) == 1
    gone = [p for p in extra if p not in pool.worker_pids()]
    assert len(gone) == 2
    for p in gone:
        with pytest.raises(ProcessLookupError):
            os.kill(p, 0)


async def test_an_unusable_uri_from_the_camera_is_a_failed_check(pool: Any) -> None:
    """ONVIF may announce a URI nobody can parse: the check fails as the camera's fault,
    with no credential in what it says, instead of crashing the prober."""
    auth = Credentials(OnvifAuth(type="onvif", username="admin"),
                       {"password": SecretStr("pw-in-uri-77"), "rtsp_password": None})
    target = Target("c", "camera", "127.0.12.57", {"camera": "c"}, auth, {"onvif_port": 9})
    state: dict[str, Any] = {"stream_uri": "rtsp://admin:pw-in-uri-77@[zz]:99999/x"}
    loop = asyncio.get_running_loop()
    result = await rtsp.probe_rtsp(target, rtsp.RtspSettings(), state, loop.time() + 3)
    assert not result.success and result.reason in rtsp.REASON_PROBLEM, result
    assert result.problems["no_stream"] or result.problems["unreachable"]
    assert "pw-in-uri-77" not in repr(result)


async def test_a_reload_never_lowers_the_grab_cap(pool: Any) -> None:
    """Checks of the old config may still run after a reload that lowers the concurrency: the
    cap on concurrent grabs only grows (unused workers stop after IDLE_TTL anyway)."""
    await rtsp.warm_up(workers=0, size=30)
    assert rtsp.get_pool().size == 30
    await rtsp.warm_up(workers=0, size=4)
    assert rtsp.get_pool().size == 30
