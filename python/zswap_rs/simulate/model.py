"""The build and its trace: a make -jN-like workload, as a pure function of its settings.

Nothing here touches a `Zswap` or a file: `plan_build` plans the build once
from the seed, and `Build.trace(N)` yields every touch and free of it at
parallelism N, identical for the base and the zswap run (the RAM budget that
replays it is `machine`, the runs around it `experiment`).

Why it resembles make -jN
-------------------------

- **The build** is a fixed list of `files` compilation units, the same for
  every N (as the kernel tree is the same at -j8 and -j24); each is planned
  from the seed alone. Only how many of them run at once changes with N, so
  the work done is identical across rows and any difference in swap I/O or
  runtime is the memory pressure's.
- **A job** (one compiler process) grows to `pages` pages, RAM/24 to RAM/8
  of them (21 to 64 MB of the seed's 512 MB: a cc1 process at -O2 is tens
  of MB). Its pages hold real memory contents: a run of consecutive pages of
  the source (a real process's heap, as `profile` reads it, or a page dump),
  so that compression sees what a heap holds. A page is new anonymous memory
  when first touched: it is filled then, at no I/O cost. A job's life, as a
  compiler's:
  - its tables (symbols, types: `TABLES_PERCENT` of its pages) are written
    all along;
  - it parses: the declarations (`DECLS_PERCENT` of its pages) are written
    in order, then only looked up now and then (a random one after a
    quarter of the runs below): most of a compiler's memory is of this kind,
    cold soon after it is made, and it is what swap takes first;
  - it compiles `FUNCTIONS` functions one after the other, each in its own
    share of the rest of its pages: the IR is written as it is built, then
    walked `REUSE` more times (the passes) in short sequential runs from
    random points (locality), `WRITE_PERCENT` of the touches writes that
    change a few bytes (an object field updated); then it stays cold;
  - it exits: its pages are freed, resident or swapped (their swap slots
    too, as the kernel frees a process's swap entries at exit), and the next
    file starts in its place, as make starts the next job when one ends.
- **The shared set** (RAM/8 pages), read by every job between its runs,
  stands for what all jobs of a build read: headers and the compiler itself.
  Its hot part is hit far more often than the rest (the index is skewed by a
  cube). In a real build these are page cache pages, not anonymous ones; here
  they go through swap like the rest, which keeps every page on one path.
- **The scheduler** runs N jobs round-robin, `QUANTUM` touches each, in one
  thread: a CPU time-slicing N processes. When fewer files are left than N,
  fewer jobs run, as at the end of a real build. So the memory in use at
  once grows with N: the shared set plus N jobs' pages. With the defaults
  the pages live at once reach the budget at about N = 12 and 1.7 times it
  at N = 24, so that, as in the seed's table, N = 8 and 12 hardly swap and
  the swap I/O then climbs steeply with N.
- **The trace** is a pure function of (seed, budget, files, N, source size).
"""

from __future__ import annotations

import heapq
import math
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import islice

from .._command_error import CommandError

__all__ = [
    "OP_FREE",
    "OP_READ",
    "OP_WRITE",
    "Build",
    "Config",
    "Event",
    "FilePlan",
    "mutate",
    "plan_build",
    "trace",
]

