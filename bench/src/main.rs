//! `chartvault-bench compare`: the same synthetic chart workload on chartvault,
//! SQLCipher (raw key and passphrase), plain SQLite, redb and the raw limits, printed
//! side by side with ratios to SQLCipher.
//!
//! ```text
//! cargo run --release -p chartvault-bench -- compare [--docs N] [--json OUT] [--markdown OUT]
//!     [--dir DIR] [--engines chartvault,sqlcipher-raw,sqlcipher-passphrase,sqlite,redb,raw]
//!     [--point-reads N] [--charts N] [--opens N] [--sql-cache-mib N] [--seed N] [--rounds N]
//! ```
//! With `--rounds N` every engine runs the whole workload N times, the engines taking
//! turns (the order reversed every other round), and the report gives per-engine
//! medians and the median of the rounds' own ratios: on a shared, noisy machine one
//! slow minute then moves one round, not the result.
//! `chartvault-bench profile ...` runs one chartvault operation in a loop for a
//! profiler (see `profile.rs`).
//!
//! Plain SQLite runs in the `chartvault-bench-sqlite` binary (it cannot be linked
//! beside SQLCipher), which this program builds with Cargo and runs as a subprocess.
//! See `bench/RESULTS.md` for results and method.

mod cv;
mod driver;
mod profile;
mod raw;
mod redb_engine;
mod report;
mod sql;
mod workload;

use std::path::{Path, PathBuf};
use std::process::Command;

use driver::{Engine, Measurements, Res};

/// With the default feature `mimalloc`, every Rust allocation of the benchmark process
/// goes through mimalloc (see bench/Cargo.toml); `--no-default-features` keeps the
/// system allocator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use workload::Params;

/// Engines in report order: (key, column title).
pub const ENGINES: &[(&str, &str)] = &[
    ("chartvault", "chartvault"),
    ("sqlcipher-raw", "SQLCipher (raw key)"),
    ("sqlcipher-passphrase", "SQLCipher (passphrase)"),
    ("sqlite", "SQLite"),
    ("redb", "redb"),
    ("raw", "raw limit"),
];

struct Cli {
    params: Params,
    json: Option<PathBuf>,
    markdown: Option<PathBuf>,
    engines: Vec<String>,
    rounds: u32,
}

fn usage() -> ! {
    eprintln!(
        "usage: chartvault-bench compare [--docs N] [--json OUT] [--markdown OUT] [--dir DIR]\n\
         \x20      [--engines {}] [--point-reads N] [--charts N] [--opens N] [--sql-cache-mib N] [--seed N] [--rounds N]",
        ENGINES.iter().map(|e| e.0).collect::<Vec<_>>().join(",")
    );
    std::process::exit(2)
}

fn parse_cli() -> Cli {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some("compare") {
        usage();
    }
    let mut p = Params {
        docs: 100_000,
        batch: 1_000,
        single_commits: 1_000,
        point_reads: 100_000,
        charts: 1_000,
        code_queries: 20,
        range_queries: 20,
        range_days: 7,
        opens: 5,
        seed: 42,
        sql_cache_mib: 64,
        dir: std::env::temp_dir().display().to_string(),
    };
    let (mut json, mut markdown) = (None, None);
    let mut rounds = 1;
    let mut engines: Vec<String> = ENGINES.iter().map(|e| e.0.to_string()).collect();
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        let num = |s: String| s.replace('_', "").parse::<u64>().unwrap_or_else(|_| usage());
        match a.as_str() {
            "--docs" => p.docs = num(val()).max(1),
            "--json" => json = Some(PathBuf::from(val())),
            "--markdown" => markdown = Some(PathBuf::from(val())),
            "--dir" => p.dir = val(),
            "--engines" => {
                engines = val().split(',').map(|s| s.trim().to_string()).collect();
                if engines.iter().any(|e| !ENGINES.iter().any(|x| x.0 == e)) {
                    usage();
                }
            }
            "--point-reads" => p.point_reads = num(val()),
            "--charts" => p.charts = num(val()),
            "--opens" => p.opens = num(val()).clamp(1, 100) as u32,
            "--sql-cache-mib" => p.sql_cache_mib = num(val()),
            "--seed" => p.seed = num(val()),
            "--rounds" => rounds = num(val()).clamp(1, 20) as u32,
            _ => usage(),
        }
    }
    Cli { params: p, json, markdown, engines, rounds }
}

/// Builds the plain-SQLite runner on its own (so its rusqlite features are not unified
/// with SQLCipher's) and returns its path.
fn sqlite_runner() -> Res<PathBuf> {
    let release = !cfg!(debug_assertions);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root).args(["build", "-p", "chartvault-bench-sqlite"]);
    if release {
        cmd.arg("--release");
    }
    eprintln!("building the plain-SQLite runner: {cmd:?}");
    let st = cmd.status().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !st.success() {
        return Err("building chartvault-bench-sqlite failed".into());
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    Ok(exe.with_file_name(format!("chartvault-bench-sqlite{}", std::env::consts::EXE_SUFFIX)))
}

