//! Where the secret that unlocks a vault comes from, and how it is kept.
//!
//! In order of precedence:
//! 1. `--key-file FILE`: a raw 32-byte key (for example exported from a KMS or HSM),
//!    stored either as exactly 32 raw bytes or as 64 hexadecimal characters
//!    (surrounding whitespace is ignored);
//! 2. the environment variable `CHARTVAULT_PASSPHRASE`;
//! 3. an interactive prompt on the terminal (input is not echoed).
//!
//! When none of these is available (no key file, no variable, and standard input is
//! not a terminal) the command fails at once rather than waiting for input that will
//! never come. Secrets are held in zeroizing buffers and are never printed.

use std::io::IsTerminal;
use std::path::Path;

use chartvault::{SecretKey, VaultKey};
use zeroize::Zeroizing;

use crate::error::{CliError, CliResult, io_error};

/// Environment variable holding the passphrase of the vault.
pub const PASSPHRASE_ENV: &str = "CHARTVAULT_PASSPHRASE";
/// Environment variable holding a new passphrase (`keys add`).
pub const NEW_PASSPHRASE_ENV: &str = "CHARTVAULT_NEW_PASSPHRASE";

/// A secret that unlocks a key slot. Wiped from memory when dropped.
pub enum Secret {
    /// A passphrase, stretched by the vault with Argon2id.
    Passphrase(Zeroizing<Vec<u8>>),
    /// A raw 32-byte key.
    Raw(SecretKey),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Secret::Passphrase(_) => "Secret::Passphrase(<redacted>)",
            Secret::Raw(_) => "Secret::Raw(<redacted>)",
        })
    }
}

impl Secret {
    /// The form the engine takes.
    pub fn vault_key(&self) -> VaultKey<'_> {
        match self {
            Secret::Passphrase(p) => VaultKey::Passphrase(p),
            Secret::Raw(k) => VaultKey::Raw(k),
        }
    }

    /// "passphrase" or "raw key", for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Secret::Passphrase(_) => "passphrase",
            Secret::Raw(_) => "raw key",
        }
    }
}

/// Reads a raw key file: exactly 32 raw bytes, or 64 hex characters (whitespace trimmed).
pub fn read_key_file(path: &Path) -> CliResult<SecretKey> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| io_error("read key file", path, &e))?);
    warn_if_readable_by_others(path);
    if bytes.len() == SecretKey::LEN {
        return SecretKey::from_slice(&bytes).ok_or_else(|| CliError::new("key file: not a 32-byte key"));
    }
    let trimmed = bytes.trim_ascii();
    if trimmed.len() == 2 * SecretKey::LEN && trimmed.iter().all(u8::is_ascii_hexdigit) {
        let mut raw = Zeroizing::new([0u8; 32]);
        for (i, pair) in trimmed.chunks_exact(2).enumerate() {
            raw[i] = (hex_val(pair[0]) << 4) | hex_val(pair[1]);
        }
        return Ok(SecretKey::from_bytes(*raw));
    }
    Err(CliError::new(format!(
        "key file {} must hold a 32-byte key: exactly 32 raw bytes, or 64 hexadecimal characters (it holds {} bytes)",
        path.display(),
        bytes.len()
    )))
}

fn hex_val(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path)
        && m.permissions().mode() & 0o077 != 0
    {
        eprintln!("warning: key file {} is readable by other users; restrict it with chmod 600", path.display());
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

/// Reads a secret from the environment variable `var` (`None` if unset; an error if empty).
pub fn from_env(var: &str) -> CliResult<Option<Zeroizing<Vec<u8>>>> {
    match std::env::var_os(var) {
        None => Ok(None),
        Some(v) => {
            let v = Zeroizing::new(v.into_encoded_bytes());
            if v.is_empty() {
                return Err(CliError::new(format!("{var} is set but empty")));
            }
            Ok(Some(v))
        }
    }
}

fn require_terminal(what: &str, var: &str, file_flag: &str) -> CliResult<()> {
    if std::io::stdin().is_terminal() {
        Ok(())
    } else {
        Err(CliError::new(format!(
            "no {what} given and standard input is not a terminal to ask for one: set {var} or use {file_flag}"
        )))
    }
}

fn prompt(text: &str) -> CliResult<Zeroizing<Vec<u8>>> {
    let s = Zeroizing::new(
        rpassword::prompt_password(text).map_err(|e| CliError::new(format!("cannot read the passphrase: {e}")))?,
    );
    Ok(Zeroizing::new(s.as_bytes().to_vec()))
}

/// The secret that unlocks an existing vault.
pub fn existing(key_file: Option<&Path>, vault: &Path) -> CliResult<Secret> {
    if let Some(f) = key_file {
        return Ok(Secret::Raw(read_key_file(f)?));
    }
    if let Some(p) = from_env(PASSPHRASE_ENV)? {
        return Ok(Secret::Passphrase(p));
    }
    require_terminal("passphrase", PASSPHRASE_ENV, "--key-file")?;
    let p = prompt(&format!("Passphrase for {}: ", vault.display()))?;
    if p.is_empty() {
        return Err(CliError::new("empty passphrase"));
    }
    Ok(Secret::Passphrase(p))
}

/// A new secret for a new vault or key slot: from a key file, from `env_var`, or
/// typed twice at a prompt.
pub fn new_secret(key_file: Option<&Path>, env_var: &str, file_flag: &str, what: &str) -> CliResult<Secret> {
    if let Some(f) = key_file {
        return Ok(Secret::Raw(read_key_file(f)?));
    }
    let p = match from_env(env_var)? {
        Some(p) => p,
        None => {
            require_terminal(what, env_var, file_flag)?;
            let a = prompt(&format!("Enter {what}: "))?;
            let b = prompt(&format!("Repeat {what}: "))?;
            if *a != *b {
                return Err(CliError::new("the passphrases do not match"));
            }
            a
        }
    };
    if p.is_empty() {
        return Err(CliError::new("empty passphrase"));
    }
    if p.len() < 12 {
        eprintln!("warning: the passphrase is short (under 12 characters); prefer a longer one, or a raw key file");
    }
    Ok(Secret::Passphrase(p))
}
