//! The cache's dealings with backing files: swapping out a page the pool
//! does not take, reading a page back, giving a slot's blocks back, and
//! writeback: moving the pool's oldest entries to their slots when the pool
//! is full, on demand, or in the background once they have sat unused long
//! enough.
//!
//! Every piece of file I/O here follows one protocol (see the lock notes in
//! `mod.rs`): under the area lock, wait until the slot is not claimed, claim
//! it, note what is needed, drop the lock; do the I/O; retake the lock,
//! release the claim, and record the outcome only if the index still says
//! what it said before: a newer page put at the offset (`superseded`) or an
//! entry that is gone means the I/O lost its race and its result is dropped.

use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::MutexGuard;

use super::{
    unpack, Area, AreaInner, AreaRef, AreaState, Counter, Error, ErrorKind, Result, StoreOutcome,
    Zswap, TAG_SAME_FILLED,
};
use crate::backing::BackingStore;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// What [`Zswap::backing_info`] tells of an area's file.
#[derive(Clone, Debug, PartialEq)]
pub struct BackingInfo {
    /// The path it was opened by.
    pub path: PathBuf,
    /// Slots.
    pub pages: u64,
    /// Whether `O_DIRECT` is in effect (some filesystems refuse it).
    pub direct: bool,
    /// Pacing, in MB/s, if any.
    pub disk_mbps: Option<f64>,
    /// Slots that hold a page now.
    pub used_slots: u64,
}

/// Wait until `offset` is not claimed; `Err` if the area instance `at` was
/// swapped off meanwhile.
fn wait_unclaimed(
    z: &Zswap,
    at: AreaRef<'_>,
    inner: &mut MutexGuard<'_, AreaInner>,
    offset: u32,
) -> Result<()> {
    while inner.is_busy(offset) {
        at.area.io_done.wait(inner);
    }
    if !inner.is_instance(at) {
        return Err(z.gone(at, inner));
    }
    Ok(())
}

fn is_enospc(e: &Error) -> bool {
    e.raw_os_error() == Some(libc::ENOSPC)
}

/// The cache's error for a store's: a page that failed its check is
/// [`ErrorKind::Corrupt`] (the store's contract says `InvalidData`), any
/// other a store fault.
fn io_error(
    swap_type: u32,
    offset: u32,
    what: &str,
    store: &dyn BackingStore,
    e: std::io::Error,
) -> Error {
    let at = format!(
        "slot {offset} of swap type {swap_type} ({})",
        store.describe()
    );
    if e.kind() == std::io::ErrorKind::InvalidData {
        return Error::new(ErrorKind::Corrupt, format!("{at} failed its check"));
    }
    Error::io(ErrorKind::Backing, format!("cannot {what} {at}"), e)
}

impl Zswap {
    /// Write `page` to slot `offset` of the area's file (`pswpout`). On an
    /// I/O error nothing changes: the old page at `offset` stays readable.
    pub(super) fn swap_out(
        &self,
        at: AreaRef<'_>,
        offset: u32,
        page: &[u8],
    ) -> Result<StoreOutcome> {
        match self.swap_out_once(at, offset, page) {
            // Freed slots not yet given back may be what fills the disk.
            Err(e) if is_enospc(&e) && self.flush_freed(at) => self.swap_out_once(at, offset, page),
            other => other,
        }
    }

    /// Give back the blocks of every freed slot of the area now; returns
    /// whether there were any.
    fn flush_freed(&self, at: AreaRef<'_>) -> bool {
        let inner = at.area.inner.lock();
        if !inner.is_instance(at) || inner.backing.as_ref().is_none_or(|b| b.freed.is_empty()) {
            return false;
        }
        self.discard(at.area, inner);
        true
    }

