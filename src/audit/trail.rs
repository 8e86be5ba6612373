//! Sealing, reading and verifying audit entries.
//!
//! An audit frame's payload is `entry index (u64 LE) || sealed entry`, sealed under
//! the audit key with AAD binding the vault id and the index. Each entry carries the
//! BLAKE3 hash of the previous entry's encoding, so the trail is a hash chain of its
//! own inside the log's hash chain: an altered entry fails authentication, and a
//! dropped, reordered or inserted one breaks the index sequence or the chain.

use crate::crypto::{KeyHierarchy, aead};
use crate::error::{Error, Result};
use crate::format::body;
use crate::format::frame::{self, FRAME_HEADER, FrameType};
use crate::format::header::HEADER_REGION;
use crate::format::le_u64;
use crate::store::Store;

use super::AuditEntry;

/// Chain position of the trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChainPos {
    /// Index the next entry gets.
    pub next_index: u64,
    /// Hash of the last entry's encoding.
    pub last_hash: [u8; 32],
}

fn aad(vid: &[u8; 16], index: u64) -> Vec<u8> {
    aead::aad("chartvault audit entry v1", &[vid, &index.to_le_bytes()])
}

/// Seals `e` at the chain position `pos`, advancing it.
pub fn seal(keys: &KeyHierarchy, e: &mut AuditEntry, pos: &mut ChainPos) -> Vec<u8> {
    e.index = pos.next_index;
    e.prev = pos.last_hash;
    let enc = body::encode(e);
    let mut out = Vec::with_capacity(8 + aead::sealed_len(enc.len()));
    out.extend_from_slice(&e.index.to_le_bytes());
    aead::seal(&keys.audit, &aad(&keys.vault_id(), e.index), &enc, &mut out);
    pos.next_index += 1;
    pos.last_hash = *blake3::hash(&enc).as_bytes();
    out
}

/// Opens an audit payload, returning the entry and the hash of its encoding.
pub fn open(keys: &KeyHierarchy, payload: &[u8], offset: u64) -> Result<(AuditEntry, [u8; 32])> {
    let bad = || Error::Integrity { what: "audit entry", offset };
    if payload.len() < 8 {
        return Err(bad());
    }
    let index = le_u64(payload, 0);
    let pt = aead::open(&keys.audit, &aad(&keys.vault_id(), index), &payload[8..]).map_err(|_| bad())?;
    let e: AuditEntry = body::decode(&pt, "audit entry", offset)?;
    if e.index != index {
        return Err(bad());
    }
    Ok((e, *blake3::hash(&pt).as_bytes()))
}

/// The committed audit entries, in order.
pub fn read_all(store: &Store) -> Result<Vec<AuditEntry>> {
    let st = store.read_state();
    let map = st.map.clone();
    let offsets = st.catalog.frames_of(FrameType::Audit).to_vec();
    drop(st);
    offsets
        .iter()
        .map(|&off| {
            let p = store.read_frame(&*map, off, FrameType::Audit)?;
            Ok(open(store.keys(), &p, off)?.0)
        })
        .collect()
}

/// The chain position after the last committed entry.
pub fn position(store: &Store) -> Result<ChainPos> {
    let st = store.read_state();
    let Some(&off) = st.catalog.frames_of(FrameType::Audit).last() else {
        return Ok(ChainPos::default());
    };
    let map = st.map.clone();
    drop(st);
    let p = store.read_frame(&*map, off, FrameType::Audit)?;
    let (e, h) = open(store.keys(), &p, off)?;
    Ok(ChainPos { next_index: e.index + 1, last_hash: h })
}

/// The result of verifying the audit trail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditVerifyReport {
    /// Entries that verified.
    pub entries: u64,
    /// Problems: (offset, entry index if known, description). Empty means intact.
    pub problems: Vec<(u64, Option<u64>, String)>,
}

impl AuditVerifyReport {
    /// True if the trail is intact.
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Walks every audit frame in the file in order, independently of the commit
/// structure, and checks authentication, index sequence and chain.
pub fn verify(store: &Store) -> Result<AuditVerifyReport> {
    let map = store.data_map()?;
    let bytes = map.bytes();
    let keys = store.keys();
    let mut rep = AuditVerifyReport::default();
    let mut pos = HEADER_REGION as usize;
    let mut expect = ChainPos::default();
    while pos < bytes.len() {
        let head = match frame::parse_head(&bytes[pos..]) {
            Ok(h) if bytes.len() - pos >= h.total() => h,
            _ => {
                if pos as u64 >= store.read_state().head.end {
                    break; // an uncommitted tail, not part of the trail
                }
                rep.problems.push((pos as u64, None, "damaged frame: the log cannot be walked past here".into()));
                break;
            }
        };
        let copy = bytes[pos..pos + head.total()].to_vec();
        if frame::check(&head, &copy).is_err() {
            rep.problems.push((
                pos as u64,
                None,
                "damaged frame (checksum): an entry or its neighbour was edited".into(),
            ));
            break;
        }
        if head.ty == FrameType::Audit {
            let payload = &copy[FRAME_HEADER..];
            match open(keys, payload, pos as u64) {
                Ok((e, h)) => {
                    if e.index != expect.next_index {
                        let what = if e.index < expect.next_index {
                            "entry repeated or moved back: an inserted or reordered entry"
                        } else {
                            "entries missing before this one: a dropped or reordered entry"
                        };
                        rep.problems.push((
                            pos as u64,
                            Some(e.index),
                            format!("{what} (expected index {})", expect.next_index),
                        ));
                    } else if e.prev != expect.last_hash {
                        rep.problems.push((
                            pos as u64,
                            Some(e.index),
                            "chain broken: the previous entry was altered or replaced".into(),
                        ));
                    } else {
                        rep.entries += 1;
                    }
                    // An entry repeated or moved back does not rewind the expectation:
                    // otherwise every entry after a swapped pair would be reported as
                    // missing its predecessors.
                    if e.index >= expect.next_index {
                        expect = ChainPos { next_index: e.index + 1, last_hash: h };
                    }
                }
                Err(_) => {
                    let idx = (payload.len() >= 8).then(|| le_u64(payload, 0));
                    rep.problems.push((pos as u64, idx, "entry fails authentication: it was altered".into()));
                    expect.next_index += 1;
                }
            }
        }
        pos += head.total();
    }
    let scan = store.verify()?;
    for (off, p) in scan.problems {
        if !rep.problems.iter().any(|(o, _, _)| *o == off) {
            rep.problems.push((off, None, format!("log: {p}")));
        }
    }
    rep.problems.sort_by_key(|p| p.0);
    Ok(rep)
}
