//! `verify`: a read-only check of the whole file.

use std::path::Path;

use serde_json::json;

use chartvault::{Vault, VaultOptions};

use super::check_exists;
use crate::args::{Format, VerifyArgs};
use crate::error::{CliError, CliResult};
use crate::output;
use crate::unlock;

/// Lowercase hex of `b`.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Whether an engine error means the file itself is damaged (rather than, say, a
/// wrong key or a missing file).
fn is_damage(e: &chartvault::Error) -> bool {
    matches!(
        e,
        chartvault::Error::HeaderDamaged
            | chartvault::Error::Corrupt { .. }
            | chartvault::Error::Integrity { .. }
            | chartvault::Error::AuditBroken { .. }
    )
}

/// Opens the vault read-only, verifies every frame, commit, MAC, record, label group
/// and attachment chunk, and prints what was checked. Exit 3 unless clean.
pub fn run(key_file: Option<&Path>, a: VerifyArgs) -> CliResult<()> {
    check_exists(&a.vault)?;
    let secret = unlock::existing(key_file, &a.vault)?;
    let opts = VaultOptions { read_only: true, ..VaultOptions::default() };
    let vault = Vault::open(&a.vault, secret.vault_key(), opts)
        .map_err(|e| if is_damage(&e) { CliError::not_clean(e.to_string()) } else { CliError::from(e) })?;
    let rep = vault
        .verify()
        .map_err(|e| if is_damage(&e) { CliError::not_clean(e.to_string()) } else { CliError::from(e) })?;
    let open = vault.open_report().clone();
    let (commit, chain) = vault.head();
    let mut problems: Vec<(u64, String)> = rep.problems.clone();
    if let Some((off, reason)) = &open.corrupt
        && !problems.iter().any(|(o, _)| o == off)
    {
        problems.push((*off, format!("at open: {reason}")));
    }
    problems.sort_by_key(|p| p.0);
    let clean = rep.is_clean() && problems.is_empty() && !open.damaged_header;
    match a.format {
        Format::Json => output::print_json(&json!({
            "vault": a.vault.display().to_string(),
            "clean": clean,
            "bytes": rep.bytes,
            "reserve_bytes": rep.reserve,
            "frames": rep.frames,
            "commits": rep.commits,
            "records": rep.records,
            "label_groups": rep.groups,
            "attachment_chunks": rep.attachment_chunks,
            "other_frames": rep.other_frames,
            "erased_records": rep.erased_records,
            "torn_tail": rep.torn_tail.map(|(off, len, why)| json!({"offset": off, "bytes": len, "reason": why})),
            "damaged_header_copy": open.damaged_header,
            "head": {"commit": commit, "chain": hex(&chain)},
            "problems": problems.iter().map(|(o, p)| json!({"offset": o, "problem": p})).collect::<Vec<_>>(),
        }))?,
        Format::Table => {
            println!("verified {} (opened read-only)", a.vault.display());
            let line = |k: &str, v: String| println!("  {k:<20} {v}");
            line("log bytes", rep.bytes.to_string());
            line("zero reserve", format!("{} bytes after the log end", rep.reserve));
            line("frames", format!("{} (checksums verified)", rep.frames));
            line("commits", format!("{} (hash chain and MAC verified)", rep.commits));
            line("records", format!("{} document versions decrypted and checked", rep.records));
            line("label groups", format!("{} authenticated", rep.groups));
            line("attachment chunks", format!("{} authenticated", rep.attachment_chunks));
            line("other frames", format!("{} (audit, policy, disclosures, ...)", rep.other_frames));
            line(
                "erased records",
                format!("{} (patient keys destroyed by design; not decryptable)", rep.erased_records),
            );
            line(
                "torn tail",
                match rep.torn_tail {
                    None => "none".into(),
                    Some((off, len, why)) => {
                        format!("{len} uncommitted bytes at offset {off} ({why}); a read-write open discards them")
                    }
                },
            );
            line(
                "header copies",
                if open.damaged_header { "one copy DAMAGED (the other was used)".into() } else { "both valid".into() },
            );
            line("head", format!("commit {commit}, chain {}", hex(&chain)));
            if problems.is_empty() {
                line("problems", "none".into());
            } else {
                line("problems", problems.len().to_string());
                for (off, p) in &problems {
                    println!("    at byte offset {off}: {p}");
                }
            }
            println!("result: {}", if clean { "CLEAN" } else { "NOT CLEAN" });
        }
    }
    drop(vault);
    if clean {
        Ok(())
    } else {
        let n = problems.len() + usize::from(rep.torn_tail.is_some()) + usize::from(open.damaged_header);
        Err(CliError::not_clean(format!("the vault is not clean: {n} finding(s); see the report above")))
    }
}
