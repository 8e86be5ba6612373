//! Index checkpoints: the catalog saved into the log so a large vault opens without
//! decrypting every document.
//!
//! A checkpoint is one commit of Checkpoint frames. The first frame's payload is
//! `b'G' || 3 || sealed(index key, Global)`; the others are `b'P' || 3 || directory ||
//! repeated (slot u32 LE || length u32 LE || sealed(patient index key, that patient's
//! entries))`, where the directory (sealed under the index key) lists, for each entry
//! of the frame, its slot and the ids of its documents. Each patient's entries are
//! sealed under that patient's own index key, so erasing a patient (destroying the
//! key) also makes its indexed values in every checkpoint unreadable. The header's
//! `checkpoint_offset` points at the newest checkpoint; it is only a hint: open
//! verifies the checkpoint and everything after it, and falls back to a full scan (and
//! says so) when anything is wrong.
//!
//! Open runs `read_verified` (no patient key needed, so it runs while the keyring
//! loads): every checkpoint frame is copied out of the map once, and that copy is
//! CRC-checked and hashed into the chain, and the checkpoint's commit frame must carry
//! that chain and a valid MAC; the directories are opened from the copy. Then `load`
//! checks every entry's slot against the keyring and indexes the directories' ids: the
//! patient entries stay sealed (`Unloaded`) until a read of one of the patient's
//! documents, a write to the patient, or anything that needs the whole catalog (a
//! query, a checkpoint) decrypts and decodes them (`Catalog::load_patient`,
//! `Catalog::load_all`, on every core).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use zeroize::{Zeroize, Zeroizing};

use crate::crypto::keys::ct_eq;
use crate::crypto::{KeyHierarchy, aead, keys};
use crate::error::{Error, Result};
use crate::format::frame::{self, Commit, FRAME_HEADER, FrameHead, FrameType};
use crate::format::le_u32;
use crate::log::writer::LogHead;
use crate::model::{DocumentId, Kind, Label, LabelSet};
use crate::store::Store;
use crate::store::catalog::wire::{self, Reader};
use crate::store::catalog::{Catalog, DocEntry, LoadedIds, TermSchemas, Terms, VersionLoc};
use crate::store::keyring::Keyring;

/// Largest payload of one checkpoint part frame.
const PART_BYTES: usize = 4 * 1024 * 1024;

/// Version byte after the `G` and `P` tags. Version 1 had none (its sealed part
/// started right after the tag) and version 2 had no directories: a checkpoint of an
/// older version fails to open and open falls back to a full scan (the next
/// checkpoint is written in this version).
const CHECKPOINT_VERSION: u8 = 3;

fn global_aad(vid: &[u8; 16]) -> Vec<u8> {
    aead::aad("chartvault checkpoint global v3", &[vid])
}
fn patient_aad(vid: &[u8; 16], slot: u32, commit: u64) -> Vec<u8> {
    aead::aad("chartvault checkpoint patient v3", &[vid, &slot.to_le_bytes(), &commit.to_le_bytes()])
}
fn directory_aad(vid: &[u8; 16], commit: u64, part: u64) -> Vec<u8> {
    aead::aad("chartvault checkpoint directory v3", &[vid, &commit.to_le_bytes(), &part.to_le_bytes()])
}

/// The dictionaries a checkpoint writer builds: kinds, label sets and term schemas
/// (field name, label set id), each by first appearance, after the store's term
/// schemas, which come first ([`Dicts::seed`]).
///
/// The maps hash with foldhash (seeded per process) instead of SipHash: a checkpoint
/// looks a term schema up per index term and a label set up per document, and SipHash
/// was ~45% of writing a checkpoint. Their keys are field names and label sets, of
/// which a vault has a handful, so flooding one bucket is not a concern.
#[derive(Default)]
struct Dicts<'a> {
    kinds: Vec<&'a str>,
    kind_ids: FastMap<&'a str, u32>,
    labelsets: Vec<Vec<&'a Label>>,
    doc_labels: FastMap<&'a LabelSet, u32>,
    schema_labels: FastMap<&'a [Label], u32>,
    schemas: Vec<(&'a str, u32)>,
    /// (field, labels) -> schema id in this checkpoint.
    schema_ids: FastMap<(&'a str, &'a [Label]), u32>,
    /// For each schema table of the catalog's packed terms (by address), its ids
    /// renumbered into this checkpoint's, filled as they are met (see [`Dicts::seed`]).
    packed_schemas: FastMap<*const TermSchemas, Renumber>,
    /// The table the last document's terms were packed under, and its renumbering
    /// (taken out of `packed_schemas` while in use: most documents share one table).
    last_table: Option<(*const TermSchemas, Renumber)>,
    /// The schemas [`Dicts::seed`] numbered first, in order.
    seeded: Option<&'a TermSchemas>,
    /// Label sets by address (the catalog shares equal ones), before hashing contents.
    doc_label_ptrs: FastMap<*const LabelSet, u32>,
}

/// How the schema ids of one table of packed terms map to a checkpoint's.
enum Renumber {
    /// The same ids: the table is a prefix of the seeded one, so its terms are copied
    /// as they are.
    Same,
    /// Each id's checkpoint id, filled as it is met.
    Map(Vec<Option<u32>>),
}

/// A hash map with foldhash's per-process random seed (see [`Dicts`]).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

impl<'a> Dicts<'a> {
    fn kind(&mut self, k: &'a Kind) -> u32 {
        if let Some(&i) = self.kind_ids.get(k.as_str()) {
            return i;
        }
        let i = self.kinds.len() as u32;
        self.kinds.push(k.as_str());
        self.kind_ids.insert(k.as_str(), i);
        i
    }
    fn doc_labels(&mut self, l: &'a Arc<LabelSet>) -> u32 {
        if let Some(&i) = self.doc_label_ptrs.get(&Arc::as_ptr(l)) {
            return i;
        }
        let i = match self.doc_labels.get(&**l) {
            Some(&i) => i,
            None => {
                let i = self.labelsets.len() as u32;
                self.labelsets.push(l.iter().collect());
                self.doc_labels.insert(l, i);
                i
            }
        };
        self.doc_label_ptrs.insert(Arc::as_ptr(l), i);
        i
    }
    /// Numbers `table`'s schemas first, in its order, so the terms of every table
    /// that is a prefix of it (the store's [`crate::store::catalog::TermRegistry`]
    /// hands out such tables) keep their ids and are copied without being re-encoded.
    /// Called on an empty dictionary.
    fn seed(&mut self, table: &'a TermSchemas) {
        let mut same = true;
        for (i, (field, labels)) in table.schemas.iter().enumerate() {
            // A table that names a schema twice (no writer makes one) cannot keep its
            // ids here: its terms are then renumbered like any other table's.
            same &= self.schema(field, labels) as usize == i;
        }
        self.seeded = same.then_some(table);
    }
    /// How `table`'s ids map to this checkpoint's.
    fn renumbering(&self, table: &TermSchemas) -> Renumber {
        let prefix = self.seeded.is_some_and(|seed| {
            table.schemas.len() <= seed.schemas.len() && table.schemas.iter().zip(&seed.schemas).all(|(a, b)| a == b)
        });
        if prefix { Renumber::Same } else { Renumber::Map(vec![None; table.schemas.len()]) }
    }
    fn schema(&mut self, field: &'a str, labels: &'a [Label]) -> u32 {
        if let Some(&i) = self.schema_ids.get(&(field, labels)) {
            return i;
        }
        let ls = match self.schema_labels.get(labels) {
            Some(&i) => i,
            None => {
                let i = self.labelsets.len() as u32;
                self.labelsets.push(labels.iter().collect());
                self.schema_labels.insert(labels, i);
                i
            }
        };
        let i = self.schemas.len() as u32;
        self.schemas.push((field, ls));
        self.schema_ids.insert((field, labels), i);
        i
    }
    /// Appends a document's terms, length-prefixed, schema ids renumbered into this
    /// dictionary (`scratch` holds a renumbered copy).
    fn terms(&mut self, t: &'a Terms, out: &mut Vec<u8>, scratch: &mut Vec<u8>) {
        let Some((s, b)) = t.raw() else {
            wire::put_bytes(out, &[]);
            return;
        };
        let key = Arc::as_ptr(s);
        let mut renumber = match self.last_table.take() {
            Some((k, r)) if k == key => r,
            other => {
                if let Some((k, r)) = other {
                    self.packed_schemas.insert(k, r);
                }
                self.packed_schemas.remove(&key).unwrap_or_else(|| self.renumbering(s))
            }
        };
        match &mut renumber {
            Renumber::Same => wire::put_bytes(out, b),
            Renumber::Map(map) => {
                scratch.clear();
                wire::each_term(b, |sid, k| {
                    let Some((field, labels)) = s.schemas.get(sid) else { return };
                    let new = match map.get(sid).copied().flatten() {
                        Some(n) => n,
                        None => {
                            let n = self.schema(field, labels);
                            if let Some(m) = map.get_mut(sid) {
                                *m = Some(n);
                            }
                            n
                        }
                    };
                    wire::put_uv(scratch, u64::from(new));
                    scratch.extend_from_slice(k);
                });
                wire::put_bytes(out, scratch);
            }
        }
        self.last_table = Some((key, renumber));
    }
}

