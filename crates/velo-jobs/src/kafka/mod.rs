//! The Kafka inference job: consume JSON records, predict them in micro-batches, produce one
//! output per input, and send what cannot be scored to a dead-letter topic.
//!
//! Delivery is at least once: a batch's offsets are committed only after every output and
//! dead letter of the batch, and of every batch read before it, was acknowledged by the broker
//! (`acks=all`). Batches overlap: while the broker acknowledges one, the next is read and
//! scored (at most four are sent and not yet committed). A crash or a broker restart replays
//! the batches not yet committed: their outputs appear again, with the same key and the same
//! `source` (input topic, partition, offset), which is how a consumer recognises a duplicate.
//! Nothing is lost: an input offset is committed only once its output or its dead letter, and
//! those of every earlier record of its partition, are stored.
//!
//! Records are JSON objects holding the model's input columns (the schema's index column is
//! optional and, when present, copied to the output as `index`). Each output record keeps the
//! input's key; its value is `{"prediction", "index", "model", "version", "source"}`. A record
//! that is not a JSON object, or breaks the model's inputs schema, goes to the dead-letter
//! topic with its original key and bytes and the reason in the `velo.error` header; it never
//! stops the stream.
//!
//! The configuration is always available; running it needs the `kafka` feature (rdkafka,
//! librdkafka built from source; ADR 0007), on in the CLI.

#[cfg(feature = "kafka")]
mod batch;
#[cfg(feature = "kafka")]
pub(crate) mod labels;
#[cfg(feature = "kafka")]
mod metrics;
#[cfg(feature = "kafka")]
mod outputs;
#[cfg(feature = "kafka")]
mod pipeline;
#[cfg(feature = "kafka")]
mod stream;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use velo_io::services::RunConfig;

use crate::{
    JobContext, JobError, JobOutcome,
    common::{AliasOrVersion, Services},
};

/// Score a Kafka topic with a registered model, record by record, at least once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaInferenceJob {
    /// The tracking run (its metrics are logged every `log_every_s` while it streams).
    #[serde(default = "KafkaInferenceJob::default_run_config")]
    pub run_config: RunConfig,
    /// Bootstrap servers, `host:port[,host:port…]`.
    pub brokers: String,
    /// The consumer group; its committed offsets are where a restarted job resumes.
    #[serde(default = "KafkaInferenceJob::default_group")]
    pub group_id: String,
    /// The topic of input records (JSON objects of the input columns).
    pub input_topic: String,
    /// The topic predictions are produced to.
    pub output_topic: String,
    /// The topic records that cannot be scored go to.
    pub dead_letter_topic: String,
    /// The most records predicted together (at least 1).
    #[serde(default = "KafkaInferenceJob::default_max_batch")]
    pub max_batch: std::num::NonZeroUsize,
    /// How long a batch waits for more records after its first, in milliseconds.
    #[serde(default = "KafkaInferenceJob::default_max_wait_ms")]
    pub max_wait_ms: u64,
    /// The model version to load; an alias is followed when it moves.
    #[serde(default)]
    pub alias_or_version: AliasOrVersion,
    /// Seconds between checks that the alias still names the served version.
    #[serde(default = "KafkaInferenceJob::default_poll_interval_s")]
    pub poll_interval_s: u64,
    /// Stop after this many input records (none: run until stopped).
    #[serde(default)]
    pub max_records: Option<u64>,
    /// How long the brokers may take to answer at start, in milliseconds; a job that cannot
    /// reach them by then fails (exit 1) instead of waiting for records forever.
    #[serde(default = "KafkaInferenceJob::default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Stop when no record arrived for this many milliseconds (none: wait forever).
    #[serde(default)]
    pub idle_timeout_ms: Option<u64>,
    /// Serve Prometheus metrics at `http://ADDRESS/metrics` (`host:port`; none by default):
    /// records in, out and dead-lettered, batch latency, consumer lag, model version.
    #[serde(default)]
    pub metrics_addr: Option<String>,
    /// Log every scored record (its inputs, prediction, model, version, and its source
    /// `topic/partition/offset` as `request_id`) to rolling Parquet files under this directory
    /// (see `velo serve --log-predictions`); the stream never waits on the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction_log: Option<std::path::PathBuf>,
    /// Also produce each log row (inputs, prediction, model, version, `request_id`) as a JSON
    /// record to this topic, keyed by its `request_id`, acknowledged before the offsets of its
    /// batch are committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction_log_topic: Option<String>,
    /// Seconds between writes of the prediction log's files.
    #[serde(default = "KafkaInferenceJob::default_log_flush_s")]
    pub prediction_log_flush_s: u64,
    /// Seconds between the counts logged to the tracking run.
    #[serde(default = "KafkaInferenceJob::default_log_every_s")]
    pub log_every_s: u64,
    /// Extra librdkafka settings for the consumer (`session.timeout.ms`, security, …).
    #[serde(default)]
    pub consumer: BTreeMap<String, String>,
    /// Extra librdkafka settings for the producer.
    #[serde(default)]
    pub producer: BTreeMap<String, String>,
    /// Services.
    #[serde(default)]
    pub services: Services,
}

