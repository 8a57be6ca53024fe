#!/usr/bin/env python3
"""Drive a fixed, bounded mix of requests at a local LiteLLM proxy (tests/litellm/config.yaml).

Usage: traffic.py PORT RESULTS.jsonl     (env LITELLM_MASTER_KEY: the proxy's master key)

Standard library only, so any Python can run it. 127.0.0.1 only. Phases: sequential warm-up,
a concurrent burst (8 threads), then one sequential request per deployment so that every
`litellm_deployment_state` series ends on a defined value. Exits non-zero if any response's
HTTP status is not the one expected.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

UA = "logmetrics-e2e/1.0"
# Canary strings: the privacy test asserts none of them reaches the request log.
PROMPT = "CANARY-PROMPT-7f3a: say hello"
MSGS = [{"role": "user", "content": PROMPT}]


def req(
    body: dict[str, Any],
    expect: int,
    key: str | None = None,
    path: str = "/v1/chat/completions",
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    h = {"Content-Type": "application/json", "User-Agent": UA, "X-Canary-Header": "CANARY-HEADER-91bd"}
    if key != "":
        h["Authorization"] = "Bearer " + (key or os.environ["LITELLM_MASTER_KEY"])
    h.update(headers or {})
    data = json.dumps(body).encode()
    r = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}{path}", data=data, headers=h, method="POST")
    t0 = time.time()
    try:
        with urllib.request.urlopen(r, timeout=60) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    return {
        "path": path,
        "model": body.get("model"),
        "stream": bool(body.get("stream")),
        "user": body.get("user"),
        "status": status,
        "expect": expect,
        "elapsed_s": round(time.time() - t0, 4),
        "resp_head": raw[:200].decode("utf-8", "replace"),
    }


def chat(model: str, expect: int = 200, **extra: Any) -> tuple[dict[str, Any], int]:
    body: dict[str, Any] = {"model": model, "messages": MSGS}
    body.update(extra)
    return body, expect


warmup = [
    chat("gpt-4o-mini"),
    chat("claude-haiku"),
    chat("azure-gpt4o"),
    chat("gemini-flash"),
    chat("gpt-4o-mini", user="alice@example.com", metadata={"tags": ["team-a", "exp-1"]}),
    chat("claude-haiku", user="bob", tags=["top-level-tag"]),
    chat("gpt-4o-mini", stream=True),
    chat("claude-haiku", stream=True, stream_options={"include_usage": True}),
    chat("gemini-flash", stream=True, user="carol"),
    chat("gpt-4o-mini", service_tier="priority"),
    chat("gpt-4o-mini", service_tier="turbo-max"),
    # LiteLLM's own response cache (opt-in per request): a miss, then a hit
    chat("gpt-4o-mini", cache={"use-cache": True}, user="cache-user"),
    chat("gpt-4o-mini", cache={"use-cache": True}, user="cache-user"),
    # deployment failures
    chat("rate-limited", 429),
    chat("broken", 500),
    chat("too-long", 400),
    chat("rate-limited", 429, user="alice@example.com"),
    chat("broken", 500, stream=True),
    # proxy-level failures
    chat("no-such-model", 400),
    ({"model": "gpt-4o-mini"}, 400),  # missing messages
    chat("gpt-4o-mini", 429, mock_testing_rate_limit_error=True),
    chat("azure-gpt4o", 429, mock_testing_rate_limit_error=True, user="dave"),
    chat("claude-haiku", 429, mock_testing_rate_limit_error=True, stream=True),
    # provider prompt cache reads and writes, images and video (from the fake upstream)
    chat("cache-anthropic"),
    chat("cache-anthropic", user="alice@example.com"),
    chat("cache-openai"),
]
# (path, body): image and video generation
media = [
    ("/v1/images/generations", {"model": "image-gen", "prompt": PROMPT, "n": 2}),
    ("/v1/images/generations", {"model": "image-gen", "prompt": PROMPT, "user": "carol"}),
    ("/v1/videos", {"model": "video-gen", "prompt": PROMPT, "seconds": "8"}),
    ("/v1/videos", {"model": "video-gen", "prompt": PROMPT, "seconds": "4"}),
]

burst = []
for i in range(24):
    m = ["gpt-4o-mini", "claude-haiku", "azure-gpt4o", "gemini-flash"][i % 4]
    burst.append(chat(m, stream=(i % 3 == 0), user=f"u{i % 3}" if i % 2 else None))
for m, code in (("rate-limited", 429), ("broken", 500), ("too-long", 400)) * 2:
    burst.append(chat(m, code))
burst.append(chat("no-such-model", 400))
burst.append(chat("gpt-4o-mini", 429, mock_testing_rate_limit_error=True))

final = [chat(m) for m in ("gpt-4o-mini", "claude-haiku", "azure-gpt4o", "gemini-flash")]
final += [chat("rate-limited", 429), chat("broken", 500), chat("too-long", 400)]


def send(item: tuple[dict[str, Any], int]) -> dict[str, Any]:
    body, expect = item
    return req(body, expect)


def main() -> int:
    results = [send(x) for x in warmup]
    results += [req(body, 200, path=path) for path, body in media]
    # an unknown virtual key (no database): a 400 from the proxy, labelled with the key's sha256
    results.append(req(chat("gpt-4o-mini")[0], 400, key="sk-CANARY-UNKNOWN-KEY-5c21"))
    # no credentials at all: a 401, counted by LiteLLM's hook with hashed_api_key "None"
    results.append(req(chat("gpt-4o-mini")[0], 401, key=""))
    # label values with quotes and backslashes: LiteLLM escapes them inside the value, then again on output
    odd = {"User-Agent": 'my "batch" runner\\win/0.9'}
    results.append(req(chat("gemini-flash")[0], 200, headers=odd))
    results.append(req(chat("rate-limited")[0], 429, headers=odd))
    with ThreadPoolExecutor(max_workers=8) as pool:
        results += list(pool.map(send, burst))
    results += [send(x) for x in final]
    return finish(results)


def finish(results: list[dict[str, Any]]) -> int:
    """Write the results (RESULTS.jsonl) and say which response had an unexpected status."""
    with open(sys.argv[2], "w") as f:
        for r in results:
            f.write(json.dumps(r) + "\n")
    bad = [r for r in results if r["status"] != r["expect"]]
    for r in bad:
        print("unexpected status:", json.dumps(r), file=sys.stderr)
    print(f"{len(results)} requests sent, {len(bad)} unexpected")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
