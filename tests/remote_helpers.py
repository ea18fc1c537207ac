"""Helpers of the remote-copy tests: a config for the test's own bucket, archive-like files,
and a recorder of every request a client sends (botocore's event system)."""

from __future__ import annotations

import hashlib
import random
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from daemon.remote.settings import RemoteConfig
from tests.remote_server import RealEndpoint, S3Server

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MIB = 1 << 20
WS = "0123456789abcdef0123456789abcdef"
NAME = "training_backup_20260304_050607.zip"


def config(s3: S3Server | RealEndpoint, **overrides: Any) -> RemoteConfig:
    """A config for a fresh bucket (or folder) of the test's own; parts of 5 MiB."""
    fields: dict[str, Any] = {"endpoint_url": s3.endpoint_url, "part_size_mb": 5}
    return RemoteConfig(url=s3.fresh_url(), **{**fields, **overrides})


def needs_moto(s3: S3Server | RealEndpoint) -> None:
    """Skip a test that pauses the server or needs its fake keys on a real endpoint."""
    if not s3.can_pause:
        pytest.skip("needs the local moto server (a real endpoint is configured)")


def archive_file(folder: Path, name: str = NAME, *, size: int = 256 * 1024, seed: int = 0) -> Path:
    """A file of ``size`` seeded random bytes named like an archive."""
    path = folder / name
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Recorder:
    """The operations a client calls and the headers of every request it sends (retries
    included), in order."""

    def __init__(self, client: S3Client) -> None:
        self.ops: list[str] = []
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()
        client.meta.events.register("before-call.s3", self._call)
        client.meta.events.register("before-send.s3", self._send)

    def _call(self, model: Any, **kwargs: Any) -> None:
        with self._lock:
            self.ops.append(model.name)

    def _send(self, request: Any, **kwargs: Any) -> None:
        headers = {
            k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()
        }
        with self._lock:
            self.requests.append((request.method, headers))

    def count(self, op: str) -> int:
        return self.ops.count(op)

    def clear(self) -> None:
        with self._lock:
            self.ops.clear()
            self.requests.clear()
