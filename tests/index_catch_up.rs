//! Value indexes catch up when writes pause: documents a commit applies wait for the
//! value indexes (`Catalog::flush_values`), and the vault's background thread adds them
//! once no commit has written documents for a while, so the first query after a run of
//! writes does not pay for the whole run. `Store::catch_up_indexes` does nothing while
//! writes are recent, and the indexes it leaves answer queries exactly as a flush made
//! by the query itself would.

mod common;

use std::time::{Duration, Instant};

use chartvault::{Coding, NewDocument, Value, Vault, VaultKey, VaultOptions};
use common::{key, opts, physician};

const PATIENT: &str = "MRN-7";

fn doc(i: usize) -> NewDocument {
    let code = if i.is_multiple_of(3) { "2345-7" } else { "4548-4" };
    NewDocument::new(PATIENT, "Observation")
        .unwrap()
        .with("code", Value::from(Coding::new("loinc", code, None)))
        .with("value", Value::Integer(i as i64))
}

fn write(v: &Vault, range: std::ops::Range<usize>) {
    let s = v.session(physician([PATIENT])).unwrap();
    let mut b = s.batch().unwrap();
    b.put_all(&range.map(doc).collect::<Vec<_>>()).unwrap();
    b.commit().unwrap();
}

fn pending(v: &Vault) -> bool {
    v.store().read_state().catalog.has_pending_values()
}

/// How many of the documents `0..n` have code 2345-7.
fn expected_hits(n: usize) -> usize {
    (0..n).filter(|i| i.is_multiple_of(3)).count()
}

fn hits(v: &Vault) -> usize {
    let s = v.session(physician([PATIENT])).unwrap();
    let r = s.query_str("code = loinc:2345-7 limit 10000").unwrap();
    assert!(r.next_cursor.is_none());
    r.documents.len()
}

/// A new vault whose background thread wakes once per `window`, holding documents
/// `0..50` with its value indexes current (a query has run).
fn vault_with_50(dir: &tempfile::TempDir, window: Duration) -> Vault {
    let o = VaultOptions { audit_window: window, ..opts() };
    let v = Vault::create(&dir.path().join("v.cv"), VaultKey::Raw(&key()), o).unwrap();
    write(&v, 0..50);
    assert_eq!(hits(&v), expected_hits(50));
    assert!(!pending(&v), "a query leaves no document waiting");
    v
}

#[test]
fn catch_up_waits_for_a_pause_then_flushes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    // A window of an hour keeps the background thread asleep: this test drives the
    // catch-up itself.
    let v = vault_with_50(&dir, Duration::from_secs(3600));

    write(&v, 50..400);
    assert!(pending(&v));
    // The last write is not an hour old: nothing is done.
    assert!(!v.store().catch_up_indexes(Duration::from_secs(3600)));
    assert!(pending(&v));
    // Any pause is long enough for a zero idle time.
    assert!(v.store().catch_up_indexes(Duration::ZERO));
    assert!(!pending(&v));
    // Nothing left: a second call does nothing.
    assert!(!v.store().catch_up_indexes(Duration::ZERO));
    assert_eq!(hits(&v), expected_hits(400));
    v.close().unwrap();
}

#[test]
fn the_background_thread_catches_up_when_writes_pause() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault_with_50(&dir, Duration::from_millis(20));
    write(&v, 50..600);
    let deadline = Instant::now() + Duration::from_secs(60);
    while pending(&v) {
        assert!(Instant::now() < deadline, "the value indexes were not caught up within a minute");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(hits(&v), expected_hits(600));
    v.close().unwrap();
}
