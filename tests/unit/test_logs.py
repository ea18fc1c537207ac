"""structlog output: one JSON line per stored event; console on a terminal; levels."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

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


def _journal_env(stream) -> dict[str, str]:
    st = os.fstat(stream.fileno())
    return {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}


def test_lines_to_journald_carry_their_sd_daemon_priority(tmp_path: Path) -> None:
    read_fd, write_fd = os.pipe()  # journald hands the daemon a stream; a pipe has a dev:ino too
    with os.fdopen(write_fd, "w") as out, os.fdopen(read_fd) as back:
        logs.configure(LoggingConfig(level="debug"), stream=out, environ=_journal_env(out))
        logs.emit(StoredEvent(1, "ts", "FileCreated", 1, {}))
        logs.emit(StoredEvent(2, "ts", "ArchiveFailed", 1, {"error": "full"}))
        log = structlog.get_logger("t")
        log.error("boom")
        log.critical("worse")
        log.debug("detail")
        out.close()
        lines = back.read().splitlines()
    assert [line[:3] for line in lines] == ["<6>", "<4>", "<3>", "<2>", "<7>"]
    assert json.loads(lines[1][3:])["type"] == "ArchiveFailed"


def test_a_file_named_by_journal_stream_gets_prefixes_too(tmp_path: Path) -> None:
    with (tmp_path / "out").open("w+") as out:
        logs.configure(LoggingConfig(), stream=out, environ=_journal_env(out))
        structlog.get_logger("t").warning("careful")
        out.seek(0)
        assert out.read().startswith('<4>{"event": "careful"')


def test_no_prefix_without_journal_stream_or_for_another_stream(tmp_path: Path) -> None:
    with (tmp_path / "out").open("w+") as out, (tmp_path / "other").open("w") as other:
        for environ in ({}, _journal_env(other), {"JOURNAL_STREAM": "garbage"}):
            logs.configure(LoggingConfig(), stream=out, environ=environ)
            structlog.get_logger("t").error("plain")
        out.seek(0)
        lines = out.read().splitlines()
        assert not logs.journal_stream(io.StringIO(), _journal_env(out))  # no file descriptor
    assert len(lines) == 3 and all(line.startswith("{") for line in lines)


def test_faulthandler_dumps_every_thread_on_sigabrt(tmp_path: Path) -> None:
    code = (
        "import os, signal, threading, time\n"
        "from daemon import logs\n"
        "logs.enable_faulthandler()\n"
        "threading.Thread(target=time.sleep, args=(60,), name='sleeper', daemon=True).start()\n"
        "os.kill(os.getpid(), signal.SIGABRT)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == -signal.SIGABRT
    assert "Fatal Python error: Aborted" in done.stderr
    assert "Current thread 0x" in done.stderr and "\nThread 0x" in done.stderr  # + the sleeper
