//! An S3-compatible object store on 127.0.0.1: SeaweedFS's `weed mini` (master, volume, filer
//! and S3 gateway in one process) in a scratch directory, with one access key and the buckets
//! asked for, stopped and removed on drop.

use std::{io, path::Path, time::Duration};

use crate::{ChildServer, Ready, ScratchDir, free_port};

/// The access key of the servers started here.
pub const ACCESS_KEY: &str = "velo-test-key";
/// Its secret.
pub const SECRET_KEY: &str = "velo-test-secret";
/// The region they answer for.
pub const REGION: &str = "us-east-1";

/// A running S3 server.
#[derive(Debug)]
pub struct S3Server {
    server: ChildServer,
    filer: u16,
    _dir: ScratchDir,
}

/// A free port below 55536: SeaweedFS derives gRPC ports as the HTTP port + 10000.
fn low_free_port() -> io::Result<u16> {
    for _ in 0..64 {
        let port = free_port()?;
        if port < 55_536 {
            return Ok(port);
        }
    }
    Err(io::Error::other("no free port below 55536"))
}

impl S3Server {
    /// Starts `weed mini` (the `weed` program of SeaweedFS, which `cargo xtask install` puts in
    /// the venv) with `buckets`, and waits until its S3 gateway answers (at most 120 s).
    ///
    /// # Errors
    /// When it cannot start or is not ready in time (the error holds the end of its log).
    pub fn start(weed: &Path, buckets: &[&str]) -> io::Result<Self> {
        let dir = ScratchDir::new("velo-s3")?;
        let config = dir.path().join("s3.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"identities":[{{"name":"velo","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )?;
        let data = dir.path().join("data");
        std::fs::create_dir(&data)?;
        let s3 = low_free_port()?;
        let mut command = std::process::Command::new(weed);
        command
            .arg("mini")
            .arg(format!("-dir={}", data.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .args([
                "-master.telemetry=false",
                // A fixed number of volumes: by default SeaweedFS derives it from the free
                // disk space, and refuses every upload on a nearly full disk.
                "-volume.max=16",
                "-admin.ui=false",
                "-webdav=false",
            ])
            .arg(format!("-s3.config={}", config.display()))
            .arg(format!("-s3.port={s3}"))
            .arg(format!("-bucket={}", buckets.join(",")));
        let filer = low_free_port()?;
        command.arg(format!("-filer.port={filer}"));
        for flag in [
            "master.port",
            "volume.port",
            "admin.port",
            "debug.port",
            "webdav.port",
        ] {
            command.arg(format!("-{flag}={}", low_free_port()?));
        }
        for flag in [
            "master.port.grpc",
            "volume.port.grpc",
            "filer.port.grpc",
            "s3.port.grpc",
            "admin.port.grpc",
            "s3.port.iceberg",
            "s3.port.lance",
        ] {
            command.arg(format!("-{flag}={}", free_port()?));
        }
        let log = dir.path().join("weed.log");
        let server = ChildServer::start_within(
            "weed mini",
            &mut command,
            s3,
            &log,
            Ready::Listening,
            Duration::from_secs(120),
        )?;
        let started = Self {
            server,
            filer,
            _dir: dir,
        };
        // The gateway listens before the buckets exist: wait until the last one answers.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !buckets.is_empty() && !started.has_bucket(buckets[buckets.len() - 1]) {
            if std::time::Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "weed mini never created bucket {}; the end of its log:\n{}",
                    buckets[buckets.len() - 1],
                    started.server.log_tail(4000)
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(started)
    }

    /// Whether `bucket` exists (its directory on the filer answers).
    pub fn has_bucket(&self, bucket: &str) -> bool {
        crate::answers(
            self.filer,
            &format!("/buckets/{bucket}/"),
            Duration::from_secs(5),
        )
    }

    /// The endpoint URL (`http://127.0.0.1:PORT`), as `MLFLOW_S3_ENDPOINT_URL` takes it.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port())
    }

    /// The environment an S3 client needs: endpoint, keys and region, named as MLflow and the
    /// AWS SDKs read them.
    pub fn env(&self) -> [(&'static str, String); 4] {
        [
            ("MLFLOW_S3_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
            ("AWS_DEFAULT_REGION", REGION.to_owned()),
        ]
    }

    /// Kills the server outright (`SIGKILL` to its group), as a crash would: requests then
    /// fail to connect.
    pub fn kill(&mut self) {
        self.server.kill();
    }

    /// The end of its log.
    pub fn log_tail(&self, bytes: usize) -> String {
        self.server.log_tail(bytes)
    }
}
