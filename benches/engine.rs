//! Criterion benches of the engine's operations, on the same synthetic documents as
//! the side-by-side comparison (`bench/`): ~1 KiB, 17 fields in four label groups.
//!
//! `cargo bench --bench engine` (a few minutes). The large vault for the open benches
//! has `CHARTVAULT_BENCH_DOCS` documents (default 100,000); it is built once, in a
//! temporary directory on the system temp dir (a real disk: fsync costs what it costs).
//! Sessions are a physician with a care relationship, audit on, as in the comparison.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chartvault::access::{Policy, Principal, Purpose, Role};
use chartvault::crypto::aead;
use chartvault::{
    Coding, Date, DateTime, DocumentId, Label, NewDocument, SecretKey, Session, Value, Vault, VaultKey, VaultOptions,
};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

#[allow(dead_code)]
#[path = "../bench/src/workload.rs"]
mod workload;

use workload::{Params, Record};

fn params(docs: u64) -> Params {
    Params {
        docs,
        batch: 1000,
        single_commits: 0,
        point_reads: 0,
        charts: 0,
        code_queries: 0,
        range_queries: 0,
        range_days: 7,
        opens: 0,
        seed: 42,
        sql_cache_mib: 0,
        dir: String::new(),
    }
}

fn new_document(r: &Record) -> NewDocument {
    let demo = || vec![Label::demographics()];
    let fin = || vec![Label::financial()];
    let dec = |s: &str| Value::Decimal(s.parse().expect("decimal"));
    let date = |d: i32| Value::Date(Date::from_days(d).expect("date"));
    NewDocument::new(&r.patient, r.kind)
        .expect("kind")
        .with_labeled("name", Value::Text(r.name.clone()), demo())
        .with_labeled("birthDate", date(r.birth_date), demo())
        .with_labeled("address", Value::Text(r.address.clone()), demo())
        .with_labeled("phone", Value::Text(r.phone.clone()), demo())
        .with("code", Value::from(Coding::new(r.system, &r.code, Some(&r.display))))
        .with("effective", date(r.effective))
        .with("issued", Value::DateTime(DateTime::from_unix_micros(r.issued_s * 1_000_000)))
        .with("status", Value::Text(r.status.into()))
        .with("category", Value::Text(r.category.into()))
        .with("value", dec(&r.value))
        .with("unit", Value::Text(r.unit.into()))
        .with("interpretation", Value::Text(r.interpretation.into()))
        .with("performer", Value::Text(r.performer.clone()))
        .with("note", Value::Text(r.note.clone()))
        .with_labeled("billingCode", Value::Text(r.billing_code.clone()), fin())
        .with_labeled("charge", dec(&r.charge), fin())
        .with_labeled("payer", Value::Text(r.payer.into()), fin())
        .with_labeled("claimId", Value::Text(r.claim_id.clone()), fin())
}

/// Hospital default policy; physician/TREAT also granted `financial` (see bench/src/cv.rs).
/// Closing writes no checkpoint: each open bench times the path it names on every
/// iteration (the recovery bench replays the whole log each time).
fn options() -> VaultOptions {
    let mut p = Policy::hospital_default();
    for g in &mut p.grants {
        if g.roles.contains(&Role::physician())
            && g.purposes.contains(&Purpose::Treat)
            && !g.labels.contains(&Label::financial())
        {
            g.labels.push(Label::financial());
        }
    }
    VaultOptions { initial_policy: p, checkpoint_at_close: 0, ..VaultOptions::default() }
}

fn physician(p: &Params) -> Principal {
    Principal::new("dr.bench", Role::physician(), "general", Purpose::Treat)
        .with_care_team((0..p.patients()).map(workload::patient_id))
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("chartvault-bench").tempdir().expect("temporary directory")
}

/// A vault holding `p.docs` documents, loaded in batches of 1,000; returns the ids.
fn build(path: &Path, key: &SecretKey, p: &Params, checkpoint: bool) -> Vec<DocumentId> {
    let v = Vault::create(path, VaultKey::Raw(key), VaultOptions { checkpoint_every: 0, ..options() }).expect("create");
    let s = v.session(physician(p)).expect("session");
    let mut ids = Vec::with_capacity(p.docs as usize);
    let mut i = 0;
    while i < p.docs {
        let mut b = s.batch().expect("batch");
        for j in i..(i + p.batch).min(p.docs) {
            ids.push(b.put(&new_document(&workload::record(p, j))).expect("put"));
        }
        b.commit().expect("commit");
        i += p.batch;
    }
    if checkpoint {
        v.checkpoint().expect("checkpoint");
    }
    drop(s);
    v.close().expect("close");
    ids
}

