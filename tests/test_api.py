"""The Python API as SPEC.md writes it: outcomes, stats, policies, errors, threads."""

from __future__ import annotations

import array
import pathlib
import random
import threading

import pytest

import zswap_rs
from zswap_rs import StoreOutcome, Zswap

PAGE = 4096
WORDS = [b"alpha ", b"beta ", b"gamma ", b"page ", b"swap ", b"memory ", b"tree "]


def text_page(seed: int) -> bytes:
    """A page that compresses like program data: words, some noise."""
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < PAGE:
        out += rng.choice(WORDS)
        if rng.random() < 0.2:
            out += bytes([rng.randrange(256)])
    return bytes(out[:PAGE])


def noise_page(seed: int) -> bytes:
    return random.Random(seed).randbytes(PAGE)


@pytest.fixture
def z():
    with Zswap(max_pool_bytes=64 << 20) as cache:
        yield cache


# --- the happy path ---------------------------------------------------------


def test_store_load_roundtrip_and_outcomes(z: Zswap) -> None:
    t = z.swapon(None, pages=1024)
    page = text_page(1)
    out = z.store(t, 5, page)
    assert out is StoreOutcome.STORED
    assert out == "STORED" and isinstance(out, str)
    assert z.load(t, 5) == page
    assert z.store(t, 6, bytes(PAGE)) is StoreOutcome.SAME_FILLED
    assert z.load(t, 6) == bytes(PAGE)
    assert z.store(t, 7, b"\xab\xcd" * (PAGE // 2)) is StoreOutcome.SAME_FILLED
    assert z.load(t, 7) == b"\xab\xcd" * (PAGE // 2)
    assert z.store(t, 8, noise_page(2)) is StoreOutcome.REJECTED
    with pytest.raises(KeyError):
        z.load(t, 8)
    s = z.stats()
    assert s["stored_pages"] == 3
    assert s["same_filled_pages"] == 2
    assert s["reject_compress_poor"] == 1
    assert s["zswpout"] == 3 and s["zswpin"] == 3
    assert s["orig_data_size"] == 3 * PAGE
    assert 0 < s["compr_data_size"] < PAGE
    assert s["mem_used_total"] == s["pool_total_size"] >= s["compr_data_size"]


def test_stats_names_are_the_kernels(z: Zswap) -> None:
    assert set(z.stats()) == {
        "pool_total_size", "stored_pages", "same_filled_pages",
        "stored_incompressible_pages", "pool_limit_hit",
        "written_back_pages", "reject_compress_poor", "reject_compress_fail",
        "reject_alloc_fail", "reject_reclaim_fail", "duplicate_entry", "decompress_fail",
        "zswpin", "zswpout", "zswpwb", "pswpin", "pswpout",
        "orig_data_size", "compr_data_size", "mem_used_total",
    }  # fmt: skip
    assert all(isinstance(v, int) for v in z.stats().values())


def test_any_bytes_like_page_and_load_into(z: Zswap) -> None:
    t = z.swapon(None, pages=16)
    page = text_page(3)
    z.store(t, 0, bytearray(page))
    z.store(t, 1, memoryview(page))
    z.store(t, 2, array.array("Q", page))  # a typed buffer: its bytes are the page
    for off in range(3):
        assert z.load(t, off) == page
    buf = bytearray(PAGE)
    z.load_into(t, 2, buf)
    assert buf == page
    view = memoryview(bytearray(2 * PAGE))[PAGE:]
    z.load_into(t, 1, view)
    assert view.tobytes() == page


def test_load_into_says_where_the_page_came_from(tmp_path: pathlib.Path) -> None:
    with Zswap(max_pool_bytes=64 << 20) as z:
        t = z.swapon(tmp_path / "swap", pages=16)
        z.store(t, 0, text_page(1))
        z.store(t, 1, bytes(PAGE))
        z.enabled = False  # the pool passes this one to the file
        assert z.store(t, 2, text_page(2)) == zswap_rs.StoreOutcome.SWAPPED
        buf = bytearray(PAGE)
        sources = [z.load_into(t, off, buf) for off in range(3)]
        assert sources == [
            zswap_rs.LoadSource.POOL,
            zswap_rs.LoadSource.SAME_FILLED,
            zswap_rs.LoadSource.BACKING,
        ]
        assert buf == text_page(2)
        assert sources[0] == "POOL"  # a str enum, like StoreOutcome


def test_duplicate_store_replaces_and_stale_is_dropped(z: Zswap) -> None:
    t = z.swapon(None, pages=16)
    z.store(t, 3, text_page(1))
    z.store(t, 3, text_page(2))
    assert z.load(t, 3) == text_page(2)
    assert z.stats()["duplicate_entry"] == 1
    # A newer page that is not taken still makes the old one stale.
    assert z.store(t, 3, noise_page(1)) is StoreOutcome.REJECTED
    with pytest.raises(KeyError):
        z.load(t, 3)
    assert z.stats()["duplicate_entry"] == 2
    assert z.stats()["stored_pages"] == 0


def test_invalidate_and_swapoff(z: Zswap) -> None:
    t = z.swapon(None, pages=16)
    z.store(t, 1, text_page(1))
    assert z.invalidate(t, 1) is True
    assert z.invalidate(t, 1) is False
    z.store(t, 2, text_page(2))
    z.swapoff(t)
    assert z.stats()["stored_pages"] == 0
    assert z.stats()["pool_total_size"] == 0
    with pytest.raises(zswap_rs.ZswapError, match="swapped off"):
        z.load(t, 2)
    # The type is reused by the next swapon, empty.
    t2 = z.swapon(None, pages=16)
    assert t2 == t
    with pytest.raises(KeyError):
        z.load(t2, 2)


def test_several_areas_are_separate(z: Zswap) -> None:
    a = z.swapon(None, pages=8)
    b = z.swapon(None, pages=8)
    assert a != b
    z.store(a, 0, text_page(1))
    z.store(b, 0, text_page(2))
    assert z.load(a, 0) == text_page(1)
    assert z.load(b, 0) == text_page(2)


# --- policies ---------------------------------------------------------------


def test_pool_limit_and_accept_threshold() -> None:
    with Zswap(max_pool_bytes=256 << 10, accept_threshold_percent=50) as z:
        t = z.swapon(None, pages=4096)
        outcomes = [z.store(t, i, text_page(i)) for i in range(600)]
        assert StoreOutcome.REJECTED in outcomes
        s = z.stats()
        assert s["pool_limit_hit"] == outcomes.count(StoreOutcome.REJECTED)
        assert s["reject_reclaim_fail"] == s["pool_limit_hit"]  # no backing file here
        # pool may pass the cap by at most one zspage (the kernel checks before allocating)
        assert s["pool_total_size"] <= (256 << 10) + 8 * PAGE
        stored = [i for i, o in enumerate(outcomes) if o is StoreOutcome.STORED]
        # Hysteresis: freeing a little is not enough...
        for i in stored[:2]:
            z.invalidate(t, i)
        assert z.store(t, 5000 % 4096, text_page(5000)) is StoreOutcome.REJECTED
        # ...freeing below 50% of the limit is.
        for i in stored[: len(stored) * 3 // 4]:
            z.invalidate(t, i)
        assert z.store(t, 4000, text_page(4000)) is StoreOutcome.STORED
        for i in stored[len(stored) * 3 // 4 :]:
            assert z.load(t, i) == text_page(i)


def test_policies_are_properties() -> None:
    with Zswap() as z:
        assert z.compressor == "lz4"
        assert z.level is None
        assert z.max_pool_bytes is None
        assert z.max_pool_percent == 20
        assert z.accept_threshold_percent == 90
        assert z.max_compression_ratio == 80
        assert z.same_filled is True
        assert z.exclusive_loads is False
        assert z.store_incompressible is False
        assert z.enabled is True
        assert z.page_size == PAGE
        z.max_pool_bytes = 64 << 20
        z.max_pool_percent = 10
        z.accept_threshold_percent = 70
        z.max_compression_ratio = 50
        z.same_filled = False
        z.exclusive_loads = True
        assert (z.max_pool_bytes, z.max_pool_percent, z.accept_threshold_percent) == (
            64 << 20,
            10,
            70,
        )
        assert (z.max_compression_ratio, z.same_filled, z.exclusive_loads) == (50, False, True)
        z.max_pool_bytes = None
        assert z.max_pool_bytes is None
        t = z.swapon(None, pages=4)
        assert z.store(t, 0, bytes(PAGE)) is StoreOutcome.STORED  # same_filled off: compressed
        assert z.load(t, 0) == bytes(PAGE)
        with pytest.raises(KeyError):  # exclusive load dropped it
            z.load(t, 0)


def test_max_compression_ratio_rejects_poor_pages() -> None:
    page = text_page(9)
    with Zswap(max_compression_ratio=100) as z:
        t = z.swapon(None, pages=4)
        assert z.store(t, 0, page) is StoreOutcome.STORED
        z.max_compression_ratio = 5
        assert z.store(t, 1, page) is StoreOutcome.REJECTED
        assert z.stats()["reject_compress_poor"] == 1


def test_store_incompressible_keeps_a_noise_page_raw() -> None:
    page = noise_page(5)
    for off in (Zswap(), Zswap(store_incompressible=None), Zswap(store_incompressible=False)):
        with off:
            assert off.store_incompressible is False
    with Zswap(store_incompressible=True) as z:
        assert z.store_incompressible is True
        t = z.swapon(None, pages=4)
        assert z.store(t, 0, page) is StoreOutcome.STORED
        s = z.stats()
        assert (s["stored_incompressible_pages"], s["reject_compress_poor"]) == (1, 0)
        assert s["compr_data_size"] == s["orig_data_size"] == PAGE
        assert z.load(t, 0) == page
        # Off at run time: the next such page is refused, the one kept stays.
        z.store_incompressible = False
        assert z.store(t, 1, noise_page(6)) is StoreOutcome.REJECTED
        assert z.load(t, 0) == page
        assert z.invalidate(t, 0)
        s = z.stats()
        assert (s["stored_incompressible_pages"], s["reject_compress_poor"]) == (0, 1)
        with pytest.raises(TypeError):
            z.store_incompressible = None  # type: ignore[assignment]


def test_disabled_refuses_stores_but_loads_work(z: Zswap) -> None:
    t = z.swapon(None, pages=4)
    z.store(t, 0, text_page(1))
    z.enabled = False
    assert z.store(t, 1, text_page(2)) is StoreOutcome.REJECTED
    assert z.load(t, 0) == text_page(1)
    z.enabled = True
    assert z.store(t, 1, text_page(2)) is StoreOutcome.STORED


def test_compressors_says_what_is_there() -> None:
    cs = zswap_rs.compressors()
    assert set(cs) >= {"lzo", "lz4", "zstd", "deflate", "deflate-iaa", "nx-gzip"}
    assert cs["lz4"] == zswap_rs.CompressorInfo(available=True, hardware=False, reason="")
    for name, info in cs.items():
        assert isinstance(info, zswap_rs.CompressorInfo)
        if not info.available:
            assert info.reason, name


def test_pool_classes_and_compact(z: Zswap) -> None:
    t = z.swapon(None, pages=3000)
    for i in range(3000):
        z.store(t, i, text_page(i))
    for i in range(3000):
        if i % 4:
            z.invalidate(t, i)
    classes = z.pool_classes()
    assert classes and {"class", "size", "pages_per_zspage", "obj_allocated", "obj_used"} <= set(
        classes[0]
    )
    used = sum(c["obj_used"] for c in classes)
    assert used == z.stats()["stored_pages"]
    before = z.stats()["pool_total_size"]
    freed = z.compact()
    # Compaction ran by itself after the invalidations: little is left to free.
    assert freed * PAGE <= before // 16
    assert z.stats()["pool_total_size"] == before - freed * PAGE
    for i in range(0, 3000, 4):
        assert z.load(t, i) == text_page(i)


# --- errors: every row of SPEC.md's table that applies ----------------------


def test_value_errors_name_the_argument_and_range(z: Zswap) -> None:
    t = z.swapon(None, pages=10)
    with pytest.raises(ValueError, match=r"page must be exactly page_size = 4096 bytes, got 100"):
        z.store(t, 0, b"x" * 100)
    with pytest.raises(ValueError, match=r"offset 10 is out of range for swap type 0: 0\.\.10"):
        z.store(t, 10, text_page(1))
    with pytest.raises(ValueError, match=r"offset -1 is out of range for swap type 0: 0\.\.10"):
        z.load(t, -1)
    with pytest.raises(ValueError, match=r"offset 1208925819614629174706176 is out of .*: 0\.\.10"):
        z.load(t, 1 << 80)
    with pytest.raises(ValueError, match=r"max_pages must be >= 0, got -1"):
        z.writeback(-1)
    assert z.writeback(1 << 80) == 0  # as many as there are: none here
    with pytest.raises(ValueError, match=r"swap_type 7 is not a swap area"):
        z.store(7, 0, text_page(1))
    with pytest.raises(ValueError, match=r"swap_type 40 is out of range: swap types are 0\.\.32"):
        z.load(40, 0)
    with pytest.raises(ValueError, match=r"buf must be exactly page_size"):
        z.load_into(t, 0, bytearray(10))
    with pytest.raises(ValueError, match="pages must be"):
        z.swapon(None, pages=0)


def test_type_errors(z: Zswap) -> None:
    t = z.swapon(None, pages=10)
    with pytest.raises(TypeError, match="str"):
        z.store(t, 0, "x" * PAGE)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="offset must be an int, not float"):
        z.store(t, 1.0, text_page(1))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        z.store(t, 0, 12345)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="writable"):
        z.load_into(t, 0, bytes(PAGE))
    with pytest.raises(TypeError):
        z.load("0", 0)  # type: ignore[arg-type]


def test_key_error_carries_the_slot(z: Zswap) -> None:
    t = z.swapon(None, pages=10)
    with pytest.raises(KeyError) as e:
        z.load(t, 3)
    assert e.value.args == ((t, 3),)


def test_config_errors() -> None:
    unknown = r"unknown compressor 'snappy'.*lz4 \(available\)"
    with pytest.raises(zswap_rs.ConfigError, match=unknown):
        Zswap(compressor="snappy")
    with pytest.raises(ValueError):  # ConfigError is a ValueError
        Zswap(compressor="snappy")
    with pytest.raises(zswap_rs.ConfigError, match="not available here"):
        Zswap(compressor="deflate-iaa")
    with pytest.raises(zswap_rs.ConfigError, match="no levels"):
        Zswap(compressor="lz4", level=3)
    with pytest.raises(zswap_rs.ConfigError, match="max_pool_percent must be in"):
        Zswap(max_pool_percent=150)
    with pytest.raises(zswap_rs.ConfigError, match="accept_threshold_percent"):
        Zswap(accept_threshold_percent=-1)
    with pytest.raises(zswap_rs.ConfigError, match="max_compression_ratio"):
        Zswap(max_compression_ratio=0)
    with pytest.raises(zswap_rs.ConfigError, match="page_size"):
        Zswap(page_size=1000)
    with pytest.raises(zswap_rs.ConfigError, match="max_pool_bytes"):
        Zswap(max_pool_bytes=0)
    # Ints too large for any machine type are bad values, not OverflowError,
    # and each message gives the range that applies.
    with pytest.raises(
        zswap_rs.ConfigError, match=r"max_pool_percent must be in 1\.\.=100, got -1"
    ):
        Zswap(max_pool_percent=-1)
    with pytest.raises(
        zswap_rs.ConfigError, match=r"must be in 1\.\.=100, got 1180591620717411303424"
    ):
        Zswap(max_compression_ratio=1 << 70)
    with pytest.raises(zswap_rs.ConfigError, match="level 1099511627776 is out of range"):
        Zswap(compressor="zstd", level=1 << 40)
    with pytest.raises(zswap_rs.ConfigError, match="max_pool_bytes 18446744073709551615 is too"):
        Zswap(max_pool_bytes=(1 << 64) - 1)
    with Zswap() as z:
        with pytest.raises(zswap_rs.ConfigError, match="unknown compressor"):
            z.compressor = "nope"
        assert z.compressor == "lz4"
        with pytest.raises(zswap_rs.ConfigError):
            z.max_pool_percent = 0
        assert z.max_pool_percent == 20
        with pytest.raises(zswap_rs.ConfigError, match="level"):
            z.level = 1 << 40
        with pytest.raises(zswap_rs.ConfigError, match="max_pool_bytes must be positive, got -1"):
            z.max_pool_bytes = -1
        assert z.max_pool_bytes is None


def test_use_after_close() -> None:
    z = Zswap()
    t = z.swapon(None, pages=4)
    z.store(t, 0, text_page(1))
    z.close()
    assert z.closed
    for call in (
        lambda: z.store(t, 0, text_page(1)),
        lambda: z.load(t, 0),
        lambda: z.invalidate(t, 0),
        lambda: z.swapon(None, pages=4),
        lambda: z.swapoff(t),
    ):
        with pytest.raises(zswap_rs.ZswapError, match="closed"):
            call()
    z.close()  # twice is fine


def test_failed_calls_leave_the_cache_as_it_was(z: Zswap) -> None:
    t = z.swapon(None, pages=10)
    z.store(t, 1, text_page(1))
    before = z.stats()
    for bad in (lambda: z.store(t, 1, b"short"), lambda: z.store(t, 1, "text")):
        with pytest.raises((ValueError, TypeError)):
            bad()
    assert z.stats() == before
    assert z.load(t, 1) == text_page(1)


def test_exception_hierarchy() -> None:
    assert issubclass(zswap_rs.ConfigError, ValueError)
    assert issubclass(zswap_rs.BackingStoreError, OSError)
    for exc in (zswap_rs.ConfigError, zswap_rs.BackingStoreError, zswap_rs.CorruptPageError):
        assert issubclass(exc, zswap_rs.ZswapError)


# --- threads ----------------------------------------------------------------


def test_threads_store_and_load_at_once() -> None:
    """Eight threads, each on its own offsets of one shared area, plus readers of a shared range."""
    threads_n, per_thread, rounds = 8, 200, 3
    with Zswap(max_pool_bytes=256 << 20) as z:
        t = z.swapon(None, pages=threads_n * per_thread)
        errors: list[BaseException] = []
        barrier = threading.Barrier(threads_n)

        def page_for(off: int, version: int) -> bytes:
            stamp = f"{t}:{off}:{version}|".encode()
            return (stamp * (PAGE // len(stamp) + 1))[: PAGE - 64] + text_page(off)[:64]

        def worker(n: int) -> None:
            try:
                barrier.wait()
                offs = range(n * per_thread, (n + 1) * per_thread)
                for version in range(rounds):
                    for off in offs:
                        assert z.store(t, off, page_for(off, version)) is StoreOutcome.STORED
                    for off in offs:
                        assert z.load(t, off) == page_for(off, version)
                    # read a neighbour's pages: any version is fine, never torn bytes
                    other = ((n + 1) % threads_n) * per_thread
                    for off in range(other, other + 20):
                        try:
                            got = z.load(t, off)
                        except KeyError:
                            continue
                        assert got in {page_for(off, v) for v in range(rounds)}
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads_n)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert not errors, errors
        s = z.stats()
        assert s["stored_pages"] == threads_n * per_thread
        assert s["zswpout"] == threads_n * per_thread * rounds
        assert s["duplicate_entry"] == threads_n * per_thread * (rounds - 1)
