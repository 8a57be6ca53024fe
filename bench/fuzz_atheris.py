"""Coverage-guided fuzzing of the parser, the aggregator and exposition with atheris (libFuzzer).
Not run in CI. Needs `pip install atheris` (a binary wheel for CPython on Linux x86-64).

    python bench/fuzz_atheris.py -max_total_time=600 -max_len=8192 -dict=/tmp/logmetrics-fuzz.dict /tmp/lm-corpus

The dictionary (field names of every record shape, JSON number oddities) is written to
/tmp/logmetrics-fuzz.dict before libFuzzer reads its flags. An empty corpus directory is seeded
with sample-log lines. A crash is an exception escaping `Parser.parse`, a result that is not an
event, a Skip or None, or exposition that fails; libFuzzer writes the input to crash-<sha1>.
Each input is also parsed as the MESSAGE of a journald envelope, as text and as byte ints.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from logmetrics.aggregate import Aggregator
    from logmetrics.events import LogEvent, RequestEvent, Skip
    from logmetrics.export import exposition
    from logmetrics.parse import Parser

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "fixtures" / "sample-logs"
PARSER = Parser()
AGG = Aggregator(max_series=64)
_N = [0]


def check(line: bytes) -> None:
    r = PARSER.parse(line)
    if not (r is None or isinstance(r, (RequestEvent, LogEvent, Skip))):
        raise AssertionError(f"parse returned {type(r)}")
    AGG.add(r)


def one_input(data: bytes) -> None:
    check(data)
    check(json.dumps({"MESSAGE": data.decode("utf-8", "replace"), "__REALTIME_TIMESTAMP": "1795333000845302"}).encode())
    check(json.dumps({"MESSAGE": list(data[:2048])}).encode())
    _N[0] += 1
    if _N[0] % 5000 == 0:
        exposition(AGG)


def seed_corpus(directory: str) -> None:
    if os.listdir(directory):
        return
    n = 0
    for name in ("litellm-1.109.1/standard-logging.jsonl", "litellm-1.109.1-callback/requests.log",
                 "litellm-1.109.1/proxy-stdout.log", "litellm-1.109.1/journald.json", "generated/slp-40.jsonl",
                 "generated/simple-1k.jsonl"):
        for line in (SAMPLES / name).read_bytes().splitlines()[:40]:
            Path(directory, f"seed-{n}").write_bytes(line)
            n += 1


def write_dict(path: Path) -> None:
    """libFuzzer dictionary: the field names of every record shape and JSON number oddities."""
    from logmetrics import records

    names: set[str] = set()
    for t in (records.Line, records.Payload, records.Metadata, records.Facts, records.Usage, records.CompactTokens):
        names |= {f.encode_name for f in __import__("msgspec").structs.fields(t)}
    tokens = [f'"{n}":' for n in sorted(names)] + ["NaN", "Infinity", "-Infinity", "1e999", "\\u0000", "\\ud800"]
    path.write_text("".join(f"{json.dumps(t)}\n" for t in tokens))


if __name__ == "__main__":
    write_dict(Path("/tmp/logmetrics-fuzz.dict"))
    corpus = [a for a in sys.argv[1:] if not a.startswith("-")]
    for d in corpus:
        os.makedirs(d, exist_ok=True)
        seed_corpus(d)
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
