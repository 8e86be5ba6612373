//! Property: a power cut at *any* write of a realistic workload leaves a vault that
//! reopens holding exactly a committed prefix of the workload (invariant 3, "committed
//! means durable", and the recovery policy of `src/log/scan.rs`).
//!
//! The workload (create, a session, about twenty documents in single-document and
//! multi-document batches, new patients, updates including two versions of one
//! document in one batch, a 4.5 MiB attachment whose batch is flushed to the file
//! before its commit, reads whose audit entries ride on later commits, a final audit
//! flush) runs once on [`FaultStorage`] to count its writes W (data file and keyring
//! together). Then, for every i in 1..=W, it runs again with a power cut at write i
//! and the files are rebuilt as the disk may hold them after reboot:
//!
//! - only the durable (fsync'd) bytes;
//! - the durable bytes, every earlier unsynced write, and a torn prefix of write i of
//!   length 0, half, and all but one byte;
//! - all of it (the disk kept everything, but the fsync never returned);
//! - all of it but one 4 KiB file page of write i (its first, or the one in its
//!   middle), or of an earlier unsynced write of the same batch: disks write pages
//!   out of order, so a commit frame may survive data written before it.
//!
//! Each image is reopened with `Vault::open_on` and must hold the documents of the
//! first k document commits, exactly (ids, patients, kinds, every version's fields,
//! the attachment's bytes), where k = the number of commits acknowledged before the
//! cut, or k + 1 if the in-flight commit was fully staged (its data may have reached
//! the disk although it was never acknowledged). Nothing else may be visible.
//! `verify()` must be clean with no torn tail left, and the audit chain intact.
//! If the cut came before `create` returned, reopening may also fail with an error.
//! For the half-torn image the recovered vault must also accept a new commit that
//! survives another reopen.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chartvault::log::Storage;
use chartvault::log::fault::{Fault, FaultController, FaultStorage, Trigger};
use chartvault::{
    Coding, Date, Decimal, DocumentId, Field, KdfParams, NewDocument, Session, SessionBatch, Value, Vault, VaultKey,
    VaultOptions,
};
use common::{physician, same_fields};

const DATA: &str = "fault://boundary.cv";
const KEYRING: &str = "fault://boundary.cv.keyring";
const PATIENTS: [&str; 10] = ["P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8", "P9", "P10"];
/// Larger than the writer's 4 MiB flush threshold, so its batch takes two writes.
const ATTACHMENT_LEN: usize = 4 * 1024 * 1024 + 512 * 1024;

fn opts() -> VaultOptions {
    // Read-audit entries wait for the next commit (never for the flusher thread), so
    // the sequence of writes is the same on every run.
    VaultOptions {
        kdf: KdfParams::INSECURE_FOR_TESTS,
        audit_window: Duration::from_secs(3600),
        audit_max_pending: 100_000,
        ..VaultOptions::default()
    }
}

#[derive(Debug, Clone)]
struct DocModel {
    patient: String,
    kind: String,
    versions: Vec<BTreeMap<String, Field>>,
}

/// The documents the workload has made durable (or is committing).
#[derive(Debug, Clone, Default)]
struct Model {
    commits: usize,
    docs: BTreeMap<DocumentId, DocModel>,
    /// The document whose `content` field holds the attachment.
    attachment_doc: Option<DocumentId>,
}

impl Model {
    fn shape(&self) -> BTreeMap<DocumentId, usize> {
        self.docs.iter().map(|(id, d)| (*id, d.versions.len())).collect()
    }
    fn total_versions(&self) -> u64 {
        self.docs.values().map(|d| d.versions.len() as u64).sum()
    }
}

/// What one run of the workload achieved before it stopped.
#[derive(Debug, Default)]
struct Run {
    created: bool,
    acked: Model,
    in_flight: Option<Model>,
}

fn attachment_bytes() -> Vec<u8> {
    (0..ATTACHMENT_LEN).map(|i| (i.wrapping_mul(31) ^ (i >> 9)) as u8).collect()
}

