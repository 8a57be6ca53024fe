"""Plain state updated by the hot loop, and its projection onto LiteLLM's metric families.

The hot loop (`Aggregator.add`) does one dict lookup per request event: events with the same
label values share one accumulator (a list of numbers and lazily created histograms). Which
family gets what is decided only when someone looks (`project()`, at scrape or at the end of a
replay), by reading the metric table in `families.py`. prometheus_client is never touched here.
Replay's C loop (`hotloop.py`) adds to the same accumulators, view rows and deployment state, by
the rules of `_request`, `_success` and `_view`: a change to them is a change to `_hotloop.c` too
(tests/test_hotloop.py fails until both agree). It keeps its additions until the aggregator is read
(`defer`, `settle`).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from operator import add, itemgetter

import msgspec

from logmetrics.events import (
    DeploymentState,
    EventKind,
    Labels,
    LogEvent,
    ParseResult,
    RequestEvent,
    Skip,
    SkipReason,
)
from logmetrics.families import DEFAULT_BUCKETS, FAMILIES, LATENCY_BUCKETS, ZERO_COST_REASON, Family

# accumulator slots: counters, then one histogram per observed duration, then the counters added
# since (appended, so that an accumulator of an older state file is the new one's prefix: see
# `pad`)
COUNTERS = (
    "requests", "spend", "total_tokens", "prompt_tokens", "completion_tokens", "cached_tokens",
    "cache_creation_tokens", "audio_input_tokens", "reasoning_tokens", "audio_output_tokens",
    "cache_hits", "cache_misses", "litellm_cached_tokens",
)
HISTOGRAMS: dict[str, tuple[float, ...]] = {
    "total_latency": LATENCY_BUCKETS,
    "api_latency": LATENCY_BUCKETS,
    "ttft": LATENCY_BUCKETS,
    "queue_time": LATENCY_BUCKETS,
    "overhead_latency": LATENCY_BUCKETS,
    "latency_per_output_token": DEFAULT_BUCKETS,
}
MORE_COUNTERS = ("provider_cache_read_tokens", "provider_cache_creation_tokens", "images", "video_seconds")
SLOT = {name: i for i, name in enumerate((*COUNTERS, *HISTOGRAMS, *MORE_COUNTERS))}
# counters whose series exist for every event that feeds them (LiteLLM calls inc(0)); the others
# exist only once something positive was added
DENSE = frozenset({"requests", "spend", "total_tokens", "prompt_tokens", "completion_tokens", "zero_cost"})
EXACT = frozenset({"spend", "video_seconds"})  # counters kept as exact sums (see `exact`)
_H_TOTAL, _H_API, _H_TTFT, _H_QUEUE, _H_OVERHEAD, _H_PER_TOKEN = (SLOT[h] for h in HISTOGRAMS)
_BOUNDS = tuple(HISTOGRAMS.values())
_PROVIDER_CACHE_READ, _PROVIDER_CACHE_CREATION, _IMAGES, _VIDEO_SECONDS = (SLOT[c] for c in MORE_COUNTERS)
# the families each event kind feeds, in table order
_FED_BY = {kind: tuple(f.name for f in FAMILIES if any(feed.kind is kind for feed in f.feeds)) for kind in EventKind}
OVERFLOW = "overflow"
_OVERFLOW_LABELS = Labels(**dict.fromkeys(Labels.__struct_fields__, OVERFLOW))
DEFAULT_MAX_SERIES = 10_000
_FOLDED_SLOTS = 1_024  # folded signatures the hot loop remembers
STATE_FAMILY = "litellm_deployment_state"
ACCESS_FAMILY = "logmetrics_http_access_lines"
StateKey = tuple[str | None, ...]  # litellm_deployment_state's label values
_OVERFLOW_STATE: StateKey = (OVERFLOW, OVERFLOW, OVERFLOW, OVERFLOW)


def state_key(s: DeploymentState) -> StateKey:
    """A deployment state write's key in `Aggregator.state`."""
    return (s.litellm_model_name, s.model_id, s.api_base, s.api_provider)


# Sums of floats (spend, histogram sums) are kept exact: as integers in units of 2**-200. Adding
# integers does not depend on their order, so a sum is the same whichever way its values are
# grouped (parallel replay merges partial states: `Aggregator.merge`) and is rounded once, when
# read (`inexact`): the correctly rounded sum of the values. Every value the parser lets through
# is below events.MAX_VALUE, so none overflows; values below 2**-147 lose their bits under 2**-200.
_EXACT_BITS = 200
_EXACT_SCALE = 2.0**_EXACT_BITS


