//! Session options: who is asking, in which roles, for what purpose, and with which
//! care relationships. Every command that reads or writes clinical or audit data
//! opens a session from these, and every access is recorded under it in the audit
//! trail. `--user`, `--role` and `--purpose` have no defaults: the person at the
//! keyboard must say who they are and why they are asking.

use std::collections::BTreeSet;

use chartvault::access::{Principal, Purpose, Role};
use chartvault::{Session, Vault};
use clap::Args;

use crate::error::{CliError, CliResult};

/// Who is asking and why (required wherever a session is opened).
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Session (who is asking, and why; recorded in the audit trail)")]
pub struct SessionArgs {
    /// User id of the person asking.
    #[arg(long, value_name = "USER")]
    pub user: String,

    /// Role of the user, repeatable: physician, nurse, him-coder, billing,
    /// researcher, patient, privacy-officer, security-admin, or a role of your policy.
    #[arg(long = "role", value_name = "ROLE", required = true, value_parser = parse_role)]
    pub roles: Vec<Role>,

    /// Purpose of use, an HL7 PurposeOfUse code: TREAT, HPAYMT, HOPERAT, HRESCH,
    /// PUBHLTH, PATRQT, COVERAGE, HLEGAL, HCOMPL, HSYSADMIN (ETREAT is entered
    /// through break-glass).
    #[arg(long, value_name = "CODE", value_parser = parse_purpose)]
    pub purpose: Purpose,

    /// The user's organization.
    #[arg(long, value_name = "ORG", default_value = "")]
    pub org: String,

    /// A patient the user has a care relationship with (repeatable).
    #[arg(long = "care-team", value_name = "PATIENT")]
    pub care_team: Vec<String>,

    /// For role `patient`: which patient the user is.
    #[arg(long, value_name = "PATIENT")]
    pub patient_id: Option<String>,
}

/// Break-glass requested together with a read (`get`, `chart`, `history`,
/// `attachment`), so that one invocation can request emergency access and use it.
///
/// A grant lives only as long as the session that requested it, which for this tool
/// is one invocation: `chartvault break-glass` on its own records the request but
/// cannot carry it over to a later command.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Emergency access (break-glass)")]
pub struct BreakGlassArgs {
    /// Request emergency access to this patient before reading (audited and flagged;
    /// the grant lasts for this command only).
    #[arg(long, value_name = "PATIENT", requires = "break_glass_reason")]
    pub break_glass_patient: Option<String>,

    /// The reason for emergency access (at least 4 characters).
    #[arg(long, value_name = "TEXT", requires = "break_glass_patient")]
    pub break_glass_reason: Option<String>,
}

/// Parses a role name for clap.
pub fn parse_role(s: &str) -> Result<Role, String> {
    Role::new(s).map_err(|e| e.to_string())
}

/// Parses an HL7 purpose-of-use code for clap.
pub fn parse_purpose(s: &str) -> Result<Purpose, String> {
    Purpose::parse(s).map_err(|e| e.to_string())
}

impl SessionArgs {
    /// The principal these options describe.
    pub fn principal(&self) -> CliResult<Principal> {
        if self.user.trim().is_empty() {
            return Err(CliError::usage("--user must not be empty"));
        }
        if self.roles.iter().any(|r| *r == Role::patient()) && self.patient_id.is_none() {
            return Err(CliError::usage("--role patient needs --patient-id (which patient the user is)"));
        }
        Ok(Principal {
            user: self.user.clone(),
            roles: self.roles.clone(),
            organization: self.org.clone(),
            purpose: self.purpose,
            care_team: self.care_team.iter().cloned().collect::<BTreeSet<_>>(),
            patient_id: self.patient_id.clone(),
        })
    }

    /// Opens a session on `vault`.
    pub fn open(&self, vault: &Vault) -> CliResult<Session> {
        Ok(vault.session(self.principal()?)?)
    }

    /// Opens a session and, if asked, requests break-glass in it.
    pub fn open_with(&self, vault: &Vault, bg: &BreakGlassArgs) -> CliResult<Session> {
        let s = self.open(vault)?;
        if let (Some(p), Some(r)) = (&bg.break_glass_patient, &bg.break_glass_reason) {
            request_break_glass(&s, p, r)?;
        }
        Ok(s)
    }
}

/// Requests break-glass in `session` and tells the user (on stderr) what it means.
pub fn request_break_glass(session: &Session, patient: &str, reason: &str) -> CliResult<()> {
    let g = session.break_glass(patient, reason).map_err(|e| CliError::from(e).context("break-glass refused"))?;
    let until = chartvault::DateTime::from_unix_micros(g.expires_us);
    eprintln!(
        "break-glass: emergency access granted until the end of this command (at the latest {until}); \
         every access under it is flagged in the audit trail for review"
    );
    Ok(())
}
