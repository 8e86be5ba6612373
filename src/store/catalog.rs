//! The in-memory catalog: where every document version is, which documents each
//! patient has, and the value indexes used by queries. Rebuilt at open; never
//! written to disk in plaintext.
//!
//! Built for a fast open of large vaults: a document loaded from an index checkpoint
//! keeps its index terms in the packed form they have inside the checkpoint (one small
//! buffer, decoded on first use), its label set is shared with every other document
//! that has the same one, and the value indexes ([`Catalog::values`]) are built from
//! the packed terms the first time a query needs them rather than at open. An open
//! that replays the whole log (no usable checkpoint) defers them the same way.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, OnceLock};

use std::ops::Range;

use zeroize::Zeroizing;

use crate::format::body::{IndexKey, IndexTerm};
use crate::format::frame::FrameType;
use crate::model::{DocumentId, Kind, Label, LabelSet};

/// Location of one stored version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionLoc {
    /// Version number.
    pub version: u32,
    /// Offset of its record frame.
    pub offset: u64,
    /// When it was written, Unix microseconds.
    pub updated_us: i64,
}

/// The versions of one document, oldest first: most documents have one, kept inline
/// (no heap allocation per document; a million-document catalog saves a million).
pub type Versions = smallvec::SmallVec<[VersionLoc; 1]>;

/// What the catalog knows of one document.
#[derive(Debug, Clone)]
pub struct DocEntry {
    /// Keyring slot of the patient.
    pub patient_slot: u32,
    /// Kind.
    pub kind: Kind,
    /// Creation time, Unix microseconds.
    pub created_us: i64,
    /// Every version, oldest first.
    pub versions: Versions,
    /// Labels of every field of the latest version (shared between documents with the
    /// same label set).
    pub labels: Arc<LabelSet>,
    /// Index terms of the latest version.
    pub terms: Terms,
    /// Commit sequence number that made the latest version visible.
    pub commit: u64,
}

impl DocEntry {
    /// The latest version.
    pub fn latest(&self) -> &VersionLoc {
        // A DocEntry is only created together with its first version.
        &self.versions[self.versions.len() - 1]
    }
}

/// Field name and labels of index terms, by the id packed terms use.
#[derive(Debug, Default)]
pub(crate) struct TermSchemas {
    /// (field name, labels of the field).
    pub(crate) schemas: Vec<(String, Vec<Label>)>,
}

/// The term schema ids of the terms a store packs (as versions are prepared, or
/// replayed at open): each (field, labels) pair gets the next id the first time it is
/// seen, and keeps it. The table is replaced by a longer copy when a schema is added
/// (its ids are a prefix of the new one's), so terms packed earlier keep theirs, and
/// the threads that prepare versions read a snapshot of it without a lock
/// (one packer per thread and run of documents).
#[derive(Debug, Default)]
pub struct TermRegistry {
    table: std::sync::RwLock<Arc<TermTable>>,
}

/// Schemas a registry shares at most. Each schema added copies the table (documents
/// packed earlier keep the copy they were packed under), so the memory held by those
/// copies grows with the square of their number; past this bound a document whose
/// terms need a new schema is packed under a table of its own instead. A vault's
/// indexed fields times the label sets they carry stay far below it.
const SHARED_SCHEMAS: usize = 256;

/// A snapshot of a [`TermRegistry`].
#[derive(Debug, Default)]
struct TermTable {
    /// Field -> (labels, id) of each of its schemas.
    ids: HashMap<String, Vec<(Vec<Label>, u32)>>,
    /// The schemas by id, shared with the packed terms.
    schemas: Arc<TermSchemas>,
}

impl TermTable {
    /// The table of `schemas`, with its index by field (a schema named twice keeps its
    /// first id).
    fn of(schemas: Arc<TermSchemas>) -> TermTable {
        let mut ids: HashMap<String, Vec<(Vec<Label>, u32)>> = HashMap::new();
        for (i, (field, labels)) in schemas.schemas.iter().enumerate() {
            let known = ids.get(field).is_some_and(|v| v.iter().any(|(l, _)| l == labels));
            if !known {
                ids.entry(field.clone()).or_default().push((labels.clone(), i as u32));
            }
        }
        TermTable { ids, schemas }
    }

    fn find(&self, field: &str, labels: &[Label]) -> Option<u32> {
        self.ids.get(field).and_then(|v| v.iter().find(|(l, _)| l.as_slice() == labels)).map(|x| x.1)
    }
}

impl TermRegistry {
    /// `terms` packed under this registry's schema ids (as [`NewVersion::terms`] wants
    /// them). Many documents are packed faster by one packer per thread.
    pub fn pack(&self, terms: &[IndexTerm]) -> Terms {
        self.packer().pack(terms)
    }

    /// A registry whose first ids are `schemas`' (those of a loaded checkpoint).
    pub(crate) fn starting_from(schemas: Arc<TermSchemas>) -> TermRegistry {
        TermRegistry { table: std::sync::RwLock::new(Arc::new(TermTable::of(schemas))) }
    }

    /// The current table's schemas (every table this registry handed out is a prefix).
    pub(crate) fn schemas(&self) -> Arc<TermSchemas> {
        self.table.read().unwrap_or_else(|p| p.into_inner()).schemas.clone()
    }

    /// A packer working from the current table (one per thread and run of documents).
    pub(crate) fn packer(&self) -> TermPacker<'_> {
        let table = self.table.read().unwrap_or_else(|p| p.into_inner()).clone();
        TermPacker { registry: self, table, recent: Vec::new(), scratch: Zeroizing::new(Vec::new()) }
    }

    /// The table with (`field`, `labels`) in it (added if no thread has yet), or `None`
    /// if it is not there and the table is full ([`SHARED_SCHEMAS`]).
    fn add(&self, field: &str, labels: &[Label]) -> Option<Arc<TermTable>> {
        let mut t = self.table.write().unwrap_or_else(|p| p.into_inner());
        if t.find(field, labels).is_none() {
            if t.schemas.schemas.len() >= SHARED_SCHEMAS {
                return None;
            }
            let mut schemas = t.schemas.schemas.clone();
            schemas.push((field.to_string(), labels.to_vec()));
            *t = Arc::new(TermTable::of(Arc::new(TermSchemas { schemas })));
        }
        Some(t.clone())
    }
}

/// Packs documents' index terms under a [`TermRegistry`]'s schema ids.
pub(crate) struct TermPacker<'r> {
    registry: &'r TermRegistry,
    table: Arc<TermTable>,
    /// The schema id of each position of the last document's terms: documents of one
    /// kind list the same fields in the same order, so most terms are found here by
    /// comparing instead of hashing.
    recent: Vec<u32>,
    /// The encoding of the terms being packed (reused; wiped when dropped).
    scratch: Zeroizing<Vec<u8>>,
}

impl TermPacker<'_> {
    /// The id of (`field`, `labels`), the `pos`-th term of its document; `None` if it
    /// has none and the registry is full.
    fn id(&mut self, pos: usize, field: &str, labels: &[Label]) -> Option<u32> {
        if let Some(&i) = self.recent.get(pos)
            && self.table.schemas.schemas.get(i as usize).is_some_and(|(f, l)| f == field && l.as_slice() == labels)
        {
            return Some(i);
        }
        let i = match self.table.find(field, labels) {
            Some(i) => i,
            None => {
                self.table = self.registry.add(field, labels)?;
                // Just added, by this thread or another.
                self.table.find(field, labels)?
            }
        };
        match self.recent.get_mut(pos) {
            Some(r) => *r = i,
            None => self.recent.push(i),
        }
        Some(i)
    }

    /// `terms` packed (docs/FORMAT.md §12.3.2) into one buffer of their own, the
    /// form a checkpoint load gives them: one allocation per document instead of
    /// three per term, and read by a checkpoint or a flush without following pointers.
    pub(crate) fn pack(&mut self, terms: &[IndexTerm]) -> Terms {
        if terms.is_empty() {
            return Terms::default();
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        for (pos, t) in terms.iter().enumerate() {
            let Some(sid) = self.id(pos, &t.field, &t.labels) else {
                // The registry is full and lacks one of this document's schemas.
                self.scratch = scratch;
                return TermRegistry::default().pack(terms);
            };
            wire::put_uv(&mut scratch, u64::from(sid));
            wire::put_key(&mut scratch, &t.key);
        }
        // Copied at its exact size: no partly filled buffer is left in freed memory.
        let packed = Zeroizing::new(scratch.to_vec());
        let len = packed.len();
        self.scratch = scratch;
        Terms::packed(self.table.schemas.clone(), Arc::new(packed), 0..len)
    }
}

/// The documents' label sets, shared: most documents of a vault have one of a few.
#[derive(Debug, Default, Clone)]
struct LabelSets(HashSet<Arc<LabelSet>>);

/// Distinct label sets kept for sharing; past this, a new set gets its own copy.
const SHARED_LABEL_SETS: usize = 4096;

impl LabelSets {
    /// The shared copy of `set`.
    fn share(&mut self, set: LabelSet) -> Arc<LabelSet> {
        if let Some(a) = self.0.get(&set) {
            return a.clone();
        }
        let a = Arc::new(set);
        if self.0.len() < SHARED_LABEL_SETS {
            self.0.insert(a.clone());
        }
        a
    }
}

/// The index terms of one document version, packed (the encoding of docs/FORMAT.md
/// §12.3.2: a schema id per term, then its value): under the store's [`TermRegistry`]
/// where a version is prepared or replayed, or loaded from a checkpoint entry
/// (validated). Decoded into a list only
/// when one is asked for ([`Terms::as_slice`]); the packed bytes are wiped when
/// dropped. No terms: nothing packed.
#[derive(Clone, Default)]
pub struct Terms {
    packed: Option<Packed>,
    list: OnceLock<Vec<IndexTerm>>,
}

/// Packed terms: a range of a decrypted checkpoint entry (a zeroizing buffer shared
/// by the documents of that entry) and the schemas their ids refer to.
#[derive(Clone)]
struct Packed {
    schemas: Arc<TermSchemas>,
    buf: Arc<Zeroizing<Vec<u8>>>,
    start: u32,
    end: u32,
}

impl Packed {
    fn bytes(&self) -> &[u8] {
        self.buf.get(self.start as usize..self.end as usize).unwrap_or(&[])
    }
}

