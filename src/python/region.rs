//! `zswap_rs.Region`: the Rust [`crate::Region`] as a Python object that
//! exports its memory through the buffer protocol, so that
//! `numpy.frombuffer(r)` and `memoryview(r)` see the region itself, no copy.
//!
//! Like `mmap`, it counts its exports: `close()` raises `BufferError` while
//! any is alive, since unmapping under a live array would turn its next
//! access into a crash. The fault handler never takes the GIL, so a Python
//! thread that faults while holding it is served all the same.

use std::ffi::c_int;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use pyo3::{ffi, Bound};

use super::{exception, int_or_huge, path_arg, redis_url, run, Zswap, FORKS, ZSWAP_ERROR};
use crate::region::Region as Core;
use crate::{FaultMode, RedisOptions, RegionOptions, RegionStore};

/// Memory of `size` bytes of which at most `budget` are resident; the rest
/// lives compressed in its cache's pool and swap file.
#[pyclass(module = "zswap_rs._zswap_rs", name = "Region", frozen)]
pub(super) struct Region {
    /// `None` once closed. Shared so that a call can run with neither the
    /// GIL nor this lock held (holding the lock across `py.detach` would
    /// deadlock against a thread that holds the GIL and wants the lock);
    /// the region is unmapped when the last holder lets go.
    core: Mutex<Option<Arc<Core>>>,
    /// Buffers exported and not yet released.
    exports: Mutex<usize>,
    address: usize,
    size: usize,
    /// `FORKS` when it was made (see `Zswap::check_fork`): in a child of a
    /// fork the region is not mapped (`MADV_DONTFORK`) and its handler
    /// threads do not exist, so every call says so instead.
    forks: u64,
}

/// A size in bytes from a Python int: `ValueError` if not positive.
fn bytes_arg(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<usize> {
    let v = int_or_huge(obj, name)?;
    v.and_then(|v| usize::try_from(v).ok())
        .filter(|&v| v > 0)
        .ok_or_else(|| PyValueError::new_err(format!("{name} must be a positive int, got {obj}")))
}

/// The keyword options of `Zswap.region()` and `Region()`, as Python gave
/// them.
pub(super) struct Knobs<'a, 'py> {
    pub(super) faults: &'a str,
    pub(super) direct_io: bool,
    pub(super) handlers: Option<&'a Bound<'py, PyAny>>,
    pub(super) spin: Option<f64>,
    pub(super) pool_in_budget: bool,
}

/// The region's options from its `path` (a file, a Redis URL, or `None`)
/// and keyword options.
fn options(path: Option<&Bound<'_, PyAny>>, knobs: &Knobs<'_, '_>) -> PyResult<RegionOptions> {
    let store = match path.filter(|p| !p.is_none()) {
        None => RegionStore::TempFile,
        Some(p) => match redis_url(p) {
            Some(url) => RegionStore::Redis(url, RedisOptions::default()),
            None => RegionStore::File(path_arg(p)?),
        },
    };
    let pinned_handlers = match knobs.handlers {
        None => None,
        Some(h) if h.is_none() => None,
        Some(h) => Some(
            int_or_huge(h, "handlers")?
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| {
                    PyValueError::new_err(format!("handlers must be an int >= 0, got {h}"))
                })?,
        ),
    };
    let spin = match knobs.spin {
        None => None,
        Some(s) => Some(Duration::try_from_secs_f64(s).map_err(|_| {
            PyValueError::new_err(format!(
                "spin must be a finite number of seconds >= 0, got {s}"
            ))
        })?),
    };
    let faults = match knobs.faults {
        "handlers" => FaultMode::Handlers,
        "signal" if pinned_handlers.is_some() || spin.is_some() => {
            return Err(PyValueError::new_err(
                "handlers and spin are options of faults='handlers'; faults='signal' has no \
                 handler threads",
            ))
        }
        "signal" => FaultMode::Signal,
        other => {
            return Err(PyValueError::new_err(format!(
                "faults must be 'handlers' or 'signal', got {other:?}"
            )))
        }
    };
    Ok(RegionOptions {
        store,
        faults,
        spin,
        pinned_handlers,
        direct_io: knobs.direct_io,
        pool_in_budget: knobs.pool_in_budget,
        ..RegionOptions::default()
    })
}

/// A region on `zswap`'s cache: what `Zswap.region()` and `Region()` share.
pub(super) fn make(
    py: Python<'_>,
    zswap: &Zswap,
    size: &Bound<'_, PyAny>,
    budget: &Bound<'_, PyAny>,
    path: Option<&Bound<'_, PyAny>>,
    knobs: &Knobs<'_, '_>,
) -> PyResult<Region> {
    let size = bytes_arg(size, "size")?;
    let budget = bytes_arg(budget, "budget")?;
    let options = options(path, knobs)?;
    let core = Arc::clone(&zswap.core);
    let region = run(py, || Core::with_options(core, size, budget, &options))?;
    Ok(Region {
        address: region.as_ptr() as usize,
        size: region.len(),
        core: Mutex::new(Some(Arc::new(region))),
        exports: Mutex::new(0),
        forks: FORKS.load(Relaxed),
    })
}

impl Region {
    fn with<R>(&self, py: Python<'_>, f: impl FnOnce(&Arc<Core>) -> R) -> PyResult<R> {
        if FORKS.load(Relaxed) != self.forks {
            return Err(exception(
                py,
                &ZSWAP_ERROR,
                "ZswapError",
                (
                    "this region was made before os.fork(): it is not mapped in the child \
                  (MADV_DONTFORK), so it cannot be used here",
                ),
            ));
        }
        match &*self.core.lock() {
            Some(core) => Ok(f(core)),
            None => Err(closed(py)),
        }
    }
}

