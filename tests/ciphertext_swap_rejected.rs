//! Property: a sealed part moved to another place is rejected, never read as the
//! data of its new place. At the byte level, sealed ciphertexts of equal length are
//! swapped between the two label groups of one document, between two documents (of
//! one patient and of two patients), between two versions of a document, envelopes
//! between documents and between versions, and attachment chunks between two
//! attachments. Frame checksums are recomputed, so only the AEAD (key and associated
//! data) can catch the swap; the commit chain also breaks, so the copy is opened
//! read-only and the moved frames are read directly with `Store::read_version` /
//! `Store::read_attachment`. Every such read must fail with `Error::Integrity`.

mod common;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use chartvault::store::keyring_path;
use chartvault::{AttachmentRef, Document, DocumentId, Error, Label, NewDocument, Value, Vault, VaultKey};
use common::{
    Expected, doc_matches, key, opts, opts_ro, physician, record_layout, rewrite_payload, scratch_dir, write_vault,
};

const FRAME_HEADER: usize = chartvault::format::frame::FRAME_HEADER;

fn all(_: &[Label]) -> bool {
    true
}

/// A document with two label groups of equal encoded length: `vals` (normal) and
/// `note` (restricted by the schema), each an 8-letter text.
fn two_groups(patient: &str, vals: &str, note: &str) -> NewDocument {
    assert_eq!((vals.len(), note.len()), (8, 8));
    NewDocument::new(patient, "Observation")
        .unwrap()
        .with("vals", Value::Text(vals.into()))
        .with("note", Value::Text(note.into()))
}

struct Fixture {
    data: Vec<u8>,
    keyring: Vec<u8>,
    /// (document, version) -> record frame offset and expected content.
    records: BTreeMap<(DocumentId, u32), (u64, Expected)>,
    a: DocumentId,
    b: DocumentId,
    p2: DocumentId,
    att: [AttachmentRef; 2],
    att_hash: [Vec<u8>; 2],
}

fn build() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.cv");
    let vault = Vault::create(&path, VaultKey::Raw(&key()), opts()).unwrap();
    let dr = vault.session(physician(["P1", "P2"])).unwrap();
    let exp = |id, v, d: &NewDocument| Expected {
        id,
        patient: d.patient.clone(),
        kind: d.kind.to_string(),
        version: v,
        author: "dr".into(),
        fields: d.fields.clone(),
    };
    let mut docs = Vec::new();
    let da = two_groups("P1", "aaaaaaaa", "AAAAAAAA");
    let db = two_groups("P1", "bbbbbbbb", "BBBBBBBB");
    let dp2 = two_groups("P2", "cccccccc", "CCCCCCCC");
    let a = dr.put(&da).unwrap();
    let b = dr.put(&db).unwrap();
    let p2 = dr.put(&dp2).unwrap();
    docs.push(exp(a, 1, &da));
    docs.push(exp(b, 1, &db));
    docs.push(exp(p2, 1, &dp2));
    let da2 = two_groups("P1", "dddddddd", "DDDDDDDD");
    assert_eq!(dr.update(&a, da2.fields.clone()).unwrap(), 2);
    docs.push(exp(a, 2, &da2));

    // Two attachments of equal size.
    let contents = [vec![0x11u8; 1000], vec![0x22u8; 1000]];
    let mut batch = dr.batch().unwrap();
    let r0 = batch.put_attachment("application/octet-stream", &mut &contents[0][..]).unwrap();
    let r1 = batch.put_attachment("application/octet-stream", &mut &contents[1][..]).unwrap();
    let dc = NewDocument::new("P1", "DocumentReference")
        .unwrap()
        .with("one", Value::from(r0.clone()))
        .with("two", Value::from(r1.clone()));
    let c = batch.put(&dc).unwrap();
    batch.commit().unwrap();
    docs.push(exp(c, 1, &dc));

    let records = {
        let st = vault.store().read_state();
        docs.iter()
            .map(|e| {
                let loc = st.catalog.docs[&e.id].versions.iter().find(|l| l.version == e.version).copied().unwrap();
                ((e.id, e.version), (loc.offset, e.clone()))
            })
            .collect()
    };
    drop(dr);
    vault.close().unwrap();
    Fixture {
        data: std::fs::read(&path).unwrap(),
        keyring: std::fs::read(keyring_path(&path)).unwrap(),
        records,
        a,
        b,
        p2,
        att: [r0, r1],
        att_hash: contents,
    }
}

/// A part of a record frame.
#[derive(Debug, Clone, Copy)]
enum Part {
    /// The record nonce every part's nonce derives from.
    Nonce,
    /// The sealed envelope.
    Envelope,
    /// Sealed label group `i`.
    Group(usize),
}

impl Fixture {
    fn offset(&self, id: DocumentId, v: u32) -> usize {
        self.records[&(id, v)].0 as usize
    }

    /// Absolute byte range of a record part.
    fn part(&self, id: DocumentId, v: u32, part: Part) -> Range<usize> {
        let off = self.offset(id, v);
        let layout = record_layout(&self.data[off..]);
        let r = match part {
            Part::Nonce => layout.nonce,
            Part::Envelope => layout.envelope,
            Part::Group(i) => layout.groups[i].clone(),
        };
        off + r.start..off + r.end
    }

    /// Absolute range of the sealed bytes of an attachment's (single) chunk frame.
    fn chunk(&self, i: usize) -> Range<usize> {
        let a = &self.att[i];
        assert_eq!(a.chunks, 1);
        let off = a.first_offset as usize;
        let len = chartvault::format::frame::parse(&self.data[off..]).unwrap().total();
        off + FRAME_HEADER + 21..off + len
    }
}