impl crate::Job for KafkaInferenceJob {
    const KIND: &'static str = "KafkaInferenceJob";

    fn services(&self) -> &Services {
        &self.services
    }

    fn registered_model(&self) -> Option<AliasOrVersion> {
        Some(self.alias_or_version.clone())
    }

    fn plan(&self) -> Vec<String> {
        vec![
            format!(
                "load `{}` {}",
                self.services.mlflow.registry_name, self.alias_or_version
            ),
            format!(
                "consume `{}` from {} as group `{}` in batches of up to {} records or {} ms",
                self.input_topic, self.brokers, self.group_id, self.max_batch, self.max_wait_ms
            ),
            format!(
                "produce predictions to `{}`, dead letters to `{}`, commit after acknowledgement",
                self.output_topic, self.dead_letter_topic
            ),
        ]
    }

    /// Runs until stopped (`context.stop`, `max_records`, `idle_timeout_ms`).
    ///
    /// # Errors
    /// The model does not load, the broker refuses a client, a delivery fails (nothing of the
    /// batch is committed then), or velo was built without the `kafka` feature.
    fn run(&self, context: &JobContext) -> Result<JobOutcome, JobError> {
        #[cfg(feature = "kafka")]
        return stream::run(self, context);
        #[cfg(not(feature = "kafka"))]
        {
            let _ = context;
            Err(JobError::Unsupported(
                "this build of velo has no Kafka support (velo-jobs' `kafka` feature)".to_owned(),
            ))
        }
    }
}

/// The settings of a running stream that a reloaded configuration may change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tunables {
    pub(crate) max_batch: std::num::NonZeroUsize,
    pub(crate) max_wait_ms: u64,
    pub(crate) poll_interval_s: u64,
    pub(crate) idle_timeout_ms: Option<u64>,
    pub(crate) log_every_s: u64,
}

impl KafkaInferenceJob {
    /// What may change while the stream runs.
    pub(crate) fn tunables(&self) -> Tunables {
        Tunables {
            max_batch: self.max_batch,
            max_wait_ms: self.max_wait_ms,
            poll_interval_s: self.poll_interval_s,
            idle_timeout_ms: self.idle_timeout_ms,
            log_every_s: self.log_every_s,
        }
    }

