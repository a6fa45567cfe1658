"""The one error of the `zswap-rs` tools, and their exit codes.

Every expected failure of a command (bad usage or input, a source that cannot
be read, a run that cannot go on) is a `CommandError`: the command line prints
its message as one line, `zswap-rs: error: MESSAGE`, with no traceback, and
exits with its `code`. It lives here, below both the command line
(`zswap_rs.cli`) and the experiment it drives (`zswap_rs.simulate`), so that
both raise the same error and the experiment does not import the command
line. (The page sources, `_procmem` and `_workload`, also run on their own
as scripts and keep their own errors; `cli.sources` turns them into this.)
"""

from __future__ import annotations

__all__ = ["EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "CommandError"]

EXIT_OK = 0
#: An internal failure, above all a page that came back different from what
#: was stored.
EXIT_FAILURE = 1
#: Bad usage or input: argparse's own code for a bad option, and ours for a
#: missing PID or a page dump of a bad length.
EXIT_USAGE = 2
#: After Ctrl-C, as a shell reports a process ended by SIGINT.
EXIT_INTERRUPTED = 130


class CommandError(Exception):
    """An error reported as one line on stderr, with its exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code
