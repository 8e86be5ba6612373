//! The in-memory catalog: where every document version is, which documents each
//! patient has, and the value indexes used by queries. Rebuilt at open; never
//! written to disk in plaintext.

use std::collections::{BTreeMap, HashMap};

use crate::format::body::{IndexKey, IndexTerm};
use crate::format::frame::FrameType;
use crate::model::{DocumentId, Kind, LabelSet};

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
    pub versions: Vec<VersionLoc>,
    /// Labels of every field of the latest version.
    pub labels: LabelSet,
    /// Index terms of the latest version.
    pub terms: Vec<IndexTerm>,
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

/// The in-memory indexes of a vault.
#[derive(Debug, Default, Clone)]
pub struct Catalog {
    /// Document id -> entry.
    pub docs: HashMap<DocumentId, DocEntry>,
    /// Patient slot -> documents, in creation order.
    pub by_patient: HashMap<u32, Vec<DocumentId>>,
    /// Kind -> documents (unordered posting list).
    pub by_kind: HashMap<Kind, Vec<DocumentId>>,
    /// Field -> value -> documents (latest versions only; unordered posting lists).
    pub values: HashMap<String, BTreeMap<IndexKey, Vec<DocumentId>>>,
    /// Offsets of non-document frames by type (audit, policy, disclosure, admin, checkpoint).
    pub frames: HashMap<u8, Vec<u64>>,
    /// Number of document versions.
    pub versions: u64,
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
    /// Index terms of the version.
    pub terms: Vec<IndexTerm>,
}

impl Catalog {
    /// Adds a version (new document or update).
    pub fn apply(&mut self, v: NewVersion, commit: u64) {
        self.versions += 1;
        if let Some(e) = self.docs.get_mut(&v.id) {
            for t in &e.terms {
                remove_posting(&mut self.values, &t.field, &t.key, &v.id);
            }
            e.versions.push(v.loc);
            e.labels = v.labels;
            e.terms = v.terms;
            e.commit = commit;
        } else {
            self.by_patient.entry(v.patient_slot).or_default().push(v.id);
            self.by_kind.entry(v.kind.clone()).or_default().push(v.id);
            self.docs.insert(
                v.id,
                DocEntry {
                    patient_slot: v.patient_slot,
                    kind: v.kind,
                    created_us: v.created_us,
                    versions: vec![v.loc],
                    labels: v.labels,
                    terms: v.terms,
                    commit,
                },
            );
        }
        let e = &self.docs[&v.id];
        for t in &e.terms {
            let field = match self.values.get_mut(&t.field) {
                Some(m) => m,
                None => self.values.entry(t.field.clone()).or_default(),
            };
            match field.get_mut(&t.key) {
                Some(ids) => ids.push(v.id),
                None => {
                    field.insert(t.key.clone(), vec![v.id]);
                }
            }
        }
    }

    /// Loads many documents at once (from a checkpoint): posting lists are built by
    /// sorting instead of one map lookup per value.
    pub fn bulk_load(&mut self, entries: Vec<(DocumentId, DocEntry)>) {
        let mut postings: HashMap<&str, Vec<(&IndexKey, DocumentId)>> = HashMap::new();
        for (id, e) in &entries {
            for t in &e.terms {
                postings.entry(t.field.as_str()).or_default().push((&t.key, *id));
            }
        }
        let mut values: HashMap<String, BTreeMap<IndexKey, Vec<DocumentId>>> = HashMap::with_capacity(postings.len());
        for (field, mut list) in postings {
            list.sort_unstable_by(|a, b| a.0.cmp(b.0));
            let mut map = BTreeMap::new();
            let mut i = 0;
            while i < list.len() {
                let key = list[i].0;
                let mut ids = Vec::new();
                while i < list.len() && list[i].0 == key {
                    ids.push(list[i].1);
                    i += 1;
                }
                map.insert(key.clone(), ids);
            }
            values.insert(field.to_string(), map);
        }
        for (field, map) in values {
            let target = self.values.entry(field).or_default();
            for (k, mut ids) in map {
                target.entry(k).or_default().append(&mut ids);
            }
        }
        for (id, e) in entries {
            self.versions += e.versions.len() as u64;
            self.by_patient.entry(e.patient_slot).or_default().push(id);
            self.by_kind.entry(e.kind.clone()).or_default().push(id);
            self.docs.insert(id, e);
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
        let ids = self.by_patient.remove(&slot).unwrap_or_default();
        for id in &ids {
            if let Some(e) = self.docs.remove(id) {
                if let Some(s) = self.by_kind.get_mut(&e.kind) {
                    s.retain(|x| x != id);
                }
                for t in &e.terms {
                    remove_posting(&mut self.values, &t.field, &t.key, id);
                }
            }
        }
        ids
    }
}

fn remove_posting(
    values: &mut HashMap<String, BTreeMap<IndexKey, Vec<DocumentId>>>,
    field: &str,
    key: &IndexKey,
    id: &DocumentId,
) {
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
