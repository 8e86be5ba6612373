//! XChaCha20-Poly1305 sealing with associated data and random 192-bit nonces.
//!
//! A sealed blob is `nonce (24) || ciphertext || tag (16)`. Nonces come from the
//! thread-local ChaCha CSPRNG of the `rand` crate, seeded from the operating system,
//! which costs a few nanoseconds instead of a system call per nonce. With 192-bit
//! random nonces the collision probability stays negligible for far more messages
//! than a vault will ever seal under one key.
//!
//! The cipher is composed from the RustCrypto `chacha20` and `poly1305` primitives
//! (`xchacha_poly`, private), so the keystream is generated four blocks at a time;
//! its output is byte for byte the `chacha20poly1305` crate's, which the tests check.

use rand::Rng;
use zeroize::Zeroizing;

use super::SecretKey;
use super::xchacha_poly;

/// Nonce length in bytes.
pub const NONCE_LEN: usize = 24;
/// Authentication tag length in bytes.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed blob adds to its plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// The AEAD rejected a ciphertext: wrong key, wrong AAD, or altered bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenError;

/// Seals `plaintext` under `key`, binding `aad`, appending `nonce || ct || tag` to `out`.
///
/// ```
/// use chartvault::crypto::{aead, SecretKey};
/// let key = SecretKey::random();
/// let mut sealed = Vec::new();
/// aead::seal(&key, b"context", b"secret", &mut sealed);
/// assert_eq!(&aead::open(&key, b"context", &sealed).unwrap()[..], b"secret");
/// assert!(aead::open(&key, b"other context", &sealed).is_err());
/// ```
pub fn seal(key: &SecretKey, aad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) {
    let nonce = random_nonce();
    out.extend_from_slice(&nonce);
    seal_detached_nonce(key, &nonce, aad, plaintext, out);
}

/// A fresh random nonce from the thread-local CSPRNG.
pub fn random_nonce() -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    nonce
}

/// Seals `plaintext` under `key` with a nonce the caller supplies, appending
/// `ct || tag` (no nonce) to `out`. The caller stores the nonce and MUST never use the
/// same (key, nonce) pair twice: record frames derive one nonce per part from a random
/// record nonce (docs/FORMAT.md §8.1).
///
/// ```
/// use chartvault::crypto::{aead, SecretKey};
/// let (key, nonce) = (SecretKey::random(), aead::random_nonce());
/// let mut sealed = Vec::new();
/// aead::seal_detached_nonce(&key, &nonce, b"ctx", b"secret", &mut sealed);
/// assert_eq!(aead::open_detached_nonce(&key, &nonce, b"ctx", &mut sealed).unwrap(), b"secret");
/// ```
pub fn seal_detached_nonce(key: &SecretKey, nonce: &[u8; NONCE_LEN], aad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(plaintext);
    let tag = xchacha_poly::seal_in_place(key.expose(), nonce, aad, &mut out[start..])
        .expect("XChaCha20-Poly1305 accepts messages up to 256 GiB; callers bound sizes far lower");
    out.extend_from_slice(&tag);
}

/// Opens `ct || tag` made by [`seal_detached_nonce`] in place, with the nonce it was
/// sealed with; on success the plaintext overwrites the ciphertext and is returned as
/// a sub-slice. On failure the buffer holds unauthenticated bytes and must not be used.
pub fn open_detached_nonce<'b>(
    key: &SecretKey,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    sealed: &'b mut [u8],
) -> Result<&'b [u8], OpenError> {
    let split = sealed.len().checked_sub(TAG_LEN).ok_or(OpenError)?;
    let (ct, tag) = sealed.split_at_mut(split);
    let tag: [u8; TAG_LEN] = (&*tag).try_into().map_err(|_| OpenError)?;
    xchacha_poly::open_in_place(key.expose(), nonce, aad, ct, &tag).map_err(|_| OpenError)?;
    Ok(&sealed[..split])
}

/// Length of the sealed form of a plaintext of `len` bytes.
pub const fn sealed_len(len: usize) -> usize {
    len + SEAL_OVERHEAD
}

/// Length of the [`seal_detached_nonce`] form (`ct || tag`, no nonce) of a plaintext
/// of `len` bytes.
pub const fn sealed_len_detached(len: usize) -> usize {
    len + TAG_LEN
}

/// Opens a blob made by [`seal`], returning the plaintext in a zeroizing buffer.
pub fn open(key: &SecretKey, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    let mut buf = Zeroizing::new(sealed.to_vec());
    let len = open_in_place(key, aad, &mut buf)?.len();
    // Shift the plaintext to the front within the same allocation (no copy is freed).
    buf.copy_within(NONCE_LEN..NONCE_LEN + len, 0);
    buf.truncate(len);
    Ok(buf)
}

