"""The long-running service (``python -m daemon run``).

``run`` is the entry point (config, the daemon lock, logging, sd_notify);
``loop`` the main loop (one thread decides, everything else only enqueues);
``sessions`` the session decisions and the tasks they start (archive,
prepare, acknowledge); ``model_check`` the ModelInvalid events for damaged
model zips; ``scheduler`` the APScheduler jobs; ``notify`` sd_notify and the
health file; ``status`` the ``status`` command's document; ``texts`` the
STATUS= and health texts. It may import everything of ``daemon``; nothing
imports it but the command line.
"""
