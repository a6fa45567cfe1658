"""The software compressors from Python: chosen by name, levels, switching at run
time, zstd dictionaries (SPEC.md, Compressors)."""

from __future__ import annotations

import array
import random
import struct

import pytest

import zswap_rs
from zswap_rs import StoreOutcome, Zswap

PAGE = 4096
SOFTWARE = ["lzo", "lz4", "zstd", "deflate"]
# name -> (lowest, highest, default) level, or None for no levels.
LEVELS: dict[str, tuple[int, int, int] | None] = {
    "lzo": None,
    "lz4": None,
    "zstd": (-131072, 22, 3),
    "deflate": (0, 3, 1),
}


def heap_page(seed: int) -> bytes:
    """A page like a process heap: chunk headers, pointers, small counters, zeros."""
    rng = random.Random(seed)
    heap = 0x5555_5600_0000 + (rng.randrange(64) << 20)
    out = bytearray()
    while len(out) < PAGE:
        words = rng.randrange(1, 6)
        out += struct.pack("<Q", (words * 16) | 1)
        for _ in range(2 * words - 1):
            kind = rng.randrange(5)
            if kind == 0:
                value = heap + (rng.randrange(1 << 16) << 4)
            elif kind == 1:
                value = rng.randrange(256)
            elif kind == 2:
                value = rng.randrange(1 << 32)
            else:
                value = 0
            out += struct.pack("<Q", value)
    return bytes(out[:PAGE])


def pages(n: int, start: int = 0) -> list[bytes]:
    return [heap_page(s) for s in range(start, start + n)]


@pytest.mark.parametrize("name", SOFTWARE)
def test_available_and_reported(name: str) -> None:
    info = zswap_rs.compressors()[name]
    assert info == zswap_rs.CompressorInfo(available=True, hardware=False, reason="")


@pytest.mark.parametrize("name", SOFTWARE)
def test_round_trip_through_zswap(name: str) -> None:
    ps = pages(64)
    with Zswap(compressor=name, max_pool_bytes=64 << 20) as z:
        assert z.compressor == name
        levels = LEVELS[name]
        assert z.level == (levels[2] if levels else None)
        t = z.swapon(None, pages=len(ps))
        for i, p in enumerate(ps):
            assert z.store(t, i, p) is StoreOutcome.STORED
        for i, p in enumerate(ps):
            assert z.load(t, i) == p
        s = z.stats()
        assert s["stored_pages"] == len(ps)
        assert 0 < s["compr_data_size"] < s["orig_data_size"]


@pytest.mark.parametrize("name", ["zstd", "deflate"])
def test_levels_accepted_and_rejected(name: str) -> None:
    levels = LEVELS[name]
    assert levels is not None
    lo, hi, _ = levels
    page = heap_page(1)
    for level in (lo, hi) if name == "deflate" else (lo, -1, 1, 19, hi):
        with Zswap(compressor=name, level=level) as z:
            assert z.level == level
            t = z.swapon(None, pages=1)
            outcome = z.store(t, 0, page)
            # zstd's fastest levels may not shrink a page below the ratio limit.
            assert outcome is StoreOutcome.STORED or level < 1
            if outcome is StoreOutcome.STORED:
                assert z.load(t, 0) == page
    for bad in (lo - 1, hi + 1):
        with pytest.raises(zswap_rs.ConfigError, match=f"level {bad} is out of range"):
            Zswap(compressor=name, level=bad)
    with Zswap(compressor=name) as z:
        with pytest.raises(zswap_rs.ConfigError, match="out of range"):
            z.level = hi + 1
        assert z.level == levels[2]
        z.level = lo
        assert z.level == lo


def test_lzo_has_no_levels() -> None:
    with pytest.raises(zswap_rs.ConfigError, match="no levels"):
        Zswap(compressor="lzo", level=1)


