//! The write path: a batch stages sealed frames and commits them with one fsync.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;

use rand::Rng;
use zeroize::Zeroizing;

use crate::crypto::{SecretKey, aead, keys};
use crate::error::{Error, Result};
use crate::format::body::{self, Envelope, GroupMeta, IndexKey, IndexTerm};
use crate::format::envelope;
use crate::format::frame::FrameType;
use crate::format::keyring::MAX_PATIENT_ID;
use crate::log::LogWriter;
use crate::log::writer::{LogHead, PendingCommit};
use crate::model::document::limits;
use crate::model::{AttachmentRef, DocumentId, Field, Kind, Label, LabelSet, NewDocument, Value};
use crate::store::catalog::{IdHashState, NewVersion, TermPacker, Terms, VersionLoc};
use crate::store::{Store, record};

/// Size of one attachment chunk.
pub const ATTACHMENT_CHUNK: usize = 1024 * 1024;

/// A set of writes that become durable together with one fsync.
pub struct Batch<'a> {
    store: &'a Store,
    writer: crate::store::WriterGuard<'a>,
    pending: PendingCommit,
    new_patients: Vec<(String, SecretKey)>,
    /// Patient id -> (its new slot, its position in `new_patients`).
    new_slots: HashMap<String, (u32, usize)>,
    versions: Vec<NewVersion>,
    others: Vec<(FrameType, u64)>,
    attachments: HashSet<[u8; 16]>,
    latest: HashMap<DocumentId, (u32, i64, u32, Kind), IdHashState>,
    /// Versions prepared but not yet sealed: sealing is deferred to [`Batch::commit`]
    /// (or the next frame staged), where it runs on every core.
    unsealed: Vec<Unsealed>,
}

/// A document version whose label groups are encoded but not yet sealed.
struct Unsealed {
    id: DocumentId,
    version: u32,
    /// The patient's keyring slot, when it is already durable: its group keys may then
    /// come from (and go to) the per-patient cache. A slot this batch adds is not
    /// cached: if the batch fails, the slot number goes to another patient.
    cached_slot: Option<u32>,
    patient_key: SecretKey,
    envelope: Envelope,
    bodies: Vec<Zeroizing<Vec<u8>>>,
    /// Taken when the record is appended; the rest (with the patient key) is dropped
    /// in place, so no moved-from copy of the key is left in freed memory.
    version_entry: Option<NewVersion>,
}

/// Most threads one batch uses to seal its records.
pub const SEAL_THREADS: usize = 2;
/// Fewest unsealed records for which sealing uses more than one thread.
const PARALLEL_SEAL_MIN: usize = 16;

/// What a commit made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitInfo {
    /// The commit number.
    pub commit: u64,
    /// The hash-chain value after it (see [`Store::head`]).
    pub chain: [u8; 32],
    /// Frames written, including the commit frame.
    pub frames: u32,
}

impl std::fmt::Debug for Batch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch").field("frames", &self.pending.frames()).finish_non_exhaustive()
    }
}

/// What a new version is made from.
pub(crate) struct VersionSpec<'d> {
    pub id: DocumentId,
    pub version: u32,
    pub patient: &'d str,
    pub kind: &'d Kind,
    pub created_us: i64,
    pub author: &'d str,
    pub fields: &'d BTreeMap<String, Field>,
}

impl<'d> VersionSpec<'d> {
    /// Version 1 of a new document (a fresh random id, created now) by `author`.
    fn first(doc: &'d NewDocument, author: &'d str) -> Self {
        VersionSpec {
            id: DocumentId::random(),
            version: 1,
            patient: &doc.patient,
            kind: &doc.kind,
            created_us: crate::util::now_micros(),
            author,
            fields: &doc.fields,
        }
    }
}

