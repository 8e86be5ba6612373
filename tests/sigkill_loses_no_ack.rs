//! Property: committed means durable across a process kill. A child process (this
//! test binary, re-executed in child mode) writes a stream of commits to a vault and
//! prints each document id to a pipe only after `commit` returned. The parent kills
//! it with SIGKILL after a random delay, reopens the vault read-write, and checks that
//! every acknowledged document is there with exactly the content written. One vault
//! is reused across at least 200 trials, so it grows and recovery runs on every kind
//! of tail the kills leave.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chartvault::{DocumentId, NewDocument, Value, Vault, VaultKey};
use common::{Rng, key, opts, physician};

const CHILD_ENV: &str = "CHARTVAULT_SIGKILL_CHILD";
const TEST_NAME: &str = "sigkill_never_loses_an_acknowledged_commit";
const TRIALS: u32 = 200;

fn patients(trial: u32) -> Vec<String> {
    (0..3).map(|i| format!("T{trial}-P{i}")).collect()
}

/// The document number `j` of commit `n` of trial `trial`: content is a function of
/// the three numbers, so the parent can check it.
fn make_doc(trial: u32, n: u64, j: u64) -> NewDocument {
    let p = &patients(trial)[(n % 3) as usize];
    let mut d = NewDocument::new(p, "Observation")
        .unwrap()
        .with("value", Value::Integer(i64::from(trial) * 1_000_000_000 + n as i64 * 10 + j as i64))
        .with("note", Value::Text(format!("trial {trial} commit {n} document {j}")));
    if j == 1 {
        d = d.with("code", Value::from(chartvault::Coding::new("loinc", &format!("{n}-{j}"), None)));
    }
    d
}

fn attachment_bytes(trial: u32, n: u64) -> Vec<u8> {
    (0..4096u64).map(|i| (i.wrapping_mul(31) ^ n ^ u64::from(trial)) as u8).collect()
}

/// Child mode: open the vault, then commit forever, acknowledging each document on
/// stdout after its commit returned. The parent kills the process.
fn child(spec: &str) {
    let (path, trial) = spec.rsplit_once('|').expect("child spec path|trial");
    let trial: u32 = trial.parse().unwrap();
    let vault = Vault::open(Path::new(path), VaultKey::Raw(&key()), opts()).expect("child opens the vault");
    let s = vault.session(physician(patients(trial))).unwrap();
    let mut out = std::io::stdout().lock();
    writeln!(out, "\nREADY").unwrap();
    out.flush().unwrap();
    for n in 0..1_000_000u64 {
        let mut b = s.batch().unwrap();
        // Every fourth commit is a batch of three documents, one with an attachment.
        let count = if n % 4 == 3 { 3 } else { 1 };
        let mut ids = Vec::new();
        for j in 0..count {
            let mut d = make_doc(trial, n, j);
            if j == 2 {
                let a = b.put_attachment("application/octet-stream", &mut &attachment_bytes(trial, n)[..]).unwrap();
                d = d.with("blob", Value::from(a));
            }
            ids.push((j, b.put(&d).unwrap()));
        }
        b.commit().unwrap();
        for (j, id) in ids {
            writeln!(out, "\nACK {trial} {n} {j} {id}").unwrap();
        }
        out.flush().unwrap();
    }
}

#[derive(Debug, Clone, Copy)]
struct Ack {
    trial: u32,
    n: u64,
    j: u64,
    id: DocumentId,
}

fn parse_ack(line: &str) -> Option<Ack> {
    let rest = &line[line.find("ACK ")? + 4..];
    let mut it = rest.split_whitespace();
    Some(Ack {
        trial: it.next()?.parse().ok()?,
        n: it.next()?.parse().ok()?,
        j: it.next()?.parse().ok()?,
        id: DocumentId::parse(it.next()?).ok()?,
    })
}

