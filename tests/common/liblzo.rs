//! The reference liblzo2, dlopened for the tests: it is GPL, so it is never
//! linked into the crate. Debian's `liblzo2-2` has it (`.ci/run` installs it).

use std::ffi::{c_int, c_long, c_short, c_ulong, c_void};

/// `lzo1x_*_compress` and `lzo1x_decompress_safe` share this signature.
pub type LzoFn =
    unsafe extern "C" fn(*const u8, c_ulong, *mut u8, *mut c_ulong, *mut c_void) -> c_int;
type LzoInitFn = unsafe extern "C" fn(
    u32,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
) -> c_int;

pub struct LibLzo {
    _lib: libloading::Library,
    pub compress_1: LzoFn,
    pub compress_999: LzoFn,
    decompress_safe: LzoFn,
}

impl LibLzo {
    pub fn load() -> LibLzo {
        // SAFETY: liblzo2's initialisers have no preconditions.
        let lib = unsafe { libloading::Library::new("liblzo2.so.2") }.unwrap_or_else(|e| {
            panic!(
                "the LZO interop tests need the reference liblzo2 ({e}): \
                 apt-get install liblzo2-2 (or liblzo2-dev)"
            )
        });
        // SAFETY: the symbols have these C signatures (lzo/lzo1x.h, lzoconf.h),
        // and the function pointers do not outlive `lib`, kept alongside.
        unsafe {
            let init: LzoInitFn = *lib.get(b"__lzo_init_v2\0").unwrap();
            let ptr = size_of::<*const u8>() as c_int;
            let ulong = size_of::<c_ulong>() as c_int;
            // lzo_init(): the library checks that our types match its build.
            let rc = init(
                0x20a0,
                size_of::<c_short>() as c_int,
                size_of::<c_int>() as c_int,
                size_of::<c_long>() as c_int,
                4,
                ulong,
                ptr,
                ptr,
                ptr,
                4 * ptr + 2 * ulong,
            );
            assert_eq!(rc, 0, "lzo_init failed");
            LibLzo {
                compress_1: *lib.get(b"lzo1x_1_compress\0").unwrap(),
                compress_999: *lib.get(b"lzo1x_999_compress\0").unwrap(),
                decompress_safe: *lib.get(b"lzo1x_decompress_safe\0").unwrap(),
                _lib: lib,
            }
        }
    }

    pub fn compress(&self, f: LzoFn, src: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; src.len() + src.len() / 16 + 64 + 3];
        // LZO1X_999_MEM_COMPRESS (448 KiB) is the largest work memory of all.
        let mut wrkmem = vec![0u64; 14 * 16384 * 2 / 8 + 16384];
        let mut len = out.len() as c_ulong;
        // SAFETY: src and out are live for the call with the lengths given;
        // out has liblzo2's documented worst case; wrkmem is large enough
        // and 8-byte aligned.
        let rc = unsafe {
            f(
                src.as_ptr(),
                src.len() as c_ulong,
                out.as_mut_ptr(),
                &mut len,
                wrkmem.as_mut_ptr().cast(),
            )
        };
        assert_eq!(rc, 0, "liblzo2 compress failed");
        out.truncate(len as usize);
        out
    }

    pub fn decompress(&self, src: &[u8], out_len: usize) -> Result<Vec<u8>, c_int> {
        let mut out = vec![0u8; out_len];
        let mut len = out.len() as c_ulong;
        // SAFETY: src and out are live for the call with the lengths given;
        // the safe decompressor checks both bounds and needs no work memory.
        let rc = unsafe {
            (self.decompress_safe)(
                src.as_ptr(),
                src.len() as c_ulong,
                out.as_mut_ptr(),
                &mut len,
                std::ptr::null_mut(),
            )
        };
        if rc != 0 {
            return Err(rc);
        }
        out.truncate(len as usize);
        Ok(out)
    }
}
