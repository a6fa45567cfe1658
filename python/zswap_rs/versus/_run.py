"""The run: checks, the machine set up once, then every (pressure level, side) in a fresh child.

Order of a run: refuse early (not root, other swap active, a compressor one
side lacks, too little disk) before anything is changed; take the run lock;
read the pages; then, inside one ExitStack, the private directory, the swap
file and the zswap parameters' snapshot, so that they unwind in the reverse
order (zswap restored while the swap file is still on, then swapoff, then the
directory removed). Each side runs in a memory cgroup of its own, made for
it and removed after it, so that one side's leftovers (page cache, the
peak) never count against the next.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import _procmem, _workload
from .._command_error import EXIT_FAILURE, EXIT_USAGE, CommandError
from . import _job, _machine
from ._machine import MachineError

__all__ = [
    "DEFAULT_LEVELS",
    "DEFAULT_SIDES",
    "REGION_SIDES",
    "SIDES",
    "Config",
    "SideResult",
    "Versus",
    "VersusError",
    "default_limit_mb",
    "run",
]

PAGE_SIZE = _job.PAGE_SIZE
#: The sides, in the order they run at each level.
SIDES = ("swap", "zswap", "zswap-rs", "zswap-rs-signal")
#: What a run measures unless `--sides` says otherwise: signal mode breaks
#: syscalls on evicted pages (EFAULT), so it is opt-in here as in `Region`.
DEFAULT_SIDES = ("swap", "zswap", "zswap-rs")
SIDE_TITLES = {
    "swap": "kernel swap",
    "zswap": "kernel zswap",
    "zswap-rs": "zswap-rs",
    "zswap-rs-signal": "zswap-rs signal",
}
#: The sides whose array is a `zswap_rs.Region`, and its `faults=` mode.
#: The job does no syscall on the array (the fill reads the page file into
#: a buffer of its own and copies from there), so signal mode's EFAULT on
#: an evicted page never happens in it.
REGION_SIDES = {"zswap-rs": "handlers", "zswap-rs-signal": "signal"}
#: Fewer faults than this in a phase and its cost per fault is not shown:
#: the phase's seconds are then mostly not faults.
MIN_FAULTS_FOR_COST = 100
#: Array size in multiples of the memory limit: the shape of the seed's N = 8..24 rows.
DEFAULT_LEVELS = (1.0, 1.5, 2.0, 3.0, 4.0)
DEFAULT_COMPRESSOR = "lz4"
#: What the default compressor falls back to, on both sides, when the
#: kernel's crypto API has no lz4: the seed's own compressor, which every
#: kernel with zswap has.
FALLBACK_COMPRESSOR = "lzo"
#: The default limit is this share of MemAvailable, between the bounds below:
#: far enough from the machine's own memory that the kernel never reclaims
#: other programs' pages (into this run's swap file) because of the run.
DEFAULT_LIMIT_SHARE = 64
#: At 128 MiB a full run (five levels, three sides) takes a few minutes on a
#: 2-vCPU VM with a virtio disk; the time grows with the limit.
DEFAULT_LIMIT_MAX_MB = 128
MIN_LIMIT_MB = 32
#: The kernel's own defaults for the zswap side: a pool of up to 20% of RAM
#: (never reached in a cgroup this small: the cgroup's limit is what bounds
#: it) and hysteresis at 90%.
KERNEL_MAX_POOL_PERCENT = 20
KERNEL_ACCEPT_THRESHOLD_PERCENT = 90
#: Swap file room beyond the heaviest array: the interpreter's own pages may
#: swap too, and the kernel's zswap holds a swap slot for every page it stores.
SWAP_SLACK_BYTES = 64 << 20
#: How long a run waits for another one to finish before it gives up.
LOCK_WAIT_SECONDS = 900.0
#: How often the kernel zswap's pool size is sampled while its side runs:
#: often enough that its peak is not missed by more than a few MiB.
TICK_SECONDS = 0.02


class VersusError(CommandError):
    """A run that cannot start or cannot go on: one line for stderr, with an exit code."""

    code = EXIT_USAGE


def default_limit_mb(meminfo: Path = Path("/proc/meminfo")) -> int:
    """MemAvailable / DEFAULT_LIMIT_SHARE, within [MIN_LIMIT_MB, DEFAULT_LIMIT_MAX_MB], in 16s."""
    avail_kib = 0
    for line in meminfo.read_text(encoding="ascii").splitlines():
        if line.startswith("MemAvailable:"):
            avail_kib = int(line.split()[1])
    mb = avail_kib // 1024 // DEFAULT_LIMIT_SHARE // 16 * 16
    return max(MIN_LIMIT_MB, min(DEFAULT_LIMIT_MAX_MB, mb))


@dataclass(frozen=True)
class Config:
    """What a run does; the CLI's options, one field each."""

    limit_mb: int
    levels: tuple[float, ...] = DEFAULT_LEVELS
    #: None: lz4, or lzo where the kernel has no lz4 (said in the notes).
    compressor: str | None = None
    pages_file: str | None = None
    workload_mb: int = 150
    seed: int = 0
    swap_dir: str | None = None
    allow_other_swap: bool = False
    #: zswap-rs: how much of the region's budget (what the limit leaves
    #: after the interpreter, the pool counted in it) the pool may grow to
    #: before it writes back; resident pages have the rest at least.
    pool_percent: int = 75
    #: The kernel's zswap shrinker (writeback of the pool under the cgroup's
    #: pressure) on the kernel zswap side.
    kernel_shrinker: bool = True
    #: zswap-rs: open the region's swap file O_DIRECT. Off (the Region's
    #: default), its writes go through the page cache, which a cgroup v1
    #: limit charges to the side and reclaim may then wait on.
    region_direct_io: bool = False
    reads: int = 50_000
    writes: int = 50_000
    #: Seconds a side may take before it is stopped and reported as such.
    timeout: float = 300.0
    sides: tuple[str, ...] = DEFAULT_SIDES

    @property
    def limit_bytes(self) -> int:
        return self.limit_mb << 20

    def array_bytes(self, level: float) -> int:
        return max(1, round(level * self.limit_bytes / PAGE_SIZE)) * PAGE_SIZE

    def check(self) -> None:
        if self.limit_mb < MIN_LIMIT_MB:
            raise VersusError(f"--limit-mb must be {MIN_LIMIT_MB} or more: {self.limit_mb}")
        if not self.levels or any(not 0 < lv <= 64 for lv in self.levels):
            raise VersusError(f"--levels must be between 0 and 64 (exclusive of 0): {self.levels}")
        if not 1 <= self.pool_percent <= 95:
            raise VersusError(f"--pool-percent must be 1 to 95: {self.pool_percent}")
        unknown = [s for s in self.sides if s not in SIDES]
        if unknown or not self.sides:
            raise VersusError(f"unknown side {unknown[0] if unknown else ''!r}; known: {SIDES}")


