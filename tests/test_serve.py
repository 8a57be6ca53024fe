"""`logmetrics serve` end to end: real processes, real files, real HTTP scrapes, real signals.

Every wait polls a condition with a deadline (never a sleep used as synchronisation). The final
exposition of a scenario is compared with an uninterrupted `replay` of the same records, exactly,
after leaving out the serve-only families and `_created` samples.
"""

from __future__ import annotations

import functools
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from journal_util import Entry, journal_remote, write_journal
from prometheus_client.parser import text_string_to_metric_families

from logmetrics import state
from logmetrics.aggregate import Aggregator
from logmetrics.cli import main
from logmetrics.errors import SourceError
from logmetrics.export import exposition
from logmetrics.parse import Parser
from logmetrics.pipeline import Ingest, replay
from logmetrics.serve import Service
from logmetrics.sources.batch import Batch

ROOT = Path(__file__).resolve().parent.parent
RECORDS = (ROOT / "fixtures/sample-logs/litellm-1.109.1/requests-runA.jsonl").read_bytes().splitlines()
UNIT = ROOT / "systemd" / "logmetrics.service"
MAX_LINE = 20_000
LONG = b'{"pad":"' + b"x" * (MAX_LINE + 10) + b'"}'
TIMEOUT = 30.0
SERVE_ONLY = {
    "logmetrics_bytes_read", "logmetrics_rotations", "logmetrics_truncations", "logmetrics_lag_bytes",
    "logmetrics_lag_seconds", "logmetrics_state_writes", "logmetrics_state_write_failures",
    "logmetrics_journalctl_restarts",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, cond: Callable[[], object], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def core(text: str) -> str:
    """The exposition without serve-only families and `_created` samples."""
    out, keep = [], True
    for line in text.splitlines():
        if line.startswith("# HELP "):
            keep = line.split()[2].removesuffix("_total") not in SERVE_ONLY
        if keep and not line.split(" ", 1)[0].split("{", 1)[0].endswith("_created"):
            out.append(line)
    return "\n".join(out)


def litellm_only(text: str) -> str:
    """LiteLLM's families of an exposition (no logmetrics_* family)."""
    out, keep = [], True
    for line in text.splitlines():
        if line.startswith("# HELP "):
            keep = line.split()[2].startswith("litellm_")
        if keep and not line.split(" ", 1)[0].split("{", 1)[0].endswith("_created"):
            out.append(line)
    return "\n".join(out)


def replay_text(lines: list[bytes], tmp: Path) -> str:
    path = tmp / "expected.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    agg = Aggregator()
    replay([str(path)], Ingest(agg, Parser(max_line_bytes=MAX_LINE)))
    return exposition(agg).decode()


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


class Serve:
    """One `logmetrics serve` process."""

    def __init__(self, tmp: Path, *args: str, port: int | None = None, env: dict[str, str] | None = None,
                 stdin: int | None = None, listen: bool = True, prefix: tuple[str, ...] = ()) -> None:
        self.port = port or free_port()
        self.state_dir = tmp / "state"
        self.err = tmp / f"serve-{time.monotonic_ns()}.err"
        opts = ["--listen", f"127.0.0.1:{self.port}", "--state-dir", str(self.state_dir)] if listen else []
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("LOGMETRICS_", "NOTIFY_", "WATCHDOG_"))}
        full_env.update(env or {})
        with open(self.err, "wb") as err:
            self.proc = subprocess.Popen(
                [*prefix, sys.executable, "-m", "logmetrics", "serve", *args, *opts, "--max-line-bytes", str(MAX_LINE)],
                stdin=subprocess.DEVNULL if stdin is None else stdin, stdout=subprocess.DEVNULL, stderr=err,
                env=full_env, cwd=tmp)

    def get(self, path: str, accept: str = "") -> tuple[int, str, bytes]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", headers={"Accept": accept})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.headers["Content-Type"], r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers["Content-Type"], e.read()

    def ready(self) -> Serve:
        def up() -> bool:
            assert self.proc.poll() is None, self.stderr()
            try:
                return self.get("/healthz")[0] == 200
            except OSError:
                return False
        wait_for("serve to answer", up)
        return self

    def ready_or_unhealthy(self) -> Serve:
        """Wait until /healthz answers, whatever its status."""
        def up() -> bool:
            assert self.proc.poll() is None, self.stderr()
            try:
                self.get("/healthz")
            except OSError:
                return False
            return True
        wait_for("serve to answer", up)
        return self

    def metrics(self) -> str:
        return self.get("/metrics")[2].decode()

    def value(self, name: str, **labels: str) -> float | None:
        return samples(self.metrics()).get((name, frozenset(labels.items())))

    def wait_value(self, name: str, want: float, **labels: str) -> None:
        wait_for(f"{name}{labels} == {want}", lambda: self.value(name, **labels) == want)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=TIMEOUT)

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")


@pytest.fixture
def procs() -> list[Serve]:
    started: list[Serve] = []
    yield started  # type: ignore[misc]
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()


