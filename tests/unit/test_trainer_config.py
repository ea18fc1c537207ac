"""training_config.json and logging_config.json: defaults, and one-line errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tests.trainer_helpers import REPO
from trainer.config import (
    LoggingConfig,
    TrainingConfig,
    load_logging_config,
    load_training_config,
)
from trainer.errors import ConfigError


def write(tmp_path: Path, doc: object) -> Path:
    path = tmp_path / "training_config.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def test_repo_config_holds_every_key_at_its_default():
    path = REPO / "config" / "training_config.json"
    assert load_training_config(path) == TrainingConfig()
    assert set(json.loads(path.read_text())) == {f.name for f in dataclasses.fields(TrainingConfig)}


def test_original_system_defaults():
    c = TrainingConfig()
    assert (c.steps_per_batch, c.total_episodes, c.algorithm, c.device) == (1000, 10, "PPO", "cpu")
    assert c.enable_trade_logging and c.enable_trade_tracing and c.enable_tensorboard


def test_missing_file_means_defaults_unless_required(tmp_path):
    assert load_training_config(tmp_path / "none.json") == TrainingConfig()
    with pytest.raises(ConfigError, match=r"none\.json: no such file"):
        load_training_config(tmp_path / "none.json", required=True)


def test_values_are_read_and_normalised(tmp_path):
    path = write(tmp_path, {"algorithm": "dqn", "net_arch": [16, 8], "fee_rate": 0, "n_steps": 250})
    c = load_training_config(path)
    assert (c.algorithm, c.net_arch, c.fee_rate, c.n_steps) == ("DQN", (16, 8), 0.0, 250)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.seed = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ({"steps_per_bach": 10}, "unknown key 'steps_per_bach'"),
        (
            {"steps_per_batch": "100"},
            "key 'steps_per_batch' must be an integer between 2 and 10000000, got \"100\"",
        ),
        (
            {"steps_per_batch": 1},
            "key 'steps_per_batch' must be an integer between 2 and 10000000, got 1",
        ),
        ({"total_episodes": 2.5}, "key 'total_episodes' must be an integer between 1 and 1000000"),
        ({"total_episodes": True}, "key 'total_episodes' must be an integer"),
        ({"enable_tensorboard": "yes"}, "key 'enable_tensorboard' must be true or false"),
        ({"algorithm": "SAC"}, "key 'algorithm' must be one of PPO, A2C, DQN"),
        ({"train_fraction": 1.0}, "key 'train_fraction' must be a number in (0.0, 1.0)"),
        ({"net_arch": []}, "key 'net_arch' must be a non-empty list"),
        ({"net_arch": [8, "x"]}, "key 'net_arch'"),
        ({"device": "tpu"}, "key 'device' must be one of auto, cpu, cuda"),
        ({"n_steps": 7}, "n_steps 7 must divide steps_per_batch 1000 (the default)"),
        ({"n_steps": 64, "steps_per_batch": 100}, "n_steps 64 must divide steps_per_batch 100"),
    ],
)
def test_bad_config_is_one_line_naming_file_and_key(tmp_path, doc, expected):
    path = write(tmp_path, doc)
    with pytest.raises(ConfigError) as info:
        load_training_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message


def test_overrides_are_checked_and_name_the_option(tmp_path):
    path = write(tmp_path, {"total_episodes": 1})
    c = load_training_config(path, overrides={"total_episodes": 3, "seed": 5})
    assert (c.total_episodes, c.seed) == (3, 5)
    with pytest.raises(
        ConfigError, match=r"^--total-episodes: must be an integer between 1 and 1000000, got 0$"
    ):
        load_training_config(path, overrides={"total_episodes": 0})


def test_n_steps_is_checked_against_steps_per_batch_after_the_flags_apply(tmp_path):
    path = write(tmp_path, {"n_steps": 64})
    c = load_training_config(path, overrides={"steps_per_batch": 128})
    assert (c.n_steps, c.steps_per_batch) == (64, 128)
    path = write(tmp_path, {"n_steps": 64, "steps_per_batch": 128})
    with pytest.raises(ConfigError) as info:
        load_training_config(path, overrides={"steps_per_batch": 100})
    assert str(info.value) == (
        f"{path}: n_steps 64 must divide steps_per_batch 100 (--steps-per-batch)"
    )


def test_logging_config_accepts_the_three_shared_keys(tmp_path):
    path = tmp_path / "logging_config.json"
    assert load_logging_config(path) == LoggingConfig()
    assert load_logging_config(REPO / "config" / "logging_config.json").training_log
    path.write_text(json.dumps({"level": "DEBUG", "format": "json", "training_log": "x.log"}))
    assert load_logging_config(path) == LoggingConfig("debug", "json", "x.log")
    path.write_text(json.dumps({"level": "loud"}))
    with pytest.raises(ConfigError, match="key 'level' must be one of debug, info"):
        load_logging_config(path)
    path.write_text(json.dumps({"colour": True}))
    with pytest.raises(ConfigError, match="unknown key 'colour'"):
        load_logging_config(path)
