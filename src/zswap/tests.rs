//! Unit tests of the cache: the paths through `store`, `load` and the
//! batches, the policies, and the races that need the cache's insides.

use super::*;

fn text_page(seed: u32) -> Vec<u8> {
    let words = ["alpha ", "beta ", "gamma ", "delta ", "swap ", "page "];
    let mut p = Vec::with_capacity(4096);
    let mut i = seed;
    while p.len() < 4096 {
        p.extend_from_slice(words[(i % 6) as usize].as_bytes());
        i = i.wrapping_mul(1_103_515_245).wrapping_add(12345) >> 3;
    }
    p.truncate(4096);
    p
}

fn zswap(max_pool_bytes: Option<u64>) -> Zswap {
    Zswap::new(Config {
        max_pool_bytes,
        ..Config::default()
    })
    .unwrap()
}

#[test]
fn same_filled_detection() {
    let mut p = vec![0u8; 4096];
    assert_eq!(same_filled_word(&p), Some(0));
    for c in p.chunks_exact_mut(8) {
        c.copy_from_slice(&0xdead_beef_0123_4567u64.to_ne_bytes());
    }
    assert_eq!(same_filled_word(&p), Some(0xdead_beef_0123_4567));
    p[2049] ^= 1;
    assert_eq!(same_filled_word(&p), None);
    // A difference anywhere, in any lane of any block, is found.
    for len in [4096, 8 * 65, 16] {
        let word = 0x0101_0101_0101_0101u64 * 0x5a;
        let mut p: Vec<u8> = (0..len / 8).flat_map(|_| word.to_ne_bytes()).collect();
        assert_eq!(same_filled_word(&p), Some(word), "len {len}");
        for i in 0..len {
            p[i] ^= 0x80;
            assert_eq!(same_filled_word(&p), None, "len {len}, byte {i}");
            p[i] ^= 0x80;
        }
    }
}

#[test]
fn batches_on_an_area_big_enough_to_walk_ahead() {
    // More entries than WARM_MIN_ENTRIES, so store_many and load_many
    // walk the tree ahead of their pages; every page must still come
    // back as stored, in any order, repeats and same-filled pages
    // included. Most pages are same-filled, which keeps the test quick:
    // they are tree entries all the same.
    let z = zswap(None);
    let count = WARM_MIN_ENTRIES as u64 + 3000;
    let t = z.swapon(count).unwrap();
    let page = |o: u64| {
        if o % 8 != 0 {
            vec![(o % 251) as u8; 4096]
        } else {
            let mut p = text_page(o as u32);
            p[..8].copy_from_slice(&o.to_le_bytes());
            p
        }
    };
    for o in 0..WARM_MIN_ENTRIES as u64 {
        z.store(t, o, &page(o)).unwrap();
    }
    // The rest through store_many, from the top down, rewriting the
    // last stretch stored one by one on the way.
    let rest: Vec<u64> = (WARM_MIN_ENTRIES as u64 - 100..count).rev().collect();
    let pages: Vec<u8> = rest.iter().flat_map(|&o| page(o)).collect();
    let mut outcomes = Vec::new();
    z.store_many(t, &rest, &pages, &mut outcomes).unwrap();
    assert_eq!(outcomes.len(), rest.len());
    assert_eq!(z.stats().duplicate_entry, 100);
    assert!(z.areas[t as usize].inner.lock().index.len() >= WARM_MIN_ENTRIES);
    let offsets: Vec<u64> = crate::testing::xorshift(0x2545_f491_4f6c_dd1d)
        .take(1000)
        .map(|x| x % count)
        .chain([5, 5, 5])
        .collect();
    let mut out = vec![0u8; offsets.len() * 4096];
    z.load_many(t, &offsets, &mut out).unwrap();
    for (&o, got) in offsets.iter().zip(out.chunks_exact(4096)) {
        assert_eq!(got, page(o), "offset {o}");
    }
    // A hole stops the batch with the offset's own error.
    z.invalidate(t, 5).unwrap();
    let err = z.load_many(t, &offsets, &mut out).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::NotFound { offset: 5, .. }),
        "{err}"
    );
}

