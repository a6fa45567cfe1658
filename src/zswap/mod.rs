//! The cache: swap areas, each with its index, in front of one compressed pool.
//!
//! A page headed for swap is stored by `(swap type, offset)`. If it is one
//! word repeated (zero pages, mostly) only the word is kept. Otherwise it is
//! compressed outside every lock into a per-thread two-page buffer, refused
//! if it came to more than `max_compression_ratio` percent of a page,
//! copied into a pool object, and entered in
//! its area's red-black tree and LRU. A load decompresses straight from the
//! pool object, holding only that object's size-class lock, shared with other
//! loads (the area lock is dropped once the object is pinned); while stores
//! into that class have lately waited on the lock, it copies the object out
//! under the lock and decompresses the copy with no lock held.
//!
//! # Locks
//!
//! Lock order, written once and kept everywhere:
//!
//! 0. `Zswap::shrink_lock`, `Zswap::swapon_lock` and `Zswap::shrinker`
//!    — held while areas are locked one after another, never taken with an
//!    area lock held. `shrinker` is held while its thread is stopped,
//!    spawned and stored, and the thread never takes it (see
//!    `Zswap::stop_thread`).
//! 1. `Area::inner` — one mutex per swap type; a thread holds one at a
//!    time. Pool compaction (manual or the step that runs by itself) takes
//!    the pool's compaction mutex first, then an area lock per object it
//!    moves (`Zswap::relocate`); it is never taken with an area lock held.
//! 2. the pool's per-size-class read-write locks (inside [`Pool`]), taken
//!    while an area lock is held, never the other way round. One thread
//!    holds several at once only in a batch's read-ahead ([`Pool::warm`]),
//!    which takes them shared with `try_read` and so never waits.
//! 3. `Zswap::compressor` (a read-write lock), taken alone, never while
//!    holding 1 or 2.
//!
//! No lock is held across store I/O. A slot under I/O is *claimed* instead
//! (a [`Claim`](area::Claim), from `Area::claim`): its offset is on the
//! area's `busy` list, other I/O on that slot waits (`Area::io_done`), and
//! any new page put at that offset while it is claimed marks the claim
//! *overtaken*, so that the I/O's result is dropped rather than
//! resurrecting an old page. That is the whole answer to the writeback
//! races (load, store or invalidate of an offset while its entry is being
//! written back): whoever changes the index last wins, and a slot is never
//! written by two threads at once. A claim is released even when its I/O
//! panics (see `area.rs`).
//!
//! Every pool object is allocated, written and freed with its owning
//! area's lock held, and read either under it or under its class lock taken
//! while the area lock was held: that is what lets compaction move an
//! object and rewrite its handle in the index safely, holding its owner's
//! area lock (found by the tag the object carries) and then its class lock.
//! A load that decompresses under a class lock takes no other lock until
//! it lets go.
//!
//! Anything learned before taking the area lock (the area is on, the offset
//! is in range, what the entry was) is checked again after taking it: the
//! 2013 patches fixed the writeback-versus-invalidate race twice, and this
//! file keeps to the rule that fixes it. "The area is on" means the same
//! *instance* of it: a call is bound to the generation it started on
//! ([`AreaRef`]), since `swapoff` and `swapon` may reuse its number while
//! it compresses or does I/O, and a number being swapped off is not given
//! out again until its I/O in flight is done.

mod area;
mod backed;
mod policy;
mod writeback;

pub use backed::{shrinker_age_from_secs, BackingInfo, MAX_SHRINKER_AGE_SECS};
pub use policy::Percent;

use policy::{Policy, Switch};

use area::{Area, AreaInner, AreaRef, AreaState, Backing};

use std::cell::RefCell;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

use parking_lot::{Mutex, RwLock};

use crate::backing::{BackingStore, FileOptions, RedisOptions, RedisStore, SlotTable, SwapFile};

use crate::compress::{self, CompressError, Compressor, CompressorId};
use crate::error::{Error, ErrorKind, Result};
use crate::index::{EntryRef, LOCKSTEP};
use crate::pool::{ClassStats, Handle, Pool, HANDLE_BITS};
use crate::stats::{Counter, Stats, StatsSnapshot};

/// Swap types a cache serves, as the kernel's `MAX_SWAPFILES` bound: types
/// are numbered 0..32.
pub const MAX_SWAP_TYPES: usize = 32;

/// The most slots an area may have: offsets are kept as `u32` in the index.
pub const MAX_AREA_PAGES: u64 = u32::MAX as u64;

/// The fewest entries an area holds before `load_many` and `store_many`
/// read ahead of their pages (`Zswap::warm`). Measured with a scratch
/// harness that switched the read-ahead on and off between rounds of
/// random batches of 64 (best of 6 to 10 rounds a side): load_many 4 Ki
/// entries -6% to +5% (noise), 16 Ki -3% to +1%, 32 Ki -9 to -14%, 64 Ki
/// -15 to -24%; store_many 4 Ki -2% to +5%, 64 Ki -5 to -8%. Below 32 Ki
/// the tree and most of the pool's metadata sit in the caches anyway.
/// `ZSWAP_RS_SCALE=N cargo bench --bench store_load` shows the batches
/// against single calls at any size.
const WARM_MIN_ENTRIES: usize = 1 << 15;
const _: () = assert!(LOCKSTEP <= crate::pool::WARM_MAX);

/// The index tag of a same-filled entry (compressor ids use 0..=5).
const TAG_SAME_FILLED: u8 = 7;

/// The index tag of a page kept in the pool as it is, uncompressed: a page
/// that compressed too poorly, with `store_incompressible` on, and a page
/// that must stay readable and does not compress (one a failed swap-out
/// would otherwise have destroyed).
const TAG_RAW: u8 = 6;
const _: () = assert!(CompressorId::ALL.len() <= TAG_RAW as usize);

/// Pool handles use the low [`HANDLE_BITS`] (48) bits of an entry's value;
/// the compressed length minus one takes the high 16 (a compressed page is
/// at most `page_size` <= 65536 bytes).
const HANDLE_MASK: u64 = (1 << HANDLE_BITS) - 1;
const _: () = assert!(HANDLE_BITS + 16 == 64);

fn pack(handle: Handle, len: usize) -> u64 {
    debug_assert!((1..=1 << 16).contains(&len));
    debug_assert!(handle.to_bits() <= HANDLE_MASK);
    handle.to_bits() | (((len - 1) as u64) << HANDLE_BITS)
}

fn unpack(value: u64) -> (Handle, usize) {
    (
        Handle::from_bits(value & HANDLE_MASK),
        (value >> HANDLE_BITS) as usize + 1,
    )
}

/// The tag a pool object carries: the entry that owns it, so that pool
/// compaction can hand it back with the object (see `Zswap::relocate`).
fn owner_tag(swap_type: u32, offset: u32) -> u64 {
    u64::from(swap_type) << 32 | u64::from(offset)
}

