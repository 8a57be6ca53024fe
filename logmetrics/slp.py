"""StandardLoggingPayload (+ the callback's facts) -> RequestEvent, with LiteLLM's exporter rules.

Follows LiteLLM 1.109.1's `litellm/integrations/prometheus.py` as documented, line by line, in
../shared/reference/mapping-notes.md. With the facts of a logmetrics request record the result is
exact; from a bare payload it is the closest approximation the payload allows:
- latencies use the payload's `startTime` (routing and queue time missing), LLM API latency and
  TTFT start there too (no API-call start in the payload);
- the `model` label is the payload model minus its `provider/` prefix;
- a failure payload stands for the post-call failure hook too (`proxy` labels), with
  `requested_model` "other" for a model the proxy did not know and the payload's
  `error_information` as exception status and class;
- whether a deployment was selected is guessed from the exception class.

Replay's C loop (`_hotloop.c`, see `hotloop.py`) applies the success rules here to the records it
takes: a change here is a change there too (tests/test_hotloop.py fails until both agree).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import msgspec

from logmetrics.events import MAX_VALUE, DeploymentState, EventKind, Labels, RequestEvent, redact_api_base
from logmetrics.records import USAGE_DECODER, Facts, Metadata, Payload, Time, TokenDetails, Usage

_NO_METADATA = Metadata()
_NO_FACTS = Facts()
# service tiers LiteLLM accepts from the request (service_tier_utils.py)
_KNOWN_TIERS = frozenset({"flex", "priority", "auto", "default", "scale", "standard", "standard_only", "batch"})
# exceptions LiteLLM raises before routing: no deployment was selected for them
_PROXY_LEVEL_ERRORS = frozenset(
    {"ProxyModelNotFoundError", "ProxyMissingRequiredParamError", "MockTestingParamsDisabledError",
     "MalformedRequestFieldError", "ProxyException", "BadRequestError"}
)
_ERROR_MESSAGE_CHARS = 300


class InvalidDuration(ValueError):
    """A duration that is NaN, infinite, negative or beyond MAX_VALUE: the record is skipped."""


class InvalidField(ValueError):
    """A value no request has (a cost beyond MAX_VALUE): the record is skipped."""


class InvalidTime(ValueError):
    """A time that is not one (not ISO 8601 nor a number) or not between 1970 and the year 9999: the
    record is skipped."""


MAX_TIME = 253402214400.0
"""9999-12-31T00:00:00Z: record times are in [0, MAX_TIME), moments every time zone can show as a
date (a record stamped in milliseconds where seconds belong would be year 58000, beyond `datetime`)."""


def checked_time(value: float) -> float:
    if not 0.0 <= value < MAX_TIME:  # NaN too
        raise InvalidTime(value)
    return value


def wall(value: Time) -> datetime | None:
    """A LiteLLM time as the naive wall-clock datetime LiteLLM subtracts (UTC for epoch floats:
    differences are what matter, and UTC keeps them free of the host's DST)."""
    if value is None:
        return None
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value)
        return parsed.replace(tzinfo=None) if parsed.tzinfo else parsed
    return datetime.fromtimestamp(value, timezone.utc).replace(tzinfo=None)


def seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


def checked(value: float | None) -> float | None:
    if value is not None and not 0 <= value < MAX_VALUE:
        raise InvalidDuration(value)
    return value


def strip_provider(model: str | None, provider: str | None) -> str | None:
    if model and provider and model.startswith(provider + "/"):
        return model[len(provider) + 1 :]
    return model


def exception_class_label(error_class: str | None, llm_provider: str | None) -> str | None:
    """LiteLLM's `Provider.ClassName` form (P:3813): provider with only its first letter upper-cased."""
    if not error_class:
        return None
    if llm_provider:
        return f"{llm_provider[:1].upper()}{llm_provider[1:]}.{error_class}"
    return error_class


def _positive(value: int | float | None) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None
    return int(value) if float(value).is_integer() else value  # type: ignore[return-value]


def _service_tier(p: Payload) -> str | None:
    usage = p.metadata.usage_object if p.metadata else None
    if b'"service_tier"' in bytes(p.response):
        try:
            tier = USAGE_DECODER.decode(p.response).service_tier
        except (msgspec.DecodeError, UnicodeDecodeError):
            tier = None
        if tier:
            return tier
    if usage is not None and usage.service_tier:
        return usage.service_tier
    if b'"service_tier"' in bytes(p.model_parameters):
        try:
            tier = USAGE_DECODER.decode(p.model_parameters).service_tier
        except (msgspec.DecodeError, UnicodeDecodeError):
            return None
        return tier if tier in _KNOWN_TIERS else None
    return None


