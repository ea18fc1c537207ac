"""The ``remote`` section (DESIGN.md, "Remote copies"): every value checked at construction,
messages starting with the field's name, no credentials, and no boto3 to read it."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, get_type_hints

import pytest

from daemon.remote.settings import FORBIDDEN_KEYS, REMOTE_BOUNDS, RemoteConfig
from tests.unit import test_boundaries as boundaries

REPO = Path(__file__).resolve().parents[2]
URL = "s3://my-bucket/team/archives"


def make(**fields: Any) -> RemoteConfig:
    return RemoteConfig(url=URL, **fields)


def test_the_defaults_are_the_documented_ones():
    cfg = RemoteConfig(url=URL)
    assert (cfg.bucket, cfg.prefix) == ("my-bucket", "team/archives")
    assert dataclasses.asdict(cfg) == {
        "url": URL,
        "endpoint_url": None,
        "region": None,
        "profile": None,
        "keep_last": 20,
        "keep_daily": 0,
        "keep_weekly": 0,
        "max_concurrency": 4,
        "part_size_mb": 8,
        "addressing_style": "auto",
        "connect_timeout_s": 5.0,
        "read_timeout_s": 60.0,
    }


def test_fields_are_plain_json_types_each_with_a_docstring():
    allowed = {str, str | None, int, float, bool}
    assert all(hint in allowed for hint in get_type_hints(RemoteConfig).values())
    body = ast.parse(textwrap.dedent(inspect.getsource(RemoteConfig))).body[0]
    assert isinstance(body, ast.ClassDef)
    documented = {
        stmt.target.id
        for stmt, after in zip(body.body, body.body[1:], strict=False)
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
        if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
    }
    assert documented == {f.name for f in dataclasses.fields(RemoteConfig)}


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [
        ("s3://my-bucket", "my-bucket", ""),
        ("s3://my-bucket/", "my-bucket", ""),
        ("s3://my.bucket-2/a", "my.bucket-2", "a"),
        ("s3://abc/a/b/c/", "abc", "a/b/c"),
        ("s3://" + "b" * 63 + "/x", "b" * 63, "x"),
    ],
)
def test_urls_give_bucket_and_prefix_without_slashes(url: str, bucket: str, prefix: str):
    cfg = RemoteConfig(url=url)
    assert (cfg.bucket, cfg.prefix) == (bucket, prefix)


@pytest.mark.parametrize(
    "url",
    [
        "",
        "my-bucket/x",
        "https://my-bucket/x",
        "s3:/my-bucket",
        "s3://",
        "s3:///prefix",
        "s3://my bucket/x",
        "s3://my-bucket/a b",
        "s3://my-bucket/a\nb",
    ],
)
def test_urls_of_another_shape_are_refused_naming_the_field(url: str):
    with pytest.raises(ValueError, match=r"^url must look like s3://BUCKET/PREFIX, got "):
        RemoteConfig(url=url)


@pytest.mark.parametrize(
    "bucket",
    ["ab", "b" * 64, "My-Bucket", "my_bucket", "-bucket", "bucket-", "a..b", "192.168.1.10"],
)
def test_bucket_names_follow_the_s3_rules(bucket: str):
    with pytest.raises(ValueError, match=r"^url has an invalid bucket name '"):
        RemoteConfig(url=f"s3://{bucket}/x")


@pytest.mark.parametrize("prefix", ["a//b", "./a", "a/../b", ".."])
def test_prefixes_have_no_empty_or_dot_parts(prefix: str):
    with pytest.raises(ValueError, match=r"^url has an empty, '\.' or '\.\.' part"):
        RemoteConfig(url=f"s3://bucket/{prefix}")


def test_every_number_has_bounds_and_out_of_range_names_the_field():
    numeric = {
        f.name
        for f in dataclasses.fields(RemoteConfig)
        if get_type_hints(RemoteConfig)[f.name] in (int, float)
    }
    assert numeric == set(REMOTE_BOUNDS)
    with pytest.raises(ValueError) as caught:
        RemoteConfig(url=URL, keep_last=0)
    assert str(caught.value) == "keep_last must be between 1 and 10000, got 0"
    for name, (low, high) in REMOTE_BOUNDS.items():
        kind = get_type_hints(RemoteConfig)[name]
        step = 1 if kind is int else 0.01
        for ok in (low, high):
            assert getattr(make(**{name: kind(ok)}), name) == kind(ok)
        for bad in (low - step, high + step):
            with pytest.raises(ValueError, match=rf"^{name} must be between "):
                make(**{name: kind(bad)})
        with pytest.raises(ValueError, match=rf"^{name} must be a number, got True"):
            make(**{name: True})


@pytest.mark.parametrize(
    "endpoint", ["localhost:9000", "ftp://host", "http://", "http://host:notaport", "http://h/?q=1"]
)
def test_endpoints_are_http_urls(endpoint: str):
    with pytest.raises(ValueError, match=r"^endpoint_url must be an http:// or https:// URL"):
        RemoteConfig(url=URL, endpoint_url=endpoint)


def test_an_endpoint_with_a_password_is_refused_without_repeating_it():
    with pytest.raises(ValueError, match=r"^endpoint_url must not hold a user") as caught:
        RemoteConfig(url=URL, endpoint_url="https://AKIDEXAMPLE:hunter2secret@minio:9000")
    assert "hunter2secret" not in str(caught.value) and "AKIDEXAMPLE" not in str(caught.value)


def test_good_endpoints_regions_profiles_and_styles_pass():
    cfg = RemoteConfig(
        url=URL,
        endpoint_url="https://minio.lab:9000/s3",
        region="eu-west-3",
        profile="archiver",
        addressing_style="path",
    )
    assert cfg.endpoint_url == "https://minio.lab:9000/s3" and cfg.region == "eu-west-3"
    assert RemoteConfig(url=URL, endpoint_url="http://127.0.0.1:9000").bucket == "my-bucket"


@pytest.mark.parametrize(
    ("field", "value", "start"),
    [
        ("addressing_style", "dns", "addressing_style must be one of auto, path, virtual"),
        ("region", "US East", "region must look like us-east-1"),
        ("region", "", "region must look like us-east-1"),
        ("profile", " ", "profile must be a profile name"),
    ],
)
def test_other_fields_are_checked_naming_themselves(field: str, value: str, start: str):
    with pytest.raises(ValueError, match="^" + start):
        make(**{field: value})


def test_credential_keys_are_forbidden_and_none_is_a_field():
    assert {"aws_access_key_id", "aws_secret_access_key", "aws_session_token"} <= FORBIDDEN_KEYS
    assert {"secret", "password", "credentials", "access_key", "secret_key"} <= FORBIDDEN_KEYS
    assert all(k == k.lower() for k in FORBIDDEN_KEYS)
    assert not FORBIDDEN_KEYS & {f.name for f in dataclasses.fields(RemoteConfig)}


def test_reading_the_settings_loads_no_boto3_and_the_package_loads_it_on_use():
    code = (
        "import json, sys\n"
        "import daemon.remote.settings\n"
        "before = sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore'))\n"
        "from daemon import remote\n"
        "names = {n: getattr(remote, n).__module__ for n in remote.__all__ if n[0].islower()}\n"
        "print(json.dumps([before, 'boto3' in sys.modules, names]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    before, after, homes = json.loads(out.stdout)
    assert before == [] and after
    assert homes["upload_archive"] == "daemon.remote.upload"
    assert homes["list_archives"] == "daemon.remote.listing"
    assert set(homes.values()) <= {f"daemon.remote.{m}" for m in MODULES}


MODULES = ("client", "download", "errors", "keys", "listing", "objects", "settings", "upload")


def test_the_library_uses_no_third_party_package_but_the_aws_ones():
    third_party = (
        {
            module.split(".")[0]
            for path in boundaries.sources("daemon/remote")
            for _, module in boundaries.imports_of(path)
        }
        - set(sys.stdlib_module_names)
        - {"__future__", "daemon"}
    )
    assert third_party == {"boto3", "botocore", "s3transfer", "mypy_boto3_s3"}
    assert {p.stem for p in boundaries.sources("daemon/remote")} == {"__init__", *MODULES}