/// Swaps two equal-length byte ranges and re-encodes the frames holding them.
fn swap(f: &Fixture, x: Range<usize>, y: Range<usize>, frame_x: usize, frame_y: usize) -> Vec<u8> {
    assert_eq!(x.len(), y.len(), "swapped parts must have equal lengths (construct the documents so)");
    assert_ne!(f.data[x.clone()], f.data[y.clone()], "the swapped ciphertexts differ");
    let mut d = f.data.clone();
    let (bx, by) = (f.data[x.clone()].to_vec(), f.data[y.clone()].to_vec());
    d[x].copy_from_slice(&by);
    d[y].copy_from_slice(&bx);
    for off in [frame_x, frame_y] {
        let len = chartvault::format::frame::parse(&f.data[off..]).unwrap().total();
        let payload = d[off + FRAME_HEADER..off + len].to_vec();
        rewrite_payload(&mut d, off, &payload);
    }
    d
}

fn open_copy(dir: &Path, f: &Fixture, data: &[u8]) -> Vault {
    let path = write_vault(dir, "v.cv", data, &f.keyring);
    let v = Vault::open(&path, VaultKey::Raw(&key()), opts_ro()).expect("read-only open serves the intact part");
    let r = v.open_report();
    assert!(r.corrupt.is_some() || r.torn_tail.is_some(), "the commit chain no longer verifies: {r:?}");
    v
}

fn must_reject(res: chartvault::Result<Document>, ctx: &str) {
    match res {
        Err(Error::Integrity { .. }) => {}
        Err(other) => panic!("{ctx}: rejected, but with {other:?} instead of an integrity error"),
        Ok(d) => panic!("{ctx}: swapped ciphertext was accepted and read as {d:?}"),
    }
}

/// Every record not named in `tampered` still reads exactly; every session read
/// returns an error or exact data.
fn others_intact(v: &Vault, f: &Fixture, tampered: &[(DocumentId, u32)], ctx: &str) {
    for (k, (off, exp)) in &f.records {
        if tampered.contains(k) {
            continue;
        }
        let d = v.store().read_version(*off, &all).unwrap_or_else(|e| panic!("{ctx}: untouched {k:?} unreadable: {e}"));
        assert!(doc_matches(&d, exp), "{ctx}: untouched {k:?} read as {d:?}");
    }
    let s = v.session(physician(["P1", "P2"])).unwrap();
    for ((id, ver), (_, exp)) in &f.records {
        if let Ok(d) = s.get_version(id, *ver) {
            assert!(doc_matches(&d, exp), "{ctx}: session read of {id} v{ver} returned {d:?}");
        }
    }
}

#[test]
fn swapped_ciphertexts_are_rejected() {
    let f = build();

    // Control: in an unchanged copy every record and attachment reads back exactly.
    {
        let dir = scratch_dir();
        let path = write_vault(dir.path(), "v.cv", &f.data, &f.keyring);
        let v = Vault::open(&path, VaultKey::Raw(&key()), opts_ro()).unwrap();
        others_intact(&v, &f, &[], "control");
        for i in 0..2 {
            let mut out = Vec::new();
            v.store().read_attachment(&f.att[i], &mut out).unwrap();
            assert_eq!(out, f.att_hash[i], "control attachment {i}");
        }
    }

    let (a, b, p2) = (f.a, f.b, f.p2);
    // (name, part x, part y, records tampered)
    use Part::{Envelope, Group, Nonce};
    type At = (DocumentId, u32, Part);
    let cases: Vec<(&str, At, At)> = vec![
        ("groups within one document", (a, 1, Group(0)), (a, 1, Group(1))),
        ("groups between two documents", (a, 1, Group(0)), (b, 1, Group(0))),
        ("groups between documents of two patients", (b, 1, Group(1)), (p2, 1, Group(1))),
        ("groups between two versions", (a, 1, Group(0)), (a, 2, Group(0))),
        ("second groups between two versions", (a, 1, Group(1)), (a, 2, Group(1))),
        ("envelopes between two documents", (a, 1, Envelope), (b, 1, Envelope)),
        ("envelopes between two versions", (a, 1, Envelope), (a, 2, Envelope)),
        ("record nonces between two documents", (a, 1, Nonce), (b, 1, Nonce)),
        ("record nonces between two versions", (a, 1, Nonce), (a, 2, Nonce)),
    ];
    for (name, (xi, xv, xg), (yi, yv, yg)) in cases {
        let (fx, fy) = (f.offset(xi, xv), f.offset(yi, yv));
        let data = swap(&f, f.part(xi, xv, xg), f.part(yi, yv, yg), fx, fy);
        let dir = scratch_dir();
        let v = open_copy(dir.path(), &f, &data);
        must_reject(v.store().read_version(fx as u64, &all), &format!("{name}: first record"));
        must_reject(v.store().read_version(fy as u64, &all), &format!("{name}: second record"));
        others_intact(&v, &f, &[(xi, xv), (yi, yv)], name);
    }

    // Attachment chunks between two attachments.
    let (cx, cy) = (f.chunk(0), f.chunk(1));
    let data = swap(&f, cx, cy, f.att[0].first_offset as usize, f.att[1].first_offset as usize);
    let dir = scratch_dir();
    let v = open_copy(dir.path(), &f, &data);
    for i in 0..2 {
        let mut out = Vec::new();
        match v.store().read_attachment(&f.att[i], &mut out) {
            Err(Error::Integrity { .. }) => {}
            other => panic!("attachment chunk swap: attachment {i} gave {other:?}"),
        }
        assert!(out.is_empty(), "no byte of a rejected chunk reaches the caller");
    }
    others_intact(&v, &f, &[], "attachment chunk swap");
}
