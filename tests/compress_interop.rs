//! The software compressors against the reference implementations of their
//! formats, both ways: our LZO1X against liblzo2 (dlopened: it is GPL, so
//! it is never linked into the crate), our ISA-L raw deflate against zlib.
//! Then round trips of every software compressor through `Zswap`.
//!
//! liblzo2 comes from Debian's `liblzo2-2` (`.ci/run` installs it); zlib is
//! built or found by flate2's `zlib` feature.

mod common;

use std::io::{Read, Write};

use common::liblzo::LibLzo;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use zswap_rs::compress::{
    self, deflate_raw_4k, inflate_raw, Compressor, Deflate, Lzo, Options, Zstd,
};
use zswap_rs::{Config, StoreOutcome, Zswap};

const PAGE: usize = 4096;

// --- liblzo2 ----------------------------------------------------------------

fn ours_lzo(src: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; Lzo::worst_case_len(src.len())];
    let n = Lzo.compress(src, &mut out).unwrap();
    out.truncate(n);
    out
}

/// Inputs beyond one page too: long matches, matches farther back than
/// 16 KiB (LZO's M4 instruction), long literal runs.
fn lzo_inputs() -> Vec<Vec<u8>> {
    let mut v = common::pages(60, PAGE);
    v.push(vec![0u8; PAGE]);
    let mut big = common::pages(16, PAGE).concat(); // 64 KiB
    let far: Vec<u8> = big[1000..1400].to_vec();
    big[40000..40400].copy_from_slice(&far);
    v.push(big);
    v.push(common::page(9, 300));
    v.push(b"a".to_vec());
    v
}

#[test]
fn liblzo2_decodes_ours() {
    let lib = LibLzo::load();
    for (i, src) in lzo_inputs().iter().enumerate() {
        let ours = ours_lzo(src);
        let back = lib
            .decompress(&ours, src.len())
            .unwrap_or_else(|rc| panic!("input {i}: liblzo2 refused our stream: error {rc}"));
        assert_eq!(&back, src, "input {i}");
    }
}

#[test]
fn we_decode_liblzo2() {
    let lib = LibLzo::load();
    for (i, src) in lzo_inputs().iter().enumerate() {
        // LZO1X-1 (the kernel's) and LZO1X-999, which also writes the short
        // M1 matches that LZO1X-1 never does.
        for f in [lib.compress_1, lib.compress_999] {
            let theirs = lib.compress(f, src);
            let mut out = vec![0u8; src.len()];
            Lzo.decompress(&theirs, &mut out)
                .unwrap_or_else(|e| panic!("input {i}: {e}"));
            assert_eq!(&out, src, "input {i}");
        }
    }
}

#[test]
fn our_lzo_ratio_is_liblzo2s() {
    let lib = LibLzo::load();
    let (mut ours, mut theirs) = (0, 0);
    for p in common::pages(200, PAGE) {
        ours += ours_lzo(&p).len();
        theirs += lib.compress(lib.compress_1, &p).len();
    }
    // Same algorithm, not the same bytes: within a few percent either way.
    let ratio = ours as f64 / theirs as f64;
    assert!(
        (0.9..1.05).contains(&ratio),
        "ours {ours} vs liblzo2 {theirs}"
    );
}

#[test]
fn both_lzo_decoders_refuse_the_same_truncations() {
    let lib = LibLzo::load();
    let p = common::page(1, PAGE);
    let s = ours_lzo(&p);
    for cut in [1, s.len() / 3, s.len() - 3, s.len() - 1] {
        let mut out = vec![0u8; PAGE];
        assert!(Lzo.decompress(&s[..cut], &mut out).is_err(), "cut {cut}");
        assert!(lib.decompress(&s[..cut], PAGE).is_err(), "cut {cut}");
    }
}

// --- zlib -------------------------------------------------------------------

