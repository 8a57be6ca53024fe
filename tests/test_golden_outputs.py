"""Guard: `logmetrics replay` output stays byte-identical across refactors and optimisations.

Each case replays fixed inputs and compares, exactly, with files under fixtures/golden/:
- NAME.prom: the `--metrics-out` exposition (`_created` lines removed, none are expected);
- NAME.json: the `--json` summary (the per-model table data);
- NAME.om (some cases): the `--openmetrics-out` backfill.

A deliberate change of output (a parity fix, a new family) regenerates them:

    LOGMETRICS_REGEN_GOLDEN=1 pytest tests/test_golden_outputs.py

then review `git diff fixtures/golden` before committing. This is not a parity test (that is
tests/test_golden.py against LiteLLM's own /metrics): it pins whatever logmetrics produces now.
"""

from __future__ import annotations

import difflib
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from logmetrics.cli import app

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "fixtures" / "sample-logs"
GOLDEN = ROOT / "fixtures" / "golden"
REGEN = os.environ.get("LOGMETRICS_REGEN_GOLDEN") == "1"
_PROM, _JSON, _OM = ".prom", ".json", ".om"

# name -> (inputs relative to fixtures/sample-logs, extra replay options, outputs compared)
CASES: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "requests-runA": (("litellm-1.109.1/requests-runA.jsonl",), (), (_PROM, _JSON, _OM)),
    "standard-logging": (("litellm-1.109.1/standard-logging.jsonl",), (), (_PROM, _JSON)),
    "standard-logging-end-user": (
        ("litellm-1.109.1/standard-logging.jsonl",), ("--end-user-label",), (_PROM, _JSON)
    ),
    "proxy-stdout": (("litellm-1.109.1/proxy-stdout.log",), (), (_PROM, _JSON)),
    "callback-requests": (("litellm-1.109.1-callback/requests.log",), (), (_PROM, _JSON)),
    "generated-simple": (("generated/simple-1k.jsonl",), (), (_PROM, _JSON, _OM)),
    "generated-slp": (("generated/slp-40.jsonl",), (), (_PROM, _JSON, _OM)),
    "generated-slp-by-deployment": (("generated/slp-40.jsonl",), ("--by", "deployment"), (_JSON,)),
    # a tiny cardinality cap: the overflow series and logmetrics_series_dropped_total
    "generated-slp-overflow": (("generated/slp-40.jsonl",), ("--max-series", "7"), (_PROM, _JSON)),
    "all-mixed": (
        ("litellm-1.109.1/requests-runA.jsonl", "litellm-1.109.1/proxy-stdout.log",
         "litellm-1.109.1-callback/requests.log", "generated/simple-1k.jsonl"),
        (),
        (_PROM, _JSON),
    ),
}


def strip_created(text: bytes) -> bytes:
    return b"".join(line for line in text.splitlines(keepends=True) if b"_created" not in line)


def replay_outputs(inputs: tuple[str, ...], options: tuple[str, ...], tmp: Path,
                   wanted: tuple[str, ...]) -> dict[str, bytes]:
    prom, om_path = tmp / "out.prom", tmp / "out.om"
    args = ["replay", *(str(SAMPLES / p) for p in inputs), "--metrics-out", str(prom), "--json", *options]
    if _OM in wanted:
        args += ["--openmetrics-out", str(om_path)]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = {_PROM: strip_created(prom.read_bytes()), _JSON: result.stdout_bytes}
    if _OM in wanted:
        out[_OM] = strip_created(om_path.read_bytes())
    return {suffix: out[suffix] for suffix in wanted}


@pytest.mark.parametrize("name", sorted(CASES))
def test_replay_matches_golden(name: str, tmp_path: Path) -> None:
    inputs, options, wanted = CASES[name]
    outputs = replay_outputs(inputs, options, tmp_path, wanted)
    for suffix, got in outputs.items():
        golden = GOLDEN / f"{name}{suffix}"
        if REGEN:
            GOLDEN.mkdir(parents=True, exist_ok=True)
            golden.write_bytes(got)
            continue
        assert golden.exists(), f"{golden} missing: LOGMETRICS_REGEN_GOLDEN=1 pytest {__file__}"
        want = golden.read_bytes()
        if got != want:
            diff = difflib.unified_diff(
                want.decode(errors="replace").splitlines(), got.decode(errors="replace").splitlines(),
                "golden", "now", n=0, lineterm="",
            )
            pytest.fail(
                f"{name}{suffix} differs from {golden.relative_to(ROOT)} ({len(want)} vs {len(got)} bytes):\n"
                + "\n".join(itertools.islice(diff, 40))
            )


@pytest.mark.parametrize(("option", "suffix"), [("--metrics-out", _PROM), ("--openmetrics-out", _OM)])
def test_replay_writes_dash_to_stdout(option: str, suffix: str, tmp_path: Path) -> None:
    """`-` is stdout, as for the input: the golden output there, the summary on stderr, no file named `-`."""
    done = subprocess.run(
        [sys.executable, "-m", "logmetrics", "replay", str(SAMPLES / "generated/simple-1k.jsonl"), option, "-"],
        cwd=tmp_path, capture_output=True, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert strip_created(done.stdout) == (GOLDEN / f"generated-simple{suffix}").read_bytes()
    assert b"LiteLLM requests per model" in done.stderr
    assert not (tmp_path / "-").exists()


@pytest.mark.parametrize("options", [("--metrics-out", "-", "--json"),
                                     ("--metrics-out", "-", "--openmetrics-out", "-")])
def test_replay_refuses_two_outputs_on_stdout(options: tuple[str, ...], tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "logmetrics", "replay", str(SAMPLES / "generated/simple-1k.jsonl"), *options],
        cwd=tmp_path, capture_output=True, check=False,
    )
    assert done.returncode == 2
    assert done.stdout == b""
    assert done.stderr.decode().strip().splitlines() == [
        f"logmetrics: only one of {', '.join(o for o in options if o.startswith('--'))} can write to stdout"
    ]
    assert not (tmp_path / "-").exists()
