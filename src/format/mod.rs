//! The on-disk format: the file header with its key slots, the frame codec of the
//! log, the keyring file, and the codec of document bodies inside the AEAD.
//!
//! Byte layouts are specified in `docs/FORMAT.md`; keep the two in step.

pub mod body;
pub mod envelope;
pub mod frame;
pub(crate) mod group_reader;
pub mod header;
pub mod keyring;
pub mod names;
pub(crate) mod wire;

/// Reads a little-endian u16 at `at` (caller guarantees bounds).
pub(crate) fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
/// Reads a little-endian u32 at `at` (caller guarantees bounds).
pub(crate) fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}
/// Reads a little-endian u64 at `at` (caller guarantees bounds).
pub(crate) fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}
