"""What a hostile but realistic user does to the Python face: fork while other
threads are inside the cache, Ctrl-C in the middle of a big batch, integer
arrays of the other byte order, odd integer-likes, strided buffers, and a bug
(a panic) in the core. Each one must give a typed error or the right bytes,
never a hang, a wrong page or a ``BaseException`` that ``except Exception``
misses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import zswap_rs
from zswap_rs import StoreOutcome, Zswap

PAGE = 4096


def page(seed: int) -> bytes:
    words = [b"alpha ", b"beta ", b"swap ", b"page ", b"pool ", b"zone "]
    out = bytearray(f"<{seed}>".encode())
    i = seed
    while len(out) < PAGE:
        out += words[i % 6]
        i = (i * 1103515245 + 12345) >> 3
    return bytes(out[:PAGE])


@pytest.fixture
def z():
    with Zswap(max_pool_bytes=256 << 20) as cache:
        yield cache


@pytest.mark.parametrize("dtype", [">u4", ">u8", ">i8", ">i4", "<u4", "<i8", "u2", ">u2", "i1"])
def test_offsets_of_any_byte_order_are_read_by_value(z: Zswap, dtype: str) -> None:
    t = z.swapon(None, pages=1 << 25)
    z.store(t, 1 << 24, page(99))  # what a byte-swapped 1 would read
    offsets = np.array([1, 2, 3], dtype=dtype)
    z.store_many(t, offsets, page(1) + page(2) + page(3))
    assert z.load(t, 1) == page(1) and z.load(t, 1 << 24) == page(99)
    out = bytearray(3 * PAGE)
    z.load_many(t, offsets, out)
    assert bytes(out) == page(1) + page(2) + page(3)


class Index:
    def __init__(self, value: object) -> None:
        self.value = value

    def __index__(self) -> int:
        if isinstance(self.value, BaseException):
            raise self.value
        return self.value  # type: ignore[return-value]


def test_integer_likes_get_the_errors_of_their_value(z: Zswap) -> None:
    t = z.swapon(None, pages=10)
    z.store(t, 3, page(3))
    assert z.load(t, np.uint8(3)) == page(3)
    assert z.load(t, Index(3)) == page(3)
    # Out of range is a ValueError whatever type carries the value.
    for huge in (np.uint64(2**63), Index(2**70), 2**70):
        with pytest.raises(ValueError, match="out of range"):
            z.load(t, huge)  # type: ignore[arg-type]
    # An __index__ that fails is the caller's own error, passed through.
    with pytest.raises(RuntimeError, match="mine"):
        z.load(t, Index(RuntimeError("mine")))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="offset must be an int, not bool"):
        z.load(t, True)
    with pytest.raises(TypeError, match="offsets\\[1\\] must be an int, not bool"):
        z.load_many(t, [3, False], bytearray(2 * PAGE))
    with pytest.raises(TypeError, match="max_pool_bytes must be an int, not bool"):
        Zswap(max_pool_bytes=True)
    with pytest.raises(zswap_rs.ConfigError, match="page_size -4096 is not a power of two"):
        Zswap(page_size=-4096)
    for age in (1e300, -1.0, float("nan"), float("inf"), 0.0):
        with pytest.raises(zswap_rs.ConfigError, match="shrinker_age must be a positive"):
            z.shrinker_age = age


def test_strided_buffers_are_value_errors_whatever_their_item_type(z: Zswap) -> None:
    t = z.swapon(None, pages=10)
    for strided in (
        np.zeros(2 * PAGE, dtype=np.uint8)[::2],
        np.zeros(PAGE // 4, dtype=np.uint64)[::2],
        memoryview(bytearray(2 * PAGE))[::2],
    ):
        with pytest.raises(ValueError, match="page must be C-contiguous"):
            z.store(t, 0, strided)
        with pytest.raises(ValueError, match="must be C-contiguous"):
            z.load_many(t, [0], strided)
    assert z.stats()["zswpout"] == 0


def test_a_panic_in_the_core_is_an_ordinary_exception() -> None:
    with pytest.raises(zswap_rs.ZswapError, match="internal error in zswap-rs"):
        zswap_rs._zswap_rs._panic_in_core_for_tests()


def _child_result(pid: int, timeout: float) -> int:
    """The child's exit status, or -1 if it had not exited by `timeout` (killed then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return -1