/// Encodes one patient's documents (the plaintext of a patient entry, §12.3.2) into
/// `out`, and the entry's directory record (§12.3.2: slot, document and version
/// counts, ids) into `dir`. Returns the number of documents encoded.
fn encode_patient<'a>(
    cat: &'a Catalog,
    slot: u32,
    ids: &[DocumentId],
    d: &mut Dicts<'a>,
    out: &mut Vec<u8>,
    dir: &mut Vec<u8>,
) -> u64 {
    let docs: Vec<(&DocumentId, &'a DocEntry)> = ids.iter().filter_map(|id| cat.docs.get_key_value(id)).collect();
    let n = docs.len() as u64;
    wire::put_uv(dir, u64::from(slot));
    wire::put_uv(dir, n);
    wire::put_uv(dir, docs.iter().map(|(_, e)| e.versions.len() as u64).sum());
    for (id, _) in &docs {
        dir.extend_from_slice(&id.0);
    }
    wire::put_uv(out, n);
    let mut prev_created = 0i64;
    let mut terms = Vec::new();
    for (id, e) in docs {
        out.extend_from_slice(&id.0);
        wire::put_uv(out, u64::from(d.kind(&e.kind)));
        wire::put_uv(out, u64::from(d.doc_labels(&e.labels)));
        wire::put_iv(out, e.created_us.wrapping_sub(prev_created));
        prev_created = e.created_us;
        wire::put_uv(out, e.commit);
        wire::put_uv(out, e.versions.len() as u64);
        let mut prev = e.created_us;
        for v in &e.versions {
            wire::put_uv(out, u64::from(v.version));
            wire::put_uv(out, v.offset);
            wire::put_iv(out, v.updated_us.wrapping_sub(prev));
            prev = v.updated_us;
        }
        d.terms(&e.terms, out, &mut terms);
    }
    terms.zeroize();
    n
}

/// One patient-part frame being filled: its directory records and its entries.
struct PartBuilder {
    entries: usize,
    dir: Zeroizing<Vec<u8>>,
    body: Vec<u8>,
}

impl PartBuilder {
    fn new() -> Self {
        PartBuilder { entries: 0, dir: Zeroizing::new(Vec::new()), body: Vec::new() }
    }
    /// The frame payload: tag, version, sealed directory, entries (§12.3.2).
    fn finish(self, vid: &[u8; 16], index: &crate::crypto::SecretKey, commit: u64, part: u64) -> Vec<u8> {
        let mut pt = Zeroizing::new(Vec::with_capacity(self.dir.len() + 10));
        wire::put_uv(&mut pt, self.entries as u64);
        pt.extend_from_slice(&self.dir);
        let mut sealed = Vec::with_capacity(pt.len() + aead::SEAL_OVERHEAD);
        aead::seal(index, &directory_aad(vid, commit, part), &pt, &mut sealed);
        let mut out = Vec::with_capacity(6 + sealed.len() + self.body.len());
        out.extend_from_slice(&[b'P', CHECKPOINT_VERSION]);
        out.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        out.extend_from_slice(&sealed);
        out.extend_from_slice(&self.body);
        out
    }
}

/// Patients in a checkpoint from which its entries are sealed on a second thread
/// while this one encodes the next ones (below this, one thread does both).
const PARALLEL_SEAL_MIN: usize = 256;

/// Encodes the catalog as checkpoint frame payloads. The catalog must be loaded
/// (`Catalog::load_all`).
///
/// The entries are encoded in patient order on this thread (the dictionaries number
/// kinds, label sets and term schemas as they first appear) and, on a machine with
/// two cores or more, sealed on a scoped thread as they come, which takes the sealing
/// (about a quarter of a checkpoint's instructions) off the writer's path. Each
/// entry's plaintext moves to the sealing thread and is wiped there once sealed.
pub(crate) fn encode(
    keys: &KeyHierarchy,
    ring: &Keyring,
    cat: &Catalog,
    head: LogHead,
    seed: &TermSchemas,
) -> Vec<Vec<u8>> {
    let vid = keys.vault_id();
    // Erased patients (no key) have no entry.
    let mut slots: Vec<u32> = cat.by_patient.keys().copied().filter(|s| ring.key(*s, 0).is_ok()).collect();
    slots.sort_unstable();
    let seal_entry = |slot: u32, pt: Zeroizing<Vec<u8>>| -> Vec<u8> {
        let mut sealed = Vec::with_capacity(pt.len() + aead::SEAL_OVERHEAD);
        if let Ok(pk) = ring.key(slot, 0) {
            aead::seal(&keys::patient_index_key(pk), &patient_aad(&vid, slot, head.commit_number), &pt, &mut sealed);
        }
        sealed
    };
    let mut dicts = Dicts::default();
    dicts.seed(seed);
    let mut docs = 0u64;
    let mut dirs: Vec<Zeroizing<Vec<u8>>> = Vec::with_capacity(slots.len());
    let mut encode_next = |slot: u32| -> Zeroizing<Vec<u8>> {
        let mut pt = Zeroizing::new(Vec::new());
        let mut dir = Zeroizing::new(Vec::new());
        docs += encode_patient(cat, slot, &cat.by_patient[&slot], &mut dicts, &mut pt, &mut dir);
        dirs.push(dir);
        pt
    };
    let sealed: Vec<Vec<u8>> = if slots.len() >= PARALLEL_SEAL_MIN && crate::util::cores() >= 2 {
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<(u32, Zeroizing<Vec<u8>>)>(64);
            let sealer = scope.spawn(|| rx.into_iter().map(|(slot, pt)| seal_entry(slot, pt)).collect::<Vec<_>>());
            for &slot in &slots {
                // The sealing thread only stops early by panicking (resumed below).
                if tx.send((slot, encode_next(slot))).is_err() {
                    break;
                }
            }
            drop(tx);
            sealer.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    } else {
        slots.iter().map(|&slot| seal_entry(slot, encode_next(slot))).collect()
    };
    let mut parts: Vec<Vec<u8>> = Vec::new();
    let mut cur = PartBuilder::new();
    let patients = slots.len() as u64;
    for ((slot, dir), sealed) in slots.iter().zip(&dirs).zip(&sealed) {
        if cur.body.len() + cur.dir.len() + dir.len() + sealed.len() + 8 > PART_BYTES && cur.entries > 0 {
            let done = std::mem::replace(&mut cur, PartBuilder::new());
            parts.push(done.finish(&vid, &keys.index, head.commit_number, parts.len() as u64));
        }
        cur.body.extend_from_slice(&slot.to_le_bytes());
        cur.body.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        cur.body.extend_from_slice(sealed);
        cur.dir.extend_from_slice(dir);
        cur.entries += 1;
    }
    parts.push(cur.finish(&vid, &keys.index, head.commit_number, parts.len() as u64));
    // The global part.
    let mut g = Zeroizing::new(Vec::new());
    g.extend_from_slice(&head.end.to_le_bytes());
    g.extend_from_slice(&head.next_seq.to_le_bytes());
    g.extend_from_slice(&head.commit_number.to_le_bytes());
    g.extend_from_slice(&head.chain);
    let mut types: Vec<(&u8, &Vec<u64>)> = cat.frames.iter().collect();
    types.sort();
    wire::put_uv(&mut g, types.len() as u64);
    for (ty, offs) in types {
        g.push(*ty);
        wire::put_uv(&mut g, offs.len() as u64);
        let mut prev = 0u64;
        for o in offs {
            wire::put_iv(&mut g, o.wrapping_sub(prev) as i64);
            prev = *o;
        }
    }
    wire::put_uv(&mut g, patients);
    wire::put_uv(&mut g, parts.len() as u64);
    wire::put_uv(&mut g, docs);
    wire::put_uv(&mut g, dicts.kinds.len() as u64);
    for k in &dicts.kinds {
        wire::put_bytes(&mut g, k.as_bytes());
    }
    wire::put_uv(&mut g, dicts.labelsets.len() as u64);
    for set in &dicts.labelsets {
        wire::put_uv(&mut g, set.len() as u64);
        for l in set {
            wire::put_bytes(&mut g, l.as_str().as_bytes());
        }
    }
    wire::put_uv(&mut g, dicts.schemas.len() as u64);
    for (field, ls) in &dicts.schemas {
        wire::put_bytes(&mut g, field.as_bytes());
        wire::put_uv(&mut g, u64::from(*ls));
    }
    let mut gf = vec![b'G', CHECKPOINT_VERSION];
    aead::seal(&keys.index, &global_aad(&vid), &g, &mut gf);
    let mut out = vec![gf];
    out.extend(parts);
    out
}

/// The decoded global part.
struct Global {
    head: LogHead,
    frames: HashMap<u8, Vec<u64>>,
    patients: u64,
    parts: u64,
    dict: Dict,
}

/// The dictionaries of a checkpoint, as a loader uses them.
struct Dict {
    kinds: Vec<Kind>,
    labelsets: Vec<Arc<LabelSet>>,
    schemas: Arc<TermSchemas>,
}

impl Dict {
    /// A copy sharing nothing with `self`, so that loader threads do not contend on
    /// the same reference counts.
    fn deep_clone(&self) -> Dict {
        Dict {
            kinds: self.kinds.iter().map(|k| Kind::new(k.as_str()).unwrap_or_else(|_| k.clone())).collect(),
            labelsets: self.labelsets.iter().map(|l| Arc::new((**l).clone())).collect(),
            schemas: Arc::new(TermSchemas { schemas: self.schemas.schemas.clone() }),
        }
    }
}

fn decode_global(b: &[u8]) -> Option<Global> {
    let mut r = Reader::new(b);
    let end = u64::from_le_bytes(r.array()?);
    let next_seq = u64::from_le_bytes(r.array()?);
    let commit_number = u64::from_le_bytes(r.array()?);
    let chain: [u8; 32] = r.array()?;
    let mut frames = HashMap::new();
    for _ in 0..r.usize()? {
        let ty = r.u8()?;
        let n = r.usize()?;
        if n > r.remaining() {
            return None;
        }
        let mut offs = Vec::with_capacity(n);
        let mut prev = 0u64;
        for _ in 0..n {
            prev = prev.wrapping_add(r.iv()? as u64);
            offs.push(prev);
        }
        if frames.insert(ty, offs).is_some() {
            return None;
        }
    }
    let patients = r.uv()?;
    let parts = r.uv()?;
    // The document count is only a sizing hint for writers of older versions'
    // loaders; the directories give the exact ids.
    let _docs = r.uv()?;
    let n = r.usize()?;
    let mut kinds = Vec::with_capacity(n.min(r.remaining()));
    for _ in 0..n {
        kinds.push(Kind::new(r.str()?).ok()?);
    }
    let n = r.usize()?;
    let mut sets: Vec<Vec<Label>> = Vec::with_capacity(n.min(r.remaining()));
    for _ in 0..n {
        let m = r.usize()?;
        let mut set = Vec::with_capacity(m.min(r.remaining()));
        for _ in 0..m {
            set.push(Label::new(r.str()?).ok()?);
        }
        sets.push(set);
    }
    let n = r.usize()?;
    let mut schemas = Vec::with_capacity(n.min(r.remaining()));
    for _ in 0..n {
        let field = r.str()?.to_string();
        let ls = sets.get(r.usize()?)?.clone();
        schemas.push((field, ls));
    }
    if !r.done() {
        return None;
    }
    Some(Global {
        head: LogHead { end, next_seq, commit_number, chain },
        frames,
        patients,
        parts,
        dict: Dict {
            kinds,
            labelsets: sets.into_iter().map(|s| Arc::new(s.into_iter().collect())).collect(),
            schemas: Arc::new(TermSchemas { schemas }),
        },
    })
}

/// What one loader thread decoded: documents in entry order, each patient's range of
/// them, the documents of each kind (by kind id), and how many entries belong to
/// erased patients.
#[derive(Default)]
struct Decoded {
    docs: Vec<(DocumentId, DocEntry)>,
    patients: Vec<(u32, usize, usize)>,
    by_kind: Vec<Vec<DocumentId>>,
    erased: usize,
}

/// Decodes the plaintext of one patient entry, `buf[range]`, into `out`.
fn decode_patient(
    buf: &Arc<Zeroizing<Vec<u8>>>,
    range: Range<usize>,
    slot: u32,
    g: &Dict,
    out: &mut Decoded,
) -> Option<()> {
    let base = range.start;
    let pt: &[u8] = buf.get(range)?;
    let mut r = Reader::new(pt);
    let n = r.usize()?;
    // A document takes at least 22 bytes.
    if n > r.remaining() / 22 {
        return None;
    }
    let start = out.docs.len();
    out.docs.reserve(n);
    let mut prev_created = 0i64;
    let nschemas = g.schemas.schemas.len();
    for _ in 0..n {
        let id = DocumentId(r.array()?);
        let kind_id = r.usize()?;
        let kind = g.kinds.get(kind_id)?.clone();
        let labels = g.labelsets.get(r.usize()?)?.clone();
        let created_us = prev_created.wrapping_add(r.iv()?);
        prev_created = created_us;
        let commit = r.uv()?;
        let nv = r.usize()?;
        if nv > r.remaining() / 3 {
            return None;
        }
        let mut versions = crate::store::catalog::Versions::with_capacity(nv);
        let mut prev = created_us;
        for _ in 0..nv {
            let version = r.u32v()?;
            let offset = r.uv()?;
            let updated_us = prev.wrapping_add(r.iv()?);
            prev = updated_us;
            versions.push(VersionLoc { version, offset, updated_us });
        }
        let n = r.usize()?;
        let at = base + r.pos();
        let tb = r.take(n)?;
        if !wire::check_terms(tb, nschemas) {
            return None;
        }
        if versions.is_empty() {
            continue;
        }
        let terms = Terms::packed(g.schemas.clone(), buf.clone(), at..at + n);
        if out.by_kind.len() <= kind_id {
            out.by_kind.resize_with(kind_id + 1, Vec::new);
        }
        out.by_kind[kind_id].push(id);
        out.docs.push((id, DocEntry { patient_slot: slot, kind, created_us, versions, labels, terms, commit }));
    }
    if !r.done() {
        return None;
    }
    out.patients.push((slot, start, out.docs.len()));
    Some(())
}

/// Largest run of patient entries copied out of the map as one piece (a piece holds
/// whole entries; a bigger entry gets a piece of its own). Pieces are the unit of work
/// of the loader threads, and stay small enough to be decrypted and decoded in cache.
const PIECE_BYTES: usize = 128 * 1024;

/// A checkpoint whose frames have been copied out of the map and verified (CRCs,
/// sequence numbers, hash chain and commit MAC), with its global part and directories
/// decoded and its patient entries still sealed.
pub(crate) struct Verified {
    offset: u64,
    global: Global,
    /// Runs of whole patient entries (`slot || length || sealed entry`), in log order,
    /// exactly as the frames hold them: the copies that were hashed are the ones that
    /// are decrypted (in place) and used.
    pieces: Vec<Vec<u8>>,
    /// Every patient entry, in log order, as its directory record describes it.
    entries: Vec<SealedEntry>,
    /// The directories' document ids, entry after entry.
    ids: Vec<DocumentId>,
    /// Offsets of the checkpoint's own frames (global and parts, not the commit).
    frame_offsets: Vec<u64>,
    /// Log head after the checkpoint's commit.
    head: LogHead,
}

/// Where one sealed patient entry is, and what its directory record says of it.
#[derive(Debug, Clone)]
struct SealedEntry {
    slot: u32,
    /// Index of the piece holding it, and its range there (header included).
    piece: u32,
    start: u32,
    end: u32,
    /// Number of documents (and their ids' position in `Verified::ids`).
    docs: u32,
    first_id: usize,
    versions: u64,
}

/// Decodes a directory plaintext (§12.3.2): appends its records to `entries` (with
/// `piece` and range not set yet) and its ids to `ids`.
fn decode_directory(b: &[u8], entries: &mut Vec<SealedEntry>, ids: &mut Vec<DocumentId>) -> Option<()> {
    let mut r = Reader::new(b);
    let n = r.usize()?;
    if n > r.remaining() / 3 {
        return None;
    }
    for _ in 0..n {
        let slot = u32::try_from(r.uv()?).ok()?;
        let docs = r.usize()?;
        if docs > r.remaining() / 16 {
            return None;
        }
        let versions = r.uv()?;
        let first_id = ids.len();
        for _ in 0..docs {
            ids.push(DocumentId(r.array()?));
        }
        let docs = u32::try_from(docs).ok()?;
        entries.push(SealedEntry { slot, piece: 0, start: 0, end: 0, docs, first_id, versions });
    }
    r.done().then_some(())
}

/// What a checkpoint load hands to open.
pub(crate) struct Loaded {
    /// The catalog as of the checkpoint's commit (its own frames noted in it).
    pub(crate) catalog: Catalog,
    /// Log head after the checkpoint's commit: the scan of the rest of the log resumes
    /// there.
    pub(crate) head: LogHead,
    /// Frames verified here (the checkpoint frames and their commit frame).
    pub(crate) frames: u64,
    /// The term schemas the checkpoint's packed terms use: the store's registry starts
    /// from them, so later checkpoints copy those terms as they are.
    pub(crate) schemas: Arc<TermSchemas>,
}

/// Reads the checkpoint at `offset` out of `bytes` (the map, cut at the end a read-only
/// open may use) and verifies it as a commit, like the scan of §14 would: every frame
/// is copied out of the map once, and that copy is CRC-checked, sequence-checked and
/// hashed into the chain starting from the log head stored in the global part; the
/// commit frame after the parts must carry that chain and a valid MAC. Needs no
/// patient key, so open runs it while the keyring loads.
pub(crate) fn read_verified(keys: &KeyHierarchy, bytes: &[u8], offset: u64) -> Result<Verified> {
    let bad = |what: &'static str| Error::Integrity { what, offset };
    let start = usize::try_from(offset).map_err(|_| bad("checkpoint pointer"))?;
    // Copies the header of the frame at `pos` out of the map and parses it.
    let head_at = |pos: usize| -> Result<([u8; FRAME_HEADER], FrameHead)> {
        let rest = bytes.get(pos..).ok_or(bad("checkpoint pointer"))?;
        let hdr: [u8; FRAME_HEADER] =
            rest.get(..FRAME_HEADER).and_then(|h| h.try_into().ok()).ok_or(bad("checkpoint frame"))?;
        let h = frame::parse_head(&hdr).map_err(|_| bad("checkpoint frame"))?;
        if rest.len() < h.total() {
            return Err(bad("checkpoint frame"));
        }
        Ok((hdr, h))
    };
    // A whole small frame (the global part, the commit), copied and CRC-checked.
    let small_frame = |pos: usize, ty: FrameType| -> Result<(FrameHead, Vec<u8>)> {
        let (hdr, h) = head_at(pos)?;
        if h.ty != ty {
            return Err(bad(if ty == FrameType::Commit { "checkpoint commit" } else { "checkpoint pointer" }));
        }
        let copy = bytes.get(pos..pos + h.total()).ok_or(bad("checkpoint frame"))?.to_vec();
        if copy[..FRAME_HEADER] != hdr || frame::check(&h, &copy).is_err() {
            return Err(bad("checkpoint frame"));
        }
        Ok((h, copy))
    };
    let vid = keys.vault_id();
    let mut pos = start;
    let (gh, gframe) = small_frame(pos, FrameType::Checkpoint)?;
    let g = &gframe[FRAME_HEADER..];
    if g.first() != Some(&b'G') {
        return Err(bad("checkpoint frame"));
    }
    if g.get(1) != Some(&CHECKPOINT_VERSION) {
        return Err(bad("checkpoint version"));
    }
    let pt = aead::open(&keys.index, &global_aad(&vid), &g[2..]).map_err(|_| bad("checkpoint"))?;
    let global = decode_global(&pt).ok_or(bad("checkpoint"))?;
    drop(pt);
    if global.head.end != offset {
        return Err(bad("checkpoint pointer"));
    }
    let chain_err = bad("checkpoint commit (hash chain or MAC)");
    if gh.seq != global.head.next_seq {
        return Err(chain_err);
    }
    let mut chain = frame::chain_step(&global.head.chain, &gframe);
    let mut seq = gh.seq.wrapping_add(1);
    let mut frame_offsets = vec![offset];
    pos += gh.total();
    let mut pieces = Vec::new();
    let (mut entries, mut ids) = (Vec::new(), Vec::new());
    for _ in 0..global.parts {
        let (hdr, h) = head_at(pos)?;
        if h.ty != FrameType::Checkpoint || h.len < 2 {
            return Err(bad("checkpoint frame"));
        }
        if h.seq != seq {
            return Err(chain_err);
        }
        frame_offsets.push(pos as u64);
        let payload = &bytes[pos + FRAME_HEADER..pos + h.total()];
        let mut crc = crc32fast::Hasher::new();
        crc.update(&hdr[..16]);
        let mut hash = blake3::Hasher::new();
        hash.update(&chain);
        hash.update(&hdr);
        let tag: [u8; 2] = [payload[0], payload[1]];
        if tag != [b'P', CHECKPOINT_VERSION] {
            return Err(bad("checkpoint frame"));
        }
        crc.update(&tag);
        hash.update(&tag);
        // The directory: its length and sealed bytes, copied, checked and opened.
        let dlen = payload.get(2..6).map(|b| le_u32(b, 0) as usize).ok_or(bad("checkpoint frame"))?;
        let dir_end = 6usize.checked_add(dlen).filter(|&e| e <= payload.len()).ok_or(bad("checkpoint frame"))?;
        let mut dir = payload[2..dir_end].to_vec();
        crc.update(&dir);
        hash.update(&dir);
        let part_no = frame_offsets.len() as u64 - 2;
        let first_entry = entries.len();
        {
            let aad = directory_aad(&vid, global.head.commit_number, part_no);
            let pt = aead::open_in_place(&keys.index, &aad, &mut dir[4..]).map_err(|_| bad("checkpoint directory"))?;
            decode_directory(pt, &mut entries, &mut ids).ok_or(bad("checkpoint directory"))?;
        }
        // Split the entries into runs of whole entries; the boundaries are found in
        // the map, but only the copies are used: each copy is walked again below, and
        // its entries must line up with the directory's records.
        let mut i = dir_end;
        let mut k = first_entry;
        while i < payload.len() {
            let mut j = i;
            while j < payload.len() {
                if j + 8 > payload.len() {
                    return Err(bad("checkpoint frame"));
                }
                let next = (j + 8).checked_add(le_u32(payload, j + 4) as usize).ok_or(bad("checkpoint frame"))?;
                if next > payload.len() {
                    return Err(bad("checkpoint frame"));
                }
                if j > i && next - i > PIECE_BYTES {
                    break;
                }
                j = next;
            }
            let piece = payload[i..j].to_vec();
            crc.update(&piece);
            hash.update(&piece);
            let piece_no = u32::try_from(pieces.len()).map_err(|_| bad("checkpoint frame"))?;
            let mut e = 0;
            while e < piece.len() {
                let next = (e + 8).checked_add(piece.get(e..e + 8).map_or(usize::MAX, |b| le_u32(b, 4) as usize));
                let next = next.filter(|&n| n <= piece.len()).ok_or(bad("checkpoint frame"))?;
                let rec = entries.get_mut(k).ok_or(bad("checkpoint directory"))?;
                if rec.slot != le_u32(&piece, e) {
                    return Err(bad("checkpoint directory"));
                }
                (rec.piece, rec.start, rec.end) = (piece_no, e as u32, next as u32);
                k += 1;
                e = next;
            }
            pieces.push(piece);
            i = j;
        }
        if k != entries.len() {
            return Err(bad("checkpoint directory"));
        }
        if crc.finalize() != h.crc {
            return Err(bad("checkpoint frame"));
        }
        chain = *hash.finalize().as_bytes();
        seq = seq.wrapping_add(1);
        pos += h.total();
    }
    let commit_at = pos;
    let (ch, cframe) = small_frame(commit_at, FrameType::Commit)?;
    let c = Commit::decode(&cframe[FRAME_HEADER..]).ok_or(bad("checkpoint commit"))?;
    if ch.seq != seq
        || global.head.commit_number.checked_add(1) != Some(c.number)
        || c.first_seq != global.head.next_seq
        || global.parts.checked_add(1) != Some(u64::from(c.frames))
        || !ct_eq(&c.chain, &chain)
        || !ct_eq(&c.mac, &keys.commit_mac.mac(&[&c.mac_input()]))
    {
        return Err(chain_err);
    }
    chain = frame::chain_step(&chain, &cframe);
    let end = (commit_at + ch.total()) as u64;
    let head = LogHead { end, next_seq: seq.wrapping_add(1), commit_number: c.number, chain };
    Ok(Verified { offset, global, pieces, entries, ids, frame_offsets, head })
}

/// Decrypts (in place) and decodes the patient entries of one piece.
fn decode_piece(
    mut buf: Zeroizing<Vec<u8>>,
    vid: &[u8; 16],
    ring: &Keyring,
    commit: u64,
    dict: &Dict,
    offset: u64,
    out: &mut Decoded,
) -> Result<()> {
    let bad = || Error::Integrity { what: "checkpoint patient entry", offset };
    // Entry boundaries, read again from the copy (the only bytes used), then every
    // live entry opened in place: (slot, plaintext range).
    let mut open: Vec<(u32, Range<usize>)> = Vec::with_capacity(64);
    let mut i = 0;
    while i < buf.len() {
        if i + 8 > buf.len() {
            return Err(Error::Integrity { what: "checkpoint frame", offset });
        }
        let slot = le_u32(&buf, i);
        let len = le_u32(&buf, i + 4) as usize;
        let end = (i + 8).checked_add(len).filter(|&e| e <= buf.len());
        let end = end.ok_or(Error::Integrity { what: "checkpoint frame", offset })?;
        match ring.key(slot, offset) {
            Ok(pk) => {
                let sealed = &mut buf[i + 8..end];
                let pt = aead::open_in_place(&keys::patient_index_key(pk), &patient_aad(vid, slot, commit), sealed)
                    .map_err(|_| bad())?;
                let n = pt.len();
                let s = i + 8 + aead::NONCE_LEN;
                open.push((slot, s..s + n));
            }
            Err(Error::Erased) => out.erased += 1,
            Err(e) => return Err(e),
        }
        i = end;
    }
    // Room for every document of the piece at once (each entry starts with its
    // document count; a document takes at least 22 bytes).
    let docs =
        open.iter().filter_map(|(_, r)| Reader::new(buf.get(r.clone())?).usize()).fold(0usize, usize::saturating_add);
    out.docs.reserve(docs.min(buf.len() / 22));
    let buf = Arc::new(buf);
    for (slot, range) in open {
        decode_patient(&buf, range, slot, dict, out).ok_or_else(bad)?;
    }
    Ok(())
}

/// Checks a verified checkpoint against the keyring and makes it a catalog whose
/// patient entries are still sealed: every live entry's document ids (from the
/// directories) are indexed, and the entries are decrypted and decoded on first use
/// ([`Catalog::load_patient`], [`Catalog::load_all`]). An entry of an erased patient
/// is dropped; an entry whose keyring record is damaged or missing fails the load.
pub(crate) fn load(keys: &KeyHierarchy, ring: &Keyring, v: Verified) -> Result<Loaded> {
    let Verified { offset, mut global, pieces, entries, ids, frame_offsets, head } = v;
    let bad = |what: &'static str| Error::Integrity { what, offset };
    if entries.len() as u64 != global.patients {
        return Err(bad("checkpoint"));
    }
    let mut cat = Catalog::lazy();
    cat.frames = std::mem::take(&mut global.frames);
    let mut pending = cat.docs.pending(ids.len());
    let mut by_slot = HashMap::with_capacity(entries.len());
    let mut left = vec![0u32; pieces.len()];
    for (k, e) in entries.iter().enumerate() {
        match ring.key(e.slot, offset) {
            Ok(_) => {}
            Err(Error::Erased) => continue,
            Err(err) => return Err(err),
        }
        if by_slot.insert(e.slot, k as u32).is_some() {
            return Err(bad("checkpoint patient entry"));
        }
        let mine = ids.get(e.first_id..e.first_id + e.docs as usize).ok_or(bad("checkpoint directory"))?;
        for id in mine {
            cat.docs.note_unloaded(*id, k as u32, &mut pending);
        }
        cat.versions += e.versions;
        left[e.piece as usize] += 1;
    }
    drop(ids);
    // A document id in two entries (or twice in one) is found here.
    cat.docs.index_pending(pending).map_err(|_| bad("checkpoint directory"))?;
    // The checkpoint's own frames, as the scan would have noted them.
    for off in &frame_offsets {
        cat.note_frame(FrameType::Checkpoint, *off);
    }
    let schemas = global.dict.schemas.clone();
    if !by_slot.is_empty() {
        let pieces = pieces.into_iter().zip(&left).map(|(p, &n)| (n > 0).then(|| Arc::new(p))).collect();
        let dict = Arc::new(global.dict);
        cat.unloaded = Some(Box::new(Unloaded {
            vid: keys.vault_id(),
            commit: global.head.commit_number,
            offset,
            dict,
            pieces,
            left,
            entries,
            by_slot,
        }));
    }
    Ok(Loaded { catalog: cat, head, frames: frame_offsets.len() as u64 + 1, schemas })
}

/// The patient entries of the checkpoint a catalog was opened from that are not
/// decoded yet: sealed copies of the verified frames, and what their directories say.
#[derive(Clone)]
pub(crate) struct Unloaded {
    vid: [u8; 16],
    commit: u64,
    /// The checkpoint's offset (for errors).
    offset: u64,
    dict: Arc<Dict>,
    /// The verified copies (dropped once none of their entries is left).
    pieces: Vec<Option<Arc<Vec<u8>>>>,
    /// Entries of each piece not decoded yet.
    left: Vec<u32>,
    entries: Vec<SealedEntry>,
    /// Slot -> entry, for the entries not decoded yet.
    by_slot: HashMap<u32, u32>,
}

impl std::fmt::Debug for Unloaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unloaded").field("entries", &self.entries.len()).field("left", &self.by_slot.len()).finish()
    }
}

