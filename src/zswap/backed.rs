//! The cache's dealings with backing files: swapping out a page the pool
//! does not take, reading a page back, giving a slot's blocks back, and
//! writeback: moving the pool's oldest entries to their slots when the pool
//! is full, on demand, or in the background once they have sat unused long
//! enough.
//!
//! Every piece of store I/O here runs under a [`Claim`](super::area::Claim)
//! on its slot (see `area.rs`): under the area lock, wait until the slot is
//! not claimed, claim it, note what is needed, do the I/O with the lock
//! dropped; finish the claim under the lock again, and record the outcome
//! only if the index still says what it said before: a slot *overtaken* (a
//! newer page put at the offset) or an entry that is gone means the I/O
//! lost its race and its result is dropped.

use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::MutexGuard;

use super::{
    Area, AreaInner, AreaRef, AreaState, Counter, Error, ErrorKind, Result, StoreOutcome, Zswap,
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
    /// Whether freed slots' blocks are given back (holes in a file; keys
    /// deleted on Redis, always).
    pub discard: bool,
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
    at.area.wait_unclaimed(inner, offset);
    if !inner.is_instance(at) {
        return Err(z.gone(at, inner));
    }
    Ok(())
}

pub(super) fn is_enospc(e: &Error) -> bool {
    e.raw_os_error() == Some(libc::ENOSPC)
}

