"""The aggregator's projection as Prometheus metric families: /metrics, --metrics-out, backfill.

One custom prometheus_client `Collector` turns `Aggregator.project()` plus logmetrics' own
counters into metric families; prometheus_client renders them (text 0.0.4 or OpenMetrics, as
LiteLLM's own exporter does). `OpenMetricsBackfill` writes the same families as timestamped
samples at a fixed step of record time, for `promtool tsdb create-blocks-from openmetrics`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import IO

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.utils import floatToGoString

from logmetrics.aggregate import Aggregator, Histogram, Series
from logmetrics.events import SkipReason
from logmetrics.parse import LEVELS

ExtraMetrics = Callable[[], Iterable[Metric]]


def _family(series: Series) -> Metric:
    f = series.family
    if f.type == "histogram":
        assert f.buckets is not None
        bounds = [floatToGoString(b) for b in f.buckets] + ["+Inf"]
        hist = HistogramMetricFamily(f.name, f.help, labels=f.labels)
        for key, h in series.values.items():
            assert isinstance(h, Histogram)
            cumulative, running = [], 0
            for bound, n in zip(bounds, h.counts):
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


def self_metrics(agg: Aggregator) -> Iterator[Metric]:
    """logmetrics_* families that a replay knows; `serve` adds its sources' through `extra`."""
    read = CounterMetricFamily("logmetrics_records_read", "Records (request events and log lines) read")
    read.add_metric([], float(agg.records))
    yield read
    skipped = CounterMetricFamily(
        "logmetrics_records_skipped", "Lines not counted, by reason", labels=["reason"]
    )
    for reason in SkipReason:
        skipped.add_metric([reason.value], float(agg.skipped[reason]))
    yield skipped
    access = CounterMetricFamily(
        "logmetrics_http_access_lines", "LiteLLM HTTP access log lines, by route and status",
        labels=["route", "status"],
    )
    for (route, status), n in agg.access_lines.items():
        access.add_metric([route, status], float(n))
    yield access
    levels = CounterMetricFamily("logmetrics_log_lines", "LiteLLM log lines (not requests), by level",
                                 labels=["level"])
    for level in LEVELS:
        levels.add_metric([level], float(agg.log_lines.get(level, 0)))
    yield levels
    dropped = CounterMetricFamily(
        "logmetrics_series_dropped",
        "New label sets folded into the overflow series by the cardinality cap, by family",
        labels=["family"],
    )
    for family, n in agg.series_dropped.items():
        dropped.add_metric([family], float(n))
    yield dropped
    newest = GaugeMetricFamily("logmetrics_last_record_timestamp_seconds", "Time of the newest record read")
    if agg.newest_time is not None:
        newest.add_metric([], agg.newest_time)
    yield newest


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

    registry = CollectorRegistry(auto_describe=False)
    registry.register(AggregatorCollector(project))  # type: ignore[arg-type]
    return registry


def exposition(agg: Aggregator) -> bytes:
    """Prometheus text format 0.0.4: exactly what /metrics serves for the same records."""
    return generate_latest(registry_for(agg))


def openmetrics(agg: Aggregator) -> bytes:
    return generate_openmetrics(registry_for(agg))


class OpenMetricsBackfill:
    """Samples of every family at a fixed step of record time, then `# EOF`.

    OpenMetrics wants a family's samples together, so each family is spooled to its own
    temporary file while the replay runs and the files are joined at the end.
    """

    def __init__(self, out: IO[bytes], step: float) -> None:
        self.out = out
        self.step = step
        self._dir = tempfile.TemporaryDirectory(prefix="logmetrics-om-")
        self._spool: dict[str, IO[bytes]] = {}
        self._headers: dict[str, list[str]] = {}
        self.next_time: float | None = None

    def observe_time(self, agg: Aggregator, t: float) -> None:
        """Call with each record's time (in order): writes a snapshot per step boundary passed."""
        if self.next_time is None:
            self.next_time = (t // self.step + 1) * self.step
            return
        if t >= self.next_time:
            self.snapshot(agg, self.next_time)
            self.next_time = (t // self.step + 1) * self.step

    def snapshot(self, agg: Aggregator, at: float) -> None:
        text = generate_openmetrics(registry_for(agg)).decode()
        stamp = f" {at:.3f}"
        family = ""
        for line in text.splitlines():
            if line.startswith("#"):
                if line == "# EOF":
                    continue
                family = line.split(" ", 3)[2]
                headers = self._headers.setdefault(family, [])
                if family not in self._spool:
                    self._spool[family] = open(os.path.join(self._dir.name, str(len(self._spool))), "w+b")
                if line not in headers:
                    headers.append(line)
                continue
            if line.split("{", 1)[0].split(" ", 1)[0].endswith("_created"):
                continue
            self._spool[family].write((line + stamp + "\n").encode())

    def close(self, agg: Aggregator) -> None:
        if agg.newest_time is not None:
            self.snapshot(agg, (agg.newest_time // self.step + 1) * self.step)
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