impl Unloaded {
    /// Marks the entry of `slot` as taken (decoded, or dropped with its patient), and
    /// drops its piece once no entry of it is left.
    fn take(&mut self, slot: u32) {
        let Some(k) = self.by_slot.remove(&slot) else { return };
        let Some(p) = self.entries.get(k as usize).map(|e| e.piece as usize) else { return };
        if let Some(n) = self.left.get_mut(p) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.pieces[p] = None;
            }
        }
    }

    /// The sealed bytes of an entry (header included).
    fn bytes(&self, e: &SealedEntry) -> Option<&[u8]> {
        self.pieces.get(e.piece as usize)?.as_ref()?.get(e.start as usize..e.end as usize)
    }
}

impl Catalog {
    /// Whether every patient entry of the checkpoint this catalog was opened from has
    /// been decoded (always true for a catalog that was not).
    pub fn is_loaded(&self) -> bool {
        self.unloaded.is_none()
    }

    /// Number of patient entries not decoded yet.
    pub fn unloaded_patients(&self) -> usize {
        self.unloaded.as_ref().map_or(0, |u| u.by_slot.len())
    }

    /// Whether the documents of `slot` are still in a sealed checkpoint entry.
    pub(crate) fn patient_unloaded(&self, slot: u32) -> bool {
        self.unloaded.as_ref().is_some_and(|u| u.by_slot.contains_key(&slot))
    }

