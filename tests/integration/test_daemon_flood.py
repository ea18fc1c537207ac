"""20,000 files in logs/ faster than inotify queues them: the rescan makes the state right."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from daemon import archive as engine
from daemon.watch.rescan import snapshot
from tests.daemon_helpers import (
    DaemonProcess,
    FakeTrainer,
    NotifySocket,
    make_daemon_workspace,
    wait_until,
)

FILES = 20_000


def _flood(folder: Path) -> set[str]:
    """Create FILES small files as fast as the kernel allows (in subfolders made on the way)."""
    names = set()
    for i in range(FILES):
        sub = folder / f"part{i // 2000:02d}"
        if i % 2000 == 0:
            sub.mkdir(parents=True)
        path = sub / f"f{i:05d}.log"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, b"x" * (i % 7))
        os.close(fd)
        names.add(path.relative_to(folder.parent.parent).as_posix())
    return names


@pytest.mark.timeout(120)
def test_20000_files_end_up_in_state_and_in_the_next_archive(tmp_path: Path) -> None:
    ws = make_daemon_workspace(tmp_path / "ws", rescan_interval_s=2)
    notify = NotifySocket(tmp_path)
    daemon = DaemonProcess(ws, notify)
    try:
        daemon.wait_ready()
        trainer = FakeTrainer(ws)
        assert trainer.start() is not None
        created = _flood(ws / "logs" / "flood")  # the session writes a storm of files
        after = daemon.events()[-1].seq
        truth = snapshot(ws)
        assert created <= set(truth)

        def agrees() -> bool:
            rescans = [e for e in daemon.events("Rescanned") if e.seq > after]
            return bool(rescans) and dict(daemon.state().files) == truth

        wait_until(agrees, timeout=60, what="state == folder after a rescan")
        trainer.stop()
        done = daemon.wait_event("ArchiveCompleted", timeout=60, reason="post_training")
        manifest = engine.read_manifest(ws / "archives" / done.data["name"])
        assert created <= {m.path for m in manifest.members}
    finally:
        daemon.stop()
        notify.close()
    triggers = {e.data["trigger"] for e in daemon.events("Rescanned")}
    assert "start" in triggers and "schedule" in triggers | {"overflow"}
