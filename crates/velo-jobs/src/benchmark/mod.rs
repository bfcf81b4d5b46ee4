//! The benchmark job: a leaderboard of models, baselines, the registered Champion and peers'
//! results on the same time-series folds, ranked with fold-by-fold wins and a paired test.

mod board;

use std::{collections::BTreeMap, time::Instant};

use serde::{Deserialize, Serialize};
use velo_core::{
    metrics::MetricName,
    splitters::{Splitter, TimeSeriesSplitter},
};
use velo_io::{
    datasets::{Reader, Writer},
    services::{RunConfig, tracking::ActiveRun},
};
use velo_models::{FeaturesConfig, ModelConfig, baselines::Baseline};

use crate::{
    JobContext, JobError, JobOutcome,
    common::{
        AliasOrVersion, Labeled, SchemaFiles, Services, describe_reader, load_registered,
        fold_rows, read_labeled, run_tracked,
    },
};
pub use board::{Entry, Leaderboard};

/// Rows held out of the folds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Holdout {
    /// Reads the held-out inputs.
    pub inputs: Reader,
    /// Reads the held-out targets.
    pub targets: Reader,
}

/// Files a [`BenchmarkJob`] writes (each also logged on the run under `leaderboard/`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BenchmarkOutputs {
    /// The leaderboard table, one row per entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<Writer>,
    /// The leaderboard in Markdown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub markdown: Option<std::path::PathBuf>,
    /// The leaderboard as a self-contained HTML page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<std::path::PathBuf>,
}

/// Compare models on the same time-series folds of a dataset: velo's models (any
/// configuration), baselines (the training mean, the last value, a linear model), the
/// registered Champion and results of other tools given as a table; per entry, metrics mean ±
/// std over folds, fit time, 1-row and batch prediction time, model size and memory, ranked,
/// with fold-by-fold wins and a Wilcoxon signed-rank test of the first against the second.
///
/// The run is a parent with one child run per entry (MLflow's nested runs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BenchmarkJob {
    /// The tracking run (the parent).
    #[serde(default = "BenchmarkJob::default_run_config")]
    pub run_config: RunConfig,
    /// Reads the inputs.
    pub inputs: Reader,
    /// Reads the targets.
    pub targets: Reader,
    /// Schemas of the inputs and targets.
    pub schemas: SchemaFiles,
    /// The folds (time-series folds by default: 5 of 1,440 rows).
    #[serde(default = "BenchmarkJob::default_splitter")]
    pub splitter: Splitter,
    /// Metrics computed on each fold.
    #[serde(default = "BenchmarkJob::default_metrics")]
    pub metrics: Vec<MetricName>,
    /// The metric that ranks the board (its mean over folds).
    #[serde(default = "BenchmarkJob::default_rank_by")]
    pub rank_by: MetricName,
    /// velo models by name.
    #[serde(default)]
    pub models: BTreeMap<String, ModelConfig>,
    /// Baselines.
    #[serde(default = "BenchmarkJob::default_baselines")]
    pub baselines: Vec<Baseline>,
    /// The features the linear baseline uses (as a model's `features`).
    #[serde(default)]
    pub baseline_features: FeaturesConfig,
    /// Held-out rows, such as the test split: every model and baseline is also fitted on all
    /// the training rows and scored on them, the Champion is scored on them as it is, and the
    /// board ranks by them (the folds still give mean ± std, wins and the paired test).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout: Option<Holdout>,
    /// A registered version to put on the board, scored on the `holdout` rows (which it needs:
    /// the Champion was trained on the rows the folds test).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub champion: Option<AliasOrVersion>,
    /// Other tools' results on the same folds: a table with columns `model`, `fold` (0-based;
    /// -1 for the holdout), one column per metric, and optionally `fit_seconds`, `predict_batch_seconds`,
    /// `predict_one_row_ms`, `model_bytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers: Option<Reader>,
    /// Files written besides the run's artifacts.
    #[serde(default)]
    pub outputs: BenchmarkOutputs,
    /// Services.
    #[serde(default)]
    pub services: Services,
}

impl BenchmarkJob {
    fn default_run_config() -> RunConfig {
        RunConfig::named("Benchmark")
    }
    fn default_splitter() -> Splitter {
        Splitter::TimeSeriesSplitter(TimeSeriesSplitter {
            n_splits: 5,
            test_size: Some(velo_core::splitters::TestSize::Count(1440)),
            ..TimeSeriesSplitter::default()
        })
    }
    fn default_metrics() -> Vec<MetricName> {
        vec![
            MetricName::RootMeanSquaredError,
            MetricName::MeanAbsoluteError,
            MetricName::R2Score,
        ]
    }
    fn default_rank_by() -> MetricName {
        MetricName::RootMeanSquaredError
    }
    fn default_baselines() -> Vec<Baseline> {
        vec![Baseline::Mean, Baseline::LastValue, Baseline::Linear]
    }
}

