//! A software model of an Intel IAA work queue, behind the same
//! [`Portal`] the real portal implements.
//!
//! What it is for: there is no IAA here, so the driver's descriptors must be
//! checked by something that reads them the way the device does. The model
//! takes each descriptor as its 64 raw bytes and decodes them by the byte
//! offsets of `struct iax_hw_desc` in `linux/idxd.h` (not through the
//! driver's Rust struct, so a layout slip on either side shows), reads the
//! source and the AECS and writes the destination and the completion record
//! through the raw addresses in the descriptor, exactly as a device with
//! shared virtual addressing does, and writes the completion status byte
//! last, with release ordering.
//!
//! What it executes: `IAX_OPCODE_COMPRESS` with the Huffman codes and the
//! preloaded header bits of the AECS at source 2 (iaa_crypto's "fixed"
//! mode: one BFINAL fixed-Huffman block), LZ77 over a 4 KiB history, EOB
//! and flush as `compr_flags` ask, `IAA_ERROR_COMP_BUF_OVERFLOW` past
//! `max_dst_size`; `IAX_OPCODE_DECOMPRESS` of any raw deflate through
//! miniz_oxide (pure Rust, so the model runs under Miri, and independent of
//! the project's ISA-L `deflate` and of the zlib the tests check against, so
//! cross-checks are real), `IAX_COMP_OUTBUF_OVERFLOW` past
//! `max_dst_size`, an analytics error on bad input. Both report the CRC-32
//! of the uncompressed bytes, as the device does.
//!
//! What it injects, per descriptor in submission order: page faults
//! (block-on-fault clear), output overflows, any status, a descriptor that
//! never completes, and one that completes after the driver gave up. It
//! also plays a dedicated WQ that drops descriptors beyond its size, and a
//! shared WQ whose ENQCMD answers "retry", and records every protocol
//! violation it sees (unaligned record, missing CRAV/RCR, non-zero reserved
//! fields, WQ overrun) for the tests to assert there are none.
//!
//! Trade-off: execution is on a worker thread (asynchronous, like the device,
//! so the driver's polling and batching are exercised) or inline in
//! `submit` (deterministic); real IAA timings, and its exact analytics
//! error codes for each kind of bad stream, are not modelled.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use zswap_rs::compress::hw::iaa::{Portal, SubmitError};
use zswap_rs::compress::hw::idxd::*;

/// Analytics error code the model reports for a stream it cannot inflate.
/// Chosen by the model: the driver, like iaa_crypto, acts on the status
/// (`IAX_COMP_ANALYTICS_ERROR`) and only logs the code.
pub const MODEL_ERROR_BAD_STREAM: u8 = 0x01;
/// Status for a descriptor with an invalid completion-record address: the
/// model cannot write a record there, so it records a violation instead.
const IAX_COMP_INVALID_COMP_FLAG: u8 = 0x30;

/// Work-queue behaviour of the model.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    /// Execute on a worker thread (true) or inside `submit` (false).
    pub asynchronous: bool,
    /// Time the worker spends on each descriptor before completing it.
    pub latency: Duration,
    /// WQ size: descriptors beyond it are dropped, as a dedicated WQ does.
    pub capacity: usize,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            asynchronous: false,
            latency: Duration::ZERO,
            capacity: 128,
        }
    }
}

/// A fault to play on one descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Injection {
    /// Page fault on the destination, block-on-fault clear.
    PageFault,
    /// The output did not fit (compress: analytics error 0x19; decompress:
    /// output-buffer overflow).
    OutputOverflow,
    /// Complete with this status and nothing else.
    Status(u8),
    /// Never complete.
    Hang,
    /// Complete normally, but only after this long.
    Late(Duration),
}

/// One descriptor as the model decoded it from its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded {
    pub pasid_priv: u32,
    pub opcode: u8,
    pub flags: u32,
    pub completion_addr: u64,
    pub src1_addr: u64,
    pub dst_addr: u64,
    pub src1_size: u32,
    pub int_handle: u16,
    pub compr_flags: u16,
    pub src2_addr: u64,
    pub max_dst_size: u32,
    pub src2_size: u32,
    pub filter_flags: u32,
    pub num_inputs: u32,
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}
fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

