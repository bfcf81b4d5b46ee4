//! Artifacts under `s3://bucket/prefix` URIs, read and written straight to the bucket: what
//! MLflow's clients do when the server runs with `--no-serve-artifacts --default-artifact-root
//! s3://…`.
//!
//! The store is configured as MLflow's users already configure it: `MLFLOW_S3_ENDPOINT_URL`
//! (an S3-compatible server; plain `http://` is allowed for it), `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_DEFAULT_REGION` (or `AWS_REGION`), and the
//! rest of the `AWS_*` variables the `object_store` crate reads. Files of at least
//! `MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE` bytes (500 MiB, MLflow's default) go up in
//! parts of `MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE` bytes (10 MiB), as MLflow's S3 client does;
//! an upload is visible only once complete. Transient failures are retried by `object_store`
//! (with backoff, three times by default).

use object_store::{
    ObjectStore as _, ObjectStoreExt as _, PutPayload, WriteMultipart,
    aws::{AmazonS3, AmazonS3Builder},
    path::Path as ObjectPath,
};

use crate::{
    artifacts::check_relative_path,
    error::{Error, Result},
    types::FileInfo,
};

/// MLflow's default threshold for multipart uploads (500 MiB).
const MULTIPART_MINIMUM: usize = 500 * 1024 * 1024;
/// MLflow's default part size (10 MiB).
const MULTIPART_CHUNK: usize = 10 * 1024 * 1024;

/// A run's artifact root in a bucket.
#[derive(Debug)]
pub(crate) struct S3Root {
    store: AmazonS3,
    /// The key prefix of the root, without a trailing `/` (empty for the bucket's root).
    prefix: String,
    uri: String,
}

fn env_size(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .filter(|size| *size > 0)
        .unwrap_or(default)
}

impl S3Root {
    /// The root an `s3://` artifact URI names; `None` for any other URI.
    pub(crate) fn parse(uri: &str) -> Option<Result<Self>> {
        let rest = uri.strip_prefix("s3://")?;
        Some(Self::open(uri, rest))
    }

    fn open(uri: &str, rest: &str) -> Result<Self> {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::UnsupportedArtifactUri {
                uri: uri.to_owned(),
                reason: "it names no bucket".to_owned(),
            });
        }
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(endpoint) = std::env::var("MLFLOW_S3_ENDPOINT_URL")
            .ok()
            .filter(|endpoint| !endpoint.trim().is_empty())
        {
            builder = builder
                .with_allow_http(endpoint.starts_with("http://"))
                .with_endpoint(endpoint.trim());
        }
        let store = builder.build().map_err(|source| Error::ObjectStore {
            uri: uri.to_owned(),
            source: Box::new(source),
        })?;
        Ok(Self {
            store,
            prefix: prefix.trim_matches('/').to_owned(),
            uri: uri.to_owned(),
        })
    }

    fn error(&self, source: object_store::Error) -> Error {
        Error::ObjectStore {
            uri: self.uri.clone(),
            source: Box::new(source),
        }
    }

    /// The object key of `path` under the root (checked like every artifact path).
    fn key(&self, path: &str) -> Result<String> {
        let segments = check_relative_path(path)?;
        Ok(std::iter::once(self.prefix.as_str())
            .chain(segments)
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join("/"))
    }

    /// Writes `bytes` as the artifact `path`: one request, or a multipart upload from
    /// MLflow's threshold on (aborted, leaving nothing, when a part fails).
    pub(crate) async fn upload(&self, path: &str, bytes: Vec<u8>) -> Result<()> {
        let key = ObjectPath::from(self.key(path)?);
        if bytes.len()
            < env_size(
                "MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE",
                MULTIPART_MINIMUM,
            )
        {
            self.store
                .put(&key, PutPayload::from(bytes))
                .await
                .map_err(|source| self.error(source))?;
            return Ok(());
        }
        let upload = self
            .store
            .put_multipart(&key)
            .await
            .map_err(|source| self.error(source))?;
        let chunk = env_size("MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE", MULTIPART_CHUNK);
        let mut writer = WriteMultipart::new_with_chunk_size(upload, chunk);
        writer.write(&bytes);
        match writer.finish().await {
            Ok(_) => Ok(()),
            Err(source) => Err(self.error(source)),
        }
    }

    /// The bytes of the artifact `path`.
    pub(crate) async fn download(&self, path: &str) -> Result<Vec<u8>> {
        let key = ObjectPath::from(self.key(path)?);
        let result = self
            .store
            .get(&key)
            .await
            .map_err(|source| self.error(source))?;
        let bytes = result.bytes().await.map_err(|source| self.error(source))?;
        Ok(bytes.to_vec())
    }

    /// The files and directories directly under `path`, relative to the root.
    pub(crate) async fn list(&self, path: &str) -> Result<Vec<FileInfo>> {
        let key = self.key(path)?;
        let prefix = (!key.is_empty()).then(|| ObjectPath::from(key.as_str()));
        let listing = self
            .store
            .list_with_delimiter(prefix.as_ref())
            .await
            .map_err(|source| self.error(source))?;
        let relative = |location: &ObjectPath| -> String {
            let full = location.as_ref();
            full.strip_prefix(self.prefix.as_str())
                .unwrap_or(full)
                .trim_start_matches('/')
                .to_owned()
        };
        let mut files: Vec<FileInfo> = listing
            .common_prefixes
            .iter()
            .map(|directory| FileInfo {
                path: relative(directory),
                is_dir: true,
                file_size: None,
            })
            .chain(listing.objects.iter().map(|object| FileInfo {
                path: relative(&object.location),
                is_dir: false,
                file_size: i64::try_from(object.size).ok(),
            }))
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }
}

