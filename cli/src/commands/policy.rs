//! `policy show|load`: the access policy.

use std::path::Path;

use chartvault::access::Policy;

use super::{close, open_vault};
use crate::args::PolicyCommand;
use crate::error::{CliResult, io_error};

/// Runs a `policy` subcommand.
pub fn run(key_file: Option<&Path>, c: PolicyCommand) -> CliResult<()> {
    match c {
        PolicyCommand::Show { vault: path, session } => {
            let vault = open_vault(&path, key_file, false)?;
            let s = session.open(&vault)?;
            let p = s.policy()?;
            drop(s);
            close(vault)?;
            println!("{}", p.to_json());
            Ok(())
        }
        PolicyCommand::Load { vault: path, file, session } => {
            let text = std::fs::read_to_string(&file).map_err(|e| io_error("read", &file, &e))?;
            let policy = Policy::from_json(&text)?;
            let vault = open_vault(&path, key_file, false)?;
            let s = session.open(&vault)?;
            let name = policy.name.clone();
            let grants = policy.grants.len();
            let version = s.set_policy(policy)?;
            drop(s);
            close(vault)?;
            println!("policy {name} ({grants} grants) is now in force as version {version}");
            Ok(())
        }
    }
}
