//! Zspage memory: page runs carved from large anonymous mappings, given
//! back to the OS (`MADV_DONTNEED`) the moment their zspage is freed, as
//! zsmalloc gives its pages back to the page allocator.
//!
//! The heap did not: a freed zspage stayed in the process's free lists, so
//! resident memory followed the pool's peak, not its size. Measured: a pool
//! whose zspages fell from 45 to 9 MiB still held 47 MiB resident, which a
//! region counting its pool in its budget (or a cgroup limit) then had to
//! find elsewhere. A mapping per zspage frees at once too, but each `mmap`
//! takes the process's mmap lock for writing: two threads filling a fresh
//! pool then ran at 1.26x one thread, against 1.75x from the heap.
//!
//! So runs come from chunks of [`CHUNK_BYTES`] mapped once and never
//! unmapped (address space only: their freed runs hold no memory). A freed
//! run is kept resident for reuse while the process's kept runs stay
//! within [`KEPT_BYTES`]; past that, the oldest are emptied, adjacent ones
//! in one `madvise`, and wait on a free list of their length for the next
//! zspage of that length, to be faulted in again before it is used
//! (`MADV_POPULATE_WRITE`), outside any pool lock. The lists and chunks are
//! the process's, shared by every pool, behind a lock that `fork()` cannot
//! leave held (see [`HeapLock`]).

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};
use std::sync::Once;

use super::AllocError;

/// Bytes mapped at a time (2 MiB: one mmap per 64 zspages of 8 pages).
pub const CHUNK_BYTES: usize = 2 << 20;

/// Freed runs kept resident for reuse, at most (so the process holds at
/// most this much beyond its pools' `total_bytes`): reusing one costs a
/// `memset` instead of a page fault per page, which is what lets a pool
/// that frees and allocates zspages in turn (writes replacing pages) run
/// as fast as the heap let it.
pub const KEPT_BYTES: usize = 2 << 20;

/// Free runs, and the rest of the newest chunk.
struct Heap {
    /// Freed runs still resident, oldest first: `(address, bytes)`.
    kept: std::collections::VecDeque<(usize, usize)>,
    kept_bytes: usize,
    /// `(run bytes, addresses of empty runs of that length)`.
    empty: Vec<(usize, Vec<usize>)>,
    /// The newest chunk's first byte not yet carved, and its end.
    next: usize,
    end: usize,
}

static HEAP: HeapLock = HeapLock {
    locked: AtomicBool::new(false),
    heap: UnsafeCell::new(Heap {
        kept: std::collections::VecDeque::new(),
        kept_bytes: 0,
        empty: Vec::new(),
        next: 0,
        end: 0,
    }),
};

/// The heap behind a spin lock that `fork()` cannot leave held: a child
/// process inherits a lock some other thread of its parent held at the
/// fork, and a mutex so held stays held forever (the child's own new caches
/// then hang on their first zspage, as a test of a fork beside busy threads
/// showed). So the fork handlers (`pthread_atfork`) take it before the fork
/// and free it after, in parent and child alike, which a bare flag allows
/// and a parking mutex (whose waiters live in a table) does not. It is held
/// for list pushes and pops, and an mmap per 2 MiB.
struct HeapLock {
    locked: AtomicBool,
    heap: UnsafeCell<Heap>,
}

// SAFETY: `heap` is only reached through `lock()`, which gives one thread at
// a time a guard.
unsafe impl Sync for HeapLock {}

