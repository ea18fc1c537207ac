"""``metrics_file`` written by a real daemon after real archives, checked against ``list``."""

from __future__ import annotations

import json
import signal
from datetime import datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.daemon_helpers import (
    DaemonProcess,
    FakeTrainer,
    NotifySocket,
    make_daemon_workspace,
    wait_until,
)
from tests.e2e_helpers import daemon_cli

P = "training_archiver_"


def samples(path: Path) -> dict[str, float]:
    """Every sample of the textfile by name (and ``state`` label for the session state)."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(path.read_text()):
        for s in family.samples:
            key = s.name if "state" not in s.labels else f"{s.name}[{s.labels['state']}]"
            out[key] = s.value
    return out


def test_the_metrics_file_follows_archives_and_says_down_at_stop(
    tmp_path: Path, notify: NotifySocket
) -> None:
    textfile = tmp_path / "textfile" / "training_archiver.prom"
    textfile.parent.mkdir()
    ws = make_daemon_workspace(tmp_path / "ws", metrics_file=str(textfile))
    daemon = DaemonProcess(ws, notify)
    try:
        daemon.wait_ready(60)
        start = samples(textfile)  # written at start
        assert start[P + "up"] == 1.0
        assert start[P + "last_archive_success_timestamp_seconds"] == 0.0
        assert start[P + "session_state[none]"] == 1.0

        trainer = FakeTrainer(ws)
        assert trainer.start(ack_timeout_s=60) is not None
        trainer.write_logs()
        trainer.stop()
        daemon.wait_event("ArchiveVerified", timeout=60, name=_final_name(daemon, trainer))

        def settled() -> dict[str, float] | None:
            now = samples(textfile)
            done = now[P + "archives"] == 2 and now[P + "session_state[stopped]"] == 1.0
            return now if done else None

        figures = wait_until(settled, 30, "the metrics file to show both archives")
        listed = json.loads(daemon_cli(ws, "list", "--json").stdout)
        status = json.loads(daemon_cli(ws, "status", "--json").stdout)
        print(textfile.read_text())
        assert figures[P + "archives"] == len(listed) == status["archives"] == 2
        assert figures[P + "archive_bytes"] == sum(a["bytes"] for a in listed)
        newest = max(datetime.fromisoformat(a["created_at"]).timestamp() for a in listed)
        assert figures[P + "last_archive_success_timestamp_seconds"] == pytest.approx(newest)
        assert figures[P + "archives_created_total"] == 2
        assert figures[P + "archive_failures_total"] == status["archive_failures"] == 0
        assert figures[P + "up"] == 1.0
    finally:
        code = daemon.terminate(60)
    assert code == 0, daemon.stderr()
    assert samples(textfile)[P + "up"] == 0.0  # the last write, at stop
    assert not [p for p in textfile.parent.iterdir() if p.name.startswith(".")]  # no temp left


def test_an_unwritable_metrics_folder_is_a_warning_not_a_crash(
    tmp_path: Path, notify: NotifySocket
) -> None:
    missing = tmp_path / "no-such-folder" / "training_archiver.prom"
    ws = make_daemon_workspace(tmp_path / "ws", metrics_file=str(missing))
    daemon = DaemonProcess(ws, notify)
    try:
        daemon.wait_ready(60)
        out = daemon.stdout_path
        wait_until(lambda: "cannot write the metrics file" in out.read_text(), 30, "the warning")
        assert daemon.proc.poll() is None
    finally:
        assert daemon.terminate(60) == 0, daemon.stderr()
    assert not missing.parent.exists()


def test_a_bad_metrics_file_key_is_exit_2_naming_it(tmp_path: Path) -> None:
    ws = make_daemon_workspace(tmp_path / "ws", metrics_file="metrics.txt")
    done = daemon_cli(ws, "status", expect=2)
    assert "metrics_file" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    ws2 = make_daemon_workspace(tmp_path / "ws2", metrics_file="logs/x.prom")
    done = daemon_cli(ws2, "status", expect=2)
    assert "metrics_file" in done.stderr and "logs/" in done.stderr


def _final_name(daemon: DaemonProcess, trainer: FakeTrainer) -> str:
    done = daemon.wait_event(
        "ArchiveCompleted", timeout=60, session_id=trainer.session_id, reason="post_training"
    )
    return str(done.data["name"])


def test_metrics_turned_on_by_a_reload_count_the_archives_made_before(
    tmp_path: Path, notify: NotifySocket
) -> None:
    """Without ``metrics_file`` the daemon does not read its whole history at start; a
    reload that sets it loads the tally then, so the counters still cover all time."""
    ws = make_daemon_workspace(tmp_path / "ws")
    daemon = DaemonProcess(ws, notify)
    try:
        daemon.wait_ready(60)
        trainer = FakeTrainer(ws)
        assert trainer.start(ack_timeout_s=60) is not None
        trainer.write_logs()
        trainer.stop()
        daemon.wait_event("ArchiveVerified", timeout=60, name=_final_name(daemon, trainer))
        textfile = tmp_path / "textfile" / "training_archiver.prom"
        textfile.parent.mkdir()
        config = ws / "config" / "config.json"
        doc = json.loads(config.read_text())
        config.write_text(json.dumps({**doc, "metrics_file": str(textfile)}))
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_event("ConfigReloaded", timeout=30)
        wait_until(textfile.exists, 30, "the metrics file after the reload")
        figures = samples(textfile)
        assert figures[P + "archives_created_total"] == 2  # pre_training and post_training
        assert figures[P + "archives"] == 2
    finally:
        assert daemon.terminate(60) == 0, daemon.stderr()
