"""Install this project's daemon into a :mod:`tests.systemd.container` as operators do.

The unit file goes in byte for byte: it serves ``/srv/training``, and that is
where the workspace is made (the code under test copied in, as a ``git clone``
would put it), so not even its WORKSPACE lines change. Only a drop-in shortens
the watchdog and restart times for the test and logs how
the main process ended.

The interpreter: the project's virtualenv is built on pyenv's Python under
``/root/.pyenv``, and the unit's ``ProtectHome=yes`` makes ``/root`` (and
``/home``) inaccessible to the service whatever the modes, so the service
cannot run it. Debian's ``/usr/bin/python3.X`` of the same minor version is
outside every protected path: ``/srv/training/.venv`` is made from it
(``--without-pip``), and a ``.pth`` file puts the project venv's
``site-packages`` (pure and binary packages alike: same minor version, same
ABI) on its path, read-only, so nothing is downloaded or copied.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.systemd.container import (
    PACKAGES_INSIDE,
    REPO,
    Container,
    inside,
)

WORKSPACE = "/srv/training"
UNIT = "training-daemon"
UNIT_FILE = REPO / "deploy/training-daemon.service"
DROP_IN = """\
[Service]
WatchdogSec=4
TimeoutAbortSec=10
RestartSec=1
# How the main process ended (systemd forgets it once the unit is inactive): "+" runs
# this outside the sandbox; its output goes to the unit's journal.
ExecStopPost=+/bin/sh -c 'echo "main process ended: $SERVICE_RESULT $EXIT_CODE $EXIT_STATUS"'
"""
STOP_LINE = "main process ended: {result} {code} {status}"
"""The line the drop-in's ExecStopPost logs."""
CONFIG = {
    "stale_check_interval_s": 0.5,
    "coalesce_window_s": 0.2,
    "rescan_interval_s": 30,
    "rotation_interval_s": 60,
    "keep_last": 50,
}


def system_python() -> str | None:
    """A Python of this minor version outside the paths the unit hides."""
    candidate = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    return str(candidate) if candidate.exists() else None


def why_not_installable() -> str | None:
    python = system_python()
    if python is None:
        v = f"{sys.version_info.major}.{sys.version_info.minor}"
        return f"no /usr/bin/python{v}: ProtectHome=yes hides {sys.base_prefix} from the unit"
    return None  # the packages are bound to PACKAGES_INSIDE, out of ProtectHome's way


def install_daemon(c: Container, *, config: dict[str, object] | None = None) -> None:
    """The service user ``training``, the workspace /srv/training, the unit and its drop-in."""
    python = system_python()
    assert python is not None, why_not_installable()
    c.add_user("training", system=True, home=WORKSPACE)
    venv = f"{WORKSPACE}/.venv"
    minor = f"python{sys.version_info.major}.{sys.version_info.minor}"
    code = inside(str(REPO))
    c.sh(
        f"""set -e
        mkdir -p {WORKSPACE}/logs {WORKSPACE}/models {WORKSPACE}/archives
        cp -r {code}/daemon {code}/trainer {code}/config {WORKSPACE}/
        find {WORKSPACE} -name __pycache__ -prune -exec rm -rf {{}} +
        {python} -m venv --without-pip {venv}
        echo {PACKAGES_INSIDE} > {venv}/lib/{minor}/site-packages/project-packages.pth
        cp {inside(str(UNIT_FILE))} /etc/systemd/system/{UNIT}.service
        mkdir -p /etc/systemd/system/{UNIT}.service.d
        """
    )
    (c.root / WORKSPACE.lstrip("/") / "config/config.json").write_text(
        json.dumps({**CONFIG, **(config or {})}, indent=2)
    )
    (c.root / f"etc/systemd/system/{UNIT}.service.d/test.conf").write_text(DROP_IN)
    c.run(["chown", "-R", "training:training", WORKSPACE])
    c.systemctl("daemon-reload")
