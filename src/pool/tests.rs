//! Unit tests of the pool; the model test is tests/pool_model.rs.

use super::*;

/// A 2064-byte object: 8-page zspages of 15 slots on 4 KiB pages.
const BIG: usize = 2064;
const BIG_ZSPAGE: u64 = 8 * 4096;

fn pool() -> Pool {
    Pool::new(4096).unwrap()
}

fn fill(n: usize, seed: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 + seed * 7 + 1) as u8).collect()
}

fn stats_of(pool: &Pool, size: usize) -> ClassStats {
    pool.class_stats()
        .into_iter()
        .find(|s| s.size == pool.class_size_for(size).unwrap())
        .unwrap()
}

#[test]
fn pool_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Pool>();
}

#[test]
fn warm_reads_ahead_and_never_blocks_or_judges() {
    let pool = std::sync::Arc::new(pool());
    let (a, b) = (
        pool.alloc_write(&fill(BIG, 1)).unwrap(),
        pool.alloc_write(&fill(100, 2)).unwrap(),
    );
    let first = |n, seed| fill(n, seed)[0];
    assert_eq!(
        pool.warm(&[a, b]),
        first(BIG, 1).wrapping_add(first(100, 2))
    );
    // At most WARM_MAX objects are read.
    let expect = (0..WARM_MAX).fold(0u8, |s, _| s.wrapping_add(first(BIG, 1)));
    assert_eq!(pool.warm(&[a; WARM_MAX + 3]), expect);
    // A freed slot and a handle the pool never made: read or skipped, no
    // panic (warming judges nothing).
    let freed = pool.alloc_write(&fill(BIG, 3)).unwrap();
    pool.free(freed);
    pool.warm(&[freed, Handle::from_bits(u64::MAX), Handle::from_bits(0), a]);
    // A class locked elsewhere is skipped, not waited for: warm returns
    // while another thread holds the lock of a's class.
    let (locked, release) = (std::sync::Barrier::new(2), std::sync::Barrier::new(2));
    std::thread::scope(|s| {
        s.spawn(|| {
            let _guard = pool.classes[a.class()].state.write();
            locked.wait();
            release.wait();
        });
        locked.wait();
        let (tx, rx) = std::sync::mpsc::channel();
        let p = pool.clone();
        std::thread::spawn(move || tx.send(p.warm(&[a, b])).unwrap());
        let got = rx.recv_timeout(std::time::Duration::from_secs(20));
        release.wait();
        assert_eq!(got.expect("warm waited for a locked class"), first(100, 2));
    });
}

/// Loads decompress inside `with_object`, so reads of one class must not
/// wait for each other: each of two readers here stays inside until it
/// hears that the other got in too. With a class lock that readers take
/// exclusive, the second never gets in and the first gives up.
#[test]
fn reads_of_one_class_overlap() {
    use std::sync::mpsc::channel;
    use std::time::Duration;

    let pool = pool();
    let (a, b) = (
        pool.alloc_write(&fill(BIG, 1)).unwrap(),
        pool.alloc_write(&fill(BIG, 2)).unwrap(),
    );
    assert_eq!(a.class(), b.class());
    let (in_a, heard_a) = channel();
    let (in_b, heard_b) = channel();
    let read = |h: Handle, seed: usize, inside: std::sync::mpsc::Sender<()>, other| {
        let pool = &pool;
        move || {
            pool.with_object(h, BIG, |bytes| {
                assert_eq!(bytes, fill(BIG, seed));
                inside.send(()).unwrap();
                let other: std::sync::mpsc::Receiver<()> = other;
                other
                    .recv_timeout(Duration::from_secs(20))
                    .expect("the other read of the class never got in beside this one");
            })
        }
    };
    std::thread::scope(|s| {
        s.spawn(read(a, 1, in_a, heard_b));
        s.spawn(read(b, 2, in_b, heard_a));
    });
}

