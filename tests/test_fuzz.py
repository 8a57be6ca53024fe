"""Property tests (hypothesis) on everything that touches untrusted bytes: the parser, the
aggregator and exposition behind it, and the line splitters of `replay` and of the follower.

Invariants: no exception escapes; `Parser.parse` returns a RequestEvent, a LogEvent, a Skip or
None; what it returns is bounded (error messages cut, caches capped); exposition of whatever was
aggregated is valid Prometheus text; the splitters cut exactly where a reference `bytes.split`
does, whatever the read boundaries, and count every over-long line once.

Inputs: arbitrary bytes; JSON objects whose keys mix the field names of every record shape, with
values of random types, nesting, huge numbers and NaN/Infinity as raw text; real fixture records
with random fields replaced; byte-level damage (invalid UTF-8, cuts, inserted bytes); journald
envelopes with MESSAGE as a string or as an array of byte ints (out-of-range ints included).

Profiles (tests/conftest.py): the default keeps this file to a few seconds; LOGMETRICS_FUZZ=nightly
generates LOGMETRICS_FUZZ_EXAMPLES inputs per test (default 250,000).
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import tempfile
from pathlib import Path
from typing import Any

import msgspec
import pytest
from conftest import NIGHTLY, NIGHTLY_EXAMPLES
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from logmetrics import aggregate, records
from logmetrics.aggregate import Aggregator
from logmetrics.events import LABEL_NAMES, MAX_VALUE, LogEvent, RequestEvent, Skip
from logmetrics.export import exposition
from logmetrics.parse import Parser
from logmetrics.sources import archive
from logmetrics.sources.file import FileFollower, _Tail

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "fixtures" / "sample-logs"


def budget(ci: int, nightly: int = NIGHTLY_EXAMPLES) -> settings:
    """`ci` examples by default; `nightly` (LOGMETRICS_FUZZ_EXAMPLES) with LOGMETRICS_FUZZ=nightly."""
    return settings(max_examples=nightly if NIGHTLY else ci)


# -- inputs -----------------------------------------------------------------------------------


def _struct_fields(*types: type[msgspec.Struct]) -> set[str]:
    return {f.encode_name for t in types for f in msgspec.structs.fields(t)}


FIELDS = sorted(
    _struct_fields(
        records.Line, records.Payload, records.Metadata, records.Usage, records.TokenDetails,
        records.HiddenParams, records.ErrorInformation, records.ZeroCostDiagnostic, records.Facts,
        records.CompactTokens,
    )
    | set(LABEL_NAMES)
    | {"__CURSOR", "_SYSTEMD_UNIT", "traceback", "messages", "headers", "requester_metadata", "color_message"}
)
WORDS = [
    "request", "success", "failure", "post_call_failure", "acompletion", "aembedding", "ERROR", "INFO",
    "WARN", "critical", "", " ", "None", "null", "200", "429", "500", "gpt-4o", "openai", "other",
    "1795333019.8", "1795333019859627", "2026-11-22T10:00:00Z", "2026-11-22T10:00:00", "-1", "nan",
    '"POST /v1/chat/completions HTTP/1.1" 200', "\u2028", "\x1b[31m", "a\nb", "\\", '"', "\udcff"[:0],
]
NUMBERS = [0, 1, -1, 2**31, 2**53 + 1, 2**63, 2**64, 10**30, -(10**30), 1e308, -1e308, 5e-324, 0.5, -0.0, 1e15, 1e12]

scalars = (
    st.none() | st.booleans() | st.integers() | st.sampled_from(NUMBERS)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=24) | st.sampled_from(WORDS)
)
keys = st.sampled_from(FIELDS) | st.text(max_size=6)
json_values = st.recursive(
    scalars, lambda c: st.lists(c, max_size=4) | st.lists(st.tuples(keys, c), max_size=5).map(dict), max_leaves=12
)
objects = st.lists(st.tuples(keys, json_values), max_size=12).map(dict)


def _seeds() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name, n in (
        ("litellm-1.109.1/standard-logging.jsonl", 8),
        ("litellm-1.109.1-callback/requests.log", 12),
        ("litellm-1.109.1/proxy-stdout.log", 12),
        ("litellm-1.109.1/journald.json", 4),
        ("generated/simple-1k.jsonl", 6),
    ):
        lines = [x for x in (SAMPLES / name).read_bytes().splitlines() if x.strip()]
        out += [json.loads(x) for x in lines[:: max(1, len(lines) // n)]]
    return out


SEEDS = _seeds()


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    """A real record with a few fields, at any depth, replaced, added or removed."""
    obj: dict[str, Any] = json.loads(json.dumps(draw(st.sampled_from(SEEDS))))
    for _ in range(draw(st.integers(1, 4))):
        node: Any = obj
        while True:  # walk down a random path
            kids = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
            kids = [(k, v) for k, v in kids if isinstance(v, (dict, list)) and v]
            if not kids or draw(st.booleans()):
                break
            node = draw(st.sampled_from(kids))[1]
        if isinstance(node, dict):
            key = draw(st.sampled_from(sorted(node)) | keys) if node else draw(keys)
            if draw(st.integers(0, 5)) == 0:
                node.pop(key, None)
            else:
                node[key] = draw(json_values)
        elif node:
            node[draw(st.integers(0, len(node) - 1))] = draw(json_values)
    return obj


# b"9" * 300: beyond int64, still a float; 309+ digits crash exposition (pinned below, reported)
RAW_NUMBERS = [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"9" * 300, b"-0", b"1e-400", b"0x10", b"01"]
BAD_BYTES = [b"\xff", b"\xc3(", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x00", b"\xe2\x82", b"\\", b'"', b"\\u", b"{"]
_NUMBER = re.compile(rb"(?<=[:\[,] )-?\d+(\.\d+)?([eE][-+]?\d+)?|(?<=[:\[,])-?\d+(\.\d+)?([eE][-+]?\d+)?")


@st.composite
def damaged(draw: st.DrawFn, text: bytes) -> bytes:
    """Byte-level damage: numbers as raw NaN/Infinity/huge, invalid UTF-8, cuts, inserts."""
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.integers(0, 3))
        if op == 0:
            spans = [m.span() for m in _NUMBER.finditer(text)]
            if spans:
                a, b = draw(st.sampled_from(spans))
                text = text[:a] + draw(st.sampled_from(RAW_NUMBERS)) + text[b:]
        elif op == 1 and text:
            i = draw(st.integers(0, len(text)))
            text = text[:i] + draw(st.sampled_from(BAD_BYTES) | st.binary(max_size=4)) + text[i:]
        elif op == 2 and text:
            text = text[: draw(st.integers(0, len(text)))]
        elif op == 3:
            text = b" " * draw(st.integers(0, 2)) + text + draw(st.sampled_from([b"", b" ", b"\r", b"\t", b",", b"}"]))
    return text


def encode(obj: Any) -> bytes:
    return json.dumps(obj, allow_nan=True, ensure_ascii=False).encode("utf-8", "surrogatepass")


@st.composite
def envelope(draw: st.DrawFn, inner: bytes) -> bytes:
    """A `journalctl -o json` line around `inner`: MESSAGE as text, or as byte ints (possibly out of range)."""
    if draw(st.booleans()):
        message: Any = inner.decode("utf-8", "replace")
    else:
        message = list(inner)
        if message and draw(st.integers(0, 4)) == 0:
            message[draw(st.integers(0, len(message) - 1))] = draw(st.sampled_from([256, -1, 2**40, 1.5, "x", None]))
    env: dict[str, Any] = {"MESSAGE": message, "__CURSOR": "s=1;i=2", "_SYSTEMD_UNIT": "litellm.service"}
    if draw(st.booleans()):
        env["__REALTIME_TIMESTAMP"] = draw(
            st.sampled_from(["1795333000845302", "0", "", "-5", "9" * 40, "1e3", " 12"]) | st.text(max_size=8)
        )
    if draw(st.booleans()):
        env["PRIORITY"] = draw(st.sampled_from(["0", "3", "6", "7", "8", "99", "", "x"]) | st.text(max_size=3))
    return encode(env)


@st.composite
def record_lines(draw: st.DrawFn) -> bytes:
    obj = draw(st.one_of(mutated(), objects, mutated()))
    line = encode(obj)
    if draw(st.integers(0, 3)) == 0:
        line = draw(envelope(line))
    if draw(st.integers(0, 2)) == 0:
        line = draw(damaged(line))
    return line


# -- checks -----------------------------------------------------------------------------------

_FLOATS = ("spend", "total_latency", "api_latency", "ttft", "queue_time", "overhead_latency",
           "latency_per_output_token")


def check_result(r: object) -> None:
    assert r is None or isinstance(r, (RequestEvent, LogEvent, Skip)), type(r)
    if isinstance(r, RequestEvent):
        assert math.isfinite(r.time), r.time
        assert r.error_message is None or len(r.error_message) <= 300
        for name in _FLOATS:
            v = getattr(r, name)
            assert v is None or -MAX_VALUE < v < MAX_VALUE, (name, v)  # finite; the exact sums need it
        msgspec.json.encode(r)  # every field is plain data
    elif isinstance(r, LogEvent):
        assert r.time is None or math.isfinite(r.time)
        assert r.level in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def parse_checked(parser: Parser, line: bytes) -> object:
    r = parser.parse(line)
    check_result(r)
    assert parser.parse(line) == r  # deterministic, no state leaks between lines
    return r


PARSER = Parser()
PARSER_END_USER = Parser(end_user_label=True, max_line_bytes=4096)


# -- the parser -------------------------------------------------------------------------------


@budget(300)
@given(st.binary(max_size=300))
def test_parse_arbitrary_bytes(line: bytes) -> None:
    parse_checked(PARSER, line)
    parse_checked(PARSER, b"{" + line)
    parse_checked(PARSER_END_USER, b'{"MESSAGE":' + line)


@budget(80)
@given(record_lines())
def test_parse_record_shaped_json(line: bytes) -> None:
    parse_checked(PARSER, line)
    parse_checked(PARSER_END_USER, line)


@budget(60)
@given(objects)
def test_parse_objects_inside_a_logmetrics_record(obj: dict[str, Any]) -> None:
    """Random payloads, facts and labels under a well-formed record header."""
    for hook in ("success", "failure", "post_call_failure"):
        rec = {"logmetrics_record": "request", "version": 1, "hook": hook, "time": 1795333019.8,
               "payload": obj, "facts": obj, "labels": obj}
        parse_checked(PARSER, encode(rec))


SEED_LINES = [encode(x) for x in SEEDS]
TOKENS = [
    *(f'"{k}":'.encode() for k in FIELDS), *RAW_NUMBERS, *BAD_BYTES, b"{", b"}", b"[", b"]", b",", b":", b'"',
    b"null", b"true", b"[1,2]", b'{"a":{}}', b"\\u0000", b"\\ud800", b"\n", b"\r", b" ",
]
LINES_PER_EXAMPLE = 1000
_DIGITS = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
def mutate_bytes(rnd: random.Random, line: bytes) -> bytes:
    """A cheap random mutator (libFuzzer-like): flips, inserts from a dictionary of JSON tokens and
    field names, deletions, duplications, splices with other records, journald wrapping."""
    b = bytearray(line)
    for _ in range(rnd.randint(1, 8)):
        op = rnd.randrange(7)
        i = rnd.randint(0, len(b))
        if op == 0 and b:
            b[min(i, len(b) - 1)] = rnd.randrange(256)
        elif op == 1:
            b[i:i] = rnd.choice(TOKENS)
        elif op == 2:
            del b[i : i + rnd.randint(1, 64)]
        elif op == 3:
            j = rnd.randint(0, len(b))
            b[i:i] = b[min(i, j) : max(i, j)][:4096]
        elif op == 4:
            other = rnd.choice(SEED_LINES)
            b = b[:i] + other[rnd.randint(0, len(other)) :]
        elif op == 5:
            m = _DIGITS.search(b, i) or _DIGITS.search(b)
            if m:
                b[m.start() : m.end()] = rnd.choice(RAW_NUMBERS)
        elif op == 6 and rnd.randrange(4) == 0:
            inner: Any = list(b) if rnd.randrange(2) else bytes(b).decode("utf-8", "replace")
            b = bytearray(encode({"MESSAGE": inner, "__REALTIME_TIMESTAMP": str(rnd.randrange(10**17))}))
    return bytes(b)


@budget(4, 1000)
@given(st.integers(0, 2**64))
def test_parse_random_mutations_of_real_records(seed: int) -> None:
    """LINES_PER_EXAMPLE mutated fixture lines per example: the bulk of the nightly 1M inputs."""
    rnd = random.Random(seed)
    agg = Aggregator(max_series=50)
    for _ in range(LINES_PER_EXAMPLE):
        r = PARSER.parse(mutate_bytes(rnd, rnd.choice(SEED_LINES)))
        check_result(r)
        agg.add(r)
    assert list(text_string_to_metric_families(exposition(agg).decode()))


@budget(20, 200)
@given(st.integers(1, 40))
def test_deep_nesting_is_a_skip(depth_k: int) -> None:
    for opener, closer in ((b'{"a":', b"}"), (b"[", b"]"), (b'{"payload":', b"}"), (b'{"MESSAGE":', b"}")):
        n = depth_k * 250
        assert isinstance(PARSER.parse(opener * n + b"1" + closer * n), (Skip, type(None), RequestEvent, LogEvent))


@pytest.mark.parametrize("shape", ["payload", "compact"])
def test_huge_token_count_does_not_break_exposition(shape: str) -> None:
    huge = "9" * 400
    if shape == "payload":
        line = (b'{"status":"success","call_type":"acompletion","model":"m","model_group":"g","startTime":1.0,'
                b'"endTime":2.0,"prompt_tokens":%s,"metadata":{"user_api_key_hash":"h"}}' % huge.encode())
    else:
        line = b'{"model":"m","latency_ms":5,"tokens":{"prompt":%s}}' % huge.encode()
    agg = Aggregator()
    agg.add(PARSER.parse(line))
    assert list(text_string_to_metric_families(exposition(agg).decode()))


def test_lone_surrogate_in_a_label_does_not_break_exposition() -> None:
    line = b'{"message":"127.0.0.1:1 - \\"GET /v1\\ud800/models HTTP/1.1\\" 200","level":"INFO"}'
    agg = Aggregator()
    agg.add(PARSER.parse(line))
    assert list(text_string_to_metric_families(exposition(agg).decode()))


def test_compact_cache_stays_bounded() -> None:
    parser = Parser()
    for i in range(10_000):
        parser.parse(b'{"model":"m%d","provider":"p%d","latency_ms":1}' % (i, i))
    assert len(parser._compact) <= 4096


def test_overflow_caches_stay_bounded() -> None:
    """Folded signatures are cached for the hot loop, and label values interned: both up to a
    bound, whatever the number of distinct label sets, and the folded records are all counted."""
    from logmetrics import slp

    agg = Aggregator(max_series=5)
    for i in range(3_000):
        agg.add(PARSER.parse(b'{"status":"success","call_type":"acompletion","model":"m","model_group":"g",'
                             b'"metadata":{"user_api_key_hash":"k%d","requester_ip_address":"ip%d"}}' % (i, i)))
    assert len(agg._slots) <= len(agg.acc) <= 5 + 1
    assert 0 < len(agg._folded_slots) <= aggregate._FOLDED_SLOTS < 3_000 - 5
    assert len(slp._STRINGS) <= slp._MAX_STRINGS
    assert agg.series_dropped["litellm_requests_metric"] == 3_000 - 5
    assert sum(acc[0] for acc in agg.acc.values()) == 3_000


@budget(15, NIGHTLY_EXAMPLES // 10)
@given(st.lists(record_lines(), min_size=1, max_size=25), st.integers(1, 30))
def test_pipeline_exposition_is_always_valid(lines: list[bytes], max_series: int) -> None:
    """Whatever is parsed, aggregation and exposition never raise, and the text parses back."""
    agg = Aggregator(max_series=max_series)
    for line in lines:
        agg.add(PARSER.parse(line))
    text = exposition(agg).decode()
    families = list(text_string_to_metric_families(text))
    assert any(f.name.startswith("logmetrics_") for f in families)
    series = {(f.name, tuple(sorted(s.labels.items()))) for f in families for s in f.samples}
    assert len(series) <= 60 * (max_series + 1) + 200  # bounded by the cap, not by the input


# -- the splitters ----------------------------------------------------------------------------

PIECES = [b"\n", b"\r", b"\r\n", b"\0", b"\0\0\0", b"x", b"yy", b"z" * 7, b"{}", b"\xff", b"long-" * 4]
texts = st.lists(st.sampled_from(PIECES) | st.binary(max_size=5), max_size=60).map(b"".join)
sizes = st.lists(st.integers(1, 40), min_size=1, max_size=12)


class Chunked:
    """A stream whose reads return the sizes given, in turn (short reads, as pipes give)."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self.data, self.sizes, self.pos, self.i = data, sizes, 0, 0

    def read(self, size: int = -1, /) -> bytes:
        n = self.sizes[self.i % len(self.sizes)]
        self.i += 1
        n = n if size < 0 else min(n, size)
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out


