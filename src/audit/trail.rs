//! Sealing, reading and verifying audit entries.
//!
//! An audit frame carries a **block** of consecutive entries sealed together: its
//! payload is `index of the first entry (u64 LE) || sealed block`, sealed under the
//! audit key with AAD binding the vault id and that index, so one frame, one nonce and
//! one tag serve every entry a commit carries. Inside the block the repeating parts
//! (principals, label sets, patients, details) are interned and documents are raw
//! 16-byte ids (body version 2, see docs/FORMAT.md §12.1); frames written before
//! blocks existed hold one entry each (body version 1) and are still read.
//!
//! Every entry keeps its own index and chain value: `prev` of entry `k` is the BLAKE3
//! hash of entry `k - 1`'s stand-alone encoding (`0x01 || postcard(AuditEntry)`), so
//! the trail is a hash chain of its own inside the log's hash chain, entry by entry
//! and across blocks: an altered block fails authentication, and a dropped,
//! reordered or inserted one breaks the index sequence or the chain.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::{KeyHierarchy, aead};
use crate::error::{Error, Result};
use crate::format::body;
use crate::format::frame::{self, FRAME_HEADER, FrameType};
use crate::format::header::HEADER_REGION;
use crate::format::le_u64;
use crate::model::{DocumentId, Label};
use crate::store::Store;

use super::{Action, AuditEntry, Outcome};

/// Body version byte of a block of entries (version 1 is a single [`AuditEntry`]).
pub const BLOCK_VERSION: u8 = 2;

/// A block is closed once its estimated encoding reaches this size; a commit with
/// more entries carries several audit frames (each far below the frame limit).
pub const BLOCK_TARGET: usize = 1 << 20;

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

/// One principal of a block: interned user, roles, organization and purpose.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct BlockPrincipal {
    user: u32,
    roles: Vec<u32>,
    organization: u32,
    purpose: u32,
}

/// One entry of a block; `index` and `prev` follow from its position.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct BlockEntry {
    /// Microseconds since the previous entry of the block (the first: since the epoch).
    time_delta: i64,
    principal: u32,
    action: Action,
    outcome: Outcome,
    break_glass: bool,
    patient: Option<u32>,
    documents: Vec<[u8; 16]>,
    labels: u32,
    detail: u32,
}

/// The plaintext of an audit frame holding a block (after the version byte).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Block {
    /// `prev` of the block's first entry.
    prev: [u8; 32],
    /// Interned strings: users, roles, organizations, purposes, patients, details.
    strings: Vec<String>,
    principals: Vec<BlockPrincipal>,
    label_sets: Vec<Vec<Label>>,
    entries: Vec<BlockEntry>,
}

impl Drop for Block {
    /// The strings hold patient identifiers and user ids, copied out of decrypted
    /// plaintext (or about to be sealed): wiped like the plaintext buffers.
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.strings);
    }
}

/// What [`seal`] serializes: a [`Block`] borrowing from the entries (the same
/// postcard encoding: `&str` as `String`, slices as `Vec`, a [`DocumentId`] as its 16
/// raw bytes), so sealing copies no string.
#[derive(Serialize)]
struct BlockOut<'a> {
    prev: [u8; 32],
    strings: Vec<&'a str>,
    principals: Vec<BlockPrincipal>,
    label_sets: Vec<&'a [Label]>,
    entries: Vec<BlockEntryOut<'a>>,
}

#[derive(Serialize)]
struct BlockEntryOut<'a> {
    time_delta: i64,
    principal: u32,
    action: Action,
    outcome: Outcome,
    break_glass: bool,
    patient: Option<u32>,
    documents: &'a [DocumentId],
    labels: u32,
    detail: u32,
}

/// Interns a block's strings, principals and label sets. A commit usually carries one
/// or a few entries, so lookups scan the block's short lists; past [`LINEAR_MAX`]
/// items a list gets a hash index.
#[derive(Default)]
struct Interner<'a> {
    strings: HashMap<&'a str, u32>,
    principals: HashMap<BlockPrincipal, u32>,
    label_sets: HashMap<&'a [Label], u32>,
}

/// Longest list an [`Interner`] scans instead of indexing.
const LINEAR_MAX: usize = 16;

