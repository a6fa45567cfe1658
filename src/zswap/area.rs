//! One swap area: its state and instance, its index, its backing store,
//! and the claims on its slots under I/O.
//!
//! No lock is held across I/O (see the lock notes in `mod.rs`), so a slot
//! under I/O is *claimed* instead: [`Area::claim`] puts its offset on the
//! area's `busy` list and returns a [`Claim`], through which the I/O runs
//! with the area lock dropped ([`Claim::unlocked`]) and which
//! [`Claim::finish`] ends under the lock again: it releases the slot,
//! wakes whoever waits for it, and says whether the slot was *overtaken*
//! meanwhile (a newer page put at the offset, so that the I/O's result must
//! not be recorded). The claim borrows the area's lock guard for its whole
//! life, so the lock is held whenever the claim can be dropped: a panic in
//! the I/O (a compressor, a store) unwinds through `unlocked`, which takes
//! the lock back, and the claim's `Drop` releases the slot under it. No
//! panic leaves a slot claimed and `swapoff` waiting for it forever. The
//! trade-off: a claim cannot outlive the guard it borrows, so the I/O of a
//! claim is always a closure.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::backing::{BackingStore, SlotTable};
use crate::index::{EntryRef, Index, IndexFull};

/// The state of one swap type. Invariant: `pages` and `generation` (the
/// atomics) equal `inner.pages` and `inner.generation` whenever `inner` is
/// unlocked; `pages` is 0 while the area is off.
pub(super) struct Area {
    /// Slots of the area, 0 while off; read without the lock to reject bad
    /// arguments before compressing, and checked again under it.
    pub(super) pages: AtomicU64,
    /// The instance of the area a call starts on, read without the lock
    /// beside `pages` (see [`AreaRef`]).
    pub(super) generation: AtomicU64,
    pub(super) inner: Mutex<AreaInner>,
    /// Signalled whenever a slot claim is released.
    pub(super) io_done: Condvar,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AreaState {
    /// Never turned on.
    Unused,
    On,
    /// `swapoff` has begun and waits for the I/O in flight: no new call gets
    /// in, and `swapon` may not reuse the number until it is `SwappedOff`,
    /// or the waiting `swapoff` would empty the next area.
    Stopping,
    /// Turned off by `swapoff`; using it again is an error that says so,
    /// until `swapon` reuses the number.
    SwappedOff,
}

/// An area as a call found it: its number and the instance it was then.
///
/// A call that drops the area lock (to compress, to do file I/O, to wait
/// for a claimed slot) may come back to a different area under the same
/// number: `swapoff` and `swapon` can run meanwhile, and `swapon` gives the
/// lowest free number. So every retaking of the lock checks the
/// generation, which `swapon` and `swapoff` bump, and a call whose area was
/// swapped off meanwhile fails as swapped off: its work never lands in the
/// next area of that number.
#[derive(Clone, Copy)]
pub(super) struct AreaRef<'a> {
    pub(super) swap_type: u32,
    pub(super) area: &'a Area,
    pub(super) generation: u64,
}

/// Invariants: an offset is in the index or valid in `backing.slots`, never
/// both; every claimed offset is on `busy` exactly once.
pub(super) struct AreaInner {
    pub(super) state: AreaState,
    /// Bumped by every `swapon` and `swapoff` of this number: which instance
    /// of the area this is ([`AreaRef`]).
    pub(super) generation: u64,
    pub(super) pages: u64,
    pub(super) index: Index,
    pub(super) backing: Option<Backing>,
    /// Offsets with file I/O in flight (claimed), rarely more than a few.
    busy: Vec<Busy>,
    /// LRU markers of the background shrinker, oldest first, with the time
    /// each was pushed.
    pub(super) markers: VecDeque<(Instant, u32)>,
    /// A region's memory lives here ([`Zswap::hold`]): `swapoff` and
    /// `close` refuse until the region lets go.
    pub(super) held: bool,
}

