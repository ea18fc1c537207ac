"""The remote copies' named exceptions, and ``describe``: a botocore error as one of them.

Every call to the object store goes through ``describe`` when it fails, so
callers catch ``RemoteError`` (and its three kinds) alone. Messages are one
line, name the bucket or the endpoint and the cause, and never hold a
secret: botocore's own messages carry none, and only their start (at
most ``MAX_DETAIL`` characters, on one line) is ever kept.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

from boto3.exceptions import Boto3Error
from botocore import exceptions as be
from s3transfer import exceptions as s3te

from daemon.errors import DaemonError

__all__ = [
    "RemoteError",
    "RemoteIntegrityError",
    "RemoteNotFoundError",
    "RemoteUnreachableError",
    "describe",
    "translated",
]

MAX_DETAIL = 200
NO_CREDENTIALS = (
    "no credentials found: set the AWS environment variables or a profile, "
    "or give a systemd credential aws-credentials"
)
NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchUpload"})
DENIED_CODES = frozenset({"AccessDenied", "403", "AllAccessDisabled", "AccountProblem"})
KEY_CODES = frozenset(
    {"InvalidAccessKeyId", "InvalidToken", "ExpiredToken", "TokenRefreshRequired"}
)
REGION_CODES = frozenset(
    {
        "PermanentRedirect",
        "301",
        "AuthorizationHeaderMalformed",
        "IllegalLocationConstraintException",
    }
)

FOREIGN: tuple[type[Exception], ...] = (
    be.ClientError,
    be.BotoCoreError,
    Boto3Error,
    s3te.RetriesExceededError,
    s3te.S3UploadFailedError,
    s3te.S3DownloadFailedError,
)
"""The exceptions of the AWS libraries that ``translated`` turns into ``RemoteError``."""


class RemoteError(DaemonError):
    """A request to the object store failed (one line naming the bucket or endpoint)."""


class RemoteUnreachableError(RemoteError):
    """The endpoint cannot be reached or is down: connection refused, timeout, DNS, TLS,
    HTTP 5xx. A state that passes: the caller retries later."""


class RemoteIntegrityError(RemoteError):
    """An object's size or sha256 is not what was sent or expected."""


class RemoteNotFoundError(RemoteError):
    """No such bucket, key or archive."""


def describe(
    e: Exception, *, bucket: str, endpoint: str | None, key: str | None = None
) -> RemoteError:
    """``e`` (botocore, boto3 or s3transfer) as a ``RemoteError`` with one clear line.

    ``endpoint`` is the configured endpoint URL (None: AWS's own, then the URL
    botocore names, reduced to scheme and host, is used); ``key``, when given,
    is named for a missing object. A ``RemoteError`` is returned unchanged.
    """
    if isinstance(e, RemoteError):
        return e
    last = getattr(e, "last_exception", None)  # s3transfer's and boto3's RetriesExceededError
    if isinstance(last, Exception):
        return describe(last, bucket=bucket, endpoint=endpoint, key=key)
    if isinstance(e, be.ClientError):
        return _client_error(e, bucket=bucket, endpoint=endpoint, key=key)
    where = _endpoint_name(endpoint, getattr(e, "kwargs", {}).get("endpoint_url"))
    if isinstance(e, be.NoCredentialsError):
        return RemoteError(NO_CREDENTIALS)
    if isinstance(e, be.PartialCredentialsError):
        return RemoteError(f"incomplete credentials: {_line(e)}")
    if isinstance(e, be.ProfileNotFound):
        return RemoteError(f"AWS profile {e.kwargs.get('profile')!r} not found")
    if isinstance(e, be.CredentialRetrievalError):
        return RemoteError(f"cannot load the credentials: {_line(e)}")
    if isinstance(e, be.ConnectTimeoutError):
        return RemoteUnreachableError(f"cannot reach S3 endpoint {where} (connect timeout)")
    if isinstance(e, be.ReadTimeoutError):
        return RemoteUnreachableError(f"S3 endpoint {where} stopped answering (read timeout)")
    if isinstance(e, be.SSLError):
        return RemoteUnreachableError(f"TLS error talking to S3 endpoint {where}: {_cause(e)}")
    if isinstance(e, be.ProxyConnectionError):
        return RemoteUnreachableError(f"cannot reach the proxy for S3 endpoint {where}")
    if isinstance(e, be.EndpointConnectionError | be.ConnectionError):
        return RemoteUnreachableError(f"cannot reach S3 endpoint {where} ({_cause(e)})")
    if isinstance(e, be.ConnectionClosedError):
        return RemoteUnreachableError(f"S3 endpoint {where} closed the connection")
    if isinstance(e, be.ResponseStreamingError | be.IncompleteReadError):
        return RemoteUnreachableError(f"transfer from S3 endpoint {where} broke off: {_line(e)}")
    if isinstance(e, be.HTTPClientError):
        return RemoteUnreachableError(f"S3 endpoint {where}: {_cause(e)}")
    if isinstance(e, be.NoRegionError):
        return RemoteError("no region: set remote.region or AWS_DEFAULT_REGION")
    if isinstance(e, be.InvalidRegionError):
        return RemoteError(f"invalid region {e.kwargs.get('region_name')!r}")
    if isinstance(e, be.ParamValidationError):
        return RemoteError(f"invalid S3 request for bucket {bucket!r}: {_line(e)}")
    if isinstance(e, OSError):
        name = f" {e.filename}" if e.filename else ""
        return RemoteError(f"local file{name}: {e.strerror or _line(e)}")
    return RemoteError(f"S3 request on bucket {bucket!r} failed: {type(e).__name__}: {_line(e)}")


