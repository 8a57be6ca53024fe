"""A fake OpenAI-compatible upstream for the LiteLLM proxy tests: answers the calls whose usage
LiteLLM's media and provider-cache metrics read, which `mock_response` cannot produce.

- POST .../images/generations: `n` images (default 1);
- POST .../videos: a completed video of `seconds` seconds ("4" unless the form names others);
- POST .../chat/completions: a reply whose usage reports provider prompt cache reads and writes:
  OpenAI's `prompt_tokens_details.cached_tokens` alone for a model named `*openai-cache*`, else also
  Anthropic's `cache_read_input_tokens` / `cache_creation_input_tokens`, as OpenAI-compatible
  gateways pass them through.

Standard library only; serves 127.0.0.1 on a free port from a daemon thread (`start()`).
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

OPENAI_USAGE = {
    "prompt_tokens": 1200,
    "completion_tokens": 9,
    "total_tokens": 1209,
    "prompt_tokens_details": {"cached_tokens": 1024},
}
ANTHROPIC_USAGE = {
    "prompt_tokens": 2048,
    "completion_tokens": 12,
    "total_tokens": 2060,
    "prompt_tokens_details": {"cached_tokens": 1536},
    "cache_read_input_tokens": 1536,
    "cache_creation_input_tokens": 256,
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _json(self, obj: dict[str, Any]) -> None:
        data = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw or b"{}")
        except ValueError:  # the videos endpoint posts a multipart form
            body = {}
        now = int(time.time())
        if self.path.endswith("/images/generations"):
            n = int(body.get("n") or 1)
            return self._json({"created": now, "data": [{"url": f"http://127.0.0.1/img-{i}.png"} for i in range(n)]})
        if self.path.endswith("/videos"):
            m = re.search(rb'name="seconds"\r\n\r\n(\d+)', raw)
            seconds = (m.group(1).decode() if m else None) or str(body.get("seconds") or 4)
            return self._json({"id": "video_fake_1", "object": "video", "status": "completed", "created_at": now,
                               "completed_at": now, "seconds": seconds, "size": "720x1280", "model": "sora-2"})
        model = body.get("model", "")
        return self._json({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": now, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello from the fake upstream"},
                         "finish_reason": "stop"}],
            "usage": OPENAI_USAGE if "openai-cache" in model else ANTHROPIC_USAGE,
        })


def start() -> ThreadingHTTPServer:
    """A running upstream; its base URL is `url(server)`, `server.shutdown()` stops it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/v1"
