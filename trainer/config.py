"""Settings, parsed once at the edge into frozen dataclasses.

``config/training_config.json`` maps onto :class:`TrainingConfig` key for key and
``config/logging_config.json`` onto :class:`LoggingConfig`. A missing file means the
defaults. Broken JSON, an unknown key or a wrong value raises :class:`ConfigError`
with one line naming the file and the key; nothing else in the trainer reads
settings from files or the environment.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from daemon.protocol.jsonfile import JSONFileError, read_object
from trainer.errors import ConfigError

T = TypeVar("T")
Check = Callable[[Any], Any]
"""Returns the normalised value or raises ValueError with what was expected."""


def _int(low: int, high: int | None = None) -> Check:
    def check(v: Any) -> int:
        ok = isinstance(v, int) and not isinstance(v, bool) and v >= low
        if not ok or (high is not None and v > high):
            raise ValueError(
                f"an integer >= {low}" if high is None else f"an integer between {low} and {high}"
            )
        return v

    return check


def _float(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Check:
    def check(v: Any) -> float:
        ok = isinstance(v, int | float) and not isinstance(v, bool)
        ok = ok and (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
        if not ok:
            lo, hi = "(" if low_open else "[", ")" if high_open else "]"
            raise ValueError(f"a number in {lo}{low}, {high}{hi}")
        return float(v)

    return check


def _choice(*options: str) -> Check:
    def check(v: Any) -> str:
        if not isinstance(v, str) or v.lower() not in {o.lower() for o in options}:
            raise ValueError(f"one of {', '.join(options)}")
        return next(o for o in options if o.lower() == v.lower())

    return check


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError("true or false")
    return v


def _optional(inner: Check) -> Check:
    return lambda v: None if v is None else inner(v)


def _layers(v: Any) -> tuple[int, ...]:
    if not isinstance(v, list | tuple) or not v:
        raise ValueError("a non-empty list of positive integers")
    return tuple(_int(1, 4096)(x) for x in v)


def _path(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError("a non-empty path")
    return v


def _spec(default: Any, check: Check) -> Any:
    return field(default=default, metadata={"check": check})


@dataclass(frozen=True)
class TrainingConfig:
    """``config/training_config.json``: every key, its default and its meaning."""

    steps_per_batch: int = _spec(1000, _int(2, 10_000_000))
    """Env steps per ``learn()`` chunk, exactly; logs are flushed after each chunk."""
    total_episodes: int = _spec(10, _int(1, 1_000_000))
    """Training episodes; one episode is one pass over the training slice."""
    enable_trade_logging: bool = _spec(True, _bool)
    """Write ``logs/trades/trade_execution.log``, one readable line per trade."""
    enable_trade_tracing: bool = _spec(True, _bool)
    """Write ``logs/trades/trade_traces_YYYYMMDD_HHMMSS.jsonl``, one object per trade."""
    enable_tensorboard: bool = _spec(True, _bool)
    """Write one tensorboard run under ``logs/tensorboard/``."""
    algorithm: str = _spec("PPO", _choice("PPO", "A2C", "DQN"))
    """The stable-baselines3 algorithm."""
    seed: int = _spec(42, _int(0, 2**32 - 1))
    """Seed of the synthetic series, the env, torch and the algorithm."""
    device: str = _spec("cpu", _choice("auto", "cpu", "cuda"))
    """Torch device; ``auto`` takes CUDA when present. CPU is fastest for MLP policies."""
    torch_threads: int = _spec(1, _int(0, 256))
    """Torch intra-op threads; 0 keeps torch's default. 1 is fastest for small MLPs."""
    window: int = _spec(32, _int(2, 1024))
    """Bars of features in one observation."""
    fee_rate: float = _spec(0.001, _float(0.0, 0.1, high_open=True))
    """Fee as a fraction of traded notional."""
    slippage: float = _spec(0.0005, _float(0.0, 0.1, high_open=True))
    """Execution price moved against the trade by this fraction."""
    initial_cash: float = _spec(10_000.0, _float(0.0, 1e15, low_open=True))
    """Starting equity of every episode."""
    train_fraction: float = _spec(0.8, _float(0.0, 1.0, low_open=True, high_open=True))
    """Share of the bars used for training; the later rest is held out for evaluation."""
    synthetic_bars: int = _spec(2000, _int(100, 10_000_000))
    """Length of the embedded synthetic series used when no ``--data`` is given."""
    checkpoint_freq: int = _spec(5000, _int(0, 1_000_000_000))
    """Save a checkpoint every this many env steps; 0 turns checkpoints off."""
    keep_model_versions: int = _spec(5, _int(1, 10_000))
    """Backups of the final model kept in ``models/backups/`` (newest first)."""
    ack_timeout_s: float = _spec(300.0, _float(0.0, 86_400.0))
    """Longest wait for the daemon's acknowledgement before training anyway."""
    net_arch: tuple[int, ...] = _spec((64, 64), _layers)
    """Hidden layer sizes of the policy (and value) network."""
    learning_rate: float = _spec(3e-4, _float(0.0, 1.0, low_open=True))
    """Optimiser learning rate."""
    gamma: float = _spec(0.99, _float(0.0, 1.0, low_open=True))
    """Discount factor."""
    n_steps: int | None = _spec(None, _optional(_int(1, 10_000_000)))
    """Rollout length of PPO/A2C; must divide steps_per_batch. null derives it."""
    batch_size: int = _spec(64, _int(2, 10_000_000))
    """Minibatch size (PPO: the largest divisor of n_steps not above it; DQN: as is)."""
    n_epochs: int = _spec(10, _int(1, 10_000))
    """PPO optimisation epochs per rollout."""
    ent_coef: float = _spec(0.0, _float(0.0, 1.0))
    """Entropy bonus coefficient (PPO, A2C)."""
    buffer_size: int = _spec(50_000, _int(1, 100_000_000))
    """DQN replay buffer size; bounded so memory does not grow with training length."""
    periods_per_year: float | None = _spec(None, _optional(_float(0.0, 1e7, low_open=True)))
    """Bars per year used to annualise the Sharpe ratio; null infers it from bar spacing."""

    def __post_init__(self) -> None:
        if self.n_steps is not None and self.steps_per_batch % self.n_steps:
            raise ValueError(
                f"n_steps {self.n_steps} must divide steps_per_batch {self.steps_per_batch}"
            )

    def to_json_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["net_arch"] = list(self.net_arch)
        return doc


