"""structlog, configured once at the daemon's entry point.

Every recorded event becomes one log line through :func:`emit` (the event
store's ``on_append``): ``{"event": TYPE, "seq": N, "type": TYPE, "ts": ...,
"data": {...}, "level": ..., "timestamp": ...}``. Lines are JSON when the
stream is not a terminal (systemd's journal, a pipe) and pretty on a terminal;
``LoggingConfig.format`` can force either. Warnings are events that want a
human's attention (a failed archive, an abandoned session, a degraded watcher).

Under journald (``JOURNAL_STREAM`` names the stream's device and inode) each
line starts with its sd-daemon priority, ``<4>`` for a warning, ``<3>`` for an
error, so ``journalctl -p warning`` finds them; journald strips the prefix.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import structlog

from daemon.config import LoggingConfig
from daemon.eventlog.events import StoredEvent

WARNING_EVENTS = frozenset(
    {
        "ArchiveFailed",
        "ArchiveMissing",
        "ArchiveUploadFailed",
        "ConfigRejected",
        "EventLogRecovered",
        "JobFailed",
        "JobMissed",
        "LockFileInvalid",
        "ModelInvalid",
        "SessionAbandoned",
        "WatcherDegraded",
    }
)
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
PRIORITIES = {"debug": 7, "info": 6, "warning": 4, "error": 3, "exception": 3, "critical": 2}
"""sd-daemon(3) priority of each structlog level name."""


def renderer_for(config: LoggingConfig, stream: TextIO) -> Any:
    """JSON lines, or the console renderer on a terminal (``format: auto``)."""
    fmt = config.format
    if fmt == "auto":
        fmt = "console" if _isatty(stream) else "json"
    if fmt == "console":
        return structlog.dev.ConsoleRenderer(colors=_isatty(stream))
    return structlog.processors.JSONRenderer(sort_keys=False)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def journal_stream(stream: TextIO, environ: Mapping[str, str] = os.environ) -> bool:
    """True if ``stream`` is the one journald connected (``JOURNAL_STREAM=DEV:INO`` matches)."""
    try:
        dev, ino = (int(part) for part in environ.get("JOURNAL_STREAM", "").split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):  # unset or malformed; no real file
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


class PriorityPrefix:
    """Wrap a renderer: start each line with the sd-daemon ``<N>`` of its level."""

    def __init__(self, renderer: Any) -> None:
        self.renderer = renderer

    def __call__(self, logger: Any, method_name: str, event_dict: Any) -> str:
        level = event_dict.get("level", method_name)
        return f"<{PRIORITIES.get(level, 6)}>{self.renderer(logger, method_name, event_dict)}"


def enable_faulthandler(stream: TextIO | None = None) -> None:
    """Dump every thread's stack on SIGABRT (the watchdog's), SIGSEGV and the like."""
    faulthandler.enable(file=stream or sys.stderr, all_threads=True)


def configure(
    config: LoggingConfig,
    *,
    stream: TextIO | None = None,
    environ: Mapping[str, str] = os.environ,
) -> None:
    """Set up structlog for the whole process (call again to apply a reloaded config)."""
    stream = stream or sys.stdout
    renderer = renderer_for(config, stream)
    if journal_stream(stream, environ):
        renderer = PriorityPrefix(renderer)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[config.level]),
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def emit(stored: StoredEvent) -> None:
    """Log one stored event as one line (used as ``EventStore.on_append``)."""
    log = structlog.get_logger("daemon.events")
    method = log.warning if stored.type in WARNING_EVENTS else log.info
    method(stored.type, seq=stored.seq, type=stored.type, ts=stored.ts, data=stored.data)
