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

import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from traffic import MSGS, PROMPT, finish, req  # beside this script: its directory is on sys.path

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


def send(item: Item) -> dict[str, Any]:
    path, body, expect = item
    return req(body, expect, path=path, headers={"User-Agent": "logmetrics-e2e-routing/1.0"})


def chat(model: str, expect: int = 200, **extra: Any) -> Item:
    return "/v1/chat/completions", {"model": model, "messages": MSGS, **extra}, expect


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
    return finish(results + [send(x) for x in sequential])


if __name__ == "__main__":
    sys.exit(main())
