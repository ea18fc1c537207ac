"""create_archive on real workspaces: contents, manifest, methods, naming, exclusions."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from daemon.archive import (
    ARCHIVE_RE,
    create_archive,
    list_archive_files,
    read_manifest,
    resolve_archive,
    verify_archive,
)
from daemon.errors import ArchiveError, ArchiveNotFoundError
from tests.archive_helpers import make_workspace, tree_digest, unzip_test, unzip_test_all


@pytest.fixture(autouse=True)
def _every_archive_passes_unzip_t(tmp_path):
    yield
    unzip_test_all(tmp_path)


NOW = datetime(2024, 1, 5, 9, 30, 0, tzinfo=UTC)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    return make_workspace(tmp_path / "ws", text_mb=0.6, binary_mb=0.6, seed=7)


def _expected_members(ws: Path) -> dict[str, Path]:
    out = {}
    for area in ("logs", "models", "config"):
        for p in (ws / area).rglob("*"):
            if p.is_file():
                out[p.relative_to(ws).as_posix()] = p
    for p in list(ws.glob("*.pth")) + list(ws.glob("*.pkl")):
        out[f"root_checkpoints/{p.name}"] = p
    return out


def test_archive_holds_the_workspace_exactly_with_a_matching_manifest(ws, tmp_path):
    before = tree_digest(ws)
    result = create_archive(ws, ws / "archives", reason="post_training", session_id="s-1", now=NOW)
    assert result.name == "training_backup_20240105_093000.zip" and ARCHIVE_RE.match(result.name)
    assert result.path == ws / "archives" / result.name
    assert stat.S_IMODE(result.path.stat().st_mode) == 0o600
    assert result.bytes == result.path.stat().st_size
    unzip_test(result.path)
    expected = _expected_members(ws)
    m = result.manifest
    assert (m.format_version, m.reason, m.session_id) == (1, "post_training", "s-1")
    assert m.created_at == "2024-01-05T09:30:00+00:00" and len(m.archive_id) == 32
    assert {r.path for r in m.members} == set(expected) and m.skipped == ()
    assert result.source_bytes == sum(p.stat().st_size for p in expected.values())
    with zipfile.ZipFile(result.path) as z:
        assert z.namelist()[-1] == "MANIFEST.json"
        assert json.loads(z.read("MANIFEST.json"))["archive_id"] == m.archive_id
        for rec in m.members:
            data = z.read(rec.path)
            src = expected[rec.path]
            assert data == src.read_bytes()
            assert rec.sha256 == hashlib.sha256(data).hexdigest() and rec.size == len(data)
            assert rec.mtime_ns == src.stat().st_mtime_ns and not rec.changed
    assert read_manifest(result.path) == m
    assert verify_archive(result.path).ok
    after = tree_digest(ws)
    assert {k: after[k] for k in before} == before  # sources untouched
    assert set(after) - set(before) == {f"archives/{result.name}", "archives/.archive.lock"}


def test_already_compressed_members_are_stored_and_the_rest_deflated(tmp_path):
    ws = tmp_path / "ws"
    (ws / "logs").mkdir(parents=True)
    (ws / "models").mkdir()
    (ws / "logs/training.log").write_text("step=1 loss=0.5\n" * 20_000)
    (ws / "logs/noise.bin").write_bytes(os.urandom(300_000))  # unknown suffix, incompressible
    (ws / "logs/old.log.gz").write_bytes(b"compressible " * 10_000)  # suffix says compressed
    (ws / "logs/tiny.txt").write_bytes(b"ab")  # deflate would not shrink it
    (ws / "logs/empty.log").write_bytes(b"")
    (ws / "models/model.zip").write_bytes(b"PK" + b"z" * 100_000)
    (ws / "weights.pth").write_bytes(b"w" * 100_000)
    (ws / "stats.pkl").write_bytes(b"p" * 100_000)
    result = create_archive(ws, tmp_path / "out", reason="manual")
    unzip_test(result.path)
    with zipfile.ZipFile(result.path) as z:
        methods = {i.filename: i.compress_type for i in z.infolist()}
        assert z.testzip() is None
    assert methods == {
        "logs/empty.log": zipfile.ZIP_STORED,
        "logs/noise.bin": zipfile.ZIP_STORED,
        "logs/old.log.gz": zipfile.ZIP_STORED,
        "logs/tiny.txt": zipfile.ZIP_STORED,
        "logs/training.log": zipfile.ZIP_DEFLATED,
        "models/model.zip": zipfile.ZIP_STORED,
        "root_checkpoints/stats.pkl": zipfile.ZIP_DEFLATED,
        "root_checkpoints/weights.pth": zipfile.ZIP_STORED,
        "MANIFEST.json": zipfile.ZIP_DEFLATED,
    }


def test_a_multi_chunk_member_streams_into_one_valid_deflate_stream(tmp_path):
    ws = tmp_path / "ws"
    (ws / "logs").mkdir(parents=True)
    lines = b"".join(b"%d loss=%f\n" % (i, i / 7) for i in range(400_000))  # ~7 MiB
    (ws / "logs/long.log").write_bytes(lines)
    result = create_archive(ws, tmp_path / "out", reason="manual", compression_level=2)
    unzip_test(result.path)
    with zipfile.ZipFile(result.path) as z:
        assert z.read("logs/long.log") == lines
        assert z.getinfo("logs/long.log").compress_size < len(lines) / 3


def test_forced_zip64_archive_verifies_and_unzips(ws, tmp_path):
    result = create_archive(ws, tmp_path / "out", reason="manual", force_zip64=True)
    assert b"PK\x06\x06" in result.path.read_bytes()[-300:]
    unzip_test(result.path)
    assert verify_archive(result.path).ok


def test_names_in_the_same_second_get_a_suffix_and_nothing_is_overwritten(ws, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    squatter = out / "training_backup_20240105_093000_2.zip"
    with zipfile.ZipFile(squatter, "w") as z:
        z.writestr("theirs.txt", "someone else's archive")
    theirs = squatter.read_bytes()
    names = [create_archive(ws, out, reason="manual", now=NOW).name for _ in range(2)]
    assert names == ["training_backup_20240105_093000.zip", "training_backup_20240105_093000_3.zip"]
    assert squatter.read_bytes() == theirs
    assert [p.name for p in list_archive_files(out)] == [
        "training_backup_20240105_093000.zip",
        "training_backup_20240105_093000_2.zip",
        "training_backup_20240105_093000_3.zip",
    ]
    assert sorted(p.name for p in out.iterdir()) == sorted([*names, squatter.name, ".archive.lock"])


def test_daemon_dir_and_an_archive_folder_inside_logs_are_never_archived(ws):
    (ws / ".daemon").mkdir()
    (ws / ".daemon/events.sqlite3").write_bytes(b"x" * 100)
    inner = ws / "logs" / "backups"
    first = create_archive(ws, inner, reason="manual", now=NOW)
    second = create_archive(ws, inner, reason="manual", now=NOW)
    for result in (first, second):
        paths = {r.path for r in result.manifest.members}
        assert not any(p.startswith(("logs/backups", ".daemon")) for p in paths)
        assert "logs/training.log" in paths
        unzip_test(result.path)


def test_symlinks_are_never_followed_and_are_recorded(ws, tmp_path):
    secret = tmp_path / "outside.txt"
    secret.write_text("not workspace data")
    (tmp_path / "outside_dir").mkdir()
    (tmp_path / "outside_dir/f.log").write_text("outside")
    (ws / "logs/escape.log").symlink_to(secret)
    (ws / "logs/escape_dir").symlink_to(tmp_path / "outside_dir")
    (ws / "logs/inner.log").symlink_to(ws / "logs/training.log")
    (ws / "leak.pth").symlink_to(secret)
    result = create_archive(ws, tmp_path / "out", reason="manual")
    with zipfile.ZipFile(result.path) as z:
        names = set(z.namelist())
        assert not any(b"not workspace data" in z.read(n) for n in names)
    assert {"logs/escape.log", "logs/escape_dir/f.log", "logs/inner.log"}.isdisjoint(names)
    assert "root_checkpoints/leak.pth" not in names
    skipped = {s.path: (s.reason, s.detail) for s in result.manifest.skipped}
    assert skipped == {
        "logs/escape.log": ("symlink_outside_workspace", str(secret)),
        "logs/escape_dir": ("symlink_outside_workspace", str(tmp_path / "outside_dir")),
        "logs/inner.log": ("symlink", str(ws / "logs/training.log")),
        "root_checkpoints/leak.pth": ("symlink_outside_workspace", str(secret)),
    }
    unzip_test(result.path)


def test_a_fifo_is_recorded_not_read(ws, tmp_path):
    os.mkfifo(ws / "logs/pipe")
    result = create_archive(ws, tmp_path / "out", reason="manual")
    assert [(s.path, s.reason) for s in result.manifest.skipped] == [("logs/pipe", "not_regular")]


def test_bad_reason_or_level_is_refused_before_anything_is_written(ws, tmp_path):
    with pytest.raises(ValueError, match="reason"):
        create_archive(ws, tmp_path / "out", reason="because")
    with pytest.raises(ValueError, match="compression_level 10"):
        create_archive(ws, tmp_path / "out", reason="manual", compression_level=10)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("level", [0, 1, 2, 6, 9])
def test_every_zlib_style_level_makes_a_valid_archive(tmp_path, level):
    ws = tmp_path / "ws"
    (ws / "logs").mkdir(parents=True)
    (ws / "logs/a.log").write_bytes(b"step=1 loss=0.25\n" * 70_000)
    result = create_archive(ws, tmp_path / "out", reason="manual", compression_level=level)
    assert verify_archive(result.path).ok
    assert result.bytes < 200_000


def test_unwritable_archive_folder_is_a_clear_archive_error(ws, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ArchiveError, match=r"into .*sub failed: Not a directory"):
        create_archive(ws, blocker / "sub", reason="manual")


def test_a_missing_workspace_is_refused_without_creating_anything(tmp_path):
    with pytest.raises(ArchiveError, match="is not a folder"):
        create_archive(tmp_path / "typo", tmp_path / "typo" / "archives", reason="manual")
    assert not (tmp_path / "typo").exists()


def test_resolve_archive_takes_a_name_a_stem_or_a_path(ws, tmp_path):
    result = create_archive(ws, tmp_path / "out", reason="manual", now=NOW)
    folder = tmp_path / "out"
    assert resolve_archive(result.name, folder) == result.path
    assert resolve_archive(result.path.stem, folder) == result.path
    assert resolve_archive(str(result.path), tmp_path / "elsewhere") == result.path
    with pytest.raises(ArchiveNotFoundError, match=r"nope\.zip"):
        resolve_archive("nope.zip", folder)
