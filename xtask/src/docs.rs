//! `cargo xtask docs`: the API documentation (rustdoc, warnings are errors) and the user guide
//! (`docs/guide/`, mdBook, into `target/guide/`), whose every internal link and anchor must
//! resolve.
//!
//! mdBook checks no links; the maintained checker (mdbook-linkcheck) is a renderer that also
//! fetches web links, which a machine without network cannot. [`broken_links`] reads the built
//! HTML instead: every `href` that is not a web or mail address must name a file of the book,
//! and its `#fragment` an `id` in that file.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Component, Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::{cargo_bin, root, run};

/// mdBook, pinned; installed into the tools directory on first use.
const MDBOOK: (&str, &str) = ("mdbook", "0.4.52");

/// Builds rustdoc and the guide, then checks the guide's links.
pub(crate) fn docs() -> Result<()> {
    run(Command::new(cargo_bin())
        .args(["doc", "--workspace", "--no-deps", "--locked"])
        .env("RUSTDOCFLAGS", "-D warnings"))?;
    guide()
}

/// Builds the guide into `target/guide` and fails on a broken internal link.
pub(crate) fn guide() -> Result<()> {
    let (name, version) = MDBOOK;
    let mdbook = crate::install::cargo_tool(
        name,
        version,
        &["--no-default-features", "--features", "search"],
    )?;
    let out = crate::packages::target_dir().join("guide");
    run(Command::new(mdbook)
        .arg("build")
        .arg(root().join("docs/guide"))
        .arg("--dest-dir")
        .arg(&out))?;
    let broken = broken_links(&out)?;
    if !broken.is_empty() {
        bail!(
            "the guide has {} broken link(s):\n{}",
            broken.len(),
            broken.join("\n")
        );
    }
    println!(
        "the guide is in {} (every internal link resolves)",
        out.join("index.html").display()
    );
    Ok(())
}

/// Every link of the HTML files under `book` that does not resolve, as `page: href (why)`.
pub(crate) fn broken_links(book: &Path) -> Result<Vec<String>> {
    let mut pages = BTreeMap::new();
    collect_html(book, book, &mut pages)?;
    let ids: BTreeMap<&PathBuf, BTreeSet<String>> = pages
        .iter()
        .map(|(path, text)| (path, attribute_values(text, "id").into_iter().collect()))
        .collect();
    let mut broken = Vec::new();
    for (page, text) in &pages {
        for href in attribute_values(text, "href") {
            if href.is_empty() || href.contains("://") || href.starts_with("mailto:") {
                continue;
            }
            let (target, fragment) = match href.split_once('#') {
                Some((target, fragment)) => (target, Some(fragment)),
                None => (href.as_str(), None),
            };
            let resolved = if target.is_empty() {
                Some(page.clone())
            } else {
                resolve(page, target)
            };
            let Some(resolved) = resolved else {
                broken.push(format!("{}: {href} (outside the book)", page.display()));
                continue;
            };
            let file = if resolved.as_os_str().is_empty() || target.ends_with('/') {
                resolved.join("index.html")
            } else {
                resolved
            };
            if !book.join(&file).is_file() {
                broken.push(format!("{}: {href} (no such page)", page.display()));
                continue;
            }
            if let Some(fragment) = fragment.filter(|fragment| !fragment.is_empty())
                && let Some(known) = ids.get(&file)
                && !known.contains(fragment)
            {
                broken.push(format!(
                    "{}: {href} (no id `{fragment}` there)",
                    page.display()
                ));
            }
        }
    }
    Ok(broken)
}

/// The HTML files under `dir`, keyed by their path relative to `book`.
fn collect_html(book: &Path, dir: &Path, pages: &mut BTreeMap<PathBuf, String>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect_html(book, &path, pages)?;
        } else if path
            .extension()
            .is_some_and(|extension| extension == "html")
        {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let relative = path.strip_prefix(book).unwrap_or(&path).to_path_buf();
            pages.insert(relative, text);
        }
    }
    Ok(())
}

/// `target` relative to the directory of `page` (both within the book), normalised; `None` when
/// it leaves the book.
fn resolve(page: &Path, target: &str) -> Option<PathBuf> {
    let mut parts: Vec<String> = page
        .parent()
        .into_iter()
        .flat_map(Path::components)
        .filter_map(|component| match component {
            Component::Normal(part) => Some(part.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part.to_owned()),
        }
    }
    Some(parts.iter().collect())
}

/// The values of `name="…"` attributes in `html` (decoded `&amp;`).
fn attribute_values(html: &str, name: &str) -> Vec<String> {
    let needle = format!(" {name}=\"");
    html.match_indices(needle.as_str())
        .filter_map(|(at, _)| {
            let start = at + needle.len();
            let end = html[start..].find('"')? + start;
            Some(html[start..end].replace("&amp;", "&"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_pages_and_anchors_are_found_and_good_ones_pass() {
        let dir = tempfile::tempdir().unwrap();
        let book = dir.path();
        std::fs::create_dir_all(book.join("reference")).unwrap();
        std::fs::write(
            book.join("index.html"),
            r##"<a href="jobs.html#the-lifecycle">ok</a> <a href="reference/config.html#jobconfig">ok</a>
<a href="https://example.invalid/x">web</a> <a href="#top">self</a> <h1 id="top">t</h1>
<a href="missing.html">bad page</a> <a href="jobs.html#nowhere">bad anchor</a>"##,
        )
        .unwrap();
        std::fs::write(book.join("jobs.html"), r#"<h2 id="the-lifecycle">x</h2>"#).unwrap();
        std::fs::write(
            book.join("reference/config.html"),
            r#"<h3 id="jobconfig">j</h3><a href="../index.html#top">up</a><a href="../../outside.html">out</a>"#,
        )
        .unwrap();
        let broken = broken_links(book).unwrap();
        assert_eq!(broken.len(), 3, "{broken:#?}");
        assert!(
            broken
                .iter()
                .any(|line| line.contains("missing.html (no such page)"))
        );
        assert!(
            broken
                .iter()
                .any(|line| line.contains("jobs.html#nowhere (no id `nowhere` there)"))
        );
        assert!(
            broken
                .iter()
                .any(|line| line.contains("../../outside.html (outside the book)"))
        );
    }
}