def test_switching_at_run_time_keeps_old_entries_readable() -> None:
    ps = pages(30)
    with Zswap(compressor="lz4", max_pool_bytes=64 << 20) as z:
        t = z.swapon(None, pages=len(ps))
        plan = [("lz4", None), ("zstd", None), ("deflate", 3), ("lzo", None), ("zstd", 19)]
        for k, (name, level) in enumerate(plan):
            z.compressor = name
            if level is not None:
                z.level = level
            assert (z.compressor, z.level is None) == (name, LEVELS[name] is None)
            for i in range(k * 6, k * 6 + 6):
                assert z.store(t, i, ps[i]) is StoreOutcome.STORED
        for i, p in enumerate(ps):
            assert z.load(t, i) == p
        # Overwrite some under the last compressor: the old copies go, the new read back.
        for i in range(0, len(ps), 4):
            z.store(t, i, ps[(i + 1) % len(ps)])
        for i, p in enumerate(ps):
            assert z.load(t, i) == (ps[(i + 1) % len(ps)] if i % 4 == 0 else p)


def test_train_dictionary_and_use_it() -> None:
    samples = pages(400)
    d = zswap_rs.train_dictionary(samples, 16 << 10)
    assert isinstance(d, bytes) and 0 < len(d) <= 16 << 10
    # One buffer of N pages, or any iterable of bytes-likes, trains the same way.
    assert zswap_rs.train_dictionary(b"".join(samples), 16 << 10) == d
    assert zswap_rs.train_dictionary(iter(map(bytearray, samples)), 16 << 10) == d
    fresh = pages(100, start=5000)
    sizes = {}
    for label, dictionary in (("plain", None), ("dict", d), ("view", memoryview(d))):
        with Zswap(compressor="zstd", dictionary=dictionary, max_pool_bytes=64 << 20) as z:
            t = z.swapon(None, pages=len(fresh))
            for i, p in enumerate(fresh):
                z.store(t, i, p)
            for i, p in enumerate(fresh):
                assert z.load(t, i) == p
            sizes[label] = z.stats()["compr_data_size"]
    assert sizes["dict"] == sizes["view"] < sizes["plain"]


def test_dictionary_survives_a_switch_away_and_back() -> None:
    d = zswap_rs.train_dictionary(pages(300), 8 << 10)
    ps = pages(20, start=900)
    with Zswap(compressor="zstd", dictionary=d) as z:
        t = z.swapon(None, pages=len(ps))
        for i in range(10):
            z.store(t, i, ps[i])
        z.compressor = "lzo"
        z.compressor = "zstd"
        for i in range(10, 20):
            z.store(t, i, ps[i])
        assert [z.load(t, i) for i in range(20)] == ps


def test_dictionary_errors() -> None:
    with pytest.raises(zswap_rs.ConfigError, match="zstd only"):
        Zswap(compressor="lz4", dictionary=b"\0" * 1024)
    with pytest.raises(TypeError, match="dictionary"):
        Zswap(compressor="zstd", dictionary="not bytes")  # type: ignore[arg-type]


def test_train_dictionary_errors() -> None:
    ps = pages(50)
    with pytest.raises(ValueError, match="size must be at least 256"):
        zswap_rs.train_dictionary(ps, 100)
    with pytest.raises(ValueError, match="whole number"):
        zswap_rs.train_dictionary(b"x" * 5000)
    with pytest.raises(ValueError, match=r"pages\[1\] must be exactly page_size"):
        zswap_rs.train_dictionary([ps[0], b"short"])
    with pytest.raises(TypeError, match="not str"):
        zswap_rs.train_dictionary("pages")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="iterable"):
        zswap_rs.train_dictionary(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no sample pages"):
        zswap_rs.train_dictionary([])
    with pytest.raises(ValueError, match="could not train"):
        zswap_rs.train_dictionary([bytes(PAGE)] * 3, 64 << 10)


def test_train_dictionary_page_size_and_typed_buffers() -> None:
    big = [heap_page(s) + heap_page(s + 1) for s in range(0, 400, 2)]
    d = zswap_rs.train_dictionary(big, 8 << 10, page_size=2 * PAGE)
    assert 0 < len(d) <= 8 << 10
    words = array.array("Q", b"".join(pages(200)))
    assert len(zswap_rs.train_dictionary(words, 8 << 10)) > 0
    with pytest.raises(ValueError, match="page_size"):
        zswap_rs.train_dictionary(big, page_size=3000)
    # The pages a Zswap takes, no others: a 512-byte page is refused as the
    # pool refuses it, with the pool's message.
    small = [heap_page(s)[:512] for s in range(400)]
    with pytest.raises(zswap_rs.ConfigError, match="page_size 512 is not a power of two in 4096"):
        zswap_rs.train_dictionary(small, page_size=512)
