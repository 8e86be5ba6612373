//! `audit verify|export`: the tamper-evident audit trail.

use std::io::Write;
use std::path::Path;

use super::{close, open_for_audit};
use crate::args::AuditCommand;
use crate::error::{CliError, CliResult};
use crate::output;

/// Runs an `audit` subcommand.
pub fn run(key_file: Option<&Path>, c: AuditCommand) -> CliResult<()> {
    match c {
        AuditCommand::Verify { vault: path, session } => {
            let (vault, _read_only) = open_for_audit(&path, key_file)?;
            let s = session.open(&vault)?;
            let rep = s.audit_verify()?;
            drop(s);
            close(vault)?;
            println!("audit trail of {}", path.display());
            println!("  entries verified   {}", rep.entries);
            if rep.is_intact() {
                println!("  problems           none");
                println!("result: INTACT (every entry authenticated, in sequence, hash chain unbroken)");
                Ok(())
            } else {
                println!("  problems           {}", rep.problems.len());
                for (off, idx, what) in &rep.problems {
                    let idx = idx.map(|i| format!(" (entry {i})")).unwrap_or_default();
                    println!("    at byte offset {off}{idx}: {what}");
                }
                println!("result: BROKEN");
                Err(CliError::not_clean(format!("the audit trail is not intact: {} problem(s)", rep.problems.len())))
            }
        }
        AuditCommand::Export { vault: path, out, session } => {
            let (vault, _read_only) = open_for_audit(&path, key_file)?;
            let s = session.open(&vault)?;
            let bundle = s.audit_export_fhir()?;
            drop(s);
            close(vault)?;
            let n = bundle.get("entry").and_then(|e| e.as_array()).map_or(0, Vec::len);
            let text =
                serde_json::to_string_pretty(&bundle).map_err(|e| CliError::new(format!("cannot format JSON: {e}")))?;
            match out {
                None => {
                    let mut o = std::io::stdout().lock();
                    writeln!(o, "{text}").map_err(|e| CliError::new(format!("cannot write standard output: {e}")))?;
                }
                Some(p) => {
                    output::write_private_file(&p, &(text + "\n"))?;
                    eprintln!(
                        "wrote {n} AuditEvent resources to {} (it names patients: protect it like the records)",
                        p.display()
                    );
                }
            }
            Ok(())
        }
    }
}
