//! Pages that look like a process's anonymous memory, for the compressor
//! tests: made here from a seed so that no test depends on a page dump.
//!
//! A swapped-out page is rarely text and rarely noise: it is heap records
//! (headers, pointers into the same few mappings, small counters, padding),
//! arrays of numbers, some strings, stacks with return addresses, and a
//! share of already-compressed or encrypted bytes that nothing shrinks.

#![allow(dead_code)]

pub mod liblzo;

/// A small, fast, seedable generator (xorshift64*), so the tests need no crate.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            *b = (self.next() >> 56) as u8;
        }
    }
}

const WORDS: &[&str] = &[
    "the",
    "page",
    "swap",
    "offset",
    "entry",
    "pool",
    "zswap",
    "compress",
    "error",
    "value",
    "/usr/lib/x86_64-linux-gnu/",
    "LD_LIBRARY_PATH",
    "connection",
    "request",
    "GET ",
    "HTTP/1.1",
    "application/json",
    "{\"id\":",
    "\"name\":",
    "null",
    "true",
    "false",
    "2024-05-01T12:00:00Z",
];

/// One page of `size` bytes of the kind `seed` picks.
pub fn page(seed: u64, size: usize) -> Vec<u8> {
    let mut r = Rng::new(seed);
    let mut p = vec![0u8; size];
    match seed % 10 {
        // Heap: 16-byte aligned chunks with a size header, pointers into two
        // mappings, small counters, zero padding.
        0..=3 => {
            let heap = 0x0000_5555_5600_0000u64 + (r.below(64) << 20);
            let libs = 0x0000_7f3a_1c00_0000u64;
            let mut at = 0;
            while at + 16 <= size {
                let chunk = (16 * (1 + r.below(6)) as usize).min(size - at);
                p[at..at + 8].copy_from_slice(&((chunk as u64) | 1).to_le_bytes());
                let mut w = at + 8;
                while w + 8 <= at + chunk {
                    let v = match r.below(6) {
                        0 => heap + (r.below(1 << 16) << 4),
                        1 => libs + r.below(1 << 20),
                        2 => r.below(256),
                        3 => r.below(1 << 32),
                        _ => 0,
                    };
                    p[w..w + 8].copy_from_slice(&v.to_le_bytes());
                    w += 8;
                }
                at += chunk;
            }
        }
        // Text and JSON-ish strings.
        4 | 5 => {
            let mut at = 0;
            while at < size {
                let w = WORDS[r.below(WORDS.len() as u64) as usize].as_bytes();
                let n = w.len().min(size - at);
                p[at..at + n].copy_from_slice(&w[..n]);
                at += n;
                if at < size {
                    p[at] = if r.below(8) == 0 { b'\n' } else { b' ' };
                    at += 1;
                }
            }
        }
        // Arrays: increasing i32 ids next to f64 samples.
        6 => {
            let base = r.below(1 << 20) as u32;
            for (i, c) in p.chunks_exact_mut(16).enumerate() {
                c[..4].copy_from_slice(&(base + i as u32).to_le_bytes());
                c[4..8].copy_from_slice(&(r.below(100) as u32).to_le_bytes());
                let x = 20.0 + (r.below(1000) as f64) / 8.0;
                c[8..].copy_from_slice(&x.to_le_bytes());
            }
        }
        // Mostly zero with a few live words (a sparse table, a fresh stack).
        7 => {
            for _ in 0..(8 + r.below(48)) {
                let at = (r.below(size as u64 / 8) * 8) as usize;
                p[at..at + 8].copy_from_slice(&r.next().to_le_bytes());
            }
        }
        // Half structure, half noise (a buffer partly filled with cipher text).
        8 => {
            for (i, b) in p.iter_mut().enumerate() {
                *b = (i / 32) as u8;
            }
            let from = size / 2;
            r.fill(&mut p[from..]);
        }
        // Incompressible.
        _ => r.fill(&mut p),
    }
    p
}

/// `n` pages of every kind.
pub fn pages(n: usize, size: usize) -> Vec<Vec<u8>> {
    (0..n as u64).map(|s| page(s, size)).collect()
}
