//! Compressors, chosen by name.
//!
//! zswap's whole bargain is CPU for I/O: a page compressed in a few
//! microseconds saves a disk write and a later disk read. Which compressor
//! strikes the best bargain depends on the machine (LZ4 is fastest, zstd packs
//! tightest, deflate runs in hardware on Intel IAA and IBM NX), so it is
//! chosen by name at run time and can be switched while pages are stored:
//! every entry remembers the [`CompressorId`] that made it, and the cache keeps
//! a decoder for each id it has used.
//!
//! A [`Compressor`] is shared by every thread. State that is costly to set up
//! (hash tables, zstd contexts, ISA-L streams) is kept per thread by the
//! implementation and reused, never allocated per page.

mod deflate;
pub mod hw;
mod lz4;
mod lzo;
mod zstd;

pub use self::zstd::{train_dictionary, Zstd};
pub use deflate::{deflate_raw_4k, inflate_raw, Deflate};
pub use lz4::Lz4;
pub use lzo::Lzo;

use std::fmt;
use std::sync::Arc;

/// Stable numbers for the algorithms, stored in every entry (3 bits). They
/// are part of the entry format: never renumber one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum CompressorId {
    /// `lzo`: LZO1X-1, the 2013 zswap default.
    Lzo = 0,
    /// `lz4`: the lz4_flex block format.
    Lz4 = 1,
    /// `zstd`, with levels and an optional dictionary.
    Zstd = 2,
    /// `deflate`: raw deflate through ISA-L.
    Deflate = 3,
    /// `deflate-iaa`: raw deflate on an Intel IAA.
    DeflateIaa = 4,
    /// `nx-gzip`: raw deflate on an IBM POWER NX unit.
    NxGzip = 5,
}

impl CompressorId {
    /// Every id, in the order `compressors()` lists them.
    pub const ALL: [CompressorId; 6] = [
        CompressorId::Lzo,
        CompressorId::Lz4,
        CompressorId::Zstd,
        CompressorId::Deflate,
        CompressorId::DeflateIaa,
        CompressorId::NxGzip,
    ];

    /// The format of the streams it makes, as the software compressor of
    /// that format decodes them: the hardware deflates make raw deflate.
    pub fn stream_format(self) -> CompressorId {
        match self {
            CompressorId::DeflateIaa | CompressorId::NxGzip => CompressorId::Deflate,
            other => other,
        }
    }

    /// The id stored as `bits`, if it is one.
    pub fn from_bits(bits: u8) -> Option<CompressorId> {
        CompressorId::ALL.get(bits as usize).copied()
    }

    /// The name users choose it by.
    pub fn name(self) -> &'static str {
        match self {
            CompressorId::Lzo => "lzo",
            CompressorId::Lz4 => "lz4",
            CompressorId::Zstd => "zstd",
            CompressorId::Deflate => "deflate",
            CompressorId::DeflateIaa => "deflate-iaa",
            CompressorId::NxGzip => "nx-gzip",
        }
    }

    /// The id of the compressor named `name`.
    pub fn from_name(name: &str) -> Option<CompressorId> {
        CompressorId::ALL.into_iter().find(|id| id.name() == name)
    }
}

/// Why a page could not be compressed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompressError {
    /// The output would not fit in the buffer given. zswap gives a buffer as
    /// large as the biggest compressed page it accepts, so this means "poor
    /// compression" (`reject_compress_poor`), found without finishing.
    DoesNotFit,
    /// The compressor failed (`reject_compress_fail`); hardware may do this.
    Failed(String),
}

/// Why compressed data could not be turned back into a page. Never a panic,
/// never wrong bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecompressError {
    /// The data is not a valid stream for this compressor.
    Corrupt(String),
    /// The stream is valid but does not decode to exactly one page.
    WrongLength {
        /// Bytes wanted: the length of the output buffer, one page.
        expected: usize,
        /// Bytes the stream decoded to.
        actual: usize,
    },
}

impl fmt::Display for CompressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompressError::DoesNotFit => {
                write!(f, "compressed page does not fit the output buffer")
            }
            CompressError::Failed(why) => write!(f, "compression failed: {why}"),
        }
    }
}

impl fmt::Display for DecompressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecompressError::Corrupt(why) => write!(f, "corrupt compressed data: {why}"),
            DecompressError::WrongLength { expected, actual } => {
                write!(f, "decompressed to {actual} bytes, expected {expected}")
            }
        }
    }
}

