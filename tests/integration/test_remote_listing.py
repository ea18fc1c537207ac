"""Listing the bucket's archives (``list --remote``) against a real S3 server: one listing,
one index per workspace, a HEAD only for what an index does not know."""

from __future__ import annotations

import threading

from daemon import remote
from tests.remote_helpers import Recorder, archive_file, config, sha

WS_A = "a" * 32
WS_B = "b" * 32
HOSTS = ("gpu1", "gpu2")
NAMES = ("training_backup_20260304_050607.zip", "training_backup_20260304_050607_2.zip")


def upload_all(
    s3, cfg, tmp_path, *, index: bool
) -> dict[tuple[str, str], list[remote.RemoteObject]]:
    """Two archives in each of 2 hosts x 2 workspaces, uploaded as the daemon does, each
    workspace's index written after (when ``index``); plus keys that are no archives."""
    client = remote.make_client(cfg)
    made: dict[tuple[str, str], list[remote.RemoteObject]] = {}
    seed = 0
    for host in HOSTS:
        for ws in (WS_A, WS_B):
            for name in NAMES:
                seed += 1
                path = archive_file(tmp_path, name, size=1000 + seed, seed=seed)
                done = remote.upload_archive(
                    client,
                    cfg,
                    path,
                    remote.archive_key(cfg.prefix, host, ws, name),
                    sha256=remote.file_sha256(path),
                    metadata={"session-id": f"s{seed}", "reason": "manual"},
                )
                made.setdefault((host, ws), []).append(done.obj)
            if index:
                key = remote.index_key(cfg.prefix, host, ws)
                remote.write_index(client, cfg.bucket, key, made[(host, ws)])
    for stray in (
        f"{cfg.prefix}/README.txt",
        f"{cfg.prefix}/gpu1/{WS_A}/notes.txt",
        f"{cfg.prefix}/gpu1/{WS_A}/old/{NAMES[0]}",
        f"{cfg.prefix}-old/gpu1/{WS_A}/{NAMES[0]}",  # another prefix that starts the same
    ):
        s3.client().put_object(Bucket=cfg.bucket, Key=stray, Body=b"not ours")
    return made


def test_two_hosts_two_workspaces_list_from_their_indexes(s3, tmp_path):
    cfg = config(s3)
    made = upload_all(s3, cfg, tmp_path, index=True)
    client = remote.make_client(cfg)
    calls = Recorder(client)
    listed = remote.list_archives(client, cfg)
    assert listed == [obj for group in sorted(made) for obj in made[group]]
    assert [(o.host, o.workspace_id) for o in listed][::2] == [
        ("gpu1", WS_A),
        ("gpu1", WS_B),
        ("gpu2", WS_A),
        ("gpu2", WS_B),
    ]
    assert all(o.sha256 and o.session_id and o.reason == "manual" for o in listed)
    assert calls.count("ListObjectsV2") == 1 and calls.count("GetObject") == 4
    assert calls.count("HeadObject") == 0
    calls.clear()
    assert (
        remote.list_archives(client, cfg, host="gpu2")
        == made[("gpu2", WS_A)] + made[("gpu2", WS_B)]
    )
    assert calls.count("GetObject") == 2
    assert remote.list_archives(client, cfg, host="gpu1", workspace_id=WS_B) == made[("gpu1", WS_B)]
    assert (
        remote.list_archives(client, cfg, workspace_id=WS_B)
        == made[("gpu1", WS_B)] + made[("gpu2", WS_B)]
    )
    assert remote.list_archives(client, cfg, host="gpu3") == []


def test_without_indexes_every_object_is_headed_to_the_same_result(s3, tmp_path):
    cfg = config(s3)
    made = upload_all(s3, cfg, tmp_path, index=False)
    client = remote.make_client(cfg)
    calls = Recorder(client)
    listed = remote.list_archives(client, cfg)
    assert listed == [obj for group in sorted(made) for obj in made[group]]
    assert calls.count("HeadObject") == 8 and calls.count("GetObject") == 4


def test_a_stale_or_broken_index_heads_only_what_it_does_not_know(s3, tmp_path):
    cfg = config(s3)
    made = upload_all(s3, cfg, tmp_path, index=True)
    client = remote.make_client(cfg)
    # gpu1/A: its index predates a third upload, one object rewritten, one deleted.
    third = archive_file(tmp_path, "training_backup_20260305_000000.zip", size=500, seed=99)
    key3 = remote.archive_key(cfg.prefix, "gpu1", WS_A, third.name)
    remote.upload_archive(client, cfg, third, key3, sha256=remote.file_sha256(third), metadata={})
    rewritten = made[("gpu1", WS_A)][0]
    new_bytes = b"a longer, different archive" * 10
    s3.client().put_object(
        Bucket=cfg.bucket, Key=rewritten.key, Body=new_bytes, Metadata={"sha256": sha(new_bytes)}
    )
    remote.delete_archive(client, cfg.bucket, made[("gpu1", WS_A)][1].key)
    # gpu2/B: its index is not JSON.
    s3.client().put_object(
        Bucket=cfg.bucket, Key=remote.index_key(cfg.prefix, "gpu2", WS_B), Body=b"{not json"
    )
    calls = Recorder(client)
    listed = {o.key: o for o in remote.list_archives(client, cfg)}
    assert calls.count("HeadObject") == 2 + 2
    assert listed[rewritten.key].sha256 == sha(new_bytes)
    assert listed[rewritten.key].bytes == len(new_bytes)
    assert listed[key3].sha256 == remote.file_sha256(third)
    assert made[("gpu1", WS_A)][1].key not in listed
    assert [listed[o.key] for o in made[("gpu2", WS_B)]] == made[("gpu2", WS_B)]
    assert len(listed) == 8


def test_fifty_hosts_take_one_listing_and_one_index_per_workspace(s3):
    """1,050 archives of 50 hosts: two listing pages and 50 index GETs sent concurrently,
    no HEAD (the path that keeps 10,000 objects fast)."""
    cfg = config(s3)
    bodies: dict[str, bytes] = {}
    indexes: dict[str, list[remote.RemoteObject]] = {}
    for i in range(50):
        host = f"node{i:02d}"
        for n in range(21):
            name = f"training_backup_20260301_{n:06d}.zip"
            key = remote.archive_key(cfg.prefix, host, WS_A, name)
            bodies[key] = f"{host}/{name}".encode()
            obj = remote.RemoteObject(key, name, host, WS_A, len(bodies[key]), sha(bodies[key]), "")
            indexes.setdefault(host, []).append(obj)
    s3.put_many(cfg.bucket, bodies)
    client = remote.make_client(cfg)
    for host, objs in indexes.items():
        remote.write_index(client, cfg.bucket, remote.index_key(cfg.prefix, host, WS_A), objs)
    calls = Recorder(client)
    threads: set[int] = set()
    client.meta.events.register(
        "before-call.s3.GetObject", lambda **kw: threads.add(threading.get_ident())
    )
    listed = remote.list_archives(client, cfg)
    assert [(o.key, o.bytes, o.sha256) for o in listed] == [
        (o.key, o.bytes, o.sha256) for host in sorted(indexes) for o in indexes[host]
    ]
    assert calls.count("ListObjectsV2") == 2 and calls.count("GetObject") == 50
    assert calls.count("HeadObject") == 0
    assert len(threads) > 1
