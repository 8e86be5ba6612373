//! Patient-level rules: consent restrictions, confidential (VIP) status, the
//! self-pay restriction of 45 CFR 164.522(a)(1)(vi), and consents for 42 CFR Part 2
//! substance-use records.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{Purpose, Role};
use crate::model::{DocumentId, Label};

/// A patient's restriction in the spirit of a FHIR Consent `provision` of type deny:
/// the labels are withheld from anyone matching any listed role, organization or purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentRestriction {
    /// Labels withheld.
    pub labels: Vec<Label>,
    /// Roles the restriction applies to.
    #[serde(default)]
    pub roles: Vec<Role>,
    /// Organizations it applies to.
    #[serde(default)]
    pub organizations: Vec<String>,
    /// Purposes it applies to.
    #[serde(default)]
    pub purposes: Vec<Purpose>,
}

/// A patient's written consent to disclose substance-use records (42 CFR 2.31).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Part2Consent {
    /// The recipient organization, or `*` for any.
    pub organization: String,
    /// Purposes consented to.
    pub purposes: Vec<Purpose>,
    /// Expiry, Unix seconds (none: until revoked).
    #[serde(default)]
    pub expires: Option<i64>,
}

/// Every patient-level rule of one patient. The newest version stored wins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatientRules {
    /// The patient.
    pub patient: String,
    /// Confidential / VIP: no access without a care relationship, own-record access
    /// or break-glass.
    #[serde(default)]
    pub vip: bool,
    /// Consent restrictions.
    #[serde(default)]
    pub restrictions: Vec<ConsentRestriction>,
    /// Documents for services the patient paid for in full, not to be disclosed to a
    /// health plan (purposes HPAYMT and COVERAGE).
    #[serde(default)]
    pub self_pay: BTreeSet<DocumentId>,
    /// Part 2 consents.
    #[serde(default)]
    pub part2_consents: Vec<Part2Consent>,
}
