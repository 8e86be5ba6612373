//! The record frame payload: one document version.
//!
//! ```text
//! 0   16  document id
//! 16  4   version, u32 LE
//! 20  24  record nonce R (random)
//! 44  4   E = envelope length, u32 LE
//! 48  E   envelope: ciphertext || tag under the meta key, nonce part_nonce(R, 0)
//! ..  2   G = group count, u16 LE
//! then G times: 4-byte length L, L bytes: label group i, ciphertext || tag under its
//! group key, nonce part_nonce(R, i + 1)
//! ```
//!
//! The index terms of a version are not stored separately: they are a function of the
//! field values and the schema, recomputed from the decrypted groups when the catalog
//! is rebuilt without a checkpoint.

use crate::crypto::aead::{self, NONCE_LEN, TAG_LEN};
use crate::format::{le_u16, le_u32};
use crate::model::{DocumentId, Label};

/// Bytes of a record payload before the envelope: id, version, record nonce, `E`.
pub const RECORD_HEAD: usize = 16 + 4 + NONCE_LEN + 4;

/// Most label groups a record may have (part 0 is the envelope, so group `i` is part
/// `i + 1` and every part number fits a `u16`).
pub const MAX_GROUPS: usize = u16::MAX as usize - 1;

/// A parsed (still sealed) record payload.
#[derive(Debug)]
pub struct SealedRecord<'a> {
    /// Document id.
    pub id: DocumentId,
    /// Version.
    pub version: u32,
    /// The record nonce every part's nonce is derived from ([`part_nonce`]).
    pub nonce: [u8; NONCE_LEN],
    /// Sealed envelope (ciphertext and tag).
    pub envelope: &'a [u8],
    /// Sealed label groups (ciphertext and tag each).
    pub groups: Vec<&'a [u8]>,
}

/// The nonce of part `part` of a record (0: the envelope; `i + 1`: label group `i`):
/// the record nonce with `u16le(part)` XORed into its last two bytes. The parts of one
/// record have distinct nonces, and records have independent random nonces, so no
/// (key, nonce) pair repeats.
pub fn part_nonce(record_nonce: &[u8; NONCE_LEN], part: u16) -> [u8; NONCE_LEN] {
    let mut n = *record_nonce;
    let p = part.to_le_bytes();
    n[NONCE_LEN - 2] ^= p[0];
    n[NONCE_LEN - 1] ^= p[1];
    n
}

/// Encodes a record payload.
pub fn encode(id: &DocumentId, version: u32, nonce: &[u8; NONCE_LEN], envelope: &[u8], groups: &[Vec<u8>]) -> Vec<u8> {
    let capacity = RECORD_HEAD + envelope.len() + 2 + groups.iter().map(|g| g.len() + 4).sum::<usize>();
    let mut w = RecordWriter::new(id, version, nonce, capacity);
    w.envelope(|out| out.extend_from_slice(envelope));
    w.group_count(groups.len() as u16);
    for g in groups {
        w.group(|out| out.extend_from_slice(g));
    }
    w.finish()
}

/// Writes a record payload front to back, each part straight into place (the write
/// path seals every part into the payload itself, without a copy per part).
///
/// Call [`RecordWriter::envelope`], then [`RecordWriter::group_count`], then
/// [`RecordWriter::group`] that many times, then [`RecordWriter::finish`].
#[derive(Debug)]
pub struct RecordWriter {
    out: Vec<u8>,
}

impl RecordWriter {
    /// Starts a payload with its id, version and record nonce; `capacity` is the
    /// expected total size.
    pub fn new(id: &DocumentId, version: u32, nonce: &[u8; NONCE_LEN], capacity: usize) -> Self {
        let mut out = Vec::with_capacity(capacity.max(RECORD_HEAD));
        out.extend_from_slice(&id.0);
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(nonce);
        RecordWriter { out }
    }

    /// One length-prefixed part: `write` appends its bytes.
    fn part(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        let at = self.out.len();
        self.out.extend_from_slice(&[0; 4]);
        write(&mut self.out);
        let len = (self.out.len() - at - 4) as u32;
        self.out[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }

    /// The sealed envelope: `write` appends ciphertext and tag.
    pub fn envelope(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        self.part(write);
    }

    /// The number of label groups that follow.
    pub fn group_count(&mut self, n: u16) {
        self.out.extend_from_slice(&n.to_le_bytes());
    }

    /// One sealed label group: `write` appends ciphertext and tag.
    pub fn group(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        self.part(write);
    }

    /// The payload.
    pub fn finish(self) -> Vec<u8> {
        self.out
    }
}

fn take<'a>(b: &'a [u8], pos: &mut usize, n: usize) -> Option<&'a [u8]> {
    let end = pos.checked_add(n)?;
    let s = b.get(*pos..end)?;
    *pos = end;
    Some(s)
}

