//! `cargo xtask install`: what the tests need, installed once (every step is idempotent).

use std::{env, path::PathBuf, process::Command};

use anyhow::{Context as _, Result};

use crate::{cargo, cargo_bin, has, python, root, run};

/// Installs what the tests need; idempotent.
pub(crate) fn install() -> Result<()> {
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
    POSTGRES.ensure();
    CONTAINERS.ensure();
    if CONTAINERS.ready() {
        configure_podman()?;
    }
    ensure_tansu()?;
    Ok(())
}

/// The Kafka-compatible broker the tests start (tansu, from crates.io), pinned.
const TANSU: (&str, &str) = ("tansu", "0.6.0");

/// Where tools built for the tests live: `$VELO_TOOLS`, else `.tools` in the workspace.
pub(crate) fn tools_dir() -> PathBuf {
    env::var_os("VELO_TOOLS").map_or_else(|| root().join(".tools"), PathBuf::from)
}

/// Builds tansu into the tools directory once (about 16 minutes on 2 cores; cached after).
pub(crate) fn ensure_tansu() -> Result<()> {
    let (name, version) = TANSU;
    // dynostore: the memory engine; libsql: SQLite storage that survives a restart.
    cargo_tool(name, version, &["--features", "dynostore,libsql"])?;
    Ok(())
}

/// A tool from crates.io in the tools directory at a pinned version, installed (`cargo
/// install --locked`, with `options` such as features) unless its stamp says it is there;
/// returns the binary named like the crate (`typos-cli` installs `typos`: see [`tool_binary`]).
pub(crate) fn cargo_tool(krate: &str, version: &str, options: &[&str]) -> Result<PathBuf> {
    let dir = tools_dir();
    let binary = tool_binary(&dir, krate);
    let stamp = dir.join(format!("{krate}.version"));
    if binary.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|done| done == version) {
        return Ok(binary);
    }
    run(Command::new(cargo_bin())
        .args(["install", "--locked", "--root"])
        .arg(&dir)
        .args([krate, "--version", version])
        .args(options))?;
    std::fs::write(&stamp, version).with_context(|| format!("cannot write {}", stamp.display()))?;
    Ok(binary)
}

/// The binary a crate installs: its name, but for the crates whose binary is named otherwise.
fn tool_binary(dir: &std::path::Path, krate: &str) -> PathBuf {
    let name = match krate {
        "typos-cli" => "typos",
        other => other,
    };
    dir.join("bin").join(name)
}

/// Debian packages some tests need, installed with apt-get when missing: each set's programs,
/// packages, and the test that needs them (which skips, saying so, without them).
pub(crate) struct AptSet {
    programs: &'static [&'static str],
    packages: &'static [&'static str],
    test: &'static str,
}

/// The desktop notification test (`tests/system/alerts.rs`).
pub(crate) const DESKTOP: AptSet = AptSet {
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
pub(crate) const BROWSER: AptSet = AptSet {
    programs: &["chromium"],
    packages: &["chromium"],
    test: "report rendering",
};

/// Debian's promtool, which checks and unit-tests `deploy/prometheus` (`tests/system/deploy.rs`).
pub(crate) const PROMETHEUS: AptSet = AptSet {
    programs: &["promtool"],
    packages: &["prometheus"],
    test: "alerting rules",
};

/// Debian's PostgreSQL server, whose private clusters back MLflow in the team-scale tests
/// (`tests/system/team.rs`; found by `velo_child::postgres::bin_dir`).
pub(crate) const POSTGRES: AptSet = AptSet {
    programs: &["psql", "pg_ctlcluster"],
    packages: &["postgresql"],
    test: "PostgreSQL",
};

/// Debian's podman and runc, which build and run velo's image (`cargo xtask containers check`,
/// run by `tests/system/containers.rs`).
pub(crate) const CONTAINERS: AptSet = AptSet {
    programs: &["podman", "runc"],
    packages: &["podman", "runc"],
    test: "container",
};

/// Where podman reads its engine settings.
const CONTAINERS_CONF: &str = "/etc/containers/containers.conf";

/// podman's settings for machines whose kernel refuses crun's rlimits and cgroup setup: no
/// default ulimits, cgroupfs. Written only when no containers.conf exists (as root).
fn configure_podman() -> Result<()> {
    let path = std::path::Path::new(CONTAINERS_CONF);
    if path.exists() {
        eprintln!("xtask: {CONTAINERS_CONF} exists; left as it is");
        return Ok(());
    }
    let writable = path.parent().is_some_and(|dir| {
        std::fs::create_dir_all(dir).is_ok()
            && std::fs::write(
                path,
                "# Written by `cargo xtask install` for velo's container tests.\n\
                 [containers]\ndefault_ulimits = []\n\n[engine]\ncgroup_manager = \"cgroupfs\"\n",
            )
            .is_ok()
    });
    if writable {
        eprintln!("xtask: wrote {CONTAINERS_CONF} (no default ulimits, cgroupfs)");
    } else {
        eprintln!("xtask: cannot write {CONTAINERS_CONF}; podman keeps its defaults");
    }
    Ok(())
}

/// True when `program` is a file in one of `PATH`'s directories.
pub(crate) fn on_path(program: &str) -> bool {
    env::var_os("PATH")
        .is_some_and(|path| env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

impl AptSet {
    /// True when every program of the set is installed.
    pub(crate) fn ready(&self) -> bool {
        self.programs.iter().all(|program| on_path(program))
    }

    /// Installs the set with apt-get when it is missing and this process may (root, apt-get
    /// present); otherwise says how, and the test skips. Never fails the install.
    pub(crate) fn ensure(&self) {
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
