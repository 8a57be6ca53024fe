"""LiteLLM 1.109.1's image, video and provider prompt-cache counters (litellm_images_generated_metric,
litellm_video_duration_seconds_metric, litellm_provider_cache_{read,creation}_input_tokens_metric):
a real capture reproduces LiteLLM's own /metrics, the payload rules are LiteLLM's
(integrations/prometheus.py `_increment_media_generation_metrics`, `_inc_sparse_usage_counters`,
`_resolve_provider_cache_tokens`), and state files and parallel parts of earlier versions carry on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
from parity import FAMILIES, compare, load

from logmetrics import state
from logmetrics.aggregate import SLOT, Aggregator
from logmetrics.events import RequestEvent, Skip, SkipReason
from logmetrics.export import exposition
from logmetrics.parse import Parser
from logmetrics.pipeline import Ingest

ROOT = Path(__file__).resolve().parent.parent
CAPTURE = ROOT / "fixtures" / "sample-logs" / "litellm-1.109.1-media"
EARLIER = ROOT / "fixtures" / "sample-logs" / "litellm-1.109.1-callback" / "requests.log"
NEW = ("litellm_images_generated_metric", "litellm_video_duration_seconds_metric",
       "litellm_provider_cache_read_input_tokens_metric", "litellm_provider_cache_creation_input_tokens_metric")


def test_real_capture_reproduces_litellm_metrics(tmp_path: Path) -> None:
    """Image generation (n=2, 1, 3 images), video generation (8, 4, 12 s) and chats with provider cache
    reads/writes through a real LiteLLM 1.109.1 proxy (tests/litellm/upstream.py): every family equal."""
    out = tmp_path / "m.prom"
    proc = subprocess.run([sys.executable, "-m", "logmetrics", "replay", str(CAPTURE / "requests.log"),
                           "--metrics-out", str(out)], capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    lit = load(str(CAPTURE / "litellm-metrics.txt"))
    report, totals = compare(lit, load(str(out)), 5)
    assert totals["exact"] == len(FAMILIES), "\n".join(report)
    for fam in NEW:
        assert lit[fam][1], f"{fam}: the capture has no sample of it"
    samples = {fam: sorted(v for (name, _), v in lit[fam][1].items()) for fam in NEW}
    assert samples == {
        "litellm_images_generated_metric": [2.0, 4.0],  # n=2 without a user; n=1 and n=3 for carol
        "litellm_video_duration_seconds_metric": [24.0],
        "litellm_provider_cache_read_input_tokens_metric": [1024.0, 1536.0, 1536.0],
        "litellm_provider_cache_creation_input_tokens_metric": [256.0, 256.0],
    }


def _payload(usage: Any) -> bytes:
    return json.dumps({
        "status": "success", "model": "gpt-4o", "model_group": "gpt-4o", "model_id": "m1",
        "custom_llm_provider": "openai", "startTime": 1.7e9, "endTime": 1.7e9 + 1, "prompt_tokens": 3,
        "completion_tokens": 2, "total_tokens": 5, "response_cost": 0.0,
        "metadata": {"user_api_key_hash": "h", "usage_object": usage},
    }).encode()


def _event(usage: Any) -> RequestEvent:
    e = Parser().parse(_payload(usage))
    assert isinstance(e, RequestEvent), e
    return e


@pytest.mark.parametrize(("usage", "read", "creation"), [
    # usage's own fields win over the token details
    ({"cache_read_input_tokens": 7, "cache_creation_input_tokens": 3,
      "prompt_tokens_details": {"cached_tokens": 9, "cache_creation_tokens": 4}}, 7, 3),
    # absent or null: the details (cached_tokens; cache_write_tokens before cache_creation_tokens)
    ({"prompt_tokens_details": {"cached_tokens": 9, "cache_write_tokens": 5, "cache_creation_tokens": 4}}, 9, 5),
    ({"cache_read_input_tokens": None, "cache_creation_input_tokens": None,
      "prompt_tokens_details": {"cached_tokens": 9, "cache_creation_tokens": 4}}, 9, 4),
    # present but 0 or not an integer: no fallback, nothing counted
    ({"cache_read_input_tokens": 0, "cache_creation_input_tokens": 2.0,
      "prompt_tokens_details": {"cached_tokens": 9, "cache_creation_tokens": 4}}, None, None),
    # the details only count as integers
    ({"prompt_tokens_details": {"cached_tokens": 9.0, "cache_creation_tokens": 4.5}}, None, None),
    ({"prompt_tokens_details": None}, None, None),
    ({}, None, None),
    (None, None, None),
])  # fmt: skip
def test_provider_cache_tokens_as_litellm_resolves_them(usage: Any, read: int | None, creation: int | None) -> None:
    e = _event(usage)
    assert (e.provider_cache_read_tokens, e.provider_cache_creation_tokens) == (read, creation)


@pytest.mark.parametrize(("usage", "images", "seconds"), [
    ({"output_image_count": 2}, 2, None),
    ({"duration_seconds": 8.0}, None, 8),
    ({"duration_seconds": 2.5, "output_image_count": 0}, None, 2.5),
    ({"duration_seconds": 0, "output_image_count": None}, None, None),
    ({"duration_seconds": -4.0}, None, None),
])  # fmt: skip
def test_media_counts_only_when_positive(usage: Any, images: int | None, seconds: float | None) -> None:
    e = _event(usage)
    assert (e.images, e.video_seconds) == (images, seconds)


def test_no_series_without_a_positive_value() -> None:
    """Sparse as LiteLLM's: a family has a series only once something positive was added to it."""
    agg = Aggregator()
    Ingest(agg, Parser()).lines([_payload({"prompt_tokens_details": {"cached_tokens": 0}, "duration_seconds": 0})])
    series = {s.family.name: s.values for s in agg.project()}
    assert all(series[f] == {} for f in NEW)
    assert series["litellm_input_tokens_metric"]


