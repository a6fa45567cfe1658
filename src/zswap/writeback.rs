//! Writeback: moving the pool's oldest entries to their slots in the
//! area's store, when the pool is full ([`Zswap::make_room`]), on demand
//! ([`Zswap::writeback`]) or from the background shrinker.
//!
//! As the kernel's `zswap_writeback_entry` splits it, writeback goes in
//! three steps, here for a batch of entries at once: pick the victims under
//! the area lock (the oldest entries on the LRU that are not same-filled
//! and not under I/O, [`Index::lru_oldest_where`](crate::index::Index::lru_oldest_where)),
//! claim their slots and copy their compressed bytes out of the pool;
//! decompress them and hand them to the store in one
//! [`write_many_packed`](BackingStore::write_many_packed) (the pages, with
//! the pool's bytes beside them for a store that sends pages compressed),
//! no lock held; commit under the
//! lock again, where each entry leaves the pool only if nothing overtook it
//! meanwhile. How many entries make a batch is the store's
//! [`write_batch_hint`](BackingStore::write_batch_hint): one for a file,
//! where every page is its own system call anyway, 64 for a Redis server,
//! where they share a round trip. A batch of one is the kernel's one entry
//! at a time; there is no other code path.
//!
//! An entry that cannot be written (the store fails at its slot, or it
//! fails to decompress) stays in the pool, readable, is counted, and moves
//! to the newest end of the LRU, so that one bad slot does not stop
//! writeback of every other entry; it is tried again once the rest have had
//! their turn. When `write_many` fails part-way, the pages it wrote before
//! the failure are committed, the one it failed at is such a failed entry,
//! and the ones after it were never tried: they stay where they are. A
//! store that fails as a whole (its server unreachable or timing out,
//! [`is_store_down`], or full with nothing freed to give back) ends the
//! call at once: every other slot would fail the same way, each after the
//! same timeout. Its entry stays where it is on the LRU, since the fault
//! is not the page's.

use std::sync::Arc;

use parking_lot::MutexGuard;

use super::area::{AreaInner, AreaRef, Claim};
use super::backed::io_error;
use super::TAG_SAME_FILLED;
use super::{unpack, with_scratch, AreaState, Counter, Error, ErrorKind, Result, Zswap};
use crate::backing::{is_store_down, BackingStore};
use crate::compress::CompressorId;
use crate::index::EntryRef;
use std::sync::atomic::Ordering::Relaxed;

/// Entries that may fail to be written back in one call before it gives
/// up: each failure moves its entry out of the way, so a few are enough to
/// get past a bad stretch of slots, and a store that fails everywhere (a
/// disk gone) costs a call only this many attempts.
const MAX_FAILURES: usize = 16;

/// The most entries in one batch, whatever the store's hint: it bounds the
/// slots claimed at once and the scratch a writing thread keeps (a
/// compressed and a decompressed copy of each page, 512 KiB for 4 KiB
/// pages).
const MAX_BATCH: usize = 64;

/// What one batch came to.
#[derive(Default)]
struct Round {
    /// Entries that left the pool for their slots.
    written: usize,
    /// Entries that could not be written: they stay in the pool, counted.
    failed: usize,
    /// The error of the last of them.
    error: Option<Error>,
    /// The store failed as a whole: the call stops.
    stop: bool,
}

impl Round {
    fn fail(&mut self, e: Error) {
        self.failed += 1;
        self.error = Some(e);
    }
}

/// Entries chosen for writeback, oldest first, with the store their pages
/// go to.
struct Batch {
    entries: Vec<EntryRef>,
    store: Arc<dyn BackingStore>,
}

