"""`logmetrics tail`: records as they arrive, one readable line each, JSON, or a live table.

Two phases, in order: the last N shown records (read backwards from the end of the file in
blocks, so a 2 GB file costs a few reads; `-n all` reads forwards, from near the end with
`--since`), then following with the
same followers `serve` uses (`FileFollower` across rotations and truncations, `JournalFollower`
with cursors). The follower is opened first and history ends exactly where it starts, so no
line is shown twice or lost between the two.

Every line goes `Parser.parse` -> `Select` (pipeline.Filters, --requests-only) -> a `Sink`.
Formatting here is plain data, `(text, style)` segments; `view.py` gives them colour. No line's
text is ever shown: requests become their label values and numbers, other log lines their
level, component and access-line fields, unparsable lines `skipped: <reason>`.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Annotated, BinaryIO, Protocol

import msgspec
import typer

from logmetrics import view
from logmetrics.aggregate import Aggregator
from logmetrics.errors import LogmetricsError, SourceError, UsageError
from logmetrics.events import EventKind, LogEvent, RequestEvent, Skip, SkipReason
from logmetrics.parse import _PLAIN_LEVEL, DEFAULT_MAX_LINE_BYTES, LEVELS, Parser, _log_event
from logmetrics.pipeline import Filters
from logmetrics.sources.archive import ReadStats, expand, plain_size, read_lines, rotation_key
from logmetrics.sources.file import FileFollower
from logmetrics.sources.journald import MAX_LINE_BYTES, JournalFollower, LineMaxJoiner, no_entries

Shown = RequestEvent | LogEvent | Skip
Segments = list[tuple[str, str]]  # (text, style name); view.LINE_STYLES maps names to colours
BLOCK = 1 << 16
_TOO_LONG = Skip(SkipReason.TOO_LONG)
_FILTERED = Skip(SkipReason.FILTERED)
PLAIN = "text"  # LogEvent.component of a plain-text line


# -- selection ------------------------------------------------------------------------------


@dataclass
class Select:
    """Which results are shown. A skipped line has no fields, so it matches no filter: it is
    shown only when no filter is given (and not with --requests-only)."""

    filters: Filters = field(default_factory=Filters)
    requests_only: bool = False

    def __call__(self, r: Shown) -> bool:
        if isinstance(r, Skip):
            return not self.requests_only and not self.filters
        if self.requests_only and not isinstance(r, RequestEvent):
            return False
        return not self.filters or self.filters.keep(r)


def decode(parser: Parser, line: bytes) -> Shown | None:
    """`parser.parse`, except that a plain-text log line (uvicorn, LiteLLM without json_logs:
    one that names a level or is an access line) becomes a LogEvent (its level and access-line
    fields) rather than a `not_json` skip. Other text (traceback lines, garbage) stays skipped."""
    r = parser.parse(line)
    if isinstance(r, Skip) and r.reason is SkipReason.NOT_JSON and line.lstrip()[:1] != b"{":
        try:
            text = line.decode()
        except UnicodeDecodeError:
            return r
        found = _PLAIN_LEVEL.search(text)
        event = _log_event(text, found.group(1) if found else "INFO", PLAIN, None, None, None)
        return event if found or event.route else r
    return r


# -- reading history ------------------------------------------------------------------------


def read_back(path: str, end: int | None, max_line: int) -> Iterator[tuple[int, bytes | None]]:
    """(offset, line) of the lines of `path` that end at or before byte `end` (default: its size),
    newest first, read backwards in blocks. A line longer than `max_line` is None (never held
    whole); `offset` is where the line starts."""
    with open(path, "rb") as f:
        pos = os.fstat(f.fileno()).st_size if end is None else end
        carry = b""
        dropping = False  # inside a line that is already too long
        while pos > 0:
            size = min(BLOCK, pos)
            pos -= size
            chunk = os.pread(f.fileno(), size, pos)
            buf = chunk if dropping else chunk + carry
            parts = buf.split(b"\n")
            if len(parts) == 1:
                carry = b"" if dropping else parts[0]
                if len(carry) > max_line:
                    dropping, carry = True, b""
                continue
            stop = pos + len(buf)  # where the line being yielded ends
            if dropping:
                stop -= len(parts.pop()) + 1
                dropping = False
                yield stop + 1, None
            for line in reversed(parts[1:]):
                stop -= len(line)
                yield stop, None if len(line) > max_line else line.removesuffix(b"\r")
                stop -= 1
            carry = parts[0]
            if len(carry) > max_line:
                dropping, carry = True, b""
        if dropping:
            yield 0, None
        elif carry:
            yield 0, carry.removesuffix(b"\r")


def read_range(path: str, start: int, end: int | None, max_line: int) -> Iterator[bytes | None]:
    """The lines of `path` from byte `start` (a line start) to `end` (default: its size), oldest
    first. A line longer than `max_line` is None (never held whole)."""
    with open(path, "rb") as f:
        stop = os.fstat(f.fileno()).st_size if end is None else end
        pos, rest, dropping = start, b"", False
        while pos < stop:
            chunk = os.pread(f.fileno(), min(16 * BLOCK, stop - pos), pos)
            if not chunk:
                break
            pos += len(chunk)
            parts = (rest + chunk).split(b"\n")
            rest = parts.pop()
            for line in parts:
                if dropping:
                    dropping = False
                    yield None
                else:
                    yield None if len(line) > max_line else line.removesuffix(b"\r")
            if len(rest) > max_line:
                dropping, rest = True, b""
        if dropping:
            yield None
        elif rest:
            yield rest.removesuffix(b"\r")


def _plain(path: str) -> bool:
    """A regular file that can be read backwards (not stdin, a pipe, gzip or a journal file)."""
    return plain_size(path) is not None


def last_shown(files: list[str], n: int, select: Select, parser: Parser, max_line: int,
               live_end: int | None = None) -> list[Shown]:
    """The last `n` results `select` keeps, oldest first, reading the newest file backwards and
    older ones only while more are needed. `live_end`: where the last file's history ends."""
    chunks: list[list[Shown]] = []
    need = n
    for i in range(len(files) - 1, -1, -1):
        if need <= 0:
            break
        path = files[i]
        end = live_end if i == len(files) - 1 else None
        got: list[Shown] = []
        if _plain(path):
            for _, line in read_back(path, end, max_line):
                r = _TOO_LONG if line is None else decode(parser, line)
                if r is not None and select(r):
                    got.append(r)
                    if len(got) >= need:
                        break
            got.reverse()
        else:
            got = list(deque((r for r in forward([path], parser, max_line) if select(r)), maxlen=need))
        chunks.append(got)
        need -= len(got)
    return [r for chunk in reversed(chunks) for r in chunk]


