"""The replay's hot loop, fused in C (`_hotloop.c`) for the records that make up big logs.

`HotLoop.lines(lines)` has exactly the effect of
`for line in each_line(lines): agg.add(parser.parse(line))` (it splits `archive.Lines` blocks
itself), which is what it does, in Python, for every line it does not take itself. It takes a
line only when it can prove the Python path would give the same result: a StandardLoggingPayload
(a success's or a failure's) or a logmetrics request record of a success, or a compact request
record, with plain ASCII label values, numbers and times in the forms LiteLLM writes, and nothing
msgspec would reject. For those it decodes the fields it needs, applies LiteLLM's rules (`slp.py`,
`parse.py`) and adds to the aggregator's accumulators (`aggregate.py`), without building the typed
event.

The additions wait in C, per accumulator (integers only: exact sums stay exact in any order, and
the lines that go the Python way add to the same accumulators meanwhile), until something reads
the aggregator: `Aggregator.settle` writes them first (`Aggregator.defer`). The record count,
times and folded records reach the aggregator at the end of each call; the deployment state's
writes too, in their order, or before a line that goes the Python way. Label sets are still made
in Python (`Aggregator.slot`, `slp.labels_200`, `slp.failure_labels`), once per distinct set: the
C side caches the slots by the record's raw label values (each interned to a 16-bit id, so that a
key is a few dozen bytes and tens of thousands fit), for one `Aggregator.generation`.

Without a C compiler at install time the module is missing and the Python loop does it all;
`LOGMETRICS_PURE_PYTHON=1` chooses that too. tests/test_hotloop.py holds both paths to the same
results on real, generated and mutated records.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import msgspec

from logmetrics.aggregate import _H_TOTAL, HISTOGRAMS, Aggregator, Histogram, ModelStats, StateKey, state_key
from logmetrics.events import EventKind, Labels
from logmetrics.parse import Parser
from logmetrics.slp import (
    MAX_TIME,
    VALUE_GROUP,
    VALUE_MODEL_ID,
    VALUE_PROVIDER,
    exception_class_label,
    failure_labels,
    labels_200,
)
from logmetrics.sources.archive import Lines

try:
    from logmetrics import _hotloop
except ImportError:  # built without a C compiler
    _hotloop = None  # type: ignore[assignment]

AVAILABLE = _hotloop is not None


class HotLoop:
    """Lines into one aggregator through one parser (see the module docstring)."""

    def __init__(self, agg: Aggregator, parser: Parser) -> None:
        if _hotloop is None:
            raise RuntimeError("logmetrics was installed without its C hot loop")
        if agg.rates:
            raise ValueError("the C hot loop keeps no live rates: an aggregator with rates=True takes the Python loop")
        self.agg = agg
        self.parser = parser
        self._loop = _hotloop.Loop(
            agg, parser.parse, agg.add, self._payload_slot, self._failure_slot, self._compact_slot, parser.second,
            Histogram, EventKind.SUCCESS, EventKind.FAILURE, tuple(HISTOGRAMS.values()), _H_TOTAL, MAX_TIME,
            parser.max_line_bytes, parser.end_user_label, Lines,
        )
        agg.defer(self._loop.settle)

    def lines(self, lines: Iterable[bytes | Lines]) -> None:
        self._loop.feed(lines)

    def drop_caches(self) -> None:
        """Forget the slots cached in C (they refill as lines come): frees memory for a final render."""
        self._loop.clear()

    def _payload_slot(
        self, values: tuple[str | None, ...], requested_model: str | None, zero_cost_reason: str | None
    ) -> tuple[list[object], ModelStats | None, bool]:
        """A success payload's slot: its 18 label values as `slp._labels` gathers them, and the
        original model group when the proxy family's `requested_model` differs."""
        labels = labels_200(values)
        proxy = labels if requested_model is None else msgspec.structs.replace(labels, requested_model=requested_model)
        return self.agg.slot(EventKind.SUCCESS, labels, None, proxy, zero_cost_reason)

    def _failure_slot(
        self, values: tuple[str | None, ...], status: str | None, error_class: str | None, llm_provider: str | None,
        zero_cost_reason: str | None,
    ) -> tuple[list[object], ModelStats | None, bool, StateKey | None]:
        """A bare failure payload's slot, and the key of its deployment state write (value 1) or None:
        from its 18 success label values, its exception status (`slp.error_status`) and its error
        information's class and provider."""
        labels, deployment, proxy, state = failure_labels(
            labels_200(values), values[VALUE_MODEL_ID], values[VALUE_GROUP], values[VALUE_PROVIDER], status,
            exception_class_label(error_class, llm_provider), error_class, True,
        )
        acc, stats, folded = self.agg.slot(EventKind.FAILURE, labels, deployment, proxy, zero_cost_reason)
        return acc, stats, folded, None if state is None else state_key(state)

    def _compact_slot(
        self, model: str | None, provider: str | None, failed: bool
    ) -> tuple[list[object], ModelStats | None, bool]:
        labels, _ = self.parser.compact_labels(model, provider, failed)
        proxy: Labels | None = labels if failed else None
        return self.agg.slot(EventKind.FAILURE if failed else EventKind.SUCCESS, labels, None, proxy, None)


def hot_loop(agg: Aggregator, parser: Parser) -> HotLoop | None:
    """The C loop for this aggregator, or None: not built, not wanted (`LOGMETRICS_PURE_PYTHON`),
    or an aggregator with live rates (serve, tail: their batches are small, and the per-second ring
    stays in Python)."""
    if _hotloop is None or os.environ.get("LOGMETRICS_PURE_PYTHON", "") not in ("", "0") or agg.rates:
        return None
    return HotLoop(agg, parser)
