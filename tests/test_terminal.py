"""The CLI in the environments real terminals and shells give it: stdout in an encoding that cannot
hold a label (LC_ALL=C with PYTHONUTF8=0, PYTHONIOENCODING=ascii/latin-1), stdout on a full device,
closed (`>&-`), or a pipe whose reader has gone (`| head -1`), and labels a client chose (CJK, emoji,
combining marks, bidi overrides, escape sequences). Never a traceback; stdout is the product."""

from __future__ import annotations

import copy
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from logmetrics.aggregate import Aggregator
from logmetrics.cli import app
from logmetrics.parse import Parser
from logmetrics.view import TableFooter, live_display, live_table, printable, summary_table

ROOT = Path(__file__).resolve().parent.parent
RECORDS = ROOT / "fixtures" / "sample-logs" / "litellm-1.109.1-callback" / "requests.log"
TIMEOUT = 30
FULL = os.path.exists("/dev/full")

NAMES = [
    "模型-中文-テスト",  # CJK: two cells each
    "gpt-🚀-4o",  # emoji
    "e\u0301e\u0301-model",  # combining marks
    "\u202eroot\u202c-مرحبا",  # a bidi override, RTL
    "gpt\u200b-4o",  # zero width
    "x\u001b[2J\u001b]0;title\u0007",  # escape sequences
    "L" * 500,
]


def hostile_log(tmp_path: Path) -> Path:
    """Real LiteLLM records (a success and a failure) whose names are NAMES."""
    records = [json.loads(line) for line in RECORDS.read_text().splitlines()]
    bases = [next(r for r in records if r["hook"] == hook) for hook in ("success", "failure")]
    out = []
    for name in NAMES:
        for base in bases:
            r = copy.deepcopy(base)
            p = r["payload"]
            p["model_group"], p["model"], r["facts"]["model"] = name, "openai/" + name, name
            r["facts"]["original_model_group"] = name
            p["metadata"]["user_agent"] = p["metadata"]["user_api_key_team_alias"] = name
            out.append(json.dumps(r))
    out.append(out[0].replace("gpt-4o-mini", "lone\\ud800surrogate"))
    path = tmp_path / "hostile.log"
    path.write_text("\n".join(out) + "\n")
    return path


def logmetrics(*args: str, env: dict[str, str] | None = None, **kw: object) -> subprocess.CompletedProcess[bytes]:
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **kw}
    return subprocess.run([sys.executable, "-m", "logmetrics", *args], cwd=ROOT, timeout=TIMEOUT,
                          env={**os.environ, **(env or {})}, **pipes)  # type: ignore[call-overload]


