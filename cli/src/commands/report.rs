//! `report accounting|access|break-glass`: reports a privacy officer can hand to an
//! auditor.

use std::path::Path;

use chartvault::audit::report::{AccessLine, DisclosureLine};

use super::{close, open_for_audit};
use crate::args::{Format, ReportCommand};
use crate::error::CliResult;
use crate::output::{self, Table, truncate};

fn disclosure_table(lines: &[DisclosureLine]) -> Table {
    let mut t = Table::new(&["DATE", "RECIPIENT", "PURPOSE", "DESCRIPTION", "DOCS", "DISCLOSED BY"]);
    for l in lines {
        t.row(vec![
            l.date.clone(),
            truncate(&l.recipient, 40),
            l.purpose.clone(),
            truncate(&l.description, 50),
            l.documents.to_string(),
            l.user.clone(),
        ]);
    }
    t
}

fn access_table(lines: &[AccessLine]) -> Table {
    let mut t =
        Table::new(&["TIME", "USER", "ROLES", "ORGANIZATION", "PURPOSE", "ACTION", "OUTCOME", "DOCS", "BREAK-GLASS"]);
    for l in lines {
        t.row(vec![
            l.time.clone(),
            l.user.clone(),
            l.roles.join("/"),
            l.organization.clone(),
            l.purpose.clone(),
            l.action.clone(),
            l.outcome.clone(),
            l.documents.to_string(),
            if l.break_glass { "YES".into() } else { String::new() },
        ]);
    }
    t
}

fn generated_by(path: &Path, user: &str) {
    println!("vault: {}    prepared by: {user}", path.display());
}

/// Runs a `report` subcommand.
pub fn run(key_file: Option<&Path>, c: ReportCommand) -> CliResult<()> {
    match c {
        ReportCommand::Accounting(a) => {
            let (vault, _) = open_for_audit(&a.vault, key_file)?;
            let s = a.session.open(&vault)?;
            let r = s.accounting_of_disclosures(&a.patient)?;
            drop(s);
            close(vault)?;
            if a.format == Format::Json {
                return output::print_value(serde_json::to_value(&r));
            }
            println!("ACCOUNTING OF DISCLOSURES (45 CFR 164.528)");
            println!("patient: {}", r.patient);
            println!("period:  {} to {}", r.from, r.generated);
            generated_by(&a.vault, &a.session.user);
            println!();
            if r.accountable.is_empty() {
                println!("No disclosures that require accounting were made in this period.");
            } else {
                println!("Disclosures ({}):", r.accountable.len());
                disclosure_table(&r.accountable).print(2);
            }
            println!();
            if r.exempt.is_empty() {
                println!("No exempt disclosures (treatment, payment, operations, to the patient) were recorded.");
            } else {
                println!("Exempt from accounting, listed for completeness ({}):", r.exempt.len());
                disclosure_table(&r.exempt).print(2);
            }
            Ok(())
        }
        ReportCommand::Access(a) => {
            let (vault, _) = open_for_audit(&a.vault, key_file)?;
            let s = a.session.open(&vault)?;
            let r = s.access_report(&a.patient)?;
            drop(s);
            close(vault)?;
            if a.format == Format::Json {
                return output::print_value(serde_json::to_value(&r));
            }
            println!("ACCESS REPORT: who accessed the records of patient {}", r.patient);
            generated_by(&a.vault, &a.session.user);
            println!();
            if r.accesses.is_empty() {
                println!("No recorded access to this patient's records.");
            } else {
                let denied = r.accesses.iter().filter(|l| l.outcome == "denied").count();
                let bg = r.accesses.iter().filter(|l| l.break_glass).count();
                println!("{} access(es), {denied} denied, {bg} under break-glass:", r.accesses.len());
                access_table(&r.accesses).print(2);
            }
            Ok(())
        }
        ReportCommand::BreakGlass(a) => {
            let (vault, _) = open_for_audit(&a.vault, key_file)?;
            let s = a.session.open(&vault)?;
            let r = s.break_glass_report()?;
            drop(s);
            close(vault)?;
            if a.format == Format::Json {
                return output::print_value(serde_json::to_value(&r));
            }
            println!("BREAK-GLASS REVIEW: emergency access requests and their use");
            generated_by(&a.vault, &a.session.user);
            println!();
            if r.requests.is_empty() {
                println!("No break-glass requests recorded.");
            } else {
                println!("Requests ({}):", r.requests.len());
                let mut t = Table::new(&["TIME", "USER", "PATIENT", "OUTCOME", "REASON GIVEN"]);
                for l in &r.requests {
                    t.row(vec![
                        l.time.clone(),
                        l.user.clone(),
                        l.patient.clone(),
                        l.outcome.clone(),
                        truncate(&l.reason, 60),
                    ]);
                }
                t.print(2);
            }
            println!();
            if r.accesses.is_empty() {
                println!("No accesses were made under break-glass.");
            } else {
                println!("Accesses under break-glass ({}), each to be reviewed:", r.accesses.len());
                access_table(&r.accesses).print(2);
            }
            Ok(())
        }
    }
}
