//! The Python face: `zswap_rs._zswap_rs`, re-exported by `python/zswap_rs`.
//!
//! This layer only converts types, maps errors to the exceptions SPEC.md
//! names, and releases the GIL around compression, decompression and I/O
//! (`py.detach`). Every policy, check and counter lives in the Rust core, so
//! that Rust and Python users get the same cache.
//!
//! Exceptions and `StoreOutcome` are defined in Python (`_errors.py`,
//! `_types.py`), where multiple inheritance (`ConfigError` is a `ValueError`,
//! `BackingStoreError` an `OSError`) is natural; they are looked up once and
//! cached.

use std::cell::RefCell;

mod region;

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyDict, PyList, PyString, PyType};

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use crate::{
    compress, Config, Error, ErrorKind, FileOptions, LoadSource, Percent, StoreOutcome,
    Zswap as Core, MAX_SWAP_TYPES,
};

/// The background shrinker's default age: an entry unused this long is
/// worth a disk write more than the RAM it holds.
const DEFAULT_SHRINKER_AGE: Duration = Duration::from_secs(60);

static CONFIG_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static ZSWAP_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static BACKING_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static CORRUPT_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static OUTCOMES: PyOnceLock<[Py<PyAny>; 4]> = PyOnceLock::new();
static SOURCES: PyOnceLock<[Py<PyAny>; 3]> = PyOnceLock::new();

fn exception(
    py: Python<'_>,
    cell: &PyOnceLock<Py<PyType>>,
    name: &str,
    args: impl pyo3::PyErrArguments + 'static,
) -> PyErr {
    match cell.import(py, "zswap_rs._errors", name) {
        Ok(ty) => PyErr::from_type(ty.clone(), args),
        Err(e) => e,
    }
}

/// Map a core error to the exception SPEC.md's error table names.
fn to_py(py: Python<'_>, e: Error) -> PyErr {
    let msg = e.to_string();
    match e.kind() {
        ErrorKind::InvalidArgument => PyValueError::new_err(msg),
        ErrorKind::Config => exception(py, &CONFIG_ERROR, "ConfigError", (msg,)),
        ErrorKind::NotFound { swap_type, offset } => {
            pyo3::exceptions::PyKeyError::new_err(((swap_type, offset),))
        }
        ErrorKind::Closed | ErrorKind::Busy => exception(py, &ZSWAP_ERROR, "ZswapError", (msg,)),
        ErrorKind::Backing => {
            // An I/O error without an OS number (a file that is too small, of
            // the wrong kind) is EINVAL; anything else unexplained is EIO.
            let errno = e
                .raw_os_error()
                .unwrap_or(match e.io_source().map(|s| s.kind()) {
                    Some(std::io::ErrorKind::InvalidInput) => libc::EINVAL,
                    _ => libc::EIO,
                });
            exception(py, &BACKING_ERROR, "BackingStoreError", (errno, msg))
        }
        ErrorKind::Corrupt => exception(py, &CORRUPT_ERROR, "CorruptPageError", (msg,)),
        // The OS's own refusal: its errno, as Python's own calls raise it.
        ErrorKind::System => {
            let errno = e.raw_os_error().unwrap_or(libc::EAGAIN);
            pyo3::exceptions::PyOSError::new_err((errno, msg))
        }
    }
}

/// Run `f`, a call into the core, with the GIL released, and map what it
/// gives to Python: the core's errors by `to_py`, and a panic (a bug) to a
/// `ZswapError` that says so. A panic must not reach Python as PyO3's
/// `PanicException`, a `BaseException` that `except Exception` misses; the
/// core's claims and locks are guards, so unwinding leaves none behind.
fn run<T: Send>(py: Python<'_>, f: impl FnOnce() -> crate::Result<T> + Send) -> PyResult<T> {
    match py.detach(|| catch_unwind(AssertUnwindSafe(f))) {
        Ok(r) => r.map_err(|e| to_py(py, e)),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_string());
            Err(exception(
                py,
                &ZSWAP_ERROR,
                "ZswapError",
                (format!(
                    "internal error in zswap-rs (a bug, please report it): {what}; \
                     the call did not complete"
                ),),
            ))
        }
    }
}

/// How many times this process is a child of `fork()` made since the
/// module was loaded: a cache remembers the count it was made under, and
/// refuses to work in a child, where the locks other threads held at the
/// fork stay locked forever and its background threads do not exist.
static FORKS: AtomicU64 = AtomicU64::new(0);

extern "C" fn count_fork_in_child() {
    // Async-signal-safe: one atomic add, no allocation, no lock.
    FORKS.fetch_add(1, Relaxed);
}

/// Count forks from now on (`os.fork`, `multiprocessing`, or C code's own).
fn watch_forks() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: registers a plain function with no captured state as the
        // child-side fork handler; it runs in the child right after fork,
        // where it only does an atomic add (async-signal-safe).
        let rc = unsafe { libc::pthread_atfork(None, None, Some(count_fork_in_child)) };
        debug_assert_eq!(rc, 0, "pthread_atfork: {rc}");
    });
}

/// How long a batch runs with the GIL released before it takes it back for
/// a moment to see whether a signal (Ctrl-C) is pending: short enough to
/// feel immediate, long enough that the check (a GIL round trip, a few
/// microseconds when no other thread wants it) costs nothing measurable.
const SIGNAL_CHECK_INTERVAL: Duration = Duration::from_millis(20);

/// Between the chunks of a batch, asks Python whether a signal handler
/// raised (KeyboardInterrupt), and keeps that exception to re-raise once the
/// batch has stopped. Signals are only delivered to the main thread, so in
/// other threads the check is always negative.
struct SignalCheck {
    last: Instant,
    raised: Option<PyErr>,
}

impl SignalCheck {
    fn new() -> Self {
        SignalCheck {
            last: Instant::now(),
            raised: None,
        }
    }

    /// Whether the batch should stop now.
    fn stop(&mut self) -> bool {
        if self.last.elapsed() < SIGNAL_CHECK_INTERVAL {
            return false;
        }
        self.last = Instant::now();
        if let Err(e) = Python::attach(|py| py.check_signals()) {
            self.raised = Some(e);
        }
        self.raised.is_some()
    }
}

