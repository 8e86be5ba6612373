//! Property: a single flipped bit anywhere in a vault never yields wrong data and
//! never panics. For every byte of the log (and a sample of the header, and every
//! byte of the keyring) a copy of a small committed vault gets one bit flipped, is
//! opened read-write (read-only if that is refused) and every document and version
//! is read: each read is an error or exactly the data that was committed.
//!
//! For flips in the log the outcome is fully determined and checked as such: the
//! commits before the damaged frame are served exactly, nothing after it is; a
//! read-write open either discards the damaged last commit as a torn tail or refuses
//! with `Corrupt` at the damaged frame. For flips in one header copy everything
//! stays readable (the other copy is used).

mod common;

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use chartvault::format::header::HEADER_REGION;
use chartvault::store::keyring_path;
use chartvault::{Coding, Date, DocumentId, Error, NewDocument, Value, Vault, VaultKey};
use common::{Expected, doc_matches, frames, key, opts, opts_ro, physician, scratch_dir, write_vault};

const PATIENTS: [&str; 2] = ["P1", "P2"];

/// One committed version and the end offset of the commit that made it durable.
#[derive(Clone)]
struct Committed {
    exp: Expected,
    commit_end: u64,
}

struct Fixture {
    data: Vec<u8>,
    keyring: Vec<u8>,
    /// Per document, its versions oldest first.
    docs: BTreeMap<DocumentId, Vec<Committed>>,
}

fn build() -> Fixture {
    let dir = scratch_dir();
    let path = dir.path().join("v.cv");
    let vault = Vault::create(&path, VaultKey::Raw(&key()), opts()).unwrap();
    let dr = vault.session(physician(PATIENTS)).unwrap();
    let end = |v: &Vault| v.store().read_state().head.end;
    let mut docs: BTreeMap<DocumentId, Vec<Committed>> = BTreeMap::new();
    let exp = |id, v, d: &NewDocument| Expected {
        id,
        patient: d.patient.clone(),
        kind: d.kind.to_string(),
        version: v,
        author: "dr".into(),
        fields: d.fields.clone(),
    };

    // Commit: two documents of two patients in one batch.
    let d1 = NewDocument::new("P1", "Observation")
        .unwrap()
        .with("code", Value::from(Coding::new("loinc", "4548-4", Some("HbA1c"))))
        .with("value", Value::Decimal("6.80".parse().unwrap()))
        .with("note", Value::Text("fasting".into()));
    let d2 =
        NewDocument::new("P2", "Condition").unwrap().with("code", Value::from(Coding::new("icd10cm", "E11.9", None)));
    let mut b = dr.batch().unwrap();
    let id1 = b.put(&d1).unwrap();
    let id2 = b.put(&d2).unwrap();
    b.commit().unwrap();
    let e = end(&vault);
    docs.entry(id1).or_default().push(Committed { exp: exp(id1, 1, &d1), commit_end: e });
    docs.entry(id2).or_default().push(Committed { exp: exp(id2, 1, &d2), commit_end: e });

    // Commit: a note.
    let d3 = NewDocument::new("P1", "ClinicalNote")
        .unwrap()
        .with("text", Value::Text("feels better".into()))
        .with("date", Value::Date(Date::parse("2024-01-02").unwrap()));
    let id3 = dr.put(&d3).unwrap();
    docs.entry(id3).or_default().push(Committed { exp: exp(id3, 1, &d3), commit_end: end(&vault) });

    // Commit: a second version of the first document.
    let d1v2 = d1.clone().with("value", Value::Decimal("7.10".parse().unwrap()));
    assert_eq!(dr.update(&id1, d1v2.fields.clone()).unwrap(), 2);
    docs.entry(id1).or_default().push(Committed { exp: exp(id1, 2, &d1v2), commit_end: end(&vault) });

    // Commit: one more document, last in the file.
    let d4 = NewDocument::new("P2", "Observation").unwrap().with("value", Value::Integer(120));
    let id4 = dr.put(&d4).unwrap();
    docs.entry(id4).or_default().push(Committed { exp: exp(id4, 1, &d4), commit_end: end(&vault) });

    drop(dr);
    vault.close().unwrap();
    let data = std::fs::read(&path).unwrap();
    let keyring = std::fs::read(keyring_path(&path)).unwrap();
    let last = docs[&id4][0].commit_end as usize;
    assert!(data.len() > last && data[last..].iter().all(|&b| b == 0), "only the zero reserve follows the last commit");
    Fixture { data, keyring, docs }
}

/// How strictly a damaged copy is judged.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    /// Only commits ending at or before this offset may be (and must be) served.
    Prefix(u64),
    /// Everything must be served (one header copy damaged).
    All,
    /// Everything must be served, and nothing is damaged (the unchanged copy).
    Intact,
    /// Any read may fail, but data returned must be exact (keyring damage).
    ErrorOrExact,
}