fn obs(patient: &str, n: i64) -> NewDocument {
    NewDocument::new(patient, "Observation")
        .unwrap()
        .with("code", Value::from(Coding::new("loinc", &format!("{}-{}", 4000 + n, n % 10), Some("test"))))
        .with("value", Value::Decimal(Decimal::new(n * 10 + 5, 1)))
        .with("effective", Value::Date(Date::from_days(19_000 + n as i32).unwrap()))
        .with("note", Value::Text(format!("observation {n} of {patient}: within range")))
}

fn note(patient: &str, n: i64) -> NewDocument {
    NewDocument::new(patient, "ClinicalNote")
        .unwrap()
        .with("date", Value::Date(Date::from_days(19_100 + n as i32).unwrap()))
        .with("text", Value::Text(format!("note {n}: {}", "patient seen, plan unchanged. ".repeat(n as usize % 5 + 1))))
}

fn revised(n: i64) -> BTreeMap<String, Field> {
    let mut f = BTreeMap::new();
    f.insert("code".to_string(), Field::from(Value::from(Coding::new("loinc", "2345-7", None))));
    f.insert("value".to_string(), Field::from(Value::Integer(100 + n)));
    f.insert("note".to_string(), Field::from(Value::Text(format!("revision {n}"))));
    f
}

fn put(b: &mut SessionBatch<'_>, m: &mut Model, doc: NewDocument) -> chartvault::Result<DocumentId> {
    let id = b.put(&doc)?;
    let dm = DocModel { patient: doc.patient.clone(), kind: doc.kind.as_str().to_string(), versions: vec![doc.fields] };
    m.docs.insert(id, dm);
    Ok(id)
}

fn update(
    b: &mut SessionBatch<'_>,
    m: &mut Model,
    id: DocumentId,
    fields: BTreeMap<String, Field>,
) -> chartvault::Result<()> {
    b.update(&id, fields.clone())?;
    m.docs.get_mut(&id).expect("updated document is in the model").versions.push(fields);
    Ok(())
}

