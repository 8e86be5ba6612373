//! The one error type of the engine.
//!
//! Every variant carries only non-sensitive context (offsets, ids, counts, label and
//! field *names*), never a field value, a patient identifier or key material, so an
//! error can be logged or shown to a user without disclosing PHI.

use std::path::PathBuf;

/// Result alias used throughout chartvault.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in chartvault, with a message a user can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O error on the vault's files.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file the operation was on.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The vault file already exists and `create` would overwrite it.
    #[error("a vault already exists at {0}; open it instead, or choose another path")]
    AlreadyExists(PathBuf),
    /// The path does not hold a chartvault vault (bad magic or unsupported version).
    #[error("{path} is not a chartvault vault ({reason})")]
    NotAVault {
        /// The file examined.
        path: PathBuf,
        /// Why it was rejected.
        reason: String,
    },
    /// The file was written by a newer format version than this library reads.
    #[error("vault format version {found} is newer than this library supports ({supported}); upgrade chartvault")]
    UnsupportedVersion {
        /// Version found in the file.
        found: u16,
        /// Highest version this build understands.
        supported: u16,
    },
    /// Both header copies are damaged.
    #[error("both header copies of the vault are damaged; restore from a backup")]
    HeaderDamaged,
    /// No key slot accepted the passphrase or key.
    #[error("wrong passphrase or key: no key slot of this vault accepts it")]
    WrongKey,
    /// Another process or handle already holds the vault open for writing.
    #[error(
        "the vault {0} is already open for writing by another process or handle (one writer per file); open it read-only or close the other writer"
    )]
    Locked(PathBuf),
    /// The file is damaged before the last valid commit; read-write open is refused.
    #[error(
        "the vault is corrupt at byte offset {offset}: {reason}; valid data follows the damage, so it cannot be repaired by truncation (open read-only to read the intact part, or restore a backup)"
    )]
    Corrupt {
        /// Byte offset of the first damaged frame.
        offset: u64,
        /// What was wrong there.
        reason: String,
    },
    /// A stored record failed its integrity check when read back.
    #[error("integrity check failed for {what} at offset {offset}: the data was altered or damaged")]
    Integrity {
        /// What was being read.
        what: &'static str,
        /// Byte offset of the frame.
        offset: u64,
    },
    /// An earlier write or fsync failed; the vault refuses writes until reopened.
    #[error(
        "an earlier write or fsync failed, so this vault handle refuses further writes; close and reopen it (data committed before the failure is safe)"
    )]
    WritesLatched,
    /// The vault was opened read-only.
    #[error("the vault is open read-only; open it read-write to change it")]
    ReadOnly,
    /// No document with that id (or that version) exists.
    #[error("no document {id}{}", .version.map(|v| format!(" version {v}")).unwrap_or_default())]
    NotFound {
        /// The document id.
        id: String,
        /// The version asked for, if any.
        version: Option<u32>,
    },
    /// The patient's key was destroyed (crypto-shredded): the records are unreadable.
    #[error("the records of this patient were erased (their key was destroyed)")]
    Erased,
    /// A document or value did not have the expected shape.
    #[error("invalid document: {0}")]
    InvalidDocument(String),
    /// JSON input could not be parsed.
    #[error("invalid JSON at line {line}, column {column}: {message}")]
    Json {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What went wrong (no input text is quoted).
        message: String,
    },
    /// A size limit was exceeded.
    #[error("{what} is too large: {size} bytes (limit {limit})")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The access policy denied the operation.
    #[error("access denied: {0}")]
    Denied(String),
    /// The session has expired (automatic logoff) and must be reopened.
    #[error("the session expired after {idle_secs} s idle (automatic logoff); open a new session")]
    SessionExpired {
        /// The idle limit that was exceeded.
        idle_secs: u64,
    },
    /// A policy file or policy value was invalid.
    #[error("invalid policy: {0}")]
    InvalidPolicy(String),
    /// A query could not be parsed.
    #[error("query syntax error at position {position}: expected {expected}")]
    QuerySyntax {
        /// 0-based character position.
        position: usize,
        /// What the parser expected there.
        expected: String,
    },
    /// A query was well-formed but cannot run.
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// A key-slot operation was not possible.
    #[error("key slot error: {0}")]
    KeySlot(String),
    /// An argument was invalid.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The audit trail failed verification.
    #[error("audit trail verification failed at entry {index}: {reason}")]
    AuditBroken {
        /// Index of the first bad entry.
        index: u64,
        /// What was wrong.
        reason: String,
    },
}

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// Builds a [`Error::Json`] from a serde_json error without quoting input.
    pub(crate) fn json(e: &serde_json::Error) -> Self {
        let message = match e.classify() {
            serde_json::error::Category::Io => "read error".to_string(),
            serde_json::error::Category::Syntax => "syntax error".to_string(),
            serde_json::error::Category::Eof => "unexpected end of input".to_string(),
            serde_json::error::Category::Data => "unexpected value".to_string(),
        };
        Error::Json { line: e.line(), column: e.column(), message }
    }
}
