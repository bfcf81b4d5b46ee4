//! The streaming loop of [`KafkaInferenceJob`] (feature `kafka`).

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use rdkafka::{
    ClientConfig, Message as _, Offset, TopicPartitionList,
    consumer::{CommitMode, Consumer as _, StreamConsumer},
    message::{Header, OwnedHeaders, OwnedMessage},
    producer::{FutureProducer, FutureRecord},
};
use serde_json::{Map, Value};
use velo_io::registries::ModelUri;

use super::KafkaInferenceJob;
use crate::{
    JobContext, JobError, JobOutcome,
    common::AliasOrVersion,
    serving::{LoadedModel, Scorer, protocol},
};

pub(super) fn run(job: &KafkaInferenceJob, context: &JobContext) -> Result<JobOutcome, JobError> {
    if job.max_batch == 0 {
        return Err(JobError::Invalid("max_batch must be at least 1".to_owned()));
    }
    let name = context.mlflow.registry_name.clone();
    let uri = match &job.alias_or_version {
        AliasOrVersion::Alias(alias) => ModelUri::Alias {
            name,
            alias: alias.clone(),
        },
        AliasOrVersion::Version(version) => ModelUri::Version {
            name,
            version: *version,
        },
    };
    let scorer = Arc::new(Scorer::load(Arc::clone(&context.registry), uri)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| JobError::Invalid(format!("cannot start the async runtime: {error}")))?;
    let counts = runtime.block_on(job.stream(&scorer, &context.stop))?;
    let mut outcome = JobOutcome::new("KafkaInference".to_owned());
    outcome.lines.push(format!(
        "consumed {} records: {} predictions to `{}`, {} dead letters to `{}`",
        counts.consumed, counts.predicted, job.output_topic, counts.dead, job.dead_letter_topic
    ));
    outcome
        .metrics
        .insert("records_in".to_owned(), counts.consumed as f64);
    outcome
        .metrics
        .insert("records_out".to_owned(), counts.predicted as f64);
    outcome
        .metrics
        .insert("dead_letters".to_owned(), counts.dead as f64);
    outcome.model_version = Some(scorer.current().version.clone());
    Ok(outcome)
}

impl KafkaInferenceJob {
    fn client(&self, extra: &BTreeMap<String, String>) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in extra {
            config.set(key, value);
        }
        config
    }

    async fn stream(&self, scorer: &Arc<Scorer>, stop: &AtomicBool) -> Result<Counts, JobError> {
        let kafka =
            |error: rdkafka::error::KafkaError| JobError::Invalid(format!("Kafka: {error}"));
        let mut consumer_config = self.client(&BTreeMap::new());
        consumer_config
            .set("group.id", &self.group_id)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest");
        for (key, value) in &self.consumer {
            consumer_config.set(key, value);
        }
        let consumer: StreamConsumer = consumer_config.create().map_err(kafka)?;
        consumer.subscribe(&[&self.input_topic]).map_err(kafka)?;
        let mut producer_config = self.client(&BTreeMap::new());
        producer_config
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "5");
        for (key, value) in &self.producer {
            producer_config.set(key, value);
        }
        let producer: FutureProducer = producer_config.create().map_err(kafka)?;

        let mut counts = Counts::default();
        let mut last_refresh = Instant::now();
        let mut last_record = Instant::now();
        let tick = Duration::from_millis(100);
        loop {
            if stop.load(Ordering::SeqCst)
                || self.max_records.is_some_and(|max| counts.consumed >= max)
            {
                break;
            }
            if self.poll_interval_s > 0
                && last_refresh.elapsed() >= Duration::from_secs(self.poll_interval_s)
            {
                last_refresh = Instant::now();
                let refresher = Arc::clone(scorer);
                match tokio::task::spawn_blocking(move || refresher.refresh()).await {
                    Ok(Ok(Some(version))) => {
                        tracing::info!(version = %version.version, "scoring with a new model version");
                    }
                    Ok(Ok(None)) => {}
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "cannot refresh the model; the current one stays");
                    }
                    Err(error) => tracing::warn!(%error, "the model refresh task failed"),
                }
            }
            // The first record of a batch, waited for in ticks so that a stop is seen.
            let first = match tokio::time::timeout(tick, consumer.recv()).await {
                Ok(Ok(message)) => message.detach(),
                Ok(Err(error)) => {
                    tracing::warn!(%error, "consumer error");
                    continue;
                }
                Err(_) => {
                    if self
                        .idle_timeout_ms
                        .is_some_and(|ms| last_record.elapsed() >= Duration::from_millis(ms))
                    {
                        break;
                    }
                    continue;
                }
            };
            let mut batch = vec![first];
            let deadline = tokio::time::Instant::now() + Duration::from_millis(self.max_wait_ms);
            let room = |batch: &Vec<OwnedMessage>, counts: &Counts| {
                batch.len() < self.max_batch
                    && self
                        .max_records
                        .is_none_or(|max| counts.consumed + (batch.len() as u64) < max)
            };
            while room(&batch, &counts) {
                match tokio::time::timeout_at(deadline, consumer.recv()).await {
                    Ok(Ok(message)) => batch.push(message.detach()),
                    Ok(Err(error)) => tracing::warn!(%error, "consumer error"),
                    Err(_) => break,
                }
            }
            last_record = Instant::now();
            let model = scorer.current();
            let (outputs, dead) = score_batch(&model, &batch);
            // Produce everything, then wait for every acknowledgement before committing.
            let mut deliveries = Vec::with_capacity(batch.len());
            for (message, value) in &outputs {
                let mut record = FutureRecord::to(&self.output_topic).payload(value);
                if let Some(key) = message.key() {
                    record = record.key(key);
                }
                deliveries.push(
                    producer
                        .send_result(record)
                        .map_err(|(error, _)| kafka(error))?,
                );
            }
            for (message, reason) in &dead {
                let headers = OwnedHeaders::new()
                    .insert(Header {
                        key: "velo.error",
                        value: Some(reason.as_str()),
                    })
                    .insert(Header {
                        key: "velo.source",
                        value: Some(source(message).as_str()),
                    });
                let mut record = FutureRecord::to(&self.dead_letter_topic)
                    .payload(message.payload().unwrap_or_default())
                    .headers(headers);
                if let Some(key) = message.key() {
                    record = record.key(key);
                }
                deliveries.push(
                    producer
                        .send_result(record)
                        .map_err(|(error, _)| kafka(error))?,
                );
            }
            for delivery in deliveries {
                match delivery.await {
                    Ok(Ok(_)) => {}
                    Ok(Err((error, _))) => return Err(kafka(error)),
                    Err(_) => {
                        return Err(JobError::Invalid(
                            "the producer was dropped before a delivery was acknowledged"
                                .to_owned(),
                        ));
                    }
                }
            }
            let mut next: HashMap<(String, i32), i64> = HashMap::new();
            for message in &batch {
                let entry = next
                    .entry((message.topic().to_owned(), message.partition()))
                    .or_insert(0);
                *entry = (*entry).max(message.offset() + 1);
            }
            let mut offsets = TopicPartitionList::new();
            for ((topic, partition), offset) in next {
                offsets
                    .add_partition_offset(&topic, partition, Offset::Offset(offset))
                    .map_err(kafka)?;
            }
            consumer.commit(&offsets, CommitMode::Sync).map_err(kafka)?;
            counts.consumed += batch.len() as u64;
            counts.predicted += outputs.len() as u64;
            counts.dead += dead.len() as u64;
        }
        Ok(counts)
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    consumed: u64,
    predicted: u64,
    dead: u64,
}

