//! Every software compressor on real pages: ratio, and ns per page to
//! compress and decompress on its own and to store and load through
//! `Zswap`, next to the C references of the same formats in the same run
//! (liblzo2's LZO1X-1, dlopened; zlib's raw deflate at level 1 with a
//! 4 KiB window). The Python face and its peers (python-lz4, python-isal,
//! zstandard, python-lzo) are `benches/bench_compressors.py`.
//!
//! Real pages: a raw dump written by `zswap-rs profile --save-pages FILE`,
//! named by `ZSWAP_RS_PAGES` (default `target/pages.bin`). Same-filled pages
//! never reach a compressor and are left out; the ratio is over every other
//! page, the timings over the pages that every compressor shrinks below the
//! cache's 80% limit (so that each does the same work: compress, store,
//! load). The zstd dictionary is trained on pages disjoint from those timed.
//!
//!     zswap-rs profile --save-pages target/pages.bin
//!     cargo bench --bench compressors

mod common;

use std::hint::black_box;
use std::time::Duration;

use common::{estimate_ns, load_pages, PAGE};
use criterion::{Criterion, Throughput};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use zswap_rs::compress::{self, Options};
use zswap_rs::{same_filled_word, Config, Zswap};

/// Pages timed per batch: enough to leave the caches as a real workload
/// would, few enough for quick iterations.
const BATCH: usize = 2048;
/// Pages the zstd dictionary is trained on.
const TRAIN: usize = 2000;
/// The cache's default `max_compression_ratio`.
const MAX_LEN: usize = PAGE * 80 / 100;

/// One configuration: a label, the name, the level, with a dictionary.
struct Choice {
    label: &'static str,
    name: &'static str,
    level: Option<i32>,
    dictionary: bool,
}

const CHOICES: &[Choice] = &[
    Choice {
        label: "lzo",
        name: "lzo",
        level: None,
        dictionary: false,
    },
    Choice {
        label: "lz4",
        name: "lz4",
        level: None,
        dictionary: false,
    },
    Choice {
        label: "zstd-1",
        name: "zstd",
        level: Some(1),
        dictionary: false,
    },
    Choice {
        label: "zstd-3",
        name: "zstd",
        level: Some(3),
        dictionary: false,
    },
    Choice {
        label: "zstd-3-dict",
        name: "zstd",
        level: Some(3),
        dictionary: true,
    },
    Choice {
        label: "deflate-0",
        name: "deflate",
        level: Some(0),
        dictionary: false,
    },
    Choice {
        label: "deflate-1",
        name: "deflate",
        level: Some(1),
        dictionary: false,
    },
    Choice {
        label: "deflate-3",
        name: "deflate",
        level: Some(3),
        dictionary: false,
    },
];

/// liblzo2, the reference LZO1X-1, if it is installed (it is GPL: dlopened
/// by the benchmark, never linked into the crate).
struct LibLzo {
    _lib: libloading::Library,
    compress: LzoFn,
    decompress: LzoFn,
}

type LzoFn = unsafe extern "C" fn(
    *const u8,
    std::ffi::c_ulong,
    *mut u8,
    *mut std::ffi::c_ulong,
    *mut std::ffi::c_void,
) -> std::ffi::c_int;

impl LibLzo {
    fn load() -> Option<LibLzo> {
        // SAFETY: loading liblzo2 runs no initialiser with preconditions.
        let lib = unsafe { libloading::Library::new("liblzo2.so.2") }.ok()?;
        // SAFETY: these symbols have the `LzoFn` C signature (lzo/lzo1x.h),
        // and the pointers do not outlive `lib`, kept alongside them.
        unsafe {
            let compress = *lib.get::<LzoFn>(b"lzo1x_1_compress\0").ok()?;
            let decompress = *lib.get::<LzoFn>(b"lzo1x_decompress_safe\0").ok()?;
            Some(LibLzo {
                _lib: lib,
                compress,
                decompress,
            })
        }
    }

