//! Bodies of the fuzz targets (invariant 7 of DESIGN.md: no panic on any input).
//!
//! Each `pub fn NAME(data: &[u8])` is the body of fuzz target `NAME`. It must never
//! panic except to report a bug: a panic here is a finding (either the engine
//! panicked, or a property checked with `assert!` does not hold).
//!
//! This file is compiled twice: as the `chartvault_fuzz` library used by the
//! libFuzzer binaries in `fuzz/fuzz_targets/`, and (by `#[path]`) inside the root
//! workspace crate `fuzzcheck/`, whose tests run every seed corpus and every past
//! crash on stable Rust. Keep it free of `libfuzzer-sys` and of nested module files.
//! Both crates name the C API crate `chartvault_ffi`.

#![allow(clippy::missing_panics_doc)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use chartvault::SecretKey;

/// Every target, by name (the directory names under `fuzz/corpus/`).
pub const TARGETS: &[&str] = &[
    "open_file",
    "frame_codec",
    "body_codec",
    "document_json",
    "query_language",
    "policy_file",
    "c_api_inputs",
    "ops_model",
];

/// Runs target `name` on `data`; false if there is no such target.
pub fn run(name: &str, data: &[u8]) -> bool {
    match name {
        "open_file" => open_file(data),
        "frame_codec" => frame_codec(data),
        "body_codec" => body_codec(data),
        "document_json" => document_json(data),
        "query_language" => query_language(data),
        "policy_file" => policy_file(data),
        "c_api_inputs" => c_api_inputs(data),
        "ops_model" => ops_model(data),
        _ => return false,
    }
    true
}

/// The raw key every fuzz vault is created and opened with.
pub const FUZZ_KEY_BYTES: [u8; 32] = [0x5c; 32];

/// [`FUZZ_KEY_BYTES`] as a key.
pub fn fuzz_key() -> SecretKey {
    SecretKey::from_bytes(FUZZ_KEY_BYTES)
}

/// A per-process scratch directory: on tmpfs (`/dev/shm`) where there is one, so the
/// fsync of every commit costs nothing.
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        if shm.is_dir()
            && let Ok(d) = tempfile::Builder::new().prefix("chartvault-fuzz").tempdir_in(shm)
        {
            return d;
        }
        tempfile::Builder::new().prefix("chartvault-fuzz").tempdir().expect("temporary directory")
    })
    .path()
}

/// A fresh path in the scratch directory.
fn fresh_path(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    scratch().join(format!("{tag}-{}", N.fetch_add(1, Ordering::Relaxed)))
}

fn remove_vault_files(path: &Path) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(chartvault::store::keyring_path(path));
}

// ---------------------------------------------------------------------------------
// frame_codec
// ---------------------------------------------------------------------------------

/// Frame header/CRC, commit payload, record payload, file header and keyring record
/// decoders on arbitrary bytes; whatever decodes must re-encode to the same bytes.
pub fn frame_codec(data: &[u8]) {
    use chartvault::format::frame::{self, Commit, FRAME_HEADER, MAX_PAYLOAD};
    use chartvault::store::record;

    // Frames: parse_head, check, parse. A frame that parses is canonical.
    if let Ok(h) = frame::parse_head(data) {
        assert!(h.len <= MAX_PAYLOAD);
        if frame::check(&h, data).is_ok() {
            let mut enc = Vec::new();
            frame::encode(&mut enc, h.ty, h.seq, &data[FRAME_HEADER..h.total()]);
            assert_eq!(enc, &data[..h.total()], "frame does not re-encode to its bytes");
            assert_eq!(frame::parse(data), Ok(h));
        }
    }
    let _ = frame::parse(data);
    if let Some(rest) = data.get(1..) {
        let _ = frame::parse(rest);
    }

    // Commit payloads, on the input and on what follows a frame header.
    for p in [data, data.get(FRAME_HEADER..).unwrap_or(&[])] {
        if let Some(c) = Commit::decode(p) {
            assert_eq!(&c.encode()[..], p, "commit does not re-encode to its bytes");
            assert_eq!(&c.mac_input()[..], &p[..64]);
        }
    }

    // Record payloads: parse only accepts exact lengths, so a parse re-encodes exactly.
    if let Some(r) = record::parse(data) {
        let groups: Vec<Vec<u8>> = r.groups.iter().map(|g| g.to_vec()).collect();
        let enc = record::encode(&r.id, r.version, &r.nonce, r.envelope, &groups);
        assert_eq!(enc, data, "record does not re-encode to its bytes");
    }

    header_codec(data);
    keyring_codec(data);
}

/// The file header: decode and choose on the raw input (padded), then again with
/// magic, version, sizes and checksum fixed up so the key-slot decoding is reached.
fn header_codec(data: &[u8]) {
    use chartvault::format::header::{FORMAT_VERSION, HEADER_SIZE, Header, MAGIC, Unlock};

    let mut a = vec![0u8; HEADER_SIZE];
    let n = data.len().min(HEADER_SIZE);
    a[..n].copy_from_slice(&data[..n]);
    let mut b = vec![0u8; HEADER_SIZE];
    if data.len() > HEADER_SIZE {
        let m = (data.len() - HEADER_SIZE).min(HEADER_SIZE);
        b[..m].copy_from_slice(&data[HEADER_SIZE..HEADER_SIZE + m]);
    }
    let _ = Header::decode(data);
    let _ = Header::decode(&a);
    let _ = Header::choose(&a, &b);
    let _ = Header::choose(&a, data);

    // Structure fix-up: a copy that passes the checksum, with the fuzzer's slots.
    a[..8].copy_from_slice(MAGIC);
    a[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    a[10..12].copy_from_slice(&(HEADER_SIZE as u16).to_le_bytes());
    a[64] = 8;
    fix_header_checksum(&mut a);
    let h = Header::decode(&a).expect("a header with a valid checksum decodes");
    let again = Header::decode(&h.encode()).expect("an encoded header decodes");
    assert_eq!(again, h, "header does not round-trip");
    let (chosen, damaged) = Header::choose(&a, &b).expect("one valid copy is enough");
    assert!(damaged == Header::decode(&b).is_err());
    assert!(chosen.generation >= h.generation);
    // Only raw-key slots are tried with a raw key: no Argon2 run on fuzzed parameters.
    let _ = h.unlock(&Unlock::RawKey(&fuzz_key()));
}

/// Recomputes the BLAKE3 checksum of one header copy.
pub fn fix_header_checksum(h: &mut [u8]) {
    use chartvault::format::header::HEADER_SIZE;
    if h.len() >= HEADER_SIZE {
        let sum = *blake3::hash(&h[..HEADER_SIZE - 32]).as_bytes();
        h[HEADER_SIZE - 32..HEADER_SIZE].copy_from_slice(&sum);
    }
}

/// Keyring records: the raw input as a record, and the input sealed as a record's
/// plaintext under a known key (so the decoder of the plaintext is reached).
fn keyring_codec(data: &[u8]) {
    use chartvault::crypto::aead;
    use chartvault::format::keyring::{self, MAX_PATIENT_ID, RECORD_SIZE, Record};

    let key = fuzz_key();
    let vid = [7u8; 16];
    let _ = keyring::check_header(data, &vid);
    let mut rec = vec![0u8; RECORD_SIZE];
    let n = data.len().min(RECORD_SIZE);
    rec[..n].copy_from_slice(&data[..n]);
    let index = data.first().copied().map_or(0, u32::from);
    let _ = keyring::decode_record(&key, &vid, index, data);
    let _ = keyring::decode_record(&key, &vid, index, &rec);

    let plain_len = RECORD_SIZE - 8 - aead::SEAL_OVERHEAD;
    let mut plain = vec![0u8; plain_len];
    let n = data.len().min(plain_len);
    plain[..n].copy_from_slice(&data[..n]);
    let mut sealed = vec![keyring::STATE_LIVE, 0, 0, 0, 0, 0, 0, 0];
    let aad = aead::aad("chartvault keyring record v1", &[&vid, &index.to_le_bytes()]);
    aead::seal(&key, &aad, &plain, &mut sealed);
    match keyring::decode_record(&key, &vid, index, &sealed) {
        Some(Record::Live { patient, key: k }) => {
            assert!(patient.len() <= MAX_PATIENT_ID);
            // Whatever decodes re-encodes to a record that decodes the same.
            let enc = keyring::encode_record(&key, &vid, index, &patient, &k);
            match keyring::decode_record(&key, &vid, index, &enc) {
                Some(Record::Live { patient: p2, key: k2 }) => assert!(p2 == patient && k2 == k),
                _ => panic!("re-encoded keyring record does not decode"),
            }
        }
        Some(Record::Destroyed) => panic!("a live record decoded as destroyed"),
        None => {}
    }
}

// ---------------------------------------------------------------------------------
// body_codec
// ---------------------------------------------------------------------------------

/// The codecs of what is stored inside the AEAD, on arbitrary bytes: the envelope
/// (hand-written, with static dictionaries), label-group bodies (values and label
/// positions, postcard), and the postcard bodies of index terms and JSON strings.
/// Whatever decodes must survive an encode/decode round trip.
///
/// Group bodies are decoded against the built-in label list
/// ([`chartvault::Label::builtin`]), so label positions 0 to 10 are valid.
pub fn body_codec(data: &[u8]) {
    use chartvault::format::body::{self, IndexTerm};
    use chartvault::format::envelope;

    fn round_trip<T>(data: &[u8])
    where
        T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        if let Ok(v) = body::decode::<T>(data, "fuzz", 0) {
            let enc = body::encode(&v);
            let back: T = body::decode(&enc, "fuzz", 0).expect("re-encoded body decodes");
            assert_eq!(back, v, "body does not round-trip");
        }
    }
    // Envelopes: a literal that is in a dictionary re-encodes as its code, so compare
    // values, not bytes.
    if let Ok(env) = envelope::decode(data, 0) {
        let back = envelope::decode(&envelope::encode(&env), 0).expect("re-encoded envelope decodes");
        assert_eq!(back, env, "envelope does not round-trip");
    }
    let labels = chartvault::Label::builtin();
    // The group-body reader is hand-written; postcard's own typed reading of the same
    // bytes is its reference: both refuse, or both give exactly the same fields.
    let fast = body::decode_group(data, &labels, 0).ok();
    assert_eq!(
        fast.as_deref().map(exact_fields),
        group_by_postcard(data, &labels).as_deref().map(exact_fields),
        "the group-body reader and postcard disagree"
    );
    if let Ok(g) = body::decode_group(data, &labels, 0) {
        let refs: Vec<_> = g.iter().collect();
        let enc = body::encode_group(&refs, &labels).expect("decoded labels are in the group");
        assert_eq!(body::decode_group(&enc, &labels, 0).expect("re-encoded group decodes"), g);
        // Displaying decoded values must not panic either (dates and times out of range).
        for f in &g {
            let _ = chartvault::model::json::value_to_json(&f.value);
            let _ = format!("{:?}", f.value);
        }
    }
    round_trip::<Vec<IndexTerm>>(data);
    // Policy and patient-rules frames hold a JSON string in the body codec.
    round_trip::<String>(data);
}

