"""Off-machine copies made by a real daemon against a real S3 API server (moto's, on loopback;
or the opt-in real endpoint of ``tests/remote_server.py``): uploads, restore, an outage, a
kill mid-upload, two workspaces in one bucket, corruption, and bad config."""

from __future__ import annotations

import json
import os
import signal
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_helpers import (
    DaemonProcess,
    FakeTrainer,
    NotifySocket,
    make_daemon_workspace,
    read_events,
    wait_until,
    workspace_id,
)
from tests.e2e_helpers import daemon_cli
from tests.remote_server import RealEndpoint, S3Server

S3 = S3Server | RealEndpoint


def remote_section(s3: S3, url: str, **overrides: Any) -> dict[str, Any]:
    fast = {"part_size_mb": 5, "read_timeout_s": 5, "connect_timeout_s": 2}
    return {"url": url, "endpoint_url": s3.endpoint_url, **fast, **overrides}


def workspace(
    root: Path, s3: S3, url: str, *, keep_last: int = 50, remote_keep_last: int = 20, **remote: Any
) -> Path:
    ws = make_daemon_workspace(root, keep_last=keep_last, retry_max_s=0.5)
    doc = json.loads((ws / "config/config.json").read_text())
    doc["remote"] = remote_section(s3, url, keep_last=remote_keep_last, **remote)
    (ws / "config/config.json").write_text(json.dumps(doc))
    return ws


def session(ws: Path, daemon: DaemonProcess) -> str:
    """One short session through the lock; the name of its verified final archive."""
    trainer = FakeTrainer(ws)
    assert trainer.start(ack_timeout_s=60) is not None
    trainer.write_logs()
    trainer.stop()
    done = daemon.wait_event(
        "ArchiveCompleted", timeout=60, session_id=trainer.session_id, reason="post_training"
    )
    return str(done.data["name"])


def uploaded(ws: Path) -> list[str]:
    return [str(e.data["name"]) for e in read_events(ws, "ArchiveUploaded")]


def bucket_keys(s3: S3, url: str) -> list[str]:
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    keys = []
    for page in s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return sorted(keys)


def on_disk(ws: Path) -> set[str]:
    return {p.name for p in (ws / "archives").glob("training_backup_*.zip")}


def cli_json(ws: Path, *args: str) -> Any:
    return json.loads(daemon_cli(ws, *args, "--json").stdout)


def test_every_archive_is_uploaded_verified_and_restorable_from_remote(
    tmp_path: Path, s3: S3, notify: NotifySocket
) -> None:
    url = s3.fresh_url()
    ws = workspace(tmp_path / "ws", s3, url)
    daemon = DaemonProcess(ws, notify)
    try:
        daemon.wait_ready(60)
        names = [session(ws, daemon) for _ in range(2)]
        wait_until(lambda: set(names) <= set(uploaded(ws)), 60, "both final archives uploaded")
        status = cli_json(ws, "status")
        listed = cli_json(ws, "list", "--remote")
    finally:
        assert daemon.terminate(60) == 0, daemon.stderr()
    ident = workspace_id(ws)
    local = on_disk(ws)
    assert set(uploaded(ws)) == local  # pre- and post-training archives, each once
    assert len(uploaded(ws)) == len(set(uploaded(ws)))
    for item in listed:
        assert item["workspace_id"] == ident and item["key"].endswith("/" + item["name"])
        prefix = url.removeprefix("s3://").partition("/")[2]
        assert item["key"] == f"{prefix}/{item['host']}/{ident}/{item['name']}"
        assert len(item["sha256"]) == 64 and item["uploaded_at"] and item["bytes"] > 0
    assert {i["name"] for i in listed} == local
    assert status["remote"]["pending"] == 0 and status["remote"]["last_upload"] is not None
    assert status["remote"]["last_error"] is None

    # the local file is gone: restore from the remote copy, checked, into a new folder
    archive = ws / "archives" / names[-1]
    with zipfile.ZipFile(archive) as z:
        members = {i.filename: z.read(i) for i in z.infolist() if not i.is_dir()}
    archive.unlink()
    target = tmp_path / "restored"
    done = daemon_cli(ws, "restore", names[-1], "--to", str(target), "--from-remote")
    assert "restored" in done.stdout
    for name, data in members.items():
        if name != "MANIFEST.json":
            assert (target / name).read_bytes() == data, name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".restore-")]  # temp gone
    checked = cli_json(ws, "verify", "--remote")
    assert checked and all(r["ok"] for r in checked)