impl Decoded {
    /// Decode by the offsets of `struct iax_hw_desc` (linux/idxd.h).
    pub fn from_bytes(raw: &[u8; 64]) -> Self {
        let word1 = le_u32(raw, 4);
        Decoded {
            pasid_priv: le_u32(raw, 0),
            opcode: (word1 >> 24) as u8,
            flags: word1 & 0x00ff_ffff,
            completion_addr: le_u64(raw, 8),
            src1_addr: le_u64(raw, 16),
            dst_addr: le_u64(raw, 24),
            src1_size: le_u32(raw, 32),
            int_handle: le_u16(raw, 36),
            compr_flags: le_u16(raw, 38),
            src2_addr: le_u64(raw, 40),
            max_dst_size: le_u32(raw, 48),
            src2_size: le_u32(raw, 52),
            filter_flags: le_u32(raw, 56),
            num_inputs: le_u32(raw, 60),
        }
    }
}

struct Job {
    desc: Decoded,
    injection: Option<Injection>,
}

struct Inner {
    config: ModelConfig,
    queue: Mutex<VecDeque<Job>>,
    wake: Condvar,
    shutdown: AtomicBool,
    injections: Mutex<VecDeque<Option<Injection>>>,
    /// Answer the next this-many submissions with "retry" (ENQCMD ZF=1).
    refuse: AtomicUsize,
    refuse_always: AtomicBool,
    log: Mutex<Vec<Decoded>>,
    violations: Mutex<Vec<String>>,
    pending: AtomicUsize,
    max_pending: AtomicUsize,
    /// Descriptors that will never complete (Hang): kept, never run.
    hung: Mutex<Vec<Job>>,
    late: Mutex<Vec<JoinHandle<()>>>,
}

/// The model device: a work queue and the engine behind it.
pub struct ModelDevice {
    inner: Arc<Inner>,
    worker: Option<JoinHandle<()>>,
}

/// The [`Portal`] of a [`ModelDevice`].
#[derive(Clone)]
pub struct ModelPortal {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ModelPortal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IAA model portal")
    }
}

impl ModelDevice {
    pub fn new(config: ModelConfig) -> Self {
        let asynchronous = config.asynchronous;
        let inner = Arc::new(Inner {
            config,
            queue: Mutex::new(VecDeque::new()),
            wake: Condvar::new(),
            shutdown: AtomicBool::new(false),
            injections: Mutex::new(VecDeque::new()),
            refuse: AtomicUsize::new(0),
            refuse_always: AtomicBool::new(false),
            log: Mutex::new(Vec::new()),
            violations: Mutex::new(Vec::new()),
            pending: AtomicUsize::new(0),
            max_pending: AtomicUsize::new(0),
            hung: Mutex::new(Vec::new()),
            late: Mutex::new(Vec::new()),
        });
        let worker = asynchronous.then(|| {
            let inner = Arc::clone(&inner);
            std::thread::spawn(move || worker(inner))
        });
        ModelDevice { inner, worker }
    }

    pub fn portal(&self) -> Arc<dyn Portal> {
        Arc::new(ModelPortal {
            inner: Arc::clone(&self.inner),
        })
    }

    /// Play `injections` on the next descriptors, one each, in order
    /// (`None`: run normally).
    pub fn inject(&self, injections: impl IntoIterator<Item = Option<Injection>>) {
        self.inner.injections.lock().unwrap().extend(injections);
    }

    /// Answer the next `n` submissions with "retry".
    pub fn refuse_next(&self, n: usize) {
        self.inner.refuse.store(n, Ordering::SeqCst);
    }

    /// Answer every submission with "retry" (a shared WQ that stays full).
    pub fn refuse_always(&self, on: bool) {
        self.inner.refuse_always.store(on, Ordering::SeqCst);
    }

    /// Every descriptor taken, as decoded, in order.
    pub fn log(&self) -> Vec<Decoded> {
        self.inner.log.lock().unwrap().clone()
    }

    pub fn violations(&self) -> Vec<String> {
        self.inner.violations.lock().unwrap().clone()
    }

