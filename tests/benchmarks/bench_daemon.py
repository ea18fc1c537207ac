"""Daemon figures: idle CPU, CPU and events under a full-speed writer, stop -> verified archive.

Run: ``.venv/bin/python tests/benchmarks/bench_daemon.py`` (not collected by pytest).
The daemon runs as a real subprocess with the shipped config defaults
(stale check every 2 s, 1 s coalescing window); CPU is read from /proc.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.archive_helpers import make_workspace
from tests.daemon_helpers import DaemonProcess, FakeTrainer, NotifySocket, read_events

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def measure(pid: int, seconds: float) -> float:
    """CPU percent of one core used by ``pid`` over ``seconds`` of wall time."""
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return 100 * (cpu_seconds(pid) - c0) / (time.monotonic() - t0)


def writer(path: Path, stop: threading.Event, counter: list[int]) -> None:
    """Append lines as fast as possible, one write(2) per line (each an IN_MODIFY)."""
    n = 0
    with path.open("a", buffering=1) as f:
        while not stop.is_set():
            f.write(f"step {n} loss 0.{n % 997:03d} reward {n % 13}\n")
            n += 1
    counter.append(n)


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-daemon-"))
    ws = make_workspace(root / "ws", text_mb=20, binary_mb=60, seed=11)
    config = json.loads((ws / "config/config.json").read_text())
    (ws / "config/config.json").write_text(json.dumps({**config, "keep_last": 50}))
    notify = NotifySocket(root)
    daemon = DaemonProcess(ws, notify, watchdog_usec=30_000_000)
    try:
        daemon.wait_ready(timeout=120)
        time.sleep(1.0)  # let start-up work settle before measuring idle
        idle = measure(daemon.pid, 10.0)

        before = daemon.events()[-1].seq
        stop, counter = threading.Event(), list[int]()
        t = threading.Thread(target=writer, args=(ws / "logs/training.log", stop, counter))
        c0, t0 = cpu_seconds(daemon.pid), time.monotonic()
        t.start()
        time.sleep(5.0)
        stop.set()
        t.join()
        busy = 100 * (cpu_seconds(daemon.pid) - c0) / (time.monotonic() - t0)
        time.sleep(1.5)  # the last coalescing window closes
        recorded = [e for e in daemon.events() if e.seq > before]
        modified = [e for e in recorded if e.type == "FileModified"]
        raw = sum(e.data.get("count", 1) for e in modified)

        trainer = FakeTrainer(ws)
        trainer.start(ack_timeout_s=300)
        trainer.write_logs(3)
        stopped_at = time.monotonic()
        trainer.stop()
        done = daemon.wait_event(
            "ArchiveCompleted", timeout=300, reason="post_training", session_id=trainer.session_id
        )
        latency = time.monotonic() - stopped_at
        assert daemon.has("ArchiveVerified", name=done.data["name"], ok=True)
    finally:
        daemon.stop()
        notify.close()
    total = len(read_events(ws))
    shutil.rmtree(root)
    print(f"workspace: {ws} (20 MB text, 60 MB binary); events in the log: {total}")
    print(f"idle CPU over 10 s:                 {idle:.2f} % of one core (resolution 0.1 %)")
    print(f"CPU with a full-speed writer (5 s): {busy:.1f} % of one core")
    print(f"writer lines appended:              {counter[0]} ({counter[0] / 5:.0f}/s)")
    print(f"raw notifications coalesced:        {raw}")
    print(
        f"events recorded during the writer:  {len(recorded)} "
        f"({len(recorded) / 5:.1f}/s; FileModified {len(modified)})"
    )
    print(
        f"stop -> verified post_training archive: {latency:.2f} s "
        f"({done.data['bytes'] / 1e6:.1f} MB archive of {done.data['source_bytes'] / 1e6:.1f} MB, "
        f"engine {done.data['seconds']:.2f} s)"
    )


if __name__ == "__main__":
    main()
