//! The tuning job: search a model's parameters with cross-validation.

use std::collections::BTreeMap;

use std::{sync::Arc, time::Instant};

use arrow::{
    array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt32Array},
    datatypes::{DataType, Field, Schema as ArrowSchema},
};
use rand::{Rng as _, SeedableRng as _};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use velo_core::{
    metrics::Metric,
    splitters::{Splitter, TimeSeriesSplitter},
};
use velo_models::{ModelConfig, Params, leakage::LeakageOptions};
use velo_io::{
    datasets::Reader,
    registries::Tag,
    services::{RunConfig, tracking::ActiveRun},
};

use crate::{
    JobContext, JobError, JobOutcome,
    common::{
        Labeled, SchemaFiles, Services, describe_reader, fold_rows, read_labeled, run_tracked,
    },
};

/// Search a model's parameters with cross-validation and log every candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TuningJob {
    /// The tracking run.
    #[serde(default = "TuningJob::default_run_config")]
    pub run_config: RunConfig,
    /// Reads the model inputs.
    pub inputs: Reader,
    /// Reads the targets.
    pub targets: Reader,
    /// Schemas of the inputs and targets.
    pub schemas: SchemaFiles,
    /// The model whose parameters are searched.
    #[serde(default)]
    pub model: ModelConfig,
    /// The metric that ranks candidates.
    #[serde(default)]
    pub metric: Metric,
    /// The cross-validation splitter.
    #[serde(default = "TuningJob::default_splitter")]
    pub splitter: Splitter,
    /// The data leakage check run on the inputs before fitting (warns by default).
    #[serde(default)]
    pub leakage: LeakageOptions,
    /// The search strategy.
    #[serde(default)]
    pub searcher: Searcher,
    /// Where candidates × folds are cross-validated: in this process (`KIND: Local`, the
    /// default) or on `velo worker` processes through a PostgreSQL queue (`KIND: Queue`,
    /// `url: postgres://…`); the results are the same.
    #[serde(default)]
    pub executor: crate::executors::Executor,
    /// Services.
    #[serde(default)]
    pub services: Services,
}

impl crate::Job for TuningJob {
    const KIND: &'static str = "TuningJob";

    fn services(&self) -> &Services {
        &self.services
    }

    fn plan(&self) -> Vec<String> {
        vec![
            format!("read inputs from {}", describe_reader(&self.inputs)),
            format!("read targets from {}", describe_reader(&self.targets)),
            format!(
                "search {} with {}",
                self.model.kind(),
                self.searcher.describe()
            ),
            format!(
                "score candidates by {} over {} folds {}",
                self.metric.name(),
                self.splitter.n_splits(),
                self.executor.describe()
            ),
        ]
    }

    fn schemas(&self) -> Option<&SchemaFiles> {
        Some(&self.schemas)
    }

    /// Cross-validates every candidate of the searcher (candidates × folds in parallel, the
    /// results identical for a seed whatever the thread count), logs the cv results table as a
    /// Parquet artifact and the best params and score, and refits the best candidate on every
    /// row when asked.
    fn run(&self, context: &JobContext) -> Result<JobOutcome, JobError> {
        run_tracked(context, &self.run_config, self, |run| {
            self.tune(context, run)
        })
    }
}

impl TuningJob {
    fn default_run_config() -> RunConfig {
        RunConfig::named("Tuning")
    }

    fn default_splitter() -> Splitter {
        Splitter::TimeSeriesSplitter(TimeSeriesSplitter::default())
    }

}

/// One candidate's cross-validation result.
#[derive(Debug, Clone, PartialEq)]
pub struct CandidateResult {
    /// The parameters tried.
    pub params: Params,
    /// The score on each fold, in fold order.
    pub scores: Vec<f64>,
    /// Seconds spent fitting, per fold.
    pub fit_seconds: Vec<f64>,
}

impl CandidateResult {
    /// The mean score over the folds.
    pub fn mean(&self) -> f64 {
        self.scores.iter().sum::<f64>() / self.scores.len().max(1) as f64
    }

