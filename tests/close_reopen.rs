//! Property: once `Vault::close` returns on the last handle, the file is free: an
//! immediate read-write reopen succeeds, even while the audit flusher was committing
//! read-audit entries at the moment of the close. And a close that is not the last
//! handle leaves the flusher running for the others: their read audits still become
//! durable within the window.

mod common;

use std::time::{Duration, Instant};

use chartvault::access::{Principal, Purpose, Role};
use chartvault::audit::Action;
use chartvault::{NewDocument, Value, Vault, VaultKey, VaultOptions};
use common::{key, opts, opts_ro, physician, scratch_dir};

/// Options whose flusher wakes every millisecond, so a close often meets a flush.
fn busy_flusher() -> VaultOptions {
    VaultOptions { audit_window: Duration::from_millis(1), ..opts() }
}

#[test]
fn the_last_close_releases_the_file_even_during_an_audit_flush() {
    let dir = scratch_dir();
    let path = dir.path().join("v.cv");
    let k = key();
    let id = {
        let v = Vault::create(&path, VaultKey::Raw(&k), busy_flusher()).unwrap();
        let s = v.session(physician(["P1"])).unwrap();
        let id = s.put(&NewDocument::new("P1", "Observation").unwrap().with("value", Value::Integer(1))).unwrap();
        drop(s);
        v.close().unwrap();
        id
    };
    for round in 0..600 {
        let v = Vault::open(&path, VaultKey::Raw(&k), busy_flusher())
            .unwrap_or_else(|e| panic!("round {round}: reopen after close failed: {e}"));
        let s = v.session(physician(["P1"])).unwrap();
        // Reads leave audit entries pending for the flusher; vary the moment of the close.
        for _ in 0..(round % 7) {
            s.get(&id).unwrap();
        }
        std::thread::sleep(Duration::from_micros(200 * (round % 10) as u64));
        drop(s);
        v.close().unwrap();
    }
}

#[test]
fn closing_one_of_two_handles_keeps_the_flusher_for_the_other() {
    let dir = scratch_dir();
    let path = dir.path().join("v.cv");
    let k = key();
    let window = Duration::from_millis(20);
    let v = Vault::create(&path, VaultKey::Raw(&k), VaultOptions { audit_window: window, ..opts() }).unwrap();
    let s = v.session(physician(["P1"])).unwrap();
    let id = s.put(&NewDocument::new("P1", "Observation").unwrap().with("value", Value::Integer(1))).unwrap();
    let other = v.clone();
    v.close().unwrap();
    // The session and the clone still hold the vault: a read's audit entry must still
    // be committed by the flusher within (a generous multiple of) the window. A
    // read-only handle sees only what is committed.
    s.get(&id).unwrap();
    let started = Instant::now();
    let committed = || {
        let ro = Vault::open(&path, VaultKey::Raw(&k), opts_ro()).unwrap();
        let po = Principal::new("po", Role::privacy_officer(), "h", Purpose::Compliance);
        let sec = ro.session(po).unwrap();
        let found = sec.audit_entries().unwrap().iter().any(|e| e.action == Action::Read && e.documents.contains(&id));
        drop(sec);
        ro.close().unwrap();
        found
    };
    while !committed() {
        assert!(started.elapsed() < Duration::from_secs(20), "the read's audit entry was never committed");
        std::thread::sleep(window);
    }
    drop(s);
    other.close().unwrap();
    Vault::open(&path, VaultKey::Raw(&k), opts()).unwrap().close().unwrap();
}
