//! The index of one swap area: a red-black tree keyed by swap offset, whose
//! nodes are also the entries of the area's LRU.
//!
//! zswap finds a stored page by `(swap type, offset)`. As in the 2013 patch
//! set, each swap type has its own tree, so two areas never contend on one
//! lock, and the tree gives O(log n) lookup with a worst case that a hash
//! table's resizing does not have. (Kernel 6.10 moved to an xarray; this
//! project keeps the tree on purpose, and keeps it lean.)
//!
//! Lean means the whole entry — tree links, key, LRU links and the caller's
//! 64-bit value — is 32 bytes, half of the kernel's `struct zswap_entry`:
//!
//! * nodes live in fixed-size chunks per area (an arena that never moves a
//!   node) and link to each other by 32-bit slot numbers, not pointers;
//! * the node colour and a 3-bit caller tag ride in the top bits of the parent
//!   link, which is why an area holds at most [`MAX_ENTRIES`] entries;
//! * keys are `u32` offsets: an area has at most 2^32 - 1 slots (16 TiB of
//!   4 KiB pages), far beyond what a RAM pool holds.
//!
//! Freed slots are kept on a free list threaded through their LRU links and
//! reused first, so a churning area does not grow. The trade-off: slot
//! numbers are stable while an entry lives (the LRU and callers rely on it),
//! so the arena never shrinks below its highest live slot until the area is
//! emptied by [`Index::drain`].

use crate::lru::{Lru, LruLink, LruSlots, NIL};

/// A slot number: stable for as long as its entry lives.
pub type EntryId = u32;

/// Bits of the parent link that hold the parent's slot number. 28 bits leave
/// the top four for the colour and the caller's tag.
const PARENT_BITS: u32 = 28;
const PARENT_MASK: u32 = (1 << PARENT_BITS) - 1;
/// The parent field of the root.
const PARENT_NONE: u32 = PARENT_MASK;
const TAG_SHIFT: u32 = PARENT_BITS;
const TAG_MASK: u32 = 0b111 << TAG_SHIFT;
const RED: u32 = 1 << 31;
/// Marks a free slot in its `lru.prev` (live slots hold a slot number or NIL there).
const FREE: u32 = u32::MAX - 1;
/// The `parent_tag` of an LRU marker: red, tag 7, no parent. No tree node
/// looks like this between operations (the root, the only node without a
/// parent, is black).
const MARKER: u32 = u32::MAX;

/// The most entries one index holds: every slot number must fit the 28-bit
/// parent field and differ from `PARENT_NONE`.
pub const MAX_ENTRIES: usize = PARENT_NONE as usize;

/// Walks [`Index::get_many`] takes in lockstep: enough misses in flight to
/// overlap most of their latency, few enough that the walk state stays in
/// a few registers.
pub const LOCKSTEP: usize = 8;

/// Largest caller tag: tags are 3 bits.
pub const MAX_TAG: u8 = 7;

/// One entry. Invariants: a live node's `left`/`right` are `NIL` or live
/// slots with smaller/greater keys; `parent_tag & PARENT_MASK` is its parent's
/// slot or `PARENT_NONE` for the root; red nodes have black children; every
/// path from a node to a `NIL` passes the same number of black nodes.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
struct Node {
    left: u32,
    right: u32,
    /// Parent slot (low 28 bits), caller tag (bits 28..31), red (bit 31).
    parent_tag: u32,
    /// The swap offset.
    key: u32,
    lru: LruLink,
    /// The caller's value (for zswap: a packed pool handle and length, or the
    /// fill word of a same-filled page).
    value: u64,
}

const _: () = assert!(std::mem::size_of::<Node>() == 32);

impl Node {
    /// The left child if `left`, else the right: every descent turns here,
    /// on a comparison rather than a branch (`Index::find` says why).
    #[inline]
    fn child(&self, left: bool) -> u32 {
        if left {
            self.left
        } else {
            self.right
        }
    }
}

/// What the index holds for one offset, as handed to the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryRef {
    /// The entry's slot, stable while it lives.
    pub id: EntryId,
    /// The swap offset it is stored at.
    pub key: u32,
    /// The caller's 64-bit value (for zswap: packed pool handle and length,
    /// or a same-filled page's fill word).
    pub value: u64,
    /// The caller's 3-bit tag, 0..=[`MAX_TAG`] (for zswap: the compressor id,
    /// or 7 for a same-filled page).
    pub tag: u8,
}

/// The index is full: [`MAX_ENTRIES`] entries are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexFull;

