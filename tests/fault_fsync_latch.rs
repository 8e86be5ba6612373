//! Property: a failed fsync latches the vault (invariant 3, "an fsync error makes the
//! vault refuse further writes (no retry-and-hope)"): every later write is refused
//! with `Error::WritesLatched` without touching the storage, although the storage
//! would now succeed; reads keep working; and a reopen finds every previously
//! committed document intact, the failed commit's documents either fully there or
//! absent, and a clean `verify()`.
//!
//! The storage follows Linux fsync semantics (see `chartvault::log::fault`): after a
//! failed fsync the dirty data stays readable but is never made durable, so a
//! "retry-and-hope" engine would acknowledge commits that a power cut then loses.
//! Covered: the fsync of a commit, of the keyring when a commit adds a patient, and
//! of a header rewrite (adding a key slot). Each is reopened both as the same process
//! would find the files after a restart (page cache intact) and as a power cut leaves
//! them (durable bytes only).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use chartvault::access::{Principal, Purpose, Role};
use chartvault::log::Storage;
use chartvault::log::fault::{Fault, FaultController, FaultStorage, Trigger};
use chartvault::{Coding, DocumentId, Error, Field, KdfParams, NewDocument, Session, Value, Vault, VaultKey};
use common::{opts, physician, same_fields};

const DATA: &str = "fault://latch.cv";
const KEYRING: &str = "fault://latch.cv.keyring";

fn doc(patient: &str, n: i64) -> NewDocument {
    NewDocument::new(patient, "Observation")
        .unwrap()
        .with("code", Value::from(Coding::new("loinc", "4548-4", Some("HbA1c"))))
        .with("value", Value::Integer(n))
        .with("note", Value::Text(format!("reading {n} for {patient}")))
}

/// Committed documents: id -> (patient, fields of every version).
type Committed = BTreeMap<DocumentId, (String, Vec<BTreeMap<String, Field>>)>;

struct Fixture {
    ctl: Arc<FaultController>,
    data: Arc<FaultStorage>,
    keyring: Arc<FaultStorage>,
    vault: Vault,
    committed: Committed,
}

const PATIENTS: [&str; 4] = ["P1", "P2", "P3", "NEW"];

fn security_admin() -> Principal {
    Principal::new("sec", Role::security_admin(), "h", Purpose::SystemAdmin)
}

/// A vault with two key slots and a few committed batches for P1..P3.
fn fixture() -> Fixture {
    let ctl = FaultController::new();
    let data = Arc::new(FaultStorage::with_controller(DATA, ctl.clone()));
    let keyring = Arc::new(FaultStorage::with_controller(KEYRING, ctl.clone()));
    let vault = Vault::create_on(data.clone(), keyring.clone(), VaultKey::Raw(&common::key()), opts()).expect("create");
    let sec = vault.session(security_admin()).expect("session");
    sec.add_key_slot(VaultKey::Passphrase(b"backup passphrase"), KdfParams::INSECURE_FOR_TESTS).expect("second slot");
    drop(sec);
    let dr = vault.session(physician(PATIENTS)).expect("session");
    let mut committed = Committed::new();
    for round in 0..3 {
        let mut b = dr.batch().expect("batch");
        let mut staged = Vec::new();
        for (i, p) in PATIENTS[..3].iter().enumerate() {
            let d = doc(p, round * 10 + i as i64);
            staged.push((b.put(&d).expect("put"), p.to_string(), d.fields));
        }
        b.commit().expect("commit");
        for (id, p, f) in staged {
            committed.insert(id, (p, vec![f]));
        }
    }
    let (&id, _) = committed.iter().next().expect("a document");
    let fields = doc("P1", 77).fields;
    dr.update(&id, fields.clone()).expect("update");
    committed.get_mut(&id).expect("known").1.push(fields);
    drop(dr);
    Fixture { ctl, data, keyring, vault, committed }
}

fn io_errno(e: &Error) -> Option<i32> {
    match e {
        Error::Io { source, .. } => source.raw_os_error(),
        _ => None,
    }
}

/// Every write path of the vault refuses with `WritesLatched` and does no I/O.
fn assert_refuses_everything(f: &Fixture, dr: &Session, ctx: &str) {
    assert!(f.vault.is_latched(), "{ctx}: the vault reports the latch");
    let before = f.ctl.counts();
    let (&some, _) = f.committed.iter().next().expect("a document");
    let latched = |what: &str, r: chartvault::Result<()>| match r {
        Err(Error::WritesLatched) => {}
        other => panic!("{ctx}: {what} after the latch gave {other:?}, expected WritesLatched"),
    };
    latched("put", dr.put(&doc("P1", 1000)).map(|_| ()));
    latched("put for a new patient", dr.put(&doc("NEW", 1001)).map(|_| ()));
    latched("update", dr.update(&some, doc("P1", 1002).fields).map(|_| ()));
    latched(
        "a batch",
        dr.batch().and_then(|mut b| {
            b.put(&doc("P2", 1003))?;
            b.commit().map(|_| ())
        }),
    );
    // Reads still work, and their audit entries cannot be made durable.
    dr.get(&some).expect("reads work on a latched vault");
    latched("flushing the audit trail", f.vault.flush_audit());
    latched("a checkpoint", f.vault.checkpoint().map(|_| ()));
    let sec = f.vault.session(security_admin()).expect("session");
    latched(
        "adding a key slot",
        sec.add_key_slot(VaultKey::Passphrase(b"second passphrase"), KdfParams::INSECURE_FOR_TESTS).map(|_| ()),
    );
    latched("removing a key slot", sec.remove_key_slot(1));
    let after = f.ctl.counts();
    assert_eq!(
        (after.writes, after.syncs, after.truncates),
        (before.writes, before.syncs, before.truncates),
        "{ctx}: a latched vault does no write, sync or truncate at all"
    );
}

