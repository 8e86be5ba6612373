//! Property: under sustained concurrent use (one writer thread and six reader threads
//! for about five seconds, all through sessions, with every read audited) readers
//! only ever see consistent, committed states:
//!
//! - every document a reader sees is internally consistent: its `checksum` field,
//!   computed by the writer over patient, serial, revision and payload, matches, and
//!   its `rev` field equals its version number (content and version come from the
//!   same commit);
//! - a chart's size is always a multiple of the writer's batch size B (new documents
//!   arrive B at a time, in one commit), never shrinks, and includes every batch the
//!   writer had acknowledged before the read began;
//! - a document's version never goes backwards, a history is exactly versions 1..n,
//!   and the vault's head commit number never goes backwards.
//!
//! Checked continuously by each reader; at the end the vault is reopened and must
//! verify clean, with an intact audit trail and exactly the writer's final state.

mod common;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chartvault::{Document, DocumentId, Field, NewDocument, Value, Vault, VaultKey};
use common::{Rng, key, opts, physician};

const READERS: usize = 6;
const B: usize = 4;
const PATIENTS: usize = 8;
const RUN: Duration = Duration::from_secs(5);

fn patient(i: usize) -> String {
    format!("S{i}")
}

fn patients() -> Vec<String> {
    (0..PATIENTS).map(patient).collect()
}

fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.iter().chain(&[0xff]) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

fn checksum(patient: &str, serial: i64, rev: i64, payload: &str) -> String {
    format!("{:016x}", fnv(&[patient.as_bytes(), &serial.to_le_bytes(), &rev.to_le_bytes(), payload.as_bytes()]))
}

fn payload(rng: &mut Rng) -> String {
    let n = rng.range(16, 600) as usize;
    (0..n).map(|_| (b'a' + (rng.next_u64() % 26) as u8) as char).collect()
}

fn fields(patient: &str, serial: i64, rev: i64, payload: String) -> Vec<(&'static str, Value)> {
    let sum = checksum(patient, serial, rev, &payload);
    vec![
        ("serial", Value::Integer(serial)),
        ("rev", Value::Integer(rev)),
        ("payload", Value::Text(payload)),
        ("checksum", Value::Text(sum)),
    ]
}

fn int(d: &Document, name: &str) -> i64 {
    match d.get(name) {
        Some(Value::Integer(i)) => *i,
        other => panic!("document {} field {name}: {other:?}", d.id),
    }
}

fn text<'d>(d: &'d Document, name: &str) -> &'d str {
    match d.get(name) {
        Some(Value::Text(s)) => s,
        other => panic!("document {} field {name}: {other:?}", d.id),
    }
}

/// Panics unless `d` is internally consistent.
fn check_doc(d: &Document, ctx: &str) {
    assert!(d.redacted.is_empty(), "{ctx}: {} redacted", d.id);
    let (serial, rev) = (int(d, "serial"), int(d, "rev"));
    assert_eq!(rev, i64::from(d.version), "{ctx}: {} content of revision {rev} under version {}", d.id, d.version);
    let want = checksum(&d.patient, serial, rev, text(d, "payload"));
    assert_eq!(text(d, "checksum"), want, "{ctx}: {} v{} checksum mismatch", d.id, d.version);
}

/// What the writer has acknowledged.
#[derive(Default)]
struct Shared {
    /// Documents per patient whose commit has returned.
    acked_docs: [AtomicUsize; PATIENTS],
    /// Every acknowledged document: id -> (patient index, latest acknowledged revision).
    docs: Mutex<HashMap<DocumentId, (usize, i64)>>,
    /// Ids readers may pick from.
    ids: Mutex<Vec<DocumentId>>,
    commits: AtomicU64,
}

