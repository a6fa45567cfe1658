//! Regions: a program's memory beyond its RAM budget, through zswap.
//!
//! A [`Region`] is a range of anonymous memory registered with
//! userfaultfd, of which at most `budget` bytes are resident. The rest lives
//! in a swap area of its [`Zswap`]: compressed in the pool, or in the area's
//! swap file when the pool does not take it. The program uses the memory as
//! memory (any thread, and the kernel too: `read(2)` into it, `write(2)`
//! from it); handler threads, one pinned to each CPU, serve its faults.
//!
//! # How a page moves
//!
//! * **Fault in.** A missing page faults to the handler. A page stored in
//!   the area (slot `i` is the region's page `i`) is loaded into a buffer and
//!   mapped with `UFFDIO_COPY`; a page never touched is the shared zero page
//!   (`UFFDIO_ZEROPAGE`) on a read, a fresh zeroed page on a write. A read
//!   maps the page write-protected and keeps its stored copy (loads are not
//!   exclusive, but see *exclusive loads* below): the page is *clean*.
//! * **First write to a clean page.** The write-protect fault tells the
//!   handler the stored copy is stale: it is invalidated and the page made
//!   writable (*dirty*). A write fault on a missing page maps it dirty at
//!   once, so a write costs one fault, not two.
//! * **Eviction**, when a fault would take the region past its budget: the
//!   oldest resident pages, in fault order, with a second chance for pages
//!   written since (CLOCK). A clean victim is dropped with `MADV_DONTNEED`
//!   (`clean_evictions`): no compression at all, since its copy is still in
//!   the pool or the file. That is race-free because the page is write
//!   protected: a write to it waits in a write-protect fault for the
//!   handler, which is busy evicting; after the drop, the write retries and
//!   finds the page missing. A dirty victim is taken out with `UFFDIO_MOVE`
//!   into a staging range registered with the same userfaultfd: the move
//!   clears the page table entry atomically, so a racing write either
//!   landed before it (and is in the moved page) or faults after it and
//!   waits for the handler. The staged page is then stored through the same
//!   store path as any page (same-filled pages, compression limits, the
//!   pool limit and its writeback), or forgotten if it is all zeros.
//!
//! # Why this design (measured on a 2-vCPU VM, see the README)
//!
//! The other design, write-protect + copy + `MADV_DONTNEED`, needs the same
//! write-protect faults and an extra copy per eviction; `UFFD_FEATURE_WP_ASYNC`
//! with `PAGEMAP_SCAN` would spare the write-protect fault, but an async
//! write-protect fault is resolved by the kernel without telling the
//! handler, so a write between the scan and the drop of a "clean" page
//! would be lost, and `UFFDIO_MOVE` does not carry the write-protect bit to
//! the staging page to check afterwards. Synchronous write protection is
//! the one that is both correct and cheap: one extra fault only for a page
//! read first and written later.
//!
//! Recency: user space cannot read the page table's accessed bits without
//! root (idle page tracking), and `PAGEMAP_SCAN` reports writes, not reads.
//! So recency is what the handler sees: faults (queue order) plus
//! write-protect faults (a second chance). Reads of resident pages are
//! invisible; the order is FIFO for them, as the kernel's own is for pages
//! whose accessed bit it has not sampled.
//!
//! Handlers: one thread per CPU, pinned, sleeping in poll(2). The thread
//! that faults sleeps until its page is mapped, so its CPU is free, and
//! the handler pinned there runs at once: no cross-CPU wake-up, which on a
//! small VM costs more than everything else a fault does (measured: one
//! unpinned handler 25-100 us per fault, pinned ones 6-15 us; the README).
//! They share one lock, so they serve one fault at a time; what they save
//! is the wake-ups.
//!
//! Routing: poll's wake-ups are not exclusive, so with every handler in
//! poll(2) each fault would wake them all, the one on the other CPU by an
//! interrupt that costs the fault several microseconds (and now and then it
//! wins the race and serves the fault from afar). So one handler at a time
//! polls the userfaultfd; the others sleep on an eventfd of their own. Every
//! [`ROUTE_SAMPLE`] faults the active one reads which CPU the faulting
//! thread runs on (`/proc/self/task/<tid>/stat`); twice in a row on the CPU
//! of another handler, it wakes that one and sleeps in its stead.
//!
//! Wake hand-off: a pinned handler that woke the faulting thread itself
//! (as `UFFDIO_COPY` does unless told not to) would wake it on a busy CPU,
//! its own, and the scheduler would move it to the idle one: a cross-CPU
//! wake-up per fault, and routing then chases the thread (traced here: 416
//! of 424 migrations of the faulting thread in one run happened inside the
//! handler's wake). So the handler maps pages with the `DONTWAKE` modes
//! and leaves the wake to its *waker*, a thread of the idle scheduling
//! class (`SCHED_IDLE`) pinned to the same CPU, which runs once the
//! handler sleeps and makes one `UFFDIO_WAKE` over the whole region (a
//! spurious wake only makes a thread retry its access). A CPU running only
//! idle-class threads counts as idle, so the woken thread stays where it
//! is. The waker first yields: the handler that just went to sleep may
//! still be queued on the CPU (EEVDF's delayed dequeue), which would make
//! it look busy. An idle-class thread gets almost no CPU beside a busy
//! one, so the handler stays an ordinary thread and is the guard: while a
//! wake is owed it sleeps at most [`WAKE_GUARD`], and a wake still owed
//! then it makes itself (`waker_timeouts`) and stops handing off for
//! 100 ms (`HAND_OFF_PAUSE`): on a CPU that busy, the thread wakes as fast
//! from the handler. [`RegionOptions::direct_wake`] turns hand-off off.
//!
//! Where the process may come back from the idle class (`RLIMIT_NICE` of
//! 20 or more, or `CAP_SYS_NICE`: root; a probe thread at the region's
//! start tells), the handler saves the waker's context switch: after a
//! batch it puts itself in the idle class, makes the `UFFDIO_WAKE`, and
//! puts itself back. Its CPU counts as idle at the wake, so the thread
//! stays, and preempts the handler at once; the handler finishes its
//! switch back when it next gets the CPU, at the latest when the thread
//! faults again. The waker thread is then its *guard* instead, ordinary
//! and not pinned: while hand-offs come it looks every [`WAKE_GUARD`],
//! and a handler that has been in the idle class that long it takes out
//! (`sched_setscheduler` of its thread id), wakes the region's threads
//! for it (`waker_timeouts`) and has it wake directly for 100 ms. Measured
//! here (`cargo bench --bench region`, random reads, ns per page touched,
//! 3 faults in 4 touches, the same runs): 13,325 and 10,507 this way,
//! 17,946 and 16,453 through the waker thread, 8,246 and 7,673 in signal
//! mode. Beside a busy thread on each CPU, with the guard turned off, the
//! handler still got its CPU back within 92 us per fault on average (this
//! kernel's EEVDF), so the guard is insurance; it does act there (the
//! tests).
//! [`RegionOptions::wake_by_waker`] keeps the waker thread.
//!
//! Exclusive loads, with [`RegionOptions::pool_in_budget`]: there a stored
//! copy of a resident page costs resident pages (its compressed bytes count
//! in the budget), for as long as the page stays. A scan evicts its pages
//! again soon, so read-ahead runs keep their copies and are dropped clean.
//! A page faulted in alone is taken out of the pool instead (the kernel's
//! zswap does so for every page since 6.5), and each such fault also sheds
//! the pool's copies of up to 16 (`SHED_PER_FAULT`) resident clean pages
//! found at random (`shed_copies`): after a scan every page has a copy,
//! and a random phase would otherwise keep them all for as long as it
//! runs. The price is a compression when such a page is evicted; a copy
//! in the swap file costs no memory, so it stays
//! ([`Zswap::invalidate_cached`]). Measured with
//! `zswap-rs versus` (the README): at 1x the random reads after the scans
//! took 14,800 faults where keeping every copy took 27,900, and the random
//! writes after them 9,900 where they took 25,000 (a page whose copy is
//! gone is writable: no write-protect fault).
//!
//! Read-ahead: a fault on the page after the previous fault's run maps a
//! run twice as long (up to [`READAHEAD_MAX`] pages) in one `UFFDIO_COPY`,
//! so a scan pays one fault per run, not per page.
//!
//! # Fork
//!
//! The region and its staging range are `MADV_DONTFORK`: a child process
//! has no mapping there (an access is `SIGSEGV`), so it never reads wrong
//! bytes; the handler thread does not exist in a child either.
//!
//! # Lock order
//!
//! `Shared::state` is taken before any of the cache's locks (the store and
//! load calls take them). Whoever holds `state` never touches region memory,
//! only the staging range (whose pages it moved there itself, so they are
//! present) and its own buffer: a fault on region memory needs the handler,
//! which needs `state`.

