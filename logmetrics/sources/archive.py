"""Archived inputs for `replay`: files, globs, compressed files (gzip, bzip2, xz, and zstd where
Python has it: 3.14+; each recognised by its magic bytes, multi-member), journald's `.journal`
files, pipes (`<(zcat x.gz)`, a named FIFO: read until the writer closes it), and `-` for stdin.
A rotated set is read oldest first, whatever order the shell gives
(`requests.log.3.gz requests.log.2.gz requests.log.1 requests.log`).

Hostile input stays bounded: a line over the limit is dropped as it streams past (never held),
a device (`/dev/zero`) or socket is a usage error, and a run of NUL bytes ends a line and is
dropped. NULs are what a sparse hole reads as: a file truncated under a writer that does not
append (copytruncate) gets one before its next line, and a crash can leave them in place of
unflushed blocks. JSON text never holds a raw NUL, so no record is lost by the rule; the record
after the hole is kept. Holes are skipped with SEEK_DATA without being read.
"""

from __future__ import annotations

import bz2
import errno
import glob
import gzip
import importlib
import io
import lzma
import os
import re
import stat
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from types import ModuleType
from typing import BinaryIO, NamedTuple, Protocol

from logmetrics.errors import SourceError, UsageError
from logmetrics.sources.journald import JOURNAL_MAGIC, LineMaxJoiner, UnreadableJournal, read_journal_file

_CHUNK = 1 << 20


def _count_newlines(data: bytes, start: int, stop: int) -> int:
    return data.count(b"\n", start, stop)


try:  # bytes.count goes byte by byte: 0.4 ms a MB, more than the rest of reading it
    from logmetrics._hotloop import newlines as _newlines
except ImportError:  # built without a C compiler: no C hot loop to split Lines either
    _newlines = _count_newlines
_BLOCKS = _newlines is not _count_newlines  # read_blocks gives Lines: only with the C module
_NULS = re.compile(rb"\x00+")
_SEEK_DATA: int | None = getattr(os, "SEEK_DATA", None)


