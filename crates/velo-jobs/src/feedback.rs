//! The feedback loop, replayed: production data window by window, monitored, retrained when a
//! policy says so, each challenger gated against the deployed model, and the deployed model's
//! error held against a static one that is never retrained.
//!
//! Each window is first scored by the deployed model (and by the static model, for
//! comparison); its labels then arrive. The window's drift against the deployed model's
//! training data and its realised error feed the retraining policy; a challenger is fitted on
//! the labelled data so far (expanding, or the latest rows) except the window's last
//! `gate.holdout` share, on which it and the deployed model are compared with a paired
//! bootstrap (neither trained on those rows); it is deployed for the next windows only when the
//! whole interval of its improvement clears the margin. The replay runs in memory: it measures
//! the loop's policy and gate before they run against a registry (`GateJob`).

use std::sync::Arc;

use arrow::{
    array::{ArrayRef, BooleanArray, Float64Array, StringArray, UInt64Array},
    datatypes::{DataType, Field, Schema},
    record_batch::RecordBatch,
};
use serde::{Deserialize, Serialize};
use velo_core::{
    drift::{DataProfile, DatasetDrift, ProfileOptions, WindowSpec},
    metrics::MetricName,
    stats,
};
use velo_io::{
    datasets::{Reader, Writer},
    services::{RunConfig, tracking::ActiveRun},
};
use velo_models::{Model, ModelConfig};

use crate::{
    JobContext, JobError, JobOutcome,
    common::{Labeled, SchemaFiles, Services, describe_reader, read_labeled, run_tracked, take_rows},
};

/// Replay production data window by window through the feedback loop: monitor, retrain by
/// policy, gate each challenger, and compare the deployed model with a static one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackLoopJob {
    /// The tracking run.
    #[serde(default = "FeedbackLoopJob::default_run_config")]
    pub run_config: RunConfig,
    /// The data the first model is trained on: inputs.
    pub history_inputs: Reader,
    /// Its targets.
    pub history_targets: Reader,
    /// The production data replayed: inputs, in time order.
    pub production_inputs: Reader,
    /// Their targets (labels, each window's arriving after it was scored).
    pub production_targets: Reader,
    /// Schemas of the inputs and targets.
    pub schemas: SchemaFiles,
    /// The model trained first and retrained.
    #[serde(default)]
    pub model: ModelConfig,
    /// How production rows are grouped into windows.
    #[serde(default)]
    pub window: WindowSpec,
    /// When to retrain.
    #[serde(default)]
    pub policy: RetrainPolicy,
    /// Which rows a challenger trains on.
    #[serde(default)]
    pub training_window: TrainingWindow,
    /// How challengers are gated.
    #[serde(default)]
    pub gate: GateSettings,
    /// The metric of the replay.
    #[serde(default = "FeedbackLoopJob::default_metric")]
    pub metric: MetricName,
    /// Input columns left out of the drift measure (calendar columns constant in a window).
    #[serde(default)]
    pub drift_skip: Vec<String>,
    /// The replay's table (one row per window), besides the run's artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<Writer>,
    /// Services.
    #[serde(default)]
    pub services: Services,
}

/// When the loop retrains (any condition met).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrainPolicy {
    /// Retrain when a window's share of drifted input columns reaches this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_share: Option<f64>,
    /// Retrain when a window's realised metric is worse than the deployed model's at its
    /// deployment (its gate rows) by this share (0.1: 10% worse).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degradation: Option<f64>,
    /// Retrain every this many windows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<usize>,
    /// Retrain when the champion's loss estimator expects an RMSE on the window (from its
    /// inputs alone, before labels) worse than the held-out one by this share: a
    /// `RetrainingJob`'s trigger (the replay's in-memory models carry no estimator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_degradation: Option<f64>,
    /// How many windows in a row the metric must stay `degradation` worse before it counts
    /// (1: the first degraded window); a `RetrainingJob` looks back over the last windows of
    /// its production rows.
    #[serde(default = "RetrainPolicy::default_for_windows")]
    pub for_windows: usize,
}

impl RetrainPolicy {
    fn default_for_windows() -> usize {
        1
    }
}

impl Default for RetrainPolicy {
    fn default() -> Self {
        Self {
            drift_share: Some(DatasetDrift::DEFAULT_THRESHOLD),
            degradation: Some(0.1),
            every: None,
            estimated_degradation: None,
            for_windows: Self::default_for_windows(),
        }
    }
}

/// The rows a challenger trains on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TrainingWindow {
    /// The history and every labelled production row so far.
    #[default]
    Expanding,
    /// The latest rows only.
    Sliding {
        /// Rows kept.
        rows: usize,
    },
}

