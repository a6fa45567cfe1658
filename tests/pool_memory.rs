//! The pool's memory against the process's: freed zspages go back to the
//! OS (`src/pool/heap.rs`), and runs reused from the heap's lists hold
//! exactly what was written to them. Its own test binary, so that no other
//! test's memory moves the resident figure; run under valgrind too
//! (`scripts/test.sh`), for the heap's unsafe code.

use std::sync::Arc;

use zswap_rs::pool::{Handle, Pool};

const PAGE: usize = 4096;

/// Resident bytes of this process (`/proc/self/statm`, field 2).
fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split(' ').nth(1).unwrap().parse().unwrap();
    pages * PAGE
}

/// Under valgrind, whose own allocator and shadow memory make the resident
/// figure mean nothing (its preload library is how a client can tell).
fn under_valgrind() -> bool {
    std::env::var("LD_PRELOAD").is_ok_and(|p| p.contains("vgpreload"))
}

fn object(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + seed * 7 + len) as u8).collect()
}

#[test]
fn freed_zspages_leave_the_processs_resident_memory() {
    let pool = Pool::new(PAGE).unwrap();
    let n = 24_000;
    // Objects of the sizes compressed pages have: 1.5 to 2.5 KiB.
    let mut handles: Vec<(Handle, usize)> = (0..n)
        .map(|i| {
            let len = 1536 + (i * 37) % 1024;
            (pool.alloc_write(&object(len, i)).unwrap(), len)
        })
        .collect();
    let full = pool.total_bytes() as usize;
    let before = resident_bytes();
    // Free four objects in five, spread over every zspage, then compact so
    // that the zspages empty and are freed.
    let mut kept = Vec::new();
    for (i, (h, len)) in handles.drain(..).enumerate() {
        if i % 5 == 0 {
            kept.push((h, len, i));
        } else {
            pool.free(h);
        }
    }
    let mut moved = 0;
    pool.compact(&mut |visit| {
        for (h, _, _) in kept.iter_mut() {
            visit(h);
        }
        moved += 1;
    });
    let after_total = pool.total_bytes() as usize;
    let after = resident_bytes();
    assert!(
        after_total < full / 2,
        "the pool should have shrunk: {full} -> {after_total} bytes"
    );
    if !under_valgrind() {
        let freed = full - after_total;
        let given_back = before.saturating_sub(after);
        // All of it but the heap's kept runs (2 MiB) and some slack.
        assert!(
            given_back + (3 << 20) >= freed,
            "the pool freed {freed} bytes of zspages, the process gave back {given_back}"
        );
    }
    for (h, len, i) in &kept {
        let mut out = vec![0u8; *len];
        pool.read(*h, &mut out);
        assert_eq!(out, object(*len, *i), "object {i} after compaction");
    }
}

#[test]
fn runs_reused_by_threads_hold_what_was_written() {
    // Threads allocating and freeing in turn make the heap hand runs back
    // and forth: kept ones (zeroed), emptied ones (faulted in again) and
    // new ones; every object must read back as written.
    let pool = Arc::new(Pool::new(PAGE).unwrap());
    let workers: Vec<_> = (0..2)
        .map(|t| {
            let pool = Arc::clone(&pool);
            std::thread::spawn(move || {
                for round in 0..6 {
                    let seed = t * 1_000_000 + round * 10_000;
                    let live: Vec<(Handle, usize, usize)> = (0..3000)
                        .map(|i| {
                            let len = 64 + (i * 97 + round * 13) % 4000;
                            let h = pool.alloc_write(&object(len, seed + i)).unwrap();
                            (h, len, seed + i)
                        })
                        .collect();
                    for (h, len, s) in live {
                        let mut out = vec![0u8; len];
                        pool.read(h, &mut out);
                        assert_eq!(out, object(len, s), "object {s}");
                        pool.free(h);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(pool.objects(), 0);
    assert_eq!(pool.total_bytes(), 0);
}
