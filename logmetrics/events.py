"""The typed events every source's records become, and the reasons a record is skipped.

The parser (`parse.py`) is the only producer; the aggregator (`aggregate.py`) and the views
consume them. Values are normalised once, in the parser: durations in seconds, times as UTC
epoch floats, absent values as `None` (never the string "None"; rendering is the exporter's job).

`Labels` mirrors LiteLLM's own `UserAPIKeyLabelValues`: the label values of one hook call, from
which each metric family takes the labels it supports. A request event carries up to three of
them because LiteLLM labels some families of the same hook call differently (see
docs/record-format.md and ../shared/reference/mapping-notes.md).
"""

from __future__ import annotations

import enum

import msgspec


class EventKind(enum.Enum):
    """Which LiteLLM hook the event stands for; decides which metric families it feeds."""

    SUCCESS = "success"  # async_log_success_event
    FAILURE = "failure"  # async_log_failure_event (a deployment call, or a proxy 400 with a payload)
    PROXY_FAILURE = "post_call_failure"  # async_post_call_failure_hook: the client got an error

    # Members are singletons: identity hashing is correct and, unlike Enum's hash(self._name_), runs
    # in C (the aggregator hashes a kind with every request event).
    __hash__ = object.__hash__


MAX_VALUE = 1e200
"""No duration or cost is this big: the parser skips a record that says otherwise (the
aggregator's exact sums rely on it)."""


class SkipReason(enum.Enum):
    """Why a line was not counted. Every value is a `reason` label of
    `logmetrics_records_skipped_total`, pre-initialised at 0."""

    NOT_JSON = "not_json"
    INVALID_UTF8 = "invalid_utf8"
    TOO_LONG = "too_long"
    TOO_DEEP = "too_deep"
    UNKNOWN_SHAPE = "unknown_shape"
    INVALID_FIELD = "invalid_field"
    INVALID_DURATION = "invalid_duration"
    INVALID_TIME = "invalid_time"
    UNSUPPORTED_VERSION = "unsupported_version"
    INVALID_KEY = "invalid_key"  # LiteLLM's exporter skips events of unauthenticated requests too
    FILTERED = "filtered"  # left out by --model/--since/--until
    UNREADABLE = "unreadable"  # a file that vanished or could not be read mid-way


class Labels(msgspec.Struct, frozen=True, gc=False, cache_hash=True):
    """Label values of one hook call, named as LiteLLM's labels. Hashable: the aggregator keys on it
    (the hash is computed once per object: the parser hands out one object per distinct label set)."""

    end_user: str | None = None
    hashed_api_key: str | None = None
    api_key_alias: str | None = None
    requested_model: str | None = None
    model_group: str | None = None
    team: str | None = None
    team_alias: str | None = None
    user: str | None = None
    user_email: str | None = None
    org_id: str | None = None
    org_alias: str | None = None
    model: str | None = None
    litellm_model_name: str | None = None
    model_id: str | None = None
    api_base: str | None = None
    api_provider: str | None = None
    service_tier: str | None = None
    route: str | None = None
    client_ip: str | None = None
    user_agent: str | None = None
    status_code: str | None = None
    exception_status: str | None = None
    exception_class: str | None = None


LABEL_NAMES: tuple[str, ...] = Labels.__struct_fields__


def redact_api_base(value: str | None) -> str | None:
    """An api_base as logmetrics shows it: without credentials. LiteLLM's Gemini URLs carry the API
    key in the query (`...:generateContent?key=AIza...`; LiteLLM masked only 5 of its characters
    before 1.74.x, BerriAI/litellm#5433), and a URL may hold `user:password@`. The query becomes
    `?REDACTED` and the user info `REDACTED@`; any other value is returned as it is (the same
    object). LiteLLM's own exporter shows them unchanged: a deliberate difference. `_hotloop.c`
    (py_api_base) applies the same rule to the deployment states it builds: change both together."""
    if value is None or ("?" not in value and "@" not in value):
        return value
    base, query, _ = value.partition("?")
    scheme, sep, rest = base.partition("://")
    if not sep:
        scheme, rest = "", base
    host, slash, path = rest.partition("/")
    if "@" in host:
        host = "REDACTED@" + host.rpartition("@")[2]
    return scheme + sep + host + slash + path + ("?REDACTED" if query else "")


class DeploymentState(msgspec.Struct, frozen=True, gc=False):
    """A `litellm_deployment_state` write: 0 after a success, 1 after a failure (last one wins)."""

    litellm_model_name: str | None
    model_id: str | None
    api_base: str | None
    api_provider: str | None
    value: int


class RequestEvent(msgspec.Struct, frozen=True, gc=False):
    """One LiteLLM request-level event (one hook call).

    `labels` feeds every family of the event's kind; `deployment` (failure events) the
    deployment failure families when LiteLLM resolves their labels differently; `proxy`
    (success events) `litellm_proxy_total_requests_metric`, whose `requested_model` is the
    original model group. Both default to `labels`.
    """

    kind: EventKind
    time: float  # UTC epoch seconds at which the request ended
    labels: Labels
    deployment: Labels | None = None
    proxy: Labels | None = None
    state: DeploymentState | None = None
    stream: bool | None = None
    level: str = "INFO"  # a failed request is ERROR
    # values; None = not observed. Floats are finite and below MAX_VALUE in magnitude.
    spend: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    cached_tokens: int | None = None  # provider-side prompt cache read
    cache_creation_tokens: int | None = None
    audio_input_tokens: int | None = None
    reasoning_tokens: int | None = None
    audio_output_tokens: int | None = None
    # LiteLLM's provider prompt-cache counts (usage's own fields first, then the token details), and
    # the media a call generated; None = not reported or not positive
    provider_cache_read_tokens: int | None = None
    provider_cache_creation_tokens: int | None = None
    images: int | None = None
    video_seconds: float | None = None
    total_latency: float | None = None
    api_latency: float | None = None
    ttft: float | None = None
    queue_time: float | None = None
    overhead_latency: float | None = None
    latency_per_output_token: float | None = None
    cache_hit: bool | None = None  # LiteLLM's own response cache; None = not applicable
    zero_cost_reason: str | None = None
    error_message: str | None = None  # never a label; for `tail --grep`


class LogEvent(msgspec.Struct, frozen=True, gc=False):
    """A LiteLLM/uvicorn log line that is not a request record (json_logs, plain text)."""

    time: float | None
    level: str  # DEBUG, INFO, WARNING, ERROR, CRITICAL
    component: str | None = None
    method: str | None = None  # access lines: "POST"
    route: str | None = None  # access lines: "/v1/chat/completions" (query string dropped)
    status: str | None = None  # access lines: "200"
    call_id: str | None = None  # error lines: litellm_call_id


class Skip(msgspec.Struct, frozen=True, gc=False):
    """A line that was not counted, and why. Never holds the line's content."""

    reason: SkipReason


Event = RequestEvent | LogEvent
ParseResult = RequestEvent | LogEvent | Skip
