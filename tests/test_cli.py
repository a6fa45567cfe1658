"""The `zswap-rs` command line: `profile` (workload, --pid, --pages, --json, --plot) and `info`.

Most tests run the command as a user does, `python -m zswap_rs.cli ...` in a
subprocess, and check its exit code, its stdout and that expected errors come
without a traceback. They need the compiled module, as CI has it. The
built-in workload is kept small except in one test, which runs the default.
"""

from __future__ import annotations

import json
import mmap
import os
import re
import signal
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import run_cli

import zswap_rs
from zswap_rs import cli
from zswap_rs.cli import info as info_command
from zswap_rs.cli import library, report
from zswap_rs.cli.profile import CompressorResult

PS = 4096
CHILD_PAGES = 2048  # 8 MiB of the child's own, on top of the interpreter's heap

# A process to profile: 8 MiB of mixed content (text, random bytes, zeros),
# written so that every page is resident; it says "ready" and waits.
CHILD = rf"""
import random, sys
rng = random.Random(1)
words = b"alpha beta gamma delta page swap pool entry tree".split()
text = bytearray(b" ".join(rng.choice(words) for _ in range({CHILD_PAGES} * 4096 // 12)))
noise = rng.randbytes({CHILD_PAGES} * 4096 // 4)
zeros = bytearray(1) * ({CHILD_PAGES} * 4096 // 4)
print("ready", flush=True)
sys.stdin.readline()
"""


def assert_clean_error(proc: subprocess.CompletedProcess[str], code: int, message: str) -> None:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"zswap-rs: error: {message}" in proc.stderr, proc.stderr
    assert proc.stdout == ""


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        yield proc
    finally:
        proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


#: The workload script of the installation under test: other checkouts on the
#: same machine may run their own workloads meanwhile.
WORKLOAD_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(zswap_rs.__file__)), "_workload.py")


def workload_pids() -> set[int]:
    """PIDs of any built-in workload process (of this installation) alive now."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if WORKLOAD_SCRIPT.encode() in cmdline:
                pids.add(int(entry.name))
    return pids


def parse_table(stdout: str) -> dict[str, dict[str, str]]:
    """The profile table as {compressor: {column: cell}} (columns are 2+ spaces apart)."""
    lines = stdout.splitlines()
    header_at = next(i for i, line in enumerate(lines) if line.startswith("compressor "))
    header = re.split(r"\s{2,}", lines[header_at].strip())
    assert header == list(report.PROFILE_COLUMNS)
    rows = {}
    for line in lines[header_at + 1 :]:
        cells = re.split(r"\s{2,}", line.strip())
        assert len(cells) == len(header), line
        rows[cells[0]] = dict(zip(header, cells, strict=True))
    return rows


def check_figures(entry: dict[str, Any], pages: int) -> None:
    """A compressor's JSON figures must follow from its raw stats."""
    stats = entry["stats"]
    assert entry["pages"] == pages
    assert sum(entry["outcomes"].values()) == pages
    assert entry["mismatched_pages"] == 0
    assert entry["same_filled_pages"] == stats["same_filled_pages"]
    assert entry["same_filled_pct"] == pytest.approx(100 * stats["same_filled_pages"] / pages)
    # stored_pages counts the same-filled pages too (as the kernel's does).
    compressed = stats["stored_pages"] - stats["same_filled_pages"]
    assert entry["compressed_pages"] == compressed == entry["outcomes"].get("STORED", 0)
    assert entry["outcomes"].get("SAME_FILLED", 0) == stats["same_filled_pages"]
    assert entry["compressed_bytes"] == stats["compr_data_size"]
    assert entry["pool_bytes"] == stats["mem_used_total"]
    assert entry["ratio"] == pytest.approx(compressed * PS / stats["compr_data_size"])
    rejected = sum(v for k, v in stats.items() if k.startswith("reject_"))
    assert entry["rejected_pages"] == rejected == entry["outcomes"].get("REJECTED", 0)
    assert entry["rejected_pct"] == pytest.approx(100 * rejected / pages)
    assert entry["overhead_pct"] == pytest.approx(
        100 * (stats["mem_used_total"] / stats["compr_data_size"] - 1)
    )
    assert entry["loaded_pages"] == stats["stored_pages"]
    assert entry["store_ns_per_page"] > 0 and entry["load_ns_per_page"] > 0


