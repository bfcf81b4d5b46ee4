//! `cargo xtask deps update [CRATE] [--breaking] [--commit] [--gate CMD]`: dependency updates
//! behind a test gate.
//!
//! The update is made in a scratch worktree of HEAD (`git worktree add --detach`): `cargo
//! update` (every compatible release), `cargo update -p CRATE`, or, with `--breaking`, CRATE's
//! requirement in `[workspace.dependencies]` moved to its newest release first. The gate then
//! runs there (by default `cargo xtask check` and `cargo xtask test`). The new `Cargo.lock`
//! (and manifest) come back to the checkout only when the gate passes; otherwise the report
//! names the updates and the failing tests, and a multi-crate update is bisected, from the old
//! lock file, down to the crate whose update alone fails the gate. The gate builds in
//! `target/deps-update/`, apart from the checkout's builds (a cold build the first time). `--commit` commits a kept
//! update as `chore(deps): …` with the report in the message.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::{cargo_bin, commits::git};

/// What to update.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    /// One crate, or every compatible update.
    pub(crate) krate: Option<String>,
    /// Move the crate's requirement to its newest release.
    pub(crate) breaking: bool,
    /// Commit a kept update.
    pub(crate) commit: bool,
    /// The gate, a shell command run in the worktree.
    pub(crate) gate: String,
}

/// The default gate: every static check, then the whole suite.
pub(crate) const DEFAULT_GATE: &str = "cargo xtask check && cargo xtask test";

/// One package's move in the lock file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    pub(crate) name: String,
    pub(crate) from: Option<String>,
    pub(crate) to: Option<String>,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.from, &self.to) {
            (Some(from), Some(to)) => write!(f, "{} {from} -> {to}", self.name),
            (None, Some(to)) => write!(f, "{} (new) {to}", self.name),
            (Some(from), None) => write!(f, "{} {from} (removed)", self.name),
            (None, None) => write!(f, "{}", self.name),
        }
    }
}

/// The packages of a lock file: name -> versions (a name may be locked at several). A git
/// dependency's version carries its commit: `0.1.0#<commit>`.
fn packages(lock: &str) -> BTreeMap<String, Vec<String>> {
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for block in lock.split("[[package]]").skip(1) {
        let field = |key: &str| {
            block
                .lines()
                .find_map(|line| line.strip_prefix(&format!("{key} = ")))
                .map(|value| value.trim_matches('"').to_owned())
        };
        let (Some(name), Some(version)) = (field("name"), field("version")) else {
            continue;
        };
        let version = match field("source").filter(|source| source.starts_with("git+")) {
            Some(source) => match source.rsplit_once('#') {
                Some((_, commit)) => format!("{version}#{commit}"),
                None => version,
            },
            None => version,
        };
        found.entry(name).or_default().push(version);
    }
    for versions in found.values_mut() {
        versions.sort();
    }
    found
}

/// What moved between two lock files.
pub(crate) fn changes(before: &str, after: &str) -> Vec<Change> {
    let (before, after) = (packages(before), packages(after));
    let mut changes = Vec::new();
    let names: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for name in names {
        let old = before.get(name).cloned().unwrap_or_default();
        let new = after.get(name).cloned().unwrap_or_default();
        if old == new {
            continue;
        }
        let gone: Vec<&String> = old
            .iter()
            .filter(|version| !new.contains(version))
            .collect();
        let came: Vec<&String> = new
            .iter()
            .filter(|version| !old.contains(version))
            .collect();
        let pairs = gone.len().max(came.len());
        for index in 0..pairs {
            changes.push(Change {
                name: name.clone(),
                from: gone.get(index).map(|version| (*version).clone()),
                to: came.get(index).map(|version| (*version).clone()),
            });
        }
    }
    changes
}

/// A scratch worktree of HEAD, removed on drop.
struct Worktree {
    repo: PathBuf,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Worktree {
    fn new(repo: &Path) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("velo-deps-update")
            .tempdir()
            .context("cannot create a scratch directory")?;
        let path = dir.path().join("worktree");
        // Tests and checks read `../shared` beside the checkout (the data, the advisory
        // bundle): the worktree sees the same through a link.
        #[cfg(unix)]
        if let Some(shared) = repo.parent().map(|parent| parent.join("shared"))
            && shared.is_dir()
        {
            std::os::unix::fs::symlink(&shared, dir.path().join("shared"))
                .context("cannot link ../shared for the worktree")?;
        }
        git(
            repo,
            &[
                "worktree",
                "add",
                "--detach",
                "--quiet",
                &path.display().to_string(),
                "HEAD",
            ],
        )?;
        Ok(Self {
            repo: repo.to_path_buf(),
            path,
            _dir: dir,
        })
    }
}

