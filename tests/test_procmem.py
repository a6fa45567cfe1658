"""Reading a live process's memory and page dumps (`zswap_rs._procmem`), and the workload.

These need no compiled module: `_procmem` and `_workload` are loaded from
their files, so that they are tested before (and apart from) the Rust core.
Each test starts the processes it reads and ends them.
"""

from __future__ import annotations

import importlib.util
import mmap
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

PKG = Path(__file__).resolve().parents[1] / "python" / "zswap_rs"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"zswap_rs_test_{name}", PKG / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


procmem = _load("_procmem")
workload = _load("_workload")

PS = mmap.PAGESIZE
PATTERN_PAGES = 64
SPARSE_BYTES = 64 << 20
SPARSE_TOUCHED = (0, 1000, 5000, SPARSE_BYTES // PS - 1)

# A child with known memory: PATTERN_PAGES private anonymous pages that each
# say which they are, 1 MiB of malloc'd memory filled with 0x5a, and a 64 MiB
# mapping of which only four pages are ever written (huge pages off, so that
# touching a byte does not make 512 pages resident). It prints the three
# addresses and waits for a line on stdin.
CHILD = rf"""
import ctypes, mmap, sys
ps = mmap.PAGESIZE
flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
pattern = mmap.mmap(-1, {PATTERN_PAGES} * ps, flags=flags)
for i in range({PATTERN_PAGES}):
    pattern[i * ps:(i + 1) * ps] = (b"ZSWAPTEST-%05d-" % i).ljust(ps, b"\xa5")
heap = bytearray(b"\x5a") * (1 << 20)
sparse = mmap.mmap(-1, {SPARSE_BYTES}, flags=flags)
sparse.madvise(mmap.MADV_NOHUGEPAGE)
for i in {SPARSE_TOUCHED}:
    sparse[i * ps] = 1
def addr(obj):
    return ctypes.addressof(ctypes.c_char.from_buffer(obj))
print(addr(pattern), addr(heap), addr(sparse), flush=True)
sys.stdin.readline()
"""


class Child:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, "the child died before it was ready"
        self.pattern, self.heap, self.sparse = map(int, line.split())
        self.pid = self.proc.pid

    def end(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def child() -> Iterator[Child]:
    c = Child()
    try:
        yield c
    finally:
        c.end()


def _pattern_page(i: int) -> bytes:
    return (b"ZSWAPTEST-%05d-" % i).ljust(PS, b"\xa5")


# --------------------------------------------------------------------------
# /proc/PID/maps


MAPS = """\
55d0c8a00000-55d0c8a21000 r--p 00000000 08:01 1311  /usr/bin/python3.11
55d0c9b5e000-55d0c9d0e000 rw-p 00000000 00:00 0     [heap]
7f1e2c000000-7f1e2c021000 rw-p 00000000 00:00 0
7f1e30000000-7f1e30400000 rw-s 00000000 00:01 2048  /dev/zero (deleted)
7f1e34000000-7f1e34001000 rw-p 00001000 08:01 1312  /usr/lib/libc.so.6
7f1e38000000-7f1e38001000 ---p 00000000 00:00 0
7f1e3c000000-7f1e3c100000 rw-p 00000000 00:00 0     [anon:jemalloc arena]
7f1e3d000000-7f1e3d100000 rw-s 00000000 00:00 0     [anon_shmem:buf]
7f1e3e000000-7f1e3e001000 rw-p 00000000 00:05 77    /memfd:x (deleted)
7ffd5e3a9000-7ffd5e3ca000 rw-p 00000000 00:00 0     [stack]
7ffd5e3f5000-7ffd5e3f9000 r--p 00000000 00:00 0     [vvar]
7ffd5e3f9000-7ffd5e3fb000 r-xp 00000000 00:00 0     [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0  [vsyscall]
7f1e3f000000-7f1e3f001000 rw-p 00000000 08:01 1313  /home/a b/data file.bin
"""


def test_parse_maps_fields() -> None:
    maps = procmem.parse_maps(MAPS)
    assert len(maps) == 14
    heap = maps[1]
    assert (heap.start, heap.end, heap.perms, heap.inode, heap.path) == (
        0x55D0C9B5E000,
        0x55D0C9D0E000,
        "rw-p",
        0,
        "[heap]",
    )
    assert maps[2].path == ""
    assert maps[-1].path == "/home/a b/data file.bin"
    assert maps[4].offset == 0x1000


def test_private_anonymous_selection() -> None:
    kept = [m for m in procmem.parse_maps(MAPS) if procmem.is_private_anonymous(m)]
    assert [m.path for m in kept] == ["[heap]", "", "", "[anon:jemalloc arena]", "[stack]"]


# --------------------------------------------------------------------------
# A live process


def test_reads_the_pattern_pages(child: Child) -> None:
    with procmem.ProcessMemory(child.pid) as pm:
        assert pm.estimate > PATTERN_PAGES
        pages = dict(pm.pages_with_addresses())
        assert not pm.exited
        assert pm.pages_read == len(pages) == pm.estimate
    for i in range(PATTERN_PAGES):
        assert pages[child.pattern + i * PS] == _pattern_page(i)
    # The malloc'd buffer is not page-aligned, but its inner pages are all 0x5a.
    inner = (child.heap + PS - 1) // PS * PS
    assert pages[inner] == b"\x5a" * PS
    assert pages[inner + 100 * PS] == b"\x5a" * PS


def test_untouched_pages_are_skipped(child: Child) -> None:
    with procmem.ProcessMemory(child.pid) as pm:
        in_sparse = [
            addr
            for addr, _ in pm.pages_with_addresses()
            if child.sparse <= addr < child.sparse + SPARSE_BYTES
        ]
    # Four pages written of 16384: the rest must not pose as zero pages.
    assert in_sparse == [child.sparse + i * PS for i in SPARSE_TOUCHED]


def test_max_pages_and_smaller_page_size(child: Child) -> None:
    with procmem.ProcessMemory(child.pid) as pm:
        assert len(list(pm.pages(max_pages=10))) == 10
    half = PS // 2
    with procmem.ProcessMemory(child.pid, page_size=half) as pm:
        pages = dict(pm.pages_with_addresses())
        assert pm.estimate == len(pages)
    first = _pattern_page(3)
    assert pages[child.pattern + 3 * PS] == first[:half]
    assert pages[child.pattern + 3 * PS + half] == first[half:]


def test_missing_pid() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with pytest.raises(procmem.NoSuchProcess, match=f"no process with PID {gone.pid}$"):
        procmem.ProcessMemory(gone.pid)
    assert isinstance(procmem.NoSuchProcess(1), procmem.SourceError)


def test_zombie() -> None:
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        while Path(f"/proc/{zombie.pid}/stat").read_bytes().rpartition(b")")[2].split()[0] != b"Z":
            time.sleep(0.01)
        with pytest.raises(procmem.NoSuchProcess, match=f"PID {zombie.pid} has exited"):
            procmem.ProcessMemory(zombie.pid)
    finally:
        zombie.wait()


def test_process_exiting_mid_read(child: Child) -> None:
    pm = procmem.ProcessMemory(child.pid)
    assert pm.estimate > 0
    child.end()  # killed and reaped after the scan, before the read
    pages = list(pm.pages())
    pm.close()
    assert pm.exited
    assert len(pages) < pm.estimate


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to another user")
def test_permission_denied(child: Child) -> None:
    # A forked copy of this process drops to user nobody and tries to read a
    # process of root's: the kernel's ptrace check refuses.
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the forked child
        code = 1
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            try:
                procmem.ProcessMemory(child.pid)
            except procmem.AccessDenied as e:
                os.write(w, str(e).encode())
                code = 0
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        message = f.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "AccessDenied was not raised"
    assert f"PID {child.pid}: permission denied" in message
    assert "ptrace" in message and "same user" in message


# --------------------------------------------------------------------------
# Page dumps


def test_page_file_round_trip(tmp_path: Path) -> None:
    pages = [bytes([i]) * PS for i in range(5)]
    path = tmp_path / "dump.pages"
    procmem.write_page_file(path, pages)
    assert path.stat().st_size == 5 * PS
    pf = procmem.PageFile(path, PS)
    assert pf.estimate == 5
    assert list(pf.pages()) == pages
    assert list(procmem.PageFile(path, PS).pages(max_pages=2)) == pages[:2]
    assert pf.describe() == {"kind": "pages", "path": str(path)}


def test_page_file_of_bad_length(tmp_path: Path) -> None:
    path = tmp_path / "bad.pages"
    path.write_bytes(bytes(PS + 100))
    with pytest.raises(procmem.BadPageFile, match="not a whole number of 4096-byte pages"):
        procmem.PageFile(path, 4096)
    path.write_bytes(b"")
    with pytest.raises(procmem.BadPageFile, match="empty"):
        procmem.PageFile(path, 4096)
    with pytest.raises(procmem.BadPageFile, match="no such file"):
        procmem.PageFile(tmp_path / "missing", 4096)
    with pytest.raises(procmem.BadPageFile, match="directory"):
        procmem.PageFile(tmp_path, 4096)


# --------------------------------------------------------------------------
# The built-in workload


def test_workload_builds_a_heap_with_same_filled_pages() -> None:
    with workload.WorkloadProcess(mb=16) as wl:
        pid = wl.pid
        with procmem.ProcessMemory(pid, 4096) as pm:
            pages = list(pm.pages())
    assert not Path(f"/proc/{pid}").exists()
    assert len(pages) > 16 * 256 * 0.8
    same_filled = sum(1 for p in pages if p == p[:8] * 512)
    zero = pages.count(bytes(4096))
    assert zero > 16 * 256 * 0.05
    assert same_filled > zero  # the one-value arrays are same-filled, not zero


def test_workload_failure_is_reported() -> None:
    wl = workload.WorkloadProcess(mb="not-a-number")
    with pytest.raises(workload.WorkloadError, match="exited with code 2 before it was ready"):
        wl.start()
    assert wl.proc is None
