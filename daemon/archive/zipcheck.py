"""Is a ``.zip`` file a zip at all? A cheap check, and the daemon's ``ModelInvalid`` events.

:func:`zip_problem` asks ``zipfile`` to open the file, which reads only the
end-of-central-directory record and the central directory: no member is read
or inflated, so the check costs a few small reads whatever the file's size. It
catches what goes wrong with model zips in practice (a truncated copy, a file
that is not a zip at all); a member whose bytes are damaged is left to ``unzip
-t`` and SB3's own loading.

The archive engine flags a ``.zip`` member that fails it (``damaged`` in its
manifest record; the bytes are archived as they are). The daemon's
:class:`ModelChecker` looks at every settled file event of ``models/**/*.zip``
(and, on a rescan, every model zip found) and yields one ``ModelInvalid`` per
distinct (path, size, mtime_ns). Hidden files (a path component starting
with ``.``) are temporary files of atomic saves, checked once they are renamed
into place. A model copied in slowly may be reported while it is half-written;
its complete version is a new version and is checked again.
"""

from __future__ import annotations

import os
import struct
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from daemon.eventlog.events import Event, FileCreated, FileModified, FileMoved, ModelInvalid

if TYPE_CHECKING:
    from daemon.eventlog.fold import FileInfo

_EOCD_SIGNATURE = b"PK\x05\x06"
_EOCD_SIZE = 22
_ZIP64_MARK = 0xFFFFFFFF
Key = tuple[str, int, int]
"""(workspace-relative path, size, mtime_ns): one version of a file."""


def zip_problem(fd: int) -> str | None:
    """Why the file open as ``fd`` is not a readable zip, or None when it is.

    Besides ``zipfile`` opening it, the end-of-central-directory record must
    end the file and the central directory must lie where that record says:
    ``zipfile`` alone accepts a truncated SB3 model, finding the end record of
    a zip stored inside it (``policy.pth``). Reads through a duplicate of
    ``fd``, which shares (and moves) its offset.
    """
    with os.fdopen(os.dup(fd), "rb") as f:
        try:
            with zipfile.ZipFile(f) as z:
                comment, start_dir = z.comment, z.start_dir
            size = f.seek(0, os.SEEK_END)
            end = size - _EOCD_SIZE - len(comment)
            f.seek(max(end, 0))
            record = f.read(_EOCD_SIZE)
        except zipfile.BadZipFile as e:
            return f"not a valid zip: {e}"
        except (EOFError, ValueError, struct.error) as e:
            return f"not a valid zip: {type(e).__name__}: {e}"
        except OSError as e:
            return f"cannot read: {e.strerror or e}"
    if end < 0 or record[:4] != _EOCD_SIGNATURE:
        return "not a valid zip: the end of central directory is not at the end (truncated?)"
    offset = int.from_bytes(record[16:20], "little")
    if offset != _ZIP64_MARK and offset != start_dir:
        return f"not a valid zip: {start_dir - offset} unexpected bytes before the zip data"
    return None


def zip_problem_at(path: Path) -> str | None:
    """:func:`zip_problem` for a path (never following a symlink); None if it vanished."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:
        return f"cannot open: {e.strerror or e}"
    try:
        return zip_problem(fd)
    finally:
        os.close(fd)


def is_model_zip(rel: str) -> bool:
    """A workspace-relative path of a model zip in ``models/`` (not a hidden temp file)."""
    parts = rel.split("/")
    return (
        len(parts) > 1
        and parts[0] == "models"
        and rel.lower().endswith(".zip")
        and not any(p.startswith(".") for p in parts)
    )


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
