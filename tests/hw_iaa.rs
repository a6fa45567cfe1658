//! `deflate-iaa` against the IAA device model (`tests/iaa_model`): the
//! descriptors the driver writes, what it does with every completion status,
//! batching, queue limits, timeouts, streams interchangeable with the
//! software `deflate`, and corrupt input. No IAA is needed.

mod common;
mod iaa_model;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use iaa_model::{Decoded, Injection, ModelConfig, ModelDevice};
use proptest::prelude::*;
use zswap_rs::compress::hw::iaa::{self, Iaa, IaaConfig, WqMode, IAA_MAX_BATCH};
use zswap_rs::compress::hw::idxd::*;
use zswap_rs::compress::{
    self, inflate_raw, CompressError, Compressor, CompressorId, DecompressError, Options,
};

const PAGE: usize = 4096;

fn software() -> Arc<dyn Compressor> {
    compress::create("deflate", &Options::default()).expect("software deflate")
}

fn device(asynchronous: bool) -> (ModelDevice, Iaa) {
    device_with(
        ModelConfig {
            asynchronous,
            ..ModelConfig::default()
        },
        default_config(),
    )
}

/// The model runs in a debug build on two cores shared with the other
/// tests, and some 50 times slower under valgrind: far from a device's
/// microseconds. Tests that are not about timeouts wait 10 s (or
/// `ZSWAP_TEST_IAA_TIMEOUT_MS`) rather than the hardware's 100 ms.
fn default_config() -> IaaConfig {
    let mut c = IaaConfig {
        timeout: Duration::from_secs(10),
        ..IaaConfig::default()
    };
    if let Some(ms) = std::env::var("ZSWAP_TEST_IAA_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        c.timeout = Duration::from_millis(ms);
    }
    c
}

fn device_with(model: ModelConfig, config: IaaConfig) -> (ModelDevice, Iaa) {
    let dev = ModelDevice::new(model);
    let iaa = Iaa::with_portal(dev.portal(), software(), config);
    (dev, iaa)
}

/// Pages like anonymous memory: text, small integers, pointers, zeros with
/// a little noise, and noise.
fn page(kind: usize, seed: u64) -> Vec<u8> {
    let mut rng = common::Rng::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) + kind as u64);
    let mut r = move || rng.next();
    match kind % 5 {
        0 => {
            let words = [
                "swap ", "page ", "zswap ", "pool ", "entry ", "tree ", "lru ", "the ",
            ];
            let mut v = Vec::with_capacity(PAGE);
            while v.len() < PAGE {
                v.extend_from_slice(words[(r() % 8) as usize].as_bytes());
            }
            v.truncate(PAGE);
            v
        }
        1 => (0..PAGE / 4)
            .flat_map(|i| ((i as u32 * 7) % 300 + (r() % 3) as u32).to_le_bytes())
            .collect(),
        2 => (0..PAGE / 8)
            .flat_map(|_| (0x7f00_0000_0000u64 + (r() % 64) * 64).to_le_bytes())
            .collect(),
        3 => {
            let mut v = vec![0u8; PAGE];
            for _ in 0..40 {
                let at = (r() % PAGE as u64) as usize;
                v[at] = r() as u8;
            }
            v
        }
        _ => (0..PAGE).map(|_| r() as u8).collect(),
    }
}

/// zlib's raw inflate: the reference every stream is checked against.
fn zlib_inflate(src: &[u8], len: usize) -> Option<Vec<u8>> {
    let mut out = vec![0u8; len + 1];
    let mut z = flate2::Decompress::new(false);
    match z.decompress(src, &mut out, flate2::FlushDecompress::Finish) {
        Ok(flate2::Status::StreamEnd) if z.total_out() as usize == len => {
            out.truncate(len);
            Some(out)
        }
        _ => None,
    }
}

fn zlib_deflate(src: &[u8], level: u32, window_bits: u8) -> Vec<u8> {
    let mut z =
        flate2::Compress::new_with_window_bits(flate2::Compression::new(level), false, window_bits);
    let mut out = vec![0u8; src.len() * 2 + 64];
    let s = z
        .compress(src, &mut out, flate2::FlushCompress::Finish)
        .unwrap();
    assert_eq!(s, flate2::Status::StreamEnd);
    out.truncate(z.total_out() as usize);
    out
}

fn compress_page(iaa: &Iaa, p: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 2 * PAGE];
    let n = iaa.compress(p, &mut buf).expect("compress");
    buf.truncate(n);
    buf
}

