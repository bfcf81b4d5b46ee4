//! `deploy/`: the Prometheus alerting rules are checked and unit-tested with promtool (Debian's
//! prometheus package), and every velo metric the rules and the Grafana dashboard query is
//! one velo exposes: `velo serve`'s, read here from a live server; the Kafka job's, in
//! `kafka.rs` from a live job.

use std::{collections::BTreeSet, path::PathBuf, process::Command};

use serde_json::Value;

use crate::{jobs::model_store, serve::Server};

fn deploy(path: &str) -> PathBuf {
    crate::root().join("deploy").join(path)
}

/// The metric names starting with `prefix` that the rules and the dashboard query.
pub(crate) fn queried(prefix: &str) -> BTreeSet<String> {
    let rules = std::fs::read_to_string(deploy("prometheus/velo-rules.yml")).unwrap();
    // Queries only, not the comments that name the metric families.
    let mut text: String = rules
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(deploy("grafana/velo-dashboard.json")).unwrap(),
    )
    .unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            text.push('\n');
            text.push_str(target["expr"].as_str().unwrap());
        }
    }
    let mut names = BTreeSet::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find(prefix) {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.insert(name);
    }
    names
}

/// The metric names of a Prometheus exposition.
pub(crate) fn exposed(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// Debian's promtool, or `None` (the test then skips visibly, except in CI or when
/// `cargo xtask test` installed it).
fn promtool() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("promtool"))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none() && std::env::var_os("VELO_PROMTOOL_IT").is_none(),
            "promtool is missing (`cargo xtask test` installs Debian's prometheus package)"
        );
        skipped();
    }
    found
}

#[allow(clippy::print_stderr, reason = "a skipped test says so")]
fn skipped() {
    eprintln!("SKIPPED: promtool is not installed; the alerting rules are not checked");
}

#[test]
fn promtool_checks_and_unit_tests_the_alerting_rules() {
    let Some(promtool) = promtool() else {
        return;
    };
    for args in [
        ["check", "rules", "velo-rules.yml"],
        ["test", "rules", "velo-rules.test.yml"],
    ] {
        let output = Command::new(&promtool)
            .args(args)
            .current_dir(deploy("prometheus"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn the_dashboard_queries_what_velo_serve_exposes() {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(deploy("grafana/velo-dashboard.json")).unwrap(),
    )
    .unwrap();
    // Grafana's dashboard model: unique panel ids, panels within the 24-column grid, every
    // query panel reading the datasource variable.
    let panels = dashboard["panels"].as_array().unwrap();
    let ids: BTreeSet<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");
    for panel in panels {
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
        assert!(x + w <= 24, "{}", panel["title"]);
        if panel["type"] != "row" {
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "{}",
                panel["title"]
            );
            assert!(!panel["targets"].as_array().unwrap().is_empty());
        }
    }
    assert_eq!(dashboard["templating"]["list"][0]["name"], "datasource");

    // A live server with every optional metric on, after one request.
    let dir = tempfile::tempdir().unwrap();
    model_store(dir.path());
    let logs = dir.path().join("logs").display().to_string();
    let server = Server::start(
        &dir.path().join("mlruns"),
        &["--log-predictions", &logs, "--drift-rows", "100"],
    );
    let rows = crate::serve::test_records(&dir.path().join("data"), 20);
    let (status, body, _) = server.post(
        "application/json",
        serde_json::json!({ "dataframe_records": rows }).to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let text = server.metrics();
    // No Accept header: Prometheus' classic text format, with the process metrics clients
    // conventionally expose; promtool's linter passes it.
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(
            text.lines().any(|line| line.starts_with(name)),
            "{name} missing: {text}"
        );
    }
    assert!(!text.contains("# EOF"), "{text}");
    if let Some(promtool) = promtool() {
        use std::io::Write as _;
        let mut lint = Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        lint.stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let output = lint.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "promtool check metrics: {}{}\n{text}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // Asked for OpenMetrics, as Prometheus asks, it gets OpenMetrics.
    let open = reqwest::blocking::Client::new()
        .get(server.url("/metrics"))
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .unwrap();
    assert!(
        open.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    assert!(open.text().unwrap().trim_end().ends_with("# EOF"));
    let exposed = exposed(&text);
    let queried = queried("velo_serve_");
    assert!(queried.len() >= 10, "{queried:?}");
    for name in &queried {
        assert!(
            exposed.contains(name),
            "deploy/ queries {name}, not in {text}"
        );
    }
}
