//! The compressed-page pool: a zsmalloc-style size-class allocator.
//!
//! zswap stores compressed pages of any size from a few bytes to a whole
//! page. A general-purpose allocator would round them to its own bins and
//! scatter them over the heap; zsmalloc instead packs them tightly and hands
//! back whole pages as soon as they empty. This module does the same in safe
//! user-space Rust:
//!
//! - **Size classes.** Object sizes are rounded up to a multiple of a step
//!   (`page_size / 256`, at least 16 bytes: 32, 48, ..., 4096 on 4 KiB
//!   pages), so an object loses less than one step to rounding, and all
//!   objects of a class are interchangeable (see `class.rs`).
//! - **Zspages.** A class's objects live in zspages: one zeroed buffer of 1
//!   to 8 pages, chosen per class so that equal slots tile it with the least
//!   waste (a 2064-byte class takes 8 pages for 15 objects, wasting 5.5%
//!   instead of 49.6% on one page). Objects may straddle page boundaries;
//!   the buffer is contiguous. A zspage is allocated when a class has no free
//!   slot and freed the moment its last object goes, its pages given back
//!   to the OS (`heap.rs`), so the pool, and the process's resident memory,
//!   grow and shrink with its contents; it is never preallocated.
//! - **Fullness groups.** Each class keeps its zspages in groups by the share
//!   of slots in use (<10%, <20%, ..., <100%, full). Allocation takes a slot
//!   from the fullest group with room, so sparse zspages are left to drain
//!   and be freed, and compaction empties the sparsest ones into the free
//!   slots of the fuller ones.
//! - **Handles are locations; objects carry their owner's tag.** A
//!   [`Handle`] packs class, zspage and slot in 48 bits, so reading an
//!   object is two table lookups and no indirection, and the metadata is a
//!   32-byte record per zspage plus one bit per slot, nothing per object.
//!   The kernel instead gives each object an 8-byte handle slot that points
//!   at it, so it can move objects behind the caller's back. A moved object
//!   here gets a new handle, which its owner must store; to find the owner
//!   without walking an index, each object ends with an 8-byte tag the
//!   caller chose ([`Pool::alloc_write_tagged`]; zswap: swap type and
//!   offset), as zsmalloc keeps the handle in an object header. The
//!   trade-off, against a handle table: 8 bytes of pool memory per object
//!   (0.5% of a 1.5 KiB compressed page, inside the pool's 1.15x) instead
//!   of 4 to 8 bytes of metadata per object on top of the index's 32 (the
//!   32-byte bar), and no extra dependent load on every read.
//! - **Compaction runs by itself.** [`Pool::wants_compaction`] says when the
//!   zspages compaction could free pass 1/[`COMPACT_SHARE`] of the pool, or
//!   free slots spread over many classes pass 1/[`SPARE_SHARE`]; the caller
//!   then runs a bounded [`Pool::compact_step`] with none of its locks held,
//!   which hands each object to move back by its tag, for the caller to move
//!   under its own lock ([`Pool::migrate`]). Only one class is locked, one
//!   move at a time; no caller ever stops the world.
//! - **Small pools.** A class with few zspages that is out of room places
//!   an object in a free slot of a slightly larger class rather than open an
//!   8-page zspage for it ([`FALLBACK_BELOW_ZSPAGES`]), and a cross-class
//!   step empties a sparse zspage into other classes that fit its objects:
//!   a pool of a few MiB is not mostly half-empty zspages.
//!
//! ## Locking
//!
//! One [`parking_lot::RwLock`] per size class protects that class's
//! zspages, their grouping and the bytes of its objects; objects of
//! different classes never contend. Reading an object takes it shared, so
//! any number of threads read objects of one class at once; allocation,
//! free, write and compaction take it exclusive. Most compressed pages
//! land in a handful of classes, so little slow work happens under a class
//! lock: a new zspage's memory is made and faulted in before the lock is
//! taken, and zswap decompresses through [`Pool::with_object_or_copy`],
//! in place while no writer waits for the class and from a copy, unlocked,
//! once one has (decompressing in place always made one thread loading
//! beside one storing spin into about 90,000 `sched_yield` calls per
//! 82,000 stores and 410,000 loads, with the stores waiting for
//! decompressions; copying always made an in-order load about 15%
//! slower, 1.55 against 1.79 us).
//! [`Pool::total_bytes`] and the per-class object counts are atomics,
//! written under the exclusive lock and read without it. A separate mutex
//! serialises compactions; it is taken before any class lock, and before
//! any lock the caller takes in a relocation callback (so the caller must
//! never start a compaction with such a lock held). No method calls back
//! into the caller with a class lock held except [`Pool::with_object`]
//! (and [`Pool::with_object_or_copy`] when it does not copy), whose
//! closure must not call the pool, and [`Pool::compact`], whose walk
//! runs with no class lock held too. Writers hold one class lock at a
//! time (a cross-class move copies the object out first); only
//! [`Pool::warm`] holds several, shared and taken with `try_read`.
//!
//! ## What `total_bytes` counts
//!
//! The bytes of the zspages held, exactly what zsmalloc's
//! `zs_get_total_pages() * PAGE_SIZE` reports. The zspage records (32 bytes
//! each, plus 8 bytes of slot bitmap per 64 slots, plus 4 bytes per freed
//! zspage id kept for reuse) are not counted, as the kernel does not count
//! its `struct zspage`s either: 0.12% of an 8-page zspage of 2 KiB objects,
//! at most 1.2% for the one-page zspages of the 32-byte class.

mod class;
mod handle;
mod heap;
mod zspage;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};

use parking_lot::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use class::ClassTable;
pub use class::{MAX_PAGES_PER_ZSPAGE, MAX_PAGE_SIZE, MIN_PAGE_SIZE};
pub use handle::{Handle, HANDLE_BITS};
use zspage::{ClassState, GROUPS};
pub use zspage::{NO_OWNER, TAG_BYTES};

