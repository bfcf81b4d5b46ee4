//! `cargo xtask deps map|check`: the dependency graph and its health.
//!
//! - `map`: per workspace crate, its direct and total (normal and build) dependencies, the
//!   duplicated versions, the licences, and the slowest dependencies to build (from a
//!   `cargo build --timings` report), as Markdown with a Mermaid graph, plus a DOT graph
//!   (rendered to SVG when graphviz's `dot` is installed), in `target/deps/`.
//! - `check`: `cargo deny` with advisories as well as bans, licences and sources, against the
//!   live RustSec database or, when it cannot be fetched, the bundle in
//!   `../shared/data/rustsec/advisory-db.bundle` (its date printed either way); unused
//!   dependencies (cargo-machete); direct dependencies with a newer compatible or breaking
//!   release (crates.io's sparse index, reported, never failing).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::{cargo_bin, root, run};

/// cargo-machete, pinned; installed into the tools directory on first use.
const MACHETE: (&str, &str) = ("cargo-machete", "0.9.1");

// ---------------------------------------------------------------------------------------------
// map

/// The resolved graph of the workspace for the host platform.
struct Graph {
    /// Package id -> (name, version, licence).
    packages: BTreeMap<String, (String, String, String)>,
    /// Package id -> its normal and build dependencies' ids.
    edges: BTreeMap<String, Vec<String>>,
    /// Workspace members' ids.
    members: Vec<String>,
}

impl Graph {
    fn load() -> Result<Self> {
        let host = crate::packages::host_triple()?;
        let metadata = crate::cargo_metadata(&["--filter-platform", &host])?;
        Ok(Self::from_metadata(&metadata))
    }

    fn from_metadata(metadata: &Value) -> Self {
        let packages = metadata["packages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|package| {
                Some((
                    package["id"].as_str()?.to_owned(),
                    (
                        package["name"].as_str()?.to_owned(),
                        package["version"].as_str()?.to_owned(),
                        package["license"].as_str().unwrap_or("(none)").to_owned(),
                    ),
                ))
            })
            .collect();
        let edges = metadata["resolve"]["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|node| {
                let deps = node["deps"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|dep| {
                        dep["dep_kinds"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|kind| kind["kind"].is_null() || kind["kind"] == "build")
                    })
                    .filter_map(|dep| dep["pkg"].as_str().map(str::to_owned))
                    .collect();
                Some((node["id"].as_str()?.to_owned(), deps))
            })
            .collect();
        let members = metadata["workspace_members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        Self {
            packages,
            edges,
            members,
        }
    }

    fn name<'a>(&'a self, id: &'a str) -> &'a str {
        self.packages
            .get(id)
            .map_or(id, |(name, _, _)| name.as_str())
    }

    /// Everything `id` depends on, directly or not (itself excluded).
    fn closure(&self, id: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut pending: Vec<&str> = vec![id];
        while let Some(next) = pending.pop() {
            for dep in self.edges.get(next).into_iter().flatten() {
                if seen.insert(dep.clone()) {
                    pending.push(dep);
                }
            }
        }
        seen.remove(id);
        seen
    }

    fn is_member(&self, id: &str) -> bool {
        self.members.iter().any(|member| member == id)
    }
}

/// One unit of a `cargo build --timings` report: crate name and seconds.
fn slowest_units(report: &str, count: usize) -> Vec<(String, f64)> {
    let Some(start) = report.find("const UNIT_DATA = ") else {
        return Vec::new();
    };
    let text = &report[start + "const UNIT_DATA = ".len()..];
    let Some(end) = text.find("];") else {
        return Vec::new();
    };
    let Ok(units) = serde_json::from_str::<Vec<Value>>(&text[..=end]) else {
        return Vec::new();
    };
    let mut by_crate: BTreeMap<String, f64> = BTreeMap::new();
    for unit in &units {
        if let (Some(name), Some(duration)) = (unit["name"].as_str(), unit["duration"].as_f64()) {
            let version = unit["version"].as_str().unwrap_or_default();
            *by_crate.entry(format!("{name} {version}")).or_default() += duration;
        }
    }
    let mut sorted: Vec<(String, f64)> = by_crate.into_iter().collect();
    sorted.sort_by(|a, b| b.1.total_cmp(&a.1));
    sorted.truncate(count);
    sorted
}

