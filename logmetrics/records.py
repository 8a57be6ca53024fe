"""Wire schema: the JSON shapes logmetrics reads, as msgspec structs.

One struct, `Line`, holds the top-level fields of every shape (StandardLoggingPayload, the
logmetrics request record, the compact request record, a json_logs line, a journald envelope),
so a line is decoded once, straight into typed fields; unknown fields are skipped without being
parsed, which is what makes payload-sized lines cheap (see bench/). `parse.py` then tells the
shape from which fields are present. Every field is optional: LiteLLM's schema drifts between
releases. A field of the wrong type fails the fast decode; `parse.py` then retries generically to
name the skip reason.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

Time = str | float | None  # ISO text or epoch number
# A token count: a non-negative integer that a float still holds exactly (bigger is not a count:
# the record is skipped as invalid_field instead of overflowing the exposition).
Count = Annotated[int, msgspec.Meta(ge=0, le=2**53)]


class TokenDetails(msgspec.Struct, gc=False):
    cached_tokens: Count | float | None = None
    cache_write_tokens: Count | float | None = None
    cache_creation_tokens: Count | float | None = None
    audio_tokens: Count | float | None = None
    reasoning_tokens: Count | float | None = None


class Usage(msgspec.Struct, gc=False):
    prompt_tokens_details: TokenDetails | None = None
    completion_tokens_details: TokenDetails | None = None
    service_tier: str | None = None
    # Anthropic-style provider cache counts (LiteLLM's Usage keeps them beside the details)
    cache_read_input_tokens: Count | float | None = None
    cache_creation_input_tokens: Count | float | None = None
    # media: LiteLLM adds output_image_count to an image generation's usage, video providers report
    # duration_seconds
    output_image_count: Count | float | None = None
    duration_seconds: float | None = None


class Metadata(msgspec.Struct, gc=False):
    user_api_key_hash: str | None = None
    user_api_key_alias: str | None = None
    user_api_key_team_id: str | None = None
    user_api_key_team_alias: str | None = None
    user_api_key_user_id: str | None = None
    user_api_key_user_email: str | None = None
    user_api_key_org_id: str | None = None
    user_api_key_org_alias: str | None = None
    user_api_key_end_user_id: str | None = None
    user_api_key_request_route: str | None = None
    requester_ip_address: str | None = None
    user_agent: str | None = None
    usage_object: Usage | None = None


class HiddenParams(msgspec.Struct, gc=False):
    litellm_overhead_time_ms: float | None = None


class ErrorInformation(msgspec.Struct, gc=False):
    error_code: str | int | None = None
    error_class: str | None = None
    llm_provider: str | None = None


class ZeroCostDiagnostic(msgspec.Struct, gc=False):
    reason: str | None = None


class Payload(msgspec.Struct, gc=False):
    """The fields of LiteLLM's StandardLoggingPayload that metrics and views use."""

    status: str | None = None
    call_type: str | None = None
    model: str | None = None
    model_group: str | None = None
    model_id: str | None = None
    custom_llm_provider: str | None = None
    api_base: str | None = None
    startTime: float | None = None
    endTime: float | None = None
    completionStartTime: float | None = None
    stream: bool | None = None
    cache_hit: bool | None = None
    prompt_tokens: Count | None = None
    completion_tokens: Count | None = None
    total_tokens: Count | None = None
    response_cost: float | None = None
    end_user: str | None = None
    metadata: Metadata | None = None
    hidden_params: HiddenParams | None = None
    error_information: ErrorInformation | None = None
    error_str: str | None = None
    zero_cost_diagnostic: ZeroCostDiagnostic | None = None
    # Both may hold message content: kept raw (never parsed unless they name a service tier).
    response: msgspec.Raw = msgspec.Raw()
    model_parameters: msgspec.Raw = msgspec.Raw()


class Facts(msgspec.Struct, gc=False):
    """The facts logmetrics' LiteLLM callback records beside the payload (docs/record-format.md)."""

    model: str | None = None
    stream: bool | None = None
    start_time: Time = None
    end_time: Time = None
    api_call_start_time: Time = None
    completion_start_time: Time = None
    hook_start_time: Time = None
    hook_end_time: Time = None
    queue_time_seconds: float | None = None
    custom_llm_provider: str | None = None
    end_user: str | None = None
    original_model_group: str | None = None
    model_info_id: str | None = None
    service_tier: str | None = None
    skip_metrics: bool | None = None
    exception_class: str | None = None
    exception_status: str | None = None
    deployment_labels: dict[str, str | None] | None = None
    deployment_state: dict[str, str | None] | None = None
    error_message: str | None = None


class CompactTokens(msgspec.Struct, gc=False):
    prompt: Count | None = None
    completion: Count | None = None
    total: Count | None = None


class Line(Payload, gc=False):
    """Top-level fields of every shape logmetrics recognises. A StandardLoggingPayload at top
    level is decoded straight into the inherited `Payload` fields (one decode per line)."""

    # logmetrics request record
    logmetrics_record: str | None = None
    version: int | None = None
    hook: str | None = None
    time: float | None = None
    payload: Payload | None = None
    facts: Facts | None = None
    labels: dict[str, str | None] | None = None
    # compact request record (and `model` of the payload)
    provider: str | None = None
    latency_ms: float | None = None
    tokens: CompactTokens | None = None
    error: str | None = None
    # json_logs line (and compact): level, timestamp, message
    level: str | None = None
    timestamp: str | float | None = None
    message: str | None = None
    component: str | None = None
    litellm_call_id: str | None = None
    # journald envelope (journalctl -o json): every value a string; MESSAGE may be byte ints
    MESSAGE: str | list[int] | None = None
    realtime_timestamp: str | None = msgspec.field(default=None, name="__REALTIME_TIMESTAMP")
    PRIORITY: str | None = None


LINE_DECODER = msgspec.json.Decoder(Line)
USAGE_DECODER = msgspec.json.Decoder(Usage)
