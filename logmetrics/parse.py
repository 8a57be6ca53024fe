"""bytes -> RequestEvent | LogEvent | Skip. Never raises on data; never keeps a line's text.

A line's shape is told by its content, never by the file it came from:
- a logmetrics request record (`"logmetrics_record": "request"`, docs/record-format.md);
- a LiteLLM StandardLoggingPayload (`status` + `call_type`/`model_group`);
- a compact request record (`model` + `latency_ms`/`tokens`/`level`);
- a LiteLLM `json_logs` line (`message` + `level`): access lines and errors become LogEvents;
- a `journalctl -o json` envelope: its MESSAGE (text or byte ints) is parsed again as any of
  the above, or as a plain-text log line.
Times are normalised here, in `epoch()`, and nowhere else (replay's C loop, `hotloop.py`, reads the
forms LiteLLM writes by the same rules, and hands every other one to this parser).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime

import msgspec

from logmetrics.events import (
    MAX_VALUE,
    DeploymentState,
    EventKind,
    Labels,
    LogEvent,
    ParseResult,
    RequestEvent,
    Skip,
    SkipReason,
)
from logmetrics.records import LINE_DECODER, Facts, Line
from logmetrics.slp import (
    InvalidDuration,
    InvalidField,
    InvalidTime,
    checked_time,
    event_from_hook,
    event_from_payload,
)
from logmetrics.slp import drop_caches as drop_slp_caches

DEFAULT_MAX_LINE_BYTES = 1 << 20
RECORD_VERSIONS = frozenset({1})
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_LEVEL_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL", "EXCEPTION": "ERROR"}
# syslog PRIORITY -> level, for plain-text journald lines that name no level themselves
_PRIORITY_LEVELS = ("CRITICAL", "CRITICAL", "CRITICAL", "ERROR", "WARNING", "INFO", "INFO", "DEBUG")
_ACCESS = re.compile(r'"([A-Z]+) (/[^ "?]*)[^ "]* HTTP/[0-9.]+" (\d{3})')
_SURROGATE = re.compile("[\ud800-\udfff]")  # lone ones only: json.loads joins pairs
_PLAIN_LEVEL = re.compile(r"\b(DEBUG|INFO|WARNING|ERROR|CRITICAL)\b")
_NAIVE_SECOND = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}", re.ASCII)
_LEVEL_NAMES = frozenset(LEVELS)  # already canonical: level_name() returns them unchanged
_FAILED = frozenset({"ERROR", "CRITICAL"})
# ".fff" -> the microsecond / 1e6 that datetime.timestamp() adds for it
_MILLIS = {f"{ms:03d}": ms * 1000 / 1e6 for ms in range(1000)}

_BOM = "\ufeff".encode()
_NOT_JSON = Skip(SkipReason.NOT_JSON)
_INVALID_UTF8 = Skip(SkipReason.INVALID_UTF8)
_TOO_LONG = Skip(SkipReason.TOO_LONG)
_TOO_DEEP = Skip(SkipReason.TOO_DEEP)
_UNKNOWN = Skip(SkipReason.UNKNOWN_SHAPE)
_INVALID_FIELD = Skip(SkipReason.INVALID_FIELD)
_INVALID_DURATION = Skip(SkipReason.INVALID_DURATION)
_INVALID_TIME = Skip(SkipReason.INVALID_TIME)
_UNSUPPORTED = Skip(SkipReason.UNSUPPORTED_VERSION)
_INVALID_KEY = Skip(SkipReason.INVALID_KEY)


_DECIMAL = re.compile(r"\d+\.\d+", re.ASCII)


def epoch(value: str | float | int | None) -> float | None:
    """Any record time as UTC epoch seconds: ISO 8601 with or without zone (without = local time,
    as LiteLLM's json_logs writes), epoch seconds, milliseconds or microseconds (number, or digits
    with or without a fraction: `1795452157.218`, what `tail -o json` prints).
    Raises InvalidTime for anything else, and for a time before 1970 or after the year 9999."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            if not text.isdigit() and not _DECIMAL.fullmatch(text):
                return checked_time(_iso(text).timestamp())
            value = float(text)  # as float(int(text)) rounds it, and 400 nines are inf, not an OverflowError
        except (ValueError, OverflowError):
            raise InvalidTime(value) from None
    try:
        number = float(value)
    except OverflowError:  # an int no float holds
        raise InvalidTime(value) from None
    if number > 1e14:
        return checked_time(number / 1e6)
    if number > 1e11:
        return checked_time(number / 1e3)
    return checked_time(number)


