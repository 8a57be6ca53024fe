"""`replay` shows a progress bar (records, MB/s, ETA) on a terminal, and nothing on a pipe."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from logmetrics.aggregate import Aggregator
from logmetrics.cli import ReplayProgress
from logmetrics.parse import Parser
from logmetrics.pipeline import Ingest, replay
from logmetrics.sources.archive import ReadStats

SIMPLE = Path(__file__).resolve().parent.parent / "fixtures/sample-logs/generated/simple-1k.jsonl"


def test_nothing_on_a_pipe(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "logmetrics", "replay", str(SIMPLE), "--metrics-out", str(tmp_path / "out.prom")],
        capture_output=True, timeout=120,
    )
    assert proc.returncode == 0
    assert proc.stderr == b"read 1,000 records; skipped none\n"


def test_progress_callback_sees_the_whole_file() -> None:
    seen: list[tuple[int, int, int]] = []
    agg = Aggregator()
    replay([str(SIMPLE)], Ingest(agg, Parser()),
           lambda stats, total, records: seen.append((stats.bytes_read, total, records)))
    assert seen and seen[-1] == (SIMPLE.stat().st_size, SIMPLE.stat().st_size, 1000)
    assert agg.records == 1000


def test_bar_on_a_terminal() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    with ReplayProgress(console, after=0.0) as progress:
        progress(ReadStats(bytes_read=500_000), 1_000_000, 12000)
        progress(ReadStats(bytes_read=900_000), 1_000_000, 12345)
    text = out.getvalue()
    assert "12,345 records" in text


def test_no_bar_for_short_replays() -> None:
    out = io.StringIO()
    with ReplayProgress(Console(file=out, force_terminal=True), after=60.0) as progress:
        progress(ReadStats(bytes_read=1), 2, 1)
    assert out.getvalue() == ""