# label values -> a success's Labels (status_code "200"): one object per distinct label set, so
# the aggregator hashes each once (Labels caches its hash) and compares by identity. Their values
# are interned: 10k label sets share a few hundred distinct strings (memory stays flat).
_LABELS: dict[tuple[str | None, ...], Labels] = {}
_MAX_CACHED_LABELS = 2_048


# distinct label values (and None) -> one object each: `_STRINGS.setdefault(v, v)` interns in C
_STRINGS: dict[str | None, str | None] = {}
_MAX_STRINGS = 65_536


def drop_caches() -> None:
    _LABELS.clear()
    _STRINGS.clear()


def _labels(p: Payload, md: Metadata, f: Facts, end_user_label: bool, model: str | None) -> Labels:
    """The hook call's label values, with status_code "200" (a success's)."""
    end_user = f.end_user if f is not _NO_FACTS else (p.end_user if end_user_label else None)
    key = (
        end_user, md.user_api_key_hash, md.user_api_key_alias, p.model_group, md.user_api_key_team_id,
        md.user_api_key_team_alias, md.user_api_key_user_id, md.user_api_key_user_email, md.user_api_key_org_id,
        md.user_api_key_org_alias, model, p.model_id, p.api_base, p.custom_llm_provider,
        f.service_tier if f is not _NO_FACTS else _service_tier(p),
        md.user_api_key_request_route, md.requester_ip_address, md.user_agent,
    )
    return labels_200(key)


# where `_labels` puts these in the 18 values (the hot loop's failure slots read them there)
VALUE_GROUP, VALUE_MODEL_ID, VALUE_PROVIDER = 3, 11, 13


def labels_200(key: tuple[str | None, ...]) -> Labels:
    """A success's Labels from the 18 label values `_labels` gathers (in its order), cached."""
    cached = _LABELS.get(key)
    if cached is not None:
        return cached
    if len(_STRINGS) >= _MAX_STRINGS:
        _STRINGS.clear()
    interned = tuple(map(_STRINGS.setdefault, key, key))
    (end_user, key_hash, key_alias, group, team, team_alias, user, email, org, org_alias, model, model_id,
     api_base, provider, tier, route, client_ip, user_agent) = interned
    cached = Labels(  # positional, in Labels' field order: a third faster than by keyword
        end_user, key_hash, key_alias, group, group, team, team_alias, user, email, org, org_alias, model,
        model, model_id, redact_api_base(api_base), provider, tier, route, client_ip, user_agent, "200",
    )
    if len(_LABELS) >= _MAX_CACHED_LABELS:
        _LABELS.clear()
    _LABELS[interned] = cached
    return cached


_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)


def micros(value: Time) -> int | None:
    """`wall(value)` as whole microseconds since 1970-01-01 (naive): differences of these, divided
    by 10**6, are the timedelta.total_seconds() LiteLLM computes, without making datetimes. An
    epoch float is rounded to the microsecond as datetime.fromtimestamp() rounds it (half to even
    on the fraction); anything else (ISO text, out-of-range or NaN numbers) goes through `wall()`,
    and raises as it does."""
    if value is None:
        return None
    if isinstance(value, float) and 0.0 <= value < 1e11:
        fraction, whole = math.modf(value)
        return int(whole) * 1_000_000 + round(fraction * 1e6)
    moment = wall(value)
    assert moment is not None
    return (moment - _EPOCH) // _MICROSECOND


def _seconds(start: int | None, end: int | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start) / 1_000_000


