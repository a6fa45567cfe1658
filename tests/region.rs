//! Regions: memory beyond its budget through userfaultfd. Every read must
//! return the last write, under eviction, from several threads, through
//! syscalls, across a budget change and a fork; bad arguments and a user
//! without userfaultfd get typed errors.
//!
//! CI runs as root; the unprivileged case re-runs this binary as `nobody`.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use zswap_rs::{Config, ErrorKind, FaultMode, Region, RegionOptions, Zswap};

const PAGE: usize = 4096;

/// A page like program data (text with numbers), naming its page and
/// version throughout, so that a page served from the wrong slot or an old
/// version is caught anywhere in it.
fn stamped(page: usize, version: u64) -> Vec<u8> {
    let mut p = Vec::with_capacity(PAGE + 64);
    let mut i = 0u64;
    while p.len() < PAGE {
        let line = format!(
            "page {page:>6} version {version:>4} item {i:>4} = {}\n",
            (i * 7919) % 1000
        );
        p.extend_from_slice(line.as_bytes());
        i += 1;
    }
    p.truncate(PAGE);
    p
}

fn config() -> Config {
    Config {
        max_pool_bytes: Some(64 << 20),
        ..Config::default()
    }
}

fn region(pages: usize, budget_pages: usize) -> Region {
    Region::new(pages * PAGE, budget_pages * PAGE, None, config()).expect("region")
}

/// Region memory is shared with the fault handler and other threads, so
/// the tests copy in and out through raw pointers rather than hold slices.
fn page_ptr(r: &Region, i: usize) -> *mut u8 {
    assert!((i + 1) * PAGE <= r.len());
    // SAFETY: inside the region's mapping.
    unsafe { r.as_ptr().add(i * PAGE) }
}

fn read_page(r: &Region, i: usize) -> Vec<u8> {
    let mut out = vec![0u8; PAGE];
    // SAFETY: one page inside the region, which outlives the call.
    unsafe { std::ptr::copy_nonoverlapping(page_ptr(r, i), out.as_mut_ptr(), PAGE) };
    out
}

fn write_page(r: &Region, i: usize, data: &[u8]) {
    assert_eq!(data.len(), PAGE);
    // SAFETY: as in `read_page`.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), page_ptr(r, i), PAGE) };
}

fn check_page(r: &Region, i: usize, want: &[u8]) {
    assert!(
        read_page(r, i) == want,
        "page {i} differs from its last write"
    );
}

#[test]
fn untouched_pages_read_as_zeros_within_budget() {
    let r = region(256, 16);
    for i in 0..256 {
        assert!(read_page(&r, i).iter().all(|&b| b == 0), "page {i}");
    }
    let s = r.stats();
    assert!(s.zero_fills >= 256, "{s:?}");
    assert!(r.resident_bytes() <= r.budget(), "{s:?}");
    // Zero pages cost nothing in the pool.
    assert_eq!(r.zswap().stats().stored_pages, 0);
}

#[test]
fn data_survives_pressure_and_clean_pages_are_not_compressed_again() {
    let n = 1024;
    let r = region(n, 64);
    for i in 0..n {
        write_page(&r, i, &stamped(i, 1));
    }
    assert!(r.resident_bytes() <= r.budget());
    let after_writes = r.stats();
    assert!(
        after_writes.evictions >= (n - 64) as u64,
        "{after_writes:?}"
    );
    // Read in a scrambled order, twice: the second pass evicts pages that
    // were only read, which must not be stored again.
    for pass in 0..2 {
        for k in 0..n {
            let i = (k * 389 + pass * 17) % n;
            check_page(&r, i, &stamped(i, 1));
        }
    }
    let s = r.stats();
    assert!(s.clean_evictions > (n / 2) as u64, "{s:?}");
    let zs = r.zswap().stats();
    // Each page was compressed once, when first evicted after its write;
    // every later eviction of it found its copy current.
    assert_eq!(zs.zswpout, n as u64, "clean pages stored again: {zs:?}");
    // Rewrite every other page and check all.
    for i in (0..n).step_by(2) {
        write_page(&r, i, &stamped(i, 2));
    }
    for i in 0..n {
        check_page(&r, i, &stamped(i, if i % 2 == 0 { 2 } else { 1 }));
    }
    assert!(r.resident_bytes() <= r.budget());
}

