#!/usr/bin/env python3
# ruff: noqa
# Copied verbatim from shared/tools/floors.py (only these two lines added) so the bench does not depend on ../shared.
"""Single-process throughput floors for "LiteLLM JSON log lines -> Prometheus metrics".

Each stage runs in its own fresh interpreter (so peak RSS from getrusage is per stage),
stages are interleaved across repetitions (round-robin) to spread machine noise, and the
median / min / max over repetitions are reported.

Stages (cumulative unless noted):
  a   read the file line by line, binary mode                     (I/O + line-splitting floor)
  b   a + orjson.loads(line)                                      (parse floor)
  c   b + extract fields into a dataclass(slots=True)             (parse+extract floor)
  d   c + naive prometheus_client: per record Counter.labels().inc(), Histogram.labels().observe(),
      3 token Counter.labels().inc(n); scrape (generate_latest) once at the end
  d2  c + prometheus_client, but each label tuple's child metrics are resolved once and cached
      in a dict (the usual first fix for .labels() overhead)                     [variant]
  e   c + optimized: plain dicts keyed by label tuples, bisect into bucket arrays,
      exposed through a custom Collector at scrape time; scrape once at the end
  e2  b + the same aggregation straight from the parsed dict (no dataclass)      [variant]
  f   a + msgspec.json.Decoder(Struct with only the needed fields)  (alternative to b+c)
  g   f + the optimized aggregation + Collector (lines fed through a generator)   [variant]
  h   msgspec Decoder.decode_lines() on ~1 MiB chunks + optimized aggregation    [variant]

Every metrics stage (d, d2, e, e2, g, h) reports a SHA-256 of its /metrics exposition text with the
`*_created` lines removed (the custom Collector does not emit creation timestamps); all of them
must equal stage d's digest, i.e. the optimized designs expose exactly the same numbers as the
naive prometheus_client pipeline.

Usage:
  python floors.py --shape simple --file /tmp/logs-simple-1m.jsonl --repeat 3
  python floors.py --shape slp --file /tmp/logs-slp-1m.jsonl --json-out results/floors-slp.json
  python floors.py --shape simple --file F --stages d,e --dump-dir /tmp/expo   # keep expositions
  python floors.py --worker e --shape simple --file F                          # one run, JSON line
"""
import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from bisect import bisect_left
from dataclasses import dataclass

# LiteLLM's default latency buckets (+Inf last, as prometheus_client stores them).
BUCKETS = (0.005, 0.00625, 0.0125, 0.025, 0.05, 0.1, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5,
           5.0, 5.5, 6.0, 6.5, 7.0, 7.5, 8.0, 8.5, 9.0, 9.5, 10.0, 15.0, 20.0, 25.0, 30.0, 60.0,
           120.0, 180.0, 240.0, 300.0, float("inf"))

REQ_NAME, REQ_HELP = "litellm_requests", "LLM requests by model, provider and status"
LAT_NAME, LAT_HELP = "litellm_request_latency_seconds", "End-to-end LLM request latency"
TOKEN_METRICS = (
    ("litellm_prompt_tokens", "Prompt tokens"),
    ("litellm_completion_tokens", "Completion tokens"),
    ("litellm_total_tokens", "Total tokens"),
)

STAGES = {
    "a": "read lines (rb)",
    "b": "a + orjson.loads",
    "c": "b + extract -> dataclass(slots)",
    "d": "c + naive prometheus_client",
    "d2": "c + prometheus_client, cached .labels() children",
    "e": "c + dict/bisect aggregation + Collector",
    "e2": "b + dict aggregation, no dataclass",
    "f": "msgspec decode -> Struct",
    "g": "f + dict aggregation + Collector",
    "h": "msgspec decode_lines(1 MiB chunks) + dict aggregation",
}
METRIC_STAGES = ("d", "d2", "e", "e2", "g", "h")
READ_BUFFER = 1 << 20  # bytes; same for every stage
CHUNK = 1 << 20        # stage h chunk size
PARSE_ERRORS = (ValueError, KeyError, TypeError, AttributeError)


# --------------------------------------------------------------------------- records
@dataclass(slots=True)
class Rec:
    model: str
    provider: str
    status: str
    latency_s: float
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