    /// One call; `wrkmem` is LZO1X_1_MEM_COMPRESS (16384 pointers).
    fn run(f: LzoFn, src: &[u8], dst: &mut [u8], wrkmem: &mut [u64]) -> usize {
        let mut len = dst.len() as std::ffi::c_ulong;
        // SAFETY: src and dst are live for the call with the lengths given,
        // dst has room for liblzo2's worst case, wrkmem is 128 KiB, aligned.
        let rc = unsafe {
            f(
                src.as_ptr(),
                src.len() as std::ffi::c_ulong,
                dst.as_mut_ptr(),
                &mut len,
                wrkmem.as_mut_ptr().cast(),
            )
        };
        assert_eq!(rc, 0);
        len as usize
    }
}

fn main() {
    let all: Vec<Vec<u8>> = load_pages()
        .into_iter()
        .filter(|p| same_filled_word(p).is_none())
        .collect();
    assert!(all.len() > 100, "too few pages that are not same-filled");
    // The timed pages and the training pages, spread over the whole dump.
    let stride = (all.len() / (BATCH + TRAIN)).max(1);
    let train: Vec<&[u8]> = all
        .iter()
        .skip(stride / 2)
        .step_by(stride)
        .take(TRAIN)
        .map(|p| &p[..])
        .collect();
    let dictionary = compress::train_dictionary(&train, 32 << 10).expect("train a dictionary");

    let build = |c: &Choice| {
        let options = Options {
            level: c.level,
            dictionary: c.dictionary.then(|| dictionary.clone().into()),
        };
        compress::create(c.name, &options).expect("software compressors are available")
    };
    let comps: Vec<_> = CHOICES.iter().map(build).collect();

    // Ratio over all the non-same-filled pages; the timed set is the pages
    // that every compressor shrinks below the limit.
    let mut buf = vec![0u8; 2 * PAGE];
    let mut ratio = vec![];
    let mut kept_by_all = vec![true; all.len()];
    for comp in &comps {
        let mut total = 0usize;
        let mut kept = 0usize;
        for (i, p) in all.iter().enumerate() {
            let n = comp.compress(p, &mut buf).unwrap();
            total += n.min(PAGE);
            if n <= MAX_LEN {
                kept += 1;
            } else {
                kept_by_all[i] = false;
            }
        }
        ratio.push((
            (all.len() * PAGE) as f64 / total as f64,
            kept as f64 / all.len() as f64,
        ));
    }
    let timed: Vec<&[u8]> = all
        .iter()
        .zip(&kept_by_all)
        .filter(|(_, k)| **k)
        .map(|(p, _)| &p[..])
        .step_by(stride)
        .take(BATCH)
        .collect();
    let n = timed.len();
    println!(
        "pages: {} not same-filled; {} timed (every compressor keeps them), {} for the dictionary",
        all.len(),
        n,
        train.len()
    );

    let mut c = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(20);

    let mut page = vec![0u8; PAGE];
    for (choice, comp) in CHOICES.iter().zip(&comps) {
        let compressed: Vec<Vec<u8>> = timed
            .iter()
            .map(|p| {
                let k = comp.compress(p, &mut buf).unwrap();
                buf[..k].to_vec()
            })
            .collect();
        let mut g = c.benchmark_group(choice.label);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function("compress", |b| {
            b.iter(|| {
                for p in &timed {
                    black_box(comp.compress(black_box(p), &mut buf).unwrap());
                }
            })
        });
        g.bench_function("decompress", |b| {
            b.iter(|| {
                for s in &compressed {
                    comp.decompress(black_box(s), &mut page).unwrap();
                }
                black_box(&page);
            })
        });
        let z = Zswap::new(Config {
            compressor: choice.name.into(),
            level: choice.level,
            dictionary: choice.dictionary.then(|| dictionary.clone()),
            max_pool_bytes: Some(1 << 30),
            ..Config::default()
        })
        .unwrap();
        let t = z.swapon(n as u64).unwrap();
        g.bench_function("store", |b| {
            b.iter(|| {
                // Each store replaces the page at its offset: store +
                // invalidate, as in steady state.
                for (i, p) in timed.iter().enumerate() {
                    black_box(z.store(t, i as u64, black_box(p)).unwrap());
                }
            })
        });
        g.bench_function("load", |b| {
            b.iter(|| {
                for i in 0..n {
                    z.load_into(t, i as u64, &mut page).unwrap();
                }
                black_box(&page);
            })
        });
        g.finish();
    }

    // The C references of the same formats, same pages, state reused.
    {
        let mut g = c.benchmark_group("reference");
        g.throughput(Throughput::Elements(n as u64));
        if let Some(lzo) = LibLzo::load() {
            let mut wrkmem = vec![0u64; 16384];
            let compressed: Vec<Vec<u8>> = timed
                .iter()
                .map(|p| {
                    let k = LibLzo::run(lzo.compress, p, &mut buf, &mut wrkmem);
                    buf[..k].to_vec()
                })
                .collect();
            g.bench_function("liblzo2-compress", |b| {
                b.iter(|| {
                    for p in &timed {
                        black_box(LibLzo::run(lzo.compress, p, &mut buf, &mut wrkmem));
                    }
                })
            });
            g.bench_function("liblzo2-decompress", |b| {
                b.iter(|| {
                    for s in &compressed {
                        black_box(LibLzo::run(lzo.decompress, s, &mut page, &mut wrkmem));
                    }
                })
            });
        } else {
            println!("liblzo2 not found (apt-get install liblzo2-2): no LZO reference");
        }
        let mut zc = Compress::new_with_window_bits(Compression::new(1), false, 12);
        let mut zd = Decompress::new(false);
        let compressed: Vec<Vec<u8>> = timed
            .iter()
            .map(|p| {
                zc.reset();
                zc.compress(p, &mut buf, FlushCompress::Finish).unwrap();
                buf[..zc.total_out() as usize].to_vec()
            })
            .collect();
        g.bench_function("zlib-1-compress", |b| {
            b.iter(|| {
                for p in &timed {
                    zc.reset();
                    zc.compress(black_box(p), &mut buf, FlushCompress::Finish)
                        .unwrap();
                    black_box(zc.total_out());
                }
            })
        });
        g.bench_function("zlib-decompress", |b| {
            b.iter(|| {
                for s in &compressed {
                    zd.reset(false);
                    zd.decompress(black_box(s), &mut page, FlushDecompress::Finish)
                        .unwrap();
                }
                black_box(&page);
            })
        });
        g.finish();
    }
    c.final_summary();

    let per_page = |group: &str, bench: &str| estimate_ns(group, bench).map(|ns| ns / n as f64);
    let show = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
    let over = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:+.0}%", (a - b) / b * 100.0),
        _ => "-".into(),
    };
    println!();
    println!("{n} real pages, median ns per page; ratio and kept share over all {} non-same-filled pages", all.len());
    println!(
        "{:<12} {:>6} {:>6} {:>9} {:>9} {:>6} {:>11} {:>9} {:>6}",
        "compressor", "ratio", "kept", "compress", "store", "+", "decompress", "load", "+"
    );
    for (choice, (r, kept)) in CHOICES.iter().zip(&ratio) {
        let (cp, st) = (
            per_page(choice.label, "compress"),
            per_page(choice.label, "store"),
        );
        let (dc, ld) = (
            per_page(choice.label, "decompress"),
            per_page(choice.label, "load"),
        );
        println!(
            "{:<12} {:>6.2} {:>5.1}% {:>9} {:>9} {:>6} {:>11} {:>9} {:>6}",
            choice.label,
            r,
            kept * 100.0,
            show(cp),
            show(st),
            over(st, cp),
            show(dc),
            show(ld),
            over(ld, dc)
        );
    }
    println!(
        "reference: liblzo2 LZO1X-1 {} / {} ns (compress / decompress); zlib level 1, 4 KiB window {} / {} ns",
        show(per_page("reference", "liblzo2-compress")),
        show(per_page("reference", "liblzo2-decompress")),
        show(per_page("reference", "zlib-1-compress")),
        show(per_page("reference", "zlib-decompress")),
    );
    let pair = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}x", b / a),
        _ => "-".into(),
    };
    println!(
        "ours vs reference speed: lzo compress {}, decompress {}; deflate-1 compress {}, decompress {}",
        pair(per_page("lzo", "compress"), per_page("reference", "liblzo2-compress")),
        pair(per_page("lzo", "decompress"), per_page("reference", "liblzo2-decompress")),
        pair(per_page("deflate-1", "compress"), per_page("reference", "zlib-1-compress")),
        pair(per_page("deflate-1", "decompress"), per_page("reference", "zlib-decompress")),
    );
}
