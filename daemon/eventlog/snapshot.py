"""Snapshots of the fold: the :class:`State` as deterministic JSON, and the checks on reading.

A snapshot is a cache of ``fold(State(), events[:seq])``, never a source of
truth: the events stay complete, and a snapshot that fails any check is
ignored and the state rebuilt from the events. A snapshot row holds:

* ``seq``, ``ts``, ``type``: the last event folded into it, as the log holds it.
  On reading, the log must hold an event with that seq, ts and type, so a
  snapshot copied from another log (or left after the log was replaced) is not
  trusted;
* ``format``: :data:`FORMAT`, bumped when the encoding changes; the payload
  also names :data:`SCHEMA_KEY`, a fingerprint of the State's field names, so
  a State that gained or lost a field invalidates older snapshots by itself;
* ``digest``: sha256 over the row's seq, ts, type, format and payload;
* ``payload``: the State as JSON. Ordered maps (files, sessions, archives)
  are lists in their insertion order, so a decoded State equals the fold and
  iterates in the same order; everything else has sorted keys. The same State
  always gives the same bytes.

Encoding and checking are pure: the one read they need (the event at a seq) is
passed in as ``event_at``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from daemon.eventlog.fold import ArchiveInfo, FileInfo, SessionInfo, State, UploadInfo

FORMAT = 1
"""The snapshot encoding's version."""

_MAPS: dict[str, type[Any]] = {
    "sessions": SessionInfo,
    "archives": ArchiveInfo,
    "uploads": UploadInfo,
}


def _schema_key() -> str:
    parts = [f.name for f in dataclasses.fields(State)]
    for cls in (FileInfo, SessionInfo, ArchiveInfo, UploadInfo):
        parts.append(cls.__name__ + ":" + ",".join(f.name for f in dataclasses.fields(cls)))
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


SCHEMA_KEY = _schema_key()
"""Changes whenever State (or what it holds) gains, loses or renames a field."""


class SnapshotInvalid(Exception):
    """A snapshot failed a check; its message is the reason recorded."""


@dataclass(frozen=True)
class Snapshot:
    """One stored snapshot row."""

    seq: int
    ts: str
    type: str
    format: int
    digest: str
    payload: bytes


def encode(state: State) -> bytes:
    """The State as deterministic JSON bytes."""
    doc: dict[str, Any] = {"schema": SCHEMA_KEY}
    for f in dataclasses.fields(State):
        value = getattr(state, f.name)
        if f.name == "files":
            doc["files"] = [[p, i.size, i.mtime_ns] for p, i in value.items()]
        elif f.name in _MAPS:
            doc[f.name] = [dataclasses.asdict(v) for v in value.values()]
        elif isinstance(value, frozenset):
            doc[f.name] = sorted(value)
        elif isinstance(value, tuple):
            doc[f.name] = list(value)
        else:
            doc[f.name] = value
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def decode(payload: bytes) -> State:
    """The State a payload holds; :class:`SnapshotInvalid` if it is not one."""
    try:
        doc = json.loads(payload)
        if not isinstance(doc, dict):
            raise SnapshotInvalid("payload is not a JSON object")
        if doc.get("schema") != SCHEMA_KEY:
            raise SnapshotInvalid(f"old format (state schema {doc.get('schema')!r})")
        values: dict[str, Any] = {}
        for f in dataclasses.fields(State):
            raw = doc[f.name]
            if f.name == "files":
                values["files"] = MappingProxyType({p: FileInfo(s, m) for p, s, m in raw})
            elif f.name == "sessions":
                values[f.name] = MappingProxyType({d["session_id"]: SessionInfo(**d) for d in raw})
            elif f.name == "archives":
                values[f.name] = MappingProxyType({d["name"]: ArchiveInfo(**d) for d in raw})
            elif f.name == "uploads":
                values[f.name] = MappingProxyType({d["name"]: UploadInfo(**d) for d in raw})
            elif f.name == "pins":
                values[f.name] = frozenset(raw)
            elif f.name == "session_order":
                values[f.name] = tuple(raw)
            else:
                values[f.name] = raw
        return State(**values)
    except SnapshotInvalid:
        raise
    except (ValueError, KeyError, TypeError) as e:  # JSONDecodeError and UnicodeError too
        raise SnapshotInvalid(f"undecodable payload ({type(e).__name__}: {e})") from e


def digest_of(seq: int, ts: str, type_: str, format_: int, payload: bytes) -> str:
    head = f"{format_}\n{seq}\n{ts}\n{type_}\n".encode()
    return hashlib.sha256(head + payload).hexdigest()


def make(state: State, ts: str, type_: str) -> Snapshot:
    """A snapshot of ``state``, whose last event (``state.last_seq``) has ``ts`` and ``type_``."""
    payload = encode(state)
    seq = state.last_seq
    return Snapshot(seq, ts, type_, FORMAT, digest_of(seq, ts, type_, FORMAT, payload), payload)


def check(snap: Snapshot, event_at: Callable[[int], tuple[str, str] | None]) -> State:
    """The State of a snapshot that passes every check; else :class:`SnapshotInvalid`.

    ``event_at(seq)`` gives the (ts, type) of the log's event at ``seq``, or None.
    """
    if snap.format != FORMAT:
        raise SnapshotInvalid(f"old format {snap.format} (this daemon reads {FORMAT})")
    if digest_of(snap.seq, snap.ts, snap.type, snap.format, snap.payload) != snap.digest:
        raise SnapshotInvalid("digest mismatch (damaged payload)")
    found = event_at(snap.seq)
    if found is None:
        raise SnapshotInvalid(f"seq {snap.seq} is not in this event log")
    if found != (snap.ts, snap.type):
        raise SnapshotInvalid(
            f"seq {snap.seq} in this log is {found[1]} at {found[0]}, "
            f"the snapshot's is {snap.type} at {snap.ts} (another log's snapshot)"
        )
    state = decode(snap.payload)
    if state.last_seq != snap.seq:
        raise SnapshotInvalid(f"payload is at seq {state.last_seq}, the row says {snap.seq}")
    return state