#[test]
fn sequential_scans_read_ahead() {
    let n = 2048;
    let r = region(n, 256);
    for i in 0..n {
        write_page(&r, i, &stamped(i, 1));
    }
    let before = r.stats();
    for i in 0..n {
        check_page(&r, i, &stamped(i, 1));
    }
    let s = r.stats();
    let faults = s.faults - before.faults;
    assert!(s.prefetched > before.prefetched, "{s:?}");
    assert!(
        faults < (n / 4) as u64,
        "a scan took {faults} faults for {n} pages"
    );
}

#[test]
fn threads_writing_counters_lose_nothing_under_eviction() {
    counters_under_eviction(region(256, 24));
}

#[test]
fn pinned_handlers_on_every_cpu_lose_nothing_either() {
    counters_with(&RegionOptions {
        pinned_handlers: Some(4),
        spin: Some(std::time::Duration::ZERO),
        ..RegionOptions::default()
    });
}

#[test]
fn handlers_handing_wakes_to_waker_threads_lose_nothing_either() {
    counters_with(&RegionOptions {
        pinned_handlers: Some(2),
        wake_by_waker: true,
        ..RegionOptions::default()
    });
}

#[test]
fn handlers_waking_threads_directly_lose_nothing_either() {
    counters_with(&RegionOptions {
        pinned_handlers: Some(2),
        direct_wake: true,
        ..RegionOptions::default()
    });
}

#[test]
fn a_handler_wakes_threads_itself_when_its_waker_gets_no_cpu() {
    // A busy thread pinned to every CPU leaves the idle-class wakers
    // (almost) no CPU: the handlers must wake the faulting threads
    // themselves instead of leaving them asleep.
    handlers_beside_busy_threads(RegionOptions {
        wake_by_waker: true,
        ..RegionOptions::default()
    });
}

#[test]
fn a_guard_takes_a_handler_out_of_the_idle_class_when_it_gets_no_cpu() {
    // Where the process may leave the idle class (root, as in CI), the
    // handlers wake threads from it themselves; beside a busy thread on
    // every CPU one would stay there, its next faults unserved, unless its
    // guard takes it out. Elsewhere this is the waker's case again.
    handlers_beside_busy_threads(RegionOptions::default());
}

fn handlers_beside_busy_threads(options: RegionOptions) {
    let cpus = allowed_cpus();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hogs: Vec<_> = cpus
        .iter()
        .map(|&cpu| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                pin_to(cpu);
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let z = Arc::new(Zswap::new(config()).unwrap());
    let options = RegionOptions {
        pinned_handlers: Some(cpus.len()),
        ..options
    };
    let n = 256;
    let r = Region::with_options(z, n * PAGE, 16 * PAGE, &options).unwrap();
    let started = std::time::Instant::now();
    for round in 0..3u64 {
        for i in (0..n).step_by(5) {
            if round > 0 {
                check_page(&r, i, &stamped(i, round - 1));
            }
            write_page(&r, i, &stamped(i, round));
        }
    }
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for h in hogs {
        h.join().unwrap();
    }
    let s = r.stats();
    assert!(s.waker_timeouts > 0, "{s:?} in {took:?}");
    assert_eq!(s.fault_errors, 0, "{s:?}");
}

/// Pin the calling thread to `cpu`.
fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET writes within it; pid 0
    // is this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set),
            0
        );
    }
}

/// The CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: as in `pin_to`; CPU_ISSET reads within the set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(
            libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set),
            0
        );
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

