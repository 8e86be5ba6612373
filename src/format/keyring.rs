//! The keyring file codec: the patient keys, one fixed-size record per patient.
//!
//! ```text
//! file header (64 bytes)
//!   0  8  magic "CVKEYRNG"
//!   8  2  version (1)
//!   10 2  reserved (0)
//!   12 4  record size (256)
//!   16 16 vault id
//!   32 32 BLAKE3 of bytes 0..32
//! record i at 64 + 256*i
//!   0  1  state: 1 live, 2 destroyed
//!   1  7  reserved (0)
//!   8  248 sealed(keyring key, AAD = aad("chartvault keyring record v1", [vault id, u32le(i)]),
//!              patient key (32) || id length u16 || patient id || zero padding to 208)
//! ```
//! Records are fixed-size so one patient's key can be destroyed by overwriting its
//! record in place; the padding hides the length of the patient identifier.

use super::le_u16;
use crate::crypto::{SecretKey, aead};

/// Keyring file magic.
pub const KEYRING_MAGIC: &[u8; 8] = b"CVKEYRNG";
/// Size of the keyring file header.
pub const KEYRING_HEADER: usize = 64;
/// Size of one record.
pub const RECORD_SIZE: usize = 256;
const PLAIN: usize = RECORD_SIZE - 8 - aead::SEAL_OVERHEAD;
/// Longest patient identifier a record holds.
pub const MAX_PATIENT_ID: usize = PLAIN - 34;

/// Record state byte: live.
pub const STATE_LIVE: u8 = 1;
/// Record state byte: destroyed (crypto-shredded).
pub const STATE_DESTROYED: u8 = 2;

/// Encodes the keyring file header.
pub fn encode_header(vault_id: &[u8; 16]) -> [u8; KEYRING_HEADER] {
    let mut b = [0u8; KEYRING_HEADER];
    b[..8].copy_from_slice(KEYRING_MAGIC);
    b[8..10].copy_from_slice(&1u16.to_le_bytes());
    b[12..16].copy_from_slice(&(RECORD_SIZE as u32).to_le_bytes());
    b[16..32].copy_from_slice(vault_id);
    let h = blake3::hash(&b[..32]);
    b[32..].copy_from_slice(h.as_bytes());
    b
}

/// Checks the keyring header belongs to `vault_id`.
pub fn check_header(b: &[u8], vault_id: &[u8; 16]) -> bool {
    b.len() >= KEYRING_HEADER
        && &b[..8] == KEYRING_MAGIC
        && le_u16(b, 8) == 1
        && super::le_u32(b, 12) as usize == RECORD_SIZE
        && &b[16..32] == vault_id
        && blake3::hash(&b[..32]).as_bytes() == &b[32..64]
}

fn aad(vault_id: &[u8; 16], index: u32) -> Vec<u8> {
    aead::aad("chartvault keyring record v1", &[vault_id, &index.to_le_bytes()])
}

/// Encodes a live record.
pub fn encode_record(
    keyring_key: &SecretKey,
    vault_id: &[u8; 16],
    index: u32,
    patient: &str,
    key: &SecretKey,
) -> Vec<u8> {
    debug_assert!(patient.len() <= MAX_PATIENT_ID);
    let mut plain = zeroize::Zeroizing::new(vec![0u8; PLAIN]);
    plain[..32].copy_from_slice(key.expose());
    plain[32..34].copy_from_slice(&(patient.len() as u16).to_le_bytes());
    plain[34..34 + patient.len()].copy_from_slice(patient.as_bytes());
    let mut out = vec![STATE_LIVE, 0, 0, 0, 0, 0, 0, 0];
    aead::seal(keyring_key, &aad(vault_id, index), &plain, &mut out);
    debug_assert_eq!(out.len(), RECORD_SIZE);
    out
}

/// A destroyed record: state byte 2 and random bytes where the sealed key was.
pub fn destroyed_record() -> Vec<u8> {
    use rand::Rng;
    let mut out = vec![0u8; RECORD_SIZE];
    rand::rng().fill_bytes(&mut out[8..]);
    out[0] = STATE_DESTROYED;
    out
}

/// What a record holds.
pub enum Record {
    /// A live patient key.
    Live {
        /// The patient's identifier.
        patient: String,
        /// The patient's key.
        key: SecretKey,
    },
    /// A destroyed key.
    Destroyed,
}

/// Decodes record `index`; `None` if it is damaged or does not belong to this vault.
pub fn decode_record(keyring_key: &SecretKey, vault_id: &[u8; 16], index: u32, b: &[u8]) -> Option<Record> {
    if b.len() != RECORD_SIZE || b[1..8] != [0; 7] {
        return None;
    }
    match b[0] {
        STATE_DESTROYED => Some(Record::Destroyed),
        STATE_LIVE => {
            let plain = aead::open(keyring_key, &aad(vault_id, index), &b[8..]).ok()?;
            let len = le_u16(&plain, 32) as usize;
            if len > MAX_PATIENT_ID {
                return None;
            }
            let patient = std::str::from_utf8(&plain[34..34 + len]).ok()?.to_string();
            Some(Record::Live { patient, key: SecretKey::from_slice(&plain[..32])? })
        }
        _ => None,
    }
}
