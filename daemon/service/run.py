"""``python -m daemon run``: config, the daemon lock for life, logging, sd_notify, the loop.

Exit codes: 0 after a clean stop, 1 when the event log cannot be used, 2 on
bad config, a workspace that is not a folder, or a daemon already running for
the workspace (it holds ``.daemon/daemon.lock``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from daemon import logs, protocol
from daemon.config import load_settings
from daemon.errors import ConfigError, EventLogError
from daemon.service.loop import Daemon
from daemon.service.notify import Notifier


def run(workspace: Path, config_file: Path | None = None) -> int:
    """The ``run`` command: 0 after a clean stop, 2 on bad config or a daemon already running."""
    logs.enable_faulthandler()  # a watchdog abort (SIGABRT) leaves every stack in the journal
    try:
        settings = load_settings(workspace, config_file)
    except ConfigError as e:
        print(f"daemon: {e}", file=sys.stderr)
        return 2
    root = settings.paths.workspace
    if not root.is_dir():
        print(f"daemon: workspace {root} is not a folder", file=sys.stderr)
        return 2
    lock_path = protocol.daemon_lock_path(root)
    try:
        hold = protocol.held_exclusively(lock_path)
        fd = hold.__enter__()
    except protocol.LockHeldError:
        pid = _read_pid(lock_path)
        print(
            f"daemon: another daemon{pid} already runs for workspace {root} "
            f"(it holds {lock_path}); exiting",
            file=sys.stderr,
        )
        return 2
    try:
        try:
            protocol.write_in_place(fd, f"{os.getpid()}\n")
        except OSError as e:  # a full disk: the pid is for people, the flock is what counts
            print(f"daemon: cannot write the pid into {lock_path} ({e.strerror})", file=sys.stderr)
        logs.configure(settings.logging)
        notifier = Notifier.from_env(os.environ)
        try:
            return Daemon(settings, notifier, config_file=config_file).serve()
        except EventLogError as e:
            print(f"daemon: {e}", file=sys.stderr)
            return 1
        finally:
            notifier.close()
    finally:
        hold.__exit__(None, None, None)


def _read_pid(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        return ""
    return f" (pid {text})" if text.isdigit() else ""
