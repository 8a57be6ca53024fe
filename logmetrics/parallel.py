"""Parallel replay: parts of the input (files, and byte ranges of large plain files cut at line
ends) are read at once: the first by this process, the others by worker processes into part
aggregators, merged in input order (`Aggregator.merge`) and streamed in, so that memory holds one
whole state and a chunk of another. The output is what one process writes, byte for byte:
merging keeps one run's series order and cap folding, and sums are exact.

Past the cap (`--max-series` label sets), which label sets fold depends on the order they came in.
Once this process's state is full, its label sets are all there will ever be: it tells the workers
(`Aggregator.real`, through a file), and each folds from then on exactly what one run folds
(`Aggregator.freeze`). A worker about to fold by its own cap waits for that word first; told that
the state before its part is not full, it goes on, and a part that had to fold by its own cap
cannot be merged exactly: from that part on, the rest of the input is read here, in order, as one
process would.

Used by `pipeline.replay` for regular files only (stdin and pipes are read in order), without
`--openmetrics-out` (its snapshots follow the records' order).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import pickle
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar, cast

from logmetrics.aggregate import Aggregator
from logmetrics.errors import LogmetricsError
from logmetrics.sources.archive import Lines, ReadStats, line_starts, read_blocks, read_range, regular_file

if TYPE_CHECKING:
    from logmetrics.pipeline import Filters, Ingest

MIN_PART_BYTES = 16 << 20  # less is not worth a process
ACC_CHUNK = 256  # accumulators per pickle from a worker
PROGRESS_LINES = 16_384
MIN_ROOM = 64  # a worker reads in batches no bigger than its room under the cap; below this it waits
T = TypeVar("T")
_END = object()


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
    """One worker per CPU this process may run on: its CPU affinity, capped by its cgroup's CPU
    quota (a container's `--cpus`, systemd's `CPUQuota=`), rounded up. Without the cap a container
    limited to one CPU on a 64-CPU host would start 64 processes, each with a state of its own."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    return max(1, min(cpus, math.ceil(limit))) if limit is not None else cpus


def cgroup_cpu_limit(root: str = "/sys/fs/cgroup", cgroup_file: str = "/proc/self/cgroup") -> float | None:
    """The CPUs the CFS quota of this process's cgroup (the smallest of it and its ancestors) allows,
    cgroup v2 (`cpu.max`) or v1 (`cpu.cfs_quota_us` / `cpu.cfs_period_us`); None without a quota.
    A cgroup path not found under the mount (a container's own cgroup namespace) is the mount's root."""
    try:
        with open(cgroup_file) as f:
            entries = [line.rstrip("\n").split(":", 2) for line in f]
    except OSError:
        return None
    limits: list[float] = []
    for entry in entries:
        if len(entry) != 3:
            continue
        hierarchy, controllers, path = entry
        if hierarchy == "0" and not controllers:
            mounts, read = [root, os.path.join(root, "unified")], _quota_v2
        elif "cpu" in controllers.split(","):
            mounts, read = [os.path.join(root, controllers), os.path.join(root, "cpu")], _quota_v1
        else:
            continue
        for mount in mounts:
            d = os.path.normpath(os.path.join(mount, path.lstrip("/")))
            if not os.path.isdir(d):
                d = mount
            while True:
                try:
                    limit = read(d)
                except (OSError, ValueError):
                    limit = None
                if limit is not None:
                    limits.append(limit)
                if d == mount or len(d) <= len(mount):
                    break
                d = os.path.dirname(d)
    return min(limits) if limits else None


def _quota_v2(d: str) -> float | None:
    with open(os.path.join(d, "cpu.max")) as f:
        quota, period = f.read().split()[:2]  # "max 100000" or "150000 100000"
    return None if quota == "max" else int(quota) / int(period)


def _quota_v1(d: str) -> float | None:
    with open(os.path.join(d, "cpu.cfs_quota_us")) as f, open(os.path.join(d, "cpu.cfs_period_us")) as g:
        quota, period = int(f.read()), int(g.read())
    return quota / period if quota > 0 and period > 0 else None


