//! Property: a vault unlocks with exactly the secrets of its key slots. A wrong
//! passphrase or raw key is `WrongKey`; passphrase and raw-key slots both unlock;
//! one damaged header copy is survived (and reported, and healed by a read-write
//! open), both damaged is `HeaderDamaged`; a removed slot no longer unlocks while the
//! others still do; the last slot cannot be removed; adding a slot rewrites only the
//! header, never the log or the keyring.

mod common;

use std::path::{Path, PathBuf};

use chartvault::format::frame::FrameType;
use chartvault::format::header::{HEADER_REGION, HEADER_SIZE, MAGIC};
use chartvault::store::keyring_path;
use chartvault::{DocumentId, Error, KdfParams, NewDocument, SecretKey, Value, Vault, VaultKey};
use common::{Rng, copy_vault, frames, opts, opts_ro, physician, security_admin};

const PASS: &[u8] = b"correct horse battery staple";
const PASS2: &[u8] = b"second passphrase";

fn create_with(dir: &Path, secret: VaultKey<'_>) -> (PathBuf, DocumentId) {
    let path = dir.join("k.cv");
    let v = Vault::create(&path, secret, opts()).unwrap();
    let s = v.session(physician(["P1"])).unwrap();
    let id = s.put(&NewDocument::new("P1", "Observation").unwrap().with("value", Value::Integer(42))).unwrap();
    drop(s);
    v.close().unwrap();
    (path, id)
}

/// Opens with `secret` and checks the document reads back.
fn opens(path: &Path, secret: VaultKey<'_>, id: &DocumentId) -> Vault {
    let v = Vault::open(path, secret, opts()).unwrap_or_else(|e| panic!("open with {secret:?}: {e}"));
    let d = v.session(physician(["P1"])).unwrap().get(id).unwrap();
    assert_eq!(d.get("value"), Some(&Value::Integer(42)));
    v
}

fn refused(path: &Path, secret: VaultKey<'_>) -> Error {
    match Vault::open(path, secret, opts()) {
        Ok(_) => panic!("opened with {secret:?}"),
        Err(e) => e,
    }
}

#[test]
fn wrong_secrets_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, id) = create_with(dir.path(), VaultKey::Passphrase(PASS));
    for wrong in
        [&b"correct horse battery stapl"[..], b"", b"CORRECT HORSE BATTERY STAPLE", b"correct horse battery staple "]
    {
        assert!(matches!(refused(&path, VaultKey::Passphrase(wrong)), Error::WrongKey));
    }
    assert!(matches!(refused(&path, VaultKey::Raw(&SecretKey::random())), Error::WrongKey));
    // Read-only opens check the key just the same.
    assert!(matches!(Vault::open(&path, VaultKey::Passphrase(b"nope"), opts_ro()), Err(Error::WrongKey)));
    drop(opens(&path, VaultKey::Passphrase(PASS), &id));

    let dir = tempfile::tempdir().unwrap();
    let raw = SecretKey::random();
    let (path, id) = create_with(dir.path(), VaultKey::Raw(&raw));
    let mut other = [0u8; 32];
    other[0] = 1;
    assert!(matches!(refused(&path, VaultKey::Raw(&SecretKey::from_bytes(other))), Error::WrongKey));
    assert!(matches!(refused(&path, VaultKey::Passphrase(PASS)), Error::WrongKey));
    drop(opens(&path, VaultKey::Raw(&raw), &id));
}

#[test]
fn passphrase_and_raw_key_slots_both_unlock() {
    let dir = tempfile::tempdir().unwrap();
    let (path, id) = create_with(dir.path(), VaultKey::Passphrase(PASS));
    let raw = SecretKey::random();
    let v = opens(&path, VaultKey::Passphrase(PASS), &id);
    let slot =
        v.session(security_admin()).unwrap().add_key_slot(VaultKey::Raw(&raw), KdfParams::INSECURE_FOR_TESTS).unwrap();
    assert_eq!(slot, 1);
    assert_eq!(v.store().slots(), vec![(0, "passphrase"), (1, "raw-key")]);
    v.close().unwrap();
    let v = opens(&path, VaultKey::Raw(&raw), &id);
    assert_eq!(v.store().slot_of(&chartvault::format::header::Unlock::RawKey(&raw)).unwrap(), 1);
    drop(v);
    drop(opens(&path, VaultKey::Passphrase(PASS), &id));
}

