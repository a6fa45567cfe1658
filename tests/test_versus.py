"""`zswap-rs versus`: a small real run, and that the machine is left as it was found.

The runs here change the machine for real (zswap's parameters, a memory
cgroup, a swap file, debugfs), so they need root, the kernel's zswap and a
memory cgroup controller; CI runs as root on such a machine. Each compares
the machine before and after: every zswap parameter, the active swap areas,
this run's cgroups, debugfs, and the swap directory (which must be empty
again), after a normal run, after SIGINT to the job's process (as Ctrl-C
delivers it) and after SIGTERM to the command. The non-root refusal runs as
`nobody` (a child that drops its privileges after importing, since this
interpreter may live where `nobody` cannot read), and through the
injectable uid check. The report's logic (the % columns, the bars) is tested
on made-up results, with no machine at all.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import zswap_rs
from zswap_rs.versus import _job, _machine, _report, _run
from zswap_rs.versus._run import Config, SideResult, Versus, VersusError

PARAMS = Path("/sys/module/zswap/parameters")
#: The CI run: one level, a 32 MiB limit, a small workload, and a fifth of the
#: random pages (a region's random writes are its slowest phase; the figures
#: are not what these tests check).
SMALL = ("--limit-mb", "32", "--levels", "1", "--workload-mb", "16")
FEWER = ("--reads", "10000", "--writes", "10000")


def _machine_ok() -> str | None:
    if os.geteuid() != 0:
        return "needs root (CI runs as root)"
    if not PARAMS.is_dir():
        return "this kernel has no zswap"
    try:
        _machine.find_memory_hierarchy()
    except _machine.MachineError as e:
        return str(e)
    return None


needs_machine = pytest.mark.skipif(_machine_ok() is not None, reason=str(_machine_ok()))


def versus_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "zswap_rs.cli", "versus", *args]


def other_swap_flag() -> tuple[str, ...]:
    # Someone else's swap on this shared machine is not what these tests are about.
    return ("--allow-other-swap",) if _machine.active_swaps() else ()


def run_versus(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        versus_argv(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def machine_state(swap_dir: Path) -> dict[str, Any]:
    """Everything a run may change, as comparable values."""
    _, root = _machine.find_memory_hierarchy()
    return {
        "zswap": _machine.ZswapParameters().snapshot(),
        "swaps": sorted(a.path for a in _machine.active_swaps()),
        "cgroups": sorted(p.name for p in root.iterdir() if p.name.startswith("zswap-rs-versus")),
        "debugfs": any(t == "debugfs" for _, t, _ in _machine._mounts()),
        "swap_dir": sorted(p.name for p in swap_dir.iterdir()),
    }


def cells(line: str) -> list[str]:
    """A table row's cells: columns are two or more spaces apart."""
    return re.split(r"\s{2,}", line.strip())


