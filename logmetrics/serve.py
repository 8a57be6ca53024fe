"""`logmetrics serve`: follow a source, aggregate, persist, and answer Prometheus on /metrics.

Wiring, sink first: state file (`state.py`) <- aggregator <- `Ingest` <- one thread per source
(`FileFollower`, `JournalFollower`, stdin). After each batch the source thread takes the
checkpoint (positions or cursor) under the same lock that guards the aggregator, so the pair
(metric values, positions) is always consistent. The main thread writes it at least every
second; a scrape writes it first if anything changed, then renders, so a value Prometheus has
seen is on disk and a restart (even after `kill -9`) never makes a counter go down.

Signals: SIGTERM and SIGINT finish the current batch, write the state and exit 0; SIGHUP makes
the file followers re-scan (reopen) their names. Under systemd (`Type=notify`) READY=1 is sent
once /metrics answers, WATCHDOG=1 pings while no source is stuck.
"""

from __future__ import annotations

import glob
import logging
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Protocol

import msgspec
import typer

from logmetrics import state, view, webconfig
from logmetrics.aggregate import DEFAULT_MAX_SERIES, Aggregator
from logmetrics.errors import LogmetricsError, SourceError, StateError, UsageError
from logmetrics.events import SkipReason
from logmetrics.export import exposition, registry_for
from logmetrics.http import DEFAULT_LISTEN, Body, MetricsServer, ServeStats, render, serve_metrics
from logmetrics.notify import Notifier
from logmetrics.parse import DEFAULT_MAX_LINE_BYTES, Parser
from logmetrics.pipeline import Ingest
from logmetrics.sources.batch import Batch
from logmetrics.sources.file import POSITIONS_VERSION, FileFollower
from logmetrics.sources.journald import JournalFollower
from logmetrics.webconfig import WebConfig

log = logging.getLogger("logmetrics")

STDIN = "-"


class Source(Protocol):
    """A running source as `Service` sees it. Iterated in its own thread."""

    key: str  # its entry in the state file
    kind: str

    def __iter__(self) -> Iterator[Batch]: ...
    def checkpoint(self) -> state.SourceState: ...  # right after a batch, in the source's thread
    def counters(self) -> dict[str, dict[str, int]]: ...  # since this process started; any thread
    def lag_bytes(self) -> dict[str, int]: ...
    def pending(self, checkpoint: state.SourceState) -> bool: ...  # complete lines wait to be read
    def unreadable(self) -> dict[str, str]: ...  # names that exist but cannot be opened -> why
    def wake(self) -> None: ...
    def close(self) -> None: ...


