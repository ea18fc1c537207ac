"""create_archive when the world moves: changing, vanishing, unreadable files; locks; temp files."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
import threading
import zipfile
from pathlib import Path

import pytest

import daemon.archive.create as archive_mod
from daemon.archive import (
    archive_lock,
    cleanup_temp_files,
    create_archive,
    list_archive_files,
    verify_archive,
)
from daemon.errors import ArchiveBusyError, ArchiveError, DiskFullError
from tests.archive_helpers import MB, make_workspace, tree_digest, unzip_test, unzip_test_all


@pytest.fixture(autouse=True)
def _every_archive_passes_unzip_t(tmp_path):
    yield
    unzip_test_all(tmp_path)


STALE = ".training_backup_20240105_093000.0123abcd.zip.tmp"


def _single_file_ws(tmp_path: Path, size: int = 3 * MB) -> Path:
    ws = tmp_path / "ws"
    (ws / "logs").mkdir(parents=True)
    (ws / "logs/grow.log").write_bytes(b"".join(b"line %d\n" % i for i in range(size // 10)))
    return ws


def _fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


def _on_read(monkeypatch, name: str, action) -> None:
    """Call ``action(n)`` (n = how many reads so far) before each read of the file ``name``."""
    real_read = os.read
    count = [0]

    def read(fd, n):
        if _fd_path(fd).endswith(name):
            count[0] += 1
            action(count[0])
        return real_read(fd, n)

    monkeypatch.setattr(os, "read", read)


def _append(path: Path, data: bytes) -> None:
    with path.open("ab") as f:
        f.write(data)


def test_a_file_that_keeps_changing_is_archived_as_last_read_and_flagged(tmp_path, monkeypatch):
    ws = _single_file_ws(tmp_path)
    target = ws / "logs/grow.log"
    _on_read(monkeypatch, "grow.log", lambda n: _append(target, b"appended\n"))
    result = create_archive(ws, tmp_path / "out", reason="manual")
    monkeypatch.undo()
    [rec] = result.manifest.members
    assert rec.changed and result.manifest.changed == ("logs/grow.log",)
    assert verify_archive(result.path).ok  # the sha256 is that of the bytes archived
    with zipfile.ZipFile(result.path) as z:
        assert target.read_bytes().startswith(z.read("logs/grow.log"))
    unzip_test(result.path)


def test_a_file_that_changed_once_is_reread_and_not_flagged(tmp_path, monkeypatch):
    ws = _single_file_ws(tmp_path)
    target = ws / "logs/grow.log"

    def once(n: int) -> None:
        if n == 2:
            _append(target, b"one more\n")

    _on_read(monkeypatch, "grow.log", once)
    seen: list[int] = []
    result = create_archive(
        ws, tmp_path / "out", reason="manual", progress=lambda d, t: seen.append(d)
    )
    monkeypatch.undo()
    [rec] = result.manifest.members
    assert not rec.changed and rec.size == target.stat().st_size
    with zipfile.ZipFile(result.path) as z:
        assert z.read("logs/grow.log") == target.read_bytes()
    assert seen == sorted(seen)  # the re-read is not counted twice
    unzip_test(result.path)


def test_a_file_replaced_by_rename_while_read_is_archived_in_its_new_version(tmp_path, monkeypatch):
    ws = _single_file_ws(tmp_path)
    target = ws / "logs/grow.log"
    new = b"the new version\n" * 1000

    def atomic_save(n: int) -> None:
        if n == 2:
            (ws / "logs/.tmp").write_bytes(new)
            os.replace(ws / "logs/.tmp", target)

    _on_read(monkeypatch, "grow.log", atomic_save)
    result = create_archive(ws, tmp_path / "out", reason="manual")
    monkeypatch.undo()
    with zipfile.ZipFile(result.path) as z:
        assert z.read("logs/grow.log") == new
    assert not result.manifest.members[0].changed


def test_a_file_that_vanishes_after_listing_is_recorded_as_skipped(tmp_path, monkeypatch):
    ws = make_workspace(tmp_path / "ws", text_mb=0.2, binary_mb=0.2, seed=3)
    real = archive_mod.collect_sources

    def listing_then_delete(workspace, exclude=()):
        files, skipped = real(workspace, exclude)
        (ws / "logs/training.log").unlink()
        return files, skipped

    monkeypatch.setattr(archive_mod, "collect_sources", listing_then_delete)
    result = create_archive(ws, tmp_path / "out", reason="manual")
    assert [(s.path, s.reason) for s in result.manifest.skipped] == [
        ("logs/training.log", "vanished")
    ]
    assert result.manifest.member("logs/training.log") is None
    assert verify_archive(result.path).ok
    unzip_test(result.path)


def test_unreadable_files_are_skipped_and_the_archive_goes_on(tmp_path, monkeypatch):
    ws = make_workspace(tmp_path / "ws", text_mb=2, binary_mb=0.2, seed=4)
    real_open, real_read = os.open, os.read

    def open_denied(path, flags, *args, **kw):
        if str(path).endswith("trade_execution.log"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kw)

    reads: dict[int, int] = {}

    def read_fails_midway(fd, n):  # EIO after the first chunk of one file
        if _fd_path(fd).endswith("training.log"):
            reads[fd] = reads.get(fd, 0) + 1
            if reads[fd] > 1:
                raise OSError(errno.EIO, "Input/output error")
        return real_read(fd, n)

    monkeypatch.setattr(os, "open", open_denied)
    monkeypatch.setattr(os, "read", read_fails_midway)
    (ws / "logs/training.log").write_bytes(b"x" * (3 * MB))  # several chunks
    result = create_archive(ws, tmp_path / "out", reason="manual")
    monkeypatch.undo()
    skipped = {s.path: (s.reason, s.detail) for s in result.manifest.skipped}
    assert skipped == {
        "logs/trades/trade_execution.log": ("unreadable", "Permission denied"),
        "logs/training.log": ("unreadable", "Input/output error"),
    }
    with zipfile.ZipFile(result.path) as z:
        assert "logs/training.log" not in z.namelist()
        assert "logs/trades/trade_traces_20240105_093000.jsonl" in z.namelist()
    assert verify_archive(result.path).ok
    unzip_test(result.path)


def test_an_injected_enospc_is_a_disk_full_error_and_leaves_no_file(tmp_path, monkeypatch):
    ws = make_workspace(tmp_path / "ws", text_mb=0.5, binary_mb=0.5, seed=5)
    before = tree_digest(ws)
    out = tmp_path / "out"
    real_pwrite = os.pwrite
    written = [0]

    def pwrite(fd, data, offset):
        written[0] += len(data)
        if written[0] > 300_000:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    with pytest.raises(DiskFullError, match=f"disk full.*{out}"):
        create_archive(ws, out, reason="manual")
    monkeypatch.undo()
    assert [p.name for p in out.iterdir()] == [".archive.lock"]
    assert tree_digest(ws) == before


def test_temp_files_of_crashed_runs_are_removed_only_when_the_lock_is_free(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / STALE).write_bytes(b"half an archive")
    (out / ".unrelated").write_bytes(b"")
    with archive_lock(out, 1.0):
        assert cleanup_temp_files(out) == []
        assert (out / STALE).exists()
    assert cleanup_temp_files(out) == [out / STALE]
    assert sorted(p.name for p in out.iterdir()) == [".archive.lock", ".unrelated"]
    assert cleanup_temp_files(tmp_path / "missing") == []


def test_create_archive_removes_stale_temp_files_first(tmp_path):
    ws = _single_file_ws(tmp_path, size=10_000)
    out = tmp_path / "out"
    out.mkdir()
    (out / STALE).write_bytes(b"half an archive")
    result = create_archive(ws, out, reason="manual")
    assert sorted(p.name for p in out.iterdir()) == [".archive.lock", result.name]


def test_a_held_lock_makes_the_second_archiver_wait_then_raise_busy(tmp_path):
    ws = _single_file_ws(tmp_path, size=MB)
    out = tmp_path / "out"
    first_inside = threading.Event()
    release = threading.Event()
    results = []

    def hold(done: int, total: int) -> None:
        first_inside.set()
        assert release.wait(30)

    first = threading.Thread(
        target=lambda: results.append(create_archive(ws, out, reason="manual", progress=hold))
    )
    first.start()
    assert first_inside.wait(30)
    with pytest.raises(ArchiveBusyError, match=r"\.archive\.lock"):
        create_archive(ws, out, reason="manual", lock_timeout_s=0.2)
    second_progress = []
    second = threading.Thread(
        target=lambda: results.append(
            create_archive(
                ws, out, reason="manual", progress=lambda d, t: second_progress.append(d)
            )
        )
    )
    second.start()
    second.join(0.3)
    assert second.is_alive() and second_progress == []  # waiting for the lock
    release.set()
    first.join(30)
    second.join(30)
    assert len(results) == 2 and len(list_archive_files(out)) == 2
    assert all(verify_archive(r.path).ok for r in results)


def test_progress_is_monotonic_and_ends_at_the_total(tmp_path):
    ws = _single_file_ws(tmp_path, size=3 * MB)
    seen: list[tuple[int, int]] = []
    result = create_archive(
        ws, tmp_path / "out", reason="manual", progress=lambda d, t: seen.append((d, t))
    )
    assert len(seen) > 4
    assert all(t == 2 * result.source_bytes for _, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert seen[-1] == (2 * result.source_bytes, 2 * result.source_bytes)


def test_a_failed_verification_removes_the_temp_file(tmp_path, monkeypatch):
    ws = _single_file_ws(tmp_path, size=100_000)
    out = tmp_path / "out"

    def bad_verify(path, *, progress=None):
        raise ArchiveError("archive x failed verification: logs/grow.log: CRC mismatch")

    monkeypatch.setattr(archive_mod, "_verify_written", lambda *a: bad_verify(a[0]))
    with pytest.raises(ArchiveError, match="CRC mismatch"):
        create_archive(ws, out, reason="manual")
    assert [p.name for p in out.iterdir()] == [".archive.lock"]


MEMORY_DRIVER = textwrap.dedent(
    """
    import os, re, sys
    from pathlib import Path
    from daemon.archive import create_archive
    ws, size = Path(sys.argv[1]), int(sys.argv[2])
    (ws / "logs").mkdir(parents=True)
    with open(ws / "logs" / "big.bin", "wb") as f:
        f.truncate(size)  # sparse: deflated (zeros), so the compression path is exercised
    create_archive(ws, ws.parent / (ws.name + "-out"), reason="manual")
    # VmHWM, not ru_maxrss: the latter survives exec and may be the parent's peak
    print(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
    """
)


def _peak_rss_kib(tmp_path: Path, name: str, size: int) -> int:
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_DRIVER, str(tmp_path / name), str(size)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    return int(done.stdout.split()[-1])


def test_memory_does_not_grow_with_file_size(tmp_path):
    small = _peak_rss_kib(tmp_path, "small", MB)
    large = _peak_rss_kib(tmp_path, "large", 256 * MB)
    assert (large - small) * 1024 < 32 * MB, (small, large)