# --------------------------------------------------------------------------
# profile


def test_profile_builtin_workload_table() -> None:
    before = workload_pids()
    proc = run_cli("profile")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout.startswith("built-in workload (150 MiB Python heap")
    rows = parse_table(proc.stdout)
    available = [n for n, info in zswap_rs.compressors().items() if info.available]
    assert list(rows) == available
    lz4 = rows["lz4"]
    assert int(lz4["pages"]) > 1000
    assert float(lz4["ratio"].rstrip("x")) > 1
    assert float(lz4["same-filled"].rstrip("%")) > 0
    assert 0 <= float(lz4["rejected"].rstrip("%")) < 100
    assert lz4["pool"].endswith("MiB") and lz4["compressed"].endswith("MiB")
    assert int(lz4["store ns/page"]) > 0 and int(lz4["load ns/page"]) > 0
    # The workload was ended.
    assert workload_pids() <= before


def test_profile_json_figures_agree_with_stats() -> None:
    proc = run_cli("profile", "--json", "--workload-mb", "24")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["zswap_rs_version"] == zswap_rs.__version__
    assert doc["page_size"] == PS
    assert doc["source"]["kind"] == "workload"
    assert doc["source"]["workload_mb"] == 24
    assert doc["pages"] > 1000
    available = [n for n, info in zswap_rs.compressors().items() if info.available]
    assert [c["compressor"] for c in doc["compressors"]] == available
    assert "lz4" in available
    for entry in doc["compressors"]:
        check_figures(entry, doc["pages"])
        assert entry["ratio"] > 1
        assert entry["same_filled_pct"] > 0


def test_profile_pid(child: subprocess.Popen[bytes]) -> None:
    proc = run_cli("profile", "--pid", str(child.pid), "--json", "--compressor", "lz4")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["source"]["kind"] == "pid" and doc["source"]["pid"] == child.pid
    assert doc["source"]["command"].startswith("python")
    assert doc["pages"] >= CHILD_PAGES
    (lz4,) = doc["compressors"]
    check_figures(lz4, doc["pages"])
    # A quarter of the child's own pages are zeros, a quarter random bytes.
    assert lz4["same_filled_pages"] >= CHILD_PAGES // 4 * 0.9
    assert lz4["rejected_pages"] >= CHILD_PAGES // 4 * 0.9

    table = run_cli("profile", "--pid", str(child.pid), "--compressor", "lz4")
    assert table.returncode == 0, table.stderr
    assert table.stdout.startswith(f"PID {child.pid}")
    assert "lz4" in parse_table(table.stdout)


def test_profile_missing_pid() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert_clean_error(
        run_cli("profile", "--pid", str(gone.pid)), 2, f"no process with PID {gone.pid}"
    )


