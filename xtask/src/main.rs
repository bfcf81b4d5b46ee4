//! `cargo xtask`: velo's development automation.
//!
//! Every task is idempotent and runs from the workspace root whatever the current directory.
//! Tasks: `install`, `check`, `test`, `ci`, `fmt`, `codegen`, `docs`, `clean`, `project`,
//! `layering`, `bench` (see `USAGE`).
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "xtask reports to the terminal"
)]

mod bench;
mod chain_bench;
mod commits;
mod kafka_bench;
mod layering;
mod leaderboard_bench;
mod monitoring_bench;
mod python;
mod serve_bench;
mod tracking_bench;

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context as _, Result, bail};

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  install   install what the tests need, once: rustup components, cargo-nextest, cargo-deny,
            the Python venv (.venv, or $VELO_VENV) with the pinned interop packages, and (as
            root, with apt-get) Xvfb, dbus, dunst and libnotify-bin for the desktop alert test
            and Chromium for the report rendering test;
            the tansu Kafka broker (built once into .tools, or $VELO_TOOLS)
  check     cargo fmt --check, clippy -D warnings, cargo deny (bans licenses sources),
            the crate layering, Conventional Commits since main and the freshness of
            generated files
  test      install what is missing, then run the whole test suite (unit, integration,
            doc tests and tests against real services)
  ci        check, then test (what .ci/run runs)
  fmt       format the workspace
  codegen   regenerate docs/config.schema.json and the README's config reference
  docs      build the API documentation (warnings are errors)
  clean     remove build outputs and local run artefacts (target, mlruns, outputs)
  project   run the whole lifecycle on the embedded default: create data/ when it holds no
            dataset (`--csv PATH` imports a UCI-style CSV, otherwise `velo data synth`), then
            `velo run` each job config in order (tuning .. explanations)
  layering  check that crate dependencies point one way (core <- io, models <- jobs <- cli)
  commits   check [BASE]: every commit since BASE (default: the merge base with main) is a
            Conventional Commit (`type(scope)!: description`), each offender named
  bench     run the criterion benches; with --reference [--runs N] [--data-dir DIR], run
            velo and ../shared/bench/sklearn_baseline.py (as shipped and with --n-jobs -1)
            side by side on the same machine and print the ratios, then the tracking comparison
            with MLflow's Python client (--tracking: only that); --chain [--package PATH] runs
            the six jobs of the reference package (a checkout of fmind/mlops-python-package,
            default ../mlops-python-package or $VELO_REFERENCE_PACKAGE, installed into
            .venv-reference or $VELO_REFERENCE_VENV) and velo's, job by job, and prints wall time
            and peak memory of each and of the chain; --serve loads `velo serve` and
            `mlflow models serve` (same forest, same bodies) with wrk and prints requests/s and
            latencies for 1-row and 1000-row requests; --kafka runs the Kafka job against the
            tansu broker's own produce+consume throughput; --scenarios times the shipped scenario
            suite on the bike test split and perturbation throughput on 10 M synthetic rows
            against a pandas peer; --stress runs configs/stress.yaml against velo's server and
            `mlflow models serve` side by side; --leaderboard runs configs/benchmark.yaml with
            scikit-learn, LightGBM and XGBoost as peers on the same folds; --monitoring runs the
            monitoring job over a day of logged predictions beside Evidently's drift preset;
            --fuzz SECONDS runs each fuzz target of
            fuzz/ (artifact loaders, request bodies, Kafka records) that long with cargo fuzz
