"""Prometheus text format 0.0.4 and OpenMetrics 1.0, rendered straight from the aggregator's projection.

Byte for byte what prometheus_client's `generate_latest` (and, with `om=True`, its OpenMetrics
`generate_latest`) writes for the same metric families (sorted label names, `le` among them;
label values escaped; numbers as `floatToGoString`; no `_created` samples, as our collector gives
none), without building prometheus_client `Metric` and `Sample` objects per series: a scrape of
10k series is a few string formats per line. The two formats differ here only in the family
headers (OpenMetrics names a counter family without `_total`, and escapes `"` in its help) and
OpenMetrics' closing `# EOF`. tests/test_golden_outputs.py and tests/test_textformat.py hold both
to prometheus_client's bytes.

Nothing here imports prometheus_client: `replay --metrics-out` does not load it at all.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Protocol, cast

from logmetrics.aggregate import Histogram, Series
from logmetrics.families import Family

_INF = float("inf")


def number(value: float) -> str:
    """go_float(value), faster for the usual values: below 1e6 (and above -inf) Go and Python
    write a float alike."""
    d = float(value)
    return repr(d) if -_BIG < d < 1e6 else go_float(d)


_BIG = 1.8e308  # above the largest float: -_BIG < d excludes only -inf (and NaN)


def go_float(value: float) -> str:
    """prometheus_client.utils.floatToGoString (Apache-2.0): Go's float formatting. (Before 0.26,
    prometheus_client wrote three-digit exponents from 1e10 on, `1e+010`, which Go never does.)"""
    d = float(value)
    if d == _INF:
        return "+Inf"
    if d == -_INF:
        return "-Inf"
    if math.isnan(d):
        return "NaN"
    s = repr(d)
    dot = s.find(".")
    if d > 0 and dot > 6:  # Go switches to exponents sooner than Python
        mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1:]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return s


class _Escaped(dict[str, str]):
    """Label value -> its escaped text (backslash, newline, double quote), computed once."""

    def __missing__(self, value: str) -> str:
        text = value
        if "\\" in text or "\n" in text or '"' in text:
            text = text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
        if len(self) > 200_000:  # label values churn in a long-running serve: stay bounded
            self.clear()
        self[value] = text
        return text


_ESCAPED = _Escaped()


def _help(text: str, om: bool) -> str:
    text = text.replace("\\", "\\\\").replace("\n", "\\n")
    return text.replace('"', '\\"') if om else text


def _template(name: str, names: Sequence[str], fixed: dict[str, str] | None = None) -> tuple[str, list[int]]:
    """A %-template of one sample line (label values, then the value, as %s) and the order in
    which the label values go into it (label names sorted, as prometheus_client writes them)."""
    fixed = fixed or {}
    all_names = sorted([*names, *fixed])
    order = [names.index(n) for n in all_names if n not in fixed]
    if not all_names:
        return name.replace("%", "%%") + " %s\n", order
    parts = [f'{n}="{_pct(fixed[n])}"' if n in fixed else f'{n}="%s"' for n in all_names]
    return name.replace("%", "%%") + "{" + ",".join(parts) + "} %s\n", order


def _pct(text: str) -> str:
    return text.replace("%", "%%")


def _reorder(order: list[int]) -> Callable[[tuple[str, ...]], tuple[str, ...]] | None:
    """A function picking the label values in `order` out of a key (always a tuple)."""
    if not order:
        return None
    if len(order) == 1:
        i = order[0]
        return lambda key: key[i : i + 1]
    return cast(Callable[[tuple[str, ...]], tuple[str, ...]], itemgetter(*order))


def _family_name(name: str, mtype: str) -> str:
    """The name prometheus_client gives a family made as `name` (CounterMetricFamily drops `_total`)."""
    return name[: -len("_total")] if mtype == "counter" and name.endswith("_total") else name


def _sample_name(name: str, mtype: str) -> str:
    """A counter's samples end in `_total`."""
    return _family_name(name, mtype) + "_total" if mtype == "counter" else name


def family_header(name: str, mtype: str, doc: str, om: bool = False) -> str:
    """HELP and TYPE of the family prometheus_client names `name` (`Metric.name`): under its
    samples' name in text 0.0.4 (a counter's `_total` included), under its own in OpenMetrics."""
    if mtype == "counter" and not om:
        name += "_total"
    return f"# HELP {name} {_help(doc, om)}\n# TYPE {name} {mtype}\n"