/// Everything a cache is configured with. Every policy can also be changed
/// at run time through the setters of [`Zswap`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Compressor name (see [`compress::compressors`]); the kernel's 2013
    /// default was `lzo`, this crate defaults to `lz4`.
    pub compressor: String,
    /// Compressor level, for compressors that have levels.
    pub level: Option<i32>,
    /// A trained zstd dictionary, fixed for the life of the cache.
    pub dictionary: Option<Vec<u8>>,
    /// Absolute cap on pool memory; `None`: `max_pool_percent` of RAM.
    pub max_pool_bytes: Option<u64>,
    /// Pool cap as a percent of physical RAM (the kernel's default is 20).
    pub max_pool_percent: u32,
    /// Once the limit is hit, refuse stores until the pool shrinks to this
    /// percent of the limit (the kernel's default is 90): hysteresis so
    /// that a full pool does not flap between taking and refusing pages.
    pub accept_threshold_percent: u32,
    /// Refuse a page that compresses to more than this percent of a page
    /// (the 2013 patch set's default is 80): storing it would save too
    /// little to pay for the compression.
    pub max_compression_ratio: u32,
    /// Keep pages that are one repeated word as just the word.
    pub same_filled: bool,
    /// `load` also drops the entry, as kernel >= 6.5 can.
    pub exclusive_loads: bool,
    /// What becomes of a page the pool would refuse as compress-poor (over
    /// `max_compression_ratio`, or not compressible at all). `Some(true)`:
    /// it is kept in the pool as it is, `page_size` bytes, as kernel >= 6.18
    /// does, and written back in LRU order like any entry
    /// (`stored_incompressible_pages` counts them). `Some(false)`: refused
    /// (`reject_compress_poor`), the 2013 behaviour. `None` (the default):
    /// off for a cache made with [`Zswap::new`]; a [`Region`](crate::Region)
    /// made with a cache of its own turns it on.
    pub store_incompressible: Option<bool>,
    /// Bytes per page: a power of two from 4096 to 65536.
    pub page_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            compressor: "lz4".to_string(),
            level: None,
            dictionary: None,
            max_pool_bytes: None,
            max_pool_percent: 20,
            accept_threshold_percent: 90,
            max_compression_ratio: 80,
            same_filled: true,
            exclusive_loads: false,
            store_incompressible: None,
            page_size: 4096,
        }
    }
}

/// Why a store did not put the page in the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// Compressed to more than `max_compression_ratio` percent of a page.
    CompressPoor,
    /// The compressor failed.
    CompressFail,
    /// The pool or index could not allocate.
    AllocFail,
    /// The pool is at its limit and nothing could be written back.
    ReclaimFail,
    /// The cache is disabled (`enabled = false`).
    Disabled,
}

/// What `store` did with a page. A page that is not taken is not an error:
/// the caller keeps it (or it went to the backing file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOutcome {
    /// Compressed into the pool.
    Stored,
    /// Kept as its fill word.
    SameFilled,
    /// Written to the backing swap file.
    Swapped,
    /// Not taken, and no backing file: the caller keeps the page.
    Rejected(Reject),
}

/// Where `load` found a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadSource {
    /// Decompressed from the pool (`zswpin`).
    Pool,
    /// Rebuilt from a same-filled entry (`zswpin`).
    SameFilled,
    /// Read from the backing file (`pswpin`).
    Backing,
}

/// What a store has left to do once the cheap cases are ruled out.
enum Prepared {
    /// Nothing: the page was same-filled, refused or swapped out.
    Done(StoreOutcome),
    /// Compress it with this compressor.
    Compress(Arc<dyn Compressor>),
}

/// One chunk of a batch store on a compressor that takes several pages at
/// once ([`Zswap::store_chunk`]): its pages and what became of each.
struct StoreChunk<'a> {
    offsets: &'a [u64],
    pages: &'a [u8],
    page_size: usize,
    /// The outcome of each page once it is finished; `None` while it waits
    /// for the batch compression, or if the chunk stopped before it.
    done: Vec<Option<StoreOutcome>>,
}

impl<'a> StoreChunk<'a> {
    fn offset(&self, i: usize) -> u32 {
        self.offsets[i] as u32
    }

    fn page(&self, i: usize) -> &'a [u8] {
        &self.pages[i * self.page_size..(i + 1) * self.page_size]
    }

    /// Report the finished prefix: after a fault, the pages up to the first
    /// one not finished are done; that one and those after it count as not
    /// stored, whatever became of them (`store_many`'s contract).
    fn report(&self, outcomes: &mut Vec<StoreOutcome>) {
        outcomes.extend(self.done.iter().map_while(|o| *o));
    }
}

thread_local! {
    /// Per-thread buffer for compressed bytes, on the way into the pool or
    /// out of it. Reused for every page, so no allocation per call.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Run `f` on this thread's scratch buffer of at least `len` bytes. A call
/// made while the buffer is in use further up the same thread's stack (a
/// region's fault served in a signal handler, `src/region/signal.rs`,
/// interrupting a store that reads a page of that region) gets a buffer of
/// its own instead.
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut s) => {
            if s.len() < len {
                s.resize(len, 0);
            }
            f(&mut s[..len])
        }
        Err(_) => f(&mut vec![0; len]),
    })
}

/// Whether `page` is one machine word repeated, and which. Zero pages are
/// the common case; the kernel found 10-20% of swapped pages like this.
/// `page` is a whole number of 8-byte words (panics if shorter than one).
#[inline]
pub fn same_filled_word(page: &[u8]) -> Option<u64> {
    let word = |c: &[u8]| u64::from_ne_bytes(c.try_into().expect("8-byte chunk"));
    let first = word(&page[..8]);
    // Most pages differ early or at the end: test the last word first.
    if word(&page[page.len() - 8..]) != first {
        return None;
    }
    // OR the differences of 256-byte blocks, 16 bytes at a time, so the loop
    // vectorises into full-width loads with one branch per block: 43 ns for
    // a whole zero page against 79 ns with 64-byte blocks of u64, best of
    // 10 loops on a 2-core EPYC VM (`cargo bench --bench store_load`,
    // `same_filled/zero_page`, reads 50-67 ns there, the host being shared).
    let pair = u128::from(first) | (u128::from(first) << 64);
    let lane = |c: &[u8]| u128::from_ne_bytes(c.try_into().expect("16-byte chunk"));
    let mut blocks = page.chunks_exact(256);
    for block in &mut blocks {
        let diff = block
            .chunks_exact(16)
            .fold(0u128, |acc, c| acc | (lane(c) ^ pair));
        if diff != 0 {
            return None;
        }
    }
    // Pages are whole multiples of 8 bytes; a size not a multiple of 256
    // leaves a tail, checked word by word.
    blocks
        .remainder()
        .chunks_exact(8)
        .all(|c| word(c) == first)
        .then_some(first)
}

fn fill_page(out: &mut [u8], word: u64) {
    let bytes = word.to_ne_bytes();
    for c in out.chunks_exact_mut(8) {
        c.copy_from_slice(&bytes);
    }
}

/// Physical RAM in bytes, from `/proc/meminfo`; the basis of `max_pool_percent`.
fn physical_ram() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kib| kib * 1024)
        // Without /proc, assume a small machine rather than an unbounded pool.
        .unwrap_or(1 << 30)
}

/// A compressed page cache in front of up to 32 swap areas.
pub struct Zswap {
    page_size: usize,
    pool: Pool,
    areas: Box<[Area]>,
    stats: Stats,
    /// The compressor new pages are stored with.
    compressor: RwLock<Arc<dyn Compressor>>,
    /// The dictionary every zstd instance of this cache uses.
    dictionary: Option<Arc<[u8]>>,
    /// A decoder for every compressor id entries may carry.
    decoders: [OnceLock<Arc<dyn Compressor>>; CompressorId::ALL.len()],
    /// The tunables: pool cap, percents, switches.
    policy: Policy,
    /// The pool hit its limit and has not yet shrunk below the accept
    /// threshold (the kernel's `zswap_pool_reached_full`).
    reached_full: AtomicBool,
    closed: AtomicBool,
    /// One thread at a time writes back to make room; the others wait for
    /// it and then find the room made.
    shrink_lock: Mutex<()>,
    /// Serialises `swapon`, so two areas cannot claim one file at once, and
    /// `close` with a region's `hold` of its area.
    swapon_lock: Mutex<()>,
    /// The area writeback starts from next (round robin over areas).
    next_writeback: AtomicUsize,
    /// The background shrinker, when running.
    shrinker: Mutex<Option<backed::Shrinker>>,
}

