#!/usr/bin/env python3
"""Run a real LiteLLM proxy with LiteLLM's `prometheus` callback and logmetrics' callback side by side,
drive tests/litellm/traffic.py at it, and save the request log, LiteLLM's /metrics and the traffic results.

Usage: capture.py VENV OUTDIR [--config tests/litellm/config.yaml]

VENV is a virtualenv made by tests/litellm/install.sh. Standard library only. Binds 127.0.0.1 on a
free port, uses a random master key (never written anywhere), no network (mock deployments,
LITELLM_LOCAL_MODEL_COST_MAP=True; the media and provider-cache deployments answer from a fake upstream on
127.0.0.1, upstream.py). Waits for conditions, not for time: the proxy's health
endpoint, then until every request sent is counted once in LiteLLM's
`litellm_proxy_total_requests_metric` and once in the request log.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))
import upstream  # noqa: E402 - beside this file, which is also run as a script


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, key: str | None = None, timeout: float = 5.0) -> tuple[int, str]:
    h = {"Authorization": "Bearer " + key} if key else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=h), timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def wait_for(cond, timeout: float, what: str, interval: float = 0.2):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def total_requests(metrics: str) -> float:
    return sum(
        float(m.group(1))
        for m in re.finditer(r"^litellm_proxy_total_requests_metric_total\{[^}]*\} (\S+)$", metrics, re.M)
    )


def counted_records(log: Path) -> int:
    if not log.exists():
        return 0
    n = 0
    for line in log.read_bytes().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("hook") in ("success", "post_call_failure"):
            n += 1
    return n


def strip_created(metrics: str) -> str:
    """The request-fed part of an exposition: litellm_ samples without _created (process_* and python_*
    samples change on their own)."""
    return "\n".join(line for line in metrics.splitlines() if line.startswith("litellm_") and "_created" not in line)


def settle(read, quiet: float = 1.0, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    """Poll `read()` until it returns the same value for `quiet` seconds; return that value."""
    deadline = time.monotonic() + timeout
    last, since = read(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = read()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return last
    raise TimeoutError(f"still changing after {timeout}s")


class Proxy:
    def __init__(self, venv: Path, config: Path, workdir: Path, log: Path, extra_env: dict[str, str] | None = None):
        self.venv, self.config, self.workdir, self.log = venv, config, workdir, log
        self.port = free_port()
        self.key = "sk-" + secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI", "ANTHROPIC", "AZURE", "GEMINI"))}
        env.update(
            LITELLM_LOCAL_MODEL_COST_MAP="True",
            LITELLM_MASTER_KEY=self.key,
            LOGMETRICS_REQUEST_LOG=str(log),
            PYTHONPATH=str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""),
            NO_PROXY="*",
            DISABLE_SCHEMA_UPDATE="true",
            LITELLM_TELEMETRY="False",
        )
        env.pop("LOGMETRICS_LOG_CONTENT", None)
        env.update(extra_env or {})
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.upstream: upstream.ThreadingHTTPServer | None = None

    def start(self, timeout: float = 120.0) -> None:
        self.upstream = upstream.start()  # the configs name it as os.environ/LOGMETRICS_TEST_UPSTREAM
        self.env["LOGMETRICS_TEST_UPSTREAM"] = upstream.url(self.upstream)
        self.stdout = open(self.workdir / "proxy-output.log", "wb")
        litellm = self.venv / "bin" / "litellm"
        self.proc = subprocess.Popen(
            [
                str(litellm),
                "--config",
                str(self.config),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--num_workers",
                "1",
            ],
            cwd=self.workdir,
            env=self.env,
            stdout=self.stdout,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"proxy exited with {self.proc.returncode}; see {self.workdir}/proxy-output.log")
            try:
                return http_get(self.base + "/health/liveliness", timeout=2)[0] == 200
            except OSError:
                return False

        wait_for(up, timeout, "the proxy to answer /health/liveliness")

    def metrics(self) -> str:
        status, text = http_get(self.base + "/metrics", key=self.key)
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        return text

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if self.upstream is not None:
            self.upstream.shutdown()
            self.upstream.server_close()
            self.upstream = None
        if getattr(self, "stdout", None):
            self.stdout.close()


def capture(
    venv: Path, outdir: Path, config: Path, traffic: Path = HERE / "traffic.py", beside_config: bool = False
) -> dict[str, object]:
    """Run the proxy on a copy of `config` in `outdir`. `beside_config` puts a copy of the callback module
    beside the config as `logmetrics_callback.py` and names that in the config: LiteLLM < 1.80 loads a
    config's callback only from a file beside the config (1.109.1 also imports it from PYTHONPATH)."""
    outdir.mkdir(parents=True, exist_ok=True)
    if config.resolve() != (outdir / "config.yaml").resolve():
        shutil.copy(config, outdir / "config.yaml")
    config = outdir / "config.yaml"
    if beside_config:  # as docs/litellm.md says: `logmetrics litellm-callback > logmetrics_callback.py`
        shutil.copy(REPO / "logmetrics" / "litellm_callback.py", outdir / "logmetrics_callback.py")
        text = config.read_text().replace(
            "logmetrics.litellm_callback.proxy_handler_instance", "logmetrics_callback.proxy_handler_instance"
        )
        config.write_text(text)
    log = outdir / "requests.log"
    if log.exists():
        log.unlink()
    proxy = Proxy(venv, config, outdir, log)
    try:
        t0 = time.monotonic()
        proxy.start()
        started = time.monotonic() - t0
        results = outdir / "traffic-results.jsonl"
        r = subprocess.run(
            [sys.executable, str(traffic), str(proxy.port), str(results)],
            env={**os.environ, "LITELLM_MASTER_KEY": proxy.key},
            timeout=600,
            capture_output=True,
            text=True,
        )
        sent = len(results.read_bytes().splitlines()) if results.exists() else 0
        wait_for(lambda: counted_records(log) >= sent, 60, f"{sent} counted records in {log}")
        if "litellm_proxy_total_requests_metric" in proxy.metrics():  # absent: LiteLLM < 1.80 without a licence
            wait_for(lambda: total_requests(proxy.metrics()) >= sent, 60, f"LiteLLM to count {sent} requests")
        # Failure events run in background tasks and may land after the counts above: wait until both
        # sides stop changing (bounded polling on a condition, not a fixed sleep).
        metrics = settle(lambda: (log.stat().st_size, strip_created(proxy.metrics())))[1]
        (outdir / "litellm-metrics.txt").write_text(proxy.metrics())
        return {
            "sent": sent,
            "traffic_rc": r.returncode,
            "traffic_out": r.stdout + r.stderr,
            "startup_s": round(started, 1),
            "litellm_total": total_requests(metrics),
            "records": counted_records(log),
            "master_key": proxy.key,
            "log": str(log),
        }
    finally:
        proxy.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("venv", type=Path)
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--config", type=Path, default=HERE / "config.yaml")
    ap.add_argument(
        "--beside-config",
        action="store_true",
        help="put a copy of the callback module beside the config (needed by LiteLLM < 1.80)",
    )
    a = ap.parse_args()
    info = capture(a.venv.resolve(), a.outdir.resolve(), a.config.resolve(), beside_config=a.beside_config)
    info.pop("master_key", None)
    print(json.dumps(info, indent=1))
    return 0 if info["traffic_rc"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
