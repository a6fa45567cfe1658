"""`zswap-rs simulate`: the 2013 kernel-build experiment, in user space.

The zswap patch set (Seth Jennings, 2013) was measured with a kernel build,
`make -jN` for N = 8..24, on a machine booted with 512 MB of RAM and swap on
a hard disk: at N = 24 zswap cut swap I/O by 76% and the build's runtime by
53%. This package replays the shape of that experiment: the same build, run
at rising parallelism through a fixed RAM budget, once with every swap-out
going straight to a real swap file ("base") and once with zswap in front of
it. It is layered as the experiment is:

- `model`: the build and its trace, a pure function of the settings
  (`Config`, `plan_build`, `Build.trace`), and why it resembles make -jN;
- `machine`: the RAM budget that replays a trace in front of a `Zswap`,
  the pool's memory counted against it, and swap-in as Linux does it;
- `experiment`: the runs (a fresh `Zswap` and swap file each, timed), the
  swap directory, and the results (`Simulation`, `Row`, `RunResult`).

The tables and the plot are the command line's (`zswap_rs.cli.report`).
Errors are `zswap_rs._command_error.CommandError`, with their exit code.
"""

from __future__ import annotations

from .experiment import Row, RunResult, Simulation, default_swap_parent, run, simulate
from .model import OP_FREE, Build, Config, plan_build, trace

# The rest (the other trace ops, FilePlan, Machine, ...) is in its module.
__all__ = [
    "Build",
    "Config",
    "OP_FREE",
    "Row",
    "RunResult",
    "Simulation",
    "default_swap_parent",
    "plan_build",
    "run",
    "simulate",
    "trace",
]