/// What the unlocked stretch of a batch did.
struct Written {
    /// For each entry of the batch: its page's place among those handed to
    /// `write_many`, or the error that kept it out (it did not decompress).
    sent: Vec<Result<usize>>,
    /// The checks of the pages written: the first `checks.len()` sent.
    checks: Vec<u32>,
    /// The store's error, at page `checks.len()`; the pages after it were
    /// not written.
    error: Option<std::io::Error>,
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
    /// at a time; the others wait and then find the room made. Writeback
    /// goes a batch at a time, so the pool may end up to one batch (the
    /// store's [`write_batch_hint`](BackingStore::write_batch_hint) of
    /// entries) below the threshold.
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
            let Some(round) = self.writeback_any(None, MAX_BATCH) else {
                return Ok(false);
            };
            failures += round.failed;
            if round.stop || failures > MAX_FAILURES {
                return Ok(self.pool.total_bytes() <= accept);
            }
        }
    }

    /// Write back up to `max_pages` of the oldest entries now, across the
    /// areas that have a store; returns how many were written. An entry
    /// that cannot be written stays in the pool and is skipped; the call
    /// fails only if it wrote nothing and some entry failed (with that
    /// entry's error). A store that cannot be reached ends the call after
    /// its first failure (one timeout, not one per entry).
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
            let Some(round) = self.writeback_any(until, max_pages - written) else {
                break;
            };
            written += round.written;
            failures += round.failed;
            if round.error.is_some() {
                *last_failure = round.error;
            }
            if round.stop {
                break;
            }
        }
        written
    }

    /// Write back a batch of at most `max` entries from some area with a
    /// store, starting from the next area in turn; `None` if no area has
    /// an entry to write back.
    fn writeback_any(&self, until: Option<Until<'_>>, max: usize) -> Option<Round> {
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
            if let Some(round) = self.writeback_batch(t, marker, max) {
                return Some(round);
            }
        }
        None
    }

    /// Write back the oldest entries of area `swap_type` not under I/O (and,
    /// with `until`, older than that LRU marker), at most `max`: pick,
    /// write, commit.
    fn writeback_batch(&self, swap_type: u32, until: Option<u32>, max: usize) -> Option<Round> {
        let area = &self.areas[swap_type as usize];
        let mut inner = area.inner.lock();
        let batch = pick_victims(&inner, until, max)?;
        let at = AreaRef {
            swap_type,
            area,
            generation: inner.generation,
        };
        let offsets = batch.entries.iter().map(|e| e.key).collect();
        let mut claim = area.claim_many(&mut inner, offsets);
        let written = self.write_victims(&mut claim, at, &batch);
        let (mut round, full) = self.commit(claim, at, &batch, written);
        // The store goes before the lock, as in `load_from_file`.
        drop(batch);
        drop(inner);
        if full {
            if self.flush_freed(at) {
                // Freed slots not yet given back may be what filled the
                // store: they are given back now, and the entry goes on a
                // later batch without counting against the call.
                round.failed -= 1;
            } else {
                round.stop = true;
            }
        }
        Some(round)
    }

    /// Copy the batch's compressed bytes out of the pool under the lock,
    /// then, the lock dropped, decompress them and write the pages to their
    /// slots with one `write_many`.
    fn write_victims(&self, claim: &mut Claim<'_, '_>, at: AreaRef<'_>, b: &Batch) -> Written {
        let page_size = self.page_size;
        let lens: Vec<usize> = b.entries.iter().map(|e| unpack(e.value).1).collect();
        let compressed_len: usize = lens.iter().sum();
        with_scratch(compressed_len + b.entries.len() * page_size, |buf| {
            let (compressed, pages) = buf.split_at_mut(compressed_len);
            // Read under the lock: a pool object may move or go once it is
            // dropped.
            let mut from = 0;
            for (e, &len) in b.entries.iter().zip(&lens) {
                self.pool
                    .read(unpack(e.value).0, &mut compressed[from..from + len]);
                from += len;
            }
            let compressed = &*compressed;
            claim.unlocked(|| self.send(at, b, &lens, compressed, pages))
        })
    }

    /// Decompress the batch's pages (`compressed`, one after another, of
    /// `lens`) into `pages` and write them with one `write_many`; no lock
    /// held.
    fn send(
        &self,
        at: AreaRef<'_>,
        b: &Batch,
        lens: &[usize],
        compressed: &[u8],
        pages: &mut [u8],
    ) -> Written {
        let page_size = self.page_size;
        let mut sent = Vec::with_capacity(b.entries.len());
        let mut slots = Vec::with_capacity(b.entries.len());
        let mut packed = Vec::with_capacity(b.entries.len());
        let mut from = 0;
        for (e, &len) in b.entries.iter().zip(lens) {
            let src = &compressed[from..from + len];
            from += len;
            let page = &mut pages[slots.len() * page_size..][..page_size];
            match self.decompress(e.tag, src, page) {
                Ok(()) => {
                    sent.push(Ok(slots.len()));
                    slots.push(u64::from(e.key));
                    packed.push(CompressorId::from_bits(e.tag).map(|id| (id, src)));
                }
                Err(why) => sent.push(Err(Error::new(
                    ErrorKind::Corrupt,
                    format!(
                        "writeback of swap type {}, offset {}: {why}",
                        at.swap_type, e.key
                    ),
                ))),
            }
        }
        let mut checks = Vec::with_capacity(slots.len());
        let pages = &pages[..slots.len() * page_size];
        let mut error = b
            .store
            .write_many_packed(&slots, pages, &packed, &mut checks)
            .err();
        if checks.len() > slots.len() || (error.is_none() && checks.len() < slots.len()) {
            // A store that breaks its contract: trust none of it
            // past what it can have written.
            checks.truncate(slots.len());
            error.get_or_insert_with(|| {
                std::io::Error::other("the store returned fewer checks than pages")
            });
        }
        Written {
            sent,
            checks,
            error,
        }
    }

    /// Record a batch under the lock. An entry leaves the pool for its slot
    /// if it is still the one written (no newer page was put at the offset,
    /// it was not dropped, the area is the same instance); otherwise the
    /// write is stale and given back, still under the claim so that no
    /// newer write lands in the slot first. Returns what the batch came to,
    /// and whether the store said it is full (`ENOSPC`).
    fn commit(
        &self,
        mut claim: Claim<'_, '_>,
        at: AreaRef<'_>,
        b: &Batch,
        w: Written,
    ) -> (Round, bool) {
        let mut round = Round::default();
        let instance = claim.is_instance(at);
        let mut full = false;
        let mut store_error = w.error;
        let mut stale = Vec::new();
        for (e, sent) in b.entries.iter().zip(w.sent) {
            let offset = e.key;
            let at_page = match sent {
                Ok(at_page) => at_page,
                Err(err) => {
                    self.stats.inc(Counter::DecompressFail);
                    keep_failed(&mut claim, offset);
                    round.fail(err);
                    continue;
                }
            };
            match w.checks.get(at_page) {
                Some(&check) => {
                    if self.settle(&mut claim, instance, offset, check) {
                        round.written += 1;
                    } else {
                        stale.push(u64::from(offset));
                    }
                }
                // The page the store failed at (those after it were not
                // tried, and stay as they are).
                None if at_page == w.checks.len() => {
                    if let Some(err) = store_error.take() {
                        full = err.raw_os_error() == Some(libc::ENOSPC);
                        round.stop = is_store_down(&err);
                        self.stats.inc(Counter::RejectReclaimFail);
                        // Out of the way, unless the whole store failed.
                        if !round.stop {
                            keep_failed(&mut claim, offset);
                        }
                        let what = "write back to";
                        round.fail(io_error(at.swap_type, offset, what, &*b.store, err));
                    }
                }
                None => {}
            }
        }
        if !stale.is_empty() {
            stale.sort_unstable();
            let _ = claim.unlocked(|| b.store.discard(&stale));
        }
        claim.finish();
        (round, full)
    }

    /// The page written from the entry at `offset` is in its slot: the
    /// entry leaves the pool, if it is still the one written (no newer page
    /// was put at the offset, it was not dropped, the area is the same
    /// instance). Returns false if the write is stale.
    fn settle(&self, claim: &mut Claim<'_, '_>, instance: bool, offset: u32, check: u32) -> bool {
        if !instance || claim.is_overtaken(offset) {
            return false;
        }
        let Some(current) = claim.index.get(offset) else {
            return false;
        };
        claim.index.remove_at(current.id);
        self.release(current);
        let backing = claim
            .backing
            .as_mut()
            .expect("an instance with a store keeps it");
        backing.slots.set(offset, check);
        self.stats.inc(Counter::WrittenBackPages);
        self.stats.inc(Counter::Zswpwb);
        self.stats.inc(Counter::Pswpout);
        true
    }
}

