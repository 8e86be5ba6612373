//! Helpers shared by the engine's integration tests.
//!
//! Each test binary compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chartvault::access::{Principal, Purpose, Role};
use chartvault::format::frame::{self, FRAME_HEADER, FrameType};
use chartvault::format::header::HEADER_REGION;
use chartvault::store::keyring_path;
use chartvault::{Document, DocumentId, Field, KdfParams, SecretKey, VaultOptions};

/// The raw key every test vault is created with (fast to unlock).
pub fn key() -> SecretKey {
    SecretKey::from_bytes([0x5c; 32])
}

/// Options for a test vault: cheap KDF for any passphrase slot.
pub fn opts() -> VaultOptions {
    VaultOptions { kdf: KdfParams::INSECURE_FOR_TESTS, ..VaultOptions::default() }
}

/// The same, read-only, with (unaudited) clinical reads allowed for inspection.
pub fn opts_ro() -> VaultOptions {
    VaultOptions { read_only: true, read_only_reads: true, ..opts() }
}

/// A treating physician with a care relationship with `patients`: reads and writes
/// every label except substance-use.
pub fn physician<I: IntoIterator<Item = S>, S: Into<String>>(patients: I) -> Principal {
    Principal::new("dr", Role::physician(), "h", Purpose::Treat).with_care_team(patients)
}

/// A security administrator (key slots).
pub fn security_admin() -> Principal {
    Principal::new("sec", Role::security_admin(), "h", Purpose::SystemAdmin)
}

/// A scratch directory for tests that open thousands of vault copies: on tmpfs
/// (`/dev/shm`) where the platform has it, so fsync costs nothing; otherwise the
/// system temporary directory. Durability against a *process* kill does not depend on
/// fsync, and none of these tests simulates power loss.
pub fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(d) = tempfile::Builder::new().prefix("chartvault-test").tempdir_in(shm)
    {
        return d;
    }
    tempfile::tempdir().expect("temporary directory")
}

/// Copies a vault (data file and keyring) into `dir`, returning the new data path.
pub fn copy_vault(src: &Path, dir: &Path) -> PathBuf {
    let dst = dir.join(src.file_name().expect("vault file name"));
    std::fs::copy(src, &dst).expect("copy data file");
    std::fs::copy(keyring_path(src), keyring_path(&dst)).expect("copy keyring");
    dst
}

/// Writes `data` and `keyring` bytes as a vault in `dir`, returning the data path.
pub fn write_vault(dir: &Path, name: &str, data: &[u8], keyring: &[u8]) -> PathBuf {
    let dst = dir.join(name);
    std::fs::write(&dst, data).expect("write data file");
    std::fs::write(keyring_path(&dst), keyring).expect("write keyring");
    dst
}

/// What a stored document version must look like when read back in full.
#[derive(Debug, Clone)]
pub struct Expected {
    pub id: DocumentId,
    pub patient: String,
    pub kind: String,
    pub version: u32,
    pub author: String,
    pub fields: BTreeMap<String, Field>,
}

/// Strict equality of field maps: `==` plus equality of the `Debug` forms, which
/// also tells apart what `PartialEq` treats as equal (a decimal's scale, `6.8` vs
/// `6.80`; a datetime's UTC offset).
pub fn same_fields(a: &BTreeMap<String, Field>, b: &BTreeMap<String, Field>) -> bool {
    a == b && format!("{a:?}") == format!("{b:?}")
}

/// Panics unless `doc` is exactly `exp` with nothing redacted.
pub fn assert_doc(doc: &Document, exp: &Expected, ctx: &str) {
    assert_eq!(doc.id, exp.id, "{ctx}: document id");
    assert_eq!(doc.patient, exp.patient, "{ctx}: patient");
    assert_eq!(doc.kind.as_str(), exp.kind, "{ctx}: kind");
    assert_eq!(doc.version, exp.version, "{ctx}: version");
    assert_eq!(doc.author, exp.author, "{ctx}: author");
    assert!(doc.redacted.is_empty(), "{ctx}: unexpected redactions {:?}", doc.redacted);
    assert!(
        same_fields(&doc.fields, &exp.fields),
        "{ctx}: fields differ\n got: {:?}\nwant: {:?}",
        doc.fields,
        exp.fields
    );
}

/// Whether `doc` is exactly `exp` (for tests that must tell wrong data from an error
/// without panicking inside the engine's call).
pub fn doc_matches(doc: &Document, exp: &Expected) -> bool {
    doc.id == exp.id
        && doc.patient == exp.patient
        && doc.kind.as_str() == exp.kind
        && doc.version == exp.version
        && doc.author == exp.author
        && doc.redacted.is_empty()
        && same_fields(&doc.fields, &exp.fields)
}

