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
                "score candidates by {} over {} folds",
                self.metric.name(),
                self.splitter.n_splits()
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
            run,
            "tuning",
            context.progress.as_ref(),
        )?;
        labeled.check_leakage(self.model.features(), &self.leakage, run)?;
        let Labeled {
            schema: inputs_schema,
            inputs,
            y,
            ..
        } = labeled;
        let candidates = self.searcher.candidates()?;
        if candidates.is_empty() {
            return Err(JobError::Config(
                "the searcher proposes no candidate".to_owned(),
            ));
        }
        let splits = self.splitter.split(inputs.data.num_rows())?;
        // Every fold's rows, selected once and shared by the candidates.
        let folds = fold_rows(&inputs.data, &y, &splits)?;
        tracing::info!(
            candidates = candidates.len(),
            folds = folds.len(),
            "cross-validating"
        );
        let tasks: Vec<(usize, usize)> = (0..candidates.len())
            .flat_map(|candidate| (0..folds.len()).map(move |fold| (candidate, fold)))
            .collect();
        let searching = context.progress.start(
            &format!("cross-validating {} candidates", candidates.len()),
            Some(tasks.len() as u64),
        );
        let evaluate = || {
            tasks
                .par_iter()
                .map(|&(candidate, fold)| {
                    let (x_train, y_train, x_test, y_test) = &folds[fold];
                    let mut model = self.model.build(&inputs_schema);
                    model.set_params(&candidates[candidate])?;
                    let started = Instant::now();
                    model.fit(x_train, y_train)?;
                    let seconds = started.elapsed().as_secs_f64();
                    let score = self.metric.score(y_test, &model.predict(x_test)?)?;
                    searching.advance(1);
                    Ok((score, seconds))
                })
                .collect::<Result<Vec<(f64, f64)>, JobError>>()
        };
        let outcomes = match self.searcher.n_jobs() {
            Some(threads) => rayon::ThreadPoolBuilder::new()
                .num_threads(threads.max(1))
                .build()
                .map_err(|error| JobError::Runtime {
                    action: format!("start {threads} threads"),
                    source: Box::new(error),
                })?
                .install(evaluate)?,
            None => evaluate()?,
        };
        let results: Vec<CandidateResult> = candidates
            .iter()
            .enumerate()
            .map(|(candidate, params)| {
                let mine = &outcomes[candidate * folds.len()..(candidate + 1) * folds.len()];
                CandidateResult {
                    params: params.clone(),
                    scores: mine.iter().map(|(score, _)| *score).collect(),
                    fit_seconds: mine.iter().map(|(_, seconds)| *seconds).collect(),
                }
            })
            .collect();
        let greater = self.metric.greater_is_better();
        let best = (0..results.len())
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
            folds.len(),
            serde_json::to_string(&results[best].params).unwrap_or_default(),
            name.as_str(),
            results[best].mean()
        ));
        Ok(outcome)
    }
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
    let n_folds = results.first().map_or(0, |r| r.scores.len());
    for fold in 0..n_folds {
        fields.push(Field::new(
            format!("split{fold}_test_score"),
            DataType::Float64,
            false,
        ));
        columns.push(Arc::new(Float64Array::from_iter_values(
            results.iter().map(|r| r.scores[fold]),
        )));
    }
    let means: Vec<f64> = results.iter().map(CandidateResult::mean).collect();
    let ranks: Vec<u32> = means
        .iter()
        .map(|mean| {
            let better = means
                .iter()
                .filter(|other| {
                    if greater {
                        *other > mean
                    } else {
                        *other < mean
                    }
                })
                .count();
            u32::try_from(better + 1).unwrap_or(u32::MAX)
        })
        .collect();
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
}

velo_core::impl_kind_deserialize!(Searcher {
    GridCVSearcher,
    RandomCVSearcher
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
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(random.seed);
                (0..random.n_iter)
                    .map(|_| {
                        random
                            .param_distributions
                            .iter()
                            .map(|(key, distribution)| {
                                Ok((key.clone(), distribution.draw(key, &mut rng)?))
                            })
                            .collect::<Result<Params, JobError>>()
                    })
                    .collect()
            }
        }
    }

    fn n_jobs(&self) -> Option<usize> {
        match self {
            Self::GridCVSearcher(grid) => grid.n_jobs,
            Self::RandomCVSearcher(random) => random.n_jobs,
        }
    }

    fn refit(&self) -> bool {
        match self {
            Self::GridCVSearcher(grid) => grid.refit,
            Self::RandomCVSearcher(random) => random.refit,
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::GridCVSearcher(grid) => {
                let candidates: usize = grid.param_grid.values().map(Vec::len).product();
                format!("a grid of {candidates} candidates")
            }
            Self::RandomCVSearcher(random) => format!("{} random candidates", random.n_iter),
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
