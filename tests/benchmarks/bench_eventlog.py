"""Cost of history: does a long event log slow the daemon's start, grow its memory, slow status?

Run: ``.venv/bin/python tests/benchmarks/bench_eventlog.py [--events N] [--rounds R]``
(not collected by pytest; a few minutes on 2 cores). Three workspaces, alike on disk
(tests/daemon_helpers.py ``make_daemon_workspace``, default ``snapshot_every``):

* small: a few hundred events of history (3 synthetic sessions of 100 events each: started,
  prepared, acknowledged, running, its logs written to again and again, checkpoints, traces
  and a model backup created, stopped, archived, an old archive rotated away, its files
  removed by the next session's prepare);
* large: the same plus ``N`` (default 200,000) more (2,000 such sessions), appended with
  ``EventStore.append_many`` in batches, then one daemon run to a clean stop so that a
  snapshot of the fold exists, as in a workspace used for a long time;
* large without snapshots (reference): a copy of the large one whose ``snapshots`` rows are
  deleted before every start and before every status, so the fold is rebuilt from event 1.

Each round starts a real ``python -m daemon run`` on each workspace (the order rotates from
round to round, so load from other processes falls on all alike) and measures the time from
start to ``READY=1`` on its notify socket, waits until it says it is idle, times one
``python -m daemon status --workspace WS`` while it runs, reads its peak RSS (``VmHWM``) and
stops it (SIGTERM, exit 0). Medians over the rounds (default 3). Targets, large against small
measured in the same run: READY <= 1.5 x small + 0.5 s, peak RSS <= small + 30 MB,
status <= 1.5 x small + 0.3 s.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from daemon.eventlog import events as ev
from daemon.eventlog.store import EventStore
from tests.daemon_helpers import (
    PYTHON,
    REPO,
    DaemonProcess,
    NotifySocket,
    make_daemon_workspace,
    read_events,
    wait_until,
)

SMALL_SESSIONS = 3
PER_SESSION = 100
KEEP_LAST = 5
STEPS = (64, 128, 192, 256)
BATCH = 5_000
READY_TIMEOUT = 600.0


@dataclass
class Figures:
    """Measurements of one workspace, one entry per round."""

    name: str
    ws: Path
    strip_snapshots: bool = False
    ready_s: list[float] = field(default_factory=list)
    hwm_mb: list[float] = field(default_factory=list)
    status_s: list[float] = field(default_factory=list)
    loaded: list[tuple[int, int]] = field(default_factory=list)
    """(snapshot seq, events replayed) of each start, from its SnapshotLoaded."""

    def median(self, attr: str) -> float:
        values: list[float] = getattr(self, attr)
        return statistics.median(values)


def names(k: int) -> tuple[str, str, str]:
    """Session id, tag and post_training archive name of synthetic session ``k`` (hourly)."""
    at = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(hours=k)
    return f"{at:%Y%m%dT%H%M%SZ}-{k:06x}", f"{k:06d}", f"training_backup_{at:%Y%m%d_%H%M%S}.zip"


def session_files(k: int) -> list[ev.FileCreated]:
    tag = names(k)[1]
    checkpoints = [f"models/checkpoints/memory_efficient_model_{tag}_{s}_steps.zip" for s in STEPS]
    return [
        ev.FileCreated(path=f"logs/trades/trade_traces_{tag}.jsonl", area="logs"),
        ev.FileCreated(path=f"logs/tensorboard/PPO_{tag}/events.out.tfevents.{tag}", area="logs"),
        *(ev.FileCreated(path=p, area="models", size=30_000, mtime_ns=k) for p in checkpoints),
        ev.FileCreated(
            path=f"models/backups/memory_efficient_model_final_{tag}.zip", area="models"
        ),
    ]


def session_events(k: int) -> list[ev.Event]:
    """One synthetic session of history, ``PER_SESSION`` events, as the daemon records one:
    started, the previous session's files removed by prepare (it acknowledges with the
    previous post_training archive), its own files created and written to again and again,
    stopped, archived, and the archive of ``KEEP_LAST`` sessions ago rotated away."""
    sid, _, archive = names(k)
    previous = session_files(k - 1) if k else []
    made = session_files(k)
    head: list[ev.Event] = [ev.SessionStarted(session_id=sid, pid=1000 + k, host="bench")]
    head += [ev.FileDeleted(path=f.path, area=f.area) for f in previous]
    if k:
        prev_archive = names(k - 1)[2]
        head.append(ev.WorkspacePrepared(sid, prev_archive, removed=len(previous)))
        head.append(ev.SessionAcknowledged(sid, archive=prev_archive))
    head += [ev.SessionRunning(sid), *made]
    tail: list[ev.Event] = [
        ev.FileModified(path="models/memory_efficient_model_final.zip", area="models", size=5),
        ev.SessionStopped(sid, outcome="completed"),
        ev.ArchiveStarted(reason="post_training", session_id=sid),
        ev.ArchiveCompleted(archive, "post_training", sid, f"{k:032x}", 250_000, 14),
        ev.ArchiveVerified(name=archive, ok=True),
    ]
    if k >= KEEP_LAST:
        tail.append(ev.ArchivePruned(name=names(k - KEEP_LAST)[2], bytes=250_000, why="keep_last"))
    written = ("logs/training.log", "logs/trades/trade_execution.log", made[0].path, made[1].path)
    body: list[ev.Event] = [
        ev.FileModified(path=written[i % 4], area="logs", size=i * 100, mtime_ns=k + i, count=3)
        for i in range(PER_SESSION - len(head) - len(tail))
    ]
    return head + body + tail


def append_history(ws: Path, first: int, sessions: int) -> int:
    """Append ``sessions`` synthetic sessions numbered from ``first``; the events appended."""
    n = 0
    with EventStore.open(ws / ".daemon" / "events.sqlite3") as store:
        batch: list[ev.Event] = []
        for k in range(first, first + sessions):
            batch.extend(session_events(k))
            if len(batch) >= BATCH:
                n += len(store.append_many(batch))
                batch = []
        n += len(store.append_many(batch))
    return n


def strip_snapshots(ws: Path) -> None:
    conn = sqlite3.connect(ws / ".daemon" / "events.sqlite3", isolation_level=None, timeout=30)
    try:
        conn.execute("DELETE FROM snapshots")
    finally:
        conn.close()


def snapshot_count(ws: Path) -> int:
    conn = sqlite3.connect(f"file:{ws / '.daemon' / 'events.sqlite3'}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM snapshots").fetchone()[0])
    finally:
        conn.close()


def wait_ready_at(notify: NotifySocket, daemon: DaemonProcess, timeout: float) -> float:
    """Block on the notify socket until READY=1 arrives; the monotonic time it arrived.

    Reads the socket itself (each ``recv`` waits at most its 50 ms timeout) so the time is
    that of the datagram, not of a later poll; what it reads is kept in ``notify.messages``.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon.proc.poll() is not None:
            sys.exit(f"the daemon exited {daemon.proc.returncode}: {daemon.stderr()[-2000:]}")
        try:
            data = notify.sock.recv(65536)
        except (TimeoutError, BlockingIOError):
            continue
        at = time.monotonic()
        fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
        notify.messages.append(fields)
        if fields.get("READY") == "1":
            return at
    raise AssertionError(f"timed out after {timeout:g} s waiting for READY=1")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


