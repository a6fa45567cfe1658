//! LZ4 through lz4_flex's block format (>= 0.14, past RUSTSEC-2026-0041).
//!
//! LZ4 trades ratio for speed: about 2x on typical anonymous memory, at a few
//! GB/s. The encoder's 4096-entry hash table (8 KiB) is kept per thread and
//! cleared per page rather than allocated per page; lz4_flex's safe encoder
//! and decoder check every bound, so a short output buffer and a corrupt
//! stream are errors, never overruns.

use std::cell::RefCell;

use lz4_flex::block::{
    compress_into_with_table, decompress_into, get_maximum_output_size, CompressTable,
};

use super::{CompressError, Compressor, CompressorId, DecompressError};

thread_local! {
    static TABLE: RefCell<CompressTable> = RefCell::new(CompressTable::small());
    /// lz4_flex refuses an output buffer shorter than its worst case (about
    /// 110% of the input), even when the result would fit. A caller that
    /// passes a shorter one gets the output staged here.
    static WORST_CASE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The `lz4` compressor. It has no levels.
#[derive(Debug, Default, Clone, Copy)]
pub struct Lz4;

impl Lz4 {
    /// The compressor; its per-thread tables are made on first use.
    pub fn new() -> Self {
        Lz4
    }
}

impl Compressor for Lz4 {
    fn id(&self) -> CompressorId {
        CompressorId::Lz4
    }

    fn compress(&self, src: &[u8], dst: &mut [u8]) -> Result<usize, CompressError> {
        let worst = get_maximum_output_size(src.len());
        TABLE.with(|t| {
            let table = &mut t.borrow_mut();
            if dst.len() >= worst {
                return compress_into_with_table(src, dst, table).map_err(lz4_error);
            }
            WORST_CASE.with(|w| {
                let mut w = w.borrow_mut();
                w.resize(worst, 0);
                let n = compress_into_with_table(src, &mut w, table).map_err(lz4_error)?;
                let out = dst.get_mut(..n).ok_or(CompressError::DoesNotFit)?;
                out.copy_from_slice(&w[..n]);
                Ok(n)
            })
        })
    }

    fn decompress(&self, src: &[u8], dst: &mut [u8]) -> Result<(), DecompressError> {
        let n = decompress_into(src, dst).map_err(|e| DecompressError::Corrupt(e.to_string()))?;
        if n != dst.len() {
            return Err(DecompressError::WrongLength {
                expected: dst.len(),
                actual: n,
            });
        }
        Ok(())
    }
}

fn lz4_error(e: lz4_flex::block::CompressError) -> CompressError {
    match e {
        lz4_flex::block::CompressError::OutputTooSmall => CompressError::DoesNotFit,
        #[allow(unreachable_patterns)]
        other => CompressError::Failed(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(seed: u8) -> Vec<u8> {
        (0..4096u32)
            .map(|i| ((i / 7) as u8).wrapping_mul(seed) ^ (i % 13) as u8)
            .collect()
    }

    #[test]
    fn round_trip_and_short_output() {
        let p = page(3);
        let mut buf = vec![0u8; 8192];
        let n = Lz4.compress(&p, &mut buf).unwrap();
        assert!(n < 4096);
        let mut out = vec![0u8; 4096];
        Lz4.decompress(&buf[..n], &mut out).unwrap();
        assert_eq!(out, p);
        // Random bytes do not compress: a buffer of 80% of a page is too short.
        let noise = crate::testing::noise(0x9e37_79b9_7f4a_7c15, 4096);
        let mut small = vec![0u8; 4096 * 80 / 100];
        assert_eq!(
            Lz4.compress(&noise, &mut small),
            Err(CompressError::DoesNotFit)
        );
        // A short buffer that the result fits in works (lz4_flex alone refuses it).
        let mut exact = vec![0u8; n];
        assert_eq!(Lz4.compress(&p, &mut exact), Ok(n));
        assert_eq!(exact, buf[..n]);
    }

    #[test]
    fn corrupt_and_truncated_streams_are_errors() {
        let p = page(5);
        let mut buf = vec![0u8; 8192];
        let n = Lz4.compress(&p, &mut buf).unwrap();
        let mut out = vec![0u8; 4096];
        assert!(Lz4.decompress(&buf[..n / 2], &mut out).is_err());
        let mut bad = buf[..n].to_vec();
        for b in bad.iter_mut().step_by(5) {
            *b ^= 0xa5;
        }
        // Either an error or, if the mutation happens to decode, a full page:
        // never a panic and never a short page reported as success.
        if Lz4.decompress(&bad, &mut out).is_ok() {
            assert_eq!(out.len(), 4096);
        }
    }
}
