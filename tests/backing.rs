//! Swap areas on real files: swap-out of pages the pool does not take,
//! writeback of the LRU tail when the pool is full, the background shrinker,
//! checksums, and the writeback races: threads hammering the same few
//! offsets under a tiny pool, every page stamped with (type, offset,
//! version) and checked; and what a swap file may be: refused content, the
//! header, the lock, the page check.

mod common;

use std::collections::HashMap;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use zswap_rs::backing::{mkswap, BackingStore, SwapFile, MAGIC, VERSION};
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
    let mut page = vec![0; PAGE];
    common::Rng::new(seed).fill(&mut page);
    page
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
        .read_exact_at(&mut raw, (8 + 1) * PAGE as u64) // slot 8: after the header page
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
    let (blocks, after) = blocks_before_and_after_freeing(&z, t, &d.join("swap"));
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
    f.write_all_at(b"scribble", (3 + 1) * PAGE as u64 + 100)
        .unwrap();
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
    assert!(
        meta.blocks() * 512 <= PAGE as u64,
        "only the header is written until a slot is"
    );
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
                            std::thread::yield_now();
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
                        // Under valgrind, which runs one thread at a time, a
                        // loop that never yields starved the owners (CI,
                        // 2026-12-03: this thread 66 CPU-minutes, the owners
                        // 6 s each, over 80 minutes).
                        std::thread::yield_now();
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

// --- what a swap file may be (SPEC "What it is"; issue 12) --------------------

fn refused(e: &zswap_rs::Error, errno: i32) {
    assert_eq!(e.kind(), ErrorKind::Backing, "{e}");
    assert_eq!(e.raw_os_error(), Some(errno), "{e}");
}

/// The bytes and the length of a file, to show nothing changed.
fn snapshot(path: &std::path::Path) -> (Vec<u8>, u64) {
    let bytes = std::fs::read(path).unwrap();
    let len = bytes.len() as u64;
    (bytes, len)
}

