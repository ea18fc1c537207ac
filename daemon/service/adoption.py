"""Adoption: final archives a crash left unrecorded, verified and recorded as this workspace's.

Only this workspace's archives (its id in the manifest) are adopted; the rest of
a shared archive folder is foreign and never touched.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Literal

from daemon import archive as engine
from daemon import ops
from daemon.errors import DaemonError
from daemon.eventlog.events import (
    ArchiveVerified,
)
from daemon.eventlog.fold import FINAL_REASONS
from daemon.ops import Workspace

TaskKind = Literal["prepare", "finalize", "rotate"]


def reconcile_archives(
    ws: Workspace,
    *,
    heartbeat: Callable[[str], None] | None = None,
    closing: str | None = None,
) -> int:
    """Adopt final archives the log does not know (a crash after the rename); returns how many.

    Only this workspace's archives (its id in the manifest) are adopted: the rest
    of a shared archive folder is foreign and left unverified and unrecorded.

    Each is verified in full, which takes a while for a big one: ``heartbeat(name)`` is
    called before each archive and as its bytes are checked (from a verify thread).
    With ``closing`` (a session id), only archives whose manifest closes that session
    (a final reason) are looked at, and one whose manifest cannot be read is passed
    over: the executor asks this before it makes a final archive, so an archive whose
    ``ArchiveCompleted`` failed to append is adopted, not made twice.
    """
    adopted = 0
    for listed in ws.archives():
        path = listed.path
        if listed.recorded is not None or not listed.ours:
            continue  # known already, or foreign: another workspace's, never adopted
        if closing is not None and not _closes(listed.manifest, closing):
            continue
        beat = None
        if heartbeat is not None:
            heartbeat(path.name)
            beat = partial(_beat, heartbeat, path.name)
        try:
            manifest = engine.read_manifest(path)
            result = engine.verify_archive(path, progress=beat)
        except Exception as e:  # whatever is wrong with one archive, it is that archive that is bad
            problem = str(e) if isinstance(e, DaemonError) else f"{type(e).__name__}: {e}"
            ws.record(ArchiveVerified(name=path.name, ok=False, problems=(problem,)))
            continue
        if result.ok:
            ops.record_completed(ws, manifest, path)
            adopted += 1
        else:
            ws.record(ArchiveVerified(name=path.name, ok=False, problems=tuple(result.problems)))
    return adopted


def _closes(manifest: engine.Manifest | None, session_id: str) -> bool:
    """Whether an archive's manifest says it is ``session_id``'s final archive."""
    if manifest is None:
        return False
    return manifest.session_id == session_id and manifest.reason in FINAL_REASONS


def _beat(heartbeat: Callable[[str], None], name: str, _checked: int) -> None:
    heartbeat(name)