def exact(value: float) -> int:
    """`value` (finite, |value| < MAX_VALUE) in the exact sums' unit."""
    return int(value * _EXACT_SCALE)


def inexact(total: int) -> float:
    """An exact sum as the nearest float."""
    return math.ldexp(float(total), -_EXACT_BITS)


def new_accumulator() -> list[object]:
    """An accumulator with nothing counted (see SLOT)."""
    acc: list[object] = [0] * len(COUNTERS)
    acc += [None] * len(HISTOGRAMS)
    acc += [0] * len(MORE_COUNTERS)
    return acc


def pad(acc: list[object]) -> list[object]:
    """`acc`, of an older state file (without the counters added since), with those at 0."""
    if len(acc) < len(SLOT):
        acc.extend(new_accumulator()[len(acc):])
    return acc


class Signature(msgspec.Struct, frozen=True, gc=False, cache_hash=True):
    """Everything that decides an event's labels in any family."""

    kind: EventKind
    labels: Labels
    deployment: Labels | None
    proxy: Labels | None
    zero_cost_reason: str | None


@dataclass(slots=True)
class Histogram:
    """Per-bucket (not cumulative) counts, the last one for +Inf, and the sum (exact, see `exact`)."""

    counts: list[int]
    sum_exact: int = 0

    @property
    def sum(self) -> float:
        return inexact(self.sum_exact)

    @property
    def count(self) -> int:
        return sum(self.counts)

    def __add__(self, other: Histogram) -> Histogram:
        if len(self.counts) != len(other.counts):
            raise ValueError("histograms of different buckets")
        return Histogram(list(map(add, self.counts, other.counts)), self.sum_exact + other.sum_exact)


@dataclass
class ModelStats:
    """What the live and summary tables show for one model (requested model or deployment)."""

    requests: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    spend_exact: int = 0  # see `exact`
    latency: dict[int, int] = field(default_factory=dict)  # log-scale sketch, ~1% relative error
    ttft: dict[int, int] = field(default_factory=dict)
    per_second: dict[int, list[int]] = field(default_factory=dict)  # second -> [requests, in, out]

    @property
    def spend(self) -> float:
        return inexact(self.spend_exact)

    def quantile(self, q: float, sketch: str = "latency") -> float | None:
        return sketch_quantile(getattr(self, sketch), q)

    def merge(self, other: ModelStats) -> None:
        """Add `other`'s counts, sketches and per-second slots to this row's."""
        self.requests += other.requests
        self.failures += other.failures
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.spend_exact += other.spend_exact
        for mine, theirs in ((self.latency, other.latency), (self.ttft, other.ttft)):
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0) + v
        for second, slot in other.per_second.items():
            have = self.per_second.setdefault(second, [0, 0, 0])
            for i in range(3):
                have[i] += slot[i]


_SKETCH_SCALE = 50.0  # bucket width: a factor of e**(1/50), 2% wide, <=1% from the truth


def sketch_add(sketch: dict[int, int], value: float) -> None:
    key = math.floor(math.log(value) * _SKETCH_SCALE) if value > 0 else -(10**9)
    sketch[key] = sketch.get(key, 0) + 1


def sketch_quantile(sketch: dict[int, int], q: float) -> float | None:
    total = sum(sketch.values())
    if not total:
        return None
    rank = q * total
    seen = 0
    for key in sorted(sketch):
        seen += sketch[key]
        if seen >= rank:
            return 0.0 if key == -(10**9) else math.exp((key + 0.5) / _SKETCH_SCALE)
    return None  # unreachable


@dataclass
class Series:
    """One projected family: label values (in the family's label order) -> value or Histogram."""

    family: Family
    values: dict[tuple[str, ...], float | Histogram]