@dataclass
class SideResult:
    """One side at one level; figures are None where the side did not run to the end."""

    level: float
    side: str
    array_bytes: int
    #: "ok", "unavailable" (not measured: `reason` says why), "oom" (killed
    #: by the cgroup's OOM killer: the side could not fit the job in the
    #: limit), "failed" (wrong bytes, a crash: `reason`), "timeout".
    status: str
    reason: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    cpu_seconds: float | None = None
    peak_rss_bytes: int | None = None
    cgroup_peak_bytes: int | None = None
    #: The cgroup's charge before the array existed: the interpreter, NumPy.
    baseline_bytes: int | None = None
    #: Pages read from and written to the disk: the kernel's counters for the
    #: kernel sides; for zswap-rs its region's file I/O plus whatever the
    #: kernel swapped of that process meanwhile (`kernel`).
    pswpin: int | None = None
    pswpout: int | None = None
    #: The kernel's counters over the side's run (pswpin, pswpout, zswpin, zswpout, zswpwb).
    kernel: dict[str, int] = field(default_factory=dict)
    region_stats: dict[str, int] | None = None
    region_split: dict[str, int] | None = None
    #: KiB still used on the swap file once the side's processes were gone:
    #: pages other programs swapped there, whose I/O is then in the figures.
    swap_left_kib: int = 0
    #: The kernel zswap's pool at its largest during the side (debugfs
    #: pool_total_size, sampled), and v1's peak kernel-memory charge of the
    #: cgroup: a pool far above the latter was not charged to the limit.
    kernel_pool_peak_bytes: int | None = None
    cgroup_kmem_peak_bytes: int | None = None
    #: The cgroup limit the side ran in: the run's limit, plus, for a region
    #: side on cgroup v1, the kernel zswap side's pool peak at the same level
    #: (v1 does not charge the kernel's pool, so that side had it beside the
    #: limit; a region's pool is in its limit, and gets as much RAM in all).
    limit_bytes: int = 0
    #: Per phase, what the job counted around it (`_job.Counters`): its
    #: major and minor faults, the region's counters, /proc/vmstat's swap
    #: events and the cgroup's memory.stat.
    phase_counters: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def is_region(self) -> bool:
        return self.side in REGION_SIDES

    def phase_faults(self, phase: str) -> int | None:
        """The faults the job took in `phase`: what its seconds paid for.

        Kernel sides: the process's major faults (swap-ins, from zswap or
        disk). Region sides: the region's faults and write-protect faults,
        plus the process's major faults (the kernel swapping the job itself).
        """
        c = self.phase_counters.get(phase)
        if self.status != "ok" or c is None:
            return None
        n = int(c["majflt"])
        if self.is_region and c.get("region"):
            n += int(c["region"].get("faults", 0)) + int(c["region"].get("wp_faults", 0))
        return n

    def us_per_fault(self, phase: str) -> float | None:
        """Microseconds of `phase` per fault; None under MIN_FAULTS_FOR_COST faults."""
        n = self.phase_faults(phase)
        if n is None or n < MIN_FAULTS_FOR_COST or phase not in self.seconds:
            return None
        return self.seconds[phase] / n * 1e6

    @property
    def total_seconds(self) -> float | None:
        if self.status != "ok":
            return None
        return sum(self.seconds.get(p, 0.0) for p in _job.PHASES)

    @property
    def io_pages(self) -> int | None:
        if self.pswpin is None or self.pswpout is None:
            return None
        return self.pswpin + self.pswpout

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["total_seconds"] = self.total_seconds
        doc["io_pages"] = self.io_pages
        doc["faults"] = {p: self.phase_faults(p) for p in _job.PHASES}
        doc["us_per_fault"] = {p: self.us_per_fault(p) for p in _job.PHASES}
        return doc


