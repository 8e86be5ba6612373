//! The access policy: grants of operations on kinds and labels, per role and purpose.
//! Anything not granted is denied.
//!
//! A policy is data: it is stored (sealed) in the vault, versioned, changed only by a
//! session allowed to `administer`, and loadable from JSON:
//!
//! ```json
//! { "name": "my-clinic", "session_idle_secs": 900, "grants": [
//!   { "roles": ["physician"], "purposes": ["TREAT"], "operations": ["read", "create", "query"],
//!     "labels": ["normal", "restricted"], "care_team": true } ] }
//! ```

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{Purpose, Role};
use crate::error::{Error, Result};
use crate::model::Label;

/// Operations a grant can allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    /// Read documents.
    Read,
    /// Create documents.
    Create,
    /// Write new versions of documents.
    Update,
    /// Run queries.
    Query,
    /// Release information to another party.
    Disclose,
    /// Amend a record at the patient's request (45 CFR 164.526).
    Amend,
    /// Erase a patient (crypto-shred).
    Erase,
    /// Key slots, policy, users.
    Administer,
    /// Read the audit trail and reports.
    Audit,
    /// Record patient-level rules (consent, VIP, self-pay, Part 2 consent).
    ManageConsent,
}

impl Operation {
    /// Every operation.
    pub const ALL: [Operation; 10] = [
        Operation::Read,
        Operation::Create,
        Operation::Update,
        Operation::Query,
        Operation::Disclose,
        Operation::Amend,
        Operation::Erase,
        Operation::Administer,
        Operation::Audit,
        Operation::ManageConsent,
    ];

    /// Whether the operation touches clinical content (and so is checked per label).
    pub fn is_clinical(self) -> bool {
        matches!(
            self,
            Operation::Read
                | Operation::Create
                | Operation::Update
                | Operation::Query
                | Operation::Disclose
                | Operation::Amend
        )
    }

    /// Lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Create => "create",
            Operation::Update => "update",
            Operation::Query => "query",
            Operation::Disclose => "disclose",
            Operation::Amend => "amend",
            Operation::Erase => "erase",
            Operation::Administer => "administer",
            Operation::Audit => "audit",
            Operation::ManageConsent => "manage-consent",
        }
    }
}

/// One grant: these roles, for these purposes, may do these operations on these
/// kinds and labels, under these conditions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// Roles the grant applies to.
    pub roles: Vec<Role>,
    /// Purposes of use it applies to.
    pub purposes: Vec<Purpose>,
    /// Operations allowed.
    pub operations: Vec<Operation>,
    /// Document kinds allowed; absent means every kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kinds: Option<Vec<String>>,
    /// Kinds excluded even if `kinds` would include them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_kinds: Vec<String>,
    /// Labels allowed (clinical operations need every label of what they touch).
    #[serde(default)]
    pub labels: Vec<Label>,
    /// Requires a care relationship with the patient (or active break-glass).
    #[serde(default)]
    pub care_team: bool,
    /// Only the principal's own records (the `patient` role).
    #[serde(default)]
    pub own_records: bool,
    /// Results are de-identified: patient ids pseudonymized, authors removed.
    #[serde(default)]
    pub deidentify: bool,
}

/// A whole policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// A name for people.
    pub name: String,
    /// Version number, assigned by the vault when the policy is stored.
    #[serde(default)]
    pub version: u32,
    /// Automatic logoff after this many idle seconds (HIPAA 164.312(a)(2)(iii)).
    #[serde(default = "default_idle")]
    pub session_idle_secs: u64,
    /// How long a break-glass grant lasts, in seconds.
    #[serde(default = "default_break_glass")]
    pub break_glass_secs: u64,
    /// The grants.
    pub grants: Vec<Grant>,
}

fn default_idle() -> u64 {
    900
}
fn default_break_glass() -> u64 {
    3600
}

fn labels(names: &[fn() -> Label]) -> Vec<Label> {
    names.iter().map(|f| f()).collect()
}

impl Policy {
    /// Parses a policy from JSON and validates it.
    pub fn from_json(s: &str) -> Result<Self> {
        let p: Policy = serde_json::from_str(s).map_err(|e| {
            Error::InvalidPolicy(format!("line {}, column {}: {}", e.line(), e.column(), policy_error_text(&e)))
        })?;
        p.validate()?;
        Ok(p)
    }

    /// The policy as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks the policy is usable.
    pub fn validate(&self) -> Result<()> {
        if self.session_idle_secs == 0 || self.session_idle_secs > 24 * 3600 {
            return Err(Error::InvalidPolicy("session_idle_secs must be between 1 and 86400".into()));
        }
        if self.break_glass_secs == 0 || self.break_glass_secs > 7 * 24 * 3600 {
            return Err(Error::InvalidPolicy("break_glass_secs must be between 1 and 604800".into()));
        }
        for (i, g) in self.grants.iter().enumerate() {
            if g.roles.is_empty() || g.purposes.is_empty() || g.operations.is_empty() {
                return Err(Error::InvalidPolicy(format!("grant {i} needs roles, purposes and operations")));
            }
            if g.operations.iter().any(|o| o.is_clinical()) && g.labels.is_empty() {
                return Err(Error::InvalidPolicy(format!("grant {i} allows clinical operations but names no labels")));
            }
        }
        Ok(())
    }

