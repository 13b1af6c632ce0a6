"""Fault -> police webhook latency with the DEFAULT check intervals, and the lossy-line scenario.

Runs the lab and the daemon on the default config (only the daemon's listen address moves to
this bench's loopback address), real Prometheus and Alertmanager with the committed config
(receivers pointed at a webhook sink), then:

1. Latency: in rounds of three (one camera per commune, so each lands in a fresh Alertmanager
   group, as a first fault does), set `offline` on a camera at a random moment and time until
   its commune's police receiver gets the firing CameraDown; then `ok`, and wait until the
   resolved notification went out and the group is gone before the next round. Trials use
   distinct cameras. Prints p50/p95/max and where the time goes (Prometheus activeAt).
2. Loss: during the whole run, the APs of every site not used by a trial drop 30 % of SNMP
   requests (`loss=0.3`); at the end, no alert may have fired for them, and none may have
   reached a receiver. The run lasts at least --loss-minutes.

Only Alertmanager's group_interval is shortened (2 min -> 10 s) so that the resolved
notification of a round comes quickly; it does not touch the first notification of a group
(group_wait 10 s, as committed). The lab's fixed addresses mean nothing else may run a lab
meanwhile (not the test suite, not `make demo`).

    python3 bench/alert_latency.py --trials 12 --loss-minutes 10 [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lab.services import AlertingStack, alerting_stack  # noqa: E402
from lab.webhook_sink import Notification  # noqa: E402
from monitor.demo import child, wait_until  # noqa: E402

HOST = "127.0.14.20"
LAB_CONTROL = "127.0.0.1:9839"
COMMUNES = ("daron", "tutra", "lacxuan")
CAMERAS_PER_COMMUNE = 8
AP_COUNTS = {"daron": 11, "tutra": 14, "lacxuan": 12}
NOTIFY_TIMEOUT = 300.0


def lab_request(path: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        f"http://{LAB_CONTROL}{path}", data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def fault(device: str, state: str) -> None:
    lab_request("/fault", {"device": device, "state": state})


def lab_ready() -> bool:
    try:
        return bool(lab_request("/status").get("ready"))
    except (OSError, ValueError):
        return False


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return resp.status == 200
    except OSError:
        return False


def value(stack: AlertingStack, expr: str) -> float | None:
    res = stack.prometheus.query(expr)
    return float(res[0]["value"][1]) if res else None


def poll(what: str, cond: Any, timeout: float, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def bench_config(tmp: Path, listen: str) -> Path:
    """config/camnet.yaml unchanged but for the daemon's listen address."""
    doc = yaml.safe_load((ROOT / "config" / "camnet.yaml").read_text(encoding="utf-8"))
    doc["server"]["listen"] = listen
    (tmp / "secrets").symlink_to(ROOT / "config" / "secrets")
    path = tmp / "camnet.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def rfc3339(ts: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def paged(cam: str, commune: str, status: str) -> Callable[[Notification], bool]:
    """Matches a notification to the commune's police carrying this camera's alert in this status."""

    def match(n: Notification) -> bool:
        return n.receiver == f"police-{commune}" and any(
            a["labels"].get("camera") == cam and a["status"] == status for a in n.alerts
        )

    return match


