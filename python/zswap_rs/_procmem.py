"""Where `zswap-rs profile` gets its pages: a live process, or a raw page dump.

What zswap sees of a process is its private anonymous memory: the heap, the
stacks and the anonymous mappings that malloc and language runtimes make.
Under memory pressure those pages go to swap, and so through zswap; page
cache pages are dropped or written to their own file instead, and shared
memory goes through shmem. So `ProcessMemory` reads only private mappings with
no file behind them (`/proc/PID/maps`), and of those only the pages that are
really there: resident (pagemap bit 63) or already swapped out (bit 62).

Why pagemap and not just the mappings: a malloc arena or a runtime's heap
reservation of 1 GB of which the process touched ten pages is ten pages of
memory. Reading all 262144 virtual pages would make the kernel map the shared
zero page for the 262134 untouched ones, and they would show up as
same-filled pages that zswap never gets to see, burying the real figures.

The pages are read through `/proc/PID/mem` with `os.pread`, one call per run
of contiguous present pages (up to `READ_CHUNK` bytes): a 150 MB heap takes a
few dozen system calls instead of 40000. Reading a swapped-out page swaps it
back in; that is the price of seeing it.

Permissions: `maps` and `pagemap` need ptrace read access to the process,
`mem` needs ptrace attach access: the same user (and, under Yama's
`ptrace_scope` = 1, a parent of the process) or root (CAP_SYS_PTRACE). The
page frame numbers in pagemap are hidden from non-root readers; the
present/swapped bits, all that is used here, are not.

Private file-backed mappings (a library's written-to `.data`) also hold
anonymous copy-on-write pages that the kernel swaps; they are left out, as the
brief for this tool asks for the process's anonymous memory only.

`PageFile` reads the raw dump format that `--save-pages` writes and the Rust
benchmarks read: pages concatenated, no header, length a multiple of the page
size.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

__all__ = [
    "AccessDenied",
    "BadPageFile",
    "Mapping",
    "NoSuchProcess",
    "PageFile",
    "ProcessMemory",
    "SourceError",
    "is_private_anonymous",
    "parse_maps",
    "system_page_size",
    "write_page_file",
]

#: pagemap entry bit: the page is in RAM (Documentation/admin-guide/mm/pagemap.rst).
PM_PRESENT = 1 << 63
#: pagemap entry bit: the page is in swap (or under migration).
PM_SWAPPED = 1 << 62
#: One pagemap entry per virtual page, a native-endian u64.
PAGEMAP_ENTRY_BYTES = 8
#: Pagemap entries read per call: 512 KiB of pagemap covers 256 MiB of address
#: space at 4 KiB pages, so a large sparse reservation costs a few reads, and a
#: chunk that is all zeros (nothing present) is skipped with one comparison.
PAGEMAP_CHUNK_ENTRIES = 1 << 16
#: Largest single read of /proc/PID/mem. Large enough that the system call and
#: the kernel's per-call page walk setup are noise (2048 pages a call), small
#: enough that the extra copy it costs in the reader stays a few MiB.
READ_CHUNK = 8 << 20

#: Names the kernel gives to private anonymous mappings. `[anon:NAME]` is a
#: mapping named with prctl(PR_SET_VMA_ANON_NAME) (Linux 5.17+), `[stack:TID]`
#: a thread stack on kernels before 4.5.
_ANON_NAMES = ("[heap]", "[stack]")
_ANON_PREFIXES = ("[anon:", "[stack:")

_ZERO_PAGEMAP_CHUNK = bytes(PAGEMAP_CHUNK_ENTRIES * PAGEMAP_ENTRY_BYTES)


class SourceError(Exception):
    """The pages' source cannot be read for a reason the user can fix.

    The command line reports the message as it is and exits with code 2.
    """


class NoSuchProcess(SourceError):
    """There is no process with that PID (or it exited before it was read)."""

    def __init__(self, pid: int, message: str | None = None) -> None:
        super().__init__(message or f"no process with PID {pid}")
        self.pid = pid


def _gone(pid: int) -> NoSuchProcess:
    """The error for a process whose memory is gone: exited, or never there."""
    if os.path.exists(f"/proc/{pid}"):
        return NoSuchProcess(
            pid, f"PID {pid} has exited (a zombie: its parent has not reaped it yet)"
        )
    return NoSuchProcess(pid)


class AccessDenied(SourceError):
    """The kernel refused access to the process's memory (ptrace access check)."""

    def __init__(self, pid: int, what: str) -> None:
        if os.geteuid() == 0:
            why = (
                "even as root: the process may be marked non-dumpable, or a security "
                "module (SELinux, AppArmor, Yama's ptrace_scope = 3) forbids it"
            )
        else:
            why = (
                "reading another process's memory needs ptrace access to it: run "
                "zswap-rs as the same user as the process (with "
                "kernel.yama.ptrace_scope = 1 only a parent may read it) or as root"
            )
        super().__init__(f"cannot read {what} of PID {pid}: permission denied; {why}")
        self.pid = pid


