"""The replay summary table, rendered into a plain 80-column console (no terminal needed)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from rich.console import Console

from logmetrics.aggregate import Aggregator
from logmetrics.parse import Parser
from logmetrics.pipeline import Ingest, replay
from logmetrics.view import live_table, skipped_line, summary_rows, summary_table

SAMPLES = Path(__file__).resolve().parent.parent / "fixtures" / "sample-logs"


def render(agg: Aggregator, width: int) -> list[str]:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(summary_table(agg))
    return out.getvalue().splitlines()


def test_summary_fits_80_columns_with_every_column() -> None:
    agg = Aggregator()
    replay([str(SAMPLES)], Ingest(agg, Parser()))
    lines = render(agg, 80)
    assert all(len(line) <= 80 for line in lines)
    header = next(line for line in lines if "reqs" in line)
    assert header.split() == ["model", "reqs", "fail", "err%", "p50", "p95", "p99", "tok", "in", "tok", "out",
                              "spend", "$"]
    total = next(line for line in lines if line.split()[:1] == ["total"]).split()
    rows = summary_rows(agg)
    # the sample set is the callback capture cut in three: its clients saw these requests and errors
    capture = SAMPLES / "litellm-1.109.1-callback"
    clients = [json.loads(line) for line in (capture / "traffic-results.jsonl").read_text().splitlines()]
    errors = sum(r["status"] != 200 for r in clients)
    assert total[1:3] == [str(rows[-1]["requests"]), str(rows[-1]["failures"])] == [str(len(clients)), str(errors)]
    assert "…" not in "\n".join(lines)
    records = len((capture / "requests.log").read_bytes().splitlines())
    # one record is the unauthenticated request's, which LiteLLM's exporter does not count either
    assert skipped_line(agg) == f"read {records - 1} records; skipped 1: 1 invalid_key"


def test_rows_are_sorted_by_requests_and_total_is_last() -> None:
    agg = Aggregator()
    replay([str(SAMPLES)], Ingest(agg, Parser()))
    rows = summary_rows(agg)
    assert rows[-1]["model"] == "total"
    counts = [r["requests"] for r in rows[:-1]]
    assert counts == sorted(counts, reverse=True)
    assert sum(counts) == rows[-1]["requests"]


def test_model_names_from_logs_are_shown_as_plain_text() -> None:
    """A client chooses the model name it requests: no escape sequence of it reaches the terminal,
    and rich markup in it is shown, not interpreted (an unmatched closing tag used to crash the
    live table)."""
    names = ["[/x]", "[bold red]boom", "evil\x1b[2J\x1b]0;title\x07x"]
    agg = Aggregator()
    for name in names:
        agg.add(Parser().parse(json.dumps(
            {"timestamp": "2025-10-21T12:26:24.123", "level": "INFO", "model": name, "latency_ms": 5}).encode()))
    for table in (summary_table(agg), live_table(agg, now=1761049584.0)):
        out = io.StringIO()
        Console(file=out, width=120, force_terminal=True).print(table)
        text = out.getvalue()
        assert "[/x]" in text and "[bold red]boom" in text and "evil?[2J?]0;title?x" in text
        assert "\x1b[2J" not in text and "\x07" not in text


def test_a_replay_keeps_no_per_second_rings_and_shows_the_same() -> None:
    """Aggregator(rates=False), a replay's: no per-second ring per row (with hundreds of models, half
    the state), the same summary, exposition and token counts; the live views' aggregators keep them."""
    from logmetrics.export import exposition

    live, summary = Aggregator(), Aggregator(rates=False)
    for agg in (live, summary):
        replay([str(SAMPLES)], Ingest(agg, Parser()))
    assert summary_rows(summary) == summary_rows(live)
    assert exposition(summary) == exposition(live)
    assert all(not s.per_second for s in summary.models.values())
    assert sum(slot[1] for s in live.models.values() for slot in s.per_second.values()) == sum(
        s.prompt_tokens for s in live.models.values()) > 0