def test_file_end_to_end(tmp_path: Path, procs: list[Serve]) -> None:
    log = tmp_path / "requests.log"
    lines = [*RECORDS, b"not json", LONG, RECORDS[0]]
    log.write_bytes(b"".join(x + b"\n" for x in lines))
    s = Serve(tmp_path, str(log))
    procs.append(s)
    s.ready().wait_value("logmetrics_records_read_total", 32)
    text = s.metrics()
    assert core(text) == core(replay_text(lines, tmp_path))
    got = samples(text)
    src = frozenset({("source", str(log))})
    assert got[("logmetrics_records_skipped_total", frozenset({("reason", "too_long")}))] == 1
    assert got[("logmetrics_records_skipped_total", frozenset({("reason", "not_json")}))] == 1
    assert got[("logmetrics_bytes_read_total", src)] == log.stat().st_size
    assert got[("logmetrics_lag_bytes", src)] == 0
    assert got[("logmetrics_rotations_total", src)] == got[("logmetrics_truncations_total", src)] == 0
    assert got[("logmetrics_state_writes_total", frozenset())] >= 1
    assert got[("logmetrics_lag_seconds", frozenset())] > 0
    # content negotiation as LiteLLM's exporter does it
    status, ctype, body = s.get("/metrics", accept="application/openmetrics-text; version=1.0.0")
    assert status == 200 and ctype.startswith("application/openmetrics-text") and body.endswith(b"# EOF\n")
    assert s.get("/metrics")[1].startswith("text/plain; version=0.0.4")
    assert s.get("/healthz")[:3:2] == (200, b"ok\n")
    assert s.get("/nothing")[0] == 404
    s.proc.send_signal(signal.SIGHUP)  # re-scan the names: nothing changes, it keeps serving
    append(log, RECORDS[1] + b"\n")
    s.wait_value("logmetrics_records_read_total", 33)
    assert s.stop() == 0
    doc = state.decode((s.state_dir / "state.json").read_bytes())
    assert doc.metrics.records == 33
    assert doc.sources[f"file:{log}"].positions["files"][0]["offset"] == log.stat().st_size  # type: ignore[index]
    assert stat_mode(s.state_dir) == 0o700 and stat_mode(s.state_dir / "state.json") == 0o600
    assert "Traceback" not in s.stderr()


def stat_mode(p: Path) -> int:
    return p.stat().st_mode & 0o777


def test_rotation_truncation_long_lines_and_a_partial_line_across_restart(tmp_path: Path, procs: list[Serve]) -> None:
    log = tmp_path / "requests.log"
    src = str(log)
    written: list[bytes] = []

    def write(path: Path, lines: list[bytes]) -> None:
        append(path, b"".join(x + b"\n" for x in lines))
        written.extend(lines)

    write(log, RECORDS[:10])
    s = Serve(tmp_path, src)
    procs.append(s)
    s.ready().wait_value("logmetrics_records_read_total", 10)
    # rename + create: the old file is drained (a late append included), then the new one read
    log.rename(tmp_path / "requests.log.1")
    write(tmp_path / "requests.log.1", RECORDS[10:15])
    write(log, RECORDS[15:21])
    s.wait_value("logmetrics_records_read_total", 21)
    s.wait_value("logmetrics_rotations_total", 1, source=src)
    # truncation in place, then new records
    with open(log, "r+b") as f:
        f.truncate(0)
    write(log, RECORDS[21:23])
    s.wait_value("logmetrics_records_read_total", 23)
    s.wait_value("logmetrics_truncations_total", 1, source=src)
    # a line over --max-line-bytes is skipped and counted, the next one is read
    write(log, [LONG, RECORDS[23]])
    s.wait_value("logmetrics_records_read_total", 24)
    assert s.value("logmetrics_records_skipped_total", reason="too_long") == 1
    # half a record, then SIGTERM: exit 0, the half line not consumed
    half = len(RECORDS[24]) // 2
    append(log, RECORDS[24][:half])
    s.wait_value("logmetrics_lag_bytes", half, source=src)  # read, not consumed
    assert s.stop() == 0
    append(log, RECORDS[24][half:] + b"\n")
    written.append(RECORDS[24])
    write(log, RECORDS[25:27])
    s2 = Serve(tmp_path, src, port=s.port)
    procs.append(s2)
    s2.ready().wait_value("logmetrics_records_read_total", 27)
    assert core(s2.metrics()) == core(replay_text(written, tmp_path))
    assert s2.value("logmetrics_rotations_total", source=src) == 1  # counters continue
    assert s2.value("logmetrics_truncations_total", source=src) == 1
    assert s2.stop() == 0
    assert "Traceback" not in s.stderr() + s2.stderr()


