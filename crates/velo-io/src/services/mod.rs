//! Services: logging, alerts and tracking, configured per job.
//!
//! This module holds the services' configuration, shared by every job; [`tracking`], the run a
//! job opens (standard tags, configuration, lineage, system metrics, end status); and
//! [`system`], the system metrics sampled while a run is open. The tracing subscriber is
//! installed by the CLI; [`alerts`] posts a job's end to a Slack-compatible webhook.

use serde::{Deserialize, Serialize};

pub mod alerts;
pub mod system;
pub mod tracking;

/// How a job logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoggerService {
    /// Minimum level: `error`, `warn`, `info`, `debug` or `trace` (or a tracing filter such as
    /// `velo=debug,info`).
    #[serde(default = "LoggerService::default_level")]
    pub level: String,
    /// Line format.
    #[serde(default)]
    pub format: LogFormat,
    /// Where lines go: `stderr`, `stdout`, or a file path (appended to).
    #[serde(default = "LoggerService::default_sink")]
    pub sink: String,
}

impl LoggerService {
    fn default_level() -> String {
        "info".to_owned()
    }

    fn default_sink() -> String {
        "stderr".to_owned()
    }
}

impl Default for LoggerService {
    fn default() -> Self {
        Self {
            level: Self::default_level(),
            format: LogFormat::default(),
            sink: Self::default_sink(),
        }
    }
}

/// The format of log lines.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// How a job announces that it finished or failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertsService {
    /// Send notifications; when false, a line is printed instead.
    #[serde(default = "default_true")]
    pub enable: bool,
    /// The application name shown in notifications.
    #[serde(default = "AlertsService::default_app_name")]
    pub app_name: String,
    /// A Slack-compatible webhook URL receiving `{"text": …}`; none by default. When set,
    /// notifications go there.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// Without a webhook, show a desktop notification where the machine has a notifier:
    /// `notify-send` with a D-Bus session (Linux, BSD) or `osascript` (macOS). Otherwise, or
    /// when it fails, the line is printed.
    #[serde(default = "default_true")]
    pub desktop: bool,
    /// Timeout of a notification, in seconds: how long a webhook gets to answer, and how long
    /// a desktop notification stays up.
    #[serde(default)]
    pub timeout: Option<u64>,
}

impl AlertsService {
    fn default_app_name() -> String {
        "velo".to_owned()
    }
}

impl Default for AlertsService {
    fn default() -> Self {
        Self {
            enable: true,
            app_name: Self::default_app_name(),
            webhook_url: None,
            desktop: true,
            timeout: None,
        }
    }
}

/// Where runs are tracked and models registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MlflowService {
    /// Tracking URI: a local directory (the embedded store, laid out as MLflow's file store) or
    /// an `http(s)://` MLflow server. `MLFLOW_TRACKING_URI` overrides it.
    #[serde(default = "MlflowService::default_uri")]
    pub tracking_uri: String,
    /// Registry URI (same forms). `MLFLOW_REGISTRY_URI` overrides it.
    #[serde(default = "MlflowService::default_uri")]
    pub registry_uri: String,
    /// The experiment runs are logged to. `MLFLOW_EXPERIMENT_NAME` overrides it.
    #[serde(default = "MlflowService::default_name")]
    pub experiment_name: String,
    /// The registered model name.
    #[serde(default = "MlflowService::default_name")]
    pub registry_name: String,
    /// Run sandboxed (`velo run --sandbox NAME`): read the stores above, but write every run,
    /// artifact, version, alias and tag to the sandbox store in `.velo/sandboxes/NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

/// One field of [`MlflowService`] set from an MLflow environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MlflowOverride {
    /// The variable (`MLFLOW_TRACKING_URI`, …).
    pub variable: &'static str,
    /// The field it sets (`tracking_uri`, `registry_uri` or `experiment_name`).
    pub field: &'static str,
    /// The value.
    pub value: String,
}

impl MlflowService {
    /// The tracking and registry URI when none is configured: the embedded store in `./mlruns`.
    pub const DEFAULT_URI: &'static str = "./mlruns";

    /// The MLflow environment variables velo reads, as MLflow's clients do.
    pub const VARIABLES: [&'static str; 3] = [
        "MLFLOW_TRACKING_URI",
        "MLFLOW_REGISTRY_URI",
        "MLFLOW_EXPERIMENT_NAME",
    ];

