//! Artifacts through the server's artifact proxy (`mlflow-artifacts:` URIs), or straight in a
//! bucket for `s3://` artifact roots (see the `s3` module).
//!
//! A run's `artifact_uri` such as `mlflow-artifacts:/1/<run>/artifacts` maps to
//! `{tracking}/api/2.0/mlflow-artifacts/artifacts/1/<run>/artifacts/<path>`; a URI with a host
//! (`mlflow-artifacts://host:port/…`) goes to that host. Relative paths are checked before
//! anything is sent: no `..`, no absolute paths, no backslashes.

use std::path::{Path, PathBuf};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use serde::Deserialize;
use url::Url;

use crate::{
    client::{Body, Client, Idempotency},
    error::{Error, Result},
    s3::S3Root,
    types::FileInfo,
};

/// How many files [`Client::upload_dir`] and [`Client::download_dir`] move at once.
pub const UPLOAD_CONCURRENCY: usize = 4;

/// Characters left as they are in one path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Checks an artifact path relative to a run's root and returns its segments. The empty path
/// is the root itself.
pub fn check_relative_path(path: &str) -> Result<Vec<&str>> {
    let refuse = |why: &str| {
        Err(Error::InvalidArgument(format!(
            "artifact path {path:?} {why}"
        )))
    };
    if path.starts_with('/') || path.contains('\\') || path.contains('\0') {
        return refuse("must be relative, with / separators");
    }
    if path.len() >= 2 && path.as_bytes()[1] == b':' {
        return refuse("must not name a drive");
    }
    let mut segments = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => return refuse("must not leave its run (`..`)"),
            other => segments.push(other),
        }
    }
    Ok(segments)
}

impl Client {
    /// The proxy URL of `path` under `artifact_uri`, and the path as the proxy's listing sees it.
    fn artifact_location(&self, artifact_uri: &str, path: &str) -> Result<(Url, String)> {
        let (endpoint, full) = self.artifact_endpoint(artifact_uri, path)?;
        let encoded: Vec<String> = full
            .split('/')
            .filter(|segment| !segment.is_empty())
            .map(|segment| utf8_percent_encode(segment, SEGMENT).to_string())
            .collect();
        let mut url = endpoint;
        // `set_path` keeps the `%XX` escapes made above as they are.
        let path = format!("{}/{}", url.path().trim_end_matches('/'), encoded.join("/"));
        url.set_path(&path);
        Ok((url, full))
    }

    /// The proxy's artifacts endpoint for `artifact_uri` (host-adjusted) and the full path of
    /// `path` below the proxy root.
    fn artifact_endpoint(&self, artifact_uri: &str, path: &str) -> Result<(Url, String)> {
        let unsupported = |reason: &str| Error::UnsupportedArtifactUri {
            uri: artifact_uri.to_owned(),
            reason: reason.to_owned(),
        };
        let (host, root) = if let Some(rest) = artifact_uri.strip_prefix("mlflow-artifacts:") {
            match rest.strip_prefix("//") {
                Some(with_host) => {
                    let (host, root) = with_host.split_once('/').unwrap_or((with_host, ""));
                    (Some(host.to_owned()), root.to_owned())
                }
                None => (None, rest.trim_start_matches('/').to_owned()),
            }
        } else if artifact_uri.starts_with("file:") || artifact_uri.starts_with('/') {
            return Err(unsupported(
                "a local path on a remote server: start the server with --artifacts-destination (proxied artifacts)",
            ));
        } else {
            let scheme = artifact_uri.split(':').next().unwrap_or_default();
            return Err(unsupported(&format!(
                "the {scheme}: store needs its cloud client; serve artifacts through the MLflow server (--artifacts-destination)"
            )));
        };
        let mut segments: Vec<&str> = check_relative_path(&root)?;
        segments.extend(check_relative_path(path)?);
        let mut url = self.url("api/2.0/mlflow-artifacts/artifacts")?;
        if let Some(host) = host.filter(|host| !host.is_empty()) {
            let with_host = Url::parse(&format!("{}://{host}", url.scheme()))
                .map_err(|_| unsupported("the host is not valid"))?;
            url.set_host(with_host.host_str())
                .map_err(|_| unsupported("the host is not valid"))?;
            url.set_port(with_host.port())
                .map_err(|()| unsupported("the port is not valid"))?;
        }
        Ok((url, segments.join("/")))
    }

