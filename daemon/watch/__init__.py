"""Watching ``logs/`` and ``models/``: watchdog observers, coalescing, rescans.

``observer`` runs the watchdog observers and turns their notifications into
small queue items (handlers stay thin and never raise); ``coalesce`` is the pure
coalescing of raw notifications into file events; ``rescan`` snapshots the
folders and diffs them against the folded state. It may import the standard
library, watchdog, ``daemon.eventlog`` and ``daemon.lifecycle``; nothing of
``daemon.archive`` or ``daemon.service``.
"""