impl std::fmt::Debug for Terms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Index values are PHI: only the shape.
        f.debug_struct("Terms").field("packed", &self.packed.is_some()).finish_non_exhaustive()
    }
}

impl From<Vec<IndexTerm>> for Terms {
    /// `v` packed under schema ids of its own.
    fn from(v: Vec<IndexTerm>) -> Self {
        TermRegistry::default().pack(&v)
    }
}

impl Terms {
    /// Packed terms `buf[range]` (already validated by [`wire::check_terms`] against
    /// `schemas`).
    pub(crate) fn packed(schemas: Arc<TermSchemas>, buf: Arc<Zeroizing<Vec<u8>>>, range: Range<usize>) -> Self {
        let (start, end) = match (u32::try_from(range.start), u32::try_from(range.end)) {
            (Ok(s), Ok(e)) if s <= e && range.end <= buf.len() => (s, e),
            _ => (0, 0),
        };
        Terms { packed: Some(Packed { schemas, buf, start, end }), list: OnceLock::new() }
    }

    /// The terms (decoded on first use when packed).
    pub fn iter(&self) -> std::slice::Iter<'_, IndexTerm> {
        self.as_slice().iter()
    }

    /// The terms as a slice (decoded on first use when packed).
    pub fn as_slice(&self) -> &[IndexTerm] {
        self.list.get_or_init(|| match &self.packed {
            Some(p) => {
                let mut out = Vec::new();
                wire::each_term(p.bytes(), |sid, key| {
                    if let (Some((field, labels)), Some(key)) = (p.schemas.schemas.get(sid), wire::read_key(key)) {
                        out.push(IndexTerm { field: field.clone(), labels: labels.clone(), key });
                    }
                });
                out
            }
            None => Vec::new(),
        })
    }

    /// Calls `f` with the labels of each term of `field`, without decoding packed
    /// values; returns whether the field has a term.
    pub(crate) fn labels_of(&self, field: &str, mut f: impl FnMut(&[Label])) -> bool {
        let mut found = false;
        if let Some(p) = &self.packed {
            wire::each_term(p.bytes(), |sid, _| {
                if let Some((name, labels)) = p.schemas.schemas.get(sid)
                    && name == field
                {
                    f(labels);
                    found = true;
                }
            });
        }
        found
    }

    /// Whether `f` holds for a value of `field`. The terms are not decoded into a list
    /// (nor kept decoded): only the values of `field` are, one at a time.
    pub fn any_value_of(&self, field: &str, mut f: impl FnMut(&IndexKey) -> bool) -> bool {
        let mut hit = false;
        if let Some(p) = &self.packed {
            wire::each_term(p.bytes(), |sid, key| {
                if !hit
                    && p.schemas.schemas.get(sid).is_some_and(|(name, _)| name == field)
                    && let Some(k) = wire::read_key(key)
                {
                    hit = f(&k);
                }
            });
        }
        hit
    }

    /// The packed terms and the schemas their ids refer to; `None` when there are none.
    pub(crate) fn raw(&self) -> Option<(&Arc<TermSchemas>, &[u8])> {
        self.packed.as_ref().map(|p| (&p.schemas, p.bytes()))
    }
}

/// A fast hasher for document ids (random 16 bytes), keyed per map so that chosen
/// ids cannot degrade the map.
#[derive(Clone, Copy, Debug)]
pub struct IdHashState {
    k0: u64,
    k1: u64,
}

impl Default for IdHashState {
    fn default() -> Self {
        let s = std::collections::hash_map::RandomState::new();
        IdHashState { k0: s.hash_one(0x6964_u64), k1: s.hash_one(0x6b31_u64) | 1 }
    }
}

impl BuildHasher for IdHashState {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher { k0: self.k0, k1: self.k1, h: 0 }
    }
}

/// The hasher of [`IdHashState`].
#[derive(Clone, Copy, Debug)]
pub struct IdHasher {
    k0: u64,
    k1: u64,
    h: u64,
}

fn fold_mul(a: u64, b: u64) -> u64 {
    let m = u128::from(a).wrapping_mul(u128::from(b));
    (m as u64) ^ ((m >> 64) as u64)
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(16) {
            let mut lo = [0u8; 8];
            let mut hi = [0u8; 8];
            let n = c.len().min(8);
            lo[..n].copy_from_slice(&c[..n]);
            hi[..c.len() - n].copy_from_slice(&c[n..]);
            let v = fold_mul(u64::from_le_bytes(lo) ^ self.k0, u64::from_le_bytes(hi) ^ self.k1);
            self.h = fold_mul(self.h ^ v, 0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_usize(&mut self, _: usize) {
        // Length prefixes of fixed-size ids carry nothing.
    }
    fn finish(&self) -> u64 {
        self.h
    }
}

/// Document id -> entry: the entries in segments (vectors that are never merged:
/// a checkpoint loader hands over the batches its threads decoded as they are) and a
/// small map from id to (segment, position). Lookups, iteration and updates work as
/// on a `HashMap<DocumentId, DocEntry>`; iteration order is unspecified.
///
/// The id map is split into `SHARDS` maps by bits of the id's hash that the maps
/// themselves do not use to place it: each shard of a million-document vault is small
/// enough to stay in cache while a checkpoint load fills it, and the shards are filled
/// on every core (`DocMap::index_pending`).
#[derive(Debug, Clone)]
pub struct DocMap {
    hasher: IdHashState,
    shards: Vec<HashMap<DocumentId, (u32, u32), IdHashState>>,
    segments: Vec<Vec<(DocumentId, DocEntry)>>,
}

/// Number of shards of a [`DocMap`]'s id map (a power of two).
const SHARDS: usize = 64;

impl Default for DocMap {
    fn default() -> Self {
        let hasher = IdHashState::default();
        DocMap { hasher, shards: (0..SHARDS).map(|_| HashMap::with_hasher(hasher)).collect(), segments: Vec::new() }
    }
}

/// Ids noted by [`DocMap::note_unloaded`] and not indexed yet, by shard:
/// (id, segment, position).
pub(crate) struct PendingIds(Vec<Vec<(DocumentId, u32, u32)>>);

/// Ids of documents added by [`DocMap::adopt_loaded`] whose id map entries still
/// point at their sealed checkpoint entry, by shard: (id, segment, position, entry).
#[derive(Default)]
pub(crate) struct LoadedIds(Vec<Vec<(DocumentId, u32, u32, u32)>>);

/// Largest segment that [`DocMap::insert`] appends to (adopted segments may be larger).
const SEGMENT: usize = 1 << 16;

/// One shard of a [`DocMap`]'s id map.
type Shard = HashMap<DocumentId, (u32, u32), IdHashState>;

/// Runs `fill` over the shards and their pending ids (`ids[k]` for `shards[k]`), the
/// shards split between the cores when there are at least 65,536 ids. True if every
/// call returned true (a panicked thread counts as false).
fn fill_shards<T: Sync>(
    shards: &mut [Shard],
    ids: &[Vec<T>],
    fill: impl Fn(&mut [Shard], &[Vec<T>]) -> bool + Sync,
) -> bool {
    let threads = crate::util::cores().clamp(1, 8);
    let total: usize = ids.iter().map(Vec::len).sum();
    if threads == 1 || total < 1 << 16 {
        return fill(shards, ids);
    }
    let per = SHARDS.div_ceil(threads);
    let fill = &fill;
    std::thread::scope(|scope| {
        let mut parts = shards.chunks_mut(per).zip(ids.chunks(per));
        let mine = parts.next();
        let handles: Vec<_> = parts.map(|(m, ids)| scope.spawn(move || fill(m, ids))).collect();
        let mut ok = mine.is_none_or(|(m, ids)| fill(m, ids));
        for h in handles {
            ok &= h.join().unwrap_or(false);
        }
        ok
    })
}

/// The segment number that marks an id noted by [`DocMap::note_unloaded`] (its
/// position is then the number of its sealed checkpoint entry).
const UNLOADED: u32 = u32::MAX;

impl DocMap {
    /// The shard of `id`: hash bits 32.. (each shard map places ids by the low bits of
    /// the same hash and tags them with the top seven).
    fn shard_of(&self, id: &DocumentId) -> usize {
        (self.hasher.hash_one(id) >> 32) as usize & (SHARDS - 1)
    }

    fn shard(&self, id: &DocumentId) -> &HashMap<DocumentId, (u32, u32), IdHashState> {
        &self.shards[self.shard_of(id)]
    }

    fn shard_mut(&mut self, id: &DocumentId) -> &mut HashMap<DocumentId, (u32, u32), IdHashState> {
        let k = self.shard_of(id);
        &mut self.shards[k]
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        self.shards.iter().map(HashMap::len).sum()
    }

    /// Whether there are no documents.
    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(HashMap::is_empty)
    }

    /// Reserves room in the id map for `n` more documents.
    pub fn reserve(&mut self, n: usize) {
        // Ids spread evenly over the shards; a little slack for the unevenness.
        let per = n / SHARDS + n / (SHARDS * 8) + 8;
        for m in &mut self.shards {
            m.reserve(per);
        }
    }

    fn at(&self, (s, i): (u32, u32)) -> Option<&(DocumentId, DocEntry)> {
        self.segments.get(s as usize)?.get(i as usize)
    }

    /// The entry of `id`.
    pub fn get(&self, id: &DocumentId) -> Option<&DocEntry> {
        self.shard(id).get(id).and_then(|&at| self.at(at)).map(|(_, e)| e)
    }

    /// The entry of `id`, with the id.
    pub fn get_key_value(&self, id: &DocumentId) -> Option<(&DocumentId, &DocEntry)> {
        self.shard(id).get(id).and_then(|&at| self.at(at)).map(|(k, e)| (k, e))
    }

    /// The entry of `id`, mutably.
    pub fn get_mut(&mut self, id: &DocumentId) -> Option<&mut DocEntry> {
        let &(s, i) = self.shard(id).get(id)?;
        self.segments.get_mut(s as usize)?.get_mut(i as usize).map(|(_, e)| e)
    }

    /// Whether `id` has an entry.
    pub fn contains_key(&self, id: &DocumentId) -> bool {
        self.shard(id).contains_key(id)
    }

    /// Inserts or replaces the entry of `id`; returns the one it replaced.
    pub fn insert(&mut self, id: DocumentId, e: DocEntry) -> Option<DocEntry> {
        if let Some(old) = self.get_mut(&id) {
            return Some(std::mem::replace(old, e));
        }
        let s = match self.segments.last() {
            Some(l) if l.len() < SEGMENT => self.segments.len() - 1,
            _ => {
                self.segments.push(Vec::new());
                self.segments.len() - 1
            }
        };
        let at = (s as u32, self.segments[s].len() as u32);
        self.shard_mut(&id).insert(id, at);
        self.segments[s].push((id, e));
        None
    }

    /// An empty [`PendingIds`] for this map, with room for about `n` ids.
    pub(crate) fn pending(&self, n: usize) -> PendingIds {
        let per = n / SHARDS + n / (SHARDS * 8) + 8;
        PendingIds((0..SHARDS).map(|_| Vec::with_capacity(per)).collect())
    }

    /// Adds a batch of new entries as one segment without indexing them: their ids go
    /// to `pending`, and [`DocMap::index_pending`] must index them before the map is
    /// used (until then lookups do not find them). Fails if the batch is too large.
    #[cfg(test)]
    pub(crate) fn adopt_unindexed(
        &mut self,
        batch: Vec<(DocumentId, DocEntry)>,
        pending: &mut PendingIds,
    ) -> std::result::Result<(), ()> {
        let s = u32::try_from(self.segments.len()).map_err(|_| ())?;
        if u32::try_from(batch.len()).is_err() {
            return Err(());
        }
        for (i, (id, _)) in batch.iter().enumerate() {
            pending.0[self.shard_of(id)].push((*id, s, i as u32));
        }
        self.segments.push(batch);
        Ok(())
    }

    /// Indexes the ids of [`DocMap::note_unloaded`], one shard at a time on every
    /// core. Fails if an id is already present or appears twice; the map must then be
    /// dropped (it may be partly indexed).
    pub(crate) fn index_pending(&mut self, pending: PendingIds) -> std::result::Result<(), ()> {
        let fill = |shards: &mut [Shard], ids: &[Vec<(DocumentId, u32, u32)>]| -> bool {
            shards.iter_mut().zip(ids).all(|(m, ids)| {
                m.reserve(ids.len());
                ids.iter().all(|(id, s, i)| m.insert(*id, (*s, *i)).is_none())
            })
        };
        if fill_shards(&mut self.shards, &pending.0, fill) { Ok(()) } else { Err(()) }
    }

    /// Notes `id` as a document of sealed checkpoint entry `entry`: like
    /// `DocMap::adopt_unindexed` (tests), its id goes to `pending`, and lookups do not find
    /// it until [`DocMap::adopt_loaded`] adds its entry.
    pub(crate) fn note_unloaded(&self, id: DocumentId, entry: u32, pending: &mut PendingIds) {
        pending.0[self.shard_of(&id)].push((id, UNLOADED, entry));
    }

    /// The sealed checkpoint entry `id` was noted in by [`DocMap::note_unloaded`], if
    /// its entry has not been added since.
    pub(crate) fn unloaded_entry(&self, id: &DocumentId) -> Option<u32> {
        match self.shard(id).get(id) {
            Some(&(s, k)) if s == UNLOADED => Some(k),
            _ => None,
        }
    }

    /// Adds the decoded documents of sealed checkpoint entries as one segment: each
    /// `(range, entry)` of `ranges` says which entry the documents in that range of
    /// `batch` come from. Their ids go to `pending` as (id, segment, position, entry);
    /// [`DocMap::index_loaded`] then points the id map at them. Fails if the ranges do
    /// not cover the batch.
    pub(crate) fn adopt_loaded(
        &mut self,
        batch: Vec<(DocumentId, DocEntry)>,
        ranges: &[(Range<usize>, u32)],
        pending: &mut LoadedIds,
    ) -> std::result::Result<(), ()> {
        let s = u32::try_from(self.segments.len()).map_err(|_| ())?;
        if s == UNLOADED
            || u32::try_from(batch.len()).is_err()
            || ranges.iter().map(|(r, _)| r.len()).sum::<usize>() != batch.len()
        {
            return Err(());
        }
        if pending.0.is_empty() {
            pending.0 = (0..SHARDS).map(|_| Vec::new()).collect();
        }
        for (r, k) in ranges {
            for i in r.clone() {
                let id = batch.get(i).ok_or(())?.0;
                pending.0[self.shard_of(&id)].push((id, s, i as u32, *k));
            }
        }
        self.segments.push(batch);
        Ok(())
    }

    /// Points the id map at the documents of [`DocMap::adopt_loaded`], one shard at a
    /// time on every core. Fails if an id was not noted for the entry it came from
    /// (the map must then be dropped: it may be partly updated).
    pub(crate) fn index_loaded(&mut self, pending: LoadedIds) -> std::result::Result<(), ()> {
        if pending.0.is_empty() {
            return Ok(());
        }
        let fill = |shards: &mut [Shard], ids: &[Vec<(DocumentId, u32, u32, u32)>]| -> bool {
            shards.iter_mut().zip(ids).all(|(m, ids)| {
                ids.iter().all(|(id, s, i, k)| match m.get_mut(id) {
                    Some(at) if *at == (UNLOADED, *k) => {
                        *at = (*s, *i);
                        true
                    }
                    _ => false,
                })
            })
        };
        if fill_shards(&mut self.shards, &pending.0, fill) { Ok(()) } else { Err(()) }
    }

    /// Removes the entry of `id`.
    pub fn remove(&mut self, id: &DocumentId) -> Option<DocEntry> {
        let (s, i) = self.shard_mut(id).remove(id)?;
        let seg = self.segments.get_mut(s as usize)?;
        if i as usize >= seg.len() {
            return None;
        }
        let (_, e) = seg.swap_remove(i as usize);
        if let Some((moved, _)) = seg.get(i as usize) {
            let moved = *moved;
            if let Some(at) = self.shard_mut(&moved).get_mut(&moved) {
                *at = (s, i);
            }
        }
        Some(e)
    }

    /// Every (id, entry).
    pub fn iter(&self) -> impl Iterator<Item = (&DocumentId, &DocEntry)> + '_ {
        self.segments.iter().flatten().map(|(k, e)| (k, e))
    }

    /// Every id.
    pub fn keys(&self) -> impl Iterator<Item = &DocumentId> + '_ {
        self.segments.iter().flatten().map(|(k, _)| k)
    }

    /// Every entry.
    pub fn values(&self) -> impl Iterator<Item = &DocEntry> + '_ {
        self.segments.iter().flatten().map(|(_, e)| e)
    }
}

