"""Remote copies: archives in S3-compatible object storage (DESIGN.md, "Remote copies").

A library of its own, like the archive engine: it may import the standard
library, boto3/botocore/s3transfer, ``daemon.errors`` and
``daemon.archive.manifest`` (archive names), nothing else of ``daemon``.

- ``settings``: the ``remote`` section of config.json (``RemoteConfig``; stdlib only);
- ``errors``: ``RemoteError`` and its kinds, and ``describe`` for botocore's errors;
- ``keys``: where copies live: ``PREFIX/<host>/<workspace_id>/<name>``, ``index.json``;
- ``client``: the S3 client (credential chain, systemd credential, checksums) and
  s3transfer's settings;
- ``objects``: ``RemoteObject``, HEAD, delete;
- ``upload``: verified, cancellable uploads; clearing stale multipart uploads;
- ``download``: verified downloads and ``verify --remote``'s streamed sha256;
- ``listing``: listing many hosts' archives with one index per workspace.

The names below are the library's public face: ``from daemon import remote``.
They load on first use, so that reading the config (which needs
``settings`` alone) does not import boto3.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from daemon.remote.client import make_client, transfer_config
    from daemon.remote.download import download_verified, read_sha256
    from daemon.remote.errors import (
        RemoteError,
        RemoteIntegrityError,
        RemoteNotFoundError,
        RemoteUnreachableError,
        describe,
    )
    from daemon.remote.keys import (
        INDEX_NAME,
        KeyParts,
        archive_key,
        index_key,
        parse_key,
        safe_host,
        workspace_prefix,
    )
    from daemon.remote.listing import list_archives, write_index
    from daemon.remote.objects import RemoteObject, delete_archive, file_sha256, head
    from daemon.remote.settings import FORBIDDEN_KEYS, RemoteConfig
    from daemon.remote.upload import Uploaded, abort_incomplete_uploads, upload_archive

_HOMES = {
    "client": ("make_client", "transfer_config"),
    "download": ("download_verified", "read_sha256"),
    "errors": (
        "RemoteError",
        "RemoteIntegrityError",
        "RemoteNotFoundError",
        "RemoteUnreachableError",
        "describe",
    ),
    "keys": (
        "INDEX_NAME",
        "KeyParts",
        "archive_key",
        "index_key",
        "parse_key",
        "safe_host",
        "workspace_prefix",
    ),
    "listing": ("list_archives", "write_index"),
    "objects": ("RemoteObject", "delete_archive", "file_sha256", "head"),
    "settings": ("FORBIDDEN_KEYS", "RemoteConfig"),
    "upload": ("Uploaded", "abort_incomplete_uploads", "upload_archive"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "FORBIDDEN_KEYS",
    "INDEX_NAME",
    "KeyParts",
    "RemoteConfig",
    "RemoteError",
    "RemoteIntegrityError",
    "RemoteNotFoundError",
    "RemoteObject",
    "RemoteUnreachableError",
    "Uploaded",
    "abort_incomplete_uploads",
    "archive_key",
    "delete_archive",
    "describe",
    "download_verified",
    "file_sha256",
    "head",
    "index_key",
    "list_archives",
    "make_client",
    "parse_key",
    "read_sha256",
    "safe_host",
    "transfer_config",
    "upload_archive",
    "workspace_prefix",
    "write_index",
]


def __getattr__(name: str) -> object:
    """Load the module of a public name on first use (PEP 562)."""
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
