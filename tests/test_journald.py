"""The journald source against real journalctl on real `.journal` files.

Journal files are made with `systemd-journal-remote` from export streams (`journal_util`); the
follower reads a directory of them (`journalctl --directory DIR --follow`) while the test
appends to them. Tests poll for conditions with a deadline; none sleeps blindly.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from journal_util import SAMPLES, Entry, journal_remote, sample_journal, stream_to_journal, write_journal

from logmetrics.errors import SourceError
from logmetrics.sources.archive import ReadStats, read_lines, regular_file
from logmetrics.sources.journald import JournalFollower, LineMaxJoiner, _LineSplitter, read_journal_file

# Skipped on a developer's machine without them; in CI (CI=true) a missing install step fails.
real = pytest.mark.skipif(
    (shutil.which("journalctl") is None or journal_remote() is None) and not os.environ.get("CI"),
    reason="needs journalctl and systemd-journal-remote (apt-get install systemd-journal-remote)",
)
UNIT = "litellm.service"


def message(line: bytes) -> bytes:
    """MESSAGE of a journalctl JSON line, as the bytes the unit wrote."""
    value = json.loads(line)["MESSAGE"]
    return bytes(value) if isinstance(value, list) else str(value).encode()


def cursor_of(line: bytes) -> str:
    return str(json.loads(line)["__CURSOR"])


def entries(first: int, last: int, unit: str = UNIT) -> list[Entry]:
    return [
        Entry(f'{{"message": "request {i}", "level": "INFO"}}', seq=i, unit=unit)
        for i in range(first, last + 1)
    ]


def expected(first: int, last: int) -> list[bytes]:
    return [f'{{"message": "request {i}", "level": "INFO"}}'.encode() for i in range(first, last + 1)]


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        threading.Event().wait(0.02)


class Consumer:
    """Iterates a follower in a thread like the pipeline does: lines, then the checkpoint."""

    def __init__(self, follower: JournalFollower) -> None:
        self.follower = follower
        self.lines: list[bytes] = []
        self.cursors: list[str | None] = []
        self.skipped = 0
        self.error: BaseException | None = None
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for batch in self.follower:
                with self.lock:
                    self.lines.extend(batch.lines)
                    self.skipped += batch.skipped_too_long
                    self.cursors.append(self.follower.cursor())
        except BaseException as e:  # handed to the test thread
            self.error = e

    def messages(self) -> list[bytes]:
        with self.lock:
            return [message(line) for line in self.lines]

    def wait_lines(self, n: int) -> None:
        wait_for(
            lambda: len(self.lines) >= n or self.error is not None, f"{n} lines (have {len(self.lines)})"
        )
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        self.follower.close()
        self.thread.join(timeout=5)
        assert not self.thread.is_alive(), "follower did not stop"
        if self.error is not None:
            raise self.error


@pytest.fixture
def journal_dir(tmp_path: Path) -> Path:
    d = tmp_path / "journal"
    d.mkdir()
    return d


@pytest.fixture
def consumers() -> Iterator[list[Consumer]]:
    started: list[Consumer] = []
    yield started
    for c in started:
        c.follower.close()
        c.thread.join(timeout=5)


def follow(consumers: list[Consumer], directory: Path, **kw: object) -> Consumer:
    kw.setdefault("backoff_initial", 0.05)
    kw.setdefault("poll", 0.05)
    c = Consumer(JournalFollower(UNIT, directory=directory, **kw))  # type: ignore[arg-type]
    consumers.append(c)
    return c


# --- fast tier: no external program ---------------------------------------------------------


def line(i: int, size: int = 0) -> bytes:
    return json.dumps(
        {"MESSAGE": "x" * size, "__CURSOR": f"s=a;i={i}", "N": i}, separators=(",", ":")
    ).encode()


@pytest.mark.parametrize("chunk", [1, 7, 100, 1 << 20], ids=["bytewise", "7", "100", "whole"])
def test_line_splitter_keeps_cursor_of_dropped_lines(chunk: int) -> None:
    stream = b"\n".join([line(1), line(2, 5000), line(3), line(4, 5000)]) + b"\n"
    splitter = _LineSplitter(max_len=1000)
    got: list[bytes] = []
    skipped = 0
    cursors: list[str] = []
    for at in range(0, len(stream), chunk):
        out, n, cursor = splitter.feed(stream[at : at + chunk])
        got += out
        skipped += n
        if cursor is not None:
            cursors.append(cursor)
    assert got == [line(1), line(3)]
    assert skipped == 2
    assert cursors[-1] == "s=a;i=4"
    assert cursors == sorted(set(cursors), key=cursors.index)  # only moves forward


@pytest.mark.parametrize("chunk", [1, 7, 100, 1 << 20], ids=["bytewise", "7", "100", "whole"])
@pytest.mark.parametrize("first_size", [0, 5000], ids=["short", "too-long"])
def test_line_splitter_drops_the_expected_cursors_own_entry_only(chunk: int, first_size: int) -> None:
    """journalctl --cursor C prints C's own entry first (already counted): dropped, uncounted,
    short or too long; any other first entry is kept and reported as `gone`."""
    for expect, want_gone in (("s=a;i=1", None), ("s=a;i=0", "s=a;i=1")):
        stream = b"\n".join([line(1, first_size), line(2), line(3, 5000)]) + b"\n"
        splitter = _LineSplitter(max_len=1000, expect=expect)
        got: list[bytes] = []
        skipped = 0
        cursor = None
        for at in range(0, len(stream), chunk):
            out, n, c = splitter.feed(stream[at : at + chunk])
            got += out
            skipped += n
            cursor = c or cursor
        kept_first = want_gone is not None
        assert got == ([line(1)] if kept_first and not first_size else []) + [line(2)]
        assert skipped == 1 + (kept_first and first_size > 0)
        assert splitter.gone == want_gone and cursor == "s=a;i=3"


@pytest.mark.parametrize(
    ("kwargs", "tail"),
    [
        ({}, ["-n", "0", "-u", UNIT]),
        ({"user": True}, ["-n", "0", "--user-unit", UNIT]),
        ({"uid": 1000}, ["-n", "0", f"_SYSTEMD_USER_UNIT={UNIT}", "_UID=1000"]),
        ({"cursor": "s=x;i=1"}, ["--cursor", "s=x;i=1", "--no-tail", "-u", UNIT]),
        ({"since": "-1h"}, ["--since", "-1h", "--no-tail", "-u", UNIT]),
        ({"since": "-1h", "cursor": "c"}, ["--cursor", "c", "--no-tail", "-u", UNIT]),
    ],
    ids=["system-from-now", "own-user-unit", "other-users-unit", "cursor", "since", "cursor-wins"],
)
def test_argv(kwargs: dict[str, object], tail: list[str]) -> None:
    argv = JournalFollower(UNIT, **kwargs).argv()  # type: ignore[arg-type]
    assert argv[:5] == ["journalctl", "-o", "json", "--all", "--no-pager"]
    assert argv[5] == "--follow"
    assert argv[6:] == tail


def test_line_max_joiner_passes_junk_through() -> None:
    marker = b'"_LINE_BREAK":"line-max"'
    piece = b'{"MESSAGE":[300,-1,"x",65],"_PID":"1","_LINE_BREAK":"line-max"}'  # ints out of range, a string
    junk = [b"not json " + marker, b"[" + marker + b"]", piece]
    joiner = LineMaxJoiner(1000)
    out, skipped, _ = joiner.feed([*junk[:2], line(1)])
    assert out == [*junk[:2], line(1)] and skipped == 0
    out, skipped, _ = joiner.feed([junk[2], line(2)])
    assert out == [] and joiner.pending  # line(2): another stream, waits behind the piece
    assert joiner.finish() == ([line(2)], 1)
    out, skipped, _ = joiner.feed([junk[2], b'{"MESSAGE":"B","_PID":"1","__CURSOR":"c"}'])
    assert out == [b'{"_PID":"1","__CURSOR":"c","MESSAGE":[44,255,65,66]}'] and skipped == 0


def test_journal_gzip_and_plain_files_are_told_apart_and_pipes_never_opened(tmp_path: Path) -> None:
    (tmp_path / "x.journal").write_bytes(b"LPKSHHRH" + bytes(100))
    (tmp_path / "y.log").write_bytes(b"{}\n")
    (tmp_path / "z.gz").write_bytes(gzip.compress(b"{}\n"))
    os.mkfifo(tmp_path / "fifo")  # opening it would wait for a writer: this test would hang
    assert regular_file(str(tmp_path / "x.journal")) == (108, False)
    assert regular_file(str(tmp_path / "y.log")) == (3, True)
    assert regular_file(str(tmp_path / "z.gz")) == ((tmp_path / "z.gz").stat().st_size, False)
    export = SAMPLES / "journald-export-stream.bin"  # `journalctl -o export`: text lines, not a journal file
    assert regular_file(str(export)) == (export.stat().st_size, True)
    assert regular_file(str(tmp_path / "fifo")) is None and regular_file("-") is None
    with pytest.raises(FileNotFoundError):
        regular_file(str(tmp_path / "missing.journal"))


@pytest.mark.parametrize("tz", ["UTC", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"])
def test_log_lines_take_the_envelope_time_whatever_the_readers_zone(tmp_path: Path, tz: str) -> None:
    """LiteLLM's json_logs `timestamp` is the writer's local time without zone (the sample's proxy ran
    on UTC, as containers do); journald's __REALTIME_TIMESTAMP is exact. Read on a host in another
    zone, the log lines keep their real times: the newest record's time, and --since."""
    import subprocess
    import sys

    sample = SAMPLES / "journald.json"
    stamps = [int(json.loads(line)["__REALTIME_TIMESTAMP"]) / 1e6 for line in sample.read_text().splitlines()]
    env = {**os.environ, "TZ": tz}
    prom = tmp_path / "out.prom"
    since = stamps[3]  # the 429 access line's own second and the lines after it
    proc = subprocess.run([sys.executable, "-m", "logmetrics", "replay", str(sample), "--metrics-out", str(prom),
                           "--since", f"{int(since)}"], capture_output=True, env=env)
    assert proc.returncode == 0, proc.stderr
    text = prom.read_text()
    newest = [line.split()[1] for line in text.splitlines() if line.startswith("logmetrics_last_record_timestamp")]
    assert [float(v) for v in newest] == [max(stamps)]
    assert f'logmetrics_records_skipped_total{{reason="filtered"}} {sum(t < int(since) for t in stamps)}.0' in text


