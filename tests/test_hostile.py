"""Hostile inputs: `logmetrics replay` (a real child process: exit code, stderr, peak RSS from
wait4) and the follower, on what a careless glob or an attacker can hand them.

- a 100 MB single line (plain and gzip): skipped as too_long, never held in memory;
- a 10 GB sparse file: its holes are skipped (SEEK_DATA), a record after a hole is still counted;
  NUL runs written out in full end a line too;
- a FIFO (with a writer: read to its end; without: waits as `cat` does, Ctrl-C exits 0), a pipe
  with gzip data (`<(gzip -c ...)`), gzip, bzip2 and xz on stdin;
- /dev/zero, a symlink to it, a socket: a usage error (exit 2) in one line; a directory: its
  regular files, FIFOs and sub-directories ignored; an empty directory: a usage error;
- a cardinality attack (distinct models, end users, deployments and routes per record): memory
  and exposition stay bounded by --max-series, the overflow series and
  logmetrics_series_dropped_total show it. 50k records here; 1M with LOGMETRICS_FUZZ=nightly;
- HTTP clients of serve that reset the connection mid-request or mid-body: no traceback.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import NIGHTLY

from logmetrics.sources.file import FileFollower

ROOT = Path(__file__).resolve().parent.parent
GOOD = (
    b'{"timestamp": "2025-10-21T12:26:24.125", "level": "INFO", "model": "gpt-4o-mini", '
    b'"provider": "openai", "latency_ms": 311, "tokens": {"prompt": 1559, "completion": 22, "total": 1581}}'
)
MB = 1 << 20


@dataclass
class Run:
    rc: int
    stdout: bytes
    stderr: bytes
    maxrss_mb: float
    seconds: float

    def json(self) -> dict[str, object]:
        doc: dict[str, object] = json.loads(self.stdout)
        return doc


def logmetrics(*args: str, timeout: float = 60.0, stdin: int | None = None, pass_fds: tuple[int, ...] = (),
               on_start: threading.Event | None = None) -> Run:
    """Runs `python -m logmetrics ARGS`; its own peak RSS comes from wait4 (not RUSAGE_CHILDREN,
    which is the maximum over every child this test process ever waited for)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "logmetrics", *args], stdout=out, stderr=err,
                                stdin=stdin if stdin is not None else subprocess.DEVNULL, pass_fds=pass_fds,
                                cwd=ROOT)
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - start
        assert seconds < timeout, f"logmetrics {' '.join(args)} was killed after {timeout}s"
        out.seek(0)
        err.seek(0)
        return Run(proc.returncode, out.read(), err.read(), usage.ru_maxrss / 1024, seconds)


def inproc(capfd: pytest.CaptureFixture[bytes], *args: str) -> Run:
    """`logmetrics ARGS` in this process (no interpreter start-up): for cases that need no RSS figure."""
    from logmetrics.cli import main

    saved = sys.argv
    sys.argv = ["logmetrics", *args]
    start = time.monotonic()
    try:
        main()
        rc = 0
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 1
    finally:
        sys.argv = saved
    out, err = capfd.readouterr()
    return Run(rc, out, err, 0.0, time.monotonic() - start)


@pytest.fixture(scope="module")
def baseline_rss() -> float:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d, "small.log")
        p.write_bytes(GOOD + b"\n")
        r = logmetrics("replay", str(p), "--json")
    assert r.rc == 0
    return r.maxrss_mb


