"""The uploader: a thread of its own copies every verified archive off the machine.

Archiving, acknowledgements and training never wait for the network: the main
loop only wakes this thread (after every task) and hears back through its queue
(:class:`UploadsDone`, after which it runs local rotation, which may now delete
archives it kept for want of a copy). What is owed is the log's
``State.pending_uploads()``, oldest first, so a restart resumes where the last
run stopped. At its start the thread aborts the multipart uploads a killed
daemon of this workspace left behind. A failure is recorded
(``ArchiveUploadFailed``, its cause named) and retried after a backoff (5 s,
doubling up to ``retry_max_s``), sooner when a new archive arrives. Stopping
cancels the transfer in flight (s3transfer aborts its multipart upload); the
next run uploads that archive again from the start.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from daemon import remote, remote_ops
from daemon.config import Settings
from daemon.eventlog.events import JobFailed
from daemon.eventlog.remote_events import ArchiveUploadFailed
from daemon.ops import Workspace
from daemon.remote.settings import RemoteConfig
from daemon.service.sessions import backoff

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = structlog.get_logger("daemon.uploads")
JOIN_S = 10.0
"""How long :meth:`Uploader.stop` waits for the thread after cancelling its transfer."""


@dataclass(frozen=True)
class UploadsDone:
    """Queued for the main loop after each round of uploads (or a failure)."""

    uploaded: int
    error: str | None = None


class Uploader:
    """Uploads this workspace's pending archives, one at a time, on its own thread."""

    def __init__(
        self,
        ws: Workspace,
        cfg: RemoteConfig,
        put: Callable[[object], None],
        *,
        retry_max_s: float = 300.0,
    ) -> None:
        self.ws = ws
        self.cfg = cfg
        self.put = put
        self.retry_max_s = retry_max_s
        self.current: str | None = None
        """The archive being uploaded now (for status)."""
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, name="uploader", daemon=True)
        self._client: S3Client | None = None
        self._aborted = False
        self._failures = 0

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Something may be owed (a new archive, a reload): look now."""
        self._wake.set()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """Cancel the transfer in flight and wait (briefly) for the thread to end."""
        self._stop.set()
        self._cancel.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(JOIN_S)

    # --- the thread ---------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                uploaded = self._round()
            except remote.RemoteError as e:
                self._backoff(str(e))
                continue
            except Exception as e:  # a bug must not kill the thread
                error = f"{type(e).__name__}: {e}"
                log.exception("upload round failed", error=error)
                self._backoff(error, job=True)
                continue
            self._failures = 0
            if uploaded:
                self.put(UploadsDone(uploaded))
            self._wake.wait()
            self._wake.clear()

    def _round(self) -> int:
        """Upload everything owed, oldest first; then remote retention. How many went."""
        place = remote_ops.place_of(self.ws, self.cfg)
        pending = self.ws.state().pending_uploads()
        if place is None or (not pending and self._aborted):
            return 0
        client = self._client = self._client or remote_ops.client_for(self.cfg)
        if not self._aborted:
            remote_ops.abort_stale(self.ws, client, place)
            self._aborted = True
        count = 0
        for info in pending:
            if self._stop.is_set():
                break
            self.current = info.name  # named by the failure, if it fails
            if remote_ops.upload(self.ws, client, place, info, cancel=self._cancel):
                count += 1
            self.current = None
        if count and not self._stop.is_set():
            try:
                remote_ops.prune_remote(self.ws, client, place)
            except remote.RemoteError as e:  # the uploads stand; the next round prunes again
                self.ws.record(JobFailed(job="remote_prune", error=str(e)))
        return count

    def _backoff(self, error: str, *, job: bool = False) -> None:
        """Record the failure and wait; never raises (the thread must live on)."""
        try:
            if job:
                self.ws.record(JobFailed(job="upload", error=error))
            self._failed(error, record=not job)
        except Exception:
            log.exception("recording an upload failure failed")
            self._stop.wait(self.retry_max_s)

    def _failed(self, error: str, *, record: bool = True) -> None:
        if self._stop.is_set():
            return  # cancelled by stop(): not a failure of the remote
        self._failures += 1
        wait = backoff(self._failures, cap_s=self.retry_max_s)
        pending = self.ws.state().pending_uploads()
        if record:
            name = self.current or (pending[0].name if pending else "-")
            self.ws.record(
                ArchiveUploadFailed(name=name, error=error, attempt=self._failures, retry_in_s=wait)
            )
        self.current = None
        self.put(UploadsDone(0, error))
        owed = {a.archive_id for a in pending}
        deadline = time.monotonic() + wait
        while not self._stop.is_set() and time.monotonic() < deadline:
            if self._wake.wait(deadline - time.monotonic()):
                self._wake.clear()
                now = {a.archive_id for a in self.ws.state().pending_uploads()}
                if now - owed:
                    break  # a new archive: try now (other wakes keep the backoff)


def replace_uploader(
    old: Uploader | None, ws: Workspace, settings: Settings, put: Callable[[object], None]
) -> Uploader | None:
    """The uploader for ``settings`` (started), stopping ``old`` if the remote changed;
    None without a ``remote`` section. At start ``old`` is None."""
    cfg = settings.remote
    if old is not None:
        if cfg == old.cfg:
            old.retry_max_s = settings.daemon.retry_max_s
            old.wake()
            return old
        old.stop()
    if cfg is None:
        return None
    new = Uploader(ws, cfg, put, retry_max_s=settings.daemon.retry_max_s)
    new.start()
    return new