impl std::fmt::Debug for Zswap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Zswap")
            .field("page_size", &self.page_size)
            .field("compressor", &self.compressor_name())
            .field("max_pool_bytes", &self.max_pool_bytes_limit())
            .field("closed", &self.closed.load(Relaxed))
            .finish_non_exhaustive()
    }
}

impl Zswap {
    /// A cache configured by `config`; nothing is allocated for pages until
    /// the first store.
    pub fn new(config: Config) -> Result<Zswap> {
        let pool = Pool::new(config.page_size).map_err(|e| Error::config(e.to_string()))?;
        let policy = Policy::new(&config, physical_ram())?;
        let options = compress::Options {
            level: config.level,
            dictionary: config.dictionary.map(Arc::from),
        };
        let comp =
            compress::create(&config.compressor, &options).map_err(|e| Error::config(e.0))?;
        let z = Zswap {
            page_size: config.page_size,
            pool,
            areas: (0..MAX_SWAP_TYPES).map(|_| Area::new()).collect(),
            stats: Stats::default(),
            compressor: RwLock::new(comp.clone()),
            decoders: Default::default(),
            dictionary: options.dictionary,
            policy,
            reached_full: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            shrink_lock: Mutex::new(()),
            swapon_lock: Mutex::new(()),
            next_writeback: AtomicUsize::new(0),
            shrinker: Mutex::new(None),
        };
        let _ = z.decoders[comp.id() as usize].set(comp);
        Ok(z)
    }

