"""structlog output: one JSON line per stored event; console on a terminal; levels."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog

from daemon import logs
from daemon.config import LoggingConfig
from daemon.eventlog.events import StoredEvent


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_every_event_is_one_json_line() -> None:
    out = io.StringIO()
    logs.configure(LoggingConfig(), stream=out)
    logs.emit(StoredEvent(7, "2026-01-01T00:00:00.000Z", "FileCreated", 1, {"path": "logs/a"}))
    logs.emit(StoredEvent(8, "2026-01-01T00:00:01.000Z", "ArchiveFailed", 1, {"error": "full"}))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first, second = map(json.loads, lines)
    assert first["seq"] == 7 and first["type"] == first["event"] == "FileCreated"
    assert first["data"] == {"path": "logs/a"} and first["level"] == "info"
    assert first["ts"] == "2026-01-01T00:00:00.000Z" and "timestamp" in first
    assert second["level"] == "warning"


def test_console_on_a_terminal_and_forced_json() -> None:
    tty = Tty()
    logs.configure(LoggingConfig(), stream=tty)
    logs.emit(StoredEvent(1, "ts", "DaemonStarted", 1, {"pid": 3}))
    text = tty.getvalue()
    assert "DaemonStarted" in text and not text.lstrip().startswith("{")
    forced = Tty()
    logs.configure(LoggingConfig(format="json"), stream=forced)
    logs.emit(StoredEvent(1, "ts", "DaemonStarted", 1, {"pid": 3}))
    assert json.loads(forced.getvalue())["data"] == {"pid": 3}


def test_level_filters_lines() -> None:
    out = io.StringIO()
    logs.configure(LoggingConfig(level="warning"), stream=out)
    logs.emit(StoredEvent(1, "ts", "FileCreated", 1, {}))
    logs.emit(StoredEvent(2, "ts", "SessionAbandoned", 1, {"session_id": "s"}))
    assert [json.loads(line)["seq"] for line in out.getvalue().splitlines()] == [2]


def test_with_structlog_testing_capture() -> None:
    with structlog.testing.capture_logs() as captured:
        logs.emit(StoredEvent(3, "ts", "Rescanned", 1, {"trigger": "start"}))
    assert captured == [
        {
            "event": "Rescanned",
            "seq": 3,
            "type": "Rescanned",
            "ts": "ts",
            "data": {"trigger": "start"},
            "log_level": "info",
        }
    ]
