"""The daemon's ``ModelInvalid`` events: damaged model zips, reported once per version.

:class:`ModelChecker` looks at every settled file event of ``models/**/*.zip``
(and, on a rescan, every model zip found) and yields one ``ModelInvalid`` per
distinct (path, size, mtime_ns), using the engine's cheap
:func:`daemon.archive.zipcheck.zip_problem_at`. Hidden files (a path component
starting with ``.``) are temporary files of atomic saves, checked once they are
renamed into place. A model copied in slowly may be reported while it is
half-written; its complete version is a new version and is checked again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from daemon.archive.zipcheck import is_model_zip, zip_problem_at
from daemon.eventlog.events import Event, FileCreated, FileModified, FileMoved, ModelInvalid
from daemon.eventlog.fold import FileInfo

Key = tuple[str, int, int]
"""(workspace-relative path, size, mtime_ns): one version of a file."""


class ModelChecker:
    """Turns file events of model zips into ``ModelInvalid`` events, once per file version.

    ``probe`` is :func:`zip_problem_at` outside tests. Each version (path, size,
    mtime_ns) is probed once; :meth:`remember` takes the ``ModelInvalid`` events
    already in the log, so a restarted daemon does not report a damaged file again.
    """

    def __init__(
        self, workspace: Path, probe: Callable[[Path], str | None] = zip_problem_at
    ) -> None:
        self.workspace = workspace
        self.probe = probe
        self._seen: set[Key] = set()

    def remember(self, events: Iterable[Event | None]) -> None:
        for event in events:
            if isinstance(event, ModelInvalid):
                self._seen.add((event.path, event.size, event.mtime_ns))

    def check(self, events: Iterable[Event]) -> list[ModelInvalid]:
        """Probe the model zips that settled file events name."""
        return self._check(key for key in map(_version, events) if key is not None)

    def check_files(self, files: Mapping[str, FileInfo]) -> list[ModelInvalid]:
        """Probe the model zips of a rescan's snapshot (versions not seen yet)."""
        return self._check((path, f.size, f.mtime_ns) for path, f in files.items())

    def _check(self, keys: Iterable[Key]) -> list[ModelInvalid]:
        out: list[ModelInvalid] = []
        for key in keys:
            if not is_model_zip(key[0]) or key in self._seen:
                continue
            self._seen.add(key)
            error = self.probe(self.workspace / key[0])
            if error is not None:
                out.append(ModelInvalid(path=key[0], error=error, size=key[1], mtime_ns=key[2]))
        return out


def _version(event: Event) -> Key | None:
    if isinstance(event, FileCreated | FileModified):
        return event.path, event.size, event.mtime_ns
    if isinstance(event, FileMoved):
        return event.dest_path, event.size, event.mtime_ns
    return None
