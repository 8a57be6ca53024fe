"""The state file: the aggregator survives dump/load exactly, writes are atomic and private, and a
file that cannot be used is moved aside (never an exception that would stop `serve`)."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import msgspec
import pytest

from logmetrics import state
from logmetrics.aggregate import Aggregator
from logmetrics.errors import StateError
from logmetrics.export import exposition
from logmetrics.parse import Parser
from logmetrics.pipeline import Ingest

SAMPLES = Path(__file__).resolve().parent.parent / "fixtures" / "sample-logs"
LINES = [
    *(SAMPLES / "litellm-1.109.1" / "requests-runA.jsonl").read_bytes().splitlines(),
    *(SAMPLES / "generated" / "simple-1k.jsonl").read_bytes().splitlines(),
    *(SAMPLES / "generated" / "slp-40.jsonl").read_bytes().splitlines(),
    *(SAMPLES / "litellm-1.109.1-callback" / "requests.log").read_bytes().splitlines(),
    *(SAMPLES / "litellm-1.109.1" / "proxy-stdout.log").read_bytes().splitlines(),
    b"not json",
]


def _agg(lines: list[bytes], max_series: int = 10_000) -> Aggregator:
    agg = Aggregator(max_series=max_series)
    Ingest(agg, Parser()).lines(lines)
    return agg


@pytest.mark.parametrize("max_series", [10_000, 5], ids=["uncapped", "overflowing"])
@pytest.mark.parametrize("split", [0, 1, 700, len(LINES)], ids=["at0", "at1", "mid", "end"])
def test_load_then_continue_equals_one_run(split: int, max_series: int) -> None:
    whole = _agg(LINES, max_series)
    first = _agg(LINES[:split], max_series)
    resumed = Aggregator(max_series=max_series)
    state.load(resumed, state.dump(first, {}, {}))
    Ingest(resumed, Parser()).lines(LINES[split:])
    assert exposition(resumed) == exposition(whole)
    assert resumed.models == whole.models
    assert msgspec.json.encode(state.dump_aggregator(resumed)) == msgspec.json.encode(state.dump_aggregator(whole))


def test_dump_does_not_share_histograms_with_the_live_aggregator() -> None:
    agg = _agg(LINES[:100])
    data = state.dump(agg, {}, {})
    Ingest(agg, Parser()).lines(LINES[100:200])
    again = Aggregator()
    state.load(again, data)
    assert exposition(again) == exposition(_agg(LINES[:100]))


def _valid() -> bytes:
    src = state.SourceState("file", positions={"version": 1, "pattern": "/x", "files": []})
    return state.dump(_agg(LINES[:50]), {"file:/x": src}, {"state_writes": 3})


BAD = {
    "empty": b"",
    "whitespace": b"\n\n",
    "garbage": b"\x00\x01garbage\xff",
    "half-written": _valid()[: len(_valid()) // 2],
    "other-json": b'{"hello": "world"}',
    "json-array": b"[1, 2, 3]",
    "older-version": _valid().replace(f'"version":{state.VERSION}'.encode(), b'"version":0', 1),
    "newer-version": _valid().replace(f'"version":{state.VERSION}'.encode(), b'"version":99', 1),
    "other-labels": _valid().replace(b'"end_user"', b'"end_user_id"', 1),
    "wrong-types": _valid().replace(b'"records":', b'"records":"x","r":', 1),
    "bad-kind": _valid().replace(b'["success"', b'["exploded"', 1),
}


@pytest.mark.parametrize("data", BAD.values(), ids=BAD.keys())
def test_unusable_state_file_is_moved_aside(tmp_path: Path, data: bytes, caplog: pytest.LogCaptureFixture) -> None:
    store = state.Store(tmp_path / "st")
    store.open()
    store.path.write_bytes(data)
    agg = Aggregator()
    with caplog.at_level(logging.WARNING):
        assert store.load(agg) is None
    assert agg.records == 0 and not agg.acc
    aside = list(store.directory.glob("state.json.corrupt-*"))
    assert [p.read_bytes() for p in aside] == [data]
    assert not store.path.exists()
    assert len(caplog.records) == 1 and "moved to state.json.corrupt-" in caplog.records[0].getMessage()
    store.close()


def test_valid_state_file_loads(tmp_path: Path) -> None:
    store = state.Store(tmp_path / "st")
    store.open()
    store.write(_valid())
    agg = Aggregator()
    doc = store.load(agg)
    assert doc is not None and doc.counters == {"state_writes": 3}
    assert doc.sources["file:/x"].positions == {"version": 1, "pattern": "/x", "files": []}
    assert exposition(agg) == exposition(_agg(LINES[:50]))


def test_writes_are_atomic_and_private(tmp_path: Path) -> None:
    store = state.Store(tmp_path / "a" / "st")
    store.open()
    for i in range(3):
        store.write(b"x" * i)
    assert store.path.read_bytes() == b"xx"
    assert stat.S_IMODE(os.stat(store.directory).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert sorted(p.name for p in store.directory.iterdir()) == ["lock", "state.json"]
    assert store.reset() and not store.reset()


def test_one_process_per_state_dir(tmp_path: Path) -> None:
    a, b = state.Store(tmp_path), state.Store(tmp_path)
    a.open()
    with pytest.raises(StateError, match="another logmetrics serve"):
        b.open()
    a.close()
    b.open()
    b.close()


def test_default_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert state.default_dir() == tmp_path / "logmetrics"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert state.default_dir() == tmp_path / ".local" / "state" / "logmetrics"


def test_version_1_state_file_is_converted(tmp_path: Path) -> None:
    """fixtures/state/state-v1.json was written by the previous release (float sums) from the first
    300 LINES with max_series=5: it loads, and its sums become exact integers of the same floats."""
    v1 = (SAMPLES.parent / "state" / "state-v1.json").read_bytes()
    assert b'"version":1,' in v1[:60]
    agg = Aggregator(max_series=5)
    doc = state.load(agg, v1)
    assert doc.version == state.VERSION and doc.sources["file:/x"].positions is not None
    fresh = _agg(LINES[:300], 5)
    assert agg.acc.keys() == fresh.acc.keys() and agg.models.keys() == fresh.models.keys()
    # the families added since that release count the records they could not hold from then on
    added = {"litellm_images_generated_metric", "litellm_video_duration_seconds_metric",
             "litellm_provider_cache_read_input_tokens_metric", "litellm_provider_cache_creation_input_tokens_metric"}
    assert agg.records == fresh.records
    assert agg.series_dropped == {f: n for f, n in fresh.series_dropped.items() if f not in added}
    got, want = exposition(agg).decode().splitlines(), exposition(fresh).decode().splitlines()
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        if a.startswith("logmetrics_series_dropped_total") and any(f'"{f}"' in a for f in added):
            assert a.endswith(" 0.0") and not b.endswith(" 0.0"), a
        elif a != b:  # float sums: the old sequential sum against the exact one, within rounding
            (name_a, value_a), (name_b, value_b) = a.rsplit(" ", 1), b.rsplit(" ", 1)
            assert name_a == name_b and name_a.split("{")[0].endswith(("_sum", "spend_metric_total")), a
            assert float(value_a) == pytest.approx(float(value_b), rel=1e-14)
    # and it goes on: a dump of the converted state is version 2 and loads again unchanged
    again = Aggregator(max_series=5)
    state.load(again, state.dump(agg, {}, {}))
    assert exposition(again) == exposition(agg)


def test_api_base_credentials_of_an_earlier_file_are_redacted_on_load() -> None:
    """A file written before api_base values were redacted holds them as they came: loaded, they show
    redacted, and label sets that differed only in those credentials become one, their counts added."""
    agg = _agg(LINES)
    doc = msgspec.json.decode(state.dump(agg, {}, {}))
    at = state.LABEL_NAMES.index("api_base")
    acc = doc["metrics"]["acc"]
    i = next(i for i, entry in enumerate(acc) if entry[1][at] and entry[0] == "success")
    twin = msgspec.json.decode(msgspec.json.encode(acc[i]))
    base = acc[i][1][at]
    acc[i][1][at] = base.replace("://", "://u:SECRET1@", 1) + "?key=SECRET1"
    twin[1][at] = base.replace("://", "://u:SECRET2@", 1) + "?key=SECRET2"
    acc.append(twin)  # the same label set but for the credentials: one series once loaded
    doc["metrics"]["state"][0][0][2] = "https://u:SECRET3@h/v1?key=SECRET3"
    loaded = Aggregator()
    state.load(loaded, msgspec.json.encode(doc))
    text = exposition(loaded)
    assert b"SECRET" not in text and b"://REDACTED@" in text and b"?REDACTED" in text
    assert len(loaded.acc) == len(agg.acc)  # the twin merged into its label set
    assert sum(a[0] for a in loaded.acc.values()) == sum(a[0] for a in agg.acc.values()) + twin[5][0]  # type: ignore[misc]
