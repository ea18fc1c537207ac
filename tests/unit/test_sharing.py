"""The sharing helpers: the group gets the owner's bits, and "no access" is one line."""

from __future__ import annotations

import contextlib
import grp
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.protocol.sharing import access_problem, no_access_line, share_with_group, user_name


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize(("before", "after"), [(0o022, 0o002), (0o077, 0o007), (0o027, 0o007)])
def test_the_group_gets_the_owners_bits_and_others_keep_theirs(
    tmp_path: Path, before: int, after: int
) -> None:
    with umask(before):
        assert share_with_group() == before
        assert os.umask(after) == after
        (tmp_path / "f").write_text("x")
        (tmp_path / "d").mkdir()
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o666 & ~after
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o777 & ~after


def test_paths_that_do_not_exist_yet_are_no_problem(tmp_path: Path) -> None:
    needs = [(tmp_path / "missing" / "lock", os.R_OK | os.W_OK), (tmp_path, os.W_OK)]
    assert access_problem(needs) is None


def test_the_line_names_the_file_the_person_and_the_group(tmp_path: Path) -> None:
    line = no_access_line(tmp_path / "training.lock", "cannot read/write")
    group = grp.getgrgid(tmp_path.stat().st_gid).gr_name
    assert line.startswith(f"{tmp_path / 'training.lock'}: cannot read/write for {user_name()};")
    assert line.endswith(f"usermod -aG {group} {user_name()}")


def test_a_read_only_file_system_is_named_as_such_not_as_a_group_problem(tmp_path: Path) -> None:
    lock = tmp_path / "training.lock"
    lock.write_text("")
    if subprocess.run(["mount", "--bind", str(lock), str(lock)], capture_output=True).returncode:
        pytest.skip("bind mounts need root")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(lock)], check=True)
        line = access_problem([(lock, os.R_OK | os.W_OK)])
    finally:
        subprocess.run(["umount", "-l", str(lock)], check=False)
    assert line == f"{lock}: cannot write: Read-only file system"
    assert access_problem([(lock, os.R_OK | os.W_OK)]) is None
