"""Off-machine copies: the daemon's upload against boto3's, its memory, a 10,000-archive list.

Is the daemon's upload as fast as boto3's own and flat in memory, and how long does
``list --remote --all-hosts`` take over a big bucket?

Run: ``.venv/bin/python tests/benchmarks/bench_remote.py [--size-mib N] [--rounds R]``
(not collected by pytest; about 4 minutes on 2 cores at the default 1024 MiB). The S3
server is moto's (``tests/remote_server.py``, ``S3Server``) in a process of its own (this
script with ``--serve``), so that neither uploader shares a process with it. moto keeps
every object in memory: each round's objects are deleted before the next, and the
server's VmRSS is printed at the start of every round. The server process also notes, per
key, how long moto's CompleteMultipartUpload took, its CPU time for the upload and the
UploadPart requests it received (``UploadLog``).

1. Upload. One real ``python -m daemon run`` watches a workspace whose models/ holds ``N``
   MiB (default 1024) of random bytes (checkpoints, stored, not compressed: the archive is
   as big) and whose ``remote`` section keeps the defaults (parts of 8 MiB, 4 at once,
   timeouts). Each round ``python -m daemon archive`` makes a new archive while the daemon
   runs; the daemon sees it at its next ``stale_check`` tick (0.5 s here), hashes it (its
   sha256 pass) and uploads it. Measured for the daemon: the ``seconds`` of its
   ``ArchiveUploaded``, i.e. the whole ``upload_archive`` call (a HEAD, the s3transfer
   upload, the verifying HEAD) but not the sha256 pass, which is printed apart (from the
   archive's ``ArchiveVerified`` to the upload's start: the tick, the fold and the sha256
   pass), beside a bare ``hashlib`` sha256 of the file here. The reference: boto3's own
   ``client.upload_file`` in this process, to another key, with a client from
   ``daemon.remote.make_client`` (the same checksum settings and connection pool) and
   ``Config=daemon.remote.transfer_config(cfg)``. Rounds alternate who goes first: daemon
   first, then the reference uploads the same file; reference first, it uploads the
   previous round's archive (the same size and payload; local ``keep_last`` 2 keeps it),
   then the daemon makes and uploads a new one. An untimed warm-up round comes first (a
   fresh moto's first big upload is much slower). Target: median daemon / reference <=
   1.1. moto's CompleteMultipartUpload (it joins, copies and checksums the object) takes
   most of each upload and varies a lot from one to the next, so the ratio without it and
   the CPU time of each uploader are printed too.
2. Memory. A thread here samples VmRSS (``/proc/PID/status``) every 10 ms: the daemon's,
   from just before the archive command until its ``ArchiveUploaded`` is read; this
   process's during the reference. Growth = peak minus the VmRSS before the round; also
   the peak over the daemon before its first upload, and VmHWM. Target: < 64 MiB in every
   round, the warm-up included.
3. Listing. 10,000 archives of 50 simulated hosts (200 each, one workspace each) are put
   straight into the server's store (``S3Server.put_many``), and each workspace's
   ``index.json`` is PUT with ``daemon.remote.write_index``. Timed, alternating, median of
   3: ``python -m daemon list --remote --all-hosts --json`` (a subprocess: interpreter
   start and imports included; the time of those imports alone is printed) and a bare
   boto3 ``list_objects_v2`` paginator over the same prefix in this process. The JSON
   must hold the 10,000 archives, each with the sha256 of its index. No target ratio.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from daemon import remote
from daemon.eventlog.events import StoredEvent
from daemon.remote.settings import RemoteConfig
from tests.daemon_helpers import (
    PYTHON,
    REPO,
    DaemonProcess,
    NotifySocket,
    make_daemon_workspace,
    wait_until,
)
from tests.remote_server import FAKE_ENV

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MIB = 1 << 20
FILE_MIB = 64
"""models/ is filled with checkpoints of this size (the last one smaller)."""
UPLOAD_BUCKET = "bench-upload"
LIST_BUCKET = "bench-list"
PREFIX = "archives"
HOSTS = 50
PER_HOST = 200
LIST_RUNS = 3
LIST_COMMAND = (PYTHON, "-m", "daemon", "list", "--remote", "--all-hosts", "--json")
SAMPLE_S = 0.01
TICKS = os.sysconf("SC_CLK_TCK")
UPLOAD_TIMEOUT = 600.0
RATIO_TARGET = 1.1
RSS_TARGET_MIB = 64.0


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


# --- the S3 server process ------------------------------------------------------------


class UploadLog:
    """In the server process: the cost to moto of each multipart upload, by key.

    ``complete_s`` is the time moto's ``complete_multipart_upload`` took: it assembles the
    object there (its parts read back and joined, copied, checksummed, written to a
    temporary file), seconds of work of the server alone, the same for any client and
    varying a lot from one upload to the next, which the report takes out. ``cpu_s`` is
    the server's CPU time from the upload's creation to its completion; ``parts`` counts
    the UploadPart requests (more than the parts: the client sent some again)."""

    def __init__(self, backend: Any) -> None:
        self.uploads: dict[str, dict[str, float]] = {}
        self._backend = backend
        self._create = backend.create_multipart_upload
        self._part = backend.upload_part
        self._complete = backend.complete_multipart_upload
        backend.create_multipart_upload = self._created
        backend.upload_part = self._sent
        backend.complete_multipart_upload = self._completed

    def _key(self, bucket_name: str, multipart_id: str) -> str:
        return str(self._backend.get_bucket(bucket_name).multiparts[multipart_id].key_name)

    def _created(self, bucket_name: str, key_name: str, *args: Any, **kwargs: Any) -> Any:
        self.uploads[key_name] = {"cpu0": time.process_time(), "parts": 0}
        return self._create(bucket_name, key_name, *args, **kwargs)

    def _sent(self, bucket_name: str, multipart_id: str, part_id: int, value: bytes) -> Any:
        entry = self.uploads.get(self._key(bucket_name, multipart_id))
        if entry is not None:
            entry["parts"] += 1
        return self._part(bucket_name, multipart_id, part_id, value)

    def _completed(self, bucket_name: str, multipart_id: str, body: Any) -> Any:
        key = self._key(bucket_name, multipart_id)
        t0 = time.monotonic()
        try:
            return self._complete(bucket_name, multipart_id, body)
        finally:
            entry = self.uploads.setdefault(key, {"cpu0": time.process_time(), "parts": 0})
            entry["complete_s"] = time.monotonic() - t0
            entry["cpu_s"] = time.process_time() - entry["cpu0"]


def serve() -> None:
    """The server process: moto's S3 on 127.0.0.1 and a free port, printed on stdout.

    Each line on stdin is a JSON command, answered with one line: ``{"bucket": B,
    "objects": {key: text}}`` stores those objects straight into moto's store
    (``put_many``), then says "ok"; ``{"upload": key}`` says (JSON) the ``UploadLog``
    entry of that key's last multipart upload (null: none). End of stdin stops it.
    """
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    from tests.remote_server import S3Server

    with S3Server() as server:
        log = UploadLog(s3_backends[DEFAULT_ACCOUNT_ID]["global"])
        print(server.port, flush=True)
        for line in sys.stdin:
            doc = json.loads(line)
            if "upload" in doc:
                print(json.dumps(log.uploads.get(doc["upload"])), flush=True)
                continue
            objects = {k: v.encode() for k, v in doc["objects"].items()}
            server.put_many(doc["bucket"], objects)
            print("ok", flush=True)


class ServerProcess:
    """This script with ``--serve`` as a child process (``with`` starts and stops it)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [PYTHON, str(Path(__file__).resolve()), "--serve"],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.close()
            sys.exit(f"the S3 server process did not start (said {line!r})")
        self.endpoint_url = f"http://127.0.0.1:{int(line)}"

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ask(self, command: dict[str, Any]) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def put_many(self, bucket: str, objects: dict[str, str]) -> None:
        answer = self._ask({"bucket": bucket, "objects": objects})
        if answer != "ok":
            sys.exit(f"the S3 server process failed to store the objects (said {answer!r})")

    def upload_cost(self, key: str) -> tuple[float, float, int]:
        """The seconds moto took to assemble ``key`` at its CompleteMultipartUpload, its CPU
        time for the whole upload and the UploadPart requests ((0, 0, 0) for one PUT)."""
        entry = json.loads(self._ask({"upload": key})) or {}
        return (
            float(entry.get("complete_s", 0.0)),
            float(entry.get("cpu_s", 0.0)),
            int(entry.get("parts", 0)),
        )

    def rss_mib(self) -> float:
        return proc_status_kib(self.proc.pid, "VmRSS") / 1024

    def close(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


# --- measuring ------------------------------------------------------------------------


def proc_status_kib(pid: int, field_name: str) -> int:
    """A ``kB`` field of ``/proc/PID/status`` (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field_name} in /proc/{pid}/status")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` (all its threads), from ``/proc/PID/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class ProcSampler:
    """VmRSS and CPU time of ``pid`` every ``SAMPLE_S`` on a thread of its own (``with``
    starts and joins it)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, int, float]] = []
        """(time.time(), VmRSS in KiB, CPU seconds), in order."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="proc-sampler", daemon=True)

    def __enter__(self) -> ProcSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rss = proc_status_kib(self.pid, "VmRSS")
                self.samples.append((time.time(), rss, cpu_seconds(self.pid)))
            except (OSError, AssertionError):
                return  # the process is gone
            self._stop.wait(SAMPLE_S)

    def _at(self, when: float) -> tuple[float, int, float]:
        """The last sample at or before ``when`` (the first one if none is)."""
        before = [s for s in self.samples if s[0] <= when]
        return before[-1] if before else self.samples[0]

    def peak_mib(self) -> float:
        return max(kib for _, kib, _ in self.samples) / 1024

    def rss_mib_at(self, when: float) -> float:
        return self._at(when)[1] / 1024

    def cpu_between(self, start: float, end: float) -> float:
        return self._at(end)[2] - self._at(start)[2]


def epoch(ts: str) -> float:
    """An event's ``ts`` (ISO-8601 UTC, ``Z``) as seconds since the epoch."""
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def sha256_seconds(path: Path) -> float:
    """A bare sha256 of ``path`` in this process, 1 MiB reads (as the daemon reads)."""
    t0 = time.monotonic()
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while piece := f.read(MIB):
            digest.update(piece)
    return time.monotonic() - t0


