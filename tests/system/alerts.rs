//! A job's end reaches a real desktop notification daemon.
//!
//! The test starts a virtual X display (Xvfb), a private D-Bus session (dbus-run-session) and
//! the dunst notification daemon in it, runs a job that fails (a promotion with no registered
//! model), and reads back from dunst what it was shown. It needs those programs and
//! libnotify's `notify-send` (`cargo xtask install` adds the Debian packages when it can);
//! without them it says so and skips, unless `VELO_DESKTOP_IT=1` requires it.

use std::{
    io::Read as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::velo;

fn has(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Starts Xvfb on a display it picks; returns the child and the display (`:N`).
fn xvfb() -> (std::process::Child, String) {
    let mut child = Command::new("Xvfb")
        .args([
            "-displayfd",
            "1",
            "-screen",
            "0",
            "640x480x24",
            "-nolisten",
            "tcp",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let start = Instant::now();
    let mut number = String::new();
    let mut byte = [0_u8; 1];
    while start.elapsed() < Duration::from_secs(20) {
        match stdout.read(&mut byte) {
            Ok(1) if byte[0] == b'\n' => break,
            Ok(1) => number.push(char::from(byte[0])),
            _ => break,
        }
    }
    assert!(!number.is_empty(), "Xvfb did not report its display");
    (child, format!(":{number}"))
}

#[test]
fn a_failed_job_shows_a_desktop_notification() {
    let needed = [
        "Xvfb",
        "dbus-run-session",
        "dunst",
        "dunstctl",
        "notify-send",
    ];
    let missing: Vec<&str> = needed.into_iter().filter(|p| !has(p)).collect();
    if !missing.is_empty() {
        assert!(
            std::env::var_os("VELO_DESKTOP_IT").is_none(),
            "VELO_DESKTOP_IT is set but {missing:?} are missing"
        );
        eprintln!("SKIPPED: no desktop notification stack ({missing:?} missing)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("mlruns");
    let (mut display, name) = xvfb();
    let velo_program = velo().get_program().to_owned();
    // Inside the session: dunst, wait until it answers, the job, then dunst's history (shown
    // notifications enter it once closed).
    let script = r#"
        dunst >/dev/null 2>&1 &
        for _ in $(seq 100); do dunstctl count >/dev/null 2>&1 && break; sleep 0.1; done
        "$VELO" run configs/promotion.yaml -e "job: {services: {mlflow: {tracking_uri: '$STORE', registry_uri: '$STORE'}}}" >/dev/null 2>"$STDERR"
        echo "velo exit $?" >&2
        sleep 0.3
        dunstctl close-all
        sleep 0.3
        dunstctl history
        kill %1
    "#;
    let stderr_file = dir.path().join("velo.stderr");
    let output = Command::new("dbus-run-session")
        .args(["--", "sh", "-c", script])
        .current_dir(crate::root())
        .env("DISPLAY", &name)
        .env("VELO", &velo_program)
        .env("STORE", &store)
        .env("STDERR", &stderr_file)
        .output()
        .unwrap();
    let _ = display.kill();
    let _ = display.wait();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let velo_stderr = std::fs::read_to_string(&stderr_file).unwrap_or_default();
    assert!(stderr.contains("velo exit 1"), "{stderr}\n{velo_stderr}");
    let history: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("dunstctl history: {error}\n{stderr}"));
    let shown: Vec<(String, String, String)> = history["data"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let field = |key: &str| n[key]["data"].as_str().unwrap_or_default().to_owned();
            (field("appname"), field("summary"), field("body"))
        })
        .collect();
    assert_eq!(shown.len(), 1, "{shown:?}");
    let (app, summary, body) = &shown[0];
    assert_eq!(app, "velo");
    assert_eq!(summary, "PromotionJob failed");
    assert!(body.contains("bikes"), "{body}");
    // Shown on the desktop, so not printed as well.
    assert!(
        !velo_stderr.contains("[velo] PromotionJob failed"),
        "{velo_stderr}"
    );
}
