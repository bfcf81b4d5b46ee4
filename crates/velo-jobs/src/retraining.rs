//! The retraining job: apply the retraining policy to the latest labelled production window
//! and, when it says so, train a challenger on the original and production data, register it
//! and point the challenger alias at it (for `GateJob` to decide).

use serde::{Deserialize, Serialize};
use velo_core::{
    drift::{DataProfile, DatasetDrift, WindowSpec},
    metrics::MetricName,
};
use velo_io::{
    datasets::{Dataset, Reader},
    registries::{Tag, mlmodel},
    services::{RunConfig, tracking::ActiveRun},
};

use crate::{
    JobContext, JobError, JobOutcome,
    common::{
        AliasOrVersion, Labeled, SchemaFiles, Services, describe_reader, load_registered,
        read_labeled, run_tracked, take_rows,
    },
    feedback::{RetrainPolicy, TrainingWindow},
    training::TrainingJob,
};

/// The tag on a retrained version saying why it was trained.
pub const REASON_TAG: &str = "velo.retrain.reason";

/// Judge the latest labelled production window against the champion (drift of its inputs
/// from the champion's training data, its error against the champion's held-out error) and,
/// when the policy says so, train a challenger on the original data and the labelled
/// production rows, register it and point `alias` at it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrainingJob {
    /// The tracking run.
    #[serde(default = "RetrainingJob::default_run_config")]
    pub run_config: RunConfig,
    /// How the challenger is trained: the original data (`inputs`, `targets`), the model,
    /// splitter, metrics and registration, as a training job's (its `services` and
    /// `run_config` are not used: this job's are).
    pub training: TrainingJob,
    /// The labelled production inputs, in time order.
    pub production_inputs: Reader,
    /// Their labels.
    pub production_targets: Reader,
    /// The champion judged.
    #[serde(default = "RetrainingJob::default_champion")]
    pub champion: String,
    /// The alias the challenger gets.
    #[serde(default = "RetrainingJob::default_alias")]
    pub alias: String,
    /// How production rows are grouped into windows; the last one is judged.
    #[serde(default)]
    pub window: WindowSpec,
    /// When to retrain; `every` is left to the scheduler running this job.
    #[serde(default)]
    pub policy: RetrainPolicy,
    /// Train even when the policy does not ask for it.
    #[serde(default)]
    pub force: bool,
    /// Which rows the challenger trains on: all original and production rows, or the latest.
    #[serde(default)]
    pub training_window: TrainingWindow,
    /// The metric the degradation is measured with.
    #[serde(default = "RetrainingJob::default_metric")]
    pub metric: MetricName,
    /// Input columns left out of the drift measure.
    #[serde(default)]
    pub drift_skip: Vec<String>,
    /// Services.
    #[serde(default)]
    pub services: Services,
}

impl crate::Job for RetrainingJob {
    const KIND: &'static str = "RetrainingJob";

    fn services(&self) -> &Services {
        &self.services
    }

    fn plan(&self) -> Vec<String> {
        vec![
            format!(
                "judge the last window of {} against `{}@{}`: drift share >= {:?}, {} worse than \
                 its held-out value by {:?}{}",
                describe_reader(&self.production_inputs),
                self.services.mlflow.registry_name,
                self.champion,
                self.policy.drift_share,
                self.metric.as_str(),
                self.policy.degradation,
                if self.force { " (forced)" } else { "" }
            ),
            format!(
                "if so, train {} on {} and the labelled production rows ({:?}), register it and \
                 point `{}` at it",
                self.training.model.kind(),
                describe_reader(&self.training.inputs),
                self.training_window,
                self.alias
            ),
        ]
    }

    fn schemas(&self) -> Option<&SchemaFiles> {
        Some(&self.training.schemas)
    }

    fn registered_model(&self) -> Option<AliasOrVersion> {
        Some(AliasOrVersion::Alias(self.champion.clone()))
    }

    /// Judges the window; trains, registers and aliases a challenger when the policy says so.
    fn run(&self, context: &JobContext) -> Result<JobOutcome, JobError> {
        run_tracked(context, &self.run_config, self, |run| self.retrain(context, run))
    }
}

