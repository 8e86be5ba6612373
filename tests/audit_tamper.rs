//! Property: the audit trail is tamper-evident. An edited block of entries (even with
//! its frame checksum recomputed), a dropped block, two swapped blocks and a replayed
//! block are each reported by `audit_verify` at the tampered place, with the index of
//! the entry there, the untampered copy verifies intact, a read-write open refuses the
//! tampered file as corrupt, and only a role with the `audit` grant can read the trail
//! at all.
//!
//! The files are edited with an independent reading of docs/FORMAT.md: a frame is a
//! 24-byte header (magic C7 56, type, flags, payload length u32 LE, sequence u64 LE,
//! CRC-32/IEEE u32 LE over bytes 0..16 and the payload, 4 reserved bytes) followed by
//! the payload; an audit frame (type 4) payload starts with the index of its first
//! entry (u64 LE), then the sealed block of consecutive entries (24-byte nonce,
//! ciphertext, 16-byte tag). Entries committed together share one audit frame, so the
//! difference between the indexes of two successive audit frames is the number of
//! entries in the first.

use std::path::{Path, PathBuf};

use chartvault::access::{Principal, Purpose, Role};
use chartvault::*;

const HEADER_REGION: usize = 8192;
const AUDIT: u8 = 4;
const COMMIT: u8 = 3;

#[derive(Debug, Clone, Copy)]
struct Frame {
    off: usize,
    ty: u8,
    total: usize,
    /// Entry index, for audit frames.
    index: Option<u64>,
}

fn frames(b: &[u8]) -> Vec<Frame> {
    let mut out = Vec::new();
    let mut off = HEADER_REGION;
    while off + 24 <= b.len() && b[off..off + 2] == [0xC7, 0x56] {
        let len = u32::from_le_bytes(b[off + 4..off + 8].try_into().unwrap()) as usize;
        let ty = b[off + 2];
        let index = (ty == AUDIT).then(|| u64::from_le_bytes(b[off + 24..off + 32].try_into().unwrap()));
        out.push(Frame { off, ty, total: 24 + len, index });
        off += 24 + len;
    }
    assert!(b[off..].iter().all(|&x| x == 0), "the frame walk must reach the log end (only the zero reserve follows)");
    out
}

fn fix_crc(b: &mut [u8], f: &Frame) {
    let mut h = crc32fast::Hasher::new();
    h.update(&b[f.off..f.off + 16]);
    h.update(&b[f.off + 24..f.off + f.total]);
    b[f.off + 16..f.off + 20].copy_from_slice(&h.finalize().to_le_bytes());
}

fn po() -> Principal {
    Principal::new("po", Role::privacy_officer(), "general-hospital", Purpose::Compliance)
}

fn opts(read_only: bool) -> VaultOptions {
    VaultOptions { read_only, ..VaultOptions::default() }
}

/// Writes a vault with a known sequence of audited operations; returns its path.
fn write_vault(dir: &Path, key: &SecretKey) -> PathBuf {
    let path = dir.join("trail.cv");
    let v = Vault::create(&path, VaultKey::Raw(key), VaultOptions::default()).unwrap();
    let dr = v
        .session(
            Principal::new("dr", Role::physician(), "general-hospital", Purpose::Treat).with_care_team(["P1", "P2"]),
        )
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(dr.put(&NewDocument::new("P1", "Observation").unwrap().with("value", Value::Integer(i))).unwrap());
    }
    // Four reads: their entries wait and commit together, adjacent in the file.
    for id in &ids {
        dr.get(id).unwrap();
    }
    dr.get(&ids[0]).unwrap();
    v.flush_audit().unwrap();
    let nurse = v.session(Principal::new("nurse", Role::nurse(), "general-hospital", Purpose::Treat)).unwrap();
    assert!(nurse.get(&ids[1]).is_err()); // a denial
    for i in 0..3 {
        dr.put(&NewDocument::new("P2", "Condition").unwrap().with("code", Value::Integer(i))).unwrap();
    }
    dr.query_str("patient = \"P1\"").unwrap();
    dr.put(&NewDocument::new("P2", "Observation").unwrap().with("value", Value::Integer(9))).unwrap();
    drop((dr, nurse));
    v.close().unwrap();
    path
}

fn copy_case(src: &Path, dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let d = dir.join(name);
    std::fs::create_dir(&d).unwrap();
    let p = d.join("trail.cv");
    std::fs::write(&p, data).unwrap();
    std::fs::copy(chartvault::store::keyring_path(src), chartvault::store::keyring_path(&p)).unwrap();
    p
}

type Problems = Vec<(u64, Option<u64>, String)>;

/// Opens `path` read-only and runs the privacy officer's audit verification.
fn verify_read_only(path: &Path, key: &SecretKey) -> Problems {
    let v = Vault::open(path, VaultKey::Raw(key), opts(true)).unwrap();
    let s = v.session(po()).unwrap();
    let rep = s.audit_verify().unwrap();
    assert_eq!(rep.is_intact(), rep.problems.is_empty());
    rep.problems
}

