"""The journald source: records of a systemd unit, read through `journalctl -o json --all`.

Every line it yields is one whole JSON envelope as journalctl prints it; the parser unwraps
`MESSAGE` (a string, or an array of byte ints when the line is not valid UTF-8 or holds control
characters such as ANSI colours). `--all` is always passed: without it fields over 4096 bytes
come out as `null`.

`read_journal_file` reads a `.journal` file once (`logmetrics replay X.journal`).
`JournalFollower` follows a unit and yields `Batch`es; `cursor()` is the `__CURSOR` of the
last entry yielded (or skipped as too long), which the pipeline saves with its metric state so
that a restart resumes at it: no entry counted twice, none missed. A restart first reads from the
cursor to the journal's end without `--follow` (which implies `--boot=0`: entries of an earlier
boot after the cursor would be skipped), then follows. If the cursor's entry is gone (vacuumed
while logmetrics was stopped) it resumes at the next entry the journal holds, with a warning.

First start (no saved cursor): from *now* (`-n 0`), unless `since` is given (`--since`, e.g.
`"-1h"`, `"2026-11-22 07:00"`, `"@0"` for everything the journal holds). LiteLLM's own
`/metrics` counts from its process start, mtail starts at the end of its logs, and history read
at start-up becomes one step of a counter that `rate()`/`increase()` ignore anyway; the
journal may also hold weeks. After the first start the saved cursor makes sure nothing is
missed, across restarts of journalctl and of logmetrics.

Units: a system unit is `-u UNIT`; the caller's own user unit `--user-unit UNIT`. Another
user's unit (logmetrics running as root or in group `systemd-journal`) needs explicit matches,
`_SYSTEMD_USER_UNIT=UNIT _UID=N`, because `--user-unit` also matches `_UID=` of the caller:
pass `uid=N`.

`journalctl --file` cannot follow (journalctl 252: "Failed to get journal fd"), so the
follower reads a directory of journal files (`directory=`) when not reading the system journal.
"""

from __future__ import annotations

import json
import logging
import os
import re
import selectors
import subprocess
import tempfile
import threading
import time
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from logmetrics.errors import SourceError
from logmetrics.sources.batch import Batch

log = logging.getLogger(__name__)


def no_entries(source: str) -> str:
    """What to check when a unit's journal has no entry."""
    return (f"no journal entries for {source}: check the unit name and --user, and that this user may "
            "read the journal (group systemd-journal)")

JOURNAL_MAGIC = b"LPKSHHRH"
MAX_LINE_BYTES = 4 * 1024 * 1024  # one envelope; a 48K MESSAGE as byte ints is ~200K
READ_SIZE = 1 << 20
_CURSOR = re.compile(rb'"__CURSOR":"([^"\\]*)"')
_CURSOR_TAIL = 512  # bytes kept between reads of a dropped line, to find its cursor
_MISSING = "journalctl not found ({0}): install systemd (apt-get install systemd) or put it on PATH"


class UnreadableJournal(SourceError):
    """journalctl could not read (all of) a journal file: corrupt, or not a journal after all."""

    def __init__(self, path: Path | str, rc: int, message: str) -> None:
        super().__init__(f"journalctl could not read {path} (exit {rc}): {message}")
        self.reason = f"journalctl exit {rc}: {message}"  # without the file's name


def read_journal_file(path: Path | str, *, journalctl: str = "journalctl") -> Iterator[bytes]:
    """Every entry of a `.journal` file as its `journalctl -o json --all` line (no newline).
    Raises UnreadableJournal when journalctl fails on the file (after the entries it gave)."""
    pattern = re.sub(r"([\\*?\[])", r"\\\1", str(path))  # --file takes a glob
    argv = [journalctl, "--file", pattern, "-o", "json", "--all", "--no-pager"]
    with tempfile.TemporaryFile() as err:
        proc = _spawn(argv, stderr=err)
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                if line.strip():
                    yield line.rstrip(b"\n")
        finally:
            rc = _reap(proc)
        if rc != 0:
            err.seek(0)
            raise UnreadableJournal(path, rc, _text(err.read()))