fn aead_benches(c: &mut Criterion) {
    let p = params(1);
    let rec = workload::record(&p, 0);
    // One field group of ~1 KiB: the document's JSON, padded or cut to 1,024 bytes.
    let mut group_bytes = rec.json.into_bytes();
    group_bytes.resize(1024, b' ');
    let key = SecretKey::random();
    let aad = aead::aad("chartvault bench", &[b"doc", b"label"]);
    let mut sealed = Vec::new();
    aead::seal(&key, &aad, &group_bytes, &mut sealed);
    let mut g = c.benchmark_group("aead");
    g.throughput(Throughput::Bytes(1024));
    g.bench_function("seal_1KiB", |b| {
        let mut out = Vec::with_capacity(2048);
        b.iter(|| {
            out.clear();
            aead::seal(&key, &aad, black_box(&group_bytes), &mut out);
            black_box(out.len())
        })
    });
    g.bench_function("open_1KiB", |b| b.iter(|| aead::open(&key, &aad, black_box(&sealed)).expect("open").len()));
    g.finish();

    // Opening in place, at the sizes of a record's parts, against the
    // `chacha20poly1305` crate that `crypto::aead`'s composition replaced (the same
    // bytes; `src/crypto/xchacha_poly.rs` says why it is faster on short messages).
    use chacha20poly1305::aead::{AeadInOut, KeyInit};
    let key_bytes = [7u8; 32];
    let (key, nonce) = (SecretKey::from_bytes(key_bytes), aead::random_nonce());
    let reference = chacha20poly1305::XChaCha20Poly1305::new((&key_bytes).into());
    let mut g = c.benchmark_group("aead_open_in_place");
    for len in [64usize, 250, 600, 16 * 1024] {
        let mut sealed = Vec::new();
        aead::seal_detached_nonce(&key, &nonce, &aad, &group_bytes.repeat(16)[..len], &mut sealed);
        g.throughput(Throughput::Bytes(len as u64));
        let mut buf = sealed.clone();
        g.bench_function(format!("chartvault/{len}"), |b| {
            b.iter(|| {
                buf.copy_from_slice(&sealed);
                aead::open_detached_nonce(&key, &nonce, &aad, black_box(&mut buf)).expect("open").len()
            })
        });
        g.bench_function(format!("chacha20poly1305/{len}"), |b| {
            b.iter(|| {
                buf.copy_from_slice(&sealed);
                let (ct, tag) = buf.split_at_mut(len);
                let tag: [u8; aead::TAG_LEN] = (&*tag).try_into().expect("tag");
                reference.decrypt_inout_detached(&nonce.into(), &aad, black_box(ct).into(), &tag.into()).expect("open");
            })
        });
    }
    g.finish();
}

/// Sealing and opening one label group as the engine does for every document: the
/// group key from the per-patient cache, the group body encoded (postcard), the AAD
/// naming the vault, document, version, group, labels and field names, and
/// XChaCha20-Poly1305 with the part's derived nonce; opening decrypts a copy in place
/// and decodes the fields.
fn field_group_benches(c: &mut Criterion) {
    use chartvault::crypto::KeyHierarchy;
    use chartvault::format::body;
    use chartvault::model::Field;
    use chartvault::store::record;
    let keys = KeyHierarchy::new(SecretKey::random(), [7; 16]);
    let patient_key = SecretKey::random();
    let labels = [Label::normal()];
    let generations = [1u32];
    let names = ["code", "effective", "status", "value", "note"];
    let fields: Vec<Field> = vec![
        Value::from(Coding::new("http://loinc.org", "4548-4", Some("Hemoglobin A1c"))).into(),
        Value::Date(Date::parse("2024-03-14").expect("date")).into(),
        Value::Text("final".into()).into(),
        Value::Integer(64).into(),
        Value::Text("Fasting sample; repeat in three months if the value stays above target. ".repeat(3)).into(),
    ];
    let field_refs: Vec<&Field> = fields.iter().collect();
    let id = DocumentId([3; 16]);
    let record_nonce = aead::random_nonce();
    let nonce = record::part_nonce(&record_nonce, 1);
    let seal = |out: &mut Vec<u8>| {
        let gk = keys.group_key_for(0, &labels, &generations, &patient_key);
        let pt = body::encode_group(&field_refs, &labels).expect("encode");
        let aad = record::group_aad(&keys.vault_id(), &id, 1, 0, &labels, &names);
        aead::seal_detached_nonce(&gk, &nonce, &aad, &pt, out);
    };
    let mut sealed = Vec::new();
    seal(&mut sealed);
    let mut g = c.benchmark_group("field_group");
    g.throughput(Throughput::Bytes(sealed.len() as u64));
    g.bench_function("seal_5_fields", |b| {
        let mut out = Vec::with_capacity(1024);
        b.iter(|| {
            out.clear();
            seal(&mut out);
            black_box(out.len())
        })
    });
    g.bench_function("open_5_fields", |b| {
        let mut copy = Vec::with_capacity(1024);
        b.iter(|| {
            copy.clear();
            copy.extend_from_slice(black_box(&sealed));
            let gk = keys.group_key_for(0, &labels, &generations, &patient_key);
            let aad = record::group_aad(&keys.vault_id(), &id, 1, 0, &labels, &names);
            let pt = aead::open_detached_nonce(&gk, &nonce, &aad, &mut copy).expect("open");
            body::decode_group(pt, &labels, 0).expect("decode").len()
        })
    });
    g.finish();
}

