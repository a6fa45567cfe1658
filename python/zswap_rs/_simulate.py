"""`zswap-rs simulate`: the 2013 kernel-build experiment, in user space.

The zswap patch set (Seth Jennings, 2013) was measured with a kernel build,
`make -jN` for N = 8..24, on a machine booted with 512 MB of RAM and swap on
a hard disk: at N = 24 zswap cut swap I/O by 76% and the build's runtime by
53%. This module replays the shape of that experiment: the same build, run at
rising parallelism through a fixed RAM budget, once with every swap-out going
straight to a real swap file ("base") and once with zswap in front of it.

The model, and why it resembles make -jN
----------------------------------------

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
- **The trace** is a pure function of (seed, budget, files, N, source size):
  `trace()` yields it, identical for the base and the zswap run.

The RAM budget
--------------

`budget` pages of RAM hold the resident pages, in an LRU. Touching a page
that is not resident faults it in (a new page costs nothing; a swapped page
is loaded, and its CRC32, taken when it went out, is checked). Before a page
comes in, the least recently used resident pages are swapped out (`store` at
their own offset: slot = offset) until it fits. **The pool's own memory
counts against the budget**: resident pages + ceil(pool_total_size /
page_size) <= budget at every step, and the pool's limit is
`max_pool_percent` of the budget, not of the machine's RAM: in the seed the
pool's pages came out of the same 512 MB, and under a cgroup limit today
they come out of the cgroup's. Measured otherwise, zswap would be given free
memory it never has. (`pool_total_size` is the pool's pages, as the kernel's
debugfs figure is; the index and LRU, 32 bytes an entry, are left out as the
kernel leaves out its entry slab.) In the base run zswap is disabled (`enabled = False`):
every store goes straight to the swap file through the same code path.

Swap-in works as in Linux 6.5 and later. A page read from the swap file
keeps its slot while it is clean (the swap cache), so that evicting it again
unchanged costs no I/O; its first write frees the slot (`invalidate`), as
the kernel's write fault does, and the next eviction stores it anew. A page
loaded from the pool leaves it (`exclusive_loads`, zswap's behaviour since
6.5): a copy kept there would take pool memory, out of the same budget, for
a page that is in RAM anyway; the page counts as written, and its next
eviction compresses it again, at no I/O cost. (The kernel also frees a file
slot at swap-in when swap is more than half full, `vm_swap_full()`; the
model leaves that out.) `Config.exclusive_loads = False` gives the 2013
kernel's behaviour instead, where the pool kept its copy like the file.

Runtime, CPU and the disk
-------------------------

Each run gets a fresh swap file in the swap directory, opened with O_DIRECT
so that the page cache serves no read and absorbs no write (the report says
when the filesystem refused O_DIRECT and buffered I/O was used instead; tmpfs
does) and paced to `disk_mbps` (the seed's hard disk did about 58 MB/s),
which makes the runtime column readable against the seed's. Runtime is wall
time over the whole trace; CPU is this process's CPU time over it (every
thread: compression and file I/O run in the Rust core). A touch does no work
of its own beyond the simulation's bookkeeping, so the runtime measured is
that of the memory system: a CPU-bound compiler would dilute the change.
"""

from __future__ import annotations

import contextlib
import heapq
import math
import os
import random
import shutil
import tempfile
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from types import ModuleType
from typing import Any, Protocol, TextIO

__all__ = [
    "Config",
    "FilePlan",
    "IO_COLUMNS",
    "Row",
    "RunResult",
    "SimulateError",
    "Simulation",
    "TIME_COLUMNS",
    "area_pages",
    "count_touches",
    "default_swap_parent",
    "describe",
    "io_table",
    "plan_build",
    "plot",
    "run",
    "simulate",
    "time_table",
    "trace",
]

EXIT_FAILURE = 1
EXIT_USAGE = 2

