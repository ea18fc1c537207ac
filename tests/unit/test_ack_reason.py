"""The ack's optional ``reason``: written only with ``ready: false``, old acks still read;
a trainer that gets a refusal goes on at once; the status text says the daemon waits."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from daemon import protocol
from daemon.eventlog.fold import State
from daemon.service.texts import status_text


def test_an_ack_without_reason_is_written_and_read_as_before(tmp_path: Path) -> None:
    ack = protocol.Ack(session_id="s", ready=True, archive="a.zip")
    assert json.loads(ack.to_json()) == {"session_id": "s", "ready": True, "archive": "a.zip"}
    old = '{"session_id": "s", "ready": true, "archive": null}'
    assert protocol.Ack.from_json(old) == protocol.Ack("s", True, None, None)


def test_a_refusal_carries_its_reason_both_ways() -> None:
    ack = protocol.Ack(session_id="s", ready=False, archive=None, reason="disk full: x")
    assert protocol.Ack.from_json(ack.to_json()) == ack


def test_a_reason_that_is_not_text_is_refused() -> None:
    bad = '{"session_id": "s", "ready": false, "archive": null, "reason": 3}'
    with pytest.raises(protocol.LockFileError, match="'reason'"):
        protocol.Ack.from_json(bad, source="ack")


def test_wait_for_ack_returns_a_refusal_at_once(tmp_path: Path) -> None:
    lock = tmp_path / "training.lock"
    refusal = protocol.Ack(session_id="s1", ready=False, archive=None, reason="read-only")
    writer = threading.Timer(0.2, protocol.write_ack, args=(lock, refusal))
    writer.start()
    began = time.monotonic()
    got = protocol.wait_for_ack(lock, "s1", 60.0)
    writer.join()
    assert got == refusal and time.monotonic() - began < 10


def test_an_ack_for_another_session_is_not_an_answer(tmp_path: Path) -> None:
    lock = tmp_path / "training.lock"
    protocol.write_ack(lock, protocol.Ack(session_id="old", ready=False, archive=None, reason="x"))
    assert protocol.wait_for_ack(lock, "new", 0.3) is None


def test_status_text_leads_with_the_disk_wait() -> None:
    text = status_text(None, State(), stopping=False, waiting="waiting for disk space: /x (full)")
    assert text == "waiting for disk space: /x (full)"
    assert status_text(None, State(), stopping=False).startswith("idle")
