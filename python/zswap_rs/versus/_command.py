"""`zswap-rs versus`: its options, and the command that runs it and prints the report.

Exit codes: 0 every side that ran gave right bytes; 1 a side returned wrong
bytes or crashed, or the machine refused a change; 2 bad usage, not root,
other swap active, a compressor one side lacks; 130 Ctrl-C; 143 SIGTERM.
Whatever the code, the machine is as it was.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from typing import Any

from . import _report, _run
from ._machine import Terminated

__all__ = ["DESCRIPTION", "HELP", "NAME", "add_arguments", "main", "run"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
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


NAME = "versus"
HELP = "(root) the same job through the kernel's swap, the kernel's zswap and zswap-rs"
DESCRIPTION = (
    "Run one NumPy job (fill, scan twice, random reads, random writes) on real pages "
    "at rising pressure (array 1x..4x a cgroup memory limit) three ways, each in a "
    "fresh process: the kernel's swap (zswap off), the kernel's zswap (same "
    "compressor), and zswap-rs (the array in a Region). Prints swap I/O, time per "
    "phase, CPU and peak RSS per pressure and side. Needs root; restores every "
    "setting it changes, also on Ctrl-C and SIGTERM."
)


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
    v.add_argument("--pages", metavar="FILE", help="page contents from a raw page dump")
    v.add_argument(
        "--workload-mb",
        type=_int_at_least(1),
        default=d.workload_mb,
        metavar="MB",
        help=f"heap of the built-in workload the pages come from (default {d.workload_mb})",
    )
    v.add_argument("--seed", type=int, default=d.seed, help="workload and job seed (default 0)")
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
        type=_int_at_least(1),
        default=d.pool_percent,
        metavar="PCT",
        help=f"zswap-rs: pool share of the limit left after the interpreter (default "
        f"{d.pool_percent}; the rest is the region's resident budget)",
    )
    v.add_argument(
        "--kernel-shrinker",
        choices=("on", "off"),
        default="on" if d.kernel_shrinker else "off",
        help="the kernel zswap's shrinker on its side (default on)",
    )
    v.add_argument(
        "--sides",
        type=_sides,
        default=d.sides,
        metavar="S,S,...",
        help="which sides to run (default swap,zswap,zswap-rs)",
    )
    v.add_argument(
        "--timeout",
        type=_int_at_least(1),
        default=int(d.timeout),
        metavar="SECONDS",
        help=f"stop a side that takes longer and report it (default {int(d.timeout)})",
    )
    v.add_argument("--json", action="store_true", help="print a JSON document, not tables")
    v.add_argument(
        "--plot", metavar="FILE.png", help="draw I/O and runtime against pressure (matplotlib)"
    )


def _progress(text: str) -> None:
    if sys.stderr.isatty():
        sys.stderr.write(f"\r\033[Kzswap-rs versus: {text}")
        sys.stderr.flush()


def _clear_progress() -> None:
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    """Run `zswap-rs versus` with parsed arguments; return the exit code."""
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        print("zswap-rs: error: --plot needs matplotlib: pip install matplotlib", file=sys.stderr)
        return EXIT_USAGE
    import zswap_rs

    config = _run.Config(
        limit_mb=args.limit_mb or _run.default_limit_mb(),
        levels=args.levels,
        compressor=args.compressor,
        pages_file=args.pages,
        workload_mb=args.workload_mb,
        seed=args.seed,
        swap_dir=args.swap_dir,
        allow_other_swap=args.allow_other_swap,
        pool_percent=args.pool_percent,
        kernel_shrinker=args.kernel_shrinker == "on",
        timeout=float(args.timeout),
        sides=args.sides,
    )
    try:
        result = _run.run(config, zswap_rs, progress=_progress)
    except _run.VersusError as e:
        _clear_progress()
        print(f"zswap-rs: error: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        _clear_progress()
        print("zswap-rs: interrupted; every setting was restored", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        _clear_progress()
        print("zswap-rs: terminated; every setting was restored", file=sys.stderr)
        return EXIT_TERMINATED
    _clear_progress()
    version = getattr(zswap_rs, "__version__", "?")
    if args.json:
        print(json.dumps(_report.to_json(result, version), indent=2))
    else:
        print(_report.format_report(result))
    sys.stdout.flush()
    if args.plot:
        try:
            _report.plot(result, args.plot)
        except OSError as e:
            print(f"zswap-rs: error: cannot write {args.plot}: {e.strerror}", file=sys.stderr)
            return EXIT_FAILURE
        print(f"zswap-rs: wrote {args.plot}", file=sys.stderr)
    failed = [r for r in result.results if r.status == "failed"]
    for r in failed:
        print(
            f"zswap-rs: error: {r.side} at {r.level:g}x failed: {r.reason}",
            file=sys.stderr,
        )
    return EXIT_FAILURE if failed else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """`zswap-rs versus ARGS` on its own (until the command line registers it)."""
    parser = argparse.ArgumentParser(prog="zswap-rs versus", description=DESCRIPTION)
    add_arguments(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
