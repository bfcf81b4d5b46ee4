//! `cargo xtask commits`: the history as Conventional Commits.
//!
//! - `check [BASE]`: every commit since BASE (default: the merge base with `main`, or the root)
//!   must be a Conventional Commit: `type(scope)!: description`, with one of the types the
//!   history uses. Each one that is not is named, with why.
//! - `changelog`: CHANGELOG.md from the history, grouped by type and then scope, by git-cliff
//!   with the workspace's `cliff.toml` (installed into the tools directory on first use; ADR 0013).
//! - `bump [--dry-run]`: the next workspace version from the commits since the last `v*` tag
//!   (a breaking change `!` or `BREAKING CHANGE:`: major; a `feat`: minor; a `fix`: patch),
//!   written to the root manifest and the lock file, with the commits that decided it.

use std::{path::Path, process::Command};

use anyhow::{Context as _, Result, bail};

/// The types a subject may start with.
const TYPES: &[&str] = &[
    "feat", "fix", "docs", "style", "refactor", "perf", "test", "build", "ci", "chore", "revert",
];

/// Why `subject` is not a Conventional Commit subject, or `None` when it is.
pub(crate) fn problem(subject: &str) -> Option<String> {
    let Some((head, description)) = subject.split_once(": ") else {
        return Some("no `type: description` (a colon and a space after the type)".to_owned());
    };
    if description.trim().is_empty() {
        return Some("an empty description".to_owned());
    }
    let head = head.strip_suffix('!').unwrap_or(head);
    let (kind, scope) = match head.split_once('(') {
        Some((kind, rest)) => match rest.strip_suffix(')') {
            Some(scope) => (kind, Some(scope)),
            None => return Some(format!("an unclosed scope in `{head}`")),
        },
        None => (head, None),
    };
    if !TYPES.contains(&kind) {
        return Some(format!("type `{kind}` is not one of {}", TYPES.join(", ")));
    }
    if let Some(scope) = scope {
        let fine = !scope.is_empty()
            && scope
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_,/ .".contains(c));
        if !fine {
            return Some(format!(
                "scope `{scope}`: lowercase letters, digits and `-_,/. ` only"
            ));
        }
    }
    None
}

/// Runs git in `dir`; its standard output, or an error with its standard error.
pub(crate) fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let output = Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .with_context(|| format!("cannot run git {}", args.join(" ")))?;
    if !output.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The commits of `dir`'s checkout since `base` (exclusive) that are not Conventional
/// Commits: `(short hash, subject, why)`. Merge commits are left out.
pub(crate) fn offenders(dir: &Path, base: Option<&str>) -> Result<Vec<(String, String, String)>> {
    let range = match base {
        Some(base) => format!("{base}..HEAD"),
        None => match git(dir, &["merge-base", "HEAD", "main"]) {
            Ok(merge_base) => format!("{}..HEAD", merge_base.trim()),
            Err(_) => "HEAD".to_owned(),
        },
    };
    let log = git(dir, &["log", "--no-merges", "--format=%h%x00%s", &range])?;
    Ok(log
        .lines()
        .filter_map(|line| {
            let (hash, subject) = line.split_once('\0')?;
            problem(subject).map(|why| (hash.to_owned(), subject.to_owned(), why))
        })
        .collect())
}

/// The task: fails naming every offending commit.
pub(crate) fn check(dir: &Path, base: Option<&str>) -> Result<()> {
    let offenders = offenders(dir, base)?;
    if offenders.is_empty() {
        eprintln!(
            "xtask: every commit since {} is a Conventional Commit",
            base.unwrap_or("main's merge base")
        );
        return Ok(());
    }
    for (hash, subject, why) in &offenders {
        eprintln!("{hash} {subject:?}: {why}");
    }
    bail!(
        "{} commit(s) are not Conventional Commits (`type(scope): description`)",
        offenders.len()
    )
}