    /// The patient slot of `id` if its entry is not decoded yet.
    pub(crate) fn unloaded_slot_of(&self, id: &DocumentId) -> Option<u32> {
        let u = self.unloaded.as_ref()?;
        let k = self.docs.unloaded_entry(id)?;
        let slot = u.entries.get(k as usize)?.slot;
        (u.by_slot.get(&slot) == Some(&k)).then_some(slot)
    }

    /// The highest patient slot with documents (decoded or not).
    pub(crate) fn max_patient_slot(&self) -> Option<u32> {
        let decoded = self.by_patient.iter().filter(|(_, ids)| !ids.is_empty()).map(|(s, _)| *s).max();
        let sealed = self.unloaded.as_ref().and_then(|u| u.by_slot.keys().copied().max());
        decoded.max(sealed)
    }

    /// Drops the sealed entry of `slot` (its patient is being erased). Its documents'
    /// ids stay in the id map, found by nothing.
    pub(crate) fn forget_unloaded(&mut self, slot: u32) {
        if let Some(u) = self.unloaded.as_mut() {
            u.take(slot);
            if u.by_slot.is_empty() {
                self.unloaded = None;
            }
        }
    }

    /// Decrypts and decodes the checkpoint entry of `slot`, if it has one not decoded
    /// yet, and adds its documents.
    pub(crate) fn load_patient(&mut self, slot: u32, ring: &Keyring) -> Result<()> {
        self.load_where(ring, Some(&[slot]))
    }