SINCE_SLACK = 300.0  # seconds records may be out of time order in a file (they are written as requests end)


def every(files: list[str], parser: Parser, max_line: int, since: float | None = None,
          live_end: int | None = None) -> Iterator[Shown]:
    """Every result of `files` in reading order, the last one up to `live_end`. With `since`, the
    newest plain files are first scanned backwards for a record older than `since` (less
    SINCE_SLACK), and reading starts there rather than at the start of the oldest file."""
    first, offset = 0, 0
    if since is not None:
        for i in range(len(files) - 1, -1, -1):
            found = _older_than(files[i], live_end if i == len(files) - 1 else None, since - SINCE_SLACK,
                                parser, max_line)
            if found is not None:
                first, offset = i, found
                break
    for i in range(first, len(files)):
        path = files[i]
        if not _plain(path):
            yield from forward([path], parser, max_line)
            continue
        end = live_end if i == len(files) - 1 else None
        for line in read_range(path, offset if i == first else 0, end, max_line):
            r = _TOO_LONG if line is None else decode(parser, line)
            if r is not None:
                yield r


def _older_than(path: str, end: int | None, when: float, parser: Parser, max_line: int) -> int | None:
    """Where to start reading `path` to see every record at or after `when`: at the newest record
    older than that; 0 if the file cannot be scanned; None if none is older (read the file whole,
    and look in the one before)."""
    if not _plain(path):
        return 0
    for offset, line in read_back(path, end, max_line):
        r = None if line is None else parser.parse(line)
        if isinstance(r, (RequestEvent, LogEvent)) and r.time and r.time < when:  # 0: no time given
            return offset  # that record is read again, and left out by --since
    return None


