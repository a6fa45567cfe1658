"""What the commands show a person: tables, the progress bar, messages and plots.

Everything the commands print beyond their JSON is formatted here, so that
the measuring code (`profile`, `zswap_rs.simulate`) returns figures and
never text. Messages go to stderr: errors always, progress and notes only
when stderr is a terminal, so that a pipe or a test sees the report alone.
Plots are drawn with matplotlib, imported only when a plot is written (it is
an optional dependency, the `plot` extra); `check_plot` refuses `--plot`
before any work when it is missing.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import IO, TYPE_CHECKING, Any, TextIO

from .._command_error import CommandError
from ..simulate import Simulation
from ..simulate.model import Config
from .library import PAGE_SIZE

if TYPE_CHECKING:
    from .profile import CompressorResult

__all__ = [
    "IO_COLUMNS",
    "PROFILE_COLUMNS",
    "TIME_COLUMNS",
    "Progress",
    "check_plot",
    "describe_simulation",
    "describe_source",
    "error",
    "fmt_cell",
    "format_table",
    "human_bytes",
    "io_table",
    "note",
    "pages_line",
    "plot_profile",
    "plot_simulation",
    "profile_row",
    "simulation_title",
    "time_table",
    "warn",
]


# --------------------------------------------------------------------------
# Messages and the progress bar


def _isatty(stream: IO[Any]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def error(message: str) -> None:
    """An error, one line on stderr: `zswap-rs: error: MESSAGE`."""
    print(f"zswap-rs: error: {message}", file=sys.stderr)


def warn(message: str) -> None:
    print(f"zswap-rs: warning: {message}", file=sys.stderr)


def note(message: str) -> None:
    """Informational lines: for a person at a terminal only."""
    if _isatty(sys.stderr):
        print(f"zswap-rs: {message}", file=sys.stderr)


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


# --------------------------------------------------------------------------
# Cells and tables


def fmt_cell(value: float | None, spec: str, suffix: str = "") -> str:
    """A table cell: `value` formatted with `spec` and `suffix`, or "-" if absent."""
    return "-" if value is None else f"{value:{spec}}{suffix}"


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


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
    """Where the pages came from, for a heading or an error."""
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


def pages_line(source: dict[str, Any], pages: int) -> str:
    """The heading of a report: the source and how many pages it gave."""
    return (
        f"{describe_source(source)}: {pages} pages of {PAGE_SIZE} bytes "
        f"({human_bytes(pages * PAGE_SIZE)})"
    )


# --------------------------------------------------------------------------
# profile's table

PROFILE_COLUMNS = (
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


def profile_row(r: CompressorResult) -> list[str]:
    return [
        r.compressor,
        str(r.pages),
        fmt_cell(r.same_filled_pct, ".1f", "%"),
        fmt_cell(r.ratio, ".2f", "x"),
        fmt_cell(r.rejected_pct, ".1f", "%"),
        human_bytes(r.pool_bytes),
        human_bytes(r.compressed_bytes),
        fmt_cell(r.overhead_pct, ".1f", "%"),
        fmt_cell(r.store_ns_per_page, ".0f"),
        fmt_cell(r.load_ns_per_page, ".0f"),
    ]


# --------------------------------------------------------------------------
# simulate's tables

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


def describe_simulation(sim: Simulation) -> str:
    """The setting, in one paragraph: budget, pool, build, disk."""
    c = sim.config
    disk = f"paced to {c.disk_mbps:g} MB/s" if c.disk_mbps else "unpaced"
    io = (
        "O_DIRECT"
        if sim.direct
        else "buffered I/O (the filesystem refused O_DIRECT: the page cache may serve reads)"
    )
    lo, hi = c.job_pages
    return (
        f"RAM budget {c.ram_mb} MiB ({c.budget_pages} pages, pool's memory included); "
        f"pool limit {c.max_pool_percent}% of it; {c.compressor}\n"
        f"build: {c.files} files, seed {c.seed}, shared set {c.shared_pages} pages, "
        f"jobs of {lo}-{hi} pages\n"
        f"swap files in {sim.swap_dir}: {io}, {disk}"
    )


def simulation_title(c: Config) -> str:
    """The plot's title: the setting that the figures depend on."""
    disk = f"{c.disk_mbps:g} MB/s" if c.disk_mbps else "unpaced"
    return f"{c.ram_mb} MiB budget, {c.compressor}, pool {c.max_pool_percent}%, disk {disk}"


