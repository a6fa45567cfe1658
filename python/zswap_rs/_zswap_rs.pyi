"""Type stub of the native module; ``zswap_rs`` re-exports what users need."""

import os
from collections.abc import Iterable
from types import TracebackType
from typing import final

from typing_extensions import Buffer

from ._types import StoreOutcome

__version__: str
MAX_SWAP_TYPES: int

@final
class Zswap:
    """A compressed page cache in front of up to 32 swap areas.

    Every method may be called from many threads at once; compression,
    decompression and I/O run with the GIL released.
    """

    def __new__(
        cls,
        compressor: str = "lz4",
        *,
        level: int | None = None,
        dictionary: Buffer | None = None,
        max_pool_bytes: int | None = None,
        max_pool_percent: int = 20,
        accept_threshold_percent: int = 90,
        max_compression_ratio: int = 80,
        same_filled: bool = True,
        exclusive_loads: bool = False,
        page_size: int = 4096,
    ) -> Zswap: ...
    def swapon(
        self,
        path: str | os.PathLike[str] | None = None,
        pages: int | None = None,
        *,
        direct: bool = True,
        disk_mbps: float | None = None,
    ) -> int:
        """Turn on a swap area of ``pages`` slots; returns its swap type.

        With a ``path``, the area is backed by that file (created sparse with mode
        0600, never followed through a symlink) or block device: a page the pool
        does not take is written there (``SWAPPED``), and a full pool writes back
        its oldest entries there. ``direct`` opens it ``O_DIRECT`` where the
        filesystem allows; ``disk_mbps`` paces its I/O to a slower device's speed.
        """
    def backing_info(self, swap_type: int) -> dict[str, object] | None:
        """The backing file of ``swap_type`` (path, pages, direct, disk_mbps, used_slots)."""
    def writeback(self, max_pages: int = 64) -> int:
        """Write back up to ``max_pages`` of the oldest entries now; returns how many."""
    def swapoff(self, swap_type: int) -> None:
        """Drop every entry of ``swap_type`` and turn it off."""
    def store(self, swap_type: int, offset: int, page: Buffer) -> StoreOutcome:
        """Store one page (exactly ``page_size`` bytes), replacing what ``offset`` held."""
    def load(self, swap_type: int, offset: int) -> bytes:
        """The page at ``(swap_type, offset)``; ``KeyError`` if nothing is stored there."""
    def load_into(self, swap_type: int, offset: int, buf: Buffer) -> None:
        """Load into a writable buffer of exactly ``page_size`` bytes."""
    def store_many(
        self, swap_type: int, offsets: Iterable[int] | Buffer, pages: Buffer
    ) -> list[StoreOutcome]:
        """Store ``len(offsets)`` pages given as one buffer, page ``i`` at ``offsets[i]``.

        Every argument is checked before anything is stored (a ``ValueError`` names the
        first bad index); the buffer is read in place and the GIL released for the batch.

        Each page is a store of its own. A fault (``BackingStoreError``, or ``ZswapError``
        if the area is swapped off meanwhile) stops the batch at the page ``k`` the message
        names, and the exception's ``outcomes`` lists the outcomes of the ``k`` pages before
        it, which are done. Page ``k``'s offset holds what it held before; the pages after
        it were not stored (a hardware compressor that takes several pages at once may have
        stored some of ``k``'s batch already). Retrying from ``k`` is safe.
        """
    def load_many(self, swap_type: int, offsets: Iterable[int] | Buffer, out: Buffer) -> None:
        """Load the pages at ``offsets`` into one writable buffer of ``len(offsets)`` pages."""
    def invalidate(self, swap_type: int, offset: int) -> bool:
        """Drop the page at ``(swap_type, offset)``; returns whether one was there."""
    def compact(self) -> int:
        """Move objects out of sparse zspages and free them; returns pages freed."""
    def stats(self) -> dict[str, int]:
        """Every counter under the kernel's names (see SPEC.md)."""
    def pool_classes(self) -> list[dict[str, int | list[int]]]:
        """Per-size-class figures, as zsmalloc's debugfs ``classes``."""
    def close(self) -> None:
        """Swap off every area; later calls raise ``ZswapError``."""
    @property
    def closed(self) -> bool: ...
    def __enter__(self) -> Zswap: ...
    def __exit__(
        self,
        *_exc: type[BaseException] | BaseException | TracebackType | None,
    ) -> bool: ...
    @property
    def page_size(self) -> int: ...
    compressor: str
    level: int | None
    max_pool_bytes: int | None
    max_pool_percent: int
    accept_threshold_percent: int
    max_compression_ratio: int
    same_filled: bool
    exclusive_loads: bool
    enabled: bool
    shrinker_enabled: bool
    shrinker_age: float

def _compressors() -> list[tuple[str, bool, bool, str]]: ...
def train_dictionary(
    pages: Buffer | Iterable[Buffer],
    size: int = 32768,
    *,
    page_size: int = 4096,
) -> bytes:
    """Train a zstd dictionary of at most ``size`` bytes on sample pages.

    ``pages`` is one buffer of N pages or an iterable of page-sized buffers: a
    few hundred pages of the memory to be stored. Pass the result as
    ``Zswap(compressor="zstd", dictionary=...)``; ``ValueError`` if zstd cannot
    train on them (too few or too uniform pages).
    """
