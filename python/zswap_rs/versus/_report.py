"""The report of a run: three tables (swap I/O, time, faults), the bars of SPEC.md, JSON, a plot.

The % columns compare each side with the kernel's swap and the kernel's
zswap at the same pressure: negative is less I/O or less time; "base" marks
the side a column compares with, "-" a comparison with nothing to compare
(the other side did not run, or its figure is 0). A side that
did not run to the end (unavailable, failed, timed out) gets no figures,
only its status and, below the table, why: a missing figure is never shown
as a zero. The faults table gives each phase's fault count beside its cost
per fault (the phase's seconds over its faults, so the evictions each fault
forces are in it, on both sides); a phase with too few faults for that to
mean anything (`MIN_FAULTS_FOR_COST`) shows "-".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from . import _job
from ._run import MIN_FAULTS_FOR_COST, REGION_SIDES, SIDE_TITLES, SideResult, Versus

__all__ = [
    "FAULT_COLUMNS",
    "IO_COLUMNS",
    "TIME_COLUMNS",
    "bars",
    "describe",
    "format_report",
    "plot",
    "to_json",
]

IO_COLUMNS = (
    "pressure",
    "array",
    "side",
    "pswpin",
    "pswpout",
    "I/O",
    "vs swap",
    "vs zswap",
    "zswpout",
    "zswpwb",
)
TIME_COLUMNS = (
    "pressure",
    "side",
    *_job.PHASES,
    "total",
    "vs swap",
    "vs zswap",
    "CPU",
    "peak RSS",
    "cgroup peak",
)
#: Per phase: its faults, then microseconds per fault.
FAULT_COLUMNS = (
    "pressure",
    "side",
    *(c for p in _job.PHASES for c in (p, "us/f")),
    "kernel majflt",
)
#: The phase of the per-fault bar: one random page per touch, no read-ahead
#: to help either side, so one touch of an evicted page is one fault.
BAR_FAULT_PHASE = "reads"
#: What a side's own comparison column shows: it is the base of that column.
BASE = "base"
#: The Regions bars of SPEC.md, Performance.
BAR_HEAVIEST_SPEEDUP = 1.5
BAR_HEAVIEST_IO_CUT = 76.0


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.0f}M"


def _pct(value: float | None, base: float | None) -> str:
    if value is None or base is None or base == 0:
        return "-"
    return f"{(value - base) / base * 100:+.0f}%"


def _sec(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def format_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Columns right-aligned except the side's name, two spaces apart."""
    rows = [list(r) for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    left = header.index("side")

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(header), *(line(r) for r in rows)])


def _status(r: SideResult) -> str:
    return {
        "unavailable": "not run",
        "failed": "FAILED",
        "timeout": "timed out",
        "oom": "OOM-killed",
    }.get(r.status, r.status)


def _cached(r: SideResult) -> tuple[int | None, int | None]:
    """(zswpout, zswpwb) of the side's compressed tier: the kernel's, or the region's."""
    if r.status != "ok":
        return None, None
    if r.is_region and r.region_stats is not None:
        return r.region_stats.get("zswpout"), r.region_stats.get("zswpwb")
    return r.kernel.get("zswpout"), r.kernel.get("zswpwb")


def io_rows(v: Versus) -> list[list[str]]:
    rows = []
    for r in v.results:
        swap, zswap = v.result(r.level, "swap"), v.result(r.level, "zswap")
        if r.status != "ok":
            cells = [_status(r), *[""] * (len(IO_COLUMNS) - 4)]
        else:
            zout, zwb = _cached(r)
            cells = [
                str(r.pswpin),
                str(r.pswpout),
                str(r.io_pages),
                _pct(r.io_pages, swap.io_pages if swap else None) if r.side != "swap" else BASE,
                _pct(r.io_pages, zswap.io_pages if zswap else None) if r.side != "zswap" else BASE,
                "-" if zout is None else str(zout),
                "-" if zwb is None else str(zwb),
            ]
        rows.append([f"{r.level:g}x", _mib(r.array_bytes), SIDE_TITLES[r.side], *cells])
    return rows


