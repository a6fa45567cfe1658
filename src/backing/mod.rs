//! The backing swap file: the device zswap exists to avoid.
//!
//! A swap area may have a real file (or block device) behind it: slot `n`
//! holds the page of swap offset `n` at byte `n * page_size`, as a swap
//! device does. The file is sparse, so an area of a million slots costs disk
//! only for the pages actually written; an invalidated slot gives its blocks
//! back (`FALLOC_FL_PUNCH_HOLE`, where the filesystem can).
//!
//! Opening is careful: the path is never followed through a symlink
//! (`O_NOFOLLOW`), a new file is created with mode 0600 (swapped pages are
//! someone's memory), and the file's `(device, inode)` identity lets the
//! cache refuse a second area on the same file.
//!
//! I/O is real: with `direct` the file is opened `O_DIRECT`, so reads and
//! writes reach the device instead of the page cache (whose RAM the
//! experiment would otherwise get for free). Filesystems that refuse
//! `O_DIRECT` (tmpfs) fall back to buffered I/O, and [`SwapFile::is_direct`]
//! says which is in use. An optional pacer slows the file to a given device
//! speed, to replay experiments made on slower disks.
//!
//! Every page written carries a CRC32C kept in memory beside its slot
//! ([`SlotTable`]); a read that does not match is reported, never returned.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// An open backing file of `pages` slots.
#[derive(Debug)]
pub struct SwapFile {
    file: File,
    path: PathBuf,
    pages: u64,
    page_size: usize,
    /// `O_DIRECT` is in effect.
    direct: bool,
    /// `(st_dev, st_ino)`: two areas must never share one file.
    identity: (u64, u64),
    block_device: bool,
    pacer: Option<Pacer>,
}

/// How to open a backing file.
#[derive(Clone, Debug, PartialEq)]
pub struct FileOptions {
    /// Try `O_DIRECT` (falls back to buffered I/O where refused).
    pub direct: bool,
    /// Pace reads and writes to this many MB/s (10^6 bytes); `None`: as fast
    /// as the device goes.
    pub disk_mbps: Option<f64>,
}

impl Default for FileOptions {
    fn default() -> Self {
        FileOptions {
            direct: true,
            disk_mbps: None,
        }
    }
}

