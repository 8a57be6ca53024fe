"""rich renderables built from the aggregator (the only module besides cli.py that imports rich).

Renderables never print: the CLI hands them to a Console (or to `rich.live.Live`).
"""

from __future__ import annotations

import _thread
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.cells import cell_len
from rich.color import ColorSystem
from rich.console import Console, ConsoleOptions, RenderableType
from rich.live import Live
from rich.style import Style
from rich.table import Table
from rich.text import Text

from logmetrics.aggregate import Aggregator, ModelStats
from logmetrics.events import SkipReason

# C0 and C1 controls, and the bidirectional controls (a terminal with bidi support, such as VTE's,
# would show the rest of the line reversed after U+202E: numbers spoofed by a client's model name)
_BIDI = [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_CONTROL = dict.fromkeys([*range(0x20), *range(0x7F, 0xA0), *_BIDI], "?")


def printable(text: str) -> str:
    """Text from logs (a model name, an error message) for a terminal: no control character (an ANSI
    escape sequence a client put in a model name) and no bidi override reaches it. Shown as plain
    `Text`, never as rich markup (a name like "[/x]" is a markup error)."""
    return text if text.isprintable() else text.translate(_CONTROL)


def encodable(text: str, encoding: str) -> str:
    """`text` as a stdout in `encoding` will show it (cli.py writes what it cannot hold as `?`):
    rich then measures the cells that are really written, and columns stay aligned."""
    if encoding.lower().replace("-", "") in ("utf8", "utf16", "utf32"):
        return text
    return text.encode(encoding, "replace").decode(encoding)


def summary_rows(agg: Aggregator) -> list[dict[str, Any]]:
    """One row per model (sorted by requests, descending) and a last "total" row, as plain data
    (what `replay --json` prints)."""
    rows = [_row(name, s) for name, s in sorted(agg.models.items(), key=lambda kv: (-kv[1].requests, kv[0]))]
    total = ModelStats()
    for s in agg.models.values():
        total.merge(s)
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


def summary_table(agg: Aggregator, title: str = "LiteLLM requests per model", encoding: str = "utf-8") -> Table:
    """Fits 80 columns: no vertical rules, short headers, and a model column that folds.
    `encoding`: the console's (model names it cannot hold are shown with `?`)."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for col in ("model", "reqs", "fail", "err%", "p50", "p95", "p99", "tok in", "tok out", "spend $"):
        left = col == "model"
        table.add_column(col, justify="left" if left else "right", no_wrap=not left,
                         min_width=12 if left else None, overflow="fold" if left else "ellipsis")
    rows = summary_rows(agg)
    for i, r in enumerate(rows):
        last = i == len(rows) - 1
        table.add_row(
            Text(encodable(printable(r["model"]), encoding), style="bold" if last else ""),
            f"{r['requests']:,}", f"{r['failures']:,}", f"{r['error_pct']:.1f}",
            _seconds(r["latency_p50_s"]), _seconds(r["latency_p95_s"]), _seconds(r["latency_p99_s"]),
            f"{r['tokens_in']:,}", f"{r['tokens_out']:,}", f"{r['spend_usd']:.4f}",
            end_section=i == len(rows) - 2,
        )
    return table


def summary_width(table: Table) -> int:
    """The narrowest width at which `summary_table` loses nothing: every number whole, the model
    column folded to its 12. Narrower, rich would cut numbers to `1…` and drop the model column."""
    widths = [max([cell_len(str(c.header)), *(cell_len(str(cell)) for cell in c.cells)]) if i else c.min_width or 0
              for i, c in enumerate(table.columns)]
    return sum(widths) + 2 * len(widths)


def skipped_line(agg: Aggregator) -> str:
    skipped = skipped_summary(agg)
    if not skipped:
        return f"read {agg.records:,} records; skipped none"
    parts = ", ".join(f"{n:,} {reason}" for reason, n in sorted(skipped.items(), key=lambda kv: -kv[1]))
    return f"read {agg.records:,} records; skipped {sum(skipped.values()):,}: {parts}"


# -- tail: coloured lines ------------------------------------------------------------------------

LINE_STYLES: dict[str, str] = {
    "": "",
    "time": "cyan",
    "level.DEBUG": "blue",
    "level.INFO": "green",
    "level.WARNING": "yellow",
    "level.ERROR": "bold red",
    "level.CRITICAL": "bold white on red",
    "model": "bold",
    "arrow": "dim",
    "deployment": "magenta",
    "provider": "blue",
    "latency": "yellow",
    "label": "dim",
    "tokens": "",
    "cost": "green",
    "status.ok": "green",
    "status.error": "bold red",
    "error": "red",
    "log": "dim",
    "skip": "dim italic",
}
_COLOR_SYSTEMS = {"standard": ColorSystem.STANDARD, "256": ColorSystem.EIGHT_BIT,
                  "truecolor": ColorSystem.TRUECOLOR, "windows": ColorSystem.WINDOWS}
_DIMMED = frozenset({"log", "skip"})  # a line whose last segment is one of these is dimmed whole


def out_console() -> Console:
    """stdout as rich sees it: colour only on a terminal, none with NO_COLOR (rich reads it)."""
    return Console(highlight=False, soft_wrap=True)


class LineWriter:
    """Writes `(text, style name)` segments as one line, with the console's colours (or none).

    Bypasses `Console.print` (a few µs a line instead of ~100): a tail may print millions."""

    def __init__(self, console: Console) -> None:
        self.file = console.file
        system = None if console.color_system is None else _COLOR_SYSTEMS.get(console.color_system)
        self._system = system
        # style name -> (escape before, escape after), plain and dimmed: rendered once
        self._codes: dict[tuple[str, bool], tuple[str, str]] = {}
        if system is None:
            return
        for name, spec in LINE_STYLES.items():
            style = Style.parse(spec) if spec else Style()
            style = style.without_color if console.no_color else style
            for dim in (False, True):
                styled = style + Style(dim=True) if dim else style
                before, _, after = styled.render("\0", color_system=system).partition("\0") if styled else ("", "", "")
                self._codes[name, dim] = (before, after)

    def render(self, segments: list[tuple[str, str]]) -> str:
        if self._system is None:
            return "".join(text for text, _ in segments)
        dim = bool(segments) and segments[-1][1] in _DIMMED
        codes = self._codes
        out = []
        for text, name in segments:
            before, after = codes.get((name, dim), ("", ""))
            out.append(before + text + after if before else text)
        return "".join(out)

    def write(self, segments: list[tuple[str, str]]) -> None:
        self.file.write(self.render(segments) + "\n")

    def flush(self) -> None:
        self.file.flush()


# -- tail --table / serve: the live per-model table ----------------------------------------------

LIVE_WINDOW = 60  # seconds of the per_second ring the rates are computed over


@dataclass(frozen=True)
class LiveColumn:
    key: str  # --sort name
    header: str
    drop: int  # narrow terminals drop the lowest first; 0 = never dropped


LIVE_COLUMNS = (
    LiveColumn("model", "model", 0),
    LiveColumn("rps", "req/s", 9),
    LiveColumn("requests", "requests", 0),
    LiveColumn("errors", "err %", 8),
    LiveColumn("p50", "p50", 4),
    LiveColumn("p95", "p95", 7),
    LiveColumn("p99", "p99", 2),
    LiveColumn("ttft", "ttft p50", 1),
    LiveColumn("tok_in", "in tok/s", 3),
    LiveColumn("tok_out", "out tok/s", 5),
    LiveColumn("spend", "spend $", 6),
)
LIVE_SORT_KEYS = tuple(c.key for c in LIVE_COLUMNS)


@dataclass
class TableFooter:
    """What the table's last line says about the source (plain data from the caller)."""

    source: str = ""
    skipped: int = 0  # lines skipped (not counting filtered ones)
    lag_bytes: int | None = None  # written but not yet read (file sources)
    newest: float | None = None  # epoch of the newest record


def live_rows(agg: Aggregator, now: float) -> list[dict[str, Any]]:
    """One dict per model and a last "total" row: raw values keyed by LiveColumn.key."""
    total = ModelStats()
    rows = []
    for name, s in agg.models.items():
        rows.append(_live_row(name, s, now))
        total.merge(s)
    return [*rows, _live_row("total", total, now)]


def _live_row(name: str, s: ModelStats, now: float) -> dict[str, Any]:
    window = [v for sec, v in s.per_second.items() if now - LIVE_WINDOW < sec <= now]
    return {
        "model": name,
        "rps": sum(v[0] for v in window) / LIVE_WINDOW,
        "requests": s.requests,
        "errors": 100.0 * s.failures / s.requests if s.requests else 0.0,
        "p50": s.quantile(0.50),
        "p95": s.quantile(0.95),
        "p99": s.quantile(0.99),
        "ttft": s.quantile(0.50, "ttft"),
        "tok_in": sum(v[1] for v in window) / LIVE_WINDOW,
        "tok_out": sum(v[2] for v in window) / LIVE_WINDOW,
        "spend": s.spend,
    }


def _cell(key: str, v: Any) -> str:
    if key == "model" or v == "":
        return str(v)
    if v is None:
        return "-"
    if key in ("p50", "p95", "p99", "ttft"):
        return _seconds(v)
    if key == "requests":
        return f"{v:,}"
    if key == "errors":
        return f"{v:.1f}"
    if key == "spend":
        return f"{v:.4f}"
    return f"{v:,.1f}" if v < 1000 else f"{v:,.0f}"


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n //= 1024
    return f"{n:,} GiB"


class LiveTable:
    """The live table as a renderable: a snapshot of plain rows (taken when built, so rendering
    never touches the aggregator) that drops columns to fit the width it is given, in the fixed
    order of LiveColumn.drop, and rows to fit a terminal's height."""

    MODEL_WIDTH = 24
    MODEL_MIN = 8  # narrower than the columns kept need, the model column gives way down to this

    def __init__(self, rows: list[dict[str, Any]], *, sort: str, by: str, footer: TableFooter,
                 now: float) -> None:
        body, self.total = rows[:-1], rows[-1]
        col = sort if sort in LIVE_SORT_KEYS else "requests"
        if col == "model":
            body.sort(key=lambda r: str(r["model"]))
        else:
            body.sort(key=lambda r: (-(r[col] if r[col] is not None else -1.0), str(r["model"])))
        self.rows, self.sort, self.by, self.footer, self.now = body, col, by, footer, now

    def columns(self, width: int, encoding: str = "utf-8") -> tuple[list[LiveColumn], int]:
        """The columns that fit in `width` (the model column counted at most MODEL_WIDTH wide),
        and the model column's width: what is left, up to its longest name (down to MODEL_MIN
        when the columns that always stay need more). Widths are terminal
        cells (a CJK character or an emoji takes two) of the text as `encoding` shows it."""
        cells = [*self.rows, self.total]
        widths = {c.key: max([len(c.header) + 2 * (c.key == self.sort)]
                             + [cell_len(_shown(r[c.key], encoding) if c.key == "model" else _cell(c.key, r[c.key]))
                                for r in cells])
                  for c in LIVE_COLUMNS}
        natural = max(widths["model"], 12)
        widths["model"] = min(natural, self.MODEL_WIDTH)
        cols = list(LIVE_COLUMNS)
        for victim in sorted((c for c in LIVE_COLUMNS if c.drop and c.key != self.sort), key=lambda c: c.drop):
            if sum(widths[c.key] for c in cols) + 3 * (len(cols) - 1) <= width:
                break
            cols.remove(victim)
        spare = width - sum(widths[c.key] for c in cols) - 3 * (len(cols) - 1)
        return cols, min(natural, max(self.MODEL_MIN, widths["model"] + spare))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Table | Text]:
        enc = options.encoding
        cols, model_width = self.columns(options.max_width, enc)
        marker = encodable(" ▼", enc) if not options.ascii_only else " v"
        table = Table(box=box.SIMPLE, show_edge=False, pad_edge=False, header_style="bold",
                      show_footer=True, footer_style="bold")
        for c in cols:
            header = self.by if c.key == "model" else c.header
            table.add_column(header + (marker if c.key == self.sort and c.key != "model" else ""),
                             footer=_cell(c.key, self.total[c.key]),
                             justify="left" if c.key == "model" else "right", no_wrap=True,
                             max_width=model_width if c.key == "model" else None, overflow="ellipsis")
        rows = self.rows
        if options.is_terminal:
            room = max(2, options.max_height - 7)  # header, rules, totals, footer, the cursor line
            if len(rows) > room:
                rows = [*rows[: room - 1], {"model": f"… {len(rows) - room + 1} more", **_blank()}]
        for r in rows:
            table.add_row(*(Text(_shown(r["model"], enc)) if c.key == "model" else _cell(c.key, r[c.key])
                            for c in cols))
        yield table
        yield Text(encodable(printable(self._footer()), enc), style="dim", no_wrap=True, overflow="ellipsis")

    def _footer(self) -> str:
        f = self.footer
        parts = [f"skipped {f.skipped:,}"]
        if f.lag_bytes is not None:
            parts.append(f"lag {_bytes(f.lag_bytes)}")
        if f.newest is not None:
            parts.append(f"newest record {_age(self.now - f.newest)} ago")
        if f.source:
            parts.append(f.source)  # last: a long path is what gets cut on a narrow terminal
        return " · ".join(parts)