@dataclass
class Versus:
    """A whole run: its settings, the machine it ran on, and every side's result."""

    config: Config
    compressor: str
    machine: dict[str, Any]
    source: dict[str, Any]
    results: list[SideResult]
    notes: list[str] = field(default_factory=list)

    def result(self, level: float, side: str) -> SideResult | None:
        for r in self.results:
            if r.level == level and r.side == side:
                return r
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "compressor": self.compressor,
            "machine": self.machine,
            "source": self.source,
            "notes": self.notes,
            "results": [r.to_json() for r in self.results],
        }


Progress = Callable[[str], None]


def _no_progress(text: str) -> None:
    pass


# --------------------------------------------------------------------------
# checks before anything changes


def choose_compressor(config: Config, zswap_rs: Any, notes: list[str]) -> str:
    """The compressor both sides use; VersusError if one of them cannot."""
    name = config.compressor or DEFAULT_COMPRESSOR
    why = _machine.kernel_compressor(name)
    if why is not None and config.compressor is None:
        fallback_why = _machine.kernel_compressor(FALLBACK_COMPRESSOR)
        if fallback_why is None:
            notes.append(
                f"the kernel's zswap has no {name} here ({why}): both sides use "
                f"{FALLBACK_COMPRESSOR}, the seed's compressor (--compressor to choose)"
            )
            name, why = FALLBACK_COMPRESSOR, None
    if why is not None:
        raise VersusError(
            f"the kernel's zswap cannot use {name} here: {why}. Both sides must use the same "
            "compressor: pick one of those with --compressor"
        )
    infos = zswap_rs.compressors()
    if name not in infos or not infos[name].available:
        reason = infos[name].reason if name in infos else "unknown to zswap-rs"
        raise VersusError(f"zswap-rs cannot use {name} here: {reason}")
    return name


def region_unavailable(zswap_rs: Any) -> str | None:
    """Why the zswap-rs side cannot run with this build, or None."""
    if getattr(zswap_rs, "Region", None) is None:
        version = getattr(zswap_rs, "__version__", "?")
        return (
            f"this build of zswap_rs ({version}) has no Region (SPEC.md, 'Regions'): "
            "the zswap-rs side is not measured, nothing is filled in for it"
        )
    return None


