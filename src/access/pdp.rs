//! The policy decision point: the one place where allow or deny is decided.
//!
//! Inputs: the policy, the principal, the patient's rules, any active break-glass
//! grant, the operation, the patient, the document kind and the labels involved.
//! Order of evaluation:
//! 1. the effective purpose is ETREAT while a break-glass grant for this patient is
//!    active, otherwise the principal's purpose (ETREAT without break-glass matches no
//!    grant);
//! 2. grants are selected by role, purpose, operation and kind, and kept only if
//!    their conditions hold (care relationship or break-glass; own records);
//! 3. every label must be covered by a selected grant;
//! 4. patient rules can only take away: VIP status, consent restrictions (waived by
//!    break-glass), self-pay documents for payment purposes, and 42 CFR Part 2
//!    (substance-use labels need the patient's consent, their own access, or an
//!    emergency);
//! 5. anything else is denied.

use smallvec::SmallVec;

use super::{Grant, Operation, PatientRules, Policy, Principal, Purpose};
use crate::model::{DocumentId, Label};

/// An active emergency-access grant of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakGlassGrant {
    /// The patient it covers.
    pub patient: String,
    /// The reason given.
    pub reason: String,
    /// Start, Unix microseconds.
    pub started_us: i64,
    /// Expiry, Unix microseconds.
    pub expires_us: i64,
}

/// What is being asked.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The operation.
    pub op: Operation,
    /// The patient concerned, if any.
    pub patient: Option<&'a str>,
    /// The document kind, if any.
    pub kind: Option<&'a str>,
    /// The document, if any.
    pub doc: Option<DocumentId>,
}

/// The outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed.
    Permit {
        /// Results must be de-identified.
        deidentify: bool,
        /// Allowed only because of break-glass.
        break_glass: bool,
    },
    /// Denied, with a reason that names no PHI.
    Deny(String),
}

impl Decision {
    /// Whether the decision is a permit.
    pub fn is_permit(&self) -> bool {
        matches!(self, Decision::Permit { .. })
    }
}

/// Everything the decision point needs.
#[derive(Debug, Clone, Copy)]
pub struct Pdp<'a> {
    /// The policy in force.
    pub policy: &'a Policy,
    /// Who is asking.
    pub principal: &'a Principal,
    /// The patient's rules, if any.
    pub rules: Option<&'a PatientRules>,
    /// The session's break-glass grant, if any.
    pub break_glass: Option<&'a BreakGlassGrant>,
    /// The time of the decision, Unix microseconds.
    pub now_us: i64,
}

impl Pdp<'_> {
    fn active_break_glass(&self, patient: Option<&str>) -> bool {
        match (self.break_glass, patient) {
            (Some(bg), Some(p)) => bg.patient == p && self.now_us < bg.expires_us,
            _ => false,
        }
    }

    /// Decides `req` for content carrying `labels` (empty for non-clinical operations).
    pub fn decide(&self, req: &Request<'_>, labels: &[Label]) -> Decision {
        self.prepare(req).decide(labels)
    }

    /// Does the label-independent part of a decision for `req` once (grant selection,
    /// care relationship, break-glass), so that deciding each label group of a document
    /// costs only the label checks. `prepare(req).decide(labels)` is `decide(req, labels)`.
    pub fn prepare<'r>(&'r self, req: &'r Request<'r>) -> Prepared<'r> {
        let pr = self.principal;
        let bg = self.active_break_glass(req.patient);
        let purpose = if bg { Purpose::EmergencyTreat } else { pr.purpose };
        let own = matches!((req.patient, &pr.patient_id), (Some(p), Some(me)) if p == me);
        let cares = req.patient.is_some_and(|p| pr.cares_for(p));
        let mut prepared = Prepared { pdp: self, req, bg, purpose, own, cares, grants: SmallVec::new(), denied: None };
        if pr.purpose == Purpose::EmergencyTreat && !bg {
            prepared.denied =
                Some("emergency access (ETREAT) needs an active break-glass request for this patient".into());
            return prepared;
        }
        // One pass: a grant is selected by role, purpose, operation and kind, and kept
        // if its conditions hold. (Every read prepares a decision: no list is allocated
        // for a policy's usual handful of grants.)
        let mut selected = false;
        let kind_ok = |g: &Grant| match req.kind {
            Some(k) => {
                g.kinds.as_ref().is_none_or(|ks| ks.iter().any(|x| x == k)) && !g.exclude_kinds.iter().any(|x| x == k)
            }
            None => true,
        };
        for g in &self.policy.grants {
            // The cheap enum checks first, then the names.
            if !(g.operations.contains(&req.op)
                && g.purposes.contains(&purpose)
                && g.roles.iter().any(|r| pr.roles.contains(r))
                && kind_ok(g))
            {
                continue;
            }
            selected = true;
            if (!g.care_team || cares || bg) && (!g.own_records || own) {
                prepared.grants.push(g);
            }
        }
        if !selected {
            prepared.denied = Some(format!(
                "no grant lets role {} with purpose {} {}{}",
                pr.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join("/"),
                purpose,
                req.op.name(),
                req.kind.map(|k| format!(" {k} documents")).unwrap_or_default()
            ));
        } else if prepared.grants.is_empty() {
            prepared.denied = Some("this needs a care relationship with the patient (or break-glass), or is limited to the patient's own records".into());
        }
        prepared
    }
}