# --- 1 and 2: the upload --------------------------------------------------------------


@dataclass
class Round:
    """One round of the upload benchmark."""

    order: str
    """"daemon first", "boto3 first" or "warm-up" (not timed: the server's first upload)."""
    name: str = ""
    bytes: int = 0
    daemon_s: float = 0.0
    """``seconds`` of the daemon's ArchiveUploaded: the whole ``upload_archive`` call."""
    before_upload_s: float = 0.0
    """From the archive's ArchiveVerified (recorded by the command) to the upload's start:
    the daemon's tick, its fold and its sha256 pass."""
    sha256_s: float = 0.0
    """A bare sha256 of the same file in this process."""
    reference_s: float = 0.0
    """boto3 ``upload_file`` of an archive of the same size, same TransferConfig."""
    daemon_complete_s: float = 0.0
    """Of ``daemon_s``, the seconds moto took to assemble the object (CompleteMultipart)."""
    reference_complete_s: float = 0.0
    daemon_cpu_s: float = 0.0
    reference_cpu_s: float = 0.0
    server_cpu_daemon_s: float = 0.0
    """The server's CPU time for the daemon's upload, creation to completion."""
    server_cpu_reference_s: float = 0.0
    expected_parts: int = 0
    """The archive's parts (the last one smaller): the UploadPart requests of one upload."""
    daemon_parts: int = 0
    """UploadPart requests the server received for the daemon's object (retries count)."""
    reference_parts: int = 0
    reference_growth_mib: float = 0.0
    """VmRSS growth of this process during ``upload_file`` (boto3's own, for reference)."""
    rss_before_mib: float = 0.0
    rss_at_start_mib: float = 0.0
    rss_peak_mib: float = 0.0
    hwm_mib: float = 0.0
    server_rss_mib: float = 0.0
    failures: list[str] = field(default_factory=list)

    @property
    def timed(self) -> bool:
        return self.order != "warm-up"

    @property
    def ratio(self) -> float:
        return self.daemon_s / self.reference_s

    @property
    def net_ratio(self) -> float:
        """The ratio without moto's assembly of the object (server work alone)."""
        return (self.daemon_s - self.daemon_complete_s) / (
            self.reference_s - self.reference_complete_s
        )

    @property
    def growth_mib(self) -> float:
        return self.rss_peak_mib - self.rss_before_mib

    def lines(self, number: int) -> str:
        failures = f"; {len(self.failures)} failures: {self.failures}" if self.failures else ""
        return (
            f"round {number} ({self.order}): {self.name} {self.bytes / MIB:.1f} MiB; "
            f"daemon upload {self.daemon_s:.2f} s, boto3 upload_file {self.reference_s:.2f} s, "
            f"ratio {self.ratio:.3f}; without moto's CompleteMultipartUpload "
            f"({self.daemon_complete_s:.2f} s and {self.reference_complete_s:.2f} s of them) "
            f"{self.daemon_s - self.daemon_complete_s:.2f} s vs "
            f"{self.reference_s - self.reference_complete_s:.2f} s, ratio {self.net_ratio:.3f}"
            f"{failures}\n"
            f"  CPU: daemon {self.daemon_cpu_s:.2f} s, boto3 (this process) "
            f"{self.reference_cpu_s:.2f} s; server {self.server_cpu_daemon_s:.2f} s during the "
            f"daemon's, {self.server_cpu_reference_s:.2f} s during boto3's; "
            f"ArchiveVerified -> upload start {self.before_upload_s:.2f} s "
            f"(bare sha256 here {self.sha256_s:.2f} s); UploadPart requests "
            f"{self.daemon_parts} and {self.reference_parts}\n"
            f"  daemon VmRSS {self.rss_before_mib:.1f} MiB before, {self.rss_at_start_mib:.1f} "
            f"at upload start, peak {self.rss_peak_mib:.1f} ({self.growth_mib:+.1f}), "
            f"VmHWM {self.hwm_mib:.1f}; this process's during boto3's upload "
            f"{self.reference_growth_mib:+.1f}; server VmRSS at round start "
            f"{self.server_rss_mib:.0f} MiB"
        )


