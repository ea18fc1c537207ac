"""Archive benchmark: our create_archive against Info-ZIP's `zip -1 -r` on a realistic workspace.

Run: ``.venv/bin/python tests/benchmarks/bench_archive.py`` (not collected by pytest).

It generates a ~180 MB workspace (tests/archive_helpers.make_workspace: half
text logs and JSONL trade traces, half SB3-like model zips, tensorboard event
files and root checkpoints) in a temporary folder and prints, best of 3 runs
each, interleaved, page cache warm for both:

- time ratio: our ``create_archive`` (walk, read, sha256, deflate, write,
  fsync, read back and verify every member's CRC and sha256, rename, fsync the
  folder) over ``zip -1 -r -q`` of the same folders (no fsync, no verify).
  Target <= 0.6.
- size ratio: our archive over zip -1's. Target <= 1.02. Both store the model
  ``.zip`` files (Info-ZIP's default ``-n`` list has ``.zip``); zip -1 also
  deflates ``.pth``, which we store (model weights; ~7 % on random floats).
- peak memory: peak RSS archiving a 1 GiB file minus a 1 MiB file, each in a
  fresh subprocess, for a sparse (deflated) and a random (stored) file.
  Target < 64 MiB.

It also measures the deflate implementations on the workspace's own logs
(stdlib zlib, zlib-ng if installed, ISA-L levels 0-3) and ISA-L on 1 vs 2
threads, which is how the engine's defaults were chosen. Exit status 1 when
a target is missed.
"""

from __future__ import annotations

import argparse
import functools
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from daemon.archive import create_archive  # noqa: E402
from tests.archive_helpers import MB, make_workspace  # noqa: E402

ZIP_INPUTS = ["logs", "models", "config"]


def best_of(runs: int, setup: Callable[[], None], fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(runs):
        setup()
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench_zip_vs_ours(ws: Path, work: Path, runs: int) -> tuple[float, float, int, int]:
    zip_out = work / "infozip.zip"
    ours_dir = work / "ours"
    roots = sorted(p.name for p in ws.iterdir() if p.suffix in (".pth", ".pkl"))
    zip_cmd = ["zip", "-1", "-r", "-q", str(zip_out), *ZIP_INPUTS, *roots]
    zip_times, our_times = [], []
    our_size = 0
    for _ in range(runs):  # interleaved so both see the same machine state
        zip_out.unlink(missing_ok=True)
        t = time.perf_counter()
        subprocess.run(zip_cmd, cwd=ws, check=True)
        zip_times.append(time.perf_counter() - t)
        shutil.rmtree(ours_dir, ignore_errors=True)
        t = time.perf_counter()
        result = create_archive(ws, ours_dir, reason="manual")
        our_times.append(time.perf_counter() - t)
        our_size = result.bytes
    subprocess.run(["unzip", "-tq", str(result.path)], check=True, stdout=subprocess.DEVNULL)
    return min(zip_times), min(our_times), zip_out.stat().st_size, our_size


def bench_tar_zstd(ws: Path, work: Path) -> float | None:
    if not shutil.which("zstd"):
        return None
    out = work / "ws.tar.zst"
    roots = sorted(p.name for p in ws.iterdir() if p.suffix in (".pth", ".pkl"))
    cmd = f"tar -cf - {' '.join([*ZIP_INPUTS, *roots])} | zstd -q -T0 -f -o {out}"
    return best_of(2, lambda: None, lambda: subprocess.run(cmd, shell=True, cwd=ws, check=True))


def bench_deflaters(ws: Path) -> list[str]:
    """Size ratio vs zlib -1 and single-thread speed, on the logs and tensorboard file."""
    data = b"".join(
        p.read_bytes()
        for p in sorted((ws / "logs").rglob("*"))
        if p.is_file() and p.stat().st_size > MB
    )[: 96 * MB]
    chunk = 1 << 20
    impls: list[tuple[str, Callable[[], Any]]] = []
    impls.append(("zlib -1 (stdlib)", lambda: zlib.compressobj(1, zlib.DEFLATED, -15)))
    try:
        from zlib_ng import zlib_ng

        impls.append(("zlib-ng -1", lambda: zlib_ng.compressobj(1, zlib_ng.DEFLATED, -15)))
        impls.append(("zlib-ng -2", lambda: zlib_ng.compressobj(2, zlib_ng.DEFLATED, -15)))
    except ImportError:
        pass
    from isal import isal_zlib

    for level in range(4):
        make = functools.partial(isal_zlib.compressobj, level, isal_zlib.DEFLATED, -15)
        impls.append((f"isal -{level}", make))
    lines = [f"deflate on {len(data) / MB:.0f} MiB of logs (1 thread, 1 MiB pieces):"]
    base = 0
    for name, new in impls:
        t = time.perf_counter()
        c = new()
        size = sum(len(c.compress(data[i : i + chunk])) for i in range(0, len(data), chunk))
        size += len(c.flush())
        dt = time.perf_counter() - t
        base = base or size
        lines.append(
            f"  {name:18} {len(data) / dt / 1e6:6.0f} MB/s  size {size / len(data):.4f}"
            f" of input, {size / base:.3f} x zlib -1"
        )
    pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)]

    def one(piece: bytes) -> int:
        c = isal_zlib.compressobj(1, isal_zlib.DEFLATED, -15)
        return len(c.compress(piece) + c.flush(isal_zlib.Z_SYNC_FLUSH))

    for threads in (1, 2):
        with ThreadPoolExecutor(threads) as pool:
            t = time.perf_counter()
            list(pool.map(one, pieces))
            dt = time.perf_counter() - t
        lines.append(f"  isal -1 on {threads} thread(s): {len(data) / dt / 1e6:6.0f} MB/s")
    return lines


