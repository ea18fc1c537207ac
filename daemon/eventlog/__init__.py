"""The daemon's memory: an append-only event log and the pure fold over it.

DESIGN.md, "Event log". ``events`` holds the frozen event types and the stored
record (``StoredEvent``); ``store`` the SQLite store (WAL, ``synchronous=FULL``,
never an UPDATE or DELETE of an event); ``fold`` the state as a pure function
of the events; ``snapshot`` the state as checked JSON (a cache of the fold);
``replay`` the state kept current from the latest valid snapshot plus the
events after it. It may import the standard library, ``daemon.errors`` and its
own modules; nothing of ``daemon.archive``, ``daemon.watch`` or ``daemon.service``.
"""
