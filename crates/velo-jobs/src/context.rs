//! What a job is given to run: its stores, how its run is started, and a slot through which
//! the caller can end the open run from elsewhere (a Ctrl-C handler).

use std::sync::{Arc, Mutex, atomic::AtomicBool};

use velo_io::{
    registries::{self, ModelRegistry, Tracking},
    services::{
        MlflowService,
        tracking::{RunContext, RunKiller},
    },
};

use crate::{
    error::JobError,
    progress::{NoProgress, Progress},
};

/// The model version tag that marks a version registered by a run that was then killed.
pub const RUN_STATUS_TAG: &str = "velo.run_status";

/// The services a job runs with. Build it with [`JobContext::open`] from a job's configured
/// MLflow service, or assemble one from stores an embedder opened itself.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// Where runs are logged.
    pub tracking: Arc<dyn Tracking>,
    /// Where models are registered.
    pub registry: Arc<dyn ModelRegistry>,
    /// The experiment runs go to and the registered model name (after the environment's
    /// overrides, when the context was opened with them).
    pub mlflow: MlflowService,
    /// How runs are started (source name, project directory, system metrics sampling).
    pub run: RunContext,
    /// Holds a handle to the open run while a job runs, for a signal handler to end it as KILLED.
    pub active_run: Arc<Mutex<Option<RunKiller>>>,
    /// Where the job reports its progress ([`NoProgress`] unless the caller sets one).
    pub progress: Arc<dyn Progress>,
    /// Set by the caller (a signal handler) to ask a streaming job to finish its batch, commit
    /// and return; jobs that end by themselves ignore it.
    pub stop: Arc<AtomicBool>,
    /// A configuration waiting to replace the running one, put here by the caller (`velo run`
    /// does on SIGHUP, after validating it). A streaming job takes it between batches, applies
    /// the settings that can change while it runs, and refuses, keeping what runs, a change
    /// that needs a restart; other jobs ignore it.
    pub reload: Arc<Mutex<Option<crate::JobConfig>>>,
}

impl JobContext {
    /// Who acts, for the alias log: `job` (and its run), by the context's user or the
    /// process's `USER`.
    pub fn actor(&self, job: &str, run_id: Option<&str>) -> String {
        let user = self.run.user_name();
        match run_id {
            Some(run) => format!("{job} (run {run}) by {user}"),
            None => format!("{job} by {user}"),
        }
    }
    /// Opens the stores named by `mlflow` (a directory for the embedded store, or an
    /// `http(s)://` server). A configuration loaded with velo-io's `ConfigLoader` has MLflow's
    /// variables applied already; one built in code can take them with
    /// [`MlflowService::with_env_overrides`].
    ///
    /// With `mlflow.sandbox`, the stores are the sandbox `.velo/sandboxes/<name>` (under the
    /// working directory) over the configured ones: reads see both, writes go to the sandbox
    /// only (see [`crate::sandbox`]).
    pub fn open(mlflow: &MlflowService, run: RunContext) -> Result<Self, JobError> {
        let stores = match &mlflow.sandbox {
            None => registries::open_pair(&mlflow.tracking_uri, &mlflow.registry_uri)?,
            Some(name) => {
                // Production is opened for reading: nothing is created or recovered there.
                let tracking = registries::open_existing(&mlflow.tracking_uri)?;
                let production = if mlflow.registry_uri == mlflow.tracking_uri {
                    tracking
                } else {
                    registries::Stores {
                        tracking: tracking.tracking,
                        registry: registries::open_existing(&mlflow.registry_uri)?.registry,
                    }
                };
                crate::sandbox::open(std::path::Path::new("."), name, production)?.stores()
            }
        };
        Ok(Self {
            tracking: stores.tracking,
            registry: stores.registry,
            mlflow: mlflow.clone(),
            run,
            active_run: Arc::default(),
            progress: Arc::new(NoProgress),
            stop: Arc::default(),
            reload: Arc::default(),
        })
    }

    /// Records the open run, so that [`kill_active_run`](Self::kill_active_run) can end it.
    pub(crate) fn set_active_run(&self, killer: Option<RunKiller>) {
        if let Ok(mut slot) = self.active_run.lock() {
            *slot = killer;
        }
    }

    /// Whether the caller asked the job to stop (see [`stop`](Self::stop)).
    pub fn stop_requested(&self) -> bool {
        self.stop.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Ends the open run, if any, as KILLED (for a Ctrl-C handler), and tags each model version
    /// it registered already `velo.run_status: KILLED`, so that promoting the latest version
    /// passes over it.
    pub fn kill_active_run(&self) -> Result<(), JobError> {
        let killer = self.active_run.lock().ok().and_then(|mut slot| slot.take());
        if let Some(killer) = killer {
            killer.kill()?;
            let name = &self.mlflow.registry_name;
            let versions = match self.registry.list_model_versions(name) {
                Ok(versions) => versions,
                Err(error) if error.is_not_found() => Vec::new(),
                Err(error) => return Err(error.into()),
            };
            for version in versions.iter().filter(|v| v.run_id == killer.run_id()) {
                self.registry.set_model_version_tag(
                    name,
                    &version.version,
                    RUN_STATUS_TAG,
                    "KILLED",
                )?;
            }
        }
        Ok(())
    }
}