    /// Decrypts and decodes the checkpoint entries of `slots` not decoded yet (on every
    /// core), and adds their documents.
    pub(crate) fn load_patients(&mut self, slots: &[u32], ring: &Keyring) -> Result<()> {
        self.load_where(ring, Some(slots))
    }

    /// Decrypts and decodes every checkpoint entry not decoded yet (on every core),
    /// and adds their documents.
    pub(crate) fn load_all(&mut self, ring: &Keyring) -> Result<()> {
        self.load_where(ring, None)
    }

    /// Decodes the sealed entries of `only` (every sealed entry for `None`). An entry
    /// counts as decoded only once its documents are in: after a failure it stays
    /// sealed, so every later use of the patient fails the same way instead of finding
    /// nothing.
    fn load_where(&mut self, ring: &Keyring, only: Option<&[u32]>) -> Result<()> {
        let Some(u) = self.unloaded.as_mut() else { return Ok(()) };
        let (vid, commit, offset, dict) = (u.vid, u.commit, u.offset, u.dict.clone());
        let bad = || Error::Integrity { what: "checkpoint patient entry", offset };
        // The expected (entry, documents) of every slot to decode.
        let entry_of = |s: u32| u.by_slot.get(&s).map(|&k| (s, (k, u.entries.get(k as usize).map_or(0, |e| e.docs))));
        let want: HashMap<u32, (u32, u32)> = match only {
            Some(slots) => slots.iter().filter_map(|&s| entry_of(s)).collect(),
            None => u.by_slot.keys().filter_map(|&s| entry_of(s)).collect(),
        };
        if want.is_empty() {
            return Ok(());
        }
        // The work, in pieces. Decoding everything, a piece whose entries are all
        // still sealed is taken out and decrypted in place (if anything below fails,
        // the entries stay sealed with no bytes left, and every later load fails the
        // same way); otherwise the wanted entries are copied out, piece by piece.
        let mut wanted: Vec<Vec<usize>> = vec![Vec::new(); u.pieces.len()];
        let mut whole = vec![only.is_none(); u.pieces.len()];
        if only.is_none() {
            for (k, e) in u.entries.iter().enumerate() {
                let p = e.piece as usize;
                if p >= wanted.len() {
                    return Err(bad());
                }
                if u.by_slot.get(&e.slot) == Some(&(k as u32)) {
                    wanted[p].push(k);
                } else {
                    whole[p] = false;
                }
            }
        } else {
            for &(k, _) in want.values() {
                let p = u.entries.get(k as usize).ok_or_else(bad)?.piece as usize;
                wanted.get_mut(p).ok_or_else(bad)?.push(k as usize);
            }
        }
        let mut work: Vec<Zeroizing<Vec<u8>>> = Vec::new();
        for (p, ks) in wanted.iter().enumerate() {
            if ks.is_empty() {
                continue;
            }
            if whole[p] {
                let piece = u.pieces[p].take().ok_or_else(bad)?;
                work.push(Zeroizing::new(Arc::try_unwrap(piece).unwrap_or_else(|a| (*a).clone())));
            } else {
                let mut b = Zeroizing::new(Vec::new());
                for &k in ks {
                    b.extend_from_slice(u.entries.get(k).and_then(|e| u.bytes(e)).ok_or_else(bad)?);
                }
                work.push(b);
            }
        }
        let decode = |piece: Zeroizing<Vec<u8>>, dict: &Dict| -> Result<Decoded> {
            let mut out = Decoded::default();
            decode_piece(piece, &vid, ring, commit, dict, offset, &mut out)?;
            Ok(out)
        };
        let expect = |s: u32| want.get(&s).copied();
        let mut merged = 0usize;
        let mut ids = LoadedIds::default();
        decode_pieces(work, &dict, &decode, &mut |d: Decoded| {
            merged += d.patients.len();
            self.adopt_decoded(d, &dict, &expect, offset, &mut ids)
        })?;
        if merged != want.len() {
            return Err(bad());
        }
        self.docs.index_loaded(ids).map_err(|_| bad())?;
        if let Some(u) = self.unloaded.as_mut() {
            for slot in want.keys() {
                u.take(*slot);
            }
            if only.is_none() || u.by_slot.is_empty() {
                self.unloaded = None;
            }
        }
        Ok(())
    }

