"""verify_archive: every kind of damage is found, named, and never raises."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest

from daemon.archive import ArchiveResult, create_archive, read_manifest, verify_archive
from daemon.archive.zipreader import data_offset, read_entries
from daemon.errors import ArchiveError
from tests.archive_helpers import make_workspace, unzip_test


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> ArchiveResult:
    root = tmp_path_factory.mktemp("verify")
    ws = make_workspace(root / "ws", text_mb=0.5, binary_mb=0.5, seed=11)
    result = create_archive(ws, root / "out", reason="manual")
    unzip_test(result.path)
    return result


@pytest.fixture
def copy(made, tmp_path) -> Path:
    dst = tmp_path / made.name
    dst.write_bytes(made.path.read_bytes())
    return dst


def _flip_in_member(path: Path, member: str) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        entry = next(e for e in read_entries(fd) if e.name == member)
        at = data_offset(fd, entry) + entry.csize // 2
        byte = os.pread(fd, 1, at)
        os.pwrite(fd, bytes([byte[0] ^ 0x55]), at)
    finally:
        os.close(fd)


def _rewrite(src: Path, dst: Path, edit) -> None:
    """Copy the zip member by member through zipfile (CRCs recomputed), letting ``edit`` act."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = edit(info.filename, zin.read(info))
            if data is not None:
                zout.writestr(info.filename, data)


def test_a_good_archive_verifies(made):
    result = verify_archive(made.path)
    assert result.ok and result.problems == ()
    assert result.members == len(made.manifest.members) and result.manifest == made.manifest


@pytest.mark.parametrize(
    "member",
    ["models/memory_efficient_model_final.zip", "logs/trades/trade_execution.log"],
    ids=["stored", "deflated"],
)
def test_a_flipped_byte_is_found_and_the_member_named(copy, member):
    _flip_in_member(copy, member)
    result = verify_archive(copy)
    assert not result.ok
    assert result.problems and all(p.startswith(f"{member}: ") for p in result.problems)


def test_a_sha256_mismatch_with_correct_crcs_is_found(copy, tmp_path):
    def tamper_manifest(name: str, data: bytes) -> bytes:
        if name != "MANIFEST.json":
            return data
        doc = json.loads(data)
        doc["members"][0]["sha256"] = "0" * 64
        return json.dumps(doc).encode()

    bad = tmp_path / "bad.zip"
    _rewrite(copy, bad, tamper_manifest)
    with zipfile.ZipFile(bad) as z:
        assert z.testzip() is None  # every CRC is right
    first = read_manifest(copy).members[0].path
    result = verify_archive(bad)
    assert not result.ok and result.problems == (f"{first}: sha256 differs from MANIFEST.json",)


def test_content_swapped_behind_the_manifest_is_found(copy, tmp_path):
    bad = tmp_path / "bad.zip"
    _rewrite(copy, bad, lambda n, d: b"forged" if n == "config/config.json" else d)
    result = verify_archive(bad)
    assert result.problems == ("config/config.json: sha256 differs from MANIFEST.json",)


def test_missing_extra_and_absent_members_are_named(copy, tmp_path):
    no_manifest = tmp_path / "a.zip"
    _rewrite(copy, no_manifest, lambda n, d: None if n == "MANIFEST.json" else d)
    assert verify_archive(no_manifest).problems == ("MANIFEST.json: missing",)

    dropped = tmp_path / "b.zip"
    _rewrite(copy, dropped, lambda n, d: None if n == "config/config.json" else d)
    assert verify_archive(dropped).problems == (
        "config/config.json: listed in MANIFEST.json but missing from the archive",
    )

    extra = tmp_path / "c.zip"
    _rewrite(copy, extra, lambda n, d: d)
    with zipfile.ZipFile(extra, "a") as z:
        z.writestr("logs/smuggled.txt", b"not in the manifest")
    assert verify_archive(extra).problems == ("logs/smuggled.txt: not listed in MANIFEST.json",)


@pytest.mark.parametrize("keep", [0.5, 0.999], ids=["half", "last-bytes-cut"])
def test_a_truncated_archive_is_reported_not_raised(copy, keep):
    data = copy.read_bytes()
    copy.write_bytes(data[: int(len(data) * keep)])
    result = verify_archive(copy)
    assert not result.ok and result.problems[0].startswith("not a readable zip")


def test_garbage_empty_and_missing_files_are_reported(tmp_path):
    (tmp_path / "garbage.zip").write_bytes(os.urandom(5000))
    (tmp_path / "empty.zip").write_bytes(b"")
    for name in ("garbage.zip", "empty.zip", "missing.zip"):
        result = verify_archive(tmp_path / name)
        assert not result.ok and result.members == 0 and result.manifest is None
        assert len(result.problems) == 1


def test_a_damaged_central_directory_is_reported(copy):
    data = bytearray(copy.read_bytes())
    cd = data.rfind(b"PK\x01\x02")
    data[cd : cd + 4] = b"XXXX"
    copy.write_bytes(bytes(data))
    result = verify_archive(copy)
    assert not result.ok and "central directory" in result.problems[0]


def test_read_manifest_raises_a_clear_error_for_a_non_archive(tmp_path):
    (tmp_path / "x.zip").write_bytes(b"nope")
    with pytest.raises(ArchiveError, match=r"x\.zip"):
        read_manifest(tmp_path / "x.zip")
    with pytest.raises(ArchiveError, match="cannot open"):
        read_manifest(tmp_path / "missing.zip")
