"""A shared archive folder (DESIGN.md, "Identity"), and archives named in the future ("Rotation").

Real daemons as subprocesses, real lock-file sessions (``FakeTrainer`` drives the
protocol as the trainer does; the future-dated case runs the real trainer), real
zips. The original bug: a second workspace's daemon, started on a folder that
already held the first one's archives, adopted them at start-up and its rotation
deleted them, the newest verified one included.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from daemon import archive as engine
from daemon.eventlog.fold import State, fold
from tests.archive_helpers import unzip_test
from tests.daemon_helpers import (
    PYTHON,
    REPO,
    DaemonProcess,
    FakeTrainer,
    NotifySocket,
    make_daemon_workspace,
    read_events,
    wait_until,
    workspace_id,
)
from tests.e2e_helpers import Harness, finished, make_e2e_workspace, session_of, wait_event

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

KEEP = 2


def cli(ws: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "daemon", *args, "--workspace", str(ws)],
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def names(ws: Path, type_: str) -> list[str]:
    return [e.data["name"] for e in read_events(ws, type_) if "name" in e.data]


def ids(ws: Path) -> set[str]:
    return {e.data["archive_id"] for e in read_events(ws, "ArchiveCompleted")}


def names_made(ws: Path) -> set[str]:
    return set(names(ws, "ArchiveCompleted"))


def archive_id(path: Path) -> str:
    return engine.read_manifest(path).archive_id


def owner(path: Path) -> str | None:
    """The workspace id the archive's manifest names; None without one (or without a manifest)."""
    return engine.claimed_workspace_id(path)


def on_disk(folder: Path) -> dict[str, str | None]:
    return {p.name: owner(p) for p in engine.list_archive_files(folder)}


class Workspaces:
    """Two workspaces whose config points ``archive_dir`` at one shared folder."""

    def __init__(self, root: Path) -> None:
        self.shared = root / "shared-archives"
        self.shared.mkdir()
        self.ws = {
            key: make_daemon_workspace(root / key, archive_dir=str(self.shared), keep_last=KEEP)
            for key in ("a", "b")
        }
        self.daemons: dict[str, DaemonProcess] = {}
        self.sockets: list[NotifySocket] = []

    def start(self, key: str) -> DaemonProcess:
        notify = NotifySocket(self.ws[key].parent, abstract=True)
        notify.drain_in_background()
        self.sockets.append(notify)
        daemon = DaemonProcess(self.ws[key], notify, log_name=f"{key}.out")
        self.daemons[key] = daemon
        daemon.wait_ready(60)
        return daemon

    def session(self, key: str) -> str:
        """One whole session: acknowledged (archived and prepared), logs written, stopped,
        its post_training archive recorded and the rotation after it done."""
        ws = self.ws[key]
        trainer = FakeTrainer(ws)
        ack = trainer.start(ack_timeout_s=60)
        assert ack is not None and ack.ready, f"{key}: the daemon did not acknowledge"
        trainer.write_logs(2)
        trainer.stop()
        daemon = self.daemons[key]
        done = daemon.wait_event(
            "ArchiveCompleted", 60, session_id=trainer.session_id, reason="post_training"
        )
        wait_until(lambda: self.settled(key), 60, f"{key}: rotation down to {KEEP}")
        return str(done.data["name"])

    def settled(self, key: str) -> bool:
        wid = workspace_id(self.ws[key])
        return sum(o == wid for o in on_disk(self.shared).values()) <= KEEP

    def close(self) -> None:
        for d in self.daemons.values():
            d.stop()
        for s in self.sockets:
            s.close()


@pytest.fixture
def two(tmp_path: Path) -> Iterator[Workspaces]:
    w = Workspaces(tmp_path)
    yield w
    w.close()


