"""Damaged ``.zip`` files: flagged in the manifest by the engine, ModelInvalid from the daemon."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from daemon.archive import create_archive, read_manifest, verify_archive
from daemon.archive.manifest import Manifest, MemberRecord
from daemon.archive.zipcheck import is_model_zip, zip_problem_at
from daemon.eventlog.events import FileCreated, FileDeleted, FileModified, FileMoved, ModelInvalid
from daemon.eventlog.fold import FileInfo
from daemon.service.model_check import ModelChecker
from tests.archive_helpers import unzip_test, write_model_zip


def _model_bytes() -> bytes:
    path_buf = io.BytesIO()
    with zipfile.ZipFile(path_buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("data", json.dumps({"policy_class": "ActorCriticPolicy"}))
        z.writestr("policy.pth", os.urandom(4000))
    return path_buf.getvalue()


@pytest.fixture
def good(tmp_path: Path) -> Path:
    path = tmp_path / "good.zip"
    write_model_zip(path, 20_000, np.random.default_rng(3))
    return path


def test_a_good_zip_has_no_problem(good: Path) -> None:
    assert zip_problem_at(good) is None


@pytest.mark.parametrize("cut", [1, 22, 100, 5000])
def test_a_truncated_zip_is_named(good: Path, tmp_path: Path, cut: int) -> None:
    broken = tmp_path / "broken.zip"
    broken.write_bytes(good.read_bytes()[:-cut])
    problem = zip_problem_at(broken)
    assert problem is not None and problem.startswith("not a valid zip")


def _stored_model(tmp_path: Path) -> bytes:
    """Shaped like a real SB3 model: stored members, ``policy.pth`` itself a zip."""
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00." * 20)
        z.writestr("archive/data/0", os.urandom(6000))
    outer = io.BytesIO()
    with zipfile.ZipFile(outer, "w", zipfile.ZIP_STORED) as z:
        z.writestr("data", json.dumps({"policy_class": "ActorCriticPolicy"}) * 50)
        z.writestr("policy.pth", inner.getvalue())
        z.writestr("policy.optimizer.pth", os.urandom(9000))
    return outer.getvalue()


@pytest.mark.parametrize("keep", [0.5, 0.66, 0.8, 0.9])
def test_a_truncated_model_holding_a_zip_is_named(tmp_path: Path, keep: float) -> None:
    data = _stored_model(tmp_path)
    whole = tmp_path / "whole.zip"
    whole.write_bytes(data)
    assert zip_problem_at(whole) is None
    broken = tmp_path / "broken.zip"
    broken.write_bytes(data[: int(len(data) * keep)])
    with zipfile.ZipFile(broken):  # zipfile alone takes the inner zip for the whole
        pass
    problem = zip_problem_at(broken)
    assert problem is not None and problem.startswith("not a valid zip")


def test_bytes_before_the_zip_are_named(tmp_path: Path, good: Path) -> None:
    path = tmp_path / "prefixed.zip"
    path.write_bytes(b"junk" * 100 + good.read_bytes())
    assert zip_problem_at(path) == "not a valid zip: 400 unexpected bytes before the zip data"


def test_a_zip_with_a_comment_or_a_zip64_member_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "c.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("a", b"x" * 100)
        z.comment = b"a comment at the end"
    assert zip_problem_at(path) is None
    with zipfile.ZipFile(path, "w") as z, z.open("big", "w", force_zip64=True) as member:
        member.write(b"y" * 1000)
    assert zip_problem_at(path) is None


@pytest.mark.parametrize("content", [b"", b"hello, not a zip\n" * 100, b"PK\x03\x04" + b"\0" * 40])
def test_garbage_and_empty_files_are_named(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.zip"
    path.write_bytes(content)
    assert zip_problem_at(path) is not None


def test_vanished_is_none_and_symlink_is_not_followed(good: Path, tmp_path: Path) -> None:
    assert zip_problem_at(tmp_path / "missing.zip") is None
    link = tmp_path / "link.zip"
    link.symlink_to(good)
    problem = zip_problem_at(link)
    assert problem is not None and problem.startswith("cannot open")


def test_model_zip_paths() -> None:
    assert is_model_zip("models/memory_efficient_model_final.zip")
    assert is_model_zip("models/checkpoints/rl_model_100_steps.ZIP")
    assert not is_model_zip("logs/bundle.zip")
    assert not is_model_zip("models/weights.pth")
    assert not is_model_zip("models/.memory_efficient_model_final.tmp-12.zip")
    assert not is_model_zip("models/.hidden/x.zip")
    assert not is_model_zip("models.zip")


# --- the archive engine -------------------------------------------------------


def test_archive_flags_a_damaged_zip_and_still_verifies(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "models").mkdir(parents=True)
    (ws / "logs").mkdir()
    data = _model_bytes()
    (ws / "models/good.zip").write_bytes(data)
    truncated = data[: len(data) // 2]
    (ws / "models/broken.zip").write_bytes(truncated)
    (ws / "logs/notes.txt").write_text("not a zip, not checked\n")
    result = create_archive(ws, tmp_path / "out", reason="manual")

    manifest = read_manifest(result.path)
    broken, good_rec = manifest.member("models/broken.zip"), manifest.member("models/good.zip")
    notes = manifest.member("logs/notes.txt")
    assert broken is not None and good_rec is not None and notes is not None
    assert broken.damaged is not None and "not a valid zip" in broken.damaged
    assert good_rec.damaged is None and notes.damaged is None
    assert verify_archive(result.path).ok
    unzip_test(result.path)
    with zipfile.ZipFile(result.path) as z:
        assert z.read("models/broken.zip") == truncated  # faithfully, as it was
        text = z.read("MANIFEST.json").decode()
    assert text.count('"damaged"') == 1  # omitted for good members


def test_manifest_round_trips_damaged_and_rejects_a_bad_type() -> None:
    manifest = Manifest(
        format_version=1,
        archive_id="a" * 32,
        reason="manual",
        session_id=None,
        created_at="2026-01-01T00:00:00+00:00",
        members=(
            MemberRecord("models/a.zip", 3, "0" * 64, 1.0, damaged="not a valid zip: truncated"),
            MemberRecord("models/b.zip", 3, "1" * 64, 1.0),
        ),
    )
    assert Manifest.from_json(manifest.to_json()) == manifest
    doc = json.loads(manifest.to_json())
    assert "damaged" not in doc["members"][1]
    doc["members"][1]["damaged"] = None  # null is accepted as "fine"
    assert Manifest.from_json(json.dumps(doc)).members[1].damaged is None
    doc["members"][0]["damaged"] = 5
    with pytest.raises(ValueError, match=r"members\[0\]\.damaged"):
        Manifest.from_json(json.dumps(doc))


# --- the daemon's checker -----------------------------------------------------


class Probe:
    """Answers from a table and counts the paths probed."""

    def __init__(self, answers: dict[str, str | None]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def __call__(self, path: Path) -> str | None:
        self.calls.append(path.name)
        return self.answers.get(path.name)


def test_checker_reports_each_damaged_version_once(tmp_path: Path) -> None:
    probe = Probe({"bad.zip": "not a valid zip: File is not a zip file"})
    checker = ModelChecker(tmp_path, probe)
    created = FileCreated(path="models/bad.zip", area="models", size=10, mtime_ns=5)
    assert checker.check([created]) == [
        ModelInvalid(
            path="models/bad.zip",
            error="not a valid zip: File is not a zip file",
            size=10,
            mtime_ns=5,
        )
    ]
    assert checker.check([created]) == []  # the same version: not again, not even probed
    assert checker.check_files({"models/bad.zip": FileInfo(10, 5)}) == []
    assert probe.calls == ["bad.zip"]
    changed = FileModified(path="models/bad.zip", area="models", size=11, mtime_ns=6)
    assert [e.size for e in checker.check([changed])] == [11]  # a new version is checked


def test_checker_looks_only_at_model_zips(tmp_path: Path) -> None:
    probe = Probe({})
    checker = ModelChecker(tmp_path, probe)
    events = [
        FileCreated(path="logs/x.zip", area="logs"),
        FileCreated(path="models/w.pth", area="models"),
        FileCreated(path="models/.final.tmp-1.zip", area="models"),
        FileDeleted(path="models/gone.zip", area="models"),
        FileMoved(path="models/a.zip", area="models", dest_path="models/moved.zip", size=3),
        FileCreated(path="models/checkpoints/ok.zip", area="models", size=4),
    ]
    assert checker.check(events) == []
    assert probe.calls == ["moved.zip", "ok.zip"]


def test_checker_remembers_what_the_log_reported(tmp_path: Path) -> None:
    probe = Probe({"bad.zip": "not a valid zip"})
    checker = ModelChecker(tmp_path, probe)
    checker.remember([ModelInvalid(path="models/bad.zip", error="x", size=10, mtime_ns=5), None])
    assert checker.check_files({"models/bad.zip": FileInfo(10, 5)}) == []
    assert probe.calls == []


def test_checker_probes_real_files(tmp_path: Path, good: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models/good.zip").write_bytes(good.read_bytes())
    (tmp_path / "models/bad.zip").write_bytes(good.read_bytes()[:300])
    checker = ModelChecker(tmp_path)
    files = {
        rel: FileInfo(st.st_size, st.st_mtime_ns)
        for rel in ("models/good.zip", "models/bad.zip")
        for st in [os.stat(tmp_path / rel)]
    }
    found = checker.check_files(files)
    assert [e.path for e in found] == ["models/bad.zip"]
    assert found[0].size == 300 and found[0].error.startswith("not a valid zip")