    /// The most descriptors that were in the queue at once.
    pub fn max_pending(&self) -> usize {
        self.inner.max_pending.load(Ordering::SeqCst)
    }

    /// Wait for late completions to land (they write into memory the driver
    /// leaked; this is what the tests run under valgrind/ASan to check).
    pub fn join_late(&self) {
        let handles: Vec<_> = self.inner.late.lock().unwrap().drain(..).collect();
        for h in handles {
            h.join().unwrap();
        }
    }
}

impl Drop for ModelDevice {
    fn drop(&mut self) {
        self.inner.shutdown.store(true, Ordering::SeqCst);
        self.inner.wake.notify_all();
        if let Some(w) = self.worker.take() {
            w.join().unwrap();
        }
        self.join_late();
    }
}

fn worker(inner: Arc<Inner>) {
    loop {
        let job = {
            let mut q = inner.queue.lock().unwrap();
            loop {
                if let Some(job) = q.pop_front() {
                    break job;
                }
                if inner.shutdown.load(Ordering::SeqCst) {
                    return;
                }
                q = inner.wake.wait(q).unwrap();
            }
        };
        if !inner.config.latency.is_zero() {
            std::thread::sleep(inner.config.latency);
        }
        // SAFETY: the driver keeps what the descriptor names alive until
        // the status is written (Portal::submit's contract).
        unsafe { run(&inner, job) };
    }
}

impl Portal for ModelPortal {
    unsafe fn submit(&self, desc: &IaxHwDesc) -> Result<(), SubmitError> {
        let inner = &self.inner;
        if inner.refuse_always.load(Ordering::SeqCst) {
            return Err(SubmitError::Retry);
        }
        if inner
            .refuse
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(SubmitError::Retry);
        }
        // The device copies the 64 bytes at submission (MOVDIR64B/ENQCMD).
        // SAFETY: `desc` is a live reference to 64 bytes.
        let raw: [u8; 64] = unsafe { std::ptr::read(desc as *const IaxHwDesc as *const [u8; 64]) };
        let desc = Decoded::from_bytes(&raw);
        inner.log.lock().unwrap().push(desc);
        let now = inner.pending.fetch_add(1, Ordering::SeqCst) + 1;
        inner.max_pending.fetch_max(now, Ordering::SeqCst);
        if now > inner.config.capacity {
            // A dedicated WQ silently drops a descriptor it has no room for.
            inner.pending.fetch_sub(1, Ordering::SeqCst);
            inner.violations.lock().unwrap().push(format!(
                "WQ overrun: descriptor {now} submitted to a WQ of size {}",
                inner.config.capacity
            ));
            return Ok(());
        }
        let injection = inner.injections.lock().unwrap().pop_front().flatten();
        let job = Job { desc, injection };
        if inner.config.asynchronous {
            inner.queue.lock().unwrap().push_back(job);
            inner.wake.notify_one();
        } else {
            // SAFETY: as in `worker`.
            unsafe { run(inner, job) };
        }
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.inner.config.capacity
    }

    fn describe(&self) -> String {
        "IAA model".into()
    }
}

/// What a descriptor's execution writes into its completion record.
#[derive(Default)]
struct Completion {
    status: u8,
    error_code: u8,
    bytes_completed: u32,
    fault_addr: u64,
    output_size: u32,
    output_bits: u8,
    crc: u32,
}