def fill_models(ws: Path, size_mib: int) -> None:
    """``size_mib`` MiB of random bytes in models/checkpoints/, as trainer checkpoints."""
    folder = ws / "models" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    left, n = size_mib, 0
    while left > 0:
        mib = min(FILE_MIB, left)
        with (folder / f"memory_efficient_model_{(n + 1) * 1000}_steps.zip").open("wb") as f:
            for _ in range(mib):
                f.write(os.urandom(MIB))
        left -= mib
        n += 1


def upload_workspace(root: Path, endpoint_url: str) -> tuple[Path, RemoteConfig]:
    ws = make_daemon_workspace(root / "ws", keep_last=2)
    section: dict[str, Any] = {
        "url": f"s3://{UPLOAD_BUCKET}/{PREFIX}",
        "endpoint_url": endpoint_url,
    }
    doc = json.loads((ws / "config/config.json").read_text())
    (ws / "config/config.json").write_text(json.dumps({**doc, "remote": section}))
    return ws, RemoteConfig(**section)


def archive_now(ws: Path) -> str:
    """``python -m daemon archive`` while the daemon runs; the new archive's name."""
    done = subprocess.run(
        [PYTHON, "-m", "daemon", "archive", "--workspace", str(ws), "--json"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=UPLOAD_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"archive exited {done.returncode}: {done.stderr[-2000:]}")
    return str(json.loads(done.stdout)["name"])


def reference_upload(
    client: S3Client, cfg: RemoteConfig, path: Path, server: ServerProcess, r: Round
) -> None:
    """boto3's own ``upload_file`` of ``path`` to a key beside the daemon's, timed."""
    key = f"{PREFIX}/reference/{path.name}"
    with ProcSampler(os.getpid()) as mine:  # as the daemon's: same load, and boto3's RSS
        time.sleep(0.2)
        before = time.time()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.monotonic()
        client.upload_file(
            str(path),
            cfg.bucket,
            key,
            ExtraArgs={
                "Metadata": {"sha256": "0" * 64, "reason": "manual", "host": "bench"},
                "ContentType": "application/zip",
            },
            Config=remote.transfer_config(cfg),
        )
        r.reference_s = time.monotonic() - t0
        after = resource.getrusage(resource.RUSAGE_SELF)
        time.sleep(0.1)
    r.reference_cpu_s = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
    r.reference_growth_mib = mine.peak_mib() - mine.rss_mib_at(before)
    r.reference_complete_s, r.server_cpu_reference_s, r.reference_parts = server.upload_cost(key)


def empty_bucket(client: S3Client, bucket: str) -> None:
    """Delete every object (moto holds them in its memory)."""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=item["Key"])


