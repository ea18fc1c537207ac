"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_helpers import NotifySocket
from tests.remote_server import s3, s3_server  # noqa: F401 - fixtures: a real S3 endpoint


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    """systemd's notify socket, drained in the background as systemd does (a module may
    define its own ``notify`` to read the messages itself)."""
    sock = NotifySocket(tmp_path)
    sock.drain_in_background()
    yield sock
    sock.close()