class Scraper(threading.Thread):
    """Scrapes all along; records any counter, bucket, count or sum that went down."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.done = threading.Event()
        self.seen: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        self.scrapes = 0
        self.decreases: list[str] = []

    def run(self) -> None:
        while not self.done.is_set():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
                    text = r.read().decode()
            except (OSError, http.client.HTTPException):  # kill -9 mid-response: IncompleteRead
                self.done.wait(0.01)
                continue
            self.scrapes += 1
            for fam in text_string_to_metric_families(text):
                if fam.type not in ("counter", "histogram"):
                    continue
                for smp in fam.samples:
                    key = (smp.name, frozenset(smp.labels.items()))
                    if smp.value < self.seen.get(key, 0.0):
                        self.decreases.append(f"{smp.name}{dict(smp.labels)}: {self.seen[key]} -> {smp.value}")
                    self.seen[key] = smp.value
            self.done.wait(0.02)


def record(i: int) -> bytes:
    """The i-th line the crash test writes: runA's records in turn, a few unparsable or too long."""
    if i % 1000 == 500:
        return b"not json"
    if i == 2222:
        return LONG
    return RECORDS[i % len(RECORDS)]


class Writer(threading.Thread):
    """Appends records until stopped, in uneven chunks (lines split across writes), with rename
    rotations; it rotates only once the state file holds a position in the current file (logrotate
    is no faster than logmetrics checkpoints), so no whole file is written and rotated away while
    serve is down: two rotations of the followed name during one downtime lose the middle file."""

    def __init__(self, log: Path, state_file: Path, rotate_every: int, seed: int) -> None:
        super().__init__(daemon=True)
        self.log, self.state_file, self.rotate_every = log, state_file, rotate_every
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.lines: list[bytes] = []
        self.rotations = 0
        self.error: BaseException | None = None

    def _checkpointed(self) -> bool:
        try:
            doc = state.decode(self.state_file.read_bytes())
        except Exception:
            return False
        ino = self.log.stat().st_ino
        return any(f["ino"] == ino for s in doc.sources.values() for f in (s.positions or {}).get("files", []))

    def run(self) -> None:
        try:
            pending = b""
            since_rotation = 0
            while not self.stop.is_set() or pending:
                while len(pending) < 30_000 and not self.stop.is_set():
                    line = record(len(self.lines))
                    self.lines.append(line)
                    pending += line + b"\n"
                n = self.rng.randint(1, 30_000)
                if self.stop.is_set() or (since_rotation >= self.rotate_every and self._checkpointed()):
                    n = pending.index(b"\n") + 1  # finish the line (then rotate, or end)
                chunk, pending = pending[:n], pending[n:]
                append(self.log, chunk)
                since_rotation += chunk.count(b"\n")
                if since_rotation >= self.rotate_every and chunk.endswith(b"\n") and self._checkpointed():
                    self.rotations += 1
                    self.log.rename(self.log.with_name(f"requests-{self.rotations:06d}.log"))
                    self.log.touch()
                    since_rotation = 0
                time.sleep(self.rng.uniform(0, 0.03))  # pacing the writer, not synchronisation
        except BaseException as e:  # pragma: no cover - reported by the test
            self.error = e


@pytest.mark.slow
def test_kill_9_at_random_moments_loses_and_doubles_nothing(tmp_path: Path, procs: list[Serve]) -> None:
    rng = random.Random(20261123)
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "requests.log"
    log.touch()
    pattern = str(logs / "requests*.log")  # the rotated names match too: known by identity, never read twice
    port = free_port()
    scraper = Scraper(port)
    writer = Writer(log, tmp_path / "state" / "state.json", rotate_every=300, seed=rng.randrange(1 << 30))
    scraper.start()
    writer.start()
    try:
        kills = 0
        while kills < 10 or (writer.rotations < 3 and kills < 30):  # a loaded machine needs more lives
            s = Serve(tmp_path, pattern, port=port)
            procs.append(s)
            if rng.random() < 0.3:  # during start-up (loading the state, opening the files)
                deadline = time.monotonic() + rng.uniform(0.0, 1.5)
            else:  # while reading, writing the state, answering scrapes
                s.ready()
                deadline = time.monotonic() + rng.uniform(0.0, 0.8)
            wait_for("the moment to kill", lambda d=deadline, p=s.proc: time.monotonic() >= d or p.poll() is not None)
            assert s.proc.poll() is None, s.stderr()
            s.proc.kill()
            s.proc.wait()
            kills += 1
        writer.stop.set()
        writer.join()
        assert writer.error is None
        lines = writer.lines
        final = Serve(tmp_path, pattern, port=port)
        procs.append(final)
        final.ready().wait_value("logmetrics_records_read_total", sum(1 for x in lines if x in RECORDS))
        final.wait_value("logmetrics_lag_bytes", 0, source=str(log))
        text = final.metrics()
    finally:
        writer.stop.set()
        scraper.done.set()
        writer.join()
        scraper.join()
    assert core(text) == core(replay_text(lines, tmp_path))
    assert final.value("logmetrics_records_skipped_total", reason="too_long") == (len(lines) > 2222)
    # not exact: a rotation made while serve was down, or seen and not yet saved when it was
    # killed, is not counted (the follower resumes without counting it)
    assert writer.rotations >= 3
    assert final.value("logmetrics_rotations_total", source=str(log)) <= writer.rotations  # type: ignore[operator]
    assert scraper.decreases == []
    assert scraper.scrapes >= 5
    assert final.stop() == 0
    assert not list((tmp_path / "state").glob("state.json.corrupt-*"))
    assert all("Traceback" not in p.stderr() for p in procs)