#[test]
fn batches_read_ahead_beside_stores_invalidations_and_compaction() {
    // An area big enough for the read-ahead (tree, LRU neighbours and
    // pool objects, under try-locks), loaded in batches on one thread
    // while others rewrite pages in batches, invalidate and restore a
    // stretch the loader leaves alone, and compact the pool (which
    // moves objects and frees zspages). Every page loaded must be a
    // whole version of that page. Most pages are same-filled, to keep
    // debug builds quick.
    let z = zswap(None);
    let count = WARM_MIN_ENTRIES as u64 + 1024;
    let churned = count - 512..count;
    let t = z.swapon(count).unwrap();
    let page = |o: u64, v: u64| {
        if o % 8 != 0 {
            ((o << 16) | v).to_le_bytes().repeat(512)
        } else {
            let mut p = text_page(o as u32);
            p[..8].copy_from_slice(&o.to_le_bytes());
            p[8..16].copy_from_slice(&v.to_le_bytes());
            p
        }
    };
    let version_of = |o: u64, got: &[u8]| {
        let word = |r: std::ops::Range<usize>| u64::from_le_bytes(got[r].try_into().unwrap());
        if o % 8 != 0 {
            word(0..8) & 0xffff
        } else {
            word(8..16)
        }
    };
    let all: Vec<u64> = (0..count).collect();
    let mut outcomes = Vec::new();
    for chunk in all.chunks(4096) {
        let pages: Vec<u8> = chunk.iter().flat_map(|&o| page(o, 0)).collect();
        z.store_many(t, chunk, &pages, &mut outcomes).unwrap();
    }
    let offsets = |seed: u64, n: usize| -> Vec<u64> {
        crate::testing::xorshift(seed)
            .map(|x| x % churned.start)
            .take(n)
            .collect()
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut out = vec![0u8; 64 * 4096];
            for round in 0..40 {
                let batch = offsets(0x1000 + round, 64);
                z.load_many(t, &batch, &mut out).unwrap();
                for (&o, got) in batch.iter().zip(out.chunks_exact(4096)) {
                    assert_eq!(got, page(o, version_of(o, got)), "offset {o}");
                }
            }
        });
        s.spawn(|| {
            let mut outcomes = Vec::new();
            for v in 1..=20 {
                let batch = offsets(0x2000 + v, 64);
                let pages: Vec<u8> = batch.iter().flat_map(|&o| page(o, v)).collect();
                z.store_many(t, &batch, &pages, &mut outcomes).unwrap();
            }
        });
        s.spawn(|| {
            for round in 0..5u64 {
                for o in churned.clone().step_by(3) {
                    z.invalidate(t, o).unwrap();
                }
                z.compact().unwrap();
                for o in churned.clone().step_by(3) {
                    z.store(t, o, &page(o, round)).unwrap();
                }
            }
        });
    });
    z.check_invariants().unwrap();
    let mut out = vec![0u8; all.len() * 4096];
    z.load_many(t, &all, &mut out).unwrap();
    for (&o, got) in all.iter().zip(out.chunks_exact(4096)) {
        assert_eq!(got, page(o, version_of(o, got)), "offset {o}");
    }
    assert_eq!(z.stats().stored_pages, count);
}

