//! The `velo` binary: parses arguments, starts logging, calls one library entry point and turns
//! its result into an exit code (0 success, 1 job failure, 2 bad usage or configuration).
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the binary talks to the terminal"
)]

mod commands;
mod reference;

use std::process::ExitCode;

use clap::Parser;

use crate::commands::{Cli, Failure};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match commands::dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let (error, code) = match failure {
                Failure::Usage(error) => (error, 2),
                Failure::Job(error) => (error, 1),
            };
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(code)
        }
    }
}

/// Logs to stderr, filtered by `VELO_LOG` (a tracing filter such as `debug` or `velo_io=trace`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VELO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
