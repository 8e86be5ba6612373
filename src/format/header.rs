//! The vault file header and its key slots.
//!
//! The header occupies the first [`HEADER_REGION`] bytes of the data file and is kept
//! twice ([`HEADER_SIZE`] bytes each, at offsets 0 and 4096). Each copy carries a
//! generation counter and a BLAKE3 checksum; open uses the valid copy with the higher
//! generation, so one damaged copy (or a torn header rewrite) never loses the vault.
//! Rewrites (key-slot changes) write copy A, fsync, copy B, fsync.

use rand::Rng;

use super::{le_u16, le_u32, le_u64};
use crate::crypto::{KdfParams, SecretKey, aead};
use crate::error::{Error, Result};

/// File magic.
pub const MAGIC: &[u8; 8] = b"CHARTVLT";
/// Current format version.
pub const FORMAT_VERSION: u16 = 3;
/// Size of one header copy.
pub const HEADER_SIZE: usize = 4096;
/// Bytes reserved for both header copies; frames start here.
pub const HEADER_REGION: u64 = 2 * HEADER_SIZE as u64;
/// Maximum number of key slots.
pub const MAX_SLOTS: usize = 8;
/// Size of one key slot record.
pub const SLOT_SIZE: usize = 128;
const SLOTS_AT: usize = 72;
const CHECKSUM_AT: usize = HEADER_SIZE - 32;

/// How a key slot is unlocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotKind {
    /// A passphrase stretched with Argon2id.
    Passphrase(KdfParams),
    /// A raw 32-byte key from a keystore, HSM or KMS.
    RawKey,
}

/// One key slot: the root key wrapped under a key-encryption key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySlot {
    /// How the slot is unlocked.
    pub kind: SlotKind,
    /// Random salt for the KEK derivation.
    pub salt: [u8; 16],
    /// `nonce || wrapped root key || tag` (72 bytes).
    pub wrapped: Vec<u8>,
}

/// The secret that unlocks a key slot.
pub enum Unlock<'a> {
    /// A passphrase.
    Passphrase(&'a [u8]),
    /// A raw 32-byte key.
    RawKey(&'a SecretKey),
}

impl KeySlot {
    fn params_bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        match self.kind {
            SlotKind::Passphrase(p) => {
                b[0] = 1;
                b[4..8].copy_from_slice(&p.m_kib.to_le_bytes());
                b[8..12].copy_from_slice(&p.t.to_le_bytes());
                b[12..16].copy_from_slice(&p.p.to_le_bytes());
            }
            SlotKind::RawKey => b[0] = 2,
        }
        b
    }

    fn aad(&self, vault_id: &[u8; 16]) -> Vec<u8> {
        aead::aad("chartvault slot v1", &[vault_id, &self.params_bytes(), &self.salt])
    }

    fn kek(kind: SlotKind, secret: &Unlock<'_>, salt: &[u8; 16]) -> Option<Result<SecretKey>> {
        match (kind, secret) {
            (SlotKind::Passphrase(p), Unlock::Passphrase(pw)) => Some(p.derive(pw, salt)),
            (SlotKind::RawKey, Unlock::RawKey(k)) => Some(Ok(k.derive("chartvault 2026 raw key slot v1", &[salt]))),
            _ => None,
        }
    }

    /// Wraps `root` for a new slot unlocked by `secret`.
    pub fn wrap(root: &SecretKey, vault_id: &[u8; 16], secret: &Unlock<'_>, kdf: KdfParams) -> Result<Self> {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let kind = match secret {
            Unlock::Passphrase(_) => SlotKind::Passphrase(kdf),
            Unlock::RawKey(_) => SlotKind::RawKey,
        };
        let kek = Self::kek(kind, secret, &salt).ok_or(Error::WrongKey)??;
        let mut slot = KeySlot { kind, salt, wrapped: Vec::new() };
        let aad = slot.aad(vault_id);
        aead::seal(&kek, &aad, root.expose(), &mut slot.wrapped);
        Ok(slot)
    }

    /// Tries to unwrap the root key; `None` if this slot does not accept `secret`.
    pub fn unwrap_root(&self, vault_id: &[u8; 16], secret: &Unlock<'_>) -> Result<Option<SecretKey>> {
        let Some(kek) = Self::kek(self.kind, secret, &self.salt) else {
            return Ok(None);
        };
        let kek = kek?;
        match aead::open(&kek, &self.aad(vault_id), &self.wrapped) {
            Ok(pt) => Ok(SecretKey::from_slice(&pt)),
            Err(_) => Ok(None),
        }
    }

    fn encode(&self, out: &mut [u8]) {
        out[..16].copy_from_slice(&self.params_bytes());
        out[16..32].copy_from_slice(&self.salt);
        out[32..32 + self.wrapped.len()].copy_from_slice(&self.wrapped);
    }

    fn decode(b: &[u8]) -> Option<Self> {
        let kind = match b[0] {
            0 => return None,
            1 => SlotKind::Passphrase(KdfParams { m_kib: le_u32(b, 4), t: le_u32(b, 8), p: le_u32(b, 12) }),
            2 => SlotKind::RawKey,
            _ => return None,
        };
        let mut salt = [0u8; 16];
        salt.copy_from_slice(&b[16..32]);
        Some(KeySlot { kind, salt, wrapped: b[32..32 + aead::sealed_len(32)].to_vec() })
    }
}

