"""logmetrics.litellm_callback on its own (no LiteLLM needed): it never raises into its caller, keeps
prompts, responses, headers and keys out of the log by default, writes whole lines with O_APPEND,
reopens a rotated file, and imports nothing outside the standard library (plus litellm, guarded).

The same callback inside a real LiteLLM proxy: tests/test_litellm_e2e.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import json
import logging
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from logmetrics import litellm_callback as cb

REPO = Path(__file__).resolve().parent.parent

CANARY_PROMPT = "CANARY-PROMPT-1111"
CANARY_RESPONSE = "CANARY-RESPONSE-2222"
CANARY_HEADER = "CANARY-HEADER-3333"
CANARY_KEY = "sk-CANARY-RAWKEY-4444"
CANARY_TRACE = "CANARY-TRACEBACK-5555"
CANARY_PRICE = "CANARY-MODELMAP-6666"
CANARY_TOOL = "CANARY-TOOLARGS-7777"
ALL_CANARIES = (CANARY_PROMPT, CANARY_RESPONSE, CANARY_HEADER, CANARY_KEY, CANARY_TRACE, CANARY_PRICE, CANARY_TOOL)


class RateLimitError(Exception):
    """Shaped like litellm.RateLimitError for the label helpers."""

    status_code = 429
    llm_provider = "openai"


def slp() -> dict[str, Any]:
    """A StandardLoggingPayload-shaped dict with a canary in every place that must not be logged."""
    return {
        "id": "chatcmpl-1",
        "litellm_call_id": "call-1",
        "call_type": "acompletion",
        "stream": None,
        "status": "success",
        "custom_llm_provider": "openai",
        "model": "openai/gpt-4o-mini",
        "model_group": "gpt-4o-mini",
        "model_id": "abc",
        "api_base": "",
        "startTime": 1795449215.826747,
        "endTime": 1795449215.886928,
        "completionStartTime": 1795449215.886928,
        "prompt_tokens": 10,
        "completion_tokens": 20,
        "total_tokens": 30,
        "response_cost": 1.35e-05,
        "cache_hit": None,
        "request_tags": ["team-a"],
        "end_user": "alice",
        "messages": [{"role": "user", "content": CANARY_PROMPT}],
        "response": {"choices": [{"message": {"content": CANARY_RESPONSE}}], "service_tier": "default"},
        "error_str": CANARY_PROMPT,
        "model_map_information": {"model_map_key": "gpt-4o-mini", "model_map_value": {"key": CANARY_PRICE}},
        "model_parameters": {"temperature": 0.1, "stream": False, "user": CANARY_PROMPT},
        "guardrail_information": {"guardrail_response": CANARY_RESPONSE},
        "vector_store_request_metadata": [{"query": CANARY_PROMPT}],
        "standard_built_in_tools_params": {"web_search_options": {"user_location": CANARY_PROMPT}},
        "metadata": {
            "user_api_key_hash": "litellm_proxy_master_key",
            "user_api_key_user_id": "default_user_id",
            "requester_ip_address": "127.0.0.1",
            "user_agent": "ua/1.0",
            "requester_metadata": {"headers": {"x-canary": CANARY_HEADER}, "api_key": CANARY_KEY},
            "requester_custom_headers": {"x-canary": CANARY_HEADER},
            "user_api_key_auth_metadata": {"note": CANARY_KEY},
            "spend_logs_metadata": {"prompt": CANARY_PROMPT},
            "prompt_management_metadata": {"prompt_variables": {"v": CANARY_PROMPT}},
            "mcp_tool_call_metadata": {"arguments": {"a": CANARY_TOOL}, "result": CANARY_RESPONSE},
            "routing_decision": {"classifier_input": CANARY_PROMPT},
            "usage_object": {"prompt_tokens": 10, "completion_tokens": 20},
        },
        "hidden_params": {
            "litellm_overhead_time_ms": None,
            "additional_headers": {"x-canary": CANARY_HEADER, "llm_provider-authorization": CANARY_KEY},
        },
        "error_information": {"error_code": "", "error_class": "", "traceback": CANARY_TRACE},
        "response_cost_failure_debug_info": {"error_str": "x", "traceback_str": CANARY_TRACE},
    }


def kwargs(**over: Any) -> dict[str, Any]:
    t0 = dt.datetime(2026, 11, 23, 15, 0, 0, 123456)
    kw: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "stream": False,
        "start_time": t0,
        "end_time": t0 + dt.timedelta(milliseconds=80),
        "api_call_start_time": t0 + dt.timedelta(milliseconds=5),
        "completion_start_time": t0 + dt.timedelta(milliseconds=80),
        "messages": [{"role": "user", "content": CANARY_PROMPT}],
        "litellm_params": {
            "custom_llm_provider": "openai",
            "api_key": CANARY_KEY,
            "metadata": {
                "queue_time_seconds": 0.004,
                "model_info": {"id": "abc"},
                "headers": {"authorization": "Bearer " + CANARY_KEY, "x-canary": CANARY_HEADER},
                "user_api_key": CANARY_KEY,
            },
            "proxy_server_request": {"headers": {"x-canary": CANARY_HEADER}, "body": {"messages": CANARY_PROMPT}},
        },
        "standard_logging_object": slp(),
        "original_response": CANARY_RESPONSE,
    }
    kw.update(over)
    return kw


def run_hooks(logger: cb.LogmetricsLogger) -> None:
    t0 = dt.datetime(2026, 11, 23, 15, 0, 0)
    t1 = t0 + dt.timedelta(seconds=1)
    exc = RateLimitError("rate limited")

    async def go() -> None:
        await logger.async_log_success_event(kwargs=kwargs(), response_obj=CANARY_RESPONSE, start_time=t0, end_time=t1)
        await logger.async_log_failure_event(
            kwargs=kwargs(exception=exc, traceback_exception=CANARY_TRACE),
            response_obj=None,
            start_time=t0,
            end_time=t1,
        )
        await logger.async_post_call_failure_hook(
            request_data={
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": CANARY_PROMPT}],
                "metadata": {"requester_ip_address": "127.0.0.1", "headers": {"x-canary": CANARY_HEADER}},
                "proxy_server_request": {"headers": {"x-canary": CANARY_HEADER}},
            },
            original_exception=exc,
            user_api_key_dict={"api_key": "hashed-key", "user_id": "u1", "token": CANARY_KEY},
            traceback_str=CANARY_TRACE,
        )

    asyncio.run(go())


def read_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def test_hook_parameter_names_are_litellms() -> None:
    """LiteLLM calls the hooks with keyword arguments: other names would raise TypeError inside it."""
    sig = inspect.signature
    logger = cb.LogmetricsLogger
    for name in ("async_log_success_event", "async_log_failure_event"):
        assert list(sig(getattr(logger, name)).parameters) == [
            "self",
            "kwargs",
            "response_obj",
            "start_time",
            "end_time",
        ]
    assert list(sig(logger.async_post_call_failure_hook).parameters) == [
        "self",
        "request_data",
        "original_exception",
        "user_api_key_dict",
        "traceback_str",
    ]
    assert isinstance(cb.proxy_handler_instance, cb.LogmetricsLogger)


def test_records_and_facts(tmp_path: Path) -> None:
    log = tmp_path / "requests.log"
    run_hooks(cb.LogmetricsLogger(path=str(log)))
    success, failure, hook = read_records(log)
    assert [r["hook"] for r in (success, failure, hook)] == ["success", "failure", "post_call_failure"]
    assert all(r["logmetrics_record"] == "request" and r["version"] == 1 for r in (success, failure, hook))
    f = success["facts"]
    assert f["model"] == "gpt-4o-mini" and f["stream"] is False
    assert f["start_time"] == "2026-11-23T15:00:00.123456" and f["hook_end_time"] == "2026-11-23T15:00:01.000000"
    assert f["queue_time_seconds"] == 0.004 and f["model_info_id"] == "abc"
    assert f["service_tier"] == "default"  # the served tier, kept although `response` is dropped
    assert success["payload"]["model_group"] == "gpt-4o-mini" and success["payload"]["total_tokens"] == 30
    assert success["payload"]["model_parameters"] == {"stream": False}
    ff = failure["facts"]
    assert ff["exception_class"] == "Openai.RateLimitError" and ff["exception_status"] == "429"
    assert ff["deployment_selected"] is True
    assert ff["deployment_state"] == {
        "litellm_model_name": "gpt-4o-mini",
        "model_id": "abc",
        "api_base": "",
        "api_provider": "openai",
    }
    labels = hook["labels"]
    assert labels["exception_class"] == "Openai.RateLimitError" and labels["status_code"] == "429"
    assert labels["hashed_api_key"] == "hashed-key" and labels["client_ip"] == "127.0.0.1"
    assert hook["payload"] is None


def test_nothing_sensitive_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cb.ENV_CONTENT, raising=False)
    log = tmp_path / "requests.log"
    run_hooks(cb.LogmetricsLogger(path=str(log)))
    data = log.read_text()
    for canary in ALL_CANARIES:
        assert canary not in data, canary


def test_content_opt_in_keeps_messages_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cb.ENV_CONTENT, "1")
    log = tmp_path / "requests.log"
    run_hooks(cb.LogmetricsLogger(path=str(log)))
    data = log.read_text()
    assert CANARY_PROMPT in data and CANARY_RESPONSE in data
    for canary in (CANARY_HEADER, CANARY_KEY, CANARY_TRACE, CANARY_PRICE, CANARY_TOOL):
        assert canary not in data, canary


def test_unwritable_path_never_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    logger = cb.LogmetricsLogger(path=str(blocker / "sub" / "requests.log"))  # parent is a regular file
    with caplog.at_level(logging.ERROR, logger="logmetrics.litellm_callback"):
        run_hooks(logger)
        run_hooks(logger)
    assert logger.write_errors == 6
    errors = [r for r in caplog.records if r.name == "logmetrics.litellm_callback"]
    assert len(errors) == 1 and "cannot write request records" in errors[0].getMessage()


def test_closed_descriptor_is_counted_then_reopened(tmp_path: Path) -> None:
    log = tmp_path / "requests.log"
    w = cb.RecordWriter(str(log), check_interval=3600)
    assert w.write_line(b'{"n":1}\n')
    assert w._fd is not None
    os.close(w._fd)  # pulled from under the writer
    assert w.write_line(b'{"n":2}\n') is False
    assert w.write_errors == 1
    assert w.write_line(b'{"n":3}\n')  # the next write opens the path again
    assert log.read_bytes() == b'{"n":1}\n\n{"n":3}\n'  # after an error, a newline first (a blank line)
    w.close()


def test_disk_full_mid_line_loses_only_that_line(tmp_path: Path) -> None:
    """A write cut short by a full disk (here the kernel's file size limit, which cuts a write the
    same way) leaves the file mid-line. Once there is room again the next record must not join that
    torn line (it would be lost with it); the outage is logged once, its end once with the count
    lost, and a second outage is logged again."""
    log = tmp_path / "requests.log"
    code = (
        "import logging, resource, signal, sys\n"
        "logging.basicConfig(format='%(levelname)s %(message)s')\n"
        "from logmetrics.litellm_callback import RecordWriter\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "w = RecordWriter(sys.argv[1])\n"
        'line = lambda n: b\'{"n":%d,"pad":"%s"}\\n\' % (n, b\'x\' * 3000)\n'
        "limit = lambda n: resource.setrlimit(resource.RLIMIT_FSIZE, (n, resource.RLIM_INFINITY))\n"
        "limit(8000)\n"  # room for two lines and part of a third
        "print([w.write_line(line(n)) for n in range(4)])\n"
        "limit(resource.RLIM_INFINITY)\n"  # space again
        "print([w.write_line(line(n)) for n in range(4, 6)])\n"
        "limit(w.lines_written)\n"  # full again at once: a second outage
        "print([w.write_line(line(6))])\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(log)], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:3] == ["[True, True, False, False]", "[True, True]", "[False]"]
    numbers, torn = [], 0
    for raw in log.read_bytes().splitlines():
        if raw.strip():
            try:
                numbers.append(json.loads(raw)["n"])
            except ValueError:
                torn += 1
    assert numbers == [0, 1, 4, 5] and torn == 1
    assert r.stderr.count("cannot write request records") == 2, r.stderr
    assert r.stderr.count("writing request records to " + str(log) + " again (2 records lost)") == 1, r.stderr


def test_fifo_without_a_reader_never_blocks(tmp_path: Path) -> None:
    """A FIFO at the log path that nobody reads: the write fails at once (counted) instead of blocking
    in open(), which inside LiteLLM stalls the proxy's event loop; once a reader has it open, records
    flow."""
    fifo = tmp_path / "requests.log"
    os.mkfifo(fifo)
    w = cb.RecordWriter(str(fifo))
    results: list[bool] = []
    t = threading.Thread(target=lambda: results.append(w.write_line(b'{"n":1}\n')), daemon=True)
    t.start()
    t.join(10)
    blocked = t.is_alive()
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader (it also frees a writer stuck in open)
    try:
        t.join(10)
        assert not blocked and results == [False] and w.write_errors == 1
        assert w.write_line(b'{"n":2}\n')
        assert os.read(reader, 100) == b'\n{"n":2}\n'
    finally:
        os.close(reader)
        w.close()


def test_closed_stdout_never_raises() -> None:
    code = (
        "import asyncio, os\n"
        "from logmetrics.litellm_callback import LogmetricsLogger\n"
        "os.close(1)\n"
        "lg = LogmetricsLogger(path='-')\n"
        "asyncio.run(lg.async_log_success_event(kwargs={'model': 'm'}, response_obj=None, start_time=None,"
        " end_time=None))\n"
        "assert lg.write_errors == 1, lg.write_errors\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "cannot write request records to -" in r.stderr


def test_garbage_inputs_never_raise(tmp_path: Path) -> None:
    log = tmp_path / "requests.log"
    logger = cb.LogmetricsLogger(path=str(log))

    class Weird:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError("no attributes here")

    async def go() -> None:
        for kw in (None, {}, {"standard_logging_object": "not a dict"}, {"litellm_params": Weird()}, Weird()):
            await logger.async_log_success_event(kwargs=kw, response_obj=None, start_time=None, end_time=None)
            await logger.async_log_failure_event(kwargs=kw, response_obj=None, start_time=1, end_time="x")
        await logger.async_post_call_failure_hook(
            request_data=None, original_exception=None, user_api_key_dict=None, traceback_str=None
        )
        await logger.async_post_call_failure_hook(
            request_data=Weird(), original_exception=Weird(), user_api_key_dict=Weird()
        )

    asyncio.run(go())
    assert logger.write_errors == 0
    assert len(read_records(log)) == 12


def test_stdout_lines(tmp_path: Path) -> None:
    code = (
        "import asyncio\n"
        "from logmetrics.litellm_callback import LogmetricsLogger\n"
        "lg = LogmetricsLogger(path='-')\n"
        "for i in range(3):\n"
        "    asyncio.run(lg.async_log_success_event(kwargs={'model': 'm%d' % i}, response_obj=None,"
        " start_time=None, end_time=None))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [json.loads(line)["facts"]["model"] for line in lines] == ["m0", "m1", "m2"]


def test_mode_0600_and_reopen_after_rotation(tmp_path: Path) -> None:
    log = tmp_path / "requests.log"
    w = cb.RecordWriter(str(log), check_interval=0)
    assert w.write_line(b"1\n")
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    log.rename(tmp_path / "requests.log.1")  # logrotate's default: rename, then the writer must notice
    assert w.write_line(b"2\n")
    assert (tmp_path / "requests.log.1").read_bytes() == b"1\n"
    assert log.read_bytes() == b"2\n"
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    log.unlink()  # deleted under the writer
    assert w.write_line(b"3\n")
    assert log.read_bytes() == b"3\n"
    w.close()


def test_inode_checked_at_most_per_interval(tmp_path: Path) -> None:
    log = tmp_path / "requests.log"
    w = cb.RecordWriter(str(log), check_interval=3600)
    assert w.write_line(b"1\n")
    log.rename(tmp_path / "old")
    assert w.write_line(b"2\n")  # within the interval: still the open (renamed) file
    assert (tmp_path / "old").read_bytes() == b"1\n2\n" and not log.exists()
    w.close()


def test_concurrent_lines_stay_whole(tmp_path: Path) -> None:
    log = tmp_path / "requests.log"
    writers = [cb.RecordWriter(str(log)) for _ in range(2)]  # two descriptors on one file, like two workers
    line = b'{"pad":"' + b"x" * 5000 + b'"}\n'

    def work(w: cb.RecordWriter) -> None:
        for _ in range(200):
            w.write_line(line)

    threads = [threading.Thread(target=work, args=(writers[i % 2],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = log.read_bytes().splitlines(keepends=True)
    assert len(lines) == 1600 and set(lines) == {line}


def test_default_path_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert cb.default_log_path() == str(tmp_path / "logmetrics" / "requests.log")
    monkeypatch.delenv("XDG_STATE_HOME")
    assert cb.default_log_path() == os.path.expanduser("~/.local/state/logmetrics/requests.log")
    monkeypatch.setenv(cb.ENV_PATH, str(tmp_path / "x.log"))
    assert cb.LogmetricsLogger().writer.path == str(tmp_path / "x.log")


def test_imports_only_stdlib() -> None:
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import logmetrics.litellm_callback\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "third = sorted(m for m in new if m not in sys.stdlib_module_names and m not in ('logmetrics', 'litellm'))\n"
        "print(','.join(third))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ""


def test_success_deployment_state_is_litellms(tmp_path: Path) -> None:
    """LiteLLM labels a success's `litellm_deployment_state` with `litellm_params.custom_llm_provider`
    (prometheus.py:3527, :3596-3601), unset on embeddings although the payload names the provider:
    the success record carries LiteLLM's own label values, and the parser uses them."""
    from logmetrics.parse import Parser

    log = tmp_path / "requests.log"
    lg = cb.LogmetricsLogger(path=str(log))
    t0 = dt.datetime(2026, 11, 23, 15, 0, 0)
    embed = kwargs(call_type="aembedding")
    embed["litellm_params"] = {**embed["litellm_params"], "custom_llm_provider": None}
    for kw in (kwargs(), embed):
        asyncio.run(lg.async_log_success_event(kwargs=kw, response_obj=None, start_time=t0, end_time=t0))
    chat, emb = read_records(log)
    assert chat["facts"]["deployment_state"] == {
        "litellm_model_name": "gpt-4o-mini", "model_id": "abc", "api_base": "", "api_provider": "openai",
    }  # fmt: skip
    assert emb["facts"]["deployment_state"]["api_provider"] == ""
    assert emb["payload"]["custom_llm_provider"] == "openai"
    lines = log.read_bytes().splitlines()
    states = [Parser().parse(line).state for line in lines]  # type: ignore[union-attr]
    assert [(s.api_provider, s.value) for s in states] == [("openai", 0), ("", 0)]
    # a record written before the fact existed still reads, with the payload's provider
    old = json.loads(lines[1])
    del old["facts"]["deployment_state"]
    state = Parser().parse(json.dumps(old).encode()).state  # type: ignore[union-attr]
    assert (state.api_provider, state.model_id, state.value) == ("openai", "abc", 0)
