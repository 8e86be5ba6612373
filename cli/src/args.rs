//! Command-line arguments (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use crate::output::Format;
pub use crate::session_opts::{BreakGlassArgs, SessionArgs};

const AFTER_HELP: &str = "\
Unlocking: the secret comes from --key-file FILE (a raw 32-byte key: 32 raw bytes or
64 hex characters), else from the CHARTVAULT_PASSPHRASE environment variable, else from
a prompt on the terminal. Nothing is ever read from a command-line argument.

Every command that touches clinical or audit data needs --user, --role and --purpose:
they are checked against the vault's policy and recorded in its audit trail.

Exit codes: 0 success, 1 error, 2 usage error, 3 verification found problems.";

/// chartvault: an encrypted, access-controlled and audited store of patient records.
#[derive(Parser, Debug)]
#[command(name = "chartvault", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// Unlock with a raw 32-byte key from FILE (32 raw bytes or 64 hex characters)
    /// instead of a passphrase.
    #[arg(long, global = true, value_name = "FILE")]
    pub key_file: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new vault (and its keyring VAULT.keyring beside it).
    Init(InitArgs),
    /// Store a new document from JSON (a file, or standard input); prints its id.
    Put(PutArgs),
    /// Write a new version of a document; its fields are replaced by the JSON's fields.
    Update(UpdateArgs),
    /// Print a document (latest or a given version) as JSON.
    Get(GetArgs),
    /// List every version of a document.
    History(HistoryArgs),
    /// Show a patient's chart: the documents this session may see.
    Chart(ChartArgs),
    /// Run a query, e.g. 'kind = Observation and code = loinc:4548-4 and effective >= 2024-01-01'.
    Query(QueryArgs),
    /// Save an attachment stored in a document field to a file.
    Attachment(AttachmentArgs),
    /// Check every frame, commit, MAC and sealed record of the file (read-only).
    Verify(VerifyArgs),
    /// List, add or remove key slots (passphrases and raw keys that unlock the vault).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Show or replace the access policy.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Record or show a patient's rules: consent restrictions, VIP, self-pay, 42 CFR Part 2.
    #[command(subcommand)]
    Consent(ConsentCommand),
    /// Request emergency access to a patient (recorded; see --break-glass-patient to use it).
    ///
    /// A break-glass grant lives in the session that requested it, and each invocation
    /// of this tool is one session: this command records the request in the audit
    /// trail, but the grant ends when it exits. To read under break-glass, request and
    /// use the grant in one invocation with `--break-glass-patient PATIENT
    /// --break-glass-reason TEXT` on `get`, `chart`, `history` or `attachment`.
    BreakGlass(BreakGlassCmdArgs),
    /// Record a release of information in the disclosure ledger.
    Disclose(DiscloseArgs),
    /// Verify or export the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Reports for a privacy officer or auditor.
    #[command(subcommand)]
    Report(ReportCommand),
    /// Build a demo vault of synthetic patients in DIR and walk through its features.
    Demo(DemoArgs),
}

/// Argon2id cost profile for passphrase key slots.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum KdfProfile {
    /// 64 MiB, 3 passes: for servers and desktops.
    Default,
    /// 19 MiB, 2 passes: for phones and small devices.
    Mobile,
    /// Minimal cost. FOR TESTS ONLY: offers almost no protection against guessing.
    Test,
}

impl KdfProfile {
    /// The engine's parameters for this profile.
    pub fn params(self) -> chartvault::KdfParams {
        match self {
            KdfProfile::Default => chartvault::KdfParams::DEFAULT,
            KdfProfile::Mobile => chartvault::KdfParams::MOBILE,
            KdfProfile::Test => chartvault::KdfParams::INSECURE_FOR_TESTS,
        }
    }
}

/// `init`.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// Path of the new vault's data file.
    pub vault: PathBuf,
    /// Argon2id cost of the passphrase slot (`test` is for automated tests only).
    #[arg(long, value_enum, default_value_t = KdfProfile::Default)]
    pub kdf: KdfProfile,
    /// Start with this policy (JSON) instead of the built-in hospital default.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
}