# ISO 8601 as logs write it, in the parts Python 3.10's datetime.fromisoformat() refuses (3.11
# takes most): a fraction of other than 3 or 6 digits (Go writes up to 9) or after a comma, a zone
# "Z", "z", "+0530" or "+05", a lower-case "t"
_ISO = re.compile(r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}(?::\d{2})?)(?:[.,](\d+))?([Zz]|[+-]\d{2}(?::?\d{2})?)?",
                  re.ASCII)


def _iso(text: str) -> datetime:
    """`datetime.fromisoformat(text)`, with the forms above on every Python (fraction cut to the
    microsecond, as 3.11 does)."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        m = _ISO.fullmatch(text)
        if m is None:
            raise
    day, clock, fraction, zone = m.groups()
    if fraction:
        clock += "." + fraction[:6].ljust(6, "0")
    if zone in ("Z", "z"):
        zone = "+00:00"
    elif zone:
        zone = zone[:3] + ":" + (zone[-2:] if len(zone) > 3 else "00")
    return datetime.fromisoformat(f"{day}T{clock}{zone or ''}")


def level_name(level: str | None) -> str:
    name = (level or "INFO").upper()
    name = _LEVEL_ALIASES.get(name, name)
    return name if name in LEVELS else "INFO"


@dataclass
class Parser:
    """Stateless apart from caches. `end_user_label` puts the payload's `end_user` into the label
    when LiteLLM's `enable_end_user_cost_tracking_prometheus_only` is on (payload-only logs; the
    callback records the gated value itself)."""

    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    end_user_label: bool = False
    # compact records: (model, provider, failed) -> their constant labels and deployment state
    _compact: dict[tuple[str | None, str | None, bool], tuple[Labels, DeploymentState]] = field(
        default_factory=dict, repr=False
    )
    # "YYYY-MM-DDTHH:MM:SS" (naive) -> epoch seconds: compact records' times, one parse a second
    _seconds: dict[str, float] = field(default_factory=dict, repr=False)

    def drop_caches(self) -> None:
        """Forget the label sets and times cached for the hot loop (they refill as lines come)."""
        self._compact.clear()
        self._seconds.clear()
        drop_slp_caches()

    def parse(self, line: bytes, *, envelope_time: float | None = None) -> ParseResult | None:
        """One line (without its newline). None for a blank line, which is not a record."""
        if len(line) > self.max_line_bytes:
            return _TOO_LONG
        if line[:1] != b"{":  # the common case skips the copies strip() and lstrip() make
            if line[:3] == _BOM:  # a file written with a UTF-8 byte order mark: its first line
                line = line[3:]
            if not line.strip():
                return None
            first = line.lstrip()[:1]
            if first != b"{":
                return self._slow(line, envelope_time) if first in b'["-0123456789' else _NOT_JSON
        # a surrogate escape (rare): mend lone ones first. One scan when the line has no escape at all
        if b"\\u" in line and (b"\\ud" in line or b"\\uD" in line):
            mended = _mend_surrogates(line)
            if mended is None:
                return self._slow(line, envelope_time)
            line = mended
        try:
            rec = LINE_DECODER.decode(line)
        except msgspec.ValidationError:
            return self._slow(line, envelope_time)
        except msgspec.DecodeError:
            return self._slow(line, envelope_time)
        except UnicodeDecodeError:
            return _INVALID_UTF8
        except RecursionError:
            return _TOO_DEEP
        try:
            return self._dispatch(rec, envelope_time)
        except InvalidDuration:
            return _INVALID_DURATION
        except InvalidField:
            return _INVALID_FIELD
        except (InvalidTime, OverflowError, OSError, ValueError):
            return _INVALID_TIME

    def _dispatch(self, rec: Line, envelope_time: float | None) -> ParseResult | None:
        if rec.logmetrics_record is not None:
            return self._record(rec)
        if rec.status is not None and (rec.call_type is not None or rec.model_group is not None):
            event = event_from_payload(rec, None, None, end_user_label=self.end_user_label)
            return event if event is not None else _INVALID_KEY
        if rec.model is not None and (rec.latency_ms is not None or rec.tokens is not None):
            return self._compact_record(rec)
        if rec.MESSAGE is not None:
            return self._journald(rec)
        if rec.message is not None and rec.level is not None:
            return _log_event(rec.message, rec.level, rec.component, rec.litellm_call_id, rec.timestamp,
                              envelope_time)
        return _UNKNOWN

    def _record(self, rec: Line) -> ParseResult:
        if rec.logmetrics_record != "request" or rec.version not in RECORD_VERSIONS:
            return _UNSUPPORTED
        if rec.hook == "post_call_failure":
            if rec.labels is None:
                return _INVALID_FIELD
            facts = rec.facts
            time = rec.time if rec.time is not None else 0.0
            return event_from_hook(rec.labels, time, facts.error_message if facts else None)
        if rec.hook not in ("success", "failure") or rec.payload is None:
            return _INVALID_FIELD
        if rec.hook == "failure":
            rec.payload.status = "failure"
        event = event_from_payload(rec.payload, rec.facts or _EMPTY_FACTS, rec.time)
        return event if event is not None else _INVALID_KEY

    def _compact_record(self, rec: Line) -> ParseResult:
        time = self._compact_time(rec.timestamp)
        level = rec.level
        failed = level in _FAILED if level in _LEVEL_NAMES else level_name(level) in _FAILED
        latency = rec.latency_ms
        if latency is not None and not 0 <= latency < MAX_VALUE:
            return _INVALID_DURATION
        labels, state = self.compact_labels(rec.model, rec.provider, failed)
        if failed:
            return RequestEvent(
                kind=EventKind.FAILURE, time=time or 0.0, labels=labels, proxy=labels, state=state,
                level="ERROR", error_message=rec.error[:300] if rec.error else None,
            )
        tokens = rec.tokens
        return RequestEvent(
            kind=EventKind.SUCCESS, time=time or 0.0, labels=labels, state=state, spend=0.0,
            prompt_tokens=(tokens.prompt or 0) if tokens else 0,
            completion_tokens=(tokens.completion or 0) if tokens else 0,
            total_tokens=(tokens.total or 0) if tokens else 0,
            total_latency=latency / 1000 if latency is not None else None,
        )

    def compact_labels(self, model: str | None, provider: str | None, failed: bool) -> tuple[Labels, DeploymentState]:
        """A compact record's labels and deployment state write (cached: they are few)."""
        key = (model, provider, failed)
        cached = self._compact.get(key)
        if cached is None:
            cached = (
                Labels(requested_model=model, model_group=model, model=model, litellm_model_name=model,
                       api_provider=provider, status_code=None if failed else "200"),
                DeploymentState(model, "", "", provider or "", 1 if failed else 0),
            )
            if len(self._compact) < 4096:
                self._compact[key] = cached
        return cached

    def _compact_time(self, timestamp: str | float | None) -> float | None:
        """`epoch(timestamp)`, with naive "YYYY-MM-DDTHH:MM:SS.fff" (what LiteLLM's json_logs and
        compact records write) parsed once a second: datetime.timestamp() of a naive time is the
        local second as a whole number plus microsecond / 1e6, which is what this adds."""
        if isinstance(timestamp, str) and len(timestamp) == 23 and timestamp[19] == ".":
            fraction = _MILLIS.get(timestamp[20:])
            if fraction is not None:
                base = self.second(timestamp[:19])
                if base is not None:
                    return base + fraction
        return epoch(timestamp)

    def second(self, text: str) -> float | None:
        """Naive "YYYY-MM-DDTHH:MM:SS" as epoch seconds (local time), cached; None for other text."""
        base = self._seconds.get(text)
        if base is None and _NAIVE_SECOND.fullmatch(text):
            base = epoch(text)
            if base is not None:
                if len(self._seconds) >= 4096:  # logs move on: keep the recent seconds
                    self._seconds.clear()
                self._seconds[text] = base
        return base

    def _journald(self, rec: Line) -> ParseResult | None:
        message = rec.MESSAGE
        raw = bytes(message) if isinstance(message, list) else (message or "").encode()
        when = epoch(int(rec.realtime_timestamp)) if rec.realtime_timestamp else None
        inner = raw.strip()
        if inner[:1] == b"{":
            result = self.parse(inner, envelope_time=when)
            if not (isinstance(result, Skip) and result.reason is SkipReason.NOT_JSON):
                return result
        text = raw.decode("utf-8", "replace")
        found = _PLAIN_LEVEL.search(text)
        if found:
            level = found.group(1)
        elif rec.PRIORITY and rec.PRIORITY.isdigit() and int(rec.PRIORITY) < 8:
            level = _PRIORITY_LEVELS[int(rec.PRIORITY)]
        else:
            level = "INFO"
        return _log_event(text, level, None, None, None, when)

    def _slow(self, line: bytes, envelope_time: float | None) -> Skip | LogEvent:
        """The fast decode failed: find out why, with a generic decode."""
        try:
            text = line.decode()
        except UnicodeDecodeError:
            return _INVALID_UTF8
        try:
            obj = json.loads(text)
        except RecursionError:
            return _TOO_DEEP
        except ValueError:
            return _NOT_JSON
        if not isinstance(obj, dict):
            return _UNKNOWN
        if any(isinstance(v, float) and not math.isfinite(v) for v in _numbers(obj)):
            return _INVALID_DURATION
        # a json_logs line may carry extra keys of any type merged from its message
        message, level = obj.get("message"), obj.get("level")
        if isinstance(message, str) and isinstance(level, str) and "model_group" not in obj and (
            "latency_ms" not in obj
        ):
            ts = obj.get("timestamp")
            call_id = obj.get("litellm_call_id")
            component = obj.get("component")
            try:
                return _log_event(
                    message, level, component if isinstance(component, str) else None,
                    call_id if isinstance(call_id, str) else None,
                    ts if isinstance(ts, (str, int, float)) else None, envelope_time,
                )
            except (InvalidTime, ValueError, OverflowError, OSError):
                return _INVALID_TIME
        return _INVALID_FIELD


