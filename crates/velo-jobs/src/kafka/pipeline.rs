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
pub(super) struct Acks;

impl rdkafka::ClientContext for Acks {}

impl rdkafka::producer::ProducerContext for Acks {
    type DeliveryOpaque = Arc<InFlight>;

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, batch: Arc<InFlight>) {
        batch.acknowledge(result.as_ref().err().map(|(error, _)| error.to_string()));
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
    pub(super) async fn drain(
        &mut self,
        consumer: &StreamConsumer,
        metrics: &StreamMetrics,
        stream: &mut Stream,
    ) -> Result<(), JobError> {
        self.settle(consumer, metrics, stream, 0).await
    }

    pub(super) fn commit_oldest(
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
