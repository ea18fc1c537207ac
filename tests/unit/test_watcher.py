"""Real watchdog observers on real folders: what reaches the queue, and what does not."""

from __future__ import annotations

import errno
import logging
import os
import queue
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from daemon import protocol
from daemon.eventlog.events import WatcherDegraded, WatchRearmed
from daemon.protocol import LockInfo
from daemon.watch.coalesce import Raw
from daemon.watch.observer import AreaChanged, LockTouched, RescanWanted, Watcher
from tests.daemon_helpers import wait_until


class Sink:
    def __init__(self) -> None:
        self.q: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.seen: list[object] = []

    def __call__(self, item: object) -> None:
        self.q.put(item)

    def until(self, wanted: object, timeout: float = 10.0) -> list[object]:
        """Everything received up to and including ``wanted`` (queue.Empty at the deadline).

        An item received earlier (watches on different folders do not keep order
        between them) counts too."""
        if wanted in self.seen:
            return []
        got = []
        while True:
            item = self.q.get(timeout=timeout)
            got.append(item)
            self.seen.append(item)
            if item == wanted:
                return got


@pytest.fixture
def sink() -> Sink:
    return Sink()


@pytest.fixture
def watcher(tmp_path: Path, sink: Sink) -> Iterator[Watcher]:
    with Watcher(tmp_path, tmp_path / "training.lock", sink) as w:
        yield w


def test_file_notifications_are_translated(tmp_path: Path, sink: Sink, watcher: Watcher) -> None:
    assert watcher.mode == "inotify" and watcher.alive()
    (tmp_path / "logs/new/deeper").mkdir(parents=True)  # new subfolders are watched too
    (tmp_path / "logs/new/deeper/a.log").write_text("x")
    sink.until(Raw("created", "logs/new/deeper/a.log"))
    os.rename(tmp_path / "logs/new/deeper/a.log", tmp_path / "logs/a.log")
    sink.until(Raw("moved", "logs/new/deeper/a.log", "logs/a.log"))
    os.rename(tmp_path / "logs/a.log", tmp_path / "models/a.log")  # across watches:
    sink.until(Raw("deleted", "logs/a.log"))  # one side each
    sink.until(Raw("created", "models/a.log"))
    os.rename(tmp_path / "models/a.log", tmp_path / "outside.log")
    sink.until(Raw("deleted", "models/a.log"))
    (tmp_path / "config").mkdir()
    (tmp_path / "config/c.json").write_text("{}")
    (tmp_path / "logs/marker").write_text("")
    got = sink.until(Raw("created", "logs/marker"))
    assert not any(isinstance(i, Raw) and i.path.startswith("config") for i in got)


def test_a_folder_leaving_the_tree_asks_for_a_rescan(
    tmp_path: Path, sink: Sink, watcher: Watcher
) -> None:
    (tmp_path / "logs/run1").mkdir()
    (tmp_path / "logs/run1/x").write_text("x")
    sink.until(Raw("created", "logs/run1/x"))
    os.rename(tmp_path / "logs/run1", tmp_path / "run1")
    sink.until(RescanWanted("dir_deleted"))


def test_lock_writes_wake_but_probes_do_not(tmp_path: Path, sink: Sink) -> None:
    path = tmp_path / "training.lock"
    info = LockInfo("s", 1, "h", "b", "t", archive=True, state="starting")
    lock = protocol.TrainerLock(path)
    lock.acquire(info)  # before the watcher starts: its own writes cannot be in the way
    with Watcher(tmp_path, path, sink):
        for _ in range(50):  # what the daemon does every stale check
            protocol.lock_is_held(path)
            protocol.read_lock(path)
        (tmp_path / "logs/sentinel").write_text("")
        got = sink.until(Raw("created", "logs/sentinel"))
        assert LockTouched() not in got, "a probe woke the daemon"
        lock.write(info.with_state("running"))  # a trainer's rewrite is worth a look
        assert sink.until(LockTouched())
        sink.seen.clear()
        lock.release()  # and so is a writer closing it (or dying)
        assert sink.until(LockTouched())


