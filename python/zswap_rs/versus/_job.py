"""The job `zswap-rs versus` times: one NumPy array under memory pressure, in a fresh process.

Run as a script by the parent, inside the side's memory cgroup (it joins
before exec, so the interpreter's start-up is charged too):
`python _job.py SPEC_JSON`. It prints `phase NAME` lines as it goes and one
JSON line of results at the end, then exits.

The job, on real page contents (the page file the parent wrote: the
built-in workload's pages, or `--pages`), cycled over the array:

1. fill: every page of the array written from the page file, 1 MiB at a time;
2. scan twice: a sum over every word of the array, in address order;
3. reads: one word of each of `reads` random pages (uniform, with repeats);
4. writes: one word of each of `writes` random pages.

Every phase checks what it read: the sums against the sums of the page
file's pages, the random reads against each page's first word, and, after
the clock stops, the written words read back. A side that returns wrong
bytes is reported as a failure, never timed as a success.

The array: for the kernel's sides an anonymous private mapping (what a big
NumPy allocation is, minus NumPy's huge-page advice: both sides then move
4 KiB pages, and the machine's THP policy is in the report); for zswap-rs
the buffer of a `zswap_rs.Region` with the budget and pool limit of
`split_limit`. Only the zswap-rs side imports the compiled module, so the
kernel's sides do not pay for it.
"""

from __future__ import annotations

import json
import mmap
import os
import resource
import sys
import time
from typing import TYPE_CHECKING, Any

# NumPy is imported where it is used: the CLI imports this module to build its
# parser, and `zswap-rs info` or `profile` must work where NumPy is not installed.
if TYPE_CHECKING:
    import numpy as np

PAGE_SIZE = 4096
WORDS_PER_PAGE = PAGE_SIZE // 8
#: Pages copied per step of the fill: one read of the page file and one
#: 1 MiB copy into the array; small enough to be noise in the limit.
FILL_CHUNK_PAGES = 256
#: XORed into the page index to make the word a random write stores, so that
#: writing a page twice stores the same word (the check is then exact).
WRITE_MAGIC = 0x9E3779B97F4A7C15
PHASES = ("fill", "scan1", "scan2", "reads", "writes")
#: Region stats that are levels, not events: their value at a phase's end is
#: kept, not their change over it.
REGION_GAUGES = (
    "resident_pages",
    "pool_total_size",
    "stored_pages",
    "orig_data_size",
    "compr_data_size",
    "mem_used_total",
    "same_filled_pages",
    "stored_incompressible_pages",
)
#: The machine's swap events over a phase (/proc/vmstat: the whole machine's,
#: but with other swap refused only this run's swap file serves them).
VMSTAT_EVENTS = ("pswpin", "pswpout", "zswpin", "zswpout", "zswpwb", "pgmajfault")
#: The cgroup's events over a phase (memory.stat, v1 and v2 names) ...
MEMCG_EVENTS = (
    "pgfault",
    "pgmajfault",
    "pgpgin",
    "pgpgout",
    "pswpin",
    "pswpout",
    "zswpin",
    "zswpout",
    "zswpwb",
    "pgscan",
    "pgsteal",
    "workingset_refault_anon",
    "workingset_refault_file",
)
#: ... and its levels at a phase's end, in bytes: anonymous memory, page
#: cache (the region's swap file is written through it), dirty and under
#: writeback, swapped out.
MEMCG_LEVELS = (
    "rss",
    "cache",
    "dirty",
    "writeback",
    "swap",
    "anon",
    "file",
    "file_dirty",
    "file_writeback",
    "zswap",
)
#: What the region's cache keeps per stored page beyond the compressed bytes
#: (index node, LRU links: at most 32 bytes by SPEC) plus the region's own
#: per-page state, with room to spare: charged to the limit before the split.
REGION_BYTES_PER_PAGE = 64
#: Limit left out of the split for what a region allocates besides resident
#: pages and pool: its fault-handling threads' stacks, read-ahead and
#: writeback buffers, the swap file's page cache of metadata.
REGION_HEADROOM = 4 << 20
#: The smallest budget a region gets: a few read-ahead windows.
MIN_BUDGET = 256 << 10


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def source_sums(path: str, pages: int) -> tuple[np.ndarray, np.ndarray]:
    """Per page of the page file: the wrapping sum of its words, and its first word."""
    import numpy as np

    sums = np.empty(pages, dtype=np.uint64)
    firsts = np.empty(pages, dtype=np.uint64)
    buf = bytearray(FILL_CHUNK_PAGES * PAGE_SIZE)
    with open(path, "rb", buffering=0) as f:
        for start in range(0, pages, FILL_CHUNK_PAGES):
            n = min(FILL_CHUNK_PAGES, pages - start)
            view = memoryview(buf)[: n * PAGE_SIZE]
            if f.readinto(view) != len(view):
                raise RuntimeError(f"{path} is shorter than {pages} pages")
            words = np.frombuffer(view, dtype=np.uint64).reshape(n, WORDS_PER_PAGE)
            sums[start : start + n] = words.sum(axis=1, dtype=np.uint64)
            firsts[start : start + n] = words[:, 0]
    return sums, firsts