ENCODINGS = [{"PYTHONIOENCODING": "ascii"}, {"PYTHONIOENCODING": "latin-1"},
             {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONIOENCODING": ""}]


@pytest.mark.parametrize("env", ENCODINGS, ids=["ascii", "latin-1", "C-no-utf8-mode"])
def test_non_utf8_stdout_never_raises(tmp_path: Path, env: dict[str, str]) -> None:
    log = str(hostile_log(tmp_path))
    for args in (["replay", log], ["tail", "--no-follow", "-n", "all", log],
                 ["tail", "--no-follow", "-n", "all", "--table", log], ["replay", "--help"], ["tail", "--help"]):
        done = logmetrics(*args, env={"COLUMNS": "100", **env})
        assert done.returncode == 0 and b"Traceback" not in done.stderr, (args, done.stderr[-300:])
        assert b"\x1b" not in done.stdout
    table = logmetrics("tail", "--no-follow", "-n", "all", "--table", log, env={"COLUMNS": "100", **env})
    lines = [x for x in table.stdout.decode("latin-1").splitlines() if "|" in x]
    assert len(lines) >= len(NAMES) + 2
    assert len({tuple(m.start() for m in re.finditer(r"\|", x)) for x in lines}) == 1, "\n".join(lines)


class _Ascii(io.StringIO):
    encoding = "ascii"  # what rich reads of a stdout


def test_tables_measure_what_the_encoding_shows() -> None:
    """On an ascii stdout a CJK name is written `?` a character (cli.py): rich must measure that,
    not two cells a character, or every column after the name moves."""
    agg = Aggregator()
    parser = Parser()
    first = RECORDS.read_text().splitlines()[0]
    for name in NAMES:
        agg.add(parser.parse(first.replace("gpt-4o-mini", json.dumps(name)[1:-1]).encode()))
    for renderable in (summary_table(agg, encoding="ascii"),
                       live_table(agg, footer=TableFooter("app.log"), now=agg.newest_time)):
        console = Console(file=_Ascii(), width=100, color_system=None)
        console.print(renderable)
        text = console.file.getvalue().replace("\u2026", "?")  # type: ignore[attr-defined]
        text.encode("ascii")
        lines = [x for x in text.splitlines() if x.count("|") > 2]
        assert len(lines) > len(NAMES)
        assert len({tuple(m.start() for m in re.finditer(r"\|", x)) for x in lines}) == 1, text


def test_bidi_controls_never_reach_the_terminal() -> None:
    for control in ("\u202e", "\u202d", "\u2066", "\u2067", "\u2068", "\u2069", "\u200e", "\u200f", "\u061c"):
        assert control not in printable(f"a{control}b")
    assert printable("模型 gpt-🚀 e\u0301") == "模型 gpt-🚀 e\u0301"  # printable text is kept as it is
    log_line = RECORDS.read_text().splitlines()[0].replace("gpt-4o-mini", "\\u202eroot")
    shown = subprocess.run([sys.executable, "-m", "logmetrics", "tail", "--no-follow", "-n", "1", "-"], cwd=ROOT,
                           input=log_line.encode(), capture_output=True, timeout=TIMEOUT).stdout.decode()
    assert "?root -> ?root" in shown and "\u202e" not in shown


@pytest.mark.skipif(not FULL, reason="needs /dev/full")
@pytest.mark.parametrize("args", [["replay", "{log}"], ["replay", "--json", "{log}"], ["--help"], ["replay", "--help"],
                                  ["tail", "--help"], ["tail", "--no-follow", "-n", "all", "--table", "{log}"]])
def test_full_stdout_is_one_line(args: list[str]) -> None:
    argv = [a.format(log=RECORDS) for a in args]
    with open("/dev/full", "wb") as full:
        done = logmetrics(*argv, stdout=full)
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines()[-1] == b"logmetrics: cannot write to stdout: No space left on device"
    assert b"Traceback" not in done.stderr


@pytest.mark.skipif(not FULL, reason="needs /dev/full")
@pytest.mark.parametrize("option", ["--metrics-out", "--openmetrics-out"])
def test_full_output_file_is_one_line(option: str) -> None:
    done = logmetrics("replay", option, "/dev/full", str(RECORDS))
    assert done.returncode == 1
    assert done.stderr == b"logmetrics: cannot write /dev/full: No space left on device\n"


@pytest.mark.parametrize("args", [["replay", "--json", "{log}"], ["tail", "--no-follow", "-o", "json", "{log}"],
                                  ["replay", "{log}"], ["--help"]])
def test_closed_stdout(args: list[str]) -> None:
    argv = [sys.executable, "-m", "logmetrics", *(a.format(log=RECORDS) for a in args)]
    done = subprocess.run(["bash", "-c", 'exec "$@" >&-', "_", *argv], cwd=ROOT, capture_output=True, timeout=TIMEOUT)
    assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize("args", [["replay", "{log}"], ["replay", "--metrics-out", "-", "{log}"]])
def test_closed_stderr(args: list[str]) -> None:
    """Python leaves sys.stderr None; the summary (or the metrics) still reach stdout whole."""
    argv = [sys.executable, "-m", "logmetrics", *(a.format(log=RECORDS) for a in args)]
    done = subprocess.run(["bash", "-c", 'exec "$@" 2>&-', "_", *argv], cwd=ROOT, capture_output=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout[-300:]
    last = b"\nlogmetrics_last_record_timestamp_seconds " if "-" in args else b"\n total "
    assert last in done.stdout and done.stdout.endswith(b"\n"), done.stdout[-300:]


@pytest.mark.parametrize("args", [["--help"], ["tail", "--help"]])
def test_help_into_a_pipe_whose_reader_has_gone(args: list[str]) -> None:
    p = subprocess.Popen([sys.executable, "-m", "logmetrics", *args], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stderr is not None
    p.stdout.close()  # before it writes: `| head -0`
    assert p.wait(TIMEOUT) == 0
    assert p.stderr.read() == b""
    p.stderr.close()


@pytest.mark.skipif(not FULL, reason="needs /dev/full")
def test_following_table_on_a_gone_pipe_or_a_full_device_stops(tmp_path: Path) -> None:
    """The snapshots are written by another thread than the follower's: a write error there used to
    kill only that thread (a traceback on stderr), and `tail --table | head -1` followed forever."""
    log = tmp_path / "requests.log"
    log.write_bytes(RECORDS.read_bytes())
    argv = [sys.executable, "-m", "logmetrics", "tail", "--table", "--interval", "0.1", str(log)]
    p = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stderr is not None
    p.stdout.readline()
    p.stdout.close()
    assert p.wait(TIMEOUT) == 0 and p.stderr.read() == b""
    p.stderr.close()
    started = time.monotonic()
    with open("/dev/full", "wb") as full:
        done = subprocess.run(argv, cwd=ROOT, stdout=full, stderr=subprocess.PIPE, timeout=TIMEOUT)
    assert done.returncode == 1 and time.monotonic() - started < TIMEOUT
    assert done.stderr == b"logmetrics: cannot write to stdout: No space left on device\n"


def test_live_display_on_a_dumb_terminal_prints_snapshots() -> None:
    """TERM=dumb (Emacs shell, some CI consoles): a terminal that cannot move the cursor. rich's Live
    draws nothing there until it stops, so `tail --table` showed nothing until Ctrl-C."""
    out = io.StringIO()
    console = Console(file=out, width=80, color_system=None, force_terminal=True, force_interactive=False)
    shown = iter(range(1, 1000))
    with live_display(console, lambda: f"snapshot {next(shown)}", interval=0.05):
        deadline = time.monotonic() + TIMEOUT
        while out.getvalue().count("snapshot") < 2:
            assert time.monotonic() < deadline, out.getvalue()
            time.sleep(0.01)
    assert "\x1b" not in out.getvalue()


@pytest.mark.parametrize("columns", ["20", "40", "60"])
def test_replay_summary_on_a_narrow_terminal_cuts_nothing(columns: str) -> None:
    """Below ~80 columns rich cut every number to `1…` and dropped the model column: the summary is
    the product. It is now printed at the width its numbers need (the terminal wraps the lines)."""
    samples = str(ROOT / "fixtures" / "sample-logs")
    wide = CliRunner().invoke(app, ["replay", samples], env={"COLUMNS": "80"})
    narrow = CliRunner().invoke(app, ["replay", samples], env={"COLUMNS": columns})
    assert narrow.exit_code == 0 and "…" not in narrow.stdout
    assert narrow.stdout == wide.stdout


@pytest.mark.parametrize("cmd", [[], ["replay"], ["tail"], ["serve"], ["state"], ["state", "show"], ["state", "reset"],
                                 ["litellm-callback"]])
def test_help_at_80_columns_cuts_no_word(cmd: list[str]) -> None:
    """typer cuts a help word longer than its column with `…` (at 80 columns the help column of
    `replay --help` is ~28 wide): `enable_end_user_cost_trackin…` said nothing."""
    done = logmetrics(*cmd, "--help", env={"COLUMNS": "80", "NO_COLOR": "1"})
    assert done.returncode == 0, done.stderr
    assert "…" not in done.stdout.decode(), done.stdout.decode()