    /// The default policy, mirroring a hospital. See the README's access-control
    /// section for the table it encodes.
    pub fn hospital_default() -> Self {
        use Operation as O;
        use Purpose as P;
        let clinical_all = labels(&[
            Label::normal,
            Label::restricted,
            Label::very_restricted,
            Label::demographics,
            Label::mental_health,
            Label::psychotherapy,
            Label::substance_use,
            Label::hiv_sti,
            Label::genetic,
            Label::reproductive,
        ]);
        let without_psychotherapy: Vec<Label> =
            clinical_all.iter().filter(|l| **l != Label::psychotherapy()).cloned().collect();
        let g = |roles: &[fn() -> Role], purposes: &[P], ops: &[O], labels: Vec<Label>| Grant {
            roles: roles.iter().map(|r| r()).collect(),
            purposes: purposes.to_vec(),
            operations: ops.to_vec(),
            kinds: None,
            exclude_kinds: Vec::new(),
            labels,
            care_team: false,
            own_records: false,
            deidentify: false,
        };
        let grants = vec![
            Grant {
                care_team: true,
                ..g(
                    &[Role::physician],
                    &[P::Treat],
                    &[O::Read, O::Create, O::Update, O::Query, O::Amend, O::Disclose],
                    clinical_all.clone(),
                )
            },
            Grant {
                care_team: true,
                exclude_kinds: vec!["PsychotherapyNote".into()],
                ..g(
                    &[Role::nurse],
                    &[P::Treat],
                    &[O::Read, O::Create, O::Update, O::Query],
                    without_psychotherapy.clone(),
                )
            },
            // Break-glass: reached only through an active, audited emergency grant.
            Grant {
                exclude_kinds: vec!["PsychotherapyNote".into()],
                ..g(
                    &[Role::physician, Role::nurse],
                    &[P::EmergencyTreat],
                    &[O::Read, O::Query, O::Create],
                    without_psychotherapy.clone(),
                )
            },
            g(&[Role::him_coder], &[P::Operations, P::Payment], &[O::Read, O::Query], labels(&[Label::normal])),
            g(
                &[Role::him_coder],
                &[P::Operations, P::Legal, P::PublicHealth, P::PatientRequest, P::Payment, P::Coverage],
                &[O::Disclose, O::Amend],
                labels(&[Label::normal, Label::demographics]),
            ),
            g(&[Role::billing], &[P::Payment], &[O::Read, O::Query], labels(&[Label::financial, Label::normal])),
            Grant {
                kinds: Some(vec!["Claim".into(), "Coverage".into()]),
                ..g(
                    &[Role::billing],
                    &[P::Payment],
                    &[O::Create, O::Update],
                    labels(&[Label::financial, Label::normal]),
                )
            },
            Grant {
                deidentify: true,
                ..g(&[Role::researcher], &[P::Research], &[O::Read, O::Query], labels(&[Label::normal]))
            },
            Grant {
                own_records: true,
                exclude_kinds: vec!["PsychotherapyNote".into()],
                ..g(&[Role::patient], &[P::PatientRequest], &[O::Read, O::Query], without_psychotherapy)
            },
            g(
                &[Role::privacy_officer],
                &[P::Compliance, P::Operations, P::Legal],
                &[O::Audit, O::ManageConsent, O::Erase],
                Vec::new(),
            ),
            g(&[Role::security_admin], &[P::SystemAdmin], &[O::Administer], Vec::new()),
        ];
        Policy { name: "hospital-default".into(), version: 0, session_idle_secs: 900, break_glass_secs: 3600, grants }
    }

    /// Every label some grant mentions.
    pub fn labels(&self) -> BTreeSet<Label> {
        self.grants.iter().flat_map(|g| g.labels.iter().cloned()).collect()
    }
}

fn policy_error_text(e: &serde_json::Error) -> String {
    // serde's messages name the offending key or variant (policy vocabulary, not PHI).
    let s = e.to_string();
    match s.rfind(" at line") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_round_trips_through_json() {
        let p = Policy::hospital_default();
        p.validate().unwrap();
        assert_eq!(Policy::from_json(&p.to_json()).unwrap(), p);
    }

    #[test]
    fn bad_policies_are_refused_clearly() {
        let e = Policy::from_json(
            r#"{"name":"x","grants":[{"roles":["physician"],"purposes":["TREAT"],"operations":["fly"]}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("fly") || e.contains("unknown variant"), "{e}");
        assert!(
            Policy::from_json(
                r#"{"name":"x","grants":[{"roles":["physician"],"purposes":["TREAT"],"operations":["read"]}]}"#
            )
            .is_err()
        );
        assert!(Policy::from_json("{").is_err());
        assert!(Policy::from_json(r#"{"name":"x","grants":[],"bogus":1}"#).is_err());
    }
}
