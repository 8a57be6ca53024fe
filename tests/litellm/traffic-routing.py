#!/usr/bin/env python3
"""Drive routing traffic at a local LiteLLM proxy (tests/litellm/config-routing.yaml): load
balancing over two deployments, a failing deployment retried onto a healthy one, fallbacks and
context-window fallbacks, a model group alias, a wildcard deployment, retries exhausted, and the
embeddings, text completion and responses endpoints, plus chat with tools.

Usage: traffic-routing.py PORT RESULTS.jsonl     (env LITELLM_MASTER_KEY: the proxy's master key)

Standard library only, 127.0.0.1 only, same result lines as traffic.py. A short concurrent burst,
then sequential requests so every `litellm_deployment_state` series ends on a defined value.
Exits non-zero if any response's HTTP status is not the one expected.
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

PORT = int(sys.argv[1])
OUT = sys.argv[2]
BASE = f"http://127.0.0.1:{PORT}"
KEY = os.environ["LITELLM_MASTER_KEY"]
UA = "logmetrics-e2e-routing/1.0"
PROMPT = "CANARY-PROMPT-7f3a: say hello"  # must never reach the request log
MSGS = [{"role": "user", "content": PROMPT}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]

Item = tuple[str, dict[str, Any], int]


def req(path: str, body: dict[str, Any], expect: int) -> dict[str, Any]:
    h = {
        "Content-Type": "application/json",
        "User-Agent": UA,
        "X-Canary-Header": "CANARY-HEADER-91bd",
        "Authorization": "Bearer " + KEY,
    }
    r = urllib.request.Request(BASE + path, data=json.dumps(body).encode(), headers=h, method="POST")
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


def chat(model: str, expect: int = 200, **extra: Any) -> Item:
    return "/v1/chat/completions", {"model": model, "messages": MSGS, **extra}, expect


def send(item: Item) -> dict[str, Any]:
    return req(*item)


burst: list[Item] = [chat("lb-group", stream=(i % 3 == 0), user=f"u{i % 2}") for i in range(8)]

sequential: list[Item] = [
    # fallbacks: the answer comes from another model group than the one asked for
    chat("broken"),
    chat("broken", stream=True, user="alice"),
    chat("too-long"),
    # a failing deployment retried onto the healthy one of its group
    chat("flaky-group"),
    chat("flaky-group", stream=True),
    # retries exhausted: 1 + num_retries failures, one error response
    chat("rate-limited", 429),
    # model group alias and wildcard deployment
    chat("my-alias"),
    chat("my-alias", stream=True, user="bob"),
    chat("openai/gpt-4.1-nano"),
    chat("openai/o3-mini", stream=True),
    # chat with tools, and a forced tool call
    chat("gpt-4o-mini", tools=TOOLS),
    chat("gpt-4o-mini", tools=TOOLS, tool_choice={"type": "function", "function": {"name": "get_weather"}}),
    # other endpoints
    ("/v1/embeddings", {"model": "embed", "input": [PROMPT]}, 200),
    ("/v1/embeddings", {"model": "embed", "input": PROMPT, "user": "carol"}, 200),
    ("/v1/completions", {"model": "gpt-4o-mini", "prompt": PROMPT}, 200),
    ("/v1/completions", {"model": "lb-group", "prompt": PROMPT, "stream": True}, 200),
    ("/v1/responses", {"model": "gpt-4o-mini", "input": PROMPT}, 200),
    ("/v1/responses", {"model": "lb-group", "input": PROMPT, "user": "dave"}, 200),
    # last: the load-balanced group a few times, sequentially
    *[chat("lb-group") for _ in range(4)],
]


def main() -> int:
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(send, burst))
    results += [send(x) for x in sequential]
    with open(OUT, "w") as f:
        for r in results:
            f.write(json.dumps(r) + "\n")
    bad = [r for r in results if r["status"] != r["expect"]]
    for r in bad:
        print("unexpected status:", json.dumps(r), file=sys.stderr)
    print(f"{len(results)} requests sent, {len(bad)} unexpected")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
