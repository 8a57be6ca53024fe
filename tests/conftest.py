"""Hypothesis profiles, and the end-of-session mark. `ci` (default) keeps the property tests to seconds; `nightly`
(LOGMETRICS_FUZZ=nightly) runs LOGMETRICS_FUZZ_EXAMPLES examples per property test (default
20,000; tests/test_fuzz.py's mutation test turns each into 1,000 parsed lines: 1M+ inputs) and the
long soak and cardinality variants."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

NIGHTLY = os.environ.get("LOGMETRICS_FUZZ") == "nightly"
NIGHTLY_EXAMPLES = int(os.environ.get("LOGMETRICS_FUZZ_EXAMPLES", "20000"))
_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

settings.register_profile("ci", deadline=None, suppress_health_check=_SLOW_OK, print_blob=True)
settings.register_profile("nightly", deadline=None, suppress_health_check=_SLOW_OK, print_blob=True)
settings.load_profile("nightly" if NIGHTLY else "ci")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The session ended as a session ends: .ci/run checks this mark, so that a test that ends the
    process itself (os._exit(0) in code run in-process) cannot pass for a green run of fewer tests."""
    mark = os.environ.get("LOGMETRICS_TESTS_FINISHED")
    if mark:
        Path(mark).write_text(f"{session.testscollected} collected, exit {exitstatus}\n")
