"""Shared pieces of the end-to-end tests: the real daemon and the real trainer on one workspace.

Built on the other helpers: :class:`tests.daemon_helpers.DaemonProcess` (the
daemon with a real notify socket), :class:`tests.trainer_helpers.LiveTrainer`
(the trainer as a subprocess), :func:`tests.archive_helpers.unzip_test`.
Every wait is on a condition with a deadline.

The training is tiny: 300 synthetic bars (231 steps an episode), 128 steps a
chunk, one episode (2 chunks, 256 steps), a checkpoint every 64 steps, an
``[8]`` network, tensorboard on. A run that must be caught mid-training asks
for more episodes on the command line (``--total-episodes``) and is detected
by a condition (the lock says ``running`` and a checkpoint exists), not by time.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from daemon.archive import list_archive_files, read_manifest
from daemon.archive.manifest import Manifest
from daemon.eventlog.events import StoredEvent
from tests.archive_helpers import unzip_test
from tests.daemon_helpers import (
    FAST_CONFIG,
    REPO,
    DaemonProcess,
    NotifySocket,
    read_events,
    wait_until,
)
from tests.trainer_helpers import LiveTrainer
from tests.trainer_helpers import make_workspace as make_training_workspace

E2E_TRAINING: dict[str, Any] = {
    "steps_per_batch": 128,
    "checkpoint_freq": 64,
    "n_epochs": 1,
    "batch_size": 64,
    "enable_tensorboard": True,
}
"""Overrides of ``TINY_CONFIG``: 2 chunks of 128 steps, 4 checkpoints, about 1 s of training."""
LONG_RUN = ("--total-episodes", "40")
"""A run long enough (about 9,000 steps) to be caught mid-training; it is never left to finish."""


def make_e2e_workspace(root: Path, **daemon_config: Any) -> Path:
    """An empty workspace with a tiny training config and a fast daemon config."""
    make_training_workspace(root, **E2E_TRAINING)
    (root / "archives").mkdir(exist_ok=True)
    (root / "config" / "config.json").write_text(json.dumps({**FAST_CONFIG, **daemon_config}))
    return root


class Harness:
    """The daemon and the trainer as subprocesses on one workspace; everything stopped at the end.

    ``daemon()`` may be called again after a daemon was stopped or killed (a
    fresh abstract notify socket each time); ``trainer()`` starts the trainer.
    :meth:`close` continues a trainer left stopped (SIGSTOP), kills leftover
    trainers and stops leftover daemons.
    """

    def __init__(self, workspace: Path) -> None:
        self.ws = workspace
        self.daemons: list[DaemonProcess] = []
        self.trainers: list[LiveTrainer] = []
        self._sockets: list[NotifySocket] = []

    def daemon(self, *, watchdog_usec: int | None = None, wrapper: tuple[str, ...] = ()) -> Daemon:
        notify = NotifySocket(self.ws.parent, abstract=True)
        notify.drain_in_background()
        self._sockets.append(notify)
        proc = DaemonProcess(self.ws, notify, watchdog_usec=watchdog_usec, wrapper=wrapper)
        self.daemons.append(proc)
        proc.wait_ready()
        return Daemon(proc, notify)

    def trainer(self, *args: str) -> LiveTrainer:
        trainer = LiveTrainer(self.ws, *args)
        self.trainers.append(trainer)
        return trainer

    def close(self) -> None:
        for trainer in self.trainers:
            if trainer.proc.poll() is None:
                os.kill(trainer.proc.pid, signal.SIGCONT)
                trainer.proc.kill()
                trainer.proc.wait(10)
        for proc in self.daemons:
            proc.stop()
        for sock in self._sockets:
            sock.close()


class Daemon:
    """One running daemon and its notify socket."""

    def __init__(self, proc: DaemonProcess, notify: NotifySocket) -> None:
        self.proc = proc
        self.notify = notify

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.proc.poll() is None

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until the daemon says it is idle: no archiving task running or queued at start."""

        def idle() -> bool:
            assert self.alive(), "the daemon exited"
            statuses = self.notify.statuses()
            return bool(statuses) and statuses[-1].startswith("idle")

        wait_until(idle, timeout, "the daemon idle")

    def keeps_pinging(self, more: int = 2) -> None:
        """Wait for ``more`` watchdog pings beyond those seen so far (needs ``watchdog_usec``)."""
        seen = self.notify.count("WATCHDOG")
        self.notify.wait_for("WATCHDOG", n=seen + more, timeout=10)


# --- the event log ----------------------------------------------------------------


def events(ws: Path, type_: str, **data: Any) -> list[StoredEvent]:
    """Events of one type whose data has the given values."""
    return [e for e in read_events(ws, type_) if all(e.data.get(k) == v for k, v in data.items())]


