//! Access control: who is asking (principal), why (purpose of use), what the policy
//! grants, patient-level rules (consent, VIP, self-pay, 42 CFR Part 2), break-glass,
//! and the one policy decision point that turns all of it into allow or deny.

pub mod pdp;
pub mod policy;
pub mod principal;
pub mod rules;

pub use pdp::{Decision, Request};
pub use policy::{Grant, Operation, Policy};
pub use principal::{Principal, Purpose, Role};
pub use rules::{ConsentRestriction, Part2Consent, PatientRules};