class Aggregator:
    """Everything read so far, as plain data. Not thread-safe: the caller serialises access."""

    def __init__(self, *, max_series: int = DEFAULT_MAX_SERIES, by: str = "model", part: bool = False,
                 rates: bool = True) -> None:
        self.max_series = max_series
        self.by = by  # view grouping: "model" (requested model) or "deployment"
        # whether view rows keep their per-second ring (live rates: serve's and tail's tables); a
        # replay's summary shows none, and with hundreds of models the rings are half of its state
        self.rates = rates
        # hot-loop caches: signature -> (its accumulator, its view row, folded into overflow?); the
        # signatures that have an accumulator (at most max_series + a few overflow ones), and a
        # bounded few of those folded into overflow (see _slot). Reset whenever `acc` or `models` is
        # replaced.
        self._slots: dict[Signature, tuple[list[object], ModelStats | None, bool]] = {}
        self.generation = 0  # counts drop_caches(): slots cached elsewhere are valid within one
        self._folded_slots: dict[Signature, tuple[list[object], ModelStats | None, bool]] = {}
        self._acc: dict[Signature, list[object]] = {}
        self._models: dict[str, ModelStats] = {}
        self.state: dict[StateKey, int] = {}
        self.records = 0
        self.skipped: dict[SkipReason, int] = dict.fromkeys(SkipReason, 0)
        self.access_lines: dict[tuple[str, str], int] = {}
        self.log_lines: dict[str, int] = {}
        # records folded into an overflow series: per event kind (one increment per record in the
        # hot loop; `series_dropped` spreads them over the families the kind feeds), and per family
        # for the families outside the signature table (deployment state, access lines)
        self._dropped_kinds: dict[EventKind, int] = dict.fromkeys(EventKind, 0)
        self._dropped_families: dict[str, int] = {}
        self.newest_time: float | None = None
        self.oldest_time: float | None = None
        # a part (see `merge`) also counts the records of each deployment state key it keeps, in
        # the order the keys first came: what merging needs to fold them exactly as one run would
        self._state_records: dict[StateKey, int] | None = {} if part else None
        # a part read after a full state (see `freeze`): the label sets (and, when full too, the view
        # rows) that have a slot there; anything else folds here as it would there
        self.frozen = self.frozen_rows = False
        self._real: frozenset[Signature] | None = None
        self._real_rows: frozenset[str] | None = None
        # what writes additions kept elsewhere into the accumulators and view rows (`settle`)
        self._settlers: list[Callable[[], None]] = []

    def __getstate__(self) -> dict[str, object]:
        self.settle()
        state = self.__dict__.copy()
        state["_real"] = state["_real_rows"] = None  # the state it came from has them: a part goes back without
        state["_settlers"] = []
        return state

    def defer(self, settle: Callable[[], None]) -> None:
        """Let a hot loop keep additions to the accumulators and view rows to itself (hotloop.py: in
        C, integers, so their order does not matter) until `settle` writes them: it is called before
        anything reads or replaces them. Counts, times, skips and the deployment state are never
        kept back."""
        self._settlers.append(settle)

    def settle(self) -> None:
        """Write the additions kept back (`defer`) into the accumulators and view rows."""
        for settle in self._settlers:
            settle()

    @property
    def acc(self) -> dict[Signature, list[object]]:
        """Signature -> accumulator (see COUNTERS and HISTOGRAMS for the slots)."""
        self.settle()
        return self._acc

    @acc.setter
    def acc(self, value: dict[Signature, list[object]]) -> None:
        self._acc = value
        self.drop_caches()  # settles: what waited goes to the accumulators replaced, as it would have

    @property
    def models(self) -> dict[str, ModelStats]:
        """View rows: requested model (or deployment) -> ModelStats."""
        self.settle()
        return self._models

    @models.setter
    def models(self, value: dict[str, ModelStats]) -> None:
        self._models = value
        self.drop_caches()

    def room(self) -> int:
        """Label sets that can still get a slot of their own, and view rows, whichever is fewer."""
        return self.max_series - max(len(self._acc), len(self._models))

    @property
    def series_dropped(self) -> dict[str, int]:
        """Family -> records folded into its overflow series."""
        out = dict(self._dropped_families)
        for kind, n in self._dropped_kinds.items():
            if n:
                for name in _FED_BY[kind]:
                    out[name] = out.get(name, 0) + n
        return dict(sorted(out.items()))  # one order however the counts were split

    @series_dropped.setter
    def series_dropped(self, value: dict[str, int]) -> None:
        self._dropped_families = dict(value)
        self._dropped_kinds = dict.fromkeys(EventKind, 0)

    # -- the hot loop -------------------------------------------------------------------------
    def add(self, result: ParseResult | None) -> None:
        if result is None:
            return
        if isinstance(result, RequestEvent):
            self.records += 1
            self._request(result)
        elif isinstance(result, Skip):
            self.skipped[result.reason] += 1
        else:
            self.records += 1
            self._log(result)

    def drop_caches(self) -> None:
        """Forget the hot loop's caches (they refill as events come): frees memory for a final render."""
        self.settle()
        self._slots.clear()
        self._folded_slots.clear()
        self.generation += 1  # tells hotloop.py to forget the slots it cached

    def skip(self, reason: SkipReason, n: int = 1) -> None:
        self.skipped[reason] += n

    def _log(self, e: LogEvent) -> None:
        self.log_lines[e.level] = self.log_lines.get(e.level, 0) + 1
        if e.route is not None and e.status is not None:
            key = (e.route, e.status)
            if key not in self.access_lines and len(self.access_lines) >= self.max_series:
                key = (OVERFLOW, e.status)  # URL paths are client-chosen: capped like the rest
                self._dropped(ACCESS_FAMILY)
            self.access_lines[key] = self.access_lines.get(key, 0) + 1
        self._saw(e.time)

    def _saw(self, t: float | None) -> None:
        if t:
            if self.newest_time is None or t > self.newest_time:
                self.newest_time = t
            if self.oldest_time is None or t < self.oldest_time:
                self.oldest_time = t

    def _request(self, e: RequestEvent) -> None:
        t = e.time
        if t:
            if self.newest_time is None or t > self.newest_time:
                self.newest_time = t
            if self.oldest_time is None or t < self.oldest_time:
                self.oldest_time = t
        kind = e.kind
        sig = Signature(kind, e.labels, e.deployment, e.proxy, e.zero_cost_reason)
        slot = self._slots.get(sig)
        if slot is None:
            slot = self._slot(sig)
        acc, stats, folded = slot
        acc[0] += 1  # type: ignore[operator]
        if folded:
            self._dropped_kinds[kind] += 1
        s = e.state
        if s is not None:
            self.set_state(state_key(s), s.value)
        if kind is EventKind.SUCCESS:
            self._success(e, acc)
        if stats is not None:
            self._view(e, stats)

    def set_state(self, key: StateKey, value: int) -> None:
        """A `litellm_deployment_state` write: re-inserted, so that the newest write is last, as
        LiteLLM shows it; a new key beyond the cap goes to the overflow series."""
        if self.state.pop(key, None) is None and len(self.state) >= self.max_series:
            key = _OVERFLOW_STATE
            self.state.pop(key, None)
            self._dropped(STATE_FAMILY)
        elif self._state_records is not None:
            self._state_records[key] = self._state_records.get(key, 0) + 1
        self.state[key] = value

    def slot(self, kind: EventKind, labels: Labels, deployment: Labels | None, proxy: Labels | None,
             zero_cost_reason: str | None) -> tuple[list[object], ModelStats | None, bool]:
        """The accumulator, view row and folded flag of an event with these label values (what
        `_request` looks up): for `hotloop.py`, which caches them by the record's raw values."""
        sig = Signature(kind, labels, deployment, proxy, zero_cost_reason)
        return self._slots.get(sig) or self._slot(sig)

    def _slot(self, sig: Signature) -> tuple[list[object], ModelStats | None, bool]:
        """The accumulator and view row of a signature not in the hot-loop cache (the signature
        decides both), and whether it is folded into the overflow series. Folded signatures are
        cached too, a bounded few: their number is the input's to choose, and each one keeps its
        label sets alive (memory at the cap: `bench/README.md`)."""
        slot = self._folded_slots.get(sig)
        if slot is not None:
            return slot
        key = sig
        acc = self._acc.get(key)
        if acc is None:
            real = self._real
            if len(self._acc) >= self.max_series if real is None else sig not in real:
                key = self._overflow(sig)
                acc = self._acc.get(key)
            if acc is None:
                acc = self._acc[key] = new_accumulator()
        slot = (acc, self._view_row(sig), key is not sig)
        if key is sig:
            self._slots[sig] = slot
        else:
            if len(self._folded_slots) >= _FOLDED_SLOTS:
                self._folded_slots.clear()
            self._folded_slots[sig] = slot
        return slot

    def _success(self, e: RequestEvent, acc: list[object]) -> None:
        if e.spend:
            acc[1] += int(e.spend * _EXACT_SCALE)  # type: ignore[operator]  # exact(), inlined
        acc[2] += e.total_tokens or 0  # type: ignore[operator]
        acc[3] += e.prompt_tokens or 0  # type: ignore[operator]
        acc[4] += e.completion_tokens or 0  # type: ignore[operator]
        if e.cached_tokens:
            acc[5] += e.cached_tokens  # type: ignore[operator]
        if e.cache_creation_tokens:
            acc[6] += e.cache_creation_tokens  # type: ignore[operator]
        if e.audio_input_tokens:
            acc[7] += e.audio_input_tokens  # type: ignore[operator]
        if e.reasoning_tokens:
            acc[8] += e.reasoning_tokens  # type: ignore[operator]
        if e.audio_output_tokens:
            acc[9] += e.audio_output_tokens  # type: ignore[operator]
        if e.cache_hit is True:
            acc[10] += 1  # type: ignore[operator]
            if e.total_tokens and e.total_tokens > 0:
                acc[12] += e.total_tokens  # type: ignore[operator]
        elif e.cache_hit is False:
            acc[11] += 1  # type: ignore[operator]
        if e.total_latency is not None:
            _observe(acc, _H_TOTAL, e.total_latency)
        if e.api_latency is not None:
            _observe(acc, _H_API, e.api_latency)
        if e.ttft is not None:
            _observe(acc, _H_TTFT, e.ttft)
        if e.queue_time is not None:
            _observe(acc, _H_QUEUE, e.queue_time)
        if e.overhead_latency is not None:
            _observe(acc, _H_OVERHEAD, e.overhead_latency)
        if e.latency_per_output_token is not None:
            _observe(acc, _H_PER_TOKEN, e.latency_per_output_token)
        if e.provider_cache_read_tokens:
            acc[_PROVIDER_CACHE_READ] += e.provider_cache_read_tokens  # type: ignore[operator]
        if e.provider_cache_creation_tokens:
            acc[_PROVIDER_CACHE_CREATION] += e.provider_cache_creation_tokens  # type: ignore[operator]
        if e.images:
            acc[_IMAGES] += e.images  # type: ignore[operator]
        if e.video_seconds:
            acc[_VIDEO_SECONDS] += int(e.video_seconds * _EXACT_SCALE)  # type: ignore[operator]  # exact(), inlined

    def _dropped(self, family: str) -> None:
        self._dropped_families[family] = self._dropped_families.get(family, 0) + 1

    @staticmethod
    def _overflow(sig: Signature) -> Signature:
        o = _OVERFLOW_LABELS
        return Signature(sig.kind, o, o if sig.deployment else None, o if sig.proxy else None,
                         OVERFLOW if sig.zero_cost_reason else None)

    def _view_row(self, sig: Signature) -> ModelStats | None:
        """Per requested model, rows count client requests as litellm_proxy_total_requests_metric
        does (a deployment failure's request is the post-call hook's, unless the record implies
        both); per deployment, they count deployment calls (success and failure events).
        None: the event has no row."""
        lab = sig.labels
        if self.by == "deployment":
            if sig.kind is EventKind.PROXY_FAILURE:
                return None
            key = (sig.deployment or lab).litellm_model_name or lab.model or "None"
        else:
            if sig.kind is EventKind.FAILURE and sig.proxy is None:
                return None
            lab = sig.proxy or lab
            key = lab.requested_model or lab.model_group or lab.model or "None"
        stats = self._models.get(key)
        if stats is None:
            rows = self._real_rows
            if len(self._models) >= self.max_series if rows is None else key not in rows:
                key = OVERFLOW
                stats = self._models.get(key)
            if stats is None:
                stats = self._models[key] = ModelStats()
        return stats

    def _view(self, e: RequestEvent, stats: ModelStats) -> None:
        stats.requests += 1
        slot = None
        if self.rates:
            second = int(e.time)
            slot = stats.per_second.get(second)
            if slot is None:
                slot = stats.per_second[second] = [0, 0, 0]
                if len(stats.per_second) > 180:
                    for old in sorted(stats.per_second)[:-120]:
                        del stats.per_second[old]
            slot[0] += 1
        if e.kind is not EventKind.SUCCESS:
            stats.failures += 1
            return
        prompt = e.prompt_tokens or 0
        completion = e.completion_tokens or 0
        stats.prompt_tokens += prompt
        stats.completion_tokens += completion
        if slot is not None:
            slot[1] += prompt
            slot[2] += completion
        if e.spend:
            stats.spend_exact += int(e.spend * _EXACT_SCALE)  # exact(), inlined
        if e.total_latency is not None:
            sketch_add(stats.latency, e.total_latency)
        if e.ttft is not None:
            sketch_add(stats.ttft, e.ttft)

    # -- merging ------------------------------------------------------------------------------
    def can_merge(self, part: Aggregator) -> bool:
        """Whether `merge(part)` gives exactly what reading part's records here would. Not when the
        part folded something into an overflow series (or row) by its own cap and this one holds
        anything: a label set the part folded may have a slot here, and the part no longer knows which
        it was. A frozen part (`freeze`) folded what has no slot in a full state before it: this one,
        full (a full state's label sets never change)."""
        if part.frozen:
            return (not part.folded() and len(self._acc) >= self.max_series
                    and (not part.frozen_rows or len(self._models) >= self.max_series))
        return not part.folded() or not (self._acc or self._models or self.state or self.access_lines)

    def folded(self) -> bool:
        """Whether anything was folded into an overflow series (or view row) by this aggregator's own
        cap (a frozen part's folding against the state before it does not count)."""
        return ((not self.frozen and any(self._dropped_kinds.values())) or bool(self._dropped_families)
                or (not self.frozen_rows and OVERFLOW in self._models))

    def full(self) -> bool:
        """Whether every label set not seen yet folds into an overflow series: the ones with a slot
        are all there will ever be."""
        return len(self._acc) >= self.max_series

    def real(self) -> tuple[Iterable[Signature], frozenset[str] | None]:
        """What a part read after this full state needs (`freeze`): the label sets with a slot, and
        the view rows when those are full too."""
        return self._acc.keys(), frozenset(self._models) if len(self._models) >= self.max_series else None

    def freeze(self, real: frozenset[Signature], rows: frozenset[str] | None) -> None:
        """Go on as a part read right after a full state whose `real()` this is: from now on a label
        set folds here exactly when it folds there, and `can_merge` lets it merge there. What this
        part gave a slot of its own so far (never more than its cap) folds now, into the overflow
        series in the order it came, as one run folds it."""
        self.drop_caches()
        self.frozen, self._real = True, real
        own = {sig: sig for sig in real}  # their objects: this part's equal copies go
        accs, self._acc = self._acc, {}
        for sig, acc in accs.items():
            key = own.get(sig)
            if key is None:
                key = self._overflow(sig)
                if key != sig:
                    self._dropped_kinds[sig.kind] += acc[0]  # type: ignore[operator]
            have = self._acc.get(key)
            if have is None:
                self._acc[key] = acc
            else:
                add_acc(have, acc)
        if rows is not None:
            self.frozen_rows, self._real_rows = True, rows
            models, self._models = self._models, {}
            for name, stats in models.items():
                row = name if name in rows else OVERFLOW
                have_row = self._models.get(row)
                if have_row is None:
                    self._models[row] = stats
                else:
                    have_row.merge(stats)

    def merge(self, part: Aggregator, accs: Iterable[tuple[Signature, list[object]]] | None = None) -> None:
        """Add `part` (an `Aggregator(part=True)` with the same settings that read the records that
        come right after this one's; `can_merge(part)` must hold) as if this aggregator had read them
        itself: the same series in the same order, the same folding into overflow series under the
        cap, the same sums (they are exact). `part` is used up: its accumulators become this one's.
        `accs`, when given, are part's accumulators in their order (`part.acc` then holds none):
        parallel replay streams them in, so that two whole states are never in memory at once.

        Label sets (deployments, routes, view rows) get a slot in the order they first come while
        there is room, as in one run; the part has each of its own apart, so the ones that find no
        room fold here exactly as one run folds them. Only the live per-second ring is not replayed
        exactly: merged, it keeps its newest seconds (it feeds the live rates, not replay output)."""
        if (part.max_series, part.by) != (self.max_series, self.by) or part._state_records is None:
            raise ValueError("merge takes a part aggregator with the same max_series and by")
        if not self.can_merge(part):
            raise ValueError("the part folded label sets into overflow series: read its records here instead")
        part.settle()
        self.drop_caches()
        self.records += part.records
        for reason, n in part.skipped.items():
            self.skipped[reason] += n
        for level, n in part.log_lines.items():
            self.log_lines[level] = self.log_lines.get(level, 0) + n
        for kind, n in part._dropped_kinds.items():
            self._dropped_kinds[kind] += n
        for name, n in part._dropped_families.items():
            self._dropped_families[name] = self._dropped_families.get(name, 0) + n
        for t in (part.oldest_time, part.newest_time):
            self._saw(t)
        self._merge_acc(part._acc.items() if accs is None else accs)
        self._merge_models(part._models)
        self._merge_state(part.state, part._state_records)
        for (route, status), n in part.access_lines.items():
            key = (route, status)
            if key not in self.access_lines and len(self.access_lines) >= self.max_series and route != OVERFLOW:
                key = (OVERFLOW, status)
                self._dropped_families[ACCESS_FAMILY] = self._dropped_families.get(ACCESS_FAMILY, 0) + n
            self.access_lines[key] = self.access_lines.get(key, 0) + n

    def _merge_acc(self, accs: Iterable[tuple[Signature, list[object]]]) -> None:
        for sig, acc in accs:
            have = self._acc.get(sig)
            if have is None:
                key = self._overflow(sig)
                if len(self._acc) < self.max_series or key == sig:
                    self._acc[sig] = acc
                    continue
                self._dropped_kinds[sig.kind] += acc[0]  # type: ignore[operator]
                have = self._acc.get(key)
                if have is None:
                    self._acc[key] = acc
                    continue
            add_acc(have, acc)

    def _merge_models(self, models: dict[str, ModelStats]) -> None:
        for key, stats in models.items():
            have = self._models.get(key)
            if have is None:
                if len(self._models) < self.max_series or key == OVERFLOW:
                    self._models[key] = stats
                    continue
                have = self._models.get(OVERFLOW)
                if have is None:
                    self._models[OVERFLOW] = stats
                    continue
            have.merge(stats)
            if len(have.per_second) > 180:  # the hot loop's bound
                for old in sorted(have.per_second)[:-120]:
                    del have.per_second[old]

    def _merge_state(self, state: dict[StateKey, int], records: dict[StateKey, int]) -> None:
        # which of the part's keys get a slot: decided in the order they first came, as one run does
        folded: set[StateKey] = set()
        room = self.max_series - len(self.state)
        for key, n in records.items():
            if key in self.state or key == _OVERFLOW_STATE:
                continue
            if room > 0:
                room -= 1
            else:
                folded.add(key)
                self._dropped_families[STATE_FAMILY] = self._dropped_families.get(STATE_FAMILY, 0) + n
        if self._state_records is not None:  # a part merged into a part
            for key, n in records.items():
                if key not in folded:
                    self._state_records[key] = self._state_records.get(key, 0) + n
        # the values: in the order of their last writes, each re-inserted last as the hot loop does
        for key, value in state.items():
            if key in folded:
                key = _OVERFLOW_STATE
            self.state.pop(key, None)
            self.state[key] = value

    # -- projection ---------------------------------------------------------------------------
    def project(self) -> list[Series]:
        """Every LiteLLM family with its series, as LiteLLM's exporter would hold them."""
        return list(self.iter_project())

    def iter_project(self) -> Iterator[Series]:
        """`project()` one family at a time (a renderer holds one family's series, not all)."""
        self.settle()
        by_kind: dict[EventKind, list[tuple[Signature, list[object]]]] = {kind: [] for kind in EventKind}
        for sig, acc in self._acc.items():
            by_kind[sig.kind].append((sig, acc))
        rendered: dict[Labels, tuple[str, ...]] = {}  # a label set's values as exposed, all labels
        for family in FAMILIES:
            if family.name == "litellm_deployment_state":
                state = {tuple(_label(v) for v in key): float(v) for key, v in self.state.items()}
                yield Series(family, state)  # type: ignore[arg-type]
                continue
            pick = _picker(family)
            values: dict[tuple[str, ...], float | Histogram] = {}
            exact_sums = False
            for feed in family.feeds:
                slot = SLOT.get(feed.value, 0)  # zero_cost: the requests
                zero_cost = feed.value == "zero_cost"
                dense = feed.value in DENSE
                exact_sums = feed.value in EXACT
                zero = 0 if exact_sums else 0.0
                source = feed.labels_from
                for sig, acc in by_kind[feed.kind]:  # (the cheap tests first: most label sets skip most families)
                    value = acc[slot]
                    if value is None or (not dense and not value) or (zero_cost and sig.zero_cost_reason is None):
                        continue
                    labels = sig.labels if source == "labels" else _labels_from(sig, source)
                    if labels is None:
                        continue
                    if pick is None:
                        key = _key(family, labels, sig)
                    else:
                        exposed = rendered.get(labels)
                        if exposed is None:
                            exposed = rendered[labels] = tuple(
                                map(dict.__getitem__, _RENDERERS, msgspec.structs.astuple(labels))
                            )
                        key = pick(exposed)
                    if isinstance(value, Histogram):
                        _merge_histogram(values, key, value)
                    else:
                        values[key] = values.get(key, zero) + value  # type: ignore[operator]
            if exact_sums:  # a family's feeds are all exact sums or none is
                values = {key: inexact(v) for key, v in values.items()}  # type: ignore[arg-type]
            yield Series(family, values)


