//! `nx-gzip`'s loader and stream handling, proven on the system zlib
//! (`libz.so.1`) loaded through the very code that loads libnxz on POWER:
//! round trips, streams interchangeable with the software `deflate` both
//! ways, stream reuse across pages and threads, and corrupt input.

mod common;

use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use zswap_rs::compress::hw::nx::{self, NxGzip, ZlibApi};
use zswap_rs::compress::{
    self, inflate_raw, CompressError, Compressor, CompressorId, DecompressError, Options,
};

const PAGE: usize = 4096;
/// Debian's zlib: what libnxz's API copies.
const LIBZ: &str = "libz.so.1";

fn zlib() -> NxGzip {
    NxGzip::open_library(LIBZ, "", nx::Z_DEFAULT_COMPRESSION).expect("system zlib loads")
}

fn page(kind: usize, seed: u64) -> Vec<u8> {
    let mut rng = common::Rng::new(seed);
    let mut r = move || rng.next();
    match kind % 4 {
        0 => {
            let mut v = Vec::with_capacity(PAGE);
            while v.len() < PAGE {
                v.extend_from_slice(format!("entry {} offset {}\n", r() % 50, r() % 9).as_bytes());
            }
            v.truncate(PAGE);
            v
        }
        1 => (0..PAGE / 4)
            .flat_map(|i| ((i as u32 % 97) + (r() % 2) as u32).to_le_bytes())
            .collect(),
        2 => {
            let mut v = vec![0u8; PAGE];
            for _ in 0..50 {
                let at = (r() % PAGE as u64) as usize;
                v[at] = r() as u8;
            }
            v
        }
        _ => (0..PAGE).map(|_| r() as u8).collect(),
    }
}

fn software(level: i32) -> Arc<dyn Compressor> {
    compress::create(
        "deflate",
        &Options {
            level: Some(level),
            ..Options::default()
        },
    )
    .unwrap()
}

#[test]
fn round_trips_through_the_loaded_library() {
    let z = zlib();
    assert_eq!(z.id(), CompressorId::NxGzip);
    assert!(!z.is_hardware(), "plain zlib is not an accelerator");
    for kind in 0..4 {
        for seed in 0..8 {
            let p = page(kind, seed);
            let mut buf = vec![0u8; 2 * PAGE];
            let n = z.compress(&p, &mut buf).unwrap();
            if kind < 3 {
                assert!(n < PAGE / 2, "kind {kind}: {n}");
            }
            let mut out = vec![0u8; PAGE];
            z.decompress(&buf[..n], &mut out).unwrap();
            assert_eq!(out, p);
        }
    }
}

#[test]
fn streams_interchange_with_software_deflate_both_ways() {
    let z = zlib();
    for kind in 0..4 {
        let p = page(kind, 42);
        // nx-gzip -> deflate (ISA-L).
        let mut buf = vec![0u8; 2 * PAGE];
        let n = z.compress(&p, &mut buf).unwrap();
        let mut out = vec![0u8; PAGE];
        inflate_raw(&buf[..n], &mut out).unwrap();
        assert_eq!(out, p);
        // deflate (ISA-L), every level -> nx-gzip.
        for level in 0..=3 {
            let n = software(level).compress(&p, &mut buf).unwrap();
            let mut out = vec![0u8; PAGE];
            z.decompress(&buf[..n], &mut out).unwrap();
            assert_eq!(out, p, "kind {kind} level {level}");
        }
    }
}

#[test]
fn the_window_is_4_kib() {
    // Two identical 4 KiB halves: a 32 KiB window would copy the second
    // half from the first at distance 4096; a 4 KiB window (windowBits 12,
    // at most 4096 - 262 back in zlib) cannot, so the stream stays large.
    let half = page(3, 1);
    let two = [half.clone(), half].concat();
    let z = zlib();
    let mut buf = vec![0u8; 3 * PAGE];
    let n = z.compress(&two, &mut buf).unwrap();
    assert!(n > PAGE + PAGE / 2, "{n}: matched across more than 4 KiB");
    let mut out = vec![0u8; 2 * PAGE];
    z.decompress(&buf[..n], &mut out).unwrap();
    assert_eq!(out, two);
}

#[test]
fn a_short_buffer_does_not_fit_and_the_stream_is_reset_after() {
    let z = zlib();
    let noise = page(3, 7);
    let mut small = vec![0u8; PAGE * 80 / 100];
    assert_eq!(
        z.compress(&noise, &mut small),
        Err(CompressError::DoesNotFit)
    );
    // The same (reset) stream serves the next page correctly.
    let p = page(0, 7);
    let mut buf = vec![0u8; PAGE];
    let n = z.compress(&p, &mut buf).unwrap();
    let mut out = vec![0u8; PAGE];
    z.decompress(&buf[..n], &mut out).unwrap();
    assert_eq!(out, p);
    // A buffer exactly as long as the stream is enough.
    let mut exact = vec![0u8; n];
    assert_eq!(z.compress(&p, &mut exact), Ok(n));
    assert_eq!(exact, buf[..n]);
    // One byte short is not.
    let mut short = vec![0u8; n - 1];
    assert_eq!(z.compress(&p, &mut short), Err(CompressError::DoesNotFit));
    assert_eq!(z.compress(&p, &mut exact), Ok(n));
    assert_eq!(z.pooled_streams(), 1, "one thread, one stream pair");
}

