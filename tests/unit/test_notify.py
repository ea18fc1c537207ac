"""sd_notify over real unix datagram sockets (path and abstract), and the health file."""

from __future__ import annotations

import json
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.service.notify import (
    SEND_TIMEOUT_S,
    Health,
    Notifier,
    format_message,
    socket_address,
    watchdog_interval,
)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(5)
    yield sock, str(tmp_path / "notify")
    sock.close()


def test_messages_reach_a_path_socket(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    n = Notifier.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"}, pid=1)
    assert n.enabled and n.watchdog_s == 2.0
    assert n.ready("idle, 0 archives")
    msg = sock.recv(4096).decode().splitlines()
    assert "READY=1" in msg and "STATUS=idle, 0 archives" in msg
    assert n.status("idle, 0 archives")  # unchanged: not sent again
    assert n.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert n.stopping("bye")
    assert sock.recv(4096) == b"STOPPING=1\nSTATUS=bye"
    n.close()


def test_messages_reach_an_abstract_socket() -> None:
    name = f"notify-test-{secrets.token_hex(6)}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(5)
    try:
        n = Notifier.from_env({"NOTIFY_SOCKET": f"@{name}"})
        assert n.status("archiving")
        assert sock.recv(4096) == b"STATUS=archiving"
    finally:
        sock.close()


def test_without_notify_socket_everything_is_a_no_op() -> None:
    n = Notifier.from_env({})
    assert not n.enabled and n.watchdog_s is None
    assert n.ready("x") is False and n.watchdog() is False


def test_a_vanished_socket_is_reported_not_raised(tmp_path: Path) -> None:
    n = Notifier(address=str(tmp_path / "nobody"))
    assert n.send(READY="1") is False


def test_watchdog_interval_parsing() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}, 5) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "5"}, 5) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "6"}, 5) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, 5) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}, 5) is None


def test_format_and_address() -> None:
    assert format_message(STATUS="two\nlines") == b"STATUS=two lines"
    assert socket_address("@sd") == b"\0sd"
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"


def test_health_file_is_written_when_due(tmp_path: Path) -> None:
    h = Health(tmp_path / ".daemon", pid=7)
    assert h.wanted("idle", 0.0)
    h.write("idle", 0.0, {"watcher": "inotify"})
    doc = json.loads((tmp_path / ".daemon/health.json").read_text())
    assert doc["pid"] == 7 and doc["status"] == "idle" and doc["watcher"] == "inotify"
    assert not h.wanted("idle", 1.0)
    assert h.wanted("archiving", 1.0) and h.wanted("idle", 10.0)
    h.remove()
    assert not (tmp_path / ".daemon/health.json").exists()


def test_a_reader_that_stops_reading_never_blocks_the_sender(
    receiver: tuple[socket.socket, str],
) -> None:
    _, path = receiver  # bound, never read: its queue fills after max_dgram_qlen datagrams
    try:
        qlen = int(Path("/proc/sys/net/unix/max_dgram_qlen").read_text())
    except (OSError, ValueError):
        qlen = 10
    n = Notifier.from_env({"NOTIFY_SOCKET": path})
    began = time.monotonic()
    sent = [n.send(STATUS=f"status {i}") for i in range(qlen + 3)]
    assert sent[0] is True and sent[-1] is False  # dropped once full, not waited for
    assert time.monotonic() - began < 3 * SEND_TIMEOUT_S + 2
    n.close()


def test_adoption_extends_the_start_timeout_per_archive_and_every_10_s(
    tmp_path: Path, receiver: tuple[socket.socket, str]
) -> None:
    from daemon.config import load_settings
    from daemon.service.loop import Daemon
    from tests.daemon_helpers import make_daemon_workspace

    sock, path = receiver
    sock.setblocking(False)  # a unix datagram is queued by the time sendto returns
    now = [100.0]
    settings = load_settings(make_daemon_workspace(tmp_path / "ws"))
    daemon = Daemon(settings, Notifier.from_env({"NOTIFY_SOCKET": path}), clock=lambda: now[0])
    sent = []
    for t, archive in [(100, "a"), (105, "a"), (110, "a"), (111, "b"), (112, "b")]:
        now[0] = t
        daemon._extend_start(archive)
        try:
            sent.append((t, sock.recv(4096).decode()))
        except BlockingIOError:
            pass
    daemon.ws.close()
    assert [t for t, _ in sent] == [100, 110, 111]
    assert all("EXTEND_TIMEOUT_USEC=60000000" in text for _, text in sent)
    assert "STATUS=verifying unrecorded archive b" in sent[-1][1]
