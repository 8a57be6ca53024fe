"""systemd's sd_notify protocol with the standard library: one datagram to `$NOTIFY_SOCKET`.

`Type=notify` units get `READY=1` once `/metrics` answers, `WATCHDOG=1` pings (every half of
`$WATCHDOG_USEC`) while the sources make progress, and `STOPPING=1` on the way out. Outside
systemd (`$NOTIFY_SOCKET` unset) every call does nothing.
"""

from __future__ import annotations

import os
import socket


class Notifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET", "")
        # an abstract socket is written "@name" and addressed with a leading NUL byte
        self.address: str | None = "\0" + path[1:] if path.startswith("@") else (path or None)
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        on = usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid()))
        self.watchdog_interval: float | None = int(usec) / 2e6 if on else None

    def notify(self, *fields: str) -> bool:
        """Send `KEY=value` lines; True if the datagram was sent."""
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.connect(self.address)
                s.sendall("\n".join(fields).encode())
        except OSError:
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.notify("READY=1", f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def status(self, status: str) -> bool:
        return self.notify(f"STATUS={status}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")
