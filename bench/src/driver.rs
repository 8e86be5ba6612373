//! Runs the workload on one engine and measures it (shared with the SQLite runner).
//!
//! Only the engine's own work is timed: documents are generated (and, for chartvault,
//! turned into `NewDocument`s) before the clock starts, in [`Engine::prepare`].

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::workload::{Params, ReadPlan, Record, record};

/// Errors are reported as text: a benchmark either runs or says why not.
pub type Res<T> = Result<T, String>;

/// One engine under test.
pub trait Engine {
    /// Engine name and configuration, for the report.
    fn describe(&self) -> String;
    /// Untimed: turn records into whatever the engine's API takes.
    fn prepare(&mut self, recs: &[Record]) -> Res<()>;
    /// Timed: write every prepared record with one durable commit.
    fn write_prepared(&mut self) -> Res<()>;
    /// Reads documents `idxs` (workload indexes); returns bytes or fields seen (so
    /// nothing is optimised away). SQL engines read inside one transaction.
    fn point_reads(&mut self, idxs: &[u64]) -> Res<u64>;
    /// Reads the chart of `patient`; returns the number of documents.
    fn chart(&mut self, patient: &str) -> Res<u64>;
    /// Fetches every document with `system|code`; returns the number of documents.
    fn query_code(&mut self, system: &str, code: &str) -> Res<u64>;
    /// Fetches every document with `from <= effective < to` (days); returns the number.
    fn query_range(&mut self, from: i32, to: i32) -> Res<u64>;
    /// Closes the handle, then times opening it again (median of `reps`), in the
    /// engine's own key mode. `None` where opening means nothing (the raw limit).
    fn reopen(&mut self, reps: u32) -> Res<Option<Duration>>;
    /// Other open measurements (chartvault: passphrase, recovery without checkpoint).
    fn extra_opens(&mut self, _reps: u32) -> Res<Vec<(String, Duration)>> {
        Ok(Vec::new())
    }
    /// Bytes on disk (every file the engine keeps).
    fn file_bytes(&mut self) -> Res<u64>;
}