impl std::ops::Index<&DocumentId> for DocMap {
    type Output = DocEntry;
    /// Like `HashMap`'s: panics if `id` has no entry.
    fn index(&self, id: &DocumentId) -> &DocEntry {
        match self.get(id) {
            Some(e) => e,
            None => panic!("no catalog entry for document {id}"),
        }
    }
}

impl<'a> IntoIterator for &'a DocMap {
    type Item = (&'a DocumentId, &'a DocEntry);
    type IntoIter = Box<dyn Iterator<Item = (&'a DocumentId, &'a DocEntry)> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

/// Pending documents (see [`Catalog::flush_values`]) at which a commit flushes them
/// itself, so the first query after a long run of writes adds at most this many.
pub const FLUSH_PENDING_AT: usize = 16 * 1024;

/// Field -> value -> documents (latest versions only; unordered posting lists).
pub type Values = HashMap<String, BTreeMap<IndexKey, Vec<DocumentId>>>;

/// The in-memory indexes of a vault.
#[derive(Debug, Default, Clone)]
pub struct Catalog {
    /// Document id -> entry.
    pub docs: DocMap,
    /// Patient slot -> documents, in creation order.
    pub by_patient: HashMap<u32, Vec<DocumentId>>,
    /// Kind -> documents (unordered posting list).
    pub by_kind: HashMap<Kind, Vec<DocumentId>>,
    /// Value indexes (see [`Catalog::values`]): kept from the start in a new vault's
    /// catalog; in an opened vault's (from a checkpoint or by replaying the whole log)
    /// built on first use.
    ///
    /// Boxed: until it is set, a `OnceLock`'s bytes are uninitialized, and moving the
    /// catalog (as an open does, from the frame that built it to the vault's heap
    /// state) copies whatever the stack held there, a stale key copy included (see
    /// tests/memory_hygiene.rs). A box leaves 8 such bytes instead of a map's 48.
    values: OnceLock<Box<Values>>,
    /// Whether `values` is built on first use rather than kept from the start.
    lazy_values: bool,
    /// Label sets of the documents this catalog applied, shared between them.
    label_sets: LabelSets,
    /// Documents whose latest version's terms are not in `values` yet (while it is
    /// built): a commit only notes them here, and [`Catalog::flush_values`] adds their
    /// postings in one sorted pass before the next query (see [`Catalog::values`]).
    pending: HashSet<DocumentId, IdHashState>,
    /// Offsets of non-document frames by type (audit, policy, disclosure, admin, checkpoint).
    pub frames: HashMap<u8, Vec<u64>>,
    /// Number of document versions.
    pub versions: u64,
    /// Patient entries of the checkpoint this catalog was opened from that are not
    /// decoded yet (their documents' ids are in `docs`, found only by
    /// [`Catalog::unloaded_slot_of`]); `None` once every entry is decoded.
    pub(crate) unloaded: Option<Box<crate::store::checkpoint::Unloaded>>,
}

/// A version to add to the catalog.
#[derive(Debug, Clone)]
pub struct NewVersion {
    /// Document id.
    pub id: DocumentId,
    /// Patient slot.
    pub patient_slot: u32,
    /// Kind.
    pub kind: Kind,
    /// Creation time of version 1.
    pub created_us: i64,
    /// Location.
    pub loc: VersionLoc,
    /// Labels of the version's fields.
    pub labels: LabelSet,
    /// Index terms of the version, packed under the store's term schema ids.
    pub terms: Terms,
}

impl Catalog {
    /// Field -> value -> documents, for the latest version of every document. In the
    /// catalog of an opened vault (loaded from a checkpoint, or replayed from the whole
    /// log) it is built from the documents' index terms on the first call, each field's
    /// tree bulk-built from its sorted distinct values (open does not pay for it until
    /// a query needs it); in a new vault's it is kept from the start. Once built, it is
    /// kept up to date as versions are applied.
    ///
    /// While documents are pending (applied since the last flush), the indexes lack
    /// their latest terms: a query must first call [`Catalog::flush_values`] (the
    /// store's `read_state_for_query` does). A commit therefore costs no index update:
    /// inserting a document's dozen terms one by one into large, cold B-trees cost a
    /// single commit more than its sealing did at 100,000 documents; a flush adds every
    /// pending term in (field, value) order, one posting list per distinct value.
    pub fn values(&self) -> &Values {
        debug_assert!(self.pending.is_empty(), "value indexes read with pending documents");
        self.values.get_or_init(|| Box::new(build_values(&self.docs)))
    }