/// A group body as postcard reads it (`Vec<(Value, Vec<u32>)>` after the version byte,
/// every byte used, positions mapped to `labels`), or `None` where postcard refuses it.
fn group_by_postcard(data: &[u8], labels: &[chartvault::Label]) -> Option<Vec<chartvault::Field>> {
    let (&version, rest) = data.split_first()?;
    if version != chartvault::format::body::GROUP_BODY_VERSION {
        return None;
    }
    let (fields, rest): (Vec<(chartvault::Value, Vec<u32>)>, &[u8]) = postcard::take_from_bytes(rest).ok()?;
    if !rest.is_empty() {
        return None;
    }
    fields
        .into_iter()
        .map(|(value, own)| {
            let labels = own.iter().map(|i| labels.get(*i as usize).cloned()).collect::<Option<Vec<_>>>()?;
            Some(chartvault::Field { value, labels })
        })
        .collect()
}

/// Fields compared exactly: each value as postcard bytes (a datetime's `==` ignores its
/// offset), and the labels.
fn exact_fields(fields: &[chartvault::Field]) -> Vec<(Vec<u8>, Vec<chartvault::Label>)> {
    fields.iter().map(|f| (postcard::to_allocvec(&f.value).unwrap_or_default(), f.labels.clone())).collect()
}

// ---------------------------------------------------------------------------------
// document_json
// ---------------------------------------------------------------------------------

/// A stand-in attachment reference (the engine makes real ones when it stores bytes).
fn fake_attachment(content_type: &str, bytes: &[u8]) -> chartvault::AttachmentRef {
    let (id, hash, key) = ([1u8; 16], *blake3::hash(bytes).as_bytes(), [0u8; 32]);
    let v = serde_json::json!({
        "id": id, "content_type": content_type, "size": bytes.len() as u64,
        "hash": hash, "chunks": 1u32, "first_offset": 0u64, "key": key,
    });
    serde_json::from_value(v).expect("attachment reference")
}

/// Document JSON: parse with an uploader that keeps inline attachments; a document
/// that parses is shown as JSON, and (without attachments) that JSON parses back to
/// the same document.
pub fn document_json(data: &[u8]) {
    use chartvault::model::json::{self, AttachmentSource};
    use chartvault::{DateTime, Document, DocumentId};

    let Ok(s) = std::str::from_utf8(data) else { return };
    let mut stored: Vec<(String, Vec<u8>)> = Vec::new();
    let parsed = {
        let mut up = |ct: &str, src: AttachmentSource| match src {
            AttachmentSource::Inline(b) => {
                let r = fake_attachment(ct, &b);
                stored.push((ct.to_string(), b));
                Ok(r)
            }
            AttachmentSource::File(_) => Err(chartvault::Error::InvalidArgument("no files here".into())),
        };
        json::parse_document_str(s, &mut up)
    };
    let Ok(doc) = parsed else { return };
    let d = Document {
        id: DocumentId([3; 16]),
        patient: doc.patient.clone(),
        kind: doc.kind.clone(),
        version: 1,
        created: DateTime::from_unix_micros(1_700_000_000_000_000),
        updated: DateTime::from_unix_micros(1_700_000_000_000_000),
        author: "fuzz".into(),
        fields: doc.fields.clone(),
        redacted: Default::default(),
    };
    let out = json::document_to_json(&d);
    let text = out.to_string();
    if stored.is_empty() {
        let back = json::parse_document_str(&text, &mut json::no_attachments)
            .unwrap_or_else(|e| panic!("document_to_json output does not parse back: {e}\n{text}"));
        assert_eq!(back, doc, "document does not round-trip through JSON\n{text}");
    }
}

// ---------------------------------------------------------------------------------
// query_language
// ---------------------------------------------------------------------------------

/// The query language: parse arbitrary UTF-8; a query that parses prints to text that
/// parses again to an equal query.
pub fn query_language(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let Ok(q) = chartvault::query::parse(s) else { return };
    let shown = q.to_string();
    let again = chartvault::query::parse(&shown)
        .unwrap_or_else(|e| panic!("query {s:?} prints as {shown:?}, which does not parse: {e}"));
    assert_eq!(again, q, "query {s:?} prints as {shown:?}, which parses to a different query");
}

// ---------------------------------------------------------------------------------
// policy_file
// ---------------------------------------------------------------------------------

/// Policy JSON and patient-rules JSON: parse; what parses round-trips.
pub fn policy_file(data: &[u8]) {
    use chartvault::access::{PatientRules, Policy};

    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(p) = Policy::from_json(s) {
        let j = p.to_json();
        let back = Policy::from_json(&j).unwrap_or_else(|e| panic!("policy JSON does not parse back: {e}\n{j}"));
        assert_eq!(back, p);
        let _ = p.labels();
    }
    if let Ok(r) = serde_json::from_str::<PatientRules>(s) {
        let j = serde_json::to_string(&r).expect("rules serialize");
        let back: PatientRules =
            serde_json::from_str(&j).unwrap_or_else(|e| panic!("rules JSON does not parse back: {e}\n{j}"));
        assert_eq!(back, r);
    }
}

// ---------------------------------------------------------------------------------
// open_file
// ---------------------------------------------------------------------------------

/// Input layout of `open_file`.
///
/// ```text
/// byte 0: flags. bit 0: fix up checksums (both header copies' BLAKE3, every
///         frame CRC it can walk, the keyring header's BLAKE3) so that mutations
///         reach past them; bit 1: the input carries a keyring
/// if bit 1: u32 LE keyring length k, then k keyring bytes (clamped), then the data file
/// else:     the data file; the keyring is an empty one for the data file's vault id
/// ```
pub struct OpenFileInput {
    /// The data file's bytes.
    pub data: Vec<u8>,
    /// The keyring file's bytes.
    pub keyring: Vec<u8>,
}

impl OpenFileInput {
    /// Splits and fixes up a fuzz input.
    pub fn from_fuzz(input: &[u8]) -> Self {
        use chartvault::format::keyring;
        let Some((&flags, rest)) = input.split_first() else {
            return OpenFileInput { data: Vec::new(), keyring: Vec::new() };
        };
        let (mut data, mut ring) = if flags & 2 != 0 && rest.len() >= 4 {
            let k = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let rest = &rest[4..];
            let k = k.min(rest.len());
            (rest[k..].to_vec(), rest[..k].to_vec())
        } else {
            let mut vid = [0u8; 16];
            if let Some(v) = rest.get(16..32) {
                vid.copy_from_slice(v);
            }
            (rest.to_vec(), keyring::encode_header(&vid).to_vec())
        };
        if flags & 1 != 0 {
            fix_up_vault(&mut data, &mut ring);
        }
        OpenFileInput { data, keyring: ring }
    }

