//! `cargo xtask containers build|run|check`: velo's OCI image from the engine-neutral
//! `Containerfile`, built with podman or docker (whichever runs here).
//!
//! No base image can be assumed (none can be pulled on a machine without a registry), so the
//! image starts `FROM scratch`: [`stage`] puts the stripped binary, the shared libraries `ldd`
//! names (with the loader), CA certificates and a passwd file naming the non-root user in
//! `target/container/rootfs/`, and the engine copies that in.
//!
//! `check` builds the image, trains and promotes a model in a container on mounted data and a
//! mounted store (the data and configs read-only), has MLflow's Python client read that store
//! on the host, then serves the store mounted read-only from a container and scores rows from
//! the host.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::{install::on_path, python, root, run};

/// The user the image runs as (not root).
const USER_ID: u32 = 10001;

/// The registered model the shipped configs train.
const MODEL: &str = "bikes";

/// A container engine: `podman` (with `--runtime runc` where runc is installed: crun cannot set
/// rlimits on these machines) or `docker`.
pub(crate) struct Engine {
    program: &'static str,
    global: Vec<&'static str>,
}

impl Engine {
    /// The first engine that answers here: podman, else a docker whose daemon runs.
    pub(crate) fn find() -> Result<Self> {
        if on_path("podman") {
            let global = if on_path("runc") {
                vec!["--runtime", "runc"]
            } else {
                Vec::new()
            };
            return Ok(Self {
                program: "podman",
                global,
            });
        }
        let docker_runs = on_path("docker")
            && Command::new("docker")
                .arg("info")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success());
        if docker_runs {
            return Ok(Self {
                program: "docker",
                global: Vec::new(),
            });
        }
        bail!(
            "no container engine: install podman (`cargo xtask install` does, as root with \
             apt-get) or start a Docker daemon"
        )
    }

    /// A command of this engine, with its global options.
    pub(crate) fn command(&self) -> Command {
        let mut command = Command::new(self.program);
        command.args(&self.global);
        command
    }
}

/// A built image.
pub(crate) struct Image {
    pub(crate) tag: String,
    pub(crate) bytes: u64,
}

/// The image's tag: `localhost/velo:VERSION` (the workspace's version).
fn tag() -> String {
    format!(
        "localhost/velo:{}",
        crate::workspace_version().unwrap_or_else(|_| "latest".to_owned())
    )
}

/// Where the build context is staged.
fn context_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root().join("target"), PathBuf::from)
        .join("container")
}

/// Builds the image from `binary` (default: the release build) and prints its size.
pub(crate) fn build(binary: Option<&Path>) -> Result<Image> {
    let engine = Engine::find()?;
    let binary = match binary {
        Some(binary) => binary.to_path_buf(),
        None => crate::build::release_velo()?,
    };
    let context = context_dir();
    stage(&binary, &context)?;
    let tag = tag();
    let mut command = engine.command();
    command.arg("build");
    if engine.program == "podman" {
        // Builds in a chroot: no nested namespaces needed, which CI machines may not allow.
        command.args(["--isolation", "chroot"]);
    }
    run(command
        .args(["-f", "Containerfile", "-t", &tag])
        .arg(&context))?;
    let output = engine
        .command()
        .args(["image", "inspect", "--format", "{{.Size}}", &tag])
        .output()
        .context("cannot inspect the image")?;
    let bytes: u64 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .with_context(|| format!("{} image inspect gave no size", engine.program))?;
    eprintln!(
        "xtask: built {tag} with {}: {:.1} MB",
        engine.program,
        bytes as f64 / 1e6
    );
    Ok(Image { tag, bytes })
}