class UnsupportedCompression(SourceError):
    """A compressed file this Python cannot decompress."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


try:
    _zstd: ModuleType | None = importlib.import_module("compression.zstd")  # Python 3.14+
except ImportError:
    _zstd = None


def _zstd_open(fileobj: BinaryIO) -> io.BufferedIOBase:
    if _zstd is None:
        raise UnsupportedCompression("zstd-compressed, which this Python cannot read (3.14+ can): "
                                     "give it decompressed, e.g. zstd -dc FILE | logmetrics replay -")
    return _zstd.ZstdFile(fileobj, mode="rb")  # type: ignore[no-any-return]


Opener = Callable[[BinaryIO], io.BufferedIOBase]
# magic bytes -> how to read a file object of that compression format
COMPRESSED: dict[bytes, Opener] = {
    b"\x1f\x8b": lambda f: gzip.GzipFile(fileobj=f, mode="rb"),
    b"BZh": lambda f: bz2.BZ2File(f, mode="rb"),
    b"\xfd7zXZ\x00": lambda f: lzma.LZMAFile(f, mode="rb"),
    b"\x28\xb5\x2f\xfd": _zstd_open,
}
_MAGIC_LEN = max(map(len, COMPRESSED))
# what a truncated or corrupt compressed file raises as it is read (bz2: OSError without errno)
_CORRUPT: tuple[type[Exception], ...] = (EOFError, zlib.error, lzma.LZMAError, *([_zstd.ZstdError] if _zstd else []))
# what reading a file can raise: the file is then counted unreadable (`ReadStats.failed`)
_UNREADABLE: tuple[type[Exception], ...] = (OSError, *_CORRUPT, UnreadableJournal, UnsupportedCompression)
_SUFFIXES = r"\.(?:gz|bz2|xz|zst)"  # a compressed rotated file's, as logrotate names them
# name.N; name-DATE (logrotate's dateext): dateformat's -%Y%m%d (the default), -%Y%m%d%H (hourly),
# -%s (epoch seconds), .%Y-%m-%d and .%Y-%m-%d-%H...; each maybe with one of the suffixes
_ROTATED = re.compile(
    r"^(?P<base>.+?)[.-](?:(?P<date>\d{4}-\d{2}-\d{2}(?:[-_T]\d{2}(?:[-:]?\d{2}){0,2})?|\d{8,})|(?P<n>\d{1,7}))"
    rf"(?:{_SUFFIXES})?$"
)
_COMPRESSED_NAME = re.compile(rf"^(?P<base>.+){_SUFFIXES}$")


def compression(head: bytes) -> Opener | None:
    """How to read a file that starts with `head` when it is compressed; None when it is not."""
    for magic, opener in COMPRESSED.items():
        if head.startswith(magic):
            return opener
    return None


class Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


class Lines(NamedTuple):
    """The lines between the first and the last b"\\n" of a block read, as one item: what
    `read_blocks` gives for a reader that splits them itself (the C hot loop). Each is within the
    line limit, without b"\\r" or NUL; some may be empty (they count for nothing). They are
    `data[start:stop]`, the block itself: not copied."""

    data: bytes
    start: int
    stop: int
    n: int  # how many: b"\n" in data[start:stop], plus one (empty lines too)

    @staticmethod
    def of(data: bytes, start: int, stop: int) -> Lines:
        return Lines(data, start, stop, _newlines(data, start, stop) + 1)

    def split(self, n: int) -> tuple[Lines, Lines]:
        """The first n lines, and the rest (0 < n < self.n)."""
        end = self.start - 1
        for _ in range(n):
            end = self.data.index(b"\n", end + 1, self.stop)
        return self._replace(stop=end, n=n), self._replace(start=end + 1, n=self.n - n)

    def lines(self) -> list[bytes]:
        """The lines, none empty."""
        return list(filter(None, self.data[self.start : self.stop].split(b"\n")))


def each_line(items: Iterable[bytes | Lines]) -> Iterator[bytes]:
    """`read_blocks`' items as `read_lines` gives them: one line at a time, none empty."""
    for item in items:
        if isinstance(item, Lines):
            yield from item.lines()
        else:
            yield item


@dataclass
class ReadStats:
    bytes_read: int = 0  # input bytes covered, sparse holes included
    files: int = 0
    unreadable: int = 0  # files that vanished or failed mid-way
    too_long: int = 0
    problems: dict[str, str] = field(default_factory=dict)  # unreadable file -> why (its first failure)

    def failed(self, path: str, error: BaseException) -> None:
        """`path` could not be read (to the end) because of `error`."""
        self.unreadable += 1
        if isinstance(error, OSError) and error.strerror:
            why = error.strerror
        elif isinstance(error, (UnreadableJournal, UnsupportedCompression)):
            why = error.reason
        else:  # _CORRUPT
            why = "compressed data truncated or corrupt"
        self.problems.setdefault(path, why)


def expand(paths: list[str]) -> list[str]:
    """Command-line paths -> files in reading order. A missing path, a device or a socket is a
    UsageError; a directory stands for the regular files directly in it."""
    found: list[str] = []
    for path in paths:
        if path == "-":
            found.append(path)
            continue
        matches = sorted(glob.glob(path)) if glob.has_magic(path) else [path]
        if not matches:
            raise UsageError(f"no file matches {path!r}")
        for match in matches:
            if os.path.isdir(match):
                try:
                    names = sorted(os.listdir(match))
                except OSError as e:
                    raise UsageError(f"{match}: {e.strerror}") from None
                files = [os.path.join(match, n) for n in names if os.path.isfile(os.path.join(match, n))]
                if not files and match == path:
                    raise UsageError(f"{match}: no files in this directory")
                found.extend(files)
                continue
            try:
                mode = os.stat(match).st_mode
            except FileNotFoundError:
                raise UsageError(f"{match}: no such file") from None
            except OSError as e:
                raise UsageError(f"{match}: {e.strerror}") from None
            if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
                kind = "a socket" if stat.S_ISSOCK(mode) else "a device"
                raise UsageError(f"{match} is {kind}, not a log file (give files, a directory, or - for stdin)")
            if not os.access(match, os.R_OK):
                raise UsageError(f"{match}: permission denied")
            found.append(match)
    seen: set[str] = set()
    unique = [p for p in found if not (p in seen or seen.add(p))]  # type: ignore[func-returns-value]
    return sorted(unique, key=rotation_key)


