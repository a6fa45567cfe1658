//! Size classes: which slot size an object of `n` bytes gets, and how many
//! pages a zspage of that class chains so that its slots waste little.
//!
//! Class sizes are the multiples of a step `delta` from the smallest class up
//! to the page size. A request rounds up to the next class, so it loses less
//! than `delta` bytes to rounding. Each class then picks how many pages (1 to
//! [`MAX_PAGES_PER_ZSPAGE`]) its zspages chain: a slot may straddle a page
//! boundary, so chaining pages lets odd-sized slots tile the zspage with only
//! a small tail left over.
//!
//! Worked example (4 KiB pages): a 2064-byte class on one page holds one
//! object and wastes 2032 of 4096 bytes (49.6%); two pages hold 3 (24.4%
//! waste), four pages hold 7 (11.8%), and eight pages (32768 bytes) hold 15
//! objects, 30960 bytes, wasting 1808 bytes (5.5%). Eight pages it is.
//!
//! Neighbouring classes that end up with the same `(pages_per_zspage,
//! objs_per_zspage)` are merged into the largest of them, as zsmalloc does:
//! they would hold the same number of objects in the same memory, so keeping
//! them apart only multiplies half-empty zspages. On 4 KiB pages the 255 size
//! steps merge into 119 classes. A class keeps the index of its size step (its
//! "owner" step), so indices are stable and equal the kernel's debugfs
//! numbering.

use super::handle::MAX_OBJS_PER_ZSPAGE;

/// Smallest page size we accept: the x86/arm64 base page.
pub const MIN_PAGE_SIZE: usize = 4096;

/// Largest page size we accept: the 64 KiB base pages of arm64 and ppc64,
/// the largest Linux commonly runs with.
pub const MAX_PAGE_SIZE: usize = 65536;

/// Smallest slot, 32 bytes, as zsmalloc's `ZS_MIN_ALLOC_SIZE` on 4 KiB pages.
/// It keeps the smallest class's slots per zspage (its bitmap words, its
/// handles' object-index bits) small; compressed pages are never that small
/// in practice (same-filled pages are not stored in the pool at all).
pub const MIN_CLASS_SIZE: usize = 32;

/// log2 of the number of size steps per page. 8 bits makes the step
/// `page_size / 256` (16 bytes on 4 KiB pages, so rounding up loses under
/// 0.4% of a page) and lets a class index fit in the 8-bit field of a handle.
pub const CLASS_BITS: u32 = 8;

/// The step never goes below 16 bytes: finer steps would only add classes
/// (and half-empty zspages) to save a few bytes of rounding.
pub const MIN_CLASS_DELTA: usize = 16;

/// Most pages one zspage chains: 8, the default `ZS_MAX_PAGES_PER_ZSPAGE`
/// chain size since Linux 6.3. Longer chains waste less per zspage but make
/// the last, partly used zspage of each class larger; 8 keeps every class's
/// waste under 11% (see `zspage_shape`).
pub const MAX_PAGES_PER_ZSPAGE: usize = 8;

/// What one size class is: its slot size and the shape of its zspages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassSpec {
    /// Slot size in bytes; a multiple of the step, `MIN_CLASS_SIZE.max(delta)`
    /// to `page_size`.
    pub size: u32,
    /// Pages per zspage, 1..=`MAX_PAGES_PER_ZSPAGE`.
    pub pages_per_zspage: u8,
    /// Slots per zspage: `pages_per_zspage * page_size / size`, >= 1.
    pub objs_per_zspage: u16,
    /// Index of the class that serves this size step: itself, or the
    /// largest neighbouring step with the same zspage shape (merged).
    pub owner: u8,
}

/// The immutable class table of one pool.
#[derive(Debug)]
pub struct ClassTable {
    /// Page size the table was built for (a power of two).
    page_size: usize,
    /// log2 of the step between class sizes.
    delta_shift: u32,
    /// Size of step 0: `MIN_CLASS_SIZE.max(delta)`, a multiple of the step.
    min_size: usize,
    /// One entry per size step; entry `i` has size `min_size + i * delta`
    /// and the last has size `page_size`. At most 256 entries.
    specs: Box<[ClassSpec]>,
}

/// The zspage shape for a class of `size` bytes: `(pages_per_zspage,
/// objs_per_zspage)`, the chain length in 1..=8 pages that uses the largest
/// share of its bytes, ties going to fewer pages (a shorter chain frees its
/// memory sooner). The worst class on any page size is 7/64 (10.9%) wasted:
/// a 3648-byte class on 4 KiB pages holds one object per page (448 bytes
/// over) and 8 objects in 8 pages (the same share).
pub fn zspage_shape(size: usize, page_size: usize) -> (usize, usize) {
    let mut best = (1, page_size / size);
    let mut best_used = 0usize; // bytes used of the best chain, scaled below
    for pages in 1..=MAX_PAGES_PER_ZSPAGE {
        let objs = pages * page_size / size;
        let used = objs * size;
        // Compare used/(pages*page_size) without floats: cross-multiply.
        // `best_used / best_pages` vs `used / pages`; strict > keeps ties
        // on the fewer pages seen first.
        if used * best.0 > best_used * pages {
            best = (pages, objs);
            best_used = used;
        }
    }
    best
}

impl ClassTable {
    /// Builds the table for `page_size`, which the caller has checked is a
    /// power of two in `MIN_PAGE_SIZE..=MAX_PAGE_SIZE`.
    pub fn new(page_size: usize) -> ClassTable {
        debug_assert!(page_size.is_power_of_two());
        debug_assert!((MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size));
        let delta = MIN_CLASS_DELTA.max(page_size >> CLASS_BITS);
        let min_size = MIN_CLASS_SIZE.max(delta);
        let steps = (page_size - min_size) / delta + 1;
        assert!(steps <= 1 << CLASS_BITS, "class index must fit in 8 bits");
        let mut specs: Vec<ClassSpec> = (0..steps)
            .map(|i| {
                let size = min_size + i * delta;
                let (pages, objs) = zspage_shape(size, page_size);
                ClassSpec {
                    size: size as u32,
                    pages_per_zspage: pages as u8,
                    objs_per_zspage: objs as u16,
                    owner: i as u8,
                }
            })
            .collect();
        // Merge runs of equal shape into their largest member, walking down
        // from the top so each step sees its upper neighbour's final owner.
        for i in (0..steps.saturating_sub(1)).rev() {
            let up = specs[i + 1];
            let me = specs[i];
            if me.pages_per_zspage == up.pages_per_zspage
                && me.objs_per_zspage == up.objs_per_zspage
            {
                specs[i].owner = up.owner;
            }
        }
        // Slot indices must fit the handle's object-index field.
        assert!(specs
            .iter()
            .all(|s| (s.objs_per_zspage as usize) < MAX_OBJS_PER_ZSPAGE));
        ClassTable {
            page_size,
            delta_shift: delta.trailing_zeros(),
            min_size,
            specs: specs.into_boxed_slice(),
        }
    }

    /// The size step a request of `size` bytes (1..=page_size) rounds up to.
    #[inline]
    pub fn step_for(&self, size: usize) -> usize {
        debug_assert!(size >= 1 && size <= self.page_size);
        let delta = 1usize << self.delta_shift;
        size.saturating_sub(self.min_size).div_ceil(delta)
    }

    /// The class (owner index) serving a request of `size` bytes, or `None`
    /// when `size` is 0 or larger than a page.
    #[inline]
    pub fn class_for(&self, size: usize) -> Option<usize> {
        if size == 0 || size > self.page_size {
            return None;
        }
        Some(self.specs[self.step_for(size)].owner as usize)
    }

    /// The page size the table was built for.
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// Number of size steps (merged or not).
    pub fn steps(&self) -> usize {
        self.specs.len()
    }

    /// The spec of size step `i`.
    #[cfg(test)]
    pub fn spec(&self, i: usize) -> &ClassSpec {
        &self.specs[i]
    }