    /// The population standard deviation of the scores (as scikit-learn's `std_test_score`).
    pub fn std(&self) -> f64 {
        let mean = self.mean();
        let n = self.scores.len().max(1) as f64;
        (self
            .scores
            .iter()
            .map(|score| (score - mean).powi(2))
            .sum::<f64>()
            / n)
            .sqrt()
    }
}

impl TuningJob {

    fn tune(&self, context: &JobContext, run: &ActiveRun) -> Result<JobOutcome, JobError> {
        let labeled = read_labeled(
            "TuningJob",
            (&self.inputs, &self.targets),
            &self.schemas,
            Some(run),
            "tuning",
            context.progress.as_ref(),
        )?;
        labeled.check_leakage(self.model.features(), &self.leakage, run)?;
        let Labeled {
            schema: inputs_schema,
            inputs,
            targets_lineage,
            y,
            ..
        } = labeled;
        let candidates = self.searcher.candidates()?;
        if candidates.is_empty() {
            return Err(JobError::Config(
                "the searcher proposes no candidate".to_owned(),
            ));
        }
        let folds = self.splitter.split(inputs.data.num_rows())?.len();
        tracing::info!(candidates = candidates.len(), folds, "cross-validating");
        let greater = self.metric.greater_is_better();
        // Rounds of folds: every fold at once, or (successive halving) the first folds, then
        // one fold per round for the candidates still in the race.
        let rounds: Vec<std::ops::Range<usize>> = match &self.searcher {
            Searcher::HalvingCVSearcher(halving) => {
                let first = halving.min_folds.clamp(1, folds.max(1));
                std::iter::once(0..first)
                    .chain((first..folds).map(|fold| fold..fold + 1))
                    .collect()
            }
            _ => std::iter::once(0..folds).collect(),
        };
        let mut prepared: Option<Prepared> = None;
        let mut outcomes: Vec<Vec<TaskResult>> = vec![Vec::new(); candidates.len()];
        let mut alive: Vec<usize> = (0..candidates.len()).collect();
        for (round, range) in rounds.iter().enumerate() {
            if round > 0
                && let Searcher::HalvingCVSearcher(halving) = &self.searcher
            {
                // The best 1 in `factor` go on (ties keep the earlier candidate).
                let keep = alive.len().div_ceil(halving.factor.max(2)).max(1);
                alive.sort_by(|&a, &b| {
                    let (a_mean, b_mean) = (mean_of(&outcomes[a]), mean_of(&outcomes[b]));
                    let order = a_mean.total_cmp(&b_mean);
                    (if greater { order.reverse() } else { order }).then(a.cmp(&b))
                });
                alive.truncate(keep);
                alive.sort_unstable();
                tracing::info!(round, candidates = alive.len(), "halving: the best candidates go on");
            }
            let tasks: Vec<(usize, usize)> = alive
                .iter()
                .flat_map(|&candidate| range.clone().map(move |fold| (candidate, fold)))
                .collect();
            let results = match &self.executor {
                crate::executors::Executor::Queue(queue) => {
                    let shared = serde_json::json!({
                        "job": self.for_workers(),
                        "inputs_digest": inputs.lineage.digest,
                        "targets_digest": targets_lineage.digest,
                    });
                    let payloads: Vec<serde_json::Value> = tasks
                        .iter()
                        .map(|&(candidate, fold)| {
                            serde_json::json!({
                                "candidate": candidate,
                                "fold": fold,
                                "params": candidates[candidate],
                            })
                        })
                        .collect();
                    queue
                        .run(
                            &format!("{}-tuning-{round}", run.id()),
                            TASK_KIND,
                            &shared,
                            &payloads,
                            context.progress.as_ref(),
                        )?
                        .iter()
                        .map(TaskResult::from_value)
                        .collect::<Result<Vec<_>, _>>()?
                }
                _ => {
                    if prepared.is_none() {
                        prepared = Some(Prepared::new(
                            self.clone(),
                            inputs_schema.clone(),
                            &inputs.data,
                            &y,
                        )?);
                    }
                    let Some(prepared) = prepared.as_ref() else {
                        return Err(JobError::Config("no folds prepared".to_owned()));
                    };
                    let searching = context.progress.start(
                        &format!("cross-validating {} candidates", alive.len()),
                        Some(tasks.len() as u64),
                    );
                    let evaluate = || {
                        tasks
                            .par_iter()
                            .map(|&(candidate, fold)| {
                                let result = prepared.evaluate(&candidates[candidate], fold)?;
                                searching.advance(1);
                                Ok(result)
                            })
                            .collect::<Result<Vec<TaskResult>, JobError>>()
                    };
                    match self.searcher.n_jobs() {
                        Some(threads) => rayon::ThreadPoolBuilder::new()
                            .num_threads(threads.max(1))
                            .build()
                            .map_err(|error| JobError::Runtime {
                                action: format!("start {threads} threads"),
                                source: Box::new(error),
                            })?
                            .install(evaluate)?,
                        None => evaluate()?,
                    }
                }
            };
            // Tasks run candidate by candidate, fold by fold: each candidate's folds stay a
            // prefix of the splitter's.
            for (&(candidate, _), result) in tasks.iter().zip(results) {
                outcomes[candidate].push(result);
            }
        }
        drop(prepared);
        let results: Vec<CandidateResult> = candidates
            .iter()
            .zip(&outcomes)
            .map(|(params, mine)| CandidateResult {
                params: params.clone(),
                scores: mine.iter().map(|result| result.score).collect(),
                fit_seconds: mine.iter().map(|result| result.seconds).collect(),
            })
            .collect();
        // The best candidate of those scored on the most folds (all of them but with halving).
        let most = results.iter().map(|r| r.scores.len()).max().unwrap_or(0);
        let best = (0..results.len())
            .filter(|&index| results[index].scores.len() == most)
            .reduce(|best, index| {
                let (a, b) = (results[best].mean(), results[index].mean());
                // Ties keep the first candidate, as scikit-learn's ranking does.
                if (greater && b > a) || (!greater && b < a) {
                    index
                } else {
                    best
                }
            })
            .unwrap_or(0);
        // Each candidate is a child run of the tuning run (MLflow's nested runs): its params,
        // its score on each fold and their mean.
        for (index, result) in results.iter().enumerate() {
            let child = run.start_child(&format!("candidate-{index}"))?;
            let params: Vec<Tag> = result
                .params
                .iter()
                .map(|(key, value)| Tag::new(key.clone(), param_text(value)))
                .collect();
            child.tracking().log_batch(child.id(), &[], &params, &[])?;
            let folds: Vec<(String, f64)> = result
                .scores
                .iter()
                .enumerate()
                .map(|(fold, score)| (format!("split{fold}_test_score"), *score))
                .collect();
            let mut metrics: Vec<(&str, f64)> = folds
                .iter()
                .map(|(name, score)| (name.as_str(), *score))
                .collect();
            metrics.push(("mean_test_score", result.mean()));
            metrics.push(("std_test_score", result.std()));
            child.log_metrics(&metrics, 0)?;
            child.finish()?;
        }
        let table = cv_results(&results, best, greater)?;
        let bytes = velo_io::datasets::parquet_bytes(&table, "cv_results.parquet")?;
        run.tracking()
            .log_artifact(run.id(), "cv_results.parquet", &bytes)?;
        let labels: Vec<String> = results
            .iter()
            .map(|r| serde_json::to_string(&r.params).unwrap_or_default())
            .collect();
        let means: Vec<f64> = results.iter().map(CandidateResult::mean).collect();
        let stds: Vec<f64> = results.iter().map(CandidateResult::std).collect();
        let chart = crate::plots::bars(
            &format!(
                "Cross-validated {} per candidate",
                self.metric.name().as_str()
            ),
            &format!(
                "mean {} (whiskers: one standard deviation)",
                self.metric.name().as_str()
            ),
            &labels,
            &means,
            Some(&stds),
        )?;
        run.tracking()
            .log_artifact(run.id(), "plots/cv_results.png", &chart)?;
        let name = self.metric.name();
        let best_params: Vec<Tag> = results[best]
            .params
            .iter()
            .map(|(key, value)| Tag::new(format!("best.{key}"), param_text(value)))
            .collect();
        run.tracking().log_batch(run.id(), &[], &best_params, &[])?;
        run.log_metrics(
            &[
                (&format!("best_{}", name.as_str()), results[best].mean()),
                ("best_std", results[best].std()),
            ],
            0,
        )?;
        let mut outcome = JobOutcome::new(self.run_config.name.clone());
        outcome.run_id = Some(run.id().to_owned());
        outcome
            .metrics
            .insert(format!("best_{}", name.as_str()), results[best].mean());
        if self.searcher.refit() {
            let mut model = self.model.build(&inputs_schema);
            model.set_params(&results[best].params)?;
            let started = Instant::now();
            model.fit(&inputs.data, &y)?;
            let seconds = started.elapsed().as_secs_f64();
            run.log_metrics(&[("refit_seconds", seconds)], 0)?;
            outcome.metrics.insert("refit_seconds".to_owned(), seconds);
        }
        outcome.lines.push(format!(
            "best of {} candidates over {} folds: {} (mean {} {})",
            results.len(),
            folds,
            serde_json::to_string(&results[best].params).unwrap_or_default(),
            name.as_str(),
            results[best].mean()
        ));
        Ok(outcome)
    }
}

