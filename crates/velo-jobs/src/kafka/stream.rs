//! The streaming loop of [`KafkaInferenceJob`] (feature `kafka`).

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    ops::Range,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use arrow::record_batch::RecordBatch;
use rayon::prelude::*;
use rdkafka::{
    ClientConfig, Message as _, Offset, TopicPartitionList,
    consumer::{CommitMode, Consumer as _, StreamConsumer},
    message::{BorrowedMessage, Header, OwnedHeaders},
    producer::{BaseRecord, ThreadedProducer},
};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Notify;

use prometheus_client::metrics::{counter::Counter, gauge::Gauge, histogram::Histogram};
use velo_io::services::tracking::ActiveRun;

use super::KafkaInferenceJob;
use crate::{
    JobContext, JobError, JobOutcome,
    common::run_tracked,
    scoring::{
        LoadedModel, Scorer,
        metrics::{self as exposition, Exporter},
        protocol::{self, ScoringError},
        records,
    },
};

/// Records parsed or written by one task of a batch's parallel steps.
const PARALLEL_RECORDS: usize = 512;

pub(super) fn run(job: &KafkaInferenceJob, context: &JobContext) -> Result<JobOutcome, JobError> {
    if job.max_batch == 0 {
        return Err(JobError::Config("max_batch must be at least 1".to_owned()));
    }
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
            let stream = job.stream(&scorer, &context.stop, &metrics, run).await;
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

/// Serves `/metrics` on `address` until the returned task is aborted.
async fn serve_metrics(
    address: &str,
    metrics: Arc<StreamMetrics>,
) -> Result<tokio::task::JoinHandle<()>, JobError> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|error| JobError::Runtime {
            action: format!("serve metrics on {address}"),
            source: Box::new(error),
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
                    [(axum::http::header::CONTENT_TYPE, exposition::CONTENT_TYPE)],
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
    exporter: Exporter,
    records_in: Counter,
    records_out: Counter,
    dead_letters: Counter,
    batch_seconds: Histogram,
    lag: Gauge,
    version: Gauge,
}

impl StreamMetrics {
    fn new() -> Self {
        let mut exporter = Exporter::new("velo_kafka");
        let records_in = exporter.counter("records_in", "Input records consumed");
        let records_out = exporter.counter("records_out", "Predictions produced");
        let dead_letters =
            exporter.counter("dead_letters", "Records sent to the dead-letter topic");
        // 1 ms to about 16 s, doubling.
        let batch_seconds = exporter.histogram(
            "batch_duration_seconds",
            "From a batch's first record to its commit",
            (0.001, 2.0, 15),
        );
        let lag = exporter.gauge(
            "consumer_lag",
            "Records behind the end of the assigned partitions",
        );
        let version = exporter.gauge(
            "model_version",
            "The registered version scoring the stream",
        );
        Self {
            exporter,
            records_in,
            records_out,
            dead_letters,
            batch_seconds,
            lag,
            version,
        }
    }

    fn set_version(&self, version: &str) {
        exposition::set_version(&self.version, version);
    }

    fn encode(&self) -> String {
        self.exporter.encode()
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

    /// Streams until stopped. Batches overlap: while the broker acknowledges a batch's
    /// outputs, the next one is read and scored; offsets are committed batch by batch, in
    /// order, once every output of the batch and of the batches before it is acknowledged.
    async fn stream(
        &self,
        scorer: &Arc<Scorer>,
        stop: &AtomicBool,
        metrics: &StreamMetrics,
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
        let producer: ThreadedProducer<Acks> =
            producer_config
                .create_with_context(Acks)
                .map_err(kafka("create the producer"))?;

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
        let consumer: StreamConsumer = consumer_config
            .create()
            .map_err(kafka("create the consumer"))?;
        consumer
            .subscribe(&[&self.input_topic])
            .map_err(kafka("subscribe to the input topic"))?;
        let mut stream = Stream::default();
        let mut pipeline = Pipeline::default();
        let mut last_log = Instant::now();
        let mut last_lag = Instant::now();
        let mut logged = Counts::default();
        let mut last_refresh = Instant::now();
        let mut last_record = Instant::now();
        let mut outputs = Outputs::default();
        let tick = Duration::from_millis(100);
        loop {
            if stop.load(Ordering::SeqCst)
                || self.max_records.is_some_and(|max| stream.received >= max)
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
            stream.first.get_or_insert(started);
            let limit = self.max_records.map_or(self.max_batch, |max| {
                self.max_batch
                    .min(usize::try_from(max - stream.received).unwrap_or(usize::MAX))
            });
            let mut batch = Batch::with_capacity(limit);
            batch.push(&first);
            drop(first);
            let deadline = tokio::time::Instant::now() + Duration::from_millis(self.max_wait_ms);
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

            let in_flight = Arc::new(InFlight::new(outputs.len() + dead.len()));
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
            pipeline.push(Sent {
                in_flight,
                offsets: batch.next_offsets(),
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
            if self.log_every_s > 0 && last_log.elapsed() >= Duration::from_secs(self.log_every_s) {
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
        pipeline.drain(&consumer, metrics, &mut stream).await?;
        // The last commit is synchronous: once the job returns, its offsets are stored.
        if let Some(offsets) = pipeline.committed.take() {
            consumer
                .commit(&offsets, CommitMode::Sync)
                .map_err(kafka("commit offsets"))?;
        }
        stream.last = Some(Instant::now());
        Ok(stream)
    }
}

/// Turns a client error into a [`JobError::Kafka`] saying what was being done.
fn kafka(action: &str) -> impl FnOnce(rdkafka::error::KafkaError) -> JobError {
    move |error| JobError::Kafka {
        action: action.to_owned(),
        source: Box::new(error),
    }
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

/// Acknowledgements still awaited for one batch's outputs and dead letters.
#[derive(Debug)]
struct InFlight {
    pending: AtomicUsize,
    failure: Mutex<Option<String>>,
    done: Notify,
}

impl InFlight {
    fn new(records: usize) -> Self {
        Self {
            pending: AtomicUsize::new(records),
            failure: Mutex::new(None),
            done: Notify::new(),
        }
    }

    fn is_done(&self) -> bool {
        self.pending.load(Ordering::Acquire) == 0
    }

    fn acknowledge(&self, failure: Option<String>) {
        if let Some(failure) = failure
            && let Ok(mut slot) = self.failure.lock()
        {
            slot.get_or_insert(failure);
        }
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.done.notify_one();
        }
    }

    /// Waits for every acknowledgement; an error when a delivery failed.
    async fn wait(&self) -> Result<(), JobError> {
        while !self.is_done() {
            self.done.notified().await;
        }
        match self.failure.lock().ok().and_then(|mut slot| slot.take()) {
            Some(failure) => Err(JobError::Kafka {
                action: "deliver a batch's outputs, so it is not committed".to_owned(),
                source: failure.into(),
            }),
            None => Ok(()),
        }
    }
}

/// The producer's context: each delivery report counts against its batch.
struct Acks;

impl rdkafka::ClientContext for Acks {}

impl rdkafka::producer::ProducerContext for Acks {
    type DeliveryOpaque = Arc<InFlight>;

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, batch: Arc<InFlight>) {
        batch.acknowledge(result.as_ref().err().map(|(error, _)| error.to_string()));
    }
}

/// A batch whose records are sent and not yet all acknowledged.
struct Sent {
    in_flight: Arc<InFlight>,
    offsets: TopicPartitionList,
    counts: Counts,
    started: Instant,
}

/// Sent batches in consumption order, and the offsets last committed.
#[derive(Default)]
struct Pipeline {
    sent: VecDeque<Sent>,
    committed: Option<TopicPartitionList>,
}

/// Batches whose acknowledgements may be awaited at once (after a new one is sent, the
/// oldest is waited for while this many are in flight).
const IN_FLIGHT_BATCHES: usize = 4;

impl Pipeline {
    fn push(&mut self, sent: Sent) {
        self.sent.push_back(sent);
    }

    /// Commits every leading batch that is acknowledged; waits for the oldest while more than
    /// `room` batches are in flight (`drain`: none may stay).
    async fn settle(
        &mut self,
        consumer: &StreamConsumer,
        metrics: &StreamMetrics,
        stream: &mut Stream,
        room: usize,
    ) -> Result<(), JobError> {
        while let Some(oldest) = self.sent.front() {
            if !oldest.in_flight.is_done() && self.sent.len() <= room {
                break;
            }
            oldest.in_flight.wait().await?;
            self.commit_oldest(consumer, metrics, stream)?;
        }
        Ok(())
    }

    /// Waits for every batch in flight and commits them.
    async fn drain(
        &mut self,
        consumer: &StreamConsumer,
        metrics: &StreamMetrics,
        stream: &mut Stream,
    ) -> Result<(), JobError> {
        self.settle(consumer, metrics, stream, 0).await
    }

    fn commit_oldest(
        &mut self,
        consumer: &StreamConsumer,
        metrics: &StreamMetrics,
        stream: &mut Stream,
    ) -> Result<(), JobError> {
        let Some(sent) = self.sent.pop_front() else {
            return Ok(());
        };
        consumer
            .commit(&sent.offsets, CommitMode::Async)
            .map_err(kafka("commit offsets"))?;
        let counts = &mut stream.counts;
        counts.consumed += sent.counts.consumed;
        counts.predicted += sent.counts.predicted;
        counts.dead += sent.counts.dead;
        counts.batches += 1;
        metrics.records_in.inc_by(sent.counts.consumed);
        metrics.records_out.inc_by(sent.counts.predicted);
        metrics.dead_letters.inc_by(sent.counts.dead);
        metrics
            .batch_seconds
            .observe(sent.started.elapsed().as_secs_f64());
        self.committed = Some(sent.offsets);
        if stream.first_commit.is_none() {
            stream.first_commit = Some((Instant::now(), stream.received));
        }
        Ok(())
    }
}

/// What a stream did.
#[derive(Debug, Default)]
struct Stream {
    /// Committed work.
    counts: Counts,
    /// Records read, committed or not.
    received: u64,
    /// When the first record arrived, and when the last commit was made.
    first: Option<Instant>,
    last: Option<Instant>,
    /// When the first batch was committed, and the records read by then.
    first_commit: Option<(Instant, u64)>,
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

/// One record of a batch: where its bytes are in [`Batch::bytes`], and where it came from.
#[derive(Debug, Clone)]
struct Record {
    payload: Range<usize>,
    key: Option<Range<usize>>,
    topic: usize,
    partition: i32,
    offset: i64,
}

/// Where a record came from, written `topic/partition/offset`.
struct Source<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
}

impl std::fmt::Display for Source<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "{}/{}/{}",
            self.topic, self.partition, self.offset
        )
    }
}

impl Serialize for Source<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Consumed records, their payloads and keys copied into one buffer.
#[derive(Debug, Default)]
struct Batch {
    bytes: Vec<u8>,
    records: Vec<Record>,
    topics: Vec<String>,
}

impl Batch {
    fn with_capacity(records: usize) -> Self {
        Self {
            bytes: Vec::new(),
            records: Vec::with_capacity(records),
            topics: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.records.len()
    }

    fn push(&mut self, message: &BorrowedMessage<'_>) {
        let mut copy = |bytes: &[u8]| {
            let start = self.bytes.len();
            self.bytes.extend_from_slice(bytes);
            start..self.bytes.len()
        };
        let payload = copy(message.payload().unwrap_or_default());
        let key = message.key().map(&mut copy);
        let topic = match self
            .topics
            .iter()
            .position(|topic| topic == message.topic())
        {
            Some(topic) => topic,
            None => {
                self.topics.push(message.topic().to_owned());
                self.topics.len() - 1
            }
        };
        self.records.push(Record {
            payload,
            key,
            topic,
            partition: message.partition(),
            offset: message.offset(),
        });
    }

    fn payload(&self, index: usize) -> &[u8] {
        &self.bytes[self.records[index].payload.clone()]
    }

    fn key(&self, index: usize) -> Option<&[u8]> {
        let key = self.records[index].key.clone()?;
        Some(&self.bytes[key])
    }

    /// `topic/partition/offset` of a record.
    fn source(&self, index: usize) -> Source<'_> {
        let record = &self.records[index];
        Source {
            topic: &self.topics[record.topic],
            partition: record.partition,
            offset: record.offset,
        }
    }

    /// The offsets to commit once this batch is done: after its last record per partition.
    fn next_offsets(&self) -> TopicPartitionList {
        let mut next: HashMap<(usize, i32), i64> = HashMap::new();
        for record in &self.records {
            let entry = next.entry((record.topic, record.partition)).or_insert(0);
            *entry = (*entry).max(record.offset + 1);
        }
        let mut offsets = TopicPartitionList::with_capacity(next.len());
        for ((topic, partition), offset) in next {
            // An offset is always valid for a partition that was just read.
            let _ = offsets.add_partition_offset(
                &self.topics[topic],
                partition,
                Offset::Offset(offset),
            );
        }
        offsets
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

/// The output values of a batch, serialized into one buffer.
#[derive(Debug, Default)]
struct Outputs {
    bytes: Vec<u8>,
    /// The record each output answers, and where its value is in `bytes`.
    values: Vec<(usize, Range<usize>)>,
}

/// What an output record holds.
#[derive(Serialize)]
struct Output<'a, I: Serialize> {
    prediction: f64,
    index: &'a I,
    model: &'a str,
    version: &'a str,
    source: Source<'a>,
}

impl Outputs {
    fn len(&self) -> usize {
        self.values.len()
    }

    /// The records answered (by their position in the batch) with their output values.
    fn iter(&self) -> impl Iterator<Item = (usize, &[u8])> {
        self.values
            .iter()
            .map(|(index, range)| (*index, &self.bytes[range.clone()]))
    }

    /// Writes the output of record `position`.
    fn push<I: Serialize>(
        &mut self,
        model: &LoadedModel,
        batch: &Batch,
        position: usize,
        prediction: f64,
        index: &I,
    ) -> Result<(), String> {
        let output = Output {
            prediction,
            index,
            model: &model.version.name,
            version: &model.version.version,
            source: batch.source(position),
        };
        let start = self.bytes.len();
        match serde_json::to_writer(&mut self.bytes, &output) {
            Ok(()) => {
                self.values.push((position, start..self.bytes.len()));
                Ok(())
            }
            Err(error) => {
                self.bytes.truncate(start);
                Err(format!("the prediction cannot be written: {error}"))
            }
        }
    }

    /// Writes the outputs of `records` (one prediction each), runs of them on every thread,
    /// then appends them in order; a record whose output cannot be written goes to `dead`.
    fn write<T, I>(
        &mut self,
        model: &LoadedModel,
        batch: &Batch,
        records: &[(usize, T)],
        predictions: &[f64],
        dead: &mut Vec<(usize, String)>,
        index: &(impl Fn(&T) -> &I + Sync),
    ) where
        T: Sync,
        I: Serialize,
    {
        let runs: Vec<(Self, Vec<(usize, String)>)> = records
            .par_chunks(PARALLEL_RECORDS)
            .zip(predictions.par_chunks(PARALLEL_RECORDS))
            .map(|(records, predictions)| {
                let mut run = Self::default();
                let mut refused = Vec::new();
                for ((position, record), &prediction) in records.iter().zip(predictions) {
                    if let Err(reason) =
                        run.push(model, batch, *position, prediction, index(record))
                    {
                        refused.push((*position, reason));
                    }
                }
                (run, refused)
            })
            .collect();
        for (run, refused) in runs {
            let offset = self.bytes.len();
            self.bytes.extend_from_slice(&run.bytes);
            self.values.extend(
                run.values
                    .into_iter()
                    .map(|(position, range)| (position, range.start + offset..range.end + offset)),
            );
            dead.extend(refused);
        }
    }

    /// Scores `batch`, keeping the output values in input order; returns the dead letters
    /// (the position of each refused record with the reason), in input order too.
    ///
    /// Records are parsed once into the model's columns ([`records`]); a record that is not
    /// a JSON object, and a group whose columns only arrow-json can type, take the slower
    /// path of the scoring server, which accepts and refuses the same records.
    fn score(&mut self, model: &LoadedModel, batch: &Batch) -> Vec<(usize, String)> {
        self.bytes.clear();
        self.values.clear();
        let columns = model.record_columns();
        let mut dead = Vec::new();
        let mut rows = Vec::with_capacity(batch.len());
        let mut slow = Vec::new();
        // Parsed on every thread: a batch's parsing is as long as its prediction on one.
        let parsed: Vec<_> = (0..batch.len())
            .into_par_iter()
            .with_min_len(PARALLEL_RECORDS)
            .map(|position| columns.parse(batch.payload(position)))
            .collect();
        for (position, parsed) in parsed.into_iter().enumerate() {
            match parsed {
                Ok(row) => rows.push((position, row)),
                Err(records::Refused::NotAnObject) => slow.push(position),
            }
        }
        self.predict_halving(
            model,
            batch,
            &rows,
            &mut dead,
            &mut slow,
            &|group| {
                let cells: Vec<&records::Row<'_>> = group.iter().map(|(_, row)| row).collect();
                columns.batch(&cells).map(Ok)
            },
            &|row| columns.index(row).unwrap_or(&records::Cell::Null),
        );
        // The scoring server's path: records parsed into JSON values, typed by arrow-json.
        slow.sort_unstable();
        let mut values = Vec::with_capacity(slow.len());
        for position in slow {
            match serde_json::from_slice::<Value>(batch.payload(position)) {
                Ok(record @ Value::Object(_)) => values.push((position, record)),
                Ok(_) => dead.push((position, "the record is not a JSON object".to_owned())),
                Err(error) => {
                    dead.push((position, format!("the record is not valid JSON: {error}")));
                }
            }
        }
        let index = model.index_column();
        self.predict_halving(
            model,
            batch,
            &values,
            &mut dead,
            &mut Vec::new(),
            &|group| {
                Some(protocol::records_to_batch(
                    group
                        .iter()
                        .map(|(_, value)| value)
                        .collect::<Vec<_>>()
                        .as_slice(),
                ))
            },
            &|record| {
                index
                    .and_then(|name| record.get(name))
                    .unwrap_or(&Value::Null)
            },
        );
        self.values.sort_unstable_by_key(|(position, _)| *position);
        dead.sort_unstable_by_key(|(position, _)| *position);
        dead
    }

    /// Predicts a group of records (`build` makes their batch, `None` when it declines the
    /// group, whose positions then go to `declined`; `index` gives a record's index value);
    /// when the schema refuses some, halves the group until each refused record stands alone
    /// (a few extra validations per bad record, none when all are good).
    #[allow(clippy::too_many_arguments, reason = "one recursive step of `score`")]
    fn predict_halving<T, I>(
        &mut self,
        model: &LoadedModel,
        batch: &Batch,
        records: &[(usize, T)],
        dead: &mut Vec<(usize, String)>,
        declined: &mut Vec<usize>,
        build: &impl Fn(&[(usize, T)]) -> Option<Result<RecordBatch, ScoringError>>,
        index: &(impl Fn(&T) -> &I + Sync),
    ) where
        T: Sync,
        I: Serialize,
    {
        if records.is_empty() {
            return;
        }
        let Some(built) = build(records) else {
            declined.extend(records.iter().map(|(position, _)| *position));
            return;
        };
        match built.and_then(|rows| model.predict(&rows)) {
            Ok(predictions) => self.write(model, batch, records, &predictions, dead, index),

            Err(error) if records.len() == 1 => dead.push((records[0].0, error.to_string())),
            Err(_) => {
                let (left, right) = records.split_at(records.len() / 2);
                self.predict_halving(model, batch, left, dead, declined, build, index);
                self.predict_halving(model, batch, right, dead, declined, build, index);
            }
        }
    }
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
