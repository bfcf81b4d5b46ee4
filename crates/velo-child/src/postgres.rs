//! A private PostgreSQL cluster on 127.0.0.1: `initdb` in a scratch directory, `postgres` on a
//! free port, stopped and removed on drop.
//!
//! PostgreSQL refuses to run as root; as root, the cluster runs as the `postgres` user (Debian's
//! package creates it), else `nobody`, through `runuser`.

use std::{
    io,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::{ChildServer, Ready, ScratchDir, free_port};

/// The superuser of the clusters started here (trust authentication on loopback).
pub const USER: &str = "velo";

/// A running PostgreSQL cluster.
#[derive(Debug)]
pub struct Postgres {
    // Dropped before the directory: fields drop in declaration order.
    server: Option<ChildServer>,
    bin: PathBuf,
    port: u16,
    run_as: Option<String>,
    dir: ScratchDir,
}

/// The directory of PostgreSQL's server programs (`initdb`, `postgres`): `$VELO_POSTGRES_BIN`,
/// else the newest `/usr/lib/postgresql/<version>/bin` (Debian's layout), else the directory of
/// an `initdb` on `PATH`.
pub fn bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("VELO_POSTGRES_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).find(|dir| dir.join("initdb").is_file()))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.starts_with(b"0\n"))
}

/// The uid and gid of `user`, from `/etc/passwd`.
fn ids(user: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&user))
            .then(|| Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?)))?
    })
}

impl Postgres {
    /// Creates a cluster with the programs of `bin` (see [`bin_dir`]) and starts it.
    ///
    /// # Errors
    /// When `initdb` or `postgres` fails (the error holds the end of the log).
    pub fn start(bin: &Path) -> io::Result<Self> {
        let dir = ScratchDir::new("velo-postgres")?;
        let run_as = if is_root() {
            let user = ["postgres", "nobody"]
                .into_iter()
                .find(|user| ids(user).is_some())
                .ok_or_else(|| {
                    io::Error::other(
                        "running as root, and no postgres or nobody user to run PostgreSQL as",
                    )
                })?;
            #[cfg(unix)]
            if let Some((uid, gid)) = ids(user) {
                std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
            }
            Some(user.to_owned())
        } else {
            None
        };
        let mut postgres = Self {
            server: None,
            bin: bin.to_path_buf(),
            port: free_port()?,
            run_as,
            dir,
        };
        let log = postgres.dir.path().join("initdb.log");
        let output = postgres
            .command("initdb")
            .arg("--pgdata")
            .arg(postgres.data())
            .args(["--username", USER, "--auth", "trust", "--encoding", "UTF8"])
            .args(["--no-sync", "--no-instructions"])
            .output()?;
        if !output.status.success() {
            let _ = std::fs::write(&log, &output.stderr);
            return Err(io::Error::other(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        postgres.launch()?;
        Ok(postgres)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// One of the cluster's programs, run as the cluster's user.
    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(program);
                command
            }
            None => Command::new(program),
        }
    }

    fn launch(&mut self) -> io::Result<()> {
        let mut command = self.command("postgres");
        command
            .arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1"])
            // A test cluster: no durability against power loss, which costs seconds per test.
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=200"]);
        let log = self.dir.path().join("postgres.log");
        self.server = Some(ChildServer::start(
            "postgres",
            &mut command,
            self.port,
            &log,
            Ready::Listening,
        )?);
        Ok(())
    }

    /// Stops the server (a fast shutdown: clients are disconnected, committed data kept) and
    /// starts it again on the same port and data.
    ///
    /// # Errors
    /// When it does not start again.
    pub fn restart(&mut self) -> io::Result<()> {
        if let Some(mut server) = self.server.take() {
            server.signal_group("INT");
            server.stop(Duration::from_secs(20));
        }
        self.launch()
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The connection URL of `database` (`postgresql://velo@127.0.0.1:PORT/DATABASE`).
    pub fn url(&self, database: &str) -> String {
        format!("postgresql://{USER}@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates `database`.
    ///
    /// # Errors
    /// When `createdb` fails.
    pub fn create_database(&self, database: &str) -> io::Result<()> {
        let output = Command::new(self.bin.join("createdb"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                USER,
                database,
            ])
            .output()?;
        if output.status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "createdb {database} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            )))
        }
    }
}
