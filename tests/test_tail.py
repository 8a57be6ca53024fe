"""`logmetrics tail`: JSON output, every filter, -n from the end, skipped lines, the line and
table renderers, following a real file across rotation, and the real command in tmux.

Expected counts are computed here from the samples with the standard library (json, fnmatch),
not with logmetrics' parser. Waits poll for a condition with a deadline; none sleeps blindly.
"""

from __future__ import annotations

import fnmatch
import io
import json
import os
import pty
import random
import re
import select
import shutil
import signal
import subprocess
import sys
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from logmetrics.aggregate import Aggregator
from logmetrics.cli import app
from logmetrics.parse import Parser
from logmetrics.tail import format_event, read_back, read_range
from logmetrics.view import LIVE_COLUMNS, LineWriter, TableFooter, live_table

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "fixtures" / "sample-logs" / "litellm-1.109.1"
REQUESTS = SAMPLES / "requests-runA.jsonl"
PAYLOADS = SAMPLES / "standard-logging.jsonl"
STDOUT_LOG = SAMPLES / "proxy-stdout.log"
TIMEOUT = 15.0
LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


# -- independent expectations (stdlib only) ------------------------------------------------------


def payloads(path: Path) -> list[dict[str, Any]]:
    """Each request of a sample as {time, status, names, provider, error}, from the raw JSON."""
    out = []
    for line in path.read_text().splitlines():
        d = json.loads(line)
        p = d.get("payload", d)
        model = p.get("model") or ""
        out.append({
            "time": d.get("time", p.get("endTime")),
            "status": "failure" if d.get("hook") == "failure" or p["status"] == "failure" else "success",
            "names": {p.get("model_group") or "", model.split("/", 1)[-1]} - {""},
            "provider": p.get("custom_llm_provider"),
            "error": p.get("error_str") or "",
        })
    return out


def iso(t: float) -> str:
    return datetime.fromtimestamp(t).astimezone().isoformat()


def run(*args: str) -> list[dict[str, Any]]:
    result = CliRunner().invoke(app, ["tail", "--no-follow", "-o", "json", *args])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def text(*args: str) -> list[str]:
    result = CliRunner().invoke(app, ["tail", "--no-follow", *args])
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


# -- --output json ------------------------------------------------------------------------------

REQUEST_FIELDS = {
    "type", "kind", "time", "labels", "deployment", "proxy", "state", "stream", "level", "spend",
    "prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "cache_creation_tokens",
    "audio_input_tokens", "reasoning_tokens", "audio_output_tokens", "provider_cache_read_tokens",
    "provider_cache_creation_tokens", "images", "video_seconds", "total_latency", "api_latency", "ttft",
    "queue_time", "overhead_latency", "latency_per_output_token", "cache_hit", "zero_cost_reason",
    "error_message",
}
LOG_FIELDS = {"type", "time", "level", "component", "method", "route", "status", "call_id"}


@pytest.mark.parametrize("path", [REQUESTS, PAYLOADS, SAMPLES / "requests-runA.jsonl.gz"], ids=lambda p: p.name)
def test_json_every_request(path: Path) -> None:
    src = payloads(REQUESTS if path.suffix == ".gz" else path)
    got = run("-n", "all", str(path))
    assert len(got) == len(src) == 31
    assert all(set(e) == REQUEST_FIELDS and e["type"] == "request" for e in got)
    assert [e["time"] for e in got] == pytest.approx([s["time"] for s in src])
    assert [e["kind"] != "success" for e in got] == [s["status"] == "failure" for s in src]


def test_docs_name_every_json_field() -> None:
    """docs/tail.md documents every field `-o json` prints (the field names are a public contract)."""
    from logmetrics.events import DeploymentState, Labels, LogEvent, RequestEvent

    doc = (ROOT / "docs" / "tail.md").read_text()
    names = {*RequestEvent.__struct_fields__, *LogEvent.__struct_fields__, *Labels.__struct_fields__,
             *DeploymentState.__struct_fields__, "type", "reason"}
    assert not {n for n in names if f"`{n}`" not in doc}
    assert set(REQUEST_FIELDS) == {"type", *RequestEvent.__struct_fields__}
    assert set(LOG_FIELDS) == {"type", *LogEvent.__struct_fields__}


def test_json_log_lines() -> None:
    raw = [json.loads(line) for line in STDOUT_LOG.read_text().splitlines()]
    got = run("-n", "all", str(STDOUT_LOG))
    assert len(got) == len(raw) == 64
    assert all(set(e) == LOG_FIELDS and e["type"] == "log" for e in got)
    assert [e["level"] for e in got] == [r["level"] for r in raw]


# -- filters ------------------------------------------------------------------------------------

SRC = payloads(REQUESTS)
T0 = SRC[0]["time"]


def matching(pred: Callable[[dict[str, Any]], bool]) -> int:
    return sum(1 for s in SRC if pred(s))


def glob_any(s: dict[str, Any], *globs: str) -> bool:
    return any(fnmatch.fnmatchcase(n, g) for n in s["names"] for g in globs)


