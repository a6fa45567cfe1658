//! `nx-gzip`: raw deflate on the IBM POWER NX accelerator through libnxz,
//! loaded at run time.
//!
//! POWER9 and later carry an NX GZIP engine, reached from user space through
//! `/dev/crypto/nx-gzip` and, in practice, through libnxz, which implements
//! zlib's API on top of it. Linking libnxz would make the crate unbuildable
//! wherever it is missing (everywhere but POWER), so it is opened with
//! `dlopen` (libloading) and its zlib-compatible entry points are resolved by
//! name: the `nx_`-prefixed ones, which always use the accelerator, where the
//! library has them, else the plain zlib names. Because the interface is
//! zlib's, the same loader drives any zlib: the tests load the system
//! `libz.so.1` through this very code to prove the plumbing on machines
//! without NX.
//!
//! Streams are raw deflate (windowBits -12 to compress: a 4 KiB history, so
//! the output is interchangeable with `deflate` and `deflate-iaa`; -15 to
//! decompress, which reads any raw deflate). A `z_stream` costs a few hundred
//! KiB and an init call, so streams are made once and reused with
//! `deflateReset`/`inflateReset`: each call takes a stream pair from a small
//! pool and puts it back, so a thread reuses the same pair and threads never
//! wait on each other's compression. The trade-off against thread-locals is
//! deliberate: the pool lives and dies with the compressor, so every stream
//! is ended (`deflateEnd`/`inflateEnd`) before the library is unloaded,
//! which thread-local destructors running after `dlclose` could not promise.

use std::ffi::{c_char, c_int, c_uint, c_ulong, c_void, CStr};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::compress::{CompressError, Compressor, CompressorId, DecompressError};

/// The NX GZIP device node (the kernel's powerpc nx-gzip driver, VAS).
pub const NX_GZIP_DEVICE: &str = "/dev/crypto/nx-gzip";
/// libnxz's names, the versioned soname first.
pub const LIBNXZ_NAMES: [&str; 2] = ["libnxz.so.0", "libnxz.so"];

// zlib.h constants.
const Z_OK: c_int = 0;
const Z_STREAM_END: c_int = 1;
const Z_NEED_DICT: c_int = 2;
const Z_DATA_ERROR: c_int = -3;
const Z_MEM_ERROR: c_int = -4;
const Z_BUF_ERROR: c_int = -5;
const Z_FINISH: c_int = 4;
const Z_DEFLATED: c_int = 8;
const Z_DEFAULT_STRATEGY: c_int = 0;
/// zlib's default level (6).
pub const Z_DEFAULT_COMPRESSION: c_int = -1;
/// Negative windowBits: raw deflate, no zlib header; 12: a 4 KiB history,
/// the window `deflate` and IAA use.
const DEFLATE_WINDOW_BITS: c_int = -12;
/// Inflate with the largest window so that any raw deflate stream reads.
const INFLATE_WINDOW_BITS: c_int = -15;
/// zlib's default memLevel.
const MEM_LEVEL: c_int = 8;
/// The version we were written against; zlib checks only its first digit.
const ZLIB_VERSION: &CStr = c"1.2.13";

/// `struct z_stream_s` of zlib.h (LP64 layout: 112 bytes).
#[repr(C)]
struct ZStream {
    next_in: *const u8,
    avail_in: c_uint,
    total_in: c_ulong,
    next_out: *mut u8,
    avail_out: c_uint,
    total_out: c_ulong,
    msg: *const c_char,
    state: *mut c_void,
    zalloc: *const c_void,
    zfree: *const c_void,
    opaque: *mut c_void,
    data_type: c_int,
    adler: c_ulong,
    reserved: c_ulong,
}

#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<ZStream>() == 112);

impl ZStream {
    fn zeroed() -> Self {
        // SAFETY: an all-zero z_stream is what zlib expects before init
        // (null pointers: default allocators); every field is an integer or
        // a raw pointer, for which zero is valid.
        unsafe { std::mem::zeroed() }
    }

    fn message(&self, code: c_int) -> String {
        if self.msg.is_null() {
            format!("zlib error {code}")
        } else {
            // SAFETY: zlib sets msg to a static NUL-terminated string.
            let m = unsafe { CStr::from_ptr(self.msg) };
            format!("{} (zlib {code})", m.to_string_lossy())
        }
    }
}

type DeflateInit2 = unsafe extern "C" fn(
    *mut ZStream,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    *const c_char,
    c_int,
) -> c_int;
type InflateInit2 = unsafe extern "C" fn(*mut ZStream, c_int, *const c_char, c_int) -> c_int;
type StreamFn = unsafe extern "C" fn(*mut ZStream) -> c_int;
type StreamFlushFn = unsafe extern "C" fn(*mut ZStream, c_int) -> c_int;

