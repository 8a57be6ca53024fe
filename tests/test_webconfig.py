"""--web-config: exporter-toolkit web config files -> TLS context and basic auth, tried with real TLS
clients (ssl + http.client) against serve's MetricsServer, certificates made by the openssl CLI."""

from __future__ import annotations

import base64
import http.client
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from logmetrics.errors import UsageError
from logmetrics.http import MetricsServer
from logmetrics.webconfig import WebConfig, load, parse_yaml

try:
    import bcrypt
except ImportError:  # pragma: no cover - TLS tests still run; basic auth needs the [web] extra
    bcrypt = None
needs_bcrypt = pytest.mark.skipif(bcrypt is None, reason="basic auth needs bcrypt (pip install 'logmetrics[web]')")
ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "s3cret pass:word"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_cert(d: Path, name: str, ca: str, san: str) -> None:
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    # the extensions Python 3.13's strict verification (VERIFY_X509_STRICT) wants of a leaf
    (d / f"{name}.ext").write_text(f"subjectAltName={san}\nauthorityKeyIdentifier=keyid\nbasicConstraints=CA:FALSE\n"
                                   "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext", cwd=d)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:  # pragma: no cover
        pytest.fail("the openssl CLI is needed to make test certificates (apt-get install openssl)")
    d = tmp_path_factory.mktemp("pki")
    for ca in ("ca", "rogue-ca"):
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                f"{ca}.key", "-out", f"{ca}.crt", "-days", "2", "-subj", f"/CN={ca}", "-addext",
                "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    make_cert(d, "server", "ca", "DNS:localhost,IP:127.0.0.1")
    make_cert(d, "client", "ca", "DNS:prometheus.example")
    make_cert(d, "other-client", "ca", "DNS:other.example")
    make_cert(d, "rogue-client", "rogue-ca", "DNS:prometheus.example")
    return d


@pytest.fixture(scope="module")
def hashed() -> str:
    if bcrypt is None:  # pragma: no cover
        pytest.skip("basic auth needs bcrypt (pip install 'logmetrics[web]')")
    return str(bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=6)).decode())


def write(d: Path, text: str, name: str = "web.yml") -> Path:
    p = d / name
    p.write_text(text)
    return p


class Server:
    def __init__(self, web: WebConfig) -> None:
        self.http = MetricsServer("127.0.0.1:0", lambda accept: (b"up 1\n", "text/plain; version=0.0.4"),
                                  lambda: (True, "ok\n"), web)
        self.http.start()
        self.port = self.http.address[1]

    def get(self, ctx: ssl.SSLContext | None, path: str = "/metrics", auth: str | None = None,
            method: str = "GET", header: str | None = None) -> tuple[int, bytes, dict[str, str]]:
        conn: http.client.HTTPConnection
        if ctx is None:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        else:
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx, timeout=10)
        headers = {}
        if auth is not None:
            headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
        if header is not None:
            headers["Authorization"] = header
        try:
            conn.request(method, path, headers=headers)
            r = conn.getresponse()
            return r.status, r.read(), dict(r.getheaders())
        finally:
            conn.close()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for s in started:
        s.http.close()


def serve(servers: list[Server], web: WebConfig) -> Server:
    s = Server(web)
    servers.append(s)
    return s


def client_ctx(pki: Path, cert: str | None = None, ca: str = "ca") -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / f"{ca}.crt"))
    if cert is not None:
        ctx.load_cert_chain(str(pki / f"{cert}.crt"), str(pki / f"{cert}.key"))
    return ctx


# -- the file -----------------------------------------------------------------------------------