#[test]
fn store_load_invalidate() {
    let z = zswap(None);
    let t = z.swapon(100).unwrap();
    let p = text_page(1);
    assert_eq!(z.store(t, 7, &p).unwrap(), StoreOutcome::Stored);
    assert_eq!(z.load(t, 7).unwrap(), p);
    assert_eq!(
        z.store(t, 8, &[0u8; 4096]).unwrap(),
        StoreOutcome::SameFilled
    );
    assert_eq!(z.load(t, 8).unwrap(), vec![0u8; 4096]);
    let s = z.stats();
    assert_eq!(
        (s.stored_pages, s.same_filled_pages, s.zswpout, s.zswpin),
        (2, 1, 2, 2)
    );
    assert!(s.compr_data_size > 0 && s.compr_data_size < 4096);
    assert!(z.invalidate(t, 7).unwrap());
    assert!(!z.invalidate(t, 7).unwrap());
    assert_eq!(
        z.load(t, 7).unwrap_err().kind(),
        ErrorKind::NotFound {
            swap_type: t,
            offset: 7
        }
    );
    z.swapoff(t).unwrap();
    assert_eq!(z.stats().stored_pages, 0);
    assert_eq!(z.stats().pool_total_size, 0);
    assert_eq!(z.load(t, 8).unwrap_err().kind(), ErrorKind::Closed);
}

#[test]
fn batches_stop_between_chunks_when_asked() {
    let z = zswap(None);
    let t = z.swapon(1000).unwrap();
    let offsets: Vec<u64> = (0..100).collect();
    let pages: Vec<u8> = (0..100).flat_map(text_page).collect();
    // Stop at the third question: two chunks done, the rest untouched.
    let mut asked = 0;
    let mut stop = || {
        asked += 1;
        asked > 2
    };
    let mut outcomes = Vec::new();
    z.store_many_until(t, &offsets, &pages, &mut outcomes, &mut stop)
        .unwrap();
    let done = outcomes.len();
    assert_eq!(done, 2 * LOCKSTEP);
    assert_eq!(z.stats().stored_pages, done as u64);
    assert!(z.load(t, done as u64).is_err());
    let mut out = vec![0u8; done * 4096];
    let mut asked = 0;
    let mut stop = || {
        asked += 1;
        asked > 1
    };
    let loaded = z
        .load_many_until(t, &offsets[..done], &mut out, &mut stop)
        .unwrap();
    assert_eq!(loaded, LOCKSTEP);
    assert_eq!(&out[..loaded * 4096], &pages[..loaded * 4096]);
}