impl std::fmt::Display for IndexFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "index full: at most {MAX_ENTRIES} entries per swap area")
    }
}

impl std::error::Error for IndexFull {}

/// Red-black tree plus LRU over one arena of 32-byte nodes.
///
/// Every tree entry may be on the LRU or not (same-filled pages, which cost
/// the pool nothing, are kept off it so that writeback never wastes a walk
/// on them). The LRU may also hold *markers*: slots that are not in the tree
/// and only mark a moment in the LRU's history, so that "every entry not
/// used since then" is the stretch of the LRU older than the marker. The
/// background shrinker uses them to find entries older than a given age
/// without a timestamp in every entry.
#[derive(Default)]
pub struct Index {
    nodes: Arena,
    root: u32,
    /// Head of the free-slot list, chained through `lru.next`.
    free: u32,
    /// Tree entries.
    len: u32,
    /// Marker slots (on the LRU, not in the tree).
    markers: u32,
    lru: Lru,
}

/// The nodes of an index: fixed-size chunks that never move once
/// allocated. Growing a `Vec` of nodes would copy them all and hold two
/// copies at its peak; chunks cost exactly 32 bytes per slot plus at most
/// one partly used chunk, and an id still finds its node in two steps.
/// A chunk is a boxed array, not a slice: its table entry is one pointer,
/// and a masked index needs no bounds check, so each step of a tree walk
/// is one load of the chunk pointer (the table stays in L1) and one of the
/// node.
#[derive(Default)]
struct Arena {
    chunks: Vec<Box<[Node; CHUNK_SLOTS]>>,
    len: usize,
}

/// Slots per chunk: 128 KiB of nodes, small next to any pool that needs
/// many of them, and a shift rather than a division to find one.
const CHUNK_SHIFT: u32 = 12;
const CHUNK_SLOTS: usize = 1 << CHUNK_SHIFT;

impl Arena {
    fn len(&self) -> usize {
        self.len
    }

    fn memory_bytes(&self) -> usize {
        self.chunks.len() * CHUNK_SLOTS * std::mem::size_of::<Node>()
    }

    fn push(&mut self, node: Node) -> Result<(), IndexFull> {
        if self.len == self.chunks.len() * CHUNK_SLOTS {
            self.chunks.try_reserve(1).map_err(|_| IndexFull)?;
            let mut chunk = Vec::new();
            chunk
                .try_reserve_exact(CHUNK_SLOTS)
                .map_err(|_| IndexFull)?;
            chunk.resize(CHUNK_SLOTS, node);
            let chunk: Box<[Node; CHUNK_SLOTS]> = chunk
                .into_boxed_slice()
                .try_into()
                .expect("a chunk holds CHUNK_SLOTS nodes");
            self.chunks.push(chunk);
        }
        let id = self.len;
        self.len += 1;
        self[id] = node;
        Ok(())
    }
}

impl std::ops::Index<usize> for Arena {
    type Output = Node;

    #[inline]
    fn index(&self, id: usize) -> &Node {
        debug_assert!(id < self.len);
        &self.chunks[id >> CHUNK_SHIFT][id & (CHUNK_SLOTS - 1)]
    }
}

impl std::ops::IndexMut<usize> for Arena {
    #[inline]
    fn index_mut(&mut self, id: usize) -> &mut Node {
        debug_assert!(id < self.len);
        &mut self.chunks[id >> CHUNK_SHIFT][id & (CHUNK_SLOTS - 1)]
    }
}

impl LruSlots for Arena {
    fn link(&self, id: u32) -> &LruLink {
        &self[id as usize].lru
    }
    fn link_mut(&mut self, id: u32) -> &mut LruLink {
        &mut self[id as usize].lru
    }
}

impl Index {
    /// An empty index; it allocates nothing until the first insert.
    pub fn new() -> Self {
        Index {
            nodes: Arena::default(),
            root: NIL,
            free: NIL,
            len: 0,
            markers: 0,
            lru: Lru::new(),
        }
    }

    /// Entries stored.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether no entry is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of node memory held (live, free and spare slots), for the
    /// metadata figures.
    pub fn memory_bytes(&self) -> usize {
        self.nodes.memory_bytes()
    }

    /// Size of one entry's node in bytes.
    pub const NODE_BYTES: usize = std::mem::size_of::<Node>();

    // --- node field helpers -------------------------------------------------

