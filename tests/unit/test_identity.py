"""Workspace identity (DESIGN.md, "Identity"): the id file, the manifest fields, whose archive is
whose, and retention ordered by the event log rather than by names or clocks."""

from __future__ import annotations

import json
import os
import stat
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon import archive as engine
from daemon import ops, ownership
from daemon.archive.manifest import Manifest, MemberRecord
from daemon.errors import ConfigError
from daemon.eventlog.fold import ArchiveInfo
from daemon.identity import ensure_identity, read_identity
from daemon.retention import Candidate, Policy, decide, to_delete
from tests.daemon_helpers import make_daemon_workspace

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)

# --- .daemon/workspace.json ----------------------------------------------------------


def test_the_identity_is_made_once_for_the_group_and_then_only_read(tmp_path: Path):
    old = os.umask(0o002)  # the sharing umask of a person with 0022
    try:
        made, new = ensure_identity(tmp_path / "shared", now=lambda: NOW)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "shared" / "workspace.json").stat().st_mode) == 0o664
    daemon_dir = tmp_path / ".daemon"
    assert read_identity(daemon_dir) is None and not daemon_dir.exists()
    made, new = ensure_identity(daemon_dir, now=lambda: NOW)
    assert new and len(made.workspace_id) == 32 and made.created_at == "2026-03-04T05:06:07+00:00"
    path = daemon_dir / "workspace.json"
    assert json.loads(path.read_text()) == {
        "workspace_id": made.workspace_id,
        "created_at": made.created_at,
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~old
    again, new_again = ensure_identity(daemon_dir)
    assert again == made and not new_again
    assert sorted(p.name for p in daemon_dir.iterdir()) == ["workspace.json"]  # no temp left


def test_processes_making_it_at_once_agree_on_one_id(tmp_path: Path):
    daemon_dir = tmp_path / ".daemon"
    found: list[str] = []
    start = threading.Barrier(8)

    def make() -> None:
        start.wait()
        found.append(ensure_identity(daemon_dir)[0].workspace_id)

    threads = [threading.Thread(target=make) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(found) == 8 and len(set(found)) == 1
    assert read_identity(daemon_dir).workspace_id == found[0]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not valid JSON"),
        ('{"workspace_id": 3, "created_at": "x"}', "'workspace_id' must be a non-empty string"),
        ('{"workspace_id": "abc"}', "'created_at' must be a string"),
    ],
)
def test_a_bad_identity_file_is_bad_input_and_is_never_rewritten(tmp_path: Path, text, message):
    daemon_dir = tmp_path / ".daemon"
    daemon_dir.mkdir()
    (daemon_dir / "workspace.json").write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        ensure_identity(daemon_dir)
    assert "workspace.json" in str(caught.value)
    assert (daemon_dir / "workspace.json").read_text() == text


def test_the_first_record_makes_the_identity_and_records_it(tmp_path: Path):
    ws_root = make_daemon_workspace(tmp_path / "ws")
    with ops.open_workspace(ws_root) as ws:
        assert ws.workspace_id() is None and not (ws_root / ".daemon").exists()
        result = ops.archive_now(ws, reason="manual")
        wid = ws.workspace_id()
        assert wid is not None
        made = list(ws.store.read(types=["WorkspaceIdentified"]))
        assert [e.data["workspace_id"] for e in made] == [wid]
        assert made[0].seq == 1  # before anything else was recorded
        completed = next(iter(ws.store.read(types=["ArchiveCompleted"])))
        assert completed.data["workspace_id"] == wid and completed.data["host"] == os.uname()[1]
    manifest = engine.read_manifest(result.path)
    assert manifest.workspace_id == wid and manifest.host == os.uname()[1]


# --- MANIFEST.json: workspace_id and host ------------------------------------------


def _manifest(**fields: object) -> Manifest:
    base = Manifest(
        format_version=1,
        archive_id="cd" * 16,
        reason="manual",
        session_id="s1",
        created_at=NOW.isoformat(),
        members=(MemberRecord("logs/a.log", 1, "0" * 64, 1.0, 1_000_000_000),),
    )
    return replace(base, **fields)  # type: ignore[arg-type]


def test_workspace_id_and_host_round_trip_through_the_manifest():
    m = _manifest(workspace_id="w" * 32, host="trainbox-3")
    doc = json.loads(m.to_json())
    assert doc["workspace_id"] == "w" * 32 and doc["host"] == "trainbox-3"
    assert Manifest.from_json(m.to_json()) == m


def test_an_old_manifest_without_workspace_id_still_reads():
    doc = json.loads(_manifest().to_json())
    del doc["workspace_id"], doc["host"]
    m = Manifest.from_json(json.dumps(doc))
    assert m.workspace_id is None and m.host is None and m.archive_id == "cd" * 16


@pytest.mark.parametrize("key", ["workspace_id", "host"])
def test_a_non_string_workspace_id_or_host_is_refused_by_name(key: str):
    doc = json.loads(_manifest().to_json())
    doc[key] = 17
    with pytest.raises(ValueError, match=f"field '{key}' must be a string or null"):
        Manifest.from_json(json.dumps(doc))


