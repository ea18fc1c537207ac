"""List the archives in the bucket, fast: one listing, one index per workspace.

``ListObjectsV2`` gives every key, size and date, 1,000 a page. The other
facts (sha256, session, reason, created_at) come from each workspace's
``index.json``, which its daemon rewrites after every upload and remote
prune (``write_index``): one GET per workspace, several at once. Only an
object its index does not know (or knows with another size) is HEADed. A
missing or malformed index is no error: its objects are all HEADed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from botocore.exceptions import ClientError

from daemon.archive.manifest import SHA256_RE
from daemon.remote.errors import translated
from daemon.remote.keys import KeyParts, host_prefix, index_key, parse_key, workspace_prefix
from daemon.remote.objects import RemoteObject, endpoint_of, head, iso_utc
from daemon.remote.settings import RemoteConfig

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

INDEX_FORMAT = 1
WORKERS = 8
"""Index GETs and HEADs sent at once (fewer when the client's pool is smaller)."""
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class _Listed:
    key: str
    parts: KeyParts
    bytes: int
    uploaded_at: str


def list_archives(
    client: S3Client,
    cfg: RemoteConfig,
    *,
    host: str | None = None,
    workspace_id: str | None = None,
) -> list[RemoteObject]:
    """The archives under ``cfg.prefix`` (only ``host``'s, and only ``workspace_id``'s, when
    given), sorted by host, workspace id and name."""
    if host is not None and workspace_id is not None:
        narrow = workspace_prefix(cfg.prefix, host, workspace_id)
    elif host is not None:
        narrow = host_prefix(cfg.prefix, host)
    else:
        narrow = f"{cfg.prefix}/" if cfg.prefix else ""
    listed = [
        item
        for item in _list(client, cfg, narrow)
        if workspace_id is None or item.parts.workspace_id == workspace_id
    ]
    groups = sorted({(item.parts.host, item.parts.workspace_id) for item in listed})
    workers = min(WORKERS, getattr(client.meta.config, "max_pool_connections", WORKERS))
    indexes = dict(
        zip(
            groups,
            _parallel(lambda g: read_index(client, cfg, *g), groups, workers),
            strict=True,
        )
    )
    found: list[RemoteObject] = []
    unknown: list[_Listed] = []
    for item in listed:
        entry = indexes[(item.parts.host, item.parts.workspace_id)].get(item.parts.name)
        if entry is None or entry.get("bytes") != item.bytes:
            unknown.append(item)
            continue
        found.append(
            RemoteObject(
                key=item.key,
                name=item.parts.name,
                host=item.parts.host,
                workspace_id=item.parts.workspace_id,
                bytes=item.bytes,
                sha256=entry["sha256"],
                uploaded_at=item.uploaded_at,
                session_id=entry.get("session_id"),
                reason=entry.get("reason"),
                created_at=entry.get("created_at"),
            )
        )
    headed = _parallel(lambda i: head(client, cfg.bucket, i.key, cfg.prefix), unknown, workers)
    found += [obj for obj in headed if obj is not None]  # None: deleted meanwhile
    return sorted(found, key=lambda o: (o.host, o.workspace_id, o.name))


def read_index(
    client: S3Client, cfg: RemoteConfig, host: str, workspace_id: str
) -> dict[str, dict[str, Any]]:
    """A workspace's index: archive name -> its entry; {} when it is missing or malformed."""
    key = index_key(cfg.prefix, host, workspace_id)
    with translated(bucket=cfg.bucket, endpoint=endpoint_of(client), key=key):
        try:
            data = client.get_object(Bucket=cfg.bucket, Key=key)["Body"].read()
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return {}
            raise
    return parse_index(data)


def parse_index(data: bytes) -> dict[str, dict[str, Any]]:
    """The entries of an index document that are well formed; the others are left out
    (their objects are HEADed). Any document but format 1 gives {}."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return {}
    if not isinstance(doc, dict) or doc.get("format") != INDEX_FORMAT:
        return {}
    archives = doc.get("archives")
    if not isinstance(archives, dict):
        return {}
    good: dict[str, dict[str, Any]] = {}
    for name, entry in archives.items():
        if not isinstance(entry, dict):
            continue
        size, sha = entry.get("bytes"), entry.get("sha256")
        if not isinstance(size, int) or isinstance(size, bool):
            continue
        if not isinstance(sha, str) or not SHA256_RE.fullmatch(sha):
            continue
        if any(
            entry.get(k) is not None and not isinstance(entry.get(k), str)
            for k in ("session_id", "reason", "created_at")
        ):
            continue
        good[name] = entry
    return good


def index_document(objects: Iterable[RemoteObject]) -> dict[str, Any]:
    """The JSON of a workspace's index holding ``objects``."""
    return {
        "format": INDEX_FORMAT,
        "archives": {
            o.name: {
                "sha256": o.sha256,
                "bytes": o.bytes,
                "session_id": o.session_id,
                "reason": o.reason,
                "created_at": o.created_at,
            }
            for o in sorted(objects, key=lambda o: o.name)
        },
    }


def write_index(client: S3Client, bucket: str, key: str, objects: Sequence[RemoteObject]) -> None:
    """PUT the index of one workspace (its daemon does, after every upload and prune)."""
    body = json.dumps(index_document(objects), indent=1, sort_keys=True).encode()
    with translated(bucket=bucket, endpoint=endpoint_of(client), key=key):
        client.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")


def _list(client: S3Client, cfg: RemoteConfig, narrow: str) -> list[_Listed]:
    found: list[_Listed] = []
    with translated(bucket=cfg.bucket, endpoint=endpoint_of(client)):
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=cfg.bucket, Prefix=narrow)
        for page in pages:
            for item in page.get("Contents", []):
                key = item.get("Key", "")
                parts = parse_key(cfg.prefix, key)
                if parts is not None and "LastModified" in item:
                    found.append(
                        _Listed(key, parts, int(item.get("Size", 0)), iso_utc(item["LastModified"]))
                    )
    return found


def _parallel(call: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """``[call(i) for i in items]`` on up to ``workers`` threads; the first error raises."""
    if len(items) <= 1:
        return [call(i) for i in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(call, items))
