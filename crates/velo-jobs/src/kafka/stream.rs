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

use prometheus_client::metrics::{counter::Counter, gauge::Gauge, histogram::Histogram};
use velo_io::services::tracking::ActiveRun;

use super::KafkaInferenceJob;
use crate::{
    JobContext, JobError, JobOutcome,
    common::{AliasOrVersion, run_tracked},
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
    run_tracked(context, &job.run_config, job, |run| {
        let metrics = Arc::new(StreamMetrics::new());
        metrics.set_version(&scorer.current().version.version);
        let counts = runtime.block_on(async {
            let server = match &job.metrics_addr {
                Some(address) => Some(serve_metrics(address, Arc::clone(&metrics)).await?),
                None => None,
            };
            let counts = job.stream(&scorer, &context.stop, &metrics, run).await;
            if let Some(server) = server {
                server.abort();
            }
            counts
        })?;
        run.log_metrics(
            &[
                ("records_in", counts.consumed as f64),
                ("records_out", counts.predicted as f64),
                ("dead_letters", counts.dead as f64),
            ],
            counts.batches as i64,
        )?;
        let mut outcome = JobOutcome::new(job.run_config.name.clone());
        outcome.run_id = Some(run.id().to_owned());
        outcome.lines.push(format!(
            "consumed {} records: {} predictions to `{}`, {} dead letters to `{}`",
            counts.consumed, counts.predicted, job.output_topic, counts.dead, job.dead_letter_topic
        ));
        for (name, value) in [
            ("records_in", counts.consumed),
            ("records_out", counts.predicted),
            ("dead_letters", counts.dead),
        ] {
            outcome.metrics.insert(name.to_owned(), value as f64);
        }
        outcome.model_version = Some(scorer.current().version.clone());
        Ok(outcome)
    })
}

/// Serves `/metrics` on `address` until the returned task is aborted.
async fn serve_metrics(
    address: &str,
    metrics: Arc<StreamMetrics>,
) -> Result<tokio::task::JoinHandle<()>, JobError> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|error| {
            JobError::Invalid(format!("cannot serve metrics on {address}: {error}"))
        })?;
    if let Ok(bound) = listener.local_addr() {
        tracing::info!(address = %bound, "serving Prometheus metrics at /metrics");
    }
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = Arc::clone(&metrics);
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics.encode(),
                )
            }
        }),
    );
    Ok(tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::warn!(%error, "the metrics server stopped");
        }
    }))
}

/// The Prometheus metrics of a stream.
#[derive(Debug)]
struct StreamMetrics {
    registry: prometheus_client::registry::Registry,
    records_in: Counter,
    records_out: Counter,
    dead_letters: Counter,
    batch_seconds: Histogram,
    lag: Gauge,
    version: Gauge,
}

impl StreamMetrics {
    fn new() -> Self {
        let mut registry = prometheus_client::registry::Registry::with_prefix("velo_kafka");
        let records_in = Counter::default();
        registry.register("records_in", "Input records consumed", records_in.clone());
        let records_out = Counter::default();
        registry.register("records_out", "Predictions produced", records_out.clone());
        let dead_letters = Counter::default();
        registry.register(
            "dead_letters",
            "Records sent to the dead-letter topic",
            dead_letters.clone(),
        );
        // 1 ms to about 16 s, doubling.
        let batch_seconds = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 15),
        );
        registry.register(
            "batch_duration_seconds",
            "From a batch's first record to its commit",
            batch_seconds.clone(),
        );
        let lag = Gauge::default();
        registry.register(
            "consumer_lag",
            "Records behind the end of the assigned partitions",
            lag.clone(),
        );
        let version = Gauge::default();
        registry.register(
            "model_version",
            "The registered version scoring the stream",
            version.clone(),
        );
        Self {
            registry,
            records_in,
            records_out,
            dead_letters,
            batch_seconds,
            lag,
            version,
        }
    }

    fn set_version(&self, version: &str) {
        self.version.set(version.parse::<i64>().unwrap_or(-1));
    }

    fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!(%error, "cannot encode the metrics");
        }
        text
    }
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

    async fn stream(
        &self,
        scorer: &Arc<Scorer>,
        stop: &AtomicBool,
        metrics: &StreamMetrics,
        run: &ActiveRun,
    ) -> Result<Counts, JobError> {
        let kafka =
            |error: rdkafka::error::KafkaError| JobError::Invalid(format!("Kafka: {error}"));
        let mut consumer_config = self.client(&BTreeMap::new());
        consumer_config
            .set("group.id", &self.group_id)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            // A fetch waits at most as long as a batch does (librdkafka's default is 500 ms,
            // which would be the latency floor of a stream that keeps up).
            .set(
                "fetch.wait.max.ms",
                self.max_wait_ms.clamp(1, 500).to_string(),
            );
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
        let mut last_log = Instant::now();
        let mut last_lag = Instant::now();
        let mut logged = Counts::default();
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
                        metrics.set_version(&version.version);
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
            let started = Instant::now();
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
            counts.batches += 1;
            metrics.records_in.inc_by(batch.len() as u64);
            metrics.records_out.inc_by(outputs.len() as u64);
            metrics.dead_letters.inc_by(dead.len() as u64);
            metrics
                .batch_seconds
                .observe(started.elapsed().as_secs_f64());
            if last_lag.elapsed() >= Duration::from_secs(5) {
                last_lag = Instant::now();
                if let Some(lag) = tokio::task::block_in_place(|| consumer_lag(&consumer)) {
                    metrics.lag.set(lag);
                }
            }
            if self.log_every_s > 0 && last_log.elapsed() >= Duration::from_secs(self.log_every_s) {
                let seconds = last_log.elapsed().as_secs_f64();
                last_log = Instant::now();
                let rate = (counts.consumed - logged.consumed) as f64 / seconds;
                logged = counts;
                if let Err(error) = run.log_metrics(
                    &[
                        ("records_in", counts.consumed as f64),
                        ("records_out", counts.predicted as f64),
                        ("dead_letters", counts.dead as f64),
                        ("records_per_second", rate),
                    ],
                    counts.batches as i64,
                ) {
                    tracing::warn!(%error, "cannot log the stream's metrics");
                }
            }
        }
        Ok(counts)
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    consumed: u64,
    predicted: u64,
    dead: u64,
    batches: u64,
}

/// Records between the consumer's positions and the ends of its assigned partitions.
fn consumer_lag(consumer: &StreamConsumer) -> Option<i64> {
    let positions = consumer.position().ok()?;
    let mut lag = 0;
    for element in positions.elements() {
        let (_, high) = consumer
            .fetch_watermarks(element.topic(), element.partition(), Duration::from_secs(1))
            .ok()?;
        if let Offset::Offset(position) = element.offset() {
            lag += (high - position).max(0);
        } else {
            lag += high.max(0);
        }
    }
    Some(lag)
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