    /// Uploads bytes as the artifact `path` of the run whose artifact root is `artifact_uri`.
    pub async fn upload_artifact(
        &self,
        artifact_uri: &str,
        path: &str,
        bytes: Vec<u8>,
    ) -> Result<()> {
        if check_relative_path(path)?.is_empty() {
            return Err(Error::InvalidArgument(
                "an artifact needs a file name".to_owned(),
            ));
        }
        if let Some(root) = S3Root::parse(artifact_uri) {
            return root?.upload(path, bytes).await;
        }
        let (url, _) = self.artifact_location(artifact_uri, path)?;
        self.send(
            Method::PUT,
            url,
            "mlflow-artifacts/artifacts",
            &[],
            &Body::Bytes(bytes),
            Idempotency::Safe,
        )
        .await?;
        Ok(())
    }

    /// Uploads a local file as the artifact `path`.
    pub async fn upload_file(&self, artifact_uri: &str, path: &str, local: &Path) -> Result<()> {
        let bytes = read_file(local)?;
        self.upload_artifact(artifact_uri, path, bytes).await
    }

    /// Uploads a local directory, recursively, under the artifact directory `path` (the empty
    /// path is the root), [`UPLOAD_CONCURRENCY`] files at a time. Symlinks are not followed.
    /// `MLmodel` files go last, once every other file is stored: a model directory cut short
    /// (a store that dies mid-upload) has no `MLmodel`, so no reader takes it for a model.
    pub async fn upload_dir(&self, artifact_uri: &str, path: &str, local: &Path) -> Result<()> {
        let prefix = check_relative_path(path)?.join("/");
        let (descriptors, files): (Vec<_>, Vec<_>) = walk(local)?
            .into_iter()
            .partition(|(relative, _)| relative.rsplit('/').next() == Some("MLmodel"));
        for group in [files, descriptors] {
            self.upload_all(artifact_uri, &prefix, group).await?;
        }
        Ok(())
    }

    /// Uploads `files` (relative path, local file) under `prefix`, [`UPLOAD_CONCURRENCY`] at
    /// a time; the first error ends it.
    async fn upload_all(
        &self,
        artifact_uri: &str,
        prefix: &str,
        files: Vec<(String, std::path::PathBuf)>,
    ) -> Result<()> {
        let mut pending = files.into_iter();
        let mut running = tokio::task::JoinSet::new();
        loop {
            while running.len() < UPLOAD_CONCURRENCY {
                let Some((relative, file)) = pending.next() else {
                    break;
                };
                let target = if prefix.is_empty() {
                    relative
                } else {
                    format!("{prefix}/{relative}")
                };
                let (client, uri) = (self.clone(), artifact_uri.to_owned());
                running.spawn(async move { client.upload_file(&uri, &target, &file).await });
            }
            match running.join_next().await {
                Some(Ok(result)) => result?,
                Some(Err(join)) => {
                    return Err(Error::InvalidArgument(format!(
                        "an upload task failed: {join}"
                    )));
                }
                None => return Ok(()),
            }
        }
    }

