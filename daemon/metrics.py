"""The Prometheus textfile (node_exporter's textfile collector) for ``metrics_file``.

A pure part and a thin effect, as elsewhere in the daemon:

* :func:`registry_for` turns a :class:`Figures` snapshot into a fresh
  ``CollectorRegistry`` (no global registry, no process metrics: the textfile
  is read by node_exporter, which has its own), and :func:`render` into the
  text exposition format;
* :func:`write_textfile` writes that text atomically: a hidden temporary file in
  the same folder (it does not end in ``.prom``, so the collector never reads a
  half-written file), fsynced, given mode 0644 (node_exporter runs as another
  user, and the unit's ``UMask=`` would otherwise decide who may read it), then
  renamed over the target and the folder fsynced. prometheus_client's own
  ``write_to_textfile`` does temp + rename in the same folder too, but neither
  fsyncs nor sets the mode, hence this small twin.

Names follow Prometheus conventions: prefix ``training_archiver_``, base units
(seconds, bytes), ``_total`` for counters. A time that never happened (no
archive yet) is exported as 0, so ``time() - metric > 86400`` fires for a
workspace that never archived. Every sample carries a ``workspace`` label:
node_exporter refuses the same series from two files, and one host may run one
daemon per workspace.

This module imports nothing else from ``daemon/``; the main loop builds the
:class:`Figures` from its folded state.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

PREFIX = "training_archiver_"
SESSION_STATES = ("none", "starting", "running", "stopped", "abandoned")
"""Values of ``training_archiver_session_state{state=...}``; exactly one is 1."""
TEXTFILE_MODE = 0o644


@dataclass(frozen=True)
class Figures:
    """What the daemon knows at one instant, in base units; the metrics file shows exactly this."""

    workspace: str
    """The workspace folder (the ``workspace`` label of every sample)."""
    up: bool = True
    """True while the daemon runs; the daemon writes one last file with False when it stops."""
    archives: int = 0
    """This workspace's archives in the archive folder now (as ``list``; foreign ones excluded)."""
    archive_bytes: int = 0
    """Their total size in bytes."""
    archives_created_total: int = 0
    """Archives completed and verified since the event log began."""
    archive_failures_total: int = 0
    """Archive attempts that failed since the event log began (``ArchiveFailed`` events)."""
    last_archive_success_timestamp: float | None = None
    """Unix time of the newest completed, verified archive; None if there is none."""
    last_archive_failure_timestamp: float | None = None
    """Unix time of the newest ``ArchiveFailed``; None if there is none."""
    pruned_total: int = 0
    """Archives deleted by rotation since the event log began (``ArchivePruned`` events)."""
    last_prune_timestamp: float | None = None
    """Unix time of the last rotation run (whether or not it deleted anything)."""
    uploads_total: int = 0
    """Archives uploaded and verified remotely (``ArchiveUploaded``); 0 without a remote."""
    upload_failures_total: int = 0
    """Failed upload attempts (``ArchiveUploadFailed``)."""
    pending_uploads: int = 0
    """Verified archives not yet uploaded (``status --json``'s ``remote.pending``)."""
    last_upload_success_timestamp: float | None = None
    """Unix time of the newest verified upload; None if there is none."""
    session_state: str | None = None
    """The current or last session's state (one of :data:`SESSION_STATES` but ``none``)."""

    def __post_init__(self) -> None:
        state = self.session_state or "none"
        if state not in SESSION_STATES:
            raise ValueError(f"session_state must be one of {SESSION_STATES}, not {state!r}")
        for name in ("archives", "archive_bytes", "archive_failures_total", "pending_uploads"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")


class _FiguresCollector(Collector):
    def __init__(self, figures: Figures) -> None:
        self.figures = figures

    def collect(self) -> Iterator[Metric]:
        f = self.figures
        labels = ["workspace"]
        ws = [f.workspace]

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(PREFIX + name, doc, labels=labels)
            family.add_metric(ws, value)
            return family

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(PREFIX + name, doc, labels=labels)
            family.add_metric(ws, value)
            return family

        yield gauge("up", "1 while the archiver daemon runs, 0 after it stopped.", float(f.up))
        yield gauge("archives", "This workspace's archives in the archive folder.", f.archives)
        yield gauge("archive_bytes", "Total size of this workspace's archives.", f.archive_bytes)
        yield counter(
            "archives_created", "Archives completed and verified.", f.archives_created_total
        )
        yield counter("archive_failures", "Archive attempts that failed.", f.archive_failures_total)
        yield gauge(
            "last_archive_success_timestamp_seconds",
            "Unix time of the newest verified archive (0: none yet).",
            _ts(f.last_archive_success_timestamp),
        )
        yield gauge(
            "last_archive_failure_timestamp_seconds",
            "Unix time of the newest failed archive attempt (0: none).",
            _ts(f.last_archive_failure_timestamp),
        )
        yield counter("archives_pruned", "Archives deleted by rotation.", f.pruned_total)
        yield gauge(
            "last_prune_timestamp_seconds",
            "Unix time of the last rotation run (0: none yet).",
            _ts(f.last_prune_timestamp),
        )
        yield counter("uploads", "Archives uploaded and verified remotely.", f.uploads_total)
        yield counter("upload_failures", "Failed upload attempts.", f.upload_failures_total)
        yield gauge("pending_uploads", "Verified archives not yet uploaded.", f.pending_uploads)
        yield gauge(
            "last_upload_success_timestamp_seconds",
            "Unix time of the newest verified upload (0: none yet).",
            _ts(f.last_upload_success_timestamp),
        )
        state = GaugeMetricFamily(
            PREFIX + "session_state",
            "State of the current or last training session (1 for the current state).",
            labels=[*labels, "state"],
        )
        current = f.session_state or "none"
        for name in SESSION_STATES:
            state.add_metric([*ws, name], float(name == current))
        yield state


def _ts(value: float | None) -> float:
    return 0.0 if value is None else float(value)


def registry_for(figures: Figures) -> CollectorRegistry:
    """A fresh registry holding exactly the metrics of ``figures``."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_FiguresCollector(figures))
    return registry


def render(figures: Figures) -> bytes:
    """The text exposition format (version 0.0.4) of ``figures``."""
    return generate_latest(registry_for(figures))


def metric_names() -> Iterable[str]:
    """Every sample name the file can hold (for checks of alert rules and docs)."""
    text = render(Figures(workspace="-")).decode()
    return sorted({line.split("{", 1)[0] for line in text.splitlines() if not line.startswith("#")})


def write_textfile(path: Path, figures: Figures) -> None:
    """Replace ``path`` atomically with the metrics of ``figures`` (mode 0644)."""
    data = render(figures)
    folder = path.parent
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), TEXTFILE_MODE)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