    #[inline]
    fn left(&self, id: u32) -> u32 {
        self.nodes[id as usize].left
    }
    #[inline]
    fn right(&self, id: u32) -> u32 {
        self.nodes[id as usize].right
    }
    #[inline]
    fn parent(&self, id: u32) -> u32 {
        let p = self.nodes[id as usize].parent_tag & PARENT_MASK;
        if p == PARENT_NONE {
            NIL
        } else {
            p
        }
    }
    #[inline]
    fn set_parent(&mut self, id: u32, parent: u32) {
        let p = if parent == NIL { PARENT_NONE } else { parent };
        let n = &mut self.nodes[id as usize];
        n.parent_tag = (n.parent_tag & !PARENT_MASK) | p;
    }
    #[inline]
    fn is_red(&self, id: u32) -> bool {
        id != NIL && self.nodes[id as usize].parent_tag & RED != 0
    }
    #[inline]
    fn set_red(&mut self, id: u32, red: bool) {
        let n = &mut self.nodes[id as usize];
        if red {
            n.parent_tag |= RED;
        } else {
            n.parent_tag &= !RED;
        }
    }
    #[inline]
    fn tag(&self, id: u32) -> u8 {
        ((self.nodes[id as usize].parent_tag & TAG_MASK) >> TAG_SHIFT) as u8
    }
    #[inline]
    fn entry(&self, id: u32) -> EntryRef {
        let n = &self.nodes[id as usize];
        EntryRef {
            id,
            key: n.key,
            value: n.value,
            tag: self.tag(id),
        }
    }

    // --- lookup ---------------------------------------------------------------

    /// The entry stored at `key`.
    #[inline]
    pub fn get(&self, key: u32) -> Option<EntryRef> {
        let id = self.find(key);
        (id != NIL).then(|| self.entry(id))
    }

    /// `get` of each of `keys` into `found`, the walks taken in lockstep:
    /// every walk's next node is loaded before any walk goes a level
    /// deeper, so on a tree larger than the caches the misses of
    /// [`LOCKSTEP`] walks overlap instead of queueing one after another.
    /// `keys` and `found` have the same length.
    pub fn get_many(&self, keys: &[u32], found: &mut [Option<EntryRef>]) {
        assert_eq!(keys.len(), found.len(), "one result per key");
        for (keys, found) in keys.chunks(LOCKSTEP).zip(found.chunks_mut(LOCKSTEP)) {
            let mut at = [NIL; LOCKSTEP];
            at[..keys.len()].fill(self.root);
            let mut hit = [NIL; LOCKSTEP];
            let mut walking = true;
            while walking {
                walking = false;
                for ((&key, at), hit) in keys.iter().zip(&mut at).zip(&mut hit) {
                    if *at == NIL {
                        continue;
                    }
                    walking = true;
                    let n = &self.nodes[*at as usize];
                    if key == n.key {
                        *hit = *at;
                        *at = NIL;
                    } else {
                        *at = n.child(key < n.key);
                    }
                }
            }
            for (found, &id) in found.iter_mut().zip(&hit) {
                *found = (id != NIL).then(|| self.entry(id));
            }
        }
    }

    /// The walk down to `key`'s slot, `NIL` if absent. The turn at each
    /// node is computed from the comparison, not branched on (LLVM picks
    /// the child field by a `setcc` index): swap offsets come in no order a
    /// branch predictor can learn, and a mispredicted turn throws away the
    /// load of the next node. The one branch left, on equality, is taken
    /// once per walk. Back-to-back random lookups, a fresh order each
    /// round: 60 vs 79 ns at 4 Ki entries, about 230 vs 450 ns at 256 Ki,
    /// against a three-way `match` on `cmp`, which LLVM compiles to
    /// branches; without mispredicts the core runs ahead into the next
    /// walk and overlaps its misses (a batch's walk ahead, insertions). A
    /// lone walk between two decompressions gains little.
    fn find(&self, key: u32) -> u32 {
        let mut id = self.root;
        while id != NIL {
            let n = &self.nodes[id as usize];
            if key == n.key {
                return id;
            }
            id = n.child(key < n.key);
        }
        NIL
    }

    /// The entry in slot `id`, which must be live.
    pub fn entry_at(&self, id: EntryId) -> EntryRef {
        debug_assert!(self.is_live(id), "slot {id} is not live");
        self.entry(id)
    }

    fn is_live(&self, id: u32) -> bool {
        (id as usize) < self.nodes.len()
            && self.nodes[id as usize].lru.prev != FREE
            && !self.is_marker(id)
    }