def _mend_surrogates(line: bytes) -> bytes | None:
    """The line with every lone UTF-16 surrogate (valid JSON, `\\ud800`, but not encodable as
    UTF-8: it would break the exposition) replaced by U+FFFD; pairs are kept. None if not JSON."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return msgspec.json.encode(_mend(obj))


def _mend(obj: object) -> object:
    if isinstance(obj, str):
        return obj if obj.isascii() else _SURROGATE.sub("\ufffd", obj)
    if isinstance(obj, dict):
        return {_mend(k): _mend(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_mend(v) for v in obj]
    return obj


def _numbers(obj: object, depth: int = 0) -> list[float]:
    if depth > 4:
        return []
    if isinstance(obj, float):
        return [obj]
    if isinstance(obj, dict):
        return [n for v in obj.values() for n in _numbers(v, depth + 1)]
    if isinstance(obj, list):
        return [n for v in obj[:64] for n in _numbers(v, depth + 1)]
    return []


_EMPTY_FACTS = Facts()


def _log_event(
    message: str, level: str, component: str | None, call_id: str | None,
    timestamp: str | float | None, envelope_time: float | None,
) -> LogEvent:
    """A log line's event. In a journald envelope its time is the envelope's (__REALTIME_TIMESTAMP,
    exact): a json_logs `timestamp` is the writer's local time without zone, read here in the
    reader's zone (a LiteLLM container on UTC, a host on New York time: 5 hours off) and
    ambiguous in the hour that repeats when DST ends."""
    time = envelope_time if envelope_time is not None else epoch(timestamp) if timestamp is not None else None
    access = _ACCESS.search(message) if '" ' in message else None
    if access:
        return LogEvent(time=time, level=level_name(level), component=component, method=access.group(1),
                        route=access.group(2), status=access.group(3), call_id=call_id)
    return LogEvent(time=time, level=level_name(level), component=component, call_id=call_id)
