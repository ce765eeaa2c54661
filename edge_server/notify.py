"""The systemd notify protocol (sd_notify(3)), written directly to $NOTIFY_SOCKET.

A datagram of newline-separated KEY=VALUE lines on an AF_UNIX/SOCK_DGRAM socket; a path that
starts with "@" is in the abstract namespace. This follows systemd's dependency-free reference
(man/notify-selfcontained-example.py, MIT-0); the protocol "is guaranteed to be stable".

    n = Notifier.from_env()          # disabled (every call a no-op) when NOTIFY_SOCKET is unset
    n.status("loading transformer 3/10"); n.extend_timeout(90)
    n.ready("ready: 0 running, 0 queued")
    interval = n.watchdog_interval() # half of WATCHDOG_USEC, or None
    n.watchdog(); n.stopping()

send() is thread-safe (the model-loading progress callback runs on the engine thread) and never
raises: a vanished notify socket must not take the server down.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify messages; a no-op when there is no socket."""

    def __init__(self, address: str | None, *, watchdog_usec: int | None = None) -> None:
        self.address = address or None
        self._watchdog_usec = watchdog_usec
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._warned = False
        if self.address and not self.address.startswith(("/", "@")):
            log.warning("NOTIFY_SOCKET %r is not a unix socket path; notifications off", address)
            self.address = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Notifier:
        """NOTIFY_SOCKET, and WATCHDOG_USEC when WATCHDOG_PID is unset or this process."""
        env = os.environ if env is None else env
        usec = None
        if env.get("WATCHDOG_USEC"):
            pid = env.get("WATCHDOG_PID")
            try:
                if not pid or int(pid) == os.getpid():
                    usec = int(env["WATCHDOG_USEC"])
            except ValueError:
                log.warning("ignoring malformed WATCHDOG_USEC/WATCHDOG_PID")
            if usec is not None and usec <= 0:
                usec = None
        return cls(env.get("NOTIFY_SOCKET"), watchdog_usec=usec)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half the systemd timeout), or None when off."""
        if not self.enabled or not self._watchdog_usec:
            return None
        return self._watchdog_usec / 2e6

    def send(self, *lines: str) -> bool:
        """Send one datagram of KEY=VALUE lines; False (logged once) on failure."""
        if self.address is None or not lines:
            return False
        payload = "\n".join(lines).encode("utf-8", "replace")
        addr = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        with self._lock:
            try:
                if self._sock is None:
                    kind = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                    self._sock = socket.socket(socket.AF_UNIX, kind)
                self._sock.sendto(payload, addr)
                return True
            except OSError as e:
                if not self._warned:
                    log.warning("sd_notify to %s failed: %s", self.address, e)
                    self._warned = True
                if self._sock is not None:
                    self._sock.close()
                    self._sock = None
                return False

    def ready(self, status: str | None = None) -> bool:
        lines = ["READY=1"]
        if status:
            lines.append("STATUS=" + _one_line(status))
        lines.append(f"MAINPID={os.getpid()}")
        return self.send(*lines)

    def status(self, text: str) -> bool:
        return self.send("STATUS=" + _one_line(text))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        lines = ["STOPPING=1"]
        if status:
            lines.append("STATUS=" + _one_line(status))
        return self.send(*lines)

    def extend_timeout(self, seconds: float) -> bool:
        """EXTEND_TIMEOUT_USEC: ask systemd for `seconds` more of start/stop time."""
        return self.send(f"EXTEND_TIMEOUT_USEC={max(1, int(seconds * 1e6))}")

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def _one_line(text: str) -> str:
    return " ".join(str(text).split())
