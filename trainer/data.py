"""Price data: OHLCV CSV files as people export them, and the embedded synthetic series.

Accepted CSV layouts: a header row naming a time column (``Date``, ``Time``,
``Datetime``, ``Timestamp``, ``Gmt time``, ``Local time``, or separate ``Date`` and
``Time`` columns), ``Open``, ``High``, ``Low``, ``Close`` and optionally ``Adj Close``
and ``Volume``, in any order and letter case, separated by commas, semicolons or tabs.
Times are ISO dates or date-times (a time zone offset is converted to UTC) or day-first
``dd.mm.yyyy[ HH:MM[:SS[.fff]]]`` / ``dd/mm/yyyy ...``, or MetaTrader's ``yyyy.mm.dd``.
Rows may run oldest first or newest first. With ``Adj Close``, O/H/L/C are scaled by
``Adj Close / Close`` so splits and dividends do not show up as price jumps.

Any problem is a :class:`DataError` naming the file, the line and the column.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from trainer.errors import DataError

FloatArray = np.ndarray

TIME_NAMES = ("datetime", "timestamp", "date time", "gmt time", "local time", "utc time")
PRICE_NAMES = ("open", "high", "low", "close")
ADJ_NAMES = ("adj close", "adjclose", "adjusted close")
DAY_FIRST = (
    "%d.%m.%Y %H:%M:%S.%f",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%d.%m.%Y",
    "%d/%m/%Y %H:%M:%S.%f",
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%d/%m/%Y",
    "%Y.%m.%d %H:%M:%S",
    "%Y.%m.%d %H:%M",
    "%Y.%m.%d",
)


@dataclass(frozen=True)
class PriceSeries:
    """Bars oldest first: times (``datetime64[ms]``, UTC or naive) and float64 prices."""

    times: np.ndarray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    source: str

    def __len__(self) -> int:
        return len(self.close)


def _norm(name: str) -> str:
    return " ".join(name.strip().lstrip("\ufeff").lower().replace("_", " ").split())


def _iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)


def _time_parser(sample: str) -> tuple[Callable[[str], datetime], str]:
    """The parser that reads ``sample``, and a description of its format."""
    try:
        _iso(sample)
        return _iso, "ISO 8601"
    except ValueError:
        pass
    for fmt in DAY_FIRST:
        try:
            datetime.strptime(sample, fmt)
        except ValueError:
            continue
        return (lambda s, f=fmt: datetime.strptime(s, f)), fmt
    raise ValueError(sample)


def _to_utc_naive(moment: datetime) -> datetime:
    return moment if moment.tzinfo is None else moment.astimezone(UTC).replace(tzinfo=None)


def _sniff_delimiter(header: str) -> str:
    return max(",;\t", key=header.count)


class _Table:
    """The CSV's rows and the positions of the columns we read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"{path}: cannot read ({e})") from e
        lines = text.splitlines()
        if not lines or not lines[0].strip():
            raise DataError(f"{path}: line 1: empty file, expected a header row")
        rows = list(csv.reader(lines, delimiter=_sniff_delimiter(lines[0])))
        self.header = [h.strip() for h in rows[0]]
        self.index: dict[str, int] = {}
        for i, name in enumerate(self.header):
            key = _norm(name)
            if key in self.index:
                raise DataError(f"{path}: line 1: column {name!r} appears twice")
            self.index[key] = i
        self.rows = [(n, r) for n, r in enumerate(rows[1:], start=2) if any(c.strip() for c in r)]
        if not self.rows:
            raise DataError(f"{path}: no data rows after the header")

    def column(self, *names: str, required: bool = True) -> int | None:
        for name in names:
            if name in self.index:
                return self.index[name]
        if required:
            found = ", ".join(self.header)
            raise DataError(f"{self.path}: line 1: missing column {names[0].title()!r} ({found})")
        return None

    def cell(self, line: int, row: list[str], col: int) -> str:
        if col >= len(row):
            raise DataError(
                f"{self.path}: line {line}, column {self.header[col]!r}: missing value "
                f"(row has {len(row)} fields, header has {len(self.header)})"
            )
        return row[col].strip()

    def numbers(self, col: int, *, positive: bool) -> FloatArray:
        out = np.empty(len(self.rows))
        for i, (line, row) in enumerate(self.rows):
            text = self.cell(line, row, col)
            try:
                value = float(text)
            except ValueError:
                value = float("nan")
            if not np.isfinite(value) or (value <= 0 if positive else value < 0):
                kind = "a positive number" if positive else "a non-negative number"
                raise DataError(
                    f"{self.path}: line {line}, column {self.header[col]!r}: {text!r} is not {kind}"
                )
            out[i] = value
        return out

    def times(self) -> tuple[np.ndarray, int]:
        date_col = self.column("date", "time", *TIME_NAMES)
        assert date_col is not None
        time_col = self.column("time", required=False) if "date" in self.index else None
        texts: list[tuple[int, str]] = []
        for line, row in self.rows:
            text = self.cell(line, row, date_col)
            if time_col is not None:
                text = f"{text} {self.cell(line, row, time_col)}"
            texts.append((line, text))
        try:
            parse, fmt = _time_parser(texts[0][1])
        except ValueError:
            parse, fmt = _iso, "ISO 8601 or dd.mm.yyyy HH:MM:SS.fff"
        moments: list[datetime] = []
        for line, text in texts:
            try:
                moment = parse(text)
            except ValueError:
                raise DataError(
                    f"{self.path}: line {line}, column {self.header[date_col]!r}: "
                    f"{text!r} is not a time in the file's format ({fmt})"
                ) from None
            if moments and (moment.tzinfo is None) != (moments[0].tzinfo is None):
                raise DataError(
                    f"{self.path}: line {line}, column {self.header[date_col]!r}: "
                    "mixes times with and without a time zone"
                )
            moments.append(moment)
        stamps = np.array([_to_utc_naive(m) for m in moments], dtype="datetime64[ms]")
        return stamps, date_col