/// What the reads of one copy saw.
#[derive(Default, Debug)]
struct Tally {
    opened_rw: u64,
    opened_ro: u64,
    refused: u64,
    reads_ok: u64,
    reads_err: u64,
}

fn check_copy(
    f: &Fixture,
    data: &[u8],
    keyring: &[u8],
    expect: Expect,
    damaged_frame: Option<(u64, u64)>,
    tally: &mut Tally,
    ctx: &str,
) {
    let dir = scratch_dir();
    let path = write_vault(dir.path(), "v.cv", data, keyring);
    let vault = match Vault::open(&path, VaultKey::Raw(&key()), opts()) {
        Ok(v) => {
            tally.opened_rw += 1;
            if let Expect::Prefix(p) = expect {
                // Read-write only opens if the damage was a (discarded) torn tail.
                let torn = v.open_report().torn_tail;
                assert!(torn.is_some(), "{ctx}: read-write open must report the damage: {:?}", v.open_report());
                assert_eq!(torn.unwrap().0, p, "{ctx}: torn tail starts after the last intact commit");
            }
            if expect == Expect::All {
                assert!(v.open_report().damaged_header, "{ctx}: damaged header copy reported");
            }
            if expect == Expect::Intact {
                let r = v.open_report();
                assert!(!r.damaged_header && r.torn_tail.is_none() && r.corrupt.is_none(), "{ctx}: {r:?}");
            }
            Some(v)
        }
        Err(e) => {
            assert!(!matches!(expect, Expect::All | Expect::Intact), "{ctx}: read-write open refused: {e}");
            if let (Expect::Prefix(_), Some((start, _))) = (expect, damaged_frame) {
                match &e {
                    Error::Corrupt { offset, .. } => {
                        assert_eq!(*offset, start, "{ctx}: Corrupt names the damaged frame")
                    }
                    other => panic!("{ctx}: read-write open refused with {other:?}, expected Corrupt"),
                }
            }
            match Vault::open(&path, VaultKey::Raw(&key()), opts_ro()) {
                Ok(v) => {
                    tally.opened_ro += 1;
                    Some(v)
                }
                Err(e) => {
                    assert!(expect == Expect::ErrorOrExact, "{ctx}: read-only open must serve the intact prefix: {e}");
                    tally.refused += 1;
                    None
                }
            }
        }
    };
    let Some(vault) = vault else { return };
    let s = match vault.session(physician(PATIENTS)) {
        Ok(s) => s,
        Err(e) => {
            assert!(expect == Expect::ErrorOrExact, "{ctx}: session refused: {e}");
            tally.refused += 1;
            return;
        }
    };
    let visible = |c: &Committed| match expect {
        Expect::Prefix(p) => Some(c.commit_end <= p),
        Expect::All | Expect::Intact => Some(true),
        Expect::ErrorOrExact => None,
    };
    for (id, versions) in &f.docs {
        // Latest version: exactly the newest visible one, or an error if none is.
        let want = versions.iter().rev().find(|c| visible(c) != Some(false));
        match s.get(id) {
            Ok(d) => {
                tally.reads_ok += 1;
                let ok = match expect {
                    Expect::ErrorOrExact => versions.iter().any(|c| doc_matches(&d, &c.exp)),
                    _ => want.is_some_and(|c| doc_matches(&d, &c.exp)),
                };
                assert!(ok, "{ctx}: get({id}) returned wrong data: {d:?}");
            }
            Err(e) => {
                tally.reads_err += 1;
                if expect != Expect::ErrorOrExact {
                    assert!(want.is_none(), "{ctx}: get({id}) failed although committed before the damage: {e}");
                    assert!(matches!(e, Error::NotFound { .. }), "{ctx}: get({id}): {e}");
                }
            }
        }
        for c in versions {
            match s.get_version(id, c.exp.version) {
                Ok(d) => {
                    tally.reads_ok += 1;
                    assert!(
                        doc_matches(&d, &c.exp),
                        "{ctx}: get_version({id}, {}) returned wrong data: {d:?}",
                        c.exp.version
                    );
                    assert!(visible(c) != Some(false), "{ctx}: version after the damage was served");
                }
                Err(e) => {
                    tally.reads_err += 1;
                    assert!(visible(c) != Some(true), "{ctx}: get_version({id}, {}) failed: {e}", c.exp.version);
                }
            }
        }
    }
    for p in PATIENTS {
        match s.chart(p) {
            Ok(docs) => {
                for d in &docs {
                    let ok = f.docs.get(&d.id).is_some_and(|vs| vs.iter().any(|c| doc_matches(d, &c.exp)));
                    assert!(ok, "{ctx}: chart({p}) returned wrong data: {d:?}");
                }
                if expect != Expect::ErrorOrExact {
                    let want =
                        f.docs.values().filter(|vs| vs[0].exp.patient == p && visible(&vs[0]) == Some(true)).count();
                    assert_eq!(docs.len(), want, "{ctx}: chart({p}) size");
                }
            }
            Err(e) => assert!(expect == Expect::ErrorOrExact, "{ctx}: chart({p}): {e}"),
        }
    }
}