def test_two_daemons_sharing_an_archive_folder_never_touch_each_others_archives(
    two: Workspaces,
) -> None:
    a, b = two.ws["a"], two.ws["b"]
    two.start("a")
    finals_a = [two.session("a") for _ in range(3)]
    id_a = workspace_id(a)
    before_b = on_disk(two.shared)
    assert len(before_b) == KEEP and set(before_b.values()) == {id_a}
    assert finals_a[-1] in before_b

    two.start("b")  # the original bug: this start-up adopted a's archives, rotation deleted them
    id_b = workspace_id(b)
    assert id_a != id_b
    assert on_disk(two.shared) == before_b
    for ev in read_events(b):
        assert ev.data.get("name") not in before_b, f"b recorded a's archive: {ev}"

    finals_b = [two.session("b") for _ in range(3)]
    finals_a.append(two.session("a"))
    finals_b.append(two.session("b"))

    # Names are no identity (a name freed by rotation is taken again within the same
    # second, by either workspace): archives are compared by their archive ids.
    made = {key: ids(ws) for key, ws in two.ws.items()}
    assert not made["a"] & made["b"]  # neither recorded (adopted) an archive of the other
    assert all(len(names(ws, "ArchivePruned")) > 0 for ws in two.ws.values())  # rotation ran
    now = on_disk(two.shared)
    for key, wid in (("a", id_a), ("b", id_b)):
        held = fold(State(), read_events(two.ws[key])).archives
        mine = {n: archive_id(two.shared / n) for n, o in now.items() if o == wid}
        assert len(mine) == KEEP
        # what its log says it holds is exactly what is there: nobody else deleted any of it
        assert {n: a.archive_id for n, a in held.items()} == mine
        assert set(mine.values()) <= made[key]
        for type_ in ("ArchiveVerified", "ArchivePinned", "ArchiveUnpinned", "ArchivePruned"):
            for ev in read_events(two.ws[key], type_):  # each acted on its own archives only
                assert ev.data["name"] in names_made(two.ws[key]), (key, ev)
    assert finals_a[-1] in now and finals_b[-1] in now  # each one's newest verified survives
    for path in engine.list_archive_files(two.shared):
        unzip_test(path)

    for key, wid in (("a", id_a), ("b", id_b)):
        listed = json.loads(cli(two.ws[key], "list", "--json").stdout)
        assert {e["name"] for e in listed} == set(now)
        for e in listed:
            assert e["foreign"] is (now[e["name"]] != wid), e
            assert e["workspace_id"] == now[e["name"]]
            if e["foreign"]:
                assert e["verified"] is False and e["pinned"] is False
        human = cli(two.ws[key], "list").stdout
        foreign_lines = [line for line in human.splitlines() if line.endswith("foreign")]
        assert len(foreign_lines) == KEEP


def test_pin_verify_and_prune_of_another_workspaces_archive(two: Workspaces) -> None:
    a, b = two.ws["a"], two.ws["b"]
    two.start("a")
    theirs = two.session("a")
    two.daemons["a"].terminate()
    id_b = workspace_id(b)
    mine = engine.create_archive(b, two.shared, reason="manual", workspace_id=id_b).path.name
    b_log = b / ".daemon/events.sqlite3"
    assert not b_log.exists()  # b's daemon never ran: only its identity exists

    for verb in ("pin", "unpin"):
        done = cli(b, verb, theirs)
        assert done.returncode == 2, done
        assert "foreign archive" in done.stderr and len(done.stderr.splitlines()) == 1
        assert "Traceback" not in done.stderr
    assert not b_log.exists()  # refused: nothing recorded, nothing made

    verified = cli(b, "verify", theirs, "--json")
    assert verified.returncode == 0 and json.loads(verified.stdout)[0]["ok"]
    assert not b_log.exists()  # verified, but nothing recorded in b's log

    for _ in range(4):  # more of b's own than keep_last: b's prune has work to do
        engine.create_archive(b, two.shared, reason="manual", workspace_id=id_b)
    pruned = json.loads(cli(b, "prune", "--json").stdout)
    assert theirs not in {d["name"] for d in pruned}
    assert (two.shared / theirs).is_file()
    assert mine in {d["name"] for d in pruned if d["delete"]} or (two.shared / mine).is_file()
    assert sum(o == id_b for o in on_disk(two.shared).values()) == KEEP
    assert theirs in names(a, "ArchiveCompleted") and theirs not in names(a, "ArchivePruned")


def test_a_zip_with_no_manifest_is_foreign_listed_restorable_and_said_unchecked(
    two: Workspaces, tmp_path: Path
) -> None:
    a = two.ws["a"]
    two.start("a")
    two.session("a")
    for name in ("training_backup_20200101_000000.zip", "holiday-photos.zip"):
        with zipfile.ZipFile(two.shared / name, "w") as z:
            z.writestr("notes/readme.txt", "nobody's archive\n")
    two.session("a")  # rotation ran again: the foreign zips stay
    listed = {e["name"]: e for e in json.loads(cli(a, "list", "--json").stdout)}
    for name in ("training_backup_20200101_000000.zip", "holiday-photos.zip"):
        assert (two.shared / name).is_file()
        assert listed[name]["foreign"] is True and listed[name]["reason"] is None
    assert sum(not e["foreign"] for e in listed.values()) == KEEP
    assert "training_backup_20200101_000000.zip" not in names(a, "ArchiveCompleted")

    out = tmp_path / "restored"
    done = cli(a, "restore", "holiday-photos.zip", "--to", str(out))
    assert done.returncode == 0, done
    assert "no MANIFEST.json: nothing could be checked" in done.stderr
    assert (out / "notes/readme.txt").read_text() == "nobody's archive\n"

    evil = two.shared / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../escape.txt", "out\n")
    refused = cli(a, "restore", "evil.zip", "--to", str(tmp_path / "evil-out"))
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "evil-out").exists()


