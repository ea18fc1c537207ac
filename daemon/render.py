"""Terminal output for the CLI: sizes, tables and a progress line on stderr."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TextIO


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    lines = [headers, *rows]
    return "\n".join(
        "  ".join(str(cell).ljust(w) for cell, w in zip(line, widths, strict=False)).rstrip()
        for line in lines
    )


class Progress:
    """A single updating line on a terminal: ``archiving  42%  120.0/285.3 MiB  95 MiB/s``.

    Called as ``progress(done, total)``; redraws at most ten times a second.
    """

    def __init__(self, label: str, *, stream: TextIO = sys.stderr) -> None:
        self.label = label
        self.stream = stream
        self.started = time.monotonic()
        self._last = 0.0
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last < 0.1 and done < total:
            return
        self._last = now
        pct = 100.0 * done / total if total else 100.0
        rate = done / max(now - self.started, 1e-6)
        self.stream.write(
            f"\r{self.label} {pct:5.1f}%  {human_bytes(done)}/{human_bytes(total)}  "
            f"{human_bytes(rate)}/s \x1b[K"
        )
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