# --------------------------------------------------------------------------
# Plots: two panels side by side, one figure per command

#: Draws the two panels of a figure: (left axes, right axes).
Draw = Callable[[Any, Any], None]


def check_plot(path: str | None) -> None:
    """Refuse --plot before any work when matplotlib is missing."""
    if path and importlib.util.find_spec("matplotlib") is None:
        raise CommandError("--plot needs matplotlib: pip install matplotlib")


def _save_plot(path: str, title: str, draw: Draw, width: float = 11.0) -> None:
    """Draw a figure of two panels with `draw` and write it to `path` as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(width, 4.5))
    try:
        draw(left, right)
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    except OSError as e:
        raise CommandError(f"cannot write {path}: {e.strerror}") from None
    finally:
        plt.close(fig)
    note(f"wrote {path}")


def plot_profile(results: Sequence[CompressorResult], path: str, title: str) -> None:
    """Compression ratio, and store and load ns per page, per compressor."""
    names = [r.compressor for r in results]
    x = range(len(names))

    def draw(ax_ratio: Any, ax_time: Any) -> None:
        ratios = [r.ratio or 0.0 for r in results]
        bars = ax_ratio.bar(x, ratios, color="tab:blue")
        ax_ratio.bar_label(bars, labels=[f"{v:.2f}x" for v in ratios], padding=2)
        ax_ratio.set_title("compression ratio (compressed pages)")
        ax_ratio.set_ylabel("original / compressed")
        ax_ratio.set_xticks(list(x), names)
        ax_ratio.margins(y=0.15)
        width = 0.4
        for shift, label, color, ns in (
            (-width / 2, "store", "tab:orange", [r.store_ns_per_page or 0.0 for r in results]),
            (width / 2, "load", "tab:green", [r.load_ns_per_page or 0.0 for r in results]),
        ):
            bars = ax_time.bar([i + shift for i in x], ns, width, label=label, color=color)
            ax_time.bar_label(bars, labels=[f"{v:.0f}" for v in ns], padding=2, fontsize=8)
        ax_time.set_title("time per page (from Python)")
        ax_time.set_ylabel("ns / page")
        ax_time.set_xticks(list(x), names)
        ax_time.legend()
        ax_time.margins(y=0.15)

    _save_plot(path, title, draw, width=max(8.0, 2.2 * len(names) + 4))


def plot_simulation(sim: Simulation, path: str, title: str) -> None:
    """Swap I/O and runtime against N, base and zswap."""
    n = [r.jobs for r in sim.rows]

    def draw(ax_io: Any, ax_time: Any) -> None:
        ax_io.plot(n, [r.base.io_pages for r in sim.rows], "o-", label="base (no zswap)")
        ax_io.plot(n, [r.zswap.io_pages for r in sim.rows], "s-", label="zswap")
        writeback = [r.zswap.stats.get("zswpwb", 0) for r in sim.rows]
        ax_io.plot(n, writeback, "^--", label="zswap writeback", color="tab:gray")
        ax_io.set_title("swap I/O (pswpin + pswpout)")
        ax_io.set_ylabel("pages")
        ax_time.plot(n, [r.base.runtime_s for r in sim.rows], "o-", label="base (no zswap)")
        ax_time.plot(n, [r.zswap.runtime_s for r in sim.rows], "s-", label="zswap")
        ax_time.set_title("runtime")
        ax_time.set_ylabel("seconds")
        for ax in (ax_io, ax_time):
            ax.set_xlabel("N (make -jN)")
            ax.set_xticks(n)
            ax.legend()

    _save_plot(path, title, draw)