def plan(files: list[str], jobs: int) -> list[Part] | None:
    """The parts to read in parallel, in input order; None when one process should read it all:
    one job, stdin or a pipe among the files, or too little input for two parts."""
    if jobs < 2:
        return None
    sizes: list[tuple[str, int, bool]] = []
    try:
        for path in files:
            kind = regular_file(path)
            if kind is None:
                return None
            sizes.append((path, *kind))
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


def feed(items: Iterator[T], consume: Callable[[Iterable[T]], None], report: Callable[[], None] | None,
         size: Callable[[], int] | None = None) -> None:
    """Lines (`Lines` blocks among them) or parsed lines into `consume` (`Ingest.lines`,
    `Ingest.results`), calling `report` after every batch: of PROGRESS_LINES lines, or of what `size`
    says before each (a block is cut at a line to fit)."""
    if report is None and size is None:
        consume(items)
        return
    held: list[T] = []  # the next item: one read ahead, or the rest of a block cut

    def next_item() -> T | object:
        return held.pop() if held else next(items, _END)

    def batch(n: int) -> Iterator[T]:
        while n > 0 and (item := next_item()) is not _END:
            if isinstance(item, Lines) and item.n > n:
                item, rest = item.split(n)
                held.append(cast(T, rest))
            yield cast(T, item)
            n -= item.n if isinstance(item, Lines) else 1

    while (first := next_item()) is not _END:  # (a parsed line may be None)
        held.append(cast(T, first))  # `size` is asked only when there is something to read
        consume(batch(PROGRESS_LINES if size is None else size()))
        if report is not None:
            report()


def part_lines(part: Part, stats: ReadStats, max_line_bytes: int) -> Iterator[bytes | Lines]:
    if not part.is_range:
        return read_blocks(list(part.paths), stats, max_line_bytes)
    if part.start == 0:
        stats.files += 1
    return read_range(part.paths[0], part.start, part.end, stats, max_line_bytes, blocks=True)


@dataclass(frozen=True)
class Settings:
    """What a worker needs to build its part's pipeline."""

    max_series: int
    by: str
    max_line_bytes: int
    end_user_label: bool
    filters: Filters


class _Folded(Exception):
    """A worker's part folded label sets: the parent will read it itself (can_merge)."""


Before = str | Connection | None
"""What a worker knows of the state before its part: the file of its `Aggregator.real()` (full),
where word of it will come ("real": that file is there; "none": not full), or nothing (not full)."""


