//! `break-glass`: request emergency access to a patient.

use std::path::Path;

use super::{close, open_vault};
use crate::args::BreakGlassCmdArgs;
use crate::error::CliResult;
use crate::session_opts::request_break_glass;

/// Records a break-glass request. The grant lives in this invocation's session only;
/// to read under it, pass `--break-glass-patient` and `--break-glass-reason` to `get`,
/// `chart`, `history` or `attachment`.
pub fn run(key_file: Option<&Path>, a: BreakGlassCmdArgs) -> CliResult<()> {
    let vault = open_vault(&a.vault, key_file, false)?;
    let s = a.session.open(&vault)?;
    request_break_glass(&s, &a.patient, &a.reason)?;
    drop(s);
    close(vault)?;
    println!("break-glass request for patient {} recorded in the audit trail", a.patient);
    println!(
        "note: a grant lasts only for the command that requested it; to read under break-glass, run for example\n  \
         chartvault chart VAULT {} --break-glass-patient {} --break-glass-reason \"...\" --user ... --role ... --purpose TREAT",
        a.patient, a.patient
    );
    Ok(())
}
