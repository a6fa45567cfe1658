//! Writeback: moving the pool's oldest entries to their slots in the
//! area's store, when the pool is full ([`Zswap::make_room`]), on demand
//! ([`Zswap::writeback`]) or from the background shrinker.
//!
//! As the kernel's `zswap_writeback_entry` splits it, one entry goes in
//! three steps: pick the victim under the area lock (the oldest entry on
//! the LRU not under I/O, [`Index::lru_oldest_where`](crate::index::Index::lru_oldest_where))
//! and claim its slot; decompress and write it with no lock held; commit
//! under the lock again, where the entry leaves the pool only if nothing
//! overtook it meanwhile. An entry that cannot be written (the store fails
//! at its slot, or it fails to decompress) stays in the pool, readable, is
//! counted, and moves to the newest end of the LRU, so that one bad slot
//! does not stop writeback of every other entry; it is tried again once
//! the rest have had their turn.

use std::sync::Arc;

use parking_lot::MutexGuard;

use super::area::{AreaInner, AreaRef, Claim};
use super::backed::{io_error, is_enospc};
use super::TAG_SAME_FILLED;
use super::{unpack, with_scratch, AreaState, Counter, Error, ErrorKind, Result, Zswap};
use crate::backing::BackingStore;
use crate::index::EntryRef;
use std::sync::atomic::Ordering::Relaxed;

/// Entries that may fail to be written back in one call before it gives
/// up: each failure moves its entry out of the way, so a few are enough to
/// get past a bad stretch of slots, and a store that fails everywhere (a
/// disk gone) costs a call only this many attempts.
const MAX_FAILURES: usize = 16;

/// What one attempt at writing back an entry came to.
enum Attempt {
    /// The entry left the pool for its slot.
    Written,
    /// Written, but overtaken meanwhile (a newer page, an invalidate): the
    /// write was given back, and the pool changed all the same.
    Overtaken,
    /// Space was given back to a full store: try again.
    Retry,
    /// The entry could not be written; it stays in the pool, counted and
    /// moved out of the way.
    Failed(Error),
    /// No area has an entry to write back.
    Nothing,
}

/// An entry chosen for writeback, with the store its page goes to.
struct Victim {
    entry: EntryRef,
    store: Arc<dyn BackingStore>,
}

/// Which entries the shrinker may take: for each swap type, the LRU marker
/// they must be older than, or `None` to skip the area.
pub(super) type Until<'a> = &'a dyn Fn(u32) -> Option<u32>;