/// The newest `cargo-timing-*.html` under the target directory's `cargo-timings/`.
fn latest_timings(target: &Path) -> Option<PathBuf> {
    let dir = target.join("cargo-timings");
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("cargo-timing-") && name.ends_with(".html"))
        })
        .max()
}

/// The `map` task. With `timings`, a fresh debug build of the workspace in
/// `target/deps/timings` measures every unit first (minutes on a cold cache).
pub(crate) fn map(timings: bool) -> Result<()> {
    let target = crate::packages::target_dir();
    let out = target.join("deps");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let timings_target = out.join("timings");
    if timings {
        run(Command::new(cargo_bin())
            .args(["build", "--workspace", "--locked", "--timings"])
            .env("CARGO_TARGET_DIR", &timings_target))?;
    }
    let graph = Graph::load()?;
    let report = latest_timings(&timings_target)
        .or_else(|| latest_timings(&target))
        .map(|path| (std::fs::read_to_string(&path).unwrap_or_default(), path));
    let markdown = render_map(
        &graph,
        report
            .as_ref()
            .map(|(text, path)| (text.as_str(), path.as_path())),
    );
    let dot = render_dot(&graph);
    std::fs::write(out.join("deps.md"), &markdown).context("cannot write deps.md")?;
    std::fs::write(out.join("deps.dot"), &dot).context("cannot write deps.dot")?;
    let svg = out.join("deps.svg");
    let rendered = crate::install::on_path("dot")
        && Command::new("dot")
            .args(["-Tsvg", "-o"])
            .arg(&svg)
            .arg(out.join("deps.dot"))
            .status()
            .is_ok_and(|status| status.success());
    print!("{markdown}");
    println!(
        "\nwritten: {} and {}{}",
        out.join("deps.md").display(),
        out.join("deps.dot").display(),
        if rendered {
            format!(" (and {})", svg.display())
        } else {
            " (install graphviz for an SVG)".to_owned()
        }
    );
    Ok(())
}

/// The Markdown report.
fn render_map(graph: &Graph, timings: Option<(&str, &Path)>) -> String {
    let mut text = String::from(
        "# Dependencies\n\n## Workspace crates\n\n| crate | direct | total |\n|---|---:|---:|\n",
    );
    let mut members: Vec<&String> = graph.members.iter().collect();
    members.sort_by_key(|id| graph.name(id));
    let mut everything = BTreeSet::new();
    for id in &members {
        let direct = graph.edges.get(*id).map_or(0, |deps| {
            deps.iter().filter(|dep| !graph.is_member(dep)).count()
        });
        let closure: BTreeSet<String> = graph
            .closure(id)
            .into_iter()
            .filter(|dep| !graph.is_member(dep))
            .collect();
        text.push_str(&format!(
            "| {} | {direct} | {} |\n",
            graph.name(id),
            closure.len()
        ));
        everything.extend(closure);
    }
    text.push_str(&format!(
        "\n{} external crates in all (normal and build dependencies, host platform).\n",
        everything.len()
    ));

    // Crates resolved at more than one version.
    let mut versions: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for id in &everything {
        if let Some((name, version, _)) = graph.packages.get(id) {
            versions.entry(name).or_default().insert(version);
        }
    }
    let duplicates: Vec<String> = versions
        .iter()
        .filter(|(_, versions)| versions.len() > 1)
        .map(|(name, versions)| {
            format!(
                "| {name} | {} |",
                versions.iter().copied().collect::<Vec<_>>().join(", ")
            )
        })
        .collect();
    text.push_str(&format!(
        "\n## Duplicated versions ({})\n\n",
        duplicates.len()
    ));
    if duplicates.is_empty() {
        text.push_str("None.\n");
    } else {
        text.push_str("| crate | versions |\n|---|---|\n");
        text.push_str(&duplicates.join("\n"));
        text.push('\n');
    }

    // Licences.
    let mut licences: BTreeMap<&str, usize> = BTreeMap::new();
    for id in &everything {
        if let Some((_, _, licence)) = graph.packages.get(id) {
            *licences.entry(licence).or_default() += 1;
        }
    }
    let mut licences: Vec<(&str, usize)> = licences.into_iter().collect();
    licences.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    text.push_str("\n## Licences\n\n| licence | crates |\n|---|---:|\n");
    for (licence, count) in &licences {
        text.push_str(&format!("| {licence} | {count} |\n"));
    }

    // Build times.
    text.push_str("\n## Slowest to build\n\n");
    match timings {
        Some((report, path)) => {
            let slowest = slowest_units(report, 15);
            if slowest.is_empty() {
                text.push_str(&format!("{} holds no unit that was built.\n", path.display()));
            } else {
                text.push_str(&format!(
                    "From {} (each crate's units summed; cargo builds up to one unit per core at once).\n\n| crate | seconds |\n|---|---:|\n",
                    path.display()
                ));
                for (name, seconds) in slowest {
                    text.push_str(&format!("| {name} | {seconds:.1} |\n"));
                }
            }
        }
        None => text.push_str(
            "No `cargo build --timings` report yet: `cargo xtask deps map --timings` builds the workspace afresh to measure.\n",
        ),
    }

    // The workspace's own graph.
    text.push_str("\n## Workspace graph\n\n```mermaid\ngraph LR\n");
    for id in &members {
        for dep in graph.edges.get(*id).into_iter().flatten() {
            if graph.is_member(dep) {
                text.push_str(&format!(
                    "  {} --> {}\n",
                    graph.name(id).replace('-', "_"),
                    graph.name(dep).replace('-', "_")
                ));
            }
        }
    }
    text.push_str("```\n");
    text
}

