//! Helpers the unit tests share.

/// The xorshift64 sequence (13, 7, 17) from `seed`, each value after its
/// step: noise for pages that must not compress, and random offsets.
pub fn xorshift(seed: u64) -> impl Iterator<Item = u64> {
    std::iter::successors(Some(seed), |&x| {
        let x = x ^ (x << 13);
        let x = x ^ (x >> 7);
        Some(x ^ (x << 17))
    })
    .skip(1)
}

/// `len` bytes of xorshift noise from `seed` (the low byte of each value).
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    xorshift(seed).take(len).map(|x| x as u8).collect()
}
