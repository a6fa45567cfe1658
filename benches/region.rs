//! What a region costs per touch: a sequential scan, random reads and
//! random writes of a region 4x its budget, next to the same touches in
//! plain memory, the codec alone on the same pages, and the fault-service
//! floor (a userfaultfd handler that copies pages from a plain buffer, no
//! compression, no bookkeeping), all in one run.
//!
//! `cargo bench --bench region` (env: `REGION_MB`, default 64;
//! `ZSWAP_RS_PAGES`, a raw page dump from `zswap-rs profile --save-pages`,
//! else generated text-like pages). A program that prints a table, never a
//! timed test: the figures are ratios to the anchors of the same run.

use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zswap_rs::region::uffd::{self, Msg, Uffd};
use zswap_rs::{compress, Config, FaultMode, Region, RegionOptions, Zswap};

const PAGE: usize = 4096;

/// Pages to write: a dump's if there is one, else text-like pages.
fn source_pages(n: usize) -> (Vec<Vec<u8>>, &'static str) {
    if let Ok(path) = std::env::var("ZSWAP_RS_PAGES") {
        if let Ok(data) = std::fs::read(&path) {
            let pages: Vec<Vec<u8>> = data.chunks_exact(PAGE).map(<[u8]>::to_vec).collect();
            if !pages.is_empty() {
                return (
                    (0..n).map(|i| pages[i % pages.len()].clone()).collect(),
                    "page dump",
                );
            }
        }
    }
    let pages = (0..n)
        .map(|i| {
            let mut p = Vec::with_capacity(PAGE + 64);
            let mut k = 0u64;
            while p.len() < PAGE {
                let v = (i as u64 * 2_654_435_761 + k * 40_503) % 100_000;
                p.extend_from_slice(format!("rec {i:>6}.{k:>3} value={v:>6};\n").as_bytes());
                k += 1;
            }
            p.truncate(PAGE);
            p
        })
        .collect();
    (pages, "generated text-like pages")
}

/// A cheap deterministic page order for the random phases.
fn random_order(n: usize, seed: u64) -> Vec<usize> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        })
        .collect()
}

/// ns per touch of each phase over memory at `base` (`n` pages).
struct Phases {
    fill: f64,
    scan: f64,
    rand_read: f64,
    rand_write: f64,
}

fn run_phases(base: *mut u8, n: usize, src: &[Vec<u8>], order: &[usize]) -> Phases {
    let page = |i: usize| {
        // SAFETY: `i < n` pages into memory of `n` pages that outlives the call.
        unsafe { base.add(i * PAGE) }
    };
    let t = Instant::now();
    for (i, s) in src.iter().enumerate().take(n) {
        // SAFETY: one page inside the memory, from a page-sized source.
        unsafe { std::ptr::copy_nonoverlapping(s.as_ptr(), page(i), PAGE) };
    }
    let fill = t.elapsed().as_nanos() as f64 / n as f64;
    let sum_page = |i: usize| {
        let p = page(i).cast::<u64>();
        let mut s = 0u64;
        for w in 0..PAGE / 8 {
            // SAFETY: an aligned word inside the page.
            s = s.wrapping_add(unsafe { p.add(w).read_volatile() });
        }
        s
    };
    let t = Instant::now();
    let mut acc = 0u64;
    for i in 0..n {
        acc = acc.wrapping_add(sum_page(i));
    }
    let scan = t.elapsed().as_nanos() as f64 / n as f64;
    let t = Instant::now();
    for &i in order {
        acc = acc.wrapping_add(sum_page(i));
    }
    let rand_read = t.elapsed().as_nanos() as f64 / order.len() as f64;
    let t = Instant::now();
    for (k, &i) in order.iter().enumerate() {
        // SAFETY: an aligned word inside the page.
        unsafe { page(i).cast::<u64>().add(k % 512).write_volatile(k as u64) };
    }
    let rand_write = t.elapsed().as_nanos() as f64 / order.len() as f64;
    black_box(acc);
    Phases {
        fill,
        scan,
        rand_read,
        rand_write,
    }
}

