"""rich renderables built from the aggregator (the only module besides cli.py that imports rich).

Renderables never print: the CLI hands them to a Console (or to `rich.live.Live`).
"""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from logmetrics.aggregate import Aggregator, ModelStats
from logmetrics.events import SkipReason


def summary_rows(agg: Aggregator) -> list[dict[str, Any]]:
    """One row per model (sorted by requests, descending) and a last "total" row, as plain data
    (what `replay --json` prints)."""
    rows = [_row(name, s) for name, s in sorted(agg.models.items(), key=lambda kv: (-kv[1].requests, kv[0]))]
    total = ModelStats()
    for s in agg.models.values():
        total.requests += s.requests
        total.failures += s.failures
        total.prompt_tokens += s.prompt_tokens
        total.completion_tokens += s.completion_tokens
        total.spend += s.spend
        for k, v in s.latency.items():
            total.latency[k] = total.latency.get(k, 0) + v
    rows.append(_row("total", total))
    return rows


def _row(name: str, s: ModelStats) -> dict[str, Any]:
    return {
        "model": name,
        "requests": s.requests,
        "failures": s.failures,
        "error_pct": round(100.0 * s.failures / s.requests, 2) if s.requests else 0.0,
        "latency_p50_s": _round(s.quantile(0.50)),
        "latency_p95_s": _round(s.quantile(0.95)),
        "latency_p99_s": _round(s.quantile(0.99)),
        "tokens_in": s.prompt_tokens,
        "tokens_out": s.completion_tokens,
        "spend_usd": round(s.spend, 6),
    }


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 4)


def skipped_summary(agg: Aggregator) -> dict[str, int]:
    return {r.value: n for r, n in agg.skipped.items() if n and r is not SkipReason.FILTERED}


def _seconds(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v * 1000:.0f}ms" if v < 1 else f"{v:.2f}s"


def summary_table(agg: Aggregator, title: str = "LiteLLM requests per model") -> Table:
    table = Table(title=title, title_justify="left")
    for col, justify in (("model", "left"), ("requests", "right"), ("failures", "right"),
                         ("error %", "right"), ("p50", "right"), ("p95", "right"), ("p99", "right"),
                         ("tokens in", "right"), ("tokens out", "right"), ("spend $", "right")):
        table.add_column(col, justify=justify, no_wrap=True, min_width=len(col) if col != "model" else 12,
                         overflow="fold" if col == "model" else "ellipsis")  # type: ignore[arg-type]
    rows = summary_rows(agg)
    for i, r in enumerate(rows):
        last = i == len(rows) - 1
        table.add_row(
            Text(r["model"], style="bold" if last else ""),
            f"{r['requests']:,}", f"{r['failures']:,}", f"{r['error_pct']:.1f}",
            _seconds(r["latency_p50_s"]), _seconds(r["latency_p95_s"]), _seconds(r["latency_p99_s"]),
            f"{r['tokens_in']:,}", f"{r['tokens_out']:,}", f"{r['spend_usd']:.4f}",
            end_section=i == len(rows) - 2,
        )
    return table


def skipped_line(agg: Aggregator) -> str:
    skipped = skipped_summary(agg)
    if not skipped:
        return f"read {agg.records:,} records; skipped none"
    parts = ", ".join(f"{n:,} {reason}" for reason, n in sorted(skipped.items(), key=lambda kv: -kv[1]))
    return f"read {agg.records:,} records; skipped {sum(skipped.values()):,}: {parts}"
