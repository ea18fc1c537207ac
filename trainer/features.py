"""Observation features, precomputed once per series as one float32 array.

Each bar ``t`` gets four scale-free numbers: the close-to-close log return, the gap
from the previous close to the open, and the high and low relative to the close,
each divided by an exponentially weighted volatility of returns up to and including
bar ``t`` and clipped to ``[-CLIP, CLIP]``. Every value uses bars ``<= t`` only, so
an observation never looks ahead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from trainer.data import PriceSeries

CLIP = 10.0
N_FEATURES = 4
EWMA_DECAY = 0.94
PRIOR_VARIANCE = 1e-4
"""Variance before the first return: a prior (1 % per bar), not taken from the data."""


def ewma_volatility(returns: np.ndarray, decay: float = EWMA_DECAY) -> np.ndarray:
    """``sigma[t]`` from ``returns[:t + 1]`` alone (a causal filter)."""
    out = np.empty_like(returns)
    variance = PRIOR_VARIANCE
    for t, r in enumerate(returns.tolist()):
        variance = decay * variance + (1.0 - decay) * r * r
        out[t] = variance
    return np.sqrt(np.maximum(out, 1e-16))


def compute_features(series: PriceSeries) -> np.ndarray:
    """An ``(n_bars, N_FEATURES)`` float32 array; row 0 (no previous close) is zero."""
    close = series.close
    prev = np.concatenate([close[:1], close[:-1]])
    returns = np.log(close / prev)
    scale = ewma_volatility(returns)
    raw = np.stack(
        [
            returns,
            np.log(series.open / prev),
            np.log(series.high / close),
            np.log(series.low / close),
        ],
        axis=1,
    )
    feats = np.clip(raw / scale[:, None], -CLIP, CLIP)
    feats[0] = 0.0
    return feats.astype(np.float32)


EPOCH = datetime(1970, 1, 1)


@dataclass(frozen=True)
class Market:
    """What the env reads: features, closes and bar times, shared by all envs."""

    features: np.ndarray
    close: np.ndarray
    times: np.ndarray
    millis: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        millis = self.times.astype("datetime64[ms]").astype(np.int64)
        object.__setattr__(self, "millis", millis)

    @classmethod
    def from_series(cls, series: PriceSeries) -> Market:
        return cls(compute_features(series), series.close, series.times)

    def __len__(self) -> int:
        return len(self.close)

    def time_text(self, index: int) -> str:
        """The bar's time as ISO 8601 to the second (cheap: called once per trade)."""
        moment = EPOCH + timedelta(milliseconds=int(self.millis[index]))
        return moment.isoformat(timespec="seconds")
