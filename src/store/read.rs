//! The read path: copy a frame out of the map, verify it, decrypt what the caller may see.

use std::collections::BTreeMap;
use std::io::Write;

use zeroize::Zeroizing;

use crate::crypto::{KeyHierarchy, SecretKey, aead, keys};
use crate::error::{Error, Result};
use crate::format::body::{self, GroupBody, GroupMeta};
use crate::format::envelope::GroupView;
use crate::format::frame::{self, FRAME_HEADER, FrameType};
use crate::log::Region;
use crate::model::{AttachmentRef, DateTime, Document, Field, Kind, Label, LabelSet, Schema};
use crate::store::batch::index_terms;
use crate::store::catalog::{NewVersion, TermPacker, VersionLoc};
use crate::store::keyring::Keyring;
use crate::store::{State, Store, open_envelope_in_place, record, scratch};

/// Copies the frame at `offset` out of the map, checks its CRC and type, and returns its payload.
pub fn copy_frame(map: &dyn Region, offset: u64, expect: FrameType) -> Result<Vec<u8>> {
    let mut payload = Vec::new();
    copy_frame_into(map, offset, expect, &mut payload)?;
    Ok(payload)
}

/// Like [`copy_frame`], into `payload` (cleared first), so a caller can reuse one
/// buffer ([`crate::store::scratch`]).
pub fn copy_frame_into(map: &dyn Region, offset: u64, expect: FrameType, payload: &mut Vec<u8>) -> Result<()> {
    let bytes = map.bytes();
    let integrity = Error::Integrity { what: "frame", offset };
    let start = usize::try_from(offset).map_err(|_| Error::Integrity { what: "frame", offset })?;
    let Some(rest) = bytes.get(start..) else { return Err(integrity) };
    let h = frame::parse_head(rest).map_err(|_| Error::Integrity { what: "frame", offset })?;
    if rest.len() < h.total() || h.ty != expect {
        return Err(integrity);
    }
    // One copy: the payload. The CRC covers header and payload; the header is checked
    // from a 24-byte copy, so nothing verified is read from the map twice.
    let mut head_copy = [0u8; FRAME_HEADER];
    head_copy.copy_from_slice(&rest[..FRAME_HEADER]);
    payload.clear();
    payload.extend_from_slice(&rest[FRAME_HEADER..h.total()]);
    let h2 = frame::parse_head(&head_copy).map_err(|_| Error::Integrity { what: "frame", offset })?;
    if h2 != h || !frame::check_parts(&h2, &head_copy, payload) {
        return Err(Error::Integrity { what: "frame", offset });
    }
    Ok(())
}

/// Builds the catalog entry of a record frame at open. Records of erased patients
/// (destroyed keys) are skipped: they are unreadable by design. The index terms are
/// recomputed from the decrypted label groups (they are not stored twice).
pub(crate) fn decode_catalog_entry(
    keys: &KeyHierarchy,
    ring: &Keyring,
    schema: &Schema,
    packer: &mut TermPacker<'_>,
    payload: &[u8],
    offset: u64,
) -> Result<Option<NewVersion>> {
    // One wiped copy; the envelope and the indexed groups are opened in place in it.
    let mut copy = Zeroizing::new(payload.to_vec());
    let layout = RecordLayout::of(&copy, offset)?;
    let (head, groups_buf) = copy.split_at_mut(layout.envelope.end);
    let env = open_envelope_in_place(keys, layout.part_ids(), &mut head[layout.envelope.clone()], offset)?;
    let pk = match ring.key(env.patient_slot, offset) {
        Ok(k) => k,
        Err(Error::Erased) => return Ok(None),
        Err(e) => return Err(e),
    };
    if layout.groups.len() != env.group_count() {
        return Err(Error::Integrity { what: "record frame", offset });
    }
    let mut terms = Vec::new();
    for (i, g) in env.groups().enumerate() {
        if !g.fields.iter().any(|f| schema.is_indexed(f)) {
            continue;
        }
        let sealed = layout.group_in(groups_buf, i, offset)?;
        let parts = GroupKeyParts::of_view(&g);
        open_group_into(keys, layout.part_ids(), i, parts, (env.patient_slot, pk), sealed, offset, &mut |j, field| {
            if let Some(name) = g.fields.get(j)
                && schema.is_indexed(name)
            {
                index_terms(name, g.labels, &field.value, &mut terms);
            }
        })?;
    }
    let labels: LabelSet = env.groups().flat_map(|g| g.labels.iter().cloned()).collect();
    Ok(Some(NewVersion {
        id: layout.id,
        patient_slot: env.patient_slot,
        kind: Kind::new(env.kind).map_err(|_| Error::Integrity { what: "document envelope", offset })?,
        created_us: env.created_us,
        loc: VersionLoc { version: layout.version, offset, updated_us: env.updated_us },
        labels,
        terms: packer.pack(&terms),
    }))
}