";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let task = args.first().map(String::as_str);
    let result = match task {
        Some("install") => install(),
        Some("check") => check(),
        Some("test") => test(),
        Some("ci") => check().and_then(|()| test()),
        Some("fmt") => cargo(&["fmt", "--all"]),
        Some("codegen") => codegen(),
        Some("docs") => docs(),
        Some("clean") => clean(),
        Some("layering") => layering::check(&root()),
        Some("project") => project(&args[1..]),
        Some("bench") => bench::bench(&args[1..]),
        Some("commits") => match args.get(1).map(String::as_str) {
            Some("check") => commits::check(&root(), &args[2..]),
            _ => Err(anyhow::anyhow!("usage: cargo xtask commits check [BASE]")),
        },
        Some("-h" | "--help" | "help") | None => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(anyhow::anyhow!("unknown task `{other}`\n\n{USAGE}")),
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

fn install() -> Result<()> {
    if has("rustup", None) {
        // Idempotent: rustup does nothing when the components are there.
        run(Command::new("rustup").args(["component", "add", "rustfmt", "clippy"]))?;
    }
    for (subcommand, package) in [("nextest", "cargo-nextest"), ("deny", "cargo-deny")] {
        if has(&cargo_bin(), Some(subcommand)) {
            eprintln!("xtask: {package} is installed");
        } else {
            cargo(&["install", "--locked", package])?;
        }
    }
    python::ensure_venv(&root())?;
    DESKTOP.ensure();
    BROWSER.ensure();
    PROMETHEUS.ensure();
    ensure_tansu()?;
    Ok(())
}

/// The Kafka-compatible broker the tests start (tansu, from crates.io), pinned.
const TANSU: (&str, &str) = ("tansu", "0.6.0");

/// Where tools built for the tests live: `$VELO_TOOLS`, else `.tools` in the workspace.
fn tools_dir() -> PathBuf {
    env::var_os("VELO_TOOLS").map_or_else(|| root().join(".tools"), PathBuf::from)
}

/// Builds tansu into the tools directory once (about 16 minutes on 2 cores; cached after).
fn ensure_tansu() -> Result<()> {
    let (name, version) = TANSU;
    let dir = tools_dir();
    let binary = dir.join("bin").join(name);
    let stamp = dir.join(format!("{name}.version"));
    if binary.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|done| done == version) {
        eprintln!("xtask: {name} {version} is installed in {}", dir.display());
        return Ok(());
    }
    cargo(&[
        "install",
        "--locked",
        "--root",
        &dir.display().to_string(),
        name,
        "--version",
        version,
        // dynostore: the memory engine; libsql: SQLite storage that survives a restart.
        "--features",
        "dynostore,libsql",
    ])?;
    std::fs::write(&stamp, version).with_context(|| format!("cannot write {}", stamp.display()))?;
    Ok(())
}

/// Debian packages some tests need, installed with apt-get when missing: each set's programs,
/// packages, and the test that needs them (which skips, saying so, without them).
struct AptSet {
    programs: &'static [&'static str],
    packages: &'static [&'static str],
    test: &'static str,
}

/// The desktop notification test (`tests/system/alerts.rs`).
const DESKTOP: AptSet = AptSet {
    programs: &[
        "Xvfb",
        "dbus-run-session",
        "dunst",
        "dunstctl",
        "notify-send",
    ],
    packages: &["xvfb", "dbus", "dunst", "libnotify-bin"],
    test: "desktop notification",
};

/// Headless Chromium, which renders the HTML reports (`tests/system/scenarios.rs`).
const BROWSER: AptSet = AptSet {
    programs: &["chromium"],
    packages: &["chromium"],
    test: "report rendering",
};

/// Debian's promtool, which checks and unit-tests `deploy/prometheus` (`tests/system/deploy.rs`).
const PROMETHEUS: AptSet = AptSet {
    programs: &["promtool"],
    packages: &["prometheus"],
    test: "alerting rules",
};