def test_missing_journalctl_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="journalctl not found"):
        list(read_journal_file(tmp_path / "x.journal", journalctl=str(tmp_path / "no-journalctl")))
    with pytest.raises(SourceError, match="journalctl not found"):
        next(iter(JournalFollower(UNIT, journalctl=str(tmp_path / "no-journalctl"))))


# --- real tier: journalctl and systemd-journal-remote ----------------------------------------


@pytest.mark.real
@real
def test_read_sample_journal_matches_captured_json(tmp_path: Path) -> None:
    path = sample_journal(tmp_path)
    assert regular_file(str(path)) == (path.stat().st_size, False)
    got = [json.loads(x) for x in read_journal_file(path)]
    want = [json.loads(x) for x in (SAMPLES / "journald.json").read_bytes().splitlines()]
    assert got == want
    assert sum(isinstance(e["MESSAGE"], list) for e in got) == 2  # ANSI colours, invalid UTF-8


@pytest.mark.real
@real
def test_export_stream_becomes_a_journal_file(tmp_path: Path) -> None:
    path = stream_to_journal(SAMPLES / "journald-export-stream.bin", tmp_path / "stream.journal")
    want = [message(x) for x in (SAMPLES / "journald.json").read_bytes().splitlines()]
    assert [message(x) for x in read_journal_file(path)] == want