#[test]
fn round_trip_inline_and_asynchronous() {
    for asynchronous in [false, true] {
        let (dev, iaa) = device(asynchronous);
        for kind in 0..4 {
            for seed in 0..4 {
                let p = page(kind, seed);
                let c = compress_page(&iaa, &p);
                assert!(c.len() < PAGE, "kind {kind}: {} bytes", c.len());
                let mut out = vec![0u8; PAGE];
                iaa.decompress(&c, &mut out).unwrap();
                assert_eq!(out, p, "kind {kind} seed {seed}");
            }
        }
        let s = iaa.stats();
        assert_eq!((s.hw_compress, s.hw_decompress), (16, 16), "{s:?}");
        assert_eq!(s.sw_fallback_compress + s.sw_fallback_decompress, 0);
        assert_eq!(dev.violations(), Vec::<String>::new());
        assert_eq!(iaa.id(), CompressorId::DeflateIaa);
        assert!(iaa.is_hardware());
        assert_eq!(iaa.batch_size(), IAA_MAX_BATCH);
    }
}

#[test]
fn device_output_is_one_fixed_huffman_block_that_software_reads() {
    let (_dev, iaa) = device(false);
    for kind in 0..4 {
        let p = page(kind, 7);
        let c = compress_page(&iaa, &p);
        // BFINAL = 1, BTYPE = 01: iaa_crypto's "fixed" mode header.
        assert_eq!(c[0] & 0b111, 0b011, "kind {kind}");
        let mut out = vec![0u8; PAGE];
        inflate_raw(&c, &mut out).expect("the project's deflate reads IAA output");
        assert_eq!(out, p);
        assert_eq!(zlib_inflate(&c, PAGE).as_deref(), Some(&p[..]));
        software().decompress(&c, &mut out).unwrap();
        assert_eq!(out, p);
    }
}

#[test]
fn software_streams_decompress_on_the_device() {
    let (dev, iaa) = device(true);
    let mut count = 0;
    for kind in 0..5 {
        let p = page(kind, 3);
        let mut streams = Vec::new();
        for level in 0..=3 {
            let d = compress::create(
                "deflate",
                &Options {
                    level: Some(level),
                    ..Options::default()
                },
            )
            .unwrap();
            let mut buf = vec![0u8; 2 * PAGE];
            let n = d.compress(&p, &mut buf).unwrap();
            streams.push(buf[..n].to_vec());
        }
        // zlib: dynamic blocks, 4 KiB and 32 KiB windows, and stored blocks.
        streams.push(zlib_deflate(&p, 6, 12));
        streams.push(zlib_deflate(&p, 9, 15));
        streams.push(zlib_deflate(&p, 0, 15));
        for s in &streams {
            let mut out = vec![0u8; PAGE];
            iaa.decompress(s, &mut out).unwrap();
            assert_eq!(out, p, "kind {kind}");
            count += 1;
        }
    }
    let s = iaa.stats();
    assert_eq!(s.hw_decompress, count);
    assert_eq!(s.sw_fallback_decompress, 0, "{s:?}");
    assert!(dev.violations().is_empty(), "{:?}", dev.violations());
}

