"""alerts/logmetrics.rules.yml: promtool's checks and unit tests, and a real Prometheus loading it.

- `promtool check rules` accepts the file; `promtool test rules` passes every `alerts/*test*.yml`.
- Every alert has a unit-test case where it fires and one where it does not.
- Each documented threshold (`# threshold:` comments) is pinned by those tests: raising it 1000-fold
  makes a firing case fail, setting it to 0 makes a not-firing case fail.
- (real) Prometheus loads the rules, evaluates them without errors against a scraped exposition,
  and every expression only names metrics and labels logmetrics exposes.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from prom import ExpositionServer, check_names, grow_counters, poll, prometheus_running, promtool

ALERTS = Path(__file__).resolve().parent.parent / "alerts"
RULES = ALERTS / "logmetrics.rules.yml"
SAMPLE = Path(__file__).resolve().parent.parent / "fixtures/sample-logs/litellm-1.109.1/metrics-runA.txt"
NEVER = "0001-01-01T00:00:00Z"  # a rule's lastEvaluation before its first evaluation
THRESHOLD_RE = re.compile(r"(?P<op>>=?) (?P<num>[0-9.]+)(?P<note>\s+# threshold: .*)$", re.M)


def unit_test_files() -> list[Path]:
    return sorted(p for p in ALERTS.glob("*.yml") if "test" in p.name)


def alert_names() -> list[str]:
    return re.findall(r"^\s*- alert: (\w+)", RULES.read_text(), re.M)


@pytest.mark.real
def test_promtool_check_rules() -> None:
    done = promtool("check", "rules", RULES)
    assert done.returncode == 0, done.stdout
    assert f"SUCCESS: {len(alert_names())} rules found" in done.stdout


@pytest.mark.real
def test_promtool_unit_tests_pass() -> None:
    files = unit_test_files()
    assert files, "no alerts/*test*.yml"
    done = promtool("test", "rules", *files)
    assert done.returncode == 0, done.stdout
    assert "FAILED" not in done.stdout


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in unit_test_files():
        # `alertname: X` is followed by its `exp_alerts:`, either `[]` or a list of alerts
        for name, exp in re.findall(r"alertname: (\w+)\s*\n\s*exp_alerts:(.*)", path.read_text()):
            (quiet if exp.strip() == "[]" else firing).add(name)
    names = set(alert_names())
    assert len(names) >= 10
    assert names - firing == set(), "alerts never tested firing"
    assert names - quiet == set(), "alerts never tested not firing"
    assert (firing | quiet) - names == set(), "tests of alerts that do not exist"


def thresholds() -> list[tuple[str, int]]:
    text = RULES.read_text()
    return [(m["note"].split("# threshold: ")[1], m.start("num")) for m in THRESHOLD_RE.finditer(text)]


@pytest.mark.real
@pytest.mark.parametrize(("note", "at"), thresholds(), ids=[note for note, _ in thresholds()])
@pytest.mark.parametrize("change", ["raised", "zeroed"])
def test_unit_tests_pin_each_threshold(tmp_path: Path, note: str, at: int, change: str) -> None:
    text = RULES.read_text()
    num = re.match(r"[0-9.]+", text[at:])
    assert num is not None
    new = repr(float(num.group()) * 1000) if change == "raised" else "0"
    (tmp_path / RULES.name).write_text(text[:at] + new + text[num.end() + at :])
    for path in unit_test_files():
        shutil.copy(path, tmp_path / path.name)
    done = promtool("test", "rules", *(tmp_path / p.name for p in unit_test_files()))
    assert done.returncode != 0, f"threshold {note!r} {change} and every unit test still passes"
    assert "FAILED" in done.stdout


@pytest.mark.real
def test_prometheus_loads_and_evaluates_the_rules(tmp_path: Path) -> None:
    exposition = SAMPLE.read_text()
    with ExpositionServer(lambda n: grow_counters(exposition, n)) as stub:
        targets = {"logmetrics": [stub.address]}
        with prometheus_running(tmp_path, targets, rule_files=[RULES]) as prom:
            prom.wait_for_scrapes("logmetrics", 2)
            rules = poll(
                prom.rules,
                lambda rs: (
                    len(rs) == len(alert_names())  # type: ignore[arg-type]
                    and all(r["lastEvaluation"] != NEVER for r in rs)
                ),  # type: ignore[union-attr]
                timeout=15,
                what="every rule evaluated once",
            )
            assert isinstance(rules, list)
            for rule in rules:
                assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"
                assert check_names(rule["query"]) == [], rule["name"]
            # the sample has failures on deployments whose state is 1: nothing pending for long
            # enough to fire in a few seconds, but the rules see the data
            assert prom.value('up{job="logmetrics"}') == 1.0
