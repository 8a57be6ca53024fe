"""The C hot loop (`logmetrics/_hotloop.c`, glue in `hotloop.py`) against the pure Python loop.

Contract: `HotLoop(agg, parser).lines(lines)` has exactly the effect of
`for line in lines: agg.add(parser.parse(line))` on the aggregator, for any bytes. Every test here
feeds the same lines both ways and compares everything observable of the two aggregators
(`state_of`): both expositions byte for byte, counts, skips, overflow folding, deployment state in
its order, view rows with their sketches, and every accumulator slot with its type (an int stays an
int, a float a float). Batches are cut at varying places, with caches dropped, loops re-made,
accumulators replaced and pure batches interleaved between them: the C side caches label slots
across calls and must notice each of those.

Inputs: every captured log (fixtures, ../shared/samples), the bench generator's shapes, the fuzz
strategies of test_fuzz.py, and targeted mutations of real success records (payload, callback
record, compact record): each field null, removed, of the wrong type, at numeric edges, as escaped
or invalid UTF-8 text, duplicated, plus whitespace, BOM, garbage and cuts around the line.

Without the C module the differential tests skip, unless LOGMETRICS_REQUIRE_C=1 (CI), which turns
the skip into a failure.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import enum
import gzip
import json
import math
import os
import pprint
import random
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_fuzz import SEED_LINES, budget, damaged, encode, mutate_bytes, mutated, record_lines

from logmetrics import hotloop, parallel, slp
from logmetrics.aggregate import DEFAULT_MAX_SERIES, Aggregator
from logmetrics.export import exposition
from logmetrics.parse import DEFAULT_MAX_LINE_BYTES, Parser
from logmetrics.pipeline import Ingest
from logmetrics.records import Facts
from logmetrics.sources import archive

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "fixtures" / "sample-logs"
SHARED = ROOT.parent / "shared" / "samples"
if not SHARED.is_dir():
    SHARED = Path("/work/shared/samples")

# -- the C module's presence ------------------------------------------------------------------

REQUIRE_C = "LOGMETRICS_REQUIRE_C"


def c_gate(available: bool, environ: Mapping[str, str]) -> None:
    """Skip (C module not built) or, with LOGMETRICS_REQUIRE_C=1, fail: CI must test the C path."""
    if available:
        return
    why = "logmetrics._hotloop (the C hot loop) is not built: nothing to hold against the Python loop"
    if environ.get(REQUIRE_C) == "1":
        pytest.fail(f"{REQUIRE_C}=1 but {why} (build it: python setup.py build_ext --inplace)", pytrace=False)
    pytest.skip(f"{why}; set {REQUIRE_C}=1 to make this a failure")


def require_c() -> None:
    c_gate(hotloop.AVAILABLE, os.environ)


@pytest.fixture(scope="module")
def c_required() -> None:
    """require_c() before hypothesis starts (a failure inside @given would be shrunk and reported as
    a falsifying example)."""
    require_c()


needs_c = pytest.mark.usefixtures("c_required")


@pytest.mark.parametrize("available", [True, False])
@pytest.mark.parametrize("env", [{}, {REQUIRE_C: "1"}, {REQUIRE_C: "0"}, {REQUIRE_C: ""}, {"OTHER": "1"}])
def test_c_gate_skips_or_fails(available: bool, env: dict[str, str]) -> None:
    """Built: run. Not built: skip, unless LOGMETRICS_REQUIRE_C=1 (exactly), then fail."""
    if available:
        assert c_gate(True, env) is None
    elif env.get(REQUIRE_C) == "1":
        with pytest.raises(pytest.fail.Exception, match=REQUIRE_C):
            c_gate(False, env)
    else:
        with pytest.raises(pytest.skip.Exception, match="not built"):
            c_gate(False, env)


def test_c_module_is_there_when_required() -> None:
    """The rule applied to this run: with LOGMETRICS_REQUIRE_C=1 the module must import."""
    if os.environ.get(REQUIRE_C) == "1":
        assert hotloop.AVAILABLE, "LOGMETRICS_REQUIRE_C=1 but logmetrics._hotloop did not import"
    assert hotloop.AVAILABLE == (hotloop._hotloop is not None)
    if hotloop.AVAILABLE:  # an editable install's finder can load another checkout's build
        here = Path(hotloop.__file__).parent
        assert Path(hotloop._hotloop.__file__).parent == here, f"{hotloop._hotloop.__file__} is not in {here}"


# -- the wiring -------------------------------------------------------------------------------


def ingest_hot(ingest: Ingest) -> hotloop.HotLoop | None:
    """The hot loop `ingest.lines` would use now."""
    return ingest._hot_loop()


def test_pure_python_env_disables_the_hot_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGMETRICS_PURE_PYTHON", "1")
    assert hotloop.hot_loop(Aggregator(rates=False), Parser()) is None
    assert ingest_hot(Ingest(Aggregator(rates=False), Parser())) is None


def test_pure_python_env_zero_keeps_the_hot_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    require_c()
    monkeypatch.setenv("LOGMETRICS_PURE_PYTHON", "0")
    assert isinstance(hotloop.hot_loop(Aggregator(rates=False), Parser()), hotloop.HotLoop)


def test_live_rates_never_take_the_hot_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOGMETRICS_PURE_PYTHON", raising=False)
    assert hotloop.hot_loop(Aggregator(rates=True), Parser()) is None
    assert ingest_hot(Ingest(Aggregator(), Parser())) is None  # serve's and tail's aggregators have rates


def test_replay_ingest_uses_the_hot_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    require_c()
    monkeypatch.delenv("LOGMETRICS_PURE_PYTHON", raising=False)
    agg, parser = Aggregator(rates=False), Parser()
    ingest = Ingest(agg, parser)
    hot = ingest_hot(ingest)
    assert isinstance(hot, hotloop.HotLoop)
    assert hot.agg is agg and hot.parser is parser
    lines = real_lines()[:400]
    ingest.lines(lines)
    assert_pure(agg, lines)


def test_ingest_with_filters_or_backfill_stays_correct(monkeypatch: pytest.MonkeyPatch) -> None:
    """Filters and backfill bypass the hot loop: same result as the pure path with the same filters."""
    from logmetrics.pipeline import Filters

    monkeypatch.delenv("LOGMETRICS_PURE_PYTHON", raising=False)
    lines = real_lines()[:400]
    states = []
    for pure in ("1", ""):
        monkeypatch.setenv("LOGMETRICS_PURE_PYTHON", pure)
        agg = Aggregator(rates=False)
        ingest = Ingest(agg, Parser(), Filters(models=["gpt-4o*"]))
        ingest.lines(lines)
        states.append(state_of(agg))
    assert_same(states[0], states[1], lines, {})


def test_ingest_feeds_the_aggregator_it_holds_now(monkeypatch: pytest.MonkeyPatch) -> None:
    """serve.py replaces `ingest.agg` after building the Ingest (a state file it could not use):
    lines must go to the new aggregator, never to the one the hot loop was made for."""
    monkeypatch.delenv("LOGMETRICS_PURE_PYTHON", raising=False)
    old, new = Aggregator(rates=False), Aggregator(rates=False)
    ingest = Ingest(old, Parser())
    ingest.agg = new
    lines = real_lines()[:200]
    ingest.lines(lines)
    assert old.records == 0 and not old.acc, "lines went to the aggregator the Ingest was built with"
    assert_pure(new, lines)


# -- what is observable of an aggregator --------------------------------------------------------


def typed(x: Any) -> Any:
    """`x` as nested tuples that tell types apart: 1 != 1.0 != True, -0.0 != 0.0, dict order kept."""
    t = type(x)
    if x is None or t is bool or t is str or t is bytes:
        return x if t is not str else ("str", x)
    if t is int:
        return ("int", x)
    if t is float:
        return ("float", x.hex() if math.isfinite(x) else repr(x))
    if isinstance(x, enum.Enum):
        return (t.__name__, x.name)
    if isinstance(x, msgspec.Struct):
        return (t.__name__, tuple(typed(v) for v in msgspec.structs.astuple(x)))
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return (t.__name__, tuple((f.name, typed(getattr(x, f.name))) for f in dataclasses.fields(x)))
    if t is dict:
        return ("dict", tuple((typed(k), typed(v)) for k, v in x.items()))
    if t is list or t is tuple:
        return (t.__name__, tuple(typed(v) for v in x))
    if t is bytearray:
        return ("bytearray", bytes(x))
    return ("UNEXPECTED", t.__module__, t.__qualname__, repr(x))  # differs from anything the pure path has


def _aliasing(agg: Aggregator) -> tuple[int, ...]:
    """Which mutable objects of the state are shared: the pure path never shares an accumulator, a
    histogram, its counts or a view row between two places."""
    seen: dict[int, int] = {}
    out = []
    objs: list[object] = []
    for acc in agg.acc.values():
        objs.append(acc)
        for v in acc:
            if v is not None and not isinstance(v, (int, float)):
                objs += [v, getattr(v, "counts", None)]
    for stats in agg.models.values():
        objs += [stats, stats.latency, stats.ttft, stats.per_second]
    for o in objs:
        out.append(seen.setdefault(id(o), len(seen)))
    return tuple(out)


def _render(agg: Aggregator, om: bool) -> object:
    try:
        return bytes(exposition(agg, om=om))
    except Exception as e:  # both paths must then fail alike
        return ("exposition raised", type(e).__name__, str(e))


def state_of(agg: Aggregator) -> dict[str, object]:
    """Everything observable of `agg`, typed (see `typed`), ordered as the aggregator holds it."""
    return {
        "exposition": _render(agg, False),
        "openmetrics": _render(agg, True),
        "records": typed(agg.records),
        "skipped": typed(agg.skipped),
        "series_dropped": typed(agg.series_dropped),
        "dropped_kinds": typed(agg._dropped_kinds),
        "dropped_families": typed(agg._dropped_families),
        "state": typed(list(agg.state.items())),
        "state_records": typed(None if agg._state_records is None else list(agg._state_records.items())),
        "newest_time": typed(agg.newest_time),
        "oldest_time": typed(agg.oldest_time),
        "models": typed(list(agg.models.items())),
        "access_lines": typed(list(agg.access_lines.items())),
        "log_lines": typed(list(agg.log_lines.items())),
        "acc": typed([(sig, acc) for sig, acc in agg.acc.items()]),
        "generation": typed(agg.generation),
        "max_series": typed(agg.max_series),
        "aliasing": _aliasing(agg),
        "folded": agg.folded(),
    }


def assert_pure(agg: Aggregator, lines: Sequence[bytes], **kw: Any) -> None:
    """`agg` holds what the pure loop makes of `lines` in one batch (with the same settings)."""
    pure = run(lines, hot=False, batches=1, ops=(), **kw)
    assert pure.pop("raised") is None
    got = state_of(agg)
    assert got == pure, describe(pure, got)


def _show(v: object) -> list[str]:
    if isinstance(v, bytes):
        return v.decode("utf-8", "backslashreplace").splitlines()
    return pprint.pformat(v, width=140).splitlines()


def describe(pure: dict[str, object], hot: dict[str, object]) -> str:
    """The parts that differ, the small ones first (the expositions last, cut short)."""
    out = []
    keys = sorted(pure, key=lambda k: (k in ("exposition", "openmetrics", "acc", "models", "aliasing"), k))
    for key in keys:
        if pure[key] != hot.get(key):
            lines = list(difflib.unified_diff(_show(pure[key]), _show(hot.get(key)), "pure", "hot", lineterm="", n=0))
            cut = 40 if key not in ("exposition", "openmetrics") else 12
            more = f"\n  ... {len(lines) - cut} more diff lines" if len(lines) > cut else ""
            out.append(f"--- {key} differs:\n" + "\n".join(x[:300] for x in lines[:cut]) + more)
    return "\n".join(out)


# -- feeding both ways --------------------------------------------------------------------------

OPS = ("none", "drop", "parser_drop", "new_loop", "pure", "iter", "reset_acc", "reset_models", "empty", "hot_clear")


def _batches(lines: Sequence[bytes], batches: int | Sequence[int]) -> list[Sequence[bytes]]:
    if isinstance(batches, int):
        n = max(1, batches)
        size = -(-len(lines) // n) if lines else 0
        cuts = [size] * n
    else:
        cuts = list(batches)
    out, i = [], 0
    for c in cuts:
        out.append(lines[i : i + c])
        i += c
    if i < len(lines):
        out.append(lines[i:])
    return out


def run(
    lines: Sequence[bytes], *, hot: bool, max_series: int = DEFAULT_MAX_SERIES, by: str = "model",
    part: bool = False, end_user_label: bool = False, batches: int | Sequence[int] = 3,
    ops: Sequence[str] = ("drop",), max_line_bytes: int = DEFAULT_MAX_LINE_BYTES, fresh: bool = True,
) -> dict[str, object]:
    """`lines` into a new replay aggregator, by the pure loop or by HotLoop.lines over `batches`
    (a count, or the batch sizes), applying `ops[i % len(ops)]` before batch i > 0 (both ways)."""
    if fresh:
        slp.drop_caches()  # the label caches are global: each run starts cold
    agg = Aggregator(max_series=max_series, by=by, part=part, rates=False)
    parser = Parser(max_line_bytes=max_line_bytes, end_user_label=end_user_label)
    loop = hotloop.HotLoop(agg, parser) if hot else None
    raised: object = None
    for i, batch in enumerate(_batches(lines, batches)):
        op = ops[i % len(ops)] if i and ops else "none"
        if op == "drop":
            agg.drop_caches()
        elif op == "parser_drop":
            parser.drop_caches()
        elif op == "new_loop" and hot:
            loop = hotloop.HotLoop(agg, parser)
        elif op == "hot_clear" and loop is not None and hasattr(loop, "drop_caches"):
            loop.drop_caches()  # the C side's own caches only: the aggregator's generation stays
        elif op == "reset_acc":
            agg.acc = {}
        elif op == "reset_models":
            agg.models = {}
        try:
            if loop is not None and op != "pure":
                if op == "empty":
                    loop.lines([])
                loop.lines(iter(batch) if op == "iter" else batch)
            else:
                for line in batch:
                    agg.add(parser.parse(line))
        except Exception as e:
            raised = type(e).__name__  # the message may differ; the kind may not
            break
    state = state_of(agg)
    state["raised"] = raised
    return state


def shrink(lines: list[bytes], kw: dict[str, Any], budget_runs: int = 300) -> list[bytes]:
    """A smaller list of lines on which the two paths still differ (greedy chunk removal)."""

    def differs(ls: list[bytes]) -> bool:
        try:
            return run(ls, hot=False, **kw) != run(ls, hot=True, **kw)
        except Exception:
            return True

    runs = 0
    chunk = max(1, len(lines) // 2)
    while chunk >= 1 and runs < budget_runs:
        i, changed = 0, False
        while i < len(lines) and runs < budget_runs:
            candidate = lines[:i] + lines[i + chunk :]
            runs += 1
            if candidate != lines and differs(candidate):
                lines, changed = candidate, True
            else:
                i += chunk
        if not changed:
            chunk //= 2
    return lines


def _worth_shrinking(lines: Sequence[bytes]) -> bool:
    """Shrinking runs both loops hundreds of times: not while hypothesis is still shrinking itself."""
    from hypothesis.control import current_build_context
    from hypothesis.errors import InvalidArgument

    try:
        final = current_build_context().is_final
    except InvalidArgument:  # not in a hypothesis test
        final = True
    return final and len(lines) < 5000


def assert_same(pure: dict[str, object], hot: dict[str, object], lines: Sequence[bytes], kw: dict[str, Any]) -> None:
    if pure == hot:
        return
    small = shrink(list(lines), {**kw, "batches": 1, "ops": ()}) if _worth_shrinking(lines) else list(lines)
    repro = "\n".join(repr(x) for x in small[:10])
    raise AssertionError(
        f"hot loop != pure loop with {kw}\n{describe(pure, hot)}\n"
        f"minimal lines ({len(small)} of {len(lines)}, fed in one batch):\n{repro}"
    )


def check(lines: Sequence[bytes], **kw: Any) -> dict[str, object]:
    """Both ways; fails with a readable diff and a shrunk repro. Returns the pure state."""
    pure = run(lines, hot=False, **kw)
    hot = run(lines, hot=True, **kw)
    assert_same(pure, hot, lines, kw)
    return pure


# -- inputs: captured and generated logs --------------------------------------------------------


def _read(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def log_files() -> list[Path]:
    found = sorted(p for p in SAMPLES.rglob("*") if p.is_file())
    if SHARED.is_dir():
        found += sorted(p for p in SHARED.rglob("*") if p.is_file())
    return found


def split_lines(data: bytes) -> list[bytes]:
    """As replay's reader cuts them (newlines; one trailing CR dropped; blank lines kept here too)."""
    return [x[:-1] if x.endswith(b"\r") else x for x in data.split(b"\n")]


