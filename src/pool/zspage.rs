//! Zspages and the per-class state that groups them by fullness.
//!
//! A zspage is one zeroed heap buffer of `pages_per_zspage * page_size`
//! bytes carved into `objs_per_zspage` equal slots. Which slots are taken is
//! kept in a bitmap, one bit per slot, outside the slots: 1 to 4 `u64` words
//! per zspage (no class has more than 256 slots per zspage), all of a
//! class's bitmaps in one vector indexed by zspage id.
//!
//! zsmalloc threads its free list through the free objects instead, which
//! costs no memory but makes a free write into the object and an
//! allocation read it (a cache miss each on a large pool). The bitmap keeps
//! the bookkeeping off the object memory, costs 1 bit per slot (0.4% of a
//! zspage for the 32-byte class, 0.02% for the 2 KiB classes compressed
//! pages mostly land in), and, above all, lets release builds reject a
//! double free or a read of a free slot instead of silently corrupting the
//! free list. (A free list threaded through the objects measured the same
//! speed within noise on 2 to 200 MB pools.)
//!
//! Per zspage, metadata is thus a 32-byte record (a boxed slice, two list
//! links, the in-use count and the fullness group) plus 8 bytes per 64
//! slots of bitmap: 40 bytes for a typical 8-page zspage of 15 objects.
//!
//! Each class keeps its zspages in fullness groups (intrusive doubly linked
//! lists threaded through the zspages by id) so that moving a zspage between
//! groups, and finding the fullest group with room, are O(1).

use super::handle::MAX_ZSPAGES_PER_CLASS;
use super::heap::{zspage_memory, ZsMem};
use super::AllocError;

/// Number of fullness groups: 10 for partly used zspages (inuse share in
/// [0,10%), [10,20%), ..., [90,100%)) and one for full ones. Empty zspages
/// are freed at once, so they have no group. This is zsmalloc's fine-grained
/// grouping (Linux 6.3) and its debugfs columns `10 .. 99 100`.
pub const GROUPS: usize = 11;
/// The group of full zspages: never allocated from, and so not kept in a
/// list (a zspage in a pool under steady churn moves between full and 90%
/// on almost every free and allocation; only one list is touched then).
pub const FULL: u8 = 10;
/// Not in any group: set aside by compaction so that allocation does not
/// refill a zspage being emptied.
pub const ISOLATED: u8 = u8::MAX;
/// End of a zspage list.
const NONE: u32 = u32::MAX;

/// The fullness group of a zspage with `inuse` of `objs` slots used
/// (`inuse >= 1`): `FULL`, or the tens digit of its percentage used. The
/// definition; `ClassState::group_of` computes it without dividing.
#[cfg(test)]
pub fn fullness_group(inuse: u16, objs: u16) -> u8 {
    if inuse >= objs {
        FULL
    } else {
        (inuse as u32 * 10 / objs as u32) as u8
    }
}

/// One zspage.
#[derive(Debug)]
pub struct ZsPage {
    /// The slots: `objs_per_zspage * size` bytes used, the tail wasted.
    /// Length is fixed for the class.
    mem: ZsMem,
    /// Neighbours in the group list (`NONE` at the ends); meaningless while
    /// `group` is `FULL` or `ISOLATED`.
    prev: u32,
    next: u32,
    /// Slots allocated: the number of slot bits set in the zspage's
    /// bitmap. A listed zspage has `1 <= inuse`; 0 only transiently (it is
    /// then freed) or while isolated.
    inuse: u16,
    /// `fullness_group(inuse, objs)` while in a group (a list, or `FULL`),
    /// `ISOLATED` while compaction has it set aside.
    group: u8,
}

const _: () = assert!(std::mem::size_of::<Option<ZsPage>>() == 32);

