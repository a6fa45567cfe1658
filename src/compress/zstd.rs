//! zstd through the `zstd` crate (libzstd built from source and linked in),
//! with levels and an optional trained dictionary.
//!
//! zstd packs anonymous memory tighter than lz4 and lzo (on real pages at
//! level 3: ratio 2.6 against 2.0 and 2.1) for 2-3x their CPU time per
//! page: the better bargain when the pool is the bottleneck, the worse one
//! when the CPU is. A 4 KiB page is a small input for any compressor: much
//! of its redundancy is with other pages (the same structs, the same
//! pointers' high bytes), which a dictionary trained on sample pages
//! captures, as zram offers; zstd uses a trained dictionary's content, not
//! its entropy tables (see [`dictionary_content`] for why). The dictionary
//! is parsed once per instance ([`EncoderDictionary`] and
//! [`DecoderDictionary`], shared by all threads); the compression and
//! decompression contexts are per thread and reused for every page,
//! whatever the level and dictionary.
//!
//! Default level 3, zstd's own default and the level the kernel's zstd for
//! zswap and zram uses: higher levels cost 2-10x the time for a few percent
//! on 4 KiB inputs, negative levels trade ratio for lz4-like speed.

use std::cell::RefCell;
use std::fmt;

use zstd::dict::{DecoderDictionary, EncoderDictionary};
use zstd::zstd_safe::{self, CCtx, DCtx};

use super::{CompressError, Compressor, CompressorId, DecompressError};

/// zstd's error text for a destination buffer too small to hold the frame.
const DST_TOO_SMALL: &str = "Destination buffer is too small";

thread_local! {
    /// Created on the first page a thread compresses, reused ever after.
    static CCTX: RefCell<Option<CCtx<'static>>> = const { RefCell::new(None) };
    static DCTX: RefCell<Option<DCtx<'static>>> = const { RefCell::new(None) };
    /// Room for the worst case when the caller's buffer is shorter.
    static STAGING: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The dictionary parsed for each side, once.
struct Dictionary {
    encoder: EncoderDictionary<'static>,
    decoder: DecoderDictionary<'static>,
    len: usize,
}

/// The `zstd` compressor at one level, with or without a dictionary.
pub struct Zstd {
    level: i32,
    dictionary: Option<Dictionary>,
}

impl fmt::Debug for Zstd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Zstd")
            .field("level", &self.level)
            .field("dictionary_len", &self.dictionary.as_ref().map(|d| d.len))
            .finish()
    }
}

impl Zstd {
    /// zstd's default level; see the module docs.
    pub const DEFAULT_LEVEL: i32 = 3;

    /// zstd's smallest dictionary (`ZDICT_DICTSIZE_MIN`).
    pub const MIN_DICTIONARY_SIZE: usize = 256;

    /// The levels zstd accepts: its negative "fast" levels up to 22.
    pub fn levels() -> (i32, i32) {
        (zstd_safe::min_c_level(), zstd_safe::max_c_level())
    }

    /// `level` must be in [`Zstd::levels`]. A `dictionary` is any bytes:
    /// a trained one ([`train_dictionary`]) or raw content; both sides of a
    /// cache must use the same.
    pub fn new(level: i32, dictionary: Option<&[u8]>) -> Result<Self, String> {
        let (lo, hi) = Self::levels();
        if !(lo..=hi).contains(&level) {
            return Err(format!("zstd level {level} is out of range {lo}..={hi}"));
        }
        let dictionary = match dictionary {
            None => None,
            Some(d) => {
                let content = dictionary_content(d);
                Some(Dictionary {
                    encoder: EncoderDictionary::try_copy(content, level)
                        .map_err(|e| format!("zstd cannot use this dictionary: {e}"))?,
                    decoder: DecoderDictionary::try_copy(content)
                        .map_err(|e| format!("zstd cannot use this dictionary: {e}"))?,
                    len: d.len(),
                })
            }
        };
        Ok(Zstd { level, dictionary })
    }

    fn compress_into(&self, src: &[u8], dst: &mut [u8]) -> Result<usize, CompressError> {
        CCTX.with(|c| {
            let mut c = c.borrow_mut();
            if c.is_none() {
                *c = Some(CCtx::try_create().ok_or_else(|| {
                    CompressError::Failed("zstd could not allocate a context".into())
                })?);
            }
            let cctx = c.as_mut().expect("created above");
            let r = match &self.dictionary {
                Some(d) => cctx.compress_using_cdict(dst, src, d.encoder.as_cdict()),
                None => cctx.compress(dst, src, self.level),
            };
            r.map_err(|code| match zstd_safe::get_error_name(code) {
                DST_TOO_SMALL => CompressError::DoesNotFit,
                why => CompressError::Failed(format!("zstd: {why}")),
            })
        })
    }

    /// Whether this instance has a dictionary.
    pub fn has_dictionary(&self) -> bool {
        self.dictionary.is_some()
    }
}

impl Compressor for Zstd {
    fn id(&self) -> CompressorId {
        CompressorId::Zstd
    }

