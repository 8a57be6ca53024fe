"""Golden tests against the real LiteLLM 1.109.1 run A: replaying its records reproduces
LiteLLM's own /metrics (metrics-runA.txt), and every container replay reads gives the same totals."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from parity import compare, load

from logmetrics.sources.archive import expand

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "fixtures" / "sample-logs" / "litellm-1.109.1"
LITELLM_METRICS = SAMPLES / "metrics-runA.txt"
sys.path.insert(0, str(ROOT / "fixtures"))
import make_fixtures  # noqa: E402


def replay(tmp_path: Path, *inputs: Path | str, extra: tuple[str, ...] = ()) -> tuple[Path, dict]:
    out = tmp_path / "replay.prom"
    proc = subprocess.run(
        [sys.executable, "-m", "logmetrics", "replay", *map(str, inputs), "--metrics-out", str(out), "--json",
         *extra],
        capture_output=True, check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"Traceback" not in proc.stderr
    return out, json.loads(proc.stdout)


def family_report(ours: Path) -> tuple[dict[str, str], dict[str, int]]:
    report, totals = compare(load(str(LITELLM_METRICS)), load(str(ours)), show=50)
    status = {}
    for line in report:
        if line.startswith(("ok ", "FAIL ")):
            verdict, family = line.split()[:2]
            status[family.rstrip(":")] = verdict
    return status, totals


# The only series LiteLLM has and run A's records cannot: two 401s on LiteLLM's own /metrics
# endpoint (a scraper without the bearer key). LiteLLM's exporter counts them from the post-call
# failure hook; they reach no deployment, so the payload logger of run A never saw them. The
# logmetrics callback records that hook (test_litellm_e2e.py checks it on a live proxy).
HOOK_ONLY = {"litellm_proxy_total_requests_metric", "litellm_proxy_failed_requests_metric"}


def test_callback_records_reproduce_litellm_metrics(tmp_path: Path) -> None:
    out, summary = replay(tmp_path, SAMPLES / "requests-runA.jsonl")
    status, totals = family_report(out)
    assert {f for f, v in status.items() if v != "ok"} == HOOK_ONLY
    assert totals["missing"] == 4 and totals["differ"] == 0 and totals["extra"] == 0
    missing = [line for line in compare(load(str(LITELLM_METRICS)), load(str(out)), show=50)[0]
               if line.strip().startswith("missing")]
    assert len(missing) == 4 and all('route="/metrics' in m and "401" in m for m in missing)
    assert summary["records"] == 31 and summary["skipped"] == {}


# From bare payloads (no callback facts) the counts, spend, tokens and deployment families are
# still exact; what the payload cannot give:
PAYLOAD_ONLY_DIFFERENCES = {
    # kwargs start_time (routing included) and queue time are not in the payload
    "litellm_request_total_latency_metric",
    # no API-call start in the payload: measured from the payload's startTime
    "litellm_llm_api_latency_metric",
    "litellm_llm_api_time_to_first_token_metric",
    # queue_time_seconds is not in the payload: no observations
    "litellm_request_queue_time_seconds",
    # the /metrics 401s (above)
    *HOOK_ONLY,
}


def test_payload_only_is_as_close_as_the_payload_allows(tmp_path: Path) -> None:
    out, _ = replay(tmp_path, SAMPLES / "standard-logging.jsonl")
    status, _ = family_report(out)
    assert {f for f, v in status.items() if v != "ok"} == PAYLOAD_ONLY_DIFFERENCES
    text = out.read_text()
    # request counts per requested model and status agree with LiteLLM even there
    ours = load(str(out))["litellm_proxy_total_requests_metric"][1]
    theirs = load(str(LITELLM_METRICS))["litellm_proxy_total_requests_metric"][1]
    assert sum(ours.values()) == sum(v for k, v in theirs.items() if "/metrics" not in str(k)) == 31
    assert "messages" not in text and "hello" not in text


def test_archives_give_the_same_totals(tmp_path: Path) -> None:
    plain, plain_summary = replay(tmp_path, SAMPLES / "requests-runA.jsonl")
    expected = plain.read_bytes()
    gz, gz_summary = replay(tmp_path, SAMPLES / "requests-runA.jsonl.gz")
    assert gz.read_bytes() == expected and gz_summary["models"] == plain_summary["models"]


@pytest.mark.real
def test_journal_file_gives_the_same_totals(tmp_path: Path) -> None:
    if shutil.which("journalctl") is None or make_fixtures.journal_remote() is None:
        pytest.fail("journalctl and systemd-journal-remote are needed (Debian: systemd, systemd-journal-remote)")
    plain, plain_summary = replay(tmp_path, SAMPLES / "requests-runA.jsonl")
    lines = (SAMPLES / "requests-runA.jsonl").read_bytes().splitlines()
    journal = make_fixtures.make_journal(lines, tmp_path / "requests.journal")
    out, summary = replay(tmp_path, journal)
    # the LiteLLM families are byte for byte the same; only logmetrics' own byte counters differ
    litellm_lines = [x for x in out.read_text().splitlines() if x.startswith("litellm_")]
    assert litellm_lines == [x for x in plain.read_text().splitlines() if x.startswith("litellm_")]
    assert summary["models"] == plain_summary["models"] and summary["records"] == 31


def test_rotated_set_is_read_oldest_first(tmp_path: Path) -> None:
    """Backfill timestamps only make sense oldest first: check the order on a rotated set."""
    lines = (SAMPLES / "requests-runA.jsonl").read_bytes().splitlines(keepends=True)
    parts = [lines[0:8], lines[8:16], lines[16:24], lines[24:]]
    (tmp_path / "requests.log.3.gz").write_bytes(gzip.compress(b"".join(parts[0])))
    (tmp_path / "requests.log.2.gz").write_bytes(gzip.compress(b"".join(parts[1])))
    (tmp_path / "requests.log.1").write_bytes(b"".join(parts[2]))
    (tmp_path / "requests.log").write_bytes(b"".join(parts[3]))
    shuffled = [str(tmp_path / n) for n in ("requests.log", "requests.log.2.gz", "requests.log.1",
                                               "requests.log.3.gz")]
    assert [Path(p).name for p in expand(shuffled)] == [
        "requests.log.3.gz", "requests.log.2.gz", "requests.log.1", "requests.log"]
    assert [Path(p).name for p in expand([str(tmp_path / "requests.log*")])][0] == "requests.log.3.gz"
    _, summary = replay(tmp_path, str(tmp_path / "requests.log*"))
    assert summary["records"] == 31
