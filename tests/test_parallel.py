"""Parallel replay (real worker processes): byte ranges cut at line ends hold exactly the file's
lines, and any number of jobs writes what one process writes, byte for byte."""

from __future__ import annotations

import errno
import gzip
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from logmetrics import parallel
from logmetrics.aggregate import Aggregator
from logmetrics.errors import LogmetricsError
from logmetrics.export import exposition
from logmetrics.parse import Parser
from logmetrics.pipeline import Filters, Ingest, replay
from logmetrics.sources.archive import Lines, ReadStats, each_line, line_starts, read_lines, read_range
from logmetrics.view import summary_rows
from tests.test_merge import _many_label_sets, _wide

SAMPLES = Path(__file__).resolve().parent.parent / "fixtures" / "sample-logs"


def _messy(seed: int) -> bytes:
    """Lines with CRLF, NUL runs, blank lines, over-long lines and no final newline."""
    rng = random.Random(seed)
    pieces = []
    for i in range(400):
        kind = rng.randrange(8)
        if kind == 0:
            pieces.append(b"x" * rng.randrange(90, 300) + b"\n")  # over the 100-byte limit below
        elif kind == 1:
            pieces.append(b"\0" * rng.randrange(1, 9))
        elif kind == 2:
            pieces.append(b"\r\n" if rng.random() < 0.5 else b"\n")
        else:
            pieces.append(b'{"n": %d}' % i + (b"\r\n" if kind == 3 else b"\n"))
    return b"".join(pieces) + b'{"last": 1}'


