"""The trading env: exact accounting on a hand-made path, no look-ahead, check_env."""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pytest
from stable_baselines3.common.env_checker import check_env

from trainer.data import PriceSeries, synthetic_series
from trainer.env import Trade, TradingEnv
from trainer.features import Market, compute_features

SHORT, FLAT, LONG = 0, 1, 2


def series_from(close: list[float]) -> PriceSeries:
    c = np.asarray(close, dtype=float)
    times = np.arange(len(c)).astype("datetime64[D]").astype("datetime64[ms]")
    return PriceSeries(times, c.copy(), c * 1.01, c * 0.99, c, source="hand-made")


def make_env(close: list[float], *, fee: float, slip: float, cash: float = 1000.0) -> TradingEnv:
    market = Market.from_series(series_from(close))
    return TradingEnv(
        market, 0, len(close), window=2, fee_rate=fee, slippage=slip, initial_cash=cash
    )


def test_scripted_actions_give_exact_equity_fees_positions_and_trades():
    env = make_env([100, 100, 100, 110, 99, 120, 120], fee=0.001, slip=0.01)
    obs, info = env.reset()
    assert info["equity"] == 1000.0
    assert obs[-1] == 0.0
    records = []
    for action in (LONG, LONG, SHORT, FLAT):
        obs, reward, terminated, truncated, info = env.step(action)
        records.append((reward, terminated, truncated, info))

    # bar 2, close 100: long 10 units at 101 (1 % slippage), fee 0.1 % of 1010
    cash = 1000.0 - 10 * 101.0 - 1.01
    buy = Trade(1, 2, "1970-01-03T00:00:00", "buy", 10.0, 101.0, 1.01, 10.0, cash + 10 * 100)
    assert records[0][3]["trade"] == buy
    assert records[0][3]["equity"] == pytest.approx(cash + 10 * 110, rel=1e-12)
    assert records[0][0] == pytest.approx(100 * math.log((cash + 1100) / 1000), rel=1e-12)
    # bar 3: still long, no trade, no rebalancing
    assert records[1][3]["trade"] is None
    assert records[1][3]["position"] == 10.0
    equity_4 = cash + 10 * 99
    assert records[1][3]["equity"] == pytest.approx(equity_4, rel=1e-12)
    # bar 4, close 99: flip to short: sell 10 + equity/99 units at 98.01
    short_units = equity_4 / 99
    qty = 10 + short_units
    fee = 0.001 * qty * 98.01
    cash += qty * 98.01 - fee
    sell = records[2][3]["trade"]
    assert (sell.side, sell.bar, sell.episode) == ("sell", 4, 1)
    assert sell.quantity == pytest.approx(qty, rel=1e-12)
    assert sell.price == pytest.approx(98.01, rel=1e-12)
    assert sell.fee == pytest.approx(fee, rel=1e-12)
    assert sell.position == pytest.approx(-short_units, rel=1e-12)
    assert sell.equity == pytest.approx(cash - short_units * 99, rel=1e-12)
    equity_5 = cash - short_units * 120
    assert records[2][3]["equity"] == pytest.approx(equity_5, rel=1e-12)
    assert records[2][0] == pytest.approx(100 * math.log(equity_5 / equity_4), rel=1e-12)
    # bar 5, close 120: flat: buy back at 121.2; the episode ends at the last bar
    fee = 0.001 * short_units * 121.2
    cash -= short_units * 121.2 + fee
    cover = records[3][3]["trade"]
    assert (cover.side, cover.position) == ("buy", 0.0)
    assert cover.fee == pytest.approx(fee, rel=1e-12)
    assert records[3][3]["equity"] == pytest.approx(cash, rel=1e-12)
    assert [r[1:3] for r in records] == [(False, False)] * 3 + [(False, True)]
    assert obs[-1] == 0.0