/// Execute `job` and write its completion record.
///
/// # Safety
///
/// The addresses in the descriptor must be valid as `Portal::submit`
/// requires.
unsafe fn run(inner: &Arc<Inner>, job: Job) {
    let d = job.desc;
    let mut bad = Vec::new();
    if d.completion_addr == 0 || d.completion_addr % 64 != 0 {
        bad.push(format!(
            "completion record {:#x} not 64-byte aligned",
            d.completion_addr
        ));
    }
    if d.flags & (IDXD_OP_FLAG_CRAV | IDXD_OP_FLAG_RCR) != IDXD_OP_FLAG_CRAV | IDXD_OP_FLAG_RCR {
        bad.push(format!("flags {:#x} lack CRAV|RCR", d.flags));
    }
    if !bad.is_empty() {
        // No record can be written: the driver would wait forever.
        inner.pending.fetch_sub(1, Ordering::SeqCst);
        inner.violations.lock().unwrap().extend(bad);
        return;
    }
    if d.pasid_priv != 0 || d.int_handle != 0 || d.filter_flags != 0 || d.num_inputs != 0 {
        inner.violations.lock().unwrap().push(format!(
            "reserved or privileged fields set: pasid_priv {:#x} int_handle {} filter_flags {:#x} num_inputs {}",
            d.pasid_priv, d.int_handle, d.filter_flags, d.num_inputs
        ));
    }
    match job.injection {
        Some(Injection::Hang) => {
            inner.hung.lock().unwrap().push(job);
            return;
        }
        Some(Injection::Late(after)) => {
            let inner2 = Arc::clone(inner);
            let handle = std::thread::spawn(move || {
                std::thread::sleep(after);
                // SAFETY: the driver leaks what a timed-out descriptor names.
                unsafe {
                    run(
                        &inner2,
                        Job {
                            desc: d,
                            injection: None,
                        },
                    )
                };
            });
            inner.late.lock().unwrap().push(handle);
            return;
        }
        _ => {}
    }
    let c = match job.injection {
        Some(Injection::PageFault) => Completion {
            // Bit 7: the faulting access was a write (to the destination).
            status: IAX_COMP_PAGE_FAULT_NOBOF | 0x80,
            fault_addr: d.dst_addr,
            ..Completion::default()
        },
        Some(Injection::OutputOverflow) if d.opcode == IAX_OPCODE_COMPRESS => Completion {
            status: IAX_COMP_ANALYTICS_ERROR,
            error_code: IAA_ERROR_COMP_BUF_OVERFLOW,
            output_size: d.max_dst_size,
            ..Completion::default()
        },
        Some(Injection::OutputOverflow) => Completion {
            status: IAX_COMP_OUTBUF_OVERFLOW,
            ..Completion::default()
        },
        Some(Injection::Status(s)) => Completion {
            status: s,
            ..Completion::default()
        },
        _ => match d.opcode {
            // SAFETY: forwarded from the caller.
            IAX_OPCODE_COMPRESS => unsafe { compress(&d) },
            // SAFETY: forwarded from the caller.
            IAX_OPCODE_DECOMPRESS => unsafe { decompress(&d) },
            IAX_OPCODE_NOOP => Completion {
                status: IAX_COMP_SUCCESS,
                ..Completion::default()
            },
            _ => Completion {
                status: IAX_COMP_BAD_OPCODE,
                ..Completion::default()
            },
        },
    };
    // The queue slot frees before the record lands, as on the device.
    inner.pending.fetch_sub(1, Ordering::SeqCst);
    // SAFETY: the record address is valid and 64-byte aligned (checked).
    unsafe { write_completion(d.completion_addr, &c) };
}

/// Write the record by the offsets of `struct iax_completion_record`,
/// status last with release ordering.
///
/// # Safety
///
/// `addr` must point at 64 writable bytes.
unsafe fn write_completion(addr: u64, c: &Completion) {
    let p = addr as *mut u8;
    // SAFETY: 64 writable bytes at `p` (caller); unaligned writes because
    // the model does not assume the driver's struct.
    unsafe {
        p.add(1).write(c.error_code);
        p.add(2).write(0);
        (p.add(4) as *mut u32).write_unaligned(c.bytes_completed.to_le());
        (p.add(8) as *mut u64).write_unaligned(c.fault_addr.to_le());
        (p.add(24) as *mut u32).write_unaligned(c.output_size.to_le());
        p.add(28).write(c.output_bits);
        (p.add(32) as *mut u32).write_unaligned(c.crc.to_le());
        (*(p as *const AtomicU8)).store(c.status, Ordering::Release);
    }
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = flate2::Crc::new();
    c.update(bytes);
    c.sum()
}