#[test]
fn class_entries_take_384_bytes() {
    assert_eq!(std::mem::size_of::<SizeClass>(), 384);
}

#[test]
fn page_size_must_be_a_power_of_two_in_range() {
    for bad in [0, 1, 2048, 4095, 6144, 131072] {
        let err = Pool::new(bad).unwrap_err();
        assert_eq!(err, PoolConfigError::BadPageSize { page_size: bad });
        assert!(err.to_string().contains("power of two"), "{err}");
    }
    for shift in 12..=16 {
        let p = Pool::new(1 << shift).unwrap();
        assert_eq!(p.page_size(), 1 << shift);
        assert_eq!(p.max_alloc(), 1 << shift);
        assert_eq!(p.total_bytes(), 0);
    }
}

#[test]
fn bad_sizes_are_errors_not_panics() {
    let p = pool();
    assert_eq!(p.alloc(0), Err(AllocError::Empty));
    assert_eq!(p.alloc_write(&[]), Err(AllocError::Empty));
    let e = p.alloc(4097).unwrap_err();
    assert_eq!(
        e,
        AllocError::TooLarge {
            size: 4097,
            max: 4096
        }
    );
    assert!(e.to_string().contains("4097"));
    assert_eq!(p.class_size_for(0), None);
    assert_eq!(p.class_size_for(1), Some(32));
    assert_eq!(p.class_size_for(2048), Some(2048));
    // 2049 rounds up to the 2064 step, which shares its shape (15 objects
    // per 8 pages) with the steps up to 2176 and is merged into it.
    assert_eq!(p.class_size_for(2049), Some(2176));
    assert_eq!(p.class_size_for(2177), Some(2192));
    assert_eq!(p.total_bytes(), 0);
}

#[test]
fn zspages_grow_on_demand_and_go_back_when_empty() {
    let p = pool();
    let mut hs = Vec::new();
    for i in 0..15 {
        hs.push(p.alloc_write(&fill(BIG, i)).unwrap());
        assert_eq!(p.total_bytes(), BIG_ZSPAGE, "15 objects share one zspage");
    }
    hs.push(p.alloc_write(&fill(BIG, 15)).unwrap());
    assert_eq!(p.total_bytes(), 2 * BIG_ZSPAGE);
    assert_eq!(p.total_pages(), 16);
    assert_eq!(p.objects(), 16);
    assert_eq!(p.object_bytes(), 16 * 2176);
    for (i, h) in hs.iter().enumerate() {
        let mut out = vec![0; BIG];
        p.read(*h, &mut out);
        assert_eq!(out, fill(BIG, i));
        assert_ne!(h.to_bits(), 0);
        assert!(h.to_bits() < 1 << 48);
    }
    // The 16th object alone keeps the second zspage; freeing it returns it.
    p.free(hs.pop().unwrap());
    assert_eq!(p.total_bytes(), BIG_ZSPAGE);
    for h in hs {
        p.free(h);
    }
    assert_eq!(p.total_bytes(), 0);
    assert_eq!(p.objects(), 0);
}

#[test]
fn every_size_round_trips_on_every_page_size() {
    for shift in [12, 16] {
        let page = 1usize << shift;
        let p = Pool::new(page).unwrap();
        let sizes: Vec<usize> = (1..=page).step_by(97).chain([page]).collect();
        let hs: Vec<Handle> = sizes
            .iter()
            .map(|&n| p.alloc_write(&fill(n, n)).unwrap())
            .collect();
        for (&n, &h) in sizes.iter().zip(&hs) {
            p.with_object(h, n, |b| assert_eq!(b, &fill(n, n)[..]));
        }
        for h in hs {
            p.free(h);
        }
        assert_eq!(p.total_bytes(), 0);
    }
}

