//! Calls caught in the middle by `swapoff` and `swapon`, and by panics:
//! each is held inside its unlocked stretch by a [`Gate`] compressor (no
//! sleeps), the area's lifecycle is driven meanwhile, and the cache must
//! come out as SPEC.md says: nothing of an old area lands in the next area
//! of its number, nothing is lost, nothing stays locked or claimed.

use std::path::PathBuf;
use std::sync::Arc;

use super::*;
use crate::testing::{Gate, Step};

/// A cache whose lz4 entries go through `gate` (the first lz4 instance it
/// sees, since it starts on lzo).
fn gated(gate: &Arc<Gate>) -> Zswap {
    let z = Zswap::new(Config {
        compressor: "lzo".into(),
        ..Config::default()
    })
    .unwrap();
    z.set_compressor_instance(gate.clone());
    z
}

fn page(seed: u8) -> Vec<u8> {
    (0..4096u32)
        .map(|i| b"swapped page "[(i % 13) as usize] ^ (seed & (i / 512) as u8))
        .collect()
}

/// A fresh directory on a real filesystem, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let d =
            std::env::temp_dir().join(format!("zswap-rs-lifecycle-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn not_found(t: u32, offset: u64) -> ErrorKind {
    ErrorKind::NotFound {
        swap_type: t,
        offset,
    }
}

#[test]
fn a_store_compressing_across_swapoff_never_lands_in_the_next_area() {
    // The case: `store(t, 7, page)` still compressing when `t` is
    // swapped off and `swapon` gives the number out again. Alone, and as
    // the second page of a batch.
    for batch in [false, true] {
        let gate = Gate::new();
        let z = gated(&gate);
        let t = z.swapon(16).unwrap();
        gate.hold(Step::Compress);
        std::thread::scope(|s| {
            let store = s.spawn(|| {
                if batch {
                    let pages = [page(1), page(2)].concat();
                    let mut outcomes = Vec::new();
                    z.store_many(t, &[6, 7], &pages, &mut outcomes)
                        .map(|()| outcomes[1])
                } else {
                    z.store(t, 7, &page(2))
                }
            });
            gate.wait_held();
            z.swapoff(t).unwrap();
            let t2 = z.swapon(16).unwrap();
            assert_eq!(t2, t, "swapon reuses the lowest free number");
            gate.release();
            let err = store.join().unwrap().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Closed, "{err}");
            assert!(err.to_string().contains("swapped off"), "{err}");
            for o in [6, 7] {
                assert_eq!(z.load(t2, o).unwrap_err().kind(), not_found(t2, o));
            }
        });
        assert_eq!(z.stats().stored_pages, 0);
        assert_eq!(z.stats().pool_total_size, 0);
        z.check_invariants().unwrap();
    }
}

#[test]
fn a_writeback_in_flight_across_swapoff_leaves_the_next_area_alone() {
    // The second case: a writeback holds slot 3 of `t` (here inside
    // its decompression, with no lock held) when `t` is swapped off; a
    // `swapon` meanwhile must not get `t`, or the old swapoff, once the
    // writeback lets it finish, empties the new area and drops its file.
    for fresh_file in [false, true] {
        let dir = TempDir::new(if fresh_file { "wb-file" } else { "wb-mem" });
        let gate = Gate::new();
        let z = gated(&gate);
        let options = FileOptions::default();
        let t = z.swapon_file(&dir.file("old"), 16, &options).unwrap();
        assert_eq!(z.store(t, 3, &page(3)).unwrap(), StoreOutcome::Stored);
        gate.hold(Step::Decompress);
        std::thread::scope(|s| {
            let writeback = s.spawn(|| z.writeback(1));
            gate.wait_held();
            let swapoff = s.spawn(|| z.swapoff(t));
            // The swapoff has begun (it turns the area off first, under
            // the lock), and waits for the writeback's slot.
            while z.area_pages(t).is_some() {
                std::thread::yield_now();
            }
            let t2 = if fresh_file {
                z.swapon_file(&dir.file("new"), 16, &options)
            } else {
                z.swapon(16)
            }
            .unwrap();
            let stored = z.store(t2, 3, &page(30));
            // Let go before checking, so that a failure cannot hang.
            gate.release();
            assert_ne!(t2, t, "a number still being swapped off was given out");
            assert_eq!(stored.unwrap(), StoreOutcome::Stored);
            writeback.join().unwrap().unwrap();
            swapoff.join().unwrap().unwrap();
            assert_eq!(z.load(t2, 3).unwrap(), page(30));
            assert_eq!(z.backing_info(t2).unwrap().is_some(), fresh_file);
        });
        // The old number is free again once its swapoff is done.
        assert_eq!(z.swapon(16).unwrap(), t);
        z.check_invariants().unwrap();
    }
}

