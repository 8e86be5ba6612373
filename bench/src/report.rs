//! The side-by-side table (markdown), the targets, and the JSON output.

use serde_json::{Value as J, json};

use crate::ENGINES;
use crate::driver::Measurements;
use crate::workload::Params;

#[derive(Clone, Copy, PartialEq)]
enum Better {
    Higher,
    Lower,
    /// File size: the ratio is chartvault / SQLCipher (lower is better) and says so.
    Size,
}

type Get = fn(&str, &Measurements) -> Option<f64>;

struct Row {
    id: &'static str,
    name: String,
    get: Get,
    better: Better,
    /// The SQLCipher column the ratio is taken against.
    against: &'static str,
}

fn extra(m: &Measurements, what: &str) -> Option<f64> {
    m.extra_opens_ms.iter().find(|(w, _)| w == what).map(|(_, v)| *v)
}

/// The full report of one run.
pub struct Report {
    params: Params,
    command: String,
    results: Vec<(String, Measurements)>,
    machine: J,
}

fn fmt_num(v: f64) -> String {
    if v >= 10_000.0 {
        let s = format!("{:.0}", v);
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// A speed ratio: two decimals, and as a fraction when chartvault is more than ten times slower.
fn fmt_ratio(x: f64) -> String {
    if x >= 0.1 || x <= 0.0 { format!("{x:.2}×") } else { format!("{x:.3}× (1/{})", fmt_num(1.0 / x)) }
}

fn machine() -> J {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    let nproc = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let date = std::process::Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%dT%H:%M:%SZ")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    json!({ "cpu": cpu, "nproc": nproc, "date": date })
}

impl Report {
    /// A report of `results` (engine key, measurements).
    pub fn new(params: Params, command: String, results: Vec<(String, Measurements)>) -> Self {
        Report { params, command, results, machine: machine() }
    }

    fn get(&self, key: &str) -> Option<&Measurements> {
        self.results.iter().find(|(k, _)| k == key).map(|(_, m)| m)
    }

    fn docs_hint(&self, f: fn(&Measurements) -> f64) -> String {
        self.results.first().map(|(_, m)| format!("~{:.0} docs", f(m))).unwrap_or_default()
    }

    fn rows(&self) -> Vec<Row> {
        let p = &self.params;
        vec![
            Row {
                id: "bulk_load_docs_per_s",
                name: format!("bulk load, docs/s ({} docs, batches of {}, one durable commit each)", p.docs, p.batch),
                get: |_, m| Some(m.load_docs as f64 / m.load_secs),
                better: Better::Higher,
                against: "sqlcipher-raw",
            },
            Row {
                id: "single_commit_us",
                name: format!("single-document durable commit, µs (mean of {})", p.single_commits),
                get: |_, m| Some(m.single_commit_us_mean),
                better: Better::Lower,
                against: "sqlcipher-raw",
            },
            Row {
                id: "single_commit_p50_us",
                name: "single-document durable commit, µs (median)".into(),
                get: |_, m| Some(m.single_commit_us_p50),
                better: Better::Lower,
                against: "sqlcipher-raw",
            },
            Row {
                id: "fsync_probe_us",
                name: "same-time baseline: write ~1 KiB + fdatasync to a probe file, µs (mean; alternates with the commits above)".into(),
                get: |_, m| Some(m.fsync_probe_us_mean),
                better: Better::Lower,
                against: "sqlcipher-raw",
            },
            Row {
                id: "point_read_us",
                name: format!("random point read, µs ({} reads; SQL: one transaction)", p.point_reads),
                get: |_, m| Some(m.point_read_us),
                better: Better::Lower,
                against: "sqlcipher-raw",
            },
            Row {
                id: "chart_us",
                name: format!("patient chart, µs ({} charts, {})", p.charts, self.docs_hint(|m| m.chart_docs)),
                get: |_, m| Some(m.chart_us),
                better: Better::Lower,
                against: "sqlcipher-raw",
            },
            Row {
                id: "code_query_ms",
                name: format!("query by code, ms ({})", self.docs_hint(|m| m.code_query_docs)),
                get: |_, m| Some(m.code_query_ms),
                better: Better::Lower,
                against: "sqlcipher-raw",
            },
            Row {
                id: "range_query_ms",
                name: format!("date-range query, {} days, ms ({})", p.range_days, self.docs_hint(|m| m.range_query_docs)),
                get: |_, m| Some(m.range_query_ms),
                better: Better::Lower,
                against: "sqlcipher-raw",
            },
            Row {
                id: "open_raw_ms",
                name: "open, raw key (SQLite, redb: no key), ms".into(),
                get: |k, m| if k == "sqlcipher-passphrase" { None } else { m.open_ms },
                better: Better::Lower,
                against: "sqlcipher-raw",
            },
            Row {
                id: "open_passphrase_ms",
                name: "open, passphrase with the engine's default KDF, ms (raw limit: the KDF alone)".into(),
                get: |k, m| match k {
                    "sqlcipher-passphrase" => m.open_ms,
                    _ => extra(m, "passphrase"),
                },
                better: Better::Lower,
                against: "sqlcipher-passphrase",
            },
            Row {
                id: "open_recovery_ms",
                name: "open, raw key, without checkpoint (recovery), ms".into(),
                get: |_, m| extra(m, "recovery"),
                better: Better::Lower,
                against: "sqlcipher-raw",
            },
            Row {
                id: "file_mib",
                name: "file size after the writes, MiB (× plaintext JSON)".into(),
                get: |_, m| Some(m.file_bytes_after_writes as f64 / 1_048_576.0),
                better: Better::Size,
                against: "sqlcipher-raw",
            },
            Row {
                id: "file_end_mib",
                name: "file size at the end, MiB (chartvault: + audit trail of every read) (× plaintext JSON)".into(),
                get: |_, m| Some(m.file_bytes as f64 / 1_048_576.0),
                better: Better::Size,
                against: "sqlcipher-raw",
            },
        ]
    }

    fn ratio(&self, r: &Row) -> Option<f64> {
        let cv = (r.get)("chartvault", self.get("chartvault")?)?;
        let sq = (r.get)(r.against, self.get(r.against)?)?;
        Some(match r.better {
            Better::Higher => cv / sq,
            Better::Lower => sq / cv,
            Better::Size => cv / sq,
        })
    }

    /// The markdown report: table, targets, consistency checks.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let cols: Vec<(&str, &str)> = ENGINES.iter().copied().filter(|(k, _)| self.get(k).is_some()).collect();
        s.push_str(&format!(
            "N = {} documents ({} patients, ~20 documents each; {:.0} bytes of JSON per document on average)\n\n",
            self.params.docs,
            self.params.patients(),
            self.results.first().map(|(_, m)| m.json_bytes as f64 / self.params.total_docs() as f64).unwrap_or(0.0)
        ));
        s.push_str("| operation |");
        for (_, title) in &cols {
            s.push_str(&format!(" {title} |"));
        }
        s.push_str(
            " chartvault vs SQLCipher: × faster (>1 = chartvault faster; file size: × the size, <1 = smaller) |\n|---|",
        );
        for _ in &cols {
            s.push_str("---:|");
        }
        s.push_str("---:|\n");
        for r in self.rows() {
            let vals: Vec<Option<f64>> = cols.iter().map(|(k, _)| self.get(k).and_then(|m| (r.get)(k, m))).collect();
            if vals.iter().all(Option::is_none) {
                continue;
            }
            s.push_str(&format!("| {} |", r.name));
            for ((k, _), v) in cols.iter().zip(&vals) {
                let cell = match v {
                    Some(v) if r.better == Better::Size => {
                        let json = self.get(k).map(|m| m.json_bytes as f64).unwrap_or(1.0);
                        format!("{} ({:.2}×)", fmt_num(*v), v * 1_048_576.0 / json)
                    }
                    Some(v) => fmt_num(*v),
                    None => "—".into(),
                };
                s.push_str(&format!(" {cell} |"));
            }
            let ratio = match (self.ratio(&r), r.better) {
                (Some(x), Better::Size) => format!("{x:.2}× size"),
                (Some(x), _) if r.against == "sqlcipher-passphrase" => format!("{} (vs passphrase)", fmt_ratio(x)),
                (Some(x), _) => fmt_ratio(x),
                (None, _) => "—".into(),
            };
            s.push_str(&format!(" {ratio} |\n"));
        }
        s.push_str("\nTargets (ratios to SQLCipher with a raw key, same run):\n\n| target | measured | met |\n|---|---:|:---:|\n");
        for (what, measured, met) in self.targets() {
            s.push_str(&format!("| {what} | {measured} | {met} |\n"));
        }
        let checks = self.consistency();
        if !checks.is_empty() {
            s.push_str("\nConsistency warnings:\n");
            for c in checks {
                s.push_str(&format!("- {c}\n"));
            }
        }
        s.push_str("\nEngines:\n");
        for (k, m) in &self.results {
            s.push_str(&format!("- {k}: {} (run took {:.0} s)\n", m.engine, m.total_secs));
        }
        s.push_str(&format!(
            "\nMachine: {} ({} CPUs), {}. Command: `{}`\n",
            self.machine["cpu"].as_str().unwrap_or(""),
            self.machine["nproc"],
            self.machine["date"].as_str().unwrap_or(""),
            self.command
        ));
        s
    }

    /// (target, measured, met).
    fn targets(&self) -> Vec<(String, String, String)> {
        let rows = self.rows();
        let ratio = |id: &str| rows.iter().find(|r| r.id == id).and_then(|r| self.ratio(r));
        let yes = |b: bool| if b { "yes".to_string() } else { "**no**".to_string() };
        let mut out = Vec::new();
        for (id, what, min) in [
            ("bulk_load_docs_per_s", "bulk load ≥ 2× SQLCipher", 2.0),
            ("point_read_us", "point reads ≥ 2× SQLCipher (reads in one transaction)", 2.0),
            ("chart_us", "patient-chart reads ≥ 2× SQLCipher", 2.0),
            ("code_query_ms", "query by code ≥ 1× SQLCipher", 1.0),
        ] {
            if let Some(x) = ratio(id) {
                out.push((what.to_string(), format!("{x:.2}×"), yes(x >= min)));
            }
        }
        if let Some(cv) = self.get("chartvault") {
            // Against the write + fdatasync probe that alternated with chartvault's own
            // commits (the shared disk's fsync latency drifts between engine runs).
            let x = cv.fsync_probe_us_mean / cv.single_commit_us_mean;
            out.push((
                "durable single commits within 0.8× of raw write + fdatasync (same-time probe)".into(),
                format!("{x:.2}× ({:.0} µs vs {:.0} µs)", cv.single_commit_us_mean, cv.fsync_probe_us_mean),
                yes(x >= 0.8),
            ));
        }
        if let Some(cv) = self.get("chartvault") {
            if let Some(ms) = cv.open_ms {
                let at = if self.params.docs >= 1_000_000 {
                    yes(ms <= 200.0)
                } else {
                    format!("n/a (N = {}; see the 1,000,000 run)", self.params.docs)
                };
                out.push((
                    "raw-key open of a 1,000,000-document vault ≤ 200 ms".into(),
                    format!("{ms:.1} ms at N = {}", self.params.docs),
                    at,
                ));
            }
            let x = cv.file_bytes_after_writes as f64 / cv.json_bytes as f64;
            out.push(("file size ≤ 1.3× plaintext JSON (after the writes)".into(), format!("{x:.2}×"), yes(x <= 1.3)));
        }
        out
    }

    /// Every engine must have returned the same number of documents.
    fn consistency(&self) -> Vec<String> {
        let mut out = Vec::new();
        let Some((k0, m0)) = self.results.first() else { return out };
        for (k, m) in &self.results[1..] {
            for (what, a, b) in [
                ("chart", m0.chart_docs, m.chart_docs),
                ("code query", m0.code_query_docs, m.code_query_docs),
                ("range query", m0.range_query_docs, m.range_query_docs),
            ] {
                if (a - b).abs() > 1e-9 {
                    out.push(format!("{what}: {k0} returned {a:.2} documents on average, {k} {b:.2}"));
                }
            }
        }
        out
    }

    /// Absolute figures and ratios, for machines.
    pub fn json(&self) -> J {
        let rows = self.rows();
        let mut table = serde_json::Map::new();
        for r in &rows {
            let mut vals = serde_json::Map::new();
            for (k, m) in &self.results {
                vals.insert(k.clone(), (r.get)(k, m).map_or(J::Null, J::from));
            }
            let ratio_kind = match r.better {
                Better::Size => "chartvault size / SQLCipher size (<1 = smaller)",
                _ => "times faster than SQLCipher (>1 = chartvault faster)",
            };
            table.insert(
                r.id.to_string(),
                json!({ "description": r.name, "values": vals, "ratio_vs": r.against, "ratio": self.ratio(r), "ratio_meaning": ratio_kind }),
            );
        }
        let targets: Vec<J> = self
            .targets()
            .into_iter()
            .map(|(t, m, ok)| json!({ "target": t, "measured": m, "met": ok == "yes" }))
            .collect();
        json!({
            "command": self.command,
            "machine": self.machine,
            "params": self.params,
            "operations": table,
            "targets": targets,
            "consistency_warnings": self.consistency(),
            "engines": self.results.iter().map(|(k, m)| (k.clone(), serde_json::to_value(m).unwrap_or(J::Null))).collect::<serde_json::Map<_, _>>(),
        })
    }
}
