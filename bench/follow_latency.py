"""Append -> yield delay and idle CPU of FileFollower, per wake-up backend.

A writer process appends one line per write (like LiteLLM's logger), each starting with
`time.monotonic_ns()` (system-wide on Linux); the follower runs in a thread of this process and
notes, for every line it yields, now minus that stamp. Idle CPU is this process's CPU time
(every thread, watchfiles' Rust thread included) while the followed file does not change.

    python bench/follow_latency.py                       # inotify (the default backend)
    python bench/follow_latency.py --backend inotify --backend watchfiles --step 20 --step 50
    python bench/follow_latency.py --rates 1,100,1000 --duration 20 --idle 60

Not run by the tests.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from logmetrics.sources.file import Backend, FileFollower  # noqa: E402

WRITER = """
import os, sys, time
path, rate, duration = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
pad = b" " + b"x" * 1500 + b"\\n"  # a LiteLLM request record is 1-3 kB
fd = os.open(path, os.O_WRONLY | os.O_APPEND)
start = nxt = time.monotonic()
while nxt - start < duration:
    time.sleep(max(0.0, nxt - time.monotonic()))
    os.write(fd, str(time.monotonic_ns()).encode() + pad)
    nxt += 1.0 / rate
os.close(fd)
"""


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def follow(
    path: str, backend: Backend, step: int
) -> tuple[FileFollower, threading.Event, list[float], threading.Thread]:
    stop = threading.Event()
    f = FileFollower(path, stop=stop, backend=backend, watchfiles_step_ms=step)
    delays: list[float] = []

    def run() -> None:
        for b in f:
            now = time.monotonic_ns()
            delays.extend((now - int(x.split(b" ", 1)[0])) / 1e6 for x in b.lines)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return f, stop, delays, t


def latency(d: str, backend: Backend, step: int, rate: float, duration: float) -> list[float]:
    path = os.path.join(d, f"lat-{backend}-{step}-{rate}.log")
    Path(path).touch()
    f, stop, delays, t = follow(path, backend, step)
    subprocess.run([sys.executable, "-c", WRITER, path, str(rate), str(duration)], check=True)
    deadline = time.monotonic() + 5
    want = int(rate * duration * 0.99)
    while len(delays) < want and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    f.wake()
    t.join(5)
    return delays


def idle_cpu(d: str, backend: Backend, step: int, seconds: float) -> float:
    path = os.path.join(d, f"idle-{backend}-{step}.log")
    Path(path).write_bytes(b"1 warm\n")
    f, stop, _, t = follow(path, backend, step)
    time.sleep(1.0)
    c0, w0 = time.process_time(), time.monotonic()
    time.sleep(seconds)
    c1, w1 = time.process_time(), time.monotonic()
    stop.set()
    f.wake()
    t.join(5)
    return 100.0 * (c1 - c0) / (w1 - w0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", action="append", choices=["inotify", "watchfiles", "poll"])
    ap.add_argument("--step", action="append", type=int, help="watchfiles step in ms (default 20)")
    ap.add_argument("--rates", default="1,100,1000")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of writing per rate")
    ap.add_argument("--idle", type=float, default=60.0, help="seconds of idle CPU measurement")
    a = ap.parse_args()
    rates = [float(r) for r in a.rates.split(",")]
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs (other work inflates p99/max)")
    print(f"{'backend':<16} {'rate/s':>7} {'lines':>6} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}")
    with tempfile.TemporaryDirectory() as d:
        for backend in a.backend or ["inotify"]:
            steps = (a.step or [20]) if backend == "watchfiles" else [0]
            for step in steps:
                label = f"{backend}{f'/{step}ms' if step else ''}"
                for rate in rates:
                    xs = latency(d, backend, step, rate, a.duration)
                    print(
                        f"{label:<16} {rate:>7g} {len(xs):>6} {statistics.median(xs):>7.2f} "
                        f"{pct(xs, 0.99):>7.2f} {max(xs):>7.2f}",
                        flush=True,
                    )
                cpu = idle_cpu(d, backend, step, a.idle)
                print(f"load average now: {os.getloadavg()[0]:.2f}")
                print(f"{label:<16} idle CPU over {a.idle:g}s: {cpu:.3f}% of a core", flush=True)


if __name__ == "__main__":
    main()