/// An area of `slots` slots backed by `store` (in memory, in tests).
pub(super) fn swapon_store(z: &Zswap, store: Arc<crate::testing::MemStore>, slots: u64) -> u32 {
    let t = z.swapon(slots).unwrap();
    let mut inner = z.areas[t as usize].inner.lock();
    inner.backing = Some(Backing {
        store,
        slots: SlotTable::new(slots),
        freed: Vec::new(),
    });
    t
}

#[test]
fn a_panic_in_the_middle_leaves_no_claim_and_no_lock_behind() {
    let dir = TempDir::new("panic");
    let gate = Gate::new();
    let z = gated(&gate);
    let t = z
        .swapon_file(&dir.file("swap"), 16, &FileOptions::default())
        .unwrap();
    z.store(t, 3, &page(3)).unwrap();
    z.store(t, 4, &page(4)).unwrap();
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    // In a writeback, with slot 3 claimed and no lock held.
    gate.panic_at(Step::Decompress);
    let wb = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| z.writeback(1)));
    // In a load, decompressing under the object's size-class lock.
    gate.panic_at(Step::Decompress);
    let load = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| z.load(t, 4)));
    // In a store, compressing.
    gate.panic_at(Step::Compress);
    let store = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| z.store(t, 5, &page(5))));
    std::panic::set_hook(quiet);
    assert!(wb.is_err() && load.is_err() && store.is_err());
    // Nothing waits forever: the slot, the class lock and the area are free.
    assert!(!z.areas[t as usize].inner.lock().has_claims());
    assert_eq!(z.load(t, 3).unwrap(), page(3));
    assert_eq!(z.load(t, 4).unwrap(), page(4));
    z.compact().unwrap();
    assert_eq!(z.writeback(2).unwrap(), 2);
    assert_eq!(z.load(t, 3).unwrap(), page(3));
    z.swapoff(t).unwrap();
}

#[test]
fn one_slot_that_cannot_be_written_does_not_stop_writeback() {
    // The case: the oldest entry's slot cannot be written (past a
    // file size limit); every other entry must still go, the failing one
    // stay readable in the pool, and errors name the offset being stored.
    let z = Zswap::new(Config {
        max_pool_bytes: Some(64 << 10),
        ..Config::default()
    })
    .unwrap();
    let store = crate::testing::MemStore::new(2000);
    let t = swapon_store(&z, store.clone(), 2000);
    store.fail_at(1000, true);
    z.store(t, 1000, &page(100)).unwrap();
    for o in 0..500u64 {
        let got = z.store(t, o, &page(o as u8));
        assert_eq!(got.unwrap(), StoreOutcome::Stored, "offset {o}");
    }
    let s = z.stats();
    assert!(s.written_back_pages > 100, "{s:?}");
    assert!(s.reject_reclaim_fail >= 1, "the failure is counted: {s:?}");
    let mut out = vec![0u8; 4096];
    assert_eq!(z.load_into(t, 1000, &mut out).unwrap(), LoadSource::Pool);
    assert_eq!(out, page(100));
    // On demand: the pages actually written, the bad one skipped.
    // (The pool holds a few entries only, the bad one among them.)
    let before = z.stats().written_back_pages;
    assert_eq!(z.writeback(3).unwrap(), 3);
    assert_eq!(z.stats().written_back_pages, before + 3);
    // A store of its own to the bad slot fails naming that slot, and keeps
    // the page it replaces.
    z.set_enabled(false);
    let err = z.store(t, 1000, &page(101)).unwrap_err();
    assert!(err.to_string().contains("slot 1000"), "{err}");
    assert_eq!(z.load(t, 1000).unwrap(), page(100));
    // With only the bad entry left, writeback fails with its error.
    z.set_enabled(true);
    while z.writeback(64).unwrap_or(0) > 0 {}
    let err = z.writeback(1).unwrap_err();
    assert!(err.to_string().contains("slot 1000"), "{err}");
    for o in 0..500u64 {
        assert_eq!(z.load(t, o).unwrap(), page(o as u8), "offset {o}");
    }
    z.check_invariants().unwrap();
}

