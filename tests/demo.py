"""``make demo``: the whole system once, end to end, on a demo workspace.

Starts the daemon (waiting for its sd_notify READY=1 on a private socket, as
systemd would), runs a short real training session with ``--default``, waits
for the session's verified post_training archive, shows ``status`` and
``list``, then stops the daemon with SIGTERM. Nothing is left running, even
on Ctrl-C. Run it again: the next session's archive joins the first.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
WORKSPACE = Path(os.environ.get("DEMO_WORKSPACE", REPO / "demo-workspace"))
EPISODES = os.environ.get("DEMO_EPISODES", "1")
PY = sys.executable
METRICS_FILE = "metrics/training_archiver.prom"
"""Relative to the workspace, as node_exporter's textfile collector would read it."""


def say(text: str) -> None:
    bold = sys.stdout.isatty()
    print(f"\n\033[1m==> {text}\033[0m" if bold else f"\n==> {text}", flush=True)


def wait_for(what: str, check: Callable[[], Any], timeout: float) -> Any:
    """Poll ``check`` until it returns something truthy, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise SystemExit(f"demo: gave up waiting for {what} after {timeout:.0f} s")


def daemon_cli(*args: str) -> str:
    out = subprocess.run(
        [PY, "-m", "daemon", *args, "--workspace", str(WORKSPACE)],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


def prepare_workspace() -> None:
    config = WORKSPACE / "config"
    config.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "training_config.json", "logging_config.json"):
        if not (config / name).exists():
            shutil.copy(REPO / "config" / name, config / name)
    daemon_config = config / "config.json"
    doc = json.loads(daemon_config.read_text())
    if "metrics_file" not in doc:  # show the Prometheus textfile too (README, "Monitoring")
        doc["metrics_file"] = METRICS_FILE
        daemon_config.write_text(json.dumps(doc, indent=2) + "\n")
    (WORKSPACE / METRICS_FILE).parent.mkdir(exist_ok=True)  # the daemon makes no folders


def start_daemon(notify: socket.socket, notify_path: str) -> subprocess.Popen[bytes]:
    log = (WORKSPACE / "daemon.log").open("ab")
    env = {**os.environ, "NOTIFY_SOCKET": notify_path}
    proc = subprocess.Popen(
        [PY, "-m", "daemon", "run", "--workspace", str(WORKSPACE)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    notify.settimeout(0.5)

    def ready() -> bool:
        if proc.poll() is not None:
            raise SystemExit(f"demo: the daemon exited with {proc.returncode}; see daemon.log")
        try:
            return b"READY=1" in notify.recv(4096)
        except TimeoutError:
            return False

    wait_for("the daemon's READY=1", ready, 60)
    return proc


def final_archive(session_id: str) -> str | None:
    doc = json.loads(daemon_cli("status", "--json"))
    session = doc.get("session") or {}
    if session.get("session_id") == session_id:
        return session.get("final_archive")
    return None


def main() -> int:
    say(f"Demo workspace: {WORKSPACE}")
    prepare_workspace()
    tmp = tempfile.mkdtemp(prefix="demo-notify-")
    notify_path = os.path.join(tmp, "notify.sock")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    daemon: subprocess.Popen[bytes] | None = None
    try:
        say("Starting the daemon (python -m daemon run); its JSON log goes to daemon.log")
        daemon = start_daemon(notify, notify_path)
        print(f"daemon ready, pid {daemon.pid}")

        say(f"Training a short session: python -m trainer --default --total-episodes {EPISODES}")
        trainer = subprocess.run(
            [
                PY,
                "-m",
                "trainer",
                "--default",
                "--workspace",
                str(WORKSPACE),
                "--total-episodes",
                EPISODES,
            ],
            check=False,
        )
        if trainer.returncode != 0:
            raise SystemExit(f"demo: the trainer exited with {trainer.returncode}")
        summary = json.loads((WORKSPACE / "logs" / "session_summary.json").read_text())
        session_id = summary["session_id"]

        say(f"Waiting for session {session_id}'s verified post_training archive")
        name = wait_for("the post_training archive", lambda: final_archive(session_id), 180)
        print(f"archived as {name}")

        say("python -m daemon status")
        print(daemon_cli("status"), end="")
        say("python -m daemon list")
        print(daemon_cli("list"), end="")
        metrics = WORKSPACE / METRICS_FILE
        if metrics.exists():
            say(f"The metrics file ({metrics})")
            print(metrics.read_text(), end="")
        say("Where things are")
        archive_dir = json.loads(daemon_cli("status", "--json"))["archive_dir"]
        print(f"archive:          {Path(archive_dir) / name}")
        print(
            f"tensorboard logs: {WORKSPACE / 'logs' / 'tensorboard'}  "
            f"(tensorboard --logdir {WORKSPACE / 'logs' / 'tensorboard'})"
        )
        print(f"equity plot:      {WORKSPACE / 'logs' / 'equity_curve.png'}")
        print(f"session summary:  {WORKSPACE / 'logs' / 'session_summary.json'}")
        m = summary.get("metrics", {})
        print(
            f"held-out slice: return {m.get('total_return', 0):+.1%}, "
            f"buy and hold {m.get('buy_and_hold_return', 0):+.1%}, "
            f"Sharpe {m.get('sharpe', 0):.2f}, {m.get('trades')} trades"
        )
    finally:
        if daemon is not None and daemon.poll() is None:
            say("Stopping the daemon (SIGTERM)")
            daemon.send_signal(signal.SIGTERM)
            try:
                code = daemon.wait(60)
            except subprocess.TimeoutExpired:
                daemon.kill()
                code = daemon.wait()
            print(f"daemon exited with {code}")
        notify.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
