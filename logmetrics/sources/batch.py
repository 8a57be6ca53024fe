"""`Batch`: what every follower (file, journald) yields to the pipeline."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Batch:
    """Complete lines read from one source in one go.

    `lines` hold no line terminator. `skipped_too_long` counts lines dropped because they were
    longer than the source's limit (`logmetrics_records_skipped_total{reason="too_long"}`).
    """

    source: str
    lines: list[bytes]
    skipped_too_long: int = 0