/// How far a set of commits moves the version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Bump {
    /// No `feat`, `fix` or breaking change: the version stays.
    None,
    Patch,
    Minor,
    Major,
}

/// What one commit asks of the version (`subject` and `body` as git prints them).
pub(crate) fn bump_of(subject: &str, body: &str) -> Bump {
    let Some((head, _)) = subject.split_once(": ") else {
        return Bump::None;
    };
    let breaking = head.ends_with('!')
        || body.lines().any(|line| {
            line.starts_with("BREAKING CHANGE:") || line.starts_with("BREAKING-CHANGE:")
        });
    if breaking {
        return Bump::Major;
    }
    match head.split('(').next().unwrap_or(head) {
        "feat" => Bump::Minor,
        "fix" | "perf" => Bump::Patch,
        _ => Bump::None,
    }
}

/// `version` (`MAJOR.MINOR.PATCH`) moved by `bump`.
pub(crate) fn bumped(version: &str, bump: Bump) -> Result<String> {
    let parts: Vec<u64> = version
        .split('.')
        .map(str::parse)
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("the version `{version}` is not MAJOR.MINOR.PATCH"))?;
    let [major, minor, patch] = parts[..] else {
        bail!("the version `{version}` is not MAJOR.MINOR.PATCH");
    };
    Ok(match bump {
        Bump::None => version.to_owned(),
        Bump::Patch => format!("{major}.{minor}.{}", patch + 1),
        Bump::Minor => format!("{major}.{}.0", minor + 1),
        Bump::Major => format!("{}.0.0", major + 1),
    })
}

/// The last tag `v*` reachable from HEAD, if any.
fn last_version_tag(dir: &Path) -> Option<String> {
    git(
        dir,
        &["describe", "--tags", "--abbrev=0", "--match", "v[0-9]*"],
    )
    .ok()
    .map(|tag| tag.trim().to_owned())
    .filter(|tag| !tag.is_empty())
}

/// A commit as the bump sees it: short hash, subject, and what it asks of the version.
type Classified = (String, String, Bump);

/// The last version tag (if any) and the commits since it (or all).
fn commits_since_release(dir: &Path) -> Result<(Option<String>, Vec<Classified>)> {
    let tag = last_version_tag(dir);
    let range = tag
        .as_ref()
        .map_or_else(|| "HEAD".to_owned(), |tag| format!("{tag}..HEAD"));
    let log = git(
        dir,
        &["log", "--no-merges", "--format=%h%x1f%s%x1f%b%x1e", &range],
    )?;
    let commits = log
        .split('\x1e')
        .filter_map(|record| {
            let mut fields = record.trim_start_matches('\n').split('\x1f');
            let hash = fields.next()?.trim();
            let subject = fields.next()?;
            let body = fields.next().unwrap_or_default();
            (!hash.is_empty())
                .then(|| (hash.to_owned(), subject.to_owned(), bump_of(subject, body)))
        })
        .collect();
    Ok((tag, commits))
}