@pytest.mark.real
@real
def test_read_journal_file_with_glob_characters_in_name(tmp_path: Path) -> None:
    path = write_journal(tmp_path / "a[1]*.journal", entries(1, 2))
    write_journal(tmp_path / "a1x.journal", entries(3, 4))  # would match the glob
    assert [message(x) for x in read_journal_file(path)] == expected(1, 2)


BYTE_MESSAGES = [
    b'\x1b[36mINFO\x1b[0m:     127.0.0.1:46778 - "POST /v1/chat/completions HTTP/1.1" 200',
    b"invalid utf-8 \xff\xfe\xc3( end",
    "unicode é ✓ 日本".encode(),
    b'{"message": "' + b"x" * 100_000 + b'"}',  # over 4096: null without --all
    b"tab\tand\rcarriage return",
]


@pytest.mark.real
@real
def test_byte_messages_survive_as_bytes(tmp_path: Path, journal_dir: Path, consumers: list[Consumer]) -> None:
    write_journal(journal_dir / "t.journal", [Entry(m, seq=i) for i, m in enumerate(BYTE_MESSAGES, 1)])
    assert [message(x) for x in read_journal_file(journal_dir / "t.journal")] == BYTE_MESSAGES
    c = follow(consumers, journal_dir, since="@0")
    c.wait_lines(len(BYTE_MESSAGES))
    assert c.messages() == BYTE_MESSAGES


