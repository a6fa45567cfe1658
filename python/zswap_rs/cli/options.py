"""What a command declares: its options, from the groups shared here, and its run function.

Each option that two commands take is declared once, in a group function
(`add_output`, `add_page_source`); a command's own options are declared in
its module. Arguments are checked by their types here, so that a bad value
is a usage error (exit 2) before any work starts.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "Command",
    "PageSource",
    "add_output",
    "add_page_source",
    "job_list",
    "megabytes_per_second",
    "percent",
    "positive_int",
]


@dataclass(frozen=True)
class Command:
    """One `zswap-rs` command: its name, its help, its options and what it does.

    `add_arguments(parser)` declares the options on the command's own
    subparser; `run(args)` does the work and returns the exit code (or raises
    `CommandError`). A command module defines one as `COMMAND`, and
    `app.COMMANDS` lists them.
    """

    name: str
    #: One line, for `zswap-rs --help`.
    help: str
    #: A paragraph, for `zswap-rs NAME --help`.
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# --------------------------------------------------------------------------
# Argument types


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return value


def job_list(text: str) -> tuple[int, ...]:
    """ "8,12,16" -> (8, 12, 16): job counts, sorted, each once."""
    jobs = set()
    for item in text.split(","):
        if not item.strip():
            raise argparse.ArgumentTypeError(f"expected job counts such as 2,4,8: {text!r}")
        jobs.add(positive_int(item.strip()))
    return tuple(sorted(jobs))


def megabytes_per_second(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value >= 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be 0 (unpaced) or more: {text}")
    return value


def percent(text: str) -> int:
    value = positive_int(text)
    if value > 90:
        raise argparse.ArgumentTypeError(
            f"must be 1 to 90 (some of the budget must stay for resident pages): {text}"
        )
    return value


# --------------------------------------------------------------------------
# Shared groups


def add_output(parser: argparse.ArgumentParser, *, json_help: str, plot_help: str | None) -> None:
    """--json (a document for machines instead of text) and, with `plot_help`, --plot FILE.png."""
    parser.add_argument("--json", action="store_true", help=json_help)
    if plot_help is not None:
        parser.add_argument("--plot", metavar="FILE.png", help=plot_help + " (matplotlib)")


@dataclass(frozen=True)
class PageSource:
    """Where a command's pages come from: a dump, a live process, or the built-in workload."""

    #: A raw page dump to read; else `pid`; else the built-in workload.
    dump: str | None = None
    pid: int | None = None
    #: Read at most this many pages (None: all).
    max_pages: int | None = None
    #: The built-in workload's heap size and seed.
    workload_mb: int = 150
    seed: int = 0


def add_page_source(
    parser: argparse.ArgumentParser, *, live: bool, pages_help: str, seed_help: str
) -> None:
    """The options that say where the pages come from, read back into a `PageSource`.

    --pages FILE and the built-in workload's --workload-mb and --seed; with
    `live`, also --pid PID (instead of --pages) and --max-pages N. A command
    reads back only the options it declared.
    """
    source = parser.add_mutually_exclusive_group()
    if live:
        source.add_argument(
            "--pid", type=positive_int, help="read this live process's private anonymous memory"
        )
    source.add_argument("--pages", metavar="FILE", help=pages_help)
    if live:
        parser.add_argument(
            "--max-pages", type=positive_int, metavar="N", help="read at most N pages"
        )
    parser.add_argument(
        "--workload-mb",
        type=positive_int,
        default=PageSource.workload_mb,
        metavar="MB",
        help=f"size of the built-in workload's heap (default {PageSource.workload_mb})",
    )
    parser.add_argument("--seed", type=int, default=PageSource.seed, help=seed_help)