/// The floor: userfaultfd handlers serving missing faults with
/// UFFDIO_COPY from a plain array, evicting FIFO with a copy back and
/// MADV_DONTNEED. No compression, no write protection, no read-ahead, and
/// not safe against a write racing an eviction: the least any handler does.
/// `pinned`: 0, one handler on any CPU; `n`, one pinned to each of CPUs
/// `0..n`, as the region's default.
fn floor(
    n: usize,
    budget: usize,
    spin: Duration,
    pinned: usize,
    src: &[Vec<u8>],
    order: &[usize],
) -> Phases {
    let len = n * PAGE;
    // SAFETY: a fresh private anonymous mapping.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    } as usize;
    assert_ne!(base, libc::MAP_FAILED as usize);
    // SAFETY: advice on our own mapping.
    unsafe { libc::madvise(base as *mut _, len, libc::MADV_NOHUGEPAGE) };
    let u = Uffd::open().map_err(|(e, _)| e).expect("userfaultfd");
    u.handshake(0).expect("UFFDIO_API");
    u.register(base, len, uffd::REGISTER_MODE_MISSING)
        .expect("register");
    let stop = Arc::new(AtomicBool::new(false));
    let u = Arc::new(u);
    let state = Arc::new(Mutex::new((vec![0u8; len], VecDeque::new())));
    let cpus: Vec<Option<usize>> = if pinned == 0 {
        vec![None]
    } else {
        (0..pinned).map(Some).collect()
    };
    let handlers: Vec<_> = cpus
        .into_iter()
        .map(|cpu| {
            let (u, stop, state) = (Arc::clone(&u), Arc::clone(&stop), Arc::clone(&state));
            std::thread::spawn(move || {
                if let Some(cpu) = cpu {
                    pin(cpu);
                }
                floor_handler(&u, &stop, &state, base, budget, spin);
            })
        })
        .collect();
    let phases = run_phases(base as *mut u8, n, src, order);
    stop.store(true, Ordering::Relaxed);
    for h in handlers {
        h.join().unwrap();
    }
    // SAFETY: unmapping our mapping; the handlers are gone.
    unsafe { libc::munmap(base as *mut _, len) };
    phases
}

type FloorState = Mutex<(Vec<u8>, VecDeque<usize>)>;

fn floor_handler(
    u: &Uffd,
    stop: &AtomicBool,
    state: &FloorState,
    base: usize,
    budget: usize,
    spin: Duration,
) {
    let mut msgs = [Msg::default(); 16];
    let mut idle = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let got = u.read_msgs(&mut msgs).unwrap_or(0);
        if got == 0 {
            if idle.elapsed() >= spin {
                let mut fd = libc::pollfd {
                    fd: u.raw(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one pollfd; 10 ms timeout to see `stop`.
                unsafe { libc::poll(&mut fd, 1, 10) };
                idle = Instant::now();
            }
            continue;
        }
        let mut st = state.lock().unwrap();
        let (backing, fifo) = &mut *st;
        for m in &msgs[..got] {
            let addr = m.address as usize & !(PAGE - 1);
            let p = (addr - base) / PAGE;
            if fifo.contains_fast(p) {
                let _ = u.wake(addr, PAGE);
                continue;
            }
            if fifo.len() >= budget {
                let v: usize = fifo.pop_front().unwrap();
                // SAFETY: page `v` is mapped (it is on the FIFO); copy it
                // out, then drop it.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        (base + v * PAGE) as *const u8,
                        backing.as_mut_ptr().add(v * PAGE),
                        PAGE,
                    );
                    libc::madvise((base + v * PAGE) as *mut _, PAGE, libc::MADV_DONTNEED);
                }
            }
            match u.copy(addr, backing[p * PAGE..].as_ptr(), PAGE, false, true) {
                Ok(_) => fifo.push_back(p),
                Err(_) => {
                    let _ = u.wake(addr, PAGE);
                }
            }
        }
        idle = Instant::now();
    }
}

/// The FIFO's last few entries: a duplicate fault (two handlers read the
/// same page's message) is for a page mapped a moment ago.
trait RecentlyMapped {
    fn contains_fast(&self, p: usize) -> bool;
}

impl RecentlyMapped for VecDeque<usize> {
    fn contains_fast(&self, p: usize) -> bool {
        self.iter().rev().take(8).any(|&q| q == p)
    }
}

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET writes within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set);
    }
}