def test_watch_limit_falls_back_to_polling(tmp_path: Path, sink: Sink) -> None:
    def exhausted() -> BaseObserver:
        class NoWatches(type(Observer())):  # type: ignore[misc]
            def start(self) -> None:
                raise OSError(errno.ENOSPC, "inotify watch limit reached")

        return NoWatches()

    with Watcher(
        tmp_path,
        tmp_path / "training.lock",
        sink,
        observer_factory=exhausted,
        polling_factory=lambda: PollingObserver(timeout=0.1),
    ) as w:
        assert w.mode == "polling" and w.alive()
        degraded = sink.q.get(timeout=1)
        assert isinstance(degraded, WatcherDegraded) and degraded.fallback == "polling"
        (tmp_path / "logs/p.log").write_text("polled")
        sink.until(Raw("created", "logs/p.log"))


def test_without_fallback_the_watch_limit_is_an_error(tmp_path: Path, sink: Sink) -> None:
    def exhausted() -> BaseObserver:
        raise OSError(errno.ENOSPC, "inotify watch limit reached")

    w = Watcher(tmp_path, tmp_path / "l", sink, polling_fallback=False, observer_factory=exhausted)
    with pytest.raises(OSError, match="watch limit"):
        w.start()


def test_overflow_asks_for_a_rescan(sink: Sink, watcher: Watcher) -> None:
    logging.getLogger("watchdog.observers.inotify_c").warning(
        "Inotify queue overflowed; filesystem events were lost"
    )
    sink.until(RescanWanted("overflow"))


def test_a_raising_sink_does_not_kill_the_observer(tmp_path: Path) -> None:
    calls: list[object] = []

    def flaky(item: object) -> None:
        calls.append(item)
        if len(calls) <= 2:
            raise RuntimeError("queue full")

    with Watcher(tmp_path, tmp_path / "training.lock", flaky) as w:
        (tmp_path / "logs/a").write_text("a")
        (tmp_path / "logs/b").write_text("b")
        wait_until(lambda: Raw("created", "logs/b") in calls, 10, "events after the errors")
        assert w.alive()
    assert RescanWanted("handler_error") in calls


def test_writes_to_an_open_file_wake_nothing_but_its_open_and_close(
    tmp_path: Path, sink: Sink, watcher: Watcher
) -> None:
    path = tmp_path / "logs/training.log"
    with path.open("a", buffering=1) as f:  # line-buffered: one write(2) per line
        for i in range(2000):
            f.write(f"step {i}\n")
        (tmp_path / "logs/sentinel").write_text("")
        got = sink.until(Raw("created", "logs/sentinel"))
    assert Raw("opened", "logs/training.log") in got
    assert not [i for i in got if isinstance(i, Raw) and i.kind == "modified"], "one per write"
    sink.until(Raw("closed", "logs/training.log"))
    path.read_text()  # a reader's open and close-nowrite
    sink.until(Raw("released", "logs/training.log"))


def test_the_polling_fallback_still_reports_modifications(tmp_path: Path, sink: Sink) -> None:
    def exhausted() -> BaseObserver:
        raise OSError(errno.ENOSPC, "inotify watch limit reached")

    (tmp_path / "logs").mkdir()
    (tmp_path / "logs/p.log").write_text("one\n")
    with Watcher(
        tmp_path,
        tmp_path / "training.lock",
        sink,
        observer_factory=exhausted,
        polling_factory=lambda: PollingObserver(timeout=0.1),
    ) as w:
        assert w.mode == "polling"
        with (tmp_path / "logs/p.log").open("a") as f:
            f.write("two\n")
        sink.until(Raw("modified", "logs/p.log"))


def _inode(path: Path) -> int:
    return os.stat(path).st_ino


def test_an_area_moved_away_and_made_again_is_watched_again(
    tmp_path: Path, sink: Sink, watcher: Watcher
) -> None:
    old_inode = _inode(tmp_path / "logs")
    os.rename(tmp_path / "logs", tmp_path / "logs.old")
    (tmp_path / "logs").mkdir()
    sink.until(AreaChanged("logs", "moved"))
    sink.until(AreaChanged("logs", "created"))
    assert watcher.alive()
    new_inode = _inode(tmp_path / "logs")
    assert watcher.rearm("created") == [
        WatchRearmed("logs", "replaced", "created", old_inode, new_inode, missing=False)
    ]
    assert watcher.rearm("tick") == []  # nothing changed since
    assert watcher.areas()["logs"] == new_inode and watcher.missing == ()
    (tmp_path / "logs.old/stale.log").write_text("not watched any more")
    (tmp_path / "logs/sub").mkdir()
    (tmp_path / "logs/sub/fresh.log").write_text("watched")
    got = sink.until(Raw("created", "logs/sub/fresh.log"))
    assert Raw("created", "logs/stale.log") not in got + sink.seen


