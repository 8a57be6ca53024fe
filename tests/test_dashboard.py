"""dashboards/logmetrics-litellm.json: an importable Grafana dashboard over what logmetrics exposes.

Static checks: the JSON loads and has the shape Grafana 10+ imports (a `datasource` variable every
panel uses, a `model` variable from label_values, unique ids, no overlapping panels); every
target's PromQL names only metrics logmetrics exposes (families.py + its self-metrics + `up`) and
only their labels; legends only use labels the query keeps.

Real (marker `real`): a real Prometheus scrapes, from a stdlib stub whose counters grow with every
scrape (standing in for `logmetrics serve`), either the real LiteLLM 1.109.1 exposition
(fixtures/sample-logs/litellm-1.109.1/metrics-runA.txt) or what `logmetrics replay --metrics-out`
makes of the same run's records, plus a block of logmetrics self-metrics; and a real
`logmetrics serve` following those records (appended to while the tests run). Every panel's query,
with Grafana's variables substituted, must return data from all three.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prom import (
    EXPOSED_LABELS,
    ExpositionServer,
    Prometheus,
    check_names,
    exporter_process,
    grow_counters,
    prometheus_running,
    promql_names,
)

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "dashboards/logmetrics-litellm.json"
SAMPLE = ROOT / "fixtures/sample-logs/litellm-1.109.1/metrics-runA.txt"
RECORDS = ROOT / "fixtures/sample-logs/litellm-1.109.1/requests-runA.jsonl"  # the same run, as records
PROXY_STDOUT = ROOT / "fixtures/sample-logs/litellm-1.109.1/proxy-stdout.log"  # the proxy's own JSON log lines

# Grafana's variables as the real test substitutes them (1 s scrapes: 5 s windows hold 5 samples).
SUBSTITUTIONS = {
    "$__rate_interval": "5s",
    "$__interval": "1s",
    "$__range": "1m",
    "${model}": ".*",
    "$model": ".*",
    "${instance}": ".*",
    "$instance": ".*",
}

# logmetrics' self-metrics, as `serve` will expose them (stand-in values; counters grow per scrape).
SELF_METRICS_STUB = """\
# TYPE logmetrics_records_read_total counter
logmetrics_records_read_total 31.0
# TYPE logmetrics_records_skipped_total counter
logmetrics_records_skipped_total{reason="not_json"} 2.0
logmetrics_records_skipped_total{reason="filtered"} 0.0
# TYPE logmetrics_http_access_lines_total counter
logmetrics_http_access_lines_total{route="/v1/chat/completions",status="200"} 21.0
logmetrics_http_access_lines_total{route="/v1/chat/completions",status="429"} 3.0
# TYPE logmetrics_log_lines_total counter
logmetrics_log_lines_total{level="INFO"} 40.0
logmetrics_log_lines_total{level="ERROR"} 7.0
# TYPE logmetrics_bytes_read_total counter
logmetrics_bytes_read_total{source="/var/log/litellm/proxy.log"} 409600.0
# TYPE logmetrics_rotations_total counter
logmetrics_rotations_total{source="/var/log/litellm/proxy.log"} 1.0
# TYPE logmetrics_truncations_total counter
logmetrics_truncations_total{source="/var/log/litellm/proxy.log"} 0.0
# TYPE logmetrics_lag_bytes gauge
logmetrics_lag_bytes{source="/var/log/litellm/proxy.log"} 0.0
# TYPE logmetrics_lag_seconds gauge
logmetrics_lag_seconds 1.5
# TYPE logmetrics_last_record_timestamp_seconds gauge
logmetrics_last_record_timestamp_seconds 1.7953e+09
# TYPE logmetrics_state_writes_total counter
logmetrics_state_writes_total 3.0
# TYPE logmetrics_state_write_failures_total counter
logmetrics_state_write_failures_total 0.0
# TYPE logmetrics_journalctl_restarts_total counter
logmetrics_journalctl_restarts_total 0.0
# TYPE logmetrics_series_dropped_total counter
logmetrics_series_dropped_total{family="litellm_spend_metric"} 0.0
"""


def load() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows' collapsed children included (rows themselves left out)."""
    out = []
    for p in dashboard["panels"]:
        if p["type"] == "row":
            out += p.get("panels", [])
        else:
            out.append(p)
    return out