#[test]
fn descriptors_are_the_ones_iaa_crypto_writes() {
    let (dev, iaa) = device(false);
    let p = page(0, 1);
    let mut dst = vec![0u8; 3000];
    let n = iaa.compress(&p, &mut dst).unwrap();
    let mut out = vec![0u8; PAGE];
    iaa.decompress(&dst[..n], &mut out).unwrap();
    let log = dev.log();
    assert_eq!(log.len(), 2);
    let c: Decoded = log[0];
    assert_eq!(c.opcode, 0x43, "IAX_OPCODE_COMPRESS");
    assert_eq!(
        c.flags,
        IDXD_OP_FLAG_CRAV | IDXD_OP_FLAG_RCR | IDXD_OP_FLAG_RD_SRC2_AECS | IDXD_OP_FLAG_CC
    );
    assert_eq!(c.flags & IDXD_OP_FLAG_BOF, 0, "block-on-fault stays clear");
    assert_eq!(c.compr_flags, IAA_COMP_FLUSH_OUTPUT | IAA_COMP_APPEND_EOB);
    assert_ne!(c.src1_addr, p.as_ptr() as u64, "the device reads a copy");
    assert_eq!(c.src1_size, PAGE as u32);
    assert_eq!(c.max_dst_size, 3000, "the caller's budget");
    assert_ne!(c.dst_addr, dst.as_ptr() as u64, "the device writes staging");
    assert_eq!(c.completion_addr % 64, 0);
    assert_eq!(c.src2_addr % 32, 0, "IAA_AECS_ALIGN");
    assert_eq!(c.src2_size, 1568, "sizeof(struct aecs_comp_table_record)");
    assert_eq!((c.pasid_priv, c.int_handle), (0, 0));
    let d = log[1];
    assert_eq!(d.opcode, 0x42, "IAX_OPCODE_DECOMPRESS");
    assert_eq!(
        d.flags,
        IDXD_OP_FLAG_CRAV | IDXD_OP_FLAG_RCR | IDXD_OP_FLAG_CC
    );
    assert_eq!(
        d.compr_flags,
        IAA_DECOMP_ENABLE
            | IAA_DECOMP_FLUSH_OUTPUT
            | IAA_DECOMP_CHECK_FOR_EOB
            | IAA_DECOMP_STOP_ON_EOB
    );
    assert_ne!(d.src1_addr, dst.as_ptr() as u64, "the device reads a copy");
    assert_eq!(d.src1_size, n as u32);
    assert_eq!(d.max_dst_size, PAGE as u32);
    // The Rust struct and the model's byte-offset decoding agree.
    let mut desc = IaxHwDesc::default();
    desc.set_opcode_flags(IAX_OPCODE_DECOMPRESS, IAX_DECOMPRESS_FLAGS);
    desc.completion_addr = 0x1111_2222_3333_4440;
    desc.src1_addr = 0xa;
    desc.dst_addr = 0xb;
    desc.src1_size = 0xc;
    desc.compr_flags = IAA_DECOMP_FLAGS;
    desc.src2_addr = 0xd;
    desc.max_dst_size = 0xe;
    desc.src2_size = 0xf;
    let back = Decoded::from_bytes(&desc.to_bytes());
    assert_eq!(
        (
            back.opcode,
            back.flags,
            back.completion_addr,
            back.src1_addr,
            back.dst_addr
        ),
        (0x42, IAX_DECOMPRESS_FLAGS, 0x1111_2222_3333_4440, 0xa, 0xb)
    );
    assert_eq!(
        (
            back.src1_size,
            back.compr_flags,
            back.src2_addr,
            back.max_dst_size,
            back.src2_size
        ),
        (0xc, IAA_DECOMP_FLAGS, 0xd, 0xe, 0xf)
    );
}

#[test]
fn batches_of_eight_are_in_flight_together() {
    let (dev, iaa) = device_with(
        ModelConfig {
            asynchronous: true,
            latency: Duration::from_micros(300),
            ..ModelConfig::default()
        },
        default_config(),
    );
    let pages: Vec<Vec<u8>> = (0..20).map(|i| page(i % 4, i as u64)).collect();
    let srcs: Vec<&[u8]> = pages.iter().map(|p| &p[..]).collect();
    let mut bufs = vec![vec![0u8; 2 * PAGE]; 20];
    let mut dsts: Vec<&mut [u8]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
    let mut out = vec![Ok(0); 20];
    iaa.compress_batch(&srcs, &mut dsts, &mut out);
    assert_eq!(
        dev.max_pending(),
        IAA_MAX_BATCH,
        "8 submitted before polling"
    );
    let lens: Vec<usize> = out.into_iter().map(|r| r.unwrap()).collect();
    let streams: Vec<&[u8]> = bufs.iter().zip(&lens).map(|(b, &n)| &b[..n]).collect();
    let mut pages_out = vec![vec![0u8; PAGE]; 20];
    let mut dsts: Vec<&mut [u8]> = pages_out.iter_mut().map(|b| &mut b[..]).collect();
    let mut out = vec![Ok(()); 20];
    iaa.decompress_batch(&streams, &mut dsts, &mut out);
    assert!(out.iter().all(|r| r.is_ok()), "{out:?}");
    assert_eq!(pages_out, pages);
    let log = dev.log();
    assert_eq!(log.len(), 40);
    assert!(log[..20].iter().all(|d| d.opcode == IAX_OPCODE_COMPRESS));
    assert!(log[20..].iter().all(|d| d.opcode == IAX_OPCODE_DECOMPRESS));
    assert!(dev.violations().is_empty(), "{:?}", dev.violations());
    assert_eq!(iaa.stats().hw_compress, 20);
}

