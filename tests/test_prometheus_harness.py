"""The real-Prometheus harness (tests/prom.py) against a stdlib stand-in exporter.

Until `logmetrics serve` exists, a tiny exposition served by `http.server` plays logmetrics: a real
Prometheus scrapes it every second, and the queries below must see what it served. The backfill
test writes an OpenMetrics file with three-day-old samples, turns it into TSDB blocks with
`promtool tsdb create-blocks-from openmetrics` and queries them at their historical times.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from prom import (
    EXPOSED_LABELS,
    ExpositionServer,
    Prometheus,
    backfill,
    check_names,
    exporter_process,
    free_port,
    grow_counters,
    poll,
    prometheus_running,
    promql_names,
    promtool,
)

STUB = """\
# HELP logmetrics_records_read_total Records read.
# TYPE logmetrics_records_read_total counter
logmetrics_records_read_total 10.0
# HELP logmetrics_lag_seconds Now minus the newest record's time.
# TYPE logmetrics_lag_seconds gauge
logmetrics_lag_seconds 2.5
"""


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Prometheus, ExpositionServer]:  # type: ignore[misc]
    """Prometheus scraping the stub as job `logmetrics`, and a dead address as job `gone`."""
    with ExpositionServer(lambda n: grow_counters(STUB, n)) as stub:
        targets = {"logmetrics": [stub.address], "gone": [f"127.0.0.1:{free_port()}"]}
        with prometheus_running(tmp_path_factory.mktemp("prom"), targets) as prom:
            prom.wait_for_scrapes("logmetrics", 3)
            yield prom, stub


@pytest.mark.real
def test_scrapes_the_stub_and_reads_back_what_it_served(scraped: tuple[Prometheus, ExpositionServer]) -> None:
    prom, stub = scraped
    assert prom.value('up{job="logmetrics"}') == 1.0
    assert prom.value('logmetrics_lag_seconds{job="logmetrics"}') == 2.5
    # the counter is 10 * (scrape number): whatever Prometheus holds is one of the values served
    latest = prom.value("logmetrics_records_read_total")
    assert latest is not None and latest % 10 == 0 and 10 <= latest <= 10 * stub.scrapes
    # ~10 per second: rate() sees the counter grow
    rate = prom.wait_for("rate(logmetrics_records_read_total[5s])", lambda r: bool(r) and r[0].value > 0)
    assert 2 < rate[0].value < 50
    assert {t["labels"]["job"] for t in prom.targets()} == {"logmetrics", "gone"}  # type: ignore[index]


@pytest.mark.real
def test_a_dead_target_is_down(scraped: tuple[Prometheus, ExpositionServer]) -> None:
    prom, _ = scraped
    down = prom.wait_for('up{job="gone"} == 0')
    assert [s.value for s in down] == [0.0]


@pytest.mark.real
def test_range_query_returns_points_over_time(scraped: tuple[Prometheus, ExpositionServer]) -> None:
    prom, _ = scraped
    now = time.time()
    series = prom.query_range("logmetrics_records_read_total", now - 10, now, 1)
    assert len(series) == 1 and series[0].labels["job"] == "logmetrics"
    values = [v for _, v in series[0].points]
    assert len(values) >= 2 and values == sorted(values) and values[-1] > values[0]


@pytest.mark.real
def test_waiting_for_what_never_happens_fails(scraped: tuple[Prometheus, ExpositionServer]) -> None:
    prom, _ = scraped
    with pytest.raises(TimeoutError, match="no_such_metric"):
        prom.wait_for("no_such_metric", timeout=1.0)
    with pytest.raises(TimeoutError):
        poll(lambda: 1, lambda r: r == 2, timeout=0.3)


@pytest.mark.real
def test_backfilled_history_is_queryable_at_its_own_time(tmp_path: Path) -> None:
    t0 = int(time.time()) - 3 * 86400  # three days ago: older than any head block
    lines = ["# HELP litellm_spend_metric Total spend on LLM requests", "# TYPE litellm_spend_metric counter"]
    for i in range(0, 61):  # one sample a minute for an hour, 0.01 USD a minute
        lines.append(f'litellm_spend_metric_total{{model="gpt-4o-mini"}} {i * 0.01:.2f} {t0 + 60 * i}')
    lines.append("# EOF")
    hist = tmp_path / "hist.om"
    hist.write_text("\n".join(lines) + "\n")

    data = tmp_path / "data"
    backfill(hist, data)
    assert any(p.is_dir() and (p / "meta.json").exists() for p in data.iterdir()), "no block written"

    with prometheus_running(tmp_path / "prom", data_dir=data, retention="100y") as prom:
        t_end = t0 + 3600
        assert prom.value("litellm_spend_metric_total", at=t_end) == pytest.approx(0.60)
        spent = prom.value("sum(increase(litellm_spend_metric_total[30m]))", at=t_end)
        assert spent == pytest.approx(0.30, rel=0.05)
        series = prom.query_range("litellm_spend_metric_total", t0, t_end, 600)
        assert [v for _, v in series[0].points] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
        assert prom.query("litellm_spend_metric_total") == []  # nothing "now": it is history


@pytest.mark.parametrize(
    ("expr", "problems"),
    [
        ('sum by (requested_model) (rate(litellm_proxy_total_requests_metric_total{status_code!="200"}[5m]))',
         []),
        ("sum by (model) (rate(litellm_proxy_total_requests_metric_total[5m]))",
         ["by (model): litellm_proxy_total_requests_metric_total has no label model"]),
        ('litellm_spend_metric_total{team_name="x"}', ["litellm_spend_metric_total has no label team_name"]),
        ("rate(litellm_spend_metric[5m])", ["unknown metric litellm_spend_metric"]),
        ("histogram_quantile(0.95, sum(rate(litellm_request_total_latency_metric_bucket[5m]))"
         " by (le, model_group))", []),
        ("sum(rate(litellm_overhead_latency_metric_sum[5m])) by (requested_model)",
         ["by (requested_model): litellm_overhead_latency_metric_sum has no label requested_model"]),
        ('logmetrics_lag_seconds > 300 and on (job, instance) up{job="logmetrics"} == 1', []),
        ("up == 0 and on (source) logmetrics_lag_seconds", ["join label source is on no metric used"]),
    ],
    ids=["ok", "wrong-by-label", "wrong-matcher", "counter-without-total", "by-after-body", "overhead-by",
         "join-ok", "join-unknown"],
)  # fmt: skip
def test_name_checker(expr: str, problems: list[str]) -> None:
    assert check_names(expr) == problems


def test_name_checker_tells_functions_from_metrics() -> None:
    names = promql_names(
        "histogram_quantile(0.99, sum by (le) (rate(litellm_llm_api_time_to_first_token_metric_bucket"
        '{requested_model=~".*"}[1m] offset 5m))) * 1e3 > bool 2'
    )
    assert names.metrics == {"litellm_llm_api_time_to_first_token_metric_bucket"}
    assert names.matchers == {("litellm_llm_api_time_to_first_token_metric_bucket", "requested_model")}
    assert "litellm_zero_cost_requests_total" in EXPOSED_LABELS  # already ends in _total
    assert "le" in EXPOSED_LABELS["litellm_deployment_latency_per_output_token_bucket"]


# ---------------------------------------------------------------------------------------------
# The snippets of docs/prometheus-grafana.md


ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs/prometheus-grafana.md"
RULES = ROOT / "alerts/logmetrics.rules.yml"


def doc_blocks(lang: str) -> list[str]:
    """The fenced ```lang blocks of the doc, dedented (blocks inside numbered steps are indented)."""
    return [textwrap.dedent(b) for b in re.findall(rf"^ *```{lang}\n(.*?)^ *```", DOC.read_text(), re.M | re.S)]


def doc_configs() -> list[str]:
    return [b for b in doc_blocks("yaml") if b.startswith("# prometheus.yml")]


def doc_promql() -> list[str]:
    """Each expression of the ```promql blocks (separated by blank lines, comments dropped)."""
    exprs = []
    for block in doc_blocks("promql"):
        for chunk in block.split("\n\n"):
            expr = "\n".join(line for line in chunk.splitlines() if not line.lstrip().startswith("#")).strip()
            if expr:
                exprs.append(expr)
    return exprs


@pytest.mark.real
@pytest.mark.parametrize("config", doc_configs(), ids=[c.splitlines()[0][2:] for c in doc_configs()])
def test_doc_prometheus_configs_are_valid(tmp_path: Path, config: str) -> None:
    path = tmp_path / "prometheus.yml"
    path.write_text(config.replace("/etc/prometheus/rules/logmetrics.rules.yml", str(RULES)))
    agent = ["--agent"] if "--enable-feature=agent" in config else []
    done = promtool("check", "config", *agent, path)
    assert done.returncode == 0, done.stdout


@pytest.mark.real
def test_doc_recording_rules_are_valid(tmp_path: Path) -> None:
    blocks = [b for b in doc_blocks("yaml") if b.startswith("# /etc/prometheus/rules/")]
    assert blocks
    for i, block in enumerate(blocks):
        path = tmp_path / f"rules-{i}.yml"
        path.write_text(block)
        done = promtool("check", "rules", path)
        assert done.returncode == 0, done.stdout
        for expr in re.findall(r"expr: (.*)", block):
            assert check_names(expr) == [], expr


def test_doc_has_the_snippets_it_promises() -> None:
    assert len(doc_configs()) >= 4  # single host, central, federation, agent
    assert len(doc_promql()) >= 5
    text = DOC.read_text()
    for command in (
        "--openmetrics-out hist.om",
        "promtool tsdb create-blocks-from openmetrics hist.om",
        "/var/lib/prometheus/metrics2/",
        "storage.tsdb.retention.time",
    ):
        assert command in text


@pytest.mark.parametrize("expr", doc_promql())
def test_doc_promql_names_only_what_logmetrics_exposes(expr: str) -> None:
    assert check_names(expr) == []


@pytest.mark.real
def test_doc_promql_is_valid_promql(scraped: tuple[Prometheus, ExpositionServer]) -> None:
    prom, _ = scraped
    for expr in doc_promql():
        prom.query(expr)  # raises QueryError on a syntax error


@pytest.mark.real
def test_doc_backfill_recipe_with_labels(tmp_path: Path) -> None:
    """`replay --openmetrics-out`, the doc's sed that adds job/instance, promtool, Prometheus."""
    records = ROOT / "fixtures/sample-logs/litellm-1.109.1/requests-runA.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "logmetrics", "replay", str(records), "--openmetrics-out", "hist.om", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    sed = next(line.strip() for line in DOC.read_text().splitlines() if line.strip().startswith("sed -E"))
    done = subprocess.run(["bash", "-c", sed], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    backfill(tmp_path / "hist-labelled.om", tmp_path / "data")
    last = max(
        float(line.rsplit(" ", 1)[1])
        for line in (tmp_path / "hist.om").read_text().splitlines()
        if line and not line.startswith("#")
    )
    with prometheus_running(tmp_path / "prom", data_dir=tmp_path / "data", retention="100y") as prom:
        total = prom.value(
            'sum(litellm_proxy_total_requests_metric_total{job="logmetrics",instance="litellm-a"})', at=last
        )
        assert total == 31.0  # every request of run A, once
        assert prom.query('count({__name__=~".+", job!="logmetrics"})', at=last) == []  # every series labelled


SAMPLE = ROOT / "fixtures/sample-logs/litellm-1.109.1/metrics-runA.txt"


def doc_config(containing: str) -> str:
    return next(c for c in doc_configs() if containing in c)


@pytest.mark.real
def test_doc_fleet_sums_recording_rules_and_federation(tmp_path: Path) -> None:
    """Two hosts scraped by a site Prometheus running the doc's recording rules; a global Prometheus
    federating from it with the doc's federation config keeps the hosts' labels and gets the
    aggregates; the doc's fleet PromQL answers on the site."""
    exposition = SAMPLE.read_text()
    rules = tmp_path / "litellm-fleet.rules.yml"
    rules.write_text(next(b for b in doc_blocks("yaml") if b.startswith("# /etc/prometheus/rules/")))
    with (
        ExpositionServer(lambda n: grow_counters(exposition, n)) as host_a,
        ExpositionServer(lambda n: grow_counters(exposition, n)) as host_b,
        prometheus_running(
            tmp_path / "site", {"logmetrics": [host_a.address, host_b.address]}, rule_files=[rules]
        ) as site,
    ):
        site.wait_for_scrapes("logmetrics", 3)
        for expr in doc_promql():
            assert site.query(expr), f"no data on the site Prometheus for {expr}"
        per_host = site.query(
            "histogram_quantile(0.95, sum by (instance, requested_model, le)"
            " (rate(litellm_request_total_latency_metric_bucket[5m])))"
        )
        assert {s.labels["instance"] for s in per_host} == {host_a.address, host_b.address}

        federation = (
            doc_config("/federate")
            .replace('["prometheus-site-1.internal:9090", "prometheus-site-2.internal:9090"]',
                     f'["{site.url.removeprefix("http://")}"]')
            .replace("scrape_interval: 30s", "scrape_interval: 1s")
        )  # fmt: skip
        with prometheus_running(tmp_path / "global", config_text=federation) as top:
            aggregates = top.wait_for("requested_model:litellm_proxy_total_requests:rate5m", timeout=20)
            assert {s.labels.get("requested_model") for s in aggregates} >= {"gpt-4o-mini", "claude-haiku"}
            hosts = top.wait_for(
                'count by (job, instance) (litellm_proxy_total_requests_metric_total{job="logmetrics"})',
                lambda r: len(r) == 2,
            )
            assert {s.labels["instance"] for s in hosts} == {host_a.address, host_b.address}


@pytest.mark.real
def test_doc_remote_write_agent(tmp_path: Path) -> None:
    """The doc's agent config scrapes a local logmetrics and pushes to a central Prometheus with the
    remote-write receiver on; the central one sees `up` and the LiteLLM series as instance litellm-a."""
    exposition = SAMPLE.read_text()
    with (
        ExpositionServer(lambda n: grow_counters(exposition, n)) as host,
        prometheus_running(tmp_path / "central", extra_args=["--web.enable-remote-write-receiver"]) as central,
    ):
        agent_config = (
            doc_config("remote_write")
            .replace('"127.0.0.1:9464"', f'"{host.address}"')
            .replace("scrape_interval: 15s", "scrape_interval: 1s")
            .replace("http://prometheus.internal:9090", central.url)
        )
        assert host.address in agent_config and central.url in agent_config
        with prometheus_running(tmp_path / "agent", config_text=agent_config, agent=True):
            central.wait_for('up{job="logmetrics", instance="litellm-a"} == 1', timeout=25)
            got = central.wait_for(
                'sum by (requested_model) (litellm_proxy_total_requests_metric_total{instance="litellm-a"})'
            )
            assert {s.labels.get("requested_model") for s in got} >= {"gpt-4o-mini", "claude-haiku"}


@pytest.mark.real
def test_exporter_process_is_scraped(tmp_path: Path) -> None:
    """`exporter_process` runs a real exporter command (here Python's http.server over a file named
    `metrics`; later `logmetrics serve ... --listen {listen}`) and Prometheus scrapes it."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "metrics").write_text(STUB)
    argv = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(site), "{port}"]
    with exporter_process(argv, tmp_path / "exporter", check_exit=False) as address:  # http.server dies on SIGTERM
        with prometheus_running(tmp_path / "prom", {"logmetrics": [address]}) as prom:
            prom.wait_for_scrapes("logmetrics", 1)
            assert prom.value("logmetrics_lag_seconds") == 2.5


@pytest.mark.real
def test_exporter_process_that_dies_fails_fast(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="exited with 3"):
        with exporter_process([sys.executable, "-c", "import sys; sys.exit(3)"], tmp_path):
            pass
    assert time.monotonic() - started < 10
