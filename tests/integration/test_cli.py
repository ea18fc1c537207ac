"""The command line as a user runs it: real subprocesses on real workspaces and zips."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.archive_helpers import make_workspace, tree_digest

LIST_FIELDS = {
    "name",
    "path",
    "bytes",
    "created_at",
    "reason",
    "session_id",
    "verified",
    "pinned",
}


def cli(ws: Path, *args: str, check: int | None = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "daemon", *args, "--workspace", str(ws)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stdout, proc.stderr)
    return proc


def cli_json(ws: Path, *args: str) -> Any:
    return json.loads(cli(ws, *args, "--json").stdout)


def unzip_ok(path: Path) -> None:
    out = subprocess.run(["unzip", "-tq", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = make_workspace(tmp_path / "ws", text_mb=0.3, binary_mb=0.3, seed=7)
    (root / "config" / "config.json").write_text(json.dumps({"keep_last": 2}))
    return root


def test_archive_list_verify_and_events(ws: Path):
    made = cli_json(ws, "archive")
    assert set(made) >= LIST_FIELDS
    assert made["reason"] == "manual"
    assert made["verified"] is True
    path = Path(made["path"])
    assert path.parent == ws / "archives"
    unzip_ok(path)
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read("MANIFEST.json"))
        names = set(zf.namelist())
    assert manifest["reason"] == "manual"
    assert {m["path"] for m in manifest["members"]} | {"MANIFEST.json"} == names
    assert any(n.startswith("root_checkpoints/") for n in names)

    listed = cli_json(ws, "list")
    assert [e["name"] for e in listed] == [made["name"]]
    assert set(listed[0]) >= LIST_FIELDS

    verified = cli_json(ws, "verify")
    assert [(v["name"], v["ok"]) for v in verified] == [(made["name"], True)]

    lines = cli(ws, "events", "--json").stdout.splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert {"ArchiveStarted", "ArchiveCompleted", "ArchiveVerified"} <= {e["type"] for e in events}
    assert all(set(e) == {"seq", "ts", "type", "data"} for e in events)
    only = cli(ws, "events", "--json", "--type", "ArchiveCompleted").stdout.splitlines()
    assert [json.loads(line)["data"]["name"] for line in only] == [made["name"]]

    status = cli_json(ws, "status")
    assert status["daemon"] == {**status["daemon"], "running": False, "pid": None}
    assert status["archives"] == 1
    assert status["last_seq"] == len(events)
    assert "session" in status


def test_rotation_keeps_the_newest_pinned_survive(ws: Path):
    first = cli_json(ws, "archive")["name"]
    cli(ws, "pin", first)
    names = [cli_json(ws, "archive")["name"] for _ in range(3)]
    kept = [e["name"] for e in cli_json(ws, "list")]
    assert kept == [first, *names[-2:]]
    assert [e["pinned"] for e in cli_json(ws, "list")] == [True, False, False]
    cli(ws, "unpin", first)
    plan = cli_json(ws, "prune", "--dry-run")
    assert [d["name"] for d in plan if d["delete"]] == [first]
    assert first in [e["name"] for e in cli_json(ws, "list")]  # dry run deleted nothing
    cli(ws, "prune")
    assert [e["name"] for e in cli_json(ws, "list")] == names[-2:]
    pruned = cli(ws, "events", "--json", "--type", "ArchivePruned").stdout.splitlines()
    assert {json.loads(line)["data"]["name"] for line in pruned} == {first, names[0]}


def test_restore_round_trips_exactly(ws: Path, tmp_path: Path):
    made = cli_json(ws, "archive")
    target = tmp_path / "restored"
    proc = cli(ws, "restore", made["name"], "--to", str(target))
    assert "restored" in proc.stdout
    original = {k: v for k, v in tree_digest(ws).items() if k.split("/")[0] in ("logs", "models")}
    back = {k: v for k, v in tree_digest(target).items() if k.split("/")[0] in ("logs", "models")}
    assert {k: (s, c) for k, (s, _, c) in back.items()} == {
        k: (s, c) for k, (s, _, c) in original.items()
    }
    again = cli(ws, "restore", made["path"], "--to", str(target), check=2)
    assert "must be an empty folder or not exist" in again.stderr


def test_verify_names_the_corrupt_member_and_exits_1(ws: Path):
    made = cli_json(ws, "archive")
    path = Path(made["path"])
    with zipfile.ZipFile(path) as zf:
        info = next(i for i in zf.infolist() if i.filename.startswith("logs/") and i.file_size)
    data = bytearray(path.read_bytes())
    data[info.header_offset + 30 + len(info.filename) + 5] ^= 0xFF
    path.write_bytes(bytes(data))
    proc = cli(ws, "verify", made["name"], check=1)
    assert info.filename in proc.stdout
    assert "FAILED" in proc.stdout


@pytest.mark.parametrize(
    ("args", "config", "message"),
    [
        (("archive",), '{"keep_last": "two"}', "config.json: key 'keep_last' must be an integer"),
        (("list",), "{", "config.json: not valid JSON"),
        (("status",), '{"frobnicate": 1}', "unknown key 'frobnicate'"),
        (("verify", "nope.zip"), None, "no archive 'nope.zip'"),
        (
            ("pin", "training_backup_20260101_000000.zip"),
            None,
            "no archive 'training_backup_20260101_000000.zip'",
        ),
        (("archive", "--reason", "because"), None, "invalid choice: 'because'"),
        (("restore", "x.zip"), None, "the following arguments are required: --to"),
        (("frobnicate",), None, "invalid choice"),
        (("events", "--type", "ArchiveComplete"), None, "unknown event type 'ArchiveComplete'"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_touches_nothing(tmp_path: Path, args, config, message):
    ws = make_workspace(tmp_path / "ws", text_mb=0.05, binary_mb=0.05, seed=1)
    if config is not None:
        (ws / "config" / "config.json").write_text(config)
    before = tree_digest(ws)
    proc = cli(ws, *args, check=2)
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr
    assert tree_digest(ws) == before
    assert not (ws / ".daemon").exists()


def test_a_missing_workspace_is_bad_input(tmp_path: Path):
    proc = cli(tmp_path / "nowhere", "status", check=2)
    assert "nowhere is not a folder" in proc.stderr


def test_read_only_commands_on_a_fresh_workspace_create_nothing(tmp_path: Path):
    ws = tmp_path / "ws"
    ws.mkdir()
    assert cli_json(ws, "list") == []
    assert cli_json(ws, "status")["archives"] == 0
    assert cli(ws, "events").stdout == ""
    assert list(ws.iterdir()) == []


def test_help_explains_every_command(tmp_path: Path):
    out = subprocess.run(
        [sys.executable, "-m", "daemon", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for verb in ("run", "status", "archive", "list", "verify", "restore", "prune", "events", "pin"):
        assert verb in out
    assert "exit codes" in out


def test_unsafe_archive_is_refused_with_exit_1_writing_nothing(tmp_path: Path):
    ws = tmp_path / "ws"
    (ws / "archives").mkdir(parents=True)
    evil = ws / "archives" / "training_backup_20260101_000000.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("logs/ok.txt", "fine")
        zf.writestr("../escaped.txt", "bad")
    target = tmp_path / "out"
    proc = cli(ws, "restore", evil.name, "--to", str(target), check=1)
    assert "escaped.txt" in proc.stderr
    assert not (tmp_path / "escaped.txt").exists()
    assert not target.exists() or not any(target.iterdir())


def test_verifying_a_copy_elsewhere_says_nothing_about_the_local_archive(ws: Path, tmp_path: Path):
    made = cli_json(ws, "archive")
    copy = tmp_path / "usb" / made["name"]
    copy.parent.mkdir()
    data = bytearray(Path(made["path"]).read_bytes())
    data[len(data) // 3] ^= 0xFF
    copy.write_bytes(bytes(data))
    cli(ws, "verify", str(copy), check=1)
    assert cli_json(ws, "list")[0]["verified"] is True
    verified = cli(ws, "events", "--json", "--type", "ArchiveVerified").stdout.splitlines()
    assert [json.loads(line)["data"]["ok"] for line in verified] == [True]
    proc = cli(ws, "pin", str(copy), check=2)
    assert "is not in the archive folder" in proc.stderr
