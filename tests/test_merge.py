"""`Aggregator.merge`: records read in parts and merged give what one run over all of them gives,
byte for byte (exposition, state file, summary), with and without the cardinality cap binding."""

from __future__ import annotations

import itertools
import pickle
import random

import msgspec
import pytest

from logmetrics import state
from logmetrics.aggregate import Aggregator
from logmetrics.export import exposition
from logmetrics.parse import Parser
from logmetrics.pipeline import Ingest
from logmetrics.view import summary_rows
from tests.test_state import LINES


def _many_label_sets(n: int, seed: int) -> list[bytes]:
    """Compact records, access lines and payloads with many distinct label sets, deployments and
    routes, in a random order: enough to overflow a small cap in every family."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        model = f"m{rng.randrange(60)}"
        choice = rng.randrange(4)
        if choice == 0:
            level = "ERROR" if rng.random() < 0.2 else "INFO"
            out.append(msgspec.json.encode({
                "timestamp": f"2025-10-21T12:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{rng.randrange(1000):03d}",
                "level": level, "model": model, "provider": f"p{rng.randrange(5)}",
                "latency_ms": rng.random() * 5000, "tokens": {"prompt": rng.randrange(500), "completion": 7}}))
        elif choice == 1:
            route = f"/v1/r{rng.randrange(40)}"
            out.append(msgspec.json.encode({
                "message": f'127.0.0.1:1 - "POST {route} HTTP/1.1" {rng.choice([200, 400, 500])}',
                "level": "INFO", "timestamp": "2025-10-21T12:26:24.123"}))
        else:
            status = "failure" if choice == 3 and rng.random() < 0.5 else "success"
            out.append(msgspec.json.encode({
                "status": status, "call_type": "acompletion", "model": model, "model_group": f"g{rng.randrange(9)}",
                "model_id": f"id{rng.randrange(30)}", "api_base": f"https://b{rng.randrange(3)}",
                "custom_llm_provider": "openai", "startTime": 1761049584.0 + i,
                "endTime": 1761049585.0 + i + rng.random(),
                "response_cost": rng.random() / 1000, "prompt_tokens": 3, "completion_tokens": rng.randrange(9),
                "total_tokens": 12, "metadata": {"user_api_key_hash": f"k{rng.randrange(25)}"},
                "error_information": {"error_class": "RateLimitError", "error_code": "429", "llm_provider": "openai"},
            }))
    return out


def _wide(n: int, seed: int, groups: int) -> list[bytes]:
    """Payloads of many label sets (3,000 keys) over few deployments and `groups` model groups: the
    label sets pass a small cap early, the deployment states never do."""
    rng = random.Random(seed)
    return [msgspec.json.encode({
        "status": "failure" if rng.random() < 0.1 else "success", "call_type": "acompletion", "model": "gpt-4o",
        "model_group": f"g{rng.randrange(groups)}", "model_id": f"id{rng.randrange(2)}", "api_base": "https://b",
        "custom_llm_provider": "openai", "startTime": 1761049584.0 + i, "endTime": 1761049585.0 + i + rng.random(),
        "response_cost": rng.random() / 1000, "prompt_tokens": 3, "completion_tokens": rng.randrange(9),
        "total_tokens": 12, "metadata": {"user_api_key_hash": f"k{rng.randrange(3000)}"},
        "error_information": {"error_class": "RateLimitError", "error_code": "429", "llm_provider": "openai"},
    }) for i in range(n)]


def _run(lines: list[bytes], *, part: bool = False, **settings: object) -> Aggregator:
    agg = Aggregator(part=part, **settings)  # type: ignore[arg-type]
    Ingest(agg, Parser()).lines(lines)
    return agg


def _same(merged: Aggregator, whole: Aggregator) -> None:
    assert exposition(merged) == exposition(whole)
    assert summary_rows(merged) == summary_rows(whole)
    assert merged.series_dropped == whole.series_dropped and merged.skipped == whole.skipped
    for agg in (merged, whole):  # the live per-second ring is the one thing merging does not replay
        for stats in agg.models.values():
            stats.per_second.clear()
    encode = msgspec.json.encode
    assert encode(state.dump_aggregator(merged)) == encode(state.dump_aggregator(whole))


CORPORA = {"samples": LINES, "many": _many_label_sets(3_000, seed=1)}
FROZEN_CORPORA = {**CORPORA, "wide": _wide(3_000, seed=2, groups=30)}


@pytest.mark.parametrize("corpus", CORPORA, ids=CORPORA)
@pytest.mark.parametrize("max_series", [10_000, 7, 60, 300])
@pytest.mark.parametrize("by", ["model", "deployment"])
def test_parts_merged_equal_one_run(corpus: str, max_series: int, by: str) -> None:
    lines = CORPORA[corpus]
    whole = _run(lines, max_series=max_series, by=by)
    rng = random.Random(f"{corpus}{max_series}{by}")
    fallbacks: list[int] = []
    for _ in range(4):
        cuts = sorted(rng.sample(range(len(lines) + 1), rng.randrange(1, 4)))
        bounds = [0, *cuts, len(lines)]
        merged = Aggregator(max_series=max_series, by=by)
        for start, end in itertools.pairwise(bounds):
            part = _run(lines[start:end], part=True, max_series=max_series, by=by)
            part.drop_caches()
            part = pickle.loads(pickle.dumps(part))  # as it comes back from a worker process
            if merged.can_merge(part):
                merged.merge(part)
            else:  # what parallel replay does then: reads the part's records into the merged state
                assert max_series < 10_000 and start > 0
                Ingest(merged, Parser()).lines(lines[start:end])
                fallbacks.append(start)
        _same(merged, whole)
    if max_series == 10_000:
        assert not fallbacks
    elif max_series == 7:
        assert fallbacks  # the fallback path is exercised too


def test_caps_bind_in_the_many_corpus() -> None:
    """The corpus above really folds label sets, deployments, routes and view rows at the caps."""
    dropped = _run(CORPORA["many"], max_series=60).series_dropped
    assert {"litellm_deployment_state", "logmetrics_http_access_lines", "litellm_requests_metric"} <= dropped.keys()
    assert len(_run(CORPORA["many"], max_series=7).models) == 8  # 7 rows and the overflow row


def test_merge_refuses_other_settings_whole_runs_and_inexact_merges() -> None:
    with pytest.raises(ValueError, match="same max_series"):
        Aggregator().merge(Aggregator(max_series=5, part=True))
    with pytest.raises(ValueError, match="part aggregator"):
        Aggregator().merge(Aggregator())
    lines = CORPORA["many"]
    first = _run(lines[:100], max_series=7)
    folded = _run(lines[100:200], part=True, max_series=7)
    assert not first.can_merge(folded) and Aggregator(max_series=7).can_merge(folded)
    with pytest.raises(ValueError, match="folded label sets"):
        first.merge(folded)


def test_label_sets_fold_at_the_merge_as_in_one_run() -> None:
    """Neither part reaches the cap, together they pass it: the merge itself folds."""
    def compact(i: int, route: bool = False) -> bytes:
        if route:
            return msgspec.json.encode({"message": f'1.2.3.4:5 - "GET /r{i} HTTP/1.1" 200', "level": "INFO"})
        return msgspec.json.encode({"timestamp": f"2025-10-21T12:00:{i % 60:02d}.000", "level": "INFO",
                                    "model": f"m{i}", "provider": "p", "latency_ms": i * 1.5})
    first = [compact(i, route) for route in (False, True) for i in range(30)] * 2
    second = [compact(i, route) for i in range(20, 60) for route in (False, True)]
    whole = _run(first + second, max_series=40)
    parts = [_run(lines, part=True, max_series=40) for lines in (first, second)]
    assert all(not part.series_dropped for part in parts)
    merged = Aggregator(max_series=40)
    for part in parts:
        assert merged.can_merge(part)
        merged.merge(part)
    assert whole.series_dropped["litellm_requests_metric"] == 20  # m40..m59 (m30..m39 found room)
    assert whole.series_dropped["logmetrics_http_access_lines"] == 20
    _same(merged, whole)


@pytest.mark.parametrize("corpus", FROZEN_CORPORA, ids=FROZEN_CORPORA)
@pytest.mark.parametrize("max_series", [7, 60, 300])
@pytest.mark.parametrize("by", ["model", "deployment"])
@pytest.mark.parametrize("rates", [True, False], ids=["python", "hot-loop"])
def test_frozen_parts_merge_as_one_run(corpus: str, max_series: int, by: str, rates: bool) -> None:
    """A part read after a full state (`freeze`: from its start, or once it has read a few lines
    with slots of its own) folds as that one run folds, and merges into it exactly."""
    lines = FROZEN_CORPORA[corpus]
    whole = _run(lines, max_series=max_series, by=by, rates=rates)
    filling = Aggregator(max_series=max_series, by=by)
    first = next((k for k, line in enumerate(lines, 1) if filling.add(Parser().parse(line)) or filling.full()), None)
    if first is None:
        assert corpus == "samples" and max_series > 7
        return
    rng = random.Random(f"{corpus}{max_series}{by}{rates}")
    merged_frozen = 0
    for _ in range(3):
        cuts = sorted(rng.sample(range(first, len(lines) + 1), rng.randrange(1, 4)))
        bounds = [*cuts, len(lines)]
        merged = _run(lines[:cuts[0]], max_series=max_series, by=by, rates=rates)
        for start, end in itertools.pairwise(bounds):
            assert merged.full()
            sigs, rows = merged.real()
            part = Aggregator(part=True, max_series=max_series, by=by, rates=rates)
            ingest = Ingest(part, Parser())
            ahead = rng.choice([0, 0, min(max_series - 1, end - start)])  # lines read before it knows
            ingest.lines(lines[start:start + ahead])
            part.freeze(frozenset(sigs), rows)
            ingest.lines(lines[start + ahead:end])
            ingest.drop_caches()
            part = pickle.loads(pickle.dumps(part))
            if merged.can_merge(part):
                merged.merge(part)
                merged_frozen += 1
            else:  # it folded deployment states or routes by its own cap: read here
                assert part.folded()
                Ingest(merged, Parser()).lines(lines[start:end])
        _same(merged, whole)
    if corpus == "wide":
        assert merged_frozen  # the cap binds on label sets (and rows) only: frozen parts merge
