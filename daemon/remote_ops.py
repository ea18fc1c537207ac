"""Operations on this workspace's off-machine copies, each recorded in the event log.

The daemon's uploader and the CLI share these, as they share :mod:`daemon.ops`
for local archives: upload one archive, apply remote retention, list, verify
and fetch copies. The network part is :mod:`daemon.remote`; what is owed comes
from the log (``State.pending_uploads``), never from a listing, and deletions
act only on this workspace's own key prefix (``PREFIX/<host>/<workspace_id>/``),
ordered by the seq of their ``ArchiveUploaded`` (never a name or a clock).
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from daemon import remote
from daemon.eventlog.events import ArchiveMissing
from daemon.eventlog.fold import ArchiveInfo, State
from daemon.eventlog.remote_events import (
    ArchiveUploaded,
    RemoteArchivePruned,
    RemoteUploadsAborted,
)
from daemon.ops import Workspace
from daemon.ownership import parse_time
from daemon.remote.settings import RemoteConfig
from daemon.retention import Candidate, Decision, Policy, decide

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@dataclass(frozen=True)
class Place:
    """Where this workspace's copies live: the config, our host and workspace id."""

    cfg: RemoteConfig
    host: str
    workspace_id: str

    @property
    def prefix(self) -> str:
        return remote.workspace_prefix(self.cfg.prefix, self.host, self.workspace_id)

    def key(self, name: str) -> str:
        return remote.archive_key(self.cfg.prefix, self.host, self.workspace_id, name)

    @property
    def index(self) -> str:
        return remote.index_key(self.cfg.prefix, self.host, self.workspace_id)


def place_of(ws: Workspace, cfg: RemoteConfig) -> Place | None:
    """This workspace's place; None while it has no identity (it never recorded anything,
    so it has no archive and no copy yet)."""
    workspace_id = ws.workspace_id()
    if workspace_id is None:
        return None
    return Place(cfg, remote.safe_host(socket.gethostname()), workspace_id)


def client_for(cfg: RemoteConfig) -> S3Client:
    """The S3 client, with a systemd credential when the unit passes one."""
    return remote.make_client(cfg, credentials_dir=os.environ.get("CREDENTIALS_DIRECTORY"))


def abort_stale(ws: Workspace, client: S3Client, place: Place) -> list[str]:
    """Abort the multipart uploads a killed daemon of this workspace left (one daemon runs
    per workspace, so none of them is alive), and record which."""
    keys = remote.abort_incomplete_uploads(client, place.cfg.bucket, place.prefix)
    if keys:
        ws.record(RemoteUploadsAborted(keys=tuple(keys)))
    return keys


def upload(
    ws: Workspace,
    client: S3Client,
    place: Place,
    info: ArchiveInfo,
    *,
    cancel: threading.Event | None = None,
) -> remote.Uploaded | None:
    """Upload one verified archive, verify the object, record ``ArchiveUploaded``.

    An object already there with this size and sha256 (an upload whose record a
    crash lost) is recorded, not sent again. None when the local file is gone (deleted by
    hand): recorded as ``ArchiveMissing``, so that it is owed no longer.
    Raises :class:`daemon.remote.RemoteError` (the caller records the failure).
    """
    path = ws.paths.archive_dir / info.name
    if not path.is_file():
        if ws.paths.archive_dir.is_dir():  # not a folder that is briefly unmounted
            ws.record(ArchiveMissing(name=info.name))
        return None
    sha256 = remote.file_sha256(path)
    metadata = {
        "session-id": info.session_id or "",
        "reason": info.reason,
        "created-at": info.created_at,
        "workspace-id": place.workspace_id,
        "host": place.host,
    }
    done = remote.upload_archive(
        client,
        place.cfg,
        path,
        place.key(info.name),
        sha256=sha256,
        metadata=metadata,
        cancel=cancel,
    )
    ws.record(
        ArchiveUploaded(
            name=info.name,
            key=done.obj.key,
            bytes=done.obj.bytes,
            sha256=sha256,
            seconds=round(done.seconds, 3),
            already=done.already,
            archive_id=info.archive_id,
        )
    )
    return done


def candidates(objects: list[remote.RemoteObject], state: State) -> list[Candidate]:
    """Remote retention's view of the objects this log recorded, ordered by the seq of their
    ArchiveUploaded. An object under our prefix that the log does not know (its record
    lost) is left out: never deleted, and nothing is deleted in its favour."""
    out = []
    for obj in objects:
        up = state.uploads.get(obj.name)
        if up is None or up.key != obj.key:
            continue
        out.append(
            Candidate(
                name=obj.name,
                bytes=obj.bytes,
                pinned=obj.name in state.pins,
                verified=True,
                order=up.seq,
                recorded_at=parse_time(up.recorded_at),
            )
        )
    return out


def prune_remote(
    ws: Workspace, client: S3Client, place: Place, *, dry_run: bool = False
) -> list[Decision]:
    """Apply the ``remote`` section's retention to this workspace's objects only; then
    rewrite this workspace's index. Pinned archives are kept remotely too."""
    objects = remote.list_archives(
        client, place.cfg, host=place.host, workspace_id=place.workspace_id
    )
    state = ws.state()
    cfg = place.cfg
    decisions = decide(
        candidates(objects, state), Policy(cfg.keep_last, cfg.keep_daily, cfg.keep_weekly)
    )
    if dry_run:
        return decisions
    gone = {d.name: d.why for d in decisions if d.delete}
    for obj in objects:
        if obj.name in gone:
            remote.delete_archive(client, cfg.bucket, obj.key)
            ws.record(RemoteArchivePruned(name=obj.name, key=obj.key, why=gone[obj.name]))
    remote.write_index(client, cfg.bucket, place.index, [o for o in objects if o.name not in gone])
    return decisions


def find_object(
    objects: list[remote.RemoteObject], arg: str, place: Place | None
) -> remote.RemoteObject | None:
    """The object an ARCHIVE argument names: a full key, or a name (this workspace's first,
    else the only one of that name in the listing)."""
    by_key = [o for o in objects if o.key == arg]
    if by_key:
        return by_key[0]
    name = Path(arg).name
    named = [o for o in objects if o.name == name]
    if place is not None:
        ours = [o for o in named if (o.host, o.workspace_id) == (place.host, place.workspace_id)]
        if ours:
            return ours[0]
    return named[0] if len(named) == 1 else None
