//! Property: recovery keeps exactly the complete commits. A vault cut at any byte
//! within its last two commits reopens read-write at exactly the last complete
//! commit: its documents read back exactly, later ones are `NotFound`, the torn tail
//! is reported and truncated, and the vault takes new writes. Damage followed by
//! valid commits is not a torn tail: read-write open refuses with `Error::Corrupt`
//! naming the damaged frame, and read-only open serves the intact prefix.

mod common;

use std::collections::BTreeMap;

use chartvault::format::header::HEADER_REGION;
use chartvault::store::keyring_path;
use chartvault::{DocumentId, Error, NewDocument, Value, Vault, VaultKey};
use common::{Expected, assert_doc, frames, key, opts, opts_ro, physician, scratch_dir, write_vault};

const PATIENTS: [&str; 3] = ["P1", "P2", "P3"];

/// The vault as it stood after one commit.
#[derive(Clone)]
struct Point {
    end: u64,
    head: (u64, [u8; 32]),
    /// Latest version of every document visible at this point.
    docs: BTreeMap<DocumentId, Expected>,
    /// Attachments visible: document, field, content.
    attachments: Vec<(DocumentId, String, Vec<u8>)>,
}

struct Fixture {
    data: Vec<u8>,
    keyring: Vec<u8>,
    points: Vec<Point>,
    all_docs: Vec<DocumentId>,
}

fn doc(patient: &str, i: i64) -> NewDocument {
    NewDocument::new(patient, "Observation")
        .unwrap()
        .with("value", Value::Integer(i))
        .with("note", Value::Text(format!("note number {i}")))
}