def time_status(ws: Path) -> float:
    t0 = time.monotonic()
    subprocess.run(
        [PYTHON, "-m", "daemon", "status", "--workspace", str(ws)],
        cwd=REPO,
        capture_output=True,
        timeout=300,
        check=True,
    )
    return time.monotonic() - t0


def run_once(ws: Path, root: Path, fig: Figures | None = None) -> float:
    """One daemon run on ``ws`` to a clean stop; the seconds from start to READY=1.
    With ``fig``, also its status latency, peak RSS and what it loaded are recorded."""
    if fig is not None and fig.strip_snapshots:
        strip_snapshots(ws)
    notify = NotifySocket(root, abstract=True)
    t0 = time.monotonic()
    daemon = DaemonProcess(ws, notify)
    try:
        ready = wait_ready_at(notify, daemon, READY_TIMEOUT) - t0
        wait_until(
            lambda: (s := notify.statuses()) and s[-1].startswith("idle"), 60, "the daemon idle"
        )
        if fig is not None:
            if fig.strip_snapshots:
                strip_snapshots(ws)  # its start stored one: status must rebuild the fold too
            fig.status_s.append(time_status(ws))
            fig.hwm_mb.append(peak_rss_mb(daemon.pid))
            fig.ready_s.append(ready)
            started = daemon.wait_event("DaemonStarted", pid=daemon.pid)
            loaded = [e for e in daemon.events("SnapshotLoaded") if e.seq < started.seq][-1]
            fig.loaded.append((int(loaded.data["seq"]), int(loaded.data["replayed"])))
        code = daemon.terminate(120)
        if code != 0:
            sys.exit(f"the daemon exited {code}: {daemon.stderr()[-2000:]}")
    finally:
        daemon.stop()
        notify.close()
    return ready


