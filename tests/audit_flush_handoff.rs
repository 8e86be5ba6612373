//! Read-audit entries handed to the background flusher: with a tiny
//! `audit_max_pending`, readers on several threads keep asking the flusher to commit
//! while a writer commits documents (each commit also takes the pending entries). Every
//! read is in the trail exactly once, and the trail's sequence and hash chain stay
//! intact: committers take the chain position under its own lock, held until the new
//! position is stored, since the writer is released inside the commit.

mod common;

use std::time::Duration;

use chartvault::access::{Principal, Purpose, Role};
use chartvault::audit::{Action, Outcome};
use chartvault::*;
use common::{key, opts, physician};

const READERS: usize = 3;
const READS: usize = 400;
const WRITES: usize = 60;

fn doc(i: usize) -> NewDocument {
    NewDocument::new("MRN-1", "Observation").unwrap().with("seq", Value::Integer(i as i64))
}

#[test]
fn every_read_is_audited_once_and_the_chain_holds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.cv");
    let o = VaultOptions { audit_max_pending: 4, audit_window: Duration::from_millis(20), ..opts() };
    let v = Vault::create(&path, VaultKey::Raw(&key()), o.clone()).unwrap();
    let ids: Vec<DocumentId> = {
        let s = v.session(physician(["MRN-1"])).unwrap();
        let mut b = s.batch().unwrap();
        let ids = b.put_all(&(0..20).map(doc).collect::<Vec<_>>()).unwrap();
        b.commit().unwrap();
        ids
    };
    std::thread::scope(|scope| {
        for r in 0..READERS {
            let (v, ids) = (&v, &ids);
            scope.spawn(move || {
                let s = v.session(physician(["MRN-1"])).unwrap();
                for i in 0..READS {
                    let d = s.get(&ids[(i * 7 + r) % ids.len()]).unwrap();
                    assert!(d.get("seq").is_some());
                }
            });
        }
        let v = &v;
        scope.spawn(move || {
            let s = v.session(physician(["MRN-1"])).unwrap();
            for i in 0..WRITES {
                s.put(&doc(100 + i)).unwrap();
            }
        });
    });
    v.close().unwrap();

    let v = Vault::open(&path, VaultKey::Raw(&key()), o).unwrap();
    let po = v.session(Principal::new("po", Role::privacy_officer(), "h", Purpose::Compliance)).unwrap();
    let rep = po.audit_verify().unwrap();
    assert!(rep.is_intact(), "{rep:?}");
    let entries = po.audit_entries().unwrap();
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.index, i as u64, "entries are numbered in order, without gaps or repeats");
    }
    let reads = entries.iter().filter(|e| e.action == Action::Read && e.outcome == Outcome::Success).count();
    assert_eq!(reads, READERS * READS, "every read audited exactly once");
    let creates: usize = entries.iter().filter(|e| e.action == Action::Create).map(|e| e.documents.len()).sum();
    assert_eq!(creates, 20 + WRITES);
    drop(po);
    v.close().unwrap();
}
