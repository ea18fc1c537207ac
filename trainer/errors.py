"""The trainer's named exceptions.

Input errors (:class:`ConfigError`, :class:`DataError`, :class:`UsageError`) carry one
line naming the file and the field, row or option at fault; the command line prints
that line and exits 2 without a traceback, before anything is written on disk.
"""

from __future__ import annotations


class TrainerError(Exception):
    """Base class of the trainer's own errors."""


class InputError(TrainerError):
    """Bad input from the user: exit code 2, one line, nothing touched on disk."""


class ConfigError(InputError):
    """A config file is unreadable, not JSON, or holds a wrong key or value."""


class DataError(InputError):
    """A price CSV is unreadable or holds a bad row or column."""


class UsageError(InputError):
    """A command-line option is invalid (for example ``--device cuda`` without CUDA)."""
