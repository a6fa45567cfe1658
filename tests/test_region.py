"""Regions from Python: NumPy over memory beyond its budget, no copy.

Every read returns the last write: under eviction, from threads, through
syscalls, across a budget change and a fork. ``close()`` refuses while
exports live. CI runs as root; the unprivileged case drops to ``nobody`` in
a child process rather than being skipped.
"""

from __future__ import annotations

import errno
import gc
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import zswap_rs
from zswap_rs import Region, Zswap
from zswap_rs._procmem import ProcessMemory
from zswap_rs._workload import WorkloadProcess

PAGE = 4096


@pytest.fixture(scope="module")
def real_pages() -> list[bytes]:
    """Pages of the built-in workload's heap: what programs really hold."""
    with WorkloadProcess(mb=16) as wl, ProcessMemory(wl.pid) as pm:
        pages = list(pm.pages(max_pages=1024))
    assert len(pages) >= 512
    return pages


@pytest.fixture
def region() -> Iterator[Region]:
    r = Region(256 * PAGE, budget=32 * PAGE, max_pool_bytes=64 << 20)
    yield r
    gc.collect()
    r.close()


def test_numpy_sees_the_region_with_no_copy(region: Region) -> None:
    a = np.frombuffer(region, dtype=np.uint8)
    assert a.ctypes.data == region.address
    assert len(memoryview(region)) == region.size == len(region) == 256 * PAGE
    assert a.flags.writeable
    # Untouched pages read as zeros and leave the pool empty.
    assert a.sum() == 0
    stats = region.stats()
    assert stats["zero_fills"] >= 256
    assert stats["stored_pages"] == 0
    assert region.resident_bytes <= region.budget
    del a