fn build() -> Fixture {
    let dir = scratch_dir();
    let path = dir.path().join("v.cv");
    let vault = Vault::create(&path, VaultKey::Raw(&key()), opts()).unwrap();
    let dr = vault.session(physician(PATIENTS)).unwrap();
    let exp = |id, v, d: &NewDocument| Expected {
        id,
        patient: d.patient.clone(),
        kind: d.kind.to_string(),
        version: v,
        author: "dr".into(),
        fields: d.fields.clone(),
    };
    let mut cur = Point { end: 0, head: (0, [0; 32]), docs: BTreeMap::new(), attachments: Vec::new() };
    let mut points = Vec::new();
    let mark = |v: &Vault, cur: &mut Point, points: &mut Vec<Point>| {
        cur.end = v.store().read_state().head.end;
        cur.head = v.head();
        points.push(cur.clone());
    };
    mark(&vault, &mut cur, &mut points);
    let mut all_docs = Vec::new();
    for i in 0..6 {
        let d = doc(PATIENTS[i % 3], i as i64);
        let id = dr.put(&d).unwrap();
        cur.docs.insert(id, exp(id, 1, &d));
        all_docs.push(id);
        mark(&vault, &mut cur, &mut points);
    }
    // Second to last commit: a batch of two documents and an attachment.
    let content: Vec<u8> = (0..700u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut b = dr.batch().unwrap();
    let a = b.put_attachment("image/png", &mut &content[..]).unwrap();
    let d1 = doc("P1", 100).with("image", Value::from(a));
    let d2 = doc("P3", 101);
    let id1 = b.put(&d1).unwrap();
    let id2 = b.put(&d2).unwrap();
    b.commit().unwrap();
    cur.docs.insert(id1, exp(id1, 1, &d1));
    cur.docs.insert(id2, exp(id2, 1, &d2));
    cur.attachments.push((id1, "image".into(), content));
    all_docs.extend([id1, id2]);
    mark(&vault, &mut cur, &mut points);
    // Last commit: a new version of the first document.
    let first = all_docs[0];
    let d = doc("P1", 1000);
    assert_eq!(dr.update(&first, d.fields.clone()).unwrap(), 2);
    cur.docs.insert(first, exp(first, 2, &d));
    mark(&vault, &mut cur, &mut points);
    drop(dr);
    vault.close().unwrap();
    let data = std::fs::read(&path).unwrap();
    let last = points.last().unwrap().end;
    assert!(data.len() as u64 > last, "a zero reserve follows the last commit");
    assert!(data[last as usize..].iter().all(|&b| b == 0), "the reserve is zeros");
    Fixture { data, keyring: std::fs::read(keyring_path(&path)).unwrap(), points, all_docs }
}

/// Every document reads exactly as at `p`, or is `NotFound` if it came later.
fn check_point(v: &Vault, f: &Fixture, p: &Point, ctx: &str) {
    let s = v.session(physician(PATIENTS)).unwrap();
    for id in &f.all_docs {
        match (p.docs.get(id), s.get(id)) {
            (Some(e), Ok(d)) => {
                assert_doc(&d, e, ctx);
                // A later version of a visible document is gone too.
                assert!(
                    matches!(s.get_version(id, e.version + 1), Err(Error::NotFound { .. })),
                    "{ctx}: {id} v{}",
                    e.version + 1
                );
            }
            (Some(_), Err(e)) => panic!("{ctx}: committed document {id} unreadable: {e}"),
            (None, Err(Error::NotFound { .. })) => {}
            (None, other) => panic!("{ctx}: document {id} from a lost commit gave {other:?}"),
        }
    }
    for (id, field, content) in &p.attachments {
        let mut out = Vec::new();
        s.read_attachment(id, field, &mut out).unwrap();
        assert_eq!(&out, content, "{ctx}: attachment");
    }
    for pt in PATIENTS {
        let want = p.docs.values().filter(|e| e.patient == pt).count();
        assert_eq!(s.chart(pt).unwrap().len(), want, "{ctx}: chart of {pt}");
    }
}

#[test]
fn cut_anywhere_in_the_last_two_commits_recovers_the_last_complete_commit() {
    let f = build();
    let n = f.points.len();
    let from = f.points[n - 3].end;
    let to = f.points[n - 1].end;
    eprintln!("cutting at every offset in {from}..={to} ({} cuts)", to - from + 1);
    let mut torn = 0;
    for cut in from..=to {
        let k = f.points.iter().rposition(|p| p.end <= cut).unwrap();
        let p = &f.points[k];
        let ctx = format!("cut at {cut} (last complete commit ends at {})", p.end);
        let dir = scratch_dir();
        let path = write_vault(dir.path(), "v.cv", &f.data[..cut as usize], &f.keyring);
        let v = Vault::open(&path, VaultKey::Raw(&key()), opts()).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        let rep = v.open_report().clone();
        if cut == p.end {
            assert!(rep.torn_tail.is_none(), "{ctx}: no torn tail at a commit boundary: {rep:?}");
        } else {
            torn += 1;
            let (at, len, _) = rep.torn_tail.unwrap_or_else(|| panic!("{ctx}: torn tail not reported: {rep:?}"));
            assert_eq!((at, len), (p.end, cut - p.end), "{ctx}: torn tail position and size");
        }
        assert!(rep.corrupt.is_none(), "{ctx}: {rep:?}");
        assert_eq!(v.head(), p.head, "{ctx}: head is that of the last complete commit");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), p.end, "{ctx}: torn tail truncated");
        check_point(&v, &f, p, &ctx);
        // The recovered vault takes new writes, which survive a reopen.
        let s = v.session(physician(PATIENTS)).unwrap();
        let nd = doc("P2", 9999);
        let id = s.put(&nd).unwrap();
        drop(s);
        v.close().unwrap();
        let v = Vault::open(&path, VaultKey::Raw(&key()), opts()).unwrap();
        assert!(v.open_report().torn_tail.is_none(), "{ctx}");
        let got = v.session(physician(PATIENTS)).unwrap().get(&id).unwrap();
        assert_eq!(got.get("value"), Some(&Value::Integer(9999)), "{ctx}");
    }
    assert!(torn > 100, "most cuts tear a frame: {torn}");
}