/// # Safety
///
/// Source 1 and source 2 readable, destination writable, for their sizes.
unsafe fn compress(d: &Decoded) -> Completion {
    let aecs_size = std::mem::size_of::<AecsCompTableRecord>();
    if d.flags & IDXD_OP_FLAG_RD_SRC2_AECS == 0
        || d.src2_addr == 0
        || d.src2_addr % 32 != 0
        || (d.src2_size as usize) < aecs_size
    {
        return Completion {
            status: IAX_COMP_INVALID_FLAGS,
            ..Completion::default()
        };
    }
    // SAFETY: caller.
    let src = unsafe { std::slice::from_raw_parts(d.src1_addr as *const u8, d.src1_size as usize) };
    // SAFETY: caller; the AECS is read, never written, by a compress.
    let aecs = unsafe { std::slice::from_raw_parts(d.src2_addr as *const u8, aecs_size) };
    // struct aecs_comp_table_record offsets (iaa_crypto.h).
    let accum_bits = le_u32(aecs, 28);
    let ll: Vec<u32> = (0..AECS_LL_SYMS)
        .map(|i| le_u32(aecs, 288 + 4 * i))
        .collect();
    let dist: Vec<u32> = (0..AECS_D_SYMS)
        .map(|i| le_u32(aecs, 1440 + 4 * i))
        .collect();
    let mut w = BitWriter::default();
    for bit in 0..accum_bits.min(256 * 8) {
        let byte = aecs[32 + (bit / 8) as usize];
        w.put(u32::from((byte >> (bit % 8)) & 1), 1);
    }
    for token in lz77(src, 4096) {
        match token {
            Token::Literal(b) => w.code(ll[b as usize]),
            Token::Match { len, dist: back } => {
                let (sym, extra, bits) = length_code(len);
                w.code(ll[sym]);
                w.put(extra, bits);
                let (dsym, dextra, dbits) = distance_code(back);
                w.code(dist[dsym]);
                w.put(dextra, dbits);
            }
        }
    }
    if d.compr_flags & IAA_COMP_APPEND_EOB != 0 {
        w.code(ll[256]);
    }
    let output_bits = (w.nbits % 8) as u8;
    let out = w.finish(d.compr_flags & IAA_COMP_FLUSH_OUTPUT != 0);
    let max = d.max_dst_size as usize;
    let n = out.len().min(max);
    // SAFETY: caller: `max_dst_size` writable bytes at dst.
    unsafe { std::ptr::copy_nonoverlapping(out.as_ptr(), d.dst_addr as *mut u8, n) };
    if out.len() > max {
        return Completion {
            status: IAX_COMP_ANALYTICS_ERROR,
            error_code: IAA_ERROR_COMP_BUF_OVERFLOW,
            output_size: max as u32,
            ..Completion::default()
        };
    }
    Completion {
        status: IAX_COMP_SUCCESS,
        bytes_completed: src.len() as u32,
        output_size: out.len() as u32,
        output_bits,
        crc: crc32(src),
        ..Completion::default()
    }
}

/// # Safety
///
/// Source 1 readable, destination writable, for their sizes.
unsafe fn decompress(d: &Decoded) -> Completion {
    if d.compr_flags & IAA_DECOMP_ENABLE == 0 {
        return Completion {
            status: IAX_COMP_INVALID_COMP_FLAG,
            ..Completion::default()
        };
    }
    // SAFETY: caller.
    let src = unsafe { std::slice::from_raw_parts(d.src1_addr as *const u8, d.src1_size as usize) };
    let max = d.max_dst_size as usize;
    // One byte more than allowed tells "overflow" from "exactly full".
    let mut out = vec![0u8; max + 1];
    let mut state = miniz_oxide::inflate::core::DecompressorOxide::new();
    let (status, consumed, n) = miniz_oxide::inflate::core::decompress(
        &mut state,
        src,
        &mut out,
        0,
        miniz_oxide::inflate::core::inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF,
    );
    if n > max || status == miniz_oxide::inflate::TINFLStatus::HasMoreOutput {
        return Completion {
            status: IAX_COMP_OUTBUF_OVERFLOW,
            ..Completion::default()
        };
    }
    if status != miniz_oxide::inflate::TINFLStatus::Done {
        return Completion {
            status: IAX_COMP_ANALYTICS_ERROR,
            error_code: MODEL_ERROR_BAD_STREAM,
            bytes_completed: consumed as u32,
            ..Completion::default()
        };
    }
    // SAFETY: caller: `max_dst_size` writable bytes at dst, n <= max.
    unsafe { std::ptr::copy_nonoverlapping(out.as_ptr(), d.dst_addr as *mut u8, n) };
    Completion {
        status: IAX_COMP_SUCCESS,
        bytes_completed: consumed as u32,
        output_size: n as u32,
        crc: crc32(&out[..n]),
        ..Completion::default()
    }
}

