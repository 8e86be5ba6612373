//! Principals (who is asking), their roles, and purposes of use.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A role name, e.g. `physician`. Lowercase letters, digits and `-`, 1-32 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Role(String);

macro_rules! roles {
    ($($(#[$d:meta])* $f:ident = $n:literal;)*) => {
        impl Role { $( $(#[$d])* pub fn $f() -> Role { Role($n.to_string()) } )* }
        /// The roles of the default policy.
        pub const DEFAULT_ROLES: &[&str] = &[$($n),*];
    };
}

roles! {
    /// A treating physician.
    physician = "physician";
    /// A nurse.
    nurse = "nurse";
    /// A health information management coder.
    him_coder = "him-coder";
    /// Billing staff.
    billing = "billing";
    /// A researcher (de-identified view).
    researcher = "researcher";
    /// The patient themself.
    patient = "patient";
    /// Privacy officer or auditor: audit trail and reports, no clinical content.
    privacy_officer = "privacy-officer";
    /// Security administrator: key slots, policy, users; no clinical content.
    security_admin = "security-admin";
}

impl Role {
    /// Validates a role name.
    pub fn new(s: &str) -> Result<Self> {
        if !s.is_empty()
            && s.len() <= 32
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            Ok(Role(s.to_string()))
        } else {
            Err(Error::InvalidArgument("a role is 1-32 lowercase letters, digits or '-'".into()))
        }
    }

    /// The role name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl TryFrom<String> for Role {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Role::new(&s)
    }
}
impl From<Role> for String {
    fn from(r: Role) -> String {
        r.0
    }
}

/// HL7 v3 PurposeOfUse codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Purpose {
    /// Treatment.
    #[serde(rename = "TREAT")]
    Treat,
    /// Emergency treatment (break-glass).
    #[serde(rename = "ETREAT")]
    EmergencyTreat,
    /// Payment.
    #[serde(rename = "HPAYMT")]
    Payment,
    /// Healthcare operations.
    #[serde(rename = "HOPERAT")]
    Operations,
    /// Research.
    #[serde(rename = "HRESCH")]
    Research,
    /// Public health.
    #[serde(rename = "PUBHLTH")]
    PublicHealth,
    /// Patient request (right of access).
    #[serde(rename = "PATRQT")]
    PatientRequest,
    /// Coverage under a policy or program.
    #[serde(rename = "COVERAGE")]
    Coverage,
    /// Legal (e.g. court order).
    #[serde(rename = "HLEGAL")]
    Legal,
    /// Healthcare compliance / audit.
    #[serde(rename = "HCOMPL")]
    Compliance,
    /// System administration.
    #[serde(rename = "HSYSADMIN")]
    SystemAdmin,
}

impl Purpose {
    /// Every purpose.
    pub const ALL: [Purpose; 11] = [
        Purpose::Treat,
        Purpose::EmergencyTreat,
        Purpose::Payment,
        Purpose::Operations,
        Purpose::Research,
        Purpose::PublicHealth,
        Purpose::PatientRequest,
        Purpose::Coverage,
        Purpose::Legal,
        Purpose::Compliance,
        Purpose::SystemAdmin,
    ];

    /// The HL7 code.
    pub fn code(self) -> &'static str {
        match self {
            Purpose::Treat => "TREAT",
            Purpose::EmergencyTreat => "ETREAT",
            Purpose::Payment => "HPAYMT",
            Purpose::Operations => "HOPERAT",
            Purpose::Research => "HRESCH",
            Purpose::PublicHealth => "PUBHLTH",
            Purpose::PatientRequest => "PATRQT",
            Purpose::Coverage => "COVERAGE",
            Purpose::Legal => "HLEGAL",
            Purpose::Compliance => "HCOMPL",
            Purpose::SystemAdmin => "HSYSADMIN",
        }
    }

    /// Parses an HL7 code (case-insensitive).
    pub fn parse(s: &str) -> Result<Self> {
        Purpose::ALL.into_iter().find(|p| p.code().eq_ignore_ascii_case(s)).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "unknown purpose of use; expected one of {}",
                Purpose::ALL.iter().map(|p| p.code()).collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// Whether disclosures for this purpose are exempt from the accounting of
    /// disclosures (45 CFR 164.528(a)(1): treatment, payment, operations, and
    /// disclosures to the individual).
    pub fn accounting_exempt(self) -> bool {
        matches!(
            self,
            Purpose::Treat
                | Purpose::EmergencyTreat
                | Purpose::Payment
                | Purpose::Operations
                | Purpose::PatientRequest
                | Purpose::Coverage
        )
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Who is asking: a user with roles in an organization, for a purpose, with the
/// patients they have a care relationship with.
///
/// ```
/// use chartvault::access::{Principal, Purpose, Role};
/// let dr = Principal::new("dr.grey", Role::physician(), "general-hospital", Purpose::Treat)
///     .with_care_team(["MRN-7"]);
/// assert!(dr.cares_for("MRN-7"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// User id.
    pub user: String,
    /// Roles.
    pub roles: Vec<Role>,
    /// Organization.
    #[serde(default)]
    pub organization: String,
    /// Purpose of use.
    pub purpose: Purpose,
    /// Patients this user has a care relationship with.
    #[serde(default)]
    pub care_team: BTreeSet<String>,
    /// For the `patient` role: which patient this user is.
    #[serde(default)]
    pub patient_id: Option<String>,
}

impl Principal {
    /// A principal with one role.
    pub fn new(user: &str, role: Role, organization: &str, purpose: Purpose) -> Self {
        Principal {
            user: user.to_string(),
            roles: vec![role],
            organization: organization.to_string(),
            purpose,
            care_team: BTreeSet::new(),
            patient_id: None,
        }
    }

    /// Adds patients to the care team.
    pub fn with_care_team<I: IntoIterator<Item = S>, S: Into<String>>(mut self, patients: I) -> Self {
        self.care_team.extend(patients.into_iter().map(Into::into));
        self
    }

    /// Marks this principal as the patient `patient` (for the `patient` role).
    pub fn as_patient(mut self, patient: &str) -> Self {
        self.patient_id = Some(patient.to_string());
        self
    }

    /// Whether the user has a care relationship with `patient`.
    pub fn cares_for(&self, patient: &str) -> bool {
        self.care_team.contains(patient)
    }

    /// Checks the fields are usable.
    pub fn validate(&self) -> Result<()> {
        if self.user.is_empty() || self.user.len() > 128 {
            return Err(Error::InvalidArgument("a principal needs a user id of 1-128 bytes".into()));
        }
        if self.roles.is_empty() {
            return Err(Error::InvalidArgument("a principal needs at least one role".into()));
        }
        if self.organization.len() > 128 {
            return Err(Error::InvalidArgument("organization longer than 128 bytes".into()));
        }
        Ok(())
    }
}