    fn level(&self) -> Option<i32> {
        Some(self.level)
    }

    fn compress(&self, src: &[u8], dst: &mut [u8]) -> Result<usize, CompressError> {
        let bound = zstd_safe::compress_bound(src.len());
        if dst.len() >= bound {
            return self.compress_into(src, dst);
        }
        // zstd needs room beyond the frame it writes (it tries a compressed
        // block and falls back to a raw one), so a buffer the frame would
        // just fit fails. Compress into room for the worst case and copy
        // what fits: exact, at the price of a copy for short buffers only.
        STAGING.with(|staging| {
            let mut staging = staging.borrow_mut();
            staging.resize(bound, 0);
            let n = self.compress_into(src, &mut staging)?;
            dst.get_mut(..n)
                .ok_or(CompressError::DoesNotFit)?
                .copy_from_slice(&staging[..n]);
            Ok(n)
        })
    }

    fn decompress(&self, src: &[u8], dst: &mut [u8]) -> Result<(), DecompressError> {
        let n = DCTX.with(|c| {
            let mut c = c.borrow_mut();
            if c.is_none() {
                *c = Some(DCtx::try_create().ok_or_else(|| {
                    DecompressError::Corrupt("zstd could not allocate a context".into())
                })?);
            }
            let dctx = c.as_mut().expect("created above");
            let r = match &self.dictionary {
                Some(d) => dctx.decompress_using_ddict(dst, src, d.decoder.as_ddict()),
                None => dctx.decompress(dst, src),
            };
            r.map_err(|code| {
                DecompressError::Corrupt(format!("zstd: {}", zstd_safe::get_error_name(code)))
            })
        })?;
        if n != dst.len() {
            return Err(DecompressError::WrongLength {
                expected: dst.len(),
                actual: n,
            });
        }
        Ok(())
    }
}

/// The part of `dict` zstd should use: for a dictionary in zstd's format
/// (magic, id, entropy tables, content), its content alone, as a raw-content
/// dictionary; anything else as it is.
///
/// Why: the entropy tables describe the training set as a whole, and zstd
/// leans on them for a page's literals and sequences where a page's own
/// statistics do better. Measured on 2000 real pages (`target/pages.bin`,
/// level 3, a 32 KiB dictionary trained on 4000 others): ratio 2.64 without
/// a dictionary, 2.57 with the whole dictionary, 2.74 with its content.
fn dictionary_content(dict: &[u8]) -> &[u8] {
    const DICTIONARY_MAGIC: [u8; 4] = 0xec30_a437u32.to_le_bytes();
    if !dict.starts_with(&DICTIONARY_MAGIC) {
        return dict;
    }
    // SAFETY: the pointer and length describe `dict`, which zstd only reads;
    // an invalid header comes back as an error code, which is larger than
    // any header that fits in `dict` and so is ruled out below.
    let header =
        unsafe { zstd_safe::zstd_sys::ZDICT_getDictHeaderSize(dict.as_ptr().cast(), dict.len()) };
    match dict.get(header..) {
        // A content that happens to begin with the magic would be read as a
        // whole dictionary again: keep the original then.
        Some(content) if !content.is_empty() && !content.starts_with(&DICTIONARY_MAGIC) => content,
        _ => dict,
    }
}