def forward(files: list[str], parser: Parser, max_line: int) -> Iterator[Shown]:
    """Every result of `files` in reading order (gzip, journal files, stdin as they come)."""
    stats = ReadStats()
    for line in read_lines(files, stats, max_line):
        while stats.too_long:  # read_lines counts them as it drops them, before the next line
            stats.too_long -= 1
            yield _TOO_LONG
        r = decode(parser, line)
        if r is not None:
            yield r
    for _ in range(stats.too_long):
        yield _TOO_LONG
    for _ in range(stats.unreadable):
        yield Skip(SkipReason.UNREADABLE)


# -- journald -------------------------------------------------------------------------------


class _Cursor(msgspec.Struct):
    cursor: str | None = msgspec.field(default=None, name="__CURSOR")


def journal_last(unit: str, user: bool, n: int, select: Select, parser: Parser,
                 directory: str | None) -> tuple[list[Shown], str | None]:
    """The last `n` shown entries of a unit (journalctl -r, stopped once enough are found) and
    the cursor of the newest entry, where following goes on."""
    where = ["--directory", directory] if directory else []
    argv = ["journalctl", *where, "-r", "-o", "json", "--all", "--no-pager",
            "--user-unit" if user else "-u", unit]
    got: list[Shown] = []
    cursor: str | None = None
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    except FileNotFoundError:
        raise SourceError("journalctl not found: install systemd or put it on PATH") from None
    assert proc.stdout is not None
    with proc:  # closes the pipe and reaps the child
        for raw in proc.stdout:
            line = raw.rstrip(b"\n")
            if cursor is None:
                try:
                    cursor = msgspec.json.decode(line, type=_Cursor).cursor
                except msgspec.DecodeError:
                    pass
            if len(got) >= n:
                break
            r = decode(parser, line)
            if r is not None and select(r):
                got.append(r)
        proc.kill()
    got.reverse()
    return got, cursor


# -- output ---------------------------------------------------------------------------------


_SECOND: list[tuple[int, str, str]] = [(-1, "", "")]  # the last second formatted: (second, date+time, zone)


def _when(t: float | None) -> str:
    """Local time with milliseconds and zone: `2026-11-22 08:37:01.218 CET`."""
    if not t:
        return "-".ljust(27)
    # to the microsecond first, as datetime.fromtimestamp() does: a record's ".123" is the float
    # ….12299990654, which cut to milliseconds showed as .122
    second, micros = divmod(round(t * 1e6), 1_000_000)
    cached = _SECOND[0]
    if cached[0] != second:
        local = datetime.fromtimestamp(second).astimezone()
        cached = _SECOND[0] = (second, local.strftime("%Y-%m-%d %H:%M:%S."), local.tzname() or "")
    return f"{cached[1]}{micros // 1000:03d} {cached[2]}"


def _dur(v: float) -> str:
    return f"{v * 1000:.0f}ms" if v < 1 else f"{v:.2f}s"


