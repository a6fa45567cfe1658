//! The userfaultfd interface a region needs, as thin safe wrappers: open a
//! userfaultfd (the syscall, then `/dev/userfaultfd`), the API handshake,
//! register a range, and the resolving ioctls (`UFFDIO_COPY`, `ZEROPAGE`,
//! `MOVE`, `WRITEPROTECT`, `WAKE`).
//!
//! The constants are the kernel's uapi (`include/uapi/linux/userfaultfd.h`),
//! written here because the libc crate does not carry `UFFDIO_MOVE` (Linux
//! 6.8) yet. The ioctl numbers use the generic `_IOC` encoding, which x86-64,
//! arm64 and riscv64 share.
//!
//! Every call returns `io::Result`; none panics, and none touches memory
//! other than the ranges the caller names (which the kernel checks).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const UFFDIO: u64 = 0xAA;
const UFFD_API: u64 = 0xAA;

const fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | (UFFDIO << 8) | nr
}
const IOC_WRITE: u64 = 1;
const IOC_READ: u64 = 2;
const IOWR: u64 = IOC_READ | IOC_WRITE;

const UFFDIO_API: u64 = ioc(IOWR, 0x3F, 24);
const UFFDIO_REGISTER: u64 = ioc(IOWR, 0x00, 32);
const UFFDIO_WAKE: u64 = ioc(IOC_READ, 0x02, 16);
const UFFDIO_COPY: u64 = ioc(IOWR, 0x03, 40);
const UFFDIO_ZEROPAGE: u64 = ioc(IOWR, 0x04, 32);
const UFFDIO_MOVE: u64 = ioc(IOWR, 0x05, 40);
const UFFDIO_WRITEPROTECT: u64 = ioc(IOWR, 0x06, 24);
/// `/dev/userfaultfd`'s only ioctl: a new userfaultfd with these flags.
const USERFAULTFD_IOC_NEW: u64 = ioc(0, 0x00, 0);

/// Fault messages carry the write bit (and WP faults are reported at all).
pub const FEATURE_PAGEFAULT_FLAG_WP: u64 = 1 << 0;
/// Fault messages carry the faulting thread's id.
pub const FEATURE_THREAD_ID: u64 = 1 << 8;
/// `UFFD_FEATURE_SIGBUS`: a fault raises `SIGBUS` in the faulting thread
/// instead of queueing a message (signal mode).
pub const FEATURE_SIGBUS: u64 = 1 << 7;
/// `UFFDIO_MOVE` is implemented (Linux 6.8).
pub const FEATURE_MOVE: u64 = 1 << 16;

/// Register for faults on pages that are not mapped.
pub const REGISTER_MODE_MISSING: u64 = 1 << 0;
/// Register for writes to write-protected pages.
pub const REGISTER_MODE_WP: u64 = 1 << 1;

const COPY_MODE_DONTWAKE: u64 = 1 << 0;
const COPY_MODE_WP: u64 = 1 << 1;
const ZEROPAGE_MODE_DONTWAKE: u64 = 1 << 0;
const WRITEPROTECT_MODE_WP: u64 = 1 << 0;
const WRITEPROTECT_MODE_DONTWAKE: u64 = 1 << 1;

/// `uffd_msg.event` of a page fault.
pub const EVENT_PAGEFAULT: u8 = 0x12;
/// The fault is a write.
pub const PAGEFAULT_FLAG_WRITE: u64 = 1 << 0;
/// The fault is a write to a write-protected page.
pub const PAGEFAULT_FLAG_WP: u64 = 1 << 1;

/// `struct uffd_msg` (32 bytes), pagefault member of the union only.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Msg {
    /// `UFFD_EVENT_*`.
    pub event: u8,
    reserved1: u8,
    reserved2: u16,
    reserved3: u32,
    /// `UFFD_PAGEFAULT_FLAG_*`.
    pub flags: u64,
    /// The faulting address, page-aligned.
    pub address: u64,
    /// The faulting thread (with `FEATURE_THREAD_ID`).
    pub ptid: u32,
    reserved4: u32,
}

const _: () = assert!(std::mem::size_of::<Msg>() == 32);

#[repr(C)]
struct Api {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
struct Range {
    start: u64,
    len: u64,
}

#[repr(C)]
struct Register {
    range: Range,
    mode: u64,
    ioctls: u64,
}

/// `uffdio_copy` and `uffdio_move` share this layout.
#[repr(C)]
struct CopyMove {
    dst: u64,
    src: u64,
    len: u64,
    mode: u64,
    result: i64,
}

#[repr(C)]
struct Zeropage {
    range: Range,
    mode: u64,
    result: i64,
}

#[repr(C)]
struct Writeprotect {
    range: Range,
    mode: u64,
}

/// How the userfaultfd was obtained, for `userfaultfd_status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The `userfaultfd(2)` syscall.
    Syscall,
    /// `/dev/userfaultfd` (Linux 6.1), allowed by its file permissions.
    Device,
}