/// The cache's error for a store's: a page that failed its check is
/// [`ErrorKind::Corrupt`] (the store's contract says `InvalidData`), any
/// other a store fault.
pub(super) fn io_error(
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

/// The longest shrinker age: about 31 years. Any longer means "never" and
/// is better said by not starting the shrinker.
pub const MAX_SHRINKER_AGE_SECS: f64 = 1e9;

/// A shrinker age from seconds, as a user gives it: a finite number above
/// zero (of at least a nanosecond) and at most [`MAX_SHRINKER_AGE_SECS`];
/// anything else is an [`ErrorKind::Config`] error, never a panic.
pub fn shrinker_age_from_secs(seconds: f64) -> Result<Duration> {
    if seconds.is_finite() && seconds > 0.0 && seconds <= MAX_SHRINKER_AGE_SECS {
        let age = Duration::from_secs_f64(seconds);
        if !age.is_zero() {
            return Ok(age);
        }
    }
    Err(Error::config(format!(
        "shrinker_age must be a positive number of seconds up to {MAX_SHRINKER_AGE_SECS}, got {seconds}"
    )))
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
    pub(super) fn flush_freed(&self, at: AreaRef<'_>) -> bool {
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
        // With slot = offset, a page already on disk here is overwritten in
        // place, and a write that fails part-way would leave neither page.
        // So the old one is read first (a read more on every swap-out over
        // a swapped page, the slow path already), and a failed write puts
        // it into the pool instead, compressed outside the lock.
        let old_check = inner.backing.as_ref().and_then(|b| b.slots.get(offset));
        let mut claim = at.area.claim(&mut inner, offset);
        let (written, restore) = claim.unlocked(|| {
            let old = old_check.and_then(|check| {
                let mut old = vec![0u8; page.len()];
                file.read(u64::from(offset), check, &mut old)
                    .ok()
                    .map(|()| old)
            });
            let written = file.write(u64::from(offset), page);
            let restore = match (&written, old) {
                (Err(_), Some(old)) => Some(self.compress_for_pool(&old)),
                _ => None,
            };
            (written, restore)
        });
        let overtaken = claim.finish();
        let crc = match written {
            Ok(crc) => crc,
            Err(e) => {
                if let Some((tag, bytes)) = restore.filter(|_| !overtaken) {
                    if inner.is_instance(at) && inner.index.get(offset).is_none() {
                        self.keep_in_pool(&mut inner, at.swap_type, offset, tag, &bytes);
                    }
                }
                return Err(io_error(swap_type, offset, "write", &*file, e));
            }
        };
        if !inner.is_instance(at) {
            return Err(self.gone(at, &inner));
        }
        self.stats.inc(Counter::Pswpout);
        if !overtaken {
            // The page this store replaces, in the pool or in the file.
            let old = inner.index.remove(offset);
            let slots = &mut inner.backing.as_mut().expect("area on with a file").slots;
            let on_disk = slots.get(offset).is_some();
            slots.set(offset, crc);
            self.drop_replaced(old, on_disk);
        }
        Ok(StoreOutcome::Swapped)
    }

    /// `page` made ready for the pool: compressed, with the compressor's
    /// id as its tag, or as it is ([`TAG_RAW`](super::TAG_RAW)) if it does
    /// not compress. Takes the compressor lock: never call it with an area
    /// lock held.
    fn compress_for_pool(&self, page: &[u8]) -> (u8, Vec<u8>) {
        let comp = self.compressor.read().clone();
        let mut buf = vec![0u8; 2 * self.page_size];
        match comp.compress(page, &mut buf) {
            Ok(len) if len < self.page_size => {
                buf.truncate(len);
                (comp.id() as u8, buf)
            }
            _ => (super::TAG_RAW, page.to_vec()),
        }
    }

    /// Put compressed `bytes` (of compressor `tag`) at `offset` as a pool
    /// entry, over the pool's limit if need be: the page it keeps would be
    /// lost otherwise. Its slot on disk, if any, is forgotten and freed.
    fn keep_in_pool(
        &self,
        inner: &mut AreaInner,
        swap_type: u32,
        offset: u32,
        tag: u8,
        bytes: &[u8],
    ) {
        let owner = super::owner_tag(swap_type, offset);
        let Ok(handle) = self.pool.alloc_write_tagged(bytes, owner) else {
            return;
        };
        match inner.put(offset, super::pack(handle, bytes.len()), tag, true) {
            Ok((old, _)) => {
                debug_assert!(old.is_none());
                self.count_stored(tag, bytes.len());
            }
            Err(_) => self.pool.free(handle),
        }
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
        let mut claim = at.area.claim(&mut inner, offset);
        // The store verifies the check and leaves `out` zeroed if it fails.
        let read = claim.unlocked(|| file.read(u64::from(offset), crc, out));
        claim.finish();
        let read = read.map_err(|e| io_error(swap_type, offset, "read", &*file, e));
        // Let go of the store before the lock: a swapoff waiting for this
        // read then closes the file (and its lock) before it returns, so a
        // swapon of the same file right after finds it free.
        drop(file);
        drop(inner);
        read?;
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
        let slots: Vec<u64> = freed.iter().map(|&s| u64::from(s)).collect();
        let mut claim = area.claim_many(&mut inner, freed);
        // A hole that cannot be punched only costs disk space; the slots are
        // already forgotten, so the pages are gone either way.
        let _ = claim.unlocked(|| file.discard(&slots));
        claim.finish();
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
        // Stop, spawn and store under the one lock, so that two calls at
        // once cannot both spawn and leave one thread running unstopped.
        let mut running = self.shrinker.lock();
        if let Some(old) = running.take() {
            self.stop_thread(old);
        }
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
                    // An entry that cannot be written stays in the pool,
                    // counted, and the next tick tries again.
                    z.shrink_aged(age);
                }
            })
            .map_err(|e| Error::io(ErrorKind::System, "cannot start the shrinker thread", e))?;
        *running = Some(Shrinker { stop, thread, age });
        Ok(())
    }

    /// Stop the background shrinker, if running.
    pub fn stop_shrinker(&self) {
        let mut running = self.shrinker.lock();
        if let Some(s) = running.take() {
            self.stop_thread(s);
        }
    }

    /// Stop `s` and wait for it, then drop its markers. Called with the
    /// `shrinker` lock held, which the thread itself never takes (but in
    /// `stop_shrinker` when it drops the last reference to the cache: no
    /// one else holds the lock then, since whoever does holds a reference).
    fn stop_thread(&self, s: Shrinker) {
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
    pub(super) fn shrink_aged(&self, age: Duration) -> usize {
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
        self.writeback_until(usize::MAX, Some(&boundary))
    }
}

/// A running background shrinker.
pub(super) struct Shrinker {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
    age: Duration,
}