#[test]
fn write_and_alloc_are_separate_steps_too() {
    let p = pool();
    let h = p.alloc(100).unwrap();
    p.write(h, b"hello");
    let mut out = [0u8; 5];
    p.read(h, &mut out);
    assert_eq!(&out, b"hello");
    // The whole class slot (112 bytes) but its 8-byte tag is writable.
    p.write(h, &[7u8; 104]);
    p.free(h);
}

#[test]
#[should_panic(expected = "write of 105 bytes into a 104-byte object")]
fn write_past_the_slot_panics() {
    let p = pool();
    let h = p.alloc(100).unwrap();
    p.write(h, &[0u8; 105]);
}

#[test]
#[should_panic(expected = "not allocated")]
fn free_of_a_freed_zspage_panics() {
    let p = pool();
    let h = p.alloc(100).unwrap();
    p.free(h);
    p.free(h);
}

#[test]
#[should_panic(expected = "double free or stale handle")]
fn double_free_panics() {
    let p = pool();
    let keep = p.alloc(100).unwrap();
    let h = p.alloc(100).unwrap();
    p.free(h);
    let _ = keep;
    p.free(h);
}

#[test]
#[should_panic(expected = "not allocated")]
fn read_of_a_freed_object_panics() {
    let p = pool();
    let _keep = p.alloc(100).unwrap();
    let h = p.alloc(100).unwrap();
    p.free(h);
    p.read(h, &mut [0u8; 4]);
}

#[test]
#[should_panic(expected = "does not have")]
fn handle_of_a_merged_class_panics() {
    let p = pool();
    // Class index 1 (48 bytes) is its own class, but 2064's step is merged
    // into 2176: build a handle naming the merged step.
    let merged = (0..p.class_count()).find(|&i| !p.classes[i].owner).unwrap();
    p.free(Handle::new(merged, 0, 0));
}

#[test]
#[should_panic(expected = "is not allocated")]
fn garbage_handle_panics() {
    let p = pool();
    p.free(Handle::from_bits(0x0000_1234_5678_9abc));
}

/// Returns the zspage id of a handle: which zspage an object landed in.
fn zspage_of(h: Handle) -> u32 {
    h.zspage().unwrap()
}

#[test]
fn allocation_takes_the_fullest_zspage_with_room() {
    let p = pool();
    let hs: Vec<Handle> = (0..45)
        .map(|i| p.alloc_write(&fill(BIG, i)).unwrap())
        .collect();
    let (a, b, c) = (zspage_of(hs[0]), zspage_of(hs[15]), zspage_of(hs[30]));
    assert!(a != b && b != c && a != c);
    // a: 3/15 used (20%), b: 13/15 (86%), c: 8/15 (53%).
    for h in &hs[3..15] {
        p.free(*h);
    }
    for h in &hs[28..30] {
        p.free(*h);
    }
    for h in &hs[38..45] {
        p.free(*h);
    }
    assert_eq!(p.total_bytes(), 3 * BIG_ZSPAGE);
    let s = stats_of(&p, BIG);
    assert_eq!(s.fullness[2], 1);
    assert_eq!(s.fullness[5], 1);
    assert_eq!(s.fullness[8], 1);
    // The next 2 go to b (fullest), then 7 to c, then a.
    let mut new = Vec::new();
    for _ in 0..2 {
        new.push(p.alloc(BIG).unwrap());
        assert_eq!(zspage_of(*new.last().unwrap()), b);
    }
    for _ in 0..7 {
        new.push(p.alloc(BIG).unwrap());
        assert_eq!(zspage_of(*new.last().unwrap()), c);
    }
    new.push(p.alloc(BIG).unwrap());
    assert_eq!(zspage_of(*new.last().unwrap()), a);
    assert_eq!(p.total_bytes(), 3 * BIG_ZSPAGE, "no zspage added");
}

