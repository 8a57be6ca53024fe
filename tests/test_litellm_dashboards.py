"""LiteLLM's own published Grafana dashboards keep working on logmetrics for their request-fed panels.

fixtures/litellm-dashboard-exprs.md is a hand transcription of the PromQL in LiteLLM's dashboards
(BerriAI/litellm, cookbook/litellm_proxy_server/grafana_dashboard/). This module parses it into
concrete expressions (the `0.5|0.95|0.99` shorthand, the "each p50/p95/p99" and "all `...` by
(model)" list rows and `;`-separated items expanded; `$__rate_interval` substituted) and sorts each
into one of two kinds:

- request-fed: every metric it names is a series logmetrics exposes (`EXPOSED_LABELS`, i.e. one of
  logmetrics/families.py's families);
- out of scope: it names a metric a request log cannot feed (budgets, rate limits, in-flight,
  admission, fallbacks, cooldowns, guardrails, images/video, provider cache, MCP, managed files,
  names LiteLLM 1.109.1 does not have, ...). Each such metric must match one of `OUT_OF_SCOPE`'s
  patterns, so an expression only lands here for a stated reason.

Static tests: the parse takes every list item of the file; the request-fed list is not empty and
names every logmetrics family the file mentions; each request-fed expression passes `check_names`.

Real test (marker `real`): a real Prometheus scrapes a real `logmetrics serve` that follows the
real LiteLLM 1.109.1 callback capture (fixtures/sample-logs/litellm-1.109.1-callback/requests.log:
successes, streams, LiteLLM cache miss+hit, deployment and proxy failures), appended to again after
the first scrapes so rate() has data. Every request-fed expression must return a non-NaN value,
except those in `NO_DATA_IN_CAPTURE`, which must return nothing (or only zeros), so that list
cannot go stale.
"""

from __future__ import annotations

import math
import re
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prom import EXPOSED_LABELS, Prometheus, check_names, exporter_process, prometheus_running, promql_names

from logmetrics.families import FAMILIES

ROOT = Path(__file__).resolve().parent.parent
EXPRS_MD = ROOT / "fixtures/litellm-dashboard-exprs.md"
CAPTURE = ROOT / "fixtures/sample-logs/litellm-1.109.1-callback/requests.log"

RATE_INTERVAL = "5s"  # $__rate_interval; Prometheus scrapes every 1 s here, so 5 samples a window
QUANTILES = ("0.5", "0.95", "0.99")

# Metrics of LiteLLM's dashboards that no request log can feed, by pattern, with the reason.
OUT_OF_SCOPE: tuple[tuple[str, str], ...] = (
    (r"litellm_in_flight_requests", "in-flight gauge: live proxy state, not a finished request"),
    (r"litellm_admission_\w+", "admission-control middleware state (not in prometheus.py either)"),
    (r"litellm_overhead_with_guardrails_latency_metric_\w+", "guardrails"),
    (r"litellm_guardrail_\w+", "guardrails"),
    (r"litellm_deployment_cooled_down_total", "router cooldowns"),
    (r"litellm_deployment_(successful|failed)_fallbacks_total", "router fallbacks"),
    (r"litellm_deployment_[rt]pm_limit", "deployment rate limits (config, not requests)"),
    (r"litellm_remaining_(requests|tokens)_metric", "provider rate-limit headers"),
    (r"litellm_remaining_api_key_(requests|tokens)_for_model", "key rate limits"),
    (r"litellm_(api_key|team)_rate_limit_(allowed|used)_metric", "key/team rate limits"),
    (
        r"litellm_(remaining_\w+_budget|\w+_remaining_budget|\w+_max_budget|\w+_budget_remaining_hours)_metric",
        "budgets (database and provider-budget state)",
    ),
    (r"litellm_mcp_\w+", "MCP"),
    (r"litellm_managed_(file|batch)_\w+", "managed files and batches"),
    (r"litellm_remaining_(requests|tokens)", "dashboard_v2 name LiteLLM 1.109.1 does not have (..._metric)"),
    (r"litellm_self_latency_bucket", "old service metric, not in prometheus.py"),
    (r"litellm_total_tokens_total", "old name; 1.109.1 exposes litellm_total_tokens_metric_total"),
)