mod signal;
pub mod uffd;

pub use signal::MAX_SIGNAL_REGIONS;

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{
    AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering::AcqRel, Ordering::Acquire,
    Ordering::Relaxed, Ordering::Release, Ordering::SeqCst,
};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::error::{Error, ErrorKind, Result};
use crate::{Config, FileOptions, LoadSource, RedisOptions, StoreOutcome, Zswap, MAX_AREA_PAGES};
use uffd::{Msg, Uffd};

/// Longest read-ahead run, in pages (128 KiB with 4 KiB pages): long enough
/// that a scan's fault cost is spread over many pages, short enough that a
/// run mistaken for sequential costs little.
pub const READAHEAD_MAX: usize = 32;

/// Pages of the staging range, and so the most dirty pages evicted per
/// `MADV_DONTNEED` of it.
const STAGING_PAGES: usize = 32;

/// An eviction frees at least this many pages (or an eighth of the
/// budget, if less), so that its fixed costs (a madvise, the queue walk) are
/// shared by several faults.
const EVICT_BATCH: usize = 16;

/// Copies of resident pages a random fault sheds, with the pool counted in
/// the budget (see the module docs on exclusive loads). The copies to shed
/// are as many either way; more per fault gives a random phase its
/// resident pages back sooner (`zswap-rs versus` at 1x: 14,600 random-read
/// faults with 16, 15,400 with 4).
const SHED_PER_FAULT: usize = 16;
/// Pages a random fault probes for copies to shed.
const SHED_PROBES: usize = 32;
/// The most random faults that skip shedding after a fruitless probe.
const SHED_BACKOFF_MAX: u32 = 1024;

/// How long a handler polls for the next fault before it sleeps in
/// poll(2), by default: not at all. With a handler pinned to each CPU, the
/// faulting thread's CPU is idle while it waits, so its own handler runs
/// there at once; polling would only take that CPU from the program (the
/// README has the figures of both).
pub const DEFAULT_SPIN: Duration = Duration::ZERO;

/// Faults between two looks at the CPU the faulting thread runs on (see
/// the module docs on routing): a look costs about 3 us here, so it is
/// shared by this many faults; a program that moved to the other CPU pays
/// cross-CPU wake-ups (tens of us each here) for at most twice this many.
pub const ROUTE_SAMPLE: u32 = 8;

/// Most handler threads made by default: one per CPU up to this many. Only
/// one polls at a time (see the module docs on routing), so the rest cost
/// a thread each and nothing per fault; past this many CPUs, a program on
/// one without a handler pays cross-CPU wake-ups.
pub const MAX_DEFAULT_HANDLERS: usize = 16;

/// How long a handled-off wake-up may wait for its waker before the
/// handler makes it itself (see the module docs on wake hand-off).
pub const WAKE_GUARD: Duration = Duration::from_millis(1);

/// After a waker timed out, its handler wakes the faulting threads itself
/// for this long: the CPU is busy, and a busy CPU's threads wake as fast
/// from the handler as from the waker.
const HAND_OFF_PAUSE: Duration = Duration::from_millis(100);

/// A guard sleeps once its handler has handed off no wake-up for this long
/// (see [`Shared::run_guard`]).
const GUARD_QUIET: Duration = Duration::from_millis(100);

// Per-page flags in `State::pages`.
/// Mapped in the region.
const RESIDENT: u8 = 1;
/// The area holds a copy of the page that is still current: for a
/// resident page, it has not been written since it was loaded (and is write
/// protected).
const STORED: u8 = 2;
/// Written since it entered the CLOCK queue's current lap: a second chance.
const REFERENCED: u8 = 4;

/// A region's counters, beside its cache's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegionStats {
    /// Missing-page faults served (read-ahead pages not counted).
    pub faults: u64,
    /// Write-protect faults: first writes to clean pages.
    pub wp_faults: u64,
    /// Pages mapped as zeros: never touched, or evicted as all zeros.
    pub zero_fills: u64,
    /// Pages evicted (clean ones included).
    pub evictions: u64,
    /// Evicted pages whose stored copy was current: dropped, not compressed.
    pub clean_evictions: u64,
    /// Pages mapped by read-ahead, beyond the faulting one.
    pub prefetched: u64,
    /// Victims kept resident: the store failed (the file full, ENOSPC) or
    /// the page was pinned (`O_DIRECT` I/O in flight).
    pub kept_resident: u64,
    /// Faults that could not be served (the stored page failed its check,
    /// or a kernel call failed): the thread got `SIGBUS`, as the kernel
    /// does on a swap-in read error.
    pub fault_errors: u64,
    /// Pages mapped now.
    pub resident_pages: u64,
    /// Times the handler polling the userfaultfd changed, to follow the
    /// faulting threads to another CPU (see the module docs on routing).
    pub handler_switches: u64,
    /// Times a handler woke the faulting threads itself because its waker
    /// had not run within [`WAKE_GUARD`] (its CPU busy with other work),
    /// or a guard took its handler out of the idle class after as long;
    /// see the module docs on wake hand-off.
    pub waker_timeouts: u64,
    /// Pool copies of resident clean pages dropped while faults came at
    /// random, with the pool counted in the budget (see the module docs on
    /// exclusive loads).
    pub shed_copies: u64,
}

impl RegionStats {
    /// Every figure as `(name, value)`.
    pub fn named(&self) -> [(&'static str, u64); 12] {
        [
            ("faults", self.faults),
            ("wp_faults", self.wp_faults),
            ("zero_fills", self.zero_fills),
            ("evictions", self.evictions),
            ("clean_evictions", self.clean_evictions),
            ("prefetched", self.prefetched),
            ("kept_resident", self.kept_resident),
            ("fault_errors", self.fault_errors),
            ("resident_pages", self.resident_pages),
            ("handler_switches", self.handler_switches),
            ("waker_timeouts", self.waker_timeouts),
            ("shed_copies", self.shed_copies),
        ]
    }
}

/// Where a region's pages go when its cache's pool does not keep them.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum RegionStore {
    /// A private, unlinked, sparse swap file in the temporary directory, so
    /// that no page ever has to stay resident beyond the budget.
    #[default]
    TempFile,
    /// This swap file (or block device), as [`Zswap::swapon_file`] takes it.
    File(PathBuf),
    /// A Redis server or cluster (`redis://host:port/db`,
    /// `redis+cluster://host:port,...`), as [`Zswap::swapon_redis`] takes it.
    Redis(String, RedisOptions),
}

impl RegionStore {
    /// A file at `path`, or the private temporary file for `None`.
    pub fn file(path: Option<&Path>) -> RegionStore {
        path.map_or(RegionStore::TempFile, |p| {
            RegionStore::File(p.to_path_buf())
        })
    }
}

/// Who serves a region's faults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FaultMode {
    /// Handler threads, sleeping until a fault (the default): every access
    /// works, the kernel's own (`read(2)` into the region) too.
    #[default]
    Handlers,
    /// The faulting thread itself, in its `SIGBUS` handler
    /// (`UFFD_FEATURE_SIGBUS`): no thread switch per fault, but a syscall
    /// that touches a page not mapped fails with `EFAULT` instead of
    /// waiting for it. See `src/region/signal.rs`.
    Signal,
}

