"""The file source: follows a log file (or every match of a glob) and yields its complete lines.

A followed file is known by its identity (device + inode, confirmed by a digest of its first
bytes), never by its name, so a rename+create rotation is seen as "the file we read moved away and
a new one took its name": the old file stays open and is drained to its end (and for
`rotate_wait` seconds more, for a writer that still appends after the rename), then the new one
is read from its start. A file whose bytes just before the read position changed was truncated
(copytruncate, truncation in place, a rewrite): it is read again from its start, after what was
not yet read is recovered from the copy if one is found next to it.

Wake-ups are event-driven: a plain inotify binding (ctypes, Linux) on the directories involved,
filtered by name, so an idle follower sleeps in `select()` and an append is read within a
millisecond. Where inotify is not available watchfiles is used (20 ms step), and `poll=True`
stats the files every `poll_interval` seconds (filesystems without inotify: NFS, some FUSE).

`positions()` is the checkpoint: per open file its identity, the offset after the last line
yielded (a partial last line is not consumed) and a digest of the bytes just before it. Passed
back as `positions=` after a restart, every file is found again, under whatever name it now has
in the same directory, and verified, so exactly the lines after the checkpoint are yielded.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import glob
import hashlib
import logging
import os
import select
import stat
import struct
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Literal, Protocol

from logmetrics.errors import SourceError
from logmetrics.sources.archive import COMPRESSED
from logmetrics.sources.batch import Batch

__all__ = ["Backend", "Batch", "FileFollower", "SourceStats"]

log = logging.getLogger(__name__)

Backend = Literal["auto", "inotify", "watchfiles", "poll"]
Wakeup = Literal["timeout", "data", "rescan"]

FP_LEN = 512  # bytes of a file's start whose digest confirms its identity
_SEEK_DATA: int | None = getattr(os, "SEEK_DATA", None)
CHECK_LEN = 256  # bytes before the offset whose digest detects truncation and rewrites
POSITIONS_VERSION = 1
_TURN_BYTES = 64 << 20  # read at most this much of one file before looking at the others
_STOP_CHECK = 0.25  # seconds between looks at `stop` while idle


_COMPRESSED = tuple(COMPRESSED)  # magic bytes of the compressed files a rotation leaves beside the log


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


@dataclass
class SourceStats:
    """Counters of one source (a name the pattern matched), for `logmetrics_*` self-metrics."""

    bytes_read: int = 0
    lines: int = 0
    rotations: int = 0  # the name came to hold another file (or none)
    truncations: int = 0  # copytruncate, truncation in place, rewrite
    too_long: int = 0
    open_errors: int = 0  # failures to open (counted once until it opens)
    lost_files: int = 0  # checkpointed files not found again at restart
    partial_dropped: int = 0  # unterminated last lines of files closed after rotation


@dataclass(eq=False)
class _Tail:
    """One open file."""

    source: str  # the name it was found under: Batch.source and the stats key
    path: str  # the name it had when last seen
    real_dir: str  # its directory, symlinks resolved: watched, and searched for rotated copies
    real_name: str
    fd: int
    dev: int
    ino: int
    seq: int
    offset: int = 0  # after the last consumed byte (lines yielded or skipped)
    partial: bytes = b""  # bytes read after `offset`: an unterminated line
    skipping: bool = False  # inside a line over the limit (partial is empty)
    ctail: bytes = b""  # the last <= CHECK_LEN bytes before `offset`
    fp: str = ""
    fp_len: int = 0
    size: int = 0
    seen: tuple[int, int] = (-1, -1)  # (size, mtime_ns) when last read to its end
    current: bool = True  # the name still holds this file
    idle_since: float = 0.0
    predecessor: _Tail | None = None  # the file this one replaced at the same name
    zero_at: int = 0  # mtime (ns) of a truncation noticed, while nothing was read since

    @property
    def read_pos(self) -> int:
        return self.offset + len(self.partial)


@dataclass
class _Interest:
    """Which names in a watched directory matter."""

    names: set[str] = field(default_factory=set)
    globs: set[str] = field(default_factory=set)
    everything: bool = False  # a rotated file we still drain lives here, under a name we don't know

    def wants(self, name: str) -> bool:
        return self.everything or name in self.names or any(fnmatchcase(name, g) for g in self.globs)


class _Waker(Protocol):
    def watch(self, plan: dict[str, _Interest], tracked: set[str]) -> None: ...
    def wait(self, timeout: float) -> Wakeup: ...
    def wake(self) -> None: ...
    def moved(self) -> list[tuple[str, str]]: ...
    def close(self) -> None: ...


class _Pipe:
    """A self-pipe: `wake()` from any thread (or a signal handler) ends a `select()`."""

    def __init__(self) -> None:
        self.r, self.w = os.pipe()
        os.set_blocking(self.r, False)
        os.set_blocking(self.w, False)

    def wake(self) -> None:
        if self.w < 0:
            return
        try:
            os.write(self.w, b"x")
        except (BlockingIOError, OSError):
            pass

    def moved(self) -> list[tuple[str, str]]:
        """Renames seen since the last call, (from, to): only inotify tells them."""
        return []

    def drain(self) -> None:
        try:
            while os.read(self.r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        fds, self.r, self.w = (self.r, self.w), -1, -1
        for fd in fds:
            if fd >= 0:
                os.close(fd)


class _PollWaker(_Pipe):
    def __init__(self, interval: float) -> None:
        super().__init__()
        self.interval = interval

    def watch(self, plan: dict[str, _Interest], tracked: set[str]) -> None:
        pass

    def wait(self, timeout: float) -> Wakeup:
        ready, _, _ = select.select([self.r], [], [], max(0.0, min(timeout, self.interval)))
        self.drain()
        return "rescan" if ready or timeout >= self.interval else "timeout"


_IN_MODIFY, _IN_ATTRIB, _IN_CLOSE_WRITE = 0x2, 0x4, 0x8
_IN_MOVED_FROM, _IN_MOVED_TO, _IN_CREATE, _IN_DELETE = 0x40, 0x80, 0x100, 0x200
_IN_DELETE_SELF, _IN_MOVE_SELF, _IN_Q_OVERFLOW, _IN_IGNORED = 0x400, 0x800, 0x4000, 0x8000
_IN_ONLYDIR = 0x01000000
_IN_MASK = (
    _IN_MODIFY
    | _IN_ATTRIB
    | _IN_CLOSE_WRITE
    | _IN_MOVED_FROM
    | _IN_MOVED_TO
    | _IN_CREATE
    | _IN_DELETE
    | _IN_DELETE_SELF
    | _IN_MOVE_SELF
    | _IN_ONLYDIR
)
_EVENT = struct.Struct("iIII")


class _InotifyWaker(_Pipe):
    """inotify on directories (the files' and the nearest existing ancestor of missing ones)."""

    def __init__(self) -> None:
        if not sys.platform.startswith("linux"):
            raise OSError(errno.ENOSYS, "inotify is Linux only")
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self._add = libc.inotify_add_watch
        self._add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self._add.restype = ctypes.c_int
        self._rm = libc.inotify_rm_watch
        self._rm.argtypes = [ctypes.c_int, ctypes.c_int]
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            e = ctypes.get_errno()
            raise OSError(e, f"inotify_init1: {os.strerror(e)}")
        super().__init__()
        self.fd: int = fd
        self._wds: dict[str, int] = {}
        self._interest: dict[int, list[_Interest]] = {}
        self._tracked: set[str] = set()
        self._dirs: dict[int, str] = {}
        self._moves: dict[int, str] = {}  # cookie -> the path a wanted name was renamed from
        self._moved: list[tuple[str, str]] = []
        self._full = False

    def watch(self, plan: dict[str, _Interest], tracked: set[str]) -> None:
        self._tracked = tracked
        for d in [d for d in self._wds if d not in plan]:
            wd = self._wds.pop(d)
            if wd not in self._wds.values():
                self._rm(self.fd, wd)
        for d in plan:
            if d not in self._wds:
                wd = self._add(self.fd, os.fsencode(d), _IN_MASK)
                if wd >= 0:
                    self._wds[d] = wd
                elif ctypes.get_errno() == errno.ENOSPC and not self._full:
                    self._full = True  # still read every _STOP_CHECK s and rescanned every rescan_interval
                    log.warning("inotify watch limit reached (fs.inotify.max_user_watches): %s is polled", d)
        self._interest = {}
        for d, wd in self._wds.items():
            self._interest.setdefault(wd, []).append(plan[d])
            self._dirs.setdefault(wd, d)

    def moved(self) -> list[tuple[str, str]]:
        moved, self._moved = self._moved, []
        self._moves.clear()
        return moved

    def wait(self, timeout: float) -> Wakeup:
        deadline = time.monotonic() + timeout
        while True:
            left = max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.fd, self.r], [], [], left)
            if self.r in ready:
                self.drain()
                self._events()
                return "rescan"
            if not ready:
                return "timeout"
            what = self._events()
            if what is not None:
                return what

    def _events(self) -> Wakeup | None:
        what: Wakeup | None = None
        while True:
            try:
                buf = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return what
            off = 0
            while off + _EVENT.size <= len(buf):
                wd, mask, cookie, n = _EVENT.unpack_from(buf, off)
                name = os.fsdecode(buf[off + _EVENT.size : off + _EVENT.size + n].rstrip(b"\0"))
                off += _EVENT.size + n
                if mask & (_IN_Q_OVERFLOW | _IN_IGNORED | _IN_DELETE_SELF | _IN_MOVE_SELF):
                    if mask & _IN_IGNORED:
                        self._wds = {d: w for d, w in self._wds.items() if w != wd}
                        self._dirs.pop(wd, None)
                    what = "rescan"
                elif mask & _IN_MOVED_TO and cookie in self._moves and wd in self._dirs:
                    self._moved.append((self._moves.pop(cookie), os.path.join(self._dirs[wd], name)))
                    what = "rescan"
                elif any(i.wants(name) for i in self._interest.get(wd, ())):
                    if mask & _IN_MOVED_FROM and wd in self._dirs:
                        self._moves[cookie] = os.path.join(self._dirs[wd], name)
                    if mask & ~(_IN_MODIFY | _IN_CLOSE_WRITE) or name not in self._tracked:
                        what = "rescan"
                    elif what is None:
                        what = "data"

    def close(self) -> None:
        super().close()
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


