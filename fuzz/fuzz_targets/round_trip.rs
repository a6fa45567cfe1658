//! Any input round-trips through every software compressor, and a short
//! output buffer is `DoesNotFit`, never an overrun. The first byte picks
//! the compressor and its level, the rest is the input.

#![no_main]

use libfuzzer_sys::fuzz_target;
use zswap_rs::compress::{CompressError, Compressor, Deflate, Lz4, Lzo, Zstd};

fuzz_target!(|data: &[u8]| {
    let Some((&which, input)) = data.split_first() else {
        return;
    };
    let comp: Box<dyn Compressor> = match which % 8 {
        0 | 1 => Box::new(Lzo),
        2 => Box::new(Lz4),
        3 => Box::new(Zstd::new(1, None).unwrap()),
        4 => Box::new(Zstd::new(-5, None).unwrap()),
        n => Box::new(Deflate::new(i32::from(n) - 5).unwrap()),
    };
    let mut out = vec![0u8; 2 * input.len() + 128];
    let n = comp.compress(input, &mut out).unwrap();
    let mut back = vec![0u8; input.len()];
    comp.decompress(&out[..n], &mut back).unwrap();
    assert_eq!(back, input);
    // One byte short of the stream: does not fit, and nothing past the end.
    if n > 0 {
        let mut short = vec![0u8; n - 1 + 16];
        let r = comp.compress(input, &mut short[..n - 1]);
        assert_eq!(r, Err(CompressError::DoesNotFit));
        assert!(short[n - 1..].iter().all(|&b| b == 0));
    }
});
