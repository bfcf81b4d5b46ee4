//! The MLflow server backend, through velo-mlflow's client.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Mutex,
};

use velo_mlflow::{BlockingClient, Client, ClientBuilder, RunSearch, VersionSearch};

use super::{
    DatasetInput, FileInfo, Metric, ModelRegistry, ModelVersion, NewRun, Param, RegisteredModel,
    RegistryError, Result, Run, RunInfo, RunStatus, Tag, Tracking,
};

/// A real MLflow tracking server and registry (`tracking_uri: http://…`). Credentials and
/// timeouts come from MLflow's environment variables (`MLFLOW_TRACKING_TOKEN`,
/// `MLFLOW_TRACKING_USERNAME`/`PASSWORD`, `MLFLOW_HTTP_REQUEST_TIMEOUT`, …).
#[derive(Debug)]
pub struct MlflowServer {
    mlflow: BlockingClient,
    artifact_uris: Mutex<HashMap<String, String>>,
    experiments: Mutex<HashMap<String, String>>,
}

impl MlflowServer {
    /// Connects to the server at `uri` (nothing is sent until the first call).
    pub fn connect(uri: &str) -> Result<Self> {
        let mut builder = ClientBuilder::new(uri).auth(velo_mlflow::Auth::from_env());
        if let Some(seconds) = std::env::var("MLFLOW_HTTP_REQUEST_TIMEOUT")
            .ok()
            .and_then(|text| text.trim().parse().ok())
        {
            builder = builder.timeout(std::time::Duration::from_secs(seconds));
        }
        if let Some(retries) = std::env::var("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
            .ok()
            .and_then(|text| text.trim().parse().ok())
        {
            builder = builder.max_retries(retries);
        }
        Self::with_client(builder.build()?)
    }

    /// Uses a client the embedder configured.
    pub fn with_client(client: Client) -> Result<Self> {
        Ok(Self {
            mlflow: BlockingClient::new(client)?,
            artifact_uris: Mutex::new(HashMap::new()),
            experiments: Mutex::new(HashMap::new()),
        })
    }

    fn artifact_uri(&self, run_id: &str) -> Result<String> {
        if let Some(uri) = self
            .artifact_uris
            .lock()
            .ok()
            .and_then(|cache| cache.get(run_id).cloned())
        {
            return Ok(uri);
        }
        let run = self
            .mlflow
            .run(async |client| client.get_run(run_id).await)?;
        let uri = run.info.artifact_uri;
        if let Ok(mut cache) = self.artifact_uris.lock() {
            cache.insert(run_id.to_owned(), uri.clone());
        }
        Ok(uri)
    }
}

impl Tracking for MlflowServer {
    fn location(&self) -> String {
        self.mlflow.client().tracking_uri().to_string()
    }

    fn get_or_create_experiment(&self, name: &str) -> Result<String> {
        if let Some(id) = self
            .experiments
            .lock()
            .ok()
            .and_then(|known| known.get(name).cloned())
        {
            return Ok(id);
        }
        let id = self
            .mlflow
            .run(async |client| client.get_or_create_experiment(name).await)?;
        if let Ok(mut known) = self.experiments.lock() {
            known.insert(name.to_owned(), id.clone());
        }
        Ok(id)
    }

    fn create_run(&self, experiment_id: &str, new: NewRun) -> Result<RunInfo> {
        let info = self
            .mlflow
            .run(async |client| client.create_run(experiment_id, new).await)?;
        if let Ok(mut cache) = self.artifact_uris.lock() {
            cache.insert(info.run_id.clone(), info.artifact_uri.clone());
        }
        Ok(info)
    }

    fn log_batch(
        &self,
        run_id: &str,
        metrics: &[Metric],
        params: &[Param],
        tags: &[Tag],
    ) -> Result<()> {
        Ok(self
            .mlflow
            .run(async |client| client.log_batch(run_id, metrics, params, tags).await)?)
    }

    fn log_inputs(&self, run_id: &str, datasets: &[DatasetInput]) -> Result<()> {
        Ok(self
            .mlflow
            .run(async |client| client.log_inputs(run_id, datasets).await)?)
    }

