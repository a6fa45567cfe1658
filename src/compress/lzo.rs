//! LZO1X-1, zswap's default compressor from 2013 until lz4 took over, in
//! safe Rust written from the stream format.
//!
//! The format is the one Linux's `lib/lzo/` and Oberhumer's liblzo2 read and
//! write (`Documentation/staging/lzo.rst` describes it); the tests check
//! both ways against the reference liblzo2. liblzo2 is GPL, and the crates
//! that wrap or port it are GPL too or allocate per call, hence this module:
//! an LZO1X-1 compressor (one hash probe per position, no chains, the
//! "skip faster through incompressible data" step of the original) and a
//! decompressor that checks every read and write, so that a corrupt or
//! hostile stream is an error, never an overrun or a panic. It writes the
//! plain v0 stream (no `lzo-rle` runs): every LZO1X decoder reads it.
//!
//! The trade-off against lz4: about the same ratio and a slower decoder, as
//! in the kernel. The only state is the 8192-entry hash table (32 KiB), kept
//! per thread; it is never cleared per page: each page gets a fresh range of
//! 32-bit position tags, and a slot whose tag is from an earlier page counts
//! as empty, so the output depends on the page alone.

use std::cell::RefCell;

use super::{CompressError, Compressor, CompressorId, DecompressError};

/// log2 of the hash table's slots. 8192 slots for a 4096-byte page keep
/// collisions rare (liblzo2 uses 16384 for inputs of any size).
const HASH_BITS: u32 = 13;
const HASH_SLOTS: usize = 1 << HASH_BITS;

/// The farthest back an LZO1X match can reach: M4's 16384 + 0x7fff.
const MAX_DISTANCE: usize = 0xbfff;
/// M2 (2-byte instruction): length 3..=8, distance 1..=2048.
const M2_MAX_LEN: usize = 8;
const M2_MAX_DISTANCE: usize = 0x800;
/// M3 (3+ bytes): distance 1..=16384; lengths past 33 take extra bytes.
const M3_MAX_DISTANCE: usize = 0x4000;
const M3_MAX_LEN: usize = 33;
/// M4 (3+ bytes): distance 16385..=49151; lengths past 9 take extra bytes.
const M4_MAX_LEN: usize = 9;
/// The first byte may say "copy 1..=238 literals" on its own (17 + n).
const FIRST_LITERALS_MAX: usize = 238;
/// An M4 of distance 16384 (H = 0, D = 0) ends the stream: `11 00 00`.
const END_OF_STREAM: [u8; 3] = [0x11, 0x00, 0x00];

/// The per-thread hash table: slot -> `base + position` of the last
/// position whose 4 bytes hashed there. Slots below `base` belong to an
/// earlier input and are ignored.
struct HashTable {
    slots: Box<[u32; HASH_SLOTS]>,
    /// Tag of position 0 of the input being compressed.
    base: u32,
}

impl HashTable {
    fn new() -> Self {
        HashTable {
            slots: Box::new([0; HASH_SLOTS]),
            base: 1,
        }
    }

    /// Start an input of `len` bytes: its tags are `base..base + len`.
    /// Every 2^32 bytes or so the tags run out and the table is cleared.
    fn begin(&mut self, len: usize) -> u32 {
        let need = u32::try_from(len).unwrap_or(u32::MAX).saturating_add(1);
        if self.base.checked_add(need).is_none() {
            self.slots.fill(0);
            self.base = 1;
        }
        self.base
    }

    fn end(&mut self, len: usize) {
        self.base += len as u32 + 1;
    }
}

thread_local! {
    static TABLE: RefCell<HashTable> = RefCell::new(HashTable::new());
}

/// The `lzo` compressor (LZO1X-1). It has no levels.
#[derive(Debug, Default, Clone, Copy)]
pub struct Lzo;

impl Lzo {
    /// The compressor; its per-thread hash table is made on first use.
    pub fn new() -> Self {
        Lzo
    }

    /// The longest output of [`compress`](Compressor::compress) for `len`
    /// input bytes: all literals, their length in 1 + len/255 bytes, and
    /// the end-of-stream marker.
    pub fn worst_case_len(len: usize) -> usize {
        len + len / 255 + 2 + END_OF_STREAM.len()
    }
}

impl Compressor for Lzo {
    fn id(&self) -> CompressorId {
        CompressorId::Lzo
    }

