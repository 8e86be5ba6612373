//! # chartvault
//!
//! An embeddable, encrypted record store for patient health information.
//!
//! Patient documents are kept in one append-only file with every field sealed
//! (XChaCha20-Poly1305) under a key that needs both the field's sensitivity-label key
//! and the patient's own key. Every access goes through a [`Session`] that names who
//! is asking and why; a policy decides which labels the session may see, and every
//! read, write and denial leaves an entry in a tamper-evident audit trail.
//!
//! See the README for a tour, `docs/FORMAT.md` for the file format and `SECURITY.md`
//! for the threat model.
#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod crypto;
pub mod error;
pub mod format;
pub mod log;
pub mod model;
pub mod store;
mod util;

pub use crypto::{KdfParams, SecretKey};
pub use error::{Error, Result};
pub use model::{
    AttachmentRef, Coding, Date, DateTime, Decimal, Document, DocumentId, Field, Kind, Label, NewDocument, Schema,
    Value,
};
pub mod access;
pub mod audit;
pub mod vault;

pub use vault::{DisclosureRequest, Session, SessionBatch, Vault, VaultKey, VaultOptions};
pub mod query;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
