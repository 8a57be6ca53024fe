"""End to end against a real LiteLLM proxy: LiteLLM's `prometheus` callback and logmetrics' callback
side by side, real HTTP traffic of every kind (tests/litellm/traffic.py), then `logmetrics replay` of
the callback's log must equal LiteLLM's own /metrics exactly on every request-fed family
(tests/parity.py, a copy of shared/tools/parity.py).

Needs the proxy's virtualenv: `tests/litellm/install.sh 1.109.1` (and `1.79.3` for the
compatibility test), under $LOGMETRICS_CACHE (default <repo>/.cache). Without it the tests skip
and say so.
"""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
CACHE = Path(os.environ.get("LOGMETRICS_CACHE") or REPO / ".cache")
CANARIES = ("CANARY-PROMPT-7f3a", "CANARY-HEADER-91bd", "CANARY-UNKNOWN-KEY-5c21")

pytestmark = [pytest.mark.real, pytest.mark.slow]


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


capture_mod = _load("logmetrics_test_litellm_capture", TESTS / "litellm" / "capture.py")
parity = _load("logmetrics_test_parity", TESTS / "parity.py")


def venv_for(version: str) -> Path:
    venv = CACHE / f"litellm-{version}"
    marker = venv / ".logmetrics-installed"
    if not marker.is_file() or marker.read_text().strip() != version:
        why = f"LiteLLM {version} is not installed: run `tests/litellm/install.sh {version}` (venv {venv})"
        if os.environ.get("CI"):  # in CI a missing install step fails instead of skipping
            pytest.fail(why)
        pytest.skip(why)
    return venv


class Case(NamedTuple):
    config: str
    traffic: str
    min_sent: int
    # families LiteLLM must expose samples of, or exact parity would prove little
    covers: tuple[str, ...]


CASES = {
    # every kind of request on one deployment per model group, no retries (tests/litellm/traffic.py)
    "default": Case(
        "config.yaml", "traffic.py", 60,
        ("litellm_proxy_failed_requests_metric", "litellm_llm_api_time_to_first_token_metric",
         "litellm_deployment_failure_responses", "litellm_deployment_state", "litellm_cache_hits_metric",
         "litellm_images_generated_metric", "litellm_video_duration_seconds_metric",
         "litellm_provider_cache_read_input_tokens_metric", "litellm_provider_cache_creation_input_tokens_metric"),
    ),
    # retries, fallbacks, load balancing, alias, wildcard, embeddings/completions/responses
    "routing": Case(
        "config-routing.yaml", "traffic-routing.py", 30,
        ("litellm_proxy_failed_requests_metric", "litellm_llm_api_time_to_first_token_metric",
         "litellm_deployment_failure_responses", "litellm_deployment_state", "litellm_llm_api_failed_requests_metric"),
    ),
}  # fmt: skip


def run_capture(version: str, outdir: Path, beside_config: bool = False, case: str = "default") -> dict[str, Any]:
    c = CASES[case]
    info: dict[str, Any] = capture_mod.capture(
        venv_for(version),
        outdir,
        TESTS / "litellm" / c.config,
        traffic=TESTS / "litellm" / c.traffic,
        beside_config=beside_config,
    )
    results = [json.loads(line) for line in (outdir / "traffic-results.jsonl").read_bytes().splitlines()]
    unexpected = [r for r in results if r["status"] != r["expect"]]
    if version.startswith("1.79."):
        # 1.79 answers a request without `messages` with a 500 (TypeError), 1.109.1 with a 400
        unexpected = [r for r in unexpected if not (r["status"] == 500 and "'messages'" in r["resp_head"])]
    assert not unexpected, info["traffic_out"]
    return info


def replay(log: Path, out: Path) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "logmetrics", "replay", str(log), "--metrics-out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return out.read_text()


def records(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_bytes().splitlines()]


@pytest.fixture(scope="module", params=sorted(CASES))
def run_1109(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, dict[str, Any]]]:
    outdir = tmp_path_factory.mktemp(f"litellm-1.109.1-{request.param}")
    info = run_capture("1.109.1", outdir, case=request.param)
    info["case"] = request.param
    yield outdir, info


def cooldown_states(lit: dict[str, Any]) -> dict[Any, float]:
    """Remove and return LiteLLM's `litellm_deployment_state` = 2 series. LiteLLM writes them from the
    router's cooldown callback (litellm/router_utils/cooldown_callbacks.py:43-64, labelled with the
    model *group* name), a router event no CustomLogger hook sees: not in the request records."""
    _, series = lit.get("litellm_deployment_state", (None, {}))
    gone = {k: v for k, v in series.items() if v == 2.0}
    for k in gone:
        del series[k]
    return gone


def test_every_request_counted_once(run_1109: tuple[Path, dict[str, Any]]) -> None:
    outdir, info = run_1109
    assert info["sent"] >= CASES[info["case"]].min_sent
    assert info["litellm_total"] == info["sent"]
    recs = records(outdir / "requests.log")
    assert sum(r["hook"] in ("success", "post_call_failure") for r in recs) == info["sent"]
    assert {r["hook"] for r in recs} == {"success", "failure", "post_call_failure"}
    assert all(r["logmetrics_record"] == "request" and r["version"] == 1 for r in recs)


