//! Strings across the boundary: bounded, checked input; output strings tracked so
//! that freeing one twice, or freeing a pointer the library never returned, is
//! detected instead of corrupting the heap.

use std::collections::BTreeSet;
use std::ffi::{CString, c_char};
use std::sync::{Mutex, OnceLock};

use crate::status::{Fail, cv_status};

/// Largest string input accepted (64 MiB), including JSON documents.
pub const CV_MAX_INPUT: usize = 64 * 1024 * 1024;

fn issued() -> &'static Mutex<BTreeSet<usize>> {
    static S: OnceLock<Mutex<BTreeSet<usize>>> = OnceLock::new();
    S.get_or_init(|| Mutex::new(BTreeSet::new()))
}

/// Reads a NUL-terminated UTF-8 string of at most `max` bytes.
///
/// # Safety
/// `p` must be NULL or point to readable memory up to and including a NUL byte, or to
/// at least `max + 1` readable bytes.
pub(crate) unsafe fn input<'a>(p: *const c_char, what: &str, max: usize) -> Result<&'a str, Fail> {
    if p.is_null() {
        return Err(Fail(cv_status::CV_ERR_NULL, format!("{what} is NULL")));
    }
    let mut len = 0usize;
    // SAFETY: the caller guarantees the bytes up to the NUL (or max + 1 bytes) are
    // readable; we stop at the first NUL or after max + 1 bytes.
    while unsafe { *p.add(len) } != 0 {
        len += 1;
        if len > max {
            return Err(Fail(cv_status::CV_ERR_TOO_LARGE, format!("{what} is longer than {max} bytes")));
        }
    }
    // SAFETY: `len` bytes starting at `p` were just read and are followed by the NUL.
    let bytes = unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) };
    std::str::from_utf8(bytes).map_err(|_| Fail(cv_status::CV_ERR_UTF8, format!("{what} is not valid UTF-8")))
}

/// Like [`input`], but NULL means `None`.
///
/// # Safety
/// As for [`input`].
pub(crate) unsafe fn optional<'a>(p: *const c_char, what: &str, max: usize) -> Result<Option<&'a str>, Fail> {
    if p.is_null() {
        Ok(None)
    } else {
        // SAFETY: forwarded contract.
        unsafe { input(p, what, max) }.map(Some)
    }
}

/// Hands a string to the caller through `out` (which the caller checked is non-NULL).
///
/// # Safety
/// `out` must be valid for a pointer write.
pub(crate) unsafe fn output(s: String, out: *mut *mut c_char) -> Result<(), Fail> {
    let c = CString::new(s).map_err(|_| Fail(cv_status::CV_ERR_OTHER, "output contained a NUL byte".into()))?;
    let p = c.into_raw();
    issued().lock().unwrap_or_else(|e| e.into_inner()).insert(p as usize);
    // SAFETY: the caller checked `out` is non-NULL and writable.
    unsafe { *out = p };
    Ok(())
}

/// Frees a string the library returned. Unknown pointers are refused.
pub(crate) fn free(p: *mut c_char) -> Result<(), Fail> {
    if p.is_null() {
        return Ok(());
    }
    if !issued().lock().unwrap_or_else(|e| e.into_inner()).remove(&(p as usize)) {
        return Err(Fail(
            cv_status::CV_ERR_INVALID_ARGUMENT,
            "cv_string_free: this pointer was not returned by chartvault or was already freed".into(),
        ));
    }
    // SAFETY: the pointer came from CString::into_raw in `output` and was still in the
    // issued set, so it has not been freed yet.
    drop(unsafe { CString::from_raw(p) });
    Ok(())
}

/// Checks an output pointer is non-NULL.
pub(crate) fn need<T>(p: *mut T, what: &str) -> Result<(), Fail> {
    if p.is_null() { Err(Fail(cv_status::CV_ERR_NULL, format!("{what} is NULL"))) } else { Ok(()) }
}
