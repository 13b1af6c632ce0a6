"""The alert rules: promtool checks them and runs their unit tests (config/prometheus/tests)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PROM = ROOT / "config" / "prometheus"
RULES = PROM / "rules" / "camnet.rules.yml"
UNIT_TESTS = PROM / "tests" / "camnet.test.yml"
GENERATOR = PROM / "tests" / "generate.py"

REQUIRED_ALERTS = {
    "CameraDown",
    "CameraPictureProblem",
    "CameraClockDrift",
    "CameraAuthFailed",
    "APDown",
    "APRebooted",
    "APHighLoss",
    "SiteDown",
    "CamnetNotScraped",
}
VIETNAMESE = re.compile(r"[ạảãàáâậầấẩẫăắằặẳẵđêềếệểễôồốộổỗơờớợởỡưừứựửữìíịỉĩòóọỏõùúụủũỳýỵỷỹ]", re.I)

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")


def alerts() -> list[dict[str, Any]]:
    """Every alerting rule in the rule file."""
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_promtool_check_config_and_rules() -> None:
    res = promtool("check", "config", str(PROM / "prometheus.yml"))
    assert res.returncode == 0, res.stdout + res.stderr
    res = promtool("check", "rules", str(RULES))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_promtool_unit_tests_pass() -> None:
    res = promtool("test", "rules", UNIT_TESTS.name, cwd=UNIT_TESTS.parent)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_unit_tests_fail_when_a_rule_pages_too_early(tmp_path: Path) -> None:
    """The unit tests can fail: CameraDown with `for: 10s` pages on one missed poll."""
    rules = RULES.read_text(encoding="utf-8").replace("        for: 25s", "        for: 10s", 1)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / RULES.name).write_text(rules, encoding="utf-8")
    (tmp_path / "tests").mkdir()
    # Only the scenario that must catch it: the whole file takes promtool ≈ 20 s.
    doc = yaml.safe_load(UNIT_TESTS.read_text(encoding="utf-8"))
    doc["tests"] = [t for t in doc["tests"] if "one missed poll" in t.get("name", "")]
    assert doc["tests"]
    (tmp_path / "tests" / UNIT_TESTS.name).write_text(yaml.safe_dump(doc, allow_unicode=True),
                                                     encoding="utf-8")
    res = promtool("test", "rules", UNIT_TESTS.name, cwd=tmp_path / "tests")
    assert res.returncode != 0
    assert "one missed poll" in res.stdout + res.stderr


def test_generated_unit_tests_are_up_to_date() -> None:
    code = f"import runpy; print(runpy.run_path({str(GENERATOR)!r})['render'](), end='')"
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert res.stdout == UNIT_TESTS.read_text(encoding="utf-8"), "run config/prometheus/tests/generate.py"


def test_every_required_alert_exists() -> None:
    assert {a["alert"] for a in alerts()} >= REQUIRED_ALERTS


@pytest.mark.parametrize("rule", alerts(), ids=lambda r: r["alert"])
def test_alert_has_labels_and_bilingual_annotations(rule: dict[str, Any]) -> None:
    labels = rule.get("labels", {})
    assert labels.get("severity") in ("critical", "warning", "info")
    assert labels.get("team") in ("police", "noc")
    ann = rule.get("annotations", {})
    for key in ("summary", "description", "summary_en", "description_en"):
        assert ann.get(key), f"{rule['alert']} lacks annotation {key}"
    assert VIETNAMESE.search(ann["summary"]) and VIETNAMESE.search(ann["description"])
    assert not VIETNAMESE.search(ann["summary_en"] + ann["description_en"])


def test_every_alert_has_a_firing_and_a_not_firing_unit_test() -> None:
    doc = yaml.safe_load(UNIT_TESTS.read_text(encoding="utf-8"))
    fires: set[str] = set()
    quiet: set[str] = set()
    for test in doc["tests"]:
        for case in test.get("alert_rule_test", []):
            (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
            for exp in case.get("exp_alerts") or []:
                # Every paging alert names where: commune and site, from the data or the rule.
                assert {"commune", "site", "severity", "team"} <= set(exp["exp_labels"])
    names = {a["alert"] for a in alerts()}
    assert names <= fires, f"never tested firing: {names - fires}"
    assert names <= quiet, f"never tested NOT firing: {names - quiet}"