def test_replay_parity_with_litellm_metrics(run_1109: tuple[Path, dict[str, Any]]) -> None:
    outdir, info = run_1109
    replay(outdir / "requests.log", outdir / "logmetrics.prom")
    lit = parity.load(str(outdir / "litellm-metrics.txt"))
    ours = parity.load(str(outdir / "logmetrics.prom"))
    cooled = cooldown_states(lit)
    if info["case"] == "routing":  # the failing deployment of the two-deployment group is cooled down
        assert {dict(labels)["model_id"] for _, labels in cooled} == {"flaky-bad"}, cooled
    else:
        assert not cooled, cooled
    report, totals = parity.compare(lit, ours, 5)
    for fam in CASES[info["case"]].covers:
        assert lit.get(fam, (None, {}))[1], f"{fam}: LiteLLM exposed no sample; traffic does not cover it"
    assert totals["exact"] == len(parity.FAMILIES), "\n".join(report)


def test_real_log_is_private(run_1109: tuple[Path, dict[str, Any]]) -> None:
    outdir, info = run_1109
    log = outdir / "requests.log"
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    data = log.read_bytes()
    for canary in (*CANARIES, info["master_key"]):
        assert canary.encode() not in data, f"{canary!r} reached the request log"
    for rec in records(log):
        payload = rec["payload"] or {}
        assert not {"messages", "response", "model_map_information"} & set(payload)
        assert "requester_metadata" not in (payload.get("metadata") or {})
        assert "traceback" not in (payload.get("error_information") or {})


def test_litellm_1_79_3_callback_records(tmp_path: Path) -> None:
    """The callback on the newest pre-1.80 release: it must load (beside the config: 1.79 does not
    import callbacks from PYTHONPATH) and record every request, with the facts that release has."""
    info = run_capture("1.79.3", tmp_path, beside_config=True)
    recs = records(tmp_path / "requests.log")
    assert sum(r["hook"] in ("success", "post_call_failure") for r in recs) == info["sent"]
    successes = [r for r in recs if r["hook"] == "success"]
    assert successes and all(r["facts"]["model"] and r["facts"]["end_time"] for r in successes)
    hooks = [r for r in recs if r["hook"] == "post_call_failure"]
    assert {h["labels"]["exception_class"] for h in hooks} >= {"Openai.RateLimitError", "RateLimitError"}
    data = (tmp_path / "requests.log").read_bytes()
    for canary in (*CANARIES, info["master_key"]):
        assert canary.encode() not in data
    # logmetrics reads it: every request counted once in its proxy_total_requests family
    out = replay(tmp_path / "requests.log", tmp_path / "logmetrics.prom")
    total = sum(
        float(line.rsplit(" ", 1)[1])
        for line in out.splitlines()
        if line.startswith("litellm_proxy_total_requests_metric_total{")
    )
    assert total == info["sent"]


