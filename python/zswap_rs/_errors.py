"""The exceptions of zswap_rs.

Each subclasses the builtin a Python user would already catch: a bad
configuration is a ``ValueError``, a failing backing file an ``OSError`` with
its ``errno``. All of them are also ``ZswapError``, so one ``except`` catches
everything the library raises on its own account.
"""

from __future__ import annotations

__all__ = ["BackingStoreError", "ConfigError", "CorruptPageError", "ZswapError"]


class ZswapError(Exception):
    """Base of zswap_rs's own errors; raised as-is for use after ``close()`` or ``swapoff``."""


class ConfigError(ZswapError, ValueError):
    """An unknown or unavailable compressor, a bad level or a bad percent.

    The message lists the compressors that are available and why the rest are not.
    """


class BackingStoreError(ZswapError, OSError):
    """The backing swap file could not be created, is full, or failed (``errno`` is set).

    The page being stored or written back stays where it was, readable.
    """


class CorruptPageError(ZswapError):
    """Stored data failed its check on load; no bytes were returned."""
