"""The `logmetrics` command (typer). The only place that prints errors and exits.

stdout is data (tables, JSON, exposition); stderr is for people. Exit codes: 0 success,
1 runtime failure, 2 usage error (a bad option, a path that does not exist).
"""

from __future__ import annotations

import errno
import importlib
import io
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path
from typing import Annotated, Any, NoReturn

import msgspec
import typer
import typer.main
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from typer.core import TyperGroup

from logmetrics import __version__
from logmetrics.aggregate import Aggregator
from logmetrics.errors import LogmetricsError, UsageError
from logmetrics.export import OpenMetricsBackfill, write_exposition
from logmetrics.parallel import jobs_default
from logmetrics.parse import DEFAULT_MAX_LINE_BYTES, Parser, epoch
from logmetrics.pipeline import Filters, Ingest, replay
from logmetrics.slp import InvalidTime
from logmetrics.sources.archive import ReadStats
from logmetrics.view import skipped_line, skipped_summary, summary_rows, summary_table, summary_width


def _lazy_command(module: str, attr: str, name: str) -> Callable[[], Any]:
    """A command whose module is imported only when the command runs or help lists it."""

    def load() -> Any:  # a click Command (typer's own click, vendored or not)
        obj = getattr(importlib.import_module(module), attr)
        holder = typer.Typer(add_completion=False)
        holder.callback()(lambda: None)  # a group, whatever it holds: its command is taken out
        if isinstance(obj, typer.Typer):
            holder.add_typer(obj, name=name)
        else:
            holder.command(name)(obj)
        return typer.main.get_command(holder).commands[name]  # type: ignore[attr-defined]

    return load


# `serve` and `tail` pull in the HTTP server, prometheus_client and the followers: a quarter of a
# second and ~10 MB that `replay` does not need (see bench/README.md)
_LAZY: dict[str, Callable[[], Any]] = {
    "serve": _lazy_command("logmetrics.serve", "serve_cmd", "serve"),
    "tail": _lazy_command("logmetrics.tail", "tail_cmd", "tail"),
    "state": _lazy_command("logmetrics.serve", "state_app", "state"),
}


class _LazyGroup(TyperGroup):
    def list_commands(self, ctx: Any) -> list[str]:
        names = super().list_commands(ctx)
        return names + [n for n in _LAZY if n not in names]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in _LAZY and cmd_name not in self.commands:
            self.add_command(_LAZY[cmd_name](), cmd_name)
        return super().get_command(ctx, cmd_name)


