//! The SQL engines: SQLCipher (linked into `chartvault-bench`) and plain SQLite
//! (linked into `chartvault-bench-sqlite`). The same source runs on both; only the
//! library under rusqlite differs.
//!
//! Schema: `docs(id INTEGER PRIMARY KEY, patient, kind, code, effective, json)` with
//! indexes on patient, code and effective. WAL journal with `synchronous = FULL`, so
//! every commit is durable with one fsync of the WAL (the cheapest durable mode);
//! page cache `Params::sql_cache_mib`. Reads of one phase run inside one transaction
//! (SQLite's best mode for many small reads).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};

use crate::driver::{Engine, Res, median_of, size_of};
use crate::workload::{Record, date_string};

/// How the database is keyed.
#[derive(Clone)]
pub enum SqlKey {
    /// Plain SQLite (no key): only the SQLite runner builds this one.
    #[allow(dead_code)]
    None,
    /// SQLCipher with a raw 256-bit key: `PRAGMA key = "x'<64 hex>'"` (no KDF).
    Raw([u8; 32]),
    /// SQLCipher with a passphrase and its default KDF (PBKDF2-HMAC-SHA512, 256,000 iterations).
    Passphrase(String),
}

fn e(x: rusqlite::Error) -> String {
    x.to_string()
}

struct Row {
    id: i64,
    patient: String,
    kind: &'static str,
    code: String,
    effective: String,
    json: String,
}

/// One SQL database.
pub struct SqlEngine {
    path: PathBuf,
    key: SqlKey,
    cache_mib: u64,
    conn: Option<Connection>,
    pending: Vec<Row>,
    version: String,
}

impl SqlEngine {
    /// Creates the database at `path`.
    pub fn create(path: PathBuf, key: SqlKey, cache_mib: u64) -> Res<Self> {
        let mut s = SqlEngine { path, key, cache_mib, conn: None, pending: Vec::new(), version: String::new() };
        let conn = s.connect()?;
        conn.execute_batch(
            "CREATE TABLE docs (id INTEGER PRIMARY KEY, patient TEXT NOT NULL, kind TEXT NOT NULL, \
               code TEXT NOT NULL, effective TEXT NOT NULL, json TEXT NOT NULL);
             CREATE INDEX docs_patient ON docs(patient);
             CREATE INDEX docs_code ON docs(code);
             CREATE INDEX docs_effective ON docs(effective);",
        )
        .map_err(e)?;
        let sqlite: String = conn.query_row("SELECT sqlite_version()", [], |r| r.get(0)).map_err(e)?;
        let cipher: Option<String> = conn.query_row("PRAGMA cipher_version", [], |r| r.get(0)).ok();
        match (&s.key, &cipher) {
            (SqlKey::None, Some(c)) => {
                return Err(format!(
                    "this binary is linked against SQLCipher {c}, not plain SQLite (Cargo unified rusqlite's \
                     features in a whole-workspace build): rebuild with `cargo build --release -p chartvault-bench-sqlite`"
                ));
            }
            (SqlKey::Raw(_) | SqlKey::Passphrase(_), None) => {
                return Err("SQLCipher expected, plain SQLite found".into());
            }
            _ => {}
        }
        s.version = match cipher {
            Some(c) => format!("SQLCipher {c} (SQLite {sqlite})"),
            None => format!("SQLite {sqlite}"),
        };
        s.conn = Some(conn);
        Ok(s)
    }