def test_pages_survive_pressure(real_pages: list[bytes]) -> None:
    n = len(real_pages)
    with Region(n * PAGE, budget=n * PAGE // 8, max_pool_bytes=64 << 20) as r:
        m = memoryview(r)
        for i, p in enumerate(real_pages):
            m[i * PAGE : (i + 1) * PAGE] = p
        order = list(range(n))
        order.reverse()
        for i in order:
            assert m[i * PAGE : (i + 1) * PAGE] == real_pages[i], f"page {i}"
        for i in range(n):
            assert m[i * PAGE : (i + 1) * PAGE] == real_pages[i], f"page {i}"
        s = r.stats()
        assert r.resident_bytes <= r.budget
        assert s["evictions"] >= n - n // 8
        assert s["clean_evictions"] > 0
        # Each page was compressed at most once: later evictions were clean.
        assert s["zswpout"] + s["same_filled_pages"] <= n + s["duplicate_entry"]
        m.release()


def test_threads_write_counters_while_eviction_runs() -> None:
    pages, threads, rounds = 128, 4, 30
    with Region(pages * PAGE, budget=16 * PAGE, max_pool_bytes=64 << 20) as r:
        a = np.frombuffer(r, dtype=np.uint64).reshape(pages, PAGE // 8)

        def work(a: np.ndarray, t: int) -> None:
            for k in range(rounds):
                # Strided over every page, each thread its own column.
                a[(k * (t + 1)) % pages :: 1, t] += 1
                a[: (k * (t + 1)) % pages, t] += 1

        ts = [threading.Thread(target=work, args=(a, t)) for t in range(threads)]
        for t in ts:
            t.start()
        for k in range(40):
            r.budget = (4 if k % 2 else 16) * PAGE
        for t in ts:
            t.join()
        assert (a[:, :threads] == rounds).all()
        assert (a[:, threads:] == 0).all()
        assert r.stats()["evictions"] > pages
        del a


def test_syscalls_read_and_write_evicted_pages(region: Region) -> None:
    a = np.frombuffer(region, dtype=np.uint32)
    a[:] = np.arange(a.size, dtype=np.uint32)
    region.budget = 4 * PAGE
    with tempfile.TemporaryFile(dir="/var/tmp") as f:
        # write(2) from evicted pages, read(2) into them.
        assert os.write(f.fileno(), memoryview(region)) == region.size
        f.seek(0)
        back = np.frombuffer(f.read(), dtype=np.uint32)
        assert (back == np.arange(a.size, dtype=np.uint32)).all()
        f.seek(0)
        f.write((np.arange(a.size, dtype=np.uint32) * 3).tobytes())
        f.flush()
        f.seek(0)
        assert f.readinto(memoryview(region)) == region.size
    assert (a == np.arange(a.size, dtype=np.uint32) * 3).all()
    del a


def test_lowering_the_budget_evicts() -> None:
    with Region(64 * PAGE, budget=64 * PAGE) as r:
        a = np.frombuffer(r, dtype=np.float32)
        a[:] = 1.5
        assert r.resident_bytes == 64 * PAGE
        r.budget = 8 * PAGE + 1
        assert r.budget == 8 * PAGE
        assert r.resident_bytes <= 8 * PAGE
        assert float(a.sum()) == 1.5 * a.size
        del a


def test_the_pool_counts_against_the_budget_when_asked(real_pages: list[bytes]) -> None:
    budget = 256 * PAGE
    with (
        Region(2048 * PAGE, budget=budget, pool_in_budget=True, max_pool_bytes=128 * PAGE) as r,
        Zswap() as plain_cache,
    ):
        mem = memoryview(r)
        for i in range(2048):
            mem[i * PAGE : (i + 1) * PAGE] = real_pages[i % len(real_pages)]
            if i % 128 == 127:
                # resident + pool within the budget, give or take a read-ahead run
                assert r.resident_bytes + r.stats()["pool_total_size"] <= budget + 32 * PAGE
        for i in range(2048):
            assert mem[i * PAGE : (i + 1) * PAGE] == real_pages[i % len(real_pages)], i
        assert r.stats()["pool_total_size"] > 0
        assert r.resident_bytes < budget
        mem.release()
        # Without it the budget is resident pages alone.
        with plain_cache.region(2048 * PAGE, budget) as plain:
            m2 = memoryview(plain)
            for i in range(2048):
                m2[i * PAGE : (i + 1) * PAGE] = real_pages[i % len(real_pages)]
            assert plain.resident_bytes > budget * 3 // 4
            m2.release()
    with pytest.raises(TypeError):
        Region(PAGE, budget=PAGE, pool_in_budget="yes")  # type: ignore[arg-type]


def test_a_regions_own_cache_keeps_incompressible_pages_in_its_pool() -> None:
    noise = [os.urandom(PAGE) for _ in range(64)]
    for opts, raw in (({}, True), ({"store_incompressible": False}, False)):
        with Region(64 * PAGE, budget=8 * PAGE, **opts) as r:
            mem = memoryview(r)
            for i, page in enumerate(noise):
                mem[i * PAGE : (i + 1) * PAGE] = page
            for i, page in enumerate(noise):
                assert mem[i * PAGE : (i + 1) * PAGE] == page
            s = r.stats()
            mem.release()
            assert (s["stored_incompressible_pages"] > 0) is raw, s
            assert (s["pswpout"] == 0) is raw, s


def test_close_refuses_while_exports_live() -> None:
    r = Region(16 * PAGE, budget=4 * PAGE)
    a = np.frombuffer(r, dtype=np.uint8)
    m = memoryview(r)
    with pytest.raises(BufferError):
        r.close()
    del a
    with pytest.raises(BufferError):
        r.close()
    m.release()
    gc.collect()
    r.close()
    r.close()
    assert r.closed
    with pytest.raises(zswap_rs.ZswapError):
        memoryview(r)
    with pytest.raises(zswap_rs.ZswapError):
        r.stats()


def test_bad_arguments() -> None:
    for size in (0, -1):
        with pytest.raises(ValueError, match="size"):
            Region(size, budget=PAGE)
    for budget in (0, -5, 1, PAGE - 1):
        with pytest.raises(ValueError, match="budget"):
            Region(16 * PAGE, budget=budget)
    with pytest.raises(TypeError):
        Region("big", budget=PAGE)  # type: ignore[arg-type]
    with pytest.raises(zswap_rs.ConfigError):
        Region(16 * PAGE, budget=PAGE, compressor="no-such")
    with Region(16 * PAGE, budget=PAGE) as r, pytest.raises(ValueError, match="budget"):
        r.budget = 0


def is_mapped(addr: int) -> bool:
    with open("/proc/self/maps") as f:
        for line in f:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            if lo <= addr < hi:
                return True
    return False


def test_a_forked_child_has_no_mapping(region: Region) -> None:
    a = np.frombuffer(region, dtype=np.uint8)
    a[::PAGE] = 7
    addr = region.address
    pid = os.fork()
    if pid == 0:
        os._exit(1 if is_mapped(addr) else 0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child had the region mapped"
    assert is_mapped(addr)
    assert (a[::PAGE] == 7).all()
    del a


def test_regions_share_a_cache_whose_pool_is_full_and_writes_back() -> None:
    with Zswap(max_pool_bytes=128 << 10) as z:
        r1 = z.region(512 * PAGE, 16 * PAGE)
        r2 = z.region(512 * PAGE, 16 * PAGE, path=None)
        assert r1.swap_type != r2.swap_type
        a1 = np.frombuffer(r1, dtype=np.uint64)
        a2 = np.frombuffer(r2, dtype=np.uint64)
        a1[:] = np.arange(a1.size, dtype=np.uint64)
        a2[:] = np.arange(a2.size, dtype=np.uint64)[::-1]
        assert (a1 == np.arange(a1.size, dtype=np.uint64)).all()
        assert (a2 == np.arange(a2.size, dtype=np.uint64)[::-1]).all()
        s = z.stats()
        assert s["pswpout"] > 0 and s["pswpin"] > 0
        assert s["pool_total_size"] <= 128 << 10
        del a1, a2
        r1.close()
        r2.close()
        assert z.stats()["stored_pages"] == 0


def test_userfaultfd_status_says_what_is_usable() -> None:
    usable, mode, reason = zswap_rs.userfaultfd_status()
    assert usable, reason
    assert mode in ("syscall", "/dev/userfaultfd")


def test_an_unprivileged_user_gets_a_config_error_or_a_working_region() -> None:
    body = textwrap.dedent(
        """
        import os, numpy as np, zswap_rs
        os.setgid(65534); os.setuid(65534)
        usable, mode, reason = zswap_rs.userfaultfd_status()
        try:
            r = zswap_rs.Region(64 * 4096, budget=8 * 4096)
        except zswap_rs.ConfigError as e:
            assert not usable and "vm.unprivileged_userfaultfd" in str(e), e
            print("OUTCOME config error")
        else:
            a = np.frombuffer(r, dtype=np.uint32)
            a[:] = 5
            rfd, wfd = os.pipe()
            assert os.write(wfd, memoryview(r)[: 8 * 4096]) == 8 * 4096
            assert os.read(rfd, 8 * 4096) == bytes(memoryview(r)[: 8 * 4096])
            assert (a == 5).all()
            print("OUTCOME working region")
        """
    )
    if os.geteuid() != 0:
        body = body.replace("os.setgid(65534); os.setuid(65534)", "")
    out = subprocess.run(
        [sys.executable, "-c", body],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TMPDIR": "/tmp"},
    )
    assert out.returncode == 0, out.stderr
    assert "OUTCOME" in out.stdout


def test_a_full_swap_file_keeps_pages_resident_and_says_so(full_fs: Path) -> None:
    pages = 192
    with Zswap(max_pool_bytes=64 << 20) as z:
        z.enabled = False  # every eviction goes to the file
        r = z.region(pages * PAGE, 16 * PAGE, path=full_fs / "region.swap")
        a = np.frombuffer(r, dtype=np.uint8).reshape(pages, PAGE)
        rng = np.random.default_rng(7)
        want = rng.integers(0, 256, size=(pages, PAGE), dtype=np.uint8)
        a[:] = want
        assert (a == want).all()
        s = r.stats()
        assert s["kept_resident"] > 0, s
        assert s["resident_pages"] * PAGE == r.resident_bytes > r.budget
        del a
        r.close()


def test_a_page_that_cannot_be_loaded_is_sigbus_never_wrong_bytes(tmp_path: Path) -> None:
    # Incompressible pages go to the region's swap file; damage the file
    # behind its back, and a fault on an evicted page gets SIGBUS, as the
    # kernel gives on a swap-in read error, rather than zeros or stale bytes.
    swap = tmp_path / "region.swap"
    body = textwrap.dedent(
        f"""
        import os, numpy as np, zswap_rs
        z = zswap_rs.Zswap(max_pool_bytes=64 << 20)
        r = z.region(64 * 4096, 4 * 4096, path={str(swap)!r})
        a = np.frombuffer(r, dtype=np.uint8)
        a[:] = np.random.default_rng(1).integers(0, 256, a.size, dtype=np.uint8)
        assert z.stats()["pswpout"] > 0
        with open({str(swap)!r}, "r+b") as f:
            f.seek(4096)
            f.write(os.urandom(64 * 4096))
        print("sum", int(a.sum()), flush=True)
        """
    )
    out = subprocess.run([sys.executable, "-c", body], capture_output=True, text=True, timeout=60)
    assert out.returncode == -signal.SIGBUS, (out.returncode, out.stdout, out.stderr)
    assert "sum" not in out.stdout


def test_a_cache_refuses_to_close_under_an_open_region() -> None:
    z = Zswap(max_pool_bytes=64 << 20)
    r = z.region(64 * PAGE, 4 * PAGE)
    a = np.frombuffer(r, dtype=np.uint8)
    a[:] = 5
    with pytest.raises(zswap_rs.ZswapError, match="holds the memory of an open region"):
        z.close()
    with pytest.raises(zswap_rs.ZswapError, match="close the region first"):
        z.swapoff(0)  # the region's own area
    assert not z.closed
    assert int(a.sum()) == 5 * 64 * PAGE  # evicted pages are all still there
    del a
    r.close()
    z.close()
    assert z.closed


def test_a_forked_child_cannot_use_the_region_object(region: Region) -> None:
    np.frombuffer(region, dtype=np.uint8)[:PAGE] = 3
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            region.stats()
            code = 2
        except zswap_rs.ZswapError as e:
            code = 0 if "os.fork()" in str(e) else 3
        region.close()  # a no-op in the child
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert region.stats()["faults"] > 0


@pytest.mark.parametrize(
    "knobs",
    [
        {"handlers": 0},  # one handler, not pinned
        {"handlers": 1, "spin": 50e-6},  # pinned to the first CPU, polling first
        {"direct_io": True},  # the swap file opened O_DIRECT
    ],
)
def test_fault_service_options_keep_every_page(knobs: dict[str, object]) -> None:
    pages = 192
    # A pool of 32 pages' worth: most evictions go on to the swap file.
    with Zswap(max_pool_bytes=32 * PAGE) as z:
        with z.region(pages * PAGE, 16 * PAGE, **knobs) as r:  # type: ignore[arg-type]
            a = np.frombuffer(r, dtype=np.uint64)
            want = np.arange(a.size, dtype=np.uint64) * 7 + 1
            a[:] = want
            try:
                assert (a == want).all()
                assert r.stats()["evictions"] > pages - 16
                assert z.stats()["pswpout"] > 0
            finally:
                del a


def test_bad_fault_service_options_are_value_errors() -> None:
    bad: list[dict[str, object]] = [
        {"handlers": -1},
        {"handlers": 2**70},
        {"spin": -1.0},
        {"spin": float("nan")},
        {"spin": float("inf")},
    ]
    for knobs in bad:
        with pytest.raises(ValueError, match=str(next(iter(knobs)))):
            Region(16 * PAGE, 4 * PAGE, **knobs)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Region(16 * PAGE, 4 * PAGE, handlers="2")  # type: ignore[arg-type]
    # The cache's own options still pass through, and are checked there.
    with pytest.raises(zswap_rs.ConfigError, match="max_pool_percent"):
        Region(16 * PAGE, 4 * PAGE, handlers=0, max_pool_percent=0)


def test_a_region_on_redis_keeps_every_page_and_cleans_up(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is missing: apt-get install -y redis-server (.ci/run does)")
    from test_redis import Server  # the Redis tests' own throwaway server

    server = Server(tmp_path)
    try:
        pages = 256
        with Zswap(max_pool_bytes=32 * PAGE) as z:
            r = z.region(pages * PAGE, 16 * PAGE, path=server.url)
            a = np.frombuffer(r, dtype=np.uint32)
            want = np.arange(a.size, dtype=np.uint32) ^ 0x5A5A
            a[:] = want
            try:
                assert server.dbsize() > 0, "pages went on to the server"
                assert z.stats()["pswpout"] > 0
                assert (a == want).all()
                assert z.stats()["pswpin"] > 0, "and came back from it"
            finally:
                del a
            r.close()
            assert server.dbsize() == 0, "closing the region deleted its keys"
    finally:
        server.stop()


def test_signal_mode_serves_faults_in_the_faulting_thread(real_pages: list[bytes]) -> None:
    n = len(real_pages)
    with Region(n * PAGE, budget=n * PAGE // 8, faults="signal", max_pool_bytes=64 << 20) as r:
        m = memoryview(r)
        for i, page in enumerate(real_pages):
            m[i * PAGE : (i + 1) * PAGE] = page
        # Threads read and write while eviction runs, as in the default mode.
        a = np.frombuffer(r, dtype=np.uint64).reshape(n, PAGE // 8)
        before = a[:, 1].copy()

        def bump(a: np.ndarray, t: int) -> None:
            for i in range(t, n, 4):
                a[i, 0:1] += 1  # an array add: wraps without a warning

        threads = [threading.Thread(target=bump, args=(a, t)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert (a[:, 1] == before).all()
        for i, page in enumerate(real_pages):
            want = bytearray(page)
            word = int.from_bytes(want[:8], "little") + 1
            want[:8] = (word % (1 << 64)).to_bytes(8, "little")
            assert m[i * PAGE : (i + 1) * PAGE] == want, i
        stats = r.stats()
        assert stats["evictions"] > n and stats["fault_errors"] == 0
        # What signal mode gives up: the kernel's own access to a page not
        # mapped fails (EFAULT) instead of waiting for the fault to be served.
        r.budget = PAGE
        rfd, wfd = os.pipe()
        try:
            with pytest.raises(OSError) as e:
                os.write(wfd, m[:PAGE])  # page 0: evicted long ago
            assert e.value.errno == errno.EFAULT
        finally:
            os.close(rfd)
            os.close(wfd)
        del a, m


def test_signal_mode_has_no_handler_options() -> None:
    with pytest.raises(ValueError, match="faults='signal' has no handler threads"):
        Region(16 * PAGE, 4 * PAGE, faults="signal", handlers=2)
    with pytest.raises(ValueError, match="faults must be 'handlers' or 'signal'"):
        Region(16 * PAGE, 4 * PAGE, faults="threads")  # type: ignore[arg-type]
