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
    // Under valgrind (everything 50x slower) only the code paths count.
    let n = if under_valgrind() { 3000 } else { 24_000 };
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
                let (rounds, objects) = if under_valgrind() {
                    (2, 600)
                } else {
                    (6, 3000)
                };
                for round in 0..rounds {
                    let seed = t * 1_000_000 + round * 10_000;
                    let live: Vec<(Handle, usize, usize)> = (0..objects)
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

#[test]
fn a_child_forked_beside_busy_threads_can_allocate() {
    // A thread making and freeing zspages all the time holds the heap's lock
    // at some fork: the child must still get memory for a pool of its own.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let busy = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let pool = Pool::new(PAGE).unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Whole-page objects: a zspage made and freed per object.
                let hs: Vec<Handle> = (0..64)
                    .map(|i| pool.alloc_write(&object(PAGE, i)).unwrap())
                    .collect();
                hs.into_iter().for_each(|h| pool.free(h));
            }
        })
    };
    // Each child under valgrind costs a second: fewer there, where what
    // counts is memcheck's view of the heap's code, not the odds of a race.
    let rounds = if under_valgrind() { 5 } else { 200 };
    for round in 0..rounds {
        // SAFETY: the child only allocates from a new pool and leaves with
        // _exit, touching nothing another thread may have held but the
        // heap, whose fork handlers are what this tests (and malloc, which
        // glibc's own fork handlers cover).
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let pool = Pool::new(PAGE).unwrap();
            let h = pool.alloc_write(&object(PAGE, 1)).unwrap();
            let mut out = vec![0u8; PAGE];
            pool.read(h, &mut out);
            // SAFETY: leaving the child at once, as after any fork.
            unsafe { libc::_exit(if out == object(PAGE, 1) { 0 } else { 3 }) };
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let status = loop {
            let mut status = 0;
            // SAFETY: waiting for our own child, without blocking.
            let got = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if got == pid {
                break Some(status);
            }
            if std::time::Instant::now() > deadline {
                // SAFETY: killing our own hung child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                break None;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        };
        assert_eq!(status, Some(0), "child {round} hung or failed (None: hung)");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    busy.join().unwrap();
}