/// How a region is made, beyond its size and budget.
#[derive(Clone, Debug, Default)]
pub struct RegionOptions {
    /// Where its pages go beyond the pool.
    pub store: RegionStore,
    /// Who serves its faults.
    pub faults: FaultMode,
    /// How long a handler polls before sleeping; `None`: [`DEFAULT_SPIN`].
    pub spin: Option<Duration>,
    /// Handler threads: `n`, one pinned to each of the first `n` CPUs this
    /// process may run on, so that a fault is served on the CPU that took
    /// it, without a cross-CPU wake-up; 0, one handler, not pinned; `None`,
    /// one per CPU up to [`MAX_DEFAULT_HANDLERS`].
    pub pinned_handlers: Option<usize>,
    /// Pinned handlers wake the faulting thread themselves, as they map its
    /// page, instead of handing the wake-up to their waker thread (see the
    /// module docs on wake hand-off). Off by default: a thread woken by a
    /// busy handler is moved to an idle CPU, which costs it a cross-CPU
    /// wake-up per fault (the README has the figures of both). Handlers
    /// that spin (`spin` above zero) always wake directly: a spinning
    /// handler keeps its CPU from the waker.
    pub direct_wake: bool,
    /// Hand the wake-up to the idle-class waker thread even where the
    /// handler could make it from the idle class itself (see the module
    /// docs on wake hand-off). Off by default: the handler's own switch
    /// costs a fault one context switch less. Where the process may not
    /// leave the idle class again (`RLIMIT_NICE` under 20 and no
    /// `CAP_SYS_NICE`: an unprivileged user, by default), the waker thread
    /// wakes them either way.
    pub wake_by_waker: bool,
    /// Open the swap file `O_DIRECT`. Off by default: an eviction's write
    /// then lands in the page cache and the kernel writes it out in the
    /// background, as its own swap does, instead of the faulting thread
    /// waiting for the disk (a synchronous write per dirty victim that the
    /// pool refused cost 0.3-1.7 ms per fault on this VM's virtio disk).
    /// The page cache it uses is the kernel's to reclaim.
    pub direct_io: bool,
    /// Count the cache's pool against the budget: resident pages are held
    /// to the budget less the pool's bytes (never under
    /// [`MIN_RESIDENT_DIVISOR`]th of it), as a cgroup v2 limit holds a process
    /// whose kernel zswap pool it charges. The budget is then the region's
    /// RAM in all: resident pages fill what the pool does not use, and the
    /// pool grows into the rest as pressure rises, up to its own limit
    /// (`max_pool_bytes`), past which it writes back. Off by default: the
    /// budget is resident pages alone, and the pool comes on top of it.
    pub pool_in_budget: bool,
}

/// With [`RegionOptions::pool_in_budget`], the budget over this (an
/// eighth) stays for resident pages however large the pool grows:
/// read-ahead runs and a random phase's hits need some, and a pool past the
/// rest is the pool limit's to write back.
pub const MIN_RESIDENT_DIVISOR: usize = 8;

/// An anonymous mapping, unmapped on drop.
struct Mapping {
    addr: usize,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> io::Result<Mapping> {
        // SAFETY: a fresh private anonymous mapping at an address the kernel
        // chooses; nothing else refers to it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let m = Mapping {
            addr: p as usize,
            len,
        };
        // Small pages only (UFFDIO_MOVE refuses large folios), and no
        // mapping in a child process (see the module docs on fork).
        m.advise(0, len, libc::MADV_NOHUGEPAGE)?;
        m.advise(0, len, libc::MADV_DONTFORK)?;
        Ok(m)
    }

    fn advise(&self, offset: usize, len: usize, advice: libc::c_int) -> io::Result<()> {
        debug_assert!(offset + len <= self.len);
        // SAFETY: the range lies inside this mapping; the advice values
        // used (NOHUGEPAGE, DONTFORK, DONTNEED) change no memory that Rust
        // references: DONTNEED is used only on pages whose contents are
        // stored elsewhere or no longer wanted.
        let r = unsafe { libc::madvise((self.addr + offset) as *mut _, len, advice) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping this value owns, once.
        unsafe { libc::munmap(self.addr as *mut _, self.len) };
    }
}

/// What the handler and the budget setter share, under `Shared::state`.
struct State {
    /// Flags per page (`RESIDENT`, `STORED`, `REFERENCED`).
    pages: Vec<u8>,
    /// Resident pages, oldest fault first (CLOCK's circle); may hold pages
    /// that are no longer resident, skipped when met.
    queue: VecDeque<u32>,
    /// Resident pages (the `RESIDENT` flags set).
    resident: usize,
    /// The page after the last fault's run: a fault there continues a scan.
    next_seq: usize,
    /// Pages to map at the next sequential fault.
    window: usize,
    /// Load buffer of `READAHEAD_MAX` pages, page-aligned (UFFDIO_COPY's
    /// source must be).
    buf: Mapping,
    /// The handler holding `state` maps pages without waking their
    /// threads: its waker will (see the module docs on wake hand-off).
    defer_wake: bool,
    /// xorshift state: which resident pages [`Shared::shed_copies`] probes.
    probe: u64,
    /// Random faults that skip shedding: after a probe that found no copy,
    /// 1, 2, 4, ... up to [`SHED_BACKOFF_MAX`], so that a region with no
    /// copies left does not pay for probes; a read-ahead run that keeps
    /// copies starts shedding again.
    shed_skip: u32,
    shed_backoff: u32,
    stats: RegionStats,
}

/// Fields drop in order: the mappings go before the userfaultfd closes,
/// so that no access is ever served by the kernel's zero-fill instead.
struct Shared {
    region: Mapping,
    staging: Mapping,
    uffd: Uffd,
    zswap: Arc<Zswap>,
    swap_type: u32,
    /// Bytes the program asked for (the mapping is rounded up to pages).
    size: usize,
    page: usize,
    budget_pages: AtomicUsize,
    /// [`RegionOptions::pool_in_budget`].
    pool_in_budget: bool,
    state: Mutex<State>,
    stop: AtomicBool,
    /// Written to wake the handler from poll(2) when it must stop.
    wakeup: OwnedFd,
    spin: Duration,
    /// With two handlers or more, pinned: which of them polls the
    /// userfaultfd (see the module docs on routing).
    route: Option<Route>,
    /// Handler `i`'s waker, if it has one (pinned handlers without
    /// [`RegionOptions::direct_wake`]).
    wakers: Vec<Waker>,
    /// The handlers wake threads from the idle class themselves, their
    /// wakers guarding them (see the module docs on wake hand-off).
    idle_wake: bool,
    /// The process that made the region (a forked child must not tear down
    /// what is its parent's).
    owner: libc::pid_t,
}

/// Handler `i` is pinned to `cpus[i]` and sleeps on `parks[i]` while
/// another is `active`.
struct Route {
    cpus: Vec<usize>,
    parks: Vec<OwnedFd>,
    active: AtomicUsize,
}

/// A thread of the idle scheduling class, pinned to its handler's CPU,
/// that wakes the threads whose faults the handler served; or, where the
/// handler makes those wakes from the idle class itself, an ordinary
/// thread that guards it (see the module docs on wake hand-off).
struct Waker {
    /// Set once the thread runs in the idle class (or, guarding, at all):
    /// until then (or if it could not), its handler wakes threads itself.
    ready: AtomicBool,
    /// A fault was served without waking its thread.
    owed: AtomicBool,
    /// Poked when `owed` is set, or to rouse a sleeping guard.
    bell: OwnedFd,
    /// Where the handler wakes threads from the idle class itself and this
    /// thread guards it: what they share (and, either way, the pause).
    guard: Guard,
}

/// What a handler that wakes threads from the idle class shares with its
/// guard, and the pause of hand-off that a late waker or a rescue starts.
/// Times are nanoseconds since `epoch`, plus one (0: none).
struct Guard {
    epoch: Instant,
    /// The handler's thread id, for the guard to take it out of the idle
    /// class.
    tid: AtomicI32,
    /// When the handler went into the idle class to wake threads; 0 once
    /// it is out again.
    since: AtomicU64,
    /// When it last did.
    last: AtomicU64,
    /// The guard sleeps on the bell, until the next hand-off.
    sleeping: AtomicBool,
    /// After a late waker or a rescue: the handler wakes threads directly
    /// until then.
    paused_until: AtomicU64,
}