def format_event(r: Shown) -> Segments:
    """One line of plain data: (text, style name) segments, joined by the writer."""
    if isinstance(r, Skip):
        return [(f"skipped: {r.reason.value}", "skip")]
    level = r.level if r.level in LEVELS else "INFO"
    head: Segments = [(_when(r.time), "time"), (" ", ""), (f"{level:<5}", f"level.{level}")]
    if isinstance(r, LogEvent):
        parts = [p for p in (r.component, r.method, r.route, r.status) if p]
        if r.call_id:
            parts.append(f"call {r.call_id}")
        return [*head, (" " + view.printable(" ".join(parts)) if parts else "", "log")]
    lab = r.labels
    dep = r.deployment or lab
    requested = lab.requested_model or lab.model_group or lab.model or "-"
    deployment = dep.litellm_model_name or "-"
    provider = dep.api_provider or lab.api_provider
    out: Segments = [*head, (" ", ""), (view.printable(requested), "model"), (" -> ", "arrow"),
                     (view.printable(deployment), "deployment")]
    if provider:
        out += [(" ", ""), (view.printable(provider), "provider")]
    if r.total_latency is not None:
        out += [(" ", ""), (_dur(r.total_latency), "latency")]
    if r.ttft is not None:
        out += [(" ttft ", "label"), (_dur(r.ttft), "latency")]
    if r.prompt_tokens is not None or r.completion_tokens is not None:
        out += [(" ", ""), (f"{r.prompt_tokens or 0}/{r.completion_tokens or 0}", "tokens"), (" tok", "label")]
    if r.spend is not None:
        out += [(" ", ""), (f"${r.spend:.6f}", "cost")]
    failed = r.kind is not EventKind.SUCCESS
    status = lab.status_code or lab.exception_status or ("200" if not failed else None)
    if status:
        out += [(" ", ""), (view.printable(status), "status.error" if failed else "status.ok")]
    error = lab.exception_class or dep.exception_class
    if failed and error:
        out += [(" ", ""), (view.printable(error), "error")]
    return out


def to_json(r: Shown) -> bytes:
    """One event as documented in docs/tail.md: `type` first, then the typed event's fields."""
    kind = "request" if isinstance(r, RequestEvent) else "log" if isinstance(r, LogEvent) else "skipped"
    return msgspec.json.encode({"type": kind, **msgspec.to_builtins(r)})


class Sink(Protocol):
    def emit(self, r: Shown) -> None: ...
    def flush(self) -> None: ...


@dataclass
class JsonSink:
    out: BinaryIO

    def emit(self, r: Shown) -> None:
        self.out.write(to_json(r) + b"\n")

    def flush(self) -> None:
        self.out.flush()


@dataclass
class TextSink:
    writer: view.LineWriter

    def emit(self, r: Shown) -> None:
        self.writer.write(format_event(r))

    def flush(self) -> None:
        self.writer.flush()


@dataclass
class TableSink:
    """Feeds the live table's aggregator; filtered records count as `filtered` skips."""

    agg: Aggregator
    select: Select

    def emit(self, r: Shown) -> None:
        self.agg.add(r if isinstance(r, Skip) or self.select(r) else _FILTERED)

    def flush(self) -> None:
        pass


# -- the command ----------------------------------------------------------------------------


@dataclass
class Plan:
    """What to read: history then following. Built by `plan()`, run by `run()`."""

    history: Iterable[Shown]  # already selected (last N) or everything (-n all: select later)
    selected: bool
    follow: Iterator[tuple[list[bytes], int]] | None = None  # (lines, too-long count) batches
    lag: Callable[[], int | None] = lambda: None
    source: str = ""


def plan(paths: list[str], journal: str | None, user: bool, n: int | None, follow: bool,
         select: Select, parser: Parser, max_line: int, journal_dir: str | None = None) -> Plan:
    if journal is not None:
        return _plan_journal(journal, user, n, follow, select, parser, max_line, journal_dir)
    files = expand(paths or ["-"])
    live = files[-1]
    since = select.filters.since
    if follow and live == "-":
        return Plan(forward(files[:-1], parser, max_line), False, _stdin(max_line), source="stdin")
    if not follow or not _plain(live):
        if n is None:
            return Plan(every(files, parser, max_line, since), False)
        return Plan(last_shown(files, n, select, parser, max_line), True)
    if len({f for f in files if _plain(f) and rotation_key(f)[0] != rotation_key(live)[0]}) > 0:
        raise UsageError("tail follows one log file: give one file (with its rotated archives), "
                         "or add --no-follow to read several")
    # the follower starts at the end; history is read up to exactly where it starts
    follower = FileFollower(live, from_end=True, max_line_bytes=max_line)
    batches = ((b.lines, b.skipped_too_long) for b in follower)

    def lag() -> int | None:
        return sum(follower.lag_bytes().values())

    offsets = [int(e["offset"]) for e in follower.positions()["files"] if e["current"]]
    end = offsets[0] if offsets else 0
    if n is None:
        return Plan(every(files, parser, max_line, since, live_end=end), False, batches, lag, live)
    return Plan(last_shown(files, n, select, parser, max_line, live_end=end), True, batches, lag, live)


