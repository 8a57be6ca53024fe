"""`replay` shows a progress bar (records, MB/s, ETA) on a terminal, and nothing on a pipe."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
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


def test_a_fifo_with_progress_is_read_whole(tmp_path: Path) -> None:
    """Sizing the input for the bar must not open a pipe: that would wait for the writer and take
    the first bytes away from the replay."""
    fifo = tmp_path / "requests.fifo"
    os.mkfifo(fifo)
    data = SIMPLE.read_bytes()

    def write() -> None:
        with open(fifo, "wb") as f:
            f.write(data)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    seen: list[int] = []
    agg = Aggregator()
    replay([str(fifo)], Ingest(agg, Parser()), lambda stats, total, records: seen.append(total))
    writer.join(10)
    assert agg.records == 1000 and set(seen) == {0}  # a pipe's size is not known: no ETA


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
