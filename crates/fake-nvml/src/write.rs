//! Writing results through the caller's pointers, with NVML's checks.

use std::ffi::{c_char, c_uint, CStr};

use nvml_wrapper_sys::bindings::{
    nvmlReturn_enum_NVML_ERROR_INSUFFICIENT_SIZE as INSUFFICIENT_SIZE,
    nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT as INVALID_ARGUMENT,
};

use crate::state::Res;

/// Fails with `NVML_ERROR_INVALID_ARGUMENT` when `ptr` is NULL. Check every
/// output pointer before writing any, so a failed call writes nothing.
pub(crate) fn nonnull<T>(ptr: *const T) -> Res {
    if ptr.is_null() {
        Err(INVALID_ARGUMENT)
    } else {
        Ok(())
    }
}

/// Writes `value` through `ptr`.
///
/// # Safety
/// `ptr` is NULL or points to writable memory for a `T`.
pub(crate) unsafe fn out<T>(ptr: *mut T, value: T) -> Res {
    nonnull(ptr)?;
    // SAFETY: non-null, and the caller vouches for the memory behind it.
    unsafe { ptr.write(value) };
    Ok(())
}

/// Copies `s` and its NUL into the caller's buffer of `length` bytes, or fails
/// with `NVML_ERROR_INSUFFICIENT_SIZE` when it does not fit (nothing written).
///
/// # Safety
/// `buf` is NULL or points to `length` writable bytes.
pub(crate) unsafe fn string(buf: *mut c_char, length: c_uint, s: &str) -> Res {
    nonnull(buf)?;
    let bytes = s.as_bytes();
    if (length as usize) < bytes.len() + 1 {
        return Err(INSUFFICIENT_SIZE);
    }
    // SAFETY: `buf` holds `length` >= len + 1 bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr().cast::<c_char>(), buf, bytes.len());
        buf.add(bytes.len()).write(0);
    }
    Ok(())
}

/// Fills a fixed `char[N]` field of an NVML struct, truncating so the NUL fits.
pub(crate) fn chars<const N: usize>(s: &str) -> [c_char; N] {
    let mut out = [0 as c_char; N];
    for (o, b) in out.iter_mut().zip(s.bytes().take(N.saturating_sub(1))) {
        *o = b as c_char;
    }
    out
}

/// Reads a NUL-terminated input string, `NVML_ERROR_INVALID_ARGUMENT` when
/// NULL or not UTF-8.
///
/// # Safety
/// `s` is NULL or a NUL-terminated string.
pub(crate) unsafe fn input<'a>(s: *const c_char) -> Res<&'a str> {
    nonnull(s)?;
    // SAFETY: non-null and NUL-terminated by the caller's contract.
    unsafe { CStr::from_ptr(s) }
        .to_str()
        .map_err(|_| INVALID_ARGUMENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_fit_or_report_insufficient_size() {
        let mut buf = [1 as c_char; 8];
        assert_eq!(unsafe { string(buf.as_mut_ptr(), 8, "1234567") }, Ok(()));
        assert_eq!(buf[7], 0);
        let mut small = [1 as c_char; 7];
        assert_eq!(
            unsafe { string(small.as_mut_ptr(), 7, "1234567") },
            Err(INSUFFICIENT_SIZE)
        );
        assert!(small.iter().all(|c| *c == 1), "nothing written on failure");
        assert_eq!(
            unsafe { string(std::ptr::null_mut(), 8, "x") },
            Err(INVALID_ARGUMENT)
        );
        let c: [c_char; 4] = chars("abcdef");
        assert_eq!(c, [b'a' as c_char, b'b' as c_char, b'c' as c_char, 0]);
    }
}