/// Parses a record payload; `None` if malformed (a part shorter than a tag, more than
/// [`MAX_GROUPS`] groups, a length past the end, trailing bytes).
pub fn parse(b: &[u8]) -> Option<SealedRecord<'_>> {
    let mut pos = 0;
    let id = DocumentId(take(b, &mut pos, 16)?.try_into().ok()?);
    let version = le_u32(take(b, &mut pos, 4)?, 0);
    let nonce: [u8; NONCE_LEN] = take(b, &mut pos, NONCE_LEN)?.try_into().ok()?;
    let elen = le_u32(take(b, &mut pos, 4)?, 0) as usize;
    let envelope = take(b, &mut pos, elen)?;
    let g = le_u16(take(b, &mut pos, 2)?, 0) as usize;
    if elen < TAG_LEN || g > MAX_GROUPS {
        return None;
    }
    let mut groups = Vec::with_capacity(g.min(1024));
    for _ in 0..g {
        let l = le_u32(take(b, &mut pos, 4)?, 0) as usize;
        if l < TAG_LEN {
            return None;
        }
        groups.push(take(b, &mut pos, l)?);
    }
    if pos != b.len() {
        return None;
    }
    Some(SealedRecord { id, version, nonce, envelope, groups })
}

/// AAD of an envelope.
pub fn envelope_aad(vault: &[u8; 16], id: &DocumentId, version: u32) -> Vec<u8> {
    aead::aad("chartvault envelope v3", &[vault, &id.0, &version.to_le_bytes()])
}

/// AAD of label group `i`: binds vault, document, version, group position, its labels
/// and the names of the fields in it, in order (the group body holds only the values,
/// so the AAD is what ties each value to its name).
///
/// Built in one buffer with the same bytes as
/// `aead::aad("chartvault label group v3", [vault, id, version, i, labels joined by ",",
/// field names joined by NUL])`.
pub fn group_aad<S: AsRef<str>>(
    vault: &[u8; 16],
    id: &DocumentId,
    version: u32,
    i: u16,
    labels: &[Label],
    fields: &[S],
) -> Vec<u8> {
    let joined = |parts: &mut dyn Iterator<Item = &str>, sep: u8, out: &mut Vec<u8>| {
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        for (n, p) in parts.enumerate() {
            if n > 0 {
                out.push(sep);
            }
            out.extend_from_slice(p.as_bytes());
        }
        let len = (out.len() - at - 4) as u32;
        out[at..at + 4].copy_from_slice(&len.to_le_bytes());
    };
    let domain = b"chartvault label group v3\0";
    // Four length-prefixed fixed parts (16 + 16 + 4 + 2 bytes), then the two lists.
    let fixed = 4 * 4 + 16 + 16 + 4 + 2;
    let lists = 8
        + labels.iter().map(|l| l.as_str().len() + 1).sum::<usize>()
        + fields.iter().map(|f| f.as_ref().len() + 1).sum::<usize>();
    let mut v = Vec::with_capacity(domain.len() + fixed + lists);
    v.extend_from_slice(domain);
    for p in [&vault[..], &id.0[..], &version.to_le_bytes()[..], &i.to_le_bytes()[..]] {
        v.extend_from_slice(&(p.len() as u32).to_le_bytes());
        v.extend_from_slice(p);
    }
    joined(&mut labels.iter().map(Label::as_str), b',', &mut v);
    joined(&mut fields.iter().map(AsRef::as_ref), 0, &mut v);
    v
}