/// Bytes at the end of each slot that hold the owner's tag (see
/// [`super::Pool::alloc_write_tagged`]): the caller's name for the object,
/// which lets compaction ask the owner to follow a move without walking
/// its index. zsmalloc likewise keeps the handle in an object header.
pub const TAG_BYTES: usize = 8;

/// The tag of an object allocated without one: compaction steps never move
/// it (only [`super::Pool::compact`], whose caller presents every handle).
pub const NO_OWNER: u64 = u64::MAX;

/// What a class's lock protects: its zspages and their grouping.
#[derive(Debug)]
pub struct ClassState {
    /// Slot size in bytes (copied from the class spec for the hot path).
    size: usize,
    /// Where in a slot its tag starts, `size - TAG_BYTES`, or `None` for a
    /// class of one slot per zspage: such a zspage is full or freed, so
    /// compaction never has a reason to move its object, and its object
    /// may fill the whole slot (a page that did not compress).
    tag_at: Option<usize>,
    /// Slots per zspage.
    objs: u16,
    /// Bytes per zspage: `pages_per_zspage * page_size`.
    zspage_bytes: usize,
    /// Slot table: zspage id -> zspage. `None` slots are listed in
    /// `vacant` and reused before the table grows. Never longer than
    /// `MAX_ZSPAGES_PER_CLASS`.
    zspages: Vec<Option<ZsPage>>,
    /// Ids of `None` slots in `zspages`.
    vacant: Vec<u32>,
    /// Allocated-slot bitmaps: `words` words per entry of `zspages`, bit
    /// `i` of zspage `id`'s words set iff slot `i` is allocated. The bits
    /// past the last slot are always set (so a search for a clear bit never
    /// finds a slot that does not exist); a vacant id's words hold only
    /// those.
    bits: Vec<u64>,
    /// Words per zspage in `bits`: `objs.div_ceil(64)`.
    words: usize,
    /// The bitmap of an empty zspage: 0s for the slots, 1s past them.
    empty_bits: [u64; MAX_WORDS],
    /// Head of each partly used group's list (`NONE` if empty).
    heads: [u32; FULL as usize],
    /// Zspages in each group.
    counts: [u32; GROUPS],
    /// `fullness_group(inuse)` is `(inuse * group_mult) >> 32`: a multiply
    /// instead of a division on every allocation and free. With
    /// `group_mult = floor(10 * 2^32 / objs) + 1` the product overshoots
    /// `10 * inuse / objs` by less than `inuse / 2^32 < 2^-24`, while that
    /// quotient's fractional part is 0 or at least `1 / objs >= 1/256` away
    /// from the next integer, so the floor is exact (the tests check every
    /// `inuse` of every class).
    group_mult: u64,
    /// Bit `g` set iff the list of group `g < FULL` is non-empty: the
    /// fullest group with room is the highest set bit.
    partial_mask: u16,
    /// Zspages held, listed or isolated.
    live: usize,
    /// Objects allocated in this class.
    obj_used: u64,
    /// Zspages isolated by a compaction in progress; empty otherwise.
    isolated: Vec<u32>,
}

/// Most bitmap words a zspage needs: no class has more than 256 slots per
/// zspage on any page size (the class-table tests check this); the most is
/// the 48-byte class on 4 KiB pages, 256 slots in 3 pages, and the same
/// ratios recur on larger pages.
pub const MAX_WORDS: usize = 4;

/// Figures for [`super::ClassStats`].
pub struct StateStats {
    pub zspages: usize,
    pub obj_used: usize,
    pub fullness: [usize; GROUPS],
}

