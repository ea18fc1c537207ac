"""What the object-storage library says when S3 fails, against a real S3 server: one line
naming the endpoint or the bucket, and where credentials come from."""

from __future__ import annotations

import os

import pytest

from daemon import remote
from daemon.remote.errors import NO_CREDENTIALS
from tests.remote_helpers import NAME, WS, Recorder, archive_file, config, needs_moto


def key_of(cfg: remote.RemoteConfig) -> str:
    return remote.archive_key(cfg.prefix, "gpu1", WS, NAME)


def test_a_paused_server_is_unreachable_in_one_line_naming_the_endpoint(s3, tmp_path):
    needs_moto(s3)
    cfg = config(s3)
    client = remote.make_client(cfg)
    path = archive_file(tmp_path)
    s3.pause()
    calls = Recorder(client)
    for call in (
        lambda: remote.list_archives(client, cfg),
        lambda: remote.upload_archive(client, cfg, path, key_of(cfg), sha256="0" * 64, metadata={}),
        lambda: remote.read_sha256(client, cfg.bucket, key_of(cfg)),
    ):
        with pytest.raises(remote.RemoteUnreachableError) as caught:
            call()
        assert (
            str(caught.value) == f"cannot reach S3 endpoint {s3.endpoint_url} (connection refused)"
        )
    assert len(calls.requests) == 3 * 4  # retries={"max_attempts": 3}: four attempts each
    s3.resume()
    assert remote.list_archives(client, cfg) == []


def test_a_missing_bucket_is_named(s3, tmp_path):
    cfg = config(s3)
    gone = remote.RemoteConfig(url=f"s3://missing-{cfg.bucket}/p", endpoint_url=cfg.endpoint_url)
    client = remote.make_client(gone)
    path = archive_file(tmp_path)
    message = f"^bucket 'missing-{cfg.bucket}' does not exist$"
    with pytest.raises(remote.RemoteNotFoundError, match=message):
        remote.upload_archive(
            client, gone, path, key_of(gone), sha256=remote.file_sha256(path), metadata={}
        )
    with pytest.raises(remote.RemoteNotFoundError, match=message):
        remote.list_archives(client, gone)
    with pytest.raises(remote.RemoteNotFoundError, match=message):
        remote.abort_incomplete_uploads(client, gone.bucket, "p/")


def test_no_credentials_says_where_they_come_from(s3, tmp_path, monkeypatch):
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    empty = tmp_path / "empty"
    empty.write_text("")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance role to look for
    cfg = config(s3, region="us-east-1")
    client = remote.make_client(cfg, credentials_dir=str(tmp_path / "no-such-dir"))
    with pytest.raises(remote.RemoteError) as caught:
        remote.list_archives(client, cfg)
    assert str(caught.value) == NO_CREDENTIALS


def test_credentials_come_from_the_systemd_credential(s3, tmp_path, monkeypatch):
    needs_moto(s3)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "aws-credentials").write_text(
        "[default]\naws_access_key_id = AKIDFROMSYSTEMD\naws_secret_access_key = s3cr3t-default\n"
        "[archiver]\naws_access_key_id = AKIDARCHIVER\naws_secret_access_key = s3cr3t-archiver\n"
    )
    for profile, key_id in ((None, "AKIDFROMSYSTEMD"), ("archiver", "AKIDARCHIVER")):
        cfg = config(s3, profile=profile)
        client = remote.make_client(cfg, credentials_dir=str(creds))
        calls = Recorder(client)
        assert remote.list_archives(client, cfg) == []
        [(_, headers)] = calls.requests
        assert f"Credential={key_id}/" in headers["authorization"]
    with pytest.raises(remote.RemoteError, match=r"^AWS profile 'nobody' not found$"):
        remote.list_archives(
            remote.make_client(config(s3, profile="nobody"), credentials_dir=str(creds)), cfg
        )
