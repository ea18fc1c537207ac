"""Every number in config.json and training_config.json has a lower and an upper bound.

The keys come from the dataclass fields, so a new numeric key without bounds fails here.
The command line turns a value out of range into exit 2 and one line naming the key,
with nothing written in the workspace.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import pytest

from daemon.config import DAEMON_BOUNDS, DaemonConfig, load_settings
from daemon.errors import ConfigError
from trainer.config import TrainingConfig, load_training_config
from trainer.errors import ConfigError as TrainerConfigError

REPO = Path(__file__).resolve().parents[2]


def numeric_fields(cls: type[Any]) -> list[str]:
    names = []
    for f in dataclasses.fields(cls):
        hint = get_type_hints(cls)[f.name]
        options = get_args(hint) if get_origin(hint) in (Union, types.UnionType) else (hint,)
        if any(o in (int, float) for o in options):
            names.append(f.name)
    return names


DAEMON_NUMBERS = numeric_fields(DaemonConfig)
TRAINER_NUMBERS = numeric_fields(TrainingConfig)


def test_the_field_lists_are_not_empty() -> None:
    assert {"keep_last", "rotation_interval_s", "compression_level"} <= set(DAEMON_NUMBERS)
    assert {"steps_per_batch", "ack_timeout_s", "initial_cash"} <= set(TRAINER_NUMBERS)


def write_config(ws: Path, doc: dict[str, Any]) -> Path:
    (ws / "config").mkdir(parents=True, exist_ok=True)
    path = ws / "config" / "config.json"
    path.write_text(json.dumps(doc))
    return path


def typed(name: str, value: float) -> float:
    hint = get_type_hints(DaemonConfig)[name]
    return int(value) if int in (get_args(hint) or (hint,)) else value


@pytest.mark.parametrize("name", DAEMON_NUMBERS)
def test_daemon_number_has_bounds_holding_its_default(name: str) -> None:
    assert name in DAEMON_BOUNDS, f"config key {name!r} has no bounds in DAEMON_BOUNDS"
    low, high = DAEMON_BOUNDS[name]
    assert low < high
    default = getattr(DaemonConfig(), name)
    assert default is None or low <= default <= high


@pytest.mark.parametrize("name", DAEMON_NUMBERS)
def test_daemon_number_bounds_are_inclusive(tmp_path: Path, name: str) -> None:
    low, high = DAEMON_BOUNDS[name]
    for value in (low, high):
        write_config(tmp_path, {name: typed(name, value)})
        assert getattr(load_settings(tmp_path).daemon, name) == value


@pytest.mark.parametrize("name", DAEMON_NUMBERS)
@pytest.mark.parametrize("side", ["below", "above"])
def test_daemon_number_out_of_range_names_file_and_key(
    tmp_path: Path, name: str, side: str
) -> None:
    low, high = DAEMON_BOUNDS[name]
    value = typed(name, low - 1 if side == "below" else high * 10 + 1)
    path = write_config(tmp_path, {name: value})
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and name in message and "\n" not in message


@pytest.mark.parametrize("name", TRAINER_NUMBERS)
def test_trainer_number_refuses_absurd_values(tmp_path: Path, name: str) -> None:
    path = tmp_path / "training_config.json"
    refused = []
    for value in (-(10**18), 10**18):
        path.write_text(json.dumps({name: value}))
        try:
            load_training_config(path)
        except TrainerConfigError as e:
            message = str(e)
            assert message.startswith(f"{path}: ") and f"'{name}'" in message
            assert "\n" not in message
            refused.append(value)
    assert refused == [-(10**18), 10**18], f"{name} has no lower or no upper bound"


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=120
    )


@pytest.mark.parametrize("name", DAEMON_NUMBERS)
def test_daemon_run_with_a_number_out_of_range_exits_2_touching_nothing(
    tmp_path: Path, name: str
) -> None:
    ws = tmp_path / "ws"
    write_config(ws, {name: typed(name, DAEMON_BOUNDS[name][1] * 10 + 1)})
    before = sorted(p.relative_to(ws) for p in ws.rglob("*"))
    done = run(["-m", "daemon", "run", "--workspace", str(ws)])
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0] and "config.json" in lines[0], done.stderr
    assert sorted(p.relative_to(ws) for p in ws.rglob("*")) == before


@pytest.mark.parametrize(("name", "value"), [("ack_timeout_s", 1e9), ("total_episodes", 10**9)])
def test_trainer_with_a_number_out_of_range_exits_2_touching_nothing(
    tmp_path: Path, name: str, value: float
) -> None:
    ws = tmp_path / "ws"
    (ws / "config").mkdir(parents=True)
    (ws / "config" / "training_config.json").write_text(json.dumps({name: value}))
    before = sorted(p.relative_to(ws) for p in ws.rglob("*"))
    done = run(["-m", "trainer", "--workspace", str(ws)])
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0], done.stderr
    assert sorted(p.relative_to(ws) for p in ws.rglob("*")) == before