    /// The fuzz input that reproduces these files exactly (flags 2: no fix-ups).
    pub fn to_fuzz(&self) -> Vec<u8> {
        let mut out = vec![2u8];
        out.extend_from_slice(&(self.keyring.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.keyring);
        out.extend_from_slice(&self.data);
        out
    }
}

/// Recomputes the checksums an attacker can recompute without the key: the header
/// copies' BLAKE3, the CRC of every frame that can be walked, the keyring header's BLAKE3.
pub fn fix_up_vault(data: &mut [u8], ring: &mut [u8]) {
    use chartvault::format::frame::{self, FRAME_HEADER};
    use chartvault::format::header::{HEADER_REGION, HEADER_SIZE};

    for copy in [0, HEADER_SIZE] {
        if data.len() >= copy + HEADER_SIZE {
            fix_header_checksum(&mut data[copy..copy + HEADER_SIZE]);
        }
    }
    let mut pos = HEADER_REGION as usize;
    while pos < data.len() {
        let Ok(h) = frame::parse_head(&data[pos..]) else { break };
        if data.len() - pos < h.total() {
            break;
        }
        let mut c = crc32fast::Hasher::new();
        c.update(&data[pos..pos + 16]);
        c.update(&data[pos + FRAME_HEADER..pos + h.total()]);
        data[pos + 16..pos + 20].copy_from_slice(&c.finalize().to_le_bytes());
        pos += h.total();
    }
    if ring.len() >= 64 {
        let sum = *blake3::hash(&ring[..32]).as_bytes();
        ring[32..64].copy_from_slice(&sum);
    }
}

/// Writes the files, opens the vault read-write and read-only with the fuzz key, and
/// exercises whatever opened.
pub fn open_file(input: &[u8]) {
    open_file_outcome(input);
}

/// [`open_file`], telling whether the read-write and the read-only open succeeded.
pub fn open_file_outcome(input: &[u8]) -> [bool; 2] {
    let files = OpenFileInput::from_fuzz(input);
    let path = fresh_path("open");
    let mut opened = [false; 2];
    for (i, read_only) in [false, true].into_iter().enumerate() {
        if std::fs::write(&path, &files.data).is_err()
            || std::fs::write(chartvault::store::keyring_path(&path), &files.keyring).is_err()
        {
            break;
        }
        opened[i] = open_and_exercise(&path, read_only);
    }
    remove_vault_files(&path);
    opened
}

/// Opens the vault at `path` with the fuzz key; if it opens, reads every document
/// through a physician session (and the audit trail through a privacy officer), runs
/// a query and `verify`. Returns whether it opened.
pub fn open_and_exercise(path: &Path, read_only: bool) -> bool {
    use chartvault::access::{Principal, Purpose, Role};
    use chartvault::{Vault, VaultKey, VaultOptions};

    let key = fuzz_key();
    // Read-only handles refuse clinical reads unless asked (they cannot audit them);
    // ask, so the read path also runs on files only a read-only open accepts.
    let opts = VaultOptions { read_only, read_only_reads: read_only, ..VaultOptions::default() };
    let Ok(v) = Vault::open(path, VaultKey::Raw(&key), opts) else { return false };
    let _ = v.open_report();
    let (ids, patients): (Vec<_>, Vec<String>) = {
        let st = v.store().read_state();
        (st.catalog.docs.keys().copied().collect(), st.keyring.patients().map(|(p, _)| p.to_string()).collect())
    };
    if let Ok(dr) =
        v.session(Principal::new("fuzz-dr", Role::physician(), "fuzz", Purpose::Treat).with_care_team(patients.clone()))
    {
        for id in &ids {
            if let Ok(d) = dr.get(id) {
                let _ = chartvault::model::json::document_to_json(&d);
            }
            let _ = dr.history(id);
        }
        for p in &patients {
            let _ = dr.chart(p);
        }
        let _ = dr.query_str("limit 1000");
    }
    if let Ok(po) = v.session(Principal::new("fuzz-po", Role::privacy_officer(), "fuzz", Purpose::Compliance)) {
        let _ = po.audit_verify();
        let _ = po.audit_entries();
        for p in patients.iter().take(4) {
            let _ = po.accounting_of_disclosures(p);
        }
    }
    let _ = v.verify();
    let _ = v.stats();
    let _ = v.close();
    true
}

// ---------------------------------------------------------------------------------
// c_api_inputs
// ---------------------------------------------------------------------------------

/// C API: see the `c_api` module.
pub fn c_api_inputs(data: &[u8]) {
    c_api::run(data);
}

// ---------------------------------------------------------------------------------
// ops_model
// ---------------------------------------------------------------------------------

/// Operation sequences checked against a model: see the `ops` module.
pub fn ops_model(data: &[u8]) {
    ops::run(data);
}

pub mod c_api {
    //! The C API with arbitrary inputs: every `cv_*` function called from Rust with
    //! NUL-terminated strings, JSON and queries built from the input, NULL pointers and
    //! bogus, closed or foreign handles, against a vault created once per process
    //! (recreated when an input changed its policy, key slots or handles, and every
    //! 2,000 inputs to bound its size). Every call must return a status: never
    //! `CV_ERR_PANIC` (nor abort), and outputs are left untouched on failure.

    use std::ffi::{CStr, CString, c_char};
    use std::path::PathBuf;
    use std::sync::Mutex;

    use arbitrary::Unstructured;
    use chartvault_ffi as cv;
    use cv::cv_status;

    const SENTINEL_HANDLE: u64 = 0xDEAD_BEEF_DEAD_BEEF;

    struct Fixture {
        path: PathBuf,
        path_c: CString,
        vault: u64,
        /// physician (care team P1, P2), nurse (P1), billing, researcher, security admin, privacy officer.
        sessions: Vec<u64>,
        closed_vault: u64,
        closed_session: u64,
        docs: Vec<CString>,
        /// Strings the library returned and that were freed (a second free must be refused).
        freed: Vec<usize>,
        inputs: u64,
    }

    static FIXTURE: Mutex<Option<Fixture>> = Mutex::new(None);

    fn ok(s: cv_status) -> bool {
        assert_ne!(s, cv_status::CV_ERR_PANIC, "a C API call panicked: {}", last_message());
        s == cv_status::CV_OK
    }

    fn last_message() -> String {
        let mut buf = vec![0 as c_char; 4096];
        let mut n = 0usize;
        // SAFETY: buf has buf.len() writable bytes; n is a valid usize.
        let s = unsafe { cv::cv_last_error_message(buf.as_mut_ptr(), buf.len(), &mut n) };
        if s != cv_status::CV_OK {
            return format!("<message of {n} bytes not shown: {s:?}>");
        }
        // SAFETY: on success the buffer holds a NUL-terminated string.
        unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned()
    }

    fn c(s: &str) -> CString {
        CString::new(s).expect("no NUL")
    }

    /// Takes a string the library returned: checks it, frees it, remembers the pointer.
    fn take_output(fx: &mut Fixture, p: *mut c_char) -> String {
        assert!(!p.is_null(), "CV_OK without an output string");
        // SAFETY: the library returned a NUL-terminated string.
        let s = unsafe { CStr::from_ptr(p) }.to_str().expect("library output is UTF-8").to_string();
        assert!(ok(cv::cv_string_free(p)), "freeing a returned string failed");
        fx.freed.push(p as usize);
        if fx.freed.len() > 64 {
            fx.freed.remove(0);
        }
        s
    }

    fn setup(tag: u64) -> Fixture {
        let path = super::fresh_path(&format!("capi{tag}"));
        let path_c = c(path.to_str().expect("UTF-8 scratch path"));
        let key = super::FUZZ_KEY_BYTES;
        let mut vault = 0u64;
        // SAFETY: valid NUL-terminated path, 32-byte key, valid out pointer.
        let s = unsafe { cv::cv_vault_create_with_key(path_c.as_ptr(), key.as_ptr(), &mut vault) };
        assert!(ok(s), "creating the fixture vault failed: {}", last_message());
        let principals = [
            r#"{"user":"dr","roles":["physician"],"organization":"h","purpose":"TREAT","care_team":["P1","P2"]}"#,
            r#"{"user":"rn","roles":["nurse"],"organization":"h","purpose":"TREAT","care_team":["P1"]}"#,
            r#"{"user":"bill","roles":["billing"],"organization":"h","purpose":"HPAYMT"}"#,
            r#"{"user":"res","roles":["researcher"],"organization":"u","purpose":"HRESCH"}"#,
            r#"{"user":"sec","roles":["security-admin"],"organization":"h","purpose":"HSYSADMIN"}"#,
            r#"{"user":"po","roles":["privacy-officer"],"organization":"h","purpose":"HCOMPL"}"#,
        ];
        let mut sessions = Vec::new();
        for p in principals {
            let mut h = 0u64;
            let pc = c(p);
            // SAFETY: valid handle, string and out pointer.
            assert!(ok(unsafe { cv::cv_session_open(vault, pc.as_ptr(), &mut h) }), "session: {}", last_message());
            sessions.push(h);
        }
        // A closed vault and a closed session, to be used after close.
        let mut closed_vault = 0u64;
        // SAFETY: as above.
        assert!(ok(unsafe { cv::cv_vault_open_with_key(path_c.as_ptr(), key.as_ptr(), 1, &mut closed_vault) }));
        let mut closed_session = 0u64;
        let pc = c(principals[0]);
        // SAFETY: as above.
        assert!(ok(unsafe { cv::cv_session_open(closed_vault, pc.as_ptr(), &mut closed_session) }));
        assert!(ok(cv::cv_session_close(closed_session)));
        assert!(ok(cv::cv_vault_close(closed_vault)));
        let mut fx = Fixture {
            path,
            path_c,
            vault,
            sessions,
            closed_vault,
            closed_session,
            docs: Vec::new(),
            freed: Vec::new(),
            inputs: 0,
        };
        for d in [
            r#"{"patient":"P1","kind":"Observation","fields":{"status":"final","code":{"code":{"system":"loinc","code":"4548-4"}},"value":6.8,"note":{"text":"n","labels":["mental-health"]}}}"#,
            r#"{"patient":"P2","kind":"ClinicalNote","fields":{"date":{"date":"2024-03-01"},"text":"t"}}"#,
            r#"{"patient":"P1","kind":"DocumentReference","fields":{"status":"current","content":{"attachment":{"content_type":"text/plain","base64":"aGVsbG8="}}}}"#,
        ] {
            let dc = c(d);
            let mut out: *mut c_char = std::ptr::null_mut();
            // SAFETY: valid handle, string and out pointer.
            assert!(ok(unsafe { cv::cv_put(fx.sessions[0], dc.as_ptr(), &mut out) }), "put: {}", last_message());
            let id = take_output(&mut fx, out);
            fx.docs.push(c(&id));
        }
        fx
    }

    fn teardown(fx: Fixture) {
        for s in &fx.sessions {
            let _ = cv::cv_session_close(*s);
        }
        let _ = cv::cv_vault_close(fx.vault);
        super::remove_vault_files(&fx.path);
    }

