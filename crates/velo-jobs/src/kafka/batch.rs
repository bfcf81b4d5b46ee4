//! A batch of consumed records, their payloads and keys copied into one buffer.

use std::{collections::HashMap, ops::Range};

use rdkafka::{Message as _, Offset, TopicPartitionList, message::BorrowedMessage};
use serde::Serialize;

/// One record of a batch: where its bytes are in [`Batch::bytes`], and where it came from.
#[derive(Debug, Clone)]
pub(super) struct Record {
    pub(super) payload: Range<usize>,
    pub(super) key: Option<Range<usize>>,
    pub(super) topic: usize,
    pub(super) partition: i32,
    pub(super) offset: i64,
}

/// Where a record came from, written `topic/partition/offset`.
pub(super) struct Source<'a> {
    pub(super) topic: &'a str,
    pub(super) partition: i32,
    pub(super) offset: i64,
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
pub(super) struct Batch {
    pub(super) bytes: Vec<u8>,
    pub(super) records: Vec<Record>,
    pub(super) topics: Vec<String>,
}

impl Batch {
    pub(super) fn with_capacity(records: usize) -> Self {
        Self {
            bytes: Vec::new(),
            records: Vec::with_capacity(records),
            topics: Vec::new(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.records.len()
    }

    pub(super) fn push(&mut self, message: &BorrowedMessage<'_>) {
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

    pub(super) fn payload(&self, index: usize) -> &[u8] {
        &self.bytes[self.records[index].payload.clone()]
    }

    pub(super) fn key(&self, index: usize) -> Option<&[u8]> {
        let key = self.records[index].key.clone()?;
        Some(&self.bytes[key])
    }

    /// `topic/partition/offset` of a record.
    pub(super) fn source(&self, index: usize) -> Source<'_> {
        let record = &self.records[index];
        Source {
            topic: &self.topics[record.topic],
            partition: record.partition,
            offset: record.offset,
        }
    }

    /// The offsets to commit once this batch is done: after its last record per partition.
    pub(super) fn next_offsets(&self) -> TopicPartitionList {
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
pub(super) struct Counts {
    pub(super) consumed: u64,
    pub(super) predicted: u64,
    pub(super) dead: u64,
    pub(super) batches: u64,
}
