//! `chartvault`: the command-line tool of the chartvault encrypted record store.
//!
//! Parses the command line ([`args`]), runs the command ([`commands`]) and turns an
//! error into `error: <message>` on standard error with a non-zero exit code
//! (see [`error`] for the codes).

mod args;
mod commands;
mod demo;
mod error;
mod output;
mod session_opts;
mod unlock;

use std::process::ExitCode;

use clap::Parser;

/// The command's allocator (default feature `mimalloc`; see cli/Cargo.toml).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.code)
        }
    }
}