fn codec_alone(src: &[Vec<u8>]) -> (f64, f64) {
    let c = compress::create("lz4", &compress::Options::default()).unwrap();
    let mut buf = vec![0u8; 2 * PAGE];
    let mut out = vec![0u8; PAGE];
    let t = Instant::now();
    let mut lens = Vec::with_capacity(src.len());
    for p in src {
        lens.push(c.compress(p, &mut buf).unwrap_or(PAGE));
    }
    let comp = t.elapsed().as_nanos() as f64 / src.len() as f64;
    let one = c.compress(&src[0], &mut buf).unwrap();
    let t = Instant::now();
    for _ in src {
        c.decompress(&buf[..one], &mut out).unwrap();
        black_box(&out);
    }
    (comp, t.elapsed().as_nanos() as f64 / src.len() as f64)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench` lists benches; this is a program.
    }
    let mb: usize = std::env::var("REGION_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let n = mb * 256;
    let budget = n / 4;
    let (src, what) = source_pages(n);
    let order = random_order(n, 0x5eed);
    println!("region bench: {n} pages ({mb} MiB), budget {budget} pages (1/4), {what}, lz4");
    let mut plain = vec![0u8; n * PAGE + PAGE];
    let off = plain.as_ptr().align_offset(PAGE);
    let p = run_phases(plain[off..].as_mut_ptr(), n, &src, &order);
    let (comp, decomp) = codec_alone(&src);
    println!("codec alone (lz4): compress {comp:.0} ns/page, decompress {decomp:.0} ns/page\n");
    println!(
        "{:<34} {:>10} {:>10} {:>10} {:>10}",
        "ns per page touched", "fill", "scan", "rand read", "rand write"
    );
    let row = |name: &str, ph: &Phases, extra: &str| {
        println!(
            "{name:<34} {:>10.0} {:>10.0} {:>10.0} {:>10.0}  {extra}",
            ph.fill, ph.scan, ph.rand_read, ph.rand_write
        );
    };
    row("plain memory", &p, "");
    for (spin_us, pinned) in [(0u64, 0usize), (50, 0), (0, 2)] {
        let spin = Duration::from_micros(spin_us);
        let f = floor(n, budget, spin, pinned, &src, &order);
        let name = match pinned {
            0 => format!("floor (no codec), spin {spin_us} us"),
            n => format!("floor (no codec), {n} pinned, spin {spin_us}"),
        };
        row(&name, &f, "");
    }
    // Unpinned: one handler on any CPU; pinned: the default, one per CPU;
    // then no handler at all, each fault served by the faulting thread.
    let mut modes: Vec<(String, RegionOptions)> = Vec::new();
    for (spin_us, pinned) in [(0u64, 0usize), (50, 0), (0, 1), (0, 2), (50, 2)] {
        let name = match pinned {
            0 => format!("region, spin {spin_us} us"),
            n => format!("region, {n} pinned, spin {spin_us} us"),
        };
        let opts = RegionOptions {
            spin: Some(Duration::from_micros(spin_us)),
            pinned_handlers: Some(pinned),
            ..RegionOptions::default()
        };
        modes.push((name, opts));
    }
    let direct = RegionOptions {
        pinned_handlers: Some(2),
        direct_wake: true,
        ..RegionOptions::default()
    };
    modes.push(("region, 2 pinned, direct wake".into(), direct));
    let by_waker = RegionOptions {
        pinned_handlers: Some(2),
        wake_by_waker: true,
        ..RegionOptions::default()
    };
    modes.push(("region, 2 pinned, waker thread".into(), by_waker));
    let signal = RegionOptions {
        faults: FaultMode::Signal,
        ..RegionOptions::default()
    };
    modes.push(("region, signal mode (SIGBUS)".into(), signal));
    for (name, opts) in &modes {
        let z = Arc::new(
            Zswap::new(Config {
                max_pool_bytes: Some((n * PAGE) as u64),
                ..Config::default()
            })
            .unwrap(),
        );
        let r = Region::with_options(z, n * PAGE, budget * PAGE, opts).expect("region");
        let ph = run_phases(r.as_ptr(), n, &src, &order);
        let s = r.stats();
        let extra = format!(
            "faults {} wp {} prefetched {} clean evictions {}/{} switches {} waker timeouts {}",
            s.faults,
            s.wp_faults,
            s.prefetched,
            s.clean_evictions,
            s.evictions,
            s.handler_switches,
            s.waker_timeouts
        );
        row(name, &ph, &extra);
    }
    // A pool of an eighth of the data, so that most evictions go to the
    // swap file: buffered (the default) against O_DIRECT.
    for direct_io in [false, true] {
        let z = Arc::new(
            Zswap::new(Config {
                max_pool_bytes: Some((n * PAGE / 8) as u64),
                ..Config::default()
            })
            .unwrap(),
        );
        let opts = RegionOptions {
            direct_io,
            ..RegionOptions::default()
        };
        let r = Region::with_options(z, n * PAGE, budget * PAGE, &opts).expect("region");
        let ph = run_phases(r.as_ptr(), n, &src, &order);
        let zs = r.zswap().stats();
        let extra = format!("pswpin {} pswpout {}", zs.pswpin, zs.pswpout);
        let name = format!(
            "region, pool 1/8, {}",
            if direct_io { "O_DIRECT" } else { "buffered" }
        );
        row(&name, &ph, &extra);
    }
}