def check_swaps(allow_other: bool, notes: list[str]) -> None:
    others = _machine.active_swaps()
    if not others:
        return
    listed = ", ".join(f"{a.path} (priority {a.priority})" for a in others)
    if not allow_other:
        raise VersusError(
            f"other swap is active: {listed}. The kernel would spread the sides' pages over it "
            "and other programs' swap I/O would mix into the figures: swapoff it, or pass "
            "--allow-other-swap"
        )
    notes.append(
        f"other swap active ({listed}): this run's swap file has the highest priority, so the "
        "kernel fills it first, but /proc/vmstat counts the other devices' I/O too"
    )


def swap_dir(config: Config) -> Path:
    """Where both swap files go (the kernel's and the region's): one filesystem for both."""
    path = Path(config.swap_dir or tempfile.gettempdir())
    if not path.is_dir():
        raise VersusError(f"--swap-dir {path} is not a directory")
    fstype = _fstype(path)
    if fstype in ("tmpfs", "ramfs", "overlay", "nfs", "nfs4"):
        raise VersusError(
            f"{path} is on {fstype}, which cannot hold a swap file (or is RAM, which would make "
            "the disk's side meaningless): pass --swap-dir on a disk filesystem"
        )
    return path


def _fstype(path: Path) -> str:
    best, fstype = "", "?"
    real = os.path.realpath(path)
    for point, kind, _ in _machine._mounts():
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, fstype = point, kind
    return fstype


def check_disk(path: Path, need: int) -> None:
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    if free < need:
        raise VersusError(
            f"{path} has {free >> 20} MiB free; the run needs {need >> 20} MiB there (the swap "
            "file, the region's swap file, the pages): pass --swap-dir, or lower --limit-mb "
            "or --levels"
        )


def machine_facts(path: Path) -> dict[str, Any]:
    def read(p: str) -> str | None:
        with contextlib.suppress(OSError):
            return Path(p).read_text(encoding="ascii").strip()
        return None

    return {
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "load_average": list(os.getloadavg()),
        "thp": read("/sys/kernel/mm/transparent_hugepage/enabled"),
        "swappiness": read("/proc/sys/vm/swappiness"),
        "page_cluster": read("/proc/sys/vm/page-cluster"),
        "swap_dir": str(path),
        "swap_fstype": _fstype(path),
        "cgroup_version": _machine.find_memory_hierarchy()[0],
    }


# --------------------------------------------------------------------------
# pages


def write_pages(config: Config, dest: Path, max_pages: int, progress: Progress) -> dict[str, Any]:
    """Write the job's page file; return what it holds.

    The parent writes it, so that its page cache is charged to the parent's
    cgroup, not to a side's limit, and every side reads the same cached bytes.
    """
    written = 0
    with open(dest, "wb") as out:
        if config.pages_file is not None:
            try:
                pf = _procmem.PageFile(config.pages_file, PAGE_SIZE)
                source = pf.describe()
                for page in pf.pages(max_pages):
                    out.write(page)
                    written += 1
            except _procmem.SourceError as e:
                raise VersusError(str(e)) from None
        else:
            progress(f"building the built-in workload ({config.workload_mb} MiB)")
            try:
                with _workload.WorkloadProcess(config.workload_mb, config.seed) as wl:
                    with _procmem.ProcessMemory(wl.pid, PAGE_SIZE) as pm:
                        for page in pm.pages(max_pages):
                            out.write(page)
                            written += 1
            except (_workload.WorkloadError, _procmem.SourceError) as e:
                raise VersusError(str(e), EXIT_FAILURE) from None
            source = {"kind": "workload", "workload_mb": config.workload_mb, "seed": config.seed}
    if written == 0:
        raise VersusError("the page source holds no pages")
    return {**source, "pages_used": written}


# --------------------------------------------------------------------------
# one side


