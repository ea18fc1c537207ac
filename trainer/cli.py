"""``python -m trainer``: parse and check every input, then run one session.

Config and data are validated before the lock is taken or any folder is made: bad
input is one line on stderr and exit code 2, with nothing written. torch and
stable-baselines3 are imported only after that, so input errors are reported fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from daemon.protocol import resolve_lock_path
from daemon.protocol.sharing import access_problem, no_access_line, share_with_group
from trainer.config import load_logging_config, load_training_config
from trainer.data import load_csv, synthetic_series
from trainer.errors import InputError, UsageError
from trainer.plan import RunPlan, check_length, resolve_device

DESCRIPTION = """\
Train a stable-baselines3 agent to trade one instrument and write the session's logs,
trade logs, tensorboard run, checkpoints, final model and summary into the workspace.
Settings come from WORKSPACE/config/training_config.json (built-in defaults for a
missing file or key) and WORKSPACE/config/logging_config.json; options below override
them. Without --data the embedded seeded synthetic series is used.
"""

EPILOG = """\
--default is the original system's "use the default config and data, do not prompt".
This trainer never prompts, so plain `python -m trainer` already behaves like that;
the flag is accepted so that existing scripts keep working.

Training runs ceil(total_episodes x episode steps / steps_per_batch) chunks of exactly
steps_per_batch steps (every episode completes; the last chunk may begin the next).
Exit codes: 0 completed, 1 failed, 2 bad input or lock held by another trainer,
130/143 interrupted by SIGINT/SIGTERM (a model and the summary are still saved).
"""


CONFIG_FILES = ("config.json", "training_config.json", "logging_config.json")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"trainer: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m trainer",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--default", action="store_true", help="use the default config and data")
    p.add_argument("--workspace", type=Path, default=Path.cwd(), help="workspace (default: .)")
    p.add_argument("--config", type=Path, help="training config (default: config/ of workspace)")
    p.add_argument("--no-archive", action="store_true", help="ask the daemon not to archive")
    p.add_argument("--total-episodes", type=int, metavar="N", help="training episodes")
    p.add_argument("--steps-per-batch", type=int, metavar="N", help="env steps per chunk")
    p.add_argument("--seed", type=int, metavar="N", help="random seed")
    p.add_argument("--data", type=Path, metavar="CSV", help="OHLCV CSV (default: synthetic)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="torch device")
    return p


def prepare(args: argparse.Namespace, argv: Sequence[str]) -> RunPlan:
    """Every input loaded and checked; raises :class:`InputError`, writes nothing."""
    workspace: Path = args.workspace.absolute()
    if not workspace.is_dir():
        raise UsageError(f"--workspace {args.workspace}: no such folder")
    problem = access_problem(workspace_needs(workspace))
    if problem is not None:
        raise UsageError(problem)
    config_path = args.config or workspace / "config" / "training_config.json"
    overrides: dict[str, Any] = {
        "total_episodes": args.total_episodes,
        "steps_per_batch": args.steps_per_batch,
        "seed": args.seed,
        "device": args.device,
    }
    config = load_training_config(
        config_path,
        required=args.config is not None,
        overrides={k: v for k, v in overrides.items() if v is not None},
    )
    logging_config = load_logging_config(workspace / "config" / "logging_config.json")
    device_source = "--device" if args.device else f"{config_path}: key 'device'"
    device = resolve_device(config.device, device_source)
    series = (
        load_csv(args.data) if args.data else synthetic_series(config.synthetic_bars, config.seed)
    )
    check_length(series, config)
    return RunPlan(
        workspace=workspace,
        config=config,
        logging=logging_config,
        config_source=str(config_path) if config_path.exists() else "built-in defaults",
        series=series,
        lock_path=resolve_lock_path(workspace),
        archive=not args.no_archive,
        device=device,
        argv=tuple(argv),
    )


def workspace_needs(workspace: Path) -> list[tuple[Path, int]]:
    """What a session needs of a (shared) workspace: write it, its logs/ and models/
    (and what is in them: the daemon removes, the next trainer appends), the lock file."""
    rwx = os.R_OK | os.W_OK | os.X_OK
    needs = [(workspace, rwx), (workspace / "config", os.R_OK | os.X_OK)]
    needs += [(workspace / "config" / name, os.R_OK) for name in CONFIG_FILES]
    needs += [(workspace / area, rwx) for area in ("logs", "models")]
    needs += [(workspace / "logs" / "training.log", os.R_OK | os.W_OK)]
    return [*needs, (resolve_lock_path(workspace), os.R_OK | os.W_OK)]


def main(argv: Sequence[str] | None = None) -> int:
    share_with_group()  # what the session creates stays usable by the workspace's group
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        plan = prepare(args, argv)
    except InputError as e:
        print(f"trainer: {e}", file=sys.stderr)
        return 2
    except PermissionError as e:
        where = Path(e.filename) if e.filename else Path.cwd()
        print(f"trainer: {no_access_line(where)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    from trainer.session import run_session  # torch and SB3 load only for a valid run

    return run_session(plan, progress=sys.stderr.isatty())
