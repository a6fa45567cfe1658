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
        assert_eq!(z.stats().stored_pages, 1);
        z.check_invariants().unwrap();
    }
}
