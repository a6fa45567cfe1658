//! Raw deflate (RFC 1951, no zlib or gzip wrapper) through Intel ISA-L's
//! igzip, the software twin of the IAA and NX accelerators.
//!
//! Deflate is the one format the accelerators speak, so it is what makes a
//! hardware path and a software path interchangeable: a page compressed on
//! IAA must decompress here and the other way round. IAA's history window is
//! 4 KiB, hence `hist_bits = 12` on the compressor ([`HISTORY_BITS`]); for a
//! page of 4 KiB that costs nothing, since no match can reach farther back.
//! The decompressor accepts any window (a 32 KiB-window stream of one page
//! is the same stream), so zlib's output decodes too.
//!
//! ISA-L's levels 0 to 3 run in SIMD code: on real pages level 1 packs as
//! tight as zlib's level 1 (ratio 2.51) in about a third of its time, level
//! 0 (static Huffman tables) is 2-3x faster again for a ratio of 2.14. On a
//! 4 KiB page, about half of level 1's time is building the block's Huffman
//! tables, a cost per page that no reuse of state removes. The cost of ISA-L
//! is memory: its stream (80 KiB), its level buffer (hash tables and the
//! token buffer, up to 148 KiB) and its inflate state (85 KiB) would dwarf
//! a page if set up per call, so each thread keeps one of each and resets
//! it per page
//! (`isal_deflate_stateless_init`, a few stores; the stateless calls clear
//! only the part of the hash table a page can use).
//!
//! The unsafe here is the FFI boundary and nothing else: ISA-L reads
//! `avail_in` bytes from `next_in` and writes at most `avail_out` bytes at
//! `next_out`, which are set from live slices right before each call.

use std::cell::RefCell;
use std::fmt;

use isal_sys::igzip_lib as isal;

use super::{CompressError, Compressor, CompressorId, DecompressError};

/// log2 of the compressor's history window: 4 KiB, as IAA's.
pub const HISTORY_BITS: u16 = 12;
/// ISA-L's levels.
pub const LEVELS: (i32, i32) = (0, isal::ISAL_DEF_MAX_LEVEL as i32);
/// Level 1: ISA-L's fastest level with a level buffer, about zlib -1's ratio
/// at a fraction of its time; 3 gains a few percent for about twice the time.
pub const DEFAULT_LEVEL: i32 = 1;
/// The level buffer: the largest hash table (level 3) and room for 16 Ki
/// tokens, so that a page of up to 16 KiB is one deflate block at any level.
const LEVEL_BUF_SIZE: usize = isal::ISAL_DEF_LVL3_SMALL as usize;

/// One thread's compressor: the stream and the level buffer it points to
/// during a call.
struct DeflateState {
    stream: Box<isal::isal_zstream>,
    level_buf: Vec<u8>,
}

impl DeflateState {
    fn new() -> Self {
        DeflateState {
            // SAFETY: `isal_zstream` is a C struct of integers, arrays and
            // raw pointers, for which all-zero bytes are a valid value; it
            // is initialised for real by `isal_deflate_stateless_init`
            // before every use.
            stream: unsafe { zeroed_box::<isal::isal_zstream>() },
            level_buf: vec![0u8; LEVEL_BUF_SIZE],
        }
    }
}

/// A heap-allocated all-zero `T`, made in place: ISA-L's structs are 80 KiB
/// and more, too big to build on the stack and move (`Box::new_zeroed` is
/// newer than this crate's minimum Rust).
///
/// # Safety
///
/// All-zero bytes must be a valid value of `T`.
unsafe fn zeroed_box<T>() -> Box<T> {
    let layout = std::alloc::Layout::new::<T>();
    assert!(layout.size() > 0);
    // SAFETY: the layout has a non-zero size (checked above).
    let p = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<T>();
    if p.is_null() {
        std::alloc::handle_alloc_error(layout);
    }
    // SAFETY: `p` was allocated by the global allocator with T's layout, is
    // zeroed (a valid T, by this function's contract) and owned by no one else.
    unsafe { Box::from_raw(p) }
}

