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
    stream::{Stream, kafka},
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
                partitions = offsets.count(),
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

/// Sent batches in consumption order, and the offsets last committed.
#[derive(Default)]
pub(super) struct Pipeline {
    pub(super) sent: VecDeque<Sent>,
    pub(super) committed: Option<TopicPartitionList>,
}

/// Batches whose acknowledgements may be awaited at once (after a new one is sent, the
/// oldest is waited for while this many are in flight).
pub(super) const IN_FLIGHT_BATCHES: usize = 4;

impl Pipeline {
    pub(super) fn push(&mut self, sent: Sent) {
        self.sent.push_back(sent);
    }

    /// Commits every leading batch that is acknowledged; waits for the oldest while more than
    /// `room` batches are in flight (`drain`: none may stay).
    pub(super) async fn settle(
        &mut self,
        consumer: &StreamConsumer<Group>,
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
    pub(super) async fn drain(
        &mut self,
        consumer: &StreamConsumer<Group>,
        metrics: &StreamMetrics,
        stream: &mut Stream,
    ) -> Result<(), JobError> {
        self.settle(consumer, metrics, stream, 0).await
    }

    pub(super) fn commit_oldest(
        &mut self,
        consumer: &StreamConsumer<Group>,
        metrics: &StreamMetrics,
        stream: &mut Stream,
    ) -> Result<(), JobError> {
        let Some(sent) = self.sent.pop_front() else {
            return Ok(());
        };
        // Only partitions still assigned: a revoked one was committed when it was revoked, and
        // its new owner may have moved on since.
        let owned = owned(consumer, &sent.offsets);
        if owned.count() > 0 {
            consumer
                .commit(&owned, CommitMode::Async)
                .map_err(kafka("commit offsets"))?;
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
        self.committed = Some(owned);
        if stream.first_commit.is_none() {
            stream.first_commit = Some((Instant::now(), stream.received));
        }
        Ok(())
    }
}