YAML_CASES: list[tuple[str, str, Any]] = [
    ("empty", "# nothing\n", None),
    ("exporter-toolkit-sample", """
tls_server_config:
  # Certificate and key files for server to use to authenticate to client.
  cert_file: server.crt
  key_file: "server.key"
  client_auth_type: 'RequireAndVerifyClientCert'
  min_version: TLS12
  cipher_suites:
    - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
    - TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
  client_allowed_sans: [prometheus.example, "b.example"]
  prefer_server_cipher_suites: true
http_server_config:
  http2: false
  headers: {X-Content-Type-Options: nosniff, Strict-Transport-Security: max-age=31536000}
basic_auth_users:
  alice: $2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG   # a comment
  "bob#1": '$2b$10$abc'
""", {
        "tls_server_config": {
            "cert_file": "server.crt", "key_file": "server.key", "client_auth_type": "RequireAndVerifyClientCert",
            "min_version": "TLS12",
            "cipher_suites": ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"],
            "client_allowed_sans": ["prometheus.example", "b.example"], "prefer_server_cipher_suites": True,
        },
        "http_server_config": {"http2": False, "headers": {"X-Content-Type-Options": "nosniff",
                                                           "Strict-Transport-Security": "max-age=31536000"}},
        "basic_auth_users": {"alice": "$2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG",
                             "bob#1": "$2b$10$abc"},
    }),
    ("list-at-key-indent", "a:\n- x\n- 'y z'\nb: ~\n", {"a": ["x", "y z"], "b": None}),
    ("document-markers", "---\na: 1\n...\n", {"a": 1}),
]


@pytest.mark.parametrize(("name", "text", "want"), YAML_CASES, ids=[c[0] for c in YAML_CASES])
def test_yaml_subset(name: str, text: str, want: Any) -> None:
    assert parse_yaml(text) == want
    yaml = pytest.importorskip("yaml")
    assert yaml.safe_load(text) == want  # the same as a real YAML parser