    /// Adds the documents of decoded checkpoint entries, after checking them against
    /// their directory records: `expect(slot)` is the (entry, document count) the
    /// directory gave, and every document id must be one the id map holds for that
    /// entry.
    fn adopt_decoded(
        &mut self,
        d: Decoded,
        dict: &Dict,
        expect: &dyn Fn(u32) -> Option<(u32, u32)>,
        offset: u64,
        ids: &mut LoadedIds,
    ) -> Result<()> {
        let bad = || Error::Integrity { what: "checkpoint patient entry", offset };
        if d.erased > 0 {
            return Err(bad());
        }
        let mut ranges = Vec::with_capacity(d.patients.len());
        for &(slot, a, b) in &d.patients {
            let (k, docs) = expect(slot).ok_or_else(bad)?;
            if b - a != docs as usize {
                return Err(bad());
            }
            ranges.push((a..b, k));
        }
        for &(slot, a, b) in &d.patients {
            let ids: Vec<DocumentId> = d.docs.get(a..b).unwrap_or(&[]).iter().map(|(id, _)| *id).collect();
            if self.by_patient.insert(slot, ids).is_some() {
                return Err(bad());
            }
        }
        for (k, ids) in d.by_kind.into_iter().enumerate() {
            if ids.is_empty() {
                continue;
            }
            let kind = dict.kinds.get(k).ok_or_else(bad)?;
            self.by_kind.entry(kind.clone()).or_default().extend(ids);
        }
        self.docs.adopt_loaded(d.docs, &ranges, ids).map_err(|_| bad())
    }
}

