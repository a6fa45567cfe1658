"""The compiled module, imported when a command needs it, and what the commands ask of it.

Importing `zswap_rs` here, at run time and in one place, keeps `--help`
working on a broken installation and lets the tests put a stand-in in its
place (`monkeypatch.setattr(library, "zswap", ...)`).
"""

from __future__ import annotations

from types import ModuleType

from .._command_error import EXIT_FAILURE, CommandError

__all__ = ["PAGE_SIZE", "check_compressors", "version", "zswap"]

#: The page size the commands store with: the kernel's zswap page on x86-64
#: and most arm64 systems, and what the Rust benchmarks read.
PAGE_SIZE = 4096


def zswap() -> ModuleType:
    """The `zswap_rs` package, or a CommandError that says how to reinstall it."""
    try:
        import zswap_rs
    except ImportError as e:  # pragma: no cover - an installation problem
        raise CommandError(
            f"cannot import zswap_rs ({e}); reinstall it (pip install zswap-rs, or "
            "maturin develop in a checkout)",
            EXIT_FAILURE,
        ) from None
    return zswap_rs


def version() -> str:
    try:
        return str(zswap().__version__)
    except CommandError:  # pragma: no cover - an installation problem
        return "unknown"


def check_compressors(zswap_rs: ModuleType, wanted: list[str] | None) -> list[str]:
    """The compressors to run: those named (checked; "a,b" counts as two), or all available."""
    infos = zswap_rs.compressors()
    if not wanted:
        names = [name for name, info in infos.items() if info.available]
        if not names:
            raise CommandError("no compressor is available on this machine", EXIT_FAILURE)
        return names
    names = []
    for item in wanted:
        for name in item.split(","):
            name = name.strip()
            if not name or name in names:
                continue
            if name not in infos:
                raise CommandError(f"unknown compressor {name!r}; known: {', '.join(infos)}")
            if not infos[name].available:
                raise CommandError(
                    f"compressor {name!r} is not available here: {infos[name].reason}"
                )
            names.append(name)
    return names