/// zlib's API, resolved from a library opened at run time. The function
/// pointers stay valid while `_lib` is loaded: it is dropped last.
pub struct ZlibApi {
    deflate_init2: DeflateInit2,
    deflate: StreamFlushFn,
    deflate_reset: StreamFn,
    deflate_end: StreamFn,
    inflate_init2: InflateInit2,
    inflate: StreamFlushFn,
    inflate_reset: StreamFn,
    inflate_end: StreamFn,
    /// Which library and symbol prefix, for messages.
    describe: String,
    _lib: libloading::Library,
}

impl fmt::Debug for ZlibApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe)
    }
}

impl ZlibApi {
    /// Open `path` (a file name searched as `dlopen` does, or a path) and
    /// resolve zlib's entry points, with `prefix` before each name (`"nx_"`
    /// for libnxz's always-hardware ones, `""` for zlib's).
    pub fn open(path: impl AsRef<Path>, prefix: &str) -> Result<Self, String> {
        let path = path.as_ref();
        // SAFETY: loading a zlib-compatible library runs its initialisers,
        // which for zlib and libnxz only set up internal tables.
        let lib = unsafe { libloading::Library::new(path.as_os_str()) }
            .map_err(|e| format!("cannot load {}: {e}", path.display()))?;
        fn sym<T: Copy>(lib: &libloading::Library, name: &str) -> Result<T, String> {
            let cname = format!("{name}\0");
            // SAFETY: T is the C signature zlib.h gives `name`; the pointer
            // is used only while the library stays loaded (ZlibApi owns it).
            unsafe { lib.get::<T>(cname.as_bytes()) }
                .map(|s| *s)
                .map_err(|e| format!("symbol {name} missing: {e}"))
        }
        let p = |n: &str| format!("{prefix}{n}");
        let api = ZlibApi {
            deflate_init2: sym(&lib, &p("deflateInit2_"))?,
            deflate: sym(&lib, &p("deflate"))?,
            deflate_reset: sym(&lib, &p("deflateReset"))?,
            deflate_end: sym(&lib, &p("deflateEnd"))?,
            inflate_init2: sym(&lib, &p("inflateInit2_"))?,
            inflate: sym(&lib, &p("inflate"))?,
            inflate_reset: sym(&lib, &p("inflateReset"))?,
            inflate_end: sym(&lib, &p("inflateEnd"))?,
            describe: format!(
                "{}{}",
                path.display(),
                if prefix.is_empty() {
                    String::new()
                } else {
                    format!(" ({prefix}*)")
                }
            ),
            _lib: lib,
        };
        Ok(api)
    }

    /// libnxz: the `nx_` entry points if it has them, else zlib's names.
    pub fn open_libnxz() -> Result<Self, String> {
        let mut errors = Vec::new();
        for name in LIBNXZ_NAMES {
            for prefix in ["nx_", ""] {
                match ZlibApi::open(name, prefix) {
                    Ok(api) => return Ok(api),
                    Err(e) => errors.push(e),
                }
            }
        }
        Err(errors.join("; "))
    }
}

/// One thread's streams, initialised on first use and reset after each.
struct Streams {
    deflate: Option<Box<ZStream>>,
    inflate: Option<Box<ZStream>>,
}

// SAFETY: a z_stream and its zlib state are plain heap memory owned by this
// value; zlib keeps no thread affinity, and a stream is used by one thread
// at a time (it is out of the pool while in use).
unsafe impl Send for Streams {}

/// `nx-gzip` (or any zlib behind [`ZlibApi`]): raw deflate with streams
/// reused across pages.
pub struct NxGzip {
    api: Arc<ZlibApi>,
    level: c_int,
    hardware: bool,
    pool: Mutex<Vec<Streams>>,
}

impl fmt::Debug for NxGzip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NxGzip")
            .field("library", &self.api)
            .field("level", &self.level)
            .finish()
    }
}

impl NxGzip {
    /// Compress with `api` at zlib `level` (-1: the library's default).
    /// `hardware` says whether the library drives an accelerator.
    pub fn with_api(api: ZlibApi, level: i32, hardware: bool) -> Self {
        NxGzip {
            api: Arc::new(api),
            level,
            hardware,
            pool: Mutex::new(Vec::new()),
        }
    }

    /// The library at `path`, zlib names with `prefix`: what the tests use
    /// to drive the system zlib through the nx-gzip code path.
    pub fn open_library(path: impl AsRef<Path>, prefix: &str, level: i32) -> Result<Self, String> {
        Ok(NxGzip::with_api(ZlibApi::open(path, prefix)?, level, false))
    }

