//! The `velo` binary: parses arguments, starts logging, calls one library entry point and turns
//! its result into an exit code (0 success, 1 job failure, 2 bad usage or configuration).
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the binary talks to the terminal"
)]

#[macro_use]
mod commands;
mod init;
mod logging;
mod models;
mod progress;
mod reference;
mod serve;
mod worker;

use std::process::ExitCode;

use clap::Parser;

use crate::commands::{Cli, Failure};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match commands::dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let (error, code) = match failure {
                Failure::Usage(error) => (error, 2),
                Failure::Job(error) => (error, 1),
                Failure::Interrupted => return ExitCode::from(130),
            };
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(code)
        }
    }
}
