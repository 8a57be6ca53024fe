"""`logmetrics serve` end to end: append -> visible-on-/metrics delay, idle CPU, peak RSS.

One `logmetrics serve FILE --listen 127.0.0.1:PORT --state-dir TMP --no-table` process (what a
user runs). A writer process appends LiteLLM 1.109.1 request records (the lines of
fixtures/sample-logs/litellm-1.109.1/requests-runA.jsonl, in turn, one write each) at a fixed
rate and notes `time.monotonic_ns()` (system-wide on Linux) just before each write. A scraper
thread here GETs /metrics every `--scrape-ms` over one keep-alive connection and notes when the
response arrived and its `logmetrics_records_read_total`; it asks for what Prometheus asks for
(OpenMetrics first, `ACCEPT`). The delay of record k is the arrival
time of the first scrape showing >= k records minus record k's stamp: it includes the scrape
period and the render, as a Prometheus scrape would (the scrape's own duration is printed too).

Then: serve's CPU (utime + stime of /proc/PID/stat) over `--idle` seconds with nothing written
and nothing scraped; and VmHWM / VmRSS (/proc/PID/status) once `--rss-n` records appended as
fast as the writer can have all been counted.

    python bench/serve_latency.py                                  # 1, 100, 1000 rec/s; 60 s idle; 1M records
    python bench/serve_latency.py --rates 1,100,1000 --duration 30 --idle 60 --rss-n 1000000
    python bench/serve_latency.py --quick                          # seconds: what tests/test_bench_smoke.py runs

Not run by the tests (only --quick is). Linux only (/proc).
"""

from __future__ import annotations

import argparse
import bisect
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RECORDS = ROOT / "fixtures/sample-logs/litellm-1.109.1/requests-runA.jsonl"
COUNT = re.compile(rb"^logmetrics_records_read_total (\S+)$", re.M)
# what Prometheus 2.x sends: OpenMetrics first (3.x adds escaping=allow-utf-8; the same render)
ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
          "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")