def extract_simple(d: dict) -> Rec:
    tok = d.get("tokens")
    if tok is None:
        p = c = t = 0
    else:
        p, c, t = tok["prompt"], tok["completion"], tok["total"]
    return Rec(d["model"], d["provider"], "failure" if d["level"] == "ERROR" else "success",
               d["latency_ms"] / 1000, p, c, t)


def extract_slp(d: dict) -> Rec:
    return Rec(d["model"], d["custom_llm_provider"], d["status"], d["response_time"],
               d["prompt_tokens"], d["completion_tokens"], d["total_tokens"])


EXTRACT = {"simple": extract_simple, "slp": extract_slp}


def msgspec_types():
    import msgspec
    from typing import Optional

    class MTokens(msgspec.Struct, gc=False):
        prompt: int = 0
        completion: int = 0
        total: int = 0

    class MSimple(msgspec.Struct, gc=False, kw_only=True):
        model: str
        provider: str
        level: str
        latency_ms: int
        tokens: Optional[MTokens] = None

    class MSlp(msgspec.Struct, gc=False, kw_only=True):
        model: str
        provider: str = msgspec.field(name="custom_llm_provider")
        status: str
        latency_s: float = msgspec.field(name="response_time")
        prompt_tokens: int = 0
        completion_tokens: int = 0
        total_tokens: int = 0

    return {"simple": MSimple, "slp": MSlp}


# --------------------------------------------------------------------------- aggregation
class AggCollector:
    """Exposes the plain-dict aggregates as prometheus_client metric families at scrape time.

    req: {(model, provider, status): count}
    mp:  {(model, provider): [bucket_counts (non-cumulative, len(BUCKETS)), latency_sum,
                              prompt_tokens, completion_tokens, total_tokens]}
    """

    def __init__(self, req: dict, mp: dict):
        from prometheus_client.utils import floatToGoString
        self.req, self.mp = req, mp
        self.le = [floatToGoString(b) for b in BUCKETS]

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
        fam = CounterMetricFamily(REQ_NAME, REQ_HELP, labels=("model", "provider", "status"))
        for k, v in list(self.req.items()):
            fam.add_metric(k, v)
        yield fam
        hist = HistogramMetricFamily(LAT_NAME, LAT_HELP, labels=("model", "provider"))
        snap = [(k, list(s[0]), *s[1:]) for k, s in list(self.mp.items())]
        for k, counts, lat_sum, *_ in snap:
            acc, buckets = 0, []
            for le, n in zip(self.le, counts):
                acc += n
                buckets.append((le, acc))
            hist.add_metric(k, buckets, sum_value=lat_sum)
        yield hist
        for i, (name, doc) in enumerate(TOKEN_METRICS):
            fam = CounterMetricFamily(name, doc, labels=("model", "provider"))
            for k, _c, _s, *toks in snap:
                fam.add_metric(k, toks[i])
            yield fam


def new_state():
    return {}, {}


def scrape(req, mp) -> bytes:
    from prometheus_client import CollectorRegistry, generate_latest
    reg = CollectorRegistry(auto_describe=False)
    reg.register(AggCollector(req, mp))
    return generate_latest(reg)


def aggregate_file(path: str, shape: str):
    """Reference aggregation (stage e): returns (req, mp, n_records, n_bad). Used by peers.py."""
    import orjson
    loads, extract = orjson.loads, EXTRACT[shape]
    req, mp = new_state()
    req_get, mp_get, nb = req.get, mp.get, len(BUCKETS)
    n = bad = 0
    with open(path, "rb", buffering=READ_BUFFER) as f:
        for line in f:
            n += 1
            try:
                r = extract(loads(line))
            except PARSE_ERRORS:
                bad += 1
                continue
            k = (r.model, r.provider, r.status)
            req[k] = req_get(k, 0) + 1
            k = (r.model, r.provider)
            s = mp_get(k)
            if s is None:
                s = mp[k] = [[0] * nb, 0.0, 0, 0, 0]
            lat = r.latency_s
            s[0][bisect_left(BUCKETS, lat)] += 1
            s[1] += lat
            s[2] += r.prompt_tokens
            s[3] += r.completion_tokens
            s[4] += r.total_tokens
    return req, mp, n, bad


