#!/usr/bin/env python3
# ruff: noqa
# Copied from shared/tools/parity.py so the tests do not depend on ../shared; changed since: these lines, and the
# four families logmetrics added later (images, video, provider cache read and creation) in FAMILIES.
"""Compare two Prometheus text expositions: LiteLLM's own /metrics and logmetrics', restricted to the
per-request families a request log can feed (LiteLLM 1.109.1 names, see ../reference/prometheus-metrics.md).

Usage: parity.py LITELLM.txt LOGMETRICS.txt [--title NAME] [--show N]

For every family in LiteLLM's exposition: every (sample name, labelset) must exist in logmetrics' with an
equal value. Counters, gauges, _bucket and _count samples must be equal exactly; a counter whose value is
not an integer (spend) may differ by 1e-12 relative, the noise of adding the same floats in another order;
_sum samples within 1e-6 relative (1e-9 absolute near 0). _created samples are ignored. Series that
logmetrics has and LiteLLM lacks, in those families, are reported and break parity too, as does a family
whose TYPE differs. Prints a per-family report and, last, one line:
    parity: 29/31 families exact, 3 series missing, 1 value differs, 0 extra series
Exit 0 only on full parity; 1 when anything differs; 2 when an exposition cannot be read.
"""
import argparse
import math
import sys

from prometheus_client.parser import text_string_to_metric_families

# Base family names as prometheus_client's parser reports them (counters without their _total suffix).
FAMILIES = (
    "litellm_proxy_total_requests_metric",
    "litellm_proxy_failed_requests_metric",
    "litellm_requests_metric",
    "litellm_llm_api_failed_requests_metric",
    "litellm_spend_metric",
    "litellm_total_tokens_metric",
    "litellm_input_tokens_metric",
    "litellm_output_tokens_metric",
    "litellm_input_cached_tokens_metric",
    "litellm_input_cache_creation_tokens_metric",
    "litellm_input_audio_tokens_metric",
    "litellm_output_reasoning_tokens_metric",
    "litellm_output_audio_tokens_metric",
    "litellm_video_duration_seconds_metric",
    "litellm_images_generated_metric",
    "litellm_request_total_latency_metric",
    "litellm_llm_api_latency_metric",
    "litellm_llm_api_time_to_first_token_metric",
    "litellm_request_queue_time_seconds",
    "litellm_overhead_latency_metric",
    "litellm_deployment_success_responses",
    "litellm_deployment_total_requests",
    "litellm_deployment_failure_responses",
    "litellm_deployment_latency_per_output_token",
    "litellm_deployment_state",
    "litellm_cache_hits_metric",
    "litellm_cache_misses_metric",
    "litellm_cached_tokens_metric",
    "litellm_provider_cache_read_input_tokens_metric",
    "litellm_provider_cache_creation_input_tokens_metric",
    "litellm_zero_cost_requests",
)

SUM_REL, SUM_ABS, FLOAT_COUNTER_REL = 1e-6, 1e-9, 1e-12


def family_key(name):
    """The parser keeps `_total` on a counter family whose TYPE line has no `_total`-less form; normalise."""
    return name[:-6] if name.endswith("_total") else name