impl RetrainingJob {
    fn default_run_config() -> RunConfig {
        RunConfig::named("Retraining")
    }

    fn default_champion() -> String {
        "Champion".to_owned()
    }

    fn default_alias() -> String {
        "Challenger".to_owned()
    }

    fn default_metric() -> MetricName {
        MetricName::RootMeanSquaredError
    }

    fn retrain(&self, context: &JobContext, run: &ActiveRun) -> Result<JobOutcome, JobError> {
        let kind = <Self as crate::Job>::KIND;
        let name = context.mlflow.registry_name.clone();
        let (champion, model) =
            load_registered(context, &AliasOrVersion::Alias(self.champion.clone()))?;
        let reference = mlmodel::load_profile(context.registry.as_ref(), &champion)?;
        let production = read_labeled(
            kind,
            (&self.production_inputs, &self.production_targets),
            &self.training.schemas,
            Some(run),
            "production",
            context.progress.as_ref(),
        )?;
        let windows = velo_core::drift::windows(&production.inputs.data, &self.window)
            .map_err(|message| {
                JobError::Data(format!(
                    "{}: {message}",
                    self.production_inputs.path().display()
                ))
            })?;
        let last = windows.last().ok_or_else(|| {
            JobError::Data(format!(
                "{} has no rows to judge",
                self.production_inputs.path().display()
            ))
        })?;
        // The last window, against the champion.
        let x = take_rows(&production.inputs.data, &last.rows)?;
        let y: Vec<f64> = last.rows.iter().map(|&row| production.y[row]).collect();
        let mut options = reference.window_options();
        options.skip.extend(production.schema.index.clone());
        options.skip.extend(self.drift_skip.iter().cloned());
        let mut reference_inputs = reference.inputs.clone();
        reference_inputs
            .columns
            .retain(|(column, _)| !self.drift_skip.contains(column));
        let current = DataProfile::from_batches(std::slice::from_ref(&x), &options);
        let drifts = velo_core::drift::compare(&reference_inputs, &current, &Default::default());
        let share = DatasetDrift::of(
            drifts.iter().filter_map(|(_, d)| d.as_ref().ok()),
            DatasetDrift::DEFAULT_THRESHOLD,
        )
        .share;
        let predictions = model.predict(&x)?;
        let error = self.metric.compute(&y, &predictions)?;
        // Before labels: what the champion's loss estimator expects of the window.
        let estimated = match (&reference.loss_estimator, self.policy.estimated_degradation) {
            (Some(file), Some(_)) => {
                let bytes = context.registry.read_model_file(&champion, file)?;
                let artifact = velo_models::artifact::Artifact::from_bytes(&bytes)?;
                let estimator = velo_models::load_model(&artifact)?;
                let losses =
                    crate::training::estimated_losses(estimator.as_ref(), &x, &predictions)?;
                Some((losses.iter().sum::<f64>() / losses.len().max(1) as f64).sqrt())
            }
            (None, Some(_)) => {
                return Err(JobError::Config(format!(
                    "`policy.estimated_degradation` needs a loss estimator, and {} version {} \
                     has none (trained with fewer than 100 held-out rows?)",
                    champion.name, champion.version
                )));
            }
            _ => None,
        };
        let held_out = reference.metrics.get(self.metric.as_str()).copied();
        let worse = |error: f64| match (self.policy.degradation, held_out) {
            (Some(allowed), Some(then)) if self.metric.greater_is_better() => {
                error < then * (1.0 - allowed)
            }
            (Some(allowed), Some(then)) => error > then * (1.0 + allowed),
            _ => false,
        };
        // Degraded when the last `for_windows` windows all are (the last one included).
        let mut degraded = worse(error);
        let k = self.policy.for_windows.max(1);
        if degraded && k > 1 {
            let earlier: Vec<&velo_core::drift::Window> =
                windows.iter().rev().skip(1).take(k - 1).collect();
            degraded = earlier.len() == k - 1;
            for window in earlier {
                if !degraded {
                    break;
                }
                let x = take_rows(&production.inputs.data, &window.rows)?;
                let y: Vec<f64> = window.rows.iter().map(|&row| production.y[row]).collect();
                degraded = worse(self.metric.compute(&y, &model.predict(&x)?)?);
            }
        }
        let drifted = self.policy.drift_share.is_some_and(|at| share >= at);
        let rmse_held_out = reference
            .metrics
            .get(MetricName::RootMeanSquaredError.as_str())
            .copied();
        let estimated_degraded = match (estimated, self.policy.estimated_degradation, rmse_held_out)
        {
            (Some(estimate), Some(allowed), Some(then)) => estimate > then * (1.0 + allowed),
            _ => false,
        };
        let mut reasons: Vec<String> = Vec::new();
        if estimated_degraded {
            reasons.push(format!(
                "estimated root_mean_squared_error {:.4} against {:.4} held out",
                estimated.unwrap_or(f64::NAN),
                rmse_held_out.unwrap_or(f64::NAN)
            ));
        }
        if drifted {
            reasons.push(format!("drift share {:.0}%", share * 100.0));
        }
        if degraded {
            reasons.push(format!(
                "{} {error:.4} against {:.4} held out",
                self.metric.as_str(),
                held_out.unwrap_or(f64::NAN)
            ));
        }
        if self.force {
            reasons.push("forced".to_owned());
        }
        let mut logged = vec![
            ("window_drift_share", share),
            ("window_error", error),
            ("retrained", f64::from(u8::from(!reasons.is_empty()))),
        ];
        if let Some(estimate) = estimated {
            logged.push(("window_estimated_error", estimate));
        }
        run.log_metrics(&logged, 0)?;
        let judged = format!(
            "window {} to {} ({} rows): drift share {:.0}%, {} {error:.4} (held out: {})",
            last.start,
            last.end,
            last.rows.len(),
            share * 100.0,
            self.metric.as_str(),
            held_out.map_or_else(|| "not logged".to_owned(), |v| format!("{v:.4}"))
        );
        if reasons.is_empty() {
            let mut outcome = JobOutcome::new(self.run_config.name.clone());
            outcome.run_id = Some(run.id().to_owned());
            outcome.lines.push(format!("no retraining: {judged}"));
            return Ok(outcome);
        }

        // The challenger's rows: the original data and the labelled production rows.
        let original = read_labeled(
            kind,
            (&self.training.inputs, &self.training.targets),
            &self.training.schemas,
            Some(run),
            "training",
            context.progress.as_ref(),
        )?;
        let data = arrow::compute::concat_batches(
            &original.inputs.data.schema(),
            [&original.inputs.data, &production.inputs.data],
        )
        .map_err(|source| JobError::Table {
            action: "gather the original and production rows".to_owned(),
            source,
        })?;
        let mut targets = original.y.clone();
        targets.extend_from_slice(&production.y);
        let (data, targets) = match self.training_window {
            TrainingWindow::Expanding => (data, targets),
            TrainingWindow::Sliding { rows } => {
                let keep = rows.min(data.num_rows());
                let from = data.num_rows() - keep;
                (data.slice(from, keep), targets[from..].to_vec())
            }
        };
        let labeled = Labeled {
            schema: original.schema,
            inputs: Dataset {
                data,
                lineage: original.inputs.lineage,
            },
            targets_lineage: original.targets_lineage,
            target_name: original.target_name,
            y: targets,
        };
        let mut trained = self.training.train_on(context, run, labeled)?;
        let version = trained.model_version.clone().ok_or_else(|| {
            JobError::Data("the retrained model was not registered".to_owned())
        })?;
        let reason = reasons.join("; ");
        context
            .registry
            .set_model_version_tag(&name, &version.version, REASON_TAG, &reason)?;
        velo_io::registries::history::move_alias(
            context.registry.as_ref(),
            &name,
            &self.alias,
            &version.version,
            &context.actor("RetrainingJob", Some(run.id())),
            &format!("retrained: {reason}"),
        )?;
        run.set_tags(&[Tag::new(REASON_TAG, reason.clone())])?;
        trained.lines.insert(0, format!("retrained ({reason}): {judged}"));
        trained.lines.push(format!(
            "{name}@{} -> version {}",
            self.alias, version.version
        ));
        Ok(trained)
    }
}
