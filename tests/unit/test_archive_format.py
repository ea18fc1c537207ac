"""The archive format: names, MANIFEST.json, the zip writer (zip64, rollback), chunked deflate."""

from __future__ import annotations

import hashlib
import itertools
import os
import zipfile
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.archive.manifest import (
    ARCHIVE_RE,
    TEMP_RE,
    Manifest,
    MemberRecord,
    SkippedRecord,
    archive_name,
    temp_name,
)
from daemon.archive.packer import FINAL_BLOCK, deflate_chunk
from daemon.archive.zipreader import iter_member, read_entries
from daemon.archive.zipwriter import DEFLATED, STORED, ZipWriter
from tests.archive_helpers import unzip_test

NOW = datetime(2024, 1, 5, 9, 30, 0, tzinfo=UTC)


def test_archive_names_match_the_contract():
    assert archive_name(NOW) == "training_backup_20240105_093000.zip"
    assert archive_name(NOW, 3) == "training_backup_20240105_093000_3.zip"
    for good in (archive_name(NOW), archive_name(NOW, 2), "training_backup_20240105_093000_12.zip"):
        assert ARCHIVE_RE.match(good), good
    for bad in (
        "training_backup_20240105_093000_1.zip",
        "training_backup_2024010_093000.zip",
        ".training_backup_20240105_093000.zip",
        "training_backup_20240105_093000.zip.tmp",
        temp_name(NOW, "0123456789abcdef"),
    ):
        assert not ARCHIVE_RE.match(bad), bad
    tmp = temp_name(NOW, "0123456789abcdef")
    assert tmp.startswith(".") and TEMP_RE.match(tmp)
    assert not TEMP_RE.match(archive_name(NOW)) and not TEMP_RE.match(".archive.lock")


def _manifest() -> Manifest:
    return Manifest(
        format_version=1,
        archive_id="ab" * 16,
        reason="manual",
        session_id=None,
        created_at=NOW.isoformat(),
        members=(
            MemberRecord("logs/training.log", 12, "0" * 64, 1704447000.5, 1704447000500000000),
            MemberRecord("logs/été.jsonl", 3, "f" * 64, 1.0, 1_000_000_000, changed=True),
        ),
        skipped=(SkippedRecord("logs/link", "symlink_outside_workspace", "/etc/passwd"),),
    )


def test_manifest_round_trips_and_has_the_contract_fields():
    m = _manifest()
    text = m.to_json()
    assert Manifest.from_json(text) == m
    assert Manifest.from_json(text.encode()) == m
    import json

    doc = json.loads(text)
    for key in ("format_version", "archive_id", "reason", "session_id", "created_at", "members"):
        assert key in doc
    assert set(doc["members"][0]) >= {"path", "size", "sha256", "mtime"}
    assert m.changed == ("logs/été.jsonl",)
    assert m.member("logs/training.log") is not None and m.member("nope") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not valid JSON"),
        ("[]", "not a JSON object"),
        ('{"format_version": 2}', "format_version 2"),
        (
            '{"format_version": 1, "archive_id": "x", "reason": "manual", "members": []}',
            "'created_at'",
        ),
        (
            '{"format_version": 1, "archive_id": "x", "reason": "manual", "created_at": "t",'
            ' "session_id": null, "members": [{"path": "a", "size": "1"}]}',
            r"'members\[0\]\.size' must be int",
        ),
    ],
)
def test_manifest_from_json_names_the_bad_field(text, message):
    with pytest.raises(ValueError, match=message):
        Manifest.from_json(text)


def _write_zip(path: Path, members: list[tuple[str, bytes]], **kw) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        w = ZipWriter(fd, **kw)
        for name, data in members:
            method = DEFLATED if len(data) > 10 else STORED
            body = deflate_chunk(data, b"", 1) + FINAL_BLOCK if method == DEFLATED else data
            e = w.begin(name, method=method, mtime=1704447000.0, mode=0o644, zip64=False)
            w.write(body)
            w.end(e, crc=zlib.crc32(data), csize=len(body), usize=len(data))
        w.finish()
    finally:
        os.close(fd)


def test_writer_output_is_read_by_zipfile_unzip_and_our_reader(tmp_path):
    members = [("a.txt", b"hello " * 1000), ("dir/b.bin", os.urandom(5)), ("ü/c", b"")]
    path = tmp_path / "x.zip"
    _write_zip(path, members)
    unzip_test(path)
    with zipfile.ZipFile(path) as z:
        assert [(i.filename, z.read(i)) for i in z.infolist()] == members
        assert z.getinfo("a.txt").compress_type == zipfile.ZIP_DEFLATED
        assert (z.getinfo("a.txt").external_attr >> 16) & 0o777 == 0o644
    fd = os.open(path, os.O_RDONLY)
    try:
        assert [(e.name, b"".join(iter_member(fd, e))) for e in read_entries(fd)] == members
    finally:
        os.close(fd)


def test_forced_zip64_records_are_accepted_everywhere(tmp_path):
    members = [("big.log", b"line\n" * 50_000), ("small", b"x")]
    path = tmp_path / "z64.zip"
    _write_zip(path, members, force_zip64=True)
    raw = path.read_bytes()
    assert b"PK\x06\x06" in raw and b"PK\x06\x07" in raw  # zip64 end record and locator
    unzip_test(path)
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None
        assert [(i.filename, z.read(i)) for i in z.infolist()] == members


