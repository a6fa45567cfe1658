//! The swap file's header, and what else a file or device may already hold.
//!
//! Like the kernel's `mkswap` signature, every zswap-rs swap file starts
//! with a header of its own, in a page of its own *before* slot 0, so that
//! slot `n` stays the page of swap offset `n` (at byte `(n + 1) *
//! page_size`). The kernel instead keeps its signature inside page 0 and
//! never uses that page for swap; we keep every offset usable and pay one
//! page of disk per file. The header is:
//!
//! | bytes  | what                                          |
//! |--------|-----------------------------------------------|
//! | 0..8   | magic `b"zswap-rs"`                           |
//! | 8..12  | format version, `u32` little-endian (1)       |
//! | 12..16 | page size, `u32` little-endian                |
//! | 16..24 | slots, `u64` little-endian                    |
//! | 24..32 | area id, `u64` little-endian (random, new per `swapon`) |
//! | 32..36 | CRC32C of bytes 0..32                         |
//!
//! and zeros to the end of the page. Nothing after it is trusted: every page
//! read back is checked against a check kept in memory, which covers the
//! area id written here ([`super::page_check`]).
//!
//! Before writing a header on anything that is not new or empty, the first
//! [`PROBE_BYTES`] are read and checked for the well-known signatures a
//! user's data carries, so that a filesystem, a partition table or an
//! encrypted volume is never taken for free space. The offsets are those of
//! the on-disk formats (as util-linux's libblkid probes them); the code is
//! ours.

/// The header's magic, at byte 0.
pub const MAGIC: [u8; 8] = *b"zswap-rs";

/// The header format this build writes and reads. A file of another version
/// is refused, never reinterpreted.
pub const VERSION: u32 = 1;

/// Bytes of the header that carry data; the rest of its page is zeros.
const HEADER_BYTES: usize = 36;

/// How far into a file or device the signatures below are looked for: past
/// btrfs's superblock at 64 KiB, the farthest of them.
pub const PROBE_BYTES: usize = 0x11000;

/// A parsed zswap-rs header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The page size the file was made for.
    pub page_size: u32,
    /// Slots it was made for.
    pub slots: u64,
    /// The random id of the area that last wrote it.
    pub area_id: u64,
}

impl Header {
    /// The header's page: the fields above, then zeros to `page_size`.
    pub fn encode(&self, page_size: usize) -> Vec<u8> {
        let mut page = vec![0u8; page_size];
        page[0..8].copy_from_slice(&MAGIC);
        page[8..12].copy_from_slice(&VERSION.to_le_bytes());
        page[12..16].copy_from_slice(&self.page_size.to_le_bytes());
        page[16..24].copy_from_slice(&self.slots.to_le_bytes());
        page[24..32].copy_from_slice(&self.area_id.to_le_bytes());
        let crc = crc32c::crc32c(&page[0..32]);
        page[32..36].copy_from_slice(&crc.to_le_bytes());
        page
    }
}

/// What the start of a file or device holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    /// Nothing: a regular file of length 0.
    Empty,
    /// A zswap-rs swap file.
    Ours(Header),
    /// A zswap-rs magic with a header that is damaged or of another version:
    /// refused, never guessed at.
    BadHeader(String),
    /// A well-known signature: what it is.
    Known(&'static str),
    /// Bytes that are all zeros, as far as they were read (a new device, a
    /// file of zeros).
    Blank,
    /// Something else: somebody's data.
    Data,
}

impl Content {
    /// What it is, for a message that refuses it.
    pub fn describe(&self) -> String {
        match self {
            Content::Empty => "nothing".into(),
            Content::Ours(h) => format!("a zswap-rs swap file of page size {}", h.page_size),
            Content::BadHeader(why) => format!("a zswap-rs header that {why}"),
            Content::Known(what) => format!("{what} signature"),
            Content::Blank => "no zswap-rs header (only zeros)".into(),
            Content::Data => "data that is not a zswap-rs swap file".into(),
        }
    }
}

/// A signature: `magic` at byte `at`, and what it means.
struct Signature {
    at: usize,
    magic: &'static [u8],
    what: &'static str,
}

/// The well-known signatures, by on-disk offset.
const SIGNATURES: &[Signature] = &[
    // LUKS1 and LUKS2 headers start with "LUKS\xba\xbe".
    Signature {
        at: 0,
        magic: b"LUKS\xba\xbe",
        what: "a LUKS encrypted volume's",
    },
    // The XFS superblock is sector 0; sb_magicnum "XFSB".
    Signature {
        at: 0,
        magic: b"XFSB",
        what: "an XFS filesystem's",
    },
    // ext2/3/4: superblock at byte 1024, s_magic 0xEF53 (little-endian) at
    // offset 56 in it.
    Signature {
        at: 1024 + 56,
        magic: &[0x53, 0xef],
        what: "an ext2/3/4 filesystem's",
    },
    // LVM2 physical volume label, in sector 1 (where pvcreate puts it).
    Signature {
        at: 512,
        magic: b"LABELONE",
        what: "an LVM physical volume's",
    },
    // GPT header at LBA 1: byte 512 with 512-byte sectors, 4096 with 4 KiB.
    Signature {
        at: 512,
        magic: b"EFI PART",
        what: "a GPT partition table's",
    },
    Signature {
        at: 4096,
        magic: b"EFI PART",
        what: "a GPT partition table's",
    },
    // md RAID superblock 1.1 (at 0) and 1.2 (at 4 KiB): 0xa92b4efc LE.
    Signature {
        at: 0,
        magic: &[0xfc, 0x4e, 0x2b, 0xa9],
        what: "an md RAID member's",
    },
    Signature {
        at: 4096,
        magic: &[0xfc, 0x4e, 0x2b, 0xa9],
        what: "an md RAID member's",
    },
    // ISO 9660: the primary volume descriptor at 32 KiB, "CD001" at byte 1.
    Signature {
        at: 0x8001,
        magic: b"CD001",
        what: "an ISO 9660 filesystem's",
    },
    // btrfs: superblock at 64 KiB, magic "_BHRfS_M" at offset 0x40 in it.
    Signature {
        at: 0x10000 + 0x40,
        magic: b"_BHRfS_M",
        what: "a btrfs filesystem's",
    },
];