    /// Document JSON templates; `@` is replaced by a JSON string made from the input.
    const DOC_TEMPLATES: &[&str] = &[
        r#"{"patient":"P1","kind":"Observation","fields":{"status":@}}"#,
        r#"{"patient":@,"kind":"Observation","fields":{"value":{"decimal":"1.5"}}}"#,
        r#"{"patient":"P2","kind":@,"fields":{}}"#,
        r#"{"patient":"P1","kind":"Observation","fields":{"x":{"text":"v","labels":[@]}}}"#,
        r#"{"patient":"P1","kind":"Observation","fields":{"d":{"datetime":@}}}"#,
        r#"{"patient":"P1","kind":"DocumentReference","fields":{"a":{"attachment":{"content_type":"x/y","base64":@}}}}"#,
        r#"{"patient":"P1","kind":"DocumentReference","fields":{"a":{"attachment":{"file":@}}}}"#,
        r#"{"patient":"P2","kind":"Claim","fields":{"code":{"code":{"system":"cpt","code":@}}}}"#,
        r#"{"patient":"P1","kind":"Observation","fields":{"g":{"group":{@:1}}}}"#,
    ];

    const PRINCIPAL_TEMPLATES: &[&str] = &[
        r#"{"user":@,"roles":["physician"],"purpose":"TREAT","care_team":["P1"]}"#,
        r#"{"user":"u","roles":[@],"purpose":"TREAT"}"#,
        r#"{"user":"u","roles":["nurse"],"purpose":@}"#,
        r#"{"user":"u","roles":["patient"],"purpose":"PATRQT","patient_id":@}"#,
        r#"{"user":"u","roles":["physician"],"organization":@,"purpose":"ETREAT"}"#,
    ];

    const QUERY_TEMPLATES: &[&str] =
        &["kind = @", "patient = @", "status = @ order by value desc", "code = @", "value >= @ limit 2", "@"];

    const POLICY_TEMPLATES: &[&str] = &[
        r#"{"name":@,"grants":[{"roles":["security-admin"],"purposes":["HSYSADMIN"],"operations":["administer"]}]}"#,
        r#"{"name":"p","session_idle_secs":@,"grants":[]}"#,
        r#"{"name":"p","grants":[{"roles":[@],"purposes":["TREAT"],"operations":["read"],"labels":["normal"]}]}"#,
    ];

    fn fuzz_str(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
        let n = u.int_in_range(0..=64)?;
        let b = u.bytes(n.min(u.len()))?;
        Ok(String::from_utf8_lossy(b).into_owned())
    }

    /// A C string from the input: raw bytes (maybe not UTF-8), or a template filled in.
    fn text(u: &mut Unstructured<'_>, templates: &[&str]) -> arbitrary::Result<Option<CString>> {
        let mode: u8 = u.arbitrary()?;
        let bytes: Vec<u8> = match mode % 8 {
            0 => return Ok(None),
            1 | 2 => {
                let n = u.int_in_range(0..=256)?;
                u.bytes(n.min(u.len()))?.to_vec()
            }
            _ => {
                let t = templates[usize::from(mode) % templates.len()];
                let s = fuzz_str(u)?;
                // A JSON string, or the raw text spliced in (may break the JSON on purpose).
                let filler = if mode & 0x80 == 0 { serde_json::to_string(&s).unwrap_or_default() } else { s };
                t.replace('@', &filler).into_bytes()
            }
        };
        Ok(Some(CString::new(bytes.into_iter().filter(|b| *b != 0).collect::<Vec<u8>>()).expect("NULs removed")))
    }

    fn ptr(s: &Option<CString>) -> *const c_char {
        s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr())
    }

    fn session(u: &mut Unstructured<'_>, fx: &Fixture) -> arbitrary::Result<u64> {
        let sel: u8 = u.arbitrary()?;
        Ok(match sel % 16 {
            0 => 0,
            1 => u.arbitrary()?,
            2 => fx.closed_session,
            3 => fx.vault, // a vault handle where a session is expected
            n => fx.sessions[usize::from(n) % fx.sessions.len()],
        })
    }

    fn vault(u: &mut Unstructured<'_>, fx: &Fixture) -> arbitrary::Result<u64> {
        let sel: u8 = u.arbitrary()?;
        Ok(match sel % 6 {
            0 => 0,
            1 => u.arbitrary()?,
            2 => fx.closed_vault,
            3 => fx.sessions[0], // a session handle where a vault is expected
            _ => fx.vault,
        })
    }

    fn doc_id(u: &mut Unstructured<'_>, fx: &Fixture) -> arbitrary::Result<Option<CString>> {
        let sel: u8 = u.arbitrary()?;
        if sel < 160 && !fx.docs.is_empty() {
            return Ok(Some(fx.docs[usize::from(sel) % fx.docs.len()].clone()));
        }
        text(u, &["@", "0123456789abcdef0123456789abcde@"])
    }