    /// libnxz on a machine with NX GZIP.
    pub fn open() -> Result<Self, String> {
        detect_in(Path::new(NX_GZIP_DEVICE))?;
        Ok(NxGzip::with_api(
            ZlibApi::open_libnxz()?,
            Z_DEFAULT_COMPRESSION,
            true,
        ))
    }

    /// How many stream pairs are pooled (one per thread that has used it,
    /// at most): for tests of reuse.
    pub fn pooled_streams(&self) -> usize {
        self.pool.lock().len()
    }

    fn with_streams<R>(&self, f: impl FnOnce(&mut Streams) -> (R, bool)) -> R {
        let mut s = self.pool.lock().pop().unwrap_or(Streams {
            deflate: None,
            inflate: None,
        });
        let (r, keep) = f(&mut s);
        if keep {
            self.pool.lock().push(s);
        } else {
            self.end(&mut s);
        }
        r
    }

    fn end(&self, s: &mut Streams) {
        if let Some(mut d) = s.deflate.take() {
            // SAFETY: `d` was initialised by deflateInit2_ and is ended once.
            unsafe { (self.api.deflate_end)(&mut *d) };
        }
        if let Some(mut i) = s.inflate.take() {
            // SAFETY: as above, for inflateInit2_.
            unsafe { (self.api.inflate_end)(&mut *i) };
        }
    }

    fn deflate_stream<'a>(&self, s: &'a mut Streams) -> Result<&'a mut ZStream, String> {
        if s.deflate.is_none() {
            // Boxed: zlib's state points back at the z_stream, so it must
            // not move after init.
            let mut z = Box::new(ZStream::zeroed());
            // SAFETY: a zeroed z_stream, zlib's own version string and
            // struct size, as deflateInit2() passes them.
            let r = unsafe {
                (self.api.deflate_init2)(
                    &mut *z,
                    self.level,
                    Z_DEFLATED,
                    DEFLATE_WINDOW_BITS,
                    MEM_LEVEL,
                    Z_DEFAULT_STRATEGY,
                    ZLIB_VERSION.as_ptr(),
                    std::mem::size_of::<ZStream>() as c_int,
                )
            };
            if r != Z_OK {
                return Err(format!("deflateInit2 failed: {}", z.message(r)));
            }
            s.deflate = Some(z);
        }
        Ok(s.deflate.as_mut().expect("just set"))
    }

    fn inflate_stream<'a>(&self, s: &'a mut Streams) -> Result<&'a mut ZStream, String> {
        if s.inflate.is_none() {
            let mut z = Box::new(ZStream::zeroed());
            // SAFETY: as in deflate_stream, for inflateInit2().
            let r = unsafe {
                (self.api.inflate_init2)(
                    &mut *z,
                    INFLATE_WINDOW_BITS,
                    ZLIB_VERSION.as_ptr(),
                    std::mem::size_of::<ZStream>() as c_int,
                )
            };
            if r != Z_OK {
                return Err(format!("inflateInit2 failed: {}", z.message(r)));
            }
            s.inflate = Some(z);
        }
        Ok(s.inflate.as_mut().expect("just set"))
    }
}

impl Drop for NxGzip {
    fn drop(&mut self) {
        let streams = std::mem::take(&mut *self.pool.lock());
        for mut s in streams {
            self.end(&mut s);
        }
        // `api` (and the library) goes after this.
    }
}

/// Point `z` at `src` and `dst`. zlib counts in c_uint: larger buffers are
/// clamped, which for pages never happens.
fn set_buffers(z: &mut ZStream, src: &[u8], dst: &mut [u8]) {
    z.next_in = src.as_ptr();
    z.avail_in = src.len().min(c_uint::MAX as usize) as c_uint;
    z.next_out = dst.as_mut_ptr();
    z.avail_out = dst.len().min(c_uint::MAX as usize) as c_uint;
}

fn clear_buffers(z: &mut ZStream) {
    z.next_in = std::ptr::null();
    z.avail_in = 0;
    z.next_out = std::ptr::null_mut();
    z.avail_out = 0;
}

impl Compressor for NxGzip {
    fn id(&self) -> CompressorId {
        CompressorId::NxGzip
    }

    fn is_hardware(&self) -> bool {
        self.hardware
    }

