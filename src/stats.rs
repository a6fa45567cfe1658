//! Counters, under the kernel's names.
//!
//! People who know zswap read `/sys/kernel/debug/zswap/*` and `/proc/vmstat`;
//! the same names mean the same things here, plus zram's three size figures.
//! Event counters only grow; gauges (`stored_pages`, `same_filled_pages`,
//! `compr_data_size`) are changed under the area lock together with the index,
//! so that after any call returns they agree with what is stored.
//!
//! Each counter is a relaxed atomic: they are statistics, not synchronisation.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Live counters of one cache.
#[derive(Debug, Default)]
pub struct Stats {
    /// Stores refused because the pool was at its limit (or above the accept
    /// threshold after reaching it).
    pub pool_limit_hit: AtomicU64,
    /// Entries written from the pool to the backing file to make room.
    pub written_back_pages: AtomicU64,
    /// Pages refused because they compressed to more than
    /// `max_compression_ratio` percent of a page.
    pub reject_compress_poor: AtomicU64,
    /// Pages refused because the compressor failed.
    pub reject_compress_fail: AtomicU64,
    /// Pages refused because the pool (or the index) could not allocate.
    pub reject_alloc_fail: AtomicU64,
    /// Pages refused because the pool was full and nothing could be written
    /// back to make room (no backing file, or writeback failed).
    pub reject_reclaim_fail: AtomicU64,
    /// Stores to an offset that already held an entry; the old one is dropped.
    pub duplicate_entry: AtomicU64,
    /// Loads whose data failed to decompress (`CorruptPageError`).
    pub decompress_fail: AtomicU64,
    /// Pages loaded from the pool (vmstat).
    pub zswpin: AtomicU64,
    /// Pages stored into the pool (vmstat).
    pub zswpout: AtomicU64,
    /// Pages written back from the pool (vmstat).
    pub zswpwb: AtomicU64,
    /// Pages read from the backing file (vmstat).
    pub pswpin: AtomicU64,
    /// Pages written to the backing file (vmstat).
    pub pswpout: AtomicU64,
    /// Gauge: entries in the pool, same-filled ones included.
    pub stored_pages: AtomicU64,
    /// Gauge: same-filled entries (they take no pool memory).
    pub same_filled_pages: AtomicU64,
    /// Gauge: compressed bytes held in the pool (exact lengths, before
    /// size-class rounding).
    pub compr_data_size: AtomicU64,
}

/// A copy of every figure at one moment, with names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub pool_total_size: u64,
    pub stored_pages: u64,
    pub same_filled_pages: u64,
    pub pool_limit_hit: u64,
    pub written_back_pages: u64,
    pub reject_compress_poor: u64,
    pub reject_compress_fail: u64,
    pub reject_alloc_fail: u64,
    pub reject_reclaim_fail: u64,
    pub duplicate_entry: u64,
    pub decompress_fail: u64,
    pub zswpin: u64,
    pub zswpout: u64,
    pub zswpwb: u64,
    pub pswpin: u64,
    pub pswpout: u64,
    /// zram: uncompressed bytes of the stored pages.
    pub orig_data_size: u64,
    /// zram: compressed bytes of the stored pages.
    pub compr_data_size: u64,
    /// zram: memory the pool holds, allocator overhead included.
    pub mem_used_total: u64,
}

impl Stats {
    #[inline]
    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    /// Read every counter; `pool_bytes` and `page_size` come from the cache.
    pub fn snapshot(&self, pool_bytes: u64, page_size: u64) -> StatsSnapshot {
        let stored_pages = self.stored_pages.load(Relaxed);
        StatsSnapshot {
            pool_total_size: pool_bytes,
            stored_pages,
            same_filled_pages: self.same_filled_pages.load(Relaxed),
            pool_limit_hit: self.pool_limit_hit.load(Relaxed),
            written_back_pages: self.written_back_pages.load(Relaxed),
            reject_compress_poor: self.reject_compress_poor.load(Relaxed),
            reject_compress_fail: self.reject_compress_fail.load(Relaxed),
            reject_alloc_fail: self.reject_alloc_fail.load(Relaxed),
            reject_reclaim_fail: self.reject_reclaim_fail.load(Relaxed),
            duplicate_entry: self.duplicate_entry.load(Relaxed),
            decompress_fail: self.decompress_fail.load(Relaxed),
            zswpin: self.zswpin.load(Relaxed),
            zswpout: self.zswpout.load(Relaxed),
            zswpwb: self.zswpwb.load(Relaxed),
            pswpin: self.pswpin.load(Relaxed),
            pswpout: self.pswpout.load(Relaxed),
            orig_data_size: stored_pages * page_size,
            compr_data_size: self.compr_data_size.load(Relaxed),
            mem_used_total: pool_bytes,
        }
    }
}

impl StatsSnapshot {
    /// Every figure as `(kernel name, value)`, in SPEC.md's order.
    pub fn named(&self) -> [(&'static str, u64); 19] {
        [
            ("pool_total_size", self.pool_total_size),
            ("stored_pages", self.stored_pages),
            ("same_filled_pages", self.same_filled_pages),
            ("pool_limit_hit", self.pool_limit_hit),
            ("written_back_pages", self.written_back_pages),
            ("reject_compress_poor", self.reject_compress_poor),
            ("reject_compress_fail", self.reject_compress_fail),
            ("reject_alloc_fail", self.reject_alloc_fail),
            ("reject_reclaim_fail", self.reject_reclaim_fail),
            ("duplicate_entry", self.duplicate_entry),
            ("decompress_fail", self.decompress_fail),
            ("zswpin", self.zswpin),
            ("zswpout", self.zswpout),
            ("zswpwb", self.zswpwb),
            ("pswpin", self.pswpin),
            ("pswpout", self.pswpout),
            ("orig_data_size", self.orig_data_size),
            ("compr_data_size", self.compr_data_size),
            ("mem_used_total", self.mem_used_total),
        ]
    }
}
