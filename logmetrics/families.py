"""The metric table: LiteLLM 1.109.1's request-fed Prometheus families, as data.

Names, types, help texts, label names (in LiteLLM's order) and buckets are LiteLLM's own, taken
from `litellm/integrations/prometheus.py` and `litellm/types/integrations/prometheus.py` of
1.109.1 (see ../shared/reference/prometheus-metrics.md); `feeds` says which event kind adds what to
a family (mapping-notes.md §1). The aggregator and the exporter both read this table; nothing
else names a LiteLLM metric.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from logmetrics.events import EventKind

# litellm/types/integrations/prometheus.py LATENCY_BUCKETS (+Inf implied)
LATENCY_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 420.0, 600.0,
)
# prometheus_client.Histogram.DEFAULT_BUCKETS (+Inf implied)
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)

LabelSource = Literal["labels", "deployment", "proxy"]


@dataclass(frozen=True, slots=True)
class Feed:
    """Events of `kind` add their `value` (an accumulator name in aggregate.py) to the family,
    labelled from the event's `labels_from` label set."""

    kind: EventKind
    value: str
    labels_from: LabelSource = "labels"


@dataclass(frozen=True, slots=True)
class Family:
    name: str  # as LiteLLM registers it (counters without the `_total` the exposition adds)
    type: Literal["counter", "gauge", "histogram"]
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] | None
    feeds: tuple[Feed, ...]


# `reason` of litellm_zero_cost_requests_total is not one of LiteLLM's label values: it comes
# from the event's zero-cost diagnostic.
ZERO_COST_REASON = "reason"