def test_an_outage_keeps_archives_locally_and_uploads_all_once_it_is_over(
    tmp_path: Path, s3: S3, notify: NotifySocket
) -> None:
    if not s3.can_pause:
        pytest.skip(RealEndpoint.SKIP)
    url = s3.fresh_url()
    ws = workspace(tmp_path / "ws", s3, url, keep_last=1)
    daemon = DaemonProcess(ws, notify)
    try:
        daemon.wait_ready(60)
        first = session(ws, daemon)
        wait_until(lambda: first in uploaded(ws), 60, "the first upload")
        s3.pause()
        during = [session(ws, daemon) for _ in range(3)]
        wait_until(lambda: read_events(ws, "ArchiveUploadFailed"), 60, "a failed upload")
        failed = read_events(ws, "ArchiveUploadFailed")[-1].data
        assert "127.0.0.1" in failed["error"] and "\n" not in failed["error"]
        assert daemon.proc.poll() is None  # the daemon stays up
        status = cli_json(ws, "status")
        assert set(during) <= set(status["remote"]["pending_archives"])
        assert status["remote"]["last_error"]
        held = on_disk(ws)
        assert set(during) <= held and len(held) > 1  # beyond keep_last: not uploaded
        assert status["remote"]["held_locally"]
        assert "until their upload is verified" in daemon_cli(ws, "status").stdout

        failures = len(read_events(ws, "ArchiveUploadFailed"))
        assert failures < 30, failures  # a backoff between tries, not a spin
        s3.resume()
        owed = set(status["remote"]["pending_archives"])
        wait_until(lambda: owed <= set(uploaded(ws)), 60, "every archive owed uploaded")
        wait_until(lambda: len(on_disk(ws)) == 1, 60, "local rotation after it")
    finally:
        assert daemon.terminate(60) == 0, daemon.stderr()
    names = uploaded(ws)
    assert len(names) == len(set(names))  # never one archive twice
    assert set(during) <= set(names)
    assert cli_json(ws, "status")["remote"]["pending"] == 0


def test_a_daemon_killed_mid_upload_uploads_it_once_after_restart(
    tmp_path: Path, s3: S3, notify: NotifySocket
) -> None:
    url = s3.fresh_url()
    bucket = url.removeprefix("s3://").partition("/")[0]
    ws = workspace(tmp_path / "ws", s3, url, max_concurrency=1)
    big = ws / "models" / "memory_efficient_model_final.zip"
    big.write_bytes(os.urandom(120 << 20))  # stored, not compressed: 24 parts of 5 MiB
    daemon = DaemonProcess(ws, notify)
    try:
        daemon.wait_ready(60)
        done = daemon_cli(ws, "archive", "--json")
        name = json.loads(done.stdout)["name"]
        wait_until(lambda: s3.incomplete_uploads(bucket), 60, "a multipart upload under way")
        daemon.kill()  # SIGKILL mid-upload
    finally:
        daemon.stop()
    assert name not in uploaded(ws)
    assert s3.incomplete_uploads(bucket)  # the crash left it
    again = DaemonProcess(ws, notify, log_name="daemon2.out")
    try:
        again.wait_ready(60)
        again.wait_event("ArchiveUploaded", timeout=120, name=name)
        aborted = again.wait_event("RemoteUploadsAborted", timeout=10)
    finally:
        assert again.terminate(60) == 0, again.stderr()
    assert any(k.endswith(name) for k in aborted.data["keys"])
    assert uploaded(ws).count(name) == 1
    assert s3.incomplete_uploads(bucket) == []
    local = (ws / "archives" / name).stat().st_size
    [obj] = [o for o in cli_json(ws, "list", "--remote") if o["name"] == name]
    assert obj["bytes"] == local