/// The audit-level problems (those that name an entry index), as (offset, index, text).
fn entry_problems(p: &Problems) -> Vec<(u64, u64, &str)> {
    p.iter().filter_map(|(o, i, t)| i.map(|i| (*o, i, t.as_str()))).collect()
}

#[test]
fn tampering_with_the_trail_is_detected_where_it_happened() {
    let dir = tempfile::tempdir().unwrap();
    let key = SecretKey::random();
    let path = write_vault(dir.path(), &key);
    let orig = std::fs::read(&path).unwrap();
    let fs = frames(&orig);

    // Successive audit frames (each the block of entries of one commit).
    let audits: Vec<usize> = (0..fs.len()).filter(|&i| fs[i].ty == AUDIT).collect();
    assert_eq!(fs[audits[0]].index, Some(0));
    assert!(audits.windows(2).all(|w| fs[w[0]].index < fs[w[1]].index), "indexes must increase: {fs:?}");
    // The target: the block holding the four batched reads (at least four entries in one
    // frame), followed by another audit frame and at least two more commits, so damage
    // there is corruption, not a torn tail.
    let j = (1..audits.len() - 1)
        .find(|&j| {
            let (a, b) = (fs[audits[j]], fs[audits[j + 1]]);
            b.index.unwrap() - a.index.unwrap() >= 4
                && fs[audits[j + 1]..].iter().filter(|f| f.ty == COMMIT).count() >= 2
        })
        .expect("no block of four entries in the scenario");
    let (i, ib) = (audits[j], audits[j + 1]);
    let (a, b) = (fs[i], fs[ib]);
    let k = a.index.unwrap();
    let n = b.index.unwrap() - k; // entries in block a
    assert!(fs[i + 1..ib].iter().any(|f| f.ty == COMMIT), "one audit frame per commit");
    let next_commit = fs[i..].iter().find(|f| f.ty == COMMIT).unwrap().off as u64;
    let last = fs[*audits.last().unwrap()].index.unwrap();
    let total_entries = last + 1; // at least: the last block holds one or more
    assert!(total_entries > audits.len() as u64, "blocks hold several entries");

    // The untampered copy verifies intact, read-only and read-write.
    let p = copy_case(&path, dir.path(), "clean", &orig);
    assert_eq!(verify_read_only(&p, &key), Problems::new());
    {
        let v = Vault::open(&p, VaultKey::Raw(&key), opts(false)).unwrap();
        let s = v.session(po()).unwrap();
        let rep = s.audit_verify().unwrap();
        assert!(rep.is_intact(), "{rep:?}");
        assert!(rep.entries >= total_entries, "{} < {total_entries}", rep.entries);
        assert!(v.verify().unwrap().is_clean());
    }

    let rw_open = |p: &Path| Vault::open(p, VaultKey::Raw(&key), opts(false)).map(|_| ());

    // (a) One ciphertext byte of the block starting at entry k edited, frame CRC recomputed.
    let mut t = orig.clone();
    t[a.off + 24 + 8 + 24 + 3] ^= 0x01;
    fix_crc(&mut t, &a);
    assert!(chartvault::format::frame::parse(&t[a.off..]).is_ok(), "the frame checksum alone must not catch it");
    let p = copy_case(&path, dir.path(), "edited", &t);
    let probs = verify_read_only(&p, &key);
    assert!(!probs.is_empty());
    assert_eq!((probs[0].0, probs[0].1), (a.off as u64, Some(k)), "first problem must be the edited entry: {probs:?}");
    assert!(probs[0].2.contains("authentication"), "{probs:?}");
    // The block after it cannot chain to entries that failed authentication.
    assert_eq!(
        entry_problems(&probs).iter().map(|p| (p.0, p.1)).collect::<Vec<_>>(),
        [(a.off as u64, k), (b.off as u64, k + n)],
        "{probs:?}"
    );
    // The log's own chain catches it at the commit that covers the frame.
    assert!(probs.iter().any(|(o, i, _)| *o == next_commit && i.is_none()), "{probs:?}");
    match rw_open(&p) {
        Err(Error::Corrupt { offset, .. }) => assert_eq!(offset, next_commit),
        other => panic!("read-write open of an edited trail: {other:?}"),
    }

    // (b) The block of entries k..k+n dropped: the gap is reported at the entry that
    // follows it (now n entries further on, at b's new offset); the log's sequence
    // numbers break where the frame was.
    let mut t = orig.clone();
    t.drain(a.off..a.off + a.total);
    let p = copy_case(&path, dir.path(), "dropped", &t);
    let probs = verify_read_only(&p, &key);
    let b_now = (b.off - a.total) as u64;
    assert_eq!(entry_problems(&probs).iter().map(|p| (p.0, p.1)).collect::<Vec<_>>(), [(b_now, k + n)], "{probs:?}");
    let gap = probs.iter().find(|p| p.0 == b_now).unwrap();
    assert!(gap.2.contains(&format!("expected index {k}")), "{probs:?}");
    assert_eq!(probs[0].0, a.off as u64, "the log reports the break where the frame was: {probs:?}");
    match rw_open(&p) {
        Err(Error::Corrupt { offset, .. }) => assert_eq!(offset, a.off as u64),
        other => panic!("read-write open of a trail with a dropped entry: {other:?}"),
    }

    // (c) The blocks starting at entries k and k+n swapped (the frames between them stay
    // in place): both are reported, nothing else.
    let mut t = orig.clone();
    let mut swapped = orig[b.off..b.off + b.total].to_vec();
    swapped.extend_from_slice(&orig[a.off + a.total..b.off]);
    swapped.extend_from_slice(&orig[a.off..a.off + a.total]);
    t[a.off..b.off + b.total].copy_from_slice(&swapped);
    let p = copy_case(&path, dir.path(), "swapped", &t);
    let probs = verify_read_only(&p, &key);
    let second = (a.off + b.total + (b.off - a.off - a.total)) as u64;
    assert_eq!(
        entry_problems(&probs).iter().map(|p| (p.0, p.1)).collect::<Vec<_>>(),
        [(a.off as u64, k + n), (second, k)],
        "{probs:?}"
    );
    assert_eq!(probs[0].0, a.off as u64);
    match rw_open(&p) {
        Err(Error::Corrupt { offset, .. }) => assert_eq!(offset, a.off as u64),
        other => panic!("read-write open of a reordered trail: {other:?}"),
    }

    // (d) A copy of the block starting at entry k inserted right after it (a replay).
    let mut t = orig.clone();
    let dup = orig[a.off..a.off + a.total].to_vec();
    let at = a.off + a.total;
    t.splice(at..at, dup);
    let p = copy_case(&path, dir.path(), "replayed", &t);
    let probs = verify_read_only(&p, &key);
    assert_eq!(entry_problems(&probs).iter().map(|p| (p.0, p.1)).collect::<Vec<_>>(), [(at as u64, k)], "{probs:?}");
    assert!(probs[0].2.contains("repeated"), "{probs:?}");
    assert_eq!(probs[0].0, at as u64);
    match rw_open(&p) {
        Err(Error::Corrupt { offset, .. }) => assert_eq!(offset, at as u64),
        other => panic!("read-write open of a trail with a replayed entry: {other:?}"),
    }

    // The original was never touched.
    assert_eq!(std::fs::read(&path).unwrap(), orig);
}

