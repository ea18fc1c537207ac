"""Where copies live in the bucket: ``PREFIX/<host>/<workspace_id>/<name>``, and only keys of
exactly that shape count as archives."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.remote.keys import (
    INDEX_NAME,
    KeyParts,
    archive_key,
    index_key,
    parse_key,
    safe_host,
    workspace_prefix,
)

WS = "0123456789abcdef0123456789abcdef"
NAME = "training_backup_20260304_050607.zip"


@pytest.mark.parametrize(
    ("host", "safe"),
    [
        ("gpu-01.lab.example", "gpu-01.lab.example"),
        ("Node_7", "Node_7"),
        ("my host/with:odd*chars", "my_host_with_odd_chars"),
        ("héte", "h_te"),
        ("", "unknown-host"),
        ("..", "__"),
        (".", "_"),
    ],
)
def test_safe_host_makes_one_key_segment(host: str, safe: str):
    assert safe_host(host) == safe


def test_workspace_prefix_with_and_without_prefix():
    assert workspace_prefix("team/archives", "gpu 1", WS) == f"team/archives/gpu_1/{WS}/"
    assert workspace_prefix("", "gpu1", WS) == f"gpu1/{WS}/"
    assert workspace_prefix("/team/", "gpu1", WS) == f"team/gpu1/{WS}/"
    assert index_key("p", "gpu1", WS) == f"p/gpu1/{WS}/{INDEX_NAME}" and INDEX_NAME == "index.json"
    assert archive_key("", "gpu1", WS, NAME) == f"gpu1/{WS}/{NAME}"


@pytest.mark.parametrize("workspace_id", ["", "a/b", "..", "with space"])
def test_a_workspace_id_that_is_no_segment_is_refused(workspace_id: str):
    with pytest.raises(ValueError, match="cannot be a key segment"):
        workspace_prefix("p", "h", workspace_id)


@pytest.mark.parametrize(
    "name", ["index.json", "x.zip", "training_backup_2026_1.zip", f"{NAME}.tmp"]
)
def test_archive_key_takes_archive_names_only(name: str):
    with pytest.raises(ValueError, match="is not an archive name"):
        archive_key("p", "h", WS, name)


def test_parse_key_reads_archive_keys():
    assert parse_key("team/archives", f"team/archives/gpu1/{WS}/{NAME}") == KeyParts(
        "gpu1", WS, NAME
    )
    assert parse_key("", f"gpu1/{WS}/training_backup_20260304_050607_2.zip") == KeyParts(
        "gpu1", WS, "training_backup_20260304_050607_2.zip"
    )


@pytest.mark.parametrize(
    "key",
    [
        f"p/gpu1/{WS}/{INDEX_NAME}",  # the index
        f"p/gpu1/{WS}/notes.txt",
        f"p/gpu1/{WS}/.training_backup_20260304_050607.0123abcd.zip.tmp",
        f"p/gpu1/{WS}/sub/{NAME}",  # one level too deep
        f"p/gpu1/{NAME}",  # one too shallow
        f"p2/gpu1/{WS}/{NAME}",  # another prefix that starts the same
        f"gpu1/{WS}/{NAME}",  # outside the prefix
        f"p//{WS}/{NAME}",  # empty host
        f"p/gp u1/{WS}/{NAME}",  # not a safe host
    ],
)
def test_parse_key_ignores_every_other_key(key: str):
    assert parse_key("p", key) is None


hosts = st.text(min_size=0, max_size=40)
ids = st.text(alphabet="0123456789abcdef", min_size=1, max_size=32)
names = st.builds(
    lambda d, t, n: f"training_backup_{d}_{t}{'' if n == 1 else f'_{n}'}.zip",
    st.from_regex(r"\A\d{8}\Z"),
    st.from_regex(r"\A\d{6}\Z"),
    st.integers(1, 500),
)
prefixes = st.sampled_from(["", "a", "team/archives", "x/y/z"])


@given(prefixes, hosts, ids, names)
def test_archive_key_and_parse_key_round_trip(prefix: str, host: str, ws: str, name: str):
    key = archive_key(prefix, host, ws, name)
    assert key.startswith(workspace_prefix(prefix, host, ws)) and not key.startswith("/")
    assert parse_key(prefix, key) == KeyParts(safe_host(host), ws, name)
    assert parse_key(prefix, index_key(prefix, host, ws)) is None
