"""Telling the outside how the daemon is: sd_notify(3) and the health file.

sd_notify without libsystemd: one datagram per message on ``$NOTIFY_SOCKET``.

The protocol is newline-separated ``KEY=VALUE`` assignments sent as a single
datagram to an ``AF_UNIX``/``SOCK_DGRAM`` socket. A ``NOTIFY_SOCKET`` starting
with ``@`` names a Linux abstract socket (the ``@`` becomes a NUL byte). The
watchdog interval comes from ``WATCHDOG_USEC`` (and ``WATCHDOG_PID``, when set,
must be ours). Without ``NOTIFY_SOCKET`` every send is a no-op, so the daemon
runs the same in a terminal.

The environment is read once, at the edge (:meth:`Notifier.from_env`).
:class:`Health` writes the same status, with more detail, for ``status``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

SEND_TIMEOUT_S = 0.1
"""Longest wait for room on the notify socket: once its reader's queue is full
(``net.unix.max_dgram_qlen``, often 10 datagrams), a blocking send would wait
for ever, stalling the main loop. After this the message is dropped and logged."""


def socket_address(value: str) -> str | bytes:
    """The ``sendto`` address for a ``NOTIFY_SOCKET`` value (``@name`` is abstract)."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Half of ``WATCHDOG_USEC`` in seconds, or None when no watchdog is asked of us."""
    usec = environ.get("WATCHDOG_USEC", "")
    owner = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) <= 0:
        return None
    if owner and (not owner.isdigit() or int(owner) != pid):
        return None
    return int(usec) / 1_000_000 / 2


def format_message(**fields: str) -> bytes:
    """``KEY=VALUE`` lines; newlines inside a value (e.g. STATUS) become spaces."""
    return "\n".join(f"{k}={v.replace(chr(10), ' ')}" for k, v in fields.items()).encode()


@dataclass
class Notifier:
    """Sends notifications to systemd; a no-op when ``address`` is None."""

    address: str | bytes | None = None
    watchdog_s: float | None = None
    """How often to send WATCHDOG=1 (half of WATCHDOG_USEC), or None."""
    _sock: socket.socket | None = field(default=None, init=False, repr=False)
    _last_status: str | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str], pid: int | None = None) -> Notifier:
        value = environ.get("NOTIFY_SOCKET", "")
        pid = os.getpid() if pid is None else pid
        address = socket_address(value) if value else None
        return cls(address=address, watchdog_s=watchdog_interval(environ, pid))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: str) -> bool:
        """Send one message; False (logged, never raised) if it could not be delivered."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.settimeout(SEND_TIMEOUT_S)  # a reader that stops must not hang the loop
            self._sock.sendto(format_message(**fields), self.address)
        except OSError as e:
            log.warning("sd_notify failed", error=str(e), fields=sorted(fields))
            return False
        return True

    def ready(self, status: str) -> bool:
        self._last_status = status
        return self.send(READY="1", STATUS=status, MAINPID=str(os.getpid()))

    def status(self, text: str) -> bool:
        """Send STATUS= only when it changed (status updates are not free)."""
        if text == self._last_status:
            return True
        self._last_status = text
        return self.send(STATUS=text)

    def watchdog(self) -> bool:
        return self.send(WATCHDOG="1")

    def extend_timeout(self, seconds: float, status: str) -> bool:
        """EXTEND_TIMEOUT_USEC: ask for ``seconds`` more, from now, to finish starting."""
        self._last_status = status
        return self.send(EXTEND_TIMEOUT_USEC=str(int(seconds * 1_000_000)), STATUS=status)

    def reloading(self) -> bool:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send(RELOADING="1", MONOTONIC_USEC=str(usec))

    def stopping(self, status: str = "stopping") -> bool:
        self._last_status = status
        return self.send(STOPPING="1", STATUS=status)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


HEALTH_FILE = "health.json"
HEALTH_EVERY_S = 10.0
"""The health file is rewritten when the status changes, and at least this often."""


class Health:
    """``.daemon/health.json``: the live state ``status`` shows (written atomically).

    Fields: ``pid``, ``status`` (the same text as systemd's STATUS=),
    ``updated_at`` (ISO-8601 UTC; older than a minute means a stuck loop),
    ``watcher`` (``inotify``, ``polling`` or ``stopped``), ``watcher_alive``,
    ``scheduler_alive``, ``busy`` (the running archive task or null),
    ``pending_paths`` (paths waiting in the coalescing window),
    ``raw_notifications`` (since start), ``watched_areas`` (the inode of the
    folder each area's watch is on, null while it is missing),
    ``missing_areas``, ``open_files`` (files polled for growth) and ``last_seq``.
    """

    def __init__(self, folder: Path, pid: int) -> None:
        self.path = folder / HEALTH_FILE
        self.pid = pid
        self.due_at: float | None = None
        self._last: str | None = None

    def wanted(self, status: str, now: float) -> bool:
        """Whether the file is due: the status changed, or it was not written for a while."""
        return status != self._last or self.due_at is None or now >= self.due_at

    def write(self, status: str, now: float, fields: Mapping[str, Any]) -> None:
        self._last = status
        self.due_at = now + HEALTH_EVERY_S
        doc = {
            "pid": self.pid,
            "status": status,
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            **fields,
        }
        tmp = self.path.with_name(f".{HEALTH_FILE}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(doc, default=str) + "\n")
            os.replace(tmp, self.path)
        except OSError as e:
            log.warning("cannot write the health file", path=str(self.path), error=str(e))

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()