/// Where the parts of a record frame's payload are (byte ranges into it), so a copy of
/// the payload can be opened part by part in place.
struct RecordLayout {
    id: crate::model::DocumentId,
    version: u32,
    nonce: [u8; aead::NONCE_LEN],
    envelope: std::ops::Range<usize>,
    groups: Vec<std::ops::Range<usize>>,
}

impl RecordLayout {
    /// The layout of `payload`, or an integrity error naming the frame at `offset`.
    fn of(payload: &[u8], offset: u64) -> Result<RecordLayout> {
        let rec = record::parse(payload).ok_or(Error::Integrity { what: "record frame", offset })?;
        let base = payload.as_ptr() as usize;
        let range = |s: &[u8]| {
            let start = s.as_ptr() as usize - base;
            start..start + s.len()
        };
        let groups = rec.groups.iter().map(|g| range(g)).collect();
        Ok(RecordLayout { id: rec.id, version: rec.version, nonce: rec.nonce, envelope: range(rec.envelope), groups })
    }

    /// What every part's AAD and nonce are derived from.
    fn part_ids(&self) -> (&crate::model::DocumentId, u32, &[u8; aead::NONCE_LEN]) {
        (&self.id, self.version, &self.nonce)
    }

    /// Group `i` inside `after_envelope`, the part of the payload copy that follows the
    /// envelope (a record's envelope comes before all of its groups).
    fn group_in<'b>(&self, after_envelope: &'b mut [u8], i: usize, offset: u64) -> Result<&'b mut [u8]> {
        let r = self.groups.get(i).ok_or(Error::Integrity { what: "record frame", offset })?;
        r.start
            .checked_sub(self.envelope.end)
            .and_then(|start| after_envelope.get_mut(start..start + r.len()))
            .ok_or(Error::Integrity { what: "record frame", offset })
    }
}

/// Opens label group `i` of `rec` (described by `g` in its envelope) with the key `pk`
/// of the patient at keyring slot `slot`, returning one value per field name of `g`,
/// in order. Works on a wiped copy of the group; [`Store::read_version`] opens groups
/// in its own copy of the frame with [`open_group_into`].
pub(crate) fn open_group(
    keys: &KeyHierarchy,
    rec: &record::SealedRecord<'_>,
    i: usize,
    g: &GroupMeta,
    patient: (u32, &SecretKey),
    offset: u64,
) -> Result<GroupBody> {
    let sealed = rec.groups.get(i).ok_or(Error::Integrity { what: "label group", offset })?;
    let mut copy = Zeroizing::new(sealed.to_vec());
    let mut out = Vec::with_capacity(g.fields.len());
    let group = GroupKeyParts::of_meta(g);
    open_group_into(keys, (&rec.id, rec.version, &rec.nonce), i, group, patient, &mut copy, offset, &mut |_, f| {
        out.push(f)
    })?;
    Ok(out)
}

/// What of a label group's envelope entry opening it needs: its labels and their key
/// generations (for the key) and its field names (bound into the AAD).
pub(crate) struct GroupKeyParts<'g, S> {
    /// The group's labels (sorted).
    pub labels: &'g [Label],
    /// The key generation of each label.
    pub generations: &'g [u32],
    /// The names of the group's fields, in order.
    pub fields: &'g [S],
}

impl<'g> GroupKeyParts<'g, String> {
    /// The parts of an owned envelope's group.
    fn of_meta(g: &'g GroupMeta) -> Self {
        GroupKeyParts { labels: &g.labels, generations: &g.generations, fields: &g.fields }
    }
}