@cache
def real_lines() -> list[bytes]:
    """Every line of every captured log, in file order."""
    return [x for p in log_files() for x in split_lines(_read(p))]


@cache
def generated(shape: str, n: int, seed: int, error_rate: float) -> list[bytes]:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gen_logs.py"), "--shape", shape, "-n", str(n), "--seed", str(seed),
         "--error-rate", str(error_rate), "-o", "-"],
        check=True, capture_output=True,
    ).stdout
    return out.splitlines()


SETTINGS = [
    {},
    {"max_series": 3},
    {"max_series": 1, "batches": 7, "ops": ("drop", "new_loop", "pure", "iter")},
    {"by": "deployment", "max_series": 5},
    {"part": True, "max_series": 2},
    {"end_user_label": True, "batches": 5, "ops": ("parser_drop", "none", "drop")},
    {"max_series": 4, "batches": 9, "ops": ("hot_clear", "iter", "hot_clear", "pure")},
]


@pytest.mark.parametrize("path", log_files(), ids=lambda p: str(p).replace(str(ROOT.parent), ""))
def test_captured_logs(path: Path) -> None:
    require_c()
    lines = split_lines(_read(path))
    for kw in SETTINGS[:2]:
        check(lines, **kw)


@pytest.mark.parametrize("kw", SETTINGS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "default")
def test_all_captured_logs_together(kw: dict[str, Any]) -> None:
    require_c()
    check(real_lines(), **kw)


@pytest.mark.parametrize("shape", ["simple", "slp"])
@pytest.mark.parametrize("kw", SETTINGS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "default")
def test_generated_logs(shape: str, kw: dict[str, Any]) -> None:
    require_c()
    lines = generated(shape, 3000 if shape == "simple" else 1500, 7, 0.05)
    check(lines, **{"batches": [1, 500, 0, 1000, 3, 2000], "ops": ("drop", "pure", "new_loop", "iter"), **kw})


def test_generated_logs_with_high_cardinality_overflow() -> None:
    """Many distinct label sets beyond the cap, both generator shapes interleaved, tiny batches."""
    require_c()
    simple = generated("simple", 2000, 11, 0.2)
    payloads = generated("slp", 1000, 12, 0.2)
    rnd = random.Random(5)
    lines = [*simple, *payloads]
    rnd.shuffle(lines)
    for max_series in (1, 2, 5, 40):
        check(lines, max_series=max_series, batches=[rnd.randint(0, 50) for _ in range(80)],
              ops=("drop", "none", "new_loop", "pure", "empty", "iter"))


def test_replaced_accumulators_and_rows_between_batches() -> None:
    """`agg.acc = {}` and `agg.models = {}` (what loading a state file does) drop the caches: the
    hot loop's cached slots point at the old accumulators and must be forgotten."""
    require_c()
    lines = generated("simple", 600, 3, 0.1) + generated("slp", 300, 4, 0.1)
    for ops in (("reset_acc",), ("reset_models",), ("reset_acc", "none", "reset_models", "drop")):
        check(lines, batches=6, ops=ops)
        check(lines, batches=6, ops=ops, max_series=3)


def test_interleaved_loops_on_one_aggregator() -> None:
    """Two HotLoops and the pure loop taking turns on one aggregator (each loop has its own cache)."""
    require_c()
    lines = real_lines() + generated("simple", 500, 9, 0.1)
    slp.drop_caches()
    agg = Aggregator(max_series=7, rates=False)
    parser = Parser()
    loops = [hotloop.HotLoop(agg, parser), hotloop.HotLoop(agg, parser)]
    for i, batch in enumerate(_batches(lines, 31)):
        if i % 5 == 4:
            agg.drop_caches()
        if i % 3 == 2:
            for line in batch:
                agg.add(parser.parse(line))
        else:
            loops[i % 2].lines(batch)
    pure = run(lines, hot=False, max_series=7, batches=31, ops=("none", "none", "none", "none", "drop"))
    pure.pop("raised")
    hot = state_of(agg)
    assert pure == hot, describe(pure, hot)


def test_merged_parts_match() -> None:
    """Parallel replay merges part aggregators (part=True) read by the hot loop in workers."""
    require_c()
    lines = real_lines() + generated("slp", 400, 2, 0.1) + generated("simple", 800, 2, 0.1)
    for max_series in (DEFAULT_MAX_SERIES, 4):
        states = []
        for hot in (False, True):
            slp.drop_caches()
            main = Aggregator(max_series=max_series, rates=False)
            parser = Parser()
            unmerged = []
            for i, chunk in enumerate(_batches(lines, 4)):
                agg = main if i == 0 else Aggregator(max_series=max_series, part=True, rates=False)
                if hot:
                    hotloop.HotLoop(agg, parser).lines(chunk)
                else:
                    for line in chunk:
                        agg.add(parser.parse(line))
                if agg is not main:
                    if main.can_merge(agg):
                        main.merge(agg)
                    else:
                        unmerged.append(i)
            states.append({**state_of(main), "unmerged": unmerged})
        assert states[0] == states[1], describe(states[0], states[1])


def test_a_failing_line_source_leaves_the_same_state() -> None:
    """The lines iterable raising half-way: both loops stop there with the same state and error."""
    require_c()
    lines = generated("simple", 300, 1, 0.1) + generated("slp", 100, 1, 0.1)

    def source() -> Iterator[bytes]:
        yield from lines[:250]
        raise OSError("disk gone")

    states = []
    for hot in (False, True):
        slp.drop_caches()
        agg, parser = Aggregator(max_series=5, rates=False), Parser()
        with pytest.raises(OSError, match="disk gone"):
            if hot:
                hotloop.HotLoop(agg, parser).lines(source())
            else:
                for line in source():
                    agg.add(parser.parse(line))
        states.append(state_of(agg))
    assert states[0] == states[1], describe(states[0], states[1])


@pytest.mark.parametrize("kind", ["bytearray", "str", "none", "int", "memoryview"])
def test_lines_that_are_not_bytes(kind: str) -> None:
    """Whatever the pure loop does with a line that is not `bytes` (works, or raises), the hot loop
    does the same, with the same state before the error."""
    require_c()
    good = generated("simple", 5, 1, 0.0) + generated("slp", 3, 1, 0.0)
    odd: object = {"bytearray": bytearray(good[0]), "str": good[0].decode(), "none": None, "int": 7,
                   "memoryview": memoryview(good[1])}[kind]
    lines = [*good[:3], odd, *good[3:]]
    check(lines, batches=1, ops=())  # type: ignore[arg-type]


def test_rates_aggregator_refused_or_equivalent() -> None:
    """HotLoop on an aggregator with live rates (which hot_loop() never makes) must either refuse or
    keep the per-second ring as the pure loop does."""
    require_c()
    lines = generated("simple", 200, 1, 0.1) + generated("slp", 100, 1, 0.1)
    states = []
    for hot in (False, True):
        slp.drop_caches()
        agg, parser = Aggregator(rates=True), Parser()
        if hot:
            try:
                loop = hotloop.HotLoop(agg, parser)
            except (ValueError, TypeError, AssertionError):
                return  # refused: fine
            loop.lines(lines)
        else:
            for line in lines:
                agg.add(parser.parse(line))
        states.append(state_of(agg))
    assert states[0] == states[1], describe(states[0], states[1])