def add_acc(have: list[object], acc: list[object]) -> None:
    """have += acc, slot by slot."""
    for i, value in enumerate(acc):
        if isinstance(value, Histogram):
            h = have[i]
            if h is None:
                have[i] = value
            else:  # in place: no new lists while a part streams in
                assert isinstance(h, Histogram)
                counts = h.counts
                for j, n in enumerate(value.counts):
                    if n:
                        counts[j] += n
                h.sum_exact += value.sum_exact
        elif value is not None:
            have[i] += value  # type: ignore[operator]


def _observe(acc: list[object], slot: int, value: float) -> None:
    h = acc[slot]
    bounds = _BOUNDS[slot - _H_TOTAL]
    if h is None:
        h = acc[slot] = Histogram([0] * (len(bounds) + 1))
    h.counts[bisect_left(bounds, value)] += 1  # type: ignore[attr-defined]
    h.sum_exact += int(value * _EXACT_SCALE)  # type: ignore[attr-defined]  # exact(), inlined


def _labels_from(sig: Signature, source: str) -> Labels | None:
    if source == "labels":
        return sig.labels
    if source == "deployment":
        return sig.deployment or sig.labels
    # proxy: success and post-call failure default to their labels; a failure event feeds the
    # proxy families only when its record implies the hook call (payload-only logs)
    if sig.proxy is not None or sig.kind is EventKind.FAILURE:
        return sig.proxy
    return sig.labels