impl<'g, 'a> GroupKeyParts<'g, &'a str> {
    /// The parts of a borrowed envelope's group.
    fn of_view(g: &GroupView<'g, 'a>) -> Self {
        GroupKeyParts { labels: g.labels, generations: g.generations, fields: g.fields }
    }
}

/// Opens the sealed bytes `sealed` of label group `i` of document version
/// `(id, version)` with record nonce `nonce` in place, and hands each field to `sink`
/// with its position in the group, in order. Exactly one field per name of `g`, or an
/// integrity error.
#[allow(clippy::too_many_arguments)]
fn open_group_into<S: AsRef<str>>(
    keys: &KeyHierarchy,
    (id, version, nonce): (&crate::model::DocumentId, u32, &[u8; aead::NONCE_LEN]),
    i: usize,
    g: GroupKeyParts<'_, S>,
    (slot, pk): (u32, &SecretKey),
    sealed: &mut [u8],
    offset: u64,
    sink: &mut dyn FnMut(usize, Field),
) -> Result<()> {
    let bad = || Error::Integrity { what: "label group", offset };
    let index = u16::try_from(i).ok().filter(|i| usize::from(*i) < record::MAX_GROUPS).ok_or_else(bad)?;
    let gk = keys.group_key_for(slot, g.labels, g.generations, pk);
    let aad = record::group_aad(&keys.vault_id(), id, version, index, g.labels, g.fields);
    let pt = aead::open_detached_nonce(&gk, &record::part_nonce(nonce, index + 1), &aad, sealed).map_err(|_| bad())?;
    let expected = g.fields.len();
    let mut n = 0;
    body::decode_group_with(pt, g.labels, offset, &mut |f| {
        if n == expected {
            return false;
        }
        sink(n, f);
        n += 1;
        true
    })?;
    if n != expected {
        return Err(bad());
    }
    Ok(())
}

/// Decides, per label group, whether a reader may decrypt it.
pub trait LabelGate {
    /// True if every label in `labels` may be read.
    fn may_read(&self, labels: &[Label]) -> bool;
}

impl<F: Fn(&[Label]) -> bool> LabelGate for F {
    fn may_read(&self, labels: &[Label]) -> bool {
        self(labels)
    }
}

impl Store {
    /// Reads and decrypts one stored version at `offset`, decrypting only the label
    /// groups `gate` allows; the others come back as redaction markers.
    pub fn read_version(&self, offset: u64, gate: &dyn LabelGate) -> Result<Document> {
        // One copy out of the map, into this thread's wiped scratch buffer; every
        // sealed part is then opened in place in it.
        scratch::with_frame_buffer(|payload| self.read_version_in(None, offset, gate, payload))
    }

    /// [`Store::read_version`] under a state the caller holds read-locked (a run of
    /// reads on several threads shares one acquisition instead of taking the lock per
    /// document).
    pub fn read_version_held(&self, st: &State, offset: u64, gate: &dyn LabelGate) -> Result<Document> {
        scratch::with_frame_buffer(|payload| self.read_version_in(Some(st), offset, gate, payload))
    }

