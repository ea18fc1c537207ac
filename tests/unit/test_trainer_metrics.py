"""Metrics, run planning and the trade logger: pure functions and small files."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import numpy as np
import pytest

from trainer.config import TrainingConfig
from trainer.data import synthetic_series
from trainer.env import Trade
from trainer.errors import DataError
from trainer.metrics import compute_metrics, max_drawdown, periods_per_year, sharpe_ratio
from trainer.plan import check_length, chunk_count, slice_steps
from trainer.trade_logger import TRACE_KEYS, TradeLogger


def spaced(seconds: float, n: int = 50) -> np.ndarray:
    start = np.datetime64("2024-01-01T00:00:00", "ms")
    return start + (np.arange(n) * seconds * 1000).astype("timedelta64[ms]")


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(86400, 252.0), (3 * 86400, 252.0), (3600, 8766.0), (60, 525960.0), (7 * 86400, 365.25 / 7)],
)
def test_periods_per_year_from_bar_spacing(seconds, expected):
    assert periods_per_year(spaced(seconds)) == pytest.approx(expected)


def test_weekday_bars_count_as_daily():
    assert periods_per_year(synthetic_series(300, seed=1).times) == 252.0


def test_sharpe_and_drawdown_by_hand():
    equity = np.array([100.0, 110.0, 99.0, 108.9])
    returns = np.array([0.1, -0.1, 0.1])
    expected = returns.mean() / returns.std(ddof=1) * math.sqrt(252)
    assert sharpe_ratio(equity, 252) == pytest.approx(expected)
    assert max_drawdown(equity) == pytest.approx(0.1)
    assert sharpe_ratio(np.full(5, 100.0), 252) == 0.0
    assert max_drawdown(np.array([1.0, 2.0, 3.0])) == 0.0


def test_compute_metrics():
    m = compute_metrics(
        np.array([100.0, 90.0, 120.0]), np.array([10.0, 11.0, 12.0]), [1.0, 0.5], 12
    )
    assert m.total_return == pytest.approx(0.2)
    assert m.max_drawdown == pytest.approx(0.1)
    assert (m.trades, m.fees, m.sharpe_periods_per_year) == (2, 1.5, 12)
    assert m.buy_and_hold_return == pytest.approx(0.2)
    assert set(m.to_dict()) >= {
        "total_return",
        "sharpe",
        "max_drawdown",
        "trades",
        "fees",
        "buy_and_hold_return",
    }


def test_chunks_cover_every_episode_with_whole_chunks():
    assert chunk_count(231, 1, 64) == 4
    assert chunk_count(256, 1, 64) == 4
    assert chunk_count(1567, 10, 1000) == 16
    assert slice_steps(300, 8, 0.8) == (231, 59)


def test_too_short_data_names_the_file_and_the_need():
    config = TrainingConfig(window=32)
    series = synthetic_series(100, seed=1)
    with pytest.raises(DataError, match=r"synthetic.*: 40 rows are too few for window 32") as info:
        check_length(synthetic_series(40, seed=1), config)
    need = int(str(info.value).split("need at least ")[1].rstrip(")"))
    check_length(synthetic_series(need, seed=1), config)
    with pytest.raises(DataError):
        check_length(synthetic_series(need - 1, seed=1), config)
    check_length(series, config)


def trade(i: int) -> Trade:
    return Trade(1, i, f"2024-01-0{i}T00:00:00", "buy", 1.5, 100.0 + i, 0.1, 1.5, 999.0)


def test_trade_logger_buffers_until_flush_then_writes_both_logs(tmp_path):
    started = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    logger = TradeLogger(tmp_path, "sid", started=started, logging_on=True, tracing_on=True)
    assert logger.trace_path == tmp_path / "trade_traces_20260102_030405.jsonl"
    assert logger.trace_path is not None
    logger.record("train", 10, trade(1))
    logger.record("eval", 3, trade(2))
    assert not logger.trace_path.exists()
    logger.flush()
    records = [json.loads(line) for line in logger.trace_path.read_text().splitlines()]
    assert [tuple(r) for r in records] == [TRACE_KEYS] * 2
    assert records[1] == {
        "session_id": "sid",
        "phase": "eval",
        "episode": 1,
        "step": 3,
        "time": "2024-01-02T00:00:00",
        "side": "buy",
        "quantity": 1.5,
        "price": 102.0,
        "fee": 0.1,
        "position": 1.5,
        "equity": 999.0,
    }
    lines = (tmp_path / "trade_execution.log").read_text().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("2024-01-01T00:00:00 sid train episode=1 step=10 BUY  1.500000 @")
    logger.save_session({"outcome": "completed"}, tmp_path / "summary.json")
    assert json.loads((tmp_path / "summary.json").read_text()) == {"outcome": "completed"}
    assert logger.counts == {"train": 1, "eval": 1}
    second = TradeLogger(tmp_path, "s2", started=started, logging_on=True, tracing_on=True)
    assert second.trace_path == tmp_path / "trade_traces_20260102_030405_2.jsonl"


def test_trade_logger_writes_nothing_when_switched_off(tmp_path):
    logger = TradeLogger(
        tmp_path / "t", "sid", started=datetime.now(UTC), logging_on=False, tracing_on=False
    )
    logger.record("train", 1, trade(1))
    logger.save_session({}, tmp_path / "summary.json")
    assert not logger.enabled
    assert not (tmp_path / "t").exists()
    assert logger.counts == {"train": 1}