    /// Whether slot `id` is an LRU marker.
    pub fn is_marker(&self, id: EntryId) -> bool {
        self.nodes[id as usize].parent_tag == MARKER && self.nodes[id as usize].lru.prev != FREE
    }

    /// Whether the live entry or marker in slot `id` is on the LRU.
    pub fn on_lru(&self, id: EntryId) -> bool {
        self.nodes[id as usize].lru != LruLink::UNLINKED || self.lru.newest() == Some(id)
    }

    /// Replace the value and tag of the live entry in slot `id`.
    pub fn set_value(&mut self, id: EntryId, value: u64, tag: u8) {
        debug_assert!(self.is_live(id), "slot {id} is not live");
        debug_assert!(tag <= MAX_TAG);
        let n = &mut self.nodes[id as usize];
        n.value = value;
        n.parent_tag = (n.parent_tag & !TAG_MASK) | (u32::from(tag) << TAG_SHIFT);
    }

    // --- LRU ------------------------------------------------------------------

    /// The entry that has gone longest without being stored or touched
    /// (markers skipped).
    pub fn lru_oldest(&self) -> Option<EntryRef> {
        self.lru_oldest_where(None, |_| true)
    }

    /// The oldest entry on the LRU that `wanted` accepts, walking from the
    /// oldest end past markers; with `until`, a marker, the walk stops
    /// there (only entries older than it count). Writeback's choice of a
    /// victim: the oldest entry not under I/O.
    pub fn lru_oldest_where(
        &self,
        until: Option<EntryId>,
        mut wanted: impl FnMut(&EntryRef) -> bool,
    ) -> Option<EntryRef> {
        let mut id = self.lru.oldest();
        while let Some(i) = id {
            if Some(i) == until {
                return None;
            }
            if !self.is_marker(i) {
                let e = self.entry(i);
                if wanted(&e) {
                    return Some(e);
                }
            }
            id = self.lru.newer(&self.nodes, i);
        }
        None
    }

    /// The oldest slot on the LRU, entry or marker.
    pub fn lru_oldest_slot(&self) -> Option<EntryId> {
        self.lru.oldest()
    }

    /// The slot one step newer than `id` on the LRU, entry or marker.
    pub fn lru_newer_slot(&self, id: EntryId) -> Option<EntryId> {
        self.lru.newer(&self.nodes, id)
    }

    /// Entries and markers on the LRU.
    pub fn lru_len(&self) -> usize {
        self.lru.len()
    }

    /// Mark the entry in slot `id` as just used (no-op if it is kept off
    /// the LRU).
    pub fn touch(&mut self, id: EntryId) {
        debug_assert!(self.is_live(id), "slot {id} is not live");
        if self.on_lru(id) {
            self.lru.touch(&mut self.nodes, id);
        }
    }

    /// Read the LRU neighbours of the entry in slot `id`, so that a
    /// `touch` soon after finds their lines in cache; the result means
    /// nothing (feed it to `black_box`).
    pub fn warm_lru(&self, id: EntryId) -> u32 {
        let link = self.nodes[id as usize].lru;
        let mut sum = 0u32;
        for n in [link.prev, link.next] {
            if n < FREE {
                sum = sum.wrapping_add(self.nodes[n as usize].lru.prev);
            }
        }
        sum
    }

    /// Put a marker at the newest end of the LRU.
    pub fn push_marker(&mut self) -> Result<EntryId, IndexFull> {
        let id = self.alloc_slot()?;
        self.nodes[id as usize] = Node {
            left: NIL,
            right: NIL,
            parent_tag: MARKER,
            key: 0,
            lru: LruLink::UNLINKED,
            value: 0,
        };
        self.lru.push_newest(&mut self.nodes, id);
        self.markers += 1;
        Ok(id)
    }

    /// Take the marker in slot `id` off the LRU and free its slot.
    pub fn remove_marker(&mut self, id: EntryId) {
        debug_assert!(self.is_marker(id), "slot {id} is not a marker");
        self.lru.unlink(&mut self.nodes, id);
        self.free_slot(id);
        self.markers -= 1;
    }

    fn free_slot(&mut self, id: u32) {
        let n = &mut self.nodes[id as usize];
        n.lru = LruLink {
            prev: FREE,
            next: self.free,
        };
        n.left = NIL;
        n.right = NIL;
        n.parent_tag = PARENT_NONE;
        self.free = id;
    }

    // --- insert -----------------------------------------------------------------

