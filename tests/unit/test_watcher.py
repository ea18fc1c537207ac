"""Real watchdog observers on real folders: what reaches the queue, and what does not."""

from __future__ import annotations

import errno
import logging
import os
import queue
from collections.abc import Iterator
from pathlib import Path

import pytest
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from daemon import protocol
from daemon.eventlog.events import WatcherDegraded
from daemon.protocol import LockInfo
from daemon.watch.coalesce import Raw
from daemon.watch.observer import LockTouched, RescanWanted, Watcher
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