app = typer.Typer(
    cls=_LazyGroup,
    name="logmetrics",
    help="Turn LiteLLM proxy request logs into Prometheus metrics (LiteLLM's own names and labels) "
    "and terminal views.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"logmetrics: {message}", markup=False)
    raise SystemExit(code)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"logmetrics {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """logmetrics: LiteLLM request records -> Prometheus metrics and live tables."""


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_when(text: str | None, option: str) -> float | None:
    """`15m` (that long ago), an ISO time (no zone = local), or epoch seconds."""
    if text is None:
        return None
    m = _DURATION.match(text.strip())
    if m:
        return time.time() - float(m.group(1)) * _UNIT[m.group(2)]
    try:
        return epoch(text)
    except InvalidTime:
        raise UsageError(f"{option} {text!r}: give a duration like 15m or 2h, an ISO time or epoch seconds") from None


def parse_step(text: str) -> float:
    """Seconds between backfill snapshots: from 1 ms (Prometheus keeps milliseconds; promtool keeps
    one of two samples in the same one) to 365 days (beyond, snapshots land in far years)."""
    m = _DURATION.match(text.strip())
    try:
        value = float(m.group(1)) * _UNIT[m.group(2)] if m else float(text)
    except ValueError:
        raise UsageError(f"--step {text!r}: give seconds or a duration like 60s or 5m") from None
    if not 0.001 <= value <= 365 * 86400:  # NaN too
        raise UsageError(f"--step {text!r}: give a step from 0.001 (seconds) to 365d")
    return value


_PROBLEMS_SHOWN = 10  # unreadable files named on stderr after a replay
MAX_LINE_HELP = "Longest line accepted, in bytes; longer lines are skipped and counted (too_long)."
# no word longer than ~28 characters in option help: typer cuts it with "…" at 80 columns
# (the setting is LiteLLM's enable_end_user_cost_tracking_prometheus_only, named in README.md)
END_USER_HELP = (
    "Fill the end_user label from payload-only records, as LiteLLM does when its end-user cost "
    "tracking for Prometheus is on (records from logmetrics' callback carry the setting)."
)
MAX_SERIES_HELP = ("Cardinality cap: distinct label sets kept before new ones are folded into an overflow "
                   "series (and counted by family in the metric of dropped series).")


class ReplayProgress:
    """A transient progress bar on stderr (only when it is a terminal) for replays that last more
    than `after` seconds: records read, MB/s, and an ETA when the input size is known."""

    def __init__(self, console: Console, after: float = 1.0) -> None:
        self.console, self.after = console, after
        self.started = time.monotonic()
        self.bar: Progress | None = None
        self.task: TaskID | None = None

    def __enter__(self) -> ReplayProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def __call__(self, stats: ReadStats, total: int, records: int) -> None:
        if self.bar is None:
            if time.monotonic() - self.started < self.after:
                return
            self.bar = Progress(
                TextColumn("replay"), BarColumn(), TextColumn("{task.fields[records]:>12,} records"),
                TransferSpeedColumn(), TimeRemainingColumn(), console=self.console, transient=True,
            )
            self.task = self.bar.add_task("replay", total=total or None, records=0)
            self.bar.start()
        assert self.task is not None
        self.bar.update(self.task, completed=stats.bytes_read, records=records)


@app.command("replay")
def replay_cmd(
    paths: Annotated[list[str], typer.Argument(
        help="Files, globs, directories, .gz .bz2 .xz archives, journald .journal files, or - for stdin. "
        "Rotated sets are read oldest first.", show_default=False, metavar="PATH...")],
    metrics_out: Annotated[Path | None, typer.Option(
        "--metrics-out", help="Write the final state as Prometheus text exposition (what /metrics "
        "would serve after reading the same records); - for stdout (the summary then goes to stderr).",
        show_default=False)] = None,
    openmetrics_out: Annotated[Path | None, typer.Option(
        "--openmetrics-out", help="Write OpenMetrics with per-sample timestamps from the records' own "
        "times, one snapshot every --step, for `promtool tsdb create-blocks-from openmetrics`; - for stdout.",
        show_default=False)] = None,
    step: Annotated[str, typer.Option("--step", help="Sample step of --openmetrics-out: seconds (0.001 "
                                      "and up) or a duration like 30s, 5m, 1h, 1d (up to 365d).")] = "60s",
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout "
                                           "instead of a table.")] = False,
    model: Annotated[list[str] | None, typer.Option(
        "--model", help="Only records whose requested model, model group or deployment matches this "
        "glob (repeatable), e.g. --model 'gpt-4o*'.", show_default=False)] = None,
    since: Annotated[str | None, typer.Option(
        "--since", help="Only records at or after this time: 15m, 2h, 7d (ago) or an ISO time.",
        show_default=False)] = None,
    until: Annotated[str | None, typer.Option(
        "--until", help="Only records before this time (same forms as --since).", show_default=False)] = None,
    by: Annotated[str, typer.Option("--by", help="Summary rows per requested `model` or per `deployment`.")
                  ] = "model",
    end_user: Annotated[bool, typer.Option("--end-user-label", help=END_USER_HELP)] = False,
    max_line: Annotated[int, typer.Option("--max-line-bytes", help=MAX_LINE_HELP)] = DEFAULT_MAX_LINE_BYTES,
    max_series: Annotated[int, typer.Option(
        "--max-series", help=MAX_SERIES_HELP)] = 10_000,
    jobs: Annotated[int, typer.Option(
        "--jobs", "-j", help="Processes reading inputs of 32 MB and more (0: one per CPU it may use, cgroup CPU "
        "quota included; each holds its own state: --jobs 1 uses least memory). Any number gives the same output; "
        "--openmetrics-out, stdin and pipes are read by one.", min=0)] = 0,
) -> None:
    """Process archived LiteLLM logs offline: a per-model summary, and metrics Prometheus can load.

    Example: logmetrics replay /var/log/litellm/requests.log* --metrics-out final.prom
    """
    if by not in ("model", "deployment"):
        raise UsageError("--by takes model or deployment")
    if max_series < 1 or max_line < 1:  # as serve: 0 would fold every model into overflow, or skip every line
        raise UsageError("--max-series and --max-line-bytes must be positive")
    to_stdout = [name for name, path in (("--metrics-out", metrics_out), ("--openmetrics-out", openmetrics_out))
                 if path is not None and str(path) == "-"]
    if len(to_stdout) + json_out > 1:
        names = [*to_stdout, "--json"] if json_out else to_stdout
        raise UsageError(f"only one of {', '.join(names)} can write to stdout")
    filters = Filters(models=model or [], since=parse_when(since, "--since"), until=parse_when(until, "--until"))
    step_seconds = parse_step(step)
    agg = Aggregator(max_series=max_series, by=by, rates=False)  # a summary: no live rates
    with _writing(openmetrics_out), ExitStack() as stack:
        backfill = None
        if openmetrics_out is not None:
            out = stack.enter_context(_create(openmetrics_out))
            backfill = OpenMetricsBackfill(out, step_seconds, filters.until)
        ingest = Ingest(agg, Parser(max_line_bytes=max_line, end_user_label=end_user), filters, backfill)
        progress = stack.enter_context(ReplayProgress(err)) if err.is_terminal else None
        stats = replay(paths, ingest, progress, jobs or jobs_default())
    if metrics_out is not None:
        with _writing(metrics_out), _create(metrics_out) as f:
            write_exposition(agg, f)
    if json_out:
        doc = {"models": summary_rows(agg), "records": agg.records, "skipped": skipped_summary(agg),
               "files": stats.files, "bytes": stats.bytes_read}
        sys.stdout.buffer.write(msgspec.json.encode(doc) + b"\n")
    else:
        out = err if to_stdout else Console(highlight=False)  # stdout holds the metrics
        table = summary_table(agg, encoding=out.encoding)
        # narrower than the numbers need (COLUMNS=40, a split pane): lines wrap, nothing is cut
        out.width = max(out.width, summary_width(table))
        out.print(table)
        err.print(skipped_line(agg), markup=False)
    for path, why in list(stats.problems.items())[:_PROBLEMS_SHOWN]:
        err.print(f"logmetrics: {path}: not read to the end: {why}", markup=False)
    if stats.unreadable:
        err.print(f"{stats.unreadable} file(s) could not be read to the end", markup=False)
    _leave()


@app.command("litellm-callback")
def litellm_callback_cmd() -> None:
    """Print the LiteLLM callback module (one self-contained file: standard library + litellm).

    Save it next to LiteLLM's config.yaml as logmetrics_callback.py and enable it with
    litellm_settings: callbacks: ["logmetrics_callback.proxy_handler_instance"], when logmetrics is not
    installed in LiteLLM's environment. Installed, use "logmetrics.litellm_callback.proxy_handler_instance".
    """
    from logmetrics import litellm_callback

    sys.stdout.buffer.write(Path(litellm_callback.__file__).read_bytes())




def _create(path: Path):  # type: ignore[no-untyped-def]
    if str(path) == "-":  # stdout, left open
        return nullcontext(sys.stdout.buffer)
    try:
        return open(path, "wb")
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror}") from None


@contextmanager
def _writing(path: Path | None) -> Iterator[None]:
    """A full disk while writing `path` (--metrics-out, --openmetrics-out) is one line, exit 1."""
    try:
        yield
    except OSError as e:
        if path is None or e.errno not in _FULL:
            raise
        raise LogmetricsError(f"cannot write {path}: {e.strerror}") from None


_own_process = False  # the process is the command's own (script()): it may end it at once (see _leave)


def _leave() -> None:
    """End a finished replay's process at once, output flushed: freeing its state object by object
    takes a fifth of a second at 10k series, and nothing needs it (mypy ends the same way). Only
    when the process is the command's own (`script`): main() called in-process returns as usual."""
    if _own_process:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:  # None: closed (`2>&-`)
                stream.flush()
        os._exit(0)


def _interrupted(signum: int, frame: object) -> None:
    """Ctrl-C: stop quietly with exit 0 (click would print "Aborted!" and exit 1)."""
    raise SystemExit(0)


_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # write errors only: a full disk or device


def _quiet_stdout() -> None:
    """fd 1 to /dev/null: the interpreter's last flush of what is still buffered stays silent."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno() if sys.stdout is not None else 1)


def _streams() -> None:
    """stdout as every command may write to it, whatever the environment:
    - closed (`>&-`): Python leaves sys.stdout None (an AttributeError at the first write); fd 1 is
      pointed at /dev/null (so no file opened later lands there) and output is discarded, as when
      the reader of a pipe has gone;
    - an encoding that cannot hold a label (LC_ALL=C with PYTHONUTF8=0, PYTHONIOENCODING=ascii or
      latin-1): a CJK model name or rich's box and ellipsis characters would raise
      UnicodeEncodeError; they are written as `?` instead."""
    if sys.stdout is None:
        _quiet_stdout()
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", write_through=True)
    out = sys.stdout
    if isinstance(out, io.TextIOWrapper) and out.errors in ("strict", "surrogateescape"):
        utf8 = out.encoding.lower().replace("-", "") == "utf8"
        if not (utf8 and out.errors == "surrogateescape"):  # surrogateescape: a file name's bytes as given
            out.reconfigure(errors="replace")


def script() -> None:
    """The `logmetrics` command and `python -m logmetrics`: main() in a process of its own."""
    global _own_process
    _own_process = True
    main()


def main() -> None:
    signal.signal(signal.SIGINT, _interrupted)  # serve and tail install their own while they run
    _streams()
    try:
        app(standalone_mode=True)
    except UsageError as e:
        fail(str(e), 2)
    except LogmetricsError as e:
        fail(str(e), 1)
    except KeyboardInterrupt:
        raise SystemExit(0) from None
    except BrokenPipeError:
        _quiet_stdout()
        raise SystemExit(0) from None
    except SystemExit as e:
        # rich (help, tables) and click end a write to a closed pipe with exit 1 (`--help | head -1`):
        # the reader has gone, which is not an error
        if e.code == 1 and isinstance(e.__context__, BrokenPipeError):
            _quiet_stdout()
            raise SystemExit(0) from None
        raise
    except OSError as e:  # stdout on a full disk or device (`> /dev/full`): one line, not a traceback
        if e.errno not in _FULL:
            raise
        _quiet_stdout()
        fail(f"cannot write to stdout: {e.strerror}")
