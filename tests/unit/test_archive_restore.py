"""restore_archive: exact extraction, and refusal of unsafe archives before writing anything."""

from __future__ import annotations

import contextlib
import json
import stat
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.archive import create_archive, restore_archive
from daemon.errors import ArchiveError, UnsafeArchiveError
from tests.archive_helpers import make_workspace, tree_digest, unzip_test, unzip_test_all


@pytest.fixture(autouse=True)
def _every_archive_passes_unzip_t(tmp_path):
    yield
    unzip_test_all(tmp_path)


def test_restore_extracts_every_member_exactly(tmp_path):
    ws = make_workspace(tmp_path / "ws", text_mb=0.5, binary_mb=0.5, seed=21)
    (ws / "logs/run.sh").write_text("#!/bin/sh\n")
    (ws / "logs/run.sh").chmod(0o750)
    result = create_archive(ws, tmp_path / "out", reason="manual")
    target = tmp_path / "restored" / "deep"
    done: list[int] = []
    count = restore_archive(result.path, target, progress=lambda d, t: done.append(d))
    assert count == len(result.manifest.members) + 1  # and MANIFEST.json
    assert done and done[-1] == sum(m.size for m in result.manifest.members) + len(
        (target / "MANIFEST.json").read_bytes()
    )
    for rec in result.manifest.members:
        restored = target / rec.path
        src = ws / rec.path.replace("root_checkpoints/", "")
        assert restored.read_bytes() == src.read_bytes()
        assert restored.stat().st_mtime_ns == rec.mtime_ns == src.stat().st_mtime_ns
    assert stat.S_IMODE((target / "logs/run.sh").stat().st_mode) == 0o750
    assert json.loads((target / "MANIFEST.json").read_text())["archive_id"] == (
        result.manifest.archive_id
    )


def test_restore_needs_an_empty_or_new_target(tmp_path):
    ws = make_workspace(tmp_path / "ws", text_mb=0.1, binary_mb=0.1, seed=22)
    result = create_archive(ws, tmp_path / "out", reason="manual")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(ArchiveError, match="empty folder"):
        restore_archive(result.path, busy)
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]
    (tmp_path / "afile").write_text("")
    with pytest.raises(ArchiveError, match="empty folder"):
        restore_archive(result.path, tmp_path / "afile")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert restore_archive(result.path, empty) == len(result.manifest.members) + 1


def _evil_zip(path: Path, evil: list[zipfile.ZipInfo | str]) -> None:
    """A zip with a benign member, the evil ones, and a manifest vouching for all of them."""
    members = []
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("logs/ok.txt", b"fine")
        for item in evil:
            info = item if isinstance(item, zipfile.ZipInfo) else zipfile.ZipInfo(item)
            z.writestr(info, b"/etc/passwd" if info.external_attr else b"evil")
            members.append({"path": info.filename, "size": 4, "sha256": "0" * 64, "mtime": 0})
        manifest = {
            "format_version": 1,
            "archive_id": "0" * 32,
            "reason": "manual",
            "session_id": None,
            "created_at": "2024-01-05T09:30:00+00:00",
            "members": members,
        }
        z.writestr("MANIFEST.json", json.dumps(manifest))


def _symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def _fifo(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFIFO | 0o644) << 16
    return info


@pytest.mark.parametrize(
    ("evil", "message"),
    [
        (["/tmp/evil.txt"], "absolute path"),
        (["../evil.txt"], r"'\.\.' component"),
        (["logs/../../evil.txt"], r"'\.\.' component"),
        (["C:/evil.txt"], "absolute path"),
        (["logs\\..\\..\\evil.txt"], "backslash"),
        (["logs//evil.txt"], "empty or '.' component"),
        ([_symlink("logs/link")], "symlink"),
        ([_symlink("logs/dir/")], "symlink"),
        ([_fifo("logs/pipe")], "special file"),
        (["logs/ok.txt"], "appears twice"),
        (["logs/ok.txt/inner"], "both a file and a folder"),
    ],
    ids=[
        "absolute",
        "dotdot",
        "nested-dotdot",
        "drive",
        "backslash",
        "empty-part",
        "symlink",
        "symlink-dir",
        "fifo",
        "duplicate",
        "file-dir-clash",
    ],
)
def test_unsafe_archives_are_refused_before_anything_is_written(tmp_path, evil, message):
    bad = tmp_path / "evil.zip"
    duplicate = message == "appears twice"
    with pytest.warns(UserWarning, match="Duplicate") if duplicate else contextlib.nullcontext():
        _evil_zip(bad, evil)
    before = tree_digest(tmp_path)
    target = tmp_path / "restore_here"
    with pytest.raises(UnsafeArchiveError, match=message):
        restore_archive(bad, target)
    assert not target.exists()
    assert tree_digest(tmp_path) == before
    assert not Path("/tmp/evil.txt").exists()


def test_a_member_failing_its_sha256_stops_the_restore_and_is_removed(tmp_path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("logs/a.txt", b"content")
        manifest = {
            "format_version": 1,
            "archive_id": "0" * 32,
            "reason": "manual",
            "session_id": None,
            "created_at": "2024-01-05T09:30:00+00:00",
            "members": [{"path": "logs/a.txt", "size": 7, "sha256": "1" * 64, "mtime": 0}],
        }
        z.writestr("MANIFEST.json", json.dumps(manifest))
    target = tmp_path / "t"
    with pytest.raises(ArchiveError, match=r"member logs/a\.txt is corrupt: sha256"):
        restore_archive(bad, target)
    assert not (target / "logs/a.txt").exists()


def test_a_non_zip_is_a_clear_error(tmp_path):
    (tmp_path / "x.zip").write_bytes(b"not a zip at all" * 10)
    with pytest.raises(ArchiveError, match="not a readable zip"):
        restore_archive(tmp_path / "x.zip", tmp_path / "t")
    assert not (tmp_path / "t").exists()


_NAME = st.text(alphabet=st.sampled_from("abcXYZ019_-. éß漢"), min_size=1, max_size=12).filter(
    lambda s: s not in (".", "..") and not s.startswith(".")
)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    files=st.dictionaries(
        st.lists(_NAME, min_size=1, max_size=3).map("/".join),
        st.binary(max_size=3000) | st.just(b"log line\n" * 5000),
        min_size=1,
        max_size=8,
    )
)
def test_archive_then_restore_round_trips_any_tree(tmp_path_factory, files):
    root = tmp_path_factory.mktemp("rt")
    ws = root / "ws"
    written = {}
    for rel, data in files.items():
        path = ws / "logs" / rel
        if any(p.is_file() for p in path.parents) or path.is_dir():
            continue  # a name already used as a file or folder
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written[f"logs/{rel}"] = data
    result = create_archive(ws, root / "out", reason="manual")
    unzip_test(result.path)
    assert restore_archive(result.path, root / "back") == len(written) + 1
    assert {p: (root / "back" / p).read_bytes() for p in written} == written