def targets() -> list[tuple[str, dict[str, Any]]]:
    return [(f"{p['title']}:{t['refId']}", t) for p in panels(load()) for t in p["targets"]]


def substitute(expr: str) -> str:
    for var, value in SUBSTITUTIONS.items():
        expr = expr.replace(var, value)
    assert "$" not in expr, f"unsubstituted Grafana variable in {expr}"
    return expr


def legend_labels(target: dict[str, Any]) -> set[str]:
    return set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))


TARGETS = targets()
IDS = [name for name, _ in TARGETS]


# ---------------------------------------------------------------------------------------------
# static


def test_dashboard_shape() -> None:
    d = load()
    assert d["uid"] and d["title"] and d["schemaVersion"] >= 36  # Grafana 10 writes 38/39
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    model = variables["model"]
    assert model["type"] == "query" and model["definition"].startswith("label_values(")
    assert model["includeAll"] and model["allValue"] == ".*"
    ids = [p["id"] for p in d["panels"]] + [c["id"] for p in d["panels"] for c in p.get("panels", [])]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for p in panels(d):
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", p["title"]
            assert t["expr"].strip(), p["title"]
        assert p.get("description"), f"{p['title']}: say what the panel shows"


def test_panels_do_not_overlap() -> None:
    cells: dict[tuple[int, int], str] = {}
    for p in load()["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = p["title"]


@pytest.mark.parametrize(("name", "target"), TARGETS, ids=IDS)
def test_target_names_only_what_logmetrics_exposes(name: str, target: dict[str, Any]) -> None:
    assert check_names(substitute(target["expr"])) == []


@pytest.mark.parametrize(("name", "target"), TARGETS, ids=IDS)
def test_legend_uses_labels_the_query_keeps(name: str, target: dict[str, Any]) -> None:
    names = promql_names(substitute(target["expr"]))
    if names.groupings:
        kept = {label for labels, _ in names.groupings for label in labels}
    else:
        kept = {label for m in names.metrics for label in EXPOSED_LABELS[m]}
    assert legend_labels(target) <= kept


def test_variables_use_exposed_labels() -> None:
    for var in load()["templating"]["list"]:
        if var["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", var["definition"])
        assert m, var["definition"]
        assert m[2] in EXPOSED_LABELS[m[1]], var["definition"]
        assert var["query"]["query"] == var["definition"]


def test_dashboard_covers_the_issue_list() -> None:
    used = {m for _, t in TARGETS for m in promql_names(substitute(t["expr"])).metrics}
    wanted = {
        "litellm_proxy_total_requests_metric_total",  # requests, error rate, status codes
        "litellm_proxy_failed_requests_metric_total",  # exception classes
        "litellm_request_total_latency_metric_bucket",  # p50/p95/p99
        "litellm_llm_api_time_to_first_token_metric_bucket",  # TTFT
        "litellm_input_tokens_metric_total",
        "litellm_output_tokens_metric_total",
        "litellm_spend_metric_total",
        "litellm_deployment_state",
        "litellm_deployment_failure_responses_total",
        "logmetrics_lag_seconds",
        "logmetrics_lag_bytes",
        "logmetrics_records_skipped_total",
        "logmetrics_series_dropped_total",
        "up",
    }
    assert wanted - used == set()
    exprs = " ".join(t["expr"] for _, t in TARGETS)
    for grouping in ("requested_model", "hashed_api_key", "team", "status_code", "exception_class"):
        assert re.search(rf"by \([^)]*\b{grouping}\b", exprs), grouping


# ---------------------------------------------------------------------------------------------
# real


def replay_exposition(tmp_path: Path) -> str:
    """What logmetrics itself exposes after reading the real run-A records (`replay --metrics-out`)."""
    out = tmp_path / "final.prom"
    done = subprocess.run(
        [sys.executable, "-m", "logmetrics", "replay", str(RECORDS), "--metrics-out", str(out), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return out.read_text()


def metric_names(exposition: str) -> set[str]:
    return {m[1] for m in re.finditer(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", exposition, re.M)}


def without_metrics(exposition: str, names: set[str]) -> str:
    """`exposition` less the samples (and TYPE lines) of `names`."""
    keep = []
    for line in exposition.splitlines():
        name = line.split()[2] if line.startswith("# TYPE") else re.split(r"[{ ]", line, maxsplit=1)[0]
        if name not in names:
            keep.append(line)
    return "\n".join(keep) + "\n"


@pytest.fixture(scope="module", params=["litellm-1.109.1-metrics", "logmetrics-replay", "logmetrics-serve"])
def prom(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Prometheus:  # type: ignore[misc]
    """A real Prometheus that has scraped job `logmetrics` 5 times, serving either LiteLLM's own
    /metrics from run A or `logmetrics replay --metrics-out` of the same run's records; both with
    the self-metrics stub filling in what is not there (replay has no lag, bytes or rotations).
    Or a real `logmetrics serve` following a file of run A's records, appended to again every
    half second after the first scrapes (so rate() over 5 s has data while the tests run)."""
    tmp = tmp_path_factory.mktemp("prom")
    if request.param == "logmetrics-serve":
        yield from serve_scraped(tmp)
        return
    base = SAMPLE.read_text() if request.param.startswith("litellm") else replay_exposition(tmp)
    exposition = base + without_metrics(SELF_METRICS_STUB, metric_names(base))
    with ExpositionServer(lambda n: grow_counters(exposition, n)) as stub:
        with prometheus_running(tmp, {"logmetrics": [stub.address]}) as p:
            p.wait_for_scrapes("logmetrics", 5)
            yield p


def serve_scraped(tmp: Path) -> Iterator[Prometheus]:
    """`serve` follows run A's records and the proxy's JSON stdout (access and log lines) in one
    file; each append adds the run again and one request with an API key not seen before, which
    --max-series 7 (run A's label sets) folds into overflow: logmetrics_series_dropped_total grows."""
    log = tmp / "requests.log"
    run = RECORDS.read_bytes() + PROXY_STDOUT.read_bytes()
    first = RECORDS.read_bytes().split(b"\n", 1)[0]
    unseen = first.replace(b'"user_api_key_hash":"litellm_proxy_master_key"', b'"user_api_key_hash":"unseen"', 1)
    assert unseen != first
    log.write_bytes(run)
    argv = [sys.executable, "-m", "logmetrics", "serve", str(log), "--listen", "{listen}",
            "--state-dir", str(tmp / "state"), "--max-series", "7", "--no-table"]  # fmt: skip
    stop = threading.Event()

    def append() -> None:
        with log.open("ab") as f:
            while not stop.wait(0.5):
                f.write(run + unseen + b"\n")
                f.flush()

    writer = threading.Thread(target=append, daemon=True)
    with exporter_process(argv, tmp / "serve") as address, prometheus_running(tmp, {"logmetrics": [address]}) as p:
        p.wait_for_scrapes("logmetrics", 2)
        writer.start()
        try:
            p.wait_for("sum(rate(litellm_proxy_total_requests_metric_total[5s])) > 0")
            p.wait_for_scrapes("logmetrics", 5)
            yield p
        finally:
            stop.set()
            writer.join(5)


@pytest.mark.real
@pytest.mark.parametrize(("name", "target"), TARGETS, ids=IDS)
def test_panel_query_returns_data(prom: Prometheus, name: str, target: dict[str, Any]) -> None:
    expr = substitute(target["expr"])
    samples = prom.query(expr)
    assert samples, f"no data for {expr}"
    assert any(not math.isnan(s.value) for s in samples), f"only NaN for {expr}"
    # a label whose value is "" is absent from a result (Prometheus drops empty labels), so each
    # legend label need only show up somewhere
    missing = legend_labels(target) - {label for s in samples for label in s.labels}
    assert not missing, f"legend labels {missing} in no result of {expr}"


@pytest.mark.real
def test_variable_queries_return_values(prom: Prometheus) -> None:
    for var in load()["templating"]["list"]:
        if var["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", var["definition"])
        assert m is not None
        values = prom.label_values(m[2], match=m[1])
        assert values, var["definition"]
        if m[2] == "requested_model":
            assert {"gpt-4o-mini", "claude-haiku", "rate-limited", "broken"} <= set(values)