    fn log_artifact(&self, run_id: &str, path: &str, bytes: &[u8]) -> Result<()> {
        let uri = self.artifact_uri(run_id)?;
        Ok(self
            .mlflow
            .run(async |client| client.upload_artifact(&uri, path, bytes.to_vec()).await)?)
    }

    fn log_artifact_dir(&self, run_id: &str, path: &str, local: &Path) -> Result<()> {
        let uri = self.artifact_uri(run_id)?;
        Ok(self
            .mlflow
            .run(async |client| client.upload_dir(&uri, path, local).await)?)
    }

    fn log_artifact_files(&self, run_id: &str, path: &str, files: &[(&str, &[u8])]) -> Result<()> {
        let uri = self.artifact_uri(run_id)?;
        let base = path.trim_end_matches('/');
        for (name, bytes) in files {
            velo_mlflow::check_relative_path(name)?;
            let target = if base.is_empty() {
                (*name).to_owned()
            } else {
                format!("{base}/{name}")
            };
            self.mlflow
                .run(async |client| client.upload_artifact(&uri, &target, bytes.to_vec()).await)?;
        }
        Ok(())
    }

    fn list_artifacts(&self, run_id: &str, path: &str) -> Result<Vec<FileInfo>> {
        let uri = self.artifact_uri(run_id)?;
        Ok(self
            .mlflow
            .run(async |client| client.list_artifacts(&uri, path).await)?)
    }

    fn read_artifact(&self, run_id: &str, path: &str) -> Result<Vec<u8>> {
        let uri = self.artifact_uri(run_id)?;
        Ok(self
            .mlflow
            .run(async |client| client.download_artifact(&uri, path).await)?)
    }

    fn record_logged_model(&self, run_id: &str, mlmodel: &serde_json::Value) -> Result<()> {
        Ok(self
            .mlflow
            .run(async |client| client.log_model(run_id, mlmodel).await)?)
    }

    fn end_run(&self, run_id: &str, status: RunStatus) -> Result<()> {
        self.mlflow
            .run(async |client| client.update_run(run_id, status, None).await)?;
        Ok(())
    }

    fn get_run(&self, run_id: &str) -> Result<Run> {
        Ok(self
            .mlflow
            .run(async |client| client.get_run(run_id).await)?)
    }

    fn metric_history(&self, run_id: &str, key: &str) -> Result<Vec<Metric>> {
        Ok(self
            .mlflow
            .run(async |client| client.get_metric_history(run_id, key).await)?)
    }

    fn list_runs(&self, experiment_id: &str) -> Result<Vec<Run>> {
        let ids = [experiment_id.to_owned()];
        self.mlflow.run(async |client| {
            let mut runs = Vec::new();
            let mut search = RunSearch {
                order_by: vec!["attributes.start_time DESC".to_owned()],
                ..RunSearch::default()
            };
            loop {
                let page = client.search_runs(&ids, &search).await?;
                runs.extend(page.runs);
                match page.next_page_token.filter(|token| !token.is_empty()) {
                    Some(token) => search.page_token = Some(token),
                    None => return Ok(runs),
                }
            }
        })
    }
}

impl ModelRegistry for MlflowServer {
    fn location(&self) -> String {
        self.mlflow.client().tracking_uri().to_string()
    }

    fn create_model_version(
        &self,
        name: &str,
        source: &str,
        run_id: &str,
        tags: &[Tag],
    ) -> Result<ModelVersion> {
        Ok(self.mlflow.run(async |client| {
            // Most registrations add to an existing model: try that first (one request), and
            // create the model only when the server says it is missing. Nothing was created
            // by the refused call, so repeating it is safe.
            match client
                .create_model_version(name, source, Some(run_id), tags, None)
                .await
            {
                Err(error) if error.is_not_found() => {
                    client.get_or_create_registered_model(name).await?;
                    client
                        .create_model_version(name, source, Some(run_id), tags, None)
                        .await
                }
                other => other,
            }
        })?)
    }

