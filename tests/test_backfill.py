"""`replay --openmetrics-out` is accepted by the real promtool, and the real Prometheus answers
queries over the backfilled history with the archive's totals."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from prom import backfill, prometheus_running, promtool

SAMPLES = Path(__file__).resolve().parent.parent / "fixtures" / "sample-logs" / "litellm-1.109.1"
pytestmark = pytest.mark.real


def openmetrics(tmp_path: Path, *extra: str, inputs: tuple[Path, ...] = (SAMPLES / "requests-runA.jsonl",)) -> Path:
    """`replay INPUTS --openmetrics-out` (the real sample by default): the output's path."""
    out = tmp_path / "history.om"
    proc = subprocess.run([sys.executable, "-m", "logmetrics", "replay", *map(str, inputs),
                           "--openmetrics-out", str(out), "--json", *extra], capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()
    return out


def test_openmetrics_output_is_well_formed(tmp_path: Path) -> None:
    text = openmetrics(tmp_path, "--step", "10s").read_text()
    assert text.endswith("# EOF\n")
    samples = [line for line in text.splitlines() if not line.startswith("#")]
    assert samples and all(len(line.rsplit(" ", 2)) == 3 for line in samples)  # name{..} value ts
    stamps = sorted({float(line.rsplit(" ", 1)[1]) for line in samples})
    assert len(stamps) >= 3 and all(b - a == pytest.approx(10.0) for a, b in zip(stamps, stamps[1:], strict=False))
    # every family's header appears once, before its samples
    types = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert len(types) == len(set(types))


def test_promtool_accepts_and_prometheus_returns_the_totals(tmp_path: Path) -> None:
    om = openmetrics(tmp_path, "--step", "10s")
    data = tmp_path / "data"
    backfill(om, data)
    records = [json.loads(line) for line in (SAMPLES / "requests-runA.jsonl").read_text().splitlines()]
    expected = Counter(r["payload"]["model_group"] or "other" for r in records)
    last = max(r["time"] for r in records)
    with prometheus_running(tmp_path / "prom", data_dir=data, retention="100y") as prom:
        at = last + 20
        got = {s.labels.get("requested_model", ""): s.value for s in
               prom.query("sum by (requested_model) (litellm_proxy_total_requests_metric_total)", at=at)}
        assert got == {k: float(v) for k, v in expected.items()}
        failures = prom.query("sum(litellm_proxy_failed_requests_metric_total)", at=at)
        assert [s.value for s in failures] == [float(sum(1 for r in records if r["hook"] == "failure"))]
        # history, not just the end: before the first record there is nothing
        first = min(r["time"] for r in records)
        assert prom.query("sum(litellm_proxy_total_requests_metric_total)", at=first - 30) == []


def test_no_sample_after_until(tmp_path: Path) -> None:
    """`--until` is where live scraping began (docs/prometheus-grafana.md): the last snapshot, which
    holds every record before it, is stamped at --until when the next step boundary is later, so
    the backfilled and scraped series never overlap."""
    records = [json.loads(line) for line in (SAMPLES / "requests-runA.jsonl").read_text().splitlines()]
    times = sorted(r["time"] for r in records)
    until = int(times[len(times) // 2]) + 1  # half the records before it
    assert until % 60 and times[0] < until < times[-1]  # off the step's boundaries
    om = openmetrics(tmp_path, "--step", "60s", "--until", str(until))
    samples = [line.rsplit(" ", 2) for line in om.read_text().splitlines() if not line.startswith("#")]
    assert max(float(stamp) for _, _, stamp in samples) <= until
    last = {name: float(value) for name, value, _ in samples if name == "logmetrics_records_read_total"}
    assert last == {"logmetrics_records_read_total": float(sum(1 for t in times if t < until))}
    assert promtool("tsdb", "create-blocks-from", "openmetrics", om, tmp_path / "d").returncode == 0


def test_promtool_rejects_what_it_should(tmp_path: Path) -> None:
    """The check above can fail: promtool refuses a file without # EOF."""
    bad = tmp_path / "bad.om"
    bad.write_text(openmetrics(tmp_path).read_text().replace("# EOF\n", ""))
    done = promtool("tsdb", "create-blocks-from", "openmetrics", bad, tmp_path / "d")
    assert done.returncode != 0


def shifted_log(path: Path, times: list[float]) -> Path:
    """The capture's first success, once at each of `times` (its own times moved along)."""
    records = [json.loads(line) for line in (SAMPLES / "requests-runA.jsonl").read_text().splitlines()]
    success = next(r for r in records if r["hook"] == "success")
    lines = []
    for t in times:
        r = json.loads(json.dumps(success))
        shift, r["time"] = t - r["time"], t
        for key in ("startTime", "endTime", "completionStartTime"):
            r["payload"][key] += shift
        lines.append(json.dumps(r))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_two_hosts_logs_are_stamped_at_their_own_times(tmp_path: Path) -> None:
    """`replay host-a/requests.log host-b/requests.log --openmetrics-out`: each request lands at its
    own time. The files used to be read one after the other, and snapshots only go forward, so all of
    host b's requests were stamped at the end of host a's last step."""
    base = 1_795_000_020.0
    a = shifted_log(tmp_path / "host-a" / "requests.log", [base + 5, base + 3605, base + 7205])
    b = shifted_log(tmp_path / "host-b" / "requests.log", [base + 1805, base + 5405, base + 9005])
    om = openmetrics(tmp_path, inputs=(a, b))
    data = tmp_path / "data"
    backfill(om, data)
    with prometheus_running(tmp_path / "prom", data_dir=data, retention="100y") as prom:
        for n, t in enumerate(sorted([base + 5, base + 3605, base + 7205, base + 1805, base + 5405, base + 9005])):
            assert prom.value("sum(litellm_proxy_total_requests_metric_total)", at=t - 5 + 60) == n + 1, t


def test_requests_after_a_quiet_spell_show_in_rate_and_increase(tmp_path: Path) -> None:
    """A request that follows half an hour without traffic is counted by increase() over a window
    around it, as a scrape of `serve` would have counted it. The backfill used to write only one
    sample per boundary passed: the one before that request was half an hour old, outside the
    window, so increase() over the next 5 minutes said nothing had happened."""
    base = 1_795_000_020.0  # a boundary of the 60 s step
    times = [base + 5 + i for i in range(5)] + [base + 1805.0, base + 3605.0]  # a burst, then one each half hour
    log = shifted_log(tmp_path / "requests.log", times)
    om = openmetrics(tmp_path, inputs=(log,))
    data = tmp_path / "data"
    backfill(om, data)
    expr = "sum(increase(litellm_proxy_total_requests_metric_total[5m]))"
    with prometheus_running(tmp_path / "prom", data_dir=data, retention="100y") as prom:
        for t in (base + 1805.0, base + 3605.0):  # each lone request, seen from the end of its step
            got = prom.value(expr, at=t - 5 + 60)
            assert got is not None and 0.9 <= got <= 2.0, (t, got)  # 1, extrapolated by Prometheus
        # the last request, from the end: the total so far
        assert prom.value("sum(litellm_proxy_total_requests_metric_total)", at=base + 3660) == float(len(times))


def test_label_values_with_carriage_returns_and_line_separators(tmp_path: Path) -> None:
    """LiteLLM exposes `end_user` unsanitised, so a raw CR or U+2028 can sit in a label value (the text
    formats only escape LF). The backfill cut its snapshot into lines with str.splitlines(), which
    also splits there: the timestamp landed mid-value and promtool refused the whole file."""
    base = 1_795_000_020.0
    log = shifted_log(tmp_path / "requests.log", [base + 5, base + 65, base + 125])
    users = ["cr\rhere", "sep\u2028here", 'ünï "q" \\ 模型']
    lines = []
    for line, user in zip(log.read_text().splitlines(), users, strict=True):
        r = json.loads(line)
        r["payload"]["end_user"] = r["facts"]["end_user"] = user
        lines.append(json.dumps(r))
    log.write_text("\n".join(lines) + "\n")
    om = openmetrics(tmp_path, inputs=(log,))
    data = tmp_path / "data"
    backfill(om, data)
    with prometheus_running(tmp_path / "prom", data_dir=data, retention="100y") as prom:
        got = {s.labels["end_user"]: s.value for s in
               prom.query("sum by (end_user) (litellm_proxy_total_requests_metric_total)", at=base + 180)}
        assert got == dict.fromkeys(users, 1.0)