def reference_replay(data: bytes, limit: int) -> tuple[list[bytes], int]:
    """What archive._split must yield: split at newlines and NUL runs; lines over the limit
    (their b"\\r" included) counted, not yielded; one trailing b"\\r" removed; empty lines left out."""
    out, too_long = [], 0
    for part in re.sub(rb"\x00+", b"\n", data).split(b"\n"):
        if len(part) > limit:
            too_long += 1
            continue
        part = part[:-1] if part.endswith(b"\r") else part
        if part:
            out.append(part)
    return out, too_long


def lines_of(items: list[bytes | archive.Lines], limit: int) -> list[bytes]:
    """`each_line(items)`, checking what a `Lines` block promises: its count, no b"\\r" or NUL,
    no line over the limit."""
    for item in items:
        if isinstance(item, archive.Lines):
            text = item.data[item.start : item.stop]
            assert item.n == text.count(b"\n") + 1
            assert b"\r" not in text and b"\0" not in text
            assert all(len(line) <= limit for line in text.split(b"\n"))
    return list(archive.each_line(items))


@budget(200)
@given(texts, sizes, st.integers(1, 24), st.booleans())
def test_replay_splitter_matches_reference(data: bytes, chunk_sizes: list[int], limit: int, blocks: bool) -> None:
    stats = archive.ReadStats()
    got = lines_of(list(archive._split(Chunked(data, chunk_sizes), stats, limit, blocks=blocks)), limit)
    assert (got, stats.too_long) == reference_replay(data, limit)
    assert stats.bytes_read == len(data)


