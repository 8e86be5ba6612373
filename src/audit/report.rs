//! Reports for the privacy officer: accounting of disclosures, access report, and
//! break-glass review.

use serde::Serialize;

use super::{Action, AuditEntry, Disclosure};
use crate::model::DateTime;

/// Six years, the retention window of 45 CFR 164.528(a), in microseconds.
pub const SIX_YEARS_US: i64 = 6 * 36_525 * 24 * 3600 * 10_000; // 6 x 365.25 days

/// An accounting of disclosures for one patient (45 CFR 164.528).
#[derive(Debug, Clone, Serialize)]
pub struct AccountingReport {
    /// The patient.
    pub patient: String,
    /// Start of the window (six years back).
    pub from: String,
    /// When the report was made.
    pub generated: String,
    /// Disclosures that must be accounted for.
    pub accountable: Vec<DisclosureLine>,
    /// Disclosures exempt from accounting (treatment, payment, operations, to the
    /// individual), listed and tagged so nothing is silently dropped.
    pub exempt: Vec<DisclosureLine>,
}

/// One line of the accounting.
#[derive(Debug, Clone, Serialize)]
pub struct DisclosureLine {
    /// Date and time.
    pub date: String,
    /// Recipient.
    pub recipient: String,
    /// What was disclosed.
    pub description: String,
    /// Purpose (HL7 code).
    pub purpose: String,
    /// Number of documents.
    pub documents: usize,
    /// Who disclosed.
    pub user: String,
}

impl AccountingReport {
    /// Builds the accounting for `patient` from the ledger, as of `now_us`.
    pub fn build(patient: &str, ledger: &[Disclosure], now_us: i64) -> Self {
        let from = now_us - SIX_YEARS_US;
        let mut r = AccountingReport {
            patient: patient.to_string(),
            from: DateTime::from_unix_micros(from).to_string(),
            generated: DateTime::from_unix_micros(now_us).to_string(),
            accountable: Vec::new(),
            exempt: Vec::new(),
        };
        for d in ledger.iter().filter(|d| d.patient == patient && d.time_us >= from) {
            let line = DisclosureLine {
                date: DateTime::from_unix_micros(d.time_us).to_string(),
                recipient: d.recipient.clone(),
                description: d.description.clone(),
                purpose: d.purpose.clone(),
                documents: d.documents.len(),
                user: d.user.clone(),
            };
            if d.exempt { r.exempt.push(line) } else { r.accountable.push(line) }
        }
        r
    }
}

/// Who accessed one patient's record.
#[derive(Debug, Clone, Serialize)]
pub struct AccessReport {
    /// The patient.
    pub patient: String,
    /// Every audited access to the patient's records, oldest first.
    pub accesses: Vec<AccessLine>,
}

/// One access.
#[derive(Debug, Clone, Serialize)]
pub struct AccessLine {
    /// When.
    pub time: String,
    /// Who.
    pub user: String,
    /// Roles.
    pub roles: Vec<String>,
    /// Organization.
    pub organization: String,
    /// Why (purpose of use).
    pub purpose: String,
    /// What.
    pub action: String,
    /// Outcome.
    pub outcome: String,
    /// Documents.
    pub documents: usize,
    /// Break-glass.
    pub break_glass: bool,
}

fn line(e: &AuditEntry) -> AccessLine {
    AccessLine {
        time: DateTime::from_unix_micros(e.time_us).to_string(),
        user: e.user.clone(),
        roles: e.roles.clone(),
        organization: e.organization.clone(),
        purpose: e.purpose.clone(),
        action: e.action.name().to_string(),
        outcome: format!("{:?}", e.outcome).to_lowercase(),
        documents: e.documents.len(),
        break_glass: e.break_glass,
    }
}

impl AccessReport {
    /// Builds the report for `patient`.
    pub fn build(patient: &str, trail: &[AuditEntry]) -> Self {
        AccessReport {
            patient: patient.to_string(),
            accesses: trail
                .iter()
                .filter(|e| e.patient.as_deref() == Some(patient))
                .filter(|e| !matches!(e.action, Action::AuditRead))
                .map(line)
                .collect(),
        }
    }
}

/// Every break-glass request and every access that relied on one.
#[derive(Debug, Clone, Serialize)]
pub struct BreakGlassReport {
    /// Requests, with their reasons.
    pub requests: Vec<BreakGlassLine>,
    /// Accesses made under break-glass.
    pub accesses: Vec<AccessLine>,
}

/// One break-glass request.
#[derive(Debug, Clone, Serialize)]
pub struct BreakGlassLine {
    /// When.
    pub time: String,
    /// Who.
    pub user: String,
    /// Patient.
    pub patient: String,
    /// Reason given.
    pub reason: String,
    /// Outcome.
    pub outcome: String,
}

impl BreakGlassReport {
    /// Builds the report from the trail.
    pub fn build(trail: &[AuditEntry]) -> Self {
        BreakGlassReport {
            requests: trail
                .iter()
                .filter(|e| e.action == Action::BreakGlass)
                .map(|e| BreakGlassLine {
                    time: DateTime::from_unix_micros(e.time_us).to_string(),
                    user: e.user.clone(),
                    patient: e.patient.clone().unwrap_or_default(),
                    reason: e.detail.clone(),
                    outcome: format!("{:?}", e.outcome).to_lowercase(),
                })
                .collect(),
            accesses: trail.iter().filter(|e| e.break_glass && e.action != Action::BreakGlass).map(line).collect(),
        }
    }
}
