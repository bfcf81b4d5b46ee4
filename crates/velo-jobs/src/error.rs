//! The error type of jobs.
//!
//! Every variant keeps its cause as a source, so that a caller printing the chain (the CLI
//! prints `error:` then one `caused by:` line per source) shows each message once.

use velo_io::{datasets::DatasetError, registries::RegistryError};

/// A boxed cause from a library whose error type velo does not expose (arrow, rayon, tokio,
/// plotters, rdkafka).
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Why a job failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// A dataset could not be read, validated or written.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// The tracking store or the registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A model could not be fitted, used or saved.
    #[error(transparent)]
    Model(#[from] velo_models::ModelError),
    /// A registered model version's file could not be decoded into a model.
    #[error("cannot load {uri} (version {version}, {file})")]
    LoadModel {
        /// The model URI asked for.
        uri: String,
        /// The version it resolved to.
        version: String,
        /// The model file read, in the version's source.
        file: String,
        /// What is wrong with the file (boxed: the error stays small).
        #[source]
        source: Box<velo_models::ModelError>,
    },
    /// A registered model the job refers to does not exist (checked before the job runs).
    #[error("the job refers to {uri}, which the registry does not hold{hint}")]
    Reference {
        /// The model URI.
        uri: String,
        /// What the registry holds instead (`; bikes has aliases …`), or empty.
        hint: String,
        /// The registry's answer (boxed: the error stays small).
        #[source]
        source: Box<RegistryError>,
    },
    /// A metric could not be computed.
    #[error(transparent)]
    Metric(#[from] velo_core::metrics::MetricError),
    /// The data cannot be split as configured.
    #[error(transparent)]
    Split(#[from] velo_core::splitters::SplitError),
    /// The configuration asks for something no run could do (an empty grid, an unknown metric,
    /// a missing schema); nothing was computed.
    #[error("{0}")]
    Config(String),
    /// The configuration and the data disagree (a missing column, rows that do not align, an
    /// empty dataset).
    #[error("{0}")]
    Data(String),
    /// A model version misses the thresholds it is held to.
    #[error("{}", thresholds_message(name, version, failures, alias.as_deref()))]
    Thresholds {
        /// The registered model.
        name: String,
        /// The version.
        version: String,
        /// Each threshold missed, with the value reached.
        failures: Vec<String>,
        /// The alias a promotion did not move because of it.
        alias: Option<String>,
    },
    /// Scenarios, cases or extreme inputs of a suite failed; everything was logged first.
    #[error(
        "{name} version {version} fails {} of {tried} scenario check(s): {}",
        failures.len(),
        failures.join("; ")
    )]
    Scenarios {
        /// The registered model.
        name: String,
        /// The version.
        version: String,
        /// How many scenarios, cases and extreme inputs were tried.
        tried: usize,
        /// Each failure: what failed and why.
        failures: Vec<String>,
    },
    /// Monitoring found drift its policy fails on; everything was logged first.
    #[error(
        "{name} version {version}: the data drifted in {} of {windows} window(s): {}",
        drifted.len(),
        drifted.join("; ")
    )]
    Drift {
        /// The registered model.
        name: String,
        /// The version.
        version: String,
        /// Windows compared.
        windows: usize,
        /// Each window that drifted, with its drifted columns.
        drifted: Vec<String>,
    },
    /// A report (JUnit XML, HTML) could not be encoded.
    #[error("cannot encode the {what}")]
    Report {
        /// The report, such as `JUnit file`.
        what: &'static str,
        /// The cause.
        #[source]
        source: Cause,
    },
    /// A table (predictions, importances, cv results) could not be built or sliced.
    #[error("cannot {action}")]
    Table {
        /// What was being done, such as `build the outputs`.
        action: String,
        /// The arrow error.
        #[source]
        source: arrow::error::ArrowError,
    },
    /// Produced rows break the outputs schema.
    #[error("the predictions break the outputs schema")]
    Outputs(#[source] velo_core::schemas::SchemaError),
    /// The configuration could not be encoded for logging.
    #[error("cannot encode the configuration")]
    Encode(#[source] serde_json::Error),
    /// A chart could not be drawn or encoded.
    #[error("cannot draw a chart")]
    Chart(#[source] Cause),
    /// A thread pool, async runtime or listening socket could not be started.
    #[error("cannot {action}")]
    Runtime {
        /// What was being started, such as `start 2 threads`.
        action: String,
        /// The cause.
        #[source]
        source: Cause,
    },
    /// The Kafka client or broker failed.
    #[error("Kafka: cannot {action}")]
    Kafka {
        /// What was being done, such as `commit offsets`.
        action: String,
        /// The client's error.
        #[source]
        source: Cause,
    },
    /// The job was asked to stop (Ctrl-C, SIGTERM) before it could finish; nothing was
    /// registered or promoted after the request.
    #[error("interrupted: {0}")]
    Interrupted(&'static str),
    /// This build of velo lacks what the job needs (a feature left out at compile time).
    #[error("{0}")]
    Unsupported(String),
}

fn thresholds_message(
    name: &str,
    version: &str,
    failures: &[String],
    alias: Option<&str>,
) -> String {
    let not_moved = alias.map_or_else(String::new, |alias| format!(", alias `{alias}` not moved"));
    format!(
        "{name} version {version} misses {} threshold(s){not_moved}: {}",
        failures.len(),
        failures.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    /// Every message of `error`'s chain, outermost first.
    fn chain(error: &JobError) -> Vec<String> {
        let mut lines = vec![error.to_string()];
        let mut source = error.source();
        while let Some(cause) = source {
            lines.push(cause.to_string());
            source = cause.source();
        }
        lines
    }

    #[test]
    fn each_cause_of_a_chain_is_said_once() {
        let model = || velo_models::ModelError::Artifact {
            message: "the file ends before its header".to_owned(),
        };
        let io = || std::io::Error::other("disk on fire");
        // Each error with the number of lines its chain prints.
        let errors = [
            (JobError::Model(model()), 1),
            (
                JobError::LoadModel {
                    uri: "models:/bikes@Champion".to_owned(),
                    version: "3".to_owned(),
                    file: "/store/0/run/artifacts/model/model.velo".to_owned(),
                    source: Box::new(model()),
                },
                2,
            ),
            (
                JobError::Registry(RegistryError::Model {
                    name: "bikes".to_owned(),
                    version: "3".to_owned(),
                    source: Box::new(RegistryError::Io {
                        action: "read",
                        path: "model.velo".into(),
                        source: io(),
                    }),
                }),
                3,
            ),
            (
                JobError::Table {
                    action: "select rows".to_owned(),
                    source: arrow::error::ArrowError::ComputeError(
                        "index out of bounds".to_owned(),
                    ),
                },
                2,
            ),
            (
                JobError::Runtime {
                    action: "start 2 threads".to_owned(),
                    source: Box::new(io()),
                },
                2,
            ),
            (
                JobError::Kafka {
                    action: "commit offsets".to_owned(),
                    source: Box::new(io()),
                },
                2,
            ),
        ];
        for (error, expected) in &errors {
            let lines = chain(error);
            assert_eq!(lines.len(), *expected, "{lines:?}");
            for (outer, inner) in lines.iter().zip(&lines[1..]) {
                assert!(
                    !outer.contains(inner.as_str()),
                    "`{outer}` repeats its cause `{inner}`"
                );
            }
        }
    }
}
