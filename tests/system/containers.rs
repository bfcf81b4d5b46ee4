//! velo's OCI image, built and checked for real with the engine `cargo xtask install` provides
//! (podman): `cargo xtask containers check` builds the image around this build's `velo`,
//! trains and promotes in containers on mounted data and a mounted store, has MLflow's Python
//! client read that store, and scores rows from the host against `velo serve` in a container.

use std::{path::PathBuf, process::Command};

/// The xtask binary of this build, beside `velo`; `None` when the build has not made it.
fn xtask_binary() -> Option<PathBuf> {
    let velo = crate::velo_binary();
    let xtask = velo.with_file_name(format!("xtask{}", std::env::consts::EXE_SUFFIX));
    xtask.is_file().then_some(xtask)
}

/// True when podman is on `PATH`.
fn podman_installed() -> bool {
    Command::new("podman")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success())
}

#[test]
#[allow(clippy::print_stderr, reason = "a skipped test says so")]
fn the_image_trains_serves_and_its_store_reads_in_mlflow() {
    if !podman_installed() {
        assert!(
            std::env::var_os("VELO_CONTAINERS_IT").is_none(),
            "VELO_CONTAINERS_IT is set but podman is missing"
        );
        eprintln!(
            "SKIPPED: no container engine (`cargo xtask install` installs podman as root with apt-get)"
        );
        return;
    }
    let root = crate::root();
    let mut command = match xtask_binary() {
        Some(xtask) => Command::new(xtask),
        None => {
            let mut cargo =
                Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
            cargo.args(["run", "--quiet", "-p", "xtask", "--"]);
            cargo
        }
    };
    let output = command
        .current_dir(&root)
        .env("CARGO_MANIFEST_DIR", root.join("xtask"))
        .args(["containers", "check", "--binary"])
        .arg(crate::velo_binary())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "containers check failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("containers check passed"), "{stdout}");
    assert!(
        stdout.contains("5 predictions"),
        "the served container answered: {stdout}"
    );
    assert!(
        stderr.contains("MLflow's client reads the container's store"),
        "{stderr}"
    );
}