/// The kind of the tasks a tuning job puts on a queue: one candidate on one fold.
pub const TASK_KIND: &str = "tuning";

impl TuningJob {
    /// The job as workers receive it: dataset and schema paths made absolute (workers may
    /// start elsewhere), run locally on the worker, no services of its own.
    fn for_workers(&self) -> Self {
        Self {
            inputs: self.inputs.absolute(),
            targets: self.targets.absolute(),
            schemas: self.schemas.absolute(),
            executor: crate::executors::Executor::default(),
            services: Services::default(),
            ..self.clone()
        }
    }
}

/// One candidate's score on one fold, and the seconds its fit took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct TaskResult {
    score: f64,
    seconds: f64,
}

impl TaskResult {
    fn to_value(self) -> serde_json::Value {
        // Scores travel as text so that every bit of them, NaN and infinities too, comes back.
        serde_json::json!({
            "score": format!("{:?}", self.score),
            "seconds": self.seconds,
        })
    }

    fn from_value(value: &serde_json::Value) -> Result<Self, JobError> {
        let score = value["score"]
            .as_str()
            .and_then(|text| text.parse::<f64>().ok())
            .ok_or_else(|| JobError::Data(format!("a tuning task's result has no score: {value}")))?;
        Ok(Self {
            score,
            seconds: value["seconds"].as_f64().unwrap_or(0.0),
        })
    }
}

