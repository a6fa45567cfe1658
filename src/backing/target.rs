//! Opening a path as a swap file, and refusing what is not one.
//!
//! The kernel's swapon takes only what `mkswap` signed, and `mkswap` warns
//! before overwriting a filesystem. Here the same rules hold, checked in an
//! order that writes nothing until every check has passed:
//!
//! 1. open read-write, never through a symlink (`O_NOFOLLOW`); a missing
//!    path is created with mode 0600 (`O_CREAT | O_EXCL`, so a file that
//!    appears meanwhile is not taken for new); a block device is opened
//!    `O_EXCL`, which the kernel refuses (`EBUSY`) while it is mounted or
//!    claimed, as its own swapon does;
//! 2. only a regular file or a block device, and not on a kernel-interface
//!    filesystem (procfs, sysfs, ...): `/proc/self/mem` is a "regular file"
//!    whose offsets are the process's memory;
//! 3. lock the open file (an OFD lock): another area, cache or process
//!    using it gives `EBUSY`;
//! 4. read the first [`PROBE_BYTES`] and decide from what they hold
//!    ([`probe`]): `swapon` takes a new or empty file or a zswap-rs file of
//!    its page size; `mkswap` also takes a blank one and, with `force`,
//!    anything.
//!
//! Refusals are `BackingStoreError` with errno `EINVAL` (`EBUSY` for a file
//! in use) and a message that says what the path holds.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;

use super::header::{probe, Content, Header, PROBE_BYTES};
use crate::error::{Error, ErrorKind, Result};

/// Kernel-interface filesystems (`f_type` of `statfs(2)`, from the kernel's
/// `include/uapi/linux/magic.h`): their files are windows into the kernel or
/// a process, never storage.
const PSEUDO_FILESYSTEMS: &[(i64, &str)] = &[
    (0x9fa0, "procfs"),
    (0x6265_6572, "sysfs"),
    (0x6462_6720, "debugfs"),
    (0x7472_6163, "tracefs"),
    (0x7363_6673, "securityfs"),
    (0x0027_e0eb, "cgroupfs"),
    (0x6367_7270, "cgroup2fs"),
    (0x6265_6570, "configfs"),
    (0xde5e_81e4, "efivarfs"),
    (0x6165_676c, "pstore"),
    (0xcafe_4a11, "bpffs"),
    (0x1cd1, "devpts"),
    (0x6573_5543, "fusectl"),
    (0x4249_4e4d, "binfmt_misc"),
    (0xf97c_ff8c, "selinuxfs"),
    (0x4341_5d53, "smackfs"),
    (0x6e73_6673, "nsfs"),
];

/// A path opened, checked and locked, not yet written to.
pub(super) struct Target<'a> {
    pub(super) file: File,
    pub(super) path: &'a Path,
    pub(super) block_device: bool,
    /// Bytes: the file's length, or the device's size.
    pub(super) len: u64,
    /// Made by this open: removed again if the open fails later.
    created: bool,
}

/// An `EINVAL` refusal of `path`, saying why.
pub(super) fn refuse(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::io(
        ErrorKind::Backing,
        format!("{} is refused as a swap file: {why}", path.display()),
        io::Error::from_raw_os_error(libc::EINVAL),
    )
}

impl<'a> Target<'a> {
    /// Steps 1 to 3 above.
    pub(super) fn open(path: &'a Path) -> Result<Target<'a>> {
        let (file, created) = open_or_create(path).map_err(|e| {
            let why = match e.raw_os_error() {
                Some(libc::EBUSY) => "cannot open swap file (in use: mounted, or claimed)",
                _ => "cannot open swap file",
            };
            Error::io(ErrorKind::Backing, format!("{why} {}", path.display()), e)
        })?;
        let mut target = Target {
            file,
            path,
            block_device: false,
            len: 0,
            created,
        };
        let checked = target.check_kind().and_then(|()| {
            lock(&target.file).map_err(|e| {
                let what = match e.raw_os_error() == Some(libc::EBUSY) {
                    true => "is in use by another swap area (of this or another process)",
                    false => "cannot be locked",
                };
                Error::io(
                    ErrorKind::Backing,
                    format!("swap file {} {what}", path.display()),
                    e,
                )
            })
        });
        match checked {
            Ok(()) => Ok(target),
            Err(e) => Err(target.abandon(e)),
        }
    }

    /// Step 2: a regular file or a block device, not on procfs or kin.
    fn check_kind(&mut self) -> Result<()> {
        let fail = |e| {
            Error::io(
                ErrorKind::Backing,
                format!("cannot stat {}", self.path.display()),
                e,
            )
        };
        let meta = self.file.metadata().map_err(fail)?;
        let kind = meta.file_type();
        if kind.is_char_device() {
            return Err(refuse(
                self.path,
                "it is a character device; a swap file must be a regular file or a block device",
            ));
        }
        if !kind.is_file() && !kind.is_block_device() {
            return Err(refuse(
                self.path,
                "it is not a regular file or a block device",
            ));
        }
        // SAFETY: `statfs` is plain old data, valid all zeros.
        let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: the descriptor is open (owned by `self.file`) and `fs` is
        // a valid `struct statfs` for the kernel to fill.
        if unsafe { libc::fstatfs(self.file.as_raw_fd(), &mut fs) } != 0 {
            return Err(fail(io::Error::last_os_error()));
        }
        // f_type is signed on some ABIs; the magics are 32-bit patterns.
        let f_type = fs.f_type as i64 & 0xffff_ffff;
        if let Some((_, name)) = PSEUDO_FILESYSTEMS.iter().find(|(m, _)| *m == f_type) {
            return Err(refuse(
                self.path,
                format!("it is on {name}, a kernel interface, not storage"),
            ));
        }
        self.block_device = kind.is_block_device();
        self.len = match self.block_device {
            true => device_size(&self.file).map_err(fail)?,
            false => meta.len(),
        };
        Ok(())
    }

    /// Step 4's read: what the start of the file or device holds.
    pub(super) fn probe(&self) -> Result<Content> {
        let want = self.len.min(PROBE_BYTES as u64) as usize;
        let mut start = vec![0u8; want];
        let mut got = 0;
        while got < want {
            match self.file.read_at(&mut start[got..], got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io("cannot read", e)),
            }
        }
        start.truncate(got);
        Ok(probe(&start, self.len))
    }

