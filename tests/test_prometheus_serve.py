"""A real Prometheus (Debian's, via tests/prom.py, 1 s scrapes) scraping a real `logmetrics serve`
while a writer appends request records to the followed file.

What the records should produce is computed here from the records themselves, not by logmetrics:
a success record counts as (payload.model_group, "200") and observes a total latency of
facts.end_time - facts.start_time + facts.queue_time_seconds; a failure record counts as
(payload.model_group or "other", payload.error_information.error_code) and observes no latency.
`test_expectations_match_litellm_own_metrics` checks that rule against LiteLLM's own /metrics
for the same run (fixtures/sample-logs/litellm-1.109.1/metrics-runA.txt).

Exactness in PromQL: `increase()` extrapolates to the window's edges, so it is not an exact count;
the exact form used is `X - X @ t_before` (the `@` modifier: the value at a unix time), with
t_before a moment after the baseline was scraped and before the writer started. `increase()` is
also checked, between the exact delta and that delta scaled by (window / the span its samples
cover), which is the most Prometheus' extrapolation can add. `histogram_quantile()` over
`rate()` must land within one bucket of the true quantile (rate extrapolates each bucket series a
little differently); over the raw cumulative buckets it must land in the true quantile's bucket.

The records are run A's (31 real callback records, fixtures/sample-logs/litellm-1.109.1/
requests-runA.jsonl) over and over, each success record given a latency drawn from a seeded
distribution (its start_time moved) so that the histogram has something to locate.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prom import Prometheus, exporter_process, free_port, poll, prometheus_running

ROOT = Path(__file__).resolve().parent.parent
RUN_A = ROOT / "fixtures/sample-logs/litellm-1.109.1/requests-runA.jsonl"
LITELLM_METRICS = ROOT / "fixtures/sample-logs/litellm-1.109.1/metrics-runA.txt"
RECORDS: list[dict[str, Any]] = [json.loads(line) for line in RUN_A.read_text().splitlines() if line.strip()]

REQUESTS = "litellm_proxy_total_requests_metric_total"
LATENCY = "litellm_request_total_latency_metric"
TIMEOUT = 20.0
BY_STATUS = ("requested_model", "status_code")
BY_MODEL = ("requested_model",)


def quantile_rate(q: float, by: str, window: str) -> str:
    """The dashboards' form: the quantile of the bucket rates summed over instances."""
    return f"histogram_quantile({q}, sum by (le, {by}) (rate({LATENCY}_bucket[{window}])))"


def quantile_all(q: float) -> str:
    """The quantile of every observation so far (the cumulative buckets, no window)."""
    return f"histogram_quantile({q}, sum by (le, requested_model) ({LATENCY}_bucket))"


def since(t: float, by: str) -> str:
    """Exact increase since unix time `t`: the value now less the value at `t`."""
    return f"sum by ({by}) ({REQUESTS} - {REQUESTS} @ {t!r})"


# ---------------------------------------------------------------------------------------------
# records and what they should count


def _iso(t: dt.datetime) -> str:
    return t.isoformat(timespec="microseconds")


def make_record(i: int, rng: random.Random, scale: float) -> dict[str, Any]:
    """Run A's record i % 31; a success record gets a total latency of about `scale` * a log-normal
    draw (0.004 s .. 400 s), by moving facts.start_time."""
    rec = copy.deepcopy(RECORDS[i % len(RECORDS)])
    if rec["hook"] == "success":
        f = rec["facts"]
        want = min(400.0, max(0.004, scale * rng.lognormvariate(0.0, 1.5)))
        end = dt.datetime.fromisoformat(f["end_time"])
        f["start_time"] = _iso(end - dt.timedelta(seconds=max(0.0, want - f["queue_time_seconds"])))
    return rec


