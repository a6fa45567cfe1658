//! The red-black tree and its LRU against a model: a `BTreeMap` for the
//! tree, a `Vec` in use order for the LRU. The invariant checker runs after
//! every operation.

use std::collections::BTreeMap;

use proptest::prelude::*;
use zswap_rs::index::Index;

#[derive(Debug, Clone)]
enum Op {
    Insert(u32, u64, u8),
    Remove(u32),
    Get(u32),
    Touch(u32),
    RemoveOldest,
}

fn op(keys: u32) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..keys, any::<u64>(), 0u8..8).prop_map(|(k, v, t)| Op::Insert(k, v, t)),
        2 => (0..keys).prop_map(Op::Remove),
        1 => (0..keys).prop_map(Op::Get),
        1 => (0..keys).prop_map(Op::Touch),
        1 => Just(Op::RemoveOldest),
    ]
}

/// The model's LRU: keys from oldest to newest.
fn bump(lru: &mut Vec<u32>, key: u32) {
    lru.retain(|&k| k != key);
    lru.push(key);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn tree_and_lru_match_the_model(
        ops in prop::collection::vec(op(64), 1..400),
        wide in prop::collection::vec(op(u32::MAX), 0..100),
    ) {
        let mut ix = Index::new();
        let mut model: BTreeMap<u32, (u64, u8)> = BTreeMap::new();
        let mut lru: Vec<u32> = Vec::new();
        for op in ops.into_iter().chain(wide) {
            match op {
                Op::Insert(k, v, t) => {
                    let old = ix.insert(k, v, t).unwrap().map(|e| (e.value, e.tag));
                    prop_assert_eq!(old, model.insert(k, (v, t)));
                    bump(&mut lru, k);
                }
                Op::Remove(k) => {
                    let got = ix.remove(k).map(|e| (e.key, e.value, e.tag));
                    prop_assert_eq!(got, model.remove(&k).map(|(v, t)| (k, v, t)));
                    lru.retain(|&x| x != k);
                }
                Op::Get(k) => {
                    let got = ix.get(k).map(|e| (e.value, e.tag));
                    prop_assert_eq!(got, model.get(&k).copied());
                }
                Op::Touch(k) => {
                    if let Some(e) = ix.get(k) {
                        ix.touch(e.id);
                        bump(&mut lru, k);
                    }
                }
                Op::RemoveOldest => {
                    if let Some(e) = ix.lru_oldest() {
                        prop_assert_eq!(Some(e.key), lru.first().copied());
                        ix.remove_at(e.id);
                        model.remove(&e.key);
                        lru.remove(0);
                    } else {
                        prop_assert!(lru.is_empty());
                    }
                }
            }
            if let Err(e) = ix.check_invariants() {
                return Err(TestCaseError::fail(e));
            }
            prop_assert_eq!(ix.len(), model.len());
        }
        // In-order walk equals the model's order.
        let walked: Vec<(u32, u64, u8)> = ix.iter().map(|e| (e.key, e.value, e.tag)).collect();
        let expected: Vec<(u32, u64, u8)> = model.iter().map(|(&k, &(v, t))| (k, v, t)).collect();
        prop_assert_eq!(walked, expected);
        // LRU walk from the oldest equals the model's use order.
        let mut order = Vec::new();
        let mut e = ix.lru_oldest();
        while let Some(x) = e {
            order.push(x.key);
            e = ix.lru_newer(x.id);
        }
        prop_assert_eq!(order, lru);
    }
}
