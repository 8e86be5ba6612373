//! Key types and the key hierarchy.
//!
//! ```text
//! key slot (passphrase via Argon2id, or raw 32-byte key)
//!   └─ unwraps ─> root key (random, 32 bytes)
//!        ├─ meta key        seals document envelopes (kind, times, patient slot, labels)
//!        ├─ commit MAC key  authenticates commit frames
//!        ├─ audit key       seals audit entries and the disclosure ledger
//!        ├─ keyring key     seals patient keys in the keyring file
//!        ├─ system key      seals policy versions and patient rules
//!        ├─ index key       seals the global part of index checkpoints
//!        └─ label key (label, generation)
//! patient key (random per patient, in the keyring)
//! group key = derive(label keys of the group's labels, patient key)
//! ```
//! Derivation is BLAKE3 in its key-derivation mode with a distinct context string per
//! purpose, so no two purposes ever share a key.

use std::fmt;

use rand::Rng;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A 256-bit secret key, wiped from memory when dropped and never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    /// Length of a key in bytes.
    pub const LEN: usize = 32;

    /// Wraps raw key bytes (for example a key from Keychain or Android Keystore).
    ///
    /// ```
    /// let key = chartvault::SecretKey::from_bytes([7u8; 32]);
    /// assert_eq!(format!("{key:?}"), "SecretKey(<redacted>)");
    /// ```
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SecretKey(bytes)
    }

    /// Builds a key from a slice, which must be exactly 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let arr: [u8; 32] = bytes.try_into().ok()?;
        Some(SecretKey(arr))
    }

    /// A fresh key from the thread-local CSPRNG (ChaCha, seeded from the OS).
    pub fn random() -> Self {
        let mut k = [0u8; 32];
        rand::rng().fill_bytes(&mut k);
        SecretKey(k)
    }

    /// The key bytes. Crate-internal: keys leave the library only as wrapped ciphertext.
    pub(crate) fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// Derives a sub-key for `context`, binding each of `parts` (length-prefixed).
    pub fn derive(&self, context: &str, parts: &[&[u8]]) -> SecretKey {
        let mut h = blake3::Hasher::new_derive_key(context);
        h.update(&self.0);
        for p in parts {
            h.update(&(p.len() as u64).to_le_bytes());
            h.update(p);
        }
        let mut out = [0u8; 32];
        h.finalize_xof().fill(&mut out);
        SecretKey(out)
    }

    /// A keyed BLAKE3 MAC of `data` under this key.
    pub fn mac(&self, data: &[&[u8]]) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        for d in data {
            h.update(d);
        }
        *h.finalize().as_bytes()
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl PartialEq for SecretKey {
    /// Constant-time comparison.
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}
impl Eq for SecretKey {}

/// Constant-time equality of two byte strings (for MACs and hashes).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// The keys derived from a vault's root key.
#[derive(Clone)]
pub struct KeyHierarchy {
    root: SecretKey,
    vault_id: [u8; 16],
    /// Seals document envelopes.
    pub meta: SecretKey,
    /// Authenticates commit frames.
    pub commit_mac: SecretKey,
    /// Seals audit entries and disclosure-ledger entries.
    pub audit: SecretKey,
    /// Seals patient keys in the keyring.
    pub keyring: SecretKey,
    /// Seals policy versions and patient rules.
    pub system: SecretKey,
    /// Seals the global part of index checkpoints.
    pub index: SecretKey,
}

impl fmt::Debug for KeyHierarchy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHierarchy(<redacted>)")
    }
}

impl KeyHierarchy {
    /// Derives every purpose key from the root key of the vault `vault_id`.
    pub fn new(root: SecretKey, vault_id: [u8; 16]) -> Self {
        let d = |ctx: &str| root.derive(ctx, &[&vault_id]);
        KeyHierarchy {
            meta: d("chartvault 2026 meta key v1"),
            commit_mac: d("chartvault 2026 commit mac key v1"),
            audit: d("chartvault 2026 audit key v1"),
            keyring: d("chartvault 2026 keyring key v1"),
            system: d("chartvault 2026 system key v1"),
            index: d("chartvault 2026 index checkpoint key v1"),
            root,
            vault_id,
        }
    }

    /// The root key (for wrapping into a new key slot).
    pub(crate) fn root(&self) -> &SecretKey {
        &self.root
    }

    /// The vault id these keys belong to.
    pub fn vault_id(&self) -> [u8; 16] {
        self.vault_id
    }

    /// The key of sensitivity label `label` at key generation `generation`.
    pub fn label_key(&self, label: &str, generation: u32) -> SecretKey {
        self.root.derive("chartvault 2026 label key v1", &[&self.vault_id, label.as_bytes(), &generation.to_le_bytes()])
    }
}

/// Pushes onto a vector holding secrets without leaving a copy behind. A plain `push`
/// that must grow the vector moves the elements to a new buffer and frees the old one
/// with the secrets still in it; here the old buffer is wiped before it is freed.
pub(crate) fn push_wiping<T>(v: &mut Vec<T>, item: T) {
    if v.len() == v.capacity() {
        let mut bigger = Vec::with_capacity((v.capacity() * 2).max(4));
        bigger.append(v);
        // Every element has moved out, so the whole old buffer is spare capacity.
        let mut old = std::mem::replace(v, bigger);
        old.spare_capacity_mut().zeroize();
    }
    v.push(item);
}

/// The key that seals one label group of one patient: it needs every label key of the
/// group *and* the patient key, so destroying the patient key shreds the group.
pub fn group_key(label_keys: &[SecretKey], patient_key: &SecretKey) -> SecretKey {
    let mut parts: Vec<&[u8]> = label_keys.iter().map(|k| &k.expose()[..]).collect();
    parts.push(&patient_key.expose()[..]);
    patient_key.derive("chartvault 2026 group key v1", &parts)
}

/// The key that seals a patient's index terms and checkpoint entries.
pub fn patient_index_key(patient_key: &SecretKey) -> SecretKey {
    patient_key.derive("chartvault 2026 patient index key v1", &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivations_differ_by_purpose_and_label() {
        let h = KeyHierarchy::new(SecretKey::from_bytes([1; 32]), [2; 16]);
        assert_ne!(h.meta, h.audit);
        assert_ne!(h.label_key("normal", 1), h.label_key("normal", 2));
        assert_ne!(h.label_key("normal", 1), h.label_key("restricted", 1));
        let h2 = KeyHierarchy::new(SecretKey::from_bytes([1; 32]), [3; 16]);
        assert_ne!(h.meta, h2.meta);
    }

    #[test]
    fn push_wiping_keeps_order_and_grows() {
        let mut v = Vec::new();
        for i in 0..20u8 {
            push_wiping(&mut v, SecretKey::from_bytes([i; 32]));
        }
        assert_eq!(v.len(), 20);
        assert!(v.iter().enumerate().all(|(i, k)| *k == SecretKey::from_bytes([i as u8; 32])));
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let h = KeyHierarchy::new(SecretKey::from_bytes([0xAB; 32]), [2; 16]);
        let s = format!("{h:?} {:?}", h.meta);
        assert!(!s.contains("171") && !s.to_lowercase().contains("ab, "));
    }
}
