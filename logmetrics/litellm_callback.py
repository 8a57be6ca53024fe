"""A LiteLLM proxy callback that writes logmetrics request records (docs/record-format.md, version 1).

Enable it in the proxy's config::

    litellm_settings:
      callbacks: ["logmetrics.litellm_callback.proxy_handler_instance"]

and it appends one JSON line per event LiteLLM's own Prometheus exporter counts (a success, a
failure of a deployment call, an error response to the client) to the file named by
`LOGMETRICS_REQUEST_LOG` (default `$XDG_STATE_HOME/logmetrics/requests.log`, i.e.
`~/.local/state/logmetrics/requests.log`), or to standard output when it is `-`.

This module runs inside LiteLLM's Python: it imports only the standard library and litellm, and
every use of a LiteLLM internal is guarded so that another LiteLLM version degrades to fewer or
approximate facts, never to an exception. Nothing it does raises into LiteLLM: a failed write is
counted (`proxy_handler_instance.write_errors`) and reported through `logging` once per outage.

Privacy: prompts, completions, request/response headers, tracebacks, LiteLLM's pricing entry
(`model_map_information`) and raw keys are left out. `LOGMETRICS_LOG_CONTENT=1` keeps the
messages and the response in the payload (nothing else changes).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

try:  # pragma: no cover - exercised inside LiteLLM's environment
    from litellm.integrations.custom_logger import CustomLogger as _Base  # type: ignore[import-not-found,unused-ignore]
except Exception:  # noqa: BLE001 - without litellm the module still imports (tests, docs)

    class _Base:  # type: ignore[no-redef]
        """Stand-in base class when litellm is not importable."""


__all__ = ["LogmetricsLogger", "proxy_handler_instance", "RecordWriter", "default_log_path"]

RECORD_VERSION = 1
ENV_PATH = "LOGMETRICS_REQUEST_LOG"
ENV_CONTENT = "LOGMETRICS_LOG_CONTENT"
ERROR_MESSAGE_MAX = 300
REOPEN_CHECK_INTERVAL = 1.0  # seconds between inode checks of the log path

_log = logging.getLogger("logmetrics.litellm_callback")

# Payload keys never written (privacy or size); `messages`/`response` come back with LOG_CONTENT.
_DROP_TOP = frozenset(
    {
        "model_map_information",
        "guardrail_information",
        "vector_store_request_metadata",
        "standard_built_in_tools_params",
        "classifier_input",
        "originating_request_masked",
        "autorouter_savings_estimate",
    }
)
_CONTENT_TOP = frozenset({"messages", "response", "error_str"})
_DROP_METADATA = frozenset(
    {
        "requester_metadata",
        "requester_custom_headers",
        "routing_decision",
        "user_api_key_auth_metadata",
        "spend_logs_metadata",
        "prompt_management_metadata",
        "mcp_tool_call_metadata",
        "kubernetes_pod_routing",
    }
)
_DROP_HIDDEN = frozenset({"additional_headers"})
_DROP_ERROR_INFO = frozenset({"traceback"})
_KEEP_MODEL_PARAMETERS = ("service_tier", "stream")
# Service tiers LiteLLM accepts as a *requested* tier label (service_tier_utils in 1.109.1).
_KNOWN_TIERS = frozenset({"auto", "default", "flex", "priority", "scale", "standard", "standard_only", "batch"})


def default_log_path() -> str:
    """`$XDG_STATE_HOME/logmetrics/requests.log`, `~/.local/state/logmetrics/requests.log` without it."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "logmetrics", "requests.log")


