//! chartvault through its public API, with access control and audit on: a physician
//! session (purpose TREAT) whose care team covers every patient of the workload.
//!
//! Policy: the hospital default plus the `financial` label on the physician/TREAT
//! grant. The default policy gives `financial` only to billing (and lets billing write
//! only Claim and Coverage documents), so no session of the default policy may write a
//! document that carries all four of the workload's labels; one added label on an
//! existing grant changes nothing in how much work a decision takes.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chartvault::access::{Policy, Principal, Purpose, Role};
use chartvault::{
    Coding, Date, DateTime, DocumentId, KdfParams, Label, NewDocument, SecretKey, Session, Value, Vault, VaultKey,
    VaultOptions,
};

use crate::driver::{Engine, Res, median_of, size_of};
use crate::workload::{Params, Record};

/// The passphrase of the extra key slot (opened with the default Argon2id cost).
const PASSPHRASE: &[u8] = b"correct horse battery staple";

fn e(x: chartvault::Error) -> String {
    x.to_string()
}

/// The workload's document as a `NewDocument` (field names follow the JSON form).
pub fn new_document(r: &Record) -> Res<NewDocument> {
    let demo = || vec![Label::demographics()];
    let fin = || vec![Label::financial()];
    let dec = |s: &str| s.parse::<chartvault::Decimal>().map(Value::Decimal).map_err(|x| x.to_string());
    let date = |d: i32| Date::from_days(d).map(Value::Date).ok_or_else(|| "date out of range".to_string());
    Ok(NewDocument::new(&r.patient, r.kind)
        .map_err(e)?
        .with_labeled("name", Value::Text(r.name.clone()), demo())
        .with_labeled("birthDate", date(r.birth_date)?, demo())
        .with_labeled("address", Value::Text(r.address.clone()), demo())
        .with_labeled("phone", Value::Text(r.phone.clone()), demo())
        .with("code", Value::from(Coding::new(r.system, &r.code, Some(&r.display))))
        .with("effective", date(r.effective)?)
        .with("issued", Value::DateTime(DateTime::from_unix_micros(r.issued_s * 1_000_000)))
        .with("status", Value::Text(r.status.into()))
        .with("category", Value::Text(r.category.into()))
        .with("value", dec(&r.value)?)
        .with("unit", Value::Text(r.unit.into()))
        .with("interpretation", Value::Text(r.interpretation.into()))
        .with("performer", Value::Text(r.performer.clone()))
        .with("note", Value::Text(r.note.clone()))
        .with_labeled("billingCode", Value::Text(r.billing_code.clone()), fin())
        .with_labeled("charge", dec(&r.charge)?, fin())
        .with_labeled("payer", Value::Text(r.payer.into()), fin())
        .with_labeled("claimId", Value::Text(r.claim_id.clone()), fin()))
}

/// The policy used: hospital default, physician/TREAT also granted `financial`.
pub fn bench_policy() -> Policy {
    let mut p = Policy::hospital_default();
    for g in &mut p.grants {
        if g.roles.contains(&Role::physician())
            && g.purposes.contains(&Purpose::Treat)
            && !g.labels.contains(&Label::financial())
        {
            g.labels.push(Label::financial());
        }
    }
    p
}

/// The physician of the benchmark, caring for every patient.
pub fn physician(p: &Params) -> Principal {
    Principal::new("dr.bench", Role::physician(), "general", Purpose::Treat)
        .with_care_team((0..p.patients()).map(crate::workload::patient_id))
}

/// Vault options: defaults (checkpoint every 50,000 versions and at close after 4,096,
/// audit window 500 ms, 8,192 pending read-audit entries, Argon2id m=64 MiB t=3 for
/// passphrase slots) and the benchmark policy.
pub fn options() -> VaultOptions {
    VaultOptions { initial_policy: bench_policy(), ..VaultOptions::default() }
}

/// chartvault under test.
pub struct Chartvault {
    path: PathBuf,
    key: SecretKey,
    // Field order matters: the session holds the vault open.
    session: Option<Session>,
    vault: Option<Vault>,
    ids: Vec<DocumentId>,
    pending: Vec<NewDocument>,
}

impl Chartvault {
    /// Creates the vault (raw key) and adds a passphrase slot with the default KDF.
    pub fn create(path: PathBuf, p: &Params) -> Res<Self> {
        let key = SecretKey::random();
        let vault = Vault::create(&path, VaultKey::Raw(&key), options()).map_err(e)?;
        {
            let sec = vault
                .session(Principal::new("sec.bench", Role::security_admin(), "general", Purpose::SystemAdmin))
                .map_err(e)?;
            sec.add_key_slot(VaultKey::Passphrase(PASSPHRASE), KdfParams::DEFAULT).map_err(e)?;
        }
        let session = vault.session(physician(p)).map_err(e)?;
        Ok(Chartvault { path, key, session: Some(session), vault: Some(vault), ids: Vec::new(), pending: Vec::new() })
    }

