//! `keys list|add|remove`: the key slots that unlock a vault.

use std::path::Path;

use chartvault::format::header::Unlock;

use super::{close, open_vault};
use crate::args::KeysCommand;
use crate::error::CliResult;
use crate::output::Table;
use crate::unlock::{self, NEW_PASSPHRASE_ENV, Secret};

fn as_unlock(s: &Secret) -> Unlock<'_> {
    match s {
        Secret::Passphrase(p) => Unlock::Passphrase(p),
        Secret::Raw(k) => Unlock::RawKey(k),
    }
}

/// Runs a `keys` subcommand.
pub fn run(key_file: Option<&Path>, c: KeysCommand) -> CliResult<()> {
    match c {
        KeysCommand::List { vault: path } => {
            // Listing shows only slot numbers and kinds: it needs the key, not a session.
            super::check_exists(&path)?;
            let secret = unlock::existing(key_file, &path)?;
            let opts = chartvault::VaultOptions { read_only: true, ..Default::default() };
            let vault = chartvault::Vault::open(&path, secret.vault_key(), opts)?;
            let mine = vault.store().slot_of(&as_unlock(&secret)).ok();
            let mut t = Table::new(&["SLOT", "KIND", ""]);
            for (i, kind) in vault.store().slots() {
                t.row(vec![
                    i.to_string(),
                    kind.to_string(),
                    if Some(i) == mine { "(unlocked this time)".into() } else { String::new() },
                ]);
            }
            t.print(0);
            Ok(())
        }
        KeysCommand::Add { vault: path, new_key_file, kdf, session } => {
            let vault = open_vault(&path, key_file, false)?;
            let s = session.open(&vault)?;
            let new = unlock::new_secret(
                new_key_file.as_deref(),
                NEW_PASSPHRASE_ENV,
                "--new-key-file",
                "the new passphrase",
            )?;
            let slot = s.add_key_slot(new.vault_key(), kdf.params())?;
            drop(s);
            close(vault)?;
            println!("added key slot {slot} ({})", new.kind());
            Ok(())
        }
        KeysCommand::Remove { vault: path, slot, session } => {
            let vault = open_vault(&path, key_file, false)?;
            let s = session.open(&vault)?;
            s.remove_key_slot(slot)?;
            drop(s);
            close(vault)?;
            println!("removed key slot {slot}; the secret it held no longer opens this vault");
            Ok(())
        }
    }
}
