"""The HTTP endpoint of `logmetrics serve`: `/metrics` and `/healthz` on a stdlib ThreadingHTTPServer.

`/metrics` is Prometheus text 0.0.4, or OpenMetrics 1.0 when the scraper's `Accept` asks for it
(prometheus_client's `choose_encoder`, as LiteLLM's own exporter negotiates; Prometheus asks for
OpenMetrics first). Both are rendered by textformat.py, the bytes prometheus_client would write,
~15x faster; prometheus_client renders only what else a client may ask for (an OpenMetrics
version or name escaping beyond those). What it renders is decided by the caller (`serve.py`),
which persists the state before answering. `/healthz` is 200 "ok" or 503 with one line per
problem. `serve_metrics()` turns the serve-level counters (plain data) into the `logmetrics_*`
families that `export.registry_for(extra=...)` appends.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import socketserver
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from logmetrics.errors import UsageError
from logmetrics.webconfig import WebConfig

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:9464"
_TLS_TIMEOUT = 10.0  # seconds a client has for its TLS handshake
# Connections are bounded, so that clients cannot take serve's file descriptors (systemd's default
# soft limit is 1024), which the follower needs for the files it reads: at most this many at once
# (further ones are closed at once), each closed after this long without a request (keep-alive
# included; Prometheus reconnects) or with a send stuck on a client that does not read.
MAX_CONNECTIONS = 64
IDLE_TIMEOUT = 120.0
# The idle timeout bounds each read, so a client sending its request a byte at a time would hold
# its connection for ever: the whole request head must also arrive within IDLE_TIMEOUT of the
# connection starting to wait for it, checked this often.
_REAP_INTERVAL = 1.0


@dataclass
class ServeStats:
    """Serve-level self-metrics as plain data; per-source dicts are keyed by the `source` label."""

    bytes_read: dict[str, int] = field(default_factory=dict)
    rotations: dict[str, int] = field(default_factory=dict)
    truncations: dict[str, int] = field(default_factory=dict)
    lag_bytes: dict[str, int] = field(default_factory=dict)
    lag_seconds: float | None = None
    state_writes: int = 0
    state_write_failures: int = 0
    journalctl_restarts: int = 0


def serve_metrics(s: ServeStats) -> Iterator[Metric]:
    for name, doc, values in (
        ("logmetrics_bytes_read", "Bytes read from each source", s.bytes_read),
        ("logmetrics_rotations", "Times a followed name came to hold another file (or none)", s.rotations),
        ("logmetrics_truncations", "Times a followed file was truncated or rewritten", s.truncations),
    ):
        fam = CounterMetricFamily(name, doc, labels=["source"])
        for source, n in sorted(values.items()):
            fam.add_metric([source], float(n))
        yield fam
    lag = GaugeMetricFamily("logmetrics_lag_bytes", "Bytes written to a source file but not read yet",
                            labels=["source"])
    for source, n in sorted(s.lag_bytes.items()):
        lag.add_metric([source], float(n))
    yield lag
    seconds = GaugeMetricFamily("logmetrics_lag_seconds", "Seconds since the time of the newest record read")
    if s.lag_seconds is not None:
        seconds.add_metric([], s.lag_seconds)
    yield seconds
    for name, doc, value in (
        ("logmetrics_state_writes", "State file writes", s.state_writes),
        ("logmetrics_state_write_failures", "State file writes that failed", s.state_write_failures),
        ("logmetrics_journalctl_restarts", "Times journalctl exited and was started again",
         s.journalctl_restarts),
    ):
        fam = CounterMetricFamily(name, doc)
        fam.add_metric([], float(value))
        yield fam


Body = bytes | bytearray


def render(registry: CollectorRegistry, accept: str, text: Callable[[bool], Body] | None = None) -> tuple[Body, str]:
    """The exposition the `Accept` header asks for, and its Content-Type. `text(om)`, if given,
    renders text format 0.0.4 (the default), or OpenMetrics 1.0 with `om`, the same bytes as the
    registry would, faster (export.exposition)."""
    encoder, content_type = choose_encoder(accept)
    if text is not None and encoder is generate_latest:
        return text(False), content_type
    if text is not None and _plain_openmetrics(encoder):
        return text(True), content_type
    return encoder(registry), content_type


def _plain_openmetrics(encoder: Callable[..., bytes]) -> bool:
    """Whether `encoder` (from choose_encoder) writes OpenMetrics 1.x with the metric and label
    names as they are: our names are all valid legacy names, which "underscores" and "allow-utf-8"
    escaping leave alone (prometheus_client before 0.22 has neither argument)."""
    options = getattr(encoder, "keywords", {})
    return (
        getattr(encoder, "func", encoder) is generate_openmetrics
        and options.get("escaping", "underscores") in ("underscores", "allow-utf-8")
        and str(options.get("version", "1.0.0")).split(".")[0] == "1"
    )


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT`, `[V6]:PORT` or `:PORT` (all IPv4 interfaces; `[::]:PORT` is IPv6 and IPv4)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--listen {text!r}: give HOST:PORT, e.g. {DEFAULT_LISTEN}")
    bracketed = host.startswith("[") and host.endswith("]")
    host = host[1:-1] if bracketed else host
    if ":" in host and not _ipv6(host):  # `::1` (no port) is host ":" and port 1
        raise UsageError(f"--listen {text!r}: give HOST:PORT, with an IPv6 address in brackets, e.g. [::1]:9464")
    return host or "0.0.0.0", int(port)


def _ipv6(host: str) -> bool:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


def url_host(host: str) -> str:
    """`host` as written in a URL: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


