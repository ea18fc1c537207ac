# The two set-up commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# torch is pinned to the CPU build first: a bare `torch` requirement would pull a multi-GB CUDA build.
TORCH  ?= torch==2.13.0

.PHONY: demo test systemd-test lint typecheck unit bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(TORCH)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(PY) -m tests.demo

test: $(VENV)/.installed lint typecheck
	$(PY) -m pytest -q -rs -p no:cacheprovider

# The unit under a throwaway systemd (root and systemd-nspawn; else skipped, with the reason).
systemd-test: $(VENV)/.installed
	$(PY) -m pytest -q -rs -p no:cacheprovider tests/systemd

lint: $(VENV)/.installed
	$(PY) -m ruff check daemon trainer tests
	$(PY) -m ruff format --check daemon trainer tests

typecheck: $(VENV)/.installed
	$(PY) -m mypy

bench: $(VENV)/.installed
	$(PY) tests/benchmarks/bench_archive.py
	$(PY) tests/benchmarks/bench_daemon.py
	$(PY) tests/benchmarks/bench_trainer_daemon.py
	$(PY) tests/benchmarks/bench_watch.py
	$(PY) tests/benchmarks/bench_trainer.py
	$(PY) tests/benchmarks/bench_sessions.py
	$(PY) tests/benchmarks/bench_eventlog.py
	$(PY) tests/benchmarks/bench_remote.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