/// Reopens on `data`/`keyring` and checks every committed document, that the
/// failed commit's `failed` documents are all there (exactly) or all absent, that
/// verify is clean, and that the reopened vault writes again. Returns whether the
/// failed commit was there.
fn check_reopen(
    data: Arc<FaultStorage>,
    keyring: Arc<FaultStorage>,
    committed: &Committed,
    failed: &[(DocumentId, NewDocument)],
    slots: &[usize],
    power_cut_after_new_commit: bool,
    ctx: &str,
) -> bool {
    let v = Vault::open_on(data.clone(), keyring.clone(), VaultKey::Raw(&common::key()), opts())
        .unwrap_or_else(|e| panic!("{ctx}: reopen: {e}"));
    assert!(!v.is_latched(), "{ctx}: a reopened vault is not latched");
    let n_slots = v.store().slots().len();
    assert!(slots.contains(&n_slots), "{ctx}: {n_slots} key slots, expected one of {slots:?}");
    assert!(v.store().slot_of(&chartvault::format::header::Unlock::Passphrase(b"backup passphrase")).is_ok());
    let dr = v.session(physician(PATIENTS)).expect("session");
    for (id, (patient, versions)) in committed {
        let hist = dr.history(id).unwrap_or_else(|e| panic!("{ctx}: committed document {id}: {e}"));
        assert_eq!(hist.len(), versions.len(), "{ctx}: versions of {id}");
        for (got, want) in hist.iter().zip(versions) {
            assert_eq!(&got.patient, patient);
            assert!(same_fields(&got.fields, want), "{ctx}: {id} v{} differs", got.version);
        }
    }
    let present: Vec<bool> =
        failed.iter().map(|(id, _)| v.store().read_state().catalog.docs.contains_key(id)).collect();
    let all = present.iter().all(|p| *p);
    assert!(all || present.iter().all(|p| !*p), "{ctx}: the failed commit is partly visible: {present:?}");
    if all {
        for (id, d) in failed {
            let got = dr.get(id).unwrap_or_else(|e| panic!("{ctx}: failed-commit document {id}: {e}"));
            assert!(same_fields(&got.fields, &d.fields) && got.patient == d.patient, "{ctx}: {id} differs");
        }
    }
    let expected_docs = committed.len() + if all { failed.len() } else { 0 };
    assert_eq!(v.stats().1, expected_docs, "{ctx}: no other document appeared");
    let rep = v.verify().expect("verify");
    assert!(rep.is_clean() && rep.torn_tail.is_none(), "{ctx}: verify: {rep:?}");
    // The reopened vault writes again, also for the failed commit's new patient, and
    // that commit survives a power cut right after it.
    let new_doc = doc("NEW", 2000);
    let new_id = dr.put(&new_doc).unwrap_or_else(|e| panic!("{ctx}: the reopened vault writes again: {e}"));
    drop(dr);
    v.close().expect("close");
    if !power_cut_after_new_commit {
        return all;
    }
    let v = Vault::open_on(Arc::new(data.crash(0)), Arc::new(keyring.crash(0)), VaultKey::Raw(&common::key()), opts())
        .unwrap_or_else(|e| panic!("{ctx}: reopen after a power cut that follows a new commit: {e}"));
    let dr = v.session(physician(PATIENTS)).expect("session");
    let got = dr.get(&new_id).unwrap_or_else(|e| panic!("{ctx}: the commit after the reopen: {e}"));
    assert!(same_fields(&got.fields, &new_doc.fields), "{ctx}: the commit after the reopen differs");
    for id in committed.keys() {
        dr.get(id).unwrap_or_else(|e| panic!("{ctx}: committed document {id} after the second power cut: {e}"));
    }
    all
}