impl crate::Job for BenchmarkJob {
    const KIND: &'static str = "BenchmarkJob";

    fn services(&self) -> &Services {
        &self.services
    }

    fn plan(&self) -> Vec<String> {
        let mut entries: Vec<String> = self.models.keys().cloned().collect();
        entries.extend(self.baselines.iter().map(|b| b.as_str().to_owned()));
        if let Some(champion) = &self.champion {
            entries.push(format!("`{}` {champion}", self.services.mlflow.registry_name));
        }
        let mut plan = vec![
            format!(
                "read inputs from {} and targets from {}",
                describe_reader(&self.inputs),
                describe_reader(&self.targets)
            ),
            format!(
                "fit and score {} on {} fold(s): {}",
                if entries.is_empty() { "nothing".to_owned() } else { format!("{} entries", entries.len()) },
                self.splitter.n_splits(),
                entries.join(", ")
            ),
        ];
        if let Some(peers) = &self.peers {
            plan.push(format!("add the peers' results from {}", describe_reader(peers)));
        }
        plan.push(format!(
            "rank by the mean {}, with wins per fold and a Wilcoxon test of the first two; one child run per entry",
            self.rank_by.as_str()
        ));
        plan
    }

    fn schemas(&self) -> Option<&SchemaFiles> {
        Some(&self.schemas)
    }

    fn registered_model(&self) -> Option<AliasOrVersion> {
        self.champion.clone()
    }

    fn check(&self) -> Result<(), JobError> {
        if self.models.is_empty() && self.baselines.is_empty() && self.champion.is_none() && self.peers.is_none() {
            return Err(JobError::Config(
                "the board is empty: list `models`, `baselines`, a `champion` or `peers`".to_owned(),
            ));
        }
        if self.metrics.is_empty() {
            return Err(JobError::Config("`metrics` lists no metric".to_owned()));
        }
        for name in self.models.keys() {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
                return Err(JobError::Config(format!(
                    "model name {name:?} must be letters, digits, `_`, `-` or `.`"
                )));
            }
        }
        let mut seen = Vec::new();
        for baseline in &self.baselines {
            if seen.contains(baseline) {
                return Err(JobError::Config(format!("baseline `{}` is listed twice", baseline.as_str())));
            }
            seen.push(*baseline);
            if self.models.contains_key(baseline.as_str()) {
                return Err(JobError::Config(format!(
                    "`{}` names both a model and a baseline",
                    baseline.as_str()
                )));
            }
        }
        if self.champion.is_some() && self.holdout.is_none() {
            return Err(JobError::Config(
                "a `champion` needs `holdout` rows: it was trained on the rows the folds test".to_owned(),
            ));
        }
        Ok(())
    }

    fn run(&self, context: &JobContext) -> Result<JobOutcome, JobError> {
        run_tracked(context, &self.run_config, self, |run| self.benchmark(context, run))
    }
}

/// What an entry measured on one fold.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct FoldResult {
    pub(crate) scores: BTreeMap<MetricName, f64>,
    pub(crate) fit_seconds: f64,
    pub(crate) predict_batch_seconds: f64,
}

/// What an entry measured on every fold, and once.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Measured {
    pub(crate) name: String,
    pub(crate) kind: String,
    pub(crate) folds: Vec<FoldResult>,
    pub(crate) holdout: Option<BTreeMap<MetricName, f64>>,
    pub(crate) predict_one_row_ms: Option<f64>,
    pub(crate) model_bytes: Option<u64>,
    pub(crate) rss_growth_mb: Option<f64>,
    pub(crate) params: Vec<(String, String)>,
}

/// An entry the job fits on each fold.
#[derive(Clone, Copy)]
enum Candidate<'a> {
    /// A velo model.
    Model(&'a ModelConfig),
    /// A baseline.
    Baseline(Baseline),
}

/// A fitted candidate.
enum Fitted {
    Model(Box<dyn velo_models::Model>),
    Baseline(velo_models::baselines::FittedBaseline),
}

impl Fitted {
    fn predict(&self, rows: &arrow::record_batch::RecordBatch) -> Result<Vec<f64>, JobError> {
        Ok(match self {
            Self::Model(model) => model.predict(rows)?,
            Self::Baseline(baseline) => baseline.predict(rows)?,
        })
    }