# Request-fed series the capture never makes non-zero: its mock deployments report
# `prompt_tokens_details: null` and `completion_tokens_details` with `reasoning_tokens: 0` and
# `audio_tokens: null`, so logmetrics (like LiteLLM's own /metrics of the same run,
# litellm-metrics.txt) never creates these series.
NO_DATA_IN_CAPTURE: dict[str, str] = {
    "litellm_input_cached_tokens_metric_total": "no prompt_tokens_details.cached_tokens in the capture",
    "litellm_input_cache_creation_tokens_metric_total": "no cache_creation_input_tokens in the capture",
    "litellm_input_audio_tokens_metric_total": "no prompt_tokens_details.audio_tokens in the capture",
    "litellm_output_audio_tokens_metric_total": "completion_tokens_details.audio_tokens is null in the capture",
    "litellm_output_reasoning_tokens_metric_total": "completion_tokens_details.reasoning_tokens is 0 in the capture",
    "litellm_provider_cache_read_input_tokens_metric_total": "no cache read tokens in the capture",
    "litellm_provider_cache_creation_input_tokens_metric_total": "no cache_creation_input_tokens in the capture",
    "litellm_images_generated_metric_total": "no image generation in the capture",
    "litellm_video_duration_seconds_metric_total": "no video generation in the capture",
}


# ---------------------------------------------------------------------------------------------
# parsing


@dataclass(frozen=True)
class Expr:
    where: str  # "<dashboard file> / <row>"
    expr: str  # concrete PromQL (shorthand expanded, $__rate_interval substituted)


_COMMENT = re.compile(r"\s{2,}(?:\(|<--).*$")  # "   (idem)", "      <-- NOTE: ..."
_PARTIAL = re.compile(r"\((\w+) \.\.\. \)")  # "(litellm_managed_batch_created_total ... )"
_PCT_OF = re.compile(r"p50/p95/p99 of (\w+) by \(le\)")
_LIST_ALL = re.compile(r"\(all `([^`]*)`\)")  # Row "..." (all `sum(rate(X_total[...])) by (model)`)


def _quantiles(bucket: str) -> list[str]:
    return [f"histogram_quantile({q}, sum(rate({bucket}[$__rate_interval])) by (le))" for q in QUANTILES]


def _items(lines: list[str]) -> Iterator[tuple[str, str, str]]:
    """(dashboard, row header, item text) per `- ` list item, continuation lines joined."""
    dashboard = row = ""
    item: str | None = None
    for line in lines:
        if item is not None and line.startswith("  ") and not line.lstrip().startswith("- "):
            item += " " + line.strip()
            continue
        if item is not None:
            yield dashboard, row, item
            item = None
        if line.startswith("## "):
            dashboard, row = line[3:].split()[0], ""
        elif line.startswith("Row "):
            row = line
        elif line.startswith("- "):
            item = line[2:]
    if item is not None:
        yield dashboard, row, item


def parse(text: str) -> list[Expr]:
    out: list[Expr] = []
    for dashboard, row, item in _items(text.splitlines()):
        where = f"{dashboard} / {row.split('(')[0].strip() or '-'}"
        # list rows: each name of an item through the row's template ("X" stands for the name)
        listed = _LIST_ALL.search(row)
        template = listed[1].replace("X_total", "X") if listed else None
        if "(all by (model))" in row:
            template = "sum(rate(X[$__rate_interval])) by (model)"
        exprs: list[str] = []
        for part in (p.strip() for p in _COMMENT.sub("", item).split(";")):
            if m := _PCT_OF.fullmatch(part):
                exprs += _quantiles(m[1])
            elif m := _PARTIAL.fullmatch(part):
                exprs.append(m[1])  # only the metric is transcribed: its name decides the kind
            elif "each p50/p95/p99" in row:
                assert re.fullmatch(r"\w+_bucket", part), f"{where}: {part!r}"
                exprs += _quantiles(part)
            elif template is not None:
                names = [n.strip() for n in part.split(",") if n.strip()]
                assert all(re.fullmatch(r"\w+_total", n) for n in names), f"{where}: {part!r}"
                exprs += [template.replace("X", n) for n in names]
            elif "0.5|0.95|0.99" in part:
                exprs += [part.replace("0.5|0.95|0.99", q) for q in QUANTILES]
            else:
                exprs.append(part)
        out += [Expr(where, e.replace("$__rate_interval", RATE_INTERVAL)) for e in exprs]
    return out