/// Sets `version` as the workspace's version in the root manifest's text: `[workspace.package]`
/// and every internal crate of `[workspace.dependencies]` (a `path` dependency).
pub(crate) fn set_version(manifest: &str, from: &str, to: &str) -> String {
    let mut section = String::new();
    let old = format!("version = \"{from}\"");
    let new = format!("version = \"{to}\"");
    let mut text: String = manifest
        .lines()
        .map(|line| {
            if line.starts_with('[') {
                section = line.trim().to_owned();
            }
            let ours = (section == "[workspace.package]"
                && line.trim_start().starts_with("version"))
                || (section == "[workspace.dependencies]" && line.contains("path = "));
            if ours {
                line.replace(&old, &new)
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    if manifest.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// The bump task: computes the next version, says why, and (unless `dry_run`) writes it.
pub(crate) fn bump(dir: &Path, dry_run: bool) -> Result<()> {
    let current = crate::workspace_version()?;
    let (tag, commits) = commits_since_release(dir)?;
    let since = tag.map_or_else(|| "the first commit".to_owned(), |tag| format!("tag {tag}"));
    let bump = commits
        .iter()
        .map(|(_, _, bump)| *bump)
        .max()
        .unwrap_or(Bump::None);
    let count = |kind: Bump| commits.iter().filter(|(_, _, bump)| *bump == kind).count();
    let next = bumped(&current, bump)?;
    println!(
        "{} commits since {since}: {} breaking, {} feat, {} fix/perf, {} other",
        commits.len(),
        count(Bump::Major),
        count(Bump::Minor),
        count(Bump::Patch),
        count(Bump::None)
    );
    if bump == Bump::None {
        println!("no feat, fix or breaking change: the version stays {current}");
        return Ok(());
    }
    let deciding: Vec<&Classified> = commits
        .iter()
        .filter(|(_, _, kind)| *kind == bump)
        .collect();
    let rule = match bump {
        Bump::Major => "a breaking change bumps the major version",
        Bump::Minor => "a feat (and no breaking change) bumps the minor version",
        Bump::Patch => "a fix or perf (and no feat or breaking change) bumps the patch version",
        Bump::None => unreachable!("returned above"),
    };
    println!(
        "{current} -> {next}: {rule}; the deciding commits ({}):",
        deciding.len()
    );
    for (hash, subject, _) in deciding.iter().take(10) {
        println!("  {hash} {subject}");
    }
    if deciding.len() > 10 {
        println!("  … and {} more", deciding.len() - 10);
    }
    if dry_run {
        println!("(--dry-run: nothing written)");
        return Ok(());
    }
    let manifest = crate::root().join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("cannot read {}", manifest.display()))?;
    std::fs::write(&manifest, set_version(&text, &current, &next))
        .with_context(|| format!("cannot write {}", manifest.display()))?;
    // The lock file records the workspace's versions.
    crate::run(std::process::Command::new(crate::cargo_bin()).args([
        "update",
        "--workspace",
        "--offline",
    ]))?;
    println!("wrote {next} to Cargo.toml and Cargo.lock; tag the release with `git tag v{next}`");
    Ok(())
}

/// git-cliff, pinned; installed into the tools directory on first use.
const GIT_CLIFF: (&str, &str) = ("git-cliff", "2.10.1");

/// The changelog task: git-cliff renders CHANGELOG.md from the whole history with `cliff.toml`.
pub(crate) fn changelog(dir: &Path) -> Result<()> {
    let (name, version) = GIT_CLIFF;
    let binary = crate::install::cargo_tool(name, version, &["--no-default-features"])?;
    let output = dir.join("CHANGELOG.md");
    crate::run(
        std::process::Command::new(&binary)
            .current_dir(dir)
            .arg("--config")
            .arg(dir.join("cliff.toml"))
            .arg("--output")
            .arg(&output),
    )?;
    let text = std::fs::read_to_string(&output)
        .with_context(|| format!("git-cliff wrote no {}", output.display()))?;
    let sections = text.lines().filter(|line| line.starts_with("### ")).count();
    println!(
        "wrote {} ({} lines, {sections} type sections)",
        output.display(),
        text.lines().count()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_checked_as_conventional_commits() {
        for good in [
            "feat(jobs): the gate judges shadow traffic (#20)",
            "fix: a race",
            "refactor(jobs,tests)!: one helper",
            "docs(architecture): the sketch",
        ] {
            assert_eq!(problem(good), None, "{good}");
        }
        for (bad, why) in [
            ("Added a feature", "no `type: description`"),
            ("feature(jobs): more", "type `feature` is not one of"),
            ("feat(Jobs): more", "scope `Jobs`"),
            ("feat(jobs: more", "an unclosed scope"),
            ("fix: ", "an empty description"),
        ] {
            let problem = problem(bad).unwrap_or_default();
            assert!(problem.contains(why), "{bad}: {problem}");
        }
    }

    #[test]
    fn a_history_with_a_bad_commit_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| git(dir.path(), args).unwrap();
        run(&["init", "-q", "-b", "main"]);
        run(&["config", "user.email", "ci@example.invalid"]);
        run(&["config", "user.name", "ci"]);
        run(&["commit", "-q", "--allow-empty", "-m", "chore: start"]);
        let base = run(&["rev-parse", "HEAD"]);
        run(&["commit", "-q", "--allow-empty", "-m", "feat(core): fine"]);
        run(&["commit", "-q", "--allow-empty", "-m", "wip stuff"]);
        let found = offenders(dir.path(), Some(base.trim())).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].1, "wip stuff");
        assert!(check(dir.path(), Some(base.trim())).is_err());
        // The fine commit alone passes.
        let fine = run(&["rev-parse", "HEAD~1"]);
        let between = offenders(dir.path(), Some(base.trim()))
            .unwrap()
            .into_iter()
            .filter(|(hash, _, _)| fine.starts_with(hash.as_str()))
            .count();
        assert_eq!(between, 0);
    }

    #[test]
    fn commits_decide_the_bump() {
        assert_eq!(bump_of("feat(io): s3", ""), Bump::Minor);
        assert_eq!(bump_of("fix: a race", ""), Bump::Patch);
        assert_eq!(bump_of("perf(models): faster", ""), Bump::Patch);
        assert_eq!(bump_of("docs: words", ""), Bump::None);
        assert_eq!(bump_of("refactor(jobs)!: new trait", ""), Bump::Major);
        assert_eq!(
            bump_of("feat: x", "Some text.\n\nBREAKING CHANGE: the config moved"),
            Bump::Major
        );
        assert_eq!(bumped("0.1.0", Bump::Minor).unwrap(), "0.2.0");
        assert_eq!(bumped("0.1.7", Bump::Patch).unwrap(), "0.1.8");
        assert_eq!(bumped("1.4.2", Bump::Major).unwrap(), "2.0.0");
        assert_eq!(bumped("1.4.2", Bump::None).unwrap(), "1.4.2");
        assert!(bumped("1.4", Bump::Minor).is_err());
    }

    #[test]
    fn the_version_is_set_in_the_workspace_and_its_crates_only() {
        let manifest = "[workspace.package]\nversion = \"0.1.0\"\n\n[workspace.dependencies]\nvelo-core = { path = \"crates/velo-core\", version = \"0.1.0\" }\nserde = { version = \"0.1.0\" }\n";
        let set = set_version(manifest, "0.1.0", "0.2.0");
        assert!(
            set.contains("[workspace.package]\nversion = \"0.2.0\""),
            "{set}"
        );
        assert!(
            set.contains("velo-core = { path = \"crates/velo-core\", version = \"0.2.0\" }"),
            "{set}"
        );
        assert!(set.contains("serde = { version = \"0.1.0\" }"), "{set}");
        assert!(set.ends_with('\n'));
    }

    #[test]
    fn bump_reads_the_commits_since_the_last_tag() {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| git(dir.path(), args).unwrap();
        run(&["init", "-q", "-b", "main"]);
        run(&["config", "user.email", "ci@example.invalid"]);
        run(&["config", "user.name", "ci"]);
        run(&["commit", "-q", "--allow-empty", "-m", "feat!: first"]);
        run(&["tag", "v1.0.0"]);
        run(&["commit", "-q", "--allow-empty", "-m", "fix(io): one"]);
        run(&["commit", "-q", "--allow-empty", "-m", "docs: two"]);
        let (tag, commits) = commits_since_release(dir.path()).unwrap();
        assert_eq!(tag.as_deref(), Some("v1.0.0"));
        let kinds: Vec<Bump> = commits.iter().map(|(_, _, bump)| *bump).collect();
        assert_eq!(kinds, [Bump::None, Bump::Patch]);
    }
}
