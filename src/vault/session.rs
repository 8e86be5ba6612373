//! Sessions: every document access names who is asking and why, is decided by the
//! policy decision point, and is audited.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Inner;
use crate::access::pdp::{BreakGlassGrant, Pdp, Prepared};
use crate::access::{Decision, Operation, PatientRules, Principal, Request};
use crate::audit::{Action, AuditEntry, Outcome};
use crate::error::{Error, Result};
use crate::model::{AttachmentRef, Document, DocumentId, Field, Label, NewDocument, Value};
use crate::store::Batch;
use crate::store::batch::CommitInfo;
use crate::store::batch::{PreparedVersion, check_attachments, prepare_version};
use crate::store::catalog::TermPacker;

/// What [`Session::decision_inputs`] holds: the policy and patient rules (read-locked)
/// and the session's break-glass grant, fixed for a run of decisions.
pub(crate) struct DecisionInputs<'s> {
    policy: std::sync::RwLockReadGuard<'s, crate::access::Policy>,
    rules: std::sync::RwLockReadGuard<'s, std::collections::HashMap<String, PatientRules>>,
    break_glass: Option<BreakGlassGrant>,
    principal: &'s Principal,
    now_us: i64,
}

impl DecisionInputs<'_> {
    /// The decision point for requests about `patient` (its rules, if it has any).
    pub(crate) fn pdp(&self, patient: Option<&str>) -> Pdp<'_> {
        Pdp {
            policy: &self.policy,
            principal: self.principal,
            rules: patient.and_then(|p| self.rules.get(p)),
            break_glass: self.break_glass.as_ref(),
            now_us: self.now_us,
        }
    }
}

/// A principal's session on a vault. Expires after the policy's idle time
/// (automatic logoff). Safe to share between threads.
pub struct Session {
    pub(crate) inner: Arc<Inner>,
    pub(crate) principal: Principal,
    break_glass: Mutex<Option<BreakGlassGrant>>,
    last_used: Mutex<Instant>,
    expired: Mutex<bool>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("user", &self.principal.user).finish_non_exhaustive()
    }
}

/// What a document looks like to the catalog (no decryption needed).
pub(crate) struct DocMeta {
    pub patient: String,
    pub kind: String,
    pub labels: Vec<Label>,
}

/// One read's document and what auditing it needs.
pub(crate) struct ReadDoc {
    pub(crate) doc: Document,
    pub(crate) break_glass: bool,
    /// The patient's identifier (the real one, also for de-identified sessions).
    patient: String,
    /// The labels of the document's latest version.
    labels: Arc<crate::model::LabelSet>,
}

/// What one catalog lookup tells a read: the patient (the real identifier), kind,
/// location of the version asked for (`None`: no such version) and labels.
struct Located {
    patient: String,
    kind: crate::model::Kind,
    loc: Option<crate::store::VersionLoc>,
    labels: Arc<crate::model::LabelSet>,
}

/// Looks document `id` up in the catalog of `st`: its latest version, or `version`.
fn locate(st: &crate::store::State, id: &DocumentId, version: Option<u32>) -> Result<Located> {
    let e = st.catalog.docs.get(id).ok_or_else(|| Error::NotFound { id: id.to_string(), version: None })?;
    let patient = st.keyring.patient(e.patient_slot).ok_or(Error::Erased)?.to_string();
    let loc = match version {
        None => Some(*e.latest()),
        Some(v) => e.versions.iter().find(|l| l.version == v).copied(),
    };
    Ok(Located { patient, kind: e.kind.clone(), loc, labels: e.labels.clone() })
}

/// What `put_all` prepares of one document on any core.
struct PreparedPut {
    labels: Vec<Label>,
    break_glass: bool,
    version: PreparedVersion,
}

/// Why `put_all` refuses a document (a denial is audited when it is returned).
enum Refusal {
    Denied { labels: Vec<Label>, reason: String },
    Error(Error),
}

impl From<Error> for Refusal {
    fn from(e: Error) -> Self {
        Refusal::Error(e)
    }
}

/// Fewest documents for which `put_all` prepares on more than one thread.
const PARALLEL_PUT_MIN: usize = 16;

/// Most threads one multi-document read (chart, query page) uses.
pub const READ_THREADS: usize = 2;
/// Fewest documents for which a multi-document read uses more than one thread.
pub(crate) const PARALLEL_READ_MIN: usize = 8;

impl Session {
    pub(crate) fn open(inner: Arc<Inner>, principal: Principal) -> Result<Session> {
        principal.validate()?;
        let s = Session {
            inner,
            principal,
            break_glass: Mutex::new(None),
            last_used: Mutex::new(Instant::now()),
            expired: Mutex::new(false),
        };
        s.inner.audit(AuditEntry::new(&s.principal, Action::SessionOpen, Outcome::Success))?;
        Ok(s)
    }