/// Decrypts and decodes one piece with the given dictionaries.
type DecodeFn<'a> = dyn Fn(Zeroizing<Vec<u8>>, &Dict) -> Result<Decoded> + Sync + 'a;

/// Decrypts and decodes `pieces` on every core (`decode`), handing each result to
/// `merge` on this thread as it comes.
fn decode_pieces(
    pieces: Vec<Zeroizing<Vec<u8>>>,
    dict: &Dict,
    decode: &DecodeFn<'_>,
    merge: &mut dyn FnMut(Decoded) -> Result<()>,
) -> Result<()> {
    let threads = crate::util::cores().clamp(1, 8);
    if threads == 1 || pieces.len() < 4 {
        for piece in pieces {
            merge(decode(piece, dict)?)?;
        }
        return Ok(());
    }
    // Pieces are taken from a shared counter, so a thread slowed down by other load on
    // the machine takes fewer; this thread merges whatever is ready before taking
    // another piece, and waits only when no piece is left.
    let slots: Vec<std::sync::Mutex<Option<Zeroizing<Vec<u8>>>>> =
        pieces.into_iter().map(|p| std::sync::Mutex::new(Some(p))).collect();
    let slots = &slots;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let next = &next;
    let take = move || {
        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        slots.get(i).and_then(|m| m.lock().unwrap_or_else(|e| e.into_inner()).take())
    };
    let total = slots.len();
    std::thread::scope(|scope| -> Result<()> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Decoded>>(16);
        let mut handles = Vec::new();
        for _ in 1..threads {
            let tx = tx.clone();
            handles.push(scope.spawn(move || {
                let own = dict.deep_clone();
                while let Some(piece) = take() {
                    let r = decode(piece, &own);
                    let failed = r.is_err();
                    if tx.send(r).is_err() || failed {
                        return;
                    }
                }
            }));
        }
        drop(tx);
        let mut done = 0usize;
        let mut mine = || -> Result<()> {
            while let Some(piece) = take() {
                while let Ok(r) = rx.try_recv() {
                    done += 1;
                    merge(r?)?;
                }
                done += 1;
                merge(decode(piece, dict)?)?;
            }
            // Ends when every sender is done (a panicked thread drops its sender too:
            // the count check below catches what it did not send).
            for r in rx.iter() {
                done += 1;
                merge(r?)?;
            }
            Ok(())
        };
        let r = mine();
        // Dropping the receiver first lets a blocked sender finish; joining every
        // thread keeps a panic in one from propagating out of the scope.
        drop(rx);
        let mut joined = true;
        for h in handles {
            joined &= h.join().is_ok();
        }
        r?;
        if !joined || done != total {
            return Err(Error::Integrity { what: "checkpoint", offset: 0 });
        }
        Ok(())
    })
}

impl Store {
    /// Writes an index checkpoint of the current catalog and points the header at it.
    /// Returns the checkpoint's offset.
    pub fn checkpoint(&self) -> Result<u64> {
        let mut b = self.batch()?;
        let payloads = {
            let st = self.read_loaded()?;
            let seed = self.term_registry().schemas();
            encode(self.keys(), &st.keyring, &st.catalog, st.head, &seed)
        };
        let mut first = None;
        for p in &payloads {
            let off = b.append_frame(FrameType::Checkpoint, p)?;
            first.get_or_insert(off);
        }
        b.commit()?;
        let off = first.unwrap_or(0);
        self.set_checkpoint_pointer(off)?;
        Ok(off)
    }

    /// Points the header at a checkpoint (test hook: tests point it at garbage).
    #[doc(hidden)]
    pub fn set_checkpoint_pointer(&self, offset: u64) -> Result<()> {
        let mut w = self.writer_guard();
        let mut h = self.header_guard();
        let mut nh = h.clone();
        nh.checkpoint_offset = offset;
        self.write_header(&mut w, &mut nh)?;
        *h = nh;
        Ok(())
    }

    /// Flips a byte of every sealed checkpoint entry this handle still holds in memory
    /// (test hook: the file is untouched, so only this handle's later decoding of
    /// them fails). Returns the number of entries damaged.
    #[doc(hidden)]
    pub fn damage_sealed_checkpoint_entries(&self) -> usize {
        let mut st = self.write_state();
        let Some(u) = st.catalog.unloaded.as_mut() else { return 0 };
        let mut n = 0;
        for (&slot, &k) in &u.by_slot {
            let Some(e) = u.entries.get(k as usize) else { continue };
            if let Some(Some(piece)) = u.pieces.get_mut(e.piece as usize)
                && let Some(b) = Arc::make_mut(piece).get_mut(e.end as usize - 1)
                && slot == e.slot
            {
                *b ^= 1;
                n += 1;
            }
        }
        n
    }