/// `put`.
#[derive(Args, Debug)]
pub struct PutArgs {
    /// The vault.
    pub vault: PathBuf,
    /// Document JSON (`-` or absent: standard input). A JSON array stores several
    /// documents in one commit and prints one id per line. Attachments may name a
    /// `file`, relative to the JSON file's folder.
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub session: SessionArgs,
}

/// `update`.
#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// The vault.
    pub vault: PathBuf,
    /// Document id (32 hex digits).
    pub id: String,
    /// Document JSON with the new fields (`-` or absent: standard input). `patient`
    /// and `kind` may be left out; if given they must match the document.
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub session: SessionArgs,
}

/// `get`.
#[derive(Args, Debug)]
pub struct GetArgs {
    /// The vault.
    pub vault: PathBuf,
    /// Document id (32 hex digits).
    pub id: String,
    /// A given version instead of the latest.
    #[arg(long, value_name = "N")]
    pub version: Option<u32>,
    #[command(flatten)]
    pub session: SessionArgs,
    #[command(flatten)]
    pub break_glass: BreakGlassArgs,
}

/// `history`.
#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// The vault.
    pub vault: PathBuf,
    /// Document id (32 hex digits).
    pub id: String,
    /// Output format (json: every version in full).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    #[command(flatten)]
    pub session: SessionArgs,
    #[command(flatten)]
    pub break_glass: BreakGlassArgs,
}

/// `chart`.
#[derive(Args, Debug)]
pub struct ChartArgs {
    /// The vault.
    pub vault: PathBuf,
    /// The patient's identifier.
    pub patient: String,
    /// Output format (json: every document in full).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    #[command(flatten)]
    pub session: SessionArgs,
    #[command(flatten)]
    pub break_glass: BreakGlassArgs,
}

/// `query`.
#[derive(Args, Debug)]
pub struct QueryArgs {
    /// The vault.
    pub vault: PathBuf,
    /// The query (grammar: docs/QUERY.md).
    pub query: String,
    /// Page size (default 100).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Continue after this cursor (printed after a page that has more).
    #[arg(long)]
    pub cursor: Option<String>,
    /// Output: table, or json (one JSON document per line, then a summary line).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    #[command(flatten)]
    pub session: SessionArgs,
    #[command(flatten)]
    pub break_glass: BreakGlassArgs,
}

/// `attachment`.
#[derive(Args, Debug)]
pub struct AttachmentArgs {
    /// The vault.
    pub vault: PathBuf,
    /// Document id (32 hex digits).
    pub id: String,
    /// The field holding the attachment.
    pub field: String,
    /// Where to write it (`-` for standard output). A new file is created with
    /// owner-only permissions and is not overwritten.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    #[command(flatten)]
    pub session: SessionArgs,
    #[command(flatten)]
    pub break_glass: BreakGlassArgs,
}

/// `verify`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The vault.
    pub vault: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// `keys ...`.
#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// List the key slots in use.
    List {
        /// The vault.
        vault: PathBuf,
    },
    /// Add a key slot: a new passphrase (CHARTVAULT_NEW_PASSPHRASE or a prompt) or a
    /// raw key (--new-key-file). Needs a session allowed to administer.
    Add {
        /// The vault.
        vault: PathBuf,
        /// The new slot is a raw 32-byte key read from FILE.
        #[arg(long, value_name = "FILE")]
        new_key_file: Option<PathBuf>,
        /// Argon2id cost of a new passphrase slot (`test` is for automated tests only).
        #[arg(long, value_enum, default_value_t = KdfProfile::Default)]
        kdf: KdfProfile,
        #[command(flatten)]
        session: SessionArgs,
    },
    /// Remove a key slot (never the last one). Needs a session allowed to administer.
    Remove {
        /// The vault.
        vault: PathBuf,
        /// The slot number (see `keys list`).
        #[arg(long, value_name = "N")]
        slot: usize,
        #[command(flatten)]
        session: SessionArgs,
    },
}

