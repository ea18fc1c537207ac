"""The metrics textfile: names, values, the atomic write; read back with the parser."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from daemon import metrics
from daemon.metrics import Figures

REPO = Path(__file__).resolve().parents[2]
FIGURES = Figures(
    workspace="/srv/training",
    archives=3,
    archive_bytes=123_456_789,
    archives_created_total=7,
    archive_failures_total=2,
    last_archive_success_timestamp=1_780_000_000.5,
    pruned_total=4,
    last_prune_timestamp=1_780_000_100.0,
    uploads_total=6,
    upload_failures_total=1,
    pending_uploads=1,
    session_state="running",
)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    key = (name, tuple(sorted({"workspace": "/srv/training", **labels}.items())))
    return samples(text)[key]


def test_the_file_holds_the_figures(tmp_path: Path) -> None:
    path = tmp_path / "training_archiver.prom"
    metrics.write_textfile(path, FIGURES)
    text = path.read_text()
    assert value(text, "training_archiver_up") == 1
    assert value(text, "training_archiver_archives") == 3
    assert value(text, "training_archiver_archive_bytes") == 123_456_789
    assert value(text, "training_archiver_archives_created_total") == 7
    assert value(text, "training_archiver_archive_failures_total") == 2
    assert (
        value(text, "training_archiver_last_archive_success_timestamp_seconds") == 1_780_000_000.5
    )
    assert value(text, "training_archiver_archives_pruned_total") == 4
    assert value(text, "training_archiver_last_prune_timestamp_seconds") == 1_780_000_100
    assert value(text, "training_archiver_uploads_total") == 6
    assert value(text, "training_archiver_upload_failures_total") == 1
    assert value(text, "training_archiver_pending_uploads") == 1
    states = {
        state: value(text, "training_archiver_session_state", state=state)
        for state in metrics.SESSION_STATES
    }
    assert states == {"none": 0, "starting": 0, "running": 1, "stopped": 0, "abandoned": 0}


def test_names_types_and_help_follow_the_conventions() -> None:
    families = list(text_string_to_metric_families(metrics.render(FIGURES).decode()))
    assert families
    for family in families:
        assert family.name.startswith("training_archiver_")
        assert family.documentation, family.name
        assert family.type in ("gauge", "counter"), family.name
        for sample in family.samples:
            assert sample.name.endswith("_total") == (family.type == "counter"), sample.name
            assert not re.search(r"_(milliseconds|ms|kb|mb|megabytes)\b", sample.name)
    required = {
        "training_archiver_last_archive_success_timestamp_seconds",
        "training_archiver_archives",
        "training_archiver_archive_bytes",
        "training_archiver_archive_failures_total",
        "training_archiver_up",
    }
    assert required <= set(metrics.metric_names())


def test_times_that_never_happened_are_zero_and_a_stopped_daemon_is_down() -> None:
    text = metrics.render(Figures(workspace="/srv/training", up=False)).decode()
    assert value(text, "training_archiver_up") == 0
    assert value(text, "training_archiver_last_archive_success_timestamp_seconds") == 0
    assert value(text, "training_archiver_session_state", state="none") == 1


def test_bad_figures_are_value_errors() -> None:
    with pytest.raises(ValueError, match="session_state"):
        Figures(workspace="w", session_state="dancing")
    with pytest.raises(ValueError, match="archives"):
        Figures(workspace="w", archives=-1)


def test_the_write_is_atomic_readable_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "training_archiver.prom"
    path.write_text("old\n")
    before = path.stat().st_ino
    old_umask = os.umask(0o077)
    try:
        metrics.write_textfile(path, FIGURES)
    finally:
        os.umask(old_umask)
    assert path.stat().st_ino != before  # replaced by rename, never rewritten in place
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # node_exporter is another user
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "training_archiver.prom"
    metrics.write_textfile(path, FIGURES)
    old = path.read_bytes()

    def fail(src: object, dst: object) -> None:
        assert Path(str(src)).parent == tmp_path  # the temporary file is in the same folder
        assert Path(str(src)).name.startswith(".") and not str(src).endswith(".prom")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="No space"):
        metrics.write_textfile(path, Figures(workspace="/srv/training", archives=9))
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_the_alert_rules_parse_and_name_existing_metrics() -> None:
    rules = yaml.safe_load((REPO / "deploy/prometheus-alerts.yml").read_text())
    (group,) = rules["groups"]
    alerts = {rule["alert"]: rule for rule in group["rules"]}
    assert set(alerts) == {
        "TrainingArchiverNoRecentArchive",
        "TrainingArchiverArchiveFailures",
        "TrainingArchiverUploadsFailing",
    }
    known = set(metrics.metric_names())
    for rule in alerts.values():
        assert rule["annotations"]["summary"]
        named = set(re.findall(r"training_archiver_\w+", rule["expr"]))
        assert named and named <= known, rule["expr"]
