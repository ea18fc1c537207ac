"""``status``: what the daemon and the event log know, as one JSON document or text."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from daemon import ops, protocol
from daemon.eventlog.fold import State
from daemon.ops import Workspace
from daemon.render import human_bytes

HEALTH_FILE = "health.json"


def status_document(ws: Workspace) -> dict[str, Any]:
    state = ws.state()
    paths = ws.paths
    running = protocol.daemon_alive(paths.workspace)
    health: dict[str, Any] | None = None
    if running:
        try:
            health = json.loads((paths.daemon_dir / HEALTH_FILE).read_text())
        except (OSError, ValueError):
            health = None
    session = state.current_session
    archives = sorted(state.archives.values(), key=lambda a: a.name)
    on_disk = [a.name for a in ws.archives() if a.ours]  # the foreign ones are not ours
    return {
        "workspace": str(paths.workspace),
        "daemon": {
            "running": running,
            "pid": state.daemon_pid if running else None,
            "last_pid": state.daemon_pid,
            "health": health,
        },
        "session": asdict(session) if session is not None else None,
        "archives": len(on_disk),
        "archive_dir": str(paths.archive_dir),
        "last_archives": [asdict(a) for a in archives[-3:]],
        "pinned": sorted(state.pins),
        "pending_sessions": [s.session_id for s in state.pending_sessions()],
        "archive_failures": state.archive_failures,
        "last_archive_error": state.last_archive_error,
        "tracked_files": len(state.files),
        "last_seq": state.last_seq,
        "remote": remote_part(ws, state) if ws.settings.remote is not None else None,
    }


def remote_part(ws: Workspace, state: State) -> dict[str, Any]:
    """Off-machine copies as the log knows them (no network): what waits, what was last
    done, and which local archives rotation keeps beyond keep_last only for want of a copy."""
    remote = ws.settings.remote
    assert remote is not None
    pending = [a.name for a in state.pending_uploads()]
    last = max(state.uploads.values(), key=lambda u: u.seq, default=None)
    return {
        "url": remote.url,
        "pending": len(pending),
        "pending_archives": pending,
        "last_upload": asdict(last) if last is not None else None,
        "last_upload_at": state.last_upload_at,
        "upload_failures": state.upload_failures,
        "last_error": state.last_upload_error,
        "held_locally": ops.held_for_upload(ws),
    }


def render_status(doc: dict[str, Any]) -> str:
    d = doc["daemon"]
    if d["running"]:
        daemon = f"running, pid {d['pid']}"
        health = d.get("health") or {}
        if health.get("status"):
            daemon += f" ({health['status']})"
    else:
        daemon = "not running" + (f" (last pid {d['last_pid']})" if d["last_pid"] else "")
    lines = [f"workspace   {doc['workspace']}", f"daemon      {daemon}"]
    s = doc["session"]
    if s:
        extra = f", outcome {s['outcome']}" if s.get("outcome") else ""
        final = f", archived as {s['final_archive']}" if s.get("final_archive") else ""
        lines.append(f"session     {s['session_id']}: {s['state']}{extra}{final}")
    else:
        lines.append("session     none yet")
    lines.append(f"archives    {doc['archives']} in {doc['archive_dir']}")
    for a in doc["last_archives"]:
        verified = "verified" if a["verified"] else "not verified"
        size = human_bytes(a["bytes"])
        lines.append(f"            {a['name']}  {size}  {a['reason']}  {verified}")
    if doc["pinned"]:
        lines.append(f"pinned      {', '.join(doc['pinned'])}")
    if doc["pending_sessions"]:
        lines.append(f"pending     {', '.join(doc['pending_sessions'])} (awaiting archive)")
    if doc["last_archive_error"]:
        lines.append(f"last error  {doc['last_archive_error']}")
    if doc.get("remote"):
        lines.extend(_remote_lines(doc["remote"]))
    lines.append(f"events      {doc['last_seq']} recorded, {doc['tracked_files']} files tracked")
    return "\n".join(lines)


def _remote_lines(r: dict[str, Any]) -> list[str]:
    last = r["last_upload"]
    done = f"last upload {last['name']} at {r['last_upload_at']}" if last else "none uploaded"
    lines = [f"remote      {r['url']}: {r['pending']} pending, {done}"]
    if r["held_locally"]:
        lines.append(
            f"            {len(r['held_locally'])} local archive(s) kept beyond keep_last "
            "until their upload is verified"
        )
    if r["last_error"]:
        lines.append(f"            last upload error: {r['last_error']}")
    return lines