#[test]
fn a_dedicated_queue_never_gets_more_than_its_size() {
    let (dev, iaa) = device_with(
        ModelConfig {
            asynchronous: true,
            latency: Duration::from_micros(100),
            capacity: 3,
        },
        default_config(),
    );
    let pages: Vec<Vec<u8>> = (0..16).map(|i| page(i % 4, 9 + i as u64)).collect();
    let srcs: Vec<&[u8]> = pages.iter().map(|p| &p[..]).collect();
    let mut bufs = vec![vec![0u8; 2 * PAGE]; 16];
    let mut dsts: Vec<&mut [u8]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
    let mut out = vec![Ok(0); 16];
    iaa.compress_batch(&srcs, &mut dsts, &mut out);
    assert!(out.iter().all(|r| r.is_ok()));
    assert!(dev.max_pending() <= 3, "{}", dev.max_pending());
    assert!(dev.violations().is_empty(), "{:?}", dev.violations());
    assert_eq!(iaa.stats().hw_compress, 16);
}

#[test]
fn page_faults_fall_back_to_software_and_are_counted() {
    let (dev, iaa) = device(false);
    let p = page(1, 5);
    dev.inject([Some(Injection::PageFault)]);
    let c = compress_page(&iaa, &p);
    // Software output: a dynamic or fixed block from ISA-L, still raw deflate.
    assert_eq!(zlib_inflate(&c, PAGE).as_deref(), Some(&p[..]));
    dev.inject([Some(Injection::PageFault)]);
    let mut out = vec![0u8; PAGE];
    iaa.decompress(&c, &mut out).unwrap();
    assert_eq!(out, p);
    let s = iaa.stats();
    assert_eq!(s.page_faults, 2);
    assert_eq!((s.sw_fallback_compress, s.sw_fallback_decompress), (1, 1));
    assert_eq!((s.hw_compress, s.hw_decompress), (0, 0));
    // Batches: one faulting page does not disturb the others.
    dev.inject([None, None, Some(Injection::PageFault), None]);
    let pages: Vec<Vec<u8>> = (0..4).map(|i| page(i, 11)).collect();
    let srcs: Vec<&[u8]> = pages.iter().map(|p| &p[..]).collect();
    let mut bufs = vec![vec![0u8; 2 * PAGE]; 4];
    let mut dsts: Vec<&mut [u8]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
    let mut res = vec![Ok(0); 4];
    iaa.compress_batch(&srcs, &mut dsts, &mut res);
    for (i, r) in res.iter().enumerate() {
        let n = *r.as_ref().unwrap();
        assert_eq!(
            zlib_inflate(&bufs[i][..n], PAGE).as_deref(),
            Some(&pages[i][..])
        );
    }
    let s = iaa.stats();
    assert_eq!(
        (s.page_faults, s.sw_fallback_compress, s.hw_compress),
        (3, 2, 3)
    );
}

#[test]
fn output_overflow_on_compress_is_a_poor_page_unless_asked_to_retry() {
    // A real overflow: noise does not fit 80% of a page.
    let (_dev, iaa) = device(false);
    let noise = page(4, 1);
    let mut small = vec![0u8; PAGE * 80 / 100];
    assert_eq!(
        iaa.compress(&noise, &mut small),
        Err(CompressError::DoesNotFit)
    );
    let s = iaa.stats();
    assert_eq!((s.compress_overflows, s.sw_fallback_compress), (1, 0));
    // The budget is exact: a buffer as long as the stream takes it, one
    // byte less does not.
    let p = page(1, 2);
    let n = compress_page(&iaa, &p).len();
    let mut exact = vec![0u8; n];
    assert_eq!(iaa.compress(&p, &mut exact), Ok(n));
    let mut short = vec![0u8; n - 1];
    assert_eq!(iaa.compress(&p, &mut short), Err(CompressError::DoesNotFit));
    assert_eq!(iaa.stats().compress_overflows, 2);

    // An injected overflow on a page that compresses: software saves it
    // only when configured to.
    let p = page(0, 2);
    let (dev, iaa) = device(false);
    dev.inject([Some(Injection::OutputOverflow)]);
    let mut buf = vec![0u8; PAGE];
    assert_eq!(iaa.compress(&p, &mut buf), Err(CompressError::DoesNotFit));
    let (dev, iaa) = device_with(
        ModelConfig::default(),
        IaaConfig {
            software_on_compress_overflow: true,
            ..default_config()
        },
    );
    dev.inject([Some(Injection::OutputOverflow)]);
    let n = iaa.compress(&p, &mut buf).unwrap();
    assert_eq!(zlib_inflate(&buf[..n], PAGE).as_deref(), Some(&p[..]));
    let s = iaa.stats();
    assert_eq!((s.compress_overflows, s.sw_fallback_compress), (1, 1));
}

