"""`zswap-rs simulate`: the 2013 kernel-build experiment, with and without zswap.

The options become a `zswap_rs.simulate.Config`; the pages come from the
built-in workload or a dump (as in `profile`); the experiment runs in
`zswap_rs.simulate`, and `report` prints its tables and plot.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable
from typing import Any, TextIO

from .. import simulate as sim_pkg
from .._command_error import EXIT_FAILURE, EXIT_OK, CommandError
from . import library, report
from .library import PAGE_SIZE
from .options import (
    Command,
    PageSource,
    add_output,
    add_page_source,
    job_list,
    megabytes_per_second,
    percent,
    positive_int,
)
from .sources import collect

__all__ = ["COMMAND"]

#: The options that set a `Config` field of the same name: (flag, type,
#: metavar, help). The default shown and used is the field's own.
_CONFIG_OPTIONS: tuple[tuple[str, Callable[[str], Any], str, str], ...] = (
    ("--jobs", job_list, "N,N,...", "parallelism levels, one row each"),
    ("--ram-mb", positive_int, "MB", "the RAM budget: resident pages plus the pool"),
    ("--compressor", str, "NAME", "zswap's compressor"),
    ("--max-pool-percent", percent, "PCT", "pool limit, in percent of the budget"),
    (
        "--disk-mbps",
        megabytes_per_second,
        "MBPS",
        "pace the swap file to this speed, MB/s (the seed's hard disk did 58); 0: unpaced",
    ),
    ("--files", positive_int, "N", "compilation units in the build, the same at every N"),
)


def _field(flag: str) -> str:
    return flag.removeprefix("--").replace("-", "_")


def _shown(value: object) -> str:
    """A default as the user would type it: 8,12,16 for jobs, 58 for 58.0."""
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def add_arguments(s: argparse.ArgumentParser) -> None:
    add_page_source(
        s,
        live=False,
        pages_help="take the pages from a raw page dump",
        seed_help="seed of the build and of the built-in workload (default 0)",
    )
    defaults = sim_pkg.Config()
    for flag, kind, metavar, text in _CONFIG_OPTIONS:
        default = getattr(defaults, _field(flag))
        s.add_argument(
            flag,
            type=kind,
            default=default,
            metavar=metavar,
            help=f"{text} (default {_shown(default)})",
        )
    s.add_argument(
        "--swap-dir",
        metavar="DIR",
        help="directory for the swap files (default: a temporary directory under /var/tmp; "
        "a tmpfs refuses O_DIRECT)",
    )
    add_output(
        s,
        json_help="print a JSON document, not tables",
        plot_help="draw swap I/O and runtime against N",
    )
    s.add_argument(
        "--budget-log",
        metavar="FILE",
        help="debug: write resident and pool pages after every fault to FILE (CSV)",
    )


def _config(args: argparse.Namespace, compressor: str) -> sim_pkg.Config:
    """The experiment the options ask for, with `compressor` checked to be available here."""
    fields = {_field(flag): getattr(args, _field(flag)) for flag, *_ in _CONFIG_OPTIONS}
    fields["compressor"] = compressor
    return sim_pkg.Config(**fields, seed=args.seed, page_size=PAGE_SIZE, swap_dir=args.swap_dir)


def _open_log(stack: contextlib.ExitStack, path: str | None) -> TextIO | None:
    if not path:
        return None
    try:
        return stack.enter_context(open(path, "w", encoding="utf-8"))
    except OSError as e:
        raise CommandError(f"cannot write {path}: {e.strerror}") from None


def _print(sim: sim_pkg.Simulation, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"zswap_rs_version": library.version(), **sim.to_json()}, indent=2))
    else:
        print(report.pages_line(sim.source, sim.source_pages))
        print(report.describe_simulation(sim))
        print()
        print("swap I/O (pages)")
        print(report.format_table(report.IO_COLUMNS, report.io_table(sim), left=0))
        print()
        print("time (seconds)")
        print(report.format_table(report.TIME_COLUMNS, report.time_table(sim), left=0))
    sys.stdout.flush()


def run(args: argparse.Namespace) -> int:
    report.check_plot(args.plot)
    zswap_rs = library.zswap()
    config = _config(args, library.check_compressors(zswap_rs, [args.compressor])[0])
    config.check()
    got = collect(PageSource(dump=args.pages, workload_mb=args.workload_mb, seed=args.seed))
    if not got.pages:
        raise CommandError(f"{report.describe_source(got.source)} holds no pages")
    report.note(f"read {len(got.pages)} pages ({report.human_bytes(len(got.pages) * PAGE_SIZE)})")
    try:
        with contextlib.ExitStack() as stack:
            sim = sim_pkg.simulate(
                zswap_rs,
                config,
                got.pages,
                got.source,
                progress=lambda label, total: report.Progress(label, total, unit="steps"),
                log=_open_log(stack, args.budget_log),
            )
    except (zswap_rs.ZswapError, ValueError, KeyError) as e:
        raise CommandError(f"BUG: simulate failed: {type(e).__name__}: {e}", EXIT_FAILURE) from e
    _print(sim, args.json)
    if args.plot:
        report.plot_simulation(sim, args.plot, report.simulation_title(sim.config))
    if sim.mismatched_pages:
        report.error(
            f"BUG: {sim.mismatched_pages} pages swapped in differ from what was swapped out "
            "(CRC32). This is a bug in zswap-rs: please report it."
        )
        return EXIT_FAILURE
    return EXIT_OK


COMMAND = Command(
    name="simulate",
    help="the 2013 kernel-build experiment: swap I/O and runtime with and without zswap",
    description=(
        "Run a make -jN-like workload on real pages through a RAM budget, for each N "
        "twice on a fresh swap file: once with every swap-out going to the file (base), "
        "once with zswap in front of it. The pool's memory counts against the budget. "
        "Prints pswpin, pswpout and their total, runtime and CPU per N. Pages come from "
        "the built-in workload (as in profile) or a page dump."
    ),
    add_arguments=add_arguments,
    run=run,
)
