"""TradingModel with real tiny SB3 training: exact chunks, saving, reloading, seeding."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import torch
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from trainer.callbacks import AtomicCheckpoint, StopOnSignal
from trainer.config import TrainingConfig
from trainer.data import synthetic_series
from trainer.env import TradingEnv
from trainer.features import Market
from trainer.fsutil import move_aside
from trainer.model import TradingModel, algorithm_kwargs, largest_divisor, prune_backups
from trainer.plot import plot_equity, plot_session
from trainer.training import make_sb3_logger, summary_session

MARKET = Market.from_series(synthetic_series(300, seed=5))


def tiny(**overrides) -> TrainingConfig:
    base = {"net_arch": (8,), "n_epochs": 2, "batch_size": 32, "steps_per_batch": 64, "window": 8}
    return TrainingConfig(**{**base, **overrides})


def env_for(config: TrainingConfig, start: int = 0, end: int = 240) -> TradingEnv:
    return TradingEnv(
        MARKET,
        start,
        end,
        window=config.window,
        fee_rate=config.fee_rate,
        slippage=config.slippage,
        initial_cash=config.initial_cash,
    )


def model_for(config: TrainingConfig, env: TradingEnv) -> TradingModel:
    vec = DummyVecEnv([lambda: Monitor(env)])
    return TradingModel.create(config, vec, device="cpu", logger=make_sb3_logger(None))


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_largest_divisor():
    assert [largest_divisor(n, 5) for n in (60, 64, 97, 1000, 3)] == [5, 4, 1, 5, 3]


@pytest.mark.parametrize("spb", [60, 64, 97, 256, 1000])
def test_rollouts_always_divide_the_chunk(spb):
    ppo = algorithm_kwargs(tiny(steps_per_batch=spb))
    assert spb % ppo["n_steps"] == 0
    assert ppo["n_steps"] % ppo["batch_size"] == 0
    assert ppo["batch_size"] > 1
    assert spb % algorithm_kwargs(tiny(steps_per_batch=spb, algorithm="A2C"))["n_steps"] == 0
    dqn = algorithm_kwargs(tiny(steps_per_batch=spb, algorithm="DQN"))
    assert spb % dqn["train_freq"][0] == 0


@pytest.mark.parametrize("algorithm", ["PPO", "A2C", "DQN"])
def test_chunks_are_exact_and_the_env_is_not_reset_between_them(algorithm):
    config = tiny(algorithm=algorithm, steps_per_batch=60)
    env = env_for(config)
    model = model_for(config, env)
    callback = CallbackList([StopOnSignal(lambda: False)])
    for chunk in range(1, 4):
        model.learn_chunk(60, callback)
        assert model.num_timesteps == 60 * chunk
        assert (env.episode, env.t) == (1, env.first + 60 * chunk)


def test_a_signal_stops_learning_at_the_next_step():
    config = tiny()
    model = model_for(config, env_for(config))
    model.learn_chunk(64, CallbackList([StopOnSignal(lambda: model.num_timesteps >= 10)]))
    assert model.num_timesteps == 10


def test_checkpoints_keep_counting_across_chunks(tmp_path):
    config = tiny()
    model = model_for(config, env_for(config))
    checkpoints = AtomicCheckpoint(100, tmp_path, "m")
    callback = CallbackList([checkpoints])
    for _ in range(4):
        model.learn_chunk(64, callback)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["m_100_steps.zip", "m_200_steps.zip"]
    assert checkpoints.saved == [tmp_path / n for n in names]


def test_reload_gives_the_same_deterministic_actions(tmp_path):
    config = tiny()
    model = model_for(config, env_for(config))
    model.learn_chunk(128, CallbackList([]))
    model.save(tmp_path / "m.zip")
    loaded = TradingModel.load(tmp_path / "m.zip", "PPO")
    held_out = env_for(config, 240, 300)
    obs, _ = held_out.reset()
    actions = []
    for step in range(40):
        assert model.predict(obs) == loaded.predict(obs) == model.predict(obs)
        actions.append(model.predict(obs))
        obs = held_out.step(step % 3)[0]
    assert loaded.num_timesteps == 128
    assert [p.name for p in tmp_path.iterdir()] == ["m.zip"]


def parameters(model: TradingModel) -> list[np.ndarray]:
    return [p.detach().numpy().copy() for p in model.algo.policy.parameters()]


def test_seeded_runs_are_reproducible_on_cpu():
    runs = []
    for seed in (11, 11, 12):
        config = tiny(seed=seed)
        model = model_for(config, env_for(config))
        model.learn_chunk(64, CallbackList([]))
        runs.append(parameters(model))
    assert all(np.array_equal(a, b) for a, b in zip(runs[0], runs[1], strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(runs[0], runs[2], strict=True))


def test_archive_and_save_model_backs_up_and_keeps_the_newest(tmp_path):
    config = tiny()
    model = model_for(config, env_for(config))
    final = tmp_path / "models" / "final.zip"
    backups = tmp_path / "models" / "backups"
    contents: list[bytes] = []
    made: list[Path | None] = []
    for second in range(4):
        model.learn_chunk(64, CallbackList([]))
        now = datetime(2026, 1, 1, 12, 0, second, tzinfo=UTC)
        made.append(model.archive_and_save_model(final, backups, keep=2, now=now))
        contents.append(final.read_bytes())
    assert made[0] is None
    assert sorted(p.name for p in backups.iterdir()) == [
        "final_20260101_120002.zip",
        "final_20260101_120003.zip",
    ]
    assert (backups / "final_20260101_120003.zip").read_bytes() == contents[2]
    assert sorted(p.name for p in final.parent.iterdir()) == ["backups", "final.zip"]
    assert TradingModel.load(final, "PPO").num_timesteps == 256


def test_prune_backups_orders_by_stamp_and_suffix_and_ignores_strangers(tmp_path):
    names = [
        "m_20260101_000000.zip",
        "m_20260101_000000_2.zip",
        "m_20260101_000000_10.zip",
        "m_20250101_000000.zip",
        "m_notes.zip",
        "other_20200101_000000.zip",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    deleted = prune_backups(tmp_path, "m", keep=2)
    assert sorted(p.name for p in deleted) == ["m_20250101_000000.zip", "m_20260101_000000.zip"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "m_20260101_000000_10.zip",
        "m_20260101_000000_2.zip",
        "m_notes.zip",
        "other_20200101_000000.zip",
    ]


def test_move_aside_keeps_an_earlier_sessions_output(tmp_path):
    summary = tmp_path / "session_summary.json"
    assert move_aside(summary, "S2", summary_session) is None  # nothing there
    summary.write_text(json.dumps({"session_id": "S2"}))
    assert move_aside(summary, "S2", summary_session) is None  # our own: left in place
    summary.write_text(json.dumps({"session_id": "S1"}))
    assert move_aside(summary, "S2", summary_session) == tmp_path / "session_summary_S1.json"
    summary.write_text(json.dumps({"session_id": "S1", "again": True}))
    assert move_aside(summary, "S2", summary_session) == tmp_path / "session_summary_S1_2.json"
    for text in ("{cut off", json.dumps({"session_id": "../escape"})):
        summary.write_text(text)
        os.utime(summary, (0, 86_400))  # owner unknown or unusable: named by its mtime
        moved = move_aside(summary, "S2", summary_session)
        assert moved is not None and moved.parent == tmp_path
        assert moved.name.startswith("session_summary_19700102_000000")
    assert not summary.exists()
    assert len(list(tmp_path.iterdir())) == 4


def test_the_plot_says_whose_it_is(tmp_path):
    path = tmp_path / "equity_curve.png"
    times = np.arange(3).astype("datetime64[D]")
    plot_equity(path, times, np.ones(3), np.ones(3), "t", "20260101T000000Z-abc123")
    assert plot_session(path) == "20260101T000000Z-abc123"
    path.write_bytes(b"not a png")
    assert plot_session(path) is None