# --------------------------------------------------------------------------
# The model's constants (see the module docstring for the reasoning)

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


class SimulateError(Exception):
    """An error reported as one line on stderr, with its exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------
# Configuration


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
    #: directory under `default_swap_parent()`, removed at the end.
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

    def check(self) -> None:
        """Raise SimulateError (exit 2) naming the first bad setting."""
        if not self.jobs:
            raise SimulateError("--jobs: give at least one job count")
        if any(n < 1 for n in self.jobs):
            raise SimulateError(f"--jobs: job counts must be at least 1: {list(self.jobs)}")
        if self.files < 1:
            raise SimulateError(f"--files must be at least 1: {self.files}")
        if self.ram_mb < 1 or self.budget_pages < MIN_BUDGET_PAGES:
            raise SimulateError(
                f"--ram-mb {self.ram_mb} is too small: the budget must hold at least "
                f"{MIN_BUDGET_PAGES} pages of {self.page_size} bytes"
            )
        if not 1 <= self.max_pool_percent <= 90:
            raise SimulateError(
                f"--max-pool-percent must be 1 to 90 (some of the budget must stay for "
                f"resident pages): {self.max_pool_percent}"
            )
        if not (self.disk_mbps >= 0 and math.isfinite(self.disk_mbps)):
            raise SimulateError(f"--disk-mbps must be 0 (unpaced) or more: {self.disk_mbps}")
        if self.swap_dir is not None and not os.path.isdir(self.swap_dir):
            raise SimulateError(f"--swap-dir {self.swap_dir}: no such directory")


def default_swap_parent() -> str | None:
    """Where the default swap directory goes: /var/tmp, where it can be.

    /tmp is often a tmpfs, which refuses O_DIRECT and keeps the "disk" in RAM;
    /var/tmp is on a real filesystem on most systems.
    """
    return "/var/tmp" if os.path.isdir("/var/tmp") and os.access("/var/tmp", os.W_OK) else None


# --------------------------------------------------------------------------
# The build and its trace


@dataclass(frozen=True)
class FilePlan:
    """One compilation unit: a job of `pages` pages made of source pages from `source_start`."""

    index: int
    pages: int
    source_start: int


def plan_build(config: Config, source_pages: int) -> tuple[list[FilePlan], int]:
    """The build's files and the shared set's first source page, from the seed alone."""
    if source_pages < 1:
        raise SimulateError("no pages to simulate with")
    rng = random.Random(f"zswap-rs simulate build {config.seed}")
    budget = config.budget_pages
    lo = max(1, budget // JOB_MIN_DIVISOR)
    hi = max(lo, budget // JOB_MAX_DIVISOR)
    shared_start = rng.randrange(source_pages)
    plans = [
        FilePlan(index=i, pages=rng.randint(lo, hi), source_start=rng.randrange(source_pages))
        for i in range(config.files)
    ]
    return plans, shared_start


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


def count_touches(config: Config, plans: Sequence[FilePlan]) -> int:
    """How many touches the build makes, at any N (the same files, in another order)."""
    shared = config.shared_pages
    return sum(sum(1 for _ in _file_touches(p, shared, config.seed)) for p in plans)


def area_pages(config: Config, plans: Sequence[FilePlan], jobs: int) -> int:
    """Swap slots enough for every page live at once: the shared set and the N largest jobs."""
    largest = sorted((p.pages for p in plans), reverse=True)[:jobs]
    return config.shared_pages + sum(largest)


def trace(config: Config, jobs: int, source_pages: int) -> Iterator[Event]:
    """The build at parallelism `jobs`: every touch and free, in order.

    Offsets 0 .. shared-1 are the shared set; a job's pages get the lowest
    free offsets when it starts and give them back when it exits.
    """
    plans, shared_start = plan_build(config, source_pages)
    shared = config.shared_pages
    free: list[int] = []
    next_offset = shared
    queue = iter(plans)
    # A running job: its touches, its offsets, its first source page.
    running: list[tuple[Iterator[tuple[int, int, int]], list[int], int]] = []

    def start_next() -> bool:
        nonlocal next_offset
        plan = next(queue, None)
        if plan is None:
            return False
        offsets = []
        for _ in range(plan.pages):
            if free:
                offsets.append(heapq.heappop(free))
            else:
                offsets.append(next_offset)
                next_offset += 1
        running.append((_file_touches(plan, shared, config.seed), offsets, plan.source_start))
        return True

    while len(running) < jobs and start_next():
        pass
    slot = 0
    while running:
        touches, offsets, source_start = running[slot]
        finished = False
        for _ in range(QUANTUM):
            touch = next(touches, None)
            if touch is None:
                finished = True
                break
            op, index, mutation = touch
            if index < 0:
                s = -1 - index
                yield op, s, (shared_start + s) % source_pages, mutation
            else:
                yield op, offsets[index], (source_start + index) % source_pages, mutation
        if finished:
            for offset in offsets:
                yield OP_FREE, offset, 0, 0
                heapq.heappush(free, offset)
            del running[slot]
            if start_next():
                # The new job takes the last place in the round.
                running.insert(slot, running.pop())
                slot += 1
        else:
            slot += 1
        if slot >= len(running):
            slot = 0


def _mutate(page: bytearray, mutation: int, page_size: int) -> None:
    """Copy 8..64 bytes of the page over another place in it: a field updated."""
    words = page_size // 8
    dst = (mutation % words) * 8
    src = ((mutation >> 12) % words) * 8
    n = min(8 * (1 + (mutation >> 24) % 8), page_size - max(dst, src))
    page[dst : dst + n] = page[src : src + n]


# --------------------------------------------------------------------------
# One run: the trace through a RAM budget, with or without zswap


class ProgressBar(Protocol):
    def update(self, done: int, *, force: bool = False) -> None: ...


#: Makes a progress bar: (label, total) -> a context manager giving the bar.
ProgressFactory = Callable[[str, int], contextlib.AbstractContextManager[ProgressBar]]


class _NoProgress:
    def update(self, done: int, *, force: bool = False) -> None:
        pass


@contextlib.contextmanager
def _no_progress(label: str, total: int) -> Iterator[ProgressBar]:
    yield _NoProgress()


@dataclass
class RunResult:
    """One run of a trace: its counters, its time, and what the budget saw."""

    mode: str
    pswpin: int
    pswpout: int
    runtime_s: float
    cpu_s: float
    #: Pages faulted back in from swap (pool or file) and first-touch pages.
    swap_ins: int
    new_pages: int
    #: Resident pages pushed out: stored, or dropped clean (their copy kept).
    evictions: int
    clean_evictions: int
    #: Largest resident, pool and resident + pool pages seen (pool pages are
    #: ceil(pool_total_size / page_size)).
    peak_resident_pages: int
    peak_pool_pages: int
    peak_charged_pages: int
    #: Was the swap file opened with O_DIRECT?
    direct: bool
    stats: dict[str, int]
    #: Pages swapped in whose CRC32 differed from the one taken at swap-out.
    mismatched_pages: int = 0

    @property
    def io_pages(self) -> int:
        return self.pswpin + self.pswpout

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["io_pages"] = self.io_pages
        return doc


class _Machine:
    """The RAM budget of one run: resident pages in an LRU, the rest in swap.

    Invariants between steps: `resident` holds at most `budget - pool_pages`
    pages; an offset in `crcs` has a copy in swap (pool or file) whose CRC32
    it gives; an offset in `clean` is resident and its swap copy is still
    equal to it. `zswpin` is the pool loads seen so far: only this machine
    loads, so a load that raises it came from the pool.
    """

    def __init__(
        self,
        z: Any,
        swap_type: int,
        budget: int,
        page_size: int,
        source: Sequence[bytes],
        mode: str,
        jobs: int,
        log: TextIO | None,
    ) -> None:
        self.z = z
        self.t = swap_type
        self.budget = budget
        self.ps = page_size
        self.source = source
        self.mode = mode
        self.exclusive = bool(z.exclusive_loads)
        self.jobs = jobs
        self.log = log
        self.resident: OrderedDict[int, bytearray] = OrderedDict()
        self.clean: set[int] = set()
        self.zswpin = 0
        self.crcs: dict[int, int] = {}
        self.pool_pages = 0
        #: The pool may have shrunk since pool_pages was read (invalidate).
        self.pool_stale = False
        self.swap_ins = 0
        self.new_pages = 0
        self.evictions = 0
        self.clean_evictions = 0
        self.mismatched = 0
        self.peak_resident = 0
        self.peak_pool = 0
        self.peak_charged = 0
        self.steps = 0

    def _read_pool(self, stats: dict[str, int] | None = None) -> None:
        size = int((stats or self.z.stats())["pool_total_size"])
        self.pool_pages = -(-size // self.ps)
        self.pool_stale = False
        self.peak_pool = max(self.peak_pool, self.pool_pages)

    def _drop_swap_copy(self, offset: int) -> None:
        if self.crcs.pop(offset, None) is not None:
            self.z.invalidate(self.t, offset)
            self.pool_stale = True

    def _evict(self) -> None:
        offset, page = self.resident.popitem(last=False)
        self.evictions += 1
        if offset in self.clean:
            # Its swap copy is still equal to it: drop it, no I/O.
            self.clean.discard(offset)
            self.clean_evictions += 1
            return
        outcome = self.z.store(self.t, offset, page)
        if str(getattr(outcome, "value", outcome)) == "REJECTED":
            raise SimulateError(
                f"BUG: {self.mode}: store at offset {offset} was rejected although "
                "the area has a swap file",
                EXIT_FAILURE,
            )
        self.crcs[offset] = zlib.crc32(page)
        self._read_pool()

    def _make_room(self) -> None:
        """Evict until one more page fits beside the resident pages and the pool."""
        if self.pool_stale:
            self._read_pool()
        while len(self.resident) + 1 + self.pool_pages > self.budget:
            if not self.resident:
                raise SimulateError(
                    f"{self.mode}: the pool alone ({self.pool_pages} pages) fills the "
                    f"budget of {self.budget} pages",
                    EXIT_FAILURE,
                )
            self._evict()

    def _fault(self, offset: int, source_index: int) -> bytearray:
        self._make_room()
        if offset in self.crcs:
            page = bytearray(self.ps)
            self.z.load_into(self.t, offset, page)
            if zlib.crc32(page) != self.crcs[offset]:
                self.mismatched += 1
            self.swap_ins += 1
            stats = self.z.stats()
            zswpin = int(stats["zswpin"])
            if zswpin > self.zswpin and self.exclusive:
                # From the pool, which dropped its copy: the page is dirty.
                del self.crcs[offset]
                self._read_pool(stats)
            else:
                self.clean.add(offset)
            self.zswpin = zswpin
        else:
            page = bytearray(self.source[source_index])
            self.new_pages += 1
        self.resident[offset] = page
        resident = len(self.resident)
        self.peak_resident = max(self.peak_resident, resident)
        if self.log is not None:
            self._read_pool()
            self.log.write(
                f"{self.mode},{self.jobs},{self.steps},{resident},{self.pool_pages},{self.budget}\n"
            )
        self.peak_charged = max(self.peak_charged, resident + self.pool_pages)
        return page

    def step(self, op: int, offset: int, source_index: int, mutation: int) -> None:
        self.steps += 1
        if op == OP_FREE:
            self.resident.pop(offset, None)
            self.clean.discard(offset)
            self._drop_swap_copy(offset)
            return
        page = self.resident.get(offset)
        if page is None:
            page = self._fault(offset, source_index)
        else:
            self.resident.move_to_end(offset)
        if op == OP_WRITE:
            if offset in self.clean:
                # The kernel's write fault frees the swap slot of the page.
                self.clean.discard(offset)
                self._drop_swap_copy(offset)
            _mutate(page, mutation, self.ps)


def run(
    zswap_rs: ModuleType | Any,
    config: Config,
    jobs: int,
    source: Sequence[bytes],
    swap_path: str,
    *,
    use_zswap: bool,
    progress: ProgressFactory = _no_progress,
    log: TextIO | None = None,
    touches: int | None = None,
) -> RunResult:
    """Run the trace for `jobs` once, through a fresh Zswap and swap file at `swap_path`."""
    mode = "zswap" if use_zswap else "base"
    plans, _ = plan_build(config, len(source))
    if touches is None:
        touches = count_touches(config, plans)
    # Every touch and every page freed at a job's end is a step of the trace.
    total = touches + sum(p.pages for p in plans)
    slots = area_pages(config, plans, jobs)
    disk = config.disk_mbps or None
    with zswap_rs.Zswap(
        compressor=config.compressor,
        max_pool_bytes=config.max_pool_bytes,
        page_size=config.page_size,
        exclusive_loads=config.exclusive_loads,
    ) as z:
        try:
            t = z.swapon(swap_path, pages=slots, direct=True, disk_mbps=disk)
        except OSError as e:
            raise SimulateError(
                f"cannot make the swap file {swap_path}: {e.strerror or e}", EXIT_USAGE
            ) from None
        try:
            z.enabled = use_zswap
            direct = bool(z.backing_info(t)["direct"])
            machine = _Machine(z, t, config.budget_pages, config.page_size, source, mode, jobs, log)
            step = machine.step
            done = 0
            with progress(f"-j{jobs} {mode}", total) as bar:
                cpu0 = time.process_time()
                t0 = time.perf_counter()
                for event in trace(config, jobs, len(source)):
                    step(*event)
                    done += 1
                    if not done & 1023:
                        bar.update(done)
                runtime = time.perf_counter() - t0
                cpu = time.process_time() - cpu0
                bar.update(total, force=True)
            stats = {k: int(v) for k, v in z.stats().items()}
        except OSError as e:
            raise SimulateError(
                f"{mode} run at -j{jobs}: swap file {swap_path}: {e}", EXIT_FAILURE
            ) from None
        finally:
            with contextlib.suppress(Exception):
                z.swapoff(t)
    return RunResult(
        mode=mode,
        pswpin=stats.get("pswpin", 0),
        pswpout=stats.get("pswpout", 0),
        runtime_s=runtime,
        cpu_s=cpu,
        swap_ins=machine.swap_ins,
        new_pages=machine.new_pages,
        evictions=machine.evictions,
        clean_evictions=machine.clean_evictions,
        peak_resident_pages=machine.peak_resident,
        peak_pool_pages=machine.peak_pool,
        peak_charged_pages=machine.peak_charged,
        direct=direct,
        stats=stats,
        mismatched_pages=machine.mismatched,
    )


# --------------------------------------------------------------------------
# The whole experiment


def _change(new: float, old: float) -> float | None:
    return 100.0 * (new - old) / old if old else None


@dataclass
class Row:
    """One parallelism level: the same trace, base and zswap."""

    jobs: int
    touches: int
    #: Pages the swap area has slots for: the most that can be live at once.
    area_pages: int
    base: RunResult
    zswap: RunResult

    @property
    def io_change_pct(self) -> float | None:
        return _change(self.zswap.io_pages, self.base.io_pages)

    @property
    def runtime_change_pct(self) -> float | None:
        return _change(self.zswap.runtime_s, self.base.runtime_s)

    @property
    def cpu_change_pct(self) -> float | None:
        return _change(self.zswap.cpu_s, self.base.cpu_s)

    def to_json(self) -> dict[str, Any]:
        return {
            "jobs": self.jobs,
            "touches": self.touches,
            "area_pages": self.area_pages,
            "io_change_pct": self.io_change_pct,
            "runtime_change_pct": self.runtime_change_pct,
            "cpu_change_pct": self.cpu_change_pct,
            "base": self.base.to_json(),
            "zswap": self.zswap.to_json(),
        }


@dataclass
class Simulation:
    """Every row of one `simulate` command, with what it ran on."""

    config: Config
    source: dict[str, Any]
    source_pages: int
    swap_dir: str
    rows: list[Row] = field(default_factory=list)

    @property
    def direct(self) -> bool:
        """Was every swap file opened with O_DIRECT?"""
        return all(r.base.direct and r.zswap.direct for r in self.rows)

    @property
    def mismatched_pages(self) -> int:
        return sum(r.base.mismatched_pages + r.zswap.mismatched_pages for r in self.rows)

    def to_json(self) -> dict[str, Any]:
        c = self.config
        return {
            "source": self.source,
            "source_pages": self.source_pages,
            "page_size": c.page_size,
            "config": {
                "jobs": list(c.jobs),
                "ram_mb": c.ram_mb,
                "budget_pages": c.budget_pages,
                "shared_pages": c.shared_pages,
                "files": c.files,
                "compressor": c.compressor,
                "max_pool_percent": c.max_pool_percent,
                "max_pool_bytes": c.max_pool_bytes,
                "disk_mbps": c.disk_mbps,
                "seed": c.seed,
                "swap_dir": self.swap_dir,
            },
            "o_direct": self.direct,
            "mismatched_pages": self.mismatched_pages,
            "rows": [r.to_json() for r in self.rows],
        }


def simulate(
    zswap_rs: ModuleType | Any,
    config: Config,
    source: Sequence[bytes],
    source_info: dict[str, Any],
    *,
    progress: ProgressFactory = _no_progress,
    log: TextIO | None = None,
) -> Simulation:
    """Run every N of `config`, base then zswap, each on a fresh swap file."""
    config.check()
    if not source:
        raise SimulateError("no pages to simulate with")
    if any(len(p) != config.page_size for p in source):
        raise SimulateError(f"every source page must be {config.page_size} bytes")
    if log is not None:
        log.write("mode,jobs,step,resident_pages,pool_pages,budget_pages\n")
    own_dir = config.swap_dir is None
    swap_dir = (
        tempfile.mkdtemp(prefix="zswap-rs-simulate-", dir=default_swap_parent())
        if config.swap_dir is None
        else config.swap_dir
    )
    result = Simulation(config, source_info, len(source), swap_dir)
    plans, _ = plan_build(config, len(source))
    touches = count_touches(config, plans)
    try:
        for jobs in config.jobs:
            runs = []
            for use_zswap in (False, True):
                mode = "zswap" if use_zswap else "base"
                path = os.path.join(
                    swap_dir, f"zswap-rs-simulate-{os.getpid()}-j{jobs}-{mode}.swap"
                )
                try:
                    runs.append(
                        run(
                            zswap_rs,
                            config,
                            jobs,
                            source,
                            path,
                            use_zswap=use_zswap,
                            progress=progress,
                            log=log,
                            touches=touches,
                        )
                    )
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
            result.rows.append(
                Row(jobs, touches, area_pages(config, plans, jobs), runs[0], runs[1])
            )
    finally:
        if own_dir:
            shutil.rmtree(swap_dir, ignore_errors=True)
    return result


# --------------------------------------------------------------------------
# Report


def fmt_cell(value: float | None, spec: str, suffix: str = "") -> str:
    """A table cell: `value` formatted with `spec` and `suffix`, or "-" if absent."""
    return "-" if value is None else f"{value:{spec}}{suffix}"


IO_COLUMNS = (
    "N",
    "base in",
    "base out",
    "base I/O",
    "zswap in",
    "zswap out",
    "zswap I/O",
    "I/O change",
    "zswpwb",
    "limit hit",
)
TIME_COLUMNS = (
    "N",
    "base s",
    "zswap s",
    "change",
    "base CPU s",
    "zswap CPU s",
    "CPU change",
)


def io_table(sim: Simulation) -> list[list[str]]:
    """Swap I/O in pages per N, as the seed's first table."""
    return [
        [
            str(r.jobs),
            str(r.base.pswpin),
            str(r.base.pswpout),
            str(r.base.io_pages),
            str(r.zswap.pswpin),
            str(r.zswap.pswpout),
            str(r.zswap.io_pages),
            fmt_cell(r.io_change_pct, "+.0f", "%"),
            str(r.zswap.stats.get("zswpwb", 0)),
            str(r.zswap.stats.get("pool_limit_hit", 0)),
        ]
        for r in sim.rows
    ]


