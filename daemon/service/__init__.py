"""The long-running service (``python -m daemon run``).

``run`` is the entry point (config, the daemon lock, logging, sd_notify);
``loop`` the main loop (one thread decides, everything else only enqueues);
``sessions`` the session decisions and the tasks they start (archive,
prepare, acknowledge); ``adoption`` the archives a crash left unrecorded;
``worker`` the archiving task's thread-side wrapper; ``holding`` the
workspace that holds events in memory while the log's disk is full;
``reload`` SIGHUP; ``model_check`` the ModelInvalid events for damaged model
zips; ``metrics_file`` the Prometheus textfile; ``scheduler`` the APScheduler
jobs; ``notify`` sd_notify and the health file; ``status`` the ``status``
command's document; ``texts`` the STATUS= and health texts. It may import
everything of ``daemon``; nothing imports it but the command line.
"""