impl std::error::Error for CompressError {}
impl std::error::Error for DecompressError {}

/// A compression algorithm, shared by all threads.
///
/// The caller guarantees that `src` of [`compress`](Compressor::compress) is
/// one page and that `dst` of [`decompress`](Compressor::decompress) is one
/// page long. An implementation must: never write outside `dst`; report
/// [`CompressError::DoesNotFit`] rather than overrun a short `dst`; fill all
/// of `dst` or return an error on decompression, whatever the input bytes
/// are (they may be corrupt); keep costly state per thread, not per call.
pub trait Compressor: Send + Sync + fmt::Debug {
    /// The stable id stored in entries.
    fn id(&self) -> CompressorId;
    /// The name users choose it by.
    fn name(&self) -> &'static str {
        self.id().name()
    }
    /// The level in use, for compressors that have levels.
    fn level(&self) -> Option<i32> {
        None
    }
    /// Whether this instance runs on a hardware accelerator.
    fn is_hardware(&self) -> bool {
        false
    }
    /// Compress `src` into `dst`, returning the compressed length.
    fn compress(&self, src: &[u8], dst: &mut [u8]) -> Result<usize, CompressError>;
    /// Decompress `src` into all of `dst`.
    fn decompress(&self, src: &[u8], dst: &mut [u8]) -> Result<(), DecompressError>;
    /// How many pages a batch call works on at once: more per call than
    /// this gains nothing. 1 for software; 8 for IAA, whose pages run in
    /// parallel (the kernel's `crypto_acomp_batch_size()`).
    fn batch_size(&self) -> usize {
        1
    }
    /// Compress `srcs[i]` into `dsts[i]`, result in `out[i]`, for every `i`,
    /// as [`compress`](Compressor::compress) would one by one. A hardware
    /// compressor submits up to [`batch_size`](Compressor::batch_size) pages
    /// before waiting for any. The three slices have the same length (panics
    /// otherwise).
    fn compress_batch(
        &self,
        srcs: &[&[u8]],
        dsts: &mut [&mut [u8]],
        out: &mut [Result<usize, CompressError>],
    ) {
        assert!(srcs.len() == dsts.len() && srcs.len() == out.len());
        for ((src, dst), o) in srcs.iter().zip(dsts.iter_mut()).zip(out.iter_mut()) {
            *o = self.compress(src, dst);
        }
    }
    /// Decompress `srcs[i]` into all of `dsts[i]`, result in `out[i]`, as
    /// [`decompress`](Compressor::decompress) would one by one.
    fn decompress_batch(
        &self,
        srcs: &[&[u8]],
        dsts: &mut [&mut [u8]],
        out: &mut [Result<(), DecompressError>],
    ) {
        assert!(srcs.len() == dsts.len() && srcs.len() == out.len());
        for ((src, dst), o) in srcs.iter().zip(dsts.iter_mut()).zip(out.iter_mut()) {
            *o = self.decompress(src, dst);
        }
    }
}

/// What `compressors()` says of one compressor on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompressorInfo {
    /// The name users choose it by.
    pub name: &'static str,
    /// It can be chosen here.
    pub available: bool,
    /// It runs on an accelerator.
    pub hardware: bool,
    /// Why it is not available (empty when it is).
    pub reason: String,
    /// The levels it accepts, if it has levels.
    pub levels: Option<(i32, i32)>,
}

impl CompressorInfo {
    /// An available compressor.
    pub fn available(id: CompressorId, hardware: bool, levels: Option<(i32, i32)>) -> Self {
        CompressorInfo {
            name: id.name(),
            available: true,
            hardware,
            reason: String::new(),
            levels,
        }
    }

    /// A compressor that cannot be used here, and why.
    pub fn unavailable(id: CompressorId, hardware: bool, reason: impl Into<String>) -> Self {
        CompressorInfo {
            name: id.name(),
            available: false,
            hardware,
            reason: reason.into(),
            levels: None,
        }
    }
}

/// How to build a compressor: its level and, for zstd, a trained dictionary.
/// The same options build the decoder, so a dictionary is fixed for the
/// life of a cache (entries compressed with it must stay readable).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Level, for compressors that have levels; `None`: the default.
    pub level: Option<i32>,
    /// A zstd dictionary (`zswap_rs.train_dictionary`), if any.
    pub dictionary: Option<Arc<[u8]>>,
}