class BadPageFile(SourceError):
    """A page dump that cannot be used: missing, empty, or of a bad length."""


def system_page_size() -> int:
    """The kernel's page size: the unit of /proc/PID/pagemap."""
    return os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Mapping:
    """One line of /proc/PID/maps."""

    start: int
    end: int
    perms: str
    offset: int
    dev: str
    inode: int
    path: str

    @property
    def size(self) -> int:
        return self.end - self.start


def parse_maps(text: str) -> list[Mapping]:
    """Parse the text of /proc/PID/maps.

    The path is everything after the inode, and may be empty or hold spaces
    (a file name with spaces, or " (deleted)").
    """
    mappings: list[Mapping] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split(maxsplit=5)
        if len(fields) < 5:
            raise ValueError(f"unexpected line in maps: {line!r}")
        start, _, end = fields[0].partition("-")
        mappings.append(
            Mapping(
                start=int(start, 16),
                end=int(end, 16),
                perms=fields[1],
                offset=int(fields[2], 16),
                dev=fields[3],
                inode=int(fields[4]),
                path=fields[5].strip() if len(fields) > 5 else "",
            )
        )
    return mappings


def is_private_anonymous(m: Mapping) -> bool:
    """Is this mapping private memory with no file behind it (what swap holds)?

    Kept: anonymous mappings, `[heap]`, `[stack]`, named anonymous mappings.
    Left out: shared mappings (shmem, not swap), file-backed mappings,
    and the kernel's special mappings (`[vvar]`, `[vdso]`, `[vsyscall]`, ...).
    """
    if len(m.perms) < 4 or m.perms[3] != "p" or m.inode != 0:
        return False
    if not m.path:
        return True
    return m.path in _ANON_NAMES or m.path.startswith(_ANON_PREFIXES)


def _process_alive(pid: int) -> bool:
    """Does the process still have an address space (not gone, not a zombie)?"""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    # The state letter follows the command name in parentheses, which may
    # itself hold parentheses: split at the last one.
    state = stat.rpartition(b")")[2].split()[:1]
    return state not in ([b"Z"], [b"X"], [])