# --- archives from the future --------------------------------------------------------

FUTURE = datetime(2031, 6, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(make_e2e_workspace(tmp_path / "ws", keep_last=KEEP))
    yield h
    h.close()


def test_future_dated_archives_never_get_a_new_archive_deleted(harness: Harness) -> None:
    """A clock once five years ahead left archives named in 2031 (this workspace's, unrecorded:
    adopted at start). Sessions after them are archived, prepared and acknowledged, and it is
    the future-named archives that rotation removes, never the new ones."""
    ws = harness.ws
    (ws / "logs").mkdir(exist_ok=True)
    (ws / "logs/old_session.log").write_text("from the clock that ran ahead\n" * 50)
    wid = workspace_id(ws)
    future = [
        engine.create_archive(
            ws, ws / "archives", reason="manual", workspace_id=wid, now=FUTURE
        ).path.name
        for _ in range(3)
    ]
    assert future[0] == "training_backup_20310601_120000.zip"
    harness.daemon()
    sessions: list[tuple[str, str, str]] = []
    for i in range(2):
        # something no archive holds yet, so each session gets a pre_training archive of its
        # own (an unchanged workspace is covered by the last one): the one the old name order
        # deleted seconds after it was made, before prepare could use it
        (ws / "logs" / f"between_{i}.log").write_text(f"written between sessions {i}\n" * 20)
        err = finished(harness.trainer())
        assert "daemon acknowledged the session" in err
        sid = session_of(ws)
        pre = wait_event(ws, "ArchiveCompleted", session_id=sid, reason="pre_training")
        post = wait_event(ws, "ArchiveCompleted", 60, session_id=sid, reason="post_training")
        ack = wait_event(ws, "SessionAcknowledged", session_id=sid)
        assert ack.data["archive"] == pre.data["name"]
        wait_event(ws, "WorkspacePrepared", session_id=sid)
        sessions.append((sid, pre.data["name"], post.data["name"]))
        wait_until(lambda: len(engine.list_archive_files(ws / "archives")) == KEEP, 60, "rotation")
        # the newest two recorded are this session's, and they are what is left
        assert {p.name for p in engine.list_archive_files(ws / "archives")} == {
            pre.data["name"],
            post.data["name"],
        }
    pruned = names(ws, "ArchivePruned")
    assert set(future) <= set(pruned)
    assert sessions[0][1] in pruned and sessions[0][2] in pruned  # the older session, later on
    assert sessions[-1][1] not in pruned and sessions[-1][2] not in pruned
    assert read_events(ws, "ArchiveFailed") == []


def test_a_future_named_archive_recorded_by_this_workspace_is_still_the_oldest(
    tmp_path: Path,
) -> None:
    """Renamed into the future after its record (a name is no date): rotation by the log
    deletes it first, and the archive made after it stays."""
    ws = make_daemon_workspace(tmp_path / "ws", keep_last=1)
    done = cli(ws, "archive", "--json")
    assert done.returncode == 0, done.stderr
    first = json.loads(done.stdout)["name"]
    renamed = "training_backup_20990101_000000.zip"
    shutil.move(ws / "archives" / first, ws / "archives" / renamed)
    # the log names it by its old name: as far as the log knows it was deleted by hand;
    # adopted by the next daemon start, as this workspace's, it is then the newest recorded
    notify = NotifySocket(tmp_path)
    daemon = DaemonProcess(ws, notify)
    try:
        daemon.wait_ready(60)
        daemon.wait_event("ArchiveCompleted", name=renamed)
        (ws / "logs/after.log").write_text("new since that archive\n")  # so a new one is owed
        trainer = FakeTrainer(ws)
        ack = trainer.start(ack_timeout_s=60)
        assert ack is not None and ack.ready and ack.archive is not None
        assert ack.archive != renamed  # a fresh pre_training archive, made after it
        trainer.write_logs(1)
        trainer.stop()
        post = daemon.wait_event(
            "ArchiveCompleted", 60, session_id=trainer.session_id, reason="post_training"
        )
        wait_until(lambda: not (ws / "archives" / renamed).exists(), 60, "the renamed one pruned")
        assert (ws / "archives" / post.data["name"]).is_file()
    finally:
        daemon.stop()
        notify.close()
    left: list[Any] = engine.list_archive_files(ws / "archives")
    assert [p.name for p in left] == [post.data["name"]]
