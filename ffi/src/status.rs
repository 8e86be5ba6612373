//! Status codes, the per-thread last error, and the panic boundary.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};

use engine::Error;

/// Status of every chartvault C function. `CV_OK` is 0; everything else is an error
/// whose message `cv_last_error_message` returns on the same thread.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum cv_status {
    /// Success.
    CV_OK = 0,
    /// A required pointer argument was NULL.
    CV_ERR_NULL = 1,
    /// A string argument was not valid UTF-8.
    CV_ERR_UTF8 = 2,
    /// An argument was invalid (message says which).
    CV_ERR_INVALID_ARGUMENT = 3,
    /// JSON input could not be parsed or had the wrong shape.
    CV_ERR_JSON = 4,
    /// An input exceeded its size limit.
    CV_ERR_TOO_LARGE = 5,
    /// The handle is closed, freed or was never issued.
    CV_ERR_INVALID_HANDLE = 6,
    /// Wrong passphrase or key.
    CV_ERR_WRONG_KEY = 7,
    /// The vault is open for writing elsewhere.
    CV_ERR_LOCKED = 8,
    /// No such document or version.
    CV_ERR_NOT_FOUND = 9,
    /// The access policy denied the operation (it was audited).
    CV_ERR_DENIED = 10,
    /// The session expired (automatic logoff); open a new one.
    CV_ERR_SESSION_EXPIRED = 11,
    /// The vault file is corrupt or failed an integrity check.
    CV_ERR_CORRUPT = 12,
    /// An I/O error; after a failed write the vault refuses writes until reopened.
    CV_ERR_IO = 13,
    /// The vault was opened read-only.
    CV_ERR_READ_ONLY = 14,
    /// The query could not be parsed or run.
    CV_ERR_QUERY = 15,
    /// The patient's records were erased.
    CV_ERR_ERASED = 16,
    /// The path does not hold a vault, or one already exists there.
    CV_ERR_NOT_A_VAULT = 17,
    /// An output buffer was too small (the needed size was written).
    CV_ERR_BUFFER_TOO_SMALL = 18,
    /// An internal error was caught at the API boundary (a bug: please report it).
    CV_ERR_PANIC = 19,
    /// Any other error.
    CV_ERR_OTHER = 20,
}

thread_local! {
    static LAST: RefCell<(cv_status, String)> = const { RefCell::new((cv_status::CV_OK, String::new())) };
}

/// Records the last error of this thread.
pub(crate) fn set_last(code: cv_status, msg: String) {
    LAST.with(|l| *l.borrow_mut() = (code, msg));
}

/// The last error of this thread.
pub(crate) fn last() -> (cv_status, String) {
    LAST.with(|l| l.borrow().clone())
}

/// Maps an engine error to a status.
pub(crate) fn status_of(e: &Error) -> cv_status {
    use cv_status::*;
    match e {
        Error::Io { .. } | Error::WritesLatched => CV_ERR_IO,
        Error::AlreadyExists(_) | Error::NotAVault { .. } | Error::UnsupportedVersion { .. } => CV_ERR_NOT_A_VAULT,
        Error::HeaderDamaged | Error::Corrupt { .. } | Error::Integrity { .. } | Error::AuditBroken { .. } => {
            CV_ERR_CORRUPT
        }
        Error::WrongKey => CV_ERR_WRONG_KEY,
        Error::Locked(_) => CV_ERR_LOCKED,
        Error::ReadOnly => CV_ERR_READ_ONLY,
        Error::NotFound { .. } => CV_ERR_NOT_FOUND,
        Error::Erased => CV_ERR_ERASED,
        Error::InvalidDocument(_) | Error::Json { .. } => CV_ERR_JSON,
        Error::TooLarge { .. } => CV_ERR_TOO_LARGE,
        Error::Denied(_) => CV_ERR_DENIED,
        Error::SessionExpired { .. } => CV_ERR_SESSION_EXPIRED,
        Error::QuerySyntax { .. } | Error::InvalidQuery(_) => CV_ERR_QUERY,
        Error::InvalidPolicy(_) | Error::KeySlot(_) | Error::InvalidArgument(_) => CV_ERR_INVALID_ARGUMENT,
        _ => CV_ERR_OTHER,
    }
}

/// An error at the boundary: a status and a message.
pub(crate) struct Fail(pub cv_status, pub String);

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail(status_of(&e), e.to_string())
    }
}

/// Runs `f` behind the panic boundary, recording the outcome as this thread's last error.
pub(crate) fn guard(f: impl FnOnce() -> Result<(), Fail>) -> cv_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => {
            set_last(cv_status::CV_OK, String::new());
            cv_status::CV_OK
        }
        Ok(Err(Fail(code, msg))) => {
            set_last(code, msg);
            code
        }
        Err(_) => {
            set_last(cv_status::CV_ERR_PANIC, "internal error caught at the C API boundary; please report it".into());
            cv_status::CV_ERR_PANIC
        }
    }
}
