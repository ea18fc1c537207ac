"""``TradeLogger``: the trade execution log, the trade traces and the session summary.

Trades are kept in a short in-memory buffer and written out by :meth:`flush`, which
the training loop calls at every chunk end, and by :meth:`save_session`, so memory
does not grow with the length of a run and the per-step cost is one list append.

- ``logs/trades/trade_execution.log``: one readable line per trade, appended;
- ``logs/trades/trade_traces_YYYYMMDD_HHMMSS.jsonl`` (session start, UTC): one JSON
  object per trade with the keys of :data:`TRACE_KEYS`;
- ``logs/session_summary.json``: written atomically by :meth:`save_session`.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from trainer.env import Trade
from trainer.fsutil import atomic_write_text, stamp, unique_path

TRACE_KEYS = (
    "session_id",
    "phase",
    "episode",
    "step",
    "time",
    "side",
    "quantity",
    "price",
    "fee",
    "position",
    "equity",
)
EXECUTION_LOG = "trade_execution.log"


def trace_record(session_id: str, phase: str, step: int, trade: Trade) -> dict[str, Any]:
    """The JSON object of one trade in the traces file."""
    return {
        "session_id": session_id,
        "phase": phase,
        "episode": trade.episode,
        "step": step,
        "time": trade.time,
        "side": trade.side,
        "quantity": trade.quantity,
        "price": trade.price,
        "fee": trade.fee,
        "position": trade.position,
        "equity": trade.equity,
    }


def execution_line(session_id: str, phase: str, step: int, trade: Trade) -> str:
    """One human-readable line of ``trade_execution.log``."""
    return (
        f"{trade.time} {session_id} {phase:<5} episode={trade.episode} step={step} "
        f"{trade.side.upper():<4} {trade.quantity:.6f} @ {trade.price:.6f} "
        f"fee={trade.fee:.6f} position={trade.position:.6f} equity={trade.equity:.2f}\n"
    )


class TradeLogger:
    """Buffered writer of the trade logs; either output can be switched off."""

    def __init__(
        self,
        trades_dir: Path,
        session_id: str,
        *,
        started: datetime,
        logging_on: bool,
        tracing_on: bool,
    ) -> None:
        self.session_id = session_id
        self.execution_path = trades_dir / EXECUTION_LOG if logging_on else None
        self.trace_path = (
            unique_path(trades_dir, f"trade_traces_{stamp(started)}", ".jsonl")
            if tracing_on
            else None
        )
        self.counts: Counter[str] = Counter()
        self._buffer: list[tuple[str, int, Trade]] = []
        self._files: dict[Path, IO[str]] = {}

    @property
    def enabled(self) -> bool:
        return self.execution_path is not None or self.trace_path is not None

    def record(self, phase: str, step: int, trade: Trade) -> None:
        """Queue one trade; nothing is written until :meth:`flush`."""
        self.counts[phase] += 1
        if self.execution_path is not None or self.trace_path is not None:
            self._buffer.append((phase, step, trade))

    def _file(self, path: Path) -> IO[str]:
        handle = self._files.get(path)
        if handle is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = self._files[path] = open(path, "a", encoding="utf-8")  # noqa: SIM115
        return handle

    def flush(self) -> None:
        """Write the buffered trades and hand them to the OS."""
        buffered, self._buffer = self._buffer, []
        sid = self.session_id
        if self.execution_path is not None and buffered:
            lines = (execution_line(sid, ph, step, tr) for ph, step, tr in buffered)
            self._file(self.execution_path).writelines(lines)
        if self.trace_path is not None:
            handle = self._file(self.trace_path)  # the traces file exists even with no trades
            handle.writelines(
                json.dumps(trace_record(sid, ph, step, tr)) + "\n" for ph, step, tr in buffered
            )
        for handle in self._files.values():
            handle.flush()

    def close(self) -> None:
        """Flush, fsync and close the trade files."""
        self.flush()
        for handle in self._files.values():
            os.fsync(handle.fileno())
            handle.close()
        self._files.clear()

    def save_session(self, summary: Mapping[str, Any], path: Path) -> None:
        """Flush and close the trade logs, then write the session summary atomically."""
        self.close()
        atomic_write_text(path, json.dumps(summary, indent=2, default=str) + "\n")
