//! A real `mlflow server` on 127.0.0.1 for integration tests (feature `test-server`).
//!
//! The server runs from the `mlflow` console script named by `VELO_MLFLOW` (`cargo xtask
//! install` creates it in the project's venv), on a free port, with either a SQLite backend and
//! proxied artifacts in a temporary directory ([`TestServer::start`]), or the engines a team
//! runs: a PostgreSQL backend and artifacts proxied to an S3 bucket served by SeaweedFS
//! ([`TestServer::start_on_postgres_and_s3`]). It is stopped (with every worker process, and
//! its database and object store) on drop.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use velo_child::{ChildServer, Ready, postgres::Postgres, s3::S3Server};

/// A running MLflow tracking server, stopped (with every worker process) on drop.
#[derive(Debug)]
pub struct TestServer {
    server: ChildServer,
    uri: String,
    // Dropped after the server: fields drop in declaration order.
    postgres: Option<Postgres>,
    s3: Option<S3Server>,
    dir: tempfile::TempDir,
}

/// The bucket the PostgreSQL and S3 server keeps its artifacts in (under `artifacts/`).
pub const BUCKET: &str = "mlflow";

/// Where a server on PostgreSQL and S3 has its clients put artifacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactMode {
    /// Through the server (`--artifacts-destination s3://…`): clients see
    /// `mlflow-artifacts:` URIs and need no S3 credentials.
    Proxied,
    /// Straight to the bucket (`--no-serve-artifacts --default-artifact-root s3://…`): clients
    /// see `s3://` URIs and need the S3 server's environment ([`S3Server::env`]).
    Direct,
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
            .arg(dir.path().join("artifacts"));
        Self::launch(command, port, dir, None, None)
    }

    /// Starts `command` (an `mlflow server` serving on `port`) in `dir` and waits until it
    /// answers `/health`.
    fn launch(
        mut command: Command,
        port: u16,
        dir: tempfile::TempDir,
        postgres: Option<Postgres>,
        s3: Option<S3Server>,
    ) -> std::io::Result<Self> {
        command
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
            postgres,
            s3,
            dir,
        })
    }

    /// Starts a server on PostgreSQL with artifacts proxied to an S3 bucket, the engines and
    /// the skip rules of [`TestServer::start_or_skip`]: `VELO_MLFLOW` for MLflow, `VELO_WEED`
    /// for SeaweedFS's `weed`, and PostgreSQL's server programs (see
    /// [`velo_child::postgres::bin_dir`]).
    ///
    /// # Panics
    /// When the engines are required (`VELO_IT`, `CI`) but missing, or cannot start.
    pub fn on_postgres_and_s3_or_skip(test: &str, artifacts: ArtifactMode) -> Option<Self> {
        let mlflow = std::env::var_os("VELO_MLFLOW");
        let weed = std::env::var_os("VELO_WEED");
        let postgres = velo_child::postgres::bin_dir();
        match (mlflow, weed, postgres) {
            (Some(mlflow), Some(weed), Some(postgres)) => {
                match Self::start_on_postgres_and_s3(
                    Path::new(&mlflow),
                    &postgres,
                    Path::new(&weed),
                    artifacts,
                ) {
                    Ok(server) => Some(server),
                    Err(error) => {
                        panic!("cannot start mlflow on PostgreSQL and S3 for {test}: {error}")
                    }
                }
            }
            _ if required() => panic!(
                "{test}: VELO_MLFLOW, VELO_WEED and PostgreSQL are required (VELO_IT/CI); run `cargo xtask test`"
            ),
            _ => {
                #[allow(clippy::print_stderr, reason = "a skipped test must be visible")]
                {
                    eprintln!(
                        "SKIPPED {test}: set VELO_MLFLOW and VELO_WEED and install PostgreSQL (cargo xtask install and test do)"
                    );
                }
                None
            }
        }
    }

    /// Starts a PostgreSQL cluster (`postgres_bin`: its server programs), an S3 server (`weed`)
    /// with the bucket [`BUCKET`], and `mlflow server` with `--backend-store-uri
    /// postgresql://…` and its artifacts under `s3://mlflow/artifacts`, proxied or not.
    ///
    /// # Errors
    /// When an engine cannot start (the error holds the end of its log).
    pub fn start_on_postgres_and_s3(
        mlflow: &Path,
        postgres_bin: &Path,
        weed: &Path,
        artifacts: ArtifactMode,
    ) -> std::io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("velo-mlflow-server")
            .tempdir()?;
        let postgres = Postgres::start(postgres_bin)?;
        postgres.create_database("mlflow")?;
        let s3 = S3Server::start(weed, &[BUCKET])?;
        let port = velo_child::free_port()?;
        let mut command = Command::new(mlflow);
        command
            .args(["server", "--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--workers", "1", "--backend-store-uri"])
            .arg(postgres.url("mlflow"));
        let root = format!("s3://{BUCKET}/artifacts");
        match artifacts {
            ArtifactMode::Proxied => command.args(["--artifacts-destination", &root]),
            ArtifactMode::Direct => {
                command.args(["--no-serve-artifacts", "--default-artifact-root", &root])
            }
        };
        command.envs(s3.env());
        Self::launch(command, port, dir, Some(postgres), Some(s3))
    }

    /// The PostgreSQL cluster behind the server, if it has one.
    pub fn postgres_mut(&mut self) -> Option<&mut Postgres> {
        self.postgres.as_mut()
    }

    /// The S3 server its artifacts go to, if it has one.
    pub fn s3(&self) -> Option<&S3Server> {
        self.s3.as_ref()
    }

    /// The S3 server, to stop it in a fault test.
    pub fn s3_mut(&mut self) -> Option<&mut S3Server> {
        self.s3.as_mut()
    }

    /// The end of the server's log.
    pub fn log_tail(&self, bytes: usize) -> String {
        self.server.log_tail(bytes)
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
