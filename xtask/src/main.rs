//! `cargo xtask`: velo's development automation.
//!
//! Every task is idempotent and runs from the workspace root whatever the current directory.
//! [`flags`] declares the command line; this file only dispatches to one module per task.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "xtask reports to the terminal"
)]

mod bench;
mod build;
mod check;
mod clean;
mod codegen;
mod commits;
mod containers;
mod deps;
mod deps_update;
mod docs;
mod flags;
mod install;
mod layering;
mod mlflow;
mod packages;
mod project;
mod python;
mod suite;

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context as _, Result, bail};
use clap::Parser as _;

use flags::{Commits, Containers, Deps, Mlflow, Task};

fn main() -> ExitCode {
    let flags = flags::Xtask::parse();
    let result = match flags.task {
        Task::Install => install::install(),
        Task::Check => check::check(),
        Task::Test => suite::test(),
        Task::Ci => check::check().and_then(|()| suite::test()),
        Task::Fmt => cargo(&["fmt", "--all"]),
        Task::Codegen => codegen::codegen(),
        Task::Docs => docs::docs(),
        Task::Clean => clean::clean(),
        Task::Project { csv } => project::project(csv.as_deref()),
        Task::Layering => layering::check(&root()),
        Task::Commits(Commits::Check { base }) => commits::check(&root(), base.as_deref()),
        Task::Commits(Commits::Changelog) => commits::changelog(&root()),
        Task::Commits(Commits::Bump { dry_run }) => commits::bump(&root(), dry_run),
        Task::Containers(Containers::Build { binary }) => {
            containers::build(binary.as_deref()).map(|_| ())
        }
        Task::Containers(Containers::Run { args }) => containers::run_velo(&args),
        Task::Containers(Containers::Check { binary }) => containers::check(binary.as_deref()),
        Task::Deps(Deps::Map { timings }) => deps::map(timings),
        Task::Deps(Deps::Check) => deps::check(),
        Task::Deps(Deps::Update {
            krate,
            breaking,
            commit,
            gate,
        }) => deps_update::update(
            &root(),
            &deps_update::Request {
                krate,
                breaking,
                commit,
                gate,
            },
        )
        .map(|_| ()),
        Task::Mlflow(Mlflow::Ui(options)) => {
            mlflow::serve(options.store.as_deref(), options.port, false)
        }
        Task::Mlflow(Mlflow::Serve(options)) => {
            mlflow::serve(options.store.as_deref(), options.port, true)
        }
        Task::Mlflow(Mlflow::Doctor { store }) => mlflow::doctor(store.as_deref()),
        Task::Packages { allow_dirty } => packages::packages(allow_dirty),
        Task::Bench(options) => bench::bench(&options),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (xtask's manifest lives one level below it).
fn root() -> PathBuf {
    let manifest =
        env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from("xtask"), PathBuf::from);
    manifest
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The workspace's version (`[workspace.package] version` in the root manifest).
fn workspace_version() -> Result<String> {
    let manifest = root().join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("cannot read {}", manifest.display()))?;
    let section = text
        .split("[workspace.package]")
        .nth(1)
        .context("the root manifest has no [workspace.package]")?;
    section
        .lines()
        .take_while(|line| !line.starts_with('['))
        .find_map(|line| {
            let (key, value) = line.split_once('=')?;
            (key.trim() == "version").then(|| value.trim().trim_matches('"').to_owned())
        })
        .context("[workspace.package] has no version")
}

/// `cargo metadata --format-version 1 --locked` of the workspace with `args` (such as
/// `--no-deps`), parsed.
fn cargo_metadata(args: &[&str]) -> Result<serde_json::Value> {
    let output = Command::new(cargo_bin())
        .current_dir(root())
        .args(["metadata", "--format-version", "1", "--locked"])
        .args(args)
        .output()
        .context("cannot run cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    serde_json::from_slice(&output.stdout).context("cannot parse cargo metadata")
}

/// The cargo that runs this task.
fn cargo_bin() -> String {
    env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// Runs a command in the workspace root, failing with its name if it fails.
fn run(command: &mut Command) -> Result<()> {
    command.current_dir(root());
    let shown = format!("{command:?}");
    eprintln!("xtask: $ {shown}");
    let status = command
        .status()
        .with_context(|| format!("cannot start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

fn cargo(args: &[&str]) -> Result<()> {
    run(Command::new(cargo_bin()).args(args))
}

/// True when `program --version` runs.
fn has(program: &str, subcommand: Option<&str>) -> bool {
    let mut command = Command::new(program);
    if let Some(subcommand) = subcommand {
        command.arg(subcommand);
    }
    command
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}
