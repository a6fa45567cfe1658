//! Counters, under the kernel's names.
//!
//! People who know zswap read `/sys/kernel/debug/zswap/*` and `/proc/vmstat`;
//! the same names mean the same things here, plus zram's three size figures.
//! Event counters only grow; gauges (`stored_pages`, `same_filled_pages`,
//! `stored_incompressible_pages`, `compr_data_size`) are changed under the
//! area lock together with the index, so that after any call returns they
//! agree with what is stored.
//!
//! Each counter is a relaxed atomic per thread shard ([`Stats`]): they are
//! statistics, not synchronisation.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// One counter of [`Stats`]; the discriminant is its place in a shard.
/// Each is the [`StatsSnapshot`] field of the same name, which says what it
/// counts; the last four are gauges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub(crate) enum Counter {
    PoolLimitHit,
    WrittenBackPages,
    RejectCompressPoor,
    RejectCompressFail,
    RejectAllocFail,
    RejectReclaimFail,
    DuplicateEntry,
    DecompressFail,
    Zswpin,
    Zswpout,
    Zswpwb,
    Pswpin,
    Pswpout,
    StoredPages,
    SameFilledPages,
    ComprDataSize,
    /// Last: the one counter in a shard's second block, touched only by
    /// pages kept raw (see [`Shard`]).
    StoredIncompressiblePages,
}

const COUNTERS: usize = Counter::StoredIncompressiblePages as usize + 1;

/// Shards per cache. Threads take shards in turn, so up to this many
/// threads each count on their own cache lines.
const SHARDS: usize = 16;

/// One shard: every counter a store or load of a compressed or same-filled
/// page touches, in one 128-byte block (a pair of lines, which the
/// adjacent-line prefetcher moves together); after them, in a second block,
/// the gauge of pages kept raw, which only those pages touch.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard([AtomicU64; COUNTERS]);

const _: () = assert!(std::mem::size_of::<Shard>() == 256);
const _: () = assert!(Counter::ComprDataSize as usize * 8 < 128);

/// Live counters of one cache, sharded by thread.
///
/// A store or load changes three to six counters. In one shared block, two
/// threads storing at once pulled those lines back and forth between their
/// cores on every call; each thread now adds into its own shard (the
/// kernel counts its vmstat events per CPU for the same reason), and a
/// reading sums the shards.
///
/// A gauge rises in one shard and may fall in another (a page stored by
/// one thread, invalidated by another), so a shard's share can be
/// "negative" (wrapped); the sum is exact once the calls in flight return.
/// A reading taken while they run sums shards at slightly different
/// moments and could come out below zero: it reads 0 then, as the
/// kernel's `percpu_counter_sum_positive` does.
#[derive(Debug, Default)]
pub struct Stats {
    shards: Box<[Shard; SHARDS]>,
}

/// This thread's shard: taken in turn when the thread first counts.
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Relaxed) % SHARDS;
    }
    SHARD.with(|s| *s)
}