    fn read_version_in(
        &self,
        held: Option<&State>,
        offset: u64,
        gate: &dyn LabelGate,
        payload: &mut Vec<u8>,
    ) -> Result<Document> {
        // Without a held state, the lock is taken for the copy and the patient key only,
        // not while decrypting.
        let guard = if held.is_none() { Some(self.read_state()) } else { None };
        let st: &State = match (held, guard.as_deref()) {
            (Some(s), _) | (None, Some(s)) => s,
            (None, None) => return Err(Error::Integrity { what: "store state", offset }),
        };
        copy_frame_into(&*st.map, offset, FrameType::Record, payload)?;
        let bad = |what| Error::Integrity { what, offset };
        let layout = RecordLayout::of(payload, offset)?;
        let keys = self.keys();
        // Split the copy after the envelope, so the decoded envelope borrows its names
        // while the groups are opened in place.
        let (head, groups_buf) = payload.split_at_mut(layout.envelope.end);
        // The envelope is a view: its names borrow from the copy, and only the names
        // of the fields handed out are allocated (as the document's map keys).
        let env = open_envelope_in_place(keys, layout.part_ids(), &mut head[layout.envelope.clone()], offset)?;
        let slot = env.patient_slot;
        let pk = st.keyring.key(slot, offset)?.clone();
        let patient = st.keyring.patient(slot).unwrap_or_default().to_string();
        drop(guard);
        if layout.groups.len() != env.group_count() {
            return Err(bad("record frame"));
        }
        let kind = Kind::new(env.kind).map_err(|_| bad("document envelope"))?;
        // Names are unique within a document (they were map keys when written). The
        // fields are collected as they are decrypted and the map is built from them in
        // one go (`BTreeMap::from_iter` sorts, then fills its nodes in order): 8% fewer
        // instructions per document than inserting each into the map from a per-group
        // list with mimalloc, 3% with glibc's malloc (callgrind, `profile chart`);
        // inserting them sorted one by one was slower. Field values are ordinary memory
        // by design (SECURITY.md), as in the map itself.
        let mut named: Vec<(String, Field)> = Vec::with_capacity(env.groups().map(|g| g.fields.len()).sum());
        let mut redacted = BTreeMap::new();
        for (i, g) in env.groups().enumerate() {
            if !gate.may_read(g.labels) {
                for f in g.fields {
                    redacted.insert(f.to_string(), g.labels.to_vec());
                }
                continue;
            }
            let sealed = layout.group_in(groups_buf, i, offset)?;
            let parts = GroupKeyParts::of_view(&g);
            let names = g.fields;
            open_group_into(keys, layout.part_ids(), i, parts, (slot, &pk), sealed, offset, &mut |j, field| {
                // `open_group_into` hands out exactly one field per name, in order.
                if let Some(name) = names.get(j) {
                    named.push((name.to_string(), field));
                }
            })?;
        }
        let fields = BTreeMap::from_iter(named);
        Ok(Document {
            id: layout.id,
            patient,
            kind,
            version: layout.version,
            created: DateTime::from_unix_micros(env.created_us),
            updated: DateTime::from_unix_micros(env.updated_us),
            author: env.author.to_string(),
            fields,
            redacted,
        })
    }

    /// Streams an attachment to `out`, one verified chunk at a time (memory use is
    /// bounded by the chunk size), and checks the whole content's hash at the end.
    pub fn read_attachment(&self, a: &AttachmentRef, out: &mut dyn Write) -> Result<u64> {
        let key = SecretKey::from_bytes(a.key);
        let vid = self.vault_id();
        let mut offset = a.first_offset;
        let mut hasher = blake3::Hasher::new();
        let mut written = 0u64;
        for i in 0..a.chunks {
            let map = self.read_state().map.clone();
            let payload = copy_frame(&*map, offset, FrameType::AttachmentChunk)?;
            drop(map);
            let bad = Error::Integrity { what: "attachment chunk", offset };
            if payload.len() < 21 || payload[..16] != a.id || crate::format::le_u32(&payload, 16) != i {
                return Err(bad);
            }
            let last = i + 1 == a.chunks;
            if payload[20] != u8::from(last) {
                return Err(bad);
            }
            let aad = record::attachment_chunk_aad(&vid, &a.id, i, last);
            let pt = aead::open(&key, &aad, &payload[21..])
                .map_err(|_| Error::Integrity { what: "attachment chunk", offset })?;
            hasher.update(&pt);
            out.write_all(&pt).map_err(|e| Error::io("<attachment output>", e))?;
            written += pt.len() as u64;
            offset += (FRAME_HEADER + payload.len()) as u64;
        }
        if written != a.size || !keys::ct_eq(hasher.finalize().as_bytes(), &a.hash) {
            return Err(Error::Integrity { what: "attachment", offset: a.first_offset });
        }
        Ok(written)
    }

    /// Versions of a document, oldest first.
    pub fn versions(&self, id: &crate::model::DocumentId) -> Result<Vec<VersionLoc>> {
        self.read_for_doc(id)?
            .catalog
            .docs
            .get(id)
            .map(|e| e.versions.to_vec())
            .ok_or_else(|| Error::NotFound { id: id.to_string(), version: None })
    }
}