def _journal_source(unit: str, user: bool) -> str:
    return f"journald:{'user:' if user else ''}{unit}"


def _say(text: str) -> None:
    """A hint for people, on stderr."""
    sys.stderr.write(f"logmetrics: {text}\n")


def _plan_journal(unit: str, user: bool, n: int | None, follow: bool, select: Select, parser: Parser,
                  max_line: int, directory: str | None) -> Plan:
    source = _journal_source(unit, user)
    if n is None:
        if not follow:
            return Plan(_journal_all(unit, user, parser, directory), False, source=source)
        follower = JournalFollower(unit, user=user, since="@0", directory=directory)
        return Plan([], False, ((b.lines, b.skipped_too_long) for b in follower), source=source)
    history, cursor = journal_last(unit, user, n, select, parser, directory)
    if not follow:
        if cursor is None:  # not one entry (following, the follower says so)
            _say(no_entries(source))
        return Plan(history, True, source=source)
    since = None if cursor else f"@{time.time():.6f}"
    follower = JournalFollower(unit, user=user, cursor=cursor, since=since, directory=directory)
    return Plan(history, True, ((b.lines, b.skipped_too_long) for b in follower), source=source)


def _journal_all(unit: str, user: bool, parser: Parser, directory: str | None) -> Iterator[Shown]:
    where = ["--directory", directory] if directory else []
    argv = ["journalctl", *where, "-o", "json", "--all", "--no-pager", "--user-unit" if user else "-u", unit]
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    except FileNotFoundError:
        raise SourceError("journalctl not found: install systemd or put it on PATH") from None
    assert proc.stdout is not None
    joiner = LineMaxJoiner(MAX_LINE_BYTES)  # lines journald split at its LineMax, joined again
    entries = 0
    with proc:
        for raw in proc.stdout:
            entries += 1
            for line in joiner.feed((raw.rstrip(b"\n"),))[0]:
                r = decode(parser, line)
                if r is not None:
                    yield r
        for line in joiner.finish()[0]:
            r = decode(parser, line)
            if r is not None:
                yield r
    if not entries:  # it would show nothing, as if the unit were quiet
        _say(no_entries(_journal_source(unit, user)))


def _stdin(max_line: int) -> Iterator[tuple[list[bytes], int]]:
    for raw in sys.stdin.buffer:
        line = raw.rstrip(b"\n").removesuffix(b"\r")
        yield ([], 1) if len(line) > max_line else ([line], 0)


def run(p: Plan, select: Select, sink: Sink, parser: Parser, lock: threading.Lock | None = None) -> None:
    """History, then every followed batch, into `sink` (under `lock`, for the live table)."""
    guard = lock or _NoLock()
    history = iter(p.history)
    while chunk := list(islice(history, 4096)):  # the live table refreshes between chunks
        with guard:
            for r in chunk:
                if p.selected or isinstance(sink, TableSink) or select(r):
                    sink.emit(r)
        sink.flush()
    if p.follow is None:
        return
    for lines, too_long in p.follow:
        with guard:
            for _ in range(too_long):
                if isinstance(sink, TableSink) or select(_TOO_LONG):
                    sink.emit(_TOO_LONG)
            for line in lines:
                got = decode(parser, line)
                if got is not None and (isinstance(sink, TableSink) or select(got)):
                    sink.emit(got)
        sink.flush()


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _lines_arg(text: str) -> int | None:
    if text == "all":
        return None
    try:
        n = int(text)
    except ValueError:
        raise UsageError(f"-n {text!r}: give a number of records or 'all'") from None
    if n < 0:
        raise UsageError("-n must be 0 or more, or 'all'")
    return n