# --------------------------------------------------------------------------- stages
def stage_a(path, shape):
    n = 0
    with open(path, "rb", buffering=READ_BUFFER) as f:
        for _line in f:
            n += 1
    return n, 0, None


def stage_b(path, shape):
    import orjson
    loads = orjson.loads
    n = bad = 0
    with open(path, "rb", buffering=READ_BUFFER) as f:
        for line in f:
            n += 1
            try:
                loads(line)
            except PARSE_ERRORS:
                bad += 1
    return n, bad, None


def stage_c(path, shape):
    import orjson
    loads, extract = orjson.loads, EXTRACT[shape]
    n = bad = 0
    with open(path, "rb", buffering=READ_BUFFER) as f:
        for line in f:
            n += 1
            try:
                extract(loads(line))
            except PARSE_ERRORS:
                bad += 1
    return n, bad, None


def stage_d(path, shape):
    import orjson
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
    reg = CollectorRegistry()
    req = Counter(REQ_NAME, REQ_HELP, ("model", "provider", "status"), registry=reg)
    lat = Histogram(LAT_NAME, LAT_HELP, ("model", "provider"), buckets=BUCKETS, registry=reg)
    ptok, ctok, ttok = (Counter(name, doc, ("model", "provider"), registry=reg)
                        for name, doc in TOKEN_METRICS)
    loads, extract = orjson.loads, EXTRACT[shape]
    n = bad = 0
    with open(path, "rb", buffering=READ_BUFFER) as f:
        for line in f:
            n += 1
            try:
                r = extract(loads(line))
            except PARSE_ERRORS:
                bad += 1
                continue
            req.labels(r.model, r.provider, r.status).inc()
            lat.labels(r.model, r.provider).observe(r.latency_s)
            ptok.labels(r.model, r.provider).inc(r.prompt_tokens)
            ctok.labels(r.model, r.provider).inc(r.completion_tokens)
            ttok.labels(r.model, r.provider).inc(r.total_tokens)
    return n, bad, generate_latest(reg)


def stage_d2(path, shape):
    import orjson
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
    reg = CollectorRegistry()
    req = Counter(REQ_NAME, REQ_HELP, ("model", "provider", "status"), registry=reg)
    lat = Histogram(LAT_NAME, LAT_HELP, ("model", "provider"), buckets=BUCKETS, registry=reg)
    ptok, ctok, ttok = (Counter(name, doc, ("model", "provider"), registry=reg)
                        for name, doc in TOKEN_METRICS)
    req_children, mp_children = {}, {}  # label tuple -> child metric(s), resolved once
    loads, extract = orjson.loads, EXTRACT[shape]
    n = bad = 0
    with open(path, "rb", buffering=READ_BUFFER) as f:
        for line in f:
            n += 1
            try:
                r = extract(loads(line))
            except PARSE_ERRORS:
                bad += 1
                continue
            k = (r.model, r.provider, r.status)
            child = req_children.get(k)
            if child is None:
                child = req_children[k] = req.labels(*k)
            child.inc()
            k = (r.model, r.provider)
            ch = mp_children.get(k)
            if ch is None:
                ch = mp_children[k] = (lat.labels(*k), ptok.labels(*k), ctok.labels(*k),
                                       ttok.labels(*k))
            ch[0].observe(r.latency_s)
            ch[1].inc(r.prompt_tokens)
            ch[2].inc(r.completion_tokens)
            ch[3].inc(r.total_tokens)
    return n, bad, generate_latest(reg)


def stage_e(path, shape):
    req, mp, n, bad = aggregate_file(path, shape)
    return n, bad, scrape(req, mp)


