"""Swap areas on real files from Python: outcomes, writeback, faults that lose nothing,
and what may be a swap file (a user's file, procfs, another area's file: refused untouched).

The fault tests use real full filesystems, not mocks: a small tmpfs mounted for
the test (ENOSPC; needs root, which CI has) and RLIMIT_FSIZE in a child process
(EFBIG).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import random
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import zswap_rs
from zswap_rs import StoreOutcome, Zswap

PAGE = 4096


def text_page(seed: int) -> bytes:
    rng = random.Random(seed)
    words = [b"swap ", b"page ", b"zswap ", b"pool ", b"tree ", b"lru "]
    out = bytearray(f"<{seed}>".encode())
    while len(out) < PAGE:
        out += rng.choice(words)
    return bytes(out[:PAGE])


def noise_page(seed: int) -> bytes:
    return random.Random(seed).randbytes(PAGE)


@pytest.fixture
def swapdir() -> Iterator[Path]:
    # /var/tmp: a real filesystem where O_DIRECT works (tmpfs refuses it).
    d = Path("/var/tmp") / f"zswap-rs-pytest-{os.getpid()}-{time.monotonic_ns()}"
    d.mkdir(parents=True)
    yield d
    for f in d.iterdir():
        f.unlink()
    d.rmdir()


def test_swapped_pages_come_back_from_the_file(swapdir: Path) -> None:
    with Zswap(max_pool_bytes=64 << 20) as z:
        t = z.swapon(swapdir / "swap", pages=100)
        info = z.backing_info(t)
        assert info is not None
        assert info["path"] == str(swapdir / "swap") and info["pages"] == 100
        assert info["direct"] is True
        assert (swapdir / "swap").stat().st_mode & 0o777 == 0o600
        assert z.store(t, 1, noise_page(1)) is StoreOutcome.SWAPPED
        assert z.store(t, 2, text_page(2)) is StoreOutcome.STORED
        assert z.load(t, 1) == noise_page(1)
        assert z.load(t, 2) == text_page(2)
        s = z.stats()
        assert (s["pswpout"], s["pswpin"], s["zswpout"], s["zswpin"]) == (1, 1, 1, 1)
        assert z.invalidate(t, 1) is True
        with pytest.raises(KeyError):
            z.load(t, 1)
        assert z.backing_info(None if False else t)["used_slots"] == 0  # type: ignore[index]
        assert z.backing_info(z.swapon(None, pages=4)) is None


def test_full_pool_writes_back_instead_of_rejecting(swapdir: Path) -> None:
    with Zswap(max_pool_bytes=256 << 10) as z:
        t = z.swapon(str(swapdir / "swap"), pages=2000)
        outcomes = [z.store(t, i, text_page(i)) for i in range(1500)]
        assert set(outcomes) == {StoreOutcome.STORED}
        s = z.stats()
        assert s["written_back_pages"] > 0 and s["zswpwb"] == s["written_back_pages"]
        assert s["reject_reclaim_fail"] == 0
        for i in range(1500):
            assert z.load(t, i) == text_page(i)
        assert z.writeback(max_pages=5) == 5


def test_file_errors_are_typed(swapdir: Path) -> None:
    with Zswap() as z:
        target = swapdir / "target"
        target.write_bytes(b"keep me")
        (swapdir / "link").symlink_to(target)
        with pytest.raises(zswap_rs.BackingStoreError) as e:
            z.swapon(swapdir / "link", pages=10)
        assert e.value.errno == errno.ELOOP
        assert isinstance(e.value, OSError)
        assert target.read_bytes() == b"keep me"
        with pytest.raises(zswap_rs.BackingStoreError) as e:
            z.swapon(swapdir / "missing" / "swap", pages=10)
        assert e.value.errno == errno.ENOENT
        z.swapon(swapdir / "swap", pages=10)
        with pytest.raises(zswap_rs.BackingStoreError, match="in use") as e:
            z.swapon(swapdir / "swap", pages=10)
        assert e.value.errno == errno.EBUSY
        with pytest.raises(TypeError, match="path"):
            z.swapon(3.5, pages=10)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="disk_mbps"):
            z.swapon(swapdir / "other", pages=10, disk_mbps=-1)


def test_enospc_on_swap_out_loses_nothing(full_fs: Path) -> None:
    with Zswap(max_pool_bytes=64 << 20) as z:
        t = z.swapon(full_fs / "swap", pages=1000)
        assert z.store(t, 999, text_page(999)) is StoreOutcome.STORED
        z.enabled = False  # every store now goes to the file
        swapped = []
        with pytest.raises(zswap_rs.BackingStoreError) as e:
            for i in range(200):
                z.store(t, i, noise_page(i))
                swapped.append(i)
        assert e.value.errno == errno.ENOSPC
        assert 10 < len(swapped) < 200
        # The store that failed changed nothing; an older page stays readable.
        with pytest.raises(KeyError):
            z.load(t, len(swapped))
        with pytest.raises(zswap_rs.BackingStoreError):
            z.store(t, 999, noise_page(5))
        assert z.load(t, 999) == text_page(999)
        for i in swapped:
            assert z.load(t, i) == noise_page(i)
        # Freeing slots gives the space back.
        for i in swapped[:8]:
            z.invalidate(t, i)
        assert z.store(t, 500, noise_page(500)) is StoreOutcome.SWAPPED


def test_enospc_during_writeback_keeps_pages_in_the_pool(full_fs: Path) -> None:
    with Zswap(max_pool_bytes=192 << 10) as z:
        t = z.swapon(full_fs / "swap", pages=4000)
        z.enabled = False
        filler = 0
        with pytest.raises(zswap_rs.BackingStoreError):
            for filler in range(3000, 4000):  # noqa: B007 - the last value is used below
                z.store(t, filler, noise_page(filler))
        z.enabled = True
        stored = []
        with pytest.raises(zswap_rs.BackingStoreError) as e:
            for i in range(3000):
                assert z.store(t, i, text_page(i)) is StoreOutcome.STORED
                stored.append(i)
        assert e.value.errno == errno.ENOSPC
        assert stored, "the pool took pages before it filled"
        assert z.stats()["reject_reclaim_fail"] >= 1
        for i in stored:
            assert z.load(t, i) == text_page(i)
        for i in range(3000, filler):
            assert z.load(t, i) == noise_page(i)


def run_past_file_size_limit(swapfile: Path, body: str) -> None:
    """Run ``body`` in a child process, which must print "ok". It starts with ``z``, an
    area ``t`` of 256 pages on ``swapfile``, and ``limit_file_size()``, which makes writes
    past 64 pages of any file fail with EFBIG (RLIMIT_FSIZE, in the child only)."""
    script = textwrap.dedent(
        f"""
        import errno, random, resource, signal, zswap_rs
        from zswap_rs import StoreOutcome
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
        z = zswap_rs.Zswap()
        t = z.swapon({str(swapfile)!r}, pages=256)
        def limit_file_size():
            resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 4096, 64 * 4096))
        """
    ) + textwrap.dedent(body)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok"


def test_file_size_limit_raises_efbig_and_loses_nothing(swapdir: Path) -> None:
    body = """
        page = lambda i: random.Random(i).randbytes(4096)
        z.enabled = False
        z.store(t, 2, page(2))
        limit_file_size()
        try:
            z.store(t, 100, page(100))
        except zswap_rs.BackingStoreError as e:
            assert e.errno == errno.EFBIG, e
        else:
            raise SystemExit("no error past RLIMIT_FSIZE")
        assert z.load(t, 2) == page(2)
        try:
            z.load(t, 100)
        except KeyError:
            pass
        else:
            raise SystemExit("a failed store left a page behind")
        print("ok")
        """
    run_past_file_size_limit(swapdir / "swap", body)


def test_a_fault_stops_store_many_and_says_how_far_it_got(swapdir: Path) -> None:
    body = """
        noise = lambda i: random.Random(i).randbytes(4096)  # the pool refuses these
        text = lambda i: (b"page %05d text " % i) * 256  # 16 bytes * 256
        for o in (100, 5):
            assert z.store(t, o, text(o)) == StoreOutcome.STORED
        limit_file_size()
        offsets = [3, 4, 100, 5]
        try:
            z.store_many(t, offsets, b"".join(noise(o) for o in offsets))
        except zswap_rs.BackingStoreError as e:
            assert e.errno == errno.EFBIG, e
            assert e.outcomes == [StoreOutcome.SWAPPED] * 2, e.outcomes
            assert "offsets[2] = 100" in str(e), e
        else:
            raise SystemExit("no error past RLIMIT_FSIZE")
        # Done before the fault: in the file. At and after it: as they were.
        assert z.load(t, 3) == noise(3) and z.load(t, 4) == noise(4)
        assert z.load(t, 100) == text(100) and z.load(t, 5) == text(5)
        print("ok")
        """
    run_past_file_size_limit(swapdir / "swap", body)


def test_threads_with_writeback_keep_every_page(swapdir: Path) -> None:
    with Zswap(max_pool_bytes=128 << 10) as z:
        t = z.swapon(swapdir / "swap", pages=4 * 64)
        errors: list[BaseException] = []

        def owner(n: int) -> None:
            try:
                offs = range(n * 64, (n + 1) * 64)
                for version in range(5):
                    for o in offs:
                        page = text_page(o * 10 + version)
                        z.store(t, o, page)
                        assert z.load(t, o) == page
                for o in offs:
                    assert z.load(t, o) == text_page(o * 10 + 4)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        def flusher(stop: threading.Event) -> None:
            while not stop.is_set():
                z.writeback(max_pages=8)

        stop = threading.Event()
        f = threading.Thread(target=flusher, args=(stop,))
        f.start()
        owners = [threading.Thread(target=owner, args=(n,)) for n in range(4)]
        for w in owners:
            w.start()
        for w in owners:
            w.join()
        stop.set()
        f.join()
        assert not errors, errors
        assert z.stats()["written_back_pages"] > 0


def test_shrinker_is_off_by_default_and_can_be_turned_on(swapdir: Path) -> None:
    with Zswap() as z:
        assert z.shrinker_enabled is False
        t = z.swapon(swapdir / "swap", pages=64)
        for i in range(32):
            z.store(t, i, text_page(i))
        z.shrinker_age = 0.05
        z.shrinker_enabled = True
        deadline = time.monotonic() + 20
        while z.stats()["written_back_pages"] < 32 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert z.stats()["written_back_pages"] == 32
        z.shrinker_enabled = False
        assert z.shrinker_enabled is False
        for i in range(32):
            assert z.load(t, i) == text_page(i)
        with pytest.raises(zswap_rs.ConfigError):
            z.shrinker_age = 0


# --- what a swap file may be (SPEC "What it is"; issue 12) ----------------------


def fingerprint(path: Path) -> tuple[str, int, int]:
    """sha256, length and mtime: a file that was not touched keeps all three."""
    st = path.stat()
    return hashlib.sha256(path.read_bytes()).hexdigest(), st.st_size, st.st_mtime_ns


def test_a_users_file_is_refused_and_left_byte_for_byte(swapdir: Path) -> None:
    thesis = swapdir / "thesis.txt"
    thesis.write_text("Chapter 1. It was a dark and stormy night.\n" * 500)
    before = fingerprint(thesis)
    with Zswap() as z:
        with pytest.raises(zswap_rs.BackingStoreError) as e:
            z.swapon(thesis, pages=16)
        assert e.value.errno == errno.EINVAL
        assert "not a zswap-rs swap file" in str(e.value)
        with pytest.raises(zswap_rs.BackingStoreError) as e:
            zswap_rs.mkswap(thesis, 16)
        assert e.value.errno == errno.EINVAL and "force" in str(e.value)
        assert fingerprint(thesis) == before
        zswap_rs.mkswap(thesis, 16, force=True)
        assert thesis.read_bytes()[:8] == b"zswap-rs"
        z.swapon(thesis, pages=16)


def test_a_new_path_and_an_empty_file_are_taken(swapdir: Path) -> None:
    (swapdir / "empty").touch()
    with Zswap() as z:
        for name in ("new", "empty"):
            path = swapdir / name
            t = z.swapon(path, pages=16)
            if name == "new":
                assert path.stat().st_mode & 0o777 == 0o600
            assert path.stat().st_size == 17 * PAGE  # the header page, then 16 slots
            assert path.read_bytes()[:8] == b"zswap-rs"
            z.swapoff(t)


def test_a_mkswap_file_is_reused_after_swapoff(swapdir: Path) -> None:
    path = swapdir / "swap"
    zswap_rs.mkswap(path, 64)
    assert path.stat().st_size == 65 * PAGE
    area_id = lambda: path.read_bytes()[24:32]  # noqa: E731 - a one-line probe
    with Zswap() as z:
        t = z.swapon(str(path), pages=64)
        first = area_id()
        z.enabled = False
        assert z.store(t, 3, noise_page(3)) is StoreOutcome.SWAPPED
        z.swapoff(t)
        t = z.swapon(path, pages=64)
        assert area_id() != first, "each swapon gets a new area id"
        with pytest.raises(KeyError):
            z.load(t, 3)  # no page survives swapoff


def test_a_swap_file_of_another_page_size_is_refused(swapdir: Path) -> None:
    path = swapdir / "swap"
    zswap_rs.mkswap(path, 8, page_size=8192)
    before = fingerprint(path)
    with Zswap() as z:
        with pytest.raises(zswap_rs.BackingStoreError, match="page size 8192") as e:
            z.swapon(path, pages=8)
        assert e.value.errno == errno.EINVAL
    assert fingerprint(path) == before
    with Zswap(page_size=8192) as z:
        z.swapon(path, pages=8)


def test_mkswap_checks_its_arguments(swapdir: Path) -> None:
    with pytest.raises(ValueError, match="pages"):
        zswap_rs.mkswap(swapdir / "swap", 0)
    with pytest.raises(zswap_rs.ConfigError, match="page_size"):
        zswap_rs.mkswap(swapdir / "swap", 8, page_size=1000)
    with pytest.raises(TypeError):
        zswap_rs.mkswap(swapdir / "swap", 8, 4096)  # type: ignore[misc]
    with pytest.raises(TypeError, match="path"):
        zswap_rs.mkswap(3.5, 8)  # type: ignore[arg-type]
    assert not (swapdir / "swap").exists()


def test_two_caches_get_ebusy_and_the_first_keeps_its_pages(swapdir: Path) -> None:
    path = swapdir / "swap"
    with Zswap() as a, Zswap() as b:
        t = a.swapon(path, pages=16)
        a.enabled = False
        a.store(t, 3, noise_page(3))
        before = fingerprint(path)
        with pytest.raises(zswap_rs.BackingStoreError) as e:
            b.swapon(path, pages=16)
        assert e.value.errno == errno.EBUSY
        with pytest.raises(zswap_rs.BackingStoreError) as e:
            zswap_rs.mkswap(path, 16, force=True)
        assert e.value.errno == errno.EBUSY
        assert fingerprint(path) == before
        assert a.load(t, 3) == noise_page(3)
        a.swapoff(t)
        b.swapon(path, pages=16)  # free again once the area is off


def test_two_processes_get_ebusy_and_the_first_keeps_its_pages(swapdir: Path) -> None:
    path = swapdir / "swap"
    child = textwrap.dedent(
        f"""
        import random, sys, zswap_rs
        page = random.Random(3).randbytes(4096)
        z = zswap_rs.Zswap()
        t = z.swapon({str(path)!r}, pages=16)
        z.enabled = False
        assert z.store(t, 3, page) == zswap_rs.StoreOutcome.SWAPPED
        print("ready", flush=True)
        sys.stdin.readline()
        assert z.load(t, 3) == page
        print("ok", flush=True)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", child],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "ready", proc.stderr
        with Zswap() as z:
            with pytest.raises(zswap_rs.BackingStoreError) as e:
                z.swapon(path, pages=16)
            assert e.value.errno == errno.EBUSY
        proc.stdin.write("go\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert out.strip() == "ok"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def kernel_interfaces() -> list[str]:
    paths = ["/proc/self/mem", "/proc/self/status", "/dev/null"]
    for sysfile in ("/sys/kernel/mm/transparent_hugepage/enabled", "/sys/kernel/profiling"):
        if os.path.exists(sysfile):
            paths.append(sysfile)
            break
    return paths


@pytest.mark.parametrize("path", kernel_interfaces())
def test_kernel_interfaces_and_character_devices_are_refused(path: str) -> None:
    with Zswap() as z:
        with pytest.raises(zswap_rs.BackingStoreError) as e:
            z.swapon(path, pages=(1 << 31) // PAGE - 1)
        assert e.value.errno == errno.EINVAL
        with pytest.raises(zswap_rs.BackingStoreError) as e:
            zswap_rs.mkswap(path, 16, force=True)
        assert e.value.errno == errno.EINVAL


def test_a_page_moved_to_another_slot_fails_its_check(swapdir: Path) -> None:
    path = swapdir / "swap"
    with Zswap() as z:
        t = z.swapon(path, pages=8)
        z.enabled = False
        z.store(t, 3, noise_page(3))
        z.store(t, 5, noise_page(5))
        with open(path, "r+b") as f:  # slot n is at (n + 1) * page size
            f.seek(4 * PAGE)
            slot3 = f.read(PAGE)
            f.seek(6 * PAGE)
            f.write(slot3)
        with pytest.raises(zswap_rs.CorruptPageError):
            z.load(t, 5)
        assert z.load(t, 3) == noise_page(3)


def test_disk_mbps_out_of_range_is_a_config_error(swapdir: Path) -> None:
    with Zswap() as z:
        for mbps in (1e-300, 0.0005):
            with pytest.raises(zswap_rs.ConfigError, match="disk_mbps"):
                z.swapon(swapdir / "swap", pages=16, disk_mbps=mbps)
        assert not (swapdir / "swap").exists()
        t = z.swapon(swapdir / "swap", pages=16, disk_mbps=0.05)
        assert z.backing_info(t)["disk_mbps"] == 0.05  # type: ignore[index]
        assert z.backing_info(t)["discard"] is True  # type: ignore[index]
        u = z.swapon(swapdir / "other", pages=16, discard=False)
        assert z.backing_info(u)["discard"] is False  # type: ignore[index]


@contextlib.contextmanager
def loop_device(image: Path) -> Iterator[str]:
    """`image` attached as a loop device, detached again whatever happens."""
    if os.geteuid() != 0:
        pytest.skip("attaching a loop device needs root (CI runs as root)")
    attach = subprocess.run(
        ["losetup", "--find", "--show", str(image)], capture_output=True, text=True
    )
    if attach.returncode != 0:
        pytest.skip(f"no loop device here: {attach.stderr.strip()}")
    dev = attach.stdout.strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


def test_a_loop_device_with_ext4_on_it_is_refused(tmp_path: Path) -> None:
    image = tmp_path / "ext4.img"
    image.write_bytes(bytes(4 << 20))
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    with loop_device(image) as dev:
        before = hashlib.sha256(Path(dev).read_bytes()).hexdigest()
        with Zswap() as z:
            with pytest.raises(zswap_rs.BackingStoreError, match="ext2/3/4") as e:
                z.swapon(dev, pages=16)
            assert e.value.errno == errno.EINVAL
            with pytest.raises(zswap_rs.BackingStoreError, match="ext2/3/4") as e:
                zswap_rs.mkswap(dev, 16)
            assert e.value.errno == errno.EINVAL
            assert hashlib.sha256(Path(dev).read_bytes()).hexdigest() == before
            zswap_rs.mkswap(dev, 16, force=True)
            blkid = subprocess.run(["blkid", "-p", dev], capture_output=True, text=True)
            assert "ext4" not in blkid.stdout, "no old signature is left"
            t = z.swapon(dev, pages=16)
            z.enabled = False
            assert z.store(t, 15, noise_page(15)) is StoreOutcome.SWAPPED
            assert z.load(t, 15) == noise_page(15)


def test_a_block_device_works_once_signed(tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    image.write_bytes(bytes(256 * PAGE))
    with loop_device(image) as dev, Zswap() as z:
        with pytest.raises(zswap_rs.BackingStoreError, match="mkswap it first") as e:
            z.swapon(dev, pages=16)  # blank, but a device is never "empty"
        assert e.value.errno == errno.EINVAL
        zswap_rs.mkswap(dev, 255)  # all zeros: no force needed
        with pytest.raises(zswap_rs.BackingStoreError) as e:
            z.swapon(dev, pages=256)  # the header takes a page of the device
        assert e.value.errno == errno.EINVAL
        t = z.swapon(dev, pages=255)
        z.enabled = False
        assert z.store(t, 254, noise_page(254)) is StoreOutcome.SWAPPED
        assert z.load(t, 254) == noise_page(254)
        assert z.invalidate(t, 254) is True
        with pytest.raises(zswap_rs.BackingStoreError) as e:
            zswap_rs.mkswap(dev, 255, force=True)  # in use
        assert e.value.errno == errno.EBUSY


def test_a_swapped_store_failing_part_way_keeps_the_page_it_replaces(swapdir: Path) -> None:
    """Issue 13.3: buffered I/O, page P0 swapped to slot 10, then a file size
    limit inside that slot: storing P1 there raises EFBIG after writing half of
    it over P0, and P0 must still load."""
    script = textwrap.dedent(
        f"""
        import errno, random, resource, signal, zswap_rs
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        z = zswap_rs.Zswap()
        t = z.swapon({str(swapdir / "swap")!r}, pages=64, direct=False)
        page = lambda i: random.Random(i).randbytes(4096)
        z.enabled = False
        z.store(t, 10, page(0))
        limit = 11 * 4096 + 2048  # slot 10 starts after the header page
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        try:
            z.store(t, 10, page(1))
        except zswap_rs.BackingStoreError as e:
            assert e.errno == errno.EFBIG, e
        else:
            raise SystemExit("no error past RLIMIT_FSIZE")
        assert z.load(t, 10) == page(0), "the replaced page was lost"
        print("ok")
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok"