/// A DOT graph: the workspace crates (boxes) and their direct external dependencies.
fn render_dot(graph: &Graph) -> String {
    let mut text =
        String::from("digraph deps {\n  rankdir=LR;\n  node [shape=ellipse, fontsize=10];\n");
    for id in &graph.members {
        text.push_str(&format!(
            "  \"{}\" [shape=box, style=filled, fillcolor=\"#dbeafe\"];\n",
            graph.name(id)
        ));
        for dep in graph.edges.get(id).into_iter().flatten() {
            text.push_str(&format!(
                "  \"{}\" -> \"{}\";\n",
                graph.name(id),
                graph.name(dep)
            ));
        }
    }
    text.push_str("}\n");
    text
}

// ---------------------------------------------------------------------------------------------
// check

/// The RustSec bundle shipped beside the project, for machines that cannot reach GitHub.
fn bundle() -> PathBuf {
    root().join("../shared/data/rustsec/advisory-db.bundle")
}

/// Makes the advisory database available to cargo-deny in `dir` (a project): fetched live, or
/// else cloned from the bundle where cargo-deny looks for it. Returns where it is and whether
/// it is the live one.
pub(crate) fn advisory_db(dir: &Path) -> Result<(PathBuf, bool)> {
    let fetch = Command::new(cargo_bin())
        .current_dir(dir)
        .args(["deny", "fetch", "db"])
        .output()
        .context("cannot run cargo deny fetch")?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&fetch.stdout),
        String::from_utf8_lossy(&fetch.stderr)
    );
    let path = db_path_in(&said).or_else(existing_db);
    if fetch.status.success() {
        let path = path.context("cargo deny fetched the database but did not say where")?;
        return Ok((path, true));
    }
    let path = path.with_context(|| {
        format!("cargo deny could not fetch the advisory database and said nothing of where it looks:\n{said}")
    })?;
    let bundle = bundle();
    if !bundle.is_file() {
        bail!(
            "the advisory database cannot be fetched and there is no bundle at {}:\n{said}",
            bundle.display()
        );
    }
    // A fresh clone each time, so a newer bundle always wins.
    if path.exists() {
        std::fs::remove_dir_all(&path)
            .with_context(|| format!("cannot clear {}", path.display()))?;
    }
    run(Command::new("git")
        .args(["clone", "--quiet", "-c", "advice.detachedHead=false"])
        .arg(&bundle)
        .arg(&path))?;
    Ok((path, false))
}

