//! `chartvault-bench profile`: one chartvault operation in a loop, on a vault built
//! beforehand by `profile build`, so `perf record` / `valgrind --tool=callgrind` see
//! only that operation.
//!
//! ```text
//! chartvault-bench profile build --docs 100000 --dir /tmp/prof
//! perf record -g chartvault-bench profile get --dir /tmp/prof --iters 100000
//! ```
//! Operations: build, get, chart, code, range, open, single, batch, checkpoint (one
//! [`Vault::checkpoint`] of the whole catalog per iteration); `sizes` breaks the
//! file down by frame type and, for records, by part. The vault is opened from its
//! checkpoint, so its value indexes are built on first use; `PROFILE_BUILD_INDEXES=1`
//! builds them before the loop (as in a vault written by the same process).
//! `PROFILE_NO_CHECKPOINT=1 ... profile build` writes no checkpoint, so every open
//! replays the whole log (the total time printed includes the open).
//! `PROFILE_GET_AFTER_BUILD=N ... profile build` times N gets right after the build, on
//! the vault that wrote the data (as the comparison harness reads), then N more after
//! closing and reopening it in the same process, and N / 50 code queries each time.

use std::path::{Path, PathBuf};
use std::time::Instant;

use chartvault::{DocumentId, SecretKey, Vault, VaultKey, VaultOptions};

use crate::cv::{new_document, options, physician};
use crate::driver::Res;
use crate::workload::{self, Params, Rng};

fn e(x: impl std::fmt::Display) -> String {
    x.to_string()
}

fn key(seed: u64) -> SecretKey {
    let mut k = [0u8; 32];
    let mut r = Rng::new(seed ^ 0x7072_6f66);
    for c in k.chunks_mut(8) {
        c.copy_from_slice(&r.next_u64().to_le_bytes());
    }
    SecretKey::from_bytes(k)
}

/// The harness's options, but closing writes no checkpoint: `profile build` writes its
/// own (or, with `PROFILE_NO_CHECKPOINT`, none), and every later open profiles the
/// same path.
fn profile_options() -> VaultOptions {
    VaultOptions { checkpoint_at_close: 0, ..options() }
}

fn params(docs: u64, dir: &Path) -> Params {
    Params {
        docs,
        batch: 1000,
        single_commits: 0,
        point_reads: 0,
        charts: 0,
        code_queries: 0,
        range_queries: 0,
        range_days: 7,
        opens: 1,
        seed: 42,
        sql_cache_mib: 0,
        dir: dir.display().to_string(),
    }
}

