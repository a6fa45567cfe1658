//! The red-black tree and its LRU against a model: a `BTreeMap` for the
//! tree, a `Vec` in use order for the LRU (entries and markers). The
//! invariant checker runs after every operation.

use std::collections::BTreeMap;

use proptest::prelude::*;
use zswap_rs::index::Index;

#[derive(Debug, Clone)]
enum Op {
    Insert(u32, u64, u8, bool),
    Remove(u32),
    Get(u32),
    /// Several lookups at once (lockstep walks), any length, repeats allowed.
    GetMany(Vec<u32>),
    Touch(u32),
    RemoveOldest,
    PushMarker,
    RemoveMarker(usize),
}

fn op(keys: u32) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..keys, any::<u64>(), 0u8..8, prop::bool::weighted(0.8))
            .prop_map(|(k, v, t, l)| Op::Insert(k, v, t, l)),
        2 => (0..keys).prop_map(Op::Remove),
        1 => (0..keys).prop_map(Op::Get),
        1 => prop::collection::vec(0..keys, 0..20).prop_map(Op::GetMany),
        1 => (0..keys).prop_map(Op::Touch),
        1 => Just(Op::RemoveOldest),
        1 => Just(Op::PushMarker),
        1 => any::<usize>().prop_map(Op::RemoveMarker),
    ]
}

/// One slot of the model's LRU, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    Key(u32),
    Marker(u32),
}

fn bump(lru: &mut Vec<Item>, key: u32) {
    lru.retain(|&i| i != Item::Key(key));
    lru.push(Item::Key(key));
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
        let mut lru: Vec<Item> = Vec::new();
        for op in ops.into_iter().chain(wide) {
            match op {
                Op::Insert(k, v, t, on_lru) => {
                    let old = ix.insert_with(k, v, t, on_lru).unwrap().map(|e| (e.value, e.tag));
                    prop_assert_eq!(old, model.insert(k, (v, t)));
                    lru.retain(|&i| i != Item::Key(k));
                    if on_lru {
                        lru.push(Item::Key(k));
                    }
                }
                Op::Remove(k) => {
                    let got = ix.remove(k).map(|e| (e.key, e.value, e.tag));
                    prop_assert_eq!(got, model.remove(&k).map(|(v, t)| (k, v, t)));
                    lru.retain(|&i| i != Item::Key(k));
                }
                Op::Get(k) => {
                    let got = ix.get(k).map(|e| (e.value, e.tag));
                    prop_assert_eq!(got, model.get(&k).copied());
                }
                Op::GetMany(keys) => {
                    let mut found = vec![None; keys.len()];
                    ix.get_many(&keys, &mut found);
                    for (k, got) in keys.iter().zip(found) {
                        prop_assert_eq!(got.map(|e| (e.key, e.value, e.tag)), model.get(k).map(|&(v, t)| (*k, v, t)));
                        prop_assert_eq!(got, ix.get(*k));
                    }
                }
                Op::Touch(k) => {
                    if let Some(e) = ix.get(k) {
                        ix.touch(e.id);
                        if lru.contains(&Item::Key(k)) {
                            bump(&mut lru, k);
                        }
                    }
                }
                Op::RemoveOldest => {
                    let want = lru.iter().find_map(|&i| match i {
                        Item::Key(k) => Some(k),
                        Item::Marker(_) => None,
                    });
                    let got = ix.lru_oldest();
                    prop_assert_eq!(got.map(|e| e.key), want);
                    if let Some(e) = got {
                        ix.remove_at(e.id);
                        model.remove(&e.key);
                        lru.retain(|&i| i != Item::Key(e.key));
                    }
                }
                Op::PushMarker => {
                    let id = ix.push_marker().unwrap();
                    prop_assert!(ix.is_marker(id));
                    lru.push(Item::Marker(id));
                }
                Op::RemoveMarker(n) => {
                    let markers: Vec<u32> = lru.iter().filter_map(|&i| match i {
                        Item::Marker(id) => Some(id),
                        Item::Key(_) => None,
                    }).collect();
                    if !markers.is_empty() {
                        let id = markers[n % markers.len()];
                        ix.remove_marker(id);
                        lru.retain(|&i| i != Item::Marker(id));
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
        // The LRU from the oldest, markers included, equals the model's.
        let mut order = Vec::new();
        let mut slot = ix.lru_oldest_slot();
        while let Some(id) = slot {
            order.push(if ix.is_marker(id) { Item::Marker(id) } else { Item::Key(ix.entry_at(id).key) });
            slot = ix.lru_newer_slot(id);
        }
        prop_assert_eq!(ix.lru_len(), lru.len());
        prop_assert_eq!(order, lru);
    }
}