    fn session(&self) -> Res<&Session> {
        self.session.as_ref().ok_or_else(|| "vault closed".to_string())
    }

    fn close(&mut self) -> Res<()> {
        self.session = None;
        if let Some(v) = self.vault.take() {
            v.close().map_err(e)?;
        }
        Ok(())
    }

    fn timed_open(&self, key: VaultKey<'_>, opts: VaultOptions) -> Res<Duration> {
        let t = Instant::now();
        let v = Vault::open(&self.path, key, opts).map_err(e)?;
        let d = t.elapsed();
        v.close().map_err(e)?;
        Ok(d)
    }

    fn fetched(docs: &[chartvault::Document]) -> u64 {
        docs.iter().filter(|d| d.redacted.is_empty() && !d.fields.is_empty()).count() as u64
    }
}

impl Engine for Chartvault {
    fn describe(&self) -> String {
        "chartvault (physician session, audit on)".into()
    }

    fn prepare(&mut self, recs: &[Record]) -> Res<()> {
        self.pending = recs.iter().map(new_document).collect::<Res<_>>()?;
        Ok(())
    }

    fn write_prepared(&mut self) -> Res<()> {
        let docs = std::mem::take(&mut self.pending);
        let s = self.session.as_ref().ok_or_else(|| "vault closed".to_string())?;
        let mut b = s.batch().map_err(e)?;
        // `put_all`, the bulk-import call (each document prepared on every core);
        // `CVB_PUT_EACH=1` stages them with `put` one by one instead, for A/B runs.
        let ids = if std::env::var_os("CVB_PUT_EACH").is_some() {
            docs.iter().map(|d| b.put(d)).collect::<Result<Vec<_>, _>>().map_err(e)?
        } else {
            b.put_all(&docs).map_err(e)?
        };
        b.commit().map_err(e)?;
        self.ids.extend(ids);
        Ok(())
    }

    fn point_reads(&mut self, idxs: &[u64]) -> Res<u64> {
        let s = self.session()?;
        let mut n = 0;
        for i in idxs {
            let id = self.ids.get(*i as usize).ok_or("no such document")?;
            let d = s.get(id).map_err(e)?;
            n += d.fields.len() as u64;
        }
        Ok(n)
    }

    fn chart(&mut self, patient: &str) -> Res<u64> {
        Ok(Self::fetched(&self.session()?.chart(patient).map_err(e)?))
    }

    fn query_code(&mut self, system: &str, code: &str) -> Res<u64> {
        let r = self.session()?.query_str(&format!("code = {system}:{code} limit 10000")).map_err(e)?;
        if r.next_cursor.is_some() {
            return Err("code query matched more than 10,000 documents".into());
        }
        Ok(Self::fetched(&r.documents))
    }

    fn query_range(&mut self, from: i32, to: i32) -> Res<u64> {
        let (f, t) = (crate::workload::date_string(from), crate::workload::date_string(to));
        let r = self.session()?.query_str(&format!("effective >= {f} and effective < {t} limit 10000")).map_err(e)?;
        if r.next_cursor.is_some() {
            return Err("range query matched more than 10,000 documents".into());
        }
        Ok(Self::fetched(&r.documents))
    }

    fn reopen(&mut self, reps: u32) -> Res<Option<Duration>> {
        // Closing writes a checkpoint if enough versions came after the newest one
        // (`checkpoint_at_close`): reported, not part of any figure.
        let t = Instant::now();
        self.close()?;
        eprintln!("[chartvault] close: {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
        let key = self.key.clone();
        median_of(reps, || self.timed_open(VaultKey::Raw(&key), options())).map(Some)
    }

    fn extra_opens(&mut self, reps: u32) -> Res<Vec<(String, Duration)>> {
        let pass = median_of(reps.min(3), || self.timed_open(VaultKey::Passphrase(PASSPHRASE), options()))?;
        // Recovery: the header no longer points at a checkpoint, so open rebuilds the
        // indexes from every record frame (as after a crash before any checkpoint).
        // Closing writes no checkpoint, so every timed open replays the whole log.
        let recovery = || VaultOptions { checkpoint_at_close: 0, ..options() };
        {
            let v = Vault::open(&self.path, VaultKey::Raw(&self.key), recovery()).map_err(e)?;
            v.store().set_checkpoint_pointer(0).map_err(e)?;
            v.close().map_err(e)?;
        }
        let key = self.key.clone();
        let rec = median_of(reps.min(3), || self.timed_open(VaultKey::Raw(&key), recovery()))?;
        Ok(vec![("passphrase".into(), pass), ("recovery".into(), rec)])
    }

    fn file_bytes(&mut self) -> Res<u64> {
        Ok(size_of(&[self.path.clone(), chartvault::store::keyring_path(&self.path)]))
    }
}

impl Drop for Chartvault {
    fn drop(&mut self) {
        let _ = self.close();
    }
}
