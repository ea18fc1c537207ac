"""Performance metrics of an equity curve: pure functions of arrays."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

TRADING_DAYS = 252.0
SECONDS_PER_YEAR = 365.25 * 86400.0


def periods_per_year(times: np.ndarray) -> float:
    """Bars per year, from the median spacing of ``times`` (``datetime64``).

    Daily bars (spacing of 20 hours to 4 days, so weekends and holidays included)
    give 252 trading days; other spacings give calendar bars per year.
    """
    if len(times) < 2:
        return TRADING_DAYS
    spacing = float(np.median(np.diff(times).astype("timedelta64[ms]").astype(np.int64))) / 1e3
    if spacing <= 0:
        return TRADING_DAYS
    if 20 * 3600 <= spacing <= 4 * 86400:
        return TRADING_DAYS
    return SECONDS_PER_YEAR / spacing


def sharpe_ratio(equity: np.ndarray, per_year: float) -> float:
    """Annualised Sharpe ratio of per-bar simple returns (risk-free rate 0)."""
    if len(equity) < 3:
        return 0.0
    returns = np.diff(equity) / equity[:-1]
    std = float(np.std(returns, ddof=1))
    if std == 0.0 or not math.isfinite(std):
        return 0.0
    return float(np.mean(returns)) / std * math.sqrt(per_year)


def max_drawdown(equity: np.ndarray) -> float:
    """The largest fall from a running peak, as a positive fraction of that peak."""
    if len(equity) == 0:
        return 0.0
    peaks = np.maximum.accumulate(equity)
    return float(np.max((peaks - equity) / peaks))


@dataclass(frozen=True)
class Metrics:
    """The held-out slice's results, as written to ``session_summary.json``."""

    total_return: float
    sharpe: float
    sharpe_periods_per_year: float
    max_drawdown: float
    trades: int
    fees: float
    buy_and_hold_return: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def compute_metrics(
    equity: np.ndarray, closes: np.ndarray, fees: Sequence[float], per_year: float
) -> Metrics:
    """Metrics of a strategy's ``equity`` curve over bars whose closes are ``closes``."""
    return Metrics(
        total_return=float(equity[-1] / equity[0] - 1.0),
        sharpe=sharpe_ratio(equity, per_year),
        sharpe_periods_per_year=per_year,
        max_drawdown=max_drawdown(equity),
        trades=len(fees),
        fees=float(sum(fees)),
        buy_and_hold_return=float(closes[-1] / closes[0] - 1.0),
    )