impl<'a> Batch<'a> {
    pub(crate) fn new(store: &'a Store, writer: crate::store::WriterGuard<'a>) -> Result<Self> {
        let pending = writer.as_ref().ok_or(Error::ReadOnly)?.begin()?;
        Ok(Batch {
            store,
            writer,
            pending,
            new_patients: Vec::new(),
            new_slots: HashMap::new(),
            versions: Vec::new(),
            others: Vec::new(),
            attachments: HashSet::new(),
            latest: HashMap::default(),
            unsealed: Vec::new(),
        })
    }

    fn writer(&mut self) -> Result<&mut LogWriter> {
        self.writer.as_mut().ok_or(Error::ReadOnly)
    }

    /// Number of frames staged so far.
    pub fn frames(&self) -> u32 {
        self.pending.frames() + self.unsealed.len() as u32
    }

    /// Number of document versions staged so far.
    pub fn versions(&self) -> usize {
        self.versions.len() + self.unsealed.len()
    }

    /// Labels each field of `doc` would get.
    pub fn labels_of(&self, kind: &Kind, fields: &BTreeMap<String, Field>) -> LabelSet {
        fields.iter().flat_map(|(n, f)| self.store.schema().labels_of(kind, n, &f.labels)).collect()
    }

    /// The keyring slot and key of `patient`, and whether that slot is already durable
    /// (false for a patient this batch adds).
    fn patient_slot_key(&mut self, patient: &str) -> Result<(u32, SecretKey, bool)> {
        if let Some(&(s, i)) = self.new_slots.get(patient)
            && let Some((_, key)) = self.new_patients.get(i)
        {
            return Ok((s, key.clone(), false));
        }
        let st = self.store.read_state();
        if let Some(s) = st.keyring.slot_of(patient) {
            return Ok((s, st.keyring.key(s, 0)?.clone(), true));
        }
        if patient.len() > MAX_PATIENT_ID {
            return Err(Error::InvalidDocument(format!(
                "the patient identifier must be at most {MAX_PATIENT_ID} bytes"
            )));
        }
        let slot = st.keyring.next_slot(self.new_patients.len());
        drop(st);
        let key = SecretKey::random();
        self.new_slots.insert(patient.to_string(), (slot, self.new_patients.len()));
        keys::push_wiping(&mut self.new_patients, (patient.to_string(), key.clone()));
        Ok((slot, key, false))
    }

    /// Stages a new document; returns its id.
    pub fn put(&mut self, doc: &NewDocument, author: &str) -> Result<DocumentId> {
        doc.validate()?;
        self.put_validated(doc, author)
    }

    /// [`Batch::put`] of a document the caller has validated.
    pub(crate) fn put_validated(&mut self, doc: &NewDocument, author: &str) -> Result<DocumentId> {
        let spec = VersionSpec::first(doc, author);
        let id = spec.id;
        self.stage_version(spec)?;
        Ok(id)
    }

    /// The latest version of `id` as this batch sees it: (version, created, patient slot, kind).
    pub fn latest(&self, id: &DocumentId) -> Result<(u32, i64, u32, Kind)> {
        if let Some(x) = self.latest.get(id) {
            return Ok(x.clone());
        }
        let st = self.store.read_for_doc(id)?;
        let e = st.catalog.docs.get(id).ok_or_else(|| Error::NotFound { id: id.to_string(), version: None })?;
        Ok((e.latest().version, e.created_us, e.patient_slot, e.kind.clone()))
    }

    /// Stages a new version of an existing document with `fields` replacing the old ones.
    pub fn update(&mut self, id: &DocumentId, fields: &BTreeMap<String, Field>, author: &str) -> Result<u32> {
        let (version, created, slot, kind) = self.latest(id)?;
        let patient = match self.new_slots.iter().find(|(_, (s, _))| *s == slot) {
            Some((p, _)) => p.clone(),
            None => self.store.read_state().keyring.patient(slot).ok_or(Error::Erased)?.to_string(),
        };
        NewDocument { patient: patient.clone(), kind: kind.clone(), fields: fields.clone() }.validate()?;
        let next = version.checked_add(1).ok_or_else(|| Error::InvalidArgument("too many versions".into()))?;
        self.stage_version(VersionSpec {
            id: *id,
            version: next,
            patient: &patient,
            kind: &kind,
            created_us: created,
            author,
            fields,
        })?;
        Ok(next)
    }

