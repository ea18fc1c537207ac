"""Upload one archive, verified, and clear the multipart uploads crashed runs leave.

``upload_archive`` sends nothing when the object is already there with the
same size and sha256 (a retry after a crash, another daemon of the same
workspace). Otherwise s3transfer sends it from the file, in parts of
``part_size_mb`` read from disk as they go, so memory does not grow with
the archive. A failed or cancelled multipart upload is aborted by
s3transfer itself; when even the abort fails (the endpoint went down),
``abort_incomplete_uploads`` clears it later. The object is then HEADed:
its size and metadata sha256 must be the file's.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import CancelledError
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from boto3.s3.transfer import create_transfer_manager
from botocore.exceptions import ClientError
from s3transfer.subscribers import BaseSubscriber

from daemon.errors import ArchiveError, ArchiveNotFoundError, DaemonError
from daemon.remote.client import transfer_config
from daemon.remote.errors import FOREIGN, RemoteError, RemoteIntegrityError, translated
from daemon.remote.objects import META_SHA256, RemoteObject, endpoint_of, head
from daemon.remote.settings import RemoteConfig

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

SLICE_S = 0.05
"""How often a waiting upload looks at its cancel event."""
CONTENT_TYPE = "application/zip"


@dataclass(frozen=True)
class Uploaded:
    """The outcome of ``upload_archive``: the object as HEADed after it."""

    obj: RemoteObject
    seconds: float
    already: bool
    """The object was there with this size and sha256: nothing was sent."""


class _Done(BaseSubscriber):
    """Sets an event when s3transfer is done with the transfer (after its cleanups)."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def on_done(self, future: Any, **kwargs: Any) -> None:
        self.event.set()


def upload_archive(
    client: S3Client,
    cfg: RemoteConfig,
    path: Path,
    key: str,
    *,
    sha256: str,
    metadata: dict[str, str],
    cancel: threading.Event | None = None,
) -> Uploaded:
    """Upload the archive at ``path`` to ``key`` with ``sha256`` in its metadata, verified.

    ``metadata`` holds the other facts (``session-id``, ``reason``...; printable
    ASCII). A set ``cancel`` stops the upload within ``SLICE_S`` plus the part
    in flight, aborts it and raises ``RemoteError``; a size or sha256 that
    differs after upload raises ``RemoteIntegrityError``; an object already at
    ``key`` with other bytes is never overwritten (``RemoteError``). The local file failing
    raises ``ArchiveNotFoundError`` (it is gone) or ``ArchiveError``, not a
    ``RemoteError``: trying again will not help.
    """
    start = time.monotonic()
    name = path.name
    meta = {**metadata, META_SHA256: sha256}
    for k, v in meta.items():
        if not (k.isascii() and v.isascii() and k.isprintable() and v.isprintable()):
            raise ValueError(f"metadata {k!r} must be printable ASCII")
    if cancel is not None and cancel.is_set():
        raise RemoteError(f"upload of {name} cancelled")
    try:
        size = path.stat().st_size
    except OSError as e:
        raise _local_error(path, e) from e
    there = head(client, cfg.bucket, key, cfg.prefix)
    if there is not None and there.bytes == size and there.sha256 == sha256:
        return Uploaded(there, time.monotonic() - start, already=True)
    if there is not None:  # never replace a copy: it may be the only one left of it
        raise RemoteError(
            f"object {key!r} in bucket {cfg.bucket!r} holds another archive "
            f"(sha256 {there.sha256 or 'missing'}); it is not overwritten"
        )
    _send(client, cfg, path, key, meta, cancel)
    after = head(client, cfg.bucket, key, cfg.prefix)
    if after is None:
        raise RemoteIntegrityError(
            f"object {key!r} is missing from bucket {cfg.bucket!r} right after its upload"
        )
    wrong = []
    if after.bytes != size:
        wrong.append(f"{after.bytes} bytes instead of {size}")
    if after.sha256 != sha256:
        wrong.append(f"sha256 {after.sha256 or 'missing'} instead of {sha256}")
    if wrong:
        raise RemoteIntegrityError(
            f"object {key!r} in bucket {cfg.bucket!r} after upload has {' and '.join(wrong)}"
        )
    return Uploaded(after, time.monotonic() - start, already=False)


def _send(
    client: S3Client,
    cfg: RemoteConfig,
    path: Path,
    key: str,
    meta: dict[str, str],
    cancel: threading.Event | None,
) -> None:
    """One s3transfer upload, waited on in slices so that ``cancel`` can stop it."""
    done = _Done()
    with (
        translated(bucket=cfg.bucket, endpoint=endpoint_of(client), key=key),
        create_transfer_manager(client, transfer_config(cfg)) as manager,
    ):
        future = manager.upload(
            str(path),
            cfg.bucket,
            key,
            extra_args={"Metadata": meta, "ContentType": CONTENT_TYPE},
            subscribers=[done],
        )
        while not done.event.wait(SLICE_S):
            if cancel is not None and cancel.is_set():
                # The parts in flight finish; then s3transfer runs its failure
                # cleanup (AbortMultipartUpload) before it announces the end.
                future.cancel()
                done.event.wait()
                break
        try:
            future.result()
        except CancelledError:
            raise RemoteError(f"upload of {path.name} cancelled") from None
        except FOREIGN:
            raise  # botocore's timeouts are OSErrors too: ``translated`` describes them
        except OSError as e:  # the file could not be read
            raise _local_error(path, e) from e


def _local_error(path: Path, e: OSError) -> DaemonError:
    if isinstance(e, FileNotFoundError):
        return ArchiveNotFoundError(f"cannot upload {path}: it is gone")
    return ArchiveError(f"cannot upload {path}: {e.strerror or e}")


def abort_incomplete_uploads(client: S3Client, bucket: str, prefix: str) -> list[str]:
    """Abort every multipart upload under ``prefix`` (those of runs that died or lost the
    endpoint mid-way: they are billed and invisible); return their keys."""
    aborted: list[str] = []
    with translated(bucket=bucket, endpoint=endpoint_of(client)):
        pages = client.get_paginator("list_multipart_uploads").paginate(
            Bucket=bucket, Prefix=prefix
        )
        for page in pages:
            for upload in page.get("Uploads", []):
                key, upload_id = upload.get("Key", ""), upload.get("UploadId", "")
                if not key.startswith(prefix) or not upload_id:
                    continue  # a server that ignores Prefix: never touch other folders
                try:
                    client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
                except ClientError as e:
                    if e.response.get("Error", {}).get("Code") != "NoSuchUpload":
                        raise
                    continue  # finished or aborted meanwhile
                aborted.append(key)
    return aborted
