"""A real Prometheus for tests: start Debian's `prometheus` on loopback, query it, stop it.

Nothing here is mocked. `start_prometheus()` writes a config (1 s scrape and rule evaluation, the
targets a test names), starts `/usr/bin/prometheus` on 127.0.0.1 on a free port with a temporary
TSDB, and waits for `/-/ready`. `Prometheus.query()` / `.query_range()` go through the HTTP API and
return floats; `.wait_for()` polls an expression until a condition holds or a deadline passes (no
blind sleeps: a test that waits for something that never happens fails with the last answer).

`ExpositionServer` is a stdlib `http.server` serving `/metrics` from a callable: it stands in for
`logmetrics serve` until that exists, and lets a test grow counters from scrape to scrape.

`backfill()` runs `promtool tsdb create-blocks-from openmetrics FILE DATADIR`; start Prometheus on
that data dir (`start_prometheus(data_dir=..., retention="100y")`) and query at historical times.

`promql_names()` pulls metric and label names out of a PromQL expression (dashboard and alert
tests check them against the families logmetrics exposes, `EXPOSED_LABELS`).

Tests that use Prometheus are marked `real`. Without the binaries they skip, except under CI=true
where they fail: CI must install Debian's `prometheus` package (which ships `promtool`).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from logmetrics.families import FAMILIES

PROMETHEUS = os.environ.get("LOGMETRICS_TEST_PROMETHEUS", "prometheus")
PROMTOOL = os.environ.get("LOGMETRICS_TEST_PROMTOOL", "promtool")
READY_TIMEOUT = 30.0


def require_binary(name: str) -> str:
    """Path of `name`, or skip (locally) / fail (CI=true) when it is not installed."""
    path = shutil.which(name)
    if path is None:
        msg = f"{name} not found: apt-get install -y prometheus (ships prometheus and promtool)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def poll(
    probe: Callable[[], object],
    done: Callable[[object], bool],
    *,
    timeout: float,
    interval: float = 0.1,
    what: str = "condition",
) -> object:
    """Call `probe` until `done(result)` or `timeout` seconds pass; return the result or raise
    TimeoutError naming the last result (or the last exception the probe raised)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            last = probe()
            if done(last):
                return last
        except (ConnectionError, TimeoutError, urllib.error.URLError, ValueError) as e:  # not up yet, garbled
            last = e
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not met within {timeout:.1f}s; last: {last!r}"[:2000])
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    points: list[tuple[float, float]]  # (unix time, value)


class QueryError(Exception):
    """Prometheus answered with an error (bad expression, ...): not worth retrying."""


def _parse_instant(data: Mapping[str, object]) -> list[Sample]:
    rtype, result = data["resultType"], data["result"]
    if rtype == "vector":
        assert isinstance(result, list)
        return [Sample(dict(r["metric"]), float(r["value"][1])) for r in result]
    if rtype in ("scalar", "string"):
        assert isinstance(result, list)
        return [Sample({}, float(result[1]))]
    raise QueryError(f"unexpected resultType {rtype!r} for an instant query")


def _parse_range(data: Mapping[str, object]) -> list[Series]:
    if data["resultType"] != "matrix":
        raise QueryError(f"unexpected resultType {data['resultType']!r} for a range query")
    result = data["result"]
    assert isinstance(result, list)
    return [Series(dict(r["metric"]), [(float(t), float(v)) for t, v in r["values"]]) for r in result]


# ---------------------------------------------------------------------------------------------
# Prometheus


