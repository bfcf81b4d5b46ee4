//! The streaming loop of [`KafkaInferenceJob`] (feature `kafka`).

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use rdkafka::{
    ClientConfig, Offset,
    consumer::{Consumer as _, StreamConsumer},
    message::{Header, OwnedHeaders},
    producer::{BaseRecord, ThreadedProducer},
};
use velo_io::services::tracking::ActiveRun;

use super::{
    KafkaInferenceJob,
    batch::{Batch, Counts},
    metrics::{StreamMetrics, serve_metrics},
    outputs::Outputs,
    pipeline::{Acks, Group, IN_FLIGHT_BATCHES, InFlight, Pipeline, Sent},
};
use crate::{JobContext, JobError, JobOutcome, common::run_tracked, scoring::Scorer};

/// Records parsed or written by one task of a batch's parallel steps.
pub(super) const PARALLEL_RECORDS: usize = 512;

pub(super) fn run(job: &KafkaInferenceJob, context: &JobContext) -> Result<JobOutcome, JobError> {
    let uri = job
        .alias_or_version
        .uri(context.mlflow.registry_name.clone());
    let scorer = Arc::new(Scorer::load(Arc::clone(&context.registry), uri)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| JobError::Runtime {
            action: "start the async runtime".to_owned(),
            source: Box::new(error),
        })?;
    run_tracked(context, &job.run_config, job, |run| {
        let metrics = Arc::new(StreamMetrics::new());
        metrics.set_version(&scorer.current().version.version);
        let stream = runtime.block_on(async {
            let server = match &job.metrics_addr {
                Some(address) => Some(serve_metrics(address, Arc::clone(&metrics)).await?),
                None => None,
            };
            let stream = job
                .stream(&scorer, &context.stop, &context.reload, &metrics, run)
                .await;
            if let Some(server) = server {
                server.abort();
            }
            stream
        })?;
        let counts = stream.counts;
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
            ("refused_commits", stream.refused_commits),
        ] {
            outcome.metrics.insert(name.to_owned(), value as f64);
        }
        for (name, value) in [
            // From the first record read to the last commit.
            ("records_per_second", stream.records_per_second()),
            // After the first commit.
            (
                "sustained_records_per_second",
                stream.sustained_records_per_second(),
            ),
            ("first_commit_seconds", stream.first_commit_seconds()),
        ] {
            if let Some(value) = value {
                outcome.metrics.insert(name.to_owned(), value);
            }
        }
        outcome.model_version = Some(scorer.current().version.clone());
        Ok(outcome)
    })
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

    /// Streams until stopped. Batches overlap: while the broker acknowledges a batch's
    /// outputs, the next one is read and scored; offsets are committed batch by batch, in
    /// order, once every output of the batch and of the batches before it is acknowledged.
    async fn stream(
        &self,
        scorer: &Arc<Scorer>,
        stop: &AtomicBool,
        reload: &std::sync::Mutex<Option<crate::JobConfig>>,
        metrics: &Arc<StreamMetrics>,
        run: &ActiveRun,
    ) -> Result<Stream, JobError> {
        // The producer first: its setup (metadata, the idempotent producer's id) overlaps the
        // consumer's joining the group.
        let mut producer_config = self.client(&BTreeMap::new());
        producer_config
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "5");
        for (key, value) in &self.producer {
            producer_config.set(key, value);
        }
        let producer: Arc<ThreadedProducer<Acks>> = Arc::new(
            producer_config
                .create_with_context(Acks::default())
                .map_err(kafka("create the producer"))?,
        );

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
        let group = Group {
            producer: Arc::clone(&producer),
            sent: std::sync::Mutex::default(),
            flush: Duration::from_secs(10),
            metrics: Arc::clone(metrics),
        };
        let consumer: Arc<StreamConsumer<Group>> = Arc::new(
            consumer_config
                .create_with_context(group)
                .map_err(kafka("create the consumer"))?,
        );
        consumer
            .subscribe(&[&self.input_topic])
            .map_err(kafka("subscribe to the input topic"))?;
        // Reach the brokers first: librdkafka retries unreachable brokers forever, so a wrong
        // address would otherwise look like a quiet topic.
        let timeout = Duration::from_millis(self.connect_timeout_ms.max(1));
        tokio::task::block_in_place(|| consumer.fetch_metadata(Some(&self.input_topic), timeout))
            .map_err(kafka(&format!(
                "reach the brokers {} within connect_timeout_ms ({} ms)",
                self.brokers, self.connect_timeout_ms
            )))?;
        let mut stream = Stream::default();
        let mut pipeline = Pipeline::default();
        let mut last_log = Instant::now();
        let mut last_lag = Instant::now();
        let mut logged = Counts::default();
        let mut last_refresh = Instant::now();
        let mut last_record = Instant::now();
        let log = match &self.prediction_log {
            Some(dir) => {
                let mut config = velo_io::prediction_logs::PredictionLogConfig::new(dir);
                config.flush_interval = Duration::from_secs(self.prediction_log_flush_s.max(1));
                let log = velo_io::prediction_logs::PredictionLog::start(config).map_err(
                    |source| JobError::Runtime {
                        action: format!("start the prediction log in {}", dir.display()),
                        source: source.into(),
                    },
                )?;
                Some(log)
            }
            None => None,
        };
        let mut outputs = Outputs {
            log: log.is_some() || self.prediction_log_topic.is_some(),
            ..Outputs::default()
        };
        let tick = Duration::from_millis(100);
        // What runs: the configuration a reload may replace (its tunables only).
        let mut current = self.clone();
        loop {
            let pending = reload.lock().ok().and_then(|mut slot| slot.take());
            if let Some(config) = pending {
                match config {
                    crate::JobConfig::KafkaInferenceJob(new) => match current.reloaded(&new) {
                        Ok((_, changes)) if changes.is_empty() => {
                            tracing::info!("configuration reloaded: nothing this stream uses changed");
                        }
                        Ok((_, changes)) => {
                            tracing::info!(changes = %changes.join(", "), "configuration reloaded");
                            current = new;
                        }
                        Err(keys) => tracing::warn!(
                            keys = %keys.join(", "),
                            "configuration refused: changing these needs a restart; the running configuration stays"
                        ),
                    },
                    other => tracing::warn!(
                        kind = other.kind(),
                        "configuration refused: it is not a KafkaInferenceJob; the running configuration stays"
                    ),
                }
            }
            if stop.load(Ordering::SeqCst)
                || self.max_records.is_some_and(|max| stream.received >= max)
            {
                break;
            }
            if current.poll_interval_s > 0
                && last_refresh.elapsed() >= Duration::from_secs(current.poll_interval_s)
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
            // The first record of a batch, waited for in ticks so that a stop is seen; an
            // idle stream commits what it has in flight.
            let first = match tokio::time::timeout(tick, consumer.recv()).await {
                Ok(Ok(message)) => message,
                Ok(Err(error)) => {
                    tracing::warn!(%error, "consumer error");
                    continue;
                }
                Err(_) => {
                    pipeline.drain(&consumer, metrics, &mut stream).await?;
                    if current
                        .idle_timeout_ms
                        .is_some_and(|ms| last_record.elapsed() >= Duration::from_millis(ms))
                    {
                        break;
                    }
                    continue;
                }
            };
            let started = Instant::now();
            stream.first.get_or_insert(started);
            let max_batch = current.max_batch.get();
            let limit = self.max_records.map_or(max_batch, |max| {
                max_batch.min(usize::try_from(max - stream.received).unwrap_or(usize::MAX))
            });
            let mut batch = Batch::with_capacity(limit);
            batch.push(&first);
            drop(first);
            let deadline = tokio::time::Instant::now() + Duration::from_millis(current.max_wait_ms);
            while batch.len() < limit {
                match tokio::time::timeout_at(deadline, consumer.recv()).await {
                    Ok(Ok(message)) => batch.push(&message),
                    Ok(Err(error)) => tracing::warn!(%error, "consumer error"),
                    Err(_) => break,
                }
            }
            last_record = Instant::now();
            stream.received += batch.len() as u64;
            let model = scorer.current();
            let dead = outputs.score(&model, &batch);
            let log_records = match &self.prediction_log_topic {
                Some(_) => log_records(&outputs.scored)?,
                None => Vec::new(),
            };
            match &log {
                Some(log) => {
                    for scored in outputs.scored.drain(..) {
                        log.log(scored);
                    }
                }
                None => outputs.scored.clear(),
            }

            let in_flight = Arc::new(InFlight::new(
                outputs.len() + dead.len() + log_records.len(),
            ));
            for (index, value) in outputs.iter() {
                let mut output =
                    BaseRecord::with_opaque_to(&self.output_topic, Arc::clone(&in_flight))
                        .payload(value);
                if let Some(key) = batch.key(index) {
                    output = output.key(key);
                }
                send(&producer, output).await?;
            }
            for (index, reason) in &dead {
                let source = batch.source(*index).to_string();
                let headers = OwnedHeaders::new()
                    .insert(Header {
                        key: "velo.error",
                        value: Some(reason.as_str()),
                    })
                    .insert(Header {
                        key: "velo.source",
                        value: Some(source.as_str()),
                    });
                let mut letter =
                    BaseRecord::with_opaque_to(&self.dead_letter_topic, Arc::clone(&in_flight))
                        .payload(batch.payload(*index))
                        .headers(headers);
                if let Some(key) = batch.key(*index) {
                    letter = letter.key(key);
                }
                send(&producer, letter).await?;
            }
            if let Some(topic) = &self.prediction_log_topic {
                for (key, value) in &log_records {
                    let record = BaseRecord::with_opaque_to(topic, Arc::clone(&in_flight))
                        .payload(value.as_slice())
                        .key(key.as_str());
                    send(&producer, record).await?;
                }
            }
            let offsets = batch.next_offsets();
            consumer.context().sent(&offsets);
            pipeline.push(Sent {
                in_flight,
                offsets,
                counts: Counts {
                    consumed: batch.len() as u64,
                    predicted: outputs.len() as u64,
                    dead: dead.len() as u64,
                    batches: 1,
                },
                started,
            });
            pipeline
                .settle(&consumer, metrics, &mut stream, IN_FLIGHT_BATCHES - 1)
                .await?;
            if last_lag.elapsed() >= Duration::from_secs(5) {
                last_lag = Instant::now();
                if let Some(lag) = tokio::task::block_in_place(|| consumer_lag(&consumer)) {
                    metrics.lag.set(lag);
                }
            }
            if current.log_every_s > 0 && last_log.elapsed() >= Duration::from_secs(current.log_every_s) {
                let seconds = last_log.elapsed().as_secs_f64();
                last_log = Instant::now();
                let counts = stream.counts;
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
        // Every commit is acknowledged once the job returns (or counted as refused).
        pipeline.drain(&consumer, metrics, &mut stream).await?;
        stream.refused_commits = pipeline.refused;
        stream.last = Some(Instant::now());
        Ok(stream)
    }
}