#[test]
fn only_the_audit_grant_reads_the_trail() {
    let dir = tempfile::tempdir().unwrap();
    let v = Vault::create(&dir.path().join("acl.cv"), VaultKey::Raw(&SecretKey::random()), VaultOptions::default())
        .unwrap();
    let org = "general-hospital";
    let others = [
        Principal::new("dr", Role::physician(), org, Purpose::Treat).with_care_team(["P1"]),
        Principal::new("nurse", Role::nurse(), org, Purpose::Treat).with_care_team(["P1"]),
        Principal::new("coder", Role::him_coder(), org, Purpose::Operations),
        Principal::new("bill", Role::billing(), org, Purpose::Payment),
        Principal::new("res", Role::researcher(), org, Purpose::Research),
        Principal::new("p1", Role::patient(), org, Purpose::PatientRequest).as_patient("P1"),
        Principal::new("admin", Role::security_admin(), org, Purpose::SystemAdmin),
        // The right role for the wrong purpose.
        Principal::new("po.treat", Role::privacy_officer(), org, Purpose::Treat),
    ];
    for p in others {
        let user = p.user.clone();
        let s = v.session(p).unwrap();
        assert!(matches!(s.audit_entries(), Err(Error::Denied(_))), "{user}: audit_entries");
        assert!(matches!(s.audit_verify(), Err(Error::Denied(_))), "{user}: audit_verify");
        assert!(matches!(s.audit_export_fhir(), Err(Error::Denied(_))), "{user}: audit_export_fhir");
        assert!(matches!(s.access_report("P1"), Err(Error::Denied(_))), "{user}: access_report");
    }
    let po = v.session(po()).unwrap();
    let entries = po.audit_entries().unwrap();
    // Each refusal is itself audited.
    let denied: Vec<_> = entries
        .iter()
        .filter(|e| e.action == chartvault::audit::Action::AuditRead && e.outcome == chartvault::audit::Outcome::Denied)
        .collect();
    assert_eq!(denied.len(), 8 * 4);
    assert!(denied.iter().any(|e| e.user == "dr"));
    assert!(po.audit_verify().unwrap().is_intact());
}