/// `policy ...`.
#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Print the policy in force as JSON (needs `administer` or `audit`).
    Show {
        /// The vault.
        vault: PathBuf,
        #[command(flatten)]
        session: SessionArgs,
    },
    /// Replace the policy with the one in FILE (needs `administer`).
    Load {
        /// The vault.
        vault: PathBuf,
        /// Policy JSON.
        file: PathBuf,
        #[command(flatten)]
        session: SessionArgs,
    },
}

/// `consent ...`.
#[derive(Subcommand, Debug)]
pub enum ConsentCommand {
    /// Record a patient's rules from a JSON file, replacing earlier ones (needs `manage-consent`).
    ///
    /// {"patient": "MRN-7", "vip": false,
    ///  "restrictions": [{"labels": ["mental-health"], "roles": ["nurse"]}],
    ///  "self_pay": ["<document id>"],
    ///  "part2_consents": [{"organization": "general-hospital", "purposes": ["TREAT"]}]}
    #[command(verbatim_doc_comment)]
    Set {
        /// The vault.
        vault: PathBuf,
        /// Patient rules JSON.
        file: PathBuf,
        #[command(flatten)]
        session: SessionArgs,
    },
    /// Print a patient's rules as JSON (needs `manage-consent` or `audit`).
    Show {
        /// The vault.
        vault: PathBuf,
        /// The patient's identifier.
        patient: String,
        #[command(flatten)]
        session: SessionArgs,
    },
}

/// `break-glass`.
#[derive(Args, Debug)]
pub struct BreakGlassCmdArgs {
    /// The vault.
    pub vault: PathBuf,
    /// The patient.
    pub patient: String,
    /// Why emergency access is needed (at least 4 characters).
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    #[command(flatten)]
    pub session: SessionArgs,
}

/// `disclose`.
#[derive(Args, Debug)]
pub struct DiscloseArgs {
    /// The vault.
    pub vault: PathBuf,
    /// The patient whose information is released.
    #[arg(long, value_name = "PATIENT")]
    pub patient: String,
    /// Recipient: name and address.
    #[arg(long, value_name = "TEXT")]
    pub recipient: String,
    /// Brief description of what is released.
    #[arg(long, value_name = "TEXT")]
    pub description: String,
    /// A document released (repeatable).
    #[arg(long = "doc", value_name = "ID")]
    pub docs: Vec<String>,
    #[command(flatten)]
    pub session: SessionArgs,
}

/// `audit ...`.
#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Verify the audit trail's authentication, sequence and hash chain (needs `audit`).
    Verify {
        /// The vault.
        vault: PathBuf,
        #[command(flatten)]
        session: SessionArgs,
    },
    /// Export the audit trail as a FHIR R4 Bundle of AuditEvent resources (needs `audit`).
    Export {
        /// The vault.
        vault: PathBuf,
        /// Write to FILE (created owner-only, not overwritten) instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[command(flatten)]
        session: SessionArgs,
    },
}

/// `report ...`.
#[derive(Subcommand, Debug)]
pub enum ReportCommand {
    /// Accounting of disclosures for one patient (45 CFR 164.528).
    Accounting(PatientReportArgs),
    /// Who accessed one patient's records, when and why.
    Access(PatientReportArgs),
    /// Every break-glass request and every access made under one.
    BreakGlass(ReportArgs),
}

/// A report about one patient.
#[derive(Args, Debug)]
pub struct PatientReportArgs {
    /// The vault.
    pub vault: PathBuf,
    /// The patient.
    #[arg(long, value_name = "PATIENT")]
    pub patient: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    #[command(flatten)]
    pub session: SessionArgs,
}

/// A report across patients.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The vault.
    pub vault: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    #[command(flatten)]
    pub session: SessionArgs,
}

/// `demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Folder for the demo vault (created if missing; must not already hold a vault).
    pub dir: PathBuf,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