    /// The files and directories directly under the artifact directory `path`, with paths
    /// relative to the run's artifact root.
    pub async fn list_artifacts(&self, artifact_uri: &str, path: &str) -> Result<Vec<FileInfo>> {
        #[derive(Deserialize)]
        struct Answer {
            #[serde(default)]
            files: Vec<FileInfo>,
        }
        if let Some(root) = S3Root::parse(artifact_uri) {
            return root?.list(path).await;
        }
        let (url, full) = self.artifact_endpoint(artifact_uri, path)?;
        let body = self
            .send(
                Method::GET,
                url,
                "mlflow-artifacts/artifacts",
                &[("path", full)],
                &Body::Empty,
                Idempotency::Safe,
            )
            .await?;
        let answer: Answer = serde_json::from_slice(if body.is_empty() { b"{}" } else { &body })
            .map_err(|source| Error::Decode {
                endpoint: "mlflow-artifacts/artifacts".to_owned(),
                body: String::from_utf8_lossy(&body).chars().take(300).collect(),
                source,
            })?;
        let prefix = check_relative_path(path)?.join("/");
        Ok(answer
            .files
            .into_iter()
            .map(|mut file| {
                let name = file.path.rsplit('/').next().unwrap_or_default().to_owned();
                file.path = if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}/{name}")
                };
                file
            })
            .collect())
    }

    /// The bytes of the artifact file `path`.
    pub async fn download_artifact(&self, artifact_uri: &str, path: &str) -> Result<Vec<u8>> {
        if let Some(root) = S3Root::parse(artifact_uri) {
            return root?.download(path).await;
        }
        let (url, _) = self.artifact_location(artifact_uri, path)?;
        self.send(
            Method::GET,
            url,
            "mlflow-artifacts/artifacts",
            &[],
            &Body::Empty,
            Idempotency::Safe,
        )
        .await
    }

    /// Downloads the artifact directory `path`, recursively, into `local` (created if needed).
    /// Returns the files written.
    pub async fn download_dir(
        &self,
        artifact_uri: &str,
        path: &str,
        local: &Path,
    ) -> Result<Vec<PathBuf>> {
        // List first (directory by directory), then fetch the files a few at a time.
        let mut files = Vec::new();
        let mut pending = vec![check_relative_path(path)?.join("/")];
        let base_len = pending[0].len();
        while let Some(directory) = pending.pop() {
            for file in self.list_artifacts(artifact_uri, &directory).await? {
                if file.is_dir {
                    pending.push(file.path);
                    continue;
                }
                let relative = file.path[base_len..].trim_start_matches('/');
                // The server's names are checked like ours: nothing may land outside `local`.
                let segments = check_relative_path(relative)?;
                let target = segments
                    .iter()
                    .fold(local.to_path_buf(), |path, segment| path.join(segment));
                files.push((file.path, target));
            }
        }
        let mut written = Vec::new();
        let mut queue = files.into_iter();
        let mut running = tokio::task::JoinSet::new();
        loop {
            while running.len() < UPLOAD_CONCURRENCY {
                let Some((remote, target)) = queue.next() else {
                    break;
                };
                let (client, uri) = (self.clone(), artifact_uri.to_owned());
                running.spawn(async move {
                    let bytes = client.download_artifact(&uri, &remote).await?;
                    if let Some(parent) = target.parent() {
                        std::fs::create_dir_all(parent)
                            .map_err(|source| io_error(parent, source))?;
                    }
                    std::fs::write(&target, bytes).map_err(|source| io_error(&target, source))?;
                    Ok::<_, Error>(target)
                });
            }
            match running.join_next().await {
                Some(Ok(result)) => written.push(result?),
                Some(Err(join)) => {
                    return Err(Error::InvalidArgument(format!(
                        "a download task failed: {join}"
                    )));
                }
                None => break,
            }
        }
        written.sort();
        Ok(written)
    }
}

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| io_error(path, source))
}

/// Regular files under `root`, with `/`-joined relative paths, sorted; symlinks are skipped.
fn walk(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    let mut pending = vec![(String::new(), root.to_path_buf())];
    while let Some((prefix, directory)) = pending.pop() {
        let entries =
            std::fs::read_dir(&directory).map_err(|source| io_error(&directory, source))?;
        for entry in entries {
            let entry = entry.map_err(|source| io_error(&directory, source))?;
            let kind = entry
                .file_type()
                .map_err(|source| io_error(&entry.path(), source))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let relative = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            if kind.is_dir() {
                pending.push((relative, entry.path()));
            } else if kind.is_file() {
                files.push((relative, entry.path()));
            }
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_payloads_are_refused() {
        for path in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "..",
            "a\\..\\b",
            "C:/Windows",
            "a/\0b",
        ] {
            assert!(check_relative_path(path).is_err(), "{path:?} accepted");
        }
        assert_eq!(
            check_relative_path("model/MLmodel").unwrap(),
            ["model", "MLmodel"]
        );
        assert!(check_relative_path("").unwrap().is_empty());
    }

    #[test]
    fn artifact_uris_map_to_the_proxy() {
        let client = Client::new("http://127.0.0.1:5000").unwrap();
        let (url, full) = client
            .artifact_location("mlflow-artifacts:/1/abc/artifacts", "model/a b%.txt")
            .unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:5000/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/model/a%20b%25.txt"
        );
        assert_eq!(full, "1/abc/artifacts/model/a b%.txt");
        let (url, _) = client
            .artifact_location("mlflow-artifacts://other:7000/2/r/artifacts", "x")
            .unwrap();
        assert_eq!(
            url.as_str(),
            "http://other:7000/api/2.0/mlflow-artifacts/artifacts/2/r/artifacts/x"
        );
        for uri in [
            "s3://bucket/x",
            "file:///tmp/mlruns/1/r/artifacts",
            "/tmp/x",
        ] {
            let error = client.artifact_location(uri, "x").unwrap_err();
            assert!(
                matches!(error, Error::UnsupportedArtifactUri { .. }),
                "{uri}: {error}"
            );
        }
    }
}