#[test]
fn corrupt_streams_are_analytics_errors_then_software_errors() {
    let (_dev, iaa) = device(false);
    let p = page(0, 4);
    let c = compress_page(&iaa, &p);
    let mut out = vec![0u8; PAGE];
    // Truncated: the device cannot finish, software cannot either.
    let err = iaa.decompress(&c[..c.len() / 2], &mut out).unwrap_err();
    assert!(matches!(err, DecompressError::Corrupt(_)), "{err:?}");
    // BTYPE = 11 is reserved.
    let bad = [0x07u8, 0, 0, 0];
    assert!(iaa.decompress(&bad, &mut out).is_err());
    let s = iaa.stats();
    assert_eq!((s.analytics_errors, s.sw_fallback_decompress), (2, 2));
    // An analytics error the software path can read is read there, as
    // iaa_crypto does with deflate-generic.
    let (dev, iaa) = device(false);
    dev.inject([Some(Injection::Status(IAX_COMP_ANALYTICS_ERROR))]);
    iaa.decompress(&c, &mut out).unwrap();
    assert_eq!(out, p);
    assert_eq!(iaa.stats().sw_fallback_decompress, 1);
}

#[test]
fn a_stream_of_the_wrong_length_is_refused() {
    let (_dev, iaa) = device(false);
    let two = [page(0, 1), page(1, 1)].concat();
    let long = zlib_deflate(&two, 6, 15);
    let mut out = vec![0u8; PAGE];
    let err = iaa.decompress(&long, &mut out).unwrap_err();
    assert!(
        matches!(&err, DecompressError::Corrupt(m) if m.contains("more than")),
        "{err:?}"
    );
    let short = zlib_deflate(&two[..1000], 6, 15);
    assert_eq!(
        iaa.decompress(&short, &mut out),
        Err(DecompressError::WrongLength {
            expected: PAGE,
            actual: 1000
        })
    );
}

#[test]
fn a_full_shared_queue_is_retried_then_left_to_software() {
    let (dev, iaa) = device(false);
    let p = page(2, 8);
    dev.refuse_next(5);
    let c = compress_page(&iaa, &p);
    assert_eq!(iaa.stats().hw_compress, 1, "taken after 5 retries");
    dev.refuse_always(true);
    let mut out = vec![0u8; PAGE];
    iaa.decompress(&c, &mut out).unwrap();
    assert_eq!(out, p);
    let s = iaa.stats();
    assert_eq!((s.submit_failures, s.sw_fallback_decompress), (1, 1));
}

#[test]
fn other_error_statuses_fall_back_to_software() {
    let (dev, iaa) = device(false);
    let p = page(3, 2);
    dev.inject([
        Some(Injection::Status(IAX_COMP_BAD_OPCODE)),
        Some(Injection::Status(IAA_ERROR_WATCHDOG_EXPIRED)),
    ]);
    let c = compress_page(&iaa, &p);
    let mut out = vec![0u8; PAGE];
    iaa.decompress(&c, &mut out).unwrap();
    assert_eq!(out, p);
    let s = iaa.stats();
    assert_eq!(s.device_errors, 2);
    assert_eq!((s.sw_fallback_compress, s.sw_fallback_decompress), (1, 1));
}

#[test]
fn a_completion_that_never_comes_disables_the_device() {
    let (dev, iaa) = device_with(
        ModelConfig {
            asynchronous: true,
            ..ModelConfig::default()
        },
        IaaConfig {
            timeout: Duration::from_millis(20),
            ..default_config()
        },
    );
    let p = page(0, 9);
    dev.inject([Some(Injection::Hang)]);
    let c = compress_page(&iaa, &p);
    assert_eq!(zlib_inflate(&c, PAGE).as_deref(), Some(&p[..]));
    assert!(iaa.is_disabled());
    let s = iaa.stats();
    assert_eq!((s.timeouts, s.sw_fallback_compress), (1, 1));
    // Disabled: nothing more reaches the device, everything still works.
    let before = dev.log().len();
    let mut out = vec![0u8; PAGE];
    iaa.decompress(&c, &mut out).unwrap();
    assert_eq!(out, p);
    assert_eq!(dev.log().len(), before);
}

