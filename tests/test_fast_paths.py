"""The hot loop's shortcuts compute exactly what the straightforward code computes.

- slp.micros(): differences of integer microseconds == timedelta.total_seconds() of wall() datetimes;
- Parser._compact_time(): the once-a-second cache == epoch() on every timestamp;
- Aggregator: the per-signature slot cache gives the state a cache-less aggregator gives.
(tests/test_golden_outputs.py holds whole replays to their bytes.)
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logmetrics.aggregate import Aggregator
from logmetrics.parse import Parser, epoch
from logmetrics.slp import micros, seconds, wall

_EPOCHS = st.one_of(
    st.floats(min_value=0, max_value=4e9, allow_nan=False),
    st.integers(min_value=1_600_000_000, max_value=1_900_000_000).map(float),
    st.tuples(st.integers(min_value=1_600_000_000, max_value=1_900_000_000), st.integers(0, 999_999)).map(
        lambda t: t[0] + t[1] / 1e6
    ),
    st.tuples(st.integers(min_value=1_600_000_000, max_value=1_900_000_000), st.integers(0, 1999)).map(
        lambda t: t[0] + (t[1] + 0.5) / 1e6  # exact halves: round half to even
    ),
)
_ISO = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)).map(datetime.isoformat)


@settings(max_examples=2000)
@given(st.one_of(_EPOCHS, _ISO), st.one_of(_EPOCHS, _ISO))
def test_micros_differences_are_litellms_seconds(a: float | str, b: float | str) -> None:
    ua, ub = micros(a), micros(b)
    assert ua is not None and ub is not None
    assert (ub - ua) / 1_000_000 == seconds(wall(a), wall(b))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1e20, -1e20, "not a time"])
def test_micros_raises_as_wall_does(bad: float | str) -> None:
    with pytest.raises((ValueError, OverflowError, OSError)) as fast:
        micros(bad)
    with pytest.raises((ValueError, OverflowError, OSError)) as slow:
        wall(bad)
    assert fast.type is slow.type


@settings(max_examples=500)
@given(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1)), st.integers(0, 999))
def test_compact_time_is_epoch(moment: datetime, millis: int) -> None:
    parser = Parser()
    text = moment.replace(microsecond=0).isoformat() + f".{millis:03d}"
    assert len(text) == 23
    assert parser._compact_time(text) == epoch(text)
    assert parser._compact_time(text) == epoch(text)  # from the cache
    later = (moment.replace(microsecond=0) + timedelta(seconds=1)).isoformat() + ".000"
    assert parser._compact_time(later) == epoch(later)


@pytest.mark.parametrize("text", ["2025-10-21T12:26:24.12x", "2025-10-21 12:26:24.123", "2025-10-21T12:26:24Z",
                                  "2025-13-21T12:26:24.123", "2025-10-21T12:26:24.١٢٣", 1761049584.5, None])
def test_compact_time_other_forms(text: str | float | None) -> None:
    parser = Parser()
    try:
        want: object = epoch(text)
    except ValueError as e:
        want = type(e)
    try:
        got: object = parser._compact_time(text)
    except ValueError as e:
        got = type(e)
    assert got == want


ISO_FORMS = [  # (as logs write it, the same moment as Python 3.10's fromisoformat reads it)
    ("2025-01-01T00:00:00.1Z", "2025-01-01T00:00:00.100000+00:00"),
    ("2025-01-01T00:00:00.1234567Z", "2025-01-01T00:00:00.123456+00:00"),  # .NET: 7 digits
    ("2025-01-01T00:00:00.123456789Z", "2025-01-01T00:00:00.123456+00:00"),  # Go: up to 9
    ("2025-01-01t00:00:00.5z", "2025-01-01T00:00:00.500000+00:00"),  # RFC 3339 allows lower case
    ("2025-01-01T05:30:00,25+0530", "2025-01-01T05:30:00.250000+05:30"),  # strftime's %z
    ("2025-01-01T05:00:00+05", "2025-01-01T05:00:00+05:00"),
    ("2025-01-01 00:00:00,1", "2025-01-01T00:00:00.100000"),  # no zone: local time
]


@pytest.mark.parametrize(("text", "same"), ISO_FORMS, ids=[t for t, _ in ISO_FORMS])
def test_epoch_reads_iso_forms_on_every_python(text: str, same: str) -> None:
    assert epoch(text) == datetime.fromisoformat(same).timestamp()
    assert Parser()._compact_time(text) == epoch(text)


@pytest.mark.parametrize(("text", "want"), [("1795452157.218", 1795452157.218), (" 1795452157.5 ", 1795452157.5),
                                           ("1795452157218.0", 1795452157.218), ("1795452157", 1795452157.0)])
def test_epoch_reads_epoch_digits_with_a_fraction(text: str, want: float) -> None:
    """`--since 1795452157.218` (a time as `tail -o json` prints it) and such a string in a record."""
    assert epoch(text) == want


@pytest.mark.parametrize("text", ["2025-01-01T00:00:00+053", "2025-01-01T00:00:00+05:3", "2025-01-01T00:00:00 UTC",
                                  "2025-01-01T25:00:00Z", "2025-01-01T00:00:00.x", "nan", "1e9",
                                  "1795452157.", ".5", "-1795452157.5", "1795452157.5.1"])
def test_epoch_refuses_what_is_not_iso(text: str) -> None:
    with pytest.raises(ValueError):
        epoch(text)


def test_slot_cache_matches_a_fresh_lookup(tmp_path: object) -> None:
    """Replacing `acc`/`models` (as a state load does) drops the cache; the result matches."""
    from pathlib import Path

    lines = (Path(__file__).parent.parent / "fixtures/sample-logs/generated/simple-1k.jsonl").read_bytes().splitlines()
    parser = Parser()
    events = [parser.parse(line) for line in lines]
    cached = Aggregator()
    for e in events:
        cached.add(e)
    fresh = Aggregator()
    for i, e in enumerate(events):
        fresh.add(e)
        if i % 7 == 0:
            fresh.acc = dict(fresh.acc)
            fresh.models = dict(fresh.models)
    assert cached.acc.keys() == fresh.acc.keys()
    assert list(cached.acc.values()) == list(fresh.acc.values())
    assert {k: (m.requests, m.failures, m.latency) for k, m in cached.models.items()} == {
        k: (m.requests, m.failures, m.latency) for k, m in fresh.models.items()
    }
