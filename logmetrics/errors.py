"""The exceptions logmetrics raises on purpose. Only `cli.py` catches them: it prints the message
in one line on stderr and exits 1 (`UsageError`: 2). Messages say which option fixes the problem."""


class LogmetricsError(Exception):
    """A problem the user can fix; the message is shown as is."""


class UsageError(LogmetricsError):
    """A bad option or a path named on the command line that does not exist (exit 2)."""


class SourceError(LogmetricsError):
    """A source cannot be read: a missing program, a permission, an unreadable file."""


class StateError(LogmetricsError):
    """The durable state file cannot be read or written, or does not fit this source."""