/// Train a zstd dictionary of at most `size` bytes on sample `pages`
/// (zstd's dictionary builder, `ZDICT_trainFromBuffer`).
///
/// A few hundred pages or more of the memory to be stored train a useful
/// dictionary; zstd wants the samples to total several times `size`.
/// `size` must be at least 256 bytes. The result is what
/// `Config::dictionary` and `zswap_rs.Zswap(dictionary=...)` take.
pub fn train_dictionary(pages: &[&[u8]], size: usize) -> Result<Vec<u8>, String> {
    if size < Zstd::MIN_DICTIONARY_SIZE {
        return Err(format!(
            "dictionary size must be at least {} bytes, got {size}",
            Zstd::MIN_DICTIONARY_SIZE
        ));
    }
    if pages.is_empty() {
        return Err("no sample pages to train a dictionary on".into());
    }
    let total: usize = pages.iter().map(|p| p.len()).sum();
    zstd::dict::from_samples(pages, size).map_err(|e| {
        format!(
            "zstd could not train a dictionary of {size} bytes on {} pages ({total} bytes): {e}; \
             give it more varied pages (several times the dictionary size) or a smaller size",
            pages.len()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages that share structure with each other, as a process's heap does.
    fn page(seed: u32) -> Vec<u8> {
        let mut xs = crate::testing::xorshift(u64::from(seed.wrapping_mul(0x9e37_79b9) | 1));
        let mut p = Vec::with_capacity(4096);
        while p.len() < 4096 {
            let x = xs.next().expect("endless") as u32;
            // A 32-byte record: a pointer-like word, a counter, a tag, noise.
            p.extend_from_slice(&(0x7f3a_5c00_0000u64 + u64::from(x & 0xfff0)).to_le_bytes());
            p.extend_from_slice(&u64::from(seed).to_le_bytes());
            p.extend_from_slice(b"zswap-rs");
            p.extend_from_slice(&x.to_le_bytes());
            p.extend_from_slice(&[(x >> 8) as u8, 0, 0, 0]);
        }
        p.truncate(4096);
        p
    }

    #[test]
    fn round_trips_at_every_kind_of_level() {
        let (lo, hi) = Zstd::levels();
        assert!(lo < 0 && hi >= 19, "{lo}..={hi}");
        for level in [lo, -5, 1, 3, 9, 19] {
            let z = Zstd::new(level, None).unwrap();
            let p = page(level.unsigned_abs());
            let mut buf = vec![0u8; 8192];
            let n = z.compress(&p, &mut buf).unwrap();
            // zstd's fastest levels barely compress; from level 1 on, pages shrink.
            assert!(level < 1 || n < 4096, "level {level}: {n}");
            let mut out = vec![0u8; 4096];
            z.decompress(&buf[..n], &mut out).unwrap();
            assert_eq!(out, p);
        }
        assert!(Zstd::new(hi + 1, None).is_err());
        assert!(Zstd::new(lo - 1, None).is_err());
    }

    #[test]
    fn short_output_and_wrong_length() {
        let z = Zstd::new(3, None).unwrap();
        let noise = crate::testing::noise(1, 4096);
        let mut small = vec![0u8; 3276];
        assert_eq!(
            z.compress(&noise, &mut small),
            Err(CompressError::DoesNotFit)
        );
        let p = page(1);
        let mut buf = vec![0u8; 8192];
        let n = z.compress(&p, &mut buf).unwrap();
        let mut exact = vec![0u8; n];
        assert_eq!(z.compress(&p, &mut exact), Ok(n));
        // A valid frame of a different length is not a page.
        let mut half = vec![0u8; 8192];
        let m = z.compress(&p[..2048], &mut half).unwrap();
        let mut out = vec![0u8; 4096];
        assert!(matches!(
            z.decompress(&half[..m], &mut out),
            Err(DecompressError::WrongLength { .. }) | Err(DecompressError::Corrupt(_))
        ));
        assert!(z.decompress(&buf[..n - 1], &mut out).is_err());
        assert!(z.decompress(&[], &mut out).is_err());
    }

    #[test]
    fn dictionary_helps_and_is_required() {
        let samples: Vec<Vec<u8>> = (0..400).map(page).collect();
        let refs: Vec<&[u8]> = samples.iter().map(|p| p.as_slice()).collect();
        let dict = train_dictionary(&refs, 16 << 10).unwrap();
        assert!(!dict.is_empty() && dict.len() <= 16 << 10);
        let plain = Zstd::new(3, None).unwrap();
        let with = Zstd::new(3, Some(&dict)).unwrap();
        assert!(with.has_dictionary() && !plain.has_dictionary());
        let (mut a, mut b) = (0, 0);
        let mut buf = vec![0u8; 8192];
        let mut out = vec![0u8; 4096];
        for seed in 1000..1050 {
            let p = page(seed);
            a += plain.compress(&p, &mut buf).unwrap();
            let n = with.compress(&p, &mut buf).unwrap();
            b += n;
            with.decompress(&buf[..n], &mut out).unwrap();
            assert_eq!(out, p);
            // Without the dictionary the frame is refused, not misread.
            assert!(plain.decompress(&buf[..n], &mut out).is_err());
        }
        assert!(b < a, "dictionary {b} bytes vs plain {a}");
    }

    #[test]
    fn a_zstd_format_dictionary_is_used_for_its_content() {
        let samples: Vec<Vec<u8>> = (0..300).map(page).collect();
        let refs: Vec<&[u8]> = samples.iter().map(|p| p.as_slice()).collect();
        let dict = train_dictionary(&refs, 8 << 10).unwrap();
        let content = dictionary_content(&dict);
        assert!(content.len() < dict.len() && dict.ends_with(content));
        assert_eq!(dictionary_content(content), content);
        let whole = Zstd::new(3, Some(&dict)).unwrap();
        let bare = Zstd::new(3, Some(content)).unwrap();
        let (mut a, mut b) = (vec![0u8; 8192], vec![0u8; 8192]);
        let p = page(4242);
        let n = whole.compress(&p, &mut a).unwrap();
        assert_eq!(bare.compress(&p, &mut b), Ok(n));
        assert_eq!(a[..n], b[..n]);
        // Not a dictionary header: used as it is.
        assert_eq!(dictionary_content(b"\x37\xa4\x30\xec"), b"\x37\xa4\x30\xec");
    }

    #[test]
    fn training_errors_say_why() {
        let p = page(1);
        assert!(train_dictionary(&[&p], 100)
            .unwrap_err()
            .contains("at least 256"));
        assert!(train_dictionary(&[], 4096)
            .unwrap_err()
            .contains("no sample"));
        let err = train_dictionary(&[&p[..16]], 4096).unwrap_err();
        assert!(err.contains("could not train"), "{err}");
    }
}
