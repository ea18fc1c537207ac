"""The object-storage library against a real S3 server (moto's, tests/remote_server.py):
verified uploads, single and multipart, cancel and abort, verified downloads, the client's
configuration (no default CRC checksums) and flat memory."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import boto3
import pytest

from daemon import remote
from daemon.errors import ArchiveError, ArchiveNotFoundError
from tests.remote_helpers import MIB, NAME, WS, Recorder, archive_file, config, needs_moto, sha

REPO = Path(__file__).resolve().parents[2]
META = {"session-id": "s-1", "reason": "manual", "created-at": "2026-03-04T05:06:07+00:00"}


def key_of(cfg: remote.RemoteConfig, name: str = NAME, host: str = "gpu1") -> str:
    return remote.archive_key(cfg.prefix, host, WS, name)


# --- uploads ---------------------------------------------------------------------------


def test_an_upload_is_verified_and_carries_its_metadata(s3, tmp_path):
    cfg = config(s3)
    client = remote.make_client(cfg)
    path = archive_file(tmp_path)
    digest = remote.file_sha256(path)
    assert digest == sha(path.read_bytes())
    done = remote.upload_archive(client, cfg, path, key_of(cfg), sha256=digest, metadata=META)
    assert not done.already and done.seconds > 0
    assert done.obj == remote.head(client, cfg.bucket, key_of(cfg), cfg.prefix)
    assert (done.obj.name, done.obj.host, done.obj.workspace_id) == (NAME, "gpu1", WS)
    assert (done.obj.bytes, done.obj.sha256) == (path.stat().st_size, digest)
    assert (done.obj.session_id, done.obj.reason, done.obj.created_at) == (
        "s-1",
        "manual",
        META["created-at"],
    )
    assert done.obj.uploaded_at.endswith("+00:00")
    assert set(done.obj.to_json()) >= {
        "name",
        "key",
        "bytes",
        "host",
        "workspace_id",
        "sha256",
        "uploaded_at",
    }
    got = s3.client().get_object(Bucket=cfg.bucket, Key=key_of(cfg))
    assert got["Body"].read() == path.read_bytes() and got["ContentType"] == "application/zip"
    assert got["Metadata"]["sha256"] == digest


def test_uploading_the_same_archive_again_sends_nothing(s3, tmp_path):
    cfg = config(s3)
    client = remote.make_client(cfg)
    path = archive_file(tmp_path)
    digest = remote.file_sha256(path)
    first = remote.upload_archive(client, cfg, path, key_of(cfg), sha256=digest, metadata=META)
    calls = Recorder(client)
    again = remote.upload_archive(client, cfg, path, key_of(cfg), sha256=digest, metadata=META)
    assert again.already and again.obj == first.obj
    assert calls.ops == ["HeadObject"]


def test_an_object_with_other_bytes_at_the_key_is_never_overwritten(s3, tmp_path):
    """A key holds one archive's only copy, perhaps: another archive of that name (a name
    that came back, another log of this workspace) is refused, the object left as it was."""
    cfg = config(s3)
    client = remote.make_client(cfg)
    s3.client().put_object(Bucket=cfg.bucket, Key=key_of(cfg), Body=b"another archive")
    path = archive_file(tmp_path)
    digest = remote.file_sha256(path)
    with pytest.raises(remote.RemoteError, match="holds another archive"):
        remote.upload_archive(client, cfg, path, key_of(cfg), sha256=digest, metadata={})
    body = s3.client().get_object(Bucket=cfg.bucket, Key=key_of(cfg))["Body"].read()
    assert body == b"another archive"


def test_a_large_archive_goes_in_parts_and_completes(s3, tmp_path):
    cfg = config(s3, part_size_mb=5)
    client = remote.make_client(cfg)
    path = archive_file(tmp_path, size=12 * MIB, seed=1)
    digest = remote.file_sha256(path)
    calls = Recorder(client)
    done = remote.upload_archive(client, cfg, path, key_of(cfg), sha256=digest, metadata=META)
    assert calls.count("CreateMultipartUpload") == 1 and calls.count("UploadPart") == 3
    assert calls.count("CompleteMultipartUpload") == 1 and calls.count("PutObject") == 0
    assert done.obj.bytes == 12 * MIB and done.obj.reason == "manual"
    assert remote.read_sha256(client, cfg.bucket, key_of(cfg)) == digest
    assert s3.incomplete_uploads(cfg.bucket) == []


def test_no_request_carries_the_default_crc_checksums(s3, tmp_path):
    cfg = config(s3, max_concurrency=3)
    client = remote.make_client(cfg)
    settings = vars(client.meta.config)  # botocore's stubs declare none of these attributes
    assert settings["request_checksum_calculation"] == "when_required"
    assert settings["response_checksum_validation"] == "when_required"
    # botocore reads max_attempts as retries: 3 retries, 4 attempts in all
    assert settings["retries"] == {"mode": "standard", "total_max_attempts": 4}
    assert settings["s3"] == {"addressing_style": "auto"}
    assert settings["max_pool_connections"] == 7
    assert (settings["connect_timeout"], settings["read_timeout"]) == (5.0, 60.0)
    calls = Recorder(client)
    for name, size in ((NAME, 1000), ("training_backup_20260304_050608.zip", 11 * MIB)):
        path = archive_file(tmp_path, name, size=size)
        remote.upload_archive(
            client, cfg, path, key_of(cfg, name), sha256=remote.file_sha256(path), metadata={}
        )
    remote.download_verified(client, cfg.bucket, key_of(cfg), tmp_path / "back.zip", sha256=None)
    assert {"PutObject", "UploadPart", "GetObject"} <= set(calls.ops)

    def checksummed(headers: dict[str, str]) -> bool:
        return any(h.startswith(("x-amz-checksum", "x-amz-sdk-checksum")) for h in headers) or (
            "aws-chunked" in headers.get("content-encoding", "")
        )

    assert [m for m, headers in calls.requests if checksummed(headers)] == []
    # The recorder does see them on a client left to botocore's defaults:
    plain = boto3.client("s3", endpoint_url=s3.endpoint_url)
    defaults = Recorder(plain)
    plain.put_object(Bucket=cfg.bucket, Key=f"{cfg.prefix}/plain", Body=b"x")
    assert [checksummed(headers) for _, headers in defaults.requests] == [True]


def test_cancelling_mid_upload_aborts_the_multipart_upload(s3, tmp_path):
    cfg = config(s3, max_concurrency=1)
    client = remote.make_client(cfg)
    path = archive_file(tmp_path, size=16 * MIB, seed=2)
    cancel = threading.Event()
    client.meta.events.register("after-call.s3.UploadPart", lambda **kw: cancel.set())
    calls = Recorder(client)
    with pytest.raises(remote.RemoteError, match=f"^upload of {NAME} cancelled$"):
        remote.upload_archive(
            client,
            cfg,
            path,
            key_of(cfg),
            sha256=remote.file_sha256(path),
            metadata={},
            cancel=cancel,
        )
    assert calls.count("CreateMultipartUpload") == 1 and 1 <= calls.count("UploadPart") < 4
    assert calls.count("CompleteMultipartUpload") == 0 and calls.count("AbortMultipartUpload") == 1
    assert s3.incomplete_uploads(cfg.bucket) == []
    assert remote.head(client, cfg.bucket, key_of(cfg), cfg.prefix) is None


def test_an_upload_cancelled_before_it_starts_sends_nothing(s3, tmp_path):
    cfg = config(s3)
    client = remote.make_client(cfg)
    calls = Recorder(client)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(remote.RemoteError, match="cancelled"):
        remote.upload_archive(
            client,
            cfg,
            archive_file(tmp_path),
            key_of(cfg),
            sha256="0" * 64,
            metadata={},
            cancel=cancel,
        )
    assert calls.ops == []


def test_an_archive_gone_before_its_upload_is_no_remote_error(s3, tmp_path):
    cfg = config(s3)
    client = remote.make_client(cfg)
    calls = Recorder(client)
    gone = tmp_path / NAME
    with pytest.raises(ArchiveNotFoundError, match=f"^cannot upload {gone}: it is gone$"):
        remote.upload_archive(client, cfg, gone, key_of(cfg), sha256="0" * 64, metadata={})
    assert calls.ops == []


def test_an_endpoint_lost_mid_upload_leaves_an_upload_that_abort_incomplete_uploads_clears(
    s3, tmp_path
):
    needs_moto(s3)
    cfg = config(s3, max_concurrency=1)
    client = remote.make_client(cfg)
    path = archive_file(tmp_path, size=11 * MIB, seed=3)
    parts = []

    def lose_endpoint(**kwargs) -> None:
        parts.append(1)
        if len(parts) == 1:
            s3.pause()

    client.meta.events.register("after-call.s3.UploadPart", lose_endpoint)
    with pytest.raises(
        remote.RemoteUnreachableError, match=f"^cannot reach S3 endpoint {s3.endpoint_url} "
    ):
        remote.upload_archive(
            client, cfg, path, key_of(cfg), sha256=remote.file_sha256(path), metadata={}
        )
    s3.resume()  # s3transfer's own abort could not reach the endpoint either:
    assert s3.incomplete_uploads(cfg.bucket) == [key_of(cfg)]
    workspace = remote.workspace_prefix(cfg.prefix, "gpu1", WS)
    assert remote.abort_incomplete_uploads(client, cfg.bucket, workspace) == [key_of(cfg)]
    assert s3.incomplete_uploads(cfg.bucket) == []
    assert remote.head(client, cfg.bucket, key_of(cfg), cfg.prefix) is None


def test_abort_incomplete_uploads_stays_under_its_prefix(s3):
    cfg = config(s3)
    client = remote.make_client(cfg)
    mine = key_of(cfg)
    other_workspace = remote.archive_key(cfg.prefix, "gpu1", "f" * 32, NAME)
    other_host = remote.archive_key(cfg.prefix, "gpu2", WS, NAME)
    for key in (mine, mine, other_workspace, other_host):
        s3.client().create_multipart_upload(Bucket=cfg.bucket, Key=key)
    aborted = remote.abort_incomplete_uploads(
        client, cfg.bucket, remote.workspace_prefix(cfg.prefix, "gpu1", WS)
    )
    assert aborted == [mine, mine]
    assert s3.incomplete_uploads(cfg.bucket) == sorted([other_workspace, other_host])
    assert remote.abort_incomplete_uploads(client, cfg.bucket, f"{cfg.prefix}/") == sorted(
        [other_workspace, other_host]
    )
    assert s3.incomplete_uploads(cfg.bucket) == []


def test_memory_stays_flat_whatever_the_archive_size(s3, tmp_path):
    """Upload and download 11 MiB and 41 MiB in a child process (moto's own memory is in
    this one) and compare their peaks of Python allocations: both have more parts than go
    at once, and the peak depends on those in flight only."""
    cfg = config(s3, part_size_mb=5, max_concurrency=2)
    files = [
        archive_file(tmp_path, f"training_backup_20260304_05060{i}.zip", size=mb * MIB, seed=i)
        for i, mb in ((1, 11), (2, 41))
    ]
    child = (
        "import json, sys, tracemalloc\n"
        "from pathlib import Path\n"
        "from daemon import remote\n"
        "cfg = remote.RemoteConfig(\n"
        "    url=sys.argv[1], endpoint_url=sys.argv[2] or None, part_size_mb=5, max_concurrency=2\n"
        ")\n"
        "client = remote.make_client(cfg)\n"
        "peaks = []\n"
        "for path in map(Path, sys.argv[3:]):\n"
        "    key = remote.archive_key(cfg.prefix, 'gpu1', 'ws', path.name)\n"
        "    digest = remote.file_sha256(path)\n"
        "    tracemalloc.start()\n"
        "    remote.upload_archive(client, cfg, path, key, sha256=digest, metadata={})\n"
        "    up = tracemalloc.get_traced_memory()[1]\n"
        "    tracemalloc.reset_peak()\n"
        "    back = path.with_suffix('.back')\n"
        "    remote.download_verified(client, cfg.bucket, key, back, sha256=digest)\n"
        "    peaks.append((up, tracemalloc.get_traced_memory()[1]))\n"
        "    tracemalloc.stop()\n"
        "print(json.dumps(peaks))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", child, cfg.url, cfg.endpoint_url or "", *map(str, files)],
        env={**os.environ, **s3.env(), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (small_up, small_down), (big_up, big_down) = json.loads(done.stdout)
    assert big_up < small_up + MIB and big_up < 12 * MIB, (small_up, big_up)
    assert big_down < small_down + MIB and big_down < 8 * MIB, (small_down, big_down)


# --- downloads -------------------------------------------------------------------------


def test_download_verified_writes_the_bytes_for_its_owner_only(s3, tmp_path):
    cfg = config(s3)
    client = remote.make_client(cfg)
    path = archive_file(tmp_path, size=3 * MIB + 17)
    digest = remote.file_sha256(path)
    remote.upload_archive(client, cfg, path, key_of(cfg), sha256=digest, metadata={})
    dest = tmp_path / "restored.zip"
    assert remote.download_verified(client, cfg.bucket, key_of(cfg), dest, sha256=digest) == digest
    assert dest.read_bytes() == path.read_bytes()
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    with pytest.raises(ArchiveError, match=f"^cannot create {dest}: File exists$"):
        remote.download_verified(client, cfg.bucket, key_of(cfg), dest, sha256=digest)
    assert dest.read_bytes() == path.read_bytes()  # never overwritten


def test_a_corrupt_object_raises_integrity_and_leaves_no_file(s3, tmp_path):
    cfg = config(s3)
    client = remote.make_client(cfg)
    path = archive_file(tmp_path)
    digest = remote.file_sha256(path)
    remote.upload_archive(client, cfg, path, key_of(cfg), sha256=digest, metadata=META)
    old = s3.client().head_object(Bucket=cfg.bucket, Key=key_of(cfg))["Metadata"]
    bad = bytearray(path.read_bytes())
    bad[1000] ^= 0xFF
    s3.client().put_object(Bucket=cfg.bucket, Key=key_of(cfg), Body=bytes(bad), Metadata=old)
    dest = tmp_path / "restored.zip"
    for expected in (None, digest):  # the metadata's sha256, then the caller's
        with pytest.raises(remote.RemoteIntegrityError) as caught:
            remote.download_verified(client, cfg.bucket, key_of(cfg), dest, sha256=expected)
        assert str(caught.value) == (
            f"object {key_of(cfg)!r} in bucket {cfg.bucket!r} has sha256 {sha(bytes(bad))}, "
            f"expected {digest}"
        )
        assert not dest.exists()
    assert remote.read_sha256(client, cfg.bucket, key_of(cfg)) == sha(bytes(bad))


def test_head_of_a_missing_key_is_none_and_delete_is_idempotent(s3, tmp_path):
    cfg = config(s3)
    client = remote.make_client(cfg)
    assert remote.head(client, cfg.bucket, key_of(cfg), cfg.prefix) is None
    path = archive_file(tmp_path)
    remote.upload_archive(
        client, cfg, path, key_of(cfg), sha256=remote.file_sha256(path), metadata={}
    )
    remote.delete_archive(client, cfg.bucket, key_of(cfg))
    assert remote.head(client, cfg.bucket, key_of(cfg), cfg.prefix) is None
    remote.delete_archive(client, cfg.bucket, key_of(cfg))
    with pytest.raises(remote.RemoteNotFoundError, match=f"^no object {key_of(cfg)!r} in bucket"):
        remote.download_verified(client, cfg.bucket, key_of(cfg), tmp_path / "x.zip", sha256=None)
    assert not (tmp_path / "x.zip").exists()