def rotation_key(path: str) -> tuple[str, int, object]:
    """Oldest first within a rotated set: name.3.gz < name.2 < name.1 < name; dates ascending."""
    if path == "-":
        return ("", 3, 0)
    d, name = os.path.split(path)
    m = _ROTATED.match(name)
    if m is None:
        unzipped = _COMPRESSED_NAME.match(name)
        return (os.path.join(d, unzipped.group("base") if unzipped else name), 2, 0)
    base = os.path.join(d, m.group("base"))
    date = m.group("date")
    if date:  # ascending is oldest first; digits only (-%s among them) compare as numbers
        return (base, 1, date.zfill(24) if date.isdigit() else date)
    return (base, 0, -int(m.group("n")))  # a rotation number: higher is older


def read_lines(paths: list[str], stats: ReadStats, max_line_bytes: int) -> Iterator[bytes]:
    """Every complete, non-empty line of every file, in order. A line longer than the limit is not
    held in memory: it is dropped and counted in `stats.too_long`. A file that vanishes or breaks
    mid-way (a journal file journalctl cannot read: a corrupt one) is counted in `stats.unreadable`;
    what was read of it stays read."""
    return _read(paths, stats, max_line_bytes, False)  # type: ignore[return-value]  # no Lines


def read_blocks(paths: list[str], stats: ReadStats, max_line_bytes: int) -> Iterator[bytes | Lines]:
    """`read_lines`, with the lines of a block read given as one `Lines` where they can be
    (`each_line` makes them lines again): what the C hot loop splits faster itself. Without the C
    module, just `read_lines` (counting and splitting them in Python would only cost more)."""
    return _read(paths, stats, max_line_bytes, _BLOCKS)


def _read(paths: list[str], stats: ReadStats, max_line_bytes: int, blocks: bool) -> Iterator[bytes | Lines]:
    for path in paths:
        stats.files += 1
        try:
            with ExitStack() as stack:
                source = _open(path, stack)
                if source is None:
                    yield from _journal_lines(path, stats, max_line_bytes)
                else:
                    stream, fd = source
                    yield from _split(stream, stats, max_line_bytes, fd, blocks=blocks)
        except _UNREADABLE as e:
            stats.failed(path, e)


def _journal_lines(path: str, stats: ReadStats, max_line_bytes: int) -> Iterator[bytes]:
    """The entries of a journal file, lines journald split at its LineMax joined again."""
    joiner = LineMaxJoiner(max_line_bytes)
    broken: UnreadableJournal | None = None
    try:
        for line in read_journal_file(path):
            stats.bytes_read += len(line) + 1
            out, skipped, _ = joiner.feed((line,))
            stats.too_long += skipped
            yield from out
    except UnreadableJournal as e:  # what was read stays read, as with any file
        broken = e
    out, skipped = joiner.finish()  # a split line the file ends within is dropped, counted
    stats.too_long += skipped
    yield from out
    if broken is not None:
        raise broken


