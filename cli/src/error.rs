//! The CLI's error type: a message for the user and the process exit code.
//!
//! Exit codes: `1` for an error, `2` for a usage error (clap uses 2 as well), `3` when
//! `verify` or `audit verify` finds the vault or its audit trail not clean.
//! Messages never contain secrets or field values: engine errors are PHI-free by
//! design, and JSON errors are reported by position only.

use std::fmt;

/// Exit code for an ordinary error.
pub const EXIT_ERROR: u8 = 1;
/// Exit code for a usage error (bad or missing arguments).
pub const EXIT_USAGE: u8 = 2;
/// Exit code when verification finds the vault (or its audit trail) not clean.
pub const EXIT_NOT_CLEAN: u8 = 3;

/// An error to print as `error: <message>` before exiting with `code`.
#[derive(Debug)]
pub struct CliError {
    /// The process exit code.
    pub code: u8,
    /// What went wrong, in words a user can act on.
    pub message: String,
}

/// Result alias for CLI code.
pub type CliResult<T> = Result<T, CliError>;

impl CliError {
    /// An ordinary error (exit 1).
    pub fn new(message: impl Into<String>) -> Self {
        CliError { code: EXIT_ERROR, message: message.into() }
    }

    /// A usage error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        CliError { code: EXIT_USAGE, message: message.into() }
    }

    /// Verification found problems (exit 3).
    pub fn not_clean(message: impl Into<String>) -> Self {
        CliError { code: EXIT_NOT_CLEAN, message: message.into() }
    }

    /// Prefixes the message with some context (`"<context>: <message>"`).
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<chartvault::Error> for CliError {
    fn from(e: chartvault::Error) -> Self {
        CliError::new(e.to_string())
    }
}

/// Describes a serde_json error by position and category only, so that no part of
/// the input (which may hold PHI) is echoed.
pub fn json_error(e: &serde_json::Error) -> CliError {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Io => "read error",
        Category::Syntax => "syntax error",
        Category::Eof => "unexpected end of input",
        Category::Data => "unexpected value",
    };
    CliError::new(format!("invalid JSON at line {}, column {}: {what}", e.line(), e.column()))
}

/// Like [`json_error`], but keeps serde's explanation of a *shape* error (a missing or
/// unknown key, an unknown code) while dropping any quoted input value. Used for
/// configuration-like inputs (patient rules) where the key names help the user.
pub fn json_shape_error(e: &serde_json::Error) -> CliError {
    use serde_json::error::Category;
    if e.classify() != Category::Data {
        return json_error(e);
    }
    let full = e.to_string();
    let text = match full.rfind(" at line") {
        Some(i) => &full[..i],
        None => full.as_str(),
    };
    // "invalid type: string \"...\", expected X" and "invalid value: ..." quote the
    // input; keep only what was expected.
    let text = if text.starts_with("invalid type")
        || text.starts_with("invalid value")
        || text.starts_with("invalid length")
    {
        let head = text.split(':').next().unwrap_or("invalid value");
        match text.find(", expected") {
            Some(i) => format!("{head}{}", &text[i..]),
            None => head.to_string(),
        }
    } else {
        text.to_string()
    };
    CliError::new(format!("invalid JSON at line {}, column {}: {text}", e.line(), e.column()))
}

/// An I/O error on a named file.
pub fn io_error(what: &str, path: &std::path::Path, e: &std::io::Error) -> CliError {
    CliError::new(format!("cannot {what} {}: {e}", path.display()))
}