#[test]
fn a_late_completion_writes_only_into_leaked_memory() {
    let (dev, iaa) = device_with(
        ModelConfig {
            asynchronous: true,
            ..ModelConfig::default()
        },
        IaaConfig {
            timeout: Duration::from_millis(10),
            ..default_config()
        },
    );
    let pages: Vec<Vec<u8>> = (0..3).map(|i| page(i, 12)).collect();
    let srcs: Vec<&[u8]> = pages.iter().map(|p| &p[..]).collect();
    let mut bufs = vec![vec![0u8; 2 * PAGE]; 3];
    {
        let mut dsts: Vec<&mut [u8]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
        let mut out = vec![Ok(0); 3];
        dev.inject([None, Some(Injection::Late(Duration::from_millis(60))), None]);
        iaa.compress_batch(&srcs, &mut dsts, &mut out);
        for (i, r) in out.iter().enumerate() {
            let n = *r.as_ref().unwrap();
            assert_eq!(
                zlib_inflate(&bufs[i][..n], PAGE).as_deref(),
                Some(&pages[i][..])
            );
        }
    }
    drop(iaa);
    // The device now writes its completion record and output into the
    // leaked slot; under valgrind or ASan this is where a use-after-free
    // would show.
    dev.join_late();
    assert_eq!(dev.violations(), Vec::<String>::new());
}

#[test]
fn many_threads_share_one_device() {
    let (dev, iaa) = device_with(
        ModelConfig {
            asynchronous: true,
            capacity: 16,
            ..ModelConfig::default()
        },
        default_config(),
    );
    let iaa = Arc::new(iaa);
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let iaa = Arc::clone(&iaa);
            s.spawn(move || {
                for i in 0..48u64 {
                    let p = page((i % 4) as usize, t * 1000 + i);
                    let c = compress_page(&iaa, &p);
                    let mut out = vec![0u8; PAGE];
                    iaa.decompress(&c, &mut out).unwrap();
                    assert_eq!(out, p);
                }
            });
        }
    });
    let s = iaa.stats();
    assert_eq!((s.hw_compress, s.hw_decompress), (192, 192), "{s:?}");
    assert!(dev.max_pending() <= 16);
    assert!(dev.violations().is_empty(), "{:?}", dev.violations());
}

/// What the software path makes of `stream`, for comparison.
fn software_inflate(stream: &[u8]) -> Result<Vec<u8>, DecompressError> {
    let mut out = vec![0u8; PAGE];
    inflate_raw(stream, &mut out).map(|()| out)
}

fn check_mutated(iaa: &Iaa, stream: &[u8]) {
    let mut out = vec![0u8; PAGE];
    let got = iaa.decompress(stream, &mut out);
    match zlib_inflate(stream, PAGE) {
        // A stream zlib reads to a page must come back as exactly that page.
        Some(reference) => {
            assert_eq!(got, Ok(()), "zlib reads it");
            assert_eq!(out, reference);
        }
        // Otherwise: an error, or exactly what the software path decodes
        // (the fallback), never bytes of its own.
        None => {
            if got.is_ok() {
                assert_eq!(software_inflate(stream).as_ref(), Ok(&out));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn mutated_streams_never_crash_nor_return_bytes_of_their_own(
        kind in 0usize..4,
        seed in 0u64..1000,
        flips in prop::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..6),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
        junk in prop::collection::vec(any::<u8>(), 0..16),
    ) {
        let (dev, iaa) = device(false);
        let p = page(kind, seed);
        let mut c = compress_page(&iaa, &p);
        for (at, bit) in &flips {
            let i = at.index(c.len());
            c[i] ^= 1 << bit;
        }
        if truncate {
            c.truncate(cut.index(c.len() + 1));
        }
        c.extend_from_slice(&junk);
        check_mutated(&iaa, &c);
        prop_assert!(dev.violations().is_empty());
    }

    #[test]
    fn random_bytes_never_crash(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let (_dev, iaa) = device(false);
        check_mutated(&iaa, &bytes);
    }
}

// ---- detection, against fake sysfs trees ----

struct FakeTree(PathBuf);

impl FakeTree {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("zswap-iaa-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sys")).unwrap();
        FakeTree(dir)
    }
    fn sys(&self) -> PathBuf {
        self.0.join("sys")
    }
    fn dev(&self) -> PathBuf {
        self.0.join("dev")
    }
    fn attrs(&self, node: &str, attrs: &[(&str, &str)]) {
        let d = self.sys().join(node);
        std::fs::create_dir_all(&d).unwrap();
        for (k, v) in attrs {
            std::fs::write(d.join(k), format!("{v}\n")).unwrap();
        }
    }
    fn cdev(&self, wq: &str) {
        std::fs::create_dir_all(self.dev()).unwrap();
        std::fs::write(self.dev().join(wq), b"").unwrap();
    }
}

