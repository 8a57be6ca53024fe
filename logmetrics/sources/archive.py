"""Archived inputs for `replay`: files, globs, gzip (by magic bytes, multi-member), journald's
`.journal` files, and `-` for stdin. A rotated set is read oldest first, whatever order the
shell gives (`requests.log.3.gz requests.log.2.gz requests.log.1 requests.log`)."""

from __future__ import annotations

import glob
import gzip
import os
import re
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from logmetrics.errors import UsageError
from logmetrics.sources.journald import is_journal_file, read_journal_file

GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20
# name.N, name.N.gz, name-YYYYMMDD, name.YYYY-MM-DD(.gz)
_ROTATED = re.compile(r"^(?P<base>.+?)[.-](?P<suffix>\d+|\d{4}-\d{2}-\d{2})(?P<gz>\.gz)?$")


@dataclass
class ReadStats:
    bytes_read: int = 0
    files: int = 0
    unreadable: int = 0  # files that vanished or failed mid-way
    too_long: int = 0


def expand(paths: list[str]) -> list[str]:
    """Command-line paths -> files in reading order. A missing path is a UsageError."""
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
                found.extend(os.path.join(match, n) for n in sorted(os.listdir(match))
                             if os.path.isfile(os.path.join(match, n)))
            elif not os.path.exists(match):
                raise UsageError(f"{match}: no such file")
            elif not os.access(match, os.R_OK):
                raise UsageError(f"{match}: permission denied")
            else:
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
        base = name[:-3] if name.endswith(".gz") else name
        return (os.path.join(d, base), 2, 0)
    suffix = m.group("suffix")
    base = os.path.join(d, m.group("base"))
    if "-" in suffix or (len(suffix) == 8 and suffix[:2] in ("19", "20")):
        return (base, 1, suffix)  # a date: ascending is oldest first
    return (base, 0, -int(suffix))  # a rotation number: higher is older


def _open(path: str) -> IO[bytes]:
    if path == "-":
        return sys.stdin.buffer
    f = open(path, "rb")
    if f.read(2) == GZIP_MAGIC:
        f.close()
        return gzip.open(path, "rb")  # type: ignore[return-value]  # reads every member of a multi-member file
    f.seek(0)
    return f


def read_lines(paths: list[str], stats: ReadStats, max_line_bytes: int) -> Iterator[bytes]:
    """Every complete line of every file, in order. A line longer than the limit is not held in
    memory: it is dropped and counted in `stats.too_long`. A file that vanishes or breaks
    mid-way is counted in `stats.unreadable`; what was read of it stays read."""
    for path in paths:
        stats.files += 1
        try:
            if path != "-" and is_journal_file(path):
                for line in read_journal_file(path):
                    stats.bytes_read += len(line) + 1
                    yield line
                continue
            with _open(path) as f:
                yield from _split(f, stats, max_line_bytes)
        except (OSError, EOFError, zlib.error):
            stats.unreadable += 1


def _split(f: IO[bytes], stats: ReadStats, max_line_bytes: int) -> Iterator[bytes]:
    rest = b""
    dropping = False  # inside a line that is already too long
    while True:
        chunk = f.read(_CHUNK)
        if not chunk:
            break
        stats.bytes_read += len(chunk)
        lines = (rest + chunk).split(b"\n") if rest else chunk.split(b"\n")
        rest = lines.pop()
        for line in lines:
            if dropping:
                dropping = False
                continue
            if len(line) > max_line_bytes:
                stats.too_long += 1
                continue
            yield line[:-1] if line[-1:] == b"\r" else line
        if len(rest) > max_line_bytes:
            if not dropping:
                stats.too_long += 1
            dropping = True
            rest = b""
    if rest and not dropping:
        if len(rest) > max_line_bytes:
            stats.too_long += 1
        else:
            yield rest[:-1] if rest[-1:] == b"\r" else rest
