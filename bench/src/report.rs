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

/// The full report of one run (of one or more rounds).
pub struct Report {
    params: Params,
    command: String,
    /// Per engine: the median of each figure over the rounds (the figures of the one
    /// round when there is one).
    results: Vec<(String, Measurements)>,
    /// Every round's own results, in the order they ran.
    rounds: Vec<Vec<(String, Measurements)>>,
    machine: J,
}

/// The median of `v` (the mean of the middle two for an even count); `None` if empty.
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

/// Per-figure medians of several runs of one engine: every number is the median of
/// that number over the runs; text is the first run's.
pub fn median_measurements(runs: &[Measurements]) -> Measurements {
    fn merge(vals: &[J]) -> J {
        match vals.first() {
            Some(J::Number(_)) => {
                let nums: Vec<f64> = vals.iter().filter_map(J::as_f64).collect();
                match median(nums) {
                    // Integer fields (counts, bytes) stay integers.
                    Some(x) if vals.iter().all(J::is_u64) => J::from(x.round() as u64),
                    Some(x) => J::from(x),
                    None => J::Null,
                }
            }
            Some(J::Array(first)) => J::Array(
                (0..first.len())
                    .map(|i| merge(&vals.iter().filter_map(|v| v.get(i).cloned()).collect::<Vec<_>>()))
                    .collect(),
            ),
            Some(J::Object(first)) => J::Object(
                first
                    .keys()
                    .map(|k| (k.clone(), merge(&vals.iter().filter_map(|v| v.get(k).cloned()).collect::<Vec<_>>())))
                    .collect(),
            ),
            Some(other) => other.clone(),
            None => J::Null,
        }
    }
    let vals: Vec<J> = runs.iter().filter_map(|m| serde_json::to_value(m).ok()).collect();
    serde_json::from_value(merge(&vals)).unwrap_or_else(|e| {
        eprintln!("warning: cannot take per-figure medians ({e}); reporting the first round's figures");
        runs.first().cloned().unwrap_or_default()
    })
}

/// "rounds lo–hi" for the values of two or more rounds, else `None`.
fn range(v: &[f64]) -> Option<String> {
    if v.len() < 2 {
        return None;
    }
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some(format!("rounds {lo:.2}–{hi:.2}"))
}