impl Guard {
    fn new() -> Guard {
        Guard {
            epoch: Instant::now(),
            tid: AtomicI32::new(0),
            since: AtomicU64::new(0),
            last: AtomicU64::new(0),
            sleeping: AtomicBool::new(false),
            paused_until: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64 + 1
    }

    /// Hand-off stops for [`HAND_OFF_PAUSE`].
    fn pause(&self) {
        let until = self.now() + HAND_OFF_PAUSE.as_nanos() as u64;
        self.paused_until.store(until, Relaxed);
    }

    fn paused(&self) -> bool {
        let until = self.paused_until.load(Relaxed);
        until != 0 && self.now() < until
    }
}

/// Memory of `size` bytes of which at most `budget` bytes are resident; the
/// rest lives in its [`Zswap`]'s pool and swap file. See the module docs.
///
/// The memory is reached through [`as_ptr`](Region::as_ptr): any thread,
/// any access, as ordinary memory, until the region is dropped.
pub struct Region {
    shared: Arc<Shared>,
    /// Empty once shut down.
    handlers: Vec<JoinHandle<()>>,
    /// In signal mode, the region's slot in the signal handler's table.
    signal_slot: Option<usize>,
}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Region")
            .field("address", &self.shared.region.addr)
            .field("size", &self.shared.size)
            .field("budget", &self.budget())
            .finish()
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// Whether a region can be made here: `(usable, mode, reason)`, `mode`
/// being how the userfaultfd is obtained (`"syscall"` or
/// `"/dev/userfaultfd"`, `"none"` if refused) and `reason` what to change
/// when it is not usable.
pub fn userfaultfd_status() -> (bool, &'static str, String) {
    uffd::status()
}

impl Region {
    /// A region on a cache of its own made from `config`. Unless the
    /// config says otherwise, the cache keeps incompressible pages in its
    /// pool as they are (`store_incompressible`, as kernel 6.18 does), so
    /// that they reach the file in LRU order with the rest, not at once.
    pub fn new(
        size: usize,
        budget: usize,
        path: Option<&Path>,
        mut config: Config,
    ) -> Result<Region> {
        Self::check_sizes(size, budget)?;
        config.store_incompressible.get_or_insert(true);
        let zswap = Arc::new(Zswap::new(config)?);
        let options = RegionOptions {
            store: RegionStore::file(path),
            ..RegionOptions::default()
        };
        Self::with_options(zswap, size, budget, &options)
    }

    /// A region on `zswap`, whose pool it shares with the cache's other
    /// areas and regions.
    pub fn on(
        zswap: Arc<Zswap>,
        size: usize,
        budget: usize,
        path: Option<&Path>,
    ) -> Result<Region> {
        let options = RegionOptions {
            store: RegionStore::file(path),
            ..RegionOptions::default()
        };
        Self::with_options(zswap, size, budget, &options)
    }

    fn check_sizes(size: usize, budget: usize) -> Result<()> {
        let page = page_size();
        if size == 0 {
            return Err(Error::invalid("size must be positive, got 0"));
        }
        if budget < page {
            return Err(Error::invalid(format!(
                "budget must be at least one page ({page} bytes), got {budget}"
            )));
        }
        Ok(())
    }

    /// A region on `zswap` with every option.
    pub fn with_options(
        zswap: Arc<Zswap>,
        size: usize,
        budget: usize,
        options: &RegionOptions,
    ) -> Result<Region> {
        let pages = Self::check(&zswap, size, budget)?;
        let cpus: Vec<Option<usize>> = match (options.faults, options.pinned_handlers) {
            (FaultMode::Signal, _) => Vec::new(),
            (_, Some(0)) => vec![None],
            (_, n) => allowed_cpus()
                .into_iter()
                .take(n.unwrap_or(MAX_DEFAULT_HANDLERS))
                .map(Some)
                .collect(),
        };
        let shared = Arc::new(Shared::new(zswap, size, budget, pages, &cpus, options)?);
        let mut region = Region {
            shared,
            handlers: Vec::new(),
            signal_slot: None,
        };
        if options.faults == FaultMode::Signal {
            let slot = signal::register(&region.shared)
                .map_err(|e| Error::io(ErrorKind::System, "cannot serve faults from SIGBUS", e))?;
            region.signal_slot = Some(slot);
            return Ok(region);
        }
        for (me, cpu) in cpus.into_iter().enumerate() {
            let worker = Arc::clone(&region.shared);
            region
                .handlers
                .push(spawn("zswap-region", "fault handler", move || {
                    if let Some(cpu) = cpu {
                        pin_to(cpu);
                    }
                    worker.serve(me)
                })?);
            let (Some(cpu), true) = (cpu, me < region.shared.wakers.len()) else {
                continue;
            };
            let worker = Arc::clone(&region.shared);
            let thread = if region.shared.idle_wake {
                spawn("zswap-guard", "fault handler's guard", move || {
                    worker.run_guard(me)
                })
            } else {
                spawn("zswap-waker", "fault handler's waker", move || {
                    pin_to(cpu);
                    worker.run_waker(me)
                })
            };
            region.handlers.push(thread?);
        }
        Ok(region)
    }

    /// Check the arguments of a region on `zswap`; returns its pages.
    fn check(zswap: &Zswap, size: usize, budget: usize) -> Result<usize> {
        Self::check_sizes(size, budget)?;
        let page = page_size();
        if zswap.page_size() != page {
            return Err(Error::config(format!(
                "a region's cache must use the machine's page size ({page}), not {}",
                zswap.page_size()
            )));
        }
        let pages = size.div_ceil(page);
        if pages as u64 > MAX_AREA_PAGES {
            return Err(Error::invalid(format!(
                "size must be at most {} bytes, got {size}",
                MAX_AREA_PAGES * page as u64
            )));
        }
        Ok(pages)
    }

    /// The first byte of the region (page-aligned).
    pub fn as_ptr(&self) -> *mut u8 {
        self.shared.region.addr as *mut u8
    }

    /// The region's size in bytes, as asked for.
    pub fn len(&self) -> usize {
        self.shared.size
    }

    /// Never true: a region has at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Bytes that may be resident (a whole number of pages).
    pub fn budget(&self) -> usize {
        self.shared.budget_pages.load(Relaxed) * self.shared.page
    }

    /// Change the budget; a lower one evicts down to it before returning.
    pub fn set_budget(&self, budget: usize) -> Result<()> {
        let page = self.shared.page;
        if budget < page {
            return Err(Error::invalid(format!(
                "budget must be at least one page ({page} bytes), got {budget}"
            )));
        }
        let mut st = self.shared.state.lock();
        self.shared.budget_pages.store(budget / page, Relaxed);
        let pages = self.shared.resident_budget();
        if st.resident > pages {
            let excess = st.resident - pages;
            self.shared.evict(&mut st, excess);
        }
        Ok(())
    }

    /// Bytes mapped now.
    pub fn resident_bytes(&self) -> usize {
        self.shared.state.lock().resident * self.shared.page
    }

    /// The region's counters.
    pub fn stats(&self) -> RegionStats {
        let st = self.shared.state.lock();
        RegionStats {
            resident_pages: st.resident as u64,
            ..st.stats
        }
    }

    /// The cache the region's pages are stored in.
    pub fn zswap(&self) -> &Arc<Zswap> {
        &self.shared.zswap
    }

    /// The region's swap area in its cache.
    pub fn swap_type(&self) -> u32 {
        self.shared.swap_type
    }

