"""SIGKILL `python -m daemon archive` at random moments: no bad final archive; next run cleans."""

from __future__ import annotations

import functools
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from daemon.archive import list_archive_files, verify_archive
from daemon.archive.manifest import TEMP_RE
from tests.archive_helpers import make_workspace, unzip_test

REPO = Path(__file__).resolve().parents[2]
KILLS = 20


def _wait_for(cond: Callable[[], bool], deadline_s: float) -> bool:
    """Poll ``cond`` until it holds or the deadline passes; return its last value."""
    end = time.monotonic() + deadline_s
    while not cond():
        if time.monotonic() > end:
            return False
        time.sleep(0.001)
    return True


def _temps(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if TEMP_RE.match(p.name)] if folder.is_dir() else []


def _writing_or_done(out: Path, proc: subprocess.Popen[bytes]) -> bool:
    return bool(_temps(out)) or proc.poll() is not None


def test_sigkill_never_leaves_a_bad_final_archive_and_the_next_run_cleans_up(tmp_path):
    ws = make_workspace(tmp_path / "ws", text_mb=4, binary_mb=4, seed=31)
    out = ws / "archives"
    cmd = [sys.executable, "-m", "daemon", "archive", "--workspace", str(ws)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    t0 = time.monotonic()
    first = start()
    assert first.wait(60) == 0, first.stderr.read() if first.stderr else ""
    full_run_s = time.monotonic() - t0

    rng = random.Random(20240105)
    kills = mid_write = 0
    for attempt in range(4 * KILLS):
        if kills >= KILLS:
            break
        proc = start()
        if attempt % 2:  # aim at the write: once the temp file exists, a little later
            _wait_for(functools.partial(_writing_or_done, out, proc), 30)
            delay = rng.uniform(0.0, 0.04)
        else:  # anywhere in a run, start-up included
            delay = rng.uniform(0.0, full_run_s)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            had_temp = bool(_temps(out))
            proc.send_signal(signal.SIGKILL)
            code = proc.wait(30)
            assert code in (0, -signal.SIGKILL)  # 0: it finished just before the signal
            if code == -signal.SIGKILL:
                kills += 1
                mid_write += had_temp
        if proc.stderr:
            proc.stderr.close()
        for archive in list_archive_files(out):
            result = verify_archive(archive)
            assert result.ok, (archive.name, result.problems)
    print(f"{kills} kills in {attempt + 1} runs, {mid_write} while an archive was being written")
    assert kills >= KILLS
    assert mid_write >= 3, f"only {mid_write} of {kills} kills landed while an archive was written"

    last = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    assert last.returncode == 0, last.stderr
    assert _temps(out) == []
    finals = list_archive_files(out)
    assert finals
    assert sorted(p.name for p in out.iterdir() if not p.name.endswith(".lock")) == sorted(
        p.name for p in finals
    )
    for archive in finals:
        assert verify_archive(archive).ok
        unzip_test(archive)