/// Why an allocation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocError {
    /// The object is larger than the largest class (one page).
    TooLarge {
        /// Bytes asked for.
        size: usize,
        /// Largest object the pool takes: the page size.
        max: usize,
    },
    /// A zero-length object was asked for.
    Empty,
    /// A new zspage could not be allocated: the heap refused, or the class
    /// has used all 2^26 - 1 zspage ids of its handles.
    OutOfMemory,
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllocError::TooLarge { size, max } => write!(
                f,
                "object of {size} bytes is larger than the pool's largest size class ({max} bytes)"
            ),
            AllocError::Empty => write!(f, "cannot allocate a zero-length object"),
            AllocError::OutOfMemory => write!(f, "pool out of memory: could not add a zspage"),
        }
    }
}

impl std::error::Error for AllocError {}

/// A pool configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolConfigError {
    /// The page size is not a power of two in 4096..=65536.
    BadPageSize {
        /// The page size asked for, in bytes.
        page_size: usize,
    },
}

impl fmt::Display for PoolConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolConfigError::BadPageSize { page_size } => f.write_str(&bad_page_size(page_size)),
        }
    }
}

impl std::error::Error for PoolConfigError {}

/// What is wrong with a page size of `value` (of any integer type: a caller
/// with a negative one says the same).
pub fn bad_page_size(value: impl fmt::Display) -> String {
    format!("page_size {value} is not a power of two in {MIN_PAGE_SIZE}..={MAX_PAGE_SIZE}")
}

/// Whether a pool can work with pages of `page_size` bytes: a power of two
/// in [`MIN_PAGE_SIZE`]`..=`[`MAX_PAGE_SIZE`].
pub fn check_page_size(page_size: usize) -> Result<(), PoolConfigError> {
    if page_size.is_power_of_two() && (MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size) {
        Ok(())
    } else {
        Err(PoolConfigError::BadPageSize { page_size })
    }
}

/// One size class's figures, as zsmalloc's debugfs `classes` file shows
/// them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassStats {
    /// Class index (the size step it owns; merged steps are not listed).
    pub class: usize,
    /// Slot size in bytes.
    pub size: usize,
    /// Pages in each zspage of the class, 1 to [`MAX_PAGES_PER_ZSPAGE`].
    pub pages_per_zspage: usize,
    /// Slots in each zspage: as many as fit its pages.
    pub objs_per_zspage: usize,
    /// Zspages held.
    pub zspages: usize,
    /// Slots in those zspages: `zspages * objs_per_zspage`.
    pub obj_allocated: usize,
    /// Slots holding an object.
    pub obj_used: usize,
    /// Pages held: `zspages * pages_per_zspage`.
    pub pages_used: usize,
    /// Zspages [`Pool::compact`] could free now (the kernel reports this
    /// in pages: multiply by `pages_per_zspage`).
    pub freeable: usize,
    /// Zspages by share of slots in use, the debugfs columns
    /// `10 20 30 40 50 60 70 80 90 99 100`: `fullness[i]` for `i < 10`
    /// counts zspages with `i*10% <= used < (i+1)*10%`, so `fullness[9]` is
    /// 90% to 99.x% and `fullness[10]` counts full zspages. Empty zspages are
    /// freed at once and so have no bucket.
    pub fullness: [usize; 11],
}

const _: () = assert!(GROUPS == 11);

/// Most objects one [`Pool::warm`] call reads ahead.
pub const WARM_MAX: usize = 8;

/// Compaction runs by itself once the zspages it could free hold more than
/// 1/32 of the pool's bytes. The bar is 1.15x the compressed bytes; what no
/// compaction can take back already costs up to about 10% (the 8-byte tag
/// and rounding to a 16-byte step, about 1% of a 1.5 KiB object; zspage
/// tails, 2 to 5% for the classes compressed pages land in; each class's
/// last, partly used zspage), so fragmentation gets the 3% left. Lower
/// would move objects for savings nobody needs; each step frees at least
/// one zspage, so the cost per byte freed is the same at any threshold.
pub const COMPACT_SHARE: u64 = 32;

/// Most objects one [`Pool::compact_step`] moves (more only if the
/// sparsest zspage alone holds more: a step always empties one). One move
/// is a lookup by the caller and a slot copy, 0.2 to 0.5 us, so a step
/// costs the thread that runs it about 10 to 30 us, and holds any one lock
/// for one move.
pub const STEP_MOVES: usize = 64;

/// A class with fewer zspages than this places an object in a larger
/// class's free slot (within [`FALLBACK_SPAN`]) rather than add a zspage.
/// A new 8-page zspage of 2 KiB objects is 32 KiB, which a 4 MiB pool of
/// 60-odd busy classes can afford only if the class fills it soon; with 4
/// zspages or more a new one is at most a fifth of the class and fills
/// like the others, and the larger classes' rounding is not worth paying.
/// (On a 4 MiB pool without this, 38 classes held a 5-page zspage each
/// for one or two objects.)
pub const FALLBACK_BELOW_ZSPAGES: usize = 4;

/// How far up a fallback placement looks: classes at most 1/8 larger than
/// the object's own, so an object loses under 12.5% to rounding, and in
/// practice one or two 16-byte steps (the nearest class with room wins).
pub const FALLBACK_SPAN: usize = 8;

/// Cross-class compaction starts when free slots pass 1/16 of the pool
/// (6%): the room left in the 1.15x bar once tails, tags and rounding
/// (about 5%) and the in-class threshold (3%) are paid.
pub const SPARE_SHARE: u64 = 16;

/// How often (calls per thread) [`Pool::wants_compaction`] scans the
/// classes for spread-out free slots: a scan reads 3 atomics of each of
/// the 119 classes, about 0.2 us, so 3 ns a call.
pub const SPREAD_CHECK_EVERY: u32 = 64;