    fn swap_out_once(&self, at: AreaRef<'_>, offset: u32, page: &[u8]) -> Result<StoreOutcome> {
        let swap_type = at.swap_type;
        let mut inner = self.lock_slot(at, u64::from(offset))?;
        wait_unclaimed(self, at, &mut inner, offset)?;
        let Some(file) = inner.backing.as_ref().map(|b| b.store.clone()) else {
            return Err(Error::new(
                ErrorKind::Closed,
                format!("swap type {swap_type} has no file"),
            ));
        };
        inner.claim(offset);
        drop(inner);
        let written = file.write(u64::from(offset), page);
        let mut inner = at.area.inner.lock();
        let superseded = inner.release_claim(offset);
        at.area.io_done.notify_all();
        let crc = written.map_err(|e| io_error(swap_type, offset, "write", &*file, e))?;
        if !inner.is_instance(at) {
            return Err(self.gone(at, &inner));
        }
        self.stats.inc(Counter::Pswpout);
        if !superseded {
            // The page this store replaces, in the pool or in the file.
            let old = inner.index.remove(offset);
            let slots = &mut inner.backing.as_mut().expect("area on with a file").slots;
            let on_disk = slots.get(offset).is_some();
            slots.set(offset, crc);
            self.superseded(old, on_disk);
        }
        Ok(StoreOutcome::Swapped)
    }

    /// Read slot `offset`, expected to hold a page of checksum `crc`, into
    /// `out` (`pswpin`). Called with the area lock held and the slot free.
    pub(super) fn load_from_file(
        &self,
        at: AreaRef<'_>,
        mut inner: MutexGuard<'_, AreaInner>,
        offset: u32,
        crc: u32,
        out: &mut [u8],
    ) -> Result<super::LoadSource> {
        let file = inner
            .backing
            .as_ref()
            .map(|b| b.store.clone())
            .expect("a slot on disk implies a file");
        let swap_type = at.swap_type;
        inner.claim(offset);
        drop(inner);
        // The store verifies the check and leaves `out` zeroed if it fails.
        let read = file.read(u64::from(offset), crc, out);
        let mut inner = at.area.inner.lock();
        inner.release_claim(offset);
        at.area.io_done.notify_all();
        drop(inner);
        read.map_err(|e| io_error(swap_type, offset, "read", &*file, e))?;
        self.stats.inc(Counter::Pswpin);
        Ok(super::LoadSource::Backing)
    }

    /// Give the blocks of the freed slots back, skipping any slot written
    /// again since it was freed or under I/O now. The slots are claimed for
    /// the punch so that no write can land in one before its hole is made.
    pub(super) fn discard(&self, area: &Area, mut inner: MutexGuard<'_, AreaInner>) {
        let Some(b) = inner.backing.as_mut() else {
            return;
        };
        let mut freed = std::mem::take(&mut b.freed);
        freed.sort_unstable();
        freed.dedup();
        let file = b.store.clone();
        let slots = &b.slots;
        freed.retain(|&s| slots.get(s).is_none());
        freed.retain(|&s| !inner.is_busy(s));
        for &s in &freed {
            inner.claim(s);
        }
        drop(inner);
        // A hole that cannot be punched only costs disk space; the slots are
        // already forgotten, so the pages are gone either way.
        let _ = file.discard(&freed.iter().map(|&s| u64::from(s)).collect::<Vec<_>>());
        let mut inner = area.inner.lock();
        for &s in &freed {
            inner.release_claim(s);
        }
        area.io_done.notify_all();
    }

    // --- writeback ------------------------------------------------------------

    /// The pool is full: write back its oldest entries until it is at the
    /// accept threshold again. Returns whether there is room now; `Ok(false)`
    /// if it is still above the threshold and nothing more could be written
    /// back (no area has a file, or none of its entries can go): the pool
    /// stays full, even below the limit, until it shrinks to the threshold,
    /// as the kernel's `zswap_pool_reached_full` does. One thread does this
    /// at a time; the others wait and then find the room made.
    pub(super) fn make_room(&self) -> Result<bool> {
        let _one = self.shrink_lock.lock();
        let limit = self.max_pool_bytes_limit();
        let accept = limit / 100 * u64::from(self.accept_threshold_percent.load(Relaxed));
        let mut compacted = false;
        loop {
            let total = self.pool.total_bytes();
            if total <= accept {
                return Ok(true);
            }
            // Writing back frees objects, but pages only come back when a
            // whole zspage empties: once the live objects would fit, compact
            // instead of writing back more.
            if !compacted && self.pool.object_bytes() <= accept {
                self.compact()?;
                compacted = true;
                continue;
            }
            if !self.writeback_any(None)? {
                return Ok(false);
            }
        }
    }