@pytest.mark.real
@real
def test_follow_sees_appended_entries_of_its_unit_only(journal_dir: Path, consumers: list[Consumer]) -> None:
    path = write_journal(journal_dir / "t.journal", entries(1, 3) + entries(100, 101, unit="other.service"))
    c = follow(consumers, journal_dir, since="@0")
    c.wait_lines(3)
    write_journal(path, entries(4, 6))
    c.wait_lines(6)
    write_journal(journal_dir / "second.journal", entries(7, 8))  # a new file in the directory
    c.wait_lines(8)
    c.stop()
    assert c.messages() == expected(1, 8)
    assert c.follower.stats.restarts == 0


@pytest.mark.real
@real
def test_first_start_without_cursor_begins_now(journal_dir: Path, consumers: list[Consumer]) -> None:
    path = write_journal(journal_dir / "t.journal", entries(1, 3))
    c = follow(consumers, journal_dir)
    wait_for(lambda: c.follower.pid is not None, "journalctl to start")
    seq = 3
    while not c.lines:  # journalctl seeks to the end some time after it starts: append until seen
        seq += 1
        assert seq < 200, "appended entries never arrived"
        write_journal(path, entries(seq, seq))
        deadline = time.monotonic() + 0.5
        while not c.lines and time.monotonic() < deadline:
            threading.Event().wait(0.02)
    c.wait_lines(1)
    got = c.messages()
    first = int(json.loads(got[0])["message"].split()[1])
    assert first > 3  # nothing the journal held before the start
    write_journal(path, entries(seq + 1, seq + 2))
    c.wait_lines(seq + 2 - first + 1)
    c.stop()
    assert c.messages() == expected(first, seq + 2)


@pytest.mark.real
@real
def test_resume_by_cursor_without_loss_or_duplicates(journal_dir: Path, consumers: list[Consumer]) -> None:
    path = write_journal(journal_dir / "t.journal", entries(1, 5))
    a = follow(consumers, journal_dir, since="@0")
    a.wait_lines(5)
    a.stop()
    saved = a.follower.cursor()
    assert saved == cursor_of(a.lines[-1])
    # logged while logmetrics was down: more than the 10 that journalctl --follow shows by default
    write_journal(path, entries(6, 30))
    b = follow(consumers, journal_dir, cursor=saved, since="@0")  # the cursor wins over --since
    b.wait_lines(25)
    write_journal(path, entries(31, 31))
    b.wait_lines(26)
    b.stop()
    assert a.messages() + b.messages() == expected(1, 31)


@pytest.mark.real
@real
def test_resume_when_the_cursors_journal_file_was_vacuumed(
    journal_dir: Path, consumers: list[Consumer], caplog: pytest.LogCaptureFixture
) -> None:
    """The file holding the saved cursor is deleted while logmetrics is stopped (journald's
    vacuuming of archived files): the restart resumes at the next entry the journal holds, with a
    warning. It used to lose that entry too: `--after-cursor` skips the first entry after the
    cursor's position whether or not it is the cursor's own."""
    old = write_journal(journal_dir / "system@0001.journal", entries(1, 5))
    a = follow(consumers, journal_dir, since="@0")
    a.wait_lines(5)
    a.stop()
    write_journal(journal_dir / "system.journal", entries(6, 9))
    old.unlink()
    with caplog.at_level(logging.WARNING, logger="logmetrics.sources.journald"):
        b = follow(consumers, journal_dir, cursor=a.follower.cursor())
        b.wait_lines(4)
    write_journal(journal_dir / "system.journal", entries(10, 10))
    b.wait_lines(5)
    b.stop()
    assert b.messages() == expected(6, 10)
    assert b.follower.stats.cursor_gone == 1
    assert "no longer holds the entry of the saved cursor" in caplog.text


