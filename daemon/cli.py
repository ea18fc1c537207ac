"""``python -m daemon``: the service and the commands that inspect and manage archives.

Exit codes: 0 success; 1 the operation failed or found a problem; 2 bad usage
or bad input (nothing on disk is touched then). Results go to stdout (one JSON
document with ``--json``); recorded events are logged on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from daemon import commands
from daemon.errors import (
    ArchiveNotFoundError,
    ConfigError,
    DaemonError,
    UnsafeArchiveError,
    UsageError,
)
from daemon.protocol import LockFileError, LockHeldError
from daemon.protocol.sharing import access_problem, no_access_line, share_with_group

EPILOG = """\
exit codes: 0 success, 1 the operation failed or found a problem, 2 bad usage or input.
Every command reads WORKSPACE/config/config.json (archive_dir, keep_last, ...);
see README.md for all keys."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the problem."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m daemon",
        description="Keep training sessions from ever losing data: a watching, archiving "
        "service and the commands to inspect, verify, restore and rotate its archives.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    def command(name: str, help: str, *, json_flag: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help,
            description=help,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument(
            "--workspace",
            type=Path,
            default=Path("."),
            metavar="DIR",
            help="the training workspace (default: the current folder)",
        )
        p.add_argument(
            "--config",
            type=Path,
            default=None,
            metavar="FILE",
            help="config file (default: WORKSPACE/config/config.json)",
        )
        if json_flag:
            p.add_argument("--json", action="store_true", help="print JSON on stdout")
        return p

    command("run", "run the service in the foreground (as systemd does)", json_flag=False)
    command("status", "what the daemon and the event log know: daemon, session, archives")
    p = command("archive", "archive the workspace now (verified, then rotated)")
    p.add_argument(
        "--reason",
        default="manual",
        choices=commands.REASONS,
        help="recorded in the manifest (default: manual)",
    )
    p = command("list", "list the archives, oldest first")
    _remote_flag(p, "list this workspace's off-machine copies (the remote section)")
    p.add_argument(
        "--all-hosts",
        action="store_true",
        help="with --remote: every host's and workspace's copies under the prefix",
    )
    p = command("verify", "check every member's CRC and sha256; exit 1 on any mismatch")
    p.add_argument(
        "archives",
        nargs="*",
        metavar="ARCHIVE",
        help="archive file names or paths (default: every archive); with --remote, names "
        "or object keys",
    )
    _remote_flag(p, "read the off-machine copies back and check every byte's sha256")
    p = command("restore", "extract an archive into an empty or new folder", json_flag=False)
    p.add_argument("archive", metavar="ARCHIVE", help="an archive file name or path")
    p.add_argument(
        "--to",
        type=Path,
        required=True,
        metavar="DIR",
        help="target folder: must be empty or not exist",
    )
    p.add_argument(
        "--from-remote",
        action="store_true",
        help="download ARCHIVE (a name or object key, any host's) from the remote, sha256 "
        "checked before anything is written under DIR",
    )
    p = command("prune", "apply retention now (keep_last, keep_daily, ...)")
    p.add_argument("--dry-run", action="store_true", help="show what would go; delete nothing")
    _remote_flag(p, "apply the remote section's retention to this workspace's copies only")
    p = command("events", "print the event log")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    p.add_argument(
        "--type",
        action="append",
        metavar="T",
        dest="types",
        help="only events of this type (repeatable)",
    )
    for name, verb in (("pin", "protect"), ("unpin", "stop protecting")):
        p = command(name, f"{verb} an archive from rotation", json_flag=False)
        p.add_argument("archive", metavar="ARCHIVE", help="an archive file name or path")
    return parser


def _remote_flag(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--remote", action="store_true", help=help)


def workspace_needs(workspace: Path, config: Path | None) -> list[tuple[Path, int]]:
    """What every command needs of a (shared) workspace: read it, its config, and use
    ``.daemon/`` (SQLite in WAL mode writes its ``-shm`` even to read)."""
    rx, rwx = os.R_OK | os.X_OK, os.R_OK | os.W_OK | os.X_OK
    daemon_dir = workspace / ".daemon"
    return [
        (workspace, rx),
        (workspace / "config", rx),
        (config or workspace / "config" / "config.json", os.R_OK),
        (daemon_dir, rwx),
        (daemon_dir / "events.sqlite3", os.R_OK | os.W_OK),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    share_with_group()  # what this process creates stays usable by the workspace's group
    args = build_parser().parse_args(argv)
    prog = f"daemon {args.command}"
    try:
        problem = access_problem(workspace_needs(args.workspace, args.config))
        if problem is not None:
            raise UsageError(problem)
        if not args.workspace.is_dir():
            raise UsageError(f"workspace {args.workspace} is not a folder")
        if args.config is not None and not args.config.is_file():
            raise UsageError(f"config file {args.config} does not exist")
        return commands.dispatch(args)
    except PermissionError as e:
        where = Path(e.filename) if e.filename else args.workspace
        print(f"{prog}: error: {no_access_line(where)}", file=sys.stderr)
        return 2
    except (ConfigError, UsageError, ArchiveNotFoundError, LockFileError, LockHeldError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except UnsafeArchiveError as e:
        print(f"{prog}: refused: {e}", file=sys.stderr)
        return 1
    except DaemonError as e:
        print(f"{prog}: failed: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as e:  # read-only, vanished, full: the operation failed
        print(f"{prog}: failed: {_os_error(e)}", file=sys.stderr)
        return 1


def _os_error(e: OSError) -> str:
    """One line: what the OS said and about which file."""
    where = f": {e.filename}" if e.filename else ""
    return f"{e.strerror or e}{where}"