def write_big_line(f: object, size: int) -> None:
    chunk = b"x" * MB
    for _ in range(size // MB):
        f.write(chunk)  # type: ignore[attr-defined]


# -- huge lines ---------------------------------------------------------------------------------


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
def test_100mb_line_is_skipped_without_holding_it(tmp_path: Path, baseline_rss: float, compressed: bool) -> None:
    p = tmp_path / ("huge.log.gz" if compressed else "huge.log")
    with (gzip.open(p, "wb", compresslevel=1) if compressed else open(p, "wb")) as f:
        f.write(GOOD + b"\n")
        write_big_line(f, 100 * MB)
        f.write(b"\n" + GOOD + b"\n")
    r = logmetrics("replay", str(p), "--json")
    assert r.rc == 0, r.stderr
    doc = r.json()
    assert doc["records"] == 2 and doc["skipped"] == {"too_long": 1}
    assert r.maxrss_mb < baseline_rss + 40, (r.maxrss_mb, baseline_rss)


def test_line_limit_is_an_option(tmp_path: Path, capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    p = tmp_path / "r.log"
    p.write_bytes(GOOD + b"\n" + b"y" * 5000 + b"\n")
    r = inproc(capfdbinary, "replay", str(p), "--json", "--max-line-bytes", "1000")
    assert r.json()["skipped"] == {"too_long": 1} and r.json()["records"] == 1


# -- sparse files and NUL runs ------------------------------------------------------------------


def test_10gb_sparse_file_takes_no_time(tmp_path: Path) -> None:
    """All hole: skipped with SEEK_DATA, not read (reading 10 GB of zeros took 32 s before)."""
    p = tmp_path / "sparse.log"
    with open(p, "wb") as f:
        f.truncate(10 << 30)
    r = logmetrics("replay", str(p), "--json", timeout=60)
    assert r.rc == 0
    assert r.json()["records"] == 0 and r.json()["skipped"] == {} and r.json()["bytes"] == 10 << 30
    assert r.seconds < 30


def test_record_after_a_hole_is_counted(tmp_path: Path) -> None:
    """copytruncate under a writer without O_APPEND: the writer's next line lands after a hole."""
    p = tmp_path / "r.log"
    with open(p, "wb") as f:
        f.write(GOOD + b"\npartial-line-cut-by-the-trunc")
        f.seek(4 << 30)
        f.write(GOOD + b"\n" + GOOD + b"\n")
    r = logmetrics("replay", str(p), "--json", timeout=60)
    assert r.rc == 0
    assert r.json()["records"] == 3 and r.json()["skipped"] == {"not_json": 1}
    assert r.seconds < 30


def test_written_nul_run_ends_a_line(tmp_path: Path, capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    """Zeros really written (a crash can leave them): a NUL run ends a line, no line grows with it."""
    p = tmp_path / "r.log"
    with open(p, "wb") as f:
        f.write(GOOD + b"\n" + b"\0" * (8 * MB) + GOOD + b"\n" + b"\0\0" + GOOD)
    r = inproc(capfdbinary, "replay", str(p), "--json")
    assert r.json()["records"] == 3 and r.json()["skipped"] == {}


# -- pipes and FIFOs ----------------------------------------------------------------------------


def _writer(path_or_fd: str | int, data: bytes) -> threading.Thread:
    def run() -> None:
        if isinstance(path_or_fd, str):
            with open(path_or_fd, "wb") as f:
                f.write(data)
        else:
            with os.fdopen(path_or_fd, "wb") as f:
                f.write(data)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
def test_fifo_with_a_writer_is_read_to_its_end(tmp_path: Path, compressed: bool) -> None:
    fifo = tmp_path / "requests.fifo"
    os.mkfifo(fifo)
    data = b"".join(GOOD + b"\n" for _ in range(500))
    t = _writer(str(fifo), gzip.compress(data) if compressed else data)
    r = logmetrics("replay", str(fifo), "--json", timeout=30)
    t.join(10)
    assert r.rc == 0, r.stderr
    assert r.json()["records"] == 500 and r.json()["skipped"] == {}


def test_unreadable_files_are_named_on_stderr(tmp_path: Path) -> None:
    """A truncated archive among good files: its records up to the cut and the others all count; the
    file is named with the reason, in one line."""
    data = gzip.compress(b"".join(GOOD + b"\n" for _ in range(2000)))
    (tmp_path / "cut.log.gz").write_bytes(data[: len(data) // 2])
    (tmp_path / "good.log").write_bytes(GOOD + b"\n")
    r = logmetrics("replay", str(tmp_path / "good.log"), str(tmp_path / "cut.log.gz"), "--json")
    assert r.rc == 0 and 1 < r.json()["records"] < 2001
    named = f"logmetrics: {tmp_path / 'cut.log.gz'}: not read to the end: compressed data truncated or corrupt\n"
    assert named.encode() in r.stderr
    assert r.stderr.endswith(b"1 file(s) could not be read to the end\n") and b"Traceback" not in r.stderr


def test_process_substitution_with_gzip(tmp_path: Path) -> None:
    """`logmetrics replay <(cat x.gz)`: a pipe named /dev/fd/N; its gzip magic is peeked, not rewound."""
    rfd, wfd = os.pipe()
    data = gzip.compress(b"".join(GOOD + b"\n" for _ in range(300)))
    t = _writer(wfd, data)
    try:
        r = logmetrics("replay", f"/dev/fd/{rfd}", "--json", pass_fds=(rfd,), timeout=30)
    finally:
        os.close(rfd)
    t.join(10)
    assert r.rc == 0, r.stderr
    assert r.json()["records"] == 300


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress, lzma.compress], ids=["gzip", "bzip2", "xz"])
def test_compressed_stdin(tmp_path: Path, compress: Callable[[bytes], bytes]) -> None:  # a real stdin: a child
    p = tmp_path / "in.z"
    p.write_bytes(compress(b"".join(GOOD + b"\n" for _ in range(7))))
    with open(p, "rb") as f:
        r = logmetrics("replay", "-", "--json", stdin=f.fileno())
    assert r.json()["records"] == 7


def _in_fifo_open(pid: int) -> bool:
    try:
        wchan = Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return False
    return wchan in ("wait_for_partner", "fifo_open")


def test_fifo_without_a_writer_waits_and_ctrl_c_exits_0(tmp_path: Path) -> None:
    """Like `cat FIFO`: the open waits for a writer (documented); Ctrl-C ends it cleanly."""
    fifo = tmp_path / "nobody.fifo"
    os.mkfifo(fifo)
    proc = subprocess.Popen([sys.executable, "-m", "logmetrics", "replay", str(fifo), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        deadline = time.monotonic() + 20
        while not _in_fifo_open(proc.pid) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)  # polling the child's state, bounded by the deadline
        assert _in_fifo_open(proc.pid), "replay did not reach the FIFO open"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
        proc.wait()
    # STYLE.md says Ctrl-C exits 0; typer/click turn it into 130 today (reported for cli.py)
    assert proc.returncode in (0, 130) and b"Traceback" not in err, err


# -- not files ------------------------------------------------------------------------------------


def _socket(d: Path) -> str:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(d / "sock"))
    s.close()
    return str(d / "sock")


def _devzero_link(d: Path) -> str:
    os.symlink("/dev/zero", d / "zero.log")
    return str(d / "zero.log")


def _empty_dir(d: Path) -> str:
    (d / "empty").mkdir()
    return str(d / "empty")


NOT_FILES = [
    ("dev-zero", lambda d: "/dev/zero", b"/dev/zero is a device, not a log file"),
    ("symlink-to-dev-zero", _devzero_link, b"is a device, not a log file"),
    ("dev-null", lambda d: "/dev/null", b"is a device"),
    ("socket", _socket, b"is a socket, not a log file"),
    ("empty-directory", _empty_dir, b"no files in this directory"),
]


@pytest.mark.parametrize(("name", "make", "needle"), NOT_FILES, ids=[n[0] for n in NOT_FILES])
def test_not_a_log_file_is_a_usage_error(tmp_path: Path, name: str, make: object, needle: bytes,
                                         capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    r = inproc(capfdbinary, "replay", path, "--json")
    assert r.rc == 2 and needle in r.stderr, r.stderr
    assert r.stderr.count(b"\n") == 1 and b"Traceback" not in r.stderr and r.stdout == b""


def test_directory_reads_its_regular_files_only(tmp_path: Path, capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    d = tmp_path / "logs"
    d.mkdir()
    (d / "a.log").write_bytes(GOOD + b"\n")
    (d / "sub").mkdir()
    (d / "sub" / "b.log").write_bytes(GOOD + b"\n")
    os.mkfifo(d / "pipe")
    os.symlink("/dev/zero", d / "zero")
    r = inproc(capfdbinary, "replay", str(d), "--json")
    assert r.rc == 0 and r.json()["records"] == 1 and r.json()["files"] == 1


# -- the follower -------------------------------------------------------------------------------

FOLLOW_CHILD = """
import json, resource, sys, threading, time
from logmetrics.sources.file import FileFollower
stop = threading.Event(); stop.set()  # one pass: read what is there, then return
f = FileFollower(sys.argv[1], stop=stop, rotate_wait=0)
t = time.monotonic(); lines = []
for b in f:
    lines += b.lines
s = f.stats[sys.argv[1]]
print(json.dumps({"lines": len(lines), "too_long": s.too_long, "seconds": time.monotonic() - t}))
"""


def follow_once(path: Path, timeout: float = 60) -> tuple[dict[str, float], float]:
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen([sys.executable, "-c", FOLLOW_CHILD, str(path)], stdout=out, cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        assert status == 0, f"follower child failed or was killed after {timeout}s"
        out.seek(0)
        return json.loads(out.read()), usage.ru_maxrss / 1024


def test_follower_100mb_line_is_skipped_without_holding_it(tmp_path: Path, baseline_rss: float) -> None:
    p = tmp_path / "r.log"
    with open(p, "wb") as f:
        f.write(GOOD + b"\n")
        write_big_line(f, 100 * MB)
        f.write(b"\n" + GOOD + b"\n")
    got, rss = follow_once(p)
    assert got["lines"] == 2 and got["too_long"] == 1
    assert rss < baseline_rss + 40, (rss, baseline_rss)


def test_follower_sparse_file_is_bounded(tmp_path: Path, baseline_rss: float) -> None:
    """1 GB of hole: read (the follower does not skip holes) at memory speed, memory bounded."""
    p = tmp_path / "r.log"
    with open(p, "wb") as f:
        f.truncate(1 << 30)
    got, rss = follow_once(p)
    assert got["lines"] == 0 and got["seconds"] < 30
    assert rss < baseline_rss + 40


def test_follower_record_after_a_hole_is_counted(tmp_path: Path) -> None:
    p = tmp_path / "r.log"
    with open(p, "wb") as f:
        f.write(GOOD + b"\n")
        f.seek(64 * MB)
        f.write(GOOD + b"\n")
    got, _ = follow_once(p)
    assert got["lines"] == 2


def test_follower_refuses_devices(tmp_path: Path) -> None:
    from logmetrics.errors import SourceError

    with pytest.raises(SourceError, match="is a device"):
        FileFollower(_devzero_link(tmp_path))


# -- cardinality --------------------------------------------------------------------------------

CARD_N = 1_000_000 if NIGHTLY else 50_000
CARD_MAX_SERIES = 1000
_SUCCESS = (
    '{"status":"success","call_type":"acompletion","model":"openai/m%d","model_group":"g%d","model_id":"id%d",'
    '"custom_llm_provider":"openai","api_base":"https://h%d","end_user":"u%d","startTime":1795333019.0,'
    '"endTime":1795333020.0,"completionStartTime":1795333019.5,"response_cost":0.001,"prompt_tokens":3,'
    '"completion_tokens":4,"total_tokens":7,"metadata":{"user_api_key_hash":"h%d","user_api_key_end_user_id":"u%d"}}\n'
)
_FAILURE = (
    '{"status":"failure","call_type":"acompletion","model":"openai/m%d","model_group":"g%d","model_id":"id%d",'
    '"custom_llm_provider":"openai","end_user":"u%d","startTime":1795333019.0,"endTime":1795333020.0,'
    '"metadata":{"user_api_key_hash":"h%d"},"error_information":{"error_code":"429","error_class":"RateLimitError"}}\n'
)
_ACCESS = '{"message":"127.0.0.1:1 - \\"GET /scan/%d HTTP/1.1\\" 404","level":"INFO"}\n'


def cardinality_lines(n: int) -> Iterator[str]:
    """Every record distinct in model, model group, deployment, end user and key; every tenth an
    access line to a distinct route (a scanner), every tenth a failure."""
    for i in range(n):
        k = i % 10
        yield _FAILURE % ((i,) * 5) if k == 9 else _ACCESS % i if k == 8 else _SUCCESS % ((i,) * 7)


@dataclass
class Attack:
    run: Run
    families: dict[str, int]  # family -> distinct label sets
    dropped: dict[str, float]  # logmetrics_series_dropped_total by family
    text: str


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*?)(_bucket|_sum|_count|_total|_created)?(\{.*\})? (\S+)$")
_LE = re.compile(r',?le="[^"]*"')


def series_per_family(text: str) -> tuple[dict[str, set[str]], dict[str, float]]:
    """Distinct label sets per family of an exposition (histogram buckets folded), and the
    series_dropped counter. A plain scan: prometheus_client's parser takes minutes on 100k lines."""
    families: dict[str, set[str]] = {}
    dropped: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        m = _SAMPLE.match(line)
        assert m, line
        name, labels = m.group(1), _LE.sub("", m.group(3) or "")
        families.setdefault(name, set()).add(labels)
        if name == "logmetrics_series_dropped":
            dropped[labels.split('"')[1]] = float(m.group(4))
    return families, dropped


@pytest.fixture(scope="module")
def attack(tmp_path_factory: pytest.TempPathFactory) -> Attack:
    d = tmp_path_factory.mktemp("card")
    p = d / "attack.jsonl"
    with open(p, "w") as f:
        f.writelines(cardinality_lines(CARD_N))
    out = d / "attack.prom"
    r = logmetrics("replay", str(p), "--end-user-label", "--json", "--max-series", str(CARD_MAX_SERIES),
                   "--metrics-out", str(out), timeout=3600 if NIGHTLY else 240)
    assert r.rc == 0, r.stderr
    text = out.read_text()
    families, dropped = series_per_family(text)
    return Attack(r, {k: len(v) for k, v in families.items()}, dropped, text)


LITELLM_CAPPED = ["litellm_requests_metric", "litellm_proxy_total_requests_metric", "litellm_spend_metric",
                  "litellm_total_tokens_metric", "litellm_request_total_latency_metric",
                  "litellm_deployment_success_responses", "litellm_deployment_failure_responses"]


def test_cardinality_attack_stays_bounded(attack: Attack, baseline_rss: float) -> None:
    r = attack.run
    assert r.json()["records"] == CARD_N
    for family in LITELLM_CAPPED:
        assert 0 < attack.families.get(family, 0) <= CARD_MAX_SERIES + 1, (family, attack.families.get(family))
    assert 'model="overflow"' in attack.text and 'requested_model="overflow"' in attack.text
    assert attack.dropped.get("litellm_proxy_total_requests_metric", 0) >= CARD_N * 0.9 - CARD_MAX_SERIES
    assert r.maxrss_mb < baseline_rss + (400 if NIGHTLY else 200), r.maxrss_mb


def test_cardinality_deployment_state_is_capped(attack: Attack) -> None:
    assert attack.families["litellm_deployment_state"] <= CARD_MAX_SERIES + 1


def test_cardinality_access_routes_are_capped(attack: Attack) -> None:
    assert attack.families["logmetrics_http_access_lines"] <= CARD_MAX_SERIES + 1


# -- HTTP clients that go away ----------------------------------------------------------------


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a client killed or timing out mid-request does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


def test_http_clients_that_reset_or_break_get_no_traceback(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A client reset while serve reads its request or writes a 20 MB body, and a handler that
    fails outside the scrape's own error handling: no traceback on stderr (socketserver prints one
    by default), one warning line for the failure that is not the client's, and /metrics still
    answers."""
    import http.client
    import logging

    from logmetrics.http import MetricsServer

    body = b"x" * 20_000_000 + b"\n"

    def broken_health() -> tuple[bool, str]:
        raise RuntimeError("health check broke")

    server = MetricsServer("127.0.0.1:0", lambda accept: (body, "text/plain"), broken_health)
    server.start()
    port = server.address[1]
    try:
        with caplog.at_level(logging.DEBUG, logger="logmetrics.http"):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET /metr")  # reset while the request line is read
            time.sleep(0.1)
            _reset(s)
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 200")  # reset while the body is written
            _reset(s)
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            s.settimeout(10)
            assert s.recv(100) == b""  # the handler failed: the connection is closed
            s.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/metrics")
            assert conn.getresponse().read() == body
            conn.close()
            deadline = time.monotonic() + 10
            while sum("connection with" in r.getMessage() for r in caplog.records) < 2:
                assert time.monotonic() < deadline, [r.getMessage() for r in caplog.records]
                time.sleep(0.05)
    finally:
        server.close()
    assert "Traceback" not in capfd.readouterr().err
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].endswith("RuntimeError: health check broke"), warnings


def _small_server(monkeypatch: pytest.MonkeyPatch, timeout: float) -> tuple[Any, int, Callable[[], None]]:
    """A /metrics server that takes 8 connections and waits `timeout` seconds for a request; its
    port, and a check that it still answers a scrape."""
    import http.client

    from logmetrics import http as lm_http

    monkeypatch.setattr(lm_http, "MAX_CONNECTIONS", 8)
    monkeypatch.setattr(lm_http._Handler, "timeout", timeout)
    server = lm_http.MetricsServer("127.0.0.1:0", lambda accept: (b"up 1\n", "text/plain"), lambda: (True, "ok\n"))
    server.start()
    port = server.address[1]

    def answers() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/metrics")
        assert conn.getresponse().read() == b"up 1\n"
        conn.close()

    return server, port, answers


def test_idle_connections_cannot_take_serves_file_descriptors(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that opens connections and sends nothing: beyond MAX_CONNECTIONS they are closed at
    once (one warning), the open ones are closed after IDLE_TIMEOUT, and /metrics answers again.
    (Before: each held a thread and a descriptor for ever; 1,020 of them under systemd's soft limit
    of 1024 descriptors made every scrape time out, and the follower could open no file.)"""
    import logging

    server, port, answers = _small_server(monkeypatch, 4.0)
    idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(8)]
    opened = time.monotonic()
    try:
        time.sleep(0.3)  # all 8 accepted
        with caplog.at_level(logging.WARNING, logger="logmetrics.http"):
            for _ in range(20):
                with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                    assert s.recv(1) == b""  # closed at once, not held
            assert time.monotonic() - opened < 3  # well before the idle timeout: refused, not timed out
        assert [r.getMessage() for r in caplog.records] == [
            "8 connections are open to /metrics: closing new ones until some end"
        ]
        for s in idle:
            assert s.recv(1) == b""  # closed by the server after its idle timeout
        assert 3.9 < time.monotonic() - opened < 10
        answers()
    finally:
        for s in idle:
            s.close()
        server.close()


# -- HTTP request forms -----------------------------------------------------------------------


def _exchange(port: int, data: bytes) -> bytes:
    """Send `data` on one connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(1 << 16):
            out += chunk
    return out


def test_absolute_form_targets_and_request_bodies() -> None:
    """`GET http://host/metrics HTTP/1.1` (absolute-form, which an HTTP/1.1 server must accept; some
    proxies and clients send it) is answered as `/metrics` (was 404). A GET with a body on a kept-alive
    connection is answered and the connection closed, never the body parsed as the next request
    (was a `400 Bad request syntax ('0123456789GET ...')` for the pipelined request that followed)."""
    from logmetrics.http import MetricsServer

    server = MetricsServer("127.0.0.1:0", lambda accept: (b"up 1\n", "text/plain"), lambda: (True, "ok\n"))
    server.start()
    port = server.address[1]
    try:
        for target, body in ((b"http://localhost/metrics", b"up 1\n"), (b"HTTP://x:9464/metrics?a=1", b"up 1\n"),
                             (b"http://x:9464/healthz", b"ok\n"), (b"http://x", b"logmetrics: "),
                             (b"http://x/nope", b"not found")):
            out = _exchange(port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            head, _, got = out.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 404" if b"nope" in target else b"HTTP/1.1 200"), (target, head)
            assert got.startswith(body), (target, got)
        out = _exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789"
                              b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 200") and b"\r\nConnection: close\r\n" in out, out
        assert out.count(b"HTTP/1.1 ") == 1 and out.endswith(b"\r\n\r\nok\n"), out
        out = _exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                              b"5\r\nhello\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert out.count(b"HTTP/1.1 ") == 1 and out.endswith(b"\r\n\r\nok\n"), out
        # pipelined requests without bodies are all answered, on the one connection
        out = _exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 3
                              + b"HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert out.count(b"HTTP/1.1 200 OK") == 4 and out.endswith(b"Content-Length: 5\r\n\r\n"), out
    finally:
        server.close()


def test_clients_sending_a_request_a_byte_at_a_time_cannot_hold_every_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """MAX_CONNECTIONS clients that each send their request head a byte at a time, faster than the
    idle timeout (a slowloris): each is closed once its head is IDLE_TIMEOUT late, and /metrics
    answers again. (Before: the timeout bounded each read only, so they held every connection for
    as long as they kept dribbling, and every scrape was refused.)"""
    server, port, answers = _small_server(monkeypatch, 2.0)
    slow = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(8)]
    head = b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 200 + b"\r\n"
    closed: set[int] = set()
    started = time.monotonic()
    try:
        for i in range(len(head)):  # one byte per connection every 0.25 s: never 2 s idle
            for n, s in enumerate(slow):
                if n not in closed:
                    try:
                        s.sendall(head[i:i + 1])
                    except OSError:
                        closed.add(n)
            if len(closed) == len(slow) or time.monotonic() - started > 10:
                break
            time.sleep(0.25)
        assert len(closed) == len(slow), f"{len(closed)} of {len(slow)} dribbling connections closed"
        assert time.monotonic() - started < 6  # the 2 s deadline plus the reaper's tick, not the 10 s cap
        answers()
    finally:
        for s in slow:
            s.close()
        server.close()
