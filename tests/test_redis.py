"""Swap areas on a real Redis server from Python: the URL forms of ``swapon``,
writeback, a killed server (``BackingStoreError`` with errno, nothing lost),
FLUSHALL (``CorruptPageError``), and ``swapoff`` deleting the area's keys.

Each test starts its own ``redis-server`` (Debian's package; CI installs it) on
a free loopback port, without persistence, and kills it when the test ends.
"""

from __future__ import annotations

import errno
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import zswap_rs
from zswap_rs import StoreOutcome, Zswap

PAGE = 4096


def text_page(seed: int) -> bytes:
    out = bytearray()
    i = 0
    while len(out) < PAGE:
        out += f"[page {seed} word {i}]".encode()
        i += 1
    return bytes(out[:PAGE])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
            + ["--save", "", "--appendonly", "no", "--dir", str(tmp)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(200):
            if self.cli("PING") == "PONG":
                return
            time.sleep(0.025)
        self.stop()
        raise RuntimeError(f"redis-server on port {self.port} did not answer")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def cli(self, *args: str) -> str:
        r = subprocess.run(
            ["redis-cli", "-p", str(self.port), *args],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return r.stdout.strip()

    def dbsize(self) -> int:
        return int(self.cli("DBSIZE"))

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    s = Server(tmp_path)
    try:
        yield s
    finally:
        s.stop()


def test_a_redis_url_backs_the_area_and_swapoff_deletes_its_keys(server: Server) -> None:
    z = Zswap(max_pool_bytes=64 << 20)
    t = z.swapon(server.url, pages=1000)
    info = z.backing_info(t)
    assert info is not None and info["path"] == server.url
    for o in range(300):
        assert z.store(t, o, text_page(o)) == StoreOutcome.STORED
    assert z.writeback(200) == 200
    assert server.dbsize() == 200
    for o in range(300):
        assert z.load(t, o) == text_page(o)
    z.swapoff(t)
    assert server.dbsize() == 0


def test_a_killed_server_is_a_backing_error_and_flushall_is_corrupt(server: Server) -> None:
    z = Zswap(max_pool_bytes=64 << 20)
    t = z.swapon(server.url, pages=100)
    for o in range(40):
        z.store(t, o, text_page(o))
    assert z.writeback(10) == 10
    server.cli("FLUSHALL")
    with pytest.raises(zswap_rs.CorruptPageError):
        z.load(t, 0)
    server.stop()
    with pytest.raises(zswap_rs.BackingStoreError) as e:
        z.writeback(10)
    assert e.value.errno in (errno.ECONNREFUSED, errno.ECONNRESET)
    for o in range(10, 40):
        assert z.load(t, o) == text_page(o)
    z.close()


def test_bad_redis_arguments_are_typed() -> None:
    z = Zswap()
    with pytest.raises(zswap_rs.BackingStoreError) as e:
        z.swapon(f"redis://127.0.0.1:{free_port()}/0", pages=8)
    assert e.value.errno == errno.ECONNREFUSED
    with pytest.raises(zswap_rs.ConfigError):
        z.swapon("redis+cluster://", pages=8)
    with pytest.raises(ValueError, match="disk_mbps"):
        z.swapon("redis://127.0.0.1:1/0", pages=8, disk_mbps=10.0)


@pytest.mark.parametrize("option", ["direct", "discard", "disk_mbps"])
def test_file_options_given_for_another_area_are_value_errors(option: str) -> None:
    # O_DIRECT, discard and pacing have no meaning for Redis or for a
    # memory-only area: asking for them (even for the file's default) is an
    # error, not something ignored, and takes no area.
    z = Zswap()
    value = 10.0 if option == "disk_mbps" else True
    with pytest.raises(ValueError, match=f"{option} applies to a file, not Redis"):
        z.swapon("redis://127.0.0.1:1/0", pages=8, **{option: value})
    with pytest.raises(ValueError, match=f"{option} applies to a file, not a memory-only"):
        z.swapon(None, pages=8, **{option: value})
    assert z.swapon(None, pages=8) == 0, "no area was taken"


def test_timeouts_are_taken_in_seconds_and_a_stopped_server_fails_fast(
    server: Server,
) -> None:
    z = Zswap(max_pool_bytes=64 << 20)
    t = z.swapon(server.url, pages=100, connect_timeout=0.3, io_timeout=0.3)
    for o in range(20):
        z.store(t, o, text_page(o))
    assert z.writeback(5) == 5
    server.proc.send_signal(signal.SIGSTOP)
    try:
        # The default timeout is 2 s: a reply given up on sooner is ours.
        started = time.monotonic()
        with pytest.raises(zswap_rs.BackingStoreError) as e:
            z.load(t, 0)
        assert e.value.errno == errno.ETIMEDOUT
        assert time.monotonic() - started < 1.5
        # Writeback stops at its first timeout; the pages stay in the pool.
        started = time.monotonic()
        with pytest.raises(zswap_rs.BackingStoreError) as e:
            z.writeback(10)
        assert e.value.errno == errno.ETIMEDOUT
        assert time.monotonic() - started < 1.5
    finally:
        server.proc.send_signal(signal.SIGCONT)
    for o in range(5, 20):
        assert z.load(t, o) == text_page(o)
    assert z.writeback(10) == 10
    z.close()


@pytest.mark.parametrize("bad", [0, 0.0, -1.0, 1e-300, float("nan"), float("inf"), 3601.0])
def test_bad_timeouts_are_config_errors(bad: float) -> None:
    z = Zswap()
    # Checked before connecting: nothing listens on this port.
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(zswap_rs.ConfigError, match="connect_timeout"):
        z.swapon(url, pages=8, connect_timeout=bad)
    with pytest.raises(zswap_rs.ConfigError, match="io_timeout"):
        z.swapon(url, pages=8, io_timeout=bad)
    assert z.swapon(None, pages=8) == 0, "no area was taken"


def test_timeouts_apply_to_redis_only(tmp_path: Path) -> None:
    z = Zswap()
    with pytest.raises(ValueError, match="redis"):
        z.swapon(tmp_path / "swap", pages=8, io_timeout=1.0)
    with pytest.raises(ValueError, match="redis"):
        z.swapon(None, pages=8, connect_timeout=1.0)
    with pytest.raises(TypeError):
        z.swapon("redis://127.0.0.1:1/0", pages=8, io_timeout="1")  # type: ignore[arg-type]
    assert not (tmp_path / "swap").exists()
    assert z.swapon(None, pages=8) == 0, "no area was taken"