/// The figures of a [`StatsSnapshot`], written once: each with its docs,
/// its name (the kernel's, in SPEC.md's order) and how a reading computes it
/// from the counters (`stats`), the pool's size and the page size.
macro_rules! figures {
    (
        |$stats:ident, $pool_bytes:ident, $page_size:ident|
        $(let $var:ident = $init:expr;)*
        { $($(#[$doc:meta])* $field:ident = $value:expr,)* }
    ) => {
        /// A copy of every figure at one moment, with names.
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        pub struct StatsSnapshot {
            $($(#[$doc])* pub $field: u64,)*
        }

        impl Stats {
            /// Read every counter; `pool_bytes` and `page_size` come from the cache.
            pub fn snapshot(&self, $pool_bytes: u64, $page_size: u64) -> StatsSnapshot {
                let $stats = self;
                $(let $var = $init;)*
                StatsSnapshot { $($field: $value,)* }
            }
        }

        impl StatsSnapshot {
            /// Every figure as `(kernel name, value)`, in SPEC.md's order.
            pub fn named(&self) -> [(&'static str, u64); [$(stringify!($field)),*].len()] {
                [$((stringify!($field), self.$field)),*]
            }
        }
    };
}

figures! {
    |stats, pool_bytes, page_size|
    // One reading of the gauge for both figures made from it.
    let stored = stats.get(Counter::StoredPages);
    {
        /// Bytes of the zspages the pool holds, whole pages.
        pool_total_size = pool_bytes,
        /// Gauge: entries in the pool, same-filled ones included.
        stored_pages = stored,
        /// Gauge: same-filled entries, which take no pool memory.
        same_filled_pages = stats.get(Counter::SameFilledPages),
        /// Gauge: entries kept in the pool as they are, uncompressed,
        /// `page_size` bytes each: pages that compressed too poorly, with
        /// `store_incompressible` on (kernel >= 6.18), and pages a failed
        /// swap-out kept readable.
        stored_incompressible_pages = stats.get(Counter::StoredIncompressiblePages),
        /// Stores that found the pool full: at its limit, or, once it reached
        /// the limit, not yet back down to the accept threshold. Each then made
        /// room by writing back, or was refused (`reject_reclaim_fail`).
        pool_limit_hit = stats.get(Counter::PoolLimitHit),
        /// Entries written from the pool to the backing file to make room.
        written_back_pages = stats.get(Counter::WrittenBackPages),
        /// Pages refused because they compressed to more than
        /// `max_compression_ratio` percent of a page.
        reject_compress_poor = stats.get(Counter::RejectCompressPoor),
        /// Pages refused because the compressor failed.
        reject_compress_fail = stats.get(Counter::RejectCompressFail),
        /// Pages refused because the pool (or the index) could not allocate.
        reject_alloc_fail = stats.get(Counter::RejectAllocFail),
        /// Pages refused because the pool was full and nothing could be written
        /// back to make room (no backing file, or writeback failed), plus, as
        /// the kernel's `shrink_memcg_cb` counts them, entries that writeback
        /// tried and could not write (their slot failed): each such entry stays
        /// in the pool and is tried again after the others, counted each time.
        reject_reclaim_fail = stats.get(Counter::RejectReclaimFail),
        /// Stores to an offset that already held an entry; the old one is dropped.
        duplicate_entry = stats.get(Counter::DuplicateEntry),
        /// Loads whose data failed to decompress (`CorruptPageError`).
        decompress_fail = stats.get(Counter::DecompressFail),
        /// Pages loaded from the pool (vmstat).
        zswpin = stats.get(Counter::Zswpin),
        /// Pages stored into the pool (vmstat).
        zswpout = stats.get(Counter::Zswpout),
        /// Pages written back from the pool (vmstat).
        zswpwb = stats.get(Counter::Zswpwb),
        /// Pages read from the backing file (vmstat).
        pswpin = stats.get(Counter::Pswpin),
        /// Pages written to the backing file (vmstat).
        pswpout = stats.get(Counter::Pswpout),
        /// zram: uncompressed bytes of the stored pages.
        orig_data_size = stored * page_size,
        /// zram: compressed bytes of the stored pages (a gauge; exact lengths,
        /// before size-class rounding; a page kept raw counts `page_size`).
        compr_data_size = stats.get(Counter::ComprDataSize),
        /// zram: memory the pool holds, allocator overhead included.
        mem_used_total = pool_bytes,
    }
}

impl Stats {
    #[inline]
    fn mine(&self, counter: Counter) -> &AtomicU64 {
        &self.shards[shard_index()].0[counter as usize]
    }

    #[inline]
    pub(crate) fn inc(&self, counter: Counter) {
        self.add(counter, 1);
    }

    #[inline]
    pub(crate) fn add(&self, counter: Counter, n: u64) {
        self.mine(counter).fetch_add(n, Relaxed);
    }

    /// Lower a gauge (wrapping in this shard; see the type's docs).
    #[inline]
    pub(crate) fn sub(&self, counter: Counter, n: u64) {
        self.mine(counter).fetch_sub(n, Relaxed);
    }

    /// The counter's value: its shards summed, 0 if the sum is negative.
    pub(crate) fn get(&self, counter: Counter) -> u64 {
        let sum = self.shards.iter().fold(0u64, |sum, s| {
            sum.wrapping_add(s.0[counter as usize].load(Relaxed))
        });
        (sum as i64).max(0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_more_threads_than_shards_add_up() {
        let stats = Stats::default();
        let threads = 2 * SHARDS + 3;
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    for _ in 0..1000 {
                        stats.inc(Counter::Zswpout);
                        stats.add(Counter::ComprDataSize, 3);
                    }
                });
            }
        });
        let snap = stats.snapshot(0, 4096);
        assert_eq!(snap.zswpout, threads as u64 * 1000);
        assert_eq!(snap.compr_data_size, threads as u64 * 3000);
        assert_eq!(snap.zswpin, 0);
    }

    #[test]
    fn a_gauge_raised_on_one_thread_and_lowered_on_another_sums_right() {
        let stats = Stats::default();
        let other =
            || std::thread::scope(|s| s.spawn(|| stats.sub(Counter::StoredPages, 2)).join());
        stats.add(Counter::StoredPages, 5);
        other().unwrap();
        // The other thread's shard holds -2 (wrapped); the sum is exact.
        assert_eq!(stats.get(Counter::StoredPages), 3);
        other().unwrap();
        other().unwrap();
        // Lowered past zero, as a reading taken while calls run can see:
        // 0, not 2^64 - 1.
        assert_eq!(stats.get(Counter::StoredPages), 0);
        stats.add(Counter::StoredPages, 1);
        assert_eq!(stats.snapshot(0, 4096).stored_pages, 0);
        stats.add(Counter::StoredPages, 1);
        assert_eq!(stats.snapshot(0, 4096).stored_pages, 1);
        assert_eq!(stats.snapshot(0, 4096).orig_data_size, 4096);
    }
}