def stage_e2(path, shape):
    import orjson
    loads = orjson.loads
    req, mp = new_state()
    req_get, mp_get, nb = req.get, mp.get, len(BUCKETS)
    n = bad = 0
    with open(path, "rb", buffering=READ_BUFFER) as f:
        if shape == "simple":
            for line in f:
                n += 1
                try:
                    d = loads(line)
                    model, provider = d["model"], d["provider"]
                    k = (model, provider, "failure" if d["level"] == "ERROR" else "success")
                    lat = d["latency_ms"] / 1000
                    tok = d.get("tokens")
                    if tok is not None:
                        p, c, t = tok["prompt"], tok["completion"], tok["total"]
                    else:
                        p = c = t = 0
                except PARSE_ERRORS:
                    bad += 1
                    continue
                req[k] = req_get(k, 0) + 1
                k = (model, provider)
                s = mp_get(k)
                if s is None:
                    s = mp[k] = [[0] * nb, 0.0, 0, 0, 0]
                s[0][bisect_left(BUCKETS, lat)] += 1
                s[1] += lat
                s[2] += p
                s[3] += c
                s[4] += t
        else:
            for line in f:
                n += 1
                try:
                    d = loads(line)
                    model, provider = d["model"], d["custom_llm_provider"]
                    k = (model, provider, d["status"])
                    lat = d["response_time"]
                    p, c, t = d["prompt_tokens"], d["completion_tokens"], d["total_tokens"]
                except PARSE_ERRORS:
                    bad += 1
                    continue
                req[k] = req_get(k, 0) + 1
                k = (model, provider)
                s = mp_get(k)
                if s is None:
                    s = mp[k] = [[0] * nb, 0.0, 0, 0, 0]
                s[0][bisect_left(BUCKETS, lat)] += 1
                s[1] += lat
                s[2] += p
                s[3] += c
                s[4] += t
    return n, bad, scrape(req, mp)


def stage_f(path, shape):
    import msgspec
    decode = msgspec.json.Decoder(msgspec_types()[shape]).decode
    n = bad = 0
    with open(path, "rb", buffering=READ_BUFFER) as f:
        for line in f:
            n += 1
            try:
                decode(line)
            except (msgspec.DecodeError, ValueError):
                bad += 1
    return n, bad, None


def _agg_msgspec_records(records, shape, req, mp):
    """Optimized aggregation over msgspec Structs (loop inlined per shape)."""
    req_get, mp_get, nb = req.get, mp.get, len(BUCKETS)
    if shape == "simple":
        for r in records:
            model, provider = r.model, r.provider
            k = (model, provider, "failure" if r.level == "ERROR" else "success")
            req[k] = req_get(k, 0) + 1
            k = (model, provider)
            s = mp_get(k)
            if s is None:
                s = mp[k] = [[0] * nb, 0.0, 0, 0, 0]
            lat = r.latency_ms / 1000
            s[0][bisect_left(BUCKETS, lat)] += 1
            s[1] += lat
            tok = r.tokens
            if tok is not None:
                s[2] += tok.prompt
                s[3] += tok.completion
                s[4] += tok.total
    else:
        for r in records:
            model, provider = r.model, r.provider
            k = (model, provider, r.status)
            req[k] = req_get(k, 0) + 1
            k = (model, provider)
            s = mp_get(k)
            if s is None:
                s = mp[k] = [[0] * nb, 0.0, 0, 0, 0]
            lat = r.latency_s
            s[0][bisect_left(BUCKETS, lat)] += 1
            s[1] += lat
            s[2] += r.prompt_tokens
            s[3] += r.completion_tokens
            s[4] += r.total_tokens


def stage_g(path, shape):
    import msgspec
    decode = msgspec.json.Decoder(msgspec_types()[shape]).decode
    req, mp = new_state()
    n = bad = 0

    def records(f):
        nonlocal n, bad
        for line in f:
            n += 1
            try:
                yield decode(line)
            except (msgspec.DecodeError, ValueError):
                bad += 1

    with open(path, "rb", buffering=READ_BUFFER) as f:
        _agg_msgspec_records(records(f), shape, req, mp)
    return n, bad, scrape(req, mp)


def stage_h(path, shape):
    import msgspec
    dec = msgspec.json.Decoder(msgspec_types()[shape])
    req, mp = new_state()
    n = bad = 0
    tail = b""
    with open(path, "rb", buffering=0) as f:
        while True:
            chunk = f.read(CHUNK)
            if not chunk:
                break
            buf = tail + chunk if tail else chunk
            cut = buf.rfind(b"\n") + 1
            tail = buf[cut:]
            if cut:
                n, bad = _decode_chunk(dec, buf[:cut], shape, req, mp, n, bad)
        if tail:
            n, bad = _decode_chunk(dec, tail + b"\n", shape, req, mp, n, bad)
    return n, bad, scrape(req, mp)