class RecordWriter:
    """Appends whole lines with one `os.write` each on an O_APPEND descriptor.

    Reopens the path when it names another file than the open descriptor (logrotate's
    rename-and-create, or a deleted file), checked at most once per `check_interval` seconds.
    Never raises: errors are counted; the first one of an outage is logged, and so is the end of
    the outage. A write that failed part way (disk full) leaves the file mid-line: the next line
    written after any error starts with a newline, so that it does not join the torn one.
    """

    def __init__(self, path: str, check_interval: float = REOPEN_CHECK_INTERVAL) -> None:
        self.path = path
        self.check_interval = check_interval
        self.write_errors = 0
        self.lines_written = 0
        self._fd: int | None = None
        self._ino: tuple[int, int] | None = None
        self._next_check = 0.0
        self._reported = False
        self._lost = 0  # lines not written since the last success
        self._lock = threading.Lock()

    def _open(self) -> None:
        if self.path == "-":
            self._fd, self._ino = sys.stdout.fileno(), None
            return
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        # O_NONBLOCK: a FIFO at the path without a reader fails (ENXIO) instead of blocking the proxy
        nonblock = getattr(os, "O_NONBLOCK", 0)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | nonblock | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(self.path, flags, 0o600)
        if nonblock:
            os.set_blocking(fd, True)  # then whole writes, as on standard output
        st = os.fstat(fd)
        self._fd, self._ino = fd, (st.st_dev, st.st_ino)

    def _close(self) -> None:
        fd, self._fd, self._ino = self._fd, None, None
        if fd is not None and self.path != "-":
            try:
                os.close(fd)
            except OSError:
                pass

    def _maybe_reopen(self) -> None:
        now = time.monotonic()
        if self.path == "-" or now < self._next_check:
            return
        self._next_check = now + self.check_interval
        try:
            st = os.stat(self.path)
            same = self._ino == (st.st_dev, st.st_ino)
        except OSError:
            same = False
        if not same:
            self._close()

    def write_line(self, line: bytes) -> bool:
        """Write one line (must end in b"\\n"); True on success."""
        with self._lock:
            try:
                if self._fd is not None:
                    self._maybe_reopen()
                if self._fd is None:
                    self._open()
                    self._next_check = time.monotonic() + self.check_interval
                assert self._fd is not None
                if self._lost:  # a failed write may have left part of a line: end it first
                    line = b"\n" + line
                rest = memoryview(line)
                while rest:  # one write, unless it is short (disk full): then finish the line
                    rest = rest[os.write(self._fd, rest) :]
            except Exception as e:  # noqa: BLE001 - never raise into LiteLLM
                self.write_errors += 1
                self._lost += 1
                self._close()
                if not self._reported:
                    self._reported = True
                    _log.error(
                        "logmetrics: cannot write request records to %s: %s: %s "
                        "(further errors are counted, not logged)",
                        self.path,
                        type(e).__name__,
                        e,
                    )
                return False
            self.lines_written += 1
            if self._lost:
                _log.warning("logmetrics: writing request records to %s again (%d records lost)", self.path, self._lost)
                self._lost, self._reported = 0, False
            return True

    def close(self) -> None:
        with self._lock:
            self._close()


# ---------------------------------------------------------------------------------------------
# Guarded access to LiteLLM internals (present in 1.109.1; each falls back when absent).


_imported: dict[tuple[str, str], Any] = {}


def _import(module: str, name: str) -> Any:
    """`module.name`, or None when this LiteLLM version lacks it (looked up once)."""
    key = (module, name)
    if key not in _imported:
        try:
            _imported[key] = getattr(__import__(module, fromlist=[name]), name)
        except Exception:  # noqa: BLE001
            _imported[key] = None
    return _imported[key]


_prometheus_shim: Any = None
_prometheus_shim_loaded = False


def _shim() -> Any:
    """A PrometheusLogger object made without __init__ (no metrics registered), for its pure helpers."""
    global _prometheus_shim, _prometheus_shim_loaded
    if not _prometheus_shim_loaded:
        _prometheus_shim_loaded = True
        cls = _import("litellm.integrations.prometheus", "PrometheusLogger")
        if cls is not None:
            try:
                _prometheus_shim = cls.__new__(cls)
            except Exception:  # noqa: BLE001
                _prometheus_shim = None
    return _prometheus_shim


def _call(fn: Callable[..., Any] | None, *args: Any, default: Any = None, **kwargs: Any) -> Any:
    if fn is None:
        return default
    try:
        return fn(*args, **kwargs)
    except Exception:  # noqa: BLE001
        return default


def _helper(name: str) -> Callable[..., Any] | None:
    s = _shim()
    return getattr(s, name, None) if s is not None else None