    pub(crate) fn stage_version(&mut self, spec: VersionSpec<'_>) -> Result<()> {
        self.check_attachments(spec.fields)?;
        let prepared =
            prepare_version(self.store.schema(), &mut self.store.term_registry().packer(), spec.kind, spec.fields)?;
        self.stage_prepared(&spec, prepared)
    }

    /// Refuses fields that reference an attachment neither committed nor uploaded in
    /// this batch.
    pub(crate) fn check_attachments(&self, fields: &BTreeMap<String, Field>) -> Result<()> {
        check_attachments(fields, &self.attachments, &|| self.store.read_state().head.end)
    }

    /// The attachments uploaded in this batch so far (see [`check_attachments`]).
    pub(crate) fn uploaded_attachments(&self) -> &HashSet<[u8; 16]> {
        &self.attachments
    }

    /// Stages a new document (version 1) whose groups [`prepare_version`] encoded and
    /// whose attachments were checked; returns its id.
    pub(crate) fn put_prepared(
        &mut self,
        doc: &NewDocument,
        author: &str,
        prepared: PreparedVersion,
    ) -> Result<DocumentId> {
        let spec = VersionSpec::first(doc, author);
        self.stage_prepared(&spec, prepared)?;
        Ok(spec.id)
    }

    /// Stages the version `spec` whose label groups `prepare_version` encoded from
    /// `spec.fields` (attachments already checked).
    pub(crate) fn stage_prepared(&mut self, spec: &VersionSpec<'_>, prepared: PreparedVersion) -> Result<()> {
        let PreparedVersion { metas, bodies, terms, labels } = prepared;
        let (slot, pk, durable) = self.patient_slot_key(spec.patient)?;
        let now = crate::util::now_micros();
        let env = Envelope {
            patient_slot: slot,
            kind: spec.kind.to_string(),
            created_us: spec.created_us,
            updated_us: now,
            author: spec.author.to_string(),
            groups: metas,
        };
        self.latest.insert(spec.id, (spec.version, spec.created_us, slot, spec.kind.clone()));
        let version_entry = NewVersion {
            id: spec.id,
            patient_slot: slot,
            kind: spec.kind.clone(),
            created_us: spec.created_us,
            loc: VersionLoc { version: spec.version, offset: 0, updated_us: now },
            labels,
            terms,
        };
        // The entry holds a patient key: grow the list without leaving a copy behind.
        keys::push_wiping(
            &mut self.unsealed,
            Unsealed {
                id: spec.id,
                version: spec.version,
                cached_slot: durable.then_some(slot),
                patient_key: pk,
                envelope: env,
                bodies,
                version_entry: Some(version_entry),
            },
        );
        Ok(())
    }

    /// Seals every prepared version (on up to [`SEAL_THREADS`] threads) and appends
    /// the record frames in the order the versions were staged.
    fn seal_unsealed(&mut self) -> Result<()> {
        if self.unsealed.is_empty() {
            return Ok(());
        }
        let mut work = std::mem::take(&mut self.unsealed);
        let store = self.store;
        // Each record is sealed, then emptied where it lies (its plaintext bodies wiped
        // and freed, by the thread that sealed it); its patient key is wiped when `work`
        // is dropped, so no moved-from copy of a key is left in freed memory. The frames
        // are appended in order on this thread while the others still seal (the hash
        // chain is serial).
        let seal = |u: &mut Unsealed| {
            let payload = seal_record(store, u);
            u.bodies = Vec::new();
            u.envelope.groups = Vec::new();
            (payload, u.version_entry.take())
        };
        let threads = if work.len() < PARALLEL_SEAL_MIN { 1 } else { crate::util::cores().min(SEAL_THREADS) };
        let mut pending = std::mem::replace(&mut self.pending, dummy_pending());
        let mut versions = std::mem::take(&mut self.versions);
        let appended = self.writer().and_then(|w| {
            crate::util::pipeline(&mut work, threads, seal, |(payload, entry): (Vec<u8>, Option<NewVersion>)| {
                let offset = w.append(&mut pending, FrameType::Record, &payload)?;
                if let Some(mut v) = entry {
                    v.loc.offset = offset;
                    versions.push(v);
                }
                Ok(())
            })
        });
        self.pending = pending;
        self.versions = versions;
        drop(work);
        appended
    }

