//! `cargo xtask packages`: what a release ships, under `target/dist/`.
//!
//! - `crates/`: `cargo package` of every publishable workspace crate, each verified by cargo
//!   building it from its packaged sources;
//! - `velo-VERSION-TARGET.tar.gz`: the release binary with the README and the licences, and its
//!   SHA-256 in `velo-VERSION-TARGET.tar.gz.sha256` (`sha256sum -c` reads it);
//! - `sbom/`: a CycloneDX SBOM (JSON) of each workspace crate, by cargo-cyclonedx (installed
//!   into the tools directory on first use, pinned).
//!
//! The archive is reproducible: entries sorted, owner root, modes 0755/0644, and every time set
//! to `SOURCE_DATE_EPOCH` (or the last commit's time).

use std::{
    fs::File,
    io::{BufWriter, Read as _, Write as _},
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::{cargo_bin, root, run};

/// cargo-cyclonedx, pinned.
const CYCLONEDX: (&str, &str) = ("cargo-cyclonedx", "0.5.9");

/// Files of the workspace root that go into the archive beside the binary.
const ARCHIVED_DOCS: &[&str] = &["README.md", "LICENSE-MIT", "LICENSE-APACHE", "CHANGELOG.md"];

/// Where cargo builds: `$CARGO_TARGET_DIR`, else `target/`.
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// Builds every output and lists them.
pub(crate) fn packages(allow_dirty: bool) -> Result<()> {
    let dist = target_dir().join("dist");
    if dist.exists() {
        std::fs::remove_dir_all(&dist)
            .with_context(|| format!("cannot clear {}", dist.display()))?;
    }
    std::fs::create_dir_all(&dist).with_context(|| format!("cannot create {}", dist.display()))?;
    let version = crate::workspace_version()?;

    crates(&dist.join("crates"), allow_dirty)?;
    let velo = stripped_copy(&crate::build::release_velo()?, &dist)?;
    let archive = dist.join(format!("velo-{version}-{}.tar.gz", host_triple()?));
    write_archive(&velo, &archive, source_date_epoch()?)?;
    let checksum = write_checksum(&archive)?;
    std::fs::remove_file(&velo).with_context(|| format!("cannot remove {}", velo.display()))?;
    sbom(&dist.join("sbom"))?;

    println!("target/dist/ ({}):", dist.display());
    for file in files_under(&dist)? {
        let bytes = std::fs::metadata(&file).map_or(0, |meta| meta.len());
        let shown = file.strip_prefix(&dist).unwrap_or(&file);
        println!("  {:<60} {:>12} bytes", shown.display(), bytes);
    }
    println!("SHA-256 of the archive: {checksum}");
    Ok(())
}

/// The names of the workspace's publishable packages (no `publish = false`).
fn publishable() -> Result<Vec<(String, String)>> {
    Ok(publishable_in(&crate::cargo_metadata(&["--no-deps"])?))
}

/// The `(name, version)` of each package of `metadata` that may be published.
fn publishable_in(metadata: &Value) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        // `publish`: null (anywhere) or a list of registries; `[]` is `publish = false`.
        .filter(|package| {
            package["publish"]
                .as_array()
                .is_none_or(|list| !list.is_empty())
        })
        .filter_map(|package| {
            Some((
                package["name"].as_str()?.to_owned(),
                package["version"].as_str()?.to_owned(),
            ))
        })
        .collect();
    found.sort();
    found
}

/// `cargo package` of every publishable crate (cargo verifies each by building its packaged
/// sources), copied into `out`.
fn crates(out: &Path, allow_dirty: bool) -> Result<()> {
    let packages = publishable()?;
    let mut command = Command::new(cargo_bin());
    command.args(["package", "--locked"]);
    if allow_dirty {
        command.arg("--allow-dirty");
    }
    for (name, _) in &packages {
        command.args(["-p", name]);
    }
    run(&mut command)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    for (name, version) in &packages {
        let file = format!("{name}-{version}.crate");
        let packaged = target_dir().join("package").join(&file);
        std::fs::copy(&packaged, out.join(&file))
            .with_context(|| format!("cargo package made no {}", packaged.display()))?;
    }
    Ok(())
}