def wait_uploaded(daemon: DaemonProcess, name: str) -> StoredEvent:
    def done() -> StoredEvent | None:
        if daemon.proc.poll() is not None:
            sys.exit(f"the daemon exited {daemon.proc.returncode}: {daemon.stderr()[-2000:]}")
        return daemon.has("ArchiveUploaded", name=name)

    return wait_until(done, UPLOAD_TIMEOUT, f"ArchiveUploaded of {name}")


def daemon_round(daemon: DaemonProcess, ws: Path, server: ServerProcess, r: Round) -> Path:
    """The daemon's half of a round: a new archive, its upload timed and sampled."""
    failed_before = len(daemon.events("ArchiveUploadFailed", "JobFailed"))
    with ProcSampler(daemon.pid) as mine:
        time.sleep(0.2)  # a few samples of the idle daemon first
        archive_start = time.time()
        r.name = archive_now(ws)
        up = wait_uploaded(daemon, r.name)
        time.sleep(0.1)
    path = ws / "archives" / r.name
    r.bytes = int(up.data["bytes"])
    r.daemon_s = float(up.data["seconds"])
    cost = server.upload_cost(str(up.data["key"]))
    r.daemon_complete_s, r.server_cpu_daemon_s, r.daemon_parts = cost
    upload_end = epoch(up.ts)
    upload_start = upload_end - r.daemon_s
    verified = daemon.wait_event("ArchiveVerified", name=r.name)
    r.before_upload_s = upload_start - epoch(verified.ts)
    r.daemon_cpu_s = mine.cpu_between(upload_start, upload_end)
    r.rss_before_mib = mine.rss_mib_at(archive_start)
    r.rss_at_start_mib = mine.rss_mib_at(upload_start)
    r.rss_peak_mib = mine.peak_mib()
    r.hwm_mib = proc_status_kib(daemon.pid, "VmHWM") / 1024
    r.failures = [
        f"{e.type}: {e.data.get('error')}"
        for e in daemon.events("ArchiveUploadFailed", "JobFailed")[failed_before:]
    ]
    r.sha256_s = sha256_seconds(path)
    return path