/// Reads of a class that copy its objects out (see
/// [`Pool::with_object_or_copy`]) after a writer of the class found its
/// lock taken: about 50 stores' worth of loads beside a storing thread, so
/// that a thread that stores while others load waits for a reader about
/// once per 50 stores, while a thread that only loads, or does both in
/// turn, never copies.
pub const COPY_READS: u32 = 256;

/// A bit per class index (at most 256): the classes a cross-class step
/// could not empty a zspage of since the spread of free slots was last
/// found over the share.
type Stuck = [u64; 4];

/// One size class: its shape, its counters and its lock. Aligned to 128
/// bytes (two cache lines: adjacent-line prefetch) so that two classes'
/// locks never share a line.
#[repr(align(128))]
struct SizeClass {
    /// Slot size in bytes.
    size: usize,
    /// Bytes of one zspage.
    zspage_bytes: usize,
    pages_per_zspage: usize,
    objs_per_zspage: usize,
    /// False for a size step merged into a larger class: such an entry is
    /// never locked, and handles never name it.
    owner: bool,
    /// Mirror of `state.obj_used`, stored under the lock so that counting
    /// objects takes no lock.
    obj_used: AtomicU64,
    /// Mirror of `state.live()` (zspages held), for the fallback rule.
    live: AtomicU32,
    /// Mirror of `state.freeable()`, for choosing what a compaction step
    /// works on; `Pool::freeable_bytes` sums them in bytes.
    freeable: AtomicU32,
    /// Mirror of `state.has_room()`, so that an allocation looking for a
    /// neighbour with room locks only one that has some.
    room: AtomicBool,
    /// True between compaction steps 1 and 3 iff this class isolated
    /// zspages; lets the owners walk skip other classes without locking.
    /// Written only by the thread holding the compaction lock (`Live::compact_lock`).
    compacting: AtomicBool,
    /// Reads of the class left that copy the object out rather than run
    /// their caller's closure under the lock ([`Pool::with_object_or_copy`]):
    /// set to [`COPY_READS`] by a writer that found the lock taken.
    copy_reads: AtomicU32,
    state: RwLock<ClassState>,
}

impl SizeClass {
    /// Bytes of free slots, from the atomics (approximate while the class
    /// changes).
    fn spare_bytes(&self) -> u64 {
        let slots = u64::from(self.live.load(Relaxed)) * self.objs_per_zspage as u64;
        slots.saturating_sub(self.obj_used.load(Relaxed)) * self.size as u64
    }
}

thread_local! {
    /// Calls of [`Pool::wants_compaction`] on this thread, for the spread
    /// check; per thread so that counting costs no shared cache line.
    static CALLS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// A zsmalloc-style pool of objects of 1..=page_size bytes. See the module
/// docs.
///
/// ```
/// use zswap_rs::pool::Pool;
///
/// let pool = Pool::new(4096).unwrap();
/// let h = pool.alloc_write(b"compressed bytes").unwrap();
/// let mut out = [0u8; 16];
/// pool.read(h, &mut out);
/// assert_eq!(&out, b"compressed bytes");
/// assert_eq!(pool.total_bytes(), 4096); // one 1-page zspage of 32-byte slots
/// pool.free(h);
/// assert_eq!(pool.total_bytes(), 0);
/// ```
pub struct Pool {
    table: ClassTable,
    /// One entry per size step, indexed by class index.
    classes: Box<[SizeClass]>,
    /// What allocations and frees write, apart from the read-only fields
    /// above that every call reads.
    live: Live,
}

/// The pool's figures that allocations, frees and compaction write, on
/// lines of their own (128 bytes: adjacent-line prefetch): next to the
/// class table, each write of one thread would evict the line holding
/// the table from the other thread's cache, and its next call would miss
/// on it.
#[repr(align(128))]
struct Live {
    /// Bytes of all zspages held; changed under the class lock that adds or
    /// removes a zspage.
    total_bytes: AtomicU64,
    /// Bytes of the zspages compaction could free: the sum over classes of
    /// `freeable * zspage_bytes`, changed under the class lock whose
    /// figure changed.
    freeable_bytes: AtomicU64,
    /// Set by the spread check of [`Pool::wants_compaction`] while free
    /// slots spread over classes pass the spare share; cleared by the next
    /// check that finds them under it, or by a cross-class step that could
    /// free nothing (so that a pool with nowhere to move objects does not
    /// try on every call).
    spread: AtomicBool,
    /// True while a cross-class step runs: only then may [`Pool::migrate`]
    /// move an object to another class. Written under `compact_lock`.
    across: AtomicBool,
    /// Serialises compactions (taken before any class lock, and before any
    /// lock of the caller's that a relocation callback takes). Holds the
    /// classes whose last cross-class step freed nothing (a bit per class
    /// index), which the next steps pass over.
    compact_lock: Mutex<Stuck>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("page_size", &self.page_size())
            .field("total_bytes", &self.total_bytes())
            .field("objects", &self.objects())
            .finish()
    }
}