@contextlib.contextmanager
def translated(*, bucket: str, endpoint: str | None, key: str | None = None) -> Iterator[None]:
    """Run S3 calls, raising ``describe(e)`` from any botocore, boto3 or s3transfer error."""
    try:
        yield
    except FOREIGN as e:
        raise describe(e, bucket=bucket, endpoint=endpoint, key=key) from e


def _client_error(
    e: be.ClientError, *, bucket: str, endpoint: str | None, key: str | None
) -> RemoteError:
    error = e.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if code == "NoSuchBucket":
        return RemoteNotFoundError(f"bucket {bucket!r} does not exist")
    if code in NOT_FOUND_CODES:
        what = f"object {key!r}" if key else "object"
        return RemoteNotFoundError(f"no {what} in bucket {bucket!r}")
    if code in DENIED_CODES:
        return RemoteError(
            f"access denied to bucket {bucket!r} (check the credentials' permissions)"
        )
    if code in KEY_CODES:
        return RemoteError(
            f"the credentials are not accepted by {_endpoint_name(endpoint, None)}"
            f" ({code}: check the access key id and session token)"
        )
    if code == "SignatureDoesNotMatch":
        return RemoteError(
            f"the secret key does not match the access key at {_endpoint_name(endpoint, None)}"
            " (SignatureDoesNotMatch: check the credentials)"
        )
    if code == "RequestTimeTooSkewed":
        return RemoteError("this machine's clock is too far off for S3 (RequestTimeTooSkewed)")
    if code in REGION_CODES:
        return RemoteError(f"bucket {bucket!r} is in another region: set remote.region ({code})")
    message = _line_of(str(error.get("Message", ""))) or "no message"
    if (isinstance(status, int) and status >= 500) or code in ("SlowDown", "ServiceUnavailable"):
        return RemoteUnreachableError(
            f"S3 endpoint {_endpoint_name(endpoint, None)} is unavailable"
            f" (HTTP {status} {code}: {message})"
        )
    return RemoteError(f"S3 error on bucket {bucket!r}: {code or status}: {message}")


def _endpoint_name(endpoint: str | None, botocore_url: str | None) -> str:
    """The configured endpoint, else scheme://host of the URL botocore tried."""
    if endpoint:
        return endpoint
    if botocore_url:
        parts = urlsplit(str(botocore_url))
        if parts.scheme and parts.hostname:
            port = f":{parts.port}" if parts.port else ""
            return f"{parts.scheme}://{parts.hostname}{port}"
    return "the AWS S3 endpoint"


def _cause(e: BaseException) -> str:
    """Why a connection failed, in a few words: the socket error under botocore's."""
    seen: list[BaseException] = []
    todo: list[BaseException] = [e]
    while todo and len(seen) < 16:
        x = todo.pop(0)
        seen.append(x)
        kwargs = getattr(x, "kwargs", None)
        more = [kwargs.get("error")] if isinstance(kwargs, dict) else []
        more += [x.__cause__, x.__context__, *(a for a in x.args if isinstance(a, BaseException))]
        todo += [m for m in more if isinstance(m, BaseException) and m not in seen]
    for x in seen:
        if isinstance(x, ConnectionRefusedError):
            return "connection refused"
        if isinstance(x, socket.gaierror):
            return "host name not resolved"
        if isinstance(x, TimeoutError | socket.timeout):
            return "timed out"
        if isinstance(x, ConnectionResetError):
            return "connection reset"
    text = " ".join(str(x) for x in seen).lower()
    for needle, said in (
        ("refused", "connection refused"),
        ("name or service not known", "host name not resolved"),
        ("failed to resolve", "host name not resolved"),
        ("nodename nor servname", "host name not resolved"),
        ("temporary failure in name resolution", "host name not resolved"),
        ("timed out", "timed out"),
        ("network is unreachable", "network unreachable"),
        ("no route to host", "no route to host"),
        ("reset by peer", "connection reset"),
        ("certificate", "certificate not accepted"),
    ):
        if needle in text:
            return said
    return _line(e)


def _line(e: BaseException) -> str:
    return _line_of(str(e)) or type(e).__name__


def _line_of(text: str) -> str:
    """``text`` on one line (whitespace runs collapsed), cut at ``MAX_DETAIL`` characters."""
    line = " ".join(text.split())
    return line if len(line) <= MAX_DETAIL else line[: MAX_DETAIL - 3] + "..."