def _d(value: object) -> Mapping[str, Any]:
    """A mapping view of a dict or a pydantic-like object; {} otherwise (never raises)."""
    if isinstance(value, Mapping):
        return value
    if value is None:
        return {}
    try:
        dump = getattr(value, "model_dump", None) or getattr(value, "dict", None)
        if callable(dump):
            out = dump()
            if isinstance(out, Mapping):
                return out
    except Exception:  # noqa: BLE001
        pass
    return {}


def _jsonable(value: object, depth: int = 0) -> Any:
    """JSON-safe copy: datetimes as isoformat, objects via model_dump, anything else as str."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if depth > 32:
        return None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v, depth + 1) for v in value]
    dumped = _d(value)
    if dumped:
        return _jsonable(dumped, depth + 1)
    try:
        return str(value)
    except Exception:  # noqa: BLE001
        return "<unprintable>"


def _time(value: object) -> str | float | None:
    """A LiteLLM time value as recorded: datetime -> isoformat (µs), number -> float."""
    if isinstance(value, _dt.datetime):
        return value.isoformat(timespec="microseconds")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _litellm_metadata(kwargs: Mapping[str, Any]) -> Mapping[str, Any]:
    fn = _import("litellm.litellm_core_utils.core_helpers", "get_litellm_metadata_from_kwargs")
    got = _call(fn, kwargs)
    if isinstance(got, Mapping):
        return got
    lp = _d(kwargs.get("litellm_params"))
    return _d(lp.get("litellm_metadata")) or _d(lp.get("metadata"))


def _end_user(litellm_params: Mapping[str, Any]) -> str | None:
    """End user after LiteLLM's prometheus gate (`enable_end_user_cost_tracking_prometheus_only`)."""
    fn = _import("litellm.utils", "get_end_user_id_for_cost_tracking")
    sentinel = object()
    got = _call(fn, dict(litellm_params), service_type="prometheus", default=sentinel)
    if got is not sentinel:
        return got if isinstance(got, str) or got is None else str(got)
    try:
        import litellm  # type: ignore[import-not-found,unused-ignore]

        if getattr(litellm, "disable_end_user_cost_tracking", False):
            return None
        if getattr(litellm, "enable_end_user_cost_tracking_prometheus_only", None) is not True:
            return None
    except Exception:  # noqa: BLE001
        return None
    md = _d(litellm_params.get("metadata"))
    value = litellm_params.get("user_api_key_end_user_id") or md.get("user_api_key_end_user_id")
    return None if value is None else str(value)


def _gate_end_user(value: object) -> str | None:
    """The hook's end_user label: LiteLLM passes the key's end_user_id through the same gate."""
    if value is None:
        return None
    return _end_user({"user_api_key_end_user_id": value})


def _service_tier(slp: Mapping[str, Any]) -> str | None:
    fn = _import("litellm.litellm_core_utils.service_tier_utils", "get_service_tier_from_standard_logging_payload")
    sentinel = object()
    got = _call(fn, slp, default=sentinel)
    if got is not sentinel:
        return None if got is None else str(got)
    served = _d(slp.get("response")).get("service_tier") or _d(_d(slp.get("metadata")).get("usage_object")).get(
        "service_tier"
    )
    if isinstance(served, str) and served:
        return served
    requested = _d(slp.get("model_parameters")).get("service_tier")
    return requested if isinstance(requested, str) and requested in _KNOWN_TIERS else None


def _skip_metrics(kwargs: Mapping[str, Any], slp: Mapping[str, Any]) -> bool | None:
    fn = _helper("_should_skip_metrics_for_invalid_key")
    got = _call(fn, kwargs=dict(kwargs), standard_logging_payload=slp)
    return got if isinstance(got, bool) else None


def exception_class_label(exc: BaseException) -> str:
    """LiteLLM's `exception_class` label: legacy pin, BudgetExceededError, `Provider.Class`, `Class`."""
    s = _shim()
    fn = getattr(type(s), "_get_exception_class_name", None) if s is not None else None
    got = _call(fn, exc)
    if isinstance(got, str):
        return got
    pinned = getattr(exc, "prometheus_exception_class_name", None)
    if isinstance(pinned, str) and pinned:
        return pinned
    if type(exc).__name__ == "BudgetExceededError":
        return "BudgetExceededError"
    provider = getattr(exc, "llm_provider", None) or ""
    prefix = provider[0].upper() + provider[1:] + "." if isinstance(provider, str) and provider else ""
    return prefix + type(exc).__name__