/// Attachment chunk payload: id (16) || chunk index u32 || last flag u8 || sealed chunk.
pub fn attachment_chunk_aad(vault: &[u8; 16], att: &[u8; 16], index: u32, last: bool) -> Vec<u8> {
    aead::aad("chartvault attachment chunk v1", &[vault, att, &index.to_le_bytes(), &[u8::from(last)]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_reject_garbage() {
        let id = DocumentId([9; 16]);
        let (env, g1, g2) = ([1u8; 17], [2u8; 16], [3u8; 20]);
        let b = encode(&id, 3, &[7; NONCE_LEN], &env, &[g1.to_vec(), g2.to_vec()]);
        let r = parse(&b).unwrap();
        assert_eq!((r.id, r.version, r.nonce, r.envelope), (id, 3, [7; NONCE_LEN], &env[..]));
        assert_eq!(r.groups, vec![&g1[..], &g2[..]]);
        // A part shorter than a tag is malformed.
        assert!(parse(&encode(&id, 3, &[7; NONCE_LEN], &env[..15], &[])).is_none());
        assert!(parse(&encode(&id, 3, &[7; NONCE_LEN], &env, &[vec![0; 15]])).is_none());
        for cut in 0..b.len() {
            assert!(parse(&b[..cut]).is_none());
        }
        let mut longer = b.clone();
        longer.push(0);
        assert!(parse(&longer).is_none());
    }

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// The envelope and label-group AAD vectors of docs/FORMAT.md §18.
    #[test]
    fn format_md_aad_vectors() {
        let (vid, id) = ([0u8; 16], DocumentId([0x33; 16]));
        let env = unhex(
            "63686172747661756c7420656e76656c6f706520763300
             10000000 00000000000000000000000000000000
             10000000 33333333333333333333333333333333
             04000000 01000000",
        );
        assert_eq!(envelope_aad(&vid, &id, 1), env);
        let grp = unhex(
            "63686172747661756c74206c6162656c2067726f7570207633 00
             10000000 00000000000000000000000000000000
             10000000 33333333333333333333333333333333
             04000000 02000000
             02000000 0100
             11000000 6e6f726d616c2c72657374726963746564
             04000000 61006263",
        );
        let labels = [Label::normal(), Label::restricted()];
        assert_eq!(group_aad(&vid, &id, 2, 1, &labels, &["a".to_string(), "bc".to_string()]), grp);
    }

    /// The group-body vector of docs/FORMAT.md §18 (format version 3: values, and
    /// extra labels as positions in the group's labels).
    #[test]
    fn format_md_group_body_vector() {
        use crate::format::body;
        use crate::model::{DateTime, Field, Value};
        let value = Field::from(Value::Decimal("6.80".parse().unwrap()));
        let when = Field {
            value: Value::DateTime(DateTime::parse("1970-01-01T00:00:01-05:00").unwrap()),
            labels: vec![Label::genetic()],
        };
        let labels = [Label::genetic(), Label::normal()];
        let expect = unhex("03 02 02 04 362e3830 00 05 80d98b8f8601 d704 01 00");
        assert_eq!(&body::encode_group(&[&value, &when], &labels).unwrap()[..], &expect[..]);
        assert_eq!(body::decode_group(&expect, &labels, 0).unwrap(), vec![value, when]);
    }

    /// The part-nonce vector of docs/FORMAT.md §18.
    #[test]
    fn format_md_part_nonce_vector() {
        let rn: [u8; NONCE_LEN] = std::array::from_fn(|i| i as u8);
        assert_eq!(part_nonce(&rn, 0), rn);
        assert_eq!(part_nonce(&rn, 1).to_vec(), unhex("000102030405060708090a0b0c0d0e0f1011121314151717"));
        assert_eq!(part_nonce(&rn, 0x0102).to_vec(), unhex("000102030405060708090a0b0c0d0e0f1011121314151416"));
    }

    #[test]
    fn part_nonces_differ_only_in_the_last_two_bytes() {
        let r = [0xaa; NONCE_LEN];
        assert_eq!(part_nonce(&r, 0), r);
        let n = part_nonce(&r, 0x0102);
        assert_eq!((&n[..22], n[22], n[23]), (&r[..22], 0xaa ^ 0x02, 0xaa ^ 0x01));
        let all: std::collections::HashSet<_> = (0..=u16::MAX).map(|p| part_nonce(&r, p)).collect();
        assert_eq!(all.len(), 65_536);
    }

    #[test]
    fn group_aad_is_the_length_prefixed_form() {
        let (vid, id) = ([1u8; 16], DocumentId([2; 16]));
        let labels = [Label::demographics(), Label::normal()];
        let fields = ["name".to_string(), "phone".to_string()];
        let expect = aead::aad(
            "chartvault label group v3",
            &[&vid, &id.0, &7u32.to_le_bytes(), &3u16.to_le_bytes(), b"demographics,normal", b"name\0phone"],
        );
        assert_eq!(group_aad(&vid, &id, 7, 3, &labels, &fields), expect);
        assert_ne!(group_aad(&vid, &id, 7, 3, &labels, &fields[..1]), expect);
    }
}
