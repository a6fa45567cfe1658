//! Backing stores: where a swap area's pages go when the pool does not keep
//! them.
//!
//! The cache never touches a file itself. It holds an
//! `Arc<dyn BackingStore>` per area and asks it for four things: write a
//! page to a slot, read it back, forget slots, and say what it is. A swap
//! file ([`SwapFile`]) is the first store, a Redis server or cluster
//! ([`RedisStore`]) the second, so the trait names nothing file-like: what only a file has
//! (`O_DIRECT`, pacing) is told through [`BackingStore::file_facts`].
//!
//! Every page a store writes carries a check, CRC32C over the area's random
//! id, the slot and the page's bytes ([`page_check`]), which the cache keeps
//! in memory beside the slot ([`SlotTable`]) and hands back on every read.
//! Because the id and the slot are in it, a page is only ever read back by
//! the area that wrote it, at the slot it wrote it to: bytes left in a file
//! by an earlier area, or copied from one slot to another, fail their check
//! as surely as bytes damaged on disk. The trade-off is four bytes of RAM per
//! slot on disk (the table), in exchange for not having to trust the store.

mod file;
mod header;
mod redis;
mod target;

pub use self::redis::{RedisOptions, RedisStore, MAX_REDIS_TIMEOUT_SECS};
pub use file::{mkswap, SwapFile};
pub use header::{MAGIC, PROBE_BYTES, VERSION};

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::compress::CompressorId;
use crate::error::{Error, Result};

/// A store of `slots()` page-sized slots behind one swap area.
///
/// # What the caller (the cache) guarantees
///
/// - `page.len()` and `out.len()` are exactly [`page_size`](Self::page_size),
///   and every slot passed is below [`slots`](Self::slots) (an
///   implementation still refuses one that is not, with
///   [`io::ErrorKind::InvalidInput`], rather than touching anything);
/// - no two calls touch one slot at the same time: a slot under I/O is
///   claimed by the cache until the call returns. Calls on different slots
///   do run concurrently, from many threads;
/// - a slot is read only after a successful write to it, with the check
///   that write returned, and not after a [`discard`](Self::discard) of it.
///
/// # What an implementation must do
///
/// - [`write`](Self::write) stores the page whole or returns an error; on an
///   error the slot may hold anything (the cache forgets it), but no other
///   slot is touched. It first copies the page into a buffer of its own and
///   computes the check of that copy, [`page_check`], so that a caller
///   changing its buffer during the call gets *some* version of the page
///   stored with the matching check, never a page that fails its check.
/// - [`read`](Self::read) fills `out` with the slot's page and verifies it
///   against `check`. A mismatch is reported as an error of kind
///   [`io::ErrorKind::InvalidData`] (the cache reports that as a corrupt
///   page, every other error as a store fault). On any error `out` is left
///   all zeros: no unchecked byte ever reaches the caller.
/// - Errors of the OS keep their errno (`ENOSPC`, `EIO`, `EFBIG`): the
///   caller tells them apart.
/// - A store that cannot be reached at all says so with one of the errnos
///   of [`is_store_down`], so that writeback stops trying slot after slot.
/// - Nothing it does may panic on bad data.
pub trait BackingStore: Send + Sync + fmt::Debug {
    /// How many slots it has; slot numbers are `0..slots()`.
    fn slots(&self) -> u64;

    /// Bytes per slot, the cache's page size.
    fn page_size(&self) -> usize;

    /// The area's random id, new on every `swapon`: the first input of
    /// every page's check ([`page_check`]).
    fn area_id(&self) -> u64;

    /// What it is, for messages and `backing_info`: a path, or later a URL.
    fn describe(&self) -> String;

    /// Write `page` to `slot`; returns the check of the bytes written.
    fn write(&self, slot: u64, page: &[u8]) -> io::Result<u32>;

    /// Write `pages[i]` (each [`page_size`](Self::page_size) bytes, one
    /// after another in `pages`) to `slots[i]`, in order, pushing each
    /// page's check onto `checks` as it is written. On an error, `checks`
    /// holds the checks of the pages written before it (the caller counts
    /// them) and none after. The default writes one by one; a remote store
    /// pipelines.
    fn write_many(&self, slots: &[u64], pages: &[u8], checks: &mut Vec<u32>) -> io::Result<()> {
        for (&slot, page) in slots.iter().zip(pages.chunks_exact(self.page_size())) {
            checks.push(self.write(slot, page)?);
        }
        Ok(())
    }

    /// [`write_many`](Self::write_many), told each page's compressed form
    /// where the cache has it (writeback has the pool's bytes): `packed[i]`,
    /// if `Some((id, bytes))`, is `pages[i]` as compressor `id` compressed
    /// it; `packed` is empty or `slots.len()` long. A store that keeps pages
    /// compressed may send those bytes instead of compressing again, if it
    /// can decode that format itself: the check is still that of
    /// `pages[i]` ([`page_check`]), and a read must still verify the page
    /// it decodes, so bytes that did not match the page could only fail
    /// their check, never reach the caller. The default ignores `packed`.
    fn write_many_packed(
        &self,
        slots: &[u64],
        pages: &[u8],
        packed: &[Option<(CompressorId, &[u8])>],
        checks: &mut Vec<u32>,
    ) -> io::Result<()> {
        let _ = packed;
        self.write_many(slots, pages, checks)
    }