/// The position of `item` in `list` (appended if new), scanning while `list` is short
/// and through `index` (built from `list` when it outgrows the scan) after that.
fn intern<K: Eq + std::hash::Hash + Clone>(list: &mut Vec<K>, index: &mut HashMap<K, u32>, item: K) -> u32 {
    if list.len() < LINEAR_MAX {
        if let Some(i) = list.iter().position(|x| *x == item) {
            return i as u32;
        }
    } else {
        if index.is_empty() {
            index.extend(list.iter().cloned().enumerate().map(|(i, k)| (k, i as u32)));
        }
        if let Some(i) = index.get(&item) {
            return *i;
        }
        index.insert(item.clone(), list.len() as u32);
    }
    list.push(item);
    (list.len() - 1) as u32
}

impl<'a> Interner<'a> {
    fn string(&mut self, b: &mut BlockOut<'a>, s: &'a str) -> u32 {
        intern(&mut b.strings, &mut self.strings, s)
    }
    fn labels(&mut self, b: &mut BlockOut<'a>, l: &'a [Label]) -> u32 {
        intern(&mut b.label_sets, &mut self.label_sets, l)
    }
    fn principal(&mut self, b: &mut BlockOut<'a>, e: &'a AuditEntry) -> u32 {
        let p = BlockPrincipal {
            user: self.string(b, &e.user),
            roles: e.roles.iter().map(|r| self.string(b, r)).collect(),
            organization: self.string(b, &e.organization),
            purpose: self.string(b, &e.purpose),
        };
        intern(&mut b.principals, &mut self.principals, p)
    }
}

/// The hash of an entry's stand-alone encoding: the `prev` of the entry after it.
pub fn entry_hash(e: &AuditEntry) -> [u8; 32] {
    *blake3::hash(&body::encode(e)).as_bytes()
}

/// A rough upper bound of an entry's share of a block's encoding.
fn estimate(e: &AuditEntry) -> usize {
    48 + 17 * e.documents.len()
        + e.detail.len()
        + e.user.len()
        + e.organization.len()
        + e.patient.as_ref().map_or(0, String::len)
        + e.labels.iter().map(|l| l.as_str().len() + 1).sum::<usize>()
        + e.roles.iter().map(|r| r.len() + 1).sum::<usize>()
}

/// Seals `entries` at the chain position `pos` as one or more blocks (one audit frame
/// payload each, in order), setting every entry's `index` and `prev` and advancing
/// `pos`. No entries, no payloads.
pub fn seal(keys: &KeyHierarchy, entries: &mut [AuditEntry], pos: &mut ChainPos) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < entries.len() {
        let mut end = start;
        let mut size = 0;
        while end < entries.len() && (end == start || size + estimate(&entries[end]) <= BLOCK_TARGET) {
            size += estimate(&entries[end]);
            end += 1;
        }
        out.push(seal_block(keys, &mut entries[start..end], pos));
        start = end;
    }
    out
}

/// Seals a non-empty run of entries as one block.
fn seal_block(keys: &KeyHierarchy, entries: &mut [AuditEntry], pos: &mut ChainPos) -> Vec<u8> {
    let first = pos.next_index;
    for e in entries.iter_mut() {
        e.index = pos.next_index;
        e.prev = pos.last_hash;
        pos.next_index += 1;
        pos.last_hash = entry_hash(e);
    }
    let mut b = BlockOut {
        prev: entries.first().map_or([0; 32], |e| e.prev),
        strings: Vec::new(),
        principals: Vec::new(),
        label_sets: Vec::new(),
        entries: Vec::with_capacity(entries.len()),
    };
    let mut int = Interner::default();
    let mut last_time = 0i64;
    for e in entries.iter() {
        let principal = int.principal(&mut b, e);
        let patient = e.patient.as_deref().map(|p| int.string(&mut b, p));
        let labels = int.labels(&mut b, &e.labels);
        let detail = int.string(&mut b, &e.detail);
        b.entries.push(BlockEntryOut {
            time_delta: e.time_us.wrapping_sub(last_time),
            principal,
            action: e.action,
            outcome: e.outcome,
            break_glass: e.break_glass,
            patient,
            documents: &e.documents,
            labels,
            detail,
        });
        last_time = e.time_us;
    }
    let size: usize = entries.iter().map(estimate).sum();
    let mut buf = Zeroizing::new(Vec::with_capacity(size + 64));
    buf.push(BLOCK_VERSION);
    // postcard into a Vec never fails; it returns the Vec it was given.
    let pt = Zeroizing::new(postcard::to_extend(&b, std::mem::take(&mut *buf)).unwrap_or_default());
    let mut out = Vec::with_capacity(8 + aead::sealed_len(pt.len()));
    out.extend_from_slice(&first.to_le_bytes());
    aead::seal(&keys.audit, &aad(&keys.vault_id(), first), &pt, &mut out);
    out
}

