//! Argon2id passphrase key derivation, with its parameters stored in the vault header.

use argon2::{Algorithm, Argon2, Params, Version};

use super::SecretKey;
use crate::error::{Error, Result};

/// Argon2id cost parameters. Stored per key slot, so they can differ between slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory cost in KiB.
    pub m_kib: u32,
    /// Number of passes.
    pub t: u32,
    /// Degree of parallelism.
    pub p: u32,
}

impl KdfParams {
    /// The default: 64 MiB, 3 passes, 1 lane (about 0.1-0.3 s on a laptop core).
    pub const DEFAULT: KdfParams = KdfParams { m_kib: 64 * 1024, t: 3, p: 1 };
    /// The lighter profile for phones and other memory-constrained devices:
    /// 19 MiB, 2 passes, 1 lane (OWASP's minimum recommendation for Argon2id).
    pub const MOBILE: KdfParams = KdfParams { m_kib: 19 * 1024, t: 2, p: 1 };
    /// Minimal cost, **for tests only**: it offers little protection against guessing.
    pub const INSECURE_FOR_TESTS: KdfParams = KdfParams { m_kib: 64, t: 1, p: 1 };

    /// Checks the parameters are within what Argon2 accepts and a header may hold.
    pub fn validate(&self) -> Result<Params> {
        // The parameters come from the (checksummed, not yet authenticated) header, so
        // they are capped: a crafted file must not make an unlock take minutes or GiBs.
        if self.m_kib > 1024 * 1024 || self.t > 16 || self.p > 8 {
            return Err(Error::KeySlot(
                "Argon2 parameters exceed the supported maximum (1 GiB, 16 passes, 8 lanes)".into(),
            ));
        }
        Params::new(self.m_kib, self.t, self.p, Some(32))
            .map_err(|e| Error::KeySlot(format!("invalid Argon2 parameters: {e}")))
    }

    /// Derives a 32-byte key from `passphrase` and `salt`.
    pub fn derive(&self, passphrase: &[u8], salt: &[u8; 16]) -> Result<SecretKey> {
        let params = self.validate()?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut out = zeroize::Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(passphrase, salt, &mut out[..])
            .map_err(|e| Error::KeySlot(format!("Argon2 failed: {e}")))?;
        Ok(SecretKey::from_bytes(*out))
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        KdfParams::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_salted() {
        let p = KdfParams::INSECURE_FOR_TESTS;
        let a = p.derive(b"pw", &[1; 16]).unwrap();
        assert_eq!(a, p.derive(b"pw", &[1; 16]).unwrap());
        assert_ne!(a, p.derive(b"pw", &[2; 16]).unwrap());
        assert_ne!(a, p.derive(b"pX", &[1; 16]).unwrap());
    }

    #[test]
    fn rejects_absurd_params() {
        assert!(KdfParams { m_kib: 1, t: 1, p: 1 }.derive(b"x", &[0; 16]).is_err());
        assert!(KdfParams { m_kib: 64, t: 1000, p: 1 }.validate().is_err());
    }
}
