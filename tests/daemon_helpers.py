"""Fixtures for daemon tests: a real NOTIFY_SOCKET, the daemon as a subprocess, a fake trainer.

* :class:`NotifySocket` binds a real ``AF_UNIX``/``SOCK_DGRAM`` socket (a path
  in a temp folder, or an abstract ``@name``) and collects what the daemon sends.
* :class:`DaemonProcess` runs ``python -m daemon run`` with that socket and
  reads its event log (read-only SQLite) to wait for conditions.
* :class:`FakeTrainer` drives the lock protocol with ``daemon.protocol.TrainerLock``
  exactly as the real trainer does. ``python -m tests.daemon_helpers hang WS`` is
  a trainer process that starts a session and waits to be killed.

Every wait is on a condition with a deadline; nothing sleeps to "let things happen".
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from daemon import protocol
from daemon.eventlog.events import StoredEvent
from daemon.eventlog.fold import State, fold
from daemon.identity import ensure_identity

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
T = TypeVar("T")

FAST_CONFIG = {
    "stale_check_interval_s": 0.5,
    "coalesce_window_s": 0.2,
    "rescan_interval_s": 30,
    "rotation_interval_s": 60,
    "keep_last": 50,
}


def wait_until(
    condition: Callable[[], T | None], timeout: float = 20.0, what: str = "condition"
) -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pause = 0.01
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(pause)
        pause = min(pause * 1.5, 0.1)


def make_daemon_workspace(root: Path, **config: Any) -> Path:
    """A small workspace: a previous session's logs and models, and a fast config."""
    for sub in ("logs/trades", "models/checkpoints", "config", "archives"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "logs/training.log").write_text("previous session\n" * 100)
    (root / "logs/trades/trade_execution.log").write_text("BUY 1 @ 100\n" * 50)
    (root / "models/memory_efficient_model_final.zip").write_bytes(os.urandom(20_000))
    (root / "config/config.json").write_text(json.dumps({**FAST_CONFIG, **config}))
    return root


def workspace_id(workspace: Path) -> str:
    """The workspace's permanent id, made now if it has none (as its daemon would make it):
    for archives a test makes with ``create_archive`` in the daemon's stead."""
    return ensure_identity(workspace / ".daemon")[0].workspace_id