def _status_of_exception(exc: BaseException) -> str | None:
    """The hook's status: `status_code or code`, int-able, else None (LiteLLM's `_extract_status_code`)."""
    value = getattr(exc, "status_code", None) or getattr(exc, "code", None)
    if value is None:
        return None
    try:
        return str(int(value))
    except (TypeError, ValueError):
        return None


def _deployment_exception_status(exc: BaseException | None) -> str | None:
    """Deployment failure `exception_status`: `str(status_code)`, then `str(code)` if that is "None"."""
    if exc is None:
        return None
    status = str(getattr(exc, "status_code", None))
    if status == "None" or not status:
        code = getattr(exc, "code", None)
        if code is not None:
            status = str(code)
    return status


def bounded_requested_model(value: object, router_originated: bool = False) -> str | None:
    """LiteLLM's `_bounded_requested_model_label`: names the live router knows pass, others -> "other"."""
    fn = _import("litellm.integrations.prometheus", "_bounded_requested_model_label")
    sentinel = object()
    got = _call(fn, value, router_originated=router_originated, default=sentinel)
    if got is not sentinel:
        return got if got is None or isinstance(got, str) else str(got)
    # Older LiteLLM has no bounding: the value passes as it is.
    if value is None or isinstance(value, str):
        return value
    return str(value)


def _infer_provider(model: object) -> str | None:
    if not isinstance(model, str) or not model:
        return None
    fn = _import("litellm", "get_llm_provider")
    got = _call(fn, model=model)
    if isinstance(got, (tuple, list)) and len(got) > 1 and isinstance(got[1], str) and got[1]:
        return got[1]
    return None


def _hook_api_provider(request_data: Mapping[str, Any], exc: BaseException) -> str | None:
    fn = _helper("_extract_api_provider_from_request_data")
    sentinel = object()
    got = _call(fn, dict(request_data), default=sentinel)
    if got is sentinel:
        lp = _d(request_data.get("litellm_params"))
        got = (
            lp.get("custom_llm_provider")
            or _d(request_data.get("standard_logging_object")).get("custom_llm_provider")
            or _infer_provider(lp.get("model") or request_data.get("model"))
        )
    if got:
        return str(got)
    fn2 = _helper("_extract_api_provider_from_exception")
    got2 = _call(fn2, exc, default=sentinel)
    if got2 is sentinel:
        got2 = None
        if type(exc).__name__ == "RateLimitError":
            p = getattr(exc, "llm_provider", None)
            got2 = p if p and p != "litellm_proxy" else None
    return str(got2) if got2 else None


def _deployment_api_provider(kwargs: Mapping[str, Any]) -> str:
    fn = _helper("_extract_deployment_api_provider")
    got = _call(fn, kwargs)
    if isinstance(got, str):
        return got
    lp = _d(kwargs.get("litellm_params"))
    p = lp.get("custom_llm_provider") or _d(kwargs.get("standard_logging_object")).get("custom_llm_provider")
    return p if isinstance(p, str) else ""