@pytest.mark.parametrize(("text", "message"), [
    ("a:\n\tb: 1\n", "tabs"),
    ("a: &x 1\n", "anchors"),
    ("a: |\n  text\n", "block scalars"),
    ("a: 1\na: 2\n", "twice"),
    ("a:\n  - b: 1\n", "plain values"),
    ("a: [1, 2\n", "flow list"),
    ("just text\n", "key: value"),
    ("a: 1\n    b: 2\n", "indentation"),
], ids=["tab", "anchor", "block-scalar", "duplicate", "list-of-maps", "open-flow", "no-key", "bad-indent"])
def test_yaml_outside_the_subset_is_an_error_naming_the_line(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_yaml(text)


def bad_config() -> list[tuple[str, str, str]]:
    tls = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
    return [
        ("unknown-top", "tls_config:\n  cert_file: x\n", "unknown setting 'tls_config'"),
        ("unknown-tls", tls + "  cert: inline\n", "unknown setting|not supported"),
        ("no-key-file", "tls_server_config:\n  cert_file: server.crt\n", "needs cert_file and key_file"),
        ("missing-cert", "tls_server_config:\n  cert_file: nope.crt\n  key_file: server.key\n", "cannot load"),
        ("bad-version", tls + "  min_version: SSL3\n", "min_version 'SSL3'"),
        ("min-above-max", tls + "  min_version: TLS13\n  max_version: TLS12\n", "above"),
        ("unverified-client-auth", tls + "  client_auth_type: RequireAnyClientCert\n", "not supported"),
        ("verify-without-ca", tls + "  client_auth_type: RequireAndVerifyClientCert\n", "needs client_ca_file"),
        ("bad-cipher", tls + "  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n", "not supported"),
        ("sans-without-verify", tls + "  client_allowed_sans: [a]\n", "client_allowed_sans"),
        ("not-bcrypt", "basic_auth_users:\n  alice: plaintext\n", "not a bcrypt hash"),
        ("not-a-mapping", "- a\n", "mapping at the top"),
        ("curves", tls + "  curve_preferences: [X25519]\n", "not supported"),
    ]


def test_bad_configs_are_usage_errors_naming_the_setting(pki: Path) -> None:
    for name, text, message in bad_config():
        with pytest.raises(UsageError, match=message):
            load(write(pki, text, f"{name}.yml"))


def test_json_config_and_paths_relative_to_the_file(pki: Path, hashed: str, tmp_path: Path) -> None:
    p = write(tmp_path, f'{{"tls_server_config": {{"cert_file": "{pki}/server.crt", "key_file": "{pki}/server.key"}},'
                        f' "basic_auth_users": {{"u": "{hashed}"}}}}', "web.json")
    web = load(p)
    assert web.ssl_context is not None and list(web.users) == ["u"]
    rel = load(write(pki, "tls_server_config:\n  cert_file: server.crt\n  key_file: ./server.key\n"))
    assert rel.ssl_context is not None


def test_missing_bcrypt_is_a_clear_error(pki: Path, hashed: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "bcrypt", None)
    with pytest.raises(UsageError, match=r"pip install 'logmetrics\[web\]'"):
        load(write(pki, f"basic_auth_users:\n  u: {hashed}\n"))


# -- basic auth -----------------------------------------------------------------------------------

def test_basic_auth(pki: Path, hashed: str, servers: list[Server]) -> None:
    web = load(write(pki, f"basic_auth_users:\n  prometheus: {hashed}\n  other: '{hashed}'\n"))
    s = serve(servers, web)
    assert s.get(None, auth=f"prometheus:{PASSWORD}")[:2] == (200, b"up 1\n")
    assert s.get(None, "/healthz", auth=f"other:{PASSWORD}")[0] == 200
    for auth in (None, "prometheus:wrong", f"nobody:{PASSWORD}", "prometheus:", f"PROMETHEUS:{PASSWORD}",
                 f"prometheus:{PASSWORD}x", "prometheus:" + "a" * 100):
        status, body, headers = s.get(None, auth=auth)
        assert status == 401 and body == b"Unauthorized\n", auth
        assert headers["WWW-Authenticate"].startswith("Basic realm=")
    for header in ("Bearer x", "Basic !!!not-base64", "Basic " + base64.b64encode(b"no-colon").decode(), "Basic"):
        assert s.get(None, header=header)[0] == 401
    for path in ("/healthz", "/", "/nothing"):
        assert s.get(None, path)[0] == 401  # every path, as exporter-toolkit
    assert s.get(None, method="HEAD")[0] == 401


@needs_bcrypt
def test_unknown_user_costs_as_much_as_a_wrong_password(pki: Path) -> None:
    """No user enumeration by timing: an unknown user is checked against a dummy hash of the same cost."""
    h = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=8)).decode()
    web = load(write(pki, f"basic_auth_users:\n  known: {h}\n", "timing.yml"))

    def cost(auth: str) -> float:
        header = "Basic " + base64.b64encode(auth.encode()).decode()
        runs = []
        for _ in range(5):
            t = time.perf_counter()
            assert not web.authorized(header)
            runs.append(time.perf_counter() - t)
        return statistics.median(runs)

    wrong, unknown = cost("known:wrong"), cost("unknown:wrong")
    assert 1 / 3 < unknown / wrong < 3, (unknown, wrong)


def test_successes_are_cached_failures_are_not(pki: Path, hashed: str) -> None:
    web = load(write(pki, f"basic_auth_users:\n  u: {hashed}\n", "cache.yml"))
    good = "Basic " + base64.b64encode(f"u:{PASSWORD}".encode()).decode()
    bad = "Basic " + base64.b64encode(b"u:nope").decode()
    assert web.authorized(good) and web.authorized(good)
    assert len(web._ok) == 1
    assert not web.authorized(bad) and len(web._ok) == 1


# -- TLS ------------------------------------------------------------------------------------------

def tls_config(pki: Path, extra: str = "", name: str = "tls.yml") -> WebConfig:
    return load(write(pki, f"tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n{extra}", name))


def test_tls_with_a_real_client(pki: Path, servers: list[Server]) -> None:
    s = serve(servers, tls_config(pki, "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"))
    status, body, headers = s.get(client_ctx(pki))
    assert (status, body) == (200, b"up 1\n") and headers["X-Frame-Options"] == "deny"
    with pytest.raises(ssl.SSLCertVerificationError):
        s.get(client_ctx(pki, ca="rogue-ca"))  # the client does not trust the server
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError, http.client.BadStatusLine)):
        s.get(None)  # plain HTTP to a TLS port gets nothing
    with urllib.request.urlopen(f"https://127.0.0.1:{s.port}/healthz", context=client_ctx(pki), timeout=10) as r:
        assert r.read() == b"ok\n"


