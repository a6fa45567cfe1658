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

    What the limit leaves after the interpreter (`baseline`, measured), the
    region's per-page metadata and its headroom is split: `pool_percent` to
    the pool, the rest to resident pages. See the package docs for why.
    """
    left = limit - baseline - pages * REGION_BYTES_PER_PAGE - REGION_HEADROOM
    pool = left * pool_percent // 100
    budget = (left - pool) // PAGE_SIZE * PAGE_SIZE
    if budget < MIN_BUDGET or pool < 0:
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


def phases(mem: Any, plan: Plan) -> tuple[dict[str, float], float, list[str]]:
    """Run the timed phases on `mem`: (seconds per phase, CPU seconds, failures)."""
    import numpy as np

    a64 = np.frombuffer(mem, dtype=np.uint64)
    failures: list[str] = []
    seconds: dict[str, float] = {}

    def start(name: str) -> float:
        say(f"phase {name}")
        return time.perf_counter()

    cpu0 = cpu_seconds()
    t = start("fill")
    fill(a64.view(np.uint8), plan.source, plan.source_pages)
    seconds["fill"] = time.perf_counter() - t
    for name in ("scan1", "scan2"):
        t = start(name)
        got = int(a64.sum(dtype=np.uint64))
        seconds[name] = time.perf_counter() - t
        if got != plan.total:
            failures.append(f"{name}: sum {got:#x}, expected {plan.total:#x}")
    t = start("reads")
    values = a64[plan.read_idx * WORDS_PER_PAGE]
    seconds["reads"] = time.perf_counter() - t
    bad = int(np.count_nonzero(values != plan.want_reads))
    if bad:
        failures.append(f"reads: {bad} of {len(values)} words differ from the page file")
    t = start("writes")
    a64[plan.write_idx * WORDS_PER_PAGE + 1] = plan.written
    seconds["writes"] = time.perf_counter() - t
    cpu = cpu_seconds() - cpu0
    say("phase check")
    bad = int(np.count_nonzero(a64[plan.write_idx * WORDS_PER_PAGE + 1] != plan.written))
    if bad:
        failures.append(f"writes: {bad} of {len(plan.written)} written words read back wrong")
    return seconds, cpu, failures


def run(spec: dict[str, Any]) -> dict[str, Any]:
    plan = Plan(spec)
    baseline = read_usage(spec.get("usage_file"))
    buf = Buffer(spec, baseline)
    # No try/finally around the phases: on an exception (Ctrl-C above all)
    # the traceback keeps the array's view alive, close() would raise
    # BufferError over it, and the process is ending anyway.
    seconds, cpu, failures = phases(buf.mem, plan)
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