/// Turns a client error into a [`JobError::Kafka`] saying what was being done.
pub(super) fn kafka(action: &str) -> impl FnOnce(rdkafka::error::KafkaError) -> JobError {
    move |error| JobError::Kafka {
        action: action.to_owned(),
        source: Box::new(error),
    }
}

/// `batch` with its timestamps' zone `UTC` written `+00:00`: the same instants, in the form
/// Arrow's JSON writer reads without a time-zone database.
fn utc_as_offset(
    batch: arrow::record_batch::RecordBatch,
) -> Result<arrow::record_batch::RecordBatch, JobError> {
    use arrow::{
        array::{Array as _, AsArray as _},
        datatypes::{DataType, Field, Schema, TimeUnit, TimestampMicrosecondType},
    };
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        match field.data_type() {
            DataType::Timestamp(TimeUnit::Microsecond, Some(zone)) if zone.as_ref() == "UTC" => {
                let values = column
                    .as_primitive::<TimestampMicrosecondType>()
                    .clone()
                    .with_timezone("+00:00");
                fields.push(Field::new(
                    field.name(),
                    values.data_type().clone(),
                    field.is_nullable(),
                ));
                columns.push(Arc::new(values) as arrow::array::ArrayRef);
            }
            _ => {
                fields.push(field.as_ref().clone());
                columns.push(Arc::clone(column));
            }
        }
    }
    arrow::record_batch::RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|source| {
        JobError::Table {
            action: "write the prediction log records".to_owned(),
            source,
        }
    })
}