impl Drop for Worktree {
    fn drop(&mut self) {
        let _ = git(
            &self.repo,
            &[
                "worktree",
                "remove",
                "--force",
                &self.path.display().to_string(),
            ],
        );
    }
}

/// Runs `cargo` with `args` in `dir`; its combined output, or an error with it.
fn cargo_in(dir: &Path, args: &[&str]) -> Result<String> {
    let output = Command::new(cargo_bin())
        .current_dir(dir)
        .args(args)
        .output()
        .with_context(|| format!("cannot run cargo {}", args.join(" ")))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        bail!("cargo {} failed:\n{text}", args.join(" "));
    }
    Ok(text)
}

/// The outcome of one gate run.
struct GateRun {
    passed: bool,
    /// The failing tests the output names (nextest's `FAIL` lines, libtest's `... FAILED`).
    failing: Vec<String>,
    tail: String,
}

fn run_gate(dir: &Path, gate: &str) -> Result<GateRun> {
    eprintln!("xtask: gate in {}: {gate}", dir.display());
    let output = Command::new("sh")
        .current_dir(dir)
        .args(["-c", gate])
        // The worktree's own xtask, whatever ran this one.
        .env_remove("CARGO_MANIFEST_DIR")
        // A target directory of its own: artifacts built in the worktree carry its paths (test
        // helpers find files through `CARGO_MANIFEST_DIR` at compile time), so they must not
        // mix with the checkout's. Kept between runs, so only the first is a cold build.
        .env(
            "CARGO_TARGET_DIR",
            crate::packages::target_dir().join("deps-update"),
        )
        .output()
        .context("cannot run the gate")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(GateRun {
        passed: output.status.success(),
        failing: failing_tests(&text),
        tail: text
            .lines()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n"),
    })
}

/// The failing tests named in a test run's output: nextest's `FAIL` lines, libtest's
/// `test … FAILED` lines and the list under its last `failures:` (all `--quiet` prints).
pub(crate) fn failing_tests(text: &str) -> Vec<String> {
    let mut listed = Vec::new();
    let mut in_list = false;
    for line in text.lines() {
        if line == "failures:" {
            in_list = true;
            listed.clear();
        } else if in_list {
            match line.strip_prefix("    ") {
                Some(name) if !name.is_empty() && !name.contains(' ') => {
                    listed.push(name.to_owned());
                }
                _ if line.trim().is_empty() && listed.is_empty() => {}
                _ => in_list = false,
            }
        }
    }
    let mut found: Vec<String> = text
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("FAIL [") {
                // nextest: `FAIL [   0.01s] (1/2) crate::binary test::name`
                return rest.split_whitespace().last().map(str::to_owned);
            }
            line.strip_prefix("test ")
                .and_then(|rest| rest.strip_suffix(" ... FAILED"))
                .map(str::to_owned)
        })
        .collect();
    found.extend(listed);
    found.sort();
    found.dedup();
    found
}

/// Moves `krate`'s requirement in the root manifest to `version`.
fn set_requirement(manifest: &str, krate: &str, version: &str) -> Option<String> {
    let mut in_section = false;
    let mut changed = false;
    let lines: Vec<String> = manifest
        .lines()
        .map(|line| {
            if line.starts_with('[') {
                in_section = line.trim() == "[workspace.dependencies]";
            }
            let key = line.split('=').next().unwrap_or_default().trim();
            if !in_section || changed || key != krate {
                return line.to_owned();
            }
            let value = line.split_once('=').map_or("", |(_, value)| value.trim());
            let replaced = if value.starts_with('"') {
                Some(format!("{krate} = \"{version}\""))
            } else {
                value.split("version = \"").nth(1).and_then(|rest| {
                    let old = rest.split('"').next()?;
                    Some(line.replacen(
                        &format!("version = \"{old}\""),
                        &format!("version = \"{version}\""),
                        1,
                    ))
                })
            };
            match replaced {
                Some(new) => {
                    changed = true;
                    new
                }
                None => line.to_owned(),
            }
        })
        .collect();
    changed.then(|| {
        let mut text = lines.join("\n");
        if manifest.ends_with('\n') {
            text.push('\n');
        }
        text
    })
}