/// A tuning job's rows, split once into folds: what evaluating a candidate on a fold needs
/// (in the job's process, or once per batch on a queue's worker).
pub(crate) struct Prepared {
    job: TuningJob,
    schema: velo_core::schemas::Schema,
    folds: Vec<crate::common::FoldRows>,
}

impl Prepared {
    fn new(
        job: TuningJob,
        schema: velo_core::schemas::Schema,
        inputs: &arrow::array::RecordBatch,
        y: &[f64],
    ) -> Result<Self, JobError> {
        let splits = job.splitter.split(inputs.num_rows())?;
        // Every fold's rows, selected once and shared by the candidates.
        let folds = fold_rows(inputs, y, &splits)?;
        Ok(Self { job, schema, folds })
    }

    /// Fits `params` on a fold's training rows and scores its test rows.
    fn evaluate(&self, params: &Params, fold: usize) -> Result<TaskResult, JobError> {
        let (x_train, y_train, x_test, y_test) = self.folds.get(fold).ok_or_else(|| {
            JobError::Config(format!(
                "fold {fold} does not exist: the splitter makes {} folds",
                self.folds.len()
            ))
        })?;
        let mut model = self.job.model.build(&self.schema);
        model.set_params(params)?;
        let started = Instant::now();
        model.fit(x_train, y_train)?;
        let seconds = started.elapsed().as_secs_f64();
        let score = self.job.metric.score(y_test, &model.predict(x_test)?)?;
        Ok(TaskResult { score, seconds })
    }

