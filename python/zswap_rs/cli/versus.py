"""`zswap-rs versus` (root): the same job through the kernel's swap, its zswap and zswap-rs.

The options become a `zswap_rs.versus.Config`; the run, and everything it
changes on the machine and puts back, is `zswap_rs.versus`; the report is
`zswap_rs.versus._report` (its tables are its own: two comparison columns
and sides that may not have run).

Exit codes: 0 every side that ran read back the right bytes; 1 a side
returned wrong bytes or crashed, or the machine refused a change; 2 bad
usage, not root, other swap active, a compressor one side lacks; 130
Ctrl-C; 143 SIGTERM. Whatever the code, the machine is as it was.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .._command_error import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK
from ..versus import Config, Terminated, _report, _run, default_limit_mb
from . import library, report
from .options import Command, add_output, add_page_source, positive_int

__all__ = ["COMMAND"]

#: After SIGTERM, as a shell reports a process ended by it.
EXIT_TERMINATED = 143


def _levels(text: str) -> tuple[float, ...]:
    try:
        levels = tuple(float(x.rstrip("x")) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text}") from None
    if not levels or any(not 0 < lv <= 64 for lv in levels):
        raise argparse.ArgumentTypeError(f"levels must be in (0, 64]: {text}")
    return tuple(dict.fromkeys(levels))


def _sides(text: str) -> tuple[str, ...]:
    sides = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [s for s in sides if s not in _run.SIDES]
    if bad or not sides:
        raise argparse.ArgumentTypeError(f"sides are {','.join(_run.SIDES)}: {text}")
    return sides


def _int_at_least(low: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be {low} or more: {text}")
        return value

    return parse


def add_arguments(v: argparse.ArgumentParser) -> None:
    """Declare the options of `zswap-rs versus` on its subparser."""
    d = _run.Config(limit_mb=0)
    v.add_argument(
        "--limit-mb",
        type=_int_at_least(_run.MIN_LIMIT_MB),
        metavar="MB",
        help="the memory limit of every side (default: MemAvailable/64, 32 to 128)",
    )
    v.add_argument(
        "--levels",
        type=_levels,
        default=d.levels,
        metavar="X,X,...",
        help="array sizes in multiples of the limit (default 1,1.5,2,3,4)",
    )
    v.add_argument(
        "--compressor",
        metavar="NAME",
        help="both sides' compressor (default lz4, or lzo where the kernel has no lz4)",
    )
    add_page_source(
        v,
        live=False,
        pages_help="page contents from a raw page dump (default: the built-in workload's)",
        seed_help="seed of the built-in workload and of the job's random pages (default 0)",
    )
    v.add_argument(
        "--swap-dir",
        metavar="DIR",
        help="directory of both swap files, on a disk filesystem (default: the temp directory)",
    )
    v.add_argument(
        "--allow-other-swap",
        action="store_true",
        help="run although other swap is active (its I/O then mixes into the counters)",
    )
    v.add_argument(
        "--pool-percent",
        type=positive_int,
        default=d.pool_percent,
        metavar="PCT",
        help=f"zswap-rs: the most of the region's budget (the limit left after the "
        f"interpreter, pool included) its pool may take before it writes back (default "
        f"{d.pool_percent}; resident pages keep the rest)",
    )
    v.add_argument(
        "--kernel-shrinker",
        choices=("on", "off"),
        default="on" if d.kernel_shrinker else "off",
        help="the kernel zswap's shrinker on its side (default on)",
    )
    v.add_argument(
        "--region-direct-io",
        action="store_true",
        help="zswap-rs: the region's swap file O_DIRECT (default: buffered, through the page "
        "cache, which the side's cgroup is charged for)",
    )
    for name, default in (("--reads", d.reads), ("--writes", d.writes)):
        v.add_argument(
            name,
            type=positive_int,
            default=default,
            metavar="N",
            help=f"random pages the job {name[2:-1]}s one word of (default {default})",
        )
    v.add_argument(
        "--sides",
        type=_sides,
        default=d.sides,
        metavar="S,S,...",
        help="which sides to run, of "
        + ",".join(_run.SIDES)
        + " (default "
        + ",".join(_run.DEFAULT_SIDES)
        + "; zswap-rs-signal: the region with faults='signal', "
        "served in the faulting thread)",
    )
    v.add_argument(
        "--timeout",
        type=positive_int,
        default=int(d.timeout),
        metavar="SECONDS",
        help=f"stop a side that takes longer and report it (default {int(d.timeout)})",
    )
    add_output(
        v,
        json_help="print a JSON document, not tables",
        plot_help="draw swap I/O and runtime against pressure, one line per side",
    )


def _status(text: str) -> None:
    """What the run is doing now, on one line of a terminal's stderr (nothing on a pipe)."""
    if sys.stderr.isatty():
        sys.stderr.write(f"\r\033[Kzswap-rs versus: {text}")
        sys.stderr.flush()


def _clear_status() -> None:
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()


def _config(args: argparse.Namespace) -> Config:
    return Config(
        limit_mb=args.limit_mb or default_limit_mb(),
        levels=args.levels,
        compressor=args.compressor,
        pages_file=args.pages,
        workload_mb=args.workload_mb,
        seed=args.seed,
        swap_dir=args.swap_dir,
        allow_other_swap=args.allow_other_swap,
        pool_percent=args.pool_percent,
        kernel_shrinker=args.kernel_shrinker == "on",
        region_direct_io=args.region_direct_io,
        reads=args.reads,
        writes=args.writes,
        timeout=float(args.timeout),
        sides=args.sides,
    )


def run(args: argparse.Namespace) -> int:
    """Run `zswap-rs versus`; VersusError (a CommandError) for what stops it."""
    report.check_plot(args.plot)
    zswap_rs = library.zswap()
    try:
        result = _run.run(_config(args), zswap_rs, progress=_status)
    except KeyboardInterrupt:
        _clear_status()
        print("zswap-rs: interrupted; every setting was restored", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        _clear_status()
        print("zswap-rs: terminated; every setting was restored", file=sys.stderr)
        return EXIT_TERMINATED
    finally:
        _clear_status()
    if args.json:
        print(json.dumps(_report.to_json(result, library.version()), indent=2))
    else:
        print(_report.format_report(result))
    sys.stdout.flush()
    if args.plot:
        try:
            _report.plot(result, args.plot)
        except OSError as e:
            report.error(f"cannot write {args.plot}: {e.strerror}")
            return EXIT_FAILURE
        report.note(f"wrote {args.plot}")
    failed = [r for r in result.results if r.status == "failed"]
    for r in failed:
        report.error(f"{r.side} at {r.level:g}x failed: {r.reason}")
    return EXIT_FAILURE if failed else EXIT_OK


COMMAND = Command(
    name="versus",
    help="(root) the same job through the kernel's swap, the kernel's zswap and zswap-rs",
    description=(
        "Run one NumPy job (fill, scan twice, random reads, random writes) on real pages "
        "at rising pressure (array 1x..4x a cgroup memory limit) three ways, each in a "
        "fresh process: the kernel's swap (zswap off), the kernel's zswap (same "
        "compressor), and zswap-rs (the array in a Region). Prints swap I/O, time per "
        "phase, CPU and peak RSS per pressure and side, and faults per phase with their "
        "cost per fault. Needs root; restores every "
        "setting it changes, also on Ctrl-C and SIGTERM, and puts back what a run "
        "killed by SIGKILL left."
    ),
    add_arguments=add_arguments,
    run=run,
)