def time_table(sim: Simulation) -> list[list[str]]:
    """Runtime and CPU in seconds per N, as the seed's build-time table."""
    return [
        [
            str(r.jobs),
            f"{r.base.runtime_s:.2f}",
            f"{r.zswap.runtime_s:.2f}",
            fmt_cell(r.runtime_change_pct, "+.0f", "%"),
            f"{r.base.cpu_s:.2f}",
            f"{r.zswap.cpu_s:.2f}",
            fmt_cell(r.cpu_change_pct, "+.0f", "%"),
        ]
        for r in sim.rows
    ]


def describe(sim: Simulation) -> str:
    """The setting, in one paragraph: budget, pool, build, disk."""
    c = sim.config
    disk = f"paced to {c.disk_mbps:g} MB/s" if c.disk_mbps else "unpaced"
    io = (
        "O_DIRECT"
        if sim.direct
        else "buffered I/O (the filesystem refused O_DIRECT: the page cache may serve reads)"
    )
    return (
        f"RAM budget {c.ram_mb} MiB ({c.budget_pages} pages, pool's memory included); "
        f"pool limit {c.max_pool_percent}% of it; {c.compressor}\n"
        f"build: {c.files} files, seed {c.seed}, shared set {c.shared_pages} pages, "
        f"jobs of {max(1, c.budget_pages // JOB_MIN_DIVISOR)}-"
        f"{max(1, c.budget_pages // JOB_MAX_DIVISOR)} pages\n"
        f"swap files in {sim.swap_dir}: {io}, {disk}"
    )


