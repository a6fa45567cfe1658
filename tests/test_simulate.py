"""`zswap-rs simulate` (`zswap_rs.simulate`): the trace, the RAM budget, the command.

The model is tested twice over. In-process against `FakeZswap`, a small
pure-Python stand-in (a dict pool of zlib-compressed pages with LRU writeback
in front of a real file), so that the trace and the budget are tested apart
from the Rust core. Then end to end, `python -m zswap_rs.cli simulate` as a
user runs it, on the compiled module, when it has backing swap files. No
assertion is about time: every figure checked comes from the counters.
"""

from __future__ import annotations

import collections
import csv
import io
import json
import os
import random
import subprocess
import sys
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cli_helpers import run_cli

import zswap_rs
from zswap_rs import _procmem, cli
from zswap_rs._command_error import CommandError
from zswap_rs.cli import library, report
from zswap_rs.cli.options import PageSource
from zswap_rs.cli.sources import collect
from zswap_rs.simulate import OP_FREE, Config, Simulation, model, plan_build, simulate, trace

PS = 4096
#: A small experiment: a 2 MiB budget (512 pages) and jobs of 21-64 pages, so
#: that N = 2 fits, N = 16 is over and N = 32 is far beyond the budget.
SMALL = Config(jobs=(2, 16, 32), ram_mb=2, files=48, disk_mbps=0, seed=3)
SMALL_ARGS = ("--ram-mb", "2", "--jobs", "2,16,32", "--files", "48", "--disk-mbps", "0")