def _ordered(table: _Table, stamps: np.ndarray, col: int) -> np.ndarray:
    """Row order oldest first; times must be strictly monotonic."""
    if len(stamps) < 2:
        return np.arange(len(stamps))
    steps = np.diff(stamps).astype(np.int64)
    direction = 1 if steps[0] > 0 else -1
    bad = np.flatnonzero(steps * direction <= 0)
    if bad.size:
        line = table.rows[int(bad[0]) + 1][0]
        raise DataError(
            f"{table.path}: line {line}, column {table.header[col]!r}: time does not "
            "follow the previous row (times must be strictly increasing or decreasing)"
        )
    return np.arange(len(stamps))[::direction]


def load_csv(path: Path) -> PriceSeries:
    """Read and check an OHLCV CSV file."""
    table = _Table(path)
    cols = {name: table.column(name) for name in PRICE_NAMES}
    prices = {
        name: table.numbers(col, positive=True) for name, col in cols.items() if col is not None
    }
    adj_col = table.column(*ADJ_NAMES, required=False)
    if adj_col is not None:
        factor = table.numbers(adj_col, positive=True) / prices["close"]
        prices = {name: values * factor for name, values in prices.items()}
    volume_col = table.column("volume", "vol", required=False)
    if volume_col is not None:
        table.numbers(volume_col, positive=False)
    stamps, time_col = table.times()
    order = _ordered(table, stamps, time_col)
    return PriceSeries(
        times=stamps[order],
        open=prices["open"][order],
        high=prices["high"][order],
        low=prices["low"][order],
        close=prices["close"][order],
        source=str(path),
    )


def synthetic_series(bars: int, seed: int) -> PriceSeries:
    """A seeded regime-switching random walk on weekdays from 2015-01-02.

    Three regimes (calm up-trend, volatile down-trend, flat chop) switch by a Markov
    chain, so there is some structure to learn; bars are daily OHLC.
    """
    rng = np.random.default_rng(seed)
    drift = np.array([0.0006, -0.0008, 0.0])
    vol = np.array([0.008, 0.02, 0.012])
    stay = 0.985
    regime = np.empty(bars, dtype=np.int64)
    regime[0] = 0
    switches = rng.random(bars) > stay
    picks = rng.integers(0, 3, bars)
    for t in range(1, bars):
        regime[t] = picks[t] if switches[t] else regime[t - 1]
    returns = drift[regime] + vol[regime] * rng.standard_normal(bars)
    close = 100.0 * np.exp(np.cumsum(returns))
    gap = 1.0 + 0.002 * rng.standard_normal(bars)
    open_ = np.concatenate([[100.0], close[:-1]]) * gap
    spread = np.abs(rng.standard_normal((2, bars))) * vol[regime] * 0.5
    high = np.maximum(open_, close) * (1.0 + spread[0])
    low = np.minimum(open_, close) * (1.0 - spread[1])
    days = np.busday_offset("2015-01-02", np.arange(bars), roll="forward")
    times = days.astype("datetime64[ms]")
    return PriceSeries(
        times, open_, high, low, close, source=f"synthetic(bars={bars}, seed={seed})"
    )
