"""`--web-config FILE`: TLS and basic auth for /metrics, from a Prometheus exporter-toolkit web
configuration file (the file node_exporter's `--web.config.file` reads), so one file serves both.

    tls_server_config:
      cert_file: server.crt          # relative paths are relative to the config file
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert   # default NoClientCert
      client_ca_file: clients-ca.crt
      min_version: TLS12             # TLS10..TLS13; default TLS12
      client_allowed_sans: [prometheus.example.org]
    http_server_config:
      headers: {X-Content-Type-Options: nosniff}
    basic_auth_users:
      prometheus: $2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG   # bcrypt

The file is the simple YAML these files are written in (block mappings, `- ` and `[a, b]` lists,
plain or quoted scalars, comments), or JSON; anchors, multi-line scalars and tags are not read
(the standard library has no YAML, and this subset needs no dependency). Unknown keys are errors,
as in exporter-toolkit. bcrypt hashes need the `bcrypt` package (`pip install 'logmetrics[web]'`);
TLS alone needs nothing beyond the standard library.

Settings exporter-toolkit has and Python's `ssl` cannot express are refused with a message, not
ignored: `RequestClientCert`/`RequireAnyClientCert` (a client certificate asked for but not
verified), `curve_preferences`, inline `cert`/`key`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import ssl
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from logmetrics.errors import UsageError

__all__ = ["WebConfig", "load", "parse_yaml"]


_TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                 "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
_CLIENT_AUTH = {"NoClientCert": ssl.CERT_NONE, "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
                "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}
_UNVERIFIED_AUTH = ("RequestClientCert", "RequireAnyClientCert")
# Go's names of the TLS 1.2 suites it considers secure -> OpenSSL's (TLS 1.3 suites are not configurable)
_CIPHERS = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
}
_TLS_KEYS = {"cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version", "max_version",
             "cipher_suites", "prefer_server_cipher_suites", "client_allowed_sans", "curve_preferences",
             "cert", "key"}
_BCRYPT = re.compile(r"^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$")


@dataclass
class WebConfig:
    """What serve's HTTP server needs: a TLS context (or None: plain HTTP), the basic-auth users
    (empty: no auth), headers added to every response, and the SANs a client certificate must name."""

    ssl_context: ssl.SSLContext | None = None
    users: dict[str, bytes] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    allowed_sans: list[str] = field(default_factory=list)
    # a hash of a random password at the users' highest cost: an unknown user costs one check too
    _dummy: bytes = field(default=b"", repr=False)
    _ok: OrderedDict[bytes, None] = field(default_factory=OrderedDict, repr=False)

    def authorized(self, authorization: str | None) -> bool:
        """Checks an `Authorization` header against `users`. Always True without users. The time
        taken does not tell whether the user exists; successes are cached (keyed by a digest of
        user, password and hash) so a scrape costs one bcrypt check per new credential, as in
        exporter-toolkit."""
        if not self.users:
            return True
        user, password = _basic(authorization)
        hashed = self.users.get(user) if user is not None else None
        if password is None or len(password) > 72:  # bcrypt's limit; longer never matches
            password = b""
        key = hashlib.sha256(b"\0".join([(user or "").encode(), password, hashed or b""])).digest()
        if hashed is not None and key in self._ok:
            self._ok.move_to_end(key)
            return True
        ok = _checkpw(password, hashed if hashed is not None else self._dummy)
        ok = ok and hashed is not None and user is not None and bool(password)
        if ok:
            self._ok[key] = None
            while len(self._ok) > 256:
                self._ok.popitem(last=False)
        return ok

    def client_allowed(self, peercert: dict[str, Any] | None) -> bool:
        """A verified client certificate names one of `allowed_sans` (always True without them)."""
        if not self.allowed_sans:
            return True
        names = {str(v) for _, v in (peercert or {}).get("subjectAltName", ())}
        return any(hmac.compare_digest(n.encode(), a.encode()) for n in names for a in self.allowed_sans)


def _basic(authorization: str | None) -> tuple[str | None, bytes | None]:
    if not authorization:
        return None, None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        raw = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None, None
    user, sep, password = raw.partition(b":")
    if not sep:
        return None, None
    return user.decode("utf-8", "replace"), password


def _checkpw(password: bytes, hashed: bytes) -> bool:
    import bcrypt  # type: ignore[import-not-found,unused-ignore]  # checked at load time

    try:
        return bool(bcrypt.checkpw(password, hashed))
    except ValueError:
        return False


def load(path: str | Path) -> WebConfig:
    """Reads and checks a web config file; UsageError (a usage error) names what is wrong."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--web-config {path}: {getattr(e, 'strerror', None) or e}") from None
    try:
        doc = json.loads(text) if text.lstrip().startswith("{") else parse_yaml(text)
    except ValueError as e:
        raise UsageError(f"--web-config {path}: {e}") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise UsageError(f"--web-config {path}: expected a mapping at the top")
    return _build(doc, path)


