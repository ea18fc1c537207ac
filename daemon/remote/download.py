"""Read an archive back from the bucket: to a new local file, or only to hash it.

Both stream the object 1 MiB at a time (memory stays flat) and compute its
sha256 on the way; ``download_verified`` checks it against the expected
digest (the caller's, else the object's metadata) and leaves no file behind
when it differs or the transfer fails.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from daemon.errors import ArchiveError, DiskFullError
from daemon.remote.errors import RemoteIntegrityError, translated
from daemon.remote.objects import CHUNK, META_SHA256, endpoint_of

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

DEST_MODE = 0o600
"""Downloaded archives are their owner's only, like the archives the daemon writes."""


def download_verified(
    client: S3Client, bucket: str, key: str, dest: Path, *, sha256: str | None
) -> str:
    """Stream the object at ``key`` into ``dest`` (created, never overwritten, mode 0600,
    fsynced) and return its sha256.

    When the digest differs from ``sha256`` (or, when that is None, from the
    object's metadata sha256), ``dest`` is removed and ``RemoteIntegrityError``
    raised. Local failures raise ``ArchiveError`` (``DiskFullError`` when the
    disk is full), S3 failures ``RemoteError``; neither leaves ``dest``.
    """
    try:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, DEST_MODE)
    except OSError as e:
        raise ArchiveError(f"cannot create {dest}: {e.strerror}") from e
    try:
        digest, claimed = _stream(client, bucket, key, lambda piece: _write_all(fd, piece, dest))
        try:
            os.fsync(fd)
        except OSError as e:
            raise _local_error(dest, e) from e
        expected = sha256 if sha256 is not None else claimed
        if expected is not None and digest != expected:
            raise RemoteIntegrityError(
                f"object {key!r} in bucket {bucket!r} has sha256 {digest}, expected {expected}"
            )
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            dest.unlink()
        raise
    os.close(fd)
    return digest


def read_sha256(client: S3Client, bucket: str, key: str) -> str:
    """The sha256 of every byte of the object at ``key``, streamed (nothing is stored)."""
    return _stream(client, bucket, key, lambda piece: None)[0]


def _stream(
    client: S3Client, bucket: str, key: str, sink: Callable[[bytes], None]
) -> tuple[str, str | None]:
    """GET ``key``, hand each piece to ``sink``; (sha256 of the bytes, metadata sha256).

    botocore checks that as many bytes came as the response announced.
    """
    sha = hashlib.sha256()
    with translated(bucket=bucket, endpoint=endpoint_of(client), key=key):
        response = client.get_object(Bucket=bucket, Key=key)
        body = response["Body"]
        try:
            for piece in body.iter_chunks(CHUNK):
                sha.update(piece)
                sink(piece)
        finally:
            body.close()
    meta = {k.lower(): v for k, v in response.get("Metadata", {}).items()}
    return sha.hexdigest(), meta.get(META_SHA256)


def _write_all(fd: int, data: bytes, dest: Path) -> None:
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except OSError as e:
        raise _local_error(dest, e) from e


def _local_error(dest: Path, e: OSError) -> ArchiveError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(f"no space left writing {dest}")
    return ArchiveError(f"cannot write {dest}: {e.strerror}")