/// The newest release of `krate` on crates.io (sparse index, via curl).
fn newest_release(krate: &str) -> Result<String> {
    let name = krate.to_lowercase();
    let path = match name.len() {
        1 => format!("1/{name}"),
        2 => format!("2/{name}"),
        3 => format!("3/{}/{name}", &name[..1]),
        _ => format!("{}/{}/{name}", &name[..2], &name[2..4]),
    };
    let output = Command::new("curl")
        .args(["-sSf", "--max-time", "20"])
        .arg(format!("https://index.crates.io/{path}"))
        .output()
        .context("cannot run curl")?;
    if !output.status.success() {
        bail!("crates.io's index has no {krate} (or cannot be reached)");
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|entry| entry["yanked"] != true)
        .filter_map(|entry| semver::Version::parse(entry["vers"].as_str()?).ok())
        .filter(|version| version.pre.is_empty())
        .max()
        .map(|version| version.to_string())
        .with_context(|| format!("{krate} has no release"))
}

/// Applies the request in `dir` (a worktree) and returns the manifest it wrote, if any.
fn apply(dir: &Path, request: &Request) -> Result<Option<String>> {
    let mut manifest = None;
    match (&request.krate, request.breaking) {
        (None, false) => {
            cargo_in(dir, &["update"])?;
        }
        (None, true) => {
            bail!("--breaking needs a crate: `cargo xtask deps update CRATE --breaking`")
        }
        (Some(krate), false) => {
            cargo_in(dir, &["update", "-p", krate])?;
        }
        (Some(krate), true) => {
            let newest = newest_release(krate)?;
            let path = dir.join("Cargo.toml");
            let text = std::fs::read_to_string(&path)?;
            let updated = set_requirement(&text, krate, &newest).with_context(|| {
                format!("{krate} has no requirement in [workspace.dependencies] to move")
            })?;
            std::fs::write(&path, &updated)?;
            cargo_in(dir, &["update", "-p", krate])?;
            manifest = Some(updated);
        }
    }
    Ok(manifest)
}

/// Applies only `subset` of the changes to the original lock file in `dir`.
fn apply_subset(dir: &Path, original_lock: &str, subset: &[Change]) -> Result<()> {
    std::fs::write(dir.join("Cargo.lock"), original_lock)?;
    for change in subset {
        if let (Some(from), Some(to)) = (&change.from, &change.to) {
            // `version#commit` for git dependencies: the commit is what moves.
            let from_version = from.split('#').next().unwrap_or(from);
            let precise = to.rsplit('#').next().unwrap_or(to);
            // A package a parent's update pulls in may already have moved: not an error.
            let _ = cargo_in(
                dir,
                &[
                    "update",
                    "-p",
                    &format!("{}@{from_version}", change.name),
                    "--precise",
                    precise,
                ],
            );
        }
    }
    Ok(())
}

/// Bisects `changes` (whose whole set fails the gate) down to one whose update alone fails it.
fn bisect(
    dir: &Path,
    original_lock: &str,
    changes: &[Change],
    gate: &str,
) -> Result<Option<(Change, GateRun)>> {
    let mut suspects: Vec<Change> = changes
        .iter()
        .filter(|change| change.from.is_some() && change.to.is_some())
        .cloned()
        .collect();
    while suspects.len() > 1 {
        let half = suspects.len() / 2;
        let (first, second) = suspects.split_at(half);
        apply_subset(dir, original_lock, first)?;
        let run = run_gate(dir, gate)?;
        eprintln!(
            "xtask: bisect: {} update(s) {}",
            first.len(),
            if run.passed { "pass" } else { "fail" }
        );
        suspects = if run.passed {
            second.to_vec()
        } else {
            first.to_vec()
        };
    }
    let Some(culprit) = suspects.pop() else {
        return Ok(None);
    };
    apply_subset(dir, original_lock, std::slice::from_ref(&culprit))?;
    let run = run_gate(dir, gate)?;
    Ok((!run.passed).then_some((culprit, run)))
}

