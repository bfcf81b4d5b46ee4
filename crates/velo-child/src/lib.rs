//! Servers started as child processes on a loopback port, for tests, benches and dev tasks.
//!
//! Besides any command, it starts the engines velo runs beside: a private PostgreSQL cluster
//! ([`postgres::Postgres`]) and an S3-compatible object store ([`s3::S3Server`], SeaweedFS).
//!
//! [`ChildServer::start`] spawns a command in a process group of its own, with its output
//! appended to a log file, and waits until it is ready (it listens on its port, or an HTTP path
//! answers `200`). Dropping the handle ends the whole group: `SIGTERM`, a grace period, then
//! `SIGKILL`, so that workers a server forks (uvicorn, gunicorn) never outlive it.
//!
//! ```no_run
//! use std::{process::Command, time::Duration};
//! use velo_child::{ChildServer, Ready, free_port};
//!
//! # fn main() -> std::io::Result<()> {
//! let port = free_port()?;
//! let mut command = Command::new("python3");
//! command.args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string()]);
//! let log = std::env::temp_dir().join("http.log");
//! let server = ChildServer::start("http.server", &mut command, port, &log, Ready::Http("/"))?;
//! assert!(velo_child::answers(server.port(), "/", Duration::from_secs(1)));
//! # Ok(())
//! # }
//! ```

pub mod postgres;
pub mod s3;
mod scratch;

pub use scratch::ScratchDir;