class ProcessMemory:
    """The resident (or swapped) private anonymous pages of a live process.

    Opening checks access at once (so that a permission problem is reported
    before any work is done) and scans pagemap to find the pages, which gives
    `estimate`, the number of pages `pages()` will yield unless the process
    changes meanwhile. `pages()` reads them; if the process exits while they
    are read, it stops, keeps what was read, and sets `exited`.

    `page_size` is the size of the pages yielded; the kernel's page size must
    be a multiple of it (a 64 KiB kernel page yields sixteen 4 KiB pages).
    """

    def __init__(self, pid: int, page_size: int | None = None) -> None:
        self.pid = pid
        self.system_page_size = system_page_size()
        self.page_size = page_size or self.system_page_size
        if self.page_size <= 0 or self.system_page_size % self.page_size:
            raise SourceError(
                f"page size {self.page_size} does not divide the system page size "
                f"{self.system_page_size}"
            )
        #: Pages the process exiting kept `pages()` from reading.
        self.exited = False
        #: Pages yielded so far.
        self.pages_read = 0
        #: Present pages whose read failed (unmapped meanwhile, or not readable).
        self.unreadable_pages = 0
        self._mem_fd = -1
        maps_text = self._read_maps()
        self.mappings = [m for m in parse_maps(maps_text) if is_private_anonymous(m)]
        self._mem_fd = self._open(f"/proc/{pid}/mem", "memory")
        #: (address, system pages) of each run of contiguous present pages.
        self.runs: list[tuple[int, int]] = self._scan_pagemap()
        per_system_page = self.system_page_size // self.page_size
        #: Pages that `pages()` is expected to yield.
        self.estimate = sum(n for _, n in self.runs) * per_system_page

    def _open(self, path: str, what: str) -> int:
        try:
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise _gone(self.pid) from None
        except PermissionError:
            raise AccessDenied(self.pid, what) from None
        except ProcessLookupError:
            raise _gone(self.pid) from None

    def _read_maps(self) -> str:
        fd = self._open(f"/proc/{self.pid}/maps", "the memory map")
        try:
            with os.fdopen(fd, "rb", closefd=True) as f:
                return f.read().decode("utf-8", "surrogateescape")
        except ProcessLookupError:
            raise _gone(self.pid) from None
        except PermissionError:
            raise AccessDenied(self.pid, "the memory map") from None

    def _scan_pagemap(self) -> list[tuple[int, int]]:
        fd = self._open(f"/proc/{self.pid}/pagemap", "the page map")
        runs: list[tuple[int, int]] = []
        ps = self.system_page_size
        wanted = PM_PRESENT | PM_SWAPPED
        try:
            for m in self.mappings:
                first = m.start // ps
                last = m.end // ps
                run_start = -1  # page number where the current run began
                scanned_end = last  # less if the mapping shrank since maps was read
                for chunk_first in range(first, last, PAGEMAP_CHUNK_ENTRIES):
                    count = min(PAGEMAP_CHUNK_ENTRIES, last - chunk_first)
                    try:
                        buf = os.pread(
                            fd, count * PAGEMAP_ENTRY_BYTES, chunk_first * PAGEMAP_ENTRY_BYTES
                        )
                    except PermissionError:
                        raise AccessDenied(self.pid, "the page map") from None
                    except OSError as e:
                        if e.errno in (errno.ESRCH, errno.ENOENT):
                            raise _gone(self.pid) from None
                        raise
                    if len(buf) < count * PAGEMAP_ENTRY_BYTES:
                        # The mapping shrank, or the process exited meanwhile.
                        count = len(buf) // PAGEMAP_ENTRY_BYTES
                        buf = buf[: count * PAGEMAP_ENTRY_BYTES]
                    if buf == _ZERO_PAGEMAP_CHUNK[: len(buf)]:
                        if run_start >= 0:
                            runs.append((run_start * ps, chunk_first - run_start))
                            run_start = -1
                        continue
                    entries = memoryview(buf).cast("Q")
                    for i in range(count):
                        if entries[i] & wanted:
                            if run_start < 0:
                                run_start = chunk_first + i
                        elif run_start >= 0:
                            runs.append((run_start * ps, chunk_first + i - run_start))
                            run_start = -1
                    if count < min(PAGEMAP_CHUNK_ENTRIES, last - chunk_first):
                        scanned_end = chunk_first + count
                        break
                if run_start >= 0:
                    runs.append((run_start * ps, scanned_end - run_start))
        finally:
            os.close(fd)
        return runs

    def pages(self, max_pages: int | None = None) -> Iterator[bytes]:
        """Yield the pages, in address order, `page_size` bytes each."""
        for _, page in self.pages_with_addresses(max_pages):
            yield page

    def pages_with_addresses(self, max_pages: int | None = None) -> Iterator[tuple[int, bytes]]:
        """Yield (virtual address, page) for each page, in address order."""
        ps = self.page_size
        left = self.estimate if max_pages is None else min(max_pages, self.estimate)
        for run_addr, run_pages in self.runs:
            addr = run_addr
            end = run_addr + run_pages * self.system_page_size
            while addr < end and left > 0:
                want = min(end - addr, READ_CHUNK, left * ps)
                data = self._read(addr, want)
                if data is None:  # the process is gone
                    self.exited = True
                    return
                if not data:  # this page is not readable: skip it
                    self.unreadable_pages += self.system_page_size // ps
                    addr += self.system_page_size
                    continue
                n = len(data) // ps
                for i in range(n):
                    yield addr + i * ps, data[i * ps : (i + 1) * ps]
                self.pages_read += n
                left -= n
                addr += n * ps
            if left <= 0:
                return

    def _read(self, addr: int, size: int) -> bytes | None:
        """Read up to `size` bytes at `addr`; None once the process has exited.

        Returns a whole number of pages. Returns b"" when the first system page
        at `addr` cannot be read while the process lives on (it was unmapped
        after the scan, or is an I/O mapping), so that the caller skips it.
        """
        ps = self.system_page_size
        try:
            data = os.pread(self._mem_fd, size, addr)
        except OSError as e:
            if e.errno == errno.ESRCH:
                return None
            if e.errno not in (errno.EIO, errno.EFAULT, errno.ENOMEM):
                raise
            data = b""
        if not data:
            if not _process_alive(self.pid):
                return None
            if size > ps:
                # One bad page spoils a large read: retry the first page alone.
                return self._read(addr, ps)
            return b""
        whole = len(data) - len(data) % self.page_size
        return data[:whole] if whole != len(data) else data

    def describe(self) -> dict[str, object]:
        return {"kind": "pid", "pid": self.pid}

    def close(self) -> None:
        if self._mem_fd >= 0:
            os.close(self._mem_fd)
            self._mem_fd = -1

    def __enter__(self) -> ProcessMemory:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


