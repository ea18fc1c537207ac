"""SIGHUP: read config.json again and apply what a running daemon can change.

A changed ``archive_dir`` or ``event_log`` is refused (``ConfigRejected``); the
rest takes effect at once: intervals, coalescing window, logging, the metrics
file, the ``remote`` section (the uploader is restarted for a new one), the lock
file's path (the watches are restarted for it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from daemon import logs
from daemon.config import check_reloadable, load_settings
from daemon.errors import ConfigError
from daemon.eventlog.events import ConfigRejected, ConfigReloaded
from daemon.service.scheduler import intervals
from daemon.service.uploads import replace_uploader

if TYPE_CHECKING:
    from daemon.service.loop import Daemon


def reload_config(d: Daemon) -> None:
    """Reload ``d``'s settings (on the main loop, after a SIGHUP was recorded)."""
    d.notifier.reloading()
    old = d.settings
    path = str(old.paths.config_file)
    try:
        new = load_settings(old.paths.workspace, d.config_file)
        check_reloadable(old, new)
    except ConfigError as e:
        d.ws.record(ConfigRejected(path=path, error=str(e)))
    else:
        d.settings = d.ws.settings = new
        d.ws.paths = new.paths
        d.metrics.path, d.metrics.dirty = new.paths.metrics_file, True
        d.metrics.load_if_needed(d.ws.stored)  # metrics_file may have just been set
        d.coalescer.window_s = new.daemon.coalesce_window_s
        logs.configure(new.logging)
        d.scheduler.schedule(intervals(d.settings.daemon))
        d.uploader = replace_uploader(d.uploader, d.ws, new, d.queue.put)
        if new.paths.lock_file != old.paths.lock_file:
            d.watcher.lock_file = new.paths.lock_file
            d._restart_watcher()
        d.ws.record(ConfigReloaded(path=path))
    d.notifier.send(READY="1", STATUS=d._status_text())
