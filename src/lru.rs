//! The LRU of zswap entries: an intrusive doubly linked list threaded through
//! the entries' own slots, so that adding, touching, removing and taking the
//! oldest entry are all O(1) and cost no allocation.
//!
//! Writeback walks it from the oldest end: the page that has sat longest in
//! the pool is the one least likely to be wanted back soon, so it is the one
//! worth paying a disk write for (the kernel's zswap keeps the same order in a
//! `list_lru`). Links are 32-bit slot numbers rather than pointers: two
//! `u32`s are half the size of two pointers, which matters at one entry per
//! stored page, and a slot number stays valid however the owner stores the
//! slots.
//!
//! The list does not own the slots; whoever does implements [`LruSlots`].

/// "No slot": the end of the list in either direction.
pub const NIL: u32 = u32::MAX;

/// The two links an entry carries. Invariant: `prev` points towards the
/// newest end, `next` towards the oldest end, `NIL` at either end; an entry
/// that is not on the list has both set to `NIL` and is not the list's head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct LruLink {
    /// The next newer entry, or `NIL` if this is the newest.
    pub prev: u32,
    /// The next older entry, or `NIL` if this is the oldest.
    pub next: u32,
}

impl LruLink {
    /// The links of an entry that is on no list.
    pub const UNLINKED: LruLink = LruLink {
        prev: NIL,
        next: NIL,
    };
}

/// Storage that holds one [`LruLink`] per slot. The caller guarantees that
/// every slot id given to [`Lru`] is in range for the storage.
pub trait LruSlots {
    /// The links of slot `id`.
    fn link(&self, id: u32) -> &LruLink;
    /// The links of slot `id`, to change.
    fn link_mut(&mut self, id: u32) -> &mut LruLink;
}

/// The list's two ends and its length. Invariant: `newest == NIL` iff
/// `oldest == NIL` iff `len == 0`.
#[derive(Clone, Debug)]
pub struct Lru {
    newest: u32,
    oldest: u32,
    len: u32,
}

impl Default for Lru {
    fn default() -> Self {
        Self::new()
    }
}

impl Lru {
    /// An empty list.
    pub const fn new() -> Self {
        Lru {
            newest: NIL,
            oldest: NIL,
            len: 0,
        }
    }

    /// How many entries are on the list.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The entry that has gone longest without being added or touched.
    pub fn oldest(&self) -> Option<u32> {
        (self.oldest != NIL).then_some(self.oldest)
    }

    /// The most recently added or touched entry.
    pub fn newest(&self) -> Option<u32> {
        (self.newest != NIL).then_some(self.newest)
    }

    /// The entry one step newer than `id`, for walking from the oldest end.
    pub fn newer<S: LruSlots + ?Sized>(&self, slots: &S, id: u32) -> Option<u32> {
        let prev = slots.link(id).prev;
        (prev != NIL).then_some(prev)
    }

    /// Add `id`, which must not be on the list, as the newest entry.
    pub fn push_newest<S: LruSlots + ?Sized>(&mut self, slots: &mut S, id: u32) {
        debug_assert_eq!(
            *slots.link(id),
            LruLink::UNLINKED,
            "slot {id} is already on the LRU"
        );
        debug_assert_ne!(self.newest, id, "slot {id} is already the newest");
        *slots.link_mut(id) = LruLink {
            prev: NIL,
            next: self.newest,
        };
        if self.newest != NIL {
            slots.link_mut(self.newest).prev = id;
        } else {
            self.oldest = id;
        }
        self.newest = id;
        self.len += 1;
    }

    /// Take `id`, which must be on the list, off it.
    pub fn unlink<S: LruSlots + ?Sized>(&mut self, slots: &mut S, id: u32) {
        let LruLink { prev, next } = *slots.link(id);
        if prev != NIL {
            slots.link_mut(prev).next = next;
        } else {
            debug_assert_eq!(self.newest, id, "slot {id} is not on the LRU");
            self.newest = next;
        }
        if next != NIL {
            slots.link_mut(next).prev = prev;
        } else {
            debug_assert_eq!(self.oldest, id, "slot {id} is not on the LRU");
            self.oldest = prev;
        }
        *slots.link_mut(id) = LruLink::UNLINKED;
        self.len -= 1;
    }

    /// Mark `id`, which must be on the list, as just used.
    pub fn touch<S: LruSlots + ?Sized>(&mut self, slots: &mut S, id: u32) {
        if self.newest != id {
            self.unlink(slots, id);
            self.push_newest(slots, id);
        }
    }

    /// Check the links from both ends; for tests and debug assertions.
    pub fn check<S: LruSlots + ?Sized>(&self, slots: &S) -> Result<(), String> {
        let mut count = 0u32;
        let mut prev = NIL;
        let mut id = self.newest;
        while id != NIL {
            let link = slots.link(id);
            if link.prev != prev {
                return Err(format!(
                    "LRU slot {id}: prev is {} but came from {prev}",
                    link.prev
                ));
            }
            count += 1;
            if count > self.len {
                return Err(format!("LRU longer than its length {}", self.len));
            }
            prev = id;
            id = link.next;
        }
        if prev != self.oldest {
            return Err(format!("LRU ends at {prev} but oldest is {}", self.oldest));
        }
        if count != self.len {
            return Err(format!("LRU has {count} entries but length {}", self.len));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl LruSlots for Vec<LruLink> {
        fn link(&self, id: u32) -> &LruLink {
            &self[id as usize]
        }
        fn link_mut(&mut self, id: u32) -> &mut LruLink {
            &mut self[id as usize]
        }
    }

    fn order(lru: &Lru, slots: &Vec<LruLink>) -> Vec<u32> {
        let mut out = Vec::new();
        let mut id = lru.oldest();
        while let Some(i) = id {
            out.push(i);
            id = lru.newer(slots, i);
        }
        out
    }

    #[test]
    fn oldest_first_and_touch_moves_to_newest() {
        let mut slots = vec![LruLink::UNLINKED; 4];
        let mut lru = Lru::new();
        assert_eq!(lru.oldest(), None);
        for id in 0..4 {
            lru.push_newest(&mut slots, id);
        }
        assert_eq!(order(&lru, &slots), [0, 1, 2, 3]);
        lru.touch(&mut slots, 0);
        lru.touch(&mut slots, 2);
        assert_eq!(order(&lru, &slots), [1, 3, 0, 2]);
        lru.unlink(&mut slots, 3);
        lru.unlink(&mut slots, 1);
        assert_eq!(order(&lru, &slots), [0, 2]);
        assert_eq!(slots[3], LruLink::UNLINKED);
        lru.check(&slots).unwrap();
        lru.unlink(&mut slots, 0);
        lru.unlink(&mut slots, 2);
        assert!(lru.is_empty());
        assert_eq!((lru.oldest(), lru.newest()), (None, None));
        lru.check(&slots).unwrap();
    }
}