/// `r`'s ratio in one set of results.
fn ratio_in(results: &[(String, Measurements)], r: &Row) -> Option<f64> {
    let get = |key: &str| results.iter().find(|(k, _)| k == key).map(|(_, m)| m);
    let cv = (r.get)("chartvault", get("chartvault")?)?;
    let sq = (r.get)(r.against, get(r.against)?)?;
    Some(match r.better {
        Better::Higher => cv / sq,
        Better::Lower => sq / cv,
        Better::Size => cv / sq,
    })
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
    /// A report of several rounds, each with every engine (run in alternation, so each
    /// engine saw the machine's slow and quiet periods alike). Absolute figures are
    /// per-engine medians; each ratio is the median of the rounds' own ratios (each
    /// taken between engines that ran minutes apart).
    pub fn of_rounds(params: Params, command: String, rounds: Vec<Vec<(String, Measurements)>>) -> Self {
        let mut results: Vec<(String, Measurements)> = Vec::new();
        if let Some(first) = rounds.first() {
            for (key, _) in first {
                let runs: Vec<Measurements> =
                    rounds.iter().filter_map(|r| r.iter().find(|(k, _)| k == key).map(|(_, m)| m.clone())).collect();
                let m = if runs.len() == 1 { runs[0].clone() } else { median_measurements(&runs) };
                results.push((key.clone(), m));
            }
        }
        Report { params, command, results, rounds, machine: machine() }
    }

    /// The ratio of `r` in each round.
    fn round_ratios(&self, r: &Row) -> Vec<f64> {
        self.rounds.iter().filter_map(|res| ratio_in(res, r)).collect()
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

    /// The ratio of `r`: with several rounds, the median of the rounds' ratios.
    fn ratio(&self, r: &Row) -> Option<f64> {
        if self.rounds.len() > 1 { median(self.round_ratios(r)) } else { ratio_in(&self.results, r) }
    }

    /// " (rounds: a–b)" after a ratio measured in several rounds, else nothing.
    fn spread(&self, r: &Row) -> String {
        range(&self.round_ratios(r)).map_or(String::new(), |r| format!(" ({r})"))
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
        if self.rounds.len() > 1 {
            s.push_str(&format!(
                "{} rounds, engines alternating; figures are per-engine medians, ratios the median of the \
                 rounds' own ratios (their range in parentheses)\n\n",
                self.rounds.len()
            ));
        }
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
            let spread = self.spread(&r);
            let ratio = match (self.ratio(&r), r.better) {
                (Some(x), Better::Size) => format!("{x:.2}× size{spread}"),
                (Some(x), _) if r.against == "sqlcipher-passphrase" => {
                    format!("{} (vs passphrase){spread}", fmt_ratio(x))
                }
                (Some(x), _) => format!("{}{spread}", fmt_ratio(x)),
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
                let spread = rows.iter().find(|r| r.id == id).map(|r| self.spread(r)).unwrap_or_default();
                out.push((what.to_string(), format!("{x:.2}×{spread}"), yes(x >= min)));
            }
        }
        if let Some(cv) = self.get("chartvault") {
            // Against the write + fdatasync probe that alternated with chartvault's own
            // commits (the shared disk's fsync latency drifts between engine runs).
            let per_round: Vec<f64> = self
                .rounds
                .iter()
                .filter_map(|res| res.iter().find(|(k, _)| k == "chartvault"))
                .map(|(_, m)| m.fsync_probe_us_mean / m.single_commit_us_mean)
                .collect();
            let x = median(per_round.clone()).unwrap_or(cv.fsync_probe_us_mean / cv.single_commit_us_mean);
            let spread = range(&per_round).map_or(String::new(), |r| format!("; {r}"));
            out.push((
                "durable single commits within 0.8× of raw write + fdatasync (same-time probe)".into(),
                format!("{x:.2}× ({:.0} µs vs {:.0} µs{spread})", cv.single_commit_us_mean, cv.fsync_probe_us_mean),
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
            "rounds": self.rounds.len(),
            "round_ratios": rows.iter().map(|r| (r.id.to_string(), J::from(self.round_ratios(r)))).collect::<serde_json::Map<_, _>>(),
            "per_round": self.rounds.iter().map(|res| res.iter().map(|(k, m)| (k.clone(), serde_json::to_value(m).unwrap_or(J::Null))).collect::<serde_json::Map<_, _>>()).collect::<Vec<_>>(),
            "engines": self.results.iter().map(|(k, m)| (k.clone(), serde_json::to_value(m).unwrap_or(J::Null))).collect::<serde_json::Map<_, _>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Params {
        serde_json::from_str(
            r#"{"docs":1000,"batch":1000,"single_commits":10,"point_reads":10,"charts":1,"code_queries":1,
               "range_queries":1,"range_days":7,"opens":1,"seed":42,"sql_cache_mib":1,"dir":""}"#,
        )
        .unwrap()
    }

    fn m(read_us: f64, extra: f64) -> Measurements {
        Measurements {
            engine: "e".into(),
            load_docs: 1000,
            load_secs: 1.0,
            point_read_us: read_us,
            single_commit_us_mean: 100.0,
            fsync_probe_us_mean: 80.0,
            extra_opens_ms: vec![("passphrase".into(), extra)],
            ..Measurements::default()
        }
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        let mm = median_measurements(&[m(10.0, 5.0), m(30.0, 7.0), m(20.0, 100.0)]);
        assert_eq!(mm.point_read_us, 20.0);
        assert_eq!(mm.extra_opens_ms, vec![("passphrase".to_string(), 7.0)]);
        assert_eq!((mm.load_docs, mm.engine.as_str()), (1000, "e"));
    }

    /// With rounds, a ratio is the median of the rounds' own ratios (each round pairs
    /// engines that ran minutes apart), not the ratio of the medians.
    #[test]
    fn ratios_over_rounds_are_medians_of_paired_ratios() {
        let round =
            |cv: f64, sq: f64| vec![("chartvault".to_string(), m(cv, 1.0)), ("sqlcipher-raw".to_string(), m(sq, 1.0))];
        // Paired ratios (sq / cv): 0.5, 2.0, 1.0: median 1.0. Ratio of the medians
        // (cv median 20, sq median 20) would also be 1.0, so make them differ:
        let rep =
            Report::of_rounds(params(), "cmd".into(), vec![round(10.0, 5.0), round(20.0, 40.0), round(40.0, 40.0)]);
        let row = rep.rows().into_iter().find(|r| r.id == "point_read_us").unwrap();
        assert_eq!(rep.round_ratios(&row), vec![0.5, 2.0, 1.0]);
        assert_eq!(rep.ratio(&row), Some(1.0));
        assert_eq!(rep.get("chartvault").unwrap().point_read_us, 20.0);
        assert!(rep.markdown().contains("(rounds 0.50–2.00)"), "{}", rep.markdown());
        let j = rep.json();
        assert_eq!(j["rounds"], 3);
        assert_eq!(j["per_round"].as_array().unwrap().len(), 3);
        // One round: the plain ratio, no range.
        let one = Report::of_rounds(params(), "cmd".into(), vec![round(10.0, 5.0)]);
        assert_eq!(one.ratio(&row), Some(0.5));
        assert!(!one.markdown().contains("rounds"));
    }
}
