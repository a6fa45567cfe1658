//! `deflate-iaa`: raw deflate on Intel IAA through the idxd driver's user
//! work queues, with the software `deflate` behind it.
//!
//! Why: an IAA compresses or decompresses a 4 KiB page in a few microseconds
//! without spending a core on it, and many descriptors run in parallel, so
//! the kernel's iaa_crypto (and its zswap batching series) submits up to
//! [`IAA_MAX_BATCH`] pages and then polls all their completion records. This
//! module does the same from user space: it finds an enabled work queue of
//! type "user" in sysfs, maps its portal (`/dev/iax/wqX.Y`), writes
//! descriptors laid out as `linux/idxd.h` defines them ([`super::idxd`]) with
//! MOVDIR64B (dedicated WQ) or ENQCMD (shared WQ), and polls the completion
//! records, spinning briefly and then yielding, up to a timeout.
//!
//! Mode: descriptors request iaa_crypto's default "fixed" mode: the AECS
//! carries the RFC 1951 fixed Huffman codes and a preloaded BFINAL/BTYPE=01
//! header, so the output is one fixed-Huffman block with a 4 KiB history,
//! which any inflater reads. Fixed mode needs no per-page table generation
//! pass (the "dynamic" mode costs a second descriptor per page) and is what
//! the kernel ships by default; it compresses a few percent worse than
//! software deflate with dynamic codes.
//!
//! Fallback, as iaa_crypto does it: a page fault (we never set
//! block-on-fault), an analytics error on decompression, a queue that will
//! not take the descriptor, or a device error sends that page through the
//! software `deflate`, and the fallback is counted ([`IaaStats`]). A
//! compressed page that overflows its output buffer is, as in iaa_crypto
//! (`-E2BIG`), a page that compresses poorly ([`CompressError::DoesNotFit`]),
//! unless [`IaaConfig::software_on_compress_overflow`] asks for a software
//! retry. A completion that never comes disables the device (as iaa_crypto
//! does) and the page goes to software.
//!
//! Memory: the device reads and writes only buffers this module owns
//! (completion records, a staged copy of the input, the output staging
//! buffer), never the caller's: the input is copied in before submission and
//! the result copied out once the status says it is complete. That costs two
//! copies of at most a page (some 100 ns each, against microseconds of
//! device time), and buys safety on timeout: the buffers of a descriptor
//! that never completed are leaked, never freed, so a device that wakes up
//! late reads and writes only memory nobody else will ever own.

use std::cell::UnsafeCell;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::idxd::*;
use crate::compress::{CompressError, Compressor, CompressorId, DecompressError};

/// Pages submitted together before polling, as iaa_crypto's
/// `IAA_CRYPTO_MAX_BATCH_SIZE` (8U in the zswap IAA batching series).
pub const IAA_MAX_BATCH: usize = 8;

/// Where the idxd driver lists its devices and work queues.
pub const SYSFS_DSA_DEVICES: &str = "/sys/bus/dsa/devices";
/// Where the idxd driver puts the character devices of IAA user work queues.
pub const DEV_IAX: &str = "/dev/iax";

/// How a work queue takes descriptors (sysfs `mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WqMode {
    /// One process owns it; MOVDIR64B posts a descriptor and the submitter
    /// must keep no more than `size` in flight (extra ones are dropped).
    Dedicated,
    /// Shared between processes; ENQCMD says whether the descriptor was taken.
    Shared,
}

/// An enabled IAA user work queue found in sysfs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WqInfo {
    /// `wqX.Y`.
    pub name: String,
    /// `iaxX`.
    pub device: String,
    /// Dedicated or shared (sysfs `mode`): which instruction submits to it.
    pub mode: WqMode,
    /// Descriptors it holds (sysfs `size`).
    pub size: u32,
    /// Largest source a descriptor may name (sysfs `max_transfer_size`).
    pub max_transfer_size: u64,
    /// Its character device, `/dev/iax/wqX.Y`.
    pub dev_path: PathBuf,
}

