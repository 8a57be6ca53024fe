"""Parallel replay: parts of the input (files, and byte ranges of large plain files cut at line
ends) are read by worker processes into part aggregators, which are merged in input order
(`Aggregator.merge`). The output is what one process writes, byte for byte: merging keeps one
run's series order and cap folding, and sums are exact. A part that had to fold label sets into
overflow series cannot be merged exactly once anything came before it: from that part on, the
rest of the input is read here, in order, as one process would (high-cardinality input gains
nothing from parallelism, and loses nothing either).

Used by `pipeline.replay` for regular files only (stdin and pipes are read in order), without
`--openmetrics-out` (its snapshots follow the records' order).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import chain, islice
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

from logmetrics.aggregate import Aggregator
from logmetrics.errors import LogmetricsError
from logmetrics.sources.archive import GZIP_MAGIC, ReadStats, line_starts, read_lines, read_range
from logmetrics.sources.journald import JOURNAL_MAGIC

if TYPE_CHECKING:
    from logmetrics.pipeline import Filters, Ingest

MIN_PART_BYTES = 16 << 20  # less is not worth a process
PROGRESS_LINES = 16_384


@dataclass(frozen=True)
class Part:
    """Whole files, or the lines of one plain file that start in [start, end) (end None: to its end)."""

    paths: tuple[str, ...]
    start: int = 0
    end: int | None = None

    @property
    def is_range(self) -> bool:
        return self.start != 0 or self.end is not None


def jobs_default() -> int:
    """One worker per CPU this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def plan(files: list[str], jobs: int) -> list[Part] | None:
    """The parts to read in parallel, in input order; None when one process should read it all:
    one job, stdin or a pipe among the files, or too little input for two parts."""
    if jobs < 2:
        return None
    sizes: list[tuple[str, int, bool]] = []
    try:
        for path in files:
            if path == "-":
                return None
            st = os.stat(path)
            if not os.path.isfile(path):
                return None
            with open(path, "rb") as f:
                head = f.read(len(JOURNAL_MAGIC))
            sizes.append((path, st.st_size, head[:2] != GZIP_MAGIC and head != JOURNAL_MAGIC))
    except OSError:
        return None
    total = sum(size for _, size, _ in sizes)
    if total < 2 * MIN_PART_BYTES:
        return None
    target = max(MIN_PART_BYTES, -(-total // jobs))  # a file bigger than a worker's share is cut
    parts: list[Part] = []
    group: list[str] = []  # small files in a row share a part (a process and a merge each)
    group_size = 0
    for path, size, plain in sizes:
        n = -(-size // target)
        cuts = line_starts(path, size, n) if plain and n > 1 else []
        if not cuts and group_size + size <= target:
            group.append(path)
            group_size += size
            continue
        if group:
            parts.append(Part(tuple(group)))
        group, group_size = ([path], size) if not cuts else ([], 0)
        if cuts:
            bounds: list[int | None] = [0, *cuts, None]
            parts.extend(Part((path,), start or 0, end) for start, end in zip(bounds, bounds[1:], strict=False))
    if group:
        parts.append(Part(tuple(group)))
    return parts if len(parts) > 1 else None


def feed(lines: Iterator[bytes], ingest: Ingest, report: Callable[[], None] | None) -> None:
    """Lines into `ingest`, calling `report` every PROGRESS_LINES lines."""
    if report is None:
        ingest.lines(lines)
        return
    while (first := next(lines, None)) is not None:
        ingest.lines(chain((first,), islice(lines, PROGRESS_LINES - 1)))
        report()


def part_lines(part: Part, stats: ReadStats, max_line_bytes: int) -> Iterator[bytes]:
    if not part.is_range:
        return read_lines(list(part.paths), stats, max_line_bytes)
    if part.start == 0:
        stats.files += 1
    return read_range(part.paths[0], part.start, part.end, stats, max_line_bytes)


@dataclass(frozen=True)
class Settings:
    """What a worker needs to build its part's pipeline."""

    max_series: int
    by: str
    max_line_bytes: int
    end_user_label: bool
    filters: Filters


class _Folded(Exception):
    """A part after the first folded label sets: the parent will read it itself (can_merge)."""


def _worker(part: Part, first: bool, settings: Settings, shared: Any, out: str, conn: Connection) -> None:
    """A worker process: read one part, pickle its aggregator and read stats to the file `out`
    (read back without holding the pickle in memory), then say how it went: "ok", "folded" or the
    error."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        result = _read_part(part, first, settings, shared)
        with open(out, "wb") as f:
            pickle.dump(result, f, pickle.HIGHEST_PROTOCOL)
        status: object = "ok"
    except _Folded:
        status = "folded"
    except Exception as e:  # a bug: the parent raises it
        status = e
    conn.send(status)
    conn.close()


def _read_part(part: Part, first: bool, settings: Settings, shared: Any) -> tuple[Aggregator, ReadStats]:
    from logmetrics.parse import Parser
    from logmetrics.pipeline import Ingest

    agg = Aggregator(max_series=settings.max_series, by=settings.by, part=True)
    ingest = Ingest(agg, Parser(max_line_bytes=settings.max_line_bytes, end_user_label=settings.end_user_label),
                    settings.filters)
    stats = ReadStats()
    reported = [0, 0]

    def report() -> None:  # the parent's progress bar sums what the workers read so far
        if not first and agg.folded():
            raise _Folded  # stop early: this part will be read again, in order
        with shared.get_lock():
            shared[0] += stats.bytes_read - reported[0]
            shared[1] += agg.records - reported[1]
        reported[:] = [stats.bytes_read, agg.records]

    feed(part_lines(part, stats, settings.max_line_bytes), ingest, report)
    report()
    agg.drop_caches()
    return agg, stats


Progress = Callable[[ReadStats, int, int], None]


def replay_parts(
    parts: list[Part], ingest: Ingest, jobs: int, progress: Progress | None, total: int
) -> ReadStats:
    """Read `parts` with up to `jobs` worker processes at a time into `ingest.agg`, merged in order.

    One process per part, each sending its result over its own pipe, whose writing end only the
    worker holds: a worker that dies (killed, out of memory) is an EOF here, never a hang."""
    from logmetrics.pipeline import Filters

    agg = ingest.agg
    settings = Settings(agg.max_series, agg.by, ingest.parser.max_line_bytes, ingest.parser.end_user_label,
                        ingest.filters or Filters())
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
    shared = context.Array("q", 2)  # bytes read, records: of the parts not merged yet
    running: dict[int, tuple[BaseProcess, Connection]] = {}
    scratch = tempfile.mkdtemp(prefix="logmetrics-replay-")
    stats = ReadStats()
    unreadable: set[str] = set()
    rest: list[Part] = []
    try:
        for i, part in enumerate(parts):
            for j in range(i, min(len(parts), i + jobs)):  # keep `jobs` workers busy, in input order
                if j not in running:
                    receiver, sender = context.Pipe(duplex=False)
                    worker: BaseProcess = context.Process(target=_worker, daemon=True, args=(
                        parts[j], j == 0, settings, shared, os.path.join(scratch, str(j)), sender))
                    worker.start()
                    sender.close()
                    running[j] = (worker, receiver)
            process, receiver = running.pop(i)
            while not receiver.poll(0.25):
                if progress is not None:
                    progress(ReadStats(bytes_read=stats.bytes_read + shared[0]), total, agg.records + shared[1])
            try:
                result = receiver.recv()
            except EOFError:
                raise LogmetricsError(
                    f"a replay worker process died (exit {process.exitcode}; out of memory?): try --jobs 1"
                ) from None
            finally:
                receiver.close()
                process.join()
            if isinstance(result, Exception):
                raise result
            if result == "ok":
                with open(os.path.join(scratch, str(i)), "rb") as f:
                    part_agg, part_stats = pickle.load(f)
                os.unlink(f.name)
            if result != "ok" or not agg.can_merge(part_agg):
                rest = parts[i:]
                break
            agg.merge(part_agg)
            with shared.get_lock():  # merged: counted in stats and agg from now on
                shared[0] -= part_stats.bytes_read
                shared[1] -= part_agg.records
            _add(stats, part_stats, part, unreadable)
    finally:
        for process, receiver in running.values():
            process.kill()
            process.join()
            receiver.close()
        shutil.rmtree(scratch, ignore_errors=True)
    for part in rest:  # in order, here, as one process reads them
        part_stats = ReadStats()
        report = None if progress is None else lambda read=part_stats: progress(
            ReadStats(bytes_read=stats.bytes_read + read.bytes_read), total, agg.records)
        feed(part_lines(part, part_stats, ingest.parser.max_line_bytes), ingest, report)
        _add(stats, part_stats, part, unreadable)
    stats.unreadable += len(unreadable)
    return stats


def _add(stats: ReadStats, read: ReadStats, part: Part, unreadable: set[str]) -> None:
    stats.bytes_read += read.bytes_read
    stats.files += read.files
    stats.too_long += read.too_long
    if part.is_range and read.unreadable:
        unreadable.add(part.paths[0])  # once per file, however many of its ranges failed
    else:
        stats.unreadable += read.unreadable
