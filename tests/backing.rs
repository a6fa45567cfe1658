//! Swap areas on real files: swap-out of pages the pool does not take,
//! writeback of the LRU tail when the pool is full, the background shrinker,
//! checksums, and the writeback races: threads hammering the same few
//! offsets under a tiny pool, every page stamped with (type, offset,
//! version) and checked.

use std::collections::HashMap;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use zswap_rs::{Config, ErrorKind, FileOptions, LoadSource, StoreOutcome, Zswap};

const PAGE: usize = 4096;

/// A fresh directory on a real filesystem (O_DIRECT works there, unlike tmpfs).
fn dir(name: &str) -> PathBuf {
    let d = PathBuf::from("/var/tmp").join(format!("zswap-rs-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A page that says which (type, offset, version) it is, all through, and
/// compresses like program data.
fn stamped(t: u32, offset: u64, version: u64) -> Vec<u8> {
    let stamp = format!("[type {t} offset {offset} version {version}]");
    let mut p = Vec::with_capacity(PAGE);
    let mut i = 0u64;
    while p.len() < PAGE {
        p.extend_from_slice(stamp.as_bytes());
        p.extend_from_slice(&(i.wrapping_mul(0x9e37_79b9) ^ offset).to_le_bytes()[..3]);
        i += 1;
    }
    p.truncate(PAGE);
    p
}

/// The (type, offset, version) a page says it is, if it is a whole stamped page.
fn read_stamp(page: &[u8]) -> Option<(u32, u64, u64)> {
    let text = String::from_utf8_lossy(&page[..64]);
    let inner = text.strip_prefix("[type ")?;
    let mut parts = inner.split([' ', ']']);
    let t = parts.next()?.parse().ok()?;
    parts.next()?; // "offset"
    let o = parts.next()?.parse().ok()?;
    parts.next()?; // "version"
    let v = parts.next()?.parse().ok()?;
    (stamped(t, o, v) == page).then_some((t, o, v))
}

fn noise(seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..PAGE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

fn cache(max_pool_bytes: u64) -> Zswap {
    Zswap::new(Config {
        max_pool_bytes: Some(max_pool_bytes),
        ..Config::default()
    })
    .unwrap()
}

#[test]
fn pages_the_pool_refuses_go_to_their_slot() {
    let d = dir("swapout");
    let z = cache(64 << 20);
    let t = z
        .swapon_file(&d.join("swap"), 1000, &FileOptions::default())
        .unwrap();
    let info = z.backing_info(t).unwrap().unwrap();
    assert_eq!(info.pages, 1000);
    assert!(info.direct, "O_DIRECT on a real filesystem");
    // Incompressible: not taken by the pool, written to slot 7.
    assert_eq!(z.store(t, 7, &noise(1)).unwrap(), StoreOutcome::Swapped);
    let mut out = vec![0u8; PAGE];
    assert_eq!(z.load_into(t, 7, &mut out).unwrap(), LoadSource::Backing);
    assert_eq!(out, noise(1));
    // Disabled: everything goes to the file.
    z.set_enabled(false);
    assert_eq!(
        z.store(t, 8, &stamped(t, 8, 0)).unwrap(),
        StoreOutcome::Swapped
    );
    z.set_enabled(true);
    // A pool store over a slot on disk supersedes it.
    assert_eq!(
        z.store(t, 7, &stamped(t, 7, 1)).unwrap(),
        StoreOutcome::Stored
    );
    assert_eq!(z.load(t, 7).unwrap(), stamped(t, 7, 1));
    let s = z.stats();
    assert_eq!((s.pswpout, s.pswpin, s.duplicate_entry), (2, 1, 1));
    assert_eq!(z.backing_info(t).unwrap().unwrap().used_slots, 1);
    // The file's bytes at the slot are the page.
    let mut raw = vec![0u8; PAGE];
    std::fs::File::open(d.join("swap"))
        .unwrap()
        .read_exact_at(&mut raw, 8 * PAGE as u64)
        .unwrap();
    assert_eq!(raw, stamped(t, 8, 0));
    assert!(z.invalidate(t, 8).unwrap());
    assert_eq!(
        z.load(t, 8).unwrap_err().kind(),
        ErrorKind::NotFound {
            swap_type: t,
            offset: 8
        }
    );
    // Freed slots give their blocks back, in batches.
    z.set_enabled(false);
    for o in 100..300u64 {
        assert_eq!(z.store(t, o, &noise(o)).unwrap(), StoreOutcome::Swapped);
    }
    let blocks = std::fs::metadata(d.join("swap")).unwrap().blocks();
    for o in 100..300u64 {
        assert!(z.invalidate(t, o).unwrap());
    }
    let after = std::fs::metadata(d.join("swap")).unwrap().blocks();
    assert!(after * 2 < blocks, "{after} blocks left of {blocks}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_full_pool_writes_back_its_oldest_entries() {
    let d = dir("writeback");
    let z = cache(512 << 10);
    let t = z
        .swapon_file(&d.join("swap"), 4000, &FileOptions::default())
        .unwrap();
    for o in 0..3000u64 {
        // Never refused: writeback makes room.
        assert_eq!(
            z.store(t, o, &stamped(t, o, 0)).unwrap(),
            StoreOutcome::Stored,
            "offset {o}"
        );
    }
    let s = z.stats();
    assert!(s.written_back_pages > 1000, "{s:?}");
    assert_eq!(s.zswpwb, s.written_back_pages);
    assert!(s.pool_limit_hit > 0);
    assert_eq!(s.reject_reclaim_fail, 0);
    assert!(s.pool_total_size <= 512 << 10);
    assert_eq!(
        z.backing_info(t).unwrap().unwrap().used_slots,
        s.written_back_pages
    );
    // Oldest first: the first pages stored are on disk, the last in the pool.
    let mut out = vec![0u8; PAGE];
    assert_eq!(z.load_into(t, 0, &mut out).unwrap(), LoadSource::Backing);
    assert_eq!(z.load_into(t, 2999, &mut out).unwrap(), LoadSource::Pool);
    for o in 0..3000u64 {
        assert_eq!(z.load(t, o).unwrap(), stamped(t, o, 0), "offset {o}");
    }
    // On demand too.
    let before = z.stats().written_back_pages;
    assert_eq!(z.writeback(10).unwrap(), 10);
    assert_eq!(z.stats().written_back_pages, before + 10);
    z.check_invariants().unwrap();
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn without_a_file_a_full_pool_rejects() {
    let z = cache(256 << 10);
    let t = z.swapon(4000).unwrap();
    let outcomes: Vec<_> = (0..2000u64)
        .map(|o| z.store(t, o, &stamped(t, o, 0)).unwrap())
        .collect();
    assert!(outcomes.contains(&StoreOutcome::Rejected(zswap_rs::Reject::ReclaimFail)));
    assert_eq!(z.stats().written_back_pages, 0);
    assert_eq!(z.writeback(10).unwrap(), 0);
}

#[test]
fn a_page_that_fails_its_checksum_is_never_returned() {
    let d = dir("crc");
    let z = cache(64 << 20);
    let path = d.join("swap");
    let t = z.swapon_file(&path, 16, &FileOptions::default()).unwrap();
    assert_eq!(z.store(t, 3, &noise(3)).unwrap(), StoreOutcome::Swapped);
    // Someone scribbles on the swap file behind the cache's back.
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(b"scribble", 3 * PAGE as u64 + 100).unwrap();
    f.sync_all().unwrap();
    let mut out = vec![0xffu8; PAGE];
    let err = z.load_into(t, 3, &mut out).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(
        out.iter().all(|&b| b == 0),
        "no wrong bytes left in the buffer"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn files_are_guarded() {
    let d = dir("guard");
    let z = cache(64 << 20);
    let path = d.join("swap");
    z.swapon_file(&path, 16, &FileOptions::default()).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert!(meta.blocks() == 0, "sparse until written");
    let again = z
        .swapon_file(&path, 16, &FileOptions::default())
        .unwrap_err();
    assert_eq!(again.kind(), ErrorKind::Backing);
    assert_eq!(again.raw_os_error(), Some(libc::EBUSY));
    assert!(again.to_string().contains("in use"), "{again}");
    std::os::unix::fs::symlink(&path, d.join("link")).unwrap();
    let link = z
        .swapon_file(&d.join("link"), 16, &FileOptions::default())
        .unwrap_err();
    assert_eq!(link.kind(), ErrorKind::Backing);
    assert_eq!(link.raw_os_error(), Some(libc::ELOOP));
    let missing = z
        .swapon_file(&d.join("no/such/dir/swap"), 16, &FileOptions::default())
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::Backing);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn the_shrinker_writes_back_entries_left_unused() {
    let d = dir("shrinker");
    let z = Arc::new(cache(64 << 20));
    let t = z
        .swapon_file(&d.join("swap"), 100, &FileOptions::default())
        .unwrap();
    for o in 0..50u64 {
        z.store(t, o, &stamped(t, o, 0)).unwrap();
    }
    z.start_shrinker(Duration::from_millis(40)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while z.stats().written_back_pages < 50 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(z.stats().written_back_pages, 50);
    for o in 0..50u64 {
        assert_eq!(z.load(t, o).unwrap(), stamped(t, o, 0));
    }
    z.stop_shrinker();
    z.check_invariants().unwrap();
    std::fs::remove_dir_all(&d).unwrap();
}

/// The writeback races: owners store new versions of their offsets and
/// check each at once, readers load any offset and check the stamp and that
/// versions never go back, a writeback thread keeps emptying the pool, and
/// the pool is so small that every store writes back too.
#[test]
fn writeback_races_lose_nothing_and_resurrect_nothing() {
    for exclusive in [false, true] {
        let d = dir(if exclusive { "race-excl" } else { "race" });
        let z = Arc::new(
            Zswap::new(Config {
                max_pool_bytes: Some(96 << 10),
                exclusive_loads: exclusive,
                ..Config::default()
            })
            .unwrap(),
        );
        let t = z
            .swapon_file(&d.join("swap"), 64, &FileOptions::default())
            .unwrap();
        const OWNERS: u64 = 4;
        const PER_OWNER: u64 = 6;
        const ROUNDS: u64 = 150;
        // Latest version stored per offset (u64::MAX: invalidated).
        let latest: Arc<Vec<AtomicU64>> =
            Arc::new((0..64).map(|_| AtomicU64::new(u64::MAX)).collect());
        let done = Arc::new(AtomicBool::new(false));
        std::thread::scope(|s| {
            let mut owners = Vec::new();
            for w in 0..OWNERS {
                let (z, latest) = (z.clone(), latest.clone());
                owners.push(s.spawn(move || {
                    let offsets: Vec<u64> = (0..PER_OWNER).map(|i| w * PER_OWNER + i).collect();
                    for v in 0..ROUNDS {
                        for &o in &offsets {
                            let page = if v % 7 == 3 {
                                noise(o * 1000 + v)
                            } else {
                                stamped(t, o, v)
                            };
                            let out = z.store(t, o, &page).unwrap();
                            assert!(
                                matches!(out, StoreOutcome::Stored | StoreOutcome::Swapped),
                                "{out:?}"
                            );
                            latest[o as usize].store(v, Ordering::SeqCst);
                            if !exclusive || v % 2 == 0 {
                                // Only the owner writes this offset: it must read its own page.
                                assert!(z.load(t, o).unwrap() == page, "offset {o} version {v}");
                            }
                            if v % 11 == 5 {
                                z.invalidate(t, o).unwrap();
                                latest[o as usize].store(u64::MAX, Ordering::SeqCst);
                                assert_eq!(
                                    z.load(t, o).unwrap_err().kind(),
                                    ErrorKind::NotFound {
                                        swap_type: t,
                                        offset: o
                                    }
                                );
                            }
                        }
                    }
                }));
            }
            if !exclusive {
                for r in 0..2u64 {
                    let (z, done) = (z.clone(), done.clone());
                    s.spawn(move || {
                        let mut seen: HashMap<u64, u64> = HashMap::new();
                        let mut i = r;
                        while !done.load(Ordering::SeqCst) {
                            let o = i % (OWNERS * PER_OWNER);
                            i += 7;
                            match z.load(t, o) {
                                Ok(page) => {
                                    if let Some((pt, po, pv)) = read_stamp(&page) {
                                        assert_eq!((pt, po), (t, o), "page of another slot served");
                                        // Versions only grow: a later load never
                                        // sees an older page than an earlier one.
                                        let last = seen.entry(o).or_insert(pv);
                                        assert!(
                                            pv >= *last,
                                            "offset {o}: version {pv} after {last}"
                                        );
                                        *last = pv;
                                    }
                                }
                                Err(e) => assert_eq!(
                                    e.kind(),
                                    ErrorKind::NotFound {
                                        swap_type: t,
                                        offset: o
                                    },
                                    "{e}"
                                ),
                            }
                        }
                    });
                }
            }
            {
                let (z, done) = (z.clone(), done.clone());
                s.spawn(move || {
                    while !done.load(Ordering::SeqCst) {
                        z.writeback(4).unwrap();
                    }
                });
            }
            // Owners finish (or fail); then stop the others either way.
            let results: Vec<_> = owners.into_iter().map(|h| h.join()).collect();
            done.store(true, Ordering::SeqCst);
            for r in results {
                if let Err(panic) = r {
                    std::panic::resume_unwind(panic);
                }
            }
        });
        z.check_invariants().unwrap();
        // Every offset holds exactly its latest page, or nothing if invalidated.
        for o in 0..OWNERS * PER_OWNER {
            let v = latest[o as usize].load(Ordering::SeqCst);
            match z.load(t, o) {
                Ok(page) if v != u64::MAX => {
                    let want = if v % 7 == 3 {
                        noise(o * 1000 + v)
                    } else {
                        stamped(t, o, v)
                    };
                    assert!(page == want, "offset {o} does not hold version {v}");
                }
                Ok(_) => panic!("offset {o} was invalidated and came back"),
                Err(e) if v == u64::MAX || exclusive => {
                    assert_eq!(
                        e.kind(),
                        ErrorKind::NotFound {
                            swap_type: t,
                            offset: o
                        }
                    )
                }
                Err(e) => panic!("offset {o} lost version {v}: {e}"),
            }
        }
        // No slot or pool object leaks.
        for o in 0..64 {
            z.invalidate(t, o).unwrap();
        }
        let s = z.stats();
        assert_eq!((s.stored_pages, s.pool_total_size), (0, 0), "{s:?}");
        assert_eq!(z.backing_info(t).unwrap().unwrap().used_slots, 0);
        assert!(
            s.written_back_pages > 0,
            "the race must involve writeback: {s:?}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