def _missing(path: str) -> bool:
    """Whether `path` does not exist (not: cannot be looked at, which the follower reports)."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        pass
    return False


class FileSource:
    kind = "file"

    def __init__(self, pattern: str, saved: state.SourceState | None, *, poll: bool, max_line: int) -> None:
        pattern = os.path.abspath(pattern)
        self.key = f"file:{pattern}"
        if not glob.has_magic(pattern) and _missing(pattern):
            log.warning("%s does not exist yet: it is followed once it appears", pattern)
        positions = saved.positions if saved is not None else None
        self.follower = FileFollower(pattern, positions=positions, max_line_bytes=max_line, poll=poll)

    def __iter__(self) -> Iterator[Batch]:
        return iter(self.follower)

    def checkpoint(self) -> state.SourceState:
        return state.SourceState(self.kind, positions=self.follower.positions())

    def counters(self) -> dict[str, dict[str, int]]:
        return {name: {"bytes_read": s.bytes_read, "rotations": s.rotations, "truncations": s.truncations}
                for name, s in list(self.follower.stats.items())}

    def lag_bytes(self) -> dict[str, int]:
        return self.follower.lag_bytes()

    def pending(self, checkpoint: state.SourceState) -> bool:
        for f in (checkpoint.positions or {}).get("files", []):
            try:
                with open(f["path"], "rb") as fh:
                    st = os.fstat(fh.fileno())
                    if (st.st_dev, st.st_ino) != (f["dev"], f["ino"]) or st.st_size <= f["offset"]:
                        continue
                    fh.seek(f["offset"])
                    if b"\n" in fh.read(1 << 16):
                        return True
            except (OSError, KeyError, TypeError):
                continue
        return False

    def unreadable(self) -> dict[str, str]:
        return self.follower.unreadable()

    def wake(self) -> None:
        self.follower.wake()

    def close(self) -> None:
        self.follower.close()


class _Stream:
    """A source without files: no byte lag to report, no unread lines to detect, nothing to re-scan."""

    def lag_bytes(self) -> dict[str, int]:
        return {}

    def pending(self, checkpoint: state.SourceState) -> bool:
        return False

    def unreadable(self) -> dict[str, str]:
        return {}

    def wake(self) -> None:
        pass


class JournalSource(_Stream):
    kind = "journald"

    def __init__(self, unit: str, saved: state.SourceState | None, *, user: bool,
                 directory: str | None) -> None:
        cursor = saved.cursor if saved is not None else None
        self.follower = JournalFollower(unit, user=user, cursor=cursor, directory=directory)
        self.key = self.follower.source

    def __iter__(self) -> Iterator[Batch]:
        return iter(self.follower)

    def checkpoint(self) -> state.SourceState:
        return state.SourceState(self.kind, cursor=self.follower.cursor())

    def counters(self) -> dict[str, dict[str, int]]:
        return {self.key: {"journalctl_restarts": self.follower.stats.restarts}}

    def close(self) -> None:
        self.follower.close()


class StdinSource(_Stream):
    """Lines from standard input; at its end the metrics go on being served."""

    kind = "stdin"
    key = "stdin"

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self.stop = threading.Event()
        self.bytes_read = 0

    def __iter__(self) -> Iterator[Batch]:
        fd = sys.stdin.fileno()
        rest, skipping = b"", False
        while not self.stop.is_set():
            if not select.select([fd], [], [], 0.2)[0]:
                continue
            data = os.read(fd, 1 << 20)
            self.bytes_read += len(data)
            if not data:
                if rest and not skipping:
                    yield Batch(self.key, [rest])
                return
            parts = (rest + data).split(b"\n")
            rest, too_long = parts.pop(), 0
            if skipping and parts:
                parts, skipping, too_long = parts[1:], False, 1
            elif skipping:
                continue
            lines = [p.removesuffix(b"\r") for p in parts if p and len(p) <= self.max_line]
            too_long += sum(1 for p in parts if len(p) > self.max_line)
            if len(rest) > self.max_line:
                rest, skipping = b"", True
            if lines or too_long:
                yield Batch(self.key, lines, too_long)

    def checkpoint(self) -> state.SourceState:
        return state.SourceState(self.kind)

    def counters(self) -> dict[str, dict[str, int]]:
        return {self.key: {"bytes_read": self.bytes_read}}

    def close(self) -> None:
        self.stop.set()


@dataclass
class _Run:
    """A source, its thread and what the service knows of it."""

    source: Source
    base: dict[str, dict[str, int]]  # counters saved by earlier runs
    checkpoint: state.SourceState
    thread: threading.Thread | None = None
    progress: float = field(default_factory=time.monotonic)
    error: str | None = None
    ended: bool = False

    def counters(self) -> dict[str, dict[str, int]]:
        out = {label: dict(cs) for label, cs in self.base.items()}
        for label, cs in self.source.counters().items():
            mine = out.setdefault(label, {})
            for name, n in cs.items():
                mine[name] = mine.get(name, 0) + n
        return out


class Service:
    """The running `serve`: sources, aggregator, state, HTTP. `run()` blocks until stopped."""

    def __init__(self, agg: Aggregator, ingest: Ingest, store: state.Store, saved: state.StateFile | None,
                 sources: list[Source], *, listen: str, stall_seconds: float = 60.0,
                 notifier: Notifier | None = None, stop: threading.Event | None = None,
                 web: WebConfig | None = None) -> None:
        self.agg, self.ingest, self.store = agg, ingest, store
        self.lock = threading.Lock()  # the aggregator and the checkpoints
        self.write_lock = threading.Lock()  # state writes, in order
        self.stop = stop or threading.Event()
        self.dirty = True
        self.stall_seconds = stall_seconds
        self.notifier = notifier or Notifier()
        self.other_sources = dict(saved.sources) if saved else {}  # kept for when they come back
        counters = saved.counters if saved else {}
        self.writes = counters.get("state_writes", 0)
        self.write_failures = counters.get("state_write_failures", 0)
        self._failing = False
        self._write_error = ""
        self.runs: list[_Run] = []
        for s in sources:
            old = self.other_sources.pop(s.key, None)
            self.runs.append(_Run(s, old.counters if old else {}, old or s.checkpoint()))
        self._saved_counters: list[dict[str, dict[str, int]]] = []
        self._shown: list[dict[str, dict[str, int]]] = []
        self.registry = registry_for(agg, extra=lambda: serve_metrics(self._stats(self._shown)))
        self.http = MetricsServer(listen, self.scrape, self.health, web)

    # -- the source threads -------------------------------------------------------------------
    def _consume(self, run: _Run) -> None:
        it = iter(run.source)
        try:
            for batch in it:
                with self.lock:
                    self.ingest.lines(batch.lines)
                    if batch.skipped_too_long:
                        self.agg.skip(SkipReason.TOO_LONG, batch.skipped_too_long)
                    run.checkpoint = run.source.checkpoint()
                    self.dirty = True
                run.progress = time.monotonic()
                if self.stop.is_set():
                    break
        except LogmetricsError as e:
            run.error = str(e)
        except Exception as e:  # reported in one line by run(); the state written stays consistent
            run.error = f"{type(e).__name__}: {e}"
        finally:
            run.ended = True
            close = getattr(it, "close", None)
            if close is not None:
                close()
            if run.error is not None:
                log.error("%s stopped: %s", run.source.key, run.error)
                self.stop.set()

    # -- state --------------------------------------------------------------------------------
    def _counters(self) -> list[dict[str, dict[str, int]]]:
        """Every source's self-metric counters (saved + this run), in `self.runs` order."""
        return [r.counters() for r in self.runs]

    def _snapshot(self, counters: list[dict[str, dict[str, int]]]) -> bytes:
        """The state file's bytes (self.lock held), counting the write it is for."""
        sources = dict(self.other_sources)
        for r, cs in zip(self.runs, counters, strict=True):
            cp = r.checkpoint
            sources[r.source.key] = state.SourceState(cp.kind, cp.positions, cp.cursor, cs)
        own = {"state_writes": self.writes + 1, "state_write_failures": self.write_failures}
        self._saved_counters = counters
        return state.dump(self.agg, sources, own)

    def _write(self, data: bytes) -> None:
        """Write a snapshot (self.write_lock held)."""
        try:
            self.store.write(data)
        except OSError as e:
            self.write_failures += 1
            self.dirty = True
            if not self._failing:
                log.error("cannot write the state file %s: %s (will retry)", self.store.path, e.strerror or e)
            self._failing = True
            self._write_error = str(e.strerror or e)
            return
        self.writes += 1
        if self._failing:
            log.warning("state file written again")
        self._failing = False

    def persist(self, force: bool = False) -> None:
        """Write the state if anything changed (metric values, positions, or source counters)."""
        with self.write_lock:
            with self.lock:
                counters = self._counters()
                if not (self.dirty or force or counters != self._saved_counters):
                    return
                self.dirty = False
                data = self._snapshot(counters)
            self._write(data)

    # -- HTTP ---------------------------------------------------------------------------------
    def scrape(self, accept: str) -> tuple[Body, str]:
        """Persist what is about to be shown (if not yet on disk), then render exactly that."""
        with self.write_lock, self.lock:
            counters = self._counters()
            if self.dirty or counters != self._saved_counters:
                self.dirty = False
                self._write(self._snapshot(counters))
            self._shown = counters
            return render(
                self.registry, accept, lambda om: exposition(self.agg, serve_metrics(self._stats(counters)), om)
            )

    def _stats(self, counters: list[dict[str, dict[str, int]]]) -> ServeStats:
        s = ServeStats(state_writes=self.writes, state_write_failures=self.write_failures)
        for r, by_label in zip(self.runs, counters, strict=True):
            for label, cs in by_label.items():
                if "bytes_read" in cs:
                    s.bytes_read[label] = cs["bytes_read"]
                if r.source.kind == "file":
                    s.rotations[label] = cs.get("rotations", 0)
                    s.truncations[label] = cs.get("truncations", 0)
                s.journalctl_restarts += cs.get("journalctl_restarts", 0)
            s.lag_bytes.update(r.source.lag_bytes())
        if self.agg.newest_time is not None:
            s.lag_seconds = max(0.0, time.time() - self.agg.newest_time)
        return s

    def problems(self, stuck_only: bool = False) -> list[str]:
        """What /healthz reports; with `stuck_only`, what a restart may cure (the watchdog's
        concern): not a file that cannot be opened, which restarting would not fix."""
        out = []
        now = time.monotonic()
        for r in self.runs:
            key = r.source.key
            if r.error is not None:
                out.append(f"{key}: failed: {r.error}")
            elif r.ended and r.source.kind != "stdin" and not self.stop.is_set():
                out.append(f"{key}: stopped following")
            elif now - r.progress > self.stall_seconds and r.source.pending(r.checkpoint):
                out.append(f"{key}: lines are waiting but none was read for {now - r.progress:.0f}s")
            for name, why in sorted(() if stuck_only else r.source.unreadable().items()):
                out.append(f"{key}: cannot open {name}: {why}")
        return out

    def health(self) -> tuple[bool, str]:
        problems = self.problems()
        if problems:
            return False, "".join(p + "\n" for p in problems)
        return True, "ok\n"

    # -- main ---------------------------------------------------------------------------------
    def run(self) -> None:
        """Serve until SIGTERM/SIGINT (or a source fails: SourceError)."""
        previous = _signals(self._on_stop, self._on_hup)
        try:
            for r in self.runs:
                r.thread = threading.Thread(target=self._consume, args=(r,), name=r.source.key, daemon=True)
                r.thread.start()
            self.persist(force=True)
            self.http.start()
            where = self.http.url
            log.info("serving %s; state in %s", where, self.store.path)
            self.notifier.ready(f"serving {where}")
            tick = min(1.0, self.notifier.watchdog_interval or 1.0)
            while not self.stop.wait(tick):
                self.persist()
                if self.notifier.watchdog_interval and not self.problems(stuck_only=True):
                    self.notifier.watchdog()
        finally:
            self.notifier.stopping()
            for r in self.runs:
                r.source.close()
            for r in self.runs:
                if r.thread is not None:
                    r.thread.join(timeout=10)
            self.persist()
            self.http.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        failed = [f"{r.source.key}: {r.error}" for r in self.runs if r.error is not None]
        if failed:
            raise SourceError("; ".join(failed))
        if self._failing:  # the last write, at exit, failed too: not a clean stop
            raise StateError(
                f"stopped without saving the state: cannot write {self.store.path}: {self._write_error}; the next "
                "start goes on from the last state written and reads again what came after it")

    def _on_stop(self, signum: int, frame: object) -> None:
        self.stop.set()
        for r in self.runs:
            r.source.close()

    def _on_hup(self, signum: int, frame: object) -> None:
        log.info("SIGHUP: re-scanning the sources")
        for r in self.runs:
            r.source.wake()


