"""Config files are parsed at the edge; every mistake names the file and the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from daemon.config import DaemonConfig, load_settings
from daemon.errors import ConfigError


def write(ws: Path, name: str, doc: object) -> Path:
    path = ws / "config" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def test_missing_files_give_the_defaults(tmp_path: Path):
    s = load_settings(tmp_path)
    assert s.daemon == DaemonConfig()
    assert s.daemon.keep_last == 5 and s.daemon.archive_dir == "archives"
    assert s.paths.archive_dir == tmp_path.resolve() / "archives"
    assert s.paths.event_log == tmp_path.resolve() / ".daemon" / "events.sqlite3"
    assert s.logging.level == "info"


def test_repo_config_files_parse():
    repo = Path(__file__).resolve().parents[2]
    s = load_settings(repo)
    assert s.daemon.keep_last == 5 and s.paths.lock_file == repo / "training.lock"


def test_keys_may_sit_inside_one_daemon_section(tmp_path: Path):
    write(tmp_path, "config.json", {"daemon": {"keep_last": 2, "archive_dir": "/abs/arch"}})
    s = load_settings(tmp_path)
    assert s.daemon.keep_last == 2 and s.paths.archive_dir == Path("/abs/arch")


def test_ints_are_accepted_where_numbers_are_expected(tmp_path: Path):
    write(tmp_path, "config.json", {"rotation_interval_s": 5, "max_total_bytes": None})
    assert load_settings(tmp_path).daemon.rotation_interval_s == 5.0


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("config.json", "{not json", r"config\.json: not valid JSON"),
        ("config.json", "[1, 2]", r"config\.json: expected a JSON object"),
        ("config.json", {"keep_lastt": 3}, r"config\.json: unknown key 'keep_lastt'"),
        ("config.json", {"keep_last": "5"}, r"config\.json: key 'keep_last' must be an integer"),
        ("config.json", {"keep_last": True}, r"key 'keep_last' must be an integer"),
        ("config.json", {"keep_last": -1}, r"config\.json: keep_last must be >= 0"),
        ("config.json", {"polling_fallback": 1}, r"'polling_fallback' must be true or false"),
        ("config.json", {"compression_level": 0}, r"compression_level must be between"),
        ("config.json", {"retry_max_s": 0}, r"config\.json: retry_max_s must be positive"),
        ("config.json", '{"rotation_interval_s": NaN}', r"must be a finite number, got NaN"),
        ("config.json", '{"coalesce_window_s": Infinity}', r"must be a finite number"),
        ("config.json", {"archive_dir": ""}, r"archive_dir must not be empty"),
        ("config.json", {"archive_dir": "."}, r"'archive_dir' must not be the workspace"),
        ("config.json", {"archive_dir": "logs/arch"}, r"'archive_dir' must not lie inside logs/"),
        ("config.json", {"lock_file": "logs/t.lock"}, r"'lock_file' must not lie inside logs/"),
        ("config.json", {"event_log": "models/e.db"}, r"'event_log' must not lie inside models/"),
        ("logging_config.json", {"level": "loud"}, r"logging_config\.json: level must be"),
        ("logging_config.json", {"colour": True}, r"logging_config\.json: unknown key 'colour'"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path: Path, name, content, message):
    write(tmp_path, name, content)
    with pytest.raises(ConfigError, match=message):
        load_settings(tmp_path)


def test_explicit_config_file_wins(tmp_path: Path):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"keep_last": 9}))
    write(tmp_path, "config.json", {"keep_last": 1})
    assert load_settings(tmp_path, other).daemon.keep_last == 9