    /// Bytes per page.
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Relaxed) {
            Err(Error::new(ErrorKind::Closed, "this Zswap is closed"))
        } else {
            Ok(())
        }
    }

    fn area(&self, swap_type: u32) -> Result<&Area> {
        self.areas.get(swap_type as usize).ok_or_else(|| {
            Error::invalid(format!(
                "swap_type {swap_type} is out of range: swap types are 0..{MAX_SWAP_TYPES}"
            ))
        })
    }

    /// The error for an area that is not on, under its lock.
    fn not_on(&self, swap_type: u32, state: AreaState) -> Error {
        if self.closed.load(Relaxed) {
            return Error::new(ErrorKind::Closed, "this Zswap is closed");
        }
        match state {
            AreaState::SwappedOff | AreaState::Stopping => Error::new(
                ErrorKind::Closed,
                format!("swap type {swap_type} was swapped off"),
            ),
            _ => Error::invalid(format!(
                "swap_type {swap_type} is not a swap area: call swapon() first (areas on: {:?})",
                self.areas_on()
            )),
        }
    }

    /// The error for a call whose area instance is gone, `inner` being the
    /// area of that number now, under its lock.
    fn gone(&self, at: AreaRef<'_>, inner: &AreaInner) -> Error {
        if inner.state != AreaState::On || self.closed.load(Relaxed) {
            return self.not_on(at.swap_type, inner.state);
        }
        Error::new(
            ErrorKind::Closed,
            format!(
                "swap type {} was swapped off while this call ran (and swapped on again since)",
                at.swap_type
            ),
        )
    }

    fn areas_on(&self) -> Vec<u32> {
        (0..MAX_SWAP_TYPES as u32)
            .filter(|&t| self.areas[t as usize].pages.load(Relaxed) != 0)
            .collect()
    }

    /// The area a call on `swap_type` starts on, bound to its instance,
    /// found without the lock: `pages` (0: off) and the generation may come
    /// from two instances if `swapon` or `swapoff` runs meanwhile, which the
    /// check under the lock ([`lock_slot`](Self::lock_slot)) catches.
    fn area_ref(&self, swap_type: u32) -> Result<(AreaRef<'_>, u64)> {
        self.check_open()?;
        let area = self.area(swap_type)?;
        let generation = area.generation.load(Relaxed);
        let pages = area.pages.load(Relaxed);
        if pages == 0 {
            return Err(self.not_on(swap_type, area.inner.lock().state));
        }
        let at = AreaRef {
            swap_type,
            area,
            generation,
        };
        Ok((at, pages))
    }

    /// Check `swap_type` and `offset` without the area lock, so bad
    /// arguments fail before any work. Returns the area as found.
    fn check_slot(&self, swap_type: u32, offset: u64) -> Result<AreaRef<'_>> {
        let (at, pages) = self.area_ref(swap_type)?;
        if offset >= pages {
            return Err(Error::invalid(format!(
                "offset {offset} is out of range for swap type {swap_type}: 0..{pages}"
            )));
        }
        Ok(at)
    }

    /// Lock the area and check again that it is the instance `at` was
    /// found on, still on, and holds `offset`.
    fn lock_slot<'a>(
        &self,
        at: AreaRef<'a>,
        offset: u64,
    ) -> Result<parking_lot::MutexGuard<'a, AreaInner>> {
        let inner = at.area.inner.lock();
        if !inner.is_instance(at) {
            return Err(self.gone(at, &inner));
        }
        if offset >= inner.pages {
            return Err(Error::invalid(format!(
                "offset {offset} is out of range for swap type {}: 0..{}",
                at.swap_type, inner.pages
            )));
        }
        Ok(inner)
    }

    fn check_page(&self, name: &str, len: usize) -> Result<()> {
        if len == self.page_size {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "{name} must be exactly page_size = {} bytes, got {len}",
                self.page_size
            )))
        }
    }

    // --- areas ----------------------------------------------------------------

    /// Turn on a memory-only swap area of `pages` slots; returns its swap
    /// type, the lowest one free. A page the pool does not take is refused
    /// ([`StoreOutcome::Rejected`]): the caller keeps it.
    pub fn swapon(&self, pages: u64) -> Result<u32> {
        self.swapon_area(None, pages)
    }

    /// Turn on a swap area of `pages` slots backed by the file (or block
    /// device) at `path`, created sparse with mode 0600 if missing, never
    /// followed through a symlink, and refused if another area uses it.
    /// A page the pool does not take is written to its slot
    /// ([`StoreOutcome::Swapped`]), and a full pool writes back its oldest
    /// entries there.
    pub fn swapon_file(&self, path: &Path, pages: u64, options: &FileOptions) -> Result<u32> {
        let open = || -> Result<Arc<dyn BackingStore>> {
            // Refuses a file another area uses (locked: EBUSY).
            Ok(Arc::new(SwapFile::open(
                path,
                pages,
                self.page_size,
                options,
            )?))
        };
        self.swapon_area(Some(&open), pages)
    }

    /// Turn on a swap area of `pages` slots backed by a Redis server
    /// (`redis://host:port/db`) or cluster
    /// (`redis+cluster://host:port,host:port,...`), as
    /// [`swapon_file`](Self::swapon_file) with a file. Its keys are deleted
    /// by `swapoff` and `close`.
    pub fn swapon_redis(&self, url: &str, pages: u64, options: &RedisOptions) -> Result<u32> {
        let open = || -> Result<Arc<dyn BackingStore>> {
            Ok(Arc::new(RedisStore::open(
                url,
                pages,
                self.page_size,
                options,
            )?))
        };
        self.swapon_area(Some(&open), pages)
    }

    fn swapon_area(
        &self,
        open: Option<&dyn Fn() -> Result<Arc<dyn BackingStore>>>,
        pages: u64,
    ) -> Result<u32> {
        self.check_open()?;
        if pages == 0 || pages > MAX_AREA_PAGES {
            return Err(Error::invalid(format!(
                "pages must be in 1..={MAX_AREA_PAGES}, got {pages}"
            )));
        }
        let _serial = self.swapon_lock.lock();
        let backing = match open {
            None => None,
            Some(open) => Some(Backing {
                store: open()?,
                slots: SlotTable::new(pages),
                freed: Vec::new(),
            }),
        };
        for (t, area) in self.areas.iter().enumerate() {
            let mut inner = area.inner.lock();
            if matches!(inner.state, AreaState::Unused | AreaState::SwappedOff) {
                inner.state = AreaState::On;
                inner.bump_generation(area);
                inner.pages = pages;
                inner.backing = backing;
                area.pages.store(pages, Relaxed);
                return Ok(t as u32);
            }
        }
        Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("all {MAX_SWAP_TYPES} swap types are in use: swapoff() one first"),
        ))
    }

    /// The backing file of `swap_type`: its path, whether `O_DIRECT` is in
    /// effect, its pacing, and how many slots hold a page.
    pub fn backing_info(&self, swap_type: u32) -> Result<Option<BackingInfo>> {
        self.check_open()?;
        let area = self.area(swap_type)?;
        let inner = area.inner.lock();
        if inner.state != AreaState::On {
            return Err(self.not_on(swap_type, inner.state));
        }
        Ok(inner.backing.as_ref().map(|b| {
            let facts = b.store.file_facts();
            BackingInfo {
                path: facts
                    .as_ref()
                    .map_or_else(|| b.store.describe().into(), |f| f.path.clone()),
                pages: b.store.slots(),
                direct: facts.as_ref().is_some_and(|f| f.direct),
                discard: facts.as_ref().is_none_or(|f| f.discard),
                disk_mbps: facts.and_then(|f| f.disk_mbps),
                used_slots: b.slots.used(),
            }
        }))
    }

    /// Slots of `swap_type`, if it is on.
    pub fn area_pages(&self, swap_type: u32) -> Option<u64> {
        let pages = self.areas.get(swap_type as usize)?.pages.load(Relaxed);
        (pages != 0).then_some(pages)
    }

    /// Turn off `swap_type`, dropping every entry it holds (the kernel's
    /// `zswap_swapoff`, once `invalidate_area`).
    pub fn swapoff(&self, swap_type: u32) -> Result<()> {
        self.swapoff_checked(swap_type, false)
    }

    /// `swapoff`; `release`: also when a region holds the area (the
    /// region's own, as it closes).
    fn swapoff_checked(&self, swap_type: u32, release: bool) -> Result<()> {
        self.check_open()?;
        let area = self.area(swap_type)?;
        let mut inner = area.inner.lock();
        if inner.state != AreaState::On {
            return Err(self.not_on(swap_type, inner.state));
        }
        if inner.held && !release {
            return Err(held_error(swap_type, "swap off"));
        }
        self.turn_off(area, &mut inner, AreaState::SwappedOff);
        Ok(())
    }

    /// Keep the area `swap_type` (on) from `swapoff` and `close` until
    /// [`swapoff_held`](Self::swapoff_held): a region's memory lives there,
    /// and dropping its pages would leave the region's next fault nothing
    /// to map. Serialised with `close` by `swapon_lock`, so that a close
    /// either sees the hold or has closed the area first (and then this
    /// fails).
    pub(crate) fn hold(&self, swap_type: u32) -> Result<()> {
        let _one = self.swapon_lock.lock();
        self.check_open()?;
        let area = self.area(swap_type)?;
        let mut inner = area.inner.lock();
        if inner.state != AreaState::On {
            return Err(self.not_on(swap_type, inner.state));
        }
        inner.held = true;
        Ok(())
    }

    /// Let go of a held area and swap it off (a region closing).
    pub(crate) fn swapoff_held(&self, swap_type: u32) -> Result<()> {
        self.swapoff_checked(swap_type, true)
    }

    /// Stop an area: no new call gets in, I/O in flight finishes (and finds
    /// the area off), every entry is dropped, the file is closed, and only
    /// then is the number free for `swapon` again (`state`).
    fn turn_off(
        &self,
        area: &Area,
        inner: &mut parking_lot::MutexGuard<'_, AreaInner>,
        state: AreaState,
    ) {
        inner.state = AreaState::Stopping;
        inner.bump_generation(area);
        inner.pages = 0;
        area.pages.store(0, Relaxed);
        while inner.has_claims() {
            area.io_done.wait(inner);
        }
        let AreaInner { index, .. } = &mut **inner;
        index.drain(|e| self.release(e));
        inner.markers.clear();
        inner.backing = None;
        inner.held = false;
        inner.state = state;
    }

    /// Free what `entry`, just taken out of its index, held and adjust the
    /// gauges. Called with the area lock held.
    fn release(&self, entry: EntryRef) {
        self.stats.sub(Counter::StoredPages, 1);
        if entry.tag == TAG_SAME_FILLED {
            self.stats.sub(Counter::SameFilledPages, 1);
        } else {
            let (handle, len) = unpack(entry.value);
            self.pool.free(handle);
            self.stats.sub(Counter::ComprDataSize, len as u64);
            if entry.tag == TAG_RAW {
                self.stats.sub(Counter::StoredIncompressiblePages, 1);
            }
        }
    }

    /// Raise the gauges for a pool entry of `len` bytes tagged `tag` just
    /// put in an index (`release`'s counterpart). Called with the area lock
    /// held.
    fn count_stored(&self, tag: u8, len: usize) {
        self.stats.add(Counter::StoredPages, 1);
        self.stats.add(Counter::ComprDataSize, len as u64);
        if tag == TAG_RAW {
            self.stats.add(Counter::StoredIncompressiblePages, 1);
        }
    }

    /// Close the cache: every area is swapped off and every later call fails
    /// with [`ErrorKind::Closed`]. Closing twice is allowed. Refused, with
    /// [`ErrorKind::Busy`] and nothing changed, while a
    /// [`Region`](crate::Region) made on the cache is open: its memory is
    /// in one of the areas.
    pub fn close(&self) -> Result<()> {
        {
            let _one = self.swapon_lock.lock();
            if let Some(t) = (0..MAX_SWAP_TYPES).find(|&t| self.areas[t].inner.lock().held) {
                return Err(held_error(t as u32, "close the cache"));
            }
            self.closed.store(true, Relaxed);
        }
        self.stop_shrinker();
        for area in self.areas.iter() {
            let mut inner = area.inner.lock();
            let state = match inner.state {
                AreaState::On | AreaState::Stopping => AreaState::SwappedOff,
                other => other,
            };
            self.turn_off(area, &mut inner, state);
        }
        Ok(())
    }

    /// Whether [`close`](Zswap::close) was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Relaxed)
    }

    // --- store ----------------------------------------------------------------

    /// Store `page` at `(swap_type, offset)`, replacing whatever was there.
    ///
    /// A page the pool does not take (zswap disabled, poor compression, no
    /// room) goes to the area's file if it has one (`Swapped`), or back to
    /// the caller (`Rejected`); either way the old page at `offset` is gone,
    /// since it is stale. An error (bad argument, file I/O fault) leaves the
    /// cache as it was.
    pub fn store(&self, swap_type: u32, offset: u64, page: &[u8]) -> Result<StoreOutcome> {
        let at = self.check_slot(swap_type, offset)?;
        self.check_page("page", page.len())?;
        self.store_at(at, offset, page)
    }

    /// `store` of a checked page at a checked offset of the area `at`, then
    /// a compaction step if the pool wants one (no lock is held here).
    fn store_at(&self, at: AreaRef<'_>, offset: u64, page: &[u8]) -> Result<StoreOutcome> {
        let outcome = self.store_checked(at, offset, page);
        self.compact_if_fragmented();
        outcome
    }

    /// `store_at` before its compaction step.
    fn store_checked(&self, at: AreaRef<'_>, offset: u64, page: &[u8]) -> Result<StoreOutcome> {
        let comp = match self.store_prepare(at, offset as u32, page)? {
            Prepared::Done(outcome) => return Ok(outcome),
            Prepared::Compress(comp) => comp,
        };
        // Room for the worst case of any compressor, as the kernel's 2-page
        // buffer: most compressors refuse a shorter one, and finishing a poor
        // page costs less than a slow path for it.
        let stored = with_scratch(2 * self.page_size, |buf| {
            let result = comp.compress(page, buf);
            self.store_compressed(at, offset as u32, page, comp.id(), result, buf)
        })?;
        match stored {
            Ok(()) => Ok(StoreOutcome::Stored),
            Err(why) => self.not_taken(at, offset as u32, page, why),
        }
    }

    /// Everything a store does before compressing: the disabled, same-filled
    /// and pool-full cases end here; otherwise the compressor to use.
    fn store_prepare(&self, at: AreaRef<'_>, off: u32, page: &[u8]) -> Result<Prepared> {
        if !self.policy.switch(Switch::Enabled) {
            return self
                .not_taken(at, off, page, Reject::Disabled)
                .map(Prepared::Done);
        }
        if self.policy.switch(Switch::SameFilled) {
            if let Some(word) = same_filled_word(page) {
                let mut inner = self.lock_slot(at, u64::from(off))?;
                // Same-filled entries cost the pool nothing: keep them off
                // the LRU so that writeback never spends a disk write on one.
                if let Ok((old, on_disk)) = inner.put(off, word, TAG_SAME_FILLED, false) {
                    self.stats.add(Counter::StoredPages, 1);
                    self.stats.add(Counter::SameFilledPages, 1);
                    self.drop_replaced(old, on_disk);
                    self.stats.inc(Counter::Zswpout);
                    if inner.discard_due() {
                        self.discard(at.area, inner);
                    }
                    return Ok(Prepared::Done(StoreOutcome::SameFilled));
                }
                drop(inner);
                self.stats.inc(Counter::RejectAllocFail);
                return self
                    .not_taken(at, off, page, Reject::AllocFail)
                    .map(Prepared::Done);
            }
        }
        if self.pool_is_full() {
            self.stats.inc(Counter::PoolLimitHit);
            match self.make_room() {
                Ok(true) => {}
                Ok(false) => {
                    self.stats.inc(Counter::RejectReclaimFail);
                    return self
                        .not_taken(at, off, page, Reject::ReclaimFail)
                        .map(Prepared::Done);
                }
                Err(e) => {
                    self.stats.inc(Counter::RejectReclaimFail);
                    return Err(e);
                }
            }
        }
        Ok(Prepared::Compress(self.compressor.read().clone()))
    }

    /// Everything a store does after compressing `page` into `buf`: judge
    /// the result, and put an accepted page into the pool, compressed, or
    /// as it is if it compressed too poorly and `store_incompressible` is
    /// on (the kernel's zswap_compress since 6.18; the compressor's work is
    /// thrown away, not redone). `Ok(Err(why))`: the pool did not take it
    /// (the caller sends it on with `not_taken`).
    fn store_compressed(
        &self,
        at: AreaRef<'_>,
        off: u32,
        page: &[u8],
        comp: CompressorId,
        result: std::result::Result<usize, CompressError>,
        buf: &[u8],
    ) -> Result<std::result::Result<(), Reject>> {
        let max_len = self.policy.max_compressed_len(self.page_size);
        let (tag, bytes) = match result {
            Ok(len) if len <= max_len => (comp as u8, &buf[..len]),
            Ok(_) | Err(CompressError::DoesNotFit) => {
                if self.policy.switch(Switch::StoreIncompressible) {
                    (TAG_RAW, page)
                } else {
                    self.stats.inc(Counter::RejectCompressPoor);
                    return Ok(Err(Reject::CompressPoor));
                }
            }
            Err(CompressError::Failed(_)) => {
                self.stats.inc(Counter::RejectCompressFail);
                return Ok(Err(Reject::CompressFail));
            }
        };
        let len = bytes.len();
        let mut inner = self.lock_slot(at, u64::from(off))?;
        let Ok(handle) = self
            .pool
            .alloc_write_tagged(bytes, owner_tag(at.swap_type, off))
        else {
            self.stats.inc(Counter::RejectAllocFail);
            return Ok(Err(Reject::AllocFail));
        };
        match inner.put(off, pack(handle, len), tag, true) {
            Ok((old, on_disk)) => {
                self.count_stored(tag, len);
                self.drop_replaced(old, on_disk);
                self.stats.inc(Counter::Zswpout);
                if inner.discard_due() {
                    self.discard(at.area, inner);
                }
                Ok(Ok(()))
            }
            Err(_) => {
                self.pool.free(handle);
                self.stats.inc(Counter::RejectAllocFail);
                Ok(Err(Reject::AllocFail))
            }
        }
    }

    /// A store replaced `old` (already out of the index) and/or a page in
    /// the file: count it, free it.
    fn drop_replaced(&self, old: Option<EntryRef>, on_disk: bool) {
        if old.is_some() || on_disk {
            self.stats.inc(Counter::DuplicateEntry);
        }
        if let Some(old) = old {
            self.release(old);
        }
    }

    /// The pool did not take the page: write it to the area's file, or, with
    /// no file, give it back to the caller. The stale page at `offset` goes.
    fn not_taken(
        &self,
        at: AreaRef<'_>,
        offset: u32,
        page: &[u8],
        why: Reject,
    ) -> Result<StoreOutcome> {
        let mut inner = self.lock_slot(at, u64::from(offset))?;
        if inner.backing.is_some() {
            drop(inner);
            return self.swap_out(at, offset, page);
        }
        let old = inner.index.remove(offset);
        self.drop_replaced(old, false);
        Ok(StoreOutcome::Rejected(why))
    }

    /// Whether the pool is at its limit, with the kernel's hysteresis: once
    /// the limit is reached, the pool counts as full until it shrinks to the
    /// accept threshold.
    fn pool_is_full(&self) -> bool {
        let cur = self.pool.total_bytes();
        let max = self.max_pool_bytes_limit();
        if cur >= max {
            self.reached_full.store(true, Relaxed);
            return true;
        }
        if self.reached_full.load(Relaxed) {
            if cur <= self.policy.accept_bytes(max) {
                self.reached_full.store(false, Relaxed);
                return false;
            }
            return true;
        }
        false
    }

    // --- load -----------------------------------------------------------------

    /// Copy the page stored at `(swap_type, offset)` into `out` (one page),
    /// from the pool or from the area's file.
    pub fn load_into(&self, swap_type: u32, offset: u64, out: &mut [u8]) -> Result<LoadSource> {
        let at = self.check_slot(swap_type, offset)?;
        self.check_page("buffer", out.len())?;
        let exclusive = self.policy.switch(Switch::ExclusiveLoads);
        self.load_at(at, offset, out, exclusive)
    }

    /// [`Zswap::load_into`], exclusive whatever `exclusive_loads` says: a
    /// page served from the pool (or a same-filled entry) is dropped from it
    /// once decompressed, as the kernel's zswap does since 6.5. A page read
    /// from the backing file keeps its slot there (`LoadSource::Backing`):
    /// it costs no memory.
    pub fn take_into(&self, swap_type: u32, offset: u64, out: &mut [u8]) -> Result<LoadSource> {
        let at = self.check_slot(swap_type, offset)?;
        self.check_page("buffer", out.len())?;
        self.load_at(at, offset, out, true)
    }

    /// `load_into` of a checked offset of the area `at` into a checked buffer.
    fn load_at(
        &self,
        at: AreaRef<'_>,
        offset: u64,
        out: &mut [u8],
        exclusive: bool,
    ) -> Result<LoadSource> {
        let swap_type = at.swap_type;
        let off = offset as u32;
        let mut inner = self.lock_slot(at, offset)?;
        loop {
            if let Some(entry) = inner.index.get(off) {
                return self.load_entry(at, inner, entry, exclusive, out);
            }
            let Some(crc) = inner.backing.as_ref().and_then(|b| b.slots.get(off)) else {
                return Err(Error::new(
                    ErrorKind::NotFound { swap_type, offset },
                    format!("nothing is stored at swap type {swap_type}, offset {offset}"),
                ));
            };
            if !inner.is_busy(off) {
                return self.load_from_file(at, inner, off, crc, out);
            }
            // Another thread is writing or reading this slot: wait, then
            // look again, since what the offset holds may have changed.
            at.area.io_done.wait(&mut inner);
            if !inner.is_instance(at) {
                return Err(self.gone(at, &inner));
            }
        }
    }

    /// Serve `entry` from the pool. Called with the area lock held; the
    /// object is decompressed in place under its size-class lock, or from
    /// a copy with no lock held while stores into the class wait on it
    /// ([`Pool::with_object_or_copy`]); the area lock is dropped first
    /// either way.
    fn load_entry(
        &self,
        at: AreaRef<'_>,
        mut inner: parking_lot::MutexGuard<'_, AreaInner>,
        entry: EntryRef,
        exclusive: bool,
        out: &mut [u8],
    ) -> Result<LoadSource> {
        let offset = u64::from(entry.key);
        if entry.tag == TAG_SAME_FILLED {
            if exclusive {
                inner.index.remove_at(entry.id);
                self.release(entry);
            }
            drop(inner);
            fill_page(out, entry.value);
            self.stats.inc(Counter::Zswpin);
            return Ok(LoadSource::SameFilled);
        }
        let (handle, len) = unpack(entry.value);
        let decoded = with_scratch(len, |buf| {
            if exclusive {
                self.pool.read(handle, buf);
                // The compressed bytes are in `buf` now; the object can go.
                inner.index.remove_at(entry.id);
                self.release(entry);
                drop(inner);
                let decoded = self.decompress(entry.tag, buf, out);
                if decoded.is_err() {
                    // Put the bytes back so that the failure leaves the
                    // cache as it was, unless a newer page took the slot
                    // meanwhile.
                    self.restore_exclusive(at, offset, entry.tag, buf);
                }
                return decoded;
            }
            // The object's size-class lock, taken shared under the area
            // lock (the lock order), pins it: a free or a compaction move of
            // it needs that lock exclusive. The area lock goes before the
            // decompression, so other offsets of the area are not held up.
            // The pool decompresses in place while nobody waits to write
            // the class, and from a copy in `buf`, with the class lock let
            // go, while stores into it have lately had to wait (a thread
            // storing beside a loading one waited on the class lock about
            // once per store otherwise).
            inner.index.touch(entry.id);
            self.pool.with_object_or_copy(handle, len, buf, |src| {
                drop(inner);
                self.decompress(entry.tag, src, out)
            })
        });
        if let Err(e) = decoded {
            self.stats.inc(Counter::DecompressFail);
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!(
                    "page at swap type {}, offset {offset} failed to decompress: {e}",
                    at.swap_type
                ),
            ));
        }
        self.stats.inc(Counter::Zswpin);
        Ok(LoadSource::Pool)
    }

    fn restore_exclusive(&self, at: AreaRef<'_>, offset: u64, tag: u8, bytes: &[u8]) {
        let Ok(mut inner) = self.lock_slot(at, offset) else {
            return;
        };
        let off = offset as u32;
        let on_disk = inner
            .backing
            .as_ref()
            .is_some_and(|b| b.slots.get(off).is_some());
        if inner.index.get(off).is_some() || on_disk {
            return;
        }
        if let Ok(handle) = self
            .pool
            .alloc_write_tagged(bytes, owner_tag(at.swap_type, off))
        {
            if inner.put(off, pack(handle, bytes.len()), tag, true).is_ok() {
                self.count_stored(tag, bytes.len());
            } else {
                self.pool.free(handle);
            }
        }
    }

    fn decoder(&self, tag: u8) -> Option<&Arc<dyn Compressor>> {
        self.decoders.get(tag as usize)?.get()
    }

    fn decompress(&self, tag: u8, src: &[u8], out: &mut [u8]) -> Result<(), String> {
        if tag == TAG_RAW {
            if src.len() != out.len() {
                return Err(format!("a raw entry of {} bytes", src.len()));
            }
            out.copy_from_slice(src);
            return Ok(());
        }
        let decoder = self.decoder(tag).ok_or_else(|| {
            format!("entry names compressor id {tag}, which this cache never used")
        })?;
        decoder.decompress(src, out).map_err(|e| e.to_string())
    }

    /// Check a batch before any of it is done: `buf` must be exactly
    /// `offsets.len()` pages and every offset in range. The error names the
    /// first bad element's index.
    fn check_batch(
        &self,
        swap_type: u32,
        offsets: &[u64],
        buf_name: &str,
        buf_len: usize,
    ) -> Result<AreaRef<'_>> {
        let want = offsets.len() * self.page_size;
        if buf_len != want {
            return Err(Error::invalid(format!(
                "{buf_name} must be len(offsets) * page_size = {} * {} = {want} bytes, got {buf_len}",
                offsets.len(),
                self.page_size
            )));
        }
        let (at, pages) = self.area_ref(swap_type)?;
        if let Some((i, o)) = offsets.iter().enumerate().find(|(_, &o)| o >= pages) {
            return Err(Error::invalid(format!(
                "offsets[{i}] = {o} is out of range for swap type {swap_type}: 0..{pages}"
            )));
        }
        Ok(at)
    }

    /// Store `offsets.len()` pages given as one buffer, page `i` at
    /// `offsets[i]`; outcomes go to `outcomes` (cleared first). Every
    /// argument is checked before anything is stored.
    ///
    /// A fault (the file failing, the area swapped off meanwhile) stops the
    /// batch at page `k = outcomes.len()`, which the error names: the pages
    /// before it are done, with those outcomes; page `k`'s offset holds what
    /// it held before; the pages after it were not stored, except that a
    /// compressor taking several pages at once (IAA) may already have put
    /// some of `k`'s chunk into the pool. Each page is a store of its own,
    /// so a caller can retry from `k`.
    pub fn store_many(
        &self,
        swap_type: u32,
        offsets: &[u64],
        pages: &[u8],
        outcomes: &mut Vec<StoreOutcome>,
    ) -> Result<()> {
        self.store_many_until(swap_type, offsets, pages, outcomes, &mut || false)
    }

    /// `store_many` that asks `stop` between chunks of a few pages whether
    /// to stop early (a Ctrl-C in the Python caller): when it answers true,
    /// the call returns `Ok` with `outcomes.len() < offsets.len()`, the
    /// pages before that index done and the rest untouched.
    pub fn store_many_until(
        &self,
        swap_type: u32,
        offsets: &[u64],
        pages: &[u8],
        outcomes: &mut Vec<StoreOutcome>,
        stop: &mut dyn FnMut() -> bool,
    ) -> Result<()> {
        let at = self.check_batch(swap_type, offsets, "pages", pages.len())?;
        outcomes.clear();
        outcomes.reserve(offsets.len());
        self.store_pages(at, offsets, pages, outcomes, stop)
            .map_err(|e| {
                let k = outcomes.len();
                let at = offsets.get(k).copied().unwrap_or_default();
                e.context(format_args!(
                    "store_many stopped at offsets[{k}] = {at}, after the {k} pages before it"
                ))
            })
    }

    /// `store_many` after its checks: on an error, `outcomes` holds exactly
    /// the pages finished before the one that failed.
    fn store_pages(
        &self,
        at: AreaRef<'_>,
        offsets: &[u64],
        pages: &[u8],
        outcomes: &mut Vec<StoreOutcome>,
        stop: &mut dyn FnMut() -> bool,
    ) -> Result<()> {
        let batch = self.compressor.read().batch_size();
        if batch <= 1 {
            let chunk_bytes = LOCKSTEP * self.page_size;
            for (offsets, pages) in offsets.chunks(LOCKSTEP).zip(pages.chunks(chunk_bytes)) {
                if stop() {
                    return Ok(());
                }
                self.warm(at.area, offsets);
                for (&o, page) in offsets.iter().zip(pages.chunks_exact(self.page_size)) {
                    outcomes.push(self.store_at(at, o, page)?);
                }
            }
            return Ok(());
        }
        // A compressor that works on several pages at once (IAA) gets them
        // together, a chunk of `batch` pages at a time.
        let ps = self.page_size;
        for (offsets, pages) in offsets.chunks(batch).zip(pages.chunks(batch * ps)) {
            if stop() {
                return Ok(());
            }
            let mut chunk = StoreChunk {
                offsets,
                pages,
                page_size: ps,
                done: vec![None; offsets.len()],
            };
            let result = self.store_chunk(at, &mut chunk);
            chunk.report(outcomes);
            result?;
        }
        Ok(())
    }

    /// Store one chunk of a batch in three steps: settle the cheap cases
    /// page by page (same-filled, refused, swapped out, the pool full),
    /// compress the rest in one batch call, then put each in the pool. The
    /// pool limit is checked per page while settling, so a chunk may pass
    /// it by at most `batch - 1` pages.
    fn store_chunk(&self, at: AreaRef<'_>, chunk: &mut StoreChunk<'_>) -> Result<()> {
        let mut todo: Vec<usize> = Vec::with_capacity(chunk.offsets.len());
        let mut comp: Option<Arc<dyn Compressor>> = None;
        for i in 0..chunk.offsets.len() {
            match self.store_prepare(at, chunk.offset(i), chunk.page(i))? {
                Prepared::Done(outcome) => chunk.done[i] = Some(outcome),
                Prepared::Compress(c) => {
                    todo.push(i);
                    comp.get_or_insert(c);
                }
            }
        }
        let Some(comp) = comp else { return Ok(()) };
        let ps = chunk.page_size;
        let srcs: Vec<&[u8]> = todo.iter().map(|&i| chunk.page(i)).collect();
        let mut results = vec![Ok(0); todo.len()];
        with_scratch(todo.len() * 2 * ps, |bufs| {
            let mut dsts: Vec<&mut [u8]> = bufs.chunks_mut(2 * ps).collect();
            comp.compress_batch(&srcs, &mut dsts, &mut results);
            for ((&i, result), buf) in todo.iter().zip(results).zip(bufs.chunks(2 * ps)) {
                let o = chunk.offset(i);
                let page = chunk.page(i);
                let outcome = match self.store_compressed(at, o, page, comp.id(), result, buf)? {
                    Ok(()) => StoreOutcome::Stored,
                    Err(why) => self.not_taken(at, o, page, why)?,
                };
                chunk.done[i] = Some(outcome);
            }
            Ok(())
        })
    }

    /// Load the pages at `offsets` into one buffer, page `i` from
    /// `offsets[i]`. Every argument is checked first; a missing page fails
    /// the call with [`ErrorKind::NotFound`] naming it.
    pub fn load_many(&self, swap_type: u32, offsets: &[u64], out: &mut [u8]) -> Result<()> {
        self.load_many_until(swap_type, offsets, out, &mut || false)
            .map(|_| ())
    }

    /// `load_many` that asks `stop` between chunks of a few pages whether
    /// to stop early; returns how many pages (a prefix) were loaded.
    pub fn load_many_until(
        &self,
        swap_type: u32,
        offsets: &[u64],
        out: &mut [u8],
        stop: &mut dyn FnMut() -> bool,
    ) -> Result<usize> {
        let at = self.check_batch(swap_type, offsets, "out", out.len())?;
        let chunk_bytes = LOCKSTEP * self.page_size;
        let exclusive = self.policy.switch(Switch::ExclusiveLoads);
        let mut done = 0;
        for (offsets, out) in offsets.chunks(LOCKSTEP).zip(out.chunks_mut(chunk_bytes)) {
            if stop() {
                return Ok(done);
            }
            self.warm(at.area, offsets);
            for (&o, page) in offsets.iter().zip(out.chunks_exact_mut(self.page_size)) {
                self.load_at(at, o, page, exclusive)?;
                done += 1;
            }
        }
        Ok(done)
    }

    /// Read ahead what the loads or stores of up to [`LOCKSTEP`] offsets
    /// (checked to be in the area) are about to touch, with the misses of
    /// all of them overlapped: on a big pool most of a load's own cost is
    /// cache misses taken one after another, each waiting for the last.
    ///
    /// - The tree walks, in lockstep ([`Index::get_many`]).
    /// - Each entry's LRU neighbours, which the load's `touch` writes: the
    ///   area unlock that follows (an atomic read-modify-write) waits for
    ///   those writes' misses. -4 to -6% per page in `load_many` at
    ///   256 Ki entries.
    /// - The zspage record and first line of each pool object
    ///   ([`Pool::warm`]): another -8 to -12% there.
    ///
    /// A hint only: the loads or stores that follow look everything up
    /// again under their locks, so whatever changes meanwhile, they see it.
    fn warm(&self, area: &Area, offsets: &[u64]) {
        let inner = area.inner.lock();
        if inner.index.len() < WARM_MIN_ENTRIES {
            return;
        }
        let mut keys = [0u32; LOCKSTEP];
        for (key, &o) in keys.iter_mut().zip(offsets) {
            *key = o as u32;
        }
        let mut found = [None; LOCKSTEP];
        let n = offsets.len();
        inner.index.get_many(&keys[..n], &mut found[..n]);
        let mut sink = 0u32;
        let mut handles = [Handle::from_bits(0); LOCKSTEP];
        let mut m = 0;
        for e in found[..n].iter().flatten() {
            sink = sink.wrapping_add(inner.index.warm_lru(e.id));
            if e.tag != TAG_SAME_FILLED {
                handles[m] = unpack(e.value).0;
                m += 1;
            }
        }
        sink = sink.wrapping_add(u32::from(self.pool.warm(&handles[..m])));
        std::hint::black_box((found, sink));
    }

    /// The page stored at `(swap_type, offset)`, as a new buffer.
    pub fn load(&self, swap_type: u32, offset: u64) -> Result<Vec<u8>> {
        let mut out = vec![0u8; self.page_size];
        self.load_into(swap_type, offset, &mut out)?;
        Ok(out)
    }

    /// Drop the page at `(swap_type, offset)`, in the pool or in the file
    /// (whose blocks are given back); returns whether one was there.
    pub fn invalidate(&self, swap_type: u32, offset: u64) -> Result<bool> {
        let found = self.invalidate_page(swap_type, offset);
        self.compact_if_fragmented();
        found
    }

    /// Drop the page at `(swap_type, offset)` if the pool holds it (a
    /// same-filled entry too); a copy in the file stays, since it costs no
    /// memory. Returns whether the pool held it. For a caller that keeps
    /// its own copy and wants the pool's memory back, not the file's slot:
    /// a region shedding the copies of resident pages.
    pub fn invalidate_cached(&self, swap_type: u32, offset: u64) -> Result<bool> {
        let at = self.check_slot(swap_type, offset)?;
        let mut inner = self.lock_slot(at, offset)?;
        let Some(entry) = inner.index.remove(offset as u32) else {
            return Ok(false);
        };
        self.release(entry);
        drop(inner);
        self.compact_if_fragmented();
        Ok(true)
    }

    /// `invalidate`, before the compaction step it may run.
    fn invalidate_page(&self, swap_type: u32, offset: u64) -> Result<bool> {
        let at = self.check_slot(swap_type, offset)?;
        let off = offset as u32;
        let mut inner = self.lock_slot(at, offset)?;
        let old = inner.index.remove(off);
        let on_disk = inner.backing.as_mut().is_some_and(|b| b.slots.clear(off));
        if let Some(entry) = old {
            self.release(entry);
        }
        if on_disk {
            let b = inner.backing.as_mut().expect("on disk implies a file");
            b.freed.push(off);
            if inner.discard_due() {
                self.discard(at.area, inner);
            }
        }
        Ok(old.is_some() || on_disk)
    }

    // --- pool -----------------------------------------------------------------

    /// Move objects out of sparse zspages and free them; returns pages freed.
    /// Each moved object's entry is found by the tag it carries and updated
    /// under its area lock alone (`Zswap::relocate`), so nothing stops:
    /// other offsets and classes go on meanwhile. Compaction also runs by
    /// itself (`Zswap::compact_if_fragmented`); this is for callers that
    /// want every freeable zspage back now.
    pub fn compact(&self) -> Result<usize> {
        self.check_open()?;
        Ok(self
            .pool
            .compact_by_tags(&mut |tag, handle| self.relocate(tag, handle)))
    }

    /// A compaction step when the pool has passed its fragmentation
    /// threshold ([`Pool::wants_compaction`]): called at the end of
    /// `store` and `invalidate` (which free objects), with no lock held. Costs one atomic load
    /// when there is nothing to do; a step when another runs is skipped.
    #[inline]
    fn compact_if_fragmented(&self) {
        if self.pool.wants_compaction() {
            self.pool
                .compact_step(&mut |tag, handle| self.relocate(tag, handle));
        }
    }

    /// Compaction's callback: the object `handle`, tagged `tag`, sits in a
    /// zspage being emptied. If the entry at the tag's offset still holds
    /// that handle, move the object and store where it went, all under the
    /// area lock (lock order: area, then class). Anything else (the entry
    /// is gone or was replaced, the area is off) leaves the object alone.
    fn relocate(&self, tag: u64, handle: Handle) {
        let (swap_type, offset) = ((tag >> 32) as usize, tag as u32);
        let Some(area) = self.areas.get(swap_type) else {
            return;
        };
        let mut inner = area.inner.lock();
        let Some(entry) = inner.index.get(offset) else {
            return;
        };
        let (current, len) = unpack(entry.value);
        if entry.tag == TAG_SAME_FILLED || current != handle {
            return;
        }
        let moved = self.pool.migrate(handle, len);
        if moved != handle {
            inner.index.set_value(entry.id, pack(moved, len), entry.tag);
        }
    }

    /// Per-size-class figures of the pool (zsmalloc's debugfs `classes`).
    pub fn pool_classes(&self) -> Vec<ClassStats> {
        self.pool.class_stats()
    }

    /// Every counter, under the kernel's names.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats
            .snapshot(self.pool.total_bytes(), self.page_size as u64)
    }

    /// The pool itself, for figures the stats do not give.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Check every area's index invariants (tests and debugging).
    pub fn check_invariants(&self) -> Result<(), String> {
        for (t, area) in self.areas.iter().enumerate() {
            area.inner
                .lock()
                .index
                .check_invariants()
                .map_err(|e| format!("swap type {t}: {e}"))?;
        }
        Ok(())
    }

    // --- policies -------------------------------------------------------------

    /// The compressor new pages are stored with.
    pub fn compressor_name(&self) -> &'static str {
        self.compressor.read().name()
    }

    /// Its level, if it has levels.
    pub fn compressor_level(&self) -> Option<i32> {
        self.compressor.read().level()
    }

    /// Store new pages with `comp`, an instance built outside the registry
    /// (a compressor with a device of one's own, a model in tests). Its id
    /// names the algorithm: entries it makes are decoded by the first
    /// instance of that id this cache used, which by the trait's contract
    /// decodes the same format.
    pub fn set_compressor_instance(&self, comp: Arc<dyn Compressor>) {
        let _ = self.decoders[comp.id() as usize].set(comp.clone());
        *self.compressor.write() = comp;
    }

    /// Switch the compressor for new pages; stored pages stay readable.
    pub fn set_compressor(&self, name: &str, level: Option<i32>) -> Result<()> {
        let dictionary = match compress::CompressorId::from_name(name) {
            Some(CompressorId::Zstd) => self.dictionary.clone(),
            _ => None,
        };
        let options = compress::Options { level, dictionary };
        let comp = compress::create(name, &options).map_err(|e| Error::config(e.0))?;
        let _ = self.decoders[comp.id() as usize].set(comp.clone());
        *self.compressor.write() = comp;
        Ok(())
    }

    /// The pool cap in bytes now in force (absolute, or percent of RAM).
    pub fn max_pool_bytes_limit(&self) -> u64 {
        self.policy.pool_limit()
    }

    /// The absolute cap, if one is set.
    pub fn max_pool_bytes(&self) -> Option<u64> {
        self.policy.max_pool_bytes()
    }

    /// Set or clear (`None`) the absolute cap.
    pub fn set_max_pool_bytes(&self, bytes: Option<u64>) -> Result<()> {
        self.policy.set_max_pool_bytes(bytes)
    }

    /// A percent setting's value now.
    pub fn percent(&self, which: Percent) -> u32 {
        self.policy.percent(which)
    }

    /// Change a percent setting; a value out of its range
    /// ([`Percent::check`]) is refused and the old one kept.
    pub fn set_percent(&self, which: Percent, value: u32) -> Result<()> {
        self.policy.set_percent(which, value)
    }

    /// Whether pages of one repeated word are kept as just the word.
    pub fn same_filled(&self) -> bool {
        self.policy.switch(Switch::SameFilled)
    }

    /// Turn same-filled detection on or off for new stores; same-filled
    /// entries already stored stay readable.
    pub fn set_same_filled(&self, on: bool) {
        self.policy.set_switch(Switch::SameFilled, on);
    }

    /// Whether `load` also drops the pool entry it serves.
    pub fn exclusive_loads(&self) -> bool {
        self.policy.switch(Switch::ExclusiveLoads)
    }

    /// Make later loads drop (`true`) or keep (`false`) the pool entry they
    /// serve.
    pub fn set_exclusive_loads(&self, on: bool) {
        self.policy.set_switch(Switch::ExclusiveLoads, on);
    }

    /// Whether a page that compresses too poorly is kept in the pool as it
    /// is ([`Config::store_incompressible`]).
    pub fn store_incompressible(&self) -> bool {
        self.policy.switch(Switch::StoreIncompressible)
    }

    /// Keep (`true`) or refuse (`false`, `reject_compress_poor`) the pages
    /// later stores find too poorly compressed; pages already kept raw
    /// stay.
    pub fn set_store_incompressible(&self, on: bool) {
        self.policy.set_switch(Switch::StoreIncompressible, on);
    }

    /// Whether new stores are taken; loads work either way.
    pub fn enabled(&self) -> bool {
        self.policy.switch(Switch::Enabled)
    }

    /// Take new stores into the pool (`true`), or pass them by (`false`: to
    /// the backing file, else refused as [`Reject::Disabled`]); loads work
    /// either way.
    pub fn set_enabled(&self, on: bool) {
        self.policy.set_switch(Switch::Enabled, on);
    }
}

impl Drop for Zswap {
    fn drop(&mut self) {
        // No region holds an area: a region holds the cache itself.
        let _ = self.close();
    }
}

/// The error for a call that would take a region's memory away.
fn held_error(swap_type: u32, what: &str) -> Error {
    Error::new(
        ErrorKind::Busy,
        format!(
            "cannot {what}: swap type {swap_type} holds the memory of an open region; \
             close the region first"
        ),
    )
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod lifecycle_tests;
