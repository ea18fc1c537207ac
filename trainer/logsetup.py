"""The training log: plain lines to the console at once, to the file once it may be written.

Records made before the file is opened (while waiting for the daemon, which may be
archiving and cleaning ``logs/`` at that moment) are held in memory and written
first when it opens, so the training log tells the whole session.
"""

from __future__ import annotations

import logging
import sys
from logging.handlers import MemoryHandler
from pathlib import Path
from typing import IO

LOGGER_NAME = "trainer"
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CONSOLE_FORMAT = "%(asctime)s %(levelname)s %(message)s"


class LogSetup:
    """Configures the ``trainer`` logger for one session; :meth:`close` undoes it."""

    def __init__(self, level: str, console: IO[str] = sys.stderr) -> None:
        self.logger = logging.getLogger(LOGGER_NAME)
        self.logger.setLevel(level.upper())
        self.logger.propagate = False
        self.console = logging.StreamHandler(console)
        self.console.setFormatter(logging.Formatter(CONSOLE_FORMAT, "%H:%M:%S"))
        self.pending = MemoryHandler(capacity=100_000, flushLevel=logging.CRITICAL + 1)
        self.file: logging.FileHandler | None = None
        for handler in (self.console, self.pending):
            self.logger.addHandler(handler)

    def open_file(self, path: Path) -> None:
        """Start writing ``path`` (appending), beginning with the held-back records."""
        if self.file is not None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = logging.FileHandler(path, mode="a", encoding="utf-8")
        self.file.setFormatter(logging.Formatter(FILE_FORMAT))
        self.pending.setTarget(self.file)
        self.pending.flush()
        self.logger.removeHandler(self.pending)
        self.pending.close()
        self.logger.addHandler(self.file)

    def flush(self) -> None:
        for handler in self.logger.handlers:
            handler.flush()

    def close(self) -> None:
        for handler in list(self.logger.handlers):
            handler.flush()
            self.logger.removeHandler(handler)
            if handler is not self.console:
                handler.close()
