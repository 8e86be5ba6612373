//! Cryptographic primitives: AEAD sealing with associated data, the Argon2id
//! passphrase KDF, and the key hierarchy built from one random root key.
//!
//! Everything secret lives in zeroizing types; nothing here logs or formats a key.

pub mod aead;
mod hchacha;
pub mod kdf;
pub mod keys;
mod xchacha_poly;

pub use aead::{NONCE_LEN, SEAL_OVERHEAD, TAG_LEN};
pub use kdf::KdfParams;
pub use keys::{KeyHierarchy, SecretKey};