def trial_round(
    stack: AlertingStack, cams: list[tuple[str, str]], rnd: random.Random
) -> list[dict[str, Any]]:
    """Fault these cameras (one per commune) at random moments; time each until its police page."""
    for cam, _ in cams:
        poll(f"{cam} up", lambda c=cam: value(stack, f'camnet_camera_up{{camera="{c}"}}') == 1.0, 300)
        poll(f"no alert on {cam}", lambda c=cam: not stack.prometheus.query(f'ALERTS{{camera="{c}"}}'), 300)
    results: dict[str, dict[str, Any]] = {}
    # Random phase against the 15 s check schedule and the 5 s scrape/evaluation ticks.
    offsets = sorted((rnd.uniform(0, 15), cam, commune) for cam, commune in cams)
    start = time.monotonic()
    for offset, cam, commune in offsets:
        time.sleep(max(0.0, start + offset - time.monotonic()))
        t0 = time.time()
        fault(cam, "offline")
        results[cam] = {"camera": cam, "commune": commune, "fault_at": t0}
    for cam, commune in cams:
        r = results[cam]
        note = stack.sink.wait_for(paged(cam, commune, "firing"), timeout=NOTIFY_TIMEOUT, since=r["fault_at"])
        if note is None:
            raise TimeoutError(f"no police notification for {cam}")
        r["latency_s"] = note.received - r["fault_at"]
        active = [a for a in stack.prometheus.alerts() if a["labels"].get("camera") == cam]
        if active:
            r["prometheus_active_after_s"] = rfc3339(active[0]["activeAt"]) - r["fault_at"]
    for cam, _ in cams:
        fault(cam, "ok")
    for cam, commune in cams:
        stack.sink.wait_for(
            paged(cam, commune, "resolved"), timeout=NOTIFY_TIMEOUT, since=results[cam]["fault_at"]
        )
    time.sleep(35)  # Alertmanager drops an emptied group at its next maintenance (every 30 s)
    return list(results.values())


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=12, help="camera faults to time (>= 10)")
    parser.add_argument(
        "--loss-minutes", type=float, default=10.0, help="minimum duration of the loss scenario"
    )
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--json", type=Path, default=None, help="write every trial here")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    rnd = random.Random(args.seed)
    per_commune = -(-args.trials // len(COMMUNES))
    if per_commune > CAMERAS_PER_COMMUNE:
        parser.error(f"at most {CAMERAS_PER_COMMUNE * len(COMMUNES)} trials (distinct cameras)")
    picks = {c: rnd.sample(range(1, CAMERAS_PER_COMMUNE + 1), per_commune) for c in COMMUNES}
    rounds = [[(f"cam-{c}-{picks[c][i]:02d}", c) for c in COMMUNES] for i in range(per_commune)]
    trial_sites = {f"{c}-{picks[c][i]:02d}" for c in COMMUNES for i in range(per_commune)}
    lossy = [
        f"ap-{c}-{i:02d}"
        for c, n in AP_COUNTS.items()
        for i in range(1, n + 1)
        if f"{c}-{i:02d}" not in trial_sites
    ]
    trials: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack_:
        tmp = args.workdir or Path(stack_.enter_context(tempfile.TemporaryDirectory(prefix="camnet-bench-")))
        tmp.mkdir(parents=True, exist_ok=True)
        listen = f"{HOST}:19830"
        config = bench_config(tmp, listen)
        py = [sys.executable, "-m", "monitor"]
        print("starting the lab...", flush=True)
        lab = stack_.enter_context(
            child(
                "lab",
                [*py, "lab", "--control", LAB_CONTROL, "--state-dir", str(tmp / "lab")],
                tmp / "lab.log",
            )
        )
        wait_until("the lab", lab, tmp / "lab.log", lab_ready, 600)
        stack_.callback(lambda: lab_ready() and lab_request("/fault", {"device": "all", "state": "ok"}))
        daemon = stack_.enter_context(
            child("camnet", [*py, "run", "--config", str(config)], tmp / "camnet.log")
        )
        wait_until("camnet", daemon, tmp / "camnet.log", lambda: http_ok(f"http://{listen}/healthz"), 60)
        stack = stack_.enter_context(
            alerting_stack(
                tmp / "alerting",
                listen,
                host=HOST,
                prometheus_port=19090,
                alertmanager_port=19093,
                sink_port=19099,
                route_overrides={"group_interval": "10s"},
            )
        )
        print("waiting for every device to be up and no alert to fire...", flush=True)
        poll("24 cameras up", lambda: value(stack, "count(camnet_camera_up == 1)") == 24.0, 300)
        poll("37 APs up", lambda: value(stack, "count(camnet_ap_up == 1)") == 37.0, 300)
        poll("no alert", lambda: not stack.prometheus.query("ALERTS"), 300)
        loss_start = time.time()
        for ap in lossy:
            fault(ap, "loss=0.3")
        print(f"loss=0.3 on {len(lossy)} APs: {', '.join(lossy)}", flush=True)
        for i, cams in enumerate(rounds):
            for r in trial_round(stack, cams[: args.trials - len(trials)], rnd):
                trials.append(r)
                print(
                    f"round {i + 1}: {r['camera']}: {r['latency_s']:.1f} s "
                    f"(Prometheus pending after {r.get('prometheus_active_after_s', float('nan')):.1f} s)",
                    flush=True,
                )
            if len(trials) >= args.trials:
                break
        remaining = loss_start + args.loss_minutes * 60 - time.time()
        if remaining > 0:
            print(f"loss scenario: {remaining:.0f} s more...", flush=True)
            time.sleep(remaining)
        loss_seconds = time.time() - loss_start
        window = f"{int(loss_seconds) + 10}s"
        lossy_re = "|".join(lossy)
        fired = stack.prometheus.query(
            f'max_over_time(ALERTS{{alertstate="firing", ap=~"{lossy_re}"}}[{window}])'
        )
        pending = stack.prometheus.query(
            f'max_over_time(ALERTS{{alertstate="pending", ap=~"{lossy_re}"}}[{window}])'
        )
        site_down = stack.prometheus.query(f'max_over_time(ALERTS{{alertname="SiteDown"}}[{window}])')
        sent = [
            n
            for n in stack.sink.snapshot()
            if n.received >= loss_start
            for a in n.alerts
            if a["labels"].get("ap") in lossy or a["labels"].get("alertname") == "SiteDown"
        ]
        snmp = 'kind="ap", check="snmp"'
        failed = (
            value(stack, f"sum(increase(camnet_check_errors_total{{{snmp}}}[{window}])) or vector(0)") or 0.0
        )
        runs = value(stack, f"sum(increase(camnet_check_runs_total{{{snmp}}}[{window}]))") or 0.0
    lat = [t["latency_s"] for t in trials]
    summary = {
        "trials": len(lat),
        "p50_s": round(statistics.median(lat), 1),
        "p95_s": round(percentile(lat, 95), 1),
        "min_s": round(min(lat), 1),
        "max_s": round(max(lat), 1),
        "mean_s": round(statistics.fmean(lat), 1),
        "loss_minutes": round(loss_seconds / 60, 1),
        "lossy_aps": len(lossy),
        "loss_alerts_firing": len(fired) + len(site_down),
        "loss_alerts_pending": len(pending),
        "loss_notifications": len(sent),
        "snmp_checks_during_loss": int(runs),
        "snmp_checks_failed_during_loss": int(failed),
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "trials": trials}, indent=2) + "\n")
    ok = summary["p95_s"] <= 60 and summary["loss_alerts_firing"] == 0 and summary["loss_notifications"] == 0
    print("PASS" if ok else "FAIL: target is p95 <= 60 s and no alert in the loss scenario")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