/// Objects named by `s3://bucket/key` URIs, read and written whole, blocking: the same store
/// and settings as `s3://` artifact roots, for datasets kept in a bucket.
pub mod objects {
    use object_store::{ObjectStore as _, ObjectStoreExt as _};

    use super::{Error, ObjectPath, PutPayload, Result, S3Root};

    fn runtime() -> Result<tokio::runtime::Runtime> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| Error::Io {
                path: "a runtime for S3 requests".to_owned(),
                source,
            })
    }

    /// The root of the bucket and the object's key.
    fn locate(uri: &str) -> Result<(S3Root, String)> {
        let rest = uri
            .strip_prefix("s3://")
            .ok_or_else(|| Error::InvalidArgument(format!("{uri} is not an s3:// URI")))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if key.is_empty() {
            return Err(Error::InvalidArgument(format!("{uri} names no object")));
        }
        let root = S3Root::open(uri, bucket)?;
        Ok((root, key.to_owned()))
    }

    /// The bytes of the object `uri` (`s3://bucket/key`).
    ///
    /// # Errors
    /// A malformed URI, or the store's error (a missing object among them).
    pub fn get(uri: &str) -> Result<Vec<u8>> {
        let (root, key) = locate(uri)?;
        runtime()?.block_on(async {
            let result = root
                .store
                .get(&ObjectPath::from(key))
                .await
                .map_err(|source| root.error(source))?;
            let bytes = result.bytes().await.map_err(|source| root.error(source))?;
            Ok(bytes.to_vec())
        })
    }

    /// The objects directly under the prefix `uri` (`s3://bucket/prefix/`), as `s3://` URIs
    /// sorted by key.
    ///
    /// # Errors
    /// A malformed URI, or the store's error.
    pub fn list(uri: &str) -> Result<Vec<String>> {
        let rest = uri
            .strip_prefix("s3://")
            .ok_or_else(|| Error::InvalidArgument(format!("{uri} is not an s3:// URI")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let root = S3Root::open(uri, bucket)?;
        let prefix = prefix.trim_end_matches('/');
        runtime()?.block_on(async {
            let path = (!prefix.is_empty()).then(|| ObjectPath::from(prefix));
            let listing = root
                .store
                .list_with_delimiter(path.as_ref())
                .await
                .map_err(|source| root.error(source))?;
            let mut keys: Vec<String> = listing
                .objects
                .iter()
                .map(|object| format!("s3://{bucket}/{}", object.location.as_ref()))
                .collect();
            keys.sort();
            Ok(keys)
        })
    }

    /// Writes `bytes` as the object `uri`, whole: readers see the old object or the new one,
    /// never a part.
    ///
    /// # Errors
    /// A malformed URI, or the store's error.
    pub fn put(uri: &str, bytes: Vec<u8>) -> Result<()> {
        let (root, key) = locate(uri)?;
        runtime()?.block_on(async {
            root.store
                .put(&ObjectPath::from(key), PutPayload::from(bytes))
                .await
                .map_err(|source| root.error(source))?;
            Ok(())
        })
    }
}
