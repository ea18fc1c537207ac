"""structlog, configured once at the daemon's entry point.

Every recorded event becomes one log line through :func:`emit` (the event
store's ``on_append``): ``{"event": TYPE, "seq": N, "type": TYPE, "ts": ...,
"data": {...}, "level": ..., "timestamp": ...}``. Lines are JSON when the
stream is not a terminal (systemd's journal, a pipe) and pretty on a terminal;
``LoggingConfig.format`` can force either. Warnings are events that want a
human's attention (a failed archive, an abandoned session, a degraded watcher).
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

from daemon.config import LoggingConfig
from daemon.eventlog.events import StoredEvent

WARNING_EVENTS = frozenset(
    {
        "ArchiveFailed",
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


def configure(config: LoggingConfig, *, stream: TextIO | None = None) -> None:
    """Set up structlog for the whole process (call again to apply a reloaded config)."""
    stream = stream or sys.stdout
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer_for(config, stream),
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