fn run(
    f: &Fixture,
    data: &[u8],
    keyring: &[u8],
    expect: Expect,
    frame: Option<(u64, u64)>,
    tally: &mut Tally,
    ctx: &str,
) {
    if let Err(p) = catch_unwind(AssertUnwindSafe(|| check_copy(f, data, keyring, expect, frame, tally, ctx))) {
        eprintln!("failure at {ctx}");
        resume_unwind(p);
    }
}

#[test]
fn any_flipped_bit_is_an_error_or_exact_data() {
    let f = build();
    let log_end = common::log_end(&f.data);
    let log_len = log_end - HEADER_REGION as usize;
    eprintln!("log: {log_len} bytes, keyring: {} bytes", f.keyring.len());
    assert!((2048..=16 * 1024).contains(&log_len), "keep the fixture small: {log_len} bytes of frames");
    let frames = frames(&f.data);
    let commit_ends: Vec<u64> = f.docs.values().flatten().map(|c| c.commit_end).collect();
    let t0 = std::time::Instant::now();

    // The unchanged copy reads back completely (so the checks below can fail).
    let mut control = Tally::default();
    run(&f, &f.data, &f.keyring, Expect::Intact, None, &mut control, "unchanged copy");
    assert_eq!(control.reads_err, 0);

    // Every byte of the log.
    let mut tally = Tally::default();
    let mut data = f.data.clone();
    for fr in &frames {
        // The intact prefix: every commit that ends at or before this frame.
        let prefix = frames
            .iter()
            .rfind(|x| x.ty == chartvault::format::frame::FrameType::Commit && x.offset + x.len <= fr.offset);
        let prefix_end = prefix.map_or(HEADER_REGION, |x| (x.offset + x.len) as u64);
        for off in fr.offset..fr.offset + fr.len {
            data[off] ^= 0x01;
            let ctx = format!("log flip at {off} (frame {:?} at {})", fr.ty, fr.offset);
            run(
                &f,
                &data,
                &f.keyring,
                Expect::Prefix(prefix_end),
                Some((fr.offset as u64, fr.len as u64)),
                &mut tally,
                &ctx,
            );
            data[off] ^= 0x01;
        }
    }
    assert_eq!(data, f.data);
    eprintln!("log flips: {tally:?} in {:?}", t0.elapsed());
    assert!(tally.reads_ok > 0 && tally.reads_err > 0 && tally.opened_ro > 0 && tally.opened_rw > 0);
    // Sanity: the prefixes used above line up with the recorded commits.
    assert!(commit_ends.iter().all(|e| frames.iter().any(|x| (x.offset + x.len) as u64 == *e)));

    // The zero reserve after the log end: every byte of its first frame header and a
    // bit more, then a sample up to its last byte. The committed data stays readable
    // (read-write open succeeds and serves every commit) and the damage is reported
    // as a torn tail at the log end (which the read-write open truncates).
    let mut rtally = Tally::default();
    let reserve: Vec<usize> =
        (log_end..log_end + 64).chain((log_end + 64..data.len()).step_by(4093)).chain([data.len() - 1]).collect();
    assert!(data.len() - log_end >= 64 * 1024, "the fixture has a reserve: {} bytes", data.len() - log_end);
    for &off in &reserve {
        data[off] ^= 0x01;
        let ctx = format!("reserve flip at {off} (log end {log_end})");
        run(&f, &data, &f.keyring, Expect::Prefix(log_end as u64), None, &mut rtally, &ctx);
        data[off] ^= 0x01;
    }
    eprintln!("reserve flips: {rtally:?}");
    assert_eq!(rtally.opened_rw, reserve.len() as u64, "every reserve flip opens read-write");
    assert_eq!((rtally.opened_ro, rtally.refused), (0, 0));
    assert!(rtally.reads_ok > 0);

    // A sample of the header region: every byte of the fixed fields of both copies,
    // and every 17th byte elsewhere.
    let mut htally = Tally::default();
    let hs = chartvault::format::header::HEADER_SIZE;
    let offsets = (0..HEADER_REGION as usize).filter(|o| o % hs < 128 || o % 17 == 0);
    for off in offsets {
        data[off] ^= 0x01;
        run(&f, &data, &f.keyring, Expect::All, None, &mut htally, &format!("header flip at {off}"));
        data[off] ^= 0x01;
    }
    eprintln!("header flips: {htally:?}");
    assert_eq!(htally.reads_err, 0);

    // Every byte of the keyring.
    let mut ktally = Tally::default();
    let mut ring = f.keyring.clone();
    for off in 0..ring.len() {
        ring[off] ^= 0x01;
        run(&f, &f.data, &ring, Expect::ErrorOrExact, None, &mut ktally, &format!("keyring flip at {off}"));
        ring[off] ^= 0x01;
    }
    eprintln!("keyring flips: {ktally:?}; total {:?}", t0.elapsed());
}
