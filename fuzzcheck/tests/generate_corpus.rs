//! The seed-corpus generator: real vault files, real frames and real bodies.
//!
//! `seeds_from_the_generator_pass` builds every generated seed in memory and runs it
//! through its target (so the generator keeps working as the format evolves).
//! `generate` writes them into `fuzz/corpus/` when CHARTVAULT_REGENERATE_CORPUS=1; regenerate with
//!
//! ```text
//! CHARTVAULT_REGENERATE_CORPUS=1 cargo test -p chartvault-fuzzcheck --test generate_corpus generate
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chartvault::access::{PatientRules, Policy, Principal, Purpose, Role};
use chartvault::format::body::{self, Envelope, GroupBody, GroupMeta, IndexKey, IndexTerm};
use chartvault::format::frame::{self, FRAME_HEADER};
use chartvault::format::header::{HEADER_REGION, HEADER_SIZE};
use chartvault::{Coding, Date, DateTime, Field, Label, NewDocument, Value, Vault, VaultKey, VaultOptions};
use chartvault_fuzzcheck::targets::{self, OpenFileInput};

fn physician() -> Principal {
    Principal::new("dr", Role::physician(), "h", Purpose::Treat).with_care_team(["MRN-1", "MRN-2"])
}

fn read_files(path: &Path) -> OpenFileInput {
    OpenFileInput {
        data: std::fs::read(path).expect("data file"),
        keyring: std::fs::read(chartvault::store::keyring_path(path)).expect("keyring"),
    }
}

/// Builds a small vault: two patients, a handful of documents of several kinds and
/// labels, an update, an attachment; optionally a checkpoint, patient rules and a
/// policy change.
fn build_vault(dir: &Path, name: &str, extras: bool) -> PathBuf {
    let path = dir.join(name);
    let key = targets::fuzz_key();
    let v = Vault::create(&path, VaultKey::Raw(&key), VaultOptions::default()).expect("create");
    {
        let dr = v.session(physician()).expect("session");
        let a = dr
            .put(
                &NewDocument::new("MRN-1", "Observation")
                    .expect("doc")
                    .with("status", Value::Text("final".into()))
                    .with("code", Value::from(Coding::new("loinc", "4548-4", Some("HbA1c"))))
                    .with("value", Value::Decimal("6.8".parse().expect("decimal")))
                    .with("effective", Value::Date(Date::parse("2024-03-01").expect("date")))
                    .with_labeled("note", Value::Text("n".into()), vec![Label::mental_health()]),
            )
            .expect("put");
        let mut b = dr.batch().expect("batch");
        let att = b.put_attachment("text/plain", &mut &b"hello"[..]).expect("attachment");
        b.put(
            &NewDocument::new("MRN-2", "DocumentReference")
                .expect("doc")
                .with("status", Value::Text("current".into()))
                .with("content", Value::from(att)),
        )
        .expect("put");
        b.put(
            &NewDocument::new("MRN-2", "ClinicalNote")
                .expect("doc")
                .with("date", Value::DateTime(DateTime::parse("2024-03-01T09:30:00-05:00").expect("datetime")))
                .with("text", Value::Text("t".into())),
        )
        .expect("put");
        b.commit().expect("commit");
        let mut f = BTreeMap::new();
        f.insert("status".to_string(), Field::from(Value::Text("amended".into())));
        f.insert("value".to_string(), Field::from(Value::Integer(7)));
        dr.update(&a, f).expect("update");
        let _ = dr.get(&a).expect("get");
        if extras {
            v.checkpoint().expect("checkpoint");
            let po = v.session(Principal::new("po", Role::privacy_officer(), "h", Purpose::Compliance)).expect("po");
            po.set_patient_rules(PatientRules { patient: "MRN-1".into(), vip: true, ..Default::default() })
                .expect("rules");
            let sec = v.session(Principal::new("sec", Role::security_admin(), "h", Purpose::SystemAdmin)).expect("sec");
            let mut p = Policy::hospital_default();
            p.name = "fuzz-seed".into();
            sec.set_policy(p).expect("policy");
        }
    }
    v.close().expect("close");
    path
}

/// The frames of a data file: (offset, total length).
fn frames(data: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = HEADER_REGION as usize;
    while let Ok(h) = frame::parse(&data[pos.min(data.len())..]) {
        out.push((pos, h.total()));
        pos += h.total();
    }
    out
}