/// Stages the build context: `rootfs/` (what the image holds), `home/` (the user's home) and
/// the Containerfile.
fn stage(binary: &Path, context: &Path) -> Result<()> {
    if context.exists() {
        std::fs::remove_dir_all(context)
            .with_context(|| format!("cannot clear {}", context.display()))?;
    }
    let rootfs = context.join("rootfs");
    let bin = rootfs.join("usr/local/bin");
    create(&bin)?;
    let velo = bin.join("velo");
    std::fs::copy(binary, &velo)
        .with_context(|| format!("cannot copy {} into the image", binary.display()))?;
    // Symbols are not needed to run; stripping halves a release binary.
    if on_path("strip") {
        run(Command::new("strip").arg("--strip-all").arg(&velo))?;
    }
    for library in shared_libraries(binary)? {
        let inside = rootfs.join(library.strip_prefix("/").unwrap_or(&library));
        create(inside.parent().unwrap_or(&rootfs))?;
        // Copy what a symlink names, under the name the loader looks for.
        std::fs::copy(&library, &inside)
            .with_context(|| format!("cannot copy {} into the image", library.display()))?;
    }
    let certificates = Path::new("/etc/ssl/certs/ca-certificates.crt");
    if certificates.is_file() {
        create(&rootfs.join("etc/ssl/certs"))?;
        std::fs::copy(
            certificates,
            rootfs.join("etc/ssl/certs/ca-certificates.crt"),
        )
        .context("cannot copy the CA certificates")?;
    } else {
        eprintln!(
            "xtask: no {}: the image has no CA certificates",
            certificates.display()
        );
    }
    let etc = rootfs.join("etc");
    create(&etc)?;
    write(
        &etc.join("passwd"),
        &format!(
            "root:x:0:0:root:/root:/sbin/nologin\nvelo:x:{USER_ID}:{USER_ID}:velo:/home/velo:/sbin/nologin\n"
        ),
    )?;
    write(
        &etc.join("group"),
        &format!("root:x:0:\nvelo:x:{USER_ID}:\n"),
    )?;
    write(&etc.join("nsswitch.conf"), "hosts: files dns\n")?;
    let tmp = rootfs.join("tmp");
    create(&tmp)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777))
            .context("cannot set /tmp's mode")?;
    }
    // The user's home: where data, configs and stores are mounted, or written when not.
    for dir in ["mlruns", "outputs"] {
        create(&context.join("home").join(dir))?;
    }
    std::fs::copy(root().join("Containerfile"), context.join("Containerfile"))
        .context("cannot copy the Containerfile")?;
    Ok(())
}

fn create(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// The shared libraries `ldd` says `binary` loads, the loader included (the kernel's vDSO left
/// out).
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let output = Command::new("ldd")
        .arg(binary)
        .output()
        .context("cannot run ldd")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if text.contains("not a dynamic executable") || text.contains("statically linked") {
        return Ok(Vec::new());
    }
    if !output.status.success() {
        bail!("ldd {} failed", binary.display());
    }
    Ok(parse_ldd(&text))
}

/// The library paths of `ldd`'s output: `name => /path (0x…)` and `/path (0x…)` lines.
fn parse_ldd(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, right)) => right.trim(),
                None => line,
            };
            let path = path.split(" (").next()?.trim();
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// `cargo xtask containers run -- ARGS`: velo in the image, on the workspace (mounted at the
/// user's home, running as the calling user so files written there are theirs), port 5000
/// published on 127.0.0.1.
pub(crate) fn run_velo(args: &[String]) -> Result<()> {
    let engine = Engine::find()?;
    let (user, group) = ids()?;
    run(engine
        .command()
        .args(["run", "--rm", "-p", "127.0.0.1:5000:5000"])
        .arg("--user")
        .arg(format!("{user}:{group}"))
        .arg("-v")
        .arg(format!("{}:/home/velo/project", root().display()))
        .args(["-w", "/home/velo/project"])
        .arg(tag())
        .args(args))
}

