"""What the log knows of off-machine copies: the fold of upload events, what is owed,
what local and remote rotation may delete, and the ``remote`` section of config.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from daemon.config import load_settings
from daemon.errors import ConfigError
from daemon.eventlog import events as ev
from daemon.eventlog.fold import State, fold
from daemon.remote.objects import RemoteObject
from daemon.remote_ops import candidates
from daemon.retention import Candidate, Policy, decide

A, B, C = (f"training_backup_20260101_00000{i}.zip" for i in range(3))


def folded(*events: ev.Event) -> State:
    ts = "2026-01-01T00:00:00+00:00"
    return fold(
        State(), [ev.StoredEvent(i + 1, ts, e.type, 1, e.payload()) for i, e in enumerate(events)]
    )


def completed(name: str, archive_id: str) -> list[ev.Event]:
    return [
        ev.ArchiveCompleted(name, "manual", None, archive_id, 10, 1),
        ev.ArchiveVerified(name=name, ok=True),
    ]


def uploaded(name: str, archive_id: str) -> ev.Event:
    return ev.ArchiveUploaded(name, f"p/h/w/{name}", 10, "ab" * 32, archive_id=archive_id)


def test_verified_archives_are_owed_a_copy_oldest_first_until_uploaded() -> None:
    state = folded(*completed(B, "b"), *completed(A, "a"), uploaded(B, "b"))
    assert [a.name for a in state.pending_uploads()] == [A]
    assert state.last_upload_at is not None and state.uploads[B].seq == 5


def test_an_unverified_archive_is_not_uploaded() -> None:
    state = folded(ev.ArchiveCompleted(A, "manual", None, "a", 10, 1))
    assert state.pending_uploads() == []


def test_a_name_that_comes_back_after_a_prune_is_owed_its_own_upload() -> None:
    """Upload identity is the manifest's archive id, never the file name."""
    state = folded(
        *completed(A, "first"),
        uploaded(A, "first"),
        ev.ArchivePruned(name=A),
        *completed(A, "second"),
    )
    assert [a.archive_id for a in state.pending_uploads()] == ["second"]


def test_remote_pruning_never_makes_a_local_archive_owed_again() -> None:
    state = folded(*completed(A, "a"), uploaded(A, "a"), ev.RemoteArchivePruned(A, "p/h/w/" + A))
    assert state.pending_uploads() == []
    assert state.uploads[A].remote_pruned
    gone = fold(state, [ev.StoredEvent(9, "t", "ArchivePruned", 1, {"name": A})])
    assert A not in gone.uploads  # forgotten once neither copy exists


def test_failures_are_counted_and_a_success_clears_the_last_error() -> None:
    state = folded(*completed(A, "a"), ev.ArchiveUploadFailed(A, "cannot reach S3 endpoint"))
    assert state.upload_failures == 1 and state.last_upload_error == "cannot reach S3 endpoint"
    later = folded(*completed(A, "a"), ev.ArchiveUploadFailed(A, "x"), uploaded(A, "a"))
    assert later.last_upload_error is None


def test_held_archives_survive_every_rule_even_the_size_cap() -> None:
    archives = [
        Candidate(n, 100, order=i, verified=True, held="not uploaded yet" if n != C else "")
        for i, n in enumerate([A, B, C])
    ]
    decisions = {d.name: d for d in decide(archives, Policy(keep_last=0, max_total_bytes=1))}
    assert not decisions[A].delete and decisions[A].why == "not uploaded yet"
    assert not decisions[B].delete
    assert not decisions[C].delete  # the newest verified


def obj(name: str) -> RemoteObject:
    return RemoteObject(f"p/h/w/{name}", name, "h", "w", 10, "ab", "2026-01-01T00:00:00Z")


def test_remote_retention_orders_by_the_log_and_keeps_unknown_and_pinned_objects() -> None:
    state = folded(
        *completed(A, "a"), uploaded(A, "a"), *completed(B, "b"), uploaded(B, "b"),
        *completed(C, "c"), uploaded(C, "c"), ev.ArchivePinned(name=A),
    )  # fmt: skip
    unknown = "training_backup_19990101_000000.zip"  # a copy this log never recorded
    objects = [obj(n) for n in (unknown, A, B, C)]
    decisions = {d.name: d for d in decide(candidates(objects, state), Policy(keep_last=1))}
    assert unknown not in decisions  # never deleted, and nothing is deleted in its favour
    assert decisions[B].delete and decisions[B].why == "outside retention"
    assert not decisions[A].delete and decisions[A].why == "pinned"
    assert not decisions[C].delete


def write_config(ws: Path, doc: object) -> Path:
    (ws / "config").mkdir(parents=True, exist_ok=True)
    path = ws / "config" / "config.json"
    path.write_text(json.dumps(doc))
    return path


def test_the_remote_section_sits_beside_the_daemon_keys_or_inside_their_section(
    tmp_path: Path,
) -> None:
    write_config(tmp_path, {"keep_last": 3, "remote": {"url": "s3://bucket/team/runs"}})
    s = load_settings(tmp_path)
    assert s.daemon.keep_last == 3 and s.remote is not None
    assert (s.remote.bucket, s.remote.prefix, s.remote.keep_last) == ("bucket", "team/runs", 20)
    write_config(tmp_path, {"daemon": {"keep_last": 4}, "remote": {"url": "s3://bucket2"}})
    s = load_settings(tmp_path)
    assert s.daemon.keep_last == 4 and s.remote is not None and s.remote.prefix == ""
    write_config(tmp_path, {"daemon": {"keep_last": 4, "remote": {"url": "s3://bucket3/x"}}})
    assert load_settings(tmp_path).remote is not None
    write_config(tmp_path, {"keep_last": 2})
    assert load_settings(tmp_path).remote is None


@pytest.mark.parametrize(
    ("remote", "says"),
    [
        ({"url": "s3://bucket/x", "keep_last": 0}, "remote.keep_last must be between 1 and 10000"),
        ({"url": "s3://bucket/x", "secret_key": "x"}, "'remote.secret_key': credentials never go"),
        ({"endpoint_url": "http://h"}, "'remote.url' is required"),
        ({"url": "s3://bucket/x", "max_concurrency": "4"}, "'remote.max_concurrency' must be"),
        ("s3://bucket/x", "'remote' must be an object"),
    ],
)
def test_a_bad_remote_section_names_the_file_and_the_key(
    tmp_path: Path, remote: object, says: str
) -> None:
    path = write_config(tmp_path, {"remote": remote})
    with pytest.raises(ConfigError) as raised:
        load_settings(tmp_path)
    assert says in str(raised.value) and str(path) in str(raised.value)


def test_an_archive_missing_from_its_folder_is_forgotten() -> None:
    state = folded(*completed(A, "a"), ev.ArchivePinned(name=A), ev.ArchiveMissing(name=A))
    assert A not in state.archives and A not in state.pins and state.pending_uploads() == []