def truth(rec: dict[str, Any]) -> tuple[str, str, float | None]:
    """(requested_model, status_code, total latency or None) as LiteLLM counts the record."""
    p, f = rec["payload"], rec["facts"]
    if rec["hook"] == "success":
        latency = dt.datetime.fromisoformat(f["end_time"]) - dt.datetime.fromisoformat(f["start_time"])
        return p["model_group"], "200", latency.total_seconds() + f["queue_time_seconds"]
    return p["model_group"] or "other", str(p["error_information"]["error_code"]), None


def line(rec: dict[str, Any]) -> bytes:
    return json.dumps(rec, separators=(",", ":")).encode() + b"\n"


class Truth:
    """What a set of records should have counted."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str]] = Counter()
        self.latencies: dict[str, list[float]] = defaultdict(list)

    def add(self, rec: dict[str, Any]) -> None:
        model, status, latency = truth(rec)
        self.requests[(model, status)] += 1
        if latency is not None:
            self.latencies[model].append(latency)

    def by_model(self) -> dict[str, float]:
        out: Counter[str] = Counter()
        for (model, _), n in self.requests.items():
            out[model] += n
        return {m: float(n) for m, n in out.items()}

    def total(self) -> int:
        return sum(self.requests.values())


def true_quantile(values: list[float], q: float) -> float:
    """Nearest rank (the observation histogram_quantile's rank q*n falls on)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def bucket_index(value: float, bounds: list[float]) -> int:
    """Index of the bucket (upper bounds `bounds`, +Inf last) holding `value`."""
    return next(i for i, le in enumerate(bounds) if value <= le)


def assert_within_one_bucket(estimate: float, true: float, bounds: list[float], what: str) -> None:
    got, want = bucket_index(estimate, bounds), bucket_index(true, bounds)
    assert abs(got - want) <= 1, f"{what}: histogram_quantile {estimate} (bucket {got}) vs true {true} (bucket {want})"


class Writer(threading.Thread):
    """Appends `records` to `path` in chunks of `chunk`, `per_second` records a second, until all
    are written (or stopped); `written` counts whole lines flushed. With `hold_at`, it stops after
    that many until `resume` is set (so a test can kill serve with records still to come)."""

    def __init__(self, path: Path, records: list[dict[str, Any]], *, chunk: int = 10, per_second: float = 150,
                 hold_at: int | None = None) -> None:  # fmt: skip
        super().__init__(daemon=True)
        self.path, self.records, self.chunk, self.per_second = path, records, chunk, per_second
        self.hold_at = hold_at
        self.written = 0
        self.stop = threading.Event()
        self.resume = threading.Event()

    def run(self) -> None:
        with self.path.open("ab") as f:
            while self.written < len(self.records) and not self.stop.is_set():
                if self.hold_at is not None and self.written >= self.hold_at:
                    self.resume.wait(TIMEOUT)
                part = self.records[self.written : self.written + self.chunk]
                f.write(b"".join(line(r) for r in part))
                f.flush()
                self.written += len(part)
                self.stop.wait(len(part) / self.per_second)  # pacing, not waiting for anything


# ---------------------------------------------------------------------------------------------
# a `logmetrics serve` that can be killed and restarted on the same port


class Serve:
    def __init__(self, log: Path, state_dir: Path, workdir: Path, port: int | None = None) -> None:
        self.log, self.state_dir, self.workdir = log, state_dir, workdir
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        workdir.mkdir(parents=True, exist_ok=True)

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "logmetrics", "serve", str(self.log), "--listen", self.address,
                "--state-dir", str(self.state_dir), "--no-table"]  # fmt: skip

    def start(self) -> Serve:
        self.starts += 1
        out = (self.workdir / f"serve-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen(self.argv(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        out.close()

        def serving() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited with {self.proc.returncode}:\n{self.output()}")
            with urllib.request.urlopen(f"http://{self.address}/metrics", timeout=2) as resp:
                return bool(resp.status == 200)

        poll(serving, bool, timeout=TIMEOUT, what=f"serve on {self.address}")
        return self

    def output(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.workdir.glob("serve-*.log")))[-4000:]

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                assert self.proc.wait(10) == 0, self.output()
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise


@pytest.fixture
def serves() -> Iterator[list[Serve]]:
    started: list[Serve] = []
    yield started
    for s in started:
        s.stop()


# ---------------------------------------------------------------------------------------------
# PromQL helpers


def dur(seconds: float) -> str:
    """A PromQL duration (whole milliseconds, rounded up) of at least `seconds`."""
    return f"{math.ceil(seconds * 1000)}ms"


def by_labels(
    prom: Prometheus, expr: str, labels: tuple[str, ...], at: float | None = None
) -> dict[tuple[str, ...], float]:
    return {tuple(s.labels.get(k, "") for k in labels): s.value for s in prom.query(expr, at)}


def wait_total(prom: Prometheus, expr: str, want: float) -> None:
    """Until `expr` (a sum of counters) reaches `want`; more than `want` fails at once (double count)."""
    got = prom.wait_for(expr, lambda r: bool(r) and r[0].value >= want, timeout=TIMEOUT)
    assert got[0].value == want, f"{expr} = {got[0].value}, expected {want}"


def wait_scrape_after(prom: Prometheus, t: float, job: str = "logmetrics") -> None:
    """Until every target of `job` has a sample scraped after unix time `t`."""
    prom.wait_for(f'min(timestamp(up{{job="{job}"}}))', lambda r: bool(r) and r[0].value > t, timeout=TIMEOUT)


def le_bounds(prom: Prometheus) -> list[float]:
    les = {s.labels["le"] for s in prom.query(f"count by (le) ({LATENCY}_bucket)")}
    return sorted(float(le) for le in les)


def sample_span(prom: Prometheus, expr: str, at: float) -> tuple[float, float]:
    """(first, last) sample time of the single series `expr` (a range vector selector) at `at`."""
    data = prom.api("query", {"query": expr, "time": repr(at)})
    assert isinstance(data, dict) and data["resultType"] == "matrix", data
    times = [float(t) for t, _ in data["result"][0]["values"]]
    return times[0], times[-1]


def check_counts(prom: Prometheus, want: Truth, at: float | None = None) -> None:
    got = by_labels(prom, f"sum by (requested_model, status_code) ({REQUESTS})", BY_STATUS, at)
    assert got == {k: float(n) for k, n in want.requests.items()}
    counts = by_labels(prom, f"sum by (requested_model) ({LATENCY}_count)", BY_MODEL, at)
    assert counts == {(m,): float(len(v)) for m, v in want.latencies.items()}


# ---------------------------------------------------------------------------------------------
# tests


def test_expectations_match_litellm_own_metrics() -> None:
    """The counting rule above gives, for run A, what LiteLLM's own /metrics said for it."""
    want = Truth()
    for rec in RECORDS:
        want.add(rec)
    from prometheus_client.parser import text_string_to_metric_families

    litellm: Counter[tuple[str, str]] = Counter()
    sums: dict[str, float] = {}
    for fam in text_string_to_metric_families(LITELLM_METRICS.read_text()):
        for s in fam.samples:
            if s.name == REQUESTS and s.labels["route"] == "/v1/chat/completions":
                litellm[(s.labels["requested_model"], s.labels["status_code"])] += int(s.value)
            if s.name == f"{LATENCY}_sum":
                sums[s.labels["requested_model"]] = s.value
    assert want.requests == litellm
    assert {m: pytest.approx(sum(v), abs=1e-9) for m, v in want.latencies.items()} == sums