@pytest.mark.parametrize("seed", range(6))
def test_ranges_hold_exactly_the_files_lines(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "f.log"
    data = _messy(seed)
    path.write_bytes(data)
    whole = ReadStats()
    want = list(read_lines([str(path)], whole, 100))
    for n in (2, 3, 7, 50):
        cuts = line_starts(str(path), len(data), n)
        assert cuts == sorted(set(cuts)) and all(data[c - 1:c] in (b"\n", b"\0") for c in cuts)
        got: list[bytes] = []
        parts = ReadStats()
        bounds: list[int | None] = [0, *cuts, None]
        for start, end in zip(bounds, bounds[1:], strict=False):
            got.extend(read_range(str(path), start or 0, end, parts, 100))
        assert got == want
        assert (parts.too_long, parts.bytes_read) == (whole.too_long, whole.bytes_read)


def test_a_hole_is_cut_where_it_is(tmp_path: Path) -> None:
    """A sparse file (copytruncate under a writer without O_APPEND leaves a hole before the next
    line): the cut search in the hole stops at its first zero. It read the zeros up to the next
    newline, 5 GB of them for a 10 GB hole (16 s; the part after the cut then skips them)."""
    path = tmp_path / "sparse.log"
    line = b'{"model": "m", "latency_ms": 5}\n'
    with open(path, "wb") as f:
        f.write(line)
        f.truncate(10 << 30)
        f.seek(10 << 30)
        f.write(line)
    size = path.stat().st_size
    assert line_starts(str(path), size, 2) == [size // 2]
    for n in (2, 3):
        cuts = line_starts(str(path), size, n)
        bounds: list[int | None] = [0, *cuts, None]
        got = [x for s, e in zip(bounds, bounds[1:], strict=False)
               for x in read_range(str(path), s or 0, e, ReadStats(), 100)]
        assert got == [line[:-1], line[:-1]]


def test_a_file_without_newlines_is_one_range(tmp_path: Path) -> None:
    path = tmp_path / "f.log"
    path.write_bytes(b"y" * 5000)
    assert line_starts(str(path), 5000, 4) == []


@pytest.fixture
def inputs(tmp_path: Path) -> list[str]:
    """Real samples, a gzipped copy, and a larger generated file with many label sets."""
    shutil.copy(SAMPLES / "litellm-1.109.1" / "requests-runA.jsonl.gz", tmp_path / "a.jsonl.gz")
    (tmp_path / "b.log").write_bytes(b"\n".join(_many_label_sets(6_000, seed=7)) + b"\n")
    with gzip.open(tmp_path / "c.log.gz", "wb") as f:
        f.write((SAMPLES / "generated" / "slp-40.jsonl").read_bytes())
    return [str(tmp_path / "a.jsonl.gz"), str(tmp_path / "b.log"),
            str(SAMPLES / "litellm-1.109.1" / "proxy-stdout.log"), str(tmp_path / "c.log.gz"),
            str(SAMPLES / "generated")]


def _replay(
    paths: list[str], jobs: int, max_series: int, filters: Filters | None = None
) -> tuple[Aggregator, ReadStats]:
    agg = Aggregator(max_series=max_series)
    seen: list[int] = []
    stats = replay(paths, Ingest(agg, Parser(), filters or Filters()), lambda s, total, n: seen.append(n), jobs)
    assert seen == sorted(seen)  # records read so far never go back
    return agg, stats


@pytest.mark.parametrize("max_series", [10_000, 150], ids=["uncapped", "capped"])
@pytest.mark.parametrize("jobs", [2, 3])
def test_jobs_give_one_process_output(inputs: list[str], monkeypatch: pytest.MonkeyPatch, jobs: int,
                                      max_series: int) -> None:
    one, one_stats = _replay(inputs, 1, max_series)
    monkeypatch.setattr(parallel, "MIN_PART_BYTES", 1 << 16)  # small parts: the plain files are cut
    monkeypatch.setattr(parallel, "ACC_CHUNK", 7)  # a part's accumulators come in many pickles
    parts = parallel.plan(inputs[:2], jobs)
    assert parts is not None and len(parts) > 2 and any(p.end is not None for p in parts)
    many, many_stats = _replay(inputs, jobs, max_series)
    assert exposition(many) == exposition(one)
    assert summary_rows(many) == summary_rows(one)
    assert many.series_dropped == one.series_dropped and many.skipped == one.skipped
    assert many_stats == one_stats


@pytest.mark.parametrize(("max_series", "groups", "by"), [(150, 9, "model"), (150, 9, "deployment"),
                                                          (5, 40, "model"), (40, 40, "model")])
@pytest.mark.parametrize("jobs", [2, 3])
def test_parts_after_a_full_state_fold_in_the_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      max_series: int, groups: int, by: str, jobs: int) -> None:
    """The state this process reads is full early in the first part: the workers fold as one run
    folds, and their parts are merged (none is read again here). Rows too, when they are full
    (5 and 40 of 40 model groups), or fill only later (40 rows: not when the label sets do)."""
    path = tmp_path / "wide.log"
    path.write_bytes(b"\n".join(_wide(6_000, seed=max_series + groups, groups=groups)) + b"\n")
    one = Aggregator(max_series=max_series, by=by, rates=False)
    replay([str(path)], Ingest(one, Parser()), None, 1)
    monkeypatch.setattr(parallel, "MIN_PART_BYTES", 1 << 16)
    monkeypatch.setattr(parallel, "PROGRESS_LINES", 300)  # this process checks for full every 300 lines
    monkeypatch.setattr(parallel, "ACC_CHUNK", 7)
    read_here: list[parallel.Part] = []
    real_read_here = parallel._read_here

    def counted(part: parallel.Part, *args: Any) -> None:
        read_here.append(part)
        real_read_here(part, *args)

    monkeypatch.setattr(parallel, "_read_here", counted)
    many = Aggregator(max_series=max_series, by=by, rates=False)
    replay([str(path)], Ingest(many, Parser()), None, jobs)
    assert exposition(many) == exposition(one)
    assert summary_rows(many) == summary_rows(one)
    assert many.series_dropped == one.series_dropped and many.series_dropped["litellm_requests_metric"] > 0
    parts = parallel.plan([str(path)], jobs)
    assert parts is not None and len(parts) == jobs and read_here == parts[:1]  # no part read again here


def test_filters_apply_in_workers(inputs: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    filters = Filters(models=["m1*", "gpt-4o*"])
    one, _ = _replay(inputs, 1, 10_000, filters)
    monkeypatch.setattr(parallel, "MIN_PART_BYTES", 1 << 16)
    many, _ = _replay(inputs, 2, 10_000, filters)
    assert exposition(many) == exposition(one) and one.skipped[next(iter(one.skipped))] >= 0
    assert sum(one.skipped.values()) > 0 and many.records == one.records > 0


def test_a_part_that_cannot_be_written_is_read_here(inputs: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk under the scratch directory: the parent reads the workers' parts itself, and
    its progress (records so far: `_replay` checks they never go back) does not drop the workers'
    count when it starts reading their parts again."""
    one, one_stats = _replay(inputs, 1, 10_000)
    monkeypatch.setattr(parallel, "MIN_PART_BYTES", 1 << 16)

    def full(*args: object) -> None:
        time.sleep(0.6)  # the parent waits, reporting the workers' progress (every 0.25 s)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(parallel, "_write_part", full)  # the forked workers inherit it
    many, many_stats = _replay(inputs, 2, 10_000)
    assert exposition(many) == exposition(one) and many_stats == one_stats


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def test_workers_stop_when_the_replay_is_killed(inputs: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A killed replay (SIGKILL, or SIGTERM: exit at once) leaves no worker reading on for nobody."""
    monkeypatch.setattr(parallel, "MIN_PART_BYTES", 1 << 16)
    monkeypatch.setattr(parallel, "PROGRESS_LINES", 50)
    slow = Parser.parse
    monkeypatch.setattr(Parser, "parse", lambda self, line, **kw: (time.sleep(0.005), slow(self, line, **kw))[1])
    replaying = multiprocessing.get_context("fork").Process(target=_replay, args=(inputs, 2, 10_000))
    replaying.start()  # at 5 ms a line, a part lasts far longer than this test waits
    assert replaying.pid is not None
    try:
        deadline = time.monotonic() + 20
        workers: list[int] = []
        while not workers and time.monotonic() < deadline:
            time.sleep(0.05)  # polling for the worker to start, bounded by the deadline
            children = Path(f"/proc/{replaying.pid}/task/{replaying.pid}/children").read_text()
            workers = [int(c) for c in children.split()]
        assert workers, "no worker started"
    finally:
        os.kill(replaying.pid, signal.SIGKILL)
        replaying.join()
    deadline = time.monotonic() + 5  # the rest of the part would take more: ~15 s
    while not all(map(_gone, workers)) and time.monotonic() < deadline:
        time.sleep(0.05)  # polling for the orphaned workers to notice, bounded by the deadline
    assert all(map(_gone, workers))


def test_small_input_stdin_and_one_job_read_in_process(inputs: list[str]) -> None:
    assert parallel.plan(inputs, 1) is None
    assert parallel.plan(inputs, 4) is None  # well under 2 x MIN_PART_BYTES
    assert parallel.plan(["-", *inputs], 4) is None


def test_a_worker_that_dies_is_a_one_line_error(inputs: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "MIN_PART_BYTES", 1 << 16)
    monkeypatch.setattr(parallel, "_read_part", lambda *args: os._exit(3))  # the forked workers inherit it
    with pytest.raises(LogmetricsError, match=r"worker process died \(exit 3"):
        _replay(inputs, 2, 10_000)

    def fail(*args: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(parallel, "_read_part", fail)
    with pytest.raises(RuntimeError, match="a bug"):
        _replay(inputs, 2, 10_000)
    assert not multiprocessing.active_children()


def _cgroup_tree(root: Path, own: str, files: dict[str, str]) -> Path:
    """A cgroup mount under `root` and a /proc/self/cgroup naming `own` (lines as the kernel writes)."""
    root.mkdir()
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "proc-cgroup").write_text(own)
    return root / "proc-cgroup"


@pytest.mark.parametrize(
    ("own", "files", "limit"),
    [
        ("0::/\n", {"cpu.max": "max 100000\n"}, None),  # v2, no quota
        ("0::/\n", {"cpu.max": "150000 100000\n"}, 1.5),  # v2 in a namespace: `docker run --cpus 1.5`
        ("0::/user.slice/u.service\n", {"cpu.max": "max 100000\n", "user.slice/cpu.max": "200000 100000\n",
                                        "user.slice/u.service/cpu.max": "max 100000\n"}, 2.0),  # an ancestor's
        ("0::/host/only/path\n", {"cpu.max": "50000 100000\n"}, 0.5),  # a path not under the mount: its root
        ("12:cpu,cpuacct:/docker/abc\n0::/\n", {"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "300000\n",
                                               "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n"}, 3.0),  # v1
        ("4:cpu:/x\n", {"cpu/x/cpu.cfs_quota_us": "-1\n", "cpu/x/cpu.cfs_period_us": "100000\n"}, None),  # v1: none
        ("0::/\n", {"cpu.max": "garbage\n"}, None),  # unreadable: no cap
        ("", {}, None),
    ],
    ids=["v2-none", "v2-namespaced", "v2-ancestor", "v2-foreign-path", "v1-docker", "v1-none", "garbage", "none"],
)
def test_cgroup_cpu_limit_from_the_files(tmp_path: Path, own: str, files: dict[str, str], limit: float | None) -> None:
    """The parsing, on files laid out as the kernel does (the real kernel interface: the test below)."""
    proc = _cgroup_tree(tmp_path / "fs", own, files)
    assert parallel.cgroup_cpu_limit(str(tmp_path / "fs"), str(proc)) == limit


def _jobs_in_a_cgroup(cgroup: Path, quota_file: str, quota: str) -> str:
    (cgroup / quota_file).write_text(quota)
    code = "from logmetrics.parallel import jobs_default; print(jobs_default())"
    procs = str(cgroup / "cgroup.procs")

    def join() -> None:
        with open(procs, "w") as f:
            f.write(str(os.getpid()))

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, preexec_fn=join, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_jobs_default_follows_a_real_cgroup_cpu_quota() -> None:
    """A real child process in a real cgroup with a CPU quota of one CPU: one job, whatever the CPU count.
    Needs root and a writable cgroup hierarchy (v1 cpu controller, or v2 with cpu enabled); else skipped."""
    name = f"logmetrics-test-{os.getpid()}"
    candidates = [(Path("/sys/fs/cgroup/cpu") / name, "cpu.cfs_quota_us", "100000"),  # period: 100000
                  (Path("/sys/fs/cgroup") / name, "cpu.max", "100000 100000")]
    for cgroup, quota_file, quota in candidates:
        try:
            cgroup.mkdir()
        except OSError:
            continue
        try:
            if not (cgroup / quota_file).exists():
                continue
            assert _jobs_in_a_cgroup(cgroup, quota_file, quota) == "1"
            unlimited = "-1" if quota_file == "cpu.cfs_quota_us" else "max 100000"
            assert _jobs_in_a_cgroup(cgroup, quota_file, unlimited) == str(parallel.jobs_default())
            return
        finally:
            cgroup.rmdir()
    pytest.skip("no writable cgroup with a cpu controller here")


def test_feed_cuts_blocks_at_the_batch_size() -> None:
    """`feed` counts the lines of a `Lines` block: a batch holds what `size` says, a block cut at a
    line to fit, nothing lost or repeated."""
    data = b"\n".join(b"l%d" % i for i in range(100))
    items: list[bytes | Lines] = [b"first", Lines.of(data, 0, len(data)), b"last"]
    asked = iter([7, 1, 50, 3, 1000])
    batches: list[list[bytes]] = []
    parallel.feed(iter(items), lambda batch: batches.append(list(each_line(batch))), lambda: None,
                  lambda: next(asked))
    assert [len(b) for b in batches] == [7, 1, 50, 3, 41]
    assert [line for b in batches for line in b] == [b"first", *data.split(b"\n"), b"last"]


def test_feed_passes_none_items(monkeypatch: pytest.MonkeyPatch) -> None:
    """A parsed line may be None (a blank one): a batch starting with one is still fed."""
    monkeypatch.setattr(parallel, "PROGRESS_LINES", 2)
    got: list[object] = []
    parallel.feed(iter([None, 1, None, None, 2]), got.extend, lambda: None)
    assert got == [None, 1, None, None, 2]