    /// Store `value` with `tag` at `key`, as the newest entry of the LRU.
    /// Returns the entry it replaced, if `key` held one (its slot is reused).
    pub fn insert(&mut self, key: u32, value: u64, tag: u8) -> Result<Option<EntryRef>, IndexFull> {
        self.insert_with(key, value, tag, true)
    }

    /// Store `value` with `tag` at `key`, as the newest entry of the LRU if
    /// `on_lru`, off the LRU otherwise. Returns the entry it replaced.
    pub fn insert_with(
        &mut self,
        key: u32,
        value: u64,
        tag: u8,
        on_lru: bool,
    ) -> Result<Option<EntryRef>, IndexFull> {
        debug_assert!(tag <= MAX_TAG);
        let mut parent = NIL;
        let mut id = self.root;
        let mut go_left = false;
        while id != NIL {
            let n = &self.nodes[id as usize];
            if key == n.key {
                let old = self.entry(id);
                self.set_value(id, value, tag);
                match (self.on_lru(id), on_lru) {
                    (true, true) => self.lru.touch(&mut self.nodes, id),
                    (true, false) => self.lru.unlink(&mut self.nodes, id),
                    (false, true) => self.lru.push_newest(&mut self.nodes, id),
                    (false, false) => {}
                }
                return Ok(Some(old));
            }
            parent = id;
            go_left = key < n.key;
            id = n.child(go_left);
        }
        let id = self.alloc_slot()?;
        self.nodes[id as usize] = Node {
            left: NIL,
            right: NIL,
            parent_tag: RED | (u32::from(tag) << TAG_SHIFT) | PARENT_NONE,
            key,
            lru: LruLink::UNLINKED,
            value,
        };
        self.set_parent(id, parent);
        if parent == NIL {
            self.root = id;
        } else if go_left {
            self.nodes[parent as usize].left = id;
        } else {
            self.nodes[parent as usize].right = id;
        }
        self.insert_fixup(id);
        if on_lru {
            self.lru.push_newest(&mut self.nodes, id);
        }
        self.len += 1;
        Ok(None)
    }

    fn alloc_slot(&mut self) -> Result<u32, IndexFull> {
        if self.free != NIL {
            let id = self.free;
            self.free = self.nodes[id as usize].lru.next;
            return Ok(id);
        }
        if self.nodes.len() >= MAX_ENTRIES {
            return Err(IndexFull);
        }
        self.nodes.push(Node {
            left: NIL,
            right: NIL,
            parent_tag: PARENT_NONE,
            key: 0,
            lru: LruLink::UNLINKED,
            value: 0,
        })?;
        Ok((self.nodes.len() - 1) as u32)
    }

    fn insert_fixup(&mut self, mut z: u32) {
        while self.is_red(self.parent(z)) {
            let p = self.parent(z);
            // A red node is never the root, so p has a parent.
            let g = self.parent(p);
            if p == self.left(g) {
                let uncle = self.right(g);
                if self.is_red(uncle) {
                    self.set_red(p, false);
                    self.set_red(uncle, false);
                    self.set_red(g, true);
                    z = g;
                    continue;
                }
                if z == self.right(p) {
                    z = p;
                    self.rotate_left(z);
                }
                let p = self.parent(z);
                self.set_red(p, false);
                self.set_red(g, true);
                self.rotate_right(g);
            } else {
                let uncle = self.left(g);
                if self.is_red(uncle) {
                    self.set_red(p, false);
                    self.set_red(uncle, false);
                    self.set_red(g, true);
                    z = g;
                    continue;
                }
                if z == self.left(p) {
                    z = p;
                    self.rotate_right(z);
                }
                let p = self.parent(z);
                self.set_red(p, false);
                self.set_red(g, true);
                self.rotate_left(g);
            }
        }
        let root = self.root;
        self.set_red(root, false);
    }

    /// Make `new` take `old`'s place under `old`'s parent (or as root).
    fn replace_child(&mut self, parent: u32, old: u32, new: u32) {
        if parent == NIL {
            self.root = new;
        } else if self.left(parent) == old {
            self.nodes[parent as usize].left = new;
        } else {
            self.nodes[parent as usize].right = new;
        }
    }

    fn rotate_left(&mut self, x: u32) {
        let y = self.right(x);
        let y_left = self.left(y);
        self.nodes[x as usize].right = y_left;
        if y_left != NIL {
            self.set_parent(y_left, x);
        }
        let xp = self.parent(x);
        self.set_parent(y, xp);
        self.replace_child(xp, x, y);
        self.nodes[y as usize].left = x;
        self.set_parent(x, y);
    }

