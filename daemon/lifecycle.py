"""Threads the daemon owns are stoppable context managers, as watchdog's observers are."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Service:
    """``with X(...) as x:`` starts ``x`` and stops it on the way out, even on an error."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