def read_range(path: str, start: int, end: int | None, stats: ReadStats, max_line_bytes: int,
               blocks: bool = False) -> Iterator[bytes | Lines]:
    """`read_lines([path])` of the lines of a plain file that start in [start, end) (end None: to
    the end), `start` being 0 or a position right after a b"\n" or a NUL (`line_starts`). The lines of the
    ranges of a file, in order, are the lines of the file. `blocks`: as `read_blocks` gives them."""
    try:
        with open(path, "rb", buffering=0) as raw:
            yield from _split(raw, stats, max_line_bytes, raw.fileno(), start, end, blocks and _BLOCKS)
    except OSError as e:
        stats.failed(path, e)


def line_starts(path: str, size: int, n: int) -> list[int]:
    """Up to n - 1 positions that cut a plain file of `size` bytes into about n ranges, each right
    after a b"\n" or a NUL (both end a line: `_split`), so the ranges hold whole lines; ascending.
    A cut in a hole (a sparse file's zeros: copytruncate under a writer without O_APPEND) is found
    in the first block read there, not after reading the zeros to the hole's end."""
    cuts: list[int] = []
    with open(path, "rb", buffering=0) as f:
        for k in range(1, n):
            pos = max(k * size // n, cuts[-1] if cuts else 1)
            while pos < size:
                block = os.pread(f.fileno(), 1 << 16, pos - 1)
                found = block.find(b"\n")
                nul = block.find(b"\0", 0, found if found >= 0 else len(block))
                if nul >= 0:
                    found = nul
                if found >= 0 or not block:
                    pos = pos + found if found >= 0 else size
                    break
                pos += len(block)
            if pos >= size:
                break
            if not cuts or pos > cuts[-1]:
                cuts.append(pos)
    return cuts


def regular_file(path: str) -> tuple[int, bool] | None:
    """A regular file's size and whether it is plain (read as it is: not compressed, not a journal file);
    None for stdin ("-") and anything not a regular file, which is never opened here (opening a FIFO
    waits for a writer, and a read would take its bytes from the replay). Raises OSError."""
    if path == "-":
        return None
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        return None
    with open(path, "rb") as f:
        head = f.read(max(len(JOURNAL_MAGIC), _MAGIC_LEN))
    return st.st_size, compression(head) is None and not head.startswith(JOURNAL_MAGIC)


def plain_size(path: str) -> int | None:
    """`regular_file(path)`'s size when the file is plain; None for anything else, or a path that
    cannot be read."""
    try:
        kind = regular_file(path)
    except OSError:
        return None
    return kind[0] if kind is not None and kind[1] else None


def _open(path: str, stack: ExitStack) -> tuple[Readable, int | None] | None:
    """The bytes of `path` (decompressed), and the descriptor of a plain regular file (read with
    pread, holes skipped), or None for a journal file. A pipe is opened once and never rewound:
    its first bytes are peeked, not consumed (a FIFO's open waits for a writer, as `cat` does)."""
    if path == "-":
        buffered: BinaryIO = sys.stdin.buffer
    else:
        raw = stack.enter_context(open(path, "rb", buffering=0))
        if stat.S_ISREG(os.fstat(raw.fileno()).st_mode):
            head = os.pread(raw.fileno(), max(len(JOURNAL_MAGIC), _MAGIC_LEN), 0)
            if head.startswith(JOURNAL_MAGIC):
                return None
            opener = compression(head)
            if opener is None:
                return raw, raw.fileno()
            return stack.enter_context(opener(raw)), None
        buffered = stack.enter_context(open(raw.fileno(), "rb", buffering=_CHUNK, closefd=False))
    peek = getattr(buffered, "peek", None)  # a BufferedReader's; a replaced stdin may lack it
    if peek is None:
        return buffered, None
    start: bytes = peek(_MAGIC_LEN)[:_MAGIC_LEN]
    if not start:  # the end already (a terminal's Ctrl-D is one end: a read after it would wait again)
        return io.BytesIO(), None
    opener = compression(start)
    if opener is not None:
        return stack.enter_context(opener(buffered)), None
    return buffered, None


def _split(
    f: Readable, stats: ReadStats, max_line_bytes: int, fd: int | None = None, start: int = 0, end: int | None = None,
    blocks: bool = False,
) -> Iterator[bytes | Lines]:
    """Lines of `f` (of `fd` with pread when given, from `start` to `end`): split at b"\\n" and at
    NUL runs, a trailing b"\\r" removed, empty lines left out; lines over `max_line_bytes` counted,
    never held. `blocks`: the lines inside a block read as one `Lines` when none can be over the
    limit nor end in b"\\r"."""
    pending: list[bytes] = []  # pieces of the line not yet ended
    pending_len = 0
    dropping = False  # inside a line that is already too long
    pos = start
    stop = end if end is not None else 1 << 62
    seek_data = _SEEK_DATA if fd is not None else None
    # read1: what one step gives (gzip: one decompressed block; a pipe: what is there), so a
    # stream that breaks mid-way (a truncated .gz) keeps every line before the break
    read = getattr(f, "read1", f.read)
    while True:
        if fd is None:
            chunk = read(_CHUNK)
        else:
            if seek_data is not None:
                try:
                    at = os.lseek(fd, pos, seek_data)
                except OSError as e:
                    if e.errno != errno.ENXIO:  # ENXIO: only a hole (or nothing) after pos
                        seek_data = None
                        at = pos
                    else:
                        at = max(pos, os.fstat(fd).st_size)
                at = min(at, stop)
                if at > pos:  # a hole: zeros, a NUL run, so the line ends here
                    stats.bytes_read += at - pos
                    pos = at
                    if pending_len and not dropping:
                        line = b"".join(pending)
                        if line[-1:] == b"\r":
                            line = line[:-1]
                        if line:
                            yield line
                    pending, pending_len, dropping = [], 0, False
            chunk = os.pread(fd, min(_CHUNK, stop - pos), pos)
            pos += len(chunk)
        if not chunk:
            break
        stats.bytes_read += len(chunk)
        if b"\0" in chunk:
            chunk = _NULS.sub(b"\n", chunk)
        middle = blocks and len(chunk) <= max_line_bytes and b"\r" not in chunk
        if middle:  # the first line and the tail as below, the lines between as one Lines
            first_end, tail_start = chunk.find(b"\n"), chunk.rfind(b"\n") + 1
            lines = [chunk[:first_end]] if first_end >= 0 else []
            tail = chunk[tail_start:]
        else:
            lines = chunk.split(b"\n")
            tail = lines.pop()
        if lines:
            first = lines[0]
            if dropping:
                dropping = False
            elif pending_len + len(first) > max_line_bytes:
                stats.too_long += 1
            else:
                if pending_len:
                    pending.append(first)
                    first = b"".join(pending)
                if first[-1:] == b"\r":
                    first = first[:-1]
                if first:
                    yield first
            pending, pending_len = [], 0
            if middle:
                if tail_start - 1 > first_end + 1:
                    yield Lines.of(chunk, first_end + 1, tail_start - 1)
            rest = lines[1:] if len(lines) > 1 else []
            if rest:
                if len(chunk) > max_line_bytes:
                    n = len(rest)
                    rest = [x for x in rest if len(x) <= max_line_bytes]
                    stats.too_long += n - len(rest)
                if b"\r" in chunk:
                    rest = [x[:-1] if x[-1:] == b"\r" else x for x in rest]
                if not all(rest):
                    rest = [x for x in rest if x]
                yield from rest
        if dropping or not tail:
            continue
        pending.append(tail)
        pending_len += len(tail)
        if pending_len > max_line_bytes:
            stats.too_long += 1
            dropping, pending, pending_len = True, [], 0
    if pending_len and not dropping:
        line = b"".join(pending)
        if line[-1:] == b"\r":
            line = line[:-1]
        if line:
            yield line
