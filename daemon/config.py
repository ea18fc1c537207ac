"""Settings, parsed once at the edge into frozen dataclasses.

``config/config.json`` holds the daemon's keys (and the lock-file path both
programs share), either at its top level or inside one ``"daemon"`` section.
``config/logging_config.json`` holds the logging keys. A missing file means the
defaults; an unreadable file, bad JSON, an unknown key or a wrong type raises
:class:`ConfigError` naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from daemon.errors import ConfigError
from daemon.protocol.jsonfile import JSONFileError, read_object
from daemon.remote.settings import FORBIDDEN_KEYS, RemoteConfig

T = TypeVar("T")
PREPARE_CLEARS = ("logs", "models/checkpoints", "models/backups")
"""What prepare clears by default (DESIGN.md, lock protocol, "prepare")."""


DAY_S = 86_400.0
DAEMON_BOUNDS: dict[str, tuple[float, float]] = {
    "keep_last": (0, 10_000),
    "keep_daily": (0, 3_660),
    "keep_weekly": (0, 520),
    "max_total_bytes": (1 << 20, 1 << 50),
    "compression_level": (1, 9),
    "rotation_interval_s": (0.1, DAY_S),
    "rescan_interval_s": (0.1, DAY_S),
    "stale_check_interval_s": (0.1, 3_600.0),
    "coalesce_window_s": (0.0, 60.0),
    "retry_max_s": (0.1, DAY_S),
    "snapshot_every": (100, 1_000_000),
}
"""The sane range of every number in config.json (inclusive); a new numeric key needs one."""


def check_bounds(config: object, bounds: dict[str, tuple[float, float]]) -> None:
    """Raise ValueError naming the first numeric field outside its range (null passes)."""
    for f in dataclasses.fields(config):  # type: ignore[arg-type]
        value = getattr(config, f.name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        low, high = bounds[f.name]
        if not low <= value <= high:
            raise ValueError(f"{f.name} must be between {low:g} and {high:g}, got {value:g}")


@dataclass(frozen=True)
class DaemonConfig:
    archive_dir: str = "archives"
    """Where archives go, relative to the workspace unless absolute."""
    keep_last: int = 5
    """How many of the newest archives rotation always keeps."""
    keep_daily: int = 0
    """Also keep the newest archive of each of the last N days (0: off)."""
    keep_weekly: int = 0
    """Also keep the newest archive of each of the last N ISO weeks (0: off)."""
    max_total_bytes: int | None = None
    """Delete the oldest unprotected archives while the total exceeds this (null: no cap)."""
    lock_file: str = "training.lock"
    """The trainer's lock file, relative to the workspace unless absolute."""
    event_log: str = ".daemon/events.sqlite3"
    """The SQLite event log, relative to the workspace unless absolute."""
    compression_level: int = 1
    """Deflate level for compressible members (1 fastest .. 9 smallest)."""
    rotation_interval_s: float = 300.0
    """How often the daemon enforces retention, besides after every archive."""
    rescan_interval_s: float = 600.0
    """How often the daemon rescans logs/ and models/ against its state."""
    stale_check_interval_s: float = 2.0
    """How often the daemon checks the lock file for a dead trainer."""
    coalesce_window_s: float = 1.0
    """File notifications for one path within this window become one event."""
    polling_fallback: bool = True
    """Fall back to a polling observer when inotify watches run out."""
    retry_max_s: float = 300.0
    """Longest wait before a failed archive task is tried again (5 s, doubling up to this)."""
    prepare_clears: tuple[str, ...] = PREPARE_CLEARS
    """Folders (workspace-relative, inside logs/ or models/) whose files prepare removes
    once a verified archive holds them unchanged; the final model in models/ stays."""
    snapshot_every: int = 1000
    """The daemon stores a snapshot of its folded state every N events (100 .. 1,000,000)."""
    metrics_file: str | None = None
    """A Prometheus textfile (``*.prom``) rewritten after every archive, prune, upload and
    failure, relative to the workspace unless absolute (null: off)."""

    def __post_init__(self) -> None:
        for name in ("keep_last", "keep_daily", "keep_weekly"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if not 1 <= self.compression_level <= 9:
            raise ValueError("compression_level must be between 1 and 9")
        if self.max_total_bytes is not None and self.max_total_bytes <= 0:
            raise ValueError("max_total_bytes must be positive or null")
        for name in (
            "rotation_interval_s",
            "rescan_interval_s",
            "stale_check_interval_s",
            "retry_max_s",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.coalesce_window_s < 0:
            raise ValueError("coalesce_window_s must be >= 0")
        for name in ("archive_dir", "lock_file", "event_log"):
            if not getattr(self, name).strip():
                raise ValueError(f"{name} must not be empty")
        if self.metrics_file is not None and not self.metrics_file.strip().endswith(".prom"):
            raise ValueError("metrics_file must name a .prom file (or be null)")
        for folder in self.prepare_clears:
            check_cleared_folder(folder)
        check_bounds(self, DAEMON_BOUNDS)


def check_cleared_folder(folder: str) -> None:
    """A ``prepare_clears`` entry: logs/ or a folder below logs/ or models/, nothing else
    (models/ itself holds the final model, which the next session needs)."""
    parts = PurePosixPath(folder).parts
    bad = (
        not parts
        or folder.startswith("/")
        or any(p in ("..", ".", "") for p in folder.split("/"))
        or parts[0] not in ("logs", "models")
        or parts == ("models",)
    )
    if bad:
        raise ValueError(
            f"key 'prepare_clears' must list relative folders inside logs/ or models/ "
            f'(such as "logs" or "models/checkpoints"), got {folder!r}'
        )


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "info"
    """Lowest level emitted: debug, info, warning or error."""
    format: str = "auto"
    """json, console, or auto (console on a terminal, JSON otherwise)."""
    training_log: str = "logs/training.log"
    """The trainer's human-readable log, relative to the workspace."""

    def __post_init__(self) -> None:
        if self.level not in ("debug", "info", "warning", "error"):
            raise ValueError("level must be debug, info, warning or error")
        if self.format not in ("auto", "json", "console"):
            raise ValueError("format must be auto, json or console")


@dataclass(frozen=True)
class Paths:
    """Absolute paths of one workspace, resolved from its config."""

    workspace: Path
    archive_dir: Path
    lock_file: Path
    event_log: Path
    config_file: Path
    metrics_file: Path | None = None

    @property
    def daemon_dir(self) -> Path:
        return self.workspace / ".daemon"


@dataclass(frozen=True)
class Settings:
    daemon: DaemonConfig
    logging: LoggingConfig
    paths: Paths
    remote: RemoteConfig | None = None
    """The ``remote`` section of config.json (off-machine copies), None when absent."""


def load_settings(workspace: Path, config_file: Path | None = None) -> Settings:
    workspace = workspace.resolve()
    config_file = (config_file or workspace / "config" / "config.json").absolute()
    daemon, remote = parse_daemon_file(config_file)
    logging = parse_file(workspace / "config" / "logging_config.json", LoggingConfig)

    def resolve(p: str) -> Path:
        path = Path(p).expanduser()
        return path if path.is_absolute() else workspace / path

    paths = Paths(
        workspace=workspace,
        archive_dir=resolve(daemon.archive_dir),
        lock_file=resolve(daemon.lock_file),
        event_log=resolve(daemon.event_log),
        config_file=config_file,
        metrics_file=resolve(daemon.metrics_file) if daemon.metrics_file else None,
    )
    _check_placement(paths)
    return Settings(daemon, logging, paths, remote)


def parse_daemon_file(path: Path) -> tuple[DaemonConfig, RemoteConfig | None]:
    """config.json: the daemon's keys (top level or one ``daemon`` section) and the optional
    ``remote`` section beside them (or inside the ``daemon`` section)."""
    try:
        doc = read_object(path)
    except JSONFileError as e:
        raise ConfigError(str(e)) from e
    if doc is None:
        return DaemonConfig(), None
    doc = dict(doc)
    remote_doc = doc.pop("remote", None)
    if isinstance(doc.get("daemon"), dict) and len(doc) == 1:
        doc = dict(doc["daemon"])
        if remote_doc is None:
            remote_doc = doc.pop("remote", None)
    daemon = parse_mapping(doc, DaemonConfig, source=str(path))
    return daemon, parse_remote(remote_doc, path)


def parse_remote(doc: object, path: Path) -> RemoteConfig | None:
    """The ``remote`` section; keys are named ``remote.KEY`` in errors. Credentials are
    refused: they come from the AWS chain or a systemd credential, never from this file."""
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: key 'remote' must be an object or null")
    for key in doc:
        if key.lower() in FORBIDDEN_KEYS:
            raise ConfigError(
                f"{path}: key 'remote.{key}': credentials never go in config.json; use the "
                "AWS environment, a profile, an instance role or a systemd credential "
                "(see README, Off-machine copies)"
            )
    if "url" not in doc:
        raise ConfigError(f"{path}: key 'remote.url' is required (s3://BUCKET/PREFIX)")
    return parse_mapping(doc, RemoteConfig, source=str(path), key_prefix="remote.")


def _check_placement(paths: Paths) -> None:
    """Refuse paths that would put the daemon's own files among what it archives
    and cleans: an archive folder inside logs/ would be watched, a lock file
    inside logs/ would be removed by ``prepare`` along with its flock."""
    inside = [paths.workspace / area for area in ("logs", "models", "config")]
    for key, path in (
        ("archive_dir", paths.archive_dir),
        ("lock_file", paths.lock_file),
        ("event_log", paths.event_log),
        *((("metrics_file", paths.metrics_file),) if paths.metrics_file else ()),
    ):
        resolved = path.resolve()
        if key == "archive_dir" and resolved == paths.workspace:
            raise ConfigError(f"{paths.config_file}: key {key!r} must not be the workspace itself")
        for area in inside:
            if resolved == area or resolved.is_relative_to(area):
                raise ConfigError(
                    f"{paths.config_file}: key {key!r} must not lie inside {area.name}/ "
                    f"(got {path})"
                )


def check_reloadable(old: Settings, new: Settings) -> None:
    """Raise ConfigError when ``new`` changes what a running daemon cannot change (SIGHUP)."""
    path = old.paths.config_file
    if new.paths.event_log != old.paths.event_log:
        raise ConfigError(f"{path}: event_log cannot change while the daemon runs")
    if new.paths.archive_dir != old.paths.archive_dir:
        # A running task would split its work between two folders, and the
        # archives of the new one would be unknown (unverified) to retention.
        raise ConfigError(f"{path}: archive_dir cannot change while the daemon runs; restart it")


def parse_file(path: Path, cls: type[T], *, section: str | None = None) -> T:
    """Parse a JSON file into ``cls``; a missing file gives the defaults."""
    try:
        doc = read_object(path)
    except JSONFileError as e:
        raise ConfigError(str(e)) from e
    if doc is None:
        return cls()
    if section is not None and isinstance(doc.get(section), dict) and len(doc) == 1:
        doc = doc[section]
    return parse_mapping(doc, cls, source=str(path))


def parse_mapping(doc: dict[str, Any], cls: type[T], *, source: str, key_prefix: str = "") -> T:
    """``doc`` as a ``cls``; errors name ``source`` and the key (``key_prefix`` + key)."""
    assert dataclasses.is_dataclass(cls)
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in doc:
        if key not in names:
            known = ", ".join(sorted(names))
            raise ConfigError(f"{source}: unknown key {key_prefix + key!r} (known keys: {known})")
    values: dict[str, Any] = {}
    for key, value in doc.items():
        values[key] = _coerce(value, hints[key], f"{source}: key {key_prefix + key!r}")
    try:
        return cls(**values)
    except ValueError as e:
        raise ConfigError(f"{source}: {key_prefix}{e}") from e


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is not type(None):
                return _coerce(value, option, where)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif hint == tuple[str, ...]:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
    else:  # pragma: no cover - a field type this parser does not know is a programming error
        raise TypeError(f"unsupported config type {hint!r}")
    raise ConfigError(f"{where} must be {_describe(hint)}, got {json.dumps(value)}")


def _describe(hint: Any) -> str:
    return {
        bool: "true or false",
        int: "an integer",
        float: "a finite number",
        str: "a string",
        tuple[str, ...]: "a list of strings",
    }.get(hint, str(hint))
