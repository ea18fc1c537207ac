"""The equity-curve plot of the held-out slice against buy-and-hold (PNG, Agg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from trainer.fsutil import atomic_open


def plot_equity(
    path: Path, times: np.ndarray, strategy: np.ndarray, buy_hold: np.ndarray, title: str
) -> None:
    """Write the plot atomically to ``path``; no pyplot, so no global figure state."""
    fig = Figure(figsize=(9, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = times.astype("datetime64[ms]").astype(object)
    ax.plot(x, strategy, label="agent", linewidth=1.4)
    ax.plot(x, buy_hold, label="buy and hold", linewidth=1.0, alpha=0.8)
    ax.set_title(title)
    ax.set_ylabel("equity")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    fig.autofmt_xdate()
    fig.tight_layout()
    with atomic_open(path) as handle:
        fig.savefig(handle, format="png")