/// Every generated seed: (target, file name, bytes).
fn seeds(dir: &Path) -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out: Vec<(&'static str, String, Vec<u8>)> = Vec::new();
    let small = read_files(&build_vault(dir, "small", false));
    let full = read_files(&build_vault(dir, "full", true));
    let empty = {
        let path = dir.join("empty");
        let key = targets::fuzz_key();
        Vault::create(&path, VaultKey::Raw(&key), VaultOptions::default()).expect("create").close().expect("close");
        read_files(&path)
    };

    // open_file: real vaults, and some damaged ones.
    out.push(("open_file", "gen-vault-empty".into(), empty.to_fuzz()));
    out.push(("open_file", "gen-vault-small".into(), small.to_fuzz()));
    out.push(("open_file", "gen-vault-checkpoint-rules-policy".into(), full.to_fuzz()));
    let mut fixups = small.to_fuzz();
    fixups[0] |= 1;
    out.push(("open_file", "gen-vault-small-fixups".into(), fixups));
    let fr = frames(&small.data);
    let last = *fr.last().expect("frames");
    let torn = OpenFileInput { data: small.data[..last.0 + last.1 - 10].to_vec(), keyring: small.keyring.clone() };
    out.push(("open_file", "gen-vault-torn-tail".into(), torn.to_fuzz()));
    let mut hdr = small.data.clone();
    hdr[100] ^= 1;
    out.push((
        "open_file",
        "gen-vault-damaged-header-copy".into(),
        OpenFileInput { data: hdr, keyring: small.keyring.clone() }.to_fuzz(),
    ));
    let mut mid = small.data.clone();
    mid[fr[1].0 + FRAME_HEADER] ^= 0x40;
    out.push((
        "open_file",
        "gen-vault-damage-mid-log".into(),
        OpenFileInput { data: mid, keyring: small.keyring.clone() }.to_fuzz(),
    ));
    let no_ring = OpenFileInput { data: small.data.clone(), keyring: small.keyring[..64].to_vec() };
    out.push(("open_file", "gen-vault-keyring-header-only".into(), no_ring.to_fuzz()));
    let mut destroyed = small.keyring.clone();
    if destroyed.len() > 64 {
        destroyed[64] = 2;
    }
    out.push((
        "open_file",
        "gen-vault-keyring-record-destroyed".into(),
        OpenFileInput { data: small.data.clone(), keyring: destroyed }.to_fuzz(),
    ));
    let mut no_keyring_input = vec![0u8];
    no_keyring_input.extend_from_slice(&empty.data);
    out.push(("open_file", "gen-vault-empty-implicit-keyring".into(), no_keyring_input));
    out.push(("open_file", "gen-not-a-vault".into(), b"\x00CHARTVLT but not really".to_vec()));

    // frame_codec: real frames of every type, payloads, a header copy, keyring bytes.
    let mut seen = std::collections::BTreeSet::new();
    for (off, len) in frames(&full.data) {
        let ty = full.data[off + 2];
        if seen.insert(ty) {
            out.push(("frame_codec", format!("gen-frame-type-{ty}"), full.data[off..off + len].to_vec()));
            if ty == 1 || ty == 3 {
                out.push((
                    "frame_codec",
                    format!("gen-payload-type-{ty}"),
                    full.data[off + FRAME_HEADER..off + len].to_vec(),
                ));
            }
        }
    }
    out.push(("frame_codec", "gen-header-copy".into(), full.data[..HEADER_SIZE].to_vec()));
    out.push(("frame_codec", "gen-keyring".into(), full.keyring.clone()));
    if full.keyring.len() >= 64 + 256 {
        out.push(("frame_codec", "gen-keyring-record".into(), full.keyring[64..320].to_vec()));
    }

    // body_codec: real bodies of each type.
    let env = Envelope {
        patient_slot: 3,
        kind: "Observation".into(),
        created_us: 1_700_000_000_000_000,
        updated_us: 1_700_000_100_000_000,
        author: "dr".into(),
        groups: vec![
            GroupMeta {
                labels: vec![Label::normal()],
                generations: vec![1],
                fields: vec!["code".into(), "value".into()],
            },
            GroupMeta {
                labels: vec![Label::mental_health(), Label::restricted()],
                generations: vec![1, 2],
                fields: vec!["note".into()],
            },
        ],
    };
    out.push(("body_codec", "gen-envelope".into(), chartvault::format::envelope::encode(&env).to_vec()));
    let mut g: GroupBody = vec![
        Field::from(Value::Text("x".into())),
        Field::from(Value::Integer(-5)),
        Field::from(Value::Decimal("1.10".parse().expect("decimal"))),
        Field::from(Value::Boolean(true)),
        Field::from(Value::Date(Date::parse("2024-02-29").expect("date"))),
        Field::from(Value::DateTime(DateTime::parse("2024-03-01T09:30:00.5+02:00").expect("dt"))),
        Field {
            value: Value::from(Coding::new("snomed", "44054006", Some("Diabetes"))),
            labels: vec![Label::genetic()],
        },
        Field::from(Value::List(vec![Value::Integer(1), Value::Text("a".into())])),
    ];
    let mut grp = BTreeMap::new();
    grp.insert("a".to_string(), Value::Boolean(false));
    g.push(Field::from(Value::Group(grp)));
    let refs: Vec<&Field> = g.iter().collect();
    let group = body::encode_group(&refs, &Label::builtin()).expect("labels are built in");
    out.push(("body_codec", "gen-groupbody-all-types".into(), group.to_vec()));
    let terms = vec![
        IndexTerm {
            field: "code".into(),
            labels: vec![Label::normal()],
            key: IndexKey::Code("http://loinc.org".into(), "4548-4".into()),
        },
        IndexTerm {
            field: "value".into(),
            labels: vec![Label::normal()],
            key: IndexKey::Decimal("6.8".parse().expect("decimal")),
        },
        IndexTerm { field: "effective".into(), labels: vec![Label::normal()], key: IndexKey::Date(19_783) },
        IndexTerm {
            field: "issued".into(),
            labels: vec![Label::normal()],
            key: IndexKey::DateTime(1_700_000_000_000_000),
        },
        IndexTerm { field: "status".into(), labels: vec![Label::restricted()], key: IndexKey::Text("final".into()) },
        IndexTerm { field: "n".into(), labels: vec![], key: IndexKey::Integer(-1) },
        IndexTerm { field: "f".into(), labels: vec![], key: IndexKey::Boolean(true) },
    ];
    out.push(("body_codec", "gen-index-terms".into(), body::encode(&terms).to_vec()));
    out.push(("body_codec", "gen-policy-string".into(), body::encode(&Policy::hospital_default().to_json()).to_vec()));

    // policy_file: the default policy and rules as the vault stores them.
    out.push(("policy_file", "gen-hospital-default".into(), Policy::hospital_default().to_json().into_bytes()));
    let rules = PatientRules { patient: "MRN-1".into(), vip: true, ..Default::default() };
    out.push(("policy_file", "gen-rules-vip".into(), serde_json::to_vec(&rules).expect("json")));

    // Structure-aware targets: deterministic byte strings of several lengths.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for (target, sizes) in [("ops_model", [16usize, 64, 200, 600, 1500]), ("c_api_inputs", [8, 32, 128, 400, 1000])] {
        for n in sizes {
            let bytes: Vec<u8> = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 24) as u8
                })
                .collect();
            out.push((target, format!("gen-random-{n}"), bytes));
        }
    }
    out
}