def event_from_payload(
    p: Payload, facts: Facts | None, time: float | None, *, end_user_label: bool = False
) -> RequestEvent | None:
    """The event LiteLLM's exporter records for this payload, or None when it records nothing
    (an unauthenticated request's event). Raises InvalidDuration, ValueError on bad times."""
    f = facts or _NO_FACTS
    if f.skip_metrics:
        return None
    md = p.metadata or _NO_METADATA
    model = f.model if f.model is not None else strip_provider(p.model, p.custom_llm_provider)
    labels_200 = _labels(p, md, f, end_user_label, model)
    # times as whole microseconds (see micros()); `a if a is not None else b` is LiteLLM's `a or b`
    # on datetimes, which are never false. A bare payload has only its own times.
    hook_start = None if facts is None else micros(f.hook_start_time)
    if hook_start is None:
        hook_start = micros(p.startTime)
    hook_end = None if facts is None else micros(f.hook_end_time)
    if hook_end is None:
        hook_end = micros(p.endTime)
    end_time = checked_time(time if time is not None else (p.endTime if p.endTime is not None else 0.0))
    if p.status == "failure":
        return _failure(p, f, md, labels_200, end_time, f.deployment_labels is None)

    start = None if facts is None else micros(f.start_time)
    if start is None:
        start = hook_start
    end = None if facts is None else micros(f.end_time)
    if end is None:
        end = hook_end
    api_start = micros(f.api_call_start_time) if facts else (hook_start if p.cache_hit is not True else None)
    completion_start = micros(f.completion_start_time) if facts else micros(p.completionStartTime)
    stream = f.stream if facts else p.stream
    queue = f.queue_time_seconds if facts else None
    queue = queue if queue is not None and queue >= 0 else None
    total = _seconds(start, end)
    if total is not None and queue is not None:
        total += queue

    completion_tokens = p.completion_tokens
    per_token = None
    if completion_tokens is not None and completion_tokens > 0 and hook_start is not None and hook_end is not None:
        # LiteLLM: (time to first token, unless zero or not streamed, else the whole call) / tokens
        ttft_us = completion_start - hook_start if stream is True and completion_start is not None else None
        per_token = ((ttft_us or (hook_end - hook_start)) / 1_000_000) / completion_tokens

    usage = md.usage_object
    prompt_details = usage.prompt_tokens_details if usage else None
    completion_details = usage.completion_tokens_details if usage else None
    cache_write = None
    if prompt_details is not None:
        for value in (prompt_details.cache_write_tokens, prompt_details.cache_creation_tokens):
            if isinstance(value, int) and not isinstance(value, bool):
                cache_write = value
                break
    provider_read = provider_creation = images = video_seconds = None
    if usage is not None:
        provider_read, provider_creation = _provider_cache_tokens(usage, prompt_details, cache_write)
        images = _positive(usage.output_image_count)
        video_seconds = _positive(usage.duration_seconds)
        if video_seconds is not None and not video_seconds < MAX_VALUE:
            raise InvalidField(video_seconds)
    overhead_ms = p.hidden_params.litellm_overhead_time_ms if p.hidden_params else None
    proxy_200 = labels_200
    if f.original_model_group and f.original_model_group != p.model_group:
        proxy_200 = msgspec.structs.replace(labels_200, requested_model=f.original_model_group)
    if f.deployment_state is not None:  # LiteLLM's own label values, recorded live
        state = _recorded_state(f.deployment_state, 0)
    else:  # records before the fact: the payload's provider (LiteLLM's is litellm_params')
        state = DeploymentState(
            model or "", f.model_info_id or p.model_id or "", labels_200.api_base or "", p.custom_llm_provider or "", 0
        )
    spend = float(p.response_cost or 0.0)
    if not -MAX_VALUE < spend < MAX_VALUE:
        raise InvalidField(spend)
    return RequestEvent(
        kind=EventKind.SUCCESS,
        time=end_time,
        labels=labels_200,
        proxy=proxy_200,
        state=state,
        stream=stream,
        spend=spend,
        prompt_tokens=p.prompt_tokens or 0,
        completion_tokens=completion_tokens or 0,
        total_tokens=p.total_tokens or 0,
        cached_tokens=_positive(prompt_details.cached_tokens) if prompt_details else None,
        cache_creation_tokens=_positive(cache_write),
        audio_input_tokens=_positive(prompt_details.audio_tokens) if prompt_details else None,
        reasoning_tokens=_positive(completion_details.reasoning_tokens) if completion_details else None,
        audio_output_tokens=_positive(completion_details.audio_tokens) if completion_details else None,
        provider_cache_read_tokens=provider_read,
        provider_cache_creation_tokens=provider_creation,
        images=images,
        video_seconds=video_seconds,
        total_latency=checked(total),
        api_latency=checked(_seconds(api_start, end)),
        ttft=checked(_seconds(api_start, completion_start)) if stream is True else None,
        queue_time=checked(queue),
        overhead_latency=checked(overhead_ms / 1000) if overhead_ms else None,
        latency_per_output_token=checked(per_token),
        cache_hit=p.cache_hit,
        zero_cost_reason=p.zero_cost_diagnostic.reason if p.zero_cost_diagnostic else None,
    )


def _provider_cache_tokens(
    usage: Usage, prompt_details: TokenDetails | None, cache_write: int | None
) -> tuple[int | None, int | None]:
    """LiteLLM's `_resolve_provider_cache_tokens` (P:2122-2144), positive or None: usage's own
    `cache_read_input_tokens` / `cache_creation_input_tokens` when they are integers; only when one is
    absent (or null), the token details' `cached_tokens` / cache write tokens (`cache_write`) instead."""
    read = usage.cache_read_input_tokens
    if read is None:
        read = prompt_details.cached_tokens if prompt_details is not None else None
    write = usage.cache_creation_input_tokens
    if write is None:
        write = cache_write
    return (read if isinstance(read, int) and read > 0 else None,
            write if isinstance(write, int) and write > 0 else None)