    /// On a worker: reads the batch's data as the job describes it, and checks that it is the
    /// data the job read (same digests), so that every worker computes what the job would.
    pub(crate) fn from_context(context: &serde_json::Value) -> Result<Self, JobError> {
        let job: TuningJob = serde_json::from_value(context["job"].clone()).map_err(|error| {
            JobError::Config(format!("the batch's tuning job cannot be read: {error}"))
        })?;
        let labeled = read_labeled(
            "TuningJob",
            (&job.inputs, &job.targets),
            &job.schemas,
            None,
            "tuning",
            &crate::progress::NoProgress,
        )?;
        for (what, lineage, key) in [
            ("inputs", &labeled.inputs.lineage, "inputs_digest"),
            ("targets", &labeled.targets_lineage, "targets_digest"),
        ] {
            let expected = context[key].as_str().unwrap_or_default();
            if lineage.digest != expected {
                return Err(JobError::Data(format!(
                    "this worker read {what} {} with digest {}, but the job read digest {expected}: every worker must see the job's data",
                    lineage.source_uri, lineage.digest
                )));
            }
        }
        Self::new(job, labeled.schema, &labeled.inputs.data, &labeled.y)
    }

    /// Runs one task (`{candidate, fold, params}`) and returns its result.
    pub(crate) fn run_task(&self, payload: &serde_json::Value) -> Result<serde_json::Value, JobError> {
        let params: Params = serde_json::from_value(payload["params"].clone()).map_err(|error| {
            JobError::Config(format!("a tuning task's params cannot be read: {error}"))
        })?;
        let fold = payload["fold"]
            .as_u64()
            .and_then(|fold| usize::try_from(fold).ok())
            .ok_or_else(|| JobError::Config(format!("a tuning task names no fold: {payload}")))?;
        Ok(self.evaluate(&params, fold)?.to_value())
    }
}

/// The mean score of a candidate's results so far.
fn mean_of(results: &[TaskResult]) -> f64 {
    results.iter().map(|result| result.score).sum::<f64>() / results.len().max(1) as f64
}

