"""One remote copy as data (``RemoteObject``), and the calls on single objects.

An archive's object carries its facts in user metadata (``x-amz-meta-*``):
``sha256`` (of every byte of the zip, the integrity check of upload,
download and ``verify --remote``), ``session-id``, ``reason``,
``created-at``, ``workspace-id`` and ``host``. Every S3 error leaves as a
``RemoteError`` (``daemon.remote.errors.describe``).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from daemon.remote.errors import describe, translated
from daemon.remote.keys import parse_key

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import HeadObjectOutputTypeDef

CHUNK = 1 << 20
META_SHA256 = "sha256"
META_SESSION = "session-id"
META_REASON = "reason"
META_CREATED = "created-at"
META_WORKSPACE = "workspace-id"
META_HOST = "host"
METADATA_KEYS = (META_SHA256, META_SESSION, META_REASON, META_CREATED, META_WORKSPACE, META_HOST)
"""The user-metadata keys of an archive's object (S3 returns them lower-cased)."""
NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})


@dataclass(frozen=True)
class RemoteObject:
    """One archive in the bucket, as listed or HEADed."""

    key: str
    name: str
    host: str
    workspace_id: str
    bytes: int
    sha256: str | None
    """From the object's metadata or its workspace's index (None: neither says)."""
    uploaded_at: str
    """ISO-8601 UTC, the object's LastModified."""
    session_id: str | None = None
    reason: str | None = None
    created_at: str | None = None
    """When the archive was made (its manifest's ``created_at``), not when uploaded."""

    def to_json(self) -> dict[str, Any]:
        """Every field, as ``list --remote --json`` prints it."""
        return asdict(self)


def iso_utc(when: datetime) -> str:
    """``when`` as ISO-8601 UTC to the second (``2026-03-04T05:06:07+00:00``)."""
    return when.astimezone(UTC).isoformat(timespec="seconds")


def endpoint_of(client: S3Client) -> str:
    """The URL the client talks to (for error messages)."""
    return str(client.meta.endpoint_url)


def file_sha256(path: Path) -> str:
    """The sha256 of a local file, read 1 MiB at a time."""
    sha = hashlib.sha256()
    with path.open("rb") as f:
        while piece := f.read(CHUNK):
            sha.update(piece)
    return sha.hexdigest()


def head(client: S3Client, bucket: str, key: str, prefix: str) -> RemoteObject | None:
    """The object at ``key`` with its metadata, or None when there is none (HTTP 404)."""
    try:
        response = client.head_object(Bucket=bucket, Key=key)
    except ClientError as e:
        code = str(e.response.get("Error", {}).get("Code", ""))
        if code in NOT_FOUND or e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
            return None
        raise describe(e, bucket=bucket, endpoint=endpoint_of(client), key=key) from e
    except BotoCoreError as e:
        raise describe(e, bucket=bucket, endpoint=endpoint_of(client), key=key) from e
    return from_head(key, prefix, response)


def from_head(key: str, prefix: str, response: HeadObjectOutputTypeDef) -> RemoteObject:
    """A ``RemoteObject`` from a HEAD (or GET) response; the key says host, workspace and
    name when it is an archive's key under ``prefix``, else the metadata does."""
    meta = {k.lower(): v for k, v in response.get("Metadata", {}).items()}
    parts = parse_key(prefix, key)
    return RemoteObject(
        key=key,
        name=parts.name if parts else key.rsplit("/", 1)[-1],
        host=parts.host if parts else meta.get(META_HOST, ""),
        workspace_id=parts.workspace_id if parts else meta.get(META_WORKSPACE, ""),
        bytes=int(response.get("ContentLength", 0)),
        sha256=meta.get(META_SHA256),
        uploaded_at=iso_utc(response["LastModified"]),
        session_id=meta.get(META_SESSION),
        reason=meta.get(META_REASON),
        created_at=meta.get(META_CREATED),
    )


def delete_archive(client: S3Client, bucket: str, key: str) -> None:
    """Delete the object at ``key`` (no error when it is already gone)."""
    with translated(bucket=bucket, endpoint=endpoint_of(client), key=key):
        client.delete_object(Bucket=bucket, Key=key)
