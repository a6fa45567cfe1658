//! Handles: where an object lives, packed in the low 48 bits of a `u64`.
//!
//! ```text
//!  63        48 47      40 39            26 25                    0
//! +------------+----------+----------------+-----------------------+
//! | caller's   |  class   |  object index  |  zspage id + 1        |
//! | (not ours) |  8 bits  |    14 bits     |     26 bits           |
//! +------------+----------+----------------+-----------------------+
//! ```
//!
//! - class: the size class index (its owner size step, 0..=255);
//! - object index: the slot within the zspage, below `objs_per_zspage`
//!   (at most 2048 for any page size, well under 2^14);
//! - zspage id + 1: the zspage's index in its class's slot table, plus one,
//!   so that the field is never 0 and **no valid handle is 0**: callers may
//!   use 0 as "no handle". A class can thus hold 2^26 - 1 zspages (256 GiB
//!   of 4 KiB pages per class).
//!
//! The top 16 bits are never set by the pool, and [`Handle::from_bits`]
//! ignores them, so a caller can keep flags or a length there and pass the
//! packed word back unmasked.

/// Bits a handle uses, counted from bit 0. The caller owns the rest.
pub const HANDLE_BITS: u32 = 48;
/// Width of the zspage field.
pub(crate) const ZSPAGE_BITS: u32 = 26;
/// Width of the object-index field: enough for the 2048 slots a 64 KiB-page
/// zspage of the smallest class holds, with room to spare.
pub(crate) const OBJ_BITS: u32 = 14;
/// Width of the class field: a class index is a size step below 256.
pub(crate) const CLASS_FIELD_BITS: u32 = 8;

const OBJ_SHIFT: u32 = ZSPAGE_BITS;
const CLASS_SHIFT: u32 = ZSPAGE_BITS + OBJ_BITS;
const ZSPAGE_MASK: u64 = (1 << ZSPAGE_BITS) - 1;
const OBJ_MASK: u64 = (1 << OBJ_BITS) - 1;
const CLASS_MASK: u64 = (1 << CLASS_FIELD_BITS) - 1;
const HANDLE_MASK: u64 = (1 << HANDLE_BITS) - 1;

/// Most zspages one class may hold: the field stores id + 1, and 0 is
/// reserved so that no handle is 0.
pub(crate) const MAX_ZSPAGES_PER_CLASS: usize = (1 << ZSPAGE_BITS) - 1;
/// Most slots one zspage may have.
pub(crate) const MAX_OBJS_PER_ZSPAGE: usize = 1 << OBJ_BITS;

const _: () = assert!(CLASS_FIELD_BITS + OBJ_BITS + ZSPAGE_BITS == HANDLE_BITS);

/// Where an object lives in a [`Pool`](super::Pool): class, zspage and slot.
///
/// A handle is a location, not an indirection: compaction moves objects and
/// gives them new handles (see [`Pool::compact`](super::Pool::compact)).
/// Never 0; only the low 48 bits are used (see the module docs for the
/// layout).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Handle(u64);

impl Handle {
    #[inline]
    pub(crate) fn new(class: usize, zspage_id: u32, obj: u16) -> Handle {
        debug_assert!(class <= CLASS_MASK as usize);
        debug_assert!((obj as u64) <= OBJ_MASK);
        debug_assert!((zspage_id as usize) < MAX_ZSPAGES_PER_CLASS);
        Handle(
            ((class as u64) << CLASS_SHIFT) | ((obj as u64) << OBJ_SHIFT) | (zspage_id as u64 + 1),
        )
    }

    /// The handle as a number below 2^48 (never 0 for a handle the pool
    /// made).
    #[inline]
    pub fn to_bits(self) -> u64 {
        self.0
    }

    /// The handle in the low 48 bits of `bits`; the high 16 bits are
    /// ignored. Any value is accepted: a value the pool never handed out is
    /// caught (panic with a message) when used, never undefined behaviour.
    #[inline]
    pub fn from_bits(bits: u64) -> Handle {
        Handle(bits & HANDLE_MASK)
    }

    /// Size class index.
    #[inline]
    pub(crate) fn class(self) -> usize {
        ((self.0 >> CLASS_SHIFT) & CLASS_MASK) as usize
    }

    /// Slot index within the zspage.
    #[inline]
    pub(crate) fn obj(self) -> u16 {
        ((self.0 >> OBJ_SHIFT) & OBJ_MASK) as u16
    }

    /// Zspage id within the class, or `None` for the reserved field value 0
    /// (a handle the pool never made).
    #[inline]
    pub(crate) fn zspage(self) -> Option<u32> {
        ((self.0 & ZSPAGE_MASK) as u32).checked_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_stay_in_48_bits() {
        let cases = [
            (0usize, 0u32, 0u16),
            (
                255,
                (MAX_ZSPAGES_PER_CLASS - 1) as u32,
                (MAX_OBJS_PER_ZSPAGE - 1) as u16,
            ),
            (17, 12345, 77),
        ];
        for (c, z, o) in cases {
            let h = Handle::new(c, z, o);
            assert!(h.to_bits() < 1 << 48);
            assert_ne!(h.to_bits(), 0);
            assert_eq!((h.class(), h.zspage(), h.obj()), (c, Some(z), o));
            let packed = h.to_bits() | (0xBEEF << 48);
            assert_eq!(Handle::from_bits(packed), h);
        }
        assert_eq!(Handle::from_bits(0).zspage(), None);
    }
}