def test_tls_min_version(pki: Path, servers: list[Server]) -> None:
    s = serve(servers, tls_config(pki, "  min_version: TLS13\n", "tls13.yml"))
    ctx = client_ctx(pki)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        s.get(ctx)
    assert s.get(client_ctx(pki))[0] == 200


def test_client_certificates(pki: Path, servers: list[Server]) -> None:
    s = serve(servers, tls_config(pki, "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n"
                                       "  client_allowed_sans: [prometheus.example]\n", "mtls.yml"))
    assert s.get(client_ctx(pki, "client"))[0] == 200
    for cert in (None, "rogue-client", "other-client"):
        with pytest.raises((ssl.SSLError, ConnectionError, http.client.RemoteDisconnected, OSError)):
            s.get(client_ctx(pki, cert))


def test_tls_and_basic_auth_together(pki: Path, hashed: str, servers: list[Server]) -> None:
    s = serve(servers, tls_config(pki, f"basic_auth_users:\n  p: {hashed}\n", "both.yml"))
    assert s.get(client_ctx(pki), auth=f"p:{PASSWORD}")[0] == 200
    assert s.get(client_ctx(pki), auth="p:wrong")[0] == 401


def test_a_client_stuck_in_the_handshake_blocks_nobody(pki: Path, servers: list[Server]) -> None:
    s = serve(servers, tls_config(pki))
    stuck = [socket.create_connection(("127.0.0.1", s.port), timeout=10) for _ in range(3)]
    try:
        t = time.monotonic()
        assert s.get(client_ctx(pki))[0] == 200
        assert time.monotonic() - t < 5
    finally:
        for c in stuck:
            c.close()


# -- serve --------------------------------------------------------------------------------------

def test_serve_with_web_config(pki: Path, hashed: str, tmp_path: Path) -> None:
    log = tmp_path / "requests.log"
    log.write_bytes(b"")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = write(pki, f"tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/server.key\n"
                     f"basic_auth_users:\n  p: {hashed}\n", "serve.yml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGMETRICS_")}
    proc = subprocess.Popen([sys.executable, "-m", "logmetrics", "serve", str(log), "--listen", f"127.0.0.1:{port}",
                             "--state-dir", str(tmp_path / "state"), "--no-table", "--web-config", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 30
        ctx = client_ctx(pki)
        header = {"Authorization": "Basic " + base64.b64encode(f"p:{PASSWORD}".encode()).decode()}
        while True:
            assert proc.poll() is None
            conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
            try:
                conn.request("GET", "/metrics", headers=header)
                r = conn.getresponse()
                body = r.read()
                break
            except (ConnectionRefusedError, ssl.SSLError):
                assert time.monotonic() < deadline, "serve never answered over TLS"
                time.sleep(0.05)  # not listening yet; bounded by the deadline
            finally:
                conn.close()
        assert r.status == 200 and b"logmetrics_records_read_total" in body
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
        try:
            conn.request("GET", "/metrics")
            assert conn.getresponse().status == 401
        finally:
            conn.close()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and b"Traceback" not in err


def test_serve_bad_web_config_is_a_usage_error(pki: Path, tmp_path: Path) -> None:
    cfg = write(pki, "tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n", "broken.yml")
    r = subprocess.run([sys.executable, "-m", "logmetrics", "serve", str(tmp_path / "x.log"), "--web-config", str(cfg),
                        "--state-dir", str(tmp_path / "state")], capture_output=True, timeout=30, cwd=ROOT)
    assert r.returncode == 2 and b"--web-config" in r.stderr and b"cannot load" in r.stderr
    assert r.stderr.count(b"\n") == 1
