"""The RAM budget: a trace's pages resident in an LRU, the rest swapped through a `Zswap`.

`budget` pages of RAM hold the resident pages, in an LRU. Touching a page
that is not resident faults it in (a new page costs nothing; a swapped page
is loaded, and its CRC32, taken when it went out, is checked). Before a page
comes in, the least recently used resident pages are swapped out (`store` at
their own offset: slot = offset) until it fits. **The pool's own memory
counts against the budget**: resident pages + ceil(pool_total_size /
page_size) <= budget at every step, and the pool's limit is
`max_pool_percent` of the budget, not of the machine's RAM: in the seed the
pool's pages came out of the same 512 MB, and under a cgroup limit today
they come out of the cgroup's. Measured otherwise, zswap would be given free
memory it never has. (`pool_total_size` is the pool's pages, as the kernel's
debugfs figure is; the index and LRU, 32 bytes an entry, are left out as the
kernel leaves out its entry slab.) In the base run zswap is disabled
(`enabled = False`): every store goes straight to the swap file through the
same code path.

Swap-in works as in Linux 6.5 and later. A page read from the swap file
keeps its slot while it is clean (the swap cache), so that evicting it again
unchanged costs no I/O; its first write frees the slot (`invalidate`), as
the kernel's write fault does, and the next eviction stores it anew. A page
loaded from the pool leaves it (`exclusive_loads`, zswap's behaviour since
6.5): a copy kept there would take pool memory, out of the same budget, for
a page that is in RAM anyway; the page counts as written, and its next
eviction compresses it again, at no I/O cost. (The kernel also frees a file
slot at swap-in when swap is more than half full, `vm_swap_full()`; the
model leaves that out.) `Config.exclusive_loads = False` gives the 2013
kernel's behaviour instead, where the pool kept its copy like the file.

The trade-off: the machine reads the pool's size from `stats()` after every
store (and after a swap-in from the pool, which shrank it), so a step costs
a stats call; exact accounting of the budget is what the experiment is
about. Where a swapped-in page came from, `load_into` says itself.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, TextIO

from .._command_error import EXIT_FAILURE, CommandError
from .._types import LoadSource
from .model import OP_FREE, OP_WRITE, mutate

__all__ = ["BUDGET_LOG_HEADER", "Machine"]

#: The header of the budget log (`--budget-log`): one row per fault.
BUDGET_LOG_HEADER = "mode,jobs,step,resident_pages,pool_pages,budget_pages\n"


class Machine:
    """The RAM budget of one run: resident pages in an LRU, the rest in swap.

    Invariants between steps: `resident` holds at most `budget - pool_pages`
    pages; an offset in `crcs` has a copy in swap (pool or file) whose CRC32
    it gives; an offset in `clean` is resident and its swap copy is still
    equal to it.
    """

    def __init__(
        self,
        z: Any,
        swap_type: int,
        budget: int,
        page_size: int,
        source: Sequence[bytes],
        mode: str,
        jobs: int,
        log: TextIO | None,
    ) -> None:
        self.z = z
        self.t = swap_type
        self.budget = budget
        self.ps = page_size
        self.source = source
        self.mode = mode
        self.exclusive = bool(z.exclusive_loads)
        self.jobs = jobs
        self.log = log
        self.resident: OrderedDict[int, bytearray] = OrderedDict()
        self.clean: set[int] = set()
        self.crcs: dict[int, int] = {}
        self.pool_pages = 0
        #: The pool may have shrunk since pool_pages was read (invalidate).
        self.pool_stale = False
        #: Pages faulted back in from swap (pool or file), and first-touch pages.
        self.swap_ins = 0
        self.new_pages = 0
        #: Resident pages pushed out: stored, or dropped clean (their copy kept).
        self.evictions = 0
        self.clean_evictions = 0
        #: Pages swapped in whose CRC32 differed from the one taken at swap-out.
        self.mismatched = 0
        #: Largest resident, pool and resident + pool pages seen.
        self.peak_resident = 0
        self.peak_pool = 0
        self.peak_charged = 0
        self.steps = 0

    def step(self, op: int, offset: int, source_index: int, mutation: int) -> None:
        """Replay one event of the trace."""
        self.steps += 1
        if op == OP_FREE:
            self.resident.pop(offset, None)
            self.clean.discard(offset)
            self._drop_swap_copy(offset)
            return
        page = self.resident.get(offset)
        if page is None:
            page = self._fault(offset, source_index)
        else:
            self.resident.move_to_end(offset)
        if op == OP_WRITE:
            if offset in self.clean:
                # The kernel's write fault frees the swap slot of the page.
                self.clean.discard(offset)
                self._drop_swap_copy(offset)
            mutate(page, mutation, self.ps)

    def _read_pool(self, stats: dict[str, int] | None = None) -> None:
        size = int((stats or self.z.stats())["pool_total_size"])
        self.pool_pages = -(-size // self.ps)
        self.pool_stale = False
        self.peak_pool = max(self.peak_pool, self.pool_pages)

    def _drop_swap_copy(self, offset: int) -> None:
        if self.crcs.pop(offset, None) is not None:
            self.z.invalidate(self.t, offset)
            self.pool_stale = True

    def _evict(self) -> None:
        offset, page = self.resident.popitem(last=False)
        self.evictions += 1
        if offset in self.clean:
            # Its swap copy is still equal to it: drop it, no I/O.
            self.clean.discard(offset)
            self.clean_evictions += 1
            return
        outcome = self.z.store(self.t, offset, page)
        if str(getattr(outcome, "value", outcome)) == "REJECTED":
            raise CommandError(
                f"BUG: {self.mode}: store at offset {offset} was rejected although "
                "the area has a swap file",
                EXIT_FAILURE,
            )
        self.crcs[offset] = zlib.crc32(page)
        self._read_pool()

    def _make_room(self) -> None:
        """Evict until one more page fits beside the resident pages and the pool."""
        if self.pool_stale:
            self._read_pool()
        while len(self.resident) + 1 + self.pool_pages > self.budget:
            if not self.resident:
                raise CommandError(
                    f"{self.mode}: the pool alone ({self.pool_pages} pages) fills the "
                    f"budget of {self.budget} pages",
                    EXIT_FAILURE,
                )
            self._evict()

    def _swap_in(self, offset: int) -> bytearray:
        page = bytearray(self.ps)
        source = self.z.load_into(self.t, offset, page)
        if zlib.crc32(page) != self.crcs[offset]:
            self.mismatched += 1
        self.swap_ins += 1
        if source != LoadSource.BACKING and self.exclusive:
            # From the pool, which dropped its copy: the page is dirty.
            del self.crcs[offset]
            self._read_pool()
        else:
            self.clean.add(offset)
        return page

    def _fault(self, offset: int, source_index: int) -> bytearray:
        self._make_room()
        if offset in self.crcs:
            page = self._swap_in(offset)
        else:
            page = bytearray(self.source[source_index])
            self.new_pages += 1
        self.resident[offset] = page
        resident = len(self.resident)
        self.peak_resident = max(self.peak_resident, resident)
        if self.log is not None:
            self._read_pool()
            self.log.write(
                f"{self.mode},{self.jobs},{self.steps},{resident},{self.pool_pages},{self.budget}\n"
            )
        self.peak_charged = max(self.peak_charged, resident + self.pool_pages)
        return page