def wait_event(ws: Path, type_: str, timeout: float = 30.0, **data: Any) -> StoredEvent:
    return wait_until(
        lambda: next(iter(events(ws, type_, **data)), None), timeout, f"{type_} {data}"
    )


def final_archives(ws: Path, session_id: str) -> list[StoredEvent]:
    """The ArchiveCompleted events that close ``session_id``."""
    return [
        e
        for e in events(ws, "ArchiveCompleted", session_id=session_id)
        if e.data["reason"] in ("post_training", "abandoned")
    ]


# --- the trainer --------------------------------------------------------------------


def lock_doc(ws: Path) -> dict[str, Any] | None:
    """The lock file's JSON object; None while it is missing or mid-write."""
    try:
        doc = json.loads((ws / "training.lock").read_text())
    except (FileNotFoundError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def wait_mid_training(ws: Path, trainer: LiveTrainer, timeout: float = 60.0) -> str:
    """Wait until the trainer is training (lock ``running``, a checkpoint saved); its session id."""

    def training() -> str | None:
        assert trainer.proc.poll() is None, "the trainer ended before it was caught mid-training"
        doc = lock_doc(ws)
        if doc is None or doc["state"] != "running" or not checkpoints(ws):
            return None
        return str(doc["session_id"])

    return wait_until(training, timeout, "the trainer mid-training")


def checkpoints(ws: Path) -> list[Path]:
    folder = ws / "models" / "checkpoints"
    return sorted(folder.glob("*.zip")) if folder.is_dir() else []


def finished(trainer: LiveTrainer, timeout: float = 120) -> str:
    """Wait for the trainer to exit 0; its stderr."""
    code, err = trainer.finish(timeout)
    assert code == 0, f"trainer exited {code}:\n{err[-3000:]}"
    return err


def session_of(ws: Path) -> str:
    doc = lock_doc(ws)
    assert doc is not None, "no lock file"
    return str(doc["session_id"])


# --- archives and the CLI -------------------------------------------------------------


def daemon_cli(ws: Path, *args: str, expect: int | None = 0) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "daemon", *args, "--workspace", str(ws)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if expect is not None:
        assert done.returncode == expect, (done.returncode, done.stdout, done.stderr)
    return done


def status(ws: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(daemon_cli(ws, "status", "--json").stdout)
    return doc


def archives(ws: Path) -> list[Path]:
    folder = ws / "archives"
    return list_archive_files(folder) if folder.is_dir() else []


def all_archives_verify(ws: Path) -> list[Path]:
    """``unzip -t`` and ``python -m daemon verify`` (exit 0) accept every archive; returns them."""
    found = archives(ws)
    for path in found:
        unzip_test(path)
    done = daemon_cli(ws, "verify", "--json")
    results = json.loads(done.stdout)
    assert sorted(r["name"] for r in results) == sorted(p.name for p in found)
    assert all(r["ok"] for r in results), results
    return found


def manifest_of(ws: Path, name: str) -> Manifest:
    return read_manifest(ws / "archives" / name)


def member_json(ws: Path, name: str, member: str) -> Any:
    with zipfile.ZipFile(ws / "archives" / name) as z:
        return json.loads(z.read(member))


def member_bytes(path: Path) -> Iterator[tuple[str, bytes]]:
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            yield info.filename, z.read(info)


def tree(root: Path, *areas: str) -> dict[str, tuple[int, int, bytes]]:
    """Every file under the areas of ``root``: size, mtime and content (symlinks as their text)."""
    out: dict[str, tuple[int, int, bytes]] = {}
    for area in areas:
        for p in sorted((root / area).rglob("*")):
            st = p.lstat()
            if p.is_symlink():
                out[p.relative_to(root).as_posix()] = (0, st.st_mtime_ns, os.readlink(p).encode())
            elif p.is_file():
                content = p.read_bytes() if os.access(p, os.R_OK) else b"?"
                out[p.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns, content)
    return out


_NO_DAC = "-dac_override,-dac_read_search"
SETPRIV = ("setpriv", f"--inh-caps={_NO_DAC}", f"--bounding-set={_NO_DAC}")
"""Run a command as root but without the capabilities that let root read any file."""


def setpriv_works(probe: Path) -> bool:
    """Whether ``SETPRIV`` runs here and really makes a mode-000 file unreadable."""
    if shutil.which("setpriv") is None:
        return False
    probe.write_text("x")
    probe.chmod(0)
    done = subprocess.run([*SETPRIV, "cat", str(probe)], capture_output=True, check=False)
    return done.returncode != 0 and b"Permission denied" in done.stderr
