"""Every kind of bad input is skipped and counted by reason; the good lines around it all count;
nothing crashes, nothing echoes the record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from logmetrics.aggregate import Aggregator
from logmetrics.events import LogEvent, RequestEvent, Skip, SkipReason
from logmetrics.parse import Parser
from logmetrics.pipeline import Ingest, replay

GOOD = (b'{"timestamp": "2025-10-21T12:26:24.123", "level": "INFO", "model": "llama3.1:8b", '
        b'"provider": "ollama", "latency_ms": 5184, "tokens": {"prompt": 21, "completion": 20, "total": 41}}')
SECRET = "sk-CANARY-do-not-print"

BAD: list[tuple[str, bytes, SkipReason]] = [
    ("plain text", b"hello " + SECRET.encode(), SkipReason.NOT_JSON),
    ("truncated json", b'{"model": "x", "latency_ms": 1', SkipReason.NOT_JSON),
    ("json array", b"[1, 2, 3]", SkipReason.UNKNOWN_SHAPE),
    ("other object", b'{"hello": "world", "secret": "' + SECRET.encode() + b'"}', SkipReason.UNKNOWN_SHAPE),
    ("wrong type", b'{"model": "m", "provider": "p", "latency_ms": "abc", "level": "INFO"}',
     SkipReason.INVALID_FIELD),
    ("wrong token type", b'{"model": "m", "latency_ms": 5, "tokens": {"prompt": "many"}}', SkipReason.INVALID_FIELD),
    ("NaN latency", b'{"model": "m", "provider": "p", "latency_ms": NaN, "level": "INFO"}',
     SkipReason.INVALID_DURATION),
    ("negative latency", b'{"model": "m", "provider": "p", "latency_ms": -5, "level": "INFO"}',
     SkipReason.INVALID_DURATION),
    ("absurd latency", b'{"model": "m", "provider": "p", "latency_ms": 1e250, "level": "INFO"}',
     SkipReason.INVALID_DURATION),
    ("absurd cost", b'{"status": "success", "model_group": "g", "model": "m", "response_cost": -1e250, '
     b'"startTime": 1.0, "endTime": 2.0, "metadata": {"user_api_key_hash": "h"}}', SkipReason.INVALID_FIELD),
    ("invalid utf-8", b'{"model": "m\xff\xfe", "latency_ms": 5, "level": "INFO"}', SkipReason.INVALID_UTF8),
    ("bad time", b'{"model": "m", "latency_ms": 5, "level": "INFO", "timestamp": "yesterday"}',
     SkipReason.INVALID_TIME),
    ("time before 1970", b'{"model": "m", "latency_ms": 5, "level": "INFO", "timestamp": "1969-12-31T23:59:59Z"}',
     SkipReason.INVALID_TIME),
    ("record time in milliseconds", b'{"logmetrics_record": "request", "version": 1, "hook": "success", '
     b'"time": 1795452153004.0, "payload": {"status": "success", "model_group": "g", "model": "m", '
     b'"startTime": 1.0, "endTime": 2.0, "metadata": {"user_api_key_hash": "h"}}}', SkipReason.INVALID_TIME),
    ("hook record time beyond 9999", b'{"logmetrics_record": "request", "version": 1, "hook": "post_call_failure", '
     b'"time": 1e300, "payload": null, "labels": {"requested_model": "g"}}', SkipReason.INVALID_TIME),
    ("payload end beyond 9999", b'{"status": "success", "model_group": "g", "model": "m", "startTime": 1.0, '
     b'"endTime": 253402290000.0, "metadata": {"user_api_key_hash": "h"}}', SkipReason.INVALID_TIME),
    ("deeply nested", b'{"model": "m", "latency_ms": 5, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
     SkipReason.TOO_DEEP),
    ("future record version", b'{"logmetrics_record": "request", "version": 99, "hook": "success"}',
     SkipReason.UNSUPPORTED_VERSION),
    ("record without payload", b'{"logmetrics_record": "request", "version": 1, "hook": "success"}',
     SkipReason.INVALID_FIELD),
]


@pytest.mark.parametrize(("line", "reason"), [(b, r) for _, b, r in BAD], ids=[i for i, _, _ in BAD])
def test_parse_skips_with_reason(line: bytes, reason: SkipReason) -> None:
    assert Parser().parse(line) == Skip(reason)


def test_a_byte_order_mark_before_a_record_is_ignored(tmp_path: Path) -> None:
    """Files written on Windows may start with a UTF-8 byte order mark: the first record counts."""
    bom = "\ufeff".encode()
    assert Parser().parse(bom + GOOD) == Parser().parse(GOOD)
    assert Parser().parse(bom) is None and Parser().parse(bom + b"hello") == Skip(SkipReason.NOT_JSON)
    path = tmp_path / "windows.log"
    path.write_bytes(bom + GOOD + b"\r\n" + GOOD + b"\r\n")
    agg = Aggregator()
    replay([str(path)], Ingest(agg, Parser()))
    assert agg.records == 2 and sum(agg.skipped.values()) == 0


def test_too_long_line_is_skipped() -> None:
    assert Parser(max_line_bytes=100).parse(GOOD) == Skip(SkipReason.TOO_LONG)


def test_blank_lines_are_not_records() -> None:
    assert Parser().parse(b"") is None and Parser().parse(b"   \t") is None


def test_good_lines_around_bad_ones_all_count(tmp_path: Path) -> None:
    body = bytearray()
    for _, line, _ in BAD:
        body += GOOD + b"\n" + line + b"\n"
    body += GOOD + b"\n" + b"x" * (2 << 20) + b"\n" + GOOD + b"\r\n" + b"\n" + GOOD  # no final newline
    log = tmp_path / "mixed.log"
    log.write_bytes(bytes(body))
    agg = Aggregator()
    replay([str(log)], Ingest(agg, Parser()))
    expected = dict.fromkeys(SkipReason, 0)
    for _, _, reason in BAD:
        expected[reason] += 1
    expected[SkipReason.TOO_LONG] += 1
    assert agg.skipped == expected
    assert agg.records == len(BAD) + 3
    assert agg.models["llama3.1:8b"].requests == len(BAD) + 3


def test_cli_never_tracebacks_and_never_echoes(tmp_path: Path) -> None:
    log = tmp_path / "bad.log"
    log.write_bytes(b"\n".join(line for _, line, _ in BAD) + b"\n" + GOOD + b"\n")
    (tmp_path / "empty.log").write_bytes(b"")
    prom = tmp_path / "out.prom"
    proc = subprocess.run([sys.executable, "-m", "logmetrics", "replay", str(log), str(tmp_path / "empty.log"),
                           "--metrics-out", str(prom)], capture_output=True)
    assert proc.returncode == 0
    out = proc.stdout + proc.stderr + prom.read_bytes()
    assert b"Traceback" not in out and SECRET.encode() not in out
    assert f"skipped {len(BAD)}:".encode() in proc.stderr
    text = prom.read_text()
    invalid_field = sum(1 for _, _, r in BAD if r is SkipReason.INVALID_FIELD)
    assert f'logmetrics_records_skipped_total{{reason="invalid_field"}} {invalid_field}.0' in text
    assert 'logmetrics_records_skipped_total{reason="filtered"} 0.0' in text  # pre-initialised


def test_tail_shows_bad_times_as_skips(tmp_path: Path) -> None:
    """A record time tail cannot show as a date (milliseconds where seconds belong: year 58000) is an
    invalid_time skip, not a traceback in the middle of the view."""
    log = tmp_path / "bad.log"
    log.write_bytes(b"\n".join(line for _, line, _ in BAD) + b"\n" + GOOD + b"\n")
    for view in ([], ["--table"], ["-o", "json"]):
        proc = subprocess.run([sys.executable, "-m", "logmetrics", "tail", "--no-follow", *view, str(log)],
                              capture_output=True, env={**os.environ, "TZ": "Asia/Kolkata"})
        assert proc.returncode == 0, proc.stderr
        assert b"Traceback" not in proc.stdout + proc.stderr and SECRET.encode() not in proc.stdout + proc.stderr


def test_file_vanishing_midway_is_counted(tmp_path: Path) -> None:
    """A file deleted between listing and reading is one `unreadable` skip, the rest is read."""
    good = tmp_path / "a.log"
    good.write_bytes(GOOD + b"\n")
    gone = tmp_path / "b.log"
    gone.write_bytes(GOOD + b"\n")
    agg = Aggregator()
    ingest = Ingest(agg, Parser())
    from logmetrics.sources import archive

    files = archive.expand([str(good), str(gone)])
    gone.unlink()
    stats = archive.ReadStats()
    ingest.lines(archive.read_lines(files, stats, 1 << 20))
    assert stats.unreadable == 1 and agg.records == 1


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["replay", "/no/such/file"], 2, b"no such file"),
        (["replay", "/no/such/*.log"], 2, b"no file matches"),
        (["replay", "--since", "someday", "x"], 2, b"--since"),
        (["replay", "--until", "9" * 400, "x"], 2, b"--until"),  # digits beyond any float
        (["replay", "--since", "9" * 5000, "x"], 2, b"--since"),  # beyond int()'s 4300 digits
        (["replay", "--bogus"], 2, b"No such option"),
        # --step: 0s divided by zero; nan, inf and 1e300 stamped samples promtool refuses or never finishes
        # importing; below a millisecond, promtool keeps one of the samples that share one
        *((["replay", "--openmetrics-out", "o.om", "--step", step, "x"], 2, b"--step")
          for step in ("0s", "0", "-1", "nan", "inf", "1e300", "0.0004", "9999999w")),
        # as serve refuses them: 0 folded every model into `overflow`, or skipped every line as too_long
        *((["replay", option, value, "x"], 2, b"must be positive")
          for option in ("--max-series", "--max-line-bytes") for value in ("0", "-1")),
    ],
    ids=["missing-file", "empty-glob", "bad-since", "huge-until", "huger-since", "bad-option",
         *(f"step-{s}" for s in ("0s", "0", "-1", "nan", "inf", "1e300", "sub-ms", "huge")),
         "max-series-0", "max-series-negative", "max-line-bytes-0", "max-line-bytes-negative"],
)
def test_usage_errors_exit_2_in_one_line(args: list[str], code: int, needle: bytes, tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(GOOD + b"\n")
    proc = subprocess.run([sys.executable, "-m", "logmetrics", *args], capture_output=True, cwd=tmp_path)
    assert proc.returncode == code
    assert needle in proc.stderr and b"Traceback" not in proc.stderr and proc.stdout == b""
    assert not (tmp_path / "o.om").exists()  # nothing written for a command that did not run


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_unreadable_path_is_a_usage_error(tmp_path: Path) -> None:
    p = tmp_path / "secret.log"
    p.write_bytes(GOOD)
    p.chmod(0)
    proc = subprocess.run([sys.executable, "-m", "logmetrics", "replay", str(p)], capture_output=True)
    assert proc.returncode == 2 and b"permission denied" in proc.stderr


def test_help_explains_every_option() -> None:
    for cmd in ([], ["replay"]):
        proc = subprocess.run([sys.executable, "-m", "logmetrics", *cmd, "--help"], capture_output=True,
                              env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"})
        assert proc.returncode == 0, proc.stderr
        help_text = proc.stdout.decode()
        if cmd:
            for option in ("--metrics-out", "--openmetrics-out", "--json", "--model", "--since", "--until",
                           "--step", "--max-line-bytes"):
                assert option in help_text
    version = subprocess.run([sys.executable, "-m", "logmetrics", "--version"], capture_output=True)
    assert version.returncode == 0 and version.stdout.startswith(b"logmetrics ")


def test_json_logs_lines_feed_access_and_level_counters() -> None:
    parser, agg = Parser(), Aggregator()
    sample = Path(__file__).resolve().parent.parent / "fixtures/sample-logs/litellm-1.109.1/proxy-stdout.log"
    results = [parser.parse(line) for line in sample.read_bytes().splitlines()]
    for r in results:
        agg.add(r)
    raw = [json.loads(x) for x in sample.read_text().splitlines() if x.startswith("{")]
    access = [x for x in raw if x.get("component") == "uvicorn.access"]
    assert sum(agg.access_lines.values()) == len(access) > 0
    assert agg.log_lines.get("ERROR", 0) == sum(1 for x in raw if x["level"] == "ERROR")
    assert not any(isinstance(r, RequestEvent) for r in results)
    assert all(isinstance(r, LogEvent) for r in results if r is not None and not isinstance(r, Skip))
