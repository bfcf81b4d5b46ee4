//! A real `mlflow server` on 127.0.0.1 for integration tests (feature `test-server`).
//!
//! The server runs from the `mlflow` console script named by `VELO_MLFLOW` (`cargo xtask
//! install` creates it in the project's venv), with a SQLite backend and proxied artifacts in a
//! temporary directory, on a free port. It is stopped (with every worker process) on drop.

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A running MLflow tracking server, stopped on drop.
#[derive(Debug)]
pub struct TestServer {
    child: Child,
    uri: String,
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
    pub fn start(mlflow: &Path) -> std::io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("velo-mlflow-server")
            .tempdir()?;
        let port = free_port()?;
        let log = std::fs::File::create(dir.path().join("server.log"))?;
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
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn()?;
        let mut server = Self {
            child,
            uri: format!("http://127.0.0.1:{port}"),
            dir,
        };
        server.wait_healthy(port, Duration::from_secs(120))?;
        Ok(server)
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

    fn wait_healthy(&mut self, port: u16, limit: Duration) -> std::io::Result<()> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait()? {
                return Err(std::io::Error::other(format!(
                    "mlflow server exited with {status}: {}",
                    self.log_tail()
                )));
            }
            if health(port) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(std::io::Error::other(format!(
            "mlflow server did not answer /health within {limit:?}: {}",
            self.log_tail()
        )))
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let start = text.len().saturating_sub(2000);
        text.get(start..).unwrap_or_default().to_owned()
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn health(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = [0_u8; 16];
    stream.read(&mut answer).is_ok_and(|read| {
        answer[..read].starts_with(b"HTTP/1.1 200") || answer[..read].starts_with(b"HTTP/1.0 200")
    })
}

impl Drop for TestServer {
    fn drop(&mut self) {
        #[cfg(unix)]
        {
            let group = format!("-{}", self.child.id());
            let signal = |name: &str| {
                let _ = Command::new("kill")
                    .args([name, "--", &group])
                    .stderr(Stdio::null())
                    .status();
            };
            signal("-TERM");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            // Workers may outlive the parent: end the whole group.
            signal("-KILL");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