    fn compress(&self, src: &[u8], dst: &mut [u8]) -> Result<usize, CompressError> {
        TABLE.with(|t| compress_lzo1x_1(src, dst, &mut t.borrow_mut()))
    }

    fn decompress(&self, src: &[u8], dst: &mut [u8]) -> Result<(), DecompressError> {
        let n = decompress_lzo1x(src, dst)?;
        if n != dst.len() {
            return Err(DecompressError::WrongLength {
                expected: dst.len(),
                actual: n,
            });
        }
        Ok(())
    }
}

// --- compressor --------------------------------------------------------------

/// A bounds-checked output cursor: running out of room is `DoesNotFit`.
struct Out<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Out<'_> {
    #[inline]
    fn byte(&mut self, b: u8) -> Result<(), CompressError> {
        let slot = self
            .buf
            .get_mut(self.pos)
            .ok_or(CompressError::DoesNotFit)?;
        *slot = b;
        self.pos += 1;
        Ok(())
    }

    #[inline]
    fn bytes(&mut self, b: &[u8]) -> Result<(), CompressError> {
        let end = self.pos + b.len();

        self.buf
            .get_mut(self.pos..end)
            .ok_or(CompressError::DoesNotFit)?
            .copy_from_slice(b);
        self.pos = end;
        Ok(())
    }

    /// The length remainder of an instruction whose length field was 0:
    /// a zero byte per 255, then the rest (1..=255).
    #[inline]
    fn extended_len(&mut self, mut rest: usize) -> Result<(), CompressError> {
        debug_assert!(rest > 0);
        while rest > 255 {
            self.byte(0)?;
            rest -= 255;
        }
        self.byte(rest as u8)
    }

    /// Emit a run of literals. One to three literals after a match ride in
    /// the low bits ("S") of the match's second-to-last byte.
    #[inline]
    fn literals(&mut self, lits: &[u8]) -> Result<(), CompressError> {
        let t = lits.len();
        if t == 0 {
            return Ok(());
        }
        if self.pos == 0 && t <= FIRST_LITERALS_MAX {
            self.byte(17 + t as u8)?;
        } else if t <= 3 {
            // A literal run only follows a match (or starts the stream,
            // handled above), so pos >= 2 and pos - 2 holds its S bits.
            self.buf[self.pos - 2] |= t as u8;
        } else if t <= 18 {
            self.byte((t - 3) as u8)?;
        } else {
            self.byte(0)?;
            self.extended_len(t - 18)?;
        }
        self.bytes(lits)
    }

    /// Emit a match of `len` >= 4 bytes `dist` bytes back.
    #[inline]
    fn matched(&mut self, dist: usize, len: usize) -> Result<(), CompressError> {
        debug_assert!(len >= 4 && (1..=MAX_DISTANCE).contains(&dist));
        if len <= M2_MAX_LEN && dist <= M2_MAX_DISTANCE {
            let d = dist - 1;
            self.byte((((len - 1) << 5) | ((d & 7) << 2)) as u8)?;
            return self.byte((d >> 3) as u8);
        }
        // M3 and M4 end in a little-endian 14-bit distance shifted left by 2.
        let d = if dist <= M3_MAX_DISTANCE {
            if len <= M3_MAX_LEN {
                self.byte(0x20 | (len - 2) as u8)?;
            } else {
                self.byte(0x20)?;
                self.extended_len(len - M3_MAX_LEN)?;
            }
            dist - 1
        } else {
            // Distance 16384 + (H << 14) + D, with H the instruction's bit 3.
            let d = dist - 0x4000;
            let high = ((d & 0x4000) >> 11) as u8;
            if len <= M4_MAX_LEN {
                self.byte(0x10 | high | (len - 2) as u8)?;
            } else {
                self.byte(0x10 | high)?;
                self.extended_len(len - M4_MAX_LEN)?;
            }
            d & 0x3fff
        };
        self.byte((d << 2) as u8)?;
        self.byte((d >> 6) as u8)
    }
}

#[inline]
fn read32(s: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(s[at..at + 4].try_into().expect("4 bytes"))
}

#[inline]
fn hash(v: u32) -> usize {
    // The multiplier of liblzo2's and the kernel's LZO1X-1 hash. The mask
    // is a no-op that lets the compiler drop the table's bounds check.
    (v.wrapping_mul(0x1824_429d) >> (32 - HASH_BITS)) as usize & (HASH_SLOTS - 1)
}

