//! Batches in flight: delivery acknowledgements counted per batch, and offsets committed in
//! consumption order once a batch and every earlier one are acknowledged.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use rdkafka::{
    TopicPartitionList,
    consumer::{CommitMode, Consumer as _, StreamConsumer},
};
use tokio::sync::Notify;

use crate::JobError;

use super::{
    batch::Counts,
    metrics::StreamMetrics,
    stream::Stream,
};

/// Acknowledgements still awaited for one batch's outputs and dead letters.
#[derive(Debug)]
pub(super) struct InFlight {
    pub(super) pending: AtomicUsize,
    pub(super) failure: Mutex<Option<String>>,
    pub(super) done: Notify,
}

impl InFlight {
    pub(super) fn new(records: usize) -> Self {
        Self {
            pending: AtomicUsize::new(records),
            failure: Mutex::new(None),
            done: Notify::new(),
        }
    }

    pub(super) fn is_done(&self) -> bool {
        self.pending.load(Ordering::Acquire) == 0
    }

    pub(super) fn acknowledge(&self, failure: Option<String>) {
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
    pub(super) async fn wait(&self) -> Result<(), JobError> {
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
#[derive(Default)]
pub(super) struct Acks {
    /// Deliveries the broker refused: a revocation then commits nothing (the job fails on
    /// them anyway, and its records must be read again).
    pub(super) failures: std::sync::atomic::AtomicU64,
}

impl rdkafka::ClientContext for Acks {}

impl rdkafka::producer::ProducerContext for Acks {
    type DeliveryOpaque = Arc<InFlight>;

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, batch: Arc<InFlight>) {
        if result.is_err() {
            self.failures
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        batch.acknowledge(result.as_ref().err().map(|(error, _)| error.to_string()));
    }
}

/// `topic/partition@offset` for each element, for logs.
pub(super) fn describe(offsets: &TopicPartitionList) -> String {
    offsets
        .elements()
        .iter()
        .map(|element| {
            let offset = match element.offset() {
                rdkafka::Offset::Offset(offset) => offset.to_string(),
                other => format!("{other:?}"),
            };
            format!("{}/{}@{offset}", element.topic(), element.partition())
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The offsets of `offsets` whose partitions `consumer` is assigned now.
pub(super) fn owned(
    consumer: &StreamConsumer<Group>,
    offsets: &TopicPartitionList,
) -> TopicPartitionList {
    let assigned = consumer.assignment().unwrap_or_default();
    let mut kept = TopicPartitionList::with_capacity(offsets.count());
    for element in offsets.elements() {
        if assigned
            .find_partition(element.topic(), element.partition())
            .is_some()
        {
            let _ = kept.add_partition_offset(element.topic(), element.partition(), element.offset());
        }
    }
    kept
}

/// The consumer's side of group membership: before partitions are taken away in a rebalance,
/// every output already sent is flushed to the broker and the offsets after the records it
/// answers are committed, so that the partitions' next owner repeats nothing this worker
/// finished (only the batch it was still reading, at most, which is scored and sent, and
/// whose offsets for partitions it no longer owns are not committed).
pub(super) struct Group {
    /// The producer of the outputs, flushed before a revocation's commit.
    pub(super) producer: Arc<rdkafka::producer::ThreadedProducer<Acks>>,
    /// Per input partition, the offset after the last record whose outputs were sent.
    pub(super) sent: std::sync::Mutex<std::collections::HashMap<(String, i32), i64>>,
    /// How long a revocation waits for the outputs in flight.
    pub(super) flush: std::time::Duration,
    /// Where the partitions owned are counted (`/ready`, `velo_kafka_assigned_partitions`).
    pub(super) metrics: Arc<super::metrics::StreamMetrics>,
}

impl Group {
    /// Records that the outputs of the records before `offsets` are sent.
    pub(super) fn sent(&self, offsets: &TopicPartitionList) {
        if let Ok(mut sent) = self.sent.lock() {
            for element in offsets.elements() {
                if let rdkafka::Offset::Offset(next) = element.offset() {
                    let entry = sent
                        .entry((element.topic().to_owned(), element.partition()))
                        .or_insert(next);
                    *entry = (*entry).max(next);
                }
            }
        }
    }
}

impl rdkafka::ClientContext for Group {}

impl rdkafka::consumer::ConsumerContext for Group {
    fn pre_rebalance(
        &self,
        consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &rdkafka::consumer::Rebalance<'_>,
    ) {
        let rdkafka::consumer::Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        self.metrics
            .assign(-i64::try_from(revoked.count()).unwrap_or(i64::MAX));
        tracing::info!(partitions = revoked.count(), "revoked by the group");
        use rdkafka::producer::Producer as _;
        if let Err(error) = self.producer.flush(self.flush) {
            tracing::warn!(%error, "partitions revoked before every output was acknowledged; their records will be scored again");
            return;
        }
        if self
            .producer
            .context()
            .failures
            .load(std::sync::atomic::Ordering::SeqCst)
            > 0
        {
            tracing::warn!("partitions revoked after a refused delivery; their offsets are not committed");
            return;
        }
        let mut offsets = TopicPartitionList::with_capacity(revoked.count());
        if let Ok(mut sent) = self.sent.lock() {
            for element in revoked.elements() {
                let key = (element.topic().to_owned(), element.partition());
                if let Some(next) = sent.remove(&key) {
                    let _ = offsets.add_partition_offset(
                        element.topic(),
                        element.partition(),
                        rdkafka::Offset::Offset(next),
                    );
                }
            }
        }
        if offsets.count() == 0 {
            return;
        }
        match consumer.commit(&offsets, CommitMode::Sync) {
            Ok(()) => tracing::info!(
                offsets = %describe(&offsets),
                "partitions revoked: the offsets of every output sent are committed"
            ),
            Err(error) => {
                tracing::warn!(%error, "partitions revoked and their offsets not committed; their records will be scored again");
            }
        }
    }

    fn post_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &rdkafka::consumer::Rebalance<'_>,
    ) {
        if let rdkafka::consumer::Rebalance::Assign(assigned) = rebalance {
            self.metrics
                .assign(i64::try_from(assigned.count()).unwrap_or(0));
            let partitions: Vec<String> = assigned
                .elements()
                .iter()
                .map(|element| format!("{}/{}", element.topic(), element.partition()))
                .collect();
            tracing::info!(
                partitions = %partitions.join(","),
                "partitions assigned"
            );
        }
    }

    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        offsets: &TopicPartitionList,
    ) {
        if let Err(error) = result {
            tracing::warn!(%error, partitions = offsets.count(), "a commit was refused; its records will be scored again after a restart or a rebalance");
        }
    }
}

/// A batch whose records are sent and not yet all acknowledged.
pub(super) struct Sent {
    pub(super) in_flight: Arc<InFlight>,
    pub(super) offsets: TopicPartitionList,
    pub(super) counts: Counts,
    pub(super) started: Instant,
}

/// A commit on its way to the broker: the offsets of `batches` acknowledged batches.
struct Committing {
    task: tokio::task::JoinHandle<rdkafka::error::KafkaResult<()>>,
    batches: usize,
}

/// Batches in flight, in consumption order: sent and awaiting their acknowledgements, then
/// acknowledged and awaiting the broker's acknowledgement of their commit. A batch counts
/// against the window until its commit is acknowledged, so that a worker that dies leaves
/// at most the window (and the batch it was reading) to be scored again, however late the
/// broker stores commits.
#[derive(Default)]
pub(super) struct Pipeline {
    sent: VecDeque<Sent>,
    /// The commit on its way (one at a time, synchronous on a blocking thread).
    committing: Option<Committing>,
    /// Offsets of acknowledged batches not yet sent to the broker, merged, and their count.
    waiting: Option<(TopicPartitionList, usize)>,
    /// Commits the broker refused (their records are scored again after a rebalance).
    pub(super) refused: u64,
}

/// Batches whose acknowledgements and commits may be awaited at once (after a new one is
/// sent, the oldest is waited for while this many are in flight).
pub(super) const IN_FLIGHT_BATCHES: usize = 4;

impl Pipeline {
    pub(super) fn push(&mut self, sent: Sent) {
        self.sent.push_back(sent);
    }

    /// Batches sent and not yet committed (acknowledged by the broker).
    fn in_flight(&self) -> usize {
        self.sent.len()
            + self.committing.as_ref().map_or(0, |commit| commit.batches)
            + self.waiting.as_ref().map_or(0, |(_, batches)| *batches)
    }

    /// Moves acknowledged batches to the commit, starts a commit when none is on its way, and
    /// waits (for the oldest acknowledgement, or the commit) while more than `room` batches
    /// are in flight (`drain`: none may stay).
    pub(super) async fn settle(
        &mut self,
        consumer: &Arc<StreamConsumer<Group>>,
        metrics: &StreamMetrics,
        stream: &mut Stream,
        room: usize,
    ) -> Result<(), JobError> {
        loop {
            while self.sent.front().is_some_and(|oldest| oldest.in_flight.is_done()) {
                self.acknowledged(metrics, stream)?;
            }
            if self
                .committing
                .as_ref()
                .is_some_and(|commit| commit.task.is_finished())
            {
                self.finish_commit().await;
            }
            if self.committing.is_none()
                && let Some((offsets, batches)) = self.waiting.take()
            {
                let consumer = Arc::clone(consumer);
                self.committing = Some(Committing {
                    task: tokio::task::spawn_blocking(move || {
                        // Only partitions still assigned: a revoked one was committed when it
                        // was revoked, and its new owner may have moved on since.
                        let owned = owned(&consumer, &offsets);
                        if owned.count() < offsets.count() {
                            tracing::info!(
                                kept = %describe(&owned),
                                asked = %describe(&offsets),
                                "partitions no longer assigned are left out of a commit"
                            );
                        }
                        if owned.count() == 0 {
                            return Ok(());
                        }
                        consumer.commit(&owned, CommitMode::Sync)
                    }),
                    batches,
                });
                if stream.first_commit.is_none() {
                    stream.first_commit = Some((Instant::now(), stream.received));
                }
            }
            if self.in_flight() <= room {
                return Ok(());
            }
            match self.sent.front() {
                Some(oldest) if !oldest.in_flight.is_done() => {
                    let in_flight = Arc::clone(&oldest.in_flight);
                    in_flight.wait().await?;
                }
                Some(_) => {}
                None => self.finish_commit().await,
            }
        }
    }

    /// Waits for every batch in flight and commits them.
    pub(super) async fn drain(
        &mut self,
        consumer: &Arc<StreamConsumer<Group>>,
        metrics: &StreamMetrics,
        stream: &mut Stream,
    ) -> Result<(), JobError> {
        self.settle(consumer, metrics, stream, 0).await
    }

    /// Waits for the commit on its way; a refusal is logged and counted (the offsets of later
    /// batches, or the revocation's commit, cover its records; until then they would be
    /// scored again).
    async fn finish_commit(&mut self) {
        let Some(commit) = self.committing.take() else {
            return;
        };
        let refused = match commit.task.await {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error.to_string()),
            Err(error) => Some(error.to_string()),
        };
        if let Some(error) = refused {
            self.refused += 1;
            tracing::warn!(%error, batches = commit.batches, "a commit was refused; its records will be scored again unless a later commit covers them");
        }
    }

    /// Counts the oldest batch, acknowledged, and adds its offsets to the next commit.
    fn acknowledged(&mut self, metrics: &StreamMetrics, stream: &mut Stream) -> Result<(), JobError> {
        let Some(sent) = self.sent.pop_front() else {
            return Ok(());
        };
        // An acknowledgement may carry a refused delivery: the batch is then not committed.
        let failure = sent.in_flight.failure.lock().ok().and_then(|mut slot| slot.take());
        if let Some(failure) = failure {
            return Err(JobError::Kafka {
                action: "deliver a batch's outputs, so it is not committed".to_owned(),
                source: failure.into(),
            });
        }
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
        match &mut self.waiting {
            Some((offsets, batches)) => {
                // Later offsets replace earlier ones, partition by partition.
                for element in sent.offsets.elements() {
                    let (topic, partition) = (element.topic(), element.partition());
                    let _ = if offsets.find_partition(topic, partition).is_some() {
                        offsets.set_partition_offset(topic, partition, element.offset())
                    } else {
                        offsets.add_partition_offset(topic, partition, element.offset())
                    };
                }
                *batches += 1;
            }
            None => self.waiting = Some((sent.offsets, 1)),
        }
        Ok(())
    }
}