def _shown(name: str, encoding: str) -> str:
    """A row name as the terminal gets it."""
    return encodable(printable(name), encoding)


def _age(seconds: float) -> str:
    s = max(0.0, seconds)
    if s < 60:
        return f"{s:.1f}s"
    m, h, d = int(s // 60), int(s // 3600), int(s // 86400)
    return f"{m}m {int(s) % 60}s" if s < 3600 else f"{h}h {m % 60}m" if s < 86400 else f"{d}d {h % 24}h"


def _blank() -> dict[str, Any]:
    return {c.key: "" for c in LIVE_COLUMNS if c.key != "model"}


def live_table(agg: Aggregator, *, sort: str = "requests", now: float | None = None,
               footer: TableFooter | None = None) -> LiveTable:
    """The live table of `agg` (rows per `agg.by`), rates over the minute before `now`.
    Call it under the lock that serialises the aggregator: it copies what it shows."""
    now = time.time() if now is None else now
    return LiveTable(live_rows(agg, now), sort=sort, by=agg.by, footer=footer or TableFooter(), now=now)


@contextmanager
def live_display(console: Console, make: Callable[[], RenderableType], interval: float = 1.0) -> Iterator[None]:
    """Show `make()` while the body runs: a rich `Live` refreshed every `interval` seconds on a
    terminal, else (a pipe, a file, TERM=dumb) one plain snapshot printed every `interval` seconds
    (and one at the end).
    `make` is called from another thread: take the aggregator's lock inside it.

        with live_display(console, lambda: live_table(agg, footer=...)):
            ingest_forever()
    """
    if console.is_interactive:  # a terminal that can move the cursor (not TERM=dumb: Live would draw nothing)
        with Live(get_renderable=make, console=console, refresh_per_second=1 / interval,
                  vertical_overflow="crop") as live, _cursor_on_stop(live):
            yield
        return
    stop = threading.Event()
    failed: list[BaseException] = []
    caller = threading.current_thread()

    def snapshots() -> None:
        try:
            while not stop.wait(interval):
                console.print(make(), "")
                console.file.flush()
        except BaseException as e:  # noqa: BLE001 - the reader of the pipe went away, or a full disk
            # the body may wait for input forever (a follower): stop it, and raise this in its place
            failed.append(e.__context__ if isinstance(e, SystemExit) and e.__context__ else e)
            if caller is threading.main_thread():
                _thread.interrupt_main()

    thread = threading.Thread(target=snapshots, name="logmetrics-table", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        if failed:
            raise failed[0]
        console.print(make())


@contextmanager
def _cursor_on_stop(live: Live) -> Iterator[None]:
    """Ctrl-Z (SIGTSTP) shows the cursor rich `Live` hides before the shell takes the terminal
    back, and hides it again on `fg` (SIGCONT)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stopped(signum: int, frame: object) -> None:
        live.console.show_cursor(True)
        live.console.file.flush()
        signal.signal(signal.SIGTSTP, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTSTP)  # stops here until SIGCONT
        signal.signal(signal.SIGTSTP, stopped)
        live.console.show_cursor(False)
        live.refresh()

    previous = signal.signal(signal.SIGTSTP, stopped)
    try:
        yield
    finally:
        signal.signal(signal.SIGTSTP, previous)