#[test]
fn streams_are_reused_per_thread_not_per_page() {
    let z = Arc::new(zlib());
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let z = Arc::clone(&z);
            s.spawn(move || {
                for i in 0..100 {
                    let p = page((i % 3) as usize, t * 1000 + i);
                    let mut buf = vec![0u8; 2 * PAGE];
                    let n = z.compress(&p, &mut buf).unwrap();
                    let mut out = vec![0u8; PAGE];
                    z.decompress(&buf[..n], &mut out).unwrap();
                    assert_eq!(out, p);
                }
            });
        }
    });
    let pooled = z.pooled_streams();
    assert!(
        (1..=4).contains(&pooled),
        "{pooled} stream pairs for 4 threads"
    );
}

#[test]
fn wrong_lengths_and_corrupt_streams_are_errors() {
    let z = zlib();
    let p = page(0, 3);
    let mut buf = vec![0u8; 2 * PAGE];
    let n = z.compress(&p, &mut buf).unwrap();
    let mut out = vec![0u8; PAGE];
    let err = z.decompress(&buf[..n / 2], &mut out).unwrap_err();
    assert!(
        matches!(&err, DecompressError::Corrupt(m) if m.contains("truncated")),
        "{err:?}"
    );
    let two = [p.clone(), p.clone()].concat();
    let mut big = vec![0u8; 3 * PAGE];
    let m = z.compress(&two, &mut big).unwrap();
    let err = z.decompress(&big[..m], &mut out).unwrap_err();
    assert!(
        matches!(&err, DecompressError::Corrupt(m) if m.contains("more than")),
        "{err:?}"
    );
    let m = z.compress(&p[..1000], &mut big).unwrap();
    assert_eq!(
        z.decompress(&big[..m], &mut out),
        Err(DecompressError::WrongLength {
            expected: PAGE,
            actual: 1000
        })
    );
    let err = z.decompress(&[0x07, 0, 0], &mut out).unwrap_err();
    assert!(
        matches!(&err, DecompressError::Corrupt(m) if m.contains("zlib")),
        "{err:?}"
    );
    // And the stream still works after all that.
    z.decompress(&buf[..n], &mut out).unwrap();
    assert_eq!(out, p);
}

#[test]
fn loading_says_what_is_missing() {
    let err = ZlibApi::open("libdoes-not-exist.so.9", "").unwrap_err();
    assert!(err.contains("cannot load libdoes-not-exist.so.9"), "{err}");
    // A library without zlib's entry points.
    let err = ZlibApi::open("libc.so.6", "").unwrap_err();
    assert!(err.contains("symbol deflateInit2_ missing"), "{err}");
    // zlib has no nx_-prefixed names: that is libnxz's.
    let err = ZlibApi::open(LIBZ, "nx_").unwrap_err();
    assert!(err.contains("nx_deflateInit2_"), "{err}");
}

#[test]
fn detection_needs_the_device_node() {
    let err = nx::detect_in(Path::new("/nonexistent/crypto/nx-gzip")).unwrap_err();
    assert!(err.contains("/nonexistent/crypto/nx-gzip missing"), "{err}");
    let node = std::env::temp_dir().join(format!("zswap-nx-gzip-{}", std::process::id()));
    std::fs::write(&node, b"").unwrap();
    assert_eq!(nx::detect_in(&node), Ok(()));
    std::fs::remove_file(&node).unwrap();
}

#[test]
fn this_machine_reports_nx_gzip_honestly() {
    let info = compress::compressors()
        .into_iter()
        .find(|c| c.name == "nx-gzip")
        .unwrap();
    assert!(info.hardware);
    if Path::new(nx::NX_GZIP_DEVICE).exists() {
        return;
    }
    assert!(!info.available);
    assert!(
        info.reason.contains("/dev/crypto/nx-gzip"),
        "{}",
        info.reason
    );
    let err = compress::create("nx-gzip", &Options::default()).unwrap_err();
    assert!(err.0.contains(&info.reason), "{}", err.0);
}

/// zlib's raw inflate, through flate2: the reference.
fn reference(src: &[u8]) -> Option<Vec<u8>> {
    let mut out = vec![0u8; PAGE + 1];
    let mut d = flate2::Decompress::new(false);
    match d.decompress(src, &mut out, flate2::FlushDecompress::Finish) {
        Ok(flate2::Status::StreamEnd) if d.total_out() as usize == PAGE => {
            out.truncate(PAGE);
            Some(out)
        }
        _ => None,
    }
}

fn check(z: &NxGzip, stream: &[u8]) {
    let mut out = vec![0u8; PAGE];
    let got = z.decompress(stream, &mut out);
    match reference(stream) {
        Some(r) => {
            assert_eq!(got, Ok(()));
            assert_eq!(out, r);
        }
        None => assert!(got.is_err(), "accepted what zlib refuses"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn mutated_streams_never_crash_nor_return_bytes_of_their_own(
        kind in 0usize..3,
        seed in 0u64..1000,
        flips in prop::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..6),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let z = zlib();
        let p = page(kind, seed);
        let mut buf = vec![0u8; 2 * PAGE];
        let n = z.compress(&p, &mut buf).unwrap();
        let mut c = buf[..n].to_vec();
        for (at, bit) in &flips {
            let i = at.index(c.len());
            c[i] ^= 1 << bit;
        }
        if truncate {
            c.truncate(cut.index(c.len() + 1));
        }
        check(&z, &c);
    }

    #[test]
    fn random_bytes_never_crash(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        check(&zlib(), &bytes);
    }
}
