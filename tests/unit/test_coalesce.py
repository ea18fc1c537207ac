"""Coalescing is pure: notifications in, file events out, with a fake filesystem."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from daemon.eventlog.events import FileCreated, FileDeleted, FileModified, FileMoved
from daemon.eventlog.fold import FileInfo
from daemon.watch.coalesce import Coalescer, Raw, area_of, settle

A = FileInfo(10, 1)
B = FileInfo(20, 2)


def fs(files: dict[str, FileInfo]):
    return files.get


def test_area_of() -> None:
    assert area_of("logs/a.log") == "logs"
    assert area_of("models/x/y.zip") == "models"
    assert area_of("logs") is None and area_of("config/c.json") is None
    assert area_of("logsx/a") is None


def test_thousands_of_appends_make_one_event_per_window() -> None:
    c = Coalescer(1.0)
    for i in range(5000):
        c.add(Raw("modified", "logs/training.log"), now=i / 10_000)  # 0.5 s of appends
    assert c.due(0.99) == []
    assert c.next_deadline() == 1.0
    due = c.due(1.0)
    assert len(due) == 1 and due[0].count == 5000
    events = settle(due, fs({"logs/training.log": B}), {"logs/training.log": A})
    assert events == [FileModified("logs/training.log", "logs", 20, 2, count=5000)]
    assert len(c) == 0 and c.next_deadline() is None


def test_settle_compares_with_what_is_known() -> None:
    c = Coalescer(0.0)
    for path in ("logs/new", "logs/same", "logs/gone", "logs/never"):
        c.add(Raw("modified", path), now=0)
    known = {"logs/same": A, "logs/gone": A}
    events = settle(c.due(0), fs({"logs/new": B, "logs/same": A}), known)
    assert events == [FileCreated("logs/new", "logs", 20, 2), FileDeleted("logs/gone", "logs")]


def test_rename_of_a_known_file_is_a_move() -> None:
    c = Coalescer(0.0)
    c.add(Raw("moved", "models/m.zip", "models/backups/m_1.zip"), now=0)
    events = settle(c.due(0), fs({"models/backups/m_1.zip": A}), {"models/m.zip": A})
    assert events == [
        FileMoved("models/m.zip", "models", "models/backups/m_1.zip", "models", 10, 1)
    ]


def test_atomic_save_through_a_temp_file_is_one_creation() -> None:
    c = Coalescer(0.0)
    c.add(Raw("created", "models/.m.zip.tmp"), now=0)
    c.add(Raw("modified", "models/.m.zip.tmp"), now=0)
    c.add(Raw("moved", "models/.m.zip.tmp", "models/m.zip"), now=0)
    events = settle(c.due(0), fs({"models/m.zip": B}), {})
    assert events == [FileCreated("models/m.zip", "models", 20, 2)]


def test_moves_out_of_the_areas_are_deletions_and_others_are_ignored() -> None:
    c = Coalescer(0.0)
    c.add(Raw("moved", "logs/a", "/elsewhere/a"), now=0)
    c.add(Raw("created", "config/config.json"), now=0)
    assert [p.path for p in c.drain()] == ["logs/a"]
    assert c.raw_count == 2


paths = st.sampled_from(["logs/a", "logs/b", "logs/sub/c", "models/m.zip"])
infos = st.none() | st.builds(FileInfo, st.integers(0, 3), st.integers(0, 3))


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(paths, st.builds(FileInfo, st.integers(0, 3), st.integers(0, 3))),
    st.lists(st.tuples(paths, infos), max_size=30),
    st.lists(st.tuples(paths, paths), max_size=3),
)
@example(  # two moves onto one destination: the first source must be settled too
    known={"logs/a": FileInfo(0, 0), "logs/b": FileInfo(0, 0), "logs/sub/c": FileInfo(0, 0)},
    changes=[],
    moves=[("logs/b", "logs/a"), ("logs/sub/c", "logs/a")],
)
def test_after_settling_known_equals_the_filesystem(known, changes, moves) -> None:
    """Whatever happened, folding the events over ``known`` gives the files as they are."""
    disk = dict(known)
    c = Coalescer(0.5)
    t = 0.0
    for path, info in changes:
        t += 0.1
        if info is None:
            disk.pop(path, None)
        else:
            disk[path] = info
        c.add(Raw("modified" if info else "deleted", path), now=t)
    for src, dest in moves:
        if src in disk and src != dest:
            disk[dest] = disk.pop(src)
            c.add(Raw("moved", src, dest), now=t)
    result = dict(known)
    for ev in settle(c.drain(), disk.get, known):
        if isinstance(ev, FileCreated | FileModified):
            result[ev.path] = FileInfo(ev.size, ev.mtime_ns)
        elif isinstance(ev, FileDeleted):
            result.pop(ev.path)
        elif isinstance(ev, FileMoved):
            result.pop(ev.path)
            result[ev.dest_path] = FileInfo(ev.size, ev.mtime_ns)
    assert result == disk
