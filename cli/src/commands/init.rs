//! `init`: create a vault.

use std::path::Path;

use chartvault::access::Policy;
use chartvault::{Vault, VaultOptions};

use crate::args::{InitArgs, KdfProfile};
use crate::error::{CliError, CliResult, io_error};
use crate::unlock::{self, PASSPHRASE_ENV};

/// Creates the vault at `a.vault` unlocked by the key file, `CHARTVAULT_PASSPHRASE`,
/// or a passphrase typed twice.
pub fn run(key_file: Option<&Path>, a: InitArgs) -> CliResult<()> {
    if a.vault.exists() {
        return Err(CliError::new(format!("{} already exists; choose another path", a.vault.display())));
    }
    let initial_policy = match &a.policy {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| io_error("read", p, &e))?;
            Policy::from_json(&text)?
        }
        None => Policy::hospital_default(),
    };
    let secret = unlock::new_secret(key_file, PASSPHRASE_ENV, "--key-file", "a passphrase for the new vault")?;
    if a.kdf == KdfProfile::Test {
        eprintln!("warning: --kdf test makes passphrases cheap to guess; use it for automated tests only");
    }
    let opts = VaultOptions { kdf: a.kdf.params(), initial_policy, ..VaultOptions::default() };
    let policy_name = opts.initial_policy.name.clone();
    let vault = Vault::create(&a.vault, secret.vault_key(), opts)?;
    super::close(vault)?;
    let keyring = chartvault::store::keyring_path(&a.vault);
    println!("created vault {}", a.vault.display());
    println!("  keyring    {} (keep it beside the data file, and back up both together)", keyring.display());
    println!("  unlocked by {} (key slot 0)", secret.kind());
    println!("  policy     {policy_name}, version 1");
    Ok(())
}