@pytest.mark.real
def test_serve_scraped_while_written_killed_and_restarted(tmp_path: Path, serves: list[Serve]) -> None:
    rng = random.Random(8)
    log = tmp_path / "requests.log"
    baseline = [make_record(i, rng, 0.2) for i in range(len(RECORDS))]  # every label set once
    phase1 = [make_record(i, rng, 0.2) for i in range(len(RECORDS), 12 * len(RECORDS))]
    phase2 = [make_record(i, rng, 0.2) for i in range(12 * len(RECORDS), 30 * len(RECORDS))]
    log.write_bytes(b"".join(line(r) for r in baseline))
    before = Truth()
    for r in baseline:
        before.add(r)

    serve = Serve(log, tmp_path / "state", tmp_path / "serve").start()
    serves.append(serve)
    with prometheus_running(tmp_path / "prom", {"logmetrics": [serve.address]}) as prom:
        wait_total(prom, f"sum({REQUESTS})", before.total())
        t_before = time.time()
        wait_scrape_after(prom, t_before)  # the first sample of a window starting at t_before is the baseline
        check_counts(prom, before, at=t_before)

        # -- phase 1: a writer appends, Prometheus scrapes ---------------------------------------
        writer = Writer(log, phase1)
        writer.start()
        writer.join(TIMEOUT)
        assert writer.written == len(phase1)
        after1 = copy.deepcopy(before)
        written1 = Truth()
        for r in phase1:
            after1.add(r)
            written1.add(r)
        wait_total(prom, f"sum({REQUESTS})", after1.total())
        t1 = time.time()
        check_counts(prom, after1, at=t1)
        # exact increase: the value now less the value at t_before, per model and status
        delta = by_labels(prom, since(t_before, "requested_model, status_code"), BY_STATUS, t1)
        assert delta == {k: float(n) for k, n in written1.requests.items()}
        # increase() extrapolates: at least the exact delta, at most delta * window / sampled span
        window = t1 - t_before
        inc = prom.value(f"sum(increase({REQUESTS}[{dur(window)}]))", at=t1)
        first, last = sample_span(prom, f'up{{job="logmetrics"}}[{dur(window)}]', t1)
        assert inc is not None
        most = written1.total() * window / (last - first)
        assert written1.total() - 1e-6 <= inc <= most + 1e-6, (inc, window, first, last)
        # p95 over the window from rate() (what dashboards do), within one bucket of the true one
        bounds = le_bounds(prom)
        q95 = by_labels(prom, quantile_rate(0.95, "requested_model", dur(window)), BY_MODEL, t1)
        assert set(q95) == {(m,) for m in written1.latencies}
        for (model,), est in q95.items():
            assert_within_one_bucket(est, true_quantile(written1.latencies[model], 0.95), bounds, model)
        # and over all records so far, from the cumulative buckets: the true quantile's own bucket
        q50_all = by_labels(prom, quantile_all(0.5), BY_MODEL, t1)
        for (model,), est in q50_all.items():
            true = true_quantile(after1.latencies[model], 0.5)
            assert bucket_index(est, bounds) == bucket_index(true, bounds), (model, est, true)

        # -- phase 2: kill -9 mid-stream, restart on the same port and state -------------------
        # the writer holds at half of phase 2 until serve is killed, then writes the rest while
        # serve is down and restarting; Prometheus has scraped some of the first half
        writer = Writer(log, phase2, hold_at=len(phase2) // 2)
        writer.start()
        prom.wait_for(f"sum({REQUESTS})", lambda r: bool(r) and r[0].value > after1.total(), timeout=TIMEOUT)
        serve.kill()
        killed_at = writer.written
        writer.resume.set()
        serve.start()
        writer.join(TIMEOUT)
        assert writer.written == len(phase2) and killed_at <= len(phase2) // 2, (killed_at, writer.written)
        final = copy.deepcopy(after1)
        for r in phase2:
            final.add(r)
        wait_total(prom, f"sum({REQUESTS})", final.total())
        wait_scrape_after(prom, time.time())
        t2 = time.time()
        check_counts(prom, final, at=t2)  # no double count
        delta = by_labels(prom, since(t_before, "requested_model, status_code"), BY_STATUS, t2)
        want = Counter(final.requests)
        want.subtract(before.requests)
        assert delta == {k: float(n) for k, n in want.items()}
        # no counter reset visible over the whole run, on any series of the two families
        span = dur(t2 - t_before + 5)
        for name in (
            REQUESTS,
            *(f"{LATENCY}_{s}" for s in ("bucket", "count", "sum")),
            "logmetrics_records_read_total",
        ):
            resets = prom.query(f"resets({name}[{span}])", t2)
            assert resets and all(s.value == 0.0 for s in resets), (name, [s for s in resets if s.value])
        assert serve.starts == 2 and "Traceback" not in serve.output()
        q95_all = by_labels(prom, quantile_all(0.95), BY_MODEL, t2)
        for (model,), est in q95_all.items():
            true = true_quantile(final.latencies[model], 0.95)
            assert bucket_index(est, bounds) == bucket_index(true, bounds), (model, est, true)


@pytest.mark.real
def test_two_serves_aggregate_in_one_prometheus(tmp_path: Path) -> None:
    """Host A answers fast, host B slowly: sums and the fleet p95 must come from the union."""
    rng = random.Random(88)
    hosts = {"a": 0.05, "b": 2.0}  # latency scale per host
    n_base, n_main = {"a": 31, "b": 31}, {"a": 310, "b": 155}
    logs = {h: tmp_path / f"requests-{h}.log" for h in hosts}
    base, main = Truth(), Truth()
    records: dict[str, list[dict[str, Any]]] = {}
    for h, scale in hosts.items():
        first = [make_record(i, rng, scale) for i in range(n_base[h])]
        logs[h].write_bytes(b"".join(line(r) for r in first))
        for r in first:
            base.add(r)
        records[h] = [make_record(i, rng, scale) for i in range(n_base[h], n_base[h] + n_main[h])]
        for r in records[h]:
            main.add(r)
    union = copy.deepcopy(base)
    for h in hosts:
        for r in records[h]:
            union.add(r)

    def argv(h: str) -> list[str]:
        return [sys.executable, "-m", "logmetrics", "serve", str(logs[h]), "--listen", "{listen}",
                "--state-dir", str(tmp_path / f"state-{h}"), "--no-table"]  # fmt: skip

    with (
        exporter_process(argv("a"), tmp_path / "serve-a") as addr_a,
        exporter_process(argv("b"), tmp_path / "serve-b") as addr_b,
        prometheus_running(tmp_path / "prom", {"logmetrics": [addr_a, addr_b]}) as prom,
    ):
        wait_total(prom, f"sum({REQUESTS})", base.total())
        assert prom.value('count(up{job="logmetrics"} == 1)') == 2.0
        t_before = time.time()
        wait_scrape_after(prom, t_before)
        writers = [Writer(logs[h], records[h]) for h in hosts]
        for w in writers:
            w.start()
        for w in writers:
            w.join(TIMEOUT)
            assert w.written == len(w.records)
        wait_total(prom, f"sum({REQUESTS})", union.total())
        wait_scrape_after(prom, time.time())
        t_end = time.time()

        per_instance = by_labels(prom, f"sum by (instance) ({REQUESTS})", ("instance",), t_end)
        assert per_instance == {(addr_a,): 341.0, (addr_b,): 186.0}
        got = by_labels(prom, f"sum by (requested_model) ({REQUESTS})", BY_MODEL, t_end)
        assert got == {(m,): n for m, n in union.by_model().items()}
        check_counts(prom, union, at=t_end)
        delta = by_labels(prom, since(t_before, "requested_model"), BY_MODEL, t_end)
        assert delta == {(m,): n for m, n in main.by_model().items()}

        window = dur(t_end - t_before)
        bounds = le_bounds(prom)
        q95 = by_labels(prom, quantile_rate(0.95, "requested_model", window), BY_MODEL, t_end)
        assert set(q95) == {(m,) for m in main.latencies}
        for (model,), est in q95.items():
            assert_within_one_bucket(est, true_quantile(main.latencies[model], 0.95), bounds, model)
        # the union's p95 is not either host's own: the aggregation did something
        per_host = by_labels(prom, quantile_rate(0.95, "instance", window), ("instance",), t_end)
        assert bucket_index(per_host[(addr_a,)], bounds) < bucket_index(per_host[(addr_b,)], bounds)