def _label(value: str | None) -> str:
    return "None" if value is None else value


def sanitize(value: str | None) -> str:
    """LiteLLM's `sanitize_prometheus_label_value` (types/integrations/prometheus.py:48)."""
    if value is None:
        return "None"
    cleaned = value.translate(_TRANSLATE)
    if "\\" in cleaned or '"' in cleaned:
        cleaned = cleaned.replace("\\", "\\\\").replace('"', '\\"')
    return cleaned


_TRANSLATE = str.maketrans("\n", " ", "\r\u2028\u2029")
_UNSANITIZED = frozenset({"end_user"})  # LiteLLM passes end_user through as it is


class _Rendered(dict[str | None, str]):
    """Label value -> its exposed text, computed once per distinct value (bounded)."""

    def __init__(self, convert: Callable[[str | None], str]) -> None:
        super().__init__()
        self.convert = convert

    def __missing__(self, value: str | None) -> str:
        if len(self) > 200_000:
            self.clear()
        text = self[value] = self.convert(value)
        return text


_SANITIZED = _Rendered(sanitize)
_PLAIN = _Rendered(_label)
_RENDERERS = tuple(_PLAIN if name in _UNSANITIZED else _SANITIZED for name in Labels.__struct_fields__)
_PICKERS: dict[str, Callable[[tuple[str, ...]], tuple[str, ...]] | None] = {}


