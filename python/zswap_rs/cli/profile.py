"""`zswap-rs profile`: what would zswap do with this memory?

It takes real pages (a live process's private anonymous memory, a raw page
dump, or by default the heap of a workload it starts itself), runs them
through a fresh `zswap_rs.Zswap` per compressor, loads every page back and
checks it, and reports what zswap makes of them: same-filled share,
compression ratio, rejects, pool bytes against compressed bytes (the
allocator's overhead), and the cost per page to store and to load.

Why real pages: compression ratio and the same-filled share decide whether
zswap pays off, and both depend wholly on the data. Random or synthetic pages
say nothing; a process's heap, read at its peak, says what its swap would be.

The timings are wall-clock nanoseconds per page over whole loops of Python
calls, so they include the per-call cost of the binding, as any Python user
of the library pays it; the Rust benchmarks (`cargo bench`, on a dump made
with `--save-pages`) measure the core alone.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from types import ModuleType
from typing import Any

from .. import _procmem
from .._command_error import EXIT_FAILURE, EXIT_OK, CommandError
from . import library, report
from .library import PAGE_SIZE
from .options import Command, PageSource, add_output, add_page_source
from .sources import Pages, collect

__all__ = ["COMMAND", "CompressorResult", "run_compressor"]

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


# --------------------------------------------------------------------------
# One compressor's run


def _chunks(n: int) -> Iterator[tuple[int, int]]:
    step = max(1, -(-n // STEPS))
    for lo in range(0, n, step):
        yield lo, min(n, lo + step)


def _store_all(z: Any, t: int, name: str, pages: Sequence[bytes]) -> tuple[list[str], int]:
    """Store every page at its own offset: (outcome names, ns spent in the stores)."""
    n = len(pages)
    outcomes: list[Any] = []
    store_ns = 0
    store = z.store
    with report.Progress(f"{name} store", n) as bar:
        for lo, hi in _chunks(n):
            batch = pages[lo:hi]
            t0 = time.perf_counter_ns()
            outcomes.extend(map(store, repeat(t, hi - lo), range(lo, hi), batch))
            store_ns += time.perf_counter_ns() - t0
            bar.update(hi)
    return [_outcome_name(o) for o in outcomes], store_ns


def _load_and_check(
    z: Any, t: int, name: str, pages: Sequence[bytes], offsets: list[int]
) -> tuple[int, list[int], int]:
    """Load every offset back and compare: (ns spent in the loads, offsets listed, mismatches)."""
    load_ns = 0
    listed: list[int] = []
    count = 0
    load = z.load
    with report.Progress(f"{name} load", len(offsets)) as bar:
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
                    count += 1
                    if len(listed) < MISMATCHES_LISTED:
                        listed.append(offset)
            del loaded
            bar.update(hi)
    return load_ns, listed, count


def run_compressor(zswap_rs: ModuleType, name: str, pages: Sequence[bytes]) -> CompressorResult:
    """Store every page with compressor `name`, then load each back and check it."""
    n = len(pages)
    ps = PAGE_SIZE
    with zswap_rs.Zswap(compressor=name, max_pool_bytes=n * ps + POOL_HEADROOM, page_size=ps) as z:
        t = z.swapon(None, pages=n)
        names, store_ns = _store_all(z, t, name, pages)
        offsets = [i for i, o in enumerate(names) if o in ("STORED", "SAME_FILLED")]
        load_ns, mismatches, mismatch_count = _load_and_check(z, t, name, pages, offsets)
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
# The command


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_page_source(
        p,
        live=True,
        pages_help="read a raw page dump (4096-byte pages)",
        seed_help="the built-in workload's random seed (default 0)",
    )
    add_output(
        p,
        json_help="print a JSON document, not a table",
        plot_help="draw ratio and ns/page per compressor",
    )
    p.add_argument(
        "--save-pages", metavar="FILE", help="also write the pages read to FILE, as a raw dump"
    )
    p.add_argument(
        "--compressor",
        metavar="NAME",
        nargs="+",
        action="extend",
        help="compressors to run (default: every available one); repeatable",
    )


def _read(args: argparse.Namespace) -> Pages:
    """The pages to profile (never none), saved to --save-pages if asked."""
    src = PageSource(args.pages, args.pid, args.max_pages, args.workload_mb, args.seed)
    got = collect(src)
    if not got.pages:
        what = report.describe_source(got.source)
        if got.exited:
            raise CommandError(f"{what} exited before any of its pages could be read")
        if got.source["kind"] == "pages":
            raise CommandError(f"{what} holds no pages")
        raise CommandError(f"{what} has no resident private anonymous memory to profile")
    report.note(f"read {len(got.pages)} pages ({report.human_bytes(len(got.pages) * PAGE_SIZE)})")
    if args.save_pages:
        try:
            _procmem.write_page_file(args.save_pages, got.pages)
        except OSError as e:
            raise CommandError(f"cannot write {args.save_pages}: {e.strerror}") from None
        report.note(f"saved {len(got.pages)} pages to {args.save_pages}")
    return got


def _print(got: Pages, results: list[CompressorResult], as_json: bool) -> None:
    if as_json:
        doc = {
            "zswap_rs_version": library.version(),
            "source": got.source,
            "source_exited_early": got.exited,
            "page_size": PAGE_SIZE,
            "pages": len(got.pages),
            "compressors": [r.to_json() for r in results],
        }
        print(json.dumps(doc, indent=2))
    else:
        print(report.pages_line(got.source, len(got.pages)))
        print(report.format_table(report.PROFILE_COLUMNS, map(report.profile_row, results)))
    sys.stdout.flush()


def run(args: argparse.Namespace) -> int:
    report.check_plot(args.plot)
    zswap_rs = library.zswap()
    names = library.check_compressors(zswap_rs, args.compressor)
    got = _read(args)
    results: list[CompressorResult] = []
    for name in names:
        try:
            results.append(run_compressor(zswap_rs, name, got.pages))
        except (zswap_rs.ZswapError, ValueError, KeyError, OSError) as e:
            raise CommandError(
                f"BUG: profiling with {name} failed: {type(e).__name__}: {e}", EXIT_FAILURE
            ) from e
    _print(got, results, args.json)
    if args.plot:
        title = f"{report.describe_source(got.source)}, {len(got.pages)} pages"
        report.plot_profile(results, args.plot, title)
    bad = [r for r in results if r.mismatch_count]
    for r in bad:
        listed = ", ".join(map(str, r.mismatches))
        more = " ..." if r.mismatch_count > len(r.mismatches) else ""
        report.error(
            f"BUG: {r.compressor}: {r.mismatch_count} of {r.loaded_pages} pages loaded back "
            f"differ from what was stored (offsets {listed}{more}). This is a bug in zswap-rs: "
            "please report it, with the pages (--save-pages FILE) if you can share them."
        )
    return EXIT_FAILURE if bad else EXIT_OK


COMMAND = Command(
    name="profile",
    help="run a process's memory (or a page dump) through zswap, per compressor",
    description=(
        "Read real pages and report, per compressor, what zswap does with them: "
        "same-filled share, compression ratio over the compressed pages, rejected "
        "share, pool bytes against compressed bytes (allocator overhead), and ns per "
        "page to store and to load (from Python). Every page is loaded back and "
        "checked. With neither --pid nor --pages, profiles the heap of a Python "
        "workload that it starts and ends itself."
    ),
    add_arguments=add_arguments,
    run=run,
)
