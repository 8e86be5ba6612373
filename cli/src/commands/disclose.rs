//! `disclose`: record a release of information in the disclosure ledger.

use std::path::Path;

use chartvault::DisclosureRequest;

use super::{close, open_vault, parse_id};
use crate::args::DiscloseArgs;
use crate::error::CliResult;

/// Records the disclosure (checked against the policy's `disclose` grants).
pub fn run(key_file: Option<&Path>, a: DiscloseArgs) -> CliResult<()> {
    let documents = a.docs.iter().map(|d| parse_id(d)).collect::<CliResult<Vec<_>>>()?;
    let vault = open_vault(&a.vault, key_file, false)?;
    let s = a.session.open(&vault)?;
    let purpose = s.principal().purpose;
    let n = documents.len();
    s.record_disclosure(&DisclosureRequest {
        patient: a.patient.clone(),
        recipient: a.recipient,
        description: a.description,
        documents,
    })?;
    drop(s);
    close(vault)?;
    println!(
        "recorded disclosure of {n} document(s) of patient {} for purpose {} ({})",
        a.patient,
        purpose.code(),
        if purpose.accounting_exempt() {
            "exempt from the accounting of disclosures, listed there as exempt"
        } else {
            "appears in the patient's accounting of disclosures"
        }
    );
    Ok(())
}