    /// Opens a connection: key first, then check the key, then per-connection settings.
    fn connect(&self) -> Res<Connection> {
        let conn = Connection::open(&self.path).map_err(e)?;
        match &self.key {
            SqlKey::None => {}
            SqlKey::Raw(k) => {
                let hex: String = k.iter().map(|b| format!("{b:02x}")).collect();
                conn.execute_batch(&format!("PRAGMA key = \"x'{hex}'\";")).map_err(e)?;
            }
            SqlKey::Passphrase(p) => {
                conn.execute_batch(&format!("PRAGMA key = '{}';", p.replace('\'', "''"))).map_err(e)?
            }
        }
        // Reading the schema proves the key (and, for SQLCipher, derives it).
        let _: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0)).map_err(e)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(e)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(format!("journal_mode is {mode}, not wal"));
        }
        conn.execute_batch(&format!("PRAGMA synchronous = FULL; PRAGMA cache_size = -{};", self.cache_mib * 1024))
            .map_err(e)?;
        Ok(conn)
    }

    fn conn(&mut self) -> Res<&mut Connection> {
        self.conn.as_mut().ok_or_else(|| "connection closed".to_string())
    }

    fn fetch(&mut self, sql: &str, p: &[&dyn rusqlite::ToSql]) -> Res<u64> {
        let conn = self.conn()?;
        let tx = conn.transaction().map_err(e)?;
        let mut n = 0;
        {
            let mut st = tx.prepare_cached(sql).map_err(e)?;
            let mut rows = st.query(p).map_err(e)?;
            while let Some(r) = rows.next().map_err(e)? {
                let json: String = r.get(0).map_err(e)?;
                n += u64::from(!json.is_empty());
            }
        }
        tx.commit().map_err(e)?;
        Ok(n)
    }
}

impl Engine for SqlEngine {
    fn describe(&self) -> String {
        let key = match &self.key {
            SqlKey::None => "no key",
            SqlKey::Raw(_) => "raw key",
            SqlKey::Passphrase(_) => "passphrase",
        };
        format!("{}, {key}, WAL, synchronous=FULL, cache {} MiB", self.version, self.cache_mib)
    }

    fn prepare(&mut self, recs: &[Record]) -> Res<()> {
        self.pending = recs
            .iter()
            .map(|r| Row {
                id: r.idx as i64 + 1,
                patient: r.patient.clone(),
                kind: r.kind,
                code: format!("{}|{}", r.system, r.code),
                effective: date_string(r.effective),
                json: r.json.clone(),
            })
            .collect();
        Ok(())
    }

    fn write_prepared(&mut self) -> Res<()> {
        let rows = std::mem::take(&mut self.pending);
        let conn = self.conn()?;
        let tx = conn.transaction().map_err(e)?;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO docs (id, patient, kind, code, effective, json) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(e)?;
            for r in &rows {
                st.execute(params![r.id, r.patient, r.kind, r.code, r.effective, r.json]).map_err(e)?;
            }
        }
        tx.commit().map_err(e)
    }

    fn point_reads(&mut self, idxs: &[u64]) -> Res<u64> {
        let conn = self.conn()?;
        let tx = conn.transaction().map_err(e)?;
        let mut bytes = 0u64;
        {
            let mut st = tx.prepare_cached("SELECT json FROM docs WHERE id = ?1").map_err(e)?;
            for i in idxs {
                let json: String = st.query_row([*i as i64 + 1], |r| r.get(0)).map_err(e)?;
                bytes += json.len() as u64;
            }
        }
        tx.commit().map_err(e)?;
        Ok(bytes)
    }

    fn chart(&mut self, patient: &str) -> Res<u64> {
        self.fetch("SELECT json FROM docs WHERE patient = ?1 ORDER BY id", &[&patient])
    }

    fn query_code(&mut self, system: &str, code: &str) -> Res<u64> {
        self.fetch("SELECT json FROM docs WHERE code = ?1", &[&format!("{system}|{code}")])
    }

    fn query_range(&mut self, from: i32, to: i32) -> Res<u64> {
        self.fetch(
            "SELECT json FROM docs WHERE effective >= ?1 AND effective < ?2",
            &[&date_string(from), &date_string(to)],
        )
    }

    fn reopen(&mut self, reps: u32) -> Res<Option<Duration>> {
        self.conn = None;
        let d = median_of(reps, || {
            let t = Instant::now();
            let c = self.connect()?;
            let d = t.elapsed();
            drop(c);
            Ok(d)
        })?;
        self.conn = Some(self.connect()?);
        Ok(Some(d))
    }

    fn file_bytes(&mut self) -> Res<u64> {
        let conn = self.conn()?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).map_err(e)?;
        let wal = PathBuf::from(format!("{}-wal", self.path.display()));
        Ok(size_of(&[self.path.clone(), wal]))
    }
}
