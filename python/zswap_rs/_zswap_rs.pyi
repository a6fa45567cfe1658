"""Type stub of the native module; ``zswap_rs`` re-exports what users need."""

import os
from collections.abc import Iterable
from types import TracebackType
from typing import Literal, final

from typing_extensions import Buffer

from ._types import LoadSource, StoreOutcome

__version__: str
MAX_SWAP_TYPES: int

@final
class Zswap:
    """A compressed page cache in front of up to 32 swap areas.

    Every method may be called from many threads at once; compression,
    decompression and I/O run with the GIL released.

    After ``os.fork()`` (``multiprocessing``'s default on Linux) a cache made in the
    parent cannot be used in the child: locks that other threads held at the fork would
    stay locked there forever. Every call in the child raises ``ZswapError`` saying so,
    ``close()`` there does nothing, and a new ``Zswap`` made in the child works.
    Offsets given as integer arrays are read by value, whatever their byte order.

    ``store_incompressible=True`` keeps a page that compresses worse than
    ``max_compression_ratio`` (or not at all) in the pool as it is, as kernel >= 6.18
    does, to be written back in LRU order like any entry (``stats()``:
    ``stored_incompressible_pages``); ``False`` refuses it (``reject_compress_poor``),
    the 2013 behaviour. Omitted (``None``): off for a ``Zswap``.
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
        store_incompressible: bool | None = None,
        page_size: int = 4096,
    ) -> Zswap: ...
    def swapon(
        self,
        path: str | os.PathLike[str] | None = None,
        pages: int | None = None,
        *,
        direct: bool | None = None,
        disk_mbps: float | None = None,
        discard: bool | None = None,
        connect_timeout: float | None = None,
        io_timeout: float | None = None,
    ) -> int:
        """Turn on a swap area of ``pages`` slots; returns its swap type.

        With a ``path``, the area is backed by that file (created sparse with mode
        0600, never followed through a symlink) or block device: a page the pool
        does not take is written there (``SWAPPED``), and a full pool writes back
        its oldest entries there. ``direct`` (on unless given) opens it ``O_DIRECT``
        where the filesystem allows; ``disk_mbps`` paces its I/O to a slower
        device's speed; ``discard`` (on unless given) gives freed slots' blocks back
        to the filesystem (holes punched 64 at a time, as the kernel's ``swapon
        --discard``; on a filesystem mounted ``discard`` each punch costs
        milliseconds, in the storing thread). These three apply to a file only: for
        a memory-only area or Redis they raise ``ValueError``.
        An existing path must be an empty file or a zswap-rs swap file of this page
        size (``mkswap``); anything else raises ``BackingStoreError`` (``EINVAL``)
        untouched, and a file another area uses raises it with ``EBUSY``.

        A ``path`` of ``"redis://host:port/db"`` backs the area with a Redis
        server, ``"redis+cluster://host:port,host:port,..."`` with a Redis
        Cluster: pages travel lz4-compressed under keys named by the area's random
        id, and ``swapoff`` and ``close`` delete them. ``connect_timeout`` bounds
        the wait for a connection and ``io_timeout`` for each reply, in seconds
        (2 each by default; above 0, at most 3600, else ``ConfigError``; only for a
        Redis URL, else ``ValueError``). A server that is down, slow past its
        timeout or full (``maxmemory``) raises ``BackingStoreError``
        (``ECONNREFUSED``/``ECONNRESET``, ``ETIMEDOUT``, ``ENOSPC``) and the page
        stays where it was; writeback stops at the first such fault. A key lost
        or changed raises ``CorruptPageError``.
        """
    def backing_info(self, swap_type: int) -> dict[str, object] | None:
        """The backing store of ``swap_type`` as a dict, ``None`` for a memory-only area.

        Keys: path, pages, direct, disk_mbps, discard, used_slots."""
    def writeback(self, max_pages: int = 64) -> int:
        """Write back up to ``max_pages`` of the oldest entries now; returns how many."""
    def swapoff(self, swap_type: int) -> None:
        """Drop every entry of ``swap_type`` and turn it off.

        ``ZswapError``, and nothing changed, if it is the area of an open ``Region``."""
    def store(self, swap_type: int, offset: int, page: Buffer) -> StoreOutcome:
        """Store one page (exactly ``page_size`` bytes), replacing what ``offset`` held."""
    def load(self, swap_type: int, offset: int) -> bytes:
        """The page at ``(swap_type, offset)``; ``KeyError`` if nothing is stored there."""
    def load_into(self, swap_type: int, offset: int, buf: Buffer) -> LoadSource:
        """Load into a writable buffer of exactly ``page_size`` bytes; returns where the
        page came from: the pool, a fill word, or the backing store."""
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

        A signal (Ctrl-C) is seen within about 20 ms: the batch stops between pages and the
        ``KeyboardInterrupt`` carries ``outcomes`` the same way.
        """
    def load_many(self, swap_type: int, offsets: Iterable[int] | Buffer, out: Buffer) -> None:
        """Load the pages at ``offsets`` into one writable buffer of ``len(offsets)`` pages.

        A signal (Ctrl-C) stops it within about 20 ms; the ``KeyboardInterrupt``'s
        ``loaded`` says how many pages, a prefix of ``offsets``, were loaded into ``out``.
        """
    def invalidate(self, swap_type: int, offset: int) -> bool:
        """Drop the page at ``(swap_type, offset)``; returns whether one was there."""
    def compact(self) -> int:
        """Move objects out of sparse zspages and free them; returns pages freed."""
    def stats(self) -> dict[str, int]:
        """Every counter under the kernel's names (see SPEC.md)."""
    def pool_classes(self) -> list[dict[str, int | list[int]]]:
        """Per-size-class figures, as zsmalloc's debugfs ``classes``."""
    def region(
        self,
        size: int,
        budget: int,
        path: str | os.PathLike[str] | None = None,
        *,
        faults: Literal["handlers", "signal"] = "handlers",
        direct_io: bool = False,
        handlers: int | None = None,
        spin: float | None = None,
        pool_in_budget: bool = False,
    ) -> Region:
        """A region of ``size`` bytes, at most ``budget`` resident, on this cache's pool.

        ``path`` and the keyword options are ``Region``'s. Close the region before the
        cache: the cache's ``close()`` refuses while it is open.
        """
    def close(self) -> None:
        """Swap off every area; later calls raise ``ZswapError``.

        Refused with ``ZswapError``, and nothing changed, while a ``Region`` made on this
        cache is open: its evicted pages live in one of the areas."""
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
    store_incompressible: bool
    enabled: bool
    shrinker_enabled: bool
    shrinker_age: float