    /// The fitted model's size: its artifact's bytes, or 8 bytes per baseline parameter.
    fn bytes(&self) -> Result<u64, JobError> {
        Ok(match self {
            Self::Model(model) => model.to_artifact()?.to_bytes()?.len() as u64,
            Self::Baseline(baseline) => 8 * baseline.parameters() as u64,
        })
    }
}

/// The median time of `repeats` one-row predictions, in milliseconds.
fn one_row_ms(
    predict: &dyn Fn(&arrow::record_batch::RecordBatch) -> Result<Vec<f64>, JobError>,
    rows: &arrow::record_batch::RecordBatch,
) -> Result<f64, JobError> {
    let repeats = 51.min(rows.num_rows().max(1));
    let mut times = Vec::with_capacity(repeats);
    for row in 0..repeats {
        let one = rows.slice(row % rows.num_rows().max(1), 1.min(rows.num_rows()));
        let started = Instant::now();
        predict(&one)?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn resident_mb() -> Option<f64> {
    velo_io::services::system::resident_mb(std::process::id())
}

impl BenchmarkJob {
    fn benchmark(&self, context: &JobContext, run: &ActiveRun) -> Result<JobOutcome, JobError> {
        let Labeled {
            schema, inputs, y, ..
        } = read_labeled(
            <Self as crate::Job>::KIND,
            (&self.inputs, &self.targets),
            &self.schemas,
            Some(run),
            "benchmark",
            context.progress.as_ref(),
        )?;
        let holdout = match &self.holdout {
            Some(holdout) => {
                let Labeled {
                    inputs: held, y: held_y, ..
                } = read_labeled(
                    <Self as crate::Job>::KIND,
                    (&holdout.inputs, &holdout.targets),
                    &self.schemas,
                    Some(run),
                    "holdout",
                    context.progress.as_ref(),
                )?;
                Some((held.data, held_y))
            }
            None => None,
        };
        let splits = self.splitter.split(inputs.data.num_rows())?;
        let folds = fold_rows(&inputs.data, &y, &splits)?;
        let score = |truth: &[f64], predicted: &[f64]| -> Result<BTreeMap<MetricName, f64>, JobError> {
            let mut scores = BTreeMap::new();
            for metric in self.metrics.iter().chain(std::iter::once(&self.rank_by)) {
                scores.insert(*metric, metric.compute(truth, predicted)?);
            }
            Ok(scores)
        };
        let total = (self.models.len() + self.baselines.len()) * folds.len()
            + usize::from(self.champion.is_some());
        let progress = context.progress.start("benchmarking", Some(total as u64));
        let mut candidates: Vec<(Measured, Candidate<'_>)> = Vec::new();
        for (name, config) in &self.models {
            let entry = Measured {
                name: name.clone(),
                kind: config.kind().to_owned(),
                params: flatten(&serde_json::to_value(config).map_err(JobError::Encode)?),
                ..Measured::default()
            };
            candidates.push((entry, Candidate::Model(config)));
        }
        for baseline in &self.baselines {
            let entry = Measured {
                name: baseline.as_str().to_owned(),
                kind: "baseline".to_owned(),
                ..Measured::default()
            };
            candidates.push((entry, Candidate::Baseline(*baseline)));
        }
        let mut measured = Vec::new();
        for (mut entry, candidate) in candidates {
            let fit = |x: &arrow::record_batch::RecordBatch, y: &[f64]| -> Result<Fitted, JobError> {
                Ok(match candidate {
                    Candidate::Model(config) => {
                        let mut model = config.build(&schema);
                        model.fit(x, y)?;
                        Fitted::Model(model)
                    }
                    Candidate::Baseline(baseline) => {
                        Fitted::Baseline(baseline.fit(&schema, &self.baseline_features, x, y)?)
                    }
                })
            };
            for (index, (x_train, y_train, x_test, y_test)) in folds.iter().enumerate() {
                if context.stop.load(std::sync::atomic::Ordering::SeqCst) {
                    return Err(JobError::Interrupted("the benchmark was stopped"));
                }
                let before = resident_mb();
                let started = Instant::now();
                let fitted = fit(x_train, y_train)?;
                let fit_seconds = started.elapsed().as_secs_f64();
                let grown = resident_mb().zip(before).map(|(after, before)| (after - before).max(0.0));
                entry.rss_growth_mb = match (entry.rss_growth_mb, grown) {
                    (Some(most), Some(grown)) => Some(most.max(grown)),
                    (most, grown) => most.or(grown),
                };
                let started = Instant::now();
                let predicted = fitted.predict(x_test)?;
                let predict_batch_seconds = started.elapsed().as_secs_f64();
                entry.folds.push(FoldResult {
                    scores: score(y_test, &predicted)?,
                    fit_seconds,
                    predict_batch_seconds,
                });
                if index + 1 == folds.len() {
                    entry.predict_one_row_ms = Some(one_row_ms(&|rows| fitted.predict(rows), x_test)?);
                    entry.model_bytes = Some(fitted.bytes()?);
                }
                progress.advance(1);
            }
            if let Some((x_held, y_held)) = &holdout {
                let fitted = fit(&inputs.data, &y)?;
                entry.holdout = Some(score(y_held, &fitted.predict(x_held)?)?);
            }
            measured.push(entry);
        }
        if let (Some(champion), Some((x_held, y_held))) = (&self.champion, &holdout) {
            let (version, model) = load_registered(context, champion)?;
            let mut entry = Measured {
                name: format!("{}-v{}", version.name, version.version),
                kind: format!("registered {}", model.kind()),
                params: vec![("version".to_owned(), version.version.clone())],
                ..Measured::default()
            };
            let started = Instant::now();
            let predicted = model.predict(x_held)?;
            entry.holdout = Some(score(y_held, &predicted)?);
            entry.folds = Vec::new();
            entry.predict_one_row_ms = Some(one_row_ms(&|rows| Ok(model.predict(rows)?), x_held)?);
            tracing::info!(seconds = started.elapsed().as_secs_f64(), "the Champion scored the holdout");
            progress.advance(1);
            measured.push(entry);
        }
        drop(progress);
        if let Some(peers) = &self.peers {
            measured.extend(board::read_peers(peers, &self.metrics, &self.rank_by, folds.len())?);
        }
        let board = Leaderboard::rank(measured, &self.metrics, self.rank_by)?;
        board.log(run)?;
        let table = board.table()?;
        let markdown = board.markdown();
        let html = board.html()?;
        let artifacts: [(&str, Vec<u8>); 3] = [
            (
                "leaderboard/leaderboard.parquet",
                velo_io::datasets::parquet_bytes(&table, "leaderboard/leaderboard.parquet")?,
            ),
            ("leaderboard/leaderboard.md", markdown.clone().into_bytes()),
            ("leaderboard/leaderboard.html", html.clone().into_bytes()),
        ];
        for (path, bytes) in &artifacts {
            run.tracking().log_artifact(run.id(), path, bytes)?;
        }
        if let Some(writer) = &self.outputs.table {
            writer.write(&table)?;
        }
        if let Some(path) = &self.outputs.markdown {
            velo_io::datasets::write_file(path, markdown.as_bytes())?;
        }
        if let Some(path) = &self.outputs.html {
            velo_io::datasets::write_file(path, html.as_bytes())?;
        }
        let mut outcome = JobOutcome::new(self.run_config.name.clone());
        outcome.run_id = Some(run.id().to_owned());
        outcome.lines.push(markdown);
        outcome.lines.push(board.verdict());
        for entry in &board.entries {
            if let Some(mean) = entry.mean(self.rank_by) {
                outcome
                    .metrics
                    .insert(format!("{}.{}", entry.name, self.rank_by.as_str()), mean);
            }
        }
        Ok(outcome)
    }
}

/// `value`'s leaves as `(dotted.key, text)`.
fn flatten(value: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), value)];
    while let Some((prefix, value)) = stack.pop() {
        match value {
            serde_json::Value::Object(map) => {
                for (key, child) in map {
                    let key = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                    stack.push((key, child));
                }
            }
            serde_json::Value::String(text) => out.push((prefix, text.clone())),
            other => out.push((prefix, other.to_string())),
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use crate::Job as _;

    use super::*;

    fn job(yaml: &str) -> BenchmarkJob {
        let base = "inputs: {KIND: ParquetReader, path: i.parquet}
targets: {KIND: ParquetReader, path: t.parquet}
schemas: {inputs: i.yaml, targets: t.yaml}
";
        serde_yaml::from_str(&format!("{base}{yaml}")).unwrap()
    }

    #[test]
    fn the_board_refuses_what_it_could_not_rank_fairly() {
        let refused = |yaml: &str| job(yaml).check().unwrap_err().to_string();
        assert!(refused("champion: Champion").contains("a `champion` needs `holdout` rows"));
        assert!(refused("baselines: []").contains("the board is empty"));
        assert!(refused("baselines: [mean, mean]").contains("baseline `mean` is listed twice"));
        assert!(refused("models: {mean: {KIND: RandomForestModel}}").contains("names both a model and a baseline"));
        assert!(
            job("champion: Champion\nholdout: {inputs: {KIND: ParquetReader, path: h.parquet}, targets: {KIND: ParquetReader, path: ht.parquet}}")
                .check()
                .is_ok()
        );
    }
}