def test_video_seconds_beyond_any_duration_skip_the_record() -> None:
    assert Parser().parse(_payload({"duration_seconds": 1e300})) == Skip(SkipReason.INVALID_FIELD)


def test_video_seconds_are_summed_exactly_in_any_grouping() -> None:
    """Float counters are exact sums (as spend): merged parts equal one run to the bit."""
    lines = [_payload({"duration_seconds": s}) for s in (0.1, 0.2, 0.3, 1e-3, 7.7, 1e6, 0.1)]
    whole = Aggregator()
    Ingest(whole, Parser()).lines(lines)
    merged = Aggregator(part=True)
    for i in range(len(lines)):
        part = Aggregator(part=True)
        Ingest(part, Parser()).lines(lines[i:i + 1])
        merged.merge(part)
    assert exposition(merged) == exposition(whole)
    (value,) = next(s for s in whole.project() if s.family.name == NEW[1]).values.values()
    assert value == float(sum(__import__("fractions").Fraction(s) for s in (0.1, 0.2, 0.3, 1e-3, 7.7, 1e6, 0.1)))


def test_state_of_the_previous_release_continues_exactly() -> None:
    """fixtures/state/state-v2-before-media.json was written by the release before these families
    (19 slots an accumulator) from the 1.109.1 callback capture: it loads, and reading the media
    capture on gives exactly what one run of both gives."""
    old = (ROOT / "fixtures" / "state" / "state-v2-before-media.json").read_bytes()
    assert all(len(entry[5]) == 19 for entry in msgspec.json.decode(old)["metrics"]["acc"])
    media = (CAPTURE / "requests.log").read_bytes().splitlines()
    resumed = Aggregator()
    state.load(resumed, old)
    Ingest(resumed, Parser()).lines(media)
    whole = Aggregator()
    Ingest(whole, Parser()).lines([*EARLIER.read_bytes().splitlines(), *media])
    assert exposition(resumed) == exposition(whole)
    assert all(len(acc) == len(SLOT) for acc in resumed.acc.values())
    again = Aggregator()
    state.load(again, state.dump(resumed, {}, {}))
    assert exposition(again) == exposition(whole)