@dataclass
class FollowStats:
    """What happened to the journalctl child; for `logmetrics_*` self-metrics and status lines."""

    restarts: int = 0  # journalctl exited (or was killed) and was started again
    entries: int = 0  # lines yielded
    skipped_too_long: int = 0
    cursor_gone: int = 0  # (re)starts where the saved cursor's entry was no longer in the journal
    empty_at_start: bool = False  # the unit had no entries when following began
    last_exit: int | None = None  # journalctl's last exit status (negative: killed by that signal)
    backoff: float = 0.0  # the wait before the last restart: doubles while journalctl keeps exiting
    last_error: str = ""  # the last text journalctl wrote on stderr


class JournalFollower:
    """Follows one unit's journal entries, restarting journalctl with backoff if it exits.

    Iterate it (once) for `Batch`es; after each batch `cursor()` is the checkpoint to save with
    the state that batch updated. `stop` (or `close()`) ends iteration within `poll` seconds and
    kills the child.

    When journalctl exits it is started again after `backoff_initial` seconds, doubling up to
    `backoff_max` while it keeps exiting; a run that lasted `backoff_max` resets the wait. If the
    very first run fails before printing anything (a bad cursor, an unreadable journal), that is
    a `SourceError` instead.
    """

    def __init__(
        self,
        unit: str,
        *,
        user: bool = False,
        uid: int | None = None,
        cursor: str | None = None,
        since: str | None = None,
        stop: threading.Event | None = None,
        journalctl: str = "journalctl",
        directory: Path | str | None = None,
        max_line_bytes: int = MAX_LINE_BYTES,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        poll: float = 0.2,
    ) -> None:
        self.unit = unit
        self.user = user or uid is not None
        self.uid = uid
        self.since = since
        self.stop = stop if stop is not None else threading.Event()
        self.journalctl = journalctl
        self.directory = Path(directory) if directory is not None else None
        self.max_line_bytes = max_line_bytes
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.poll = poll
        self.stats = FollowStats()
        self.source = f"journald:{'user:' if self.user else ''}{unit}"
        self._cursor = cursor
        self._started_at: float | None = None  # epoch of the first start, for restarts "from now"
        self._proc: subprocess.Popen[bytes] | None = None

    def cursor(self) -> str | None:
        """`__CURSOR` of the last entry yielded (or skipped as too long); None before any."""
        return self._cursor

    @property
    def pid(self) -> int | None:
        """The running journalctl's pid (tests kill it)."""
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    def close(self) -> None:
        self.stop.set()

    def matches(self) -> list[str]:
        """journalctl arguments that select the unit's entries."""
        if self.uid is not None:
            unit = self.unit if "." in self.unit else self.unit + ".service"
            return [f"_SYSTEMD_USER_UNIT={unit}", f"_UID={self.uid}"]
        return ["--user-unit" if self.user else "-u", self.unit]

    def argv(self, *, follow: bool = True) -> list[str]:
        """The command line for the current checkpoint: following, or (`follow=False`) the
        catch-up read from the saved cursor to the journal's current end."""
        where = ["--directory", str(self.directory)] if self.directory is not None else []
        argv = [self.journalctl, *where, "-o", "json", "--all", "--no-pager"]
        if follow:
            argv.append("--follow")
        # --cursor, not --after-cursor: journalctl skips the first entry it finds after an
        # --after-cursor whether or not it is the cursor's own, so when that entry is gone (the
        # journal vacuumed, or --follow's implied --boot=0 after a reboot) one more is lost. The
        # cursor's own entry is dropped here instead (`_LineSplitter.expect`), only if it is it.
        # --no-tail: with --follow, journalctl 252 otherwise prints only 10 entries after the
        # cursor and then jumps to new ones, silently dropping the rest.
        if self._cursor is not None:
            argv += ["--cursor", self._cursor, "--no-tail"]
        elif self.since is not None:
            argv += ["--since", self.since, "--no-tail"]
        elif self._started_at is not None:  # restarted before any entry arrived
            argv += ["--since", f"@{self._started_at:.6f}", "--no-tail"]
        else:
            argv += ["-n", "0"]
        return argv + self.matches()

    def __iter__(self) -> Generator[Batch, None, None]:
        self._probe()
        delay = self.backoff_initial
        first = True
        while not self.stop.is_set():
            # With a cursor, first read from it to the end without --follow: `journalctl --follow`
            # implies `--boot=0` (journalctl 250+), so it would skip what the unit logged after the
            # cursor in an earlier boot (the entries between the last state write and a reboot).
            catch_up = self._cursor is not None
            argv = self.argv(follow=not catch_up)
            if self._started_at is None:
                self._started_at = time.time()
            started = time.monotonic()
            produced, rc = yield from self._journalctl(argv, warn_gone=catch_up)
            if self.stop.is_set():
                return
            if first and not produced and rc > 0:
                raise SourceError(f"journalctl failed for {self.source} (exit {rc}): {self.stats.last_error}")
            if catch_up and rc == 0:
                started = time.monotonic()
                _, rc = yield from self._journalctl(self.argv(), warn_gone=False)  # from the catch-up's end
                if self.stop.is_set():
                    return
            first = False
            if time.monotonic() - started >= self.backoff_max:  # it ran well: not a crash loop
                delay = self.backoff_initial
            log.warning("journalctl for %s exited (%s); restarting in %.1fs", self.source, rc, delay)
            self.stats.restarts += 1
            self.stats.backoff = delay
            if self.stop.wait(delay):
                return
            delay = min(delay * 2, self.backoff_max)

    def _journalctl(self, argv: list[str], *, warn_gone: bool) -> Generator[Batch, None, tuple[bool, int]]:
        """One journalctl process: its batches; then whether it gave any, and its exit status."""
        produced = False
        self._proc = proc = _spawn(argv, stderr=subprocess.PIPE)
        try:
            for batch in self._read(proc, warn_gone=warn_gone):
                produced = True
                yield batch
        finally:
            rc = self.stats.last_exit = _reap(proc)
        return produced, rc

    def _probe(self) -> None:
        """Fail early on a missing journalctl or an unreadable journal; note an empty unit."""
        where = ["--directory", str(self.directory)] if self.directory is not None else []
        argv = [self.journalctl, *where, "-o", "json", "--all", "--no-pager", "-n", "1", *self.matches()]
        try:
            done = subprocess.run(argv, capture_output=True, timeout=60, check=False)
        except FileNotFoundError:
            raise SourceError(_MISSING.format(self.journalctl)) from None
        except subprocess.TimeoutExpired:
            return
        err = _text(done.stderr)
        if done.returncode != 0:
            raise SourceError(
                f"journalctl cannot read the journal of {self.source} (exit {done.returncode}): {err}"
            )
        if not done.stdout.strip():
            self.stats.empty_at_start = True
            log.warning("%s%s", no_entries(self.source), f"; journalctl said: {err}" if err else "")

    def _read(self, proc: subprocess.Popen[bytes], *, warn_gone: bool) -> Iterator[Batch]:
        """Batches of journalctl's output; the first entry is dropped when it is the saved
        cursor's own (journalctl started with `--cursor`), which was counted before."""
        assert proc.stdout is not None and proc.stderr is not None
        lines = _LineSplitter(self.max_line_bytes, expect=self._cursor)
        joiner = LineMaxJoiner(self.max_line_bytes)  # pieces still waiting at exit are read again
        errors = bytearray()
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ, "out")
            sel.register(proc.stderr, selectors.EVENT_READ, "err")
            open_fds = 2
            while open_fds and not self.stop.is_set():
                for key, _ in sel.select(self.poll):
                    chunk = os.read(key.fd, READ_SIZE)
                    if not chunk:
                        sel.unregister(key.fileobj)
                        open_fds -= 1
                        continue
                    if key.data == "err":
                        errors = (errors + chunk)[-4096:]
                        self.stats.last_error = _text(bytes(errors))
                        continue
                    complete, skipped, cursor = lines.feed(chunk)
                    complete, dropped, given_out = joiner.feed(complete)
                    skipped += dropped
                    if joiner.pending:  # the checkpoint stays before the first piece not given out
                        cursor = given_out
                    if lines.gone is not None and warn_gone:
                        self.stats.cursor_gone += 1
                        log.warning(
                            "the journal no longer holds the entry of the saved cursor of %s (vacuumed or "
                            "rotated away while logmetrics was stopped): resuming at the next entry it holds "
                            "(%s); entries logged in between were deleted unread",
                            self.source, lines.gone,
                        )
                        warn_gone = False
                    if not complete and not skipped:
                        if cursor is not None:  # only the cursor's own entry, dropped
                            self._cursor = cursor
                        continue
                    if cursor is not None:
                        self._cursor = cursor
                    self.stats.entries += len(complete)
                    self.stats.skipped_too_long += skipped
                    yield Batch(self.source, complete, skipped)


