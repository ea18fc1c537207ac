"""Make the S3 client and the transfer settings from a ``RemoteConfig``.

Credentials come from botocore's standard chain: the environment, the
shared files (with ``profile`` when set), then container and instance roles.
Under systemd, a credential named ``aws-credentials`` (``LoadCredential=``,
found in ``$CREDENTIALS_DIRECTORY``, in the shared-credentials INI format)
replaces the shared credentials file; the environment still comes first.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import boto3
import botocore.session
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError

from daemon.remote.errors import describe
from daemon.remote.settings import RemoteConfig

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CREDENTIAL_NAME = "aws-credentials"
"""The systemd credential (a file in ``$CREDENTIALS_DIRECTORY``) holding the keys."""
MIB = 1 << 20
ADDRESSING: dict[str, Literal["auto", "path", "virtual"]] = {
    "auto": "auto",
    "path": "path",
    "virtual": "virtual",
}


def make_client(cfg: RemoteConfig, *, credentials_dir: str | None = None) -> S3Client:
    """An S3 client for ``cfg``; ``credentials_dir`` is ``$CREDENTIALS_DIRECTORY`` (or None).

    Raises ``RemoteError`` (an unknown profile, say). Missing credentials only
    show at the first request, as ``RemoteError`` from the call that made it.
    """
    session = botocore.session.Session(profile=cfg.profile)
    if credentials_dir:
        path = Path(credentials_dir) / CREDENTIAL_NAME
        if path.is_file():
            session.set_config_variable("credentials_file", str(path))
    config = Config(
        region_name=cfg.region,
        connect_timeout=cfg.connect_timeout_s,
        read_timeout=cfg.read_timeout_s,
        retries={"max_attempts": 3, "mode": "standard"},  # 3 retries: 4 attempts in all
        max_pool_connections=cfg.max_concurrency + 4,
        s3={"addressing_style": ADDRESSING[cfg.addressing_style]},
        # Since botocore 1.36 every upload carries a CRC checksum (x-amz-checksum-crc32,
        # x-amz-sdk-checksum-algorithm, aws-chunked bodies) by default, which MinIO,
        # Ceph RGW and other S3-compatible servers reject or mishandle. Only send or
        # check checksums where the API requires them: the sha256 in the metadata,
        # verified after upload and on download, is this program's integrity check.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    try:
        return boto3.Session(botocore_session=session).client(
            "s3", endpoint_url=cfg.endpoint_url, config=config
        )
    except BotoCoreError as e:
        raise describe(e, bucket=cfg.bucket, endpoint=cfg.endpoint_url) from e


def transfer_config(cfg: RemoteConfig) -> TransferConfig:
    """s3transfer's settings: parts of ``part_size_mb`` MiB, ``max_concurrency`` at once.

    Uploads from a file name read each part from disk as it is sent, so memory
    stays bounded whatever the archive's size. The CRT transfer client (when
    awscrt is installed) is never used: it ignores this client's configuration.
    """
    part = cfg.part_size_mb * MIB
    return TransferConfig(
        multipart_threshold=part,
        multipart_chunksize=part,
        max_concurrency=cfg.max_concurrency,
        use_threads=True,
        preferred_transfer_client="classic",
    )