#[test]
fn shrinker_ages_out_of_range_are_config_errors() {
    for secs in [1e300, -1.0, 0.0, 1e-300, f64::NAN, f64::INFINITY] {
        let err = shrinker_age_from_secs(secs).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{secs}: {err}");
    }
    assert_eq!(
        shrinker_age_from_secs(0.5).unwrap(),
        std::time::Duration::from_millis(500)
    );
}

#[test]
fn a_swap_out_that_fails_over_a_swapped_page_keeps_that_page() {
    // The case: P0 swapped to slot 10, then a swap-out of P1 to
    // the same slot fails part-way (the store leaves garbage there, as a
    // write past RLIMIT_FSIZE does): the store fails, and P0 stays
    // readable. Incompressible and compressible pages alike.
    let noise = |seed| crate::testing::noise(seed, 4096);
    for (p0, raw) in [(noise(1), 1), (page(7), 0)] {
        let z = Zswap::new(Config::default()).unwrap();
        let store = crate::testing::MemStore::new(64);
        let t = swapon_store(&z, store.clone(), 64);
        z.set_enabled(false);
        assert_eq!(z.store(t, 10, &p0).unwrap(), StoreOutcome::Swapped);
        store.fail_at(10, true);
        let err = z.store(t, 10, &noise(2)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EFBIG), "{err}");
        assert!(err.to_string().contains("slot 10"), "{err}");
        assert_eq!(z.load(t, 10).unwrap(), p0);
        // It is an entry of the pool now (as it is, if it does not
        // compress), and the slot is free.
        let s = z.stats();
        assert_eq!((s.stored_pages, s.stored_incompressible_pages), (1, raw));
        assert_eq!(z.backing_info(t).unwrap().unwrap().used_slots, 0);
        store.fail_at(10, false);
        assert_eq!(z.store(t, 10, &noise(3)).unwrap(), StoreOutcome::Swapped);
        assert_eq!(z.load(t, 10).unwrap(), noise(3));
        let s = z.stats();
        assert_eq!((s.stored_pages, s.stored_incompressible_pages), (0, 0));
        z.check_invariants().unwrap();
    }
}

#[test]
fn pool_pages_over_swapped_ones_give_the_blocks_back() {
    // 1,000 swapped pages overwritten by pool pages, then invalidated:
    // nothing may stay allocated in the file.
    use std::os::unix::fs::MetadataExt;
    let dir = TempDir::new("blocks");
    let z = Zswap::new(Config::default()).unwrap();
    let path = dir.file("swap");
    let t = z.swapon_file(&path, 1000, &FileOptions::default()).unwrap();
    z.set_enabled(false);
    for o in 0..1000u64 {
        let p = crate::testing::noise(o, 4096);
        assert_eq!(z.store(t, o, &p).unwrap(), StoreOutcome::Swapped);
    }
    let full = std::fs::metadata(&path).unwrap().blocks() * 512;
    assert!(full >= 1000 * 4096, "{full}");
    z.set_enabled(true);
    for o in 0..1000u64 {
        assert_eq!(z.store(t, o, &page(o as u8)).unwrap(), StoreOutcome::Stored);
    }
    for o in 0..1000u64 {
        assert!(z.invalidate(t, o).unwrap());
    }
    assert_eq!(z.backing_info(t).unwrap().unwrap().used_slots, 0);
    // At most one batch of freed slots waits to be given back.
    let left = std::fs::metadata(&path).unwrap().blocks() * 512;
    let batch = (area::DISCARD_BATCH * 4096) as u64;
    assert!(left <= batch + 64 * 1024, "{left} bytes still allocated");
}

