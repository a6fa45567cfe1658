//! Rust's own `store_many` and `load_many`, for `benches/report.py`'s bar
//! "Python batch calls at 90% or more of the Rust throughput".
//!
//! The report runs this program in turns with its own Python rounds, so
//! that both sides sample the same stretches of this shared host. Taking
//! the Rust figure from one `cargo bench` run minutes before the Python
//! side let a slow stretch land on one side only: one report read the
//! Python batches at 66% and 85% of Rust, and a rerun of the Python side a
//! minute later at 104% and 99%.
//!
//!     cargo bench --bench batch -- [ROUNDS]
//!
//! Times the first 4096 pages of the dump (`ZSWAP_RS_PAGES`, default
//! `target/pages.bin`) that the pool takes, as the Python side does: a
//! `store_many` rewriting all of them, then a `load_many` of all of them,
//! in offset order, per round. Prints one line for the report:
//! `BATCH {"store_many": ns, "load_many": ns}`, the best ns per page over
//! ROUNDS rounds (default 3).

mod common;

use std::time::Instant;

use common::{load_pages, PAGE};
use zswap_rs::{Config, StoreOutcome, Zswap};

/// Pages timed: the same as the Python side and `store_load`'s batch.
const PAGES: usize = 4096;

fn main() {
    // cargo passes `--bench` to the program; the first number is ROUNDS.
    let rounds = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(3)
        .max(1);
    let config = || Config {
        max_pool_bytes: Some(1 << 30),
        ..Config::default()
    };

    // The pages the pool takes (not same-filled, not rejected as poor).
    let all = load_pages();
    let probe = Zswap::new(config()).unwrap();
    let t = probe.swapon(all.len() as u64).unwrap();
    let mut outcomes = Vec::new();
    let offsets: Vec<u64> = (0..all.len() as u64).collect();
    probe
        .store_many(t, &offsets, &all.concat(), &mut outcomes)
        .unwrap();
    drop(probe);
    let batch: Vec<u8> = all
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| **o == StoreOutcome::Stored)
        .take(PAGES)
        .flat_map(|(p, _)| p.iter().copied())
        .collect();
    let n = batch.len() / PAGE;
    assert!(n > 0, "no page of the dump goes into the pool");

    let z = Zswap::new(config()).unwrap();
    let t = z.swapon(n as u64).unwrap();
    let offsets = &offsets[..n];
    let mut out = vec![0u8; batch.len()];
    // The first round fills the area; the timed ones rewrite it, as the
    // Python side's rounds after its first do.
    z.store_many(t, offsets, &batch, &mut outcomes).unwrap();
    let (mut store_many, mut load_many) = (f64::MAX, f64::MAX);
    for _ in 0..rounds {
        let start = Instant::now();
        z.store_many(t, offsets, &batch, &mut outcomes).unwrap();
        store_many = store_many.min(start.elapsed().as_nanos() as f64 / n as f64);
        let start = Instant::now();
        z.load_many(t, offsets, &mut out).unwrap();
        load_many = load_many.min(start.elapsed().as_nanos() as f64 / n as f64);
    }
    assert!(outcomes.iter().all(|o| *o == StoreOutcome::Stored));
    assert!(
        out == batch,
        "load_many returned other bytes than were stored"
    );
    println!("BATCH {{\"store_many\": {store_many:.1}, \"load_many\": {load_many:.1}}}");
}