def _signals(on_stop: Callable[[int, Any], None], on_hup: Callable[[int, Any], None] | None
             ) -> dict[int, Any]:
    """Install the handlers; the previous ones, to restore."""
    wanted: dict[int, Any] = {signal.SIGTERM: on_stop, signal.SIGINT: on_stop}
    if hasattr(signal, "SIGHUP"):
        wanted[signal.SIGHUP] = on_hup or signal.SIG_IGN
    return {sig: signal.signal(sig, handler) for sig, handler in wanted.items()}


def _table(service: Service) -> view.LiveTable:
    """The live per-model table (`tail`'s), from the rich refresh thread."""
    with service.lock:
        agg = service.agg
        skipped = sum(n for r, n in agg.skipped.items() if r is not SkipReason.FILTERED)
        lag = sum(n for r in service.runs for n in r.source.lag_bytes().values())
        source = ", ".join(r.source.key for r in service.runs)
        footer = view.TableFooter(source=source, skipped=skipped, lag_bytes=lag, newest=agg.newest_time)
        return view.live_table(agg, footer=footer)


def _usable(saved: state.StateFile) -> str | None:
    """Why saved positions cannot be used by this version, or None."""
    for key, s in saved.sources.items():
        if s.positions is not None and s.positions.get("version") != POSITIONS_VERSION:
            return f"positions of {key} have version {s.positions.get('version')!r}"
    return None


