"""Type stub of the native module; ``zswap_rs`` re-exports what users need."""

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
        max_pool_bytes: int | None = None,
        max_pool_percent: int = 20,
        accept_threshold_percent: int = 90,
        max_compression_ratio: int = 80,
        same_filled: bool = True,
        exclusive_loads: bool = False,
        page_size: int = 4096,
    ) -> Zswap: ...
    def swapon(self, path: str | None = None, pages: int | None = None) -> int:
        """Turn on a swap area of ``pages`` slots; returns its swap type."""
    def swapoff(self, swap_type: int) -> None:
        """Drop every entry of ``swap_type`` and turn it off."""
    def store(self, swap_type: int, offset: int, page: Buffer) -> StoreOutcome:
        """Store one page (exactly ``page_size`` bytes), replacing what ``offset`` held."""
    def load(self, swap_type: int, offset: int) -> bytes:
        """The page at ``(swap_type, offset)``; ``KeyError`` if nothing is stored there."""
    def load_into(self, swap_type: int, offset: int, buf: Buffer) -> None:
        """Load into a writable buffer of exactly ``page_size`` bytes."""
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

def _compressors() -> list[tuple[str, bool, bool, str]]: ...
