//! Audit entries.

use serde::{Deserialize, Serialize};

use crate::access::Principal;
use crate::model::{DocumentId, Label};

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// A session was opened.
    SessionOpen,
    /// A session expired (automatic logoff).
    SessionExpired,
    /// A document was read.
    Read,
    /// A document was created.
    Create,
    /// A new version was written.
    Update,
    /// A query ran.
    Query,
    /// Information was released to another party.
    Disclose,
    /// A record was amended.
    Amend,
    /// A patient was erased (keys destroyed).
    Erase,
    /// Emergency access was requested.
    BreakGlass,
    /// The policy changed.
    PolicyChange,
    /// A patient's rules (consent, VIP, self-pay, Part 2) changed.
    ConsentChange,
    /// A key slot was added.
    KeySlotAdd,
    /// A key slot was removed.
    KeySlotRemove,
    /// The audit trail or a report was read.
    AuditRead,
    /// An attachment was read.
    AttachmentRead,
    /// The vault was created.
    VaultCreate,
}

impl Action {
    /// Lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Action::SessionOpen => "session-open",
            Action::SessionExpired => "session-expired",
            Action::Read => "read",
            Action::Create => "create",
            Action::Update => "update",
            Action::Query => "query",
            Action::Disclose => "disclose",
            Action::Amend => "amend",
            Action::Erase => "erase",
            Action::BreakGlass => "break-glass",
            Action::PolicyChange => "policy-change",
            Action::ConsentChange => "consent-change",
            Action::KeySlotAdd => "key-slot-add",
            Action::KeySlotRemove => "key-slot-remove",
            Action::AuditRead => "audit-read",
            Action::AttachmentRead => "attachment-read",
            Action::VaultCreate => "vault-create",
        }
    }

    /// Whether the action only reads (its entry may be batched within the audit window).
    pub fn is_read(self) -> bool {
        matches!(self, Action::Read | Action::Query | Action::AuditRead | Action::AttachmentRead | Action::SessionOpen)
    }
}

/// The outcome of an audited action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Allowed and done.
    Success,
    /// Refused by policy.
    Denied,
    /// Failed (not found, invalid input, I/O).
    Failed,
}

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the trail, from 0.
    pub index: u64,
    /// BLAKE3 of the previous entry's encoding (zeros for the first).
    pub prev: [u8; 32],
    /// When, Unix microseconds.
    pub time_us: i64,
    /// User id.
    pub user: String,
    /// Roles.
    pub roles: Vec<String>,
    /// Organization.
    pub organization: String,
    /// Purpose of use (HL7 code).
    pub purpose: String,
    /// What was done.
    pub action: Action,
    /// Patient concerned.
    pub patient: Option<String>,
    /// Documents touched (for queries: the documents returned).
    pub documents: Vec<DocumentId>,
    /// Labels touched.
    pub labels: Vec<Label>,
    /// Outcome.
    pub outcome: Outcome,
    /// Whether access relied on break-glass.
    pub break_glass: bool,
    /// A non-PHI detail: a denial reason, a query's shape, a break-glass reason.
    pub detail: String,
}

impl AuditEntry {
    /// A new entry for `principal` (index and chain are set when it is sealed).
    pub fn new(principal: &Principal, action: Action, outcome: Outcome) -> Self {
        AuditEntry {
            index: 0,
            prev: [0; 32],
            time_us: crate::util::now_micros(),
            user: principal.user.clone(),
            roles: principal.roles.iter().map(|r| r.to_string()).collect(),
            organization: principal.organization.clone(),
            purpose: principal.purpose.code().to_string(),
            action,
            patient: None,
            documents: Vec::new(),
            labels: Vec::new(),
            outcome,
            break_glass: false,
            detail: String::new(),
        }
    }

    /// Sets the patient.
    pub fn patient(mut self, p: Option<&str>) -> Self {
        self.patient = p.map(str::to_string);
        self
    }

    /// Sets the documents.
    pub fn documents(mut self, d: Vec<DocumentId>) -> Self {
        self.documents = d;
        self
    }

    /// Sets the labels.
    pub fn labels(mut self, l: Vec<Label>) -> Self {
        self.labels = l;
        self
    }

    /// Sets the detail.
    pub fn detail(mut self, d: impl Into<String>) -> Self {
        self.detail = d.into();
        self
    }

    /// Sets the break-glass flag.
    pub fn break_glass(mut self, b: bool) -> Self {
        self.break_glass = b;
        self
    }
}