    /// Whether documents wait to be added to the value indexes.
    pub fn has_pending_values(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Adds the postings of every pending document to the value indexes.
    ///
    /// The pending documents' terms are grouped by field and packed value, each
    /// distinct value is decoded once, and each field's groups go into its tree at
    /// once (`merge_groups`, fields on two threads when there are many groups).
    pub fn flush_values(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        let Some(values) = self.values.get_mut().map(|v| &mut **v) else { return };
        let docs = &self.docs;
        let gather = |ids: &[DocumentId]| {
            let mut g = Gathering::default();
            for id in ids {
                if let Some(e) = docs.get(id) {
                    g.add(*id, e);
                }
            }
            g.finish()
        };
        let ids: Vec<DocumentId> = pending.into_iter().collect();
        // Many documents (a flush inside a long run of writes) are gathered on two
        // threads (looking each one up is mostly a wait for memory); a scoped thread,
        // not the shared pool, for the reason given in `merge_fields`.
        let gathered = if ids.len() >= PARALLEL_MERGE_MIN && crate::util::cores() >= 2 {
            let (first, second) = ids.split_at(ids.len() / 2);
            std::thread::scope(|scope| {
                let other = scope.spawn(|| gather(second));
                let mut g = gather(first);
                // A helper that panicked leaves its half to this thread.
                g.append(other.join().unwrap_or_else(|_| gather(second)));
                g
            })
        } else {
            gather(&ids)
        };
        merge_fields(values, gathered.by_field);
    }

    /// Whether the value indexes have been built yet (tests and measurements).
    pub fn values_built(&self) -> bool {
        self.values.get().is_some()
    }

    /// An empty catalog whose value indexes are built on first use (checkpoint loads,
    /// and opens that replay the whole log).
    pub fn lazy() -> Catalog {
        Catalog { lazy_values: true, ..Catalog::default() }
    }

    /// Adds a version (new document or update).
    pub fn apply(&mut self, v: NewVersion, commit: u64) {
        // The store decodes a patient's sealed checkpoint entry before applying to it.
        debug_assert!(!self.patient_unloaded(v.patient_slot), "apply to a patient whose checkpoint entry is sealed");
        self.versions += 1;
        if !self.lazy_values {
            self.values.get_or_init(Box::default);
        }
        let values = self.values.get_mut().map(|v| &mut **v);
        if let Some(e) = self.docs.get_mut(&v.id) {
            // The previous version's postings are in the indexes unless it was still
            // pending itself.
            if let Some(values) = values
                && !self.pending.contains(&v.id)
            {
                for t in e.terms.iter() {
                    remove_posting(values, &t.field, &t.key, &v.id);
                }
            }
            e.versions.push(v.loc);
            e.labels = self.label_sets.share(v.labels);
            e.terms = v.terms;
            e.commit = commit;
        } else {
            self.by_patient.entry(v.patient_slot).or_default().push(v.id);
            match self.by_kind.get_mut(&v.kind) {
                Some(ids) => ids.push(v.id),
                None => {
                    self.by_kind.insert(v.kind.clone(), vec![v.id]);
                }
            }
            self.docs.insert(
                v.id,
                DocEntry {
                    patient_slot: v.patient_slot,
                    kind: v.kind,
                    created_us: v.created_us,
                    versions: smallvec::smallvec![v.loc],
                    labels: self.label_sets.share(v.labels),
                    terms: v.terms,
                    commit,
                },
            );
        }
        if self.values.get().is_some() {
            self.pending.insert(v.id);
            if self.pending.len() >= FLUSH_PENDING_AT {
                self.flush_values();
            }
        }
    }

    /// Records the offset of a non-document frame.
    pub fn note_frame(&mut self, ty: FrameType, offset: u64) {
        self.frames.entry(ty as u8).or_default().push(offset);
    }

    /// Offsets of frames of type `ty`.
    pub fn frames_of(&self, ty: FrameType) -> &[u64] {
        self.frames.get(&(ty as u8)).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Removes every document of a patient (after erasure).
    pub fn remove_patient(&mut self, slot: u32) -> Vec<DocumentId> {
        self.forget_unloaded(slot);
        let ids = self.by_patient.remove(&slot).unwrap_or_default();
        let mut values = self.values.get_mut().map(|v| &mut **v);
        for id in &ids {
            if let Some(e) = self.docs.remove(id) {
                if let Some(s) = self.by_kind.get_mut(&e.kind) {
                    s.retain(|x| x != id);
                }
                if let Some(values) = values.as_deref_mut()
                    && !self.pending.remove(id)
                {
                    for t in e.terms.iter() {
                        remove_posting(values, &t.field, &t.key, id);
                    }
                }
            }
        }
        ids
    }
}

/// Builds the value indexes from the documents' terms, each field's tree bulk-built
/// from its distinct values in order. Packed terms are grouped by (field, packed value)
/// first, so each distinct value is decoded once ([`tree_from_groups`]).
///
/// A large catalog is gathered on every core, each thread taking a share of the
/// documents; the shares' groups of one value are then joined by [`tree_from_groups`],
/// so the result is that of one thread (up to the order of a posting list, which is
/// unordered). [`crate::util::split_map`]
/// spreads the shares and redoes on this thread a share whose thread panicked.
fn build_values(docs: &DocMap) -> Values {
    let threads = crate::util::cores().clamp(1, 8);
    let all: Vec<&[(DocumentId, DocEntry)]> = docs.segments.iter().map(Vec::as_slice).collect();
    let gathered = if threads < 2 || docs.len() < PARALLEL_BUILD_MIN {
        gather_terms(&all)
    } else {
        // Runs of about equal size, claimed in turn by the threads of `split_map`.
        let pieces: Vec<&[(DocumentId, DocEntry)]> = split_segments(&all, threads * 8).into_iter().flatten().collect();
        let mut parts = crate::util::split_map(&pieces, threads, |run| vec![gather_terms(run)]).into_iter();
        let mut g = parts.next().unwrap_or_else(|| gather_terms(&[]));
        for part in parts {
            g.append(part);
        }
        g
    };
    gathered.by_field.into_iter().map(|(field, groups)| (field.to_string(), tree_from_groups(groups))).collect()
}

/// Fewest documents for which [`build_values`] gathers on more than one thread.
const PARALLEL_BUILD_MIN: usize = 1 << 14;

/// Splits a catalog's segments into `n` runs of about as many documents each (a
/// segment larger than a share is split too).
fn split_segments<'a>(all: &[&'a [(DocumentId, DocEntry)]], n: usize) -> Vec<Vec<&'a [(DocumentId, DocEntry)]>> {
    let total: usize = all.iter().map(|s| s.len()).sum();
    let per = total.div_ceil(n).max(1);
    let mut shares = vec![Vec::new()];
    let mut room = per;
    for seg in all {
        let mut rest: &[(DocumentId, DocEntry)] = seg;
        while !rest.is_empty() {
            if room == 0 {
                shares.push(Vec::new());
                room = per;
            }
            let (now, later) = rest.split_at(rest.len().min(room));
            if let Some(last) = shares.last_mut() {
                last.push(now);
            }
            room -= now.len();
            rest = later;
        }
    }
    shares
}

/// The terms of some documents, gathered for [`build_values`] or a flush: grouped by
/// field and distinct value (decoded).
struct Gathered<'a> {
    by_field: HashMap<&'a str, Vec<Group>>,
}

impl<'a> Gathered<'a> {
    /// Adds another share's terms (its groups of a value already here are joined
    /// later, by [`tree_from_groups`]).
    fn append(&mut self, other: Gathered<'a>) {
        for (field, mut groups) in other.by_field {
            self.by_field.entry(field).or_default().append(&mut groups);
        }
    }
}

/// Gathers the terms of the documents of `segments`.
fn gather_terms<'a>(segments: &[&'a [(DocumentId, DocEntry)]]) -> Gathered<'a> {
    let mut g = Gathering::default();
    for (id, e) in segments.iter().flat_map(|s| s.iter()) {
        g.add(*id, e);
    }
    g.finish()
}

/// Terms being gathered, grouped by field and packed value (not decoded yet).
#[derive(Default)]
struct Gathering<'a> {
    packed: HashMap<(&'a str, &'a [u8]), Vec<DocumentId>, IdHashState>,
}

impl<'a> Gathering<'a> {
    /// Adds the terms of document `id`.
    fn add(&mut self, id: DocumentId, e: &'a DocEntry) {
        if let Some(p) = &e.terms.packed {
            wire::each_term(p.bytes(), |sid, key| {
                if let Some((field, _)) = p.schemas.schemas.get(sid) {
                    self.packed.entry((field.as_str(), key)).or_default().push(id);
                }
            });
        }
    }

    /// Decodes each distinct packed value once.
    fn finish(self) -> Gathered<'a> {
        let mut by_field: HashMap<&str, Vec<Group>> = HashMap::new();
        for ((field, key), ids) in self.packed {
            if let Some(k) = wire::read_key(key) {
                by_field.entry(field).or_default().push((sort_prefix(&k), k, ids));
            }
        }
        Gathered { by_field }
    }
}

/// The documents of one distinct (decoded) packed value: ([`sort_prefix`] of the
/// value, the value, the documents).
type Group = (u64, IndexKey, Vec<DocumentId>);

/// Fewest pending documents a flush gathers on two threads, and fewest groups it
/// merges on two ([`merge_fields`]).
const PARALLEL_MERGE_MIN: usize = 8 * 1024;

/// One field's tree and the groups to merge into it.
type MergeJob<'t> = (&'t mut BTreeMap<IndexKey, Vec<DocumentId>>, Vec<Group>);

