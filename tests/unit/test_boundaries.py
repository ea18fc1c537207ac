"""The boundaries DESIGN.md draws: between the two programs (checked in fresh interpreters)
and between the daemon's packages (checked on every import statement of their source)."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def modules_after_import(*names: str) -> set[str]:
    code = (
        "import importlib, json, sys\n"
        f"for name in {list(names)!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    return set(json.loads(out.stdout))


def package_modules(package: str) -> list[str]:
    found = pkgutil.iter_modules([str(REPO / package)])
    return [f"{package}.{m.name}" for m in found if m.name != "__main__"]


def test_the_trainer_imports_nothing_of_the_daemon_but_its_protocol():
    loaded = modules_after_import(*package_modules("trainer"))
    daemon_modules = {m for m in loaded if m.split(".")[0] == "daemon"}
    assert {"daemon", "daemon.protocol"} <= daemon_modules
    assert {m for m in daemon_modules if not m.startswith("daemon.protocol")} == {"daemon"}


def test_the_protocol_pulls_in_no_daemon_machinery():
    loaded = modules_after_import("daemon.protocol")
    assert {m for m in loaded if m.startswith("daemon")} - {"daemon"} == {
        f"daemon.protocol.{name}"
        for name in ("document", "files", "jsonfile", "liveness", "reading", "trainer_lock")
    } | {"daemon.protocol"}
    for heavy in ("watchdog", "apscheduler", "sqlite3", "structlog"):
        assert heavy not in loaded


def test_the_daemon_imports_no_torch_sb3_gymnasium_or_trainer():
    loaded = modules_after_import(*package_modules("daemon"))
    heavy = {"torch", "stable_baselines3", "gymnasium", "trainer", "tensorboard", "matplotlib"}
    assert {m.split(".")[0] for m in loaded} & heavy == set()


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import statement of a file, nested ones included."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import"
            module = node.module or ""
            if module == "daemon":  # from daemon import archive, ops
                found += [(node.lineno, f"daemon.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, module))
    return found


def sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (REPO / folder).rglob("*.py"))


def forbidden(folder: str, allowed: tuple[str, ...]) -> list[str]:
    """Imports of ``daemon.*`` from ``folder`` that fall outside ``allowed`` prefixes."""
    bad = []
    for path in sources(folder):
        for line, module in imports_of(path):
            if module.split(".")[0] != "daemon" or module == "daemon":
                continue
            if not any(module == a or module.startswith(a + ".") for a in allowed):
                bad.append(f"{path.relative_to(REPO)}:{line}: {module}")
    return bad


def test_the_archive_engine_is_a_library_of_its_own():
    allowed = ("daemon.archive", "daemon.errors", "daemon.config")
    assert forbidden("daemon/archive", allowed) == []


def test_the_remote_library_knows_nothing_of_the_log_or_the_service():
    allowed = ("daemon.remote", "daemon.errors", "daemon.archive")
    assert forbidden("daemon/remote", allowed) == []


def test_reading_the_config_does_not_import_boto3():
    loaded = modules_after_import("daemon.config")
    assert "boto3" not in loaded
    assert "botocore" not in loaded


def test_the_event_log_imports_nothing_of_archive_watch_or_service():
    assert forbidden("daemon/eventlog", ("daemon.eventlog", "daemon.errors")) == []


def test_the_watching_imports_no_archive_engine_and_no_service():
    allowed = ("daemon.watch", "daemon.eventlog", "daemon.errors", "daemon.lifecycle")
    assert forbidden("daemon/watch", allowed) == []


def test_the_protocol_imports_the_standard_library_only():
    for path in sources("daemon/protocol"):
        for line, module in imports_of(path):
            top = module.split(".")[0]
            where = f"{path.relative_to(REPO)}:{line}: {module}"
            if top == "daemon":
                assert module.startswith("daemon.protocol."), where
            else:
                assert top in sys.stdlib_module_names or top == "__future__", where


def test_the_trainer_imports_only_the_protocol_of_the_daemon():
    assert forbidden("trainer", ("daemon.protocol",)) == []


def test_only_the_command_line_imports_the_service():
    outside = [p for p in sources("daemon") if "service" not in p.relative_to(REPO).parts]
    users = {
        str(path.relative_to(REPO))
        for path in outside
        for _, module in imports_of(path)
        if module == "daemon.service" or module.startswith("daemon.service.")
    }
    assert users <= {"daemon/commands.py"}


def test_no_module_is_over_400_lines():
    long = {
        str(p.relative_to(REPO)): n
        for p in sources("daemon", "trainer")
        if (n := len(p.read_text().splitlines())) > 400
    }
    assert long == {}