def _build(doc: dict[str, Any], path: Path) -> WebConfig:
    def fail(message: str) -> UsageError:
        return UsageError(f"--web-config {path}: {message}")

    unknown = set(doc) - {"tls_server_config", "http_server_config", "basic_auth_users"}
    if unknown:
        raise fail(f"unknown setting {sorted(unknown)[0]!r}")
    web = WebConfig()
    tls = doc.get("tls_server_config") or {}
    if not isinstance(tls, dict):
        raise fail("tls_server_config must be a mapping")
    if tls:
        web.ssl_context, web.allowed_sans = _tls(tls, path.parent, fail)
    http = doc.get("http_server_config") or {}
    if not isinstance(http, dict) or set(http) - {"http2", "headers"}:
        raise fail("http_server_config takes http2 and headers")
    headers = http.get("headers") or {}
    if not isinstance(headers, dict):
        raise fail("http_server_config.headers must be a mapping")
    web.headers = {str(k): str(v) for k, v in headers.items()}
    users = doc.get("basic_auth_users") or {}
    if not isinstance(users, dict):
        raise fail("basic_auth_users must be a mapping of user: bcrypt hash")
    for user, hashed in users.items():
        if not isinstance(hashed, str) or not _BCRYPT.match(hashed):
            raise fail(f"basic_auth_users {user!r}: not a bcrypt hash (htpasswd -nBC 10 '' | tr -d ':\\n' makes one)")
        web.users[str(user)] = hashed.encode()
    if web.users:
        try:
            import bcrypt  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            raise fail("basic_auth_users needs the bcrypt package: pip install 'logmetrics[web]'") from None
        cost = max(int(h[4:6]) for h in web.users.values())
        web._dummy = bcrypt.hashpw(os.urandom(16), bcrypt.gensalt(rounds=max(4, min(cost, 31))))
    return web


def _tls(tls: dict[str, Any], base: Path, fail: Any) -> tuple[ssl.SSLContext, list[str]]:
    unknown = set(tls) - _TLS_KEYS
    if unknown:
        raise fail(f"tls_server_config: unknown setting {sorted(unknown)[0]!r}")
    for key in ("curve_preferences", "cert", "key"):
        if key in tls:
            raise fail(f"tls_server_config.{key} is not supported; remove it"
                       + (" and use cert_file/key_file" if key in ("cert", "key") else ""))
    if not tls.get("cert_file") or not tls.get("key_file"):
        raise fail("tls_server_config needs cert_file and key_file")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    versions = (("min_version", "minimum_version", "TLS12"), ("max_version", "maximum_version", "TLS13"))
    for key, attr, default in versions:
        name = str(tls.get(key) or default)
        if name not in _TLS_VERSIONS:
            raise fail(f"tls_server_config.{key} {name!r}: give one of {', '.join(_TLS_VERSIONS)}")
        setattr(ctx, attr, _TLS_VERSIONS[name])
    if ctx.minimum_version > ctx.maximum_version:
        raise fail("tls_server_config: min_version is above max_version")

    def file(key: str) -> str:
        p = Path(os.path.expanduser(str(tls[key])))
        return str(p if p.is_absolute() else base / p)

    try:
        ctx.load_cert_chain(file("cert_file"), file("key_file"))
    except (OSError, ssl.SSLError) as e:
        raise fail(f"cannot load cert_file/key_file: {getattr(e, 'strerror', None) or e}") from None
    auth = str(tls.get("client_auth_type") or "NoClientCert")
    if auth in _UNVERIFIED_AUTH:
        raise fail(f"client_auth_type {auth} (a certificate asked for but not verified) is not supported: "
                   "use VerifyClientCertIfGiven or RequireAndVerifyClientCert with client_ca_file")
    if auth not in _CLIENT_AUTH:
        raise fail(f"client_auth_type {auth!r}: give one of {', '.join(_CLIENT_AUTH)}")
    ctx.verify_mode = _CLIENT_AUTH[auth]
    if tls.get("client_ca_file"):
        try:
            ctx.load_verify_locations(file("client_ca_file"))
        except (OSError, ssl.SSLError) as e:
            raise fail(f"cannot load client_ca_file: {getattr(e, 'strerror', None) or e}") from None
    elif ctx.verify_mode != ssl.CERT_NONE:
        raise fail(f"client_auth_type {auth} needs client_ca_file")
    suites = tls.get("cipher_suites") or []
    if suites:
        bad = [s for s in suites if s not in _CIPHERS]
        if bad:
            raise fail(f"cipher_suites: {bad[0]!r} is not supported; give some of {', '.join(sorted(_CIPHERS))}")
        ctx.set_ciphers(":".join(_CIPHERS[s] for s in suites))
    if tls.get("prefer_server_cipher_suites", True) is not False:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    sans = tls.get("client_allowed_sans") or []
    if not isinstance(sans, list) or (sans and ctx.verify_mode == ssl.CERT_NONE):
        raise fail("client_allowed_sans is a list, and needs a client_auth_type that verifies certificates")
    return ctx, [str(s) for s in sans]