class _LineSplitter:
    """Splits journalctl's output into lines, dropping (and counting) lines over `max_len`
    while still finding their `__CURSOR`, so that the checkpoint moves past them too.

    `expect`: the cursor journalctl was started at (`--cursor`); the first entry is dropped
    uncounted if it is that cursor's own. If it is another one, `gone` becomes its cursor."""

    def __init__(self, max_len: int, expect: str | None = None) -> None:
        self.max_len = max_len
        self.expect = expect
        self.gone: str | None = None
        self.pending = b""
        self.dropping = False
        self.dropped_cursor: str | None = None
        self.tail = b""

    def _scan(self, data: bytes) -> None:
        data = self.tail + data
        found = _CURSOR.findall(data)
        if found:
            self.dropped_cursor = found[-1].decode("ascii", "replace")
        self.tail = data[-_CURSOR_TAIL:]

    def _seen_again(self, cursor: str | None) -> bool:
        """Whether the entry with `cursor` is the first one and the expected cursor's own."""
        if self.expect is None:
            return False
        expect, self.expect = self.expect, None
        if cursor == expect:
            return True
        self.gone = cursor or "?"
        return False

    def feed(self, chunk: bytes) -> tuple[list[bytes], int, str | None]:
        """Complete lines, lines dropped, and the cursor of the last complete entry in `chunk`."""
        skipped = 0
        cursor: str | None = None
        if self.dropping:
            end = chunk.find(b"\n")
            self._scan(chunk if end < 0 else chunk[:end])
            if end < 0:
                return [], 0, None
            skipped, cursor = (0 if self._seen_again(self.dropped_cursor) else 1), self.dropped_cursor
            self.dropping, self.dropped_cursor, self.tail = False, None, b""
            chunk = chunk[end + 1 :]
        parts = (self.pending + chunk).split(b"\n")
        rest = parts.pop()
        out: list[bytes] = []
        for part in parts:
            if not part:
                continue
            if self.expect is not None:
                own = _cursor_of(part)
                if self._seen_again(own):
                    cursor = own
                    continue
            if len(part) > self.max_len:
                skipped += 1
            else:
                out.append(part)
        if parts and parts[-1]:
            cursor = _cursor_of(parts[-1]) or cursor
        if len(rest) > self.max_len:
            self.dropping, self.dropped_cursor, self.tail, self.pending = True, None, b"", b""
            self._scan(rest)
        else:
            self.pending = rest
        return out, skipped, cursor