def _balanced(expr: str) -> bool:
    depth = 0
    for ch in expr:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def out_of_scope_reason(metric: str) -> str | None:
    for pattern, reason in OUT_OF_SCOPE:
        if re.fullmatch(pattern, metric):
            return reason
    return None


def request_fed(e: Expr) -> bool:
    return promql_names(e.expr).metrics <= EXPOSED_LABELS.keys()


EXPRS = parse(EXPRS_MD.read_text())
REQUEST_FED = [e for e in EXPRS if request_fed(e)]
OUT = [e for e in EXPRS if not request_fed(e)]
IDS = [f"{i}:{e.expr}" for i, e in enumerate(REQUEST_FED)]


def no_data(e: Expr) -> bool:
    return bool(promql_names(e.expr).metrics & NO_DATA_IN_CAPTURE.keys())


# ---------------------------------------------------------------------------------------------
# static


def test_fixture_is_the_reference_copy() -> None:
    """The repo's copy is what the tests parse; it starts as the reference did."""
    text = EXPRS_MD.read_text()
    assert text.startswith("# PromQL expressions in LiteLLM's published Grafana dashboards")
    assert "dashboard_all_metrics/grafana_dashboard.json" in text


def test_every_item_parses_to_plain_promql() -> None:
    n_items = sum(1 for _ in _items(EXPRS_MD.read_text().splitlines()))
    assert n_items >= 40, n_items  # the file's list items (a continuation line is not an item)
    assert len(EXPRS) > n_items  # the shorthand and list rows expanded
    for e in EXPRS:
        assert not re.search(r"[|$`;]|\.\.\.|<--|p50|p95|p99", e.expr), e
        assert _balanced(e.expr), e
        assert promql_names(e.expr).metrics, e  # every expression names a metric


def test_expansion() -> None:
    exprs = {e.expr for e in EXPRS}
    # the `0.5|0.95|0.99` shorthand, the Latency row, the guardrail line
    buckets = ("litellm_request_queue_time_seconds", "litellm_deployment_latency_per_output_token",
               "litellm_guardrail_latency_seconds")  # fmt: skip
    for q in QUANTILES:
        for bucket in buckets:
            assert f"histogram_quantile({q}, sum(rate({bucket}_bucket[5s])) by (le))" in exprs
    # both list rows, first and last names of each, continuation lines included
    names = ("litellm_spend_metric", "litellm_video_duration_seconds_metric", "litellm_cache_hits_metric",
             "litellm_provider_cache_creation_input_tokens_metric")  # fmt: skip
    for name in names:
        assert f"sum(rate({name}_total[5s])) by (model)" in exprs
    # `;`-separated budget items
    assert "max by (end_user) (litellm_customer_budget_remaining_hours_metric)" in exprs
    assert "min by (api_provider) (litellm_provider_remaining_budget_metric)" in exprs
    assert "sum(increase(litellm_spend_metric_total[30d])) by (hashed_api_key)" in exprs


def test_request_fed_covers_every_family_the_file_names() -> None:
    assert REQUEST_FED
    text = EXPRS_MD.read_text()
    named = set(re.findall(r"\blitellm_\w+", text)) & EXPOSED_LABELS.keys()
    used = {m for e in REQUEST_FED for m in promql_names(e.expr).metrics}
    assert named - used == set(), "a logmetrics series the file names is in no request-fed expression"
    # and at family level: every families.py family the file mentions
    families = {f.name for f in FAMILIES if re.search(rf"\b{f.name}(_total|_bucket|_sum|_count)?\b", text)}
    fed = {f.name for f in FAMILIES for m in used if re.fullmatch(rf"{f.name}(_total|_bucket|_sum|_count)?", m)}
    assert families and families - fed == set()