    fn rotate_right(&mut self, x: u32) {
        let y = self.left(x);
        let y_right = self.right(y);
        self.nodes[x as usize].left = y_right;
        if y_right != NIL {
            self.set_parent(y_right, x);
        }
        let xp = self.parent(x);
        self.set_parent(y, xp);
        self.replace_child(xp, x, y);
        self.nodes[y as usize].right = x;
        self.set_parent(x, y);
    }

    // --- erase ------------------------------------------------------------------

    /// Remove the entry at `key`, returning it.
    pub fn remove(&mut self, key: u32) -> Option<EntryRef> {
        let id = self.find(key);
        (id != NIL).then(|| self.remove_at(id))
    }

    /// Remove the live entry in slot `id`, returning it. Its slot is freed.
    pub fn remove_at(&mut self, z: EntryId) -> EntryRef {
        debug_assert!(self.is_live(z), "slot {z} is not live");
        let removed = self.entry(z);
        // y: the node that leaves its place in the tree (z itself, or z's
        // successor, which then moves into z's place so that slot numbers of
        // other entries never change).
        let y = if self.left(z) == NIL || self.right(z) == NIL {
            z
        } else {
            let mut s = self.right(z);
            while self.left(s) != NIL {
                s = self.left(s);
            }
            s
        };
        let x = if self.left(y) != NIL {
            self.left(y)
        } else {
            self.right(y)
        };
        let mut x_parent = self.parent(y);
        if x != NIL {
            self.set_parent(x, x_parent);
        }
        self.replace_child(x_parent, y, x);
        let y_was_black = !self.is_red(y);
        if y != z {
            if x_parent == z {
                x_parent = y;
            }
            let (zl, zr, zp) = (self.left(z), self.right(z), self.parent(z));
            let z_red = self.is_red(z);
            self.nodes[y as usize].left = zl;
            self.nodes[y as usize].right = zr;
            self.set_parent(y, zp);
            self.set_red(y, z_red);
            if zl != NIL {
                self.set_parent(zl, y);
            }
            if zr != NIL {
                self.set_parent(zr, y);
            }
            self.replace_child(zp, z, y);
        }
        if y_was_black {
            self.erase_fixup(x, x_parent);
        }
        if self.on_lru(z) {
            self.lru.unlink(&mut self.nodes, z);
        }
        self.free_slot(z);
        self.len -= 1;
        removed
    }

    fn erase_fixup(&mut self, mut x: u32, mut xp: u32) {
        while x != self.root && !self.is_red(x) {
            if x == self.left(xp) {
                let mut w = self.right(xp);
                if self.is_red(w) {
                    self.set_red(w, false);
                    self.set_red(xp, true);
                    self.rotate_left(xp);
                    w = self.right(xp);
                }
                if !self.is_red(self.left(w)) && !self.is_red(self.right(w)) {
                    self.set_red(w, true);
                    x = xp;
                    xp = self.parent(x);
                } else {
                    if !self.is_red(self.right(w)) {
                        let wl = self.left(w);
                        self.set_red(wl, false);
                        self.set_red(w, true);
                        self.rotate_right(w);
                        w = self.right(xp);
                    }
                    let xp_red = self.is_red(xp);
                    self.set_red(w, xp_red);
                    self.set_red(xp, false);
                    let wr = self.right(w);
                    self.set_red(wr, false);
                    self.rotate_left(xp);
                    x = self.root;
                    xp = NIL;
                }
            } else {
                let mut w = self.left(xp);
                if self.is_red(w) {
                    self.set_red(w, false);
                    self.set_red(xp, true);
                    self.rotate_right(xp);
                    w = self.left(xp);
                }
                if !self.is_red(self.left(w)) && !self.is_red(self.right(w)) {
                    self.set_red(w, true);
                    x = xp;
                    xp = self.parent(x);
                } else {
                    if !self.is_red(self.left(w)) {
                        let wr = self.right(w);
                        self.set_red(wr, false);
                        self.set_red(w, true);
                        self.rotate_left(w);
                        w = self.left(xp);
                    }
                    let xp_red = self.is_red(xp);
                    self.set_red(w, xp_red);
                    self.set_red(xp, false);
                    let wl = self.left(w);
                    self.set_red(wl, false);
                    self.rotate_right(xp);
                    x = self.root;
                    xp = NIL;
                }
            }
        }
        if x != NIL {
            self.set_red(x, false);
        }
    }

    // --- walks ------------------------------------------------------------------