def expected_total(sums: np.ndarray, pages: int) -> int:
    """The wrapping sum of an array of `pages` pages made by cycling the page file."""
    import numpy as np

    n = len(sums)
    whole = int(sums.sum(dtype=np.uint64))
    part = int(sums[: pages % n].sum(dtype=np.uint64))
    return (whole * (pages // n) + part) % (1 << 64)


def fill(a8: np.ndarray, path: str, source_pages: int) -> None:
    import numpy as np

    pages = len(a8) // PAGE_SIZE
    buf = bytearray(FILL_CHUNK_PAGES * PAGE_SIZE)
    chunk = np.frombuffer(buf, dtype=np.uint8)
    fd = os.open(path, os.O_RDONLY)
    try:
        done = 0
        while done < pages:
            src = done % source_pages
            n = min(FILL_CHUNK_PAGES, pages - done, source_pages - src)
            got = os.preadv(fd, [memoryview(buf)[: n * PAGE_SIZE]], src * PAGE_SIZE)
            if got != n * PAGE_SIZE:
                raise RuntimeError(f"{path}: short read at page {src}")
            a8[done * PAGE_SIZE : (done + n) * PAGE_SIZE] = chunk[: n * PAGE_SIZE]
            done += n
    finally:
        os.close(fd)


class LimitTooSmall(Exception):
    """The limit leaves no room for a region beside the interpreter: a setting, not a bug."""


def split_limit(limit: int, baseline: int, pages: int, pool_percent: int) -> tuple[int, int]:
    """(budget, max_pool_bytes) for a region of `pages` pages in a limit of `limit` bytes.

    The budget is what the limit leaves after the interpreter (`baseline`,
    measured), the region's per-page metadata and its headroom; the region
    counts its pool in it (`pool_in_budget`), so resident pages fill what
    the pool does not use, and the pool may grow to `pool_percent` of it
    before it writes back. See the package docs for why.
    """
    left = (limit - baseline - pages * REGION_BYTES_PER_PAGE - REGION_HEADROOM) // PAGE_SIZE
    budget = left * PAGE_SIZE
    pool = budget * pool_percent // 100
    if budget - pool < MIN_BUDGET:
        raise LimitTooSmall(
            f"the limit ({limit >> 20} MiB) leaves too little for a region of {pages} pages: "
            f"the interpreter uses {baseline / 2**20:.1f} MiB before it, its metadata "
            f"{pages * REGION_BYTES_PER_PAGE / 2**20:.1f} MiB"
        )
    return budget, pool


class Buffer:
    """The array's memory: an anonymous mapping, or a zswap_rs.Region."""

    def __init__(self, spec: dict[str, Any], baseline: int) -> None:
        size = spec["array_bytes"]
        self.region: Any = None
        self.split: dict[str, int] = {}
        reg = spec.get("region")
        if reg is None:
            flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
            self.mem: Any = mmap.mmap(-1, size, flags=flags)
            return
        import zswap_rs

        budget, pool = split_limit(
            reg["limit_bytes"], baseline, size // PAGE_SIZE, reg["pool_percent"]
        )
        self.split = {"budget": budget, "max_pool_bytes": pool, "baseline": baseline}
        self.region = zswap_rs.Region(
            size,
            budget=budget,
            path=reg["path"],
            compressor=reg["compressor"],
            max_pool_bytes=pool,
            faults=reg.get("faults", "handlers"),
            direct_io=bool(reg.get("direct_io", False)),
            pool_in_budget=True,
        )
        self.mem = self.region

    def stats(self) -> dict[str, int] | None:
        return None if self.region is None else dict(self.region.stats())

    def close(self) -> None:
        self.mem.close()


def read_usage(path: str | None) -> int:
    if path is None:
        return 0
    with open(path, encoding="ascii") as f:
        return int(f.read())


def unmapped_cache(memcg_stat: str | None) -> int:
    """Bytes of the cgroup's charge that are page cache no process maps.

    Here that is the page file, read by `Plan` before the region exists:
    how much of it is charged to this cgroup rather than the parent's
    depends on what the parent's cache still held, and reclaim drops it
    before anything else, so it is not the interpreter's share of the limit.
    """
    st = _read_counters(memcg_stat, ("cache", "mapped_file", "shmem", "file", "file_mapped"))
    if "cache" in st:  # v1
        return max(0, st["cache"] - st.get("mapped_file", 0) - st.get("shmem", 0))
    return max(0, st.get("file", 0) - st.get("file_mapped", 0) - st.get("shmem", 0))


def _read_counters(path: str | os.PathLike[str] | None, keys: tuple[str, ...]) -> dict[str, int]:
    """The `keys` of a "name value" file (/proc/vmstat, memory.stat) that it has."""
    out: dict[str, int] = {}
    if path is None:
        return out
    try:
        with open(path, encoding="ascii") as f:
            for line in f:
                key, _, value = line.partition(" ")
                if key in keys:
                    out[key] = int(value)
    except (OSError, ValueError):
        pass
    return out


def read_pressure() -> dict[str, int]:
    """The machine's stall times so far, in microseconds (/proc/pressure: PSI; {} without it).

    `memory_some`: time some task waited on memory (reclaim, refaults, the
    throttling of reclaim behind writeback); `io_some`: on I/O. Machine-wide:
    other programs' stalls are in it too, which a phase's seconds dwarf or not.
    """
    out: dict[str, int] = {}
    for res in ("memory", "io"):
        try:
            with open(f"/proc/pressure/{res}", encoding="ascii") as f:
                for line in f:
                    kind, *fields = line.split()
                    total = next(x for x in fields if x.startswith("total="))
                    out[f"{res}_{kind}"] = int(total[len("total=") :])
        except (OSError, ValueError, StopIteration):
            pass
    return out


class Counters:
    """What a phase cost besides seconds: faults, the region's and the cgroup's counters.

    A snapshot is taken before and after each phase, outside its clock. The
    process's major faults (`ru_majflt`, all its threads) are the kernel's
    swap-ins of it: from zswap or from disk, both are major. A region's own
    faults are not among them (userfaultfd faults count as minor, and signal
    mode's as none): they are its `faults` and `wp_faults`.
    """

    def __init__(self, buf: Buffer, memcg_stat: str | None) -> None:
        self.buf = buf
        self.memcg_stat = memcg_stat
        self.phases: dict[str, dict[str, Any]] = {}

    def snapshot(self) -> dict[str, Any]:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "majflt": r.ru_majflt,
            "minflt": r.ru_minflt,
            "region": self.buf.stats() or {},
            "vmstat": _read_counters("/proc/vmstat", VMSTAT_EVENTS),
            "memcg": _read_counters(self.memcg_stat, MEMCG_EVENTS + MEMCG_LEVELS),
            "pressure_us": read_pressure(),
        }

    def record(self, name: str, before: dict[str, Any], after: dict[str, Any]) -> None:
        def delta(a: dict[str, int], b: dict[str, int], skip: tuple[str, ...]) -> dict[str, int]:
            return {k: b[k] - a.get(k, 0) for k in b if k not in skip}

        reg_a, reg_b = before["region"], after["region"]
        mem_a, mem_b = before["memcg"], after["memcg"]
        self.phases[name] = {
            "majflt": after["majflt"] - before["majflt"],
            "minflt": after["minflt"] - before["minflt"],
            "region": delta(reg_a, reg_b, REGION_GAUGES) if reg_b else None,
            "region_end": {k: reg_b[k] for k in REGION_GAUGES if k in reg_b} if reg_b else None,
            "vmstat": delta(before["vmstat"], after["vmstat"], ()),
            "memcg": delta(mem_a, {k: v for k, v in mem_b.items() if k in MEMCG_EVENTS}, ()),
            "memcg_end": {k: v for k, v in mem_b.items() if k in MEMCG_LEVELS},
            "pressure_us": delta(before["pressure_us"], after["pressure_us"], ()),
        }


class Plan:
    """What the phases touch and what they must find, all made before the clock starts."""

    def __init__(self, spec: dict[str, Any]) -> None:
        import numpy as np

        self.pages = spec["array_bytes"] // PAGE_SIZE
        self.source, self.source_pages = spec["source"], spec["source_pages"]
        rng = np.random.default_rng(spec["seed"])
        self.read_idx = rng.integers(0, self.pages, spec["reads"], dtype=np.int64)
        self.write_idx = rng.integers(0, self.pages, spec["writes"], dtype=np.int64)
        sums, firsts = source_sums(self.source, self.source_pages)
        self.total = expected_total(sums, self.pages)
        self.want_reads = firsts[self.read_idx % self.source_pages]
        self.written = self.write_idx.astype(np.uint64) ^ np.uint64(WRITE_MAGIC)


def phases(mem: Any, plan: Plan, counters: Counters) -> tuple[dict[str, float], float, list[str]]:
    """Run the timed phases on `mem`: (seconds per phase, CPU seconds, failures).

    `counters` gets each phase's faults and counters, read outside its clock.
    """
    import numpy as np

    a64 = np.frombuffer(mem, dtype=np.uint64)
    failures: list[str] = []
    seconds: dict[str, float] = {}
    cpu = 0.0
    snap: dict[str, Any] = {}
    cpu0 = 0.0
    t = 0.0

    def start(name: str) -> None:
        nonlocal cpu0, t, snap
        say(f"phase {name}")
        snap = counters.snapshot()
        cpu0 = cpu_seconds()
        t = time.perf_counter()

    def stop(name: str) -> None:
        nonlocal cpu
        seconds[name] = time.perf_counter() - t
        spent = cpu_seconds() - cpu0
        cpu += spent
        counters.record(name, snap, counters.snapshot())
        counters.phases[name]["cpu_seconds"] = spent

    start("fill")
    fill(a64.view(np.uint8), plan.source, plan.source_pages)
    stop("fill")
    for name in ("scan1", "scan2"):
        start(name)
        got = int(a64.sum(dtype=np.uint64))
        stop(name)
        if got != plan.total:
            failures.append(f"{name}: sum {got:#x}, expected {plan.total:#x}")
    start("reads")
    values = a64[plan.read_idx * WORDS_PER_PAGE]
    stop("reads")
    bad = int(np.count_nonzero(values != plan.want_reads))
    if bad:
        failures.append(f"reads: {bad} of {len(values)} words differ from the page file")
    start("writes")
    a64[plan.write_idx * WORDS_PER_PAGE + 1] = plan.written
    stop("writes")
    say("phase check")
    bad = int(np.count_nonzero(a64[plan.write_idx * WORDS_PER_PAGE + 1] != plan.written))
    if bad:
        failures.append(f"writes: {bad} of {len(plan.written)} written words read back wrong")
    return seconds, cpu, failures


def run(spec: dict[str, Any]) -> dict[str, Any]:
    plan = Plan(spec)
    usage = spec.get("usage_file")
    memcg_stat = None if usage is None else os.path.join(os.path.dirname(usage), "memory.stat")
    cache = unmapped_cache(memcg_stat)
    baseline = max(0, read_usage(usage) - cache)
    buf = Buffer(spec, baseline)
    if buf.split:
        buf.split["page_cache_left_out"] = cache
    counters = Counters(buf, memcg_stat)
    # No try/finally around the phases: on an exception (Ctrl-C above all)
    # the traceback keeps the array's view alive, close() would raise
    # BufferError over it, and the process is ending anyway.
    seconds, cpu, failures = phases(buf.mem, plan, counters)
    stats = buf.stats()
    resident = None if buf.region is None else int(buf.region.resident_bytes)
    buf.close()
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "baseline_bytes": baseline,
        "failures": failures,
        "region_stats": stats,
        "region_split": buf.split or None,
        "region_resident_bytes": resident,
        "phase_counters": counters.phases,
    }


def main(argv: list[str]) -> int:
    """Run the job of the spec in argv[1]; exit 0 with a result line, or 3 with an error line."""
    spec = json.loads(argv[1])
    try:
        result = run(spec)
    except Exception as e:  # reported as this side's failure, in one line
        say(f"error {type(e).__name__}: {e}")
        return 3
    say("result " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
