"""The archive engine via the real CLI: archive, verify (exit 1, member named, event), restore."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from daemon.archive import list_archive_files
from daemon.archive.zipreader import data_offset, read_entries
from tests.archive_helpers import make_workspace, tree_digest, unzip_test, unzip_test_all


@pytest.fixture(autouse=True)
def _every_archive_passes_unzip_t(tmp_path):
    yield
    unzip_test_all(tmp_path)


REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.fixture
def archived(tmp_path) -> tuple[Path, Path]:
    ws = make_workspace(tmp_path / "ws", text_mb=0.5, binary_mb=0.5, seed=51)
    done = _cli("archive", "--workspace", str(ws), "--json")
    assert done.returncode == 0, done.stderr
    [archive] = list_archive_files(ws / "archives")
    assert json.loads(done.stdout)["name"] == archive.name
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    unzip_test(archive)
    return ws, archive


def test_verify_passes_then_fails_naming_the_member_and_records_events(archived):
    ws, archive = archived
    good = _cli("verify", "--workspace", str(ws), archive.name)
    assert good.returncode == 0 and "OK" in good.stdout
    corrupt = archive.parent / "corrupt.zip"  # a copy in the archive folder: verdicts recorded
    corrupt.write_bytes(archive.read_bytes())
    fd = os.open(corrupt, os.O_RDWR)
    try:
        entry = next(e for e in read_entries(fd) if e.name == "logs/training.log")
        at = data_offset(fd, entry) + 100
        os.pwrite(fd, bytes([os.pread(fd, 1, at)[0] ^ 0xFF]), at)
    finally:
        os.close(fd)
    bad = _cli("verify", "--workspace", str(ws), str(corrupt), "--json")
    assert bad.returncode == 1
    [doc] = json.loads(bad.stdout)
    assert not doc["ok"] and doc["problems"]
    assert all(p.startswith("logs/training.log: ") for p in doc["problems"])
    events = _cli("events", "--workspace", str(ws), "--json", "--type", "ArchiveVerified")
    assert events.returncode == 0, events.stderr
    verdicts = [json.loads(line)["data"] for line in events.stdout.splitlines()]
    assert [v["ok"] for v in verdicts][-2:] == [True, False]


def test_restore_round_trips_through_the_cli(archived, tmp_path):
    ws, archive = archived
    target = tmp_path / "restored"
    done = _cli("restore", archive.name, "--to", str(target), "--workspace", str(ws))
    assert done.returncode == 0, done.stderr
    restored = tree_digest(target / "logs")
    assert {k: v[0::2] for k, v in restored.items()} == {
        k: v[0::2] for k, v in tree_digest(ws / "logs").items()
    }


@pytest.mark.parametrize("evil", ["../escaped.txt", "/tmp/escaped_abs.txt", "link"])
def test_restore_refuses_unsafe_archives_and_writes_nothing(tmp_path, evil):
    bad = tmp_path / "evil.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("logs/ok.txt", b"fine")
        info = zipfile.ZipInfo(evil)
        if evil == "link":
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        z.writestr(info, b"/etc")
    target = tmp_path / "sub" / "target"
    before = tree_digest(tmp_path)
    done = _cli("restore", str(bad), "--to", str(target), "--workspace", str(tmp_path))
    assert done.returncode in (1, 2), (done.stdout, done.stderr)
    assert "refusing" in done.stderr
    assert not target.exists()
    assert {k for k in tree_digest(tmp_path) if not k.startswith(".daemon/")} == set(before)
    assert not Path("/tmp/escaped_abs.txt").exists()
    assert not (tmp_path / "sub" / "escaped.txt").exists()
