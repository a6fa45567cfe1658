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
//!   slot and freed the moment its last object goes, so the pool grows and
//!   shrinks with its contents and is never preallocated.
//! - **Fullness groups.** Each class keeps its zspages in groups by the share
//!   of slots in use (<10%, <20%, ..., <100%, full). Allocation takes a slot
//!   from the fullest group with room, so sparse zspages are left to drain
//!   and be freed, and [`Pool::compact`] empties the sparsest ones into the
//!   free slots of the fuller ones.
//! - **Handles are locations.** A [`Handle`] packs class, zspage and slot in
//!   48 bits, so reading an object is two table lookups and no indirection,
//!   and the metadata is a 32-byte record per zspage plus one bit per slot
//!   (which slots are taken), nothing per object. The kernel
//!   instead gives each object an 8-byte handle slot that points at it, so it
//!   can move objects behind the caller's back. We pay for our choice at
//!   compaction time: moved objects get new handles, so the caller must walk
//!   its index with all of its locks held and let the pool rewrite the
//!   handles it moved (a stop-the-world pass, run rarely and off the hot
//!   path).
//!
//! ## Locking
//!
//! One [`parking_lot::RwLock`] per size class protects that class's
//! zspages, their grouping and the bytes of its objects; objects of
//! different classes never contend. Reading an object takes it shared, so
//! any number of threads decompress objects of one class at once;
//! allocation, free, write and compaction take it exclusive. (A mutex here
//! made two threads loading from one pool run at 1.04x one thread's rate,
//! since a load holds the lock for its whole decompression:
//! `cargo bench --bench store_load`, "two threads loading".)
//! [`Pool::total_bytes`] and the per-class object counts are atomics,
//! written under the exclusive lock and read without it. A separate mutex
//! serialises [`Pool::compact`] calls; it is taken before any class lock.
//! No method calls back into the caller with a class lock held except
//! [`Pool::with_object`], whose closure must not call the pool.
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
mod zspage;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use parking_lot::{Mutex, RwLock, RwLockReadGuard};

use class::ClassTable;
pub use class::{MAX_PAGES_PER_ZSPAGE, MAX_PAGE_SIZE, MIN_PAGE_SIZE};
pub use handle::{Handle, HANDLE_BITS};
use zspage::{ClassState, GROUPS};

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
            PoolConfigError::BadPageSize { page_size } => write!(
                f,
                "page_size {page_size} is not a power of two in {MIN_PAGE_SIZE}..={MAX_PAGE_SIZE}"
            ),
        }
    }
}

impl std::error::Error for PoolConfigError {}

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
    /// True between compaction steps 1 and 3 iff this class isolated
    /// zspages; lets the owners walk skip other classes without locking.
    /// Written only by the thread holding `Pool::compact_lock`.
    compacting: AtomicBool,
    state: RwLock<ClassState>,
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
    /// Bytes of all zspages held; changed under the class lock that adds or
    /// removes a zspage.
    total_bytes: AtomicU64,
    /// Serialises compactions (taken before any class lock).
    compact_lock: Mutex<()>,
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
        if !page_size.is_power_of_two() || !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size) {
            return Err(PoolConfigError::BadPageSize { page_size });
        }
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
                    compacting: AtomicBool::new(false),
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
            total_bytes: AtomicU64::new(0),
            compact_lock: Mutex::new(()),
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

    #[inline]
    fn class_index(&self, size: usize) -> Result<usize, AllocError> {
        match self.table.class_for(size) {
            Some(c) => Ok(c),
            None if size == 0 => Err(AllocError::Empty),
            None => Err(AllocError::TooLarge {
                size,
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

    /// Allocates an object of `size` bytes (its content is whatever the slot
    /// held). Prefer [`Pool::alloc_write`], which also fills it.
    pub fn alloc(&self, size: usize) -> Result<Handle, AllocError> {
        let c = self.class_index(size)?;
        let sc = &self.classes[c];
        let mut st = sc.state.write();
        let (id, obj, created) = st.alloc()?;
        if created {
            self.total_bytes.fetch_add(sc.zspage_bytes as u64, Relaxed);
        }
        sc.obj_used.store(st.obj_used(), Relaxed);
        Ok(Handle::new(c, id, obj))
    }

    /// Allocates an object of `data.len()` bytes and copies `data` into it,
    /// under one lock acquisition: the store fast path.
    pub fn alloc_write(&self, data: &[u8]) -> Result<Handle, AllocError> {
        let c = self.class_index(data.len())?;
        let sc = &self.classes[c];
        let mut st = sc.state.write();
        let (id, obj, created) = st.alloc_write(data)?;
        if created {
            self.total_bytes.fetch_add(sc.zspage_bytes as u64, Relaxed);
        }
        sc.obj_used.store(st.obj_used(), Relaxed);
        Ok(Handle::new(c, id, obj))
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
        let mut st = sc.state.write();
        let freed = st.free(handle.zspage(), handle.obj());
        sc.obj_used.store(st.obj_used(), Relaxed);
        if freed.is_some() {
            self.total_bytes.fetch_sub(sc.zspage_bytes as u64, Relaxed);
        }
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
        let mut st = sc.state.write();
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
    /// held shared (a zero-copy read, e.g. to decompress in place): other
    /// reads of the class run meanwhile, changes to it wait. `f` must not
    /// call this pool: a shared lock taken again behind a waiting writer
    /// deadlocks.
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
        self.total_bytes.load(Relaxed)
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
        let _serial = self.compact_lock.lock();
        let mut any = false;
        for sc in self.classes.iter().filter(|c| c.owner) {
            let mut st = sc.state.write();
            if st.isolate_sparse() > 0 {
                sc.compacting.store(true, Relaxed);
                any = true;
            }
        }
        if !any {
            return 0;
        }
        let finish = FinishCompaction { pool: self };
        owners(&mut |h: &mut Handle| self.migrate(h));
        let pages = finish.pool.finish_compaction();
        std::mem::forget(finish);
        pages
    }

    /// Compaction step 2 for one handle the caller presents.
    fn migrate(&self, h: &mut Handle) {
        let c = h.class();
        let Some(sc) = self.classes.get(c) else {
            return;
        };
        if !sc.compacting.load(Relaxed) {
            return;
        }
        let mut st = sc.state.write();
        if let Some((id, obj)) = st.migrate(h.zspage(), h.obj()) {
            *h = Handle::new(c, id, obj);
        }
    }

    /// Compaction step 3: frees emptied zspages and relists the rest.
    /// Returns the pages freed.
    fn finish_compaction(&self) -> usize {
        let mut pages = 0;
        for sc in self.classes.iter().filter(|c| c.compacting.load(Relaxed)) {
            let mut st = sc.state.write();
            let freed = st.finish_compaction();
            sc.compacting.store(false, Relaxed);
            self.total_bytes
                .fetch_sub((freed * sc.zspage_bytes) as u64, Relaxed);
            pages += freed * sc.pages_per_zspage;
        }
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