/// The decoded header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Random vault id, bound into every AAD.
    pub vault_id: [u8; 16],
    /// Incremented on every header rewrite.
    pub generation: u64,
    /// Creation time, Unix seconds.
    pub created: u64,
    /// Offset of the newest index checkpoint's commit, or 0 for none (a hint, verified before use).
    pub checkpoint_offset: u64,
    /// Key slots; `None` marks an empty slot.
    pub slots: [Option<KeySlot>; MAX_SLOTS],
}

impl Header {
    /// A new header with a random vault id and no slots.
    pub fn new(created: u64) -> Self {
        let mut vault_id = [0u8; 16];
        rand::rng().fill_bytes(&mut vault_id);
        Header { vault_id, generation: 1, created, checkpoint_offset: 0, slots: Default::default() }
    }

    /// Encodes one header copy.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_SIZE];
        b[..8].copy_from_slice(MAGIC);
        b[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[10..12].copy_from_slice(&(HEADER_SIZE as u16).to_le_bytes());
        b[16..32].copy_from_slice(&self.vault_id);
        b[32..40].copy_from_slice(&self.generation.to_le_bytes());
        b[40..48].copy_from_slice(&self.created.to_le_bytes());
        b[48..56].copy_from_slice(&self.checkpoint_offset.to_le_bytes());
        b[64] = MAX_SLOTS as u8;
        for (i, s) in self.slots.iter().enumerate() {
            if let Some(s) = s {
                let at = SLOTS_AT + i * SLOT_SIZE;
                s.encode(&mut b[at..at + SLOT_SIZE]);
            }
        }
        let sum = blake3::hash(&b[..CHECKSUM_AT]);
        b[CHECKSUM_AT..].copy_from_slice(sum.as_bytes());
        b
    }

    /// Decodes one header copy, checking magic, version and checksum.
    pub fn decode(b: &[u8]) -> std::result::Result<Self, HeaderError> {
        if b.len() < HEADER_SIZE {
            return Err(HeaderError::Short);
        }
        if &b[..8] != MAGIC {
            return Err(HeaderError::Magic);
        }
        let sum = blake3::hash(&b[..CHECKSUM_AT]);
        if !crate::crypto::keys::ct_eq(sum.as_bytes(), &b[CHECKSUM_AT..HEADER_SIZE]) {
            return Err(HeaderError::Checksum);
        }
        let version = le_u16(b, 8);
        if version != FORMAT_VERSION {
            return Err(HeaderError::Version(version));
        }
        if le_u16(b, 10) as usize != HEADER_SIZE || b[64] as usize != MAX_SLOTS {
            return Err(HeaderError::Checksum);
        }
        let mut vault_id = [0u8; 16];
        vault_id.copy_from_slice(&b[16..32]);
        let mut slots: [Option<KeySlot>; MAX_SLOTS] = Default::default();
        for (i, s) in slots.iter_mut().enumerate() {
            let at = SLOTS_AT + i * SLOT_SIZE;
            *s = KeySlot::decode(&b[at..at + SLOT_SIZE]);
        }
        Ok(Header {
            vault_id,
            generation: le_u64(b, 32),
            created: le_u64(b, 40),
            checkpoint_offset: le_u64(b, 48),
            slots,
        })
    }

    /// Picks the newest valid copy of two, reporting whether one copy was damaged.
    pub fn choose(a: &[u8], b: &[u8]) -> std::result::Result<(Self, bool), HeaderError> {
        match (Header::decode(a), Header::decode(b)) {
            (Ok(x), Ok(y)) => Ok(if y.generation > x.generation { (y, false) } else { (x, false) }),
            (Ok(x), Err(_)) | (Err(_), Ok(x)) => Ok((x, true)),
            (Err(e), Err(_)) => Err(e),
        }
    }

    /// Unwraps the root key with the first slot that accepts `secret`.
    pub fn unlock(&self, secret: &Unlock<'_>) -> Result<(usize, SecretKey)> {
        for (i, s) in self.slots.iter().enumerate() {
            if let Some(s) = s
                && let Some(k) = s.unwrap_root(&self.vault_id, secret)?
            {
                return Ok((i, k));
            }
        }
        Err(Error::WrongKey)
    }
}

/// Why a header copy was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// Shorter than a header.
    Short,
    /// Not the chartvault magic.
    Magic,
    /// Checksum mismatch (damaged copy).
    Checksum,
    /// Unsupported format version.
    Version(u16),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_slots() {
        let root = SecretKey::random();
        let mut h = Header::new(1);
        let raw = SecretKey::random();
        h.slots[0] =
            Some(KeySlot::wrap(&root, &h.vault_id, &Unlock::Passphrase(b"pw"), KdfParams::INSECURE_FOR_TESTS).unwrap());
        h.slots[3] = Some(KeySlot::wrap(&root, &h.vault_id, &Unlock::RawKey(&raw), KdfParams::DEFAULT).unwrap());
        let enc = h.encode();
        let d = Header::decode(&enc).unwrap();
        assert_eq!(d, h);
        assert_eq!(d.unlock(&Unlock::Passphrase(b"pw")).unwrap().1, root);
        assert_eq!(d.unlock(&Unlock::RawKey(&raw)).unwrap(), (3, root.clone()));
        assert!(matches!(d.unlock(&Unlock::Passphrase(b"nope")), Err(Error::WrongKey)));
        let mut bad = enc.clone();
        bad[100] ^= 1;
        assert_eq!(Header::decode(&bad), Err(HeaderError::Checksum));
        let (chosen, damaged) = Header::choose(&bad, &enc).unwrap();
        assert!(damaged);
        assert_eq!(chosen, h);
    }
}