/// The log rows of scored batches as JSON records keyed by their `request_id`.
fn log_records(
    scored: &[velo_io::prediction_logs::Scored],
) -> Result<Vec<(String, Vec<u8>)>, JobError> {
    let mut records = Vec::new();
    for scored in scored {
        let batch = utc_as_offset(scored.to_batch().map_err(JobError::Data)?)?;
        let mut writer = arrow::json::ArrayWriter::new(Vec::new());
        writer.write(&batch).map_err(|source| JobError::Table {
            action: "write the prediction log records".to_owned(),
            source,
        })?;
        writer.finish().map_err(|source| JobError::Table {
            action: "write the prediction log records".to_owned(),
            source,
        })?;
        let rows: Vec<serde_json::Map<String, serde_json::Value>> =
            serde_json::from_slice(&writer.into_inner())
                .map_err(|error| JobError::Data(format!("a log row is not JSON: {error}")))?;
        for row in rows {
            let key = row
                .get("request_id")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let value = serde_json::to_vec(&row)
                .map_err(|error| JobError::Data(format!("cannot write a log row: {error}")))?;
            records.push((key, value));
        }
    }
    Ok(records)
}

/// Queues one record, waiting while the producer's queue is full.
async fn send<K, P>(
    producer: &ThreadedProducer<Acks>,
    mut record: BaseRecord<'_, K, P, Arc<InFlight>>,
) -> Result<(), JobError>
where
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::QueueFull,
                ),
                back,
            )) => {
                record = back;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err((error, _)) => return Err(kafka("queue a record")(error)),
        }
    }
}