@dataclass(frozen=True)
class LoggingConfig:
    """``config/logging_config.json`` (shared with the daemon)."""

    level: str = _spec("info", _choice("debug", "info", "warning", "error"))
    """Least severe level written to the training log and the console."""
    format: str = _spec("auto", _choice("auto", "json", "console"))
    """The daemon's log format; accepted here, the trainer always writes plain lines."""
    training_log: str = _spec("logs/training.log", _path)
    """The training log, relative to the workspace unless absolute."""


def _values(cls: type[Any], doc: Mapping[str, Any], source: str) -> dict[str, Any]:
    """``doc``'s values, each checked on its own (the cross-field checks come later)."""
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, raw in doc.items():
        if key not in known:
            raise ConfigError(f"{source}: unknown key {key!r}")
        try:
            values[key] = known[key].metadata["check"](raw)
        except ValueError as e:
            raise ConfigError(f"{source}: key {key!r} must be {e}, got {json.dumps(raw)}") from e
    return values


def _build(cls: type[T], doc: Mapping[str, Any], source: str) -> T:
    try:
        return cls(**_values(cls, doc, source))
    except ValueError as e:
        raise ConfigError(f"{source}: {e}") from e


def _read_object(path: Path) -> dict[str, Any] | None:
    try:
        return read_object(path)
    except JSONFileError as e:
        raise ConfigError(str(e)) from e


def _option(key: str) -> str:
    return "--" + key.replace("_", "-")


def _flag_values(overrides: Mapping[str, Any]) -> dict[str, Any]:
    known = {f.name: f for f in fields(TrainingConfig)}
    values: dict[str, Any] = {}
    for key, raw in overrides.items():
        try:
            values[key] = known[key].metadata["check"](raw)
        except ValueError as e:
            raise ConfigError(f"{_option(key)}: must be {e}, got {raw}") from e
    return values


def load_training_config(
    path: Path, *, required: bool = False, overrides: Mapping[str, Any] | None = None
) -> TrainingConfig:
    """The file's config with the command-line ``overrides`` (already None-filtered) applied.

    A missing file means the defaults (unless ``required``). Each value is checked
    where it comes from; the checks across keys (``n_steps`` must divide
    ``steps_per_batch``) run on the merged values, so a flag can make a file valid,
    and an error names the file key and the flag involved.
    """
    doc = _read_object(path)
    if doc is None:
        if required:
            raise ConfigError(f"{path}: no such file")
        doc = {}
    from_file = _values(TrainingConfig, doc, str(path))
    from_flags = _flag_values(overrides or {})
    values = {**from_file, **from_flags}
    n_steps = values.get("n_steps")
    steps_per_batch = values.get("steps_per_batch", TrainingConfig.steps_per_batch)
    if n_steps is not None and steps_per_batch % n_steps:
        origin = ""  # steps_per_batch from the same file
        if "steps_per_batch" in from_flags:
            origin = f" ({_option('steps_per_batch')})"
        elif "steps_per_batch" not in from_file:
            origin = " (the default)"
        raise ConfigError(
            f"{path}: n_steps {n_steps} must divide steps_per_batch {steps_per_batch}{origin}"
        )
    return TrainingConfig(**values)


def load_logging_config(path: Path) -> LoggingConfig:
    doc = _read_object(path)
    return LoggingConfig() if doc is None else _build(LoggingConfig, doc, str(path))