    /// Unmap the region and free its entries and slots. Dropping it does
    /// the same; after either, the memory is gone (an access is `SIGSEGV`).
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if self.shared.stop.swap(true, Relaxed) {
            return;
        }
        // SAFETY: getpid has no preconditions.
        if unsafe { libc::getpid() } != self.shared.owner {
            // A forked child dropping its copy: it has no mapping and no
            // handler threads, and the swap file is shared with the parent.
            // Unmapping could hit whatever the child mapped there since, and
            // swapping off would free the parent's slots: leave it all.
            std::mem::forget(std::mem::take(&mut self.handlers));
            std::mem::forget(Arc::clone(&self.shared));
            return;
        }
        poke(&self.shared.wakeup);
        for handler in self.handlers.drain(..) {
            let _ = handler.join();
        }
        if let Some(slot) = self.signal_slot.take() {
            signal::unregister(slot);
        }
        // The mappings go when the last `Shared` does (this one, now that
        // the handler is gone); the area's entries and slots go now.
        let _ = self.shared.zswap.swapoff_held(self.shared.swap_type);
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The CPUs this process may run on, lowest first.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is an empty set; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is this thread; the size is the set's.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    if rc != 0 {
        return vec![0];
    }
    // SAFETY: CPU_ISSET reads the set within its size.
    (0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// Pin the calling thread to `cpu` (best effort: unpinned if refused).
fn pin_to(cpu: usize) {
    // SAFETY: as in `allowed_cpus`; CPU_SET writes within the set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set);
    }
}

/// Sleep in ppoll(2) until `a` or `b` is readable (or a signal), or for
/// `timeout` at most (to the nanosecond, which poll(2) does not take).
fn poll_two(a: libc::c_int, b: libc::c_int, timeout: Option<Duration>) {
    let mut fds = [a, b].map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs() as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: two valid pollfd structs in a local array; `ts_ptr` is null
    // or points to a local timespec; no signal mask is changed.
    unsafe { libc::ppoll(fds.as_mut_ptr(), 2, ts_ptr, std::ptr::null()) };
}

/// A sleeping handler or waker: sleep until `park` is poked (its count
/// then read back to zero) or `stop` is written.
fn wait_for(park: &OwnedFd, stop: &OwnedFd) {
    poll_two(park.as_raw_fd(), stop.as_raw_fd(), None);
    let mut count = 0u64;
    // SAFETY: reading 8 bytes into a local u64 from our non-blocking
    // eventfd; EAGAIN (not poked) leaves it alone.
    unsafe { libc::read(park.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
}

/// Start a thread of the region's, named `name`; an error says it is
/// `what`.
fn spawn(name: &str, what: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|e| Error::io(ErrorKind::System, format!("cannot start the {what}"), e))
}

/// Put thread `tid` (0: the calling one) in scheduling class `policy`
/// (`SCHED_OTHER` or `SCHED_IDLE`); whether it could.
fn set_policy(tid: libc::pid_t, policy: libc::c_int) -> bool {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid local; a stale `tid` fails with ESRCH or
    // names a thread of ours.
    unsafe { libc::sched_setscheduler(tid, policy, &param) == 0 }
}

/// Whether a thread of this process may go into the idle scheduling class
/// and come back (back needs `RLIMIT_NICE` of 20 or more at nice 0, or
/// `CAP_SYS_NICE`), asked of a thread made for it, which is left in the
/// idle class if not. Only from the ordinary class: a handler inherits its
/// maker's, and would be put back in the ordinary one.
fn can_leave_idle_class() -> bool {
    // SAFETY: sched_getscheduler of the calling thread has no preconditions.
    if unsafe { libc::sched_getscheduler(0) } != libc::SCHED_OTHER {
        return false;
    }
    std::thread::Builder::new()
        .name("zswap-probe".into())
        .spawn(|| set_policy(0, libc::SCHED_IDLE) && set_policy(0, libc::SCHED_OTHER))
        .ok()
        .and_then(|t| t.join().ok())
        .unwrap_or(false)
}

/// A handler's side of wake hand-off.
struct HandOff<'a> {
    /// Its waker, if it has one.
    waker: Option<&'a Waker>,
    /// When the wake-up the waker owes was handed to it.
    owed_since: Option<Instant>,
}

impl<'a> HandOff<'a> {
    fn new(waker: Option<&'a Waker>) -> HandOff<'a> {
        HandOff {
            waker,
            owed_since: None,
        }
    }

    /// Whether the next batch's wake-ups go to the waker.
    fn active(&self) -> bool {
        self.waker
            .is_some_and(|waker| !waker.guard.paused() && waker.ready.load(Acquire))
    }

    /// The batch just served owes its threads a wake-up: the waker's.
    fn owe(&mut self) {
        let Some(waker) = self.waker else { return };
        if !waker.owed.swap(true, AcqRel) {
            self.owed_since = Some(Instant::now());
            poke(&waker.bell);
        }
    }

    /// When the handler must look whether its waker ran.
    fn deadline(&self) -> Option<Instant> {
        self.owed_since.map(|t| t + WAKE_GUARD)
    }
}

/// Add one to an eventfd's count, waking whoever polls it.
fn poke(fd: &OwnedFd) {
    let one: u64 = 1;
    // SAFETY: writing 8 bytes from a local u64 to our eventfd.
    unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
}

/// The CPU thread `tid` of this process runs on, or last ran on if it
/// sleeps (field 39 of its stat), if it is still there to ask. `file`
/// keeps the last thread's stat file open: a `pread` of it costs 3 us
/// here, against 8 us to open, read and close it.
fn thread_cpu(tid: u32, file: &mut Option<(u32, std::fs::File)>) -> Option<usize> {
    use std::os::unix::fs::FileExt;
    if file.as_ref().is_none_or(|(t, _)| *t != tid) {
        *file = None;
        let f = std::fs::File::open(format!("/proc/self/task/{tid}/stat")).ok()?;
        *file = Some((tid, f));
    }
    let (_, f) = file.as_ref()?;
    let mut buf = [0u8; 1024];
    let n = f.read_at(&mut buf, 0).ok()?;
    let stat = std::str::from_utf8(&buf[..n]).ok()?;
    // The name (field 2) is in parentheses and may hold spaces; the state,
    // field 3, follows the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    rest.split(' ').nth(39 - 3)?.parse().ok()
}

/// Open and handshake a userfaultfd (raising `SIGBUS` instead of queueing
/// faults, for signal mode), or say what to change.
fn open_uffd(signal_mode: bool) -> Result<Uffd> {
    let u = Uffd::open()
        .map_err(|(sys, dev)| Error::config(uffd::refused_message(&sys, dev.as_ref())))?;
    let sigbus = if signal_mode { uffd::FEATURE_SIGBUS } else { 0 };
    u.handshake(uffd::REQUIRED_FEATURES | sigbus)
        .map_err(|e| Error::config(uffd::features_message(&e)))?;
    Ok(u)
}

fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd(2) with flags only; returns a fresh fd.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Turn on the region's swap area: on its store, or on a fresh file in the
/// temporary directory that is unlinked at once (the area keeps it open).
fn swapon(zswap: &Zswap, pages: u64, store: &RegionStore, options: &FileOptions) -> Result<u32> {
    match store {
        RegionStore::File(path) => return zswap.swapon_file(path, pages, options),
        RegionStore::Redis(url, redis) => return zswap.swapon_redis(url, pages, redis),
        RegionStore::TempFile => {}
    }
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = format!(
        ".zswap-rs-region-{}-{}-{nanos:x}.swap",
        std::process::id(),
        SERIAL.fetch_add(1, Relaxed)
    );
    let tmp = std::env::temp_dir().join(name);
    // Created here, exclusively and 0600, so that the path is ours when the
    // area opens it.
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| {
            Error::io(
                ErrorKind::Backing,
                format!("cannot create the region's swap file {}", tmp.display()),
                e,
            )
        })?;
    let t = zswap.swapon_file(&tmp, pages, options);
    let _ = std::fs::remove_file(&tmp);
    t
}

/// Whether a page is all zero bytes.
fn is_zero(page: &[u8]) -> bool {
    let (head, words, tail) = {
        // SAFETY: u64 has no invalid bit patterns; align_to only reinterprets.
        unsafe { page.align_to::<u64>() }
    };
    head.iter().all(|&b| b == 0) && tail.iter().all(|&b| b == 0) && words.iter().all(|&w| w == 0)
}

impl Shared {
    /// The mappings, the userfaultfd that serves them, and the region's
    /// swap area (held, so that the cache cannot take it away), for a
    /// region of `pages` pages; the handlers are the caller's to start.
    fn new(
        zswap: Arc<Zswap>,
        size: usize,
        budget: usize,
        pages: usize,
        cpus: &[Option<usize>],
        options: &RegionOptions,
    ) -> Result<Shared> {
        let page = page_size();
        let uffd = open_uffd(options.faults == FaultMode::Signal)?;
        let io_err = |what: &str, e: io::Error| Error::io(ErrorKind::Config, what.to_string(), e);
        let region = Mapping::new(pages * page).map_err(|e| io_err("cannot map the region", e))?;
        let staging = Mapping::new(STAGING_PAGES * page)
            .map_err(|e| io_err("cannot map the staging range", e))?;
        let buf = Mapping::new(READAHEAD_MAX * page)
            .map_err(|e| io_err("cannot map the load buffer", e))?;
        let mode = uffd::REGISTER_MODE_MISSING | uffd::REGISTER_MODE_WP;
        for m in [&region, &staging] {
            uffd.register(m.addr, m.len, mode)
                .map_err(|e| io_err("cannot register the region with userfaultfd", e))?;
        }
        // Slot `i` is page `i`'s: a freed slot is written again at the
        // page's next eviction, so punching it would only cost (on a
        // filesystem mounted `discard`, milliseconds inside a fault).
        let file = FileOptions {
            direct: options.direct_io,
            discard: false,
            ..FileOptions::default()
        };
        let wakeup = eventfd().map_err(|e| io_err("cannot make an eventfd", e))?;
        let route = match cpus.iter().copied().collect::<Option<Vec<usize>>>() {
            Some(cpus) if cpus.len() > 1 => {
                let parks = cpus.iter().map(|_| eventfd()).collect::<io::Result<_>>();
                Some(Route {
                    cpus,
                    parks: parks.map_err(|e| io_err("cannot make an eventfd", e))?,
                    active: AtomicUsize::new(0),
                })
            }
            _ => None,
        };
        let pinned = cpus.iter().take_while(|c| c.is_some()).count();
        // A spinning handler keeps its CPU busy, so an idle-class waker
        // would not run there until it stops.
        let spin = options.spin.unwrap_or(DEFAULT_SPIN);
        let wakers = if options.direct_wake || !spin.is_zero() {
            0
        } else {
            pinned
        };
        let wakers = (0..wakers)
            .map(|_| {
                Ok(Waker {
                    ready: AtomicBool::new(false),
                    owed: AtomicBool::new(false),
                    bell: eventfd()?,
                    guard: Guard::new(),
                })
            })
            .collect::<io::Result<Vec<_>>>()
            .map_err(|e| io_err("cannot make an eventfd", e))?;
        let swap_type = swapon(&zswap, pages as u64, &options.store, &file)?;
        if let Err(e) = zswap.hold(swap_type) {
            let _ = zswap.swapoff(swap_type);
            return Err(e);
        }
        Ok(Shared {
            zswap,
            swap_type,
            uffd,
            region,
            staging,
            size,
            page,
            budget_pages: AtomicUsize::new(budget / page),
            pool_in_budget: options.pool_in_budget,
            state: Mutex::new(State {
                pages: vec![0; pages],
                queue: VecDeque::new(),
                resident: 0,
                next_seq: usize::MAX,
                window: 1,
                buf,
                defer_wake: false,
                probe: 0x9E37_79B9_7F4A_7C15,
                shed_skip: 0,
                shed_backoff: 0,
                stats: RegionStats::default(),
            }),
            stop: AtomicBool::new(false),
            wakeup,
            spin,
            route,
            idle_wake: !wakers.is_empty() && !options.wake_by_waker && can_leave_idle_class(),
            wakers,
            // SAFETY: getpid has no preconditions.
            owner: unsafe { libc::getpid() },
        })
    }