fn garbage(rng: &mut Rng, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.next_u64() as u8).collect()
}

/// Damages header copy `copy` (0 or 1): the whole copy, or all of it but the magic.
fn damage(path: &Path, copy: usize, keep_magic: bool, rng: &mut Rng) {
    let mut data = std::fs::read(path).unwrap();
    let at = copy * HEADER_SIZE;
    let from = if keep_magic { at + MAGIC.len() } else { at };
    let g = garbage(rng, at + HEADER_SIZE - from);
    data[from..at + HEADER_SIZE].copy_from_slice(&g);
    if !keep_magic && data[at..at + 8] == MAGIC[..] {
        data[at] ^= 0xff;
    }
    std::fs::write(path, data).unwrap();
}

#[test]
fn one_damaged_header_copy_is_survived() {
    let dir = tempfile::tempdir().unwrap();
    let (orig, id) = create_with(dir.path(), VaultKey::Passphrase(PASS));
    let mut rng = Rng::from_time("header damage");
    for copy in [0, 1] {
        for keep_magic in [false, true] {
            let ctx = format!("copy {copy} damaged (magic kept: {keep_magic})");
            let d = tempfile::tempdir().unwrap();
            let path = copy_vault(&orig, d.path());
            damage(&path, copy, keep_magic, &mut rng);
            let before = std::fs::read(&path).unwrap();
            // Read-only: served, reported, file left alone.
            let ro = Vault::open(&path, VaultKey::Passphrase(PASS), opts_ro()).unwrap_or_else(|e| panic!("{ctx}: {e}"));
            assert!(ro.open_report().damaged_header, "{ctx}");
            assert_eq!(
                ro.session(physician(["P1"])).unwrap().get(&id).unwrap().get("value"),
                Some(&Value::Integer(42))
            );
            drop(ro);
            assert_eq!(std::fs::read(&path).unwrap(), before, "{ctx}: read-only open changed the file");
            // Read-write: served, reported, healed.
            let v = opens(&path, VaultKey::Passphrase(PASS), &id);
            assert!(v.open_report().damaged_header, "{ctx}");
            v.close().unwrap();
            let data = std::fs::read(&path).unwrap();
            assert_eq!(data[..HEADER_SIZE], data[HEADER_SIZE..2 * HEADER_SIZE], "{ctx}: both copies rewritten");
            let v = opens(&path, VaultKey::Passphrase(PASS), &id);
            assert!(!v.open_report().damaged_header, "{ctx}: the damaged copy was healed");
        }
    }
}

#[test]
fn both_header_copies_damaged_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (orig, _) = create_with(dir.path(), VaultKey::Passphrase(PASS));
    let mut rng = Rng::from_time("both headers");
    for (keep_a, keep_b) in [(true, true), (false, true), (true, false), (false, false)] {
        let ctx = format!("magic kept in copy A: {keep_a}, copy B: {keep_b}");
        let d = tempfile::tempdir().unwrap();
        let path = copy_vault(&orig, d.path());
        damage(&path, 0, keep_a, &mut rng);
        damage(&path, 1, keep_b, &mut rng);
        let before = std::fs::read(&path).unwrap();
        for o in [opts(), opts_ro()] {
            match Vault::open(&path, VaultKey::Passphrase(PASS), o) {
                Err(Error::HeaderDamaged) => {}
                // With the magic gone from both copies nothing marks the file as a vault.
                Err(Error::NotAVault { .. }) if !keep_a && !keep_b => {}
                other => panic!("{ctx}: expected HeaderDamaged, got {other:?}"),
            }
        }
        assert_eq!(std::fs::read(&path).unwrap(), before, "{ctx}: a refused open changes nothing");
    }
}

