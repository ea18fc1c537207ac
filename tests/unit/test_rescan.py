"""Rescan: a thin snapshot of real folders and a pure diff against the state."""

from __future__ import annotations

import os
from pathlib import Path

from daemon.eventlog.events import FileCreated, FileDeleted, FileModified, Rescanned
from daemon.eventlog.fold import FileInfo
from daemon.watch.rescan import diff, snapshot, stat_file


def test_snapshot_lists_regular_files_of_both_areas(tmp_path: Path) -> None:
    (tmp_path / "logs/trades/deep").mkdir(parents=True)
    (tmp_path / "models").mkdir()
    (tmp_path / "config").mkdir()
    (tmp_path / "logs/training.log").write_text("abc")
    (tmp_path / "logs/trades/deep/t.jsonl").write_text("{}")
    (tmp_path / "models/m.zip").write_bytes(b"z" * 5)
    (tmp_path / "config/config.json").write_text("{}")
    os.symlink(tmp_path / "config/config.json", tmp_path / "logs/link.json")
    os.symlink(tmp_path / "config", tmp_path / "models/linked_dir")
    snap = snapshot(tmp_path)
    assert set(snap) == {"logs/training.log", "logs/trades/deep/t.jsonl", "models/m.zip"}
    st = (tmp_path / "models/m.zip").stat()
    assert snap["models/m.zip"] == FileInfo(5, st.st_mtime_ns)
    assert stat_file(tmp_path, "models/m.zip") == snap["models/m.zip"]
    assert stat_file(tmp_path, "logs/link.json") is None
    assert stat_file(tmp_path, "logs/missing") is None


def test_snapshot_of_a_missing_area_is_empty(tmp_path: Path) -> None:
    assert snapshot(tmp_path) == {}


def test_snapshot_uses_the_scandir_it_is_given(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs/a").write_text("x")
    seen: list[str] = []

    def spy(path: str):
        seen.append(path)
        return os.scandir(path)

    assert set(snapshot(tmp_path, scandir=spy)) == {"logs/a"}
    assert seen == [str(tmp_path / "logs"), str(tmp_path / "models")]


def test_diff_emits_the_difference_then_rescanned() -> None:
    known = {
        "logs/same": FileInfo(1, 1),
        "logs/changed": FileInfo(1, 1),
        "models/gone": FileInfo(1, 1),
    }
    current = {
        "logs/same": FileInfo(1, 1),
        "logs/changed": FileInfo(2, 2),
        "logs/new": FileInfo(3, 3),
    }
    events = diff(current, known, "overflow")
    assert events == [
        FileModified("logs/changed", "logs", 2, 2),
        FileCreated("logs/new", "logs", 3, 3),
        FileDeleted("models/gone", "models"),
        Rescanned("overflow", files=3, created=1, modified=1, deleted=1),
    ]


def test_diff_of_equal_trees_is_only_rescanned() -> None:
    tree = {"logs/a": FileInfo(1, 1)}
    assert diff(tree, tree, "schedule") == [Rescanned("schedule", files=1)]
