"""textformat.py renders exactly what prometheus_client's generate_latest renders, in text 0.0.4 and OpenMetrics."""

from __future__ import annotations

import re
import string

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.utils import floatToGoString

from logmetrics.aggregate import Aggregator, Histogram, Series
from logmetrics.events import EventKind, Labels, RequestEvent
from logmetrics.export import exposition, registry_for, text_chunks
from logmetrics.families import FAMILIES
from logmetrics.textformat import go_float, number, render_metric

_TEXT = st.text(alphabet=string.printable + "é€\u2028%{}", max_size=12)
_NUMBER = st.one_of(
    st.integers(min_value=0, max_value=10**12).map(float),
    st.floats(min_value=0, max_value=1e15, allow_nan=False),
    st.sampled_from([0.0, 1e6, 1e7, 1234567.0, 0.1 + 0.2, float("inf")]),
)

# prometheus_client before 0.26 writes three-digit exponents from 1e10 on (`1e+010`), which Go never
# does (go_float's docstring): the oracle's sample values are read in Go's form. A no-op from 0.26 on.
_OLD_EXPONENT = re.compile(rb"e\+0(\d\d)$", re.M)


def go_form(text: bytes) -> bytes:
    return _OLD_EXPONENT.sub(rb"e+\1", text)


def go_string(value: float) -> str:
    return go_form(floatToGoString(value).encode()).decode()


@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**20), 10**20)))
def test_go_float(value: float) -> None:
    assert go_float(value) == go_string(value)
    assert number(value) == go_string(value)


def test_go_float_writes_go_exponents() -> None:
    """As Go's strconv.FormatFloat(v, 'g', -1, 64), whatever prometheus_client's version."""
    assert [go_float(v) for v in (1e6, 1.5e7, 1e10, 1.23456789012e11, 1e15, 1e16, 1e21)] == [
        "1e+06", "1.5e+07", "1e+10", "1.23456789012e+11", "1e+15", "1e+16", "1e+21"]


def _event(values: list[str | None], latency: float, tokens: int, failed: bool) -> RequestEvent:
    names = Labels.__struct_fields__
    labels = Labels(**dict(zip(names, values, strict=False)))
    if failed:
        return RequestEvent(kind=EventKind.FAILURE, time=1.0, labels=labels, proxy=labels, level="ERROR")
    return RequestEvent(
        kind=EventKind.SUCCESS, time=1.0, labels=labels, spend=latency / 7, prompt_tokens=tokens,
        completion_tokens=tokens * 3, total_tokens=tokens * 4, total_latency=latency, api_latency=latency / 2,
        ttft=latency / 3, latency_per_output_token=latency / (tokens + 1), cached_tokens=tokens or None,
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(
    st.tuples(
        st.lists(st.one_of(st.none(), _TEXT), min_size=23, max_size=23),
        st.floats(min_value=0, max_value=1000), st.integers(min_value=0, max_value=10**7), st.booleans(),
    ),
    max_size=12,
))
def test_exposition_is_prometheus_clients(events: list[tuple[list[str | None], float, int, bool]]) -> None:
    agg = Aggregator()
    for values, latency, tokens, failed in events:
        agg.add(_event(values, latency, tokens, failed))
    assert exposition(agg) == generate_latest(registry_for(agg))
    assert exposition(agg, om=True) == generate_openmetrics(registry_for(agg))  # type: ignore[no-untyped-call]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(_TEXT, _TEXT, _NUMBER), max_size=8), _NUMBER)
def test_other_families_are_prometheus_clients(rows: list[tuple[str, str, float]], single: float) -> None:
    labelled = CounterMetricFamily("x_things", 'Things\\ with \n "help"', labels=["b_label", "a_label"])
    for a, b, v in rows:
        labelled.add_metric([a, b], v)
    gauge = GaugeMetricFamily("x_gauge_total", "a gauge")
    gauge.add_metric([], single)
    counter = CounterMetricFamily("x_count_total", "named with _total")
    counter.add_metric([], single)
    registry = CollectorRegistry(auto_describe=False)
    metrics = [labelled, gauge, counter]

    class Collector:
        def collect(self):  # type: ignore[no-untyped-def]
            return metrics

    registry.register(Collector())  # type: ignore[arg-type]
    assert "".join(render_metric(m) for m in metrics).encode() == go_form(generate_latest(registry))
    om = "".join(render_metric(m, om=True) for m in metrics) + "# EOF\n"
    assert om.encode() == go_form(generate_openmetrics(registry))  # type: ignore[no-untyped-call]


def test_chunks_join_to_the_exposition_and_histograms_render_big_counts() -> None:
    family = next(f for f in FAMILIES if f.type == "histogram")
    agg = Aggregator()
    series = Series(family, {tuple("v" for _ in family.labels): Histogram([10**7] * (len(family.buckets or ()) + 1),
                                                                          2.5e9)})
    from logmetrics.textformat import render_series

    text = "".join(render_series(series))
    assert '_bucket{' in text and "1e+07" in text
    assert b"".join(text_chunks(agg)) == exposition(agg) == generate_latest(registry_for(agg))
    om = generate_openmetrics(registry_for(agg))  # type: ignore[no-untyped-call]
    assert b"".join(text_chunks(agg, om=True)) == exposition(agg, om=True) == om


def test_backfill_spools_each_sample_under_its_family_when_a_piece_holds_several(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """OpenMetricsBackfill reads the exposition piece by piece; a piece may end one family and start
    the next, or go on with the family the last one started: each sample goes under its own family."""
    import io

    from logmetrics import export

    piece = "# HELP a_x A\n# TYPE a_x counter\na_x_total 1.0\n# HELP b_y B\n# TYPE b_y gauge\nb_y 2.0\n"
    pieces = iter([[piece.encode(), b"b_y 3.0\n# EOF\n"], [piece.encode(), b"# EOF\n"]])
    monkeypatch.setattr(export, "text_chunks", lambda agg, om=False: next(pieces))
    out = io.BytesIO()
    backfill = export.OpenMetricsBackfill(out, 10.0)
    backfill.snapshot(Aggregator(), 10.0)
    backfill.snapshot(Aggregator(), 20.0)
    backfill.close(Aggregator())
    assert out.getvalue().decode() == (
        "# HELP a_x A\n# TYPE a_x counter\na_x_total 1.0 10.000\na_x_total 1.0 20.000\n"
        "# HELP b_y B\n# TYPE b_y gauge\nb_y 2.0 10.000\nb_y 3.0 10.000\nb_y 2.0 20.000\n# EOF\n"
    )
