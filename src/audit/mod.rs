//! The tamper-evident audit trail, the disclosure ledger, and the reports built from
//! them (accounting of disclosures, access report, break-glass review), plus export
//! as FHIR R4 AuditEvent resources.

pub mod entry;
pub mod fhir;
pub mod ledger;
pub mod report;
pub mod trail;

pub use entry::{Action, AuditEntry, Outcome};
pub use ledger::Disclosure;
pub use report::{AccessReport, AccountingReport, BreakGlassReport};
pub use trail::AuditVerifyReport;