/// Rebuilds the entries of a decoded block starting at `first`.
fn unpack(b: &Block, first: u64) -> Option<Vec<AuditEntry>> {
    let s = |i: u32| b.strings.get(i as usize).cloned();
    let mut out = Vec::with_capacity(b.entries.len());
    let mut prev = b.prev;
    let mut time = 0i64;
    for (n, e) in b.entries.iter().enumerate() {
        let p = b.principals.get(e.principal as usize)?;
        time = time.wrapping_add(e.time_delta);
        let entry = AuditEntry {
            index: first.checked_add(n as u64)?,
            prev,
            time_us: time,
            user: s(p.user)?,
            roles: p.roles.iter().map(|&r| s(r)).collect::<Option<_>>()?,
            organization: s(p.organization)?,
            purpose: s(p.purpose)?,
            action: e.action,
            patient: match e.patient {
                Some(i) => Some(s(i)?),
                None => None,
            },
            documents: e.documents.iter().map(|&d| DocumentId(d)).collect(),
            labels: b.label_sets.get(e.labels as usize)?.clone(),
            outcome: e.outcome,
            break_glass: e.break_glass,
            detail: s(e.detail)?,
        };
        prev = entry_hash(&entry);
        out.push(entry);
    }
    Some(out)
}

/// Opens an audit payload: its entries, in order, and the hash of the last one's
/// encoding (the `prev` of the entry after it). A block is never empty.
pub fn open(keys: &KeyHierarchy, payload: &[u8], offset: u64) -> Result<(Vec<AuditEntry>, [u8; 32])> {
    let bad = || Error::Integrity { what: "audit entry", offset };
    if payload.len() < 8 {
        return Err(bad());
    }
    let index = le_u64(payload, 0);
    let pt = aead::open(&keys.audit, &aad(&keys.vault_id(), index), &payload[8..]).map_err(|_| bad())?;
    let entries = match pt.first() {
        Some(&BLOCK_VERSION) => {
            let b: Block = postcard::from_bytes(&pt[1..]).map_err(|_| bad())?;
            unpack(&b, index).ok_or_else(bad)?
        }
        _ => {
            let e: AuditEntry = body::decode(&pt, "audit entry", offset)?;
            if e.index != index {
                return Err(bad());
            }
            vec![e]
        }
    };
    let Some(last) = entries.last() else { return Err(bad()) };
    let h = entry_hash(last);
    Ok((entries, h))
}