WRITER = """
import os, sys, time
path, records, rate, n, stamps = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
lines = [x + b"\\n" for x in open(records, "rb").read().splitlines()]
fd = os.open(path, os.O_WRONLY | os.O_APPEND)
out = []
if rate <= 0:  # as fast as possible, in 1 MB writes (no stamps)
    buf, i = [], 0
    while i < n:
        buf.append(lines[i % len(lines)])
        i += 1
        if len(buf) == 256 or i == n:
            os.write(fd, b"".join(buf))
            buf = []
else:
    start = time.monotonic()
    for i in range(n):
        due = start + i / rate
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        out.append(time.monotonic_ns())
        os.write(fd, lines[i % len(lines)])
os.close(fd)
open(stamps, "w").write(" ".join(map(str, out)))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


class Scraper(threading.Thread):
    """GET /metrics every `period` s; (arrival ns, records_read_total) each time the value grows."""

    def __init__(self, port: int, period: float) -> None:
        super().__init__(daemon=True)
        self.port, self.period = port, period
        self.stop = threading.Event()
        self.times: list[int] = []
        self.values: list[float] = []
        self.durations: list[float] = []
        self.new_durations: list[float] = []  # of the scrapes that showed new records (a state write first)
        self.error: BaseException | None = None

    def value(self, conn: http.client.HTTPConnection) -> tuple[float, int, float]:
        t0 = time.monotonic_ns()
        conn.request("GET", "/metrics", headers={"Accept": ACCEPT})
        body = conn.getresponse().read()
        t1 = time.monotonic_ns()
        m = COUNT.search(body)
        assert m is not None, body[:200]
        return float(m.group(1)), t1, (t1 - t0) / 1e6

    def run(self) -> None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            while not self.stop.is_set():
                v, t, ms = self.value(conn)
                self.durations.append(ms)
                if not self.values or v > self.values[-1]:
                    self.new_durations.append(ms)
                    self.times.append(t)
                    self.values.append(v)
                self.stop.wait(self.period)
            conn.close()
        except BaseException as e:  # reported by the caller
            self.error = e


def records_read(port: int) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        m = COUNT.search(conn.getresponse().read())
        assert m is not None
        return float(m.group(1))
    finally:
        conn.close()


def wait_count(port: int, n: float, timeout: float, step: float = 0.2) -> float:
    deadline = time.monotonic() + timeout
    while (v := records_read(port)) < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"serve counted {v:g} records, {n:g} expected, after {timeout:g} s")
        time.sleep(step)  # polling serve's counter, bounded by the deadline
    return v


def write(path: Path, rate: float, n: int, d: Path) -> list[int]:
    stamps = d / "stamps"
    subprocess.run([sys.executable, "-c", WRITER, str(path), str(RECORDS), str(rate), str(n), str(stamps)], check=True)
    text = stamps.read_text()
    return [int(x) for x in text.split()] if text else []


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="1,100,1000", help="records per second, comma-separated")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of writing per rate")
    ap.add_argument("--scrape-ms", type=float, default=5.0, help="scrape period in ms")
    ap.add_argument("--idle", type=float, default=60.0, help="seconds of idle CPU measurement")
    ap.add_argument("--rss-n", type=int, default=1_000_000, help="records appended before reading VmHWM (0: skip)")
    ap.add_argument("--quick", action="store_true", help="rates 50 for 1 s, 1 s idle, 2000 records: a smoke run")
    ap.add_argument("--json-out", type=Path)
    a = ap.parse_args()
    if a.quick:
        a.rates, a.duration, a.idle, a.rss_n = "50", 1.0, 1.0, 2000
    rates = [float(r) for r in a.rates.split(",")]
    result: dict[str, Any] = {"rates": [], "command": " ".join(sys.argv)}
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs (other work inflates p99/max)")
    with tempfile.TemporaryDirectory(prefix="logmetrics-serve-bench-") as tmp:
        d = Path(tmp)
        log = d / "requests.log"
        log.touch()
        port = free_port()
        cmd = [sys.executable, "-m", "logmetrics", "serve", str(log), "--listen", f"127.0.0.1:{port}",
               "--state-dir", str(d / "state"), "--no-table"]  # fmt: skip
        err = open(d / "serve.err", "wb")
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    records_read(port)
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit("serve did not start: " + (d / "serve.err").read_text()[-2000:]) from None
                    time.sleep(0.05)  # waiting for serve to listen, bounded by the deadline
            print("serve:", " ".join(cmd))
            print(f"{'rate/s':>7} {'records':>8} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'scrape p50 ms':>14} "
                  f"{'new-data scrape p50 ms':>23}")  # fmt: skip
            total = 0
            for rate in rates:
                n = max(1, int(rate * a.duration))
                scraper = Scraper(port, a.scrape_ms / 1000)
                scraper.start()
                stamps = write(log, rate, n, d)
                wait_count(port, total + n, 60, step=0.05)
                time.sleep(3 * a.scrape_ms / 1000)  # a few more scrapes after the last record (not sync)
                scraper.stop.set()
                scraper.join(10)
                if scraper.error is not None:
                    raise scraper.error
                delays = []
                for k, stamp in enumerate(stamps):
                    j = bisect.bisect_left(scraper.values, total + k + 1)
                    delays.append((scraper.times[j] - stamp) / 1e6)
                total += n
                row = {"rate": rate, "records": n, "p50_ms": pct(delays, 0.5), "p99_ms": pct(delays, 0.99),
                       "max_ms": max(delays), "scrape_p50_ms": pct(scraper.durations, 0.5),
                       "new_scrape_p50_ms": pct(scraper.new_durations[1:] or [0.0], 0.5),
                       "scrapes": len(scraper.durations)}  # fmt: skip
                result["rates"].append(row)
                print(f"{rate:>7g} {n:>8} {row['p50_ms']:>7.2f} {row['p99_ms']:>7.2f} {row['max_ms']:>7.2f} "
                      f"{row['scrape_p50_ms']:>14.2f} {row['new_scrape_p50_ms']:>23.2f}", flush=True)  # fmt: skip
            time.sleep(2.0)  # let the last state write and scrape settle before measuring idle
            hz = os.sysconf("SC_CLK_TCK")
            c0, w0 = cpu_ticks(proc.pid), time.monotonic()
            time.sleep(a.idle)
            c1, w1 = cpu_ticks(proc.pid), time.monotonic()
            idle = 100.0 * (c1 - c0) / hz / (w1 - w0)
            result["idle_cpu_percent"] = idle
            result["idle_seconds"] = w1 - w0
            print(f"idle CPU over {w1 - w0:.0f} s (no writes, no scrapes): {idle:.3f}% of a core "
                  f"({c1 - c0} ticks of 1/{hz} s)", flush=True)  # fmt: skip
            if a.rss_n:
                t0 = time.monotonic()
                write(log, 0, a.rss_n, d)
                wait_count(port, total + a.rss_n, 3600, step=0.5)
                total += a.rss_n
                took = time.monotonic() - t0
                hwm, rss = status_kb(proc.pid, "VmHWM"), status_kb(proc.pid, "VmRSS")
                size = log.stat().st_size
                result.update(rss_n=a.rss_n, vmhwm_kb=hwm, vmrss_kb=rss, rss_file_bytes=size, rss_seconds=took)
                print(f"after {a.rss_n} more records ({size / 1e9:.2f} GB appended, counted in {took:.1f} s, "
                      f"{a.rss_n / took:,.0f} rec/s): VmHWM {hwm / 1024:.1f} MB, VmRSS {rss / 1024:.1f} MB",
                      flush=True)  # fmt: skip
            result["records_read_total"] = records_read(port)
        finally:
            proc.terminate()
            proc.wait(30)
            err.close()
        if proc.returncode != 0:
            raise SystemExit(f"serve exited {proc.returncode}: " + (d / "serve.err").read_text()[-2000:])
    if a.json_out:
        a.json_out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
