//! Any bytes, decoded as a page by every software decompressor: never a
//! crash, never a write outside the page, success only as a whole page.
//! The first byte picks the decompressor, the rest is the stream.

#![no_main]

use libfuzzer_sys::fuzz_target;
use zswap_rs::compress::{Compressor, Deflate, Lz4, Lzo, Zstd};

const PAGE: usize = 4096;
const GUARD: usize = 64;
const CANARY: u8 = 0xa5;

fuzz_target!(|data: &[u8]| {
    let Some((&which, stream)) = data.split_first() else {
        return;
    };
    let comp: Box<dyn Compressor> = match which % 4 {
        0 => Box::new(Lzo),
        1 => Box::new(Lz4),
        2 => Box::new(Zstd::new(3, None).unwrap()),
        _ => Box::new(Deflate::new(1).unwrap()),
    };
    let mut buf = vec![CANARY; GUARD + PAGE + GUARD];
    let first = comp.decompress(stream, &mut buf[GUARD..GUARD + PAGE]);
    assert!(
        buf[..GUARD]
            .iter()
            .chain(&buf[GUARD + PAGE..])
            .all(|&b| b == CANARY),
        "{}: wrote outside the page",
        comp.name()
    );
    // Deterministic: a second decode says the same.
    let page = buf[GUARD..GUARD + PAGE].to_vec();
    let second = comp.decompress(stream, &mut buf[GUARD..GUARD + PAGE]);
    assert_eq!(first.is_ok(), second.is_ok());
    if first.is_ok() {
        assert_eq!(page, buf[GUARD..GUARD + PAGE]);
    }
});
