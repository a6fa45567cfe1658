"""Reading a command's pages from its `PageSource`: a page dump, a live process, or the workload.

Whatever the source, the result is the same `Pages`: a description of the
source for the report and the JSON, the pages, and whether a live process
exited while it was read. A process or workload is always let go of before
this returns, also on error or Ctrl-C.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import _procmem, _workload
from .._command_error import EXIT_FAILURE, EXIT_USAGE, CommandError
from .library import PAGE_SIZE
from .options import PageSource
from .report import Progress, note, warn

__all__ = ["Pages", "collect"]


@dataclass
class Pages:
    """The pages a source gave, and what the source was."""

    #: {"kind": "pages" | "pid" | "workload", ...}: see `report.describe_source`.
    source: dict[str, Any]
    pages: list[bytes]
    #: Did the live process exit while it was read (the pages are those read before)?
    exited: bool = False


def collect(src: PageSource) -> Pages:
    """Read the pages from the source the options name; end any workload.

    `_procmem` and `_workload` also run on their own, as scripts (the
    workload in its child process), and import nothing of the package: their
    errors become the command's here, a source the user can fix as a usage
    error, a workload that did not start as a failure.
    """
    try:
        if src.dump is not None:
            pf = _procmem.PageFile(src.dump, PAGE_SIZE)
            return Pages(pf.describe(), _read_pages(pf, src.max_pages, "reading"))
        if src.pid is not None:
            return _from_process(src.pid, src.max_pages)
        return _from_workload(src)
    except _procmem.SourceError as e:
        raise CommandError(str(e), EXIT_USAGE) from None
    except _workload.WorkloadError as e:
        raise CommandError(str(e), EXIT_FAILURE) from None


def _read_pages(
    source: _procmem.ProcessMemory | _procmem.PageFile, max_pages: int | None, label: str
) -> list[bytes]:
    total = source.estimate if max_pages is None else min(max_pages, source.estimate)
    pages: list[bytes] = []
    with Progress(label, total) as bar:
        for page in source.pages(max_pages):
            pages.append(page)
            bar.update(len(pages))
    return pages


def _process_command(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
            return f.read().strip() or None
    except OSError:
        return None


def _from_process(pid: int, max_pages: int | None) -> Pages:
    with _procmem.ProcessMemory(pid, PAGE_SIZE) as pm:
        source = {**pm.describe(), "command": _process_command(pid)}
        pages = _read_pages(pm, max_pages, f"reading PID {pid}")
        if pm.exited:
            warn(
                f"PID {pid} exited while it was being read; using the "
                f"{len(pages)} pages read before it did"
            )
        return Pages(source, pages, pm.exited)


def _from_workload(src: PageSource) -> Pages:
    note(f"starting the built-in workload ({src.workload_mb} MiB)...")
    with _workload.WorkloadProcess(src.workload_mb, src.seed) as wl:
        note(f"workload ready in {wl.build_seconds:.1f} s, PID {wl.pid}")
        with _procmem.ProcessMemory(wl.pid, PAGE_SIZE) as pm:
            pages = _read_pages(pm, src.max_pages, "reading workload")
            if pm.exited:
                raise CommandError("the built-in workload exited while it was read", EXIT_FAILURE)
        source = {
            "kind": "workload",
            "pid": wl.pid,
            "workload_mb": src.workload_mb,
            "seed": src.seed,
        }
    return Pages(source, pages)
