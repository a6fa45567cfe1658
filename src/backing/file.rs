//! The backing swap file: the device zswap exists to avoid.
//!
//! A swap area may have a real file (or block device) behind it: slot `n`
//! holds the page of swap offset `n` at byte `(n + 1) * page_size`, after
//! the header's page (`header`), as a swap device holds page `n`. The file is sparse, so an area of a million slots costs disk
//! only for the pages actually written; an invalidated slot gives its blocks
//! back (`FALLOC_FL_PUNCH_HOLE`, where the filesystem can).
//!
//! Opening is careful (`target`): the path is never followed through a
//! symlink, a new file is created with mode 0600 (swapped pages are
//! someone's memory), anything that is not a new or empty file or a
//! zswap-rs swap file is refused untouched, and the file is locked while the
//! area uses it, so that no second area, cache or process writes into its
//! slots.
//!
//! I/O is real: with `direct` the file is opened `O_DIRECT`, so reads and
//! writes reach the device instead of the page cache (whose RAM the
//! experiment would otherwise get for free). Filesystems that refuse
//! `O_DIRECT` (tmpfs) fall back to buffered I/O, and [`SwapFile::is_direct`]
//! says which is in use. An optional pacer slows the file to a given device
//! speed, to replay experiments made on slower disks.

use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::header::{Content, Header};
use super::target::{refuse, set_direct, Target};
use super::{check_failed, page_check, slot_out_of_range, BackingStore, FileFacts, FileOptions};
use crate::error::{Error, Result};

/// An open backing file of `pages` slots: the [`BackingStore`] of a swap
/// area on a file or block device.
#[derive(Debug)]
pub struct SwapFile {
    file: File,
    path: PathBuf,
    pages: u64,
    page_size: usize,
    /// This area's random id, the first input of every page's check.
    area_id: u64,
    /// `O_DIRECT` is in effect.
    direct: bool,
    /// Freed slots' blocks are given back: holes punched
    /// ([`FileOptions::discard`]; block devices have none to punch).
    punch: bool,
    pacer: Option<Pacer>,
}

impl SwapFile {
    /// Open the swap file (or block device) at `path` for an area of
    /// `pages` slots of `page_size` bytes, with a new random area id.
    ///
    /// A path that does not exist is created (mode 0600, sparse), and an
    /// empty file or a zswap-rs file of this page size gets a fresh header;
    /// anything else is refused before one byte is written: see the
    /// module `target`'s rules. Errors are [`ErrorKind::Backing`](crate::ErrorKind::Backing) with the
    /// OS's errno (`EINVAL` for a refusal, `EBUSY` for a file in use), and
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) for bad `options`.
    pub fn open(
        path: &Path,
        pages: u64,
        page_size: usize,
        options: &FileOptions,
    ) -> Result<SwapFile> {
        options.validate()?;
        let bytes = file_bytes(path, pages, page_size)?;
        let mut target = Target::open(path)?;
        match Self::prepare(&mut target, pages, page_size, bytes) {
            Ok(area_id) => {
                let direct = options.direct && set_direct(&target.file);
                Ok(SwapFile {
                    file: target.file,
                    path: path.to_path_buf(),
                    pages,
                    page_size,
                    area_id,
                    direct,
                    punch: options.discard && !target.block_device,
                    pacer: options.disk_mbps.map(|mbps| Pacer::new(mbps * 1e6)),
                })
            }
            Err(e) => Err(target.abandon(e)),
        }
    }

    /// Check what `target` holds, size it and write a new header; returns
    /// the new area id.
    fn prepare(target: &mut Target<'_>, pages: u64, page_size: usize, bytes: u64) -> Result<u64> {
        let reused = match target.probe()? {
            Content::Empty => false,
            Content::Ours(h) if h.page_size as usize == page_size => true,
            Content::Ours(h) => {
                return Err(refuse(
                    target.path,
                    format!(
                        "it is a zswap-rs swap file of page size {}, not {page_size} \
                         (mkswap it again for this page size)",
                        h.page_size
                    ),
                ))
            }
            Content::Blank if target.block_device => {
                return Err(refuse(
                    target.path,
                    "the block device has no zswap-rs header (mkswap it first)",
                ))
            }
            other => {
                return Err(refuse(
                    target.path,
                    format!(
                        "it holds {}; only a new or empty file, or a zswap-rs swap file, is \
                         taken (mkswap with force overwrites it)",
                        other.describe()
                    ),
                ))
            }
        };
        target.ensure_size(bytes)?;
        if reused {
            target.forget_slots(page_size);
        }
        let area_id = random_id().map_err(|e| target.io("no random id for", e))?;
        let header = Header {
            page_size: page_size as u32,
            slots: pages,
            area_id,
        };
        target.write_header(&header, page_size)?;
        Ok(area_id)
    }

    /// The path it was opened by.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `O_DIRECT` is in effect.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// The pacing rate in MB/s, if paced.
    pub fn disk_mbps(&self) -> Option<f64> {
        self.pacer.as_ref().map(|p| p.bytes_per_sec / 1e6)
    }

    /// Where `slot` starts in the file, or an error if it is out of range.
    fn position(&self, slot: u64) -> io::Result<u64> {
        if slot >= self.pages {
            return Err(slot_out_of_range(slot, self.pages));
        }
        // The header is the page before slot 0.
        Ok((slot + 1) * self.page_size as u64)
    }

    /// Give the blocks of `count` slots from `slot` back to the filesystem.
    /// Where holes are not supported (block devices, some filesystems) the
    /// slots are merely forgotten, as a swap device forgets a freed slot.
    fn punch_range(&self, slot: u64, count: u64) -> io::Result<()> {
        if !self.punch || count == 0 {
            return Ok(());
        }
        let start = self.position(slot)?;
        self.position(slot + count - 1)?;
        // SAFETY: fallocate only reads its integer arguments; the descriptor
        // is owned by `self.file` and open for writing.
        let rc = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                start as libc::off_t,
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
}