#[test]
fn removed_slots_stop_unlocking_and_the_last_slot_stays() {
    let dir = tempfile::tempdir().unwrap();
    let (path, id) = create_with(dir.path(), VaultKey::Passphrase(PASS));
    let raw = SecretKey::random();
    let v = opens(&path, VaultKey::Passphrase(PASS), &id);
    let sec = v.session(security_admin()).unwrap();
    assert_eq!(sec.add_key_slot(VaultKey::Passphrase(PASS2), KdfParams::INSECURE_FOR_TESTS).unwrap(), 1);
    assert_eq!(sec.add_key_slot(VaultKey::Raw(&raw), KdfParams::INSECURE_FOR_TESTS).unwrap(), 2);
    // Only a security administrator may manage slots.
    let dr = v.session(physician(["P1"])).unwrap();
    assert!(matches!(dr.remove_key_slot(0), Err(Error::Denied(_))));
    // Remove the slot this handle was opened with.
    sec.remove_key_slot(0).unwrap();
    assert!(matches!(sec.remove_key_slot(0), Err(Error::KeySlot(_))), "an empty slot cannot be removed");
    drop((sec, dr));
    v.close().unwrap();

    assert!(matches!(refused(&path, VaultKey::Passphrase(PASS)), Error::WrongKey));
    // The removed secret unlocks neither header copy on its own.
    for copy in [0, 1] {
        let d = tempfile::tempdir().unwrap();
        let p = copy_vault(&path, d.path());
        let mut rng = Rng::new(copy as u64 + 7);
        damage(&p, 1 - copy, false, &mut rng);
        assert!(matches!(refused(&p, VaultKey::Passphrase(PASS)), Error::WrongKey), "header copy {copy}");
        drop(opens(&p, VaultKey::Passphrase(PASS2), &id));
    }
    drop(opens(&path, VaultKey::Raw(&raw), &id));

    let v = opens(&path, VaultKey::Passphrase(PASS2), &id);
    let sec = v.session(security_admin()).unwrap();
    sec.remove_key_slot(1).unwrap();
    match sec.remove_key_slot(2) {
        Err(Error::KeySlot(msg)) => assert!(msg.contains("last"), "{msg}"),
        other => panic!("removing the last slot: {other:?}"),
    }
    assert_eq!(v.store().slots(), vec![(2, "raw-key")]);
    drop(sec);
    v.close().unwrap();
    assert!(matches!(refused(&path, VaultKey::Passphrase(PASS2)), Error::WrongKey));
    drop(opens(&path, VaultKey::Raw(&raw), &id));
}

#[test]
fn adding_a_slot_rewrites_only_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let (path, id) = create_with(dir.path(), VaultKey::Passphrase(PASS));
    let data_before = std::fs::read(&path).unwrap();
    let ring_before = std::fs::read(keyring_path(&path)).unwrap();
    let log_len = common::log_end(&data_before);

    let v = opens(&path, VaultKey::Passphrase(PASS), &id);
    v.session(security_admin())
        .unwrap()
        .add_key_slot(VaultKey::Passphrase(PASS2), KdfParams::INSECURE_FOR_TESTS)
        .unwrap();
    v.close().unwrap();

    let data_after = std::fs::read(&path).unwrap();
    assert_ne!(
        data_after[..HEADER_REGION as usize],
        data_before[..HEADER_REGION as usize],
        "the header holds the new slot"
    );
    assert_eq!(
        data_after[HEADER_REGION as usize..log_len],
        data_before[HEADER_REGION as usize..log_len],
        "the log was not rewritten"
    );
    assert_eq!(std::fs::read(keyring_path(&path)).unwrap(), ring_before, "the keyring was not rewritten");
    // What was appended is only the audit trail of this session (and its commits).
    let appended: Vec<FrameType> =
        frames(&data_after).into_iter().filter(|f| f.offset >= log_len).map(|f| f.ty).collect();
    assert!(!appended.is_empty());
    assert!(appended.iter().all(|t| matches!(t, FrameType::Audit | FrameType::Commit)), "{appended:?}");
    drop(opens(&path, VaultKey::Passphrase(PASS2), &id));
    drop(opens(&path, VaultKey::Passphrase(PASS), &id));
}
