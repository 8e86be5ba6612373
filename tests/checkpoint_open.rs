//! Opening from an index checkpoint verifies the checkpoint's own commit.
//!
//! The checkpoint loader copies the checkpoint's frames out of the map once, and that
//! copy is what is CRC-checked, hashed into the chain, checked against the commit
//! frame's chain value and MAC, decrypted and decoded; the scan of the rest of the log
//! resumes after that commit. These tests check that a checkpoint whose commit does
//! not verify is not used (open falls back to the full scan, which then treats the
//! damage like any other), that open reports the checkpoint's commit among the
//! commits it verified, and that a read-write open does not write the checkpoint's
//! commit again when it is the last one (it was durable before the header pointed at
//! it), while it still rewrites any other last commit.

mod common;

use std::sync::Arc;

use chartvault::format::frame::{FRAME_HEADER, FrameType};
use chartvault::log::fault::{FaultController, FaultStorage};
use chartvault::store::keyring_path;
use chartvault::{Coding, Error, NewDocument, Value, Vault, VaultKey, VaultOptions};

const PATIENTS: [&str; 3] = ["A", "B", "C"];

fn options() -> VaultOptions {
    VaultOptions {
        checkpoint_every: 0,
        audit_window: std::time::Duration::from_secs(3600),
        audit_max_pending: 100_000,
        ..common::opts()
    }
}

fn put(v: &Vault, from: usize, to: usize) {
    let s = v.session(common::physician(PATIENTS)).unwrap();
    let mut b = s.batch().unwrap();
    for i in from..to {
        b.put(
            &NewDocument::new(PATIENTS[i % PATIENTS.len()], "Observation")
                .unwrap()
                .with("code", Value::from(Coding::new("loinc", ["4548-4", "2345-7"][i % 2], None)))
                .with("status", Value::Text(format!("état {i}"))),
        )
        .unwrap();
    }
    b.commit().unwrap();
}

fn count(v: &Vault) -> usize {
    let s = v.session(common::physician(PATIENTS)).unwrap();
    s.query_str("").unwrap().total
}

fn code_count(v: &Vault) -> usize {
    let s = v.session(common::physician(PATIENTS)).unwrap();
    s.query_str("code = loinc:4548-4").unwrap().total
}

/// A vault of 30 documents whose last commit is an index checkpoint, and `later`
/// commits of 2 documents each after it. Returns the data bytes (up to the log end),
/// the keyring bytes and the checkpoint offset.
fn build(later: usize) -> (Vec<u8>, Vec<u8>, u64) {
    let dir = common::scratch_dir();
    let path = dir.path().join("v.cv");
    let v = Vault::create(&path, VaultKey::Raw(&common::key()), options()).unwrap();
    put(&v, 0, 30);
    let cp = v.checkpoint().unwrap();
    for i in 0..later {
        put(&v, 30 + 2 * i, 32 + 2 * i);
    }
    v.close().unwrap();
    let data = std::fs::read(&path).unwrap();
    let end = common::log_end(&data);
    let ring = std::fs::read(keyring_path(&path)).unwrap();
    (data[..end].to_vec(), ring, cp)
}

/// The commit frame that closes the checkpoint at `cp`.
fn checkpoint_commit(data: &[u8], cp: u64) -> common::FrameAt {
    common::frames(data)
        .into_iter()
        .find(|f| f.offset as u64 > cp && f.ty == FrameType::Commit)
        .expect("the checkpoint has a commit")
}

fn open_bytes(data: &[u8], ring: &[u8]) -> (tempfile::TempDir, Result<Vault, Error>) {
    let dir = common::scratch_dir();
    let path = common::write_vault(dir.path(), "t.cv", data, ring);
    let v = Vault::open(&path, VaultKey::Raw(&common::key()), options());
    (dir, v)
}

#[test]
fn the_checkpoint_is_used_and_its_commit_counted() {
    for later in [0, 2] {
        let (data, ring, cp) = build(later);
        let cp_frames =
            common::frames(&data).iter().filter(|f| f.ty == FrameType::Checkpoint && f.offset as u64 >= cp).count()
                as u64;
        let (_dir, v) = open_bytes(&data, &ring);
        let v = v.unwrap();
        let rep = v.open_report().clone();
        assert_eq!(rep.checkpoint, Some(cp), "{rep:?}");
        assert!(rep.checkpoint_fallback.is_none(), "{rep:?}");
        // The checkpoint's commit and every later one (each: one record frame per
        // document... counted by the scan as before).
        assert_eq!(rep.commits, 1 + later as u64, "{rep:?}");
        assert!(rep.frames >= cp_frames + 1 + later as u64 * 2, "{rep:?}");
        assert_eq!(count(&v), 30 + 2 * later);
        assert_eq!(code_count(&v), (30 + 2 * later) / 2);
        // The checkpoint's frames are noted like any other frame of type 6.
        let st = v.store().read_state();
        assert_eq!(st.catalog.frames_of(FrameType::Checkpoint).iter().filter(|&&o| o >= cp).count() as u64, cp_frames);
        drop(st);
        assert!(v.verify().unwrap().is_clean());
    }
}