#[test]
fn invalidate_cached_drops_pool_copies_and_keeps_the_files() {
    let dir = TempDir::new("cached");
    let z = Zswap::new(Config::default()).unwrap();
    let t = z
        .swapon_file(&dir.file("swap"), 8, &FileOptions::default())
        .unwrap();
    // Offset 0 in the file (written back), 1 in the pool, 2 same-filled.
    assert_eq!(z.store(t, 0, &page(1)).unwrap(), StoreOutcome::Stored);
    assert_eq!(z.writeback(1).unwrap(), 1);
    assert_eq!(z.store(t, 1, &page(2)).unwrap(), StoreOutcome::Stored);
    assert_eq!(
        z.store(t, 2, &[7u8; 4096]).unwrap(),
        StoreOutcome::SameFilled
    );

    assert!(!z.invalidate_cached(t, 0).unwrap());
    assert_eq!(z.load(t, 0).unwrap(), page(1));
    assert_eq!(z.backing_info(t).unwrap().unwrap().used_slots, 1);
    for o in [1, 2] {
        assert!(z.invalidate_cached(t, o).unwrap(), "offset {o}");
        assert_eq!(z.load(t, o).unwrap_err().kind(), not_found(t, o));
        assert!(!z.invalidate_cached(t, o).unwrap(), "offset {o}");
    }
    let s = z.stats();
    assert_eq!(
        (s.stored_pages, s.same_filled_pages, s.compr_data_size),
        (0, 0, 0)
    );
    // Nothing stored at all, and offsets out of the area, as `invalidate`.
    assert!(!z.invalidate_cached(t, 5).unwrap());
    assert!(z.invalidate_cached(t, 8).is_err());
    assert!(z.invalidate(t, 0).unwrap());
    z.check_invariants().unwrap();
}

/// Threads of this process named `zswap-shrinker`.
fn shrinker_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim() == "zswap-shrinker")
        .count()
}

#[test]
fn concurrent_start_shrinker_calls_leave_one_thread_and_stop_stops_it() {
    let z = Arc::new(Zswap::new(Config::default()).unwrap());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..25 {
                    z.start_shrinker(std::time::Duration::from_secs(60))
                        .unwrap();
                }
            });
        }
    });
    // A new thread takes its name once it runs: give them a moment.
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(shrinker_threads(), 1);
    z.stop_shrinker();
    assert_eq!(shrinker_threads(), 0, "a shrinker thread was left running");
}

/// lz4 as a compressor that takes pages four at a time, as IAA does, so
/// that `store_many` goes through its chunked path.
#[derive(Debug)]
struct Batching(Arc<dyn Compressor>);

impl Compressor for Batching {
    fn id(&self) -> CompressorId {
        self.0.id()
    }
    fn compress(&self, src: &[u8], dst: &mut [u8]) -> std::result::Result<usize, CompressError> {
        self.0.compress(src, dst)
    }
    fn decompress(
        &self,
        src: &[u8],
        dst: &mut [u8],
    ) -> std::result::Result<(), crate::compress::DecompressError> {
        self.0.decompress(src, dst)
    }
    fn batch_size(&self) -> usize {
        4
    }
}

#[test]
fn a_batch_store_stopped_by_a_fault_reports_the_finished_prefix() {
    let z = Zswap::new(Config::default()).unwrap();
    let lz4 = compress::create("lz4", &compress::Options::default()).unwrap();
    z.set_compressor_instance(Arc::new(Batching(lz4)));
    let store = crate::testing::MemStore::new(16);
    let t = swapon_store(&z, store.clone(), 16);
    let text = |i: u8| -> Vec<u8> { format!("page {i} ").repeat(600)[..4096].into() };
    let old = text(99);
    z.store(t, 5, &old).unwrap();
    // Noise does not compress: the pool refuses it and it goes to the
    // store, whose slot 5 fails.
    store.fail_at(5, true);
    let noise = crate::testing::noise(7, 4096);
    let pages: Vec<Vec<u8>> = vec![
        text(0),
        vec![0; 4096],
        text(2),
        noise.clone(),
        text(4),
        noise.clone(),
        text(6),
        vec![0; 4096],
    ];
    let offsets: Vec<u64> = (0..8).collect();
    let mut outcomes = Vec::new();
    let e = z
        .store_many(t, &offsets, &pages.concat(), &mut outcomes)
        .unwrap_err();
    assert!(e.to_string().contains("stopped at offsets[5] = 5"), "{e}");
    assert_eq!(
        outcomes,
        [
            StoreOutcome::Stored,
            StoreOutcome::SameFilled,
            StoreOutcome::Stored,
            StoreOutcome::Swapped,
            StoreOutcome::Stored,
        ]
    );
    for (o, page) in pages.iter().enumerate().take(5) {
        assert_eq!(&z.load(t, o as u64).unwrap(), page, "offset {o}");
    }
    assert_eq!(
        z.load(t, 5).unwrap(),
        old,
        "the failed page's offset keeps its page"
    );
    z.check_invariants().unwrap();
}