/// Opens a blob made by [`seal`] in place: `sealed` is `nonce || ct || tag`, and on
/// success the plaintext overwrites the ciphertext and is returned as a sub-slice. On
/// failure the buffer holds unauthenticated bytes and must not be used. The caller owns
/// the buffer, so it decides how it is wiped (a `Zeroizing` buffer, typically).
pub fn open_in_place<'b>(key: &SecretKey, aad: &[u8], sealed: &'b mut [u8]) -> Result<&'b [u8], OpenError> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err(OpenError);
    }
    let (nonce, rest) = sealed.split_at_mut(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = (&*nonce).try_into().map_err(|_| OpenError)?;
    let len = open_detached_nonce(key, &nonce, aad, rest)?.len();
    Ok(&sealed[NONCE_LEN..NONCE_LEN + len])
}

/// Builds an AAD from a domain string and length-prefixed parts.
pub fn aad(domain: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::with_capacity(domain.len() + 1 + parts.iter().map(|p| 4 + p.len()).sum::<usize>());
    v.extend_from_slice(domain.as_bytes());
    v.push(0);
    for p in parts {
        v.extend_from_slice(&(p.len() as u32).to_le_bytes());
        v.extend_from_slice(p);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let k = SecretKey::random();
        let mut s = Vec::new();
        seal(&k, b"a", b"hello world", &mut s);
        assert_eq!(s.len(), sealed_len(11));
        assert_eq!(&open(&k, b"a", &s).unwrap()[..], b"hello world");
        for i in 0..s.len() {
            let mut t = s.clone();
            t[i] ^= 1;
            assert!(open(&k, b"a", &t).is_err(), "flip at {i} accepted");
        }
        assert!(open(&SecretKey::random(), b"a", &s).is_err());
        assert!(open(&k, b"a", &s[..10]).is_err());
        let mut inplace = s.clone();
        assert_eq!(open_in_place(&k, b"a", &mut inplace).unwrap(), b"hello world");
        let mut bad = s.clone();
        bad[30] ^= 1;
        assert!(open_in_place(&k, b"a", &mut bad).is_err());
        assert!(open_in_place(&k, b"a", &mut [0u8; 39]).is_err());
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// The XChaCha20-Poly1305 test vector of draft-irtf-cfrg-xchacha-03, A.3.1: checks
    /// the cipher as built (including the vendored, AVX2-inlined poly1305 backend).
    #[test]
    fn xchacha20poly1305_draft_test_vector() {
        use chacha20poly1305::aead::{AeadInOut, KeyInit};
        use chacha20poly1305::{XChaCha20Poly1305, XNonce};
        let pt = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let aad = unhex("50515253c0c1c2c3c4c5c6c7");
        let key: [u8; 32] =
            unhex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f").try_into().unwrap();
        let nonce: [u8; 24] = unhex("404142434445464748494a4b4c4d4e4f5051525354555657").try_into().unwrap();
        let ct = unhex(concat!(
            "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb",
            "731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452",
            "2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9",
            "21f9664c97637da9768812f615c68b13b52e"
        ));
        let tag = unhex("c0875924c1c7987947deafd8780acf49");
        let mut buf = pt.to_vec();
        let got = XChaCha20Poly1305::new((&key).into())
            .encrypt_inout_detached(&XNonce::from(nonce), &aad, (&mut buf[..]).into())
            .unwrap();
        assert_eq!(buf, ct);
        assert_eq!(&got[..], &tag[..]);
        // This module's own composition seals to the same bytes.
        let mut ours = Vec::new();
        seal_detached_nonce(&SecretKey::from_bytes(key), &nonce, &aad, pt, &mut ours);
        assert_eq!(&ours[..ct.len()], &ct[..]);
        assert_eq!(&ours[ct.len()..], &tag[..]);
        // The same bytes through this module's framing.
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ct);
        sealed.extend_from_slice(&tag);
        assert_eq!(&open(&SecretKey::from_bytes(key), &aad, &sealed).unwrap()[..], &pt[..]);
    }

    /// Every length from 0 to 300 bytes (all partial-block and 4-block paths of the
    /// AVX2 backend) round-trips, and a flipped tag is refused.
    #[test]
    fn all_small_lengths_round_trip() {
        let k = SecretKey::random();
        for len in 0..300usize {
            let pt: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let mut s = Vec::new();
            seal(&k, &pt[..len.min(40)], &pt, &mut s);
            assert_eq!(&open(&k, &pt[..len.min(40)], &s).unwrap()[..], &pt[..]);
            let last = s.len() - 1;
            s[last] ^= 0x80;
            assert!(open(&k, &pt[..len.min(40)], &s).is_err());
        }
    }

    #[test]
    fn nonces_are_fresh() {
        let k = SecretKey::random();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        seal(&k, b"", b"x", &mut a);
        seal(&k, b"", b"x", &mut b);
        assert_ne!(a[..NONCE_LEN], b[..NONCE_LEN]);
    }
}