    fn get_model_version(&self, name: &str, version: &str) -> Result<Option<ModelVersion>> {
        Ok(self
            .mlflow
            .run(async |client| client.get_model_version(name, version).await)?)
    }

    fn latest_model_version(&self, name: &str) -> Result<Option<ModelVersion>> {
        Ok(self
            .mlflow
            .run(async |client| client.latest_model_version(name).await)?)
    }

    fn list_model_versions(&self, name: &str) -> Result<Vec<ModelVersion>> {
        let filter = format!("name = '{}'", name.replace('\'', "\\'"));
        self.mlflow.run(async |client| {
            let mut versions = Vec::new();
            let mut search = VersionSearch {
                filter: Some(filter),
                order_by: vec!["version_number ASC".to_owned()],
                ..VersionSearch::default()
            };
            loop {
                let page = client.search_model_versions(&search).await?;
                versions.extend(page.model_versions);
                match page.next_page_token.filter(|token| !token.is_empty()) {
                    Some(token) => search.page_token = Some(token),
                    None => return Ok(versions),
                }
            }
        })
    }

    fn list_registered_models(&self) -> Result<Vec<String>> {
        self.mlflow.run(async |client| {
            let mut names = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let page = client
                    .search_registered_models(None, Some(1000), token.as_deref())
                    .await?;
                names.extend(page.registered_models.into_iter().map(|model| model.name));
                match page.next_page_token {
                    Some(next) if !next.is_empty() => token = Some(next),
                    _ => break,
                }
            }
            names.sort();
            Ok(names)
        })
    }

    fn get_registered_model(&self, name: &str) -> Result<Option<RegisteredModel>> {
        Ok(self
            .mlflow
            .run(async |client| client.get_registered_model(name).await)?)
    }

    fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<()> {
        // MLflow's SQL store sets a new alias with a check then an INSERT: two clients setting
        // the same new alias at once make one of them fail on the unique constraint. The alias
        // exists then, and setting it again is an UPDATE: try again.
        let mut attempts = 0;
        loop {
            let result = self
                .mlflow
                .run(async |client| client.set_alias(name, alias, version).await);
            match result {
                Err(error) if attempts < 3 && lost_insert_race(&error) => attempts += 1,
                other => return Ok(other?),
            }
        }
    }

    fn set_registered_model_tag(&self, name: &str, key: &str, value: &str) -> Result<()> {
        Ok(self
            .mlflow
            .run(async |client| client.set_registered_model_tag(name, key, value).await)?)
    }

    fn delete_alias(&self, name: &str, alias: &str) -> Result<()> {
        let result = self
            .mlflow
            .run(async |client| client.delete_alias(name, alias).await);
        match result {
            Err(error) if error.is_not_found() => Ok(()),
            other => Ok(other?),
        }
    }

    fn get_model_version_by_alias(&self, name: &str, alias: &str) -> Result<Option<ModelVersion>> {
        Ok(self
            .mlflow
            .run(async |client| client.get_model_version_by_alias(name, alias).await)?)
    }

    fn set_model_version_tag(
        &self,
        name: &str,
        version: &str,
        key: &str,
        value: &str,
    ) -> Result<()> {
        Ok(self.mlflow.run(async |client| {
            client
                .set_model_version_tag(name, version, key, value)
                .await
        })?)
    }

    fn read_model_file(&self, version: &ModelVersion, relative: &str) -> Result<Vec<u8>> {
        velo_mlflow::check_relative_path(relative)?;
        let source = &version.source;
        if source.starts_with("mlflow-artifacts:") || source.starts_with("s3://") {
            return Ok(self
                .mlflow
                .run(async |client| client.download_artifact(source, relative).await)?);
        }
        if let Some(rest) = source.strip_prefix("runs:/") {
            let (run_id, path) = rest.split_once('/').unwrap_or((rest, ""));
            let uri = self.artifact_uri(run_id)?;
            let path = if path.is_empty() {
                relative.to_owned()
            } else {
                format!("{}/{relative}", path.trim_end_matches('/'))
            };
            return Ok(self
                .mlflow
                .run(async |client| client.download_artifact(&uri, &path).await)?);
        }
        read_local_source_file(source, relative)
    }

