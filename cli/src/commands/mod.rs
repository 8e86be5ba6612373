//! The commands, one module per command group, and what they share: opening a vault,
//! reading JSON input, parsing document ids.

pub mod audit;
pub mod break_glass;
pub mod consent;
pub mod disclose;
pub mod documents;
pub mod init;
pub mod keys;
pub mod policy;
pub mod report;
pub mod verify;

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use chartvault::{DocumentId, Vault, VaultOptions};
use zeroize::Zeroizing;

use crate::args::{Cli, Command};
use crate::error::{CliError, CliResult, io_error};
use crate::unlock;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> CliResult<()> {
    let kf = cli.key_file.as_deref();
    match cli.command {
        Command::Init(a) => init::run(kf, a),
        Command::Put(a) => documents::put(kf, a),
        Command::Update(a) => documents::update(kf, a),
        Command::Get(a) => documents::get(kf, a),
        Command::History(a) => documents::history(kf, a),
        Command::Chart(a) => documents::chart(kf, a),
        Command::Query(a) => documents::query(kf, a),
        Command::Attachment(a) => documents::attachment(kf, a),
        Command::Verify(a) => verify::run(kf, a),
        Command::Keys(c) => keys::run(kf, c),
        Command::Policy(c) => policy::run(kf, c),
        Command::Consent(c) => consent::run(kf, c),
        Command::BreakGlass(a) => break_glass::run(kf, a),
        Command::Disclose(a) => disclose::run(kf, a),
        Command::Audit(c) => audit::run(kf, c),
        Command::Report(c) => report::run(kf, c),
        Command::Demo(a) => {
            if kf.is_some() {
                return Err(CliError::usage(
                    "demo uses a passphrase (CHARTVAULT_PASSPHRASE or the demo passphrase), not --key-file",
                ));
            }
            crate::demo::run(a)
        }
    }
}

/// Checks that `path` looks like an existing vault before asking for a secret.
pub fn check_exists(path: &Path) -> CliResult<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => {
            Err(CliError::new(format!("{} is not a file (give the path of the vault's data file)", path.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(CliError::new(format!(
            "no vault at {} (create one with `chartvault init {}`)",
            path.display(),
            path.display()
        ))),
        Err(e) => Err(io_error("open", path, &e)),
    }
}

/// Unlocks and opens the vault at `path`.
pub fn open_vault(path: &Path, key_file: Option<&Path>, read_only: bool) -> CliResult<Vault> {
    open_vault_keeping_secret(path, key_file, read_only).map(|(v, _)| v)
}

/// Unlocks and opens the vault at `path`, and returns the secret too (to reopen it).
pub fn open_vault_keeping_secret(
    path: &Path,
    key_file: Option<&Path>,
    read_only: bool,
) -> CliResult<(Vault, unlock::Secret)> {
    check_exists(path)?;
    let secret = unlock::existing(key_file, path)?;
    let opts = VaultOptions { read_only, ..VaultOptions::default() };
    let vault = Vault::open(path, secret.vault_key(), opts)?;
    Ok((vault, secret))
}

/// Whether every byte of the file at `path` from `from` on is zero.
fn only_zeros_after(path: &Path, from: u64) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else { return false };
    if f.seek(SeekFrom::Start(from)).is_err() {
        return false;
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match f.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) if buf[..n].iter().all(|&b| b == 0) => {}
            Ok(_) => return false,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// Closes a vault after a write that failed part-way. Pending audit entries (such as
/// a denial) are made durable. A batch that streamed a large attachment may have
/// written uncommitted bytes past the last commit before it failed; they are never
/// read, but `verify` would report them as a torn tail, so the vault is reopened
/// read-write, which discards them. All sessions on `vault` must be dropped first.
/// (Only zeros after the last commit are the writer's zero reserve: nothing to do.)
pub fn close_after_failed_write(path: &Path, secret: &unlock::Secret, vault: Vault) {
    if let Err(e) = vault.flush_audit() {
        eprintln!("warning: could not record pending audit entries: {e}");
    }
    let committed_end = vault.store().read_state().head.end;
    drop(vault);
    if !only_zeros_after(path, committed_end) {
        match Vault::open(path, secret.vault_key(), VaultOptions::default()).and_then(Vault::close) {
            Ok(()) => {}
            Err(e) => eprintln!(
                "warning: uncommitted bytes of the failed write remain at the end of the file ({e}); the next read-write open discards them"
            ),
        }
    }
}

/// Opens a vault read-write for an audit command; if the log is damaged (which a
/// read-write open refuses), opens it read-only instead so the damage can still be
/// examined. Returns the vault and whether it is read-only.
pub fn open_for_audit(path: &Path, key_file: Option<&Path>) -> CliResult<(Vault, bool)> {
    check_exists(path)?;
    let secret = unlock::existing(key_file, path)?;
    match Vault::open(path, secret.vault_key(), VaultOptions::default()) {
        Ok(v) => Ok((v, false)),
        Err(chartvault::Error::Corrupt { offset, .. }) => {
            eprintln!(
                "warning: the log is damaged at byte offset {offset}; opened read-only (this audit access cannot be recorded)"
            );
            let opts = VaultOptions { read_only: true, ..VaultOptions::default() };
            Ok((Vault::open(path, secret.vault_key(), opts)?, true))
        }
        Err(e) => Err(e.into()),
    }
}

/// Makes pending audit entries durable and closes the vault.
pub fn close(vault: Vault) -> CliResult<()> {
    vault.close().map_err(|e| CliError::from(e).context("closing the vault"))
}

/// Parses a document id (32 hex digits).
pub fn parse_id(s: &str) -> CliResult<DocumentId> {
    DocumentId::parse(s).map_err(|_| CliError::usage("a document id is 32 hexadecimal digits"))
}

/// JSON input text (wiped when dropped) and the folder relative paths in it refer to.
pub struct Input {
    /// The text.
    pub text: Zeroizing<String>,
    /// Folder of the input file (`None` for standard input: the current folder).
    pub base: Option<PathBuf>,
}

/// Reads JSON input from `file`, or from standard input for `-` or no file. With no
/// file and a terminal on standard input, fails instead of waiting for typing.
pub fn read_input(file: Option<&Path>) -> CliResult<Input> {
    match file {
        Some(p) if p.as_os_str() != "-" => {
            let text = std::fs::read_to_string(p).map_err(|e| io_error("read", p, &e))?;
            Ok(Input { text: Zeroizing::new(text), base: p.parent().map(Path::to_path_buf) })
        }
        _ => {
            if file.is_none() && std::io::stdin().is_terminal() {
                return Err(CliError::usage(
                    "no input: give a JSON FILE, or `-` to type it on standard input, or pipe it in",
                ));
            }
            let mut text = Zeroizing::new(String::new());
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| CliError::new(format!("cannot read standard input: {e}")))?;
            Ok(Input { text, base: None })
        }
    }
}

/// Parses input text as JSON without echoing any of it in an error.
pub fn parse_json(input: &Input) -> CliResult<serde_json::Value> {
    serde_json::from_str(&input.text).map_err(|e| crate::error::json_error(&e))
}
