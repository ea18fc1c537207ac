"""Modes of everything both programs create in a workspace shared by a group (DESIGN, "Sharing").

A real group (``groupadd``), a workspace given to it with setgid folders (as the
README's set-up does), then a real daemon and a real tiny training session, both
under the person's umask (0022, the usual one, and 0077, a strict one). Whatever
either made must be group-readable and group-writable (folders: enterable and
setgid, so what comes later keeps the group), of the workspace's group, and no
more open to others than the umask allows; archives stay 0600.
"""

from __future__ import annotations

import grp
import os
import secrets
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_helpers import DaemonProcess, NotifySocket, read_events
from tests.trainer_helpers import REPO, make_workspace, trainer_cmd

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("groupadd") is None,
    reason="needs root and groupadd (a real group owns the workspace)",
)


@pytest.fixture
def group() -> Iterator[str]:
    name = f"tash{secrets.token_hex(3)}"
    subprocess.run(["groupadd", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["groupdel", name], check=False)


def umask_wrapper(umask: int) -> list[str]:
    return ["sh", "-c", f'umask {umask:04o}; exec "$@"', "sh"]


def shared_workspace(root: Path, group: str) -> Path:
    ws = make_workspace(root)
    (ws / "config" / "config.json").write_text(
        '{"stale_check_interval_s": 0.5, "coalesce_window_s": 0.2, "keep_last": 50}'
    )
    gid = grp.getgrnam(group).gr_gid
    for path in [ws, *ws.rglob("*")]:
        os.chown(path, -1, gid)
        mode = stat.S_IMODE(path.stat().st_mode) | 0o060
        os.chmod(path, mode | (0o2010 if path.is_dir() else 0))
    return ws


def created(ws: Path) -> list[Path]:
    """What the programs made: logs/, models/, .daemon/, the lock, its ack, the archives."""
    found = [p for area in ("logs", "models", ".daemon") for p in (ws / area).rglob("*")]
    found += [p for p in (ws / "logs", ws / "models", ws / ".daemon") if p.exists()]
    found += [p for p in (ws / "training.lock", ws / "training.lock.ack") if p.exists()]
    return found


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_what_both_programs_create_stays_usable_by_the_group(
    tmp_path: Path, group: str, umask: int
) -> None:
    ws = shared_workspace(tmp_path / "ws", group)
    notify = NotifySocket(tmp_path)
    notify.drain_in_background()
    daemon = DaemonProcess(ws, notify, wrapper=umask_wrapper(umask))
    try:
        daemon.wait_ready(60)
        done = subprocess.run(
            [*umask_wrapper(umask), *trainer_cmd(ws)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        final = daemon.wait_event("ArchiveCompleted", timeout=120, reason="post_training")
        daemon.wait_event("ArchiveVerified", timeout=60, name=final.data["name"])
    finally:
        assert daemon.terminate(60) == 0, daemon.stderr()
        notify.close()
    assert not read_events(ws, "JobFailed", "PrepareSkipped")
    made = created(ws)
    names = {p.relative_to(ws).as_posix() for p in made}
    for expected in (
        "training.lock",
        "logs/training.log",
        "logs/tensorboard",
        "models/checkpoints",
        "models/memory_efficient_model_final.zip",
        ".daemon/events.sqlite3",
        ".daemon/daemon.lock",
    ):
        assert expected in names, sorted(names)
    assert any(n.startswith("logs/tensorboard/") and "tfevents" in n for n in names), names
    assert any(n.startswith("models/checkpoints/") for n in names), names
    other = 0o777 & ~umask & 0o007
    gid = grp.getgrnam(group).gr_gid
    wrong = []
    for path in made:
        st = path.lstat()
        mode = stat.S_IMODE(st.st_mode)
        want_group = 0o070 if path.is_dir() else 0o060
        bad = (mode & want_group) != want_group or st.st_gid != gid or mode & 0o007 & ~other
        if path.is_dir() and not mode & stat.S_ISGID:
            bad = True
        if bad:
            wrong.append(f"{path.relative_to(ws)} {mode:04o} gid {st.st_gid}")
    assert wrong == [], wrong
    archives = sorted((ws / "archives").glob("training_backup_*.zip"))
    assert archives
    assert {stat.S_IMODE(a.stat().st_mode) for a in archives} == {0o600}