/// One frame of the log as found by walking the data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameAt {
    pub offset: usize,
    pub ty: FrameType,
    pub seq: u64,
    /// Whole frame length (header + payload).
    pub len: usize,
}

/// Walks the frames of an intact data file from the end of the header region to
/// the log end (an all-zero frame header, or the end of the file); every byte after
/// the log end (the writer's zero reserve) must be zero.
pub fn frames(data: &[u8]) -> Vec<FrameAt> {
    let mut out = Vec::new();
    let mut pos = HEADER_REGION as usize;
    while pos < data.len() && data[pos..data.len().min(pos + FRAME_HEADER)].iter().any(|&b| b != 0) {
        let h = frame::parse(&data[pos..]).unwrap_or_else(|e| panic!("frame at {pos} does not parse: {e:?}"));
        out.push(FrameAt { offset: pos, ty: h.ty, seq: h.seq, len: h.total() });
        pos += h.total();
    }
    assert!(data[pos..].iter().all(|&b| b == 0), "only zeros may follow the frames (the reserve)");
    out
}

/// The log end of an intact data file: where its frames end (its zero reserve, if
/// any, follows).
pub fn log_end(data: &[u8]) -> usize {
    frames(data).last().map_or(HEADER_REGION as usize, |f| f.offset + f.len)
}

/// Replaces the payload of the frame at `offset` (same length), re-encoding its
/// header so the frame checksum is valid again: only cryptographic checks can then
/// catch the change.
pub fn rewrite_payload(data: &mut [u8], offset: usize, new_payload: &[u8]) {
    // The header only: the payload may already have been changed.
    let h = frame::parse_head(&data[offset..]).expect("frame header to rewrite parses");
    assert_eq!(h.len, new_payload.len(), "a rewrite keeps the payload length");
    let mut enc = Vec::with_capacity(FRAME_HEADER + new_payload.len());
    frame::encode(&mut enc, h.ty, h.seq, new_payload);
    data[offset..offset + enc.len()].copy_from_slice(&enc);
    assert!(frame::parse(&data[offset..]).is_ok(), "rewritten frame must pass its checksum");
}

/// Byte ranges (relative to the frame start) of the sealed parts of a record frame.
#[derive(Debug, Clone)]
pub struct RecordLayout {
    pub nonce: std::ops::Range<usize>,
    pub envelope: std::ops::Range<usize>,
    pub groups: Vec<std::ops::Range<usize>>,
}

fn le32(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes")) as usize
}

/// Parses the layout of the record frame at the start of `frame_bytes`
/// (see `src/store/record.rs`).
pub fn record_layout(frame_bytes: &[u8]) -> RecordLayout {
    let h = frame::parse(frame_bytes).expect("record frame parses");
    assert_eq!(h.ty, FrameType::Record);
    let p = FRAME_HEADER;
    let nonce = p + 20..p + 44;
    let mut pos = nonce.end;
    let elen = le32(frame_bytes, pos);
    pos += 4;
    let envelope = pos..pos + elen;
    pos += elen;
    let g = u16::from_le_bytes([frame_bytes[pos], frame_bytes[pos + 1]]) as usize;
    pos += 2;
    let mut groups = Vec::with_capacity(g);
    for _ in 0..g {
        let l = le32(frame_bytes, pos);
        pos += 4;
        groups.push(pos..pos + l);
        pos += l;
    }
    assert_eq!(pos, h.total(), "record layout covers the whole frame");
    RecordLayout { nonce, envelope, groups }
}

/// A small deterministic PRNG (xorshift64*), so tests need no extra dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Seeded from the clock; the seed is printed so a failure can be replayed.
    pub fn from_time(what: &str) -> Self {
        let seed = std::env::var("CHARTVAULT_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
        });
        eprintln!("{what}: seed {seed} (set CHARTVAULT_TEST_SEED to replay)");
        Rng::new(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// The default hospital policy plus a `records-loader` role (purpose HOPERAT) that may
/// read, create, update and query every label: used to build query fixtures and as
/// the full-access reference reader.
pub fn policy_with_loader() -> chartvault::access::Policy {
    use chartvault::access::{Grant, Operation, Policy};
    let mut p = Policy::hospital_default();
    p.grants.push(Grant {
        roles: vec![Role::new("records-loader").expect("valid role")],
        purposes: vec![Purpose::Operations],
        operations: vec![Operation::Read, Operation::Create, Operation::Update, Operation::Query],
        kinds: None,
        exclude_kinds: Vec::new(),
        labels: chartvault::Label::builtin(),
        care_team: false,
        own_records: false,
        deidentify: false,
    });
    p
}
