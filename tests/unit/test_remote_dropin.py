"""The drop-in for off-machine copies opens the network and changes nothing else.

``deploy/training-daemon.service.d/remote.conf`` goes on top of the shipped unit. Read
as systemd merges them (a drop-in's assignment adds to a list or replaces a single
value; an empty one resets), the result has network, and every other directive of the
unit keeps its value. Its commented examples (the A and B choices of IPAddressAllow= or
an empty IPAddressDeny=, the credential, the environment hints) are checked too, by
uncommenting them. With ``systemd-analyze`` installed, ``verify`` is silent on the pair
(as tests/unit/test_unit_file.py asks of the unit alone) and ``security`` stays <= 2.0.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.remote.client import CREDENTIAL_NAME

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNIT = DEPLOY / "training-daemon.service"
DROP_IN = DEPLOY / "training-daemon.service.d" / "remote.conf"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")

NETWORK_KEYS = frozenset(
    {
        "PrivateNetwork",
        "RestrictAddressFamilies",
        "IPAddressAllow",
        "IPAddressDeny",
        "LoadCredential",
        "Environment",
    }
)
"""What the drop-in may assign: network and credential wiring, nothing of the rest."""
EXAMPLE = re.compile(r"^#(?=[A-Z][A-Za-z]*=)", re.MULTILINE)
"""A commented directive (``#Key=value``, no space), as opposed to a comment (``# text``)."""
VARIANTS = {
    "as shipped": (),
    "A: a self-hosted server": ("IPAddressAllow",),
    "B: AWS": ("IPAddressDeny",),
    "every example": ("",),
}
"""The drop-in as shipped and with the examples of these keys uncommented ("": all)."""

Directives = dict[tuple[str, str], list[str]]


def parse(text: str, into: Directives | None = None) -> Directives:
    """systemd's unit-file syntax, as far as the unit and the drop-in use it: sections,
    ``Key=value``, ``#``/``;`` comments, backslash continuations. Each (section, key) maps
    to its assignments in order; ``into`` (the unit, for a drop-in) is extended."""
    out: Directives = {k: list(v) for k, v in (into or {}).items()}
    section = ""
    logical = ""
    for raw in text.splitlines():
        line = logical + raw.strip()
        logical = ""
        if line.endswith("\\"):
            logical = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a directive: {line!r}"
        out.setdefault((section, key.strip()), []).append(value.strip())
    return out


def effective(assignments: list[str]) -> list[str]:
    """What a list directive holds after its assignments: an empty one resets the list.
    (For a single-valued directive the last element is the value.)"""
    values: list[str] = []
    for value in assignments:
        values = [] if value == "" else [*values, *value.split()]
    return values


def drop_in_text(variant: str) -> str:
    keys = VARIANTS[variant]
    text = DROP_IN.read_text()
    if not keys:
        return text
    lines = text.splitlines(keepends=True)
    chosen = [
        EXAMPLE.sub("", line) if any(line.startswith(f"#{k}") for k in keys) else line
        for line in lines
    ]
    return "".join(chosen)


def combined(variant: str) -> Directives:
    return parse(drop_in_text(variant), into=parse(UNIT.read_text()))


def test_drop_in_assigns_only_network_and_credentials() -> None:
    for variant in VARIANTS:
        keys = {key for _, key in parse(drop_in_text(variant))}
        assert keys <= NETWORK_KEYS, (variant, keys - NETWORK_KEYS)
        assert {section for section, _ in parse(drop_in_text(variant))} == {"Service"}


def test_examples_are_the_documented_choices() -> None:
    shipped = {key for _, key in parse(drop_in_text("as shipped"))}
    every = {key for _, key in parse(drop_in_text("every example"))}
    assert every - shipped == {"IPAddressAllow", "IPAddressDeny", "LoadCredential", "Environment"}


@pytest.mark.parametrize("variant", VARIANTS)
def test_combined_unit_has_network(variant: str) -> None:
    unit = combined(variant)
    assert unit[("Service", "PrivateNetwork")][-1] == "no"
    families = effective(unit[("Service", "RestrictAddressFamilies")])
    assert not families[0].startswith("~"), families  # an allow list, not a deny list
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= set(families)
    assert parse(UNIT.read_text())[("Service", "PrivateNetwork")] == ["yes"]  # the unit: none


def test_shipped_drop_in_keeps_deny_any_and_loads_no_credential() -> None:
    unit = combined("as shipped")
    assert effective(unit[("Service", "IPAddressDeny")]) == ["any"]
    assert ("Service", "IPAddressAllow") not in unit
    # A LoadCredential= whose file is missing fails every start: opt-in only.
    assert ("Service", "LoadCredential") not in unit


def test_examples_allow_a_server_clear_the_deny_list_and_load_the_credential() -> None:
    a, b, every = combined("A: a self-hosted server"), combined("B: AWS"), combined("every example")
    assert effective(a[("Service", "IPAddressDeny")]) == ["any"]
    assert "10.0.0.5" in effective(a[("Service", "IPAddressAllow")])
    assert effective(b[("Service", "IPAddressDeny")]) == []
    credential = every[("Service", "LoadCredential")]
    assert credential == [f"{CREDENTIAL_NAME}:/etc/training-daemon/{CREDENTIAL_NAME}"]
    env = effective(every[("Service", "Environment")])
    assert {"AWS_EC2_METADATA_DISABLED=true", "PYTHONUNBUFFERED=1"} <= set(env)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_other_directive_of_the_unit_is_unchanged(variant: str) -> None:
    unit = parse(UNIT.read_text())
    merged = combined(variant)
    for (section, key), assignments in unit.items():
        if key in NETWORK_KEYS - {"Environment"}:
            continue
        if key == "Environment":  # a list: the hints add AWS_* variables, keep the unit's
            assert set(effective(assignments)) <= set(effective(merged[(section, key)]))
            continue
        assert merged[(section, key)] == assignments, f"[{section}] {key}"
    assert set(merged) - set(unit) <= {("Service", k) for k in NETWORK_KEYS}


# --- systemd-analyze ---------------------------------------------------------------


def install(tmp_path: Path, variant: str) -> Path:
    """The unit as installed for a workspace that exists, with this interpreter, and the
    drop-in beside it in ``training-daemon.service.d/``, where systemd-analyze looks."""
    text = UNIT.read_text().replace("/srv/training/.venv/bin/python", sys.executable)
    path = tmp_path / UNIT.name
    path.write_text(text.replace("/srv/training", str(tmp_path)))
    folder = tmp_path / f"{UNIT.name}.d"
    folder.mkdir()
    (folder / DROP_IN.name).write_text(drop_in_text(variant))
    return path


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run([ANALYZE, *args], capture_output=True, text=True, timeout=60)


@needs_analyze
@pytest.mark.parametrize("variant", VARIANTS)
def test_verify_reports_nothing(tmp_path: Path, variant: str) -> None:
    result = _analyze("verify", str(install(tmp_path, variant)))
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "" and result.stdout.strip() == ""


@needs_analyze
def test_verify_reads_the_drop_in_folder(tmp_path: Path) -> None:
    """Else the silence above would prove nothing: a bad line in it is reported."""
    unit = install(tmp_path, "as shipped")
    (tmp_path / f"{UNIT.name}.d" / DROP_IN.name).write_text("[Service]\nPrivateNetwork=perhaps\n")
    result = _analyze("verify", str(unit))
    assert f"{DROP_IN.name}:2" in result.stderr, result.stderr


@needs_analyze
@pytest.mark.parametrize("variant", ["as shipped", "B: AWS"])
def test_security_exposure_is_at_most_2(tmp_path: Path, variant: str) -> None:
    result = _analyze("security", "--offline=true", str(install(tmp_path, variant)))
    assert "Service has access to the host's network" in result.stdout  # the drop-in counted
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0, result.stdout