    /// The principal.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// Checks the session has not expired and marks it used.
    pub(crate) fn touch(&self) -> Result<()> {
        let idle = self.inner.policy.read().unwrap_or_else(|e| e.into_inner()).session_idle_secs;
        let mut exp = self.expired.lock().unwrap_or_else(|e| e.into_inner());
        let mut last = self.last_used.lock().unwrap_or_else(|e| e.into_inner());
        if *exp || last.elapsed() > Duration::from_secs(idle) {
            if !*exp {
                *exp = true;
                drop(last);
                drop(exp);
                self.inner.audit(AuditEntry::new(&self.principal, Action::SessionExpired, Outcome::Success))?;
            }
            return Err(Error::SessionExpired { idle_secs: idle });
        }
        *last = Instant::now();
        Ok(())
    }

    /// Test hook: pretend the session has been idle for `d`.
    #[doc(hidden)]
    pub fn backdate_last_use(&self, d: Duration) {
        let mut last = self.last_used.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = Instant::now().checked_sub(d) {
            *last = t;
        }
    }

    /// Test hook: age the break-glass grant by `d`.
    #[doc(hidden)]
    pub fn backdate_break_glass(&self, d: Duration) {
        if let Some(bg) = self.break_glass.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            let us = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
            bg.started_us -= us;
            bg.expires_us -= us;
        }
    }

    /// Decides `req` for `labels` at the single policy decision point.
    pub(crate) fn decide(&self, req: &Request<'_>, labels: &[Label]) -> Decision {
        self.decision_inputs().pdp(req.patient).decide(req, labels)
    }

    pub(crate) fn entry(&self, action: Action, outcome: Outcome) -> AuditEntry {
        AuditEntry::new(&self.principal, action, outcome)
    }

    /// Audits a denial and returns the error to give the caller.
    pub(crate) fn deny(
        &self,
        action: Action,
        patient: Option<&str>,
        docs: Vec<DocumentId>,
        labels: Vec<Label>,
        reason: String,
    ) -> Error {
        let e =
            self.entry(action, Outcome::Denied).patient(patient).documents(docs).labels(labels).detail(reason.clone());
        match self.inner.audit(e) {
            Ok(()) => Error::Denied(reason),
            Err(err) => err,
        }
    }

    pub(crate) fn meta(&self, id: &DocumentId) -> Result<DocMeta> {
        let st = self.inner.store.read_for_doc(id)?;
        let e = st.catalog.docs.get(id).ok_or_else(|| Error::NotFound { id: id.to_string(), version: None })?;
        let patient = st.keyring.patient(e.patient_slot).ok_or(Error::Erased)?.to_string();
        Ok(DocMeta { patient, kind: e.kind.to_string(), labels: e.labels.iter().cloned().collect() })
    }

    /// The pseudonym shown to de-identified sessions instead of a patient id.
    pub(crate) fn pseudonym(&self, patient: &str) -> String {
        Self::pseudonym_with(&self.pseudonym_key(), patient)
    }

    /// The key of [`Session::pseudonym`] (derive it once for many pseudonyms).
    pub(crate) fn pseudonym_key(&self) -> crate::SecretKey {
        self.inner.store.keys().system.derive("chartvault 2026 research pseudonym v1", &[])
    }

    /// [`Session::pseudonym`] with its key derived beforehand.
    pub(crate) fn pseudonym_with(key: &crate::SecretKey, patient: &str) -> String {
        format!("anon-{}", &crate::util::hex(&key.mac(&[patient.as_bytes()]))[..20])
    }

    /// Reads one version (latest when `version` is `None`) with redaction, without auditing.
    /// Refuses clinical reads that could not be audited (read-only handles, unless
    /// explicitly allowed for recovery tools).
    pub(crate) fn check_auditable(&self) -> Result<()> {
        if self.inner.store.is_read_only() && !self.inner.options.read_only_reads {
            return Err(Error::ReadOnly);
        }
        Ok(())
    }

    /// Runs `f` with a policy decision point prepared once (one acquisition of the
    /// policy, rules and break-glass locks for many decisions).
    pub(crate) fn with_pdp<R>(&self, patient: Option<&str>, f: impl FnOnce(&Pdp<'_>) -> R) -> R {
        // The inputs hold a copy of the break-glass grant, so its mutex is not held while
        // `f` decrypts (reads of one session run on several threads for charts and
        // query pages).
        f(&self.decision_inputs().pdp(patient))
    }

    /// The inputs of many decisions about many patients (a query's candidates): the
    /// policy and the patient rules locked once, and a copy of the break-glass grant,
    /// instead of three lock acquisitions per decision. Drop it before anything that
    /// decides through [`Session::decide`] or [`Session::with_pdp`] again.
    pub(crate) fn decision_inputs(&self) -> DecisionInputs<'_> {
        DecisionInputs {
            policy: self.inner.policy.read().unwrap_or_else(|e| e.into_inner()),
            rules: self.inner.rules.read().unwrap_or_else(|e| e.into_inner()),
            break_glass: self.break_glass.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            principal: &self.principal,
            now_us: crate::util::now_micros(),
        }
    }

    pub(crate) fn read_doc(&self, id: &DocumentId, version: Option<u32>, op: Operation) -> Result<(Document, bool)> {
        self.read_doc_with_patient(id, version, op).map(|r| (r.doc, r.break_glass))
    }

    /// [`Session::read_doc`] of the latest version of each of `ids`, results in the
    /// same order. Decryption is spread over the cores (at most [`READ_THREADS`]) when
    /// there are enough documents to pay for a thread. The threads are scoped: they end
    /// before this returns, so none outlives the call (or the vault).
    ///
    /// The store state and the decision inputs are locked once for the whole run and
    /// shared by the threads (a read of one document otherwise takes half a dozen
    /// locks, whose cache lines the two threads would pass back and forth); a commit
    /// waits for the run to end, as it waits for a query's candidate scan.
    pub(crate) fn read_docs(&self, ids: &[DocumentId], op: Operation) -> Vec<Result<(Document, bool)>> {
        let st = match self.inner.store.read_for_docs(ids) {
            Ok(st) => st,
            // Loading a sealed checkpoint entry failed: each read reports its own error.
            Err(_) => return ids.iter().map(|id| self.read_doc(id, None, op)).collect(),
        };
        let inputs = self.decision_inputs();
        let serial = |part: &[DocumentId]| {
            part.iter().map(|id| self.read_doc_held(&st, &inputs, id, op).map(|r| (r.doc, r.break_glass))).collect()
        };
        if ids.len() < PARALLEL_READ_MIN {
            return serial(ids);
        }
        let threads = crate::util::cores().min(READ_THREADS);
        crate::util::split_map(ids, threads, serial)
    }

    /// Reads one version with redaction, without auditing; also returns what auditing
    /// the read needs. One catalog lookup gives the patient, kind, location and labels
    /// (the decision comes before any "no such version" answer, as a denial must not
    /// tell which versions exist). The store lock is not held while decrypting.
    fn read_doc_with_patient(&self, id: &DocumentId, version: Option<u32>, op: Operation) -> Result<ReadDoc> {
        self.check_auditable()?;
        let found = locate(&*self.inner.store.read_for_doc(id)?, id, version)?;
        let patient = found.patient.clone();
        self.with_pdp(Some(&patient), |pdp| self.decide_and_read(pdp, None, id, version, op, found))
    }

    /// [`Session::read_doc_with_patient`] of the latest version, under a store state
    /// and decision inputs the caller holds (no lock taken).
    pub(crate) fn read_doc_held(
        &self,
        st: &crate::store::State,
        inputs: &DecisionInputs<'_>,
        id: &DocumentId,
        op: Operation,
    ) -> Result<ReadDoc> {
        self.check_auditable()?;
        let found = locate(st, id, None)?;
        let pdp = inputs.pdp(Some(&found.patient));
        self.decide_and_read(&pdp, Some(st), id, None, op, found)
    }

    /// The decision about reading `found` (document `id`), then the read: the groups
    /// the decision does not cover come back redacted, and a de-identified session
    /// gets the pseudonym and no author.
    fn decide_and_read(
        &self,
        pdp: &Pdp<'_>,
        held: Option<&crate::store::State>,
        id: &DocumentId,
        version: Option<u32>,
        op: Operation,
        found: Located,
    ) -> Result<ReadDoc> {
        let Located { patient, kind, loc, labels } = found;
        let req = Request { op, patient: Some(&patient), kind: Some(kind.as_str()), doc: Some(*id) };
        let prepared = pdp.prepare(&req);
        let (deid, bg) = match prepared.decide(&[]) {
            Decision::Permit { deidentify, break_glass } => (deidentify, break_glass),
            Decision::Deny(r) => return Err(Error::Denied(r)),
        };
        let loc = loc.ok_or_else(|| Error::NotFound { id: id.to_string(), version })?;
        let doc = self.read_permitted(held, loc.offset, &prepared, deid)?;
        drop(prepared);
        Ok(ReadDoc { doc, break_glass: bg, patient, labels })
    }

    /// Reads the version at `offset` under a read decision already prepared and found
    /// to permit: the label groups `prepared` does not cover come back redacted, and a
    /// de-identified session (`deidentify`) gets the pseudonym and no author.
    pub(crate) fn read_permitted(
        &self,
        held: Option<&crate::store::State>,
        offset: u64,
        prepared: &Prepared<'_>,
        deidentify: bool,
    ) -> Result<Document> {
        let gate = |labels: &[Label]| prepared.decide(labels).is_permit();
        let store = &self.inner.store;
        let mut doc = match held {
            Some(st) => store.read_version_held(st, offset, &gate)?,
            None => store.read_version(offset, &gate)?,
        };
        if deidentify {
            doc.patient = self.pseudonym(&doc.patient);
            doc.author = String::new();
        }
        Ok(doc)
    }

    /// Audits a successful read of `r.doc`: the labels read are the document's labels
    /// less those of redacted fields.
    fn audit_read(&self, action: Action, r: &ReadDoc) -> Result<()> {
        let doc = &r.doc;
        let read: Vec<Label> =
            r.labels.iter().filter(|l| !doc.redacted.values().any(|ls| ls.contains(l))).cloned().collect();
        let mut e = self
            .entry(action, Outcome::Success)
            .patient(Some(&r.patient))
            .documents(vec![doc.id])
            .labels(read)
            .break_glass(r.break_glass);
        if !doc.redacted.is_empty() {
            e = e.detail(format!("{} field(s) redacted", doc.redacted.len()));
        }
        self.inner.audit(e)
    }

    fn read_audited(&self, id: &DocumentId, version: Option<u32>) -> Result<Document> {
        self.touch()?;
        match self.read_doc_with_patient(id, version, Operation::Read) {
            Ok(r) => {
                self.audit_read(Action::Read, &r)?;
                Ok(r.doc)
            }
            Err(Error::Denied(r)) => {
                let patient = self.meta(id).map(|m| m.patient).ok();
                Err(self.deny(Action::Read, patient.as_deref(), vec![*id], Vec::new(), r))
            }
            Err(e) => {
                let patient = self.meta(id).map(|m| m.patient).ok();
                self.inner.audit(
                    self.entry(Action::Read, Outcome::Failed)
                        .patient(patient.as_deref())
                        .documents(vec![*id])
                        .detail(error_kind(&e)),
                )?;
                Err(e)
            }
        }
    }

    /// The latest version of a document, with fields this session may not read
    /// replaced by redaction markers.
    pub fn get(&self, id: &DocumentId) -> Result<Document> {
        self.read_audited(id, None)
    }

    /// A given version of a document.
    pub fn get_version(&self, id: &DocumentId, version: u32) -> Result<Document> {
        self.read_audited(id, Some(version))
    }

    /// Every version of a document, oldest first.
    pub fn history(&self, id: &DocumentId) -> Result<Vec<Document>> {
        self.touch()?;
        let versions = self.inner.store.versions(id)?;
        let mut out = Vec::with_capacity(versions.len());
        for v in versions {
            match self.read_doc_with_patient(id, Some(v.version), Operation::Read) {
                Ok(r) => {
                    self.audit_read(Action::Read, &r)?;
                    out.push(r.doc);
                }
                Err(Error::Denied(r)) => {
                    let patient = self.meta(id).map(|m| m.patient).ok();
                    return Err(self.deny(Action::Read, patient.as_deref(), vec![*id], Vec::new(), r));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// A patient's documents (latest versions) that this session may see, oldest first.
    pub fn chart(&self, patient: &str) -> Result<Vec<Document>> {
        self.touch()?;
        let slot = self.inner.store.read_state().keyring.slot_of(patient);
        let ids: Vec<DocumentId> = match slot {
            Some(s) => self.inner.store.read_for_patient(s)?.catalog.by_patient.get(&s).cloned().unwrap_or_default(),
            None => Vec::new(),
        };
        let mut docs = Vec::new();
        for r in self.read_docs(&ids, Operation::Read) {
            match r {
                Ok((d, _)) => docs.push(d),
                Err(Error::Denied(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let bg = self.decide(&Request { op: Operation::Read, patient: Some(patient), kind: None, doc: None }, &[])
            == Decision::Permit { deidentify: false, break_glass: true };
        let e = self
            .entry(Action::Read, if docs.is_empty() && !ids.is_empty() { Outcome::Denied } else { Outcome::Success })
            .patient(Some(patient))
            .documents(docs.iter().map(|d| d.id).collect())
            .break_glass(bg)
            .detail("patient chart");
        self.inner.audit(e)?;
        Ok(docs)
    }

    /// Streams the attachment in field `field` of document `id` to `out`.
    pub fn read_attachment(&self, id: &DocumentId, field: &str, out: &mut dyn Write) -> Result<u64> {
        self.touch()?;
        let doc = self.read_audited(id, None)?;
        let Some(Value::Attachment(a)) = doc.get(field) else {
            return Err(Error::InvalidArgument(format!(
                "field {:?} is not a readable attachment of this document",
                field.chars().take(64).collect::<String>()
            )));
        };
        let n = self.inner.store.read_attachment(a, out)?;
        self.inner.audit(
            self.entry(Action::AttachmentRead, Outcome::Success).patient(Some(&doc.patient)).documents(vec![*id]),
        )?;
        Ok(n)
    }

    /// Stores a new document; returns its id.
    pub fn put(&self, doc: &NewDocument) -> Result<DocumentId> {
        let mut b = self.batch()?;
        let id = b.put(doc)?;
        b.commit()?;
        Ok(id)
    }

    /// Writes a new version of `id` whose fields are `fields`. Every old version stays.
    /// The session must be able to read every label of the current version (so an
    /// update never silently drops fields it could not see).
    pub fn update(&self, id: &DocumentId, fields: BTreeMap<String, Field>) -> Result<u32> {
        let mut b = self.batch()?;
        let v = b.update(id, fields)?;
        b.commit()?;
        Ok(v)
    }

    /// Amends a record at the patient's request (45 CFR 164.526): writes a new version
    /// with `fields`, audited as an amendment with its reason; every earlier version
    /// stays in the history. Needs the `amend` grant.
    pub fn amend(&self, id: &DocumentId, fields: BTreeMap<String, Field>, reason: &str) -> Result<u32> {
        if reason.trim().len() < 4 {
            return Err(Error::InvalidArgument("an amendment needs a reason (at least 4 characters)".into()));
        }
        let mut b = self.batch()?;
        let v = b.update_as(id, fields, Operation::Amend, Action::Amend, reason.chars().take(500).collect())?;
        b.commit()?;
        Ok(v)
    }

    /// Starts a batch: many writes, one durable commit (group commit).
    pub fn batch(&self) -> Result<SessionBatch<'_>> {
        self.touch()?;
        Ok(SessionBatch {
            session: self,
            batch: None,
            entries: Vec::new(),
            create_entries: std::collections::HashMap::new(),
            attachments: Vec::new(),
        })
    }

    /// Requests emergency access (break-glass) to one patient, with a reason. The grant
    /// lasts for the policy's `break_glass_secs`, is scoped to that patient, and every
    /// access under it is flagged in the audit trail.
    pub fn break_glass(&self, patient: &str, reason: &str) -> Result<BreakGlassGrant> {
        self.touch()?;
        if reason.trim().len() < 4 {
            return Err(Error::InvalidArgument("break-glass needs a reason (at least 4 characters)".into()));
        }
        let secs = self.inner.policy.read().unwrap_or_else(|e| e.into_inner()).break_glass_secs;
        let now = crate::util::now_micros();
        let grant = BreakGlassGrant {
            patient: patient.to_string(),
            reason: reason.chars().take(500).collect(),
            started_us: now,
            expires_us: now + i64::try_from(secs).unwrap_or(0) * 1_000_000,
        };
        // The grant only matters if the policy lets this role act under ETREAT.
        let probe = Pdp {
            policy: &self.inner.policy.read().unwrap_or_else(|e| e.into_inner()),
            principal: &self.principal,
            rules: None,
            break_glass: Some(&grant),
            now_us: now,
        }
        .decide(&Request { op: Operation::Read, patient: Some(patient), kind: None, doc: None }, &[]);
        if !probe.is_permit() {
            return Err(self.deny(
                Action::BreakGlass,
                Some(patient),
                Vec::new(),
                Vec::new(),
                "this role may not use break-glass".into(),
            ));
        }
        *self.break_glass.lock().unwrap_or_else(|e| e.into_inner()) = Some(grant.clone());
        self.inner.audit(
            self.entry(Action::BreakGlass, Outcome::Success)
                .patient(Some(patient))
                .break_glass(true)
                .detail(grant.reason.clone()),
        )?;
        Ok(grant)
    }

    /// Erases a patient by crypto-shredding (needs the `erase` grant): the patient's
    /// key is destroyed in place in the keyring and fsynced, so every record, index
    /// section and checkpoint part of that patient becomes unreadable in every copy of
    /// the log that does not come with an older keyring. Audited. Returns the number
    /// of documents made unreadable.
    pub fn erase_patient(&self, patient: &str, reason: &str) -> Result<usize> {
        self.touch()?;
        self.require(Operation::Erase, Action::Erase)?;
        if reason.trim().len() < 4 {
            return Err(Error::InvalidArgument("erasure needs a reason (at least 4 characters)".into()));
        }
        let store = &self.inner.store;
        if store.is_read_only() {
            return Err(Error::ReadOnly);
        }
        let slot = store
            .read_state()
            .keyring
            .slot_of(patient)
            .ok_or_else(|| Error::NotFound { id: "patient".into(), version: None })?;
        let ids = store.read_for_patient(slot)?.catalog.by_patient.get(&slot).cloned().unwrap_or_default();
        // The audit entry is made durable first: a crash after it and before the key is
        // destroyed leaves an entry for an erasure that can simply be repeated, never an
        // erasure without an entry.
        self.inner.commit_with_audit(
            store.batch()?,
            vec![
                self.entry(Action::Erase, Outcome::Success)
                    .patient(Some(patient))
                    .documents(ids.clone())
                    .detail(reason.chars().take(500).collect::<String>()),
            ],
        )?;
        // Hold the writer so no batch is staging records for this patient meanwhile.
        let writer = store.writer_guard();
        let mut st = store.write_state();
        self.inner.store.keys().forget_patient(slot);
        if let Err(e) = st.keyring.destroy(slot) {
            drop(st);
            drop(writer);
            self.inner
                .audit(self.entry(Action::Erase, Outcome::Failed).patient(Some(patient)).detail(error_kind(&e)))?;
            return Err(e);
        }
        st.catalog.remove_patient(slot);
        drop(st);
        drop(writer);
        Ok(ids.len())
    }

    /// The active break-glass grant, if any.
    pub fn break_glass_grant(&self) -> Option<BreakGlassGrant> {
        self.break_glass.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The patient rules in force for `patient` (needs `manage-consent` or `audit`).
    pub fn patient_rules(&self, patient: &str) -> Result<Option<PatientRules>> {
        self.touch()?;
        self.require_any(&[Operation::ManageConsent, Operation::Audit], Action::AuditRead)?;
        Ok(self.inner.rules.read().unwrap_or_else(|e| e.into_inner()).get(patient).cloned())
    }

    /// Checks a non-clinical operation is granted, auditing a denial.
    pub(crate) fn require(&self, op: Operation, action: Action) -> Result<bool> {
        self.require_any(&[op], action)
    }

    pub(crate) fn require_any(&self, ops: &[Operation], action: Action) -> Result<bool> {
        let mut reason = String::new();
        for op in ops {
            match self.decide(&Request { op: *op, patient: None, kind: None, doc: None }, &[]) {
                Decision::Permit { .. } => return Ok(true),
                Decision::Deny(r) => reason = r,
            }
        }
        Err(self.deny(action, None, Vec::new(), Vec::new(), reason))
    }
}

pub(crate) fn error_kind(e: &Error) -> String {
    match e {
        Error::NotFound { .. } => "not found".into(),
        Error::Erased => "erased".into(),
        Error::Integrity { .. } => "integrity check failed".into(),
        other => format!("{:?}", std::mem::discriminant(other)),
    }
}

/// A batch of writes by one session: each write is checked by the policy, and the
/// audit entries commit together with the data.
pub struct SessionBatch<'s> {
    session: &'s Session,
    batch: Option<Batch<'s>>,
    entries: Vec<AuditEntry>,
    /// Position in `entries` of the create entry of each patient, without and with
    /// break-glass (looked up by the patient id, no key to build per document).
    create_entries: std::collections::HashMap<String, [Option<usize>; 2]>,
    attachments: Vec<[u8; 16]>,
}

impl std::fmt::Debug for SessionBatch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionBatch").field("entries", &self.entries.len()).finish_non_exhaustive()
    }
}

impl<'s> SessionBatch<'s> {
    fn batch(&mut self) -> Result<&mut Batch<'s>> {
        if self.batch.is_none() {
            self.batch = Some(self.session.inner.store.batch()?);
        }
        self.batch.as_mut().ok_or(Error::ReadOnly)
    }

    fn check_write(
        &mut self,
        op: Operation,
        action: Action,
        patient: &str,
        kind: &str,
        labels: Vec<Label>,
        doc: Option<DocumentId>,
    ) -> Result<bool> {
        let s = self.session;
        let req = Request { op, patient: Some(patient), kind: Some(kind), doc };
        match s.decide(&req, &labels) {
            Decision::Permit { break_glass, .. } => Ok(break_glass),
            // The denial is audited; if this batch holds the writer, the entry commits
            // with the batch (or with the next write after it).
            Decision::Deny(r) => Err(s.deny(action, Some(patient), doc.into_iter().collect(), labels, r)),
        }
    }

    /// Stages a new document; returns its id.
    pub fn put(&mut self, doc: &NewDocument) -> Result<DocumentId> {
        self.session.touch()?;
        doc.validate()?;
        // Every label of the document, for the policy check (the store labels each
        // field again when it groups them, into one reused buffer).
        let labels = self.session.inner.store.schema().labeler(&doc.kind).document_labels(&doc.fields);
        let bg =
            self.check_write(Operation::Create, Action::Create, &doc.patient, doc.kind.as_str(), labels.clone(), None)?;
        let author = self.session.principal.user.clone();
        let id = self.batch()?.put_validated(doc, &author)?;
        self.note_create(&doc.patient, id, labels, bg);
        Ok(id)
    }

    /// Stages many new documents: the same checks, denials, audit entries and ids as
    /// calling [`SessionBatch::put`] for each in order, with the work that needs no
    /// batch state (validation, labelling, the policy decision and encoding each
    /// label group) spread over every core. Bulk imports go through this.
    ///
    /// If a document is refused, the error is that of the first refused document in
    /// order; like a `put` that fails, it may leave earlier documents of `docs` staged
    /// (none when the refusal is a validation error or a denial), so drop the batch
    /// to stage none of them.
    ///
    /// ```
    /// # use chartvault::*; use chartvault::access::*;
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let v = Vault::create(&dir.path().join("p.cv"), VaultKey::Raw(&SecretKey::random()), VaultOptions::default())?;
    /// let dr = v.session(Principal::new("dr", Role::physician(), "h", Purpose::Treat).with_care_team(["MRN-1"]))?;
    /// let docs: Vec<NewDocument> = (0..3)
    ///     .map(|i| NewDocument::new("MRN-1", "Observation").map(|d| d.with("value", Value::Integer(i))))
    ///     .collect::<Result<_>>()?;
    /// let mut batch = dr.batch()?;
    /// let ids = batch.put_all(&docs)?;
    /// batch.commit()?;
    /// assert_eq!(dr.get(&ids[2])?.get("value"), Some(&Value::Integer(2)));
    /// # Ok::<(), chartvault::Error>(())
    /// ```
    pub fn put_all(&mut self, docs: &[NewDocument]) -> Result<Vec<DocumentId>> {
        self.session.touch()?;
        let session = self.session;
        // The writer is taken when the first document is staged (as by `put`), so a
        // refusal is audited at once when no batch holds the writer yet.
        let none_uploaded = std::collections::HashSet::new();
        let prepared = {
            let uploaded = self.batch.as_ref().map_or(&none_uploaded, |b| b.uploaded_attachments());
            let store = &session.inner.store;
            let committed_end = || store.read_state().head.end;
            let prepare =
                |doc: &NewDocument, packer: &mut TermPacker<'_>| -> std::result::Result<PreparedPut, Refusal> {
                    doc.validate()?;
                    let labels = store.schema().labeler(&doc.kind).document_labels(&doc.fields);
                    let req = Request {
                        op: Operation::Create,
                        patient: Some(&doc.patient),
                        kind: Some(doc.kind.as_str()),
                        doc: None,
                    };
                    let break_glass = match session.decide(&req, &labels) {
                        Decision::Permit { break_glass, .. } => break_glass,
                        Decision::Deny(reason) => return Err(Refusal::Denied { labels, reason }),
                    };
                    check_attachments(&doc.fields, uploaded, &committed_end)?;
                    let version = prepare_version(store.schema(), packer, &doc.kind, &doc.fields)?;
                    Ok(PreparedPut { labels, break_glass, version })
                };
            let serial = |part: &[NewDocument]| {
                let mut packer = store.term_registry().packer();
                part.iter().map(|d| prepare(d, &mut packer)).collect::<Vec<_>>()
            };
            if docs.len() < PARALLEL_PUT_MIN {
                serial(docs)
            } else {
                crate::util::split_map(docs, crate::util::cores().min(crate::store::batch::SEAL_THREADS), serial)
            }
        };
        // The first refusal in document order, before anything is staged.
        if let Some(i) = prepared.iter().position(Result::is_err) {
            return Err(match prepared.into_iter().nth(i) {
                Some(Err(Refusal::Denied { labels, reason })) => {
                    session.deny(Action::Create, docs.get(i).map(|d| d.patient.as_str()), Vec::new(), labels, reason)
                }
                Some(Err(Refusal::Error(e))) => e,
                _ => Error::InvalidArgument("put_all: a refusal vanished".into()),
            });
        }
        let author = session.principal.user.clone();
        let mut ids = Vec::with_capacity(docs.len());
        for (doc, p) in docs.iter().zip(prepared) {
            let PreparedPut { labels, break_glass, version } =
                p.map_err(|_| Error::InvalidArgument("put_all: a refusal was not returned".into()))?;
            let id = self.batch()?.put_prepared(doc, &author, version)?;
            self.note_create(&doc.patient, id, labels, break_glass);
            ids.push(id);
        }
        Ok(ids)
    }

    /// Adds document `id` of `patient` to the batch's create entry for that patient
    /// (one audit entry per patient and break-glass flag in a batch, listing every
    /// document and label).
    fn note_create(&mut self, patient: &str, id: DocumentId, labels: Vec<Label>, bg: bool) {
        let at = self.create_entries.get(patient).and_then(|e| e[usize::from(bg)]);
        match at.and_then(|i| self.entries.get_mut(i)) {
            Some(e) => {
                e.documents.push(id);
                for l in labels {
                    if !e.labels.contains(&l) {
                        e.labels.push(l);
                    }
                }
            }
            None => {
                let n = self.entries.len();
                self.create_entries.entry(patient.to_string()).or_default()[usize::from(bg)] = Some(n);
                self.entries.push(
                    self.session
                        .entry(Action::Create, Outcome::Success)
                        .patient(Some(patient))
                        .documents(vec![id])
                        .labels(labels)
                        .break_glass(bg),
                );
            }
        }
    }

    /// Stages a new version of `id` with `fields`.
    pub fn update(&mut self, id: &DocumentId, fields: BTreeMap<String, Field>) -> Result<u32> {
        self.update_as(id, fields, Operation::Update, Action::Update, String::new())
    }

    pub(crate) fn update_as(
        &mut self,
        id: &DocumentId,
        fields: BTreeMap<String, Field>,
        op: Operation,
        action: Action,
        detail: String,
    ) -> Result<u32> {
        self.session.touch()?;
        let meta = self.session.meta(id)?;
        let kind = crate::model::Kind::new(&meta.kind)?;
        let mut labels: std::collections::BTreeSet<Label> = {
            let schema = self.session.inner.store.schema();
            fields.iter().flat_map(|(n, f)| schema.labels_of(&kind, n, &f.labels)).collect()
        };
        // The current version's labels must all be readable, so nothing is dropped unseen.
        let old = meta.labels.clone();
        let req = Request { op: Operation::Read, patient: Some(&meta.patient), kind: Some(&meta.kind), doc: Some(*id) };
        if let Decision::Deny(r) = self.session.decide(&req, &old) {
            return Err(self.session.deny(
                action,
                Some(&meta.patient),
                vec![*id],
                old,
                format!("the current version has fields this session cannot read ({r})"),
            ));
        }
        labels.extend(old);
        let labels: Vec<Label> = labels.into_iter().collect();
        let bg = self.check_write(op, action, &meta.patient, &meta.kind, labels.clone(), Some(*id))?;
        let author = self.session.principal.user.clone();
        let v = self.batch()?.update(id, &fields, &author)?;
        self.entries.push(
            self.session
                .entry(action, Outcome::Success)
                .patient(Some(&meta.patient))
                .documents(vec![*id])
                .labels(labels)
                .break_glass(bg)
                .detail(detail),
        );
        Ok(v)
    }

    /// Streams an attachment into the batch; reference the result in a field of a
    /// document put in this batch.
    pub fn put_attachment(&mut self, content_type: &str, reader: &mut dyn Read) -> Result<AttachmentRef> {
        self.session.touch()?;
        let a = self.batch()?.put_attachment(content_type, reader)?;
        self.attachments.push(a.id);
        Ok(a)
    }

    /// Stages a raw frame with an audit entry (used by other layers of the crate).
    pub(crate) fn stage(
        &mut self,
        f: impl FnOnce(&Inner, &mut Batch<'s>) -> Result<()>,
        entry: AuditEntry,
    ) -> Result<()> {
        let inner = self.session.inner.clone();
        f(&inner, self.batch()?)?;
        self.entries.push(entry);
        Ok(())
    }

    /// Makes every staged write durable with one fsync, together with its audit entries.
    pub fn commit(mut self) -> Result<CommitInfo> {
        let entries = std::mem::take(&mut self.entries);
        let b = match self.batch.take() {
            Some(b) => b,
            None => self.session.inner.store.batch()?,
        };
        let info = self.session.inner.commit_with_audit(b, entries)?;
        self.session.inner.maybe_checkpoint()?;
        Ok(info)
    }
}