def _sparse_file(path: str, segments: list[tuple[int, bytes]]) -> bytes:
    """A file with data at the given offsets and holes between; returns its full contents."""
    size = max((off + len(b) for off, b in segments), default=0) + 3
    with open(path, "wb") as f:
        f.truncate(size)
        for off, b in segments:
            f.seek(off)
            f.write(b)
    with open(path, "rb") as f:
        return f.read()


@budget(30, NIGHTLY_EXAMPLES // 10)
@given(st.lists(st.tuples(st.integers(0, 1 << 20), texts), max_size=5), st.integers(1, 64))
def test_replay_splitter_over_sparse_holes(segments: list[tuple[int, bytes]], limit: int) -> None:
    """Real files with holes (skipped by SEEK_DATA, never read) split as if the zeros were read."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "sparse.log")
        data = _sparse_file(path, segments)
        stats = archive.ReadStats()
        got = list(archive.read_lines([path], stats, limit))
        blocks = archive.ReadStats()
        got_blocks = lines_of(list(archive.read_blocks([path], blocks, limit)), limit)
    assert (got, stats.too_long) == reference_replay(data, limit)
    assert (got_blocks, blocks.too_long, blocks.bytes_read) == (got, stats.too_long, stats.bytes_read)
    assert stats.bytes_read == len(data)


_FOLLOWER_DIR = tempfile.mkdtemp(prefix="lm-fuzz-")
_FOLLOWER = FileFollower(os.path.join(_FOLLOWER_DIR, "x.log"), backend="poll")


def follow_split(data: bytes, chunk_sizes: list[int], limit: int, batch: int) -> tuple[list[bytes], int, _Tail]:
    """Feeds `data` to FileFollower._split as _drain does: each read starts at the tail's read position."""
    f = _FOLLOWER
    f.max_line_bytes, f.max_batch_lines = limit, batch
    t = _Tail(source="", path="", real_dir="", real_name="", fd=-1, dev=0, ino=0, seq=0)
    out: list[bytes] = []
    skipped = 0
    for i in range(10 * len(data) + 10):
        if t.read_pos >= len(data):
            break
        n = chunk_sizes[i % len(chunk_sizes)]
        lines, sk = f._split(t, data[t.read_pos : t.read_pos + n])
        assert len(lines) <= batch
        out += lines
        skipped += sk
    else:  # pragma: no cover
        raise AssertionError("the follower's splitter made no progress")
    return out, skipped, t


def reference_follow(data: bytes, limit: int) -> tuple[list[bytes], int]:
    """Complete lines only; lines over the limit (their b"\\r" included, as replay measures them)
    counted, not yielded; one trailing b"\\r" removed; empty lines left out."""
    parts = data.split(b"\n")
    parts.pop()  # unterminated: stays partial
    out, too_long = [], 0
    for part in parts:
        if len(part) > limit:
            too_long += 1
            continue
        body = part[:-1] if part.endswith(b"\r") else part
        if body:
            out.append(body)
    return out, too_long


@budget(200)
@given(texts, sizes, st.integers(1, 24), st.integers(1, 5))
def test_follower_splitter_matches_reference(data: bytes, chunk_sizes: list[int], limit: int, batch: int) -> None:
    got, skipped, t = follow_split(data, chunk_sizes, limit, batch)
    if b"\0" in data:
        # A NUL run (a sparse hole) ends a line: what follows it starts a new one. How much of an
        # over-long line before a hole is skipped depends on read boundaries, so check the rule
        # itself: no NUL survives, every line is the tail of a complete raw line after its last
        # NUL, none is over the limit, and the checkpoint is still after the last newline.
        raw = data.split(b"\n")[:-1]
        tails = {r[r.rfind(b"\0") + 1 :] for r in raw} | {r[r.rfind(b"\0") + 1 : -1] for r in raw}
        assert all(b"\0" not in x and x in tails and 0 < len(x) <= limit for x in got)
        end = data.rfind(b"\n") + 1
        # the checkpoint is after the last line end: a newline, or the NUL that ended a skipped line
        assert t.offset == end or (t.offset > end and (t.skipping or data[t.offset - 1] == 0))
        return
    assert (got, skipped) == reference_follow(data, limit)
    end = data.rfind(b"\n") + 1
    assert t.offset == end or (t.skipping and t.offset >= end)  # the checkpoint is after the last line


def test_follower_nul_run_ends_a_line() -> None:
    """A hole's zeros are not part of the record written after them, whatever the read sizes."""
    data = b'{"a":1}\n' + b"\0" * 40 + b'{"b":2}\n'
    for sizes in ([len(data)], [10, 7, 100], [1] * len(data)):
        got, skipped, _ = follow_split(data, sizes, 64, 10)
        assert got == [b'{"a":1}', b'{"b":2}'] and skipped == 0, sizes
    got, skipped, _ = follow_split(data, [len(data)], 16, 10)  # a hole longer than the limit
    assert got[0] == b'{"a":1}' and got[-1] == b'{"b":2}'


def test_follower_splitter_crlf_boundary_is_consistent() -> None:
    """A line of exactly the limit followed by b"\\r\\n" is too long (its b"\\r" counts, as in
    replay), whether or not a read ends between the b"\\r" and the b"\\n" (it was kept when
    both came in one read, skipped when not)."""
    for sizes in ([7], [6, 1], [5, 2]):
        assert follow_split(b"12345\r\n1234\r\n", sizes, 5, 10)[:2] == ([b"1234"], 1), sizes


@budget(10, 200)
@given(st.integers(1, 8), st.integers(0, 2**32))
def test_replay_splitter_memory_is_bounded(megabytes: int, seed: int) -> None:
    """An over-long line streamed in random pieces is never held: pending bytes stay under
    limit + one read, whatever the line's length."""
    import tracemalloc

    rnd = random.Random(seed)
    limit = 64 * 1024
    piece = b"a" * (256 * 1024)
    total = megabytes << 20

    class Endless:
        def __init__(self) -> None:
            self.left = total

        def read(self, size: int = -1, /) -> bytes:
            if self.left <= 0:
                return b""
            n = min(self.left, rnd.randint(1, len(piece)))
            self.left -= n
            return piece[:n] if self.left else piece[: n - 1] + b"\n"

    stats = archive.ReadStats()
    tracemalloc.start()
    try:
        for _ in archive._split(Endless(), stats, limit):
            raise AssertionError("an over-long line was yielded")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stats.too_long == 1
    assert peak < limit + 3 * len(piece), peak


def _envelope_line(i: int, pad: int, cursor: bool) -> bytes:
    body = b'"MESSAGE":"' + b"m" * pad + b'"'
    return b"{" + (b'"__CURSOR":"s=a;i=%d",' % i if cursor else b"") + body + b"}"


@budget(200)
@given(st.lists(st.tuples(st.integers(0, 60), st.booleans()), max_size=30), sizes, st.integers(20, 70),
       st.booleans())
def test_journald_splitter_matches_reference(
    spec: list[tuple[int, bool]], chunk_sizes: list[int], limit: int, unterminated: bool
) -> None:
    """journald's splitter: complete lines as bytes.split gives them, over-long ones counted, and the
    cursor reported is the one of the last complete line that has one (dropped lines included)."""
    from logmetrics.sources.journald import _LineSplitter

    stream_lines = [_envelope_line(i, pad, cursor) for i, (pad, cursor) in enumerate(spec)]
    data = b"".join(x + b"\n" for x in stream_lines) + (b'{"__CURSOR":"s=a;i=999"' if unterminated else b"")
    splitter = _LineSplitter(max_len=limit)
    got: list[bytes] = []
    skipped = 0
    last_cursor: str | None = None
    pos, i = 0, 0
    while pos < len(data):
        n = chunk_sizes[i % len(chunk_sizes)]
        i += 1
        out, k, cursor = splitter.feed(data[pos : pos + n])
        pos += n
        got += out
        skipped += k
        last_cursor = cursor if cursor is not None else last_cursor
    assert got == [x for x in stream_lines if len(x) <= limit]
    assert skipped == sum(len(x) > limit for x in stream_lines)
    with_cursor = [i for i, (_, c) in enumerate(spec) if c]
    want = f"s=a;i={with_cursor[-1]}" if with_cursor else None
    if with_cursor and with_cursor[-1] != len(spec) - 1:
        want_ok = {want, None} | {f"s=a;i={j}" for j in with_cursor}  # a line without cursor came last
        assert last_cursor in want_ok
    else:
        assert last_cursor == want