impl Drop for FakeTree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn detection_says_what_it_looked_for() {
    let t = FakeTree::new("none");
    let err = iaa::detect_in(&t.0.join("missing"), &t.dev()).unwrap_err();
    assert!(
        err.contains("does not exist") && err.contains("missing"),
        "{err}"
    );

    // A DSA but no IAA.
    t.attrs("dsa0", &[("state", "enabled")]);
    let err = iaa::detect_in(&t.sys(), &t.dev()).unwrap_err();
    assert!(err.contains("has no iax device"), "{err}");

    // An IAA that is disabled.
    t.attrs("iax1", &[("state", "disabled")]);
    let err = iaa::detect_in(&t.sys(), &t.dev()).unwrap_err();
    assert!(err.contains("no enabled iax device"), "{err}");

    // Enabled, with a kernel wq (iaa_crypto's) and a disabled user wq.
    t.attrs("iax1", &[("state", "enabled")]);
    t.attrs(
        "wq1.0",
        &[
            ("state", "enabled"),
            ("type", "kernel"),
            ("mode", "dedicated"),
        ],
    );
    t.attrs(
        "wq1.1",
        &[("state", "disabled"), ("type", "user"), ("mode", "shared")],
    );
    let err = iaa::detect_in(&t.sys(), &t.dev()).unwrap_err();
    assert!(
        err.contains("no enabled wq of type user")
            && err.contains("wq1.0 is enabled/kernel")
            && err.contains("wq1.1 is disabled/user"),
        "{err}"
    );

    // An enabled user wq without its character device.
    t.attrs(
        "wq1.2",
        &[
            ("state", "enabled"),
            ("type", "user"),
            ("mode", "dedicated"),
            ("size", "16"),
            ("max_transfer_size", "2097152"),
        ],
    );
    let err = iaa::detect_in(&t.sys(), &t.dev()).unwrap_err();
    assert!(err.contains("wq1.2 missing"), "{err}");

    // And with it.
    t.cdev("wq1.2");
    let wqs = iaa::detect_in(&t.sys(), &t.dev()).unwrap();
    assert_eq!(wqs.len(), 1);
    let w = &wqs[0];
    assert_eq!((w.name.as_str(), w.device.as_str()), ("wq1.2", "iax1"));
    assert_eq!(
        (w.mode, w.size, w.max_transfer_size),
        (WqMode::Dedicated, 16, 2 << 20)
    );
    assert_eq!(w.dev_path, t.dev().join("wq1.2"));
    // A wq of another device does not count for iax1.
    t.attrs(
        "wq0.0",
        &[("state", "enabled"), ("type", "user"), ("mode", "shared")],
    );
    t.cdev("wq0.0");
    assert_eq!(iaa::detect_in(&t.sys(), &t.dev()).unwrap().len(), 1);
}

#[test]
fn this_machine_reports_deflate_iaa_honestly() {
    let info = compress::compressors()
        .into_iter()
        .find(|c| c.name == "deflate-iaa")
        .unwrap();
    assert!(info.hardware);
    if Path::new(iaa::SYSFS_DSA_DEVICES).exists() && Path::new(iaa::DEV_IAX).exists() {
        return; // a machine with idxd: nothing to say about it here
    }
    assert!(!info.available);
    assert!(
        info.reason.contains("/sys/bus/dsa/devices") && info.reason.contains("/dev/iax"),
        "{}",
        info.reason
    );
    let err = compress::create("deflate-iaa", &Options::default()).unwrap_err();
    assert!(err.0.contains(&info.reason), "{}", err.0);
}

// ---- the driver's unsafe paths, small enough for Miri ----
//
// Run: MIRIFLAGS=-Zmiri-ignore-leaks cargo +nightly miri test --test hw_iaa -- miri_
// (the leaks are the timed-out slots, leaked by design). No FFI here: the
// fallback is miniz_oxide, the model inflates with miniz_oxide too.

/// Raw deflate in pure Rust, standing in for the ISA-L `deflate` where FFI
/// cannot run.
#[derive(Debug)]
struct RustDeflate;

impl Compressor for RustDeflate {
    fn id(&self) -> CompressorId {
        CompressorId::Deflate
    }
    fn compress(&self, src: &[u8], dst: &mut [u8]) -> Result<usize, CompressError> {
        let c = miniz_oxide::deflate::compress_to_vec(src, 1);
        let out = dst.get_mut(..c.len()).ok_or(CompressError::DoesNotFit)?;
        out.copy_from_slice(&c);
        Ok(c.len())
    }
    fn decompress(&self, src: &[u8], dst: &mut [u8]) -> Result<(), DecompressError> {
        let v = miniz_oxide::inflate::decompress_to_vec_with_limit(src, dst.len())
            .map_err(|e| DecompressError::Corrupt(format!("{e:?}")))?;
        if v.len() != dst.len() {
            return Err(DecompressError::WrongLength {
                expected: dst.len(),
                actual: v.len(),
            });
        }
        dst.copy_from_slice(&v);
        Ok(())
    }
}

