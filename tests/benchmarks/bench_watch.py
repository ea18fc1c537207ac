"""Benchmark (c): the daemon's CPU under a full-speed flushing writer, this tree against a baseline.

Run: ``.venv/bin/python tests/benchmarks/bench_watch.py [--baseline DIR] [--seconds N]``
(not collected by pytest). A writer *process* appends a line to
``logs/training.log`` and flushes it (one ``write(2)`` per line) as fast as it
can, for ``--seconds`` (default 8), never closing the file; the daemon runs as
a real subprocess with the shipped defaults (1 s coalescing window). CPU is
utime+stime of the daemon from ``/proc/PID/stat`` over the writer's window, as
a percentage of one core. With ``--baseline DIR`` (a checkout of another
version, e.g. ``/work/main``) the same measurement runs on that code first,
and the ratios are printed. Target: at most 15 % of one core.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from daemon import protocol  # noqa: E402
from tests.daemon_helpers import make_daemon_workspace, read_events, wait_until  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
WRITER = """
import sys, time
end = time.monotonic() + float(sys.argv[2])
n = 0
with open(sys.argv[1], "a") as f:
    print("open", flush=True)
    while time.monotonic() < end:
        f.write(f"step {n} loss 0.{n % 997:03d} reward {n % 13}\\n")
        f.flush()
        n += 1
    print(n, flush=True)
    sys.stdin.read()  # stays open until told to go (EOF)
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


@dataclass(frozen=True)
class Result:
    code: Path
    cpu_pct: float
    lines: int
    seconds: float
    events: int
    modified: int
    last_size: int
    final_size: int
    lag_s: float

    def show(self) -> str:
        return (
            f"  daemon CPU:             {self.cpu_pct:6.1f} % of one core\n"
            f"  writer lines appended:  {self.lines} ({self.lines / self.seconds:,.0f}/s)\n"
            f"  events recorded:        {self.events} ({self.events / self.seconds:.1f}/s; "
            f"FileModified {self.modified})\n"
            f"  open log's size in the event log: {self.last_size} of {self.final_size} bytes "
            f"{self.lag_s:.1f} s after the writer stopped (still open)"
        )


def run(code: Path, seconds: float, root: Path) -> Result:
    """One daemon on ``code``, one writer, one measurement."""
    ws = make_daemon_workspace(root / code.name)
    (ws / "config/config.json").write_text('{"keep_last": 50}')  # the shipped defaults
    env = {**os.environ, "PYTHONPATH": str(code)}
    env.pop("NOTIFY_SOCKET", None)
    out = (root / f"{code.name}.daemon.out").open("wb")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "daemon", "run", "--workspace", str(ws)],
        cwd=code,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: protocol.daemon_alive(ws), 60, "the daemon's lock")
        wait_until(lambda: read_events(ws, "Rescanned"), 60, "the start-up rescan")
        log = ws / "logs/training.log"
        before = read_events(ws)[-1].seq
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(log), str(seconds)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert writer.stdout is not None and writer.stdin is not None
        assert writer.stdout.readline().strip() == "open"
        c0, t0 = cpu_seconds(daemon.pid), time.monotonic()
        lines = int(writer.stdout.readline())  # the writer's window is over
        cpu = 100 * (cpu_seconds(daemon.pid) - c0) / (time.monotonic() - t0)
        final = log.stat().st_size
        stopped = time.monotonic()

        def caught_up() -> int | None:
            sizes = [
                e.data["size"]
                for e in read_events(ws, "FileModified")
                if e.data["path"] == "logs/training.log"
            ]
            return final if sizes and sizes[-1] == final else None

        try:
            wait_until(caught_up, 30, "the open log's final size in the event log")
        except AssertionError:
            pass  # reported as it is: the size it had reached
        lag = time.monotonic() - stopped
        recorded = [e for e in read_events(ws) if e.seq > before]
        modified = [e for e in recorded if e.type == "FileModified"]
        last = max(
            (e.data["size"] for e in modified if e.data["path"] == "logs/training.log"), default=0
        )
        writer.stdin.close()
        writer.wait(10)
        return Result(code, cpu, lines, seconds, len(recorded), len(modified), last, final, lag)
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(10)
        out.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="another checkout to measure first")
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-watch-"))
    try:
        results = []
        if args.baseline is not None:
            results.append(("before", run(args.baseline.resolve(), args.seconds, root)))
        results.append(("after", run(REPO, args.seconds, root)))
    finally:
        shutil.rmtree(root)
    print(f"full-speed flushing writer on logs/training.log for {args.seconds:g} s, never closed")
    for label, r in results:
        print(f"{label}: {r.code}")
        print(r.show())
    if len(results) == 2:
        (_, b), (_, a) = results
        print(f"CPU after / before:             {a.cpu_pct / max(b.cpu_pct, 0.1):.3f}")
        print(f"events/s after / before:        {a.events / max(b.events, 1):.3f}")
        print(f"writer lines/s after / before:  {a.lines / max(b.lines, 1):.3f}")
    verdict = "met" if results[-1][1].cpu_pct <= 15 else "NOT met"
    print(f"target <= 15 % of one core: {verdict} ({results[-1][1].cpu_pct:.1f} %)")


if __name__ == "__main__":
    main()