/// The committed audit entries, in order.
pub fn read_all(store: &Store) -> Result<Vec<AuditEntry>> {
    let st = store.read_state();
    let map = st.map.clone();
    let offsets = st.catalog.frames_of(FrameType::Audit).to_vec();
    drop(st);
    let mut out = Vec::new();
    for &off in &offsets {
        let p = store.read_frame(&*map, off, FrameType::Audit)?;
        out.extend(open(store.keys(), &p, off)?.0);
    }
    Ok(out)
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
    let (es, h) = open(store.keys(), &p, off)?;
    let last = es.last().map_or(0, |e| e.index);
    Ok(ChainPos { next_index: last + 1, last_hash: h })
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
/// structure, and checks authentication, index sequence and chain. A problem names
/// the offset of the audit frame and the index of its first entry.
pub fn verify(store: &Store) -> Result<AuditVerifyReport> {
    let map = store.data_map()?;
    let bytes = map.bytes();
    let keys = store.keys();
    let mut rep = AuditVerifyReport::default();
    let mut pos = HEADER_REGION as usize;
    let mut expect = ChainPos::default();
    // Set after a frame that failed authentication: the index of its first entry.
    // The number of entries it held and the hash of its last one are then unknown.
    let mut after_failure: Option<u64> = None;
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
        let copy = Zeroizing::new(bytes[pos..pos + head.total()].to_vec());
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
                Ok((es, h)) => {
                    // `open` never returns an empty block.
                    let first = es.first().map_or(expect.next_index, |e| e.index);
                    let last = es.last().map_or(first, |e| e.index);
                    let prev = es.first().map_or(expect.last_hash, |e| e.prev);
                    match after_failure.take() {
                        Some(failed) if first > failed => rep.problems.push((
                            pos as u64,
                            Some(first),
                            "chain cannot be checked: the entries before this one failed authentication".into(),
                        )),
                        _ if first != expect.next_index => {
                            let what = if first < expect.next_index {
                                "entry repeated or moved back: an inserted or reordered entry"
                            } else {
                                "entries missing before this one: a dropped or reordered entry"
                            };
                            rep.problems.push((
                                pos as u64,
                                Some(first),
                                format!("{what} (expected index {})", expect.next_index),
                            ));
                        }
                        _ if prev != expect.last_hash => rep.problems.push((
                            pos as u64,
                            Some(first),
                            "chain broken: the previous entry was altered or replaced".into(),
                        )),
                        _ => rep.entries += es.len() as u64,
                    }
                    // An entry repeated or moved back does not rewind the expectation:
                    // otherwise every entry after a swapped pair would be reported as
                    // missing its predecessors.
                    if first >= expect.next_index {
                        expect = ChainPos { next_index: last + 1, last_hash: h };
                    }
                }
                Err(_) => {
                    let idx = (payload.len() >= 8).then(|| le_u64(payload, 0));
                    rep.problems.push((pos as u64, idx, "entry fails authentication: it was altered".into()));
                    let failed = idx.unwrap_or(expect.next_index);
                    after_failure = Some(failed.max(expect.next_index));
                    expect.next_index = expect.next_index.max(failed.saturating_add(1));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{Principal, Purpose, Role};
    use crate::crypto::SecretKey;

    fn entries() -> Vec<AuditEntry> {
        let dr = Principal::new("dr", Role::physician(), "org", Purpose::Treat);
        let po = Principal::new("po", Role::privacy_officer(), "org", Purpose::Compliance);
        vec![
            AuditEntry::new(&dr, Action::Read, Outcome::Success)
                .patient(Some("P1"))
                .documents(vec![DocumentId([7; 16])])
                .labels(vec![Label::normal()]),
            AuditEntry::new(&po, Action::AuditRead, Outcome::Denied).detail("why"),
            AuditEntry::new(&dr, Action::Create, Outcome::Success)
                .patient(Some("P2"))
                .documents(vec![DocumentId([1; 16]), DocumentId([2; 16])])
                .labels(vec![Label::normal(), Label::restricted()])
                .break_glass(true),
        ]
    }

    #[test]
    fn blocks_round_trip_and_chain_entry_by_entry() {
        let keys = KeyHierarchy::new(SecretKey::from_bytes([3; 32]), [9; 16]);
        let mut pos = ChainPos::default();
        let mut a = entries();
        let pa = seal(&keys, &mut a, &mut pos);
        assert_eq!(pa.len(), 1, "one block for a commit's entries");
        let mut b = entries();
        let pb = seal(&keys, &mut b, &mut pos);
        assert_eq!(pos.next_index, 6);
        let (ga, ha) = open(&keys, &pa[0], 0).unwrap();
        let (gb, hb) = open(&keys, &pb[0], 0).unwrap();
        assert_eq!((ga, gb), (a.clone(), b.clone()));
        assert_eq!(b[0].prev, ha);
        assert_eq!(hb, pos.last_hash);
        for w in a.iter().chain(&b).collect::<Vec<_>>().windows(2) {
            assert_eq!(w[1].prev, entry_hash(w[0]));
            assert_eq!(w[1].index, w[0].index + 1);
        }
        // A frame of the first format (one entry, body version 1) still opens.
        let mut old = Vec::new();
        old.extend_from_slice(&a[1].index.to_le_bytes());
        aead::seal(&keys.audit, &aad(&keys.vault_id(), a[1].index), &body::encode(&a[1]), &mut old);
        assert_eq!(open(&keys, &old, 0).unwrap(), (vec![a[1].clone()], entry_hash(&a[1])));
        // A wrong index prefix does not open.
        let mut moved = pa[0].clone();
        moved[0] ^= 1;
        assert!(open(&keys, &moved, 0).is_err());
        assert!(open(&keys, &pa[0][..7], 0).is_err());
    }

    #[test]
    fn many_entries_split_into_blocks() {
        let keys = KeyHierarchy::new(SecretKey::from_bytes([3; 32]), [9; 16]);
        let dr = Principal::new("dr", Role::physician(), "org", Purpose::Treat);
        let docs: Vec<DocumentId> = (0..10_000u32).map(|i| DocumentId([i as u8; 16])).collect();
        let mut es: Vec<AuditEntry> =
            (0..20).map(|_| AuditEntry::new(&dr, Action::Query, Outcome::Success).documents(docs.clone())).collect();
        let mut pos = ChainPos::default();
        let ps = seal(&keys, &mut es, &mut pos);
        assert!(ps.len() > 1 && ps.iter().all(|p| p.len() <= 2 * BLOCK_TARGET), "{}", ps.len());
        let got: Vec<AuditEntry> = ps.iter().flat_map(|p| open(&keys, p, 0).unwrap().0).collect();
        assert_eq!(got, es);
    }

    /// Past `LINEAR_MAX` distinct strings, principals and label sets the interner
    /// switches from scanning to a hash index: every item is still stored once and
    /// every entry comes back as it was.
    #[test]
    fn interning_past_the_scan_limit_keeps_items_unique() {
        let keys = KeyHierarchy::new(SecretKey::from_bytes([3; 32]), [9; 16]);
        let all = Label::builtin();
        let mut es: Vec<AuditEntry> = (0..120usize)
            .map(|i| {
                let p = Principal::new(&format!("user-{}", i % 40), Role::physician(), "org", Purpose::Treat);
                AuditEntry::new(&p, Action::Read, Outcome::Success)
                    .patient(Some(&format!("P{}", i % 50)))
                    .labels(vec![all[i % all.len()].clone(), all[(i / all.len()) % all.len()].clone()])
                    .detail(format!("d{}", i % 3))
            })
            .collect();
        let mut pos = ChainPos::default();
        let ps = seal(&keys, &mut es, &mut pos);
        assert_eq!(ps.len(), 1);
        assert_eq!(open(&keys, &ps[0], 0).unwrap().0, es);
        let pt = aead::open(&keys.audit, &aad(&keys.vault_id(), 0), &ps[0][8..]).unwrap();
        let b: Block = postcard::from_bytes(&pt[1..]).unwrap();
        let unique = |n: usize, m: usize| n == m;
        let strings: std::collections::HashSet<_> = b.strings.iter().collect();
        assert!(unique(strings.len(), b.strings.len()), "strings interned once");
        // 40 users, the role, "org", the purpose, 50 patients, 3 details.
        assert_eq!(b.strings.len(), 40 + 1 + 1 + 1 + 50 + 3);
        let principals: std::collections::HashSet<_> = b.principals.iter().collect();
        assert!(unique(principals.len(), b.principals.len()) && b.principals.len() == 40);
        let sets: std::collections::HashSet<_> = b.label_sets.iter().collect();
        assert!(unique(sets.len(), b.label_sets.len()) && b.label_sets.len() > LINEAR_MAX);
    }

    /// The block of docs/FORMAT.md §18: the entry of the version-1 vector (index 1)
    /// followed by a second read of another patient by the same principal.
    #[test]
    fn block_test_vector() {
        let dr = Principal::new("dr.grey", Role::physician(), "general", Purpose::Treat);
        let e = |p: &str, d: u8, t: i64| {
            let mut e = AuditEntry::new(&dr, Action::Read, Outcome::Success)
                .patient(Some(p))
                .documents(vec![DocumentId([d; 16])])
                .labels(vec![Label::normal()]);
            e.time_us = t;
            e
        };
        let mut es = vec![e("MRN-7", 0x33, 1_700_000_000_000_000), e("MRN-8", 0x44, 1_700_000_000_000_100)];
        let mut pos = ChainPos { next_index: 1, last_hash: [0xaa; 32] };
        let keys = KeyHierarchy::new(SecretKey::from_bytes([0x11; 32]), [0; 16]);
        let sealed = seal(&keys, &mut es, &mut pos);
        let pt = aead::open(&keys.audit, &aad(&[0; 16], 1), &sealed[0][8..]).unwrap();
        let hex = crate::util::hex(&pt);
        let expected = concat!(
            "02",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "07",
            "07",
            "64722e67726579",
            "09",
            "70687973696369616e",
            "07",
            "67656e6572616c",
            "05",
            "5452454154",
            "05",
            "4d524e2d37",
            "00",
            "05",
            "4d524e2d38",
            "01",
            "00",
            "01",
            "01",
            "02",
            "03",
            "01",
            "01",
            "06",
            "6e6f726d616c",
            "02",
            "8080f28183898506",
            "00",
            "02",
            "00",
            "00",
            "01",
            "04",
            "01",
            "33333333333333333333333333333333",
            "00",
            "05",
            "c801",
            "00",
            "02",
            "00",
            "00",
            "01",
            "06",
            "01",
            "44444444444444444444444444444444",
            "00",
            "05",
        );
        assert_eq!(hex, expected);
        // The chain value after the first entry equals the §18 hash of the version-1 vector.
        assert_eq!(crate::util::hex(&es[1].prev), "160da3e4207f4b9837a4e09e31ac15cfdde65e718cfc0e60d3183e1fff9bfeb7");
    }
}