def load(path):
    """{family: (type, {(sample_name, frozenset(labels)): value})} for the target families."""
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    out = {}
    for fam in text_string_to_metric_families(text):
        if fam.name.endswith("_created"):
            continue
        key = family_key(fam.name)
        if key not in FAMILIES:
            continue
        _, series = out.setdefault(key, (fam.type, {}))
        for s in fam.samples:
            if s.name.endswith("_created"):
                continue
            series[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def equal(sample_name, a, b):
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if sample_name.endswith("_sum"):
        return abs(a - b) <= max(SUM_ABS, SUM_REL * max(abs(a), abs(b)))
    if a == b:
        return True
    if sample_name.endswith("_total") and not (float(a).is_integer() and float(b).is_integer()):
        return abs(a - b) <= FLOAT_COUNTER_REL * max(abs(a), abs(b))
    return False


def fmt_labels(labels, only=None):
    items = sorted(labels)
    if only is not None:
        items = [(k, v) for k, v in items if k in only]
    return "{" + ",".join(f'{k}="{v}"' for k, v in items) + "}"


def nearest(key, candidates):
    """The candidate series (same sample name) whose labels differ least from key's, and the differing names."""
    name, labels = key
    want = dict(labels)
    best, best_diff = None, None
    for cname, clabels in candidates:
        if cname != name:
            continue
        have = dict(clabels)
        diff = {k for k in set(want) | set(have) if want.get(k) != have.get(k)}
        if best_diff is None or len(diff) < len(best_diff):
            best, best_diff = (cname, clabels), diff
    return best, best_diff


def describe_missing(key, other_keys, this="LiteLLM", other="logmetrics"):
    name, labels = key
    near, diff = nearest(key, other_keys)
    line = f"{name}{fmt_labels(labels)}"
    if near is not None and diff and len(diff) <= 4:
        have, want = dict(near[1]), dict(labels)
        line += f"\n         nearest {other} series differs in: " + ", ".join(
            f'{k}: {this} "{want.get(k, "<absent>")}", {other} "{have.get(k, "<absent>")}"' for k in sorted(diff))
    return line


def compare(lit, lm, show):
    report, totals = [], {"missing": 0, "differ": 0, "extra": 0, "exact": 0, "type": 0}
    for fam in FAMILIES:
        ltype, lseries = lit.get(fam, (None, {}))
        mtype, mseries = lm.get(fam, (None, {}))
        if fam not in lit:
            # LiteLLM registers every one of these families; absence means a different version or a
            # disabled metric. Nothing to match, but logmetrics must not invent series for it either.
            if mseries:
                totals["extra"] += len(mseries)
                report.append(f"FAIL {fam}: absent from LiteLLM's exposition, logmetrics has {len(mseries)} series")
            else:
                totals["exact"] += 1
                report.append(f"ok   {fam}: absent from both")
            continue
        missing = [k for k in lseries if k not in mseries]
        differ = [k for k in lseries if k in mseries and not equal(k[0], lseries[k], mseries[k])]
        extra = [k for k in mseries if k not in lseries]
        type_bad = mtype is not None and mtype != ltype
        totals["missing"] += len(missing)
        totals["differ"] += len(differ)
        totals["extra"] += len(extra)
        totals["type"] += int(type_bad)
        nseries = len({frozenset((k, v) for k, v in labels if k != "le") for _, labels in lseries})
        if not (missing or differ or extra or type_bad):
            totals["exact"] += 1
            report.append(f"ok   {fam}: {nseries} series, {len(lseries)} samples equal"
                          + ("" if lseries else " (no samples on either side)"))
            continue
        head = f"FAIL {fam}: {len(lseries)} LiteLLM samples ({nseries} series); "
        head += f"{len(missing)} missing, {len(differ)} differ, {len(extra)} extra"
        if type_bad:
            head += f"; TYPE {mtype!r} where LiteLLM has {ltype!r}"
        if fam not in lm:
            head += "; family absent from logmetrics"
        report.append(head)
        for k in sorted(missing)[:show]:
            report.append("     missing " + describe_missing(k, list(mseries)))
        if len(missing) > show:
            report.append(f"     ... {len(missing) - show} more missing")
        for k in sorted(differ, key=lambda k: (k[0].endswith("_bucket"), k))[:show]:
            report.append(f"     differs {k[0]}{fmt_labels(k[1])}: LiteLLM {lseries[k]!r}, logmetrics {mseries[k]!r}")
        if len(differ) > show:
            report.append(f"     ... {len(differ) - show} more differ")
        for k in sorted(extra)[:show]:
            report.append("     extra   " + describe_missing(k, list(lseries), "logmetrics", "LiteLLM"))
        if len(extra) > show:
            report.append(f"     ... {len(extra) - show} more extra")
    return report, totals


def plural(n, one, many):
    return f"{n} {one if n == 1 else many}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("litellm")
    ap.add_argument("logmetrics")
    ap.add_argument("--title", default="")
    ap.add_argument("--show", type=int, default=3, help="examples shown per kind per family")
    a = ap.parse_args()
    prefix = f"parity{'[' + a.title + ']' if a.title else ''}"
    try:
        lit = load(a.litellm)
    except Exception as e:  # noqa: BLE001 - one clear line instead of a traceback
        print(f"{prefix}: cannot read LiteLLM's exposition {a.litellm}: {type(e).__name__}: {e}")
        return 2
    try:
        lm = load(a.logmetrics)
    except Exception as e:  # noqa: BLE001
        print(f"{prefix}: cannot parse logmetrics' exposition {a.logmetrics}: {type(e).__name__}: {e}")
        print(f"{prefix}: 0/{len(FAMILIES)} families exact, exposition unreadable")
        return 2
    report, t = compare(lit, lm, a.show)
    if a.title:
        print(f"== {a.title}")
    print("\n".join(report))
    line = (f"{prefix}: {t['exact']}/{len(FAMILIES)} families exact, {plural(t['missing'], 'series', 'series')} missing, "
            f"{plural(t['differ'], 'value differs', 'values differ')}, {plural(t['extra'], 'extra series', 'extra series')}")
    if t["type"]:
        line += f", {plural(t['type'], 'TYPE mismatch', 'TYPE mismatches')}"
    print(line)
    return 0 if t["exact"] == len(FAMILIES) else 1


if __name__ == "__main__":
    sys.exit(main())