#[test]
fn a_checkpoint_whose_commit_does_not_verify_is_not_used() {
    // The checkpoint's commit is the last one: its damage is a torn tail for the full
    // scan that open falls back to, and every document is rebuilt from the log.
    for (what, at) in [("chain", 40usize), ("MAC", 80), ("first sequence number", 9), ("frame count", 16)] {
        let (mut data, ring, cp) = build(0);
        let c = checkpoint_commit(&data, cp);
        let mut payload = data[c.offset + FRAME_HEADER..c.offset + c.len].to_vec();
        payload[at] ^= 0x01;
        common::rewrite_payload(&mut data, c.offset, &payload);
        let (_dir, v) = open_bytes(&data, &ring);
        let v = v.unwrap_or_else(|e| panic!("{what}: {e}"));
        let rep = v.open_report().clone();
        assert_eq!(rep.checkpoint, None, "{what}: {rep:?}");
        let why = rep.checkpoint_fallback.clone().unwrap_or_else(|| panic!("{what}: no fallback: {rep:?}"));
        assert!(why.contains("checkpoint commit"), "{what}: {why}");
        assert_eq!(rep.torn_tail.map(|t| t.0), Some(cp), "{what}: {rep:?}");
        assert_eq!(count(&v), 30, "{what}");
        assert_eq!(code_count(&v), 15, "{what}");
    }
    // With valid commits after it, the damage is corruption: a read-write open refuses.
    let (mut data, ring, cp) = build(2);
    let c = checkpoint_commit(&data, cp);
    let mut payload = data[c.offset + FRAME_HEADER..c.offset + c.len].to_vec();
    payload[40] ^= 0x01;
    common::rewrite_payload(&mut data, c.offset, &payload);
    let (_dir, v) = open_bytes(&data, &ring);
    assert!(matches!(v, Err(Error::Corrupt { .. })), "{:?}", v.map(|v| v.open_report().clone()));
}

#[test]
fn a_changed_checkpoint_frame_with_a_valid_crc_is_not_used() {
    // A byte of a part frame (inside a sealed entry) changed and the frame's CRC fixed:
    // the hash chain no longer matches the commit (and the entry would not open).
    let (mut data, ring, cp) = build(0);
    let part = common::frames(&data)
        .into_iter()
        .find(|f| f.ty == FrameType::Checkpoint && f.offset as u64 > cp)
        .expect("a part frame");
    let mut payload = data[part.offset + FRAME_HEADER..part.offset + part.len].to_vec();
    let last = payload.len() - 1;
    payload[last] ^= 0x40;
    common::rewrite_payload(&mut data, part.offset, &payload);
    let (_dir, v) = open_bytes(&data, &ring);
    let v = v.unwrap();
    let rep = v.open_report().clone();
    assert_eq!(rep.checkpoint, None, "{rep:?}");
    assert!(rep.checkpoint_fallback.is_some(), "{rep:?}");
    assert_eq!(count(&v), 30);
}

/// Opens `data` read-write on fault-injection storage and returns the data file's
/// operation counts for the open alone.
fn open_counting(data: &[u8], ring: &[u8]) -> (chartvault::log::fault::OpCounts, Vault) {
    let ctl = FaultController::new();
    let d = Arc::new(FaultStorage::from_bytes("t.cv", data.to_vec(), ctl.clone()));
    let k = Arc::new(FaultStorage::from_bytes("t.cv.keyring", ring.to_vec(), FaultController::new()));
    let before = ctl.counts();
    let v = Vault::open_on(d, k, VaultKey::Raw(&common::key()), options()).unwrap();
    let after = ctl.counts();
    let mut c = after;
    c.writes -= before.writes;
    c.syncs -= before.syncs;
    c.bytes_written -= before.bytes_written;
    (c, v)
}

#[test]
fn a_checkpoint_commit_that_is_the_last_commit_is_not_written_again() {
    let (data, ring, cp) = build(0);
    let (c, v) = open_counting(&data, &ring);
    assert_eq!(v.open_report().checkpoint, Some(cp));
    assert_eq!((c.writes, c.syncs, c.bytes_written), (0, 0, 0), "{c:?}");
    assert_eq!(count(&v), 30);
    // Any other last commit is still written again and synced at a read-write open
    // (it may be visible only through the page cache).
    let (data, ring, cp) = build(1);
    let (c, v) = open_counting(&data, &ring);
    assert_eq!(v.open_report().checkpoint, Some(cp));
    assert_eq!((c.writes, c.syncs), (1, 1), "{c:?}");
    assert!(c.bytes_written > 0 && (c.bytes_written as usize) < data.len() - cp as usize, "{c:?}");
    assert_eq!(count(&v), 32);
}