def time_rows(v: Versus) -> list[list[str]]:
    rows = []
    for r in v.results:
        swap, zswap = v.result(r.level, "swap"), v.result(r.level, "zswap")
        head = [f"{r.level:g}x", SIDE_TITLES[r.side]]
        if r.status != "ok":
            rows.append([*head, _status(r), *[""] * (len(TIME_COLUMNS) - 3)])
            continue
        rows.append(
            [
                *head,
                *(_sec(r.seconds.get(p)) for p in _job.PHASES),
                _sec(r.total_seconds),
                _pct(r.total_seconds, swap.total_seconds if swap else None)
                if r.side != "swap"
                else BASE,
                _pct(r.total_seconds, zswap.total_seconds if zswap else None)
                if r.side != "zswap"
                else BASE,
                _sec(r.cpu_seconds),
                _mib(r.peak_rss_bytes),
                _mib(r.cgroup_peak_bytes),
            ]
        )
    return rows


def _us(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def fault_rows(v: Versus) -> list[list[str]]:
    rows = []
    for r in v.results:
        head = [f"{r.level:g}x", SIDE_TITLES[r.side]]
        if r.status != "ok":
            rows.append([*head, _status(r), *[""] * (len(FAULT_COLUMNS) - 3)])
            continue
        cells = []
        for p in _job.PHASES:
            n = r.phase_faults(p)
            cells += ["-" if n is None else str(n), _us(r.us_per_fault(p))]
        majflt = [c.get("majflt", 0) for c in r.phase_counters.values()]
        cells.append(str(sum(majflt)) if majflt else "-")
        rows.append([*head, *cells])
    return rows


def fault_bar(v: Versus, side: str) -> str | None:
    """The per-fault bar of a region side: its random reads' us/fault against kernel zswap's."""
    pairs = [(lv, v.result(lv, side), v.result(lv, "zswap")) for lv in v.config.levels]
    parts, verdicts = [], []
    for lv, a, b in pairs:
        if a is None or b is None:
            continue
        ua, ub = a.us_per_fault(BAR_FAULT_PHASE), b.us_per_fault(BAR_FAULT_PHASE)
        if ua is None or ub is None:
            why = [
                f"{SIDE_TITLES[r.side]} "
                + (_status(r) if r.status != "ok" else f"under {MIN_FAULTS_FOR_COST} faults")
                for r, u in ((a, ua), (b, ub))
                if u is None
            ]
            parts.append(f"{lv:g}x not measured ({', '.join(why)})")
            continue
        ok = ua <= ub
        verdicts.append(ok)
        na, nb = a.phase_faults(BAR_FAULT_PHASE), b.phase_faults(BAR_FAULT_PHASE)
        parts.append(
            f"{lv:g}x {'PASS' if ok else 'FAIL'} ({ua:.1f} us over {na} faults "
            f"vs {ub:.1f} us over {nb})"
        )
    if not parts:
        return None
    overall = "not measured" if not verdicts else ("PASS" if all(verdicts) else "FAIL")
    return (
        f"a fault served by {SIDE_TITLES[side]} costs at most the kernel zswap's swap-in "
        f"({BAR_FAULT_PHASE} phase, us per fault): {overall}: " + "; ".join(parts)
    )


def bars(v: Versus) -> list[str]:
    """Each Regions bar of SPEC.md, for each region side run: holds or not, with figures."""
    sides = [s for s in v.config.sides if s in REGION_SIDES] or ["zswap-rs"]
    out = []
    for side in sides:
        title = SIDE_TITLES[side]
        prefix = "" if side == "zswap-rs" else f"{title}: "
        out += [ln if ln.startswith(title) else prefix + ln for ln in _side_bars(v, side)]
        fb = fault_bar(v, side)
        if fb is not None:
            out.append(fb)
    return out


def _side_bars(v: Versus, side: str) -> list[str]:
    """Each Regions bar of SPEC.md: holds, does not hold (with the figures), or not measured."""
    levels = list(v.config.levels)
    pairs = [(lv, v.result(lv, side), v.result(lv, "zswap")) for lv in levels]
    measured = [(lv, a, b) for lv, a, b in pairs if a and b and a.status == b.status == "ok"]
    out = []
    missing = []
    for lv, a, b in pairs:
        gaps = [f"{SIDE_TITLES[r.side]} {_status(r)}" for r in (b, a) if r and r.status != "ok"]
        gaps += [
            f"{SIDE_TITLES[s]} not in --sides" for s, r in (("zswap", b), (side, a)) if r is None
        ]
        if gaps:
            missing.append(f"{lv:g}x ({', '.join(gaps)})")
    if missing:
        out.append("not measured at " + "; ".join(missing))
    if measured:
        slower = [
            f"{lv:g}x ({a.total_seconds:.2f} s vs {b.total_seconds:.2f} s)"
            for lv, a, b in measured
            if (a.total_seconds or 0) >= (b.total_seconds or 0)
        ]
        verdict = "holds" if not slower else "does not hold at " + ", ".join(slower)
        out.append(
            f"{SIDE_TITLES[side]} faster than the kernel's zswap at every pressure measured: "
            + verdict
        )
    heaviest = max(levels)
    a, b = v.result(heaviest, side), v.result(heaviest, "zswap")
    s = v.result(heaviest, "swap")
    if a and b and a.status == b.status == "ok" and a.total_seconds and b.total_seconds:
        speedup = b.total_seconds / a.total_seconds
        ok = "holds" if speedup >= BAR_HEAVIEST_SPEEDUP else "does not hold"
        out.append(
            f"at the heaviest ({heaviest:g}x), {BAR_HEAVIEST_SPEEDUP}x faster than the kernel's "
            f"zswap: {ok} ({speedup:.2f}x)"
        )
    if a and s and a.status == s.status == "ok" and a.io_pages is not None and s.io_pages:
        cut = (s.io_pages - a.io_pages) / s.io_pages * 100
        ok = "holds" if cut >= BAR_HEAVIEST_IO_CUT else "does not hold"
        got = f"{cut:.0f}% less" if cut >= 0 else f"{-cut:.0f}% more"
        out.append(
            f"at the heaviest ({heaviest:g}x), {BAR_HEAVIEST_IO_CUT:.0f}% less swap I/O than the "
            f"kernel's swap: {ok} ({got})"
        )
    return out


def describe(v: Versus) -> str:
    """The lines above the tables: what ran, where, with what."""
    c, m, s = v.config, v.machine, v.source
    src = (
        f"built-in workload ({s.get('workload_mb')} MiB heap, seed {s.get('seed')})"
        if s.get("kind") == "workload"
        else f"page dump {s.get('path', '?')}"
    )
    load = m.get("load_average") or [0.0]
    lines = [
        f"zswap-rs versus: {c.limit_mb} MiB memory limit (cgroup v{m.get('cgroup_version')}), "
        f"compressor {v.compressor}, kernel {m.get('kernel')}, {m.get('cpus')} CPUs "
        f"(load {load[0]:.1f} at the start), THP {_thp(m.get('thp'))}, "
        f"swappiness {m.get('swappiness')}",
        f"swap: a {_mib(m.get('swap_file_bytes'))} file on {m.get('swap_fstype')} in "
        f"{m.get('swap_dir')}, priority 32767, for every side (zswap-rs's own file beside it); "
        f"pages: {src}, {s.get('pages_used')} pages cycled over the array",
        f"job: fill, scan twice, {c.reads} random page reads, {c.writes} random page writes "
        "(seconds per phase; CPU of the job's process, all its threads)",
        f"zswap-rs: the limit less the interpreter, 64 B/page of metadata and 4 MiB is the "
        f"region's budget, its pool counted in it (pool_in_budget) up to {c.pool_percent}% of "
        "it, swap file "
        f"{'O_DIRECT' if c.region_direct_io else 'buffered'}; kernel zswap: "
        f"shrinker {'on' if c.kernel_shrinker else 'off'}",
    ]
    for r in v.results:
        if r.region_split:
            sp = r.region_split
            lines.append(
                f"  {r.level:g}x {SIDE_TITLES[r.side]}: limit {r.limit_bytes / 2**20:.1f} MiB, "
                f"interpreter {sp['baseline'] / 2**20:.1f} MiB, budget "
                f"{sp['budget'] / 2**20:.1f} MiB, pool limit {sp['max_pool_bytes'] / 2**20:.1f} MiB"
            )
    lines.extend(f"note: {n}" for n in v.notes)
    return "\n".join(lines)


def _thp(text: str | None) -> str:
    if not text:
        return "?"
    for word in text.split():
        if word.startswith("["):
            return word.strip("[]")
    return text


def footnotes(v: Versus) -> list[str]:
    out, seen = [], set()
    for r in v.results:
        if r.reason and r.reason not in seen:
            seen.add(r.reason)
            same = [f"{x.level:g}x" for x in v.results if x.side == r.side and x.reason == r.reason]
            out.append(f"{SIDE_TITLES[r.side]} at {', '.join(same)}: {_status(r)}: {r.reason}")
        if r.status == "ok" and r.is_region and (r.kernel.get("pswpout") or 0) > 0:
            majflt = {p: c.get("majflt", 0) for p, c in r.phase_counters.items()}
            out.append(
                f"{SIDE_TITLES[r.side]} at {r.level:g}x: the kernel also swapped "
                f"{r.kernel['pswpout']} pages of that process out (the interpreter, or resident "
                "region pages): counted in its I/O; its major faults per phase: "
                + ", ".join(f"{p} {n}" for p, n in majflt.items())
            )
        if r.swap_left_kib > 1024:
            out.append(
                f"{SIDE_TITLES[r.side]} at {r.level:g}x: {r.swap_left_kib} KiB stayed on the swap "
                "file after the side ended: other programs swapped there, and their I/O is in "
                "the machine's counters"
            )
    return out + _pool_notes(v)


def _pool_notes(v: Versus) -> list[str]:
    """Where the kernel's pool was not charged to the limit, and what the regions got for it."""
    out = []
    for r in v.results:
        pool, kmem = r.kernel_pool_peak_bytes, r.cgroup_kmem_peak_bytes
        if r.side != "zswap" or r.status != "ok" or pool is None:
            continue
        extra = [
            x
            for x in v.results
            if x.level == r.level and x.is_region and x.limit_bytes > v.config.limit_bytes
        ]
        if extra:
            out.append(
                f"kernel zswap at {r.level:g}x: its pool peaked at {pool / 2**20:.1f} MiB beside "
                f"the {v.config.limit_mb} MiB limit (cgroup v1 does not charge it), so the "
                f"region sides ran in {extra[0].limit_bytes / 2**20:.1f} MiB: the same RAM in all"
            )
        elif kmem is not None and pool > kmem + (1 << 20):
            out.append(
                f"kernel zswap at {r.level:g}x: its pool peaked at {pool / 2**20:.1f} MiB while "
                f"the cgroup's kernel memory peaked at {kmem / 2**20:.1f} MiB: the pool was not "
                "charged to the limit"
            )
    return out


def format_report(v: Versus) -> str:
    parts = [
        describe(v),
        "",
        "swap I/O (pages: pswpin/pswpout to the disk; zswpout/zswpwb: pages compressed into "
        "the pool / written back from it)",
        format_table(IO_COLUMNS, io_rows(v)),
        "",
        "time (seconds; peak RSS of the job's process, peak charge of its cgroup)",
        format_table(TIME_COLUMNS, time_rows(v)),
        "",
        "faults per phase (kernel sides: the job's major faults, i.e. swap-ins from zswap or "
        "disk; zswap-rs: the region's faults + write-protect faults + the job's major faults) "
        f"and us/f, microseconds of the phase per fault ('-': under {MIN_FAULTS_FOR_COST} faults)",
        format_table(FAULT_COLUMNS, fault_rows(v)),
    ]
    notes = footnotes(v)
    if notes:
        parts += ["", *notes]
    parts += ["", "bars (SPEC.md, Performance, Regions):", *(f"  {b}" for b in bars(v))]
    return "\n".join(parts)


def plot(v: Versus, path: str) -> None:
    """Swap I/O and runtime against pressure, one line per side (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_io, ax_t) = plt.subplots(1, 2, figsize=(11, 4.5))
    for side in v.config.sides:
        rs = [r for r in v.results if r.side == side and r.status == "ok"]
        if not rs:
            continue
        xs = [r.level for r in rs]
        ax_io.plot(xs, [r.io_pages for r in rs], marker="o", label=SIDE_TITLES[side])
        ax_t.plot(xs, [r.total_seconds for r in rs], marker="o", label=SIDE_TITLES[side])
    ax_io.set_title("swap I/O (pswpin + pswpout)")
    ax_io.set_ylabel("pages")
    ax_t.set_title("runtime of the job")
    ax_t.set_ylabel("seconds")
    for ax in (ax_io, ax_t):
        ax.set_xlabel("array size / memory limit")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(
        f"zswap-rs versus: {v.config.limit_mb} MiB limit, {v.compressor}, kernel "
        f"{v.machine.get('kernel')}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def to_json(v: Versus, version: str) -> dict[str, Any]:
    return {"zswap_rs_version": version, **v.to_json(), "bars": bars(v)}