impl SwapFile {
    /// Open or create the backing file at `path` with room for `pages`
    /// slots of `page_size` bytes.
    pub fn open(
        path: &Path,
        pages: u64,
        page_size: usize,
        options: &FileOptions,
    ) -> io::Result<SwapFile> {
        let bytes = pages
            .checked_mul(page_size as u64)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EFBIG))?;
        let open = |direct: bool| {
            let mut flags = libc::O_NOFOLLOW | libc::O_CLOEXEC;
            if direct {
                flags |= libc::O_DIRECT;
            }
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .mode(0o600)
                .custom_flags(flags)
                .open(path)
        };
        let (file, direct) = match open(options.direct) {
            // tmpfs and some others refuse O_DIRECT at open time.
            Err(e) if options.direct && e.raw_os_error() == Some(libc::EINVAL) => {
                (open(false)?, false)
            }
            other => (other?, options.direct),
        };
        let meta = file.metadata()?;
        let block_device = meta.file_type().is_block_device();
        if block_device {
            let size = device_size(&file)?;
            if size < bytes {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("block device holds {size} bytes, {pages} slots need {bytes}"),
                ));
            }
        } else if meta.file_type().is_file() {
            if meta.len() < bytes {
                // Sparse: no block is allocated until a slot is written.
                file.set_len(bytes)?;
            }
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file or a block device",
            ));
        }
        let pacer = match options.disk_mbps {
            Some(mbps) if mbps > 0.0 && mbps.is_finite() => Some(Pacer::new(mbps * 1e6)),
            Some(mbps) if mbps < 0.0 || !mbps.is_finite() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("disk_mbps must be positive, got {mbps}"),
                ))
            }
            _ => None,
        };
        Ok(SwapFile {
            file,
            path: path.to_path_buf(),
            pages,
            page_size,
            direct,
            identity: (meta.dev(), meta.ino()),
            block_device,
            pacer,
        })
    }

    /// The path it was opened by.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Slots.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// Whether `O_DIRECT` is in effect.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// The pacing rate in MB/s, if paced.
    pub fn disk_mbps(&self) -> Option<f64> {
        self.pacer.as_ref().map(|p| p.bytes_per_sec / 1e6)
    }

    /// `(device, inode)` of the file.
    pub fn identity(&self) -> (u64, u64) {
        self.identity
    }

    fn position(&self, slot: u64) -> u64 {
        debug_assert!(slot < self.pages);
        slot * self.page_size as u64
    }

    /// Write one page to `slot`. A short write is an error (`EIO` if the
    /// OS gave none), so a page is either written whole or reported.
    pub fn write_page(&self, slot: u64, page: &[u8]) -> io::Result<()> {
        debug_assert_eq!(page.len(), self.page_size);
        let done = self.pace(page.len());
        let r = with_aligned(self.page_size, |buf| {
            buf.copy_from_slice(page);
            self.file.write_all_at(buf, self.position(slot))
        });
        Pacer::sleep_until(done);
        r
    }

    /// Read the page of `slot` into `out`.
    pub fn read_page(&self, slot: u64, out: &mut [u8]) -> io::Result<()> {
        debug_assert_eq!(out.len(), self.page_size);
        let done = self.pace(out.len());
        let r = with_aligned(self.page_size, |buf| {
            self.file.read_exact_at(buf, self.position(slot))?;
            out.copy_from_slice(buf);
            Ok(())
        });
        Pacer::sleep_until(done);
        r
    }

    /// Give the blocks of `slot` back to the filesystem. Where holes are not
    /// supported (block devices, some filesystems) the slot is merely
    /// forgotten, as a swap device forgets a freed slot.
    pub fn punch(&self, slot: u64) -> io::Result<()> {
        self.punch_range(slot, 1)
    }

    fn punch_range(&self, slot: u64, count: u64) -> io::Result<()> {
        if self.block_device {
            return Ok(());
        }
        // SAFETY: fallocate only reads its integer arguments; the descriptor
        // is owned by `self.file` and open for writing.
        let rc = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                self.position(slot) as libc::off_t,
                (count * self.page_size as u64) as libc::off_t,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => Ok(()),
            _ => Err(e),
        }
    }

    /// Book a transfer of `bytes` on the paced device; returns when it
    /// would be done there. The real I/O runs meanwhile, and the caller
    /// sleeps only for what is left, so real and paced time overlap.
    fn pace(&self, bytes: usize) -> Option<Instant> {
        self.pacer.as_ref().map(|p| p.book(bytes))
    }

    /// Give the blocks of the slots in `slots` (sorted, no duplicates) back,
    /// one `fallocate` per run of adjacent slots.
    pub fn punch_many(&self, slots: &[u32]) -> io::Result<()> {
        let mut i = 0;
        while i < slots.len() {
            let mut j = i + 1;
            while j < slots.len() && slots[j] == slots[j - 1] + 1 {
                j += 1;
            }
            self.punch_range(u64::from(slots[i]), (j - i) as u64)?;
            i = j;
        }
        Ok(())
    }
}

/// Size in bytes of the block device open as `file`.
fn device_size(file: &File) -> io::Result<u64> {
    use std::io::{Seek, SeekFrom};
    // Seeking to the end of a block device gives its size without an ioctl.
    let mut f = file.try_clone()?;
    f.seek(SeekFrom::End(0))
}