fn closed(py: Python<'_>) -> PyErr {
    exception(py, &ZSWAP_ERROR, "ZswapError", ("the region is closed",))
}

#[pymethods]
impl Region {
    /// `Region(size, budget, path=None, *, direct_io=False, handlers=None,
    /// spin=None, pool_in_budget=False, **zswap_options)`: a region on a
    /// cache of its own, made with `Zswap(**zswap_options)`.
    #[new]
    #[pyo3(signature = (
        size, budget, path = None, *, faults = "handlers", direct_io = false, handlers = None,
        spin = None, pool_in_budget = false, **zswap_options
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        size: &Bound<'_, PyAny>,
        budget: &Bound<'_, PyAny>,
        path: Option<&Bound<'_, PyAny>>,
        faults: &str,
        direct_io: bool,
        handlers: Option<&Bound<'_, PyAny>>,
        spin: Option<f64>,
        pool_in_budget: bool,
        zswap_options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        // Arguments first, so that a bad size is a ValueError even when
        // the cache's options are bad too.
        bytes_arg(size, "size")?;
        bytes_arg(budget, "budget")?;
        // A region's own cache keeps incompressible pages in its pool unless
        // told otherwise, as `Region::new` does.
        let options = match zswap_options {
            Some(d) => d.copy()?,
            None => PyDict::new(py),
        };
        let key = "store_incompressible";
        if options.get_item(key)?.is_none_or(|v| v.is_none()) {
            options.set_item(key, true)?;
        }
        let z = py
            .get_type::<Zswap>()
            .call((), Some(&options))?
            .cast_into::<Zswap>()?;
        let knobs = Knobs {
            faults,
            direct_io,
            handlers,
            spin,
            pool_in_budget,
        };
        make(py, z.get(), size, budget, path, &knobs)
    }

    /// Bytes of the region (`len(memoryview(r))`).
    #[getter]
    fn size(&self) -> usize {
        self.size
    }

    fn __len__(&self) -> usize {
        self.size
    }

    /// The region's first byte, page-aligned.
    #[getter]
    fn address(&self) -> usize {
        self.address
    }

    /// Bytes that may be resident; setting a lower one evicts at once.
    #[getter]
    fn get_budget(&self, py: Python<'_>) -> PyResult<usize> {
        self.with(py, |c| c.budget())
    }

    #[setter]
    fn set_budget(&self, py: Python<'_>, budget: &Bound<'_, PyAny>) -> PyResult<()> {
        let budget = bytes_arg(budget, "budget")?;
        let core = self.with(py, Arc::clone)?;
        run(py, || core.set_budget(budget))
    }

    /// Bytes mapped now.
    #[getter]
    fn resident_bytes(&self, py: Python<'_>) -> PyResult<usize> {
        self.with(py, |c| c.resident_bytes())
    }

    /// The region's swap type in its cache.
    #[getter]
    fn swap_type(&self, py: Python<'_>) -> PyResult<u32> {
        self.with(py, |c| c.swap_type())
    }

    /// The region's counters, then its cache's (kernel names).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (region, cache) = self.with(py, |c| (c.stats(), c.zswap().stats()))?;
        let d = PyDict::new(py);
        for (name, value) in region.named() {
            d.set_item(name, value)?;
        }
        for (name, value) in cache.named() {
            d.set_item(name, value)?;
        }
        Ok(d)
    }

    /// Unmap the region and free its entries and slots. `BufferError` while
    /// a buffer exported from it (a memoryview, a NumPy array) is alive.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let exports = self.exports.lock();
        if *exports > 0 {
            return Err(PyBufferError::new_err(format!(
                "cannot close the region: {} exported buffer(s) (memoryview, NumPy array) \
                 still use it",
                *exports
            )));
        }
        if FORKS.load(Relaxed) != self.forks {
            return Ok(()); // the parent's region: nothing to close here
        }
        let core = self.core.lock().take();
        drop(exports);
        if let Some(core) = core {
            run(py, || {
                drop(core);
                Ok(())
            })?;
        }
        Ok(())
    }

    #[getter]
    fn closed(&self) -> bool {
        self.core.lock().is_none()
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        match &*self.core.lock() {
            Some(c) => format!(
                "Region(size={}, budget={}, address={:#x}, resident_bytes={})",
                self.size,
                c.budget(),
                self.address,
                c.resident_bytes()
            ),
            None => format!("Region(size={}, closed)", self.size),
        }
    }

    /// # Safety
    /// Called by Python with a `Py_buffer` to fill, as the buffer protocol
    /// says.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let this = slf.get();
        let mut exports = this.exports.lock();
        if this.core.lock().is_none() {
            return Err(closed(slf.py()));
        }
        // SAFETY: `view` is Python's to fill; the memory is the region's
        // mapping, which stays mapped while the export is counted (close()
        // refuses until it is released); the object is stored in the view
        // (with a new reference) by PyBuffer_FillInfo.
        let rc = unsafe {
            ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                this.address as *mut std::ffi::c_void,
                this.size as ffi::Py_ssize_t,
                0,
                flags,
            )
        };
        if rc != 0 {
            return Err(PyErr::fetch(slf.py()));
        }
        *exports += 1;
        Ok(())
    }

    /// # Safety
    /// Called by Python once per successful `__getbuffer__`.
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        let mut exports = self.exports.lock();
        *exports = exports.saturating_sub(1);
    }
}

/// Whether regions can be made here: `(usable, mode, reason)`, for
/// `zswap-rs info`.
#[pyfunction]
pub(super) fn userfaultfd_status() -> (bool, &'static str, String) {
    crate::region::userfaultfd_status()
}