/// The store behind an area and what each of its slots holds.
pub(super) struct Backing {
    pub(super) store: Arc<dyn BackingStore>,
    pub(super) slots: SlotTable,
    /// Slots freed since their blocks were last given back.
    pub(super) freed: Vec<u32>,
}

/// Freed slots are given back to the filesystem in batches of this many:
/// a hole punch costs about as much as a page write (100-400 us measured on
/// ext4), so doing it per invalidate would spend on freeing what zswap saves
/// on writing. The kernel likewise discards freed swap in batches.
pub(super) const DISCARD_BATCH: usize = 64;

/// A slot on an area's `busy` list. `overtaken`: a newer page was put at
/// this offset since it was claimed, so the I/O's result is stale.
#[derive(Clone, Copy, Debug)]
struct Busy {
    offset: u32,
    overtaken: bool,
}

impl Area {
    pub(super) fn new() -> Self {
        Area {
            pages: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            inner: Mutex::new(AreaInner {
                state: AreaState::Unused,
                generation: 0,
                pages: 0,
                index: Index::new(),
                backing: None,
                busy: Vec::new(),
                markers: VecDeque::new(),
                held: false,
            }),
            io_done: Condvar::new(),
        }
    }
}

impl AreaInner {
    /// Whether this is still the instance `at` was found on, and on.
    pub(super) fn is_instance(&self, at: AreaRef<'_>) -> bool {
        self.state == AreaState::On && self.generation == at.generation
    }

    /// Start a new instance (`swapon`) or end one (`swapoff`).
    pub(super) fn bump_generation(&mut self, area: &Area) {
        self.generation += 1;
        area.generation.store(self.generation, Relaxed);
    }

    /// A newer page was put at `offset`: I/O in flight there is overtaken.
    fn mark_overtaken(&mut self, offset: u32) {
        for c in self.busy.iter_mut().filter(|c| c.offset == offset) {
            c.overtaken = true;
        }
    }

    /// Whether any slot is claimed.
    pub(super) fn has_claims(&self) -> bool {
        !self.busy.is_empty()
    }

    /// Whether `offset` is claimed.
    pub(super) fn is_busy(&self, offset: u32) -> bool {
        self.busy.iter().any(|c| c.offset == offset)
    }

    /// Take `offset` off the busy list; whether it was overtaken.
    fn unclaim(&mut self, offset: u32) -> bool {
        let at = self
            .busy
            .iter()
            .position(|c| c.offset == offset)
            .expect("released a slot that was not claimed");
        self.busy.swap_remove(at).overtaken
    }

    /// Put an entry at `offset`, overtaking any I/O there. Returns the
    /// replaced entry and whether the store held a page there.
    pub(super) fn put(
        &mut self,
        offset: u32,
        value: u64,
        tag: u8,
        on_lru: bool,
    ) -> Result<(Option<EntryRef>, bool), IndexFull> {
        let old = self.index.insert_with(offset, value, tag, on_lru)?;
        self.mark_overtaken(offset);
        let mut on_disk = false;
        if let Some(b) = self.backing.as_mut() {
            // The page on disk is stale now: its blocks go back with the
            // next discard.
            on_disk = b.slots.clear(offset);
            if on_disk {
                b.freed.push(offset);
            }
        }
        Ok((old, on_disk))
    }

    /// Whether enough slots were freed to give their blocks back now.
    pub(super) fn discard_due(&self) -> bool {
        self.backing
            .as_ref()
            .is_some_and(|b| b.freed.len() >= DISCARD_BATCH)
    }
}

impl Area {
    /// Claim `offset` of this area, which must not be claimed, for I/O; the
    /// claim holds `inner`, this area's lock, until it is finished.
    pub(super) fn claim<'g, 'a>(
        &'g self,
        inner: &'g mut MutexGuard<'a, AreaInner>,
        offset: u32,
    ) -> Claim<'g, 'a> {
        debug_assert!(!inner.is_busy(offset), "slot {offset} claimed twice");
        inner.busy.push(Busy {
            offset,
            overtaken: false,
        });
        Claim {
            inner,
            io_done: &self.io_done,
            slots: Claimed::One(offset),
            finished: false,
        }
    }