def check(
    label: str, large: float, small: float, factor: float, plus: float, unit: str, target: bool
) -> str:
    limit = factor * small + plus
    if target:
        ok = "ok" if large <= limit else "MISSED"
    else:
        ok = "within" if large <= limit else "over"
    ratio = f"{large / small:.2f}x" if small else "-"
    rule = f"{factor:g} x small + {plus:g}" if factor != 1 else f"small + {plus:g}"
    return (
        f"{label}: {large:.3f} vs {small:.3f} {unit}: {ratio}, {large - small:+.3f} {unit} "
        f"(target <= {rule} = {limit:.3f} {unit}: {ok})"
    )


def report(large: Figures, small: Figures, *, target: bool) -> None:
    tag = "" if target else " (reference, no target: what the snapshot buys)"
    print(f"{large.name} against {small.name}{tag}:")
    r = (large.median("ready_s"), small.median("ready_s"))
    print("  " + check("start -> READY=1", *r, 1.5, 0.5, "s", target))
    h = (large.median("hwm_mb"), small.median("hwm_mb"))
    print("  " + check("peak RSS (VmHWM) ", *h, 1.0, 30.0, "MB", target))
    s = (large.median("status_s"), small.median("status_s"))
    print("  " + check("status latency  ", *s, 1.5, 0.3, "s", target))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="history of the large log")
    parser.add_argument("--rounds", type=int, default=3, help="starts per workspace (median)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-eventlog-"))
    try:
        small = make_daemon_workspace(root / "small")
        large = make_daemon_workspace(root / "large")
        for ws in (small, large):
            append_history(ws, 0, SMALL_SESSIONS)
        t0 = time.monotonic()
        extra = append_history(large, SMALL_SESSIONS, max(1, args.events // PER_SESSION))
        print(f"appended {extra} events to the large log in {time.monotonic() - t0:.1f} s")
        for ws in (small, large):  # a user's workspace: a clean stop left a snapshot
            first = run_once(ws, root)
            db = ws / ".daemon" / "events.sqlite3"
            print(
                f"{ws.name}: {len(read_events(ws))} events, {db.stat().st_size / 1e6:.1f} MB, "
                f"{snapshot_count(ws)} snapshots; first start (no snapshot yet) "
                f"READY after {first:.2f} s"
            )
        bare = root / "large-bare"
        shutil.copytree(large, bare)
        figs = [
            Figures("small", small),
            Figures("large", large),
            Figures("large without snapshots", bare, strip_snapshots=True),
        ]
        for round_ in range(args.rounds):
            order = figs[round_ % 3 :] + figs[: round_ % 3]
            for fig in order:
                run_once(fig.ws, root, fig)
            print(
                f"round {round_ + 1}: "
                + "; ".join(
                    f"{f.name} READY {f.ready_s[-1]:.2f} s, VmHWM {f.hwm_mb[-1]:.1f} MB, "
                    f"status {f.status_s[-1]:.2f} s (loaded seq {f.loaded[-1][0]}, "
                    f"replayed {f.loaded[-1][1]})"
                    for f in figs
                ),
                flush=True,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"medians of {args.rounds} starts:")
    for f in figs:
        print(
            f"  {f.name:<24} READY {f.median('ready_s'):.3f} s, "
            f"VmHWM {f.median('hwm_mb'):.1f} MB, status {f.median('status_s'):.3f} s"
        )
    report(figs[1], figs[0], target=True)
    report(figs[2], figs[0], target=False)


if __name__ == "__main__":
    main()