fn param_text(value: &ParamValue) -> String {
    match value {
        ParamValue::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// The cv results table: one row per candidate with its params (JSON and one column per
/// param), each fold's score, the mean and standard deviation, the mean fit time and the rank.
fn cv_results(
    results: &[CandidateResult],
    best: usize,
    greater: bool,
) -> Result<RecordBatch, JobError> {
    let mut fields = vec![
        Field::new("candidate", DataType::UInt32, false),
        Field::new("params", DataType::Utf8, false),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from_iter_values(
            (0..results.len()).map(|i| u32::try_from(i).unwrap_or(u32::MAX)),
        )),
        Arc::new(StringArray::from_iter_values(
            results
                .iter()
                .map(|r| serde_json::to_string(&r.params).unwrap_or_default()),
        )),
    ];
    let keys: Vec<&String> = results
        .first()
        .map(|r| r.params.keys().collect())
        .unwrap_or_default();
    for key in keys {
        fields.push(Field::new(format!("param_{key}"), DataType::Utf8, true));
        columns.push(Arc::new(StringArray::from(
            results
                .iter()
                .map(|r| r.params.get(key).map(param_text))
                .collect::<Vec<_>>(),
        )));
    }
    // Halving leaves the folds of eliminated candidates empty (null).
    let n_folds = results.iter().map(|r| r.scores.len()).max().unwrap_or(0);
    for fold in 0..n_folds {
        fields.push(Field::new(
            format!("split{fold}_test_score"),
            DataType::Float64,
            true,
        ));
        columns.push(Arc::new(Float64Array::from(
            results
                .iter()
                .map(|r| r.scores.get(fold).copied())
                .collect::<Vec<_>>(),
        )));
    }
    let means: Vec<f64> = results.iter().map(CandidateResult::mean).collect();
    // A candidate scored on more folds ranks first (it outlasted the others), then the mean.
    let ranks: Vec<u32> = results
        .iter()
        .map(|result| {
            let (folds, mean) = (result.scores.len(), result.mean());
            let better = results
                .iter()
                .filter(|other| {
                    let (other_folds, other_mean) = (other.scores.len(), other.mean());
                    other_folds > folds
                        || (other_folds == folds
                            && if greater {
                                other_mean > mean
                            } else {
                                other_mean < mean
                            })
                })
                .count();
            u32::try_from(better + 1).unwrap_or(u32::MAX)
        })
        .collect();
    fields.push(Field::new("n_folds", DataType::UInt32, false));
    columns.push(Arc::new(UInt32Array::from_iter_values(
        results
            .iter()
            .map(|r| u32::try_from(r.scores.len()).unwrap_or(u32::MAX)),
    )));
    fields.push(Field::new("mean_test_score", DataType::Float64, false));
    columns.push(Arc::new(Float64Array::from(means)));
    fields.push(Field::new("std_test_score", DataType::Float64, false));
    columns.push(Arc::new(Float64Array::from_iter_values(
        results.iter().map(CandidateResult::std),
    )));
    fields.push(Field::new("mean_fit_time", DataType::Float64, false));
    columns.push(Arc::new(Float64Array::from_iter_values(
        results
            .iter()
            .map(|r| r.fit_seconds.iter().sum::<f64>() / r.fit_seconds.len().max(1) as f64),
    )));
    fields.push(Field::new("rank_test_score", DataType::UInt32, false));
    columns.push(Arc::new(UInt32Array::from(ranks)));
    fields.push(Field::new("is_best", DataType::Boolean, false));
    columns.push(Arc::new(arrow::array::BooleanArray::from(
        (0..results.len()).map(|i| i == best).collect::<Vec<_>>(),
    )));
    RecordBatch::try_new(Arc::new(ArrowSchema::new(fields)), columns)
        .map_err(|source| JobError::Table {
            action: "build the cv results".to_owned(),
            source,
        })
}

/// A parameter value: a number, a string, a boolean or null.
pub type ParamValue = serde_json::Value;

/// How parameters are searched.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(tag = "KIND")]
#[non_exhaustive]
pub enum Searcher {
    /// Every combination of a grid.
    GridCVSearcher(GridCVSearcher),
    /// A fixed budget of random draws.
    RandomCVSearcher(RandomCVSearcher),
    /// Random draws raced fold by fold: after each fold, only the best share goes on.
    HalvingCVSearcher(HalvingCVSearcher),
}

velo_core::impl_kind_deserialize!(Searcher {
    GridCVSearcher,
    RandomCVSearcher,
    HalvingCVSearcher
});

impl Default for Searcher {
    fn default() -> Self {
        Self::GridCVSearcher(GridCVSearcher::default())
    }
}

impl Searcher {
    /// The candidates to cross-validate, in a fixed order: a grid's combinations with the last
    /// parameter varying fastest (parameters sorted by name), or a random search's draws from
    /// its seed.
    pub fn candidates(&self) -> Result<Vec<Params>, JobError> {
        match self {
            Self::GridCVSearcher(grid) => {
                let mut candidates = vec![Params::new()];
                for (key, values) in &grid.param_grid {
                    if values.is_empty() {
                        return Err(JobError::Config(format!(
                            "param_grid.{key} lists no value"
                        )));
                    }
                    candidates = candidates
                        .into_iter()
                        .flat_map(|params| {
                            values.iter().map(move |value| {
                                let mut next = params.clone();
                                next.insert(key.clone(), value.clone());
                                next
                            })
                        })
                        .collect();
                }
                Ok(candidates)
            }
            Self::RandomCVSearcher(random) => {
                draws(&random.param_distributions, random.n_iter, random.seed)
            }
            Self::HalvingCVSearcher(halving) => draws(
                &halving.param_distributions,
                halving.n_candidates,
                halving.seed,
            ),
        }
    }

    fn n_jobs(&self) -> Option<usize> {
        match self {
            Self::GridCVSearcher(grid) => grid.n_jobs,
            Self::RandomCVSearcher(random) => random.n_jobs,
            Self::HalvingCVSearcher(halving) => halving.n_jobs,
        }
    }

    fn refit(&self) -> bool {
        match self {
            Self::GridCVSearcher(grid) => grid.refit,
            Self::RandomCVSearcher(random) => random.refit,
            Self::HalvingCVSearcher(halving) => halving.refit,
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::GridCVSearcher(grid) => {
                let candidates: usize = grid.param_grid.values().map(Vec::len).product();
                format!("a grid of {candidates} candidates")
            }
            Self::RandomCVSearcher(random) => format!("{} random candidates", random.n_iter),
            Self::HalvingCVSearcher(halving) => format!(
                "{} random candidates halved fold by fold (1 in {} goes on)",
                halving.n_candidates, halving.factor
            ),
        }
    }
}

/// Cross-validate every combination of a parameter grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GridCVSearcher {
    /// Parameter name -> the values to try.
    #[serde(default = "GridCVSearcher::default_grid")]
    pub param_grid: BTreeMap<String, Vec<ParamValue>>,
    /// Refit the best candidate on all rows.
    #[serde(default = "default_true")]
    pub refit: bool,
    /// Worker threads; `null` uses every core.
    #[serde(default)]
    pub n_jobs: Option<usize>,
}

