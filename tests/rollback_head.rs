//! Property: `Vault::head()` identifies the vault's state, so an application that keeps
//! it outside the vault can detect a file rolled back to an older copy. The head
//! changes with every commit, is the same after close and reopen (read-write and
//! read-only), and a vault whose files are replaced by an older copy opens with
//! exactly the older head.

mod common;

use std::path::Path;

use chartvault::store::keyring_path;
use chartvault::{NewDocument, Value, Vault, VaultKey};
use common::{key, opts, opts_ro, physician};

fn copy_files(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap();
    std::fs::copy(keyring_path(from), keyring_path(to)).unwrap();
}

#[test]
fn head_tracks_commits_and_reveals_a_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.cv");
    let backup = dir.path().join("backup.cv");
    let vault = Vault::create(&path, VaultKey::Raw(&key()), opts()).unwrap();
    let s = vault.session(physician(["P1", "P2"])).unwrap();

    let mut heads = vec![vault.head()];
    let mut ids = Vec::new();
    let mut backup_head = None;
    for i in 0..8i64 {
        let d = NewDocument::new(if i % 2 == 0 { "P1" } else { "P2" }, "Observation")
            .unwrap()
            .with("value", Value::Integer(i));
        ids.push(s.put(&d).unwrap());
        let h = vault.head();
        let last = *heads.last().unwrap();
        assert_eq!(h.0, last.0 + 1, "commit number advances by one per commit");
        assert!(heads.iter().all(|old| old.1 != h.1), "the chain value is new after every commit");
        heads.push(h);
        if i == 3 {
            // An older copy, taken between commits.
            copy_files(&path, &backup);
            backup_head = Some(h);
        }
    }
    // An update is a commit too.
    s.update(&ids[0], NewDocument::new("P1", "Observation").unwrap().with("value", Value::Integer(100)).fields)
        .unwrap();
    let latest = vault.head();
    assert_eq!(latest.0, heads.last().unwrap().0 + 1);
    assert!(heads.iter().all(|old| old.1 != latest.1));
    drop(s);
    // No reads are pending, so closing commits nothing more.
    vault.close().unwrap();

    // Stable across reopen, read-write and read-only, until something is committed.
    for o in [opts(), opts_ro(), opts()] {
        let v = Vault::open(&path, VaultKey::Raw(&key()), o).unwrap();
        assert_eq!(v.head(), latest, "head after reopen");
        v.close().unwrap();
    }

    // Roll the files back to the older copy: the vault opens, at the older head.
    copy_files(&backup, &path);
    let backup_head = backup_head.unwrap();
    for o in [opts_ro(), opts()] {
        let v = Vault::open(&path, VaultKey::Raw(&key()), o).unwrap();
        let h = v.head();
        assert_eq!(h, backup_head, "an older copy opens at exactly its own head");
        assert!(h.0 < latest.0 && h.1 != latest.1, "an application comparing with the head it kept sees the rollback");
        // The rolled-back copy lacks the later documents: what the head warns about.
        let s = v.session(physician(["P1", "P2"])).unwrap();
        assert!(s.get(&ids[7]).is_err());
        assert_eq!(s.get(&ids[0]).unwrap().version, 1);
        drop(s);
        v.close().unwrap();
    }

    // A write on the rolled-back copy does not reproduce the lost head either: the
    // commit number may come back, but the chain value never matches.
    let v = Vault::open(&path, VaultKey::Raw(&key()), opts()).unwrap();
    let s = v.session(physician(["P1"])).unwrap();
    let mut reached = false;
    for i in 0..6 {
        s.put(&NewDocument::new("P1", "Observation").unwrap().with("value", Value::Integer(1000 + i))).unwrap();
        let h = v.head();
        assert!(
            heads.iter().chain([&latest]).all(|old| old.1 != h.1),
            "a diverged history never shows a known chain value"
        );
        if h.0 == latest.0 {
            assert_ne!(h, latest, "same commit number, different chain: the rollback still shows");
            reached = true;
        }
    }
    assert!(reached, "the diverged copy got back to the lost commit number");
}
