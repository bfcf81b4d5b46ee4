//! The engines started for real: a PostgreSQL cluster that keeps its data across a restart,
//! and SeaweedFS's S3 gateway with its buckets. Each skips, saying so, where its programs are
//! missing, unless `VELO_IT` or `CI` asks for every integration test.
#![allow(
    clippy::unwrap_used,
    clippy::print_stderr,
    reason = "tests; a skipped test must be visible"
)]

use std::process::Command;

use velo_child::{postgres, s3};

fn required() -> bool {
    std::env::var_os("VELO_IT").is_some_and(|value| value != "0")
        || std::env::var_os("CI").is_some()
}

fn psql(bin: &std::path::Path, port: u16, sql: &str) -> String {
    let output = Command::new(bin.join("psql"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            postgres::USER,
        ])
        .args(["-d", "velo_test", "-tAc", sql])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[test]
fn a_postgres_cluster_keeps_committed_rows_across_a_restart() {
    let Some(bin) = postgres::bin_dir() else {
        assert!(
            !required(),
            "PostgreSQL is required (VELO_IT/CI): run `cargo xtask install`"
        );
        eprintln!(
            "SKIPPED: no PostgreSQL server programs (initdb); `cargo xtask install` adds them"
        );
        return;
    };
    let mut cluster = postgres::Postgres::start(&bin).unwrap();
    cluster.create_database("velo_test").unwrap();
    assert!(
        cluster
            .url("velo_test")
            .ends_with(&format!(":{}/velo_test", cluster.port()))
    );
    psql(
        &bin,
        cluster.port(),
        "CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)",
    );
    cluster.restart().unwrap();
    assert_eq!(psql(&bin, cluster.port(), "SELECT sum(x) FROM t"), "3");
}

#[test]
fn an_s3_server_serves_the_buckets_asked_for() {
    let Some(weed) = std::env::var_os("VELO_WEED") else {
        assert!(
            !required(),
            "VELO_WEED is required (VELO_IT/CI): run `cargo xtask test`"
        );
        eprintln!("SKIPPED: VELO_WEED is not set (cargo xtask test sets it to SeaweedFS's weed)");
        return;
    };
    let server = s3::S3Server::start(std::path::Path::new(&weed), &["models", "data"]).unwrap();
    assert!(server.has_bucket("models"), "{}", server.log_tail(2000));
    assert!(server.has_bucket("data"));
    assert!(!server.has_bucket("absent"));
    // The gateway answers, and refuses an unsigned request.
    let output = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-I"])
        .arg(format!("{}/models", server.endpoint()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "403");
    assert!(
        server
            .env()
            .iter()
            .any(|(key, _)| *key == "MLFLOW_S3_ENDPOINT_URL")
    );
}
