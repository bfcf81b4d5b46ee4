//! Labels that arrive on a topic: read from its start until it goes quiet, into one table.

use std::{sync::Arc, time::Duration};

use arrow::record_batch::RecordBatch;
use rdkafka::{
    ClientConfig, Message as _,
    consumer::{Consumer as _, StreamConsumer},
};

use super::{LabelTopic, stream::kafka};
use crate::JobError;

/// Every record of `source`'s topic (JSON objects: the join columns and the target), from the
/// first offset until none arrives for `idle_ms`, as one table; with a group of its own that
/// commits nothing, so reading moves no one's offsets.
pub(crate) fn read(source: &LabelTopic) -> Result<RecordBatch, JobError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| JobError::Data(format!("cannot start the Kafka reader: {error}")))?;
    let rows: Vec<serde_json::Value> = runtime.block_on(async {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &source.brokers)
            .set(
                "group.id",
                format!(
                    "velo-labels-{}-{}",
                    std::process::id(),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |elapsed| elapsed.as_millis())
                ),
            )
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .map_err(kafka("create the label consumer"))?;
        consumer
            .fetch_metadata(
                Some(&source.topic),
                Duration::from_millis(source.connect_timeout_ms.max(1)),
            )
            .map_err(kafka(&format!(
                "reach the brokers {} within connect_timeout_ms ({} ms)",
                source.brokers, source.connect_timeout_ms
            )))?;
        consumer
            .subscribe(&[&source.topic])
            .map_err(kafka("subscribe to the label topic"))?;
        let mut rows = Vec::new();
        let idle = Duration::from_millis(source.idle_ms.max(1));
        while let Ok(message) = tokio::time::timeout(idle, consumer.recv()).await {
            let message = message.map_err(kafka("read the label topic"))?;
            let payload = message.payload().unwrap_or_default();
            let value: serde_json::Value = serde_json::from_slice(payload).map_err(|error| {
                JobError::Data(format!(
                    "label record {}/{}/{} is not JSON: {error}",
                    message.topic(),
                    message.partition(),
                    message.offset()
                ))
            })?;
            if !value.is_object() {
                return Err(JobError::Data(format!(
                    "label record {}/{}/{} is not a JSON object",
                    message.topic(),
                    message.partition(),
                    message.offset()
                )));
            }
            rows.push(value);
        }
        Ok::<_, JobError>(rows)
    })?;
    if rows.is_empty() {
        return Err(JobError::Data(format!(
            "the label topic {} held no record within {} ms",
            source.topic, source.idle_ms
        )));
    }
    let schema = arrow::json::reader::infer_json_schema_from_iterator(rows.iter().map(Ok))
        .map_err(|source_error| JobError::Table {
            action: format!("infer the columns of the label topic {}", source.topic),
            source: source_error,
        })?;
    let mut decoder = arrow::json::ReaderBuilder::new(Arc::new(schema))
        .build_decoder()
        .map_err(|error| JobError::Table {
            action: "read the label records".to_owned(),
            source: error,
        })?;
    decoder.serialize(&rows).map_err(|error| JobError::Table {
        action: "read the label records".to_owned(),
        source: error,
    })?;
    decoder
        .flush()
        .map_err(|error| JobError::Table {
            action: "read the label records".to_owned(),
            source: error,
        })?
        .ok_or_else(|| JobError::Data(format!("the label topic {} held no row", source.topic)))
}
