"""One training session's work: build, train in exact chunks, evaluate, write outputs.

:class:`Training` knows nothing of the lock; ``session.py`` drives it and always calls
:meth:`Training.finish`, which saves the final model (unless the run failed or never
trained), evaluates on the held-out slice, draws the equity plot and writes the
session summary, whatever happened before.
"""

from __future__ import annotations

import json
import logging
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import Logger, TensorBoardOutputFormat
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from daemon.protocol import Outcome
from trainer.callbacks import AtomicCheckpoint, ProgressBar, StopOnSignal, TradeRecorder
from trainer.env import Trade, TradingEnv
from trainer.evaluation import Evaluation, evaluate
from trainer.features import Market
from trainer.fsutil import atomic_write_text, move_aside
from trainer.metrics import periods_per_year
from trainer.model import TradingModel
from trainer.plan import CHECKPOINT_PREFIX, FINAL_MODEL, RunPlan
from trainer.plot import plot_equity, plot_session
from trainer.trade_logger import TradeLogger

log = logging.getLogger("trainer.training")
PACKAGES = ("torch", "stable-baselines3", "gymnasium", "numpy", "matplotlib", "tensorboard")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def make_sb3_logger(folder: Path | None) -> Logger:
    """SB3's logger with tensorboard output into ``folder`` (one run), or no output."""
    if folder is None:
        return Logger(folder=None, output_formats=[])
    return Logger(folder=str(folder), output_formats=[TensorBoardOutputFormat(str(folder))])


def build_envs(plan: RunPlan) -> tuple[TradingEnv, TradingEnv]:
    """The training env (bars before the split) and the held-out env (the rest)."""
    cfg = plan.config
    market = Market.from_series(plan.series)
    env_args: dict[str, Any] = {
        "window": cfg.window,
        "fee_rate": cfg.fee_rate,
        "slippage": cfg.slippage,
        "initial_cash": cfg.initial_cash,
    }
    return (
        TradingEnv(market, 0, plan.split, **env_args),
        TradingEnv(market, plan.split, len(market), **env_args),
    )