/// zlib's raw deflate of `src` at `level` with a window of 2^`bits` bytes.
fn zlib_deflate(src: &[u8], level: u32, bits: u8) -> Vec<u8> {
    let mut c = Compress::new_with_window_bits(Compression::new(level), false, bits);
    let mut out = Vec::with_capacity(src.len() + 64);
    let status = c
        .compress_vec(src, &mut out, FlushCompress::Finish)
        .unwrap();
    assert_eq!(status, Status::StreamEnd);
    out
}

/// zlib's raw inflate of `src` with a window of 2^`bits` bytes, one output
/// byte per call: zlib only enforces its window on distances reaching past
/// the output of the current call, so this makes it refuse any distance
/// beyond the window (+1).
fn zlib_inflate(src: &[u8], bits: u8, len: usize) -> Result<Vec<u8>, String> {
    let mut d = Decompress::new_with_window_bits(false, bits);
    let mut out = vec![0u8; len + 1];
    let mut at = 0;
    loop {
        let consumed = d.total_in() as usize;
        let status = d
            .decompress(
                &src[consumed..],
                &mut out[at..at + 1],
                FlushDecompress::None,
            )
            .map_err(|e| e.to_string())?;
        at = d.total_out() as usize;
        match status {
            Status::StreamEnd => {
                out.truncate(at);
                return Ok(out);
            }
            _ if at > len => return Err("more output than expected".into()),
            _ if d.total_in() as usize == consumed && at < out.len() && consumed == src.len() => {
                return Err("input ends before the final block".into())
            }
            _ => {}
        }
    }
}

#[test]
fn zlib_inflates_ours_with_a_4k_window() {
    for level in 0..=3 {
        for (i, p) in common::pages(60, PAGE).iter().enumerate() {
            let mut buf = vec![0u8; 2 * PAGE];
            let n = deflate_raw_4k(level, p, &mut buf).unwrap();
            // A 4 KiB window in the inflater proves no distance exceeds
            // 4 KiB, as IAA requires.
            for bits in [12, 15] {
                let back = zlib_inflate(&buf[..n], bits, PAGE)
                    .unwrap_or_else(|e| panic!("level {level} page {i} window {bits}: {e}"));
                assert_eq!(&back, p, "level {level} page {i}");
            }
        }
    }
}

#[test]
fn our_window_stays_4k_on_longer_inputs() {
    // 16 KiB whose second half repeats the first: a 32 KiB window would
    // reach 8 KiB back; ours must not.
    let half = common::pages(2, PAGE).concat();
    let src = [half.clone(), half].concat();
    for level in 0..=3 {
        let mut buf = vec![0u8; 2 * src.len()];
        let n = deflate_raw_4k(level, &src, &mut buf).unwrap();
        assert_eq!(zlib_inflate(&buf[..n], 12, src.len()).unwrap(), src);
    }
}

#[test]
fn we_inflate_zlib() {
    for (i, p) in common::pages(60, PAGE).iter().enumerate() {
        for level in [0, 1, 6, 9] {
            for bits in [12, 15] {
                let theirs = zlib_deflate(p, level, bits);
                let mut out = vec![0u8; PAGE];
                inflate_raw(&theirs, &mut out)
                    .unwrap_or_else(|e| panic!("page {i} level {level} window {bits}: {e}"));
                assert_eq!(&out, p);
            }
        }
    }
}

#[test]
fn we_inflate_zlib_32k_window_streams_beyond_a_page() {
    // Matches 8 KiB back: only a 32 KiB-window stream has them, and ours
    // decodes it (the inflater's window is deflate's full 32 KiB).
    let half = common::pages(2, PAGE).concat();
    let src = [half.clone(), half].concat();
    let theirs = zlib_deflate(&src, 9, 15);
    assert!(
        zlib_inflate(&theirs, 12, src.len()).is_err(),
        "test needs far matches"
    );
    let mut out = vec![0u8; src.len()];
    inflate_raw(&theirs, &mut out).unwrap();
    assert_eq!(out, src);
}