@pytest.mark.real
@real
def test_resume_after_a_reboot_reads_the_rest_of_the_earlier_boot(
    journal_dir: Path, consumers: list[Consumer]
) -> None:
    """Entries logged after the saved cursor but before a reboot are read after it. They were
    lost, and the new boot's first entry too: `journalctl --follow` implies `--boot=0`."""
    path = write_journal(journal_dir / "t.journal", entries(1, 5))
    a = follow(consumers, journal_dir, since="@0")
    a.wait_lines(5)
    a.stop()
    write_journal(path, entries(6, 8))  # logged after the last state write, then the machine rebooted
    new_boot = "aaaabbbbccccddddeeeeffff00001111"
    write_journal(path, [Entry(e.message, seq=e.seq, boot=new_boot) for e in entries(20, 22)])
    b = follow(consumers, journal_dir, cursor=a.follower.cursor())
    b.wait_lines(6)
    write_journal(path, [Entry(e.message, seq=e.seq, boot=new_boot) for e in entries(23, 23)])
    b.wait_lines(7)
    b.stop()
    assert b.messages() == expected(6, 8) + expected(20, 23)
    assert b.follower.stats.cursor_gone == 0


@pytest.mark.real
@real
def test_cursor_advances_over_lines_the_consumer_drops(journal_dir: Path, consumers: list[Consumer]) -> None:
    """Lines the parser will skip (not JSON, too long) still move the checkpoint."""
    junk = [Entry("Started LiteLLM proxy", seq=1), Entry("x" * 50_000, seq=2)]
    path = write_journal(journal_dir / "t.journal", junk)
    all_cursors = [cursor_of(x) for x in read_journal_file(path)]
    c = follow(consumers, journal_dir, since="@0", max_line_bytes=10_000)
    wait_for(lambda: c.skipped == 1, "the long line to be dropped")
    assert c.messages() == [b"Started LiteLLM proxy"]
    assert c.follower.cursor() == all_cursors[1]  # the dropped entry's own cursor
    assert c.follower.stats.skipped_too_long == 1
    c.stop()
    write_journal(path, entries(3, 3))
    d = follow(consumers, journal_dir, cursor=c.follower.cursor())
    d.wait_lines(1)
    d.stop()
    assert d.messages() == expected(3, 3) and d.skipped == 0


@pytest.mark.real
@real
def test_killed_journalctl_is_restarted_without_loss_or_duplicates(
    journal_dir: Path, consumers: list[Consumer]
) -> None:
    n = 3000
    path = write_journal(journal_dir / "t.journal", entries(1, n))
    c = follow(consumers, journal_dir, since="@0")
    wait_for(lambda: bool(c.lines) and c.follower.pid is not None, "the first batch")
    pid = c.follower.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # most likely mid-stream, maybe mid-line
    wait_for(lambda: c.follower.stats.restarts == 1, "a restart")
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), "the killed journalctl to be reaped")
    write_journal(path, entries(n + 1, n + 5))
    c.wait_lines(n + 5)
    c.stop()
    assert c.messages() == expected(1, n + 5)
    assert c.follower.stats.last_exit is not None


@pytest.mark.real
@real
def test_stop_ends_iteration_and_reaps_journalctl(journal_dir: Path, consumers: list[Consumer]) -> None:
    write_journal(journal_dir / "t.journal", entries(1, 1))
    c = follow(consumers, journal_dir, poll=0.2)
    wait_for(lambda: c.follower.pid is not None, "journalctl to start")
    pid = c.follower.pid
    started = time.monotonic()
    c.stop()
    assert time.monotonic() - started < 2
    assert not Path(f"/proc/{pid}").exists()


@pytest.mark.real
@real
def test_breaking_out_of_the_loop_reaps_journalctl(journal_dir: Path) -> None:
    write_journal(journal_dir / "t.journal", entries(1, 3))
    follower = JournalFollower(UNIT, directory=journal_dir, since="@0")
    it = iter(follower)
    next(it)
    pid = follower.pid
    it.close()  # GeneratorExit at the yield
    assert pid is not None and not Path(f"/proc/{pid}").exists()