/// The label-independent part of a decision, from [`Pdp::prepare`].
#[derive(Debug)]
pub struct Prepared<'r> {
    pdp: &'r Pdp<'r>,
    req: &'r Request<'r>,
    bg: bool,
    purpose: Purpose,
    own: bool,
    cares: bool,
    grants: SmallVec<[&'r Grant; 8]>,
    denied: Option<String>,
}

impl Prepared<'_> {
    /// Decides the prepared request for content carrying `labels`.
    pub fn decide(&self, labels: &[Label]) -> Decision {
        if let Some(r) = &self.denied {
            return Decision::Deny(r.clone());
        }
        let (pr, req, bg, own, cares, purpose) =
            (self.pdp.principal, self.req, self.bg, self.own, self.cares, self.purpose);
        let grants = &self.grants;
        for l in labels {
            if !grants.iter().any(|g| g.labels.contains(l)) {
                return Decision::Deny(format!("label {l} is not granted to this role and purpose"));
            }
        }
        if let Some(rules) = self.pdp.rules {
            if rules.vip && !(cares || bg || own) {
                return Decision::Deny(
                    "confidential (VIP) patient: access needs a care relationship or break-glass".into(),
                );
            }
            if !bg && !own {
                for r in &rules.restrictions {
                    let applies = r.roles.iter().any(|x| pr.roles.contains(x))
                        || r.organizations.contains(&pr.organization)
                        || r.purposes.contains(&purpose);
                    if let Some(l) = labels.iter().find(|l| applies && r.labels.contains(l)) {
                        return Decision::Deny(format!("the patient's consent withholds label {l} here"));
                    }
                }
            }
            if let Some(d) = req.doc
                && rules.self_pay.contains(&d)
                && matches!(purpose, Purpose::Payment | Purpose::Coverage)
            {
                return Decision::Deny(
                    "self-pay restriction (45 CFR 164.522): not disclosed for payment or coverage".into(),
                );
            }
        }
        // Part 2 restricts use and disclosure; recording a new record is not a disclosure.
        let discloses = !matches!(req.op, Operation::Create);
        if discloses && labels.contains(&Label::substance_use()) && !own && !bg {
            let now_s = self.pdp.now_us / 1_000_000;
            let consented = self.pdp.rules.is_some_and(|r| {
                r.part2_consents.iter().any(|c| {
                    (c.organization == "*" || c.organization == pr.organization)
                        && c.purposes.contains(&purpose)
                        && c.expires.is_none_or(|e| now_s < e)
                })
            });
            if !consented {
                return Decision::Deny(
                    "substance-use records (42 CFR Part 2) need the patient's written consent".into(),
                );
            }
        }
        Decision::Permit { deidentify: grants.iter().any(|g| g.deidentify), break_glass: bg }
    }
}
