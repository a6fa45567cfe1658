"""`zswap-rs mkswap PATH --pages N`: write a zswap-rs swap file's header, as mkswap(8) does.

The work is `zswap_rs.mkswap`'s: a header page before slot 0 (magic, format,
page size, slots, a random area id) on a new path, an empty or all-zero
file, or a zswap-rs swap file; anything else (a user's file, a filesystem) is
refused untouched unless `--force` is given, so that a mistyped path costs
no one their data. A refusal is the user's to fix (exit 2); an I/O error is
a failure (exit 1).
"""

from __future__ import annotations

import argparse
import errno

from .._command_error import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, CommandError
from . import library, report
from .library import PAGE_SIZE
from .options import Command, positive_int

__all__ = ["COMMAND"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", metavar="PATH", help="the swap file to write (made if missing)")
    p.add_argument(
        "--pages",
        type=positive_int,
        required=True,
        metavar="N",
        help="the swap area's size, in pages",
    )
    p.add_argument(
        "--page-size",
        type=positive_int,
        default=PAGE_SIZE,
        metavar="BYTES",
        help=f"the page size the header is for (default {PAGE_SIZE})",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="write over a file that is not a swap file (its contents are lost)",
    )


def run(args: argparse.Namespace) -> int:
    zswap_rs = library.zswap()
    try:
        zswap_rs.mkswap(args.path, args.pages, page_size=args.page_size, force=args.force)
    except OSError as e:
        code = EXIT_FAILURE if e.errno == errno.EIO else EXIT_USAGE
        # The message names the path already, and what to do.
        raise CommandError(f"mkswap: {e.strerror or e}", code) from None
    except ValueError as e:
        raise CommandError(f"mkswap: {e}") from None
    size = report.human_bytes(args.pages * args.page_size)
    print(f"{args.path}: swap area of {args.pages} pages of {args.page_size} bytes ({size})")
    return EXIT_OK


COMMAND = Command(
    name="mkswap",
    help="write a zswap-rs swap file's header",
    description="Write the header of a zswap-rs swap area of N pages to PATH, as mkswap(8) "
    "does for the kernel: a new path, an empty file or a zswap-rs swap file. Any other file "
    "(someone's data, a filesystem) is refused and left untouched unless --force is given.",
    add_arguments=add_arguments,
    run=run,
)
