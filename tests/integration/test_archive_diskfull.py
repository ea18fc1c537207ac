"""A full disk (a 2 MiB tmpfs as archive folder): clear error, no partial file, sources intact."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.archive import create_archive, list_archive_files, verify_archive
from daemon.errors import DiskFullError
from tests.archive_helpers import make_workspace, tmpfs, tree_digest, unzip_test, unzip_test_all


@pytest.fixture(autouse=True)
def _every_archive_passes_unzip_t(tmp_path):
    yield
    unzip_test_all(tmp_path)


REPO = Path(__file__).resolve().parents[2]


def _sources(ws: Path) -> dict[str, tuple[int, int, bytes]]:
    return {k: v for k, v in tree_digest(ws).items() if not k.startswith((".daemon/", "archives/"))}


def test_create_archive_on_a_full_disk_fails_cleanly(tmp_path):
    ws = make_workspace(tmp_path / "ws", text_mb=1, binary_mb=4, seed=41)
    before = tree_digest(ws)
    with tmpfs(tmp_path / "small", "2m") as out:
        with pytest.raises(DiskFullError) as caught:
            create_archive(ws, out, reason="manual")
        message = str(caught.value)
        assert "disk full" in message and str(out) in message and "\n" not in message
        assert sorted(p.name for p in out.iterdir()) == [".archive.lock"]
        # once there is room again, the same folder works
        small = tmp_path / "ws2"
        (small / "logs").mkdir(parents=True)
        (small / "logs/a.log").write_text("fits\n" * 100)
        result = create_archive(small, out, reason="manual")
        assert verify_archive(result.path).ok
        unzip_test(result.path)
    assert tree_digest(ws) == before


def test_cli_archive_on_a_full_disk_exits_1_with_a_clear_message(tmp_path):
    ws = make_workspace(tmp_path / "ws", text_mb=1, binary_mb=4, seed=42)
    before = _sources(ws)
    with tmpfs(ws / "archives", "2m") as out:
        done = subprocess.run(
            [sys.executable, "-m", "daemon", "archive", "--workspace", str(ws)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert done.returncode == 1, (done.stdout, done.stderr)
        assert "disk full" in done.stderr and str(out) in done.stderr
        assert list_archive_files(out) == []
        assert [p.name for p in out.iterdir() if not p.name.endswith(".lock")] == []
    assert _sources(ws) == before
