"""The durable state of `logmetrics serve`: one versioned JSON file per state directory.

It holds, as of one instant between two batches, the read position of every source (the
`FileFollower.positions()` checkpoint, the journald cursor) *and* the metric values themselves
(the aggregator's plain data), so that after a restart (even after `kill -9`) counting resumes
exactly where the file says: no record counted twice, none missed, counters never go down.

Writes are atomic: a temporary file in the same directory, fsync, rename over `state.json`,
fsync of the directory. The directory is created 0700, the files 0600, and a `lock` file held
with `flock` keeps a second `serve` off the same directory.

Policy for a state file that cannot be used (empty, truncated, not JSON, another program's, an
older or newer format, labels this version does not know): it is renamed
`state.json.corrupt-<UTC time>`, one warning line is logged, and serving starts as on a first
run (counters from 0, files from their start, journald from now). It never stops `serve`.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from logmetrics.aggregate import Aggregator, Histogram, ModelStats, Signature, add_acc, exact, pad
from logmetrics.errors import StateError
from logmetrics.events import LABEL_NAMES, EventKind, Labels, SkipReason, redact_api_base

log = logging.getLogger(__name__)

FORMAT = "logmetrics-state"
VERSION = 2  # 2: sums are exact integers (aggregate.exact); version 1 files (float sums) are converted
STATE_FILE = "state.json"
LOCK_FILE = "lock"

LabelTuple = list[str | None]
Slot = int | float | Histogram | None


class SourceState(msgspec.Struct, omit_defaults=True):
    """Where one source was read to, and its self-metric counters (per `source` label)."""

    kind: str  # "file", "journald", "stdin"
    positions: dict[str, Any] | None = None  # FileFollower.positions()
    cursor: str | None = None  # journald __CURSOR
    counters: dict[str, dict[str, int]] = {}  # source label -> counter name -> value


class AggregatorData(msgspec.Struct):
    """`Aggregator`'s plain data; dicts with struct or tuple keys become lists of pairs (in order)."""

    acc: list[tuple[str, LabelTuple, LabelTuple | None, LabelTuple | None, str | None, list[Slot]]]
    state: list[tuple[LabelTuple, int]]
    records: int
    skipped: dict[str, int]
    access_lines: list[tuple[str, str, int]]
    log_lines: dict[str, int]
    series_dropped: dict[str, int]
    models: dict[str, ModelStats]
    newest_time: float | None
    oldest_time: float | None


class StateFile(msgspec.Struct):
    format: str
    version: int
    written: float
    labels: list[str]
    sources: dict[str, SourceState]
    counters: dict[str, int]  # state_writes, state_write_failures
    metrics: AggregatorData


class _Header(msgspec.Struct):
    format: str = ""
    version: int = 0


_ENCODER = msgspec.json.Encoder()


astuple = msgspec.structs.astuple


def _labels(lab: Labels | None) -> LabelTuple | None:
    return None if lab is None else list(astuple(lab))


def _unlabels(values: LabelTuple | None) -> Labels | None:
    if values is None:
        return None
    if len(values) != len(LABEL_NAMES):
        raise ValueError("label arity")
    labels = Labels(*values)
    base = redact_api_base(labels.api_base)  # a file of an earlier version may hold one unredacted
    return labels if base is labels.api_base else msgspec.structs.replace(labels, api_base=base)


def _state_key(values: list[str | None]) -> tuple[str | None, ...]:
    key = tuple(values)  # (litellm_model_name, model_id, api_base, api_provider)
    return key[:2] + (redact_api_base(key[2]),) + key[3:] if len(key) == 4 else key


def dump_aggregator(agg: Aggregator) -> AggregatorData:
    """`agg`'s data, sharing its lists: encode it before `agg` changes again."""
    acc = [(sig.kind.value, list(astuple(sig.labels)), _labels(sig.deployment), _labels(sig.proxy),
            sig.zero_cost_reason, slots)
           for sig, slots in agg.acc.items()]
    return AggregatorData(
        acc=acc,  # type: ignore[arg-type]
        state=[(list(k), v) for k, v in agg.state.items()],
        records=agg.records,
        skipped={r.value: n for r, n in agg.skipped.items()},
        access_lines=[(route, status, n) for (route, status), n in agg.access_lines.items()],
        log_lines=agg.log_lines,
        series_dropped=agg.series_dropped,
        models=agg.models,
        newest_time=agg.newest_time,
        oldest_time=agg.oldest_time,
    )


def load_aggregator(agg: Aggregator, data: AggregatorData) -> None:
    """Replace `agg`'s data with `data` (ValueError/TypeError if it does not fit)."""
    acc: dict[Signature, list[object]] = {}
    for kind, labels, deployment, proxy, zcr, slots in data.acc:
        main = _unlabels(labels)
        assert main is not None
        sig = Signature(EventKind(kind), main, _unlabels(deployment), _unlabels(proxy), zcr)
        have = acc.get(sig)
        if have is None:
            acc[sig] = pad(list(slots))
        else:  # two label sets of an earlier version's file that differed only in an api_base's credentials
            add_acc(have, pad(list(slots)))
    skipped = dict.fromkeys(SkipReason, 0)
    for reason, n in data.skipped.items():
        skipped[SkipReason(reason)] = n
    agg.acc = acc
    agg.state = {_state_key(k): v for k, v in data.state}
    agg.records = data.records
    agg.skipped = skipped
    agg.access_lines = {(route, status): n for route, status, n in data.access_lines}
    agg.log_lines = dict(data.log_lines)
    agg.series_dropped = dict(data.series_dropped)
    agg.models = dict(data.models)
    agg.newest_time = data.newest_time
    agg.oldest_time = data.oldest_time


