"""Is a ``.zip`` file a zip at all? A cheap check of its central directory.

:func:`zip_problem` asks ``zipfile`` to open the file, which reads only the
end-of-central-directory record and the central directory: no member is read
or inflated, so the check costs a few small reads whatever the file's size. It
catches what goes wrong with model zips in practice (a truncated copy, a file
that is not a zip at all); a member whose bytes are damaged is left to ``unzip
-t`` and SB3's own loading.

The archive engine flags a ``.zip`` member that fails it (``damaged`` in its
manifest record; the bytes are archived as they are); the service's
``daemon.service.model_check`` turns file events of model zips into
``ModelInvalid`` events with it.
"""

from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path

_EOCD_SIGNATURE = b"PK\x05\x06"
_EOCD_SIZE = 22
_ZIP64_MARK = 0xFFFFFFFF


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