def test_fork_while_threads_are_inside_the_cache_never_hangs_the_child() -> None:
    z = Zswap(max_pool_bytes=64 << 20)
    t = z.swapon(None, pages=4096)
    data = b"".join(page(i) for i in range(256))
    offsets = np.arange(256, dtype=np.int64)
    stop = threading.Event()

    def busy(n: int) -> None:
        out = bytearray(len(data))
        while not stop.is_set():
            z.store_many(t, offsets + 256 * n, data)
            z.load_many(t, offsets + 256 * n, out)

    threads = [threading.Thread(target=busy, args=(n,)) for n in range(2)]
    for th in threads:
        th.start()
    try:
        time.sleep(0.05)
        for _ in range(10):
            pid = os.fork()
            if pid == 0:  # the child: every call says why it cannot work, none hangs
                code = 0
                try:
                    z.load(t, 0)
                    code = 3
                except zswap_rs.ZswapError as e:
                    code = 0 if "os.fork()" in str(e) else 4
                try:
                    with Zswap(max_pool_bytes=1 << 20) as fresh:  # a new one works
                        ft = fresh.swapon(None, pages=4)
                        fresh.store(ft, 0, page(7))
                        if fresh.load(ft, 0) != page(7):
                            code = 5
                except BaseException:  # noqa: BLE001 - any failure is the exit code
                    code = 6
                z.close()  # a no-op here, as leaving a `with` block is
                del z  # dropping the parent's cache must not wait on its locks
                os._exit(code)
            assert _child_result(pid, timeout=20) == 0
    finally:
        stop.set()
        for th in threads:
            th.join()
    # The parent's cache is untouched by all that.
    assert z.load(t, 5) == page(5)
    z.close()


def test_ctrl_c_stops_a_big_store_many_and_says_what_was_done(z: Zswap) -> None:
    n = 200_000  # several seconds of work, even in a release build
    t = z.swapon(None, pages=n)
    distinct = [page(i) for i in range(512)]
    data = b"".join(distinct[i % 512] for i in range(n))
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt) as e:
        z.store_many(t, range(n), data)
    stopped_after = time.monotonic() - start
    timer.join()
    outcomes = e.value.outcomes  # type: ignore[attr-defined]
    assert 0 < len(outcomes) < n, (len(outcomes), stopped_after)
    assert set(outcomes) <= {StoreOutcome.STORED, StoreOutcome.SAME_FILLED}
    k = len(outcomes)
    for i in (0, k // 2, k - 1):
        assert z.load(t, i) == distinct[i % 512]
    with pytest.raises(KeyError):
        z.load(t, k)
    # load_many stops the same way and says how far it got: a batch of
    # 100,000 loads of the pages stored above takes well over the 50 ms the
    # signal waits. The signal may land between two Python statements
    # instead (then it carries nothing): try again until it lands inside.
    m = 100_000
    offsets = np.arange(m, dtype=np.int64) % k
    for _ in range(20):
        out = bytearray(m * PAGE)
        timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT))
        try:
            timer.start()
            z.load_many(t, offsets, out)
            timer.join()
            continue  # the call was faster than the signal
        except KeyboardInterrupt as ki:
            timer.join()
            loaded = getattr(ki, "loaded", None)
        if loaded is not None:
            break
    else:
        pytest.fail("no SIGINT landed inside load_many in 20 tries")
    assert 0 <= loaded < m
    for j in range(0, loaded, max(1, loaded // 64)):
        assert out[j * PAGE : (j + 1) * PAGE] == distinct[offsets[j] % 512]
    assert not np.frombuffer(out, dtype=np.uint8)[loaded * PAGE :].any()  # nothing past it


def test_a_thread_the_os_refuses_is_an_oserror_not_a_config_error() -> None:
    # RLIMIT_NPROC counts the user's threads; root ignores it, so the child
    # drops to nobody first (CI runs as root), and a limit of 1 leaves room
    # for no thread beside its own.
    body = textwrap.dedent(
        """
        import errno, os, resource, zswap_rs
        z = zswap_rs.Zswap(max_pool_bytes=1 << 20)
        t = z.swapon(None, pages=4)
        if os.geteuid() == 0:
            os.setgid(65534); os.setuid(65534)
        resource.setrlimit(resource.RLIMIT_NPROC, (1, 1))
        try:
            z.shrinker_enabled = True
        except zswap_rs.ConfigError as e:
            raise SystemExit(f"a ConfigError: {e}")
        except OSError as e:
            assert e.errno == errno.EAGAIN, e
            assert "shrinker thread" in str(e), e
        else:
            raise SystemExit("the thread started despite the limit")
        # Nothing is left half done: the cache works, with no shrinker.
        assert not z.shrinker_enabled
        z.store(t, 0, b"x" * 4096)
        assert z.load(t, 0) == b"x" * 4096
        print("OUTCOME oserror")
        """
    )
    out = subprocess.run([sys.executable, "-c", body], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr + out.stdout
    assert "OUTCOME oserror" in out.stdout
