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