impl Pool {
    /// An empty pool for pages of `page_size` bytes (a power of two in
    /// 4096..=65536). Allocates only the class table: one 384-byte entry per
    /// size step, about 96 KiB.
    pub fn new(page_size: usize) -> Result<Pool, PoolConfigError> {
        check_page_size(page_size)?;
        let table = ClassTable::new(page_size);
        let classes = table
            .specs()
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let pages = s.pages_per_zspage as usize;
                let zspage_bytes = pages * page_size;
                SizeClass {
                    size: s.size as usize,
                    zspage_bytes,
                    pages_per_zspage: pages,
                    objs_per_zspage: s.objs_per_zspage as usize,
                    owner: s.owner as usize == i,
                    obj_used: AtomicU64::new(0),
                    live: AtomicU32::new(0),
                    freeable: AtomicU32::new(0),
                    room: AtomicBool::new(false),
                    compacting: AtomicBool::new(false),
                    copy_reads: AtomicU32::new(0),
                    state: RwLock::new(ClassState::new(
                        s.size as usize,
                        s.objs_per_zspage,
                        zspage_bytes,
                    )),
                }
            })
            .collect();
        Ok(Pool {
            table,
            classes,
            live: Live {
                total_bytes: AtomicU64::new(0),
                freeable_bytes: AtomicU64::new(0),
                spread: AtomicBool::new(false),
                across: AtomicBool::new(false),
                compact_lock: Mutex::new([0; 4]),
            },
        })
    }

    /// The page size the pool was built for.
    pub fn page_size(&self) -> usize {
        self.table.page_size()
    }

    /// Largest object the pool takes: one page.
    pub fn max_alloc(&self) -> usize {
        self.page_size()
    }

    /// The slot size a request of `size` bytes would take, or `None` if
    /// `size` is 0 or above [`Pool::max_alloc`].
    pub fn class_size_for(&self, size: usize) -> Option<usize> {
        self.table.class_for(size).map(|c| self.classes[c].size)
    }

    /// Number of size steps (class indices, merged or not).
    pub fn class_count(&self) -> usize {
        self.table.steps()
    }

    /// The class an object of `len` bytes goes to, with room for its tag
    /// (unless only the one-slot page class can take it, which keeps none).
    #[inline]
    fn class_index(&self, len: usize) -> Result<usize, AllocError> {
        let with_tag = (len + TAG_BYTES).min(self.page_size());
        match self.table.class_for(with_tag) {
            Some(c) if len != 0 && len <= self.page_size() => Ok(c),
            _ if len == 0 => Err(AllocError::Empty),
            _ => Err(AllocError::TooLarge {
                size: len,
                max: self.max_alloc(),
            }),
        }
    }

    #[inline]
    #[track_caller]
    fn class_of(&self, handle: Handle) -> &SizeClass {
        let c = handle.class();
        match self.classes.get(c) {
            Some(sc) if sc.owner => sc,
            _ => panic!(
                "zswap pool: {handle:?} names size class {c}, which this pool (page size {}) does not have",
                self.page_size()
            ),
        }
    }

    /// Copies the class's figures to its atomics, under its lock.
    #[inline]
    fn publish(&self, sc: &SizeClass, st: &ClassState) {
        sc.obj_used.store(st.obj_used(), Relaxed);
        sc.room.store(st.has_room(), Relaxed);
        sc.live.store(st.live() as u32, Relaxed);
        // Only the lock holder writes `freeable`: load and store suffice.
        let (old, new) = (sc.freeable.load(Relaxed), st.freeable() as u32);
        if new != old {
            sc.freeable.store(new, Relaxed);
            let bytes = sc.zspage_bytes as u64;
            if new > old {
                self.live
                    .freeable_bytes
                    .fetch_add(u64::from(new - old) * bytes, Relaxed);
            } else {
                self.live
                    .freeable_bytes
                    .fetch_sub(u64::from(old - new) * bytes, Relaxed);
            }
        }
    }

    /// The class lock, exclusive. A writer that finds it taken (most often
    /// by a read in progress) switches the class's next reads to copying
    /// out, so that it waits for readers once rather than on every write.
    #[inline]
    fn write_lock<'a>(&self, sc: &'a SizeClass) -> RwLockWriteGuard<'a, ClassState> {
        if let Some(st) = sc.state.try_write() {
            return st;
        }
        sc.copy_reads.store(COPY_READS, Relaxed);
        sc.state.write()
    }

    /// Allocates an object of `size` bytes tagged [`NO_OWNER`] (its content
    /// is whatever the slot held). Prefer [`Pool::alloc_write_tagged`],
    /// which also fills it and lets compaction steps move it.
    pub fn alloc(&self, size: usize) -> Result<Handle, AllocError> {
        self.place(size, &[], NO_OWNER)
    }

    /// Allocates an object of `data.len()` bytes and copies `data` into it,
    /// tagged [`NO_OWNER`]: only [`Pool::compact`] moves it.
    pub fn alloc_write(&self, data: &[u8]) -> Result<Handle, AllocError> {
        self.place(data.len(), data, NO_OWNER)
    }

    /// Allocates an object of `data.len()` bytes, copies `data` into it and
    /// keeps `tag` beside it, under one lock acquisition: the store fast
    /// path. `tag` is the caller's name for the object (zswap: its swap
    /// type and offset); a compaction step hands it back with the handle so
    /// that the caller can find the reference it must update (see
    /// [`Pool::compact_step`]). [`NO_OWNER`] means "never move it in a step".
    pub fn alloc_write_tagged(&self, data: &[u8], tag: u64) -> Result<Handle, AllocError> {
        self.place(data.len(), data, tag)
    }

    /// The allocation behind the three `alloc` calls: `data` (at most `len`
    /// bytes) is copied to the start of a new object of `len` bytes.
    #[inline]
    fn place(&self, len: usize, data: &[u8], tag: u64) -> Result<Handle, AllocError> {
        let c = self.class_index(len)?;
        let sc = &self.classes[c];
        if !sc.room.load(Relaxed) && (sc.live.load(Relaxed) as usize) < FALLBACK_BELOW_ZSPAGES {
            if let Some(h) = self.place_in_neighbour(c, data, tag) {
                return Ok(h);
            }
        }
        // No free slot: make the new zspage's memory before locking, so
        // that other threads' allocations, frees and reads of the class do
        // not wait while its pages fault in. If another thread added a
        // zspage meanwhile, the memory is dropped after unlocking. (If the
        // heap refuses, the class tries again under the lock, and fails
        // there if it still needs the zspage.)
        let mut mem = if sc.room.load(Relaxed) {
            None
        } else {
            heap::zspage_memory(sc.zspage_bytes).ok()
        };
        let mut st = self.write_lock(sc);
        let (id, obj, created) = st.alloc_write(data, tag, &mut mem)?;
        if created {
            self.live
                .total_bytes
                .fetch_add(sc.zspage_bytes as u64, Relaxed);
        }
        self.publish(sc, &st);
        drop(st);
        drop(mem);
        Ok(Handle::new(c, id, obj))
    }

    /// Small-pool placement: class `c` has no free slot and few zspages, so
    /// a new zspage would stay mostly empty for long. Take a free slot of
    /// the nearest larger class within [`FALLBACK_SPAN`] instead, if one has
    /// room. Each neighbour's lock is taken alone, never two at once.
    #[inline(never)]
    fn place_in_neighbour(&self, c: usize, data: &[u8], tag: u64) -> Option<Handle> {
        let limit = self.classes[c].size + self.classes[c].size / FALLBACK_SPAN;
        for (i, sc) in self.classes.iter().enumerate().skip(c + 1) {
            if sc.size > limit {
                break;
            }
            // Only a class that keeps a tag may take a tagged object: the
            // one-slot page class has no room for one.
            if !sc.owner || !sc.room.load(Relaxed) || sc.objs_per_zspage == 1 {
                continue;
            }
            let mut st = self.write_lock(sc);
            if let Some((id, obj)) = st.alloc_write_if_room(data, tag) {
                self.publish(sc, &st);
                return Some(Handle::new(i, id, obj));
            }
        }
        None
    }

    /// Frees the object. Its zspage is freed too if it was the last object
    /// there.
    ///
    /// # Panics
    /// If `handle` names no zspage or slot of this pool, or a slot that is
    /// not allocated (double free, stale handle).
    #[track_caller]
    pub fn free(&self, handle: Handle) {
        let sc = self.class_of(handle);
        let mut st = self.write_lock(sc);
        let freed = st.free(handle.zspage(), handle.obj());
        if freed.is_some() {
            self.live
                .total_bytes
                .fetch_sub(sc.zspage_bytes as u64, Relaxed);
        }
        self.publish(sc, &st);
        drop(st);
        // The zspage's memory goes back to the heap after the lock is
        // released.
        drop(freed);
    }

    /// Copies `data` to the start of the object.
    ///
    /// # Panics
    /// If `data` is longer than the object's class size, and as
    /// [`Pool::free`] for bad handles.
    #[track_caller]
    pub fn write(&self, handle: Handle, data: &[u8]) {
        let sc = self.class_of(handle);
        let mut st = self.write_lock(sc);
        let slot = st.slot_mut(handle.zspage(), handle.obj(), "write");
        assert!(
            data.len() <= slot.len(),
            "zswap pool: write of {} bytes into a {}-byte object",
            data.len(),
            slot.len()
        );
        slot[..data.len()].copy_from_slice(data);
    }

    /// Copies the first `out.len()` bytes of the object into `out`.
    ///
    /// # Panics
    /// If `out` is longer than the object's class size, and as
    /// [`Pool::free`] for bad handles.
    #[track_caller]
    pub fn read(&self, handle: Handle, out: &mut [u8]) {
        self.with_object(handle, out.len(), |bytes| out.copy_from_slice(bytes))
    }

    /// Runs `f` on the first `len` bytes of the object with the class lock
    /// held shared (a zero-copy read): other reads of the class run
    /// meanwhile, changes to it wait for `f`, so keep `f` short (a copy,
    /// not a decompression). `f` must not call this pool: a shared lock
    /// taken again behind a waiting writer deadlocks.
    ///
    /// # Panics
    /// If `len` is larger than the object's class size, and as
    /// [`Pool::free`] for bad handles.
    #[track_caller]
    pub fn with_object<R>(&self, handle: Handle, len: usize, f: impl FnOnce(&[u8]) -> R) -> R {
        let sc = self.class_of(handle);
        let st = sc.state.read();
        let slot = st.slot(handle.zspage(), handle.obj(), "read");
        assert!(
            len <= slot.len(),
            "zswap pool: read of {len} bytes from a {}-byte object",
            slot.len()
        );
        f(&slot[..len])
    }

    /// As [`Pool::with_object`], but while writers of the class have lately
    /// found its lock taken (see [`COPY_READS`]), the object's first `len`
    /// bytes are copied into `scratch` under the lock instead and `f` runs
    /// on the copy after it is let go, so that a slow `f` (a
    /// decompression) holds up no allocation or free of the class. Copying
    /// always would cost a load one stream of misses before its
    /// decompression starts (an lz4 load in order took 1.79 us instead of
    /// 1.55 here); running `f` under the lock always made a thread storing
    /// beside a loading one wait on the lock about once per store. `f`
    /// must not call this pool (it may run under the lock).
    ///
    /// # Panics
    /// If `scratch` is shorter than `len`, and as [`Pool::with_object`].
    #[track_caller]
    #[inline]
    pub fn with_object_or_copy<R>(
        &self,
        handle: Handle,
        len: usize,
        scratch: &mut [u8],
        f: impl FnOnce(&[u8]) -> R,
    ) -> R {
        let sc = self.class_of(handle);
        let left = sc.copy_reads.load(Relaxed);
        if left == 0 {
            return self.with_object(handle, len, f);
        }
        // Racy with other readers' decrements; a count lost or repeated
        // only moves the switch back by a read.
        sc.copy_reads.store(left - 1, Relaxed);
        let copy = &mut scratch[..len];
        self.read(handle, copy);
        f(copy)
    }

    /// Reads the first cache line of each of up to [`WARM_MAX`] objects,
    /// their misses overlapped, so that reads of them soon after start in
    /// cache; the result means nothing (feed it to `black_box`). The class
    /// locks are all taken (shared) before any object is touched: each
    /// lock is an atomic read-modify-write, which on x86 waits for every
    /// earlier load, so taking one per object would queue the misses one
    /// after another again. A hint: a class whose lock is not free at once is
    /// skipped, and a stale handle reads whatever its slot holds.
    pub fn warm(&self, handles: &[Handle]) -> u8 {
        let handles = &handles[..handles.len().min(WARM_MAX)];
        let mut held: [Option<(usize, RwLockReadGuard<'_, ClassState>)>; WARM_MAX] =
            Default::default();
        let mut n = 0;
        for h in handles {
            let c = h.class();
            if held[..n].iter().flatten().any(|(k, _)| *k == c) {
                continue;
            }
            let Some(sc) = self.classes.get(c).filter(|sc| sc.owner) else {
                continue;
            };
            if let Some(guard) = sc.state.try_read() {
                held[n] = Some((c, guard));
                n += 1;
            }
        }
        let mut sum = 0u8;
        for h in handles {
            if let Some((_, st)) = held[..n].iter().flatten().find(|(k, _)| *k == h.class()) {
                if let Some(b) = st.peek_first_byte(h.zspage(), h.obj()) {
                    sum = sum.wrapping_add(b);
                }
            }
        }
        sum
    }

    /// Bytes of all zspages held (what the kernel reports as the zswap
    /// pool size).
    #[inline]
    pub fn total_bytes(&self) -> u64 {
        self.live.total_bytes.load(Relaxed)
    }

    /// Pages held by all zspages.
    pub fn total_pages(&self) -> u64 {
        self.total_bytes() / self.page_size() as u64
    }

    /// Objects allocated. Summed over the classes without locking, so only
    /// exact when no allocation or free runs meanwhile.
    pub fn objects(&self) -> u64 {
        self.classes.iter().map(|c| c.obj_used.load(Relaxed)).sum()
    }

    /// Sum of the class sizes of the objects allocated: what the objects
    /// take before zspage tails and free slots are counted.
    pub fn object_bytes(&self) -> u64 {
        self.classes
            .iter()
            .map(|c| c.obj_used.load(Relaxed) * c.size as u64)
            .sum()
    }

    /// Figures for every class (merged size steps are folded into the class
    /// that serves them), in index order, used or not, as the kernel's
    /// debugfs `classes` file lists them. Locks each class in turn, so the
    /// figures of one class are consistent with each other.
    pub fn class_stats(&self) -> Vec<ClassStats> {
        self.classes
            .iter()
            .enumerate()
            .filter(|(_, sc)| sc.owner)
            .map(|(i, sc)| {
                let st = sc.state.read();
                let s = st.stats();
                let freeable = st.freeable();
                drop(st);
                ClassStats {
                    class: i,
                    size: sc.size,
                    pages_per_zspage: sc.pages_per_zspage,
                    objs_per_zspage: sc.objs_per_zspage,
                    zspages: s.zspages,
                    obj_allocated: s.zspages * sc.objs_per_zspage,
                    obj_used: s.obj_used,
                    pages_used: s.zspages * sc.pages_per_zspage,
                    freeable,
                    fullness: s.fullness,
                }
            })
            .collect()
    }

    /// Compaction: moves objects out of the sparsest zspages of each class
    /// into free slots of fuller ones, then frees the emptied zspages.
    /// Returns the pages freed.
    ///
    /// Handles are locations, so a moved object gets a new handle. The
    /// caller presents every live handle it owns, once, through `owners`:
    /// `owners(visit)` must call `visit(&mut handle)` for each, and the pool
    /// rewrites in place those it moved. The caller guarantees that no other
    /// pool call for those handles runs until `compact` returns (zswap holds
    /// all its index locks); allocations and frees of other objects may run
    /// concurrently, and are never given a slot in a zspage being emptied.
    ///
    /// Per class, it sets aside the zspages that would be freed if all went
    /// well: the sparsest ones whose objects fit in the free slots of the
    /// rest ([`ClassStats::freeable`] of them). `owners` is called only if
    /// some class has any (so a compaction with nothing to gain does not
    /// walk the caller's index). A handle outside those zspages is left
    /// alone; an object whose move finds no room (concurrent allocations
    /// took it) stays, and keeps its zspage. Zspages set aside are put back
    /// in service afterwards, even if `owners` panics.
    // The nested `dyn FnMut` is the contract itself; an alias would hide it.
    #[allow(clippy::type_complexity)]
    pub fn compact(&self, owners: &mut dyn FnMut(&mut dyn FnMut(&mut Handle))) -> usize {
        let _serial = self.live.compact_lock.lock();
        let mut any = false;
        for sc in self.classes.iter().filter(|c| c.owner) {
            let mut st = self.write_lock(sc);
            if st.isolate_sparse() > 0 {
                sc.compacting.store(true, Relaxed);
                any = true;
            }
        }
        if !any {
            return 0;
        }
        let finish = FinishCompaction { pool: self };
        owners(&mut |h: &mut Handle| self.migrate_in_place(h));
        let pages = finish.pool.finish_compaction();
        std::mem::forget(finish);
        pages
    }

    /// Moves the object at `handle` if a compaction has set its zspage
    /// aside, and returns where it is now (`handle` itself if it was left
    /// alone: elsewhere, or no room). Called by the relocation callback of
    /// [`Pool::compact_step`] and [`Pool::compact_by_tags`], with the
    /// caller's own reference to the object locked so that nothing else uses
    /// the old handle meanwhile; the caller then stores the new one.
    ///
    /// # Panics
    /// If `handle` names an isolated zspage's slot that is not allocated.
    ///
    /// `len` is the object's length as allocated: in a cross-class step, if
    /// its class has no room left, the object may go to a free slot of
    /// another class that fits it, its own or one at most
    /// 1/[`FALLBACK_SPAN`] larger (so moves never let an object drift up
    /// the classes).
    pub fn migrate(&self, handle: Handle, len: usize) -> Handle {
        let mut h = handle;
        self.migrate_in_place(&mut h);
        if h == handle && self.live.across.load(Relaxed) {
            if let Some(moved) = self.migrate_across(handle, len) {
                return moved;
            }
        }
        h
    }

    /// A move to another class: the object is copied out under its class
    /// lock, written into a free slot of a class that fits `len`, and only
    /// then freed from its isolated zspage, one class lock at a time (the
    /// caller's lock keeps everyone else off the object meanwhile).
    fn migrate_across(&self, h: Handle, len: usize) -> Option<Handle> {
        let c = h.class();
        let sc = self.classes.get(c)?;
        if !sc.compacting.load(Relaxed) {
            return None;
        }
        let own = self.class_index(len).ok()?;
        let (bytes, tag) = {
            let st = sc.state.read();
            if !st.is_isolated_object(h.zspage(), h.obj()) || len > st.capacity() {
                return None;
            }
            st.copy_out(h.zspage()?, h.obj(), len)
        };
        let limit = self.classes[own].size + self.classes[own].size / FALLBACK_SPAN;
        for (i, dst) in self.classes.iter().enumerate().skip(own) {
            if dst.size > limit {
                break;
            }
            if i == c || !dst.owner || !dst.room.load(Relaxed) || dst.objs_per_zspage == 1 {
                continue;
            }
            let mut st = self.write_lock(dst);
            let Some((id, obj)) = st.alloc_write_if_room(&bytes, tag) else {
                continue;
            };
            self.publish(dst, &st);
            drop(st);
            let mut src = self.write_lock(sc);
            src.free_isolated(h.zspage()?, h.obj());
            self.publish(sc, &src);
            return Some(Handle::new(i, id, obj));
        }
        None
    }

    /// Compaction step 2 for one handle the caller presents.
    fn migrate_in_place(&self, h: &mut Handle) {
        let c = h.class();
        let Some(sc) = self.classes.get(c) else {
            return;
        };
        if !sc.compacting.load(Relaxed) {
            return;
        }
        let mut st = self.write_lock(sc);
        if let Some((id, obj)) = st.migrate(h.zspage(), h.obj()) {
            *h = Handle::new(c, id, obj);
        }
        self.publish(sc, &st);
    }

    /// Compaction step 3: frees emptied zspages and relists the rest.
    /// Returns the pages freed.
    fn finish_compaction(&self) -> usize {
        let mut pages = 0;
        for sc in self.classes.iter().filter(|c| c.compacting.load(Relaxed)) {
            let mut st = self.write_lock(sc);
            let freed = st.finish_compaction();
            sc.compacting.store(false, Relaxed);
            self.live
                .total_bytes
                .fetch_sub((freed * sc.zspage_bytes) as u64, Relaxed);
            self.publish(sc, &st);
            pages += freed * sc.pages_per_zspage;
        }
        pages
    }

    /// Whether the pool has passed the fragmentation threshold: compaction
    /// could free more than 1/[`COMPACT_SHARE`] of its bytes. Two relaxed
    /// loads; a caller checks this after its frees, with none of its locks
    /// held, and runs [`Pool::compact_step`] when it is true.
    ///
    /// Every [`SPREAD_CHECK_EVERY`] calls on a thread it also sums the free
    /// slots of all classes (a scan of their atomics): when they pass
    /// 1/[`SPARE_SHARE`] of the pool with nothing freeable inside any one
    /// class, the waste is one partly used zspage in each of many classes
    /// (a small or shrinking pool), and steps then empty the sparsest of
    /// them into other classes that fit its objects.
    #[inline]
    pub fn wants_compaction(&self) -> bool {
        let freeable = self.live.freeable_bytes.load(Relaxed);
        if freeable > 0 && freeable * COMPACT_SHARE > self.total_bytes() {
            return true;
        }
        let due = CALLS.with(|n| {
            let v = n.get().wrapping_add(1);
            n.set(v);
            v % SPREAD_CHECK_EVERY == 0
        });
        if due {
            let spread = self.spread_out();
            if spread != self.live.spread.load(Relaxed) {
                self.live.spread.store(spread, Relaxed);
            }
        }
        self.live.spread.load(Relaxed)
    }

    /// Whether free slots spread over the classes exceed the spare share.
    #[inline(never)]
    fn spread_out(&self) -> bool {
        let spare: u64 = self.classes.iter().map(SizeClass::spare_bytes).sum();
        spare * SPARE_SHARE > self.total_bytes()
    }

    /// The class whose free slots take the most bytes, for a cross-class
    /// step, among those not `stuck` whose sparsest zspage looks as if it
    /// could be emptied: the classes up to 1/[`FALLBACK_SPAN`] larger have
    /// as many free slots as the class holds objects per zspage on
    /// average (at least what its sparsest zspage holds). Reads atomics
    /// only: about 119 classes and 6 neighbours each.
    fn sparsest_class(&self, stuck: &Stuck) -> Option<(usize, &SizeClass)> {
        self.classes
            .iter()
            .enumerate()
            .filter(|(i, sc)| {
                sc.owner && sc.objs_per_zspage > 1 && stuck[i / 64] & (1 << (i % 64)) == 0
            })
            .filter(|(_, sc)| sc.spare_bytes() > 0)
            .filter(|&(i, sc)| {
                let live = u64::from(sc.live.load(Relaxed)).max(1);
                self.spare_slots_above(i) >= sc.obj_used.load(Relaxed) / live
            })
            .max_by_key(|(_, sc)| sc.spare_bytes())
    }

    /// Free slots of the classes above `c` that a cross-class step may
    /// move `c`'s objects to (from the atomics, so approximate).
    fn spare_slots_above(&self, c: usize) -> u64 {
        let limit = self.classes[c].size + self.classes[c].size / FALLBACK_SPAN;
        self.classes[c + 1..]
            .iter()
            .take_while(|sc| sc.size <= limit)
            .filter(|sc| sc.owner && sc.objs_per_zspage > 1 && sc.room.load(Relaxed))
            .map(|sc| {
                let slots = u64::from(sc.live.load(Relaxed)) * sc.objs_per_zspage as u64;
                slots.saturating_sub(sc.obj_used.load(Relaxed))
            })
            .sum()
    }

    /// Bytes of the zspages compaction could free now.
    pub fn freeable_bytes(&self) -> u64 {
        self.live.freeable_bytes.load(Relaxed)
    }

    /// One bounded compaction step, the one that runs by itself: in the
    /// class with the most freeable bytes, sets aside zspages from its
    /// sparsest fullness groups holding at most [`STEP_MOVES`] objects (at
    /// least one zspage), hands each of their objects to `relocate(tag,
    /// handle)`, then frees the zspages that emptied. Returns the pages
    /// freed; 0 at once if another compaction is running (this never waits
    /// for one) or nothing is freeable.
    ///
    /// `relocate` is called with no pool lock held. It must lock whatever
    /// guards the caller's reference to the object named `tag`, check that
    /// the reference still holds `handle` (the object may have been freed
    /// meanwhile: its slot is then not reused until the step ends, since an
    /// isolated zspage takes no allocation), call [`Pool::migrate`] and
    /// store the handle it returns. It may skip an object (a lock that is
    /// busy, a tag it does not know): the object stays, and so does its
    /// zspage. Objects tagged [`NO_OWNER`] are not presented.
    ///
    /// Only the class worked on is locked, and only briefly: to isolate, to
    /// move each object (one slot copy), and to finish. Other classes never
    /// wait on a step.
    pub fn compact_step(&self, relocate: &mut dyn FnMut(u64, Handle)) -> usize {
        let Some(mut stuck) = self.live.compact_lock.try_lock() else {
            return 0;
        };
        let best = self
            .classes
            .iter()
            .enumerate()
            .filter(|(_, sc)| sc.owner)
            .max_by_key(|(_, sc)| u64::from(sc.freeable.load(Relaxed)) * sc.zspage_bytes as u64);
        // In-class work while the in-class threshold is passed; otherwise
        // what is left is spread over classes.
        let freeable = self.live.freeable_bytes.load(Relaxed);
        let within = best.filter(|(_, sc)| {
            sc.freeable.load(Relaxed) > 0 && freeable * COMPACT_SHARE > self.total_bytes()
        });
        let Some((c, sc)) = within.or_else(|| self.sparsest_class(&stuck)) else {
            // No class with free slots is left to try: rest until the next
            // spread check, then try them all afresh.
            self.live.spread.store(false, Relaxed);
            *stuck = [0; 4];
            return 0;
        };
        let mut objects = Vec::new();
        {
            let mut st = self.write_lock(sc);
            let isolated = if within.is_some() {
                st.isolate_some(STEP_MOVES) > 0
            } else {
                st.isolate_sparsest()
            };
            if !isolated {
                return 0;
            }
            sc.compacting.store(true, Relaxed);
            st.isolated_objects(|tag, id, obj| objects.push((tag, Handle::new(c, id, obj))));
        }
        self.live.across.store(within.is_none(), Relaxed);
        let pages = self.relocate_all(&objects, relocate);
        self.live.across.store(false, Relaxed);
        if pages == 0 && within.is_none() {
            // Its objects found no room in the classes that fit them (some
            // may have moved). Rest until the next spread check, then try
            // the next sparsest class rather than this one again.
            stuck[c / 64] |= 1 << (c % 64);
            self.live.spread.store(false, Relaxed);
        }
        pages
    }

    /// A whole compaction through the tags, for callers that tag their
    /// objects: as [`Pool::compact`], every class's freeable zspages are set
    /// aside at once, but their objects are presented to `relocate` as
    /// [`Pool::compact_step`] does, so the caller never walks its index
    /// and never stops the world. Waits for a running compaction. Returns
    /// the pages freed.
    pub fn compact_by_tags(&self, relocate: &mut dyn FnMut(u64, Handle)) -> usize {
        let _serial = self.live.compact_lock.lock();
        let mut objects = Vec::new();
        for (c, sc) in self.classes.iter().enumerate().filter(|(_, c)| c.owner) {
            let mut st = self.write_lock(sc);
            if st.isolate_sparse() > 0 {
                sc.compacting.store(true, Relaxed);
                st.isolated_objects(|tag, id, obj| objects.push((tag, Handle::new(c, id, obj))));
            }
        }
        if objects.is_empty() && !self.classes.iter().any(|c| c.compacting.load(Relaxed)) {
            return 0;
        }
        self.relocate_all(&objects, relocate)
    }

    /// Steps 2 and 3 of a tagged compaction; the caller holds
    /// `compact_lock` and has isolated what `objects` lists.
    fn relocate_all(
        &self,
        objects: &[(u64, Handle)],
        relocate: &mut dyn FnMut(u64, Handle),
    ) -> usize {
        let finish = FinishCompaction { pool: self };
        for &(tag, h) in objects.iter().filter(|(tag, _)| *tag != NO_OWNER) {
            relocate(tag, h);
        }
        let pages = finish.pool.finish_compaction();
        std::mem::forget(finish);
        pages
    }
}

/// Puts isolated zspages back in service if the caller's walk unwinds.
struct FinishCompaction<'a> {
    pool: &'a Pool,
}

impl Drop for FinishCompaction<'_> {
    fn drop(&mut self) {
        self.pool.finish_compaction();
    }
}

#[cfg(test)]
mod tests;
