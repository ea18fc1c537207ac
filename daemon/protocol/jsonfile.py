"""Read a JSON object from a file or a string, with one-line errors (stdlib only).

The daemon's config, the trainer's config and the lock-file protocol all read
small JSON documents written by people or by the other program. Each error is
one line that names its source (``config/config.json: not valid JSON (...)``);
callers turn :class:`JSONFileError` into their own error type with ``from``.
Lives beside the protocol because the trainer may import this package only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class JSONFileError(ValueError):
    """The file or text is unreadable, not JSON, or not a JSON object (one-line message)."""


def parse_object(text: str, source: str) -> dict[str, Any]:
    """``text`` as a JSON object; :class:`JSONFileError` naming ``source`` otherwise."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise JSONFileError(f"{source}: not valid JSON ({e.msg} at line {e.lineno})") from e
    if not isinstance(doc, dict):
        raise JSONFileError(f"{source}: expected a JSON object at the top level")
    return doc


def read_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when there is no such file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise JSONFileError(f"{path}: cannot read ({e})") from e
    return parse_object(text, str(path))
