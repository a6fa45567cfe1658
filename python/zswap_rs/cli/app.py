"""The `zswap-rs` parser, built from the commands' declarations, and `main`.

To add a command: write `cli/NAME.py` defining `COMMAND = Command(...)`
(see `options.Command`: a name, its help, `add_arguments(parser)` and
`run(args) -> exit code`), import it here and add it to `COMMANDS`.
Nothing else changes: the parser, the error handling and the exit codes are
the same for every command.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence

from .._command_error import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, CommandError
from . import info, mkswap, profile, report, simulate, versus
from .library import version
from .options import Command

__all__ = ["COMMANDS", "build_parser", "main"]

#: Every command, in the order `zswap-rs --help` lists them.
COMMANDS: tuple[Command, ...] = (
    profile.COMMAND,
    simulate.COMMAND,
    versus.COMMAND,
    mkswap.COMMAND,
    info.COMMAND,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zswap-rs",
        description="zswap in user space: profile what zswap would do with real memory, "
        "and simulate what it saves under memory pressure.",
    )
    parser.add_argument("--version", action="version", version=f"zswap-rs {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help, description=command.description)
        command.add_arguments(p)
        p.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (see `zswap_rs._command_error`)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error (already printed)
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    try:
        return int(args.run(args))
    except CommandError as e:
        report.error(str(e))
        return e.code
    except KeyboardInterrupt:
        print("zswap-rs: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of stdout went away (| head): not an error worth a
        # traceback. Point stdout at /dev/null so the exit flush is quiet.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILURE
