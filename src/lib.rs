//! zswap in user space: a compressed cache for pages headed to swap.
//!
//! Linux's zswap (Seth Jennings, 2013) sits in front of the swap device:
//! a page the kernel would write to disk is compressed into a RAM pool
//! instead, found again through a red-black tree per swap type, and written
//! to disk only when the pool is full, oldest first. Most swap I/O never
//! happens, at the price of a few microseconds of CPU per page. This crate is
//! that design as a library:
//!
//! * [`pool`]: a zsmalloc-style allocator: size classes in 16-byte steps,
//!   objects packed into zspages of several pages, handles instead of
//!   pointers, compaction;
//! * [`index`]: the per-area red-black tree keyed by swap offset, whose
//!   32-byte nodes are also the [`lru`] list's entries;
//! * [`compress`]: compressors chosen by name;
//! * [`Zswap`]: the cache that ties them, with the kernel's policies
//!   (`max_pool_percent`, accept threshold, max compression ratio,
//!   same-filled pages) and its counters ([`stats`]);
//! * [`region`]: memory beyond its RAM budget, through userfaultfd, whose
//!   evicted pages live in a `Zswap`.
//!
//! ```
//! use zswap_rs::{Config, StoreOutcome, Zswap};
//!
//! let z = Zswap::new(Config { max_pool_bytes: Some(64 << 20), ..Config::default() })?;
//! let t = z.swapon(1 << 16)?; // a memory-only swap area of 65536 slots
//! let page: Vec<u8> = (0..4096u32).map(|i| (i / 64) as u8).collect();
//! assert_eq!(z.store(t, 42, &page)?, StoreOutcome::Stored);
//! assert_eq!(z.load(t, 42)?, page);
//! assert_eq!(z.stats().stored_pages, 1);
//! # Ok::<(), zswap_rs::Error>(())
//! ```

#![warn(missing_docs)]

pub mod backing;
pub mod compress;
pub mod error;
pub mod index;
pub mod lru;
pub mod pool;
pub mod region;
pub mod stats;
mod zswap;

#[cfg(test)]
mod testing;

#[cfg(feature = "python")]
mod python;

pub use backing::{FileOptions, RedisOptions};
pub use error::{Error, ErrorKind, Result};
pub use region::{userfaultfd_status, FaultMode, Region, RegionOptions, RegionStats, RegionStore};
pub use stats::StatsSnapshot;
pub use zswap::{
    same_filled_word, shrinker_age_from_secs, BackingInfo, Config, LoadSource, Percent, Reject,
    StoreOutcome, Zswap, MAX_AREA_PAGES, MAX_SHRINKER_AGE_SECS, MAX_SWAP_TYPES,
};