fn source(message: &OwnedMessage) -> String {
    format!(
        "{}/{}/{}",
        message.topic(),
        message.partition(),
        message.offset()
    )
}

/// Messages with what to send for them: an output value, or a dead letter's reason.
type Routed<'m> = Vec<(&'m OwnedMessage, String)>;

/// Splits a batch into output values and dead letters (with their reasons).
fn score_batch<'m>(model: &LoadedModel, batch: &'m [OwnedMessage]) -> (Routed<'m>, Routed<'m>) {
    let mut dead = Vec::new();
    let mut parsed = Vec::new();
    for message in batch {
        match serde_json::from_slice::<Value>(message.payload().unwrap_or_default()) {
            Ok(Value::Object(record)) => parsed.push((message, record)),
            Ok(_) => dead.push((message, "the record is not a JSON object".to_owned())),
            Err(error) => dead.push((message, format!("the record is not valid JSON: {error}"))),
        }
    }
    let mut outputs = Vec::with_capacity(parsed.len());
    predict_bisecting(model, &parsed, &mut outputs, &mut dead);
    (outputs, dead)
}

/// Predicts `records`; when the schema refuses some, halves the group until each refused
/// record stands alone (a few extra validations per bad record, none when all are good).
fn predict_bisecting<'m>(
    model: &LoadedModel,
    records: &[(&'m OwnedMessage, Map<String, Value>)],
    outputs: &mut Routed<'m>,
    dead: &mut Routed<'m>,
) {
    if records.is_empty() {
        return;
    }
    let rows: Vec<Map<String, Value>> = records.iter().map(|(_, record)| record.clone()).collect();
    let result = protocol::records_to_batch(rows).and_then(|batch| model.predict(&batch));
    match result {
        Ok(predictions) => {
            let index = model.index_column();
            for ((message, record), prediction) in records.iter().zip(predictions) {
                let value = serde_json::json!({
                    "prediction": prediction,
                    "index": index.and_then(|name| record.get(name)).cloned().unwrap_or(Value::Null),
                    "model": model.version.name,
                    "version": model.version.version,
                    "source": source(message),
                });
                outputs.push((*message, value.to_string()));
            }
        }
        Err(error) if records.len() == 1 => dead.push((records[0].0, error.to_string())),
        Err(_) => {
            let (left, right) = records.split_at(records.len() / 2);
            predict_bisecting(model, left, outputs, dead);
            predict_bisecting(model, right, outputs, dead);
        }
    }
}