#[test]
fn bad_arguments() {
    let z = zswap(None);
    let t = z.swapon(10).unwrap();
    let p = text_page(2);
    assert_eq!(
        z.store(t, 10, &p).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        z.store(t, 0, &p[..100]).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        z.store(5, 0, &p).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        z.store(32, 0, &p).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(z.swapon(0).unwrap_err().kind(), ErrorKind::InvalidArgument);
    z.close().unwrap();
    assert_eq!(z.store(t, 0, &p).unwrap_err().kind(), ErrorKind::Closed);
}

#[test]
fn limit_hysteresis_and_duplicates() {
    // Room for a few dozen zspages only (a zspage is up to 8 pages).
    let z = zswap(Some(1 << 20));
    let t = z.swapon(10_000).unwrap();
    let mut stored = 0;
    let mut rejected = 0;
    for off in 0..2000u64 {
        match z.store(t, off, &text_page(off as u32)).unwrap() {
            StoreOutcome::Stored => stored += 1,
            StoreOutcome::Rejected(Reject::ReclaimFail) => rejected += 1,
            other => panic!("{other:?}"),
        }
    }
    let s = z.stats();
    assert!(stored > 10 && rejected > 0, "{stored} {rejected}");
    assert_eq!(s.pool_limit_hit, rejected);
    assert_eq!(s.reject_reclaim_fail, rejected);
    assert_eq!(s.stored_pages, stored);
    // Still above the accept threshold: a small page is refused too.
    assert!(matches!(
        z.store(t, 5000, &text_page(9)).unwrap(),
        StoreOutcome::Rejected(_)
    ));
    // Free enough to drop below the threshold and stores are taken again.
    for off in 0..2000u64 {
        z.invalidate(t, off).unwrap();
    }
    assert_eq!(
        z.store(t, 5000, &text_page(9)).unwrap(),
        StoreOutcome::Stored
    );
    let before = z.stats().duplicate_entry;
    assert_eq!(
        z.store(t, 5000, &text_page(10)).unwrap(),
        StoreOutcome::Stored
    );
    assert_eq!(z.load(t, 5000).unwrap(), text_page(10));
    assert_eq!(z.stats().duplicate_entry, before + 1);
    assert_eq!(z.stats().stored_pages, 1);
}

#[test]
fn below_the_limit_but_above_the_accept_threshold_stays_full() {
    // With no file to write back to, a pool that reached its limit
    // takes no page until it is down to the accept threshold, however
    // far below the limit it is (the kernel's zswap_pool_reached_full).
    let limit = 1u64 << 20;
    let z = Zswap::new(Config {
        max_pool_bytes: Some(limit),
        accept_threshold_percent: 50,
        ..Config::default()
    })
    .unwrap();
    let t = z.swapon(10_000).unwrap();
    let mut off = 0u64;
    while z.store(t, off, &text_page(off as u32)).unwrap() == StoreOutcome::Stored {
        off += 1;
    }
    let filled = off;
    // Drop the oldest entries, compacting, while the pool is above
    // `bytes`.
    let total = |z: &Zswap| z.stats().pool_total_size;
    let mut next = 0u64;
    let mut shrink_to = |bytes: u64| {
        while total(&z) > bytes {
            assert!(next < filled, "the pool does not shrink");
            z.invalidate(t, next).unwrap();
            next += 1;
            z.compact().unwrap();
        }
    };
    // Under the limit, but still above half of it.
    shrink_to(limit - 1);
    assert!(total(&z) > limit / 2, "{} of {limit}", total(&z));
    let hits = z.stats().pool_limit_hit;
    for probe in [9_000, 9_001] {
        assert_eq!(
            z.store(t, probe, &text_page(7)).unwrap(),
            StoreOutcome::Rejected(Reject::ReclaimFail),
            "taken at {} of {limit} bytes",
            total(&z)
        );
    }
    assert_eq!(z.stats().pool_limit_hit, hits + 2);
    // Down to the threshold (as the cache rounds it): taken again.
    shrink_to(limit / 100 * 50);
    assert_eq!(
        z.store(t, 9_000, &text_page(7)).unwrap(),
        StoreOutcome::Stored
    );
    assert_eq!(z.load(t, 9_000).unwrap(), text_page(7));
}

#[test]
fn poor_compression_drops_the_stale_page() {
    let z = zswap(None);
    let t = z.swapon(4).unwrap();
    z.store(t, 1, &text_page(3)).unwrap();
    let noise: Vec<u8> = crate::testing::xorshift(0x1234_5678_9abc_def0)
        .take(4096)
        .map(|x| (x >> 24) as u8)
        .collect();
    assert_eq!(
        z.store(t, 1, &noise).unwrap(),
        StoreOutcome::Rejected(Reject::CompressPoor)
    );
    assert!(z.load(t, 1).is_err(), "the stale page must not be served");
    let s = z.stats();
    assert_eq!(
        (s.reject_compress_poor, s.duplicate_entry, s.stored_pages),
        (1, 1, 0)
    );
}

#[test]
fn exclusive_loads_drop_the_entry() {
    let z = Zswap::new(Config {
        exclusive_loads: true,
        ..Config::default()
    })
    .unwrap();
    let t = z.swapon(4).unwrap();
    z.store(t, 0, &text_page(4)).unwrap();
    z.store(t, 1, &[7u8; 4096]).unwrap();
    assert_eq!(z.load(t, 0).unwrap(), text_page(4));
    assert_eq!(z.load(t, 1).unwrap(), vec![7u8; 4096]);
    assert!(z.load(t, 0).is_err() && z.load(t, 1).is_err());
    assert_eq!(z.stats().stored_pages, 0);
    assert_eq!(z.stats().pool_total_size, 0);
}

#[test]
fn disabled_refuses_but_still_loads() {
    let z = zswap(None);
    let t = z.swapon(4).unwrap();
    z.store(t, 0, &text_page(5)).unwrap();
    z.set_enabled(false);
    assert_eq!(
        z.store(t, 1, &text_page(6)).unwrap(),
        StoreOutcome::Rejected(Reject::Disabled)
    );
    assert_eq!(z.load(t, 0).unwrap(), text_page(5));
}

#[test]
fn compact_keeps_pages() {
    let z = zswap(None);
    let t = z.swapon(4000).unwrap();
    for off in 0..4000u64 {
        z.store(t, off, &text_page(off as u32)).unwrap();
    }
    for off in (0..4000u64).filter(|o| o % 3 != 0) {
        z.invalidate(t, off).unwrap();
    }
    let before = z.stats().pool_total_size;
    let freed = z.compact().unwrap();
    assert!(freed > 0);
    assert!(z.stats().pool_total_size < before);
    for off in (0..4000u64).step_by(3) {
        assert_eq!(z.load(t, off).unwrap(), text_page(off as u32));
    }
    z.check_invariants().unwrap();
}

/// A page that does not compress at all (xorshift from a seed never 0).
fn noise_page(seed: u64) -> Vec<u8> {
    crate::testing::noise(0x9e37_79b9 ^ seed, 4096)
}

fn keeping_raw(config: Config) -> Zswap {
    Zswap::new(Config {
        store_incompressible: Some(true),
        ..config
    })
    .unwrap()
}

#[test]
fn store_incompressible_is_off_unless_asked() {
    assert!(!zswap(None).store_incompressible());
    let off = Zswap::new(Config {
        store_incompressible: Some(false),
        ..Config::default()
    })
    .unwrap();
    assert!(!off.store_incompressible());
    let z = keeping_raw(Config::default());
    assert!(z.store_incompressible());
    z.set_store_incompressible(false);
    assert!(!z.store_incompressible());
}

#[test]
fn an_incompressible_page_is_kept_raw_when_asked() {
    let z = keeping_raw(Config::default());
    let t = z.swapon(8).unwrap();
    let noise = noise_page(1);
    assert_eq!(z.store(t, 1, &noise).unwrap(), StoreOutcome::Stored);
    let s = z.stats();
    assert_eq!(
        (
            s.stored_incompressible_pages,
            s.reject_compress_poor,
            s.stored_pages,
            s.zswpout
        ),
        (1, 0, 1, 1)
    );
    // The raw page counts its whole length, as the kernel's does.
    assert_eq!((s.compr_data_size, s.orig_data_size), (4096, 4096));
    assert_eq!(z.load(t, 1).unwrap(), noise);
    // Compressible and same-filled pages beside it are not raw.
    z.store(t, 2, &text_page(2)).unwrap();
    z.store(t, 3, &[0u8; 4096]).unwrap();
    assert_eq!(z.stats().stored_incompressible_pages, 1);
    assert!(z.invalidate(t, 1).unwrap());
    let s = z.stats();
    assert_eq!((s.stored_incompressible_pages, s.stored_pages), (0, 2));
    assert!(s.compr_data_size < 4096);
    // Replaced by a compressible page, by another raw one, dropped by
    // swapoff: the gauge follows each.
    z.store(t, 4, &noise_page(4)).unwrap();
    z.store(t, 5, &noise_page(5)).unwrap();
    assert_eq!(z.stats().stored_incompressible_pages, 2);
    z.store(t, 4, &text_page(4)).unwrap();
    z.store(t, 5, &noise_page(6)).unwrap();
    assert_eq!(z.stats().stored_incompressible_pages, 1);
    assert_eq!(z.load(t, 4).unwrap(), text_page(4));
    assert_eq!(z.load(t, 5).unwrap(), noise_page(6));
    z.swapoff(t).unwrap();
    let s = z.stats();
    assert_eq!((s.stored_incompressible_pages, s.compr_data_size), (0, 0));
    assert_eq!(s.pool_total_size, 0);
}

#[test]
fn an_exclusive_load_drops_a_raw_entry_and_its_count() {
    let z = keeping_raw(Config {
        exclusive_loads: true,
        ..Config::default()
    });
    let t = z.swapon(4).unwrap();
    z.store(t, 0, &noise_page(7)).unwrap();
    assert_eq!(z.stats().stored_incompressible_pages, 1);
    assert_eq!(z.load(t, 0).unwrap(), noise_page(7));
    let s = z.stats();
    assert_eq!((s.stored_incompressible_pages, s.stored_pages), (0, 0));
}

/// Half text, half noise: lz4 takes it to a little over half a page.
fn half_compressible_page() -> Vec<u8> {
    let mut page = text_page(11);
    page[2048..].copy_from_slice(&noise_page(11)[2048..]);
    page
}

#[test]
fn a_page_over_the_ratio_but_compressible_is_kept_raw_too() {
    let page = half_compressible_page();
    let lz4 = compress::create("lz4", &Default::default()).unwrap();
    let mut buf = vec![0u8; 2 * 4096];
    let len = lz4.compress(&page, &mut buf).unwrap();
    assert!((2048..4096).contains(&len), "compressed to {len}");
    let z = keeping_raw(Config {
        max_compression_ratio: 50,
        ..Config::default()
    });
    let t = z.swapon(4).unwrap();
    z.set_store_incompressible(false);
    assert_eq!(
        z.store(t, 0, &page).unwrap(),
        StoreOutcome::Rejected(Reject::CompressPoor)
    );
    assert_eq!(z.stats().reject_compress_poor, 1);
    z.set_store_incompressible(true);
    assert_eq!(z.store(t, 0, &page).unwrap(), StoreOutcome::Stored);
    let s = z.stats();
    assert_eq!(
        (
            s.stored_incompressible_pages,
            s.reject_compress_poor,
            s.compr_data_size
        ),
        (1, 1, 4096)
    );
    assert_eq!(z.load(t, 0).unwrap(), page);
}

/// A cache of a 64 KiB pool with an area of 64 slots in memory, given 64
/// pages of noise one by one; what each store did, what each offset loads
/// from afterwards, and the backing store.
fn fill_past_a_tiny_pool(
    keep_raw: bool,
) -> (
    Zswap,
    Vec<StoreOutcome>,
    Vec<LoadSource>,
    Arc<crate::testing::MemStore>,
) {
    let z = Zswap::new(Config {
        max_pool_bytes: Some(64 << 10),
        store_incompressible: Some(keep_raw),
        ..Config::default()
    })
    .unwrap();
    let store = crate::testing::MemStore::new(64);
    let t = super::lifecycle_tests::swapon_store(&z, store.clone(), 64);
    let stored = (0..64u64)
        .map(|o| z.store(t, o, &noise_page(o)).unwrap())
        .collect();
    let mut out = vec![0u8; 4096];
    let sources = (0..64u64)
        .map(|o| {
            let source = z.load_into(t, o, &mut out).unwrap();
            assert_eq!(out, noise_page(o), "offset {o}");
            source
        })
        .collect();
    (z, stored, sources, store)
}

#[test]
fn raw_pages_are_written_back_oldest_first() {
    let (z, stored, sources, store) = fill_past_a_tiny_pool(true);
    assert!(
        stored.iter().all(|&o| o == StoreOutcome::Stored),
        "{stored:?}"
    );
    // The oldest went to the file to make room, the newest are in the pool.
    let on_disk = sources
        .iter()
        .take_while(|&&s| s == LoadSource::Backing)
        .count();
    assert!(on_disk > 0 && on_disk < 64, "{sources:?}");
    assert!(sources[on_disk..].iter().all(|&s| s == LoadSource::Pool));
    assert_eq!(store.page(0), Some(noise_page(0)));
    let s = z.stats();
    assert_eq!(s.written_back_pages, on_disk as u64);
    assert_eq!(s.stored_pages, 64 - on_disk as u64);
    assert_eq!(s.stored_incompressible_pages, s.stored_pages);
    assert_eq!(s.compr_data_size, 4096 * s.stored_pages);
    assert_eq!((s.reject_compress_poor, s.pswpout), (0, on_disk as u64));
}

#[test]
fn without_the_switch_incompressible_pages_go_to_the_file_at_once() {
    let (z, stored, sources, _) = fill_past_a_tiny_pool(false);
    assert!(
        stored.iter().all(|&o| o == StoreOutcome::Swapped),
        "{stored:?}"
    );
    assert!(sources.iter().all(|&s| s == LoadSource::Backing));
    let s = z.stats();
    assert_eq!((s.reject_compress_poor, s.pswpout), (64, 64));
    assert_eq!(
        (
            s.written_back_pages,
            s.stored_pages,
            s.stored_incompressible_pages
        ),
        (0, 0, 0)
    );
}

/// lz4 that takes pages in batches of four, as IAA takes eight: stores
/// through `store_many` go through `store_chunk`.
#[derive(Debug)]
struct Batched(Arc<dyn Compressor>);

impl Compressor for Batched {
    fn id(&self) -> CompressorId {
        self.0.id()
    }

    fn compress(&self, src: &[u8], dst: &mut [u8]) -> Result<usize, CompressError> {
        self.0.compress(src, dst)
    }

    fn decompress(&self, src: &[u8], dst: &mut [u8]) -> Result<(), compress::DecompressError> {
        self.0.decompress(src, dst)
    }

    fn batch_size(&self) -> usize {
        4
    }
}

#[test]
fn store_many_keeps_raw_pages_as_store_does() {
    let pages: Vec<Vec<u8>> = vec![
        noise_page(20),
        text_page(21),
        vec![0u8; 4096],
        noise_page(23),
        half_compressible_page(),
        text_page(25),
    ];
    let flat = pages.concat();
    let offsets: Vec<u64> = (0..pages.len() as u64).collect();
    let expect = [
        StoreOutcome::Stored,
        StoreOutcome::Stored,
        StoreOutcome::SameFilled,
        StoreOutcome::Stored,
        StoreOutcome::Stored,
        StoreOutcome::Stored,
    ];
    for batched in [false, true] {
        let z = keeping_raw(Config {
            // lz4 entries are decoded by the first lz4 instance the cache
            // uses: the batched one, when it is set before any store.
            compressor: "zstd".into(),
            max_compression_ratio: 50,
            ..Config::default()
        });
        let lz4 = compress::create("lz4", &Default::default()).unwrap();
        if batched {
            z.set_compressor_instance(Arc::new(Batched(lz4)));
        } else {
            z.set_compressor_instance(lz4);
        }
        assert_eq!(z.compressor.read().batch_size() > 1, batched);
        let t = z.swapon(8).unwrap();
        let mut outcomes = Vec::new();
        z.store_many(t, &offsets, &flat, &mut outcomes).unwrap();
        assert_eq!(outcomes, expect, "batched {batched}");
        let s = z.stats();
        assert_eq!(
            (s.stored_incompressible_pages, s.reject_compress_poor),
            (3, 0),
            "batched {batched}"
        );
        let mut out = vec![0u8; flat.len()];
        z.load_many(t, &offsets, &mut out).unwrap();
        assert!(out == flat, "batched {batched}");
        // Off again: the same batch is refused where it was kept raw.
        z.set_store_incompressible(false);
        z.store_many(t, &offsets, &flat, &mut outcomes).unwrap();
        let poor = StoreOutcome::Rejected(Reject::CompressPoor);
        assert_eq!(
            outcomes,
            [poor, expect[1], expect[2], poor, poor, expect[5]],
            "batched {batched}"
        );
        let s = z.stats();
        assert_eq!(
            (s.stored_incompressible_pages, s.reject_compress_poor),
            (0, 3),
            "batched {batched}"
        );
    }
}