    fn addr(&self, page: usize) -> usize {
        self.region.addr + page * self.page
    }

    /// Pages that may be resident now: the budget, less the pool's pages
    /// with [`RegionOptions::pool_in_budget`].
    fn resident_budget(&self) -> usize {
        let budget = self.budget_pages.load(Relaxed).max(1);
        if !self.pool_in_budget {
            return budget;
        }
        let pool = self.zswap.pool().total_bytes().div_ceil(self.page as u64);
        let floor = (budget / MIN_RESIDENT_DIVISOR).max(1);
        budget.saturating_sub(pool as usize).max(floor)
    }

    /// Handler `me`: read faults and serve them until told to stop.
    fn serve(&self, me: usize) {
        let mut msgs = [Msg::default(); 16];
        let mut idle_since: Option<Instant> = None;
        let mut since_look = 0u32;
        // The other handler's CPU the last look saw the faulting thread on.
        let mut seen_away: Option<usize> = None;
        let mut stat_file = None;
        // After a short batch the queue is most likely empty: sleep at once
        // instead of first reading nothing (a syscall per fault saved).
        let mut drained = false;
        let mut hand_off = HandOff::new(self.wakers.get(me));
        if let Some(waker) = self.wakers.get(me) {
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            waker.guard.tid.store(tid, Release);
        }
        while !self.stop.load(Relaxed) {
            if let Some(route) = &self.route {
                if route.active.load(Acquire) != me {
                    // Parked, it would not notice a starving waker.
                    self.settle(&mut hand_off, false);
                    wait_for(&route.parks[me], &self.wakeup);
                    continue;
                }
            }
            self.settle(&mut hand_off, true);
            if drained && self.spin.is_zero() {
                self.sleep(hand_off.deadline());
            }
            let n = match self.uffd.read_msgs(&mut msgs) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
                Err(_) => break,
            };
            if n == 0 {
                let since = *idle_since.get_or_insert_with(Instant::now);
                if since.elapsed() < self.spin {
                    std::hint::spin_loop();
                    continue;
                }
                idle_since = None;
                drained = false;
                self.settle(&mut hand_off, true);
                self.sleep(hand_off.deadline());
                continue;
            }
            idle_since = None;
            drained = n < msgs.len();
            let defer = hand_off.active();
            let mut st = self.state.lock();
            st.defer_wake = defer;
            let mut tid = None;
            for m in &msgs[..n] {
                if m.event == uffd::EVENT_PAGEFAULT {
                    self.on_fault(&mut st, m);
                    tid = Some(m.ptid);
                    since_look += 1;
                }
            }
            st.defer_wake = false;
            drop(st);
            if defer {
                if self.idle_wake {
                    self.wake_from_idle(me);
                } else {
                    hand_off.owe();
                }
            }
            let (Some(route), Some(tid)) = (&self.route, tid) else {
                continue;
            };
            if since_look < ROUTE_SAMPLE {
                continue;
            }
            since_look = 0;
            let away = thread_cpu(tid, &mut stat_file)
                .and_then(|c| route.cpus.iter().position(|&h| h == c))
                .filter(|&h| h != me);
            match away {
                Some(to) if seen_away == Some(to) => {
                    seen_away = None;
                    self.state.lock().stats.handler_switches += 1;
                    route.active.store(to, Release);
                    poke(&route.parks[to]);
                }
                _ => seen_away = away,
            }
        }
        self.settle(&mut hand_off, false);
    }

    /// Sleep in ppoll(2) until a fault or the stop signal, or `deadline`.
    fn sleep(&self, deadline: Option<Instant>) {
        let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        poll_two(self.uffd.raw(), self.wakeup.as_raw_fd(), timeout);
    }

    /// Wake the threads waiting on `[addr, addr + len)`: now, or, while
    /// the handler holding `st` hands its wake-ups off, by its waker.
    fn wake(&self, st: &State, addr: usize, len: usize) -> io::Result<()> {
        if st.defer_wake {
            return Ok(());
        }
        self.uffd.wake(addr, len)
    }

    /// Wake every thread waiting on a fault in the region, if
    /// `hand_off`'s waker still owes a wake-up and has had `WAKE_GUARD` to
    /// make it (or at once, unless `patient`); a late waker pauses the
    /// hand-off.
    fn settle(&self, hand_off: &mut HandOff<'_>, patient: bool) {
        let Some(since) = hand_off.owed_since else {
            return;
        };
        let Some(waker) = hand_off.waker else { return };
        if !waker.owed.load(Acquire) {
            hand_off.owed_since = None;
            return;
        }
        let late = since.elapsed() >= WAKE_GUARD;
        if patient && !late {
            return;
        }
        hand_off.owed_since = None;
        if waker.owed.swap(false, AcqRel) {
            let _ = self.wake_region();
            if late {
                waker.guard.pause();
                self.state.lock().stats.waker_timeouts += 1;
            }
        }
    }

    /// Handler `me`: wake the threads whose faults it just served from the
    /// idle scheduling class, so that they stay on this CPU (see the module
    /// docs on wake hand-off); the one woken runs at once, and the handler
    /// leaves the class when it next gets the CPU. Its guard watches it.
    fn wake_from_idle(&self, me: usize) {
        let guard = &self.wakers[me].guard;
        let t = guard.now();
        guard.last.store(t, SeqCst);
        if guard.sleeping.load(SeqCst) && guard.sleeping.swap(false, SeqCst) {
            poke(&self.wakers[me].bell);
        }
        guard.since.store(t, Release);
        set_policy(0, libc::SCHED_IDLE);
        let _ = self.wake_region();
        // Cannot fail: the region was made only if a probe thread could.
        set_policy(0, libc::SCHED_OTHER);
        let _ = guard.since.compare_exchange(t, 0, AcqRel, Relaxed);
    }

    /// Guard `me`: an ordinary thread, not pinned, that takes its handler
    /// out of the idle class if it has been there [`WAKE_GUARD`] (the
    /// handler's CPU busy with other work: an idle-class thread gets almost
    /// no CPU beside it), wakes the threads it owed a wake-up, and has it
    /// wake threads directly for [`HAND_OFF_PAUSE`]. It looks every
    /// [`WAKE_GUARD`] while hand-offs come, and sleeps on the bell once
    /// none came for [`GUARD_QUIET`].
    fn run_guard(&self, me: usize) {
        let waker = &self.wakers[me];
        let guard = &waker.guard;
        let quiet = GUARD_QUIET.as_nanos() as u64;
        let late = WAKE_GUARD.as_nanos() as u64;
        waker.ready.store(true, Release);
        while !self.stop.load(Relaxed) {
            if guard.now().saturating_sub(guard.last.load(SeqCst)) > quiet {
                guard.sleeping.store(true, SeqCst);
                if guard.now().saturating_sub(guard.last.load(SeqCst)) > quiet {
                    wait_for(&waker.bell, &self.wakeup);
                }
                guard.sleeping.store(false, SeqCst);
                continue;
            }
            poll_two(-1, self.wakeup.as_raw_fd(), Some(WAKE_GUARD));
            let since = guard.since.load(Acquire);
            if since == 0 || guard.now().saturating_sub(since) < late {
                continue;
            }
            if guard
                .since
                .compare_exchange(since, 0, AcqRel, Relaxed)
                .is_ok()
            {
                set_policy(guard.tid.load(Acquire), libc::SCHED_OTHER);
                let _ = self.wake_region();
                guard.pause();
                self.state.lock().stats.waker_timeouts += 1;
            }
        }
    }