#: The shared set is RAM/8 pages: with the seed's 512 MB, 64 MB of headers
#: and compiler that every job reads.
SHARED_DIVISOR = 8
#: A job grows to RAM/24 .. RAM/8 pages (21 to 64 MB of the seed's 512 MB).
#: Its mean, RAM/12, times N = 12 fills the budget, and a job is at its full
#: size only near its end, so N = 12 hardly swaps, as in the seed's table.
JOB_MIN_DIVISOR = 24
JOB_MAX_DIVISOR = 8
#: A job's pages, in percent: its own tables (symbols, types), hot for all
#: its life, and the declarations it parses from the headers, written once
#: and then looked up now and then; the rest is the functions' IR.
TABLES_PERCENT = 5
DECLS_PERCENT = 50
#: Functions a job compiles one after the other, each in its own share of the
#: IR pages: written as it is built, then walked REUSE more times (the passes),
#: then cold until the job exits.
FUNCTIONS = 8
REUSE = 4
#: Longest sequential run of pages touched from one random point.
RUN_MAX = 16
#: Share of the passes' IR touches that write the page (a few bytes of it).
WRITE_PERCENT = 20
#: After each run: one touch of the job's tables, one of the shared set, and
#: with this chance (percent) one lookup of a random declaration page.
DECL_LOOKUP_PERCENT = 25
#: Touches a job makes before the scheduler moves to the next one.
QUANTUM = 32
#: Smallest RAM budget, in pages: the pool takes up to 90% of it and at least
#: one page must stay resident for a job to touch; below this the model's
#: RAM/24 jobs would be a page or two.
MIN_BUDGET_PAGES = 64

#: Trace operations: touch a page to read it, touch it to write it, free it.
OP_READ = 0
OP_WRITE = 1
OP_FREE = 2

#: One step of the trace: (op, offset, source page index, mutation). The
#: source page index says which real page a page is made of when it is first
#: touched; the mutation (32 random bits) says which bytes a write changes.
Event = tuple[int, int, int, int]


