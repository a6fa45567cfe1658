"""The `zswap-rs` command line: what would zswap do with this memory?

`zswap-rs profile` takes real pages (a live process's private anonymous
memory, a raw page dump, or by default the heap of a workload it starts
itself), runs them through a fresh `zswap_rs.Zswap` per compressor, loads
every page back and checks it, and reports what zswap makes of them:
same-filled share, compression ratio, rejects, pool bytes against compressed
bytes (the allocator's overhead), and the cost per page to store and to load.
`zswap-rs simulate` replays the 2013 kernel-build experiment: a make -jN-like
workload on real pages through a RAM budget, with and without zswap in front
of a real swap file, and tabulates swap I/O, runtime and CPU per N (the model
is in `_simulate`). `zswap-rs info` says which compressors this machine has
and why not the rest.

Why real pages: compression ratio and the same-filled share decide whether
zswap pays off, and both depend wholly on the data. Random or synthetic pages
say nothing; a process's heap, read at its peak, says what its swap would be.

The timings are wall-clock nanoseconds per page over whole loops of Python
calls, so they include the per-call cost of the binding, as any Python user
of the library pays it; the Rust benchmarks (`cargo bench`, on a dump made
with `--save-pages`) measure the core alone.

Exit codes: 0 ok; 2 bad usage or input (argparse's own code: a bad option,
a missing PID, a page dump of a bad length); 1 an internal failure, above all
a page that came back different from what was stored. Expected errors are
one line on stderr, `zswap-rs: error: ...`, with no traceback.

Only the standard library is imported here; matplotlib is imported when
`--plot` asks for it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from types import ModuleType
from typing import IO, Any, TextIO

from . import _procmem, _simulate, _workload
from ._simulate import fmt_cell

__all__ = ["CompressorResult", "main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
#: Exit code after Ctrl-C, as a shell reports a process ended by SIGINT.
EXIT_INTERRUPTED = 130

#: The page size the profile stores with: the kernel's zswap page on x86-64
#: and most arm64 systems, and what the Rust benchmarks read.
PAGE_SIZE = 4096
#: Pool headroom beyond the pages themselves: the pool must never hit its
#: limit in a profile (it would reject pages for want of room and mix that
#: into the compressor's own rejects), and it grows only as it is used.
POOL_HEADROOM = 64 << 20
#: How often the store and load loops stop the clock to move the progress
#: bar: 1/STEPS of the pages at a time (a clock read per 1% of the pages
#: costs nothing measurable).
STEPS = 100
#: Mismatched pages listed by offset in a report (all are counted).
MISMATCHES_LISTED = 10


class CliError(Exception):
    """An error reported as one line on stderr, with its exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------
# Progress bar