def test_create_archive_writes_the_id_it_is_given_and_reads_no_identity_file(tmp_path: Path):
    ws = make_daemon_workspace(tmp_path / "ws")
    result = engine.create_archive(
        ws, tmp_path / "out", reason="manual", workspace_id="f" * 32, host="elsewhere", now=NOW
    )
    manifest = engine.read_manifest(result.path)
    assert (manifest.workspace_id, manifest.host) == ("f" * 32, "elsewhere")
    assert engine.claimed_workspace_id(result.path) == "f" * 32
    assert not (ws / ".daemon").exists()  # the engine is a library: it made no identity
    plain = engine.create_archive(ws, tmp_path / "out", reason="manual")
    assert engine.read_manifest(plain.path).workspace_id is None
    assert engine.read_manifest(plain.path).host == os.uname()[1]


# --- whose archive is it --------------------------------------------------------------


MINE, THEIRS = "a" * 32, "b" * 32


def _recorded(archive_id: str = "cd" * 16) -> ArchiveInfo:
    return ArchiveInfo("n.zip", "manual", None, 1, "", archive_id=archive_id, seq=3)


@pytest.mark.parametrize(
    ("claimed", "manifest", "recorded", "mine", "ours"),
    [
        (MINE, _manifest(workspace_id=MINE), None, MINE, True),  # ours, not yet recorded
        (THEIRS, _manifest(workspace_id=THEIRS), None, MINE, False),  # another workspace's
        (THEIRS, _manifest(workspace_id=THEIRS), _recorded(), MINE, False),  # wrongly adopted once
        (THEIRS, None, None, MINE, False),  # theirs, its manifest otherwise bad
        (MINE, None, None, MINE, True),  # ours, its manifest otherwise bad
        (None, _manifest(), _recorded(), MINE, True),  # made before ids, recorded here
        (None, _manifest(), _recorded(""), MINE, True),  # recorded without an archive id
        (None, _manifest(), _recorded("ef" * 16), MINE, False),  # same name, another archive
        (None, _manifest(), None, MINE, False),  # made before ids, never recorded here
        (None, None, None, MINE, False),  # a zip with no manifest: nobody's here
        (None, None, _recorded(), MINE, True),  # our recorded archive, its manifest lost
        (MINE, _manifest(workspace_id=MINE), None, None, False),  # we have no id yet
    ],
)
def test_is_ours(claimed, manifest, recorded, mine, ours):
    assert ownership.is_ours(claimed, manifest, recorded, mine) is ours


# --- retention: newest is the order the log recorded ------------------------------------


def _name(when: datetime) -> str:
    return f"training_backup_{when.strftime('%Y%m%d_%H%M%S')}.zip"


@st.composite
def recorded_archives(draw: st.DrawFn) -> list[Candidate]:
    """Archives with any names and recorded times (years ahead, years back), each recorded
    at a distinct place in the log."""
    offsets = draw(st.lists(st.integers(-20 * 365, 20 * 365), min_size=1, max_size=25))
    seqs = draw(st.permutations(range(1, len(offsets) + 1)))
    out = []
    for i, (days, seq) in enumerate(zip(offsets, seqs, strict=True)):
        when = NOW + timedelta(days=days, seconds=i)
        out.append(
            Candidate(
                name=_name(when),
                bytes=draw(st.integers(1, 100)),
                pinned=draw(st.booleans()) and draw(st.booleans()),
                verified=draw(st.booleans()),
                order=seq * 10,
                recorded_at=when + timedelta(minutes=draw(st.integers(-1000, 1000))),
            )
        )
    return out


order_policies = st.builds(
    Policy,
    keep_last=st.integers(1, 6),
    keep_daily=st.integers(0, 4),
    keep_weekly=st.integers(0, 3),
)


@given(recorded_archives(), order_policies)
def test_the_last_recorded_keep_last_survive_whatever_their_names_and_times(archives, policy):
    by_log = sorted(archives, key=lambda a: a.order, reverse=True)
    gone = set(to_delete(archives, policy))
    assert not {a.name for a in by_log[: policy.keep_last]} & gone
    assert [d.name for d in decide(archives, policy)] == [a.name for a in by_log]
    verified = [a for a in by_log if a.verified]
    if verified:
        assert verified[0].name not in gone
    assert not {a.name for a in archives if a.pinned} & gone


@given(recorded_archives(), order_policies)
def test_a_new_archive_recorded_after_future_dated_ones_is_kept(archives, policy):
    future = NOW + timedelta(days=3650)
    newest = Candidate(_name(NOW), 1, order=10_000, recorded_at=NOW)
    old = [replace(a, name=_name(future + timedelta(seconds=i))) for i, a in enumerate(archives)]
    gone = to_delete([*old, newest], policy)
    assert newest.name not in gone


def test_future_names_do_not_make_new_archives_look_old():
    future = [Candidate(_name(NOW + timedelta(days=3000, seconds=i)), 1, order=i) for i in (1, 2)]
    new = [Candidate(_name(NOW + timedelta(seconds=i)), 1, order=10 + i) for i in (1, 2)]
    assert to_delete([*future, *new], Policy(keep_last=2)) == [future[1].name, future[0].name]


def test_keep_daily_keeps_the_last_recorded_archive_of_each_day():
    day1, day2 = NOW, NOW + timedelta(days=1)
    archives = [
        Candidate(_name(day1), 1, order=1, recorded_at=day1),
        Candidate(_name(day1 + timedelta(hours=1)), 1, order=2, recorded_at=day1),
        Candidate(_name(day2 + timedelta(days=900)), 1, order=3, recorded_at=day2),  # future name
        Candidate(_name(day2), 1, order=4, recorded_at=day2),
    ]
    kept = {d.name for d in decide(archives, Policy(keep_last=0, keep_daily=2)) if not d.delete}
    assert kept == {archives[3].name, archives[1].name}