    /// The specs of all size steps.
    pub fn specs(&self) -> &[ClassSpec] {
        &self.specs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes_for(page: usize) -> Vec<usize> {
        ClassTable::new(page)
            .specs()
            .iter()
            .map(|s| s.size as usize)
            .collect()
    }

    #[test]
    fn classes_of_4k_pages_step_16_from_32() {
        let sizes = sizes_for(4096);
        assert_eq!(sizes.len(), 255);
        assert_eq!(sizes[0], 32);
        assert_eq!(sizes[1], 48);
        assert_eq!(*sizes.last().unwrap(), 4096);
        assert!(sizes.windows(2).all(|w| w[1] - w[0] == 16));
    }

    #[test]
    fn class_count_fits_in_8_bits_for_every_page_size() {
        for shift in 12..=16 {
            let page = 1usize << shift;
            let t = ClassTable::new(page);
            let sizes = sizes_for(page);
            let delta = 16.max(page >> 8);
            assert!(t.steps() <= 256, "{page}: {} classes", t.steps());
            assert_eq!(sizes[0], 32.max(delta));
            assert_eq!(*sizes.last().unwrap(), page);
            assert!(sizes.windows(2).all(|w| w[1] - w[0] == delta));
            // Every shape must fit the handle's 14-bit object index and
            // the zspage bitmap's MAX_WORDS words.
            let most = t.specs().iter().map(|s| s.objs_per_zspage).max();
            assert_eq!(most, Some(256), "page {page}");
        }
    }

    #[test]
    fn request_rounds_up_to_smallest_class_that_fits() {
        let t = ClassTable::new(4096);
        let size_of = |n| t.spec(t.step_for(n)).size as usize;
        assert_eq!(size_of(1), 32);
        assert_eq!(size_of(32), 32);
        assert_eq!(size_of(33), 48);
        assert_eq!(size_of(2049), 2064);
        assert_eq!(size_of(4096), 4096);
        assert_eq!(t.class_for(0), None);
        assert_eq!(t.class_for(4097), None);
        for n in 1..=4096 {
            let spec = t.spec(t.step_for(n));
            assert_eq!(spec.size as usize, n.next_multiple_of(16).max(32));
            let owner = t.spec(spec.owner as usize);
            assert!(owner.size >= spec.size);
        }
    }

    #[test]
    fn worked_example_2064_bytes_takes_8_pages_for_15_objects() {
        assert_eq!(zspage_shape(2064, 4096), (8, 15));
        // One page holds one object and wastes 49.6%.
        assert_eq!(4096 / 2064, 1);
        let waste_1 = (4096 - 2064) as f64 / 4096.0;
        assert!((waste_1 - 0.496).abs() < 0.001);
        let waste_8 = (8 * 4096 - 15 * 2064) as f64 / (8.0 * 4096.0);
        assert!((waste_8 - 0.055).abs() < 0.001);
        // Exact fits stay on one page: ties go to fewer pages.
        assert_eq!(zspage_shape(32, 4096), (1, 128));
        assert_eq!(zspage_shape(4096, 4096), (1, 1));
        assert_eq!(zspage_shape(2048, 4096), (1, 2));
    }

    /// The bound stated on `zspage_shape`: no class wastes more than 7/64 of
    /// its zspage, on any page size; classes above half a page are where
    /// compressed pages live, so check those are within it too.
    #[test]
    fn waste_is_at_most_7_64ths() {
        for shift in 12..=16 {
            let page = 1usize << shift;
            let t = ClassTable::new(page);
            for s in t.specs() {
                let total = s.pages_per_zspage as usize * page;
                let used = s.objs_per_zspage as usize * s.size as usize;
                assert!(
                    (total - used) * 64 <= total * 7,
                    "page {page} class {} wastes {}/{}",
                    s.size,
                    total - used,
                    total
                );
            }
        }
    }

    #[test]
    fn merged_classes_share_shape_and_owner_is_largest() {
        let t = ClassTable::new(4096);
        let owners: std::collections::BTreeSet<u8> = t.specs().iter().map(|s| s.owner).collect();
        assert_eq!(owners.len(), 119);
        for (i, s) in t.specs().iter().enumerate() {
            let o = t.spec(s.owner as usize);
            assert!(s.owner as usize >= i);
            assert_eq!(o.owner, s.owner, "an owner owns itself");
            assert_eq!(
                (o.pages_per_zspage, o.objs_per_zspage),
                (s.pages_per_zspage, s.objs_per_zspage)
            );
        }
        // 2064..=2176 all hold 15 objects in 8 pages: one merged class.
        // 2048 fits 2 per page exactly and stays apart.
        let c = |n| t.class_for(n).unwrap();
        assert_eq!(c(2064), c(2176));
        assert_ne!(c(2048), c(2064));
    }
}