fn outcome(py: Python<'_>, o: StoreOutcome) -> PyResult<Py<PyAny>> {
    const NAMES: [&str; 4] = ["STORED", "SAME_FILLED", "SWAPPED", "REJECTED"];
    let i = match o {
        StoreOutcome::Stored => 0,
        StoreOutcome::SameFilled => 1,
        StoreOutcome::Swapped => 2,
        StoreOutcome::Rejected(_) => 3,
    };
    Ok(members(py, &OUTCOMES, "StoreOutcome", NAMES)?[i].clone_ref(py))
}

/// A `LoadSource` as the `zswap_rs.LoadSource` member of the same name.
fn load_source(py: Python<'_>, s: LoadSource) -> PyResult<Py<PyAny>> {
    const NAMES: [&str; 3] = ["POOL", "SAME_FILLED", "BACKING"];
    let i = match s {
        LoadSource::Pool => 0,
        LoadSource::SameFilled => 1,
        LoadSource::Backing => 2,
    };
    Ok(members(py, &SOURCES, "LoadSource", NAMES)?[i].clone_ref(py))
}

/// The members `names` of the enum `class` of `zswap_rs._types`, looked up
/// once per interpreter.
fn members<'a, const N: usize>(
    py: Python<'_>,
    cell: &'a PyOnceLock<[Py<PyAny>; N]>,
    class: &str,
    names: [&str; N],
) -> PyResult<&'a [Py<PyAny>; N]> {
    cell.get_or_try_init(py, || {
        let cls = py.import("zswap_rs._types")?.getattr(class)?;
        let mut all = Vec::with_capacity(N);
        for name in names {
            all.push(cls.getattr(name)?.unbind());
        }
        Ok(all.try_into().expect("one member per name"))
    })
}

