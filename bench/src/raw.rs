//! The raw limits: what the same bytes cost with nothing but the AEAD and the disk.
//!
//! * writes: seal each document's JSON (XChaCha20-Poly1305, chartvault's `aead::seal`),
//!   append the batch to a file with one `write`, then `fdatasync`;
//! * reads: `aead::open` of sealed documents held in memory (no I/O, no lookup), as many
//!   as the operation returns on the other engines;
//! * passphrase open: the default Argon2id derivation alone (m=64 MiB, t=3, p=1).

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chartvault::crypto::aead;
use chartvault::{KdfParams, SecretKey};

use crate::driver::{Engine, Res, median_of};
use crate::workload::{Params, Record};

/// How many sealed documents are kept in memory for the read measurements.
const SAMPLE: usize = 20_000;

/// The raw-limit "engine".
pub struct Raw {
    file: File,
    key: SecretKey,
    pending: Vec<(u64, String)>,
    buf: Vec<u8>,
    written: u64,
    sample: Vec<(u64, Vec<u8>)>,
    by_code: HashMap<String, u64>,
    by_day: HashMap<i32, u64>,
    patients: u64,
    total: u64,
}

impl Raw {
    /// Creates the output file.
    pub fn create(path: PathBuf, p: &Params) -> Res<Self> {
        let file = File::create(&path).map_err(|e| e.to_string())?;
        Ok(Raw {
            file,
            key: SecretKey::random(),
            pending: Vec::new(),
            buf: Vec::new(),
            written: 0,
            sample: Vec::new(),
            by_code: HashMap::new(),
            by_day: HashMap::new(),
            patients: p.patients(),
            total: p.total_docs(),
        })
    }

    fn open_n(&self, n: u64, start: u64) -> Res<u64> {
        let mut ok = 0;
        for k in 0..n {
            let (idx, blob) = &self.sample[((start + k) % self.sample.len() as u64) as usize];
            let pt = aead::open(&self.key, &idx.to_le_bytes(), blob).map_err(|_| "AEAD open failed")?;
            ok += u64::from(!pt.is_empty());
        }
        Ok(ok)
    }
}

impl Engine for Raw {
    fn describe(&self) -> String {
        "raw limit: XChaCha20-Poly1305 + write + fdatasync".into()
    }

    fn prepare(&mut self, recs: &[Record]) -> Res<()> {
        for r in recs {
            *self.by_code.entry(format!("{}|{}", r.system, r.code)).or_default() += 1;
            *self.by_day.entry(r.effective).or_default() += 1;
        }
        self.pending = recs.iter().map(|r| (r.idx, r.json.clone())).collect();
        Ok(())
    }

    fn write_prepared(&mut self) -> Res<()> {
        self.buf.clear();
        for (idx, json) in &self.pending {
            let start = self.buf.len();
            aead::seal(&self.key, &idx.to_le_bytes(), json.as_bytes(), &mut self.buf);
            if self.sample.len() < SAMPLE {
                self.sample.push((*idx, self.buf[start..].to_vec()));
            }
        }
        self.file.write_all(&self.buf).map_err(|e| e.to_string())?;
        self.file.sync_data().map_err(|e| e.to_string())?;
        self.written += self.buf.len() as u64;
        Ok(())
    }

    fn point_reads(&mut self, idxs: &[u64]) -> Res<u64> {
        let mut n = 0;
        for i in idxs {
            n += self.open_n(1, *i)?;
        }
        Ok(n)
    }

    fn chart(&mut self, patient: &str) -> Res<u64> {
        let p: u64 = patient.trim_start_matches("MRN-").parse().map_err(|_| "bad patient id")?;
        // Documents i with i % patients == p, i < total.
        let n = self.total / self.patients + u64::from(self.total % self.patients > p);
        self.open_n(n, p)
    }

    fn query_code(&mut self, system: &str, code: &str) -> Res<u64> {
        let n = self.by_code.get(&format!("{system}|{code}")).copied().unwrap_or(0);
        self.open_n(n, n)
    }

    fn query_range(&mut self, from: i32, to: i32) -> Res<u64> {
        let n: u64 = (from..to).map(|d| self.by_day.get(&d).copied().unwrap_or(0)).sum();
        self.open_n(n, from as u64)
    }

    fn reopen(&mut self, _reps: u32) -> Res<Option<Duration>> {
        Ok(None)
    }

    fn extra_opens(&mut self, reps: u32) -> Res<Vec<(String, Duration)>> {
        let kdf = median_of(reps.min(3), || {
            let t = Instant::now();
            KdfParams::DEFAULT.derive(b"correct horse battery staple", &[7; 16]).map_err(|e| e.to_string())?;
            Ok(t.elapsed())
        })?;
        Ok(vec![("passphrase".into(), kdf)])
    }

    fn file_bytes(&mut self) -> Res<u64> {
        Ok(self.written)
    }
}
