"""FileFollower on real files: real renames, truncations, copies, symlinks and permission changes.

Each scenario is a list of steps run against a follower iterated in a thread; `("sync", n)` waits
(on a queue, never a sleep) until n lines have been yielded. At the end the follower is stopped,
which makes it read what is left, and the lines it yielded must be exactly the expected ones.
Restart scenarios stop it, change the files, and start a new follower from the saved positions.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from logmetrics.errors import SourceError
from logmetrics.sources.file import FileFollower

TIMEOUT = 10.0
ROOT = Path(__file__).resolve().parent.parent


def lines(tag: str, n: int, start: int = 0) -> list[bytes]:
    return [f'{{"f":"{tag}","i":{i},"pad":"{tag * 3}"}}'.encode() for i in range(start, start + n)]


class Runner:
    """Iterates a follower in a thread; every batch goes to a queue with the positions after it."""

    def __init__(self, pattern: str, **kw: Any) -> None:
        kw.setdefault("rotate_wait", 30.0)  # closed only after stop: nothing is dropped by timing
        self.stop = threading.Event()
        self.follower = FileFollower(pattern, stop=self.stop, **kw)
        self.q: queue.Queue[tuple[str, list[bytes], int, dict[str, Any]] | None] = queue.Queue()
        self.gate = threading.Event()
        self.gate.set()
        self.got: list[bytes] = []
        self.too_long = 0
        # (lines yielded, positions) as a consumer saves them: at the start, then after each batch
        self.checkpoints: list[tuple[int, dict[str, Any]]] = [(0, json.loads(json.dumps(self.follower.positions())))]
        self.sources: set[str] = set()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for b in self.follower:
                self.q.put((b.source, b.lines, b.skipped_too_long, self.follower.positions()))
                self.gate.wait()
        except BaseException as e:  # pragma: no cover - reported by finish()
            self.error = e
        finally:
            self.q.put(None)

    def _take(self, timeout: float) -> bool:
        item = self.q.get(timeout=timeout)
        if item is None:
            return False
        source, got, skipped, pos = item
        self.got += got
        self.too_long += skipped
        if got or skipped:  # an empty batch only says the positions changed
            self.sources.add(source)
        self.checkpoints.append((len(self.got), json.loads(json.dumps(pos))))
        return True

    def sync(self, n: int) -> None:
        while len(self.got) < n:
            try:
                if not self._take(TIMEOUT):
                    break
            except queue.Empty:
                break
        assert len(self.got) >= n, f"waited for {n} lines, got {len(self.got)}: {self.got[-3:]}"

    def finish(self) -> list[bytes]:
        self.gate.set()
        self.stop.set()
        self.follower.wake()
        while True:
            if not self._take(TIMEOUT):
                break
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error
        return self.got


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def write_lines(path: Path, ls: list[bytes]) -> None:
    append(path, b"".join(x + b"\n" for x in ls))


def replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


Step = tuple[Any, ...]


def run_steps(r: Runner | None, d: Path, steps: list[Step]) -> None:
    handles: dict[str, Any] = {}
    for step in steps:
        op, *a = step
        if op == "w":  # name, tag, n[, start]
            write_lines(d / a[0], lines(a[1], a[2], a[3] if len(a) > 3 else 0))
        elif op == "raw":
            append(d / a[0], a[1])
        elif op == "mv":
            os.rename(d / a[0], d / a[1])
        elif op == "rm":
            os.unlink(d / a[0])
        elif op == "cp":
            shutil.copyfile(d / a[0], d / a[1])
        elif op == "trunc":
            os.truncate(d / a[0], 0)
        elif op == "rewrite":  # truncate and write more than before, in one go for the follower
            (d / a[0]).write_bytes(b"".join(x + b"\n" for x in lines(a[1], a[2])))
        elif op == "replace":  # temp + rename; a[1] = keep old content first?
            old = (d / a[0]).read_bytes() if a[1] else b""
            replace(d / a[0], old + b"".join(x + b"\n" for x in lines(a[2], a[3])))
        elif op == "rmdir":
            shutil.rmtree(d / a[0])
        elif op == "mkdir":
            (d / a[0]).mkdir(parents=True)
        elif op == "ln":  # target, link (atomically retargeted)
            tmp = d / (a[1] + ".tmp")
            os.symlink(d / a[0], tmp)
            os.replace(tmp, d / a[1])
        elif op == "open":  # a writer that keeps its file open
            handles[a[0]] = open(d / a[0], "ab", buffering=0)  # noqa: SIM115
        elif op == "hw":  # write through the held handle: name, tag, n, start
            handles[a[0]].write(b"".join(x + b"\n" for x in lines(a[1], a[2], a[3])))
        elif op == "sync":
            assert r is not None
            r.sync(a[0])
        elif op == "hold":  # the consumer blocks after the next batch: the follower cannot read
            assert r is not None
            r.gate.clear()
        elif op == "release":
            assert r is not None
            r.gate.set()
        elif op == "wake":
            assert r is not None
            r.follower.wake()
        else:  # pragma: no cover
            raise AssertionError(op)
    for h in handles.values():
        h.close()


# name, follower kwargs, steps, expected lines (tag, n, start), expected stats subset
SCENARIOS: list[tuple[str, dict[str, Any], list[Step], list[tuple[str, int, int]], dict[str, int]]] = [
    (
        "append",
        {},
        [("w", "r.log", "a", 10), ("sync", 10), ("w", "r.log", "a", 5, 10)],
        [("a", 15, 0)],
        {"rotations": 0, "truncations": 0},
    ),
    (
        "rename-create",
        {},
        [
            ("w", "r.log", "a", 10),
            ("sync", 10),
            ("w", "r.log", "a", 5, 10),
            ("mv", "r.log", "r.log.1"),
            ("w", "r.log", "b", 7),
        ],
        [("a", 15, 0), ("b", 7, 0)],
        {"rotations": 1},
    ),
    (
        "new-file-before-rename-noticed",
        {},
        [
            ("w", "r.log", "a", 10),
            ("sync", 10),
            ("hold",),
            ("w", "r.log", "a", 1, 10),
            ("sync", 11),
            ("w", "r.log", "a", 4, 11),
            ("mv", "r.log", "r.log-20261122"),
            ("w", "r.log", "b", 7),
            ("release",),
        ],
        [("a", 15, 0), ("b", 7, 0)],
        {"rotations": 1},
    ),
    (
        "rename-without-create",
        {},
        [
            ("w", "r.log", "a", 10),
            ("sync", 10),
            ("mv", "r.log", "r.log.1"),
            ("w", "r.log.1", "a", 3, 10),
            ("sync", 13),
            ("w", "r.log", "b", 4),
        ],
        [("a", 13, 0), ("b", 4, 0)],
        {"rotations": 1},
    ),
    (
        "writer-appends-after-rename",
        {},
        [
            ("open", "r.log"),
            ("hw", "r.log", "a", 5, 0),
            ("sync", 5),
            ("mv", "r.log", "r.log.4500"),
            ("w", "r.log", "b", 2),
            ("sync", 7),
            ("open", "r.log.4500"),
            ("hw", "r.log.4500", "a", 3, 5),
        ],
        [("a", 5, 0), ("b", 2, 0), ("a", 3, 5)],
        {"rotations": 1},
    ),
    (
        "copytruncate-unread-lines-recovered",
        {},
        [
            ("w", "r.log", "a", 10),
            ("sync", 10),
            ("hold",),
            ("w", "r.log", "a", 1, 10),
            ("sync", 11),
            ("w", "r.log", "a", 4, 11),
            ("cp", "r.log", "r.log.1"),
            ("trunc", "r.log"),
            ("w", "r.log", "b", 3),
            ("release",),
        ],
        [("a", 15, 0), ("b", 3, 0)],
        {"truncations": 1},
    ),
    (
        "copytruncate-all-read",
        {},
        [
            ("w", "r.log", "a", 10),
            ("sync", 10),
            ("cp", "r.log", "r.log.1"),
            ("trunc", "r.log"),
            ("w", "r.log", "b", 3),
        ],
        [("a", 10, 0), ("b", 3, 0)],
        {"truncations": 1},
    ),
    (
        # a hand-made copytruncate (`cp log log.1 && : > log`) run again: the copy is overwritten
        # in place (same inode) while it is still open as the first copy; its new bytes are lines
        # already read from the log, never new ones
        "copytruncate-twice-copy-overwritten-in-place",
        {},
        [
            ("w", "r.log", "a", 10),
            ("sync", 10),
            ("cp", "r.log", "r.log.1"),
            ("trunc", "r.log"),
            ("w", "r.log", "b", 3),
            ("sync", 13),
            ("w", "r.log", "b", 2, 3),
            ("sync", 15),
            ("cp", "r.log", "r.log.1"),
            ("trunc", "r.log"),
            ("w", "r.log", "c", 4),
        ],
        [("a", 10, 0), ("b", 5, 0), ("c", 4, 0)],
        {"truncations": 2},
    ),
    (
        "copy-without-truncate",
        {},
        [("w", "r.log", "a", 10), ("sync", 10), ("cp", "r.log", "r.log.1"), ("w", "r.log", "a", 3, 10)],
        [("a", 13, 0)],
        {"truncations": 0, "rotations": 0},
    ),
    (
        "truncate-in-place",
        {},
        [("w", "r.log", "a", 10), ("sync", 10), ("trunc", "r.log"), ("w", "r.log", "b", 3)],
        [("a", 10, 0), ("b", 3, 0)],
        {"truncations": 1},
    ),
    (
        "truncate-then-more-bytes-before-next-read",
        {},
        [
            ("w", "r.log", "a", 3),
            ("sync", 3),
            ("hold",),
            ("w", "r.log", "a", 1, 3),
            ("sync", 4),
            ("rewrite", "r.log", "b", 20),
            ("release",),
        ],
        [("a", 4, 0), ("b", 20, 0)],
        {"truncations": 1},
    ),
    (
        "delete-recreate",
        {},
        [("w", "r.log", "a", 10), ("sync", 10), ("rm", "r.log"), ("w", "r.log", "b", 4)],
        [("a", 10, 0), ("b", 4, 0)],
        {"rotations": 1},
    ),
    (
        "atomic-replace-same-first-bytes",
        {},
        [("w", "r.log", "a", 10), ("sync", 10), ("replace", "r.log", True, "c", 5)],
        [("a", 10, 0), ("c", 5, 0)],
        {},
    ),
    (
        "atomic-replace-new-content",
        {},
        [("w", "r.log", "a", 10), ("sync", 10), ("replace", "r.log", False, "c", 6)],
        [("a", 10, 0), ("c", 6, 0)],
        {"rotations": 1},
    ),
    (
        "file-created-later",
        {},
        [("w", "r.log", "a", 5)],
        [("a", 5, 0)],
        {},
    ),
    (
        "directory-created-later",
        {"name": "sub/deeper/r.log"},
        [("mkdir", "sub/deeper"), ("w", "sub/deeper/r.log", "a", 5)],
        [("a", 5, 0)],
        {},
    ),
    (
        "directory-deleted-and-recreated",
        {"name": "sub/r.log", "setup": [("mkdir", "sub")]},
        [("w", "sub/r.log", "a", 3), ("sync", 3), ("rmdir", "sub"), ("mkdir", "sub"), ("w", "sub/r.log", "b", 2)],
        [("a", 3, 0), ("b", 2, 0)],
        {"rotations": 1},
    ),
    (
        "line-split-across-reads",
        {"read_size": 7},
        [("w", "r.log", "a", 20)],
        [("a", 20, 0)],
        {},
    ),
    (
        "many-small-batches",
        {"max_batch_lines": 3},
        [("w", "r.log", "a", 100)],
        [("a", 100, 0)],
        {},
    ),
    (
        "symlink-target-rotated-then-retargeted",
        {"name": "link.log", "setup": [("w", "t1.log", "a", 0), ("ln", "t1.log", "link.log")]},
        [
            ("w", "t1.log", "a", 5),
            ("sync", 5),
            ("mv", "t1.log", "t1.log.1"),
            ("w", "t1.log", "b", 3),
            ("sync", 8),
            ("w", "t2.log", "c", 4),
            ("ln", "t2.log", "link.log"),
        ],
        [("a", 5, 0), ("b", 3, 0), ("c", 4, 0)],
        {"rotations": 2},
    ),
    (
        "many-rotations",
        {},
        [
            s
            for k in range(20)
            for s in (
                ("w", "r.log", f"g{k}", 7),
                ("sync", 9 * k + 7),
                ("w", "r.log", f"g{k}", 2, 7),
                ("mv", "r.log", f"r.log.{k}"),
            )
        ],
        [(f"g{k}", 9, 0) for k in range(20)],
        {},
    ),
]


def expected_lines(spec: list[tuple[str, int, int]]) -> list[bytes]:
    return [x for tag, n, start in spec for x in lines(tag, n, start)]


@pytest.mark.parametrize(("name", "kw", "steps", "want", "want_stats"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_scenario(
    tmp_path: Path,
    name: str,
    kw: dict[str, Any],
    steps: list[Step],
    want: list[tuple[str, int, int]],
    want_stats: dict[str, int],
) -> None:
    kw = dict(kw)
    target = kw.pop("name", "r.log")
    run_steps(None, tmp_path, kw.pop("setup", []))
    r = Runner(str(tmp_path / target), **kw)
    run_steps(r, tmp_path, steps)
    got = r.finish()
    assert got == expected_lines(want)  # in order: a rotated file is drained before the new one
    stats = r.follower.stats[str(tmp_path / target)]
    for k, v in want_stats.items():
        assert getattr(stats, k) == v, (k, stats)
    assert r.follower.lag_bytes()[str(tmp_path / target)] == 0


RAW: list[tuple[str, dict[str, Any], list[bytes], list[bytes], int]] = [
    # name, kwargs, chunks written one at a time (each synced by a wake), expected lines, too_long
    ("partial-line-held", {}, [b"a\npart", b"ial\n"], [b"a", b"partial"], 0),
    ("no-trailing-newline", {}, [b"x-1\nx-2"], [b"x-1"], 0),
    ("crlf", {}, [b"a\r\nb\r\n", b"c\r", b"\n"], [b"a", b"b", b"c"], 0),
    ("crlf-split-across-reads", {"read_size": 3}, [b"ab\r\ncd\r\n\r\nef\r\n"], [b"ab", b"cd", b"ef"], 0),
    ("empty-lines", {}, [b"\n\na\n\r\n\nb\n", b"\n"], [b"a", b"b"], 0),
    ("invalid-utf8", {}, [b"\xff\xfe bad \xc3\x28\n", b"ok\n"], [b"\xff\xfe bad \xc3\x28", b"ok"], 0),
    (
        "too-long-in-one-read",
        {"max_line_bytes": 10},
        [b"short\n" + b"x" * 50 + b"\nafter\n"],
        [b"short", b"after"],
        1,
    ),
    ("too-long-at-limit", {"max_line_bytes": 5}, [b"12345\n123456\n"], [b"12345"], 1),
    # its b"\r" counts, as in replay, whether or not a read ends between b"\r" and b"\n"
    ("crlf-too-long-at-limit", {"max_line_bytes": 5}, [b"12345\r\n1234\r\n"], [b"1234"], 1),
    ("crlf-too-long-at-limit-split", {"max_line_bytes": 5, "read_size": 6}, [b"12345\r\n1234\r\n"], [b"1234"], 1),
    (
        "too-long-across-reads",
        {"max_line_bytes": 10, "read_size": 8},
        [b"a\n" + b"y" * 100 + b"\nb\n" + b"z" * 30 + b"\n"],
        [b"a", b"b"],
        2,
    ),
    (
        "too-long-arriving-slowly",
        {"max_line_bytes": 10},
        [b"ok\n", b"y" * 8, b"y" * 8, b"y" * 8, b"\nend\n"],
        [b"ok", b"end"],
        1,
    ),
]


@pytest.mark.parametrize(("name", "kw", "chunks", "want", "too_long"), RAW, ids=[s[0] for s in RAW])
def test_line_handling(
    tmp_path: Path, name: str, kw: dict[str, Any], chunks: list[bytes], want: list[bytes], too_long: int
) -> None:
    p = tmp_path / "r.log"
    p.write_bytes(b"")
    r = Runner(str(p), **kw)
    for c in chunks:
        append(p, c)
    got = r.finish()
    assert got == want
    assert r.too_long == too_long == r.follower.stats[str(p)].too_long


# -- restarts ---------------------------------------------------------------------------------

RESTARTS: list[tuple[str, list[Step], list[Step], list[tuple[str, int, int]], dict[str, int]]] = [
    # name, steps while running, steps while stopped, lines expected after the restart, stats
    (
        "resume-mid-file",
        [("w", "r.log", "a", 10), ("sync", 10)],
        [("w", "r.log", "a", 5, 10)],
        [("a", 5, 10)],
        {},
    ),
    (
        "rotated-while-stopped-dot1",
        [("w", "r.log", "a", 10), ("sync", 10)],
        [("w", "r.log", "a", 3, 10), ("mv", "r.log", "r.log.1"), ("w", "r.log", "b", 4)],
        [("a", 3, 10), ("b", 4, 0)],
        {},
    ),
    (
        "rotated-while-stopped-dated",
        [("w", "r.log", "a", 10), ("sync", 10)],
        [("w", "r.log", "a", 3, 10), ("mv", "r.log", "r.log-20261122"), ("w", "r.log", "b", 4)],
        [("a", 3, 10), ("b", 4, 0)],
        {},
    ),
    (
        "rotated-while-stopped-numbered",
        [("w", "r.log", "a", 10), ("sync", 10)],
        [("w", "r.log", "a", 3, 10), ("mv", "r.log", "r.log.4500")],
        [("a", 3, 10)],
        {},
    ),
    (
        "copytruncate-while-stopped",
        [("w", "r.log", "a", 10), ("sync", 10)],
        [("w", "r.log", "a", 3, 10), ("cp", "r.log", "r.log.1"), ("trunc", "r.log"), ("w", "r.log", "b", 40)],
        [("a", 3, 10), ("b", 40, 0)],
        {"truncations": 1},
    ),
    (
        # stopped just after a rotation, before anything was written to the new file: the checkpoint
        # holds it, so it is found again after the next rotation, made while stopped
        "rotated-while-stopped-after-a-rotation-with-nothing-read-since",
        [("w", "r.log", "a", 10), ("sync", 10), ("mv", "r.log", "r.log.1"), ("w", "r.log", "b", 0)],
        [("mv", "r.log.1", "r.log.2"), ("w", "r.log", "b", 5), ("mv", "r.log", "r.log.1"), ("w", "r.log", "c", 2)],
        [("b", 5, 0), ("c", 2, 0)],
        {},
    ),
    (
        # stopped just after a copytruncate, before anything was written again: the checkpoint holds
        # the emptied file; the lines written next and copytruncated while stopped are in the copy
        "copytruncate-while-stopped-after-a-copytruncate-with-nothing-read-since",
        [("w", "r.log", "a", 10), ("sync", 10), ("cp", "r.log", "r.log.1"), ("trunc", "r.log")],
        [
            ("mv", "r.log.1", "r.log.2"),
            ("w", "r.log", "b", 5),
            ("cp", "r.log", "r.log.1"),
            ("trunc", "r.log"),
            ("w", "r.log", "c", 2),
        ],
        [("b", 5, 0), ("c", 2, 0)],
        {},
    ),
    (
        "truncated-in-place-while-stopped",
        [("w", "r.log", "a", 3), ("sync", 3)],
        [("rewrite", "r.log", "b", 20)],
        [("b", 20, 0)],
        {"truncations": 1},
    ),
    (
        "deleted-while-stopped-other-inode",
        [("w", "r.log", "a", 3), ("sync", 3), ("w", "keep", "k", 1)],
        [("rm", "r.log"), ("mv", "keep", "r.log"), ("w", "r.log", "b", 2)],
        [("k", 1, 0), ("b", 2, 0)],
        {"lost_files": 1},
    ),
    (
        "rotated-read-to-its-end-then-deleted-while-stopped",
        [("w", "r.log", "a", 3), ("sync", 3), ("mv", "r.log", "r.log.1"), ("w", "r.log", "b", 2), ("sync", 5)],
        [("rm", "r.log.1"), ("w", "r.log", "b", 1, 2)],
        [("b", 1, 2)],
        {"lost_files": 0},  # nothing was lost: no warning either
    ),
    (
        "deleted-while-stopped",
        [("w", "r.log", "a", 3), ("sync", 3)],
        [("rm", "r.log"), ("w", "r.log", "b", 2)],
        [("b", 2, 0)],
        {},  # lost_files 1, or truncations 1 when the new file got the old inode (ext4 reuses them)
    ),
    (
        "replaced-same-first-bytes-while-stopped",
        [("w", "r.log", "a", 3), ("sync", 3)],
        [("replace", "r.log", True, "c", 2)],
        [("c", 2, 0)],
        {},
    ),
    (
        "copy-without-truncate-while-stopped",
        [("w", "r.log", "a", 3), ("sync", 3)],
        [("cp", "r.log", "r.log.1"), ("w", "r.log", "a", 2, 3)],
        [("a", 2, 3)],
        {},
    ),
]


@pytest.mark.parametrize(("name", "before", "stopped", "want", "want_stats"), RESTARTS, ids=[s[0] for s in RESTARTS])
def test_restart(
    tmp_path: Path,
    name: str,
    before: list[Step],
    stopped: list[Step],
    want: list[tuple[str, int, int]],
    want_stats: dict[str, int],
) -> None:
    p = str(tmp_path / "r.log")
    r = Runner(p)
    run_steps(r, tmp_path, before)
    r.finish()
    # what serve saves: the checkpoint taken after the last batch, which must be the final one
    saved = r.checkpoints[-1][1]
    assert saved == json.loads(json.dumps(r.follower.positions()))
    run_steps(None, tmp_path, stopped)
    r2 = Runner(p, positions=saved)
    got = r2.finish()
    assert got == expected_lines(want)  # in order: a rotated file is drained before the new one
    stats = r2.follower.stats[p]
    for k, v in want_stats.items():
        assert getattr(stats, k) == v, (k, stats)


def test_copy_closed_before_the_checkpoint_is_not_read_again_after_a_restart(tmp_path: Path) -> None:
    """Stopped after a copytruncate with nothing read since, the copy already closed (rotate_wait):
    at the restart the copy, written in the truncation's tick or before, is not taken for one made
    while stopped."""
    p = str(tmp_path / "r.log")
    r = Runner(p, rotate_wait=0.0)
    run_steps(r, tmp_path, [("w", "r.log", "a", 10), ("sync", 10), ("cp", "r.log", "r.log.1"), ("trunc", "r.log")])
    os.utime(tmp_path / "r.log.1", ns=(0, os.stat(tmp_path / "r.log").st_mtime_ns))  # the same tick
    r.follower.wake()
    deadline = time.monotonic() + TIMEOUT
    while len(r.follower.positions()["files"]) != 1 or not r.follower.positions()["files"][0]["zero_at"]:
        assert time.monotonic() < deadline, r.follower.positions()
        time.sleep(0.01)
    r.finish()
    saved = json.loads(json.dumps(r.follower.positions()))
    write_lines(tmp_path / "r.log", lines("b", 5))
    assert Runner(p, positions=saved).finish() == lines("b", 5)


def test_crash_after_any_batch_resumes_exactly(tmp_path: Path) -> None:
    """Positions saved after batch k re-yield exactly the lines after batch k, for every k."""
    p = tmp_path / "r.log"
    write_lines(p, lines("a", 10))
    append(p, b"\n\r\n" + b"x" * 50 + b"\n")  # empty and too-long lines move positions too
    write_lines(p, lines("a", 10, 10))
    append(p, b"partial")
    r = Runner(str(p), max_batch_lines=3, read_size=64, max_line_bytes=40)
    r.sync(20)
    everything = r.finish()
    assert everything == lines("a", 20)
    assert r.too_long == 1
    for seen, pos in r.checkpoints:
        r2 = Runner(str(p), positions=pos, max_line_bytes=40)
        assert r2.finish() == everything[seen:]


def test_partial_line_across_restart(tmp_path: Path) -> None:
    p = tmp_path / "r.log"
    append(p, b"a\npar")
    r = Runner(str(p))
    r.sync(1)
    assert r.finish() == [b"a"]
    append(p, b"tial\n")
    r2 = Runner(str(p), positions=r.follower.positions())
    assert r2.finish() == [b"partial"]


def test_too_long_line_across_restart(tmp_path: Path) -> None:
    p = tmp_path / "r.log"
    append(p, b"ok\n" + b"y" * 100)
    r = Runner(str(p), max_line_bytes=10)
    r.sync(1)
    assert r.finish() == [b"ok"]
    assert r.follower.positions()["files"][0]["skipping"] is True
    append(p, b"yyy\nend\n")
    r2 = Runner(str(p), positions=r.follower.positions(), max_line_bytes=10)
    assert r2.finish() == [b"end"]
    assert r2.too_long == 1


def test_from_end_starts_after_last_complete_line(tmp_path: Path) -> None:
    p = tmp_path / "r.log"
    append(p, b"old-1\nold-2\nhalf")
    r = Runner(str(p), from_end=True)
    append(p, b"-done\nnew\n")
    assert r.finish() == [b"half-done", b"new"]


def test_glob_follows_every_match_and_new_ones(tmp_path: Path) -> None:
    write_lines(tmp_path / "a.log", lines("a", 3))
    write_lines(tmp_path / "b.log", lines("b", 4))
    (tmp_path / "ignored.txt").write_bytes(b"nope\n")
    r = Runner(str(tmp_path / "*.log"))
    r.sync(7)
    write_lines(tmp_path / "c.log", lines("c", 2))
    r.sync(9)
    os.rename(tmp_path / "a.log", tmp_path / "a.log.1")
    write_lines(tmp_path / "a.log", lines("a2", 1))
    got = r.finish()
    assert sorted(got) == sorted(lines("a", 3) + lines("b", 4) + lines("c", 2) + lines("a2", 1))
    assert r.sources == {str(tmp_path / f"{x}.log") for x in "abc"}


def _drain_all(f: FileFollower, *, expire: bool) -> list[bytes]:
    """One pass of the follower's loop, by hand: scan, read every file, and (expire=True) act as if
    rotate_wait had passed, then scan again and read what that opened."""
    got: list[bytes] = []
    for _ in range(2):
        f._scan()
        for t in f._order():
            got += [x for b in f._drain(t) for x in b.lines]
        if expire:
            f._expire(time.monotonic() + f.rotate_wait + 1)
    return got


def test_glob_rename_to_a_matching_name_while_stopped_is_not_read_again(tmp_path: Path) -> None:
    """requests.log renamed (serve stopped) to requests-000001.log, which the glob also matches:
    the file is known by identity and goes on from its offset under the new name, also after
    rotate_wait; it is never reopened as a new file."""
    p = tmp_path / "requests.log"
    write_lines(p, lines("a", 1) + lines("b", 1))
    pattern = str(tmp_path / "requests*.log")
    f = FileFollower(pattern, stop=threading.Event(), rotate_wait=0.01)
    assert _drain_all(f, expire=False) == lines("a", 1) + lines("b", 1)
    saved = json.loads(json.dumps(f.positions()))
    f.close_files()
    os.rename(p, tmp_path / "requests-000001.log")
    write_lines(tmp_path / "requests-000001.log", lines("a2", 1))  # the writer's last line, after the rename
    write_lines(p, lines("c", 1))
    f2 = FileFollower(pattern, positions=saved, stop=threading.Event(), rotate_wait=0.01)
    got = _drain_all(f2, expire=True)
    got += _drain_all(f2, expire=True)
    assert sorted(got) == sorted(lines("a2", 1) + lines("c", 1))
    assert {t.path for t in f2._tails.values()} == {str(p), str(tmp_path / "requests-000001.log")}
    f2.close_files()


def test_a_closed_file_seen_again_goes_on_from_its_offset(tmp_path: Path) -> None:
    """A file closed after rotate_wait (renamed to a name the glob does not match), then renamed
    back to a matching name: read on from where it was, not from its start."""
    p = tmp_path / "requests.log"
    write_lines(p, lines("a", 2))
    f = FileFollower(str(tmp_path / "requests*.log"), stop=threading.Event(), rotate_wait=0.01)
    assert _drain_all(f, expire=False) == lines("a", 2)
    os.rename(p, tmp_path / "requests.log.1")
    assert _drain_all(f, expire=True) == []
    assert f._tails == {}  # closed and forgotten
    write_lines(tmp_path / "requests.log.1", lines("b", 1))
    os.rename(tmp_path / "requests.log.1", tmp_path / "requests-000001.log")
    assert _drain_all(f, expire=False) == lines("b", 1)
    f.close_files()


def test_glob_directory_created_later(tmp_path: Path) -> None:
    r = Runner(str(tmp_path / "inst-*" / "r.log"))
    (tmp_path / "inst-1").mkdir()
    write_lines(tmp_path / "inst-1" / "r.log", lines("a", 2))
    r.sync(2)
    (tmp_path / "inst-2").mkdir()
    write_lines(tmp_path / "inst-2" / "r.log", lines("b", 3))
    assert sorted(r.finish()) == sorted(lines("a", 2) + lines("b", 3))


@pytest.mark.parametrize("backend", ["poll", "watchfiles"])
def test_other_backends(tmp_path: Path, backend: str) -> None:
    p = tmp_path / "r.log"
    r = Runner(str(p), backend=backend, poll_interval=0.02)
    write_lines(p, lines("a", 3))
    r.sync(3)
    os.rename(p, tmp_path / "r.log.1")
    write_lines(p, lines("b", 2))
    r.sync(5)
    assert sorted(r.finish()) == sorted(lines("a", 3) + lines("b", 2))


def _fifo(tmp_path: Path) -> str:
    os.mkfifo(tmp_path / "fifo")
    return str(tmp_path / "fifo")


def _devzero_link(tmp_path: Path) -> str:
    os.symlink("/dev/zero", tmp_path / "zero.log")
    return str(tmp_path / "zero.log")


BAD: list[tuple[str, Callable[[Path], str], str]] = [
    ("directory", lambda d: str(d), "is a directory"),
    ("fifo", _fifo, "is a FIFO"),
    ("dev-zero", lambda d: "/dev/zero", "is a device"),
    ("symlink-to-dev-zero", _devzero_link, "is a device"),
]


@pytest.mark.parametrize(("name", "make", "message"), BAD, ids=[b[0] for b in BAD])
def test_not_a_regular_file_is_a_clear_error(
    tmp_path: Path, name: str, make: Callable[[Path], str], message: str
) -> None:
    with pytest.raises(SourceError, match=message):
        FileFollower(make(tmp_path))


def test_fifo_appearing_later_never_hangs(tmp_path: Path) -> None:
    p = tmp_path / "r.log"
    r = Runner(str(p))
    os.mkfifo(p)
    r.follower.wake()
    os.unlink(p)
    write_lines(p, lines("a", 2))
    assert r.finish() == lines("a", 2)


PERMISSION_CHILD = """
import json, sys, threading
from logmetrics.sources.file import FileFollower
stop = threading.Event()
f = FileFollower(sys.argv[1], stop=stop)
def control():
    for cmd in sys.stdin:
        if cmd.strip() == "wake": f.wake()
        else: stop.set(); f.wake(); return