def _isatty(stream: IO[Any]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal.

    `update()` redraws at most every `INTERVAL` seconds, so it may be called
    per page; `close()` clears the line so that the report is left alone.
    """

    WIDTH = 30
    INTERVAL = 0.1

    def __init__(
        self, label: str, total: int, stream: TextIO | None = None, unit: str = "pages"
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = _isatty(self.stream)
        self._last_draw = 0.0
        self._drawn = 0

    def update(self, done: int, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < self.INTERVAL:
            return
        self._last_draw = now
        frac = min(done / self.total, 1.0) if self.total > 0 else 1.0
        filled = int(frac * self.WIDTH)
        line = (
            f"\r{self.label} [{'#' * filled}{'.' * (self.WIDTH - filled)}] "
            f"{frac * 100:3.0f}% {done}/{self.total} {self.unit}"
        )
        self.stream.write(line)
        self.stream.flush()
        self._drawn = len(line) - 1

    def close(self) -> None:
        if self.enabled and self._drawn:
            self.stream.write("\r" + " " * self._drawn + "\r")
            self.stream.flush()
            self._drawn = 0

    def __enter__(self) -> Progress:
        self.update(0, force=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _warn(message: str) -> None:
    print(f"zswap-rs: warning: {message}", file=sys.stderr)


def _note(message: str) -> None:
    """Informational lines: for a person at a terminal only."""
    if _isatty(sys.stderr):
        print(f"zswap-rs: {message}", file=sys.stderr)


# --------------------------------------------------------------------------
# The compiled module, imported when a command needs it


def _zswap() -> ModuleType:
    try:
        import zswap_rs
    except ImportError as e:  # pragma: no cover - an installation problem
        raise CliError(
            f"cannot import zswap_rs ({e}); reinstall it (pip install zswap-rs, or "
            "maturin develop in a checkout)",
            EXIT_FAILURE,
        ) from None
    return zswap_rs


def _version() -> str:
    try:
        return str(_zswap().__version__)
    except CliError:  # pragma: no cover - an installation problem
        return "unknown"


# --------------------------------------------------------------------------
# One compressor's run and its figures


def _outcome_name(outcome: object) -> str:
    """ "STORED", "SAME_FILLED", ... for a StoreOutcome (a str enum) or its value."""
    name = getattr(outcome, "name", None)
    if isinstance(name, str):
        return name
    return str.__str__(outcome) if isinstance(outcome, str) else str(outcome)


def _pct(part: float, whole: float) -> float | None:
    return 100.0 * part / whole if whole else None


@dataclass
class CompressorResult:
    """What one compressor's zswap made of the pages, with its raw stats."""

    compressor: str
    pages: int
    page_size: int
    #: Store outcomes by name: STORED, SAME_FILLED, SWAPPED, REJECTED.
    outcomes: dict[str, int]
    store_ns: int
    load_ns: int
    loaded_pages: int
    stats: dict[str, int]
    #: Offsets whose page came back different: a bug, never an outcome.
    mismatches: list[int] = field(default_factory=list)
    mismatch_count: int = 0

    @property
    def compressed_pages(self) -> int:
        """Pages compressed into the pool (not same-filled, not rejected)."""
        return self.outcomes.get("STORED", 0)

    @property
    def same_filled_pct(self) -> float | None:
        return _pct(self.stats.get("same_filled_pages", 0), self.pages)

    @property
    def compressed_bytes(self) -> int:
        return self.stats.get("compr_data_size", 0)

    @property
    def pool_bytes(self) -> int:
        return self.stats.get("mem_used_total", 0)

    @property
    def ratio(self) -> float | None:
        """Original over compressed size, over the compressed pages only.

        That is (stored_pages - same_filled_pages) * page_size / compr_data_size.
        The stats' `orig_data_size` counts the same-filled pages too (as zram's
        does), and they take no pool space: dividing it by the compressed bytes
        would credit the compressor with what same-filled detection saved.
        """
        if not self.compressed_bytes:
            return None
        return self.compressed_pages * self.page_size / self.compressed_bytes

    @property
    def rejected_pages(self) -> int:
        return sum(v for k, v in self.stats.items() if k.startswith("reject_"))

    @property
    def rejected_pct(self) -> float | None:
        return _pct(self.rejected_pages, self.pages)

    @property
    def overhead_pct(self) -> float | None:
        """Pool memory beyond the compressed bytes it holds (the allocator's cost)."""
        if not self.compressed_bytes:
            return None
        return 100.0 * (self.pool_bytes / self.compressed_bytes - 1.0)

    @property
    def store_ns_per_page(self) -> float | None:
        return self.store_ns / self.pages if self.pages else None

    @property
    def load_ns_per_page(self) -> float | None:
        return self.load_ns / self.loaded_pages if self.loaded_pages else None

    def to_json(self) -> dict[str, Any]:
        return {
            "compressor": self.compressor,
            "pages": self.pages,
            "compressed_pages": self.compressed_pages,
            "same_filled_pages": self.stats.get("same_filled_pages", 0),
            "rejected_pages": self.rejected_pages,
            "same_filled_pct": self.same_filled_pct,
            "ratio": self.ratio,
            "rejected_pct": self.rejected_pct,
            "pool_bytes": self.pool_bytes,
            "compressed_bytes": self.compressed_bytes,
            "overhead_pct": self.overhead_pct,
            "store_ns_per_page": self.store_ns_per_page,
            "load_ns_per_page": self.load_ns_per_page,
            "loaded_pages": self.loaded_pages,
            "outcomes": dict(self.outcomes),
            "mismatched_pages": self.mismatch_count,
            "mismatched_offsets": self.mismatches,
            "stats": dict(self.stats),
        }


def _chunks(n: int) -> Iterator[tuple[int, int]]:
    step = max(1, -(-n // STEPS))
    for lo in range(0, n, step):
        yield lo, min(n, lo + step)


def run_compressor(zswap_rs: ModuleType, name: str, pages: Sequence[bytes]) -> CompressorResult:
    """Store every page with compressor `name`, then load each back and check it."""
    n = len(pages)
    ps = PAGE_SIZE
    stored_outcomes: list[Any] = []
    store_ns = 0
    load_ns = 0
    mismatches: list[int] = []
    mismatch_count = 0
    with zswap_rs.Zswap(compressor=name, max_pool_bytes=n * ps + POOL_HEADROOM, page_size=ps) as z:
        t = z.swapon(None, pages=n)
        store = z.store
        with Progress(f"{name} store", n) as bar:
            for lo, hi in _chunks(n):
                batch = pages[lo:hi]
                t0 = time.perf_counter_ns()
                stored_outcomes.extend(map(store, repeat(t, hi - lo), range(lo, hi), batch))
                store_ns += time.perf_counter_ns() - t0
                bar.update(hi)
        names = [_outcome_name(o) for o in stored_outcomes]
        offsets = [i for i, o in enumerate(names) if o in ("STORED", "SAME_FILLED")]
        load = z.load
        with Progress(f"{name} load", len(offsets)) as bar:
            for lo, hi in _chunks(len(offsets)):
                batch_offsets = offsets[lo:hi]
                t0 = time.perf_counter_ns()
                loaded = list(map(load, repeat(t, hi - lo), batch_offsets))
                load_ns += time.perf_counter_ns() - t0
                # Checked and dropped chunk by chunk: keeping every page loaded
                # would have each load fault in fresh memory for its result,
                # and time the kernel's page faults instead of zswap.
                for offset, data in zip(batch_offsets, loaded, strict=True):
                    if data != pages[offset]:
                        mismatch_count += 1
                        if len(mismatches) < MISMATCHES_LISTED:
                            mismatches.append(offset)
                del loaded
                bar.update(hi)
        stats = {k: int(v) for k, v in z.stats().items()}
    return CompressorResult(
        compressor=name,
        pages=n,
        page_size=ps,
        outcomes=dict(Counter(names)),
        store_ns=store_ns,
        load_ns=load_ns,
        loaded_pages=len(offsets),
        stats=stats,
        mismatches=mismatches,
        mismatch_count=mismatch_count,
    )


# --------------------------------------------------------------------------
# Formatting


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


TABLE_COLUMNS = (
    "compressor",
    "pages",
    "same-filled",
    "ratio",
    "rejected",
    "pool",
    "compressed",
    "overhead",
    "store ns/page",
    "load ns/page",
)


def table_row(r: CompressorResult) -> list[str]:
    return [
        r.compressor,
        str(r.pages),
        fmt_cell(r.same_filled_pct, ".1f", "%"),
        fmt_cell(r.ratio, ".2f", "x"),
        fmt_cell(r.rejected_pct, ".1f", "%"),
        _human_bytes(r.pool_bytes),
        _human_bytes(r.compressed_bytes),
        fmt_cell(r.overhead_pct, ".1f", "%"),
        fmt_cell(r.store_ns_per_page, ".0f"),
        fmt_cell(r.load_ns_per_page, ".0f"),
    ]


def format_table(header: Sequence[str], rows: Iterable[Sequence[str]], left: int = 1) -> str:
    """Align columns: the first `left` to the left, the rest (numbers) to the right."""
    rows = [list(r) for r in rows]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        out = [
            str(c).ljust(w) if i < left else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(out).rstrip()

    return "\n".join([line(header), *(line(r) for r in rows)])


def describe_source(source: dict[str, Any]) -> str:
    kind = source["kind"]
    if kind == "workload":
        return (
            f"built-in workload ({source['workload_mb']} MiB Python heap, seed "
            f"{source['seed']}, PID {source['pid']})"
        )
    if kind == "pid":
        command = source.get("command")
        return f"PID {source['pid']}" + (f" ({command})" if command else "")
    return f"page dump {source['path']}"


def _process_command(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
            return f.read().strip() or None
    except OSError:
        return None


# --------------------------------------------------------------------------
# profile


def _check_compressors(zswap_rs: ModuleType, wanted: list[str] | None) -> list[str]:
    """The compressors to run: those named (checked), or all available ones."""
    infos = zswap_rs.compressors()
    if not wanted:
        names = [name for name, info in infos.items() if info.available]
        if not names:
            raise CliError("no compressor is available on this machine", EXIT_FAILURE)
        return names
    names = []
    for item in wanted:
        for name in item.split(","):
            name = name.strip()
            if not name or name in names:
                continue
            if name not in infos:
                raise CliError(f"unknown compressor {name!r}; known: {', '.join(infos)}")
            if not infos[name].available:
                raise CliError(f"compressor {name!r} is not available here: {infos[name].reason}")
            names.append(name)
    return names


def _read_pages(
    source: _procmem.ProcessMemory | _procmem.PageFile, max_pages: int | None, label: str
) -> list[bytes]:
    total = source.estimate if max_pages is None else min(max_pages, source.estimate)
    pages: list[bytes] = []
    with Progress(label, total) as bar:
        for page in source.pages(max_pages):
            pages.append(page)
            bar.update(len(pages))
    return pages


def _collect(args: argparse.Namespace) -> tuple[dict[str, Any], list[bytes], bool]:
    """Read the pages from the source the arguments name; end any workload."""
    if args.pages is not None:
        pf = _procmem.PageFile(args.pages, PAGE_SIZE)
        return pf.describe(), _read_pages(pf, args.max_pages, "reading"), False
    if args.pid is not None:
        with _procmem.ProcessMemory(args.pid, PAGE_SIZE) as pm:
            source = {**pm.describe(), "command": _process_command(args.pid)}
            pages = _read_pages(pm, args.max_pages, f"reading PID {args.pid}")
            if pm.exited:
                _warn(
                    f"PID {args.pid} exited while it was being read; using the "
                    f"{len(pages)} pages read before it did"
                )
            return source, pages, pm.exited
    _note(f"starting the built-in workload ({args.workload_mb} MiB)...")
    try:
        with _workload.WorkloadProcess(args.workload_mb, args.seed) as wl:
            _note(f"workload ready in {wl.build_seconds:.1f} s, PID {wl.pid}")
            with _procmem.ProcessMemory(wl.pid, PAGE_SIZE) as pm:
                pages = _read_pages(pm, args.max_pages, "reading workload")
                if pm.exited:
                    raise CliError("the built-in workload exited while it was read", EXIT_FAILURE)
            source = {
                "kind": "workload",
                "pid": wl.pid,
                "workload_mb": args.workload_mb,
                "seed": args.seed,
            }
    except _workload.WorkloadError as e:
        raise CliError(str(e), EXIT_FAILURE) from None
    return source, pages, False


def _plot(results: Sequence[CompressorResult], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r.compressor for r in results]
    x = range(len(names))
    fig, (ax_ratio, ax_time) = plt.subplots(1, 2, figsize=(max(8.0, 2.2 * len(names) + 4), 4.5))
    ratios = [r.ratio or 0.0 for r in results]
    bars = ax_ratio.bar(x, ratios, color="tab:blue")
    ax_ratio.bar_label(bars, labels=[f"{v:.2f}x" for v in ratios], padding=2)
    ax_ratio.set_title("compression ratio (compressed pages)")
    ax_ratio.set_ylabel("original / compressed")
    ax_ratio.set_xticks(list(x), names)
    ax_ratio.margins(y=0.15)
    width = 0.4
    store = [r.store_ns_per_page or 0.0 for r in results]
    load = [r.load_ns_per_page or 0.0 for r in results]
    b1 = ax_time.bar([i - width / 2 for i in x], store, width, label="store", color="tab:orange")
    b2 = ax_time.bar([i + width / 2 for i in x], load, width, label="load", color="tab:green")
    ax_time.bar_label(b1, labels=[f"{v:.0f}" for v in store], padding=2, fontsize=8)
    ax_time.bar_label(b2, labels=[f"{v:.0f}" for v in load], padding=2, fontsize=8)
    ax_time.set_title("time per page (from Python)")
    ax_time.set_ylabel("ns / page")
    ax_time.set_xticks(list(x), names)
    ax_time.legend()
    ax_time.margins(y=0.15)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def cmd_profile(args: argparse.Namespace) -> int:
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise CliError("--plot needs matplotlib: pip install matplotlib")
    zswap_rs = _zswap()
    names = _check_compressors(zswap_rs, args.compressor)

    source, pages, exited = _collect(args)
    if not pages:
        what = describe_source(source)
        if exited:
            raise CliError(f"{what} exited before any of its pages could be read")
        if source["kind"] == "pages":
            raise CliError(f"{what} holds no pages")
        raise CliError(f"{what} has no resident private anonymous memory to profile")
    _note(f"read {len(pages)} pages ({_human_bytes(len(pages) * PAGE_SIZE)})")
    if args.save_pages:
        try:
            _procmem.write_page_file(args.save_pages, pages)
        except OSError as e:
            raise CliError(f"cannot write {args.save_pages}: {e.strerror}") from None
        _note(f"saved {len(pages)} pages to {args.save_pages}")

    results: list[CompressorResult] = []
    for name in names:
        try:
            results.append(run_compressor(zswap_rs, name, pages))
        except (zswap_rs.ZswapError, ValueError, KeyError, OSError) as e:
            raise CliError(
                f"BUG: profiling with {name} failed: {type(e).__name__}: {e}", EXIT_FAILURE
            ) from e

    if args.json:
        doc = {
            "zswap_rs_version": _version(),
            "source": source,
            "source_exited_early": exited,
            "page_size": PAGE_SIZE,
            "pages": len(pages),
            "compressors": [r.to_json() for r in results],
        }
        print(json.dumps(doc, indent=2))
    else:
        print(
            f"{describe_source(source)}: {len(pages)} pages of {PAGE_SIZE} bytes "
            f"({_human_bytes(len(pages) * PAGE_SIZE)})"
        )
        print(format_table(TABLE_COLUMNS, (table_row(r) for r in results)))
    sys.stdout.flush()

    if args.plot:
        title = f"{describe_source(source)}, {len(pages)} pages"
        try:
            _plot(results, args.plot, title)
        except OSError as e:
            raise CliError(f"cannot write {args.plot}: {e.strerror}") from None
        _note(f"wrote {args.plot}")

    bad = [r for r in results if r.mismatch_count]
    for r in bad:
        listed = ", ".join(map(str, r.mismatches))
        more = " ..." if r.mismatch_count > len(r.mismatches) else ""
        print(
            f"zswap-rs: error: BUG: {r.compressor}: {r.mismatch_count} of {r.loaded_pages} "
            f"pages loaded back differ from what was stored (offsets {listed}{more}). "
            "This is a bug in zswap-rs: please report it, with the pages "
            "(--save-pages FILE) if you can share them.",
            file=sys.stderr,
        )
    return EXIT_FAILURE if bad else EXIT_OK


# --------------------------------------------------------------------------
# simulate


def cmd_simulate(args: argparse.Namespace) -> int:
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise CliError("--plot needs matplotlib: pip install matplotlib")
    zswap_rs = _zswap()
    compressor = _check_compressors(zswap_rs, [args.compressor])[0]
    config = _simulate.Config(
        jobs=args.jobs,
        ram_mb=args.ram_mb,
        files=args.files,
        compressor=compressor,
        max_pool_percent=args.max_pool_percent,
        disk_mbps=args.disk_mbps,
        seed=args.seed,
        page_size=PAGE_SIZE,
        swap_dir=args.swap_dir,
    )
    try:
        config.check()
        source, pages, _ = _collect(args)
        if not pages:
            raise CliError(f"{describe_source(source)} holds no pages")
        _note(f"read {len(pages)} pages ({_human_bytes(len(pages) * PAGE_SIZE)})")
        with contextlib.ExitStack() as stack:
            log = None
            if args.budget_log:
                try:
                    log = stack.enter_context(open(args.budget_log, "w", encoding="utf-8"))
                except OSError as e:
                    raise CliError(f"cannot write {args.budget_log}: {e.strerror}") from None
            sim = _simulate.simulate(
                zswap_rs,
                config,
                pages,
                source,
                progress=lambda label, total: Progress(label, total, unit="steps"),
                log=log,
            )
    except _simulate.SimulateError as e:
        raise CliError(str(e), e.code) from None
    except (zswap_rs.ZswapError, ValueError, KeyError) as e:
        raise CliError(f"BUG: simulate failed: {type(e).__name__}: {e}", EXIT_FAILURE) from e

    if args.json:
        print(json.dumps({"zswap_rs_version": _version(), **sim.to_json()}, indent=2))
    else:
        print(
            f"{describe_source(source)}: {len(pages)} pages of {PAGE_SIZE} bytes "
            f"({_human_bytes(len(pages) * PAGE_SIZE)})"
        )
        print(_simulate.describe(sim))
        print()
        print("swap I/O (pages)")
        print(format_table(_simulate.IO_COLUMNS, _simulate.io_table(sim), left=0))
        print()
        print("time (seconds)")
        print(format_table(_simulate.TIME_COLUMNS, _simulate.time_table(sim), left=0))
    sys.stdout.flush()

    if args.plot:
        c = sim.config
        title = (
            f"{c.ram_mb} MiB budget, {c.compressor}, pool {c.max_pool_percent}%, "
            f"disk {f'{c.disk_mbps:g} MB/s' if c.disk_mbps else 'unpaced'}"
        )
        try:
            _simulate.plot(sim, args.plot, title)
        except OSError as e:
            raise CliError(f"cannot write {args.plot}: {e.strerror}") from None
        _note(f"wrote {args.plot}")

    if sim.mismatched_pages:
        print(
            f"zswap-rs: error: BUG: {sim.mismatched_pages} pages swapped in differ from "
            "what was swapped out (CRC32). This is a bug in zswap-rs: please report it.",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    return EXIT_OK


# --------------------------------------------------------------------------
# info


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "cpu", "Processor"):
                    return value.strip()
    except OSError:
        pass
    return None


def cmd_info(args: argparse.Namespace) -> int:
    zswap_rs = _zswap()
    infos = zswap_rs.compressors()
    system_ps = _procmem.system_page_size()
    compressors = {
        name: {
            "available": bool(info.available),
            "hardware": bool(info.hardware),
            "reason": info.reason or None,
        }
        for name, info in infos.items()
    }
    hardware = [n for n, c in compressors.items() if c["hardware"] and c["available"]]
    if args.json:
        doc = {
            "version": _version(),
            "page_size": PAGE_SIZE,
            "system_page_size": system_ps,
            "machine": platform.machine(),
            "cpu": _cpu_model(),
            "compressors": compressors,
            "hardware_found": hardware,
        }
        print(json.dumps(doc, indent=2))
        return EXIT_OK
    print(f"zswap-rs {_version()}")
    print(f"page size: {PAGE_SIZE} bytes (zswap-rs default); {system_ps} bytes (this kernel)")
    cpu = _cpu_model()
    print(f"machine: {platform.machine()}" + (f", {cpu}" if cpu else ""))
    print("compressors:")
    rows = [
        [
            name,
            "yes" if c["available"] else "no",
            "yes" if c["hardware"] else "no",
            "" if c["available"] else (c["reason"] or ""),
        ]
        for name, c in compressors.items()
    ]
    header = ["name", "available", "hardware", "why not"]
    table = format_table(header, rows, left=len(header))
    table = "\n".join("  " + line for line in table.splitlines())
    print(table)
    print("hardware found: " + (", ".join(hardware) if hardware else "none"))
    return EXIT_OK


# --------------------------------------------------------------------------
# Arguments


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return value


def _job_list(text: str) -> tuple[int, ...]:
    """ "8,12,16" -> (8, 12, 16): job counts, sorted, each once."""
    jobs = set()
    for item in text.split(","):
        if not item.strip():
            raise argparse.ArgumentTypeError(f"expected job counts such as 2,4,8: {text!r}")
        jobs.add(_positive_int(item.strip()))
    return tuple(sorted(jobs))


def _megabytes_per_second(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value >= 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be 0 (unpaced) or more: {text}")
    return value


def _percent(text: str) -> int:
    value = _positive_int(text)
    if value > 90:
        raise argparse.ArgumentTypeError(
            f"must be 1 to 90 (some of the budget must stay for resident pages): {text}"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zswap-rs",
        description="zswap in user space: profile what zswap would do with real memory, "
        "and simulate what it saves under memory pressure.",
    )
    parser.add_argument("--version", action="version", version=f"zswap-rs {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "profile",
        help="run a process's memory (or a page dump) through zswap, per compressor",
        description=(
            "Read real pages and report, per compressor, what zswap does with them: "
            "same-filled share, compression ratio over the compressed pages, rejected "
            "share, pool bytes against compressed bytes (allocator overhead), and ns per "
            "page to store and to load (from Python). Every page is loaded back and "
            "checked. With neither --pid nor --pages, profiles the heap of a Python "
            "workload that it starts and ends itself."
        ),
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--pid", type=_positive_int, help="read this live process's private anonymous memory"
    )
    src.add_argument("--pages", metavar="FILE", help="read a raw page dump (4096-byte pages)")
    p.add_argument("--json", action="store_true", help="print a JSON document, not a table")
    p.add_argument(
        "--save-pages", metavar="FILE", help="also write the pages read to FILE, as a raw dump"
    )
    p.add_argument(
        "--plot", metavar="FILE.png", help="draw ratio and ns/page per compressor (matplotlib)"
    )
    p.add_argument(
        "--compressor",
        metavar="NAME",
        nargs="+",
        action="extend",
        help="compressors to run (default: every available one); repeatable",
    )
    p.add_argument("--max-pages", type=_positive_int, metavar="N", help="read at most N pages")
    p.add_argument(
        "--workload-mb",
        type=_positive_int,
        default=150,
        metavar="MB",
        help="size of the built-in workload's heap (default 150)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="the built-in workload's random seed (default 0)"
    )
    p.set_defaults(func=cmd_profile)

    defaults = _simulate.Config()
    s = sub.add_parser(
        "simulate",
        help="the 2013 kernel-build experiment: swap I/O and runtime with and without zswap",
        description=(
            "Run a make -jN-like workload on real pages through a RAM budget, for each N "
            "twice on a fresh swap file: once with every swap-out going to the file (base), "
            "once with zswap in front of it. The pool's memory counts against the budget. "
            "Prints pswpin, pswpout and their total, runtime and CPU per N. Pages come from "
            "the built-in workload (as in profile) or a page dump."
        ),
    )
    s.add_argument("--pages", metavar="FILE", help="take the pages from a raw page dump")
    s.add_argument(
        "--jobs",
        type=_job_list,
        default=defaults.jobs,
        metavar="N,N,...",
        help="parallelism levels, one row each (default " + ",".join(map(str, defaults.jobs)) + ")",
    )
    s.add_argument(
        "--ram-mb",
        type=_positive_int,
        default=defaults.ram_mb,
        metavar="MB",
        help=f"the RAM budget: resident pages plus the pool (default {defaults.ram_mb})",
    )
    s.add_argument(
        "--compressor",
        default=defaults.compressor,
        metavar="NAME",
        help=f"zswap's compressor (default {defaults.compressor})",
    )
    s.add_argument(
        "--max-pool-percent",
        type=_percent,
        default=defaults.max_pool_percent,
        metavar="PCT",
        help=f"pool limit, in percent of the budget (default {defaults.max_pool_percent})",
    )
    s.add_argument(
        "--disk-mbps",
        type=_megabytes_per_second,
        default=defaults.disk_mbps,
        metavar="MBPS",
        help=f"pace the swap file to this speed, MB/s; 0: unpaced (default {defaults.disk_mbps:g}, "
        "the seed's hard disk)",
    )
    s.add_argument(
        "--swap-dir",
        metavar="DIR",
        help="directory for the swap files (default: a temporary directory under /var/tmp; "
        "a tmpfs refuses O_DIRECT)",
    )
    s.add_argument(
        "--files",
        type=_positive_int,
        default=defaults.files,
        metavar="N",
        help=f"compilation units in the build, the same at every N (default {defaults.files})",
    )
    s.add_argument(
        "--seed",
        type=int,
        default=defaults.seed,
        help="seed of the build and of the built-in workload (default 0)",
    )
    s.add_argument(
        "--workload-mb",
        type=_positive_int,
        default=150,
        metavar="MB",
        help="size of the built-in workload's heap (default 150)",
    )
    s.add_argument("--json", action="store_true", help="print a JSON document, not tables")
    s.add_argument(
        "--plot", metavar="FILE.png", help="draw swap I/O and runtime against N (matplotlib)"
    )
    s.add_argument(
        "--budget-log",
        metavar="FILE",
        help="debug: write resident and pool pages after every fault to FILE (CSV)",
    )
    s.set_defaults(func=cmd_simulate, pid=None, max_pages=None)

    i = sub.add_parser(
        "info",
        help="version, page size, compressors and the hardware found",
        description="Print the version, the page size and each compressor: available "
        "here or not (and why), software or hardware.",
    )
    i.add_argument("--json", action="store_true", help="print a JSON document")
    i.set_defaults(func=cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (see the module docstring)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error (already printed)
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    try:
        return int(args.func(args))
    except CliError as e:
        print(f"zswap-rs: error: {e}", file=sys.stderr)
        return e.code
    except _procmem.SourceError as e:
        print(f"zswap-rs: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("zswap-rs: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of stdout went away (| head): not an error worth a
        # traceback. Point stdout at /dev/null so the exit flush is quiet.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