# -- the YAML subset --------------------------------------------------------------------------

_KEY = re.compile(r"""^(?P<key>"(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^'"#:\s][^:#]*?)\s*:(?:\s+|$)(?P<rest>.*)$""")


def parse_yaml(text: str) -> Any:
    """The YAML of web config files: nested block mappings, block (`- x`) and flow (`[a, b]`)
    lists of scalars, flow mappings of scalars (`{a: b}`), plain/quoted scalars, comments.
    ValueError (naming the line) on anything else."""
    rows: list[tuple[int, int, str]] = []  # (line number, indent, content)
    for n, raw in enumerate(text.splitlines(), 1):
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            raise ValueError(f"line {n}: tabs are not allowed for indentation")
        content = _strip_comment(raw).rstrip()
        if content.strip() in ("", "---"):
            continue
        if content.strip() in ("...",):
            break
        rows.append((n, len(content) - len(content.lstrip()), content.strip()))
    if not rows:
        return None
    value, i = _block(rows, 0, rows[0][1])
    if i != len(rows):
        raise ValueError(f"line {rows[i][0]}: unexpected indentation")
    return value


def _block(rows: list[tuple[int, int, str]], i: int, indent: int) -> tuple[Any, int]:
    if rows[i][2].startswith("- ") or rows[i][2] == "-":
        items: list[Any] = []
        while i < len(rows) and rows[i][1] == indent and (rows[i][2].startswith("- ") or rows[i][2] == "-"):
            n, _, content = rows[i]
            item = content[1:].strip()
            if not item or _KEY.match(item):
                raise ValueError(f"line {n}: only lists of plain values are supported")
            items.append(_scalar(item, n))
            i += 1
        return items, i
    mapping: dict[str, Any] = {}
    while i < len(rows) and rows[i][1] == indent:
        n, _, content = rows[i]
        m = _KEY.match(content)
        if m is None:
            raise ValueError(f"line {n}: expected 'key: value'")
        key = str(_scalar(m.group("key").strip(), n))
        if key in mapping:
            raise ValueError(f"line {n}: {key!r} is given twice")
        rest = m.group("rest").strip()
        i += 1
        if rest:
            mapping[key] = _scalar(rest, n)
        elif i < len(rows) and (rows[i][1] > indent or (rows[i][1] == indent and rows[i][2].startswith("-"))):
            mapping[key], i = _block(rows, i, rows[i][1])
        else:
            mapping[key] = None
    if i < len(rows) and rows[i][1] > indent:
        raise ValueError(f"line {rows[i][0]}: unexpected indentation")
    return mapping, i


def _strip_comment(line: str) -> str:
    quote = ""
    for j, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"" and (j == 0 or line[j - 1] in " \t:[{,-"):
            quote = ch
        elif ch == "#" and (j == 0 or line[j - 1] in " \t"):
            return line[:j]
    return line


def _scalar(text: str, n: int) -> Any:
    if text[:1] in ("&", "*", "!", "|", ">", "%", "@", "`"):
        raise ValueError(f"line {n}: YAML anchors, tags and block scalars are not supported")
    if text.startswith('"'):
        try:
            return json.loads(text)
        except ValueError:
            raise ValueError(f"line {n}: bad double-quoted string") from None
    if text.startswith("'"):
        if len(text) < 2 or not text.endswith("'"):
            raise ValueError(f"line {n}: bad single-quoted string")
        return text[1:-1].replace("''", "'")
    if text.startswith("["):
        if not text.endswith("]"):
            raise ValueError(f"line {n}: a flow list must end on its line")
        inner = text[1:-1].strip()
        return [_scalar(x.strip(), n) for x in _split_flow(inner, n)] if inner else []
    if text.startswith("{"):
        if not text.endswith("}"):
            raise ValueError(f"line {n}: a flow mapping must end on its line")
        out: dict[str, Any] = {}
        for part in _split_flow(text[1:-1].strip(), n) if text[1:-1].strip() else []:
            k, sep, v = part.partition(":")
            if not sep:
                raise ValueError(f"line {n}: expected 'key: value' in a flow mapping")
            out[str(_scalar(k.strip(), n))] = _scalar(v.strip(), n) if v.strip() else None
        return out
    lowered = text.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    if lowered in ("null", "~"):
        return None
    if re.fullmatch(r"[-+]?\d+", text):
        return int(text)
    return text


def _split_flow(inner: str, n: int) -> list[str]:
    parts, depth, quote, start = [], 0, "", 0
    for j, ch in enumerate(inner):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(inner[start:j])
            start = j + 1
    if quote or depth:
        raise ValueError(f"line {n}: unbalanced flow collection")
    parts.append(inner[start:])
    return [p for p in parts if p.strip()]