#[test]
fn a_read_only_open_uses_the_checkpoint() {
    let (data, ring, cp) = build(1);
    let dir = common::scratch_dir();
    let path = common::write_vault(dir.path(), "t.cv", &data, &ring);
    let v = Vault::open(&path, VaultKey::Raw(&common::key()), VaultOptions { read_only: true, ..options() }).unwrap();
    assert_eq!(v.open_report().checkpoint, Some(cp));
    assert_eq!(v.open_report().commits, 2);
    let st = v.store().read_state();
    assert_eq!(st.catalog.docs.len(), 32);
}

/// Every byte of a checkpoint (its frames and its commit) changed, with the frame's
/// CRC left wrong or made valid again: the checkpoint is never used, a read-write open
/// refuses (valid commits follow the damage), and a read-only open serves exactly the
/// documents committed before the checkpoint.
#[test]
fn any_changed_checkpoint_byte_means_no_checkpoint_and_no_wrong_data() {
    // A small checkpoint: few documents, so every byte can be tried.
    let dir = common::scratch_dir();
    let path = dir.path().join("v.cv");
    let v = Vault::create(&path, VaultKey::Raw(&common::key()), options()).unwrap();
    put(&v, 0, 4);
    let cp = v.checkpoint().unwrap();
    put(&v, 4, 6);
    v.close().unwrap();
    let data = std::fs::read(&path).unwrap();
    let end = common::log_end(&data);
    let data = data[..end].to_vec();
    let ring = std::fs::read(keyring_path(&path)).unwrap();
    let commit = checkpoint_commit(&data, cp);
    let frames: Vec<common::FrameAt> =
        common::frames(&data).into_iter().filter(|f| f.offset as u64 >= cp && f.offset <= commit.offset).collect();
    let ro = VaultOptions { read_only: true, ..options() };
    let mut tried = 0;
    for f in &frames {
        for at in f.offset..f.offset + f.len {
            for fix_crc in [false, true] {
                // The CRC field itself (bytes 16..20) cannot be "fixed".
                if fix_crc && (at < f.offset + FRAME_HEADER) {
                    continue;
                }
                let mut d = data.clone();
                d[at] ^= 0x01;
                if fix_crc {
                    let payload = d[f.offset + FRAME_HEADER..f.offset + f.len].to_vec();
                    common::rewrite_payload(&mut d, f.offset, &payload);
                }
                let what = format!("byte {at} (frame at {}, crc fixed: {fix_crc})", f.offset);
                let dir = common::scratch_dir();
                let p = common::write_vault(dir.path(), "t.cv", &d, &ring);
                match Vault::open(&p, VaultKey::Raw(&common::key()), options()) {
                    Err(Error::Corrupt { .. }) => {}
                    Err(e) => panic!("{what}: {e}"),
                    Ok(v) => {
                        panic!("{what}: read-write open accepted damage before valid commits: {:?}", v.open_report())
                    }
                }
                let v = Vault::open(&p, VaultKey::Raw(&common::key()), ro.clone())
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                let rep = v.open_report().clone();
                assert_eq!(rep.checkpoint, None, "{what}: {rep:?}");
                assert!(rep.checkpoint_fallback.is_some(), "{what}: {rep:?}");
                assert!(rep.corrupt.is_some(), "{what}: {rep:?}");
                assert_eq!(v.store().read_state().catalog.docs.len(), 4, "{what}");
                tried += 1;
            }
        }
    }
    assert!(tried > 200, "{tried}");
}