    /// Every entry in key order.
    pub fn iter(&self) -> Iter<'_> {
        let mut it = Iter {
            index: self,
            stack: Vec::new(),
        };
        it.push_left(self.root);
        it
    }

    /// Visit every entry's value in slot order (not key order), to rewrite
    /// values in place; used by pool compaction, which moves objects.
    pub fn for_each_value_mut(&mut self, mut f: impl FnMut(u32, &mut u64, u8)) {
        for id in 0..self.nodes.len() {
            let n = &mut self.nodes[id];
            if n.lru.prev != FREE && n.parent_tag != MARKER {
                let tag = ((n.parent_tag & TAG_MASK) >> TAG_SHIFT) as u8;
                f(n.key, &mut n.value, tag);
            }
        }
    }

    /// Remove every entry, handing each to `f`, and give back the arena.
    pub fn drain(&mut self, mut f: impl FnMut(EntryRef)) {
        for id in 0..self.nodes.len() as u32 {
            if self.is_live(id) {
                f(self.entry(id));
            }
        }
        *self = Index::new();
    }

    /// Check every invariant of the tree, the LRU and the free list.
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.is_red(self.root) {
            return Err("root is red".into());
        }
        if self.root != NIL && self.parent(self.root) != NIL {
            return Err("root has a parent".into());
        }
        let mut count = 0u32;
        self.check_subtree(self.root, None, None, &mut count)?;
        if count != self.len {
            return Err(format!("tree holds {count} nodes but len is {}", self.len));
        }
        self.lru.check(&self.nodes)?;
        let mut on_lru = 0usize;
        let mut markers = 0usize;
        let mut id = self.lru.oldest();
        while let Some(i) = id {
            if self.is_marker(i) {
                markers += 1;
            } else if !self.is_live(i) {
                return Err(format!(
                    "LRU holds slot {i}, which is neither an entry nor a marker"
                ));
            }
            on_lru += 1;
            id = self.lru.newer(&self.nodes, i);
        }
        if markers != self.markers as usize {
            return Err(format!(
                "LRU holds {markers} markers but the count is {}",
                self.markers
            ));
        }
        if on_lru > self.len as usize + markers {
            return Err(format!(
                "LRU holds {on_lru} slots, more than {} entries",
                self.len
            ));
        }
        let mut free = 0usize;
        let mut id = self.free;
        while id != NIL {
            if self.nodes[id as usize].lru.prev != FREE {
                return Err(format!("slot {id} is on the free list but not marked free"));
            }
            free += 1;
            if free > self.nodes.len() {
                return Err("free list loops".into());
            }
            id = self.nodes[id as usize].lru.next;
        }
        if free + self.len as usize + self.markers as usize != self.nodes.len() {
            return Err(format!(
                "{free} free + {} live slots != {} slots",
                self.len,
                self.nodes.len()
            ));
        }
        Ok(())
    }

    /// Returns the black height of the subtree at `id`.
    fn check_subtree(
        &self,
        id: u32,
        lo: Option<u32>,
        hi: Option<u32>,
        count: &mut u32,
    ) -> Result<u32, String> {
        if id == NIL {
            return Ok(1);
        }
        if !self.is_live(id) {
            return Err(format!("slot {id} is in the tree but free"));
        }
        *count += 1;
        if *count > self.len {
            return Err("tree has more nodes than len (a cycle?)".into());
        }
        let key = self.nodes[id as usize].key;
        if lo.is_some_and(|lo| key <= lo) || hi.is_some_and(|hi| key >= hi) {
            return Err(format!("key {key} at slot {id} out of order"));
        }
        let (l, r) = (self.left(id), self.right(id));
        for child in [l, r] {
            if child != NIL && self.parent(child) != id {
                return Err(format!("slot {child}'s parent is not {id}"));
            }
        }
        if self.is_red(id) && (self.is_red(l) || self.is_red(r)) {
            return Err(format!("red slot {id} has a red child"));
        }
        let lh = self.check_subtree(l, lo, Some(key), count)?;
        let rh = self.check_subtree(r, Some(key), hi, count)?;
        if lh != rh {
            return Err(format!(
                "black heights differ under slot {id}: {lh} vs {rh}"
            ));
        }
        Ok(lh + u32::from(!self.is_red(id)))
    }
}

/// In-order walk over an [`Index`].
pub struct Iter<'a> {
    index: &'a Index,
    stack: Vec<u32>,
}