/// How many bytes after `a` and `b` (a < b) agree, up to the end of `s`.
#[inline]
fn common_len(s: &[u8], a: usize, b: usize) -> usize {
    let mut n = 0;
    let max = s.len() - b;
    while n + 8 <= max {
        let x = u64::from_le_bytes(s[a + n..a + n + 8].try_into().expect("8 bytes"));
        let y = u64::from_le_bytes(s[b + n..b + n + 8].try_into().expect("8 bytes"));
        let diff = x ^ y;
        if diff != 0 {
            return n + (diff.trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    while n < max && s[a + n] == s[b + n] {
        n += 1;
    }
    n
}

/// LZO1X-1 of `src` into `dst`; `DoesNotFit` as soon as `dst` is full.
fn compress_lzo1x_1(
    src: &[u8],
    dst: &mut [u8],
    table: &mut HashTable,
) -> Result<usize, CompressError> {
    let mut out = Out { buf: dst, pos: 0 };
    let base = table.begin(src.len());
    let result = compress_body(src, &mut out, table, base);
    table.end(src.len());
    result?;
    out.bytes(&END_OF_STREAM)?;
    Ok(out.pos)
}

fn compress_body(
    src: &[u8],
    out: &mut Out<'_>,
    table: &mut HashTable,
    base: u32,
) -> Result<(), CompressError> {
    // Literals from `anchor` to `ip` are not yet emitted.
    let mut anchor = 0;
    let mut ip = 0;
    while ip + 4 <= src.len() {
        let v = read32(src, ip);
        let slot = &mut table.slots[hash(v)];
        let tag = *slot;
        *slot = base + ip as u32;
        if tag >= base {
            let cand = (tag - base) as usize; // < ip: tags are set as ip advances
            let dist = ip - cand;
            if dist <= MAX_DISTANCE && read32(src, cand) == v {
                let len = 4 + common_len(src, cand + 4, ip + 4);
                out.literals(&src[anchor..ip])?;
                out.matched(dist, len)?;
                ip += len;
                anchor = ip;
                continue;
            }
        }
        // LZO1X-1's skip: the longer since the last match, the bigger the step.
        ip += 1 + ((ip - anchor) >> 5);
    }
    out.literals(&src[anchor..])
}

// --- decompressor ------------------------------------------------------------

fn corrupt(why: &str) -> DecompressError {
    DecompressError::Corrupt(format!("lzo: {why}"))
}

/// A bounds-checked input cursor: running out of input is an error.
struct In<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl In<'_> {
    #[inline]
    fn byte(&mut self) -> Result<usize, DecompressError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| corrupt("input ends inside an instruction"))?;
        self.pos += 1;
        Ok(usize::from(b))
    }

    #[inline]
    fn le16(&mut self) -> Result<usize, DecompressError> {
        let lo = self.byte()?;
        Ok(lo | (self.byte()? << 8))
    }

    /// A length field that was 0: `field_max` + 255 per zero byte + the
    /// first non-zero byte. Capped by `limit` (more could never be written).
    #[inline]
    fn extended_len(&mut self, field_max: usize, limit: usize) -> Result<usize, DecompressError> {
        let mut n = field_max;
        loop {
            match self.byte()? {
                0 => {
                    n += 255;
                    if n > limit {
                        return Err(corrupt("length runs past the output"));
                    }
                }
                b => return Ok(n + b),
            }
        }
    }
}

