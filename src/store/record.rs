//! The record frame payload: one document version.
//!
//! ```text
//! 0   16  document id
//! 16  4   version, u32 LE
//! 20  4   E = envelope length, u32 LE
//! 24  E   envelope, sealed under the meta key
//! ..  4   X = index section length
//! ..  X   index terms, sealed under the patient's index key
//! ..  2   G = group count, u16 LE
//! then G times: 4-byte length L, L bytes: one label group sealed under its group key
//! ```

use crate::crypto::aead;
use crate::format::{le_u16, le_u32};
use crate::model::{DocumentId, Label};

/// A parsed (still sealed) record payload.
#[derive(Debug)]
pub struct SealedRecord<'a> {
    /// Document id.
    pub id: DocumentId,
    /// Version.
    pub version: u32,
    /// Sealed envelope.
    pub envelope: &'a [u8],
    /// Sealed index terms.
    pub index: &'a [u8],
    /// Sealed label groups.
    pub groups: Vec<&'a [u8]>,
}

/// Encodes a record payload.
pub fn encode(id: &DocumentId, version: u32, envelope: &[u8], index: &[u8], groups: &[Vec<u8>]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(32 + envelope.len() + index.len() + groups.iter().map(|g| g.len() + 4).sum::<usize>());
    out.extend_from_slice(&id.0);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(envelope.len() as u32).to_le_bytes());
    out.extend_from_slice(envelope);
    out.extend_from_slice(&(index.len() as u32).to_le_bytes());
    out.extend_from_slice(index);
    out.extend_from_slice(&(groups.len() as u16).to_le_bytes());
    for g in groups {
        out.extend_from_slice(&(g.len() as u32).to_le_bytes());
        out.extend_from_slice(g);
    }
    out
}

fn take<'a>(b: &'a [u8], pos: &mut usize, n: usize) -> Option<&'a [u8]> {
    let end = pos.checked_add(n)?;
    let s = b.get(*pos..end)?;
    *pos = end;
    Some(s)
}

/// Parses a record payload; `None` if malformed.
pub fn parse(b: &[u8]) -> Option<SealedRecord<'_>> {
    let mut pos = 0;
    let id = DocumentId(take(b, &mut pos, 16)?.try_into().ok()?);
    let version = le_u32(take(b, &mut pos, 4)?, 0);
    let elen = le_u32(take(b, &mut pos, 4)?, 0) as usize;
    let envelope = take(b, &mut pos, elen)?;
    let xlen = le_u32(take(b, &mut pos, 4)?, 0) as usize;
    let index = take(b, &mut pos, xlen)?;
    let g = le_u16(take(b, &mut pos, 2)?, 0) as usize;
    let mut groups = Vec::with_capacity(g.min(1024));
    for _ in 0..g {
        let l = le_u32(take(b, &mut pos, 4)?, 0) as usize;
        groups.push(take(b, &mut pos, l)?);
    }
    if pos != b.len() {
        return None;
    }
    Some(SealedRecord { id, version, envelope, index, groups })
}

/// AAD of an envelope.
pub fn envelope_aad(vault: &[u8; 16], id: &DocumentId, version: u32) -> Vec<u8> {
    aead::aad("chartvault envelope v1", &[vault, &id.0, &version.to_le_bytes()])
}

/// AAD of an index section.
pub fn index_aad(vault: &[u8; 16], id: &DocumentId, version: u32) -> Vec<u8> {
    aead::aad("chartvault index terms v1", &[vault, &id.0, &version.to_le_bytes()])
}

/// AAD of label group `i`: binds vault, document, version, group position, its labels
/// and the names of the fields in it (the field paths).
pub fn group_aad(
    vault: &[u8; 16],
    id: &DocumentId,
    version: u32,
    i: u16,
    labels: &[Label],
    fields: &[String],
) -> Vec<u8> {
    let labels = labels.iter().map(Label::as_str).collect::<Vec<_>>().join(",");
    let fields = fields.join("\u{0}");
    aead::aad(
        "chartvault label group v1",
        &[vault, &id.0, &version.to_le_bytes(), &i.to_le_bytes(), labels.as_bytes(), fields.as_bytes()],
    )
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
        let b = encode(&id, 3, b"env", b"idx", &[b"g1".to_vec(), b"group2".to_vec()]);
        let r = parse(&b).unwrap();
        assert_eq!((r.id, r.version, r.envelope, r.index), (id, 3, &b"env"[..], &b"idx"[..]));
        assert_eq!(r.groups, vec![&b"g1"[..], &b"group2"[..]]);
        for cut in 0..b.len() {
            assert!(parse(&b[..cut]).is_none());
        }
        let mut longer = b.clone();
        longer.push(0);
        assert!(parse(&longer).is_none());
    }
}
