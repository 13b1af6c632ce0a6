"""docs/metrics.md lists every metric camnet can export (the names are a contract)."""

from __future__ import annotations

from pathlib import Path

from monitor.daemon import Daemon
from monitor.exporter import OWN_METRICS
from probes import METRICS

DOC = Path(__file__).resolve().parent.parent / "docs" / "metrics.md"


def test_every_metric_is_documented(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path / "unused.yaml")
    own = {m.name + ("_total" if m.type == "counter" else "") for m in daemon.registry.collect()}
    names = set(METRICS) | set(OWN_METRICS) | own
    assert "camnet_scheduler_lag_seconds" in names and "camnet_ap_up" in names
    text = DOC.read_text()
    missing = sorted(n for n in names if f"`{n}`" not in text)
    assert not missing, f"not in docs/metrics.md: {missing}"