#[test]
fn damage_before_valid_commits_is_corruption_not_a_torn_tail() {
    let f = build();
    let all = frames(&f.data);
    // Damage each frame of the third document commit (record, audit entry, commit
    // frame) at its first, a middle and its last byte; the two before it must stay.
    let j = 3;
    let (lo, hi) = (f.points[j - 1].end, f.points[j].end);
    let damaged: Vec<_> = all.iter().filter(|x| x.offset as u64 >= lo && ((x.offset + x.len) as u64) <= hi).collect();
    assert!(damaged.len() >= 3, "record, audit and commit frames: {damaged:?}");
    for fr in damaged {
        for off in [fr.offset, fr.offset + fr.len / 2, fr.offset + fr.len - 1] {
            let ctx = format!("byte {off} of {:?} frame at {}..{}", fr.ty, fr.offset, fr.offset + fr.len);
            let mut data = f.data.clone();
            data[off] ^= 0x40;
            let dir = scratch_dir();
            let path = write_vault(dir.path(), "v.cv", &data, &f.keyring);
            match Vault::open(&path, VaultKey::Raw(&key()), opts()) {
                Err(Error::Corrupt { offset, reason }) => {
                    assert!(
                        (fr.offset as u64..(fr.offset + fr.len) as u64).contains(&offset),
                        "{ctx}: Corrupt names offset {offset} ({reason}), outside the damaged frame"
                    );
                    assert!(!reason.is_empty());
                }
                Err(e) => panic!("{ctx}: read-write open refused with {e:?}, expected Corrupt"),
                Ok(v) => panic!("{ctx}: read-write open accepted damage before valid commits: {:?}", v.open_report()),
            }
            assert_eq!(std::fs::read(&path).unwrap(), data, "{ctx}: a refused open changes nothing");
            let v = Vault::open(&path, VaultKey::Raw(&key()), opts_ro())
                .unwrap_or_else(|e| panic!("{ctx}: read-only open: {e}"));
            let (at, _) = v.open_report().corrupt.clone().unwrap_or_else(|| panic!("{ctx}: corruption reported"));
            assert!(at >= HEADER_REGION && at >= fr.offset as u64 && at < (fr.offset + fr.len) as u64, "{ctx}: {at}");
            assert_eq!(v.head(), f.points[j - 1].head, "{ctx}: head of the intact prefix");
            assert_eq!(f.points[j - 1].docs.len(), 2);
            check_point(&v, &f, &f.points[j - 1], &ctx);
        }
    }
}

/// A torn write of the last commit into the zero reserve: the commit's first `k` bytes
/// reached the disk, the rest of it still reads as the reserve's zeros. For every `k`,
/// the commit is discarded as a torn tail (nothing written at all is simply a clean end,
/// with the reserve kept), everything committed before it reads back exactly, and the
/// vault takes new writes.
#[test]
fn a_torn_write_into_the_reserve_is_a_torn_tail_at_every_byte() {
    let f = build();
    let n = f.points.len();
    let (from, to) = (f.points[n - 2].end, f.points[n - 1].end);
    let p = &f.points[n - 2];
    let file_len = f.data.len() as u64;
    eprintln!("tearing the last commit ({from}..{to}) at every byte, file length {file_len}");
    for k in from..to {
        let ctx = format!("last commit written up to {k} of {from}..{to}");
        let mut data = f.data.clone();
        data[k as usize..to as usize].fill(0);
        let dir = scratch_dir();
        let path = write_vault(dir.path(), "v.cv", &data, &f.keyring);
        if data == f.data {
            // The commit's last bytes happen to be zeros (its MAC is random, so one run
            // in 256 or so): a write torn there leaves exactly the complete commit on
            // disk, and no reader could tell. It is the complete commit.
            let v = Vault::open(&path, VaultKey::Raw(&key()), opts()).unwrap_or_else(|e| panic!("{ctx}: {e}"));
            assert!(v.open_report().torn_tail.is_none() && v.open_report().corrupt.is_none(), "{ctx}");
            assert_eq!(v.head(), f.points[n - 1].head, "{ctx}: the commit is complete on disk");
            check_point(&v, &f, &f.points[n - 1], &ctx);
            continue;
        }
        // A read-only open first: it serves the same commits and writes nothing.
        let ro = Vault::open(&path, VaultKey::Raw(&key()), opts_ro()).unwrap_or_else(|e| panic!("{ctx}: ro: {e}"));
        assert_eq!(ro.head(), p.head, "{ctx}: read-only head");
        assert!(ro.open_report().corrupt.is_none(), "{ctx}: {:?}", ro.open_report());
        check_point(&ro, &f, p, &ctx);
        drop(ro);
        assert_eq!(std::fs::read(&path).unwrap(), data, "{ctx}: a read-only open writes nothing");
        let v = Vault::open(&path, VaultKey::Raw(&key()), opts()).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        let rep = v.open_report().clone();
        assert!(rep.corrupt.is_none(), "{ctx}: {rep:?}");
        if k == from {
            assert!(rep.torn_tail.is_none(), "{ctx}: nothing of the commit was written: a clean end: {rep:?}");
            assert_eq!(std::fs::metadata(&path).unwrap().len(), file_len, "{ctx}: the reserve stays");
        } else {
            let (at, len, _) = rep.torn_tail.unwrap_or_else(|| panic!("{ctx}: torn tail not reported: {rep:?}"));
            assert_eq!((at, len), (from, file_len - from), "{ctx}: torn tail position and size");
            assert_eq!(std::fs::metadata(&path).unwrap().len(), from, "{ctx}: torn tail truncated");
        }
        assert_eq!(v.head(), p.head, "{ctx}: head is that of the last complete commit");
        check_point(&v, &f, p, &ctx);
        let s = v.session(physician(PATIENTS)).unwrap();
        let id = s.put(&doc("P2", 9999)).unwrap();
        drop(s);
        v.close().unwrap();
        let v = Vault::open(&path, VaultKey::Raw(&key()), opts()).unwrap();
        assert!(v.open_report().torn_tail.is_none(), "{ctx}: {:?}", v.open_report());
        let got = v.session(physician(PATIENTS)).unwrap().get(&id).unwrap();
        assert_eq!(got.get("value"), Some(&Value::Integer(9999)), "{ctx}");
        check_point_plus(&v, &f, p, id, &ctx);
    }
}