/// The `…/advisory-db-<hash>` directory named in cargo-deny's output.
fn db_path_in(text: &str) -> Option<PathBuf> {
    text.split(['\'', '"', ' ', '\n', '`'])
        .find(|word| {
            word.starts_with('/')
                && Path::new(word)
                    .file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(|name| name.starts_with("advisory-db-"))
        })
        .map(|word| PathBuf::from(word.trim_end_matches(['.', ',', ':'])))
}

/// An advisory database cargo-deny cloned before, under `$CARGO_HOME/advisory-dbs`.
fn existing_db() -> Option<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))?;
    std::fs::read_dir(home.join("advisory-dbs"))
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("advisory-db-"))
        })
}

/// The date of the database's last commit.
fn db_date(path: &Path) -> String {
    Command::new("git")
        .arg("-C")
        .arg(path)
        .args(["log", "-1", "--format=%cI"])
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// What cargo deny said of a project.
pub(crate) struct Verdict {
    /// No finding.
    pub(crate) passed: bool,
    /// Its report (stderr), as printed.
    pub(crate) report: String,
}

/// `cargo deny check advisories bans licenses sources` in `dir` against the database
/// [`advisory_db`] prepared (the crates fetched first, so that cargo deny itself runs offline).
pub(crate) fn deny(dir: &Path) -> Result<Verdict> {
    let (db, live) = advisory_db(dir)?;
    println!(
        "advisory database: {} ({}), last change {}",
        db.display(),
        if live {
            "fetched from RustSec"
        } else {
            "cloned from ../shared/data/rustsec/advisory-db.bundle: RustSec cannot be reached"
        },
        db_date(&db)
    );
    // Not `run`, which works in the workspace root.
    let fetched = Command::new(cargo_bin())
        .current_dir(dir)
        .args(["fetch", "--locked", "--quiet"])
        .status()
        .context("cannot run cargo fetch")?;
    if !fetched.success() {
        bail!("cargo fetch failed in {}", dir.display());
    }
    let output = Command::new(cargo_bin())
        .current_dir(dir)
        .args([
            "deny",
            "--offline",
            "--log-level",
            "error",
            "check",
            "advisories",
            "bans",
            "licenses",
            "sources",
        ])
        .output()
        .context("cannot run cargo deny")?;
    let report = String::from_utf8_lossy(&output.stderr).into_owned();
    eprint!("{report}");
    if !output.status.success() && !report.contains("FAILED") && !report.contains("error[") {
        bail!("cargo deny could not check {}", dir.display());
    }
    Ok(Verdict {
        passed: output.status.success(),
        report,
    })
}

/// A direct dependency's requirement and what crates.io offers.
#[derive(Debug, PartialEq)]
struct Newer {
    name: String,
    requirement: String,
    /// The newest release the requirement accepts, when newer than the locked one.
    compatible: Option<String>,
    /// The newest release, when the requirement does not accept it.
    breaking: Option<String>,
    locked: Option<String>,
}

/// The workspace's direct registry dependencies: `[workspace.dependencies]` of the root
/// manifest with a version requirement (name, requirement).
fn direct_requirements(manifest: &str) -> Vec<(String, String)> {
    let mut in_section = false;
    let mut found = Vec::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_section = line == "[workspace.dependencies]";
            continue;
        }
        if !in_section || line.starts_with('#') || line.contains("path =") {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim().to_owned();
        let value = value.trim();
        // `name = "1.2"`, or `name = { version = "1.2", … }` (possibly `package = "real"`).
        let requirement = if let Some(quoted) = value.strip_prefix('"') {
            quoted.split('"').next().map(str::to_owned)
        } else {
            value
                .split("version = \"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .map(str::to_owned)
        };
        let name = value
            .split("package = \"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .map_or(key, str::to_owned);
        if let Some(requirement) = requirement {
            found.push((name, requirement));
        }
    }
    found
}

/// The path of a crate in crates.io's sparse index.
fn index_path(name: &str) -> String {
    let name = name.to_lowercase();
    match name.len() {
        1 => format!("1/{name}"),
        2 => format!("2/{name}"),
        3 => format!("3/{}/{name}", &name[..1]),
        _ => format!("{}/{}/{name}", &name[..2], &name[2..4]),
    }
}

/// The non-yanked, non-pre-release versions of an index file.
fn released_versions(index: &str) -> Vec<semver::Version> {
    let mut versions: Vec<semver::Version> = index
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|entry| entry["yanked"] != true)
        .filter_map(|entry| semver::Version::parse(entry["vers"].as_str()?).ok())
        .filter(|version| version.pre.is_empty())
        .collect();
    versions.sort();
    versions
}

/// What crates.io offers beyond `locked` for `requirement`.
fn newer(name: &str, requirement: &str, locked: Option<&str>, index: &str) -> Option<Newer> {
    let request = semver::VersionReq::parse(requirement).ok()?;
    let versions = released_versions(index);
    let newest = versions.last()?;
    let locked_version = locked.and_then(|locked| semver::Version::parse(locked).ok());
    let compatible = versions
        .iter()
        .rev()
        .find(|version| request.matches(version))
        .filter(|version| {
            locked_version
                .as_ref()
                .is_none_or(|locked| *version > locked)
        });
    let breaking = (!request.matches(newest)).then(|| newest.to_string());
    (compatible.is_some() || breaking.is_some()).then(|| Newer {
        name: name.to_owned(),
        requirement: requirement.to_owned(),
        compatible: compatible.map(ToString::to_string),
        breaking,
        locked: locked.map(str::to_owned),
    })
}

/// Every locked version of each package in Cargo.lock.
fn locked_versions(lock: &str) -> BTreeMap<String, Vec<semver::Version>> {
    let mut versions: BTreeMap<String, Vec<semver::Version>> = BTreeMap::new();
    let mut name = None;
    for line in lock.lines() {
        if let Some(value) = line.strip_prefix("name = ") {
            name = Some(value.trim_matches('"').to_owned());
        } else if let (Some(value), Some(current)) = (line.strip_prefix("version = "), name.take())
            && let Ok(version) = semver::Version::parse(value.trim_matches('"'))
        {
            versions.entry(current).or_default().push(version);
        }
    }
    versions
}

/// The highest locked version of `name` that `requirement` accepts (the one the workspace
/// uses; other versions belong to other dependents).
fn locked_for(
    locked: &BTreeMap<String, Vec<semver::Version>>,
    name: &str,
    requirement: &str,
) -> Option<String> {
    let request = semver::VersionReq::parse(requirement).ok()?;
    locked
        .get(name)?
        .iter()
        .filter(|version| request.matches(version))
        .max()
        .map(ToString::to_string)
}

/// Reports direct dependencies with newer releases; `None` when the index cannot be read.
fn outdated() -> Result<Option<Vec<Newer>>> {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml"))?;
    let lock = std::fs::read_to_string(root().join("Cargo.lock"))?;
    let locked = locked_versions(&lock);
    let mut found = Vec::new();
    for (name, requirement) in direct_requirements(&manifest) {
        let output = Command::new("curl")
            .args(["-sSf", "--max-time", "20"])
            .arg(format!("https://index.crates.io/{}", index_path(&name)))
            .stderr(Stdio::null())
            .output();
        let Some(output) = output.ok().filter(|output| output.status.success()) else {
            return Ok(None);
        };
        let index = String::from_utf8_lossy(&output.stdout);
        let locked = locked_for(&locked, &name, &requirement);
        if let Some(newer) = newer(&name, &requirement, locked.as_deref(), &index) {
            found.push(newer);
        }
    }
    Ok(Some(found))
}

/// The `check` task: advisories, bans, licences and sources; unused dependencies; newer
/// releases (reported only).
pub(crate) fn check() -> Result<()> {
    let mut failed = Vec::new();
    let verdict = deny(&root())?;
    if !verdict.passed {
        let advisories: Vec<&str> = verdict
            .report
            .lines()
            .filter_map(|line| line.split("ID: ").nth(1))
            .map(str::trim)
            .collect();
        if !advisories.is_empty() {
            println!("advisories found: {}", advisories.join(", "));
        }
        failed.push("cargo deny (advisories, bans, licences, sources)");
    }
    let (name, version) = MACHETE;
    let machete = crate::install::cargo_tool(name, version, &[])?;
    println!("unused dependencies (cargo-machete):");
    let unused = Command::new(&machete)
        .current_dir(root())
        .status()
        .context("cannot run cargo-machete")?;
    if !unused.success() {
        failed.push("unused dependencies (cargo-machete)");
    }
    match outdated()? {
        None => println!("newer releases: crates.io's index cannot be reached; not checked"),
        Some(found) if found.is_empty() => {
            println!("newer releases: every direct dependency is at its newest release");
        }
        Some(found) => {
            println!("newer releases of direct dependencies ({}):", found.len());
            println!(
                "  {:<24} {:<12} {:<12} {:<14} breaking",
                "crate", "requires", "locked", "compatible"
            );
            for newer in &found {
                println!(
                    "  {:<24} {:<12} {:<12} {:<14} {}",
                    newer.name,
                    newer.requirement,
                    newer.locked.as_deref().unwrap_or("-"),
                    newer.compatible.as_deref().unwrap_or("-"),
                    newer.breaking.as_deref().unwrap_or("-")
                );
            }
            println!("(`cargo xtask deps update` takes compatible ones behind the test gate)");
        }
    }
    if failed.is_empty() {
        println!("deps check passed");
        Ok(())
    } else {
        bail!("deps check failed: {}", failed.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_are_read_from_the_workspace_table() {
        let manifest = r#"
[workspace.dependencies]
velo-core = { path = "crates/velo-core", version = "0.1.0" }
# Data.
arrow = { version = "60", default-features = false }
serde_json = "1"
md5 = { package = "md-5", version = "0.10" }

[profile.release]
debug = false
"#;
        assert_eq!(
            direct_requirements(manifest),
            [
                ("arrow".to_owned(), "60".to_owned()),
                ("serde_json".to_owned(), "1".to_owned()),
                ("md-5".to_owned(), "0.10".to_owned())
            ]
        );
    }

    #[test]
    fn newer_releases_are_split_into_compatible_and_breaking() {
        let index = [
            r#"{"name":"x","vers":"1.2.0","yanked":false}"#,
            r#"{"name":"x","vers":"1.3.0","yanked":false}"#,
            r#"{"name":"x","vers":"1.4.0","yanked":true}"#,
            r#"{"name":"x","vers":"2.0.0-rc.1","yanked":false}"#,
            r#"{"name":"x","vers":"2.1.0","yanked":false}"#,
        ]
        .join("\n");
        let found = newer("x", "1.2", Some("1.2.0"), &index).unwrap();
        assert_eq!(found.compatible.as_deref(), Some("1.3.0"));
        assert_eq!(found.breaking.as_deref(), Some("2.1.0"));
        // At the newest compatible release and allowing the newest: nothing to say.
        assert_eq!(newer("x", "2", Some("2.1.0"), &index), None);
        assert_eq!(index_path("serde"), "se/rd/serde");
        assert_eq!(index_path("cc"), "2/cc");
        assert_eq!(index_path("url"), "3/u/url");
    }

    #[test]
    fn the_lock_file_gives_the_version_the_requirement_takes() {
        let lock = "[[package]]\nname = \"a\"\nversion = \"0.1.3\"\n\n[[package]]\nname = \"a\"\nversion = \"0.2.1\"\n\n[[package]]\nname = \"b\"\nversion = \"3.0.0\"\n";
        let locked = locked_versions(lock);
        assert_eq!(locked_for(&locked, "a", "0.1").as_deref(), Some("0.1.3"));
        assert_eq!(locked_for(&locked, "a", "0.2").as_deref(), Some("0.2.1"));
        assert_eq!(locked_for(&locked, "b", "3").as_deref(), Some("3.0.0"));
        assert_eq!(locked_for(&locked, "c", "1"), None);
    }

    #[test]
    fn cargo_deny_names_where_it_looks_for_the_database() {
        let said = "Cloning into '/root/.cargo/advisory-dbs/advisory-db-3157b0e258782691'...\nfatal: unable to access";
        assert_eq!(
            db_path_in(said),
            Some(PathBuf::from(
                "/root/.cargo/advisory-dbs/advisory-db-3157b0e258782691"
            ))
        );
    }

    #[test]
    fn timing_reports_give_the_slowest_crates() {
        let report = r#"<script>
const UNIT_DATA = [{"i":0,"name":"ring","version":"0.17.8","mode":"build-script","target":"","start":0.1,"duration":2.5},{"i":1,"name":"ring","version":"0.17.8","mode":"todo","target":"","start":2.6,"duration":4.0},{"i":2,"name":"syn","version":"2.0.1","mode":"todo","target":"","start":0.2,"duration":5.0}];
</script>"#;
        let slowest = slowest_units(report, 1);
        assert_eq!(slowest.len(), 1);
        assert_eq!(slowest[0].0, "ring 0.17.8");
        assert!((slowest[0].1 - 6.5).abs() < 1e-9);
    }

    #[test]
    fn a_scratch_graph_counts_direct_and_total_dependencies() {
        let metadata = serde_json::json!({
            "packages": [
                {"id": "w", "name": "w", "version": "0.1.0", "license": "MIT"},
                {"id": "a1", "name": "a", "version": "1.0.0", "license": "MIT"},
                {"id": "a2", "name": "a", "version": "2.0.0", "license": "MIT"},
                {"id": "b", "name": "b", "version": "1.0.0", "license": "Apache-2.0"}
            ],
            "workspace_members": ["w"],
            "resolve": {"nodes": [
                {"id": "w", "deps": [
                    {"pkg": "a1", "dep_kinds": [{"kind": null}]},
                    {"pkg": "b", "dep_kinds": [{"kind": "dev"}]}
                ]},
                {"id": "a1", "deps": [{"pkg": "a2", "dep_kinds": [{"kind": null}]}]},
                {"id": "a2", "deps": []},
                {"id": "b", "deps": []}
            ]}
        });
        let graph = Graph::from_metadata(&metadata);
        let text = render_map(&graph, None);
        assert!(text.contains("| w | 1 | 2 |"), "{text}");
        assert!(text.contains("| a | 1.0.0, 2.0.0 |"), "{text}");
        assert!(text.contains("| MIT | 2 |"), "{text}");
        assert!(
            !text.contains("Apache"),
            "dev-dependencies are not counted: {text}"
        );
    }

    /// A scratch project pinning smallvec 1.6.0 (RUSTSEC-2021-0003, a buffer overflow in
    /// `insert_many`): the check reports it. Needs cargo-deny and crates.io's index (the
    /// registry CI reaches), and the bundle or RustSec itself.
    #[test]
    fn a_crate_with_a_known_advisory_fails_the_check() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path();
        std::fs::create_dir_all(project.join("src")).unwrap();
        // The scratch project pinning `smallvec` at `version`, its lock file resolved.
        let pin = |version: &str| {
            std::fs::write(
                project.join("Cargo.toml"),
                format!("[package]\nname = \"scratch\"\nversion = \"0.1.0\"\nedition = \"2021\"\nlicense = \"MIT\"\npublish = false\n\n[dependencies]\nsmallvec = \"={version}\"\n\n[workspace]\n"),
            )
            .unwrap();
            let lock = Command::new(cargo_bin())
                .current_dir(project)
                .arg("generate-lockfile")
                .status()
                .unwrap();
            assert!(
                lock.success(),
                "cargo generate-lockfile needs crates.io's index"
            );
        };
        std::fs::write(project.join("src/lib.rs"), "").unwrap();
        std::fs::write(
            project.join("deny.toml"),
            "[licenses]\nallow = [\"MIT\", \"Apache-2.0\"]\n",
        )
        .unwrap();
        pin("1.6.0");
        let verdict = deny(project).unwrap();
        assert!(!verdict.passed, "smallvec 1.6.0 must be reported");
        assert!(
            verdict.report.contains("RUSTSEC-2021-0003"),
            "{}",
            verdict.report
        );
        // The same project without the vulnerable version passes.
        pin("1.13.2");
        let verdict = deny(project).unwrap();
        assert!(
            verdict.passed,
            "smallvec 1.13.2 has no advisory: {}",
            verdict.report
        );
    }
}