    /// Where MLflow lives, decided in one place: the fields that the MLflow variables read
    /// through `lookup` change in this configuration (empty values are ignored).
    ///
    /// `MLFLOW_TRACKING_URI` sets the tracking URI and, as in MLflow, also moves the registry
    /// unless the registry was configured to a different place than tracking;
    /// `MLFLOW_REGISTRY_URI` sets the registry; `MLFLOW_EXPERIMENT_NAME` the experiment.
    /// [`ConfigLoader`](crate::configs::ConfigLoader) applies them as its last layer, so
    /// `velo config show` names the variable each value came from.
    pub fn overrides(&self, lookup: impl Fn(&str) -> Option<String>) -> Vec<MlflowOverride> {
        let get = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let mut changes = Vec::new();
        let mut set = |variable, field, value: &String| {
            changes.push(MlflowOverride {
                variable,
                field,
                value: value.clone(),
            });
        };
        if let Some(uri) = get("MLFLOW_TRACKING_URI") {
            set("MLFLOW_TRACKING_URI", "tracking_uri", &uri);
            if self.registry_uri == self.tracking_uri && get("MLFLOW_REGISTRY_URI").is_none() {
                set("MLFLOW_TRACKING_URI", "registry_uri", &uri);
            }
        }
        if let Some(uri) = get("MLFLOW_REGISTRY_URI") {
            set("MLFLOW_REGISTRY_URI", "registry_uri", &uri);
        }
        if let Some(name) = get("MLFLOW_EXPERIMENT_NAME") {
            set("MLFLOW_EXPERIMENT_NAME", "experiment_name", &name);
        }
        changes
    }

    /// This configuration with the [`overrides`](Self::overrides) read through `lookup`, for
    /// embedders and tests that keep the process environment out.
    #[must_use]
    pub fn with_overrides(&self, lookup: impl Fn(&str) -> Option<String>) -> Self {
        let mut resolved = self.clone();
        for change in self.overrides(lookup) {
            let field = match change.field {
                "tracking_uri" => &mut resolved.tracking_uri,
                "registry_uri" => &mut resolved.registry_uri,
                _ => &mut resolved.experiment_name,
            };
            *field = change.value;
        }
        resolved
    }

    /// This configuration with the [`overrides`](Self::overrides) of the process environment
    /// (what [`ConfigLoader`](crate::configs::ConfigLoader) already applied to a loaded one).
    #[must_use]
    pub fn with_env_overrides(&self) -> Self {
        self.with_overrides(|name| std::env::var(name).ok())
    }

    /// The default configuration with the process environment's overrides: where a command
    /// that has no configuration file (`velo serve`) finds MLflow.
    pub fn from_env() -> Self {
        Self::default().with_env_overrides()
    }

    fn default_uri() -> String {
        Self::DEFAULT_URI.to_owned()
    }

    fn default_name() -> String {
        "velo".to_owned()
    }
}

impl Default for MlflowService {
    fn default() -> Self {
        Self {
            tracking_uri: Self::default_uri(),
            registry_uri: Self::default_uri(),
            experiment_name: Self::default_name(),
            registry_name: Self::default_name(),
            sandbox: None,
        }
    }
}

/// The tracking run a job opens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// The run name (`mlflow.runName`).
    pub name: String,
    /// A description (`mlflow.note.content`).
    #[serde(default)]
    pub description: Option<String>,
    /// Extra tags.
    #[serde(default)]
    pub tags: std::collections::BTreeMap<String, String>,
    /// Sample system metrics (CPU, memory, disk, network) while the run is open.
    #[serde(default = "default_true")]
    pub log_system_metrics: bool,
}

impl RunConfig {
    /// A run configuration with this name and the defaults.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            description: None,
            tags: std::collections::BTreeMap::new(),
            log_system_metrics: true,
        }
    }
}

fn default_true() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    #[test]
    fn mlflow_variables_override_the_configuration() {
        let config = MlflowService::default();
        assert_eq!(config.with_overrides(lookup(&[])), config);
        let moved = config.with_overrides(lookup(&[
            ("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000"),
            ("MLFLOW_EXPERIMENT_NAME", "bikes-staging"),
        ]));
        assert_eq!(moved.tracking_uri, "http://127.0.0.1:5000");
        assert_eq!(
            moved.registry_uri, "http://127.0.0.1:5000",
            "follows tracking"
        );
        assert_eq!(moved.experiment_name, "bikes-staging");
        assert_eq!(moved.registry_name, config.registry_name);

        let both = config.with_overrides(lookup(&[
            ("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000"),
            ("MLFLOW_REGISTRY_URI", "./registry"),
        ]));
        assert_eq!(both.registry_uri, "./registry");

        // A registry configured elsewhere than tracking stays where it was configured.
        let separate = MlflowService {
            registry_uri: "./models".to_owned(),
            ..MlflowService::default()
        };
        let kept = separate.with_overrides(lookup(&[("MLFLOW_TRACKING_URI", "/tmp/runs")]));
        assert_eq!(
            (kept.tracking_uri.as_str(), kept.registry_uri.as_str()),
            ("/tmp/runs", "./models")
        );
        // Empty variables are ignored.
        assert_eq!(
            config.with_overrides(lookup(&[("MLFLOW_TRACKING_URI", " ")])),
            config
        );
    }
}