def _logging() -> None:
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("logmetrics: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)


def _env(name: str) -> str:
    return f"LOGMETRICS_{name}"


def serve_cmd(
    paths: Annotated[list[str] | None, typer.Argument(
        help="Log file or glob to follow (quote a glob), or - for standard input.",
        envvar=_env("PATH"), show_default=False, metavar="PATH...")] = None,
    journal: Annotated[str | None, typer.Option(
        "--journal", help="Follow this systemd unit's journal instead of a file (e.g. litellm).",
        envvar=_env("JOURNAL"), show_default=False)] = None,
    user: Annotated[bool, typer.Option(
        "--user", help="--journal names a user unit (systemctl --user).", envvar=_env("USER"))] = False,
    poll: Annotated[bool, typer.Option(
        "--poll", help="Stat the files every 0.1 s instead of inotify (NFS, some FUSE filesystems).",
        envvar=_env("POLL"))] = False,
    listen: Annotated[str, typer.Option(
        "--listen", help="HOST:PORT for /metrics and /healthz.", envvar=_env("LISTEN"))] = DEFAULT_LISTEN,
    state_dir: Annotated[Path | None, typer.Option(
        "--state-dir", help="Where read positions and metric values persist across restarts "
        "(default: $XDG_STATE_HOME/logmetrics, i.e. ~/.local/state/logmetrics).",
        envvar=_env("STATE_DIR"), show_default=False)] = None,
    max_series: Annotated[int, typer.Option(
        "--max-series", help="Cardinality cap: distinct label sets kept before new ones are folded into "
        "an overflow series (and counted by family in the metric of dropped series).", envvar=_env("MAX_SERIES"))
    ] = DEFAULT_MAX_SERIES,
    max_line: Annotated[int, typer.Option(
        "--max-line-bytes", help="Longest line accepted, in bytes; longer lines are skipped and counted "
        "(too_long).", envvar=_env("MAX_LINE_BYTES"))] = DEFAULT_MAX_LINE_BYTES,
    end_user: Annotated[bool, typer.Option(
        "--end-user-label", help="Fill the end_user label from payload-only records, as LiteLLM does when "
        "its end-user cost tracking for Prometheus is on.", envvar=_env("END_USER_LABEL"))] = False,
    stall_seconds: Annotated[float, typer.Option(
        "--stall-seconds", help="/healthz fails when complete lines wait this long without being read.",
        envvar=_env("STALL_SECONDS"))] = 60.0,
    no_table: Annotated[bool, typer.Option(
        "--no-table", help="Do not show the live per-model table (shown when stdout is a terminal).",
        envvar=_env("NO_TABLE"))] = False,
    journal_dir: Annotated[str | None, typer.Option(
        "--journal-directory", hidden=True, envvar=_env("JOURNAL_DIRECTORY"))] = None,
    web_config: Annotated[Path | None, typer.Option(
        "--web-config", help="TLS and basic auth for /metrics and /healthz: a Prometheus exporter-toolkit web "
        "config file (tls_server_config, basic_auth_users: needs the bcrypt package), as node_exporter's "
        "--web.config.file reads.",
        envvar=_env("WEB_CONFIG"), show_default=False)] = None,
) -> None:
    """Follow LiteLLM's request log and serve LiteLLM's metrics on /metrics, surviving restarts.

    Example: logmetrics serve ~/.local/state/logmetrics/requests.log   (or: --journal litellm --user)
    """
    paths = paths or []
    if not paths and not journal:  # under systemd: no LOGMETRICS_PATH in ~/.config/logmetrics/env
        raise UsageError("give a log file (or glob, or - for stdin) or --journal UNIT "
                         "(or set LOGMETRICS_PATH or LOGMETRICS_JOURNAL)")
    if paths and journal:
        raise UsageError("give a log file (or glob, or - for stdin) or --journal UNIT, not both")
    if STDIN in paths and len(paths) > 1:
        raise UsageError("- (stdin) cannot be combined with files")
    if max_series < 1 or max_line < 1 or not stall_seconds > 0:  # NaN too: no stall would ever show
        raise UsageError("--max-series, --max-line-bytes and --stall-seconds must be positive")
    web = webconfig.load(web_config) if web_config is not None else None
    _logging()
    stop = threading.Event()  # SIGTERM/SIGINT during start-up: stop as soon as serving begins
    _signals(lambda signum, frame: stop.set(), None)
    agg = Aggregator(max_series=max_series)
    ingest = Ingest(agg, Parser(max_line_bytes=max_line, end_user_label=end_user))
    store = state.Store(state_dir or state.default_dir())
    store.open()
    try:
        saved = store.load(agg)
        why = _usable(saved) if saved is not None else None
        if saved is not None and why is not None:
            store.move_aside(why)
            saved, agg = None, Aggregator(max_series=max_series)
            ingest.agg = agg
        old = saved.sources if saved is not None else {}
        sources: list[Source] = []
        if journal:
            key = JournalFollower(journal, user=user).source
            sources.append(JournalSource(journal, old.get(key), user=user, directory=journal_dir))
        elif paths == [STDIN]:
            sources.append(StdinSource(max_line))
        else:
            for p in paths:
                sources.append(FileSource(p, old.get(f"file:{os.path.abspath(p)}"), poll=poll,
                                          max_line=max_line))
        service = Service(agg, ingest, store, saved, sources, listen=listen, stall_seconds=stall_seconds,
                          stop=stop, web=web)
        if no_table or not sys.stdout.isatty():
            service.run()
        else:
            with view.live_display(view.out_console(), lambda: _table(service)):
                service.run()
    finally:
        store.close()


state_app = typer.Typer(help="Show or reset the durable state of `logmetrics serve`.", no_args_is_help=True)

StateDir = Annotated[Path | None, typer.Option(
    "--state-dir", help="The state directory (default: $XDG_STATE_HOME/logmetrics).",
    envvar=_env("STATE_DIR"), show_default=False)]


@state_app.command("show")
def state_show(state_dir: StateDir = None,
               json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
               ) -> None:
    """Sources, read positions and series counts saved by `serve`."""
    store = state.Store(state_dir or state.default_dir())
    data = store.read()
    if data is None:
        raise StateError(f"no state in {store.directory} (serve has not run with this --state-dir)")
    agg = Aggregator(max_series=1 << 62)
    doc = state.load(agg, data)
    series = {s.family.name: len(s.values) for s in agg.project() if s.values}
    summary: dict[str, Any] = {
        "file": str(store.path), "written": doc.written, "version": doc.version, "records": agg.records,
        "series": sum(series.values()), "series_by_family": series, "counters": doc.counters,
        "sources": {k: msgspec.to_builtins(v) for k, v in doc.sources.items()},
    }
    if json_out:
        sys.stdout.buffer.write(msgspec.json.encode(summary) + b"\n")
        return
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(doc.written))
    out = [f"state file {store.path} (format {doc.version}, written {when})",
           f"records {agg.records}, series {summary['series']} in {len(series)} families, "
           f"state writes {doc.counters.get('state_writes', 0)}"]
    for key, s in doc.sources.items():
        out.append(f"source {key}")
        if s.cursor is not None:
            out.append(f"  cursor {s.cursor}")
        for f in (s.positions or {}).get("files", []):
            tag = "" if f.get("current") else " (rotated)"
            out.append(f"  {f.get('path')}: offset {f.get('offset')}, inode {f.get('ino')}{tag}")
    typer.echo("\n".join(out))


@state_app.command("reset")
def state_reset(state_dir: StateDir = None) -> None:
    """Delete the saved state: the next `serve` counts from 0 and reads the files from their start."""
    store = state.Store(state_dir or state.default_dir())
    if not store.directory.is_dir():
        typer.echo(f"no state in {store.directory}", err=True)
        return
    store.open()
    try:
        removed = store.reset()
    finally:
        store.close()
    typer.echo(f"{'removed' if removed else 'no state file in'} {store.path if removed else store.directory}",
               err=True)