/// Merges each field's groups into its tree ([`merge_groups`]). Many groups (a flush
/// after a long run of writes) are merged on two threads, a field's tree on one of
/// them: the trees are disjoint, and the flush runs inside a commit, holding the
/// state's write lock. The second thread is a scoped thread of its own rather than a
/// task of the shared pool, whose threads may be waiting for that very lock.
fn merge_fields(values: &mut Values, by_field: HashMap<&str, Vec<Group>>) {
    for field in by_field.keys() {
        if !values.contains_key(*field) {
            values.insert(field.to_string(), BTreeMap::new());
        }
    }
    let mut groups_of = by_field;
    let mut jobs: Vec<MergeJob<'_>> =
        values.iter_mut().filter_map(|(f, tree)| groups_of.remove(f.as_str()).map(|g| (tree, g))).collect();
    let merge = |jobs: Vec<MergeJob<'_>>| {
        for (tree, groups) in jobs {
            merge_groups(tree, groups);
        }
    };
    let total: usize = jobs.iter().map(|(_, g)| g.len()).sum();
    if total < PARALLEL_MERGE_MIN || jobs.len() < 2 || crate::util::cores() < 2 {
        merge(jobs);
        return;
    }
    // Largest first, each to the side with fewer groups so far.
    jobs.sort_by_key(|(_, g)| std::cmp::Reverse(g.len()));
    let (mut here, mut there) = (Vec::new(), Vec::new());
    let (mut n_here, mut n_there) = (0, 0);
    for job in jobs {
        if n_here <= n_there {
            n_here += job.1.len();
            here.push(job);
        } else {
            n_there += job.1.len();
            there.push(job);
        }
    }
    std::thread::scope(|scope| {
        scope.spawn(|| merge(there));
        merge(here);
    });
}

/// An i64 as a u64 in the same order.
fn signed(v: i64) -> u64 {
    (v as u64) ^ (1 << 63)
}

/// The first eight bytes of `b` (zero-padded) as a big-endian number: shorter or
/// smaller strings give smaller or equal numbers.
fn bytes8(b: &[u8]) -> u64 {
    let mut x = [0u8; 8];
    let n = b.len().min(8);
    x[..n].copy_from_slice(&b[..n]);
    u64::from_be_bytes(x)
}

/// A 64-bit summary of an index key that preserves its order: `sort_prefix(a) <
/// sort_prefix(b)` implies `a < b` (equal prefixes say nothing). The variant is in the
/// top three bits (keys order by variant first), the value's own summary below:
/// integers, dates and datetimes themselves, decimals as fixed point with nine
/// decimal places (saturating), strings by their first eight bytes (for a code, those
/// of its system, which orders first).
fn sort_prefix(k: &IndexKey) -> u64 {
    let (variant, v) = match k {
        IndexKey::Code(system, _) => (0u64, bytes8(system.as_bytes())),
        IndexKey::Text(t) => (1, bytes8(t.as_bytes())),
        IndexKey::Integer(i) => (2, signed(*i)),
        IndexKey::Decimal(d) => {
            let (m, scale) = (d.mantissa(), d.scale());
            // |m| < 2^96 and 10^9 < 2^30: the product fits; floor division keeps order.
            let fixed = if scale <= 9 {
                m.saturating_mul(10i128.pow(9 - scale))
            } else {
                m.div_euclid(10i128.pow(scale.min(38) - 9))
            };
            let fixed = i64::try_from(fixed).unwrap_or(if fixed < 0 { i64::MIN } else { i64::MAX });
            (3, signed(fixed))
        }
        IndexKey::Date(d) => (4, signed(i64::from(*d))),
        IndexKey::DateTime(t) => (5, signed(*t)),
        IndexKey::Boolean(b) => (6, u64::from(*b) << 63),
    };
    (variant << 61) | (v >> 3)
}

/// A field's tree from (prefix, value, documents) groups in any order: sorted, groups
/// of equal values merged (distinct packed values may decode to equal keys, e.g.
/// decimals 6.8 and 6.80), then bulk-built (`BTreeMap::from_iter` on sorted input
/// builds the tree bottom-up instead of inserting key by key).
fn tree_from_groups(groups: Vec<Group>) -> BTreeMap<IndexKey, Vec<DocumentId>> {
    sorted_groups(groups).into_iter().collect()
}

/// Groups in value order, groups of equal values merged.
fn sorted_groups(mut groups: Vec<Group>) -> Vec<(IndexKey, Vec<DocumentId>)> {
    groups.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    let mut out: Vec<(IndexKey, Vec<DocumentId>)> = Vec::with_capacity(groups.len());
    for (_, k, ids) in groups {
        match out.last_mut() {
            Some((last, last_ids)) if *last == k => last_ids.extend(ids),
            _ => out.push((k, ids)),
        }
    }
    out
}

/// Adds groups of postings to a field's tree, each distinct value's documents as one
/// posting list: value by value when they are few next to the tree's size, otherwise
/// by merging them with the tree's entries in one ordered pass and bulk-building the
/// tree again (a comparison or two per entry instead of a tree search per value).
fn merge_groups(tree: &mut BTreeMap<IndexKey, Vec<DocumentId>>, groups: Vec<Group>) {
    let new = sorted_groups(groups);
    if new.len().saturating_mul(REBUILD_RATIO) < tree.len() {
        for (k, ids) in new {
            match tree.get_mut(&k) {
                Some(old) => old.extend(ids),
                None => {
                    tree.insert(k, ids);
                }
            }
        }
        return;
    }
    let mut old = std::mem::take(tree).into_iter().peekable();
    let mut out: Vec<(IndexKey, Vec<DocumentId>)> = Vec::with_capacity(old.len() + new.len());
    for (k, ids) in new {
        while let Some(o) = old.next_if(|(ok, _)| *ok < k) {
            out.push(o);
        }
        match old.next_if(|(ok, _)| *ok == k) {
            Some((ok, mut list)) => {
                list.extend(ids);
                out.push((ok, list));
            }
            None => out.push((k, ids)),
        }
    }
    out.extend(old);
    *tree = out.into_iter().collect();
}

/// A flush merges its groups with a field's tree and rebuilds the tree when they have
/// at least one distinct value per this many entries of the tree; otherwise it
/// inserts them value by value ([`merge_groups`]).
const REBUILD_RATIO: usize = 8;

fn remove_posting(values: &mut Values, field: &str, key: &IndexKey, id: &DocumentId) {
    if let Some(m) = values.get_mut(field)
        && let Some(ids) = m.get_mut(key)
    {
        if let Some(i) = ids.iter().position(|x| x == id) {
            ids.swap_remove(i);
        }
        if ids.is_empty() {
            m.remove(key);
        }
    }
}

/// The compact binary encoding of checkpoint entries and packed index terms
/// (docs/FORMAT.md §12.3): LEB128 varints, zigzag for signed values.
pub(crate) mod wire {
    use crate::format::body::IndexKey;
    pub(crate) use crate::format::wire::{Reader, put_bytes, put_iv, put_u128, put_uv};
    use crate::model::value::Decimal;

    /// Appends a packed index key.
    pub(crate) fn put_key(out: &mut Vec<u8>, k: &IndexKey) {
        match k {
            IndexKey::Code(s, c) => {
                out.push(0);
                put_bytes(out, s.as_bytes());
                put_bytes(out, c.as_bytes());
            }
            IndexKey::Text(t) => {
                out.push(1);
                put_bytes(out, t.as_bytes());
            }
            IndexKey::Integer(i) => {
                out.push(2);
                put_iv(out, *i);
            }
            IndexKey::Decimal(d) => {
                out.push(3);
                let m = d.mantissa();
                put_u128(out, ((m << 1) ^ (m >> 127)) as u128);
                out.push(d.scale() as u8);
            }
            IndexKey::Date(d) => {
                out.push(4);
                put_iv(out, i64::from(*d));
            }
            IndexKey::DateTime(t) => {
                out.push(5);
                put_iv(out, *t);
            }
            IndexKey::Boolean(b) => {
                out.push(6);
                out.push(u8::from(*b));
            }
        }
    }