MEMORY_DRIVER = textwrap.dedent(
    """
    import os, re, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[4])
    from daemon.archive import create_archive
    ws, size, kind = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    (ws / "logs").mkdir(parents=True)
    with open(ws / "logs" / "big.bin", "wb") as f:
        if kind == "sparse":
            f.truncate(size)
        else:
            for _ in range(size // (1 << 20)):
                f.write(os.urandom(1 << 20))
    create_archive(ws, ws.parent / (ws.name + "-out"), reason="manual")
    # VmHWM, not ru_maxrss: the latter survives exec and may be the parent's peak
    print(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
    """
)


def peak_rss_kib(work: Path, name: str, size: int, kind: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_DRIVER, str(work / name), str(size), kind, str(REPO)],
        capture_output=True,
        text=True,
        check=True,
    )
    shutil.rmtree(work / name)
    shutil.rmtree(work / f"{name}-out")
    return int(done.stdout.split()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--text-mb", type=float, default=90.0)
    parser.add_argument("--binary-mb", type=float, default=90.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    failed = False
    with tempfile.TemporaryDirectory(prefix="bench-archive-") as tmp:
        work = Path(tmp)
        ws = make_workspace(work / "ws", text_mb=args.text_mb, binary_mb=args.binary_mb, seed=1)
        total = sum(p.stat().st_size for p in ws.rglob("*") if p.is_file())
        print(f"workspace: {total / 1e6:.0f} MB in {sum(1 for _ in ws.rglob('*'))} entries")
        for line in bench_deflaters(ws):
            print(line)
        zip_s, ours_s, zip_b, ours_b = bench_zip_vs_ours(ws, work, args.runs)
        zstd_s = bench_tar_zstd(ws, work)
        time_ratio, size_ratio = ours_s / zip_s, ours_b / zip_b
        print(f"zip -1 -r      : {zip_s:6.3f} s  {zip_b / 1e6:7.2f} MB  (best of {args.runs})")
        print(f"create_archive : {ours_s:6.3f} s  {ours_b / 1e6:7.2f} MB  (verified, fsynced)")
        if zstd_s is not None:
            print(f"tar | zstd -T0 : {zstd_s:6.3f} s  (reference, not a zip)")
        ok_t, ok_s = time_ratio <= 0.6, size_ratio <= 1.02
        print(f"TIME RATIO ours/zip -1 = {time_ratio:.3f}  (target <= 0.6: {_verdict(ok_t)})")
        print(f"SIZE RATIO ours/zip -1 = {size_ratio:.4f} (target <= 1.02: {_verdict(ok_s)})")
        failed |= not (ok_t and ok_s)
        if not args.skip_memory:
            for kind in ("sparse", "random"):
                small = peak_rss_kib(work, f"small-{kind}", MB, kind)
                large = peak_rss_kib(work, f"large-{kind}", 1024 * MB, kind)
                delta = (large - small) / 1024
                ok_m = delta < 64
                failed |= not ok_m
                print(
                    f"PEAK RSS 1 GiB {kind} file minus 1 MiB = {delta:.1f} MiB"
                    f" ({small / 1024:.0f} -> {large / 1024:.0f} MiB;"
                    f" target < 64: {_verdict(ok_m)})"
                )
    return 1 if failed else 0


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


if __name__ == "__main__":
    sys.exit(main())