    fn download_model(&self, version: &ModelVersion, into: &Path) -> Result<()> {
        let source = &version.source;
        if source.starts_with("mlflow-artifacts:") || source.starts_with("s3://") {
            self.mlflow
                .run(async |client| client.download_dir(source, "", into).await)?;
            return Ok(());
        }
        if let Some(rest) = source.strip_prefix("runs:/") {
            let (run_id, path) = rest.split_once('/').unwrap_or((rest, ""));
            let uri = self.artifact_uri(run_id)?;
            self.mlflow
                .run(async |client| client.download_dir(&uri, path, into).await)?;
            return Ok(());
        }
        copy_local_source(source, into)
    }
}

/// The directory of a model version whose source is local (`file://…` or a path).
fn local_source_dir(source: &str) -> Result<PathBuf> {
    Ok(if source.starts_with("file:") {
        url::Url::parse(source)
            .ok()
            .and_then(|url| url.to_file_path().ok())
            .ok_or_else(|| {
                RegistryError::InvalidArgument(format!(
                    "model source {source:?} is not a local path"
                ))
            })?
    } else if source.contains("://") || source.starts_with("mlflow-artifacts:") {
        return Err(RegistryError::InvalidArgument(format!(
            "model source {source:?} lives on a server; open the registry with its http(s):// uri"
        )));
    } else {
        PathBuf::from(source)
    })
}

/// Reads the file `relative` of a model version whose source is a local directory, refusing a
/// symbolic link anywhere below the source.
pub(crate) fn read_local_source_file(source: &str, relative: &str) -> Result<Vec<u8>> {
    let mut path = local_source_dir(source)?;
    for segment in velo_mlflow::check_relative_path(relative)? {
        path.push(segment);
        let kind =
            std::fs::symlink_metadata(&path).map_err(|e| RegistryError::io("read", &path, e))?;
        if kind.file_type().is_symlink() {
            return Err(RegistryError::InvalidArgument(format!(
                "model file {} is a symbolic link",
                path.display()
            )));
        }
    }
    std::fs::read(&path).map_err(|e| RegistryError::io("read", &path, e))
}

/// Copies a model version whose source is a local directory (`file://…` or a path) into
/// `into`, refusing symbolic links.
pub(crate) fn copy_local_source(source: &str, into: &Path) -> Result<()> {
    let path = local_source_dir(source)?;
    if !path.is_dir() {
        return Err(RegistryError::NotFound {
            what: format!("model files at {}", path.display()),
        });
    }
    let mut pending = vec![(path, into.to_path_buf())];
    while let Some((from, to)) = pending.pop() {
        std::fs::create_dir_all(&to).map_err(|e| RegistryError::io("create", &to, e))?;
        for entry in std::fs::read_dir(&from).map_err(|e| RegistryError::io("list", &from, e))? {
            let entry = entry.map_err(|e| RegistryError::io("list", &from, e))?;
            let kind = entry
                .file_type()
                .map_err(|e| RegistryError::io("inspect", &from, e))?;
            let target = to.join(entry.file_name());
            if kind.is_symlink() {
                return Err(RegistryError::InvalidArgument(format!(
                    "model file {} is a symbolic link",
                    entry.path().display()
                )));
            } else if kind.is_dir() {
                pending.push((entry.path(), target));
            } else {
                std::fs::copy(entry.path(), &target)
                    .map_err(|e| RegistryError::io("copy", &target, e))?;
            }
        }
    }
    Ok(())
}

/// Whether an MLflow error is a lost race on a unique constraint (SQLite, PostgreSQL, MySQL).
fn lost_insert_race(error: &velo_mlflow::Error) -> bool {
    let text = error.to_string();
    [
        "UNIQUE constraint failed",
        "duplicate key value",
        "Duplicate entry",
        "IntegrityError",
    ]
    .iter()
    .any(|marker| text.contains(marker))
}
