"""What an archive holds: the files of a workspace, listed without following symlinks.

``collect_sources`` walks ``logs/``, ``models/`` and ``config/`` and takes the
``*.pth``/``*.pkl`` files of the workspace root (as ``root_checkpoints/NAME``).
Symlink policy: a symlink is *never followed*, wherever it points; it is
recorded in the manifest's ``skipped`` list as ``symlink`` (target inside the
workspace, whose real file is archived under its own path if it lies in an
archived area) or ``symlink_outside_workspace``, with the link text as detail.
FIFOs, sockets and devices are recorded as ``not_regular``. Nothing under
``.daemon/`` or the archive folder is ever listed, even when the archive
folder lies inside ``logs/``. Files are later opened with ``O_NOFOLLOW`` so a
file swapped for a symlink after the walk is still not followed.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from daemon.archive.manifest import ROOT_CHECKPOINTS, SkippedRecord

AREAS: tuple[str, ...] = ("logs", "models", "config")
ROOT_SUFFIXES: tuple[str, ...] = (".pth", ".pkl")
DAEMON_DIR = ".daemon"


@dataclass(frozen=True)
class SourceFile:
    """A regular file to archive, as the walk saw it."""

    path: Path
    arcname: str
    size: int
    mtime_ns: int


def collect_sources(
    workspace: Path, exclude: Iterable[Path] = ()
) -> tuple[list[SourceFile], list[SkippedRecord]]:
    """List the files to archive and the entries skipped, in a stable (sorted) order.

    ``exclude`` adds folders never to enter (the archive folder); ``.daemon/``
    is always excluded. Folders that cannot be listed are recorded as unreadable.
    """
    root = Path(os.path.realpath(workspace))
    excluded = {Path(os.path.realpath(p)) for p in exclude} | {root / DAEMON_DIR}
    files: list[SourceFile] = []
    skipped: list[SkippedRecord] = []
    walker = _Walker(root, excluded, files, skipped)
    for area in AREAS:
        walker.visit(root / area, area, top=True)
    try:
        names = sorted(os.listdir(root))
    except OSError as e:
        raise OSError(e.errno, f"cannot list the workspace {root}: {e.strerror}") from e
    for name in names:
        if name.endswith(ROOT_SUFFIXES):
            walker.visit(root / name, f"{ROOT_CHECKPOINTS}/{name}", top=False)
    return files, skipped


class _Walker:
    def __init__(
        self,
        root: Path,
        excluded: set[Path],
        files: list[SourceFile],
        skipped: list[SkippedRecord],
    ) -> None:
        self.root = root
        self.excluded = excluded
        self.files = files
        self.skipped = skipped

    def visit(self, path: Path, arcname: str, *, top: bool) -> None:
        if path in self.excluded:
            return
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if not top:
                self.skipped.append(SkippedRecord(arcname, "vanished"))
            return
        except OSError as e:
            self.skipped.append(SkippedRecord(arcname, "unreadable", e.strerror or str(e)))
            return
        if not _utf8(arcname):
            self.skipped.append(SkippedRecord(_printable(arcname), "unreadable", "name not UTF-8"))
        elif stat.S_ISLNK(st.st_mode):
            self.skipped.append(self._symlink(path, arcname))
        elif stat.S_ISDIR(st.st_mode):
            self._directory(path, arcname)
        elif stat.S_ISREG(st.st_mode):
            self.files.append(SourceFile(path, arcname, st.st_size, st.st_mtime_ns))
        else:
            self.skipped.append(SkippedRecord(arcname, "not_regular"))

    def _directory(self, path: Path, arcname: str) -> None:
        try:
            names = sorted(os.listdir(path))
        except FileNotFoundError:
            return
        except OSError as e:
            self.skipped.append(SkippedRecord(arcname + "/", "unreadable", e.strerror or str(e)))
            return
        for name in names:
            self.visit(path / name, f"{arcname}/{name}", top=False)

    def _symlink(self, path: Path, arcname: str) -> SkippedRecord:
        try:
            text = os.readlink(path)
        except OSError:
            text = ""
        target = Path(os.path.realpath(path))
        inside = target == self.root or self.root in target.parents
        return SkippedRecord(arcname, "symlink" if inside else "symlink_outside_workspace", text)


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(name: str) -> str:
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
