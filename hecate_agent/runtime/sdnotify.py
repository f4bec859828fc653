"""systemd's notify protocol in a few lines (no dependency): READY, STATUS, WATCHDOG, STOPPING.

Only the main process may notify (NotifyAccess=main): call from the daemon
process, and ping the watchdog from the loop that does the work, so a wedged
worker stops the pings and systemd restarts the agent.
"""

from __future__ import annotations

import os
import socket


class Notifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = env.get("NOTIFY_SOCKET") or None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        self.watchdog_seconds = (
            int(usec) / 1_000_000 if usec.isdigit() and (not pid or pid == str(os.getpid())) else None
        )

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        if self.address is None:
            return False
        address = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            # Never block: a receiver that stops reading must not wedge the worker that pings
            # the watchdog (libsystemd sends with MSG_DONTWAIT for the same reason).
            sock.setblocking(False)
            try:
                sock.connect(address)
                sock.send("\n".join(fields).encode())
            except OSError:
                return False
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")
