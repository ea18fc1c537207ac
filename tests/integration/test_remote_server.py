"""The S3 server the tests use (tests/remote_server.py) does what they rely on: pause means
connection refused, resume serves the same data on the same port, stop leaves nothing."""

from __future__ import annotations

import inspect
import os
import threading

import pytest
from botocore.exceptions import EndpointConnectionError

from tests.remote_server import FAKE_ENV, RealEndpoint, S3Server, port_refuses


def test_pause_refuses_even_open_connections_and_resume_keeps_port_and_data(s3):
    if not s3.can_pause:
        pytest.skip("needs the local moto server (a real endpoint is configured)")
    bucket = s3.fresh_url("").removeprefix("s3://")
    client = s3.client()  # its keep-alive connection stays open across the pause
    client.put_object(Bucket=bucket, Key="k", Body=b"kept across the pause")
    endpoint = s3.endpoint_url
    s3.pause()
    assert port_refuses(s3.host, s3.port)
    with pytest.raises(EndpointConnectionError):
        client.get_object(Bucket=bucket, Key="k")
    s3.resume()
    assert s3.endpoint_url == endpoint
    assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"kept across the pause"


def test_stop_leaves_no_thread_and_no_port():
    before = set(threading.enumerate())
    server = S3Server().start()
    client = server.client()
    for n in range(3):  # handler threads, with keep-alive connections
        client.create_bucket(Bucket=f"stop-test-{n}")
    assert set(threading.enumerate()) - before
    server.stop()
    assert port_refuses(server.host, server.port)
    assert set(threading.enumerate()) - before == set()
    server.stop()  # twice is fine


def test_env_holds_fake_keys_and_the_region_only(s3):
    if isinstance(s3, S3Server):
        assert s3.env() == FAKE_ENV
        assert set(FAKE_ENV) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"}
        aws = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
        files = {"AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"}
        assert {k: v for k, v in aws.items() if k not in files} == FAKE_ENV
        assert not any(os.path.exists(aws[f]) for f in files)
    else:
        assert set(s3.env()) <= {k for k in os.environ if k.startswith("AWS_")}


def test_the_real_endpoint_has_the_servers_interface():
    public = {
        name
        for name, _ in inspect.getmembers(S3Server)
        if not name.startswith("_") and name not in ("running",)
    }
    assert public <= set(dir(RealEndpoint))
    real = RealEndpoint("s3://team-bucket/ci/archives/", "https://minio.lab:9000")
    url = real.fresh_url()
    assert url.startswith("s3://team-bucket/ci/archives/test-") and url.endswith("/archives")
    assert real.issued == [url.removeprefix("s3://team-bucket/").removesuffix("archives")]
    assert real.endpoint_url == "https://minio.lab:9000" and not real.can_pause
    with pytest.raises(pytest.skip.Exception, match="real endpoint"):
        real.pause()