/// After a torn tail is recovered and a new document committed, the earlier
/// documents are unchanged.
fn check_point_plus(v: &Vault, f: &Fixture, p: &Point, new: DocumentId, ctx: &str) {
    let s = v.session(physician(PATIENTS)).unwrap();
    for (id, e) in &p.docs {
        assert_doc(&s.get(id).unwrap_or_else(|e| panic!("{ctx}: {id}: {e}")), e, ctx);
    }
    assert!(f.all_docs.iter().all(|id| *id != new));
}

/// A zero frame header ends the log, but a MAC-valid commit numbered `N + 2` or more
/// later in the file is acknowledged data after it: corruption, not a clean end.
#[test]
fn a_valid_commit_after_a_zero_header_is_corruption() {
    let f = build();
    let n = f.points.len();
    // Zero the second-to-last commit (wholly, or only its first frame header): the
    // log then "ends" after commit N = n - 3, and commit N + 2 follows.
    let (lo, hi) = (f.points[n - 3].end, f.points[n - 2].end);
    for zeroed in [lo..hi, lo..lo + 24] {
        let ctx = format!("zeros at {zeroed:?}");
        let mut data = f.data.clone();
        data[zeroed.start as usize..zeroed.end as usize].fill(0);
        let dir = scratch_dir();
        let path = write_vault(dir.path(), "v.cv", &data, &f.keyring);
        match Vault::open(&path, VaultKey::Raw(&key()), opts()) {
            Err(Error::Corrupt { offset, reason }) => {
                assert_eq!(offset, lo, "{ctx}: Corrupt names the zero header ({reason})");
            }
            Err(e) => panic!("{ctx}: read-write open refused with {e:?}, expected Corrupt"),
            Ok(v) => {
                panic!("{ctx}: read-write open accepted a valid commit after a zero header: {:?}", v.open_report())
            }
        }
        assert_eq!(std::fs::read(&path).unwrap(), data, "{ctx}: a refused open changes nothing");
        let v = Vault::open(&path, VaultKey::Raw(&key()), opts_ro()).unwrap_or_else(|e| panic!("{ctx}: ro: {e}"));
        let (at, _) = v.open_report().corrupt.clone().unwrap_or_else(|| panic!("{ctx}: corruption reported"));
        assert_eq!(at, lo, "{ctx}");
        assert_eq!(v.head(), f.points[n - 3].head, "{ctx}: head of the intact prefix");
        check_point(&v, &f, &f.points[n - 3], &ctx);
        let rep = v.verify().unwrap();
        assert!(rep.problems.iter().any(|(o, _)| *o == lo), "{ctx}: verify reports it: {rep:?}");
    }
}