@dataclass(frozen=True)
class Config:
    """What one `simulate` command runs; `check()` says what is wrong with it."""

    #: The parallelism levels, one row each (make -jN).
    jobs: tuple[int, ...] = (8, 12, 16, 20, 24)
    #: The RAM budget, in MiB: the seed's 512 MB scaled down 16 times, so that
    #: the default run (five N, 58 MB/s) takes under a minute.
    ram_mb: int = 32
    #: Compilation units in the build, the same at every N: at N = 24, more
    #: than two rounds of jobs, so that most of the run is at full pressure.
    files: int = 64
    compressor: str = "lz4"
    #: The pool's limit, in percent of the budget (the kernel's default: 20).
    max_pool_percent: int = 20
    #: The swap file's speed, in MB/s (10**6 bytes); 0: unpaced.
    disk_mbps: float = 58.0
    seed: int = 0
    page_size: int = 4096
    #: Where the swap files go (a fresh file per run); None: a temporary
    #: directory under `experiment.default_swap_parent()`, removed at the end.
    swap_dir: str | None = None
    #: A load from the pool drops the pool's copy (Linux 6.5 and later); if
    #: False the pool keeps it while the page is clean, as the 2013 kernel did.
    exclusive_loads: bool = True

    @property
    def budget_pages(self) -> int:
        return (self.ram_mb << 20) // self.page_size

    @property
    def budget_bytes(self) -> int:
        return self.budget_pages * self.page_size

    @property
    def max_pool_bytes(self) -> int:
        return self.budget_bytes * self.max_pool_percent // 100

    @property
    def shared_pages(self) -> int:
        return max(1, self.budget_pages // SHARED_DIVISOR)

    @property
    def job_pages(self) -> tuple[int, int]:
        """The smallest and the largest job, in pages."""
        lo = max(1, self.budget_pages // JOB_MIN_DIVISOR)
        return lo, max(lo, self.budget_pages // JOB_MAX_DIVISOR)

    def check(self) -> None:
        """Raise CommandError (exit 2) naming the first bad setting."""
        if not self.jobs:
            raise CommandError("--jobs: give at least one job count")
        if any(n < 1 for n in self.jobs):
            raise CommandError(f"--jobs: job counts must be at least 1: {list(self.jobs)}")
        if self.files < 1:
            raise CommandError(f"--files must be at least 1: {self.files}")
        if self.ram_mb < 1 or self.budget_pages < MIN_BUDGET_PAGES:
            raise CommandError(
                f"--ram-mb {self.ram_mb} is too small: the budget must hold at least "
                f"{MIN_BUDGET_PAGES} pages of {self.page_size} bytes"
            )
        if not 1 <= self.max_pool_percent <= 90:
            raise CommandError(
                f"--max-pool-percent must be 1 to 90 (some of the budget must stay for "
                f"resident pages): {self.max_pool_percent}"
            )
        if not (self.disk_mbps >= 0 and math.isfinite(self.disk_mbps)):
            raise CommandError(f"--disk-mbps must be 0 (unpaced) or more: {self.disk_mbps}")
        if self.swap_dir is not None and not os.path.isdir(self.swap_dir):
            raise CommandError(f"--swap-dir {self.swap_dir}: no such directory")


@dataclass(frozen=True)
class FilePlan:
    """One compilation unit: a job of `pages` pages made of source pages from `source_start`."""

    index: int
    pages: int
    source_start: int


@dataclass(frozen=True)
class Build:
    """The build, planned once: its files and where its pages come from.

    Every run of an experiment replays this one plan, at each N, with and
    without zswap; `trace(jobs)` is a pure function of it.
    """

    config: Config
    #: Pages in the source that the jobs' pages are made of.
    source_pages: int
    plans: tuple[FilePlan, ...]
    #: The shared set's first source page.
    shared_start: int

    @cached_property
    def touches(self) -> int:
        """How many touches the build makes, at any N (the same files, in another order)."""
        shared, seed = self.config.shared_pages, self.config.seed
        return sum(sum(1 for _ in _file_touches(p, shared, seed)) for p in self.plans)

    @property
    def steps(self) -> int:
        """Events in a trace at any N: every touch, and every page freed at a job's end."""
        return self.touches + sum(p.pages for p in self.plans)

    def area_pages(self, jobs: int) -> int:
        """Swap slots enough for every page live at once: the shared set and the N largest jobs."""
        largest = sorted((p.pages for p in self.plans), reverse=True)[:jobs]
        return self.config.shared_pages + sum(largest)

    def trace(self, jobs: int) -> Iterator[Event]:
        """The build at parallelism `jobs`: every touch and free, in order.

        Offsets 0 .. shared-1 are the shared set; a job's pages get the lowest
        free offsets when it starts and give them back when it exits. A job
        that exits hands its place in the round to the next file, which gets
        its first turn in the next round.
        """
        offsets = _Offsets(self.config.shared_pages)
        queue = iter(self.plans)
        running = [_Job(self, plan, offsets) for plan in islice(queue, jobs)]
        slot = 0
        while running:
            job = running[slot]
            yield from job.quantum()
            if job.finished:
                yield from job.exit(offsets)
                plan = next(queue, None)
                if plan is None:
                    del running[slot]
                else:
                    running[slot] = _Job(self, plan, offsets)
                    slot += 1
            else:
                slot += 1
            if slot >= len(running):
                slot = 0


def plan_build(config: Config, source_pages: int) -> Build:
    """The build's files and the shared set's first source page, from the seed alone."""
    if source_pages < 1:
        raise CommandError("no pages to simulate with")
    rng = random.Random(f"zswap-rs simulate build {config.seed}")
    lo, hi = config.job_pages
    shared_start = rng.randrange(source_pages)
    plans = tuple(
        FilePlan(index=i, pages=rng.randint(lo, hi), source_start=rng.randrange(source_pages))
        for i in range(config.files)
    )
    return Build(config, source_pages, plans, shared_start)


def trace(config: Config, jobs: int, source_pages: int) -> Iterator[Event]:
    """The trace of a build planned for this call alone (an experiment plans once)."""
    return plan_build(config, source_pages).trace(jobs)


class _Offsets:
    """Swap offsets for the jobs' pages: the lowest free ones first, then fresh ones."""

    def __init__(self, first: int) -> None:
        self._free: list[int] = []
        self._next = first

    def take(self, n: int) -> list[int]:
        out = [heapq.heappop(self._free) for _ in range(min(n, len(self._free)))]
        fresh = n - len(out)
        out.extend(range(self._next, self._next + fresh))
        self._next += fresh
        return out

    def give_back(self, offsets: Sequence[int]) -> None:
        for offset in offsets:
            heapq.heappush(self._free, offset)


class _Job:
    """A running job: its touches, the offsets its pages got, its first source page."""

    def __init__(self, build: Build, plan: FilePlan, offsets: _Offsets) -> None:
        c = build.config
        self._touches = _file_touches(plan, c.shared_pages, c.seed)
        self._offsets = offsets.take(plan.pages)
        self._source_start = plan.source_start
        self._shared_start = build.shared_start
        self._source_pages = build.source_pages
        #: Has the job made its last touch?
        self.finished = False

    def quantum(self) -> Iterator[Event]:
        """Up to QUANTUM touches, as events on offsets and source pages."""
        made = 0
        n = self._source_pages
        for op, index, mutation in islice(self._touches, QUANTUM):
            made += 1
            if index < 0:
                s = -1 - index
                yield op, s, (self._shared_start + s) % n, mutation
            else:
                yield op, self._offsets[index], (self._source_start + index) % n, mutation
        self.finished = made < QUANTUM

    def exit(self, offsets: _Offsets) -> Iterator[Event]:
        """Free every page of the job and give its offsets back."""
        for offset in self._offsets:
            yield OP_FREE, offset, 0, 0
        offsets.give_back(self._offsets)


def _job_layout(k: int) -> tuple[int, int, list[tuple[int, int]]]:
    """A job's pages: (tables, decls, [(start, length) of each function's IR])."""
    tables = max(1, k * TABLES_PERCENT // 100)
    decls = min(k - tables, k * DECLS_PERCENT // 100)
    ir = k - tables - decls
    functions = []
    for f in range(FUNCTIONS):
        lo = tables + decls + ir * f // FUNCTIONS
        hi = tables + decls + ir * (f + 1) // FUNCTIONS
        if hi > lo:
            functions.append((lo, hi - lo))
    return tables, decls, functions


def _file_touches(plan: FilePlan, shared: int, seed: int) -> Iterator[tuple[int, int, int]]:
    """One job's touches, as (op, index, mutation); a negative index is shared page -1-index.

    Its own random stream, seeded by (seed, file): the same whatever N is.
    """
    rng = random.Random(f"zswap-rs simulate file {seed}:{plan.index}")
    rand = rng.random
    bits = rng.getrandbits
    tables, decls, functions = _job_layout(plan.pages)

    def between_runs() -> Iterator[tuple[int, int, int]]:
        yield OP_WRITE, rng.randrange(tables), bits(32)
        yield OP_READ, -1 - int(shared * rand() ** 3), 0
        if decls and rand() * 100 < DECL_LOOKUP_PERCENT:
            yield OP_READ, tables + rng.randrange(decls), 0

    # Parse: the declarations written in order, reading headers (the shared
    # set) and filling the tables as it goes.
    for j in range(tables, tables + decls):
        yield OP_WRITE, j, bits(32)
        if (j - tables) % RUN_MAX == RUN_MAX - 1:
            yield from between_runs()
    for lo, width in functions:
        # Build the function's IR, then run the passes over it.
        for j in range(lo, lo + width):
            yield OP_WRITE, j, bits(32)
        left = width * REUSE
        while left > 0:
            start = rng.randrange(width)
            length = min(left, rng.randint(1, RUN_MAX))
            left -= length
            for step in range(length):
                j = lo + (start + step) % width
                if rand() * 100 < WRITE_PERCENT:
                    yield OP_WRITE, j, bits(32)
                else:
                    yield OP_READ, j, 0
            yield from between_runs()


def mutate(page: bytearray, mutation: int, page_size: int) -> None:
    """Copy 8..64 bytes of the page over another place in it: a field updated."""
    words = page_size // 8
    dst = (mutation % words) * 8
    src = ((mutation >> 12) % words) * 8
    n = min(8 * (1 + (mutation >> 24) % 8), page_size - max(dst, src))
    page[dst : dst + n] = page[src : src + n]
