"""Zswap.store / Zswap.load from Python, per page, next to python-lz4 on the same pages.

SPEC.md's bar: a single ``store`` from Python is no slower than one python-lz4
``lz4.block.compress`` call on the same page. Both loops run in this process,
interleaved round by round, on real pages (a raw dump written by
``zswap-rs profile --save-pages FILE``); the table gives the median of the rounds.

    zswap-rs profile --save-pages target/pages.bin
    python benches/bench_python.py [--pages target/pages.bin] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import lz4.block

import zswap_rs

PAGE = 4096


def read_pages(path: Path, limit: int) -> list[bytes]:
    data = path.read_bytes()
    if not data or len(data) % PAGE:
        sys.exit(f"{path}: not a whole number of {PAGE}-byte pages")
    return [data[i : i + PAGE] for i in range(0, min(len(data), limit * PAGE), PAGE)]


def per_page_ns(fn, items) -> float:  # noqa: ANN001 - a tiny timing helper
    start = time.perf_counter_ns()
    for item in items:
        fn(item)
    return (time.perf_counter_ns() - start) / len(items)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=Path, default=Path("target/pages.bin"))
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--limit", type=int, default=8192, help="pages to use at most")
    args = ap.parse_args()
    if not args.pages.exists():
        sys.exit(
            f"{args.pages} is missing: make it with zswap-rs profile --save-pages {args.pages}"
        )
    pages = read_pages(args.pages, args.limit)

    # Only pages that go into the pool compare like for like with lz4 alone.
    with zswap_rs.Zswap(max_pool_bytes=1 << 30) as probe:
        t = probe.swapon(None, pages=len(pages))
        kept = [
            p for i, p in enumerate(pages) if probe.store(t, i, p) is zswap_rs.StoreOutcome.STORED
        ]
    n = len(kept)
    compressed = [lz4.block.compress(p, store_size=False) for p in kept]

    z = zswap_rs.Zswap(max_pool_bytes=1 << 30)
    t = z.swapon(None, pages=n)
    offsets = list(range(n))
    store = z.store
    load = z.load
    rows: dict[str, list[float]] = {
        k: [] for k in ("store", "lz4.compress", "load", "lz4.decompress")
    }
    for _ in range(args.rounds):
        rows["lz4.compress"].append(
            per_page_ns(lambda p: lz4.block.compress(p, store_size=False), kept)
        )
        rows["store"].append(per_page_ns(lambda i: store(t, i, kept[i]), offsets))
        rows["lz4.decompress"].append(
            per_page_ns(lambda c: lz4.block.decompress(c, uncompressed_size=PAGE), compressed)
        )
        rows["load"].append(per_page_ns(lambda i: load(t, i), offsets))
    for i in offsets:
        assert z.load(t, i) == kept[i]
    z.close()

    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"{n} real pages that the pool takes, {args.rounds} rounds, median ns/page")
    print(f"{'call':<18}{'ns/page':>10}   {'anchor':<18}{'ns/page':>10}   {'ratio':>6}  bar")
    for ours, anchor in (("store", "lz4.compress"), ("load", "lz4.decompress")):
        ratio = med[ours] / med[anchor]
        bar = "<= 1.00 holds" if ratio <= 1.0 else "<= 1.00 MISSED"
        if ours == "load":
            bar = "(no bar)"
        figures = f"{med[ours]:>10.0f}   {anchor:<18}{med[anchor]:>10.0f}   {ratio:>6.2f}"
        print(f"Zswap.{ours:<12}{figures}  {bar}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