impl Iter<'_> {
    fn push_left(&mut self, mut id: u32) {
        while id != NIL {
            self.stack.push(id);
            id = self.index.left(id);
        }
    }
}

impl Iterator for Iter<'_> {
    type Item = EntryRef;

    fn next(&mut self) -> Option<EntryRef> {
        let id = self.stack.pop()?;
        self.push_left(self.index.right(id));
        Some(self.index.entry(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_is_32_bytes() {
        assert_eq!(Index::NODE_BYTES, 32);
    }

    #[test]
    fn warm_lru_reads_neighbours_at_the_ends_and_off_the_list() {
        let mut ix = Index::new();
        let id = |ix: &Index, k: u32| ix.get(k).unwrap().id;
        ix.insert(1, 0, 0).unwrap();
        // The only entry: no neighbours, nothing read.
        assert_eq!(ix.warm_lru(id(&ix, 1)), 0);
        ix.insert(2, 0, 0).unwrap();
        ix.push_marker().unwrap();
        ix.insert(3, 0, 0).unwrap();
        ix.insert_with(4, 0, 0, false).unwrap();
        // Oldest, next to a marker, newest, and off the LRU: every
        // neighbour read is in bounds, and what is read is their links.
        for k in 1..=4 {
            let link = ix.nodes[id(&ix, k) as usize].lru;
            let expect = [link.prev, link.next]
                .into_iter()
                .filter(|&n| n < FREE)
                .fold(0u32, |s, n| s.wrapping_add(ix.nodes[n as usize].lru.prev));
            assert_eq!(ix.warm_lru(id(&ix, k)), expect, "key {k}");
        }
    }

    #[test]
    fn insert_replace_remove() {
        let mut ix = Index::new();
        for k in [5u32, 3, 8, 1, 4, 7, 9, 2, 6] {
            assert_eq!(
                ix.insert(k, u64::from(k) * 10, (k % 8) as u8).unwrap(),
                None
            );
            ix.check_invariants().unwrap();
        }
        let old = ix.insert(4, 99, 1).unwrap().unwrap();
        assert_eq!((old.key, old.value, old.tag), (4, 40, 4));
        assert_eq!(ix.get(4).map(|e| (e.value, e.tag)), Some((99, 1)));
        assert_eq!(ix.len(), 9);
        let keys: Vec<u32> = ix.iter().map(|e| e.key).collect();
        assert_eq!(keys, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
        // LRU: 4 was replaced last, so it is the newest; 5 the oldest.
        assert_eq!(ix.lru_oldest().unwrap().key, 5);
        for k in [5u32, 1, 9, 4] {
            assert_eq!(ix.remove(k).unwrap().key, k);
            assert_eq!(ix.remove(k), None);
            ix.check_invariants().unwrap();
        }
        assert_eq!(ix.lru_oldest().unwrap().key, 3);
        // Freed slots are reused before the arena grows.
        let slots = ix.nodes.len();
        ix.insert(100, 0, 0).unwrap();
        assert_eq!(ix.nodes.len(), slots);
        ix.check_invariants().unwrap();
    }

    #[test]
    fn ascending_and_descending_runs_stay_balanced() {
        let mut ix = Index::new();
        for k in 0..10_000u32 {
            ix.insert(k, 0, 0).unwrap();
        }
        for k in (10_000..20_000u32).rev() {
            ix.insert(k, 0, 0).unwrap();
        }
        ix.check_invariants().unwrap();
        // A red-black tree of n nodes is at most 2*log2(n+1) deep.
        fn depth(ix: &Index, id: u32) -> u32 {
            if id == NIL {
                0
            } else {
                1 + depth(ix, ix.left(id)).max(depth(ix, ix.right(id)))
            }
        }
        let d = depth(&ix, ix.root);
        assert!(d <= 2 * 15, "depth {d} for 20000 nodes");
        for k in (0..20_000u32).step_by(3) {
            ix.remove(k).unwrap();
        }
        ix.check_invariants().unwrap();
    }

    #[test]
    fn drain_hands_back_everything() {
        let mut ix = Index::new();
        for k in 0..100u32 {
            ix.insert(k, u64::from(k), 0).unwrap();
        }
        ix.remove(50);
        let mut seen = Vec::new();
        ix.drain(|e| seen.push(e.value));
        seen.sort_unstable();
        assert_eq!(seen.len(), 99);
        assert!(!seen.contains(&50));
        assert!(ix.is_empty());
        assert_eq!(ix.memory_bytes(), 0);
        ix.check_invariants().unwrap();
    }
}