#[test]
fn seeds_from_the_generator_pass() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (target, name, bytes) in seeds(dir.path()) {
        let r = std::panic::catch_unwind(|| targets::run(target, &bytes));
        assert!(matches!(r, Ok(true)), "generated seed {target}/{name} failed");
    }
}

#[test]
fn vault_seeds_open_as_expected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seeds = seeds(dir.path());
    let outcome = |name: &str| {
        let (_, _, bytes) = seeds.iter().find(|(_, n, _)| n == name).expect("seed");
        targets::open_file_outcome(bytes)
    };
    for name in ["gen-vault-empty", "gen-vault-small", "gen-vault-checkpoint-rules-policy", "gen-vault-small-fixups"] {
        assert_eq!(outcome(name), [true, true], "{name}");
    }
    // A torn tail is discarded; one damaged header copy is healed from the other.
    assert_eq!(outcome("gen-vault-torn-tail"), [true, true]);
    assert_eq!(outcome("gen-vault-damaged-header-copy"), [true, true]);
    assert_eq!(outcome("gen-not-a-vault"), [false, false]);
    assert_eq!(outcome("gen-vault-keyring-header-only"), [false, false]);
}

#[test]
fn real_vault_seed_opens_and_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = build_vault(dir.path(), "v", true);
    assert!(targets::open_and_exercise(&path, true));
    assert!(targets::open_and_exercise(&path, false));
}

/// Writes the generated seeds: into `fuzz/corpus` when `CHARTVAULT_REGENERATE_CORPUS=1`
/// (run by hand to regenerate), otherwise into a scratch directory, checking that every
/// committed seed of the same name still exists (so a stale corpus is noticed).
#[test]
fn generate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scratch = tempfile::tempdir().expect("tempdir");
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("fuzz").join("corpus");
    let regenerate = std::env::var_os("CHARTVAULT_REGENERATE_CORPUS").is_some();
    let root = if regenerate { committed.clone() } else { scratch.path().to_path_buf() };
    let seeds = seeds(dir.path());
    assert!(!seeds.is_empty(), "the generator produces seeds");
    for (target, name, _) in &seeds {
        assert!(
            regenerate || committed.join(target).join(name).exists(),
            "seed {target}/{name} is not committed: regenerate the corpus"
        );
    }
    for (target, name, bytes) in seeds {
        let d = root.join(target);
        std::fs::create_dir_all(&d).expect("corpus dir");
        std::fs::write(d.join(name), bytes).expect("write seed");
    }
}