/// An integer argument, with SPEC.md's errors: `TypeError` for a non-int,
/// `ValueError` (naming the argument) for an int too large for an `i64`.
fn int_arg(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<i64> {
    int_or_huge(obj, name)?
        .ok_or_else(|| PyValueError::new_err(format!("{name} {obj} is out of range")))
}

/// An integer argument: anything with `__index__` (an int, a NumPy
/// integer), but not a `bool`. `None` for a value too large for an `i64`
/// (the caller says what range it wanted: that is a `ValueError`, whatever
/// the type), `TypeError` for a non-integer; an exception raised by the
/// object's own `__index__` goes through as it is.
fn int_or_huge(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Option<i64>> {
    let not_int = || PyTypeError::new_err(format!("{name} must be an int, not {}", type_name(obj)));
    if obj.is_instance_of::<PyBool>() {
        return Err(not_int());
    }
    match obj.extract::<i64>() {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_instance_of::<PyOverflowError>(obj.py()) => Ok(None),
        Err(e) if e.is_instance_of::<PyTypeError>(obj.py()) => Err(not_int()),
        Err(e) => Err(e),
    }
}

fn config_error(py: Python<'_>, msg: String) -> PyErr {
    exception(py, &CONFIG_ERROR, "ConfigError", (msg,))
}

/// A compressor level: an int, `ConfigError` if no compressor could take it.
fn level_arg(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<i32>> {
    let Some(obj) = obj else { return Ok(None) };
    match int_or_huge(obj, "level")?.and_then(|l| i32::try_from(l).ok()) {
        Some(l) => Ok(Some(l)),
        None => Err(config_error(
            obj.py(),
            format!("level {obj} is out of range of every compressor's levels"),
        )),
    }
}

/// `writeback`'s `max_pages`: at least 0; an int beyond `i64` means as many
/// as there are.
fn max_pages_arg(obj: &Bound<'_, PyAny>) -> PyResult<usize> {
    match int_or_huge(obj, "max_pages")? {
        Some(n) => usize::try_from(n).ok(),
        None => obj.gt(0)?.then_some(usize::MAX),
    }
    .ok_or_else(|| PyValueError::new_err(format!("max_pages must be >= 0, got {obj}")))
}

/// `max_pool_bytes`: a positive int, else `ConfigError`.
fn pool_bytes_arg(obj: &Bound<'_, PyAny>) -> PyResult<u64> {
    match int_or_huge(obj, "max_pool_bytes")? {
        Some(b) if b > 0 => Ok(b as u64),
        Some(_) => Err(config_error(
            obj.py(),
            format!("max_pool_bytes must be positive, got {obj}"),
        )),
        None => Err(config_error(
            obj.py(),
            format!("max_pool_bytes {obj} is too large"),
        )),
    }
}

/// An area's number of slots: a negative one is out of range here, and the
/// core checks the top of the range.
fn pages_arg(obj: &Bound<'_, PyAny>) -> PyResult<u64> {
    let pages = int_arg(obj, "pages")?;
    u64::try_from(pages).map_err(|_| {
        PyValueError::new_err(format!(
            "pages must be in 1..={}, got {pages}",
            crate::MAX_AREA_PAGES
        ))
    })
}

/// A file path: a `str` or an `os.PathLike`.
/// A page size, checked by the pool (`ConfigError` naming the range), so
/// that `Zswap` and `train_dictionary` take the same ones.
fn page_size_arg(obj: &Bound<'_, PyAny>) -> PyResult<usize> {
    let v = int_or_huge(obj, "page_size")?;
    v.and_then(|v| usize::try_from(v).ok())
        .filter(|&p| crate::pool::check_page_size(p).is_ok())
        // Negative or huge: not a page size either, with the same message.
        .ok_or_else(|| config_error(obj.py(), crate::pool::bad_page_size(obj)))
}

/// The URL, if `obj` is a `str` naming a Redis server or cluster.
fn redis_url(obj: &Bound<'_, PyAny>) -> Option<String> {
    let url = obj.extract::<String>().ok()?;
    (url.starts_with("redis://") || url.starts_with("redis+cluster://")).then_some(url)
}

/// A path: a `str` or an `os.PathLike`, else `TypeError`.
fn path_arg(obj: &Bound<'_, PyAny>) -> PyResult<PathBuf> {
    obj.extract().map_err(|_| {
        PyTypeError::new_err(format!(
            "path must be a str or os.PathLike, not {}",
            type_name(obj)
        ))
    })
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default()
}

thread_local! {
    /// A page-sized staging buffer for bytes-like objects that are not
    /// `bytes` (their contents could change while the GIL is released).
    static STAGE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A page-sized buffer of `len_bytes` from any contiguous bytes-like object.
fn page_buffer(obj: &Bound<'_, PyAny>, name: &str, writable: bool) -> PyResult<PyBuffer<u8>> {
    if obj.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(format!(
            "{name} must be a bytes-like object, not str (encode it first)"
        )));
    }
    let buf = match PyBuffer::<u8>::get(obj) {
        Ok(b) => b,
        Err(_) => {
            // A typed buffer (e.g. an array of uint64): view its bytes.
            let not_buffer = |_| {
                PyTypeError::new_err(format!(
                    "{name} must be a bytes-like object, not {}",
                    type_name(obj)
                ))
            };
            let view = obj
                .py()
                .import("builtins")?
                .getattr("memoryview")?
                .call1((obj,))
                .map_err(not_buffer)?;
            // Strided: the same error as for a strided byte buffer below.
            if !view.getattr("c_contiguous")?.extract::<bool>()? {
                return Err(PyValueError::new_err(format!(
                    "{name} must be C-contiguous"
                )));
            }
            PyBuffer::<u8>::get(&view.call_method1("cast", ("B",)).map_err(not_buffer)?)?
        }
    };
    if !buf.is_c_contiguous() {
        return Err(PyValueError::new_err(format!(
            "{name} must be C-contiguous"
        )));
    }
    if writable && buf.readonly() {
        return Err(PyTypeError::new_err(format!(
            "{name} must be a writable buffer (bytearray, memoryview, array), not read-only {}",
            type_name(obj)
        )));
    }
    Ok(buf)
}

/// The offsets of a batch: an integer array (read through the buffer
/// protocol) or any iterable of ints. A negative one fails naming its index.
fn offsets_arg(obj: &Bound<'_, PyAny>, swap_type: u32, pages: Option<u64>) -> PyResult<Vec<u64>> {
    let bad = |i: usize, v: i128| {
        let range = pages.map_or_else(|| "0..pages of the area".to_string(), |p| format!("0..{p}"));
        PyValueError::new_err(format!(
            "offsets[{i}] = {v} is out of range for swap type {swap_type}: {range}"
        ))
    };
    let signed = |v: Vec<i64>| -> PyResult<Vec<u64>> {
        v.iter()
            .enumerate()
            .map(|(i, &o)| u64::try_from(o).map_err(|_| bad(i, i128::from(o))))
            .collect()
    };
    let py = obj.py();
    // Integer arrays of the machine's byte order are read in one copy; any
    // other (a big-endian NumPy dtype, a 16-bit one) is read by value below.
    if let Some(b) = PyBuffer::<u64>::get(obj).ok().and_then(native_order) {
        return b.to_vec(py);
    }
    if let Some(b) = PyBuffer::<i64>::get(obj).ok().and_then(native_order) {
        return signed(b.to_vec(py)?);
    }
    if let Some(b) = PyBuffer::<u32>::get(obj).ok().and_then(native_order) {
        return Ok(b.to_vec(py)?.into_iter().map(u64::from).collect());
    }
    if let Some(b) = PyBuffer::<i32>::get(obj).ok().and_then(native_order) {
        return signed(b.to_vec(py)?.into_iter().map(i64::from).collect());
    }
    if obj.is_instance_of::<PyString>() || obj.is_instance_of::<PyBytes>() {
        return Err(PyTypeError::new_err(format!(
            "offsets must be a sequence of ints or an integer array, not {}",
            type_name(obj)
        )));
    }
    let iter = obj.try_iter().map_err(|_| {
        PyTypeError::new_err(format!(
            "offsets must be a sequence of ints or an integer array, not {}",
            type_name(obj)
        ))
    })?;
    let mut out = Vec::with_capacity(obj.len().unwrap_or(0));
    for (i, item) in iter.enumerate() {
        let item = item?;
        let v = int_or_huge(&item, &format!("offsets[{i}]"))?.ok_or_else(|| {
            PyValueError::new_err(format!("offsets[{i}] = {item} is out of range"))
        })?;
        out.push(u64::try_from(v).map_err(|_| bad(i, i128::from(v)))?);
    }
    Ok(out)
}

/// `buf` if its items are in this machine's byte order. PyO3's own format
/// check takes `>` (big-endian) for native on little-endian machines, which
/// read `np.array([1], dtype=">u4")` as 16777216.
fn native_order<T: pyo3::buffer::Element>(buf: PyBuffer<T>) -> Option<PyBuffer<T>> {
    let order = buf.format().to_bytes().first().copied();
    let native = match order {
        Some(b'<') => cfg!(target_endian = "little"),
        Some(b'>' | b'!') => cfg!(target_endian = "big"),
        _ => true, // '@', '=', or no prefix: native
    };
    native.then_some(buf)
}

/// A contiguous byte buffer's memory, to read or write with the GIL
/// released. Batches use it so that a large NumPy array or bytearray is read
/// and written in place, without a copy per page.
///
/// Soundness rests on the buffer protocol: while the `PyBuffer` export that
/// this view was made from is alive, the exporter must keep the memory valid
/// and in place (a `bytearray` refuses to resize while exported). Other
/// Python threads may still write to it concurrently, exactly as with
/// `hashlib` or `readinto`, which also release the GIL over buffers; the
/// bytes seen are then unspecified, but no memory outside the buffer is ever
/// touched.
struct BufferView {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the view is a pointer and a length into memory owned by a Python
// object whose export outlives every use of the view (the caller keeps the
// `PyBuffer` alive across `py.detach`); moving the pointer to another thread
// does not change what it may access.
unsafe impl Send for BufferView {}
// SAFETY: as above; shared use only reads through the pointer.
unsafe impl Sync for BufferView {}

impl BufferView {
    fn new(buf: &PyBuffer<u8>) -> Self {
        BufferView {
            ptr: buf.buf_ptr().cast::<u8>(),
            len: buf.len_bytes(),
        }
    }

    /// # Safety
    /// The `PyBuffer` this view came from must still be alive.
    unsafe fn as_slice(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `ptr` points at `len` contiguous bytes kept valid by the
        // live export (caller's contract); u8 has no alignment or validity
        // requirements.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// # Safety
    /// The `PyBuffer` this view came from must still be alive and writable,
    /// and no other Rust reference to its memory may exist.
    #[allow(clippy::mut_from_ref)]
    unsafe fn as_mut_slice(&self) -> &mut [u8] {
        if self.len == 0 {
            return &mut [];
        }
        // SAFETY: as in `as_slice`, and the export is writable; this view is
        // the only Rust access to the memory for the call.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

/// zswap in user space: a compressed cache for swap pages.
#[pyclass(module = "zswap_rs._zswap_rs", name = "Zswap", frozen)]
struct Zswap {
    /// Shared with the background shrinker thread, when one runs.
    core: Arc<Core>,
    /// The age the shrinker uses when it is turned on.
    shrinker_age: parking_lot::Mutex<Duration>,
    /// `FORKS` when it was made: another value means this is a child of a
    /// fork, where the cache must not be used (see `check_fork`).
    forks: u64,
}

impl Drop for Zswap {
    fn drop(&mut self) {
        if FORKS.load(Relaxed) != self.forks {
            // In a fork's child, dropping the core would wait for locks that
            // threads of the parent held at the fork, and for a shrinker
            // thread that does not exist here: leak it instead (the child's
            // copy of the memory goes away with the child).
            std::mem::forget(Arc::clone(&self.core));
        }
    }
}

impl Zswap {
    /// Refuse to work in the child of a fork: the locks that other threads
    /// held at the moment of the fork stay locked forever there, so any
    /// call could hang. SPEC.md asks for `ZswapError` rather than a hang.
    fn check_fork(&self, py: Python<'_>) -> PyResult<()> {
        if FORKS.load(Relaxed) == self.forks {
            return Ok(());
        }
        Err(exception(
            py,
            &ZSWAP_ERROR,
            "ZswapError",
            (
                "this Zswap was made before os.fork() and cannot be used in the child: \
              its locks and threads stayed with the parent; make a new Zswap here"
                    .to_string(),
            ),
        ))
    }

    fn swap_type(&self, obj: &Bound<'_, PyAny>) -> PyResult<u32> {
        let t = int_arg(obj, "swap_type")?;
        u32::try_from(t)
            .ok()
            .filter(|&t| (t as usize) < MAX_SWAP_TYPES)
            .ok_or_else(|| {
                PyValueError::new_err(format!(
                    "swap_type {t} is out of range: swap types are 0..{MAX_SWAP_TYPES}"
                ))
            })
    }

    /// An offset, at least 0; the core checks the top of the range. An
    /// int beyond `u64` gets the same error, naming the range, as a
    /// negative one.
    fn offset(&self, obj: &Bound<'_, PyAny>, swap_type: u32) -> PyResult<u64> {
        let off = int_or_huge(obj, "offset")?;
        off.and_then(|o| u64::try_from(o).ok()).ok_or_else(|| {
            let range = match self.core.area_pages(swap_type) {
                Some(pages) => format!("0..{pages}"),
                None => "0..pages of the area".to_string(),
            };
            PyValueError::new_err(format!(
                "offset {obj} is out of range for swap type {swap_type}: {range}"
            ))
        })
    }

    /// A percent setting; the core checks the range (`ConfigError`), and an
    /// int beyond `u32` gets the same message.
    fn percent(obj: &Bound<'_, PyAny>, which: Percent) -> PyResult<u32> {
        let p = int_or_huge(obj, which.name())?;
        p.and_then(|p| u32::try_from(p).ok())
            .ok_or_else(|| to_py(obj.py(), which.out_of_range(obj)))
    }
}

#[pymethods]
impl Zswap {
    #[new]
    #[pyo3(signature = (
        compressor = "lz4",
        *,
        level = None,
        dictionary = None,
        max_pool_bytes = None,
        max_pool_percent = None,
        accept_threshold_percent = None,
        max_compression_ratio = None,
        same_filled = true,
        exclusive_loads = false,
        store_incompressible = None,
        page_size = None,
    ),
    text_signature = "(compressor='lz4', *, level=None, dictionary=None, max_pool_bytes=None, max_pool_percent=20, accept_threshold_percent=90, max_compression_ratio=80, same_filled=True, exclusive_loads=False, store_incompressible=None, page_size=4096)")]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        compressor: &str,
        level: Option<&Bound<'_, PyAny>>,
        dictionary: Option<&Bound<'_, PyAny>>,
        max_pool_bytes: Option<&Bound<'_, PyAny>>,
        max_pool_percent: Option<&Bound<'_, PyAny>>,
        accept_threshold_percent: Option<&Bound<'_, PyAny>>,
        max_compression_ratio: Option<&Bound<'_, PyAny>>,
        same_filled: bool,
        exclusive_loads: bool,
        store_incompressible: Option<bool>,
        page_size: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let defaults = Config::default();
        let percent = |v: Option<&Bound<'_, PyAny>>, which: Percent, default: u32| match v {
            Some(v) => Self::percent(v, which),
            None => Ok(default),
        };
        let max_pool_bytes = max_pool_bytes.map(pool_bytes_arg).transpose()?;
        let page_size = match page_size {
            Some(p) => page_size_arg(p)?,
            None => defaults.page_size,
        };
        // A zstd dictionary (`train_dictionary`): any bytes-like, copied.
        let dictionary = match dictionary {
            None => None,
            Some(d) => Some(page_buffer(d, "dictionary", false)?.to_vec(py)?),
        };
        let config = Config {
            compressor: compressor.to_string(),
            level: level_arg(level)?,
            dictionary,
            max_pool_bytes,
            max_pool_percent: percent(
                max_pool_percent,
                Percent::MaxPool,
                defaults.max_pool_percent,
            )?,
            accept_threshold_percent: percent(
                accept_threshold_percent,
                Percent::AcceptThreshold,
                defaults.accept_threshold_percent,
            )?,
            max_compression_ratio: percent(
                max_compression_ratio,
                Percent::MaxCompressionRatio,
                defaults.max_compression_ratio,
            )?,
            same_filled,
            exclusive_loads,
            // None (omitted): the core's default, off for a Zswap.
            store_incompressible,
            page_size,
        };
        let core = Core::new(config).map_err(|e| to_py(py, e))?;
        watch_forks();
        Ok(Zswap {
            core: Arc::new(core),
            shrinker_age: parking_lot::Mutex::new(DEFAULT_SHRINKER_AGE),
            forks: FORKS.load(Relaxed),
        })
    }

    /// Turn on a swap area of `pages` slots and return its swap type; with
    /// a `path`, backed by that file (or block device), or by a Redis server
    /// or cluster for a `redis://` or `redis+cluster://` URL, with its
    /// timeouts in seconds (2 each by default). `direct`, `disk_mbps` and
    /// `discard` apply to a file only (`direct` and `discard` on unless
    /// given), and are a `ValueError` for another area.
    #[pyo3(signature = (
        path = None, pages = None, *, direct = None, disk_mbps = None, discard = None,
        connect_timeout = None, io_timeout = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn swapon(
        &self,
        py: Python<'_>,
        path: Option<&Bound<'_, PyAny>>,
        pages: Option<&Bound<'_, PyAny>>,
        direct: Option<bool>,
        disk_mbps: Option<f64>,
        discard: Option<bool>,
        connect_timeout: Option<f64>,
        io_timeout: Option<f64>,
    ) -> PyResult<u32> {
        self.check_fork(py)?;
        let Some(pages) = pages else {
            return Err(PyTypeError::new_err(
                "swapon() needs pages=N, the number of slots",
            ));
        };
        let pages = pages_arg(pages)?;
        let url = path.and_then(redis_url);
        if url.is_none() && (connect_timeout.is_some() || io_timeout.is_some()) {
            return Err(PyValueError::new_err(
                "connect_timeout and io_timeout apply to a redis:// area only",
            ));
        }
        if path.is_none() || url.is_some() {
            let given = [
                ("direct", direct.is_some()),
                ("disk_mbps", disk_mbps.is_some()),
                ("discard", discard.is_some()),
            ];
            if let Some((name, _)) = given.iter().find(|(_, given)| *given) {
                let area = if path.is_none() {
                    "a memory-only area (no path)"
                } else {
                    "Redis"
                };
                return Err(PyValueError::new_err(format!(
                    "{name} applies to a file, not {area}"
                )));
            }
        }
        let Some(path) = path else {
            return self.core.swapon(pages).map_err(|e| to_py(py, e));
        };
        if let Some(url) = url {
            let defaults = crate::RedisOptions::default();
            let options = crate::RedisOptions::from_secs(
                connect_timeout.unwrap_or(defaults.connect_timeout.as_secs_f64()),
                io_timeout.unwrap_or(defaults.io_timeout.as_secs_f64()),
            )
            .map_err(|e| to_py(py, e))?;
            return run(py, || self.core.swapon_redis(&url, pages, &options));
        }
        let path = path_arg(path)?;
        // The core checks the pacing (`ConfigError`, a `ValueError`).
        let options = FileOptions {
            direct: direct.unwrap_or(true),
            disk_mbps,
            discard: discard.unwrap_or(true),
        };
        run(py, || self.core.swapon_file(&path, pages, &options))
    }

    /// The backing file of `swap_type` as a dict, or None for a memory-only area.
    fn backing_info<'py>(
        &self,
        py: Python<'py>,
        swap_type: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.check_fork(py)?;
        let t = self.swap_type(swap_type)?;
        let Some(info) = self.core.backing_info(t).map_err(|e| to_py(py, e))? else {
            return Ok(None);
        };
        let d = PyDict::new(py);
        d.set_item("path", info.path.to_string_lossy().into_owned())?;
        d.set_item("pages", info.pages)?;
        d.set_item("direct", info.direct)?;
        d.set_item("disk_mbps", info.disk_mbps)?;
        d.set_item("discard", info.discard)?;
        d.set_item("used_slots", info.used_slots)?;
        Ok(Some(d))
    }

    /// Write back up to `max_pages` of the oldest entries now; returns how many.
    #[pyo3(signature = (max_pages = None), text_signature = "($self, max_pages=64)")]
    fn writeback(&self, py: Python<'_>, max_pages: Option<&Bound<'_, PyAny>>) -> PyResult<usize> {
        self.check_fork(py)?;
        let n = max_pages.map_or(Ok(64), max_pages_arg)?;
        run(py, || self.core.writeback(n))
    }

    /// Whether the background shrinker runs (off by default, as the kernel's).
    #[getter]
    fn get_shrinker_enabled(&self, py: Python<'_>) -> PyResult<bool> {
        self.check_fork(py)?;
        Ok(self.core.shrinker_age().is_some())
    }

    #[setter]
    fn set_shrinker_enabled(&self, py: Python<'_>, on: bool) -> PyResult<()> {
        self.check_fork(py)?;
        if on {
            let age = *self.shrinker_age.lock();
            // A running shrinker is stopped first, which waits for its
            // writeback in progress.
            run(py, || self.core.start_shrinker(age))
        } else {
            run(py, || {
                self.core.stop_shrinker();
                Ok(())
            })?;
            Ok(())
        }
    }

    /// Seconds an entry must sit unused before the shrinker writes it back.
    #[getter]
    fn get_shrinker_age(&self, py: Python<'_>) -> PyResult<f64> {
        self.check_fork(py)?;
        Ok(self.shrinker_age.lock().as_secs_f64())
    }

    #[setter]
    fn set_shrinker_age(&self, py: Python<'_>, seconds: f64) -> PyResult<()> {
        self.check_fork(py)?;
        let age = crate::shrinker_age_from_secs(seconds).map_err(|e| to_py(py, e))?;
        *self.shrinker_age.lock() = age;
        if self.core.shrinker_age().is_some() {
            run(py, || self.core.start_shrinker(age))?;
        }
        Ok(())
    }

    /// Drop every entry of `swap_type` and turn it off.
    fn swapoff(&self, py: Python<'_>, swap_type: &Bound<'_, PyAny>) -> PyResult<()> {
        self.check_fork(py)?;
        let t = self.swap_type(swap_type)?;
        run(py, || self.core.swapoff(t))
    }

    /// Store one page; returns a `StoreOutcome`.
    fn store(
        &self,
        py: Python<'_>,
        swap_type: &Bound<'_, PyAny>,
        offset: &Bound<'_, PyAny>,
        page: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        self.check_fork(py)?;
        let t = self.swap_type(swap_type)?;
        let off = self.offset(offset, t)?;
        let result = if let Ok(bytes) = page.cast::<PyBytes>() {
            // `bytes` is immutable and we hold a reference: read it in place.
            let data = bytes.as_bytes();
            run(py, || self.core.store(t, off, data))
        } else {
            let buf = page_buffer(page, "page", false)?;
            if buf.len_bytes() != self.core.page_size() {
                return Err(PyValueError::new_err(format!(
                    "page must be exactly page_size = {} bytes, got {}",
                    self.core.page_size(),
                    buf.len_bytes()
                )));
            }
            STAGE.with(|s| -> PyResult<_> {
                let mut s = s.borrow_mut();
                s.resize(buf.len_bytes(), 0);
                buf.copy_to_slice(py, &mut s)?;
                let data = &s[..];
                Ok(run(py, || self.core.store(t, off, data)))
            })?
        };
        outcome(py, result?)
    }

    /// The page stored at `(swap_type, offset)`; `KeyError` if none.
    fn load<'py>(
        &self,
        py: Python<'py>,
        swap_type: &Bound<'py, PyAny>,
        offset: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        self.check_fork(py)?;
        let t = self.swap_type(swap_type)?;
        let off = self.offset(offset, t)?;
        PyBytes::new_with(py, self.core.page_size(), |out| {
            // The new bytes object is not visible to any other code yet.
            run(py, || self.core.load_into(t, off, out)).map(|_| ())
        })
    }

    /// Store `len(offsets)` pages given as one buffer; returns one
    /// `StoreOutcome` per page. Every argument is checked before anything is
    /// stored, and the GIL is released for the batch. A fault, or a signal
    /// (Ctrl-C: checked every `SIGNAL_CHECK_INTERVAL`), stops the batch at
    /// page `k`: the exception's `outcomes` lists the `k` pages before it,
    /// which are done (see the stub).
    fn store_many<'py>(
        &self,
        py: Python<'py>,
        swap_type: &Bound<'py, PyAny>,
        offsets: &Bound<'py, PyAny>,
        pages: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        self.check_fork(py)?;
        let t = self.swap_type(swap_type)?;
        let offs = offsets_arg(offsets, t, self.core.area_pages(t))?;
        let mut outcomes = Vec::new();
        let mut signals = SignalCheck::new();
        let mut stop = || signals.stop();
        let result = if let Ok(bytes) = pages.cast::<PyBytes>() {
            let data = bytes.as_bytes();
            run(py, || {
                self.core
                    .store_many_until(t, &offs, data, &mut outcomes, &mut stop)
            })
        } else {
            let buf = page_buffer(pages, "pages", false)?;
            let view = BufferView::new(&buf);
            run(py, || {
                // SAFETY: see `BufferView`: the export is held by `buf` for
                // the whole call, so the memory stays valid and in place.
                let data = unsafe { view.as_slice() };
                self.core
                    .store_many_until(t, &offs, data, &mut outcomes, &mut stop)
            })
        };
        let list = PyList::empty(py);
        for o in outcomes {
            list.append(outcome(py, o)?)?;
        }
        // A fault or a signal stopped the batch: the pages before the one
        // it stopped at are done, and the exception says how they went.
        if let Some(err) = result.err().or(signals.raised) {
            err.value(py).setattr("outcomes", list)?;
            return Err(err);
        }
        Ok(list)
    }

    /// Load the pages at `offsets` into one writable buffer of
    /// `len(offsets) * page_size` bytes, with the GIL released for the batch.
    /// A signal (Ctrl-C) stops it between chunks; the exception's `loaded`
    /// says how many pages (a prefix of `offsets`) were loaded.
    fn load_many(
        &self,
        py: Python<'_>,
        swap_type: &Bound<'_, PyAny>,
        offsets: &Bound<'_, PyAny>,
        out: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.check_fork(py)?;
        let t = self.swap_type(swap_type)?;
        let offs = offsets_arg(offsets, t, self.core.area_pages(t))?;
        let buf = page_buffer(out, "out", true)?;
        let view = BufferView::new(&buf);
        let mut signals = SignalCheck::new();
        let mut stop = || signals.stop();
        let loaded = run(py, || {
            // SAFETY: see `BufferView`; the buffer is writable (checked by
            // `page_buffer`) and exported for the whole call.
            let data = unsafe { view.as_mut_slice() };
            self.core.load_many_until(t, &offs, data, &mut stop)
        })?;
        if let Some(err) = signals.raised {
            err.value(py).setattr("loaded", loaded)?;
            return Err(err);
        }
        Ok(())
    }

    /// Load into a writable buffer of exactly one page; returns where the
    /// page came from (a `LoadSource`).
    fn load_into(
        &self,
        py: Python<'_>,
        swap_type: &Bound<'_, PyAny>,
        offset: &Bound<'_, PyAny>,
        buf: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        self.check_fork(py)?;
        let t = self.swap_type(swap_type)?;
        let off = self.offset(offset, t)?;
        let target = page_buffer(buf, "buf", true)?;
        if target.len_bytes() != self.core.page_size() {
            return Err(PyValueError::new_err(format!(
                "buf must be exactly page_size = {} bytes, got {}",
                self.core.page_size(),
                target.len_bytes()
            )));
        }
        let source = STAGE.with(|s| -> PyResult<LoadSource> {
            let mut s = s.borrow_mut();
            s.resize(target.len_bytes(), 0);
            let page = &mut s[..];
            let source = run(py, || self.core.load_into(t, off, page))?;
            target.copy_from_slice(py, &s)?;
            Ok(source)
        })?;
        load_source(py, source)
    }

    /// Drop the page at `(swap_type, offset)`; returns whether one was there.
    fn invalidate(
        &self,
        py: Python<'_>,
        swap_type: &Bound<'_, PyAny>,
        offset: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        self.check_fork(py)?;
        let t = self.swap_type(swap_type)?;
        let off = self.offset(offset, t)?;
        // Freeing a file slot may punch a hole in the file, and the area
        // lock may be held by a thread writing to it.
        run(py, || self.core.invalidate(t, off))
    }

    /// Move objects out of sparse zspages; returns pages freed.
    fn compact(&self, py: Python<'_>) -> PyResult<usize> {
        self.check_fork(py)?;
        run(py, || self.core.compact())
    }

    /// Every counter, under the kernel's names.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.check_fork(py)?;
        let d = PyDict::new(py);
        for (name, value) in self.core.stats().named() {
            d.set_item(name, value)?;
        }
        Ok(d)
    }

    /// One dict per size class, in use or not, as zsmalloc's debugfs `classes`.
    fn pool_classes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.check_fork(py)?;
        let list = PyList::empty(py);
        for c in self.core.pool_classes() {
            let d = PyDict::new(py);
            d.set_item("class", c.class)?;
            d.set_item("size", c.size)?;
            d.set_item("pages_per_zspage", c.pages_per_zspage)?;
            d.set_item("objs_per_zspage", c.objs_per_zspage)?;
            d.set_item("zspages", c.zspages)?;
            d.set_item("obj_allocated", c.obj_allocated)?;
            d.set_item("obj_used", c.obj_used)?;
            d.set_item("pages_used", c.pages_used)?;
            d.set_item("freeable", c.freeable)?;
            d.set_item("fullness", c.fullness.to_vec())?;
            list.append(d)?;
        }
        Ok(list)
    }

    /// A region of `size` bytes with `budget` resident, on this cache's
    /// pool (see `src/python/region.rs`).
    #[pyo3(signature = (
        size, budget, path = None, *, faults = "handlers", direct_io = false, handlers = None,
        spin = None, pool_in_budget = false
    ))]
    #[allow(clippy::too_many_arguments)]
    fn region(
        &self,
        py: Python<'_>,
        size: &Bound<'_, PyAny>,
        budget: &Bound<'_, PyAny>,
        path: Option<&Bound<'_, PyAny>>,
        faults: &str,
        direct_io: bool,
        handlers: Option<&Bound<'_, PyAny>>,
        spin: Option<f64>,
        pool_in_budget: bool,
    ) -> PyResult<region::Region> {
        self.check_fork(py)?;
        let knobs = region::Knobs {
            faults,
            direct_io,
            handlers,
            spin,
            pool_in_budget,
        };
        region::make(py, self, size, budget, path, &knobs)
    }

    /// Swap off every area and refuse further calls. In the child of a
    /// fork it does nothing (the cache is the parent's), so that leaving a
    /// `with` block there does not fail.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        if self.check_fork(py).is_ok() {
            // Refused (`ZswapError`) while a region made on it is open:
            // closing would take its evicted pages from under the mapping.
            run(py, || self.core.close())?;
        }
        Ok(())
    }

    /// Whether `close()` was called (always true in the child of a fork).
    #[getter]
    fn closed(&self, py: Python<'_>) -> bool {
        self.check_fork(py).is_err() || self.core.is_closed()
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        if self.check_fork(py).is_err() {
            return "Zswap(<made before os.fork(), unusable in this child>)".to_string();
        }
        let closed = if self.core.is_closed() {
            ", closed"
        } else {
            ""
        };
        format!(
            "Zswap(compressor={:?}, max_pool_bytes={}, page_size={}{closed})",
            self.core.compressor_name(),
            self.core.max_pool_bytes_limit(),
            self.core.page_size(),
        )
    }

    #[getter]
    fn page_size(&self) -> usize {
        self.core.page_size()
    }

    #[getter]
    fn get_compressor(&self, py: Python<'_>) -> PyResult<&'static str> {
        self.check_fork(py)?;
        Ok(self.core.compressor_name())
    }

    #[setter]
    fn set_compressor(&self, py: Python<'_>, name: &str) -> PyResult<()> {
        self.check_fork(py)?;
        self.core
            .set_compressor(name, None)
            .map_err(|e| to_py(py, e))
    }

    #[getter]
    fn get_level(&self, py: Python<'_>) -> PyResult<Option<i32>> {
        self.check_fork(py)?;
        Ok(self.core.compressor_level())
    }

    #[setter]
    fn set_level(&self, py: Python<'_>, level: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        self.check_fork(py)?;
        self.core
            .set_compressor(self.core.compressor_name(), level_arg(level)?)
            .map_err(|e| to_py(py, e))
    }

    #[getter]
    fn get_max_pool_bytes(&self, py: Python<'_>) -> PyResult<Option<u64>> {
        self.check_fork(py)?;
        Ok(self.core.max_pool_bytes())
    }

    #[setter]
    fn set_max_pool_bytes(&self, py: Python<'_>, bytes: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        self.check_fork(py)?;
        let bytes = bytes.map(pool_bytes_arg).transpose()?;
        self.core
            .set_max_pool_bytes(bytes)
            .map_err(|e| to_py(py, e))
    }

    #[getter]
    fn get_max_pool_percent(&self, py: Python<'_>) -> PyResult<u32> {
        self.check_fork(py)?;
        Ok(self.core.percent(Percent::MaxPool))
    }

    #[setter]
    fn set_max_pool_percent(&self, py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<()> {
        self.check_fork(py)?;
        let p = Self::percent(v, Percent::MaxPool)?;
        self.core
            .set_percent(Percent::MaxPool, p)
            .map_err(|e| to_py(py, e))
    }

    #[getter]
    fn get_accept_threshold_percent(&self, py: Python<'_>) -> PyResult<u32> {
        self.check_fork(py)?;
        Ok(self.core.percent(Percent::AcceptThreshold))
    }

    #[setter]
    fn set_accept_threshold_percent(&self, py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<()> {
        self.check_fork(py)?;
        let p = Self::percent(v, Percent::AcceptThreshold)?;
        self.core
            .set_percent(Percent::AcceptThreshold, p)
            .map_err(|e| to_py(py, e))
    }

    #[getter]
    fn get_max_compression_ratio(&self, py: Python<'_>) -> PyResult<u32> {
        self.check_fork(py)?;
        Ok(self.core.percent(Percent::MaxCompressionRatio))
    }

    #[setter]
    fn set_max_compression_ratio(&self, py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<()> {
        self.check_fork(py)?;
        let p = Self::percent(v, Percent::MaxCompressionRatio)?;
        self.core
            .set_percent(Percent::MaxCompressionRatio, p)
            .map_err(|e| to_py(py, e))
    }

    #[getter]
    fn get_same_filled(&self, py: Python<'_>) -> PyResult<bool> {
        self.check_fork(py)?;
        Ok(self.core.same_filled())
    }

    #[setter]
    fn set_same_filled(&self, py: Python<'_>, on: bool) -> PyResult<()> {
        self.check_fork(py)?;
        self.core.set_same_filled(on);
        Ok(())
    }

    #[getter]
    fn get_exclusive_loads(&self, py: Python<'_>) -> PyResult<bool> {
        self.check_fork(py)?;
        Ok(self.core.exclusive_loads())
    }

    #[setter]
    fn set_exclusive_loads(&self, py: Python<'_>, on: bool) -> PyResult<()> {
        self.check_fork(py)?;
        self.core.set_exclusive_loads(on);
        Ok(())
    }

    #[getter]
    fn get_store_incompressible(&self, py: Python<'_>) -> PyResult<bool> {
        self.check_fork(py)?;
        Ok(self.core.store_incompressible())
    }

    #[setter]
    fn set_store_incompressible(&self, py: Python<'_>, on: bool) -> PyResult<()> {
        self.check_fork(py)?;
        self.core.set_store_incompressible(on);
        Ok(())
    }

    #[getter]
    fn get_enabled(&self, py: Python<'_>) -> PyResult<bool> {
        self.check_fork(py)?;
        Ok(self.core.enabled())
    }

    #[setter]
    fn set_enabled(&self, py: Python<'_>, on: bool) -> PyResult<()> {
        self.check_fork(py)?;
        self.core.set_enabled(on);
        Ok(())
    }
}

/// `[(name, available, hardware, reason), ...]` for every compressor of the
/// contract; `zswap_rs.compressors()` makes the dict of `CompressorInfo`.
#[pyfunction]
fn _compressors() -> Vec<(&'static str, bool, bool, String)> {
    compress::compressors()
        .into_iter()
        .map(|c| (c.name, c.available, c.hardware, c.reason))
        .collect()
}

/// The dictionary size `train_dictionary` aims at by default: 32 KiB, eight
/// pages: big enough for the structure pages share (allocator headers,
/// pointer prefixes, common strings), small enough to stay in L2 cache next
/// to the page being compressed. zstd's own default (110 KiB) is tuned for
/// larger inputs.
const DEFAULT_DICTIONARY_SIZE: usize = 32 << 10;

/// Train a zstd dictionary of at most `size` bytes on sample pages: an
/// iterable of page-sized bytes-likes, or one buffer of N pages.
#[pyfunction]
#[pyo3(signature = (pages, size = None, *, page_size = None),
    text_signature = "(pages, size=32768, *, page_size=4096)")]
fn train_dictionary<'py>(
    py: Python<'py>,
    pages: &Bound<'py, PyAny>,
    size: Option<&Bound<'py, PyAny>>,
    page_size: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let size = size.map_or(Ok(DEFAULT_DICTIONARY_SIZE as i64), |s| int_arg(s, "size"))?;
    let size = usize::try_from(size)
        .ok()
        .filter(|s| *s >= compress::Zstd::MIN_DICTIONARY_SIZE)
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "size must be at least {} bytes, got {size}",
                compress::Zstd::MIN_DICTIONARY_SIZE
            ))
        })?;
    let page_size = page_size.map_or(Ok(Config::default().page_size), page_size_arg)?;
    // Copy the samples into one buffer with the GIL held, train without it.
    let mut data = Vec::new();
    if pages.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(
            "pages must be bytes-like pages or an iterable of them, not str",
        ));
    }
    if let Ok(buf) = page_buffer(pages, "pages", false) {
        data = buf.to_vec(py)?;
        if data.is_empty() || data.len() % page_size != 0 {
            return Err(PyValueError::new_err(format!(
                "pages must be a whole number of page_size = {page_size} byte pages, got {} bytes",
                data.len()
            )));
        }
    } else {
        let items = pages.try_iter().map_err(|_| {
            PyTypeError::new_err(format!(
                "pages must be a bytes-like buffer of pages or an iterable of pages, not {}",
                type_name(pages)
            ))
        })?;
        for (i, item) in items.enumerate() {
            let item = item?;
            let buf = page_buffer(&item, &format!("pages[{i}]"), false)?;
            if buf.len_bytes() != page_size {
                return Err(PyValueError::new_err(format!(
                    "pages[{i}] must be exactly page_size = {page_size} bytes, got {}",
                    buf.len_bytes()
                )));
            }
            data.extend_from_slice(&buf.to_vec(py)?);
        }
    }
    let dict = py
        .detach(|| {
            let samples: Vec<&[u8]> = data.chunks(page_size).collect();
            compress::train_dictionary(&samples, size)
        })
        .map_err(PyValueError::new_err)?;
    Ok(PyBytes::new(py, &dict))
}