@pytest.mark.real
@pytest.mark.skipif((shutil.which("journalctl") is None or journal_remote() is None) and not os.environ.get("CI"),
                    reason="needs journalctl and systemd-journal-remote")
def test_journal_cursor_across_sigterm_kill_9_and_journalctl_restarts(tmp_path: Path, procs: list[Serve]) -> None:
    journal = tmp_path / "journal"
    journal.mkdir()
    path = journal / "litellm.journal"
    seq = 0

    def log(lines: list[bytes]) -> None:
        nonlocal seq
        first, seq = seq + 1, seq + len(lines)
        write_journal(path, [Entry(x, seq=n) for n, x in enumerate(lines, first)])

    records = [RECORDS[i % len(RECORDS)] for i in range(60)]
    log([b"before the first start: not read"])
    args = ("--journal", "litellm", "--journal-directory", str(journal))
    s = Serve(tmp_path, *args)
    procs.append(s)
    s.ready()
    # the first start reads from "now", once journalctl runs: log plain lines until one is read
    probes = 0
    while not s.value("logmetrics_log_lines_total", level="INFO"):
        log([b"probe"])
        probes += 1
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and not s.value("logmetrics_log_lines_total", level="INFO"):
            time.sleep(0.05)
    read = s.value("logmetrics_records_read_total")
    assert read is not None and read <= probes
    log(records[:20])
    s.wait_value("logmetrics_records_read_total", read + 20)
    journalctl = subprocess.run(["pgrep", "-P", str(s.proc.pid), "journalctl"], capture_output=True, text=True)
    os.kill(int(journalctl.stdout.split()[0]), signal.SIGKILL)
    s.wait_value("logmetrics_journalctl_restarts_total", 1)
    log(records[20:30])
    s.wait_value("logmetrics_records_read_total", read + 30)
    assert s.stop() == 0
    log(records[30:40])  # while stopped
    s2 = Serve(tmp_path, *args, port=s.port)
    procs.append(s2)
    s2.ready().wait_value("logmetrics_records_read_total", read + 40)
    s2.proc.kill()
    s2.proc.wait()
    log(records[40:60])
    s3 = Serve(tmp_path, *args, port=s.port)
    procs.append(s3)
    s3.ready().wait_value("logmetrics_records_read_total", read + 60)
    assert litellm_only(s3.metrics()) == litellm_only(replay_text(records, tmp_path))
    assert s3.value("logmetrics_journalctl_restarts_total") == 1  # counters continue
    assert s3.stop() == 0