/// Runs `profile <op> [--docs N] [--dir D] [--iters K]`.
pub fn main(args: &[String]) -> Res<()> {
    let op = args.first().cloned().ok_or("profile needs an operation")?;
    let mut docs = 100_000u64;
    let mut dir = std::env::temp_dir().join("chartvault-profile");
    let mut iters = 1000u64;
    let mut it = args[1..].iter();
    while let Some(a) = it.next() {
        let v = it.next().ok_or("missing value")?;
        match a.as_str() {
            "--docs" => docs = v.parse().map_err(e)?,
            "--dir" => dir = PathBuf::from(v),
            "--iters" => iters = v.parse().map_err(e)?,
            _ => return Err(format!("unknown option {a}")),
        }
    }
    let path = dir.join("prof.cv");
    let ids_path = dir.join("prof.ids");
    let docs_path = dir.join("prof.docs");
    let k = key(42);
    if op == "build" {
        std::fs::create_dir_all(&dir).map_err(e)?;
        for p in [&path, &chartvault::store::keyring_path(&path), &ids_path] {
            let _ = std::fs::remove_file(p);
        }
        let p = params(docs, &dir);
        let t = Instant::now();
        let v = Vault::create(&path, VaultKey::Raw(&k), profile_options()).map_err(e)?;
        let s = v.session(physician(&p)).map_err(e)?;
        let mut ids = Vec::with_capacity(docs as usize * 16);
        let mut i = 0;
        while i < docs {
            let batch: Vec<_> =
                (i..(i + 1000).min(docs)).map(|j| new_document(&workload::record(&p, j))).collect::<Res<_>>()?;
            let mut b = s.batch().map_err(e)?;
            for id in b.put_all(&batch).map_err(e)? {
                ids.extend_from_slice(&id.0);
            }
            b.commit().map_err(e)?;
            i += 1000;
        }
        // `PROFILE_GET_AFTER_BUILD=N`: N random gets on the vault that has just written
        // the data (as the harness reads), then N more after closing and reopening it
        // in this same process (same heap), to tell the vault's state from the heap's.
        if let Some(n) = std::env::var("PROFILE_GET_AFTER_BUILD").ok().and_then(|x| x.parse::<u64>().ok()) {
            let all: Vec<DocumentId> =
                ids.chunks_exact(16).map(|c| DocumentId(c.try_into().unwrap_or([0; 16]))).collect();
            let mut r = Rng::new(7);
            let mut time_gets = |s: &chartvault::Session, what: &str| -> Res<()> {
                let t = Instant::now();
                for _ in 0..n {
                    s.get(&all[r.below(all.len() as u64) as usize]).map_err(e)?;
                }
                eprintln!("get {what}: {:.2} µs each", t.elapsed().as_secs_f64() * 1e6 / n.max(1) as f64);
                Ok(())
            };
            // And n / 50 code queries each time (as many documents as the gets).
            let mut r2 = Rng::new(8);
            let mut time_codes = |s: &chartvault::Session, what: &str| -> Res<()> {
                let q = (n / 50).max(1);
                let t = Instant::now();
                for _ in 0..q {
                    let (sys, code, _, _) = workload::code_of(r2.below(workload::CODES));
                    s.query_str(&format!("code = {sys}:{code} limit 10000")).map_err(e)?;
                }
                eprintln!("code query {what}: {:.1} µs each", t.elapsed().as_secs_f64() * 1e6 / q as f64);
                Ok(())
            };
            time_gets(&s, "on the vault that wrote the data")?;
            time_codes(&s, "on the vault that wrote the data")?;
            v.checkpoint().map_err(e)?;
            drop(s);
            v.close().map_err(e)?;
            let v2 = Vault::open(&path, VaultKey::Raw(&k), options()).map_err(e)?;
            let s2 = v2.session(physician(&p)).map_err(e)?;
            time_gets(&s2, "after close and reopen in this process")?;
            time_codes(&s2, "after close and reopen in this process")?;
            drop(s2);
            v2.close().map_err(e)?;
            std::fs::write(&ids_path, ids).map_err(e)?;
            std::fs::write(&docs_path, docs.to_string()).map_err(e)?;
            return Ok(());
        }
        // `PROFILE_NO_CHECKPOINT=1`: the header points at no checkpoint (not even one
        // written on the way), so every open replays the whole log.
        if std::env::var_os("PROFILE_NO_CHECKPOINT").is_some() {
            v.store().set_checkpoint_pointer(0).map_err(e)?;
        } else {
            v.checkpoint().map_err(e)?;
        }
        drop(s);
        v.close().map_err(e)?;
        std::fs::write(&ids_path, ids).map_err(e)?;
        std::fs::write(&docs_path, docs.to_string()).map_err(e)?;
        eprintln!("built {docs} documents in {:.1} s", t.elapsed().as_secs_f64());
        return Ok(());
    }
    let docs: u64 = std::fs::read_to_string(&docs_path)
        .map_err(|x| format!("run `profile build` first: {x}"))?
        .trim()
        .parse()
        .map_err(e)?;
    let p = params(docs, &dir);
    let ids: Vec<DocumentId> = std::fs::read(&ids_path)
        .map_err(e)?
        .chunks_exact(16)
        .map(|c| DocumentId(c.try_into().unwrap_or([0; 16])))
        .collect();
    let mut r = Rng::new(7);
    let t = Instant::now();
    if op == "sizes" {
        return sizes(&path, docs);
    }
    if op == "open" {
        for _ in 0..iters {
            Vault::open(&path, VaultKey::Raw(&k), profile_options()).map_err(e)?.close().map_err(e)?;
        }
    } else {
        let v = Vault::open(&path, VaultKey::Raw(&k), profile_options()).map_err(e)?;
        let s = v.session(physician(&p)).map_err(e)?;
        if std::env::var_os("PROFILE_BUILD_INDEXES").is_some() {
            // The value indexes are built on first use after a checkpoint open: build
            // them now (as a vault loaded in this process has them).
            s.query_str("code = http://loinc.org:0000-0 limit 1").map_err(e)?;
        }
        let t = Instant::now();
        let mut n = 0usize;
        for i in 0..iters {
            n += match op.as_str() {
                "get" => s.get(&ids[r.below(ids.len() as u64) as usize]).map_err(e)?.fields.len(),
                "chart" => s.chart(&workload::patient_id(r.below(p.patients()))).map_err(e)?.len(),
                "code" => {
                    let (sys, code, _, _) = workload::code_of(r.below(workload::CODES));
                    s.query_str(&format!("code = {sys}:{code} limit 10000")).map_err(e)?.documents.len()
                }
                "range" => {
                    let from = workload::FIRST_DAY + r.below((workload::DAY_SPAN - 7) as u64) as i32;
                    let (a, b) = (workload::date_string(from), workload::date_string(from + 7));
                    s.query_str(&format!("effective >= {a} and effective < {b} limit 10000"))
                        .map_err(e)?
                        .documents
                        .len()
                }
                "single" => {
                    s.put(&new_document(&workload::record(&p, i % docs))?).map_err(e)?;
                    1
                }
                "batch" => {
                    let batch: Vec<_> = (0..1000)
                        .map(|j| new_document(&workload::record(&p, (i * 1000 + j) % docs)))
                        .collect::<Res<_>>()?;
                    let mut b = s.batch().map_err(e)?;
                    b.put_all(&batch).map_err(e)?;
                    b.commit().map_err(e)?;
                    1000
                }
                "checkpoint" => {
                    v.checkpoint().map_err(e)?;
                    1
                }
                _ => return Err(format!("unknown operation {op}")),
            };
        }
        eprintln!("{op}: {:.1} µs per iteration ({n} items)", t.elapsed().as_secs_f64() * 1e6 / iters as f64);
        drop(s);
        v.close().map_err(e)?;
    }
    eprintln!("{op}: {iters} iterations in {:.2} s", t.elapsed().as_secs_f64());
    Ok(())
}

