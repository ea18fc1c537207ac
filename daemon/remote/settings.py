"""The ``remote`` section of config.json, as a frozen dataclass checked at construction.

Credentials never appear here: they come from the standard AWS chain
(environment, shared files and profiles, instance roles) or a systemd
credential named ``aws-credentials``. The config parser refuses every key of
``FORBIDDEN_KEYS``. This module imports the standard library only, so that
reading the config does not load boto3.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

FORBIDDEN_KEYS = frozenset(
    {
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "access_key",
        "secret_key",
        "secret",
        "password",
        "credentials",
    }
)
"""Keys that would put a secret in config.json (compared lower-cased): always refused."""

REMOTE_BOUNDS: dict[str, tuple[float, float]] = {
    "keep_last": (1, 10_000),
    "keep_daily": (0, 3_660),
    "keep_weekly": (0, 520),
    "max_concurrency": (1, 32),
    "part_size_mb": (5, 5_120),
    "connect_timeout_s": (0.1, 300.0),
    "read_timeout_s": (1.0, 3_600.0),
}
"""The sane range of every number of the section (inclusive)."""

ADDRESSING_STYLES = ("auto", "path", "virtual")
URL_RE = re.compile(r"^s3://([^/]*)(?:/(.*))?$")
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
IPV4_RE = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
REGION_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


@dataclass(frozen=True)
class RemoteConfig:
    url: str = ""
    """Where the copies go: ``s3://BUCKET/PREFIX`` or ``s3://BUCKET`` (required)."""
    endpoint_url: str | None = None
    """An S3-compatible endpoint (MinIO, Ceph RGW...) as an http:// or https:// URL;
    null: AWS's own for the region."""
    region: str | None = None
    """The bucket's region (null: the AWS chain's, e.g. AWS_DEFAULT_REGION)."""
    profile: str | None = None
    """An AWS profile name of the shared files (not a secret; null: the default chain)."""
    keep_last: int = 20
    """How many of this workspace's newest remote copies retention always keeps."""
    keep_daily: int = 0
    """Also keep the newest remote copy of each of the last N days (0: off)."""
    keep_weekly: int = 0
    """Also keep the newest remote copy of each of the last N ISO weeks (0: off)."""
    max_concurrency: int = 4
    """Parts of one upload sent at once."""
    part_size_mb: int = 8
    """Multipart part size in MiB; archives up to this size go in one PUT (5 .. 5120)."""
    addressing_style: str = "auto"
    """Bucket in the host name (``virtual``), in the path (``path``: most self-hosted
    servers) or botocore's choice (``auto``)."""
    connect_timeout_s: float = 5.0
    """Seconds to wait for a connection to the endpoint."""
    read_timeout_s: float = 60.0
    """Seconds to wait for the endpoint's next bytes."""

    def __post_init__(self) -> None:
        self._check_numbers()
        parse_url(self.url)
        if self.endpoint_url is not None:
            check_endpoint(self.endpoint_url)
        if self.region is not None and not REGION_RE.match(self.region):
            raise ValueError(f"region must look like us-east-1 (or be null), got {self.region!r}")
        if self.profile is not None and (not self.profile.strip() or "\n" in self.profile):
            raise ValueError(f"profile must be a profile name (or null), got {self.profile!r}")
        if self.addressing_style not in ADDRESSING_STYLES:
            raise ValueError(
                f"addressing_style must be one of {', '.join(ADDRESSING_STYLES)}, "
                f"got {self.addressing_style!r}"
            )

    def _check_numbers(self) -> None:
        for f in dataclasses.fields(self):
            if f.name not in REMOTE_BOUNDS:
                continue
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{f.name} must be a number, got {value!r}")
            low, high = REMOTE_BOUNDS[f.name]
            if not low <= value <= high:
                raise ValueError(f"{f.name} must be between {low:g} and {high:g}, got {value:g}")

    @property
    def bucket(self) -> str:
        """The bucket of ``url``."""
        return parse_url(self.url)[0]

    @property
    def prefix(self) -> str:
        """The key prefix of ``url``, without leading or trailing slash ("" for none)."""
        return parse_url(self.url)[1]


def parse_url(url: str) -> tuple[str, str]:
    """``s3://BUCKET/PREFIX`` as (bucket, prefix); ValueError naming ``url`` otherwise."""
    shape = f"url must look like s3://BUCKET/PREFIX, got {url!r}"
    match = URL_RE.match(url) if isinstance(url, str) else None
    if match is None or any(c.isspace() or not c.isprintable() for c in url):
        raise ValueError(shape)
    bucket, prefix = match.group(1), (match.group(2) or "").rstrip("/")
    if not bucket:
        raise ValueError(shape)
    if not BUCKET_RE.match(bucket) or ".." in bucket or IPV4_RE.match(bucket):
        raise ValueError(
            f"url has an invalid bucket name {bucket!r} (S3 rules: 3 to 63 characters "
            "of a-z, 0-9, '.' and '-', starting and ending with a letter or digit)"
        )
    if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
        raise ValueError(f"url has an empty, '.' or '..' part in its prefix, got {url!r}")
    return bucket, prefix


def check_endpoint(endpoint_url: str) -> None:
    """Raise ValueError unless ``endpoint_url`` is an http(s) URL with a host and no
    user or password (the value is not repeated when it might hold one)."""
    shape = "endpoint_url must be an http:// or https:// URL (or null)"
    try:
        parts = urlsplit(endpoint_url)
        _ = parts.port  # raises ValueError for a port out of range or not a number
    except ValueError:
        raise ValueError(f"{shape}, got {endpoint_url!r}") from None
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            "endpoint_url must not hold a user or password: credentials never go in config.json"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(f"{shape}, got {endpoint_url!r}")