def plot(sim: Simulation, path: str, title: str) -> None:
    """Swap I/O and runtime against N, base and zswap (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r.jobs for r in sim.rows]
    fig, (ax_io, ax_time) = plt.subplots(1, 2, figsize=(11, 4.5))
    ax_io.plot(n, [r.base.io_pages for r in sim.rows], "o-", label="base (no zswap)")
    ax_io.plot(n, [r.zswap.io_pages for r in sim.rows], "s-", label="zswap")
    ax_io.plot(
        n,
        [r.zswap.stats.get("zswpwb", 0) for r in sim.rows],
        "^--",
        label="zswap writeback",
        color="tab:gray",
    )
    ax_io.set_title("swap I/O (pswpin + pswpout)")
    ax_io.set_xlabel("N (make -jN)")
    ax_io.set_ylabel("pages")
    ax_io.set_xticks(n)
    ax_io.legend()
    ax_time.plot(n, [r.base.runtime_s for r in sim.rows], "o-", label="base (no zswap)")
    ax_time.plot(n, [r.zswap.runtime_s for r in sim.rows], "s-", label="zswap")
    ax_time.set_title("runtime")
    ax_time.set_xlabel("N (make -jN)")
    ax_time.set_ylabel("seconds")
    ax_time.set_xticks(n)
    ax_time.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