def test_fees_and_slippage_are_inside_the_reward():
    free = make_env([100.0] * 6, fee=0.0, slip=0.0)
    costly = make_env([100.0] * 6, fee=0.001, slip=0.002)
    for env in (free, costly):
        env.reset()
    assert free.step(LONG)[1] == 0.0
    reward = costly.step(LONG)[1]
    assert reward == pytest.approx(100 * math.log((1000 - 10 * 0.2 - 0.001 * 1002) / 1000))


def test_bankruptcy_terminates_the_episode():
    env = make_env([100, 100, 100, 300, 300], fee=0.0, slip=0.0)
    env.reset()
    _, reward, terminated, truncated, info = env.step(SHORT)
    assert info["equity"] < 0
    assert (reward, terminated, truncated) == (-100.0, True, False)


def test_holding_an_exposure_never_rebalances():
    env = make_env([100, 100, 100, 90, 80, 70, 60, 60], fee=0.001, slip=0.0)
    env.reset()
    trades = [env.step(LONG)[4]["trade"] for _ in range(5)]
    assert trades[0] is not None
    assert trades[1:] == [None] * 4


def test_changing_prices_after_bar_t_changes_no_observation_up_to_t():
    base = synthetic_series(200, seed=3)
    t = 120
    rng = np.random.default_rng(0)
    factor = np.ones(len(base))
    factor[t + 1 :] = rng.uniform(0.9, 1.1, len(base) - t - 1)
    other = PriceSeries(
        base.times,
        base.open * factor,
        base.high * factor,
        base.low * factor,
        base.close * factor,
        source="changed after t",
    )
    np.testing.assert_array_equal(compute_features(base)[: t + 1], compute_features(other)[: t + 1])
    observations = []
    for series in (base, other):
        env = TradingEnv(
            Market.from_series(series),
            0,
            200,
            window=16,
            fee_rate=0.001,
            slippage=0.0,
            initial_cash=1000.0,
        )
        obs, _ = env.reset()
        seen = {env.t: obs}
        for step in range(150):
            obs, _, terminated, truncated, _ = env.step((step // 7) % 3)
            seen[env.t] = obs
            assert not (terminated or truncated)
        observations.append(seen)
    before = [bar for bar in observations[0] if bar <= t]
    after = [bar for bar in observations[0] if bar > t]
    assert len(before) > 50
    for bar in before:
        np.testing.assert_array_equal(observations[0][bar], observations[1][bar])
    assert any(not np.array_equal(observations[0][b], observations[1][b]) for b in after)


def test_observations_are_float32_inside_the_space():
    env = TradingEnv(
        Market.from_series(synthetic_series(300, seed=1)),
        0,
        300,
        window=8,
        fee_rate=0.001,
        slippage=0.0005,
        initial_cash=1e4,
    )
    obs, _ = env.reset()
    done = False
    while not done:
        assert obs.dtype == np.float32
        assert env.observation_space.contains(obs)
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        done = terminated or truncated
    assert env.t == 299


@pytest.mark.parametrize(("start", "end"), [(0, 240), (240, 300)])
def test_check_env_passes_without_warnings(start, end):
    market = Market.from_series(synthetic_series(300, seed=1))
    env = TradingEnv(
        market, start, end, window=8, fee_rate=0.001, slippage=0.0005, initial_cash=1e4
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env, warn=True)


def test_stepping_past_the_end_is_an_error():
    env = make_env([100, 100, 100, 101], fee=0.0, slip=0.0)
    env.reset()
    assert env.step(FLAT)[3] is True
    with pytest.raises(RuntimeError, match="reset"):
        env.step(FLAT)


def test_a_slice_without_steps_is_refused():
    market = Market.from_series(synthetic_series(100, seed=1))
    with pytest.raises(ValueError, match="no steps"):
        TradingEnv(market, 0, 10, window=9, fee_rate=0.0, slippage=0.0, initial_cash=1.0)


def test_trades_are_immutable_and_cheap_to_copy():
    t = Trade(1, 2, "t", "buy", 1.0, 2.0, 0.1, 1.0, 3.0)
    assert copy.deepcopy({"trade": t})["trade"] is t
    with pytest.raises(AttributeError):
        t.fee = 0.0  # type: ignore[misc]