/// Page sizes the kernel's swap signature may have been made for: it sits in
/// the last 10 bytes of the first page.
const KERNEL_PAGE_SIZES: [usize; 5] = [4096, 8192, 16384, 32768, 65536];

/// What `start` (the first up to [`PROBE_BYTES`] of a file or device whose
/// length is `len`) holds. Ours is looked for first: a zswap-rs file's slots
/// may hold any bytes, including a page that looks like a filesystem.
pub fn probe(start: &[u8], len: u64) -> Content {
    if len == 0 {
        return Content::Empty;
    }
    if start.starts_with(&MAGIC) {
        return parse_ours(start);
    }
    if let Some(what) = known(start) {
        return Content::Known(what);
    }
    if start.iter().all(|&b| b == 0) {
        Content::Blank
    } else {
        Content::Data
    }
}

fn known(start: &[u8]) -> Option<&'static str> {
    let at = |offset: usize, magic: &[u8]| start.get(offset..offset + magic.len()) == Some(magic);
    for ps in KERNEL_PAGE_SIZES {
        if at(ps - 10, b"SWAPSPACE2") || at(ps - 10, b"SWAP-SPACE") {
            return Some("a Linux swap area's");
        }
    }
    if let Some(s) = SIGNATURES.iter().find(|s| at(s.at, s.magic)) {
        return Some(s.what);
    }
    // An MBR (or any boot sector: FAT, NTFS) ends its first sector so.
    at(510, &[0x55, 0xaa]).then_some("an MBR partition table or boot sector's")
}

fn parse_ours(start: &[u8]) -> Content {
    let Some(h) = start.get(..HEADER_BYTES) else {
        return Content::BadHeader("is cut short".into());
    };
    let u32_at = |i: usize| u32::from_le_bytes(h[i..i + 4].try_into().expect("4 bytes"));
    let u64_at = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().expect("8 bytes"));
    if crc32c::crc32c(&h[0..32]) != u32_at(32) {
        return Content::BadHeader("fails its check (damaged)".into());
    }
    let version = u32_at(8);
    if version != VERSION {
        return Content::BadHeader(format!(
            "is of format version {version}; this build reads {VERSION}"
        ));
    }
    Content::Ours(Header {
        page_size: u32_at(12),
        slots: u64_at(16),
        area_id: u64_at(24),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: usize, magic: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; PROBE_BYTES];
        v[offset..offset + magic.len()].copy_from_slice(magic);
        v
    }

    #[test]
    fn a_header_reads_back() {
        let h = Header {
            page_size: 4096,
            slots: 1 << 20,
            area_id: 0x0123_4567_89ab_cdef,
        };
        let page = h.encode(4096);
        assert_eq!(page.len(), 4096);
        assert_eq!(probe(&page, 4096), Content::Ours(h));
        let mut damaged = page.clone();
        damaged[20] ^= 1;
        assert!(matches!(probe(&damaged, 4096), Content::BadHeader(_)));
        let mut future = page.clone();
        future[8] = 2;
        let crc = crc32c::crc32c(&future[0..32]);
        future[32..36].copy_from_slice(&crc.to_le_bytes());
        let Content::BadHeader(why) = probe(&future, 4096) else {
            panic!("a version 2 header is not read as version 1");
        };
        assert!(why.contains("version 2"), "{why}");
        assert!(matches!(probe(&page[..20], 20), Content::BadHeader(_)));
    }

    #[test]
    fn well_known_signatures_are_recognised() {
        let cases: &[(usize, &[u8], &str)] = &[
            (1080, &[0x53, 0xef], "ext2/3/4"),
            (0, b"XFSB", "XFS"),
            (0x10040, b"_BHRfS_M", "btrfs"),
            (4086, b"SWAPSPACE2", "swap"),
            (65526, b"SWAPSPACE2", "swap"),
            (8182, b"SWAP-SPACE", "swap"),
            (510, &[0x55, 0xaa], "MBR"),
            (512, b"EFI PART", "GPT"),
            (4096, b"EFI PART", "GPT"),
            (0, b"LUKS\xba\xbe", "LUKS"),
            (512, b"LABELONE", "LVM"),
            (4096, &[0xfc, 0x4e, 0x2b, 0xa9], "md RAID"),
            (0x8001, b"CD001", "ISO 9660"),
        ];
        for &(offset, magic, what) in cases {
            let Content::Known(found) = probe(&at(offset, magic), 1 << 20) else {
                panic!("{what} at {offset} not recognised");
            };
            assert!(found.contains(what), "{found} for {what}");
        }
    }

    #[test]
    fn anything_else_is_blank_data_or_empty() {
        assert_eq!(probe(&[], 0), Content::Empty);
        assert_eq!(probe(&vec![0u8; PROBE_BYTES], 1 << 30), Content::Blank);
        assert_eq!(probe(b"my thesis, chapter 1", 20), Content::Data);
        // A short file: signatures past its end are not read out of bounds.
        assert_eq!(probe(&[0u8; 100], 100), Content::Blank);
    }
}
