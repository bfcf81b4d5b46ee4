//! The tuning job: search a model's parameters with cross-validation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use velo_core::{
    metrics::Metric,
    models::{ModelConfig, leakage::LeakageOptions},
    splitters::{Splitter, TimeSeriesSplitter},
};
use velo_io::{datasets::Reader, services::RunConfig};

use crate::common::{SchemaFiles, Services, describe_reader};

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

impl TuningJob {
    fn default_run_config() -> RunConfig {
        RunConfig::named("Tuning")
    }

    fn default_splitter() -> Splitter {
        Splitter::TimeSeriesSplitter(TimeSeriesSplitter::default())
    }

    pub(crate) fn plan(&self) -> Vec<String> {
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

fn default_true() -> bool {
    true
}
