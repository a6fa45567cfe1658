//! The whole cache against a model: random store / load / invalidate /
//! swapoff / compact sequences on two swap areas, with a pool limit small
//! enough to hit. The model predicts every outcome (same-filled, pool full
//! with the kernel's hysteresis, poor compression, stored) and every counter,
//! and every load is checked byte for byte.

mod common;

use std::collections::BTreeMap;

use proptest::prelude::*;
use zswap_rs::{Config, ErrorKind, Reject, StoreOutcome, Zswap};

const PAGE: usize = 4096;
const OFFSETS: u64 = 24;
const LIMIT: u64 = 40 * 1024;

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Text-like, compresses to about a third.
    Text,
    /// One repeated word.
    Same,
    /// Random bytes: always compresses poorly.
    Noise,
}

fn page(kind: Kind, seed: u32) -> Vec<u8> {
    let mut rng = common::Rng::new(u64::from(seed));
    let mut next = || rng.next();
    match kind {
        Kind::Same => {
            let w = if seed % 3 == 0 { 0 } else { next() };
            w.to_ne_bytes().iter().copied().cycle().take(PAGE).collect()
        }
        Kind::Noise => (0..PAGE).map(|_| next() as u8).collect(),
        Kind::Text => {
            let words: [&[u8]; 8] = [
                b"the ", b"page ", b"swap ", b"of ", b"memory ", b"zswap ", b"tree ", b"lru ",
            ];
            let mut p = Vec::with_capacity(PAGE + 8);
            while p.len() < PAGE {
                p.extend_from_slice(words[(next() % 8) as usize]);
                if next() % 5 == 0 {
                    p.push((next() % 26) as u8 + b'a');
                }
            }
            p.truncate(PAGE);
            p
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Store(u8, u64, Kind, u32),
    Load(u8, u64),
    Invalidate(u8, u64),
    Swapoff(u8),
    Compact,
}

fn op() -> impl Strategy<Value = Op> {
    let kind = prop_oneof![6 => Just(Kind::Text), 2 => Just(Kind::Same), 1 => Just(Kind::Noise)];
    prop_oneof![
        8 => (0u8..2, 0..OFFSETS, kind, any::<u32>()).prop_map(|(t, o, k, s)| Op::Store(t, o, k, s)),
        4 => (0u8..2, 0..OFFSETS).prop_map(|(t, o)| Op::Load(t, o)),
        3 => (0u8..2, 0..OFFSETS).prop_map(|(t, o)| Op::Invalidate(t, o)),
        1 => (0u8..2).prop_map(Op::Swapoff),
        1 => Just(Op::Compact),
    ]
}

/// What the model knows of one stored page.
#[derive(Debug, Clone)]
struct Stored {
    bytes: Vec<u8>,
    same: bool,
    compressed: u64,
}

#[derive(Default, Debug)]
struct Counters {
    pool_limit_hit: u64,
    reject_reclaim_fail: u64,
    reject_compress_poor: u64,
    duplicate_entry: u64,
    zswpout: u64,
    zswpin: u64,
}

/// The compressed length lz4 gives a page, if it fits the ratio limit.
fn oracle_len(p: &[u8]) -> Option<u64> {
    let mut out = vec![0u8; lz4_flex::block::get_maximum_output_size(PAGE)];
    let n = lz4_flex::block::compress_into(p, &mut out).expect("worst-case buffer");
    (n <= PAGE * 80 / 100).then_some(n as u64)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn cache_matches_the_model(ops in prop::collection::vec(op(), 1..300), exclusive in any::<bool>()) {
        let z = Zswap::new(Config {
            max_pool_bytes: Some(LIMIT),
            exclusive_loads: exclusive,
            ..Config::default()
        }).unwrap();
        let mut types = [z.swapon(OFFSETS).unwrap(), z.swapon(OFFSETS).unwrap()];
        let mut model: [BTreeMap<u64, Stored>; 2] = Default::default();
        let mut c = Counters::default();
        let mut reached_full = false;
        for op in ops {
            match op {
                Op::Store(a, off, kind, seed) => {
                    let a = a as usize;
                    let p = page(kind, seed);
                    let same = p.chunks_exact(8).all(|w| w == &p[..8]);
                    // The kernel's limit check with hysteresis, on the pool
                    // size before this store. A same-filled page costs the
                    // pool nothing and is taken before the check, so it
                    // neither sets nor clears the "reached full" state.
                    let cur = z.stats().pool_total_size;
                    let full = if same {
                        false
                    } else if cur >= LIMIT {
                        reached_full = true;
                        true
                    } else if reached_full && cur <= LIMIT / 100 * 90 {
                        reached_full = false;
                        false
                    } else {
                        reached_full
                    };
                    // A full pool with no file compacts once if its objects
                    // would fit under the accept threshold, and takes the
                    // page if that brought it there (the pool counts what
                    // compaction frees, and frees all of it alone).
                    let accept = LIMIT / 100 * 90;
                    let compacts_to_room = z.pool().object_bytes() <= accept
                        && cur - z.pool().freeable_bytes() <= accept;
                    let expected = if same {
                        StoreOutcome::SameFilled
                    } else if full && !compacts_to_room {
                        StoreOutcome::Rejected(Reject::ReclaimFail)
                    } else if oracle_len(&p).is_none() {
                        StoreOutcome::Rejected(Reject::CompressPoor)
                    } else {
                        StoreOutcome::Stored
                    };
                    let got = z.store(types[a], off, &p).unwrap();
                    prop_assert_eq!(got, expected, "store {:?} at {}:{}", kind, a, off);
                    if full && !same && compacts_to_room {
                        // The limit was hit, and compaction made the room.
                        c.pool_limit_hit += 1;
                    }
                    if model[a].contains_key(&off) {
                        c.duplicate_entry += 1;
                    }
                    match got {
                        StoreOutcome::Stored | StoreOutcome::SameFilled => {
                            c.zswpout += 1;
                            let compressed = if same { 0 } else { oracle_len(&p).unwrap() };
                            model[a].insert(off, Stored { bytes: p, same, compressed });
                        }
                        StoreOutcome::Rejected(why) => {
                            if why == Reject::ReclaimFail {
                                c.pool_limit_hit += 1;
                                c.reject_reclaim_fail += 1;
                            } else {
                                c.reject_compress_poor += 1;
                            }
                            model[a].remove(&off);
                        }
                        StoreOutcome::Swapped => unreachable!("no backing file"),
                    }
                }
                Op::Load(a, off) => {
                    let a = a as usize;
                    match (z.load(types[a], off), model[a].get(&off)) {
                        (Ok(bytes), Some(s)) => {
                            prop_assert!(bytes == s.bytes, "wrong bytes at {}:{}", a, off);
                            c.zswpin += 1;
                            if exclusive {
                                model[a].remove(&off);
                            }
                        }
                        (Err(e), None) => prop_assert_eq!(
                            e.kind(),
                            ErrorKind::NotFound { swap_type: types[a], offset: off }
                        ),
                        (got, want) => prop_assert!(false, "load {}:{}: {:?} vs model {:?}", a, off, got.map(|_| ()), want.is_some()),
                    }
                }
                Op::Invalidate(a, off) => {
                    let a = a as usize;
                    prop_assert_eq!(z.invalidate(types[a], off).unwrap(), model[a].remove(&off).is_some());
                }
                Op::Swapoff(a) => {
                    let a = a as usize;
                    z.swapoff(types[a]).unwrap();
                    prop_assert_eq!(z.load(types[a], 0).unwrap_err().kind(), ErrorKind::Closed);
                    model[a].clear();
                    types[a] = z.swapon(OFFSETS).unwrap();
                }
                Op::Compact => {
                    z.compact().unwrap();
                }
            }
            let s = z.stats();
            let live = model.iter().flat_map(|m| m.values());
            let (mut stored, mut same, mut compr) = (0u64, 0u64, 0u64);
            for p in live {
                stored += 1;
                same += u64::from(p.same);
                compr += p.compressed;
            }
            prop_assert_eq!(s.stored_pages, stored);
            prop_assert_eq!(s.same_filled_pages, same);
            prop_assert_eq!(s.compr_data_size, compr);
            prop_assert_eq!(s.orig_data_size, stored * PAGE as u64);
            prop_assert_eq!(s.pool_limit_hit, c.pool_limit_hit);
            prop_assert_eq!(s.reject_reclaim_fail, c.reject_reclaim_fail);
            prop_assert_eq!(s.reject_compress_poor, c.reject_compress_poor);
            prop_assert_eq!(s.duplicate_entry, c.duplicate_entry);
            prop_assert_eq!(s.zswpout, c.zswpout);
            prop_assert_eq!(s.zswpin, c.zswpin);
            prop_assert_eq!(s.decompress_fail, 0);
            prop_assert!(s.mem_used_total >= compr);
            if stored == same {
                prop_assert_eq!(s.pool_total_size, 0, "pool must give all memory back");
            }
            if let Err(e) = z.check_invariants() {
                return Err(TestCaseError::fail(e));
            }
        }
        // Every page the model holds is still there.
        for (a, m) in model.iter().enumerate() {
            for (&off, p) in m {
                prop_assert!(z.load(types[a], off).unwrap() == p.bytes);
            }
        }
    }
}