@pytest.mark.real
@real
def test_bad_cursor_is_a_clear_error(journal_dir: Path) -> None:
    write_journal(journal_dir / "t.journal", entries(1, 1))
    with pytest.raises(SourceError, match="seek to cursor"):
        next(iter(JournalFollower(UNIT, directory=journal_dir, cursor="garbage")))


@pytest.mark.real
@real
def test_unit_without_entries_is_reported(
    journal_dir: Path, consumers: list[Consumer], caplog: pytest.LogCaptureFixture
) -> None:
    write_journal(journal_dir / "t.journal", entries(1, 1, unit="other.service"))
    with caplog.at_level(logging.WARNING, logger="logmetrics.sources.journald"):
        c = follow(consumers, journal_dir)
        wait_for(lambda: c.follower.pid is not None, "journalctl to start")
    assert c.follower.stats.empty_at_start
    assert "no journal entries for journald:litellm.service" in caplog.text
    c.stop()


@pytest.mark.real
@real
@pytest.mark.skipif(os.getuid() == 1000, reason="the sample's user unit belongs to uid 1000")
def test_another_users_unit_needs_the_uid_match(tmp_path: Path, consumers: list[Consumer]) -> None:
    journal_dir = sample_journal(tmp_path).parent
    own = JournalFollower(UNIT, user=True, directory=journal_dir, since="@0", poll=0.05)
    c = Consumer(own)
    consumers.append(c)
    wait_for(lambda: own.pid is not None, "journalctl to start")
    assert own.stats.empty_at_start  # --user-unit also matches _UID=<our uid>
    c.stop()
    other = follow(consumers, journal_dir, uid=1000, since="@0")
    other.wait_lines(10)
    other.stop()
    want = [message(x) for x in (SAMPLES / "journald.json").read_bytes().splitlines()]
    assert other.messages() == want


FAKE_JOURNALCTL = """#!/bin/sh
echo "$*" >> "$0.calls"
case "$*" in *" -n 1 "*) exit 0 ;; esac
n=$(wc -l < "$0.calls")
printf '{"__CURSOR":"c%s","MESSAGE":"entry %s"}\\n' "$n" "$n"
exit 3
"""


def test_journalctl_that_keeps_exiting_is_restarted_with_growing_backoff(
    tmp_path: Path, consumers: list[Consumer]
) -> None:
    fake = tmp_path / "journalctl"
    fake.write_text(FAKE_JOURNALCTL)
    fake.chmod(0o755)
    c = Consumer(
        JournalFollower(UNIT, journalctl=str(fake), backoff_initial=0.01, backoff_max=0.08, poll=0.05)
    )
    consumers.append(c)
    c.wait_lines(6)
    c.stop()
    calls = (tmp_path / "journalctl.calls").read_text().splitlines()
    assert "-n 1" in calls[0]  # the probe
    assert calls[1].endswith("--follow -n 0 -u litellm.service")  # first start: from now
    # each restart resumes at the last entry (dropped if it is printed again), first without --follow
    assert "--cursor c2 --no-tail" in calls[2] and "--follow" not in calls[2]
    assert "--cursor c3 --no-tail" in calls[3] and "--follow" not in calls[3]
    assert c.messages()[:3] == [b"entry 2", b"entry 3", b"entry 4"]
    assert c.follower.stats.cursor_gone >= 2  # the fake never prints the cursor's own entry again
    assert c.follower.stats.restarts >= 5
    assert c.follower.stats.backoff == 0.08  # doubled up to backoff_max
    assert c.follower.stats.last_exit == 3


@pytest.mark.real
@real
def test_read_journal_file_of_a_non_journal_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "x.journal").write_text("not a journal\n")
    with pytest.raises(SourceError, match=r"journalctl could not read .*x\.journal \(exit 1\)"):
        list(read_journal_file(tmp_path / "x.journal"))