/// Bytes of the data file by frame type, and of record frames by part.
fn sizes(path: &Path, docs: u64) -> Res<()> {
    use chartvault::format::frame::{FRAME_HEADER, parse_head};
    use chartvault::format::header::HEADER_REGION;
    use std::collections::BTreeMap;
    let bytes = std::fs::read(path).map_err(e)?;
    let mut by_type: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut parts = [0u64; 5]; // id+version+lengths, envelope, index terms, groups (sealed), group count
    let mut groups = 0u64;
    let mut pos = HEADER_REGION as usize;
    while pos + FRAME_HEADER <= bytes.len() {
        let Ok(h) = parse_head(&bytes[pos..]) else { break };
        let total = h.total();
        let entry = by_type.entry(format!("{:?}", h.ty)).or_default();
        entry.0 += 1;
        entry.1 += total as u64;
        if format!("{:?}", h.ty) == "Record"
            && let Some(rec) = chartvault::store::record::parse(&bytes[pos + FRAME_HEADER..pos + total])
        {
            parts[1] += rec.envelope.len() as u64;
            parts[3] += rec.groups.iter().map(|g| g.len() as u64).sum::<u64>();
            groups += rec.groups.len() as u64;
            parts[0] += 16 + 4 + 4 + 2 + 4 * rec.groups.len() as u64 + FRAME_HEADER as u64;
        }
        pos += total;
    }
    println!("file {} bytes, {} documents built", bytes.len(), docs);
    for (t, (n, b)) in &by_type {
        println!("{t:>16}: {n:>8} frames {b:>12} bytes ({:.0} per frame)", *b as f64 / *n as f64);
    }
    let recs = by_type.get("Record").map(|x| x.0).unwrap_or(1).max(1) as f64;
    println!(
        "per record: framing+ids {:.0}, envelope {:.0}, (index terms: not stored) {:.0}, label groups {:.0} ({:.1} groups)",
        parts[0] as f64 / recs,
        parts[1] as f64 / recs,
        parts[2] as f64 / recs,
        parts[3] as f64 / recs,
        groups as f64 / recs
    );
    Ok(())
}
