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

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyNotImplementedError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyInt, PyList, PyString, PyType};

use crate::{compress, Config, Error, ErrorKind, StoreOutcome, Zswap as Core, MAX_SWAP_TYPES};

static CONFIG_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static ZSWAP_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static BACKING_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static CORRUPT_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static OUTCOMES: PyOnceLock<[Py<PyAny>; 4]> = PyOnceLock::new();

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
        ErrorKind::Closed => exception(py, &ZSWAP_ERROR, "ZswapError", (msg,)),
        ErrorKind::Backing => {
            let errno = e.raw_os_error().unwrap_or(libc_eio());
            exception(py, &BACKING_ERROR, "BackingStoreError", (errno, msg))
        }
        ErrorKind::Corrupt => exception(py, &CORRUPT_ERROR, "CorruptPageError", (msg,)),
        ErrorKind::Unsupported => PyNotImplementedError::new_err(msg),
    }
}

/// EIO, for a backing-store error that carries no OS error number.
fn libc_eio() -> i32 {
    5
}

fn outcome(py: Python<'_>, o: StoreOutcome) -> PyResult<Py<PyAny>> {
    let all = OUTCOMES.get_or_try_init(py, || -> PyResult<[Py<PyAny>; 4]> {
        let cls = py.import("zswap_rs._types")?.getattr("StoreOutcome")?;
        Ok([
            cls.getattr("STORED")?.unbind(),
            cls.getattr("SAME_FILLED")?.unbind(),
            cls.getattr("SWAPPED")?.unbind(),
            cls.getattr("REJECTED")?.unbind(),
        ])
    })?;
    let i = match o {
        StoreOutcome::Stored => 0,
        StoreOutcome::SameFilled => 1,
        StoreOutcome::Swapped => 2,
        StoreOutcome::Rejected(_) => 3,
    };
    Ok(all[i].clone_ref(py))
}