#[derive(Default)]
struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    nbits: u32,
}

impl BitWriter {
    /// Append `n` bits of `v`, least significant first (RFC 1951 3.1.1).
    fn put(&mut self, v: u32, n: u32) {
        if n == 0 {
            return;
        }
        self.acc |= u64::from(v & ((1u32 << n) - 1)) << self.nbits;
        self.nbits += n;
        while self.nbits >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.nbits -= 8;
        }
    }

    /// Append a Huffman code from an AECS entry, `(len << 15) | code`, the
    /// code's most significant bit first.
    fn code(&mut self, entry: u32) {
        let len = entry >> 15;
        let code = entry & 0x7fff;
        let mut rev = 0;
        for i in 0..len {
            rev |= ((code >> i) & 1) << (len - 1 - i);
        }
        self.put(rev, len);
    }

    fn finish(mut self, flush: bool) -> Vec<u8> {
        if flush && self.nbits > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

enum Token {
    Literal(u8),
    Match { len: u32, dist: u32 },
}

/// Greedy LZ77 with hash chains over a `window`-byte history.
fn lz77(src: &[u8], window: usize) -> Vec<Token> {
    const HASH_BITS: u32 = 12;
    const MAX_CHAIN: usize = 32;
    let hash = |i: usize| -> usize {
        let v = u32::from(src[i]) | u32::from(src[i + 1]) << 8 | u32::from(src[i + 2]) << 16;
        (v.wrapping_mul(2_654_435_761) >> (32 - HASH_BITS)) as usize
    };
    let mut head = vec![usize::MAX; 1 << HASH_BITS];
    let mut prev = vec![usize::MAX; src.len()];
    let insert = |i: usize, head: &mut Vec<usize>, prev: &mut Vec<usize>| {
        if i + 3 <= src.len() {
            let h = hash(i);
            prev[i] = head[h];
            head[h] = i;
        }
    };
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < src.len() {
        let mut best = (0usize, 0usize);
        if i + 3 <= src.len() {
            let mut cand = head[hash(i)];
            let mut chain = 0;
            while cand != usize::MAX && i - cand <= window && chain < MAX_CHAIN {
                let max = (src.len() - i).min(258);
                let mut l = 0;
                while l < max && src[cand + l] == src[i + l] {
                    l += 1;
                }
                if l > best.0 {
                    best = (l, i - cand);
                }
                cand = prev[cand];
                chain += 1;
            }
        }
        if best.0 >= 3 {
            for k in i..i + best.0 {
                insert(k, &mut head, &mut prev);
            }
            tokens.push(Token::Match {
                len: best.0 as u32,
                dist: best.1 as u32,
            });
            i += best.0;
        } else {
            insert(i, &mut head, &mut prev);
            tokens.push(Token::Literal(src[i]));
            i += 1;
        }
    }
    tokens
}

// RFC 1951 3.2.5.
const LEN_BASE: [u32; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LEN_EXTRA: [u32; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DIST_BASE: [u32; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u32; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

/// (symbol, extra value, extra bits) of a match length 3..=258.
fn length_code(len: u32) -> (usize, u32, u32) {
    let i = LEN_BASE.iter().rposition(|&b| b <= len).unwrap();
    (257 + i, len - LEN_BASE[i], LEN_EXTRA[i])
}

/// (symbol, extra value, extra bits) of a distance 1..=32768.
fn distance_code(dist: u32) -> (usize, u32, u32) {
    let i = DIST_BASE.iter().rposition(|&b| b <= dist).unwrap();
    (i, dist - DIST_BASE[i], DIST_EXTRA[i])
}
