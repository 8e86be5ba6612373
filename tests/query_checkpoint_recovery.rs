//! Property: index checkpoints never change what queries answer.
//!
//! (a) Opening from a checkpoint uses it and answers every query (for every kind of
//!     session) exactly like a full rebuild from the log.
//! (b) A crash after a checkpoint, in the middle of a later commit: the reopened vault
//!     uses the checkpoint, keeps every complete later commit, and has no trace of
//!     the torn one.
//! (c) A checkpoint pointer at anything that is not a valid checkpoint (an arbitrary
//!     offset, another frame, a bogus checkpoint frame, a replayed one) makes open
//!     fall back to a full rebuild, and answers stay complete and correct; a stale
//!     but valid checkpoint is used and the log after it replayed.
//! (d) Updates written after a checkpoint are reflected (new values match, old ones
//!     no longer do, label changes apply, history is intact).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chartvault::access::{Policy, Principal, Purpose, Role};
use chartvault::format::frame::{FRAME_HEADER, FrameType};
use chartvault::{
    Coding, Date, DateTime, DocumentId, Error, Field, Label, NewDocument, SecretKey, Session, Value, Vault, VaultKey,
    VaultOptions,
};

const PATIENTS: [&str; 4] = ["P1", "P2", "P3", "P4"];

fn policy() -> Policy {
    common::policy_with_loader()
}

fn options() -> VaultOptions {
    VaultOptions {
        initial_policy: policy(),
        checkpoint_every: 0,
        // Read-audit entries wait for the next write instead of a background commit,
        // so the commits a test counts are only its own.
        audit_window: std::time::Duration::from_secs(3600),
        audit_max_pending: 100_000,
        ..VaultOptions::default()
    }
}

struct Db {
    _dir: tempfile::TempDir,
    path: PathBuf,
    key: SecretKey,
}

impl Db {
    fn new() -> (Db, Vault) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.cv");
        let key = SecretKey::random();
        let v = Vault::create(&path, VaultKey::Raw(&key), options()).unwrap();
        (Db { _dir: dir, path, key }, v)
    }
    fn open(&self) -> Vault {
        open_at(&self.path, &self.key)
    }
}

fn open_at(path: &Path, key: &SecretKey) -> Vault {
    Vault::open(path, VaultKey::Raw(key), options()).unwrap_or_else(|e| panic!("open: {e}"))
}

fn loader(v: &Vault) -> Session {
    v.session(
        Principal::new("loader", Role::new("records-loader").unwrap(), "records", Purpose::Operations)
            .with_care_team(PATIENTS),
    )
    .unwrap()
}

fn codes() -> [Coding; 4] {
    [
        Coding::new("loinc", "4548-4", None),
        Coding::new("loinc", "2345-7", None),
        Coding::new("icd10cm", "E11.9", None),
        Coding::new("snomed", "44054006", None),
    ]
}

/// Document `i` of a deterministic mix: four kinds, codes from three systems, dates
/// and datetimes, integers and decimals, statuses, and some hiv-sti labels.
fn doc(i: usize, patient: &str) -> NewDocument {
    let kind = ["Observation", "Condition", "ClinicalNote", "Claim"][i % 4];
    let code = codes()[(i / 2) % 4].clone();
    let effective = if i.is_multiple_of(3) {
        Value::DateTime(DateTime::parse(&format!("2024-0{}-1{}T0{}:30:00+02:00", 1 + i % 6, i % 10, i % 10)).unwrap())
    } else {
        Value::Date(Date::parse(&format!("2024-0{}-0{}", 1 + i % 6, 1 + i % 9)).unwrap())
    };
    let value = if i.is_multiple_of(2) {
        Value::Integer((i % 11) as i64)
    } else {
        Value::Decimal(format!("{}.5", i % 7).parse().unwrap())
    };
    let labels = if i.is_multiple_of(5) { vec![Label::hiv_sti()] } else { Vec::new() };
    NewDocument::new(patient, kind)
        .unwrap()
        .with_labeled("code", Value::from(code), labels)
        .with("effective", effective)
        .with("value", value)
        .with("status", Value::Text(["final", "preliminary", "amended"][i % 3].into()))
        .with("seq", Value::Integer(i as i64))
}

/// Puts documents `range` in batches of `per_batch`; returns their ids.
fn put_docs(s: &Session, range: std::ops::Range<usize>, per_batch: usize) -> Vec<DocumentId> {
    let mut ids = Vec::new();
    let all: Vec<usize> = range.collect();
    for chunk in all.chunks(per_batch) {
        let mut b = s.batch().unwrap();
        for &i in chunk {
            ids.push(b.put(&doc(i, PATIENTS[i % PATIENTS.len()])).unwrap());
        }
        b.commit().unwrap();
    }
    ids
}