def settled_rss_mib(pid: int, quiet_s: float = 1.0, timeout: float = 60.0) -> float:
    """VmRSS of ``pid`` once it has not changed for ``quiet_s`` (the daemon's uploader makes
    its S3 client on its own thread after READY)."""
    rss, since = proc_status_kib(pid, "VmRSS"), time.monotonic()
    deadline = since + timeout
    while time.monotonic() < deadline and time.monotonic() - since < quiet_s:
        time.sleep(0.05)
        now = proc_status_kib(pid, "VmRSS")
        if now != rss:
            rss, since = now, time.monotonic()
    return rss / 1024


def upload_rounds(server: ServerProcess, root: Path, size_mib: int, rounds: int) -> list[Round]:
    """A warm-up round, then the timed ones."""
    ws, cfg = upload_workspace(root, server.endpoint_url)
    t0 = time.monotonic()
    fill_models(ws, size_mib)
    print(f"models/: {size_mib} MiB of random bytes written in {time.monotonic() - t0:.1f} s")
    client = remote.make_client(cfg)
    client.create_bucket(Bucket=cfg.bucket)
    notify = NotifySocket(root, abstract=True)
    notify.drain_in_background()
    daemon = DaemonProcess(ws, notify)
    results: list[Round] = []
    try:
        daemon.wait_ready(120)
        wait_until(
            lambda: (s := notify.statuses()) and s[-1].startswith("idle"), 60, "the daemon idle"
        )
        ready = proc_status_kib(daemon.pid, "VmRSS") / 1024
        settled = settled_rss_mib(daemon.pid)
        print(f"daemon idle: VmRSS {ready:.1f} MiB at READY, {settled:.1f} MiB once settled")
        part = cfg.part_size_mb * MIB
        previous: Path | None = None
        for i in range(rounds + 1):
            r = Round(order="warm-up" if i == 0 else ("daemon first", "boto3 first")[(i - 1) % 2])
            r.server_rss_mib = server.rss_mib()
            if r.order == "boto3 first":
                assert previous is not None
                reference_upload(client, cfg, previous, server, r)
                previous = daemon_round(daemon, ws, server, r)
            else:
                previous = daemon_round(daemon, ws, server, r)
                reference_upload(client, cfg, previous, server, r)
            r.expected_parts = -(-r.bytes // part)
            results.append(r)
            print(r.lines(i), flush=True)
            empty_bucket(client, cfg.bucket)
        code = daemon.terminate(120)
        if code != 0:
            sys.exit(f"the daemon exited {code}: {daemon.stderr()[-2000:]}")
    finally:
        daemon.stop()
        notify.close()
    return results


# --- 3: the listing -------------------------------------------------------------------


def fleet(
    cfg: RemoteConfig,
) -> tuple[dict[str, str], dict[tuple[str, str], list[remote.RemoteObject]]]:
    """The bodies of ``HOSTS`` x ``PER_HOST`` archives, and each workspace's objects."""
    bodies: dict[str, str] = {}
    groups: dict[tuple[str, str], list[remote.RemoteObject]] = {}
    for h in range(HOSTS):
        host, workspace_id = f"gpu-node-{h:02d}", hashlib.md5(f"ws{h}".encode()).hexdigest()
        for n in range(PER_HOST):
            name = f"training_backup_202603{1 + n // 24:02d}_{n % 24:02d}0000.zip"
            key = remote.archive_key(cfg.prefix, host, workspace_id, name)
            body = f"{key} {'x' * (n % 50)}"
            bodies[key] = body
            obj = remote.RemoteObject(
                key=key,
                name=name,
                host=host,
                workspace_id=workspace_id,
                bytes=len(body),
                sha256=hashlib.sha256(body.encode()).hexdigest(),
                uploaded_at="",
                session_id=f"s{h}-{n}",
                reason="post_training",
                created_at="2026-03-01T00:00:00+00:00",
            )
            groups.setdefault((host, workspace_id), []).append(obj)
    return bodies, groups


def timed_cli(ws: Path) -> tuple[float, list[dict[str, Any]]]:
    t0 = time.monotonic()
    done = subprocess.run(
        [*LIST_COMMAND, "--workspace", str(ws)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    seconds = time.monotonic() - t0
    if done.returncode != 0:
        sys.exit(f"list --remote exited {done.returncode}: {done.stderr[-2000:]}")
    entries: list[dict[str, Any]] = json.loads(done.stdout)
    return seconds, entries


def timed_paginator(client: S3Client, cfg: RemoteConfig) -> tuple[float, int]:
    t0 = time.monotonic()
    keys = 0
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=cfg.bucket, Prefix=f"{cfg.prefix}/"
    )
    for page in pages:
        keys += len(page.get("Contents", []))
    return time.monotonic() - t0, keys


def import_seconds() -> float:
    t0 = time.monotonic()
    subprocess.run(
        [PYTHON, "-c", "import daemon.cli, daemon.remote.listing, daemon.remote_commands"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
        timeout=120,
    )
    return time.monotonic() - t0


@dataclass
class Listing:
    cli_s: list[float] = field(default_factory=list)
    paginator_s: list[float] = field(default_factory=list)
    import_s: float = 0.0
    entries: int = 0
    with_sha: int = 0
    keys: int = 0

    @property
    def ratio(self) -> float:
        return statistics.median(self.cli_s) / statistics.median(self.paginator_s)


def listing(server: ServerProcess, root: Path) -> Listing:
    ws = make_daemon_workspace(root / "lister")
    cfg = RemoteConfig(url=f"s3://{LIST_BUCKET}/{PREFIX}", endpoint_url=server.endpoint_url)
    section = {"url": cfg.url, "endpoint_url": cfg.endpoint_url}
    doc = json.loads((ws / "config/config.json").read_text())
    (ws / "config/config.json").write_text(json.dumps({**doc, "remote": section}))
    client = remote.make_client(cfg)
    client.create_bucket(Bucket=cfg.bucket)
    bodies, groups = fleet(cfg)
    t0 = time.monotonic()
    server.put_many(cfg.bucket, bodies)
    for (host, workspace_id), objects in groups.items():
        key = remote.index_key(cfg.prefix, host, workspace_id)
        remote.write_index(client, cfg.bucket, key, objects)
    print(
        f"stored {len(bodies)} archives of {len(groups)} hosts and their {len(groups)} "
        f"index.json in {time.monotonic() - t0:.1f} s",
        flush=True,
    )
    expected = {o.key: o.sha256 for objs in groups.values() for o in objs}
    out = Listing(import_s=import_seconds())
    for i in range(LIST_RUNS):
        if i % 2 == 0:
            cli, entries = timed_cli(ws)
            pag, out.keys = timed_paginator(client, cfg)
        else:
            pag, out.keys = timed_paginator(client, cfg)
            cli, entries = timed_cli(ws)
        out.cli_s.append(cli)
        out.paginator_s.append(pag)
        out.entries = len(entries)
        out.with_sha = len([e for e in entries if e["sha256"] == expected.get(str(e["key"]))])
        print(
            f"listing run {i + 1}: list --remote --all-hosts --json {cli:.2f} s "
            f"({out.entries} entries, {out.with_sha} with the sha256 of their index); "
            f"boto3 paginator {pag:.2f} s ({out.keys} keys)",
            flush=True,
        )
    return out


# --- main -----------------------------------------------------------------------------


@contextmanager
def fake_aws_env(root: Path) -> Iterator[None]:
    """moto's fake keys and region for this process and its children; no shared files."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    for k in saved:
        del os.environ[k]
    os.environ.update(FAKE_ENV)
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.environ["AWS_CONFIG_FILE"] = str(root / "none")
    try:
        yield
    finally:
        for k in [k for k in os.environ if k.startswith("AWS_")]:
            del os.environ[k]
        os.environ.update(saved)


def summary(rounds: list[Round], lst: Listing, size_mib: int) -> None:
    timed = [r for r in rounds if r.timed]
    ratio = statistics.median(r.ratio for r in timed)
    net = statistics.median(r.net_ratio for r in timed)
    cpu_ratio = statistics.median(r.daemon_cpu_s / r.reference_cpu_s for r in timed)
    growth = max(r.growth_mib for r in rounds)
    over_first = max(r.rss_peak_mib for r in rounds) - rounds[0].rss_before_mib
    failures = sum(len(r.failures) for r in rounds)
    extra = sum(r.daemon_parts + r.reference_parts - 2 * r.expected_parts for r in rounds)
    cli, pag = statistics.median(lst.cli_s), statistics.median(lst.paginator_s)
    listed_ok = lst.entries == HOSTS * PER_HOST and lst.with_sha == lst.entries

    def median(attr: str) -> float:
        return statistics.median(float(getattr(r, attr)) for r in timed)

    def each(values: Iterable[float], fmt: str = ".3f") -> str:
        return ", ".join(format(v, fmt) for v in values)

    print()
    print(
        f"summary ({size_mib} MiB archive, {len(timed)} timed rounds after a warm-up; "
        f"{HOSTS * PER_HOST} archives listed):"
    )
    print(
        f"  1. upload, daemon (ArchiveUploaded seconds) / boto3 upload_file: median "
        f"{ratio:.3f} ({each(r.ratio for r in timed)}); {median('daemon_s'):.2f} s vs "
        f"{median('reference_s'):.2f} s (target <= {RATIO_TARGET:g}: "
        f"{verdict(ratio <= RATIO_TARGET)})"
    )
    print(
        f"     without moto's CompleteMultipartUpload (the server alone, "
        f"{median('daemon_complete_s'):.2f} s and {median('reference_complete_s'):.2f} s): "
        f"median {net:.3f} ({each(r.net_ratio for r in timed)})"
    )
    print(
        f"     client CPU, daemon / boto3: median {cpu_ratio:.2f} "
        f"({median('daemon_cpu_s'):.2f} s vs {median('reference_cpu_s'):.2f} s); server CPU "
        f"{median('server_cpu_daemon_s'):.2f} s vs {median('server_cpu_reference_s'):.2f} s"
    )
    print(
        f"     before the upload, ArchiveVerified -> upload start (tick + sha256 pass): "
        f"{median('before_upload_s'):.2f} s (a bare sha256: {median('sha256_s'):.2f} s); "
        f"failures recorded: {failures}; UploadPart requests beyond the "
        f"{rounds[0].expected_parts} parts: {extra}"
    )
    print(
        f"  2. daemon VmRSS growth during the upload: max {growth:+.1f} MiB "
        f"({each((r.growth_mib for r in rounds), '+.1f')}, warm-up first; boto3 in this "
        f"process: {each((r.reference_growth_mib for r in rounds), '+.1f')}); "
        f"{over_first:+.1f} MiB over the daemon before its first upload; VmHWM "
        f"{rounds[-1].hwm_mib:.1f} MiB (target < {RSS_TARGET_MIB:g} MiB: "
        f"{verdict(growth < RSS_TARGET_MIB)})"
    )
    print(
        f"  3. list --remote --all-hosts --json: median {cli:.2f} s; a bare boto3 "
        f"list_objects_v2 paginator ({lst.keys} keys) {pag:.2f} s; ratio {lst.ratio:.2f} "
        f"(no target; the CLI's imports alone {lst.import_s:.2f} s); JSON: {lst.entries} "
        f"entries, {lst.with_sha} with their index's sha256 (check: {verdict(listed_ok)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="archive size (default 1024)")
    parser.add_argument("--rounds", type=int, default=3, help="upload rounds (default 3)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    if args.size_mib < 1 or args.rounds < 1:
        parser.error("--size-mib and --rounds must be at least 1")
    root = Path(tempfile.mkdtemp(prefix="bench-remote-"))
    started = time.monotonic()
    try:
        with fake_aws_env(root), ServerProcess() as server:
            rounds = upload_rounds(server, root, args.size_mib, args.rounds)
            lst = listing(server, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"done in {time.monotonic() - started:.0f} s")
    summary(rounds, lst, args.size_mib)


if __name__ == "__main__":
    main()