/// Stages one batch with `f` and commits it, recording what is in flight and what
/// was acknowledged.
fn step(
    run: &mut Run,
    s: &Session,
    f: impl FnOnce(&mut SessionBatch<'_>, &mut Model) -> chartvault::Result<()>,
) -> chartvault::Result<()> {
    run.in_flight = None;
    let mut next = run.acked.clone();
    let mut b = s.batch()?;
    f(&mut b, &mut next)?;
    next.commits += 1;
    run.in_flight = Some(next.clone());
    b.commit()?;
    run.acked = next;
    run.in_flight = None;
    Ok(())
}

fn first_doc(m: &Model, patient: &str, nth: usize) -> DocumentId {
    // The model keeps ids sorted (random); order a patient's documents by content instead.
    let mut ids: Vec<(String, DocumentId)> = m
        .docs
        .iter()
        .filter(|(_, d)| d.patient == patient)
        .map(|(id, d)| (format!("{:?}", d.versions[0]), *id))
        .collect();
    ids.sort();
    ids[nth].1
}

fn workload(data: Arc<dyn Storage>, keyring: Arc<dyn Storage>, run: &mut Run) -> chartvault::Result<()> {
    let v = Vault::create_on(data, keyring, VaultKey::Raw(&common::key()), opts())?;
    run.created = true;
    let dr = v.session(physician(PATIENTS))?;
    // One document, alone.
    let mut first = None;
    step(run, &dr, |b, m| {
        first = Some(put(b, m, obs("P1", 1))?);
        Ok(())
    })?;
    let first = first.expect("staged");
    // Four documents for two new patients in one commit.
    step(run, &dr, |b, m| {
        put(b, m, obs("P2", 2))?;
        put(b, m, note("P2", 3))?;
        put(b, m, obs("P3", 4))?;
        put(b, m, note("P3", 5)).map(|_| ())
    })?;
    dr.get(&first)?;
    step(run, &dr, |b, m| update(b, m, first, revised(1)))?;
    // An attachment large enough to be flushed before its commit, with a new patient.
    let mut scan = None;
    step(run, &dr, |b, m| {
        let a = b.put_attachment("application/octet-stream", &mut Cursor::new(attachment_bytes()))?;
        let doc = NewDocument::new("P1", "DocumentReference")
            .unwrap()
            .with("type", Value::from(Coding::new("loinc", "18748-4", Some("imaging"))))
            .with("content", Value::from(a));
        let id = put(b, m, doc)?;
        m.attachment_doc = Some(id);
        scan = Some(id);
        put(b, m, obs("P4", 6)).map(|_| ())
    })?;
    dr.read_attachment(&scan.expect("staged"), "content", &mut std::io::sink())?;
    // Single documents, each read back.
    for n in 7..13 {
        let p = PATIENTS[(n as usize) % 3];
        let mut id = None;
        step(run, &dr, |b, m| {
            id = Some(put(b, m, if n % 2 == 0 { obs(p, n) } else { note(p, n) })?);
            Ok(())
        })?;
        dr.get(&id.expect("staged"))?;
    }
    // Six new patients in one commit.
    step(run, &dr, |b, m| {
        for (i, p) in PATIENTS[4..].iter().enumerate() {
            put(b, m, obs(p, 13 + i as i64))?;
        }
        Ok(())
    })?;
    // Updates: one document twice in the same commit, two others once.
    step(run, &dr, |b, m| {
        let twice = first_doc(m, "P2", 0);
        update(b, m, twice, revised(2))?;
        update(b, m, twice, revised(3))?;
        let p5 = first_doc(m, "P5", 0);
        update(b, m, p5, revised(4))?;
        let p3 = first_doc(m, "P3", 1);
        update(b, m, p3, revised(5))
    })?;
    step(run, &dr, |b, m| put(b, m, note("P10", 19)).map(|_| ()))?;
    dr.chart("P2")?;
    v.flush_audit()?;
    drop(dr);
    v.close()
}

/// One crash image of a power cut.
#[derive(Debug, Clone)]
struct Image {
    name: &'static str,
    /// Bytes of the cut file's unsynced write stream that reached the disk ...
    keep_cut: usize,
    /// ... except these stream positions (a page the disk did not write).
    lost: Range<usize>,
    /// Bytes of the other file's unsynced writes that reached the disk.
    keep_other: usize,
}

const PAGE: u64 = 4096;

/// Stream positions of the file page holding byte `at` of a write of `len` bytes at
/// file offset `off`, which starts at stream position `base`.
fn page_of(base: usize, off: u64, len: usize, at: usize) -> Range<usize> {
    let x = off + at as u64;
    let (from, to) = ((x / PAGE * PAGE).max(off), ((x / PAGE + 1) * PAGE).min(off + len as u64));
    base + (from - off) as usize..base + (to - off) as usize
}

/// The crash images of a cut at a write of `last` bytes at offset `off`, after
/// the unsynced writes `earlier` (offset, length) of the same file.
/// Identical images are taken once.
fn flavours(earlier: &[(u64, usize)], off: u64, last: usize, other_unsynced: usize) -> Vec<Image> {
    let before: usize = earlier.iter().map(|w| w.1).sum();
    let all = before + last;
    let img = |name, keep_cut, lost, keep_other| Image { name, keep_cut, lost, keep_other };
    let mut v = vec![
        img("durable only", 0, 0..0, 0),
        img("torn at 0", before, 0..0, other_unsynced),
        img("torn at half", before + last / 2, 0..0, other_unsynced),
        img("torn at all but one", before + last.saturating_sub(1), 0..0, other_unsynced),
        img("complete", all, 0..0, other_unsynced),
        // The disk wrote later pages of the cut write but not this one.
        img("first page lost", all, page_of(before, off, last, 0), other_unsynced),
        img("middle page lost", all, page_of(before, off, last, last / 2), other_unsynced),
    ];
    // The disk wrote the cut write but lost a page of an earlier unsynced one (a
    // batch flushed before its commit).
    let mut base = 0;
    for &(o, l) in earlier {
        v.push(img("page of an earlier write lost", all, page_of(base, o, l, l / 2), other_unsynced));
        base += l;
    }
    let mut seen = BTreeSet::new();
    v.retain(|i| seen.insert((i.keep_cut, i.lost.start, i.lost.end, i.keep_other)));
    v
}

struct Recovered {
    opened: bool,
    in_flight_visible: bool,
}

fn read_all_patients(v: &Vault) -> Session {
    v.session(physician(PATIENTS)).expect("physician session")
}

/// Checks that the vault reopened from `data`/`keyring` holds exactly the first k
/// commits of `run`.
fn check_recovered(data: &Arc<FaultStorage>, keyring: &Arc<FaultStorage>, run: &Run, ctx: &str) -> Recovered {
    let opened = Vault::open_on(data.clone(), keyring.clone(), VaultKey::Raw(&common::key()), opts());
    let v = match opened {
        Ok(v) => v,
        Err(e) => {
            assert!(!run.created, "{ctx}: a created vault must reopen, got {e}");
            return Recovered { opened: false, in_flight_visible: false };
        }
    };
    assert!(v.open_report().corrupt.is_none(), "{ctx}: {:?}", v.open_report());
    let shape: BTreeMap<DocumentId, usize> =
        v.store().read_state().catalog.docs.iter().map(|(id, e)| (*id, e.versions.len())).collect();
    let model = if shape == run.acked.shape() {
        &run.acked
    } else if let Some(m) = run.in_flight.as_ref().filter(|m| m.shape() == shape) {
        m
    } else {
        panic!(
            "{ctx}: the reopened vault is not a committed prefix: {} documents / {} versions visible, \
             {} acknowledged commits hold {} / {}, in flight: {:?}",
            shape.len(),
            shape.values().sum::<usize>(),
            run.acked.commits,
            run.acked.docs.len(),
            run.acked.total_versions(),
            run.in_flight.as_ref().map(|m| (m.docs.len(), m.total_versions())),
        );
    };
    let in_flight_visible = !std::ptr::eq(model, &run.acked);
    let dr = read_all_patients(&v);
    for (id, d) in &model.docs {
        let hist = dr.history(id).unwrap_or_else(|e| panic!("{ctx}: history of {id}: {e}"));
        assert_eq!(hist.len(), d.versions.len(), "{ctx}: versions of {id}");
        for (i, (got, want)) in hist.iter().zip(&d.versions).enumerate() {
            assert_eq!(got.version as usize, i + 1, "{ctx}: version number of {id}");
            assert_eq!(
                (got.patient.as_str(), got.kind.as_str(), got.author.as_str()),
                (d.patient.as_str(), d.kind.as_str(), "dr")
            );
            assert!(got.redacted.is_empty(), "{ctx}: {id} v{} redacted {:?}", i + 1, got.redacted);
            assert!(
                same_fields(&got.fields, want),
                "{ctx}: {id} v{} differs\n got {:?}\nwant {:?}",
                i + 1,
                got.fields,
                want
            );
        }
    }
    if let Some(id) = model.attachment_doc {
        let mut out = Vec::new();
        dr.read_attachment(&id, "content", &mut out).unwrap_or_else(|e| panic!("{ctx}: attachment: {e}"));
        assert!(out == attachment_bytes(), "{ctx}: attachment content differs ({} bytes)", out.len());
    }
    let rep = v.verify().expect("verify runs");
    assert!(rep.is_clean(), "{ctx}: verify: {:?}", rep.problems);
    assert!(rep.torn_tail.is_none(), "{ctx}: open left a torn tail: {:?}", rep.torn_tail);
    assert_eq!(rep.records, model.total_versions(), "{ctx}: verified records");
    let audit = chartvault::audit::trail::verify(v.store()).expect("audit verify runs");
    assert!(audit.is_intact(), "{ctx}: audit trail: {:?}", audit.problems);
    drop(dr);
    v.close().expect("close");
    Recovered { opened: true, in_flight_visible }
}

/// The recovered vault takes a new commit, which survives a power cut after it.
fn check_writable_after_recovery(data: &Arc<FaultStorage>, keyring: &Arc<FaultStorage>, ctx: &str) {
    let v = Vault::open_on(data.clone(), keyring.clone(), VaultKey::Raw(&common::key()), opts()).expect("reopen");
    let before = v.stats();
    let dr = v.session(physician(["P11-new"])).expect("session");
    let id = dr.put(&obs("P11-new", 99)).unwrap_or_else(|e| panic!("{ctx}: write after recovery: {e}"));
    drop(dr);
    v.close().expect("close");
    let (d2, k2) = (Arc::new(data.crash(0)), Arc::new(keyring.crash(0)));
    let v = Vault::open_on(d2, k2, VaultKey::Raw(&common::key()), opts()).expect("reopen after the new commit");
    assert_eq!(v.stats(), (before.0 + 1, before.1 + 1), "{ctx}: the commit after recovery is durable");
    let dr = v.session(physician(["P11-new"])).expect("session");
    assert!(same_fields(&dr.get(&id).expect("new document").fields, &obs("P11-new", 99).fields), "{ctx}");
    assert!(v.verify().expect("verify").is_clean(), "{ctx}: verify after the new commit");
    drop(dr);
    v.close().expect("close");
}

#[test]
fn power_cut_at_every_write_leaves_a_committed_prefix() {
    let started = Instant::now();
    // Count the workload's writes.
    let ctl = FaultController::new();
    let data = Arc::new(FaultStorage::with_controller(DATA, ctl.clone()));
    let keyring = Arc::new(FaultStorage::with_controller(KEYRING, ctl.clone()));
    let mut full = Run::default();
    workload(data.clone(), keyring.clone(), &mut full).expect("the workload runs without faults");
    let total = ctl.counts();
    assert_eq!(full.acked.docs.len(), 20, "the workload writes twenty documents");
    assert_eq!(full.acked.total_versions(), 25);
    assert!(total.writes >= 20, "a realistic workload: {total:?}");
    let r = check_recovered(&data, &keyring, &full, "after the whole workload");
    assert!(r.opened && !r.in_flight_visible);

    let mut images = 0usize;
    let mut cuts_in_keyring = 0usize;
    let mut with_earlier_unsynced = 0usize;
    let mut in_flight_seen = 0usize;
    let mut refused_before_create = 0usize;
    for i in 1..=total.writes {
        let ctl = FaultController::new();
        ctl.fail_at(Trigger::Write(i), Fault::PowerCut);
        let data = Arc::new(FaultStorage::with_controller(DATA, ctl.clone()));
        let keyring = Arc::new(FaultStorage::with_controller(KEYRING, ctl.clone()));
        let mut run = Run::default();
        let res = workload(data.clone(), keyring.clone(), &mut run);
        assert!(res.is_err(), "write {i}: the workload must fail at the power cut");
        let fired = ctl.fired();
        assert_eq!(fired.len(), 1, "write {i}: one fault fires (the workload is deterministic)");
        let ev = &fired[0];
        assert_eq!(ev.trigger, Trigger::Write(i));
        let (cut, other) = if ev.path.as_path() == data.path() { (&data, &keyring) } else { (&keyring, &data) };
        cuts_in_keyring += usize::from(ev.path.as_path() == keyring.path());
        let writes = cut.unsynced_writes();
        let (last_off, last) = *writes.last().expect("the cut write is unsynced");
        assert_eq!((last_off, last), (ev.offset, ev.len), "write {i}: the cut write is the last unsynced one");
        let earlier = &writes[..writes.len() - 1];
        with_earlier_unsynced += usize::from(!earlier.is_empty());
        for im in flavours(earlier, last_off, last, other.unsynced_len()) {
            let ctx =
                format!("power cut at write {i}/{} ({} @{last_off}+{last}), {im:?}", total.writes, ev.path.display());
            let c = Arc::new(cut.crash_losing(im.keep_cut, im.lost.clone()));
            let o = Arc::new(other.crash(im.keep_other));
            let (d, k) = if ev.path.as_path() == data.path() { (c, o) } else { (o, c) };
            let r = check_recovered(&d, &k, &run, &ctx);
            images += 1;
            in_flight_seen += usize::from(r.in_flight_visible);
            refused_before_create += usize::from(!r.opened);
            if im.name == "torn at half" && r.opened {
                check_writable_after_recovery(&d, &k, &ctx);
            }
        }
    }
    eprintln!(
        "{} write boundaries ({} in the keyring, {} with earlier unsynced writes), {} crash images, \
         {} showed the unacknowledged in-flight commit, {} did not open (cut before create returned); {:.1?}",
        total.writes,
        cuts_in_keyring,
        with_earlier_unsynced,
        images,
        in_flight_seen,
        refused_before_create,
        started.elapsed()
    );
    assert!(cuts_in_keyring > 0, "some cuts hit keyring writes");
    assert!(with_earlier_unsynced > 0, "some cuts hit a batch already partly flushed");
    assert!(in_flight_seen > 0, "some images keep a commit whose fsync never returned");
}
