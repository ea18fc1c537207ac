"""Storage cost per session: do archives and models/ stay flat as sessions pile up?

Run: ``.venv/bin/python tests/benchmarks/bench_sessions.py [--sessions N]`` (not collected
by pytest; about a minute). One real ``python -m daemon run`` watches one workspace
(the e2e config: fast checks, ``keep_last`` 50 so no archive is rotated away, the default
``prepare_clears``: logs, models/checkpoints, models/backups) while the real trainer runs
``N`` (default 8) tiny sessions one after the other (tests/e2e_helpers.py: 256 steps, an
``[8]`` network, a checkpoint every 64 steps, tensorboard on). After each session the
script waits for its post_training ``ArchiveCompleted`` and records its ``bytes`` and the
size of models/.

Targets, as ratios within the run:

* post_training archive of the last session / of the 2nd: <= 1.3 (the 1st has no model
  backup yet, so the 2nd is the baseline);
* models/ after the last session / after the 1st: <= 2.

The sum of the archive folder is printed for reference (pre_training and post_training
archives of every session).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.e2e_helpers import (
    Harness,
    archives,
    events,
    finished,
    make_e2e_workspace,
    session_of,
    wait_event,
)

POST_TARGET = 1.3
MODELS_TARGET = 2.0


@dataclass(frozen=True)
class Row:
    """What one session left behind."""

    session_id: str
    post_name: str
    pre: str
    """What the trainer was acknowledged with: a new pre_training archive, the previous
    session's post_training archive (nothing changed since), or none."""
    post_bytes: int
    post_members: int
    models_bytes: int
    checkpoints_bytes: int
    backups_bytes: int
    logs_bytes: int
    seconds: float


def folder_bytes(folder: Path) -> int:
    """Apparent size of the regular files under ``folder`` (0 if it is missing)."""
    if not folder.is_dir():
        return 0
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def one_session(harness: Harness, ws: Path, previous: Row | None) -> Row:
    """Run one real trainer session to exit 0 and wait for its post_training archive."""
    t0 = time.monotonic()
    finished(harness.trainer(), timeout=120)
    sid = session_of(ws)
    post = wait_event(ws, "ArchiveCompleted", 60, reason="post_training", session_id=sid)
    ack = events(ws, "SessionAcknowledged", session_id=sid)
    name = ack[0].data.get("archive") if ack else None
    made = events(ws, "ArchiveCompleted", name=name, reason="pre_training", session_id=sid)
    if name is None:
        pre = "none"
    elif made:
        pre = f"new pre_training archive of {made[0].data['bytes']} B"
    elif previous is not None and name == previous.post_name:
        pre = "the previous post_training archive (nothing changed since)"
    else:
        pre = f"an earlier archive, {name}"
    models = ws / "models"
    return Row(
        session_id=sid,
        post_name=str(post.data["name"]),
        pre=pre,
        post_bytes=int(post.data["bytes"]),
        post_members=int(post.data["members"]),
        models_bytes=folder_bytes(models),
        checkpoints_bytes=folder_bytes(models / "checkpoints"),
        backups_bytes=folder_bytes(models / "backups"),
        logs_bytes=folder_bytes(ws / "logs"),
        seconds=time.monotonic() - t0,
    )


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=8, help="sessions to run (default 8)")
    parser.add_argument("--keep", action="store_true", help="keep the workspace afterwards")
    args = parser.parse_args()
    if args.sessions < 2:
        parser.error("--sessions must be at least 2")
    root = Path(tempfile.mkdtemp(prefix="bench-sessions-"))
    ws = make_e2e_workspace(root / "ws")
    harness = Harness(ws)
    rows: list[Row] = []
    started = time.monotonic()
    try:
        harness.daemon()
        for _ in range(args.sessions):
            rows.append(one_session(harness, ws, rows[-1] if rows else None))
            r = rows[-1]
            print(
                f"session {len(rows)} {r.session_id}: {r.seconds:4.1f} s, "
                f"post {r.post_bytes:>7} B ({r.post_members} members), "
                f"models/ {r.models_bytes:>7} B (checkpoints {r.checkpoints_bytes}, "
                f"backups {r.backups_bytes}), logs/ {r.logs_bytes:>7} B; acknowledged with {r.pre}",
                flush=True,
            )
        folder = archives(ws)
        total = sum(p.stat().st_size for p in folder)
    finally:
        harness.close()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    elapsed = time.monotonic() - started
    n = len(rows)
    post_ratio = rows[-1].post_bytes / rows[1].post_bytes
    models_ratio = rows[-1].models_bytes / rows[0].models_bytes
    print(f"{n} sessions in {elapsed:.0f} s" + (f"; workspace kept: {ws}" if args.keep else ""))
    print(
        f"post_training archive, session {n} / session 2: "
        f"{rows[-1].post_bytes} / {rows[1].post_bytes} B = {post_ratio:.3f} "
        f"(target <= {POST_TARGET}: {verdict(post_ratio <= POST_TARGET)})"
    )
    print(
        f"models/ after session {n} / after session 1:    "
        f"{rows[-1].models_bytes} / {rows[0].models_bytes} B = {models_ratio:.3f} "
        f"(target <= {MODELS_TARGET}: {verdict(models_ratio <= MODELS_TARGET)})"
    )
    print(
        f"archive folder: {len(folder)} archives, {total} B in all ({total / n:.0f} B per session)"
    )


if __name__ == "__main__":
    main()