def dump(agg: Aggregator, sources: dict[str, SourceState], counters: dict[str, int]) -> bytes:
    """The state file's bytes."""
    doc = StateFile(FORMAT, VERSION, time.time(), list(LABEL_NAMES), sources, counters, dump_aggregator(agg))
    return _ENCODER.encode(doc)


def decode(data: bytes) -> StateFile:
    """Parse a state file; StateError (with the reason) if it is not one this version can use."""
    if not data.strip():
        raise StateError("empty")
    try:
        head = msgspec.json.decode(data, type=_Header)
    except msgspec.DecodeError as e:
        raise StateError(f"not a state file ({e})") from None
    if head.format != FORMAT:
        raise StateError("not a logmetrics state file")
    if head.version not in (1, VERSION):
        raise StateError(f"format version {head.version}, this logmetrics reads 1 and {VERSION}")
    try:
        if head.version == 1:
            data = _ENCODER.encode(_from_v1(msgspec.json.decode(data)))
        doc = msgspec.json.decode(data, type=StateFile)
    except (msgspec.DecodeError, msgspec.ValidationError, TypeError, AttributeError, KeyError, IndexError,
            ValueError, OverflowError) as e:
        raise StateError(f"invalid ({e})") from None
    if tuple(doc.labels) != LABEL_NAMES:
        raise StateError("written for other label names")
    return doc


def _from_v1(doc: Any) -> Any:
    """A version 1 document (float sums) as version 2 (their exact integers)."""
    metrics = doc["metrics"]
    for entry in metrics["acc"]:
        slots = entry[5]
        slots[1] = exact(slots[1])  # spend
        for h in slots:
            if isinstance(h, dict):
                h["sum_exact"] = exact(h.pop("sum"))
    for row in metrics["models"].values():
        row["spend_exact"] = exact(row.pop("spend", 0.0))
    doc["version"] = VERSION
    return doc


def load(agg: Aggregator, data: bytes) -> StateFile:
    """`decode` and restore `agg` from it; StateError if anything does not fit."""
    doc = decode(data)
    try:
        load_aggregator(agg, doc.metrics)
    except (ValueError, TypeError, KeyError, AssertionError) as e:
        raise StateError(f"metrics do not fit ({e})") from None
    return doc


def default_dir() -> Path:
    """`$XDG_STATE_HOME/logmetrics`, i.e. ~/.local/state/logmetrics by default."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "logmetrics"


@dataclass
class Store:
    """One state directory: its lock, its state file, atomic writes."""

    directory: Path
    _lock_fd: int = -1

    @property
    def path(self) -> Path:
        return self.directory / STATE_FILE

    def open(self) -> None:
        """Create the directory (0700) and take its lock; StateError if another process has it."""
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise StateError(f"cannot use --state-dir {self.directory}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StateError(
                f"another logmetrics serve is using --state-dir {self.directory}; stop it or give another "
                "--state-dir") from None
        self._lock_fd = fd

    def close(self) -> None:
        fd, self._lock_fd = self._lock_fd, -1
        if fd >= 0:
            os.close(fd)

    def read(self) -> bytes | None:
        """The state file's bytes, None if there is none."""
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StateError(f"cannot read {self.path}: {e.strerror}; check --state-dir") from None

    def load(self, agg: Aggregator) -> StateFile | None:
        """Restore `agg` from the state file; None on a first run or after moving a bad file aside."""
        data = self.read()
        if data is None:
            return None
        try:
            return load(agg, data)
        except StateError as e:
            self.move_aside(str(e))
            return None

    def move_aside(self, why: str) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = self.path.with_name(f"{STATE_FILE}.corrupt-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self.path.with_name(f"{STATE_FILE}.corrupt-{stamp}-{n}")
        try:
            os.replace(self.path, target)
        except OSError as e:
            raise StateError(f"cannot move the unusable state file {self.path} aside: {e.strerror}") from None
        log.warning("state file %s is unusable (%s): moved to %s; starting from the beginning of the sources",
                    self.path, why, target.name)
        return target

    def write(self, data: bytes) -> None:
        """Atomically replace the state file with `data` (OSError on failure)."""
        tmp = self.directory / f".{STATE_FILE}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dfd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def reset(self) -> bool:
        """Delete the state file (the caller holds the lock); False if there was none."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        except OSError as e:
            raise StateError(f"cannot delete {self.path}: {e.strerror}") from None
        return True


__all__ = ["FORMAT", "VERSION", "SourceState", "StateFile", "Store", "decode", "default_dir", "dump", "load"]