    /// A length-prefixed string that must be UTF-8, as bytes (checked, not converted).
    fn utf8<'a>(r: &mut Reader<'a>) -> Option<&'a [u8]> {
        let b = r.bytes()?;
        // Index terms are mostly short ASCII strings: `is_ascii` checks a word at a
        // time, much cheaper than a full UTF-8 validation per string.
        (b.is_ascii() || std::str::from_utf8(b).is_ok()).then_some(b)
    }

    /// Skips one packed key, checking it exactly as [`key`] would decode it (UTF-8,
    /// ranges), without building it; `None` if malformed.
    fn check_key(r: &mut Reader<'_>) -> Option<()> {
        match r.u8()? {
            0 => {
                utf8(r)?;
                utf8(r)?;
            }
            1 => {
                utf8(r)?;
            }
            2 | 5 => {
                r.iv()?;
            }
            3 => {
                let z = r.u128v()?;
                let m = ((z >> 1) as i128) ^ -((z & 1) as i128);
                let scale = r.u8()?;
                Decimal::try_from_i128_with_scale(m, u32::from(scale)).ok()?;
            }
            4 => {
                i32::try_from(r.iv()?).ok()?;
            }
            6 => {
                if r.u8()? > 1 {
                    return None;
                }
            }
            _ => return None,
        }
        Some(())
    }

    /// Reads one packed key; `None` if malformed.
    fn key(r: &mut Reader<'_>) -> Option<IndexKey> {
        Some(match r.u8()? {
            0 => {
                let (s, c) = (r.str()?, r.str()?);
                IndexKey::Code(s.to_string(), c.to_string())
            }
            1 => IndexKey::Text(r.str()?.to_string()),
            2 => IndexKey::Integer(r.iv()?),
            3 => {
                let z = r.u128v()?;
                let m = ((z >> 1) as i128) ^ -((z & 1) as i128);
                let scale = r.u8()?;
                IndexKey::Decimal(Decimal::try_from_i128_with_scale(m, u32::from(scale)).ok()?)
            }
            4 => IndexKey::Date(i32::try_from(r.iv()?).ok()?),
            5 => IndexKey::DateTime(r.iv()?),
            6 => match r.u8()? {
                0 => IndexKey::Boolean(false),
                1 => IndexKey::Boolean(true),
                _ => return None,
            },
            _ => return None,
        })
    }

    /// Decodes a packed key that makes up all of `b`.
    pub(crate) fn read_key(b: &[u8]) -> Option<IndexKey> {
        let mut r = Reader::new(b);
        let k = key(&mut r)?;
        r.done().then_some(k)
    }

    /// Checks packed terms: every schema id below `schemas`, every key well formed.
    pub(crate) fn check_terms(b: &[u8], schemas: usize) -> bool {
        let mut r = Reader::new(b);
        while !r.done() {
            match r.usize() {
                Some(sid) if sid < schemas => {}
                _ => return false,
            }
            if check_key(&mut r).is_none() {
                return false;
            }
        }
        true
    }

    /// Skips one packed key by its structure only (tag and lengths): the strings are
    /// not checked, which [`check_terms`] did when the terms were loaded (or
    /// [`put_key`] wrote them), and [`read_key`] does again for any key it decodes.
    fn skip_key(r: &mut Reader<'_>) -> Option<()> {
        match r.u8()? {
            0 => {
                r.bytes()?;
                r.bytes()?;
            }
            1 => {
                r.bytes()?;
            }
            2 | 4 | 5 => {
                r.iv()?;
            }
            3 => {
                r.u128v()?;
                r.u8()?;
            }
            6 => {
                r.u8()?;
            }
            _ => return None,
        }
        Some(())
    }

    /// Calls `f(schema id, packed key)` for each term of packed terms (stops at the
    /// first malformed one; [`check_terms`] has ruled that out for loaded terms, and
    /// the catalog's own packed terms are written by [`put_key`]).
    pub(crate) fn each_term<'a>(b: &'a [u8], mut f: impl FnMut(usize, &'a [u8])) {
        let mut r = Reader::new(b);
        while !r.done() {
            let Some(sid) = r.usize() else { return };
            let start = r.pos();
            if skip_key(&mut r).is_none() {
                return;
            }
            f(sid, &b[start..r.pos()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::value::Decimal;

    fn term(field: &str, key: IndexKey) -> IndexTerm {
        IndexTerm { field: field.into(), labels: vec![Label::normal()], key }
    }

    #[test]
    fn keys_round_trip() {
        let keys = [
            IndexKey::Code("http://loinc.org".into(), "4548-4".into()),
            IndexKey::Text("final".into()),
            IndexKey::Text(String::new()),
            IndexKey::Integer(i64::MIN),
            IndexKey::Integer(i64::MAX),
            IndexKey::Decimal(Decimal::new(-12345, 3)),
            IndexKey::Decimal(Decimal::MAX),
            IndexKey::Decimal(Decimal::MIN),
            IndexKey::Date(i32::MIN),
            IndexKey::Date(19000),
            IndexKey::DateTime(-1),
            IndexKey::DateTime(i64::MAX),
            IndexKey::Boolean(true),
        ];
        for k in keys {
            let mut b = Vec::new();
            wire::put_key(&mut b, &k);
            assert_eq!(wire::read_key(&b), Some(k.clone()), "{k:?}");
            assert!(wire::read_key(&b[..b.len() - 1]).is_none());
        }
    }

    #[test]
    fn varints_round_trip_and_reject_overlong() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            wire::put_uv(&mut b, v);
            assert_eq!(wire::Reader::new(&b).uv(), Some(v));
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX] {
            let mut b = Vec::new();
            wire::put_iv(&mut b, v);
            assert_eq!(wire::Reader::new(&b).iv(), Some(v));
        }
        assert_eq!(wire::Reader::new(&[0xff; 11]).uv(), None);
        assert_eq!(wire::Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]).uv(), None);
    }

    fn entry(slot: u32) -> DocEntry {
        DocEntry {
            patient_slot: slot,
            kind: Kind::new("Observation").unwrap(),
            created_us: 1,
            versions: smallvec::smallvec![VersionLoc { version: 1, offset: 8192, updated_us: 1 }],
            labels: Arc::new(LabelSet::new()),
            terms: Terms::default(),
            commit: 1,
        }
    }

    fn id(n: u32) -> DocumentId {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&n.to_le_bytes());
        b[8..12].copy_from_slice(&n.wrapping_mul(2_654_435_761).to_le_bytes());
        DocumentId(b)
    }

    #[test]
    fn doc_map_shards_index_pending_and_updates() {
        // Enough ids for the parallel fill, in uneven batches.
        let n = 70_000u32;
        let mut m = DocMap::default();
        let mut pending = m.pending(n as usize);
        let mut start = 0;
        for size in [1u32, 40_000, 29_998, 1] {
            let batch = (start..start + size).map(|i| (id(i), entry(i))).collect();
            m.adopt_unindexed(batch, &mut pending).unwrap();
            start += size;
        }
        assert_eq!(start, n);
        assert!(m.is_empty(), "not indexed yet");
        m.index_pending(pending).unwrap();
        assert_eq!(m.len(), n as usize);
        assert_eq!(m.iter().count(), n as usize);
        for i in (0..n).step_by(97) {
            assert_eq!(m.get(&id(i)).map(|e| e.patient_slot), Some(i));
            assert_eq!(m.get_key_value(&id(i)).map(|(k, _)| *k), Some(id(i)));
        }
        assert!(m.get(&id(n)).is_none() && !m.contains_key(&id(n + 1)));
        // Removal moves the last entry of a segment: it stays reachable.
        for i in (0..n).step_by(3) {
            assert_eq!(m.remove(&id(i)).map(|e| e.patient_slot), Some(i));
        }
        for i in 0..n {
            assert_eq!(m.get(&id(i)).map(|e| e.patient_slot), (i % 3 != 0).then_some(i), "{i}");
        }
        assert!(m.insert(id(0), entry(7)).is_none());
        assert_eq!(m.insert(id(0), entry(8)).map(|e| e.patient_slot), Some(7));
        assert_eq!(m[&id(0)].patient_slot, 8);
        if let Some(e) = m.get_mut(&id(1)) {
            e.commit = 9;
        }
        assert_eq!(m[&id(1)].commit, 9);
        let left = n as usize - (n as usize).div_ceil(3) + 1;
        assert_eq!(m.len(), left);

        // The same id in two batches, or twice in one, is refused (small and large).
        for size in [10u32, 40_000] {
            let mut m = DocMap::default();
            let mut p = m.pending(0);
            m.adopt_unindexed((0..size).map(|i| (id(i), entry(i))).collect(), &mut p).unwrap();
            m.adopt_unindexed(vec![(id(size / 2), entry(0))], &mut p).unwrap();
            assert!(m.index_pending(p).is_err(), "{size}");
            let mut m = DocMap::default();
            let mut p = m.pending(0);
            m.adopt_unindexed(vec![(id(5), entry(0)), (id(5), entry(1))], &mut p).unwrap();
            assert!(m.index_pending(p).is_err());
        }
        // Already indexed ids count too.
        let mut m = DocMap::default();
        m.insert(id(3), entry(3));
        let mut p = m.pending(1);
        m.adopt_unindexed(vec![(id(3), entry(0))], &mut p).unwrap();
        assert!(m.index_pending(p).is_err());
    }

    #[test]
    fn term_strings_must_be_utf8() {
        let schemas = 1;
        for (bytes, ok) in [
            (&b"final"[..], true),
            ("état, 検査".as_bytes(), true),
            (&b""[..], true),
            (&b"\xff"[..], false),
            (&b"ab\xc3"[..], false),
            (&b"\xed\xa0\x80"[..], false),
        ] {
            for tag in [0u8, 1] {
                let mut b = Vec::new();
                wire::put_uv(&mut b, 0);
                b.push(tag);
                wire::put_bytes(&mut b, bytes);
                if tag == 0 {
                    wire::put_bytes(&mut b, b"x");
                }
                assert_eq!(wire::check_terms(&b, schemas), ok, "tag {tag} {bytes:?}");
                assert_eq!(wire::read_key(&b[1..]).is_some(), ok, "tag {tag} {bytes:?}");
                // The second string of a code is checked too.
                if tag == 0 {
                    let mut b = Vec::new();
                    wire::put_uv(&mut b, 0);
                    b.push(0);
                    wire::put_bytes(&mut b, b"x");
                    wire::put_bytes(&mut b, bytes);
                    assert_eq!(wire::check_terms(&b, schemas), ok, "code value {bytes:?}");
                }
            }
        }
    }

    #[test]
    fn wide_varints_round_trip_and_reject_overflow() {
        for v in [0u128, 127, 128, (1 << 63) - 1, 1 << 63, u64::MAX as u128, 1 << 96, u128::MAX] {
            let mut b = Vec::new();
            wire::put_u128(&mut b, v);
            assert_eq!(wire::Reader::new(&b).u128v(), Some(v), "{v}");
            assert_eq!(wire::Reader::new(&b[..b.len() - 1]).u128v(), None, "{v} cut");
        }
        // 19 bytes carry 133 bits: the top five must be zero.
        let mut b = vec![0xff; 18];
        b.push(0x03);
        assert_eq!(wire::Reader::new(&b).u128v(), Some(u128::MAX));
        b[18] = 0x04;
        assert_eq!(wire::Reader::new(&b).u128v(), None);
        assert_eq!(wire::Reader::new(&[0x80; 20]).u128v(), None);
        // A value after a wide one is read from the right place.
        let mut b = Vec::new();
        wire::put_u128(&mut b, 300);
        wire::put_uv(&mut b, 5);
        let mut r = wire::Reader::new(&b);
        assert_eq!((r.u128v(), r.uv(), r.done()), (Some(300), Some(5), true));
    }

    #[test]
    fn packed_terms_decode_and_index_lazily() {
        let schemas = Arc::new(TermSchemas {
            schemas: vec![("code".into(), vec![Label::normal()]), ("status".into(), vec![Label::normal()])],
        });
        let mut b = Vec::new();
        wire::put_uv(&mut b, 0);
        wire::put_key(&mut b, &IndexKey::Code("loinc".into(), "1".into()));
        wire::put_uv(&mut b, 1);
        wire::put_key(&mut b, &IndexKey::Text("final".into()));
        assert!(wire::check_terms(&b, 2));
        assert!(!wire::check_terms(&b, 1));
        assert!(!wire::check_terms(&b[..b.len() - 1], 2));
        let id = DocumentId([7; 16]);
        let mut cat = Catalog::default();
        let n = b.len();
        let e = DocEntry {
            patient_slot: 0,
            kind: Kind::new("Observation").unwrap(),
            created_us: 1,
            versions: smallvec::smallvec![VersionLoc { version: 1, offset: 8192, updated_us: 1 }],
            labels: Arc::new(LabelSet::new()),
            terms: Terms::packed(schemas, Arc::new(Zeroizing::new(b)), 0..n),
            commit: 1,
        };
        cat.docs.insert(id, e);
        cat.by_patient.insert(0, vec![id]);
        assert!(!cat.values_built());
        let code = IndexKey::Code("loinc".into(), "1".into());
        assert_eq!(cat.values()["code"][&code], vec![id]);
        assert_eq!(
            cat.docs[&id].terms.as_slice(),
            &[term("code", code.clone()), term("status", IndexKey::Text("final".into()))]
        );
        // Updates keep a built index current.
        let v = NewVersion {
            id,
            patient_slot: 0,
            kind: Kind::new("Observation").unwrap(),
            created_us: 1,
            loc: VersionLoc { version: 2, offset: 9000, updated_us: 2 },
            labels: LabelSet::new(),
            terms: REGISTRY.pack(&[term("code", IndexKey::Code("loinc".into(), "2".into()))]),
        };
        cat.apply(v, 2);
        assert!(cat.has_pending_values(), "a commit defers its postings");
        cat.flush_values();
        assert!(!cat.values()["code"].contains_key(&code));
        assert_eq!(cat.values()["code"][&IndexKey::Code("loinc".into(), "2".into())], vec![id]);
        cat.remove_patient(0);
        assert!(cat.values()["code"].is_empty());
        assert!(cat.docs.is_empty());
    }

    /// Deferred postings: after any sequence of new documents, updates (flushed or
    /// still pending), patient removals and flushes, the flushed value indexes equal
    /// indexes built from scratch from the documents.
    #[test]
    fn deferred_postings_equal_a_fresh_build() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut cat = Catalog::default();
        let mut ids: Vec<(DocumentId, u32, u32)> = Vec::new(); // (id, patient slot, version)
        for step in 0..3000u64 {
            match next(10) {
                0..=5 => {
                    let id = DocumentId((step as u128).to_le_bytes());
                    let slot = next(20) as u32;
                    let v = version(id, slot, 1, &mut next);
                    cat.apply(v, step);
                    ids.push((id, slot, 1));
                }
                6 | 7 if !ids.is_empty() => {
                    let i = next(ids.len() as u64) as usize;
                    let (id, slot, ver) = ids[i];
                    cat.apply(version(id, slot, ver + 1, &mut next), step);
                    ids[i].2 += 1;
                }
                8 if next(20) == 0 => {
                    let slot = next(20) as u32;
                    cat.remove_patient(slot);
                    ids.retain(|(_, s, _)| *s != slot);
                }
                _ => cat.flush_values(),
            }
        }
        cat.flush_values();
        assert_eq!(normal(cat.values()), normal(&build_values(&cat.docs)));
        assert!(cat.docs.len() > 100, "{}", cat.docs.len());
    }

    /// A long run of commits without a query flushes itself every
    /// `FLUSH_PENDING_AT` documents.
    #[test]
    fn many_pending_documents_flush_themselves() {
        let mut cat = Catalog::default();
        let mut n = 7u64;
        let mut next = move |m: u64| {
            n = n.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (n >> 33) % m
        };
        for i in 0..FLUSH_PENDING_AT as u64 - 1 {
            cat.apply(version(DocumentId((u128::from(i)).to_le_bytes()), 0, 1, &mut next), i);
        }
        assert!(cat.has_pending_values());
        cat.apply(version(DocumentId([0xff; 16]), 0, 1, &mut next), 0);
        assert!(!cat.has_pending_values());
        let total: usize = cat.values().values().flat_map(|m| m.values()).map(Vec::len).sum();
        let terms: usize = cat.docs.iter().map(|(_, e)| e.terms.iter().count()).sum();
        assert_eq!(total, terms);
    }

    fn xorshift(seed: u64) -> impl FnMut(u64) -> u64 {
        let mut rng = seed | 1;
        move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n.max(1)
        }
    }

    /// A key of field `field` (0: any variant; 1: texts sharing a prefix; 2: codes of
    /// one system; 3: decimals, equal values at different scales; 4: dates): small
    /// ranges, so values repeat, plus extremes and strings that share prefixes.
    fn rich_key(field: u64, next: &mut impl FnMut(u64) -> u64) -> IndexKey {
        let pick = match field {
            0 => next(8),
            1 => 1,
            2 => 0,
            3 => 4,
            _ => 5,
        };
        match pick {
            0 if field == 0 && next(2) == 0 => IndexKey::Code("http://snomed.info/sct".into(), format!("{}", next(9))),
            0 => IndexKey::Code("http://loinc.org".into(), format!("{}-{}", next(30), next(3))),
            1 => match next(6) {
                0 => IndexKey::Text(["", "f", "fin", "final", "finalé", "final\u{0}"][next(6) as usize].into()),
                _ => IndexKey::Text(format!("CLM-0000{:04}", next(60))),
            },
            2 => IndexKey::Integer([i64::MIN, i64::MAX, -1, 0][next(4) as usize]),
            3 => IndexKey::Integer(next(40) as i64 - 20),
            4 => {
                let scale = next(4) as u32;
                match next(8) {
                    0 => IndexKey::Decimal([Decimal::MAX, Decimal::MIN][next(2) as usize]),
                    1 => IndexKey::Decimal(Decimal::new(next(1000) as i64 - 500, 10 + next(18) as u32)),
                    _ => IndexKey::Decimal(Decimal::new((next(30) as i64 - 15) * 10i64.pow(scale), 1 + scale)),
                }
            }
            5 => IndexKey::Date(if next(10) == 0 {
                [i32::MIN, i32::MAX][next(2) as usize]
            } else {
                next(50) as i32 - 25
            }),
            6 => IndexKey::DateTime(next(50) as i64 * 1_000_000 - 7),
            _ => IndexKey::Boolean(next(2) == 0),
        }
    }

    fn rich_version(id: DocumentId, slot: u32, ver: u32, next: &mut impl FnMut(u64) -> u64) -> NewVersion {
        observation(id, slot, ver, rich_terms(next))
    }

    /// Up to six terms over five fields of mixed types.
    fn rich_terms(next: &mut impl FnMut(u64) -> u64) -> Vec<IndexTerm> {
        let fields = ["mixed", "text", "code", "decimal", "date"];
        (0..next(7))
            .map(|_| {
                let f = next(5);
                term(fields[f as usize], rich_key(f, next))
            })
            .collect()
    }

    /// The term schemas of the tests' versions (one registry, as a store has).
    static REGISTRY: std::sync::LazyLock<TermRegistry> = std::sync::LazyLock::new(TermRegistry::default);

    /// Applied versions keep their terms packed, in the order given, under schema ids
    /// the store's registry shares between documents (and answers `labels_of` and
    /// `any_value_of` from them without decoding the list); equal label sets share one
    /// copy.
    #[test]
    fn applied_terms_are_packed_with_shared_schemas_and_label_sets() {
        let mut next = xorshift(0x7777);
        let mut cat = Catalog::default();
        let mut given = Vec::new();
        for i in 0..300u32 {
            let terms = rich_terms(&mut next);
            given.push((id(i), terms.clone()));
            cat.apply(observation(id(i), i % 7, 1, terms), u64::from(i));
        }
        let mut tables = HashSet::new();
        for (doc, terms) in &given {
            let e = &cat.docs[doc];
            match e.terms.raw() {
                Some((schemas, _)) => {
                    tables.insert(Arc::as_ptr(schemas) as usize);
                }
                None => assert!(terms.is_empty(), "applied terms are packed"),
            }
            for f in ["mixed", "text", "code", "decimal", "date", "absent"] {
                let mut labels = Vec::new();
                let found = e.terms.labels_of(f, |ls| labels.push(ls.to_vec()));
                let want: Vec<Vec<Label>> = terms.iter().filter(|t| t.field == f).map(|t| t.labels.clone()).collect();
                assert_eq!((found, labels), (!want.is_empty(), want), "labels of {f}");
                let want_key = terms.iter().find(|t| t.field == f).map(|t| t.key.clone());
                if let Some(k) = &want_key {
                    assert!(e.terms.any_value_of(f, |x| x == k), "value of {f}");
                }
                assert!(!e.terms.any_value_of(f, |_| false));
            }
            assert_eq!(e.terms.as_slice(), terms.as_slice());
        }
        // One table per schema added, at most: five here, a few more by other tests
        // sharing the registry meanwhile; not one per document.
        assert!(tables.len() <= 10, "{}", tables.len());
        let first = &cat.docs[&given[0].0].labels;
        assert!(given.iter().all(|(d, _)| Arc::ptr_eq(&cat.docs[d].labels, first)));
    }

    /// A registry shares at most `SHARED_SCHEMAS` schemas; a document that needs one
    /// more is packed under a table of its own, and its terms read back the same.
    #[test]
    fn a_full_registry_packs_new_schemas_privately() {
        let registry = TermRegistry::default();
        let key = || IndexKey::Integer(7);
        for i in 0..SHARED_SCHEMAS {
            registry.pack(&[term(&format!("f{i}"), key())]);
        }
        let shared = registry.pack(&[term("f0", key())]);
        let private = registry.pack(&[term("f0", key()), term("extra", key())]);
        let (s, _) = shared.raw().expect("packed");
        let (p, _) = private.raw().expect("packed");
        assert_eq!(s.schemas.len(), SHARED_SCHEMAS);
        assert_eq!(p.schemas.len(), 2);
        assert_eq!(private.as_slice(), &[term("f0", key()), term("extra", key())]);
        // The registry did not grow.
        assert_eq!(registry.pack(&[term("f1", key())]).raw().expect("packed").0.schemas.len(), SHARED_SCHEMAS);
    }

    /// Value indexes in a normal form: (field, value, sorted documents), non-empty
    /// lists only, sorted.
    fn normal(v: &Values) -> Vec<(String, IndexKey, Vec<DocumentId>)> {
        let mut out = Vec::new();
        for (f, m) in v {
            for (k, ids) in m {
                let mut ids = ids.clone();
                ids.sort();
                if !ids.is_empty() {
                    out.push((f.clone(), k.clone(), ids));
                }
            }
        }
        out.sort();
        out
    }

    /// The value indexes of `docs` by inserting every term one by one.
    fn naive(docs: &DocMap) -> Vec<(String, IndexKey, Vec<DocumentId>)> {
        let mut v = Values::new();
        for (id, e) in docs {
            for t in e.terms.iter() {
                v.entry(t.field.clone()).or_default().entry(t.key.clone()).or_default().push(*id);
            }
        }
        normal(&v)
    }

    /// The sort prefix never contradicts the order of keys, and equal keys (decimals at
    /// different scales included) have equal prefixes.
    #[test]
    fn sort_prefix_keeps_key_order() {
        let mut next = xorshift(0x5eed);
        let keys: Vec<IndexKey> = (0..600).map(|_| rich_key(next(5), &mut next)).collect();
        for a in &keys {
            for b in &keys {
                let (pa, pb) = (sort_prefix(a), sort_prefix(b));
                if a == b {
                    assert_eq!(pa, pb, "{a:?} {b:?}");
                }
                if pa < pb {
                    assert!(a < b, "{a:?} {b:?}");
                }
            }
        }
        assert_eq!(
            sort_prefix(&IndexKey::Decimal(Decimal::new(68, 1))),
            sort_prefix(&IndexKey::Decimal(Decimal::new(680, 2)))
        );
    }

    /// Merging groups into a tree, value by value (few groups next to the tree) or by
    /// rebuilding it (many), gives the tree naive insertion gives, whatever the sizes
    /// of tree and groups; equal values in several groups (decimals at two scales)
    /// end in one posting list.
    #[test]
    fn merging_groups_equals_insertion() {
        let mut next = xorshift(0xfeed);
        let mut paths = (0, 0);
        for round in 0..300u32 {
            let field = u64::from(round % 5);
            let mut tree: BTreeMap<IndexKey, Vec<DocumentId>> = BTreeMap::new();
            for i in 0..next(300) as u32 {
                tree.entry(rich_key(field, &mut next)).or_default().push(id(100_000 + i));
            }
            let groups: Vec<Group> = (0..next(60) as u32)
                .map(|g| {
                    let k = rich_key(field, &mut next);
                    (sort_prefix(&k), k, (0..1 + next(3) as u32).map(|j| id(g * 10 + j)).collect())
                })
                .collect();
            let mut want = tree.clone();
            for (_, k, ids) in &groups {
                want.entry(k.clone()).or_default().extend(ids);
            }
            let distinct = groups.iter().map(|g| &g.1).collect::<std::collections::BTreeSet<_>>().len();
            if distinct.saturating_mul(REBUILD_RATIO) < tree.len() {
                paths.0 += 1;
            } else {
                paths.1 += 1;
            }
            merge_groups(&mut tree, groups);
            let norm = |t: BTreeMap<IndexKey, Vec<DocumentId>>| normal(&Values::from([("f".to_string(), t)]));
            assert_eq!(norm(tree), norm(want), "round {round}");
        }
        assert!(paths.0 > 20 && paths.1 > 20, "both paths taken: {paths:?}");
    }

    /// Deferred postings with values of every type (repeats, equal decimals at
    /// different scales, shared prefixes), small and large flushes (both the insertion
    /// and the rebuild path), updates and removals of pending and flushed documents:
    /// the flushed indexes equal naive insertion and a fresh build.
    #[test]
    fn deferred_postings_of_every_type_equal_naive_insertion() {
        let mut next = xorshift(0xabcdef);
        let mut cat = Catalog::default();
        let mut ids: Vec<(DocumentId, u32, u32)> = Vec::new();
        let mut step = 0u64;
        for phase in 0..6 {
            // Alternately long runs without a flush and frequent small flushes.
            let flush_one_in = if phase % 2 == 0 { 2000 } else { 15 };
            for _ in 0..1500 {
                step += 1;
                match next(20) {
                    0..=11 => {
                        let id = DocumentId((u128::from(step) << 1).to_le_bytes());
                        let slot = next(30) as u32;
                        cat.apply(rich_version(id, slot, 1, &mut next), step);
                        ids.push((id, slot, 1));
                    }
                    12..=16 if !ids.is_empty() => {
                        let i = next(ids.len() as u64) as usize;
                        let (id, slot, ver) = ids[i];
                        cat.apply(rich_version(id, slot, ver + 1, &mut next), step);
                        ids[i].2 += 1;
                    }
                    17 if next(40) == 0 => {
                        let slot = next(30) as u32;
                        cat.remove_patient(slot);
                        ids.retain(|(_, s, _)| *s != slot);
                    }
                    _ if next(flush_one_in) == 0 => cat.flush_values(),
                    _ => {}
                }
            }
            cat.flush_values();
            assert_eq!(normal(cat.values()), naive(&cat.docs), "phase {phase}");
        }
        assert_eq!(normal(&build_values(&cat.docs)), naive(&cat.docs));
        assert!(cat.docs.len() > 500, "{}", cat.docs.len());
    }

    /// One flush of more pending documents and postings than `PARALLEL_MERGE_MIN`
    /// (gathered and merged on two threads when the machine has them), after updates
    /// of flushed documents, equals naive insertion.
    #[test]
    fn a_large_flush_on_two_threads_equals_naive_insertion() {
        let mut next = xorshift(0x9abc);
        let mut cat = Catalog::default();
        let n = PARALLEL_MERGE_MIN as u32 + 2_000;
        for i in 0..n {
            cat.apply(rich_version(id(i), i % 40, 1, &mut next), u64::from(i));
        }
        cat.flush_values();
        for i in (0..n).step_by(3) {
            cat.apply(rich_version(id(i), i % 40, 2, &mut next), u64::from(n + i));
        }
        for i in n..2 * n {
            cat.apply(rich_version(id(i), i % 40, 1, &mut next), u64::from(n + i));
        }
        assert!(cat.has_pending_values());
        cat.flush_values();
        let postings: usize = cat.values().values().flat_map(|m| m.values()).map(Vec::len).sum();
        assert!(postings >= PARALLEL_MERGE_MIN, "{postings}");
        assert_eq!(normal(cat.values()), naive(&cat.docs));
    }

    /// A lazy catalog builds its indexes from loaded and applied terms (under two
    /// schema tables; equal values under distinct packed encodings merged) like naive
    /// insertion, and keeps them current afterwards.
    #[test]
    fn lazy_build_from_loaded_and_applied_terms_equals_naive_insertion() {
        let mut next = xorshift(0x1234);
        let mut cat = loaded_and_applied_catalog(800, &mut next);
        assert!(!cat.values_built() && !cat.has_pending_values());
        assert_eq!(normal(cat.values()), naive(&cat.docs));
        for i in 0..200u32 {
            cat.apply(rich_version(id(i * 4), 0, 2, &mut next), 1000 + u64::from(i));
        }
        cat.remove_patient(3);
        cat.flush_values();
        assert_eq!(normal(cat.values()), naive(&cat.docs));
    }

    /// A catalog large enough to be built on several threads (when the machine has
    /// them) builds the same indexes as naive insertion.
    #[test]
    fn a_build_on_every_core_equals_naive_insertion() {
        let mut next = xorshift(0x5678);
        let cat = loaded_and_applied_catalog(PARALLEL_BUILD_MIN as u32 + 3_000, &mut next);
        assert_eq!(normal(cat.values()), naive(&cat.docs));
    }

    /// Shares cover every document once, in order, and are about equal.
    #[test]
    fn split_segments_covers_every_document_once_in_order() {
        let mut cat = Catalog::lazy();
        for i in 0..1000u32 {
            cat.docs.insert(id(i), entry(0));
        }
        let all: Vec<&[(DocumentId, DocEntry)]> = cat.docs.segments.iter().map(Vec::as_slice).collect();
        let flat: Vec<DocumentId> = all.iter().flat_map(|s| s.iter().map(|(i, _)| *i)).collect();
        for n in 1..6 {
            let shares = split_segments(&all, n);
            assert!(shares.len() <= n);
            let got: Vec<DocumentId> = shares.iter().flatten().flat_map(|s| s.iter().map(|(i, _)| *i)).collect();
            assert_eq!(got, flat);
            let sizes: Vec<usize> = shares.iter().map(|sh| sh.iter().map(|s| s.len()).sum()).collect();
            assert!(sizes.iter().all(|&k| k <= 1000usize.div_ceil(n)), "{sizes:?}");
        }
    }

    /// `n` documents: every third applied (replayed after a checkpoint: its terms packed
    /// by the catalog), the others with terms packed as a checkpoint load leaves them,
    /// under a schema table of their own, over five fields of mixed types.
    fn loaded_and_applied_catalog(n: u32, next: &mut impl FnMut(u64) -> u64) -> Catalog {
        let fields = ["mixed", "text", "code", "decimal", "date"];
        let schemas =
            Arc::new(TermSchemas { schemas: fields.iter().map(|f| (f.to_string(), vec![Label::normal()])).collect() });
        let mut cat = Catalog::lazy();
        for i in 0..n {
            let slot = next(10) as u32;
            if i % 3 == 0 {
                cat.apply(rich_version(id(i), slot, 1, next), u64::from(i));
                continue;
            }
            let mut b = Vec::new();
            for _ in 0..next(6) {
                let f = next(5);
                wire::put_uv(&mut b, f);
                wire::put_key(&mut b, &rich_key(f, next));
            }
            assert!(wire::check_terms(&b, fields.len()));
            let len = b.len();
            let mut e = entry(slot);
            e.terms = Terms::packed(schemas.clone(), Arc::new(Zeroizing::new(b)), 0..len);
            cat.docs.insert(id(i), e);
            cat.by_patient.entry(slot).or_default().push(id(i));
        }
        cat
    }

    fn version(id: DocumentId, slot: u32, ver: u32, next: &mut impl FnMut(u64) -> u64) -> NewVersion {
        let terms = (0..1 + next(4))
            .map(|i| term(["code", "status", "effective"][i as usize % 3], IndexKey::Integer(next(30) as i64)))
            .collect();
        observation(id, slot, ver, terms)
    }

    /// A version of an Observation with `terms`, at a made-up offset.
    fn observation(id: DocumentId, slot: u32, ver: u32, terms: Vec<IndexTerm>) -> NewVersion {
        NewVersion {
            id,
            patient_slot: slot,
            kind: Kind::new("Observation").unwrap(),
            created_us: 1,
            loc: VersionLoc { version: ver, offset: 8192 + u64::from(ver), updated_us: 1 },
            labels: LabelSet::new(),
            terms: REGISTRY.pack(&terms),
        }
    }
}