FILTERS: list[tuple[str, list[str], int]] = [
    ("model-glob", ["--model", "gpt-4o*"], matching(lambda s: glob_any(s, "gpt-4o*"))),
    ("model-repeat", ["--model", "claude-*", "--model", "broken"],
     matching(lambda s: glob_any(s, "claude-*", "broken"))),
    ("model-deployment", ["--model", "gpt-4.1"], matching(lambda s: glob_any(s, "gpt-4.1"))),
    ("status-failure", ["--status", "failure"], matching(lambda s: s["status"] == "failure")),
    ("status-success", ["--status", "success"], matching(lambda s: s["status"] == "success")),
    ("level-error", ["--level", "error"], matching(lambda s: s["status"] == "failure")),
    ("level-info", ["--level", "INFO"], len(SRC)),
    ("level-critical", ["--level", "CRITICAL"], 0),
    ("provider", ["--provider", "anthropic"], matching(lambda s: s["provider"] == "anthropic")),
    ("provider-glob", ["--provider", "open*"], matching(lambda s: (s["provider"] or "").startswith("open"))),
    ("grep", ["--grep", "RATE LIMIT"], matching(lambda s: "rate limit" in s["error"].lower())),
    ("grep-none", ["--grep", "no such message"], 0),
    ("since", ["--since", iso(T0 + 2)], matching(lambda s: s["time"] >= T0 + 2)),
    ("until", ["--until", iso(T0 + 2)], matching(lambda s: s["time"] < T0 + 2)),
    ("since-duration", ["--since", "15m"], 0),  # the samples are older than that
    ("combined", ["--model", "gpt-4o-mini", "--status", "failure", "--provider", "openai"],
     matching(lambda s: glob_any(s, "gpt-4o-mini") and s["status"] == "failure" and s["provider"] == "openai")),
]


@pytest.mark.parametrize(("name", "args", "want"), FILTERS, ids=[f[0] for f in FILTERS])
@pytest.mark.parametrize("path", [REQUESTS, PAYLOADS], ids=["records", "payloads"])
def test_filter(name: str, args: list[str], want: int, path: Path) -> None:
    assert len(run("-n", "all", *args, str(path))) == want
    assert len(text("-n", "all", *args, str(path))) == want


def test_filter_counts_are_not_trivial() -> None:
    counts = {name: want for name, _, want in FILTERS}
    assert counts["model-glob"] == 18 and counts["status-failure"] == 10 and counts["provider"] == 8
    assert counts["grep"] == 3 and counts["combined"] == 2 and 0 < counts["since"] < 31


@pytest.mark.parametrize(("level", "want"), [("DEBUG", 64), ("WARNING", 14), ("ERROR", 10), ("WARN", 14)])
def test_level_on_log_lines(level: str, want: int) -> None:
    raw = [json.loads(line)["level"] for line in STDOUT_LOG.read_text().splitlines()]
    norm = {"WARN": "WARNING"}.get(level, level)
    assert sum(1 for lv in raw if LEVELS.index(lv) >= LEVELS.index(norm)) == want
    assert len(run("-n", "all", "--level", level, str(STDOUT_LOG))) == want


def test_requests_only_and_request_filters_hide_log_lines(tmp_path: Path) -> None:
    mixed = tmp_path / "mixed.log"
    mixed.write_bytes(REQUESTS.read_bytes() + STDOUT_LOG.read_bytes() + b"garbage\n")
    assert len(run("-n", "all", str(mixed))) == 31 + 64 + 1
    assert len(run("-n", "all", "--requests-only", str(mixed))) == 31
    assert len(run("-n", "all", "--status", "success", str(mixed))) == 21
    assert len(run("-n", "all", "--level", "ERROR", str(mixed))) == 10 + 10  # failed requests + ERROR lines


# -- -n from the end ----------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 3, 10, 31, 50])
def test_last_n(n: int) -> None:
    every = run("-n", "all", str(REQUESTS))
    assert run("-n", str(n), str(REQUESTS)) == (every[-n:] if n else [])


def test_last_n_counts_shown_records() -> None:
    failures = run("-n", "all", "--status", "failure", str(REQUESTS))
    assert run("-n", "4", "--status", "failure", str(REQUESTS)) == failures[-4:]


def test_last_n_across_rotated_archives(tmp_path: Path) -> None:
    """requests.log.2.gz (oldest), requests.log.1, requests.log: given in any order, read oldest first."""
    lines = REQUESTS.read_bytes().splitlines(keepends=True)
    import gzip

    (tmp_path / "requests.log.2.gz").write_bytes(gzip.compress(b"".join(lines[:10])))
    (tmp_path / "requests.log.1").write_bytes(b"".join(lines[10:20]))
    (tmp_path / "requests.log").write_bytes(b"".join(lines[20:]))
    names = [str(tmp_path / n) for n in ("requests.log", "requests.log.2.gz", "requests.log.1")]
    every = run("-n", "all", str(REQUESTS))
    assert run("-n", "all", *names) == every
    assert run("-n", "15", *names) == every[-15:]
    assert run("-n", "25", *names) == every[-25:]  # into the .gz