class _WatchfilesWaker(_Pipe):
    """watchfiles (inotify/FSEvents/kqueue through notify): where the inotify binding is not available."""

    def __init__(self, step_ms: int) -> None:
        super().__init__()
        self.step_ms = step_ms
        self._dirs: list[str] = []
        self._notify: Any = None
        self.woken = False

    def is_set(self) -> bool:  # watchfiles' stop_event protocol
        return self.woken

    def watch(self, plan: dict[str, _Interest], tracked: set[str]) -> None:
        dirs = sorted(d for d in plan if os.path.isdir(d))
        if dirs == self._dirs and self._notify is not None:
            return
        from watchfiles._rust_notify import RustNotify

        self.close_notify()
        self._dirs = dirs
        if dirs:
            try:
                self._notify = RustNotify(dirs, False, False, 300, False, True)
            except (OSError, RuntimeError) as e:
                log.warning("watchfiles cannot watch %s: %s", dirs, e)

    def wait(self, timeout: float) -> Wakeup:
        if self._notify is None or self.woken:
            ready, _, _ = select.select([self.r], [], [], 0 if self.woken else timeout)
            self.drain()
            woken, self.woken = self.woken or bool(ready), False
            return "rescan" if woken else "timeout"
        got = self._notify.watch(2 * self.step_ms, self.step_ms, max(1, int(timeout * 1000)), self)
        if got == "signal":
            raise KeyboardInterrupt
        if got == "timeout":
            return "timeout"
        self.woken = False
        self.drain()
        return "rescan"

    def wake(self) -> None:
        self.woken = True
        super().wake()

    def close_notify(self) -> None:
        if self._notify is not None:
            self._notify.close()
            self._notify = None

    def close(self) -> None:
        self.close_notify()
        super().close()


