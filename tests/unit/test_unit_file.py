"""The systemd unit passes `systemd-analyze verify` cleanly and scores <= 1.0 in `security`."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "training-daemon.service"
ANALYZE = shutil.which("systemd-analyze")

pytestmark = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


@pytest.fixture
def unit(tmp_path: Path) -> Path:
    """The unit as installed for a workspace that exists, with this interpreter."""
    text = UNIT.read_text().replace("/srv/training/.venv/bin/python", sys.executable)
    text = text.replace("/srv/training", str(tmp_path))
    path = tmp_path / UNIT.name
    path.write_text(text)
    return path


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run([ANALYZE, *args], capture_output=True, text=True, timeout=60)


def test_unit_as_shipped_names_its_workspace() -> None:
    text = UNIT.read_text()
    assert "Type=notify" in text and "WatchdogSec=" in text and "Restart=on-failure" in text
    assert "ReadWritePaths=/srv/training" in text and "ProtectSystem=strict" in text
    assert "--workspace /srv/training" in text


def test_verify_reports_nothing(unit: Path) -> None:
    result = _analyze("verify", str(unit))
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "" and result.stdout.strip() == ""


def test_security_exposure_is_at_most_1(unit: Path) -> None:
    result = _analyze("security", "--offline=true", str(unit))
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 1.0, result.stdout
