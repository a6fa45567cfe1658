"""store_many / load_many: one buffer of pages, offsets from any sequence or integer array."""

from __future__ import annotations

import array
import random
import threading

import numpy as np
import pytest

import zswap_rs
from zswap_rs import StoreOutcome, Zswap

PAGE = 4096


def text_page(seed: int) -> bytes:
    rng = random.Random(seed)
    out = bytearray(f"<{seed}>".encode())
    while len(out) < PAGE:
        out += rng.choice([b"alpha ", b"beta ", b"swap ", b"page ", b"pool "])
    return bytes(out[:PAGE])


def batch(seeds: list[int]) -> bytes:
    return b"".join(text_page(s) for s in seeds)


@pytest.fixture
def z():
    with Zswap(max_pool_bytes=64 << 20) as cache:
        yield cache


def test_store_many_then_load_many_round_trip(z: Zswap) -> None:
    t = z.swapon(None, pages=100)
    pages = batch(list(range(10))) + bytes(PAGE) + random.Random(1).randbytes(PAGE)
    offsets = [*range(10, 20), 50, 51]
    outs = z.store_many(t, offsets, pages)
    assert outs == [StoreOutcome.STORED] * 10 + [StoreOutcome.SAME_FILLED, StoreOutcome.REJECTED]
    assert all(isinstance(o, StoreOutcome) for o in outs)
    out = bytearray(11 * PAGE)
    z.load_many(t, offsets[:11], out)
    assert bytes(out) == pages[: 11 * PAGE]
    for i, off in enumerate(offsets[:10]):
        assert z.load(t, off) == text_page(i)
    assert z.stats()["stored_pages"] == 11


@pytest.mark.parametrize(
    "make",
    [
        list,
        tuple,
        lambda xs: range(xs[0], xs[-1] + 1),
        lambda xs: array.array("q", xs),
        lambda xs: array.array("Q", xs),
        lambda xs: array.array("i", xs),
        lambda xs: np.array(xs, dtype=np.int64),
        lambda xs: np.array(xs, dtype=np.uint32),
    ],
)
def test_offsets_from_any_sequence_or_integer_array(z: Zswap, make) -> None:  # noqa: ANN001
    t = z.swapon(None, pages=64)
    offsets = list(range(3, 11))
    z.store_many(t, make(offsets), batch(offsets))
    out = np.zeros(len(offsets) * PAGE, dtype=np.uint8)
    z.load_many(t, make(offsets), out)
    assert out.tobytes() == batch(offsets)


def test_pages_from_any_contiguous_buffer(z: Zswap) -> None:
    t = z.swapon(None, pages=64)
    data = batch(list(range(6)))
    for i, buf in enumerate(
        [data, bytearray(data), memoryview(data), np.frombuffer(data, dtype=np.uint8)]
    ):
        offs = list(range(i * 6, i * 6 + 6))
        z.store_many(t, offs, buf)
        assert b"".join(z.load(t, o) for o in offs) == data
    view = memoryview(bytearray(8 * PAGE))[PAGE : 7 * PAGE]
    z.load_many(t, range(6), view)
    assert view.tobytes() == data


def test_a_bad_element_fails_the_call_before_anything_is_stored(z: Zswap) -> None:
    t = z.swapon(None, pages=10)
    before = z.stats()
    with pytest.raises(
        ValueError, match=r"offsets\[2\] = 10 is out of range for swap type 0: 0\.\.10"
    ):
        z.store_many(t, [0, 1, 10], batch([0, 1, 2]))
    with pytest.raises(ValueError, match=r"offsets\[1\] = -3 is out of range"):
        z.store_many(t, [0, -3], batch([0, 1]))
    with pytest.raises(ValueError, match=r"offsets\[1\] = -3 is out of range"):
        z.store_many(t, np.array([0, -3]), batch([0, 1]))
    with pytest.raises(ValueError, match=r"pages must be len\(offsets\) \* page_size = 3 \* 4096"):
        z.store_many(t, [0, 1, 2], batch([0, 1]))
    with pytest.raises(TypeError, match=r"offsets\[1\] must be an int, not float"):
        z.store_many(t, [0, 1.5], batch([0, 1]))
    with pytest.raises(TypeError, match="offsets must be"):
        z.store_many(t, "01", batch([0, 1]))
    with pytest.raises(TypeError):
        z.store_many(t, [0], "x" * PAGE)
    assert z.stats() == before
    with pytest.raises(KeyError):
        z.load(t, 0)


def test_load_many_errors(z: Zswap) -> None:
    t = z.swapon(None, pages=10)
    z.store_many(t, [0, 1], batch([0, 1]))
    with pytest.raises(KeyError) as e:
        z.load_many(t, [0, 5], bytearray(2 * PAGE))
    assert e.value.args == ((t, 5),)
    with pytest.raises(TypeError, match="writable"):
        z.load_many(t, [0, 1], bytes(2 * PAGE))
    with pytest.raises(ValueError, match=r"out must be len\(offsets\) \* page_size"):
        z.load_many(t, [0, 1], bytearray(PAGE))
    z.close()
    with pytest.raises(zswap_rs.ZswapError, match="closed"):
        z.load_many(t, [0], bytearray(PAGE))


def test_batches_from_many_threads(z: Zswap) -> None:
    t = z.swapon(None, pages=4 * 256)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            offs = np.arange(n * 256, (n + 1) * 256, dtype=np.int64)
            data = batch([int(o) for o in offs])
            for _ in range(3):
                z.store_many(t, offs, data)
                out = bytearray(len(data))
                z.load_many(t, offs, out)
                assert out == data
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    assert z.stats()["stored_pages"] == 4 * 256