    /// Checks a reloaded configuration against the running one: its new tunables, and what
    /// changed, in words; or, when something else changed, the keys that need a restart.
    pub(crate) fn reloaded(&self, new: &Self) -> Result<(Tunables, Vec<String>), Vec<String>> {
        let mut fixed = Vec::new();
        let mut check = |key: &str, same: bool| {
            if !same {
                fixed.push(key.to_owned());
            }
        };
        check("brokers", self.brokers == new.brokers);
        check("group_id", self.group_id == new.group_id);
        check("input_topic", self.input_topic == new.input_topic);
        check("output_topic", self.output_topic == new.output_topic);
        check("dead_letter_topic", self.dead_letter_topic == new.dead_letter_topic);
        check("alias_or_version", self.alias_or_version == new.alias_or_version);
        check("max_records", self.max_records == new.max_records);
        check("connect_timeout_ms", self.connect_timeout_ms == new.connect_timeout_ms);
        check("metrics_addr", self.metrics_addr == new.metrics_addr);
        check("prediction_log", self.prediction_log == new.prediction_log);
        check("prediction_log_topic", self.prediction_log_topic == new.prediction_log_topic);
        check("prediction_log_flush_s", self.prediction_log_flush_s == new.prediction_log_flush_s);
        check("consumer", self.consumer == new.consumer);
        check("producer", self.producer == new.producer);
        check("services", self.services == new.services);
        check("run_config", self.run_config == new.run_config);
        if !fixed.is_empty() {
            return Err(fixed);
        }
        let (old, tunables) = (self.tunables(), new.tunables());
        let mut changes = Vec::new();
        let mut note = |key: &str, before: String, after: String| {
            if before != after {
                changes.push(format!("{key} {before} -> {after}"));
            }
        };
        note("max_batch", old.max_batch.to_string(), tunables.max_batch.to_string());
        note("max_wait_ms", old.max_wait_ms.to_string(), tunables.max_wait_ms.to_string());
        note(
            "poll_interval_s",
            old.poll_interval_s.to_string(),
            tunables.poll_interval_s.to_string(),
        );
        note(
            "idle_timeout_ms",
            format!("{:?}", old.idle_timeout_ms),
            format!("{:?}", tunables.idle_timeout_ms),
        );
        note("log_every_s", old.log_every_s.to_string(), tunables.log_every_s.to_string());
        Ok((tunables, changes))
    }
}

impl KafkaInferenceJob {
    fn default_run_config() -> RunConfig {
        RunConfig::named("KafkaInference")
    }

    fn default_log_every_s() -> u64 {
        10
    }

    fn default_log_flush_s() -> u64 {
        10
    }

    fn default_group() -> String {
        "velo-inference".to_owned()
    }

    fn default_max_batch() -> std::num::NonZeroUsize {
        std::num::NonZeroUsize::new(500).unwrap_or(std::num::NonZeroUsize::MIN)
    }

    fn default_connect_timeout_ms() -> u64 {
        10_000
    }

    fn default_max_wait_ms() -> u64 {
        50
    }

    fn default_poll_interval_s() -> u64 {
        10
    }
}

/// A Kafka topic labels arrive on (`MonitoringJob`'s `label_topic`): JSON objects holding the
/// join columns and the target, read from the start until the topic goes quiet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelTopic {
    /// Bootstrap servers, `host:port[,host:port…]`.
    pub brokers: String,
    /// The topic.
    pub topic: String,
    /// Stop reading when no record arrived for this many milliseconds.
    #[serde(default = "LabelTopic::default_idle_ms")]
    pub idle_ms: u64,
    /// How long the brokers may take to answer at start, in milliseconds.
    #[serde(default = "LabelTopic::default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
}

impl LabelTopic {
    fn default_idle_ms() -> u64 {
        3_000
    }

    fn default_connect_timeout_ms() -> u64 {
        10_000
    }

    /// Reads every label record as one table.
    ///
    /// # Errors
    /// Unreachable brokers, a record that is not a JSON object, an empty topic, or velo built
    /// without its `kafka` feature.
    pub fn read(&self) -> Result<arrow::record_batch::RecordBatch, JobError> {
        #[cfg(feature = "kafka")]
        {
            labels::read(self)
        }
        #[cfg(not(feature = "kafka"))]
        {
            Err(JobError::Config(format!(
                "labels from the topic {} need velo built with its `kafka` feature",
                self.topic
            )))
        }
    }
}
