"""The equity-curve plot of the held-out slice against buy-and-hold (PNG, Agg).

The PNG carries the session id in a text chunk (:data:`SESSION_KEY`), so a later
session knows whose plot it moves aside (see :func:`trainer.fsutil.move_aside`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from trainer.fsutil import atomic_open

SESSION_KEY = "session_id"


def plot_equity(
    path: Path,
    times: np.ndarray,
    strategy: np.ndarray,
    buy_hold: np.ndarray,
    title: str,
    session_id: str,
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
        fig.savefig(handle, format="png", metadata={SESSION_KEY: session_id})


def plot_session(path: Path) -> str | None:
    """The session id a plot written by :func:`plot_equity` carries; None if it has none."""
    try:
        with Image.open(path) as image:
            value = getattr(image, "text", {}).get(SESSION_KEY)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, str) else None