fn read_attr(dir: &Path, name: &str) -> Option<String> {
    fs::read_to_string(dir.join(name))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Find enabled IAA work queues of type "user" under `sysfs` (normally
/// [`SYSFS_DSA_DEVICES`]) whose character device exists under `dev`
/// (normally [`DEV_IAX`]). On failure, the reason says what was looked for
/// and what was found instead.
pub fn detect_in(sysfs: &Path, dev: &Path) -> Result<Vec<WqInfo>, String> {
    let prefix = "no Intel IAA work queue";
    let dev_note = if dev.is_dir() {
        format!("{} present", dev.display())
    } else {
        format!("{} missing", dev.display())
    };
    let entries = match fs::read_dir(sysfs) {
        Ok(e) => e,
        Err(_) => {
            return Err(format!(
                "{prefix}: {} does not exist (idxd driver not loaded, or no DSA/IAA device), {dev_note}",
                sysfs.display()
            ))
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let enabled_iax: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with("iax"))
        .filter(|n| read_attr(&sysfs.join(n), "state").as_deref() == Some("enabled"))
        .collect();
    if enabled_iax.is_empty() {
        let any = names.iter().any(|n| n.starts_with("iax"));
        return Err(format!(
            "{prefix}: {} has no {}iax device, {dev_note}",
            sysfs.display(),
            if any { "enabled " } else { "" }
        ));
    }
    let mut found = Vec::new();
    let mut rejected = Vec::new();
    for iax in &enabled_iax {
        let id = &iax[3..];
        let wq_prefix = format!("wq{id}.");
        for wq in names.iter().filter(|n| n.starts_with(&wq_prefix)) {
            let dir = sysfs.join(wq);
            let state = read_attr(&dir, "state").unwrap_or_default();
            let ty = read_attr(&dir, "type").unwrap_or_default();
            let mode = read_attr(&dir, "mode").unwrap_or_default();
            if state != "enabled" || ty != "user" {
                rejected.push(format!("{wq} is {state}/{ty}"));
                continue;
            }
            let mode = match mode.as_str() {
                "dedicated" => WqMode::Dedicated,
                "shared" => WqMode::Shared,
                other => {
                    rejected.push(format!("{wq} has mode '{other}'"));
                    continue;
                }
            };
            let dev_path = dev.join(wq);
            if !dev_path.exists() {
                rejected.push(format!("{} missing", dev_path.display()));
                continue;
            }
            found.push(WqInfo {
                name: wq.clone(),
                device: (*iax).clone(),
                mode,
                size: read_attr(&dir, "size")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(1)
                    .max(1),
                max_transfer_size: read_attr(&dir, "max_transfer_size")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(u64::from(u32::MAX)),
                dev_path,
            });
        }
    }
    if found.is_empty() {
        let devices: Vec<&str> = enabled_iax.iter().map(|s| s.as_str()).collect();
        let detail = if rejected.is_empty() {
            "no wq".to_string()
        } else {
            rejected.join(", ")
        };
        return Err(format!(
            "{prefix}: {} has no enabled wq of type user ({}: {detail}), {dev_note}",
            devices.join(", "),
            sysfs.display()
        ));
    }
    Ok(found)
}

/// CPU support for the portal write a work queue needs.
pub fn cpu_can_submit(mode: WqMode) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // CPUID.(EAX=7,ECX=0):ECX bit 28 = MOVDIR64B, bit 29 = ENQCMD (SDM).
        #[allow(unused_unsafe)]
        // SAFETY: CPUID exists on every x86-64 CPU; leaf 7 is checked
        // against the highest leaf first.
        let ecx = unsafe {
            if core::arch::x86_64::__get_cpuid_max(0).0 < 7 {
                return false;
            }
            core::arch::x86_64::__cpuid_count(7, 0).ecx
        };
        match mode {
            WqMode::Dedicated => ecx & (1 << 28) != 0,
            WqMode::Shared => ecx & (1 << 29) != 0,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = mode;
        false
    }
}

/// Usable IAA work queues on this machine: [`detect_in`] on the real paths,
/// keeping the queues this CPU can submit to.
pub fn detect() -> Result<Vec<WqInfo>, String> {
    let wqs = detect_in(Path::new(SYSFS_DSA_DEVICES), Path::new(DEV_IAX))?;
    let usable: Vec<WqInfo> = wqs
        .iter()
        .filter(|w| cpu_can_submit(w.mode))
        .cloned()
        .collect();
    if usable.is_empty() {
        return Err(format!(
            "IAA work queue(s) {} found, but this CPU lacks the instruction to submit to them \
             (MOVDIR64B for dedicated, ENQCMD for shared)",
            wqs.iter()
                .map(|w| w.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(usable)
}

/// Why a descriptor was not taken by the work queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubmitError {
    /// The queue is full for now (ENQCMD returned "retry"); try again.
    Retry,
    /// The portal cannot take descriptors.
    Failed(String),
}

/// A work-queue portal: where descriptors go.
///
/// The real one ([`MmapPortal`]) is a mapped page of the WQ's character
/// device; a model (in the tests) executes descriptors in software through
/// the same addresses. An implementation must take the 64 bytes of the
/// descriptor at the call (the device copies them: the caller may reuse the
/// descriptor at once) and, later, write the completion record it names,
/// the status byte last.
pub trait Portal: Send + Sync + fmt::Debug {
    /// Hand one descriptor to the device.
    ///
    /// # Safety
    ///
    /// Every address in `desc` (completion record, source 1, source 2,
    /// destination, with their sizes) must stay valid, readable, and writable
    /// for the completion record and destination, until the completion
    /// record's status turns non-zero; nothing else may write the completion
    /// record or destination meanwhile. If the status never turns non-zero,
    /// that memory must never be freed.
    unsafe fn submit(&self, desc: &IaxHwDesc) -> Result<(), SubmitError>;

    /// How many descriptors may be in flight at once. A dedicated WQ drops
    /// what exceeds its size, so the submitter must count.
    fn capacity(&self) -> usize;

    /// The largest `src1_size` the queue accepts.
    fn max_transfer_size(&self) -> u64 {
        u64::from(u32::MAX)
    }

    /// What it is, for messages (`/dev/iax/wq1.0 (dedicated)`).
    fn describe(&self) -> String;
}

/// The real portal: the WQ's character device mapped, written with
/// MOVDIR64B or ENQCMD.
pub struct MmapPortal {
    _file: fs::File,
    base: std::ptr::NonNull<u8>,
    wq: WqInfo,
}

// SAFETY: the mapping is a device portal page: MOVDIR64B and ENQCMD are
// single 64-byte posted writes that the device serialises, so any thread may
// submit through it at any time; `base` is never dereferenced by Rust code.
unsafe impl Send for MmapPortal {}
// SAFETY: as above; `&self` gives no access but the atomic portal writes.
unsafe impl Sync for MmapPortal {}

/// Bytes of a WQ portal mapping: one page (the idxd cdev's mmap size).
const PORTAL_MAP_SIZE: usize = 0x1000;

impl MmapPortal {
    /// Open and map the portal of `wq`.
    pub fn open(wq: &WqInfo) -> Result<Self, String> {
        if !cpu_can_submit(wq.mode) {
            return Err(format!("CPU cannot submit to {} ({:?})", wq.name, wq.mode));
        }
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&wq.dev_path)
            .map_err(|e| format!("cannot open {}: {e}", wq.dev_path.display()))?;
        use std::os::fd::AsRawFd;
        // SAFETY: mapping a fresh region (addr null) of an open fd; the
        // result is checked against MAP_FAILED and unmapped in Drop.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PORTAL_MAP_SIZE,
                libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(format!(
                "cannot map the portal of {}: {}",
                wq.dev_path.display(),
                std::io::Error::last_os_error()
            ));
        }
        Ok(MmapPortal {
            _file: file,
            base: std::ptr::NonNull::new(p.cast()).expect("mmap returned null"),
            wq: wq.clone(),
        })
    }
}

impl Drop for MmapPortal {
    fn drop(&mut self) {
        // SAFETY: `base` is the PORTAL_MAP_SIZE mapping made in `open`, and
        // nothing uses it after drop.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), PORTAL_MAP_SIZE);
        }
    }
}

impl fmt::Debug for MmapPortal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Portal for MmapPortal {
    unsafe fn submit(&self, desc: &IaxHwDesc) -> Result<(), SubmitError> {
        #[cfg(target_arch = "x86_64")]
        {
            let portal = self.base.as_ptr();
            let src = desc as *const IaxHwDesc;
            // The descriptor and completion-record writes must be visible
            // before the device reads them: iaa_crypto's wmb().
            // SAFETY: SSE is baseline on x86-64.
            unsafe { core::arch::x86_64::_mm_sfence() };
            match self.wq.mode {
                WqMode::Dedicated => {
                    // SAFETY: `portal` is the mapped, 64-byte-aligned portal
                    // page; `src` points at 64 readable bytes; the caller
                    // keeps what the descriptor names alive (trait contract).
                    unsafe {
                        core::arch::asm!(
                            "movdir64b {dst}, [{src}]",
                            dst = in(reg) portal,
                            src = in(reg) src,
                            options(nostack, preserves_flags)
                        );
                    }
                    Ok(())
                }
                WqMode::Shared => {
                    let retry: u8;
                    // SAFETY: as for MOVDIR64B; ENQCMD sets ZF when the
                    // queue did not accept the descriptor.
                    unsafe {
                        core::arch::asm!(
                            "enqcmd {dst}, [{src}]",
                            "setz {zf}",
                            dst = in(reg) portal,
                            src = in(reg) src,
                            zf = out(reg_byte) retry,
                            options(nostack)
                        );
                    }
                    if retry != 0 {
                        Err(SubmitError::Retry)
                    } else {
                        Ok(())
                    }
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = desc;
            Err(SubmitError::Failed(
                "IAA portals exist only on x86-64".into(),
            ))
        }
    }

    fn capacity(&self) -> usize {
        match self.wq.mode {
            WqMode::Dedicated => self.wq.size as usize,
            // ENQCMD refuses what does not fit: no counting needed.
            WqMode::Shared => usize::MAX,
        }
    }

    fn max_transfer_size(&self) -> u64 {
        self.wq.max_transfer_size
    }

    fn describe(&self) -> String {
        format!(
            "{} ({} on {}, size {})",
            self.wq.dev_path.display(),
            match self.wq.mode {
                WqMode::Dedicated => "dedicated",
                WqMode::Shared => "shared",
            },
            self.wq.device,
            self.wq.size
        )
    }
}

/// Tuning of the submit/poll loop.
#[derive(Clone, Debug)]
pub struct IaaConfig {
    /// Status polls with a spin hint before polling starts to yield the CPU.
    /// A 4 KiB page takes the device a few microseconds: spinning that long
    /// is cheaper than a trip through the scheduler.
    pub spin_polls: u32,
    /// How long a batch may wait for its completions (and for room in a
    /// dedicated queue) before the device is declared broken and the pages
    /// go to software. iaa_crypto allows 1,000,000 polls, some milliseconds.
    pub timeout: Duration,
    /// ENQCMD "retry" answers to take before a page goes to software.
    pub submit_retries: u32,
    /// Retry in software a page whose fixed-Huffman output overflowed the
    /// buffer (dynamic codes may fit it). Off by default, as iaa_crypto
    /// (`-E2BIG`): such a page is nearly incompressible, and software would
    /// spend tens of microseconds to save a few bytes, if any.
    pub software_on_compress_overflow: bool,
}

impl Default for IaaConfig {
    fn default() -> Self {
        IaaConfig {
            spin_polls: 4096,
            timeout: Duration::from_millis(100),
            submit_retries: 64,
            software_on_compress_overflow: false,
        }
    }
}

/// What the device did, counted since the compressor was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IaaStats {
    /// Pages compressed by the device.
    pub hw_compress: u64,
    /// Pages decompressed by the device.
    pub hw_decompress: u64,
    /// Pages compressed in software instead (fault, error, queue full,
    /// device disabled).
    pub sw_fallback_compress: u64,
    /// Pages decompressed in software instead.
    pub sw_fallback_decompress: u64,
    /// Completions with a page-fault status.
    pub page_faults: u64,
    /// Compressions whose output did not fit `max_dst_size`.
    pub compress_overflows: u64,
    /// Decompressions the device refused as bad deflate (analytics error).
    pub analytics_errors: u64,
    /// Completions with any other error status.
    pub device_errors: u64,
    /// Descriptors the queue did not take (retries exhausted, no room).
    pub submit_failures: u64,
    /// Batches whose completions did not come in time.
    pub timeouts: u64,
}

#[derive(Default)]
struct Counters {
    hw_compress: AtomicU64,
    hw_decompress: AtomicU64,
    sw_fallback_compress: AtomicU64,
    sw_fallback_decompress: AtomicU64,
    page_faults: AtomicU64,
    compress_overflows: AtomicU64,
    analytics_errors: AtomicU64,
    device_errors: AtomicU64,
    submit_failures: AtomicU64,
    timeouts: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// One in-flight descriptor's memory: its completion record, the copy of
/// the input the device reads and the staging buffer it writes. Only raw
/// pointers reach them while the descriptor is in flight.
struct Slot {
    record: Box<UnsafeCell<IaxCompletionRecord>>,
    input: Vec<u8>,
    staging: Vec<u8>,
}

/// The slots of one batch. Kept in a pool and reused (never allocated per
/// page); leaked whole if the device does not answer in time. Moving it
/// moves no memory the device sees: records and buffers are on the heap.
struct SlotSet {
    slots: [Slot; IAA_MAX_BATCH],
}

impl SlotSet {
    fn new() -> Self {
        SlotSet {
            slots: std::array::from_fn(|_| Slot {
                record: Box::new(UnsafeCell::new(IaxCompletionRecord::default())),
                input: Vec::new(),
                staging: Vec::new(),
            }),
        }
    }
}

/// How one descriptor ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HwOutcome {
    /// Success; bytes written to the staging buffer.
    Done(u32),
    /// Compressed output did not fit, or decompressed output exceeded the page.
    Overflow,
    PageFault,
    /// Analytics error with this error code.
    Analytics(u8),
    /// Another error status.
    Error(u8),
    /// Not submitted: device disabled, queue full, too large.
    NotSubmitted,
    /// Submitted, but no completion in time.
    TimedOut,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Compress,
    Decompress,
}

/// The AECS, shared by every compress descriptor; the device only reads it.
struct Aecs(Box<AecsCompTableRecord>);

/// `deflate-iaa`: a [`Compressor`] that runs on an IAA through a [`Portal`],
/// with `fallback` (the software `deflate`) for what the device cannot do.
pub struct Iaa {
    portal: Arc<dyn Portal>,
    fallback: Arc<dyn Compressor>,
    aecs: Arc<Aecs>,
    pool: Mutex<Vec<SlotSet>>,
    /// Descriptors submitted and not yet seen complete (all threads), kept
    /// at or under `portal.capacity()`.
    in_flight: AtomicUsize,
    /// Set when a completion timed out: the device is not trusted again.
    disabled: AtomicBool,
    counters: Counters,
    config: IaaConfig,
}

impl fmt::Debug for Iaa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iaa")
            .field("portal", &self.portal.describe())
            .field("fallback", &self.fallback.name())
            .field("disabled", &self.disabled.load(Ordering::Relaxed))
            .finish()
    }
}

impl Iaa {
    /// An IAA compressor submitting through `portal`, falling back to
    /// `fallback`, which must produce and accept raw deflate (the `deflate`
    /// compressor).
    pub fn with_portal(
        portal: Arc<dyn Portal>,
        fallback: Arc<dyn Compressor>,
        config: IaaConfig,
    ) -> Self {
        Iaa {
            portal,
            fallback,
            aecs: Arc::new(Aecs(Box::new(AecsCompTableRecord::fixed()))),
            pool: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            disabled: AtomicBool::new(false),
            counters: Counters::default(),
            config,
        }
    }

    /// The first usable work queue on this machine, with the software
    /// `deflate` as fallback.
    pub fn open() -> Result<Self, String> {
        let wqs = detect()?;
        let mut errors = Vec::new();
        for wq in &wqs {
            match MmapPortal::open(wq) {
                Ok(portal) => {
                    let fallback = crate::compress::create(
                        CompressorId::Deflate.name(),
                        &crate::compress::Options::default(),
                    )
                    .map_err(|e| format!("deflate-iaa needs the software deflate: {e}"))?;
                    return Ok(Iaa::with_portal(
                        Arc::new(portal),
                        fallback,
                        IaaConfig::default(),
                    ));
                }
                Err(e) => errors.push(e),
            }
        }
        Err(errors.join("; "))
    }

    /// What the device did so far.
    pub fn stats(&self) -> IaaStats {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        IaaStats {
            hw_compress: l(&c.hw_compress),
            hw_decompress: l(&c.hw_decompress),
            sw_fallback_compress: l(&c.sw_fallback_compress),
            sw_fallback_decompress: l(&c.sw_fallback_decompress),
            page_faults: l(&c.page_faults),
            compress_overflows: l(&c.compress_overflows),
            analytics_errors: l(&c.analytics_errors),
            device_errors: l(&c.device_errors),
            submit_failures: l(&c.submit_failures),
            timeouts: l(&c.timeouts),
        }
    }

    /// Whether a timeout has taken the device out of use.
    pub fn is_disabled(&self) -> bool {
        self.disabled.load(Ordering::Acquire)
    }

    /// The portal in use.
    pub fn portal(&self) -> &Arc<dyn Portal> {
        &self.portal
    }

    fn take_slots(&self) -> SlotSet {
        self.pool.lock().pop().unwrap_or_else(SlotSet::new)
    }

    /// Take one unit of queue capacity. While the queue is full, reap this
    /// batch's own completions (they free room) and wait for other threads'.
    fn reserve_capacity(
        &self,
        deadline: Instant,
        op: Op,
        set: &SlotSet,
        pending: &mut [bool],
        outcomes: &mut [HwOutcome],
    ) -> bool {
        let cap = self.portal.capacity().max(1);
        let mut spins = 0u32;
        loop {
            let cur = self.in_flight.load(Ordering::Relaxed);
            if cur < cap {
                if self
                    .in_flight
                    .compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    return true;
                }
                continue;
            }
            if self.reap(op, set, pending, outcomes) > 0 {
                continue;
            }
            if spins < self.config.spin_polls {
                spins += 1;
                std::hint::spin_loop();
            } else if Instant::now() >= deadline {
                return false;
            } else {
                std::thread::yield_now();
            }
        }
    }

    /// Look once at every pending descriptor of `set`; record the outcome of
    /// those complete and free their capacity. Returns how many completed.
    fn reap(
        &self,
        op: Op,
        set: &SlotSet,
        pending: &mut [bool],
        outcomes: &mut [HwOutcome],
    ) -> usize {
        let mut done = 0;
        for (i, p) in pending.iter_mut().enumerate() {
            if !*p {
                continue;
            }
            let record = set.slots[i].record.get();
            // SAFETY: AtomicU8 has u8's layout; the device writes the
            // status last, so an Acquire load that sees it non-zero sees
            // the whole record.
            let status = unsafe { (*(record as *const AtomicU8)).load(Ordering::Acquire) };
            if status == IAX_COMP_NONE {
                continue;
            }
            // SAFETY: complete: the device no longer writes the record.
            let rec = unsafe { std::ptr::read_volatile(record) };
            outcomes[i] = self.classify(op, &rec);
            *p = false;
            done += 1;
            self.release_capacity();
        }
        done
    }

    fn release_capacity(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// Submit `srcs.len()` (at most [`IAA_MAX_BATCH`]) descriptors of `op`
    /// into `set`, each allowed `dst_caps[i]` output bytes, then poll them all.
    /// Returns false if `set` must be leaked (a descriptor may still run).
    fn run_batch(
        &self,
        op: Op,
        srcs: &[&[u8]],
        dst_caps: &[usize],
        set: &mut SlotSet,
        outcomes: &mut [HwOutcome],
    ) -> bool {
        let n = srcs.len();
        debug_assert!(n <= IAA_MAX_BATCH && dst_caps.len() == n && outcomes.len() == n);
        let deadline = Instant::now() + self.config.timeout;
        let mut pending = [false; IAA_MAX_BATCH];
        for i in 0..n {
            outcomes[i] = HwOutcome::NotSubmitted;
            if self.is_disabled()
                || srcs[i].is_empty()
                || srcs[i].len() as u64 > self.portal.max_transfer_size().min(u64::from(u32::MAX))
            {
                continue;
            }
            let slot = &mut set.slots[i];
            let cap = dst_caps[i].min(u32::MAX as usize);
            if slot.staging.len() < cap {
                slot.staging.resize(cap, 0);
            }
            slot.input.clear();
            slot.input.extend_from_slice(srcs[i]);
            let record = slot.record.get();
            // SAFETY: the record is ours and not in flight (every earlier
            // descriptor naming it completed, or the set would be leaked).
            unsafe { std::ptr::write_volatile(record, IaxCompletionRecord::default()) };
            let mut desc = IaxHwDesc::default();
            match op {
                Op::Compress => {
                    desc.set_opcode_flags(IAX_OPCODE_COMPRESS, IAX_COMPRESS_FLAGS);
                    desc.compr_flags = IAA_COMP_FLAGS;
                    desc.src2_addr = &*self.aecs.0 as *const AecsCompTableRecord as u64;
                    desc.src2_size = std::mem::size_of::<AecsCompTableRecord>() as u32;
                }
                Op::Decompress => {
                    desc.set_opcode_flags(IAX_OPCODE_DECOMPRESS, IAX_DECOMPRESS_FLAGS);
                    desc.compr_flags = IAA_DECOMP_FLAGS;
                }
            }
            desc.completion_addr = record as u64;
            desc.src1_addr = slot.input.as_ptr() as u64;
            desc.src1_size = srcs[i].len() as u32;
            desc.dst_addr = slot.staging.as_mut_ptr() as u64;
            desc.max_dst_size = cap as u32;

            if !self.reserve_capacity(deadline, op, set, &mut pending[..n], outcomes) {
                bump(&self.counters.submit_failures);
                continue;
            }
            let mut tries = 0;
            let submitted = loop {
                // SAFETY: the record, input copy and staging buffer belong
                // to `set`, which is not touched until the status turns
                // non-zero and is leaked if it never does; the AECS is kept
                // alive by `self.aecs`, and leaked on timeout.
                match unsafe { self.portal.submit(&desc) } {
                    Ok(()) => break true,
                    Err(SubmitError::Retry) if tries < self.config.submit_retries => {
                        tries += 1;
                        std::hint::spin_loop();
                    }
                    Err(_) => break false,
                }
            };
            if submitted {
                pending[i] = true;
            } else {
                self.release_capacity();
                bump(&self.counters.submit_failures);
            }
        }

        let mut left = pending.iter().filter(|p| **p).count();
        let mut polls = 0u32;
        while left > 0 {
            left -= self.reap(op, set, &mut pending[..n], outcomes);
            if left == 0 {
                break;
            }
            if polls < self.config.spin_polls {
                polls += 1;
                std::hint::spin_loop();
            } else if Instant::now() >= deadline {
                // As iaa_crypto: assume broken hardware and stop using it.
                self.disabled.store(true, Ordering::Release);
                bump(&self.counters.timeouts);
                for i in 0..n {
                    if pending[i] {
                        outcomes[i] = HwOutcome::TimedOut;
                    }
                }
                // The device may still read the AECS: keep it forever.
                std::mem::forget(Arc::clone(&self.aecs));
                return false;
            } else {
                std::thread::yield_now();
            }
        }
        true
    }

    fn classify(&self, op: Op, rec: &IaxCompletionRecord) -> HwOutcome {
        let status = rec.status & DSA_COMP_STATUS_MASK;
        let c = &self.counters;
        match status {
            IAX_COMP_SUCCESS => HwOutcome::Done(rec.output_size),
            IAX_COMP_PAGE_FAULT_NOBOF | IAX_COMP_PAGE_FAULT_IR => {
                bump(&c.page_faults);
                HwOutcome::PageFault
            }
            IAX_COMP_ANALYTICS_ERROR
                if op == Op::Compress && rec.error_code == IAA_ERROR_COMP_BUF_OVERFLOW =>
            {
                bump(&c.compress_overflows);
                HwOutcome::Overflow
            }
            IAX_COMP_OUTBUF_OVERFLOW => {
                if op == Op::Compress {
                    bump(&c.compress_overflows);
                }
                HwOutcome::Overflow
            }
            IAX_COMP_ANALYTICS_ERROR => {
                bump(&c.analytics_errors);
                HwOutcome::Analytics(rec.error_code)
            }
            other => {
                bump(&c.device_errors);
                HwOutcome::Error(other)
            }
        }
    }

    /// Run `srcs` in batches of at most [`IAA_MAX_BATCH`] pages and hand
    /// each outcome, with the bytes the device staged, its source and its
    /// destination, to `finish`, whose result goes to `out`. `srcs`, `dsts`
    /// and `out` have one entry per page.
    fn batch<R>(
        &self,
        op: Op,
        srcs: &[&[u8]],
        dsts: &mut [&mut [u8]],
        out: &mut [R],
        finish: impl Fn(HwOutcome, &[u8], &[u8], &mut [u8]) -> R,
    ) {
        assert!(srcs.len() == dsts.len() && srcs.len() == out.len());
        let chunks = srcs
            .chunks(IAA_MAX_BATCH)
            .zip(dsts.chunks_mut(IAA_MAX_BATCH))
            .zip(out.chunks_mut(IAA_MAX_BATCH));
        for ((srcs, dsts), out) in chunks {
            let k = srcs.len();
            let mut caps = [0usize; IAA_MAX_BATCH];
            for (cap, dst) in caps.iter_mut().zip(dsts.iter()) {
                *cap = dst.len();
            }
            let mut set = self.take_slots();
            let mut outcomes = [HwOutcome::NotSubmitted; IAA_MAX_BATCH];
            let intact = self.run_batch(op, srcs, &caps[..k], &mut set, &mut outcomes[..k]);
            for j in 0..k {
                let staged: &[u8] = match outcomes[j] {
                    HwOutcome::Done(n) => {
                        set.slots[j].staging.get(..n as usize).unwrap_or_default()
                    }
                    _ => &[],
                };
                out[j] = finish(outcomes[j], staged, srcs[j], &mut *dsts[j]);
            }
            if intact {
                self.pool.lock().push(set);
            } else {
                // A descriptor may still be running: its memory is the
                // device's forever.
                std::mem::forget(set);
            }
        }
    }

    fn finish_compress(
        &self,
        outcome: HwOutcome,
        staged: &[u8],
        src: &[u8],
        dst: &mut [u8],
    ) -> Result<usize, CompressError> {
        match outcome {
            HwOutcome::Done(n) if staged.len() == n as usize && staged.len() <= dst.len() => {
                dst[..staged.len()].copy_from_slice(staged);
                bump(&self.counters.hw_compress);
                return Ok(staged.len());
            }
            HwOutcome::Overflow if !self.config.software_on_compress_overflow => {
                return Err(CompressError::DoesNotFit);
            }
            HwOutcome::Done(_) => bump(&self.counters.device_errors),
            _ => {}
        }
        bump(&self.counters.sw_fallback_compress);
        self.fallback.compress(src, dst)
    }

    fn finish_decompress(
        &self,
        outcome: HwOutcome,
        staged: &[u8],
        src: &[u8],
        dst: &mut [u8],
    ) -> Result<(), DecompressError> {
        match outcome {
            HwOutcome::Done(n) => {
                if n as usize != dst.len() || staged.len() != dst.len() {
                    return Err(DecompressError::WrongLength {
                        expected: dst.len(),
                        actual: n as usize,
                    });
                }
                dst.copy_from_slice(staged);
                bump(&self.counters.hw_decompress);
                return Ok(());
            }
            HwOutcome::Overflow => {
                return Err(DecompressError::Corrupt(format!(
                    "deflate stream decodes to more than {} bytes (IAA output overflow)",
                    dst.len()
                )));
            }
            _ => {}
        }
        bump(&self.counters.sw_fallback_decompress);
        self.fallback.decompress(src, dst)
    }
}

impl Compressor for Iaa {
    fn id(&self) -> CompressorId {
        CompressorId::DeflateIaa
    }

    fn is_hardware(&self) -> bool {
        true
    }

    fn batch_size(&self) -> usize {
        IAA_MAX_BATCH
    }

    fn compress(&self, src: &[u8], dst: &mut [u8]) -> Result<usize, CompressError> {
        let mut out = [Ok(0)];
        self.compress_batch(&[src], &mut [dst], &mut out);
        let [r] = out;
        r
    }

    fn decompress(&self, src: &[u8], dst: &mut [u8]) -> Result<(), DecompressError> {
        let mut out = [Ok(())];
        self.decompress_batch(&[src], &mut [dst], &mut out);
        let [r] = out;
        r
    }

    fn compress_batch(
        &self,
        srcs: &[&[u8]],
        dsts: &mut [&mut [u8]],
        out: &mut [Result<usize, CompressError>],
    ) {
        self.batch(
            Op::Compress,
            srcs,
            dsts,
            out,
            |outcome, staged, src, dst| self.finish_compress(outcome, staged, src, dst),
        );
    }

    fn decompress_batch(
        &self,
        srcs: &[&[u8]],
        dsts: &mut [&mut [u8]],
        out: &mut [Result<(), DecompressError>],
    ) {
        self.batch(
            Op::Decompress,
            srcs,
            dsts,
            out,
            |outcome, staged, src, dst| self.finish_decompress(outcome, staged, src, dst),
        );
    }
}

/// What `compressors()` says of `deflate-iaa` here.
pub(crate) fn info() -> crate::compress::CompressorInfo {
    use crate::compress::CompressorInfo;
    match detect() {
        Ok(_) => CompressorInfo::available(CompressorId::DeflateIaa, true, None),
        Err(reason) => CompressorInfo::unavailable(CompressorId::DeflateIaa, true, reason),
    }
}

/// Build `deflate-iaa` on the first usable work queue.
pub(crate) fn build() -> Result<Arc<dyn Compressor>, String> {
    Ok(Arc::new(Iaa::open()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_says_why_not() {
        // No IAA here (nor in CI): the reason names both places looked at.
        if let Err(reason) = detect() {
            assert!(reason.contains("IAA"), "{reason}");
        }
    }
}
