//! Hardware compressors: raw deflate on Intel IAA ([`iaa`], `deflate-iaa`)
//! and IBM POWER NX ([`nx`], `nx-gzip`).
//!
//! Both produce and read plain raw deflate (RFC 1951) with a 4 KiB history,
//! so a page compressed by either decompresses with the software `deflate`
//! and the other way round, and an entry stays readable when the hardware is
//! gone. Neither needs anything at build time: IAA is reached through the
//! idxd driver's sysfs and character devices with the descriptor layout of
//! `linux/idxd.h` ([`idxd`]), NX through libnxz opened at run time. What a
//! machine lacks is reported, not hidden: [`iaa::detect`] and
//! [`nx::detect_in`] say what they looked for and did not find, and that
//! text is what `compressors()` shows and `ConfigError` carries.
//!
//! The trade-off: with no accelerator in this workplace, the code that
//! touches real hardware (the portal mmap and its MOVDIR64B/ENQCMD writes,
//! libnxz itself) is built and reviewed but only ever run against models:
//! a device model that executes the very descriptors the driver writes
//! (`tests/iaa_model`), and the system zlib loaded through the NX loader.

pub mod iaa;
pub mod idxd;
pub mod nx;

pub use iaa::{Iaa, IaaConfig, IaaStats, Portal};
pub use nx::{NxGzip, ZlibApi};