    /// Wake every thread waiting on a fault in the region (a thread woken
    /// for nothing retries its access and faults again).
    fn wake_region(&self) -> io::Result<()> {
        self.uffd.wake(self.region.addr, self.region.len)
    }

    /// Waker `me`: in the idle scheduling class, so that a thread it wakes
    /// stays on this CPU (see the module docs on wake hand-off), wake the
    /// region's waiting threads whenever its handler owes them a wake-up.
    fn run_waker(&self, me: usize) {
        let waker = &self.wakers[me];
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: pid 0 is the calling thread; `param` is a valid local.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0 {
            // Woken from a busy CPU, threads would move as they do from the
            // handler: leave it to the handler.
            return;
        }
        waker.ready.store(true, Release);
        while !self.stop.load(Relaxed) {
            wait_for(&waker.bell, &self.wakeup);
            if waker.owed.swap(false, AcqRel) {
                // The handler that just went to sleep may still be queued
                // here (EEVDF's delayed dequeue, Linux 6.12): then this CPU
                // does not count as idle, and the thread woken next would
                // be moved away. A yield lets the scheduler take it off
                // first (the region bench: 0-1 handler switches for 12,824
                // faults with it, 230-800 without).
                // SAFETY: sched_yield has no preconditions.
                unsafe { libc::sched_yield() };
                let _ = self.wake_region();
            }
        }
    }

    fn on_fault(&self, st: &mut State, m: &Msg) {
        let addr = m.address as usize & !(self.page - 1);
        if addr < self.region.addr || addr >= self.region.addr + self.region.len {
            // Nothing but the handler should touch the staging range; if
            // something did, a zero page keeps it from hanging.
            let _ = self.uffd.zeropage(addr, self.page, true);
            return;
        }
        let p = (addr - self.region.addr) / self.page;
        let result = if m.flags & uffd::PAGEFAULT_FLAG_WP != 0 {
            self.on_write_protect(st, p)
        } else {
            self.on_missing(st, p, m.flags & uffd::PAGEFAULT_FLAG_WRITE != 0)
        };
        if result.is_err() {
            st.stats.fault_errors += 1;
            // As the kernel does on a swap-in read error: the thread gets
            // SIGBUS (a syscall, EFAULT), never wrong bytes.
            // SAFETY: tgkill with our own pid and a thread id from the
            // kernel; a thread that has exited makes it fail harmlessly.
            unsafe {
                libc::syscall(
                    libc::SYS_tgkill,
                    libc::getpid(),
                    m.ptid as libc::c_int,
                    libc::SIGBUS,
                )
            };
        }
    }

    /// Signal mode: serve the fault at `addr` (in the region) in the
    /// faulting thread; `kind` is `(write, present)` where the signal frame
    /// tells, else the page's flags tell (a resident page faults only for
    /// its write protection). Returns whether it was served; if not, the
    /// thread gets the default `SIGBUS`, as on a swap-in read error.
    fn serve_signal(&self, addr: usize, kind: Option<(bool, bool)>) -> bool {
        let mut st = self.state.lock();
        let p = (addr - self.region.addr) / self.page;
        let resident = st.pages[p] & RESIDENT != 0;
        let (write, present) = kind.unwrap_or((false, resident));
        let result = if present {
            self.on_write_protect(&mut st, p)
        } else {
            self.on_missing(&mut st, p, write)
        };
        if result.is_err() {
            st.stats.fault_errors += 1;
        }
        result.is_ok()
    }

    /// First write to a clean page: its stored copy is stale now.
    fn on_write_protect(&self, st: &mut State, p: usize) -> io::Result<()> {
        let addr = self.addr(p);
        let flags = st.pages[p];
        if flags & RESIDENT == 0 {
            // Evicted since the write faulted: it retries, and faults again
            // as missing.
            return self.wake(st, addr, self.page);
        }
        st.stats.wp_faults += 1;
        if flags & STORED != 0 {
            let _ = self.zswap.invalidate(self.swap_type, p as u64);
        }
        st.pages[p] = RESIDENT | REFERENCED;
        let wake = !st.defer_wake;
        retry(|| self.uffd.unprotect(addr, self.page, wake))
    }

    fn on_missing(&self, st: &mut State, p: usize, write: bool) -> io::Result<()> {
        let addr = self.addr(p);
        if st.pages[p] & RESIDENT != 0 {
            // Mapped by read-ahead or by another thread's fault meanwhile.
            return self.wake(st, addr, self.page);
        }
        st.stats.faults += 1;
        let budget = self.resident_budget();
        st.window = if p == st.next_seq {
            (st.window * 2).min(READAHEAD_MAX)
        } else {
            1
        };
        let limit = st.window.min((budget / 4).max(1)).min(st.pages.len() - p);
        let mut run = 1;
        while run < limit && st.pages[p + run] & RESIDENT == 0 {
            run += 1;
        }
        self.make_room(st, run, budget);
        if run == 1 && !write && st.pages[p] & STORED == 0 {
            let wake = !st.defer_wake;
            retry(|| self.uffd.zeropage(addr, self.page, wake))?;
            st.stats.zero_fills += 1;
            self.mapped(st, p, 1, false);
            return Ok(());
        }
        // A page faulted in alone, with the pool counted in the budget, is
        // taken out of the pool: its copy would cost resident pages for as
        // long as it stays, and a random access pattern keeps it long (see
        // the module docs on exclusive loads). A read-ahead run keeps its
        // copies: a scan evicts it again soon, clean.
        let take = write || (self.pool_in_budget && run == 1);
        if self.pool_in_budget && st.window == 1 {
            if st.shed_skip > 0 {
                st.shed_skip -= 1;
            } else if self.shed_copies(st, SHED_PER_FAULT) == 0 {
                st.shed_backoff = (st.shed_backoff * 2).clamp(1, SHED_BACKOFF_MAX);
                st.shed_skip = st.shed_backoff;
            } else {
                st.shed_backoff = 0;
            }
        }
        let run = self.fill(st, p, run, take)?;
        // A write maps its run dirty: the program is writing, so spare it a
        // write-protect fault per page; their stored copies are stale. A
        // read maps it write protected only if some page of it kept a
        // stored copy, which a write must invalidate.
        let clean = !write && (p..p + run).any(|q| st.pages[q] & STORED != 0);
        if write {
            for q in p..p + run {
                if st.pages[q] & STORED != 0 {
                    let _ = self.zswap.invalidate(self.swap_type, q as u64);
                    st.pages[q] &= !STORED;
                }
            }
        }
        let src = st.buf.addr as *const u8;
        self.install(st, addr, src, run, clean)?;
        if clean && run > 1 {
            st.shed_skip = 0;
            st.shed_backoff = 0;
        }
        self.mapped(st, p, run, clean);
        st.stats.prefetched += run as u64 - 1;
        st.next_seq = p + run;
        Ok(())
    }

    /// Evict until `run` more pages fit in the resident budget (`budget`
    /// now). With `pool_in_budget` the evictions grow the pool, and so
    /// shrink the budget: look again, a few times at most, while evicting
    /// still frees pages.
    fn make_room(&self, st: &mut State, run: usize, mut budget: usize) {
        for _ in 0..4 {
            if st.resident + run <= budget {
                return;
            }
            let want = (st.resident + run - budget).max(EVICT_BATCH.min(budget / 8));
            let before = st.resident;
            self.evict(st, want);
            if !self.pool_in_budget || st.resident == before {
                return;
            }
            budget = self.resident_budget();
        }
    }