fn run_engine(key: &str, p: &Params) -> Res<Measurements> {
    let dir =
        tempfile::Builder::new().prefix(&format!("cvbench-{key}")).tempdir_in(&p.dir).map_err(|e| e.to_string())?;
    let mut eng: Box<dyn Engine> = match key {
        "chartvault" => Box::new(cv::Chartvault::create(dir.path().join("bench.cv"), p)?),
        "sqlcipher-raw" => {
            let mut k = [0u8; 32];
            let mut r = workload::Rng::new(p.seed ^ 0xc1f3);
            for c in k.chunks_mut(8) {
                c.copy_from_slice(&r.next_u64().to_le_bytes());
            }
            Box::new(sql::SqlEngine::create(dir.path().join("raw.sqlcipher"), sql::SqlKey::Raw(k), p.sql_cache_mib)?)
        }
        "sqlcipher-passphrase" => Box::new(sql::SqlEngine::create(
            dir.path().join("pass.sqlcipher"),
            sql::SqlKey::Passphrase("correct horse battery staple".into()),
            p.sql_cache_mib,
        )?),
        "sqlite" => {
            let runner = sqlite_runner()?;
            let args = serde_json::to_string(p).map_err(|e| e.to_string())?;
            let out = Command::new(&runner)
                .arg(args)
                .stderr(std::process::Stdio::inherit())
                .output()
                .map_err(|e| format!("cannot run {}: {e}", runner.display()))?;
            if !out.status.success() {
                return Err(format!("{} failed", runner.display()));
            }
            return serde_json::from_slice(&out.stdout).map_err(|e| format!("runner output: {e}"));
        }
        "redb" => Box::new(redb_engine::Redb::create(dir.path().join("bench.redb"))?),
        "raw" => Box::new(raw::Raw::create(dir.path().join("raw.bin"), p)?),
        _ => return Err(format!("unknown engine {key}")),
    };
    let m = driver::run(eng.as_mut(), p);
    drop(eng);
    m
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("profile") {
        if let Err(e) = profile::main(&args[2..]) {
            eprintln!("profile: {e}");
            std::process::exit(1);
        }
        return;
    }
    let cli = parse_cli();
    let p = &cli.params;
    if p.dir.starts_with("/dev/shm") {
        eprintln!("warning: {} is tmpfs: fsync costs nothing there", p.dir);
    }
    let command: Vec<String> = std::env::args().collect();
    let selected: Vec<&str> = ENGINES.iter().map(|e| e.0).filter(|k| cli.engines.iter().any(|e| e == k)).collect();
    let mut rounds: Vec<Vec<(String, Measurements)>> = Vec::new();
    for round in 0..cli.rounds {
        let mut results: Vec<(String, Measurements)> = Vec::new();
        // Every other round runs the engines in reverse, so no engine always runs
        // first (or last) in a round.
        let order: Vec<&str> = if round % 2 == 1 { selected.iter().rev().copied().collect() } else { selected.clone() };
        for key in order {
            eprintln!("=== {key}: {} documents (round {} of {}) ===", p.docs, round + 1, cli.rounds);
            match run_engine(key, p) {
                Ok(m) => results.push((key.to_string(), m)),
                Err(e) => {
                    eprintln!("{key} failed: {e}");
                    std::process::exit(1);
                }
            }
        }
        results.sort_by_key(|(k, _)| selected.iter().position(|s| s == k));
        rounds.push(results);
    }
    let rep = report::Report::of_rounds(p.clone(), command.join(" "), rounds);
    let md = rep.markdown();
    println!("{md}");
    if let Some(path) = &cli.markdown
        && let Err(e) = std::fs::write(path, &md)
    {
        eprintln!("cannot write {}: {e}", path.display());
        std::process::exit(1);
    }
    if let Some(path) = &cli.json {
        let text = serde_json::to_string_pretty(&rep.json()).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("cannot write {}: {e}", path.display());
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::workload::{FIRST_DAY, Params, date_string, datetime_string, record};

    #[test]
    fn dates() {
        assert_eq!(date_string(0), "1970-01-01");
        assert_eq!(date_string(FIRST_DAY), "2019-01-01");
        assert_eq!(date_string(19_782), "2024-02-29");
        assert_eq!(datetime_string(86_400 + 3661), "1970-01-02T01:01:01Z");
    }

    #[test]
    fn documents_are_about_1_kib_of_valid_json() {
        let p: Params = serde_json::from_str(
            r#"{"docs":1000,"batch":1000,"single_commits":0,"point_reads":0,"charts":0,"code_queries":0,
               "range_queries":0,"range_days":7,"opens":1,"seed":42,"sql_cache_mib":1,"dir":""}"#,
        )
        .unwrap();
        for i in 0..100 {
            let r = record(&p, i);
            assert!((900..1200).contains(&r.json.len()), "{}", r.json.len());
            let v: serde_json::Value = serde_json::from_str(&r.json).unwrap();
            assert_eq!(v["patient"], r.patient.as_str());
            assert!(crate::cv::new_document(&r).is_ok());
        }
    }
}