fn write_benches(c: &mut Criterion) {
    let dir = tempdir();
    let p = params(20_000);
    let key = SecretKey::random();
    let v =
        Vault::create(&dir.path().join("w.cv"), VaultKey::Raw(&key), VaultOptions { checkpoint_every: 0, ..options() })
            .expect("create");
    let s = v.session(physician(&p)).expect("session");
    let mut next = 0u64;
    let mut g = c.benchmark_group("write");
    g.sample_size(20).measurement_time(Duration::from_secs(8));
    g.bench_function("put_durable", |b| {
        b.iter_batched(
            || {
                next += 1;
                new_document(&workload::record(&p, next % 20_000))
            },
            |d| s.put(&d).expect("put"),
            BatchSize::SmallInput,
        )
    });
    g.throughput(Throughput::Elements(1000));
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    // The same 1,000 documents a batch at a time, staged with `put` each or `put_all`.
    for (name, all_at_once) in [("batch_commit_1000", false), ("batch_put_all_commit_1000", true)] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    next += 1000;
                    (0..1000).map(|i| new_document(&workload::record(&p, (next + i) % 20_000))).collect::<Vec<_>>()
                },
                |docs| {
                    let mut bt = s.batch().expect("batch");
                    if all_at_once {
                        bt.put_all(&docs).expect("put_all");
                    } else {
                        for d in &docs {
                            bt.put(d).expect("put");
                        }
                    }
                    bt.commit().expect("commit")
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
    drop(s);
    v.close().expect("close");
}

fn read_benches(c: &mut Criterion) {
    let dir = tempdir();
    let p = params(20_000);
    let key = SecretKey::random();
    let path = dir.path().join("r.cv");
    let ids = build(&path, &key, &p, true);
    let v = Vault::open(&path, VaultKey::Raw(&key), options()).expect("open");
    let s: Session = v.session(physician(&p)).expect("session");
    let mut r = workload::Rng::new(7);
    let mut g = c.benchmark_group("read");
    g.sample_size(30);
    g.bench_function("get", |b| b.iter(|| s.get(&ids[r.below(ids.len() as u64) as usize]).expect("get").fields.len()));
    g.bench_function("chart_20_docs", |b| {
        b.iter(|| {
            let d = s.chart(&workload::patient_id(r.below(p.patients()))).expect("chart");
            assert_eq!(d.len(), 20);
            d.len()
        })
    });
    // 400 codes over 20,000 documents: ~50 documents per code.
    g.bench_function("query_code", |b| {
        b.iter(|| {
            let (sys, code, _, _) = workload::code_of(r.below(workload::CODES));
            s.query_str(&format!("code = {sys}:{code} limit 10000")).expect("query").documents.len()
        })
    });
    // 7-day windows: ~77 documents each.
    g.bench_function("query_date_range_7d", |b| {
        b.iter(|| {
            let from = workload::FIRST_DAY + r.below((workload::DAY_SPAN - 7) as u64) as i32;
            let q = format!(
                "effective >= {} and effective < {} limit 10000",
                workload::date_string(from),
                workload::date_string(from + 7)
            );
            s.query_str(&q).expect("query").documents.len()
        })
    });
    g.finish();
    drop(s);
    v.close().expect("close");
}

fn copy_vault(src: &Path, dst: &Path) {
    std::fs::copy(src, dst).expect("copy data");
    std::fs::copy(chartvault::store::keyring_path(src), chartvault::store::keyring_path(dst)).expect("copy keyring");
}

fn open_benches(c: &mut Criterion) {
    let docs = std::env::var("CHARTVAULT_BENCH_DOCS").ok().and_then(|s| s.parse().ok()).unwrap_or(100_000u64);
    let dir = tempdir();
    let p = params(docs);
    let key = SecretKey::random();
    let path: PathBuf = dir.path().join("large.cv");
    eprintln!("building a vault of {docs} documents for the open benches ...");
    build(&path, &key, &p, true);
    let no_ckpt = dir.path().join("large-no-checkpoint.cv");
    copy_vault(&path, &no_ckpt);
    {
        let v = Vault::open(&no_ckpt, VaultKey::Raw(&key), options()).expect("open");
        v.store().set_checkpoint_pointer(0).expect("drop checkpoint pointer");
        v.close().expect("close");
    }
    let mut g = c.benchmark_group("open");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function(format!("open_raw_key_{docs}_docs_checkpoint"), |b| {
        b.iter(|| {
            let v = Vault::open(&path, VaultKey::Raw(&key), options()).expect("open");
            let n = v.stats().1;
            v.close().expect("close");
            n
        })
    });
    g.bench_function(format!("recovery_open_{docs}_docs_no_checkpoint"), |b| {
        b.iter(|| {
            let v = Vault::open(&no_ckpt, VaultKey::Raw(&key), options()).expect("open");
            let n = v.stats().1;
            v.close().expect("close");
            n
        })
    });
    g.finish();
}

criterion_group!(benches, aead_benches, field_group_benches, write_benches, read_benches, open_benches);
criterion_main!(benches);