/// What this machine offers for `id`. One arm per compressor: each
/// compressor's module says whether it is built and present.
fn info(id: CompressorId) -> CompressorInfo {
    match id {
        CompressorId::Lz4 => CompressorInfo::available(id, false, None),
        CompressorId::Lzo => CompressorInfo::available(id, false, None),
        CompressorId::Zstd => CompressorInfo::available(id, false, Some(Zstd::levels())),
        CompressorId::Deflate => CompressorInfo::available(id, false, Some(deflate::LEVELS)),
        CompressorId::DeflateIaa => hw::iaa::info(),
        CompressorId::NxGzip => hw::nx::info(),
    }
}

/// Build `id`, which [`info`] says is available, with `options` already
/// checked against its levels.
fn build(id: CompressorId, options: &Options) -> Result<Arc<dyn Compressor>, String> {
    let _ = options;
    match id {
        CompressorId::Lz4 => Ok(Arc::new(Lz4::new())),
        CompressorId::Lzo => Ok(Arc::new(Lzo::new())),
        CompressorId::Zstd => Ok(Arc::new(Zstd::new(
            options.level.unwrap_or(Zstd::DEFAULT_LEVEL),
            options.dictionary.as_deref(),
        )?)),
        CompressorId::Deflate => Ok(Arc::new(Deflate::new(
            options.level.unwrap_or(deflate::DEFAULT_LEVEL),
        )?)),
        CompressorId::DeflateIaa => hw::iaa::build(),
        CompressorId::NxGzip => hw::nx::build(),
    }
}

/// Every compressor of the contract and whether it can be used here.
pub fn compressors() -> Vec<CompressorInfo> {
    CompressorId::ALL.into_iter().map(info).collect()
}

/// Why a compressor cannot be created. The message lists what is available
/// and why the rest is not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnavailableCompressor(pub String);

impl fmt::Display for UnavailableCompressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UnavailableCompressor {}

fn availability_summary() -> String {
    compressors()
        .iter()
        .map(|c| {
            if c.available {
                format!("{} (available)", c.name)
            } else {
                format!("{} (unavailable: {})", c.name, c.reason)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Create the compressor named `name` with `options`.
pub fn create(name: &str, options: &Options) -> Result<Arc<dyn Compressor>, UnavailableCompressor> {
    let Some(id) = CompressorId::from_name(name) else {
        return Err(UnavailableCompressor(format!(
            "unknown compressor '{name}'; compressors: {}",
            availability_summary()
        )));
    };
    let info = info(id);
    if !info.available {
        return Err(UnavailableCompressor(format!(
            "compressor '{name}' is not available here: {}; compressors: {}",
            info.reason,
            availability_summary()
        )));
    }
    match (options.level, info.levels) {
        (Some(l), None) => {
            return Err(UnavailableCompressor(format!(
                "compressor '{name}' has no levels (got level={l})"
            )))
        }
        (Some(l), Some((lo, hi))) if !(lo..=hi).contains(&l) => {
            return Err(UnavailableCompressor(format!(
                "level {l} is out of range for '{name}': {lo}..={hi}"
            )))
        }
        _ => {}
    }
    if options.dictionary.is_some() && id != CompressorId::Zstd {
        return Err(UnavailableCompressor(format!(
            "a dictionary is for zstd only, not '{name}'"
        )));
    }
    build(id, options).map_err(UnavailableCompressor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for id in CompressorId::ALL {
            assert_eq!(CompressorId::from_bits(id as u8), Some(id));
            assert_eq!(CompressorId::from_name(id.name()), Some(id));
        }
        assert_eq!(CompressorId::from_bits(6), None);
    }

    #[test]
    fn unknown_and_unavailable_say_what_is_there() {
        let none = Options::default();
        let err = create("snappy", &none).unwrap_err().0;
        assert!(err.contains("unknown compressor 'snappy'"), "{err}");
        assert!(err.contains("lz4 (available)"), "{err}");
        let level3 = Options {
            level: Some(3),
            ..Options::default()
        };
        let err = create("lz4", &level3).unwrap_err().0;
        assert!(err.contains("no levels"), "{err}");
        assert_eq!(create("lz4", &none).unwrap().id(), CompressorId::Lz4);
    }
}