def test_two_workspaces_share_a_bucket_and_prefix_without_touching_each_other(
    tmp_path: Path, s3: S3, notify: NotifySocket
) -> None:
    url = s3.fresh_url()
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    a = workspace(tmp_path / "a", s3, url, keep_last=1, remote_keep_last=1)
    b = workspace(tmp_path / "b", s3, url, keep_last=1)
    # a copy of "a" under another host's name: remote retention of a's daemon must not see it
    other = f"{prefix}/other-host/{workspace_id(a)}/training_backup_20200101_000000.zip"
    s3.client().put_object(Bucket=bucket, Key=other, Body=b"another host's copy")
    (tmp_path / "nb").mkdir()
    b_notify = NotifySocket(tmp_path / "nb")
    b_notify.drain_in_background()
    b_daemon = DaemonProcess(b, b_notify, log_name="b.out")
    a_daemon = DaemonProcess(a, notify, log_name="a.out")
    try:
        a_daemon.wait_ready(60)
        b_daemon.wait_ready(60)
        b_name = session(b, b_daemon)
        wait_until(lambda: b_name in uploaded(b), 60, "b's upload")
        b_keys = {k for k in bucket_keys(s3, url) if f"/{workspace_id(b)}/" in k}
        for _ in range(3):
            name = session(a, a_daemon)
            wait_until(lambda: name in uploaded(a), 60, "a's upload")  # noqa: B023
        wait_until(lambda: read_events(a, "RemoteArchivePruned"), 60, "a's remote retention")
        everyone = cli_json(a, "list", "--remote", "--all-hosts")
        mine = cli_json(a, "list", "--remote")
    finally:
        assert a_daemon.terminate(60) == 0, a_daemon.stderr()
        assert b_daemon.terminate(60) == 0, b_daemon.stderr()
        b_notify.close()
    keys = set(bucket_keys(s3, url))
    assert b_keys <= keys and other in keys  # neither b's objects nor another host's went
    pruned = read_events(a, "RemoteArchivePruned")
    assert all(f"/{workspace_id(a)}/" in e.data["key"] for e in pruned)
    assert not read_events(b, "RemoteArchivePruned")  # b keeps 20 copies
    workspaces = {(o["host"], o["workspace_id"]) for o in everyone}
    assert {workspace_id(a), workspace_id(b)} <= {w for _, w in workspaces}
    assert ("other-host", workspace_id(a)) in workspaces
    assert {o["workspace_id"] for o in mine} == {workspace_id(a)}
    assert len(mine) == 1  # remote keep_last 1 (the newest verified)

    # prune --remote: b's own retention, by hand, only ever on b's objects
    config = b / "config/config.json"
    doc = json.loads(config.read_text())
    doc["remote"]["keep_last"] = 1
    config.write_text(json.dumps(doc))
    planned = cli_json(b, "prune", "--remote", "--dry-run")
    b_zips = {k for k in b_keys if k.endswith(".zip")}  # pre- and post-training archives
    assert sum(d["delete"] for d in planned) == len(b_zips) - 1 >= 1  # keeps the newest
    assert set(bucket_keys(s3, url)) == keys  # a dry run deletes nothing
    done = cli_json(b, "prune", "--remote")
    assert [d["name"] for d in done if d["delete"]] == [d["name"] for d in planned if d["delete"]]
    left = set(bucket_keys(s3, url))
    assert {k for k in keys if f"/{workspace_id(b)}/" not in k} <= left  # a's and other's stay
    assert len({k for k in left if f"/{workspace_id(b)}/" in k and k.endswith(".zip")}) == 1


def test_verify_remote_finds_a_corrupted_object(
    tmp_path: Path, s3: S3, notify: NotifySocket
) -> None:
    url = s3.fresh_url()
    bucket = url.removeprefix("s3://").partition("/")[0]
    ws = workspace(tmp_path / "ws", s3, url)
    daemon = DaemonProcess(ws, notify)
    try:
        daemon.wait_ready(60)
        daemon_cli(ws, "archive")
        wait_until(lambda: uploaded(ws), 60, "the upload")
    finally:
        assert daemon.terminate(60) == 0, daemon.stderr()
    [event] = read_events(ws, "ArchiveUploaded")
    key = str(event.data["key"])
    client = s3.client()
    head = client.head_object(Bucket=bucket, Key=key)
    body = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0xFF  # one flipped byte, same size, same metadata
    client.put_object(Bucket=bucket, Key=key, Body=bytes(body), Metadata=head["Metadata"])
    done = daemon_cli(ws, "verify", "--remote", expect=1)
    assert f"{key}: FAILED" in done.stdout and "sha256" in done.stdout
    target = tmp_path / "restored"
    done = daemon_cli(ws, "restore", key, "--to", str(target), "--from-remote", expect=1)
    assert "sha256" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not target.exists()  # nothing written under DIR