/// An integer argument, with SPEC.md's errors: `TypeError` for a non-int,
/// `ValueError` (naming the argument) for an int too large for an `i64`.
fn int_arg(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<i64> {
    obj.extract::<i64>().map_err(|_| {
        if obj.is_instance_of::<PyInt>() {
            PyValueError::new_err(format!("{name} {obj} is out of range"))
        } else {
            PyTypeError::new_err(format!(
                "{name} must be an int, not {}",
                obj.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        }
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
            let view = obj
                .py()
                .import("builtins")?
                .getattr("memoryview")?
                .call1((obj,))
                .and_then(|m| m.call_method1("cast", ("B",)))
                .map_err(|_| {
                    PyTypeError::new_err(format!(
                        "{name} must be a contiguous bytes-like object, not {}",
                        type_name(obj)
                    ))
                })?;
            PyBuffer::<u8>::get(&view)?
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

/// zswap in user space: a compressed cache for swap pages.
#[pyclass(module = "zswap_rs._zswap_rs", name = "Zswap", frozen)]
struct Zswap {
    core: Core,
}

impl Zswap {
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

    fn offset(&self, obj: &Bound<'_, PyAny>, swap_type: u32) -> PyResult<u64> {
        let off = int_arg(obj, "offset")?;
        u64::try_from(off).map_err(|_| {
            let range = match self.core.area_pages(swap_type) {
                Some(pages) => format!("0..{pages}"),
                None => "0..pages of the area".to_string(),
            };
            PyValueError::new_err(format!(
                "offset {off} is out of range for swap type {swap_type}: {range}"
            ))
        })
    }

    fn percent(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<u32> {
        let p = int_arg(obj, name)?;
        u32::try_from(p).map_err(|_| {
            exception(
                obj.py(),
                &CONFIG_ERROR,
                "ConfigError",
                (format!("{name} must be in 0..=100, got {p}"),),
            )
        })
    }
}

#[pymethods]
impl Zswap {
    #[new]
    #[pyo3(signature = (
        compressor = "lz4",
        *,
        level = None,
        max_pool_bytes = None,
        max_pool_percent = None,
        accept_threshold_percent = None,
        max_compression_ratio = None,
        same_filled = true,
        exclusive_loads = false,
        page_size = None,
    ),
    text_signature = "(compressor='lz4', *, level=None, max_pool_bytes=None, max_pool_percent=20, accept_threshold_percent=90, max_compression_ratio=80, same_filled=True, exclusive_loads=False, page_size=4096)")]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        compressor: &str,
        level: Option<i32>,
        max_pool_bytes: Option<&Bound<'_, PyAny>>,
        max_pool_percent: Option<&Bound<'_, PyAny>>,
        accept_threshold_percent: Option<&Bound<'_, PyAny>>,
        max_compression_ratio: Option<&Bound<'_, PyAny>>,
        same_filled: bool,
        exclusive_loads: bool,
        page_size: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let defaults = Config::default();
        let percent = |v: Option<&Bound<'_, PyAny>>, name: &str, default: u32| match v {
            Some(v) => Self::percent(v, name),
            None => Ok(default),
        };
        let max_pool_bytes = match max_pool_bytes {
            None => None,
            Some(b) => Some(u64::try_from(int_arg(b, "max_pool_bytes")?).map_err(|_| {
                exception(
                    py,
                    &CONFIG_ERROR,
                    "ConfigError",
                    ("max_pool_bytes must be positive".to_string(),),
                )
            })?),
        };
        let page_size = match page_size {
            Some(p) => usize::try_from(int_arg(p, "page_size")?).unwrap_or(0),
            None => defaults.page_size,
        };
        let config = Config {
            compressor: compressor.to_string(),
            level,
            max_pool_bytes,
            max_pool_percent: percent(
                max_pool_percent,
                "max_pool_percent",
                defaults.max_pool_percent,
            )?,
            accept_threshold_percent: percent(
                accept_threshold_percent,
                "accept_threshold_percent",
                defaults.accept_threshold_percent,
            )?,
            max_compression_ratio: percent(
                max_compression_ratio,
                "max_compression_ratio",
                defaults.max_compression_ratio,
            )?,
            same_filled,
            exclusive_loads,
            page_size,
        };
        let core = Core::new(config).map_err(|e| to_py(py, e))?;
        Ok(Zswap { core })
    }

    /// Turn on a swap area of `pages` slots and return its swap type.
    #[pyo3(signature = (path = None, pages = None))]
    fn swapon(
        &self,
        py: Python<'_>,
        path: Option<&Bound<'_, PyAny>>,
        pages: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<u32> {
        if path.is_some() {
            return Err(PyNotImplementedError::new_err(
                "swap areas backed by a file are not supported by this release yet: use swapon(None, pages=N)",
            ));
        }
        let Some(pages) = pages else {
            return Err(PyTypeError::new_err(
                "swapon() needs pages=N, the number of slots",
            ));
        };
        let pages = int_arg(pages, "pages")?;
        let pages = u64::try_from(pages).map_err(|_| {
            PyValueError::new_err(format!(
                "pages must be in 1..={}, got {pages}",
                crate::MAX_AREA_PAGES
            ))
        })?;
        self.core.swapon(pages).map_err(|e| to_py(py, e))
    }

    /// Drop every entry of `swap_type` and turn it off.
    fn swapoff(&self, py: Python<'_>, swap_type: &Bound<'_, PyAny>) -> PyResult<()> {
        let t = self.swap_type(swap_type)?;
        py.detach(|| self.core.swapoff(t)).map_err(|e| to_py(py, e))
    }

    /// Store one page; returns a `StoreOutcome`.
    fn store(
        &self,
        py: Python<'_>,
        swap_type: &Bound<'_, PyAny>,
        offset: &Bound<'_, PyAny>,
        page: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let t = self.swap_type(swap_type)?;
        let off = self.offset(offset, t)?;
        let result = if let Ok(bytes) = page.cast::<PyBytes>() {
            // `bytes` is immutable and we hold a reference: read it in place.
            let data = bytes.as_bytes();
            py.detach(|| self.core.store(t, off, data))
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
                Ok(py.detach(|| self.core.store(t, off, data)))
            })?
        };
        let o = result.map_err(|e| to_py(py, e))?;
        outcome(py, o)
    }

    /// The page stored at `(swap_type, offset)`; `KeyError` if none.
    fn load<'py>(
        &self,
        py: Python<'py>,
        swap_type: &Bound<'py, PyAny>,
        offset: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let t = self.swap_type(swap_type)?;
        let off = self.offset(offset, t)?;
        PyBytes::new_with(py, self.core.page_size(), |out| {
            // The new bytes object is not visible to any other code yet.
            py.detach(|| self.core.load_into(t, off, out))
                .map(|_| ())
                .map_err(|e| to_py(py, e))
        })
    }

    /// Load into a writable buffer of exactly one page.
    fn load_into(
        &self,
        py: Python<'_>,
        swap_type: &Bound<'_, PyAny>,
        offset: &Bound<'_, PyAny>,
        buf: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
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
        STAGE.with(|s| -> PyResult<()> {
            let mut s = s.borrow_mut();
            s.resize(target.len_bytes(), 0);
            let page = &mut s[..];
            py.detach(|| self.core.load_into(t, off, page))
                .map_err(|e| to_py(py, e))?;
            target.copy_from_slice(py, &s)
        })
    }

    /// Drop the page at `(swap_type, offset)`; returns whether one was there.
    fn invalidate(
        &self,
        py: Python<'_>,
        swap_type: &Bound<'_, PyAny>,
        offset: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        let t = self.swap_type(swap_type)?;
        let off = self.offset(offset, t)?;
        self.core.invalidate(t, off).map_err(|e| to_py(py, e))
    }

    /// Move objects out of sparse zspages; returns pages freed.
    fn compact(&self, py: Python<'_>) -> PyResult<usize> {
        py.detach(|| self.core.compact()).map_err(|e| to_py(py, e))
    }

    /// Every counter, under the kernel's names.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (name, value) in self.core.stats().named() {
            d.set_item(name, value)?;
        }
        Ok(d)
    }

    /// One dict per size class in use, as zsmalloc's debugfs `classes`.
    fn pool_classes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
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

    /// Swap off every area and refuse further calls.
    fn close(&self, py: Python<'_>) {
        py.detach(|| self.core.close());
    }

    #[getter]
    fn closed(&self) -> bool {
        self.core.is_closed()
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close(py);
        false
    }

    fn __repr__(&self) -> String {
        format!(
            "Zswap(compressor={:?}, max_pool_bytes={}, page_size={}{})",
            self.core.compressor_name(),
            self.core.max_pool_bytes_limit(),
            self.core.page_size(),
            if self.core.is_closed() {
                ", closed"
            } else {
                ""
            }
        )
    }

    #[getter]
    fn page_size(&self) -> usize {
        self.core.page_size()
    }

    #[getter]
    fn get_compressor(&self) -> &'static str {
        self.core.compressor_name()
    }

    #[setter]
    fn set_compressor(&self, py: Python<'_>, name: &str) -> PyResult<()> {
        self.core
            .set_compressor(name, None)
            .map_err(|e| to_py(py, e))
    }

    #[getter]
    fn get_level(&self) -> Option<i32> {
        self.core.compressor_level()
    }

    #[setter]
    fn set_level(&self, py: Python<'_>, level: Option<i32>) -> PyResult<()> {
        self.core
            .set_compressor(self.core.compressor_name(), level)
            .map_err(|e| to_py(py, e))
    }

    #[getter]
    fn get_max_pool_bytes(&self) -> Option<u64> {
        self.core.max_pool_bytes()
    }

    #[setter]
    fn set_max_pool_bytes(&self, py: Python<'_>, bytes: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let bytes = match bytes {
            None => None,
            Some(b) => Some(u64::try_from(int_arg(b, "max_pool_bytes")?).unwrap_or(0)),
        };
        self.core
            .set_max_pool_bytes(bytes)
            .map_err(|e| to_py(py, e))
    }

    #[getter]
    fn get_max_pool_percent(&self) -> u32 {
        self.core.max_pool_percent()
    }

    #[setter]
    fn set_max_pool_percent(&self, py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<()> {
        let p = Self::percent(v, "max_pool_percent")?;
        self.core.set_max_pool_percent(p).map_err(|e| to_py(py, e))
    }

    #[getter]
    fn get_accept_threshold_percent(&self) -> u32 {
        self.core.accept_threshold_percent()
    }

    #[setter]
    fn set_accept_threshold_percent(&self, py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<()> {
        let p = Self::percent(v, "accept_threshold_percent")?;
        self.core
            .set_accept_threshold_percent(p)
            .map_err(|e| to_py(py, e))
    }

    #[getter]
    fn get_max_compression_ratio(&self) -> u32 {
        self.core.max_compression_ratio()
    }

    #[setter]
    fn set_max_compression_ratio(&self, py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<()> {
        let p = Self::percent(v, "max_compression_ratio")?;
        self.core
            .set_max_compression_ratio(p)
            .map_err(|e| to_py(py, e))
    }

    #[getter]
    fn get_same_filled(&self) -> bool {
        self.core.same_filled()
    }

    #[setter]
    fn set_same_filled(&self, on: bool) {
        self.core.set_same_filled(on)
    }

    #[getter]
    fn get_exclusive_loads(&self) -> bool {
        self.core.exclusive_loads()
    }

    #[setter]
    fn set_exclusive_loads(&self, on: bool) {
        self.core.set_exclusive_loads(on)
    }

    #[getter]
    fn get_enabled(&self) -> bool {
        self.core.enabled()
    }

    #[setter]
    fn set_enabled(&self, on: bool) {
        self.core.set_enabled(on)
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

#[pymodule]
fn _zswap_rs(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Zswap>()?;
    m.add_function(wrap_pyfunction!(_compressors, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("MAX_SWAP_TYPES", MAX_SWAP_TYPES)?;
    Ok(())
}