impl BackingStore for SwapFile {
    fn slots(&self) -> u64 {
        self.pages
    }

    fn page_size(&self) -> usize {
        self.page_size
    }

    fn area_id(&self) -> u64 {
        self.area_id
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    /// A short write is an error (`EIO` if the OS gave none), so a page is
    /// either written whole or reported.
    fn write(&self, slot: u64, page: &[u8]) -> io::Result<u32> {
        let at = self.position(slot)?;
        if page.len() != self.page_size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "page of the wrong size",
            ));
        }
        let done = self.pace(page.len());
        let r = with_aligned(self.page_size, |buf| {
            buf.copy_from_slice(page);
            // The check of the copy, which is what reaches the disk.
            let check = page_check(self.area_id, slot, buf);
            self.file.write_all_at(buf, at).map(|()| check)
        });
        Pacer::sleep_until(done);
        r
    }

    fn read(&self, slot: u64, check: u32, out: &mut [u8]) -> io::Result<()> {
        let r = self.read_checked(slot, check, out);
        if r.is_err() {
            out.fill(0);
        }
        r
    }

    /// One `fallocate` per run of adjacent slots.
    fn discard(&self, slots: &[u64]) -> io::Result<()> {
        let mut i = 0;
        while i < slots.len() {
            let mut j = i + 1;
            while j < slots.len() && slots[j] == slots[j - 1] + 1 {
                j += 1;
            }
            self.punch_range(slots[i], (j - i) as u64)?;
            i = j;
        }
        Ok(())
    }

    fn file_facts(&self) -> Option<FileFacts> {
        Some(FileFacts {
            path: self.path.clone(),
            direct: self.direct,
            disk_mbps: self.disk_mbps(),
            discard: self.punch,
        })
    }
}

impl SwapFile {
    fn read_checked(&self, slot: u64, check: u32, out: &mut [u8]) -> io::Result<()> {
        let at = self.position(slot)?;
        if out.len() != self.page_size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer of the wrong size",
            ));
        }
        let done = self.pace(out.len());
        let r = with_aligned(self.page_size, |buf| {
            self.file.read_exact_at(buf, at)?;
            if page_check(self.area_id, slot, buf) != check {
                return Err(check_failed(slot));
            }
            out.copy_from_slice(buf);
            Ok(())
        });
        Pacer::sleep_until(done);
        r
    }
}

/// Bytes a file of `pages` slots of `page_size` takes: its header page and
/// the slots.
fn file_bytes(path: &Path, pages: u64, page_size: usize) -> Result<u64> {
    pages
        .checked_add(1)
        .and_then(|n| n.checked_mul(page_size as u64))
        .ok_or_else(|| refuse(path, format!("{pages} slots of {page_size} bytes overflow")))
}

