"""A workspace shared by a group under a real systemd (DESIGN, "Sharing").

The unit as shipped runs the daemon as ``training``; the workspace is given to the
group as the README says (chgrp, g+rwX, setgid folders); then a session as the
service user, sessions alternating between two people of the group with their
umask 0022, each acknowledged at once (no ack timeout), archived and verified,
no JobFailed; a person outside the group is refused with one line; reload and a
clean stop. Skipped with the reason where the container cannot boot.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.systemd.container import (
    PACKAGES_INSIDE,
    Container,
    boot_container,
    wait_for,
    why_unavailable,
)
from tests.systemd.service_helpers import (
    UNIT,
    WORKSPACE,
    install_daemon,
    system_python,
    why_not_installable,
)
from tests.trainer_helpers import TINY_CONFIG

REASON = why_unavailable() or why_not_installable()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(REASON is not None, reason=str(REASON))]
PYTHON = f"{WORKSPACE}/.venv/bin/python"
IN_WS = ["sh", "-c", f'cd {WORKSPACE} && exec "$@"', "sh"]
"""Run from the workspace, where the project's code is (nsenter's --wd opens the host's path)."""
SHARE = f"""set -e
chgrp -R training {WORKSPACE}
chmod -R g+rwX {WORKSPACE}
find {WORKSPACE} -type d -exec chmod g+s {{}} +
"""


@pytest.fixture(scope="module")
def box() -> Iterator[Container]:
    with boot_container() as c:
        install_daemon(c)
        config = {**TINY_CONFIG, "ack_timeout_s": 120.0, "checkpoint_freq": 100}
        (c.root / WORKSPACE.lstrip("/") / "config/training_config.json").write_text(
            json.dumps(config)
        )
        for person in ("alice", "bob"):
            c.add_user(person, groups=["training"])
        c.add_user("carol")
        c.sh(SHARE)
        c.systemctl("start", UNIT)
        yield c


def train(c: Container, user: str) -> str:
    done = c.run(
        [*IN_WS, PYTHON, "-m", "trainer", "--workspace", WORKSPACE],
        user=user,
        umask=0o022,
        check=False,
        timeout=240,
    )
    assert done.returncode == 0, (user, done.stderr[-3000:])
    lock = json.loads((c.root / WORKSPACE.lstrip("/") / "training.lock").read_text())
    assert lock["state"] == "stopped" and lock["outcome"] == "completed"
    return str(lock["session_id"])


def events(c: Container, user: str = "alice") -> list[dict[str, Any]]:
    out = c.run(
        [*IN_WS, PYTHON, "-m", "daemon", "events", "--json", "--workspace", WORKSPACE],
        user=user,
        umask=0o022,
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def archived(c: Container, session_id: str) -> str | None:
    evs = events(c)
    names = [
        e["data"]["name"]
        for e in evs
        if e["type"] == "ArchiveCompleted"
        and e["data"].get("session_id") == session_id
        and e["data"].get("reason") == "post_training"
    ]
    ok = {e["data"]["name"] for e in evs if e["type"] == "ArchiveVerified" and e["data"]["ok"]}
    return names[0] if names and names[0] in ok else None


def test_sessions_of_the_service_user_and_two_people_alternating(box: Container) -> None:
    sessions = []
    for user in ("training", "alice", "bob", "alice"):
        sid = train(box, user)
        name = wait_for(functools.partial(archived, box, sid), 120, f"{user}'s archive")
        print(f"{user}: session {sid} -> {name}")
        sessions.append(sid)
    evs = events(box, "bob")
    acked = {e["data"]["session_id"] for e in evs if e["type"] == "SessionAcknowledged"}
    assert set(sessions) <= acked
    bad = [e for e in evs if e["type"] in ("JobFailed", "PrepareSkipped")]
    assert bad == [], bad
    log = (box.root / WORKSPACE.lstrip("/") / "logs/training.log").read_text()
    assert "acknowledg" in log.lower()
    assert "timed out" not in log.lower() and "timeout" not in log.lower()


def test_a_person_outside_the_group_gets_one_line_and_exit_2(box: Container) -> None:
    box.sh(f"mkdir -p /opt/code && cp -r {WORKSPACE}/daemon {WORKSPACE}/trainer /opt/code/")
    box.sh(f"chmod o-rwx {WORKSPACE}")  # what "others" may do is the operator's choice
    for cmd in (
        ["trainer"],
        ["daemon", "status"],
        ["daemon", "list", "--json"],
    ):
        # from a copy of the code outside the workspace: carol cannot even enter it
        full = ["sh", "-c", 'cd /opt/code && exec "$@"', "sh", str(system_python()), "-m", *cmd]
        done = box.run(
            [*full, "--workspace", WORKSPACE],
            user="carol",
            umask=0o022,
            env={"PYTHONPATH": f"/opt/code:{PACKAGES_INSIDE}"},
            check=False,
        )
        print(done.stderr.strip())
        assert done.returncode == 2, (cmd, done.stdout, done.stderr)
        # the harness's own shell may complain that nsenter left it no cwd: not ours
        lines = [x for x in done.stderr.strip().splitlines() if "getcwd() failed" not in x]
        assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
        assert "usermod -aG training carol" in lines[0]
        assert "usermod -aG training carol" in lines[0] and WORKSPACE in lines[0]


def test_reload_and_a_clean_stop_leave_nothing(box: Container) -> None:
    box.systemctl("reload", UNIT)
    wait_for(lambda: "ConfigReloaded" in box.journal("-u", UNIT), 30, "ConfigReloaded")
    box.systemctl("stop", UNIT)
    props = box.show(UNIT, "ActiveState", "Result")
    assert props == {"ActiveState": "inactive", "Result": "success"}, props
    box.close()
    assert box.leftovers() == []
