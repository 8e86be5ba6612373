//! Administrative and audit operations of a session: policy, patient rules, key
//! slots, disclosures, the audit trail and reports.

use crate::KdfParams;
use crate::access::{Operation, PatientRules, Policy, Request};
use crate::audit::{
    self, AccessReport, AccountingReport, Action, AuditEntry, BreakGlassReport, Disclosure, Outcome, trail,
};
use crate::error::{Error, Result};
use crate::model::DocumentId;
use crate::vault::{Session, VaultKey};

/// A release of information to record in the disclosure ledger.
#[derive(Debug, Clone)]
pub struct DisclosureRequest {
    /// The patient.
    pub patient: String,
    /// Recipient (name and address).
    pub recipient: String,
    /// What is released (brief description).
    pub description: String,
    /// Documents released.
    pub documents: Vec<DocumentId>,
}

impl Session {
    /// The policy in force (needs `administer` or `audit`).
    pub fn policy(&self) -> Result<Policy> {
        self.touch()?;
        self.require_any(&[Operation::Administer, Operation::Audit], Action::AuditRead)?;
        Ok(self.inner.policy.read().unwrap_or_else(|e| e.into_inner()).clone())
    }

    /// Replaces the policy (needs `administer`). Returns the new version number.
    pub fn set_policy(&self, mut policy: Policy) -> Result<u32> {
        self.touch()?;
        self.require(Operation::Administer, Action::PolicyChange)?;
        policy.validate()?;
        policy.version = self.inner.policy.read().unwrap_or_else(|e| e.into_inner()).version + 1;
        let mut b = self.batch()?;
        let p2 = policy.clone();
        b.stage(
            |inner, batch| inner.stage_policy(batch, &p2),
            self.entry(Action::PolicyChange, Outcome::Success)
                .detail(format!("policy {} version {}", policy.name, policy.version)),
        )?;
        b.commit()?;
        let v = policy.version;
        *self.inner.policy.write().unwrap_or_else(|e| e.into_inner()) = policy;
        Ok(v)
    }

    /// Records a patient's rules (consent restrictions, VIP, self-pay, Part 2
    /// consents), replacing earlier ones (needs `manage-consent`).
    pub fn set_patient_rules(&self, rules: PatientRules) -> Result<()> {
        self.touch()?;
        self.require(Operation::ManageConsent, Action::ConsentChange)?;
        if rules.patient.is_empty() {
            return Err(Error::InvalidArgument("patient rules need a patient".into()));
        }
        let mut b = self.batch()?;
        let r2 = rules.clone();
        b.stage(
            |inner, batch| inner.stage_rules(batch, &r2),
            self.entry(Action::ConsentChange, Outcome::Success).patient(Some(&rules.patient)),
        )?;
        b.commit()?;
        self.inner.rules.write().unwrap_or_else(|e| e.into_inner()).insert(rules.patient.clone(), rules);
        Ok(())
    }

    /// Adds a key slot (needs `administer`). O(1): only the header is rewritten.
    pub fn add_key_slot(&self, key: VaultKey<'_>, kdf: KdfParams) -> Result<usize> {
        self.touch()?;
        self.require(Operation::Administer, Action::KeySlotAdd)?;
        let slot = self.inner.store.add_slot(&key.unlock(), kdf)?;
        self.inner.audit(self.entry(Action::KeySlotAdd, Outcome::Success).detail(format!("slot {slot}")))?;
        Ok(slot)
    }

    /// Removes a key slot (needs `administer`); the last slot cannot be removed.
    pub fn remove_key_slot(&self, slot: usize) -> Result<()> {
        self.touch()?;
        self.require(Operation::Administer, Action::KeySlotRemove)?;
        self.inner.store.remove_slot(slot)?;
        self.inner.audit(self.entry(Action::KeySlotRemove, Outcome::Success).detail(format!("slot {slot}")))
    }