@pytest.mark.parametrize(
    ("remote", "named"),
    [
        ({"url": "http://bucket/x"}, "remote.url"),
        ({}, "remote.url"),
        ({"url": "s3://bucket/x", "keep_last": 0}, "remote.keep_last"),
        ({"url": "s3://bucket/x", "aws_secret_access_key": "k"}, "remote.aws_secret_access_key"),
        ({"url": "s3://bucket/x", "colour": "red"}, "remote.colour"),
        ({"url": "s3://bucket/x", "endpoint_url": 5}, "remote.endpoint_url"),
    ],
)
def test_a_bad_remote_section_is_exit_2_naming_the_key(
    tmp_path: Path, remote: dict[str, Any], named: str
) -> None:
    ws = make_daemon_workspace(tmp_path / "ws")
    config = ws / "config/config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "remote": remote}))
    before = sorted(p.relative_to(ws) for p in ws.rglob("*"))
    for args in (("status",), ("list", "--remote"), ("run",)):
        done = daemon_cli(ws, *args, expect=2)
        assert named in done.stderr and str(config) in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert sorted(p.relative_to(ws) for p in ws.rglob("*")) == before  # nothing touched


def test_an_unreachable_server_is_exit_1_with_one_line(tmp_path: Path, s3: S3) -> None:
    ws = make_daemon_workspace(tmp_path / "ws")
    config = ws / "config/config.json"
    remote = {"url": "s3://bucket/x", "endpoint_url": "http://127.0.0.1:9", "connect_timeout_s": 1}
    config.write_text(json.dumps({**json.loads(config.read_text()), "remote": remote}))
    done = daemon_cli(ws, "list", "--remote", "--all-hosts", expect=1)
    assert "127.0.0.1:9" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    done = daemon_cli(ws, "list", "--all-hosts", expect=2)
    assert "--remote" in done.stderr


def test_an_archive_deleted_by_hand_before_its_upload_is_owed_no_longer(
    tmp_path: Path, s3: S3, notify: NotifySocket
) -> None:
    if not s3.can_pause:
        pytest.skip(RealEndpoint.SKIP)
    url = s3.fresh_url()
    ws = workspace(tmp_path / "ws", s3, url)
    daemon = DaemonProcess(ws, notify)
    try:
        daemon.wait_ready(60)
        s3.pause()
        name = json.loads(daemon_cli(ws, "archive", "--json").stdout)["name"]
        wait_until(lambda: read_events(ws, "ArchiveUploadFailed"), 60, "a failed upload")
        (ws / "archives" / name).unlink()  # by hand, not by rotation
        s3.resume()
        daemon.wait_event("ArchiveMissing", timeout=60, name=name)
        assert cli_json(ws, "status")["remote"]["pending"] == 0
    finally:
        assert daemon.terminate(60) == 0, daemon.stderr()
    assert name not in uploaded(ws)


def test_a_reload_that_adds_the_remote_section_uploads_what_exists(
    tmp_path: Path, s3: S3, notify: NotifySocket
) -> None:
    url = s3.fresh_url()
    ws = make_daemon_workspace(tmp_path / "ws", retry_max_s=0.5)
    daemon = DaemonProcess(ws, notify)
    try:
        daemon.wait_ready(60)
        before = json.loads(daemon_cli(ws, "archive", "--json").stdout)["name"]
        assert cli_json(ws, "status")["remote"] is None
        config = ws / "config/config.json"
        doc = json.loads(config.read_text())
        config.write_text(json.dumps({**doc, "remote": remote_section(s3, url)}))
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_event("ConfigReloaded", timeout=30)
        daemon.wait_event("ArchiveUploaded", timeout=60, name=before)
    finally:
        assert daemon.terminate(60) == 0, daemon.stderr()
    assert [o["name"] for o in cli_json(ws, "list", "--remote")] == [before]
