"""deploy/training-daemon.service under a real systemd, booted in a throwaway container.

Runs where it can (root, systemd-nspawn, overlayfs, a system Python of this
minor version); skipped with the reason elsewhere. ``make systemd-test`` runs
it alone. The tests share one container and run in file order: start, a
warning in the journal, reload, the watchdog, stop, and nothing left behind.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.systemd.container import Container, boot_container, wait_for, why_unavailable
from tests.systemd.service_helpers import (
    STOP_LINE,
    UNIT,
    UNIT_FILE,
    WORKSPACE,
    install_daemon,
    why_not_installable,
)

REASON = why_unavailable() or why_not_installable()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(REASON is not None, reason=str(REASON))]


@pytest.fixture(scope="module")
def box() -> Iterator[Container]:
    with boot_container() as c:
        install_daemon(c)
        yield c


def running(c: Container) -> dict[str, str]:
    return c.show(UNIT, "ActiveState", "SubState", "MainPID", "NRestarts", "StatusText", "Result")


def test_the_unit_is_installed_unchanged(box: Container) -> None:
    installed = box.root / f"etc/systemd/system/{UNIT}.service"
    assert installed.read_bytes() == UNIT_FILE.read_bytes()
    assert "/srv/training" in installed.read_text()


def test_start_is_active_running_with_a_status_line(box: Container) -> None:
    box.systemctl("start", UNIT)  # Type=notify: returns once READY=1 arrived
    props = running(box)
    assert (props["ActiveState"], props["SubState"]) == ("active", "running"), props
    assert props["StatusText"].startswith("idle"), props
    status = box.systemctl("status", UNIT).stdout
    print(status)
    assert "Active: active (running)" in status
    assert f'Status: "{props["StatusText"]}"' in status
    user = box.run(["ps", "-o", "user=", "-p", props["MainPID"]]).stdout.strip()
    assert user == "training"


def test_warnings_reach_the_journal_with_their_priority(box: Container) -> None:
    lock = f"{WORKSPACE}/training.lock"
    box.sh(f"printf 'not json' > {lock}", user="training")
    try:
        warnings = wait_for(
            lambda: (out := box.journal("-u", UNIT, "-p", "warning")) and "LockFileInvalid" in out,
            30,
            "LockFileInvalid at priority warning",
        )
        assert warnings
        only_warnings = box.journal("-u", UNIT, "-p", "warning", "--output-fields=MESSAGE")
        print(only_warnings)
        assert "DaemonStarted" not in only_warnings  # info lines stay out of -p warning
        assert "DaemonStarted" in box.journal("-u", UNIT)
        raw = box.journal("-u", UNIT, "-p", "warning", "-o", "json")
        assert '"PRIORITY":"4"' in raw.replace(" ", "")
    finally:
        box.run(["rm", "-f", lock])


def test_reload_rereads_the_config(box: Container) -> None:
    before = running(box)["MainPID"]
    box.systemctl("reload", UNIT)
    wait_for(lambda: "ConfigReloaded" in box.journal("-u", UNIT), 20, "ConfigReloaded")
    after = running(box)
    assert after["ActiveState"] == "active" and after["MainPID"] == before


def test_the_watchdog_restarts_a_stopped_daemon(box: Container) -> None:
    before = running(box)
    pid, restarts = before["MainPID"], int(before["NRestarts"])
    assert pid.isdigit() and int(pid) > 1, before  # "kill -STOP 0" would stop this very test
    box.run(["kill", "-STOP", pid])

    def restarted() -> dict[str, str] | None:
        now = running(box)
        again = now["ActiveState"] == "active" and now["SubState"] == "running"
        new_pid = now["MainPID"] not in ("0", pid)
        return now if again and new_pid and int(now["NRestarts"]) > restarts else None

    after = wait_for(restarted, 60, "systemd to kill and restart the stopped daemon")
    print(f"MainPID {pid} -> {after['MainPID']}, NRestarts {restarts} -> {after['NRestarts']}")
    aborted = STOP_LINE.format(result="watchdog", code="killed", status="ABRT")

    def abort_logged() -> str | None:
        out = box.journal("-u", UNIT)
        return out if aborted in out else None

    log = wait_for(abort_logged, 20, "the abort in the journal")
    assert "Watchdog timeout" in log
    assert "Fatal Python error: Aborted" in log  # faulthandler: every thread's stack
    assert "Current thread 0x" in log and "in serve" in log  # the main loop's stack, too
    print("\n".join(line for line in log.splitlines() if not line.startswith(("  File", "{"))))


def test_a_clean_stop(box: Container) -> None:
    box.systemctl("stop", UNIT)
    props = box.show(UNIT, "ActiveState", "Result")
    assert props == {"ActiveState": "inactive", "Result": "success"}, props
    log = box.journal("-u", UNIT)
    print("\n".join(log.splitlines()[-4:]))
    assert '"type": "DaemonStopped"' in log and '"reason": "SIGTERM"' in log
    # exit status 0, not "killed TERM" (which systemd would count as a success as well)
    ended = [line for line in log.splitlines() if line.startswith(STOP_LINE.split(":")[0])]
    assert ended[-1] == STOP_LINE.format(result="success", code="exited", status="0"), ended


def test_nothing_is_left_behind(box: Container) -> None:
    box.close()
    assert box.leftovers() == []
    if shutil.which("machinectl"):
        listed = subprocess.run(
            ["machinectl", "list", "--no-legend"], capture_output=True, text=True, check=False
        )
        # No machined on a host whose PID 1 is not systemd ("Failed to connect to bus"):
        # nothing can be registered then, and --register=no asks for nothing anyway.
        assert box.name not in listed.stdout