#[test]
fn the_polling_handler_follows_the_faulting_thread_to_its_cpu() {
    let cpus = allowed_cpus();
    assert!(
        cpus.len() >= 2,
        "routing needs two CPUs; this machine lets us use {cpus:?}"
    );
    let z = Arc::new(Zswap::new(config()).unwrap());
    let options = RegionOptions {
        pinned_handlers: Some(2),
        ..RegionOptions::default()
    };
    let n = 512;
    let r = Arc::new(Region::with_options(z, n * PAGE, 32 * PAGE, &options).unwrap());
    let mut switches = Vec::new();
    // Handler 0 (on the first CPU) polls first; a thread on the second CPU
    // should get handler 1 polling, and one back on the first, handler 0.
    for (round, &cpu) in [cpus[1], cpus[0], cpus[1]].iter().enumerate() {
        let r2 = Arc::clone(&r);
        std::thread::spawn(move || {
            pin_to(cpu);
            for i in (0..n).rev().step_by(3) {
                if round > 0 {
                    check_page(&r2, i, &stamped(i, round as u64 - 1));
                }
                write_page(&r2, i, &stamped(i, round as u64));
            }
        })
        .join()
        .unwrap();
        switches.push(r.stats().handler_switches);
    }
    // Each thread took about 170 faults: enough looks for a switch each.
    assert!(
        switches[0] >= 1 && switches[1] > switches[0] && switches[2] > switches[1],
        "handler switches after each round: {switches:?}"
    );
}

/// [`counters_under_eviction`] on a region of 256 pages, 24 resident,
/// made with `options` on a cache of its own.
fn counters_with(options: &RegionOptions) {
    let z = Arc::new(Zswap::new(config()).unwrap());
    counters_under_eviction(Region::with_options(z, 256 * PAGE, 24 * PAGE, options).unwrap());
}