def table(out: str, first: str) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the first table whose header starts with the cells of `first`."""
    lines = out.splitlines()
    want = cells(first)
    start = next(i for i, line in enumerate(lines) if cells(line)[: len(want)] == want)
    rows = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        rows.append(cells(line))
    return cells(lines[start]), rows


# --------------------------------------------------------------------------
# real runs


@needs_machine
def test_small_run_prints_both_tables_and_restores_everything(tmp_path: Path) -> None:
    before = machine_state(tmp_path)
    proc = run_versus(*SMALL, *FEWER, "--swap-dir", str(tmp_path), *other_swap_flag())
    assert proc.returncode == 0, proc.stderr
    assert machine_state(tmp_path) == before
    assert "10000 random page reads, 10000 random page writes" in proc.stdout

    header, rows = table(proc.stdout, "pressure  array  side")
    assert header == list(_report.IO_COLUMNS)
    by_side = {r[2]: r for r in rows}
    assert list(by_side) == ["kernel swap", "kernel zswap", "zswap-rs"]
    swap, zswap = by_side["kernel swap"], by_side["kernel zswap"]
    for row in (swap, zswap):
        assert row[0] == "1x" and row[1] == "32M"
        if row[3] == "OOM-killed":
            # The kernel's own outcome in so small a cgroup on a loaded machine,
            # now and then: reported as such, with why, never as figures.
            assert f"{row[2]} at 1x: OOM-killed: killed by the OOM killer" in proc.stdout
            continue
        pswpin, pswpout, io = int(row[3]), int(row[4]), int(row[5])
        assert pswpin + pswpout == io
        assert row[6 if row is swap else 7] == "base"
    # A 32 MiB array and an interpreter in a 32 MiB limit: the kernel must swap.
    if swap[3] != "OOM-killed":
        assert int(swap[5]) > 0
    if zswap[3] != "OOM-killed":
        assert int(zswap[8]) > 0, "the kernel's zswap compressed nothing: was it on?"

    header, rows = table(proc.stdout, "pressure  side")
    assert header == list(_report.TIME_COLUMNS)
    for row in rows:
        if len(row) == 3:
            continue  # not run, OOM-killed: checked above and below
        phases = [float(x) for x in row[2:7]]
        assert all(p > 0 for p in phases)
        assert float(row[7]) == pytest.approx(sum(phases), abs=0.03)
    if getattr(zswap_rs, "Region", None) is None:
        assert by_side["zswap-rs"][3] == "not run"
        assert "has no Region" in proc.stdout
    else:
        region = by_side["zswap-rs"]
        # Not run only where this machine refuses a region, and then it says why.
        assert region[3] != "FAILED", proc.stdout
        if region[3] == "not run":
            assert "zswap-rs at 1x: not run: " in proc.stdout
        else:
            assert int(region[3]) + int(region[4]) == int(region[5])
            assert int(region[8]) > 0, "the region compressed nothing"
            if _machine.find_memory_hierarchy()[0] == 1 and zswap[3] != "OOM-killed":
                # v1 left the kernel's pool outside its limit: the region got as much.
                assert re.search(
                    r"kernel zswap at 1x: its pool peaked at [\d.]+ MiB beside the 32 MiB "
                    r"limit .*so the region sides ran in [\d.]+ MiB",
                    proc.stdout,
                ), proc.stdout
    assert "bars (SPEC.md, Performance, Regions):" in proc.stdout

    header, rows = table(proc.stdout, "pressure  side  fill  us/f")
    assert header == list(_report.FAULT_COLUMNS)
    faults = {r[1]: r for r in rows}
    assert list(faults) == ["kernel swap", "kernel zswap", "zswap-rs"]
    for side, row in faults.items():
        if len(row) == 3:
            continue  # not run, OOM-killed
        counts = [int(c) for c in row[2:12:2]]
        # The random reads of a 32 MiB array in a 32 MiB limit beside an
        # interpreter must fault on every side: the kernel's swap-ins, the region's faults.
        assert counts[3] >= 100, (side, row)
        assert row[9] != "-" and float(row[9]) > 0
        for n, us in zip(counts, row[3:13:2], strict=True):
            assert (us == "-") == (n < _run.MIN_FAULTS_FOR_COST), (side, row)
    if len(faults["zswap-rs"]) > 3 and len(faults["kernel zswap"]) > 3:
        assert "a fault served by zswap-rs costs at most the kernel zswap's swap-in" in proc.stdout
        assert re.search(
            r"reads phase, us per fault\): (PASS|FAIL): 1x (PASS|FAIL) \(", proc.stdout
        )


@needs_machine
def test_json_and_plot(tmp_path: Path) -> None:
    swap_dir = tmp_path / "swap"
    swap_dir.mkdir()
    png = tmp_path / "versus.png"
    before = machine_state(swap_dir)
    proc = run_versus(
        *SMALL,
        "--sides",
        "swap,zswap",
        "--swap-dir",
        str(swap_dir),
        "--json",
        "--plot",
        str(png),
        *other_swap_flag(),
    )
    assert proc.returncode == 0, proc.stderr
    assert machine_state(swap_dir) == before
    doc = json.loads(proc.stdout)
    assert doc["config"]["limit_mb"] == 32 and doc["config"]["levels"] == [1.0]
    assert doc["compressor"] in ("lz4", "lzo")
    assert [r["side"] for r in doc["results"]] == ["swap", "zswap"]
    assert all(r["status"] in ("ok", "oom") for r in doc["results"])
    doc["results"] = [r for r in doc["results"] if r["status"] != "oom"]  # see above
    for r in doc["results"]:
        assert r["status"] == "ok", r["reason"]
        assert set(r["seconds"]) == set(_job.PHASES)
        assert r["total_seconds"] == pytest.approx(sum(r["seconds"].values()))
        assert r["io_pages"] == r["pswpin"] + r["pswpout"]
        assert r["cpu_seconds"] > 0 and r["peak_rss_bytes"] > 0
        assert r["array_bytes"] == 32 << 20
    for r in doc["results"]:
        if r["side"] == "swap":
            assert r["kernel"]["zswpout"] == 0, "zswap was on during the plain swap side"
        else:
            assert r["kernel"]["zswpout"] > 0, "the kernel's zswap compressed nothing"
            assert r["kernel_pool_peak_bytes"] > 0
        assert r["limit_bytes"] == 32 << 20  # the kernel's sides: the limit as given
    assert doc["machine"]["zswap_parameters_before"] == before["zswap"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_machine
def test_signal_side_counts_its_faults_per_phase(tmp_path: Path) -> None:
    if getattr(zswap_rs, "Region", None) is None:
        pytest.skip("this build has no Region")
    before = machine_state(tmp_path)
    proc = run_versus(
        *SMALL,
        *FEWER,
        "--sides",
        "zswap,zswap-rs,zswap-rs-signal",
        "--swap-dir",
        str(tmp_path),
        "--json",
        *other_swap_flag(),
    )
    assert proc.returncode == 0, proc.stderr
    assert machine_state(tmp_path) == before
    doc = json.loads(proc.stdout)
    assert doc["config"]["sides"] == ["zswap", "zswap-rs", "zswap-rs-signal"]
    by_side = {r["side"]: r for r in doc["results"]}
    for side in ("zswap-rs", "zswap-rs-signal"):
        r = by_side[side]
        if r["status"] == "unavailable":
            assert r["reason"], r  # a machine that refuses a region says why
            continue
        assert r["status"] == "ok", r["reason"]
        pc = r["phase_counters"]
        assert list(pc) == list(_job.PHASES)
        # Each phase's faults: the region's own plus the kernel's swap-ins of the process.
        for phase in _job.PHASES:
            c = pc[phase]
            want = c["majflt"] + c["region"]["faults"] + c["region"]["wp_faults"]
            assert r["faults"][phase] == want
            if want >= _run.MIN_FAULTS_FOR_COST:
                us = r["seconds"][phase] / want * 1e6
                assert r["us_per_fault"][phase] == pytest.approx(us)
            else:
                assert r["us_per_fault"][phase] is None
        # The per-phase region counters come from the region's own: the end's
        # totals hold them and the check's read-back after the last phase.
        total = sum(pc[p]["region"]["faults"] for p in _job.PHASES)
        assert 0 < total <= r["region_stats"]["faults"]
        assert pc["reads"]["region"]["faults"] >= 1000, pc["reads"]
        assert pc["writes"]["memcg_end"], "no memory.stat read from the job's cgroup"
        if Path("/proc/pressure/io").exists():
            assert {"io_some", "memory_some"} <= set(pc["writes"]["pressure_us"])
            assert all(v >= 0 for v in pc["writes"]["pressure_us"].values())
    zs = by_side["zswap"]
    if zs["status"] == "ok":
        assert zs["faults"]["reads"] == zs["phase_counters"]["reads"]["majflt"]
        assert zs["phase_counters"]["reads"]["region"] is None
    if by_side["zswap-rs-signal"]["status"] == "ok" and zs["status"] == "ok":
        line = next(b for b in doc["bars"] if b.startswith("a fault served by zswap-rs signal"))
        assert re.search(r": (PASS|FAIL): 1x (PASS|FAIL) \([0-9.]+ us over \d+ faults", line)


@needs_machine
def test_region_direct_io_runs_and_is_reported(tmp_path: Path) -> None:
    if getattr(zswap_rs, "Region", None) is None:
        pytest.skip("this build has no Region")
    before = machine_state(tmp_path)
    args = (*SMALL, *FEWER, "--sides", "zswap-rs", "--swap-dir", str(tmp_path))
    proc = run_versus(*args, "--region-direct-io", *other_swap_flag())
    assert proc.returncode == 0, proc.stderr
    assert machine_state(tmp_path) == before
    assert "swap file O_DIRECT; kernel zswap" in proc.stdout
    _, rows = table(proc.stdout, "pressure  array  side")
    assert rows[0][2] == "zswap-rs" and rows[0][3] != "FAILED", proc.stdout


def _wait_for_job(versus: subprocess.Popen[str], swap_dir: Path, timeout: float = 120) -> int:
    """The PID of the job's process once the kernel swaps its pages to the run's file."""
    _, root = _machine.find_memory_hierarchy()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert versus.poll() is None, versus.communicate()
        ours = [a for a in _machine.active_swaps() if a.path.startswith(str(swap_dir))]
        for group in root.glob(f"zswap-rs-versus-{versus.pid}-*"):
            pids = (group / "cgroup.procs").read_text().split() if group.exists() else []
            if pids and ours and ours[0].used_kib > 0:
                return int(pids[0])
        time.sleep(0.05)
    raise AssertionError("the job never started swapping")


@pytest.mark.parametrize(
    ("target", "signum", "code"),
    [("job", signal.SIGINT, 130), ("versus", signal.SIGTERM, 143)],
    ids=["sigint-to-the-job", "sigterm-to-versus"],
)
@needs_machine
def test_interrupted_run_restores_everything(
    tmp_path: Path, target: str, signum: int, code: int
) -> None:
    before = machine_state(tmp_path)
    versus = subprocess.Popen(
        versus_argv(*SMALL, "--swap-dir", str(tmp_path), *other_swap_flag()),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        job = _wait_for_job(versus, tmp_path)
        # zswap is off on the first side; it is put back all the same.
        os.kill(job if target == "job" else versus.pid, signum)
        out, err = versus.communicate(timeout=120)
    finally:
        if versus.poll() is None:
            versus.kill()
            versus.wait()
    assert versus.returncode == code, err
    assert "every setting was restored" in err
    assert "pressure" not in out  # no report of a run that did not finish
    assert machine_state(tmp_path) == before
    with pytest.raises(ProcessLookupError):
        os.kill(job, 0)


@needs_machine
def test_a_run_after_a_sigkilled_one_puts_back_what_it_left(tmp_path: Path) -> None:
    # SIGKILL cannot be caught: the killed run leaves its cgroup (with its
    # job still in it), its swap file on and zswap as it set it. The next
    # run puts all of it back before it starts, and says so.
    before = machine_state(tmp_path)
    killed = subprocess.Popen(
        versus_argv(*SMALL, "--swap-dir", str(tmp_path), *other_swap_flag()),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        job = _wait_for_job(killed, tmp_path)
    finally:
        killed.kill()
        killed.wait()
    left = machine_state(tmp_path)
    assert left["cgroups"] and left["swaps"] != before["swaps"], left
    assert _machine.PARAMETERS_JOURNAL.exists()
    r = run_versus(*SMALL, *FEWER, "--swap-dir", str(tmp_path), *other_swap_flag())
    assert r.returncode == 0, r.stderr
    assert f"removed the cgroup zswap-rs-versus-{killed.pid}-" in r.stdout
    assert "turned off and removed the swap file" in r.stdout
    assert f"put back the zswap parameters run {killed.pid} had changed" in r.stdout
    if not before["debugfs"]:
        assert f"unmounted the debugfs run {killed.pid} had mounted" in r.stdout
    assert machine_state(tmp_path) == before
    assert not _machine.PARAMETERS_JOURNAL.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(job, 0)


def test_leftover_parameters_of_a_live_run_are_left_alone(tmp_path: Path) -> None:
    root, journal = tmp_path / "parameters", tmp_path / "journal.json"
    root.mkdir()
    for name, value in {"enabled": "Y", "compressor": "lz4"}.items():
        (root / name).write_text(value + "\n")
    saved = {"enabled": "N", "compressor": "lzo"}
    # A live PID (this one): its run is not dead, whatever the journal says.
    journal.write_text(json.dumps({"pid": os.getpid(), "root": str(root), "saved": saved}))
    no_debugfs = tmp_path / "no-debugfs-journal"
    assert _machine.recover_leftovers(journal, swaps=list, debugfs_journal=no_debugfs) == []
    assert (root / "compressor").read_text().strip() == "lz4"
    # A PID that is gone: its parameters are put back, enabled last.
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = int(gone.stdout)
    journal.write_text(json.dumps({"pid": dead, "root": str(root), "saved": saved}))
    assert _machine.recover_leftovers(journal, swaps=list, debugfs_journal=no_debugfs) == [
        f"put back the zswap parameters run {dead} had changed"
    ]
    assert {p.name: p.read_text().strip() for p in root.iterdir()} == saved
    assert not journal.exists()
    # A journal that cannot be read is an error that names it, not a guess.
    journal.write_text("{not json")
    with pytest.raises(_machine.MachineError, match="journal.json"):
        _machine.recover_leftovers(journal, swaps=list, debugfs_journal=no_debugfs)


_AS_NOBODY = """
import os, pwd, sys
from zswap_rs.cli import main
import zswap_rs.cli.versus, zswap_rs.versus  # everything, while it can still be read
nobody = pwd.getpwnam("nobody")
if os.geteuid() == 0:
    os.setgroups([])
    os.setgid(nobody.pw_gid)
    os.setuid(nobody.pw_uid)
