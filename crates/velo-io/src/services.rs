//! Services: logging, alerts and tracking, configured per job.
//!
//! This module holds the services' configuration, shared by every job; their behaviour (the
//! tracing subscriber is installed by the CLI, alerts, tracking runs) arrives with the jobs and
//! registry work.

use serde::{Deserialize, Serialize};

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
    /// A Slack-compatible webhook URL receiving `{"text": …}`; none by default.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// Timeout of a notification, in seconds.
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
}

impl MlflowService {
    fn default_uri() -> String {
        "./mlruns".to_owned()
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
