//! Property: concurrent use is safe and commits are atomic to readers. While one
//! writer commits batches (each: K documents of a fresh patient plus a marker), reader
//! threads reading the patients' charts only ever see none or all of a batch, with
//! exact contents, and always see a batch whose commit returned before the read
//! began. A second read-write open of the same file (in the same process) is refused
//! with `Error::Locked`, and read-only opens beside the busy writer work and serve
//! whole commits only.

mod common;

use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use chartvault::{Document, Error, NewDocument, Value, Vault, VaultKey};
use common::{Rng, key, opts, opts_ro, physician};

const BATCHES: usize = 60;
const K: usize = 5;
const READERS: usize = 3;

fn patient(b: usize) -> String {
    format!("C{b}")
}

fn all_patients() -> Vec<String> {
    (0..BATCHES).map(patient).collect()
}

fn batch_docs(b: usize) -> Vec<NewDocument> {
    let mut v: Vec<NewDocument> = (0..K)
        .map(|j| {
            NewDocument::new(&patient(b), "Observation")
                .unwrap()
                .with("value", Value::Integer((b * 100 + j) as i64))
                .with("note", Value::Text(format!("batch {b} document {j}")))
        })
        .collect();
    v.push(NewDocument::new(&patient(b), "Marker").unwrap().with("batch", Value::Integer(b as i64)));
    v
}

/// A chart is all-or-nothing and, when present, exactly the batch.
fn check_chart(docs: &[Document], b: usize, ctx: &str) -> bool {
    if docs.is_empty() {
        return false;
    }
    assert_eq!(docs.len(), K + 1, "{ctx}: partial commit visible for batch {b}");
    let want = batch_docs(b);
    for w in &want {
        let found = docs.iter().any(|d| {
            d.kind == w.kind
                && w.fields.iter().all(|(n, f)| d.fields.get(n) == Some(f))
                && d.fields.len() == w.fields.len()
        });
        assert!(found, "{ctx}: batch {b} lacks {w:?}");
    }
    true
}

#[test]
fn readers_see_whole_commits_and_a_second_writer_is_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.cv");
    let vault = Vault::create(&path, VaultKey::Raw(&key()), opts()).unwrap();
    let done = AtomicUsize::new(0);
    let finished = AtomicBool::new(false);
    let mut rng = Rng::from_time("concurrency");
    let seeds: Vec<u64> = (0..READERS).map(|_| rng.next_u64()).collect();
    // Writing starts once every reader (and the main thread) is ready to read.
    let start = Barrier::new(READERS + 2);
    let during = AtomicUsize::new(0);

    let (reads, ro_opens) = std::thread::scope(|sc| {
        // The writer.
        let writer = sc.spawn(|| {
            let s = vault.session(physician(all_patients())).unwrap();
            start.wait();
            for b in 0..BATCHES {
                let mut batch = s.batch().unwrap();
                for d in batch_docs(b) {
                    batch.put(&d).unwrap();
                }
                batch.commit().unwrap();
                done.store(b + 1, Ordering::SeqCst);
            }
            finished.store(true, Ordering::SeqCst);
        });
        // Readers on the writer's handle.
        let readers: Vec<_> = seeds
            .iter()
            .enumerate()
            .map(|(r, seed)| {
                let (vault, done, finished, start, during) = (&vault, &done, &finished, &start, &during);
                sc.spawn(move || {
                    let mut rng = Rng::new(*seed);
                    let s = vault.session(physician(all_patients())).unwrap();
                    let (mut full, mut empty) = (0u64, 0u64);
                    start.wait();
                    loop {
                        let writing = !finished.load(Ordering::SeqCst);
                        let committed = done.load(Ordering::SeqCst);
                        // Mostly the batch in flight and its neighbours.
                        let b = (committed + rng.range(0, 3) as usize).saturating_sub(2).min(BATCHES - 1);
                        let docs = s.chart(&patient(b)).unwrap();
                        let ctx = format!("reader {r}");
                        if check_chart(&docs, b, &ctx) {
                            full += 1;
                        } else {
                            assert!(b >= committed, "{ctx}: batch {b} committed before the read began is invisible");
                            empty += 1;
                        }
                        if !writing {
                            break;
                        }
                        during.fetch_add(1, Ordering::SeqCst);
                    }
                    (full, empty)
                })
            })
            .collect();

        // Meanwhile: a second writer is refused, and read-only opens work.
        let mut ro_opens = 0;
        start.wait();
        loop {
            let writing = !finished.load(Ordering::SeqCst);
            match Vault::open(&path, VaultKey::Raw(&key()), opts()) {
                Err(Error::Locked(p)) => assert_eq!(p, path),
                Err(e) => panic!("second writer: expected Locked, got {e:?}"),
                Ok(_) => panic!("a second read-write handle was allowed"),
            }
            let committed = done.load(Ordering::SeqCst);
            let ro = Vault::open(&path, VaultKey::Raw(&key()), opts_ro())
                .unwrap_or_else(|e| panic!("read-only open beside the writer: {e:?}"));
            let s = ro.session(physician(all_patients())).unwrap();
            for b in 0..BATCHES {
                let docs = s.chart(&patient(b)).unwrap();
                let whole = check_chart(&docs, b, "read-only handle");
                assert!(whole || b >= committed, "read-only open misses batch {b}, committed before it");
            }
            ro_opens += 1;
            if !writing {
                break;
            }
        }
        writer.join().unwrap();
        let reads: Vec<(u64, u64)> = readers.into_iter().map(|h| h.join().unwrap()).collect();
        (reads, ro_opens)
    });
    eprintln!("reads (whole, empty) per reader: {reads:?}; read-only opens during writes: {ro_opens}");
    assert!(reads.iter().all(|(f, e)| f + e > 0), "every reader read");
    assert!(during.load(Ordering::SeqCst) > 0, "reads overlapped the writes");
    assert!(ro_opens > 0);

    // Still locked after the writer thread is done, while the handle lives.
    assert!(matches!(Vault::open(&path, VaultKey::Raw(&key()), opts()), Err(Error::Locked(_))));
    let s = vault.session(physician(all_patients())).unwrap();
    for b in 0..BATCHES {
        assert!(check_chart(&s.chart(&patient(b)).unwrap(), b, "final"));
    }
    drop(s);
    vault.close().unwrap();
    // Released on close.
    let v = Vault::open(&path, VaultKey::Raw(&key()), opts()).unwrap();
    assert!(v.verify().unwrap().is_clean());
}