@pytest.mark.real
@real
def test_a_journal_file_journalctl_cannot_read_is_counted_in_a_replay(tmp_path: Path) -> None:
    """Like any file that breaks mid-way: counted unreadable, the other files' records all kept."""
    (tmp_path / "bad.journal").write_bytes(b"LPKSHHRH" + bytes(64) + b"garbage")
    good = SAMPLES.parent / "generated" / "simple-1k.jsonl"
    stats = ReadStats()
    lines = list(read_lines([str(good), str(tmp_path / "bad.journal"), str(good)], stats, 1 << 20))
    assert len(lines) == 2 * len(good.read_bytes().splitlines()) and stats.unreadable == 1 and stats.files == 3
    assert list(stats.problems) == [str(tmp_path / "bad.journal")]
    assert stats.problems[str(tmp_path / "bad.journal")].startswith("journalctl exit 1: ")


LINE_MAX = 48 * 1024  # journald's default LineMax


def split_at_line_max(message: bytes, seq: int, stream: str = "a" * 32) -> list[Entry]:
    """The entries journald writes for one stdout line longer than LineMax: every piece but
    the last with `_LINE_BREAK=line-max`."""
    pieces = [message[i : i + LINE_MAX] for i in range(0, len(message), LINE_MAX)]
    last = len(pieces) - 1
    return [
        Entry(p, seq=seq + k, extra={"_STREAM_ID": stream, **({"_LINE_BREAK": "line-max"} if k < last else {})})
        for k, p in enumerate(pieces)
    ]


def big_record(i: int) -> bytes:
    """A LiteLLM request record of ~130K (many tags), valid UTF-8 with a multi-byte character
    cut at a piece boundary."""
    record = json.loads((SAMPLES / "requests-runA.jsonl").read_bytes().splitlines()[0])
    record["payload"]["request_tags"] = [f"tag-{i}-é-" + "t" * 97 for _ in range(1200)]
    return json.dumps(record, ensure_ascii=False).encode()


@pytest.mark.real
@real
def test_a_line_journald_split_at_line_max_is_one_record_again(
    journal_dir: Path, consumers: list[Consumer]
) -> None:
    """A record longer than journald's LineMax comes as several entries. Each piece was taken for
    a plain-text log line: the request was lost, uncounted. Now the pieces are joined (entries of
    another stream in between keep their place after it), and the checkpoint never passes a piece
    not yet given out: a restart between the pieces reads the whole line once."""
    big = big_record(1)
    pieces = split_at_line_max(big, seq=2)
    assert len(pieces) == 3
    other = Entry("another worker's line", seq=10, extra={"_STREAM_ID": "b" * 32})
    path = write_journal(journal_dir / "t.journal", [*entries(1, 1), *pieces[:2]])
    a = follow(consumers, journal_dir, since="@0")
    a.wait_lines(1)
    wait_for(lambda: a.follower.pid is not None, "journalctl to follow")
    a.stop()
    assert a.messages() == expected(1, 1)
    assert a.follower.cursor() == cursor_of(a.lines[0])  # not past the pieces waiting
    write_journal(path, [other, Entry(pieces[2].message, seq=11, extra=pieces[2].extra), *entries(12, 12)])
    b = follow(consumers, journal_dir, cursor=a.follower.cursor())
    b.wait_lines(3)
    b.stop()
    assert b.messages() == [big, b"another worker's line", *expected(12, 12)]
    assert b.skipped == 0 and b.follower.cursor() == cursor_of(b.lines[-1])
    # replay reads them joined too
    stats = ReadStats()
    assert [message(x) for x in read_lines([str(path)], stats, 1 << 20)] == [
        *expected(1, 1), big, b"another worker's line", *expected(12, 12)]
    assert stats.too_long == 0


@pytest.mark.real
@real
def test_a_split_line_too_long_to_join_or_never_finished_is_counted(tmp_path: Path) -> None:
    big = big_record(2)
    path = write_journal(tmp_path / "t.journal", [*split_at_line_max(big, seq=1), *entries(10, 10)])
    stats = ReadStats()
    assert [message(x) for x in read_lines([str(path)], stats, 100_000)] == expected(10, 10)
    assert stats.too_long == 1
    cut = write_journal(tmp_path / "cut.journal", [*entries(1, 1), *split_at_line_max(big, seq=2)[:2]])
    stats = ReadStats()
    assert [message(x) for x in read_lines([str(cut)], stats, 1 << 20)] == expected(1, 1)
    assert stats.too_long == 1