impl ClassState {
    pub fn new(size: usize, objs: u16, zspage_bytes: usize) -> ClassState {
        let words = (objs as usize).div_ceil(64);
        assert!((1..=MAX_WORDS).contains(&words), "{objs} slots per zspage");
        let mut empty_bits = [0u64; MAX_WORDS];
        let tail = objs as usize % 64;
        if tail != 0 {
            empty_bits[words - 1] = !0 << tail;
        }
        ClassState {
            tag_at: (objs > 1).then(|| size - TAG_BYTES),
            bits: Vec::new(),
            words,
            empty_bits,
            size,
            objs,
            zspage_bytes,
            zspages: Vec::new(),
            vacant: Vec::new(),
            heads: [NONE; FULL as usize],
            group_mult: ((10u64 << 32) / objs as u64) + 1,
            counts: [0; GROUPS],
            partial_mask: 0,
            live: 0,
            obj_used: 0,
            isolated: Vec::new(),
        }
    }

    #[inline]
    pub fn obj_used(&self) -> u64 {
        self.obj_used
    }

    /// Zspages held, listed or isolated.
    #[inline]
    pub fn live(&self) -> usize {
        self.live
    }

    /// Whether some listed zspage has a free slot (an allocation needs no
    /// new zspage).
    #[inline]
    pub fn has_room(&self) -> bool {
        self.partial_mask != 0
    }