Scrape = Callable[[str], tuple[Body, str]]  # Accept header -> body, content type
Health = Callable[[], tuple[bool, str]]  # -> healthy, text


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # listen backlog (socketserver's 5 drops a burst of connects: 1 s retries)
    scrape: Scrape
    health: Health
    web: WebConfig | None = None

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._refusing = False  # warned that connections are being refused
        self._heads: dict[socket.socket, float] = {}  # connections waiting for a request head -> deadline
        self._reaper_stop = threading.Event()
        super().__init__(address, handler)  # last: a failed bind calls server_close()

    def server_bind(self) -> None:
        # not http.server's: it looks the address's name up (socket.getfqdn, a reverse DNS query:
        # seconds with a broken resolver, before serve is ready), and nothing here uses that name
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def expect_head(self, conn: socket.socket, timeout: float) -> None:
        self._heads[conn] = time.monotonic() + timeout

    def head_done(self, conn: socket.socket) -> None:
        self._heads.pop(conn, None)

    def reap(self) -> None:
        """Shut the connections whose request head is late (thread; until server_close())."""
        while not self._reaper_stop.wait(min(_REAP_INTERVAL, _Handler.timeout / 4)):
            now = time.monotonic()
            for conn, deadline in list(self._heads.items()):
                if now > deadline and self._heads.pop(conn, None) is not None:
                    log.debug("request head from %s not complete in %gs: closing", _peer(conn), _Handler.timeout)
                    try:  # the plain socket's shutdown (an SSLSocket's would drop its TLS state under the reader)
                        socket.socket.shutdown(conn, socket.SHUT_RDWR)
                    except OSError:
                        pass

    def server_close(self) -> None:
        self._reaper_stop.set()
        super().server_close()

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            if not self._refusing:
                log.warning("%d connections are open to /metrics: closing new ones until some end",
                            MAX_CONNECTIONS)
            self._refusing = True
            self.shutdown_request(request)
            return
        self._refusing = False
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        if self.web is not None and self.web.ssl_context is not None:  # handshake in the request's thread
            sock.settimeout(_TLS_TIMEOUT)
            sock = self.web.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def finish_request(self, request: Any, client_address: Any) -> None:
        if isinstance(request, ssl.SSLSocket):
            self.expect_head(request, _TLS_TIMEOUT)  # the whole handshake, not each read
            try:
                request.do_handshake()
            except (OSError, ValueError) as e:
                log.debug("TLS handshake with %s failed: %s", client_address, e)
                return
            finally:
                self.head_done(request)
            assert self.web is not None
            if not self.web.client_allowed(request.getpeercert()):
                log.debug("client certificate of %s names none of client_allowed_sans", client_address)
                return
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A request that ended in an exception: a client that went away (reset, broken pipe,
        timeout: OSError) is a debug line, anything else one warning line; never socketserver's
        traceback on stderr (the journal), and the server goes on."""
        e = sys.exc_info()[1]
        if isinstance(e, OSError):
            log.debug("connection with %s ended: %s", client_address, e)
        else:
            log.warning("request from %s failed: %s: %s", client_address, type(e).__name__, e)


def _peer(conn: socket.socket) -> Any:
    try:
        return conn.getpeername()
    except OSError:
        return "a client"


class _Server6(_Server):
    address_family = socket.AF_INET6

    def server_bind(self) -> None:
        if ipaddress.IPv6Address(self.server_address[0]).is_unspecified:
            # `[::]`: IPv4 too, whatever net.ipv6.bindv6only says (its default, 0, does the same)
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def request_path(target: str) -> str:
    """The path of a request target: origin-form (`/metrics?x=1`) or absolute-form
    (`http://host:9464/metrics`, which an HTTP/1.1 server must accept: RFC 9112, 3.2.2)."""
    if not target.startswith("/"):
        parts = urlsplit(target)
        if parts.scheme.lower() in ("http", "https") and parts.netloc:
            return parts.path or "/"
    return target.split("?", 1)[0]


def _family(host: str, port: int) -> tuple[type[_Server], str]:
    """The server class for `host`, and the address to bind: IPv6 for an IPv6 address, and for a
    name with IPv6 addresses only (`ip6-localhost`); IPv4 otherwise (`localhost` stays 127.0.0.1
    where it also has ::1)."""
    if ":" in host:
        return _Server6, host
    try:
        socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    except socket.gaierror:
        try:
            infos = socket.getaddrinfo(host, port, socket.AF_INET6, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
        except socket.gaierror:
            return _Server, host  # binding says what is wrong with the name
        return _Server6, str(infos[0][4][0])
    return _Server, host


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    _close = False  # close the connection after this answer
    timeout = IDLE_TIMEOUT  # per connection: waiting for a request, and sending a response

    def handle_one_request(self) -> None:
        self.server.expect_head(self.connection, self.timeout)
        try:
            super().handle_one_request()
        finally:
            self.server.head_done(self.connection)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.server.head_done(self.connection)
        path = request_path(self.path)
        # a request body (never sent by a scraper) is not read: the connection is closed after the
        # answer, so that the body is not taken for the next request on a kept-alive connection
        self._close = self.headers.get("Transfer-Encoding") is not None or self.headers.get(
            "Content-Length", "0").strip() != "0"
        web = self.server.web
        if web is not None and not web.authorized(self.headers.get("Authorization")):
            self._send(401, b"Unauthorized\n", "text/plain; charset=utf-8",
                       {"WWW-Authenticate": 'Basic realm="logmetrics", charset="UTF-8"'})
            return
        if path == "/metrics":
            try:
                body, ctype = self.server.scrape(self.headers.get("Accept", ""))
            except Exception as e:  # a scrape must answer, whatever happened
                log.warning("scrape failed: %s", e)
                self._send(500, b"scrape failed\n", "text/plain; charset=utf-8")
                return
            self._send(200, body, ctype)
        elif path == "/healthz":
            ok, text = self.server.health()
            self._send(200 if ok else 503, text.encode(), "text/plain; charset=utf-8")
        elif path == "/":
            page = b"logmetrics: LiteLLM metrics at /metrics, health at /healthz\n"
            self._send(200, page, "text/plain; charset=utf-8")
        else:
            self._send(404, b"not found: try /metrics or /healthz\n", "text/plain; charset=utf-8")

    def _send(self, code: int, body: Body, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(code)
        if code == 401:
            headers = extra or {}
        else:
            headers = dict(self.server.web.headers.items()) if self.server.web is not None else {}
            headers.update(extra or {})
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if self._close:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_GET  # noqa: N815

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
        log.debug("%s " + format, self.address_string(), *args)


class MetricsServer:
    """Binds at construction (errors are the caller's), serves in a daemon thread after `start()`."""

    def __init__(self, listen: str, scrape: Scrape, health: Health, web: WebConfig | None = None) -> None:
        host, port = parse_listen(listen)
        cls, host = _family(host, port)
        try:
            self._server = cls((host, port), _Handler)
        except OSError as e:
            raise UsageError(f"cannot listen on {listen}: {e.strerror}; choose another --listen") from None
        self._server.scrape = scrape
        self._server.health = health
        self._server.web = web  # --web-config: TLS and basic auth (webconfig.py)
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        """Where /metrics answers, e.g. `http://[::1]:9464/metrics`."""
        host, port = self.address
        web = self._server.web
        scheme = "https" if web is not None and web.ssl_context is not None else "http"
        return f"{scheme}://{url_host(host)}:{port}/metrics"

    def start(self) -> None:
        self._thread.start()
        threading.Thread(target=self._server.reap, name="http-reaper", daemon=True).start()

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