@dataclass
class _Context:
    config: Config
    compressor: str
    workdir: Path
    pages_path: Path
    source_pages: int
    params: _machine.ZswapParameters
    swap: _machine.SwapFile
    debugfs: _machine.Debugfs
    region_why: str | None
    progress: Progress
    #: Per level, the kernel zswap side's pool peak where cgroup v1 did not
    #: charge it to the limit (`side_limit`).
    uncharged_pool: dict[float, int] = field(default_factory=dict)


def _configure_zswap(ctx: _Context, side: str) -> None:
    """zswap off, or on with the run's compressor and the kernel's own defaults for the rest."""
    if side != "zswap":
        ctx.params.configure(enabled=False)
        return
    values = {
        "compressor": ctx.compressor,
        "max_pool_percent": str(KERNEL_MAX_POOL_PERCENT),
        "accept_threshold_percent": str(KERNEL_ACCEPT_THRESHOLD_PERCENT),
        "shrinker_enabled": "Y" if ctx.config.kernel_shrinker else "N",
    }
    ctx.params.configure(enabled=True, **{k: v for k, v in values.items() if k in ctx.params.saved})


def _spec(ctx: _Context, level: float, side: str, region_path: Path) -> dict[str, Any]:
    """What the job's process is told (`_job`): the array, the pages, the region if any."""
    config = ctx.config
    region = None
    if side in REGION_SIDES:
        region = {
            "faults": REGION_SIDES[side],
            "direct_io": config.region_direct_io,
            "compressor": ctx.compressor,
            "path": str(region_path),
            "pool_percent": config.pool_percent,
            "limit_bytes": side_limit(ctx, level, side),
        }
    return {
        "array_bytes": config.array_bytes(level),
        "source": str(ctx.pages_path),
        "source_pages": ctx.source_pages,
        "reads": config.reads,
        "writes": config.writes,
        "seed": config.seed,
        "region": region,
    }


def run_side(ctx: _Context, level: float, side: str) -> SideResult:
    """One side at one level: zswap set for it, a fresh cgroup, the job in a fresh process."""
    config = ctx.config
    result = SideResult(level, side, config.array_bytes(level), "ok")
    if side in REGION_SIDES and ctx.region_why is not None:
        result.status, result.reason = "unavailable", ctx.region_why
        return result
    _configure_zswap(ctx, side)
    region_path = ctx.workdir / f"region-{side}-{level:g}.swap"
    spec = _spec(ctx, level, side, region_path)
    name = f"zswap-rs-versus-{os.getpid()}-{side}-{level:g}"
    result.limit_bytes = side_limit(ctx, level, side)
    try:
        with _machine.MemoryCgroup(name, result.limit_bytes) as cg:
            spec["usage_file"] = str(cg.usage_file())
            pool = _PoolSampler(ctx.debugfs if side == "zswap" else None)
            before = _machine.read_vmstat()
            out = _run_child(
                spec,
                cg,
                config.timeout,
                lambda p: ctx.progress(f"{level:g}x {side}: {p}"),
                pool.sample,
            )
            after = _machine.read_vmstat()
            result.kernel_pool_peak_bytes = pool.peak
            charges_pool = cg.version != 1
            result.cgroup_peak_bytes = cg.peak_bytes()
            result.cgroup_kmem_peak_bytes = cg.kmem_peak_bytes()
            oom = cg.oom_kills()
            stat = cg.stat()
    finally:
        with contextlib.suppress(FileNotFoundError):
            region_path.unlink()
    result.kernel = {
        k: after.get(k, 0) - before.get(k, 0)
        for k in ("pswpin", "pswpout", "zswpin", "zswpout", "zswpwb")
    }
    # A cgroup that counts its own swap events (v2's memory.stat, from the
    # group's creation, which was this side's start) is more exact than the
    # machine's counters; v1 has none, and falls back to vmstat.
    for k in result.kernel:
        if k in stat:
            result.kernel[k] = stat[k]
    result.swap_left_kib = ctx.swap.used_kib()
    _fill_result(result, out, oom, config.timeout)
    if side == "zswap" and not charges_pool and result.status == "ok" and pool.peak:
        ctx.uncharged_pool[level] = pool.peak
    return result


