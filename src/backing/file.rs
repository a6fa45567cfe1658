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
//! someone's memory), and the file is locked while the area uses it (an OFD
//! lock), so that no second area, cache or process writes into its slots.
//!
//! I/O is real: with `direct` the file is opened `O_DIRECT`, so reads and
//! writes reach the device instead of the page cache (whose RAM the
//! experiment would otherwise get for free). Filesystems that refuse
//! `O_DIRECT` (tmpfs) fall back to buffered I/O, and [`SwapFile::is_direct`]
//! says which is in use. An optional pacer slows the file to a given device
//! speed, to replay experiments made on slower disks.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::{check_failed, page_check, slot_out_of_range, BackingStore, FileFacts, FileOptions};
use crate::error::{Error, ErrorKind, Result};

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
    /// Block devices have no holes to punch.
    block_device: bool,
    pacer: Option<Pacer>,
}

impl SwapFile {
    /// Open or create the backing file at `path` with room for `pages`
    /// slots of `page_size` bytes. Errors are [`ErrorKind::Backing`] with
    /// the OS's errno, and [`ErrorKind::Config`] for bad `options`.
    pub fn open(
        path: &Path,
        pages: u64,
        page_size: usize,
        options: &FileOptions,
    ) -> Result<SwapFile> {
        options.validate()?;
        let fail = |e: io::Error| {
            Error::io(
                ErrorKind::Backing,
                format!("cannot open swap file {}", path.display()),
                e,
            )
        };
        let bytes = pages
            .checked_mul(page_size as u64)
            .ok_or_else(|| fail(io::Error::from_raw_os_error(libc::EFBIG)))?;
        let (file, direct) = open_file(path, options.direct).map_err(fail)?;
        let meta = file.metadata().map_err(fail)?;
        lock(&file).map_err(|e| {
            let busy = e.raw_os_error() == Some(libc::EBUSY);
            let what = match busy {
                true => "is in use by another swap area (of this or another process)",
                false => "cannot be locked",
            };
            Error::io(
                ErrorKind::Backing,
                format!("swap file {} {what}", path.display()),
                e,
            )
        })?;
        let block_device = meta.file_type().is_block_device();
        if block_device {
            let size = device_size(&file).map_err(fail)?;
            if size < bytes {
                return Err(fail(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("block device holds {size} bytes, {pages} slots need {bytes}"),
                )));
            }
        } else if meta.file_type().is_file() {
            if meta.len() < bytes {
                // Sparse: no block is allocated until a slot is written.
                file.set_len(bytes).map_err(fail)?;
            }
        } else {
            return Err(fail(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file or a block device",
            )));
        }
        Ok(SwapFile {
            file,
            path: path.to_path_buf(),
            pages,
            page_size,
            area_id: random_id().map_err(fail)?,
            direct,
            block_device,
            pacer: options.disk_mbps.map(|mbps| Pacer::new(mbps * 1e6)),
        })
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
        Ok(slot * self.page_size as u64)
    }

    /// Give the blocks of `count` slots from `slot` back to the filesystem.
    /// Where holes are not supported (block devices, some filesystems) the
    /// slots are merely forgotten, as a swap device forgets a freed slot.
    fn punch_range(&self, slot: u64, count: u64) -> io::Result<()> {
        if self.block_device || count == 0 {
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

/// Open `path` read-write, never through a symlink, creating it with mode
/// 0600 if missing; with `direct`, `O_DIRECT` where the filesystem allows.
/// Returns the file and whether `O_DIRECT` is in effect.
fn open_file(path: &Path, direct: bool) -> io::Result<(File, bool)> {
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
    match open(direct) {
        // tmpfs and some others refuse O_DIRECT at open time.
        Err(e) if direct && e.raw_os_error() == Some(libc::EINVAL) => Ok((open(false)?, false)),
        other => Ok((other?, direct)),
    }
}

/// Take the open file description's write lock on the whole file (an OFD
/// lock, `F_OFD_SETLK`), held until the file is closed. Unlike a classic
/// POSIX lock it belongs to this open, not to the process, so a second open
/// conflicts with it even from the same process (a second cache, or this
/// one): two areas never share a file. `EBUSY` if another open holds it, as
/// the kernel's swapon says of a swap file in use.
fn lock(file: &File) -> io::Result<()> {
    // SAFETY: `flock` is plain old data, valid all zeros.
    let mut whole: libc::flock = unsafe { std::mem::zeroed() };
    whole.l_type = libc::F_WRLCK as libc::c_short;
    whole.l_whence = libc::SEEK_SET as libc::c_short;
    // l_start = 0, l_len = 0: from the start to any end; l_pid must be 0.
    // SAFETY: the descriptor is open (owned by `file`) and `whole` is a
    // valid `struct flock` that outlives the call.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &whole) };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Err(io::Error::from_raw_os_error(libc::EBUSY)),
        _ => Err(e),
    }
}

/// A random 64-bit id from the kernel's CSPRNG (`getrandom(2)`).
fn random_id() -> io::Result<u64> {
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
        assert_eq!(meta.len(), (1 << 16) * 4096);
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
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 4 * 4096);
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
