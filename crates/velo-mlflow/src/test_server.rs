//! A real `mlflow server` on 127.0.0.1 for integration tests (feature `test-server`).
//!
//! The server runs from the `mlflow` console script named by `VELO_MLFLOW` (`cargo xtask
//! install` creates it in the project's venv), with a SQLite backend and proxied artifacts in a
//! temporary directory, on a free port. It is stopped (with every worker process) on drop.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use velo_child::{ChildServer, Ready};

/// A running MLflow tracking server, stopped (with every worker process) on drop.
#[derive(Debug)]
pub struct TestServer {
    server: ChildServer,
    uri: String,
    // Dropped after the server: fields drop in declaration order.
    dir: tempfile::TempDir,
}

/// Whether integration tests must run (`VELO_IT=1` or `CI` set) rather than be skipped.
pub fn required() -> bool {
    std::env::var_os("VELO_IT").is_some_and(|value| value != "0")
        || std::env::var_os("CI").is_some()
}

impl TestServer {
    /// Starts a server, or returns `None` after printing a visible skip line when `VELO_MLFLOW`
    /// is not set and integration tests are not required.
    ///
    /// # Panics
    /// When the server is required but cannot start: a test harness must fail loudly.
    pub fn start_or_skip(test: &str) -> Option<Self> {
        match std::env::var_os("VELO_MLFLOW") {
            Some(mlflow) => match Self::start(Path::new(&mlflow)) {
                Ok(server) => Some(server),
                Err(error) => panic!("cannot start mlflow server for {test}: {error}"),
            },
            None if required() => panic!(
                "{test}: VELO_MLFLOW is not set but integration tests are required (VELO_IT/CI); run `cargo xtask test`"
            ),
            None => {
                #[allow(clippy::print_stderr, reason = "a skipped test must be visible")]
                {
                    eprintln!(
                        "SKIPPED {test}: set VELO_MLFLOW (cargo xtask test does) to run it against a real MLflow server"
                    );
                }
                None
            }
        }
    }

    /// Starts `mlflow server` from the console script `mlflow` and waits until it answers
    /// `/health` (at most 120 s).
    ///
    /// # Errors
    /// When it cannot start or does not answer in time (the error holds the end of its log).
    pub fn start(mlflow: &Path) -> std::io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("velo-mlflow-server")
            .tempdir()?;
        let port = velo_child::free_port()?;
        let mut command = Command::new(mlflow);
        command
            .args([
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--workers",
                "1",
            ])
            .arg("--backend-store-uri")
            .arg(format!(
                "sqlite:///{}",
                dir.path().join("mlflow.db").display()
            ))
            .arg("--artifacts-destination")
            .arg(dir.path().join("artifacts"))
            .env("MLFLOW_TRACKING_URI", "")
            .env("PYTHONUNBUFFERED", "1")
            .current_dir(dir.path());
        let server = ChildServer::start(
            "mlflow server",
            &mut command,
            port,
            &dir.path().join("server.log"),
            Ready::Http("/health"),
        )?;
        Ok(Self {
            uri: server.url(),
            server,
            dir,
        })
    }

    /// The tracking URI, `http://127.0.0.1:PORT`.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// Where the server keeps its database and artifacts.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The directory proxied artifacts are written to.
    pub fn artifacts_dir(&self) -> PathBuf {
        self.dir.path().join("artifacts")
    }

    /// The server process's id (the leader of its process group).
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }
}