def _fill_result(result: SideResult, out: dict[str, Any], oom: int, timeout: float) -> None:
    """The side's status and figures from what the job said (or how it ended)."""
    if out.get("timeout"):
        result.status, result.reason = "timeout", f"stopped after {timeout:g} s"
        return
    if oom:
        result.status = "oom"
        result.reason = (
            f"killed by the OOM killer of its cgroup ({oom} kill(s)) during the "
            f"{out.get('phase', 'start-up')}: the job did not fit in the limit"
        )
        if result.side == "zswap" and not result.kernel.get("zswpwb"):
            result.reason += " (the kernel's zswap wrote none of its pool back: zswpwb 0)"
        return
    if "error" in out:
        # A region refused here (userfaultfd off, a limit too small) is not
        # measured; anything else that stops the job is a failure.
        unmeasured = out["error"].startswith(("ConfigError", "LimitTooSmall"))
        result.status = "unavailable" if unmeasured else "failed"
        result.reason = out["error"]
        return
    doc = out["result"]
    result.seconds = doc["seconds"]
    result.cpu_seconds = doc["cpu_seconds"]
    result.peak_rss_bytes = doc["peak_rss_bytes"]
    result.baseline_bytes = doc["baseline_bytes"]
    result.region_stats = doc["region_stats"]
    result.region_split = doc["region_split"]
    result.phase_counters = doc.get("phase_counters", {})
    result.pswpin = result.kernel["pswpin"]
    result.pswpout = result.kernel["pswpout"]
    if result.region_stats is not None:
        result.pswpin += result.region_stats.get("pswpin", 0)
        result.pswpout += result.region_stats.get("pswpout", 0)
    if doc["failures"]:
        result.status = "failed"
        result.reason = "wrong bytes: " + "; ".join(doc["failures"])


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONHASHSEED"] = "0"
    env.pop("PYTHONMALLOC", None)
    # One thread in every numeric library: their per-CPU buffers would be
    # charged to the limit, differently on each machine.
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = "1"
    return env


class _PoolSampler:
    """The largest kernel zswap pool seen while a side runs (None without debugfs)."""

    def __init__(self, debugfs: _machine.Debugfs | None) -> None:
        self.debugfs = debugfs
        self.peak: int | None = None

    def sample(self) -> None:
        if self.debugfs is None:
            return
        now = self.debugfs.zswap_pool_bytes()
        if now is not None:
            self.peak = max(self.peak or 0, now)


def side_limit(ctx: _Context, level: float, side: str) -> int:
    """The cgroup limit of `side` at `level`: the run's, and for a region the kernel's pool beside.

    cgroup v1 does not charge the kernel's zswap pool to the group (v2 does),
    and nothing can make it: lowering the limit by the pool only makes the
    kernel reclaim harder, since v1 gives its zswap shrinker nothing to count
    (measured here: the pool stayed at 140 MiB beside a limit lowered to
    32 MiB). So where the kernel zswap side at this level ran with its pool
    outside the limit, a region side, whose pool is inside its limit, gets
    the limit plus that pool's peak: every zswap side has the same RAM.
    """
    extra = ctx.uncharged_pool.get(level, 0) if side in REGION_SIDES else 0
    return ctx.config.limit_bytes + (extra + PAGE_SIZE - 1) // PAGE_SIZE * PAGE_SIZE


def _run_child(
    spec: dict[str, Any],
    cg: _machine.MemoryCgroup,
    timeout: float,
    progress: Progress,
    tick: Callable[[], None],
) -> dict[str, Any]:
    """Run the job in `cg`; {"result": ...}, {"error": ...} or {"timeout": True}.

    A child that died of SIGINT means Ctrl-C (or someone's kill -INT):
    KeyboardInterrupt is raised here, so that the run stops and restores.
    """
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, _job.__file__, json.dumps(spec)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            env=_child_env(),
            preexec_fn=cg.preexec,
        )
        try:
            lines = _read_lines(proc, time.monotonic() + timeout, progress, tick)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()
        if proc.returncode == -signal.SIGINT:
            raise KeyboardInterrupt
        if lines is None:
            return {"timeout": True}
        phase = next((ln[6:] for ln in reversed(lines) if ln.startswith("phase ")), None)
        last = {} if phase is None else {"phase": phase}
        for line in reversed(lines):
            if line.startswith("result "):
                return {"result": json.loads(line[len("result ") :])}
            if line.startswith("error "):
                return {"error": line[len("error ") :], **last}
        err.seek(0)
        tail = err.read().decode(errors="replace").strip().splitlines()[-3:]
        how = (
            f"killed by signal {-proc.returncode}"
            if proc.returncode < 0
            else f"exited with code {proc.returncode}"
        )
        return {"error": f"the job {how}" + (": " + " / ".join(tail) if tail else ""), **last}