def _failure(p: Payload, f: Facts, md: Metadata, labels: Labels, time: float, payload_only: bool) -> RequestEvent:
    info = p.error_information
    status = f.exception_status
    if status is None and info is not None:
        status = error_status(info.error_code)
    error_class = info.error_class if info else None
    exc_class = f.exception_class or exception_class_label(error_class, info.llm_provider if info else None)
    labels, deployment, proxy, state = failure_labels(
        labels, p.model_id, p.model_group, p.custom_llm_provider, status, exc_class, error_class, payload_only
    )
    if f.deployment_labels is not None:
        deployment = Labels(**{k: v for k, v in f.deployment_labels.items() if k in Labels.__struct_fields__})
        deployment = msgspec.structs.replace(deployment, exception_status=status, exception_class=exc_class,
                                             api_base=redact_api_base(deployment.api_base))
    if f.deployment_state is not None:
        state = _recorded_state(f.deployment_state, 1)
    message = f.error_message if f.error_message is not None else p.error_str
    return RequestEvent(
        kind=EventKind.FAILURE,
        time=time,
        labels=labels,
        deployment=deployment,
        proxy=proxy,
        state=state,
        stream=f.stream if f is not _NO_FACTS else p.stream,
        level="ERROR",
        zero_cost_reason=p.zero_cost_diagnostic.reason if p.zero_cost_diagnostic else None,
        error_message=message[:_ERROR_MESSAGE_CHARS] if message else None,
    )


def error_status(code: str | int | None) -> str | None:
    """A payload's `error_information.error_code` as the exception status label."""
    return None if code in (None, "") else str(code)


def failure_labels(
    labels: Labels, model_id: str | None, model_group: str | None, provider: str | None, status: str | None,
    exc_class: str | None, error_class: str | None, payload_only: bool,
) -> tuple[Labels, Labels | None, Labels | None, DeploymentState | None]:
    """A failure's label sets from its success label values (`_labels`) and error: its own, and,
    from a payload without the callback's deployment labels (`payload_only`), the deployment's
    (guessed), the post-call failure hook's and the deployment state write (when a deployment was
    selected); else None for those three. The C hot loop takes bare failure payloads through this
    too (hotloop.py)."""
    labels = msgspec.structs.replace(
        labels, model_id=model_id if model_id is not None else "", status_code=None, exception_status=status,
        exception_class=exc_class,
    )
    if not payload_only:
        return labels, None, None, None
    deployment = _guess_deployment(model_id, model_group, provider, labels, error_class)
    state = None
    if deployment.litellm_model_name:
        state = DeploymentState(labels.model or "", model_id, labels.api_base, provider or "", 1)
    # a failure payload stands for the post-call failure hook as well
    requested = model_group if model_group else ("other" if model_group == "" else None)
    proxy = msgspec.structs.replace(
        labels, requested_model=requested, status_code=status, api_provider=provider, model_id=model_id,
    )
    return labels, deployment, proxy, state


def _recorded_state(s: dict[str, str | None], value: int) -> DeploymentState:
    """`litellm_deployment_state`'s labels as the callback recorded them from LiteLLM's call."""
    return DeploymentState(s.get("litellm_model_name"), s.get("model_id"), redact_api_base(s.get("api_base")),
                           s.get("api_provider"), value)


def _guess_deployment(
    model_id: str | None, model_group: str | None, provider: str | None, labels: Labels, error_class: str | None
) -> Labels:
    """Deployment-failure labels from a bare payload (P:3227-3375, without the live facts)."""
    common = {
        "hashed_api_key": labels.hashed_api_key, "api_key_alias": labels.api_key_alias,
        "team": labels.team, "team_alias": labels.team_alias, "client_ip": labels.client_ip,
        "user_agent": labels.user_agent, "exception_status": labels.exception_status,
        "exception_class": labels.exception_class,
    }
    if model_id and error_class not in _PROXY_LEVEL_ERRORS:
        return Labels(
            litellm_model_name=labels.model, model_id=model_id, api_base=labels.api_base,
            api_provider=provider, requested_model=model_group or labels.model,
            model_group=model_group, **common,
        )
    requested = model_group if model_group else "other"
    return Labels(
        litellm_model_name="", model_id="", api_base="", api_provider="", requested_model=requested,
        model_group=model_group or "", **common,
    )


def event_from_hook(labels: dict[str, str | None], time: float, message: str | None) -> RequestEvent:
    """A post-call failure hook record: its label values are LiteLLM's own (recorded live)."""
    known = {k: v for k, v in labels.items() if k in Labels.__struct_fields__}
    if "api_base" in known:
        known["api_base"] = redact_api_base(known["api_base"])
    known.setdefault("status_code", known.get("exception_status"))
    return RequestEvent(
        kind=EventKind.PROXY_FAILURE,
        time=checked_time(time),
        labels=Labels(**known),
        level="ERROR",
        error_message=message[:_ERROR_MESSAGE_CHARS] if message else None,
    )
