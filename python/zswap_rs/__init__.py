"""zswap in user space: a compressed cache for pages headed to swap.

The Linux zswap design (Seth Jennings, 2013; ``mm/zswap.c``) as a Rust core
with a Python API: pages are compressed into a zsmalloc-style pool, found
through a red-black tree per swap type, and counted under the kernel's names.

>>> import zswap_rs
>>> with zswap_rs.Zswap(max_pool_bytes=64 << 20) as z:
...     t = z.swapon(None, pages=1024)
...     z.store(t, 0, bytes(4096))
...     z.load(t, 0) == bytes(4096)
<StoreOutcome.SAME_FILLED: 'SAME_FILLED'>
True
"""

from __future__ import annotations

from ._errors import BackingStoreError, ConfigError, CorruptPageError, ZswapError
from ._types import CompressorInfo, LoadSource, StoreOutcome
from ._zswap_rs import (
    MAX_SWAP_TYPES,
    Region,
    Zswap,
    __version__,
    _compressors,
    mkswap,
    train_dictionary,
    userfaultfd_status,
)

__all__ = [
    "MAX_SWAP_TYPES",
    "BackingStoreError",
    "CompressorInfo",
    "ConfigError",
    "CorruptPageError",
    "LoadSource",
    "Region",
    "StoreOutcome",
    "Zswap",
    "ZswapError",
    "__version__",
    "compressors",
    "mkswap",
    "train_dictionary",
    "userfaultfd_status",
]


def compressors() -> dict[str, CompressorInfo]:
    """Every compressor of the contract, whether it is available here, and why not."""
    return {
        name: CompressorInfo(available, hardware, reason)
        for name, available, hardware, reason in _compressors()
    }
