"""Throughput, memory and scrape benchmarks of `logmetrics replay`, side by side with the floors
and mtail, in one run (project issue 6). See bench/README.md.

    python bench/run.py                              # 1M records of each shape, 3 repetitions
    python bench/run.py -n 200000 --slp-n 100000 --repeat 5
    python bench/run.py --rss-n 1000000,10000000     # RSS flat from 1M to 10M compact records
    python bench/run.py --quick                      # a few hundred records (the smoke test)

Every timed program is a fresh process, timed from outside (wall clock, start-up included) and
measured with wait4() (peak RSS of that child alone); repetitions are round-robin so machine noise
hits every contender alike; medians, minima and maxima are reported, with the ratio each target
asks for. Data comes from gen_logs.py (deterministic) and is kept in --workdir between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable


@dataclass
class Runs:
    """Repeated runs of one contender: wall seconds, peak RSS (MB), records."""

    name: str
    records: int = 0
    walls: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)

    def rate(self, stat: str = "median") -> float:
        if not self.walls:
            return float("nan")
        wall = {"median": statistics.median(self.walls), "min": max(self.walls), "max": min(self.walls)}[stat]
        return self.records / wall

    def rates(self) -> str:
        return f"{self.rate():,.0f} ({self.rate('min'):,.0f}-{self.rate('max'):,.0f})"


# command line -> peaks of its whole process tree (MB, sampled): the sum of VmRSS, and of Pss (pages
# shared by forked workers counted once, split between them)
TREE_PEAK: dict[str, tuple[float, float]] = {}


def _tree_memory(pid: int) -> tuple[float, float]:
    """VmRSS and Pss of `pid` and all its descendants, MB (0 once it is gone)."""
    rss = pss = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                rss += next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
            with open(f"/proc/{p}/smaps_rollup") as f:
                pss += next((int(line.split()[1]) for line in f if line.startswith("Pss:")), 0)
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            continue
    return rss / 1024, pss / 1024


def timed(cmd: list[str], out: Path | None = None, env: dict[str, str] | None = None) -> tuple[float, float]:
    """Run `cmd` (stdout to `out` or /dev/null); its wall seconds and peak RSS in MB (the largest of its
    processes, ru_maxrss). The peaks of the sums over its process tree (workers of a parallel replay),
    sampled every 20 ms, go to TREE_PEAK."""
    stdout = open(out, "wb") if out else subprocess.DEVNULL  # noqa: SIM115
    peak = [0.0, 0.0]
    try:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE, env=env)
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.02):
                peak[:] = map(max, peak, _tree_memory(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        assert proc.stderr is not None
        err = proc.stderr.read()
        done.set()
        sampler.join()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if out:
            stdout.close()  # type: ignore[union-attr]
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{err.decode(errors='replace')[-2000:]}")
    key = " ".join(cmd)
    rss, pss = TREE_PEAK.get(key, (0.0, 0.0))
    TREE_PEAK[key] = (max(rss, peak[0]), max(pss, peak[1]))
    return wall, usage.ru_maxrss / 1024


def generate(shape: str, n: int, workdir: Path) -> Path:
    path = workdir / f"{shape}-{n}.jsonl"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        subprocess.run([PY, str(HERE / "gen_logs.py"), "--shape", shape, "-n", str(n), "-o", str(tmp)],
                       check=True, stderr=subprocess.DEVNULL)
        tmp.rename(path)
    with open(path, "rb", buffering=0) as f:  # warm the page cache: every contender reads from memory
        while f.read(1 << 20):
            pass
    return path


def replay_cmd(path: Path, out: Path, jobs: int = 0) -> list[str]:
    """`replay FILE --metrics-out OUT` (jobs 0: the default, one worker per CPU), or with --jobs."""
    jobs_option = ["--jobs", str(jobs)] if jobs else []
    return [PY, "-m", "logmetrics", "replay", str(path), "--metrics-out", str(out), *jobs_option]


def mtail_cmd(path: Path) -> list[str] | None:
    mtail = shutil.which("mtail")
    if mtail is None:
        return None
    return [mtail, "--one_shot", "--one_shot_format", "prometheus", "--progs", str(HERE / "litellm.mtail"),
            "--logs", str(path), "--logtostderr"]


def floor(stage: str, shape: str, path: Path) -> tuple[float, float]:
    """floors.py's own timing of one stage (in-process: start-up excluded), and its peak RSS."""
    proc = subprocess.run([PY, str(HERE / "floors.py"), "--worker", stage, "--shape", shape, "--file", str(path)],
                          capture_output=True, text=True, check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["wall_s"], result["rss_peak_mb"]


def throughput(simple: Path, slp: Path, n_simple: int, n_slp: int, repeat: int, workdir: Path) -> dict[str, Runs]:
    runs = {name: Runs(name) for name in (
        "replay simple", "replay -j1 simple", "mtail simple", "floor f simple", "floor g simple",
        "replay slp", "replay -j1 slp", "floor f slp", "floor g slp")}
    for name in runs:
        runs[name].records = n_simple if "simple" in name else n_slp
    mtail = mtail_cmd(simple)
    for rep in range(repeat):
        for name, run in runs.items():
            path = simple if "simple" in name else slp
            shape = "simple" if "simple" in name else "slp"
            if name.startswith("replay"):
                wall, rss = timed(replay_cmd(path, workdir / f"{shape}.prom", 1 if "-j1" in name else 0))
            elif name.startswith("mtail"):
                if mtail is None:
                    continue
                wall, rss = timed(mtail, out=workdir / "mtail.prom")
            else:
                wall, rss = floor(name.split()[1], shape, path)
            run.walls.append(wall)
            run.rss.append(rss)
            print(f"[{rep + 1}/{repeat}] {name:15s} {wall:7.2f}s {run.records / wall:>12,.0f} rec/s  "
                  f"rss {rss:5.1f} MB", file=sys.stderr, flush=True)
    return runs


def rss_scaling(sizes: list[int], workdir: Path) -> list[tuple[int, float, float]]:
    """(records, wall, peak RSS MB) of one replay of a compact file of each size."""
    out = []
    for n in sizes:
        path = generate("simple", n, workdir)
        wall, rss = timed(replay_cmd(path, workdir / "rss.prom"))
        print(f"rss: {n:>10,} records {wall:7.2f}s rss {rss:5.1f} MB", file=sys.stderr, flush=True)
        out.append((n, wall, rss))
    return out


TARGET_SERIES = 11_000  # the targets' "10k series", with the overshoot of growing a state up to 10k


def series_in(prom: Path) -> int:
    """Sample lines of an exposition file."""
    with open(prom, "rb") as f:
        return sum(1 for line in f if not line.startswith(b"#"))


def many_models(simple: Path, workdir: Path, spread: int = 35) -> tuple[int, float, tuple[float, float]]:
    """The compact file with each model name split `spread` ways (8 x 35 = 280 models: ~9.3k series, the
    size the memory target names), replayed as by default: (series, largest process MB, whole tree
    (RSS, Pss) MB)."""
    path = workdir / f"{simple.stem}-x{spread}.jsonl"
    if not path.exists():
        model = re.compile(rb'"model": "([^"]+)"')
        with open(simple, "rb") as f, open(path.with_suffix(".tmp"), "wb") as out:
            for i, line in enumerate(f):
                out.write(model.sub(rb'"model": "\1-%d"' % (i % spread), line, count=1))
        path.with_suffix(".tmp").rename(path)
    prom = workdir / "many-models.prom"
    cmd = replay_cmd(path, prom)
    _, largest = timed(cmd)
    series = series_in(prom)
    print(f"many models: {series:,} series, largest process {largest:.1f} MB, tree {TREE_PEAK[' '.join(cmd)]}",
          file=sys.stderr, flush=True)
    return series, largest, TREE_PEAK[" ".join(cmd)]


SCRAPE = r"""
import json, statistics, sys, time
from logmetrics.aggregate import Aggregator
from logmetrics.export import exposition
from logmetrics.parse import Parser
from logmetrics.pipeline import Ingest
path, unit, target, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ingest = Ingest(Aggregator(), Parser())
def size():
    if unit == "signatures":
        return len(ingest.agg.acc)
    return sum(1 for line in exposition(ingest.agg).splitlines() if line and not line.startswith(b"#"))
with open(path, "rb") as f:  # grow the state until it holds `target` series (or label sets)
    n, more = 0, 64
    for line in f:
        ingest.lines([line.rstrip(b"\n")])
        n += 1
        more -= 1
        if more == 0:
            have = size()
            if have >= target:
                break
            more = max(1, int(n * (target / max(have, 1) - 1) * 0.9))
walls, om_walls = [], []  # text 0.0.4, and OpenMetrics (what Prometheus asks for first)
for _ in range(repeat):
    for om, into in ((False, walls), (True, om_walls)):
        t0 = time.perf_counter()
        body = exposition(ingest.agg, om=om)
        into.append(time.perf_counter() - t0)
from logmetrics.export import registry_for
from prometheus_client.openmetrics.exposition import generate_latest
t0 = time.perf_counter()  # the reference: prometheus_client's OpenMetrics encoder, once
assert generate_latest(registry_for(ingest.agg)) == body
client = time.perf_counter() - t0
lines = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
print(json.dumps({"series": lines, "signatures": len(ingest.agg.acc), "bytes": len(body), "walls": walls,
                  "om_walls": om_walls, "om_prometheus_client": client}))
"""


def scrape(slp: Path, spec: str, repeat: int) -> dict[str, object]:
    """Render the exposition of a state grown to `spec` series ("10000") or label sets ("10000sig")."""
    unit, target = ("signatures", spec[:-3]) if spec.endswith("sig") else ("series", spec)
    proc = subprocess.run([PY, "-c", SCRAPE, str(slp), unit, target, str(repeat)], capture_output=True,
                          text=True, check=True, cwd=ROOT)
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=1_000_000, help="compact records (default 1M)")
    ap.add_argument("--slp-n", type=int, default=1_000_000, help="payload-like records (default 1M)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rss-n", default="", help="comma list of compact record counts for the RSS scaling "
                    "check, e.g. 1000000,10000000 (default: skip)")
    ap.add_argument("--scrape-series", default="10000,10000sig",
                    help="comma list of states to render: N series (exposition sample lines) or Nsig label "
                    "sets (the --max-series cap counts label sets)")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "logmetrics-bench")
    ap.add_argument("--json-out", type=Path)
    ap.add_argument("--quick", action="store_true", help="a few hundred records, one repetition")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.slp_n, args.repeat, args.scrape_series = 400, 200, 1, "500,50sig"
        args.rss_n = args.rss_n or "300,600"
    args.workdir.mkdir(parents=True, exist_ok=True)

    simple = generate("simple", args.n, args.workdir)
    slp = generate("slp", args.slp_n, args.workdir)
    runs = throughput(simple, slp, args.n, args.slp_n, args.repeat, args.workdir)
    rss = rss_scaling([int(x) for x in args.rss_n.split(",") if x], args.workdir)
    many_series, many_largest, (many_rss, many_pss) = many_models(simple, args.workdir)
    scrapes = [scrape(slp, x, max(args.repeat, 5)) for x in args.scrape_series.split(",") if x]

    r = runs
    mtail_ok = bool(r["mtail simple"].walls)
    rows: list[tuple[str, str, str, bool | None]] = [
        ("payload-like replay >= 0.5x floor f (median)", f"{r['replay slp'].rates()} rec/s",
         f"{r['replay slp'].rate() / r['floor f slp'].rate():.2f}x of {r['floor f slp'].rates()}",
         r["replay slp"].rate() >= 0.5 * r["floor f slp"].rate()),
        ("compact replay >= 8x mtail (median)", f"{r['replay simple'].rates()} rec/s",
         f"{r['replay simple'].rate() / r['mtail simple'].rate():.2f}x of {r['mtail simple'].rates()}"
         if mtail_ok else "mtail not installed",
         mtail_ok and r["replay simple"].rate() >= 8 * r["mtail simple"].rate()),
    ]
    peak = max(max(r["replay simple"].rss), max(r["replay slp"].rss), *(x[2] for x in rss))
    rows.append(("peak RSS < 60 MB (replay, any input; largest process)", f"{peak:.1f} MB", "", peak < 60))
    for shape, stem, path in (("compact", "simple", simple), ("payload-like", "slp", slp)):
        prom = args.workdir / f"{stem}.prom"
        tree_rss, tree_pss = TREE_PEAK.get(" ".join(replay_cmd(path, prom)), (0.0, 0.0))
        series = series_in(prom)
        within = series <= TARGET_SERIES
        rows.append((f"  the same, all processes of the parallel {shape} replay together (sampled): Pss (RSS); "
                     f"{series:,} series{'' if within else ', beyond the target'}",
                     f"{tree_pss:.1f} MB ({tree_rss:.1f} MB)", "", tree_pss < 60 if within else None))
    rows.append((f"  the same at {many_series:,} series (the compact records over 280 models), parallel replay: "
                 "all processes together Pss (RSS); largest process", f"{many_pss:.1f} MB ({many_rss:.1f} MB); "
                 f"{many_largest:.1f} MB", "",
                 many_pss < 60 and many_largest < 60 if many_series <= TARGET_SERIES else None))
    if len(rss) >= 2:
        growth = rss[-1][2] - rss[0][2]
        rows.append((f"RSS flat {rss[0][0]:,} -> {rss[-1][0]:,} records", f"{rss[0][2]:.1f} -> {rss[-1][2]:.1f} MB",
                     f"{growth:+.1f} MB", growth < 5))
    for s in scrapes:
        for fmt, key in (("text 0.0.4", "walls"), ("OpenMetrics", "om_walls")):
            walls = [w * 1000 for w in cast("list[float]", s[key])]
            client = cast(float, s["om_prometheus_client"]) * 1000
            reference = f"prometheus_client: {client:.0f} ms" if key == "om_walls" else ""
            series = cast(int, s["series"])
            target = "< 50 ms" if series <= TARGET_SERIES else "(beyond the target)"
            rows.append((f"scrape render of {series:,} series {target}, {fmt} ({s['signatures']:,} label sets, "
                         f"{int(s['bytes']) / 1e6:.1f} MB)",  # type: ignore[call-overload]
                         f"{statistics.median(walls):.0f} ms ({min(walls):.0f}-{max(walls):.0f})", reference,
                         statistics.median(walls) < 50 if series <= TARGET_SERIES else None))

    print(f"\nlogmetrics bench: {args.n:,} compact / {args.slp_n:,} payload-like records, {args.repeat} "
          f"repetition(s), python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.2f}\n")
    print("| contender | records/s median (min-max) | peak RSS MB |")
    print("|---|---|---|")
    for run in runs.values():
        if run.walls:
            print(f"| {run.name} | {run.rates()} | {max(run.rss):.1f} |")
    print("\n| target | measured | ratio | met |")
    print("|---|---|---|---|")
    for name, measured, ratio, ok in rows:
        print(f"| {name} | {measured} | {ratio} | {'-' if ok is None else 'yes' if ok else 'NO'} |")
    if args.json_out:
        args.json_out.write_text(json.dumps({
            "runs": {k: {"records": v.records, "walls": v.walls, "rss": v.rss} for k, v in runs.items()},
            "rss_scaling": rss, "scrape": scrapes,
            "targets": [{"target": a, "measured": b, "ratio": c, "met": d} for a, b, c, d in rows],
        }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
