"""The CLI's ``--remote`` commands: list, verify, restore and prune off-machine copies.

They need the ``remote`` section of config.json (else exit 2, naming it). An
unreachable server, missing credentials or a missing bucket is
:class:`daemon.remote.RemoteError`: exit 1, one line. Without ``--all-hosts``
they see this workspace's copies only (``PREFIX/<host>/<workspace_id>/``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon import archive as engine
from daemon import ops, remote, remote_ops
from daemon.commands import check_restore_target
from daemon.errors import ArchiveNotFoundError, UsageError
from daemon.ops import Workspace
from daemon.remote.settings import RemoteConfig
from daemon.render import Progress, human_bytes, table

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def _remote(ws: Workspace) -> RemoteConfig:
    if ws.settings.remote is None:
        raise UsageError(
            f"{ws.paths.config_file}: no 'remote' section: off-machine copies are not "
            "configured (see README, Off-machine copies)"
        )
    return ws.settings.remote


def _listing(
    ws: Workspace, client: S3Client, cfg: RemoteConfig, *, all_hosts: bool
) -> list[remote.RemoteObject]:
    if all_hosts:
        return remote.list_archives(client, cfg)
    place = remote_ops.place_of(ws, cfg)
    if place is None:
        return []  # a workspace that never recorded anything has no copies
    return remote.list_archives(client, cfg, host=place.host, workspace_id=place.workspace_id)


def cmd_list_remote(args: argparse.Namespace) -> int:
    with ops.open_workspace(args.workspace, args.config) as ws:
        cfg = _remote(ws)
        objects = _listing(ws, remote_ops.client_for(cfg), cfg, all_hosts=args.all_hosts)
    if args.json:
        print(json.dumps([o.to_json() for o in objects], indent=2))
        return 0
    where = f"s3://{cfg.bucket}/{cfg.prefix}"
    if not objects:
        print(f"no archives under {where}" + ("" if args.all_hosts else " for this workspace"))
        return 0
    rows = [
        [
            o.name,
            o.host,
            o.workspace_id[:8],
            human_bytes(o.bytes),
            o.reason or "?",
            o.session_id or "-",
            o.uploaded_at,
        ]
        for o in objects
    ]
    print(table(["NAME", "HOST", "WORKSPACE", "SIZE", "REASON", "SESSION", "UPLOADED"], rows))
    hosts = len({o.host for o in objects})
    count = f"{len(objects)} archive{'' if len(objects) == 1 else 's'}"
    print(f"{count} from {hosts} host{'' if hosts == 1 else 's'} under {where}")
    return 0


def cmd_verify_remote(args: argparse.Namespace) -> int:
    """Read every byte of each object back and compare its sha256 with the one stored with
    it and, for this workspace's copies, the one the log recorded at upload."""
    with ops.open_workspace(args.workspace, args.config) as ws:
        cfg = _remote(ws)
        client = remote_ops.client_for(cfg)
        objects = _listing(ws, client, cfg, all_hosts=bool(args.archives))
        place = remote_ops.place_of(ws, cfg)
        chosen = [_find(objects, a, place) for a in args.archives] if args.archives else objects
        uploads = ws.state().uploads
        results = []
        for obj in chosen:
            digest = remote.read_sha256(client, cfg.bucket, obj.key)
            problems = []
            if obj.sha256 is None:
                problems.append("the object has no sha256 in its metadata")
            elif digest != obj.sha256:
                problems.append(f"sha256 {digest} differs from the stored {obj.sha256}")
            ours = place is not None and (obj.host, obj.workspace_id) == (
                place.host,
                place.workspace_id,
            )
            recorded = uploads.get(obj.name) if ours else None
            if recorded is not None and digest != recorded.sha256:
                problems.append(f"sha256 differs from the one recorded at upload {recorded.sha256}")
            results.append((obj, problems))
    if args.json:
        print(
            json.dumps(
                [{"name": o.name, "key": o.key, "ok": not p, "problems": p} for o, p in results],
                indent=2,
            )
        )
    else:
        for obj, problems in results:
            print(f"{obj.key}: {'OK' if not problems else 'FAILED'} ({human_bytes(obj.bytes)})")
            for problem in problems:
                print(f"  {problem}")
        if not results:
            print("no remote archives for this workspace")
    return 0 if all(not p for _, p in results) else 1


def cmd_restore_remote(args: argparse.Namespace) -> int:
    """Download (streamed, sha256 checked) next to the target, then restore as from a local
    archive: nothing is written under DIR before the copy's every byte is checked."""
    target: Path = args.to
    check_restore_target(target)
    parent = target.absolute().parent
    if not parent.is_dir():
        raise UsageError(f"restore target's folder {parent} does not exist")
    with ops.open_workspace(args.workspace, args.config) as ws:
        cfg = _remote(ws)
        client = remote_ops.client_for(cfg)
        objects = _listing(ws, client, cfg, all_hosts=True)
        obj = _find(objects, args.archive, remote_ops.place_of(ws, cfg))
        with tempfile.TemporaryDirectory(prefix=".restore-", dir=parent) as tmp:
            local = Path(tmp) / obj.name
            if sys.stderr.isatty():
                print(f"downloading {obj.key} ({human_bytes(obj.bytes)})", file=sys.stderr)
            recorded = ws.state().uploads.get(obj.name)
            expected = recorded.sha256 if recorded and recorded.key == obj.key else obj.sha256
            if expected is None:
                raise remote.RemoteIntegrityError(
                    f"{obj.key} has no sha256 (not in its metadata, its index or this log): "
                    "it cannot be checked, so it is not restored"
                )
            remote.download_verified(client, cfg.bucket, obj.key, local, sha256=expected)
            progress = Progress("restoring") if sys.stderr.isatty() else None
            try:
                count = engine.restore_archive(local, target, progress=progress)
            finally:
                if progress is not None:
                    progress.close()
    print(f"restored {count} files from {obj.key} into {target}")
    return 0


def cmd_prune_remote(args: argparse.Namespace) -> int:
    with ops.open_workspace(args.workspace, args.config) as ws:
        cfg = _remote(ws)
        place = remote_ops.place_of(ws, cfg)
        decisions = (
            []
            if place is None
            else remote_ops.prune_remote(
                ws, remote_ops.client_for(cfg), place, dry_run=args.dry_run
            )
        )
    if args.json:
        doc: list[dict[str, Any]] = [
            {"name": d.name, "delete": d.delete, "why": d.why, "bytes": d.bytes} for d in decisions
        ]
        print(json.dumps(doc, indent=2))
        return 0
    verb = "would delete" if args.dry_run else "deleted"
    for d in decisions:
        print(f"{verb if d.delete else 'keep':12} {d.name}  ({d.why})")
    gone = [d for d in decisions if d.delete]
    print(f"{verb} {len(gone)} of {len(decisions)} remote copies of this workspace")
    return 0


def _find(
    objects: list[remote.RemoteObject], arg: str, place: remote_ops.Place | None
) -> remote.RemoteObject:
    found = remote_ops.find_object(objects, arg, place)
    if found is None:
        raise ArchiveNotFoundError(
            f"no remote archive named {arg!r} (or several of that name: give its key; "
            "see list --remote --all-hosts)"
        )
    return found
