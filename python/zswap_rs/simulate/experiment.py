"""The experiment: every N of a `Config`, base then zswap, each on a fresh swap file.

`simulate` plans the build once (`model.plan_build`) and, for each N, replays
its trace twice through a `machine.Machine` in front of a new `Zswap`: with
zswap disabled (every swap-out goes to the file) and enabled. It owns what
lies around the runs: the swap directory and files (made and removed), the
timing, and the results (`Simulation`, `Row`, `RunResult`), which
`zswap_rs.cli.report` prints.

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
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from types import ModuleType
from typing import Any, Protocol, TextIO

from .._command_error import EXIT_FAILURE, EXIT_USAGE, CommandError
from .machine import BUDGET_LOG_HEADER, Machine
from .model import Build, Config, Event, plan_build

__all__ = [
    "ProgressBar",
    "ProgressFactory",
    "Row",
    "RunResult",
    "Simulation",
    "default_swap_parent",
    "run",
    "simulate",
]


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


def default_swap_parent() -> str | None:
    """Where the default swap directory goes: /var/tmp, where it can be.

    /tmp is often a tmpfs, which refuses O_DIRECT and keeps the "disk" in RAM;
    /var/tmp is on a real filesystem on most systems.
    """
    return "/var/tmp" if os.path.isdir("/var/tmp") and os.access("/var/tmp", os.W_OK) else None


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

    @classmethod
    def of(
        cls, m: Machine, runtime_s: float, cpu_s: float, direct: bool, stats: dict[str, int]
    ) -> RunResult:
        """The result of a run that machine `m` replayed."""
        return cls(
            mode=m.mode,
            pswpin=stats.get("pswpin", 0),
            pswpout=stats.get("pswpout", 0),
            runtime_s=runtime_s,
            cpu_s=cpu_s,
            swap_ins=m.swap_ins,
            new_pages=m.new_pages,
            evictions=m.evictions,
            clean_evictions=m.clean_evictions,
            peak_resident_pages=m.peak_resident,
            peak_pool_pages=m.peak_pool,
            peak_charged_pages=m.peak_charged,
            direct=direct,
            stats=stats,
            mismatched_pages=m.mismatched,
        )

    @property
    def io_pages(self) -> int:
        return self.pswpin + self.pswpout

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["io_pages"] = self.io_pages
        return doc


def _replay(
    machine: Machine, events: Iterable[Event], total: int, bar: ProgressBar
) -> tuple[float, float]:
    """Every event through the machine: (wall seconds, CPU seconds)."""
    step = machine.step
    done = 0
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for event in events:
        step(*event)
        done += 1
        if not done & 1023:
            bar.update(done)
    runtime = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    bar.update(total, force=True)
    return runtime, cpu


def _swapon(z: Any, swap_path: str, pages: int, disk_mbps: float) -> int:
    try:
        return int(z.swapon(swap_path, pages=pages, direct=True, disk_mbps=disk_mbps or None))
    except OSError as e:
        raise CommandError(
            f"cannot make the swap file {swap_path}: {e.strerror or e}", EXIT_USAGE
        ) from None
    except ValueError as e:  # ConfigError: the pacing is out of the core's range
        raise CommandError(f"--disk-mbps: {e}", EXIT_USAGE) from None


def run(
    zswap_rs: ModuleType | Any,
    build: Build,
    jobs: int,
    source: Sequence[bytes],
    swap_path: str,
    *,
    use_zswap: bool,
    progress: ProgressFactory = _no_progress,
    log: TextIO | None = None,
) -> RunResult:
    """Run the trace for `jobs` once, through a fresh Zswap and swap file at `swap_path`."""
    config = build.config
    mode = "zswap" if use_zswap else "base"
    with zswap_rs.Zswap(
        compressor=config.compressor,
        max_pool_bytes=config.max_pool_bytes,
        page_size=config.page_size,
        exclusive_loads=config.exclusive_loads,
    ) as z:
        t = _swapon(z, swap_path, build.area_pages(jobs), config.disk_mbps)
        try:
            z.enabled = use_zswap
            direct = bool(z.backing_info(t)["direct"])
            machine = Machine(z, t, config.budget_pages, config.page_size, source, mode, jobs, log)
            with progress(f"-j{jobs} {mode}", build.steps) as bar:
                runtime, cpu = _replay(machine, build.trace(jobs), build.steps, bar)
            stats = {k: int(v) for k, v in z.stats().items()}
        except OSError as e:
            raise CommandError(
                f"{mode} run at -j{jobs}: swap file {swap_path}: {e}", EXIT_FAILURE
            ) from None
        finally:
            with contextlib.suppress(Exception):
                z.swapoff(t)
    return RunResult.of(machine, runtime, cpu, direct, stats)


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


@contextlib.contextmanager
def _swap_dir(config: Config) -> Iterator[str]:
    """The directory the runs' swap files go in: the one configured, or a temporary one."""
    if config.swap_dir is not None:
        yield config.swap_dir
        return
    path = tempfile.mkdtemp(prefix="zswap-rs-simulate-", dir=default_swap_parent())
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


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
        raise CommandError("no pages to simulate with")
    if any(len(p) != config.page_size for p in source):
        raise CommandError(f"every source page must be {config.page_size} bytes")
    build = plan_build(config, len(source))
    if log is not None:
        log.write(BUDGET_LOG_HEADER)
    with _swap_dir(config) as swap_dir:
        result = Simulation(config, source_info, len(source), swap_dir)
        for jobs in config.jobs:
            base, zswap = (
                _run_on_fresh_file(
                    zswap_rs, build, jobs, source, swap_dir, use_zswap, progress, log
                )
                for use_zswap in (False, True)
            )
            result.rows.append(Row(jobs, build.touches, build.area_pages(jobs), base, zswap))
    return result


def _run_on_fresh_file(
    zswap_rs: ModuleType | Any,
    build: Build,
    jobs: int,
    source: Sequence[bytes],
    swap_dir: str,
    use_zswap: bool,
    progress: ProgressFactory,
    log: TextIO | None,
) -> RunResult:
    """`run` on a new swap file in `swap_dir`, removed afterwards whatever happens."""
    mode = "zswap" if use_zswap else "base"
    path = os.path.join(swap_dir, f"zswap-rs-simulate-{os.getpid()}-j{jobs}-{mode}.swap")
    try:
        return run(
            zswap_rs, build, jobs, source, path, use_zswap=use_zswap, progress=progress, log=log
        )
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