@dataclass
class Prometheus:
    url: str
    proc: subprocess.Popen[bytes]
    workdir: Path
    data_dir: Path
    log_path: Path

    # -- HTTP API ------------------------------------------------------------------------------
    def api(self, path: str, params: Mapping[str, str] | Sequence[tuple[str, str]] = ()) -> object:
        query = urllib.parse.urlencode(params)
        url = f"{self.url}/api/v1/{path}" + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as e:  # 400/422 carry a JSON error body
            body = json.loads(e.read() or b"{}")
        if body.get("status") != "success":
            raise QueryError(f"{path} {dict(params)}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[Sample]:
        """Instant query; `at` is a unix time (default: now)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = repr(at)
        data = self.api("query", params)
        assert isinstance(data, dict)
        return _parse_instant(data)

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        params = {"query": expr, "start": repr(start), "end": repr(end), "step": repr(step)}
        data = self.api("query_range", params)
        assert isinstance(data, dict)
        return _parse_range(data)

    def value(self, expr: str, at: float | None = None) -> float | None:
        """The single value of `expr` (None when empty); more than one series is an error."""
        samples = self.query(expr, at)
        if len(samples) > 1:
            raise QueryError(f"{expr} returned {len(samples)} series, expected at most one")
        return samples[0].value if samples else None

    def label_values(self, label: str, match: str | None = None) -> list[str]:
        data = self.api(f"label/{label}/values", {"match[]": match} if match else {})
        assert isinstance(data, list)
        return [str(v) for v in data]

    def targets(self) -> list[dict[str, object]]:
        data = self.api("targets", {"state": "active"})
        assert isinstance(data, dict)
        return list(data["activeTargets"])

    def rules(self) -> list[dict[str, object]]:
        data = self.api("rules")
        assert isinstance(data, dict)
        return [rule for group in data["groups"] for rule in group["rules"]]

    # -- waiting -------------------------------------------------------------------------------
    def wait_for(
        self,
        expr: str,
        done: Callable[[list[Sample]], bool] = bool,
        *,
        timeout: float = 15.0,
        interval: float = 0.2,
    ) -> list[Sample]:
        """Poll `expr` until `done(samples)` (default: not empty); raise TimeoutError otherwise."""
        result = poll(
            lambda: self.query(expr),
            lambda r: done(r),  # type: ignore[arg-type]
            timeout=timeout,
            interval=interval,
            what=f"query {expr!r}",
        )
        assert isinstance(result, list)
        return result

    def wait_for_scrapes(self, job: str, n: int, *, timeout: float = 30.0) -> None:
        """Wait until every target of `job` has at least `n` successful scrapes in the TSDB."""
        self.wait_for(
            f'min(count_over_time(up{{job="{job}"}}[5m]) and on (instance) up{{job="{job}"}} == 1)',
            lambda r: bool(r) and r[0].value >= n,
            timeout=timeout,
        )

    # -- lifecycle -----------------------------------------------------------------------------
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def prometheus_config(
    targets: Mapping[str, Sequence[str]],
    *,
    scrape_interval: str = "1s",
    rule_files: Sequence[Path] = (),
) -> str:
    """A prometheus.yml (as JSON, which YAML accepts): one static job per `targets` key."""
    config = {
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "evaluation_interval": scrape_interval,
        },
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": list(addrs)}]} for job, addrs in targets.items()
        ],
    }
    return json.dumps(config, indent=2)


def start_prometheus(
    workdir: Path,
    targets: Mapping[str, Sequence[str]] | None = None,
    *,
    data_dir: Path | None = None,
    rule_files: Sequence[Path] = (),
    scrape_interval: str = "1s",
    retention: str = "15d",
    extra_args: Sequence[str] = (),
    config_text: str | None = None,
    agent: bool = False,
) -> Prometheus:
    """Start a real Prometheus on 127.0.0.1:<free port>, wait until /-/ready, and return it.

    Call `.stop()` when done (the `prometheus_running` context manager does). `retention` must cover
    the age of backfilled data, or Prometheus deletes those blocks at start. `config_text` replaces
    the generated config (targets, rule_files, scrape_interval are then ignored); `agent` starts it in
    agent mode (scrape and remote-write only: no queries, no rules)."""
    binary = require_binary(PROMETHEUS)
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    if config_text is None:
        config_text = prometheus_config(targets or {}, scrape_interval=scrape_interval, rule_files=rule_files)
    config.write_text(config_text)
    data_dir = data_dir or workdir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    if agent:
        storage = ["--enable-feature=agent", f"--storage.agent.path={data_dir}"]
    else:
        storage = [f"--storage.tsdb.path={data_dir}", f"--storage.tsdb.retention.time={retention}"]
    last_error = ""
    for _attempt in range(3):  # the free port can be taken between probe and bind
        port = free_port()
        log_path = workdir / f"prometheus-{port}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    *storage,
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=info",
                    *extra_args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        prom = Prometheus(f"http://127.0.0.1:{port}", proc, workdir, data_dir, log_path)
        try:
            poll(
                functools.partial(_ready, prom),
                bool,
                timeout=READY_TIMEOUT,
                what="prometheus /-/ready",
            )
            return prom
        except (TimeoutError, RuntimeError) as e:
            prom.stop()
            last_error = f"{e}\n--- prometheus log ---\n{prom.log()[-4000:]}"
            if "address already in use" not in prom.log():
                break
    raise RuntimeError(f"prometheus did not become ready: {last_error}")


def _ready(prom: Prometheus) -> bool:
    if prom.proc.poll() is not None:
        raise RuntimeError(f"prometheus exited with {prom.proc.returncode}:\n{prom.log()[-4000:]}")
    try:
        with urllib.request.urlopen(f"{prom.url}/-/ready", timeout=2) as resp:
            return bool(resp.status == 200)
    except urllib.error.HTTPError:  # 503 while starting
        return False


@contextlib.contextmanager
def prometheus_running(workdir: Path, *args: object, **kwargs: object) -> Iterator[Prometheus]:
    prom = start_prometheus(workdir, *args, **kwargs)  # type: ignore[arg-type]
    try:
        yield prom
    finally:
        prom.stop()


# ---------------------------------------------------------------------------------------------
# promtool


def promtool(*args: str | Path, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run promtool; the caller checks returncode (stdout+stderr are in .stdout)."""
    binary = require_binary(PROMTOOL)
    return subprocess.run(
        [binary, *map(str, args)],
        capture_output=False,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )


def backfill(openmetrics: Path, data_dir: Path) -> str:
    """`promtool tsdb create-blocks-from openmetrics FILE DATADIR`; returns promtool's output."""
    data_dir.mkdir(parents=True, exist_ok=True)
    done = promtool("tsdb", "create-blocks-from", "openmetrics", openmetrics, data_dir)
    if done.returncode != 0:
        raise RuntimeError(f"promtool backfill failed ({done.returncode}):\n{done.stdout}")
    return done.stdout


# ---------------------------------------------------------------------------------------------
# A stand-in exporter


class ExpositionServer:
    """Serves `render(n)` at /metrics, n = 1, 2, 3, ... per scrape (text format 0.0.4).

    Runs in a daemon thread on 127.0.0.1:<free port>; use as a context manager."""

    def __init__(self, render: Callable[[int], str]) -> None:
        self.render = render
        self.scrapes = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                with outer._lock:
                    outer.scrapes += 1
                    body = outer.render(outer.scrapes).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.address = f"127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ExpositionServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)


@contextlib.contextmanager
def exporter_process(
    argv: Sequence[str],
    workdir: Path,
    *,
    timeout: float = 20.0,
    env: Mapping[str, str] | None = None,
    check_exit: bool = True,
) -> Iterator[str]:
    """Run a real exporter (e.g. `logmetrics serve`) and yield its HOST:PORT once /metrics answers.

    In `argv`, `{listen}` becomes 127.0.0.1:<free port> and `{port}` the port alone. At the end the
    process gets SIGTERM and, with `check_exit`, must exit 0 within 10 s. Its stdout+stderr go to
    workdir/exporter.log."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    address = f"127.0.0.1:{port}"
    log_path = workdir / "exporter.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [a.replace("{listen}", address).replace("{port}", str(port)) for a in argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )

    def serving() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"exporter exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=2) as resp:
            return bool(resp.status == 200)

    try:
        poll(serving, bool, timeout=timeout, what=f"{argv[0]} serving /metrics on {address}")
        yield address
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
                raise RuntimeError(f"exporter ignored SIGTERM for 10 s:\n{log_path.read_text()[-4000:]}") from None
    if check_exit and proc.returncode != 0:
        raise RuntimeError(f"exporter exited with {proc.returncode} on SIGTERM:\n{log_path.read_text()[-4000:]}")


_SCALED_SUFFIXES = ("_total", "_bucket", "_count", "_sum")
_SAMPLE_RE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?P<labels>\{.*\})?\s+(?P<value>\S+)(?P<rest>.*)$")


def grow_counters(exposition: str, factor: float) -> str:
    """The exposition with every counter and histogram sample (`_total`, `_bucket`, `_count`,
    `_sum`) multiplied by `factor` (histograms stay cumulative); gauges and `_created` unchanged.
    Serving `grow_counters(text, n)` on scrape n gives rate() something to see."""
    out = []
    for line in exposition.splitlines():
        m = _SAMPLE_RE.match(line)
        if m and m["name"].endswith(_SCALED_SUFFIXES):
            value = float(m["value"]) * factor
            line = f"{m['name']}{m['labels'] or ''} {value!r}{m['rest']}"
        out.append(line)
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# Metric and label names


# logmetrics' own metrics (names fixed by issue 8) and their label names.
SELF_METRICS: dict[str, tuple[str, ...]] = {
    "logmetrics_records_read_total": (),
    "logmetrics_records_skipped_total": ("reason",),
    "logmetrics_http_access_lines_total": ("route", "status"),
    "logmetrics_log_lines_total": ("level",),
    "logmetrics_bytes_read_total": ("source",),
    "logmetrics_rotations_total": ("source",),
    "logmetrics_truncations_total": ("source",),
    "logmetrics_lag_bytes": ("source",),
    "logmetrics_lag_seconds": (),
    "logmetrics_last_record_timestamp_seconds": (),
    "logmetrics_state_writes_total": (),
    "logmetrics_state_write_failures_total": (),
    "logmetrics_journalctl_restarts_total": (),
    "logmetrics_series_dropped_total": ("family",),
}
# Labels every scraped series has (target labels), and the series Prometheus makes per scrape.
TARGET_LABELS = ("job", "instance")
SCRAPE_SERIES: dict[str, tuple[str, ...]] = {"up": ()}


def _exposed_names() -> dict[str, tuple[str, ...]]:
    names: dict[str, tuple[str, ...]] = {}
    for fam in FAMILIES:
        if fam.type == "counter":
            base = fam.name.removesuffix("_total")
            names[f"{base}_total"] = fam.labels
        elif fam.type == "gauge":
            names[fam.name] = fam.labels
        else:
            names[f"{fam.name}_bucket"] = (*fam.labels, "le")
            names[f"{fam.name}_sum"] = fam.labels
            names[f"{fam.name}_count"] = fam.labels
    names.update(SELF_METRICS)
    names.update(SCRAPE_SERIES)
    return {name: (*labels, *TARGET_LABELS) for name, labels in names.items()}


# Every series name a Prometheus scraping logmetrics can hold, with its label names.
EXPOSED_LABELS: dict[str, tuple[str, ...]] = _exposed_names()

_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
    "offset", "inf", "nan", "atan2",
}  # fmt: skip
_AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
    "quantile",
}  # fmt: skip
_TOKEN_RE = re.compile(
    r"""(?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
      | (?P<duration>\[[^\]]*\])
      | (?P<number>(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)(?:ms|[smhdwy])?)
      | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
      | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^=<>(){},])
      | (?P<space>\s+)
    """,
    re.VERBOSE,
)


@dataclass
class PromqlNames:
    """Metric names in an expression; label names per place they are used."""

    metrics: set[str] = field(default_factory=set)
    # (metric, label) for each matcher in `metric{label=...}`
    matchers: set[tuple[str, str]] = field(default_factory=set)
    # (labels of a `by (...)`, metrics aggregated by it) for each by-clause
    groupings: list[tuple[tuple[str, ...], frozenset[str]]] = field(default_factory=list)
    # labels of on(...)/ignoring(...)/group_left(...)/group_right(...)/without(...)
    join_labels: set[str] = field(default_factory=set)


def _tokens(expr: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN_RE.match(expr, pos)
        if m is None:
            raise ValueError(f"cannot tokenize PromQL at {expr[pos : pos + 30]!r} in {expr!r}")
        kind = m.lastgroup
        assert kind is not None
        if kind != "space":
            out.append((kind, m.group()))
        pos = m.end()
    return out


def _matching(tokens: list[tuple[str, str]], open_at: int) -> int:
    """Index of the `)` closing the `(` at `open_at`."""
    depth = 0
    for i in range(open_at, len(tokens)):
        if tokens[i] == ("op", "("):
            depth += 1
        elif tokens[i] == ("op", ")"):
            depth -= 1
            if depth == 0:
                return i
    raise ValueError("unbalanced parentheses")


def _opening(tokens: list[tuple[str, str]], close_at: int) -> int:
    depth = 0
    for i in range(close_at, -1, -1):
        if tokens[i] == ("op", ")"):
            depth += 1
        elif tokens[i] == ("op", "("):
            depth -= 1
            if depth == 0:
                return i
    raise ValueError("unbalanced parentheses")


def _metrics_in(tokens: list[tuple[str, str]]) -> set[str]:
    found = set()
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ("", "")
        if kind == "ident" and text in ("by", "without", "on", "ignoring", "group_left", "group_right"):
            if nxt == ("op", "("):  # a label list, not metrics
                i = _matching(tokens, i + 1) + 1
                continue
        if kind == "op" and text == "{":  # matchers: skip to `}`
            while tokens[i] != ("op", "}"):
                i += 1
            i += 1
            continue
        is_aggregation = text in _AGGREGATIONS and nxt in (("ident", "by"), ("ident", "without"))
        if kind == "ident" and text not in _KEYWORDS and nxt != ("op", "(") and not is_aggregation:
            found.add(text)
        i += 1
    return found


def promql_names(expr: str) -> PromqlNames:
    """Metric and label names used in `expr` (Grafana variables must be substituted first).

    A small tokenizer, not a full parser: enough for the dashboard's and the alerts' expressions.
    Function and aggregation names are told apart from metric names by the `(` that follows."""
    tokens = _tokens(expr)
    names = PromqlNames(metrics=_metrics_in(tokens))
    for i, (kind, text) in enumerate(tokens):
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ("", "")
        if kind == "op" and text == "{":  # metric{label op "value", ...}
            metric = tokens[i - 1][1] if i > 0 and tokens[i - 1][0] == "ident" else "{}"
            j = i + 1
            while tokens[j] != ("op", "}"):
                if tokens[j][0] == "ident" and tokens[j + 1][1] in ("=", "!=", "=~", "!~"):
                    names.matchers.add((metric, tokens[j][1]))
                j += 1
        if kind == "ident" and text in ("by", "without", "on", "ignoring", "group_left", "group_right"):
            if nxt != ("op", "("):
                continue
            close = _matching(tokens, i + 1)
            labels = tuple(t for k, t in tokens[i + 2 : close] if k == "ident")
            if text != "by":
                names.join_labels.update(labels)
                continue
            # `agg by (l) (body)` or `agg (body) by (l)`
            if close + 1 < len(tokens) and tokens[close + 1] == ("op", "("):
                body = tokens[close + 1 : _matching(tokens, close + 1) + 1]
            elif i > 0 and tokens[i - 1] == ("op", ")"):
                body = tokens[_opening(tokens, i - 1) : i]
            else:
                raise ValueError(f"cannot find the aggregated expression of `by ({labels})` in {expr!r}")
            names.groupings.append((labels, frozenset(_metrics_in(body))))
    return names


def check_names(expr: str, exposed: Mapping[str, Sequence[str]] = EXPOSED_LABELS) -> list[str]:
    """Problems with the names in `expr`: metrics logmetrics does not expose, matchers on labels the
    metric lacks, `by` labels missing from a metric aggregated, join labels nobody has."""
    names = promql_names(expr)
    problems = [f"unknown metric {m}" for m in sorted(names.metrics) if m not in exposed]
    for metric, label in sorted(names.matchers):
        if metric in exposed and label not in exposed[metric] and label != "__name__":
            problems.append(f"{metric} has no label {label}")
    for labels, metrics in names.groupings:
        for metric in sorted(metrics & exposed.keys()):
            for label in labels:
                if label not in exposed[metric]:
                    problems.append(f"by ({label}): {metric} has no label {label}")
    everyone = {label for m in names.metrics & exposed.keys() for label in exposed[m]}
    problems += [f"join label {label} is on no metric used" for label in sorted(names.join_labels - everyone)]
    return problems
