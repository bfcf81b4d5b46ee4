//! The evaluations job: score a registered model on a dataset against thresholds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use velo_core::metrics::{Metric, MetricName, Threshold};
use velo_io::{
    datasets::Reader,
    registries::Tag,
    services::{RunConfig, tracking::ActiveRun},
};

use crate::{
    JobContext, JobError, JobOutcome,
    common::{
        AliasOrVersion, Labeled, SchemaFiles, Services, describe_reader, load_registered,
        read_labeled, run_tracked,
    },
    plots,
    training::default_metrics,
};

/// Predict a dataset with a registered model, compute metrics and check them against bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluationsJob {
    /// The tracking run.
    #[serde(default = "EvaluationsJob::default_run_config")]
    pub run_config: RunConfig,
    /// Reads the model inputs.
    pub inputs: Reader,
    /// Reads the targets.
    pub targets: Reader,
    /// Schemas of the inputs, targets and outputs.
    pub schemas: SchemaFiles,
    /// The kind of model evaluated.
    #[serde(default)]
    pub model_type: ModelType,
    /// The model version to load.
    #[serde(default)]
    pub alias_or_version: AliasOrVersion,
    /// Metrics to compute (every metric named in `thresholds` is computed too).
    #[serde(default = "default_metrics")]
    pub metrics: Vec<Metric>,
    /// Metric name -> bound; any bound missed fails the job.
    #[serde(default = "EvaluationsJob::default_thresholds")]
    pub thresholds: BTreeMap<String, Threshold>,
    /// Services.
    #[serde(default)]
    pub services: Services,
}

impl crate::Job for EvaluationsJob {
    const KIND: &'static str = "EvaluationsJob";

    fn services(&self) -> &Services {
        &self.services
    }

    fn plan(&self) -> Vec<String> {
        let bounds: Vec<_> = self
            .thresholds
            .iter()
            .map(|(name, t)| {
                format!(
                    "{name} {} {}",
                    if t.greater_is_better { ">=" } else { "<=" },
                    t.threshold
                )
            })
            .collect();
        vec![
            format!(
                "load `{}` {}",
                self.services.mlflow.registry_name, self.alias_or_version
            ),
            format!("predict inputs from {}", describe_reader(&self.inputs)),
            format!(
                "compare with targets from {}",
                describe_reader(&self.targets)
            ),
            format!(
                "require {}",
                if bounds.is_empty() {
                    "nothing".to_owned()
                } else {
                    bounds.join(", ")
                }
            ),
        ]
    }

    fn schemas(&self) -> Option<&SchemaFiles> {
        Some(&self.schemas)
    }

    fn registered_model(&self) -> Option<AliasOrVersion> {
        Some(self.alias_or_version.clone())
    }

    /// Loads the model, predicts the inputs, logs every metric (configured ones and those the
    /// thresholds name) with the evaluation data's lineage, then fails when any threshold is
    /// missed, naming each metric, its value and its bound. The registry is never changed.
    fn run(&self, context: &JobContext) -> Result<JobOutcome, JobError> {
        run_tracked(context, &self.run_config, self, |run| {
            self.evaluate(context, run)
        })
    }
}

impl EvaluationsJob {
    fn default_run_config() -> RunConfig {
        RunConfig::named("Evaluations")
    }

    fn default_thresholds() -> BTreeMap<String, Threshold> {
        let name = MetricName::R2Score.to_string();
        BTreeMap::from([(
            name,
            Threshold {
                threshold: 0.5,
                greater_is_better: true,
            },
        )])
    }

}

impl EvaluationsJob {

    fn evaluate(&self, context: &JobContext, run: &ActiveRun) -> Result<JobOutcome, JobError> {
        let (version, model) = load_registered(context, &self.alias_or_version)?;
        run.set_tags(&[
            Tag::new("velo.model.name", version.name.clone()),
            Tag::new("velo.model.version", version.version.clone()),
        ])?;
        let Labeled { inputs, y, .. } = read_labeled(
            "EvaluationsJob",
            (&self.inputs, &self.targets),
            &self.schemas,
            Some(run),
            "evaluation",
            context.progress.as_ref(),
        )?;
        let predictions = model.predict(&inputs.data)?;
        let mut names: Vec<MetricName> = self.metrics.iter().map(Metric::name).collect();
        for name in self.thresholds.keys() {
            let metric = name.parse::<MetricName>().map_err(|_| {
                JobError::Config(format!(
                    "threshold on unknown metric {name:?}; known: {}",
                    MetricName::ALL
                        .iter()
                        .map(MetricName::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            if !names.contains(&metric) {
                names.push(metric);
            }
        }
        let mut scores = BTreeMap::new();
        for name in names {
            scores.insert(name.as_str().to_owned(), name.compute(&y, &predictions)?);
        }
        let logged: Vec<(&str, f64)> = scores
            .iter()
            .map(|(name, value)| (name.as_str(), *value))
            .collect();
        run.log_metrics(&logged, 0)?;
        let title = format!("{} version {}", version.name, version.version);
        plots::log_fit_charts(run, &title, &y, &predictions)?;
        let misses: Vec<String> = self
            .thresholds
            .iter()
            .filter_map(|(name, bound)| {
                let value = scores.get(name).copied().unwrap_or(f64::NAN);
                (!bound.check(value)).then(|| {
                    format!(
                        "{name} = {value} (needs {} {})",
                        if bound.greater_is_better { ">=" } else { "<=" },
                        bound.threshold
                    )
                })
            })
            .collect();
        if !misses.is_empty() {
            return Err(JobError::Thresholds {
                name: version.name.clone(),
                version: version.version.clone(),
                failures: misses,
                alias: None,
            });
        }
        let mut outcome = JobOutcome::new(self.run_config.name.clone());
        outcome.run_id = Some(run.id().to_owned());
        outcome.metrics = scores;
        outcome.lines.push(format!(
            "{} version {} meets its {} threshold(s)",
            version.name,
            version.version,
            self.thresholds.len()
        ));
        outcome.model_version = Some(version);
        Ok(outcome)
    }
}

/// The kind of model an evaluation expects.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ModelType {
    /// A regression model.
    #[default]
    Regressor,
}
