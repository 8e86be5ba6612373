//! The plain-SQLite half of `chartvault-bench compare`.
//!
//! SQLite and SQLCipher cannot share one binary (same C symbols, and both sys crates
//! declare `links = "sqlite3"`), so the compare program runs this binary as a
//! subprocess with the same workload parameters (JSON on the command line) and reads
//! the measurements (JSON) from its standard output. The workload, driver and SQL code
//! are the very same source files as the compare program's.
//!
//! Usage: `chartvault-bench-sqlite '<params json>'`

#[path = "../../src/driver.rs"]
mod driver;
// The SQLCipher key variants are only built by chartvault-bench.
#[allow(dead_code)]
#[path = "../../src/sql.rs"]
mod sql;
#[path = "../../src/workload.rs"]
mod workload;

fn main() {
    let Some(arg) = std::env::args().nth(1) else {
        eprintln!("usage: chartvault-bench-sqlite '<params json>' (run by `chartvault-bench compare`)");
        std::process::exit(2);
    };
    let result = serde_json::from_str::<workload::Params>(&arg).map_err(|e| e.to_string()).and_then(|p| {
        let dir = tempfile::Builder::new().prefix("cvbench-sqlite").tempdir_in(&p.dir).map_err(|e| e.to_string())?;
        let mut eng = sql::SqlEngine::create(dir.path().join("plain.sqlite"), sql::SqlKey::None, p.sql_cache_mib)?;
        driver::run(&mut eng, &p)
    });
    match result.and_then(|m| serde_json::to_string(&m).map_err(|e| e.to_string())) {
        Ok(json) => println!("{json}"),
        Err(e) => {
            eprintln!("chartvault-bench-sqlite: {e}");
            std::process::exit(1);
        }
    }
}