/// A checkpoint of enough patients that their entries are sealed on a second thread
/// while the next ones are encoded (`PARALLEL_SEAL_MIN`, 256), one of them erased
/// before it (no entry): opening from it gives every document and query answer the
/// vault gave before, in the same order.
#[test]
fn a_checkpoint_of_many_patients_sealed_beside_the_encoding_opens_to_the_same_answers() {
    use chartvault::access::{Principal, Purpose, Role};
    let patients: Vec<String> = (0..300).map(|p| format!("MRN-{p:04}")).collect();
    let dir = common::scratch_dir();
    let path = dir.path().join("many.cv");
    let v = Vault::create(&path, VaultKey::Raw(&common::key()), options()).unwrap();
    let s = v.session(common::physician(patients.clone())).unwrap();
    let mut b = s.batch().unwrap();
    let mut ids = Vec::new();
    for (i, p) in patients.iter().enumerate() {
        for j in 0..2 {
            let doc = NewDocument::new(p, "Observation")
                .unwrap()
                .with("code", Value::from(Coding::new("loinc", ["4548-4", "2345-7"][(i + j) % 2], None)))
                .with("value", Value::Integer((i * 2 + j) as i64));
            ids.push(b.put(&doc).unwrap());
        }
    }
    b.commit().unwrap();
    let po = v.session(Principal::new("po", Role::privacy_officer(), "h", Purpose::Compliance)).unwrap();
    assert_eq!(po.erase_patient("MRN-0007", "patient request, right to erasure").unwrap(), 2);
    let answers = |s: &chartvault::Session| {
        let docs: Vec<_> = ids.iter().map(|id| s.get(id).ok()).collect();
        let codes = s.query_str("code = loinc:4548-4 order by value").unwrap().documents;
        (docs, codes, s.query_str("").unwrap().total)
    };
    let before = answers(&s);
    assert_eq!(before.0.iter().filter(|d| d.is_none()).count(), 2, "the erased patient's documents");
    assert_eq!(before.2, 598);
    let cp = v.checkpoint().unwrap();
    drop((s, po));
    v.close().unwrap();

    let v = Vault::open(&path, VaultKey::Raw(&common::key()), options()).unwrap();
    assert_eq!(v.open_report().checkpoint, Some(cp), "{:?}", v.open_report());
    assert!(v.open_report().checkpoint_fallback.is_none(), "{:?}", v.open_report());
    let s = v.session(common::physician(patients.clone())).unwrap();
    assert_eq!(answers(&s), before);
    drop(s);
    assert!(v.verify().unwrap().is_clean());
}

/// `VaultOptions::checkpoint_at_close`: closing the last handle writes a checkpoint
/// once that many versions, and an eighth of all, were added since the newest one
/// (counting the versions an open replayed), so the next open replays none; fewer,
/// another live handle, or 0 write none.
#[test]
fn close_writes_a_checkpoint_once_enough_versions_were_added() {
    let dir = common::scratch_dir();
    let path = dir.path().join("close.cv");
    let opts = |at_close| VaultOptions { checkpoint_at_close: at_close, ..options() };
    let open = |at_close| Vault::open(&path, VaultKey::Raw(&common::key()), opts(at_close)).unwrap();
    // The checkpoint an open started from, and the versions it replayed after it.
    let started_from = |v: &Vault| (v.open_report().checkpoint, v.open_report().replayed_versions);
    let v = Vault::create(&path, VaultKey::Raw(&common::key()), opts(100)).unwrap();
    put(&v, 0, 150);
    v.close().unwrap();

    let v = open(100);
    let first = v.open_report().checkpoint.expect("close wrote a checkpoint");
    assert_eq!(v.open_report().replayed_versions, 0);
    assert_eq!(count(&v), 150);
    // 50 more: below the threshold, no new checkpoint; the open replays them.
    put(&v, 150, 200);
    v.close().unwrap();
    let v = open(100);
    assert_eq!(started_from(&v), (Some(first), 50));
    // 60 more: with the 50 replayed, 110 since the checkpoint.
    put(&v, 200, 260);
    // A live session keeps the vault open: its handle's close writes nothing.
    let s = v.session(common::physician(PATIENTS)).unwrap();
    let v2 = v.clone();
    let checkpoint_frames = |v: &Vault| v.store().read_state().catalog.frames_of(FrameType::Checkpoint).len();
    let before = checkpoint_frames(&v2);
    v.close().unwrap();
    drop(s);
    assert_eq!(checkpoint_frames(&v2), before, "not while the vault stays open");
    v2.close().unwrap();
    let v = open(0);
    let second = v.open_report().checkpoint.expect("a checkpoint");
    assert!(second > first, "a newer checkpoint: {second} vs {first}");
    assert_eq!(v.open_report().replayed_versions, 0);
    assert_eq!(count(&v), 260);
    assert_eq!(code_count(&v), 130);
    // 0: never at close.
    put(&v, 260, 400);
    v.close().unwrap();
    let v = open(0);
    assert_eq!(started_from(&v), (Some(second), 140));
    assert_eq!(count(&v), 400);
    v.close().unwrap();
    // At least an eighth of all versions too: 140 of 400 are, 20 of 420 are not.
    let v = open(10);
    v.close().unwrap();
    let v = open(10);
    let third = v.open_report().checkpoint.expect("a checkpoint");
    assert!(third > second);
    put(&v, 400, 420);
    v.close().unwrap();
    let v = open(10);
    assert_eq!(started_from(&v), (Some(third), 20));
    assert_eq!(count(&v), 420);
    assert!(v.verify().unwrap().is_clean());
}