/// Decode the LZO1X stream `src` into `dst`, returning the bytes written.
/// Any stream liblzo2's `lzo1x_decompress_safe` accepts is accepted (every
/// LZO1X compression level writes this format); anything else is an error.
fn decompress_lzo1x(src: &[u8], dst: &mut [u8]) -> Result<usize, DecompressError> {
    let mut input = In { buf: src, pos: 0 };
    let mut op = 0;
    let limit = dst.len();

    // How many literals the previous instruction copied: 0, 1..=3, or 4
    // for "4 or more". It decides what an instruction byte < 16 means.
    let mut state;
    let first = *src.first().ok_or_else(|| corrupt("empty input"))?;
    if first > 17 {
        input.pos = 1;
        let t = usize::from(first - 17);
        copy_literals(&mut input, dst, &mut op, t)?;
        state = t.min(4);
    } else {
        state = 0;
    }

    loop {
        let t = input.byte()?;
        let (dist, len);
        if t >= 64 {
            // M2: 010LLDDDSS or 1LLDDDSS + HHHHHHHH
            let h = input.byte()?;
            dist = 1 + ((t >> 2) & 7) + (h << 3);
            len = (t >> 5) + 1;
        } else if t >= 32 {
            // M3: 001LLLLL [ext] + LE16 (DDDDDDDDDDDDDDSS)
            len = 2 + match t & 31 {
                0 => input.extended_len(31, limit)?,
                l => l,
            };
            dist = 1 + (input.le16()? >> 2);
        } else if t >= 16 {
            // M4: 0001HLLL [ext] + LE16; distance 16384 is the end.
            len = 2 + match t & 7 {
                0 => input.extended_len(7, limit)?,
                l => l,
            };
            dist = 16384 + ((t & 8) << 11) + (input.le16()? >> 2);
            if dist == 16384 {
                if input.pos != src.len() {
                    return Err(corrupt("bytes after the end of the stream"));
                }
                return Ok(op);
            }
        } else if state == 0 {
            // A run of 4 or more literals: 0000LLLL [ext].
            let n = 3 + match t {
                0 => input.extended_len(15, limit)?,
                l => l,
            };
            copy_literals(&mut input, dst, &mut op, n)?;
            state = 4;
            continue;
        } else if state == 4 {
            // M1 after a literal run: 3 bytes from 2049..=3072 back.
            let h = input.byte()?;
            dist = 2049 + (t >> 2) + (h << 2);
            len = 3;
        } else {
            // M1 after a match's 1..=3 literals: 2 bytes from 1..=1024 back.
            let h = input.byte()?;
            dist = 1 + (t >> 2) + (h << 2);
            len = 2;
        }
        // The literals that follow ride in the low bits of the byte before last.
        let trailing = usize::from(src[input.pos - 2] & 3);

        if dist > op {
            return Err(corrupt("match reaches before the start of the output"));
        }
        if len > limit - op {
            return Err(corrupt("match runs past the output"));
        }
        copy_match(dst, op, dist, len);
        op += len;
        copy_literals(&mut input, dst, &mut op, trailing)?;
        state = trailing;
    }
}

/// Copy `n` literals from the input to the output, both bounds checked.
#[inline]
fn copy_literals(
    input: &mut In<'_>,
    dst: &mut [u8],
    op: &mut usize,
    n: usize,
) -> Result<(), DecompressError> {
    let ip = input.pos;
    if n <= 16 && ip + 16 <= input.buf.len() && *op + 16 <= dst.len() {
        // Most runs are short: one fixed 16-byte move beats a memcpy call.
        // The bytes past `n` are overwritten by what follows (or, if the
        // stream ends here, lie past the output and fail the length check).
        dst[*op..*op + 16].copy_from_slice(&input.buf[ip..ip + 16]);
    } else {
        let from = input
            .buf
            .get(ip..ip + n)
            .ok_or_else(|| corrupt("literals run past the input"))?;
        dst.get_mut(*op..*op + n)
            .ok_or_else(|| corrupt("literals run past the output"))?
            .copy_from_slice(from);
    }
    input.pos += n;
    *op += n;
    Ok(())
}