const QUERIES: &[&str] = &[
    "",
    "kind = Observation",
    "code = loinc:4548-4",
    "code = \"E11.9\" or code = snomed:44054006 order by effective desc",
    "value > 5 order by value desc",
    "value >= 2.5 and value < 8 order by value",
    "effective >= 2024-03-01 order by effective",
    "effective < 2024-02-15T00:00:00Z and not status = \"final\"",
    "status in (\"final\", \"amended\") and not kind = Claim order by status desc",
    "patient = \"P2\" order by created desc",
    "patient in (\"P1\", \"P3\") and kind in (Observation, Condition)",
    "kind = Claim and value > 1",
    "order by code",
    "order by updated desc limit 7",
];

type Answers = BTreeMap<String, (usize, Vec<(DocumentId, u32)>)>;

/// Every query for every kind of session, all pages (page size 4 unless set).
fn answers(v: &Vault) -> Answers {
    let sessions = [
        ("loader", loader(v)),
        (
            "physician",
            v.session(Principal::new("dr", Role::physician(), "h", Purpose::Treat).with_care_team(["P1", "P2"]))
                .unwrap(),
        ),
        (
            "nurse",
            v.session(Principal::new("rn", Role::nurse(), "h", Purpose::Treat).with_care_team(["P2", "P3"])).unwrap(),
        ),
        ("billing", v.session(Principal::new("bill", Role::billing(), "h", Purpose::Payment)).unwrap()),
        ("researcher", v.session(Principal::new("res", Role::researcher(), "u", Purpose::Research)).unwrap()),
    ];
    let mut out = Answers::new();
    for (name, s) in &sessions {
        for src in QUERIES {
            let mut q = chartvault::query::parse(src).unwrap();
            let explicit = q.limit.is_some();
            q.limit = q.limit.or(Some(4));
            let key = format!("{name}: {src}");
            let mut docs = Vec::new();
            let mut total = None;
            loop {
                let r = match s.query(&q) {
                    Ok(r) => r,
                    Err(Error::Denied(_)) => {
                        out.insert(key.clone(), (usize::MAX, Vec::new()));
                        break;
                    }
                    Err(e) => panic!("{key}: {e}"),
                };
                assert!(total.is_none_or(|t| t == r.total), "{key}: total changed between pages");
                total = Some(r.total);
                docs.extend(r.documents.iter().map(|d| (d.id, d.version)));
                match r.next_cursor {
                    Some(c) if !explicit => q.cursor = Some(c),
                    _ => {
                        out.insert(key.clone(), (r.total, docs.clone()));
                        break;
                    }
                }
            }
        }
    }
    out
}

fn total(a: &Answers, key: &str) -> usize {
    a.get(key).unwrap_or_else(|| panic!("no answer for {key}")).0
}

fn ids_of(a: &Answers, key: &str) -> Vec<DocumentId> {
    a[key].1.iter().map(|x| x.0).collect()
}