thread_local! {
    /// A page-aligned buffer for `O_DIRECT` transfers (the kernel requires
    /// the buffer, offset and length to be block aligned).
    static ALIGNED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn with_aligned<R>(page_size: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    ALIGNED.with(|a| {
        let mut a = a.borrow_mut();
        if a.len() < 2 * page_size {
            *a = vec![0u8; 2 * page_size];
        }
        let skip = a.as_ptr().align_offset(page_size);
        f(&mut a[skip..skip + page_size])
    })
}

/// A single-queue device of a given speed: each transfer starts when the
/// previous one would have finished and takes `bytes / rate`.
#[derive(Debug)]
struct Pacer {
    bytes_per_sec: f64,
    busy_until: Mutex<Instant>,
}

impl Pacer {
    fn new(bytes_per_sec: f64) -> Self {
        Pacer {
            bytes_per_sec,
            busy_until: Mutex::new(Instant::now()),
        }
    }

    /// Book `bytes` after whatever is queued; returns when they are done.
    fn book(&self, bytes: usize) -> Instant {
        let cost = Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec);
        let mut until = self.busy_until.lock();
        let start = (*until).max(Instant::now());
        *until = start + cost;
        *until
    }

    fn sleep_until(done: Option<Instant>) {
        if let Some(done) = done {
            let now = Instant::now();
            if done > now {
                std::thread::sleep(done - now);
            }
        }
    }

    #[cfg(test)]
    fn wait(&self, bytes: usize) {
        Pacer::sleep_until(Some(self.book(bytes)));
    }
}

/// What the cache knows of each slot of a backing file: whether it holds a
/// page, and that page's CRC32C. Kept in chunks allocated on first use, so
/// an area of 2^32 slots with a few pages on disk costs little.
#[derive(Debug, Default)]
pub struct SlotTable {
    chunks: Vec<Option<Box<Chunk>>>,
    /// Slots that hold a page.
    used: u64,
}

/// Slots per chunk: 4 KiB of checksums plus 128 bytes of bits.
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

    /// The checksum of the page in `slot`, if it holds one.
    pub fn get(&self, slot: u32) -> Option<u32> {
        let (c, i) = Self::locate(slot);
        let chunk = self.chunks.get(c)?.as_ref()?;
        (chunk.valid[i / 64] & (1 << (i % 64)) != 0).then_some(chunk.crc[i])
    }

    /// Record that `slot` holds a page with checksum `crc`.
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

/// The checksum kept for a page on disk.
pub fn checksum(page: &[u8]) -> u32 {
    crc32c::crc32c(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("zswap-rs-backing-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        dir
    }

    #[test]
    fn slots_are_pages_and_the_file_is_sparse() {
        let path = temp_path("sparse");
        let f = SwapFile::open(&path, 1 << 16, 4096, &FileOptions::default()).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), (1 << 16) * 4096);
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert!(
            meta.blocks() * 512 < 64 * 1024,
            "a new swap file must be sparse"
        );
        let page: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
        f.write_page(12345, &page).unwrap();
        let mut out = vec![0u8; 4096];
        f.read_page(12345, &mut out).unwrap();
        assert_eq!(out, page);
        f.punch(12345).unwrap();
        f.read_page(12345, &mut out).unwrap();
        assert!(out.iter().all(|&b| b == 0), "a punched slot reads as zeros");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn symlinks_are_not_followed() {
        let target = temp_path("target");
        let link = temp_path("link");
        std::fs::write(&target, b"precious").unwrap();
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = SwapFile::open(&link, 16, 4096, &FileOptions::default()).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP));
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
        std::fs::remove_file(&link).unwrap();
        std::fs::remove_file(&target).unwrap();
    }

    #[test]
    fn slot_table_tracks_checksums() {
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
    fn pacer_holds_the_rate() {
        let p = Pacer::new(4096.0 * 1000.0); // 1000 pages a second
        let start = Instant::now();
        for _ in 0..20 {
            p.wait(4096);
        }
        assert!(start.elapsed() >= Duration::from_millis(19));
    }
}