def test_unusable_state_file_is_moved_aside_and_counting_starts_over(tmp_path: Path, procs: list[Serve]) -> None:
    log = tmp_path / "requests.log"
    log.write_bytes(b"".join(x + b"\n" for x in RECORDS))
    s = Serve(tmp_path, str(log))
    procs.append(s)
    s.ready().wait_value("logmetrics_records_read_total", len(RECORDS))
    assert s.stop() == 0
    good = (s.state_dir / "state.json").read_bytes()
    (s.state_dir / "state.json").write_bytes(good[: len(good) // 2])  # half-written
    s2 = Serve(tmp_path, str(log), port=s.port)
    procs.append(s2)
    s2.ready().wait_value("logmetrics_records_read_total", len(RECORDS))
    assert core(s2.metrics()) == core(replay_text(RECORDS, tmp_path))
    aside = list(s.state_dir.glob("state.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == good[: len(good) // 2]
    warnings = [x for x in s2.stderr().splitlines() if "is unusable" in x]
    assert len(warnings) == 1 and "Traceback" not in s2.stderr()
    assert s2.stop() == 0


def test_stdin_and_options_from_the_environment(tmp_path: Path, procs: list[Serve]) -> None:
    r, w = os.pipe()
    port = free_port()
    env = {"LOGMETRICS_PATH": "-", "LOGMETRICS_LISTEN": f"127.0.0.1:{port}",
           "LOGMETRICS_STATE_DIR": str(tmp_path / "state"), "LOGMETRICS_MAX_SERIES": "1"}
    s = Serve(tmp_path, env=env, stdin=r, listen=False, port=port)
    procs.append(s)
    os.close(r)
    s.ready()
    os.write(w, b"".join(x + b"\n" for x in RECORDS[:20]) + RECORDS[20][:100])
    s.wait_value("logmetrics_records_read_total", 20)
    os.write(w, RECORDS[20][100:] + b"\n" + LONG + b"\n")
    os.close(w)  # end of input: the metrics go on being served
    s.wait_value("logmetrics_records_read_total", 21)
    assert s.value("logmetrics_records_skipped_total", reason="too_long") == 1
    total = sum(len(x) + 1 for x in RECORDS[:21]) + len(LONG) + 1
    assert s.value("logmetrics_bytes_read_total", source="stdin") == total
    assert any(k[0] == "logmetrics_series_dropped_total" for k in samples(s.metrics()))  # --max-series 1
    assert s.get("/healthz")[0] == 200
    assert s.stop(signal.SIGINT) == 0


def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the `logmetrics` command in this process: exit code, stdout, stderr."""
    monkeypatch.setattr(sys, "argv", ["logmetrics", *args])
    code: int | str | None = 0
    try:
        main()
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return int(code or 0), out, err


def test_state_show_reset_and_one_serve_per_state_dir(
    tmp_path: Path, procs: list[Serve], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "requests.log"
    log.write_bytes(b"".join(x + b"\n" for x in RECORDS[:5]))
    s = Serve(tmp_path, str(log), "--poll")  # stat() polling instead of inotify
    procs.append(s)
    s.ready().wait_value("logmetrics_records_read_total", 5)
    append(log, RECORDS[5] + b"\n")
    s.wait_value("logmetrics_records_read_total", 6)
    busy = (f"logmetrics: another logmetrics serve is using --state-dir {s.state_dir}; "
            "stop it or give another --state-dir\n")
    assert cli(monkeypatch, capsys, "serve", str(log), "--state-dir", str(s.state_dir)) == (1, "", busy)
    assert cli(monkeypatch, capsys, "state", "reset", "--state-dir", str(s.state_dir)) == (1, "", busy)
    assert s.stop() == 0
    code, out, err = cli(monkeypatch, capsys, "state", "show", "--state-dir", str(s.state_dir))
    assert code == 0, err
    assert f"source file:{log}" in out and f"{log}: offset {log.stat().st_size}" in out
    assert "records 6, series " in out
    code, out, err = cli(monkeypatch, capsys, "state", "show", "--json", "--state-dir", str(s.state_dir))
    assert code == 0 and json.loads(out)["records"] == 6
    assert cli(monkeypatch, capsys, "state", "reset", "--state-dir", str(s.state_dir))[0] == 0
    assert not (s.state_dir / "state.json").exists()
    code, out, err = cli(monkeypatch, capsys, "state", "show", "--state-dir", str(s.state_dir))
    assert code == 1 and err.count("\n") == 1 and "no state in" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [([], "or --journal UNIT (or set LOGMETRICS_PATH or LOGMETRICS_JOURNAL)\n"),
     (["x.log", "--journal", "litellm"], "or --journal UNIT, not both\n"),
     (["-", "x.log"], "cannot be combined"), (["x.log", "--listen", "nowhere"], "--listen 'nowhere'"),
     (["x.log", "--listen", "::1"], "--listen '::1': give HOST:PORT, with an IPv6 address in brackets"),
     (["x.log", "--listen", "[::1]"], "--listen '[::1]': give HOST:PORT"),
     (["x.log", "--stall-seconds", "nan"], "--stall-seconds must be positive")],
    ids=["no-source", "both", "stdin-and-file", "bad-listen", "ipv6-without-port", "bracketed-without-port",
         "stall-seconds-nan"])
def test_usage_errors_are_one_line_exit_2(tmp_path: Path, args: list[str], message: str,
                                          monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(monkeypatch, capsys, "serve", *args, "--state-dir", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_help_shows_every_option_and_its_environment_variable(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = cli(monkeypatch, capsys, "serve", "--help")
    assert code == 0
    for option in ("--journal", "--user", "--poll", "--listen", "--state-dir", "--max-series", "--no-table"):
        assert option in out
        assert f"LOGMETRICS_{option[2:].upper().replace('-', '_')}" in out
    assert "LOGMETRICS_PATH" in out and "127.0.0.1:9464" in out


def test_sd_notify_ready_and_watchdog(tmp_path: Path, procs: list[Serve]) -> None:
    sock_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(sock_path))
        sock.settimeout(TIMEOUT)
        log = tmp_path / "requests.log"
        log.write_bytes(RECORDS[0] + b"\n")
        s = Serve(tmp_path, str(log), env={"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"})
        procs.append(s)
        first = sock.recv(4096).decode()
        assert first.startswith("READY=1\nSTATUS=serving http://127.0.0.1:")
        assert s.get("/healthz")[0] == 200  # READY=1 came once /metrics answers
        assert sock.recv(4096) == b"WATCHDOG=1"
        s.proc.send_signal(signal.SIGTERM)
        while (msg := sock.recv(4096)) == b"WATCHDOG=1":
            pass
        assert msg == b"STOPPING=1"
        assert s.proc.wait(timeout=TIMEOUT) == 0


def _analyze() -> list[str]:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing: apt-get install systemd")
        pytest.skip("systemd-analyze is not installed")
    return [exe]


@pytest.mark.real
def test_systemd_unit_verifies(tmp_path: Path) -> None:
    """`systemd-analyze --user verify` without a user manager: a private XDG_RUNTIME_DIR, and a
    HOME whose ~/.local/bin/logmetrics exists (verify checks ExecStart). Unknown or misspelt
    directives and bad values are only warnings (exit 0), so stderr must be empty."""
    analyze = _analyze()
    home, runtime = tmp_path / "home", tmp_path / "run"
    (home / ".local" / "bin").mkdir(parents=True)
    runtime.mkdir(mode=0o700)
    exe = home / ".local" / "bin" / "logmetrics"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)}

    def verify(unit: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*analyze, "--user", "verify", str(unit)], capture_output=True, text=True,
                              env=env, cwd=tmp_path, timeout=60)

    done = verify(UNIT)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    # the check can fail: a misspelt directive and a bad value are reported
    bad = tmp_path / "logmetrics.service"
    bad.write_text(UNIT.read_text().replace("Restart=on-failure", "Restart=sometimes")
                   .replace("NoNewPrivileges=", "NoNewPrivilege="))
    done = verify(bad)
    assert "restart specifier" in done.stderr and "Unknown key 'NoNewPrivilege'" in done.stderr
    exe.unlink()
    assert "is not executable" in verify(UNIT).stderr


class FakeSource:
    """A source the test drives: yields the batches put in its queue, or raises."""

    kind = "file"
    key = "file:/fake"

    def __init__(self, batches: list[Batch | BaseException], pending: bool = False) -> None:
        self.batches, self.is_pending = batches, pending
        self.cannot_open: dict[str, str] = {}
        self.stop = threading.Event()
        self.n = 0

    def __iter__(self) -> Iterator[Batch]:
        for b in self.batches:
            if isinstance(b, BaseException):
                raise b
            self.n += 1
            yield b
        self.stop.wait()

    def checkpoint(self) -> state.SourceState:
        return state.SourceState("file", positions={"version": 1, "pattern": "/fake", "files": [], "n": self.n})

    def counters(self) -> dict[str, dict[str, int]]:
        return {"/fake": {"bytes_read": self.n, "rotations": 0, "truncations": 0}}

    def lag_bytes(self) -> dict[str, int]:
        return {"/fake": 0}

    def pending(self, checkpoint: state.SourceState) -> bool:
        return self.is_pending

    def unreadable(self) -> dict[str, str]:
        return self.cannot_open

    def wake(self) -> None:
        pass

    def close(self) -> None:
        self.stop.set()


def service(tmp_path: Path, source: FakeSource, **kw: Any) -> Service:
    store = state.Store(tmp_path / "state")
    store.open()
    agg = Aggregator()
    return Service(agg, Ingest(agg, Parser()), store, None, [source], listen="127.0.0.1:0", **kw)


def test_healthz_reports_a_stalled_source(tmp_path: Path) -> None:
    src = FakeSource([], pending=True)
    svc = service(tmp_path, src, stall_seconds=0.05)
    assert svc.health() == (True, "ok\n")
    svc.runs[0].progress -= 1.0
    ok, text = svc.health()
    assert not ok and text.startswith("file:/fake: lines are waiting but none was read for ")
    src.is_pending = False
    assert svc.health()[0]
    src.cannot_open = {"/fake": "Permission denied"}
    assert svc.health() == (False, "file:/fake: cannot open /fake: Permission denied\n")
    assert svc.problems(stuck_only=True) == []  # the watchdog goes on: a restart would not help
    svc.http.close()


def test_a_failing_source_ends_serve_with_its_error_after_saving(tmp_path: Path) -> None:
    src = FakeSource([Batch("/fake", RECORDS[:3]), SourceError("journalctl failed (exit 1): no such unit")])
    svc = service(tmp_path, src)
    with pytest.raises(SourceError, match="file:/fake: journalctl failed"):
        svc.run()
    doc = state.decode((tmp_path / "state" / "state.json").read_bytes())
    assert doc.metrics.records == 3 and doc.sources["file:/fake"].positions["n"] == 1  # type: ignore[index]


def test_state_write_failures_are_counted_and_retried(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = FakeSource([Batch("/fake", RECORDS[:2])])
    svc = service(tmp_path, src)
    blocker = tmp_path / "state" / ".state.json.tmp"
    blocker.mkdir()  # the temporary file cannot be created
    thread = threading.Thread(target=svc._consume, args=(svc.runs[0],), daemon=True)
    thread.start()
    wait_for("the batch", lambda: svc.agg.records == 2)
    body, _ = svc.scrape("")  # answers even though the state cannot be written
    got = samples(body.decode())
    assert got[("logmetrics_state_write_failures_total", frozenset())] == 1
    assert got[("logmetrics_records_read_total", frozenset())] == 2
    assert [r.getMessage() for r in caplog.records if "cannot write the state file" in r.getMessage()]
    blocker.rmdir()
    svc.persist()
    doc = state.decode((tmp_path / "state" / "state.json").read_bytes())
    assert doc.metrics.records == 2 and doc.counters == {"state_writes": 1, "state_write_failures": 1}
    src.close()
    thread.join()
    svc.http.close()


# Accept headers of real scrapers: Prometheus 2.x and 3.x ask for OpenMetrics first
PROMETHEUS_2_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                       "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
PROMETHEUS_3_ACCEPT = ("application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
                       "application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;"
                       "q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1")


def test_scrapes_are_the_fast_renderer_with_the_same_bytes_as_prometheus_client(tmp_path: Path) -> None:
    """/metrics in text 0.0.4 and in OpenMetrics 1.0 comes from textformat.py (export.exposition +
    serve's families); it is byte for byte what prometheus_client renders from the registry for the
    same Accept header. Other formats (another name escaping) are prometheus_client's own."""
    from prometheus_client.exposition import choose_encoder

    src = FakeSource([Batch("/fake", RECORDS[:40])])
    svc = service(tmp_path, src)
    thread = threading.Thread(target=svc._consume, args=(svc.runs[0],), daemon=True)
    thread.start()
    wait_for("the batch", lambda: svc.runs[0].checkpoint.positions["n"] == 1)  # type: ignore[index]
    calls: list[str] = []
    real = svc.registry.collect

    def collect() -> Iterator[Any]:
        calls.append("collect")
        yield from real()

    svc.registry.collect = collect  # type: ignore[method-assign]
    stats = svc._stats
    DOTS = "application/openmetrics-text;version=1.0.0;escaping=dots"
    for accept, fast in (
        ("", True), ("text/plain;version=0.0.4;q=0.5,*/*;q=0.1", True),
        ("application/openmetrics-text; version=1.0.0", True), (PROMETHEUS_2_ACCEPT, True),
        (PROMETHEUS_3_ACCEPT, True),
        # escaped names: prometheus_client's own (before 0.22, which knows no escaping: plain OpenMetrics)
        (DOTS, not hasattr(choose_encoder(DOTS)[0], "keywords")),
    ):
        encoder, content_type = choose_encoder(accept)
        body, ctype = svc.scrape(accept)
        assert ctype == content_type
        assert bool(calls) is not fast, accept
        assert body.count(b"\nlogmetrics_records_read_total %d.0\n" % svc.agg.records) == fast
        svc._stats = functools.partial(lambda frozen, counters: frozen, stats(svc._shown))  # type: ignore[method-assign]
        body, _ = svc.scrape(accept)  # lag_seconds frozen: one value for both renderings
        assert body == encoder(svc.registry), accept
        calls.clear()
        svc._stats = stats  # type: ignore[method-assign]
    assert body.endswith(b"# EOF\n")
    src.close()
    thread.join()
    svc.http.close()


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.read()


def test_ipv6_listen_addresses(tmp_path: Path, procs: list[Serve]) -> None:
    """`--listen [::1]:PORT` serves on ::1 and says so with a URL that works (was
    `serving http://::1:PORT/metrics`, also the systemd status line); `[::]:PORT` is reachable over
    IPv4 and IPv6, whatever net.ipv6.bindv6only says."""
    log = tmp_path / "requests.log"
    log.write_bytes(b"".join(x + b"\n" for x in RECORDS[:4]))
    with socket.socket(socket.AF_INET6) as sock:
        sock.bind(("::1", 0))
        port = sock.getsockname()[1]
    s = Serve(tmp_path, str(log), "--listen", f"[::1]:{port}", "--state-dir", str(tmp_path / "state"), listen=False)
    procs.append(s)
    url = f"http://[::1]:{port}/metrics"
    wait_for("serve on ::1", lambda: f"serving {url};" in s.stderr())
    wait_for("4 records", lambda: b"\nlogmetrics_records_read_total 4.0\n" in _get(url)[1])
    assert s.stop() == 0
    s = Serve(tmp_path, str(log), "--listen", f"[::]:{port}", "--state-dir", str(tmp_path / "state"),
              port=port, listen=False)
    procs.append(s)
    wait_for("serve on ::", lambda: f"serving http://[::]:{port}/metrics;" in s.stderr())
    for where in (f"127.0.0.1:{port}", f"[::1]:{port}"):
        status, body = _get(f"http://{where}/metrics")
        assert status == 200 and b"\nlogmetrics_records_read_total 4.0\n" in body, where
    assert s.stop() == 0
    assert "Traceback" not in s.stderr()


def test_listening_looks_up_no_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """http.server's bind asks DNS for the address's name (socket.getfqdn): seconds before serve is
    ready with a broken resolver, for a name nothing uses. Not any more: a lookup here fails the test."""
    from logmetrics.http import MetricsServer

    def no_lookup(*args: Any) -> str:
        raise AssertionError("a reverse DNS lookup at bind time")

    monkeypatch.setattr(socket, "getfqdn", no_lookup)
    monkeypatch.setattr(socket, "gethostbyaddr", no_lookup)
    for listen in ("127.0.0.1:0", "[::1]:0"):
        server = MetricsServer(listen, lambda accept: (b"up 1\n", "text/plain"), lambda: (True, "ok\n"))
        server.start()
        try:
            assert _get(server.url) == (200, b"up 1\n")
        finally:
            server.close()


def test_a_name_with_ipv6_addresses_only_is_listened_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """A --listen name that resolves to IPv6 addresses only (Debian's `ip6-localhost`) binds its
    address (was `cannot listen on ip6-localhost:9464: Name or service not known`: every name
    was bound as IPv4); a name with an IPv4 address stays IPv4."""
    from logmetrics.http import MetricsServer

    real = socket.getaddrinfo

    def resolve(host: Any, port: Any, family: int = 0, *args: Any) -> Any:
        if host == "v6only.test":
            if family == socket.AF_INET:
                raise socket.gaierror(socket.EAI_ADDRFAMILY, "Address family for hostname not supported")
            return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", port, 0, 0))]
        return real(host, port, family, *args)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    server = MetricsServer("v6only.test:0", lambda accept: (b"up 1\n", "text/plain"), lambda: (True, "ok\n"))
    server.start()
    try:
        host, port = server.address
        assert host == "::1" and server.url == f"http://[::1]:{port}/metrics"
        assert _get(server.url) == (200, b"up 1\n")
    finally:
        server.close()
    server = MetricsServer("localhost:0", lambda accept: (b"up 1\n", "text/plain"), lambda: (True, "ok\n"))
    assert server.address[0] == "127.0.0.1"
    server.close()


def test_healthz_reports_a_followed_file_that_cannot_be_opened(tmp_path: Path, procs: list[Serve]) -> None:
    """A followed file without read permission, and one in a directory that may not be searched:
    /healthz is 503 naming each (was 200 "ok" while nothing could be read), and the second is not
    called missing ("does not exist yet"). Once permissions are fixed both are read and /healthz is ok.
    Run without CAP_DAC_OVERRIDE (root ignores file modes otherwise)."""
    prefix = _no_dac_override()
    secret = tmp_path / "secret.log"
    secret.write_bytes(b"".join(x + b"\n" for x in RECORDS[:3]))
    closed = tmp_path / "closed"
    closed.mkdir()
    inside = closed / "requests.log"
    inside.write_bytes(b"".join(x + b"\n" for x in RECORDS[3:5]))
    secret.chmod(0)
    closed.chmod(0)
    try:
        s = Serve(tmp_path, str(secret), str(inside), "--no-table", prefix=prefix)
        procs.append(s)
        s.ready_or_unhealthy()
        code, _, body = s.get("/healthz")
        assert code == 503 and body.decode().splitlines() == [
            f"file:{secret}: cannot open {secret}: Permission denied",
            f"file:{inside}: cannot open {inside}: Permission denied",
        ], body
        assert "does not exist" not in s.stderr(), s.stderr()
    finally:
        secret.chmod(0o644)
        closed.chmod(0o755)
    s.proc.send_signal(signal.SIGHUP)  # look again now (it would within a second anyway)
    s.wait_value("logmetrics_records_read_total", 5)
    assert s.get("/healthz")[:3:2] == (200, b"ok\n")
    assert s.stop() == 0
    assert "Traceback" not in s.stderr()


def _no_dac_override() -> tuple[str, ...]:
    """A command prefix that makes root obey file modes (CAP_DAC_OVERRIDE dropped); nothing otherwise."""
    if os.geteuid() != 0:
        return ()
    if shutil.which("setpriv") is None:  # pragma: no cover
        pytest.skip("root without setpriv: cannot drop CAP_DAC_OVERRIDE")
    return ("setpriv", "--bounding-set=-dac_override,-dac_read_search")


def test_sigterm_when_the_state_cannot_be_written_exits_1_and_loses_nothing(
        tmp_path: Path, procs: list[Serve]) -> None:
    """The state directory turns read-only while serve runs: it goes on counting (one error line),
    and SIGTERM, which cannot save the state either, exits 1 with one line saying so (was exit 0, as
    if the state were saved). The next start goes on from the last state written: nothing lost."""
    log = tmp_path / "requests.log"
    log.write_bytes(b"".join(x + b"\n" for x in RECORDS[:3]))
    s = Serve(tmp_path, str(log), "--no-table", prefix=_no_dac_override())
    procs.append(s)
    s.ready().wait_value("logmetrics_records_read_total", 3)
    s.state_dir.chmod(0o500)
    try:
        append(log, b"".join(x + b"\n" for x in RECORDS[3:7]))
        s.wait_value("logmetrics_records_read_total", 7)
        assert (s.value("logmetrics_state_write_failures_total") or 0) >= 1
        assert s.stop() == 1
    finally:
        s.state_dir.chmod(0o700)
    lines = s.stderr().splitlines()
    assert "Traceback" not in s.stderr()
    assert sum("cannot write the state file" in line for line in lines) == 1, lines
    assert lines[-1] == (f"logmetrics: stopped without saving the state: cannot write {s.state_dir}/state.json: "
                         "Permission denied; the next start goes on from the last state written and reads again "
                         "what came after it"), lines
    again = Serve(tmp_path, str(log), "--no-table", port=s.port)
    procs.append(again)
    again.ready().wait_value("logmetrics_records_read_total", 7)
    assert again.stop() == 0


def test_a_listen_address_in_use_is_one_line(tmp_path: Path, procs: list[Serve]) -> None:
    """--listen on a port another process holds: one line naming it, exit 2, no traceback, and the
    state directory is free again (a traceback came back when the HTTP server grew a reaper)."""
    log = tmp_path / "requests.log"
    log.write_bytes(RECORDS[0] + b"\n")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "logmetrics", "serve", str(log), "--listen", f"127.0.0.1:{port}",
                            "--state-dir", str(tmp_path / "state"), "--no-table"],
                           capture_output=True, text=True, timeout=TIMEOUT, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr == (f"logmetrics: cannot listen on 127.0.0.1:{port}: Address already in use; "
                        "choose another --listen\n"), r.stderr
    s = Serve(tmp_path, str(log), "--no-table", port=port)  # the same state directory: not left locked
    procs.append(s)
    s.ready().wait_value("logmetrics_records_read_total", 1)
    assert s.stop() == 0
