//! A batch's outputs: predictions by fast or slow parsing, halving around refused records,
//! serialized in parallel into one buffer.

use std::ops::Range;

use arrow::record_batch::RecordBatch;
use rayon::prelude::*;
use serde::Serialize;
use serde_json::Value;

use velo_io::prediction_logs::{RequestIds, Scored};

use crate::scoring::{
    LoadedModel,
    protocol::{self, ScoringError},
    records,
};

use super::{
    batch::{Batch, Source},
    stream::PARALLEL_RECORDS,
};

/// The output values of a batch, serialized into one buffer.
#[derive(Debug, Default)]
pub(super) struct Outputs {
    pub(super) bytes: Vec<u8>,
    /// The record each output answers, and where its value is in `bytes`.
    pub(super) values: Vec<(usize, Range<usize>)>,
    /// Whether scored groups are kept for the prediction log.
    pub(super) log: bool,
    /// The scored groups of the last batch (with `log`): inputs, predictions and each
    /// record's source (`topic/partition/offset`) as its id.
    pub(super) scored: Vec<Scored>,
}

/// What an output record holds.
#[derive(Serialize)]
pub(super) struct Output<'a, I: Serialize> {
    pub(super) prediction: f64,
    pub(super) index: &'a I,
    pub(super) model: &'a str,
    pub(super) version: &'a str,
    pub(super) source: Source<'a>,
}

impl Outputs {
    pub(super) fn len(&self) -> usize {
        self.values.len()
    }

    /// The records answered (by their position in the batch) with their output values.
    pub(super) fn iter(&self) -> impl Iterator<Item = (usize, &[u8])> {
        self.values
            .iter()
            .map(|(index, range)| (*index, &self.bytes[range.clone()]))
    }

    /// Writes the output of record `position`.
    pub(super) fn push<I: Serialize>(
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
    pub(super) fn write<T, I>(
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
    pub(super) fn score(&mut self, model: &LoadedModel, batch: &Batch) -> Vec<(usize, String)> {
        self.bytes.clear();
        self.values.clear();
        self.scored.clear();
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
    pub(super) fn predict_halving<T, I>(
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
        match built.and_then(|rows| model.predict_inputs(&rows)) {
            Ok((inputs, predictions)) => {
                if self.log {
                    let ids = records
                        .iter()
                        .map(|(position, _)| batch.source(*position).to_string())
                        .collect();
                    self.scored.push(Scored::new(
                        inputs,
                        predictions.clone(),
                        model.log_names(),
                        RequestIds::PerRow(ids),
                    ));
                }
                self.write(model, batch, records, &predictions, dead, index);
            }

            Err(error) if records.len() == 1 => dead.push((records[0].0, error.to_string())),
            Err(_) => {
                let (left, right) = records.split_at(records.len() / 2);
                self.predict_halving(model, batch, left, dead, declined, build, index);
                self.predict_halving(model, batch, right, dead, declined, build, index);
            }
        }
    }
}