    /// Claim every one of `offsets`, none of them claimed, for one I/O (a
    /// discard, a writeback batch).
    pub(super) fn claim_many<'g, 'a>(
        &'g self,
        inner: &'g mut MutexGuard<'a, AreaInner>,
        offsets: Vec<u32>,
    ) -> Claim<'g, 'a> {
        for &offset in &offsets {
            debug_assert!(!inner.is_busy(offset), "slot {offset} claimed twice");
            inner.busy.push(Busy {
                offset,
                overtaken: false,
            });
        }
        Claim {
            inner,
            io_done: &self.io_done,
            slots: Claimed::Many(offsets),
            finished: false,
        }
    }

    /// Wait, the lock dropped meanwhile, until `offset` is not claimed.
    pub(super) fn wait_unclaimed(&self, inner: &mut MutexGuard<'_, AreaInner>, offset: u32) {
        while inner.is_busy(offset) {
            self.io_done.wait(inner);
        }
    }
}

/// What a [`Claim`] holds.
enum Claimed {
    One(u32),
    /// A discard's or a writeback batch's slots.
    Many(Vec<u32>),
}

/// Slots of an area under I/O, from [`Area::claim`]: see the module docs.
/// While it lives the slots are on the area's `busy` list, other I/O on
/// them waits, and `swapoff` waits. Derefs to the area's state, under the
/// lock it borrows.
#[must_use = "a claim is ended by finish()"]
pub(super) struct Claim<'g, 'a> {
    inner: &'g mut MutexGuard<'a, AreaInner>,
    io_done: &'g Condvar,
    slots: Claimed,
    finished: bool,
}

impl Claim<'_, '_> {
    /// Run `io` with the area lock dropped; the lock is taken again when
    /// `io` returns or panics.
    pub(super) fn unlocked<R>(&mut self, io: impl FnOnce() -> R) -> R {
        MutexGuard::unlocked(self.inner, io)
    }

    /// End the claim: release its slots and wake whoever waits for them.
    /// Returns whether the slot was overtaken while claimed (a newer page
    /// put at its offset: the I/O's result is stale).
    pub(super) fn finish(mut self) -> bool {
        self.finished = true;
        self.release()
    }

    fn release(&mut self) -> bool {
        let overtaken = match &self.slots {
            Claimed::One(offset) => self.inner.unclaim(*offset),
            Claimed::Many(offsets) => {
                for &offset in offsets {
                    self.inner.unclaim(offset);
                }
                false
            }
        };
        self.io_done.notify_all();
        overtaken
    }
}

impl std::ops::Deref for Claim<'_, '_> {
    type Target = AreaInner;

    fn deref(&self) -> &AreaInner {
        self.inner
    }
}

impl std::ops::DerefMut for Claim<'_, '_> {
    fn deref_mut(&mut self) -> &mut AreaInner {
        self.inner
    }
}

impl Drop for Claim<'_, '_> {
    /// Only a panic in the I/O (or a caller's bug) gets here unfinished;
    /// the lock is held (the claim borrows its guard), so release at once.
    fn drop(&mut self) {
        if !self.finished {
            if !std::thread::panicking() {
                debug_assert!(false, "a claim was dropped unfinished");
            }
            self.release();
        }
    }
}

impl Claim<'_, '_> {
    /// Whether `offset`, one of the claimed slots, was overtaken so far.
    pub(super) fn is_overtaken(&self, offset: u32) -> bool {
        debug_assert!(
            match &self.slots {
                Claimed::One(o) => *o == offset,
                Claimed::Many(offsets) => offsets.contains(&offset),
            },
            "slot {offset} is not in this claim"
        );
        self.inner
            .busy
            .iter()
            .any(|c| c.offset == offset && c.overtaken)
    }
}
