"""Whether a trainer lives: the pure decision, the real probe, and what a process of
another uid can (not) see, with /proc mounted as the shipped unit mounts it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from daemon.openfiles import pids_hidden, scan_open_files
from daemon.protocol import LockInfo, ProcessIdentity, Seen, SystemProbe, identity_of, liveness
from daemon.protocol.document import (
    parse_start_time,
    parse_state,
    read_boot_id,
    read_start_time,
)
from daemon.protocol.liveness import send_zero
from tests.daemon_helpers import wait_until

HOST = socket.gethostname()
BOOT = "boot-a"


def seen(signal: str = "exists", start: int | None = 500, **kw: object) -> Callable[[int], Seen]:
    values = {"host": HOST, "boot_id": BOOT, "signal": signal, "start_time": start, **kw}
    return lambda pid: Seen(**values)  # type: ignore[arg-type]


WHO = ProcessIdentity(pid=4321, host=HOST, boot_id=BOOT, start_time=500)


@pytest.mark.parametrize(
    ("who", "probe", "verdict"),
    [
        (WHO, seen(), "alive"),
        (WHO, seen(host="elsewhere"), "unknown"),  # another host: nothing here can say
        (WHO, seen(boot_id="boot-b"), "dead"),  # rebooted since
        (WHO, seen(signal="gone", start=None), "dead"),  # ESRCH
        (WHO, seen(start=501), "dead"),  # the pid was reused
        (WHO, seen(signal="denied"), "alive"),  # EPERM: it exists, another uid's
        (WHO, seen(signal="denied", start=None), "alive"),  # hidepid: /proc hides it
        (WHO, seen(start=None), "alive"),
        (ProcessIdentity(0, HOST, BOOT), seen(), "unknown"),
        # protocol 1 without start_time: pid and boot id, and not younger than the session
        (ProcessIdentity(4321, HOST, BOOT), seen(start=9), "alive"),
        (ProcessIdentity(4321, HOST, "unknown"), seen(boot_id="boot-b"), "alive"),
        (
            ProcessIdentity(4321, HOST, BOOT, started_at="2026-01-01T00:00:00+00:00"),
            seen(started_wall=1767225600.0 + 60),
            "dead",
        ),
        (
            ProcessIdentity(4321, HOST, BOOT, started_at="2026-01-01T00:00:00+00:00"),
            seen(started_wall=1767225600.0 - 2),
            "alive",
        ),
    ],
)
def test_liveness_decides_by_identity(
    who: ProcessIdentity, probe: Callable[[int], Seen], verdict: str
) -> None:
    assert liveness(who, probe) == verdict


def test_a_protocol_1_document_without_start_time_still_parses() -> None:
    doc = {
        "protocol": 1,
        "session_id": "s",
        "pid": 7,
        "host": "h",
        "boot_id": "b",
        "started_at": "t",
        "archive": True,
        "state": "running",
        "outcome": None,
    }
    info = LockInfo.from_json(json.dumps(doc))
    assert info.start_time is None and identity_of(info) == ProcessIdentity(7, "h", "b", None, "t")
    with pytest.raises(ValueError, match="'start_time' must be int"):
        LockInfo.from_json(json.dumps({**doc, "start_time": "x"}))


def test_start_time_is_field_22_counted_after_the_last_parenthesis() -> None:
    rest = " ".join(str(n) for n in range(3, 30))  # field 3 holds "3", ..., field 22 holds "22"
    assert parse_start_time(f"99 (a) b) (c) {rest}") == 22  # a command name with ") ("
    assert parse_start_time("99 (short) S 1") is None
    assert parse_state(f"99 (a) Z) (c) {rest}") == "3" and parse_state("99 (z) Z 1") == "Z"
    assert parse_state("") is None
    assert read_start_time(os.getpid()) == parse_start_time(Path("/proc/self/stat").read_text())


def test_the_system_probe_on_real_processes() -> None:
    me = LockInfo.new(archive=True)
    assert liveness(identity_of(me), SystemProbe()) == "alive"
    child = subprocess.Popen(["sleep", "30"])
    who = ProcessIdentity(child.pid, HOST, read_boot_id(), read_start_time(child.pid))
    assert liveness(who, SystemProbe()) == "alive"
    reused = ProcessIdentity(child.pid, HOST, read_boot_id(), (who.start_time or 0) + 1)
    assert liveness(reused, SystemProbe()) == "dead"
    child.kill()
    wait_until(lambda: parse_state(Path(f"/proc/{child.pid}/stat").read_text()) == "Z", 10)
    assert send_zero(child.pid) == "exists"  # a zombie: exited, not yet reaped by its parent
    assert liveness(who, SystemProbe()) == "dead"
    child.wait()
    assert send_zero(child.pid) == "gone"
    assert liveness(who, SystemProbe()) == "dead"


# --- another uid, /proc as ProtectProc=invisible mounts it -------------------------

OTHER_UID = 4242
DAEMON_UID = 4343


@pytest.fixture
def invisible_proc() -> Iterator[Path]:
    """A procfs mounted with ``hidepid=invisible`` (what ProtectProc=invisible does)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a procfs with hidepid and to change uid")
    where = Path(tempfile.mkdtemp(prefix="proc-invisible-"))
    mount = subprocess.run(
        ["mount", "-t", "proc", "-o", "hidepid=invisible", "proc", str(where)],
        capture_output=True,
        text=True,
    )
    if mount.returncode != 0:
        where.rmdir()
        pytest.skip(f"cannot mount a procfs with hidepid=invisible: {mount.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)
        where.rmdir()


def as_uid(uid: int, work: Callable[[], object]) -> object:
    """Run ``work`` in a forked child that dropped to ``uid``; its result (as JSON)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges for good, then look
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            os.write(write, json.dumps(work()).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        text = f.read()
    os.waitpid(pid, 0)
    return json.loads(text)


def test_a_daemon_that_cannot_see_the_trainer_assumes_it_alive(invisible_proc: Path) -> None:
    trainer = subprocess.Popen(
        ["setpriv", f"--reuid={OTHER_UID}", f"--regid={OTHER_UID}", "--clear-groups", "sleep", "60"]
    )
    try:
        start = read_start_time(trainer.pid)  # root sees it; the trainer wrote this itself
        assert start is not None
        who = ProcessIdentity(trainer.pid, HOST, read_boot_id(), start)

        def look() -> object:
            probe = SystemProbe(proc=invisible_proc)
            s = probe(trainer.pid)
            files = scan_open_files(invisible_proc)
            return [s.signal, s.start_time, liveness(who, probe), files.complete]

        looked = as_uid(DAEMON_UID, look)
        assert isinstance(looked, list)
        signal, start_seen, verdict, complete = looked
        assert signal == "denied"  # kill(pid, 0): EPERM, not ESRCH
        assert start_seen is None  # /proc/PID is invisible: ENOENT although it lives
        assert verdict == "alive"
        assert complete is False  # its open files cannot be seen: "may be open"
        assert pids_hidden(invisible_proc) and not pids_hidden(Path("/proc"))
    finally:
        trainer.kill()
        trainer.wait()
    gone = as_uid(DAEMON_UID, lambda: liveness(who, SystemProbe(proc=invisible_proc)))
    assert gone == "dead"  # once it is gone, ESRCH says so even to the blind


def test_the_open_file_scan_sees_a_real_holder_and_admits_what_it_cannot(tmp_path: Path) -> None:
    log = tmp_path / "held.log"
    log.write_text("x")
    os.chmod(tmp_path, 0o755)
    with log.open() as f:
        holder = subprocess.Popen(["sleep", "60"], stdin=f)
    try:
        files = scan_open_files()
        assert files.holds(log.stat())
        assert not files.holds(tmp_path.stat())
        if os.geteuid() == 0:  # an unprivileged looker gets EACCES on root's fds
            assert as_uid(DAEMON_UID, lambda: scan_open_files().complete) is False
    finally:
        holder.kill()
        holder.wait()
