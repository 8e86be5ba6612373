//! redb: an unencrypted, pure-Rust B-tree store (the upper bound for a Rust engine
//! without crypto). Documents keyed by id (`u64`) as JSON text, with multimap
//! secondary-index tables patient -> id, code -> id and effective day -> id. Default
//! settings: `Durability::Immediate` (one durable commit per transaction).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use redb::{Database, MultimapTableDefinition, ReadableDatabase, TableDefinition};

use crate::driver::{Engine, Res, median_of, size_of};
use crate::workload::Record;

const DOCS: TableDefinition<u64, &str> = TableDefinition::new("docs");
const BY_PATIENT: MultimapTableDefinition<&str, u64> = MultimapTableDefinition::new("by_patient");
const BY_CODE: MultimapTableDefinition<&str, u64> = MultimapTableDefinition::new("by_code");
const BY_EFFECTIVE: MultimapTableDefinition<i32, u64> = MultimapTableDefinition::new("by_effective");

fn e(x: impl std::fmt::Display) -> String {
    x.to_string()
}

struct Row {
    id: u64,
    patient: String,
    code: String,
    effective: i32,
    json: String,
}

/// redb under test.
pub struct Redb {
    path: PathBuf,
    db: Option<Database>,
    pending: Vec<Row>,
}

impl Redb {
    /// Creates the database.
    pub fn create(path: PathBuf) -> Res<Self> {
        let db = Database::create(&path).map_err(e)?;
        let tx = db.begin_write().map_err(e)?;
        tx.open_table(DOCS).map_err(e)?;
        tx.open_multimap_table(BY_PATIENT).map_err(e)?;
        tx.open_multimap_table(BY_CODE).map_err(e)?;
        tx.open_multimap_table(BY_EFFECTIVE).map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(Redb { path, db: Some(db), pending: Vec::new() })
    }

    fn db(&self) -> Res<&Database> {
        self.db.as_ref().ok_or_else(|| "database closed".to_string())
    }

    /// Fetches documents `ids` inside read transaction `tx`.
    fn fetch(tx: &redb::ReadTransaction, ids: impl Iterator<Item = u64>) -> Res<u64> {
        let docs = tx.open_table(DOCS).map_err(e)?;
        let mut n = 0;
        for id in ids {
            let json: String = docs.get(id).map_err(e)?.ok_or("missing document")?.value().to_owned();
            n += u64::from(!json.is_empty());
        }
        Ok(n)
    }
}

impl Engine for Redb {
    fn describe(&self) -> String {
        "redb 4 (no encryption), Durability::Immediate".into()
    }

    fn prepare(&mut self, recs: &[Record]) -> Res<()> {
        self.pending = recs
            .iter()
            .map(|r| Row {
                id: r.idx + 1,
                patient: r.patient.clone(),
                code: format!("{}|{}", r.system, r.code),
                effective: r.effective,
                json: r.json.clone(),
            })
            .collect();
        Ok(())
    }

    fn write_prepared(&mut self) -> Res<()> {
        let rows = std::mem::take(&mut self.pending);
        let tx = self.db()?.begin_write().map_err(e)?;
        {
            let mut docs = tx.open_table(DOCS).map_err(e)?;
            let mut by_patient = tx.open_multimap_table(BY_PATIENT).map_err(e)?;
            let mut by_code = tx.open_multimap_table(BY_CODE).map_err(e)?;
            let mut by_effective = tx.open_multimap_table(BY_EFFECTIVE).map_err(e)?;
            for r in &rows {
                docs.insert(r.id, r.json.as_str()).map_err(e)?;
                by_patient.insert(r.patient.as_str(), r.id).map_err(e)?;
                by_code.insert(r.code.as_str(), r.id).map_err(e)?;
                by_effective.insert(r.effective, r.id).map_err(e)?;
            }
        }
        tx.commit().map_err(e)
    }

    fn point_reads(&mut self, idxs: &[u64]) -> Res<u64> {
        let tx = self.db()?.begin_read().map_err(e)?;
        let docs = tx.open_table(DOCS).map_err(e)?;
        let mut bytes = 0;
        for i in idxs {
            let json: String = docs.get(i + 1).map_err(e)?.ok_or("missing document")?.value().to_owned();
            bytes += json.len() as u64;
        }
        Ok(bytes)
    }

    fn chart(&mut self, patient: &str) -> Res<u64> {
        let tx = self.db()?.begin_read().map_err(e)?;
        let idx = tx.open_multimap_table(BY_PATIENT).map_err(e)?;
        let ids: Vec<u64> =
            idx.get(patient).map_err(e)?.map(|v| v.map(|v| v.value())).collect::<Result<_, _>>().map_err(e)?;
        Self::fetch(&tx, ids.into_iter())
    }

    fn query_code(&mut self, system: &str, code: &str) -> Res<u64> {
        let tx = self.db()?.begin_read().map_err(e)?;
        let idx = tx.open_multimap_table(BY_CODE).map_err(e)?;
        let key = format!("{system}|{code}");
        let ids: Vec<u64> =
            idx.get(key.as_str()).map_err(e)?.map(|v| v.map(|v| v.value())).collect::<Result<_, _>>().map_err(e)?;
        Self::fetch(&tx, ids.into_iter())
    }

    fn query_range(&mut self, from: i32, to: i32) -> Res<u64> {
        let tx = self.db()?.begin_read().map_err(e)?;
        let idx = tx.open_multimap_table(BY_EFFECTIVE).map_err(e)?;
        let mut ids = Vec::new();
        for entry in idx.range(from..to).map_err(e)? {
            let (_, values) = entry.map_err(e)?;
            for v in values {
                ids.push(v.map_err(e)?.value());
            }
        }
        Self::fetch(&tx, ids.into_iter())
    }

    fn reopen(&mut self, reps: u32) -> Res<Option<Duration>> {
        self.db = None;
        let d = median_of(reps, || {
            let t = Instant::now();
            let db = Database::open(&self.path).map_err(e)?;
            let d = t.elapsed();
            drop(db);
            Ok(d)
        })?;
        self.db = Some(Database::open(&self.path).map_err(e)?);
        Ok(Some(d))
    }

    fn file_bytes(&mut self) -> Res<u64> {
        Ok(size_of(std::slice::from_ref(&self.path)))
    }
}