/// A copy of `binary` in `dir` without its symbols (`strip`, when installed), for the archive.
fn stripped_copy(binary: &Path, dir: &Path) -> Result<PathBuf> {
    let copy = dir.join("velo.stripped");
    std::fs::copy(binary, &copy).with_context(|| format!("cannot copy {}", binary.display()))?;
    if crate::install::on_path("strip") {
        run(Command::new("strip").arg("--strip-all").arg(&copy))?;
    }
    Ok(copy)
}

/// The target triple rustc builds for by default (`host:` of `rustc -vV`).
pub(crate) fn host_triple() -> Result<String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let output = Command::new(rustc)
        .arg("-vV")
        .output()
        .context("cannot run rustc -vV")?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(str::to_owned)
        .context("rustc -vV names no host")
}

/// `SOURCE_DATE_EPOCH` when set, else the time of the last commit (0 outside git).
fn source_date_epoch() -> Result<u64> {
    if let Ok(value) = std::env::var("SOURCE_DATE_EPOCH") {
        return value
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH is not a number of seconds: {value}"));
    }
    let output = Command::new("git")
        .current_dir(root())
        .args(["log", "-1", "--format=%ct"])
        .output();
    Ok(output
        .ok()
        .and_then(|output| String::from_utf8_lossy(&output.stdout).trim().parse().ok())
        .unwrap_or(0))
}

/// Writes `archive`: a directory named like the archive holding `binary` (as `velo`) and the
/// root's [`ARCHIVED_DOCS`] that exist.
fn write_archive(binary: &Path, archive: &Path, mtime: u64) -> Result<()> {
    let name = archive
        .file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| name.strip_suffix(".tar.gz"))
        .context("the archive's name must end in .tar.gz")?;
    let mut entries: Vec<(String, PathBuf, u32)> =
        vec![(format!("{name}/velo"), binary.to_path_buf(), 0o755)];
    for doc in ARCHIVED_DOCS {
        let path = root().join(doc);
        if path.is_file() {
            entries.push((format!("{name}/{doc}"), path, 0o644));
        }
    }
    entries.sort();
    let file =
        File::create(archive).with_context(|| format!("cannot create {}", archive.display()))?;
    let encoder = flate2::write::GzEncoder::new(BufWriter::new(file), flate2::Compression::best());
    let mut tar = tar::Builder::new(encoder);
    tar.mode(tar::HeaderMode::Deterministic);
    for (inside, path, mode) in &entries {
        let mut source =
            File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut header = tar::Header::new_gnu();
        header.set_size(source.metadata()?.len());
        header.set_mode(*mode);
        header.set_mtime(mtime);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, inside, &mut source)
            .with_context(|| format!("cannot add {} to the archive", path.display()))?;
    }
    let mut writer = tar
        .into_inner()
        .context("cannot finish the archive")?
        .finish()
        .context("cannot finish the archive's compression")?;
    writer.flush().context("cannot write the archive")?;
    Ok(())
}

/// The SHA-256 of a file, in lowercase hex.
fn sha256_of(path: &Path) -> Result<String> {
    let mut file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0_u8; 1 << 16];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}

/// Writes `ARCHIVE.sha256` in `sha256sum`'s format and returns the digest.
fn write_checksum(archive: &Path) -> Result<String> {
    let digest = sha256_of(archive)?;
    let name = archive
        .file_name()
        .and_then(|name| name.to_str())
        .context("the archive has no name")?;
    let path = archive.with_file_name(format!("{name}.sha256"));
    std::fs::write(&path, format!("{digest}  {name}\n"))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(digest)
}

/// A CycloneDX JSON SBOM per workspace crate (every dependency, all features), moved into
/// `out` and checked to parse as CycloneDX with components.
fn sbom(out: &Path) -> Result<()> {
    let (name, version) = CYCLONEDX;
    let tool = crate::install::cargo_tool(name, version, &[])?;
    run(Command::new(cargo_bin())
        // cargo finds `cargo-cyclonedx` on PATH; put the tools directory first.
        .env("PATH", path_with(tool.parent().unwrap_or(Path::new("."))))
        .args([
            "cyclonedx",
            "--format",
            "json",
            "--all-features",
            "--spec-version",
            "1.5",
            "--override-filename",
            "sbom",
        ]))?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let (mut written, mut components) = (0, 0);
    for (crate_name, manifest_dir) in members()? {
        let produced = manifest_dir.join("sbom.json");
        if !produced.is_file() {
            continue;
        }
        let target = out.join(format!("{crate_name}.cdx.json"));
        std::fs::rename(&produced, &target)
            .with_context(|| format!("cannot move {}", produced.display()))?;
        let bom: Value = serde_json::from_str(&std::fs::read_to_string(&target)?)
            .with_context(|| format!("{} is not JSON", target.display()))?;
        if bom["bomFormat"] != "CycloneDX" {
            bail!("{} is not a CycloneDX SBOM", target.display());
        }
        // A crate without dependencies (velo-child) has no components.
        components += bom["components"].as_array().map_or(0, Vec::len);
        written += 1;
    }
    if written == 0 || components == 0 {
        bail!("cargo cyclonedx wrote no SBOM with components ({written} files)");
    }
    Ok(())
}

