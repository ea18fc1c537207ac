"""The boundaries DESIGN.md draws between the two programs, checked in fresh interpreters."""

from __future__ import annotations

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
    assert {m for m in loaded if m.split(".")[0] == "daemon"} == {"daemon", "daemon.protocol"}


def test_the_daemon_imports_no_torch_sb3_gymnasium_or_trainer():
    loaded = modules_after_import(*package_modules("daemon"))
    heavy = {"torch", "stable_baselines3", "gymnasium", "trainer", "tensorboard", "matplotlib"}
    assert {m.split(".")[0] for m in loaded} & heavy == set()