def _picker(family: Family) -> Callable[[tuple[str, ...]], tuple[str, ...]] | None:
    """The family's label values (in its order) out of all exposed label values; None when
    `_key` must do it (the zero cost reason is not a label value; one label gives no tuple)."""
    if family.name not in _PICKERS:
        names = family.labels
        _PICKERS[family.name] = (
            None if ZERO_COST_REASON in names or len(names) < 2
            else itemgetter(*(Labels.__struct_fields__.index(n) for n in names))
        )
    return _PICKERS[family.name]


def _key(family: Family, labels: Labels, sig: Signature) -> tuple[str, ...]:
    out = []
    for name in family.labels:
        if name == ZERO_COST_REASON:
            out.append(_label(sig.zero_cost_reason))
        elif name in _UNSANITIZED:
            out.append(_label(getattr(labels, name)))
        else:
            out.append(sanitize(getattr(labels, name)))
    return tuple(out)


def _merge_histogram(values: dict[tuple[str, ...], float | Histogram], key: tuple[str, ...], value: Histogram) -> None:
    have = values.get(key)
    if have is None:
        values[key] = value  # the accumulator's own: a projection is read, never written
    else:
        assert isinstance(have, Histogram)
        values[key] = have + value


def feed_all(agg: Aggregator, results: Iterable[ParseResult | None]) -> None:
    add = agg.add
    for r in results:
        add(r)


__all__ = ["Aggregator", "DeploymentState", "Histogram", "ModelStats", "Series", "feed_all", "sanitize"]