fn on_path(program: &str) -> bool {
    env::var_os("PATH")
        .is_some_and(|path| env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

impl AptSet {
    /// True when every program of the set is installed.
    fn ready(&self) -> bool {
        self.programs.iter().all(|program| on_path(program))
    }

    /// Installs the set with apt-get when it is missing and this process may (root, apt-get
    /// present); otherwise says how, and the test skips. Never fails the install.
    fn ensure(&self) {
        let packages = self.packages.join(" ");
        if self.ready() {
            eprintln!("xtask: {packages} installed");
            return;
        }
        let root_user = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|output| output.stdout.starts_with(b"0\n"));
        if !root_user || !on_path("apt-get") {
            eprintln!(
                "xtask: the {} test will skip; install {packages} to run it",
                self.test
            );
            return;
        }
        let apt_install = || {
            Command::new("apt-get")
                .args(["install", "-y", "-q", "--no-install-recommends"])
                .args(self.packages)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .is_ok_and(|status| status.success())
        };
        eprintln!("xtask: $ apt-get install {packages}");
        let installed = apt_install()
            || (Command::new("apt-get")
                .args(["update", "-q"])
                .status()
                .is_ok_and(|status| status.success())
                && apt_install());
        if !installed {
            eprintln!(
                "xtask: apt-get could not install {packages}; the {} test will skip",
                self.test
            );
        }
    }
}

fn check() -> Result<()> {
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--features",
        TEST_FEATURES,
        "--locked",
        "--",
        "-D",
        "warnings",
    ])?;
    if !has(&cargo_bin(), Some("deny")) {
        cargo(&["install", "--locked", "cargo-deny"])?;
    }
    cargo(&[
        "deny",
        "--log-level",
        "error",
        "check",
        "bans",
        "licenses",
        "sources",
    ])?;
    layering::check(&root())?;
    commits::check(&root(), &[])?;
    // Generated files must match the code that generates them.
    run(Command::new(cargo_bin())
        .args([
            "test",
            "--locked",
            "-p",
            "velo-cli",
            "--test",
            "it",
            "generated",
        ])
        .env("UPDATE_SCHEMA", "0"))?;
    Ok(())
}

/// Features the tests need on top of the defaults: the harness that starts a real MLflow server
/// and the file store's crash points.
const TEST_FEATURES: &str = "velo-mlflow/test-server,velo-io/crash-points";

fn test() -> Result<()> {
    install()?;
    let python = python::venv_python(&root());
    let run_with_env = |command: &mut Command| {
        command
            .env("VELO_IT", "1")
            .env("VELO_PYTHON", &python)
            .env("VELO_MLFLOW_PYTHON", &python)
            .env("VELO_MLFLOW", python::venv_script(&root(), "mlflow"));
        command.env("VELO_TOOLS", tools_dir());
        // Installed, so the tests that need them must run, not skip.
        if DESKTOP.ready() {
            command.env("VELO_DESKTOP_IT", "1");
        }
        if BROWSER.ready() {
            command.env("VELO_BROWSER_IT", "1");
        }
        if PROMETHEUS.ready() {
            command.env("VELO_PROMTOOL_IT", "1");
        }
        run(command)
    };
    // Doc tests first, so that the run ends on nextest's summary of every other test.
    run_with_env(Command::new(cargo_bin()).args(["test", "--workspace", "--doc", "--locked"]))?;
    // Benchmarks are left out: clippy type-checks them, and `cargo xtask bench` runs them.
    run_with_env(Command::new(cargo_bin()).args([
        "nextest",
        "run",
        "--workspace",
        "--lib",
        "--bins",
        "--tests",
        "--features",
        TEST_FEATURES,
        "--locked",
        "--no-fail-fast",
    ]))?;
    Ok(())
}

fn project(args: &[String]) -> Result<()> {
    let csv = match args {
        [] => None,
        [flag, path] if flag == "--csv" => Some(path.clone()),
        _ => bail!("usage: cargo xtask project [--csv PATH]"),
    };
    let velo = |velo_args: &[&str]| {
        let mut command = Command::new(cargo_bin());
        command
            .args([
                "run",
                "--release",
                "--locked",
                "--quiet",
                "-p",
                "velo-cli",
                "--",
            ])
            .args(velo_args);
        run(&mut command)
    };
    // `velo project` creates data/ when it holds no dataset, then runs the six jobs.
    match csv {
        Some(csv) => velo(&["project", "--csv", &csv]),
        None => velo(&["project"]),
    }
}

fn codegen() -> Result<()> {
    run(Command::new(cargo_bin())
        .args(["test", "-p", "velo-cli", "--test", "it", "generated"])
        .env("UPDATE_SCHEMA", "1"))
}

fn docs() -> Result<()> {
    run(Command::new(cargo_bin())
        .args(["doc", "--workspace", "--no-deps", "--locked"])
        .env("RUSTDOCFLAGS", "-D warnings"))
}

fn clean() -> Result<()> {
    cargo(&["clean"])?;
    for artefact in ["mlruns", "outputs"] {
        let path = root().join(artefact);
        if path.exists() {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
            eprintln!("xtask: removed {}", path.display());
        }
    }
    Ok(())
}