def _decode_chunk(dec, data, shape, req, mp, n, bad):
    import msgspec
    try:
        recs = dec.decode_lines(data)
    except (msgspec.DecodeError, ValueError):  # one bad line fails the chunk: redo line by line
        recs = []
        for line in data.splitlines():
            if not line.strip():
                continue
            try:
                recs.append(dec.decode(line))
            except (msgspec.DecodeError, ValueError):
                n += 1
                bad += 1
    _agg_msgspec_records(recs, shape, req, mp)
    return n + len(recs), bad


# Modules each stage needs; imported before the timer starts (import time is not throughput).
_OP, _MP = ("orjson", "prometheus_client"), ("msgspec", "prometheus_client")
STAGE_IMPORTS = {"a": (), "b": ("orjson",), "c": ("orjson",), "d": _OP, "d2": _OP, "e": _OP,
                 "e2": _OP, "f": ("msgspec",), "g": _MP, "h": _MP}

STAGE_FUNCS = {"a": stage_a, "b": stage_b, "c": stage_c, "d": stage_d, "d2": stage_d2,
               "e": stage_e, "e2": stage_e2, "f": stage_f, "g": stage_g, "h": stage_h}


def strip_created(expo: bytes) -> bytes:
    return b"".join(l for l in expo.splitlines(keepends=True) if b"_created" not in l)


