"""Signal handling that only records: the training loop decides what to do."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

HANDLED = (signal.SIGINT, signal.SIGTERM)


class SignalRecorder:
    """While active, SIGINT and SIGTERM set :attr:`signum` (the first one wins).

    The training loop polls :meth:`received` (a callback ends ``learn()`` at the next
    step), saves the model and ends the session as ``interrupted``. Previous handlers
    are restored on exit. Must be entered in the main thread.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _record(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum

    def received(self) -> bool:
        return self.signum is not None

    def __enter__(self) -> SignalRecorder:
        for signum in HANDLED:
            self._previous[signum] = signal.signal(signum, self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