impl GridCVSearcher {
    fn default_grid() -> BTreeMap<String, Vec<ParamValue>> {
        BTreeMap::from([("max_depth".to_owned(), vec![3.into(), 5.into(), 7.into()])])
    }
}

impl Default for GridCVSearcher {
    fn default() -> Self {
        Self {
            param_grid: Self::default_grid(),
            refit: true,
            n_jobs: None,
        }
    }
}

/// Cross-validate a random sample of parameter combinations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RandomCVSearcher {
    /// Parameter name -> the distribution values are drawn from.
    pub param_distributions: BTreeMap<String, Distribution>,
    /// Number of candidates drawn (the budget).
    #[serde(default = "RandomCVSearcher::default_n_iter")]
    pub n_iter: usize,
    /// Seed of the draws.
    #[serde(default = "RandomCVSearcher::default_seed")]
    pub seed: u64,
    /// Refit the best candidate on all rows.
    #[serde(default = "default_true")]
    pub refit: bool,
    /// Worker threads; `null` uses every core.
    #[serde(default)]
    pub n_jobs: Option<usize>,
}

impl RandomCVSearcher {
    fn default_n_iter() -> usize {
        10
    }

    fn default_seed() -> u64 {
        42
    }
}

/// `n` draws of `distributions` from `seed`, in draw order.
fn draws(
    distributions: &BTreeMap<String, Distribution>,
    n: usize,
    seed: u64,
) -> Result<Vec<Params>, JobError> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            distributions
                .iter()
                .map(|(key, distribution)| Ok((key.clone(), distribution.draw(key, &mut rng)?)))
                .collect::<Result<Params, JobError>>()
        })
        .collect()
}

/// Successive halving over folds: every candidate is scored on the first `min_folds` folds,
/// then, before each further fold, only the best 1 in `factor` (by mean score so far) goes
/// on, so poor candidates stop early and the budget goes to the promising ones. The best
/// candidate is the best of those scored on every fold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HalvingCVSearcher {
    /// Parameter name -> the distribution values are drawn from.
    pub param_distributions: BTreeMap<String, Distribution>,
    /// Candidates drawn at the start.
    #[serde(default = "HalvingCVSearcher::default_n_candidates")]
    pub n_candidates: usize,
    /// 1 in `factor` candidates goes on after each fold (at least 2).
    #[serde(default = "HalvingCVSearcher::default_factor")]
    pub factor: usize,
    /// Folds every candidate is scored on before the first cut.
    #[serde(default = "HalvingCVSearcher::default_min_folds")]
    pub min_folds: usize,
    /// Seed of the draws.
    #[serde(default = "RandomCVSearcher::default_seed")]
    pub seed: u64,
    /// Refit the best candidate on all rows.
    #[serde(default = "default_true")]
    pub refit: bool,
    /// Worker threads; `null` uses every core.
    #[serde(default)]
    pub n_jobs: Option<usize>,
}

impl HalvingCVSearcher {
    fn default_n_candidates() -> usize {
        27
    }

    fn default_factor() -> usize {
        3
    }

    fn default_min_folds() -> usize {
        1
    }
}

/// A distribution of parameter values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "KIND")]
#[non_exhaustive]
pub enum Distribution {
    /// One of a list of values, uniformly.
    Choice {
        /// The values.
        values: Vec<ParamValue>,
    },
    /// An integer in `[low, high]`, uniformly.
    IntUniform {
        /// Lowest value.
        low: i64,
        /// Highest value (inclusive).
        high: i64,
    },
    /// A real number in `[low, high)`, uniformly.
    Uniform {
        /// Lowest value.
        low: f64,
        /// Upper bound.
        high: f64,
    },
    /// A positive real number whose logarithm is uniform in `[ln low, ln high)`.
    LogUniform {
        /// Lowest value (> 0).
        low: f64,
        /// Upper bound.
        high: f64,
    },
}