/// An open userfaultfd that passed the API handshake.
#[derive(Debug)]
pub struct Uffd {
    fd: OwnedFd,
    /// Where it came from.
    pub source: Source,
}

fn cvt(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

impl Uffd {
    /// Open a userfaultfd that also serves faults taken in kernel mode (so
    /// no `UFFD_USER_MODE_ONLY`), non-blocking, close-on-exec: first the
    /// syscall, then `/dev/userfaultfd`. The error is the syscall's when
    /// both fail (EPERM when `vm.unprivileged_userfaultfd` is 0, ENOSYS or
    /// EPERM under a seccomp filter), with the device's as a second.
    pub fn open() -> Result<Uffd, (io::Error, Option<io::Error>)> {
        let flags = libc::O_CLOEXEC | libc::O_NONBLOCK;
        // SAFETY: userfaultfd(2) takes one int of flags and returns an fd.
        let r = unsafe { libc::syscall(libc::SYS_userfaultfd, flags) };
        if r >= 0 {
            // SAFETY: a fresh fd that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(r as RawFd) };
            return Ok(Uffd {
                fd,
                source: Source::Syscall,
            });
        }
        let sys_err = io::Error::last_os_error();
        match Self::open_device(flags) {
            Ok(fd) => Ok(Uffd {
                fd,
                source: Source::Device,
            }),
            Err(dev_err) => Err((sys_err, Some(dev_err))),
        }
    }

    fn open_device(flags: libc::c_int) -> io::Result<OwnedFd> {
        let dev = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/userfaultfd")?;
        // SAFETY: USERFAULTFD_IOC_NEW takes the flags as its integer argument.
        let r = unsafe { libc::ioctl(dev.as_raw_fd(), USERFAULTFD_IOC_NEW as _, flags) };
        cvt(r as libc::c_long)?;
        // SAFETY: the ioctl returned a fresh fd that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(r) })
    }

    /// The API handshake asking for `features`; returns what the kernel
    /// offers (the handshake fails with EINVAL if any asked is missing).
    pub fn handshake(&self, features: u64) -> io::Result<u64> {
        let mut api = Api {
            api: UFFD_API,
            features,
            ioctls: 0,
        };
        self.ioctl(UFFDIO_API, &mut api)?;
        Ok(api.features)
    }

    fn ioctl<T>(&self, req: u64, arg: &mut T) -> io::Result<()> {
        // SAFETY: every request used here takes a pointer to the struct `T`
        // the caller passes (sizes are encoded in the request numbers above
        // and match the `repr(C)` structs); the kernel reads and writes only
        // that struct, and checks every address inside it.
        let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), req as _, arg as *mut T) };
        cvt(r as libc::c_long).map(drop)
    }

    /// Register `[start, start + len)` for `mode` faults.
    pub fn register(&self, start: usize, len: usize, mode: u64) -> io::Result<()> {
        let mut reg = Register {
            range: Range {
                start: start as u64,
                len: len as u64,
            },
            mode,
            ioctls: 0,
        };
        self.ioctl(UFFDIO_REGISTER, &mut reg)
    }

    /// Map `len` bytes copied from `src` at `dst` (all missing), write
    /// protected if `wp`; wakes the threads waiting there if `wake` (else
    /// a later [`wake`](Uffd::wake) must). Returns the bytes mapped, which
    /// may be fewer on an error part way.
    pub fn copy(
        &self,
        dst: usize,
        src: *const u8,
        len: usize,
        wp: bool,
        wake: bool,
    ) -> io::Result<usize> {
        let mut mode = if wp { COPY_MODE_WP } else { 0 };
        if !wake {
            mode |= COPY_MODE_DONTWAKE;
        }
        let mut c = CopyMove {
            dst: dst as u64,
            src: src as u64,
            len: len as u64,
            mode,
            result: 0,
        };
        self.ioctl(UFFDIO_COPY, &mut c).map(|()| c.result as usize)
    }

    /// Map the shared zero page at `[dst, dst + len)` (all missing),
    /// waking the threads waiting there if `wake`.
    pub fn zeropage(&self, dst: usize, len: usize, wake: bool) -> io::Result<()> {
        let mut z = Zeropage {
            range: Range {
                start: dst as u64,
                len: len as u64,
            },
            mode: if wake { 0 } else { ZEROPAGE_MODE_DONTWAKE },
            result: 0,
        };
        self.ioctl(UFFDIO_ZEROPAGE, &mut z)
    }

    /// Move the page tables entries of `[src, src + len)` to `dst` (which
    /// must be unmapped): atomically, so that any access to `src` after it
    /// is a missing fault. Waiters at `dst` are woken.
    pub fn move_pages(&self, dst: usize, src: usize, len: usize) -> io::Result<usize> {
        let mut m = CopyMove {
            dst: dst as u64,
            src: src as u64,
            len: len as u64,
            mode: 0,
            result: 0,
        };
        self.ioctl(UFFDIO_MOVE, &mut m).map(|()| m.result as usize)
    }

    /// Clear write protection on `[start, start + len)`, waking the writers
    /// waiting there if `wake`.
    pub fn unprotect(&self, start: usize, len: usize, wake: bool) -> io::Result<()> {
        let mut w = Writeprotect {
            range: Range {
                start: start as u64,
                len: len as u64,
            },
            mode: if wake { 0 } else { WRITEPROTECT_MODE_DONTWAKE },
        };
        self.ioctl(UFFDIO_WRITEPROTECT, &mut w)
    }

    /// Write-protect `[start, start + len)`.
    pub fn protect(&self, start: usize, len: usize) -> io::Result<()> {
        let mut w = Writeprotect {
            range: Range {
                start: start as u64,
                len: len as u64,
            },
            mode: WRITEPROTECT_MODE_WP,
        };
        self.ioctl(UFFDIO_WRITEPROTECT, &mut w)
    }

    /// Wake the threads waiting on faults in `[start, start + len)`, to
    /// retry their access.
    pub fn wake(&self, start: usize, len: usize) -> io::Result<()> {
        let mut r = Range {
            start: start as u64,
            len: len as u64,
        };
        self.ioctl(UFFDIO_WAKE, &mut r)
    }

    /// Read pending messages into `out` without blocking; returns how many.
    pub fn read_msgs(&self, out: &mut [Msg]) -> io::Result<usize> {
        // SAFETY: `out` is a writable array of `Msg`, plain old data of the
        // kernel's `uffd_msg` layout; read(2) writes at most its length.
        let r = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                out.as_mut_ptr().cast(),
                std::mem::size_of_val(out),
            )
        };
        match cvt(r as libc::c_long) {
            Ok(n) => Ok(n as usize / std::mem::size_of::<Msg>()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// The raw fd, for poll(2).
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Features a region needs: the write bit in messages (for clean pages),
/// thread ids (to signal a thread whose page cannot be loaded), MOVE.
pub const REQUIRED_FEATURES: u64 = FEATURE_PAGEFAULT_FLAG_WP | FEATURE_THREAD_ID | FEATURE_MOVE;

/// Whether a region can be made here: `(usable, mode, reason)`. `mode` is
/// how the userfaultfd is obtained (`"syscall"`, `"/dev/userfaultfd"`) or
/// `"none"`; `reason` says why not, and what to change.
pub fn status() -> (bool, &'static str, String) {
    let uffd = match Uffd::open() {
        Ok(u) => u,
        Err((sys, dev)) => return (false, "none", refused_message(&sys, dev.as_ref())),
    };
    let mode = match uffd.source {
        Source::Syscall => "syscall",
        Source::Device => "/dev/userfaultfd",
    };
    match uffd.handshake(REQUIRED_FEATURES) {
        Ok(_) => (true, mode, String::new()),
        Err(e) => (false, mode, features_message(&e)),
    }
}

/// What to tell a user whose userfaultfd was refused.
pub fn refused_message(sys: &io::Error, dev: Option<&io::Error>) -> String {
    let dev = dev.map_or(String::new(), |d| format!("; /dev/userfaultfd: {d}"));
    format!(
        "userfaultfd is not available to this process (userfaultfd(2): {sys}{dev}). \
         To allow it: `sysctl vm.unprivileged_userfaultfd=1`, or give this user \
         read-write access to /dev/userfaultfd (Linux >= 6.1), or run with CAP_SYS_PTRACE; \
         a seccomp filter (a container runtime's default profile) may also forbid the syscall"
    )
}

/// What to tell a user whose kernel lacks a feature a region needs.
pub fn features_message(e: &io::Error) -> String {
    format!(
        "this kernel's userfaultfd lacks features a region needs \
         (write-protect faults, thread ids, UFFDIO_MOVE: Linux >= 6.8): {e}"
    )
}