@pytest.mark.parametrize("where", ["parent-is-a-file", "fifo-without-reader"])
def test_unwritable_log_never_breaks_the_proxy(tmp_path: Path, where: str) -> None:
    """A log path that cannot be created, or a FIFO nobody reads (opening it for writing blocked the
    proxy's event loop: every later request hung): requests are served as usual, LiteLLM's own
    exporter still counts them, and the callback reports the problem once in the proxy's output."""
    venv = venv_for("1.109.1")
    if where == "fifo-without-reader":
        log = tmp_path / "requests.log"
        os.mkfifo(log)
    else:
        blocker = tmp_path / "not-a-dir"
        blocker.write_text("")
        log = blocker / "requests.log"
    proxy = capture_mod.Proxy(venv, TESTS / "litellm" / "config.yaml", tmp_path, log)
    try:
        proxy.start()
        statuses = []
        for body in (
            {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            {"model": "claude-haiku", "messages": [{"role": "user", "content": "hi"}], "stream": True},
            {"model": "rate-limited", "messages": [{"role": "user", "content": "hi"}]},
        ):
            statuses.append(_post(proxy.base + "/v1/chat/completions", proxy.key, body))
        assert statuses == [200, 200, 429]
        capture_mod.wait_for(
            lambda: capture_mod.total_requests(proxy.metrics()) >= 3, 60, "LiteLLM to count the 3 requests"
        )
    finally:
        proxy.stop()
    out = (tmp_path / "proxy-output.log").read_text(errors="replace")
    assert out.count("logmetrics: cannot write request records") == 1, out[-3000:]
    assert "Traceback" not in "\n".join(line for line in out.splitlines() if "logmetrics" in line), (
        "an exception escaped the callback"
    )


def _post(url: str, key: str, body: dict[str, Any]) -> int:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            r.read()
            return int(r.status)
    except urllib.error.HTTPError as e:
        e.read()
        return int(e.code)


def test_serve_follows_live_proxy_with_parity(tmp_path: Path) -> None:
    """`logmetrics serve` following the callback's log while the proxy runs: once both sides settle,
    its /metrics equals LiteLLM's on every request-fed family."""
    venv = venv_for("1.109.1")
    log = tmp_path / "requests.log"
    proxy = capture_mod.Proxy(venv, TESTS / "litellm" / "config.yaml", tmp_path, log)
    port = capture_mod.free_port()
    serve: subprocess.Popen[bytes] | None = None
    try:
        proxy.start()
        with open(tmp_path / "serve-output.log", "wb") as serve_out:
            serve = subprocess.Popen(
                [sys.executable, "-m", "logmetrics", "serve", str(log), "--listen", f"127.0.0.1:{port}",
                 "--state-dir", str(tmp_path / "state"), "--no-table"],
                cwd=REPO, stdout=serve_out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        ours_url = f"http://127.0.0.1:{port}/metrics"

        def ours() -> str:
            try:
                status, text = capture_mod.http_get(ours_url)
            except OSError:  # not listening yet
                return ""
            return text if status == 200 else ""

        capture_mod.wait_for(lambda: ours() != "", 60, "logmetrics serve to answer /metrics")
        results = tmp_path / "traffic-results.jsonl"
        r = subprocess.run(
            [sys.executable, str(TESTS / "litellm" / "traffic.py"), str(proxy.port), str(results)],
            env={**os.environ, "LITELLM_MASTER_KEY": proxy.key},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert r.returncode == 0, r.stdout + r.stderr
        sent = len(results.read_bytes().splitlines())
        capture_mod.wait_for(lambda: capture_mod.total_requests(proxy.metrics()) >= sent, 60, "LiteLLM's count")
        capture_mod.wait_for(lambda: capture_mod.total_requests(ours()) >= sent, 60, "logmetrics' count")
        capture_mod.settle(lambda: (capture_mod.strip_created(proxy.metrics()), capture_mod.strip_created(ours())))
        (tmp_path / "litellm-metrics.txt").write_text(proxy.metrics())
        (tmp_path / "logmetrics-metrics.txt").write_text(ours())
    finally:
        if serve is not None:
            serve.terminate()
            serve.wait(timeout=30)
        proxy.stop()
    lit = parity.load(str(tmp_path / "litellm-metrics.txt"))
    mine = parity.load(str(tmp_path / "logmetrics-metrics.txt"))
    report, totals = parity.compare(lit, mine, 5)
    assert totals["exact"] == len(parity.FAMILIES), "\n".join(report)


def test_journald_records_from_stdout_with_parity(tmp_path: Path) -> None:
    """The callback writing to standard output (`LOGMETRICS_REQUEST_LOG=-`), as a systemd unit would
    have it in its journal: the proxy's output lines, LiteLLM's own among them, become the MESSAGEs
    of a real `.journal` file (systemd-journal-remote); `logmetrics replay` of that file equals
    LiteLLM's /metrics."""
    from journal_util import Entry, journal_remote, write_journal

    if journal_remote() is None and not os.environ.get("CI"):
        pytest.skip("needs systemd-journal-remote (apt-get install systemd-journal-remote)")
    venv = venv_for("1.109.1")
    proxy = capture_mod.Proxy(venv, TESTS / "litellm" / "config.yaml", tmp_path, Path("-"))
    output = tmp_path / "proxy-output.log"

    def stdout_records() -> int:
        return sum(
            line.startswith(b'{"logmetrics_record"') and b'"hook":"failure"' not in line
            for line in output.read_bytes().splitlines()
        )

    try:
        proxy.start()
        results = tmp_path / "traffic-results.jsonl"
        r = subprocess.run(
            [sys.executable, str(TESTS / "litellm" / "traffic.py"), str(proxy.port), str(results)],
            env={**os.environ, "LITELLM_MASTER_KEY": proxy.key},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert r.returncode == 0, r.stdout + r.stderr
        sent = len(results.read_bytes().splitlines())
        capture_mod.wait_for(lambda: capture_mod.total_requests(proxy.metrics()) >= sent, 60, "LiteLLM's count")
        capture_mod.wait_for(lambda: stdout_records() >= sent, 60, "the records on stdout")
        # every /metrics poll adds an access line to the output: settle on the records, not the size
        capture_mod.settle(
            lambda: (output.read_bytes().count(b'{"logmetrics_record"'), capture_mod.strip_created(proxy.metrics()))
        )
        (tmp_path / "litellm-metrics.txt").write_text(proxy.metrics())
    finally:
        proxy.stop()
    lines = output.read_bytes().splitlines()
    assert any(not line.startswith(b"{") for line in lines), "expected LiteLLM's own lines between the records"
    journal = write_journal(tmp_path / "litellm.journal", [Entry(line, seq=i + 1) for i, line in enumerate(lines)])
    replay(journal, tmp_path / "logmetrics.prom")
    lit = parity.load(str(tmp_path / "litellm-metrics.txt"))
    mine = parity.load(str(tmp_path / "logmetrics.prom"))
    report, totals = parity.compare(lit, mine, 5)
    assert totals["exact"] == len(parity.FAMILIES), "\n".join(report)
