"""deploy/prometheus/: the alert rules parse, fire on the series their promtool tests write (and stay quiet on the
ones that must not page), and name only metrics the service exports."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from serving.metrics import CONDITIONAL_METRIC_NAMES, METRIC_NAMES

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = RULES_DIR / "imgserve-alerts.yml"
RULE_TESTS = RULES_DIR / "imgserve-alerts.test.yml"
# Not imgserve's own: Prometheus writes `up` for every scrape target.
PROMETHEUS_SERIES = {"up"}


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing in CI: `make system-deps` installs Debian's prometheus package")
        pytest.skip("promtool is not installed (Debian package prometheus; `make system-deps` installs it)")
    return path


def test_rules_are_valid() -> None:
    out = subprocess.run([_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 7 rules found" in out.stdout


def test_rules_fire_on_the_test_series() -> None:
    out = subprocess.run(
        [_promtool(), "test", "rules", RULE_TESTS.name], cwd=RULES_DIR, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_alert_has_a_test() -> None:
    rules = yaml.safe_load(RULES.read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    firing = {
        case["alertname"] for t in tests for case in t.get("alert_rule_test", []) if case.get("exp_alerts")
    }
    assert alerts == firing, f"alerts without a firing test: {sorted(alerts - firing)}"


def _exported() -> set[str]:
    names = set(METRIC_NAMES) | set(CONDITIONAL_METRIC_NAMES)
    for name in METRIC_NAMES:  # histograms' series as Prometheus stores them
        names |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
    return names


def test_rules_name_only_exported_metrics() -> None:
    rules = yaml.safe_load(RULES.read_text())
    used = {
        m for g in rules["groups"] for r in g["rules"] for m in re.findall(r"\b(imgserve_\w+|up)\b(?=\s*[{\[)])", r["expr"])
    }
    assert used, "no metric names found in the rules"
    assert used - PROMETHEUS_SERIES <= _exported(), f"not exported: {sorted(used - PROMETHEUS_SERIES - _exported())}"