@final
class Region:
    """Memory of ``size`` bytes of which at most ``budget`` bytes are resident.

    The rest lives compressed in the pool of its cache and, beyond the pool, in
    its swap file (``path``; ``None``: a private, unlinked, sparse file in the
    temporary directory). The region exports its memory through the buffer
    protocol: ``numpy.frombuffer(r, dtype=...)`` and ``memoryview(r)`` see it
    with no copy, from any thread, and syscalls may read and write it.

    ``Region(size, budget, path=None, **zswap_options)`` makes a cache of its
    own with ``Zswap(**zswap_options)``; ``Zswap.region()`` shares one.

    ``path`` may also be a ``redis://`` or ``redis+cluster://`` URL, as for
    ``Zswap.swapon``: pages beyond the pool then go to Redis. The keyword
    options choose how faults are served (the README has the figures of each):

    - ``faults``: ``"handlers"`` (the default), handler threads serve them and
      every access works, the kernel's too (``read(2)`` into the region);
      ``"signal"``, the faulting thread serves its own fault in a ``SIGBUS``
      handler, with no thread switch, but a syscall that touches a page not
      mapped then fails with ``EFAULT`` (``OSError``) instead of waiting for it;

    - ``handlers``: fault handler threads, one pinned to each of the first
      ``handlers`` CPUs (``None``, the default: one per CPU, up to 16), or ``0``
      for one handler that is not pinned;
    - ``spin``: seconds a handler polls for the next fault before it sleeps
      (``None``: 0, sleep at once);
    - ``direct_io``: open the swap file ``O_DIRECT`` (off: an eviction's write
      lands in the page cache and the kernel writes it out, as its own swap
      does);
    - ``pool_in_budget``: count the cache's pool against the budget, as a
      cgroup v2 limit charges the kernel's zswap pool: resident pages then
      fill what the pool leaves of the budget (never under an eighth of it),
      so the budget is the region's RAM in all (off: resident pages alone,
      the pool on top, up to its own ``max_pool_bytes``). A page faulted in
      alone then leaves the pool, and sheds a few other resident pages'
      copies in the pool (``shed_copies``): a copy there would cost resident
      pages (one in the swap file costs none, and stays).

    Untouched pages read as zeros and cost nothing. After ``os.fork()`` the
    child has no mapping at ``address`` (an access there is ``SIGSEGV``): it
    never reads wrong bytes.
    """

    def __new__(
        cls,
        size: int,
        budget: int,
        path: str | os.PathLike[str] | None = None,
        *,
        faults: Literal["handlers", "signal"] = "handlers",
        direct_io: bool = False,
        handlers: int | None = None,
        spin: float | None = None,
        pool_in_budget: bool = False,
        **zswap_options: object,
    ) -> Region: ...
    @property
    def size(self) -> int:
        """Bytes of the region, ``len(memoryview(r))``."""
    def __len__(self) -> int: ...
    @property
    def address(self) -> int:
        """The region's first byte, page-aligned."""
    @property
    def budget(self) -> int:
        """Bytes that may be resident (whole pages); setting a lower one evicts at once."""
    @budget.setter
    def budget(self, value: int) -> None: ...
    @property
    def resident_bytes(self) -> int:
        """Bytes mapped now: at most ``budget``."""
    @property
    def swap_type(self) -> int:
        """The region's swap area in its cache (slot ``i`` holds page ``i``)."""
    def stats(self) -> dict[str, int]:
        """The region's counters (``faults``, ``wp_faults``, ``zero_fills``, ``evictions``,
        ``clean_evictions``, ``prefetched``, ``kept_resident``, ``fault_errors``,
        ``resident_pages``, ``handler_switches``, ``waker_timeouts``, ``shed_copies``), then its
        cache's under the kernel's names."""
    def close(self) -> None:
        """Unmap the region and free its entries and slots.

        ``BufferError`` while a buffer exported from it (a memoryview, a NumPy
        array) is alive, as ``mmap.close`` does; closing twice is allowed.
        """
    @property
    def closed(self) -> bool: ...
    def __enter__(self) -> Region: ...
    def __exit__(
        self,
        *_exc: type[BaseException] | BaseException | TracebackType | None,
    ) -> bool: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __release_buffer__(self, buffer: memoryview, /) -> None: ...

def userfaultfd_status() -> tuple[bool, str, str]:
    """Whether regions can be made here: ``(usable, mode, reason)``.

    ``mode`` is how the userfaultfd is obtained (``"syscall"`` or
    ``"/dev/userfaultfd"``; ``"none"`` when refused); ``reason`` says what to
    change when it is not usable.
    """

def _compressors() -> list[tuple[str, bool, bool, str]]: ...
def mkswap(
    path: str | os.PathLike[str],
    pages: int,
    *,
    page_size: int = 4096,
    force: bool = False,
) -> None:
    """Make ``path`` a zswap-rs swap file of ``pages`` slots, as the kernel's ``mkswap``.

    Writes the header (magic, format version, page size, slots, a random id) in
    a page before slot 0. Takes a new path (created with mode 0600), an empty
    or all-zero file or block device, or a zswap-rs swap file of any page size.
    Anything else (a user's file, a filesystem, a partition table, LUKS) raises
    ``BackingStoreError`` (errno ``EINVAL``) and is left untouched, unless
    ``force=True``. Never, force or not: a character device, a file on procfs
    or sysfs, or a file an area is using (errno ``EBUSY``).
    """

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