    /// A path confined to the scratch directory (never anywhere else on the machine),
    /// or the fixture's own vault.
    fn path(u: &mut Unstructured<'_>, fx: &Fixture) -> arbitrary::Result<Option<CString>> {
        let sel: u8 = u.arbitrary()?;
        Ok(match sel % 5 {
            0 => None,
            1 | 2 => Some(fx.path_c.clone()),
            _ => {
                let name: String = fuzz_str(u)?
                    .chars()
                    .filter(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_'))
                    .take(32)
                    .collect();
                let p = super::scratch().join(format!("capi-new-{name}"));
                CString::new(p.to_string_lossy().into_owned()).ok()
            }
        })
    }

    fn key_bytes(u: &mut Unstructured<'_>) -> arbitrary::Result<Option<[u8; 32]>> {
        let sel: u8 = u.arbitrary()?;
        Ok(match sel % 4 {
            0 => None,
            1 => Some(super::FUZZ_KEY_BYTES),
            _ => Some(u.arbitrary()?),
        })
    }

    /// A KDF profile: never the expensive real ones (64 or 19 MiB Argon2 per call).
    fn kdf(u: &mut Unstructured<'_>) -> arbitrary::Result<u32> {
        Ok(if u.arbitrary::<bool>()? { cv::CV_KDF_INSECURE_TESTING } else { u.int_in_range(3..=u32::MAX)? })
    }

    /// An output pointer: usually valid, sometimes NULL.
    fn want_out(u: &mut Unstructured<'_>) -> arbitrary::Result<bool> {
        Ok(u.arbitrary::<u8>()? % 8 != 0)
    }

    /// Calls a function writing a string: checks it is written only on success.
    fn string_call(fx: &mut Fixture, valid: bool, f: impl FnOnce(*mut *mut c_char) -> cv_status) -> Option<String> {
        let sentinel = 0x10 as *mut c_char;
        let mut out = sentinel;
        let s = f(if valid { &mut out } else { std::ptr::null_mut() });
        if !valid {
            assert_ne!(s, cv_status::CV_OK, "a NULL output pointer was accepted");
            return None;
        }
        if ok(s) {
            Some(take_output(fx, out))
        } else {
            assert_eq!(out, sentinel, "an output was written on failure ({s:?})");
            None
        }
    }

    fn scalar_call<T: Copy + PartialEq + std::fmt::Debug>(
        valid: bool,
        sentinel: T,
        f: impl FnOnce(*mut T) -> cv_status,
    ) -> Option<T> {
        let mut out = sentinel;
        let s = f(if valid { &mut out } else { std::ptr::null_mut() });
        if !valid {
            assert_ne!(s, cv_status::CV_OK, "a NULL output pointer was accepted");
            return None;
        }
        if ok(s) {
            Some(out)
        } else {
            assert_eq!(out, sentinel, "an output was written on failure ({s:?})");
            None
        }
    }

    /// Runs one input: up to 24 calls chosen by it.
    pub fn run(data: &[u8]) {
        let mut guard = FIXTURE.lock().unwrap_or_else(|e| e.into_inner());
        if guard.as_ref().is_none_or(|f| f.inputs >= 2000) {
            if let Some(old) = guard.take() {
                teardown(old);
            }
            use std::sync::atomic::{AtomicU64, Ordering};
            static GEN: AtomicU64 = AtomicU64::new(0);
            *guard = Some(setup(GEN.fetch_add(1, Ordering::Relaxed)));
        }
        let fx = guard.as_mut().expect("fixture");
        fx.inputs += 1;
        let mut u = Unstructured::new(data);
        let mut dirty = false;
        let mut transient_vaults = Vec::new();
        let mut transient_sessions = Vec::new();
        for _ in 0..24 {
            if u.is_empty() {
                break;
            }
            match step(&mut u, fx, &mut dirty, &mut transient_vaults, &mut transient_sessions) {
                Ok(()) => {}
                Err(_) => break,
            }
        }
        for s in transient_sessions {
            let _ = cv::cv_session_close(s);
        }
        for v in transient_vaults {
            let _ = cv::cv_vault_close(v);
        }
        if dirty && let Some(old) = guard.take() {
            teardown(old);
        }
    }

    fn step(
        u: &mut Unstructured<'_>,
        fx: &mut Fixture,
        dirty: &mut bool,
        tv: &mut Vec<u64>,
        ts: &mut Vec<u64>,
    ) -> arbitrary::Result<()> {
        let op: u8 = u.arbitrary()?;
        match op % 27 {
            0 => {
                let (s, doc, o) = (session(u, fx)?, text(u, DOC_TEMPLATES)?, want_out(u)?);
                // SAFETY: pointers are NULL or valid NUL-terminated strings / out pointers.
                if let Some(id) = string_call(fx, o, |out| unsafe { cv::cv_put(s, ptr(&doc), out) }) {
                    assert_eq!(id.len(), 32, "a document id is 32 hex digits");
                    if fx.docs.len() < 64 {
                        fx.docs.push(c(&id));
                    }
                }
            }
            1 => {
                let (s, id, doc, o) = (session(u, fx)?, doc_id(u, fx)?, text(u, DOC_TEMPLATES)?, want_out(u)?);
                // SAFETY: as above.
                let _ = scalar_call(o, 0xFFFF_FFFFu32, |out| unsafe { cv::cv_update(s, ptr(&id), ptr(&doc), out) });
            }
            2 => {
                let (s, id, v, o) = (session(u, fx)?, doc_id(u, fx)?, u.int_in_range(0..=3u32)?, want_out(u)?);
                // SAFETY: as above.
                let _ = string_call(fx, o, |out| unsafe { cv::cv_get(s, ptr(&id), v, out) });
            }
            3 => {
                let (s, id, o) = (session(u, fx)?, doc_id(u, fx)?, want_out(u)?);
                // SAFETY: as above.
                let _ = string_call(fx, o, |out| unsafe { cv::cv_history(s, ptr(&id), out) });
            }
            4 => {
                let (s, q, o) = (session(u, fx)?, text(u, QUERY_TEMPLATES)?, want_out(u)?);
                let cursor = if u.arbitrary::<u8>()? < 200 { None } else { text(u, &["@", "00@"])? };
                let limit = if u.arbitrary()? { 0 } else { u.arbitrary()? };
                // SAFETY: as above.
                let _ = string_call(fx, o, |out| unsafe { cv::cv_query(s, ptr(&q), ptr(&cursor), limit, out) });
            }
            5 => {
                let (s, p, r) = (session(u, fx)?, text(u, &["P1", "P2", "@"])?, text(u, &["@", "emergency @"])?);
                // SAFETY: as above.
                let _ = ok(unsafe { cv::cv_break_glass(s, ptr(&p), ptr(&r)) });
            }
            6 => {
                let (s, o) = (session(u, fx)?, want_out(u)?);
                // SAFETY: as above.
                let _ = string_call(fx, o, |out| unsafe { cv::cv_audit_verify(s, out) });
            }
            7 => {
                let (s, p, o) = (session(u, fx)?, text(u, &["P1", "@"])?, want_out(u)?);
                // SAFETY: as above.
                let _ = string_call(fx, o, |out| unsafe { cv::cv_accounting_of_disclosures(s, ptr(&p), out) });
            }
            8 => {
                let (s, k, o) = (session(u, fx)?, kdf(u)?, want_out(u)?);
                let n = u.int_in_range(0..=80)?;
                let pass = u.bytes(n.min(u.len()))?.to_vec();
                let null = u.arbitrary::<u8>()? % 8 == 0;
                // A length past the buffer is never passed: that would be the caller's UB.
                let p = if null { std::ptr::null() } else { pass.as_ptr() };
                // SAFETY: `p` is NULL or points to `pass.len()` bytes.
                if scalar_call(o, u32::MAX, |out| unsafe { cv::cv_key_slot_add_passphrase(s, p, pass.len(), k, out) })
                    .is_some()
                {
                    *dirty = true;
                }
            }
            9 => {
                let (s, k, o) = (session(u, fx)?, key_bytes(u)?, want_out(u)?);
                let p = k.as_ref().map_or(std::ptr::null(), |k| k.as_ptr());
                // SAFETY: `p` is NULL or points to 32 bytes.
                if scalar_call(o, u32::MAX, |out| unsafe { cv::cv_key_slot_add_key(s, p, out) }).is_some() {
                    *dirty = true;
                }
            }
            10 => {
                let (s, slot) = (session(u, fx)?, u.int_in_range(0..=9u32)?);
                if ok(cv::cv_key_slot_remove(s, slot)) {
                    *dirty = true;
                }
            }
            11 => {
                let (s, p, o) = (session(u, fx)?, text(u, POLICY_TEMPLATES)?, want_out(u)?);
                // SAFETY: as above.
                if scalar_call(o, u32::MAX, |out| unsafe { cv::cv_policy_set(s, ptr(&p), out) }).is_some() {
                    *dirty = true;
                }
            }
            12 => {
                let (v, p, o) = (vault(u, fx)?, text(u, PRINCIPAL_TEMPLATES)?, want_out(u)?);
                // SAFETY: as above.
                if let Some(h) = scalar_call(o, SENTINEL_HANDLE, |out| unsafe { cv::cv_session_open(v, ptr(&p), out) })
                {
                    assert_ne!(h, 0);
                    ts.push(h);
                }
            }
            13 => {
                // Closing: bogus and closed handles are refused; a transient one is fine.
                let h = match u.arbitrary::<u8>()? % 4 {
                    0 => u.arbitrary()?,
                    1 => fx.closed_session,
                    2 => ts.pop().unwrap_or(0),
                    _ => fx.vault,
                };
                let s = cv::cv_session_close(h);
                let _ = ok(s);
                assert!(s != cv_status::CV_OK || h != fx.closed_session, "a closed session closed twice");
                assert!(s != cv_status::CV_OK || h != fx.vault, "a vault handle closed as a session");
            }
            14 | 15 => {
                let (p, k, ro, o) = (path(u, fx)?, key_bytes(u)?, u.arbitrary::<i32>()?, want_out(u)?);
                let kp = k.as_ref().map_or(std::ptr::null(), |k| k.as_ptr());
                // SAFETY: pointers are NULL or valid.
                if let Some(h) =
                    scalar_call(o, SENTINEL_HANDLE, |out| unsafe { cv::cv_vault_open_with_key(ptr(&p), kp, ro, out) })
                {
                    tv.push(h);
                }
            }
            16 => {
                let (p, ro, o) = (path(u, fx)?, u.arbitrary::<i32>()?, want_out(u)?);
                let n = u.int_in_range(0..=40)?;
                let pass = u.bytes(n.min(u.len()))?.to_vec();
                // SAFETY: `pass` has pass.len() bytes.
                if let Some(h) = scalar_call(o, SENTINEL_HANDLE, |out| unsafe {
                    cv::cv_vault_open(ptr(&p), pass.as_ptr(), pass.len(), ro, out)
                }) {
                    tv.push(h);
                }
            }
            17 | 18 => {
                let (p, o) = (path(u, fx)?, want_out(u)?);
                let with_key = op % 26 == 17;
                let k = key_bytes(u)?;
                let kp = k.as_ref().map_or(std::ptr::null(), |k| k.as_ptr());
                let prof = kdf(u)?;
                let created = scalar_call(o, SENTINEL_HANDLE, |out| {
                    if with_key {
                        // SAFETY: pointers are NULL or valid.
                        unsafe { cv::cv_vault_create_with_key(ptr(&p), kp, out) }
                    } else {
                        // SAFETY: `kp` is NULL or 32 bytes (used as a passphrase of 32 bytes).
                        unsafe { cv::cv_vault_create(ptr(&p), kp, if kp.is_null() { 0 } else { 32 }, prof, out) }
                    }
                });
                if let Some(h) = created {
                    assert!(ok(cv::cv_vault_close(h)));
                }
                // Never leave created vaults behind (the fixture's own path is refused).
                if let Some(p) = &p
                    && p.as_bytes() != fx.path_c.as_bytes()
                {
                    super::remove_vault_files(std::path::Path::new(&*p.to_string_lossy()));
                }
            }
            19 => {
                let v = vault(u, fx)?;
                let (a, b) = (want_out(u)?, want_out(u)?);
                let mut commit = u64::MAX;
                let mut hash = [0xAAu8; 32];
                // SAFETY: the pointers are NULL or valid (hash has 32 bytes).
                let s = unsafe {
                    cv::cv_vault_head(
                        v,
                        if a { &mut commit } else { std::ptr::null_mut() },
                        if b { hash.as_mut_ptr() } else { std::ptr::null_mut() },
                    )
                };
                if !ok(s) {
                    assert!(commit == u64::MAX && hash == [0xAA; 32], "head written on failure");
                }
            }
            20 => {
                let (v, o) = (vault(u, fx)?, want_out(u)?);
                // SAFETY: as above.
                if let Some(j) = string_call(fx, o, |out| unsafe { cv::cv_vault_verify(v, out) }) {
                    let j: serde_json::Value = serde_json::from_str(&j).expect("verify report is JSON");
                    assert_eq!(j["clean"], serde_json::Value::Bool(true), "the fixture vault does not verify: {j}");
                }
            }
            21 => {
                let _ = cv::cv_last_error_code();
                let n = u.int_in_range(0..=300usize)?;
                let mut buf = vec![0x55 as c_char; n];
                let mut len = usize::MAX;
                let (nb, nl) = (u.arbitrary::<u8>()? % 8 == 0, u.arbitrary::<u8>()? % 8 == 0);
                // SAFETY: buf has n writable bytes; pointers are NULL or valid.
                let s = unsafe {
                    cv::cv_last_error_message(
                        if nb { std::ptr::null_mut() } else { buf.as_mut_ptr() },
                        n,
                        if nl { std::ptr::null_mut() } else { &mut len },
                    )
                };
                if ok(s) {
                    assert!(len < n && buf[len] == 0, "message not NUL-terminated within the buffer");
                }
            }
            22 => {
                // Freeing what the library did not hand out (or already took back) is refused.
                let own = c("not the library's");
                let p: *mut c_char = match u.arbitrary::<u8>()? % 4 {
                    0 => std::ptr::null_mut(),
                    1 => own.as_ptr().cast_mut(),
                    2 => fx.freed.last().map_or(std::ptr::null_mut(), |p| *p as *mut c_char),
                    _ => (u.arbitrary::<usize>()? | 1) as *mut c_char,
                };
                let s = cv::cv_string_free(p);
                let _ = ok(s);
                assert!(p.is_null() || s != cv_status::CV_OK, "cv_string_free accepted a pointer it did not issue");
            }
            23 => {
                let h = match u.arbitrary::<u8>()? % 4 {
                    0 => u.arbitrary()?,
                    1 => fx.closed_vault,
                    2 => tv.pop().unwrap_or(0),
                    _ => fx.sessions[0],
                };
                let s = cv::cv_vault_close(h);
                let _ = ok(s);
                assert!(s != cv_status::CV_OK || h != fx.closed_vault, "a closed vault closed twice");
            }
            26 => {
                // A bulk import: an array of template documents (some broken on purpose,
                // some `null`), or no array at all; all or nothing.
                let (s, o) = (session(u, fx)?, want_out(u)?);
                let n = u.int_in_range(0..=4usize)?;
                let mut parts = Vec::with_capacity(n);
                for _ in 0..n {
                    parts
                        .push(text(u, DOC_TEMPLATES)?.map_or("null".to_string(), |d| d.to_string_lossy().into_owned()));
                }
                let arr = if u.arbitrary::<u8>()? % 8 == 0 { None } else { Some(c(&format!("[{}]", parts.join(",")))) };
                // SAFETY: as above.
                if let Some(j) = string_call(fx, o, |out| unsafe { cv::cv_put_many(s, ptr(&arr), out) }) {
                    let ids: Vec<String> = serde_json::from_str(&j).expect("cv_put_many returns a JSON array of ids");
                    // (An empty or raw part can change how many elements the array has.)
                    let sent =
                        arr.as_ref().and_then(|a| serde_json::from_slice::<Vec<serde_json::Value>>(a.as_bytes()).ok());
                    assert_eq!(Some(ids.len()), sent.map(|v| v.len()), "one id per document");
                    assert!(ids.iter().all(|id| id.len() == 32), "a document id is 32 hex digits");
                }
            }
            24 => {
                assert_eq!(cv::cv_abi_version(), cv::CV_ABI_VERSION);
                // SAFETY: a static NUL-terminated string.
                let v = unsafe { CStr::from_ptr(cv::cv_version()) };
                assert!(!v.to_bytes().is_empty());
            }
            _ => {
                // Close a fixture session or the fixture vault: the fixture is rebuilt after this input.
                if u.arbitrary::<u8>()? % 4 == 0 {
                    let s = fx.sessions[usize::from(u.arbitrary::<u8>()?) % fx.sessions.len()];
                    let _ = ok(cv::cv_session_close(s));
                } else {
                    let _ = ok(cv::cv_vault_close(fx.vault));
                }
                *dirty = true;
            }
        }
        Ok(())
    }
}

pub mod ops {
    //! Structure-aware sequences of operations (`Vec<Op>` from `arbitrary`): puts,
    //! updates, batch commits, checkpoints, reopen, crash-truncation, reads, histories
    //! and queries under several roles, each checked against a small in-memory model
    //! of what every role should see.
    //!
    //! The model is written independently of the policy decision point: a hand-written
    //! table of the schema labels of the fields generated here (from
    //! `Schema::hospital_default`) and of the labels each role may read or write under
    //! `Policy::hospital_default` (no patient rules, so 42 CFR Part 2 withholds
    //! `substance-use` from every read, update and query).