fn writer(v: &Vault, shared: &Shared, stop: &AtomicBool, mut rng: Rng) {
    let s = v.session(physician(patients())).expect("writer session");
    let mut serial = 0i64;
    while !stop.load(Ordering::Relaxed) {
        let ids: Vec<DocumentId> = shared.ids.lock().unwrap().clone();
        if ids.len() < B || rng.range(0, 9) < 7 {
            // A batch of B new documents for one patient.
            let p = rng.range(0, PATIENTS as u64 - 1) as usize;
            let mut b = s.batch().expect("batch");
            let mut staged = Vec::new();
            for _ in 0..B {
                serial += 1;
                let mut d = NewDocument::new(&patient(p), "Observation").unwrap();
                for (n, val) in fields(&patient(p), serial, 1, payload(&mut rng)) {
                    d = d.with(n, val);
                }
                staged.push(b.put(&d).expect("put"));
            }
            b.commit().expect("commit");
            let mut docs = shared.docs.lock().unwrap();
            for id in &staged {
                docs.insert(*id, (p, 1));
            }
            drop(docs);
            shared.ids.lock().unwrap().extend(&staged);
            shared.acked_docs[p].fetch_add(B, Ordering::Release);
        } else {
            // New revisions of up to B documents, one commit.
            let mut b = s.batch().expect("batch");
            let mut staged = Vec::new();
            for _ in 0..B {
                let id = ids[rng.range(0, ids.len() as u64 - 1) as usize];
                if staged.iter().any(|(x, _)| *x == id) {
                    continue;
                }
                let (p, rev) = shared.docs.lock().unwrap()[&id];
                let serial = 1_000_000 + rev;
                let f: std::collections::BTreeMap<String, Field> =
                    fields(&patient(p), serial, rev + 1, payload(&mut rng))
                        .into_iter()
                        .map(|(n, val)| (n.to_string(), Field::from(val)))
                        .collect();
                b.update(&id, f).expect("update");
                staged.push((id, rev + 1));
            }
            b.commit().expect("commit");
            let mut docs = shared.docs.lock().unwrap();
            for (id, rev) in staged {
                docs.get_mut(&id).expect("known").1 = rev;
            }
        }
        shared.commits.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Default, Debug)]
struct ReaderStats {
    charts: u64,
    gets: u64,
    histories: u64,
    docs_checked: u64,
}

/// Checks `d` and that its version did not go back from the last one this reader saw.
fn seen(d: &Document, version: &mut HashMap<DocumentId, u32>, ctx: &str) {
    check_doc(d, ctx);
    let last = version.entry(d.id).or_insert(0);
    assert!(d.version >= *last, "{ctx}: {} went back from version {last} to {}", d.id, d.version);
    *last = d.version;
}

fn reader(v: &Vault, shared: &Shared, stop: &AtomicBool, mut rng: Rng, who: usize) -> ReaderStats {
    let s = v.session(physician(patients())).expect("reader session");
    let mut stats = ReaderStats::default();
    let mut chart_len = [0usize; PATIENTS];
    let mut version: HashMap<DocumentId, u32> = HashMap::new();
    let mut head = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let h = v.head().0;
        assert!(h >= head, "reader {who}: head went back from commit {head} to {h}");
        head = h;
        match rng.range(0, 3) {
            0 | 1 => {
                let p = rng.range(0, PATIENTS as u64 - 1) as usize;
                let acked = shared.acked_docs[p].load(Ordering::Acquire);
                let docs = s.chart(&patient(p)).expect("chart");
                let ctx = format!("reader {who}, chart of {}", patient(p));
                assert_eq!(docs.len() % B, 0, "{ctx}: {} documents, not whole batches of {B}", docs.len());
                assert!(docs.len() >= acked, "{ctx}: {} documents but {acked} were acknowledged", docs.len());
                assert!(docs.len() >= chart_len[p], "{ctx}: shrank from {} to {}", chart_len[p], docs.len());
                chart_len[p] = docs.len();
                for d in &docs {
                    assert_eq!(d.patient, patient(p), "{ctx}");
                    seen(d, &mut version, &ctx);
                }
                stats.docs_checked += docs.len() as u64;
                stats.charts += 1;
            }
            2 => {
                let id = {
                    let ids = shared.ids.lock().unwrap();
                    if ids.is_empty() {
                        continue;
                    }
                    ids[rng.range(0, ids.len() as u64 - 1) as usize]
                };
                let d = s.get(&id).expect("get");
                seen(&d, &mut version, &format!("reader {who}, get"));
                stats.gets += 1;
                stats.docs_checked += 1;
            }
            _ => {
                let id = {
                    let ids = shared.ids.lock().unwrap();
                    if ids.is_empty() {
                        continue;
                    }
                    ids[rng.range(0, ids.len() as u64 - 1) as usize]
                };
                let hist = s.history(&id).expect("history");
                let ctx = format!("reader {who}, history of {id}");
                for (i, d) in hist.iter().enumerate() {
                    assert_eq!(d.version as usize, i + 1, "{ctx}: versions are 1..n");
                    check_doc(d, &ctx);
                }
                let last = hist.last().expect("a history has a version");
                seen(last, &mut version, &ctx);
                stats.histories += 1;
                stats.docs_checked += hist.len() as u64;
            }
        }
    }
    stats
}