/// An entry that could not be written stays in the pool, readable (a
/// corrupt one reports itself on load), behind every other entry.
fn keep_failed(claim: &mut Claim<'_, '_>, offset: u32) {
    if let Some(cur) = claim.index.get(offset) {
        claim.index.touch(cur.id);
    }
}

/// The oldest entries of an area that is on and has a store, at most `max`
/// and at most the store's batch: not same-filled (those cost the pool
/// nothing) and not under I/O; with `until`, older than that marker.
fn pick_victims(
    inner: &MutexGuard<'_, AreaInner>,
    until: Option<u32>,
    max: usize,
) -> Option<Batch> {
    if inner.state != AreaState::On {
        return None;
    }
    let store = inner.backing.as_ref()?.store.clone();
    let max = max.min(store.write_batch_hint().clamp(1, MAX_BATCH)).max(1);
    let mut entries = Vec::with_capacity(max);
    inner.index.lru_oldest_where(until, |e| {
        if e.tag != TAG_SAME_FILLED && !inner.is_busy(e.key) {
            entries.push(*e);
        }
        entries.len() >= max
    });
    (!entries.is_empty()).then_some(Batch { entries, store })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::{Backing, Config, ErrorKind, LoadSource, StoreOutcome, Zswap};
    use crate::backing::SlotTable;
    use crate::testing::MemStore;

    fn page(seed: u64) -> Vec<u8> {
        let mut p = Vec::with_capacity(4096);
        let mut i = 0u64;
        while p.len() < 4096 {
            p.extend_from_slice(format!("[page {seed} word {i}]").as_bytes());
            i += 1;
        }
        p.truncate(4096);
        p
    }

    /// A cache with one area of `slots` slots backed by `store`, the
    /// store's batches `batch` pages.
    fn cache_on(store: &Arc<MemStore>, slots: u64, batch: usize) -> (Zswap, u32) {
        store.set_batch_hint(batch);
        let z = Zswap::new(Config::default()).unwrap();
        let t = z.swapon(slots).unwrap();
        z.areas[t as usize].inner.lock().backing = Some(Backing {
            store: store.clone(),
            slots: SlotTable::new(slots),
            freed: Vec::new(),
        });
        (z, t)
    }

    fn source(z: &Zswap, t: u32, o: u64, want: &[u8]) -> LoadSource {
        let mut out = vec![0u8; 4096];
        let src = z.load_into(t, o, &mut out).unwrap();
        assert_eq!(out, want, "offset {o}");
        src
    }

    #[test]
    fn a_batch_commits_what_was_not_overtaken_and_drops_the_rest() {
        let store = MemStore::new(64);
        let (z, t) = cache_on(&store, 64, 8);
        for o in 0..8u64 {
            assert_eq!(z.store(t, o, &page(o)).unwrap(), StoreOutcome::Stored);
        }
        store.hold_next_write();
        std::thread::scope(|s| {
            let wb = s.spawn(|| z.writeback(8));
            store.wait_write_held();
            // Mid-I/O: a newer page at 2, and 5 dropped.
            assert_eq!(z.store(t, 2, &page(102)).unwrap(), StoreOutcome::Stored);
            assert!(z.invalidate(t, 5).unwrap());
            store.release_write();
            // Six from the held batch; the call goes on with the newer
            // page at 2, the one entry left.
            assert_eq!(wb.join().unwrap().unwrap(), 7);
        });
        assert_eq!(store.write_many_calls(), 2);
        let e = z.load(t, 5).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::NotFound { .. }), "{e}");
        for o in [0u64, 1, 3, 4, 6, 7] {
            assert_eq!(source(&z, t, o, &page(o)), LoadSource::Backing);
        }
        assert_eq!(source(&z, t, 2, &page(102)), LoadSource::Backing);
        // The stale writes were given back: 5 is gone from the store, and
        // 2 holds the newer page.
        assert_eq!(store.page(5), None);
        assert_eq!(store.page(2), Some(page(102)));
        let s = z.stats();
        assert_eq!((s.written_back_pages, s.stored_pages), (7, 0), "{s:?}");
        z.check_invariants().unwrap();
    }

    #[test]
    fn a_batch_failing_part_way_keeps_every_page() {
        let store = MemStore::new(64);
        let (z, t) = cache_on(&store, 64, 8);
        for o in 0..8u64 {
            z.store(t, o, &page(o)).unwrap();
        }
        // The write fails at slot 3, leaving garbage there: 0..3 are
        // written, 3 stays in the pool, 4..8 go on the next batch.
        store.fail_at(3, true);
        assert_eq!(z.writeback(8).unwrap(), 7);
        for o in 0..8u64 {
            let want = if o == 3 {
                LoadSource::Pool
            } else {
                LoadSource::Backing
            };
            assert_eq!(source(&z, t, o, &page(o)), want);
        }
        let s = z.stats();
        assert_eq!(s.written_back_pages, 7, "{s:?}");
        // Slot 3 was tried once per batch until the call's failure budget
        // ran out; the pages after it in the first batch never counted.
        assert_eq!(s.reject_reclaim_fail, super::MAX_FAILURES as u64, "{s:?}");
        store.fail_at(3, false);
        assert_eq!(z.writeback(8).unwrap(), 1);
        assert_eq!(source(&z, t, 3, &page(3)), LoadSource::Backing);
        z.check_invariants().unwrap();
    }

    #[test]
    fn a_store_that_is_down_ends_the_call_at_its_first_failure() {
        let store = MemStore::new(64);
        let (z, t) = cache_on(&store, 64, 4);
        for o in 0..20u64 {
            z.store(t, o, &page(o)).unwrap();
        }
        store.set_down(true);
        let e = z.writeback(20).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Backing, "{e}");
        assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED), "{e}");
        assert_eq!(
            store.write_many_calls(),
            1,
            "one attempt, not one per entry"
        );
        for o in 0..20u64 {
            assert_eq!(source(&z, t, o, &page(o)), LoadSource::Pool);
        }
        // The LRU is as it was: the oldest entries go first once it is back.
        store.set_down(false);
        assert_eq!(z.writeback(4).unwrap(), 4);
        for o in 0..20u64 {
            assert_eq!(store.page(o).is_some(), o < 4, "offset {o}");
        }
        z.check_invariants().unwrap();
    }
}