#[test]
fn freed_zspage_ids_are_reused() {
    let p = pool();
    let hs: Vec<Handle> = (0..30).map(|_| p.alloc(BIG).unwrap()).collect();
    let first = zspage_of(hs[0]);
    assert_ne!(first, zspage_of(hs[15]));
    for h in &hs[..15] {
        p.free(*h);
    }
    assert_eq!(p.total_bytes(), BIG_ZSPAGE, "the emptied zspage went back");
    // The other zspage is full: the next object takes a new zspage, which
    // reuses the freed id.
    assert_eq!(zspage_of(p.alloc(BIG).unwrap()), first);
    assert_eq!(p.total_bytes(), 2 * BIG_ZSPAGE);
}

#[test]
fn class_stats_figures() {
    let p = pool();
    let stats = p.class_stats();
    assert_eq!(stats.len(), 119, "owner classes on 4 KiB pages");
    assert!(stats.windows(2).all(|w| w[0].class < w[1].class));
    assert!(stats.iter().all(|s| s.zspages == 0 && s.obj_used == 0));

    let hs: Vec<Handle> = (0..20).map(|_| p.alloc(BIG).unwrap()).collect();
    let small: Vec<Handle> = (0..3).map(|_| p.alloc(20).unwrap()).collect();
    let s = stats_of(&p, BIG);
    assert_eq!(s.size, 2176);
    assert_eq!((s.pages_per_zspage, s.objs_per_zspage), (8, 15));
    assert_eq!(s.zspages, 2);
    assert_eq!(s.obj_allocated, 30);
    assert_eq!(s.obj_used, 20);
    assert_eq!(s.pages_used, 16);
    // 5/15 = 33% in bucket 3, the other full.
    let mut want = [0; 11];
    want[3] = 1;
    want[10] = 1;
    assert_eq!(s.fullness, want);
    assert_eq!(s.freeable, 0);
    for h in &hs[..8] {
        p.free(*h);
    }
    // 12 objects, room for 15 in one zspage: one zspage is freeable.
    let s = stats_of(&p, BIG);
    assert_eq!((s.obj_used, s.zspages, s.freeable), (12, 2, 1));
    let s32 = stats_of(&p, 20);
    assert_eq!(
        (s32.size, s32.pages_per_zspage, s32.objs_per_zspage),
        (32, 1, 128)
    );
    assert_eq!((s32.zspages, s32.obj_used, s32.fullness[0]), (1, 3, 1));
    let total: usize = p.class_stats().iter().map(|s| s.pages_used * 4096).sum();
    assert_eq!(total as u64, p.total_bytes());
    let _ = small;
}

/// Runs `compact` with `handles` as the caller's index.
fn compact_with(p: &Pool, handles: &mut [Handle]) -> usize {
    p.compact(&mut |visit| {
        for h in handles.iter_mut() {
            visit(h);
        }
    })
}

#[test]
fn compaction_frees_pages_and_keeps_bytes() {
    let p = pool();
    let mut live: Vec<(Handle, Vec<u8>)> = (0..60)
        .map(|i| (p.alloc_write(&fill(BIG, i)).unwrap(), fill(BIG, i)))
        .collect();
    assert_eq!(p.total_bytes(), 4 * BIG_ZSPAGE);
    // Keep every third object: 20 live objects spread over 4 zspages.
    let mut i = 0;
    live.retain(|(h, _)| {
        i += 1;
        let keep = i % 3 == 0;
        if !keep {
            p.free(*h);
        }
        keep
    });
    assert_eq!(p.total_bytes(), 4 * BIG_ZSPAGE);
    assert_eq!(stats_of(&p, BIG).freeable, 2);
    let mut handles: Vec<Handle> = live.iter().map(|(h, _)| *h).collect();
    let freed = compact_with(&p, &mut handles);
    assert_eq!(freed, 16, "two 8-page zspages");
    assert_eq!(p.total_bytes(), 2 * BIG_ZSPAGE);
    assert_eq!(p.objects(), 20);
    let moved = handles
        .iter()
        .zip(&live)
        .filter(|(a, (b, _))| *a != b)
        .count();
    assert!(moved > 0 && moved <= 10, "moved {moved}");
    for (h, (_, bytes)) in handles.iter().zip(&live) {
        p.with_object(*h, BIG, |b| assert_eq!(b, &bytes[..]));
    }
    let s = stats_of(&p, BIG);
    assert_eq!((s.zspages, s.freeable, s.fullness[10]), (2, 0, 1));
    // Nothing more to gain: the owners walk is skipped entirely.
    let freed = p.compact(&mut |_| panic!("walked for nothing"));
    assert_eq!(freed, 0);
    for h in handles {
        p.free(h);
    }
    assert_eq!(p.total_bytes(), 0);
}

