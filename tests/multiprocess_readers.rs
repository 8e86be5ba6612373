//! Property: read-only handles in other processes never see a frame past a commit.
//! One writer process and two read-only reader processes (this test binary,
//! re-executed with `CHARTVAULT_MP_ROLE` set) share a vault file for about four
//! seconds. The writer commits batches of B new documents (sometimes for a new
//! patient) and batches of updates; each document carries a checksum the writer
//! computed over its content. Each reader opens with `read_only: true` and, in a loop,
//! calls `Store::refresh` (reloading the keyring with `Store::reload_keyring` when a
//! commit names a patient it does not know yet) and checks, at the store level:
//!
//! - the head never goes back and lies inside the bytes it mapped;
//! - the catalog counts each committed version once: every document's versions are
//!   exactly 1..n, at increasing offsets below the head;
//! - every patient's document count is a multiple of B (whole commits only);
//! - every version in the catalog decrypts (`Store::read_version`) and carries the
//!   writer's checksum and its own version number.
//!
//! When the writer is done it publishes its final commit number and counts; each
//! reader must then reach exactly that state.
//!
//! The writer's small commits overwrite the zero reserve after the log end in place
//! (docs/FORMAT.md §13.3): each reader also counts the refreshes whose new commits lie
//! entirely inside bytes it had already mapped (zeros when it mapped them), and must
//! have seen some.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chartvault::log::{FileStorage, Storage};
use chartvault::store::keyring_path;
use chartvault::{Document, DocumentId, Field, Label, NewDocument, Value, Vault, VaultKey, VaultOptions};
use common::{Rng, key, opts, physician};

const ROLE_ENV: &str = "CHARTVAULT_MP_ROLE";
const PATH_ENV: &str = "CHARTVAULT_MP_PATH";
const TEST_NAME: &str = "read_only_reader_processes_never_see_past_a_commit";
const B: usize = 3;
const WRITE_FOR: Duration = Duration::from_secs(4);
const MAX_PATIENTS: usize = 400;

fn patient(i: usize) -> String {
    format!("M{i}")
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

fn checksum(patient: &str, rev: i64, payload: &str) -> String {
    format!("{:016x}", fnv(&[patient.as_bytes(), &rev.to_le_bytes(), payload.as_bytes()]))
}

fn content(patient: &str, rev: i64, rng: &mut Rng) -> BTreeMap<String, Field> {
    let n = rng.range(8, 400) as usize;
    let payload: String = (0..n).map(|_| (b'a' + (rng.next_u64() % 26) as u8) as char).collect();
    let mut f = BTreeMap::new();
    f.insert("checksum".to_string(), Field::from(Value::Text(checksum(patient, rev, &payload))));
    f.insert("rev".to_string(), Field::from(Value::Integer(rev)));
    f.insert("payload".to_string(), Field::from(Value::Text(payload)));
    f
}

fn new_doc(patient: &str, rng: &mut Rng) -> NewDocument {
    let mut d = NewDocument::new(patient, "Observation").unwrap();
    d.fields = content(patient, 1, rng);
    d
}

fn done_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".done");
    PathBuf::from(s)
}

/// The writer's final state: (commit number, documents, versions).
type Final = (u64, usize, u64);

fn parse_final(s: &str) -> Final {
    let n: Vec<u64> = s.split_whitespace().map(|x| x.parse().expect("a number")).collect();
    (n[0], n[1] as usize, n[2])
}