    /// Write back up to `max_pages` of the oldest entries now, across the
    /// areas that have files; returns how many were written.
    pub fn writeback(&self, max_pages: usize) -> Result<usize> {
        self.check_open()?;
        let mut written = 0;
        while written < max_pages && self.writeback_any(None)? {
            written += 1;
        }
        Ok(written)
    }

    /// Write back one entry from some area with a file, starting from the
    /// next area in turn. `older_than`: only entries older than that area's
    /// marker (used by the shrinker; `None`: any entry).
    fn writeback_any(&self, older_than: Option<&dyn Fn(u32) -> Option<u32>>) -> Result<bool> {
        let n = self.areas.len();
        let start = self.next_writeback.fetch_add(1, Relaxed) % n;
        for i in 0..n {
            let t = ((start + i) % n) as u32;
            let limit = match older_than {
                Some(f) => match f(t) {
                    Some(marker) => Some(marker),
                    None => continue,
                },
                None => None,
            };
            if self.writeback_one(t, limit)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Write back the oldest entry of area `t` that is not under I/O (and,
    /// with `before`, older than that LRU marker). Returns whether one was.
    fn writeback_one(&self, swap_type: u32, before: Option<u32>) -> Result<bool> {
        let area = &self.areas[swap_type as usize];
        let mut inner = area.inner.lock();
        if inner.state != AreaState::On {
            return Ok(false);
        }
        let at = AreaRef {
            swap_type,
            area,
            generation: inner.generation,
        };
        let Some(file) = inner.backing.as_ref().map(|b| b.store.clone()) else {
            return Ok(false);
        };
        // The oldest entry that no other thread is doing I/O on.
        let mut slot = inner.index.lru_oldest_slot();
        let entry = loop {
            let Some(id) = slot else { return Ok(false) };
            if Some(id) == before {
                return Ok(false);
            }
            if !inner.index.is_marker(id) {
                let e = inner.index.entry_at(id);
                if !inner.is_busy(e.key) && e.tag != TAG_SAME_FILLED {
                    break e;
                }
            }
            slot = inner.index.lru_newer_slot(id);
        };
        let offset = entry.key;
        let (handle, len) = unpack(entry.value);
        inner.claim(offset);
        let page_size = self.page_size;
        let outcome = super::with_scratch(len + page_size, |buf| {
            let (compressed, page) = buf.split_at_mut(len);
            self.pool.read(handle, compressed);
            drop(inner);
            if let Err(e) = self.decompress(entry.tag, compressed, page) {
                return Err(Error::new(
                    ErrorKind::Corrupt,
                    format!("writeback of swap type {swap_type}, offset {offset}: {e}"),
                ));
            }
            file.write(u64::from(offset), page)
                .map_err(|e| io_error(swap_type, offset, "write back to", &*file, e))
        });
        let mut inner = area.inner.lock();
        let crc = match outcome {
            Ok(crc) => crc,
            Err(e) => {
                inner.release_claim(offset);
                area.io_done.notify_all();
                if e.kind() == ErrorKind::Corrupt {
                    // Leave the entry (a load will report it) but move it out
                    // of writeback's way, and report no progress so that a
                    // pool of nothing but corrupt entries cannot spin.
                    self.stats.inc(Counter::DecompressFail);
                    if let Some(cur) = inner.index.get(offset) {
                        inner.index.touch(cur.id);
                    }
                    return Ok(false);
                }
                // Freed slots not yet given back may be what fills the
                // disk: give them back and let the caller try again.
                drop(inner);
                if is_enospc(&e) && self.flush_freed(at) {
                    return Ok(true);
                }
                return Err(e);
            }
        };
        // The entry is still the one written back only if no newer page was
        // put at the offset and it was not dropped (invalidate, exclusive
        // load) meanwhile.
        let superseded = inner.is_superseded(offset);
        let current = inner.index.get(offset);
        if superseded || current.is_none() || !inner.is_instance(at) {
            // What was written is stale: give its blocks back while the slot
            // is still claimed, so no newer write can land before the punch.
            drop(inner);
            let _ = file.discard(&[u64::from(offset)]);
            let mut inner = area.inner.lock();
            inner.release_claim(offset);
            area.io_done.notify_all();
            return Ok(true);
        }
        inner.release_claim(offset);
        let current = current.expect("checked above");
        inner.index.remove_at(current.id);
        self.release(current);
        inner
            .backing
            .as_mut()
            .expect("area on with a file")
            .slots
            .set(offset, crc);
        area.io_done.notify_all();
        self.stats.inc(Counter::WrittenBackPages);
        self.stats.inc(Counter::Zswpwb);
        self.stats.inc(Counter::Pswpout);
        Ok(true)
    }

    // --- background shrinker ----------------------------------------------------

    /// Start the background shrinker (off by default, like the kernel's
    /// `shrinker_enabled`): every `age / 4` it writes back the entries that
    /// have sat unused for longer than `age`. It holds the cache weakly and
    /// stops when the cache is closed or dropped.
    pub fn start_shrinker(self: &Arc<Self>, age: Duration) -> Result<()> {
        self.check_open()?;
        if age.is_zero() {
            return Err(Error::config("shrinker age must be positive"));
        }
        self.stop_shrinker();
        let stop = Arc::new(AtomicBool::new(false));
        let weak: Weak<Zswap> = Arc::downgrade(self);
        let tick = (age / 4).max(Duration::from_millis(5));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("zswap-shrinker".into())
            .spawn(move || {
                while !stop2.load(Relaxed) {
                    std::thread::park_timeout(tick);
                    if stop2.load(Relaxed) {
                        break;
                    }
                    let Some(z) = weak.upgrade() else { break };
                    // An I/O error here has no caller to go to; the pages
                    // stay in the pool and the next tick tries again.
                    let _ = z.shrink_aged(age);
                }
            })
            .map_err(|e| Error::io(ErrorKind::Config, "cannot start the shrinker thread", e))?;
        *self.shrinker.lock() = Some(Shrinker { stop, thread, age });
        Ok(())
    }

    /// Stop the background shrinker, if running.
    pub fn stop_shrinker(&self) {
        let Some(s) = self.shrinker.lock().take() else {
            return;
        };
        s.stop.store(true, Relaxed);
        s.thread.thread().unpark();
        // The shrinker may itself drop the last reference to the cache;
        // it must not wait for itself.
        if s.thread.thread().id() != std::thread::current().id() {
            let _ = s.thread.join();
        }
        for area in self.areas.iter() {
            let mut inner = area.inner.lock();
            while let Some((_, id)) = inner.markers.pop_front() {
                inner.index.remove_marker(id);
            }
        }
    }

    /// The shrinker's age, if it is running.
    pub fn shrinker_age(&self) -> Option<Duration> {
        self.shrinker.lock().as_ref().map(|s| s.age)
    }

    /// One shrinker tick: mark the LRU of every area with a file, and write
    /// back everything older than the newest marker that is `age` old.
    pub(super) fn shrink_aged(&self, age: Duration) -> Result<usize> {
        let now = Instant::now();
        for area in self.areas.iter() {
            let mut inner = area.inner.lock();
            if inner.state != AreaState::On || inner.backing.is_none() {
                continue;
            }
            // Markers older than the newest aged one are no longer needed.
            while inner.markers.len() >= 2 && now.duration_since(inner.markers[1].0) >= age {
                let (_, id) = inner.markers.pop_front().expect("len >= 2");
                inner.index.remove_marker(id);
            }
            if let Ok(id) = inner.index.push_marker() {
                inner.markers.push_back((now, id));
            }
        }
        let boundary = |t: u32| -> Option<u32> {
            let inner = self.areas[t as usize].inner.lock();
            let &(at, id) = inner.markers.front()?;
            (now.duration_since(at) >= age).then_some(id)
        };
        let mut written = 0;
        while self.writeback_any(Some(&boundary))? {
            written += 1;
        }
        Ok(written)
    }
}

/// A running background shrinker.
pub(super) struct Shrinker {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
    age: Duration,
}