    /// Make room for `bytes` (header and slots): a block device must hold
    /// them; a regular file grows, sparse (no block is allocated until a
    /// slot is written).
    pub(super) fn ensure_size(&mut self, bytes: u64) -> Result<()> {
        if self.block_device {
            if self.len < bytes {
                return Err(refuse(
                    self.path,
                    format!(
                        "the block device holds {} bytes; the header and slots need {bytes}",
                        self.len
                    ),
                ));
            }
            return Ok(());
        }
        if self.len < bytes {
            self.file
                .set_len(bytes)
                .map_err(|e| self.io("cannot size", e))?;
            self.len = bytes;
        }
        Ok(())
    }

    /// Cut a regular file to `bytes`, all holes: nothing of what it held
    /// is left (`mkswap`).
    pub(super) fn truncate(&mut self, bytes: u64) -> Result<()> {
        self.file
            .set_len(0)
            .and_then(|()| self.file.set_len(bytes))
            .map_err(|e| self.io("cannot size", e))?;
        self.len = bytes;
        Ok(())
    }

    /// Zero the device's first [`PROBE_BYTES`] after the header's page, so
    /// that no signature of what it held before is left to be found.
    pub(super) fn zero_probe_window(&self, page_size: usize) -> Result<()> {
        let end = self.len.min(PROBE_BYTES.next_multiple_of(page_size) as u64);
        let zeros = vec![0u8; page_size];
        let mut at = page_size as u64;
        while at < end {
            let n = (end - at).min(page_size as u64) as usize;
            self.file
                .write_all_at(&zeros[..n], at)
                .map_err(|e| self.io("cannot clear", e))?;
            at += n as u64;
        }
        Ok(())
    }

    /// Give back every block past the header of a regular file: what an
    /// earlier area left there is never read again.
    pub(super) fn forget_slots(&self, page_size: usize) {
        if self.block_device || self.len <= page_size as u64 {
            return;
        }
        // SAFETY: fallocate only reads its integer arguments; the
        // descriptor is owned by `self.file` and open for writing.
        // Best effort: where holes are not supported the bytes stay, and the
        // page checks keep them from being read as pages.
        unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                page_size as libc::off_t,
                (self.len - page_size as u64) as libc::off_t,
            );
        }
    }

    /// Write the header's page at byte 0.
    pub(super) fn write_header(&self, header: &Header, page_size: usize) -> Result<()> {
        self.file
            .write_all_at(&header.encode(page_size), 0)
            .map_err(|e| self.io("cannot write the header of", e))
    }

    /// An I/O error on the target.
    pub(super) fn io(&self, what: &str, e: io::Error) -> Error {
        Error::io(
            ErrorKind::Backing,
            format!("{what} swap file {}", self.path.display()),
            e,
        )
    }

    /// Give up: remove the file if this open made it, and return `e`.
    pub(super) fn abandon(self, e: Error) -> Error {
        if self.created {
            let _ = std::fs::remove_file(self.path);
        }
        e
    }
}

/// Open `path` read-write without following a symlink; create it (mode
/// 0600) if it does not exist. Returns the file and whether it was created.
fn open_or_create(path: &Path) -> io::Result<(File, bool)> {
    // O_EXCL without O_CREAT: an exclusive claim on a block device, ignored
    // for other files.
    let flags = libc::O_NOFOLLOW | libc::O_CLOEXEC;
    let existing = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(flags | libc::O_EXCL)
        .open(path);
    match existing {
        Err(e) if e.kind() == io::ErrorKind::NotFound => OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(flags)
            .open(path)
            .map(|f| (f, true)),
        other => other.map(|f| (f, false)),
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

/// Size in bytes of the block device open as `file`.
fn device_size(file: &File) -> io::Result<u64> {
    use std::io::{Seek, SeekFrom};
    // Seeking to the end of a block device gives its size without an ioctl.
    let mut f = file.try_clone()?;
    f.seek(SeekFrom::End(0))
}

/// Turn on `O_DIRECT` for `file` where its filesystem allows; returns
/// whether it is on. The header is written before, through the page cache.
pub(super) fn set_direct(file: &File) -> bool {
    let fd = file.as_raw_fd();
    // SAFETY: F_GETFL and F_SETFL take and return plain integers on an open
    // descriptor owned by `file`.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_DIRECT) == 0
    }
}