fn ids() -> Result<(String, String)> {
    let id = |flag: &str| -> Result<String> {
        let output = Command::new("id")
            .arg(flag)
            .output()
            .context("cannot run id")?;
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    Ok((id("-u")?, id("-g")?))
}

/// Builds the image, trains and promotes in it, reads its store with MLflow's client on the
/// host, serves the store read-only from it and scores rows from the host.
pub(crate) fn check(binary: Option<&Path>) -> Result<()> {
    let started = Instant::now();
    let engine = Engine::find()?;
    let binary = match binary {
        Some(binary) => binary.to_path_buf(),
        None => crate::build::release_velo()?,
    };
    let image = build(Some(&binary))?;
    let scratch = tempfile::Builder::new()
        .prefix("velo-container-check")
        .tempdir()
        .context("cannot create a scratch directory")?;
    let project = scratch.path();
    crate::bench::copy_dir(&root().join("configs"), &project.join("configs"))?;
    let (data, configs, store) = (
        project.join("data"),
        project.join("configs"),
        project.join("mlruns"),
    );
    create(&store)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        // The container's user writes the store.
        std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o777))
            .context("cannot open the store to the container's user")?;
    }
    // The data, generated on the host; the container reads it through a read-only mount.
    run(Command::new(&binary)
        .current_dir(project)
        .args(["data", "synth", "--rows", "6000", "--out"])
        .arg(&data))?;

    let mount = |host: &Path, inside: &str, read_only: bool| {
        format!(
            "{}:/home/velo/{inside}{}",
            host.display(),
            if read_only { ":ro" } else { "" }
        )
    };
    let job = |args: &[&str]| -> Result<()> {
        run(engine
            .command()
            .args(["run", "--rm", "--network", "none"])
            .args(["-v", &mount(&data, "data", true)])
            .args(["-v", &mount(&configs, "configs", true)])
            .args(["-v", &mount(&store, "mlruns", false)])
            .arg(&image.tag)
            .arg("run")
            .args(args))
    };
    let trained = Instant::now();
    // The `dev` profile: 20 trees.
    job(&["configs/training.yaml", "--profile", "dev"])?;
    job(&["configs/promotion.yaml"])?;
    let training_seconds = trained.elapsed().as_secs_f64();

    // MLflow's own client reads what the container wrote.
    python::ensure_venv(&root())?;
    let python = python::venv_python(&root());
    let script = root().join("xtask/assets/container_check.py");
    let found = crate::bench::json_of(
        Command::new(&python)
            .arg(&script)
            .arg("store")
            .arg(&store)
            .arg(MODEL),
    )?;
    let registered = found["registered_models"]
        .as_array()
        .is_some_and(|models| models.iter().any(|name| name == MODEL));
    if !registered || found["run_status"] != "FINISHED" {
        bail!("MLflow's client does not see the trained model {MODEL} as expected: {found}");
    }
    eprintln!("xtask: MLflow's client reads the container's store: {found}");

    // Serve the store, mounted read-only, and score from the host.
    let port = velo_child::free_port()?;
    let name = format!("velo-check-{}", std::process::id());
    let mut serve = engine.command();
    serve
        .args(["run", "--rm", "--name", &name])
        .arg("-p")
        .arg(format!("127.0.0.1:{port}:5000"))
        .args(["-v", &mount(&store, "mlruns", true)])
        .arg(&image.tag)
        .args(["serve", "-m", &format!("models:/{MODEL}@Champion")])
        .args(["--host", "0.0.0.0", "-p", "5000"]);
    let server = velo_child::ChildServer::start(
        "velo serve in a container",
        &mut serve,
        port,
        &project.join("serve.log"),
        velo_child::Ready::Http("/ping"),
    );
    let scored = server.and_then(|server| {
        let answer = crate::bench::json_of(
            Command::new(&python)
                .arg(&script)
                .arg("score")
                .arg(server.url())
                .arg(data.join("inputs_test.parquet"))
                .arg("5"),
        );
        drop(server);
        answer.map_err(|error| std::io::Error::other(format!("{error:#}")))
    });
    // The container goes with the process that ran it; make sure.
    let _ = engine
        .command()
        .args(["rm", "-f", &name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let scored = scored?;
    let predictions = scored["predictions"].as_array().map_or(0, Vec::len);
    if predictions != 5 {
        bail!("velo serve in the container answered {scored} for 5 rows");
    }
    let first = scored["predictions"][0].as_f64().unwrap_or(f64::NAN);
    println!(
        "containers check passed in {:.0} s with {}:\n  image {} {:.1} MB\n  training + promotion in containers {:.1} s (data and configs mounted read-only)\n  MLflow's client on the host: model {MODEL} version {} (run {})\n  velo serve in a container on the store mounted read-only: 5 predictions (first {first:.2})",
        started.elapsed().as_secs_f64(),
        engine.program,
        image.tag,
        image.bytes as f64 / 1e6,
        training_seconds,
        value_text(&found["champion_version"]),
        value_text(&found["champion_run"]),
    );
    Ok(())
}

fn value_text(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_lines_give_library_paths() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(text),
            [
                "/lib/x86_64-linux-gnu/libz.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn the_containerfile_runs_velo_as_a_user_from_scratch() {
        let text = std::fs::read_to_string(root().join("Containerfile")).unwrap();
        assert!(text.contains("\nFROM scratch\n"), "{text}");
        assert!(text.contains(&format!("\nUSER {USER_ID}:{USER_ID}\n")));
        assert!(text.contains("ENTRYPOINT [\"/usr/local/bin/velo\"]"));
    }
}