thread_local! {
    static DEFLATE: RefCell<Option<DeflateState>> = const { RefCell::new(None) };
    static INFLATE: RefCell<Option<Box<isal::inflate_state>>> = const { RefCell::new(None) };
    /// Room for the worst case when the caller's buffer is shorter.
    static STAGING: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Raw deflate of `src` into `dst` at ISA-L `level` (0..=3) with a 4 KiB
/// window: the stream IAA would make, bit-compatible with any inflater.
/// `DoesNotFit` when `dst` is too short. The compressed length on success.
pub fn deflate_raw_4k(level: i32, src: &[u8], dst: &mut [u8]) -> Result<usize, CompressError> {
    let bound = stored_len(src.len());
    if dst.len() >= bound {
        return deflate_into(level, src, dst);
    }
    // ISA-L stops short of the end of the output buffer (its bit writer
    // stores 8 bytes at a time), so a buffer the stream would just fit is
    // "overflow" to it. Compress into room for the worst case instead and
    // copy what fits: exact, at the price of a copy for short buffers only.
    STAGING.with(|staging| {
        let mut staging = staging.borrow_mut();
        staging.resize(bound, 0);
        let n = deflate_into(level, src, &mut staging)?;
        dst.get_mut(..n)
            .ok_or(CompressError::DoesNotFit)?
            .copy_from_slice(&staging[..n]);
        Ok(n)
    })
}

/// The longest raw deflate of `len` bytes: stored blocks of at most 65535
/// bytes with a 5-byte header each, plus slack for ISA-L's 8-byte writes.
/// With this much room ISA-L always succeeds (it falls back to stored
/// blocks when compressing does not pay).
fn stored_len(len: usize) -> usize {
    len + 5 * (len / 65535 + 1) + 16
}

fn deflate_into(level: i32, src: &[u8], dst: &mut [u8]) -> Result<usize, CompressError> {
    let level = u32::try_from(level)
        .ok()
        .filter(|l| *l <= isal::ISAL_DEF_MAX_LEVEL)
        .ok_or_else(|| CompressError::Failed(format!("deflate level {level} is not 0..=3")))?;
    let avail_in = u32::try_from(src.len())
        .map_err(|_| CompressError::Failed("input too large for ISA-L".into()))?;
    let avail_out = u32::try_from(dst.len()).unwrap_or(u32::MAX);
    DEFLATE.with(|cell| {
        let mut cell = cell.borrow_mut();
        let state = cell.get_or_insert_with(DeflateState::new);
        let stream: &mut isal::isal_zstream = &mut state.stream;
        // SAFETY: `stream` is a valid, exclusively borrowed isal_zstream.
        unsafe { isal::isal_deflate_stateless_init(stream) };
        stream.level = level;
        stream.level_buf = state.level_buf.as_mut_ptr();
        stream.level_buf_size = state.level_buf.len() as u32;
        stream.hist_bits = HISTORY_BITS;
        stream.gzip_flag = isal::IGZIP_DEFLATE as u16;
        stream.flush = isal::NO_FLUSH as u16;
        stream.end_of_stream = 1;
        // ISA-L never writes through next_in; the field is `*mut` in C only.
        stream.next_in = src.as_ptr().cast_mut();
        stream.avail_in = avail_in;
        stream.next_out = dst.as_mut_ptr();
        stream.avail_out = avail_out;
        // SAFETY: next_in/avail_in describe `src` and next_out/avail_out a
        // prefix of `dst`, both borrowed for the whole call; level_buf points
        // to `state.level_buf` of level_buf_size bytes, which outlives the
        // call; nothing else refers to `stream` meanwhile.
        let rc = unsafe { isal::isal_deflate_stateless(stream) };
        // Leave no pointer to the caller's buffers behind.
        stream.next_in = std::ptr::null_mut();
        stream.next_out = std::ptr::null_mut();
        match rc {
            0 if stream.avail_in == 0 => Ok(stream.total_out as usize),
            0 => Err(CompressError::Failed(
                "ISA-L stopped before the end of the input".into(),
            )),
            isal::STATELESS_OVERFLOW => Err(CompressError::DoesNotFit),
            rc => Err(CompressError::Failed(format!(
                "isal_deflate_stateless returned {rc}"
            ))),
        }
    })
}

/// Inflate the raw deflate stream `src` into exactly all of `dst`: an error
/// if it is corrupt, truncated, or decodes to more or fewer bytes. Streams
/// of any window size (up to deflate's 32 KiB) are accepted.
pub fn inflate_raw(src: &[u8], dst: &mut [u8]) -> Result<(), DecompressError> {
    let avail_in = u32::try_from(src.len())
        .map_err(|_| DecompressError::Corrupt("deflate: input too large".into()))?;
    let avail_out = u32::try_from(dst.len())
        .map_err(|_| DecompressError::Corrupt("deflate: output too large".into()))?;
    let (rc, total_out) = INFLATE.with(|cell| {
        let mut cell = cell.borrow_mut();
        let state: &mut isal::inflate_state = cell.get_or_insert_with(|| {
            // SAFETY: `inflate_state` is a C struct of integers, arrays, a
            // union of arrays and raw pointers: all-zero bytes are a valid
            // value, and `isal_inflate_init` sets it up before every use.
            unsafe { zeroed_box::<isal::inflate_state>() }
        });
        // SAFETY: `state` is a valid, exclusively borrowed inflate_state.
        unsafe { isal::isal_inflate_init(state) };
        state.crc_flag = isal::ISAL_DEFLATE;
        state.next_in = src.as_ptr().cast_mut();
        state.avail_in = avail_in;
        state.next_out = dst.as_mut_ptr();
        state.avail_out = avail_out;
        // SAFETY: next_in/avail_in describe `src` and next_out/avail_out
        // `dst`, both borrowed for the whole call; ISA-L reads no more than
        // avail_in bytes, never writes through next_in, and writes at most
        // avail_out bytes, whatever the input bytes are.
        let rc = unsafe { isal::isal_inflate_stateless(state) };
        state.next_in = std::ptr::null_mut();
        state.next_out = std::ptr::null_mut();
        (rc, state.total_out as usize)
    });
    let why = match rc {
        0 if total_out == dst.len() => return Ok(()),
        0 => {
            return Err(DecompressError::WrongLength {
                expected: dst.len(),
                actual: total_out,
            })
        }
        1 => "input ends before the final block",
        2 => "decodes to more than the output",
        -1 => "invalid block",
        -2 => "invalid symbol",
        -3 => "match reaches before the start of the output",
        _ => "invalid stream",
    };
    Err(DecompressError::Corrupt(format!(
        "deflate: {why} (ISA-L {rc})"
    )))
}

/// The `deflate` compressor: raw deflate through ISA-L at one level.
pub struct Deflate {
    level: i32,
}

impl fmt::Debug for Deflate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deflate")
            .field("level", &self.level)
            .finish()
    }
}