# fmt: off
FAMILIES: tuple[Family, ...] = (
    Family(
        "litellm_proxy_total_requests_metric",
        "counter",
        "Total number of requests made to the proxy server - track number of client side requests",
        ('end_user', 'hashed_api_key', 'api_key_alias', 'requested_model', 'team', 'team_alias', 'user', 'status_code', 'user_email', 'route', 'client_ip', 'user_agent', 'model_id', 'api_provider', 'org_id', 'org_alias'),
        None,
        (
            Feed(EventKind.SUCCESS, "requests", "proxy"), Feed(EventKind.PROXY_FAILURE, "requests"),
            Feed(EventKind.FAILURE, "requests", "proxy"),
        ),
    ),
    Family(
        "litellm_proxy_failed_requests_metric",
        "counter",
        "Total number of failed responses from proxy - the client did not get a success response from litellm proxy",
        ('end_user', 'hashed_api_key', 'api_key_alias', 'requested_model', 'team', 'team_alias', 'user', 'user_email', 'exception_status', 'exception_class', 'route', 'client_ip', 'user_agent', 'model_id', 'api_provider', 'org_id', 'org_alias'),
        None,
        (Feed(EventKind.PROXY_FAILURE, "requests"), Feed(EventKind.FAILURE, "requests", "proxy")),
    ),
    Family(
        "litellm_requests_metric",
        "counter",
        "deprecated - use litellm_proxy_total_requests_metric. Total number of LLM calls to litellm - track total per API Key, team, user",
        ('end_user', 'hashed_api_key', 'api_key_alias', 'model', 'team', 'team_alias', 'user', 'user_email', 'client_ip', 'user_agent', 'requested_model', 'model_id', 'api_provider', 'org_id', 'org_alias'),
        None,
        (Feed(EventKind.SUCCESS, "requests"),),
    ),
    Family(
        "litellm_llm_api_failed_requests_metric",
        "counter",
        "deprecated - use litellm_proxy_failed_requests_metric",
        ('end_user', 'hashed_api_key', 'api_key_alias', 'model', 'team', 'team_alias', 'user', 'model_id'),
        None,
        (Feed(EventKind.FAILURE, "requests"),),
    ),
    Family(
        "litellm_spend_metric",
        "counter",
        "Total spend on LLM requests",
        ('end_user', 'hashed_api_key', 'api_key_alias', 'model', 'team', 'team_alias', 'user', 'user_email', 'client_ip', 'user_agent', 'requested_model', 'model_id', 'api_provider', 'service_tier', 'org_id', 'org_alias'),
        None,
        (Feed(EventKind.SUCCESS, "spend"),),
    ),
    Family(
        "litellm_total_tokens_metric",
        "counter",
        "Total number of input + output tokens from LLM requests",
        ('end_user', 'hashed_api_key', 'api_key_alias', 'model', 'team', 'team_alias', 'user', 'user_email', 'requested_model', 'model_id', 'api_provider', 'org_id', 'org_alias'),
        None,
        (Feed(EventKind.SUCCESS, "total_tokens"),),
    ),
    Family(
        "litellm_input_tokens_metric",
        "counter",
        "Total number of input tokens from LLM requests",
        ('end_user', 'hashed_api_key', 'api_key_alias', 'model', 'team', 'team_alias', 'user', 'user_email', 'requested_model', 'model_id', 'api_provider', 'org_id', 'org_alias'),
        None,
        (Feed(EventKind.SUCCESS, "prompt_tokens"),),
    ),
    Family(
        "litellm_output_tokens_metric",
        "counter",
        "Total number of output tokens from LLM requests",
        ('end_user', 'hashed_api_key', 'api_key_alias', 'model', 'team', 'team_alias', 'user', 'user_email', 'requested_model', 'model_id', 'api_provider', 'org_id', 'org_alias'),
        None,
        (Feed(EventKind.SUCCESS, "completion_tokens"),),
    ),
    Family(
        "litellm_input_cached_tokens_metric",
        "counter",
        "Provider-side cached input tokens (e.g. OpenAI prompt_tokens_details.cached_tokens, Anthropic cache_read_input_tokens)",
        ('end_user', 'hashed_api_key', 'api_key_alias', 'model', 'team', 'team_alias', 'user', 'user_email', 'requested_model', 'model_id', 'api_provider'),
        None,
        (Feed(EventKind.SUCCESS, "cached_tokens"),),
    ),
    Family(
        "litellm_input_cache_creation_tokens_metric",
        "counter",
        "Provider-side input tokens written to prompt cache (e.g. Anthropic cache_creation_input_tokens)",
        ('end_user', 'hashed_api_key', 'api_key_alias', 'model', 'team', 'team_alias', 'user', 'user_email', 'requested_model', 'model_id', 'api_provider'),
        None,
        (Feed(EventKind.SUCCESS, "cache_creation_tokens"),),
    ),
    Family(
        "litellm_input_audio_tokens_metric",
        "counter",
        "Audio input tokens reported in prompt_tokens_details.audio_tokens",
        ('end_user', 'hashed_api_key', 'api_key_alias', 'model', 'team', 'team_alias', 'user', 'user_email', 'requested_model', 'model_id', 'api_provider'),
        None,
        (Feed(EventKind.SUCCESS, "audio_input_tokens"),),
    ),
    Family(
        "litellm_output_reasoning_tokens_metric",
        "counter",
        "Reasoning tokens reported in completion_tokens_details.reasoning_tokens",
        ('end_user', 'hashed_api_key', 'api_key_alias', 'model', 'team', 'team_alias', 'user', 'user_email', 'requested_model', 'model_id', 'api_provider'),
        None,
        (Feed(EventKind.SUCCESS, "reasoning_tokens"),),
    ),
    Family(
        "litellm_output_audio_tokens_metric",
        "counter",
        "Audio output tokens reported in completion_tokens_details.audio_tokens",
        ('end_user', 'hashed_api_key', 'api_key_alias', 'model', 'team', 'team_alias', 'user', 'user_email', 'requested_model', 'model_id', 'api_provider'),
        None,
        (Feed(EventKind.SUCCESS, "audio_output_tokens"),),
    ),
    Family(
        "litellm_video_duration_seconds_metric",
        "counter",
        "Seconds of video generated, from usage.duration_seconds on video generation calls",
        ('end_user', 'hashed_api_key', 'api_key_alias', 'model', 'team', 'team_alias', 'user', 'user_email', 'requested_model', 'model_id', 'api_provider', 'org_id', 'org_alias'),
        None,
        (Feed(EventKind.SUCCESS, "video_seconds"),),
    ),
    Family(
        "litellm_images_generated_metric",
        "counter",
        "Number of images generated, from the image generation response",
        ('end_user', 'hashed_api_key', 'api_key_alias', 'model', 'team', 'team_alias', 'user', 'user_email', 'requested_model', 'model_id', 'api_provider', 'org_id', 'org_alias'),
        None,
        (Feed(EventKind.SUCCESS, "images"),),
    ),
    Family(
        "litellm_request_total_latency_metric",
        "histogram",
        "End-to-end latency (seconds) for a request to LiteLLM Proxy Server, from the moment the request reached the proxy through the end of processing -- includes authentication, pre-call hooks, the LLM API call, and post-call processing",
        ('model_group', 'end_user', 'hashed_api_key', 'api_key_alias', 'requested_model', 'team', 'team_alias', 'user', 'model', 'model_id', 'api_provider', 'service_tier', 'org_id', 'org_alias'),
        LATENCY_BUCKETS,
        (Feed(EventKind.SUCCESS, "total_latency"),),
    ),
    Family(
        "litellm_llm_api_latency_metric",
        "histogram",
        "Total latency (seconds) for a models LLM API call",
        ('model_group', 'model', 'hashed_api_key', 'api_key_alias', 'team', 'team_alias', 'requested_model', 'end_user', 'user', 'model_id', 'api_provider', 'service_tier', 'org_id', 'org_alias'),
        LATENCY_BUCKETS,
        (Feed(EventKind.SUCCESS, "api_latency"),),
    ),
    Family(
        "litellm_llm_api_time_to_first_token_metric",
        "histogram",
        "Time to first token for a models LLM API call",
        ('model_group', 'model', 'hashed_api_key', 'api_key_alias', 'team', 'team_alias', 'requested_model', 'end_user', 'user', 'model_id', 'api_provider', 'service_tier', 'org_id', 'org_alias'),
        LATENCY_BUCKETS,
        (Feed(EventKind.SUCCESS, "ttft"),),
    ),
    Family(
        "litellm_request_queue_time_seconds",
        "histogram",
        "Time (seconds) from request arrival at the proxy to the start of pre-call processing -- includes authentication and any ASGI-level queueing",
        ('end_user', 'hashed_api_key', 'api_key_alias', 'requested_model', 'team', 'team_alias', 'user', 'model', 'model_id', 'api_provider', 'org_id', 'org_alias'),
        LATENCY_BUCKETS,
        (Feed(EventKind.SUCCESS, "queue_time"),),
    ),
    Family(
        "litellm_overhead_latency_metric",
        "histogram",
        "Latency overhead (milliseconds) added by LiteLLM processing",
        ('model_group', 'api_provider', 'api_base', 'litellm_model_name', 'hashed_api_key', 'api_key_alias', 'model_id'),
        LATENCY_BUCKETS,
        (Feed(EventKind.SUCCESS, "overhead_latency"),),
    ),
    Family(
        "litellm_deployment_success_responses",
        "counter",
        "LLM Deployment Analytics - Total number of successful LLM API calls via litellm",
        ('model_group', 'requested_model', 'litellm_model_name', 'model_id', 'api_base', 'api_provider', 'hashed_api_key', 'api_key_alias', 'team', 'team_alias', 'client_ip', 'user_agent'),
        None,
        (Feed(EventKind.SUCCESS, "requests", "deployment"),),
    ),
    Family(
        "litellm_deployment_total_requests",
        "counter",
        "LLM Deployment Analytics - Total number of LLM API calls via litellm - success + failure",
        ('model_group', 'requested_model', 'litellm_model_name', 'model_id', 'api_base', 'api_provider', 'hashed_api_key', 'api_key_alias', 'team', 'team_alias', 'client_ip', 'user_agent'),
        None,
        (Feed(EventKind.SUCCESS, "requests", "deployment"), Feed(EventKind.FAILURE, "requests", "deployment")),
    ),
    Family(
        "litellm_deployment_failure_responses",
        "counter",
        "LLM Deployment Analytics - Total number of failed LLM API calls for a specific LLM deploymeny. exception_status is the status of the exception from the llm api",
        ('model_group', 'requested_model', 'litellm_model_name', 'model_id', 'api_base', 'api_provider', 'exception_status', 'exception_class', 'hashed_api_key', 'api_key_alias', 'team', 'team_alias', 'client_ip', 'user_agent'),
        None,
        (Feed(EventKind.FAILURE, "requests", "deployment"),),
    ),
    Family(
        "litellm_deployment_latency_per_output_token",
        "histogram",
        "LLM Deployment Analytics - Latency per output token",
        ('model_group', 'litellm_model_name', 'model_id', 'api_base', 'api_provider', 'hashed_api_key', 'api_key_alias', 'team', 'team_alias', 'org_id', 'org_alias'),
        DEFAULT_BUCKETS,
        (Feed(EventKind.SUCCESS, "latency_per_output_token"),),
    ),
    Family(
        "litellm_deployment_state",
        "gauge",
        "LLM Deployment Analytics - The state of the deployment: 0 = healthy, 1 = partial outage, 2 = complete outage",
        ('litellm_model_name', 'model_id', 'api_base', 'api_provider'),
        None,
        (),
    ),
    Family(
        "litellm_cache_hits_metric",
        "counter",
        "Total number of LiteLLM cache hits",
        ('model', 'hashed_api_key', 'api_key_alias', 'team', 'team_alias', 'end_user', 'user', 'model_id', 'api_provider'),
        None,
        (Feed(EventKind.SUCCESS, "cache_hits"),),
    ),
    Family(
        "litellm_cache_misses_metric",
        "counter",
        "Total number of LiteLLM cache misses",
        ('model', 'hashed_api_key', 'api_key_alias', 'team', 'team_alias', 'end_user', 'user', 'model_id', 'api_provider'),
        None,
        (Feed(EventKind.SUCCESS, "cache_misses"),),
    ),
    Family(
        "litellm_cached_tokens_metric",
        "counter",
        "Total tokens served from LiteLLM cache",
        ('model', 'hashed_api_key', 'api_key_alias', 'team', 'team_alias', 'end_user', 'user', 'model_id', 'api_provider'),
        None,
        (Feed(EventKind.SUCCESS, "litellm_cached_tokens"),),
    ),
    Family(
        "litellm_provider_cache_read_input_tokens_metric",
        "counter",
        "Total prompt/input tokens read from provider prompt cache (e.g. OpenAI/Anthropic/Gemini/Bedrock)",
        ('model', 'hashed_api_key', 'api_key_alias', 'team', 'team_alias', 'end_user', 'user', 'model_id', 'api_provider'),
        None,
        (Feed(EventKind.SUCCESS, "provider_cache_read_tokens"),),
    ),
    Family(
        "litellm_provider_cache_creation_input_tokens_metric",
        "counter",
        "Total prompt/input tokens written to provider prompt cache (e.g. Anthropic/Bedrock)",
        ('model', 'hashed_api_key', 'api_key_alias', 'team', 'team_alias', 'end_user', 'user', 'model_id', 'api_provider'),
        None,
        (Feed(EventKind.SUCCESS, "provider_cache_creation_tokens"),),
    ),
    Family(
        "litellm_zero_cost_requests_total",
        "counter",
        "Requests that carried usage but were logged at $0 on a model whose pricing entry has a non-zero rate, by reason (missing_pricing_key, pricing_not_applied, cost_calculation_error)",
        ('requested_model', 'model', 'model_id', 'api_provider', 'reason'),
        None,
        (Feed(EventKind.SUCCESS, "zero_cost"), Feed(EventKind.FAILURE, "zero_cost")),
    ),
)
# fmt: on

BY_NAME: dict[str, Family] = {f.name: f for f in FAMILIES}