def make_pages(n: int, seed: int = 0) -> list[bytes]:
    """Pages of a heap's kinds of content: text, records, numbers, random, zeros."""
    rng = random.Random(seed)
    words = b"the of and page swap pool entry tree offset kernel cache value index".split()
    pages = []
    for i in range(n):
        kind = i % 8
        if kind in (0, 1, 2):
            text = b" ".join(rng.choice(words) for _ in range(PS // 4))
            pages.append(text[:PS])
        elif kind in (3, 4):
            rec = b"".join(
                rng.getrandbits(32).to_bytes(4, "little") + bytes(4) + rng.choice(words).ljust(8)
                for _ in range(PS // 16)
            )
            pages.append(rec)
        elif kind == 5:
            pages.append(rng.randbytes(PS))
        elif kind == 6:
            pages.append(rng.randbytes(PS // 8) * 8)
        else:
            pages.append(bytes(PS))
    return pages


PAGES = make_pages(512)


# --------------------------------------------------------------------------
# A stand-in for zswap_rs.Zswap with a backing file


class FakeZswap:
    """Just enough of `zswap_rs.Zswap` for `simulate`, in Python.

    The pool is an LRU dict of zlib-compressed pages whose size is rounded to
    16 bytes; at its limit the oldest entries are written to the file until
    the pool is under 90% of it (the accept threshold), as the Rust core does.
    """

    def __init__(
        self,
        compressor: str = "lz4",
        *,
        max_pool_bytes: int | None = None,
        page_size: int = PS,
        exclusive_loads: bool = False,
    ) -> None:
        self.compressor = compressor
        self.exclusive_loads = exclusive_loads
        self.max_pool_bytes = max_pool_bytes if max_pool_bytes is not None else 1 << 40
        self.page_size = page_size
        self.enabled = True
        self.pool: collections.OrderedDict[tuple[int, int], bytes] = collections.OrderedDict()
        self.on_disk: set[tuple[int, int]] = set()
        self.areas: dict[int, tuple[int, int, str]] = {}
        self.counters = Counter[str]()
        self.pool_total_size = 0

    def __enter__(self) -> FakeZswap:
        return self

    def __exit__(self, *exc: object) -> None:
        for t in list(self.areas):
            self.swapoff(t)

    def swapon(
        self, path: str, pages: int, *, direct: bool = True, disk_mbps: float | None = None
    ) -> int:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        os.ftruncate(fd, pages * self.page_size)
        t = len(self.areas)
        self.areas[t] = (fd, pages, path)
        return t

    def backing_info(self, t: int) -> dict[str, Any]:
        fd, pages, path = self.areas[t]
        return {"path": path, "pages": pages, "direct": False, "disk_mbps": None}

    def swapoff(self, t: int) -> None:
        fd, _, _ = self.areas.pop(t)
        os.close(fd)

    def _size(self, data: bytes) -> int:
        return -(-len(data) // 16) * 16

    def _write(self, key: tuple[int, int], page: bytes) -> None:
        fd, pages, _ = self.areas[key[0]]
        assert 0 <= key[1] < pages
        os.pwrite(fd, page, key[1] * self.page_size)
        self.on_disk.add(key)
        self.counters["pswpout"] += 1

    def invalidate(self, t: int, offset: int) -> bool:
        key = (t, offset)
        data = self.pool.pop(key, None)
        if data is not None:
            self.pool_total_size -= self._size(data)
            return True
        if key in self.on_disk:
            self.on_disk.discard(key)
            return True
        return False

    def store(self, t: int, offset: int, page: bytes | bytearray) -> str:
        assert len(page) == self.page_size
        key = (t, offset)
        self.invalidate(t, offset)
        data = zlib.compress(page, 1)
        if not self.enabled or len(data) > self.page_size * 80 // 100:
            self._write(key, bytes(page))
            return "SWAPPED"
        size = self._size(data)
        if self.pool_total_size + size > self.max_pool_bytes:
            self.counters["pool_limit_hit"] += 1
            while self.pool and self.pool_total_size + size > self.max_pool_bytes * 90 // 100:
                old, old_data = self.pool.popitem(last=False)
                self.pool_total_size -= self._size(old_data)
                self._write(old, zlib.decompress(old_data))
                self.counters["written_back_pages"] += 1
                self.counters["zswpwb"] += 1
        self.pool[key] = data
        self.pool_total_size += size
        self.counters["zswpout"] += 1
        return "STORED"

    def load_into(self, t: int, offset: int, buf: bytearray) -> None:
        key = (t, offset)
        if key in self.pool:
            data = self.pool[key]
            buf[:] = zlib.decompress(data)
            self.counters["zswpin"] += 1
            if self.exclusive_loads:
                del self.pool[key]
                self.pool_total_size -= self._size(data)
        elif key in self.on_disk:
            fd, _, _ = self.areas[t]
            buf[:] = os.pread(fd, self.page_size, offset * self.page_size)
            self.counters["pswpin"] += 1
        else:
            raise KeyError(key)

    def stats(self) -> dict[str, int]:
        names = "pswpin pswpout zswpin zswpout zswpwb written_back_pages pool_limit_hit".split()
        return {"pool_total_size": self.pool_total_size, **{k: self.counters[k] for k in names}}


FAKE = SimpleNamespace(Zswap=FakeZswap)


def has_backing_files() -> bool:
    """Has the compiled module swap files with O_DIRECT and pacing (issue 3)?"""
    return hasattr(zswap_rs.Zswap, "backing_info")


needs_backing = pytest.mark.skipif(
    not has_backing_files(), reason="zswap_rs.Zswap has no backing swap files yet (issue 3)"
)


# --------------------------------------------------------------------------
# The trace


def test_trace_is_deterministic_for_a_seed() -> None:
    first = list(trace(SMALL, 8, len(PAGES)))
    assert first == list(trace(SMALL, 8, len(PAGES)))
    other = replace(SMALL, seed=SMALL.seed + 1)
    assert first != list(trace(other, 8, len(PAGES)))


def test_trace_same_build_at_every_n_and_working_set_grows() -> None:
    """Every N does the same touches (in another order); only the live set grows."""
    touched: dict[int, Counter[tuple[int, int]]] = {}
    peak_live: dict[int, int] = {}
    for n in (1, 4, 32):
        live: set[int] = set()
        peak = 0
        ops = Counter[tuple[int, int]]()
        for op, offset, source, _ in trace(SMALL, n, len(PAGES)):
            if op == OP_FREE:
                live.discard(offset)
                continue
            assert 0 <= source < len(PAGES)
            ops[op, source] += 1
            live.add(offset)
            peak = max(peak, len(live))
        touched[n] = ops
        peak_live[n] = peak
        assert peak <= plan_build(SMALL, len(PAGES)).area_pages(n)
    assert touched[1] == touched[4] == touched[32]
    assert peak_live[1] < peak_live[4] < peak_live[32]
    # At N = 32 the pages live at once are far beyond the 512-page budget.
    assert peak_live[32] > 2 * SMALL.budget_pages


def test_touch_count() -> None:
    build = plan_build(SMALL, len(PAGES))
    for n in (1, 7):
        events = Counter(e[0] == OP_FREE for e in trace(SMALL, n, len(PAGES)))
        assert events[False] == build.touches
        assert events[True] == sum(p.pages for p in build.plans)


def test_writes_change_a_few_bytes_only() -> None:
    page = bytearray(PAGES[0])
    for _ in range(100):
        before = bytes(page)
        model.mutate(page, random.getrandbits(32), PS)
        assert len(page) == PS
        assert sum(a != b for a, b in zip(before, page, strict=True)) <= 64


# --------------------------------------------------------------------------
# The experiment on the fake


def run_fake(tmp_path: Path, config: Config = SMALL) -> tuple[Simulation, str]:
    log = io.StringIO()
    config = replace(config, swap_dir=str(tmp_path))
    sim = simulate(FAKE, config, PAGES, {"kind": "test"}, log=log)
    return sim, log.getvalue()


def check_budget_log(text: str, budget: int) -> None:
    """Resident + pool pages never exceed the budget, and the pool takes part."""
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows
    squeezed = 0
    for row in rows:
        resident, pool = int(row["resident_pages"]), int(row["pool_pages"])
        assert int(row["budget_pages"]) == budget
        assert resident + pool <= budget, row
        if row["mode"] == "base":
            assert pool == 0
        elif pool > 0 and resident + pool == budget:
            squeezed += 1  # a full budget with the pool in it: fewer resident pages
    assert squeezed > 0


def check_experiment(doc: dict[str, Any]) -> None:
    """The figures the brief asks for, from the counters."""
    rows = {r["jobs"]: r for r in doc["rows"]}
    assert doc["mismatched_pages"] == 0
    for r in rows.values():
        base, zs = r["base"], r["zswap"]
        assert base["io_pages"] == base["pswpin"] + base["pswpout"]
        assert base["stats"]["zswpout"] == 0 and base["peak_pool_pages"] == 0
        for run in (base, zs):
            assert run["peak_charged_pages"] <= doc["config"]["budget_pages"]
            st = run["stats"]
            assert run["swap_ins"] == st["pswpin"] + st["zswpin"]
            assert run["mismatched_pages"] == 0
    # No pressure at N = 2: nothing swapped either way.
    assert rows[2]["base"]["io_pages"] == rows[2]["zswap"]["io_pages"] == 0
    # Under pressure zswap does strictly less swap I/O.
    for n in (16, 32):
        assert rows[n]["base"]["io_pages"] > 0
        assert rows[n]["zswap"]["io_pages"] < rows[n]["base"]["io_pages"]
        assert rows[n]["io_change_pct"] < 0
    # At the highest pressure the pool fills and writes back.
    top = rows[max(rows)]["zswap"]["stats"]
    assert top["pool_limit_hit"] > 0
    assert top["written_back_pages"] > 0 and top["zswpwb"] > 0
    # The pressure grows with N.
    assert rows[32]["base"]["io_pages"] > rows[16]["base"]["io_pages"]


def test_simulate_on_fake_reduces_io_and_respects_budget(tmp_path: Path) -> None:
    sim, log = run_fake(tmp_path)
    doc = sim.to_json()
    check_experiment(doc)
    check_budget_log(log, SMALL.budget_pages)
    # Every swap file was removed.
    assert list(tmp_path.iterdir()) == []


def test_simulate_counters_are_deterministic(tmp_path: Path) -> None:
    config = replace(SMALL, jobs=(32,))
    first, _ = run_fake(tmp_path, config)
    second, _ = run_fake(tmp_path, config)
    for a, b in zip(first.rows, second.rows, strict=True):
        assert a.base.stats == b.base.stats
        assert a.zswap.stats == b.zswap.stats
        assert a.zswap.evictions == b.zswap.evictions


def test_pool_share_of_the_budget_is_enforced(tmp_path: Path) -> None:
    """max_pool_percent is of the budget: a bigger share means a bigger pool."""
    peaks = {}
    for pct in (10, 40):
        config = replace(SMALL, jobs=(32,), max_pool_percent=pct)
        sim, log = run_fake(tmp_path, config)
        check_budget_log(log, SMALL.budget_pages)
        peaks[pct] = sim.rows[0].zswap.peak_pool_pages
        assert peaks[pct] <= -(-config.max_pool_bytes // PS)
    assert peaks[10] < peaks[40]


def test_plot_from_fake(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    (tmp_path / "swap").mkdir()
    sim, _ = run_fake(tmp_path / "swap")
    out = tmp_path / "sim.png"
    report.plot_simulation(sim, str(out), "test")
    assert out.read_bytes().startswith(b"\x89PNG")


def test_bad_configs_are_refused() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"jobs": ()}, "--jobs"),
        ({"jobs": (0,)}, "--jobs"),
        ({"ram_mb": 0}, "--ram-mb"),
        ({"max_pool_percent": 0}, "--max-pool-percent"),
        ({"max_pool_percent": 95}, "--max-pool-percent"),
        ({"disk_mbps": -1.0}, "--disk-mbps"),
        ({"disk_mbps": float("nan")}, "--disk-mbps"),
        ({"files": 0}, "--files"),
        ({"swap_dir": "/nonexistent/zswap-rs"}, "--swap-dir"),
    ]
    for bad, message in cases:
        with pytest.raises(CommandError, match=message) as e:
            replace(SMALL, **bad).check()
        assert e.value.code == 2


# --------------------------------------------------------------------------
# The command


def assert_clean_error(proc: subprocess.CompletedProcess[str], code: int, message: str) -> None:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    assert message in proc.stderr, proc.stderr
    assert proc.stdout == ""


@pytest.fixture
def dump(tmp_path: Path) -> Path:
    path = tmp_path / "pages.bin"
    _procmem.write_page_file(path, PAGES)
    return path


def test_cli_wiring_on_fake(
    tmp_path: Path, dump: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command's options, table, JSON and budget log, in-process on the fake."""
    fake = SimpleNamespace(
        Zswap=FakeZswap, compressors=zswap_rs.compressors, __version__=zswap_rs.__version__
    )
    monkeypatch.setattr(library, "zswap", lambda: fake)
    args = ["simulate", "--pages", str(dump), *SMALL_ARGS, "--seed", "3"]
    args += ["--swap-dir", str(tmp_path)]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert f"page dump {dump}: {len(PAGES)} pages" in out
    assert "RAM budget 2 MiB (512 pages" in out and "unpaced" in out
    assert "buffered I/O" in out  # the fake says O_DIRECT is not in use
    lines = out.splitlines()
    io_at = lines.index("swap I/O (pages)") + 1
    assert lines[io_at].split()[:3] == ["N", "base", "in"]
    assert [line.split()[0] for line in lines[io_at + 1 : io_at + 4]] == ["2", "16", "32"]
    log = tmp_path / "budget.csv"
    assert cli.main([*args, "--json", "--budget-log", str(log)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["config"]["budget_pages"] == 512 and doc["config"]["files"] == 48
    assert doc["config"]["max_pool_bytes"] == 512 * PS * 20 // 100
    check_experiment(doc)
    check_budget_log(log.read_text(), 512)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["budget.csv", "pages.bin"]


@needs_backing
def test_cli_simulate_json(tmp_path: Path, dump: Path) -> None:
    log = tmp_path / "budget.csv"
    swap = tmp_path / "swap"
    swap.mkdir()
    proc = run_cli(
        "simulate",
        "--pages",
        str(dump),
        *SMALL_ARGS,
        "--seed",
        "3",
        "--swap-dir",
        str(swap),
        "--budget-log",
        str(log),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["source"]["kind"] == "pages" and doc["source_pages"] == len(PAGES)
    assert doc["config"]["budget_pages"] == 512
    assert doc["config"]["max_pool_bytes"] == 512 * PS * 20 // 100
    assert doc["config"]["compressor"] == "lz4"
    assert isinstance(doc["o_direct"], bool)
    check_experiment(doc)
    check_budget_log(log.read_text(), 512)
    assert list(swap.iterdir()) == []


@needs_backing
def test_cli_simulate_table_and_plot(tmp_path: Path, dump: Path) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "sim.png"
    proc = run_cli(
        "simulate",
        "--pages",
        str(dump),
        *SMALL_ARGS,
        "--swap-dir",
        str(tmp_path),
        "--plot",
        str(png),
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    out = proc.stdout
    assert "RAM budget 2 MiB (512 pages" in out
    assert "swap I/O (pages)" in out and "time (seconds)" in out
    assert ("O_DIRECT" in out) or ("buffered I/O" in out)
    for n in ("2", "16", "32"):
        assert any(line.split()[:1] == [n] for line in out.splitlines())
    assert png.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--jobs", "0"), "--jobs"),
        (("--jobs", "2,x"), "--jobs"),
        (("--jobs", ""), "--jobs"),
        (("--ram-mb", "0"), "--ram-mb"),
        (("--max-pool-percent", "95"), "--max-pool-percent"),
        (("--disk-mbps", "-1"), "--disk-mbps"),
        (("--disk-mbps", "fast"), "--disk-mbps"),
        # Below the core's slowest pacing: its ConfigError, as a usage error.
        (("--disk-mbps", "0.0001", "--ram-mb", "2", "--jobs", "2"), "disk_mbps must be"),
        (("--files", "0"), "--files"),
        (("--swap-dir", "/nonexistent/zswap-rs"), "--swap-dir /nonexistent/zswap-rs"),
        (("--compressor", "nope"), "unknown compressor 'nope'"),
        (("--pages", "/nonexistent/pages.bin"), "/nonexistent/pages.bin"),
    ],
)
def test_cli_bad_arguments(args: tuple[str, ...], message: str) -> None:
    proc = run_cli("simulate", *args)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert message in proc.stderr, proc.stderr
    assert proc.stdout == ""


def test_cli_plot_without_matplotlib(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['matplotlib'] = None; "
        "from zswap_rs.cli import main; "
        f"sys.exit(main(['simulate', '--plot', {str(tmp_path / 'x.png')!r}]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert_clean_error(proc, 2, "zswap-rs: error: --plot needs matplotlib: pip install matplotlib")


# --------------------------------------------------------------------------
# Never worse than no zswap, at any budget (issue 14)


@pytest.fixture(scope="module")
def workload_pages() -> Callable[[int], list[bytes]]:
    """The pages of a built-in workload of so many MiB, each size read once."""
    cache: dict[int, list[bytes]] = {}

    def pages(mb: int) -> list[bytes]:
        if mb not in cache:
            got = collect(PageSource(workload_mb=mb))
            assert len(got.pages) > 1000
            cache[mb] = got.pages
        return cache[mb]

    return pages


# The matrix at every budget B on an 8 MiB workload, and in the shape
# `simulate --ram-mb B --workload-mb 2B --files 16 --jobs 16` where that
# shape swaps at all: at 32 and 64 MiB its base run does no swap I/O, so
# those budgets are covered by the 8 MiB rows only.
@needs_backing
@pytest.mark.parametrize(
    ("ram_mb", "workload_mb"),
    [(4, 8), (8, 8), (16, 8), (32, 8), (64, 8), (8, 16), (16, 32)],
)
def test_zswap_never_does_more_swap_io_than_base(
    ram_mb: int,
    workload_mb: int,
    workload_pages: Callable[[int], list[bytes]],
    tmp_path: Path,
) -> None:
    """Swap I/O in pages is counted, not timed: zswap in front must never add to it."""
    config = Config(jobs=(16,), ram_mb=ram_mb, files=16, disk_mbps=0, swap_dir=str(tmp_path))
    sim = simulate(zswap_rs, config, workload_pages(workload_mb), {"kind": "workload"})
    (row,) = sim.rows
    assert sim.mismatched_pages == 0
    assert row.base.io_pages > 0, "the budget is under no pressure: the case tests nothing"
    assert row.zswap.io_pages <= row.base.io_pages, (row.zswap.io_pages, row.base.io_pages)