/// The task. Returns the report.
pub(crate) fn update(repo: &Path, request: &Request) -> Result<String> {
    let worktree = Worktree::new(repo)?;
    let dir = &worktree.path;
    let original_lock = std::fs::read_to_string(dir.join("Cargo.lock"))
        .context("the worktree has no Cargo.lock")?;
    let manifest = apply(dir, request)?;
    let new_lock = std::fs::read_to_string(dir.join("Cargo.lock"))?;
    let changed = changes(&original_lock, &new_lock);
    let mut report = String::new();
    if changed.is_empty() && manifest.is_none() {
        report.push_str(
            "nothing to update: every dependency is at the newest release its requirement allows\n",
        );
        println!("{report}");
        return Ok(report);
    }
    report.push_str(&format!("{} package(s) moved:\n", changed.len()));
    for change in &changed {
        report.push_str(&format!("  {change}\n"));
    }
    let gate = run_gate(dir, &request.gate)?;
    if gate.passed {
        report.push_str(&format!("the gate passed ({})\n", request.gate));
        std::fs::write(repo.join("Cargo.lock"), &new_lock).context("cannot write Cargo.lock")?;
        if let Some(manifest) = &manifest {
            std::fs::write(repo.join("Cargo.toml"), manifest).context("cannot write Cargo.toml")?;
        }
        if request.commit {
            let subject = match &request.krate {
                Some(krate) => format!("chore(deps): update {krate}"),
                None => format!("chore(deps): update {} package(s)", changed.len()),
            };
            let mut paths = vec!["Cargo.lock"];
            if manifest.is_some() {
                paths.push("Cargo.toml");
            }
            let mut args = vec!["commit", "--quiet", "-m", &subject, "-m", &report, "--"];
            args.extend(paths);
            git(repo, &args)?;
            report.push_str(&format!("committed: {subject}\n"));
        } else {
            report.push_str("kept in Cargo.lock (not committed; --commit commits it)\n");
        }
        println!("{report}");
        return Ok(report);
    }
    report.push_str(&format!(
        "the gate failed ({}); nothing was kept\nfailing tests: {}\n",
        request.gate,
        if gate.failing.is_empty() {
            "(none named; the end of its output below)".to_owned()
        } else {
            gate.failing.join(", ")
        }
    ));
    // Bisect only when tests failed: a check that fails before any test (formatting, a lint, a
    // missing tool) is no update's doing, and each bisection step is a whole gate.
    let moved = changed
        .iter()
        .filter(|change| change.from.is_some() && change.to.is_some())
        .count();
    if moved > 1 && !gate.failing.is_empty() {
        match bisect(dir, &original_lock, &changed, &request.gate)? {
            Some((culprit, run)) => report.push_str(&format!(
                "bisected: the update of {culprit} alone fails the gate ({})\n",
                if run.failing.is_empty() {
                    "no test named".to_owned()
                } else {
                    run.failing.join(", ")
                }
            )),
            None => report
                .push_str("bisected: no single update fails the gate alone (they fail together)\n"),
        }
    }
    report.push_str(&format!("the end of the gate's output:\n{}\n", gate.tail));
    println!("{report}");
    bail!("the update failed its gate; Cargo.lock is unchanged")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_changes_are_listed_per_package() {
        let before = "[[package]]\nname = \"a\"\nversion = \"1.0.0\"\n\n[[package]]\nname = \"b\"\nversion = \"0.1.0\"\n";
        let after = "[[package]]\nname = \"a\"\nversion = \"1.0.2\"\n\n[[package]]\nname = \"b\"\nversion = \"0.1.0\"\n\n[[package]]\nname = \"c\"\nversion = \"2.0.0\"\n";
        let found = changes(before, after);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].to_string(), "a 1.0.0 -> 1.0.2");
        assert_eq!(found[1].to_string(), "c (new) 2.0.0");
    }

    #[test]
    fn failing_tests_are_read_from_nextest_and_libtest() {
        let text = "        FAIL [   0.010s] (3/9) velo-core::it schemas::refuses\ntest tests::adds ... FAILED\ntest tests::ok ... ok\n";
        assert_eq!(failing_tests(text), ["schemas::refuses", "tests::adds"]);
        let quiet = "running 2 tests\n.F\nfailures:\n\n---- sums stdout ----\npanicked\n\nfailures:\n    sums\n\ntest result: FAILED. 1 passed; 1 failed\n";
        assert_eq!(failing_tests(quiet), ["sums"]);
    }

    #[test]
    fn a_requirement_moves_in_the_workspace_table_only() {
        let manifest = "[workspace.dependencies]\nrand = { version = \"0.9\", default-features = false }\nsha2 = \"0.10\"\n\n[dependencies]\nsha2 = \"0.10\"\n";
        let moved = set_requirement(manifest, "rand", "0.10.4").unwrap();
        assert!(moved.contains("rand = { version = \"0.10.4\", default-features = false }"));
        let moved = set_requirement(manifest, "sha2", "0.11.3").unwrap();
        assert!(moved.starts_with("[workspace.dependencies]\nrand"));
        assert!(moved.contains("[workspace.dependencies]\nrand = { version = \"0.9\", default-features = false }\nsha2 = \"0.11.3\"\n"));
        assert!(
            moved.ends_with("[dependencies]\nsha2 = \"0.10\"\n"),
            "{moved}"
        );
        assert_eq!(set_requirement(manifest, "serde", "1"), None);
    }

    /// A scratch workspace whose two dependencies are git repositories on this machine (a
    /// `cargo update` moves them to their newest commit): `good`'s update keeps the behaviour,
    /// `bad`'s changes it. The update of both is refused with the failing test named, the
    /// bisection names `bad`, and the lock file is unchanged; `good` alone is kept.
    #[test]
    fn the_gate_refuses_an_update_that_breaks_a_test_and_bisects_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let git_in = |path: &Path, args: &[&str]| git(path, args).unwrap();
        // A repository whose commits need no global git identity.
        let init_repo = |path: &Path| {
            git_in(path, &["init", "--quiet", "-b", "main"]);
            git_in(path, &["config", "user.email", "t@example.invalid"]);
            git_in(path, &["config", "user.name", "t"]);
        };
        let make_dep = |name: &str, body: &str| -> PathBuf {
            let path = root.join(name);
            std::fs::create_dir_all(path.join("src")).unwrap();
            std::fs::write(
                path.join("Cargo.toml"),
                format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n"),
            )
            .unwrap();
            std::fs::write(path.join("src/lib.rs"), body).unwrap();
            init_repo(&path);
            git_in(&path, &["add", "."]);
            git_in(&path, &["commit", "--quiet", "-m", "v1"]);
            path
        };
        let good = make_dep("good", "pub fn one() -> u32 { 1 }\n");
        let bad = make_dep("bad", "pub fn two() -> u32 { 2 }\n");
        let project = root.join("project");
        std::fs::create_dir_all(project.join("src")).unwrap();
        std::fs::write(
            project.join("Cargo.toml"),
            format!(
                "[package]\nname = \"project\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\ngood = {{ git = \"file://{}\" }}\nbad = {{ git = \"file://{}\" }}\n\n[workspace]\n",
                good.display(),
                bad.display()
            ),
        )
        .unwrap();
        std::fs::write(
            project.join("src/lib.rs"),
            "#[test]\nfn sums() { assert_eq!(good::one() + bad::two(), 3); }\n",
        )
        .unwrap();
        std::fs::write(project.join(".gitignore"), "target\n").unwrap();
        let target = root.join("target");
        let cargo_env = |command: &mut Command| {
            command.env("CARGO_TARGET_DIR", &target);
        };
        let mut lock = Command::new(cargo_bin());
        lock.current_dir(&project).arg("generate-lockfile");
        cargo_env(&mut lock);
        assert!(lock.status().unwrap().success());
        init_repo(&project);
        git_in(&project, &["add", "."]);
        git_in(&project, &["commit", "--quiet", "-m", "chore: start"]);
        let locked = std::fs::read_to_string(project.join("Cargo.lock")).unwrap();

        // New commits upstream: good keeps its behaviour, bad changes its.
        for (path, body) in [
            (&good, "pub fn one() -> u32 { 0 + 1 }\n"),
            (&bad, "pub fn two() -> u32 { 3 }\n"),
        ] {
            std::fs::write(path.join("src/lib.rs"), body).unwrap();
            git_in(path, &["commit", "--quiet", "-am", "v2"]);
        }
        let gate = format!("CARGO_TARGET_DIR={} cargo test --quiet", target.display());
        let request = Request {
            krate: None,
            breaking: false,
            commit: false,
            gate: gate.clone(),
        };
        let error = update(&project, &request).unwrap_err();
        assert!(error.to_string().contains("failed its gate"), "{error}");
        assert_eq!(
            std::fs::read_to_string(project.join("Cargo.lock")).unwrap(),
            locked
        );

        // The report, re-run to read it: the failing test and the culprit.
        let worktree = Worktree::new(&project).unwrap();
        apply(&worktree.path, &request).unwrap();
        let new_lock = std::fs::read_to_string(worktree.path.join("Cargo.lock")).unwrap();
        let changed = changes(&locked, &new_lock);
        assert_eq!(changed.len(), 2, "{changed:?}");
        let run = run_gate(&worktree.path, &gate).unwrap();
        assert!(!run.passed);
        assert_eq!(run.failing, ["sums"]);
        let (culprit, _) = bisect(&worktree.path, &locked, &changed, &gate)
            .unwrap()
            .unwrap();
        assert_eq!(culprit.name, "bad");
        drop(worktree);

        // good alone passes, is kept and committed.
        let request = Request {
            krate: Some("good".to_owned()),
            breaking: false,
            commit: true,
            gate,
        };
        let report = update(&project, &request).unwrap();
        assert!(report.contains("the gate passed"), "{report}");
        assert_ne!(
            std::fs::read_to_string(project.join("Cargo.lock")).unwrap(),
            locked
        );
        let subject = git(&project, &["log", "-1", "--format=%s"]).unwrap();
        assert_eq!(subject.trim(), "chore(deps): update good");
    }
}