/// Write a zswap-rs swap header to `path` for `pages` slots, as the
/// kernel's `mkswap` signs a swap area: see `backing::mkswap` for what it
/// takes and what it refuses unless `force`.
#[pyfunction]
#[pyo3(signature = (path, pages, *, page_size = None, force = false),
    text_signature = "(path, pages, *, page_size=4096, force=False)")]
fn mkswap(
    py: Python<'_>,
    path: &Bound<'_, PyAny>,
    pages: &Bound<'_, PyAny>,
    page_size: Option<&Bound<'_, PyAny>>,
    force: bool,
) -> PyResult<()> {
    let path = path_arg(path)?;
    let pages = pages_arg(pages)?;
    let page_size = page_size.map_or(Ok(4096), |p| int_arg(p, "page_size"))?;
    let page_size = usize::try_from(page_size).map_err(|_| {
        to_py(
            py,
            Error::new(
                ErrorKind::Config,
                format!("page_size must be a positive power of two, got {page_size}"),
            ),
        )
    })?;
    run(py, || {
        crate::backing::mkswap(&path, pages, page_size, force)
    })
}

/// For the tests of the binding itself: a panic in a core call, to show
/// that it reaches Python as `ZswapError` (an `Exception`), not as PyO3's
/// `PanicException`.
#[pyfunction]
fn _panic_in_core_for_tests(py: Python<'_>) -> PyResult<()> {
    run(py, || -> crate::Result<()> {
        panic!("a panic the tests asked for")
    })
}

#[pymodule]
fn _zswap_rs(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Zswap>()?;
    m.add_class::<region::Region>()?;
    m.add_function(wrap_pyfunction!(region::userfaultfd_status, m)?)?;
    m.add_function(wrap_pyfunction!(_compressors, m)?)?;
    m.add_function(wrap_pyfunction!(train_dictionary, m)?)?;
    m.add_function(wrap_pyfunction!(mkswap, m)?)?;
    m.add_function(wrap_pyfunction!(_panic_in_core_for_tests, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("MAX_SWAP_TYPES", MAX_SWAP_TYPES)?;
    Ok(())
}