def _make_waker(backend: Backend, poll_interval: float, step_ms: int) -> _Waker:
    if backend == "poll":
        return _PollWaker(poll_interval)
    if backend in ("auto", "inotify"):
        try:
            return _InotifyWaker()
        except (OSError, AttributeError) as e:
            if backend == "inotify":
                raise SourceError(f"inotify is not available ({e}): use --poll") from None
    return _WatchfilesWaker(step_ms)


def _open(path: str) -> tuple[int, os.stat_result]:
    """Open a regular file without blocking (a FIFO would block); OSError otherwise."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        raise
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise IsADirectoryError(errno.EINVAL, "not a regular file", path)
    return fd, st


def _ident(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _pread(fd: int, n: int, pos: int) -> bytes:
    try:
        return os.pread(fd, n, pos) if n > 0 and pos >= 0 else b""
    except OSError:
        return b""


class FileFollower:
    """Follows `pattern` (a path or a glob) and yields `Batch`es of complete lines.

    Iterate it once. Blocks while idle; returns when `stop` is set (after a last pass reading
    what has been written), or when the consumer stops iterating. After each batch,
    `positions()` is the checkpoint covering exactly the lines yielded so far. A batch may be
    empty: the positions changed without a line (a rotation, a truncation, a file opened or
    closed), so that a consumer saving them after each batch saves that too.
    """

    def __init__(
        self,
        pattern: str,
        *,
        positions: dict[str, Any] | None = None,
        max_line_bytes: int = 1 << 20,
        poll: bool = False,
        from_end: bool = False,
        stop: threading.Event | None = None,
        backend: Backend = "auto",
        poll_interval: float = 0.1,
        rotate_wait: float = 5.0,
        rescan_interval: float = 1.0,
        read_size: int = 1 << 20,
        max_batch_lines: int = 1 << 16,
        watchfiles_step_ms: int = 20,
    ) -> None:
        self.pattern = pattern
        self.max_line_bytes = max_line_bytes
        self.rotate_wait = rotate_wait
        self.rescan_interval = rescan_interval
        self.read_size = read_size
        self.max_batch_lines = max_batch_lines
        self.stop = stop if stop is not None else threading.Event()
        self.stats: dict[str, SourceStats] = {}
        self.backend: Backend = "poll" if poll else backend
        self._magic = glob.has_magic(pattern)
        self._tails: dict[tuple[int, int], _Tail] = {}
        self._seq = 0
        self._failing: dict[str, str] = {}  # names that cannot be opened, and why
        self._warned: set[str] = set()
        self._last_scan = 0.0
        # recently closed files: ident -> (fp, fp_len, offset, ctail, skipping), so a file seen
        # again (under any name) goes on where it was, never read again as new
        self._closed: dict[tuple[int, int], tuple[str, int, int, bytes, bool]] = {}
        self._claimed: set[tuple[int, int]] = set()  # idents of the checkpoint's files (restart)
        if not self._magic:
            self._check_path()
            self._stats(pattern)
        self._waker = _make_waker(self.backend, poll_interval, watchfiles_step_ms)
        if positions:
            self._resume(positions)
        self._scan(from_end=from_end and not positions)

    # -- public -----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Batch]:
        last_passes = 3  # after `stop`: read what is there, but not forever behind a busy writer
        shape = self._shape()
        try:
            while True:
                stopping = self.stop.is_set()
                if stopping:
                    self._scan()
                    last_passes -= 1
                progressed = False
                for t in self._order():
                    for batch in self._drain(t):
                        progressed = True
                        yield batch
                        shape = self._shape()
                self._expire(time.monotonic())
                if self._shape() != shape:  # rotated, truncated, opened, closed: no line to show it
                    shape = self._shape()
                    yield Batch(self.pattern, [])
                if stopping and (not progressed or last_passes == 0):
                    return
                woke = self._waker.wait(0.0 if progressed else self._timeout())
                if woke == "rescan" or time.monotonic() - self._last_scan >= self.rescan_interval:
                    self._scan()
        finally:
            self.close_files()

    def _shape(self) -> list[tuple[int, int, int, bool, int]]:
        """What of the checkpoint can change without a line being yielded."""
        return [(t.dev, t.ino, t.offset, t.current, t.zero_at) for t in self._tails.values()]

    def positions(self) -> dict[str, Any]:
        """JSON-serialisable checkpoint: pass it back as `positions=` after a restart."""
        files = []
        tails = list(self._tails.values())  # one C-level copy: safe while another thread iterates
        tails.sort(key=lambda t: t.seq)
        for t in tails:
            files.append(
                {
                    "source": t.source,
                    "path": t.path,
                    "dir": t.real_dir,
                    "dev": t.dev,
                    "ino": t.ino,
                    "fp": t.fp,
                    "fp_len": t.fp_len,
                    "offset": t.offset,
                    "size": t.size,  # as last seen: a rotated file read to its end has offset == size
                    "check": _digest(t.ctail),
                    "check_len": len(t.ctail),
                    "skipping": t.skipping,
                    "current": t.current,
                    "zero_at": t.zero_at,
                }
            )
        return {"version": POSITIONS_VERSION, "pattern": self.pattern, "files": files}

    def lag_bytes(self) -> dict[str, int]:
        """Bytes written but not yet consumed, per source (as of the last look at each file)."""
        lag: dict[str, int] = dict.fromkeys(self.stats, 0)
        for t in list(self._tails.values()):
            lag[t.source] = lag.get(t.source, 0) + max(0, t.size - t.offset)
        return lag

    def unreadable(self) -> dict[str, str]:
        """Followed names that exist but cannot be opened (permissions), and why; they are tried
        again on every change and rescan. Safe from any thread."""
        out = {}
        for name, why in list(self._failing.items()):
            try:
                os.stat(name)
            except FileNotFoundError:
                continue  # gone: not a problem of this name any more
            except OSError:
                pass  # a directory on the way we may not search
            out[name] = why
        return out

    def wake(self) -> None:
        """Force a re-scan now (tests, SIGHUP). Safe from any thread."""
        self._waker.wake()

    def close(self) -> None:
        """Stop iterating (after a last pass), from any thread."""
        self.stop.set()
        self._waker.wake()

    def close_files(self) -> None:
        """Close every file (positions() still answers); iteration has ended."""
        for t in list(self._tails.values()):
            self._close(t, forget=False)
        self._waker.close()

    # -- discovery --------------------------------------------------------------------------

    def _check_path(self) -> None:
        try:
            st = os.stat(self.pattern)
        except OSError:
            return  # not there yet, or not readable yet: followed once it is
        kind = (
            "a directory"
            if stat.S_ISDIR(st.st_mode)
            else "a FIFO"
            if stat.S_ISFIFO(st.st_mode)
            else "a device"
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
            else "a socket"
            if stat.S_ISSOCK(st.st_mode)
            else None
        )
        if kind is not None:
            hint = " (give a file, or a glob such as DIR/*.log)" if kind == "a directory" else ""
            raise SourceError(f"{self.pattern} is {kind}, not a regular file{hint}")

    def _stats(self, source: str) -> SourceStats:
        s = self.stats.get(source)
        if s is None:
            s = self.stats[source] = SourceStats()
        return s

    def _matches(self) -> list[str]:
        return sorted(glob.glob(self.pattern)) if self._magic else [self.pattern]

    def _scan(self, from_end: bool = False) -> None:
        """Match names, open new files, notice names that hold another file now."""
        self._last_scan = time.monotonic()
        for src, dst in self._waker.moved():
            self._moved_away(src, dst)
        seen: dict[str, tuple[int, int]] = {}
        for name in self._matches():
            try:
                st = os.stat(name)
            except FileNotFoundError:
                continue
            except OSError as e:  # a directory on the way we may not search
                self._open_failed(name, e)
                continue
            if not stat.S_ISREG(st.st_mode):
                if name not in self._warned:
                    self._warned.add(name)
                    log.warning("%s is not a regular file; not followed", name)
                continue
            ident = (st.st_dev, st.st_ino)
            t = self._tails.get(ident)
            if t is None:
                t = self._open_new(name, from_end)
                if t is None:
                    continue
                ident = (t.dev, t.ino)
            elif self._magic and (t.path != name or not t.current):
                # renamed (maybe while stopped) to another name the glob matches: still followed,
                # from where it was, never read again as new
                t.path, t.current = name, True
            if ident == (st.st_dev, st.st_ino):
                t.size = st.st_size
            seen[name] = ident
        now = time.monotonic()
        for t in list(self._tails.values()):
            if t.current and seen.get(t.path) != (t.dev, t.ino):
                t.current = False
                t.idle_since = now
                self._stats(t.source).rotations += 1
        self._watch()

    def _moved_away(self, src: str, dst: str) -> None:
        """A file was renamed away from a followed name: if we never opened it (created and
        rotated between two looks), read it now from its start, under its old name."""
        if src != self.pattern and not (self._magic and fnmatchcase(src, self.pattern)):
            return
        try:
            fd, st = _open(dst)
        except OSError:
            return
        ident = (st.st_dev, st.st_ino)
        if ident in self._tails or self._known_closed(ident, fd) is not None:
            os.close(fd)
            return
        t = self._add(src, dst, fd, st)
        t.current = False
        self._stats(src).rotations += 1

    def _open_new(self, name: str, from_end: bool) -> _Tail | None:
        try:
            fd, st = _open(name)
        except FileNotFoundError:
            return None
        except OSError as e:
            self._open_failed(name, e)
            return None
        self._failing.pop(name, None)
        ident = (st.st_dev, st.st_ino)
        if ident in self._tails:  # replaced between stat() and open(): same file after all
            os.close(fd)
            return self._tails[ident]
        known = self._known_closed(ident, fd)
        prev = next((t for t in self._tails.values() if t.current and t.path == name), None)
        t = self._add(name, name, fd, st)
        if known is not None:  # read before (and closed): go on where it was
            self._seek(t, known[2], known[4])
            return t
        t.predecessor = prev
        if from_end and st.st_size:
            window = _pread(fd, 1 << 20, max(0, st.st_size - (1 << 20)))
            nl = window.rfind(b"\n")
            self._seek(t, st.st_size - len(window) + nl + 1 if nl >= 0 else st.st_size)
        return t

    def _known_closed(self, ident: tuple[int, int], fd: int) -> tuple[str, int, int, bytes, bool] | None:
        """What we knew of a file closed earlier, if `fd` is that file still (same first bytes,
        same bytes before the offset it was read to)."""
        known = self._closed.get(ident)
        if known is None:
            return None
        fp, fp_len, offset, ctail, _ = known
        head = _pread(fd, fp_len, 0)
        if len(head) != fp_len or _digest(head) != fp or _pread(fd, len(ctail), offset - len(ctail)) != ctail:
            return None
        return known

    def _open_failed(self, name: str, e: OSError) -> None:
        """Counted (and logged) once until the file opens: retried on every change and rescan."""
        if name not in self._failing:
            self._failing[name] = e.strerror or str(e)
            self._stats(name).open_errors += 1
            log.warning("cannot open %s: %s", name, e.strerror or e)

    def _add(self, source: str, path: str, fd: int, st: os.stat_result) -> _Tail:
        real = os.path.realpath(path)
        self._seq += 1
        t = _Tail(
            source=source,
            path=path,
            real_dir=os.path.dirname(real),
            real_name=os.path.basename(real),
            fd=fd,
            dev=st.st_dev,
            ino=st.st_ino,
            seq=self._seq,
            size=st.st_size,
            idle_since=time.monotonic(),
        )
        self._stats(source)
        self._fingerprint(t)
        self._tails[(t.dev, t.ino)] = t
        return t

    def _seek(self, t: _Tail, offset: int, skipping: bool = False) -> None:
        t.offset, t.partial, t.skipping = offset, b"", skipping
        t.ctail = _pread(t.fd, min(CHECK_LEN, offset), offset - min(CHECK_LEN, offset))

    def _fingerprint(self, t: _Tail) -> None:
        head = _pread(t.fd, FP_LEN, 0)
        t.fp, t.fp_len = _digest(head), len(head)

    def _watch(self) -> None:
        plan: dict[str, _Interest] = {}

        def want(d: str) -> _Interest:
            return plan.setdefault(d or ".", _Interest())

        pdir, pbase = os.path.split(self.pattern)
        pdir = pdir or "."
        dirs = [d for d in glob.glob(pdir) if os.path.isdir(d)] if glob.has_magic(pdir) else [pdir]
        for d in dirs:
            (want(d).globs if glob.has_magic(pbase) else want(d).names).add(pbase)
        # the nearest existing ancestor, to see the missing directories appear
        parts = pdir.split(os.sep)
        static = next((i for i, p in enumerate(parts) if glob.has_magic(p)), len(parts))
        below = parts[static] if static < len(parts) else pbase
        anc = os.sep.join(parts[:static]) or (os.sep if pdir.startswith(os.sep) else ".")
        while not os.path.isdir(anc) and anc not in ("", os.sep, "."):
            anc, below = os.path.dirname(anc) or ".", os.path.basename(anc)
        (want(anc).globs if glob.has_magic(below) else want(anc).names).add(below)
        tracked = {pbase} if not glob.has_magic(pbase) else set()
        for t in self._tails.values():
            i = want(t.real_dir)
            i.names.add(t.real_name)
            tracked.add(t.real_name)
            tracked.add(os.path.basename(t.path))
            if not t.current:
                i.everything = True
            if t.real_dir != os.path.dirname(t.path):
                want(os.path.dirname(t.path)).names.add(os.path.basename(t.path))
        self._waker.watch(plan, tracked)

    # -- restart ----------------------------------------------------------------------------

    def _resume(self, positions: dict[str, Any]) -> None:
        if positions.get("version") != POSITIONS_VERSION:
            raise SourceError(f"positions version {positions.get('version')!r} is not {POSITIONS_VERSION}")
        entries = positions.get("files", [])
        # files still there under their checkpointed identity (inode and first bytes) are never taken
        # for another one's copy; an inode number the filesystem gave to a new file since (a copy
        # made by copytruncate) is not claimed by the deleted file that had it
        self._claimed = set()
        for e in entries:
            try:
                found = self._find(str(e["path"]), str(e["dir"]), e, by_inode=True)
            except (KeyError, TypeError, ValueError):
                continue
            if found is not None:
                os.close(found[1])
                self._claimed.add((found[2].st_dev, found[2].st_ino))
        for e in entries:
            try:
                self._resume_one(e)
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("ignoring a malformed position entry: %s", exc)
        self._claimed = set()

    def _resume_one(self, e: dict[str, Any]) -> None:
        source, path, d = str(e["source"]), str(e["path"]), str(e["dir"])
        offset, skipping = int(e["offset"]), bool(e["skipping"])
        want = (int(e["dev"]), int(e["ino"]))
        if want in self._tails:
            return
        found = self._find(path, d, e, by_inode=True)
        if found is not None:
            name, fd, st = found
            t = self._add(source, name, fd, st)
            t.current = bool(e["current"]) and name == path
            if not t.current:
                t.idle_since = time.monotonic()
            if self._verify(t, e):
                self._seek(t, offset, skipping)
                # truncated, nothing read since: lines written then and copytruncated while we were
                # stopped are in a copy made after it (strictly: the previous copy can share the tick)
                t.zero_at = int(e.get("zero_at", 0)) and int(e["zero_at"]) + 1
                return
            self._stats(source).truncations += 1  # truncated or rewritten while we were stopped
        rewritten = found is None and _ident(path) == want  # same inode, other first bytes
        if rewritten:
            self._stats(source).truncations += 1
        # of a file checkpointed empty (fp_len 0, offset 0) any file is a "copy": nothing to recover
        empty = int(e["fp_len"]) == 0 and offset == 0
        copy = None if empty else self._find(path, d, e, by_inode=False)
        if copy is None:
            if found is None and not rewritten and not empty:
                if not e["current"] and offset >= int(e.get("size", offset + 1)):
                    # a rotated file, read to its end: its writer had moved on, so nothing is lost
                    log.info("%s (inode %d) is gone; it had been read to its end", path, want[1])
                    return
                self._stats(source).lost_files += 1
                log.warning(
                    "%s (inode %d) was not found again; lines written after the checkpoint are lost",
                    path,
                    want[1],
                )
            return
        name, fd, st = copy
        c = self._add(source, name, fd, st)
        c.current = name == path and found is None and bool(e["current"])
        c.idle_since = time.monotonic()
        self._seek(c, offset, skipping)

    def _verify(self, t: _Tail, e: dict[str, Any]) -> bool:
        """The file still holds the checkpointed bytes: same start, same bytes before the offset."""
        offset, n = int(e["offset"]), int(e["check_len"])
        if t.size < offset or int(e["fp_len"]) > t.size:
            return False
        head = _pread(t.fd, int(e["fp_len"]), 0)
        return _digest(head) == str(e["fp"]) and _digest(_pread(t.fd, n, offset - n)) == str(e["check"])

    def _find(self, path: str, d: str, e: dict[str, Any], *, by_inode: bool) -> tuple[str, int, os.stat_result] | None:
        """The checkpointed file in its directory: by inode (renamed), or by content (a copy)."""
        want = (int(e["dev"]), int(e["ino"]))
        stem = os.path.basename(path).split(".")[0]
        names = [path]
        try:
            names += [
                os.path.join(d, x.name)
                for x in os.scandir(d)
                if (x.inode() == want[1] if by_inode else x.name.startswith(stem))
            ]
        except OSError:
            pass
        for name in names:
            try:
                fd, st = _open(name)
            except OSError:
                continue
            ident = (st.st_dev, st.st_ino)
            probe = _Tail(
                source="",
                path=name,
                real_dir="",
                real_name="",
                fd=fd,
                dev=st.st_dev,
                ino=st.st_ino,
                seq=0,
                size=st.st_size,
            )
            ok = (
                (ident == want)
                if by_inode
                else (ident not in self._tails and ident not in self._claimed and self._verify(probe, e))
            )
            if ok and by_inode:
                head = _pread(fd, int(e["fp_len"]), 0)
                ok = len(head) == int(e["fp_len"]) and _digest(head) == e["fp"]
            if ok:
                return name, fd, st
            os.close(fd)
        return None

    # -- reading ----------------------------------------------------------------------------

    def _order(self) -> list[_Tail]:
        return sorted(self._tails.values(), key=lambda t: (t.current, t.seq))

    def _timeout(self) -> float:
        timeout = min(self.rescan_interval, _STOP_CHECK)
        now = time.monotonic()
        for t in self._tails.values():
            if not t.current:
                timeout = min(timeout, max(0.0, t.idle_since + self.rotate_wait - now))
        return timeout

    def _expire(self, now: float) -> None:
        for t in list(self._tails.values()):
            if not t.current and now - t.idle_since >= self.rotate_wait:
                if t.partial:
                    self._stats(t.source).partial_dropped += 1
                self._close(t)

    def _close(self, t: _Tail, forget: bool = True) -> None:
        if forget:
            self._tails.pop((t.dev, t.ino), None)
            self._closed[(t.dev, t.ino)] = (t.fp, t.fp_len, t.offset, t.ctail, t.skipping)
            while len(self._closed) > 1024:
                del self._closed[next(iter(self._closed))]
        fd, t.fd = t.fd, -1
        if fd >= 0:
            os.close(fd)

    def _adopt(self, t: _Tail, p: _Tail) -> None:
        """`t` replaced `p` at its name (temp + rename): if it starts with the same bytes and holds
        the bytes `p` was read to, it is `p` rewritten: go on from `p`'s offset, not from 0."""
        if p.offset == 0 or t.offset != 0 or (p.dev, p.ino) not in self._tails:
            return
        head = _pread(t.fd, p.fp_len, 0)
        if len(head) != p.fp_len or _digest(head) != p.fp:
            return
        if _pread(t.fd, len(p.ctail), p.offset - len(p.ctail)) != p.ctail:
            return
        t.offset, t.ctail, t.skipping = p.offset, p.ctail, p.skipping
        self._close(p)

    def _skip_hole(self, t: _Tail) -> None:
        """Inside a sparse hole (zeros a copytruncate left under a writer without O_APPEND): jump
        to the next data without reading the zeros; what follows them starts a new line."""
        try:
            nxt = os.lseek(t.fd, t.read_pos, _SEEK_DATA)  # type: ignore[arg-type]
        except OSError:  # ENXIO: nothing but the hole up to the end
            return
        if nxt > t.read_pos:
            self._stats(t.source).bytes_read += nxt - t.read_pos
            t.offset += nxt - t.read_pos
            t.ctail = b"\0" * CHECK_LEN
            t.skipping = False  # the hole, not a record, was the over-long "line": not counted

    def _drain(self, t: _Tail) -> Iterator[Batch]:
        """Read `t` to its end (at most _TURN_BYTES), yielding batches."""
        if t.predecessor is not None:
            p, t.predecessor = t.predecessor, None
            self._adopt(t, p)
        try:
            st = os.fstat(t.fd)
        except OSError:
            self._close(t)
            return
        t.size = st.st_size
        if (st.st_size, st.st_mtime_ns) == t.seen and st.st_size == t.read_pos:
            return
        window = (t.ctail + t.partial[-CHECK_LEN:])[-CHECK_LEN:]
        rp = t.read_pos
        if st.st_size < rp or (window and _pread(t.fd, len(window), rp - len(window)) != window):
            if not t.current:
                # a rotated file or a copy, rewritten in place (`cp log log.1` once more): what
                # it holds now came from the followed name, which is read there; not ours to read
                self._close(t)
                return
            yield from self._truncated(t)
            t.zero_at = st.st_mtime_ns
        elif t.zero_at and t.read_pos == 0 and t.current:  # only the followed name is copytruncated
            yield from self._copies_at_zero(t)
        stats = self._stats(t.source)
        budget = _TURN_BYTES
        while budget > 0:
            start = t.read_pos
            try:
                data = os.pread(t.fd, self.read_size, start)
            except OSError as e:
                log.warning("cannot read %s: %s", t.path, e.strerror or e)
                break
            if not data:
                break
            budget -= len(data)
            stats.bytes_read += len(data)
            t.idle_since = time.monotonic()
            lines, skipped = self._split(t, data)
            if t.skipping and _SEEK_DATA is not None and not data.strip(b"\0"):
                self._skip_hole(t)
            if t.fp_len < FP_LEN and t.read_pos > t.fp_len:
                self._fingerprint(t)
            if lines or skipped:
                stats.lines += len(lines)
                stats.too_long += skipped
                yield Batch(t.source, lines, skipped)
            if len(data) < self.read_size and t.read_pos == start + len(data):
                break  # at the end (not cut short by max_batch_lines)
        if t.read_pos:
            t.zero_at = 0  # from now on a copytruncate changes the bytes before read_pos: seen above
        t.size = max(t.size, t.read_pos)
        t.seen = (st.st_size, st.st_mtime_ns) if t.read_pos >= st.st_size else (-1, -1)

    def _truncated(self, t: _Tail) -> Iterator[Batch]:
        """`t` was truncated or rewritten: recover the unread rest from a copy, then restart at 0."""
        self._stats(t.source).truncations += 1
        e = {
            "dev": t.dev,
            "ino": t.ino,
            "fp": t.fp,
            "fp_len": t.fp_len,
            "offset": t.offset,
            "check": _digest(t.ctail),
            "check_len": len(t.ctail),
        }
        copy = self._find(t.path, t.real_dir, e, by_inode=False) if t.offset else None
        offset, skipping = t.offset, t.skipping
        self._seek(t, 0)
        t.seen = (-1, -1)
        self._fingerprint(t)
        if copy is not None:
            name, fd, st = copy
            c = self._add(t.source, name, fd, st)
            c.current = False
            self._seek(c, offset, skipping)
            yield from self._drain(c)

    def _copies_at_zero(self, t: _Tail) -> Iterator[Batch]:
        """`t` was truncated and nothing was read of it since: lines written then and copytruncated
        before we read them are only in the copy, which no bytes before the offset can tell. A new
        file next to it (same stem, written after the truncation, not one we know) is that copy:
        read it from its start."""
        stem = t.real_name.split(".")[0]
        try:
            entries = sorted(os.scandir(t.real_dir), key=lambda x: x.name)
        except OSError:
            return
        for x in entries:
            if not x.name.startswith(stem) or x.name == t.real_name:
                continue
            try:
                st = x.stat()
            except OSError:
                continue
            ident = (st.st_dev, st.st_ino)
            if (
                not stat.S_ISREG(st.st_mode)
                or st.st_size == 0
                or st.st_mtime_ns < t.zero_at  # same tick: coarse timestamps
                or ident in self._tails
                or ident == (t.dev, t.ino)
            ):
                continue
            try:
                fd, st = _open(x.path)
            except OSError:
                continue
            if self._known_closed(ident, fd) is not None or _pread(fd, 8, 0).startswith(_COMPRESSED):
                os.close(fd)
                continue
            c = self._add(t.source, x.path, fd, st)
            c.current = False
            yield from self._drain(c)

    def _too_long(self, lines: list[bytes]) -> bool:
        # only the first line can hold more than one read (it began in `partial`)
        if self.read_size <= self.max_line_bytes:
            return len(lines[0]) > self.max_line_bytes
        return max(map(len, lines)) > self.max_line_bytes

    def _split(self, t: _Tail, data: bytes) -> tuple[list[bytes], int]:
        """Consume `data` (read at `t.read_pos`): complete lines, and how many were too long."""
        skipped = 0
        if t.skipping:
            i = data.find(b"\n")
            # A NUL run (a sparse hole: copytruncate under a writer without O_APPEND) ends the
            # skipped line too, when a new line starts after it in this read.
            hole = data.rfind(b"\0", 0, i if i >= 0 else len(data))
            if hole >= 0 and hole + 1 < (i if i >= 0 else len(data)):
                i = hole
            if i < 0:
                t.offset += len(data)
                t.ctail = (t.ctail + data[-CHECK_LEN:])[-CHECK_LEN:]
                return [], 0
            skipped, t.skipping = 1, False
            t.offset += i + 1
            t.ctail = (t.ctail + data[max(0, i + 1 - CHECK_LEN) : i + 1])[-CHECK_LEN:]
            data = data[i + 1 :]
        buf = t.partial + data if t.partial else data
        end = buf.rfind(b"\n") + 1
        if end == 0:
            if len(buf) > self.max_line_bytes:
                t.skipping, t.partial = True, b""
                t.offset += len(buf)
                t.ctail = (t.ctail + buf[-CHECK_LEN:])[-CHECK_LEN:]
            else:
                t.partial = buf
            return [], skipped
        lines = buf.split(b"\n")
        rest = lines.pop()
        if len(lines) > self.max_batch_lines:  # leave the rest in the file for the next batch
            del lines[self.max_batch_lines :]
            end = sum(map(len, lines)) + len(lines)
            rest = b""
        consumed = end
        if len(rest) > self.max_line_bytes:
            t.skipping, rest, consumed = True, b"", len(buf)
        t.partial = rest
        t.offset += consumed
        t.ctail = (t.ctail + buf[max(0, consumed - CHECK_LEN) : consumed])[-CHECK_LEN:]
        if b"\0" in buf:  # what follows a NUL run (a hole) starts a new line
            lines = [x[x.rfind(b"\0") + 1 :] for x in lines]
        # measured with its b"\r", as replay does and as a partial line is (whatever the reads)
        if end > self.max_line_bytes and self._too_long(lines):
            n = len(lines)
            lines = [x for x in lines if len(x) <= self.max_line_bytes]
            skipped += n - len(lines)
        if b"\r" in buf:
            lines = [x[:-1] if x.endswith(b"\r") else x for x in lines]
        if not all(lines):
            lines = [x for x in lines if x]
        return lines, skipped
