"""The aggregator's projection as Prometheus metric families: /metrics, --metrics-out, backfill.

Text format 0.0.4 and OpenMetrics 1.0 (`exposition`, `write_exposition`) are rendered by
`textformat.py` straight from `Aggregator.iter_project()`, family by family, byte for byte what
prometheus_client writes. For `serve`'s registry (what it renders for any other format a client
asks for), one custom prometheus_client `Collector` turns the same projection plus logmetrics'
own counters into metric families (prometheus_client is imported only then).
`OpenMetricsBackfill` writes the same families as timestamped samples at a fixed step of record
time, for `promtool tsdb create-blocks-from openmetrics`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import IO, TYPE_CHECKING

from logmetrics.aggregate import ACCESS_FAMILY, Aggregator, Histogram, Series
from logmetrics.events import SkipReason
from logmetrics.families import FAMILIES
from logmetrics.parse import LEVELS
from logmetrics.textformat import PlainFamily, go_float, render

# every family the cardinality cap can fold, pre-initialised at 0 in logmetrics_series_dropped_total
_DROPPABLE = (*(f.name for f in FAMILIES), ACCESS_FAMILY)

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric

ExtraMetrics = Callable[[], Iterable["Metric"]]


def _family(series: Series) -> Metric:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    f = series.family
    if f.type == "histogram":
        assert f.buckets is not None
        bounds = [go_float(b) for b in f.buckets] + ["+Inf"]
        hist = HistogramMetricFamily(f.name, f.help, labels=f.labels)
        for key, h in series.values.items():
            assert isinstance(h, Histogram)
            cumulative, running = [], 0
            for bound, n in zip(bounds, h.counts, strict=True):
                running += n
                cumulative.append((bound, float(running)))
            hist.add_metric(list(key), cumulative, h.sum)
        return hist
    cls = CounterMetricFamily if f.type == "counter" else GaugeMetricFamily
    fam = cls(f.name, f.help, labels=f.labels)
    for key, value in series.values.items():
        assert not isinstance(value, Histogram)
        fam.add_metric(list(key), float(value))
    return fam


def own_families(agg: Aggregator) -> list[PlainFamily]:
    """logmetrics_* families that a replay knows, as plain data; `serve` adds its sources'."""
    return [
        PlainFamily("logmetrics_records_read", "counter", "Records (request events and log lines) read",
                    (), [((), float(agg.records))]),
        PlainFamily("logmetrics_records_skipped", "counter", "Lines not counted, by reason", ("reason",),
                    [((reason.value,), float(agg.skipped[reason])) for reason in SkipReason]),
        PlainFamily("logmetrics_http_access_lines", "counter",
                    "LiteLLM HTTP access log lines, by route and status", ("route", "status"),
                    [((route, status), float(n)) for (route, status), n in agg.access_lines.items()]),
        PlainFamily("logmetrics_log_lines", "counter", "LiteLLM log lines (not requests), by level", ("level",),
                    [((level,), float(agg.log_lines.get(level, 0))) for level in LEVELS]),
        PlainFamily("logmetrics_series_dropped", "counter",
                    "Records counted in the overflow series, their label sets being beyond the cardinality cap, "
                    "by family",
                    ("family",), [((family,), float(agg.series_dropped.get(family, 0))) for family in _DROPPABLE]),
        PlainFamily("logmetrics_last_record_timestamp_seconds", "gauge", "Time of the newest record read", (),
                    [] if agg.newest_time is None else [((), agg.newest_time)]),
    ]


def self_metrics(agg: Aggregator) -> Iterator[Metric]:
    """`own_families(agg)` as prometheus_client metric families."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    for own in own_families(agg):
        cls = CounterMetricFamily if own.type == "counter" else GaugeMetricFamily
        fam = cls(own.name, own.help, labels=list(own.labels))
        for values, value in own.rows:
            fam.add_metric(list(values), value)
        yield fam


class AggregatorCollector:
    """The one custom Collector: LiteLLM's families, then logmetrics' own."""

    def __init__(self, project: Callable[[], tuple[list[Series], list[Metric]]]) -> None:
        self._project = project

    def collect(self) -> Iterator[Metric]:
        series, own = self._project()
        for s in series:
            yield _family(s)
        yield from own


def registry_for(agg: Aggregator, extra: ExtraMetrics | None = None,
                 lock: Callable[[], object] | None = None) -> CollectorRegistry:
    """A private registry exposing `agg`. `lock()` returns a context manager held while projecting."""

    def project() -> tuple[list[Series], list[Metric]]:
        if lock is None:
            return agg.project(), [*self_metrics(agg), *(extra() if extra else ())]
        with lock():  # type: ignore[attr-defined]
            return agg.project(), [*self_metrics(agg), *(extra() if extra else ())]

    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(AggregatorCollector(project))
    return registry


def text_chunks(agg: Aggregator, extra: Iterable[Metric] = (), om: bool = False) -> Iterator[bytes]:
    """Prometheus text format 0.0.4 (OpenMetrics 1.0 with `om`) in pieces: LiteLLM's families
    (projected one at a time), then logmetrics' own, then `extra` (prometheus_client families,
    e.g. serve's)."""
    for text in render(agg.iter_project(), own_families(agg), extra, om):
        yield text.encode()