_SORTS = ", ".join(view.LIVE_SORT_KEYS)
MAX_INTERVAL = 86400.0  # a day between table refreshes (a wait must stay below threading.TIMEOUT_MAX)


def tail_cmd(
    paths: Annotated[list[str] | None, typer.Argument(
        help="The log file to follow (rotated and compressed archives of it may be given too: they are read "
        "oldest first), or - for stdin. Example: logmetrics tail /var/log/litellm/requests.log",
        show_default=False, metavar="PATH...")] = None,
    lines: Annotated[str, typer.Option(
        "-n", "--lines", help="Show the last N records first, or 'all'. Example: -n 100, -n all.")] = "10",
    follow: Annotated[bool, typer.Option(
        "--follow/--no-follow", help="Keep following (across rotation, like tail -F), or print and exit. "
        "Example: --no-follow.")] = True,
    journal: Annotated[str | None, typer.Option(
        "--journal", help="Follow a systemd unit's journal instead of a file. Example: --journal litellm.service",
        show_default=False)] = None,
    user: Annotated[bool, typer.Option("--user", help="--journal names a user unit (systemctl --user).")] = False,
    model: Annotated[list[str] | None, typer.Option(
        "--model", help="Only requests whose requested model, model group or deployment model matches "
        "this glob (repeatable). Example: --model 'gpt-4o*' --model claude-haiku", show_default=False)] = None,
    level: Annotated[str | None, typer.Option(
        "--level", help="Minimum level: DEBUG < INFO < WARNING < ERROR < CRITICAL; a failed request is "
        "ERROR. Example: --level error", show_default=False)] = None,
    status: Annotated[str | None, typer.Option(
        "--status", help="Only successful or failed requests. Example: --status failure", show_default=False,
        metavar="success|failure")] = None,
    provider: Annotated[list[str] | None, typer.Option(
        "--provider", help="Only requests to this provider (glob, repeatable). Example: --provider openai",
        show_default=False)] = None,
    since: Annotated[str | None, typer.Option(
        "--since", help="Only records at or after this time: a duration ago or an ISO time (no zone = "
        "local). Example: --since 15m, --since 2026-11-22T07:00", show_default=False)] = None,
    until: Annotated[str | None, typer.Option(
        "--until", help="Only records before this time (same forms as --since). Example: --until 5m",
        show_default=False)] = None,
    grep: Annotated[str | None, typer.Option(
        "--grep", help="Only failed requests whose error message contains TEXT (case-insensitive). "
        "Example: --grep 'rate limit'", show_default=False)] = None,
    requests_only: Annotated[bool, typer.Option(
        "--requests-only", help="Hide everything that is not a request record (access and error log "
        "lines, plain text, skipped lines). Example: --requests-only")] = False,
    output: Annotated[str, typer.Option(
        "--output", "-o", help="text (one coloured line per record) or json (one object per event, "
        "fields in docs/tail.md). Example: -o json", metavar="text|json")] = "text",
    table: Annotated[bool, typer.Option(
        "--table", help="A live per-model table instead of lines (one plain snapshot every --interval "
        "when stdout is not a terminal). Example: --table --sort errors")] = False,
    by: Annotated[str, typer.Option(
        "--by", help="Table rows per requested `model` or per `deployment`. Example: --by deployment",
        metavar="model|deployment")] = "model",
    sort: Annotated[str, typer.Option(
        "--sort", help=f"Table column to sort by: {_SORTS}. Example: --sort p95")] = "requests",
    interval: Annotated[float, typer.Option(
        "--interval", help="Seconds between table refreshes. Example: --interval 5")] = 1.0,
    max_line: Annotated[int, typer.Option(
        "--max-line-bytes", help="Longest line accepted, in bytes; longer lines show as skipped: too_long."
    )] = DEFAULT_MAX_LINE_BYTES,
    journal_dir: Annotated[str | None, typer.Option("--journal-directory", hidden=True)] = None,
) -> None:
    """Follow LiteLLM request logs: one readable line per record, JSON, or a live table.

    Examples: logmetrics tail requests.log --status failure --since 1h;
    logmetrics tail --journal litellm.service --user -o json;
    logmetrics tail requests.log --table --by deployment
    """
    from logmetrics.cli import parse_when  # cli imports this module: import at call time

    if output not in ("text", "json"):
        raise UsageError("--output takes text or json")
    if status not in (None, "success", "failure"):
        raise UsageError("--status takes success or failure")
    if by not in ("model", "deployment"):
        raise UsageError("--by takes model or deployment")
    if table and output == "json":
        raise UsageError("--table shows a table: drop --output json")
    if sort not in view.LIVE_SORT_KEYS:
        raise UsageError(f"--sort takes one of: {_SORTS}")
    if max_line < 1:  # as serve and replay: every line would show as skipped
        raise UsageError("--max-line-bytes must be positive")
    if not 0 < interval <= MAX_INTERVAL:  # also nan and inf
        raise UsageError(f"--interval takes seconds: more than 0, at most {MAX_INTERVAL:.0f}")
    if journal is not None and paths:
        raise UsageError("give either PATH or --journal UNIT, not both")
    if user and journal is None:
        raise UsageError("--user goes with --journal UNIT")
    lvl = None if level is None else {"WARN": "WARNING", "FATAL": "CRITICAL"}.get(level.upper(), level.upper())
    if lvl is not None and lvl not in LEVELS:
        raise UsageError(f"--level takes one of {', '.join(LEVELS)}")
    filters = Filters(models=model or [], since=parse_when(since, "--since"), until=parse_when(until, "--until"),
                      providers=provider or [], status=status, level=lvl, grep=grep)  # type: ignore[arg-type]
    if not paths and journal is None and sys.stdin.isatty():  # it would wait, silent, for records typed in
        _say("no PATH given: reading records from the terminal (Ctrl-D ends); "
             "give a log, e.g. logmetrics tail /var/log/litellm/requests.log")
    select = Select(filters, requests_only)
    parser = Parser(max_line_bytes=max_line)
    n = _lines_arg(lines)
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if main else None
    try:
        _tail(paths or [], journal, user, n, follow, select, parser, max_line, journal_dir, output, table, by,
              sort, interval)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the normal way to stop following
        pass
    except BrokenPipeError:  # `| head`: the reader has gone, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EIO, errno.EDQUOT):
            raise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise LogmetricsError(f"cannot write to stdout: {e.strerror}") from None
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)


