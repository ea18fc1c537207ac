"""Open files and folder identities are pure decisions: a fake stat, a `now`, data out."""

from __future__ import annotations

import os
from pathlib import Path

from daemon.eventlog.events import FileCreated, FileModified
from daemon.eventlog.fold import FileInfo
from daemon.watch.areas import Rearm, identity, plan_rearm
from daemon.watch.coalesce import MAX_SUSPECTS, Coalescer, Raw, settle
from daemon.watch.growth import OpenFiles

LOG = "logs/training.log"


class Disk:
    """A fake filesystem whose files can grow, and which counts the stat calls."""

    def __init__(self) -> None:
        self.files: dict[str, FileInfo] = {}
        self.calls = 0

    def stat(self, path: str) -> FileInfo | None:
        self.calls += 1
        return self.files.get(path)

    def grow(self, path: str, size: int) -> None:
        self.files[path] = FileInfo(size, size)


def test_an_open_file_is_polled_once_per_interval_until_it_is_closed() -> None:
    disk, files = Disk(), OpenFiles(poll_s=1.0)
    disk.files = {LOG: FileInfo(10, 10)}
    files.opened(LOG, now=0.0)
    assert files.next_deadline() == 1.0
    assert files.poll(disk.stat, now=0.5) == [] and disk.calls == 0  # not due yet
    assert files.poll(disk.stat, now=1.0) == [LOG]  # first look: settle decides
    assert files.poll(disk.stat, now=2.0) == []  # unchanged
    disk.grow(LOG, 50)
    assert files.poll(disk.stat, now=3.0) == [LOG]
    assert files.next_deadline() == 4.0
    files.closed(LOG)
    assert len(files) == 0 and files.next_deadline() is None
    assert files.poll(disk.stat, now=10.0) == []


def test_opens_and_closes_are_counted_so_a_reader_does_not_hide_a_writer() -> None:
    files = OpenFiles()
    files.opened(LOG, now=0.0)  # the writer
    files.opened(LOG, now=0.1)  # a reader (tail, the archiver)
    files.closed(LOG)  # the reader's close-nowrite
    assert LOG in files
    files.closed(LOG)
    assert LOG not in files
    files.closed(LOG)  # a close without a seen open (opened before the daemon ran)
    assert len(files) == 0


def test_an_open_file_follows_its_renames_and_goes_with_its_deletion() -> None:
    files = OpenFiles()
    files.opened(LOG, now=0.0)
    files.moved(LOG, "logs/training.log.1")
    assert LOG not in files and "logs/training.log.1" in files
    files.deleted("logs/training.log.1")
    assert len(files) == 0


def test_a_vanished_file_is_forgotten_at_the_next_poll() -> None:
    disk, files = Disk(), OpenFiles(poll_s=1.0)
    files.opened("logs/gone.log", now=0.0)
    assert files.poll(disk.stat, now=1.0) == []
    assert len(files) == 0


def test_a_suspect_is_polled_until_it_has_been_quiet_long_enough() -> None:
    disk, files = Disk(), OpenFiles(poll_s=1.0, suspect_idle_s=10.0)
    disk.files = {LOG: FileInfo(10, 10)}
    files.suspect([LOG], now=0.0)
    assert files.poll(disk.stat, now=1.0) == [LOG]
    disk.grow(LOG, 20)
    assert files.poll(disk.stat, now=5.0) == [LOG]  # a change keeps it for 10 s more
    assert files.poll(disk.stat, now=14.0) == [] and LOG in files
    assert files.poll(disk.stat, now=15.0) == [] and LOG not in files


def test_growth_of_an_open_file_becomes_a_file_modified_through_the_coalescer() -> None:
    disk, c = Disk(), Coalescer(1.0, OpenFiles(poll_s=1.0))
    disk.files = {LOG: FileInfo(10, 10)}
    c.add(Raw("opened", LOG), now=0.0)
    assert len(c) == 0, "an open alone settles nothing"
    assert c.next_deadline() == 1.0  # the poll
    known = {LOG: FileInfo(10, 10)}
    c.poll(disk.stat, now=1.0)
    assert settle(c.due(1.0), disk.stat, known) == []  # first look, nothing new
    for t in (2.0, 3.0):
        disk.grow(LOG, int(t * 100))
        c.poll(disk.stat, now=t)
        due = c.due(t)  # due at once: the poll interval already coalesced the writes
        assert settle(due, disk.stat, known) == [
            FileModified(LOG, "logs", int(t * 100), int(t * 100))
        ]
        known[LOG] = disk.files[LOG]
    c.add(Raw("closed", LOG), now=3.5)
    assert len(c.open_files) == 0
    assert c.due(4.5)[0].path == LOG  # the close-write itself is settled as before


def test_opens_outside_the_areas_are_not_tracked() -> None:
    c = Coalescer(1.0)
    c.add(Raw("opened", "config/config.json"), now=0.0)
    c.add(Raw("released", "logs/a.log"), now=0.0)
    assert len(c.open_files) == 0 and len(c) == 0


def test_a_rescan_makes_suspects_only_of_modified_files_and_only_so_many() -> None:
    c = Coalescer(1.0)
    events = [FileCreated("logs/new.log", "logs", 1, 1)] + [
        FileModified(f"logs/f{i}.log", "logs", 2, 2) for i in range(MAX_SUSPECTS + 10)
    ]
    c.suspect(events, now=0.0)
    assert len(c.open_files) == MAX_SUSPECTS
    assert "logs/new.log" not in c.open_files and "logs/f0.log" in c.open_files


def test_plan_rearm_by_identity() -> None:
    a, b = (1, 100), (1, 200)
    assert plan_rearm({"logs": a, "models": b}, {"logs": a, "models": b}) == []
    assert plan_rearm({"logs": a}, {"logs": (1, 300)}) == [Rearm("logs", "replaced", a, (1, 300))]
    assert plan_rearm({"logs": a}, {"logs": (2, 100)}) == [Rearm("logs", "replaced", a, (2, 100))]
    assert plan_rearm({"logs": a}, {"logs": None}) == [Rearm("logs", "missing", a, None)]
    assert plan_rearm({"logs": None}, {"logs": None}) == []  # still missing: said once
    assert plan_rearm({"logs": None}, {"logs": b}) == [Rearm("logs", "appeared", None, b)]
    assert plan_rearm({"logs": a}, {"logs": a}, {"logs"}) == [Rearm("logs", "watch_lost", a, a)]


def test_identity_is_that_of_a_folder_never_of_a_file_or_symlink(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    st = os.stat(tmp_path / "d")
    assert identity(tmp_path / "d") == (st.st_dev, st.st_ino)
    (tmp_path / "f").write_text("")
    (tmp_path / "l").symlink_to(tmp_path / "d")
    assert identity(tmp_path / "f") is None and identity(tmp_path / "l") is None
    assert identity(tmp_path / "none") is None
