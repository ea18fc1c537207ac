"""Whose trainers still live: the probes behind the daemon's session decisions.

The pure :func:`daemon.protocol.liveness` decides from what a probe sees; this
module asks it for the sessions that matter: the lock document's session and
every session the event log thinks unfinished (:func:`probe_trainers`, whose
result :func:`daemon.service.sessions.decide` reads), and, before a prepare,
every earlier session whose trainer might still write (:func:`prepare_blockers`).
"""

from __future__ import annotations

from collections.abc import Mapping

from daemon.eventlog.fold import SessionInfo, State
from daemon.protocol import Liveness, LockInfo, ProcessIdentity, SystemProbe, identity_of
from daemon.protocol.liveness import Probe, liveness


def session_identity(session: SessionInfo) -> ProcessIdentity:
    """Who a recorded session's trainer is; older logs lack boot id and start time."""
    return ProcessIdentity(
        session.pid, session.host, session.boot_id, session.start_time, session.started_at
    )


def probe_trainers(
    info: LockInfo | None, state: State, probe: Probe | None = None
) -> Mapping[str, Liveness]:
    """Liveness of the lock document's trainer and of every unfinished session's."""
    probe = probe or SystemProbe()
    found: dict[str, Liveness] = {}
    if info is not None and info.state != "stopped":
        found[info.session_id] = liveness(identity_of(info), probe)
    for sid in state.session_order:
        session = state.sessions[sid]
        if sid not in found and not session.ended:
            found[sid] = liveness(session_identity(session), probe)
    return found


def prepare_blockers(
    state: State, session_id: str, *, see_all: bool, probe: Probe | None = None
) -> list[str]:
    """Earlier sessions whose trainers may still write: while any is listed, prepare waits.

    A session that reached ``stopped`` has flushed and closed everything. Any other
    (running, or recorded abandoned) blocks while its process is ``alive``; one this
    machine cannot judge (``unknown``: another host, no pid) blocks too when
    ``see_all`` is False, that is when the open-file scan could not see every
    process (ProtectProc=invisible, another uid): then only a trainer known dead
    lets prepare go on.
    """
    probe = probe or SystemProbe()
    blockers = []
    for sid in state.session_order:
        session = state.sessions[sid]
        if sid == session_id or session.state == "stopped":
            continue
        verdict = liveness(session_identity(session), probe)
        if verdict == "alive" or (verdict == "unknown" and not see_all):
            blockers.append(f"session {sid} (pid {session.pid}) may still run")
    return blockers
