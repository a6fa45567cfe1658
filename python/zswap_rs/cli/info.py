"""`zswap-rs info`: the version, the page size, the machine, each compressor, and userfaultfd."""

from __future__ import annotations

import argparse
import json
import platform
from typing import Any

from .. import _procmem
from .._command_error import EXIT_OK
from . import library, report
from .library import PAGE_SIZE
from .options import Command, add_output

__all__ = ["COMMAND"]


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "cpu", "Processor"):
                    return value.strip()
    except OSError:
        pass
    return None


def _compressors() -> dict[str, dict[str, Any]]:
    return {
        name: {
            "available": bool(info.available),
            "hardware": bool(info.hardware),
            "reason": info.reason or None,
        }
        for name, info in library.zswap().compressors().items()
    }


#: 1: anyone may call userfaultfd(2); 0: only with CAP_SYS_PTRACE (or /dev/userfaultfd).
SYSCTL = "/proc/sys/vm/unprivileged_userfaultfd"


def _userfaultfd() -> dict[str, Any]:
    """Can a Region get its userfaultfd here, how, or why not (the Region's own probe).

    With it, vm.unprivileged_userfaultfd: the setting that most often decides it, and whether
    signal mode (``faults="signal"``) works: a one-page region made in it and closed at once.
    """
    zs = library.zswap()
    usable, mode, reason = zs.userfaultfd_status()
    try:
        with open(SYSCTL, "rb") as f:
            sysctl: int | None = int(f.read())
    except (OSError, ValueError):
        sysctl = None  # a kernel without userfaultfd, or older than the sysctl (5.2)
    return {
        "usable": bool(usable),
        "mode": mode,
        "reason": reason or None,
        "unprivileged_userfaultfd": sysctl,
        "signal_mode": _signal_mode(zs) if usable else {"usable": False, "reason": None},
    }


def _signal_mode(zs: Any) -> dict[str, Any]:
    """Whether a region can serve its faults in the faulting thread's SIGBUS handler here."""
    page = _procmem.system_page_size()
    try:
        zs.Region(page, budget=page, faults="signal").close()
    except (zs.ZswapError, OSError) as e:
        return {"usable": False, "reason": str(e)}
    return {"usable": True, "reason": None}


def _print_text(doc: dict[str, Any]) -> None:
    print(f"zswap-rs {doc['version']}")
    print(
        f"page size: {PAGE_SIZE} bytes (zswap-rs default); "
        f"{doc['system_page_size']} bytes (this kernel)"
    )
    cpu = doc["cpu"]
    print(f"machine: {doc['machine']}" + (f", {cpu}" if cpu else ""))
    print("compressors:")
    rows = [
        [
            name,
            "yes" if c["available"] else "no",
            "yes" if c["hardware"] else "no",
            "" if c["available"] else (c["reason"] or ""),
        ]
        for name, c in doc["compressors"].items()
    ]
    header = ["name", "available", "hardware", "why not"]
    table = report.format_table(header, rows, left=len(header))
    print("\n".join("  " + line for line in table.splitlines()))
    hardware = doc["hardware_found"]
    print("hardware found: " + (", ".join(hardware) if hardware else "none"))
    print(_userfaultfd_line(doc["userfaultfd"]))


def _userfaultfd_line(uffd: dict[str, Any]) -> str:
    """Whether a Region can serve its faults here: how, or why not."""
    sysctl = uffd["unprivileged_userfaultfd"]
    setting = "" if sysctl is None else f"vm.unprivileged_userfaultfd = {sysctl}"
    if uffd["usable"]:
        signal = uffd["signal_mode"]
        how = "usable" if signal["usable"] else f"not usable: {signal['reason']}"
        details = f"{uffd['mode']}; {setting}" if setting else uffd["mode"]
        return f"userfaultfd: usable ({details}); signal mode: {how}"
    return "userfaultfd: not usable" + (f" ({setting})" if setting else "") + f": {uffd['reason']}"


def run(args: argparse.Namespace) -> int:
    compressors = _compressors()
    doc = {
        "version": library.version(),
        "page_size": PAGE_SIZE,
        "system_page_size": _procmem.system_page_size(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "compressors": compressors,
        "hardware_found": [n for n, c in compressors.items() if c["hardware"] and c["available"]],
        "userfaultfd": _userfaultfd(),
    }
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        _print_text(doc)
    return EXIT_OK


COMMAND = Command(
    name="info",
    help="version, page size, compressors, the hardware found, and userfaultfd",
    description="Print the version, the page size and each compressor: available "
    "here or not (and why), software or hardware; and whether userfaultfd (which a "
    "Region needs) is usable here, how, or why not.",
    add_arguments=lambda p: add_output(p, json_help="print a JSON document", plot_help=None),
    run=run,
)