    /// How many pages writeback hands [`write_many`](Self::write_many) at
    /// once, at most. The default, 1, suits a store where every page is its
    /// own system call anyway (a file): a bigger batch would save nothing
    /// and only keep more slots claimed for longer. A store whose batch
    /// shares one round trip (a server) says how many it sends per trip.
    fn write_batch_hint(&self) -> usize {
        1
    }

    /// Read `slot` into `out` and verify it against `check`, the value its
    /// last [`write`](Self::write) returned.
    fn read(&self, slot: u64, check: u32, out: &mut [u8]) -> io::Result<()>;

    /// Forget the pages of `slots` (sorted, no duplicates) and give their
    /// space back where the store can (holes punched in a file). Best
    /// effort: a store that cannot give space back returns `Ok`; an error
    /// only costs space, never a page the cache still needs.
    fn discard(&self, slots: &[u64]) -> io::Result<()>;

    /// What only a file has; `None` for other stores.
    fn file_facts(&self) -> Option<FileFacts> {
        None
    }
}

/// What a file-backed store tells of itself, beyond the [`BackingStore`]
/// contract.
#[derive(Clone, Debug, PartialEq)]
pub struct FileFacts {
    /// The path it was opened by.
    pub path: PathBuf,
    /// Whether `O_DIRECT` is in effect (some filesystems refuse it).
    pub direct: bool,
    /// Pacing, in MB/s, if any.
    pub disk_mbps: Option<f64>,
    /// Whether freed slots' blocks are given back (holes punched).
    pub discard: bool,
}

/// The check kept for a page in a store: CRC32C (Castagnoli) over the area
/// id (8 bytes, little-endian), then the slot (8 bytes, little-endian), then
/// the page. Every [`BackingStore`] uses this one function, so that a check
/// means the same whatever the store.
pub fn page_check(area_id: u64, slot: u64, page: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&area_id.to_le_bytes());
    let crc = crc32c::crc32c_append(crc, &slot.to_le_bytes());
    crc32c::crc32c_append(crc, page)
}

/// Whether `e`, from a store, says the store as a whole cannot be reached
/// (its server down, the connection refused, reset, or timed out) rather
/// than that one slot failed. Writeback then stops for the call: every
/// other slot would wait out the same timeout, or be refused the same way.
/// A store reports such faults with these errnos (`ETIMEDOUT`,
/// `ECONNREFUSED`, `ECONNRESET`, `ECONNABORTED`, `ENOTCONN`, `EPIPE`,
/// `EHOSTUNREACH`, `ENETUNREACH`, `ENETDOWN`, `EHOSTDOWN`), none of which
/// a write to a regular file returns.
pub fn is_store_down(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ETIMEDOUT
                | libc::ECONNREFUSED
                | libc::ECONNRESET
                | libc::ECONNABORTED
                | libc::ENOTCONN
                | libc::EPIPE
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::ENETDOWN
                | libc::EHOSTDOWN
        )
    )
}

/// The error a store returns when a page fails its check.
pub(crate) fn check_failed(slot: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("slot {slot} failed its check (damaged, or not written by this area)"),
    )
}

/// The error a store returns for a slot out of range.
pub(crate) fn slot_out_of_range(slot: u64, slots: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("slot {slot} is out of range 0..{slots}"),
    )
}

/// The slowest pacing allowed, in MB/s: 1000 bytes a second, about four
/// seconds per 4 KiB page. Slower than that is no disk anyone replays, and
/// the per-page delay of an arbitrarily small rate overflows a `Duration`.
pub const MIN_DISK_MBPS: f64 = 0.001;

/// How to open a backing file.
#[derive(Clone, Debug, PartialEq)]
pub struct FileOptions {
    /// Try `O_DIRECT` (falls back to buffered I/O where refused).
    pub direct: bool,
    /// Pace reads and writes to this many MB/s (10^6 bytes), at least
    /// [`MIN_DISK_MBPS`]; `None`: as fast as the device goes.
    pub disk_mbps: Option<f64>,
    /// Give the blocks of freed slots back to the filesystem (holes
    /// punched, 64 slots at a time), as the kernel's `swapon --discard`
    /// does. Off, a freed slot keeps its blocks until it is written again.
    /// On a filesystem mounted `discard` a punch also discards on the
    /// device, and costs milliseconds (3.7 ms per 4 KiB measured on this
    /// VM's ext4), in the thread whose store freed the 64th slot.
    pub discard: bool,
}

impl Default for FileOptions {
    fn default() -> Self {
        FileOptions {
            direct: true,
            disk_mbps: None,
            discard: true,
        }
    }
}