/// Write a zswap-rs header to the file or block device at `path`, for
/// `pages` slots of `page_size` bytes, as the kernel's `mkswap` signs a
/// swap area. Takes a path that does not exist (created, mode 0600), an
/// empty or all-zero file or device, or a zswap-rs swap file of any page
/// size; anything else (a user's file, a filesystem, a partition table) is
/// refused with `EINVAL` unless `force`. Never: a character device, a file
/// on procfs or sysfs, or a file in use by an area (`EBUSY`), force or not.
/// A regular file is cut to the header and its slots, all holes; on a
/// block device the first [`PROBE_BYTES`](super::header::PROBE_BYTES) are
/// zeroed, so no old signature is left beside the new header.
pub fn mkswap(path: &Path, pages: u64, page_size: usize, force: bool) -> Result<()> {
    if !page_size.is_power_of_two()
        || !(crate::pool::MIN_PAGE_SIZE..=crate::pool::MAX_PAGE_SIZE).contains(&page_size)
    {
        return Err(Error::config(format!(
            "page_size must be a power of two in {}..={}, got {page_size}",
            crate::pool::MIN_PAGE_SIZE,
            crate::pool::MAX_PAGE_SIZE
        )));
    }
    if pages == 0 || pages > crate::MAX_AREA_PAGES {
        return Err(Error::invalid(format!(
            "pages must be in 1..={}, got {pages}",
            crate::MAX_AREA_PAGES
        )));
    }
    let bytes = file_bytes(path, pages, page_size)?;
    let mut target = Target::open(path)?;
    let r = sign(&mut target, pages, page_size, bytes, force);
    r.map_err(|e| target.abandon(e))
}

fn sign(
    target: &mut Target<'_>,
    pages: u64,
    page_size: usize,
    bytes: u64,
    force: bool,
) -> Result<()> {
    match target.probe()? {
        Content::Empty | Content::Ours(_) | Content::Blank => {}
        _ if force => {}
        other => {
            return Err(refuse(
                target.path,
                format!(
                    "it holds {}; mkswap with force overwrites it",
                    other.describe()
                ),
            ))
        }
    }
    if target.block_device {
        target.ensure_size(bytes)?;
        target.zero_probe_window(page_size)?;
    } else {
        target.truncate(bytes)?;
    }
    let header = Header {
        page_size: page_size as u32,
        slots: pages,
        area_id: random_id().map_err(|e| target.io("no random id for", e))?,
    };
    target.write_header(&header, page_size)?;
    target
        .file
        .sync_all()
        .map_err(|e| target.io("cannot sync", e))
}

/// A random 64-bit id from the kernel's CSPRNG (`getrandom(2)`).
pub(super) fn random_id() -> io::Result<u64> {
    let mut id = [0u8; 8];
    let mut got = 0;
    while got < id.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `id`,
        // which outlives the call; getrandom writes at most that many bytes.
        let n = unsafe { libc::getrandom(id[got..].as_mut_ptr().cast(), id.len() - got, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        got += n as usize;
    }
    Ok(u64::from_le_bytes(id))
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
    /// At least `MIN_DISK_MBPS * 1e6` ([`FileOptions::validate`]), so that
    /// a page's cost is a few seconds at most.
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
    /// Never panics: a cost past what `Duration` or `Instant` can hold
    /// (only if the rate check were bypassed) books no delay.
    fn book(&self, bytes: usize) -> Instant {
        let cost =
            Duration::try_from_secs_f64(bytes as f64 / self.bytes_per_sec).unwrap_or_default();
        let mut until = self.busy_until.lock();
        let start = (*until).max(Instant::now());
        *until = start.checked_add(cost).unwrap_or(start);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

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
        assert_eq!(
            meta.len(),
            ((1 << 16) + 1) * 4096,
            "a header page, then the slots"
        );
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert!(
            meta.blocks() * 512 < 64 * 1024,
            "a new swap file must be sparse"
        );
        let page: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
        let check = f.write(12345, &page).unwrap();
        assert_eq!(check, page_check(f.area_id(), 12345, &page));
        let mut out = vec![0u8; 4096];
        f.read(12345, check, &mut out).unwrap();
        assert_eq!(out, page);
        f.discard(&[12345]).unwrap();
        let e = f.read(12345, check, &mut out).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "a punched slot fails");
        assert!(out.iter().all(|&b| b == 0), "and leaves no bytes behind");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn slots_out_of_range_are_refused() {
        let path = temp_path("range");
        let f = SwapFile::open(&path, 4, 4096, &FileOptions::default()).unwrap();
        let page = vec![1u8; 4096];
        let e = f.write(4, &page).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 5 * 4096);
        let e = f.discard(&[3, 4]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
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
    fn pacer_holds_the_rate() {
        let p = Pacer::new(4096.0 * 1000.0); // 1000 pages a second
        let start = Instant::now();
        for _ in 0..20 {
            p.wait(4096);
        }
        assert!(start.elapsed() >= Duration::from_millis(19));
    }

    #[test]
    fn pacer_never_panics() {
        // Below the checked minimum: books nothing rather than overflowing.
        let p = Pacer::new(1e-294);
        let now = Instant::now();
        assert!(p.book(4096) <= now + Duration::from_secs(1));
    }
}
