"""Bad input on the command line: exit 2, one clear line, nothing written on disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.trainer_helpers import make_workspace, run_trainer, tree

GOOD_CSV = "Date,Open,High,Low,Close\n" + "".join(
    f"2024-01-{d:02d},1,1,1,{1 + d / 100}\n" for d in range(1, 13)
)


def setup_files(ws: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (ws / name).parent.mkdir(parents=True, exist_ok=True)
        (ws / name).write_text(text)


CASES = [
    ({"config/training_config.json": "{oops"}, [], "config/training_config.json: not valid JSON"),
    (
        {"config/training_config.json": json.dumps({"stepz": 1})},
        [],
        "config/training_config.json: unknown key 'stepz'",
    ),
    (
        {"config/training_config.json": json.dumps({"window": "8"})},
        [],
        "config/training_config.json: key 'window' must be an integer between 2 and 1024",
    ),
    (
        {"config/logging_config.json": json.dumps({"level": "chatty"})},
        [],
        "config/logging_config.json: key 'level' must be one of",
    ),
    ({}, ["--config", "{ws}/missing.json"], "missing.json: no such file"),
    (
        {"bad.csv": GOOD_CSV.replace("1,1,1,1.03", "1,1,1,abc")},
        ["--data", "{ws}/bad.csv"],
        "bad.csv: line 4, column 'Close': 'abc' is not a positive number",
    ),
    (
        {"bad.csv": "Date,Open,High,Close\n2024-01-01,1,1,1\n"},
        ["--data", "{ws}/bad.csv"],
        "bad.csv: line 1: missing column 'Low'",
    ),
    (
        {"short.csv": GOOD_CSV},
        ["--data", "{ws}/short.csv"],
        "short.csv: 12 rows are too few for window 8 and train_fraction 0.8",
    ),
    (
        {"config/training_config.json": json.dumps({"n_steps": 64})},
        ["--steps-per-batch", "100"],
        "config/training_config.json: n_steps 64 must divide steps_per_batch 100 "
        "(--steps-per-batch)",
    ),
    (
        {},
        ["--total-episodes", "0"],
        "--total-episodes: must be an integer between 1 and 1000000, got 0",
    ),
    ({}, ["--steps-per-batch", "many"], "argument --steps-per-batch: invalid int value"),
    ({}, ["--device", "tpu"], "argument --device: invalid choice"),
    ({}, ["--frobnicate"], "unrecognized arguments: --frobnicate"),
]


@pytest.mark.parametrize(("files", "args", "expected"), CASES)
def test_bad_input_is_one_line_exit_2_and_nothing_on_disk(tmp_path, files, args, expected):
    ws = make_workspace(tmp_path)
    setup_files(ws, files)
    before = tree(ws)
    proc = run_trainer(ws, *[a.format(ws=ws) for a in args])
    assert proc.returncode == 2
    assert proc.stderr.startswith("trainer: ")
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr
    assert tree(ws) == before
    assert not {"logs", "models", "training.lock"} & {p.name for p in ws.iterdir()}


def test_a_flag_may_make_the_files_n_steps_fit(tmp_path):
    ws = make_workspace(
        tmp_path, n_steps=64, steps_per_batch=100, checkpoint_freq=0, enable_tensorboard=False
    )
    proc = run_trainer(ws, "--steps-per-batch", "128")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((ws / "logs" / "session_summary.json").read_text())
    assert (summary["config"]["n_steps"], summary["config"]["steps_per_batch"]) == (64, 128)
    assert summary["steps"] == 256


def test_a_missing_workspace_is_a_usage_error(tmp_path):
    proc = run_trainer(tmp_path / "nowhere")
    assert (proc.returncode, proc.stderr) == (
        2,
        f"trainer: --workspace {tmp_path}/nowhere: no such folder\n",
    )
    assert not (tmp_path / "nowhere").exists()


def test_cuda_without_cuda_is_a_usage_error(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    ws = make_workspace(tmp_path)
    proc = run_trainer(ws, "--device", "cuda")
    assert proc.returncode == 2
    assert proc.stderr == "trainer: --device: device 'cuda' requested but CUDA is not available\n"
    assert [p.name for p in ws.iterdir()] == ["config"]


def test_help_documents_the_default_flag_and_exit_codes(tmp_path):
    proc = run_trainer(tmp_path, "--help")
    assert proc.returncode == 0
    assert "--default" in proc.stdout
    assert "never prompts" in proc.stdout
    assert "Exit codes" in proc.stdout
