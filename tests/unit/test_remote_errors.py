"""``describe``: each botocore failure, built as botocore builds it, becomes the right kind of
``RemoteError`` with one line naming the bucket or the endpoint and the cause, no secret."""

from __future__ import annotations

import socket

import pytest
from botocore import exceptions as be
from s3transfer.exceptions import RetriesExceededError
from urllib3.exceptions import NameResolutionError, NewConnectionError

from daemon.errors import DaemonError
from daemon.remote.errors import (
    NO_CREDENTIALS,
    RemoteError,
    RemoteNotFoundError,
    RemoteUnreachableError,
    describe,
)

ENDPOINT = "http://127.0.0.1:9"
BOTO_URL = "http://127.0.0.1:9/bucket-x/p/h/w/training_backup_20260101_000000.zip"


def client_error(code: str, status: int, message: str = "") -> be.ClientError:
    response = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return be.ClientError(response, "PutObject")  # type: ignore[arg-type]


def refused() -> be.EndpointConnectionError:
    cause = ConnectionRefusedError(111, "Connection refused")
    inner = NewConnectionError(None, f"Failed to establish a new connection: {cause}")  # type: ignore[arg-type]
    inner.__cause__ = cause
    return be.EndpointConnectionError(endpoint_url=BOTO_URL, error=inner)


def not_resolved() -> be.EndpointConnectionError:
    cause = socket.gaierror(-2, "Name or service not known")
    inner = NameResolutionError("minio.invalid", None, cause)  # type: ignore[arg-type]
    return be.EndpointConnectionError(endpoint_url="https://minio.invalid/b", error=inner)


def one_line(e: RemoteError) -> str:
    text = str(e)
    assert "\n" not in text and 0 < len(text) <= 300
    assert isinstance(e, DaemonError)
    return text


@pytest.mark.parametrize(
    ("error", "kind", "text"),
    [
        (
            refused(),
            RemoteUnreachableError,
            f"cannot reach S3 endpoint {ENDPOINT} (connection refused)",
        ),
        (
            be.ConnectTimeoutError(endpoint_url=BOTO_URL),
            RemoteUnreachableError,
            f"cannot reach S3 endpoint {ENDPOINT} (connect timeout)",
        ),
        (
            be.ReadTimeoutError(endpoint_url=BOTO_URL),
            RemoteUnreachableError,
            f"S3 endpoint {ENDPOINT} stopped answering (read timeout)",
        ),
        (
            be.ConnectionClosedError(endpoint_url=BOTO_URL),
            RemoteUnreachableError,
            f"S3 endpoint {ENDPOINT} closed the connection",
        ),
        (be.NoCredentialsError(), RemoteError, NO_CREDENTIALS),
        (be.ProfileNotFound(profile="archiver"), RemoteError, "AWS profile 'archiver' not found"),
        (
            client_error("NoSuchBucket", 404),
            RemoteNotFoundError,
            "bucket 'bucket-x' does not exist",
        ),
        (
            client_error("AccessDenied", 403, "Access Denied"),
            RemoteError,
            "access denied to bucket 'bucket-x' (check the credentials' permissions)",
        ),
        (
            client_error("403", 403),
            RemoteError,
            "access denied to bucket 'bucket-x' (check the credentials' permissions)",
        ),
        (
            client_error("NoSuchKey", 404),
            RemoteNotFoundError,
            "no object 'p/k.zip' in bucket 'bucket-x'",
        ),
        (client_error("404", 404), RemoteNotFoundError, "no object 'p/k.zip' in bucket 'bucket-x'"),
        (
            client_error("InternalError", 500, "We encountered an internal error."),
            RemoteUnreachableError,
            f"S3 endpoint {ENDPOINT} is unavailable (HTTP 500 InternalError: "
            "We encountered an internal error.)",
        ),
        (
            client_error("InvalidArgument", 400, "Bad\nmultiline   message"),
            RemoteError,
            "S3 error on bucket 'bucket-x': InvalidArgument: Bad multiline message",
        ),
    ],
)
def test_each_failure_becomes_one_line_of_the_right_kind(error, kind, text):
    described = describe(error, bucket="bucket-x", endpoint=ENDPOINT, key="p/k.zip")
    assert type(described) is kind
    assert one_line(described) == text


def test_bad_keys_and_signatures_say_to_check_the_credentials_without_showing_them():
    for code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"):
        message = f"The AWS Access Key Id you provided (AKIAEXAMPLEKEY) is bad: {code}"
        text = one_line(describe(client_error(code, 403, message), bucket="b", endpoint=ENDPOINT))
        assert "check the" in text and ENDPOINT in text and code in text
        assert "AKIAEXAMPLEKEY" not in text


def test_without_an_endpoint_the_one_botocore_tried_is_named():
    text = one_line(describe(not_resolved(), bucket="b", endpoint=None))
    assert text == "cannot reach S3 endpoint https://minio.invalid (host name not resolved)"
    aws = describe(client_error("SlowDown", 503, "Reduce your rate"), bucket="b", endpoint=None)
    assert isinstance(aws, RemoteUnreachableError)
    assert one_line(aws).startswith("S3 endpoint the AWS S3 endpoint is unavailable (HTTP 503")


def test_wrapped_errors_are_described_by_their_cause():
    wrapped = RetriesExceededError(refused())
    assert str(describe(wrapped, bucket="b", endpoint=ENDPOINT)).endswith("(connection refused)")
    already = RemoteNotFoundError("bucket 'b' does not exist")
    assert describe(already, bucket="other", endpoint=None) is already


def test_unknown_errors_still_give_one_line_naming_the_bucket():
    text = one_line(describe(ValueError("odd\nthing"), bucket="b", endpoint=None))
    assert text == "S3 request on bucket 'b' failed: ValueError: odd thing"
    long = one_line(describe(client_error("Odd", 400, "x" * 1000), bucket="b", endpoint=None))
    assert long.endswith("...") and len(long) < 300