def _read_lines(
    proc: subprocess.Popen[bytes], deadline: float, progress: Progress, tick: Callable[[], None]
) -> list[str] | None:
    """The child's stdout lines until it closes it; None if the deadline passes first.

    `tick` runs at least every TICK_SECONDS meanwhile (the pool sampler).
    """
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    lines: list[str] = []
    pending = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        tick()
        ready, _, _ = select.select([fd], [], [], min(left, TICK_SECONDS))
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            return lines
        pending += chunk
        *done, pending = pending.split(b"\n")
        for raw in done:
            line = raw.decode(errors="replace")
            lines.append(line)
            if line.startswith("phase "):
                progress(line[len("phase ") :])


# --------------------------------------------------------------------------
# the run


def run(
    config: Config,
    zswap_rs: Any,
    *,
    progress: Progress = _no_progress,
    euid: Callable[[], int] = os.geteuid,
) -> Versus:
    """Run every level and side of `config`; the machine is as it was when this returns or raises.

    Raises VersusError for what stops a run before or while it runs (exit
    code in `.code`), KeyboardInterrupt on Ctrl-C, `_machine.Terminated` on
    SIGTERM; every change is undone before any of them leaves.
    """
    config.check()
    try:
        _machine.require_root(euid)
    except MachineError as e:
        raise VersusError(str(e)) from None
    if not _has_numpy():
        raise VersusError("zswap-rs versus needs NumPy: pip install numpy")
    notes: list[str] = []
    compressor = choose_compressor(config, zswap_rs, notes)
    wants_region = any(s in REGION_SIDES for s in config.sides)
    region_why = region_unavailable(zswap_rs) if wants_region else None
    where = swap_dir(config)
    heaviest = max(config.array_bytes(lv) for lv in config.levels)
    swap_bytes = heaviest + config.limit_bytes + SWAP_SLACK_BYTES
    try:
        with _machine.signals_raise(), contextlib.ExitStack() as stack:
            # The lock before the swap check: another run's swap file is not
            # "other swap", it is a run to wait for.
            stack.enter_context(_machine.RunLock(wait=LOCK_WAIT_SECONDS, note=progress))
            for line in _machine.recover_leftovers():
                notes.append(f"a killed run's leftovers: {line}")
                progress(line)
            check_swaps(config.allow_other_swap, notes)
            check_disk(where, swap_bytes + 2 * heaviest)
            facts = machine_facts(where)
            workdir = Path(tempfile.mkdtemp(prefix=f"zswap-rs-versus-{os.getpid()}-", dir=where))
            stack.callback(_machine.shielded_call, shutil.rmtree, workdir, True)
            pages_path = workdir / "pages.bin"
            source = write_pages(config, pages_path, heaviest // PAGE_SIZE, progress)
            progress("turning on the swap file")
            swap = stack.enter_context(_machine.SwapFile(workdir / "kernel.swap", swap_bytes))
            debugfs = stack.enter_context(_machine.Debugfs(journal=_machine.DEBUGFS_JOURNAL))
            params = stack.enter_context(
                _machine.ZswapParameters(journal=_machine.PARAMETERS_JOURNAL)
            )
            facts["zswap_parameters_before"] = dict(params.saved)
            ctx = _Context(
                config,
                compressor,
                workdir,
                pages_path,
                source["pages_used"],
                params,
                swap,
                debugfs,
                region_why,
                progress,
            )
            # The kernel's sides first at each level: a region side's limit
            # may depend on the kernel zswap side's pool (`side_limit`).
            order = sorted(config.sides, key=SIDES.index)
            results = [run_side(ctx, level, side) for level in config.levels for side in order]
    except MachineError as e:
        raise VersusError(str(e), EXIT_FAILURE) from None
    facts["swap_file_bytes"] = swap_bytes
    return Versus(config, compressor, facts, source, results, notes)


def _has_numpy() -> bool:
    import importlib.util

    return importlib.util.find_spec("numpy") is not None