def test_out_of_scope_only_for_a_stated_reason() -> None:
    assert OUT
    for e in OUT:
        unknown = promql_names(e.expr).metrics - EXPOSED_LABELS.keys()
        assert unknown, e
        for metric in unknown:
            assert out_of_scope_reason(metric), f"{metric} ({e.where}) is neither a logmetrics family nor out of scope"
    # no out-of-scope pattern swallows a series logmetrics exposes
    assert [m for m in EXPOSED_LABELS if out_of_scope_reason(m)] == []


def test_doc_names_every_litellm_family_logmetrics_does_not_expose() -> None:
    """docs/prometheus-grafana.md says, for each family of LiteLLM's own /metrics (the live capture
    beside the records) that logmetrics lacks, why: a panel naming one finds nothing."""
    doc = (ROOT / "docs/prometheus-grafana.md").read_text()
    section = doc.split("## LiteLLM families logmetrics does not expose", 1)[1].split("\n## ", 1)[0]
    patterns = []
    for name in re.findall(r"`(litellm_[\w*{},]+)`", section):
        name = re.sub(r"\{([\w,]+)\}", lambda m: "(" + m.group(1).replace(",", "|") + ")", name)
        patterns.append(re.compile(name.replace("*", r"\w*") + "(_total)?"))
    metrics = (CAPTURE.parent / "litellm-metrics.txt").read_text()
    theirs = {line.split()[2] for line in metrics.splitlines() if line.startswith("# TYPE litellm_")}
    ours = {f.name for f in FAMILIES} | {f.name + "_total" for f in FAMILIES}
    missing = sorted(n for n in theirs - ours if not n.endswith("_created"))
    assert missing, "the capture has families logmetrics does not expose"
    unexplained = [n for n in missing if not any(p.fullmatch(n) for p in patterns)]
    assert not unexplained, unexplained


def test_no_data_list_is_request_fed() -> None:
    for metric in NO_DATA_IN_CAPTURE:
        assert metric in EXPOSED_LABELS, metric
        assert any(metric in promql_names(e.expr).metrics for e in REQUEST_FED), metric


@pytest.mark.parametrize("e", REQUEST_FED, ids=IDS)
def test_request_fed_names_only_what_logmetrics_exposes(e: Expr) -> None:
    assert check_names(e.expr) == []


# ---------------------------------------------------------------------------------------------
# real


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """A real Prometheus scraping a real `logmetrics serve` that follows a copy of the callback
    capture; after the first scrapes the capture is appended again every half second."""
    tmp = tmp_path_factory.mktemp("litellm-dashboards")
    log = tmp / "requests.log"
    run = CAPTURE.read_bytes()
    assert run.endswith(b"\n")
    log.write_bytes(run)
    argv = [sys.executable, "-m", "logmetrics", "serve", str(log), "--listen", "{listen}",
            "--state-dir", str(tmp / "state"), "--no-table"]  # fmt: skip
    stop = threading.Event()

    def append() -> None:
        with log.open("ab") as f:
            while not stop.wait(0.5):
                f.write(run)
                f.flush()

    writer = threading.Thread(target=append, daemon=True)
    with exporter_process(argv, tmp / "serve") as address, prometheus_running(tmp, {"logmetrics": [address]}) as p:
        p.wait_for_scrapes("logmetrics", 2)
        writer.start()
        try:
            p.wait_for(f"sum(rate(litellm_cache_hits_metric_total[{RATE_INTERVAL}])) > 0")
            p.wait_for_scrapes("logmetrics", 5)
            yield p
        finally:
            stop.set()
            writer.join(5)


@pytest.mark.real
@pytest.mark.parametrize("e", REQUEST_FED, ids=IDS)
def test_request_fed_expression_returns_data(prom: Prometheus, e: Expr) -> None:
    samples = prom.query(e.expr)
    if no_data(e):
        assert all(s.value == 0 for s in samples), f"{e.expr} has data now: drop it from NO_DATA_IN_CAPTURE"
        return
    assert samples, f"no data for {e.expr}"
    assert any(not math.isnan(s.value) for s in samples), f"only NaN for {e.expr}"