    /// Appends a checkpoint-typed frame with arbitrary content (test hook for the
    /// fallback path: a checkpoint that verifies as a frame but not as a checkpoint).
    #[doc(hidden)]
    pub fn append_bogus_checkpoint(&self, payload: &[u8]) -> Result<u64> {
        let mut b = self.batch()?;
        let off = b.append_frame(FrameType::Checkpoint, payload)?;
        b.commit()?;
        Ok(off)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::body::IndexKey;

    fn global_plaintext() -> Vec<u8> {
        let mut g = Vec::new();
        g.extend_from_slice(&8192u64.to_le_bytes());
        g.extend_from_slice(&7u64.to_le_bytes());
        g.extend_from_slice(&3u64.to_le_bytes());
        g.extend_from_slice(&[9; 32]);
        wire::put_uv(&mut g, 1);
        g.push(FrameType::Audit as u8);
        wire::put_uv(&mut g, 2);
        wire::put_iv(&mut g, 8192);
        wire::put_iv(&mut g, 100);
        for n in [1u64, 1, 2] {
            wire::put_uv(&mut g, n); // patients, parts, docs
        }
        wire::put_uv(&mut g, 1);
        wire::put_bytes(&mut g, b"Observation");
        wire::put_uv(&mut g, 1);
        wire::put_uv(&mut g, 2);
        wire::put_bytes(&mut g, b"hiv-sti");
        wire::put_bytes(&mut g, b"normal");
        wire::put_uv(&mut g, 1);
        wire::put_bytes(&mut g, b"code");
        wire::put_uv(&mut g, 0);
        g
    }

    fn patient_plaintext() -> Vec<u8> {
        let mut p = Vec::new();
        wire::put_uv(&mut p, 2);
        for d in 0..2u8 {
            p.extend_from_slice(&[d; 16]);
            wire::put_uv(&mut p, 0);
            wire::put_uv(&mut p, 0);
            wire::put_iv(&mut p, 1_700_000_000_000_000);
            wire::put_uv(&mut p, 5);
            wire::put_uv(&mut p, 2);
            for v in 1..=2u64 {
                wire::put_uv(&mut p, v);
                wire::put_uv(&mut p, 8192 + 1000 * v);
                wire::put_iv(&mut p, 10);
            }
            let mut t = Vec::new();
            wire::put_uv(&mut t, 0);
            wire::put_key(&mut t, &IndexKey::Code("loinc".into(), "4548-4".into()));
            wire::put_bytes(&mut p, &t);
        }
        p
    }

    fn decode_all(g: &[u8], p: &[u8]) -> Option<usize> {
        let g = decode_global(g)?;
        let mut out = Decoded::default();
        decode_patient(&Arc::new(Zeroizing::new(p.to_vec())), 0..p.len(), 4, &g.dict, &mut out)?;
        // Packed terms decode (and index) without panicking either.
        for (_, e) in &out.docs {
            let _ = e.terms.as_slice();
        }
        Some(out.docs.len())
    }

    /// A checkpoint's dictionary numbers the seeded table's schemas first: terms packed
    /// under that table or a prefix of it are copied byte for byte; terms under another
    /// table are renumbered into the same schemas (and new ones after them).
    #[test]
    fn seeded_schemas_copy_terms_and_others_are_renumbered() {
        use crate::format::body::IndexTerm;
        use crate::store::catalog::TermRegistry;
        let term = |f: &str, l: Vec<Label>, k: i64| IndexTerm { field: f.into(), labels: l, key: IndexKey::Integer(k) };
        let registry = TermRegistry::default();
        let early = registry.pack(&[term("a", vec![Label::normal()], 1)]);
        let late = registry.pack(&[term("b", vec![Label::normal()], 2), term("a", vec![Label::normal()], 3)]);
        let foreign = Terms::from(vec![term("c", vec![Label::financial()], 4), term("b", vec![Label::normal()], 5)]);
        let seed = registry.schemas();
        let mut d = Dicts::default();
        d.seed(&seed);
        let decoded = |d: &Dicts<'_>, bytes: &[u8]| {
            let mut r = wire::Reader::new(bytes);
            let inner = r.bytes().expect("length-prefixed");
            let mut out = Vec::new();
            wire::each_term(inner, |sid, k| {
                let (field, ls) = d.schemas[sid];
                let labels: Vec<Label> = d.labelsets[ls as usize].iter().map(|l| (*l).clone()).collect();
                out.push((field.to_string(), labels, wire::read_key(k).expect("key")));
            });
            out
        };
        let mut scratch = Vec::new();
        for t in [&early, &late, &foreign] {
            let mut out = Vec::new();
            d.terms(t, &mut out, &mut scratch);
            let want: Vec<_> =
                t.as_slice().iter().map(|x| (x.field.clone(), x.labels.clone(), x.key.clone())).collect();
            assert_eq!(decoded(&d, &out), want);
            if !std::ptr::eq(t, &foreign) {
                let mut verbatim = Vec::new();
                wire::put_bytes(&mut verbatim, t.raw().expect("packed").1);
                assert_eq!(out, verbatim, "copied as packed");
            }
        }
        // The foreign table's known schema kept its seeded id; its new one came after.
        assert_eq!(d.schemas.len(), 3);

        // A seed that names a schema twice keeps no ids: its terms are renumbered.
        let twice =
            TermSchemas { schemas: vec![("a".into(), vec![Label::normal()]), ("a".into(), vec![Label::normal()])] };
        let mut d = Dicts::default();
        d.seed(&twice);
        assert!(d.seeded.is_none());
        let mut out = Vec::new();
        d.terms(&late, &mut out, &mut scratch);
        let want: Vec<_> = late.as_slice().iter().map(|x| (x.field.clone(), x.labels.clone(), x.key.clone())).collect();
        assert_eq!(decoded(&d, &out), want);
    }

    #[test]
    fn decodes_a_hand_built_checkpoint() {
        let g = decode_global(&global_plaintext()).unwrap();
        assert_eq!(g.head.end, 8192);
        assert_eq!(g.frames[&(FrameType::Audit as u8)], vec![8192, 8292]);
        let mut out = Decoded::default();
        let p = patient_plaintext();
        decode_patient(&Arc::new(Zeroizing::new(p.clone())), 0..p.len(), 4, &g.dict, &mut out).unwrap();
        assert_eq!(out.docs.len(), 2);
        let e = &out.docs[1].1;
        assert_eq!((e.patient_slot, e.commit, e.versions.len()), (4, 5, 2));
        assert_eq!(e.versions[1], VersionLoc { version: 2, offset: 10192, updated_us: 3_400_000_000_000_020 });
        assert_eq!(e.labels.len(), 2);
        assert_eq!(e.terms.as_slice()[0].key, IndexKey::Code("loinc".into(), "4548-4".into()));
        assert_eq!(e.terms.as_slice()[0].labels, vec![Label::hiv_sti(), Label::normal()]);
    }

    #[test]
    fn damaged_plaintexts_are_rejected_without_panicking() {
        let (g, p) = (global_plaintext(), patient_plaintext());
        assert_eq!(decode_all(&g, &p), Some(2));
        for n in 0..g.len() {
            assert!(decode_global(&g[..n]).is_none(), "global cut at {n}");
        }
        for n in 0..p.len() {
            assert!(decode_all(&g, &p[..n]).is_none(), "entry cut at {n}");
        }
        for i in 0..g.len().max(p.len()) {
            for x in [0x01u8, 0x80, 0xff] {
                let mut g2 = g.clone();
                if let Some(b) = g2.get_mut(i) {
                    *b ^= x;
                }
                let mut p2 = p.clone();
                if let Some(b) = p2.get_mut(i) {
                    *b ^= x;
                }
                let _ = decode_all(&g2, &p);
                let _ = decode_all(&g, &p2);
            }
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..300 {
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = decode_global(&junk);
            let _ = decode_all(&g, &junk);
        }
    }
}