/// Checks every acknowledged document in `acks` reads back exactly.
fn check_acks(vault: &Vault, acks: &[Ack], ctx: &str) {
    let mut trials: Vec<u32> = acks.iter().map(|a| a.trial).collect();
    trials.dedup();
    let everyone: Vec<String> = trials.iter().flat_map(|t| patients(*t)).collect();
    let s = vault.session(physician(everyone)).unwrap();
    for a in acks {
        let d = s.get(&a.id).unwrap_or_else(|e| panic!("{ctx}: acknowledged document {a:?} lost: {e}"));
        let want = make_doc(a.trial, a.n, a.j);
        assert_eq!(d.patient, want.patient, "{ctx}: {a:?}");
        assert_eq!(d.version, 1, "{ctx}: {a:?}");
        for (name, f) in &want.fields {
            assert_eq!(d.fields.get(name), Some(f), "{ctx}: {a:?} field {name}");
        }
        if a.j == 2 {
            let mut out = Vec::new();
            s.read_attachment(&a.id, "blob", &mut out).unwrap_or_else(|e| panic!("{ctx}: attachment of {a:?}: {e}"));
            assert_eq!(out, attachment_bytes(a.trial, a.n), "{ctx}: attachment of {a:?}");
        } else {
            assert_eq!(d.fields.len(), want.fields.len(), "{ctx}: {a:?}");
        }
    }
}

fn run_trial(exe: &Path, path: &Path, trial: u32, delay: Duration) -> Vec<Ack> {
    let mut child = Command::new(exe)
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{}|{trial}", path.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Kill only once the child has opened the vault, so the kill lands among writes.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains("READY") => break,
            Ok(l) => lines.push(l),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("trial {trial}: child never became ready ({e:?}); output: {lines:?}");
            }
        }
    }
    std::thread::sleep(delay);
    child.kill().expect("SIGKILL the child");
    let status = child.wait().unwrap();
    assert!(!status.success(), "trial {trial}: the child was killed, not finished: {status:?}");
    reader.join().unwrap();
    lines.extend(rx.try_iter());
    lines.iter().filter_map(|l| parse_ack(l)).collect()
}

#[test]
fn sigkill_never_loses_an_acknowledged_commit() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child(&spec);
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("killed.cv");
    Vault::create(&path, VaultKey::Raw(&key()), opts()).unwrap().close().unwrap();
    let mut rng = Rng::from_time("sigkill");
    let t0 = Instant::now();
    let mut all: Vec<Ack> = Vec::new();
    let mut torn = 0;
    let mut reserve_kept = 0;
    let mut trials_with_acks = 0;
    for trial in 0..TRIALS {
        let delay = Duration::from_millis(rng.range(1, 30));
        let acks = run_trial(&exe, &path, trial, delay);
        // Acknowledgements are in order and complete within each commit.
        for w in acks.windows(2) {
            assert!((w[0].n, w[0].j) < (w[1].n, w[1].j), "trial {trial}: acknowledgements out of order");
        }
        let vault = Vault::open(&path, VaultKey::Raw(&key()), opts())
            .unwrap_or_else(|e| panic!("trial {trial}: reopen after SIGKILL: {e}"));
        let rep = vault.open_report();
        assert!(rep.corrupt.is_none(), "trial {trial}: {rep:?}");
        torn += u32::from(rep.torn_tail.is_some());
        // A clean end keeps the zero reserve after the log end (a torn tail is
        // truncated with it): the next commits overwrite it in place.
        let file_len = std::fs::metadata(&path).unwrap().len();
        let log_end = vault.store().read_state().head.end;
        if rep.torn_tail.is_some() {
            assert_eq!(file_len, log_end, "trial {trial}: the torn tail (and the reserve after it) is truncated");
        }
        reserve_kept += u32::from(file_len > log_end);
        trials_with_acks += u32::from(!acks.is_empty());
        check_acks(&vault, &acks, &format!("trial {trial} (killed after {delay:?})"));
        vault.close().unwrap();
        all.extend(acks);
    }
    let elapsed = t0.elapsed();
    // At the end, every acknowledgement of every trial is still there, and the file verifies.
    let vault = Vault::open(&path, VaultKey::Raw(&key()), opts()).unwrap();
    check_acks(&vault, &all, "final");
    let rep = vault.verify().unwrap();
    assert!(rep.problems.is_empty(), "{rep:?}");
    let ids: std::collections::BTreeSet<_> = all.iter().map(|a| a.id).collect();
    assert_eq!(ids.len(), all.len(), "every acknowledged id is distinct");
    eprintln!(
        "{TRIALS} kills in {elapsed:?}: {} acknowledged documents ({trials_with_acks} trials with some), {} torn tails recovered, {reserve_kept} reopens kept a reserve, {} bytes",
        all.len(),
        torn,
        std::fs::metadata(&path).unwrap().len()
    );
    assert!(reserve_kept > 0, "some reopens found a clean end with the zero reserve after it");
    assert!(
        trials_with_acks >= TRIALS / 4,
        "most children acknowledged writes before being killed: {trials_with_acks} of {TRIALS}"
    );
}