class PageFile:
    """A raw page dump: `page_size`-byte pages concatenated, no header.

    This is the format `--save-pages` writes and the Rust benchmarks read.
    The length is checked when the file is opened.
    """

    def __init__(self, path: str | os.PathLike[str], page_size: int) -> None:
        self.path = Path(path)
        self.page_size = page_size
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            raise BadPageFile(f"{self.path}: no such file") from None
        except OSError as e:
            raise BadPageFile(f"{self.path}: {e.strerror}") from None
        if self.path.is_dir():
            raise BadPageFile(f"{self.path}: is a directory, not a page dump")
        if size == 0:
            raise BadPageFile(f"{self.path}: the page dump is empty")
        if size % page_size:
            raise BadPageFile(
                f"{self.path}: {size} bytes is not a whole number of {page_size}-byte "
                f"pages ({size // page_size} {'page' if size // page_size == 1 else 'pages'} "
                f"and {size % page_size} bytes left over); a page dump is raw pages with "
                "no header"
            )
        self.estimate = size // page_size
        self.pages_read = 0
        self.exited = False

    def pages(self, max_pages: int | None = None) -> Iterator[bytes]:
        ps = self.page_size
        left = self.estimate if max_pages is None else min(max_pages, self.estimate)
        try:
            with self.path.open("rb") as f:
                while left > 0:
                    data = f.read(min(left * ps, READ_CHUNK))
                    if len(data) < ps:
                        break
                    n = len(data) // ps
                    for i in range(n):
                        yield data[i * ps : (i + 1) * ps]
                    self.pages_read += n
                    left -= n
        except OSError as e:
            raise BadPageFile(f"{self.path}: {e.strerror}") from None

    def describe(self) -> dict[str, object]:
        return {"kind": "pages", "path": str(self.path)}

    def close(self) -> None:
        pass


def write_page_file(path: str | os.PathLike[str], pages: list[bytes]) -> None:
    """Write pages in the raw dump format that `PageFile` reads."""
    with open(path, "wb") as f:
        f.writelines(pages)


if __name__ == "__main__":  # pragma: no cover - a debugging aid
    with ProcessMemory(int(sys.argv[1])) as pm:
        print(f"{len(pm.mappings)} mappings, {pm.estimate} pages present")