    /// Bytes of a slot the caller may use: all of it but the tag.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.tag_at.unwrap_or(self.size)
    }

    #[inline]
    fn page(&self, id: u32) -> &ZsPage {
        self.zspages[id as usize]
            .as_ref()
            .expect("zspage list names a vacant slot")
    }

    #[inline]
    fn page_mut(&mut self, id: u32) -> &mut ZsPage {
        self.zspages[id as usize]
            .as_mut()
            .expect("zspage list names a vacant slot")
    }

    /// The fullness group of a zspage with `inuse` slots used:
    /// `fullness_group(inuse, objs)`, by multiplication.
    #[inline]
    fn group_of(&self, inuse: u16) -> u8 {
        ((inuse as u64 * self.group_mult) >> 32) as u8
    }

    /// Puts zspage `id` in group `g`: on the front of its list unless full.
    #[inline]
    fn link(&mut self, id: u32, g: u8) {
        self.counts[g as usize] += 1;
        if g == FULL {
            self.page_mut(id).group = g;
            return;
        }
        let head = self.heads[g as usize];
        let zs = self.page_mut(id);
        zs.prev = NONE;
        zs.next = head;
        zs.group = g;
        if head != NONE {
            self.page_mut(head).prev = id;
        }
        self.heads[g as usize] = id;
        self.partial_mask |= 1 << g;
    }

    /// Takes zspage `id` out of its group (it must be in one).
    #[inline]
    fn unlink(&mut self, id: u32) {
        let zs = self.page(id);
        let (prev, next, g) = (zs.prev, zs.next, zs.group);
        debug_assert!(g != ISOLATED);
        self.counts[g as usize] -= 1;
        if g == FULL {
            return;
        }
        if prev != NONE {
            self.page_mut(prev).next = next;
        } else {
            self.heads[g as usize] = next;
        }
        if next != NONE {
            self.page_mut(next).prev = prev;
        }
        if self.heads[g as usize] == NONE {
            self.partial_mask &= !(1 << g);
        }
    }

    /// Moves a listed zspage to the group its `inuse` now calls for.
    #[inline]
    fn regroup(&mut self, id: u32) {
        let zs = self.page(id);
        let g = self.group_of(zs.inuse);
        if g != zs.group {
            self.unlink(id);
            self.link(id, g);
        }
    }

    /// The fullest listed zspage with a free slot, if any.
    #[inline]
    fn fullest_with_room(&self) -> Option<u32> {
        let mask = self.partial_mask;
        if mask == 0 {
            return None;
        }
        let g = 15 - mask.leading_zeros();
        Some(self.heads[g as usize])
    }

    /// Adds a new, empty, unlisted zspage and returns its id. Its memory
    /// is `mem` if the caller made it beforehand ([`zspage_memory`], with
    /// no lock held), else made here.
    fn new_zspage(&mut self, mem: &mut Option<ZsMem>) -> Result<u32, AllocError> {
        let mem = match mem.take() {
            Some(mem) => {
                debug_assert_eq!(mem.len(), self.zspage_bytes);
                mem
            }
            None => zspage_memory(self.zspage_bytes)?,
        };
        let zs = ZsPage {
            mem,
            prev: NONE,
            next: NONE,
            inuse: 0,
            group: ISOLATED,
        };
        let id = match self.vacant.pop() {
            Some(id) => {
                self.zspages[id as usize] = Some(zs);
                id
            }
            None => {
                if self.zspages.len() >= MAX_ZSPAGES_PER_CLASS {
                    return Err(AllocError::OutOfMemory);
                }
                self.zspages
                    .try_reserve(1)
                    .map_err(|_| AllocError::OutOfMemory)?;
                self.bits
                    .try_reserve(self.words)
                    .map_err(|_| AllocError::OutOfMemory)?;
                // The vacant list may need room for this id when the zspage
                // is freed; reserve now so that free never allocates.
                self.vacant
                    .try_reserve(self.zspages.len() + 1 - self.vacant.len())
                    .map_err(|_| AllocError::OutOfMemory)?;
                self.zspages.push(Some(zs));
                self.bits.extend_from_slice(&self.empty_bits[..self.words]);
                (self.zspages.len() - 1) as u32
            }
        };
        self.live += 1;
        Ok(id)
    }

    /// Removes zspage `id` (empty, unlisted) and returns its memory, so the
    /// caller can drop it after releasing the lock.
    fn remove_zspage(&mut self, id: u32) -> ZsMem {
        let zs = self.zspages[id as usize]
            .take()
            .expect("removing a vacant zspage");
        debug_assert_eq!(zs.inuse, 0);
        debug_assert_eq!(self.bitmap(id), &self.empty_bits[..self.words]);
        // Cannot allocate: `new_zspage` reserved room for every id.
        self.vacant.push(id);
        self.live -= 1;
        zs.mem
    }

    /// Zspage `id`'s bitmap words.
    #[inline]
    fn bitmap(&self, id: u32) -> &[u64] {
        let at = id as usize * self.words;
        &self.bits[at..at + self.words]
    }

    /// Whether slot `obj` of zspage `id` is allocated.
    #[inline]
    fn is_allocated(&self, id: u32, obj: u16) -> bool {
        let word = self.bits[id as usize * self.words + obj as usize / 64];
        word & (1 << (obj % 64)) != 0
    }

    /// Takes the lowest free slot of zspage `id` (which has one) and
    /// regroups the zspage if it is listed.
    #[inline]
    fn take_slot(&mut self, id: u32) -> u16 {
        let at = id as usize * self.words;
        let words = &mut self.bits[at..at + self.words];
        let (w, word) = words
            .iter_mut()
            .enumerate()
            .find(|(_, w)| **w != !0)
            .expect("take_slot on a full zspage");
        let bit = (!*word).trailing_zeros();
        *word |= 1 << bit;
        let obj = (w * 64) as u16 + bit as u16;
        debug_assert!(obj < self.objs);
        let zs = self.page_mut(id);
        zs.inuse += 1;
        let listed = zs.group != ISOLATED;
        self.obj_used += 1;
        if listed {
            self.regroup(id);
        }
        obj
    }

    /// Allocates a slot tagged `tag`: in the fullest zspage with room, else
    /// in a new zspage. Returns `(zspage id, slot, whether a zspage was
    /// created)`.
    #[cfg(test)]
    pub fn alloc(&mut self, tag: u64) -> Result<(u32, u16, bool), AllocError> {
        self.alloc_in(tag, &mut None)
    }

    /// As `alloc`; a new zspage takes its memory from `mem` if it holds
    /// some (which is then `None`).
    #[inline]
    fn alloc_in(
        &mut self,
        tag: u64,
        mem: &mut Option<ZsMem>,
    ) -> Result<(u32, u16, bool), AllocError> {
        let (id, created) = match self.fullest_with_room() {
            Some(id) => (id, false),
            None => {
                let id = self.new_zspage(mem)?;
                // Listed as nearly empty; take_slot regroups it.
                self.link(id, 0);
                (id, true)
            }
        };
        let obj = self.take_slot(id);
        self.set_tag(id, obj, tag);
        Ok((id, obj, created))
    }

    #[inline]
    fn set_tag(&mut self, id: u32, obj: u16, tag: u64) {
        if let Some(at) = self.tag_at {
            let slot = self.slot_of(id, obj);
            slot[at..at + TAG_BYTES].copy_from_slice(&tag.to_ne_bytes());
        }
    }

    /// The tag of slot `obj` of zspage `id` (`NO_OWNER` in an untagged
    /// class).
    fn tag_of(&self, id: u32, obj: u16) -> u64 {
        let Some(at) = self.tag_at else {
            return NO_OWNER;
        };
        let start = obj as usize * self.size + at;
        let bytes = &self.page(id).mem[start..start + TAG_BYTES];
        u64::from_ne_bytes(bytes.try_into().expect("8 bytes"))
    }

    /// As `alloc_write`, but only into a listed zspage with room: `None`
    /// instead of adding a zspage.
    #[inline]
    pub fn alloc_write_if_room(&mut self, data: &[u8], tag: u64) -> Option<(u32, u16)> {
        if !self.has_room() {
            return None;
        }
        let (id, obj, created) = self.alloc_write(data, tag, &mut None).ok()?;
        debug_assert!(!created);
        Some((id, obj))
    }

    /// Checks that `(id, obj)` names an allocated slot and returns the
    /// zspage; panics with `what` and a clear message otherwise (no such
    /// zspage or slot, or a free slot: double free, stale handle). A stale
    /// handle whose slot was reused cannot be told from the new owner's.
    #[inline]
    #[track_caller]
    fn checked(&self, id: Option<u32>, obj: u16, what: &str) -> (u32, &ZsPage) {
        if let Some(id) = id {
            if let Some(Some(zs)) = self.zspages.get(id as usize) {
                if obj < self.objs && self.is_allocated(id, obj) {
                    return (id, zs);
                }
            }
        }
        self.bad_handle(id, obj, what)
    }

    #[cold]
    #[inline(never)]
    #[track_caller]
    fn bad_handle(&self, id: Option<u32>, obj: u16, what: &str) -> ! {
        let size = self.size;
        match id {
            Some(id) if matches!(self.zspages.get(id as usize), Some(Some(_))) => {
                if obj >= self.objs {
                    panic!(
                        "zswap pool: {what} of a handle with slot {obj}, but the class (size {size}) has {} slots per zspage",
                        self.objs
                    )
                }
                panic!(
                    "zswap pool: {what} of a handle whose object is not allocated (double free or stale handle): zspage {id} slot {obj}, class size {size}"
                )
            }
            _ => panic!(
                "zswap pool: {what} of a handle whose zspage {id:?} (class size {size}) is not allocated"
            ),
        }
    }

    /// Frees slot `obj` of zspage `id`. Returns the zspage's memory if the
    /// zspage became empty and was removed (drop it after unlocking).
    #[inline]
    #[track_caller]
    pub fn free(&mut self, id: Option<u32>, obj: u16) -> Option<ZsMem> {
        let (id, _) = self.checked(id, obj, "free");
        self.release_slot(id, obj)
    }

    /// Marks slot `obj` of zspage `id` free.
    fn release_slot(&mut self, id: u32, obj: u16) -> Option<ZsMem> {
        self.bits[id as usize * self.words + obj as usize / 64] &= !(1 << (obj % 64));
        let zs = self.page_mut(id);
        zs.inuse -= 1;
        let (inuse, listed) = (zs.inuse, zs.group != ISOLATED);
        self.obj_used -= 1;
        if !listed {
            // Compaction frees or relists it when it is done.
            None
        } else if inuse == 0 {
            self.unlink(id);
            Some(self.remove_zspage(id))
        } else {
            self.regroup(id);
            None
        }
    }

    /// The caller's part of slot `obj` of zspage `id` (all but the tag),
    /// checked as for `free`.
    #[inline]
    #[track_caller]
    pub fn slot(&self, id: Option<u32>, obj: u16, what: &str) -> &[u8] {
        let (_, zs) = self.checked(id, obj, what);
        let at = obj as usize * self.size;
        &zs.mem[at..at + self.capacity()]
    }

    /// The first byte of slot `obj` of zspage `id`, allocated or not, or
    /// `None` if there is no such slot. Never panics: for cache warming
    /// only, where reading it is the point and its value is not.
    #[inline]
    pub fn peek_first_byte(&self, id: Option<u32>, obj: u16) -> Option<u8> {
        let zs = self.zspages.get(id? as usize)?.as_ref()?;
        (obj < self.objs).then(|| zs.mem[obj as usize * self.size])
    }

    /// The caller's part of slot `obj` of zspage `id`, mutable, checked as
    /// for `free`.
    #[inline]
    #[track_caller]
    pub fn slot_mut(&mut self, id: Option<u32>, obj: u16, what: &str) -> &mut [u8] {
        let (id, _) = self.checked(id, obj, what);
        let cap = self.capacity();
        &mut self.slot_of(id, obj)[..cap]
    }

    /// The whole slot `obj` of zspage `id`, unchecked beyond bounds.
    #[inline]
    fn slot_of(&mut self, id: u32, obj: u16) -> &mut [u8] {
        let size = self.size;
        let at = obj as usize * size;
        &mut self.page_mut(id).mem[at..at + size]
    }

    /// Allocates a slot as `alloc` does and copies `data` (at most the
    /// capacity) to its start. A new zspage takes its memory from `mem` if
    /// it holds some (which is then `None`).
    #[inline]
    pub fn alloc_write(
        &mut self,
        data: &[u8],
        tag: u64,
        mem: &mut Option<ZsMem>,
    ) -> Result<(u32, u16, bool), AllocError> {
        debug_assert!(data.len() <= self.capacity());
        let (id, obj, created) = self.alloc_in(tag, mem)?;
        self.slot_of(id, obj)[..data.len()].copy_from_slice(data);
        Ok((id, obj, created))
    }

    /// Zspages compaction could free: all but the fewest that would hold
    /// the objects (the kernel's `zs_can_compact`, in zspages).
    pub fn freeable(&self) -> usize {
        self.live - (self.obj_used as usize).div_ceil(self.objs as usize)
    }

    /// Compaction, step 1: sets aside the sparsest zspages whose objects fit
    /// in the free slots of the others, so that allocation stops using
    /// them. Returns how many were isolated.
    ///
    /// Picking the `k` sparsest both minimises the objects to move and
    /// maximises the room left in the rest, and the room suffices exactly
    /// when `k <= freeable()`, so this isolates `freeable()` zspages.
    pub fn isolate_sparse(&mut self) -> usize {
        debug_assert!(self.isolated.is_empty(), "compactions overlap");
        let k = self.freeable();
        if k == 0 {
            return 0;
        }
        let mut partial: Vec<(u16, u32)> = Vec::new();
        for g in 0..FULL {
            let mut id = self.heads[g as usize];
            while id != NONE {
                let zs = self.page(id);
                partial.push((zs.inuse, id));
                id = zs.next;
            }
        }
        partial.sort_unstable();
        debug_assert!(partial.len() >= k);
        for &(_, id) in &partial[..k] {
            self.unlink(id);
            self.page_mut(id).group = ISOLATED;
            self.isolated.push(id);
        }
        k
    }

    /// An incremental compaction's step 1: sets aside zspages from the
    /// sparsest fullness groups (the lowest group first, any zspage of a
    /// group: within 10% of the sparsest, found without a sort), at most
    /// `freeable()` of them, and stops once their objects reach `moves` (at
    /// least one zspage is taken). Returns how many were isolated.
    pub fn isolate_some(&mut self, moves: usize) -> usize {
        debug_assert!(self.isolated.is_empty(), "compactions overlap");
        let k = self.freeable();
        let mut taken = 0;
        let mut objects = 0;
        while self.isolated.len() < k {
            let mask = self.partial_mask;
            if mask == 0 {
                break;
            }
            let id = self.heads[mask.trailing_zeros() as usize];
            let inuse = self.page(id).inuse as usize;
            if taken > 0 && objects + inuse > moves {
                break;
            }
            self.unlink(id);
            self.page_mut(id).group = ISOLATED;
            self.isolated.push(id);
            taken += 1;
            objects += inuse;
        }
        taken
    }

    /// Calls `f(tag, zspage id, slot)` for every object in the isolated
    /// zspages.
    pub fn isolated_objects(&self, mut f: impl FnMut(u64, u32, u16)) {
        for &id in &self.isolated {
            let words = self.bitmap(id);
            for (w, &word) in words.iter().enumerate() {
                let mut bits = word;
                while bits != 0 {
                    let obj = (w * 64) as u16 + bits.trailing_zeros() as u16;
                    bits &= bits - 1;
                    if obj < self.objs {
                        f(self.tag_of(id, obj), id, obj);
                    }
                }
            }
        }
    }

    /// Compaction, step 2: if `(id, obj)` is an allocated object in an
    /// isolated zspage, moves it to the fullest listed zspage with room and
    /// returns its new place. Leaves it alone (returns `None`) if it is
    /// anywhere else, or if there is no room left (allocations since step 1
    /// took it); compaction then keeps its zspage.
    pub fn migrate(&mut self, id: Option<u32>, obj: u16) -> Option<(u32, u16)> {
        let src_id = id?;
        let src = self.zspages.get(src_id as usize)?.as_ref()?;
        if src.group != ISOLATED || obj >= self.objs {
            return None;
        }
        assert!(
            self.is_allocated(src_id, obj),
            "zswap pool: compact was shown a handle whose object is not allocated (stale handle): zspage {src_id} slot {obj}, class size {}",
            self.size
        );
        let dst_id = self.fullest_with_room()?;
        let dst_obj = self.take_slot(dst_id);
        let size = self.size;
        let (src, dst) = two_mut(&mut self.zspages, src_id as usize, dst_id as usize);
        let (s, d) = (obj as usize * size, dst_obj as usize * size);
        dst.mem[d..d + size].copy_from_slice(&src.mem[s..s + size]);
        let freed = self.release_slot(src_id, obj);
        debug_assert!(freed.is_none(), "isolated zspages are freed in step 3");
        Some((dst_id, dst_obj))
    }

    /// Whether `(id, obj)` is an allocated object in an isolated zspage.
    pub fn is_isolated_object(&self, id: Option<u32>, obj: u16) -> bool {
        let Some(id) = id else { return false };
        matches!(self.zspages.get(id as usize), Some(Some(zs)) if zs.group == ISOLATED)
            && obj < self.objs
            && self.is_allocated(id, obj)
    }

    /// The first `len` bytes and the tag of the object at `(id, obj)`, which
    /// `is_isolated_object` has vouched for.
    pub fn copy_out(&self, id: u32, obj: u16, len: usize) -> (Vec<u8>, u64) {
        let at = obj as usize * self.size;
        (
            self.page(id).mem[at..at + len].to_vec(),
            self.tag_of(id, obj),
        )
    }

    /// Frees slot `obj` of isolated zspage `id` after its object was moved
    /// to another class.
    pub fn free_isolated(&mut self, id: u32, obj: u16) {
        debug_assert_eq!(self.page(id).group, ISOLATED);
        let freed = self.release_slot(id, obj);
        debug_assert!(freed.is_none(), "isolated zspages are freed in step 3");
    }

    /// A cross-class step's step 1: sets aside one zspage of the sparsest
    /// fullness group. Returns whether the class had a partly used one.
    pub fn isolate_sparsest(&mut self) -> bool {
        debug_assert!(self.isolated.is_empty(), "compactions overlap");
        let mask = self.partial_mask;
        if mask == 0 {
            return false;
        }
        let id = self.heads[mask.trailing_zeros() as usize];
        self.unlink(id);
        self.page_mut(id).group = ISOLATED;
        self.isolated.push(id);
        true
    }

    /// Compaction, step 3: frees the isolated zspages that were emptied and
    /// lists the others again. Returns the zspages freed.
    pub fn finish_compaction(&mut self) -> usize {
        let mut freed = 0;
        for id in std::mem::take(&mut self.isolated) {
            let inuse = self.page(id).inuse;
            if inuse == 0 {
                drop(self.remove_zspage(id));
                freed += 1;
            } else {
                self.link(id, self.group_of(inuse));
            }
        }
        freed
    }

    pub fn stats(&self) -> StateStats {
        let mut fullness = [0usize; GROUPS];
        for (f, &c) in fullness.iter_mut().zip(&self.counts) {
            *f = c as usize;
        }
        for &id in &self.isolated {
            // An emptied isolated zspage counts as under 10% full until
            // compaction frees it.
            let inuse = self.page(id).inuse;
            fullness[self.group_of(inuse.max(1)) as usize] += 1;
        }
        StateStats {
            zspages: self.live,
            obj_used: self.obj_used as usize,
            fullness,
        }
    }
}