def _tail(paths: list[str], journal: str | None, user: bool, n: int | None, follow: bool, select: Select,
          parser: Parser, max_line: int, journal_dir: str | None, output: str, table: bool, by: str, sort: str,
          interval: float) -> None:
    p = plan(paths, journal, user, n, follow, select, parser, max_line, journal_dir)
    if not table:
        sink: Sink = JsonSink(sys.stdout.buffer) if output == "json" else TextSink(view.LineWriter(view.out_console()))
        run(p, select, sink, parser)
        return
    agg = Aggregator(by=by)
    lock = threading.Lock()
    table_sink = TableSink(agg, select)
    console = view.out_console()

    def make() -> view.LiveTable:
        with lock:
            now = time.time() if p.follow is not None else (agg.newest_time or time.time())
            skipped = sum(v for k, v in agg.skipped.items() if k is not SkipReason.FILTERED)
            newest = agg.newest_time if p.follow is not None else None
            footer = view.TableFooter(source=p.source, skipped=skipped, lag_bytes=p.lag(), newest=newest)
            return view.live_table(agg, sort=sort, now=now, footer=footer)

    if p.follow is None:
        run(p, select, table_sink, parser, lock)
        console.print(make())
        return
    with view.live_display(console, make, interval):
        run(p, select, table_sink, parser, lock)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt

