"""The CLI's commands: each reads its arguments, calls :mod:`daemon.ops`, prints a result."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from daemon import archive as engine
from daemon import ops, ownership
from daemon.errors import UsageError
from daemon.eventlog.events import EVENT_TYPES
from daemon.ops import REASONS, Workspace
from daemon.render import Progress, human_bytes, table

__all__ = ["REASONS", "dispatch"]


def dispatch(args: argparse.Namespace) -> int:
    if getattr(args, "all_hosts", False) and not args.remote:
        raise UsageError("--all-hosts needs --remote")
    if getattr(args, "remote", False) or getattr(args, "from_remote", False):
        from daemon import remote_commands

        remote_handler: Callable[[argparse.Namespace], int] = getattr(
            remote_commands, f"cmd_{args.command}_remote"
        )
        return remote_handler(args)
    handler: Callable[[argparse.Namespace], int] = HANDLERS[args.command]
    return handler(args)


def _open(args: argparse.Namespace) -> Workspace:
    return ops.open_workspace(args.workspace, args.config)


def _print_json(doc: Any) -> None:
    print(json.dumps(doc, indent=2, default=str))


def _resolve(ws: Workspace, arg: str) -> Path:
    return engine.resolve_archive(arg, ws.paths.archive_dir)


def cmd_run(args: argparse.Namespace) -> int:
    from daemon.service.run import run

    return run(args.workspace, args.config)


def cmd_archive(args: argparse.Namespace) -> int:
    with _open(args) as ws:
        progress = Progress("archiving") if sys.stderr.isatty() and not args.json else None
        try:
            result = ops.archive_now(ws, reason=args.reason, progress=progress)
        finally:
            if progress is not None:
                progress.close()
        if args.json:
            _print_json(archive_entry(ws, result.path))
        else:
            print(
                f"{result.path}  {human_bytes(result.bytes)} "
                f"({len(result.manifest.members)} files, {human_bytes(result.source_bytes)} "
                f"read, {result.seconds:.1f} s), verified"
            )
            for skipped in result.manifest.skipped:
                print(f"  skipped {skipped.path}: {skipped.reason}")
    return 0


def archive_entry(
    ws: Workspace, path: Path, listed: ownership.Listed | None = None
) -> dict[str, Any]:
    """One archive as ``list --json`` shows it; ``foreign`` when it is not this workspace's
    (another workspace's, or a zip nobody here made): then nothing of this workspace's
    log speaks for it, and ``verified``/``pinned`` are false."""
    state = ws.state()
    if listed is None:
        listed = ownership.classify(path, state.archives.get(path.name), ws.workspace_id())
    info = listed.recorded if listed.ours else None
    manifest = listed.manifest
    if info is not None:
        reason, session_id, created = info.reason, info.session_id, info.created_at
    elif manifest is not None:  # foreign, or ours but not recorded (made before the log)
        reason, session_id, created = manifest.reason, manifest.session_id, manifest.created_at
    else:
        reason, session_id, created = None, None, None
    return {
        "name": path.name,
        "path": str(path.resolve()),
        "bytes": path.stat().st_size,
        "created_at": created,
        "reason": reason,
        "session_id": session_id,
        "verified": bool(info and info.verified),
        "pinned": listed.ours and path.name in state.pins,
        "foreign": not listed.ours,
        "workspace_id": manifest.workspace_id if manifest else None,
        "host": manifest.host if manifest else None,
    }


def cmd_list(args: argparse.Namespace) -> int:
    with _open(args) as ws:
        folder = ws.paths.archive_dir
        entries = [archive_entry(ws, a.path, a) for a in ws.archives()]
        others = [
            archive_entry(ws, p, ownership.Listed(p, None, None, ours=False))
            for p in ownership.other_zips(folder)
        ]
        entries += others
    if args.json:
        _print_json(entries)
    elif not entries:
        print(f"no archives in {folder}")
    else:
        rows = [
            [
                e["name"],
                human_bytes(e["bytes"]),
                e["reason"] or "?",
                e["session_id"] or "-",
                "yes" if e["verified"] else "no",
                "foreign" if e["foreign"] else "pinned" if e["pinned"] else "",
            ]
            for e in entries
        ]
        print(table(["NAME", "SIZE", "REASON", "SESSION", "VERIFIED", ""], rows))
        count = sum(not e["foreign"] for e in entries)
        foreign = len(entries) - count
        line = f"{count} archive{'' if count == 1 else 's'} in {folder}"
        if foreign:
            line += f", and {foreign} foreign (another workspace's or nobody's here: left alone)"
        print(line)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    with _open(args) as ws:
        folder = ws.paths.archive_dir
        if args.archives:
            paths = [_resolve(ws, a) for a in args.archives]
        else:
            paths = engine.list_archive_files(folder) if folder.is_dir() else []
        results = [(p, ops.verify(ws, p)) for p in paths]
    if args.json:
        _print_json(
            [
                {
                    "name": p.name,
                    "path": str(p),
                    "ok": r.ok,
                    "members": r.members,
                    "problems": list(r.problems),
                }
                for p, r in results
            ]
        )
    else:
        for p, r in results:
            print(f"{p.name}: {'OK' if r.ok else 'FAILED'} ({r.members} members)")
            for problem in r.problems:
                print(f"  {problem}")
        if not results:
            print(f"no archives in {folder}")
    return 0 if all(r.ok for _, r in results) else 1


def check_restore_target(target: Path) -> None:
    """Refuse (exit 2) a target that is not an empty folder or a path that does not exist."""
    if target.is_symlink() or (target.exists() and (not target.is_dir() or any(target.iterdir()))):
        raise UsageError(f"restore target {target} must be an empty folder or not exist")


def cmd_restore(args: argparse.Namespace) -> int:
    target: Path = args.to
    check_restore_target(target)
    with _open(args) as ws:
        path = _resolve(ws, args.archive)
        checked = engine.has_manifest(path)
        progress = Progress("restoring") if sys.stderr.isatty() else None
        try:
            count = engine.restore_archive(path, args.to, progress=progress)
        finally:
            if progress is not None:
                progress.close()
    if not checked:
        print(
            f"daemon restore: warning: {path.name} has no MANIFEST.json: nothing could be "
            "checked (no sha256, no recorded mtimes; unsafe members are still refused)",
            file=sys.stderr,
        )
    print(f"restored {count} files from {path.name} into {args.to}")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    with _open(args) as ws:
        decisions = ops.prune(ws, dry_run=args.dry_run)
    if args.json:
        _print_json(
            [
                {"name": d.name, "delete": d.delete, "why": d.why, "bytes": d.bytes}
                for d in decisions
            ]
        )
        return 0
    verb = "would delete" if args.dry_run else "deleted"
    for d in decisions:
        print(f"{verb if d.delete else 'keep':12} {d.name}  ({d.why})")
    gone = [d for d in decisions if d.delete]
    print(
        f"{verb} {len(gone)} of {len(decisions)} archives, "
        f"{human_bytes(sum(d.bytes for d in gone))}"
    )
    return 0


def cmd_pin(args: argparse.Namespace) -> int:
    pinned = args.command == "pin"
    with _open(args) as ws:
        path = _resolve(ws, args.archive)
        changed = ops.set_pinned(ws, path, pinned)
    word = "pinned" if pinned else "unpinned"
    print(f"{path.name}: {word}" if changed else f"{path.name}: already {word}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from daemon.service.status import render_status, status_document

    with _open(args) as ws:
        doc = status_document(ws)
    if args.json:
        _print_json(doc)
    else:
        print(render_status(doc))
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    unknown = sorted(set(args.types or ()) - set(EVENT_TYPES))
    if unknown:
        raise UsageError(
            f"unknown event type {unknown[0]!r} (known: {', '.join(sorted(EVENT_TYPES))})"
        )
    with _open(args) as ws:
        for stored in _events(ws, args.types, args.follow):
            if args.json:
                print(json.dumps(stored.to_json()), flush=args.follow)
            else:
                data = " ".join(f"{k}={json.dumps(v)}" for k, v in stored.data.items())
                print(f"{stored.seq:>6} {stored.ts} {stored.type:<20} {data}", flush=args.follow)
    return 0


def _events(ws: Workspace, types: list[str] | None, follow: bool) -> Iterator[Any]:
    after = 0
    while True:
        if ws.paths.event_log.exists():
            for stored in ws.store.read(after, types=types):
                after = stored.seq
                yield stored
            if types:  # skipped events still advance the cursor
                after = max(after, ws.store.last_seq())
        if not follow:
            return
        time.sleep(0.5)  # tailing: poll the log like `tail -f`


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run,
    "archive": cmd_archive,
    "list": cmd_list,
    "verify": cmd_verify,
    "restore": cmd_restore,
    "prune": cmd_prune,
    "pin": cmd_pin,
    "unpin": cmd_pin,
    "status": cmd_status,
    "events": cmd_events,
}