/// How challengers are gated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GateSettings {
    /// The share of a window's last rows held out of the challenger's training to compare it
    /// with the deployed model.
    #[serde(default = "GateSettings::default_holdout")]
    pub holdout: f64,
    /// The relative improvement required over the whole interval.
    #[serde(default)]
    pub margin: f64,
    /// Paired resamples.
    #[serde(default = "GateSettings::default_resamples")]
    pub resamples: usize,
    /// The interval's confidence.
    #[serde(default = "GateSettings::default_confidence")]
    pub confidence: f64,
}

impl Default for GateSettings {
    fn default() -> Self {
        Self {
            holdout: Self::default_holdout(),
            margin: 0.0,
            resamples: Self::default_resamples(),
            confidence: Self::default_confidence(),
        }
    }
}

impl GateSettings {
    fn default_holdout() -> f64 {
        0.25
    }

    fn default_resamples() -> usize {
        500
    }

    fn default_confidence() -> f64 {
        0.9
    }
}

impl crate::Job for FeedbackLoopJob {
    const KIND: &'static str = "FeedbackLoopJob";

    fn services(&self) -> &Services {
        &self.services
    }

    fn plan(&self) -> Vec<String> {
        vec![
            format!(
                "train a {} on {}, the static model, deployed first",
                self.model.kind(),
                describe_reader(&self.history_inputs)
            ),
            format!(
                "replay {} window by window: score, measure drift, take the labels, retrain by \
                 policy on the {:?} window, gate each challenger on its window's last {}% rows",
                describe_reader(&self.production_inputs),
                self.training_window,
                self.gate.holdout * 100.0
            ),
            format!(
                "log per window the static and deployed {}, drift and decisions",
                self.metric.as_str()
            ),
        ]
    }

    fn schemas(&self) -> Option<&SchemaFiles> {
        Some(&self.schemas)
    }

    fn check(&self) -> Result<(), JobError> {
        if self.policy.estimated_degradation.is_some() {
            return Err(JobError::Config(
                "`policy.estimated_degradation` needs a registered model's loss estimator: the \
                 replay's models have none (use it with a RetrainingJob)"
                    .to_owned(),
            ));
        }
        if !(self.gate.holdout > 0.0 && self.gate.holdout < 1.0) {
            return Err(JobError::Config(format!(
                "`gate.holdout` is {}, expected a share in (0, 1)",
                self.gate.holdout
            )));
        }
        if self.gate.resamples == 0 || !(self.gate.confidence > 0.0 && self.gate.confidence < 1.0)
        {
            return Err(JobError::Config(
                "`gate.resamples` must be positive and `gate.confidence` in (0, 1)".to_owned(),
            ));
        }
        if self.policy.every == Some(0) {
            return Err(JobError::Config("`policy.every` must be positive".to_owned()));
        }
        Ok(())
    }

    /// Replays the production windows and logs the loop's table and summary.
    fn run(&self, context: &JobContext) -> Result<JobOutcome, JobError> {
        run_tracked(context, &self.run_config, self, |run| self.replay(context, run))
    }
}

/// One replayed window.
#[derive(Debug, Clone)]
struct Step {
    start: String,
    rows: usize,
    drift_share: f64,
    static_error: f64,
    loop_error: f64,
    retrained: bool,
    decision: String,
}

impl FeedbackLoopJob {
    fn default_run_config() -> RunConfig {
        RunConfig::named("FeedbackLoop")
    }

    fn default_metric() -> MetricName {
        MetricName::RootMeanSquaredError
    }

    fn fit(
        &self,
        schema: &velo_core::schemas::Schema,
        x: &RecordBatch,
        y: &[f64],
    ) -> Result<Box<dyn Model>, JobError> {
        let mut model = self.model.build(schema);
        model.fit(x, y)?;
        Ok(model)
    }