def render_series(series: Series, chunk_lines: int = 512, om: bool = False) -> Iterator[str]:
    """One LiteLLM family: its header, then its samples, in pieces of about `chunk_lines` lines."""
    f = series.family
    yield family_header(_family_name(f.name, f.type), f.type, f.help, om)
    if f.type == "histogram":
        yield from _histogram_lines(f, series.values, chunk_lines)
        return
    name = _sample_name(f.name, f.type)
    template, order = _template(name, f.labels)
    reorder = _reorder(order)
    esc = _ESCAPED.__getitem__
    out: list[str] = []
    for key, value in series.values.items():
        assert not isinstance(value, Histogram)
        vals = tuple(map(esc, reorder(key))) if reorder is not None else ()
        out.append(template % (*vals, number(value)))
        if len(out) >= chunk_lines:
            yield "".join(out)
            out.clear()
    if out:
        yield "".join(out)


def _histogram_lines(f: Family, values: dict[tuple[str, ...], float | Histogram], chunk_lines: int) -> Iterator[str]:
    """Each series: one label text split around `le` (its sorted place), then the bucket lines
    as plain concatenations, then `_count` and `_sum`."""
    assert f.buckets is not None
    bounds = [go_float(b) for b in f.buckets] + ["+Inf"]
    split, order = _template(f.name + "_bucket", f.labels, {"le": "\0"})
    head, tail = split.split("\0")  # ...le=" | "...} %s\n
    tail = tail[: -len(" %s\n")] + " "
    cut = head.count("%s")  # label values before `le`
    count, _ = _template(f.name + "_count", f.labels)
    total = _template(f.name + "_sum", f.labels)[0]
    reorder = _reorder(order)
    esc = _ESCAPED.__getitem__
    out: list[str] = []
    for key, h in values.items():
        assert isinstance(h, Histogram)
        vals = tuple(map(esc, reorder(key))) if reorder is not None else ()
        pre, post = head % vals[:cut], tail % vals[cut:]
        running = 0
        for le, n in zip(bounds, h.counts, strict=True):
            running += n
            out.append(f"{pre}{le}{post}{_count(running)}\n")
        out.append(count % (*vals, _count(running)))
        out.append(total % (*vals, number(h.sum)))
        if len(out) >= chunk_lines:
            yield "".join(out)
            out.clear()
    if out:
        yield "".join(out)


def _count(n: int) -> str:
    """go_float of a count: below 1e6 Go and Python write a float alike."""
    return repr(float(n)) if n < 1_000_000 else go_float(n)


@dataclass
class PlainFamily:
    """A counter or gauge family as plain data (logmetrics' own families)."""

    name: str  # counters without `_total`, as prometheus_client names them
    type: str  # "counter" or "gauge"
    help: str
    labels: tuple[str, ...] = ()
    rows: list[tuple[tuple[str, ...], float]] = field(default_factory=list)


def render_plain(f: PlainFamily, om: bool = False) -> str:
    template, order = _template(_sample_name(f.name, f.type), f.labels)
    reorder = _reorder(order)
    out = [family_header(_family_name(f.name, f.type), f.type, f.help, om)]
    for key, value in f.rows:
        vals = tuple(_ESCAPED[v] for v in reorder(key)) if reorder is not None else ()
        out.append(template % (*vals, go_float(value)))
    return "".join(out)


class SampleLike(Protocol):
    """What a prometheus_client `Sample` offers (name, labels, value, timestamp)."""

    @property
    def name(self) -> str: ...
    @property
    def labels(self) -> dict[str, str]: ...
    @property
    def value(self) -> float: ...
    @property
    def timestamp(self) -> object: ...


class MetricLike(Protocol):
    """What a prometheus_client `Metric` offers to a renderer."""

    @property
    def name(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def documentation(self) -> str: ...
    @property
    def samples(self) -> Sequence[SampleLike]: ...


def render_metric(metric: MetricLike, om: bool = False) -> str:
    """Any prometheus_client metric family (counter, gauge, histogram; no timestamps, no
    `_created`), as generate_latest writes it: for families made outside the aggregator."""
    out = [family_header(metric.name, metric.type, metric.documentation, om)]
    for s in metric.samples:
        if s.timestamp is not None or s.name.endswith(("_created", "_gsum", "_gcount")):
            raise ValueError(f"{s.name}: timestamps and OpenMetrics-only samples are not rendered here")
        if s.labels:
            body = ",".join(f'{k}="{_ESCAPED[v]}"' for k, v in sorted(s.labels.items()))
            out.append(f"{s.name}{{{body}}} {go_float(s.value)}\n")
        else:
            out.append(f"{s.name} {go_float(s.value)}\n")
    return "".join(out)


def render(series: Iterable[Series], own: Iterable[PlainFamily] = (),
           metrics: Iterable[MetricLike] = (), om: bool = False) -> Iterator[str]:
    """The whole exposition, in pieces (write them as they come: a 10k-series exposition is
    tens of MB that need never be held at once); OpenMetrics (`om`) ends with `# EOF`."""
    for s in series:
        yield from render_series(s, om=om)
    for f in own:
        yield render_plain(f, om)
    for m in metrics:
        yield render_metric(m, om)
    if om:
        yield "# EOF\n"
