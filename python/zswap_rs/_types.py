"""Plain value types of zswap_rs: what ``store`` returns, what ``compressors()`` tells."""

from __future__ import annotations

import enum
from typing import NamedTuple

__all__ = ["CompressorInfo", "StoreOutcome"]


class StoreOutcome(enum.StrEnum):
    """What ``Zswap.store`` did with a page. A ``str``, so it compares equal to its name."""

    #: Compressed into the pool.
    STORED = "STORED"
    #: One repeated word: kept as that word, no pool memory used.
    SAME_FILLED = "SAME_FILLED"
    #: Not taken by the pool, written to the backing swap file.
    SWAPPED = "SWAPPED"
    #: Not taken and no backing file: the caller keeps the page (``stats()`` says why).
    REJECTED = "REJECTED"


class LoadSource(enum.StrEnum):
    """Where ``Zswap.load_into`` found a page. A ``str``, so it compares equal to its name."""

    #: Decompressed from the pool (counted in ``zswpin``).
    POOL = "POOL"
    #: Rebuilt from its fill word (counted in ``zswpin``).
    SAME_FILLED = "SAME_FILLED"
    #: Read from the area's backing store, a file or Redis (counted in ``pswpin``).
    BACKING = "BACKING"


class CompressorInfo(NamedTuple):
    """Whether a compressor can be used on this machine, and if not, why."""

    available: bool
    hardware: bool
    reason: str