def exposition(agg: Aggregator, extra: Iterable[Metric] = (), om: bool = False) -> bytearray:
    """Prometheus text format 0.0.4 (OpenMetrics 1.0 with `om`): exactly what /metrics serves for
    the same records. Gathered in one buffer as rendered: a list of the pieces joined at the end
    would hold the body twice (at the 10k label-set cap, tens of MB)."""
    body = bytearray()
    for chunk in text_chunks(agg, extra, om):
        body += chunk
    return body


def write_exposition(agg: Aggregator, out: IO[bytes]) -> None:
    """`exposition(agg)` written piece by piece: memory stays flat however many series."""
    for chunk in text_chunks(agg):
        out.write(chunk)


class OpenMetricsBackfill:
    """Samples of every family at a fixed step of record time, then `# EOF`.

    OpenMetrics wants a family's samples together, so each family is spooled to its own
    temporary file while the replay runs and the files are joined at the end.
    """

    def __init__(self, out: IO[bytes], step: float, until: float | None = None) -> None:
        self.out = out
        self.step = step
        self.until = until  # --until: no sample after it (live scraping's samples start there)
        self._dir = tempfile.TemporaryDirectory(prefix="logmetrics-om-")
        self._spool: dict[str, IO[bytes]] = {}
        self._headers: dict[str, list[str]] = {}
        self.next_time: float | None = None

    def observe_time(self, agg: Aggregator, t: float) -> None:
        """Call with each record's time (in order), before the record is added: at the first step
        boundary passed, a snapshot of what came before it; after a quiet gap, a second snapshot of
        the same values at the start of the record's own step, as a scrape there would have seen
        them. Without it the record's step has no earlier sample to count from (the previous one
        is the gap's start, beyond rate()'s window): rate() and increase() lose requests that come
        after a quiet spell."""
        if self.next_time is None:
            self.next_time = (t // self.step + 1) * self.step
            return
        if t >= self.next_time:
            self.snapshot(agg, self.next_time)
            current = t // self.step * self.step
            if current > self.next_time:
                self.snapshot(agg, current)
            self.next_time = current + self.step

    def snapshot(self, agg: Aggregator, at: float) -> None:
        """Every sample of the OpenMetrics exposition, stamped `at`, onto its family's spool; read
        piece by piece as rendered (whole lines), never held whole."""
        stamp = f" {at:.3f}\n"
        spool: IO[bytes] | None = None
        samples: list[str] = []

        def flush() -> None:
            if samples:
                assert spool is not None, "a sample before any family header"
                spool.write("".join(samples).encode())
                samples.clear()

        for chunk in text_chunks(agg, om=True):
            # chunks are whole lines; not splitlines(): a label value may hold a raw \r or U+2028
            # (end_user is exposed unsanitised, as LiteLLM does), which is no line end here
            for line in chunk.decode().split("\n")[:-1]:
                if not line.startswith("#"):
                    samples.append(line + stamp)
                    continue
                flush()
                if line == "# EOF":
                    continue
                family = line.split(" ", 3)[2]
                headers = self._headers.setdefault(family, [])
                if family not in self._spool:
                    self._spool[family] = open(os.path.join(self._dir.name, str(len(self._spool))), "w+b")
                spool = self._spool[family]
                if line not in headers:
                    headers.append(line)
            flush()

    def close(self, agg: Aggregator) -> None:
        if agg.newest_time is not None:
            last = (agg.newest_time // self.step + 1) * self.step
            # every record is before --until: a last sample there holds them all, and no later
            self.snapshot(agg, last if self.until is None else min(last, self.until))
        for family, spool in self._spool.items():
            if not spool.tell():
                spool.close()
                continue
            self.out.write("".join(h + "\n" for h in self._headers[family]).encode())
            spool.seek(0)
            while chunk := spool.read(1 << 20):
                self.out.write(chunk)
            spool.close()
        self.out.write(b"# EOF\n")
        self._dir.cleanup()
