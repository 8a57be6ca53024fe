"""Real journal files for tests: Journal Export Format streams turned into `.journal` files.

`export_stream(entries)` writes the binary-safe export format (systemd's "Journal Export
Format": `NAME=value\\n` for text, `NAME\\n<u64le length><bytes>\\n` for anything else, a blank
line between entries); `write_journal(path, entries)` feeds it to Debian's
`systemd-journal-remote`, which creates `path` (the name must end in `.journal`) or appends to
it. Appending to a journal that `journalctl --directory DIR --follow` watches is how the
follower tests simulate a unit that keeps logging.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

JOURNAL_REMOTE_PATHS = ("/lib/systemd/systemd-journal-remote", "/usr/lib/systemd/systemd-journal-remote")
BOOT_ID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
MACHINE_ID = "11112222333344445555666677778888"
BASE_REALTIME_US = 1_795_333_000_000_000  # 2026-11-22T04:16:40Z, near the samples' capture
SAMPLES = Path(__file__).resolve().parent.parent / "fixtures" / "sample-logs" / "litellm-1.109.1"


def journal_remote() -> str | None:
    """Path of `systemd-journal-remote` (Debian package `systemd-journal-remote`), or None."""
    for path in JOURNAL_REMOTE_PATHS:
        if Path(path).exists():
            return path
    return shutil.which("systemd-journal-remote")


@dataclass
class Entry:
    """One journal entry. `message` as bytes may be anything (invalid UTF-8, ANSI colours)."""

    message: str | bytes
    seq: int = 1  # orders entries: realtime and monotonic timestamps are derived from it
    unit: str | None = "litellm.service"  # _SYSTEMD_UNIT
    user_unit: str | None = None  # _SYSTEMD_USER_UNIT (then _SYSTEMD_UNIT is user@UID.service)
    uid: int = 0
    priority: int = 6
    extra: Mapping[str, str | bytes] = field(default_factory=dict)
    boot: str = BOOT_ID  # _BOOT_ID: another value is another boot

    def fields(self) -> list[tuple[str, str | bytes]]:
        realtime = BASE_REALTIME_US + self.seq * 1_000_000
        out: list[tuple[str, str | bytes]] = [
            ("__REALTIME_TIMESTAMP", str(realtime)),
            ("__MONOTONIC_TIMESTAMP", str(1_000_000_000 + self.seq * 1_000_000)),
            ("_BOOT_ID", self.boot),
            ("_MACHINE_ID", MACHINE_ID),
            ("_HOSTNAME", "test-host"),
            ("PRIORITY", str(self.priority)),
            ("SYSLOG_IDENTIFIER", "litellm"),
            ("_TRANSPORT", "stdout"),
            ("_PID", "4242"),
            ("_UID", str(self.uid)),
            ("_GID", str(self.uid)),
        ]
        if self.user_unit is not None:
            out.append(("_SYSTEMD_UNIT", f"user@{self.uid}.service"))
            out.append(("_SYSTEMD_USER_UNIT", self.user_unit))
            out.append(("_SYSTEMD_OWNER_UID", str(self.uid)))
        elif self.unit is not None:
            out.append(("_SYSTEMD_UNIT", self.unit))
        out.extend(self.extra.items())
        out.append(("MESSAGE", self.message))
        return out


def _field(name: str, value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    if b"\n" in data or any(b < 0x20 and b != 0x09 for b in data) or not _is_utf8(data):
        return name.encode() + b"\n" + len(data).to_bytes(8, "little") + data + b"\n"
    return name.encode() + b"=" + data + b"\n"


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def export_stream(entries: Iterable[Entry]) -> bytes:
    """The entries in Journal Export Format."""
    return b"".join(b"".join(_field(n, v) for n, v in e.fields()) + b"\n" for e in entries)


def write_journal(path: Path, entries: Iterable[Entry]) -> Path:
    """Create `path` (must end in `.journal`) from `entries`, or append them if it exists."""
    if path.suffix != ".journal":
        raise ValueError(f"systemd-journal-remote only writes names ending in .journal: {path}")
    stream = path.with_name(path.name + ".export")
    stream.write_bytes(export_stream(entries))
    stream_to_journal(stream, path)
    stream.unlink()
    return path


def stream_to_journal(stream: Path, path: Path) -> Path:
    """`systemd-journal-remote -o PATH STREAM`."""
    binary = journal_remote()
    if binary is None:
        raise RuntimeError("systemd-journal-remote is missing: apt-get install -y systemd-journal-remote")
    subprocess.run([binary, "-o", str(path), str(stream)], check=True, capture_output=True, timeout=60)
    return path


def sample_journal(dest: Path) -> Path:
    """The real sample `litellm.journal` (10 entries), gunzipped into `dest` (a directory)."""
    out = dest / "litellm.journal"
    with gzip.open(SAMPLES / "litellm.journal.gz") as src, out.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    return out
