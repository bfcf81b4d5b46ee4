//! `cargo xtask commits check [BASE]`: every commit since BASE (default: the merge base with
//! `main`, or the root) must be a Conventional Commit: `type(scope)!: description`, with one
//! of the types the history uses. Each one that is not is named, with why.

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

fn git(dir: &Path, args: &[&str]) -> Result<String> {
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
}