fn counters_under_eviction(r: Region) {
    let n = r.len() / PAGE;
    let threads = 4;
    let rounds = 40u64;
    let r = Arc::new(r);
    let base = r.as_ptr() as usize;
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            std::thread::spawn(move || {
                for round in 0..rounds {
                    for k in 0..n {
                        // Each thread walks the pages in its own order.
                        let i = (k * (2 * t + 1) + round as usize) % n;
                        let at = base + i * PAGE + t * 8;
                        // SAFETY: an aligned u64 inside the region, which the
                        // test keeps alive until the threads are joined; the
                        // slot is this thread's only.
                        let c = unsafe { &*(at as *const AtomicU64) };
                        c.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    // Meanwhile, lower and raise the budget, forcing evictions of pages
    // being written.
    for k in 0..50 {
        r.set_budget(if k % 2 == 0 { 4 * PAGE } else { 24 * PAGE })
            .unwrap();
        std::thread::yield_now();
    }
    for w in workers {
        w.join().unwrap();
    }
    for i in 0..n {
        for t in 0..threads {
            // SAFETY: as above; the writers are done.
            let c = unsafe { &*((base + i * PAGE + t * 8) as *const AtomicU64) };
            assert_eq!(c.load(Ordering::Relaxed), rounds, "page {i} thread {t}");
        }
    }
    let s = r.stats();
    assert!(s.evictions > n as u64, "{s:?}");
    assert!(r.resident_bytes() <= r.budget() + threads * PAGE);
}

#[test]
fn syscalls_read_and_write_evicted_pages() {
    let n = 128;
    let r = region(n, 8);
    for i in 0..n {
        write_page(&r, i, &stamped(i, 1));
    }
    // write(2) from evicted pages: the kernel faults them in.
    let mut f = tempfile_in_var_tmp("syscalls");
    // SAFETY: the whole region, alive for the call.
    let all = unsafe { std::slice::from_raw_parts(r.as_ptr(), n * PAGE) };
    f.write_all(all).unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut back = vec![0u8; n * PAGE];
    f.read_exact(&mut back).unwrap();
    for i in 0..n {
        assert!(
            back[i * PAGE..(i + 1) * PAGE] == stamped(i, 1)[..],
            "write(2) of page {i}"
        );
    }
    // read(2) into evicted pages: new versions come from the file.
    let mut f2 = tempfile_in_var_tmp("syscalls2");
    for i in 0..n {
        f2.write_all(&stamped(i, 2)).unwrap();
    }
    f2.seek(SeekFrom::Start(0)).unwrap();
    // SAFETY: as above.
    let all = unsafe { std::slice::from_raw_parts_mut(r.as_ptr(), n * PAGE) };
    f2.read_exact(all).unwrap();
    for i in 0..n {
        check_page(&r, i, &stamped(i, 2));
    }
    assert!(r.stats().evictions > 0);
}

fn tempfile_in_var_tmp(name: &str) -> std::fs::File {
    let path = std::path::PathBuf::from("/var/tmp").join(format!(
        "zswap-rs-region-test-{}-{name}",
        std::process::id()
    ));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    f
}

#[test]
fn a_lowered_budget_evicts_at_once() {
    let n = 200;
    let r = region(n, 256);
    for i in 0..n {
        write_page(&r, i, &stamped(i, 1));
    }
    assert_eq!(r.resident_bytes(), n * PAGE);
    r.set_budget(10 * PAGE + 100).unwrap();
    assert_eq!(r.budget(), 10 * PAGE);
    assert!(r.resident_bytes() <= 10 * PAGE, "{:?}", r.stats());
    for i in 0..n {
        check_page(&r, i, &stamped(i, 1));
    }
    assert_eq!(
        r.set_budget(100).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
}

#[test]
fn bad_arguments_are_typed_errors() {
    let e = Region::new(0, 4 * PAGE, None, config()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.message().contains("size"), "{e}");
    for budget in [0, 1, PAGE - 1] {
        let e = Region::new(16 * PAGE, budget, None, config()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert!(e.message().contains("budget"), "{e}");
    }
    let e = Region::new(
        16 * PAGE,
        4 * PAGE,
        None,
        Config {
            compressor: "no-such".into(),
            ..config()
        },
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    // A size that is not a whole number of pages is fine: the mapping is
    // rounded up, the length is as asked.
    let r = Region::new(3 * PAGE + 5, PAGE, None, config()).unwrap();
    assert_eq!(r.len(), 3 * PAGE + 5);
    assert_eq!(r.as_ptr() as usize % PAGE, 0);
}

#[test]
fn a_child_process_has_no_mapping() {
    let r = region(64, 8);
    for i in 0..64 {
        write_page(&r, i, &stamped(i, 1));
    }
    let addr = r.as_ptr();
    // SAFETY: fork in a threaded process: the child calls only mincore and
    // _exit, both async-signal-safe.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let mut v = [0u8; 1];
        // SAFETY: mincore only reads the page tables; ENOMEM means unmapped.
        let rc = unsafe { libc::mincore(addr.cast(), PAGE, v.as_mut_ptr()) };
        let unmapped =
            rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOMEM);
        // SAFETY: leaving the child without running the parent's destructors.
        unsafe { libc::_exit(if unmapped { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child saw the region mapped"
    );
    for i in 0..64 {
        check_page(&r, i, &stamped(i, 1));
    }
}

#[test]
fn a_full_pool_writes_back_to_the_regions_file() {
    let z = Arc::new(
        Zswap::new(Config {
            max_pool_bytes: Some(256 << 10),
            ..Config::default()
        })
        .unwrap(),
    );
    let n = 1024;
    let r = Region::on(Arc::clone(&z), n * PAGE, 32 * PAGE, None).unwrap();
    for i in 0..n {
        write_page(&r, i, &stamped(i, 1));
    }
    for i in 0..n {
        check_page(&r, i, &stamped(i, 1));
    }
    let s = z.stats();
    assert!(s.pswpout > 0 && s.pswpin > 0, "{s:?}");
    assert!(s.pool_total_size <= 256 << 10, "{s:?}");
    // Closing frees the area: its entries and slots.
    r.close();
    assert_eq!(z.stats().stored_pages, 0);
}

#[test]
fn the_pool_counts_against_the_budget_when_asked() {
    // A budget of 256 pages, the pool allowed up to 128 pages of it: resident
    // pages get what the pool leaves, and the pool writes back past its
    // limit, so that resident + pool stays within the budget.
    let budget = 256;
    let z = Arc::new(
        Zswap::new(Config {
            max_pool_bytes: Some(128 * PAGE as u64),
            ..Config::default()
        })
        .unwrap(),
    );
    let options = RegionOptions {
        pool_in_budget: true,
        ..RegionOptions::default()
    };
    let n = 4096;
    let r = Region::with_options(Arc::clone(&z), n * PAGE, budget * PAGE, &options).unwrap();
    let mut most_resident = 0;
    let within = |r: &Region, slack: usize| {
        let pool = z.stats().pool_total_size as usize;
        let resident = r.resident_bytes();
        assert!(
            resident + pool <= (budget + slack) * PAGE,
            "resident {resident} + pool {pool} over the budget: {:?}",
            r.stats()
        );
        resident
    };
    for i in 0..n {
        write_page(&r, i, &stamped(i, 1));
        if i % 64 == 63 {
            // A fault may map a read-ahead run and evict after: a batch's slack.
            most_resident = most_resident.max(within(&r, 32));
        }
    }
    for i in (0..n).rev() {
        check_page(&r, i, &stamped(i, 1));
    }
    within(&r, 32);
    let s = z.stats();
    assert!(s.written_back_pages > 0 && s.pswpin > 0, "{s:?}");
    // Once the pool has grown, resident pages have less than the budget, but
    // never under an eighth of it.
    assert!(
        r.resident_bytes() < budget * PAGE * 3 / 4,
        "{:?}",
        r.stats()
    );
    assert!(most_resident >= budget * PAGE / 8, "{most_resident}");
    // The same region without the option keeps its whole budget resident.
    let plain = Region::on(Arc::clone(&z), n * PAGE, budget * PAGE, None).unwrap();
    for i in 0..n {
        write_page(&plain, i, &stamped(i, 2));
    }
    assert!(plain.resident_bytes() > budget * PAGE * 3 / 4);
    for i in 0..n {
        check_page(&plain, i, &stamped(i, 2));
        check_page(&r, i, &stamped(i, 1));
    }
}

#[test]
fn regions_share_one_cache() {
    let z = Arc::new(Zswap::new(config()).unwrap());
    let a = Region::on(Arc::clone(&z), 64 * PAGE, 4 * PAGE, None).unwrap();
    let b = Region::on(Arc::clone(&z), 64 * PAGE, 4 * PAGE, None).unwrap();
    assert_ne!(a.swap_type(), b.swap_type());
    for i in 0..64 {
        write_page(&a, i, &stamped(i, 1));
        write_page(&b, i, &stamped(i, 2));
    }
    for i in 0..64 {
        check_page(&a, i, &stamped(i, 1));
        check_page(&b, i, &stamped(i, 2));
    }
}

/// The unprivileged case: this binary again, as `nobody`.
#[test]
fn an_unprivileged_user_gets_a_config_error_or_a_working_region() {
    if std::env::var_os("ZSWAP_REGION_UNPRIVILEGED_CHILD").is_some() {
        return unprivileged_child();
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        // Already unprivileged: the child's body is the test.
        return unprivileged_child();
    }
    // A copy of this binary where `nobody` may run it: the checkout may
    // sit in a directory only root can enter (a clone into `mktemp -d`).
    let dir = std::env::temp_dir().join(format!("zswap-rs-unprivileged-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.join("region-test");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    let out = std::process::Command::new(&exe)
        .args([
            "--exact",
            "an_unprivileged_user_gets_a_config_error_or_a_working_region",
            "--nocapture",
        ])
        .env("ZSWAP_REGION_UNPRIVILEGED_CHILD", "1")
        .env("TMPDIR", "/tmp")
        .current_dir("/")
        .uid(65534)
        .gid(65534)
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    let out = out.unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("UNPRIVILEGED-OUTCOME"), "{text}");
    let outcome = text.lines().find(|l| l.contains("UNPRIVILEGED-OUTCOME"));
    eprintln!("{}", outcome.unwrap_or_default());
}

fn unprivileged_child() {
    match Region::new(32 * PAGE, 4 * PAGE, None, config()) {
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Config, "{e}");
            assert!(e.message().contains("vm.unprivileged_userfaultfd"), "{e}");
            println!("UNPRIVILEGED-OUTCOME config error: {e}");
        }
        Ok(r) => {
            for i in 0..32 {
                write_page(&r, i, &stamped(i, 1));
            }
            let mut f = tempfile_in_var_tmp("unpriv");
            // SAFETY: the whole region, alive for the call.
            let all = unsafe { std::slice::from_raw_parts(r.as_ptr(), 32 * PAGE) };
            f.write_all(all).unwrap();
            for i in 0..32 {
                check_page(&r, i, &stamped(i, 1));
            }
            println!("UNPRIVILEGED-OUTCOME working region");
        }
    }
}

#[test]
fn a_child_dropping_its_copy_leaves_the_parents_region_alone() {
    // A small pool, so that most pages live in the swap file the child
    // shares with its parent.
    let z = Arc::new(
        Zswap::new(Config {
            max_pool_bytes: Some(64 << 10),
            ..Config::default()
        })
        .unwrap(),
    );
    let n = 256;
    let r = Region::on(z, n * PAGE, 16 * PAGE, None).unwrap();
    for i in 0..n {
        write_page(&r, i, &stamped(i, 1));
    }
    assert!(r.zswap().stats().pswpout > 0);
    // SAFETY: fork in a threaded process: the child only drops the region
    // (no allocation, no lock: see Region::shutdown) and calls _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        drop(r);
        // SAFETY: leaving the child without the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut status = 0;
    loop {
        // SAFETY: polling our own child.
        let got = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if got == pid {
            break;
        }
        if std::time::Instant::now() > deadline {
            // SAFETY: killing our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("the child hung dropping its copy of the region");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    for i in 0..n {
        check_page(&r, i, &stamped(i, 1));
    }
}

#[test]
fn the_cache_will_not_close_or_swap_off_under_an_open_region() {
    let z = Arc::new(Zswap::new(config()).unwrap());
    let other = z.swapon(8).unwrap();
    let r = Region::on(Arc::clone(&z), 64 * PAGE, 8 * PAGE, None).unwrap();
    for i in 0..64 {
        write_page(&r, i, &stamped(i, 1));
    }
    assert!(r.stats().evictions > 0, "some pages live in the area now");
    let e = z.close().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
    assert!(e.to_string().contains("close the region first"), "{e}");
    let e = z.swapoff(r.swap_type()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
    // Refused means nothing changed: the cache is open, every page reads
    // back, and the other area still turns off as usual.
    assert!(!z.is_closed());
    for i in 0..64 {
        check_page(&r, i, &stamped(i, 1));
    }
    z.swapoff(other).unwrap();
    let t = r.swap_type();
    r.close();
    // The region let go of its area as it closed; then the cache closes.
    assert!(z.area_pages(t).is_none());
    z.close().unwrap();
}

fn signal_mode() -> RegionOptions {
    RegionOptions {
        faults: FaultMode::Signal,
        ..RegionOptions::default()
    }
}

#[test]
fn signal_mode_keeps_every_page_under_pressure() {
    let z = Arc::new(Zswap::new(config()).unwrap());
    let n = 256;
    let r = Region::with_options(z, n * PAGE, 16 * PAGE, &signal_mode()).unwrap();
    for i in 0..n {
        write_page(&r, i, &stamped(i, 1));
    }
    for round in 0..2 {
        for i in (0..n).rev() {
            check_page(&r, i, &stamped(i, 1));
        }
        assert!(r.resident_bytes() <= r.budget(), "round {round}");
    }
    let s = r.stats();
    assert!(s.evictions > n as u64 && s.clean_evictions > 0, "{s:?}");
    assert_eq!(s.fault_errors, 0);
}

#[test]
fn signal_mode_threads_writing_counters_lose_nothing() {
    counters_with(&signal_mode());
}

#[test]
fn signal_mode_syscalls_on_unmapped_pages_fail_with_efault() {
    let z = Arc::new(Zswap::new(config()).unwrap());
    let n = 64;
    let r = Region::with_options(z, n * PAGE, 8 * PAGE, &signal_mode()).unwrap();
    for i in 0..n {
        write_page(&r, i, &stamped(i, 1));
    }
    // Page 0 was evicted long ago: the kernel cannot raise a signal for
    // its own access, so write(2) from it fails, as documented.
    let f = tempfile_in_var_tmp("signal-efault");
    // SAFETY: one page inside the region, alive for the call.
    let rc = unsafe { libc::write(std::os::fd::AsRawFd::as_raw_fd(&f), r.as_ptr().cast(), PAGE) };
    let err = std::io::Error::last_os_error();
    assert_eq!((rc, err.raw_os_error()), (-1, Some(libc::EFAULT)));
    // Touched first by the program, the page is mapped and the call works.
    check_page(&r, 0, &stamped(0, 1));
    // SAFETY: as above.
    let rc = unsafe { libc::write(std::os::fd::AsRawFd::as_raw_fd(&f), r.as_ptr().cast(), PAGE) };
    assert_eq!(rc, PAGE as isize);
}

/// A SIGBUS that is not a region's fault still ends the process with SIGBUS
/// once signal mode's handler is installed: this binary again, touching a
/// file mapping past the end of its file.
#[test]
fn signal_mode_passes_other_sigbus_on() {
    if std::env::var_os("ZSWAP_REGION_SIGBUS_CHILD").is_some() {
        let z = Arc::new(Zswap::new(config()).unwrap());
        let r = Region::with_options(z, 16 * PAGE, 4 * PAGE, &signal_mode()).unwrap();
        for i in 0..16 {
            write_page(&r, i, &stamped(i, 1));
        }
        check_page(&r, 0, &stamped(0, 1));
        let f = tempfile_in_var_tmp("signal-other");
        // SAFETY: a shared mapping of one page of an empty file: touching
        // it raises SIGBUS, which is the point.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                PAGE,
                libc::PROT_READ,
                libc::MAP_SHARED,
                std::os::fd::AsRawFd::as_raw_fd(&f),
                0,
            );
            assert_ne!(p, libc::MAP_FAILED);
            println!("SIGBUS-CHILD about to touch");
            std::ptr::read_volatile(p as *const u8);
        }
        println!("SIGBUS-CHILD survived");
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "signal_mode_passes_other_sigbus_on",
            "--nocapture",
        ])
        .env("ZSWAP_REGION_SIGBUS_CHILD", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGBUS), "{text}");
    assert!(
        text.contains("about to touch") && !text.contains("survived"),
        "{text}"
    );
}

#[test]
fn a_regions_swap_file_punches_no_holes() {
    // Slot i is page i's, written again at its next eviction: a punch
    // would only cost (milliseconds each on a filesystem mounted discard).
    let z = Arc::new(
        Zswap::new(Config {
            max_pool_bytes: Some(16 * PAGE as u64),
            ..Config::default()
        })
        .unwrap(),
    );
    let r = Region::on(Arc::clone(&z), 128 * PAGE, 8 * PAGE, None).unwrap();
    let info = z.backing_info(r.swap_type()).unwrap().unwrap();
    assert!(!info.discard, "{info:?}");
    for version in 1..4 {
        for i in 0..128 {
            write_page(&r, i, &stamped(i, version));
        }
    }
    for i in 0..128 {
        check_page(&r, i, &stamped(i, 3));
    }
    assert!(z.stats().pswpout > 128, "pages went to the file, and again");
}

/// A region of `n` pages on `z`, its pool counted in its budget of
/// `budget` pages, every page written (version 1) and then read back in a
/// scan.
fn scanned_with_pool_in_budget(z: &Arc<Zswap>, n: usize, budget: usize) -> Region {
    let options = RegionOptions {
        pool_in_budget: true,
        ..RegionOptions::default()
    };
    let r = Region::with_options(Arc::clone(z), n * PAGE, budget * PAGE, &options).unwrap();
    for i in 0..n {
        write_page(&r, i, &stamped(i, 1));
    }
    for i in 0..n {
        check_page(&r, i, &stamped(i, 1));
    }
    r
}

#[test]
fn random_faults_shed_the_copies_a_scan_left_and_lose_nothing() {
    // The pool counts in the budget: after a scan every page has a copy in
    // it, which random faults then shed, so that more pages stay resident.
    let (n, budget) = (1024, 512);
    let z = Arc::new(Zswap::new(config()).unwrap());
    let r = scanned_with_pool_in_budget(&z, n, budget);
    let after_scan = r.stats();
    assert_eq!(after_scan.shed_copies, 0, "{after_scan:?}");
    let mut version = vec![1u64; n];
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for k in 0..6000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = (x % n as u64) as usize;
        if k % 3 == 0 {
            version[i] += 1;
            write_page(&r, i, &stamped(i, version[i]));
        } else {
            check_page(&r, i, &stamped(i, version[i]));
        }
    }
    let s = r.stats();
    assert!(s.shed_copies > 0, "{s:?}");
    assert!(
        s.resident_pages > after_scan.resident_pages,
        "no more resident pages after shedding: {after_scan:?} then {s:?}"
    );
    for (i, &v) in version.iter().enumerate() {
        check_page(&r, i, &stamped(i, v));
    }
    // A region whose pool is not in its budget keeps its copies.
    let plain = Region::on(Arc::clone(&z), n * PAGE, budget * PAGE, None).unwrap();
    for i in 0..n {
        write_page(&plain, i, &stamped(i, 2));
    }
    for k in 0..2000 {
        check_page(&plain, (k * 7919) % n, &stamped((k * 7919) % n, 2));
    }
    assert_eq!(plain.stats().shed_copies, 0, "{:?}", plain.stats());
}

#[test]
fn random_faults_keep_the_copies_in_the_file() {
    // A copy in the swap file costs no memory: shedding it would free no
    // budget and cost a compression and a write at the page's eviction.
    // With the pool off every copy is in the file, so random reads after a
    // scan shed nothing, and evict clean: nothing is written again.
    let (n, budget) = (1024, 256);
    let z = Arc::new(Zswap::new(config()).unwrap());
    z.set_enabled(false);
    let r = scanned_with_pool_in_budget(&z, n, budget);
    let written = z.stats().pswpout;
    assert!(written >= (n - budget) as u64, "{:?}", z.stats());
    for k in 0..4000 {
        let i = (k * 7919) % n;
        check_page(&r, i, &stamped(i, 1));
    }
    let s = r.stats();
    assert!(s.faults > 2000 && s.clean_evictions > 2000, "{s:?}");
    assert_eq!(s.shed_copies, 0, "{s:?}");
    assert_eq!(z.stats().pswpout, written, "{:?}", z.stats());
    for i in 0..n {
        check_page(&r, i, &stamped(i, 1));
    }
}

#[test]
fn threads_writing_counters_lose_nothing_with_the_pool_in_budget() {
    counters_with(&RegionOptions {
        pool_in_budget: true,
        ..RegionOptions::default()
    });
}
