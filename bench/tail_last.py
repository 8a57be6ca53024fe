#!/usr/bin/env python3
"""How long `logmetrics tail -n 20 --no-follow FILE` takes on a 1M-record file.

The file is made once with the deterministic generator (bench/gen_logs.py, a copy of
shared/tools/gen_logs.py) and kept next to --dir. `-n` reads the file backwards from its end, so
the time should not depend on the file's size: the command's own start-up (imports) dominates;
the same command on an empty input is timed too, as that floor, and the reading itself
(`tail.last_shown`) in-process.

    python bench/tail_last.py                      # 1M compact records (~190 MB)
    python bench/tail_last.py --shape slp          # 1M payload-like records (~1.9 GB)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
GENERATOR = next(p for p in (HERE / "gen_logs.py", ROOT.parent / "shared" / "tools" / "gen_logs.py") if p.exists())


def timed(argv: list[str], repeat: int) -> tuple[float, float, bytes]:
    """(best, median) wall seconds of `repeat` runs, and the last run's stdout."""
    times = []
    out = b""
    for _ in range(repeat):
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, check=True, cwd=ROOT)
        times.append(time.perf_counter() - start)
        out = done.stdout
    return min(times), statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--records", type=int, default=1_000_000)
    ap.add_argument("--shape", choices=["simple", "slp"], default="simple")
    ap.add_argument("--dir", type=Path, default=Path("/tmp"))
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    path = args.dir / f"logmetrics-bench-{args.shape}-{args.records}.jsonl"
    if not path.exists():
        print(f"generating {path} with {GENERATOR.name} ...", file=sys.stderr)
        tmp = path.with_suffix(".tmp")
        subprocess.run([sys.executable, str(GENERATOR), "--shape", args.shape, "-n", str(args.records), "-o", str(tmp)],
                       check=True)
        tmp.rename(path)
    size = path.stat().st_size
    base = [sys.executable, "-m", "logmetrics"]
    empty = args.dir / "logmetrics-bench-empty.jsonl"
    empty.write_bytes(b"")
    floor, floor_med, _ = timed([*base, "tail", "-n", "20", "--no-follow", str(empty)], args.repeat)
    best, med, out = timed([*base, "tail", "-n", "20", "--no-follow", str(path)], args.repeat)
    json_best, json_med, json_out = timed([*base, "tail", "-n", "20", "--no-follow", "-o", "json", str(path)],
                                          args.repeat)
    assert out.count(b"\n") == 20 and json_out.count(b"\n") == 20, (out, json_out)
    print(f"file: {path} ({args.records:,} records, {size / 1e6:,.0f} MB, shape {args.shape}); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for label, b, m in (("same command on an empty file (start-up)", floor, floor_med),
                        ("logmetrics tail -n 20 --no-follow", best, med),
                        ("logmetrics tail -n 20 --no-follow -o json", json_best, json_med)):
        print(f"{label + ':':43s} best {b * 1000:6.0f} ms  median {m * 1000:6.0f} ms")
    print(f"tail's own work beyond start-up: ~{(med - floor_med) * 1000:.0f} ms")
    sys.path.insert(0, str(ROOT))
    from logmetrics.parse import Parser
    from logmetrics.tail import Select, last_shown

    runs = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        got = last_shown([str(path)], 20, Select(), Parser(), 1 << 20)
        runs.append(time.perf_counter() - start)
    assert len(got) == 20
    print(f"{'in-process tail.last_shown(20):':43s} best {min(runs) * 1000:6.2f} ms")


if __name__ == "__main__":
    main()
