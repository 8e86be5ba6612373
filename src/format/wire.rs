//! Small building blocks of the hand-written encodings inside the AEAD (index
//! checkpoints, docs/FORMAT.md §12.3, and envelopes, §10.2): unsigned LEB128 varints,
//! zigzag varints for signed values, length-prefixed byte strings, and a bounds-checked
//! reader over untrusted bytes.

/// Appends an unsigned LEB128 varint.
pub(crate) fn put_uv(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a zigzag varint.
pub(crate) fn put_iv(out: &mut Vec<u8>, v: i64) {
    put_uv(out, ((v << 1) ^ (v >> 63)) as u64);
}

/// Appends an unsigned LEB128 varint of up to 128 bits.
pub(crate) fn put_u128(out: &mut Vec<u8>, mut v: u128) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a length-prefixed byte string.
pub(crate) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_uv(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A cursor over untrusted bytes: every read checks bounds and returns `None`
/// past the end.
pub(crate) struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `b`.
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Reader { b, pos: 0 }
    }
    /// Bytes left.
    pub(crate) fn remaining(&self) -> usize {
        self.b.len() - self.pos
    }
    /// Whether everything was read.
    pub(crate) fn done(&self) -> bool {
        self.pos == self.b.len()
    }
    /// Current position.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }
    /// One byte.
    pub(crate) fn u8(&mut self) -> Option<u8> {
        let v = *self.b.get(self.pos)?;
        self.pos += 1;
        Some(v)
    }
    /// `n` raw bytes.
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.b.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    /// A fixed-size array.
    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    /// An unsigned varint (at most 10 bytes, no overflow).
    #[inline]
    pub(crate) fn uv(&mut self) -> Option<u64> {
        // Most varints are one byte.
        if let Some(&b) = self.b.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Some(u64::from(b));
        }
        self.uv_long()
    }
    /// [`Reader::uv`] past its one-byte case: the same rules as `varint(64)`, in 64-bit
    /// arithmetic (this runs for every field of every document of an index checkpoint
    /// at open).
    fn uv_long(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.u8()?;
            let part = u64::from(b & 0x7f);
            if i == 9 && part > 1 {
                return None;
            }
            v |= part << (7 * i);
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    /// An unsigned varint of at most `bits` bits (groups of 7, no overflow).
    fn varint(&mut self, bits: u32) -> Option<u128> {
        let mut v = 0u128;
        for shift in (0..bits).step_by(7) {
            let b = self.u8()?;
            let part = u128::from(b & 0x7f);
            if part >> (bits - shift).min(7) != 0 {
                return None;
            }
            v |= part << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    /// An unsigned varint that must fit a `u32`.
    pub(crate) fn u32v(&mut self) -> Option<u32> {
        u32::try_from(self.uv()?).ok()
    }
    /// A varint used as an index or count.
    pub(crate) fn usize(&mut self) -> Option<usize> {
        usize::try_from(self.uv()?).ok()
    }
    /// A zigzag varint.
    pub(crate) fn iv(&mut self) -> Option<i64> {
        let u = self.uv()?;
        Some(((u >> 1) as i64) ^ -((u & 1) as i64))
    }
    /// An unsigned varint of up to 128 bits.
    pub(crate) fn u128v(&mut self) -> Option<u128> {
        // Up to nine bytes (63 bits) cannot overflow: 64-bit arithmetic, the same result.
        let start = self.pos;
        let mut v = 0u64;
        for i in 0..9 {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Some(u128::from(v));
            }
        }
        self.pos = start;
        self.varint(128)
    }
    /// A length-prefixed byte string.
    pub(crate) fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.usize()?;
        self.take(n)
    }
    /// A length-prefixed UTF-8 string.
    pub(crate) fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }
}