const SMALL: usize = 512;

fn small_page(seed: u64) -> Vec<u8> {
    page(0, seed)[..SMALL].to_vec()
}

fn miri_device(model: ModelConfig, config: IaaConfig) -> (ModelDevice, Iaa) {
    let dev = ModelDevice::new(model);
    let iaa = Iaa::with_portal(dev.portal(), Arc::new(RustDeflate), config);
    (dev, iaa)
}

#[test]
fn miri_round_trip_inline_and_asynchronous() {
    for asynchronous in [false, true] {
        let (dev, iaa) = miri_device(
            ModelConfig {
                asynchronous,
                ..ModelConfig::default()
            },
            IaaConfig::default(),
        );
        let p = small_page(1);
        let mut buf = vec![0u8; SMALL];
        let n = iaa.compress(&p, &mut buf).unwrap();
        let mut out = vec![0u8; SMALL];
        iaa.decompress(&buf[..n], &mut out).unwrap();
        assert_eq!(out, p);
        assert_eq!(iaa.stats().hw_decompress, 1);
        assert!(dev.violations().is_empty());
    }
}

#[test]
fn miri_batches_through_a_small_queue_with_a_fault() {
    let (dev, iaa) = miri_device(
        ModelConfig {
            asynchronous: true,
            capacity: 2,
            ..ModelConfig::default()
        },
        IaaConfig::default(),
    );
    let pages: Vec<Vec<u8>> = (0..5).map(small_page).collect();
    let srcs: Vec<&[u8]> = pages.iter().map(|p| &p[..]).collect();
    let mut bufs = vec![vec![0u8; SMALL]; 5];
    let mut dsts: Vec<&mut [u8]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
    let mut out = vec![Ok(0); 5];
    dev.inject([None, Some(Injection::PageFault)]);
    iaa.compress_batch(&srcs, &mut dsts, &mut out);
    let lens: Vec<usize> = out.into_iter().map(|r| r.unwrap()).collect();
    let streams: Vec<&[u8]> = bufs.iter().zip(&lens).map(|(b, &n)| &b[..n]).collect();
    let mut back = vec![vec![0u8; SMALL]; 5];
    let mut dsts: Vec<&mut [u8]> = back.iter_mut().map(|b| &mut b[..]).collect();
    let mut out = vec![Ok(()); 5];
    iaa.decompress_batch(&streams, &mut dsts, &mut out);
    assert!(out.iter().all(|r| r.is_ok()));
    assert_eq!(back, pages);
    let s = iaa.stats();
    assert_eq!(
        (s.hw_compress, s.sw_fallback_compress, s.hw_decompress),
        (4, 1, 5)
    );
    assert!(dev.max_pending() <= 2);
    assert!(dev.violations().is_empty(), "{:?}", dev.violations());
}

#[test]
fn miri_hang_and_late_completion_touch_only_leaked_memory() {
    let (dev, iaa) = miri_device(
        ModelConfig {
            asynchronous: true,
            ..ModelConfig::default()
        },
        IaaConfig {
            timeout: Duration::from_millis(10),
            ..IaaConfig::default()
        },
    );
    let pages: Vec<Vec<u8>> = (0..3).map(small_page).collect();
    let srcs: Vec<&[u8]> = pages.iter().map(|p| &p[..]).collect();
    let mut bufs = vec![vec![0u8; SMALL]; 3];
    let mut dsts: Vec<&mut [u8]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
    let mut out = vec![Ok(0); 3];
    dev.inject([
        Some(Injection::Late(Duration::from_millis(40))),
        Some(Injection::Hang),
    ]);
    iaa.compress_batch(&srcs, &mut dsts, &mut out);
    assert!(iaa.is_disabled());
    for (i, r) in out.iter().enumerate() {
        let n = *r.as_ref().unwrap();
        let mut back = vec![0u8; SMALL];
        RustDeflate.decompress(&bufs[i][..n], &mut back).unwrap();
        assert_eq!(back, pages[i]);
    }
    drop(srcs);
    drop(pages);
    drop(iaa);
    dev.join_late();
    assert!(dev.violations().is_empty());
}