/// Two distinct zspages of one table, the first shared, the second mutable.
fn two_mut(table: &mut [Option<ZsPage>], a: usize, b: usize) -> (&ZsPage, &mut ZsPage) {
    assert_ne!(a, b);
    let (src, dst) = if a < b {
        let (lo, hi) = table.split_at_mut(b);
        (&lo[a], &mut hi[0])
    } else {
        let (lo, hi) = table.split_at_mut(a);
        (&hi[0], &mut lo[b])
    };
    (
        src.as_ref().expect("source zspage exists"),
        dst.as_mut().expect("destination zspage exists"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::class::ClassTable;

    #[test]
    fn group_by_multiplication_is_exact_for_every_class() {
        for shift in 12..=16 {
            let page = 1usize << shift;
            for spec in ClassTable::new(page).specs() {
                let objs = spec.objs_per_zspage;
                let st = ClassState::new(spec.size as usize, objs, page);
                for inuse in 1..=objs {
                    assert_eq!(
                        st.group_of(inuse),
                        fullness_group(inuse, objs),
                        "{inuse}/{objs}"
                    );
                }
            }
        }
        assert_eq!(fullness_group(1, 15), 0);
        assert_eq!(fullness_group(2, 15), 1);
        assert_eq!(fullness_group(14, 15), 9);
        assert_eq!(fullness_group(15, 15), FULL);
    }

    #[test]
    fn bitmap_never_hands_out_slots_past_the_last() {
        // 15 slots: one word whose top 49 bits are set from the start.
        let mut st = ClassState::new(2176, 15, 8 * 4096);
        let got: Vec<u16> = (0..15).map(|_| st.alloc(NO_OWNER).unwrap().1).collect();
        assert_eq!(got, (0..15).collect::<Vec<u16>>());
        assert_eq!(st.live, 1);
        let (id, obj, created) = st.alloc(NO_OWNER).unwrap();
        assert_eq!((id, obj, created), (1, 0, true));
        // Freeing a middle slot makes it the next one handed out.
        assert!(st.free(Some(0), 7).is_none());
        assert_eq!(st.alloc(NO_OWNER).unwrap(), (0, 7, false));
    }
}