def _deployment_identity(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    fn = _helper("_extract_deployment_failure_label_values")
    got = _call(fn, dict(kwargs))
    if isinstance(got, Mapping):
        return dict(got)
    md = _d(_d(kwargs.get("standard_logging_object")).get("metadata"))
    lpm = _d(_d(kwargs.get("litellm_params")).get("metadata"))

    def first(key: str) -> Any:
        v = md.get(key)
        return v if v is not None else lpm.get(key)

    return {
        "api_key_alias": first("user_api_key_alias"),
        "user_email": first("user_api_key_user_email"),
        "team": first("user_api_key_team_id"),
        "team_alias": first("user_api_key_team_alias"),
        "hashed_api_key": first("user_api_key_hash"),
        "client_ip": md.get("requester_ip_address") or lpm.get("requester_ip_address"),
        "user_agent": md.get("user_agent") or lpm.get("user_agent"),
    }


def _deployment_failure_facts(kwargs: Mapping[str, Any], slp: Mapping[str, Any]) -> dict[str, Any]:
    """The labels LiteLLM's `set_llm_deployment_failure_metrics` resolves, and the state write."""
    lp = _d(kwargs.get("litellm_params"))
    model = kwargs.get("model")
    model_group = slp.get("model_group")
    api_base = slp.get("api_base")
    model_id = slp.get("model_id")
    exc = kwargs.get("exception")
    if model_id is None:
        info = _d(_d(lp.get("litellm_metadata")).get("model_info")) or _d(_d(lp.get("metadata")).get("model_info"))
        model_id = info.get("id")
    if model_group is None:
        model_group = _d(lp.get("litellm_metadata")).get("model_group") or _d(lp.get("metadata")).get("model_group")
    malformed = _import("litellm.exceptions", "MalformedRequestFieldError")
    is_malformed = isinstance(exc, malformed) if isinstance(malformed, type) else False
    selected = bool(model_id) and not lp.get("proxy_rejected_before_routing") and not is_malformed
    ident = _deployment_identity(kwargs)
    md = _d(slp.get("metadata"))
    out: dict[str, Any] = {}
    labels: dict[str, Any] = {
        "hashed_api_key": ident.get("hashed_api_key") or md.get("user_api_key_hash"),
        "api_key_alias": ident.get("api_key_alias") or md.get("user_api_key_alias"),
        "user_email": ident.get("user_email"),
        "team": ident.get("team") or md.get("user_api_key_team_id"),
        "team_alias": ident.get("team_alias") or md.get("user_api_key_team_alias"),
        "client_ip": ident.get("client_ip") or md.get("requester_ip_address"),
        "user_agent": ident.get("user_agent") or md.get("user_agent"),
        "exception_status": _deployment_exception_status(exc if isinstance(exc, BaseException) else None),
        "exception_class": exception_class_label(exc) if isinstance(exc, BaseException) else None,
    }
    if selected:
        labels.update(
            litellm_model_name=model,
            model_id=model_id,
            api_base=api_base,
            api_provider=_deployment_api_provider(kwargs),
            requested_model=model_group or model,
            model_group=model_group,
        )
        out["deployment_state"] = {
            "litellm_model_name": model or "",
            "model_id": model_id,
            "api_base": api_base,
            "api_provider": lp.get("custom_llm_provider") or "",
        }
    else:
        labels.update(
            litellm_model_name="",
            model_id="",
            api_base="",
            api_provider="",
            requested_model=bounded_requested_model(model or model_group, router_originated=True) or "",
            model_group=bounded_requested_model(model_group, router_originated=True),
        )
    out["deployment_selected"] = selected
    out["deployment_labels"] = {k: _jsonable(v) for k, v in labels.items()}
    out["has_exception"] = exc is not None
    return out


def _success_deployment_state(slp: Mapping[str, Any], facts: Mapping[str, Any]) -> dict[str, Any]:
    """The `litellm_deployment_state` labels LiteLLM's `set_llm_deployment_success_metrics` writes
    (= 0): the provider is `litellm_params.custom_llm_provider`, which is unset on some call types
    (embeddings) whose payload names a provider."""

    def label(value: object) -> str:  # LiteLLM's `value or ""`, rendered with str()
        return "" if not value else value if isinstance(value, str) else str(value)

    return {
        "litellm_model_name": label(facts.get("model")),
        "model_id": label(facts.get("model_info_id")),
        "api_base": label(slp.get("api_base")),
        "api_provider": label(facts.get("custom_llm_provider")),
    }


def trim_payload(slp: Mapping[str, Any], keep_content: bool = False) -> dict[str, Any]:
    """The payload as written: sensitive and bulky keys removed (docs/record-format.md)."""
    out: dict[str, Any] = {}
    for key, value in slp.items():
        if key in _DROP_TOP or (key in _CONTENT_TOP and not keep_content):
            continue
        if key == "metadata":
            md = _d(value)
            out[key] = {k: _jsonable(v) for k, v in md.items() if k not in _DROP_METADATA}
        elif key == "hidden_params":
            out[key] = {k: _jsonable(v) for k, v in _d(value).items() if k not in _DROP_HIDDEN}
        elif key == "error_information":
            info = {k: _jsonable(v) for k, v in _d(value).items() if k not in _DROP_ERROR_INFO}
            if not keep_content and isinstance(info.get("error_message"), str):
                info["error_message"] = info["error_message"][:ERROR_MESSAGE_MAX]
            out[key] = info
        elif key == "response_cost_failure_debug_info":
            out[key] = {k: _jsonable(v) for k, v in _d(value).items() if k != "traceback_str"} if value else None
        elif key == "model_parameters":
            mp = _d(value)
            out[key] = {k: _jsonable(mp[k]) for k in _KEEP_MODEL_PARAMETERS if k in mp}
        else:
            out[key] = _jsonable(value)
    return out


def _event_facts(kwargs: Mapping[str, Any], start_time: object, end_time: object) -> dict[str, Any]:
    lp = _d(kwargs.get("litellm_params"))
    lpm = _d(lp.get("metadata"))
    meta = _litellm_metadata(kwargs)
    facts: dict[str, Any] = {
        "model": kwargs.get("model"),
        "stream": kwargs.get("stream") if isinstance(kwargs.get("stream"), bool) else None,
        "start_time": _time(kwargs.get("start_time")),
        "end_time": _time(kwargs.get("end_time")),
        "hook_start_time": _time(start_time),
        "hook_end_time": _time(end_time),
        "queue_time_seconds": _jsonable(lpm.get("queue_time_seconds")),
        "custom_llm_provider": lp.get("custom_llm_provider"),
        "end_user": _end_user(lp),
        "model_info_id": _d(meta.get("model_info")).get("id"),
        "local_utc_offset": _utc_offset(kwargs.get("end_time")),
    }
    # presence matters: LiteLLM observes API latency/TTFT only when these keys hold a time
    for key in ("api_call_start_time", "completion_start_time"):
        if key in kwargs:
            facts[key] = _time(kwargs.get(key))
    original = {**_d(meta), **_d(lpm)}.get("original_model_group")
    facts["original_model_group"] = original if isinstance(original, str) and original else None
    return facts


def _utc_offset(value: object) -> float | None:
    """Seconds east of UTC of the naive local times recorded (to place them on the UTC axis)."""
    if not isinstance(value, _dt.datetime):
        return None
    if value.tzinfo is not None:
        off = value.utcoffset()
        return off.total_seconds() if off is not None else None
    try:
        off = value.astimezone().utcoffset()
        return off.total_seconds() if off is not None else None
    except Exception:  # noqa: BLE001
        return None


def _exception_facts(exc: object) -> dict[str, Any]:
    if not isinstance(exc, BaseException):
        return {}
    return {
        "exception_class": exception_class_label(exc),
        "exception_status": _deployment_exception_status(exc),
        "exception_type": type(exc).__name__,
        "exception_llm_provider": _jsonable(getattr(exc, "llm_provider", None)),
        "error_message": str(exc)[:ERROR_MESSAGE_MAX],
    }


class LogmetricsLogger(_Base):  # type: ignore[misc,valid-type,unused-ignore]
    """LiteLLM CustomLogger writing one logmetrics record per counted event.

    LiteLLM calls the hooks with keyword arguments: the parameter names below are LiteLLM's.
    """

    def __init__(self, path: str | None = None, keep_content: bool | None = None) -> None:
        try:
            super().__init__()
        except Exception:  # noqa: BLE001
            pass
        self._path_override = path
        self._keep_content_override = keep_content
        self._writer: RecordWriter | None = None
        self._writer_lock = threading.Lock()
        self.encode_errors = 0

    # -- plumbing ----------------------------------------------------------------------------
    @property
    def writer(self) -> RecordWriter:
        if self._writer is None:
            with self._writer_lock:
                if self._writer is None:
                    path = self._path_override or os.environ.get(ENV_PATH) or default_log_path()
                    self._writer = RecordWriter(path)
        return self._writer

    @property
    def write_errors(self) -> int:
        return (self._writer.write_errors if self._writer is not None else 0) + self.encode_errors

    @property
    def keep_content(self) -> bool:
        if self._keep_content_override is not None:
            return self._keep_content_override
        return os.environ.get(ENV_CONTENT, "").strip().lower() in ("1", "true", "yes", "on")

    def _emit(self, build: Callable[[], dict[str, Any]]) -> None:
        try:
            record = build()
            line = json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=str) + "\n"
            self.writer.write_line(line.encode("utf-8", "replace"))  # never raises
        except Exception as e:  # noqa: BLE001 - never raise into LiteLLM
            self.encode_errors += 1
            if self.encode_errors == 1:
                _log.error("logmetrics: cannot build a request record: %s: %s", type(e).__name__, e)

    def _record(self, hook: str, payload: Any, facts: dict[str, Any], labels: Any) -> dict[str, Any]:
        return {
            "logmetrics_record": "request",
            "version": RECORD_VERSION,
            "hook": hook,
            "time": time.time(),
            "payload": payload,
            "facts": facts,
            "labels": labels,
        }

    def _build_event(self, hook: str, kwargs: Any, start_time: Any, end_time: Any) -> dict[str, Any]:
        kw = _d(kwargs)
        slp = _d(kw.get("standard_logging_object"))
        facts = _event_facts(kw, start_time, end_time)
        facts["skip_metrics"] = _skip_metrics(kw, slp)
        if hook == "success":
            facts["service_tier"] = _service_tier(slp)
            if slp:
                facts["deployment_state"] = _success_deployment_state(slp, facts)
        else:
            facts.update(_exception_facts(kw.get("exception")))
            facts.update(_deployment_failure_facts(kw, slp))
        payload = trim_payload(slp, self.keep_content) if slp else None
        return self._record(hook, payload, facts, None)

    # -- LiteLLM hooks (keyword names are LiteLLM's) ------------------------------------------
    async def async_log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._emit(lambda: self._build_event("success", kwargs, start_time, end_time))

    async def async_log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._emit(lambda: self._build_event("failure", kwargs, start_time, end_time))

    async def async_post_call_failure_hook(
        self,
        request_data: Any,
        original_exception: Any,
        user_api_key_dict: Any,
        traceback_str: Any = None,
    ) -> None:
        self._emit(lambda: self._build_hook(request_data, original_exception, user_api_key_dict))

    def _build_hook(self, request_data: Any, exc: Any, auth: Any) -> dict[str, Any]:
        rd = _d(request_data)
        md = _d(rd.get("metadata"))
        a = _d(auth)
        status = _status_of_exception(exc) if isinstance(exc, BaseException) else None
        model_id = (
            _d(md.get("model_info")).get("id")
            or _d(rd.get("model_info")).get("id")
            or _d(rd.get("standard_logging_object")).get("model_id")
        )
        requested = rd.get("model", "")
        fn = _helper("_failed_request_requested_model")
        if fn is not None:
            requested = _call(fn, rd, default=requested)
        logged_key: Any = None
        if status != "401":
            if a.get("is_session_token") and a.get("key_alias"):
                logged_key = a.get("key_alias")
            else:
                logged_key = a.get("api_key")
        labels: dict[str, Any] = {
            "end_user": _gate_end_user(a.get("end_user_id")),
            "hashed_api_key": logged_key,
            "api_key_alias": a.get("key_alias"),
            "requested_model": bounded_requested_model(requested),
            "team": a.get("team_id"),
            "team_alias": a.get("team_alias"),
            "user": a.get("user_id"),
            "user_email": a.get("user_email"),
            "status_code": status,
            "exception_status": status,
            "exception_class": exception_class_label(exc) if isinstance(exc, BaseException) else None,
            "route": a.get("request_route"),
            "client_ip": md.get("requester_ip_address"),
            "user_agent": md.get("user_agent"),
            "model_id": model_id,
            "api_provider": _hook_api_provider(rd, exc) if isinstance(exc, BaseException) else None,
            "org_id": a.get("org_id"),
            "org_alias": a.get("organization_alias"),
        }
        facts: dict[str, Any] = {"model": _jsonable(rd.get("model")), "stream": _jsonable(rd.get("stream"))}
        facts.update(_exception_facts(exc))
        facts["litellm_call_id"] = _jsonable(rd.get("litellm_call_id"))
        return self._record("post_call_failure", None, facts, {k: _jsonable(v) for k, v in labels.items()})


proxy_handler_instance = LogmetricsLogger()