impl FileOptions {
    /// Check the values: `disk_mbps` must be a finite number of at least
    /// [`MIN_DISK_MBPS`] ([`ErrorKind::Config`](crate::ErrorKind::Config)).
    pub fn validate(&self) -> Result<()> {
        match self.disk_mbps {
            Some(mbps) if !(mbps.is_finite() && mbps >= MIN_DISK_MBPS) => Err(Error::config(
                format!("disk_mbps must be a finite number >= {MIN_DISK_MBPS}, got {mbps}"),
            )),
            _ => Ok(()),
        }
    }
}

/// What the cache knows of each slot of a backing store: whether it holds a
/// page, and that page's check. Kept in chunks allocated on first use, so
/// an area of 2^32 slots with a few pages on disk costs little.
#[derive(Debug, Default)]
pub struct SlotTable {
    chunks: Vec<Option<Box<Chunk>>>,
    /// Slots that hold a page.
    used: u64,
}

/// Slots per chunk: 4 KiB of checks plus 128 bytes of bits.
const CHUNK_SLOTS: usize = 1024;

#[derive(Debug)]
struct Chunk {
    crc: [u32; CHUNK_SLOTS],
    valid: [u64; CHUNK_SLOTS / 64],
}

impl SlotTable {
    /// A table for `pages` slots, all empty.
    pub fn new(pages: u64) -> Self {
        let n = pages.div_ceil(CHUNK_SLOTS as u64) as usize;
        let mut chunks = Vec::new();
        chunks.resize_with(n, || None);
        SlotTable { chunks, used: 0 }
    }

    fn locate(slot: u32) -> (usize, usize) {
        (slot as usize / CHUNK_SLOTS, slot as usize % CHUNK_SLOTS)
    }

    /// The check of the page in `slot`, if it holds one.
    pub fn get(&self, slot: u32) -> Option<u32> {
        let (c, i) = Self::locate(slot);
        let chunk = self.chunks.get(c)?.as_ref()?;
        (chunk.valid[i / 64] & (1 << (i % 64)) != 0).then_some(chunk.crc[i])
    }

    /// Record that `slot` holds a page with check `crc`.
    pub fn set(&mut self, slot: u32, crc: u32) {
        let (c, i) = Self::locate(slot);
        let chunk = self.chunks[c].get_or_insert_with(|| {
            Box::new(Chunk {
                crc: [0; CHUNK_SLOTS],
                valid: [0; CHUNK_SLOTS / 64],
            })
        });
        if chunk.valid[i / 64] & (1 << (i % 64)) == 0 {
            self.used += 1;
        }
        chunk.valid[i / 64] |= 1 << (i % 64);
        chunk.crc[i] = crc;
    }

    /// Forget the page in `slot`; returns whether there was one.
    pub fn clear(&mut self, slot: u32) -> bool {
        let (c, i) = Self::locate(slot);
        let Some(Some(chunk)) = self.chunks.get_mut(c) else {
            return false;
        };
        let was = chunk.valid[i / 64] & (1 << (i % 64)) != 0;
        if was {
            chunk.valid[i / 64] &= !(1 << (i % 64));
            self.used -= 1;
            if chunk.valid.iter().all(|&w| w == 0) {
                self.chunks[c] = None;
            }
        }
        was
    }

    /// Slots that hold a page.
    pub fn used(&self) -> u64 {
        self.used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_table_tracks_checks() {
        let mut t = SlotTable::new(5000);
        assert_eq!(t.get(4999), None);
        t.set(4999, 7);
        t.set(3, 0);
        assert_eq!((t.get(4999), t.get(3), t.used()), (Some(7), Some(0), 2));
        assert!(t.clear(4999));
        assert!(!t.clear(4999));
        assert_eq!((t.get(4999), t.used()), (None, 1));
    }

    #[test]
    fn the_check_covers_area_slot_and_bytes() {
        let page = vec![0x5au8; 4096];
        let c = page_check(1, 2, &page);
        assert_ne!(c, page_check(9, 2, &page), "another area");
        assert_ne!(c, page_check(1, 3, &page), "another slot");
        let mut other = page.clone();
        other[4095] ^= 1;
        assert_ne!(c, page_check(1, 2, &other), "other bytes");
        // The documented layout: CRC32C of id || slot || page.
        let mut joined = Vec::new();
        joined.extend_from_slice(&1u64.to_le_bytes());
        joined.extend_from_slice(&2u64.to_le_bytes());
        joined.extend_from_slice(&page);
        assert_eq!(c, crc32c::crc32c(&joined));
    }

    #[test]
    fn pacing_is_checked() {
        let bad = [-1.0, 0.0, 1e-300, f64::NAN, f64::INFINITY, 0.0009];
        for mbps in bad {
            let o = FileOptions {
                direct: false,
                disk_mbps: Some(mbps),
                ..FileOptions::default()
            };
            let e = o.validate().unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Config, "{mbps}");
            assert!(e.to_string().contains("disk_mbps"), "{e}");
        }
        for mbps in [None, Some(MIN_DISK_MBPS), Some(0.05), Some(1e12)] {
            let o = FileOptions {
                direct: false,
                disk_mbps: mbps,
                ..FileOptions::default()
            };
            o.validate().unwrap();
        }
    }
}