def test_save_pages_and_profile_them_again(child: subprocess.Popen[bytes], tmp_path: Path) -> None:
    dump = tmp_path / "child.pages"
    first = run_cli(
        "profile", "--pid", str(child.pid), "--json", "--compressor", "lz4",
        "--max-pages", "1200", "--save-pages", str(dump),
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    a = json.loads(first.stdout)
    assert dump.stat().st_size == a["pages"] * PS
    # The child's text and noise alone are 1536 resident pages.
    assert a["pages"] == 1200

    second = run_cli("profile", "--pages", str(dump), "--json", "--compressor", "lz4")
    assert second.returncode == 0, second.stderr
    b = json.loads(second.stdout)
    assert b["source"] == {"kind": "pages", "path": str(dump)}
    assert b["pages"] == a["pages"]
    # The same pages give the same pool, byte for byte.
    for key in ("stored_pages", "same_filled_pages", "compr_data_size", "reject_compress_poor"):
        assert a["compressors"][0]["stats"][key] == b["compressors"][0]["stats"][key], key

    short = run_cli("profile", "--pages", str(dump), "--max-pages", "10", "--compressor", "lz4")
    assert short.returncode == 0, short.stderr
    assert parse_table(short.stdout)["lz4"]["pages"] == "10"


def test_profile_bad_page_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pages"
    bad.write_bytes(bytes(PS * 2 + 1))
    assert_clean_error(
        run_cli("profile", "--pages", str(bad)), 2, f"{bad}: 8193 bytes is not a whole number"
    )
    missing = tmp_path / "nope"
    assert_clean_error(run_cli("profile", "--pages", str(missing)), 2, f"{missing}: no such file")


def test_profile_usage_errors() -> None:
    assert run_cli("profile", "--pid", "1", "--pages", "x").returncode == 2
    assert run_cli("profile", "--pid", "0").returncode == 2
    assert run_cli("profile", "--max-pages", "-3").returncode == 2
    assert run_cli().returncode == 2
    assert_clean_error(
        run_cli("profile", "--compressor", "snappy"), 2, "unknown compressor 'snappy'"
    )
    unavailable = [n for n, i in zswap_rs.compressors().items() if not i.available]
    if unavailable:
        name = unavailable[0]
        assert_clean_error(
            run_cli("profile", "--compressor", name), 2, f"compressor {name!r} is not available"
        )


def test_plot_without_matplotlib(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['matplotlib'] = None; "
        "from zswap_rs.cli import main; "
        f"sys.exit(main(['profile', '--plot', {str(tmp_path / 'x.png')!r}]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert_clean_error(proc, 2, "--plot needs matplotlib: pip install matplotlib")


def test_plot(child: subprocess.Popen[bytes], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")  # the optional `plot` extra
    png = tmp_path / "profile.png"
    proc = run_cli("profile", "--pid", str(child.pid), "--plot", str(png))
    assert proc.returncode == 0, proc.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ctrl_c_ends_the_workload() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "zswap_rs.cli", "profile", "--workload-mb", "400"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    started: set[int] = set()
    while not started and time.monotonic() < deadline:
        started = {p for p in workload_pids() if _ppid(p) == proc.pid}
        time.sleep(0.05)
    assert started, "the workload did not start"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "zswap-rs: interrupted" in err and "Traceback" not in err
    assert not started & workload_pids()


def _ppid(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return -1
    return int(stat.rpartition(b")")[2].split()[1])


def test_mismatch_is_reported_as_a_bug(
    child: subprocess.Popen[bytes],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    class Corrupting:
        """A Zswap whose loads of odd offsets come back with one bit flipped."""

        def __init__(self, **kwargs: Any) -> None:
            self.z = zswap_rs.Zswap(**kwargs)

        def __enter__(self) -> Corrupting:
            return self

        def __exit__(self, *exc: object) -> None:
            self.z.close()

        def __getattr__(self, name: str) -> Any:
            return getattr(self.z, name)

        def load(self, t: int, offset: int) -> bytes:
            data = self.z.load(t, offset)
            return bytes([data[0] ^ 1]) + data[1:] if offset % 2 else data

    fake = types.SimpleNamespace(
        Zswap=Corrupting,
        compressors=zswap_rs.compressors,
        ZswapError=zswap_rs.ZswapError,
        __version__=zswap_rs.__version__,
    )
    monkeypatch.setattr(library, "zswap", lambda: fake)
    code = cli.main(["profile", "--pid", str(child.pid), "--compressor", "lz4", "--json"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "zswap-rs: error: BUG: lz4:" in err and "differ from what was stored" in err
    (entry,) = json.loads(out)["compressors"]
    assert entry["mismatched_pages"] > 0
    assert all(o % 2 for o in entry["mismatched_offsets"])


# --------------------------------------------------------------------------
# mkswap


def test_mkswap_new_path_makes_a_swap_file(tmp_path: Path) -> None:
    path = tmp_path / "new.swap"
    proc = run_cli("mkswap", str(path), "--pages", "64")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{path}: swap area of 64 pages of {PS} bytes (256.0 KiB)\n"
    assert path.stat().st_mode & 0o777 == 0o600
    with zswap_rs.Zswap() as z:  # swapon takes it as a zswap-rs swap file
        t = z.swapon(str(path), pages=64)
        z.swapoff(t)


def test_mkswap_refuses_a_users_file_and_force_overrides(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    data = b"a user's notes, not a swap file\n" * 1000
    path.write_bytes(data)
    proc = run_cli("mkswap", str(path), "--pages", "16")
    assert_clean_error(proc, 2, f"mkswap: {path} is refused as a swap file")
    assert path.read_bytes() == data  # untouched
    forced = run_cli("mkswap", str(path), "--pages", "16", "--force")
    assert forced.returncode == 0, forced.stderr
    assert path.read_bytes() != data
    with zswap_rs.Zswap() as z:
        z.swapoff(z.swapon(str(path), pages=16))


def test_mkswap_page_size_goes_into_the_header(tmp_path: Path) -> None:
    path = tmp_path / "big-pages.swap"
    proc = run_cli("mkswap", str(path), "--pages", "8", "--page-size", "8192")
    assert proc.returncode == 0, proc.stderr
    with zswap_rs.Zswap(page_size=8192) as z:
        z.swapoff(z.swapon(str(path), pages=8))
    with zswap_rs.Zswap() as z, pytest.raises(zswap_rs.BackingStoreError):
        z.swapon(str(path), pages=8)  # a file of another page size is refused


def test_mkswap_usage_errors(tmp_path: Path) -> None:
    assert run_cli("mkswap", str(tmp_path / "x.swap")).returncode == 2  # --pages is required
    assert run_cli("mkswap", str(tmp_path / "x.swap"), "--pages", "0").returncode == 2
    assert not (tmp_path / "x.swap").exists()


# --------------------------------------------------------------------------
# info


def test_info() -> None:
    proc = run_cli("info")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"zswap-rs {zswap_rs.__version__}\n")
    assert f"page size: {PS} bytes" in proc.stdout
    infos = zswap_rs.compressors()
    for name, info in infos.items():
        (line,) = [ln for ln in proc.stdout.splitlines() if ln.split()[:1] == [name]]
        assert line.split()[1] == ("yes" if info.available else "no")
        if not info.available:
            assert info.reason in line

    doc = json.loads(run_cli("info", "--json").stdout)
    assert doc["version"] == zswap_rs.__version__
    assert set(doc["compressors"]) == set(infos)
    assert doc["compressors"]["lz4"]["available"] is True


def test_info_says_whether_userfaultfd_is_usable() -> None:
    usable, mode, reason = zswap_rs.userfaultfd_status()
    text = run_cli("info")
    assert text.returncode == 0, text.stderr
    (line,) = [ln for ln in text.stdout.splitlines() if ln.startswith("userfaultfd: ")]
    if usable:
        assert line.startswith(f"userfaultfd: usable ({mode}")
    else:
        assert line.startswith("userfaultfd: not usable") and line.endswith(f": {reason}")
    uffd = json.loads(run_cli("info", "--json").stdout)["userfaultfd"]
    assert (uffd["usable"], uffd["mode"], uffd["reason"]) == (usable, mode, reason or None)
    sysctl = Path("/proc/sys/vm/unprivileged_userfaultfd")
    assert uffd["unprivileged_userfaultfd"] == (
        int(sysctl.read_text()) if sysctl.exists() else None
    )
    if os.geteuid() == 0 and sysctl.exists() and not _seccomp():
        # Root may always call userfaultfd(2) where the kernel has it (the
        # sysctl says so), unless a seccomp filter (a container's) forbids it.
        assert mode == "syscall"
    # Signal mode: usable wherever userfaultfd is (every kernel a region
    # runs on has UFFD_FEATURE_SIGBUS), said on the same line.
    assert uffd["signal_mode"] == {"usable": usable, "reason": None}
    if usable:
        assert line.endswith("; signal mode: usable")


def test_info_says_why_signal_mode_is_refused() -> None:
    """Signal mode fails, with the region's own message, once the process's signal table is full."""
    if not zswap_rs.userfaultfd_status()[0]:
        pytest.skip("userfaultfd is not usable here")
    page = mmap.PAGESIZE
    regions = []
    try:
        while len(regions) < 1000:
            try:
                regions.append(zswap_rs.Region(page, budget=page, faults="signal"))
            except (zswap_rs.ZswapError, OSError) as e:
                refused = str(e)
                break
        else:
            pytest.fail("1000 signal-mode regions were all made")
        assert info_command._signal_mode(zswap_rs) == {"usable": False, "reason": refused}
        line = info_command._userfaultfd_line(info_command._userfaultfd())
        assert line.endswith(f"; signal mode: not usable: {refused}")
    finally:
        for r in regions:
            r.close()
    assert info_command._signal_mode(zswap_rs) == {"usable": True, "reason": None}


def _seccomp() -> bool:
    """Is this process under a seccomp filter (as in a container)?"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Seccomp:"):
            return line.split()[1] != "0"
    return False


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to drop to nobody")
def test_info_as_nobody_says_why_userfaultfd_is_refused() -> None:
    """As nobody, the system call needs the sysctl and the device its mode bits."""
    code = (
        "import os, sys\n"
        "from zswap_rs import cli\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "sys.exit(cli.main(['info']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith("userfaultfd: ")]
    sysctl = Path("/proc/sys/vm/unprivileged_userfaultfd")
    if not sysctl.exists():
        pytest.skip("this kernel has no userfaultfd")
    device = Path("/dev/userfaultfd")
    if sysctl.read_text().strip() == "1":
        assert line.startswith("userfaultfd: usable (syscall")
    elif device.exists() and device.stat().st_mode & 0o006 == 0o006:
        assert line.startswith("userfaultfd: usable (/dev/userfaultfd")
    else:
        assert line.startswith("userfaultfd: not usable (vm.unprivileged_userfaultfd = 0): ")
        assert "sysctl vm.unprivileged_userfaultfd=1" in line and "/dev/userfaultfd" in line


def test_version_and_help() -> None:
    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"zswap-rs {zswap_rs.__version__}"
    assert cli.main(["profile", "--help"]) == 0


# --------------------------------------------------------------------------
# Formatting, from made-up stats


def made_up_result() -> CompressorResult:
    return CompressorResult(
        compressor="lz4",
        pages=1000,
        page_size=PS,
        outcomes={"STORED": 800, "SAME_FILLED": 150, "REJECTED": 50},
        store_ns=2_500_000,
        load_ns=950_000,
        loaded_pages=950,
        stats={
            "stored_pages": 950,
            "same_filled_pages": 150,
            "reject_compress_poor": 50,
            "reject_alloc_fail": 0,
            "compr_data_size": 800 * PS // 4,
            "mem_used_total": 800 * PS // 4 * 105 // 100,
            "orig_data_size": 950 * PS,
        },
    )


def test_figures_from_stats() -> None:
    r = made_up_result()
    assert r.ratio == pytest.approx(4.0)
    assert r.same_filled_pct == pytest.approx(15.0)
    assert r.rejected_pct == pytest.approx(5.0)
    assert r.overhead_pct == pytest.approx(5.0)
    assert r.store_ns_per_page == pytest.approx(2500)
    assert r.load_ns_per_page == pytest.approx(1000)
    assert report.profile_row(r) == [
        "lz4", "1000", "15.0%", "4.00x", "5.0%", "840.0 KiB", "800.0 KiB", "5.0%", "2500", "1000",
    ]  # fmt: skip
    empty = CompressorResult("zstd", 10, PS, {"SAME_FILLED": 10}, 100, 50, 10, {})
    assert empty.ratio is None and empty.overhead_pct is None
    assert report.profile_row(empty)[3] == "-"


def test_table_is_aligned() -> None:
    rows = [
        report.profile_row(made_up_result()),
        ["deflate-iaa", "7", "-", "-", "-", "0 B", "0 B", "-", "1", "2"],
    ]
    lines = report.format_table(report.PROFILE_COLUMNS, rows).splitlines()
    assert len(lines) == 3
    assert len({len(line) for line in lines}) == 1  # right-aligned numbers end together
    assert lines[2].startswith("deflate-iaa ")


def test_progress_bar_only_on_a_terminal() -> None:
    class Tty(list[str]):
        def isatty(self) -> bool:
            return True

        def write(self, s: str) -> None:
            self.append(s)

        def flush(self) -> None:
            pass

    tty = Tty()
    with report.Progress("reading", 200, stream=tty) as bar:  # type: ignore[arg-type]
        bar.update(90, force=True)
    assert "\rreading [#############.................]  45% 90/200 pages" in tty
    assert tty[-1].strip() == ""  # the line is cleared at the end

    class Pipe(Tty):
        def isatty(self) -> bool:
            return False

    pipe = Pipe()
    with report.Progress("reading", 200, stream=pipe) as bar:  # type: ignore[arg-type]
        bar.update(90, force=True)
    assert pipe == []


def test_main_returns_usage_code_for_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["profile", "--pid", "abc"]) == 2
    assert "not a whole number" in capsys.readouterr().err


def test_cli_imports_no_matplotlib_until_it_plots() -> None:
    code = "import sys, zswap_rs.cli; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