    use std::collections::{BTreeMap, BTreeSet, HashMap};
    use std::path::{Path, PathBuf};

    use arbitrary::{Arbitrary, Unstructured};
    use chartvault::access::{Principal, Purpose, Role};
    use chartvault::{
        Coding, Document, DocumentId, Error, Field, Label, NewDocument, Session, Value, Vault, VaultKey, VaultOptions,
    };

    const PATIENTS: [&str; 4] = ["P0", "P1", "P2", "P3"];
    const MAX_OPS: usize = 48;
    const MAX_FIELDS: usize = 6;
    const MAX_DOCS: usize = 40;

    /// Document kinds generated.
    #[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
    pub enum KindSel {
        /// Observation.
        Observation,
        /// ClinicalNote.
        ClinicalNote,
        /// PsychotherapyNote.
        PsychotherapyNote,
        /// Claim.
        Claim,
        /// Patient.
        Patient,
        /// A kind the schema does not list.
        Wearable,
    }

    impl KindSel {
        fn name(self) -> &'static str {
            match self {
                KindSel::Observation => "Observation",
                KindSel::ClinicalNote => "ClinicalNote",
                KindSel::PsychotherapyNote => "PsychotherapyNote",
                KindSel::Claim => "Claim",
                KindSel::Patient => "Patient",
                KindSel::Wearable => "Wearable",
            }
        }
    }

    /// Field names generated.
    #[derive(Arbitrary, Debug, Clone, Copy)]
    pub enum FieldSel {
        /// code
        Code,
        /// status
        Status,
        /// date
        Date,
        /// note
        Note,
        /// text
        Text,
        /// value
        Value,
        /// name
        Name,
        /// amount
        Amount,
    }