class Training:
    """Builds the env and the model, trains, and writes every output of the session."""

    def __init__(
        self,
        plan: RunPlan,
        session_id: str,
        *,
        started: datetime,
        should_stop: Callable[[], bool],
        progress: bool = False,
    ) -> None:
        self.plan = plan
        self.session_id = session_id
        self.started = started
        self.should_stop = should_stop
        self.progress = progress
        self.model: TradingModel | None = None
        self.trades: TradeLogger | None = None
        self.sb3_logger: Logger | None = None
        self.checkpoints: AtomicCheckpoint | None = None
        self.train_seconds = 0.0
        self.train_cpu_seconds = 0.0
        self.outputs: dict[str, Any] = {}
        self.train_env: TradingEnv | None = None
        self.eval_env: TradingEnv | None = None

    @property
    def steps(self) -> int:
        return 0 if self.model is None else self.model.num_timesteps

    def setup(self) -> None:
        plan, cfg = self.plan, self.plan.config
        if cfg.torch_threads:
            torch.set_num_threads(cfg.torch_threads)
        self.train_env, self.eval_env = build_envs(plan)
        train_env = self.train_env
        self.trades = TradeLogger(
            plan.logs / "trades",
            self.session_id,
            started=self.started,
            logging_on=cfg.enable_trade_logging,
            tracing_on=cfg.enable_trade_tracing,
        )
        tb_dir = plan.logs / "tensorboard" / f"{cfg.algorithm}_{self.session_id}"
        self.sb3_logger = make_sb3_logger(tb_dir if cfg.enable_tensorboard else None)
        vec_env = DummyVecEnv([lambda: Monitor(train_env)])
        self.model = TradingModel.create(cfg, vec_env, device=plan.device, logger=self.sb3_logger)
        callbacks: list[BaseCallback] = [StopOnSignal(self.should_stop)]
        if self.trades.enabled:
            callbacks.append(TradeRecorder(self.trades))
        if cfg.checkpoint_freq:
            self.checkpoints = AtomicCheckpoint(  # step counts restart each session: name it
                cfg.checkpoint_freq,
                plan.models / "checkpoints",
                f"{CHECKPOINT_PREFIX}_{self.session_id}",
            )
            callbacks.append(self.checkpoints)
        if self.progress:
            callbacks.append(ProgressBar(plan.planned_steps))
        self.callback = CallbackList(callbacks)
        self.outputs.update(
            trade_execution_log=_str(self.trades.execution_path),
            trade_traces=_str(self.trades.trace_path),
            tensorboard=str(tb_dir) if cfg.enable_tensorboard else None,
        )

    def run(self) -> None:
        """Train ``plan.chunks`` chunks of ``steps_per_batch`` steps, or until a signal."""
        assert self.model and self.trades and self.train_env, "setup() first"
        env = self.train_env
        plan = self.plan
        log.info(
            "training %s on %s: %d bars (%d steps per episode, %d held out), "
            "%d chunks x %d steps = %d steps, device %s",
            plan.config.algorithm,
            plan.series.source,
            len(plan.series),
            plan.episode_steps,
            len(plan.series) - plan.split,
            plan.chunks,
            plan.config.steps_per_batch,
            plan.planned_steps,
            plan.device,
        )
        for chunk in range(1, plan.chunks + 1):
            if self.should_stop():
                break
            self.run_chunk()
            log.info(
                "chunk %d/%d: %d steps, episode %d, equity %.2f, %.0f steps/s",
                chunk,
                plan.chunks,
                self.steps,
                env.episode,
                env.equity_at(env.t),
                self.steps / max(self.train_seconds, 1e-9),
            )
        if self.progress:
            sys.stderr.write("\n")

    def run_chunk(self) -> None:
        """One ``learn()`` of ``steps_per_batch`` steps, then the trade logs are flushed."""
        assert self.model and self.trades, "setup() first"
        began, began_cpu = time.perf_counter(), time.process_time()
        self.model.learn_chunk(self.plan.config.steps_per_batch, self.callback)
        self.trades.flush()
        self.train_seconds += time.perf_counter() - began
        self.train_cpu_seconds += time.process_time() - began_cpu

    def _evaluate(self) -> Evaluation:
        assert self.model is not None and self.eval_env is not None
        trades = self.trades

        def record(step: int, trade: Trade) -> None:
            if trades is not None:
                trades.record("eval", step, trade)

        result = evaluate(self.model.predict, self.eval_env, record)
        plot_path = self.plan.logs / "equity_curve.png"
        title = f"{self.plan.config.algorithm} {self.session_id}: held-out slice"
        self._move_aside(plot_path, plot_session)
        plot_equity(
            plot_path, result.times, result.equity, result.buy_and_hold(), title, self.session_id
        )
        self.outputs["equity_curve"] = str(plot_path)
        return result

    def _save_model(self) -> None:
        assert self.model is not None
        final = self.plan.models / FINAL_MODEL
        backup = self.model.archive_and_save_model(
            final,
            self.plan.models / "backups",
            keep=self.plan.config.keep_model_versions,
            now=datetime.now(UTC),
        )
        self.outputs.update(final_model=str(final), backup=_str(backup))
        log.info("final model saved: %s%s", final, f" (previous one in {backup})" if backup else "")

    def finish(self, outcome: Outcome, error: str | None, wall_start: float) -> Outcome:
        """Save, evaluate and write the summary; returns the final outcome.

        A failure here (the model cannot be saved, say) turns the outcome into
        ``failed`` but the summary is still written.
        """
        metrics: dict[str, Any] | None = None
        try:
            if outcome != "failed" and self.steps > 0:
                self._save_model()
            if outcome != "failed" and self.model is not None:
                metrics = self._evaluate().metrics(self._per_year()).to_dict()
        except Exception as e:
            log.exception("could not finish the session")
            outcome, error = "failed", f"{type(e).__name__}: {e}"
        summary = self._summary(outcome, error, metrics, time.monotonic() - wall_start)
        path = self.plan.logs / "session_summary.json"
        self._move_aside(path, summary_session)
        if self.trades is not None:
            self.trades.save_session(summary, path)
        else:
            atomic_write_text(path, json.dumps(summary, indent=2, default=str) + "\n")
        if self.sb3_logger is not None:
            self.sb3_logger.close()
        log.info("session summary: %s (outcome %s)", path, outcome)
        return outcome

    def _move_aside(self, path: Path, owner: Callable[[Path], str | None]) -> None:
        """Keep an earlier session's file at the fixed name ``path`` (no daemon took it)."""
        moved = move_aside(path, self.session_id, owner)
        if moved is not None:
            log.info("an earlier session's %s kept as %s", path.name, moved.name)

    def _per_year(self) -> float:
        return self.plan.config.periods_per_year or periods_per_year(self.plan.series.times)

    def _summary(
        self, outcome: Outcome, error: str | None, metrics: dict[str, Any] | None, wall_s: float
    ) -> dict[str, Any]:
        plan, cfg = self.plan, self.plan.config
        if self.checkpoints is not None:
            self.outputs["checkpoints"] = [str(p) for p in self.checkpoints.saved]
        return {
            "session_id": self.session_id,
            "algorithm": cfg.algorithm,
            "outcome": outcome,
            "error": error,
            "steps": self.steps,
            "planned_steps": plan.planned_steps,
            "episodes_started": self.train_env.episode if self.train_env else 0,
            "wall_s": round(wall_s, 3),
            "train_s": round(self.train_seconds, 3),
            "train_cpu_s": round(self.train_cpu_seconds, 3),
            "fps": round(self.steps / self.train_seconds, 1) if self.train_seconds else 0.0,
            "metrics": metrics,
            "trades_logged": dict(self.trades.counts) if self.trades else {},
            "started_at": self.started.isoformat(timespec="seconds"),
            "ended_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "data": {
                "source": plan.series.source,
                "bars": len(plan.series),
                "train_bars": plan.split,
                "held_out_bars": len(plan.series) - plan.split,
            },
            "device": plan.device,
            "archive": plan.archive,
            "outputs": self.outputs,
            "config": cfg.to_json_dict(),
            "config_source": plan.config_source,
            "argv": list(plan.argv),
            "seed": cfg.seed,
            "versions": library_versions(),
        }


def summary_session(path: Path) -> str | None:
    """The session id in a session summary; None if it is unreadable or has none."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    sid = doc.get("session_id") if isinstance(doc, dict) else None
    return sid if isinstance(sid, str) else None


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)