struct HeapGuard(&'static HeapLock);

impl HeapLock {
    fn lock(&'static self) -> HeapGuard {
        static FORK_HANDLERS: Once = Once::new();
        FORK_HANDLERS.call_once(|| {
            // SAFETY: registering three `extern "C"` functions without
            // arguments that touch only `HEAP.locked`.
            unsafe { libc::pthread_atfork(Some(before_fork), Some(after_fork), Some(after_fork)) };
        });
        self.acquire();
        HeapGuard(self)
    }

    fn acquire(&self) {
        let mut spins = 0u32;
        while self
            .locked
            .compare_exchange_weak(false, true, Acquire, Relaxed)
            .is_err()
        {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

impl Deref for HeapGuard {
    type Target = Heap;
    fn deref(&self) -> &Heap {
        // SAFETY: the guard holds the lock, so no other reference exists.
        unsafe { &*self.0.heap.get() }
    }
}

impl DerefMut for HeapGuard {
    fn deref_mut(&mut self) -> &mut Heap {
        // SAFETY: as in `deref`; `&mut self` makes this the only one.
        unsafe { &mut *self.0.heap.get() }
    }
}

impl Drop for HeapGuard {
    fn drop(&mut self) {
        self.0.locked.store(false, Release);
    }
}

/// `pthread_atfork` prepare handler: hold the heap across the fork, so
/// that no thread is inside it when the child's copy is made.
extern "C" fn before_fork() {
    HEAP.acquire();
}

/// `pthread_atfork` parent and child handler: let go of it again.
extern "C" fn after_fork() {
    HEAP.locked.store(false, Release);
}

/// One zspage's memory: `len` bytes, page-aligned, resident from
/// [`zspage_memory`] until dropped (which empties it and frees its run).
pub struct ZsMem {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: `ZsMem` owns its run as a `Box<[u8]>` owns its allocation;
// shared references give only `&[u8]`.
unsafe impl Send for ZsMem {}
// SAFETY: as above.
unsafe impl Sync for ZsMem {}

impl std::fmt::Debug for ZsMem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ZsMem({:p}, {} bytes)", self.ptr, self.len)
    }
}

impl Deref for ZsMem {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: `len` bytes of a chunk mapped readable and writable for
        // the life of the process, this run's alone while `self` lives;
        // mutation needs `&mut self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for ZsMem {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for ZsMem {
    fn drop(&mut self) {
        let mut heap = HEAP.lock();
        heap.kept.push_back((self.ptr.as_ptr() as usize, self.len));
        heap.kept_bytes += self.len;
        if heap.kept_bytes <= KEPT_BYTES {
            return;
        }
        // Empty the oldest kept runs down to half the bound, so that the
        // madvise calls come in batches, adjacent runs merged.
        let mut out = Vec::new();
        while heap.kept_bytes > KEPT_BYTES / 2 {
            let Some((addr, len)) = heap.kept.pop_front() else {
                break;
            };
            heap.kept_bytes -= len;
            out.push((addr, len));
        }
        drop(heap);
        out.sort_unstable();
        let mut i = 0;
        while i < out.len() {
            let (start, mut end) = (out[i].0, out[i].0 + out[i].1);
            let mut j = i + 1;
            while j < out.len() && out[j].0 == end {
                end += out[j].1;
                j += 1;
            }
            // SAFETY: these runs were freed (their `ZsMem`s dropped) and
            // taken off the kept list under the lock, so nothing reads them
            // or can be handed them until they are on an empty list. A
            // failure (never expected on a private anonymous range) leaves
            // the pages resident; the runs are reusable either way.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
            i = j;
        }
        let mut heap = HEAP.lock();
        for (addr, len) in out {
            match heap.empty.iter_mut().find(|(l, _)| *l == len) {
                Some((_, runs)) => runs.push(addr),
                None => heap.empty.push((len, vec![addr])),
            }
        }
    }
}

/// Zeroed, resident memory for one zspage of `bytes` bytes (a multiple of
/// the OS page size). Its first touch of each page (the kernel clears it
/// and charges it) happens here, before the caller takes the class lock,
/// so that it runs while other threads use the class.
pub fn zspage_memory(bytes: usize) -> Result<ZsMem, AllocError> {
    let (addr, resident) = take_run(bytes)?;
    let mut mem = ZsMem {
        // The heap never hands out address 0 (mmap does not map there).
        ptr: NonNull::new(addr as *mut u8).ok_or(AllocError::OutOfMemory)?,
        len: bytes,
    };
    if resident {
        mem.fill(0);
        return Ok(mem);
    }
    // SAFETY: populating a range of our own mapping that only `mem` uses.
    let rc = unsafe { libc::madvise(addr as *mut libc::c_void, bytes, libc::MADV_POPULATE_WRITE) };
    if rc != 0 {
        // Before Linux 5.14 (EINVAL): touch every page. Otherwise the
        // memory is not there (ENOMEM): fail the allocation rather than
        // fault later; `mem` goes back to the heap.
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
            return Err(AllocError::OutOfMemory);
        }
        for page in mem.chunks_mut(4096) {
            page[0] = 0;
        }
    }
    Ok(mem)
}

/// A run of `bytes` bytes, and whether it is resident (a kept one, of the
/// length asked for): else an empty one of that length, else carved from
/// the newest chunk, else from a new chunk.
fn take_run(bytes: usize) -> Result<(usize, bool), AllocError> {
    let mut heap = HEAP.lock();
    // The newest kept run of the length: the likeliest still in cache.
    if let Some(i) = heap.kept.iter().rposition(|&(_, len)| len == bytes) {
        let (addr, _) = heap.kept.remove(i).unwrap_or_default();
        heap.kept_bytes -= bytes;
        return Ok((addr, true));
    }
    if let Some(addr) = heap
        .empty
        .iter_mut()
        .find(|(len, _)| *len == bytes)
        .and_then(|(_, runs)| runs.pop())
    {
        return Ok((addr, false));
    }
    if heap.end - heap.next < bytes {
        let len = CHUNK_BYTES.max(bytes);
        // SAFETY: a fresh private anonymous mapping at an address the
        // kernel chooses; nothing else refers to it. NORESERVE: its pages
        // are charged as they are populated, run by run.
        let chunk = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if chunk == libc::MAP_FAILED {
            return Err(AllocError::OutOfMemory);
        }
        // The rest of the old chunk is left: a few runs' worth of address
        // space, never memory.
        heap.next = chunk as usize;
        heap.end = chunk as usize + len;
    }
    let addr = heap.next;
    heap.next += bytes;
    Ok((addr, false))
}
