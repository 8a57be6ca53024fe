"""Privacy canaries: records whose prompts, responses, headers, error messages and tracebacks,
tool arguments and raw API keys are canary strings go through every output logmetrics has, and
no canary comes out.

The records are real ones (fixtures/sample-logs/litellm-1.109.1/standard-logging.jsonl and the
callback capture) with those fields replaced, plus json_logs lines, plain-text journald lines,
access lines with a key in the query string, compact records, and unparsable lines that hold a
canary. Outputs: `replay` (table, stderr, --json, --metrics-out, --openmetrics-out), `tail`
(text, JSON, table), `serve` (/metrics in both formats, /healthz, its stderr, the state file).
The LiteLLM callback's own output is covered by tests/test_litellm_callback.py (its canaries).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import msgspec
import pytest

from logmetrics.events import redact_api_base

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "fixtures" / "sample-logs"
TIMEOUT = 30.0

PROMPT = "CANARY-PROMPT-a1b2"
RESPONSE = "CANARY-RESPONSE-c3d4"
HEADER = "CANARY-HEADER-e5f6"
KEY = "sk-CANARYRAWKEY0123456789"
TRACE = "CANARY-TRACEBACK-g7h8"
ERROR = "CANARY-ERRORTEXT-i9j0"
TOOL = "CANARY-TOOLARGS-k1l2"
LOGTEXT = "CANARY-LOGLINE-m3n4"
STAMP = "1795333000845302"
CANARIES = (PROMPT, RESPONSE, HEADER, KEY, TRACE, ERROR, TOOL, LOGTEXT)


def _poison(payload: dict[str, Any]) -> dict[str, Any]:
    """Canaries in every field of a StandardLoggingPayload that may hold content or secrets."""
    p = json.loads(json.dumps(payload))
    p["messages"] = [{"role": "system", "content": PROMPT}, {"role": "user", "content": f"{PROMPT} {KEY}"}]
    p["response"] = {"choices": [{"message": {"content": RESPONSE, "tool_calls": [
        {"function": {"name": "f", "arguments": json.dumps({"q": TOOL})}}]}}]}
    p["model_parameters"] = {"tools": [{"function": {"name": TOOL}}], "user": KEY}
    md = p.setdefault("metadata", {})
    md["requester_metadata"] = {"headers": {"authorization": f"Bearer {KEY}", "x-custom": HEADER}}
    md["requester_custom_headers"] = {"x-secret": HEADER}
    md["user_api_key_auth_metadata"] = {"api_key": KEY}
    md["spend_logs_metadata"] = {"note": PROMPT}
    md["user_api_key"] = KEY
    p.setdefault("hidden_params", {})["additional_headers"] = {"llm_provider-authorization": KEY}
    p["request_tags"] = [HEADER]
    p["cache_key"] = PROMPT
    p["error_str"] = f"litellm.BadRequestError: {ERROR} {PROMPT}"
    # LiteLLM's Gemini URLs carry the key in the query; a URL may hold user:password@
    p["api_base"] = _secret_url(p.get("api_base") or "https://generativelanguage.googleapis.com/v1beta/x")
    if p.get("status") == "failure" or p.get("error_information"):
        info = p.setdefault("error_information", {}) or {}
        info["traceback"] = f'Traceback (most recent call last):\n  File "x.py", line 1\n{TRACE}'
        info["error_message"] = ERROR
        p["error_information"] = info
    return p


def _secret_url(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://u:{KEY}@{rest}?key={KEY}"


def canary_lines() -> list[bytes]:
    out: list[bytes] = []
    for line in (SAMPLES / "litellm-1.109.1" / "standard-logging.jsonl").read_bytes().splitlines():
        out.append(json.dumps(_poison(json.loads(line))).encode())
    for line in (SAMPLES / "litellm-1.109.1-callback" / "requests.log").read_bytes().splitlines()[:40]:
        rec = json.loads(line)
        if rec.get("payload"):
            rec["payload"] = _poison(rec["payload"])
        if rec.get("facts"):
            rec["facts"]["error_message"] = f"{ERROR} {TRACE}"
            for recorded in ("deployment_state", "deployment_labels"):  # LiteLLM's own values, recorded live
                if rec["facts"].get(recorded):
                    values = rec["facts"][recorded]
                    values["api_base"] = _secret_url(values.get("api_base") or "https://b.invalid/v1")
        out.append(json.dumps(rec).encode())
    out += [
        json.dumps({"message": f"Request body: {PROMPT} {KEY}", "level": "INFO",
                    "timestamp": "2026-11-22T07:36:40"}).encode(),
        json.dumps({"message": f"{TRACE}\nTraceback (most recent call last):", "level": "ERROR",
                    "litellm_call_id": "c1", "exception": TRACE}).encode(),
        json.dumps({"message": f'127.0.0.1:5 - "POST /v1/chat/completions?api_key={KEY} HTTP/1.1" 200',
                    "level": "INFO"}).encode(),
        json.dumps({"MESSAGE": f"ERROR {LOGTEXT} {KEY}", "PRIORITY": "3", "__REALTIME_TIMESTAMP": STAMP}).encode(),
        json.dumps({"MESSAGE": list(f"WARNING {LOGTEXT}\x1b[0m".encode()), "__REALTIME_TIMESTAMP": STAMP}).encode(),
        json.dumps({"timestamp": "2025-10-21T12:26:24.125", "level": "ERROR", "model": "gpt-4o", "provider": "openai",
                    "latency_ms": 5, "error": f"{ERROR} {PROMPT}"}).encode(),
        f"not json at all {PROMPT} {KEY}".encode(),
        f'{{"broken": "{LOGTEXT}'.encode(),
        f'{{"message": "{LOGTEXT}", "level": 5}}'.encode(),
        b"\xff\xfe" + KEY.encode(),
    ]
    return out


def assert_clean(where: str, data: bytes | str) -> None:
    text = data if isinstance(data, str) else data.decode("utf-8", "replace")
    leaked = [c for c in CANARIES if c in text]
    assert not leaked, f"{where} leaks {leaked}"
    assert "Traceback" not in text, f"{where} shows a traceback"


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("privacy") / "requests.log"
    p.write_bytes(b"".join(x + b"\n" for x in canary_lines()))
    return p


def run(*args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "logmetrics", *args], capture_output=True, timeout=timeout,
                          cwd=ROOT, stdin=subprocess.DEVNULL)


def test_the_canaries_are_really_in_the_input(log: Path) -> None:
    text = log.read_text(errors="replace")
    for c in CANARIES:
        assert c in text


@pytest.mark.parametrize(("raw", "shown"), [
    ("https://api.openai.com/v1", "https://api.openai.com/v1"),
    ("https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent?key=AIzaSyX",
     "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent?REDACTED"),
    ("https://user:pw@host:8080/v1?x=1&api-key=s", "https://REDACTED@host:8080/v1?REDACTED"),
    ("http://a@b@host/p@q", "http://REDACTED@host/p@q"),  # an @ in the path is not user info
    ("user:pw@host/v1", "REDACTED@host/v1"),
    ("https://host/v1?", "https://host/v1?REDACTED"),
    ("", ""),
    (None, None),
])
def test_api_base_credentials_are_redacted(raw: str | None, shown: str | None) -> None:
    assert redact_api_base(raw) == shown


def test_api_base_canaries_are_in_the_records(log: Path) -> None:
    """The canary key really is in api_base values: of payloads, and of the callback's recorded state."""
    text = log.read_text(errors="replace")
    assert f'"api_base": "https://u:{KEY}@' in text and f"?key={KEY}" in text
    assert text.count(f"?key={KEY}") > text.count('"deployment_state": {') > 0