#[test]
fn readers_and_writer_under_load_only_see_consistent_committed_states() {
    let dir = common::scratch_dir();
    let path = dir.path().join("stress.cv");
    let v = Vault::create(&path, VaultKey::Raw(&key()), opts()).expect("create");
    let shared = Shared::default();
    let stop = AtomicBool::new(false);
    let mut seeds = Rng::from_time("stress_readers_writer");
    let started = Instant::now();
    let reader_stats: Vec<ReaderStats> = std::thread::scope(|sc| {
        let w = {
            let rng = Rng::new(seeds.next_u64());
            let (v, shared, stop) = (&v, &shared, &stop);
            sc.spawn(move || writer(v, shared, stop, rng))
        };
        let readers: Vec<_> = (0..READERS)
            .map(|who| {
                let rng = Rng::new(seeds.next_u64());
                let (v, shared, stop) = (&v, &shared, &stop);
                sc.spawn(move || reader(v, shared, stop, rng, who))
            })
            .collect();
        while started.elapsed() < RUN && !w.is_finished() && !readers.iter().any(|r| r.is_finished()) {
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::Relaxed);
        let w = w.join();
        let stats: Vec<_> = readers.into_iter().map(|r| r.join()).collect();
        w.expect("the writer thread never panics");
        stats.into_iter().map(|r| r.expect("no reader thread panics")).collect()
    });
    let commits = shared.commits.load(Ordering::Relaxed);
    let docs = shared.docs.lock().unwrap().clone();
    let versions: i64 = docs.values().map(|(_, r)| r).sum();
    eprintln!("{commits} writer commits, {} documents, {versions} versions in {:.1?}", docs.len(), started.elapsed());
    for (i, s) in reader_stats.iter().enumerate() {
        eprintln!("reader {i}: {s:?}");
    }
    assert!(commits >= 20, "the writer made progress: {commits} commits");
    assert!(docs.values().any(|(_, rev)| *rev > 1), "some documents were updated");
    for (i, s) in reader_stats.iter().enumerate() {
        assert!(s.charts >= 5 && s.gets + s.histories >= 2, "reader {i} made progress: {s:?}");
    }
    v.close().expect("close");

    // The final state, after a reopen.
    let v = Vault::open(&path, VaultKey::Raw(&key()), opts()).expect("reopen");
    let rep = v.verify().expect("verify");
    assert!(rep.is_clean() && rep.torn_tail.is_none(), "verify: {rep:?}");
    assert_eq!(rep.records as i64, versions, "every acknowledged version is in the file, nothing else");
    let audit = chartvault::audit::trail::verify(v.store()).expect("audit verify");
    assert!(audit.is_intact(), "audit trail: {:?}", audit.problems);
    let s = v.session(physician(patients())).expect("session");
    for (p, n) in shared.acked_docs.iter().enumerate() {
        let chart = s.chart(&patient(p)).expect("chart");
        assert_eq!(chart.len(), n.load(Ordering::Relaxed), "final chart of {}", patient(p));
        for d in &chart {
            check_doc(d, "final");
            assert_eq!(i64::from(d.version), docs[&d.id].1, "final version of {}", d.id);
        }
    }
}
