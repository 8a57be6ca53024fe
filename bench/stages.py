#!/usr/bin/env python3
"""Per-record cost of each replay stage, in one process: decode only, parse (decode + event), aggregate,
and the C hot loop that fuses them (when built).

    python bench/stages.py FILE [--lines N] [--repeat K]

Lines are read into memory first (no I/O in the timings); each stage is timed K times and the best
is printed, in microseconds per record, with the exposition render time of the final state.
"""

from __future__ import annotations

import argparse
import time

from logmetrics.aggregate import Aggregator
from logmetrics.export import exposition
from logmetrics.hotloop import AVAILABLE, HotLoop
from logmetrics.parse import Parser
from logmetrics.records import LINE_DECODER


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file")
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with open(args.file, "rb") as f:
        lines = [line.rstrip(b"\n") for _, line in zip(range(args.lines), f, strict=False)]
    n = len(lines)
    best = dict.fromkeys(("decode", "parse", "aggregate", "hot loop", "render"), float("inf"))
    for _ in range(args.repeat):
        t = time.perf_counter()
        for line in lines:
            LINE_DECODER.decode(line)
        best["decode"] = min(best["decode"], time.perf_counter() - t)
        parser = Parser()
        t = time.perf_counter()
        events = [parser.parse(line) for line in lines]
        best["parse"] = min(best["parse"], time.perf_counter() - t)
        agg = Aggregator()
        t = time.perf_counter()
        for e in events:
            agg.add(e)
        best["aggregate"] = min(best["aggregate"], time.perf_counter() - t)
        t = time.perf_counter()
        exposition(agg)
        best["render"] = min(best["render"], time.perf_counter() - t)
        if AVAILABLE:
            hot = Aggregator(rates=False)
            t = time.perf_counter()
            HotLoop(hot, Parser()).lines(lines)
            best["hot loop"] = min(best["hot loop"], time.perf_counter() - t)
    print(f"{n:,} lines of {args.file}, best of {args.repeat}: decode {best['decode'] / n * 1e6:.2f} us, "
          f"parse (decode + event) {best['parse'] / n * 1e6:.2f} us, aggregate {best['aggregate'] / n * 1e6:.2f} us "
          f"per record; render {best['render'] * 1e3:.0f} ms ({len(agg.acc):,} label sets)"
          + (f"; the C hot loop (decode, event, aggregate) {best['hot loop'] / n * 1e6:.2f} us" if AVAILABLE else ""))


if __name__ == "__main__":
    main()