assert os.geteuid() != 0
sys.exit(main(["versus", "--limit-mb", "32", "--levels", "1"]))
"""


def test_not_root_is_refused_with_exit_2(tmp_path: Path) -> None:
    before = machine_state(tmp_path) if _machine_ok() is None else None
    proc = subprocess.run(
        [sys.executable, "-c", _AS_NOBODY],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("zswap-rs: error: zswap-rs versus must run as root")
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    if before is not None:
        assert machine_state(tmp_path) == before


def test_injected_uid_check_refuses_before_anything_changes() -> None:
    with pytest.raises(VersusError, match="must run as root") as e:
        _run.run(Config(limit_mb=32, levels=(1.0,)), zswap_rs, euid=lambda: 1000)
    assert e.value.code == 2


# --------------------------------------------------------------------------
# pieces, without the machine


def test_parameters_are_restored_in_order_and_failures_named(tmp_path: Path) -> None:
    for name, value in {"enabled": "N", "compressor": "lzo", "max_pool_percent": "20"}.items():
        (tmp_path / name).write_text(value + "\n")
    (tmp_path / "read_only").write_text("x\n")
    (tmp_path / "read_only").chmod(0o444)
    writes: list[str] = []
    real_write = _machine._write

    def spy(path: Path, value: str) -> None:
        writes.append(f"{path.name}={value}")
        real_write(path, value)

    _machine._write = spy  # type: ignore[assignment]
    try:
        with _machine.ZswapParameters(tmp_path) as params:
            assert set(params.saved) == {"enabled", "compressor", "max_pool_percent"}
            params.configure(enabled=True, compressor="lz4", max_pool_percent="50")
            writes.clear()
        # enabled is turned off first and put back last; only what differed is written.
        assert writes == ["enabled=N", "compressor=lzo", "max_pool_percent=20"]
        assert {p.name: p.read_text().strip() for p in tmp_path.iterdir()} == {
            "enabled": "N",
            "compressor": "lzo",
            "max_pool_percent": "20",
            "read_only": "x",
        }
    finally:
        _machine._write = real_write  # type: ignore[assignment]


def test_a_parameter_the_kernel_changes_back_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "enabled").write_text("N\n")
    (tmp_path / "compressor").write_text("lzo\n")
    with _machine.ZswapParameters(tmp_path) as params:
        with pytest.raises(_machine.MachineError, match="fell back from lz4 to lzo"):
            # What the kernel does on enable when it lacks the compressor.
            orig = params.set

            def set_and_fall_back(name: str, value: str) -> None:
                orig(name, value)
                if name == "enabled" and value == "Y":
                    (tmp_path / "compressor").write_text("lzo\n")

            params.set = set_and_fall_back  # type: ignore[method-assign]
            params.configure(enabled=True, compressor="lz4")
    assert (tmp_path / "enabled").read_text().strip() == "N"


def test_split_limit_leaves_room_and_refuses_a_limit_too_small() -> None:
    limit, baseline, pages = 128 << 20, 20 << 20, 98304
    budget, pool = _job.split_limit(limit, baseline, pages, 75)
    left = limit - baseline - pages * _job.REGION_BYTES_PER_PAGE - _job.REGION_HEADROOM
    # The pool counts against the budget (pool_in_budget): the budget is all
    # that is left, and the pool may take 75% of it.
    assert left - 4096 < budget <= left and budget % 4096 == 0
    assert pool == budget * 75 // 100
    with pytest.raises(_job.LimitTooSmall, match="leaves too little"):
        _job.split_limit(32 << 20, 30 << 20, 8192, 75)


def test_expected_total_matches_a_cycled_array(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    src = np.random.default_rng(1).integers(0, 2**63, 7 * 512, dtype=np.uint64)
    path = tmp_path / "pages.bin"
    src.tofile(path)
    sums, firsts = _job.source_sums(str(path), 7)
    arr = np.zeros(23 * 512, dtype=np.uint64)
    _job.fill(arr.view(np.uint8), str(path), 7)
    assert int(arr.sum(dtype=np.uint64)) == _job.expected_total(sums, 23)
    assert (arr[::512] == firsts[np.arange(23) % 7]).all()


def test_region_sides_get_the_kernels_uncharged_pool_on_top_of_the_limit() -> None:
    config = Config(limit_mb=128, levels=(1.0, 3.0), sides=("swap", "zswap", "zswap-rs"))
    ctx = _run._Context(config, "lz4", Path("/"), Path("/"), 1, None, None, None, None, print)  # type: ignore[arg-type]
    ctx.uncharged_pool[3.0] = (140 << 20) + 5
    limit = 128 << 20
    # Page-rounded, for region sides only, and only at the level it was seen.
    assert _run.side_limit(ctx, 3.0, "zswap-rs") == limit + (140 << 20) + 4096
    assert _run.side_limit(ctx, 3.0, "zswap-rs-signal") == limit + (140 << 20) + 4096
    assert _run.side_limit(ctx, 3.0, "zswap") == limit
    assert _run.side_limit(ctx, 3.0, "swap") == limit
    assert _run.side_limit(ctx, 1.0, "zswap-rs") == limit
    rows = [_result(3.0, "zswap", 1.0, 0), _result(3.0, "zswap-rs", 1.0, 0)]
    rows[0].kernel_pool_peak_bytes = 140 << 20
    rows[1].limit_bytes = _run.side_limit(ctx, 3.0, "zswap-rs")
    v = _versus(rows)
    v.config = config
    notes = _report.footnotes(v)
    assert any("beside the 128 MiB limit" in n and "268.0 MiB" in n for n in notes), notes


def _result(level: float, side: str, total: float | None, io: int | None) -> SideResult:
    if total is None:
        return SideResult(level, side, 1 << 20, "oom", reason="killed")
    r = SideResult(level, side, 1 << 20, "ok", pswpin=0, pswpout=io)
    r.seconds = dict.fromkeys(_job.PHASES, total / len(_job.PHASES))
    return r


def _versus(rows: list[SideResult]) -> Versus:
    levels = tuple(dict.fromkeys(r.level for r in rows))
    return Versus(Config(limit_mb=32, levels=levels), "lzo", {}, {}, rows)


def test_percent_columns_and_bars() -> None:
    v = _versus(
        [
            _result(1, "swap", 10.0, 1000),
            _result(1, "zswap", 4.0, 0),
            _result(1, "zswap-rs", 2.0, 100),
            _result(4, "swap", 40.0, 10000),
            _result(4, "zswap", 20.0, 3000),
            _result(4, "zswap-rs", 12.0, 2000),
        ]
    )
    io = {(r[0], r[2]): r for r in _report.io_rows(v)}
    assert io[("1x", "zswap-rs")][6:8] == ["-90%", "-"]  # no % of a zero
    assert io[("4x", "zswap-rs")][6:8] == ["-80%", "-33%"]
    times = {(r[0], r[1]): r for r in _report.time_rows(v)}
    assert times[("4x", "zswap-rs")][8:10] == ["-70%", "-40%"]
    bars = _report.bars(v)
    assert bars[0].endswith("faster than the kernel's zswap at every pressure measured: holds")
    assert bars[1].endswith("1.5x faster than the kernel's zswap: holds (1.67x)")
    assert bars[2].endswith("76% less swap I/O than the kernel's swap: holds (80% less)")


def test_bars_say_what_fails_and_what_was_not_measured() -> None:
    v = _versus(
        [
            _result(1, "swap", 10.0, 1000),
            _result(1, "zswap", 4.0, 0),
            _result(1, "zswap-rs", 5.0, 0),
            _result(3, "swap", 30.0, 9000),
            _result(3, "zswap", None, None),
            _result(3, "zswap-rs", 20.0, 4000),
        ]
    )
    bars = _report.bars(v)
    assert bars[0] == "not measured at 3x (kernel zswap OOM-killed)"
    assert "does not hold at 1x (5.00 s vs 4.00 s)" in bars[1]
    assert bars[2].endswith("does not hold (56% less)")
    v.results[-1].pswpout = 18000
    assert _report.bars(v)[2].endswith("does not hold (100% more)")
    text = _report.format_report(v)
    assert "OOM-killed" in text and "kernel zswap at 3x: OOM-killed: killed" in text


def test_default_limit_follows_free_memory(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    for avail_mib, want in ((24000, 128), (4000, 48), (1000, 32)):
        meminfo.write_text(f"MemTotal: 1 kB\nMemAvailable: {avail_mib * 1024} kB\n")
        assert _run.default_limit_mb(meminfo) == want


def _with_faults(r: SideResult, reads: int, writes: int, majflt: int = 0) -> SideResult:
    """`r` with made-up counters: its reads and writes phases took these faults."""
    for p in _job.PHASES:
        n = {"reads": reads, "writes": writes}.get(p, 0)
        region = {"faults": n, "wp_faults": 0} if r.is_region else None
        r.phase_counters[p] = {"majflt": majflt if r.is_region else n, "region": region}
    return r


def test_fault_columns_and_the_per_fault_bar() -> None:
    v = _versus(
        [
            _with_faults(_result(1, "zswap", 5.0, 0), reads=10_000, writes=50),
            _with_faults(_result(1, "zswap-rs", 2.5, 100), reads=20_000, writes=4_000, majflt=10),
            _with_faults(_result(3, "zswap", 5.0, 0), reads=50_000, writes=50_000),
            _with_faults(_result(3, "zswap-rs", 5.0, 100), reads=20_000, writes=20_000),
        ]
    )
    rows = {(r[0], r[1]): r for r in _report.fault_rows(v)}
    col = {c: i for i, c in enumerate(_report.FAULT_COLUMNS) if c != "us/f"}
    # zswap: 1 s per phase over 10,000 faults is 100 us; 50 faults are too few to divide by.
    assert rows[("1x", "kernel zswap")][col["reads"] : col["reads"] + 2] == ["10000", "100.0"]
    assert rows[("1x", "kernel zswap")][col["writes"] : col["writes"] + 2] == ["50", "-"]
    # zswap-rs: the region's faults plus the process's major faults (0.5 s / 20,010).
    assert rows[("1x", "zswap-rs")][col["reads"] : col["reads"] + 2] == ["20010", "25.0"]
    assert rows[("1x", "zswap-rs")][-1] == "50"  # 10 major faults in each of 5 phases
    line = next(b for b in _report.bars(v) if b.startswith("a fault served by zswap-rs"))
    assert line.endswith(
        ": FAIL: 1x PASS (25.0 us over 20010 faults vs 100.0 us over 10000); "
        "3x FAIL (50.0 us over 20000 faults vs 20.0 us over 50000)"
    )
    v.results[3].phase_counters["reads"]["region"]["faults"] = 10
    line = next(b for b in _report.bars(v) if b.startswith("a fault served by zswap-rs"))
    assert line.endswith(
        ": PASS: 1x PASS (25.0 us over 20010 faults vs 100.0 us over 10000); "
        "3x not measured (zswap-rs under 100 faults)"
    )
    assert "kernel majflt" in _report.format_report(v)


def test_the_signal_side_is_opt_in_and_has_bars_of_its_own() -> None:
    assert Config(limit_mb=32).sides == ("swap", "zswap", "zswap-rs")
    assert "zswap-rs-signal" in _run.SIDES and _run.REGION_SIDES["zswap-rs-signal"] == "signal"
    rows = [
        _with_faults(_result(1, "zswap", 4.0, 0), reads=10_000, writes=10_000),
        _with_faults(_result(1, "zswap-rs-signal", 2.0, 0), reads=10_000, writes=10_000),
    ]
    v = Versus(
        Config(limit_mb=32, levels=(1.0,), sides=("zswap", "zswap-rs-signal")), "lzo", {}, {}, rows
    )
    bars = _report.bars(v)
    assert (
        bars[0]
        == "zswap-rs signal faster than the kernel's zswap at every pressure measured: holds"
    )
    assert bars[1].startswith("zswap-rs signal: at the heaviest (1x), 1.5x faster")
    assert any(b.startswith("a fault served by zswap-rs signal costs at most") for b in bars)
    assert not any(b.startswith("a fault served by zswap-rs costs") for b in bars)
    assert [r[1] for r in _report.time_rows(v)] == ["kernel zswap", "zswap-rs signal"]


def test_bad_options_exit_2() -> None:
    for args in (("--levels", "0"), ("--levels", "x"), ("--limit-mb", "8"), ("--sides", "zram")):
        proc = run_versus(*args, timeout=60)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