impl Deflate {
    /// `level` must be one of ISA-L's levels, 0 to `ISAL_DEF_MAX_LEVEL` (3).
    pub fn new(level: i32) -> Result<Self, String> {
        if !(LEVELS.0..=LEVELS.1).contains(&level) {
            return Err(format!(
                "deflate level {level} is out of range {}..={}",
                LEVELS.0, LEVELS.1
            ));
        }
        Ok(Deflate { level })
    }
}

impl Compressor for Deflate {
    fn id(&self) -> CompressorId {
        CompressorId::Deflate
    }

    fn level(&self) -> Option<i32> {
        Some(self.level)
    }

    fn compress(&self, src: &[u8], dst: &mut [u8]) -> Result<usize, CompressError> {
        deflate_raw_4k(self.level, src, dst)
    }

    fn decompress(&self, src: &[u8], dst: &mut [u8]) -> Result<(), DecompressError> {
        inflate_raw(src, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(seed: u32) -> Vec<u8> {
        let xs = crate::testing::xorshift(u64::from(seed.wrapping_mul(0x9e37_79b9) | 1));
        (0..4096u32)
            .zip(xs)
            .map(|(i, x)| {
                let x = x as u32;
                if x % 5 == 0 {
                    (x >> 24) as u8
                } else {
                    (i / 24) as u8
                }
            })
            .collect()
    }

    #[test]
    fn round_trips_at_every_level() {
        let mut sizes = vec![];
        for level in 0..=3 {
            let d = Deflate::new(level).unwrap();
            let mut total = 0;
            for seed in 0..8 {
                let p = page(seed);
                let mut buf = vec![0u8; 8192];
                let n = d.compress(&p, &mut buf).unwrap();
                total += n;
                let mut out = vec![0u8; 4096];
                d.decompress(&buf[..n], &mut out).unwrap();
                assert_eq!(out, p, "level {level} seed {seed}");
            }
            sizes.push(total);
        }
        assert!(Deflate::new(4).is_err() && Deflate::new(-1).is_err());
        assert!(deflate_raw_4k(7, &page(0), &mut [0u8; 8192]).is_err());
    }

    #[test]
    fn short_output_and_bad_streams() {
        let noise = crate::testing::noise(7, 4096);
        for level in 0..=3 {
            let mut small = vec![0u8; 3276];
            assert_eq!(
                deflate_raw_4k(level, &noise, &mut small),
                Err(CompressError::DoesNotFit)
            );
        }
        let p = page(3);
        let mut buf = vec![0u8; 8192];
        let n = deflate_raw_4k(1, &p, &mut buf).unwrap();
        let mut exact = vec![0u8; n];
        assert_eq!(deflate_raw_4k(1, &p, &mut exact), Ok(n));
        let mut out = vec![0u8; 4096];
        assert!(inflate_raw(&buf[..n / 2], &mut out).is_err());
        assert!(inflate_raw(&[], &mut out).is_err());
        assert!(matches!(
            inflate_raw(&buf[..n], &mut [0u8; 4000]),
            Err(DecompressError::Corrupt(_))
        ));
        assert!(matches!(
            inflate_raw(&buf[..n], &mut vec![0u8; 5000]),
            Err(DecompressError::WrongLength { .. })
        ));
        // 0xff...: a block type 3, which does not exist.
        assert!(inflate_raw(&[0xff; 16], &mut out).is_err());
    }
}