    fn compress(&self, src: &[u8], dst: &mut [u8]) -> Result<usize, CompressError> {
        if src.len() > c_uint::MAX as usize {
            return Err(CompressError::Failed("input larger than 4 GiB".into()));
        }
        self.with_streams(|s| {
            let api = &self.api;
            let z = match self.deflate_stream(s) {
                Ok(z) => z,
                Err(e) => return (Err(CompressError::Failed(e)), true),
            };
            set_buffers(z, src, dst);
            // SAFETY: `z` is an initialised deflate stream whose buffers are
            // `src` (readable) and `dst` (writable) for this call; zlib
            // writes at most avail_out bytes.
            let r = unsafe { (api.deflate)(z, Z_FINISH) };
            let produced = dst.len().min(c_uint::MAX as usize) - z.avail_out as usize;
            let result = match r {
                Z_STREAM_END => Ok(produced),
                // Output full: zlib returns Z_OK even when the stream ended
                // exactly at the end of the buffer. One more call into a
                // scratch buffer tells: nothing more written means it fit.
                Z_OK | Z_BUF_ERROR if z.avail_out == 0 => {
                    let mut scratch = [0u8; 64];
                    z.next_out = scratch.as_mut_ptr();
                    z.avail_out = scratch.len() as c_uint;
                    // SAFETY: as above, with `scratch` as the output.
                    let r2 = unsafe { (api.deflate)(z, Z_FINISH) };
                    if r2 == Z_STREAM_END && z.avail_out as usize == scratch.len() {
                        Ok(produced)
                    } else {
                        Err(CompressError::DoesNotFit)
                    }
                }
                Z_OK | Z_BUF_ERROR => Err(CompressError::DoesNotFit),
                other => Err(CompressError::Failed(z.message(other))),
            };
            clear_buffers(z);
            // SAFETY: an initialised deflate stream.
            let keep = unsafe { (api.deflate_reset)(z) } == Z_OK;
            (result, keep)
        })
    }

    fn decompress(&self, src: &[u8], dst: &mut [u8]) -> Result<(), DecompressError> {
        if src.len() > c_uint::MAX as usize || dst.len() > c_uint::MAX as usize {
            return Err(DecompressError::Corrupt("buffer larger than 4 GiB".into()));
        }
        self.with_streams(|s| {
            let api = &self.api;
            let z = match self.inflate_stream(s) {
                Ok(z) => z,
                Err(e) => return (Err(DecompressError::Corrupt(e)), true),
            };
            set_buffers(z, src, dst);
            // SAFETY: `z` is an initialised inflate stream; zlib reads at
            // most avail_in bytes of `src` and writes at most avail_out of
            // `dst`, whatever the input says.
            let r = unsafe { (api.inflate)(z, Z_FINISH) };
            let produced = dst.len() - z.avail_out as usize;
            let result = match r {
                Z_STREAM_END if produced == dst.len() => Ok(()),
                Z_STREAM_END => Err(DecompressError::WrongLength {
                    expected: dst.len(),
                    actual: produced,
                }),
                Z_OK | Z_BUF_ERROR if z.avail_out == 0 => Err(DecompressError::Corrupt(format!(
                    "deflate stream decodes to more than {} bytes",
                    dst.len()
                ))),
                Z_OK | Z_BUF_ERROR => Err(DecompressError::Corrupt(format!(
                    "deflate stream truncated after {produced} bytes"
                ))),
                Z_DATA_ERROR | Z_NEED_DICT => Err(DecompressError::Corrupt(z.message(r))),
                Z_MEM_ERROR => Err(DecompressError::Corrupt("zlib: out of memory".into())),
                other => Err(DecompressError::Corrupt(z.message(other))),
            };
            clear_buffers(z);
            // SAFETY: an initialised inflate stream.
            let keep = unsafe { (api.inflate_reset)(z) } == Z_OK;
            (result, keep)
        })
    }
}

/// Whether NX GZIP can be used, given the device node at `device`: the node
/// must exist and libnxz must load.
pub fn detect_in(device: &Path) -> Result<(), String> {
    if !device.exists() {
        return Err(format!(
            "no IBM NX GZIP: {} missing (needs POWER9 or later with the nx-gzip driver)",
            device.display()
        ));
    }
    Ok(())
}

/// What `compressors()` says of `nx-gzip` here.
pub(crate) fn info() -> crate::compress::CompressorInfo {
    use crate::compress::CompressorInfo;
    let id = CompressorId::NxGzip;
    if let Err(reason) = detect_in(Path::new(NX_GZIP_DEVICE)) {
        return CompressorInfo::unavailable(id, true, reason);
    }
    match ZlibApi::open_libnxz() {
        Ok(_) => CompressorInfo::available(id, true, None),
        Err(e) => CompressorInfo::unavailable(
            id,
            true,
            format!("{NX_GZIP_DEVICE} present but libnxz does not load: {e}"),
        ),
    }
}

/// Build `nx-gzip` on libnxz.
pub(crate) fn build() -> Result<Arc<dyn Compressor>, String> {
    Ok(Arc::new(NxGzip::open()?))
}
