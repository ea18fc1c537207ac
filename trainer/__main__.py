"""``python -m trainer``."""

from __future__ import annotations

from trainer.cli import main

raise SystemExit(main())