/// What one engine measured. Times in the unit their name says.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Measurements {
    /// Engine and configuration.
    pub engine: String,
    /// Documents bulk-loaded.
    pub load_docs: u64,
    /// Seconds spent in the bulk load's writes and commits.
    pub load_secs: f64,
    /// Single-document durable commits: mean, median, 99th percentile (µs).
    pub single_commit_us_mean: f64,
    /// Median.
    pub single_commit_us_p50: f64,
    /// 99th percentile.
    pub single_commit_us_p99: f64,
    /// Random point reads: mean µs per read.
    pub point_read_us: f64,
    /// Number of point reads.
    pub point_reads: u64,
    /// Patient-chart reads: mean µs per chart.
    pub chart_us: f64,
    /// Mean documents per chart.
    pub chart_docs: f64,
    /// Code query: mean ms per query (fetching every matching document).
    pub code_query_ms: f64,
    /// Mean documents per code query.
    pub code_query_docs: f64,
    /// Date-range query: mean ms per query.
    pub range_query_ms: f64,
    /// Mean documents per range query.
    pub range_query_docs: f64,
    /// Open in the engine's own key mode (ms, median), if meaningful.
    pub open_ms: Option<f64>,
    /// Extra opens: (what, ms).
    pub extra_opens_ms: Vec<(String, f64)>,
    /// Same-time baseline: write ~1 KiB + fdatasync to a probe file in the same
    /// directory, alternating with each single commit (mean, median µs). The disk is
    /// shared, so fsync latency drifts; compare each engine with its own probe.
    pub fsync_probe_us_mean: f64,
    /// Median of the probe.
    pub fsync_probe_us_p50: f64,
    /// Bytes on disk after the writes (bulk load and single commits).
    pub file_bytes_after_writes: u64,
    /// Bytes on disk after the run (chartvault: plus the audit trail of every read).
    pub file_bytes: u64,
    /// Bytes of plaintext JSON written (all documents).
    pub json_bytes: u64,
    /// Wall time of the whole run, s.
    pub total_secs: f64,
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Runs the whole workload on `e`, printing progress to stderr.
pub fn run(e: &mut dyn Engine, p: &Params) -> Res<Measurements> {
    let started = Instant::now();
    let name = e.describe();
    let mut m = Measurements { engine: name.clone(), load_docs: p.docs, ..Measurements::default() };
    let progress = |what: &str| eprintln!("[{name}] {what} ({:.1} s)", started.elapsed().as_secs_f64());

    // 1. Bulk load: batches of `p.batch`, one durable commit each.
    let mut load = Duration::ZERO;
    let mut idx = 0;
    let mut json_bytes = 0u64;
    while idx < p.docs {
        let n = p.batch.min(p.docs - idx);
        let recs: Vec<Record> = (idx..idx + n).map(|i| record(p, i)).collect();
        json_bytes += recs.iter().map(|r| r.json.len() as u64).sum::<u64>();
        e.prepare(&recs)?;
        let t = Instant::now();
        e.write_prepared()?;
        load += t.elapsed();
        idx += n;
    }
    m.load_secs = load.as_secs_f64();
    progress(&format!("bulk load: {:.0} docs/s", p.docs as f64 / m.load_secs));

    // 2. Single-document durable commits, each right after a probe write + fdatasync.
    let probe_path = std::path::Path::new(&p.dir).join(format!("fsync-probe-{}", std::process::id()));
    let mut probe_file = std::fs::File::create(&probe_path).map_err(|x| x.to_string())?;
    let mut singles = Vec::with_capacity(p.single_commits as usize);
    let mut probes = Vec::with_capacity(p.single_commits as usize);
    for i in p.docs..p.total_docs() {
        let rec = record(p, i);
        json_bytes += rec.json.len() as u64;
        let t = Instant::now();
        std::io::Write::write_all(&mut probe_file, rec.json.as_bytes()).map_err(|x| x.to_string())?;
        probe_file.sync_data().map_err(|x| x.to_string())?;
        probes.push(t.elapsed());
        e.prepare(std::slice::from_ref(&rec))?;
        let t = Instant::now();
        e.write_prepared()?;
        singles.push(t.elapsed());
    }
    drop(probe_file);
    let _ = std::fs::remove_file(&probe_path);
    m.json_bytes = json_bytes;
    if !singles.is_empty() {
        m.single_commit_us_mean = us(singles.iter().sum::<Duration>()) / singles.len() as f64;
        m.fsync_probe_us_mean = us(probes.iter().sum::<Duration>()) / probes.len() as f64;
        singles.sort();
        probes.sort();
        m.single_commit_us_p50 = us(singles[singles.len() / 2]);
        m.single_commit_us_p99 = us(singles[(singles.len() * 99 / 100).min(singles.len() - 1)]);
        m.fsync_probe_us_p50 = us(probes[probes.len() / 2]);
    }
    m.file_bytes_after_writes = e.file_bytes()?;
    progress(&format!(
        "single commits: {:.0} µs mean (probe write + fdatasync: {:.0} µs)",
        m.single_commit_us_mean, m.fsync_probe_us_mean
    ));

    let plan = ReadPlan::new(p);
    // 3. Point reads.
    let t = Instant::now();
    let seen = e.point_reads(&plan.point)?;
    let d = t.elapsed();
    if seen == 0 && !plan.point.is_empty() {
        return Err("point reads returned nothing".into());
    }
    m.point_reads = plan.point.len() as u64;
    m.point_read_us = us(d) / plan.point.len().max(1) as f64;
    progress(&format!("point reads: {:.2} µs each", m.point_read_us));

    // 4. Patient charts.
    let t = Instant::now();
    let mut docs = 0;
    for pt in &plan.charts {
        docs += e.chart(pt)?;
    }
    let d = t.elapsed();
    m.chart_us = us(d) / plan.charts.len().max(1) as f64;
    m.chart_docs = docs as f64 / plan.charts.len().max(1) as f64;
    progress(&format!("charts: {:.0} µs each, {:.1} docs", m.chart_us, m.chart_docs));

    // 5. Query by code.
    let t = Instant::now();
    let mut docs = 0;
    for (s, c) in &plan.codes {
        docs += e.query_code(s, c)?;
    }
    let d = t.elapsed();
    m.code_query_ms = us(d) / 1e3 / plan.codes.len().max(1) as f64;
    m.code_query_docs = docs as f64 / plan.codes.len().max(1) as f64;
    progress(&format!("code queries: {:.2} ms each, {:.1} docs", m.code_query_ms, m.code_query_docs));

    // 6. Date-range query.
    let t = Instant::now();
    let mut docs = 0;
    for (from, to) in &plan.ranges {
        docs += e.query_range(*from, *to)?;
    }
    let d = t.elapsed();
    m.range_query_ms = us(d) / 1e3 / plan.ranges.len().max(1) as f64;
    m.range_query_docs = docs as f64 / plan.ranges.len().max(1) as f64;
    progress(&format!("range queries: {:.2} ms each, {:.1} docs", m.range_query_ms, m.range_query_docs));

    // 7. Size, then opens (the last: they may change the file).
    m.file_bytes = e.file_bytes()?;
    m.open_ms = e.reopen(p.opens)?.map(|d| us(d) / 1e3);
    m.extra_opens_ms = e.extra_opens(p.opens)?.into_iter().map(|(w, d)| (w, us(d) / 1e3)).collect();
    m.total_secs = started.elapsed().as_secs_f64();
    progress("done");
    Ok(m)
}

/// Median of `reps` runs of `f` (each returns its own measured duration).
pub fn median_of(reps: u32, mut f: impl FnMut() -> Res<Duration>) -> Res<Duration> {
    let mut v = Vec::new();
    for _ in 0..reps.max(1) {
        v.push(f()?);
    }
    v.sort();
    Ok(v[v.len() / 2])
}

/// Total size of the files in `paths` that exist.
pub fn size_of(paths: &[std::path::PathBuf]) -> u64 {
    paths.iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum()
}