#[test]
fn failed_commit_fsync_latches_and_reopen_keeps_every_commit() {
    let f = fixture();
    let dr = f.vault.session(physician(PATIENTS)).expect("session");
    f.ctl.fail_next_sync(Fault::Eio);
    let failing = [doc("P1", 500), doc("P2", 501)];
    let mut b = dr.batch().expect("batch");
    let ids: Vec<DocumentId> = failing.iter().map(|d| b.put(d).expect("stage")).collect();
    let err = b.commit().expect_err("the commit's fsync fails");
    assert_eq!(io_errno(&err), Some(5), "EIO is reported: {err}");
    let fired = f.ctl.fired();
    assert_eq!(fired.len(), 1);
    assert_eq!((fired[0].trigger, fired[0].path.as_path()), (Trigger::Sync(f.ctl.counts().syncs), f.data.path()));
    // The failed fsync's data is readable in the page cache but will never be durable.
    // (The commit overwrote the zero reserve in place: same length, other bytes.)
    assert_ne!(f.data.volatile_image(), f.data.durable_image());
    assert_eq!(f.data.unsynced_len(), 0);

    assert_refuses_everything(&f, &dr, "after a failed commit fsync");
    let failed: Vec<(DocumentId, NewDocument)> = ids.into_iter().zip(failing).collect();
    let power_cut = (Arc::new(f.data.crash(usize::MAX)), Arc::new(f.keyring.crash(usize::MAX)));
    drop(dr);
    drop(f.vault);
    let restart = check_reopen(
        f.data.clone(),
        f.keyring.clone(),
        &f.committed,
        &failed,
        &[2],
        false,
        "restart after the failure",
    );
    let cut = check_reopen(power_cut.0, power_cut.1, &f.committed, &failed, &[2], true, "power cut after the failure");
    // Page cache intact: the process sees the commit; after a power cut it is gone.
    assert!(restart && !cut, "restart saw the failed commit: {restart}, power cut: {cut}");
    // A restart that serves the failed commit from the page cache, then a new commit,
    // then a power cut: read-write open rewrites and syncs the last commit, so the disk
    // has no hole before the new commit.
    {
        let restarted =
            Vault::open_on(f.data.clone(), f.keyring.clone(), VaultKey::Raw(&common::key()), opts()).expect("restart");
        let s = restarted.session(physician(PATIENTS)).expect("session");
        let later = s.put(&doc("P1", 777)).expect("a commit after the restart");
        drop(s);
        drop(restarted);
        let cut = Vault::open_on(
            Arc::new(f.data.crash(usize::MAX)),
            Arc::new(f.keyring.crash(usize::MAX)),
            VaultKey::Raw(&common::key()),
            opts(),
        )
        .expect("the power cut after restart + new commit opens");
        let s = cut.session(physician(PATIENTS)).expect("session");
        assert!(s.get(&later).is_ok(), "the commit made after the restart survives the power cut");
        for (id, _) in &failed {
            assert!(s.get(id).is_ok(), "the failed commit, rewritten at the restart, is durable now");
        }
    }
}

#[test]
fn failed_keyring_fsync_for_a_new_patient_latches() {
    let f = fixture();
    let dr = f.vault.session(physician(PATIENTS)).expect("session");
    let writes_before = f.ctl.counts().writes;
    f.ctl.fail_next_sync(Fault::Eio);
    let mut b = dr.batch().expect("batch");
    let failing = [doc("NEW", 600), doc("P1", 601)];
    let ids: Vec<DocumentId> = failing.iter().map(|d| b.put(d).expect("stage")).collect();
    let err = b.commit().expect_err("the keyring fsync fails");
    assert_eq!(io_errno(&err), Some(5), "EIO is reported: {err}");
    assert_eq!(f.ctl.fired()[0].path.as_path(), f.keyring.path(), "the keyring's fsync failed");
    assert_eq!(f.ctl.counts().writes, writes_before + 1, "the commit was not written after the keyring failed");

    assert_refuses_everything(&f, &dr, "after a failed keyring fsync");
    let failed: Vec<(DocumentId, NewDocument)> = ids.into_iter().zip(failing).collect();
    let power_cut = (Arc::new(f.data.crash(usize::MAX)), Arc::new(f.keyring.crash(usize::MAX)));
    drop(dr);
    drop(f.vault);
    let restart = check_reopen(f.data.clone(), f.keyring.clone(), &f.committed, &failed, &[2], true, "restart");
    let cut = check_reopen(power_cut.0, power_cut.1, &f.committed, &failed, &[2], true, "power cut");
    assert!(!restart && !cut, "the commit was never written, so it is absent");
}

#[test]
fn failed_header_fsync_latches() {
    let f = fixture();
    let sec = f.vault.session(security_admin()).expect("session");
    f.ctl.fail_next_sync(Fault::Eio);
    let err = sec
        .add_key_slot(VaultKey::Passphrase(b"second passphrase"), KdfParams::INSECURE_FOR_TESTS)
        .expect_err("the header fsync fails");
    assert_eq!(io_errno(&err), Some(5), "EIO is reported: {err}");
    assert_eq!(f.ctl.fired()[0].path.as_path(), f.data.path());
    let dr = f.vault.session(physician(PATIENTS)).expect("session");
    assert_refuses_everything(&f, &dr, "after a failed header fsync");
    let power_cut = (Arc::new(f.data.crash(usize::MAX)), Arc::new(f.keyring.crash(usize::MAX)));
    drop((dr, sec));
    drop(f.vault);
    // The failed slot addition is either there (its first header copy is in the page
    // cache) or not; nothing else changed.
    check_reopen(f.data.clone(), f.keyring.clone(), &f.committed, &[], &[2, 3], true, "restart");
    check_reopen(power_cut.0, power_cut.1, &f.committed, &[], &[2], true, "power cut");
}