/// Copy `len` bytes from `dist` back to `op`; overlapping copies repeat the
/// pattern. The caller checked `dist <= op` and `op + len <= dst.len()`.
#[inline]
fn copy_match(dst: &mut [u8], op: usize, dist: usize, len: usize) {
    let from = op - dist;
    if dist >= 8 && op + len + 8 <= dst.len() {
        // 8 bytes at a time: each chunk's source ends before its
        // destination starts (dist >= 8), and reads what earlier chunks
        // wrote. Up to 7 bytes past `len` are written, overwritten later.
        let mut k = 0;
        while k < len {
            dst.copy_within(from + k..from + k + 8, op + k);
            k += 8;
        }
    } else if dist >= len {
        dst.copy_within(from..from + len, op);
    } else if dist == 1 {
        let b = dst[from];
        dst[op..op + len].fill(b);
    } else {
        // Each copy doubles the pattern available behind the cursor.
        let mut at = op;
        let end = op + len;
        while at < end {
            let n = (at - from).min(end - at);
            dst.copy_within(from..from + n, at);
            at += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(seed: u32) -> Vec<u8> {
        let xs = crate::testing::xorshift(u64::from(seed.wrapping_mul(0x9e37_79b9) | 1));
        (0..4096u32)
            .zip(xs)
            .map(|(i, x)| {
                let x = x as u32;
                // Mostly small structured values with some noise.
                if x % 4 == 0 {
                    (x >> 24) as u8
                } else {
                    ((i / 16) as u8).wrapping_add((seed & 7) as u8)
                }
            })
            .collect()
    }

    fn noise(len: usize) -> Vec<u8> {
        crate::testing::noise(0x2545_f491_4f6c_dd1d, len)
    }

    fn round_trip(p: &[u8]) -> usize {
        let mut buf = vec![0u8; Lzo::worst_case_len(p.len())];
        let n = Lzo.compress(p, &mut buf).unwrap();
        let mut out = vec![0u8; p.len()];
        Lzo.decompress(&buf[..n], &mut out).unwrap();
        assert_eq!(out, p);
        n
    }

    #[test]
    fn round_trips() {
        for seed in 0..20 {
            let n = round_trip(&page(seed));
            assert!(n < 4096, "seed {seed}: {n}");
        }
        assert!(round_trip(&[0u8; 4096]) < 64);
        assert!(round_trip(&noise(4096)) <= Lzo::worst_case_len(4096));
        // Matches of every encoding: M2 (short, near), M3 (long or far), M4
        // (beyond 16 KiB), long literal runs at the start and in the middle.
        let mut big = noise(20000);
        let copy: Vec<u8> = big[100..400].to_vec();
        big[19000..19300].copy_from_slice(&copy);
        big[5000..5006].copy_from_slice(&copy[..6]);
        big.extend_from_slice(&copy[..50]);
        round_trip(&big);
        for len in 0..40 {
            round_trip(&noise(len));
            round_trip(&vec![7u8; len]);
        }
    }

    #[test]
    fn output_does_not_depend_on_earlier_pages() {
        let p = page(3);
        let mut a = vec![0u8; 8192];
        let mut b = vec![0u8; 8192];
        let na = Lzo.compress(&p, &mut a).unwrap();
        for seed in 10..20 {
            Lzo.compress(&page(seed), &mut b).unwrap();
        }
        let nb = Lzo.compress(&p, &mut b).unwrap();
        assert_eq!(a[..na], b[..nb]);
    }

    #[test]
    fn short_output_is_does_not_fit() {
        let n = noise(4096);
        let mut small = vec![0u8; 4096 * 80 / 100];
        assert_eq!(Lzo.compress(&n, &mut small), Err(CompressError::DoesNotFit));
        let p = page(1);
        let mut buf = vec![0u8; 8192];
        let len = Lzo.compress(&p, &mut buf).unwrap();
        for short in [0, 1, len / 2, len - 1] {
            let mut s = vec![0u8; short];
            assert_eq!(Lzo.compress(&p, &mut s), Err(CompressError::DoesNotFit));
        }
        let mut exact = vec![0u8; len];
        assert_eq!(Lzo.compress(&p, &mut exact), Ok(len));
        assert_eq!(exact, buf[..len]);
    }

    #[test]
    fn hand_made_streams() {
        let mut out = [0u8; 16];
        // "abc" as a first-byte literal run, then the end.
        assert_eq!(
            decompress_lzo1x(&[20, b'a', b'b', b'c', 0x11, 0, 0], &mut out),
            Ok(3)
        );
        assert_eq!(&out[..3], b"abc");
        // An empty stream.
        assert_eq!(decompress_lzo1x(&END_OF_STREAM, &mut out), Ok(0));
        // Trailing garbage, truncation, a match before the start.
        assert!(decompress_lzo1x(&[20, b'a', b'b', b'c', 0x11, 0, 0, 0], &mut out).is_err());
        assert!(decompress_lzo1x(&[20, b'a', b'b', b'c', 0x11, 0], &mut out).is_err());
        assert!(decompress_lzo1x(&[18, b'a', 0x40 | (1 << 2), 0, 0x11, 0, 0], &mut out).is_err());
        // A run that would overflow the output.
        assert!(decompress_lzo1x(&[18, b'a', 0xe0, 0, 0x11, 0, 0], &mut [0u8; 4]).is_err());
        // An M2 run copy of distance 1: "a" then 8 more "a".
        assert_eq!(
            decompress_lzo1x(&[18, b'a', 0xe0, 0, 0x11, 0, 0], &mut out),
            Ok(9)
        );
        assert!(decompress_lzo1x(&[], &mut out).is_err());
        // Zero-length fields of huge extended length are rejected early.
        let mut long = vec![0u8, 0];
        long.extend(std::iter::repeat_n(0u8, 1000));
        assert!(decompress_lzo1x(&long, &mut out).is_err());
    }
}