/// `PATH` with `dir` first.
fn path_with(dir: &Path) -> std::ffi::OsString {
    let mut paths = vec![dir.to_path_buf()];
    if let Some(path) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(paths).unwrap_or_default()
}

/// The name and manifest directory of every workspace member.
fn members() -> Result<Vec<(String, PathBuf)>> {
    let metadata = crate::cargo_metadata(&["--no-deps"])?;
    Ok(metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|package| {
            let name = package["name"].as_str()?.to_owned();
            let dir = Path::new(package["manifest_path"].as_str()?).parent()?;
            Some((name, dir.to_path_buf()))
        })
        .collect())
}

/// Every file under `dir`, sorted.
fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_publishable_packages_are_packaged() {
        let metadata = serde_json::json!({"packages": [
            {"name": "velo-core", "version": "0.1.0", "publish": null},
            {"name": "xtask", "version": "0.0.0", "publish": []},
            {"name": "velo-io", "version": "0.1.0", "publish": ["crates-io"]},
        ]});
        assert_eq!(
            publishable_in(&metadata),
            [
                ("velo-core".to_owned(), "0.1.0".to_owned()),
                ("velo-io".to_owned(), "0.1.0".to_owned())
            ]
        );
    }

    #[test]
    fn the_archive_is_reproducible_and_its_checksum_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("velo-binary");
        std::fs::write(&binary, b"\x7fELF not really").unwrap();
        let first = dir
            .path()
            .join("a/velo-0.1.0-x86_64-unknown-linux-gnu.tar.gz");
        let second = dir
            .path()
            .join("b/velo-0.1.0-x86_64-unknown-linux-gnu.tar.gz");
        for archive in [&first, &second] {
            std::fs::create_dir_all(archive.parent().unwrap()).unwrap();
            write_archive(&binary, archive, 1_700_000_000).unwrap();
        }
        assert_eq!(
            std::fs::read(&first).unwrap(),
            std::fs::read(&second).unwrap()
        );

        // The entries: the binary, executable, under the archive's own directory.
        let mut reader =
            tar::Archive::new(flate2::read::GzDecoder::new(File::open(&first).unwrap()));
        let mut names = Vec::new();
        for entry in reader.entries().unwrap() {
            let entry = entry.unwrap();
            let path = entry.path().unwrap().display().to_string();
            if path.ends_with("/velo") {
                assert_eq!(entry.header().mode().unwrap(), 0o755);
            }
            names.push(path);
        }
        assert!(
            names.contains(&"velo-0.1.0-x86_64-unknown-linux-gnu/velo".to_owned()),
            "{names:?}"
        );
        assert!(
            names.iter().any(|name| name.ends_with("/README.md")),
            "{names:?}"
        );

        // `sha256sum -c` accepts the checksum file.
        let digest = write_checksum(&first).unwrap();
        assert_eq!(digest.len(), 64);
        let checked = Command::new("sha256sum")
            .arg("-c")
            .arg("velo-0.1.0-x86_64-unknown-linux-gnu.tar.gz.sha256")
            .current_dir(first.parent().unwrap())
            .output()
            .unwrap();
        assert!(
            checked.status.success(),
            "{}",
            String::from_utf8_lossy(&checked.stdout)
        );
        // And refuses a changed archive.
        std::fs::write(&first, b"changed").unwrap();
        let refused = Command::new("sha256sum")
            .arg("-c")
            .arg("velo-0.1.0-x86_64-unknown-linux-gnu.tar.gz.sha256")
            .current_dir(first.parent().unwrap())
            .output()
            .unwrap();
        assert!(!refused.status.success());
    }
}