    /// Drop the pool's copies of up to `n` resident clean pages, found by
    /// probing [`SHED_PROBES`] pages at random (a random resident page is
    /// as far from eviction as any, on average): they stay resident, now
    /// dirty, and are compressed again when evicted. A copy in the file
    /// stays: it costs no memory.
    /// Returns how many it dropped.
    fn shed_copies(&self, st: &mut State, n: usize) -> usize {
        let pages = st.pages.len() as u64;
        let mut left = n;
        for _ in 0..SHED_PROBES {
            let mut x = st.probe;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            st.probe = x;
            let q = (x % pages) as usize;
            // A copy in the file costs no memory: it stays, and the page
            // is dropped clean when evicted (no compression).
            if st.pages[q] & (RESIDENT | STORED) == RESIDENT | STORED
                && matches!(
                    self.zswap.invalidate_cached(self.swap_type, q as u64),
                    Ok(true)
                )
            {
                st.pages[q] &= !STORED;
                // Writable now, so that a write costs no fault: nothing
                // waits on it, and a thread that did fault on it meanwhile
                // is served from the queue as usual.
                let _ = retry(|| self.uffd.unprotect(self.addr(q), self.page, false));
                st.stats.shed_copies += 1;
                left -= 1;
                if left == 0 {
                    break;
                }
            }
        }
        n - left
    }

    /// Load pages `p..p + run` into the buffer (zeros where nothing is
    /// stored); returns how many could be loaded, at least 1 or an error.
    /// With `take` (or the cache's `exclusive_loads`) the pool's copies are
    /// dropped as they are loaded; a page read from the file keeps its slot.
    fn fill(&self, st: &mut State, p: usize, run: usize, take: bool) -> io::Result<usize> {
        let take = take || self.zswap.exclusive_loads();
        for i in 0..run {
            let q = p + i;
            // SAFETY: the buffer is READAHEAD_MAX >= run pages of our own
            // private mapping, not registered with userfaultfd, and only
            // this thread (holding `state`) uses it.
            let out = unsafe {
                std::slice::from_raw_parts_mut((st.buf.addr + i * self.page) as *mut u8, self.page)
            };
            if st.pages[q] & STORED == 0 {
                out.fill(0);
                st.stats.zero_fills += 1;
                continue;
            }
            let loaded = if take {
                self.zswap.take_into(self.swap_type, q as u64, out)
            } else {
                self.zswap.load_into(self.swap_type, q as u64, out)
            };
            match loaded {
                Ok(LoadSource::Backing) => {}
                // The pool's copy is gone: the page is dirty from now.
                Ok(_) if take => st.pages[q] &= !STORED,
                Ok(_) => {}
                Err(_) if i == 0 => return Err(io::Error::from_raw_os_error(libc::EIO)),
                Err(_) => return Ok(i),
            }
        }
        Ok(run)
    }

    /// Map `run` pages from `src` at `addr`, page by page where a page in
    /// the run turns out to be mapped already.
    fn install(
        &self,
        st: &State,
        addr: usize,
        src: *const u8,
        run: usize,
        clean: bool,
    ) -> io::Result<()> {
        let len = run * self.page;
        let wake = !st.defer_wake;
        match retry(|| self.uffd.copy(addr, src, len, clean, wake)) {
            Ok(n) if n == len => Ok(()),
            Ok(_) | Err(_) => {
                for i in 0..run {
                    let a = addr + i * self.page;
                    // SAFETY: `src` spans `run` pages (the caller's buffer).
                    let s = unsafe { src.add(i * self.page) };
                    match retry(|| self.uffd.copy(a, s, self.page, clean, wake)) {
                        Ok(_) => {}
                        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                            self.wake(st, a, self.page)?;
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
        }
    }

    fn mapped(&self, st: &mut State, p: usize, run: usize, clean: bool) {
        for q in p..p + run {
            let stored = if clean { st.pages[q] & STORED } else { 0 };
            st.pages[q] = RESIDENT | stored;
            st.queue.push_back(q as u32);
        }
        st.resident += run;
    }

    /// Evict up to `want` resident pages, oldest first (CLOCK).
    fn evict(&self, st: &mut State, want: usize) {
        let mut clean = Vec::new();
        let mut dirty = Vec::new();
        let mut budget_scan = 2 * st.queue.len() + 1;
        while clean.len() + dirty.len() < want && budget_scan > 0 {
            budget_scan -= 1;
            let Some(q) = st.queue.pop_front() else { break };
            let q = q as usize;
            let flags = st.pages[q];
            if flags & RESIDENT == 0 {
                continue;
            }
            if flags & REFERENCED != 0 {
                st.pages[q] &= !REFERENCED;
                st.queue.push_back(q as u32);
                continue;
            }
            if flags & STORED != 0 {
                clean.push(q);
            } else {
                dirty.push(q);
            }
        }
        // One madvise per run of neighbours: each call costs a TLB
        // shoot-down on every CPU the program runs on, and a scan's victims
        // are neighbours.
        clean.sort_unstable();
        for run in clean.chunk_by(|a, b| b == &(a + 1)) {
            let len = run.len() * self.page;
            if run.len() > 1
                && self
                    .region
                    .advise(run[0] * self.page, len, libc::MADV_DONTNEED)
                    .is_ok()
            {
                for &q in run {
                    self.dropped_clean(st, q);
                }
                continue;
            }
            for &q in run {
                // The page is write protected: a write to it waits for this
                // thread, and finds it missing after the drop.
                if self
                    .region
                    .advise(q * self.page, self.page, libc::MADV_DONTNEED)
                    .is_ok()
                {
                    self.dropped_clean(st, q);
                } else {
                    st.queue.push_back(q as u32);
                }
            }
        }
        for chunk in dirty.chunks(STAGING_PAGES) {
            self.evict_dirty(st, chunk);
        }
    }

    fn dropped_clean(&self, st: &mut State, q: usize) {
        st.pages[q] = STORED;
        st.resident -= 1;
        st.stats.evictions += 1;
        st.stats.clean_evictions += 1;
    }

    /// Move `victims` (dirty, resident) to the staging range, store them,
    /// and empty the staging range.
    fn evict_dirty(&self, st: &mut State, victims: &[usize]) {
        let mut staged = Vec::with_capacity(victims.len());
        for &q in victims {
            let slot = self.staging.addr + staged.len() * self.page;
            match retry(|| self.uffd.move_pages(slot, self.addr(q), self.page)) {
                Ok(_) => staged.push(q),
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    // The program dropped it (MADV_DONTNEED): it reads as
                    // zeros, as an anonymous page would.
                    st.pages[q] = 0;
                    st.resident -= 1;
                }
                Err(_) => {
                    // Pinned (EBUSY: O_DIRECT I/O in flight) or shared:
                    // keep it, with a second chance.
                    st.pages[q] |= REFERENCED;
                    st.queue.push_back(q as u32);
                    st.stats.kept_resident += 1;
                }
            }
        }
        for (i, &q) in staged.iter().enumerate() {
            let slot = self.staging.addr + i * self.page;
            // SAFETY: the slot holds the page just moved there (present),
            // which only this thread (holding `state`) uses until the
            // staging range is emptied below.
            let page = unsafe { std::slice::from_raw_parts(slot as *const u8, self.page) };
            if is_zero(page) {
                st.pages[q] = 0;
                st.resident -= 1;
                st.stats.evictions += 1;
                continue;
            }
            match self.zswap.store(self.swap_type, q as u64, page) {
                Ok(StoreOutcome::Stored | StoreOutcome::SameFilled | StoreOutcome::Swapped) => {
                    st.pages[q] = STORED;
                    st.resident -= 1;
                    st.stats.evictions += 1;
                }
                Ok(StoreOutcome::Rejected(_)) | Err(_) => self.put_back(st, q, slot),
            }
        }
        if !staged.is_empty() {
            let _ = self
                .staging
                .advise(0, staged.len() * self.page, libc::MADV_DONTNEED);
        }
    }

    /// A victim that could not be stored goes back where it was, resident
    /// and dirty (`kept_resident`).
    fn put_back(&self, st: &mut State, q: usize, slot: usize) {
        let addr = self.addr(q);
        if retry(|| self.uffd.move_pages(addr, slot, self.page)).is_err() {
            // Moving back can fail only if the page was mapped meanwhile,
            // which nothing but this thread does; copy as a last resort.
            let _ = retry(|| {
                self.uffd
                    .copy(addr, slot as *const u8, self.page, false, true)
            });
        }
        st.pages[q] = RESIDENT | REFERENCED;
        st.queue.push_back(q as u32);
        st.stats.kept_resident += 1;
    }
}

/// Run a userfaultfd call again while the kernel says the address space is
/// changing under it (EAGAIN) or memory is short for a moment (ENOMEM).
fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let mut tries = 0;
    loop {
        match f() {
            Err(e)
                if tries < 100
                    && matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::ENOMEM)) =>
            {
                tries += 1;
                std::thread::yield_now();
            }
            other => return other,
        }
    }
}