#[test]
fn open_from_a_checkpoint_answers_like_a_full_rebuild() {
    let (db, v) = Db::new();
    let s = loader(&v);
    let mut ids = put_docs(&s, 0..40, 7);
    let cp = v.checkpoint().unwrap();
    ids.extend(put_docs(&s, 40..52, 3));
    let live = answers(&v);
    assert_eq!(total(&live, "loader: "), 52);
    drop(s);
    v.close().unwrap();

    let v = db.open();
    let rep = v.open_report().clone();
    assert_eq!(rep.checkpoint, Some(cp), "{rep:?}");
    assert!(rep.checkpoint_fallback.is_none(), "{rep:?}");
    let from_checkpoint = answers(&v);
    let stats = v.stats();
    v.store().set_checkpoint_pointer(0).unwrap();
    v.close().unwrap();

    let v = db.open();
    let full = v.open_report().clone();
    assert_eq!(full.checkpoint, None, "{full:?}");
    assert!(full.checkpoint_fallback.is_none());
    // The checkpoint really saved work: the full rebuild verified more commits.
    assert!(
        full.commits > rep.commits,
        "checkpoint open verified {} commits, full rebuild {}",
        rep.commits,
        full.commits
    );
    let rebuilt = answers(&v);
    assert_eq!(v.stats(), stats);
    assert_eq!(from_checkpoint, rebuilt, "checkpoint open and full rebuild answer differently");
    assert_eq!(from_checkpoint, live, "answers changed across reopen");
    // Sanity: the answers are not trivial, and differ by session.
    assert_ne!(total(&rebuilt, "nurse: code = loinc:4548-4"), total(&rebuilt, "loader: code = loinc:4548-4"));
    assert!(total(&rebuilt, "billing: kind = Claim and value > 1") > 0);
    assert!(v.verify().unwrap().is_clean());
    let s = loader(&v);
    for id in &ids {
        s.get(id).unwrap();
    }
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

fn keyring_of(p: &Path) -> PathBuf {
    chartvault::store::keyring_path(p)
}

#[test]
fn crash_after_a_checkpoint_keeps_complete_commits_and_drops_the_torn_one() {
    let (db, v) = Db::new();
    let s = loader(&v);
    let base = put_docs(&s, 0..24, 6);
    let cp = v.checkpoint().unwrap();
    // Later complete commits: a new document, an update of a checkpointed one.
    let x1 = s.put(&doc(100, "P1")).unwrap();
    let mut f: BTreeMap<String, Field> = BTreeMap::new();
    f.insert("code".into(), Value::from(Coding::new("loinc", "9999-9", None)).into());
    f.insert("value".into(), Value::Integer(777).into());
    s.update(&base[3], f).unwrap();
    // The last commit: two documents, one for a patient the vault has never seen
    // (its key reaches the keyring before the data commit does).
    // Log ends, not file lengths: the file goes on with the writer's zero reserve.
    let start = v.store().read_state().head.end;
    let mut b = s.batch().unwrap();
    let x2 = b.put(&doc(101, "P2")).unwrap();
    let x3 = b.put(&doc(102, "P-NEW")).unwrap();
    b.commit().unwrap();
    let end = v.store().read_state().head.end;
    assert!(end > start + 2 * FRAME_HEADER as u64);
    drop(s);
    drop(v); // no close: a crash does not flush anything
    let data = std::fs::read(&db.path).unwrap();
    let ring = std::fs::read(keyring_of(&db.path)).unwrap();
    let data = &data[..end as usize];

    for cut in
        [start, start + 1, start + FRAME_HEADER as u64 + 3, (start + end) / 2, end - FRAME_HEADER as u64, end - 1]
    {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crashed.cv");
        std::fs::write(&path, &data[..cut as usize]).unwrap();
        std::fs::write(keyring_of(&path), &ring).unwrap();
        let v = open_at(&path, &db.key);
        let rep = v.open_report().clone();
        assert_eq!(rep.checkpoint, Some(cp), "cut at {cut}: {rep:?}");
        assert!(rep.checkpoint_fallback.is_none(), "cut at {cut}: {rep:?}");
        assert_eq!(rep.torn_tail.is_some(), cut > start, "cut at {cut}: {rep:?}");
        assert_eq!(file_len(&path), start, "cut at {cut}: the torn tail is truncated");
        let s = loader(&v);
        // Complete commits after the checkpoint are present ...
        assert_eq!(s.get(&x1).unwrap().get("seq"), Some(&Value::Integer(100)));
        let updated = s.get(&base[3]).unwrap();
        assert_eq!((updated.version, updated.get("value")), (2, Some(&Value::Integer(777))));
        // ... and the torn one left no trace.
        for id in [x2, x3] {
            assert!(matches!(s.get(&id), Err(Error::NotFound { .. })), "cut at {cut}");
        }
        let r = s.query_str("").unwrap();
        assert_eq!(r.total, 25, "cut at {cut}");
        assert!(r.documents.iter().all(|d| d.id != x2 && d.id != x3));
        assert_eq!(s.query_str("code = loinc:9999-9").unwrap().total, 1);
        assert_eq!(s.query_str("value = 777").unwrap().documents[0].id, base[3]);
        let old_code = match doc(3, "P1").fields["code"].value.clone() {
            Value::Code(c) => c,
            _ => unreachable!(),
        };
        let old = s
            .query_str(&format!("code = \"{}|{}\" and patient = \"{}\"", old_code.system, old_code.code, PATIENTS[3]))
            .unwrap();
        assert!(old.documents.iter().all(|d| d.id != base[3]), "the old value of an updated document still matches");
        assert_eq!(s.query_str("patient = \"P-NEW\"").unwrap().total, 0);
        // The vault keeps working: the lost documents can be written again, including
        // the patient whose key was already in the keyring.
        let again = s.put(&doc(102, "P-NEW")).unwrap();
        assert_eq!(s.query_str("patient = \"P-NEW\"").unwrap().documents[0].id, again);
        assert!(v.verify().unwrap().is_clean(), "cut at {cut}");
        drop(s);
        v.close().unwrap();
        let v = open_at(&path, &db.key);
        assert_eq!(v.open_report().checkpoint, Some(cp));
        assert!(v.open_report().torn_tail.is_none());
        assert_eq!(loader(&v).query_str("").unwrap().total, 26);
    }
}

#[test]
fn a_bad_checkpoint_pointer_or_frame_falls_back_to_a_full_rebuild() {
    let (db, v) = Db::new();
    let s = loader(&v);
    put_docs(&s, 0..20, 5);
    let old_cp = v.checkpoint().unwrap();
    put_docs(&s, 20..30, 5);
    let cp = v.checkpoint().unwrap();
    put_docs(&s, 30..36, 2);
    let expected = answers(&v);
    assert_eq!(total(&expected, "loader: "), 36);
    // Interesting offsets: other frames, the checkpoint's own second frame, inside frames.
    let (record_off, audit_off, checkpoint_frames, len) = {
        let st = v.store().read_state();
        let rec = st.catalog.docs.values().next().unwrap().versions[0].offset;
        let audit = st.catalog.frames_of(FrameType::Audit)[0];
        (rec, audit, st.catalog.frames_of(FrameType::Checkpoint).to_vec(), file_len(&db.path))
    };
    let cp_part =
        *checkpoint_frames.iter().find(|&&o| o > cp).expect("a checkpoint has a part frame after its first frame");
    let data = std::fs::read(&db.path).unwrap();
    let payload_of = |off: u64| {
        let o = off as usize;
        let n = u32::from_le_bytes(data[o + 4..o + 8].try_into().unwrap()) as usize;
        data[o + FRAME_HEADER..o + FRAME_HEADER + n].to_vec()
    };
    let real_global = payload_of(cp);
    assert_eq!(real_global[0], b'G');
    drop(s);

    let mut pointers =
        vec![record_off, audit_off, cp_part, cp + 1, cp + FRAME_HEADER as u64, 1, 100, len, len + 1000, u64::MAX];
    // Random offsets (seeded per run; the seed is printed for a failing run).
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    println!("random pointer seed: {seed}");
    let mut x = seed | 1;
    for _ in 0..12 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let off = 1 + x % (len - 1);
        if !checkpoint_frames.contains(&off) {
            pointers.push(off);
        }
    }
    let check_fallback = |v: &Vault, what: &str| {
        let rep = v.open_report();
        assert_eq!(rep.checkpoint, None, "{what}: {rep:?}");
        let reason =
            rep.checkpoint_fallback.as_deref().unwrap_or_else(|| panic!("{what}: no fallback reported: {rep:?}"));
        assert!(!reason.is_empty());
        assert_eq!(answers(v), expected, "{what}: answers after fallback differ");
    };
    let mut v = v;
    for p in pointers {
        v.store().set_checkpoint_pointer(p).unwrap();
        v.close().unwrap();
        v = db.open();
        check_fallback(&v, &format!("pointer {p}"));
    }
    // Bogus checkpoint frames: valid frames of the checkpoint type whose content is not
    // a checkpoint of this place in the log.
    let mut noise = vec![b'G'];
    noise.extend((0..200u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    let bogus: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("just G", b"G".to_vec()),
        ("G and noise", noise),
        ("a part frame", b"P\x00\x00\x00\x00\x05\x00\x00\x00hello".to_vec()),
        ("a replay of the real checkpoint elsewhere", real_global.clone()),
    ];
    for (what, bytes) in &bogus {
        let off = v.store().append_bogus_checkpoint(bytes).unwrap();
        v.store().set_checkpoint_pointer(off).unwrap();
        v.close().unwrap();
        v = db.open();
        check_fallback(&v, what);
    }
    // The vault is writable after a fallback, and a new checkpoint is used again.
    let s = loader(&v);
    let extra = s.put(&doc(200, "P3")).unwrap();
    let fresh = v.checkpoint().unwrap();
    drop(s);
    v.close().unwrap();
    let v = db.open();
    assert_eq!(v.open_report().checkpoint, Some(fresh));
    let with_fresh = answers(&v);
    assert_eq!(total(&with_fresh, "loader: "), 37);
    assert!(ids_of(&with_fresh, "loader: ").contains(&extra));
    // A stale but valid checkpoint: used, and everything after it replayed.
    v.store().set_checkpoint_pointer(old_cp).unwrap();
    v.close().unwrap();
    let v = db.open();
    assert_eq!(v.open_report().checkpoint, Some(old_cp));
    assert!(v.open_report().checkpoint_fallback.is_none());
    assert_eq!(answers(&v), with_fresh, "a stale checkpoint answers differently");
    // And both agree with a full rebuild.
    v.store().set_checkpoint_pointer(0).unwrap();
    v.close().unwrap();
    let v = db.open();
    assert_eq!(v.open_report().checkpoint, None);
    assert_eq!(answers(&v), with_fresh, "a full rebuild answers differently");
    assert!(v.verify().unwrap().is_clean());
}

#[test]
fn updates_after_a_checkpoint_are_reflected() {
    let (db, v) = Db::new();
    let s = loader(&v);
    let ids = put_docs(&s, 0..16, 4);
    // An update before the checkpoint: the checkpoint holds a two-version document.
    let mut f: BTreeMap<String, Field> = BTreeMap::new();
    f.insert("value".into(), Value::Integer(500).into());
    f.insert("code".into(), Value::from(Coding::new("loinc", "1111-1", None)).into());
    s.update(&ids[0], f).unwrap();
    let cp = v.checkpoint().unwrap();
    // After the checkpoint: change values, codes, and labels; update one twice.
    let upd = |id: &DocumentId, value: i64, code: &str, labels: Vec<Label>| {
        let mut f: BTreeMap<String, Field> = BTreeMap::new();
        f.insert("value".into(), Value::Integer(value).into());
        f.insert("code".into(), Field { value: Value::from(Coding::new("loinc", code, None)), labels });
        f.insert("kind-note".into(), Value::Text("updated".into()).into());
        s.update(id, f).unwrap()
    };
    assert_eq!(upd(&ids[0], 600, "2222-2", vec![]), 3);
    assert_eq!(upd(&ids[4], 601, "2222-2", vec![]), 2);
    assert_eq!(upd(&ids[4], 602, "3333-3", vec![]), 3);
    // ids[8] is an Observation (8 % 4 == 0); its code becomes hiv-sti: billing loses it.
    assert_eq!(upd(&ids[8], 603, "2222-2", vec![Label::hiv_sti()]), 2);
    let new = s.put(&doc(50, "P4")).unwrap();
    let live = answers(&v);
    drop(s);
    v.close().unwrap();

    let v = db.open();
    assert_eq!(v.open_report().checkpoint, Some(cp));
    let s = loader(&v);
    let ids_for = |q: &str| -> Vec<DocumentId> { s.query_str(q).unwrap().documents.iter().map(|d| d.id).collect() };
    assert_eq!(
        ids_for("value = 500"),
        Vec::<DocumentId>::new(),
        "a value replaced before the checkpoint still matches"
    );
    assert_eq!(ids_for("code = loinc:1111-1"), Vec::<DocumentId>::new());
    assert_eq!(ids_for("value = 600"), vec![ids[0]]);
    assert_eq!(ids_for("value in (601, 602)"), vec![ids[4]]);
    assert_eq!(ids_for("code = loinc:3333-3"), vec![ids[4]]);
    let mut both = vec![ids[0], ids[8]];
    both.sort_by_key(|id| s.get(id).unwrap().created.unix_micros());
    assert_eq!(ids_for("code = loinc:2222-2"), both);
    assert_eq!(ids_for("value >= 600 order by value desc"), vec![ids[8], ids[4], ids[0]]);
    // Fields dropped by an update are gone from the index.
    assert!(!ids_for("effective >= 2000-01-01").contains(&ids[4]));
    assert!(ids_for("").contains(&new));
    // History is intact.
    assert_eq!(s.history(&ids[0]).unwrap().iter().map(|d| d.version).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(s.get_version(&ids[0], 2).unwrap().get("value"), Some(&Value::Integer(500)));
    // The label change applies to a session without hiv-sti.
    let billing = v.session(Principal::new("bill", Role::billing(), "h", Purpose::Payment)).unwrap();
    let b: Vec<DocumentId> =
        billing.query_str("value >= 600 and code != loinc:0000-0").unwrap().documents.iter().map(|d| d.id).collect();
    assert_eq!(b, vec![ids[0], ids[4]], "the hiv-sti code of ids[8] hides it from billing");
    // And everything agrees with what the live vault answered and with a full rebuild.
    let from_checkpoint = answers(&v);
    assert_eq!(from_checkpoint, live);
    drop((s, billing));
    v.store().set_checkpoint_pointer(0).unwrap();
    v.close().unwrap();
    let v = db.open();
    assert_eq!(v.open_report().checkpoint, None);
    assert_eq!(answers(&v), from_checkpoint);
}

/// Total bytes of the frames of the checkpoint that starts at `cp` (its global frame
/// and the part frames that follow it, up to its commit).
fn checkpoint_bytes(data: &[u8], cp: u64) -> (usize, usize) {
    let mut o = cp as usize;
    let (mut bytes, mut frames) = (0, 0);
    loop {
        let n = u32::from_le_bytes(data[o + 4..o + 8].try_into().unwrap()) as usize;
        let ty = data[o + 2];
        if ty != FrameType::Checkpoint as u8 {
            return (bytes, frames);
        }
        bytes += FRAME_HEADER + n;
        frames += 1;
        o += FRAME_HEADER + n;
    }
}

#[test]
fn checkpoints_are_compact_and_an_old_or_unknown_version_falls_back() {
    let (db, v) = Db::new();
    let s = loader(&v);
    put_docs(&s, 0..400, 50);
    let expected = answers(&v);
    let cp = v.checkpoint().unwrap();
    drop(s);
    v.close().unwrap();
    let data = std::fs::read(&db.path).unwrap();
    assert_eq!(&data[cp as usize + FRAME_HEADER..cp as usize + FRAME_HEADER + 2], b"G\x03", "version 3 tag");
    // Five index terms per document, and a directory record of ~17 bytes; the
    // version-1 encoding took about 330 bytes per document for this mix.
    let (bytes, frames) = checkpoint_bytes(&data, cp);
    assert!(frames >= 2);
    assert!(bytes / 400 < 130, "checkpoint of 400 documents: {bytes} bytes");

    // Opening from it: the value indexes are built only when a query needs them.
    let v = db.open();
    assert_eq!(v.open_report().checkpoint, Some(cp));
    assert!(!v.store().read_state().catalog.values_built());
    assert_eq!(answers(&v), expected);
    assert!(v.store().read_state().catalog.values_built());

    // A global frame of another version (version 1 had none: its sealed part started
    // right after the tag; version 2 had no directories) or of an unknown one:
    // fallback, nothing lost.
    let real = data[cp as usize + FRAME_HEADER..].to_vec();
    let n = u32::from_le_bytes(data[cp as usize + 4..cp as usize + 8].try_into().unwrap()) as usize;
    let real = &real[..n];
    let mut v1_shaped = vec![b'G'];
    v1_shaped.extend_from_slice(&real[2..]);
    let mut v4 = real.to_vec();
    v4[1] = 4;
    let mut v2_byte = real.to_vec();
    v2_byte[1] = 2;
    let mut v1_byte = real.to_vec();
    v1_byte[1] = 1;
    let mut v = v;
    for (what, bytes) in
        [("v1-shaped", v1_shaped), ("version 4", v4), ("version byte 2", v2_byte), ("version byte 1", v1_byte)]
    {
        let off = v.store().append_bogus_checkpoint(&bytes).unwrap();
        v.store().set_checkpoint_pointer(off).unwrap();
        v.close().unwrap();
        v = db.open();
        let rep = v.open_report().clone();
        assert_eq!(rep.checkpoint, None, "{what}: {rep:?}");
        assert!(rep.checkpoint_fallback.is_some(), "{what}: {rep:?}");
        assert_eq!(answers(&v), expected, "{what}");
    }
    assert!(v.verify().unwrap().is_clean());
}

#[test]
fn a_checkpoint_with_many_patients_loads_on_every_core_and_answers_like_a_full_rebuild() {
    // Enough patients for the loader to split the entries between threads.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.cv");
    let key = SecretKey::random();
    let v = Vault::create(&path, VaultKey::Raw(&key), options()).unwrap();
    let patients: Vec<String> = (0..600).map(|p| format!("M{p}")).collect();
    let s = v
        .session(
            Principal::new("loader", Role::new("records-loader").unwrap(), "records", Purpose::Operations)
                .with_care_team(patients.iter().map(String::as_str)),
        )
        .unwrap();
    let mut b = s.batch().unwrap();
    for i in 0..1800 {
        b.put(&doc(i, &patients[i % patients.len()])).unwrap();
    }
    b.commit().unwrap();
    let cp = v.checkpoint().unwrap();
    let count = |v: &Vault, q: &str| {
        let s = v
            .session(
                Principal::new("loader", Role::new("records-loader").unwrap(), "records", Purpose::Operations)
                    .with_care_team(patients.iter().map(String::as_str)),
            )
            .unwrap();
        s.query_str(q).unwrap().total
    };
    let queries = ["", "code = loinc:4548-4", "value > 5", "effective >= 2024-03-01", "patient = \"M17\""];
    let live: Vec<usize> = queries.iter().map(|q| count(&v, q)).collect();
    drop(s);
    v.close().unwrap();
    let v = Vault::open(&path, VaultKey::Raw(&key), options()).unwrap();
    assert_eq!(v.open_report().checkpoint, Some(cp));
    let from_cp: Vec<usize> = queries.iter().map(|q| count(&v, q)).collect();
    let stats = v.stats();
    v.store().set_checkpoint_pointer(0).unwrap();
    v.close().unwrap();
    let v = Vault::open(&path, VaultKey::Raw(&key), options()).unwrap();
    assert_eq!(v.open_report().checkpoint, None);
    let rebuilt: Vec<usize> = queries.iter().map(|q| count(&v, q)).collect();
    assert_eq!(v.stats(), stats);
    assert_eq!(from_cp, live);
    assert_eq!(rebuilt, live);
    assert_eq!(live[0], 1800);
    assert_eq!(live[4], 3);
}

/// Opening without a checkpoint replays the whole log into a catalog whose value
/// indexes are built on first use (as after a checkpoint load): updates, new
/// documents and an erasure made before that first query are all reflected, the
/// indexes are kept current after it, and the answers equal the live vault's and a
/// checkpoint open's.
#[test]
fn a_full_replay_builds_value_indexes_on_first_use_and_answers_like_a_checkpoint_open() {
    let (db, v) = Db::new();
    let s = loader(&v);
    let ids = put_docs(&s, 0..60, 9);
    drop(s);
    v.close().unwrap();

    let v = db.open();
    assert_eq!(v.open_report().checkpoint, None);
    assert!(!v.store().read_state().catalog.values_built(), "replay built the value indexes");
    let s = loader(&v);
    let upd = |s: &Session, id: &DocumentId, value: i64, code: &str| {
        let mut f: BTreeMap<String, Field> = BTreeMap::new();
        f.insert("value".into(), Value::Integer(value).into());
        f.insert("code".into(), Value::from(Coding::new("loinc", code, None)).into());
        s.update(id, f).unwrap()
    };
    // Before the first query: updates of replayed documents, new documents, an erasure.
    assert_eq!(upd(&s, &ids[1], 700, "7777-7"), 2);
    assert_eq!(upd(&s, &ids[1], 701, "7777-8"), 3);
    assert_eq!(upd(&s, &ids[5], 702, "7777-7"), 2);
    put_docs(&s, 60..70, 4);
    let po = v.session(Principal::new("po", Role::privacy_officer(), "h", Purpose::Compliance)).unwrap();
    assert!(po.erase_patient("P3", "patient request, right to erasure").unwrap() > 0);
    assert!(!v.store().read_state().catalog.values_built());
    let ids_for =
        |s: &Session, q: &str| -> Vec<DocumentId> { s.query_str(q).unwrap().documents.iter().map(|d| d.id).collect() };
    assert_eq!(ids_for(&s, "code = loinc:7777-7"), vec![ids[5]]);
    assert!(v.store().read_state().catalog.values_built());
    assert_eq!(ids_for(&s, "value >= 700 order by value"), vec![ids[1], ids[5]]);
    assert!(ids_for(&s, "patient = \"P3\"").is_empty());
    // After it: kept current.
    assert_eq!(upd(&s, &ids[5], 703, "7777-8"), 3);
    assert!(ids_for(&s, "code = loinc:7777-7").is_empty());
    assert_eq!(ids_for(&s, "code = loinc:7777-8"), vec![ids[1], ids[5]]);
    let live = answers(&v);
    // 70 documents, 17 of them P3's (every fourth from the third).
    assert_eq!(total(&live, "loader: "), 53);
    drop((s, po));

    // The same vault from a checkpoint, and replayed again from the whole log.
    let cp = v.checkpoint().unwrap();
    v.close().unwrap();
    let v = db.open();
    assert_eq!(v.open_report().checkpoint, Some(cp));
    assert_eq!(answers(&v), live, "checkpoint open answers differently");
    v.store().set_checkpoint_pointer(0).unwrap();
    v.close().unwrap();
    let v = db.open();
    assert_eq!(v.open_report().checkpoint, None);
    assert!(!v.store().read_state().catalog.values_built());
    assert_eq!(answers(&v), live, "full replay answers differently");
}

/// One chart as the loader sees it: (id, version, seq) of each document.
type Chart = Vec<(DocumentId, u32, Option<Value>)>;

/// Charts of every patient as the loader sees them.
fn charts(v: &Vault) -> Vec<(String, Chart)> {
    let s = loader(v);
    PATIENTS
        .iter()
        .map(|p| {
            let docs = s.chart(p).unwrap();
            (
                p.to_string(),
                docs.iter().map(|d| (d.id, d.version, d.fields.get("seq").map(|f| f.value.clone()))).collect(),
            )
        })
        .collect()
}

#[test]
fn an_open_from_a_checkpoint_decodes_each_patient_on_first_use_and_loses_nothing() {
    // (e) After an open from a checkpoint the patients' entries stay sealed: a read,
    //     a chart, an update, a new document and an erasure decode only the patient
    //     they touch; a query or a checkpoint decodes the rest. Every answer equals
    //     that of a full rebuild from the log.
    let (db, v) = Db::new();
    let s = loader(&v);
    let ids = put_docs(&s, 0..240, 40);
    drop(s);
    v.checkpoint().unwrap();
    v.close().unwrap();

    let v = db.open();
    assert!(v.open_report().checkpoint.is_some());
    let unloaded = |v: &Vault| v.store().read_state().catalog.unloaded_patients();
    assert_eq!(unloaded(&v), 4);
    let s = loader(&v);
    // A read of one document decodes its patient (P1) only.
    let d = s.get(&ids[0]).unwrap();
    assert_eq!(d.fields["seq"].value, Value::Integer(0));
    assert_eq!(unloaded(&v), 3);
    // A chart decodes P2 only, and lists its documents in creation order.
    let chart = s.chart("P2").unwrap();
    assert_eq!(chart.len(), 60);
    assert!(chart.windows(2).all(|w| w[0].created <= w[1].created));
    assert_eq!(unloaded(&v), 2);
    // An update of a document of P3, still sealed, and a new document for P4.
    let p3 = ids[2];
    let mut fields = s.get(&p3).unwrap().fields;
    fields.insert("seq".into(), Field::from(Value::Integer(10_002)));
    assert_eq!(s.update(&p3, fields).unwrap(), 2);
    let mut b = s.batch().unwrap();
    let new = b.put(&doc(240, "P4")).unwrap();
    b.commit().unwrap();
    let p4 = s.chart("P4").unwrap();
    assert_eq!(p4.len(), 61);
    assert_eq!(p4.last().unwrap().id, new, "a new document comes after the checkpoint's");
    assert_eq!(unloaded(&v), 0);
    drop(s);
    v.close().unwrap();

    // Again from the checkpoint (the writes after it replayed): an erasure of a
    // sealed patient, then a query, which decodes everything.
    let v = db.open();
    assert_eq!(unloaded(&v), 2, "replaying the writes after the checkpoint decoded P3 and P4");
    let po = v.session(Principal::new("po", Role::privacy_officer(), "h", Purpose::Compliance)).unwrap();
    assert_eq!(po.erase_patient("P1", "patient request (test)").unwrap(), 60);
    drop(po);
    let s = loader(&v);
    assert!(s.get(&ids[0]).is_err(), "an erased patient's document is gone");
    assert!(s.chart("P1").unwrap().is_empty());
    assert!(unloaded(&v) > 0, "the others are still sealed");
    let expected_after = (answers(&v), charts(&v));
    assert_eq!(unloaded(&v), 0, "a query decodes every entry");
    drop(s);
    v.close().unwrap();

    // A checkpoint written right after an open, with every entry still sealed.
    let v = db.open();
    assert!(unloaded(&v) > 0);
    v.checkpoint().unwrap();
    v.close().unwrap();
    let v = db.open();
    assert!(v.open_report().checkpoint.is_some());
    assert_eq!((answers(&v), charts(&v)), expected_after);
    v.close().unwrap();

    // The same answers from a full rebuild of the log.
    let v = db.open();
    v.store().set_checkpoint_pointer(0).unwrap();
    v.close().unwrap();
    let v = db.open();
    assert!(v.open_report().checkpoint.is_none());
    assert_eq!((answers(&v), charts(&v)), expected_after);
    let p3 = loader(&v).get(&ids[2]).unwrap();
    assert_eq!((p3.version, p3.fields["seq"].value.clone()), (2, Value::Integer(10_002)));
    assert!(v.verify().unwrap().is_clean());
}

#[test]
fn a_sealed_entry_that_fails_to_decode_fails_every_use_and_the_file_keeps_everything() {
    // (f) A patient entry kept sealed after open that fails to open when it is first
    //     used (here: damaged in this handle's memory) fails that use and every later
    //     one with an integrity error; it never makes the patient look empty. The
    //     handle points the header away from the checkpoint, so the next open
    //     rebuilds from the log and answers everything.
    let (db, v) = Db::new();
    let s = loader(&v);
    let ids = put_docs(&s, 0..80, 40);
    drop(s);
    v.checkpoint().unwrap();
    let expected = (answers(&v), charts(&v));
    v.close().unwrap();

    let v = db.open();
    assert_eq!(v.store().damage_sealed_checkpoint_entries(), 4);
    let s = loader(&v);
    for _ in 0..2 {
        assert!(matches!(s.get(&ids[0]), Err(Error::Integrity { .. })), "a read of a damaged entry");
        assert!(matches!(s.chart("P2"), Err(Error::Integrity { .. })), "a chart of a damaged entry");
        assert!(matches!(s.query_str("kind = Observation"), Err(Error::Integrity { .. })), "a query");
    }
    drop(s);
    v.close().unwrap();

    let v = db.open();
    assert!(v.open_report().checkpoint.is_none(), "the next open rebuilds from the log");
    assert_eq!((answers(&v), charts(&v)), expected);
}
