"""Wires the stages: source lines -> parser -> filters -> aggregator (-> backfill snapshots).

`replay()` is the offline loop; `serve` and `tail` use `Ingest` on their followers' batches.
"""

from __future__ import annotations

import fnmatch
import heapq
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter
from typing import Literal

from logmetrics.aggregate import Aggregator
from logmetrics.events import EventKind, LogEvent, ParseResult, RequestEvent, Skip, SkipReason
from logmetrics.export import OpenMetricsBackfill
from logmetrics.hotloop import HotLoop, hot_loop
from logmetrics.parallel import feed, plan, replay_parts
from logmetrics.parse import LEVELS, Parser
from logmetrics.sources.archive import (
    Lines,
    ReadStats,
    each_line,
    expand,
    plain_size,
    read_blocks,
    read_lines,
    rotation_key,
)

_FILTERED = Skip(SkipReason.FILTERED)
_RANK = {name: i for i, name in enumerate(LEVELS)}


@dataclass
class Filters:
    """Record filters: model globs (requested model, model group or deployment), time range; and
    for `tail`: provider globs, request status, minimum level, a substring of the error message.
    A filter on request fields (models, providers, status, grep) drops every non-request line."""

    models: list[str] = field(default_factory=list)
    since: float | None = None
    until: float | None = None
    providers: list[str] = field(default_factory=list)
    status: Literal["success", "failure"] | None = None
    level: str | None = None  # minimum: DEBUG < INFO < WARNING < ERROR < CRITICAL
    grep: str | None = None  # case-insensitive substring of RequestEvent.error_message

    def __bool__(self) -> bool:
        return bool(self.models or self.providers or self.status or self.level or self.grep) or (
            self.since is not None or self.until is not None
        )

    def keep(self, r: RequestEvent | LogEvent) -> bool:
        if self.level is not None and _RANK.get(r.level, 1) < _RANK[self.level]:
            return False
        if (self.providers or self.status or self.grep) and not (
            isinstance(r, RequestEvent) and self._request(r)
        ):
            return False
        t = r.time
        if self.since is not None and (t is None or t < self.since):
            return False
        if self.until is not None and (t is None or t >= self.until):
            return False
        if self.models:
            if not isinstance(r, RequestEvent):
                return False
            lab = r.labels
            names = {lab.requested_model, lab.model_group, lab.model, lab.litellm_model_name}
            if r.deployment is not None:
                names.add(r.deployment.litellm_model_name)
            return any(n and fnmatch.fnmatchcase(n, g) for n in names for g in self.models)
        return True

    def _request(self, r: RequestEvent) -> bool:
        if self.status is not None and (r.kind is EventKind.SUCCESS) != (self.status == "success"):
            return False
        if self.grep is not None and self.grep.casefold() not in (r.error_message or "").casefold():
            return False
        if self.providers:
            names = {r.labels.api_provider, (r.deployment or r.labels).api_provider}
            return any(n and fnmatch.fnmatchcase(n, g) for n in names for g in self.providers)
        return True


@dataclass
class Ingest:
    """Parse and aggregate lines, applying filters; the one loop every command shares."""

    agg: Aggregator
    parser: Parser
    filters: Filters = field(default_factory=Filters)
    backfill: OpenMetricsBackfill | None = None

    def __post_init__(self) -> None:
        self._hot_for: tuple[Aggregator, Parser] | None = None
        self._hot: HotLoop | None = None

    def lines(self, lines: Iterable[bytes | Lines]) -> None:
        parse, add, backfill = self.parser.parse, self.agg.add, self.backfill
        if not self.filters and backfill is None:  # the common case: nothing between parse and add
            hot = self._hot_loop()
            if hot is not None:
                hot.lines(lines)
                return
            for line in each_line(lines):
                add(parse(line))  # add(None) (a blank line) does nothing
            return
        self.results(map(parse, each_line(lines)))

    def _hot_loop(self) -> HotLoop | None:
        """The C loop for the aggregator and parser held now (serve swaps its aggregator on a reload)."""
        if self._hot_for is None or self._hot_for[0] is not self.agg or self._hot_for[1] is not self.parser:
            self._hot_for = (self.agg, self.parser)
            self._hot = hot_loop(self.agg, self.parser)
        return self._hot

    def drop_caches(self) -> None:
        """Forget what the loop caches for speed (everything is read: leave the memory to the exposition)."""
        self.parser.drop_caches()
        self.agg.drop_caches()
        if self._hot is not None:
            self._hot.drop_caches()

    def results(self, results: Iterable[ParseResult | None]) -> None:
        """Parsed lines into the aggregator, through the filters and the backfill."""
        add, backfill = self.agg.add, self.backfill
        filters = self.filters if self.filters else None
        for r in results:
            if r is None:
                continue
            if filters is not None and not isinstance(r, Skip) and not filters.keep(r):
                r = _FILTERED
            elif backfill is not None and not isinstance(r, Skip) and r.time:
                backfill.observe_time(self.agg, r.time)
            add(r)


Progress = Callable[[ReadStats, int, int], None]
"""Called now and then during a replay with the read stats, the total size of the input when it
is known (plain files: bytes, else 0) and the records read so far."""


def replay(paths: list[str], ingest: Ingest, progress: Progress | None = None, jobs: int = 1) -> ReadStats:
    """Read every file of `paths` (rotated sets oldest first) into `ingest`, with up to `jobs`
    worker processes (`parallel.py`: the same result)."""
    files = expand(paths)
    total = _plain_size(files) if progress is not None else 0
    parts = plan(files, jobs) if ingest.backfill is None else None
    if parts is not None:
        stats = replay_parts(parts, ingest, jobs, progress, total)
    else:
        stats = ReadStats()
        report = None if progress is None else lambda: progress(stats, total, ingest.agg.records)
        sets = [list(group) for _, group in groupby(files, key=lambda path: rotation_key(path)[0])]
        if ingest.backfill is not None and len(sets) > 1:
            feed(_by_time(sets, stats, ingest.parser), ingest.results, report)
        else:
            feed(read_blocks(files, stats, ingest.parser.max_line_bytes), ingest.lines, report)
    ingest.agg.skip(SkipReason.TOO_LONG, stats.too_long)
    ingest.agg.skip(SkipReason.UNREADABLE, stats.unreadable)
    ingest.drop_caches()
    if ingest.backfill is not None:
        ingest.backfill.close(ingest.agg)
    return stats


def _by_time(sets: list[list[str]], stats: ReadStats, parser: Parser) -> Iterator[ParseResult | None]:
    """Rotated sets (several hosts' logs, say), each in time order, read side by side as one stream
    in record-time order: a backfill stamps a record at the step it happened in, and snapshots only
    go forward, so reading one host's days after the other's would stamp all of the second at the
    end. A line without a time stays after the line before it in its set."""

    def timed(files: list[str]) -> Iterator[tuple[float, ParseResult | None]]:
        last = -math.inf
        for line in read_lines(files, stats, parser.max_line_bytes):
            r = parser.parse(line)
            if r is not None and not isinstance(r, Skip) and r.time:
                last = r.time
            yield last, r

    return (r for _, r in heapq.merge(*map(timed, sets), key=itemgetter(0)))


def _plain_size(files: list[str]) -> int:
    """Bytes the files hold when all are plain regular files (what reading them will count), else 0."""
    sizes = [plain_size(path) for path in files]
    return 0 if None in sizes else sum(size for size in sizes if size is not None)
