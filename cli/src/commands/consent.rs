//! `consent set|show`: a patient's rules (consent restrictions, VIP, self-pay,
//! 42 CFR Part 2 consents).
//!
//! In the JSON, `self_pay` lists document ids as 32-hex-digit strings.

use std::path::Path;

use chartvault::access::PatientRules;
use serde_json::Value as J;

use super::{close, open_vault};
use crate::args::ConsentCommand;
use crate::error::{CliError, CliResult, io_error, json_error, json_shape_error};
use crate::output;

/// Parses patient rules JSON without echoing values in errors.
pub fn parse_rules(text: &str) -> CliResult<PatientRules> {
    let v: J = serde_json::from_str(text).map_err(|e| json_error(&e))?;
    if !v.is_object() {
        return Err(CliError::new("patient rules must be a JSON object"));
    }
    let r: PatientRules = serde_json::from_value(v).map_err(|e| json_shape_error(&e).context("patient rules"))?;
    if r.patient.is_empty() {
        return Err(CliError::new("patient rules need a \"patient\""));
    }
    Ok(r)
}

/// Runs a `consent` subcommand.
pub fn run(key_file: Option<&Path>, c: ConsentCommand) -> CliResult<()> {
    match c {
        ConsentCommand::Set { vault: path, file, session } => {
            let text =
                zeroize::Zeroizing::new(std::fs::read_to_string(&file).map_err(|e| io_error("read", &file, &e))?);
            let rules = parse_rules(&text)?;
            let vault = open_vault(&path, key_file, false)?;
            let s = session.open(&vault)?;
            let summary = format!(
                "vip {}, {} restriction(s), {} self-pay document(s), {} Part 2 consent(s)",
                if rules.vip { "yes" } else { "no" },
                rules.restrictions.len(),
                rules.self_pay.len(),
                rules.part2_consents.len()
            );
            let patient = rules.patient.clone();
            s.set_patient_rules(rules)?;
            drop(s);
            close(vault)?;
            println!("recorded rules for patient {patient}: {summary}");
            Ok(())
        }
        ConsentCommand::Show { vault: path, patient, session } => {
            let vault = open_vault(&path, key_file, false)?;
            let s = session.open(&vault)?;
            let rules = s.patient_rules(&patient)?;
            drop(s);
            close(vault)?;
            match rules {
                None => {
                    eprintln!("no rules recorded for this patient (the policy alone applies)");
                    Ok(())
                }
                Some(r) => {
                    let v = serde_json::to_value(&r).map_err(|e| CliError::new(format!("cannot format JSON: {e}")))?;
                    output::print_json(&v)
                }
            }
        }
    }
}