def _worker(part: Part, settings: Settings, shared: Any, out: str, conn: Connection, before: Before,
            real_path: str) -> None:
    """A worker process: read one part, write its aggregator and read stats to the file `out`
    (`_write_part`), then say how it went: "ok", "read it here" (it folded label sets, or its
    result could not be written: a full disk) or the error."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        agg, stats = _read_part(part, settings, shared, before, real_path)
        _write_part(out, agg, stats)
        status: object = "ok"
    except (_Folded, OSError):
        status = "read it here"
    except Exception as e:  # a bug: the parent raises it
        status = e
    conn.send(status)
    conn.close()


def _write_real(path: str, agg: Aggregator) -> None:
    """`agg.real()`: the view rows, then the label sets in pickles of ACC_CHUNK (one pickle of them
    all took 3 MB more at its peak than the state it was taken from)."""
    sigs, rows = agg.real()
    with open(path + ".tmp", "wb") as f:
        pickle.dump(rows, f, pickle.HIGHEST_PROTOCOL)
        items = iter(sigs)
        while chunk := list(islice(items, ACC_CHUNK)):
            pickle.dump(chunk, f, pickle.HIGHEST_PROTOCOL)
    os.rename(path + ".tmp", path)


def _freeze(agg: Aggregator, path: str) -> None:
    with open(path, "rb") as f:
        rows = pickle.load(f)
        agg.freeze(frozenset(_chunks(f)), rows)


def _read_part(part: Part, settings: Settings, shared: Any, before: Before = None,
               real_path: str = "") -> tuple[Aggregator, ReadStats]:
    from logmetrics.parse import Parser
    from logmetrics.pipeline import Ingest

    agg = Aggregator(max_series=settings.max_series, by=settings.by, part=True, rates=False)
    if isinstance(before, str):
        _freeze(agg, before)
        before = None
    ingest = Ingest(agg, Parser(max_line_bytes=settings.max_line_bytes, end_user_label=settings.end_user_label),
                    settings.filters)
    stats = ReadStats()
    reported = [0, 0]
    parent = os.getppid()

    def report() -> None:  # the parent's progress bar sums what the workers read so far
        if os.getppid() != parent:
            os._exit(1)  # the parent is gone (killed): nobody will read this part
        if agg.folded():
            raise _Folded  # stop early: the parent will read this part, in order
        with shared.get_lock():
            shared[0] += stats.bytes_read - reported[0]
            shared[1] += agg.records - reported[1]
        reported[:] = [stats.bytes_read, agg.records]

    def size() -> int:  # lines in the next batch: none may fold by this part's own cap while word may come
        nonlocal before
        while isinstance(before, Connection) and not agg.frozen:
            room = agg.room()  # a line adds one of each at most
            if room >= MIN_ROOM:
                return min(PROGRESS_LINES, room)
            if before.poll(0.25):
                try:
                    word = before.recv()
                except EOFError:  # closed unsaid (the parent is stopping): as "none"
                    word = "none"
                before.close()
                before = None
                if word == "real":
                    _freeze(agg, real_path)
            elif os.getppid() != parent:
                os._exit(1)
        return PROGRESS_LINES

    feed(part_lines(part, stats, settings.max_line_bytes), ingest.lines, report, size)
    report()
    ingest.drop_caches()
    return agg, stats


def _write_part(path: str, agg: Aggregator, stats: ReadStats) -> None:
    """The aggregator without its accumulators and the read stats, then the accumulators in
    pickles of ACC_CHUNK: the worker's pickle memo and the parent's share of the part in memory
    (`_merge_from`) stay one chunk."""
    accs = agg.acc
    agg.acc = {}
    with open(path, "wb") as f:
        pickle.dump((agg, stats), f, pickle.HIGHEST_PROTOCOL)
        items = iter(accs.items())
        while chunk := list(islice(items, ACC_CHUNK)):
            pickle.dump(chunk, f, pickle.HIGHEST_PROTOCOL)


def _merge_from(path: str, agg: Aggregator) -> ReadStats | None:
    """Merge the part `_write_part` wrote to `path` into `agg`: its read stats, or None (nothing
    merged) when it cannot be merged exactly."""
    with open(path, "rb") as f:
        part, stats = pickle.load(f)
        assert isinstance(part, Aggregator) and isinstance(stats, ReadStats)
        if not agg.can_merge(part):
            return None
        agg.merge(part, _chunks(f))
    os.unlink(path)
    return stats


def _chunks(f: BinaryIO) -> Iterator[Any]:
    while True:
        try:
            chunk = pickle.load(f)
        except EOFError:
            return
        yield from chunk


Progress = Callable[[ReadStats, int, int], None]


def replay_parts(
    parts: list[Part], ingest: Ingest, jobs: int, progress: Progress | None, total: int
) -> ReadStats:
    """Read `parts` into `ingest.agg` with `jobs` processes: this one reads the first part itself
    while worker processes read the next ones (up to `jobs` at a time once the first is read); their
    aggregators are merged in order.

    One process per part, each sending its result over its own pipe, whose writing end only the
    worker holds: a worker that dies (killed, out of memory) is an EOF here, never a hang."""
    from logmetrics.pipeline import Filters

    agg = ingest.agg
    settings = Settings(agg.max_series, agg.by, ingest.parser.max_line_bytes, ingest.parser.end_user_label,
                        ingest.filters or Filters())
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
    shared = context.Array("q", 2)  # bytes read, records: of the parts not merged yet
    running: dict[int, tuple[BaseProcess, Connection]] = {}
    waiting: dict[int, Connection] = {}  # workers to tell whether the state before their part is full
    scratch = tempfile.mkdtemp(prefix="logmetrics-replay-")
    real_path = os.path.join(scratch, "real")  # agg.real(), once agg is full
    stats = ReadStats()
    unreadable: set[str] = set()

    def full() -> bool:  # agg is full: its real() is in the file (written once)
        if not os.path.exists(real_path):
            if not agg.full():
                return False
            _write_real(real_path, agg)
        return True

    def start(first: int, last: int) -> None:  # workers for parts[first:last], in input order
        for j in range(first, min(len(parts), last)):
            if j not in running:
                receiver, sender = context.Pipe(duplex=False)
                told = None if full() else context.Pipe(duplex=False)
                worker: BaseProcess = context.Process(target=_worker, daemon=True, args=(
                    parts[j], settings, shared, os.path.join(scratch, str(j)), sender,
                    real_path if told is None else told[0], real_path))
                worker.start()
                sender.close()
                running[j] = (worker, receiver)
                if told is not None:
                    told[0].close()
                    waiting[j] = told[1]

    def tell(j: int, word: str) -> None:  # a few bytes: the pipe takes them without waiting
        with waiting.pop(j) as conn:
            try:
                conn.send(word)
            except OSError:  # the worker is gone: its result says why
                pass

    def check_full() -> None:  # once full: what every worker still waiting folds from then on
        if waiting and full():
            for j in list(waiting):
                tell(j, "real")

    shown = [0, 0]  # bytes, records: the most reported so far

    def report(read: ReadStats) -> None:  # the parts merged, the one read here so far, the workers' so far
        check_full()
        if progress is not None:
            # never back: when workers' parts are read again here (below), what they had read is
            # dropped, and the count holds until the reading here passes it
            shown[0] = max(shown[0], stats.bytes_read + read.bytes_read + shared[0])
            shown[1] = max(shown[1], agg.records + shared[1])
            progress(ReadStats(bytes_read=shown[0]), total, shown[1])

    rest = len(parts)
    try:
        start(1, jobs)
        _read_here(parts[0], ingest, stats, unreadable, report)
        for i in range(1, len(parts)):
            start(i, i + jobs)
            check_full()
            if i in waiting:  # everything before its part is in agg, which is not full
                tell(i, "none")
            process, receiver = running.pop(i)
            while not receiver.poll(0.25):
                report(ReadStats())
            try:
                result = receiver.recv()
            except EOFError:
                process.join()  # its exit code: EOF can come before the process is reaped
                raise LogmetricsError(
                    f"a replay worker process died (exit {process.exitcode}; out of memory?): try --jobs 1"
                ) from None
            finally:
                receiver.close()
                process.join()
            if isinstance(result, Exception):
                raise result
            records = agg.records
            part_stats = _merge_from(os.path.join(scratch, str(i)), agg) if result == "ok" else None
            if part_stats is None:
                rest = i
                break
            with shared.get_lock():  # merged: counted in stats and agg from now on
                shared[0] -= part_stats.bytes_read
                shared[1] -= agg.records - records
            _add(stats, part_stats, parts[i], unreadable)
    finally:
        for process, receiver in running.values():
            process.kill()
            process.join()
            receiver.close()
        for conn in waiting.values():
            conn.close()
        waiting.clear()
        shutil.rmtree(scratch, ignore_errors=True)
    shared[0] = shared[1] = 0  # the workers are gone: what they read and was not merged is read again
    for part in parts[rest:]:  # in order, here, as one process reads them
        _read_here(part, ingest, stats, unreadable, report if progress is not None else None)
    stats.unreadable += len(unreadable)
    return stats


def _read_here(part: Part, ingest: Ingest, stats: ReadStats, unreadable: set[str],
               report: Callable[[ReadStats], None] | None) -> None:
    """Read `part` into `ingest` in this process, adding its read stats to `stats`."""
    read = ReadStats()
    feed(part_lines(part, read, ingest.parser.max_line_bytes), ingest.lines,
         None if report is None else lambda: report(read))
    _add(stats, read, part, unreadable)


def _add(stats: ReadStats, read: ReadStats, part: Part, unreadable: set[str]) -> None:
    stats.bytes_read += read.bytes_read
    stats.files += read.files
    stats.too_long += read.too_long
    for path, why in read.problems.items():
        stats.problems.setdefault(path, why)
    if part.is_range and read.unreadable:
        unreadable.add(part.paths[0])  # once per file, however many of its ranges failed
    else:
        stats.unreadable += read.unreadable