fn run_writer(path: &Path) {
    let v = Vault::open(path, VaultKey::Raw(&key()), opts()).expect("writer opens read-write");
    let s = v.session(physician((0..MAX_PATIENTS).map(patient))).expect("session");
    let mut rng = Rng::from_time("multiprocess writer");
    let mut patients = 2usize;
    let mut ids: Vec<DocumentId> = v.store().read_state().catalog.docs.keys().copied().collect();
    let mut revs: HashMap<DocumentId, (String, i64)> = HashMap::new();
    for id in &ids {
        let e = v.store().read_state().catalog.docs[id].clone();
        let p = v.store().read_state().keyring.patient(e.patient_slot).expect("patient").to_string();
        revs.insert(*id, (p, i64::from(e.latest().version)));
    }
    let started = Instant::now();
    let mut commits = 0u64;
    while started.elapsed() < WRITE_FOR {
        let mut b = s.batch().expect("batch");
        if rng.range(0, 3) > 0 || ids.is_empty() {
            if commits % 5 == 4 && patients < MAX_PATIENTS {
                patients += 1;
            }
            // New patients arrive with their first batch.
            let p = if commits % 5 == 4 {
                patient(patients - 1)
            } else {
                patient(rng.range(0, patients as u64 - 1) as usize)
            };
            let staged: Vec<DocumentId> = (0..B).map(|_| b.put(&new_doc(&p, &mut rng)).expect("put")).collect();
            b.commit().expect("commit");
            for id in staged {
                ids.push(id);
                revs.insert(id, (p.clone(), 1));
            }
        } else {
            let mut staged: Vec<DocumentId> = Vec::new();
            for _ in 0..B {
                let id = ids[rng.range(0, ids.len() as u64 - 1) as usize];
                if staged.contains(&id) {
                    continue;
                }
                let (p, rev) = revs[&id].clone();
                b.update(&id, content(&p, rev + 1, &mut rng)).expect("update");
                staged.push(id);
            }
            b.commit().expect("commit");
            for id in staged {
                revs.get_mut(&id).expect("known").1 += 1;
            }
        }
        commits += 1;
        // A busy but not saturated writer, so readers keep up and verify everything.
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(s);
    v.flush_audit().expect("flush");
    let versions: i64 = revs.values().map(|(_, r)| r).sum();
    v.close().expect("close");
    // Closing may have written a checkpoint (one more commit): the final head is read
    // back from the file.
    let ro = VaultOptions { read_only: true, ..opts() };
    let head = Vault::open(path, VaultKey::Raw(&key()), ro).expect("reopen read-only").head().0;
    // Publish atomically: write, then rename.
    let tmp = done_path(path).with_extension("tmp");
    std::fs::write(&tmp, format!("{head} {} {versions}", revs.len())).expect("write the final state");
    std::fs::rename(&tmp, done_path(path)).expect("publish the final state");
    println!(
        "\nMP-RESULT writer commits={commits} head={head} patients={patients} docs={} versions={versions}",
        revs.len()
    );
}

/// What a reader checked.
#[derive(Debug, Default)]
struct ReaderStats {
    passes: u64,
    refreshes_with_commits: u64,
    keyring_reloads: u64,
    versions_checked: u64,
    /// Refreshes that found new commits inside bytes already mapped (the reserve).
    commits_in_reserve: u64,
}

fn check_version(d: &Document, want_version: u32, ctx: &str) {
    assert_eq!(d.version, want_version, "{ctx}: version");
    let rev = match d.get("rev") {
        Some(Value::Integer(r)) => *r,
        other => panic!("{ctx}: rev field {other:?}"),
    };
    assert_eq!(rev, i64::from(d.version), "{ctx}: the content of revision {rev} is filed under version {}", d.version);
    let (Some(Value::Text(payload)), Some(Value::Text(sum))) = (d.get("payload"), d.get("checksum")) else {
        panic!("{ctx}: fields missing: {:?}", d.fields.keys().collect::<Vec<_>>());
    };
    assert_eq!(sum, &checksum(&d.patient, rev, payload), "{ctx}: checksum");
}

/// One pass over the reader's view. Returns the head commit number.
fn check_view(v: &Vault, checked: &mut HashSet<(DocumentId, u32)>, last_head: u64, stats: &mut ReaderStats) -> u64 {
    let store = v.store();
    let (head, map_len, docs, versions, by_patient) = {
        let st = store.read_state();
        let docs: Vec<(DocumentId, Vec<chartvault::store::VersionLoc>)> =
            st.catalog.docs.iter().map(|(id, e)| (*id, e.versions.to_vec())).collect();
        let by_patient: Vec<(u32, usize)> = st.catalog.by_patient.iter().map(|(s, ids)| (*s, ids.len())).collect();
        (st.head, st.map.bytes().len() as u64, docs, st.catalog.versions, by_patient)
    };
    let ctx = format!("reader {} at commit {}", std::process::id(), head.commit_number);
    assert!(head.commit_number >= last_head, "{ctx}: head went back from {last_head}");
    assert!(head.end <= map_len, "{ctx}: head {} past the mapped {map_len} bytes", head.end);
    let counted: u64 = docs.iter().map(|(_, v)| v.len() as u64).sum();
    assert_eq!(versions, counted, "{ctx}: the catalog counts {versions} versions but lists {counted}");
    for (slot, n) in by_patient {
        assert_eq!(n % B, 0, "{ctx}: patient slot {slot} has {n} documents, not whole batches of {B}");
    }
    let all = |_: &[Label]| true;
    for (id, locs) in &docs {
        for (i, loc) in locs.iter().enumerate() {
            assert_eq!(
                loc.version as usize,
                i + 1,
                "{ctx}: {id} has versions {:?}",
                locs.iter().map(|l| l.version).collect::<Vec<_>>()
            );
            assert!(i == 0 || loc.offset > locs[i - 1].offset, "{ctx}: {id} versions out of log order");
            assert!(
                loc.offset < head.end,
                "{ctx}: {id} v{} at {} is past the head {}",
                loc.version,
                loc.offset,
                head.end
            );
            if checked.insert((*id, loc.version)) {
                let d = store
                    .read_version(loc.offset, &all)
                    .unwrap_or_else(|e| panic!("{ctx}: {id} v{}: {e}", loc.version));
                assert_eq!(d.id, *id, "{ctx}");
                check_version(&d, loc.version, &format!("{ctx}: {id}"));
                stats.versions_checked += 1;
            }
        }
    }
    head.commit_number
}

fn run_reader(path: &Path) {
    let ro = VaultOptions { read_only: true, ..opts() };
    let v = Vault::open(path, VaultKey::Raw(&key()), ro).expect("reader opens read-only");
    let kpath = keyring_path(path);
    let keyring: Arc<dyn Storage> =
        Arc::new(FileStorage::new(File::open(&kpath).expect("open the keyring read-only"), kpath.clone()));
    let mut stats = ReaderStats::default();
    let mut checked = HashSet::new();
    let mut head = check_view(&v, &mut checked, 0, &mut stats);
    let deadline = Instant::now() + Duration::from_secs(40);
    let final_state = loop {
        // Read the marker before refreshing: a refresh after it sees the final commit.
        let done = std::fs::read_to_string(done_path(path)).ok();
        // A commit may name a patient this handle does not know yet: reload the
        // keyring and refresh again (more patients may have arrived meanwhile, so a
        // few rounds may be needed; each round applies more commits).
        let mapped_before = v.store().read_state().map.bytes().len() as u64;
        let mut new = 0;
        for round in 0.. {
            match v.store().refresh(&mut |_| Ok(())) {
                Ok(n) => {
                    new += n;
                    break;
                }
                Err(e) => {
                    assert!(round < 100, "refresh keeps failing after reloading the keyring: {e}");
                    stats.keyring_reloads += 1;
                    v.store().reload_keyring(keyring.clone()).expect("reload the keyring");
                }
            }
        }
        stats.refreshes_with_commits += u64::from(new > 0);
        stats.commits_in_reserve += u64::from(new > 0 && v.store().read_state().head.end <= mapped_before);
        head = check_view(&v, &mut checked, head, &mut stats);
        stats.passes += 1;
        if let Some(done) = done {
            break parse_final(&done);
        }
        assert!(Instant::now() < deadline, "the writer did not finish in time");
    };
    let (commit, docs, versions) = final_state;
    assert_eq!(head, commit, "the reader reaches the writer's final commit");
    assert_eq!(v.stats(), (versions, docs), "the reader sees the writer's final documents");
    println!("\nMP-RESULT reader {stats:?}");
}

fn spawn(role: &str, path: &Path) -> Child {
    Command::new(std::env::current_exe().expect("test binary"))
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, role)
        .env(PATH_ENV, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn a child process")
}

fn wait(mut child: Child, deadline: Instant) -> Output {
    while child.try_wait().expect("poll the child").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("collect the child's output")
}

fn result_line(out: &Output, who: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{who} failed ({}):\n{stdout}\n{stderr}", out.status);
    let line = stdout.lines().find_map(|l| l.find("MP-RESULT").map(|at| &l[at..]));
    line.unwrap_or_else(|| panic!("{who} printed no result:\n{stdout}")).to_string()
}

#[test]
fn read_only_reader_processes_never_see_past_a_commit() {
    if let Ok(role) = std::env::var(ROLE_ENV) {
        let path = PathBuf::from(std::env::var_os(PATH_ENV).expect("vault path"));
        match role.as_str() {
            "writer" => run_writer(&path),
            "reader" => run_reader(&path),
            other => panic!("unknown role {other}"),
        }
        return;
    }
    let dir = common::scratch_dir();
    let path = dir.path().join("shared.cv");
    {
        let v = Vault::create(&path, VaultKey::Raw(&key()), opts()).expect("create");
        let s = v.session(physician([patient(0), patient(1)])).expect("session");
        let mut rng = Rng::new(7);
        for p in [patient(0), patient(1)] {
            let mut b = s.batch().expect("batch");
            for _ in 0..B {
                b.put(&new_doc(&p, &mut rng)).expect("put");
            }
            b.commit().expect("commit");
        }
        drop(s);
        v.close().expect("close");
    }
    let started = Instant::now();
    let readers = [spawn("reader", &path), spawn("reader", &path)];
    let writer = spawn("writer", &path);
    let deadline = Instant::now() + Duration::from_secs(50);
    let w = result_line(&wait(writer, deadline), "writer");
    let r: Vec<String> =
        readers.into_iter().enumerate().map(|(i, c)| result_line(&wait(c, deadline), &format!("reader {i}"))).collect();
    eprintln!("{w}\n{}\n{}\n{:.1?}", r[0], r[1], started.elapsed());
    let field = |line: &str, name: &str| -> u64 {
        let at = line.find(&format!("{name}: ")).unwrap_or_else(|| panic!("{name} in {line}")) + name.len() + 2;
        line[at..].split(|c: char| !c.is_ascii_digit()).next().and_then(|n| n.parse().ok()).expect("a number")
    };
    for line in &r {
        assert!(field(line, "refreshes_with_commits") >= 5, "the reader ran alongside the writer: {line}");
        assert!(field(line, "keyring_reloads") >= 1, "new patients reached the reader: {line}");
        assert!(field(line, "commits_in_reserve") >= 1, "commits overwrote the reserve under the reader: {line}");
    }
    let v = Vault::open(&path, VaultKey::Raw(&key()), opts()).expect("reopen");
    let rep = v.verify().expect("verify");
    assert!(rep.is_clean() && rep.torn_tail.is_none(), "verify: {rep:?}");
}
