"""The base class of every event."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

Area = Literal["logs", "models"]
"""The two watched folders of a workspace."""


@dataclass(frozen=True)
class Event:
    """Base class: subclasses are registered by name in :data:`EVENT_TYPES`."""

    SCHEMA: ClassVar[int] = 1

    @property
    def type(self) -> str:
        return type(self).__name__

    def payload(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