    fn replay(&self, context: &JobContext, run: &ActiveRun) -> Result<JobOutcome, JobError> {
        let kind = <Self as crate::Job>::KIND;
        let progress = context.progress.as_ref();
        let history = read_labeled(
            kind,
            (&self.history_inputs, &self.history_targets),
            &self.schemas,
            Some(run),
            "training",
            progress,
        )?;
        let Labeled {
            schema,
            inputs: production,
            y: production_y,
            ..
        } = read_labeled(
            kind,
            (&self.production_inputs, &self.production_targets),
            &self.schemas,
            Some(run),
            "production",
            progress,
        )?;
        let windows = velo_core::drift::windows(&production.data, &self.window).map_err(
            |message| {
                JobError::Data(format!(
                    "{}: {message}",
                    self.production_inputs.path().display()
                ))
            },
        )?;
        let mut options = ProfileOptions::with_categorical(self.model.features().categoricals.clone());
        options.skip.extend(schema.index.clone());
        options.skip.extend(self.drift_skip.iter().cloned());
        let concat = |batches: &[RecordBatch]| {
            arrow::compute::concat_batches(&production.data.schema(), batches).map_err(|source| {
                JobError::Table {
                    action: "gather the training rows".to_owned(),
                    source,
                }
            })
        };

        let fitting = progress.start("fitting the static model", None);
        let static_model = self.fit(&schema, &history.inputs.data, &history.y)?;
        drop(fitting);
        // The deployed model (None: the static one), its training rows' profile, and its
        // error on the rows it was gated on (the degradation baseline).
        let mut deployed: Option<Box<dyn Model>> = None;
        let mut reference = DataProfile::from_batches(std::slice::from_ref(&history.inputs.data), &options);
        let mut baseline: Option<f64> = None;
        // Consecutive degraded windows of the deployed model.
        let mut degraded_run = 0_usize;
        // Labelled rows so far: the history, then each window once scored.
        let mut seen_x: Vec<RecordBatch> = vec![history.inputs.data.clone()];
        let mut seen_y: Vec<f64> = history.y.clone();
        let mut steps = Vec::with_capacity(windows.len());
        let replaying = progress.start("replaying the windows", Some(windows.len() as u64));
        for (index, window) in windows.iter().enumerate() {
            let x = take_rows(&production.data, &window.rows)?;
            let y: Vec<f64> = window.rows.iter().map(|&row| production_y[row]).collect();
            let model: &dyn Model = deployed.as_deref().unwrap_or(static_model.as_ref());
            let loop_predictions = model.predict(&x)?;
            let static_predictions = static_model.predict(&x)?;
            let current = DataProfile::from_batches(
                std::slice::from_ref(&x),
                &options.clone().keeping_every_value(),
            );
            let drifts = velo_core::drift::compare(&reference, &current, &Default::default());
            let drift_share = DatasetDrift::of(
                drifts.iter().filter_map(|(_, d)| d.as_ref().ok()),
                DatasetDrift::DEFAULT_THRESHOLD,
            )
            .share;
            // The labels arrive.
            let loop_error = self.metric.compute(&y, &loop_predictions)?;
            let static_error = self.metric.compute(&y, &static_predictions)?;
            let worse = |now: f64, then: f64| {
                if self.metric.greater_is_better() {
                    now < then
                } else {
                    now > then
                }
            };
            let degraded_now = match (self.policy.degradation, baseline) {
                (Some(share), Some(then)) => worse(loop_error, then * (1.0 + share)),
                _ => false,
            };
            degraded_run = if degraded_now { degraded_run + 1 } else { 0 };
            let degraded = degraded_now && degraded_run >= self.policy.for_windows.max(1);
            let drifted = self.policy.drift_share.is_some_and(|share| drift_share >= share);
            let scheduled = self.policy.every.is_some_and(|every| (index + 1) % every == 0);
            let retrain = drifted || degraded || scheduled;
            let holdout = ((x.num_rows() as f64) * self.gate.holdout).round() as usize;
            let mut decision = "kept (no retraining)".to_owned();
            if retrain && holdout >= 10 && holdout < x.num_rows() {
                let cut = x.num_rows() - holdout;
                let (train_part, gate_part) = (x.slice(0, cut), x.slice(cut, holdout));
                let mut train_x = seen_x.clone();
                train_x.push(train_part);
                let mut train_y = seen_y.clone();
                train_y.extend_from_slice(&y[..cut]);
                let (train_x, train_y) = match self.training_window {
                    TrainingWindow::Expanding => (concat(&train_x)?, train_y),
                    TrainingWindow::Sliding { rows } => {
                        let all = concat(&train_x)?;
                        let keep = rows.min(all.num_rows());
                        let from = all.num_rows() - keep;
                        (all.slice(from, keep), train_y[from..].to_vec())
                    }
                };
                let challenger = self.fit(&schema, &train_x, &train_y)?;
                let gate_y = &y[cut..];
                let test = stats::paired_bootstrap(
                    gate_y,
                    (&loop_predictions[cut..], &challenger.predict(&gate_part)?),
                    |y, p| self.metric.compute(y, p).map_err(|e| e.to_string()),
                    self.metric.greater_is_better(),
                    (
                        self.gate.resamples,
                        self.gate.confidence,
                        self.gate.margin,
                        index as u64,
                    ),
                )
                .map_err(JobError::Data)?;
                let reasons: Vec<&str> = [(drifted, "drift"), (degraded, "degradation"), (scheduled, "schedule")]
                    .into_iter()
                    .filter_map(|(on, why)| on.then_some(why))
                    .collect();
                if test.low > self.gate.margin {
                    decision = format!(
                        "promoted ({}; {:.1}% better, interval {:.1}% to {:.1}%)",
                        reasons.join(", "),
                        test.improvement * 100.0,
                        test.low * 100.0,
                        test.high * 100.0
                    );
                    reference = DataProfile::from_batches(std::slice::from_ref(&train_x), &options);
                    baseline = Some(test.challenger);
                    deployed = Some(challenger);
                    degraded_run = 0;
                } else {
                    decision = format!(
                        "rejected ({}; {:.1}% better, interval {:.1}% to {:.1}%)",
                        reasons.join(", "),
                        test.improvement * 100.0,
                        test.low * 100.0,
                        test.high * 100.0
                    );
                }
            } else if baseline.is_none() {
                // The static model's first realised error is the baseline until a promotion.
                baseline = Some(loop_error);
            }
            seen_x.push(x);
            seen_y.extend_from_slice(&y);
            run.log_metrics(
                &[
                    ("static_error", static_error),
                    ("loop_error", loop_error),
                    ("drift_share", drift_share),
                    ("retrained", f64::from(u8::from(retrain))),
                ],
                index as i64,
            )?;
            steps.push(Step {
                start: window.start.clone(),
                rows: window.rows.len(),
                drift_share,
                static_error,
                loop_error,
                retrained: retrain,
                decision,
            });
            replaying.advance(1);
        }
        drop(replaying);

        // The whole replay, pooled.
        let all_rows: Vec<usize> = windows.iter().flat_map(|w| w.rows.iter().copied()).collect();
        let all_x = take_rows(&production.data, &all_rows)?;
        let all_y: Vec<f64> = all_rows.iter().map(|&row| production_y[row]).collect();
        let static_total = self.metric.compute(&all_y, &static_model.predict(&all_x)?)?;
        let loop_total = pooled(&steps, self.metric);
        let table = table(&steps)?;
        run.tracking().log_artifact(
            run.id(),
            "feedback/replay.parquet",
            &velo_io::datasets::parquet_bytes(&table, "feedback/replay.parquet")?,
        )?;
        if let Some(writer) = &self.table {
            writer.write(&table)?;
        }
        let metric = self.metric.as_str();
        run.log_metrics(
            &[("static_total", static_total), ("loop_total", loop_total)],
            0,
        )?;
        let mut outcome = JobOutcome::new(self.run_config.name.clone());
        outcome.run_id = Some(run.id().to_owned());
        outcome.metrics.insert(format!("static_{metric}"), static_total);
        outcome.metrics.insert(format!("loop_{metric}"), loop_total);
        for step in &steps {
            outcome.lines.push(format!(
                "{}: {} rows, drift {:.0}%, static {:.2}, loop {:.2}, {}",
                step.start,
                step.rows,
                step.drift_share * 100.0,
                step.static_error,
                step.loop_error,
                step.decision
            ));
        }
        outcome.lines.push(format!(
            "over {} windows: {metric} static {static_total:.2}, loop {loop_total:.2}",
            steps.len()
        ));
        Ok(outcome)
    }
}