    /// Stages a frame whose payload the caller sealed (audit entries, policy versions ...).
    pub fn append_frame(&mut self, ty: FrameType, payload: &[u8]) -> Result<u64> {
        if matches!(ty, FrameType::Record | FrameType::Commit | FrameType::AttachmentChunk) {
            return Err(Error::InvalidArgument("use put/update/put_attachment for this frame type".into()));
        }
        self.seal_unsealed()?;
        let mut pending = std::mem::replace(&mut self.pending, dummy_pending());
        let r = self.writer().and_then(|w| w.append(&mut pending, ty, payload));
        self.pending = pending;
        let off = r?;
        self.others.push((ty, off));
        Ok(off)
    }

    /// Streams an attachment from `reader` into chunk frames sealed under a fresh data
    /// key; memory use is bounded by the chunk size. Reference the returned value in a
    /// document field of this batch.
    pub fn put_attachment(&mut self, content_type: &str, reader: &mut dyn Read) -> Result<AttachmentRef> {
        if content_type.len() > 255 {
            return Err(Error::InvalidArgument("content type longer than 255 bytes".into()));
        }
        let mut id = [0u8; 16];
        rand::rng().fill_bytes(&mut id);
        let key = SecretKey::random();
        let vid = self.store.vault_id();
        let mut hasher = blake3::Hasher::new();
        let mut buf = zeroize::Zeroizing::new(vec![0u8; ATTACHMENT_CHUNK]);
        let mut next = zeroize::Zeroizing::new(vec![0u8; ATTACHMENT_CHUNK]);
        let mut have = fill(reader, &mut buf)?;
        let mut size = 0u64;
        let mut index = 0u32;
        let mut first_offset = None;
        loop {
            let nhave = if have == ATTACHMENT_CHUNK { fill(reader, &mut next)? } else { 0 };
            let last = nhave == 0;
            hasher.update(&buf[..have]);
            size += have as u64;
            let mut payload = Vec::with_capacity(21 + aead::sealed_len(have));
            payload.extend_from_slice(&id);
            payload.extend_from_slice(&index.to_le_bytes());
            payload.push(u8::from(last));
            aead::seal(&key, &record::attachment_chunk_aad(&vid, &id, index, last), &buf[..have], &mut payload);
            let mut pending = std::mem::replace(&mut self.pending, dummy_pending());
            let r = self.writer().and_then(|w| w.append(&mut pending, FrameType::AttachmentChunk, &payload));
            self.pending = pending;
            let off = r?;
            first_offset.get_or_insert(off);
            index =
                index.checked_add(1).ok_or(Error::TooLarge { what: "attachment", size, limit: u64::from(u32::MAX) })?;
            if last {
                break;
            }
            std::mem::swap(&mut buf, &mut next);
            have = nhave;
        }
        self.attachments.insert(id);
        Ok(AttachmentRef {
            id,
            content_type: content_type.to_string(),
            size,
            hash: *hasher.finalize().as_bytes(),
            chunks: index,
            first_offset: first_offset.unwrap_or(0),
            key: *key.expose(),
        })
    }