#[test]
fn a_users_file_is_refused_and_not_one_byte_changes() {
    let d = dir("userfile");
    let path = d.join("thesis.txt");
    std::fs::write(&path, "Chapter 1. ".repeat(1000)).unwrap();
    let before = snapshot(&path);
    let z = cache(64 << 20);
    let e = z
        .swapon_file(&path, 16, &FileOptions::default())
        .unwrap_err();
    refused(&e, libc::EINVAL);
    assert!(e.to_string().contains("not a zswap-rs swap file"), "{e}");
    assert_eq!(snapshot(&path), before);
    // mkswap refuses it too, unless forced.
    let e = mkswap(&path, 16, PAGE, false).unwrap_err();
    refused(&e, libc::EINVAL);
    assert_eq!(snapshot(&path), before);
    mkswap(&path, 16, PAGE, true).unwrap();
    assert_eq!(&std::fs::read(&path).unwrap()[..8], MAGIC);
    z.swapon_file(&path, 16, &FileOptions::default()).unwrap();
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_new_path_or_an_empty_file_gets_a_header_before_slot_0() {
    let d = dir("fresh");
    let z = cache(64 << 20);
    let empty = d.join("empty");
    std::fs::write(&empty, b"").unwrap();
    for path in [d.join("new"), empty] {
        let t = z.swapon_file(&path, 16, &FileOptions::default()).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), 17 * PAGE as u64, "a header page and 16 slots");
        let raw = std::fs::read(&path).unwrap();
        assert_eq!(&raw[..8], MAGIC);
        assert_eq!(&raw[8..12], &VERSION.to_le_bytes());
        assert_eq!(&raw[12..16], &(PAGE as u32).to_le_bytes());
        assert_eq!(&raw[16..24], &16u64.to_le_bytes());
        // Slot 15, the last, is at (15 + 1) * page_size.
        assert_eq!(z.store(t, 15, &noise(15)).unwrap(), StoreOutcome::Swapped);
        let raw = std::fs::read(&path).unwrap();
        assert_eq!(&raw[16 * PAGE..], &noise(15)[..]);
    }
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_mkswap_file_is_reused_after_swapoff_with_a_new_area_id() {
    let d = dir("reuse");
    let path = d.join("swap");
    mkswap(&path, 32, PAGE, false).unwrap();
    let id = |p: &std::path::Path| std::fs::read(p).unwrap()[24..32].to_vec();
    let made = id(&path);
    let z = cache(64 << 20);
    let t = z.swapon_file(&path, 32, &FileOptions::default()).unwrap();
    let first = id(&path);
    assert_ne!(first, made, "swapon writes a new area id");
    assert_eq!(z.store(t, 3, &noise(3)).unwrap(), StoreOutcome::Swapped);
    z.swapoff(t).unwrap();
    // Reused, by another cache (the lock went with the area).
    let z2 = cache(64 << 20);
    let t2 = z2.swapon_file(&path, 32, &FileOptions::default()).unwrap();
    assert_ne!(id(&path), first);
    assert!(matches!(
        z2.load(t2, 3).unwrap_err().kind(),
        ErrorKind::NotFound { .. }
    ));
    // The old area's blocks were given back.
    assert!(std::fs::metadata(&path).unwrap().blocks() * 512 <= 2 * PAGE as u64);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_swap_file_of_another_page_size_is_refused() {
    let d = dir("pagesize");
    let path = d.join("swap");
    mkswap(&path, 8, 8192, false).unwrap();
    let before = snapshot(&path);
    let z = cache(64 << 20);
    let e = z
        .swapon_file(&path, 8, &FileOptions::default())
        .unwrap_err();
    refused(&e, libc::EINVAL);
    assert!(e.to_string().contains("page size 8192"), "{e}");
    assert_eq!(snapshot(&path), before);
    // mkswap makes it a 4 KiB one again, without force: it is ours.
    mkswap(&path, 8, PAGE, false).unwrap();
    z.swapon_file(&path, 8, &FileOptions::default()).unwrap();
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn two_caches_never_share_a_file() {
    let d = dir("twocaches");
    let path = d.join("swap");
    let a = cache(64 << 20);
    let ta = a.swapon_file(&path, 16, &FileOptions::default()).unwrap();
    assert_eq!(a.store(ta, 3, &noise(3)).unwrap(), StoreOutcome::Swapped);
    let before = snapshot(&path);
    let b = cache(64 << 20);
    let e = b
        .swapon_file(&path, 16, &FileOptions::default())
        .unwrap_err();
    refused(&e, libc::EBUSY);
    let e = mkswap(&path, 16, PAGE, true).unwrap_err();
    refused(&e, libc::EBUSY);
    assert_eq!(snapshot(&path), before);
    assert_eq!(a.load(ta, 3).unwrap(), noise(3));
    a.close().unwrap();
    b.swapon_file(&path, 16, &FileOptions::default()).unwrap();
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn kernel_interfaces_and_character_devices_are_refused() {
    let z = cache(64 << 20);
    let sys = [
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "/sys/kernel/profiling",
    ]
    .into_iter()
    .map(std::path::Path::new)
    .find(|p| p.exists());
    let paths = ["/proc/self/mem", "/proc/self/status", "/dev/null"]
        .into_iter()
        .map(std::path::Path::new)
        .chain(sys);
    for path in paths {
        let e = z
            .swapon_file(path, 16, &FileOptions::default())
            .unwrap_err();
        refused(&e, libc::EINVAL);
        let e = mkswap(path, 16, PAGE, true).unwrap_err();
        refused(&e, libc::EINVAL);
    }
}

#[test]
fn a_page_is_only_read_back_by_its_area_at_its_slot() {
    let d = dir("check");
    let path = d.join("swap");
    let f = SwapFile::open(&path, 8, PAGE, &FileOptions::default()).unwrap();
    let page = noise(7);
    let check = f.write(3, &page).unwrap();
    let raw = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    // The same bytes at another slot fail: the check covers the slot.
    raw.write_all_at(&page, 6 * PAGE as u64).unwrap();
    let mut out = vec![0u8; PAGE];
    let e = f.read(5, check, &mut out).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    f.read(3, check, &mut out).unwrap();
    assert_eq!(out, page);
    // A later area on the same file does not take the earlier one's page,
    // byte for byte the same: the check covers the area id.
    drop(f);
    let g = SwapFile::open(&path, 8, PAGE, &FileOptions::default()).unwrap();
    raw.write_all_at(&page, 4 * PAGE as u64).unwrap();
    let e = g.read(3, check, &mut out).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    assert!(out.iter().all(|&b| b == 0));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_page_moved_to_another_slot_is_a_corrupt_page() {
    let d = dir("moved");
    let path = d.join("swap");
    let z = cache(64 << 20);
    let t = z.swapon_file(&path, 8, &FileOptions::default()).unwrap();
    assert_eq!(z.store(t, 3, &noise(3)).unwrap(), StoreOutcome::Swapped);
    assert_eq!(z.store(t, 5, &noise(5)).unwrap(), StoreOutcome::Swapped);
    let raw = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let mut slot3 = vec![0u8; PAGE];
    raw.read_exact_at(&mut slot3, 4 * PAGE as u64).unwrap();
    raw.write_all_at(&slot3, 6 * PAGE as u64).unwrap();
    raw.sync_all().unwrap();
    assert_eq!(z.load(t, 5).unwrap_err().kind(), ErrorKind::Corrupt);
    assert_eq!(z.load(t, 3).unwrap(), noise(3));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn pacing_below_the_minimum_is_a_config_error() {
    let d = dir("pacing");
    let z = cache(64 << 20);
    for mbps in [1e-300, 0.0, -1.0, f64::NAN, f64::INFINITY] {
        let options = FileOptions {
            disk_mbps: Some(mbps),
            ..FileOptions::default()
        };
        let e = z.swapon_file(&d.join("swap"), 16, &options).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{mbps}: {e}");
    }
    assert!(!d.join("swap").exists(), "nothing was made");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_swapon_right_after_swapoff_finds_the_file_free() {
    // Reads and writebacks in flight hold the store while they finish; a
    // swapoff waits for them, and must not return while one of them still
    // holds the file open (its lock would refuse the next swapon, EBUSY).
    let d = dir("reswapon");
    let path = d.join("swap");
    let z = Arc::new(cache(256 << 10));
    for round in 0..200u64 {
        let t = z.swapon_file(&path, 256, &FileOptions::default()).unwrap();
        for o in 0..8 {
            assert_eq!(z.store(t, o, &noise(o)).unwrap(), StoreOutcome::Swapped);
        }
        let reader = {
            let z = Arc::clone(&z);
            std::thread::spawn(move || {
                let mut out = vec![0u8; PAGE];
                let mut o = 0;
                // Until the area goes: then every load fails.
                while z.load_into(t, o % 8, &mut out).is_ok() {
                    o += 1;
                }
            })
        };
        std::thread::sleep(std::time::Duration::from_micros(50 * (round % 7)));
        z.swapoff(t).unwrap();
        reader.join().unwrap();
    }
}

/// Swap out 200 pages of noise (the pool disabled), then free their slots:
/// the file's blocks before and after the freeing.
fn blocks_before_and_after_freeing(z: &Zswap, t: u32, path: &std::path::Path) -> (u64, u64) {
    z.set_enabled(false);
    for o in 100..300u64 {
        assert_eq!(z.store(t, o, &noise(o)).unwrap(), StoreOutcome::Swapped);
    }
    let blocks = std::fs::metadata(path).unwrap().blocks();
    for o in 100..300u64 {
        assert!(z.invalidate(t, o).unwrap());
    }
    (blocks, std::fs::metadata(path).unwrap().blocks())
}

#[test]
fn without_discard_freed_slots_keep_their_blocks() {
    let d = dir("nodiscard");
    let z = cache(64 << 20);
    let options = FileOptions {
        discard: false,
        ..FileOptions::default()
    };
    let t = z.swapon_file(&d.join("swap"), 1000, &options).unwrap();
    assert!(!z.backing_info(t).unwrap().unwrap().discard);
    // Not one hole: the blocks wait for the slots' next pages.
    let (blocks, after) = blocks_before_and_after_freeing(&z, t, &d.join("swap"));
    assert_eq!(after, blocks);
    for o in 100..300u64 {
        assert_eq!(z.store(t, o, &noise(o + 1)).unwrap(), StoreOutcome::Swapped);
        assert_eq!(z.load(t, o).unwrap(), noise(o + 1));
    }
    std::fs::remove_dir_all(&d).unwrap();
}