    /// Records a release of information in the disclosure ledger (needs `disclose`
    /// on every label of every document released).
    pub fn record_disclosure(&self, d: &DisclosureRequest) -> Result<()> {
        self.touch()?;
        if d.recipient.trim().is_empty() || d.description.trim().is_empty() {
            return Err(Error::InvalidArgument("a disclosure needs a recipient and a description".into()));
        }
        let mut labels = std::collections::BTreeSet::new();
        for id in &d.documents {
            let meta = self.meta(id)?;
            if meta.patient != d.patient {
                return Err(Error::InvalidArgument(format!("document {id} belongs to another patient")));
            }
            let req =
                Request { op: Operation::Disclose, patient: Some(&d.patient), kind: Some(&meta.kind), doc: Some(*id) };
            if let crate::access::Decision::Deny(r) = self.decide(&req, &meta.labels) {
                return Err(self.deny(Action::Disclose, Some(&d.patient), vec![*id], meta.labels, r));
            }
            labels.extend(meta.labels);
        }
        if d.documents.is_empty() {
            let req = Request { op: Operation::Disclose, patient: Some(&d.patient), kind: None, doc: None };
            if let crate::access::Decision::Deny(r) = self.decide(&req, &[]) {
                return Err(self.deny(Action::Disclose, Some(&d.patient), Vec::new(), Vec::new(), r));
            }
        }
        let purpose = self.principal.purpose;
        let disclosure = Disclosure {
            time_us: crate::util::now_micros(),
            patient: d.patient.clone(),
            recipient: d.recipient.clone(),
            description: d.description.clone(),
            purpose: purpose.code().to_string(),
            exempt: purpose.accounting_exempt(),
            documents: d.documents.clone(),
            user: self.principal.user.clone(),
        };
        let mut b = self.batch()?;
        b.stage(
            |inner, batch| inner.stage_disclosure(batch, &disclosure),
            self.entry(Action::Disclose, Outcome::Success)
                .patient(Some(&d.patient))
                .documents(d.documents.clone())
                .labels(labels.into_iter().collect())
                .detail(format!("to {}", d.recipient.chars().take(120).collect::<String>())),
        )?;
        b.commit()?;
        Ok(())
    }

    fn audit_access(&self, what: &str, patient: Option<&str>) -> Result<Vec<AuditEntry>> {
        self.touch()?;
        self.require(Operation::Audit, Action::AuditRead)?;
        self.inner.audit(self.entry(Action::AuditRead, Outcome::Success).patient(patient).detail(what.to_string()))?;
        self.inner.flush_audit()?;
        trail::read_all(&self.inner.store)
    }

    /// Every committed audit entry (needs `audit`).
    pub fn audit_entries(&self) -> Result<Vec<AuditEntry>> {
        self.audit_access("audit trail", None)
    }

    /// Verifies the audit trail: authentication, sequence and chain of every entry,
    /// and the log's own chain (needs `audit`).
    pub fn audit_verify(&self) -> Result<audit::AuditVerifyReport> {
        self.audit_access("audit verify", None)?;
        trail::verify(&self.inner.store)
    }

    /// The trail as a FHIR R4 Bundle of AuditEvent resources (needs `audit`).
    pub fn audit_export_fhir(&self) -> Result<serde_json::Value> {
        Ok(audit::fhir::bundle(&self.audit_access("audit export", None)?))
    }

    /// Accounting of disclosures for one patient, 45 CFR 164.528 (needs `audit`).
    pub fn accounting_of_disclosures(&self, patient: &str) -> Result<AccountingReport> {
        self.audit_access("accounting of disclosures", Some(patient))?;
        let ledger = audit::ledger::read_all(&self.inner.store)?;
        Ok(AccountingReport::build(patient, &ledger, crate::util::now_micros()))
    }

    /// Who accessed one patient's record, when and why (needs `audit`).
    pub fn access_report(&self, patient: &str) -> Result<AccessReport> {
        let trail = self.audit_access("access report", Some(patient))?;
        Ok(AccessReport::build(patient, &trail))
    }

    /// Every break-glass request and access, across patients (needs `audit`).
    pub fn break_glass_report(&self) -> Result<BreakGlassReport> {
        let trail = self.audit_access("break-glass report", None)?;
        Ok(BreakGlassReport::build(&trail))
    }
}