def test_records_are_counted(log: Path) -> None:
    """The poisoned records still parse: the test checks real outputs, not an empty run."""
    r = run("replay", str(log), "--json")
    doc = json.loads(r.stdout)
    assert doc["records"] >= 60 and doc["models"][0]["requests"] > 0


def test_replay_outputs(log: Path, tmp_path: Path) -> None:
    prom, om = tmp_path / "out.prom", tmp_path / "out.om"
    for args in (["--json", "--end-user-label"], ["--by", "deployment"]):
        r = run("replay", str(log), "--metrics-out", str(prom), "--openmetrics-out", str(om), *args)
        assert r.returncode == 0, r.stderr
        assert_clean(f"replay {args} stdout", r.stdout)
        assert_clean(f"replay {args} stderr", r.stderr)
        assert_clean("--metrics-out", prom.read_bytes())
        assert_clean("--openmetrics-out", om.read_bytes())


@pytest.mark.parametrize("args", [["-o", "text"], ["-o", "json"], ["--table"], ["-o", "json", "--grep", "error"]],
                         ids=["text", "json", "table", "json-grep"])
def test_tail_outputs(log: Path, args: list[str]) -> None:
    r = run("tail", "--no-follow", "-n", "all", str(log), *args)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() or "--grep" in args
    out = r.stdout
    if "json" in args:
        out = b"".join(msgspec.json.encode(_without_error_message(json.loads(x))) + b"\n" for x in out.splitlines())
    assert_clean(f"tail {args} stdout", out)
    assert_clean(f"tail {args} stderr", r.stderr)


def _without_error_message(doc: dict[str, Any]) -> dict[str, Any]:
    """`tail -o json` shows a failed request's `error_message` (docs/tail.md: the provider/proxy
    exception text, at most 300 characters, what --grep searches): the one field that carries
    record text by design. It is checked for its cap and left out of the canary grep; every other
    field must be clean."""
    message = doc.pop("error_message", None)
    assert message is None or len(message) <= 300
    return doc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(port: int, path: str, accept: str = "") -> bytes:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Accept": accept})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return bytes(resp.read())
    except urllib.error.HTTPError as e:
        return bytes(e.read())


def test_serve_outputs(log: Path, tmp_path: Path) -> None:
    port = _free_port()
    state_dir = tmp_path / "state"
    err_path = tmp_path / "serve.err"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGMETRICS_")}
    with open(err_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "logmetrics", "serve", str(log), "--listen", f"127.0.0.1:{port}",
                                 "--state-dir", str(state_dir), "--no-table"],
                                stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + TIMEOUT
        want = json.loads(run("replay", str(log), "--json").stdout)["records"]
        metrics = b""
        while time.monotonic() < deadline:
            assert proc.poll() is None, err_path.read_text()
            try:
                metrics = _get(port, "/metrics")
            except OSError:
                time.sleep(0.05)  # not listening yet; bounded by the deadline
                continue
            if f"logmetrics_records_read_total {float(want)}".encode() in metrics:
                break
            time.sleep(0.05)
        assert f"logmetrics_records_read_total {float(want)}".encode() in metrics
        assert_clean("serve /metrics", metrics)
        om = _get(port, "/metrics", "application/openmetrics-text; version=1.0.0")
        assert_clean("serve /metrics (OpenMetrics)", om)
        assert_clean("serve /healthz", _get(port, "/healthz"))
        assert_clean("serve /", _get(port, "/"))
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=TIMEOUT)
    assert_clean("serve stdout", out)
    assert_clean("serve stderr", err_path.read_bytes())
    files = [p for p in state_dir.rglob("*") if p.is_file()]
    assert files, "serve wrote no state"
    for p in files:
        assert_clean(f"state file {p.name}", p.read_bytes())