#[test]
fn flate2_streaming_api_agrees_too() {
    // The same through flate2's Read/Write wrappers, as a user would write it.
    let p = common::page(2, PAGE);
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), Compression::default());
    enc.write_all(&p).unwrap();
    let theirs = enc.finish().unwrap();
    let mut out = vec![0u8; PAGE];
    inflate_raw(&theirs, &mut out).unwrap();
    assert_eq!(out, p);
    let mut buf = vec![0u8; 2 * PAGE];
    let n = Deflate::new(3).unwrap().compress(&p, &mut buf).unwrap();
    let mut back = Vec::new();
    flate2::read::DeflateDecoder::new(&buf[..n])
        .read_to_end(&mut back)
        .unwrap();
    assert_eq!(back, p);
}

// --- through the cache ------------------------------------------------------

#[test]
fn every_software_compressor_round_trips_through_zswap() {
    let pages = common::pages(200, PAGE);
    let choices: &[(&str, Option<i32>)] = &[
        ("lzo", None),
        ("lz4", None),
        ("zstd", None),
        ("zstd", Some(-5)),
        ("zstd", Some(19)),
        ("deflate", None),
        ("deflate", Some(0)),
        ("deflate", Some(3)),
    ];
    for &(name, level) in choices {
        let z = Zswap::new(Config {
            compressor: name.into(),
            level,
            max_pool_bytes: Some(64 << 20),
            ..Config::default()
        })
        .unwrap();
        let t = z.swapon(pages.len() as u64).unwrap();
        let mut stored = vec![];
        for (i, p) in pages.iter().enumerate() {
            match z.store(t, i as u64, p).unwrap() {
                StoreOutcome::Stored => stored.push(i),
                // Incompressible pages are turned away (no backing file).
                StoreOutcome::Rejected(_) => assert_eq!(i % 10, 9, "{name}: page {i}"),
                other => panic!("{name}: page {i}: {other:?}"),
            }
        }
        assert!(
            stored.len() >= pages.len() * 8 / 10,
            "{name} {level:?}: {stored:?}"
        );
        for &i in &stored {
            match z.load(t, i as u64) {
                Ok(back) => assert_eq!(back, pages[i], "{name} {level:?} page {i}"),
                Err(e) => panic!("{name} {level:?} page {i}: {e}"),
            }
        }
    }
}

#[test]
fn zstd_dictionary_through_zswap() {
    let samples = common::pages(500, PAGE);
    let refs: Vec<&[u8]> = samples.iter().map(|p| p.as_slice()).collect();
    let dict = compress::train_dictionary(&refs, 32 << 10).unwrap();
    let z = Zswap::new(Config {
        compressor: "zstd".into(),
        dictionary: Some(dict.clone()),
        max_pool_bytes: Some(64 << 20),
        ..Config::default()
    })
    .unwrap();
    let t = z.swapon(1000).unwrap();
    let fresh = (10_000..10_300)
        .map(|s| common::page(s, PAGE))
        .collect::<Vec<_>>();
    for (i, p) in fresh.iter().enumerate() {
        if z.store(t, i as u64, p).unwrap() == StoreOutcome::Stored {
            assert_eq!(&z.load(t, i as u64).unwrap(), p);
        }
    }
    assert!(z.stats().stored_pages >= 200);
    // The dictionary pays on pages like the samples.
    let plain = Zstd::new(3, None).unwrap();
    let with = Zstd::new(3, Some(&dict)).unwrap();
    let (mut a, mut b) = (0, 0);
    let mut buf = vec![0u8; 2 * PAGE];
    for p in &fresh {
        a += plain.compress(p, &mut buf).unwrap();
        b += with.compress(p, &mut buf).unwrap();
    }
    assert!(b < a, "with dictionary {b} bytes, without {a}");
    // Other compressors take no dictionary.
    let err = compress::create(
        "lz4",
        &Options {
            dictionary: Some(dict.into()),
            ..Options::default()
        },
    )
    .unwrap_err();
    assert!(err.0.contains("zstd only"), "{}", err.0);
}