impl Zswap {
    /// The pool is full: write back its oldest entries until it is at the
    /// accept threshold again. Returns whether there is room now; `Ok(false)`
    /// if it is still above the threshold and nothing more could be written
    /// back (no area has a store, or its entries cannot go): the pool
    /// stays full, even below the limit, until it shrinks to the threshold,
    /// as the kernel's `zswap_pool_reached_full` does. One thread does this
    /// at a time; the others wait and then find the room made.
    pub(super) fn make_room(&self) -> Result<bool> {
        let _one = self.shrink_lock.lock();
        let limit = self.max_pool_bytes_limit();
        let accept = self.policy.accept_bytes(limit);
        let mut compacted = false;
        let mut failures = 0;
        loop {
            if self.pool.total_bytes() <= accept {
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
            match self.writeback_any(None) {
                Attempt::Written | Attempt::Overtaken | Attempt::Retry => {}
                Attempt::Failed(_) if failures < MAX_FAILURES => failures += 1,
                Attempt::Failed(_) | Attempt::Nothing => return Ok(false),
            }
        }
    }

    /// Write back up to `max_pages` of the oldest entries now, across the
    /// areas that have a store; returns how many were written. An entry
    /// that cannot be written stays in the pool and is skipped; the call
    /// fails only if it wrote nothing and some entry failed (with that
    /// entry's error).
    pub fn writeback(&self, max_pages: usize) -> Result<usize> {
        self.check_open()?;
        let mut last_failure = None;
        let written = self.writeback_counting(max_pages, None, &mut last_failure);
        match last_failure {
            Some(e) if written == 0 => Err(e),
            _ => Ok(written),
        }
    }

    /// Write back up to `max_pages` entries (with `until`, only those the
    /// shrinker may take); returns how many were written.
    pub(super) fn writeback_until(&self, max_pages: usize, until: Option<Until<'_>>) -> usize {
        self.writeback_counting(max_pages, until, &mut None)
    }

    fn writeback_counting(
        &self,
        max_pages: usize,
        until: Option<Until<'_>>,
        last_failure: &mut Option<Error>,
    ) -> usize {
        let (mut written, mut failures) = (0, 0);
        while written < max_pages && failures < MAX_FAILURES {
            match self.writeback_any(until) {
                Attempt::Written => written += 1,
                Attempt::Overtaken | Attempt::Retry => {}
                Attempt::Failed(e) => {
                    failures += 1;
                    *last_failure = Some(e);
                }
                Attempt::Nothing => break,
            }
        }
        written
    }

    /// Write back one entry from some area with a store, starting from the
    /// next area in turn.
    fn writeback_any(&self, until: Option<Until<'_>>) -> Attempt {
        let n = self.areas.len();
        let start = self.next_writeback.fetch_add(1, Relaxed) % n;
        for i in 0..n {
            let t = ((start + i) % n) as u32;
            let marker = match until {
                Some(f) => match f(t) {
                    Some(marker) => Some(marker),
                    None => continue,
                },
                None => None,
            };
            match self.writeback_one(t, marker) {
                Attempt::Nothing => {}
                other => return other,
            }
        }
        Attempt::Nothing
    }

    /// Write back the oldest entry of area `swap_type` not under I/O (and,
    /// with `until`, older than that LRU marker): pick, write, commit.
    fn writeback_one(&self, swap_type: u32, until: Option<u32>) -> Attempt {
        let area = &self.areas[swap_type as usize];
        let mut inner = area.inner.lock();
        let Some(victim) = pick_victim(&inner, until) else {
            return Attempt::Nothing;
        };
        let at = AreaRef {
            swap_type,
            area,
            generation: inner.generation,
        };
        let mut claim = area.claim(&mut inner, victim.entry.key);
        let written = self.write_victim(&mut claim, at, &victim);
        let attempt = self.commit(claim, at, &victim, written);
        drop(inner);
        match attempt {
            // Freed slots not yet given back may be what fills the store:
            // give them back, and the caller tries again.
            Attempt::Failed(e) if is_enospc(&e) && self.flush_freed(at) => Attempt::Retry,
            other => other,
        }
    }

    /// Decompress the victim and write it to its slot, the area lock
    /// dropped for both; returns the check of the page written.
    fn write_victim(&self, claim: &mut Claim<'_, '_>, at: AreaRef<'_>, v: &Victim) -> Result<u32> {
        let offset = v.entry.key;
        let (handle, len) = unpack(v.entry.value);
        with_scratch(len + self.page_size, |buf| {
            let (compressed, page) = buf.split_at_mut(len);
            // Read under the lock: the pool object may move or go once it
            // is dropped.
            self.pool.read(handle, compressed);
            claim.unlocked(|| {
                self.decompress(v.entry.tag, compressed, page)
                    .map_err(|e| {
                        Error::new(
                            ErrorKind::Corrupt,
                            format!(
                                "writeback of swap type {}, offset {offset}: {e}",
                                at.swap_type
                            ),
                        )
                    })?;
                v.store
                    .write(u64::from(offset), page)
                    .map_err(|e| io_error(at.swap_type, offset, "write back to", &*v.store, e))
            })
        })
    }

    /// Record a writeback under the lock: the entry leaves the pool for its
    /// slot if it is still the one written (no newer page was put at the
    /// offset, it was not dropped, the area is the same instance);
    /// otherwise the write is stale and given back, still under the claim
    /// so that no newer write lands in the slot first.
    fn commit(
        &self,
        mut claim: Claim<'_, '_>,
        at: AreaRef<'_>,
        v: &Victim,
        written: Result<u32>,
    ) -> Attempt {
        let offset = v.entry.key;
        let check = match written {
            Ok(check) => check,
            Err(e) => {
                self.stats.inc(if e.kind() == ErrorKind::Corrupt {
                    Counter::DecompressFail
                } else {
                    Counter::RejectReclaimFail
                });
                // It stays, readable (a corrupt one reports itself on load),
                // behind every other entry.
                if let Some(cur) = claim.index.get(offset) {
                    claim.index.touch(cur.id);
                }
                claim.finish();
                return Attempt::Failed(e);
            }
        };
        let current = claim.index.get(offset);
        let stale = claim.is_overtaken() || current.is_none() || !claim.is_instance(at);
        if stale {
            let _ = claim.unlocked(|| v.store.discard(&[u64::from(offset)]));
            claim.finish();
            return Attempt::Overtaken;
        }
        let current = current.expect("checked above");
        claim.index.remove_at(current.id);
        self.release(current);
        let backing = claim
            .backing
            .as_mut()
            .expect("an instance with a store keeps it");
        backing.slots.set(offset, check);
        claim.finish();
        self.stats.inc(Counter::WrittenBackPages);
        self.stats.inc(Counter::Zswpwb);
        self.stats.inc(Counter::Pswpout);
        Attempt::Written
    }
}

/// The oldest entry of an area that is on and has a store, not same-filled
/// (those cost the pool nothing) and not under I/O; with `until`, older
/// than that marker.
fn pick_victim(inner: &MutexGuard<'_, AreaInner>, until: Option<u32>) -> Option<Victim> {
    if inner.state != AreaState::On {
        return None;
    }
    let store = inner.backing.as_ref()?.store.clone();
    let entry = inner
        .index
        .lru_oldest_where(until, |e| e.tag != TAG_SAME_FILLED && !inner.is_busy(e.key))?;
    Some(Victim { entry, store })
}