def vm_hwm_kb() -> int:
    """Peak RSS of this process image from /proc (cross-check for getrusage ru_maxrss, which
    on Linux also carries the spawning parent's peak across fork+exec)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def worker(stage: str, shape: str, path: str, dump_dir: str | None, gc_off: bool = False) -> dict:
    import gc
    import importlib
    for mod in STAGE_IMPORTS[stage]:
        importlib.import_module(mod)
    if "prometheus_client" in STAGE_IMPORTS[stage]:
        importlib.import_module("prometheus_client.core")
    if gc_off:
        gc.disable()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0, c0 = time.perf_counter(), time.process_time()
    n, bad, expo = STAGE_FUNCS[stage](path, shape)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    out = {"stage": stage, "shape": shape, "gc": not gc_off, "records": n, "bad": bad, "wall_s": wall,
           "cpu_s": cpu, "rss_start_mb": rss0 / 1024,
           "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "vm_hwm_mb": vm_hwm_kb() / 1024}
    if expo is not None:
        body = strip_created(expo)
        out["expo_sha256"] = hashlib.sha256(body).hexdigest()
        out["expo_series"] = sum(1 for l in body.splitlines() if l and not l.startswith(b"#"))
        if dump_dir:
            os.makedirs(dump_dir, exist_ok=True)
            with open(os.path.join(dump_dir, f"{shape}-{stage}.prom"), "wb") as fh:
                fh.write(expo)
    return out


# --------------------------------------------------------------------------- driver
def run_worker(stage, shape, path, dump_dir, gc_off=False):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", stage, "--shape", shape,
           "--file", path]
    if gc_off:
        cmd.append("--gc-off")
    if dump_dir:
        cmd += ["--dump-dir", dump_dir]
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise SystemExit(f"worker {stage} failed:\n{p.stderr}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def summarize(results, path, shape):
    size = os.path.getsize(path)
    rows = {}
    for stage, runs in results.items():
        walls = sorted(r["wall_s"] for r in runs)
        med = statistics.median(walls)
        n = runs[0]["records"]
        rows[stage] = {
            "stage": stage, "what": STAGES[stage], "records": n, "bad": runs[0]["bad"],
            "runs": len(runs), "wall_s": walls,
            "wall_med_s": med, "cpu_med_s": statistics.median(r["cpu_s"] for r in runs),
            "rps_med": n / med, "rps_min": n / walls[-1], "rps_max": n / walls[0],
            "mbps_med": size / 1e6 / med, "us_per_rec": med / n * 1e6,
            "rss_peak_mb": max(r["rss_peak_mb"] for r in runs),
            "vm_hwm_mb": max(r["vm_hwm_mb"] for r in runs),
            "rss_start_mb": statistics.median(r["rss_start_mb"] for r in runs),
            "expo_sha256": runs[0].get("expo_sha256"),
            "expo_series": runs[0].get("expo_series"),
            "expo_consistent": len({r.get("expo_sha256") for r in runs}) == 1,
        }
    return {"file": path, "shape": shape, "bytes": size, "python": sys.version.split()[0],
            "gc": all(r.get("gc", True) for runs in results.values() for r in runs),
            "stages": rows}


def fmt_table(summary) -> str:
    rows = summary["stages"]
    base = rows.get("a")
    ref = rows.get("d", {}).get("expo_sha256")
    lines = [
        f"shape={summary['shape']} file={summary['file']} ({summary['bytes'] / 1e6:.1f} MB, "
        f"{next(iter(rows.values()))['records']} lines) python {summary['python']}"
        f"{'' if summary['gc'] else ' gc=off'}",
        "",
        "| stage | what | records/s median (min-max) | MB/s | us/rec | time x a | peak RSS MB (getrusage / VmHWM) | exposition |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for st in STAGES:
        if st not in rows:
            continue
        r = rows[st]
        rel = f"{r['wall_med_s'] / base['wall_med_s']:.2f}" if base else "-"
        if r["expo_sha256"] is None:
            ex = "-"
        elif ref is None:
            ex = r["expo_sha256"][:12]
        else:
            ok = r["expo_sha256"] == ref and r["expo_consistent"]
            ex = ("== d" if ok else "MISMATCH") + f" ({r['expo_series']} series)"
        lines.append(
            f"| {st} | {r['what']} | {r['rps_med']:,.0f} ({r['rps_min']:,.0f}-{r['rps_max']:,.0f}) "
            f"| {r['mbps_med']:.1f} | {r['us_per_rec']:.2f} | {rel} "
            f"| {r['rss_peak_mb']:.1f} / {r['vm_hwm_mb']:.1f} | {ex} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="LiteLLM log -> Prometheus throughput floors")
    ap.add_argument("--shape", choices=("simple", "slp"), required=True)
    ap.add_argument("--file", required=True, help="JSON-lines file from gen_logs.py")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--stages", default=",".join(STAGES),
                    help=f"comma list from {','.join(STAGES)} (default: all)")
    ap.add_argument("--json-out", help="write full results (all runs) as JSON here")
    ap.add_argument("--dump-dir", help="write each metrics stage's exposition text here")
    ap.add_argument("--gc-off", action="store_true",
                    help="gc.disable() in the workers before timing (experiment)")
    ap.add_argument("--worker", choices=tuple(STAGES), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        print(json.dumps(worker(args.worker, args.shape, args.file, args.dump_dir, args.gc_off)))
        return 0

    stages = [s for s in args.stages.split(",") if s]
    unknown = set(stages) - set(STAGES)
    if unknown:
        ap.error(f"unknown stages {sorted(unknown)}")
    # Warm the page cache so stage a measures the in-memory floor, not the disk. Small reads
    # keep this driver's RSS low: Linux getrusage(RUSAGE_SELF).ru_maxrss in a spawned worker
    # starts from the parent's peak RSS, so a fat driver would inflate every worker's number.
    with open(args.file, "rb", buffering=0) as f:
        while f.read(1 << 20):
            pass
    results = {s: [] for s in stages}
    for rep in range(args.repeat):
        for s in stages:  # round-robin: noise hits all stages alike
            r = run_worker(s, args.shape, args.file, args.dump_dir, args.gc_off)
            results[s].append(r)
            print(f"[rep {rep + 1}/{args.repeat}] {args.shape} {s:>2}: {r['wall_s']:7.2f}s "
                  f"{r['records'] / r['wall_s']:>12,.0f} rec/s  rss {r['rss_peak_mb']:.0f} MB",
                  file=sys.stderr, flush=True)
    summary = summarize(results, args.file, args.shape)
    print(fmt_table(summary))
    if args.json_out:
        os.makedirs(os.path.dirname(os.path.abspath(args.json_out)), exist_ok=True)
        with open(args.json_out, "w") as fh:
            json.dump(summary, fh, indent=1)
    bad = [s for s in METRIC_STAGES if s in summary["stages"] and "d" in summary["stages"]
           and summary["stages"][s]["expo_sha256"] != summary["stages"]["d"]["expo_sha256"]]
    if bad:
        print(f"EXPOSITION MISMATCH vs d: {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