/// The loop's error over all windows: RMSE and MSE pool by rows, other metrics average by
/// rows (an approximation the table's per-window figures make exact).
fn pooled(steps: &[Step], metric: MetricName) -> f64 {
    let rows: usize = steps.iter().map(|s| s.rows).sum();
    if rows == 0 {
        return f64::NAN;
    }
    let weight = |s: &Step| s.rows as f64 / rows as f64;
    match metric {
        MetricName::RootMeanSquaredError => steps
            .iter()
            .map(|s| weight(s) * s.loop_error * s.loop_error)
            .sum::<f64>()
            .sqrt(),
        _ => steps.iter().map(|s| weight(s) * s.loop_error).sum(),
    }
}

fn table(steps: &[Step]) -> Result<RecordBatch, JobError> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("window", DataType::Utf8, false),
        Field::new("rows", DataType::UInt64, false),
        Field::new("drift_share", DataType::Float64, false),
        Field::new("static_error", DataType::Float64, false),
        Field::new("loop_error", DataType::Float64, false),
        Field::new("retrained", DataType::Boolean, false),
        Field::new("decision", DataType::Utf8, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(steps.iter().map(|s| s.start.as_str()))),
        Arc::new(UInt64Array::from_iter_values(steps.iter().map(|s| s.rows as u64))),
        Arc::new(Float64Array::from_iter_values(steps.iter().map(|s| s.drift_share))),
        Arc::new(Float64Array::from_iter_values(steps.iter().map(|s| s.static_error))),
        Arc::new(Float64Array::from_iter_values(steps.iter().map(|s| s.loop_error))),
        Arc::new(BooleanArray::from(steps.iter().map(|s| s.retrained).collect::<Vec<_>>())),
        Arc::new(StringArray::from_iter_values(steps.iter().map(|s| s.decision.as_str()))),
    ];
    RecordBatch::try_new(schema, columns).map_err(|source| JobError::Table {
        action: "build the replay table".to_owned(),
        source,
    })
}
