"""`zswap-rs versus`: the seed's experiment on real processes, against the kernel itself.

`zswap-rs simulate` replays the 2013 experiment as a model. This runs the
real thing on this machine: one NumPy job (fill an array, scan it twice,
read 50,000 random pages, write 50,000 random pages, each phase timed) on
real page contents, at rising pressure (the array 1x to 4x its memory
limit), three ways, each in a fresh process:

- **kernel swap**: the array in anonymous memory, in a memory cgroup of the
  limit, with the kernel's zswap off: every page reclaim takes goes to disk;
- **kernel zswap**: the same with `/sys/module/zswap` on, the same
  compressor as zswap-rs, the kernel's own pool limits, and its shrinker on
  (without it the kernel never writes its pool back under a cgroup limit,
  and a job past ~3x stalls: SPEC.md, `simulate`);
- **zswap-rs**: the array in a `zswap_rs.Region`, zswap off, in the same
  limit;
- **zswap-rs signal** (opt-in, `--sides ...,zswap-rs-signal`): the same
  region with `faults="signal"`, each fault served in the faulting thread's
  SIGBUS handler. It breaks syscalls on evicted pages (EFAULT); the job makes
  none on the array (the fill copies from a buffer of its own).

The same swap device for everyone: a swap file of the run's own (mkswap,
swapon at priority 32767) in the directory where the region's swap file
goes too, so both sides write to one filesystem on one disk.

**The limit and the zswap-rs budget.** Everything each side's process uses
is charged to its cgroup limit: on the kernel's sides the interpreter, NumPy
and the array's resident pages; on the zswap-rs side the interpreter, NumPy,
the compiled module, the region's resident pages, its pool and its metadata.
The kernel's zswap pool is charged to the limit by cgroup v2 but not by v1,
and nothing makes v1 hold it to one: lowering the limit by the pool as it
grows (tried here) only makes reclaim harder, since v1 gives the zswap
shrinker no per-group count to write back from (the pool stayed at 140 MiB
beside a limit lowered to 32 MiB). So on v1 the pool's peak on the kernel
zswap side is added to the region sides' limit at the same level (the
kernel's sides run first): every zswap side then has the same RAM in all,
which the notes give. A region needs its budget and its pool limit up front,
so the job measures what the interpreter holds just before it makes the
region (the cgroup's own charge, less the page cache no process maps: the
page file, which reclaim drops first), takes off 64 bytes per page of the
array for the cache's and the region's metadata and 4 MiB of headroom
(handler threads, buffers), and makes the rest the region's budget with its
pool counted in it (`pool_in_budget=True`), as a v2 limit counts the
kernel's: resident pages fill what the pool does not use, as the kernel's
reclaim leaves resident what it need not compress, and the pool may grow to
75% of the budget (`--pool-percent`) before it writes back to the region's
file, so that a quarter stays for read-ahead windows and the random phases'
hits. Pages the kernel swaps out of that process anyway (if the region's
page cache or the interpreter outgrow the headroom) are counted in its I/O.

**What is measured.** Swap I/O in pages: pswpin and pswpout from the
cgroup's own counters where memory.stat has them, else /proc/vmstat deltas
over the side's run (with other swap refused, only this run's file is
there; pages other programs swap to it would stay on it after the side, and
the report says so); for zswap-rs, its region's file I/O (`stats()`) plus
the kernel's. Seconds per phase (wall clock, in the job), CPU seconds of the
job's process (all its threads: the kernel's direct reclaim and the
region's fault handlers alike), peak RSS, and the cgroup's peak charge.
Faults per phase, beside its seconds: on the kernel's sides the job's major
faults (`ru_majflt`: a swap-in from zswap or from disk is one; pages swap
read-ahead brought in are minor faults, not counted); on a region's side the
region's `faults` and `wp_faults` plus the job's major faults (the kernel
swapping the job itself; a region's own faults are not major faults). The
cost per fault is the phase's seconds over them: the evictions a fault forces
are in it on every side. Each phase also keeps its region stats, /proc/vmstat
swap events, the cgroup's memory.stat, its CPU seconds and the machine's
stall times (/proc/pressure) (the JSON's `phase_counters`).
Every phase checks what it read (sums, words) and a side that returns wrong
bytes is a failure, never a timing.

**What it leaves behind: nothing.** zswap's parameters (and whether it was
on), the cgroups, the swap file and the run's directory are put back or
removed on a normal exit, an exception, Ctrl-C and SIGTERM (`_machine`).
It refuses to start without root (exit 2), with other swap active (unless
`--allow-other-swap`), or with a compressor one side lacks: the default,
lz4, becomes lzo (the seed's) on a kernel without lz4 in its crypto API, and
the report says so.
"""

from __future__ import annotations

from ._machine import MachineError, Terminated
from ._report import bars, format_report, plot, to_json
from ._run import (
    DEFAULT_LEVELS,
    SIDES,
    Config,
    SideResult,
    Versus,
    VersusError,
    default_limit_mb,
    run,
)

__all__ = [
    "DEFAULT_LEVELS",
    "SIDES",
    "Config",
    "MachineError",
    "SideResult",
    "Terminated",
    "Versus",
    "VersusError",
    "bars",
    "default_limit_mb",
    "format_report",
    "plot",
    "run",
    "to_json",
]