class NotifySocket:
    """A bound datagram socket standing in for systemd's notify socket."""

    def __init__(self, folder: Path, *, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.path: Path | None = None
        if abstract:
            name = f"training-daemon-test-{secrets.token_hex(6)}"
            self.sock.bind(b"\0" + name.encode())
            self.env_value = f"@{name}"
        else:
            path = folder / "notify.sock"
            self.path = path
            self.sock.bind(str(path))
            self.env_value = str(path)
        self.sock.settimeout(0.05)
        self.messages: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._drainer: threading.Thread | None = None

    def poll(self) -> list[dict[str, str]]:
        with self._lock:  # one reader at a time keeps the messages in order
            while True:
                try:
                    data = self.sock.recv(65536)
                except (TimeoutError, BlockingIOError):
                    return self.messages
                fields = dict(
                    line.split("=", 1) for line in data.decode().splitlines() if "=" in line
                )
                self.messages.append(fields)

    def drain_in_background(self) -> None:
        """Keep reading, as systemd does: the kernel queues only a few datagrams
        (``net.unix.max_dgram_qlen``), and a daemon whose messages are not read for
        a long run would see its sends dropped."""

        def drain() -> None:
            while not self._closed.is_set():
                try:
                    self.poll()
                except OSError:
                    return
                self._closed.wait(0.05)

        self._drainer = threading.Thread(target=drain, name="notify-drain", daemon=True)
        self._drainer.start()

    def count(self, key: str, value: str = "1") -> int:
        return sum(1 for m in self.poll() if m.get(key) == value)

    def wait_for(self, key: str, value: str = "1", timeout: float = 20.0, n: int = 1) -> None:
        wait_until(lambda: self.count(key, value) >= n, timeout, f"{n} x {key}={value}")

    def statuses(self) -> list[str]:
        return [m["STATUS"] for m in self.poll() if "STATUS" in m]

    def close(self) -> None:
        self._closed.set()
        if self._drainer is not None:
            self._drainer.join(5)
        self.sock.close()
        if self.path is not None:  # a later socket in the same folder may bind again
            self.path.unlink(missing_ok=True)


class DaemonProcess:
    """``python -m daemon run`` on a workspace, as systemd would start it."""

    def __init__(
        self,
        workspace: Path,
        notify: NotifySocket | None = None,
        *,
        watchdog_usec: int | None = None,
        log_name: str = "daemon.out",
        wrapper: Sequence[str] = (),
    ) -> None:
        """``wrapper`` prefixes the command (e.g. ``setpriv ...`` to drop capabilities)."""
        self.workspace = workspace
        self.notify = notify
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop("NOTIFY_SOCKET", None)
        if notify is not None:
            env["NOTIFY_SOCKET"] = notify.env_value
        if watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        self.stdout_path = workspace.parent / f"{workspace.name}.{log_name}"
        self._out = self.stdout_path.open("ab")
        self.proc = subprocess.Popen(
            [*wrapper, PYTHON, "-m", "daemon", "run", "--workspace", str(workspace)],
            stdout=self._out,
            stderr=subprocess.PIPE,
            cwd=REPO,
            env=env,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 30.0) -> None:
        if self.notify is not None:
            self.notify.wait_for("READY", timeout=timeout)
        else:
            wait_until(lambda: protocol.daemon_alive(self.workspace), timeout, "daemon lock")
            wait_until(lambda: self.has("DaemonStarted", pid=self.pid), timeout, "DaemonStarted")

    def events(self, *types: str) -> list[StoredEvent]:
        return read_events(self.workspace, *types)

    def has(self, type_: str, **data: Any) -> StoredEvent | None:
        for ev in self.events(type_):
            if all(ev.data.get(k) == v for k, v in data.items()):
                return ev
        return None

    def wait_event(self, type_: str, timeout: float = 20.0, **data: Any) -> StoredEvent:
        return wait_until(lambda: self.has(type_, **data), timeout, f"{type_} {data}")

    def state(self) -> State:
        return fold(State(), self.events())

    def terminate(self, timeout: float = 30.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        self.proc.kill()
        self.wait(10)

    def wait(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._out.close()

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode()

    def stop(self) -> None:
        """Teardown: stop the process whatever state it is in."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._out.close()
        if self.proc.stderr is not None:
            self.proc.stderr.close()


def read_events(workspace: Path, *types: str) -> list[StoredEvent]:
    """The event log as it is now, read-only (empty if it does not exist yet)."""
    path = workspace / ".daemon" / "events.sqlite3"
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        query = "SELECT seq, ts, type, schema, data FROM events"
        params: list[str] = list(types)
        if types:
            query += f" WHERE type IN ({','.join('?' * len(types))})"
        rows = conn.execute(query + " ORDER BY seq", params).fetchall()
    except sqlite3.OperationalError:
        return []  # the schema is not created yet
    finally:
        conn.close()
    return [StoredEvent(s, ts, t, sc, json.loads(d)) for s, ts, t, sc, d in rows]


class FakeTrainer:
    """One training session through ``TrainerLock``, step by step, like trainer/session.py."""

    def __init__(self, workspace: Path, *, archive: bool = True) -> None:
        self.workspace = workspace
        self.lock_path = protocol.resolve_lock_path(workspace)
        self.lock = protocol.TrainerLock(self.lock_path)
        self.info = protocol.LockInfo.new(archive=archive)
        self.ack: protocol.Ack | None = None

    @property
    def session_id(self) -> str:
        return self.info.session_id

    def start(self, ack_timeout_s: float = 30.0) -> protocol.Ack | None:
        self.lock.acquire(self.info)
        if self.info.archive and protocol.daemon_alive(self.workspace):
            self.ack = protocol.wait_for_ack(
                self.lock_path,
                self.session_id,
                ack_timeout_s,
                still_waiting=lambda: protocol.daemon_alive(self.workspace),
            )
        self.info = self.info.with_state("running")
        self.lock.write(self.info)
        return self.ack

    def write_logs(self, n: int = 3) -> list[Path]:
        out = []
        for i in range(n):
            p = self.workspace / "logs" / f"{self.session_id}_{i}.log"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(f"session {self.session_id} line {i}\n" * 200)
            out.append(p)
        model = self.workspace / "models" / "memory_efficient_model_final.zip"
        model.write_bytes(os.urandom(5_000))
        return out

    def stop(self, outcome: protocol.Outcome = "completed") -> None:
        self.info = self.info.with_state("stopped", outcome)
        self.lock.write(self.info)
        self.lock.release()


def start_hanging_trainer(
    workspace: Path, *, archive: bool = True
) -> tuple[subprocess.Popen[str], str]:
    """A trainer process that starts a session, writes ``running`` and waits to be killed."""
    proc = subprocess.Popen(
        [PYTHON, "-m", "tests.daemon_helpers", "hang", str(workspace), str(int(archive))],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the session id, once it is running
    assert line.strip(), "hanging trainer did not start"
    return proc, line.strip()


def _hang(workspace: Path, archive: bool) -> None:
    trainer = FakeTrainer(workspace, archive=archive)
    trainer.start()
    trainer.write_logs(2)
    print(trainer.session_id, flush=True)
    signal.pause()


def run_dying_trainer(workspace: Path) -> tuple[str, bool]:
    """A trainer process killed between truncate and write: (its session id, acked?).

    It starts a session, writes logs, truncates its lock file and exits (the kernel
    drops its flock): dead for real, as the daemon checks (pid, start time, boot id).
    """
    proc = subprocess.run(
        [PYTHON, "-m", "tests.daemon_helpers", "die-mid-write", str(workspace)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    session_id, acked = proc.stdout.split()
    return session_id, acked == "acked"


def _die_mid_write(workspace: Path) -> None:
    trainer = FakeTrainer(workspace)
    acked = trainer.start() is not None
    trainer.write_logs(2)
    fd = trainer.lock._fd
    assert fd is not None
    os.ftruncate(fd, 0)  # the first half of write_in_place, and then it dies
    print(trainer.session_id, "acked" if acked else "no-ack", flush=True)
    os._exit(0)


if __name__ == "__main__":
    if sys.argv[1] == "hang":
        _hang(Path(sys.argv[2]), sys.argv[3] == "1")
    elif sys.argv[1] == "die-mid-write":
        _die_mid_write(Path(sys.argv[2]))