def test_more_than_65535_members_use_zip64_end_records(tmp_path):
    members = [(f"m/{i}", b"") for i in range(70_000)]
    path = tmp_path / "many.zip"
    _write_zip(path, members)
    assert b"PK\x06\x06" in path.read_bytes()[-200:]
    unzip_test(path)
    with zipfile.ZipFile(path) as z:
        assert len(z.infolist()) == 70_000
    fd = os.open(path, os.O_RDONLY)
    try:
        assert len(read_entries(fd)) == 70_000
    finally:
        os.close(fd)


def test_rollback_drops_a_member_even_after_it_reached_the_file(tmp_path):
    path = tmp_path / "r.zip"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    w = ZipWriter(fd)
    e = w.begin("keep", method=STORED, mtime=0.0, mode=0o600, zip64=False)
    w.write(b"k")
    w.end(e, crc=zlib.crc32(b"k"), csize=1, usize=1)
    e = w.begin("dropped", method=STORED, mtime=0.0, mode=0o600, zip64=False)
    w.write(os.urandom(3 << 20))  # large: written straight to the file, past the buffer
    w.rollback(e)
    e = w.begin("after", method=STORED, mtime=0.0, mode=0o600, zip64=True)
    w.write(b"a")
    w.end(e, crc=zlib.crc32(b"a"), csize=1, usize=1)
    w.finish()
    os.close(fd)
    unzip_test(path)
    assert path.stat().st_size < 1000
    with zipfile.ZipFile(path) as z:
        assert z.namelist() == ["keep", "after"] and z.read("after") == b"a"


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=200_000), cuts=st.lists(st.integers(1, 199_999), max_size=5))
def test_chunked_deflate_concatenates_into_one_standard_stream(data, cuts):
    bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    out, prev = b"", b""
    for a, b in itertools.pairwise(bounds):
        out += deflate_chunk(data[a:b], prev[-32768:], 1)
        prev = data[a:b]
    out += FINAL_BLOCK
    assert zlib.decompress(out, -15) == data
    assert hashlib.sha256(zlib.decompress(out, -15)).digest() == hashlib.sha256(data).digest()


def _member_doc(**fields: object) -> str:
    import json

    member = {"path": "logs/a.log", "size": 1, "sha256": "0" * 64, "mtime": 1.0, **fields}
    doc = {
        "format_version": 1,
        "archive_id": "x",
        "reason": "manual",
        "created_at": "t",
        "session_id": None,
        "members": [member],
    }
    return json.dumps(doc)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"mtime_ns": None}, r"'members\[0\]\.mtime_ns' must be int"),
        ({"mtime_ns": [1]}, r"'members\[0\]\.mtime_ns' must be int"),
        ({"mtime_ns": 1.5}, r"'members\[0\]\.mtime_ns' must be int"),
        ({"changed": "yes"}, r"'members\[0\]\.changed' must be bool"),
        ({"changed": 1}, r"'members\[0\]\.changed' must be bool"),
        ({"damaged": ["x"]}, r"'members\[0\]\.damaged'"),
        ({"size": True}, r"'members\[0\]\.size' must be int"),
        ({"size": -1}, r"'members\[0\]\.size' is out of range"),
        ({"size": 2**63}, r"'members\[0\]\.size' is out of range"),
        ({"mtime_ns": 2**63}, r"'members\[0\]\.mtime_ns' is out of range"),
        ({"mtime": 10**400}, r"'members\[0\]\.mtime' must be a finite time"),
        ({"mtime": 1e300}, r"'members\[0\]\.mtime' must be a finite time"),
        ({"sha256": "xyz"}, r"'members\[0\]\.sha256' must be 64"),
        ({"sha256": "A" * 64}, r"'members\[0\]\.sha256' must be 64"),
        ({"mtime": None}, r"'members\[0\]\.mtime' must be float"),
        ({"mtime": float("inf")}, r"'members\[0\]\.mtime' must be a finite"),
        ({"mtime": float("nan")}, r"'members\[0\]\.mtime' must be a finite"),
        ({"path": ""}, r"'members\[0\]\.path' is empty"),
        ({"path": "/etc/passwd"}, r"'members\[0\]\.path' is absolute"),
        ({"path": "logs/../models/x"}, r"'members\[0\]\.path' has a '\.\.' component"),
        ({"path": "logs//a"}, r"'members\[0\]\.path' has an empty or '\.' component"),
        ({"path": "logs/./a"}, r"'members\[0\]\.path' has an empty or '\.' component"),
        ({"path": "logs/"}, r"'members\[0\]\.path' has an empty or '\.' component"),
        ({"path": "logs\\..\\x"}, r"'members\[0\]\.path' contains a backslash"),
        ({"path": "C:/x"}, r"'members\[0\]\.path' is absolute"),
    ],
)
def test_manifest_member_fields_are_type_checked_and_paths_normalised(fields, message):
    """A manifest read from disk is input: a bad member is a ValueError naming the field."""
    assert Manifest.from_json(_member_doc()).members[0].mtime_ns == 0  # the baseline parses
    with pytest.raises(ValueError, match=message):
        Manifest.from_json(_member_doc(**fields))


def test_a_deeply_nested_manifest_is_a_value_error():
    with pytest.raises(ValueError, match="nested too deeply"):
        Manifest.from_json('{"members": ' + "[" * 100_000)