#[test]
fn compaction_leaves_foreign_handles_alone() {
    let p = pool();
    let hs: Vec<Handle> = (0..30)
        .map(|i| p.alloc_write(&fill(BIG, i)).unwrap())
        .collect();
    for h in &hs[1..29] {
        p.free(*h);
    }
    let mut handles = [hs[0], hs[29]];
    let mut foreign = [Handle::from_bits(0), Handle::from_bits(u64::MAX)];
    let freed = p.compact(&mut |visit| {
        for h in foreign.iter_mut() {
            visit(h);
        }
        for h in handles.iter_mut() {
            visit(h);
        }
    });
    assert_eq!(freed, 8);
    assert_eq!(foreign, [Handle::from_bits(0), Handle::from_bits(u64::MAX)]);
    p.with_object(handles[0], BIG, |b| assert_eq!(b, &fill(BIG, 0)[..]));
    p.with_object(handles[1], BIG, |b| assert_eq!(b, &fill(BIG, 29)[..]));
}

#[test]
fn compaction_keeps_zspages_whose_objects_find_no_room() {
    let p = pool();
    let hs: Vec<Handle> = (0..30)
        .map(|i| p.alloc_write(&fill(BIG, i)).unwrap())
        .collect();
    for h in &hs[1..15] {
        p.free(*h);
    }
    for h in &hs[16..30] {
        p.free(*h);
    }
    // Two zspages with one object each: one is isolated. Before the walk,
    // another user takes every free slot of the class that alloc may use.
    let mut handles = vec![hs[0], hs[15]];
    let mut others = Vec::new();
    let freed = p.compact(&mut |visit| {
        for _ in 0..14 {
            others.push(p.alloc(BIG).unwrap());
        }
        assert_eq!(p.total_bytes(), 2 * BIG_ZSPAGE, "isolated zspage not used");
        for h in handles.iter_mut() {
            visit(h);
        }
    });
    assert_eq!(freed, 0);
    assert_eq!(handles, vec![hs[0], hs[15]]);
    p.with_object(handles[0], BIG, |b| assert_eq!(b, &fill(BIG, 0)[..]));
    p.with_object(handles[1], BIG, |b| assert_eq!(b, &fill(BIG, 15)[..]));
    // The kept zspage is back in service: it takes the next allocation.
    let before = p.total_bytes();
    others.push(p.alloc(BIG).unwrap());
    assert_eq!(p.total_bytes(), before);
    for h in others.into_iter().chain(handles) {
        p.free(h);
    }
    assert_eq!(p.total_bytes(), 0);
}

#[test]
fn compaction_recovers_when_the_walk_panics() {
    let p = pool();
    let hs: Vec<Handle> = (0..30).map(|_| p.alloc(BIG).unwrap()).collect();
    for h in &hs[1..29] {
        p.free(*h);
    }
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        p.compact(&mut |_| panic!("caller's walk failed"))
    }));
    assert!(r.is_err());
    // Nothing isolated remains: freeing the objects frees their zspages.
    assert_eq!(stats_of(&p, BIG).fullness[0], 2);
    p.free(hs[0]);
    p.free(hs[29]);
    assert_eq!(p.total_bytes(), 0);
}