    /// Makes every staged write durable with one fsync (two if new patients were
    /// added: their keys are made durable first). On failure nothing of this batch is
    /// visible and, for I/O failures, the vault refuses further writes until reopened.
    pub fn commit(mut self) -> Result<CommitInfo> {
        let store = self.store;
        self.seal_unsealed()?;
        // The patients written to whose checkpoint entries are still sealed are decoded
        // now, so that applying the versions after the commit cannot fail.
        let slots: Vec<u32> = self.versions.iter().map(|v| v.patient_slot).collect();
        store.load_patients(&slots)?;
        if !self.new_patients.is_empty() {
            let new = std::mem::take(&mut self.new_patients);
            let r = store.write_state().keyring.append(store.keys(), new);
            if let Err(e) = r {
                if let Some(w) = self.writer.as_mut() {
                    w.latch();
                }
                return Err(e);
            }
        }
        let frames = self.pending.frames() + 1;
        let pending = std::mem::replace(&mut self.pending, dummy_pending());
        let now = crate::util::now_micros();
        let head: LogHead = self.writer()?.commit(pending, &store.keys().commit_mac, now)?;
        let map = store.data_map();
        let mut st = store.write_state();
        if let Ok(m) = map {
            st.map = m;
        }
        st.head = head;
        if !self.versions.is_empty() {
            store.note_documents_applied();
        }
        for v in self.versions.drain(..) {
            st.catalog.apply(v, head.commit_number);
        }
        for (ty, off) in self.others.drain(..) {
            st.catalog.note_frame(ty, off);
        }
        Ok(CommitInfo { commit: head.commit_number, chain: head.chain, frames })
    }
}

/// Seals one prepared version into its record payload: the envelope under the meta
/// key, each label group under its group key, every part with its own nonce derived
/// from one random record nonce (docs/FORMAT.md §8.1).
fn seal_record(store: &Store, u: &Unsealed) -> Vec<u8> {
    let keys = store.keys();
    let vid = store.vault_id();
    let nonce = aead::random_nonce();
    let env_pt = envelope::encode(&u.envelope);
    let capacity = record::RECORD_HEAD
        + aead::sealed_len_detached(env_pt.len())
        + 2
        + u.bodies.iter().map(|b| 4 + aead::sealed_len_detached(b.len())).sum::<usize>();
    let mut w = record::RecordWriter::new(&u.id, u.version, &nonce, capacity);
    let env_aad = record::envelope_aad(&vid, &u.id, u.version);
    w.envelope(|out| aead::seal_detached_nonce(&keys.meta, &record::part_nonce(&nonce, 0), &env_aad, &env_pt, out));
    // `stage_version` bounds the group count by `record::MAX_GROUPS`.
    w.group_count(u.bodies.len() as u16);
    for (i, (pt, meta)) in u.bodies.iter().zip(&u.envelope.groups).enumerate() {
        let gk = match u.cached_slot {
            Some(slot) => keys.group_key_for(slot, &meta.labels, &meta.generations, &u.patient_key),
            None => keys.group_key(&meta.labels, &meta.generations, &u.patient_key),
        };
        let aad = record::group_aad(&vid, &u.id, u.version, i as u16, &meta.labels, &meta.fields);
        w.group(|out| aead::seal_detached_nonce(&gk, &record::part_nonce(&nonce, i as u16 + 1), &aad, pt, out));
    }
    w.finish()
}

/// A document version's label groups, encoded but not yet sealed, and what the
/// catalog needs of it: the work of staging that needs no batch state, so that
/// [`crate::vault::SessionBatch::put_all`] can do it on every core.
pub(crate) struct PreparedVersion {
    metas: Vec<GroupMeta>,
    bodies: Vec<Zeroizing<Vec<u8>>>,
    terms: Terms,
    labels: LabelSet,
}

