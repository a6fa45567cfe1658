"""Running the ``zswap-rs`` command as a user would, for the CLI test modules."""

from __future__ import annotations

import subprocess
import sys


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``zswap-rs ARGS`` through the installed package, no terminal, no stdin."""
    return subprocess.run(
        [sys.executable, "-m", "zswap_rs.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