    impl FieldSel {
        fn name(self) -> &'static str {
            match self {
                FieldSel::Code => "code",
                FieldSel::Status => "status",
                FieldSel::Date => "date",
                FieldSel::Note => "note",
                FieldSel::Text => "text",
                FieldSel::Value => "value",
                FieldSel::Name => "name",
                FieldSel::Amount => "amount",
            }
        }
    }

    /// An extra label on a field.
    #[derive(Arbitrary, Debug, Clone, Copy)]
    pub enum ExtraSel {
        /// None.
        None,
        /// hiv-sti
        HivSti,
        /// substance-use
        SubstanceUse,
        /// mental-health
        MentalHealth,
        /// genetic
        Genetic,
    }

    impl ExtraSel {
        fn label(self) -> Option<&'static str> {
            match self {
                ExtraSel::None => None,
                ExtraSel::HivSti => Some("hiv-sti"),
                ExtraSel::SubstanceUse => Some("substance-use"),
                ExtraSel::MentalHealth => Some("mental-health"),
                ExtraSel::Genetic => Some("genetic"),
            }
        }
    }

    /// A field value.
    #[derive(Arbitrary, Debug, Clone, Copy)]
    pub enum ValSel {
        /// Text "final".
        Final,
        /// Text "amended".
        Amended,
        /// An integer.
        Int(i8),
        /// A boolean.
        Flag(bool),
        /// A LOINC-like code.
        Code(u8),
    }

    impl ValSel {
        fn value(self) -> Value {
            match self {
                ValSel::Final => Value::Text("final".into()),
                ValSel::Amended => Value::Text("amended".into()),
                ValSel::Int(i) => Value::Integer(i64::from(i)),
                ValSel::Flag(b) => Value::Boolean(b),
                ValSel::Code(n) => Value::from(Coding::new("loinc", &format!("{n}-0"), None)),
            }
        }
    }

    /// One field of a generated document.
    #[derive(Arbitrary, Debug, Clone)]
    pub struct FieldSpec {
        /// Field name.
        pub name: FieldSel,
        /// Value.
        pub value: ValSel,
        /// Extra label.
        pub extra: ExtraSel,
    }

    /// A generated document.
    #[derive(Arbitrary, Debug, Clone)]
    pub struct DocSpec {
        /// Patient index (modulo the four patients).
        pub patient: u8,
        /// Kind.
        pub kind: KindSel,
        /// Fields (the first six).
        pub fields: Vec<FieldSpec>,
    }

    /// Who writes.
    #[derive(Arbitrary, Debug, Clone, Copy)]
    pub enum Writer {
        /// Physician with a care relationship with every patient.
        Physician,
        /// Nurse with a care relationship with every patient.
        Nurse,
        /// Billing (payment).
        Billing,
    }

    /// Who reads.
    #[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum Reader {
        /// Physician with a care relationship with every patient.
        Physician,
        /// Physician without any care relationship.
        PhysicianNoCareTeam,
        /// Physician caring for P0 and P1 only.
        PhysicianPartial,
        /// Nurse caring for every patient.
        Nurse,
        /// Billing (payment).
        Billing,
        /// Researcher (de-identified).
        Researcher,
    }

    /// A query.
    #[derive(Arbitrary, Debug, Clone, Copy)]
    pub enum QuerySel {
        /// Everything visible.
        All,
        /// `kind = K`.
        Kind(KindSel),
        /// `patient = P`.
        Patient(u8),
        /// `status = "final"` (an indexed field).
        StatusFinal,
    }

    /// One operation.
    #[derive(Arbitrary, Debug, Clone)]
    pub enum Op {
        /// Put one document.
        Put(Writer, DocSpec),
        /// Write a new version of a document with these fields.
        Update(Writer, u8, Vec<FieldSpec>),
        /// Put several documents in one batch (one commit).
        Batch(Writer, Vec<DocSpec>),
        /// Write an index checkpoint.
        Checkpoint,
        /// Close and reopen.
        Reopen,
        /// Close, cut the file at an offset at or after the last acknowledged commit
        /// (and maybe append zeros), reopen.
        CrashTruncate(u32, u8),
        /// Read the latest version.
        Read(Reader, u8),
        /// Read every version.
        History(Reader, u8),
        /// Run a query.
        Query(Reader, QuerySel),
    }

    // ---- the model -----------------------------------------------------------------

    const CLINICAL_ALL: &[&str] = &[
        "normal",
        "restricted",
        "very-restricted",
        "demographics",
        "mental-health",
        "psychotherapy",
        "substance-use",
        "hiv-sti",
        "genetic",
        "reproductive",
    ];

    fn set(names: &[&'static str]) -> BTreeSet<&'static str> {
        names.iter().copied().collect()
    }

    fn minus(a: &[&'static str], drop: &[&str]) -> BTreeSet<&'static str> {
        a.iter().copied().filter(|l| !drop.contains(l)).collect()
    }

    /// The schema label of a generated field (Schema::hospital_default, by hand).
    fn schema_label(kind: KindSel, field: &str) -> &'static str {
        match kind {
            KindSel::Observation => {
                if matches!(field, "note" | "text" | "conclusion") {
                    "restricted"
                } else {
                    "normal"
                }
            }
            KindSel::ClinicalNote => {
                if matches!(field, "date" | "type" | "status" | "category") {
                    "normal"
                } else {
                    "restricted"
                }
            }
            KindSel::PsychotherapyNote => {
                if field == "date" {
                    "normal"
                } else {
                    "psychotherapy"
                }
            }
            KindSel::Claim => {
                if matches!(field, "code" | "date" | "status") {
                    "normal"
                } else {
                    "financial"
                }
            }
            KindSel::Patient => "demographics",
            KindSel::Wearable => "normal",
        }
    }

    /// What a reader may see of a document: `None` if the document is withheld
    /// entirely, else the labels it may read and whether it sees de-identified data.
    fn view_rights(r: Reader, patient: usize, kind: KindSel) -> Option<(BTreeSet<&'static str>, bool)> {
        let physician = minus(CLINICAL_ALL, &["substance-use"]);
        match r {
            Reader::Physician => Some((physician, false)),
            Reader::PhysicianNoCareTeam => None,
            Reader::PhysicianPartial => (patient < 2).then_some((physician, false)),
            Reader::Nurse => (kind != KindSel::PsychotherapyNote)
                .then(|| (minus(CLINICAL_ALL, &["substance-use", "psychotherapy"]), false)),
            Reader::Billing => Some((set(&["financial", "normal"]), false)),
            Reader::Researcher => Some((set(&["normal"]), true)),
        }
    }

    /// Whether a writer may create a document of `kind` whose fields carry `labels`.
    fn may_create(w: Writer, kind: KindSel, labels: &BTreeSet<&'static str>) -> bool {
        match w {
            Writer::Physician => labels.is_subset(&set(CLINICAL_ALL)),
            Writer::Nurse => {
                kind != KindSel::PsychotherapyNote && labels.is_subset(&minus(CLINICAL_ALL, &["psychotherapy"]))
            }
            Writer::Billing => kind == KindSel::Claim && labels.is_subset(&set(&["financial", "normal"])),
        }
    }

    /// Whether a writer may update: it must read every old label, and may update every
    /// label old and new (an update discloses, so substance-use needs consent).
    fn may_update(w: Writer, kind: KindSel, old: &BTreeSet<&'static str>, new: &BTreeSet<&'static str>) -> bool {
        let all: BTreeSet<&'static str> = old.union(new).copied().collect();
        match w {
            Writer::Physician => all.is_subset(&minus(CLINICAL_ALL, &["substance-use"])),
            Writer::Nurse => {
                kind != KindSel::PsychotherapyNote
                    && all.is_subset(&minus(CLINICAL_ALL, &["substance-use", "psychotherapy"]))
            }
            Writer::Billing => kind == KindSel::Claim && all.is_subset(&set(&["financial", "normal"])),
        }
    }

    fn writer_principal(w: Writer) -> Principal {
        match w {
            Writer::Physician => reader_principal(Reader::Physician),
            Writer::Nurse => reader_principal(Reader::Nurse),
            Writer::Billing => reader_principal(Reader::Billing),
        }
    }

    fn writer_user(w: Writer) -> &'static str {
        match w {
            Writer::Physician => "dr",
            Writer::Nurse => "rn",
            Writer::Billing => "bill",
        }
    }

    fn reader_principal(r: Reader) -> Principal {
        match r {
            Reader::Physician => Principal::new("dr", Role::physician(), "h", Purpose::Treat).with_care_team(PATIENTS),
            Reader::PhysicianNoCareTeam => Principal::new("dr2", Role::physician(), "h", Purpose::Treat),
            Reader::PhysicianPartial => {
                Principal::new("dr3", Role::physician(), "h", Purpose::Treat).with_care_team(["P0", "P1"])
            }
            Reader::Nurse => Principal::new("rn", Role::nurse(), "h", Purpose::Treat).with_care_team(PATIENTS),
            Reader::Billing => Principal::new("bill", Role::billing(), "h", Purpose::Payment),
            Reader::Researcher => Principal::new("res", Role::researcher(), "u", Purpose::Research),
        }
    }

    #[derive(Debug, Clone)]
    struct MField {
        value: Value,
        extra: Option<&'static str>,
        labels: BTreeSet<&'static str>,
    }

    #[derive(Debug, Clone)]
    struct MVersion {
        fields: BTreeMap<String, MField>,
        author: &'static str,
    }

    #[derive(Debug, Clone)]
    struct MDoc {
        id: DocumentId,
        patient: usize,
        kind: KindSel,
        versions: Vec<MVersion>,
    }

    impl MDoc {
        fn labels(&self) -> BTreeSet<&'static str> {
            self.versions
                .last()
                .map(|v| v.fields.values().flat_map(|f| f.labels.iter().copied()).collect())
                .unwrap_or_default()
        }
    }

    fn model_fields(kind: KindSel, specs: &[FieldSpec]) -> BTreeMap<String, MField> {
        let mut m = BTreeMap::new();
        for s in specs.iter().take(MAX_FIELDS) {
            let name = s.name.name();
            let mut labels = BTreeSet::new();
            labels.insert(schema_label(kind, name));
            labels.extend(s.extra.label());
            m.insert(name.to_string(), MField { value: s.value.value(), extra: s.extra.label(), labels });
        }
        m
    }

    fn engine_fields(m: &BTreeMap<String, MField>) -> BTreeMap<String, Field> {
        m.iter()
            .map(|(k, f)| {
                let labels = f.extra.map(|l| Label::new(l).expect("label")).into_iter().collect();
                (k.clone(), Field { value: f.value.clone(), labels })
            })
            .collect()
    }

    fn new_document(d: &DocSpec, fields: &BTreeMap<String, MField>) -> NewDocument {
        let mut doc = NewDocument::new(PATIENTS[usize::from(d.patient) % PATIENTS.len()], d.kind.name()).expect("kind");
        doc.fields = engine_fields(fields);
        doc
    }

    /// Checks a document as read by `r` against the model's version `v`.
    fn check_view(r: Reader, m: &MDoc, v: usize, got: &Document, what: &str) {
        let (readable, deid) = view_rights(r, m.patient, m.kind).expect("visible");
        let ver = &m.versions[v];
        assert_eq!(got.id, m.id, "{what}: id");
        assert_eq!(got.kind.as_str(), m.kind.name(), "{what}: kind");
        assert_eq!(got.version as usize, v + 1, "{what}: version");
        if deid {
            assert!(
                got.patient.starts_with("anon-") && got.patient != PATIENTS[m.patient],
                "{what}: patient not pseudonymized"
            );
            assert!(got.author.is_empty(), "{what}: author shown to a de-identified session");
        } else {
            assert_eq!(got.patient, PATIENTS[m.patient], "{what}: patient");
            assert_eq!(got.author, ver.author, "{what}: author");
        }
        let mut want_fields = BTreeMap::new();
        let mut want_redacted = BTreeMap::new();
        for (k, f) in &ver.fields {
            if f.labels.is_subset(&readable) {
                want_fields.insert(k.clone(), f.value.clone());
            } else {
                want_redacted.insert(k.clone(), f.labels.iter().map(|l| l.to_string()).collect::<Vec<_>>());
            }
        }
        let got_fields: BTreeMap<String, Value> =
            got.fields.iter().map(|(k, f)| (k.clone(), f.value.clone())).collect();
        let got_redacted: BTreeMap<String, Vec<String>> =
            got.redacted.iter().map(|(k, ls)| (k.clone(), ls.iter().map(|l| l.to_string()).collect())).collect();
        assert_eq!(got_fields, want_fields, "{what}: readable fields for {r:?}");
        assert_eq!(got_redacted, want_redacted, "{what}: redacted fields for {r:?}");
        for (k, f) in &got.fields {
            let want: Vec<String> = ver.fields[k].extra.iter().map(|l| l.to_string()).collect();
            let have: Vec<String> = f.labels.iter().map(|l| l.to_string()).collect();
            assert_eq!(have, want, "{what}: extra labels of field {k}");
        }
    }

    // ---- the harness ---------------------------------------------------------------

    struct World {
        path: PathBuf,
        vault: Option<Vault>,
        sessions: HashMap<Reader, Session>,
        docs: Vec<MDoc>,
        /// File length right after the last acknowledged write.
        acked: u64,
    }

    fn open(path: &Path) -> Vault {
        let key = super::fuzz_key();
        Vault::open(path, VaultKey::Raw(&key), VaultOptions::default()).unwrap_or_else(|e| panic!("reopen failed: {e}"))
    }

    fn file_len(path: &Path) -> u64 {
        std::fs::metadata(path).map(|m| m.len()).expect("data file")
    }

    impl World {
        fn vault(&self) -> &Vault {
            self.vault.as_ref().expect("open vault")
        }

        fn session(&mut self, r: Reader) -> &Session {
            if !self.sessions.contains_key(&r) {
                let s = self.vault().session(reader_principal(r)).unwrap_or_else(|e| panic!("session for {r:?}: {e}"));
                self.sessions.insert(r, s);
            }
            &self.sessions[&r]
        }

        fn writer(&mut self, w: Writer) -> &Session {
            let r = match w {
                Writer::Physician => Reader::Physician,
                Writer::Nurse => Reader::Nurse,
                Writer::Billing => Reader::Billing,
            };
            let _ = writer_principal(w);
            self.session(r)
        }

        fn ack(&mut self) {
            self.acked = file_len(&self.path);
        }

        fn close(&mut self) {
            self.sessions.clear();
            if let Some(v) = self.vault.take() {
                v.close().unwrap_or_else(|e| panic!("close: {e}"));
            }
        }

        fn reopen(&mut self) {
            self.close();
            let v = open(&self.path);
            let rep = v.verify().unwrap_or_else(|e| panic!("verify after reopen: {e}"));
            assert!(rep.is_clean(), "vault does not verify after reopen: {:?}", rep.problems);
            self.vault = Some(v);
        }

        fn pick(&self, i: u8) -> Option<usize> {
            (!self.docs.is_empty()).then(|| usize::from(i) % self.docs.len())
        }
    }

    fn expect_denied<T: std::fmt::Debug>(r: chartvault::Result<T>, what: &str) {
        match r {
            Err(Error::Denied(_)) => {}
            other => panic!("{what}: expected a denial, got {other:?}"),
        }
    }

    fn apply(w: &mut World, op: &Op) {
        match op {
            Op::Put(wr, d) => {
                if w.docs.len() >= MAX_DOCS {
                    return;
                }
                let fields = model_fields(d.kind, &d.fields);
                let labels: BTreeSet<&'static str> = fields.values().flat_map(|f| f.labels.iter().copied()).collect();
                let doc = new_document(d, &fields);
                let allowed = may_create(*wr, d.kind, &labels);
                let r = w.writer(*wr).put(&doc);
                if allowed {
                    let id = r.unwrap_or_else(|e| panic!("put by {wr:?} of {doc:?} failed: {e}"));
                    w.ack();
                    w.docs.push(MDoc {
                        id,
                        patient: usize::from(d.patient) % PATIENTS.len(),
                        kind: d.kind,
                        versions: vec![MVersion { fields, author: writer_user(*wr) }],
                    });
                } else {
                    expect_denied(r, &format!("put by {wr:?} of {doc:?}"));
                }
            }
            Op::Update(wr, i, specs) => {
                let Some(i) = w.pick(*i) else { return };
                let (id, kind, old) = (w.docs[i].id, w.docs[i].kind, w.docs[i].labels());
                let fields = model_fields(kind, specs);
                let new: BTreeSet<&'static str> = fields.values().flat_map(|f| f.labels.iter().copied()).collect();
                let allowed = may_update(*wr, kind, &old, &new);
                let r = w.writer(*wr).update(&id, engine_fields(&fields));
                if allowed {
                    let v = r.unwrap_or_else(|e| panic!("update by {wr:?} failed: {e}"));
                    w.ack();
                    let d = &mut w.docs[i];
                    d.versions.push(MVersion { fields, author: writer_user(*wr) });
                    assert_eq!(v as usize, d.versions.len(), "update: version number");
                } else {
                    expect_denied(r, &format!("update by {wr:?} of a {kind:?} with {old:?} -> {new:?}"));
                }
            }
            Op::Batch(wr, ds) => {
                let mut staged = Vec::new();
                {
                    let room = MAX_DOCS.saturating_sub(w.docs.len());
                    let s = w.writer(*wr);
                    let mut b = s.batch().unwrap_or_else(|e| panic!("batch: {e}"));
                    for d in ds.iter().take(4.min(room)) {
                        let fields = model_fields(d.kind, &d.fields);
                        let labels: BTreeSet<&'static str> =
                            fields.values().flat_map(|f| f.labels.iter().copied()).collect();
                        let doc = new_document(d, &fields);
                        let r = b.put(&doc);
                        if may_create(*wr, d.kind, &labels) {
                            let id = r.unwrap_or_else(|e| panic!("batch put by {wr:?} of {doc:?} failed: {e}"));
                            staged.push(MDoc {
                                id,
                                patient: usize::from(d.patient) % PATIENTS.len(),
                                kind: d.kind,
                                versions: vec![MVersion { fields, author: writer_user(*wr) }],
                            });
                        } else {
                            expect_denied(r, &format!("batch put by {wr:?} of {doc:?}"));
                        }
                    }
                    b.commit().unwrap_or_else(|e| panic!("batch commit: {e}"));
                }
                w.ack();
                w.docs.extend(staged);
            }
            Op::Checkpoint => {
                w.vault().checkpoint().unwrap_or_else(|e| panic!("checkpoint: {e}"));
                w.ack();
            }
            Op::Reopen => w.reopen(),
            Op::CrashTruncate(cut, zeros) => {
                w.close();
                let len = file_len(&w.path);
                assert!(len >= w.acked, "the file shrank below an acknowledged commit");
                let to = w.acked + u64::from(*cut) % (len - w.acked + 1);
                let f = std::fs::OpenOptions::new().write(true).open(&w.path).expect("open data file");
                f.set_len(to).expect("truncate");
                if *zeros > 0 {
                    f.set_len(to + u64::from(*zeros) * 7).expect("extend with zeros");
                }
                drop(f);
                w.reopen();
            }
            Op::Read(r, i) => {
                let Some(i) = w.pick(*i) else { return };
                let m = w.docs[i].clone();
                let got = w.session(*r).get(&m.id);
                match view_rights(*r, m.patient, m.kind) {
                    None => expect_denied(got, &format!("read by {r:?}")),
                    Some(_) => {
                        let got = got.unwrap_or_else(|e| panic!("read by {r:?} failed: {e}"));
                        check_view(*r, &m, m.versions.len() - 1, &got, "read");
                    }
                }
            }
            Op::History(r, i) => {
                let Some(i) = w.pick(*i) else { return };
                let m = w.docs[i].clone();
                let got = w.session(*r).history(&m.id);
                match view_rights(*r, m.patient, m.kind) {
                    None => expect_denied(got, &format!("history by {r:?}")),
                    Some(_) => {
                        let got = got.unwrap_or_else(|e| panic!("history by {r:?} failed: {e}"));
                        assert_eq!(got.len(), m.versions.len(), "history length");
                        for (v, d) in got.iter().enumerate() {
                            check_view(*r, &m, v, d, "history");
                        }
                    }
                }
            }
            Op::Query(r, q) => {
                let text = match q {
                    QuerySel::All => "limit 1000".to_string(),
                    QuerySel::Kind(k) => format!("kind = {} limit 1000", k.name()),
                    QuerySel::Patient(p) => {
                        format!("patient = \"{}\" limit 1000", PATIENTS[usize::from(*p) % PATIENTS.len()])
                    }
                    QuerySel::StatusFinal => "status = \"final\" limit 1000".to_string(),
                };
                let mut want: Vec<MDoc> = Vec::new();
                for m in &w.docs {
                    let Some((readable, deid)) = view_rights(*r, m.patient, m.kind) else { continue };
                    let latest = m.versions.last().expect("a version");
                    let hit = match q {
                        QuerySel::All => true,
                        QuerySel::Kind(k) => m.kind == *k,
                        // A de-identified session matches on the pseudonym it is shown.
                        QuerySel::Patient(p) => !deid && m.patient == usize::from(*p) % PATIENTS.len(),
                        QuerySel::StatusFinal => {
                            // Eligible only if the field filtered on is readable: its own
                            // labels when indexed, every label of the document when absent.
                            let touched = match latest.fields.get("status") {
                                Some(f) => f.labels.clone(),
                                None => m.labels(),
                            };
                            touched.is_subset(&readable)
                                && latest.fields.get("status").is_some_and(|f| f.value == Value::Text("final".into()))
                        }
                    };
                    if hit {
                        want.push(m.clone());
                    }
                }
                let res =
                    w.session(*r).query_str(&text).unwrap_or_else(|e| panic!("query {text:?} by {r:?} failed: {e}"));
                let got_ids: BTreeSet<DocumentId> = res.documents.iter().map(|d| d.id).collect();
                let want_ids: BTreeSet<DocumentId> = want.iter().map(|m| m.id).collect();
                assert_eq!(got_ids, want_ids, "query {text:?} by {r:?}: documents");
                assert_eq!(res.total, want.len(), "query {text:?} by {r:?}: total");
                assert!(res.next_cursor.is_none());
                for d in &res.documents {
                    let m = want.iter().find(|m| m.id == d.id).expect("wanted");
                    check_view(*r, m, m.versions.len() - 1, d, "query");
                }
            }
        }
    }

    /// Runs one input.
    pub fn run(data: &[u8]) {
        let u = Unstructured::new(data);
        let Ok(ops) = Vec::<Op>::arbitrary_take_rest(u) else { return };
        if ops.is_empty() {
            return;
        }
        run_ops(&ops);
    }

    /// Runs a sequence of operations (the first 48) against a fresh vault and the
    /// model; returns how many documents the model holds at the end.
    pub fn run_ops(ops: &[Op]) -> usize {
        let path = super::fresh_path("ops");
        let key = super::fuzz_key();
        let v = Vault::create(&path, VaultKey::Raw(&key), VaultOptions::default())
            .unwrap_or_else(|e| panic!("create: {e}"));
        let mut w = World { path: path.clone(), vault: Some(v), sessions: HashMap::new(), docs: Vec::new(), acked: 0 };
        w.ack();
        for op in ops.iter().take(MAX_OPS) {
            apply(&mut w, op);
        }
        // The end state: every document still there after a clean reopen, and the audit
        // trail intact.
        w.reopen();
        for i in 0..w.docs.len() {
            apply(&mut w, &Op::Read(Reader::Physician, i as u8));
        }
        let po = w
            .vault()
            .session(Principal::new("po", Role::privacy_officer(), "h", Purpose::Compliance))
            .unwrap_or_else(|e| panic!("privacy officer session: {e}"));
        let a = po.audit_verify().unwrap_or_else(|e| panic!("audit verify: {e}"));
        assert!(a.is_intact(), "audit trail not intact: {:?}", a.problems);
        drop(po);
        w.close();
        super::remove_vault_files(&path);
        w.docs.len()
    }
}
