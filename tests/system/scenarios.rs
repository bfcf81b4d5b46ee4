//! The scenarios job through the binary: the shipped suite on a small synthetic model, its
//! failures named with exit 1 after everything is logged, a failure point found by bisection,
//! and the HTML report rendered in headless Chromium.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use velo_io::registries::{self, RunStatus};

use crate::jobs::{model_store, run_job};

/// Redirects the shipped suite's data and outputs into `dir`.
fn paths(dir: &Path) -> String {
    let data = dir.join("data");
    let out = dir.join("outputs");
    format!(
        "inputs: {{path: '{}'}}, targets: {{path: '{}'}}, outputs: {{table: {{path: '{}'}}, junit: '{}', report: '{}'}}",
        data.join("inputs_test.parquet").display(),
        data.join("targets_test.parquet").display(),
        out.join("scenarios.parquet").display(),
        out.join("scenarios.xml").display(),
        out.join("scenarios.html").display(),
    )
}

/// Debian's Chromium, or `None` (the rendering then skips visibly, except in CI or when `cargo xtask test` installed it).
pub(crate) fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser"].iter().find_map(|name| {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|candidate| candidate.is_file())
        })
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none() && std::env::var_os("VELO_BROWSER_IT").is_none(),
            "chromium is missing (`cargo xtask test` installs it)"
        );
        skipped();
    }
    found
}

#[allow(clippy::print_stderr, reason = "a skipped test says so")]
fn skipped() {
    eprintln!("SKIPPED: chromium is not installed; the report is not rendered");
}

/// Renders `page` headless: its DOM after layout, and a screenshot at `png`.
pub(crate) fn render(chromium: &Path, page: &Path, png: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let flags = |command: &mut Command| {
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1400,2400",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()));
    };
    let url = format!("file://{}", page.display());
    let mut shot = Command::new(chromium);
    flags(&mut shot);
    let status = shot
        .arg(format!("--screenshot={}", png.display()))
        .arg(&url)
        .output()
        .unwrap();
    assert!(png.is_file(), "{}", String::from_utf8_lossy(&status.stderr));
    let mut dump = Command::new(chromium);
    flags(&mut dump);
    let dom = dump.arg("--dump-dom").arg(&url).output().unwrap();
    String::from_utf8_lossy(&dom.stdout).into_owned()
}

#[test]
fn scenarios_fail_by_name_find_failure_points_and_render_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let uri = model_store(dir.path());

    // The shipped suite holds the small synthetic model to the bike model's quality: the
    // quality scenarios fail, by name, with exit 1; everything is still logged and written.
    let failed = run_job("configs/scenarios.yaml", &uri, &paths(dir.path()));
    assert_eq!(failed.code, 1, "{}\n{}", failed.stdout, failed.stderr);
    assert!(
        failed
            .stderr
            .contains("scenario `quality`: r2_score >= 0.75 (r2_score = "),
        "{}",
        failed.stderr
    );
    let out = dir.path().join("outputs");
    let junit = std::fs::read_to_string(out.join("scenarios.xml")).unwrap();
    assert!(
        junit.contains(r#"<testcase name="quality" classname="scenarios">"#),
        "{junit}"
    );
    assert!(
        junit.contains("<failure message=\"r2_score &gt;= 0.75"),
        "{junit}"
    );
    let html = out.join("scenarios.html");
    let size = std::fs::metadata(&html).unwrap().len();
    assert!(size < 2 * 1024 * 1024, "the report is {size} bytes");

    let failed_report = dir.path().join("failed.html");
    std::fs::copy(&html, &failed_report).unwrap();

    let stores = registries::open(&uri).unwrap();
    let experiment = stores.tracking.get_or_create_experiment("bikes").unwrap();
    let run = stores
        .tracking
        .list_runs(&experiment)
        .unwrap()
        .into_iter()
        .find(|run| run.info.run_name == "Scenarios")
        .expect("a Scenarios run");
    assert_eq!(run.info.status, RunStatus::Failed);
    let logged: Vec<String> = stores
        .tracking
        .list_artifacts(&run.info.run_id, "scenarios")
        .unwrap()
        .into_iter()
        .map(|file| file.path)
        .collect();
    assert_eq!(
        logged,
        [
            "scenarios/junit.xml",
            "scenarios/report.html",
            "scenarios/results.parquet"
        ]
    );
    assert_eq!(
        run.data
            .metrics
            .iter()
            .find(|m| m.key == "scenario.quality.passed")
            .map(|m| m.value),
        Some(0.0)
    );

    // A suite that holds passes, and its sweep names where the model breaks.
    let suite = "suite: {scenarios: [{name: temperature_noise, perturb: {KIND: Noise, columns: [temp, atemp], std: 0.01}, expect: [{KIND: Degradation, metric: r2_score, max_relative: 0.02}], sweep: {from: 0.0, to: 1.0, steps: 5, precision: 0.005}}]}";
    let passed = run_job(
        "configs/scenarios.yaml",
        &uri,
        &format!("{}, {suite}", paths(dir.path())),
    );
    assert_eq!(passed.code, 0, "{}\n{}", passed.stdout, passed.stderr);
    assert!(
        passed
            .stdout
            .contains("temperature_noise: breaks at std = "),
        "{}",
        passed.stdout
    );
    let report = std::fs::read_to_string(&html).unwrap();
    assert!(report.contains("Failure points") && report.contains("sweep of temperature_noise"));

    // Invalid suites are refused before any run, naming the scenario and the field.
    let invalid = run_job(
        "configs/scenarios.yaml",
        &uri,
        "suite: {scenarios: [{name: s, slice: nowhere, expect: [{KIND: Refusal}]}]}",
    );
    assert_eq!(invalid.code, 2, "{}", invalid.stderr);
    assert!(
        invalid
            .stderr
            .contains("scenario `s`: slice `nowhere` is not declared"),
        "{}",
        invalid.stderr
    );

    // The report opens in a browser and shows the verdicts, the failure point and the charts.
    let Some(chromium) = chromium() else {
        return;
    };
    let png = dir.path().join("report.png");
    let dom = render(&chromium, &failed_report, &png);
    for expected in [
        "Scenario tests: bikes version 1",
        "Failures",
        "scenario `quality`",
        "rush_hours_quality",
        "Slices",
        "worst_1",
        "Extreme inputs",
        "NaN in every numeric column",
    ] {
        assert!(
            dom.contains(expected),
            "{expected} is not in the rendered page"
        );
    }
    assert!(dom.matches("<img").count() >= 3, "charts are embedded");
    let shot = image_size(&png);
    assert_eq!(shot, (1400, 2400));
}

/// Width and height of a PNG, from its header.
pub(crate) fn image_size(png: &Path) -> (u32, u32) {
    let bytes = std::fs::read(png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG"), "a PNG");
    let word =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    (word(16), word(20))
}