use std::{
    io::{self, Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

/// How long [`ChildServer::start`] waits for a server to be ready, unless told otherwise.
pub const DEFAULT_READY_LIMIT: Duration = Duration::from_secs(120);

/// How long a stopped server gets between `SIGTERM` and `SIGKILL`.
pub const GRACE: Duration = Duration::from_secs(10);

/// When a starting server counts as ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// It accepts TCP connections on its port.
    Listening,
    /// `GET path` on its port answers with status `200`.
    Http(&'static str),
}

/// A free TCP port on 127.0.0.1 (the operating system's choice; free when this returns).
///
/// # Errors
/// When no socket can be bound on the loopback interface.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// True when `GET path` on `127.0.0.1:port` answers `200` within `timeout`.
pub fn answers(port: u16, path: &str, timeout: Duration) -> bool {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&address, timeout) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    // The status line: `HTTP/1.x 200 ...`.
    let mut head = [0_u8; 12];
    let mut read = 0;
    while read < head.len() {
        match stream.read(&mut head[read..]) {
            Ok(0) | Err(_) => break,
            Ok(more) => read += more,
        }
    }
    head.starts_with(b"HTTP/1.") && head.get(9..12) == Some(b"200".as_slice())
}

fn listens(port: u16) -> bool {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok()
}

/// A server running as a child process group on a loopback port; ended on drop.
#[derive(Debug)]
pub struct ChildServer {
    name: String,
    child: Child,
    port: u16,
    log: PathBuf,
}

impl ChildServer {
    /// Spawns `command` (which must serve on 127.0.0.1 and `port`) and waits up to
    /// [`DEFAULT_READY_LIMIT`] until it is `ready`.
    ///
    /// # Errors
    /// When it cannot be spawned, exits before it is ready, or is not ready in time; the error
    /// names the server and carries the end of its log.
    pub fn start(
        name: &str,
        command: &mut Command,
        port: u16,
        log: &Path,
        ready: Ready,
    ) -> io::Result<Self> {
        Self::start_within(name, command, port, log, ready, DEFAULT_READY_LIMIT)
    }

    /// [`ChildServer::start`] with a limit of its own.
    ///
    /// # Errors
    /// As [`ChildServer::start`].
    pub fn start_within(
        name: &str,
        command: &mut Command,
        port: u16,
        log: &Path,
        ready: Ready,
        limit: Duration,
    ) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|error| {
                io::Error::new(
                    error.kind(),
                    format!("cannot open {name}'s log {}: {error}", log.display()),
                )
            })?;
        command
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(command, 0);
        let child = command.spawn().map_err(|error| {
            io::Error::new(
                error.kind(),
                format!("cannot start {name} ({command:?}): {error}"),
            )
        })?;
        let mut server = Self {
            name: name.to_owned(),
            child,
            port,
            log: log.to_path_buf(),
        };
        server.wait_ready(ready, limit)?;
        Ok(server)
    }

    fn wait_ready(&mut self, ready: Ready, limit: Duration) -> io::Result<()> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "{} exited with {status} before it was ready; the end of {}:\n{}",
                    self.name,
                    self.log.display(),
                    self.log_tail(4000)
                )));
            }
            let is_ready = match ready {
                Ready::Listening => listens(self.port),
                Ready::Http(path) => answers(self.port, path, Duration::from_secs(5)),
            };
            if is_ready {
                return Ok(());
            }
            if started.elapsed() > limit {
                return Err(io::Error::other(format!(
                    "{} was not ready on 127.0.0.1:{} within {limit:?}; the end of {}:\n{}",
                    self.name,
                    self.port,
                    self.log.display(),
                    self.log_tail(4000)
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The port it serves on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The process id of the server (the leader of its process group).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log its output is appended to.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The last `bytes` of its log (lossy UTF-8; empty when unreadable).
    pub fn log_tail(&self, bytes: usize) -> String {
        let text = std::fs::read(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(bytes);
        String::from_utf8_lossy(&text[start..]).into_owned()
    }

    /// Its exit status when it has exited.
    ///
    /// # Errors
    /// When the status cannot be read.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Waits until the server exits (or `stop_when` returns true, checked every 100 ms, which
    /// then stops it with [`ChildServer::stop`]); returns its status.
    ///
    /// # Errors
    /// When the status cannot be read.
    pub fn wait_until(&mut self, stop_when: impl Fn() -> bool) -> io::Result<Option<ExitStatus>> {
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            if stop_when() {
                return Ok(self.stop(GRACE));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends `signal` (such as `TERM`, `KILL`, `STOP`) to the server's whole process group.
    pub fn signal_group(&self, signal: &str) {
        #[cfg(unix)]
        {
            let _ = Command::new("kill")
                .args([
                    &format!("-{signal}"),
                    "--",
                    &format!("-{}", self.child.id()),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        #[cfg(not(unix))]
        {
            let _ = signal;
        }
    }

    /// Kills the whole group at once (`SIGKILL`) and reaps the server: a crash, for tests.
    pub fn kill(&mut self) {
        self.signal_group("KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Ends the server as a supervisor would: `SIGTERM` to the group, up to `grace` for it to
    /// exit, then `SIGKILL` to whatever of the group is left. Returns the server's status.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            // Workers may outlive the leader.
            self.signal_group("KILL");
            return Some(status);
        }
        self.signal_group("TERM");
        let deadline = Instant::now() + grace;
        let mut status = None;
        while Instant::now() < deadline {
            if let Ok(Some(exited)) = self.child.try_wait() {
                status = Some(exited);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.signal_group("KILL");
        let _ = self.child.kill();
        status.or_else(|| self.child.wait().ok())
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        self.stop(GRACE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn python_http(port: u16) -> Command {
        let mut command = Command::new("python3");
        command.args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ]);
        command
    }

    #[test]
    fn a_server_is_ready_then_ended_with_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port().unwrap();
        // A shell that forks a worker serving the port: the leader is the shell.
        let mut command = Command::new("sh");
        command.args([
            "-c",
            &format!("python3 -m http.server --bind 127.0.0.1 {port} & wait"),
        ]);
        command.current_dir(dir.path());
        let log = dir.path().join("server.log");
        let server = ChildServer::start("http.server", &mut command, port, &log, Ready::Http("/"))
            .expect("python3 serves");
        assert!(answers(port, "/", Duration::from_secs(5)));
        drop(server);
        // The worker was in the group: nothing answers any more.
        assert!(!answers(port, "/", Duration::from_secs(1)));
    }

    #[test]
    fn a_server_that_exits_early_is_an_error_with_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new("sh");
        command.args(["-c", "echo no such model >&2; exit 3"]);
        let log = dir.path().join("server.log");
        let error = ChildServer::start(
            "broken",
            &mut command,
            free_port().unwrap(),
            &log,
            Ready::Listening,
        )
        .unwrap_err();
        let message = error.to_string();
        assert!(message.contains("broken exited"), "{message}");
        assert!(message.contains("no such model"), "{message}");
    }

    #[test]
    fn a_server_never_ready_times_out_and_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port().unwrap();
        let mut command = Command::new("sleep");
        command.arg("30");
        let started = Instant::now();
        let error = ChildServer::start_within(
            "sleeper",
            &mut command,
            port,
            &dir.path().join("log"),
            Ready::Listening,
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(error.to_string().contains("was not ready"), "{error}");
        // The failed start did not wait for the sleeper to finish.
        assert!(started.elapsed() < Duration::from_secs(20));
    }

    #[test]
    fn killed_servers_release_their_port_for_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port().unwrap();
        let log = dir.path().join("log");
        let mut first = ChildServer::start(
            "first",
            &mut python_http(port),
            port,
            &log,
            Ready::Listening,
        )
        .unwrap();
        first.kill();
        assert!(first.try_wait().unwrap().is_some());
        let second = ChildServer::start(
            "second",
            &mut python_http(port),
            port,
            &log,
            Ready::Http("/"),
        )
        .unwrap();
        assert_eq!(second.url(), format!("http://127.0.0.1:{port}"));
    }
}