@pytest.mark.parametrize("tz", ["UTC", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"])
def test_naive_times_in_other_zones(tz: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Compact records' naive times are local: the same in every zone, DST changes included."""
    require_c()
    import time

    monkeypatch.setenv("TZ", tz)
    time.tzset()
    try:
        lines = [
            b'{"timestamp":"%s","level":"INFO","model":"m","provider":"p","latency_ms":5,"tokens":{"prompt":1}}' % t
            for t in (b"2025-11-02T01:30:00.000", b"2025-11-02T01:30:00", b"2025-03-09T02:30:00.500",
                      b"2025-04-06T01:45:00.999", b"1970-01-01T00:00:00.000", b"1970-01-01T05:00:00",
                      b"9999-12-30T23:59:59.999", b"2025-10-05T02:15:00.001")
        ]
        check(lines, batches=[3, 1, 4])
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_zone_change_after_dropped_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    """A naive second is parsed again once the parser's caches are dropped (Ingest.drop_caches): a
    zone changed in between (time.tzset) gives the new zone's time both ways."""
    require_c()
    import time

    line = b'{"timestamp":"2025-10-21T12:26:24.125","level":"INFO","model":"m","provider":"p","latency_ms":5}'
    states = []
    try:
        for hot in (False, True):
            monkeypatch.setenv("TZ", "UTC")
            time.tzset()
            slp.drop_caches()
            agg, parser = Aggregator(rates=False), Parser()
            loop = hotloop.HotLoop(agg, parser)
            for zone in ("UTC", "Asia/Kolkata"):
                monkeypatch.setenv("TZ", zone)
                time.tzset()
                if hot:
                    loop.lines([line])
                else:
                    agg.add(parser.parse(line))
                parser.drop_caches()
                agg.drop_caches()
                if hasattr(loop, "drop_caches"):
                    loop.drop_caches()
            states.append(state_of(agg))
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert states[0]["oldest_time"] != states[0]["newest_time"]  # the pure loop saw two times
    assert states[0] == states[1], describe(states[0], states[1])


def test_line_length_limit() -> None:
    require_c()
    lines = generated("slp", 50, 1, 0.1) + generated("simple", 50, 1, 0.1)
    for limit in (1, 150, 180, 2000, 5000):
        check(lines, max_line_bytes=limit)
    # exactly at the limit and one over
    line = generated("simple", 1, 2, 0.0)[0]
    check([line, line + b" ", b" " + line], max_line_bytes=len(line))


# -- inputs: fuzz strategies --------------------------------------------------------------------

configs = st.fixed_dictionaries({
    "max_series": st.sampled_from([1, 2, 3, 5, DEFAULT_MAX_SERIES]),
    "by": st.sampled_from(["model", "deployment"]),
    "part": st.booleans(),
    "end_user_label": st.booleans(),
    "batches": st.lists(st.integers(0, 6), min_size=1, max_size=6),
    "ops": st.lists(st.sampled_from(OPS), min_size=1, max_size=4).map(tuple),
})


@needs_c
@budget(40, 2000)
@given(st.lists(record_lines(), min_size=1, max_size=30), configs)
def test_fuzz_record_lines(lines: list[bytes], kw: dict[str, Any]) -> None:
    check(lines, **kw)


@needs_c
@budget(25, 2000)
@given(st.lists(st.builds(encode, mutated()), min_size=1, max_size=30), configs)
def test_fuzz_mutated_seeds(lines: list[bytes], kw: dict[str, Any]) -> None:
    check(lines, **kw)


@needs_c
@budget(6, 500)
@given(st.integers(0, 2**64), configs)
def test_fuzz_byte_mutations(seed: int, kw: dict[str, Any]) -> None:
    """Hundreds of byte-mutated real lines (raw, as LiteLLM wrote them, and re-encoded) per example."""
    rnd = random.Random(seed)
    pool = success_lines() + SEED_LINES
    lines = []
    for _ in range(400):
        line = rnd.choice(pool)
        lines.append(line if rnd.randrange(4) == 0 else mutate_bytes(rnd, line))
    check(lines, **kw)


# -- inputs: targeted mutations of real success records -------------------------------------------


class Raw:
    """JSON text put into a line as it is (numbers and strings no encoder writes)."""

    def __init__(self, text: bytes) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Raw({self.text!r})"


class Dup:
    """An object written with its keys as given: duplicates allowed."""

    def __init__(self, items: list[tuple[str | Raw, Any]]) -> None:
        self.items = items

    def __repr__(self) -> str:
        return f"Dup({self.items!r})"


STYLES = [(b",", b":"), (b", ", b": "), (b" ,\t", b" :\n "), (b"\r\n,", b"\t:")]


def dump(v: Any, style: tuple[bytes, bytes] = STYLES[1], ascii_only: bool = False) -> bytes:
    comma, colon = style
    if isinstance(v, Raw):
        return v.text
    if isinstance(v, (dict, Dup)):
        items = v.items if isinstance(v, Dup) else list(v.items())
        return b"{" + comma.join(dump(k, style, ascii_only) + colon + dump(x, style, ascii_only)
                                 for k, x in items) + b"}"
    if isinstance(v, list):
        return b"[" + comma.join(dump(x, style, ascii_only) for x in v) + b"]"
    return json.dumps(v, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def _lines_of(paths: Iterable[Path]) -> list[bytes]:
    return [x for p in paths if p.is_file() for x in split_lines(_read(p)) if x.strip()]


def _is_success(obj: dict[str, Any]) -> bool:
    if obj.get("logmetrics_record") == "request":
        return obj.get("hook") == "success"
    if "status" in obj:
        return obj.get("status") == "success"
    return "model" in obj and ("latency_ms" in obj or "tokens" in obj)


@cache
def success_lines() -> list[bytes]:
    """Real success lines of the three shapes the C side takes, as written (plus a few failures)."""
    files = [
        SAMPLES / "litellm-1.109.1" / "standard-logging.jsonl",
        SAMPLES / "litellm-1.109.1-callback" / "requests.log",
        SAMPLES / "litellm-1.109.1-media" / "requests.log",
        SAMPLES / "requests.log",
        SAMPLES / "generated" / "slp-40.jsonl",
        SAMPLES / "generated" / "simple-1k.jsonl",
        SHARED / "litellm-1.109.1" / "standard-logging-runC-enduser.jsonl",
    ]
    out = []
    for line in _lines_of(files):
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and (_is_success(obj) or len(out) % 7 == 0):
            out.append(line)
    simple = [x for x in out if b'"latency_ms"' in x]
    return [x for x in out if b'"latency_ms"' not in x] + simple[:60] + generated("simple", 40, 21, 0.3)


@cache
def bases() -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {"payload": [], "record": [], "compact": []}
    for line in success_lines():
        obj = json.loads(line)
        shape = "record" if "logmetrics_record" in obj else "payload" if "status" in obj else "compact"
        out[shape].append(obj)
    for shape, objs in out.items():
        out[shape] = objs[:: max(1, len(objs) // 25)]
    return out


INT_EDGES = [0, 1, -1, 7, 2**31, 2**53, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 10**30]
FLOAT_EDGES = [0.0, -0.0, 1.0, 0.5, -0.5, 1e-9, 1e-300, 5e-324, 2.2250738585072014e-308, 1e15, 1e100, 1e199, 1e200,
               1e300, 1.7976931348623157e308, 0.1 + 0.2, 1 / 3, 1e11, 1e14, 1e14 + 1]
RAW_NUMBERS = [Raw(x) for x in (b"-0", b"-0.0", b"0e0", b"1E2", b"1e400", b"-1e400", b"NaN", b"Infinity",
                                b"-Infinity", b"1.0", b"1.5e-324", b"9" * 400, b"01", b"1.", b".5", b"+1",
                                b"0x10", b"1e-400", b"123456789012345678901234567890.5")]
RAW_STRINGS = [Raw(x) for x in (
    b'"gpt\\u0041"', b'"a\\nb"', b'"q\\"q"', b'"b\\\\s"', b'"\\u00e9t\\u00e9"', b'"\xc3\xa9t\xc3\xa9"',
    b'"\\ud83d\\ude00"', b'"\xf0\x9f\x98\x80"', b'"x\\ud800"', b'"\\udc00"', b'"\xff"', b'"a\xc3("',
    b'"\xed\xa0\x80"', b'"tab\there"', b'"\\/v1"', b'""', b'" "', b'"None"', b'"null"', b'"\\u0000"',
    b'"\\u2028"', b'"\x1b[31m"', b'"x\\r"', b'"\\t"', b'"a\\u005cb"', b'"\\u0022"', b'"\\uD83D\\uDE00"',
)]
STRINGS = ["", " ", "x", "1", "1.5", "200", "None", "openai", "gpt-4o", "a" * 300, "é", "\u0131nfo", "\ufeff",
           "success", "failure", "Success", "SUCCESS"]
TIMES = [
    "2026-11-23T16:42:32.445690", "2026-11-23T16:42:32.445", "2026-11-23T16:42:32.445690123", "2026-11-23T16:42:32",
    "2026-11-23T16:42", "2026-11-23T16:42:32Z", "2026-11-23T16:42:32.445Z", "2026-11-23T16:42:32.445690+05:30",
    "2026-11-23T16:42:32+0530", "2026-11-23T16:42:32.1-08:00", "2026-11-23 16:42:32.445690", "2026-11-23t16:42:32",
    "2025-02-30T00:00:00", "2025-01-01T24:00:00", "1969-12-31T23:59:59", "1970-01-01T00:00:00", "0001-01-01T00:00:00",
    "9999-12-31T23:59:59.999999", "10000-01-01T00:00:00", "2026-11-23", "20261123T164232", "2026-11-23T16:42:32,5",
    "", "x", "1795452153.0040035", "1795452153", "\u0661\u0662", "2026-11-23T16:42:32.445690Z ",
]
EPOCHS = [1795452153.0040035, 1795452152.895997, 0.0, -1.0, 1e11, 1e11 + 0.5, 1.5e11, 253402214399.0, 253402214400.0,
          1795452153, 1795452153123.0, 1795452153123456.0, 1e14, 1e20, 1761049584.0000005, 1761049584.9999995,
          1761049584.0000015, 1761049584.5, -0.0]
LEVELS = ["INFO", "info", "WARN", "warning", "error", "ERROR", "EXCEPTION", "exception", "CRITICAL", "FATAL", "fatal",
          "DEBUG", "", None, 5, "\u0131nfo", "errör", "ERROR ", "Error", "critical"]
NESTED_WRONG = [[], [1], {}, {"a": 1}, {"cached_tokens": "5"}, {"cached_tokens": 1.5}, {"x": {"y": [None, {}]}},
                [[[[[[[[[[1]]]]]]]]]]]
DEEP = [Raw(b"[" * n + b"1" + b"]" * n) for n in (64, 500, 2000)] + [Raw(b'{"a":' * 300 + b"1" + b"}" * 300)]

class _Remove:
    """The field left out (one object: copies of it are itself)."""

    def __deepcopy__(self, memo: dict[int, object]) -> _Remove:
        return self

    def __repr__(self) -> str:
        return "REMOVE"


REMOVE = _Remove()

PAYLOAD_PATHS = [
    ("status",), ("call_type",), ("model",), ("model_group",), ("model_id",), ("custom_llm_provider",), ("api_base",),
    ("startTime",), ("endTime",), ("completionStartTime",), ("stream",), ("cache_hit",), ("prompt_tokens",),
    ("completion_tokens",), ("total_tokens",), ("response_cost",), ("end_user",), ("metadata",),
    *(("metadata", f) for f in ("user_api_key_hash", "user_api_key_alias", "user_api_key_team_id",
                                 "user_api_key_team_alias", "user_api_key_user_id", "user_api_key_user_email",
                                 "user_api_key_org_id", "user_api_key_org_alias", "user_api_key_end_user_id",
                                 "user_api_key_request_route", "requester_ip_address", "user_agent", "usage_object")),
    ("metadata", "usage_object", "prompt_tokens_details"), ("metadata", "usage_object", "completion_tokens_details"),
    *(("metadata", "usage_object", "prompt_tokens_details", f)
      for f in ("cached_tokens", "cache_write_tokens", "cache_creation_tokens", "audio_tokens")),
    *(("metadata", "usage_object", "completion_tokens_details", f) for f in ("reasoning_tokens", "audio_tokens")),
    *(("metadata", "usage_object", f) for f in ("service_tier", "cache_read_input_tokens",
                                                "cache_creation_input_tokens", "output_image_count",
                                                "duration_seconds", "prompt_tokens")),
    ("hidden_params",), ("hidden_params", "litellm_overhead_time_ms"), ("error_information",),
    ("error_information", "error_code"), ("zero_cost_diagnostic",), ("zero_cost_diagnostic", "reason"),
    ("response",), ("response", "service_tier"), ("response", "usage"), ("model_parameters",),
    ("model_parameters", "service_tier"), ("messages",), ("id",), ("error_str",), ("hidden_params", "service_tier"),
    ("logmetrics_record",), ("latency_ms",), ("tokens",), ("MESSAGE",), ("message",), ("level",), ("payload",),
    ("facts",), ("time",), ("__REALTIME_TIMESTAMP",), ("provider",),
]
FACT_PATHS = [("facts",), *(("facts", f.encode_name) for f in msgspec.structs.fields(Facts))]
RECORD_PATHS = [("logmetrics_record",), ("version",), ("hook",), ("time",), ("payload",), ("labels",),
                ("status",), ("model",), ("latency_ms",), *FACT_PATHS,
                *(("payload", *p) for p in PAYLOAD_PATHS if p[0] not in ("logmetrics_record", "payload", "facts"))]
COMPACT_PATHS = [("timestamp",), ("level",), ("model",), ("provider",), ("latency_ms",), ("tokens",),
                 ("tokens", "prompt"), ("tokens", "completion"), ("tokens", "total"), ("error",), ("status",),
                 ("call_type",), ("model_group",), ("message",), ("MESSAGE",), ("logmetrics_record",), ("extra",)]
PATHS = {"payload": PAYLOAD_PATHS, "record": RECORD_PATHS, "compact": COMPACT_PATHS}


def _get(obj: Any, path: tuple[Any, ...]) -> Any:
    for k in path:
        if isinstance(obj, dict) and k in obj:
            obj = obj[k]
        elif isinstance(obj, list) and isinstance(k, int) and k < len(obj):
            obj = obj[k]
        else:
            return REMOVE
    return obj


def _set(obj: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    node: Any = obj
    for k in path[:-1]:
        nxt = node[k] if isinstance(node, dict) and k in node else None
        if isinstance(node, list):
            nxt = node[k] if isinstance(k, int) and k < len(node) else None
        if not isinstance(nxt, (dict, list)):
            nxt = {}
            if isinstance(node, dict):
                node[k] = nxt
            else:
                return
        node = nxt
    last = path[-1]
    if isinstance(node, dict):
        if value is REMOVE:
            node.pop(last, None)
        else:
            node[last] = value
    elif isinstance(node, list) and isinstance(last, int) and last < len(node) and value is not REMOVE:
        node[last] = value


def _existing_paths(obj: Any, prefix: tuple[Any, ...] = (), depth: int = 0) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    if depth > 4:
        return out
    items = list(obj.items()) if isinstance(obj, dict) else list(enumerate(obj[:3])) if isinstance(obj, list) else []
    for k, v in items:
        out.append((*prefix, k))
        out += _existing_paths(v, (*prefix, k), depth + 1)
    return out


@st.composite
def perturbed(draw: st.DrawFn, current: Any, path: tuple[Any, ...]) -> Any:
    """A value near the field's own: its type changed, its number moved, its text escaped."""
    name = str(path[-1])
    if isinstance(current, bool):
        return draw(st.sampled_from([not current, int(current), str(current).lower(), None]))
    if isinstance(current, int):
        return draw(st.sampled_from([current + 1, current - 1, -current, float(current), str(current), current * 1000,
                                     Raw(b"%d.0" % current), Raw(b"%de0" % current), True, 2**53 - current]))
    if isinstance(current, float):
        return draw(st.sampled_from([current + 1e-6, current - 1, -current, current * 1000, str(current),
                                     int(current), math.nextafter(current, math.inf), current / 1e6,
                                     Raw(repr(current).encode() + b"0"), Raw(b"%.17e" % current), current + 3600.0]))
    if isinstance(current, str):
        if "time" in name.lower() or name == "timestamp":
            return draw(st.sampled_from(TIMES))
        raw = current.encode()
        return draw(st.sampled_from([
            current.upper(), current + "\n", current + '"', current + "\\", current + "é", current[:1],
            Raw(b'"' + b"".join(b"\\u%04x" % c for c in raw[:3]) + raw[3:] + b'"') if raw.isascii() else current,
            Raw(b'"' + raw + b'\\u0041"') if raw.isascii() and b'"' not in raw and b"\\" not in raw else current,
            Raw(b'"' + raw[:2] + b"\xff" + raw[2:] + b'"') if b'"' not in raw and b"\\" not in raw else current,
            Raw(b'"' + raw + b'\\ud800"') if b'"' not in raw and b"\\" not in raw else current,
            Raw(b'"' + raw + b'\\ud83d\\ude00"') if b'"' not in raw and b"\\" not in raw else current,
            1, 1.5, True, [current], {"v": current},
        ]))
    if isinstance(current, dict):
        return draw(st.sampled_from([{}, [current], dump(current).decode("utf-8", "replace"), None, 0, True,
                                     dict.fromkeys(current), Dup([*current.items(), *current.items()])]))
    if isinstance(current, list):
        return draw(st.sampled_from([[], {}, None, [current], current[:1]]))
    return draw(st.sampled_from([0, "", {}, []]))


def values_for(path: tuple[Any, ...], current: Any) -> st.SearchStrategy[Any]:
    name = str(path[-1])
    generic = st.one_of(
        st.just(None), st.just(REMOVE), st.booleans(), st.sampled_from(INT_EDGES), st.sampled_from(FLOAT_EDGES),
        st.sampled_from(RAW_NUMBERS), st.sampled_from(RAW_STRINGS), st.sampled_from(STRINGS),
        st.sampled_from(NESTED_WRONG), st.sampled_from(DEEP),
    )
    special: list[st.SearchStrategy[Any]] = [perturbed(current, path)] if current is not REMOVE else []
    if "time" in name.lower() or name in ("startTime", "endTime", "completionStartTime", "timestamp"):
        special += [st.sampled_from(TIMES), st.sampled_from(EPOCHS)]
    if name == "level":
        special.append(st.sampled_from(LEVELS))
    if name in ("service_tier",):
        special.append(st.sampled_from(["flex", "priority", "auto", "default", "batch", "bogus", "", None]))
    if name in ("original_model_group", "model_group", "model", "requested_model"):
        special.append(st.sampled_from(["gpt-4o", "gpt-4o-mini", "", None, "other", "openai/gpt-4o"]))
    if name == "deployment_state":
        special.append(st.sampled_from([
            {}, {"litellm_model_name": "m", "model_id": "i", "api_base": "b", "api_provider": "p"},
            {"litellm_model_name": None, "model_id": 5}, {"litellm_model_name": "é\n"}, []]))
    if name in ("skip_metrics", "stream", "cache_hit"):
        special.append(st.sampled_from([True, False, None, 0, 1, "true"]))
    if name == "queue_time_seconds":
        special.append(st.sampled_from([-1.0, -0.0, 0.0, 0.25, 1e199, 1e200, -1e300, Raw(b"NaN"), "0.1"]))
    if name in ("latency_ms", "response_cost", "litellm_overhead_time_ms", "duration_seconds"):
        special.append(st.sampled_from([-1, -0.001, 0, 0.0001, 1e199, 1e200, 1e201, Raw(b"1e400"), Raw(b"NaN"),
                                        2**64, "5", 1e-320]))
    if name in ("hook",):
        special.append(st.sampled_from(["success", "failure", "post_call_failure", "SUCCESS", "", None]))
    if name in ("version",):
        special.append(st.sampled_from([1, 2, 0, 1.0, "1", True, None, Raw(b"1e0"), Raw(b"-0")]))
    if name in ("status", "logmetrics_record"):
        special.append(st.sampled_from(["success", "failure", "request", "Success", "", None]))
    if name in ("tokens", "usage_object", "prompt_tokens_details", "metadata", "facts", "payload"):
        special.append(st.sampled_from([{}, {"prompt": 1.0}, {"prompt": True}, {"total": -1}, {"completion": 2**53},
                                        {"completion": 2**53 + 1}, {"prompt": "1"}, {"cached_tokens": 3},
                                        {"service_tier": "flex"}, {"prompt_tokens_details": {"cached_tokens": 1.5}}]))
    return st.one_of(*special, generic) if special else generic


LINE_DAMAGE = [b"", b"", b"", b"", b"\xef\xbb\xbf", b" ", b"\t ", b"\r", b" x", b"}", b",", b"\x00", b"\n"]


@st.composite
def targeted(draw: st.DrawFn) -> bytes:
    """A real success record (payload, callback record or compact) with 1-3 fields changed in ways
    the C decoder must either get exactly right or hand to Python, then written in some style."""
    shape = draw(st.sampled_from(["payload", "record", "compact"]))
    obj = copy.deepcopy(draw(st.sampled_from(bases()[shape])))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS[shape]) | st.sampled_from(_existing_paths(obj) or [("x",)]))
        _set(obj, path, copy.deepcopy(draw(values_for(path, _get(obj, path)))))  # constants stay as they are
    if draw(st.integers(0, 5)) == 0:  # a duplicated key, before or after the original
        dicts = [p for p in _existing_paths(obj) if isinstance(_get(obj, p), dict)]
        target = draw(st.sampled_from([(), *dicts]))
        node = _get(obj, target) if target else obj
        if isinstance(node, dict) and node:
            key = draw(st.sampled_from(sorted(node)))
            other = draw(values_for((*target, key), node[key]))
            other = None if other is REMOVE else copy.deepcopy(other)
            items: list[tuple[str | Raw, Any]] = list(node.items())
            i = [k for k, _ in items].index(key)
            items.insert(i + draw(st.sampled_from([0, 1, len(items) - i])), (key, other))
            if target:
                _set(obj, target, Dup(items))
            else:
                obj = Dup(items)  # type: ignore[assignment]
    if draw(st.integers(0, 8)) == 0 and isinstance(obj, dict):  # a key written with an escape
        key = draw(st.sampled_from(sorted(obj)))
        raw = key.encode()
        obj = Dup([(Raw(b'"\\u%04x' % raw[0] + raw[1:] + b'"') if k == key else k, v) for k, v in obj.items()])
    line = dump(obj, draw(st.sampled_from(STYLES)), draw(st.booleans()))
    head, tail = draw(st.sampled_from(LINE_DAMAGE)), draw(st.sampled_from(LINE_DAMAGE))
    line = (head if head != b"\n" else b"") + line + tail
    if draw(st.integers(0, 12)) == 0:
        line = line[: draw(st.integers(0, len(line)))]
    return line


@needs_c
@budget(120, 5000)
@given(st.lists(targeted(), min_size=1, max_size=12), configs, st.data())
def test_targeted_mutations_of_success_records(lines: list[bytes], kw: dict[str, Any], data: st.DataObject) -> None:
    """Mutated success records among unchanged ones (so the C side's caches are warm and the
    mutated fields' label sets compete with real ones for the cap)."""
    real = data.draw(st.lists(st.sampled_from(success_lines()), max_size=8))
    mixed = data.draw(st.permutations([*lines, *real]))
    check(mixed, **kw)


@needs_c
@budget(30, 2000)
@given(st.lists(targeted(), min_size=1, max_size=4), st.data())
def test_targeted_mutations_damaged(lines: list[bytes], data: st.DataObject) -> None:
    lines = [data.draw(damaged(x)) for x in lines]
    check(lines + success_lines()[:5], max_series=data.draw(st.sampled_from([1, 3, DEFAULT_MAX_SERIES])))


# -- hand-written edge lines ----------------------------------------------------------------------

P = (b'{"status":"success","call_type":"acompletion","model":"openai/gpt-4o","model_group":"gpt-4o",'
     b'"model_id":"id1","custom_llm_provider":"openai","api_base":"https://api.openai.com","startTime":1795452152.5,'
     b'"endTime":1795452153.25,"completionStartTime":1795452153.0,"stream":true,"cache_hit":false,"prompt_tokens":10,'
     b'"completion_tokens":20,"total_tokens":30,"response_cost":1.35e-05,"metadata":{"user_api_key_hash":"h",'
     b'"user_api_key_alias":"a","user_api_key_team_id":"t","user_api_key_request_route":"/v1/chat/completions",'
     b'"requester_ip_address":"127.0.0.1","user_agent":"ua","usage_object":{"prompt_tokens_details":'
     b'{"cached_tokens":4,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":3}}},'
     b'"hidden_params":{"litellm_overhead_time_ms":12.5},"response":{"id":"x"},"model_parameters":{"stream":true}}')
R = (b'{"logmetrics_record":"request","version":1,"hook":"success","time":1795452153.0040035,"payload":' + P +
     b',"facts":{"model":"gpt-4o","stream":true,"start_time":"2026-11-23T16:42:32.445690",'
     b'"end_time":"2026-11-23T16:42:32.960621","hook_start_time":"2026-11-23T16:42:32.895997",'
     b'"hook_end_time":"2026-11-23T16:42:32.960621","queue_time_seconds":0.4712069034576416,'
     b'"api_call_start_time":"2026-11-23T16:42:32.955529","completion_start_time":"2026-11-23T16:42:32.958",'
     b'"original_model_group":"gpt-4o","model_info_id":"id1","service_tier":null,"skip_metrics":false},"labels":null}')
C = b'{"timestamp":"2025-10-21T12:26:24.125","level":"INFO","model":"gpt-4o","provider":"openai","latency_ms":311,' \
    b'"tokens":{"prompt":1559,"completion":22,"total":1581}}'


def _sub(line: bytes, old: bytes, new: bytes) -> bytes:
    assert old in line, old
    return line.replace(old, new, 1)


EDGE_LINES: list[bytes] = [
    P, R, C,
    # duplicate keys
    _sub(P, b'"model_group":"gpt-4o",', b'"model_group":"a","model_group":"b",'),
    _sub(C, b'"model":"gpt-4o",', b'"model":"a","model":"b",'),
    _sub(C, b'"tokens":{', b'"tokens":{"prompt":5},"tokens":{'),
    _sub(C, b'"latency_ms":311,', b'"latency_ms":311,"latency_ms":"x",'),
    _sub(R, b'"hook":"success",', b'"hook":"failure","hook":"success",'),
    _sub(R, b'"hook":"success",', b'"hook":"success","hook":"failure",'),
    _sub(R, b'"labels":null}', b'"labels":null,"facts":{"skip_metrics":true}}'),
    _sub(P, b'"metadata":{', b'"metadata":{"user_api_key_hash":"other"},"metadata":{'),
    _sub(P, b'"prompt_tokens":10,', b'"prompt_tokens":10,"prompt_tokens":11,'),
    # escapes and encodings in label values
    _sub(P, b'"model_group":"gpt-4o"', b'"model_group":"gpt-4\\u006f"'),
    _sub(P, b'"model_group":"gpt-4o"', b'"model_group":"gpt\\n4o"'),
    _sub(P, b'"user_agent":"ua"', b'"user_agent":"u\\"a\\\\"'),
    _sub(P, b'"user_agent":"ua"', b'"user_agent":"\xc3\xa9"'),
    _sub(P, b'"user_agent":"ua"', b'"user_agent":"\\u00e9"'),
    _sub(P, b'"user_agent":"ua"', b'"user_agent":"\\ud83d\\ude00"'),
    _sub(P, b'"user_agent":"ua"', b'"user_agent":"\\ud800"'),
    _sub(P, b'"user_agent":"ua"', b'"user_agent":"\xff"'),
    _sub(P, b'"response":{"id":"x"}', b'"response":{"id":"\xff"}'),
    _sub(P, b'"response":{"id":"x"}', b'"response":{"id":"\\ud800"}'),
    _sub(C, b'"model":"gpt-4o"', b'"model":"gpt-4\\u006f"'),
    _sub(C, b'"model":"gpt-4o"', b'"model":"\xc3\xa9"'),
    _sub(C, b'"provider":"openai"', b'"provider":"open\\u0000ai"'),
    _sub(C, b'"model":', b'"mod\\u0065l":'),
    _sub(P, b'"status":', b'"st\\u0061tus":'),
    # service tiers in raw fields
    _sub(P, b'"response":{"id":"x"}', b'"response":{"id":"x","service_tier":"flex"}'),
    _sub(P, b'"response":{"id":"x"}', b'"response":{"service_tier":"priority","service_tier":""}'),
    _sub(P, b'"response":{"id":"x"}', b'"response":{"service_tier":5}'),
    _sub(P, b'"response":{"id":"x"}', b'"response":{"x":{"service_tier":"flex"}}'),
    _sub(P, b'"response":{"id":"x"}', b'"response":"\\"service_tier\\""'),
    _sub(P, b'"model_parameters":{"stream":true}', b'"model_parameters":{"service_tier":"flex"}'),
    _sub(P, b'"model_parameters":{"stream":true}', b'"model_parameters":{"service_tier":"bogus"}'),
    _sub(P, b'"model_parameters":{"stream":true}', b'"model_parameters":{"service_tier":"fl\\u0065x"}'),
    _sub(P, b'"usage_object":{', b'"usage_object":{"service_tier":"batch",'),
    _sub(P, b'"usage_object":{', b'"usage_object":{"service_tier":"",'),
    # numbers at edges
    *(_sub(P, b'"prompt_tokens":10,', b'"prompt_tokens":%s,' % v)
      for v in (b"0", b"-0", b"-1", b"1.0", b"9007199254740992", b"9007199254740993", b"1e308", b"1e400", b"true",
                b'"10"', b"null", b"[]", b"{}", b"18446744073709551616")),
    *(_sub(P, b'"response_cost":1.35e-05,', b'"response_cost":%s,' % v)
      for v in (b"0", b"-0", b"-1", b"5e-324", b"1e-310", b"1e199", b"1e200", b"1e308", b"1e400", b"NaN", b'"0.1"',
                b"2", b"null", b"true", b"-1e199", b"123456789012345678901234567890")),
    *(_sub(P, b'"startTime":1795452152.5,', b'"startTime":%s,' % v)
      for v in (b"0", b"-1", b"1795452153.25", b"1795452154", b"1795452153250", b"1e400", b'"2026-11-23T16:42:32"',
                b"null", b"1795452152.4999995", b"1795452152.0000005", b"1795452152.0000015", b"1e11",
                b"99999999999.9", b"1795452152.0078125", b"1795452152.0234375", b"0.0078125", b"3.0390625")),
    *(_sub(P, b'"endTime":1795452153.25,', b'"endTime":%s,' % v)
      for v in (b"1795452150", b"null", b"-5", b"253402214400", b"253402214399.5", b"1e15", b"2.5e11",
                b"1795452153.0078125", b"1795452153.9921875")),
    *(_sub(P, b'"completionStartTime":1795452153.0,', b'"completionStartTime":%s,' % v)
      for v in (b"1795452152", b"null", b"1795452152.5", b"1795452160", b"0", b"1795452153.0078125")),
    *(_sub(P, b'"stream":true,', b'"stream":%s,' % v) for v in (b"false", b"null", b"1", b'"true"')),
    *(_sub(P, b'"cache_hit":false,', b'"cache_hit":%s,' % v) for v in (b"true", b"null", b"0")),
    *(_sub(P, b'"litellm_overhead_time_ms":12.5', b'"litellm_overhead_time_ms":%s' % v)
      for v in (b"0", b"-1", b"null", b"1e203", b'"1"', b"5e-324")),
    *(_sub(P, b'"cached_tokens":4', b'"cached_tokens":%s' % v)
      for v in (b"0", b"-1", b"1.0", b"1.5", b"true", b'"4"', b"null", b"9007199254740993", b"{}", b"[4]")),
    *(_sub(P, b'"reasoning_tokens":3', b'"reasoning_tokens":%s' % v) for v in (b"2.0", b"-3", b"false")),
    _sub(P, b'"usage_object":{', b'"usage_object":{"cache_read_input_tokens":7,"cache_creation_input_tokens":2.5,'),
    _sub(P, b'"usage_object":{', b'"usage_object":{"output_image_count":2.0,"duration_seconds":3.5,'),
    _sub(P, b'"usage_object":{', b'"usage_object":{"output_image_count":true,"duration_seconds":1e201,'),
    _sub(P, b'"usage_object":{', b'"usage_object":{"duration_seconds":-2,'),
    *(_sub(P, b'"usage_object":{', b'"usage_object":{"duration_seconds":%s,' % v)
      for v in (b"1e200", b"1e201", b"1e199", b"2", b"2.5", b"0", b"5e-324", b"1e308")),
    *(_sub(P, b'"usage_object":{', b'"usage_object":{"output_image_count":%s,' % v)
      for v in (b"1", b"3.0", b"3.5", b"0", b"9007199254740992", b"9007199254740993", b"1e20")),
    _sub(P, b'"prompt_tokens_details":{"cached_tokens":4,"audio_tokens":0}', b'"prompt_tokens_details":null'),
    _sub(P, b'"prompt_tokens_details":{"cached_tokens":4,"audio_tokens":0}', b'"prompt_tokens_details":[]'),
    _sub(P, b'"audio_tokens":0', b'"audio_tokens":0,"cache_write_tokens":3,"cache_creation_tokens":9'),
    _sub(P, b'"audio_tokens":0', b'"audio_tokens":0,"cache_write_tokens":3.0,"cache_creation_tokens":9'),
    _sub(P, b'"metadata":{', b'"zero_cost_diagnostic":{"reason":"free"},"metadata":{'),
    _sub(P, b'"metadata":{', b'"zero_cost_diagnostic":{"reason":null},"metadata":{'),
    _sub(P, b'"metadata":{', b'"end_user":"eu","metadata":{'),
    _sub(P, b'"status":"success"', b'"status":"failure"'),
    _sub(P, b'"status":"success"', b'"status":"Success"'),
    _sub(P, b'"call_type":"acompletion",', b''),
    _sub(P, b'"metadata":{', b'"metadata":null,"x":{'),
    _sub(P, b'"metadata":{', b'"messages":' + b"[" * 3000 + b"]" * 3000 + b',"metadata":{'),
    _sub(P, b'"metadata":{', b'"messages":' + b"[" * 100 + b"]" * 100 + b',"metadata":{'),
    _sub(P, b'"metadata":{', b'"messages":[1e400,NaN],"metadata":{'),
    _sub(P, b'"metadata":{', b'"logmetrics_record":"request","metadata":{'),
    _sub(P, b'"metadata":{', b'"latency_ms":5,"metadata":{'),
    # facts
    *(_sub(R, b'"start_time":"2026-11-23T16:42:32.445690"', b'"start_time":%s' % v)
      for v in (b'"2026-11-23T16:42:32.445"', b'"2026-11-23T16:42:32.445690123"', b'"2026-11-23T16:42:32"',
                b'"2026-11-23T16:42:32Z"', b'"2026-11-23T16:42:32.445+05:30"', b'"2025-02-30T16:42:32"',
                b'"2026-11-23T24:00:00"', b'"1969-12-31T23:59:59"', b'"9999-12-31T23:59:59"', b'"10000-01-01T00:00:00"',
                b"1795452152.4", b"1795452152.0078125", b"null", b'""', b'"x"', b"5", b'"2026-11-23T16:42:33"',
                b'"2026-11-23 16:42:32.445690"',
                b'"2026-11-23T16:42:32,445690"', b'"2026-11-23T16:42:32.4456901"', b'"2026-11-23T16:42:32.445690Z"')),
    *(_sub(R, b'"queue_time_seconds":0.4712069034576416', b'"queue_time_seconds":%s' % v)
      for v in (b"-1", b"-0.0", b"0", b"null", b"1e200", b"1e199", b'"0.4"', b"NaN")),
    *(_sub(R, b'"original_model_group":"gpt-4o"', b'"original_model_group":%s' % v)
      for v in (b'"other-group"', b'""', b"null", b'"gpt-4\\u006f"', b'"\xc3\xa9"')),
    _sub(R, b'"skip_metrics":false', b'"skip_metrics":true'),
    _sub(R, b'"skip_metrics":false', b'"skip_metrics":null'),
    _sub(R, b'"skip_metrics":false', b'"skip_metrics":0'),
    _sub(R, b'"skip_metrics":false', b'"deployment_state":{"litellm_model_name":"n","model_id":"i","api_base":"b",'
         b'"api_provider":"p"}'),
    _sub(R, b'"skip_metrics":false', b'"deployment_state":{}'),
    _sub(R, b'"skip_metrics":false', b'"deployment_state":{"litellm_model_name":5}'),
    _sub(R, b'"skip_metrics":false', b'"deployment_state":{"model_id":"\\u00e9","model_id":"x"}'),
    _sub(R, b'"service_tier":null', b'"service_tier":"flex"'),
    _sub(R, b'"service_tier":null', b'"service_tier":"flex","end_user":"eu"'),
    _sub(R, b'"model":"gpt-4o","stream"', b'"model":null,"stream"'),
    _sub(R, b'"model":"gpt-4o","stream"', b'"stream"'),
    _sub(R, b'"stream":true,"start', b'"stream":false,"start'),
    _sub(R, b'"time":1795452153.0040035,', b''),
    _sub(R, b'"time":1795452153.0040035,', b'"time":null,'),
    _sub(R, b'"time":1795452153.0040035,', b'"time":-1,'),
    _sub(R, b'"time":1795452153.0040035,', b'"time":253402214400,'),
    _sub(R, b'"time":1795452153.0040035,', b'"time":"1795452153",'),
    _sub(R, b'"version":1,', b'"version":2,'),
    _sub(R, b'"version":1,', b'"version":1.0,'),
    _sub(R, b'"version":1,', b'"version":true,'),
    _sub(R, b'"version":1,', b''),
    _sub(R, b'"labels":null}', b'"labels":{"end_user":"x"}}'),
    _sub(R, b'"labels":null}', b'"labels":[]}'),
    _sub(R, b'"facts":{', b'"facts":null,"f":{'),
    _sub(R, b'"payload":{', b'"payload":{"status":"success",'),
    _sub(R, b'"hook":"success"', b'"hook":"failure"'),
    _sub(R, b'"hook":"success"', b'"hook":"SUCCESS"'),
    # compact records
    *(_sub(C, b'"timestamp":"2025-10-21T12:26:24.125"', b'"timestamp":%s' % v)
      for v in (b'"2025-10-21T12:26:24"', b'"2025-10-21T12:26:24.125Z"', b'"2025-10-21T12:26:24.125+05:30"',
                b'"2025-10-21 12:26:24.125"', b'"2025-10-21T12:26:24.12"', b'"2025-10-21T12:26:24.1250"',
                b'"2025-10-21T12:26:24.125123"', b'"2025-10-21T12:26:24.12a"', b'"2025-13-21T12:26:24.125"',
                b'"2025-02-30T12:26:24.125"', b'"2025-10-21T24:00:00.000"', b'"1969-12-31T23:59:59.999"',
                b'"9999-12-31T23:59:59.999"', b"1761049584", b"1761049584.5", b"1761049584123", b"1761049584123456",
                b'"1761049584"', b'"1761049584.218"', b"-1", b"0", b"1e400", b'""', b'" "', b'"\xd9\xa1\xd9\xa2"',
                b"true", b"null", b'"2025-10-21T12:26:24\\u002e125"', b'"2025-10-21T12:26:24.125 "',
                b'"\xef\xbc\x92025-10-21T12:26:24.125"', b'"2025-10-21T12:26:\xd9\xa24.125"', b"{}")),
    *(_sub(C, b'"level":"INFO"', b'"level":%s' % v)
      for v in (b'"info"', b'"WARN"', b'"error"', b'"EXCEPTION"', b'"exception"', b'""', b"null", b"5", b'"fatal"',
                b'"\\u0131nfo"', b'"CRITICAL"', b'"ERROR "', b'"Error"', b'"\xc3\xa9rror"', b'"DEBUG"', b'"WARNING"',
                b'"INFO"', b'"ERROR"')),
    _sub(C, b'"level":"INFO",', b''),
    *(_sub(C, b'"latency_ms":311', b'"latency_ms":%s' % v)
      for v in (b"-1", b"-0", b"0", b"NaN", b"1e400", b"1e200", b"2e200", b"1e199", b"1e-320", b"311.5", b'"311"',
                b"true", b"null", b"18446744073709551616", b"1e203")),
    _sub(C, b'"latency_ms":311,', b''),
    *(_sub(C, b'"tokens":{"prompt":1559,"completion":22,"total":1581}', b'"tokens":%s' % v)
      for v in (b"{}", b"null", b"[]", b'"x"', b'{"prompt":-1}', b'{"prompt":1.0}', b'{"prompt":true}',
                b'{"prompt":9007199254740992}', b'{"prompt":9007199254740993}', b'{"total":1.5}',
                b'{"prompt":1,"prompt":2}', b'{"prompt":null,"completion":0}', b'{"x":{"y":[1,2,{"z":null}]}}')),
    _sub(C, b',"tokens":{"prompt":1559,"completion":22,"total":1581}', b''),
    _sub(C, b'"provider":"openai",', b''),
    _sub(C, b'"provider":"openai",', b'"provider":null,'),
    _sub(C, b'"provider":"openai",', b'"provider":5,'),
    _sub(C, b'"model":"gpt-4o",', b'"model":"",'),
    _sub(C, b'"model":"gpt-4o",', b'"model":null,'),
    _sub(C, b'"model":"gpt-4o",', b'"model":["x"],'),
    _sub(C, b'"level":"INFO",', b'"level":"ERROR","error":"boom",'),
    _sub(C, b'"level":"INFO",', b'"level":"ERROR","error":null,'),
    _sub(C, b'"level":"INFO",', b'"level":"INFO","status":"success","call_type":"x",'),
    _sub(C, b'"level":"INFO",', b'"level":"INFO","message":"hi",'),
    _sub(C, b'"level":"INFO",', b'"level":"INFO","MESSAGE":"hi",'),
    _sub(C, b'"level":"INFO",', b'"level":"INFO","logmetrics_record":"x",'),
    _sub(C, b'"level":"INFO",', b'"level":"INFO","extra":{"deep":[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]},'),
    # around the line
    b"\xef\xbb\xbf" + C, b"\xef\xbb\xbf" + P, b"  " + C, C + b"  ", C + b"\r", C + b"\r\n", P + b" x", C + b"}",
    C + b",", C[:-1], C[:40], P[:200], R[:-1], C + b"\x00", b"\t" + R, C.replace(b",", b" , "),
    C.replace(b":", b" :\n "), P.replace(b",", b",\r\n"), b"", b" ", b"\xef\xbb\xbf", b"{}", b"[]", b"null",
]


@pytest.mark.parametrize("line", EDGE_LINES, ids=[f"edge{i}" for i in range(len(EDGE_LINES))])
def test_edge_lines(line: bytes) -> None:
    """Each edge line alone, and among valid records of its shape (the C side's caches warm, and
    the line's label set landing under a cap of 2)."""
    require_c()
    check([line], batches=1, ops=())
    check([P, C, R, line, P, line, C, R], batches=[3, 5], ops=("none",), max_series=2)


def test_edge_lines_all_together() -> None:
    require_c()
    for kw in SETTINGS:
        check(EDGE_LINES, **kw)


# -- the harness itself ------------------------------------------------------------------------


def test_the_harness_sees_a_difference() -> None:
    """The comparison is not vacuous: one more line, a changed number, a different order of state
    writes or a float where an int was all make two states differ."""
    lines = generated("simple", 50, 1, 0.1) + generated("slp", 20, 1, 0.1)
    base = run(lines, hot=False, batches=1)
    assert run(lines, hot=False, batches=3, ops=("none",)) == base
    assert run(lines[:-1], hot=False) != base
    assert run([*lines, lines[0]], hot=False) != base
    assert run(list(reversed(lines)), hot=False)["state"] != base["state"]
    slp.drop_caches()
    agg, parser = Aggregator(rates=False), Parser()
    for line in lines:
        agg.add(parser.parse(line))
    assert state_of(agg) == {k: v for k, v in base.items() if k != "raised"}
    acc = next(iter(agg.acc.values()))
    acc[2] = float(acc[2])  # type: ignore[arg-type]
    assert state_of(agg)["acc"] != base["acc"]
    acc[2] = int(acc[2])  # type: ignore[call-overload]
    agg.drop_caches()
    assert state_of(agg)["generation"] != base["generation"]


# -- plausible values: what the C side takes, with numbers and texts it must get exactly right ----

ASCII = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=10)
# epoch floats whose fraction is exactly k + 0.5 microseconds (micros() rounds those half to even: a
# whole second plus an odd multiple of 1/128 s is one, 7812.5 us), and floats just around halves
HALF_MICROS = [w + t / 128 for w in (1761049584, 1795452152, 0, 1) for t in (1, 3, 5, 127)] + [
    w + (k + 0.5) / 1e6 for w in (1761049584, 1795452152, 0, 1) for k in (0, 1, 2, 499999, 999998)]


@st.composite
def plausible_time(draw: st.DrawFn) -> Any:
    if draw(st.booleans()):
        return draw(st.sampled_from(HALF_MICROS) | st.floats(0, 1e11 - 1) | st.integers(0, 10**11 - 1)
                    | st.floats(1.7e9, 1.8e9) | st.sampled_from([0.0, 1e-7, 5e-7, 1.5e-6, 99999999999.99998]))
    day = draw(st.sampled_from(["2026-11-23", "2024-02-29", "2000-01-01", "1970-01-01", "9999-12-31", "0001-01-01",
                                "2025-02-28", "2100-02-28"]))
    h, m, s = draw(st.integers(0, 23)), draw(st.integers(0, 59)), draw(st.integers(0, 59))
    return f"{day}T{h:02d}:{m:02d}:{s:02d}" + draw(st.sampled_from(["", f".{draw(st.integers(0, 999999)):06d}"]))


@st.composite
def plausible_number(draw: st.DrawFn, current: Any) -> Any:
    if type(current) is int:
        return draw(st.integers(0, 2**53) | st.sampled_from([0, 1, 2**53, 2**53 - 1, 10**18 - 1]))
    return draw(st.floats(0, 1e6) | st.floats(-1e3, 1e3) | st.sampled_from([0.0, -0.0, 1e-300, 5e-324, 1e199, 2.5])
                | st.integers(0, 10**6) | st.builds(lambda i, d: Raw(b"%d.%s" % (i, d.encode())), st.integers(0, 999),
                                                     st.text("0123456789", min_size=1, max_size=30)))


@st.composite
def plausible(draw: st.DrawFn) -> bytes:
    """A real success record with 1-4 values changed for others of the right type."""
    shape = draw(st.sampled_from(["payload", "record", "compact"]))
    obj = copy.deepcopy(draw(st.sampled_from(bases()[shape])))
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(PATHS[shape]) | st.sampled_from(_existing_paths(obj) or [("x",)]))
        current = _get(obj, path)
        name = str(path[-1])
        if "time" in name.lower() or name in ("startTime", "endTime", "completionStartTime"):
            value = draw(plausible_time())
        elif name == "timestamp":
            value = draw(st.sampled_from([f"2025-10-21T12:26:{s:02d}.{ms:03d}" for s in (0, 59) for ms in (0, 999)])
                         | plausible_time())
        elif name == "level":
            value = draw(st.sampled_from(["INFO", "DEBUG", "WARNING", "ERROR", "CRITICAL", None]))
        elif type(current) in (bool,) or name in ("stream", "cache_hit", "skip_metrics"):
            value = draw(st.sampled_from([True, False, None]))
        elif type(current) in (int, float):
            value = draw(plausible_number(current))
        elif isinstance(current, str) or current is None:
            value = draw(ASCII | st.sampled_from(["", None, "gpt-4o", "openai", "openai/gpt-4o", "flex"]))
        else:
            value = draw(st.sampled_from([None, REMOVE, {}]))
        _set(obj, path, value)
    return dump(obj, draw(st.sampled_from(STYLES[:2])))


@needs_c
@budget(60, 5000)
@given(st.lists(plausible(), min_size=1, max_size=12), configs, st.data())
def test_plausible_mutations_of_success_records(lines: list[bytes], kw: dict[str, Any], data: st.DataObject) -> None:
    real = data.draw(st.lists(st.sampled_from(success_lines()), max_size=6))
    check(data.draw(st.permutations([*lines, *real])), **kw)


# -- every field of every struct, with every JSON type ------------------------------------------

WRONG = [5, -1, 0, 1.5, -0.5, "x", "", True, False, None, {}, [], 2**53 + 1, Raw(b"-0"), Raw(b"1e400"), Raw(b"1.0"),
         {"a": "b"}, ["x"], 1e200, 1e201, 2**53, 10**19]


def _field_lines() -> list[bytes]:
    from logmetrics import records

    where = {  # (base line, path of the object) -> its struct
        "P": [((), records.Line), (("metadata",), records.Metadata), (("metadata", "usage_object"), records.Usage),
              (("metadata", "usage_object", "prompt_tokens_details"), records.TokenDetails),
              (("metadata", "usage_object", "completion_tokens_details"), records.TokenDetails),
              (("hidden_params",), records.HiddenParams), (("error_information",), records.ErrorInformation),
              (("zero_cost_diagnostic",), records.ZeroCostDiagnostic)],
        "R": [((), records.Line), (("payload",), records.Payload), (("facts",), records.Facts),
              (("facts", "deployment_state"), None), (("labels",), None), (("payload", "metadata"), records.Metadata)],
        "C": [((), records.Line), (("tokens",), records.CompactTokens)],
    }
    bases_ = {"P": P, "R": R, "C": C}
    out = []
    for name, places in where.items():
        base = json.loads(bases_[name])
        for path, struct in places:
            fields = ([f.encode_name for f in msgspec.structs.fields(struct)] if struct is not None
                      else ["litellm_model_name", "model_id", "api_base", "api_provider", "other"])
            for field in fields:
                for value in WRONG:
                    obj = copy.deepcopy(base)
                    _set(obj, (*path, field), copy.deepcopy(value))
                    out.append(dump(obj, STYLES[0]))
    return out


FIELD_LINES = _field_lines()


@pytest.mark.parametrize("chunk", range(8))
def test_every_field_with_every_type(chunk: int) -> None:
    """Each field msgspec decodes (at its own level in a payload, a callback record, a compact
    record), set to each JSON type and a few edge numbers: the C side checks or declines each."""
    require_c()
    lines = FIELD_LINES[chunk::8]
    check(lines, batches=1, ops=())
    check(lines, max_series=2, by="deployment", part=True, batches=5, ops=("drop", "new_loop"))


# -- values left over from the line before ------------------------------------------------------


def _nested_variants() -> list[bytes]:
    """P and R with each nested object removed, null, empty or of another type (the C side keeps
    each object's values in place between lines: none may leak into the next line)."""
    out = []
    for base, paths in (
        (P, [("metadata",), ("metadata", "usage_object"), ("metadata", "usage_object", "prompt_tokens_details"),
             ("metadata", "usage_object", "completion_tokens_details"), ("hidden_params",), ("zero_cost_diagnostic",),
             ("response",), ("model_parameters",)]),
        (R, [("facts",), ("payload", "metadata"), ("payload", "metadata", "usage_object"),
             ("facts", "deployment_state"), ("payload", "hidden_params"), ("labels",)]),
        (C, [("tokens",)]),
    ):
        full = json.loads(base)
        _set(full, ("zero_cost_diagnostic",) if base is P else ("payload", "zero_cost_diagnostic"), {"reason": "free"})
        if base is R:
            _set(full, ("facts", "deployment_state"), {"litellm_model_name": "n", "model_id": "i", "api_base": "b",
                                                       "api_provider": "p"})
        out.append(dump(full, STYLES[0]))
        for path in paths:
            for value in (REMOVE, None, {}, [], "x"):
                obj = copy.deepcopy(full)
                _set(obj, path, value)
                out += [dump(obj, STYLES[0]), dump(full, STYLES[0])]
    return out


def test_nothing_leaks_from_the_line_before() -> None:
    require_c()
    lines = _nested_variants()
    check(lines, batches=1, ops=())
    check(list(reversed(lines)), batches=[1, 2, 3, 50], ops=("none", "hot_clear"), max_series=3)


# -- more label sets than the C side's caches hold ------------------------------------------------


@pytest.mark.parametrize("max_series", [2, 50, 1500])
def test_more_label_sets_than_the_caches_hold(max_series: int) -> None:
    """Past the C side's bound on cached slots (max_series * 1.25 + 1024): caches cleared half-way
    through must not change a thing."""
    require_c()
    rnd = random.Random(max_series)
    lines = []
    for i in range(14_000):
        k = rnd.randrange(12_000)
        if i % 3:
            lines.append(b'{"timestamp":"2025-10-21T12:%02d:%02d.%03d","level":"%s","model":"m%d","provider":"p%d",'
                         b'"latency_ms":%d,"tokens":{"prompt":%d,"completion":3,"total":%d}}'
                         % (i // 600 % 60, i // 10 % 60, i % 1000, b"ERROR" if k % 17 == 0 else b"INFO", k, k % 9,
                            k, k, k + 3))
        else:
            lines.append(_sub(_sub(P, b'"user_api_key_hash":"h"', b'"user_api_key_hash":"h%d"' % k),
                              b'"model_id":"id1"', b'"model_id":"id%d"' % (k % 5000)))
    check(lines, max_series=max_series, batches=[5000, 1, 3000, 0, 6000], ops=("none", "drop", "hot_clear", "iter"))


@pytest.mark.parametrize("max_series", [50, 2_000])
def test_more_label_values_than_the_string_table_holds(max_series: int) -> None:
    """The C side keys its caches by interned label values: past its bounds (32,767 values, 2 MB of
    them, 32,768 folded keys) it forgets them all, mid-batch; a key of more than 8 KB of values goes
    the Python way. None of it may change a thing."""
    require_c()
    rnd = random.Random(max_series)
    lines = []
    for i in range(36_000):  # more distinct values than ids, and more folded keys than kept
        lines.append(_sub(P, b'"user_api_key_hash":"h"', b'"user_api_key_hash":"h%d"' % i))
    for i in range(800):  # 2.4 MB of distinct values
        lines.append(_sub(P, b'"user_api_key_hash":"h"', b'"user_api_key_hash":"%s"' % (b"%05d" % i * 600)))
    for i in range(30):  # one value longer than a key may be, and a few keys just under and over
        lines.append(_sub(P, b'"user_api_key_hash":"h"', b'"user_api_key_hash":"%s"' % (b"k" * (8150 + i * 3))))
    lines += lines[:2000]  # seen before the table was emptied
    check(lines, max_series=max_series, batches=1)  # the values of a key cached before it was emptied get new ids
    rnd.shuffle(lines)
    check(lines, max_series=max_series, batches=[20_000, 1, 5_000, 0, 30_000], ops=("none", "drop", "iter"))


def test_ingest_drop_caches_between_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ingest.drop_caches (what replay calls once everything is read), called between batches."""
    require_c()
    monkeypatch.delenv("LOGMETRICS_PURE_PYTHON", raising=False)
    lines = generated("slp", 300, 8, 0.1) + generated("simple", 600, 8, 0.1)
    slp.drop_caches()
    agg = Aggregator(max_series=6, rates=False)
    ingest = Ingest(agg, Parser())
    assert ingest_hot(ingest) is not None
    for batch in _batches(lines, 5):
        ingest.lines(batch)
        if hasattr(ingest, "drop_caches"):
            ingest.drop_caches()
        else:
            agg.drop_caches()
    pure = run(lines, hot=False, max_series=6, batches=5, ops=("drop",))
    pure.pop("raised")
    got = state_of(agg)
    got["generation"] = pure["generation"]  # one drop more (after the last batch)
    assert got == pure, describe(pure, got)


# -- api_base values with credentials ---------------------------------------------------------

SECRET_BASES = [b"https://api.openai.com", b"https://g.example/v1:generateContent?key=AIzaSECRET",
                b"https://u:SECRET@h.example/v1", b"https://h.example/p@q", b"u:SECRET@h", b"https://h?",
                b"?SECRET", b"SECRET@", b"a://b://u@d/e?f", b"https://@h", b"h/p?q@r", b"://SECRET@",
                b"SECRET@h?c@SECRET", b"https://u@SECRET@h.example/v", b"x:/u@y/z", b""]


def test_api_base_credentials() -> None:
    """Shown redacted (events.redact_api_base), in a payload's api_base and in the deployment state a
    callback record holds: the C loop makes the state's values itself."""
    require_c()
    lines = []
    for i, base in enumerate(SECRET_BASES):
        lines.append(_sub(P, b'"api_base":"https://api.openai.com"', b'"api_base":"%s"' % base))
        record = _sub(R, b'"api_base":"https://api.openai.com"', b'"api_base":"%s"' % base)
        lines.append(_sub(record, b'"skip_metrics":false',
                          b'"skip_metrics":false,"deployment_state":{"litellm_model_name":"n","model_id":"i%d",'
                          b'"api_base":"%s","api_provider":"openai"}' % (i, SECRET_BASES[-1 - i])))
    shown = check(lines * 2, batches=[3, 0, 7, 100])["exposition"]
    assert isinstance(shown, bytes) and b"SECRET" not in shown and b"REDACTED" in shown


# -- additions waiting in C (Pend in _hotloop.c) --------------------------------------------------


def declined(lines: Sequence[bytes]) -> int:
    """How many of `lines` the C loop leaves to the Python parser."""
    parser = Parser()
    calls = []
    parse = parser.parse

    def counted(line: bytes) -> object:
        calls.append(line)
        return parse(line)

    parser.parse = counted  # type: ignore[method-assign,assignment]
    hotloop.HotLoop(Aggregator(rates=False), parser).lines(lines)
    return len(calls)


BIG = 2**53  # the largest count the C side takes; 1024 of them pass 2**63


def test_counts_past_the_c_counters() -> None:
    """Token sums of one label set past 2**63: the C side writes what it holds before a counter
    would overflow, and Python's integers take the rest."""
    require_c()
    big = _sub(_sub(_sub(P, b'"prompt_tokens":10', b'"prompt_tokens":%d' % BIG), b'"completion_tokens":20',
                    b'"completion_tokens":%d' % BIG), b'"total_tokens":30', b'"total_tokens":%d' % BIG)
    big = _sub(big, b'"cached_tokens":4', b'"cached_tokens":%d' % BIG)
    compact = _sub(C, b'"total":1581', b'"total":%d' % BIG)
    lines = [big] * 1100 + [P] * 3 + [compact] * 1100 + [big, P] * 600
    assert declined(lines) == 0
    pure = check(lines, batches=[7, 3000, 0, 100], ops=("none", "iter"))
    assert b"litellm_total_tokens_metric_total" in pure["exposition"]  # type: ignore[operator]
    check(lines, batches=1, ops=())


def test_more_records_of_one_label_set_than_a_bucket_count_holds() -> None:
    """Bucket counts wait in C as 16-bit numbers: the records of a label set past 65,535 are
    written before one would wrap."""
    require_c()
    lines = [C] * 70_000 + [P] * 66_000 + [C, P] * 10
    assert declined(lines[:10]) == 0
    check(lines, batches=[65_535, 1, 0, 100_000], ops=("none", "iter"))


SMALL_EDGES = [2.0**-60, 2.0**-60 * (1 - 2**-53), 2.0**-65 * (1 + 2**-52), 2.0**-61 / 3, 2.0**60,
               2.0**60 * (1 - 2**-53), 1e-25, 3e18, 1e150, 1e-300, 5e-324, 0.1, 1 / 3]


def test_values_beyond_the_small_sums() -> None:
    """Sums wait in C as multiples of 2**-113 for values in [2**-60, 2**60); others are written at
    once, into the same exact sums (spend, histogram sums, the view's spend), negative ones too."""
    require_c()
    lines = []
    for i, v in enumerate(SMALL_EDGES * 2):
        cost = -v if i >= len(SMALL_EDGES) else v
        line = _sub(P, b'"response_cost":1.35e-05', b'"response_cost":%r' % cost)
        lines.append(_sub(line, b'"litellm_overhead_time_ms":12.5', b'"litellm_overhead_time_ms":%r' % (v * 1000)))
        lines.append(P)
    # latency per output token of a microsecond over 10**17 tokens: below 2**-60
    lines.append(_sub(_sub(P, b'"completion_tokens":20', b'"completion_tokens":%d' % 10**17),
                      b'"endTime":1795452153.25', b'"endTime":1795452152.500001'))
    assert declined(lines) <= 2  # 5e-324 * 1000 and 1e-300 * 1000 are not both plain
    check(lines, batches=1, ops=())
    check(lines * 3, batches=[5, 11, 0, 40], ops=("none", "drop", "hot_clear"), max_series=2)


@pytest.mark.parametrize("read", ["models", "acc", "project", "pickle", "merge", "drop_caches", "room"])
def test_a_read_right_after_the_loop_sees_every_addition(read: str) -> None:
    """The additions wait in C until the aggregator is read: whichever read comes first (the
    replay summary reads the view rows, a worker pickles its part, the parent merges parts) writes
    them. `room()`, which counts slots, leaves them waiting."""
    require_c()
    import pickle

    lines = generated("slp", 200, 5, 0.1) + generated("simple", 300, 5, 0.1)
    pure = run(lines, hot=False, batches=1, ops=())
    pure.pop("raised")
    slp.drop_caches()
    agg = Aggregator(rates=False)
    hotloop.HotLoop(agg, Parser()).lines(lines)
    if read == "models":
        got: object = typed(list(agg.models.items()))
        assert got == pure["models"]
    elif read == "acc":
        got = typed([(sig, acc) for sig, acc in agg.acc.items()])
        assert got == pure["acc"]
    elif read == "project":
        assert bytes(exposition(agg)) == pure["exposition"]
    elif read == "pickle":
        copy_ = pickle.loads(pickle.dumps(agg))
        assert bytes(exposition(copy_)) == pure["exposition"]
        assert typed(list(copy_.models.items())) == pure["models"]
    elif read == "merge":
        main = Aggregator(rates=False)
        part = Aggregator(part=True, rates=False)
        hotloop.HotLoop(part, Parser()).lines(lines)
        main.merge(part)
        assert bytes(exposition(main)) == pure["exposition"]
    elif read == "drop_caches":
        agg.drop_caches()
        assert sum(acc[0] for acc in agg._acc.values()) == agg.records  # type: ignore[misc]
        assert bytes(exposition(agg)) == pure["exposition"]
    else:
        before = {sig: list(acc) for sig, acc in agg._acc.items()}
        assert agg.room() == agg.max_series - max(len(before), len(agg._models))
        assert sum(acc[0] for acc in agg._acc.values()) < agg.records  # type: ignore[misc]  # some still wait
        assert bytes(exposition(agg)) == pure["exposition"]


def test_blocks_of_lines_as_read(tmp_path: Path) -> None:
    """`archive.Lines` blocks (what replay reads) split in C: the same as their lines one by one,
    cut anywhere by `parallel.feed`, with empty and unparsable lines among them."""
    require_c()
    lines = real_lines()[:300] + generated("slp", 200, 6, 0.2) + generated("simple", 300, 6, 0.2)
    lines += [b"", b"  ", b"{", b"not json", b'{"a":1}']
    random.Random(6).shuffle(lines)
    path = tmp_path / "requests.log"
    path.write_bytes(b"\n".join(lines) + b"\n\n")
    items = list(archive.read_blocks([str(path)], archive.ReadStats(), DEFAULT_MAX_LINE_BYTES))
    assert any(isinstance(x, archive.Lines) for x in items)
    pure = run(list(archive.each_line(items)), hot=False, batches=1, ops=())
    for size in (None, 1, 77, 10_000):
        slp.drop_caches()
        agg = Aggregator(rates=False)
        loop = hotloop.HotLoop(agg, Parser())
        if size is None:
            loop.lines(iter(items))
        else:
            parallel.feed(iter(items), loop.lines, lambda: None, lambda s=size: s)  # type: ignore[misc]
        got = state_of(agg)
        got["raised"] = None
        assert got == pure, describe(pure, got)


def _decimal(rnd: random.Random) -> bytes:
    """A JSON number of 1 to 20 significant digits, or one near halfway between two doubles."""
    if rnd.random() < 0.3:  # the decimal nearest a halfway point, to 16-19 digits
        d = math.ldexp(rnd.getrandbits(53) | 1 << 52, rnd.randrange(-150, 10))
        mid = (Fraction(d) + Fraction(math.nextafter(d, math.inf))) / 2
        digits = rnd.randrange(16, 20)
        shift = digits - 1 - math.floor(math.log10(mid))
        return b"%de%d" % (round(mid * Fraction(10) ** shift), -shift)
    digits = "".join(rnd.choice("0123456789") for _ in range(rnd.randrange(1, 21))).lstrip("0") or "0"
    point = rnd.randrange(len(digits) + 1)
    text = digits[:point] + ("." + digits[point:] if point < len(digits) else "")
    text = ("0" + text if text.startswith(".") else text) + (f"e{rnd.randrange(-30, 31)}" if rnd.random() < 0.3 else "")
    return ("-" if rnd.random() < 0.2 else "").encode() + text.encode()


def test_fast_float_rounds_as_python() -> None:
    """The C loop reads a number of up to 19 digits itself (Clinger's fast path, or x87's 64-bit
    long double with a check for halfway cases): bit for bit what Python's float() gives."""
    require_c()
    assert hotloop._hotloop is not None
    fast = hotloop._hotloop.fast_float
    rnd = random.Random(17)
    taken = 0
    for _ in range(300_000):
        text = _decimal(rnd)
        got = fast(text)
        if got is not None:
            taken += 1
            want = float(text)
            assert math.copysign(1, got) == math.copysign(1, want) and got == want, (text, got, want)
    assert taken > 150_000  # most take the fast path
    for text in (b"1761049587.1066597", b"2.0048887729644775", b"0.1", b"-0.0", b"9007199254740993",
                 b"18446744073709551615", b"1e22", b"1e23", b"123456789012345678e-27"):
        got = fast(text)
        assert got is None or (got == float(text) and math.copysign(1, got) == math.copysign(1, float(text))), text
    assert fast(b"1761049587.1066597") is not None  # 17 digits: a record time


def test_seventeen_digit_numbers_in_records() -> None:
    """Times, costs and durations of 16 to 19 digits (Python's repr takes up to 17) in records."""
    require_c()
    rnd = random.Random(3)
    lines = []
    for _ in range(400):
        start = 1795452150 + rnd.random() * 2
        t = [b"%.*f" % (rnd.randrange(6, 10), start + k * rnd.random()) for k in range(3)]
        line = _sub(P, b'"startTime":1795452152.5', b'"startTime":' + t[0])
        line = _sub(line, b'"endTime":1795452153.25', b'"endTime":' + t[2])
        line = _sub(line, b'"completionStartTime":1795452153.0', b'"completionStartTime":' + t[1])
        line = _sub(line, b'"response_cost":1.35e-05', b'"response_cost":%r' % (rnd.random() / 1000))
        overhead = b'"litellm_overhead_time_ms":' + _decimal(rnd).lstrip(b"-")
        lines.append(_sub(line, b'"litellm_overhead_time_ms":12.5', overhead))
    assert declined(lines) < 40
    check(lines, batches=[100, 300], ops=("none",))


# the bytes a string's scan tells apart (_hotloop.c skip_plain): plain ones, escapes, a control
# character (invalid raw), DEL, and UTF-8 (valid and not)
PLAIN_BYTES = [b" ", b"~", b"a"]
STRING_BYTES = [b'\\"', b"\\\\", b"\\n", b"\\u00e9", b"\x01", b"\x1f", b"\x7f", b"\xc3\xa9", b"\xff"]


def test_every_kind_of_byte_at_every_offset_of_a_string() -> None:
    """Each kind of byte at each offset of a label value (a typed string) and of a text the loop
    skips, across the 16 bytes the scan compares at once and the scan's end near the line's end."""
    require_c()
    plain, other = [], []
    for k in range(35):
        for b in PLAIN_BYTES + STRING_BYTES:
            value = b"g" * k + b + b"z" * (k % 4)
            lines = [_sub(P, b'"model_group":"gpt-4o"', b'"model_group":"%s"' % value),
                     _sub(P, b'"response":{"id":"x"}', b'"response":{"id":"%s"}' % value),
                     _sub(P, b'"stream":true}}', b'"stream":true,"t":"%s"}}' % value)]
            (plain if b in PLAIN_BYTES else other).extend(lines)
    assert declined(plain) == 0  # the scan stops at no plain byte
    check(plain + other, batches=[97, 10_000])


# -- failure payloads (slp._failure without facts, taken in C) ------------------------------------

FAILURE_PARTS: dict[bytes, list[bytes]] = {
    b'"error_code":500': [b'"error_code":500', b'"error_code":"500"', b'"error_code":""', b'"error_code":null',
                          b'"error_code":-0', b'"error_code":-7', b'"error_code":4611686018427387904',
                          b'"error_code":"x y"', b'"error_code":1.5', b'"error_code":true'],
    b'"error_class":"RateLimitError"': [b'"error_class":"RateLimitError"', b'"error_class":"BadRequestError"',
                                        b'"error_class":"ProxyModelNotFoundError"', b'"error_class":""',
                                        b'"error_class":null', b'"error_class":"ProxyException"'],
    b'"llm_provider":"openai"': [b'"llm_provider":"openai"', b'"llm_provider":""', b'"llm_provider":null',
                                 b'"llm_provider":"x"', b'"llm_provider":"vertex_ai"'],
    b'"model_id":"id1"': [b'"model_id":"id1"', b'"model_id":""', b'"model_id":null', b'"model_id":"id2"'],
    b'"model_group":"gpt-4o"': [b'"model_group":"gpt-4o"', b'"model_group":""', b'"model_group":null'],
    b'"startTime":1795452152.5': [b'"startTime":1795452152.5', b'"startTime":"2026-11-23T16:42:32.445690"',
                                  b'"startTime":null', b'"startTime":"x"'],
    b'"endTime":1795452153.25': [b'"endTime":1795452153.25', b'"endTime":9000000000.5', b'"endTime":1.25',
                                 b'"endTime":null', b'"endTime":-1.0'],
    b'"custom_llm_provider":"openai"': [b'"custom_llm_provider":"openai"', b'"custom_llm_provider":null'],
    b'"model":"openai/gpt-4o"': [b'"model":"openai/gpt-4o"', b'"model":""', b'"model":null', b'"model":"o1"'],
    b'"api_base":"https://api.openai.com"': [b'"api_base":"https://api.openai.com"', b'"api_base":null',
                                             b'"api_base":"https://u:SECRET@h.example/v1?k=SECRET"'],
    b'"response":{"id":"x"}': [b'"response":{"id":"x"}', b'"response":{"id":"x"},"zero_cost_diagnostic":{"reason":"r"}',
                               b'"response":{"id":"x"},"end_user":"u"'],
}
F = _sub(_sub(P, b'"status":"success"', b'"status":"failure"'), b'"response_cost":1.35e-05,',
         b'"response_cost":0.0,"error_str":"boom","error_information":{"error_code":500,'
         b'"error_class":"RateLimitError","llm_provider":"openai"},')


def failure_lines(n: int, seed: int) -> list[bytes]:
    """F with one part replaced by each of its variants (FAILURE_PARTS): lines that differ in one
    label value; then `n` with each part replaced by one of its variants at random."""
    rnd = random.Random(seed)
    lines = [_sub(F, part, variant) for part, variants in FAILURE_PARTS.items() for variant in variants]
    lines += [re.sub(rb'"error_information":\{[^}]*\},', b'"error_information":null,', F)]
    for _ in range(n):
        line = F
        for part, variants in FAILURE_PARTS.items():
            line = _sub(line, part, rnd.choice(variants))
        if rnd.random() < 0.1:
            line = re.sub(rb'"error_information":\{[^}]*\},', rnd.choice([b'"error_information":null,', b""]), line)
        lines.append(line)
    return lines


@pytest.mark.parametrize("kw", SETTINGS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "default")
def test_failure_payloads(kw: dict[str, Any]) -> None:
    """Every part of a failure payload that decides its label sets or deployment state, in random
    combinations, among successes: the C loop takes all of them but error codes no label has."""
    require_c()
    failures = failure_lines(600, 5)
    odd = [b'"error_code":1.5', b'"error_code":true', b'"error_code":4611686018427387904',  # (beyond 18 digits)
           b'"startTime":"x"', b'"endTime":-1.0',  # skipped
           b'"startTime":"2026-11-23T16:42:32.445690"']  # (payload times in C: numbers)
    plain = [line for line in failures if not any(o in line for o in odd)]
    assert declined(plain) == 0
    check(plain, **kw)  # alone: lines the Python way would hide some differences (the newest time)
    lines = [line for pair in zip(failures, generated("slp", len(failures), 3, 0.0), strict=True) for line in pair]
    # a success and a failure whose raw values are the same in a row (zero cost reason "r"; error
    # class "r" of provider "i"): slots are keyed by kind too
    lines += [_sub(P, b'"response":{"id":"x"}', b'"response":{"id":"x"},"zero_cost_diagnostic":{"reason":"r"}'),
              _sub(F, b'"error_code":500,"error_class":"RateLimitError","llm_provider":"openai"',
                   b'"error_code":null,"error_class":"r","llm_provider":"i"')]
    # the callback's records of failures: their facts decide (the Python way)
    facts = b'"skip_metrics":false,"exception_status":"503","exception_class":"Openai.X"'
    lines += [_sub(_sub(R, b'"status":"success"', b'"status":"failure"'), b'"skip_metrics":false', facts),
              _sub(_sub(R, b'"hook":"success"', b'"hook":"failure"'), b'"skip_metrics":false', facts)]
    check(lines, **kw)
