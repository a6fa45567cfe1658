//! `store_many` hands a batching compressor its pages together: through the
//! IAA device model, a batch of pages is in the work queue at once, and every
//! page comes back intact through the cache.

mod iaa_model;

mod common;

use std::sync::Arc;
use std::time::Duration;

use iaa_model::{ModelConfig, ModelDevice};
use zswap_rs::compress::hw::iaa::{Iaa, IaaConfig};
use zswap_rs::compress::{self, Compressor, Options};
use zswap_rs::{Config, StoreOutcome, Zswap};

const PAGE: usize = 4096;

fn page(seed: u64) -> Vec<u8> {
    let words: [&[u8]; 6] = [b"swap ", b"page ", b"zswap ", b"pool ", b"tree ", b"lru "];
    let mut rng = common::Rng::new(seed);
    let mut p = format!("<{seed}>").into_bytes();
    while p.len() < PAGE {
        p.extend_from_slice(words[rng.below(6) as usize]);
    }
    p.truncate(PAGE);
    p
}

#[test]
fn store_many_submits_batches_to_the_device() {
    let dev = ModelDevice::new(ModelConfig {
        asynchronous: true,
        latency: Duration::from_micros(200),
        ..ModelConfig::default()
    });
    let software = compress::create("deflate", &Options::default()).unwrap();
    let iaa = Arc::new(Iaa::with_portal(
        dev.portal(),
        software,
        IaaConfig {
            timeout: Duration::from_secs(10),
            ..IaaConfig::default()
        },
    ));
    assert!(iaa.batch_size() > 1);
    let z = Zswap::new(Config {
        max_pool_bytes: Some(64 << 20),
        ..Config::default()
    })
    .unwrap();
    z.set_compressor_instance(iaa.clone());
    let t = z.swapon(256).unwrap();
    let mut pages = Vec::new();
    for i in 0..64u64 {
        // Every eighth page same-filled: settled before the batch.
        pages.extend_from_slice(&if i % 8 == 3 { vec![0u8; PAGE] } else { page(i) });
    }
    let offsets: Vec<u64> = (100..164).collect();
    let mut outcomes = Vec::new();
    z.store_many(t, &offsets, &pages, &mut outcomes).unwrap();
    for (i, o) in outcomes.iter().enumerate() {
        let want = if i % 8 == 3 {
            StoreOutcome::SameFilled
        } else {
            StoreOutcome::Stored
        };
        assert_eq!(*o, want, "page {i}");
    }
    assert!(dev.max_pending() > 1, "pages were submitted one at a time");
    assert!(dev.violations().is_empty(), "{:?}", dev.violations());
    let mut out = vec![0u8; pages.len()];
    z.load_many(t, &offsets, &mut out).unwrap();
    assert!(out == pages);
    let s = z.stats();
    assert_eq!((s.stored_pages, s.same_filled_pages), (64, 8));
    let st = iaa.stats();
    assert_eq!((st.hw_compress, st.sw_fallback_compress), (56, 0), "{st:?}");
    assert_eq!(st.hw_decompress, 56, "{st:?}");
}