def test_last_n_reads_only_the_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """-n 5 on a 50 MB file reads a block or two, not the file."""
    big = tmp_path / "big.log"
    line = REQUESTS.read_bytes().splitlines(keepends=True)[0]
    with open(big, "wb") as f:
        for _ in range(50_000_000 // len(line)):
            f.write(line)
    read = []
    real = os.pread

    def counting(fd: int, n: int, off: int) -> bytes:
        read.append(n)
        return real(fd, n, off)

    monkeypatch.setattr(os, "pread", counting)
    assert len(run("-n", "5", str(big))) == 5
    assert sum(read) < 1 << 20


def test_since_with_all_starts_near_the_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """-n all --since reads backwards to the first record before --since, then forwards from there."""
    lines = REQUESTS.read_bytes().splitlines(keepends=True)
    big = tmp_path / "big.log"
    old = json.loads(lines[0])
    old["time"] -= 3600
    filler = json.dumps(old).encode() + b"\n"
    with open(big, "wb") as f:
        for _ in range(40_000_000 // len(filler)):
            f.write(filler)  # an hour older, again and again
        f.write(b"".join(lines))
    read: list[int] = []
    real = os.pread

    def counting(fd: int, n: int, off: int) -> bytes:
        read.append(n)
        return real(fd, n, off)

    monkeypatch.setattr(os, "pread", counting)
    for since, want in ((SRC[0]["time"], 31), (SRC[20]["time"], 11)):
        read.clear()
        got = run("-n", "all", "--since", iso(since), str(big))
        assert len(got) == sum(1 for s in SRC if s["time"] >= since) == want
        assert sum(read) < 1 << 20


def test_since_with_all_looks_past_a_record_without_time(tmp_path: Path) -> None:
    """A record that gives no time (a compact record without timestamp, a hook record without
    `time`: time 0) is not where reading may start: the records before it are as new."""
    lines = REQUESTS.read_bytes().splitlines(keepends=True)
    timeless = b'{"level": "INFO", "model": "timeless", "provider": "p", "latency_ms": 5}\n'
    log = tmp_path / "r.log"
    log.write_bytes(b"".join(lines[:20]) + timeless + b"".join(lines[20:]))
    since = SRC[10]["time"]
    got = run("-n", "all", "--since", iso(since), str(log))
    assert len(got) == sum(1 for s in SRC if s["time"] >= since) == 21


@pytest.mark.parametrize("cut", [0, 5, 12, 30])
def test_since_across_rotated_files(tmp_path: Path, cut: int) -> None:
    lines = REQUESTS.read_bytes().splitlines(keepends=True)
    (tmp_path / "r.log.1").write_bytes(b"".join(lines[:cut]))
    (tmp_path / "r.log").write_bytes(b"".join(lines[cut:]))
    for since in (SRC[0]["time"], SRC[10]["time"], SRC[25]["time"], SRC[-1]["time"] + 1):
        got = run("-n", "all", "--since", iso(since), str(tmp_path / "r.log.1"), str(tmp_path / "r.log"))
        assert len(got) == sum(1 for s in SRC if s["time"] >= since), (cut, since)


LINE_CASES = [
    ("plain", b"a\nbb\nccc\n"),
    ("no-final-newline", b"a\nbb\nccc"),
    ("crlf", b"a\r\nbb\r\n"),
    ("blank-lines", b"\n\na\n\n"),
    ("empty", b""),
    ("one-long", b"x" * 200_000 + b"\n"),
    ("long-between", b"a\n" + b"y" * 150_000 + b"\nb\n" + b"z" * 70_000 + b"\nc"),
]


@pytest.mark.parametrize(("name", "data"), LINE_CASES, ids=[c[0] for c in LINE_CASES])
def test_read_back_matches_forward_split(tmp_path: Path, name: str, data: bytes) -> None:
    path = tmp_path / "f"
    path.write_bytes(data)
    limit = 100_000
    parts = data.split(b"\n")
    if parts and parts[-1] == b"":
        parts.pop()
    want = [None if len(p) > limit else p.removesuffix(b"\r") for p in parts]
    back = list(read_back(str(path), None, limit))
    assert [g for _, g in reversed(back) if g != b""] == [w for w in want if w != b""]
    assert all(line is None or data[off:off + len(line)] == line for off, line in back)
    assert all(off == 0 or data[off - 1:off] == b"\n" for off, _ in back)  # offsets are line starts
    assert [g for g in read_range(str(path), 0, None, limit) if g != b""] == [w for w in want if w != b""]


def test_read_back_random(tmp_path: Path) -> None:
    rng = random.Random(7)
    for i in range(50):
        parts = [b"q" * rng.choice([0, 1, 5, 900, 70_000, 140_000]) for _ in range(rng.randint(0, 12))]
        data = b"\n".join(parts) + (b"\n" if rng.random() < 0.5 else b"")
        path = tmp_path / f"r{i}"
        path.write_bytes(data)
        want = [None if len(p) > 100_000 else p for p in data.split(b"\n")]
        if want and want[-1] == b"":
            want.pop()
        back = list(read_back(str(path), None, 100_000))
        assert [g for _, g in reversed(back) if g != b""] == [w for w in want if w != b""], i
        for off, _ in back[:: max(1, len(back) // 3)]:  # reading forwards from any line start
            ahead = [g for o, g in reversed(back) if o >= off and g != b""]
            assert [g for g in read_range(str(path), off, None, 100_000) if g != b""] == ahead, (i, off)


# -- skipped lines ------------------------------------------------------------------------------

BAD = b"\n".join([
    b'garbage with secret sk-123',
    b'{"not": "a record", "secret": "sk-456"}',
    b'{"truncated": ',
    b"\xff\xfe{invalid utf-8 sk-789",
    b"{" + b'"x":"' + b"s" * 2_000_000 + b'"}',
]) + b"\n"


def test_skipped_lines_show_reason_not_content(tmp_path: Path) -> None:
    path = tmp_path / "bad.log"
    path.write_bytes(REQUESTS.read_bytes()[:0] + BAD + REQUESTS.read_bytes().splitlines(keepends=True)[0])
    out = text("-n", "all", str(path))
    assert out[:5] == ["skipped: not_json", "skipped: unknown_shape", "skipped: not_json", "skipped: not_json",
                       "skipped: too_long"]
    assert "gpt-4o-mini -> gpt-4o-mini" in out[5]
    assert "sk-" not in "\n".join(out)
    assert [e["reason"] for e in run("-n", "3", str(path))[:2]] == ["not_json", "too_long"]
    assert len(run("-n", "all", "--requests-only", str(path))) == 1


# -- the line renderer --------------------------------------------------------------------------


def render(segments: list[tuple[str, str]], **kw: Any) -> str:
    console = Console(file=io.StringIO(), width=100, color_system=None, **kw)
    return LineWriter(console).render(segments)


def test_line_fields() -> None:
    parser = Parser()
    lines = REQUESTS.read_bytes().splitlines()
    stream, failure = parser.parse(lines[13]), parser.parse(lines[19])
    assert stream is not None and failure is not None
    s = render(format_event(stream))
    when = datetime.fromtimestamp(1795333021.218715).astimezone()
    assert s.startswith(when.strftime("%Y-%m-%d %H:%M:%S.218 ") + (when.tzname() or ""))
    assert s.endswith(" INFO  gpt-4o-mini -> gpt-4o-mini openai 508ms ttft 475ms 14/1 tok $0.000003 200")
    f = render(format_event(failure))
    assert f.endswith(" ERROR rate-limited -> gpt-4o openai 429 Openai.RateLimitError")
    assert "mock" not in f  # the error message is for --grep, not shown


@pytest.mark.parametrize("millis", ["000", "099", "100", "123", "500", "999"])
def test_line_shows_the_records_milliseconds(millis: str) -> None:
    """A json_logs or compact record's ".123" is a float just below or above it: shown as written."""
    stamp = f"2025-06-15T12:30:00.{millis}"
    record = {"timestamp": stamp, "level": "INFO", "model": "m", "provider": "p", "latency_ms": 5}
    event = Parser().parse(json.dumps(record).encode())
    assert event is not None
    assert render(format_event(event)).startswith(stamp.replace("T", " ") + " ")


def test_line_colours_and_no_color() -> None:
    parser = Parser()
    failure = parser.parse(REQUESTS.read_bytes().splitlines()[19])
    assert failure is not None
    console = Console(file=io.StringIO(), width=100, color_system="256", force_terminal=True)
    coloured = LineWriter(console).render(format_event(failure))
    assert "\x1b[1;31mERROR\x1b[0m" in coloured
    no_color = Console(file=io.StringIO(), width=100, color_system="256", force_terminal=True, no_color=True)
    assert "\x1b[3" not in LineWriter(no_color).render(format_event(failure))


def test_log_lines_are_dimmed_whole() -> None:
    parser = Parser()
    access = parser.parse(STDOUT_LOG.read_bytes().splitlines()[-5])
    assert access is not None
    plain = render(format_event(access))
    assert plain.endswith(" INFO  uvicorn.access GET /metrics/ 200")
    console = Console(file=io.StringIO(), width=100, color_system="256", force_terminal=True)
    coloured = LineWriter(console).render(format_event(access))
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == plain
    codes = [params.split(";") for params in re.findall(r"\x1b\[([0-9;]*)m", coloured) if params != "0"]
    assert codes and all("2" in params for params in codes)  # every styled segment is dim


def test_control_characters_in_labels_never_reach_the_terminal(tmp_path: Path) -> None:
    line = json.loads(REQUESTS.read_text().splitlines()[0])
    line["payload"]["model_group"] = "evil\x1b[2J\x07model"
    path = tmp_path / "evil.log"
    path.write_text(json.dumps(line) + "\n")
    out = text(str(path))
    assert "\x1b" not in out[0] and "evil?[2J?model" in out[0]


# -- the live table -----------------------------------------------------------------------------


def agg_of(path: Path, by: str = "model") -> Aggregator:
    agg = Aggregator(by=by)
    parser = Parser()
    for line in path.read_bytes().splitlines():
        agg.add(parser.parse(line))
    return agg


def table_text(agg: Aggregator, width: int = 100, sort: str = "requests", **kw: Any) -> list[str]:
    console = Console(file=io.StringIO(), width=width, color_system=None, **kw)
    newest = agg.newest_time or 0.0
    console.print(live_table(agg, now=newest, footer=TableFooter("app.log", 2, 1536, newest - 3), sort=sort))
    out = console.file.getvalue()  # type: ignore[attr-defined]
    return [line.rstrip() for line in out.splitlines()]


def test_live_table_rows_and_totals() -> None:
    agg = agg_of(REQUESTS)
    out = table_text(agg)
    assert out[0].split() == ["model", "req/s", "requests", "▼", "err", "%", "p50", "p95", "p99", "in", "tok/s",
                              "out", "tok/s", "spend", "$"]
    rows = {line.split()[0]: line.split() for line in out[2:]}
    assert rows["gpt-4o-mini"][2] == "15" and rows["gpt-4o-mini"][3] == "13.3"
    assert rows["claude-haiku"][2] == "8" and rows["broken"][3] == "100.0"
    assert rows["total"][2] == "31" and rows["total"][3] == "32.3"
    by_requests = sorted(agg.models.items(), key=lambda kv: (-kv[1].requests, kv[0]))
    assert [line.split()[0] for line in out[2:7]] == [name for name, _ in by_requests]
    assert out[-1] == "skipped 2 · lag 1 KiB · newest record 3.0s ago · app.log"
    assert all(len(line) <= 100 for line in out)


@pytest.mark.parametrize(("age", "text"), [(0.25, "0.2s"), (59.9, "59.9s"), (61, "1m 1s"), (7322, "2h 2m"),
                                           (117245.5, "1d 8h"), (-3, "0.0s")])
def test_footer_age(age: float, text: str) -> None:
    agg = agg_of(REQUESTS)
    now = agg.newest_time or 0.0
    console = Console(file=io.StringIO(), width=100, color_system=None)
    console.print(live_table(agg, now=now + age, footer=TableFooter(newest=now)))
    assert console.file.getvalue().splitlines()[-1] == f"skipped 0 · newest record {text} ago"  # type: ignore[attr-defined]


def test_live_table_ttft_column_and_by_deployment() -> None:
    out = table_text(agg_of(PAYLOADS, by="deployment"), width=140)
    assert out[0].split()[0] == "deployment" and "ttft" in out[0]
    assert {line.split()[0] for line in out[2:7]} == {"gpt-4o-mini", "claude-3-5-haiku-20241022", "gpt-4.1",
                                                     "gpt-4o", "does-not-exist"}


@pytest.mark.parametrize("width", [40, 60, 80, 100, 140])
def test_live_table_drops_columns_in_order(width: int) -> None:
    out = table_text(agg_of(PAYLOADS), width=width)
    assert all(len(line) <= width for line in out[:-1])
    order = sorted((c for c in LIVE_COLUMNS if c.drop), key=lambda c: c.drop)
    shown = [c.header for c in LIVE_COLUMNS if c.header in out[0] and c.key != "model"]
    dropped = [c.header for c in order if c.header not in shown]
    assert dropped == [c.header for c in order[: len(dropped)]]  # a prefix of the drop order
    assert "requests" in out[0]


@pytest.mark.parametrize(("sort", "first"), [("errors", "broken"), ("model", "broken"), ("p95", "gpt-4o-mini"),
                                             ("requests", "gpt-4o-mini"), ("spend", "gpt-4o-mini")])
def test_live_table_sort(sort: str, first: str) -> None:
    out = table_text(agg_of(REQUESTS), width=60, sort=sort)
    assert out[2].split()[0] == first
    if sort != "model":
        assert "▼" in out[0]  # the sorted column is never dropped


@pytest.mark.parametrize(("width", "sort"), [(30, "p95"), (30, "requests"), (34, "spend"), (36, "errors")])
def test_live_table_narrow_keeps_requests_and_sort_column_whole(width: int, sort: str) -> None:
    """The model column gives way on a narrow terminal: with long deployment names it kept its
    24 cells, and at 30 columns `--sort p95` showed `req…` and an empty p95 column."""
    agg = agg_of(SAMPLES.parent / "litellm-1.109.1-callback" / "requests.log", by="deployment")
    out = table_text(agg, width=width, sort=sort)
    header = next(c.header for c in LIVE_COLUMNS if c.key == sort)
    assert "requests" in out[0] and f"{header} ▼" in out[0], out
    assert all(len(line) <= width for line in out[:-1])
    values = {line.split()[-1] for line in out[2:-3]}  # the sort column is the last one shown
    assert "…" not in out[0] and not any("…" in v for v in values) and len(values) > 1, out


@pytest.mark.parametrize("name", ["模型-中文-名字-テスト版", "🚀" * 10])
def test_live_table_measures_wide_characters_in_cells(name: str) -> None:
    """A CJK or emoji model name takes two terminal cells a character: measured as one, the model
    column was sized at half the name and cut it (`模型-中文-名…`) on a terminal with room to spare."""
    agg = Aggregator()
    agg.add(Parser().parse(REQUESTS.read_text().splitlines()[0].replace("gpt-4o-mini", name).encode()))
    out = table_text(agg, width=140)
    row = next(line for line in out if line.startswith(name[0]))
    assert row.split()[0] == name and "…" not in row
    cells = {sum(1 + (unicodedata.east_asian_width(c) in "WF") for c in line) for line in out[:-1]}
    assert len(cells) == 1  # every line as wide as the rules


def test_live_table_fits_24_rows() -> None:
    agg = Aggregator()
    parser = Parser()
    base = json.loads(REQUESTS.read_text().splitlines()[0])
    for i in range(40):
        base["payload"]["model_group"] = f"model-{i:02d}"
        agg.add(parser.parse(json.dumps(base).encode()))
    out = table_text(agg, width=80, height=24, force_terminal=True)
    assert len(out) <= 23 and any("more" in line for line in out) and out[-2].startswith("total")


# -- following a real file ----------------------------------------------------------------------


class Proc:
    """`logmetrics tail` as a child process; its stdout lines are read with a deadline."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "NO_COLOR": "1"}
        self.p = subprocess.Popen([sys.executable, "-m", "logmetrics", "tail", *args], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=env, cwd=ROOT)
        self.buf = b""
        self.seen: list[str] = []

    def lines(self, n: int) -> list[str]:
        assert self.p.stdout is not None
        deadline = time.monotonic() + TIMEOUT
        while self.buf.count(b"\n") < n:
            left = deadline - time.monotonic()
            assert left > 0, f"timed out: {self.buf!r}"
            ready, _, _ = select.select([self.p.stdout], [], [], left)
            if ready:
                chunk = os.read(self.p.stdout.fileno(), 65536)
                assert chunk, f"exited: {self.buf!r} {self.p.stderr.read() if self.p.stderr else b''!r}"
                self.buf += chunk
        *got, self.buf = self.buf.split(b"\n", n)
        return [g.decode() for g in got]

    def until(self, pred: Callable[[str], bool]) -> list[str]:
        """Lines up to and including the first that satisfies `pred`; all are kept in `seen`."""
        got = []
        while True:
            got += self.lines(1)
            self.seen.append(got[-1])
            if pred(got[-1]):
                return got

    def stop(self) -> int:
        self.p.send_signal(signal.SIGINT)
        try:
            return self.p.wait(TIMEOUT)
        finally:
            for pipe in (self.p.stdout, self.p.stderr):
                if pipe is not None:
                    pipe.close()


def test_follow_across_rotation(tmp_path: Path) -> None:
    lines = REQUESTS.read_bytes().splitlines(keepends=True)
    log = tmp_path / "requests.log"
    log.write_bytes(b"".join(lines[:5]))
    proc = Proc("-n", "2", "-o", "json", str(log))
    try:
        first = [json.loads(x)["time"] for x in proc.lines(2)]
        assert first == pytest.approx([s["time"] for s in SRC[3:5]])
        with open(log, "ab") as f:
            f.write(b"".join(lines[5:8]))
        assert [json.loads(x)["time"] for x in proc.lines(3)] == pytest.approx([s["time"] for s in SRC[5:8]])
        log.rename(tmp_path / "requests.log.1")
        log.write_bytes(lines[8] + b"not json\n")
        got = [json.loads(x) for x in proc.lines(2)]
        assert got[0]["time"] == pytest.approx(SRC[8]["time"]) and got[1] == {"type": "skipped", "reason": "not_json"}
    finally:
        assert proc.stop() == 0


def test_follow_text_with_filter_and_partial_line(tmp_path: Path) -> None:
    lines = REQUESTS.read_bytes().splitlines(keepends=True)
    log = tmp_path / "requests.log"
    log.write_bytes(b"".join(lines[:19]) + lines[19][:50])  # a line being written
    proc = Proc("--status", "failure", str(log))
    try:
        with open(log, "ab") as f:
            f.write(lines[19][50:] + b"".join(lines[20:]))
        out = proc.lines(10)
        assert all(" ERROR " in line for line in out)
        assert "rate-limited -> gpt-4o openai 429 Openai.RateLimitError" in out[0]
    finally:
        assert proc.stop() == 0


def test_table_on_a_pipe_prints_snapshots(tmp_path: Path) -> None:
    lines = REQUESTS.read_bytes().splitlines(keepends=True)
    log = tmp_path / "requests.log"
    log.write_bytes(b"".join(lines[:4]))
    proc = Proc("--table", "--interval", "0.2", "-n", "all", str(log))
    try:
        totals = [line.split() for line in proc.until(lambda line: line.startswith("total"))]
        assert totals[-1][:3] == ["total", "0.0", "4"] and "\x1b" not in "".join(proc.seen)
        with open(log, "ab") as f:
            f.write(b"".join(lines[4:9]))
        while (row := proc.until(lambda line: line.startswith("total"))[-1].split())[2] != "9":
            assert row[2] == "4"
    finally:
        assert proc.stop() == 0


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    for args in (["--status", "maybe", str(REQUESTS)], ["--level", "LOUD", str(REQUESTS)], [str(tmp_path / "nope")],
                 ["-n", "x", str(REQUESTS)], ["--table", "-o", "json", str(REQUESTS)], ["--sort", "colour"],
                 # not a number of seconds: rich's Live raised an AssertionError (a traceback), a pipe got a
                 # snapshot in a busy loop (nan) or nothing at all, exit 0 (inf, 1e300: past the longest wait)
                 *(["--table", "--interval", v, str(REQUESTS)] for v in ("nan", "inf", "1e300", "-1", "0")),
                 # every line showed as `skipped: too_long`, exit 0 (serve and replay refuse it)
                 *(["--max-line-bytes", v, str(REQUESTS)] for v in ("0", "-1"))):
        done = subprocess.run([sys.executable, "-m", "logmetrics", "tail", "--no-follow", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=TIMEOUT)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.startswith("logmetrics: ") and done.stderr.count("\n") == 1, done.stderr
        assert "Traceback" not in done.stderr


def test_stdin() -> None:
    data = REQUESTS.read_bytes()
    every = run("-n", "all", str(REQUESTS))
    last = CliRunner().invoke(app, ["tail", "--no-follow", "-n", "3", "-o", "json", "-"], input=data)
    assert [json.loads(x) for x in last.stdout.splitlines()] == every[-3:]
    streamed = CliRunner().invoke(app, ["tail", "-o", "json", "-"], input=data)  # follows to end of input
    assert [json.loads(x) for x in streamed.stdout.splitlines()] == every


@pytest.mark.parametrize("args", [[], ["-"]], ids=["no-path", "dash"])
def test_terminal_stdin_without_a_path_says_so(args: list[str]) -> None:
    """`logmetrics tail` alone on a terminal waits for records typed in: one line on stderr says so
    (with `-`, asked for, nothing is said). A real pseudo-terminal; Ctrl-D ends the input."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "logmetrics", "tail", "--no-follow", *args], cwd=ROOT,
                                stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        os.close(slave)
        os.write(master, b"\x04")  # Ctrl-D: end of input
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        os.close(master)
    assert proc.returncode == 0, err
    hint = b"logmetrics: no PATH given: reading records from the terminal (Ctrl-D ends)"
    assert err.startswith(hint) if not args else hint not in err
    assert err.count(b"\n") == (1 if not args else 0) and b"Traceback" not in err


def test_table_no_follow_prints_one_snapshot() -> None:
    result = CliRunner().invoke(app, ["tail", "--no-follow", "-n", "all", "--table", "--by", "deployment",
                                      str(REQUESTS)], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    assert result.stdout.count("total") == 1 and result.stdout.startswith("deployment")
    assert "\x1b" not in result.stdout


def test_closed_or_full_stdout(tmp_path: Path) -> None:
    big = tmp_path / "big.log"
    big.write_bytes(REQUESTS.read_bytes() * 2000)
    argv = [sys.executable, "-m", "logmetrics", "tail", "--no-follow", "-n", "all", str(big)]
    p = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stderr is not None
    p.stdout.readline()
    p.stdout.close()  # as `| head -1` does
    assert p.wait(TIMEOUT) == 0 and p.stderr.read() == b""
    p.stderr.close()
    if os.path.exists("/dev/full"):
        with open("/dev/full", "wb") as full:
            done = subprocess.run(argv, cwd=ROOT, stdout=full, stderr=subprocess.PIPE, timeout=TIMEOUT)
        assert done.returncode == 1
        assert done.stderr == b"logmetrics: cannot write to stdout: No space left on device\n"


def test_help_has_an_example_for_every_filter() -> None:
    result = CliRunner().invoke(app, ["tail", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--model", "--level", "--status", "--provider", "--since", "--until", "--grep",
                   "--requests-only", "--journal", "--table", "-n"):
        assert f"Example: {option}" in result.stdout, option


# -- the real command in tmux (80x24) -----------------------------------------------------------

tmux_only = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (apt-get install tmux)")


class Tmux:
    """A private tmux server with one 80x24 session running a command."""

    def __init__(self, command: str, env: dict[str, str]) -> None:
        self.sock = f"logmetrics-test-{uuid.uuid4().hex[:8]}"
        exports = " ".join(f"{k}={v}" for k, v in env.items())
        self.tmux("-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", "80", "-y", "24",
                  "env -u NO_COLOR PS1='$ ' bash --norc --noprofile")
        self.tmux("send-keys", "-t", "t", f"clear; cd {ROOT} && env {exports} {sys.executable} -m logmetrics "
                  f"{command}; echo exit=$?", "Enter")

    def interrupt(self) -> str:
        """Ctrl-C, as a user stops it; returns the screen once the shell printed the exit status."""
        self.tmux("send-keys", "-t", "t", "C-c")
        return self.wait(lambda s: "exit=" in s)

    def tmux(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-L", self.sock, *args], capture_output=True, text=True, timeout=TIMEOUT)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def screen(self, escapes: bool = False) -> str:
        return self.tmux("capture-pane", "-p", *(["-e"] if escapes else []), "-t", "t")

    def wait(self, pred: Callable[[str], bool], escapes: bool = False) -> str:
        deadline = time.monotonic() + TIMEOUT
        while True:
            screen = self.screen(escapes)
            if pred(screen):
                return screen
            assert time.monotonic() < deadline, f"timed out; screen:\n{screen}"
            time.sleep(0.05)  # polling interval between captures, not a wait for an outcome

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.sock, "kill-server"], capture_output=True, timeout=TIMEOUT)


@pytest.fixture
def tmux_run() -> Iterator[Callable[[str, dict[str, str]], Tmux]]:
    made: list[Tmux] = []

    def start(command: str, env: dict[str, str]) -> Tmux:
        made.append(Tmux(command, env))
        return made[-1]

    yield start
    for t in made:
        t.close()


COLOR_ENV = {"TERM": "xterm-256color", "COLORTERM": "truecolor"}


@pytest.mark.real
@tmux_only
def test_tmux_coloured_lines_follow(tmp_path: Path, tmux_run: Callable[[str, dict[str, str]], Tmux]) -> None:
    lines = REQUESTS.read_bytes().splitlines(keepends=True)
    log = tmp_path / "requests.log"
    log.write_bytes(b"".join(lines[:3]))
    t = tmux_run(f"tail -n 2 {log}", COLOR_ENV)
    screen = t.wait(lambda s: s.count("gpt-4o-mini -> gpt-4o-mini") == 2)
    with open(log, "ab") as f:
        f.write(lines[19] + b"garbage\n")
    screen = t.wait(lambda s: "skipped: not_json" in s, escapes=True)
    error_line = next(line for line in screen.splitlines() if "rate-limited" in line)
    assert "\x1b[1m\x1b[31mERROR" in error_line or "\x1b[1;31mERROR" in error_line, repr(error_line)
    assert "\x1b[36m" in error_line  # the time, cyan
    skipped = next(line for line in screen.splitlines() if "skipped" in line)
    assert "\x1b[2m" in skipped or "\x1b[2;" in skipped, repr(skipped)  # dimmed
    assert "exit=0" in t.interrupt()


@pytest.mark.real
@tmux_only
def test_tmux_no_color(tmp_path: Path, tmux_run: Callable[[str, dict[str, str]], Tmux]) -> None:
    log = tmp_path / "requests.log"
    log.write_bytes(REQUESTS.read_bytes())
    t = tmux_run(f"tail --no-follow -n 3 {log}", {**COLOR_ENV, "NO_COLOR": "1"})
    screen = t.wait(lambda s: "exit=0" in s, escapes=True)
    assert screen.count(" -> ") == 3
    assert "\x1b[1m" in screen  # bold stays (NO_COLOR is about colour)
    assert not colours(screen), screen


def colours(screen: str) -> set[str]:
    """SGR colour parameters in a capture (39/49, tmux's "default colour", are not colours)."""
    found = set()
    for params in re.findall(r"\x1b\[([0-9;]*)m", screen):
        found |= {p for p in params.split(";") if p and (30 <= int(p) <= 38 or 40 <= int(p) <= 48 or int(p) >= 90)}
    return found


@pytest.mark.real
@tmux_only
def test_tmux_live_table_updates(tmp_path: Path, tmux_run: Callable[[str, dict[str, str]], Tmux]) -> None:
    lines = REQUESTS.read_bytes().splitlines(keepends=True)
    log = tmp_path / "requests.log"
    log.write_bytes(b"".join(lines[:5]))

    def total(n: int) -> Callable[[str], bool]:
        return lambda s: any(line.split()[:3] == ["total", line.split()[1], str(n)] for line in s.splitlines()
                             if line.startswith("total"))

    t = tmux_run(f"tail --table -n all --interval 0.2 {log}", COLOR_ENV)
    screen = t.wait(total(5))
    assert "gpt-4o-mini" in screen and "skipped 0" in screen
    header = next(line for line in screen.splitlines() if "requests" in line)
    assert "ttft" not in header and "p99" not in header  # dropped to fit 80 columns
    assert all(len(line) <= 80 for line in screen.splitlines())
    now = time.time()
    with open(log, "ab") as f:
        for line in lines[5:20]:
            record = json.loads(line)
            record["time"] = now  # rates are over the last minute of wall-clock time
            f.write(json.dumps(record).encode() + b"\n")
        f.write(b"garbage\n")
    screen = t.wait(total(20))
    assert "rate-limited" in screen and "skipped 1" in screen
    row = next(line.split() for line in screen.splitlines() if line.startswith("total"))
    assert float(row[1]) == pytest.approx(15 / 60, abs=0.06)  # req/s over the last minute
    assert screen.count("requests ▼") == 1  # redrawn in place, not scrolled
    screen = t.interrupt()
    assert "exit=0" in screen and screen.count("total") == 1 and "Traceback" not in screen



@pytest.mark.real
@tmux_only
def test_tmux_ctrl_z_leaves_the_cursor_visible(tmp_path: Path, tmux_run: Callable[[str, dict[str, str]], Tmux]) -> None:
    """rich Live hides the cursor while it draws; Ctrl-Z used to stop the process with it hidden, so
    the shell got back a terminal without a cursor. Shown on SIGTSTP, hidden again on `fg`."""
    log = tmp_path / "requests.log"
    log.write_bytes(REQUESTS.read_bytes())
    t = tmux_run(f"tail --table -n all --interval 0.2 {log}", COLOR_ENV)

    def cursor() -> str:
        return t.tmux("display-message", "-p", "-t", "t", "#{cursor_flag}#{alternate_on}").strip()

    t.wait(lambda s: "total" in s and cursor() == "00")  # drawing: cursor hidden, no alternate screen
    t.tmux("send-keys", "-t", "t", "C-z")
    t.wait(lambda s: "exit=148" in s)  # stopped: the shell has the terminal again
    assert cursor() == "10"
    t.tmux("send-keys", "-t", "t", "fg", "Enter")
    t.wait(lambda s: cursor() == "00")  # drawing again
    t.tmux("send-keys", "-t", "t", "C-c")
    t.wait(lambda s: cursor() == "10")
    t.tmux("send-keys", "-t", "t", "clear; stty -a | tr ' ;' '\\n\\n' | grep -cxE 'echo|icanon'", "Enter")
    t.wait(lambda s: "2" in s.splitlines())  # the terminal is usable: echo and line editing on


# -- journald (real journalctl on real journal files) -------------------------------------------

journal_only = pytest.mark.skipif(shutil.which("journalctl") is None or not Path("/lib/systemd/systemd-journal-remote")
                                  .exists(), reason="needs journalctl and systemd-journal-remote")


def journal_of(tmp_path: Path, lines: list[bytes], start: int = 1) -> Path:
    sys.path.insert(0, str(Path(__file__).parent))
    from journal_util import Entry, write_journal

    d = tmp_path / "journal"
    d.mkdir(exist_ok=True)
    write_journal(d / "system.journal", [Entry(line.decode(), seq=start + i) for i, line in enumerate(lines)])
    return d


@pytest.mark.real
@journal_only
def test_journal_last_n_and_all(tmp_path: Path) -> None:
    d = journal_of(tmp_path, REQUESTS.read_bytes().splitlines())
    every = run("-n", "all", str(REQUESTS))
    unit = ["--journal", "litellm.service", "--journal-directory", str(d)]
    assert run("-n", "all", *unit) == every
    assert run("-n", "4", *unit) == every[-4:]
    assert run("-n", "3", "--status", "failure", *unit) == [e for e in every if e["kind"] != "success"][-3:]


@pytest.mark.real
@journal_only
@pytest.mark.parametrize("n", ["all", "4"])
def test_journal_without_entries_says_what_to_check(tmp_path: Path, n: str) -> None:
    """A unit name with no entry (a typo, a user unit without --user) showed nothing and exited 0,
    as if the unit were quiet; serve says what to check, and now tail too (on stderr)."""
    d = journal_of(tmp_path, REQUESTS.read_bytes().splitlines())
    for unit, shown in (("litellm.service", True), ("litelm.service", False)):
        done = subprocess.run([sys.executable, "-m", "logmetrics", "tail", "--no-follow", "-n", n, "--journal", unit,
                               "--journal-directory", str(d)], cwd=ROOT, capture_output=True, text=True,
                              timeout=TIMEOUT)
        assert done.returncode == 0 and bool(done.stdout) is shown
        hint = f"logmetrics: no journal entries for journald:{unit}: check the unit name and --user"
        assert (hint in done.stderr) is not shown, done.stderr


@pytest.mark.real
@journal_only
def test_journal_follow_goes_on_after_history(tmp_path: Path) -> None:
    lines = REQUESTS.read_bytes().splitlines()
    d = journal_of(tmp_path, lines[:5])
    proc = Proc("-n", "2", "-o", "json", "--journal", "litellm.service", "--journal-directory", str(d))
    try:
        assert [json.loads(x)["time"] for x in proc.lines(2)] == pytest.approx([s["time"] for s in SRC[3:5]])
        journal_of(tmp_path, lines[5:9], start=6)
        assert [json.loads(x)["time"] for x in proc.lines(4)] == pytest.approx([s["time"] for s in SRC[5:9]])
    finally:
        assert proc.stop() == 0