_LINE_MAX = b'"_LINE_BREAK":"line-max"'


@dataclass
class _Split:
    """A line journald split at its LineMax: the pieces so far, and the last piece's envelope once it came."""

    key: str  # its stream
    pieces: list[bytes] = field(default_factory=list)
    size: int = 0
    envelope: dict[str, Any] | None = None


class LineMaxJoiner:
    """Joins the entries journald made of one line longer than its LineMax (48K by default):
    every piece but the last carries `_LINE_BREAK=line-max`; pieces of one stream (`_STREAM_ID`,
    else `_PID`) are joined into one envelope: the last piece's fields, with the whole MESSAGE
    (a string, or byte ints when it is not valid UTF-8). Each piece alone would be taken for a
    plain-text log line, and a LiteLLM record so split was lost without a trace.

    Order is kept: entries after a piece wait until its line is complete, so the checkpoint
    (`feed`'s cursor: the last entry given out) never passes a piece not yet given out. When the
    pieces and entries waiting exceed `max_len` bytes, the oldest unfinished line is dropped
    (counted) and the rest goes on. `feed` is cheap while no piece waits: one substring test."""

    def __init__(self, max_len: int) -> None:
        self.max_len = max_len
        self.queue: list[bytes | _Split] = []  # entries, and split lines, in journal order
        self.open: dict[str, _Split] = {}  # stream -> its line still being split
        self.held = 0

    @property
    def pending(self) -> bool:
        return bool(self.queue)

    def feed(self, lines: Iterable[bytes]) -> tuple[list[bytes], int, str | None]:
        """Entries to give out now, lines dropped, and the cursor of the last one given out or
        dropped (None: none)."""
        out: list[bytes] = []
        skipped = 0
        cursor: str | None = None
        last: bytes | None = None  # the last entry given out as it came: its cursor is read once, at the end
        for line in lines:
            if not self.queue and _LINE_MAX not in line:
                out.append(line)
                last = line
                continue
            self._add(line)
            while self.held > self.max_len and self._drop_oldest():
                skipped += 1
            n, c = self._flush(out)
            skipped += n
            if c is not None:
                cursor, last = c, None
        if last is not None:
            cursor = _cursor_of(last) or cursor
        return out, skipped, cursor

    def finish(self) -> tuple[list[bytes], int]:
        """At the end of a journal file: lines never completed are dropped (counted)."""
        out: list[bytes] = []
        skipped = 0
        while self.queue:
            skipped += self._drop_oldest()  # 0 once no line is unfinished: then all flush
            n, _ = self._flush(out)
            skipped += n
        return out, skipped

    def _add(self, line: bytes) -> None:
        try:
            env = json.loads(line)
        except ValueError:
            env = None
        if not isinstance(env, dict):
            self.queue.append(line)
            self.held += len(line)
            return
        key = f"{env.get('_SYSTEMD_UNIT')}/{env.get('_SYSTEMD_USER_UNIT')}/{env.get('_STREAM_ID') or env.get('_PID')}"
        piece = _message_bytes(env.get("MESSAGE"))
        split = self.open.get(key)
        if split is None:
            if env.get("_LINE_BREAK") != "line-max":
                self.queue.append(line)
                self.held += len(line)
                return
            split = self.open[key] = _Split(key)
            self.queue.append(split)
        split.pieces.append(piece)
        split.size += len(piece)
        self.held += len(piece)
        if env.get("_LINE_BREAK") != "line-max":  # the last piece
            del self.open[key]
            env["MESSAGE"] = b"".join(split.pieces)
            split.envelope = env

    def _drop_oldest(self) -> int:
        """Drop the oldest unfinished line (1), or give nothing if the head is an entry (0)."""
        for i, item in enumerate(self.queue):
            if isinstance(item, _Split) and item.envelope is None:
                del self.queue[i]
                self.open.pop(item.key, None)
                self.held -= item.size
                return 1
        return 0

    def _flush(self, out: list[bytes]) -> tuple[int, str | None]:
        skipped = 0
        cursor: str | None = None
        while self.queue:
            item = self.queue[0]
            if isinstance(item, bytes):
                line = item
                self.held -= len(line)
            else:
                env = item.envelope
                if env is None:
                    break
                self.held -= item.size
                message: bytes = env.pop("MESSAGE")
                env.pop("_LINE_BREAK", None)
                try:
                    env["MESSAGE"] = message.decode("utf-8")
                except UnicodeDecodeError:
                    env["MESSAGE"] = list(message)
                line = json.dumps(env, ensure_ascii=False, separators=(",", ":")).encode()
            self.queue.pop(0)
            if len(line) > self.max_len:
                skipped += 1
            else:
                out.append(line)
            cursor = _cursor_of(line) or cursor
        return skipped, cursor


def _message_bytes(value: object) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, list):
        return bytes(b & 0xFF for b in value if isinstance(b, int))
    return b""


def _cursor_of(line: bytes) -> str | None:
    found = _CURSOR.search(line)
    return found.group(1).decode("ascii", "replace") if found is not None else None


def _spawn(argv: list[str], *, stderr: int | IO[bytes]) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr)
    except FileNotFoundError:
        raise SourceError(_MISSING.format(argv[0])) from None
    except PermissionError as e:
        raise SourceError(f"cannot run {argv[0]}: {e.strerror}") from None


def _reap(proc: subprocess.Popen[bytes]) -> int:
    """Stop the child if it still runs and wait for it (no zombie); its exit status."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
    rc = proc.wait()
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    return rc


def _text(data: bytes) -> str:
    return " ".join(data.decode("utf-8", "replace").split())