/// Groups the fields of a `kind` document by their full label set (labels from the
/// schema plus each field's own), encodes each group's body and gathers the index
/// terms. Refuses a group over [`limits::GROUP_BYTES`] and more than
/// [`record::MAX_GROUPS`] groups.
pub(crate) fn prepare_version(
    schema: &crate::model::Schema,
    packer: &mut TermPacker<'_>,
    kind: &Kind,
    fields: &BTreeMap<String, Field>,
) -> Result<PreparedVersion> {
    // Group fields by their full label set: a document has a handful of groups, so
    // a linear search finds a field's group; the groups are then ordered by label set.
    let mut groups: Vec<(Vec<Label>, Vec<String>, Vec<&Field>)> = Vec::new();
    let mut terms = Vec::new();
    let labeler = schema.labeler(kind);
    // One buffer for every field's label list; a group keeps a copy of its own.
    let mut labels: Vec<Label> = Vec::new();
    for (name, f) in fields {
        labeler.field_labels_into(name, &f.labels, &mut labels);
        if schema.is_indexed(name) {
            index_terms(name, &labels, &f.value, &mut terms);
        }
        let g = match groups.iter().position(|g| g.0 == labels) {
            Some(i) => &mut groups[i],
            None => {
                groups.push((labels.clone(), Vec::new(), Vec::new()));
                let last = groups.len() - 1;
                &mut groups[last]
            }
        };
        g.1.push(name.clone());
        g.2.push(f);
    }
    groups.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut bodies = Vec::with_capacity(groups.len());
    let mut metas = Vec::with_capacity(groups.len());
    for (labels, names, values) in groups {
        let pt = body::encode_group(&values, &labels)?;
        if pt.len() > limits::GROUP_BYTES {
            return Err(Error::TooLarge {
                what: "label group of a document",
                size: pt.len() as u64,
                limit: limits::GROUP_BYTES as u64,
            });
        }
        bodies.push(pt);
        metas.push(GroupMeta { generations: vec![1; labels.len()], labels, fields: names });
    }
    if metas.len() > record::MAX_GROUPS {
        return Err(Error::InvalidDocument(format!("a document may have at most {} label groups", record::MAX_GROUPS)));
    }
    let labels: LabelSet = metas.iter().flat_map(|g| g.labels.iter().cloned()).collect();
    Ok(PreparedVersion { metas, bodies, terms: packer.pack(&terms), labels })
}

/// Refuses fields that reference an attachment that is neither in `uploaded` (this
/// batch's) nor below `committed_end()` (committed before; asked only when a field
/// holds an attachment).
pub(crate) fn check_attachments(
    fields: &BTreeMap<String, Field>,
    uploaded: &HashSet<[u8; 16]>,
    committed_end: &dyn Fn() -> u64,
) -> Result<()> {
    for f in fields.values() {
        let mut bad = false;
        f.value.walk(&mut |v| {
            if let Value::Attachment(a) = v
                && !uploaded.contains(&a.id)
                && a.first_offset >= committed_end()
            {
                bad = true;
            }
        });
        if bad {
            return Err(Error::InvalidDocument(
                "an attachment reference points to data that was never committed; upload it in this batch".into(),
            ));
        }
    }
    Ok(())
}

fn dummy_pending() -> PendingCommit {
    PendingCommit::placeholder()
}

fn fill(r: &mut dyn Read, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("<attachment input>", e)),
        }
    }
    Ok(n)
}

/// Index terms of one field value.
pub(crate) fn index_terms(field: &str, labels: &[Label], v: &Value, out: &mut Vec<IndexTerm>) {
    let key = match v {
        Value::Code(c) => IndexKey::Code(c.system.clone(), c.code.clone()),
        Value::Text(s) if s.len() <= 256 => IndexKey::Text(s.clone()),
        Value::Integer(i) => IndexKey::Integer(*i),
        Value::Decimal(d) => IndexKey::Decimal(d.normalize()),
        Value::Date(d) => IndexKey::Date(d.days()),
        Value::DateTime(t) => IndexKey::DateTime(t.unix_micros()),
        Value::Boolean(b) => IndexKey::Boolean(*b),
        Value::List(items) => {
            for i in items {
                index_terms(field, labels, i, out);
            }
            return;
        }
        _ => return,
    };
    out.push(IndexTerm { field: field.to_string(), labels: labels.to_vec(), key });
}

impl Store {
    /// A fresh view of the data file.
    pub(crate) fn data_map(&self) -> Result<std::sync::Arc<dyn crate::log::Region>> {
        self.data.map().map_err(|e| Error::io(&self.path, e))
    }
}