impl Distribution {
    fn draw(&self, key: &str, rng: &mut rand_chacha::ChaCha8Rng) -> Result<ParamValue, JobError> {
        let invalid = |why: &str| JobError::Config(format!("param_distributions.{key}: {why}"));
        Ok(match self {
            Self::Choice { values } => {
                if values.is_empty() {
                    return Err(invalid("Choice lists no value"));
                }
                values[rng.random_range(0..values.len())].clone()
            }
            Self::IntUniform { low, high } => {
                if low > high {
                    return Err(invalid("low is above high"));
                }
                rng.random_range(*low..=*high).into()
            }
            Self::Uniform { low, high } => {
                if low.partial_cmp(high) != Some(std::cmp::Ordering::Less) {
                    return Err(invalid("low must be below high"));
                }
                rng.random_range(*low..*high).into()
            }
            Self::LogUniform { low, high } => {
                if *low <= 0.0 || low.partial_cmp(high) != Some(std::cmp::Ordering::Less) {
                    return Err(invalid("needs 0 < low < high"));
                }
                rng.random_range(low.ln()..high.ln()).exp().into()
            }
        })
    }
}

fn default_true() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grid_yields_every_combination_in_a_fixed_order() {
        let grid = Searcher::GridCVSearcher(GridCVSearcher {
            param_grid: BTreeMap::from([
                ("max_depth".to_owned(), vec![3.into(), 5.into()]),
                (
                    "min_samples_leaf".to_owned(),
                    vec![1.into(), 2.into(), 4.into()],
                ),
            ]),
            ..GridCVSearcher::default()
        });
        let candidates = grid.candidates().unwrap();
        assert_eq!(candidates.len(), 6);
        let pairs: Vec<(i64, i64)> = candidates
            .iter()
            .map(|c| {
                (
                    c["max_depth"].as_i64().unwrap(),
                    c["min_samples_leaf"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(pairs, [(3, 1), (3, 2), (3, 4), (5, 1), (5, 2), (5, 4)]);
    }

    #[test]
    fn random_draws_follow_the_seed_and_the_bounds() {
        let searcher = |seed| {
            Searcher::RandomCVSearcher(RandomCVSearcher {
                param_distributions: BTreeMap::from([
                    (
                        "max_depth".to_owned(),
                        Distribution::IntUniform { low: 2, high: 9 },
                    ),
                    (
                        "learning_rate".to_owned(),
                        Distribution::LogUniform {
                            low: 0.01,
                            high: 0.3,
                        },
                    ),
                ]),
                n_iter: 20,
                seed,
                refit: true,
                n_jobs: None,
            })
        };
        let first = searcher(7).candidates().unwrap();
        assert_eq!(first, searcher(7).candidates().unwrap());
        assert_ne!(first, searcher(8).candidates().unwrap());
        for candidate in &first {
            let depth = candidate["max_depth"].as_i64().unwrap();
            let rate = candidate["learning_rate"].as_f64().unwrap();
            assert!(
                (2..=9).contains(&depth) && (0.01..0.3).contains(&rate),
                "{candidate:?}"
            );
        }
        let bad = Searcher::RandomCVSearcher(RandomCVSearcher {
            param_distributions: BTreeMap::from([(
                "x".to_owned(),
                Distribution::Uniform {
                    low: 1.0,
                    high: 1.0,
                },
            )]),
            n_iter: 1,
            seed: 0,
            refit: false,
            n_jobs: None,
        });
        assert!(
            bad.candidates()
                .unwrap_err()
                .to_string()
                .contains("param_distributions.x")
        );
    }

    #[test]
    fn scores_summarise_as_scikit_learn_does() {
        let result = CandidateResult {
            params: Params::new(),
            scores: vec![1.0, 2.0, 3.0, 4.0],
            fit_seconds: vec![0.0; 4],
        };
        assert_eq!(result.mean(), 2.5);
        assert!((result.std() - 1.118_033_988_749_895).abs() < 1e-12);
    }
}