def test_a_deleted_area_is_missing_until_it_is_made_again(
    tmp_path: Path, sink: Sink, watcher: Watcher
) -> None:
    (tmp_path / "models/checkpoints").mkdir()
    old_inode = _inode(tmp_path / "models")
    shutil.rmtree(tmp_path / "models")
    sink.until(AreaChanged("models", "deleted"))
    assert watcher.alive(), "a watch that went with its folder is re-armed, not a dead watcher"
    assert watcher.rearm("deleted") == [
        WatchRearmed("models", "missing", "deleted", old_inode, None, missing=True)
    ]
    assert watcher.missing == ("models",) and watcher.areas()["models"] is None
    assert watcher.rearm("tick") == []
    (tmp_path / "models").mkdir()
    sink.until(AreaChanged("models", "created"))
    new_inode = _inode(tmp_path / "models")
    assert watcher.rearm("created") == [
        WatchRearmed("models", "appeared", "created", None, new_inode, missing=False)
    ]
    assert not watcher.missing
    (tmp_path / "models/m.zip").write_bytes(b"PK")
    sink.until(Raw("created", "models/m.zip"))


def test_the_periodic_look_finds_a_folder_mounted_over_or_swapped_unseen(
    tmp_path: Path, sink: Sink, watcher: Watcher
) -> None:
    """No notification at all (a swap done while events were lost): the tick still finds it."""
    os.rename(tmp_path / "logs", tmp_path / "logs.old")
    (tmp_path / "logs").mkdir()
    sink.until(AreaChanged("logs", "created"))
    sink.q = queue.SimpleQueue()  # as if those notifications never came
    [change] = watcher.rearm("tick")
    assert change.area == "logs" and change.reason == "replaced" and change.trigger == "tick"


def test_a_tmpfs_mounted_over_an_area_is_watched_after_the_next_look(
    tmp_path: Path, sink: Sink, watcher: Watcher
) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    logs = tmp_path / "logs"
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(logs)]).returncode:
        pytest.skip("mount -t tmpfs is not allowed here")
    try:
        [change] = watcher.rearm("tick")  # a mount sends no notification: only the look sees it
        assert change.area == "logs" and change.reason == "replaced"
        assert change.new_inode == os.stat(logs).st_ino
        (logs / "on_tmpfs.log").write_text("x")
        sink.until(Raw("created", "logs/on_tmpfs.log"))
    finally:
        watcher.stop()  # release the watch before unmounting
        subprocess.run(["umount", str(logs)], check=True)


def test_a_new_folder_that_cannot_be_watched_is_said_once_and_not_retried(
    tmp_path: Path, sink: Sink
) -> None:
    class WatchLimit(type(Observer())):  # type: ignore[misc]
        full = False

        def schedule(self, *args: object, **kwargs: object) -> object:
            if self.full:
                raise OSError(errno.ENOSPC, "inotify watch limit reached")
            return super().schedule(*args, **kwargs)

    observers: list[WatchLimit] = []

    def factory() -> BaseObserver:
        observers.append(WatchLimit())
        return observers[-1]

    with Watcher(tmp_path, tmp_path / "training.lock", sink, observer_factory=factory) as w:
        observers[-1].full = True
        os.rename(tmp_path / "logs", tmp_path / "logs.old")
        (tmp_path / "logs").mkdir()
        sink.until(AreaChanged("logs", "created"))
        [change] = w.rearm("created")
        assert change.reason == "replaced" and change.new_inode is None and not change.missing
        assert "watch limit" in change.error
        assert w.missing == ("logs",) and w.areas()["logs"] is None and w.alive()
        assert w.rearm("tick") == [], "the same folder is not tried (and said) every tick"
        observers[-1].full = False
        os.rename(tmp_path / "logs", tmp_path / "logs.old2")  # kept: its inode is not reused
        (tmp_path / "logs").mkdir()  # another folder: tried again
        [change] = w.rearm("tick")
        assert change.new_inode == os.stat(tmp_path / "logs").st_ino and not change.error
        assert not w.missing