/// What a stream did.
#[derive(Debug, Default)]
pub(super) struct Stream {
    /// Committed work.
    pub(super) counts: Counts,
    /// Records read, committed or not.
    pub(super) received: u64,
    /// When the first record arrived, and when the last commit was made.
    pub(super) first: Option<Instant>,
    pub(super) last: Option<Instant>,
    /// When the first batch was committed, and the records read by then.
    pub(super) first_commit: Option<(Instant, u64)>,
    /// Commits the broker refused (their records may be scored again).
    pub(super) refused_commits: u64,
}

impl Stream {
    /// Records committed per second from the first record to the last commit.
    fn records_per_second(&self) -> Option<f64> {
        let seconds = (self.last? - self.first?).as_secs_f64();
        (seconds > 0.0).then(|| self.counts.consumed as f64 / seconds)
    }

    /// Records per second once the clients are set up (the first batch waits for the
    /// producer's id, connections and metadata): the records read after the first commit,
    /// over the time from that commit to the last. Batches already read at the first commit
    /// are left out, though their acknowledgements fall in that time.
    fn sustained_records_per_second(&self) -> Option<f64> {
        let (at, read) = self.first_commit?;
        let seconds = (self.last? - at).as_secs_f64();
        (seconds > 0.0).then(|| (self.received - read) as f64 / seconds)
    }

    /// Seconds from the first record read to the first commit.
    fn first_commit_seconds(&self) -> Option<f64> {
        Some((self.first_commit?.0 - self.first?).as_secs_f64())
    }
}

/// Records between the consumer's positions and the ends of its assigned partitions.
fn consumer_lag(consumer: &StreamConsumer<Group>) -> Option<i64> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_count_from_the_first_record_and_from_the_first_commit() {
        let first = Instant::now();
        let mut stream = Stream {
            received: 1_000,
            first: Some(first),
            ..Stream::default()
        };
        stream.counts.consumed = 1_000;
        assert_eq!(stream.records_per_second(), None, "no last commit yet");
        assert_eq!(stream.sustained_records_per_second(), None);
        // 200 records read when the first commit came 1 s in; the last commit 3 s in.
        stream.first_commit = Some((first + Duration::from_secs(1), 200));
        stream.last = Some(first + Duration::from_secs(3));
        assert_eq!(stream.records_per_second(), Some(1_000.0 / 3.0));
        assert_eq!(stream.sustained_records_per_second(), Some(800.0 / 2.0));
        assert_eq!(stream.first_commit_seconds(), Some(1.0));
        // A stream that committed once, at its end, has no sustained rate.
        stream.first_commit = Some((first + Duration::from_secs(3), 1_000));
        assert_eq!(stream.sustained_records_per_second(), None);
    }
}
