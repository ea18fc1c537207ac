"""A generator of realistic training workspaces, shared by tests and benchmarks.

``make_workspace(root, text_mb=..., binary_mb=..., seed=...)`` lays out what a
training session leaves behind (DESIGN.md, "Workspace"): text logs and JSONL
trade traces with varied numbers, tensorboard event files (binary records of
floats), SB3-like model zips (real zips holding torch-like zips of float32
weights), the repo's three default config files and loose ``*.pth``/``*.pkl`` in the root.
Output is deterministic for a given seed; sizes are approximate (within a few
percent). Roughly: ``text_mb`` goes to ``logs/*.log`` and the traces,
``binary_mb`` to tensorboard (20 %), model zips (75 %) and root checkpoints.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

MB = 1024 * 1024

__all__ = ["MB", "make_workspace", "tmpfs", "tree_digest", "unzip_test", "write_model_zip"]


def make_workspace(root: Path, *, text_mb: float, binary_mb: float, seed: int) -> Path:
    """Create a workspace under ``root`` (created if needed) and return ``root``."""
    rng = np.random.default_rng(seed)
    for sub in ("logs/trades", "logs/tensorboard/PPO_1", "models/checkpoints", "models/backups"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "config").mkdir(exist_ok=True)
    (root / "archives").mkdir(exist_ok=True)
    text = int(text_mb * MB)
    binary = int(binary_mb * MB)

    _write_training_log(root / "logs/training.log", int(text * 0.15), rng)
    _write_execution_log(root / "logs/trades/trade_execution.log", int(text * 0.25), rng)
    _write_traces(root / "logs/trades/trade_traces_20240105_093000.jsonl", int(text * 0.35), rng)
    _write_traces(root / "logs/trades/trade_traces_20240106_101500.jsonl", int(text * 0.25), rng)

    _write_tfevents(
        root / "logs/tensorboard/PPO_1/events.out.tfevents.1704447000.trainhost.4242.0",
        int(binary * 0.2),
        rng,
    )
    model_bytes = int(binary * 0.75)
    write_model_zip(root / "models/memory_efficient_model_final.zip", model_bytes // 3, rng)
    for i in range(1, 4):
        write_model_zip(
            root / f"models/checkpoints/rl_model_{i * 10000}_steps.zip", model_bytes // 6, rng
        )
    write_model_zip(
        root / "models/backups/memory_efficient_model_final_20240104_180000.zip",
        model_bytes // 6,
        rng,
    )
    (root / "checkpoint_latest.pth").write_bytes(_torch_like_zip(int(binary * 0.04), rng))
    (root / "replay_stats.pkl").write_bytes(_weights(int(binary * 0.01), rng).tobytes())

    _write_configs(root / "config")
    return root


def tree_digest(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """Map every regular file under ``root`` to (size, mtime_ns, crc32-of-content)."""
    out: dict[str, tuple[int, int, bytes]] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            st = p.stat()
            crc = zlib.crc32(p.read_bytes()).to_bytes(4, "big")
            out[p.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns, crc)
    return out


def _weights(nbytes: int, rng: np.random.Generator) -> np.ndarray:
    n = max(1, nbytes // 4)
    return (rng.standard_normal(n, dtype=np.float32) * np.float32(0.08)).astype("<f4")


def _torch_like_zip(nbytes: int, rng: np.random.Generator) -> bytes:
    """A torch.save-shaped zip: stored members, a pickle header and raw float32 tensors."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00(X\x06\x00\x00\x00weightsq\x01" * 8)
        parts = 4
        for i in range(parts):
            z.writestr(f"archive/data/{i}", _weights(nbytes // parts, rng).tobytes())
        z.writestr("archive/version", b"3\n")
    return buf.getvalue()


def write_model_zip(path: Path, nbytes: int, rng: np.random.Generator) -> None:
    """An SB3-shaped model zip: deflated members, the policy a torch-like zip of weights."""
    data = {
        "policy_class": "ActorCriticPolicy",
        "learning_rate": 0.0003,
        "n_steps": 2048,
        "observation_space": {"shape": [31], "dtype": "float32"},
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.writestr("data", json.dumps(data, indent=4))
        z.writestr("policy.pth", _torch_like_zip(int(nbytes * 0.7), rng))
        z.writestr("policy.optimizer.pth", _torch_like_zip(int(nbytes * 0.3), rng))
        z.writestr("pytorch_variables.pth", _torch_like_zip(64, rng))
        z.writestr("_stable_baselines3_version", "2.3.2")
        z.writestr("system_info.txt", "- OS: Linux\n- Python: 3.11.7\n- PyTorch: 2.3.0\n")


def _write_lines(path: Path, nbytes: int, make_batch: object) -> None:
    assert callable(make_batch)
    written = 0
    with path.open("w", encoding="utf-8") as f:
        start = 0
        while written < nbytes:
            chunk: str = make_batch(start, 2000)
            start += 2000
            f.write(chunk)
            written += len(chunk)


def _write_training_log(path: Path, nbytes: int, rng: np.random.Generator) -> None:
    levels = ["INFO", "INFO", "INFO", "DEBUG", "WARNING"]

    def batch(start: int, n: int) -> str:
        loss = rng.gamma(2.0, 0.05, n)
        rew = rng.normal(0.0, 3.0, n)
        fps = rng.integers(800, 2400, n)
        lv = rng.integers(0, len(levels), n)
        return "".join(
            f"2024-01-05 {9 + (start + i) // 360000 % 14:02d}:{(start + i) // 6000 % 60:02d}:"
            f"{(start + i) // 100 % 60:02d},{(start + i) % 1000:03d} {levels[lv[i]]} "
            f"trainer.train: step={(start + i) * 64} loss={loss[i]:.6f} "
            f"ep_rew_mean={rew[i]:.4f} fps={fps[i]}\n"
            for i in range(n)
        )

    _write_lines(path, nbytes, batch)


def _write_execution_log(path: Path, nbytes: int, rng: np.random.Generator) -> None:
    def batch(start: int, n: int) -> str:
        price = 100 + np.cumsum(rng.normal(0, 0.2, n))
        qty = rng.integers(1, 500, n)
        side = rng.integers(0, 2, n)
        return "".join(
            f"2024-01-05T10:{(start + i) // 60 % 60:02d}:{(start + i) % 60:02d}Z "
            f"{'BUY ' if side[i] else 'SELL'} qty={qty[i]} price={price[i]:.4f} "
            f"fee={price[i] * qty[i] * 0.0005:.5f} episode={(start + i) // 5000}\n"
            for i in range(n)
        )

    _write_lines(path, nbytes, batch)


def _write_traces(path: Path, nbytes: int, rng: np.random.Generator) -> None:
    def batch(start: int, n: int) -> str:
        price = 100 + np.cumsum(rng.normal(0, 0.2, n))
        qty = rng.integers(1, 500, n)
        eq = 10000 + np.cumsum(rng.normal(0, 5.0, n))
        side = rng.integers(0, 2, n)
        return "".join(
            json.dumps(
                {
                    "session_id": "s-20240105-093000",
                    "phase": "train" if i % 10 else "eval",
                    "episode": (start + i) // 5000,
                    "step": start + i,
                    "bar_time": f"2023-{1 + (start + i) // 40000 % 12:02d}-"
                    f"{1 + (start + i) // 1440 % 28:02d}T{(start + i) // 60 % 24:02d}:"
                    f"{(start + i) % 60:02d}:00",
                    "side": "buy" if side[i] else "sell",
                    "quantity": int(qty[i]),
                    "price": round(float(price[i]), 4),
                    "fee": round(float(price[i] * qty[i] * 0.0005), 6),
                    "position_after": int(qty[i]) if side[i] else 0,
                    "equity": round(float(eq[i]), 2),
                }
            )
            + "\n"
            for i in range(n)
        )

    _write_lines(path, nbytes, batch)


def _write_tfevents(path: Path, nbytes: int, rng: np.random.Generator) -> None:
    """Records shaped like TFRecord: length, crc, an Event protobuf (wall_time, step, value)."""
    tags = [b"rollout/ep_rew_mean", b"train/loss", b"train/value_loss", b"train/entropy_loss"]
    out = io.BytesIO()
    step = 0
    wall = 1704447000.0
    while out.tell() < nbytes:
        vals = rng.normal(0.0, 1.0, 1024).astype(np.float32)
        for v in vals:
            tag = tags[step % len(tags)]
            value = b"\x0a" + bytes([len(tag)]) + tag + b"\x15" + struct.pack("<f", v)
            summary = b"\x0a" + bytes([len(value)]) + value
            step += 1
            wall += float(rng.random()) * 0.05
            event = (
                (b"\x09" + struct.pack("<d", wall) + b"\x10" + _varint(step * 64) + b"\x2a")
                + bytes([len(summary)])
                + summary
            )
            header = struct.pack("<Q", len(event))
            out.write(header + struct.pack("<I", zlib.crc32(header)))
            out.write(event + struct.pack("<I", zlib.crc32(event)))
    path.write_bytes(out.getvalue())


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _write_configs(cfg: Path) -> None:
    """The repo's default config files, so the CLI and the trainer accept the workspace."""
    defaults = Path(__file__).resolve().parents[1] / "config"
    for name in ("config.json", "training_config.json", "logging_config.json"):
        src = defaults / name
        if src.is_file():
            shutil.copyfile(src, cfg / name)
        else:
            (cfg / name).write_text("{}\n")


def unzip_test(path: Path) -> None:
    """Assert that Info-ZIP's ``unzip -t`` accepts the archive at ``path``."""
    import subprocess

    done = subprocess.run(["unzip", "-tq", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"unzip -t rejects {path}: {done.stdout}{done.stderr}"


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` at ``path`` for the block; skip the test if mounting fails."""
    import subprocess

    import pytest

    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def unzip_test_all(root: Path) -> int:
    """Run ``unzip -t`` on every final-named archive under ``root``; return how many."""
    from daemon.archive.manifest import ARCHIVE_RE

    found = [p for p in root.rglob("*.zip") if ARCHIVE_RE.match(p.name) and p.is_file()]
    for p in found:
        unzip_test(p)
    return len(found)