threading.Thread(target=control, daemon=True).start()
print(json.dumps({"ready": f.stats[sys.argv[1]].open_errors}), flush=True)
for b in f:
    print(json.dumps({"lines": len(b.lines), "open_errors": f.stats[sys.argv[1]].open_errors}), flush=True)
print(json.dumps({"done": f.stats[sys.argv[1]].open_errors}), flush=True)
"""


def test_permission_denied_then_fixed(tmp_path: Path) -> None:
    """In a child without CAP_DAC_OVERRIDE (root ignores file modes otherwise)."""
    d = tmp_path / "perm"
    d.mkdir()
    p = d / "r.log"
    write_lines(p, lines("a", 4))
    os.chmod(p, 0)
    argv = [sys.executable, "-c", PERMISSION_CHILD, str(p)]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:  # pragma: no cover
            pytest.skip("root without setpriv: cannot drop CAP_DAC_OVERRIDE")
        argv = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *argv]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True) as child:
        _permission_dialogue(child, p)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o644


def _permission_dialogue(child: subprocess.Popen[str], p: Path) -> None:
    assert child.stdin is not None and child.stdout is not None
    try:
        assert json.loads(child.stdout.readline()) == {"ready": 1}
        os.chmod(p, 0o644)
        child.stdin.write("wake\n")
        child.stdin.flush()
        assert json.loads(child.stdout.readline()) == {"lines": 4, "open_errors": 1}
        write_lines(p, lines("a", 2, 4))
        assert json.loads(child.stdout.readline()) == {"lines": 2, "open_errors": 1}
        child.stdin.write("stop\n")
        child.stdin.flush()
        assert json.loads(child.stdout.readline()) == {"done": 1}
    finally:
        child.kill()


ROTATING_WRITER = """
import os, sys, time
path, rate, seconds, rotate_every = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
burst = rate // 100
fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
start = time.monotonic()
i = k = 0
next_rotation = start + rotate_every
while i < rate * seconds:
    os.write(fd, b"".join(b'{"i":%d,"pad":"%s"}\\n' % (i + j, b"x" * 200) for j in range(burst)))
    i += burst
    now = time.monotonic()
    if now >= next_rotation:  # what RotatingFileHandler does: rename, reopen
        os.close(fd)
        k += 1
        os.rename(path, f"{path}.{k}")
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        next_rotation += rotate_every
    time.sleep(max(0.0, start + i / rate - time.monotonic()))
os.close(fd)
print(k)
"""


def rotation_storm(tmp_path: Path, seconds: float) -> None:
    p = tmp_path / "r.log"
    rate = 5000
    r = Runner(str(p), rotate_wait=1.0)
    done = subprocess.run(
        [sys.executable, "-c", ROTATING_WRITER, str(p), str(rate), str(seconds), "0.2"],
        capture_output=True,
        text=True,
        check=True,
    )
    total = int(rate * seconds)
    r.sync(total)
    got = r.finish()
    assert len(got) == total
    assert sorted(json.loads(x)["i"] for x in got) == list(range(total))
    assert r.follower.stats[str(p)].rotations == int(done.stdout)


def test_rotation_storm_short(tmp_path: Path) -> None:
    """5 rotations/s under 5k records/s for 2 s: every record exactly once."""
    rotation_storm(tmp_path, 2.0)


@pytest.mark.slow
def test_rotation_storm_30s(tmp_path: Path) -> None:
    rotation_storm(tmp_path, 30.0)
