"""bench/run.py still runs end to end (a few hundred records, one repetition), so it does not rot.
The numbers mean nothing at this size; see bench/README.md for real runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_quick(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--workdir", str(tmp_path), "--json-out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| target | measured | ratio | met |" in proc.stdout
    result = json.loads(out.read_text())
    assert result["runs"]["replay simple"]["records"] == 400
    assert len(result["runs"]["replay slp"]["walls"]) == 1
    assert result["scrape"] and result["scrape"][0]["series"] > 0 and len(result["scrape"][0]["om_walls"]) >= 1
    assert [n for n, _, _ in result["rss_scaling"]] == [300, 600]
    # the replay's exposition is complete
    prom = (tmp_path / "simple.prom").read_text()
    assert "litellm_proxy_total_requests_metric_total{" in prom
    assert "logmetrics_records_read_total 400.0" in prom


def test_serve_latency_quick(tmp_path: Path) -> None:
    """bench/serve_latency.py still runs end to end against a real `logmetrics serve` (seconds)."""
    out = tmp_path / "serve.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "serve_latency.py"), "--quick", "--json-out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    (row,) = result["rates"]
    assert row["records"] == 50 and 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]
    assert result["records_read_total"] == 50 + 2000
    assert result["vmhwm_kb"] > 0 and result["idle_cpu_percent"] >= 0
